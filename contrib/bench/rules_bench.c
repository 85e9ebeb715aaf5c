/*
 * Micro-benchmark of the rule engine (not a test): ns per catalog_lookup()
 * for catalogs of 50 .. 100,000 hosts, and ns per policy_eval() for policies
 * of 10 .. 10,000 rules, to show both stay flat as they grow.  For contrast it
 * also times policy_eval_scan(), the naive first-match loop.
 *
 * Synthetic inputs are generated as libconfig text and loaded through the
 * real loaders.  The policies mix rules keyed by user, service, host and
 * group, with key spaces that grow with the policy (as a real policy's would:
 * more rules mostly means more users and more services named), plus a few
 * category-wide rules and a default allow at the end.
 *
 * Build and run from the repository root: see contrib/bench/README.md.
 */
#include <arpa/inet.h>
#include <libconfig.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aigate/rules/catalog.h"
#include "aigate/rules/hostset.h"
#include "aigate/rules/policy.h"

#define NPROBE 4096

static unsigned long rng = 0x9e3779b97f4a7c15ul;

static unsigned
rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static double
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *const cats[] = {"chat", "api", "image", "code", "search", "agent", "other"};

/* n services, each one host: even ones exact "sN.vendorN.example", odd ones "*.sN.example". */
static char *
gen_catalog(unsigned n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    if (!f)
        return NULL;
    fprintf(f, "services = (\n");
    for (unsigned i = 0; i < n; i++)
        fprintf(f,
                "%s{ id = \"s%u\"; name = \"S%u\"; category = \"%s\"; vendor_country = \"%s\"; "
                "hosts = [ \"%s%u.example\" ]; }",
                i ? ",\n" : "", i, i, cats[i % 7], i % 5 ? "US" : "CN", i % 2 ? "*.s" : "s", i);
    fprintf(f, "\n);\n");
    fclose(f);
    return text;
}

static char *
gen_policy(unsigned n, unsigned nsvc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    unsigned body = n - 4;

    if (!f)
        return NULL;
    fprintf(f, "policy = (\n");
    for (unsigned i = 0; i < body; i++) {
        fprintf(f, "{ name = \"r%u\"; action = \"%s\";", i, i % 3 ? "block" : "warn");
        switch (i % 10) {
        case 0:
        case 1:
        case 2:
        case 3:
            fprintf(f, " users = \"u%u\"; categories = \"%s\";", i, cats[i % 7]);
            break;
        case 4:
        case 5:
        case 6:
            fprintf(f, " services = \"s%u\"; methods = \"POST\"; paths = \"*/upload*\";", i % nsvc);
            break;
        case 7:
        case 8:
            fprintf(f, " hosts = \"*.h%u.example.net\";", i);
            break;
        default:
            fprintf(f, " groups = \"g%u\"; hours = \"09:00-18:00\";", i);
            break;
        }
        fprintf(f, " },\n");
    }
    fprintf(f, "{ name = \"ban\"; action = \"block\"; vendor_countries = \"CN\"; },\n"
               "{ name = \"lab\"; action = \"allow\"; networks = \"10.99.0.0/16\"; },\n"
               "{ name = \"caution\"; action = \"warn\"; categories = [ \"chat\", \"code\" ]; },\n"
               "{ name = \"default\"; action = \"allow\"; }\n);\n");
    fclose(f);
    return text;
}

static int
bench_catalog(unsigned n, unsigned iters)
{
    static char hosts[NPROBE][64];
    static size_t lens[NPROBE];
    char err[256], *text = gen_catalog(n);
    config_t cfg;
    struct catalog *c;
    unsigned found = 0;
    double t0, t1;

    config_init(&cfg);
    if (!text || config_read_string(&cfg, text) != CONFIG_TRUE) {
        fprintf(stderr, "catalog %u: %s\n", n, config_error_text(&cfg));
        return -1;
    }
    free(text);
    if (!(c = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err)))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    for (unsigned i = 0; i < NPROBE; i++) {
        unsigned s = rnd(n);
        int w;

        switch (rnd(3)) {
        case 0: /* hit: exact host or a name under a wildcard */
            w = snprintf(hosts[i], sizeof(hosts[i]), "%s%u.example:443", s % 2 ? "chat.api.s" : "S",
                         s);
            break;
        case 1: /* miss with several labels */
            w = snprintf(hosts[i], sizeof(hosts[i]), "cdn.static.www.site%u.example.org", s);
            break;
        default:
            w = snprintf(hosts[i], sizeof(hosts[i]), "%s%u.example.", s % 2 ? "x.s" : "s", s);
            break;
        }
        lens[i] = (size_t)w;
    }
    t0 = now_ns();
    for (unsigned k = 0; k < iters; k++)
        found += catalog_lookup(c, hosts[k % NPROBE], lens[k % NPROBE]) != NULL;
    t1 = now_ns();
    printf("catalog %7u hosts   %6.1f ns/lookup   (%u%% hits)\n", n, (t1 - t0) / iters,
           (unsigned)(100.0 * found / iters));
    catalog_free(c);
    config_destroy(&cfg);
    return 0;
}

struct probe {
    char user[16], host[64], g0[16];
    const char *groups[2];
    struct sockaddr_in sin;
    struct tm tm;
    struct policy_req r;
};

static int
bench_policy(unsigned n, unsigned nsvc, const struct catalog *c, unsigned iters)
{
    static struct probe pr[NPROBE];
    char err[256], *text = gen_policy(n, nsvc);
    config_t cfg;
    struct policy *p;
    double t0, t1, t2;
    unsigned long sum = 0;
    unsigned scan_iters = iters / (n >= 1000 ? 200 : 20);

    config_init(&cfg);
    if (!text || config_read_string(&cfg, text) != CONFIG_TRUE) {
        fprintf(stderr, "policy %u: %s\n", n, config_error_text(&cfg));
        return -1;
    }
    free(text);
    if (!(p = policy_load(config_lookup(&cfg, "policy"), c, NULL, err, sizeof(err)))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    for (unsigned i = 0; i < NPROBE; i++) {
        struct probe *q = &pr[i];
        const char *path = rnd(2) ? "/backend-api/conversation" : "/api/upload/file";
        int hn;

        snprintf(q->user, sizeof(q->user), "u%u", rnd(n));
        snprintf(q->g0, sizeof(q->g0), "g%u", rnd(n));
        q->groups[0] = q->g0;
        q->groups[1] = "staff";
        if (rnd(2))
            hn = snprintf(q->host, sizeof(q->host), "s%u.example", 2 * rnd(nsvc / 2));
        else
            hn = snprintf(q->host, sizeof(q->host), "www.h%u.example.net", rnd(n));
        q->sin.sin_family = AF_INET;
        q->sin.sin_addr.s_addr = htonl(0x0a000001u + rnd(1000));
        q->tm.tm_hour = (int)rnd(24);
        q->tm.tm_wday = (int)rnd(7);
        q->r.user = q->user;
        q->r.groups = q->groups;
        q->r.ngroups = 2;
        q->r.client = (struct sockaddr *)&q->sin;
        q->r.svc = catalog_lookup(c, q->host, (size_t)hn);
        q->r.host = q->host;
        q->r.method = rnd(2) ? "POST" : "GET";
        q->r.path = path;
        q->r.pathlen = strlen(path);
        q->r.local = &q->tm;
        q->r.have_request = 1;
    }
    t0 = now_ns();
    for (unsigned k = 0; k < iters; k++) {
        const struct policy_rule *d = policy_eval(p, &pr[k % NPROBE].r);

        sum += d ? d->index : 0;
    }
    t1 = now_ns();
    for (unsigned k = 0; k < scan_iters; k++) {
        const struct policy_rule *d = policy_eval_scan(p, &pr[k % NPROBE].r);

        sum -= d ? d->index : 0;
    }
    t2 = now_ns();
    printf("policy  %7u rules   %6.1f ns/eval     (naive scan: %9.1f ns/eval)  [%lu]\n",
           (unsigned)policy_count(p), (t1 - t0) / iters, (t2 - t1) / scan_iters, sum % 10);
    policy_free(p);
    config_destroy(&cfg);
    return 0;
}

int
main(int argc, char **argv)
{
    static const unsigned csizes[] = {50, 1000, 10000, 100000};
    static const unsigned psizes[] = {10, 100, 1000, 10000};
    unsigned iters = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 4000000;
    char err[256], *text;
    config_t cfg;
    struct catalog *c;

    for (size_t i = 0; i < sizeof(csizes) / sizeof(csizes[0]); i++)
        if (bench_catalog(csizes[i], iters) < 0)
            return 1;
    config_init(&cfg);
    if (!(text = gen_catalog(10000)) || config_read_string(&cfg, text) != CONFIG_TRUE ||
        !(c = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err)))) {
        fprintf(stderr, "policy catalog: failed\n");
        return 1;
    }
    free(text);
    for (size_t i = 0; i < sizeof(psizes) / sizeof(psizes[0]); i++)
        if (bench_policy(psizes[i], 10000, c, iters) < 0)
            return 1;
    catalog_free(c);
    config_destroy(&cfg);
    return 0;
}
