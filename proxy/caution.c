/*
 * Caution page and acknowledgement.
 *
 * A warned request gets the caution page with a token binding (user,
 * service, issue time); the page's form POSTs the token and the original URL
 * to /__aigate/ack on the same host.  That POST never reaches the origin:
 * the token is checked (MAC, age, single use), the return URL must be an
 * http(s) URL of the same service (no open redirect), the acknowledgement is
 * recorded for the rule's TTL, and the answer is a 303 to the URL.  Recording
 * goes to disk off the event loop: the connection waits in CS_ACKWAIT, and
 * the 303 goes out from the store's callback, only once the acknowledgement
 * and the used token are durable.
 */
#include "aigate/caution.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aigate/ack.h"
#include "aigate/catalog.h"
#include "aigate/config.h"
#include "aigate/conn.h"
#include "aigate/pages.h"
#include "aigate/policy.h"
#include "aigate/users.h"
#include "aigate/worker.h"

/* Tokens are for the page just shown: a person reads it and clicks within minutes. */
#define CAUTION_TOKEN_MAX_AGE_S 600

void
caution_user_key(const struct conn *c, char *out, size_t cap)
{
    if (c->req && c->req->user[0])
        snprintf(out, cap, "%s", c->req->user);
    else
        snprintf(out, cap, "@%s", c->peer_str);
}

void
caution_service_key(const struct conn *c, char *out, size_t cap)
{
    if (c->req->svc)
        snprintf(out, cap, "%s", c->req->svc->id);
    else
        snprintf(out, cap, "host:%.200s", c->req->url.host);
}

int
caution_acknowledged(const struct conn *c)
{
    char user[300], svc[256];
    caution_user_key(c, user, sizeof(user));
    caution_service_key(c, svc, sizeof(svc));
    return rt.acks && ack_store_check(rt.acks, user, svc, time(NULL));
}

void
caution_page(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = c->req;
    char user[300], svc[256], url[2048], token[ACK_TOKEN_BUF];
    caution_user_key(c, user, sizeof(user));
    caution_service_key(c, svc, sizeof(svc));
    conn_request_url(c, url, sizeof(url));
    int i = http_header_find(buf, h, "Accept");
    int html = i >= 0 && pages_client_wants_html(buf + h->hdr[i].value.off, h->hdr[i].value.len);
    i = http_header_find(buf, h, "Accept-Language");
    int ko = i >= 0 && pages_prefers_korean(buf + h->hdr[i].value.off, h->hdr[i].value.len);

    struct page_vars v = {0};
    v.service = r->svc ? r->svc->name : r->url.host;
    v.user = r->user[0] ? r->user : c->peer_str;
    v.rule = r->rule->name;
    v.reason = r->rule->reason;
    v.host = r->url.host;
    v.url = url;
    v.category = r->svc ? r->svc->category : NULL;
    v.lang = ko ? "ko" : "en";
    v.status = 403;
    char extra[400];
    snprintf(extra, sizeof(extra),
             "Proxy-Status: aigate; error=http_request_denied; details=\"rule=%s; "
             "acknowledgement required\"\r\nContent-Language: %s\r\nVary: Accept, "
             "Accept-Language\r\n",
             r->rule->name, v.lang);
    struct evbuffer *body = evbuffer_new();
    const char *ctype = "text/plain; charset=utf-8";
    if (body && html &&
        ack_token_make(rt.ack_key, user, svc, time(NULL), token, sizeof(token)) == 0) {
        v.token = token;
        if (pages_render(body, c->cfg->pages, PAGE_CAUTION, &v) == 0)
            ctype = "text/html; charset=utf-8";
    }
    if (body && strcmp(ctype, "text/plain; charset=utf-8") == 0) {
        evbuffer_drain(body, evbuffer_get_length(body));
        pages_render_text(body, PAGE_CAUTION, &v);
    }
    conn_respond(c, 403, extra, ctype, body, r->body != HTTP_BODY_NONE && !r->body_done);
    if (body)
        evbuffer_free(body);
    conn_audit(c, r, "warn", 403);
    conn_request_end(c);
}

static void
ack_refused(struct conn *c, const char *why)
{
    conn_error(c, 403, "http_request_denied", "Acknowledgement not accepted", why, NULL, NULL, 0);
}

static void
ack_refused_verdict(struct conn *c, enum ack_verdict v)
{
    char why[200];
    snprintf(why, sizeof(why),
             "This acknowledgement is %s. Go back and load the page again to see a fresh notice.",
             ack_verdict_text(v));
    ack_refused(c, why);
}

/* SPEC 10: a store that cannot record answers 503 saying so. */
static void
ack_unrecorded(struct conn *c)
{
    conn_error(c, 503, "proxy_internal_error", "Acknowledgement not recorded",
               "The acknowledgement could not be recorded. Go back and load the page again.", NULL,
               NULL, 0);
}

/* An acknowledgement waiting for the store, owned by its connection
 * (c->ack_wait): the address to send the browser back to. */
struct caution_wait {
    struct conn *c;
    struct ack_commit *commit;
    char url[];
};

/* The store's answer, on the connection's worker: 303 once it is on disk. */
static void
caution_ack_recorded(enum ack_verdict v, void *arg)
{
    struct caution_wait *cw = arg;
    struct conn *c = cw->c;

    c->ack_wait = NULL;
    if (v == ACK_OK) {
        struct evbuffer *b = evbuffer_new();
        char extra[ACK_URL_MAX + 64];
        snprintf(extra, sizeof(extra), "Location: %s\r\n", cw->url);
        if (b)
            evbuffer_add_printf(b, "Acknowledged. Continue to %s\n", cw->url);
        conn_respond(c, 303, extra, "text/plain; charset=utf-8", b, 0);
        if (b)
            evbuffer_free(b);
        conn_audit(c, c->req, "ack", 303);
        conn_request_end(c);
    } else if (v == ACK_STORE_FAILED) {
        ack_unrecorded(c);
    } else {
        ack_refused_verdict(c, v);
    }
    free(cw);
}

void
caution_ack_cancel(struct conn *c)
{
    if (!c->ack_wait)
        return;
    ack_store_cancel(c->ack_wait->commit);
    free(c->ack_wait);
    c->ack_wait = NULL;
}

/* The TTL of the warn rule that governs url for this user (the rule may set ack_ttl_s). */
static int
ack_ttl(struct conn *c, const char *url_path)
{
    const struct req *r = c->req;
    const char *const *groups = NULL;
    size_t ngroups = r->user[0] ? users_groups(c->cfg->users, r->user, &groups) : 0;
    time_t now = time(NULL);
    struct tm local;
    localtime_r(&now, &local);
    struct policy_req pr = {0};
    pr.user = r->user[0] ? r->user : NULL;
    pr.groups = groups;
    pr.ngroups = ngroups;
    pr.client = (const struct sockaddr *)&c->peer;
    pr.svc = r->svc;
    pr.host = r->url.host;
    pr.local = &local;
    pr.have_request = 1;
    pr.method = "GET";
    pr.path = url_path;
    pr.pathlen = strcspn(url_path, "?");
    const struct policy_rule *rule = policy_eval(c->cfg->policy, &pr);
    if (rule && rule->action == POLICY_WARN && rule->ack_ttl_s > 0)
        return rule->ack_ttl_s;
    return c->cfg->ack.ttl_s;
}

void
caution_ack(struct conn *c, const char *body, size_t len)
{
    struct req *r = c->req;
    char url[ACK_URL_MAX + 1], token[ACK_TOKEN_BUF + 64], host[ACK_HOST_MAX];
    char user[300], svc[256];
    int is_https = 0;

    if (ack_form_parse(body, len, url, sizeof(url), token, sizeof(token)) < 0)
        return ack_refused(c, "The acknowledgement form is incomplete or malformed.");
    if (ack_url_parse_host(url, host, sizeof(host), &is_https) < 0)
        return ack_refused(c, "The return address is not an http(s) address.");
    const struct service *target = catalog_lookup(c->cfg->catalog, host, strlen(host));
    caution_user_key(c, user, sizeof(user));
    caution_service_key(c, svc, sizeof(svc));
    if (r->svc ? target != r->svc : strcasecmp(host, r->url.host) != 0)
        return ack_refused(c, "The return address belongs to a different service.");
    time_t now = time(NULL);
    enum ack_verdict v =
        ack_token_check(rt.ack_key, token, strlen(token), user, svc, now, CAUTION_TOKEN_MAX_AGE_S);
    if (v != ACK_OK)
        return ack_refused_verdict(c, v);
    const char *path = strstr(url, "://");
    path = path ? strchr(path + 3, '/') : NULL;
    int ttl = ack_ttl(c, path ? path : "/");

    size_t ulen = strlen(url);
    struct caution_wait *cw = malloc(sizeof(*cw) + ulen + 1);
    if (!cw)
        return ack_unrecorded(c);
    cw->c = c;
    memcpy(cw->url, url, ulen + 1);
    cw->commit =
        ack_store_commit(rt.acks, c->w, token, strlen(token), now + CAUTION_TOKEN_MAX_AGE_S, user,
                         svc, now + ttl, caution_ack_recorded, cw);
    if (!cw->commit) {
        free(cw);
        return ack_unrecorded(c);
    }
    c->ack_wait = cw;
    c->state = CS_ACKWAIT;
    /* A client that leaves now still gets its acknowledgement recorded:
     * the teardown's audit line says so. */
    r->action = "ack";
}
