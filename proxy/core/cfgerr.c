/* Config error formatting shared by the loaders (see cfgerr.h). */
#include "aigate/core/cfgerr.h"

#include <stdio.h>

void
cfgerr_vset(char *err, size_t errlen, const config_setting_t *s, const char *prefix,
            const char *fmt, va_list ap)
{
    const char *file = s ? config_setting_source_file(s) : NULL;
    int n = snprintf(err, errlen, "%s:%u: %s", file ? file : "<config>",
                     s ? config_setting_source_line(s) : 0, prefix);
    if (n < 0 || (size_t)n >= errlen)
        return;
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}
