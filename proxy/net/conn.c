/*
 * Client connections: the socket and its TLS, the peer, the timers, the
 * keep-alive loop and the one teardown (see conn.h).  Everything about
 * requests is the owner's (pipeline.c), reached only through c->ops.
 */
#include "aigate/net/conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aigate/admin/metrics.h"
#include "aigate/core/config.h"
#include "aigate/core/log.h"
#include "aigate/http/request.h"
#include "aigate/net/bevio.h"
#include "aigate/net/proxyproto.h"
#include "aigate/net/tlsbev.h"
#include "aigate/net/worker.h"

#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER (64 * 1024)

static void client_read(struct bufferevent *bev, void *arg);
static void client_write(struct bufferevent *bev, void *arg);
static void client_event(struct bufferevent *bev, short what, void *arg);
static void conn_timer(evutil_socket_t fd, short what, void *arg);

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

void
conn_timer_header(struct conn *c)
{
    c->timer_header = 1;
    c->deadline_base_ms = now_ms(c);
    timer_arm(c, c->cfg->limits.header_timeout_ms);
}

void
conn_timer_idle(struct conn *c)
{
    c->timer_header = 0;
    c->deadline_base_ms = now_ms(c);
    timer_arm(c, c->cfg->limits.idle_timeout_ms);
}

void
conn_touch(void *arg)
{
    struct conn *c = arg;
    if (!c->timer_header)
        c->deadline_base_ms = now_ms(c);
}

void
conn_hold(struct conn *c, unsigned ms)
{
    /* Reading goes on (and discards) so a client that gives up frees its slot at once. */
    bufferevent_disable(c->bev, EV_WRITE);
    c->stage = CS_HELD;
    c->timer_header = 0;
    timer_arm(c, (int)ms);
}

/* ---- life ---------------------------------------------------------------- */

struct conn *
conn_new(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
         const struct conn_ops *ops)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        atomic_fetch_sub(&rt.nconns, 1);
        return NULL;
    }
    c->w = w;
    c->ops = ops;
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
    conn_own_bev(c);
    bevio_set(c->bev);
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->cfg->limits.max_header_bytes + 4096);
    bufferevent_setwatermark(c->bev, EV_WRITE, CONN_LOW_WATER, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->stage = cidr_list_match(&c->cfg->proxy_protocol, sa) ? CS_PROXYHDR : CS_HEAD;
    conn_timer_header(c);
    return c;
}

void
conn_own_bev(struct conn *c)
{
    bufferevent_setcb(c->bev, client_read, client_write, client_event, c);
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
    c->ops->readable(c);
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

void
conn_fail(struct conn *c, const char *reason)
{
    c->failing = reason;
    c->stage = CS_CLOSING;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    event_active(c->timer, EV_TIMEOUT, 0);
}

void
conn_finish(struct conn *c, int keep)
{
    if (!keep) {
        c->stage = CS_CLOSING;
        conn_timer_idle(c);
        bufferevent_disable(c->bev, EV_READ);
        /* Never free here: callers up the stack still hold c.  The write callback closes. */
        bufferevent_trigger(c->bev, EV_WRITE,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    c->stage = CS_IDLE;
    conn_timer_idle(c);
    tlsbev_read_on(c->bev, 0);
    /* The next pipelined request, from the loop: a long pipeline cannot recurse. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void
conn_close(struct conn *c, const char *reason)
{
    c->dying = 1;
    log_debug("conn %s closed: %s", c->peer_str, reason);
    c->ops->closing(c);
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

void
conn_send(struct conn *c, struct evbuffer *out)
{
    if (c->req)
        c->req->bytes_out += evbuffer_get_length(out);
    evbuffer_add_buffer(bufferevent_get_output(c->bev), out);
}

void
conn_drain_head(struct conn *c)
{
    if (c->head_pending) {
        evbuffer_drain(bufferevent_get_input(c->bev), c->head_pending);
        c->head_pending = 0;
    }
}

int
conn_start_tls(struct conn *c, SSL *ssl)
{
    struct bufferevent *tls = tlsbev_start(c->w->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING);
    if (!tls) {
        conn_fail(c, "cannot start TLS to the client");
        return -1;
    }
    struct bufferevent *under = bufferevent_get_underlying(tls);
    if (under) {
        /* Bound what the TLS layer queues below us; back-pressure then applies to its output. */
        bufferevent_setwatermark(under, EV_WRITE, 0, CONN_HIGH_WATER);
        evbuffer_add_cb(bufferevent_get_output(under), under_out_cb, c);
    }
    c->bev = tls;
    conn_own_bev(c);
    bevio_set(c->bev);
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->cfg->limits.max_header_bytes + 4096);
    bufferevent_setwatermark(c->bev, EV_WRITE, CONN_LOW_WATER, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->intercept = 1;
    return 0;
}

/* ---- callbacks --------------------------------------------------------------------- */

static void
client_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    conn_touch(c);
    switch (c->stage) {
    case CS_PROXYHDR:
        read_proxy_header(c);
        break;
    case CS_HELD:
    case CS_CLOSING:
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
        break;
    default:
        c->ops->readable(c);
        break;
    }
}

static void
client_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    conn_touch(c);
    if (c->stage == CS_CLOSING && flushed(c))
        conn_close(c, "done");
    else if (c->stage != CS_CLOSING)
        c->ops->writable(c);
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
        c->tls_failed = 1;
        metrics_tls_handshake_failed();
        return conn_close(c, "client TLS handshake failed");
    }
    if (what & BEV_EVENT_ERROR)
        return conn_close(c, "client error");
    if (!(what & BEV_EVENT_EOF))
        return;
    c->client_eof = 1;
    c->ops->eof(c);
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
        bufferevent_enable(c->bev, EV_WRITE);
        return c->ops->timeout(c, CONN_TIMEOUT_HELD);
    }
    if (c->timer_header) {
        if (c->stage == CS_PROXYHDR) {
            atomic_fetch_add_explicit(&rt.proxy_refused, 1, memory_order_relaxed);
            return conn_close(c, "no PROXY header in time");
        }
        return c->ops->timeout(c, CONN_TIMEOUT_HEADER);
    }
    long left = c->deadline_base_ms + c->cfg->limits.idle_timeout_ms - now_ms(c);
    if (left > 0) {
        timer_arm(c, (int)left);
        return;
    }
    c->ops->timeout(c, CONN_TIMEOUT_IDLE);
}
