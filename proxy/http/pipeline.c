/*
 * The request path as a pipeline (issue 12): a client connection's requests
 * from the head to the end.
 *
 *   head      read_heads: the parser keeps its place across reads (c->head)
 *   checks    request_start: access, target and Host, loops, CONNECT ports
 *   identity  identity.c, answering now or by callback (CS_IDENTITY)
 *   decision  decide: the pure gate (gate.h) says what it still needs, and
 *             the request waits for each in its own stage and resumes
 *             there: the directory's groups (CS_GROUPS), the body a dlp rule
 *             needs (CS_BODY, inspect.c: only new bytes looked at), the
 *             acknowledgement state (CS_ACKSTATE, the store of ack.h)
 *   action    a page (answer.c), the acknowledgement form (CS_LOCALBODY,
 *             CS_ACKWAIT), the origin (exchange.c, CS_FORWARD), a tunnel
 *             (CS_UPSTREAM, CS_TUNNEL; tunnel.c, wsrelay.c for inspected
 *             WebSockets), or interception (its requests come back here)
 *   end       answer_end (answer.c): one audit line, next request or close
 *
 * The connection (conn.c) reports to pipeline_ops; the modules below report
 * by callback.  Nothing here is called back by name from below.
 */
#include "aigate/http/pipeline.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/admin/metrics.h"
#include "aigate/caution/caution.h"
#include "aigate/core/config.h"
#include "aigate/core/log.h"
#include "aigate/http/answer.h"
#include "aigate/http/exchange.h"
#include "aigate/http/http_msg.h"
#include "aigate/http/request.h"
#include "aigate/http/respond.h"
#include "aigate/identity/dircache.h"
#include "aigate/identity/dirgroups.h"
#include "aigate/identity/identity.h"
#include "aigate/identity/users.h"
#include "aigate/net/conn.h"
#include "aigate/net/proxyproto.h"
#include "aigate/net/tlsbev.h"
#include "aigate/net/tunnel.h"
#include "aigate/net/upstream.h"
#include "aigate/net/worker.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/gate.h"
#include "aigate/rules/inspect.h"
#include "aigate/rules/policy.h"
#include "aigate/tls/tls_mitm.h"
#include "aigate/ws/ws.h"
#include "aigate/ws/wsrelay.h"

enum decide_rc { DECIDE_GO, DECIDE_ANSWERED, DECIDE_WAIT };

static void read_heads(struct conn *c);
static void decided(struct conn *c);
static enum decide_rc decide(struct conn *c, const char *buf, const struct http_head *h);
static void intercept(struct conn *c);
static void ack_request(struct conn *c);
static void tunnel_ended(void *arg, const char *why);
static const struct tunnel_ops tops;

/* ---- the head and the checks before identity ------------------------------------ */

/* The current head, parsed, still at the start of the input buffer. */
static const char *
head_buf(struct conn *c)
{
    return (const char *)evbuffer_pullup(bufferevent_get_input(c->bev),
                                         (ev_ssize_t)c->head->head_len);
}

/*
 * Who is asking is known (or refused).  A Negotiate token authenticated the
 * connection: its user is kept for the requests that follow (SPEC 9), and
 * GSSAPI's mutual-authentication token goes with this request's answer.
 */
static void
identity_done(void *arg, enum identity_rc rc, struct identity_result *res)
{
    struct conn *c = arg;
    struct req *r = c->req;
    c->idwait = NULL;
    snprintf(r->user, sizeof(r->user), "%s", res->user);
    if (rc != IDENTITY_OK)
        return answer_407(c, res->delay_ms);
    if (res->negotiated) {
        char *u = strdup(res->user);
        if (!u)
            return conn_fail(c, "out of memory");
        free(c->auth_user);
        c->auth_user = u;
        c->auth_reply = res->reply;
        res->reply = NULL;
    }
    decided(c);
}

/* A complete head: the checks that need no identity, then who is asking. */
static void
request_start(struct conn *c)
{
    const char *buf = head_buf(c);
    const struct http_head *h = c->head;
    struct req *r = c->req;

    if (!c->allowed)
        return answer_error(c, 403, "http_request_denied", "Access denied",
                            "Your address may not use this proxy.", 1);
    const struct req_error *e =
        req_target(r, buf, h, c->intercept ? c->tls_host : NULL, c->tls_port);
    if (e)
        return answer_error(c, 400, "http_request_error", e->title, e->detail,
                            e->close || r->body != HTTP_BODY_NONE);
    if (c->intercept)
        c->tls_requests++;
    if (http_msg_via_has_us(buf, h))
        return answer_error(c, 508, "proxy_loop_detected", "Loop detected",
                            "This request has already passed through this proxy.", 1);
    if (r->is_connect && !config_connect_port_ok(c->cfg, r->url.port))
        return answer_error(c, 403, "http_request_denied", "Port not allowed",
                            "CONNECT is only allowed to the configured ports.", 1);
    int i = http_header_find(buf, h, "Proxy-Authorization");
    struct identity_q q = {
        .cfg = c->cfg,
        .w = c->w,
        .cache = c->w->auth_cache,
        .backoff = rt.auth_backoff,
        .peer = (struct sockaddr *)&c->peer,
        .tunnel_user = c->intercept && c->tunnel_req ? c->tunnel_req->user : NULL,
        .conn_user = c->auth_user,
        .authz = i >= 0 ? buf + h->hdr[i].value.off : NULL,
        .authz_len = i >= 0 ? h->hdr[i].value.len : 0,
    };
    struct identity_result res;
    enum identity_rc rc = identity_resolve(&q, &res, identity_done, c, &c->idwait);
    if (rc == IDENTITY_PENDING) {
        /* The head is in: from now on the idle timeout bounds the wait, not the header's. */
        c->stage = CS_IDENTITY;
        conn_timer_idle(c);
        return;
    }
    identity_done(c, rc, &res);
    free(res.reply);
}

/* A head that cannot be a request: 400 (or 431, 408), an error line, and close. */
static void
bad_head(struct conn *c, int status, const char *title, const char *why, size_t bytes)
{
    free(c->head);
    c->head = NULL;
    if (!(c->req = req_new_bad(bytes)))
        return conn_fail(c, "out of memory");
    c->head_pending = 0;
    answer_error(c, status, "http_request_error", title, why, 1);
}

/*
 * Parse as many request heads as the input holds, answering local ones in
 * place; stops when a request waits (for its identity, body, origin...) or
 * more bytes are needed.  The parser resumes where the last read left it.
 */
static void
read_heads(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while ((c->stage == CS_HEAD || c->stage == CS_IDLE) && evbuffer_get_length(in) > 0) {
        if (c->stage == CS_IDLE) {
            c->stage = CS_HEAD;
            conn_timer_header(c);
        }
        if (!c->head && !(c->head = calloc(1, sizeof(*c->head))))
            return conn_close(c, "out of memory");
        size_t len = evbuffer_get_length(in);
        size_t max = c->cfg->limits.max_header_bytes;
        size_t look = len < max + 1 ? len : max + 1;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        int rc = buf ? http_parse_request(buf, look, max, c->head) : HTTP_PARSE_ERROR;
        if (rc == HTTP_PARSE_AGAIN && look <= max)
            return;
        if (rc != HTTP_PARSE_OK) {
            if (proxyproto_is_header(buf, look)) {
                /* A PROXY header from an address not in proxy_protocol: refused (400). */
                atomic_fetch_add_explicit(&rt.proxy_refused, 1, memory_order_relaxed);
                return bad_head(c, 400, "Bad request",
                                "A PROXY protocol header is accepted only from the configured "
                                "load balancers.",
                                look);
            }
            int st = rc == HTTP_PARSE_AGAIN  ? 431
                     : c->head->error_status ? c->head->error_status
                                             : 400;
            const char *why = rc == HTTP_PARSE_AGAIN ? "request head too large"
                              : c->head->error       ? c->head->error
                                                     : "The request is malformed.";
            return bad_head(c, st, st == 431 ? "Request header too large" : "Bad request", why,
                            look);
        }
        if (!(c->req = req_new(buf, c->head, c->w->stopping)))
            return conn_close(c, "out of memory");
        c->head_pending = c->head->head_len;
        request_start(c);
    }
    if (c->stage == CS_IDLE || c->stage == CS_HEAD)
        tlsbev_read_on(c->bev, 0);
}

/* The body a dlp rule needs: wait for it (only new bytes are looked at each time). */
static enum decide_rc
wait_body(struct conn *c, const struct http_head *h)
{
    struct req *r = c->req;
    const struct config *cfg = c->cfg;
    if (!c->inspect &&
        !(c->inspect = inspect_new(r->body, r->body_left, cfg->limits.max_body_inspect_bytes)))
        return DECIDE_GO; /* out of memory: decide as if nothing were found */
    if (inspect_feed(c->inspect, bufferevent_get_input(c->bev), h->head_len, c->client_eof) ==
        INSPECT_READY) {
        r->dlp_mask = inspect_scan(c->inspect, cfg->dlp, head_buf(c), h);
        r->dlp_scanned = 1;
        inspect_free(c->inspect);
        c->inspect = NULL;
        tlsbev_read_limit(c->bev, cfg->limits.max_header_bytes + 4096);
        return DECIDE_GO;
    }
    /* The client may hold the body back until told to send it (RFC 9110 10.1.1). */
    if (r->expect_continue && r->minor >= 1 && !r->continue_sent) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        evbuffer_add(bufferevent_get_output(c->bev), cont, sizeof(cont) - 1);
        r->continue_sent = 1;
    }
    if (c->stage != CS_BODY) {
        c->stage = CS_BODY;
        conn_timer_idle(c);
        tlsbev_read_limit(c->bev,
                          cfg->limits.max_header_bytes + inspect_raw_max(c->inspect) + 4096);
    }
    return DECIDE_WAIT;
}

/* The store's answer: the decision goes on (unavailable: shown the caution again, never allowed).
 */
static void
ack_state_known(enum ack_lookup_answer a, void *arg)
{
    struct conn *c = arg;
    c->acklookup = NULL;
    c->req->ack_state = a == ACK_LOOKUP_YES ? GATE_ACK_YES : GATE_ACK_NO;
    decided(c);
}

/* Ask the acknowledgement store whether this user acknowledged the service. */
static enum decide_rc
wait_ack_state(struct conn *c, time_t now)
{
    struct caution_req cr = answer_caution_req(c);
    if (!(c->acklookup = caution_lookup(&cr, rt.acks, c->w, now, ack_state_known, c))) {
        c->req->ack_state = GATE_ACK_NO;
        return DECIDE_GO;
    }
    c->stage = CS_ACKSTATE;
    return DECIDE_WAIT;
}

/* The groups the gate sees: the config's, and the directory's once read. */
static void
groups_into(struct conn *c, struct gate_req *q)
{
    if (c->groups) {
        q->groups = c->groups->list.names;
        q->ngroups = c->groups->list.n;
        q->groups_from = GATE_GROUPS_CONFIG | GATE_GROUPS_DIRECTORY;
        return;
    }
    q->ngroups = q->user ? users_groups(c->cfg->users, q->user, &q->groups) : 0;
    q->groups_from = GATE_GROUPS_CONFIG;
}

/* The directory's answer (ans.set is ours): the request's groups.  -1 when out of memory. */
static int
groups_take(struct conn *c, struct dirgroups_answer ans)
{
    struct conn_groups *g = calloc(1, sizeof(*g));
    if (!g || dirgroups_list_build(&g->list, c->cfg->users, c->req->user, &ans) < 0) {
        free(g);
        dircache_set_unref(ans.set);
        return -1;
    }
    g->ans = ans;
    c->groups = g;
    return 0;
}

/* The directory answered (on this worker's loop, by timeout_ms): the decision goes on. */
static void
groups_known(struct dirgroups_answer ans, void *arg)
{
    struct conn *c = arg;
    c->dgreq = NULL;
    if (groups_take(c, ans) < 0)
        return conn_fail(c, "out of memory");
    decided(c);
}

/*
 * The user's groups from the directory (SPEC 9): known now from the cache
 * (or, the directory being down, the last known ones), or asked for; the
 * request then waits in CS_GROUPS for ldap.timeout_ms at most.
 */
static enum decide_rc
wait_groups(struct conn *c)
{
    struct dirgroups_answer now = {DIRGROUPS_UNAVAILABLE, NULL};
    int rc = rt.dirgroups
                 ? dirgroups_get(rt.dirgroups, c->w, c->req->user, groups_known, c, &now, &c->dgreq)
                 : 1;
    if (rc == 0) {
        c->stage = CS_GROUPS;
        conn_timer_idle(c);
        return DECIDE_WAIT;
    }
    if (rc < 0 || groups_take(c, now) < 0) {
        conn_fail(c, "out of memory");
        return DECIDE_ANSWERED;
    }
    return DECIDE_GO;
}

/*
 * Ask the gate (gate.h) and act on its verdict.  DECIDE_GO: allowed
 * (r->action set); DECIDE_ANSWERED: a page went out and the request ended,
 * or the request was taken over (interception, the acknowledgement form);
 * DECIDE_WAIT: the directory's groups, the body a dlp rule needs or the
 * acknowledgement state are awaited; the stage's callback decides again.
 */
static enum decide_rc
decide(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = c->req;
    const struct config *cfg = c->cfg;
    struct gate_cfg g;
    struct gate_req q = {0};
    struct gate_verdict v;
    time_t now = time(NULL);
    struct tm local;
    localtime_r(&now, &local);

    gate_cfg_init(&g, cfg);
    q.client = (const struct sockaddr *)&c->peer;
    q.user = r->user[0] ? r->user : NULL;
    q.authenticated = 1; /* identity.c answered the others */
    groups_into(c, &q);
    q.method = r->method;
    q.connect = r->is_connect;
    q.url = &r->url;
    q.buf = buf;
    q.has_body = r->body != HTTP_BODY_NONE && !r->body_done;
    q.body_scanned = r->dlp_scanned;
    q.dlp_found = r->dlp_mask;
    q.local = &local;
    gate_decide(&g, &q, &v);
    r->svc = v.service;
    if (v.needs & GATE_NEED_GROUPS) {
        enum decide_rc rc = wait_groups(c);
        if (rc != DECIDE_GO)
            return rc;
        groups_into(c, &q);
        gate_resume(&g, &q, &v);
        r->svc = v.service;
    }
    if (v.needs & GATE_NEED_BODY) {
        /* Inspect the body only when what it holds could change the decision. */
        if (wait_body(c, h) == DECIDE_WAIT)
            return DECIDE_WAIT;
        q.body_scanned = 1;
        q.dlp_found = r->dlp_mask;
        gate_resume(&g, &q, &v);
    }
    if (v.needs & GATE_NEED_ACK_STATE) {
        if (r->ack_state == GATE_ACK_UNKNOWN && wait_ack_state(c, now) == DECIDE_WAIT)
            return DECIDE_WAIT;
        q.ack = r->ack_state == GATE_ACK_YES ? GATE_ACK_YES : GATE_ACK_NO;
        gate_resume(&g, &q, &v);
    }
    r->rule = v.rule;
    r->is_ai = v.ai;
    switch (v.action) {
    case GATE_ALLOW:
        if (r->is_connect && v.tls == GATE_TLS_INTERCEPT) {
            intercept(c);
            return DECIDE_ANSWERED;
        }
        r->action = AUDIT_ALLOW;
        r->set_headers = v.headers;
        r->nset_headers = v.nheaders;
        return DECIDE_GO;
    case GATE_BLOCK:
        r->action = AUDIT_BLOCK;
        if (v.fallback == GATE_FALLBACK_HEADERS)
            answer_blind_refused(c);
        else
            answer_block(c);
        return DECIDE_ANSWERED;
    case GATE_WARN:
        answer_caution(c);
        return DECIDE_ANSWERED;
    case GATE_ACK:
        /* The warn rule that sets the acknowledgement's TTL may name a directory group. */
        if (g.directory_groups && q.user && !c->groups) {
            enum decide_rc rc = wait_groups(c);
            if (rc != DECIDE_GO)
                return rc;
        }
        ack_request(c);
        return DECIDE_ANSWERED;
    case GATE_AUTH_NEEDED:
    case GATE_ERROR:
        break;
    }
    answer_error(c, 500, "proxy_internal_error", "Internal error",
                 "The proxy could not decide on this request.", 1);
    return DECIDE_ANSWERED;
}

/*
 * The gate's verdict on a WebSocket's messages (SPEC 6a) as if they were
 * the upgrade request's body: scanned (holding the kinds found) or not yet.
 * The head is gone by then, so the target is read from r->path, the same
 * path and query the head had.
 */
static void
ws_gate(struct conn *c, int scanned, unsigned found, struct gate_verdict *v)
{
    struct req *r = c->req;
    struct gate_cfg g;
    struct gate_req q = {0};
    struct http_url url = r->url;
    const char *path = r->path ? r->path : "/";
    size_t len = strlen(path), plen = strcspn(path, "?");
    time_t now = time(NULL);
    struct tm local;
    localtime_r(&now, &local);
    url.path = (struct http_span){0, (uint32_t)len};
    url.pathname = (struct http_span){0, (uint32_t)plen};
    url.query = plen < len ? (struct http_span){(uint32_t)plen + 1, (uint32_t)(len - plen - 1)}
                           : (struct http_span){0, 0};
    gate_cfg_init(&g, c->cfg);
    q.client = (const struct sockaddr *)&c->peer;
    q.user = r->user[0] ? r->user : NULL;
    q.authenticated = 1;
    groups_into(c, &q);
    q.method = r->method;
    q.url = &url;
    q.buf = path;
    q.has_body = 1;
    q.body_scanned = scanned;
    q.dlp_found = found;
    /* Asked at the upgrade, or not needed then: a message cannot wait for the store. */
    q.ack = r->ack_state == GATE_ACK_YES ? GATE_ACK_YES : GATE_ACK_NO;
    q.local = &local;
    gate_decide(&g, &q, v);
}

/*
 * 1 if a dlp rule could decide for the WebSocket c->req opens: its messages
 * are inspected.  Also when the directory's groups, not read for the
 * upgrade, could matter first: a message cannot wait for them, so it is
 * judged by the provisional verdict, as if the user had none.
 */
static int
ws_dlp_could_decide(struct conn *c)
{
    struct gate_verdict v;
    ws_gate(c, 0, 0, &v);
    return (v.needs & (GATE_NEED_BODY | GATE_NEED_GROUPS)) != 0;
}

/*
 * A WebSocket message holds the kinds found: the gate decides as it would
 * for a body holding them (its provisional verdict when it would still want
 * directory groups).  A block, or a caution not acknowledged (a WebSocket
 * cannot show the page), stops the message and becomes the request's
 * decision; NULL lets it through.
 */
static const char *
ws_judge(void *arg, unsigned found)
{
    struct conn *c = arg;
    struct req *r = c->req;
    struct gate_verdict v;
    ws_gate(c, 1, found, &v);
    if ((v.action != GATE_BLOCK && v.action != GATE_WARN) || !v.rule)
        return NULL;
    r->rule = v.rule;
    r->action = AUDIT_BLOCK;
    r->dlp_mask |= found;
    r->is_ai = 1;
    return v.rule->name;
}

static const struct exchange_env *
exchange_env(struct conn *c)
{
    return &c->w->xenv;
}

/* The exchange is freed by the request's end (e points into it until then). */
static void
x_done(void *arg)
{
    struct conn *c = arg;
    answer_end(c, c->req->action, c->req->status);
}

static void
x_failed(void *arg, const struct exchange_error *e)
{
    if (e->status >= 500)
        metrics_upstream_error(e->perror);
    answer_error(arg, e->status, e->perror, e->title, e->detail, e->close);
}

static void
x_aborted(void *arg, const char *why)
{
    conn_close(arg, why);
}

static const struct wsrelay_ops wsops = {conn_touch, ws_judge, tunnel_ended};

/*
 * The origin accepted the WebSocket and the 101 went out: relay frames,
 * inspecting the client's messages when a dlp rule could decide, else
 * unparsed (spliced when neither side is TLS).
 */
static void
x_upgraded(void *arg, struct upstream *u, const struct ws_deflate *pmd)
{
    struct conn *c = arg;
    struct req *r = c->req;
    c->up = u;
    exchange_free(c->x);
    c->x = NULL;
    if (r->ws_inspect)
        c->wsr = wsrelay_start(c->w->base, c->bev, u->bev, c->client_eof, pmd,
                               c->cfg->limits.max_body_inspect_bytes, c->cfg->dlp, &r->bytes_in,
                               &r->bytes_out, &wsops, c);
    else
        c->tunnel = tunnel_start(c->w->base, c->bev, u->bev, c->client_eof, !c->intercept,
                                 &r->bytes_in, &r->bytes_out, &tops, c);
    if (!c->wsr && !c->tunnel)
        return conn_fail(c, "out of memory");
    c->stage = CS_TUNNEL;
    conn_touch(c);
}

static const struct exchange_ops xops = {conn_touch, x_done, x_failed, x_aborted, x_upgraded};

/* Forward an allowed request to its origin. */
static void
forward(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = c->req;
    if (!(r->head = evbuffer_new()) ||
        http_msg_request_head(r->head, buf, h, &r->url, r->set_headers, r->nset_headers,
                              r->ws_upgrade) < 0)
        return answer_error(c, 500, "proxy_internal_error", "Internal error", "Out of memory.", 1);
    conn_drain_head(c);
    /* The head is serialized: its parse is no longer needed while the origin answers. */
    free(c->head);
    c->head = NULL;
    if (r->ws_upgrade)
        r->ws_inspect = ws_dlp_could_decide(c);
    if (r->body == HTTP_BODY_CHUNKED) {
        http_chunk_init(&r->chunk);
        if (!exchange_chunked_prefix_ok(bufferevent_get_input(c->bev), r))
            return answer_error(c, 400, "http_request_error", "Bad request",
                                "The chunked request body is malformed.", 1);
    }
    SSL_CTX *tls = c->intercept ? c->cfg->tls_cctx : NULL;
    if (!(c->x = exchange_start(exchange_env(c), r, c->bev, tls, &xops, c)))
        return answer_error(c, 503, "proxy_internal_error", "Out of resources",
                            "The proxy could not start a connection.", 1);
    c->stage = CS_FORWARD;
    conn_timer_idle(c);
}

/*
 * "200 Connection established" to a CONNECT; with the Negotiate mutual-
 * authentication token when the CONNECT carried the token (RFC 4559 5: the
 * final token goes with the answer to the request that was authenticated).
 * Returns the bytes written.
 */
static size_t
connect_established(struct conn *c)
{
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t before = evbuffer_get_length(out);
    if (c->auth_reply)
        evbuffer_add_printf(out,
                            "HTTP/1.1 200 Connection established\r\n"
                            "Proxy-Authenticate: Negotiate %s\r\n\r\n",
                            c->auth_reply);
    else
        evbuffer_add(out, ok, sizeof(ok) - 1);
    return evbuffer_get_length(out) - before;
}

static void
tunnel_ended(void *arg, const char *why)
{
    struct conn *c = arg;
    log_debug("%s to %s:%u ended: %s", c->req->upgraded ? "websocket" : "tunnel", c->req->url.host,
              c->req->url.port, why);
    c->req->keep_alive = 0;
    answer_end(c, c->req->action, c->req->status);
}

static const struct tunnel_ops tops = {conn_touch, tunnel_ended};

static void
connect_ready(struct upstream *u, enum upstream_err err, const char *detail, void *arg)
{
    struct conn *c = arg;
    struct req *r = c->req;
    char msg[512];
    (void)detail;
    c->ureq = NULL;
    if (err != UPSTREAM_OK) {
        int status = err == UPSTREAM_ERR_TIMEOUT ? 504 : err == UPSTREAM_ERR_SELF ? 508 : 502;
        snprintf(msg, sizeof(msg), "%s %s:%u: %s",
                 err == UPSTREAM_ERR_DNS ? "Cannot resolve" : "Cannot connect to", r->url.host,
                 r->url.port,
                 err == UPSTREAM_ERR_DNS       ? "the name does not resolve"
                 : err == UPSTREAM_ERR_TIMEOUT ? "the connection timed out"
                 : err == UPSTREAM_ERR_SELF    ? "that is this proxy itself"
                                               : "the connection was refused");
        metrics_upstream_error(upstream_err_name(err));
        return answer_error(c, status, upstream_err_name(err),
                            status == 504 ? "Gateway timeout" : "Bad gateway", msg, 1);
    }
    c->up = u;
    r->bytes_out += connect_established(c);
    r->status = 200;
    r->body_done = 1;
    if (!(c->tunnel = tunnel_start(c->w->base, c->bev, u->bev, c->client_eof, 1, &r->bytes_in,
                                   &r->bytes_out, &tops, c)))
        return conn_fail(c, "out of memory");
    c->stage = CS_TUNNEL;
    conn_touch(c);
}

/* An allowed CONNECT that is not intercepted: connect, answer 200, relay. */
static void
tunnel_blind(struct conn *c)
{
    struct req *r = c->req;
    conn_drain_head(c);
    free(c->head);
    c->head = NULL;
    c->stage = CS_UPSTREAM;
    conn_timer_idle(c);
    if (!(c->ureq = upstream_get(c->w->pool, r->url.host, r->url.port, NULL, 0, connect_ready, c)))
        answer_error(c, 503, "proxy_internal_error", "Out of resources",
                     "The proxy could not start a connection.", 1);
}

/*
 * CONNECT to a catalogued AI host with tls.intercept: answer 200, then
 * terminate the client's TLS with a leaf minted for the host.  The requests
 * inside run through the same pipeline as plain HTTP ones.
 */
static void
intercept(struct conn *c)
{
    struct req *r = c->req;
    SSL *ssl = c->w->leaf_cache ? tls_server_ssl(c->w->leaf_cache, r->url.host) : NULL;
    if (!ssl)
        return answer_error(c, 502, "proxy_internal_error", "Interception failed",
                            "The proxy could not make a certificate for this site.", 1);
    conn_drain_head(c);
    r->bytes_out += connect_established(c);
    answer_identity_free(c); /* the requests inside have their own */
    if (conn_start_tls(c, ssl) < 0)
        return;
    snprintf(c->tls_host, sizeof(c->tls_host), "%s", r->url.host);
    c->tls_port = r->url.port;
    r->action = AUDIT_ALLOW;
    r->status = 200;
    /* The CONNECT lives on with the connection; its line is written when that ends. */
    c->tunnel_req = r;
    c->req = NULL;
    free(c->head);
    c->head = NULL;
    c->stage = CS_HEAD;
    conn_timer_header(c);
}

static void
ack_recorded(void *arg, enum ack_verdict v, const char *url)
{
    struct conn *c = arg;
    c->ackwait = NULL;
    if (v == ACK_STORE_FAILED)
        return answer_error(c, 503, "proxy_internal_error", "Acknowledgement not recorded",
                            "The acknowledgement could not be recorded. Go back and load the "
                            "page again.",
                            0);
    if (v != ACK_OK) {
        char why[200];
        caution_refusal(v, why, sizeof(why));
        return answer_error(c, 403, "http_request_denied", "Acknowledgement not accepted", why, 0);
    }
    answer_see_other(c, url);
}

/* The acknowledgement form has fully arrived: check it and record it. */
static void
ack_body(struct conn *c)
{
    struct req *r = c->req;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) < r->body_left)
        return;
    size_t n = (size_t)r->body_left;
    char *body = malloc(n + 1), why[256];
    if (!body)
        return conn_fail(c, "out of memory");
    evbuffer_remove(in, body, n);
    body[n] = '\0';
    r->bytes_in += n;
    r->body_left = 0;
    r->body_done = 1;
    struct caution_req cr = answer_caution_req(c);
    c->ackwait =
        caution_ack(&cr, rt.acks, c->w, body, n, time(NULL), ack_recorded, c, why, sizeof(why));
    free(body);
    if (c->ackwait) {
        /* A client that leaves now still gets its acknowledgement recorded: the line says so. */
        r->action = AUDIT_ACK;
        c->stage = CS_ACKWAIT;
        return;
    }
    if (why[0])
        return answer_error(c, 403, "http_request_denied", "Acknowledgement not accepted", why, 0);
    answer_error(c, 503, "proxy_internal_error", "Acknowledgement not recorded",
                 "The acknowledgement could not be recorded. Go back and load the page again.", 0);
}

/* POST /__aigate/ack: wait for its (small, Content-Length) body, then answer it. */
static void
ack_request(struct conn *c)
{
    struct req *r = c->req;
    r->is_ai = 1;
    if (strcmp(r->method, "POST") != 0)
        return answer_error(c, 405, "http_request_denied", "Method not allowed",
                            "The acknowledgement address only takes the caution page's form.",
                            r->body != HTTP_BODY_NONE);
    if (r->body == HTTP_BODY_CHUNKED)
        return answer_error(c, 411, "http_request_error", "Length required",
                            "Send the acknowledgement form with a Content-Length.", 1);
    if (r->body != HTTP_BODY_LENGTH || r->body_left == 0 || r->body_left > ACK_FORM_MAX)
        return answer_error(c, 400, "http_request_error", "Bad request",
                            "The acknowledgement form is missing or too large.", 1);
    conn_drain_head(c);
    c->stage = CS_LOCALBODY;
    ack_body(c);
}

/* Who is asking is known: decide (again, when the body came) and act. */
static void
decided(struct conn *c)
{
    const char *buf = head_buf(c);
    const struct http_head *h = c->head;
    struct req *r = c->req;
    int mf;
    switch (decide(c, buf, h)) {
    case DECIDE_ANSWERED:
    case DECIDE_WAIT:
        return;
    case DECIDE_GO:
        break;
    }
    if (r->is_connect)
        return tunnel_blind(c);
    if ((strcmp(r->method, "OPTIONS") == 0 || strcmp(r->method, "TRACE") == 0) &&
        (mf = http_msg_max_forwards(buf, h)) == 0)
        return answer_max_forwards(c, buf, h);
    forward(c, buf, h);
}

/* ---- what the connection reports ------------------------------------------------------ */

static void
p_readable(struct conn *c)
{
    switch (c->stage) {
    case CS_HEAD:
    case CS_IDLE:
        read_heads(c);
        break;
    case CS_FORWARD:
        exchange_client_readable(c->x);
        break;
    case CS_BODY:
        if (inspect_feed(c->inspect, bufferevent_get_input(c->bev), c->head->head_len,
                         c->client_eof) == INSPECT_READY)
            decided(c);
        break;
    case CS_LOCALBODY:
        ack_body(c);
        break;
    default:
        break; /* the bytes wait in the input buffer (its watermark bounds them) */
    }
}

static void
p_writable(struct conn *c)
{
    if (c->stage == CS_FORWARD)
        exchange_client_writable(c->x);
}

static void
p_eof(struct conn *c)
{
    switch (c->stage) {
    case CS_FORWARD:
        exchange_client_eof(c->x);
        /* A client that leaves during the response ends it (and the origin's stream) now. */
        if (c->req->resp_head_done)
            return conn_close(c, "client closed during the response");
        /* fall through */
    case CS_UPSTREAM:
        /* A half-closed client may still want its answer; an incomplete request cannot be sent. */
        if (!c->req->body_done)
            conn_close(c, "client closed mid-request");
        break;
    case CS_HEAD:
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            return read_heads(c);
        conn_close(c, "client closed");
        break;
    default:
        conn_close(c, "client closed");
        break;
    }
}

static void
p_timeout(struct conn *c, enum conn_timeout why)
{
    switch (why) {
    case CONN_TIMEOUT_HELD:
        /* End of an authentication back-off: the held 407 goes. */
        return answer_end(c, AUDIT_AUTH_FAIL, 407);
    case CONN_TIMEOUT_HEADER:
        if (c->stage == CS_HEAD && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            return bad_head(c, 408, "Request timeout", "The request head did not arrive in time.",
                            evbuffer_get_length(bufferevent_get_input(c->bev)));
        return conn_close(c, "header timeout");
    case CONN_TIMEOUT_IDLE:
        if ((c->stage == CS_FORWARD || c->stage == CS_UPSTREAM) && !c->req->resp_head_done) {
            exchange_free(c->x);
            c->x = NULL;
            upstream_cancel(c->ureq);
            c->ureq = NULL;
            metrics_upstream_error("http_response_timeout");
            return answer_error(c, 504, "http_response_timeout", "Gateway timeout",
                                "The origin did not answer in time.", 1);
        }
        return conn_close(c, "idle timeout");
    }
}

/*
 * The connection is going: a request torn down mid-flight (timeout, client
 * or origin error, shutdown) still gets its one line.  Decided requests keep
 * their action and the status already sent (null if none); undecided ones
 * are errors.  An intercepted CONNECT ends with its connection: its own line.
 */
static void
p_closing(struct conn *c)
{
    if (c->req) {
        struct req *r = c->req;
        answer_finish(c, r->action ? r->action : AUDIT_ERROR,
                      r->resp_head_done || r->is_connect ? r->status : -1);
    }
    if (c->tunnel_req) {
        if (c->tls_failed)
            c->tunnel_req->action = AUDIT_ERROR;
        answer_audit(c, c->tunnel_req, c->tunnel_req->action, 200);
        req_free(c->tunnel_req);
        c->tunnel_req = NULL;
    }
}

const struct conn_ops pipeline_ops = {p_readable, p_writable, p_eof, p_timeout, p_closing};
