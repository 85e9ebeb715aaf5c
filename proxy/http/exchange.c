/*
 * Forwarding one request to its origin and relaying the response (see
 * exchange.h for the contract).
 *
 * Buffers are bounded: each output by disabling the reading side while the
 * other side's output is above EXCHANGE_HIGH_WATER, resumed by the write
 * callback below the low watermark.  Body bytes move between evbuffers by
 * reference (evbuffer_remove_buffer), never copied into our own memory.
 */
#include "aigate/http/exchange.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/core/log.h"
#include "aigate/http/http_msg.h"
#include "aigate/http/request.h"
#include "aigate/net/tlsbev.h"
#include "aigate/net/upstream.h"
#include "aigate/ws/ws.h"

#define EXCHANGE_HIGH_WATER (256 * 1024)
#define EXCHANGE_LOW_WATER (64 * 1024)

struct exchange {
    const struct exchange_env *env;
    struct req *r;
    struct bufferevent *client;
    struct ssl_ctx_st *tls;
    const struct exchange_ops *ops;
    void *arg;
    struct upstream_req *ureq;
    struct upstream *up;
    struct event *kick; /* reports an immediate failure from the loop */
    struct exchange_error kick_err;
    unsigned client_eof : 1, over : 1;
};

/*
 * Texts of a failure report: ops->failed uses them before it returns, so
 * one pair per thread serves every exchange (and none carries 800 bytes it
 * almost never needs).
 */
static _Thread_local char x_perror[320], x_detail[512];

static void upstream_ready(struct upstream *u, enum upstream_err err, const char *detail,
                           void *arg);

static void
release_upstream(struct exchange *x, int reusable)
{
    upstream_cancel(x->ureq);
    x->ureq = NULL;
    if (x->up) {
        upstream_release(x->up, reusable);
        x->up = NULL;
    }
}

static void
fail(struct exchange *x, int status, const char *perror, const char *title, const char *detail,
     int close)
{
    struct exchange_error e = {status, perror, title, detail, close};
    release_upstream(x, 0);
    x->over = 1;
    x->ops->failed(x->arg, &e);
}

static void
abort_exchange(struct exchange *x, const char *why)
{
    release_upstream(x, 0);
    x->over = 1;
    x->ops->aborted(x->arg, why);
}

static void
kick_failed(evutil_socket_t fd, short what, void *arg)
{
    struct exchange *x = arg;
    (void)fd;
    (void)what;
    x->over = 1;
    x->ops->failed(x->arg, &x->kick_err);
}

/* Ask the pool for a connection; on failure report it from the loop. */
static void
connect_origin(struct exchange *x, int allow_reuse)
{
    struct req *r = x->r;
    x->ureq = upstream_get(x->env->pool, r->url.host, r->url.port, x->tls, allow_reuse,
                           upstream_ready, x);
    if (x->ureq)
        return;
    x->kick_err = (struct exchange_error){503, "proxy_internal_error", "Out of resources",
                                          "The proxy could not start a connection.", 1};
    event_active(x->kick, EV_TIMEOUT, 0);
}

/* Move request body bytes from the client to the origin. */
static void
pump_request(struct exchange *x)
{
    struct req *r = x->r;
    struct evbuffer *in = bufferevent_get_input(x->client);
    struct evbuffer *out = bufferevent_get_output(x->up->bev);
    size_t avail = evbuffer_get_length(in);
    size_t n = 0;

    if (r->body_done || avail == 0)
        goto pressure;
    if (r->body == HTTP_BODY_LENGTH) {
        n = avail < r->body_left ? avail : (size_t)r->body_left;
        r->body_left -= n;
        if (r->body_left == 0)
            r->body_done = 1;
    } else {
        struct evbuffer_iovec vec[16];
        size_t scanned = 0;
        while (scanned < avail) {
            struct evbuffer_ptr pos;
            evbuffer_ptr_set(in, &pos, scanned, EVBUFFER_PTR_SET);
            int nv = evbuffer_peek(in, (ev_ssize_t)(avail - scanned), &pos, vec, 16);
            int done = 0;
            for (int i = 0; i < nv && i < 16; i++) {
                size_t used = 0;
                int rc = http_chunk_feed(&r->chunk, vec[i].iov_base, vec[i].iov_len, &used);
                scanned += used;
                if (rc == HTTP_PARSE_ERROR) {
                    if (!r->resp_head_done)
                        fail(x, 400, "http_request_error", "Bad request",
                             "The chunked request body is malformed.", 1);
                    else
                        abort_exchange(x, "bad chunked request body");
                    return;
                }
                if (rc == HTTP_PARSE_OK) {
                    r->body_done = 1;
                    done = 1;
                    break;
                }
            }
            if (done || nv <= 0)
                break;
        }
        n = scanned;
    }
    evbuffer_remove_buffer(in, out, n);
    r->bytes_in += n;
    r->body_sent += n;
pressure:
    if (!r->body_done && evbuffer_get_length(out) > EXCHANGE_HIGH_WATER)
        bufferevent_disable(x->client, EV_READ);
}

int
exchange_chunked_prefix_ok(struct evbuffer *in, const struct req *r)
{
    struct http_chunk tmp = r->chunk;
    struct evbuffer_iovec vec[32];
    int nv = evbuffer_peek(in, -1, NULL, vec, 32);
    for (int i = 0; i < nv && i < 32; i++) {
        size_t used = 0;
        int rc = http_chunk_feed(&tmp, vec[i].iov_base, vec[i].iov_len, &used);
        if (rc == HTTP_PARSE_ERROR)
            return 0;
        if (rc == HTTP_PARSE_OK)
            break;
    }
    return 1;
}

static void
send_request(struct exchange *x)
{
    struct req *r = x->r;
    struct evbuffer *out = bufferevent_get_output(x->up->bev);
    size_t hl = evbuffer_get_length(r->head);
    if (r->body == HTTP_BODY_CHUNKED &&
        !exchange_chunked_prefix_ok(bufferevent_get_input(x->client), r))
        return fail(x, 400, "http_request_error", "Bad request",
                    "The chunked request body is malformed.", 1);
    evbuffer_add(out, evbuffer_pullup(r->head, (ev_ssize_t)hl), hl);
    pump_request(x);
}

static void
dechunk_data(void *arg, const char *p, size_t n)
{
    struct exchange *x = arg;
    evbuffer_add(bufferevent_get_output(x->client), p, n);
    x->r->bytes_out += n;
}

/* Hand src (emptied) to the client in one piece: one TLS record when intercepted.  Counted. */
static void
client_out(struct exchange *x, struct evbuffer *src)
{
    x->r->bytes_out += evbuffer_get_length(src);
    evbuffer_add_buffer(bufferevent_get_output(x->client), src);
}

/* The response (and the request) is complete. */
static void
response_done(struct exchange *x)
{
    struct req *r = x->r;
    release_upstream(x, r->origin_keep && r->body_done && r->rbody != HTTP_BODY_EOF);
    if (!r->body_done)
        r->keep_alive = 0;
    x->over = 1;
    x->ops->done(x->arg);
}

/* Move response body bytes from the origin to the client. */
static void
pump_response(struct exchange *x)
{
    struct req *r = x->r;
    struct evbuffer *in = bufferevent_get_input(x->up->bev);
    struct evbuffer *out = bufferevent_get_output(x->client);
    size_t avail = evbuffer_get_length(in);

    if (r->rbody == HTTP_BODY_LENGTH) {
        size_t n = avail < r->rleft ? avail : (size_t)r->rleft;
        evbuffer_remove_buffer(in, out, n);
        r->rleft -= n;
        r->bytes_out += n;
        if (r->rleft == 0)
            return response_done(x);
    } else if (r->rbody == HTTP_BODY_CHUNKED) {
        struct evbuffer_iovec vec[16];
        size_t scanned = 0;
        int rc = HTTP_PARSE_AGAIN;
        while (scanned < avail && rc == HTTP_PARSE_AGAIN) {
            struct evbuffer_ptr pos;
            evbuffer_ptr_set(in, &pos, scanned, EVBUFFER_PTR_SET);
            int nv = evbuffer_peek(in, (ev_ssize_t)(avail - scanned), &pos, vec, 16);
            if (nv <= 0)
                break;
            for (int i = 0; i < nv && i < 16 && rc == HTTP_PARSE_AGAIN; i++) {
                size_t used = 0;
                rc = http_chunk_feed(&r->rchunk, vec[i].iov_base, vec[i].iov_len, &used);
                scanned += used;
            }
        }
        if (rc == HTTP_PARSE_ERROR)
            return abort_exchange(x, "bad chunked response from origin");
        if (r->dechunk) {
            evbuffer_drain(in, scanned);
        } else {
            evbuffer_remove_buffer(in, out, scanned);
            r->bytes_out += scanned;
        }
        if (rc == HTTP_PARSE_OK)
            return response_done(x);
    } else if (r->rbody == HTTP_BODY_EOF) {
        evbuffer_remove_buffer(in, out, avail);
        r->bytes_out += avail;
    } else {
        return response_done(x);
    }
    if (evbuffer_get_length(out) > EXCHANGE_HIGH_WATER)
        bufferevent_disable(x->up->bev, EV_READ);
}

/*
 * The origin's 101 to a WebSocket upgrade: the permessage-deflate it agreed
 * to, the 101 to the client, and the origin connection handed to the owner.
 * -1 (the exchange is over either way).
 */
static int
switch_protocols(struct exchange *x, const char *buf, const struct http_head *h)
{
    struct req *r = x->r;
    struct evbuffer *in = bufferevent_get_input(x->up->bev);
    struct ws_deflate pmd = {.client_max_window_bits = 15, .server_max_window_bits = 15};
    int readable = 1;
    for (unsigned i = 0; i < h->nhdr; i++)
        if (http_span_ieq(buf, h->hdr[i].name, "sec-websocket-extensions") &&
            ws_ext_agreed(buf + h->hdr[i].value.off, h->hdr[i].value.len, &pmd) < 0)
            readable = 0;
    if (!readable && r->ws_inspect) {
        log_warnx("origin %s:%u agreed to a WebSocket extension whose frames cannot be inspected",
                  r->url.host, r->url.port);
        fail(x, 502, "http_protocol_error", "Bad gateway",
             "The site agreed to a WebSocket extension the proxy cannot inspect.", 1);
        return -1;
    }
    if (!readable)
        memset(&pmd, 0, sizeof(pmd));
    if (http_msg_ws_switch_head(x->env->scratch, buf, h) < 0) {
        fail(x, 500, "proxy_internal_error", "Internal error", "Out of memory.", 1);
        return -1;
    }
    client_out(x, x->env->scratch);
    evbuffer_drain(in, h->head_len);
    r->status = 101;
    r->resp_head_done = 1;
    r->keep_alive = 0;
    r->upgraded = 1;
    struct upstream *u = x->up;
    x->up = NULL;
    x->over = 1;
    bufferevent_setcb(u->bev, NULL, NULL, NULL, NULL);
    bufferevent_disable(u->bev, EV_READ | EV_WRITE);
    x->ops->upgraded(x->arg, u, &pmd);
    return -1;
}

/* Parse response heads (1xx ones are passed on) until the final one; 0 or -1 when over. */
static int
parse_response(struct exchange *x)
{
    struct req *r = x->r;
    struct evbuffer *in = bufferevent_get_input(x->up->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        size_t max = x->env->max_head;
        size_t look = len < max + 1 ? len : max + 1;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        struct http_head h;
        memset(&h, 0, sizeof(h));
        int rc = http_parse_response(buf, look, max, r->is_head, &h);
        if (rc == HTTP_PARSE_AGAIN && look <= max)
            return 0;
        if (rc != HTTP_PARSE_OK) {
            log_warnx("origin %s:%u sent a malformed response: %s", r->url.host, r->url.port,
                      h.error ? h.error : "head too large");
            fail(x, 502, "http_response_incomplete", "Bad gateway",
                 "The origin sent a malformed response.", 1);
            return -1;
        }
        if (h.status >= 100 && h.status < 200) {
            if (h.status == 101) {
                if (r->ws_upgrade && http_msg_ws_accepted(buf, &h))
                    return switch_protocols(x, buf, &h);
                fail(x, 502, "http_protocol_error", "Bad gateway",
                     r->ws_upgrade ? "The origin switched to a protocol other than WebSocket."
                                   : "The origin switched protocols, which this proxy does not "
                                     "relay.",
                     1);
                return -1;
            }
            /* A "100 Continue" we already gave while inspecting the body is not repeated. */
            if (r->minor >= 1 && !(h.status == 100 && r->continue_sent)) {
                http_msg_response_head(x->env->scratch, buf, &h, r->minor, 1, 0);
                client_out(x, x->env->scratch);
            }
            evbuffer_drain(in, h.head_len);
            continue;
        }
        r->status = h.status;
        r->rbody = h.body;
        r->rleft = h.content_length;
        r->origin_keep = h.keep_alive;
        if (h.body == HTTP_BODY_EOF || *x->env->stopping || x->client_eof)
            r->keep_alive = 0;
        r->dechunk = h.body == HTTP_BODY_CHUNKED && r->minor == 0;
        if (r->dechunk)
            r->keep_alive = 0;
        if (h.body == HTTP_BODY_CHUNKED) {
            http_chunk_init(&r->rchunk);
            if (r->dechunk) {
                r->rchunk.on_data = dechunk_data;
                r->rchunk.arg = x;
            }
        }
        http_msg_response_head(x->env->scratch, buf, &h, r->minor, r->keep_alive, r->dechunk);
        client_out(x, x->env->scratch);
        evbuffer_drain(in, h.head_len);
        r->resp_head_done = 1;
        /*
         * The body is bounded by back-pressure (pump_response), not by the
         * head's read limit, which under a TLS filter would leave records
         * unread below it until the origin sent more: a stream's last event,
         * or the bytes before its close.
         */
        tlsbev_read_limit(x->up->bev, 0);
        return 0;
    }
}

static void
up_read(struct bufferevent *bev, void *arg)
{
    struct exchange *x = arg;
    (void)bev;
    if (x->over)
        return;
    x->ops->activity(x->arg);
    if (!x->r->resp_head_done && (parse_response(x) < 0 || !x->r->resp_head_done))
        return;
    pump_response(x);
}

static void
up_write(struct bufferevent *bev, void *arg)
{
    struct exchange *x = arg;
    (void)bev;
    if (x->over)
        return;
    x->ops->activity(x->arg);
    if (!x->r->body_done && !x->client_eof)
        tlsbev_read_on(x->client, 0);
}

static void
up_event(struct bufferevent *bev, short what, void *arg)
{
    struct exchange *x = arg;
    struct req *r = x->r;
    (void)bev;
    if (x->over || !(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (r->resp_head_done) {
        if (r->rbody == HTTP_BODY_EOF) {
            pump_response(x);
            r->origin_keep = 0;
            response_done(x);
            return;
        }
        abort_exchange(x, "origin closed mid-response");
        return;
    }
    if (evbuffer_get_length(bufferevent_get_input(x->up->bev)) == 0 && x->up->reused &&
        !r->retried && r->body_sent == 0 && r->body_done) {
        /* A pooled connection the origin had closed: try once on a fresh one. */
        r->retried = 1;
        release_upstream(x, 0);
        connect_origin(x, 0);
        return;
    }
    log_debug("origin %s:%u closed before answering (%s%s)", r->url.host, r->url.port,
              (what & BEV_EVENT_ERROR) ? "error" : "eof",
              x->up->reused ? ", pooled connection" : "");
    fail(x, 502, "http_response_incomplete", "Bad gateway",
         "The origin closed the connection without a complete response.", 1);
}

static void
upstream_ready(struct upstream *u, enum upstream_err err, const char *tls_detail, void *arg)
{
    struct exchange *x = arg;
    struct req *r = x->r;
    x->ureq = NULL;
    if (err == UPSTREAM_ERR_TLS) {
        const char *why = tls_detail ? tls_detail : "handshake failed";
        snprintf(x_detail, sizeof(x_detail),
                 "The certificate of %s could not be verified (%s). The proxy refuses to pass "
                 "on a connection it cannot trust.",
                 r->url.host, why);
        log_warnx("origin %s:%u: TLS verification failed: %s", r->url.host, r->url.port, why);
        snprintf(x_perror, sizeof(x_perror), "tls_certificate_error; details=\"%s\"", why);
        return fail(x, 502, x_perror, "Bad gateway", x_detail, !r->body_done);
    }
    if (err != UPSTREAM_OK) {
        int status = err == UPSTREAM_ERR_TIMEOUT ? 504 : err == UPSTREAM_ERR_SELF ? 508 : 502;
        snprintf(x_detail, sizeof(x_detail), "%s %s:%u: %s",
                 err == UPSTREAM_ERR_DNS ? "Cannot resolve" : "Cannot connect to", r->url.host,
                 r->url.port,
                 err == UPSTREAM_ERR_DNS       ? "the name does not resolve"
                 : err == UPSTREAM_ERR_TIMEOUT ? "the connection timed out"
                 : err == UPSTREAM_ERR_SELF    ? "that is this proxy itself"
                                               : "the connection was refused");
        return fail(x, status, upstream_err_name(err),
                    status == 504 ? "Gateway timeout" : "Bad gateway", x_detail, !r->body_done);
    }
    x->up = u;
    x->ops->activity(x->arg);
    bufferevent_setcb(u->bev, up_read, up_write, up_event, x);
    bufferevent_setwatermark(u->bev, EV_WRITE, EXCHANGE_LOW_WATER, 0);
    tlsbev_read_limit(u->bev, x->env->max_head + 4096);
    tlsbev_read_on(u->bev, EV_WRITE);
    send_request(x);
}

struct exchange *
exchange_start(const struct exchange_env *env, struct req *r, struct bufferevent *client,
               struct ssl_ctx_st *tls, const struct exchange_ops *ops, void *arg)
{
    struct exchange *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->env = env;
    x->r = r;
    x->client = client;
    x->tls = tls;
    x->ops = ops;
    x->arg = arg;
    if (!(x->kick = event_new(bufferevent_get_base(client), -1, 0, kick_failed, x))) {
        free(x);
        return NULL;
    }
    connect_origin(x, 1);
    return x;
}

void
exchange_free(struct exchange *x)
{
    if (!x)
        return;
    release_upstream(x, 0);
    event_free(x->kick);
    free(x);
}

void
exchange_client_readable(struct exchange *x)
{
    if (x->up && !x->over && !x->r->body_done)
        pump_request(x);
}

void
exchange_client_writable(struct exchange *x)
{
    if (x->up && !x->over && x->r->resp_head_done)
        tlsbev_read_on(x->up->bev, 0);
}

void
exchange_client_eof(struct exchange *x)
{
    x->client_eof = 1;
}
