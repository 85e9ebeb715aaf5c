/*
 * The gate (gate.h): one decision per request, from data to data.
 *
 * A decision is three steps.  gate_decide() settles what comes before the
 * policy (credentials, a usable target, interception, the acknowledgement
 * POST); gate_evaluate() finds the deciding rule, noting when an input it
 * lacks could change which rule that is; gate_apply() turns the rule into an
 * action and a page, which only the acknowledgement state can still change.
 * gate_resume() re-enters at the first step the missing input touches.
 *
 * The body check is the one place that costs two policy evaluations: the
 * policy is evaluated as if the body held every kind of personal data and as
 * if it held none.  A rule that matches in both cases cannot depend on the
 * body; when the two differ the scan decides, so it is needed.  A real scan
 * lies between the two extremes, so when they agree it agrees with them.
 */
#include "aigate/rules/gate.h"

#include <string.h>

#include "aigate/core/config.h"
#include "aigate/rules/catalog.h"

static const char gate_slash[] = "/";

void
gate_cfg_init(struct gate_cfg *g, const struct config *cfg)
{
    memset(g, 0, sizeof(*g));
    g->catalog = cfg->catalog;
    g->policy = cfg->policy;
    g->auth_required = cfg->auth.mode == AUTH_BASIC || cfg->auth.mode == AUTH_NEGOTIATE;
    g->intercept = cfg->tls.intercept;
    g->warn_fallback_block = cfg->tls.warn_fallback_block;
    g->ack_ttl_s = cfg->ack.ttl_s;
    g->directory_groups = cfg->ldap != NULL;
}

const char *
gate_action_name(enum gate_action a)
{
    switch (a) {
    case GATE_ALLOW:
        return "allow";
    case GATE_BLOCK:
        return "block";
    case GATE_WARN:
        return "warn";
    case GATE_ACK:
        return "ack";
    case GATE_AUTH_NEEDED:
        return "auth-needed";
    case GATE_ERROR:
        return "error";
    }
    return "?";
}

const char *
gate_page_name(enum gate_page p)
{
    switch (p) {
    case GATE_PAGE_NONE:
        return "none";
    case GATE_PAGE_BLOCK:
        return "block";
    case GATE_PAGE_CAUTION:
        return "caution";
    }
    return "?";
}

const char *
gate_tls_name(enum gate_tls t)
{
    switch (t) {
    case GATE_TLS_NONE:
        return "none";
    case GATE_TLS_TUNNEL:
        return "tunnel";
    case GATE_TLS_INTERCEPT:
        return "intercept";
    }
    return "?";
}

int
gate_intercepts(const struct gate_cfg *g, const char *host, const struct service **svc)
{
    size_t len = strlen(host);

    *svc = catalog_lookup(g->catalog, host, len);
    return g->intercept && (*svc != NULL || catalog_has_scoped(g->catalog, host, len) ||
                            policy_wants_request(g->policy, host));
}

void
gate_policy_req(const struct gate_req *r, const struct gate_verdict *v, struct policy_req *out)
{
    const struct http_url *u = r->url;

    memset(out, 0, sizeof(*out));
    out->user = r->user;
    out->groups = r->groups;
    out->ngroups = r->ngroups;
    out->client = r->client;
    out->svc = v->service;
    out->host = u->host;
    out->local = r->local;
    out->have_request = v->request_visible;
    if (!out->have_request)
        return;
    out->method = r->method;
    out->path = u->pathname.len ? r->buf + u->pathname.off : gate_slash;
    out->pathlen = u->pathname.len ? u->pathname.len : 1;
    out->query = u->query.len ? r->buf + u->query.off : gate_slash + 1;
    out->querylen = u->query.len;
    out->body_inspected = r->has_body && r->body_scanned;
    out->dlp_found = out->body_inspected ? r->dlp_found : 0;
}

/* The deciding rule into v->rule; GATE_NEED_BODY when the body's scan could change it. */
static void
gate_evaluate(const struct gate_cfg *g, const struct gate_req *r, struct gate_verdict *v)
{
    struct policy_req pr;

    gate_policy_req(r, v, &pr);
    if (pr.have_request && r->has_body && !r->body_scanned && !v->needs) {
        const struct policy_rule *with;

        pr.body_inspected = 1;
        pr.dlp_found = ~0u;
        with = policy_eval(g->policy, &pr);
        pr.body_inspected = 0;
        pr.dlp_found = 0;
        v->rule = policy_eval(g->policy, &pr);
        if (with != v->rule)
            v->needs = GATE_NEED_BODY;
        return;
    }
    v->rule = policy_eval(g->policy, &pr);
}

/* Action, page and fallback from v->rule and the acknowledgement state. */
static void
gate_apply(const struct gate_cfg *g, const struct gate_req *r, struct gate_verdict *v)
{
    const struct policy_rule *rule = v->rule;

    v->action = GATE_ALLOW;
    v->page = GATE_PAGE_NONE;
    v->fallback = GATE_FALLBACK_NONE;
    v->ack_ttl_s = g->ack_ttl_s;
    v->headers = NULL;
    v->nheaders = 0;
    if (rule && rule->action != POLICY_BLOCK && rule->nheaders) {
        if (!v->request_visible) {
            /* The headers cannot be set on a blind tunnel: refused, never tunnelled. */
            v->ai = 1;
            v->action = GATE_BLOCK;
            v->page = GATE_PAGE_BLOCK;
            v->fallback = GATE_FALLBACK_HEADERS;
            return;
        }
        v->headers = rule->headers;
        v->nheaders = rule->nheaders;
    }
    if (!rule || rule->action == POLICY_ALLOW)
        return;
    v->ai = 1;
    if (rule->action == POLICY_BLOCK) {
        v->action = GATE_BLOCK;
        v->page = GATE_PAGE_BLOCK;
        return;
    }
    if (rule->ack_ttl_s > 0)
        v->ack_ttl_s = rule->ack_ttl_s;
    if (r->ack == GATE_ACK_YES)
        return; /* acknowledged earlier: passes under the warn rule, headers set */
    if (r->ack == GATE_ACK_UNKNOWN && !v->needs)
        v->needs = GATE_NEED_ACK_STATE;
    v->headers = NULL; /* not (yet) let through */
    v->nheaders = 0;
    if (!r->connect) {
        v->action = GATE_WARN;
        v->page = GATE_PAGE_CAUTION;
    } else if (g->warn_fallback_block) {
        /* A blind tunnel cannot show the caution page. */
        v->action = GATE_BLOCK;
        v->page = GATE_PAGE_BLOCK;
        v->fallback = GATE_FALLBACK_BLOCK;
    } else {
        v->fallback = GATE_FALLBACK_ALLOW;
    }
}

static int
gate_is_ack_path(const struct gate_req *r)
{
    const struct http_url *u = r->url;
    size_t n = sizeof(GATE_ACK_PATH) - 1;

    return !r->connect && u->pathname.len == n &&
           memcmp(r->buf + u->pathname.off, GATE_ACK_PATH, n) == 0;
}

void
gate_decide(const struct gate_cfg *g, const struct gate_req *r, struct gate_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->ack_ttl_s = g->ack_ttl_s;
    if (!r->url || !r->url->host[0] || !r->method) {
        v->action = GATE_ERROR;
        return;
    }
    if (r->connect) {
        v->tls =
            gate_intercepts(g, r->url->host, &v->service) ? GATE_TLS_INTERCEPT : GATE_TLS_TUNNEL;
    } else {
        const struct http_url *u = r->url;

        v->service = catalog_lookup_path(g->catalog, u->host, strlen(u->host),
                                         u->pathname.len ? r->buf + u->pathname.off : gate_slash,
                                         u->pathname.len ? u->pathname.len : 1);
        v->tls = strcmp(u->scheme, "https") == 0 ? GATE_TLS_INTERCEPT : GATE_TLS_NONE;
    }
    v->ai = v->service != NULL;
    if (g->auth_required && !r->authenticated) {
        v->action = GATE_AUTH_NEEDED;
        return;
    }
    if (r->connect && v->tls == GATE_TLS_INTERCEPT) {
        v->action = GATE_ALLOW; /* the requests inside are decided one by one */
        return;
    }
    if (gate_is_ack_path(r)) {
        v->action = GATE_ACK;
        v->ai = 1;
        return;
    }
    v->request_visible = !r->connect;
    if (g->directory_groups && r->user && !(r->groups_from & GATE_GROUPS_DIRECTORY))
        v->needs = GATE_NEED_GROUPS;
    gate_evaluate(g, r, v);
    gate_apply(g, r, v);
}

void
gate_resume(const struct gate_cfg *g, const struct gate_req *r, struct gate_verdict *v)
{
    if (v->needs == GATE_NEED_ACK_STATE) {
        v->needs = 0;
        gate_apply(g, r, v);
    } else if (v->needs) {
        gate_decide(g, r, v);
    }
}
