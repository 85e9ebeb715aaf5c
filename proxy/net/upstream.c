/*
 * Origin connections and the per-worker keep-alive pool.
 *
 * The pool is a small hash of idle connections keyed by "host:port", plus
 * one LRU list over all of them for eviction and the idle sweep.  An idle
 * connection is watched for reads: any byte or EOF from the origin while
 * idle means it is no longer usable, and it is closed.
 */
#include "aigate/net/upstream.h"
#include "aigate/core/hash.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/core/config.h"
#include "aigate/core/log.h"
#include "aigate/core/netaddr.h"
#include "aigate/net/bevio.h"
#include "aigate/net/tlsbev.h"
#include "aigate/net/worker.h"
#include "aigate/tls/tls_mitm.h"

#define POOL_BUCKETS 256
#define POOL_MAX_PER_KEY 256
#define POOL_MAX_TOTAL 1024
#define POOL_IDLE_MS 30000

struct upstream_pool {
    struct worker *w;
    struct upstream *bucket[POOL_BUCKETS];
    struct upstream *lru_head, *lru_tail; /* head = most recently idled */
    size_t nidle;
    struct event *sweep_ev;
};

struct upstream_req {
    struct upstream_pool *p;
    upstream_cb cb;
    void *arg;
    char host[256];
    uint16_t port;
    char key[272];
    struct evdns_getaddrinfo_request *dns;
    struct evutil_addrinfo *ai, *cur;
    struct bufferevent *bev;
    struct event *done_ev;
    struct upstream *result;
    enum upstream_err err;
    SSL_CTX *tls;
    char detail[160];
    int cancelled;
};

/* Keys come from clients (host:port): keyed hash (hash.h). */
static unsigned
pool_hash(const char *key)
{
    return (unsigned)(hash_bytes(key, strlen(key)) % POOL_BUCKETS);
}

static long
now_ms(struct upstream_pool *p)
{
    struct timeval tv;
    event_base_gettimeofday_cached(p->w->base, &tv);
    return (long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void
pool_unlink(struct upstream *u)
{
    struct upstream_pool *p = u->pool;
    unsigned b = u->bucket;
    if (u->prev_idle)
        u->prev_idle->next_idle = u->next_idle;
    else
        p->bucket[b] = u->next_idle;
    if (u->next_idle)
        u->next_idle->prev_idle = u->prev_idle;
    if (u->lru_prev)
        u->lru_prev->lru_next = u->lru_next;
    else
        p->lru_head = u->lru_next;
    if (u->lru_next)
        u->lru_next->lru_prev = u->lru_prev;
    else
        p->lru_tail = u->lru_prev;
    u->next_idle = u->prev_idle = u->lru_next = u->lru_prev = NULL;
    p->nidle--;
}

static void
upstream_free(struct upstream *u)
{
    if (u->bev)
        bufferevent_free(u->bev);
    free(u);
}

static void
idle_read(struct bufferevent *bev, void *arg)
{
    struct upstream *u = arg;
    (void)bev;
    pool_unlink(u);
    upstream_free(u);
}

static void
idle_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    idle_read(bev, arg);
}

static void
pool_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_pool *p = arg;
    (void)fd;
    (void)what;
    long now = now_ms(p);
    while (p->lru_tail && now - p->lru_tail->idle_since_ms > POOL_IDLE_MS) {
        struct upstream *u = p->lru_tail;
        pool_unlink(u);
        upstream_free(u);
    }
}

struct upstream_pool *
upstream_pool_new(struct worker *w)
{
    struct upstream_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->w = w;
    p->sweep_ev = event_new(w->base, -1, EV_PERSIST, pool_sweep, p);
    struct timeval tv = {5, 0};
    if (!p->sweep_ev || event_add(p->sweep_ev, &tv) < 0) {
        upstream_pool_free(p);
        return NULL;
    }
    return p;
}

void
upstream_pool_flush(struct upstream_pool *p)
{
    if (!p)
        return;
    while (p->lru_head) {
        struct upstream *u = p->lru_head;
        pool_unlink(u);
        upstream_free(u);
    }
}

void
upstream_pool_free(struct upstream_pool *p)
{
    if (!p)
        return;
    upstream_pool_flush(p);
    if (p->sweep_ev)
        event_free(p->sweep_ev);
    free(p);
}

void
upstream_release(struct upstream *u, int reusable)
{
    struct upstream_pool *p = u->pool;
    if (!reusable || p->w->stopping || evbuffer_get_length(bufferevent_get_input(u->bev)) ||
        evbuffer_get_length(bufferevent_get_output(u->bev))) {
        upstream_free(u);
        return;
    }
    unsigned b = u->bucket, same = 0;
    for (struct upstream *x = p->bucket[b]; x; x = x->next_idle)
        if (strcmp(x->key, u->key) == 0)
            same++;
    if (same >= POOL_MAX_PER_KEY) {
        upstream_free(u);
        return;
    }
    if (p->nidle >= POOL_MAX_TOTAL) {
        struct upstream *old = p->lru_tail;
        pool_unlink(old);
        upstream_free(old);
    }
    u->next_idle = p->bucket[b];
    u->prev_idle = NULL;
    if (u->next_idle)
        u->next_idle->prev_idle = u;
    p->bucket[b] = u;
    u->lru_prev = NULL;
    u->lru_next = p->lru_head;
    if (p->lru_head)
        p->lru_head->lru_prev = u;
    p->lru_head = u;
    if (!p->lru_tail)
        p->lru_tail = u;
    p->nidle++;
    u->idle_since_ms = now_ms(p);
    bufferevent_setcb(u->bev, idle_read, NULL, idle_event, u);
    bufferevent_set_timeouts(u->bev, NULL, NULL);
    tlsbev_read_limit(u->bev, 0);
    tlsbev_read_on(u->bev, 0);
}

static struct upstream *
pool_take(struct upstream_pool *p, const char *key)
{
    for (struct upstream *x = p->bucket[pool_hash(key)]; x; x = x->next_idle) {
        if (strcmp(x->key, key) == 0) {
            pool_unlink(x);
            x->reused = 1;
            bufferevent_setcb(x->bev, NULL, NULL, NULL, NULL);
            return x;
        }
    }
    return NULL;
}

static void
req_finish(struct upstream_req *r, enum upstream_err err)
{
    r->err = err;
    event_active(r->done_ev, EV_TIMEOUT, 0);
}

static void
req_done(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_req *r = arg;
    (void)fd;
    (void)what;
    struct upstream *u = r->result;
    r->result = NULL;
    upstream_cb cb = r->cb;
    void *cbarg = r->arg;
    enum upstream_err err = u ? UPSTREAM_OK : (r->err ? r->err : UPSTREAM_ERR_INTERNAL);
    char detail[sizeof(r->detail)];
    memcpy(detail, r->detail, sizeof(detail));
    upstream_cancel(r);
    cb(u, err, detail[0] ? detail : NULL, cbarg);
}

/* 1 if sa is one of our own listeners (or the admin listener): a loop. */
static int
addr_is_self(const struct config *c, const struct sockaddr *sa)
{
    for (size_t i = 0; i <= c->nlisten; i++) {
        const struct sockaddr_storage *ls;
        if (i < c->nlisten)
            ls = &c->listen[i].ss;
        else if (c->admin.text)
            ls = &c->admin.ss;
        else
            break;
        if (ls->ss_family != sa->sa_family)
            continue;
        if (sa->sa_family == AF_INET) {
            const struct sockaddr_in *a = (const void *)ls, *b = (const void *)sa;
            if (a->sin_port == b->sin_port && (a->sin_addr.s_addr == htonl(INADDR_ANY) ||
                                               a->sin_addr.s_addr == b->sin_addr.s_addr))
                return 1;
        } else if (sa->sa_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const void *)ls, *b = (const void *)sa;
            if (a->sin6_port == b->sin6_port &&
                (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr) ||
                 memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0))
                return 1;
        }
    }
    return 0;
}

static void try_connect(struct upstream_req *r);
static void connect_event(struct bufferevent *bev, short what, void *arg);

/* The TCP connection is up: start TLS to the origin, verifying its certificate for r->host. */
static void
tls_start(struct upstream_req *r)
{
    const struct config *c = r->p->w->cfg;
    SSL *ssl = tls_client_ssl(r->tls, r->host);
    struct bufferevent *fb = NULL;
    bufferevent_set_timeouts(r->bev, NULL, NULL);
    if (ssl)
        fb = tlsbev_start(r->p->w->base, r->bev, ssl, BUFFEREVENT_SSL_CONNECTING);
    if (!fb) {
        bufferevent_free(r->bev);
        r->bev = NULL;
        snprintf(r->detail, sizeof(r->detail), "cannot start TLS: %s", tls_last_error());
        req_finish(r, UPSTREAM_ERR_TLS);
        return;
    }
    if (bufferevent_get_underlying(fb))
        bufferevent_setwatermark(r->bev, EV_WRITE, 0, 256 * 1024);
    struct timeval tv = {c->limits.connect_timeout_ms / 1000,
                         (c->limits.connect_timeout_ms % 1000) * 1000};
    r->bev = fb;
    bufferevent_setcb(fb, NULL, NULL, connect_event, r);
    bufferevent_set_timeouts(fb, &tv, &tv);
    bufferevent_enable(fb, EV_READ | EV_WRITE);
}

static void
connect_event(struct bufferevent *bev, short what, void *arg)
{
    struct upstream_req *r = arg;
    (void)bev;
    int is_tls = r->tls && bufferevent_openssl_get_ssl(r->bev) != NULL;
    if ((what & BEV_EVENT_CONNECTED) && r->tls && !is_tls) {
        tls_start(r);
        return;
    }
    if (is_tls && !(what & BEV_EVENT_CONNECTED)) {
        const char *why = tls_verify_error(bufferevent_openssl_get_ssl(r->bev));
        snprintf(r->detail, sizeof(r->detail), "%s",
                 why                          ? why
                 : (what & BEV_EVENT_TIMEOUT) ? "TLS handshake timed out"
                                              : "TLS handshake failed");
        bufferevent_free(r->bev);
        r->bev = NULL;
        req_finish(r, UPSTREAM_ERR_TLS);
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        struct upstream *u = calloc(1, sizeof(*u));
        if (!u) {
            bufferevent_free(r->bev);
            r->bev = NULL;
            req_finish(r, UPSTREAM_ERR_INTERNAL);
            return;
        }
        netaddr_tune_stream(bufferevent_getfd(r->bev));
        bevio_set(r->bev);
        u->bev = r->bev;
        u->pool = r->p;
        memcpy(u->key, r->key, sizeof(u->key));
        u->bucket = pool_hash(u->key);
        r->bev = NULL;
        bufferevent_setcb(u->bev, NULL, NULL, NULL, NULL);
        bufferevent_set_timeouts(u->bev, NULL, NULL);
        r->result = u;
        req_finish(r, UPSTREAM_OK);
        return;
    }
    bufferevent_free(r->bev);
    r->bev = NULL;
    if (what & BEV_EVENT_TIMEOUT) {
        req_finish(r, UPSTREAM_ERR_TIMEOUT);
        return;
    }
    r->cur = r->cur->ai_next;
    try_connect(r);
}

static void
try_connect(struct upstream_req *r)
{
    const struct config *c = r->p->w->cfg;
    for (; r->cur; r->cur = r->cur->ai_next) {
        if (addr_is_self(c, r->cur->ai_addr)) {
            req_finish(r, UPSTREAM_ERR_SELF);
            return;
        }
        r->bev = bufferevent_socket_new(r->p->w->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!r->bev) {
            req_finish(r, UPSTREAM_ERR_INTERNAL);
            return;
        }
        struct timeval tv = {c->limits.connect_timeout_ms / 1000,
                             (c->limits.connect_timeout_ms % 1000) * 1000};
        bufferevent_setcb(r->bev, NULL, NULL, connect_event, r);
        bufferevent_set_timeouts(r->bev, NULL, &tv);
        if (bufferevent_socket_connect(r->bev, r->cur->ai_addr, (int)r->cur->ai_addrlen) == 0)
            return;
        bufferevent_free(r->bev);
        r->bev = NULL;
    }
    req_finish(r, UPSTREAM_ERR_REFUSED);
}

static void
dns_done(int result, struct evutil_addrinfo *ai, void *arg)
{
    struct upstream_req *r = arg;
    if (result == EVUTIL_EAI_CANCEL)
        return;
    r->dns = NULL;
    if (result != 0 || !ai) {
        if (ai)
            evutil_freeaddrinfo(ai);
        log_debug("dns: %s: %s", r->host, evutil_gai_strerror(result));
        req_finish(r, UPSTREAM_ERR_DNS);
        return;
    }
    r->ai = r->cur = ai;
    try_connect(r);
}

struct upstream_req *
upstream_get(struct upstream_pool *p, const char *host, uint16_t port, SSL_CTX *tls,
             int allow_reuse, upstream_cb cb, void *arg)
{
    struct upstream_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->p = p;
    r->cb = cb;
    r->arg = arg;
    r->port = port;
    snprintf(r->host, sizeof(r->host), "%s", host);
    r->tls = tls;
    snprintf(r->key, sizeof(r->key), "%s%s:%u", tls ? "tls:" : "", host, port);
    r->done_ev = event_new(p->w->base, -1, 0, req_done, r);
    if (!r->done_ev) {
        free(r);
        return NULL;
    }
    if (allow_reuse && (r->result = pool_take(p, r->key))) {
        req_finish(r, UPSTREAM_OK);
        return r;
    }
    struct evutil_addrinfo hints = {0};
    char portstr[8];
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(portstr, sizeof(portstr), "%u", port);
    r->dns = evdns_getaddrinfo(p->w->dns, r->host, portstr, &hints, dns_done, r);
    return r;
}

void
upstream_cancel(struct upstream_req *r)
{
    if (!r)
        return;
    r->cancelled = 1;
    if (r->dns)
        evdns_getaddrinfo_cancel(r->dns);
    if (r->bev)
        bufferevent_free(r->bev);
    if (r->result)
        upstream_free(r->result);
    if (r->ai)
        evutil_freeaddrinfo(r->ai);
    event_free(r->done_ev);
    free(r);
}

const char *
upstream_err_name(enum upstream_err e)
{
    switch (e) {
    case UPSTREAM_OK:
        return "ok";
    case UPSTREAM_ERR_DNS:
        return "dns_error";
    case UPSTREAM_ERR_REFUSED:
        return "connection_refused";
    case UPSTREAM_ERR_TIMEOUT:
        return "connection_timeout";
    case UPSTREAM_ERR_SELF:
        return "proxy_loop_detected";
    case UPSTREAM_ERR_TLS:
        return "tls_certificate_error";
    default:
        return "proxy_internal_error";
    }
}
