/*
 * cfgget FILE PATH: read FILE with libconfig (the parser aigate uses, @include
 * relative to FILE's folder) and print the setting at PATH (libconfig path
 * syntax, e.g. "limits.max_connections"): a number or string as its value, a
 * list, array or group as its number of elements.  Exit 1 with a message if
 * FILE does not parse or PATH is not set.  For tests that compare what the
 * documentation or the systemd unit says with the shipped configuration.
 */
#include <libconfig.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
main(int argc, char **argv)
{
    config_t cfg;
    config_setting_t *s;
    char *dir;
    int rc = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: cfgget FILE PATH\n");
        return 2;
    }
    if (!(dir = strdup(argv[1]))) {
        fprintf(stderr, "cfgget: out of memory\n");
        return 1;
    }
    config_init(&cfg);
    config_set_include_dir(&cfg, dirname(dir));
    if (config_read_file(&cfg, argv[1]) != CONFIG_TRUE) {
        fprintf(stderr, "cfgget: %s:%d: %s\n",
                config_error_file(&cfg) ? config_error_file(&cfg) : argv[1],
                config_error_line(&cfg), config_error_text(&cfg));
        goto out;
    }
    if (!(s = config_lookup(&cfg, argv[2]))) {
        fprintf(stderr, "cfgget: %s: %s is not set\n", argv[1], argv[2]);
        goto out;
    }
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        printf("%lld\n", config_setting_get_int64(s));
        break;
    case CONFIG_TYPE_STRING:
        printf("%s\n", config_setting_get_string(s));
        break;
    case CONFIG_TYPE_LIST:
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_GROUP:
        printf("%d\n", config_setting_length(s));
        break;
    default:
        fprintf(stderr, "cfgget: %s: %s is neither a number, a string nor a list\n", argv[1],
                argv[2]);
        goto out;
    }
    rc = 0;
out:
    config_destroy(&cfg);
    free(dir);
    return rc;
}
