/*
 * The end of requests and the proxy's own answers (see answer.h).
 */
#include "aigate/http/answer.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/core/config.h"
#include "aigate/http/exchange.h"
#include "aigate/http/request.h"
#include "aigate/http/respond.h"
#include "aigate/identity/dircache.h"
#include "aigate/identity/identity.h"
#include "aigate/net/conn.h"
#include "aigate/net/tunnel.h"
#include "aigate/net/upstream.h"
#include "aigate/net/worker.h"
#include "aigate/rules/inspect.h"
#include "aigate/rules/policy.h"
#include "aigate/ws/wsrelay.h"

/* The request's audit line (SPEC 7), once. */
void
answer_audit(struct conn *c, struct req *r, enum audit_action action, int status)
{
    const char *tls = r == c->tunnel_req || (c->intercept && !r->is_connect) ? "intercept"
                      : r->is_connect                                        ? "tunnel"
                                                                             : "none";
    if (!r->audited)
        req_audit_emit(rt.audit, r, c->peer_str, tls, c->cfg->dlp, action, status);
    r->audited = 1;
}

/* The request's directory lookup, groups and mutual-authentication token go. */
void
answer_identity_free(struct conn *c)
{
    if (c->dgreq)
        dirgroups_cancel(c->dgreq);
    if (c->groups) {
        dirgroups_list_free(&c->groups->list);
        dircache_set_unref(c->groups->ans.set);
        free(c->groups);
    }
    free(c->auth_reply);
    c->dgreq = NULL;
    c->groups = NULL;
    c->auth_reply = NULL;
}

/*
 * Everything the current request holds goes, after its audit line:
 * whatever it waits for is cancelled, the origin connection closed.
 */
void
answer_finish(struct conn *c, enum audit_action action, int status)
{
    struct req *r = c->req;
    if (!r)
        return;
    answer_audit(c, r, action, status);
    identity_cancel(c->idwait);
    answer_identity_free(c);
    caution_ack_cancel(c->ackwait);
    ack_store_lookup_cancel(c->acklookup);
    inspect_free(c->inspect);
    exchange_free(c->x);
    if (c->tunnel || c->wsr) {
        tunnel_free(c->tunnel);
        wsrelay_free(c->wsr);
        conn_own_bev(c);
    }
    upstream_cancel(c->ureq);
    if (c->up)
        upstream_release(c->up, 0);
    c->idwait = NULL;
    c->ackwait = NULL;
    c->acklookup = NULL;
    c->inspect = NULL;
    c->x = NULL;
    c->tunnel = NULL;
    c->wsr = NULL;
    c->ureq = NULL;
    c->up = NULL;
    free(c->head);
    c->head = NULL;
    req_free(r);
    c->req = NULL;
    atomic_fetch_add_explicit(&rt.requests, 1, memory_order_relaxed);
}

/*
 * The one end of a request: its audit line with action and status, then
 * the next request (keep-alive) or the close once the answer has left.
 */
void
answer_end(struct conn *c, enum audit_action action, int status)
{
    struct req *r = c->req;
    int keep = r && r->keep_alive && r->body_done && !c->client_eof && !c->w->stopping;
    conn_drain_head(c);
    answer_finish(c, action, status);
    conn_finish(c, keep);
}

/* Whether the connection stays open after a local answer (close_after forces no). */
int
answer_keep(struct conn *c, int close_after)
{
    struct req *r = c->req;
    int keep = !close_after && r && r->keep_alive && !c->w->stopping;
    if (r) {
        r->keep_alive = keep;
        r->resp_head_done = 1;
    }
    return keep;
}

/* The answer in the worker's scratch buffer goes out; the request ends with action. */
void
answer_sent(struct conn *c, enum audit_action action, int status)
{
    conn_send(c, c->w->scratch);
    c->req->status = status;
    answer_end(c, action, status);
}

/* An error answered by the proxy: page (HTML or text) and Proxy-Status. */
void
answer_error(struct conn *c, int status, const char *perror, const char *title, const char *detail,
             int close_after)
{
    int keep = answer_keep(c, close_after);
    respond_error(c->w->scratch, c->cfg->pages, c->req, status, perror, title, detail, keep);
    answer_sent(c, AUDIT_ERROR, status);
}

void
answer_block(struct conn *c)
{
    int keep = answer_keep(c, c->req->body != HTTP_BODY_NONE);
    respond_block(c->w->scratch, c->cfg->pages, c->req, c->peer_str, keep);
    answer_sent(c, AUDIT_BLOCK, 403);
}

/*
 * A CONNECT that a rule with add_headers would let through, not
 * intercepted: the headers cannot be set on a blind tunnel, so it is
 * refused (SPEC 5b), logged as a block by that rule.
 */
void
answer_blind_refused(struct conn *c)
{
    struct req *r = c->req;
    char perror[320], detail[512];
    snprintf(perror, sizeof(perror),
             "http_request_denied; details=\"rule=%.200s; interception required\"", r->rule->name);
    snprintf(detail, sizeof(detail),
             "Rule \"%.200s\" lets this site be used only with the organisation's own account, "
             "which the proxy enforces on the requests themselves. This connection is not "
             "inspected (interception is off, or the site is outside it), so it is refused.",
             r->rule->name);
    int keep = answer_keep(c, 1);
    respond_error(c->w->scratch, c->cfg->pages, r, 403, perror, "Inspection required", detail,
                  keep);
    answer_sent(c, AUDIT_BLOCK, 403);
}

/* What the caution module needs of the current request (its groups once the directory's are
 * read). */
struct caution_req
answer_caution_req(struct conn *c)
{
    struct caution_req cr = {.cfg = c->cfg,
                             .r = c->req,
                             .peer = (struct sockaddr *)&c->peer,
                             .peer_str = c->peer_str,
                             .ack_key = rt.ack_key};
    if (c->groups) {
        cr.groups = c->groups->list.names;
        cr.ngroups = c->groups->list.n;
        cr.directory_groups = 1;
    }
    return cr;
}

void
answer_caution(struct conn *c)
{
    struct req *r = c->req;
    struct caution_req cr = answer_caution_req(c);
    int keep = answer_keep(c, r->body != HTTP_BODY_NONE && !r->body_done);
    caution_page(c->w->scratch, &cr, time(NULL), keep);
    answer_sent(c, AUDIT_WARN, 403);
}

/* 407 asking to sign in; held back delay_ms after repeated failures (the audit line goes first). */
void
answer_407(struct conn *c, unsigned delay_ms)
{
    struct req *r = c->req;
    int keep = answer_keep(c, 0);
    unsigned schemes = c->cfg->auth.mode == AUTH_NEGOTIATE ? RESPOND_AUTH_NEGOTIATE : 0;
    if (c->cfg->auth.mode == AUTH_BASIC || (schemes && c->cfg->authdb))
        schemes |= RESPOND_AUTH_BASIC;
    respond_auth(c->w->scratch, c->cfg->pages, r, c->cfg->auth.realm, schemes, keep);
    if (!delay_ms)
        return answer_sent(c, AUDIT_AUTH_FAIL, 407);
    conn_send(c, c->w->scratch);
    r->status = 407;
    /* The audit line goes now; the answer when the back-off is over (ops timeout HELD). */
    answer_audit(c, r, AUDIT_AUTH_FAIL, 407);
    conn_hold(c, delay_ms);
}

/* OPTIONS or TRACE with Max-Forwards: 0, answered here. */
void
answer_max_forwards(struct conn *c, const char *buf, const struct http_head *h)
{
    int keep = answer_keep(c, 0);
    if (c->req->method[0] == 'O')
        respond_raw(c->w->scratch, 200,
                    "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n", NULL, NULL,
                    keep, 0);
    else
        respond_trace(c->w->scratch, buf, h, keep, c->req->is_head);
    answer_sent(c, AUDIT_ALLOW, 200);
}

/* 303 to url after an acknowledgement was recorded. */
void
answer_see_other(struct conn *c, const char *url)
{
    int keep = answer_keep(c, 0);
    respond_see_other(c->w->scratch, url, keep);
    answer_sent(c, AUDIT_ACK, 303);
}
