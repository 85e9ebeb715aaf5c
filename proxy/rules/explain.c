/*
 * The --explain report.  It parses the URL with the live proxy's parser,
 * builds the gate request the proxy would (gate.h), and takes the decision
 * from gate_decide(), so the report can never disagree with the proxy.  Then
 * it walks the rules before the deciding one with policy_rule_check() to
 * show which nearly matched and why not.  Offline only: the walk over every
 * rule is fine here.
 */
#include "aigate/rules/explain.h"

#include <string.h>
#include <strings.h>

#include "aigate/core/netaddr.h"
#include "aigate/http/http_msg.h"
#include "aigate/http/http_parse.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/dlp.h"
#include "aigate/rules/gate.h"
#include "aigate/rules/policy.h"

/* Near misses listed at most; the rest are counted. */
#define EXPLAIN_MAX_CLOSE 10
/* Longest URL taken: the proxy's own head limit is larger, but no real URL is. */
#define EXPLAIN_URL_MAX 65536

/* The request as the proxy would see it. */
struct exp_url {
    struct http_url u;
    int connect; /* the proxy sees a CONNECT: a bare host:port, or https not intercepted */
    int authority_form;
    const char *query; /* NULL if none */
    size_t querylen;
};

/* Parse url as the proxy does; -1 if it would refuse it. */
static int
exp_parse(const struct gate_cfg *g, const char *method, const char *url, struct exp_url *x)
{
    size_t len = strlen(url);
    struct http_span t = {0, (uint32_t)len};
    const struct service *svc;

    memset(x, 0, sizeof(*x));
    if (len == 0 || len > EXPLAIN_URL_MAX)
        return -1;
    if (strcasecmp(method, "CONNECT") == 0) {
        x->connect = x->authority_form = 1;
        return http_url_parse_authority(url, t, &x->u);
    }
    if (http_url_parse_absolute(url, t, &x->u) < 0)
        return -1;
    if (strcmp(x->u.scheme, "https") == 0 && !gate_intercepts(g, x->u.host, &svc))
        x->connect = 1;
    if (memchr(url + x->u.path.off, '?', x->u.path.len)) {
        x->query = url + x->u.query.off;
        x->querylen = x->u.query.len;
    }
    return 0;
}

static void
exp_request(FILE *out, const struct exp_url *x, const struct explain_req *e,
            const struct gate_verdict *v)
{
    char addr[64], when[64] = "(unknown)";
    const struct http_url *u = &x->u;

    fprintf(out, "Request\n");
    fprintf(out, "  user        %s", e->user ? e->user : "(anonymous)");
    if (e->ngroups) {
        fprintf(out, "  groups: ");
        for (size_t i = 0; i < e->ngroups; i++)
            fprintf(out, "%s%s%s%s%s", i ? ", " : "", e->groups[i], e->sources ? " (" : "",
                    e->sources ? e->sources[i] : "", e->sources ? ")" : "");
    } else {
        fprintf(out, "  (no groups)");
    }
    if (e->directory)
        fprintf(out, "\n  directory   %s", e->directory);
    fprintf(out, "\n  client      %s\n",
            e->client ? netaddr_ntop(e->client, addr, sizeof(addr)) : "(unknown)");
    fprintf(out, "  method      %s\n", e->method);
    if (x->authority_form)
        fprintf(out, "  target      %s\n", e->url);
    else
        fprintf(out, "  url         %s\n", e->url);
    fprintf(out, "  host        %s  port %u\n", u->host, u->port);
    if (!x->authority_form) {
        fprintf(out, "  path        %.*s\n", (int)(u->pathname.len ? u->pathname.len : 1),
                u->pathname.len ? e->url + u->pathname.off : "/");
        if (x->query)
            fprintf(out, "  query       %.*s  (what query conditions match)\n", (int)x->querylen,
                    x->query);
    }
    if (e->now)
        strftime(when, sizeof(when), "%a %Y-%m-%d %H:%M (local)", e->now);
    fprintf(out, "  time        %s\n", when);
    if (x->authority_form && v->tls == GATE_TLS_INTERCEPT)
        fprintf(out,
                "  seen as     CONNECT tunnel intercepted (tls.intercept = true; a catalogued\n"
                "              host, or one a rule needing the request names): the\n"
                "              requests inside are evaluated one by one\n");
    else if (x->authority_form)
        fprintf(out, "  seen as     CONNECT tunnel: only host-level conditions apply here; with\n"
                     "              interception the requests inside are evaluated one by one\n");
    else if (x->connect)
        fprintf(out, "  seen as     HTTPS tunnelled without interception (a host outside the\n"
                     "              catalog and not named by a rule needing the request, or\n"
                     "              tls.intercept = false): only host-level conditions apply\n");
    else
        fprintf(out,
                "  seen as     %s: method,\n"
                "              path and query conditions apply; %s\n",
                v->tls == GATE_TLS_INTERCEPT ? "intercepted HTTPS request (tls.intercept = true)"
                                             : "plain HTTP request",
                e->has_body ? "the body given is scanned for dlp rules"
                            : "no body given, so dlp rules do not match");
}

static void
exp_body(FILE *out, const struct explain_req *e)
{
    int first = 1;

    if (!e->has_body)
        return;
    fprintf(out, "  body        %zu bytes, personal data found: [", e->body_len);
    for (unsigned d = 0; d < 32; d++) {
        const char *name;

        if (!(e->dlp_found & (1u << d)) || !(name = dlp_kind_name(d, e->dlp)))
            continue;
        fprintf(out, "%s%s", first ? "" : ", ", name);
        first = 0;
    }
    fprintf(out, "]\n");
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
    if (svc->npaths) {
        fprintf(out, "  paths       ");
        for (size_t i = 0; i < svc->npaths; i++)
            fprintf(out, "%s%s", i ? ", " : "", svc->paths[i]);
        fprintf(out, "  (a path-scoped entry: the path decides)\n");
    }
}

/* The headers a rule sets on the requests it lets through (SPEC 5b). */
static void
exp_headers(FILE *out, const struct policy_rule *d)
{
    if (!d->nheaders)
        return;
    fprintf(out, "  adds headers (on the requests it lets through, replacing the client's):\n");
    for (size_t i = 0; i < d->nheaders; i++)
        fprintf(out, "    %s: %s\n", d->headers[i].name, d->headers[i].value);
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
    exp_headers(out, d);
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

/* 1 if the policy was evaluated for the verdict (and not settled before it). */
static int
exp_evaluated(const struct exp_url *x, const struct gate_verdict *v)
{
    if (v->action != GATE_ALLOW && v->action != GATE_BLOCK && v->action != GATE_WARN)
        return 0;
    return !(x->connect && v->tls == GATE_TLS_INTERCEPT);
}

/* Why no rule was evaluated, for the verdicts settled before the policy. */
static const char *
exp_unevaluated(const struct gate_verdict *v)
{
    switch (v->action) {
    case GATE_AUTH_NEEDED:
        return "auth.mode asks for credentials and the request has none: the proxy\n"
               "              answers 407 before any rule is tried";
    case GATE_ACK:
        return "this is the caution page's acknowledgement POST (" GATE_ACK_PATH "),\n"
               "              which the proxy answers itself";
    case GATE_ERROR:
        return "the request cannot be decided";
    default:
        return "the tunnel is intercepted: no rule decides the CONNECT, the requests\n"
               "              inside are decided one by one";
    }
}

static void
exp_effective(FILE *out, const struct explain_req *e, const struct gate_verdict *v)
{
    const struct policy_rule *d = v->rule;

    fprintf(out, "\nEffective action: %s", gate_action_name(v->action));
    if (d && v->fallback == GATE_FALLBACK_HEADERS)
        fprintf(out,
                " (rule \"%s\" adds headers, which cannot be set on a tunnel that is\n"
                "  not intercepted: the CONNECT is refused with 403, never tunnelled blind)\n",
                d->name);
    else if (d && v->fallback != GATE_FALLBACK_NONE)
        fprintf(out,
                " (rule \"%s\"; a warn on a tunnel that is not intercepted becomes\n"
                "  tls.warn_fallback = %s)\n",
                d->name, v->fallback == GATE_FALLBACK_BLOCK ? "block" : "allow");
    else if (d)
        fprintf(out, " (rule \"%s\")\n", d->name);
    else if (v->action == GATE_ALLOW && v->tls == GATE_TLS_INTERCEPT && !v->request_visible)
        fprintf(out, " (intercepted)\n");
    else if (v->action == GATE_ALLOW)
        fprintf(out, " (no rule matched)\n");
    else
        fprintf(out, "\n");
    if (v->action == GATE_WARN)
        fprintf(out, "  note: once %s acknowledges the caution page, allow for %d s%s\n",
                e->user ? e->user : "the client", v->ack_ttl_s,
                d && d->nheaders ? ", with the headers above set" : "");
    for (size_t i = 0; i < v->nheaders; i++)
        fprintf(out, "  sets header %s: %s\n", v->headers[i].name, v->headers[i].value);
    fprintf(out, "verdict: action=%s rule=%s service=%s page=%s tls=%s headers=%zu\n",
            gate_action_name(v->action), d ? d->name : "-", v->service ? v->service->id : "-",
            gate_page_name(v->page), gate_tls_name(v->tls), v->nheaders);
}

int
explain_print(FILE *out, const struct gate_cfg *g, const struct explain_req *e)
{
    struct exp_url x;
    struct gate_req q;
    struct gate_verdict v;
    struct policy_req pr;

    if (exp_parse(g, e->method, e->url, &x) < 0) {
        fprintf(out, "explain: cannot parse \"%s\": %s\n", e->url,
                strcasecmp(e->method, "CONNECT") == 0
                    ? "a CONNECT target is host:port"
                    : "expected an absolute http:// or https:// URL as the proxy accepts it");
        return -1;
    }
    memset(&q, 0, sizeof(q));
    q.client = e->client;
    q.user = e->user;
    q.authenticated = e->user != NULL;
    q.groups = e->groups;
    q.ngroups = e->ngroups;
    q.groups_from = GATE_GROUPS_CONFIG | GATE_GROUPS_DIRECTORY; /* all the caller could read */
    q.method = x.connect ? "CONNECT" : e->method;
    q.connect = x.connect;
    q.url = &x.u;
    q.buf = e->url;
    q.has_body = e->has_body;
    q.body_scanned = e->has_body;
    q.dlp_found = e->dlp_found;
    q.ack = GATE_ACK_NO;
    q.local = e->now;
    gate_decide(g, &q, &v);
    gate_policy_req(&q, &v, &pr);
    exp_request(out, &x, e, &v);
    exp_body(out, e);
    exp_service(out, v.service, x.u.host);
    if (exp_evaluated(&x, &v)) {
        exp_decision(out, v.rule, &pr);
        exp_close(out, g->policy, v.rule, &pr);
    } else {
        fprintf(out, "\nDeciding rule\n  none: %s\n", exp_unevaluated(&v));
    }
    exp_effective(out, e, &v);
    return 0;
}
