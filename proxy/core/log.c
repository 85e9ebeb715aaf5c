/*
 * Diagnostic log.  Messages are formatted into one buffer and written with a
 * single write(2) so lines from different worker threads never interleave.
 */
#include "aigate/core/log.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int log_foreground = 1;
static enum log_level log_max = LOG_LVL_INFO;

void
log_init(int foreground, enum log_level level)
{
    log_foreground = foreground;
    log_max = level;
    if (!foreground)
        openlog("aigate", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static void log_emit(enum log_level lvl, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
log_emit(enum log_level lvl, const char *fmt, va_list ap)
{
    static const char *const names[] = {"warn", "info", "debug"};
    static const int prio[] = {LOG_WARNING, LOG_INFO, LOG_DEBUG};
    char line[1024];
    int n = 0;

    if (lvl > log_max)
        return;
    if (!log_foreground) {
        vsnprintf(line, sizeof(line), fmt, ap);
        syslog(prio[lvl], "%s", line);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ aigate[%s] ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000, names[lvl]);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

#define LOG_FN(name, lvl)                                                                          \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_emit(lvl, fmt, ap);                                                                    \
        va_end(ap);                                                                                \
    }

LOG_FN(log_warnx, LOG_LVL_WARN)
LOG_FN(log_info, LOG_LVL_INFO)
LOG_FN(log_debug, LOG_LVL_DEBUG)
