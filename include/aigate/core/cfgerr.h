/*
 * Config error messages in one format for every loader: "FILE:LINE: message"
 * naming the setting at fault ("<config>" when libconfig read a string and
 * has no file name; config_load() puts the path back).
 */
#ifndef AIGATE_CFGERR_H
#define AIGATE_CFGERR_H

#include <libconfig.h>
#include <stdarg.h>
#include <stddef.h>

/* err gets "FILE:LINE: " then prefix (may be "") then the formatted message. */
void cfgerr_vset(char *err, size_t errlen, const config_setting_t *s, const char *prefix,
                 const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

#endif
