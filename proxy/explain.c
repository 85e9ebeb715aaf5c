/*
 * The --explain report.  It builds the same struct policy_req the proxy would
 * for the request, takes the decision from policy_eval() (so the report can
 * never disagree with the proxy), and then walks the rules before the deciding
 * one with policy_rule_check() to show which nearly matched and why not.
 * Offline only: the walk over every rule is fine here.
 */
#include "aigate/explain.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aigate/catalog.h"
#include "aigate/hostset.h"
#include "aigate/netaddr.h"
#include "aigate/policy.h"

/* Near misses listed at most; the rest are counted. */
#define EXPLAIN_MAX_CLOSE 10

struct exp_url {
    int connect; /* bare host:port */
    int https;
    const char *authority; /* host[:port], as written */
    size_t authlen;
    char host[HOSTSET_NAME_MAX + 1];
    unsigned port;
    const char *path; /* without query */
    size_t pathlen;
    const char *query; /* NULL if none */
    size_t querylen;
};

static int
exp_port(const char *s, size_t n, unsigned *port)
{
    unsigned v = 0;

    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = v;
    return 0;
}

/* Split the authority into the normalised host and the port. */
static int
exp_authority(struct exp_url *u, const char **why)
{
    const char *a = u->authority, *end = a + u->authlen, *at, *colon = NULL;

    while ((at = memchr(a, '@', (size_t)(end - a))))
        a = at + 1; /* drop userinfo */
    u->authority = a;
    u->authlen = (size_t)(end - a);
    if (a < end && *a == '[') {
        const char *rb = memchr(a, ']', (size_t)(end - a));

        if (!rb) {
            *why = "unterminated [IPv6] address";
            return -1;
        }
        if (rb + 1 < end) {
            if (rb[1] != ':') {
                *why = "junk after ]";
                return -1;
            }
            colon = rb + 1;
        }
    } else if ((colon = memchr(a, ':', (size_t)(end - a))) &&
               memchr(colon + 1, ':', (size_t)(end - colon - 1))) {
        *why = "IPv6 addresses must be written in brackets";
        return -1;
    }
    if (colon) {
        if (exp_port(colon + 1, (size_t)(end - colon - 1), &u->port) < 0) {
            *why = "bad port";
            return -1;
        }
    } else {
        u->port = u->https || u->connect ? 443 : 80;
    }
    if (hostset_host_normalise(a, u->authlen, u->host) < 0) {
        *why = "missing or overlong host";
        return -1;
    }
    return 0;
}

static int
exp_parse(const char *method, const char *url, struct exp_url *u, const char **why)
{
    const char *sep = strstr(url, "://"), *p, *q;

    memset(u, 0, sizeof(*u));
    if (!sep) {
        if (strcasecmp(method, "CONNECT") != 0) {
            *why = "expected an absolute URL (http://... or https://...)";
            return -1;
        }
        u->connect = 1;
        u->authority = url;
        u->authlen = strcspn(url, "/?#");
        if (url[u->authlen]) {
            *why = "a CONNECT target is host:port";
            return -1;
        }
        return exp_authority(u, why);
    }
    if ((size_t)(sep - url) == 5 && strncasecmp(url, "https", 5) == 0)
        u->https = 1;
    else if (!((size_t)(sep - url) == 4 && strncasecmp(url, "http", 4) == 0)) {
        *why = "the scheme must be http or https";
        return -1;
    }
    u->connect = strcasecmp(method, "CONNECT") == 0;
    u->authority = sep + 3;
    u->authlen = strcspn(u->authority, "/?#");
    if (exp_authority(u, why) < 0)
        return -1;
    p = u->authority + u->authlen;
    u->path = *p == '/' ? p : "/";
    u->pathlen = *p == '/' ? strcspn(p, "?#") : 1;
    q = p + (*p == '/' ? u->pathlen : 0);
    if (*q == '?') {
        u->query = q + 1;
        u->querylen = strcspn(q + 1, "#");
    }
    return 0;
}

static void
exp_request(FILE *out, const struct exp_url *u, const struct policy_req *r, const char *method,
            const char *const *sources, const char *directory)
{
    char addr[64], when[64] = "(unknown)";

    fprintf(out, "Request\n");
    fprintf(out, "  user        %s", r->user ? r->user : "(anonymous)");
    if (r->ngroups) {
        fprintf(out, "  groups: ");
        for (size_t i = 0; i < r->ngroups; i++)
            fprintf(out, "%s%s%s%s%s", i ? ", " : "", r->groups[i], sources ? " (" : "",
                    sources ? sources[i] : "", sources ? ")" : "");
    } else {
        fprintf(out, "  (no groups)");
    }
    if (directory)
        fprintf(out, "\n  directory   %s", directory);
    fprintf(out, "\n  client      %s\n",
            r->client ? netaddr_ntop(r->client, addr, sizeof(addr)) : "(unknown)");
    fprintf(out, "  method      %s\n", method);
    if (u->path)
        fprintf(out, "  url         %s://%.*s%.*s%s%.*s\n", u->https ? "https" : "http",
                (int)u->authlen, u->authority, (int)u->pathlen, u->path, u->query ? "?" : "",
                (int)u->querylen, u->query ? u->query : "");
    else
        fprintf(out, "  target      %.*s\n", (int)u->authlen, u->authority);
    fprintf(out, "  host        %s  port %u\n", u->host, u->port);
    if (u->path) {
        fprintf(out, "  path        %.*s\n", (int)u->pathlen, u->path);
        if (u->query)
            fprintf(out, "  query       %.*s  (ignored by path conditions)\n", (int)u->querylen,
                    u->query);
    }
    if (r->local)
        strftime(when, sizeof(when), "%a %Y-%m-%d %H:%M (local)", r->local);
    fprintf(out, "  time        %s\n", when);
    if (u->connect)
        fprintf(out, "  seen as     CONNECT tunnel: only host-level conditions apply here; with\n"
                     "              interception the requests inside are evaluated one by one\n");
    else if (!r->have_request)
        fprintf(out, "  seen as     HTTPS tunnelled without interception (a host outside the\n"
                     "              catalog, or tls.intercept = false): only host-level\n"
                     "              conditions apply\n");
    else if (u->https)
        fprintf(out,
                "  seen as     intercepted HTTPS request (tls.intercept = true): method and\n"
                "              path conditions apply; no body given, so dlp rules do not match\n");
    else
        fprintf(out, "  seen as     plain HTTP request: method and path conditions apply; no\n"
                     "              body given, so dlp rules do not match\n");
}

static void
exp_service(FILE *out, const struct service *svc, const char *host)
{
    fprintf(out, "\nService\n");
    if (!svc) {
        fprintf(out, "  %s is not a catalogued AI service\n", host);
        return;
    }
    fprintf(out, "  service     %s  (%s)\n", svc->id, svc->name);
    fprintf(out, "  category    %s\n  vendor      %s\n", svc->category, svc->vendor_country);
}

static void
exp_checks(FILE *out, const struct policy_check *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(out, "    %s %-16s %s\n", c[i].ok ? "ok " : "NO ", c[i].cond, c[i].why);
}

static void
exp_rule_head(FILE *out, const struct policy_rule *rule)
{
    fprintf(out, "  %s  (%s:%d)  action %s\n", rule->name, rule->file, rule->line,
            policy_action_name(rule->action));
}

static void
exp_decision(FILE *out, const struct policy_rule *d, const struct policy_req *r)
{
    struct policy_check c[POLICY_C_COUNT];
    size_t n;

    fprintf(out, "\nDeciding rule\n");
    if (!d) {
        fprintf(out, "  none: no rule matched, so the request is allowed\n");
        return;
    }
    exp_rule_head(out, d);
    if (d->reason)
        fprintf(out, "  reason      %s\n", d->reason);
    if (d->action == POLICY_WARN)
        fprintf(out, "  ack         valid %s%d%s after the user acknowledges the caution page\n",
                d->ack_ttl_s >= 0 ? "" : "ack.ttl_s (", d->ack_ttl_s >= 0 ? d->ack_ttl_s : 0,
                d->ack_ttl_s >= 0 ? " s" : " = default)");
    n = policy_rule_check(d, r, c, POLICY_C_COUNT);
    if (n == 0)
        fprintf(out, "  matched     (no conditions: it matches every request)\n");
    else
        fprintf(out, "  matched because\n");
    exp_checks(out, c, n);
}

/*
 * Earlier rules where one condition failed, more held than failed, or only
 * conditions this request cannot show (method, path, body on a tunnel) failed.
 */
static void
exp_close(FILE *out, const struct policy *pol, const struct policy_rule *d,
          const struct policy_req *r)
{
    size_t upto = d ? d->index : policy_count(pol), shown = 0, more = 0;

    fprintf(out, "\nRules that came close\n");
    for (size_t i = 0; i < upto; i++) {
        const struct policy_rule *rule = policy_rule_at(pol, i);
        struct policy_check c[POLICY_C_COUNT];
        size_t n = policy_rule_check(rule, r, c, POLICY_C_COUNT), ok = 0, hidden = 0;

        for (size_t k = 0; k < n; k++) {
            ok += c[k].ok != 0;
            hidden += !c[k].ok && !r->have_request && (c[k].bit & POLICY_C_NEEDS_REQUEST);
        }
        if (ok == n || !(n - ok == 1 || ok > n - ok || ok + hidden == n))
            continue;
        if (shown == EXPLAIN_MAX_CLOSE) {
            more++;
            continue;
        }
        exp_rule_head(out, rule);
        fprintf(out, "    %zu of %zu conditions held:\n", ok, n);
        exp_checks(out, c, n);
        shown++;
    }
    if (shown == 0)
        fprintf(out, "  (none)\n");
    if (more)
        fprintf(out, "  ... and %zu more\n", more);
}

int
explain_print(FILE *out, const struct catalog *cat, const struct policy *pol, const char *user,
              const char *const *groups, const char *const *sources, size_t ngroups,
              const char *directory, const struct sockaddr *client, const char *method,
              const char *url, const struct tm *now, int intercept)
{
    struct policy_req r;
    const struct policy_rule *d;
    struct exp_url u;
    const char *why = NULL;

    if (exp_parse(method, url, &u, &why) < 0) {
        fprintf(out, "explain: cannot parse \"%s\": %s\n", url, why);
        return -1;
    }
    memset(&r, 0, sizeof(r));
    r.user = user;
    r.groups = groups;
    r.ngroups = ngroups;
    r.client = client;
    r.svc = catalog_lookup(cat, u.authority, u.authlen);
    r.host = u.host;
    r.local = now;
    r.have_request = !u.connect && (!u.https || (r.svc && intercept));
    if (r.have_request) {
        r.method = method;
        r.path = u.path;
        r.pathlen = u.pathlen;
    }
    exp_request(out, &u, &r, method, sources, directory);
    exp_service(out, r.svc, u.host);
    d = policy_eval(pol, &r);
    exp_decision(out, d, &r);
    exp_close(out, pol, d, &r);
    fprintf(out, "\nEffective action: %s", d ? policy_action_name(d->action) : "allow");
    if (d)
        fprintf(out, " (rule \"%s\")\n", d->name);
    else
        fprintf(out, " (no rule matched)\n");
    if (d && d->action == POLICY_WARN && !r.have_request)
        fprintf(out,
                "  note: a warn on a tunnel that is not intercepted becomes tls.warn_fallback\n");
    return 0;
}
