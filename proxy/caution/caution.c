/*
 * Caution page and acknowledgement.
 *
 * A warned request gets the caution page with a token binding (user,
 * service, issue time); the page's form POSTs the token and the original URL
 * to /__aigate/ack on the same host.  That POST never reaches the origin:
 * the token is checked (MAC, age, single use), the return URL must be an
 * http(s) URL of the same service (no open redirect), the acknowledgement is
 * recorded for the rule's TTL, and the answer is a 303 to the URL.
 * Recording goes to disk off the event loop: the caller waits for
 * caution_ack's callback, which comes only once the acknowledgement and the
 * used token are durable.
 */
#include "aigate/caution/caution.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aigate/core/config.h"
#include "aigate/http/request.h"
#include "aigate/http/respond.h"
#include "aigate/identity/users.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/gate.h"
#include "aigate/rules/policy.h"

void
caution_user_key(const struct caution_req *cr, char *out, size_t cap)
{
    if (cr->r->user[0])
        snprintf(out, cap, "%s", cr->r->user);
    else
        snprintf(out, cap, "@%s", cr->peer_str);
}

/* The acknowledgement key of a service, or of a host outside the catalog. */
static void
caution_key_of(const struct service *svc, const char *host, char *out, size_t cap)
{
    if (svc)
        snprintf(out, cap, "%s", svc->id);
    else
        snprintf(out, cap, "host:%.200s", host);
}

void
caution_service_key(const struct caution_req *cr, char *out, size_t cap)
{
    caution_key_of(cr->r->svc, cr->r->url.host, out, cap);
}

struct ack_lookup *
caution_lookup(const struct caution_req *cr, struct ack_store *store, struct worker *w, time_t now,
               ack_lookup_cb cb, void *arg)
{
    char user[300], svc[256];
    caution_user_key(cr, user, sizeof(user));
    caution_service_key(cr, svc, sizeof(svc));
    return store ? ack_store_lookup(store, w, user, svc, now, cb, arg) : NULL;
}

size_t
caution_page(struct evbuffer *out, const struct caution_req *cr, time_t now, int keep)
{
    const struct req *r = cr->r;
    char user[300], svc[256], url[2048], token[ACK_TOKEN_BUF];
    caution_user_key(cr, user, sizeof(user));
    caution_service_key(cr, svc, sizeof(svc));
    req_url(r, url, sizeof(url));

    struct page_vars v = {0};
    v.service = r->svc ? r->svc->name : r->url.host;
    v.user = r->user[0] ? r->user : cr->peer_str;
    v.rule = r->rule->name;
    v.reason = r->rule->reason;
    v.host = r->url.host;
    v.url = url;
    v.category = r->svc ? r->svc->category : NULL;
    v.lang = r->lang_ko ? "ko" : "en";
    v.status = 403;
    int html =
        r->wants_html && ack_token_make(cr->ack_key, user, svc, now, token, sizeof(token)) == 0;
    if (html)
        v.token = token;
    char extra[400];
    snprintf(extra, sizeof(extra),
             "Proxy-Status: aigate; error=http_request_denied; details=\"rule=%s; "
             "acknowledgement required\"\r\n",
             r->rule->name);
    return respond_page(out, cr->cfg->pages, PAGE_CAUTION, &v, html, extra, keep, r->is_head);
}

/*
 * The TTL of the warn rule that governs url for this user (the rule may set
 * ack_ttl_s): the gate's verdict for a GET of url's path (url_path points
 * into url) on this request's host.
 */
static int
ack_ttl(const struct caution_req *cr, const char *url, const char *url_path, time_t now)
{
    const struct req *r = cr->r;
    struct gate_cfg g;
    struct gate_req q = {0};
    struct gate_verdict v;
    struct http_url u = r->url;
    struct tm local;
    localtime_r(&now, &local);

    gate_cfg_init(&g, cr->cfg);
    u.pathname.off = (uint32_t)(url_path - url);
    u.pathname.len = (uint32_t)strcspn(url_path, "?#");
    u.query.len = 0;
    if (url_path[u.pathname.len] == '?') {
        u.query.off = u.pathname.off + u.pathname.len + 1;
        u.query.len = (uint32_t)strcspn(url + u.query.off, "#");
    }
    q.client = cr->peer;
    q.user = r->user[0] ? r->user : NULL;
    q.authenticated = 1;
    if (cr->directory_groups) {
        q.groups = cr->groups;
        q.ngroups = cr->ngroups;
        q.groups_from = GATE_GROUPS_CONFIG | GATE_GROUPS_DIRECTORY;
    } else {
        q.ngroups = q.user ? users_groups(cr->cfg->users, q.user, &q.groups) : 0;
        q.groups_from = GATE_GROUPS_CONFIG;
    }
    q.method = "GET";
    q.url = &u;
    q.buf = url;
    q.ack = GATE_ACK_NO;
    q.local = &local;
    gate_decide(&g, &q, &v);
    return v.ack_ttl_s;
}

void
caution_refusal(enum ack_verdict v, char *out, size_t cap)
{
    snprintf(out, cap,
             "This acknowledgement is %s. Go back and load the page again to see a fresh notice.",
             ack_verdict_text(v));
}

/* An acknowledgement waiting for the store: where to send the browser back to. */
struct caution_wait {
    struct ack_commit *commit;
    caution_ack_cb cb;
    void *arg;
    char url[];
};

static void
caution_recorded(enum ack_verdict v, void *arg)
{
    struct caution_wait *cw = arg;
    cw->cb(cw->arg, v, cw->url);
    free(cw);
}

struct caution_wait *
caution_ack(const struct caution_req *cr, struct ack_store *store, struct worker *w,
            const char *body, size_t len, time_t now, caution_ack_cb cb, void *arg, char *why,
            size_t whycap)
{
    const struct req *r = cr->r;
    char url[ACK_URL_MAX + 1], token[ACK_TOKEN_BUF + 64], host[ACK_HOST_MAX];
    char user[300], svc[256];
    int is_https = 0;

    if (ack_form_parse(body, len, url, sizeof(url), token, sizeof(token)) < 0) {
        snprintf(why, whycap, "The acknowledgement form is incomplete or malformed.");
        return NULL;
    }
    if (ack_url_parse_host(url, host, sizeof(host), &is_https) < 0) {
        snprintf(why, whycap, "The return address is not an http(s) address.");
        return NULL;
    }
    const char *path = strstr(url, "://");
    path = path ? strchr(path + 3, '/') : NULL;
    /* The service the page was for: path-scoped entries count (SPEC 4). */
    const struct service *target = catalog_lookup_path(
        cr->cfg->catalog, host, strlen(host), path ? path : "/", path ? strcspn(path, "?#") : 1);
    caution_user_key(cr, user, sizeof(user));
    caution_key_of(target, host, svc, sizeof(svc));
    if (strcasecmp(host, r->url.host) != 0 &&
        (!r->svc || catalog_lookup(cr->cfg->catalog, host, strlen(host)) != r->svc)) {
        snprintf(why, whycap, "The return address belongs to a different service.");
        return NULL;
    }
    enum ack_verdict v =
        ack_token_check(cr->ack_key, token, strlen(token), user, svc, now, CAUTION_TOKEN_MAX_AGE_S);
    if (v != ACK_OK) {
        caution_refusal(v, why, whycap);
        return NULL;
    }
    int ttl = path ? ack_ttl(cr, url, path, now) : ack_ttl(cr, "/", "/", now);

    size_t ulen = strlen(url);
    struct caution_wait *cw = malloc(sizeof(*cw) + ulen + 1);
    why[0] = '\0';
    if (!cw)
        return NULL;
    cw->cb = cb;
    cw->arg = arg;
    memcpy(cw->url, url, ulen + 1);
    cw->commit = ack_store_commit(store, w, token, strlen(token), now + CAUTION_TOKEN_MAX_AGE_S,
                                  user, svc, now + ttl, caution_recorded, cw);
    if (!cw->commit) {
        free(cw);
        return NULL;
    }
    return cw;
}

void
caution_ack_cancel(struct caution_wait *cw)
{
    if (!cw)
        return;
    ack_store_cancel(cw->commit);
    free(cw);
}
