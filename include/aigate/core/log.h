/*
 * Diagnostic log for operators (not the audit log).  Lines go to stderr in the
 * foreground and to syslog otherwise.  Thread-safe: each call is one write.
 */
#ifndef AIGATE_LOG_H
#define AIGATE_LOG_H

#include <stdarg.h>

enum log_level { LOG_LVL_WARN = 0, LOG_LVL_INFO = 1, LOG_LVL_DEBUG = 2 };

void log_init(int foreground, enum log_level level);
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
