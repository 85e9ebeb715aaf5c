/*
 * Client connections: the request pipeline (see conn.h for the stages).
 *
 * A request is read (resumable parse), identified (identity.c), decided
 * (conn_decide acts on the gate's verdict, gate.h; the body is awaited
 * when a dlp rule needs it), then
 * answered here (pages, errors, the acknowledgement form), relayed to its
 * origin (exchange.c), tunnelled (tunnel.c) or intercepted (tls_mitm.c); a
 * WebSocket the origin accepted is relayed like a tunnel (wsrelay.c when
 * its messages are inspected).
 * Keep-alive: one exchange at a time, later pipelined requests wait in the
 * input buffer.  Every request ends in req_end() (or in conn_close()'s
 * call of req_finish()), which writes its audit line.
 *
 * Invariant: every path that ends a connection goes through conn_close(),
 * and nothing frees a connection from inside one of its own callbacks'
 * callers' frames but conn_close() itself at the end of a callback.
 */
#include "aigate/conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aigate/audit.h"
#include "aigate/catalog.h"
#include "aigate/caution.h"
#include "aigate/config.h"
#include "aigate/dircache.h"
#include "aigate/dirgroups.h"
#include "aigate/dlp.h"
#include "aigate/exchange.h"
#include "aigate/gate.h"
#include "aigate/http_msg.h"
#include "aigate/identity.h"
#include "aigate/inspect.h"
#include "aigate/log.h"
#include "aigate/metrics.h"
#include "aigate/policy.h"
#include "aigate/proxyproto.h"
#include "aigate/request.h"
#include "aigate/respond.h"
#include "aigate/tls_mitm.h"
#include "aigate/tunnel.h"
#include "aigate/upstream.h"
#include "aigate/users.h"
#include "aigate/worker.h"
#include "aigate/ws.h"
#include "aigate/wsrelay.h"

#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER (64 * 1024)

static void client_read(struct bufferevent *bev, void *arg);
static void client_write(struct bufferevent *bev, void *arg);
static void client_event(struct bufferevent *bev, short what, void *arg);
static void conn_timer(evutil_socket_t fd, short what, void *arg);
static void conn_read_heads(struct conn *c);
static void conn_decided(struct conn *c);

/* A request's groups once the directory's were read: the list points into ans.set. */
struct conn_groups {
    struct dirgroups_answer ans;
    struct dirgroups_list list;
};

/* ---- timers -------------------------------------------------------------- */

static long
now_ms(struct conn *c)
{
    struct timeval tv;
    event_base_gettimeofday_cached(c->w->base, &tv);
    return (long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void
timer_arm(struct conn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* Header timeout: a fixed deadline from the start of the head. */
static void
timer_header(struct conn *c)
{
    c->timer_header = 1;
    c->deadline_base_ms = now_ms(c);
    timer_arm(c, c->cfg->limits.header_timeout_ms);
}

/* Idle timeout: a sliding deadline, pushed back by touch(). */
static void
timer_idle(struct conn *c)
{
    c->timer_header = 0;
    c->deadline_base_ms = now_ms(c);
    timer_arm(c, c->cfg->limits.idle_timeout_ms);
}

static void
touch(void *arg)
{
    struct conn *c = arg;
    if (!c->timer_header)
        c->deadline_base_ms = now_ms(c);
}

/* ---- life ---------------------------------------------------------------- */

struct conn *
conn_new(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        atomic_fetch_sub(&rt.nconns, 1);
        return NULL;
    }
    c->w = w;
    c->cfg = config_ref(w->cfg);
    memcpy(&c->peer, sa, salen < sizeof(c->peer) ? salen : sizeof(c->peer));
    netaddr_ntop(sa, c->peer_str, sizeof(c->peer_str));
    c->allowed = cidr_list_match(&c->cfg->client_networks, sa);
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(w->base, conn_timer, c);
    if (!c->bev || !c->timer) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            close(fd);
        if (c->timer)
            event_free(c->timer);
        config_unref(c->cfg);
        free(c);
        atomic_fetch_sub(&rt.nconns, 1);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&w->conns, c, entry);
    w->nconns++;
    bufferevent_setcb(c->bev, client_read, client_write, client_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->cfg->limits.max_header_bytes + 4096);
    bufferevent_setwatermark(c->bev, EV_WRITE, CONN_LOW_WATER, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->stage = cidr_list_match(&c->cfg->proxy_protocol, sa) ? CS_PROXYHDR : CS_HEAD;
    timer_header(c);
    return c;
}

/*
 * The PROXY header of a trusted balancer's connection (SPEC 10): the client
 * it names is the connection's peer from now on, for client_networks,
 * address users, rules and the audit line.  Anything but a valid header
 * closes the connection: a listed peer is never read as if it had none.
 */
static void
read_proxy_header(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    size_t look = len < PROXYPROTO_MAX ? len : PROXYPROTO_MAX;
    struct proxyproto_hdr ph;
    int rc = proxyproto_parse(evbuffer_pullup(in, (ev_ssize_t)look), look, &ph);
    if (rc == PROXYPROTO_AGAIN)
        return;
    if (rc == PROXYPROTO_INVALID) {
        atomic_fetch_add_explicit(&rt.proxy_refused, 1, memory_order_relaxed);
        log_warnx("connection from %s (a proxy_protocol peer) without a valid PROXY header: %s",
                  c->peer_str, ph.error ? ph.error : "malformed");
        return conn_close(c, "invalid PROXY header");
    }
    evbuffer_drain(in, ph.len);
    if (ph.has_addr) {
        memset(&c->peer, 0, sizeof(c->peer));
        memcpy(&c->peer, &ph.src, ph.addrlen < sizeof(c->peer) ? ph.addrlen : sizeof(c->peer));
        netaddr_ntop((struct sockaddr *)&c->peer, c->peer_str, sizeof(c->peer_str));
        c->allowed = cidr_list_match(&c->cfg->client_networks, (struct sockaddr *)&c->peer);
    }
    c->stage = CS_HEAD;
    conn_read_heads(c);
}

/* The request's audit line (SPEC 7), once. */
static void
req_audit(struct conn *c, struct req *r, enum audit_action action, int status)
{
    const char *tls = r == c->tunnel_req || (c->intercept && !r->is_connect) ? "intercept"
                      : r->is_connect                                        ? "tunnel"
                                                                             : "none";
    if (!r->audited)
        req_audit_emit(rt.audit, r, c->peer_str, tls, c->cfg->dlp, action, status);
    r->audited = 1;
}

/* Drop the current head from the input, once. */
static void
drain_head(struct conn *c)
{
    if (c->head_pending) {
        evbuffer_drain(bufferevent_get_input(c->bev), c->head_pending);
        c->head_pending = 0;
    }
}

/* The request's directory lookup, groups and mutual-authentication token go. */
static void
req_identity_free(struct conn *c)
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
static void
req_finish(struct conn *c, enum audit_action action, int status)
{
    struct req *r = c->req;
    if (!r)
        return;
    req_audit(c, r, action, status);
    identity_cancel(c->idwait);
    req_identity_free(c);
    caution_ack_cancel(c->ackwait);
    ack_store_lookup_cancel(c->acklookup);
    inspect_free(c->inspect);
    exchange_free(c->x);
    if (c->tunnel || c->wsr) {
        tunnel_free(c->tunnel);
        wsrelay_free(c->wsr);
        bufferevent_setcb(c->bev, client_read, client_write, client_event, c);
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

/* 1 when everything written to the client has left the process (TLS layer included). */
static int
flushed(struct conn *c)
{
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
        return 0;
    struct bufferevent *under = c->intercept ? bufferevent_get_underlying(c->bev) : NULL;
    return !under || evbuffer_get_length(bufferevent_get_output(under)) == 0;
}

/*
 * The socket below an intercepted client drained: if we were only waiting
 * for that to close, wake the timer (never free from inside this callback).
 */
static void
under_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;
    if (c->stage == CS_CLOSING && !c->dying && info->n_deleted && evbuffer_get_length(buf) == 0)
        event_active(c->timer, EV_TIMEOUT, 0);
}

/*
 * A connection that cannot go on (out of memory) deep inside the pipeline:
 * closed from the loop, so no caller up the stack is left holding it.
 */
static void
conn_fail(struct conn *c, const char *reason)
{
    c->failing = reason;
    c->stage = CS_CLOSING;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    event_active(c->timer, EV_TIMEOUT, 0);
}

/*
 * The one end of a request: its audit line with action and status, then
 * the next request (keep-alive) or the close once the answer has left.
 */
static void
req_end(struct conn *c, enum audit_action action, int status)
{
    struct req *r = c->req;
    int keep = r && r->keep_alive && r->body_done && !c->client_eof && !c->w->stopping;
    drain_head(c);
    req_finish(c, action, status);
    if (!keep) {
        c->stage = CS_CLOSING;
        timer_idle(c);
        bufferevent_disable(c->bev, EV_READ);
        /* Never free here: callers up the stack still hold c.  The write callback closes. */
        bufferevent_trigger(c->bev, EV_WRITE,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    c->stage = CS_IDLE;
    timer_idle(c);
    bufferevent_enable(c->bev, EV_READ);
    /* The next pipelined request, from the loop: a long pipeline cannot recurse. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void
conn_close(struct conn *c, const char *reason)
{
    c->dying = 1;
    log_debug("conn %s closed: %s", c->peer_str, reason);
    if (c->req) {
        /*
         * Torn down mid-flight (timeout, client or origin error, shutdown):
         * still one line.  Decided requests keep their action and the status
         * already sent (null if none); undecided ones are errors.
         */
        struct req *r = c->req;
        req_finish(c, r->action ? r->action : AUDIT_ERROR,
                   r->resp_head_done || r->is_connect ? r->status : -1);
    }
    if (c->tunnel_req) {
        /* The intercepted CONNECT ends with the connection: its own audit line. */
        req_audit(c, c->tunnel_req, c->tunnel_req->action, 200);
        req_free(c->tunnel_req);
    }
    free(c->auth_user);
    if (c->bev)
        bufferevent_free(c->bev);
    event_free(c->timer);
    TAILQ_REMOVE(&c->w->conns, c, entry);
    c->w->nconns--;
    atomic_fetch_sub(&rt.nconns, 1);
    struct worker *w = c->w;
    config_unref(c->cfg);
    free(c);
    w->on_conn_gone(w);
}

void
conn_drain_all(struct worker *w)
{
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&w->conns); c; c = next) {
        next = TAILQ_NEXT(c, entry);
        if ((c->stage == CS_IDLE || c->stage == CS_HEAD || c->stage == CS_PROXYHDR) &&
            evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            conn_close(c, "shutdown");
    }
}

void
conn_free_all(struct worker *w)
{
    while (!TAILQ_EMPTY(&w->conns))
        conn_close(TAILQ_FIRST(&w->conns), "shutdown grace over");
}

/* ---- answers made here ------------------------------------------------------ */

/* Hand out (emptied) to the client in one piece (one TLS record when intercepted); counted. */
static void
send_out(struct conn *c, struct evbuffer *out)
{
    if (c->req)
        c->req->bytes_out += evbuffer_get_length(out);
    evbuffer_add_buffer(bufferevent_get_output(c->bev), out);
}

/* Whether the connection stays open after a local answer (close_after forces no). */
static int
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
static void
answer_sent(struct conn *c, enum audit_action action, int status)
{
    send_out(c, c->w->scratch);
    c->req->status = status;
    req_end(c, action, status);
}

/* An error answered by the proxy: page (HTML or text) and Proxy-Status. */
static void
answer_error(struct conn *c, int status, const char *perror, const char *title, const char *detail,
             int close_after)
{
    int keep = answer_keep(c, close_after);
    respond_error(c->w->scratch, c->cfg->pages, c->req, status, perror, title, detail, keep);
    answer_sent(c, AUDIT_ERROR, status);
}

static void
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
static void
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
static struct caution_req
caution_req_of(struct conn *c)
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

static void
answer_caution(struct conn *c)
{
    struct req *r = c->req;
    struct caution_req cr = caution_req_of(c);
    int keep = answer_keep(c, r->body != HTTP_BODY_NONE && !r->body_done);
    caution_page(c->w->scratch, &cr, time(NULL), keep);
    answer_sent(c, AUDIT_WARN, 403);
}

/* 407 asking to sign in; held back delay_ms after repeated failures (the audit line goes first). */
static void
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
    send_out(c, c->w->scratch);
    r->status = 407;
    /* Hold the answer back; reading goes on so a client that gives up frees its slot at once. */
    req_audit(c, r, AUDIT_AUTH_FAIL, 407);
    bufferevent_disable(c->bev, EV_WRITE);
    c->stage = CS_HELD;
    c->timer_header = 0;
    timer_arm(c, (int)delay_ms);
}

/* OPTIONS or TRACE with Max-Forwards: 0, answered here. */
static void
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
    conn_decided(c);
}

/* A complete head: the checks that need no identity, then who is asking. */
static void
conn_request(struct conn *c)
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
        timer_idle(c);
        return;
    }
    identity_done(c, rc, &res);
    free(res.reply);
}

/* ---- reading heads ------------------------------------------------------------------ */

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
conn_read_heads(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while ((c->stage == CS_HEAD || c->stage == CS_IDLE) && evbuffer_get_length(in) > 0) {
        if (c->stage == CS_IDLE) {
            c->stage = CS_HEAD;
            timer_header(c);
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
        conn_request(c);
    }
    if (c->stage == CS_IDLE || c->stage == CS_HEAD)
        bufferevent_enable(c->bev, EV_READ);
}

/* ---- decision -------------------------------------------------------------------------- */

enum decide_rc { DECIDE_GO, DECIDE_ANSWERED, DECIDE_WAIT };

static enum decide_rc conn_decide(struct conn *c, const char *buf, const struct http_head *h);

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
        bufferevent_setwatermark(c->bev, EV_READ, 0, cfg->limits.max_header_bytes + 4096);
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
        timer_idle(c);
        bufferevent_setwatermark(c->bev, EV_READ, 0,
                                 cfg->limits.max_header_bytes + inspect_raw_max(c->inspect) + 4096);
    }
    return DECIDE_WAIT;
}

static void intercept(struct conn *c);
static void ack_request(struct conn *c);
static void conn_decided(struct conn *c);

/* The store's answer: the decision goes on (unavailable: shown the caution again, never allowed).
 */
static void
ack_state_known(enum ack_lookup_answer a, void *arg)
{
    struct conn *c = arg;
    c->acklookup = NULL;
    c->req->ack_state = a == ACK_LOOKUP_YES ? GATE_ACK_YES : GATE_ACK_NO;
    conn_decided(c);
}

/* Ask the acknowledgement store whether this user acknowledged the service. */
static enum decide_rc
wait_ack_state(struct conn *c, time_t now)
{
    struct caution_req cr = caution_req_of(c);
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
    conn_decided(c);
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
        timer_idle(c);
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
conn_decide(struct conn *c, const char *buf, const struct http_head *h)
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

/* ---- acting on the decision ---------------------------------------------------------- */

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
    req_end(c, c->req->action, c->req->status);
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

static void tunnel_ended(void *arg, const char *why);
static const struct tunnel_ops tops;
static const struct wsrelay_ops wsops = {touch, ws_judge, tunnel_ended};

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
    touch(c);
}

static const struct exchange_ops xops = {touch, x_done, x_failed, x_aborted, x_upgraded};

/* Forward an allowed request to its origin. */
static void
forward(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = c->req;
    if (!(r->head = evbuffer_new()) ||
        http_msg_request_head(r->head, buf, h, &r->url, r->set_headers, r->nset_headers,
                              r->ws_upgrade) < 0)
        return answer_error(c, 500, "proxy_internal_error", "Internal error", "Out of memory.", 1);
    drain_head(c);
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
    timer_idle(c);
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
    req_end(c, c->req->action, c->req->status);
}

static const struct tunnel_ops tops = {touch, tunnel_ended};

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
    touch(c);
}

/* An allowed CONNECT that is not intercepted: connect, answer 200, relay. */
static void
tunnel_blind(struct conn *c)
{
    struct req *r = c->req;
    drain_head(c);
    free(c->head);
    c->head = NULL;
    c->stage = CS_UPSTREAM;
    timer_idle(c);
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
    drain_head(c);
    r->bytes_out += connect_established(c);
    req_identity_free(c); /* the requests inside have their own */
    /*
     * Deferred callbacks: OpenSSL can meet the peer's close (close_notify, or
     * EOF) in the same pass as the last records, and libevent reports it
     * before it hands those bytes over; deferred, the read callback runs
     * first (and nothing frees the bufferevent inside its own read).
     */
    struct bufferevent *fb =
        bufferevent_openssl_filter_new(c->w->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!fb)
        return conn_fail(c, "cannot start TLS to the client");
    bufferevent_openssl_set_allow_dirty_shutdown(fb, 1);
    /* Bound what the TLS layer queues below us; back-pressure then applies to fb's output. */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, CONN_HIGH_WATER);
    evbuffer_add_cb(bufferevent_get_output(c->bev), under_out_cb, c);
    c->bev = fb;
    bufferevent_setcb(c->bev, client_read, client_write, client_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->cfg->limits.max_header_bytes + 4096);
    bufferevent_setwatermark(c->bev, EV_WRITE, CONN_LOW_WATER, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->intercept = 1;
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
    timer_header(c);
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
    int keep = answer_keep(c, 0);
    respond_see_other(c->w->scratch, url, keep);
    answer_sent(c, AUDIT_ACK, 303);
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
    struct caution_req cr = caution_req_of(c);
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
    drain_head(c);
    c->stage = CS_LOCALBODY;
    ack_body(c);
}

/* Who is asking is known: decide (again, when the body came) and act. */
static void
conn_decided(struct conn *c)
{
    const char *buf = head_buf(c);
    const struct http_head *h = c->head;
    struct req *r = c->req;
    int mf;
    switch (conn_decide(c, buf, h)) {
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

/* ---- client callbacks ------------------------------------------------------------------ */

static void
client_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    touch(c);
    switch (c->stage) {
    case CS_PROXYHDR:
        read_proxy_header(c);
        break;
    case CS_HEAD:
    case CS_IDLE:
        conn_read_heads(c);
        break;
    case CS_FORWARD:
        exchange_client_readable(c->x);
        break;
    case CS_BODY:
        if (inspect_feed(c->inspect, bufferevent_get_input(c->bev), c->head->head_len,
                         c->client_eof) == INSPECT_READY)
            conn_decided(c);
        break;
    case CS_LOCALBODY:
        ack_body(c);
        break;
    case CS_HELD:
    case CS_CLOSING:
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
        break;
    case CS_IDENTITY:
    case CS_GROUPS:
    case CS_ACKSTATE:
    case CS_ACKWAIT:
    case CS_UPSTREAM:
    case CS_TUNNEL:
        break;
    }
}

static void
client_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    touch(c);
    if (c->stage == CS_CLOSING && flushed(c))
        conn_close(c, "done");
    else if (c->stage == CS_FORWARD)
        exchange_client_writable(c->x);
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if ((what & BEV_EVENT_ERROR) && c->intercept && c->tls_requests == 0) {
        /* Most often a client that does not trust the interception CA. */
        unsigned long e = bufferevent_get_openssl_error(c->bev);
        char why[256] = "connection closed during the handshake";
        if (e)
            ERR_error_string_n(e, why, sizeof(why));
        log_warnx("TLS interception of %s for client %s failed: %s (does the client trust the "
                  "aigate CA?)",
                  c->tls_host, c->peer_str, why);
        if (c->tunnel_req)
            c->tunnel_req->action = AUDIT_ERROR;
        metrics_tls_handshake_failed();
        return conn_close(c, "client TLS handshake failed");
    }
    if (what & BEV_EVENT_ERROR)
        return conn_close(c, "client error");
    if (!(what & BEV_EVENT_EOF))
        return;
    c->client_eof = 1;
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
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
            conn_read_heads(c);
            return;
        }
        conn_close(c, "client closed");
        break;
    default:
        conn_close(c, "client closed");
        break;
    }
}

static void
conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    if (c->failing)
        return conn_close(c, c->failing);
    if (c->stage == CS_CLOSING && flushed(c))
        return conn_close(c, "done");
    if (c->stage == CS_HELD) {
        /* End of an authentication back-off: release the held 407. */
        bufferevent_enable(c->bev, EV_WRITE);
        return req_end(c, AUDIT_AUTH_FAIL, 407);
    }
    if (c->timer_header) {
        if (c->stage == CS_PROXYHDR) {
            atomic_fetch_add_explicit(&rt.proxy_refused, 1, memory_order_relaxed);
            return conn_close(c, "no PROXY header in time");
        }
        if (c->stage == CS_HEAD && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            return bad_head(c, 408, "Request timeout", "The request head did not arrive in time.",
                            evbuffer_get_length(bufferevent_get_input(c->bev)));
        return conn_close(c, "header timeout");
    }
    long left = c->deadline_base_ms + c->cfg->limits.idle_timeout_ms - now_ms(c);
    if (left > 0) {
        timer_arm(c, (int)left);
        return;
    }
    if ((c->stage == CS_FORWARD || c->stage == CS_UPSTREAM) && !c->req->resp_head_done) {
        exchange_free(c->x);
        c->x = NULL;
        upstream_cancel(c->ureq);
        c->ureq = NULL;
        metrics_upstream_error("http_response_timeout");
        return answer_error(c, 504, "http_response_timeout", "Gateway timeout",
                            "The origin did not answer in time.", 1);
    }
    conn_close(c, "idle timeout");
}
