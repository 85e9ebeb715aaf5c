/*
 * libFuzzer target: the configuration loader (config_load) on the input as
 * the main file, with everything it loads: listen addresses and networks,
 * groups and addresses, the catalog (services), the policy, dlp_patterns,
 * pages, the users file.  A configuration is operator input, but a typo
 * must give "FILE:LINE: message", never a crash.
 *
 * The main file sits in a private folder beside links to the shipped
 * services.conf, policy.conf, users.htpasswd and pages/, so the shipped
 * aigate.conf loads as it is.  Inputs naming special files (/dev, /proc,
 * /sys, /run) are skipped: reading /dev/zero would only hang the fuzzer.
 */
#include <string.h>

#include "aigate/rules/catalog.h"
#include "aigate/core/config.h"
#include "aigate/rules/policy.h"

#include "fuzz.h"

static char conf[128];

/*
 * libconfig 1.5 (Debian 12) leaks the string its scanner was reading when a
 * syntax error follows it (config_read_string of "\"\"" alone shows it): its
 * bug, not ours, and a few bytes per refused reload.  Leaks from inside its
 * scanner are not reported; every other leak is.  Each such input still costs
 * libFuzzer a leak scan, and after 1000 of them it stops scanning after every
 * input ("disabled leak detection after every mutation"): from then on a
 * leak of ours is reported when the run ends, and by the corpus replay.
 */
const char *__lsan_default_suppressions(void);

const char *
__lsan_default_suppressions(void)
{
    return "leak:libconfig_yylex\nleak:strbuf_append\n";
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const links[] = {"services.conf", "policy.conf", "users.htpasswd", "pages"};
    const char *dir = fuzz_tmpdir();
    char from[512], to[128];

    (void)argc;
    (void)argv;
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        snprintf(from, sizeof(from), "%s/%s", FUZZ_RULES_DIR, links[i]);
        snprintf(to, sizeof(to), "%s/%s", dir, links[i]);
        if (symlink(from, to) < 0) {
            perror(to);
            abort();
        }
    }
    snprintf(conf, sizeof(conf), "%s/aigate.conf", dir);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const special[] = {"/dev", "/proc", "/sys", "/run"};
    char err[1024];
    struct config *c;

    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
        if (memmem(data, size, special[i], strlen(special[i])) != NULL)
            return 0;
    fuzz_write_file(conf, data, size);
    err[0] = '\0';
    if ((c = config_load(conf, err, sizeof(err))) == NULL) {
        FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
        return 0;
    }
    FUZZ_CHECK(c->nlisten > 0 && c->workers >= 1 && c->nconnect_ports > 0);
    FUZZ_CHECK(c->catalog != NULL && c->policy != NULL && c->users != NULL && c->dlp != NULL &&
               c->pages != NULL);
    for (size_t i = 0; i < catalog_count(c->catalog); i++) {
        const struct service *s = catalog_service(c->catalog, i);

        FUZZ_CHECK(s->index == i && catalog_find_id(c->catalog, s->id) == s);
        for (size_t k = 0; k < s->nhosts; k++) {
            size_t n = strlen(s->hosts[k]);

            if (s->hosts[k][0] == '*')
                continue;
            if (s->npaths == 0)
                FUZZ_CHECK(catalog_lookup(c->catalog, s->hosts[k], n) == s);
            else
                FUZZ_CHECK(catalog_has_scoped(c->catalog, s->hosts[k], n) &&
                           catalog_lookup(c->catalog, s->hosts[k], n) != s);
        }
    }
    for (size_t i = 0; i < policy_count(c->policy); i++)
        FUZZ_CHECK(policy_rule_at(c->policy, i)->index == i);
    config_unref(c);
    return 0;
}
