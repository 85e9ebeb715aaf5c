/*
 * Worker threads.  Each runs its own event_base, made without a lock (the
 * base is touched by its own thread only), so nothing on the request path
 * takes one.  Other threads reach a worker through worker_wake() alone: a
 * message stored under w->mu (worker_post_*), or jobs the offload pool
 * handed back under w->done_mu, then a write to the worker's eventfd.
 *
 * Shutdown: the listeners are closed at once (new connections are refused),
 * idle keep-alive connections are closed, busy ones finish their current
 * exchange and then close; after limits.shutdown_grace_ms the loop ends and
 * whatever is left is torn down.
 */
#include "aigate/net/worker.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "aigate/caution/ack.h"
#include "aigate/core/config.h"
#include "aigate/core/log.h"
#include "aigate/core/netaddr.h"
#include "aigate/core/offload.h"
#include "aigate/http/pipeline.h"
#include "aigate/identity/auth.h"
#include "aigate/net/conn.h"
#include "aigate/net/upstream.h"
#include "aigate/tls/tls_mitm.h"

/* Minted leaf certificates kept per worker: one per AI host, so this covers the catalog. */
#define WORKER_LEAF_CACHE 1024

struct runtime rt;

static void
worker_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
              void *arg)
{
    struct worker *w = arg;
    (void)l;
    if (w->stopping) {
        evutil_closesocket(fd);
        return;
    }
    if (atomic_fetch_add(&rt.nconns, 1) >= w->cfg->limits.max_connections) {
        atomic_fetch_sub(&rt.nconns, 1);
        log_debug("max_connections reached: refusing a connection");
        evutil_closesocket(fd);
        return;
    }
    netaddr_tune_stream(fd);
    /* On failure conn_new has closed fd and uncounted it. */
    conn_new(w, fd, sa, (socklen_t)salen, &pipeline_ops);
}

/*
 * accept() failing for lack of descriptors (or kernel memory) would fail
 * again at once: the listening socket stays readable and the loop would spin.
 * Pause accepting instead (the kernel's backlog holds the new connections),
 * resume after WORKER_ACCEPT_PAUSE_MS or as soon as one of our connections
 * closes, and say so in the log at most once per WORKER_ACCEPT_LOG_S.
 */
#define WORKER_ACCEPT_PAUSE_MS 10
#define WORKER_ACCEPT_LOG_S 10

static void
worker_accept_resume(struct worker *w)
{
    if (!w->accept_paused || w->stopping)
        return;
    w->accept_paused = 0;
    evtimer_del(w->accept_ev);
    for (size_t i = 0; i < w->nlisteners; i++)
        evconnlistener_enable(w->listeners[i]);
}

static void
worker_accept_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_accept_resume(arg);
}

static void
worker_accept_error(struct evconnlistener *l, void *arg)
{
    struct worker *w = arg;
    int e = errno;
    (void)l;
    if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
        log_warnx("accept: %s", strerror(e));
        return;
    }
    if (!w->accept_paused) {
        w->accept_paused = 1;
        for (size_t i = 0; i < w->nlisteners; i++)
            evconnlistener_disable(w->listeners[i]);
        struct timeval tv = {0, WORKER_ACCEPT_PAUSE_MS * 1000};
        evtimer_add(w->accept_ev, &tv);
        atomic_fetch_add_explicit(&rt.accept_paused, 1, memory_order_relaxed);
        w->accept_refused++;
    }
    time_t now = time(NULL);
    if (now - w->accept_logged >= WORKER_ACCEPT_LOG_S) {
        log_warnx("worker %d: accept: %s; pausing new connections (%lu pauses in the last %d s; "
                  "raise the descriptor limit or lower limits.max_connections)",
                  w->id, strerror(e), w->accept_refused, WORKER_ACCEPT_LOG_S);
        w->accept_logged = now;
        w->accept_refused = 0;
    }
}

static int
worker_listen(struct worker *w, struct config *cfg)
{
    w->listeners = calloc(cfg->nlisten, sizeof(*w->listeners));
    if (!w->listeners)
        return -1;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct listen_addr *la = &cfg->listen[i];
        unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT;
        struct evconnlistener *l = evconnlistener_new_bind(
            w->base, worker_accept, w, flags, 1024, (struct sockaddr *)&la->ss, (int)la->len);
        if (!l) {
            log_warnx("cannot listen on %s: %s", la->text, strerror(errno));
            return -1;
        }
        evconnlistener_set_error_cb(l, worker_accept_error);
        w->listeners[w->nlisteners++] = l;
    }
    return 0;
}

static struct evdns_base *
worker_dns(struct event_base *base, const struct config *cfg)
{
    struct evdns_base *dns = evdns_base_new(base, 0);
    if (!dns)
        return NULL;
    if (cfg->dns.nnameservers == 0) {
        evdns_base_resolv_conf_parse(dns, DNS_OPTION_NAMESERVERS | DNS_OPTION_MISC,
                                     "/etc/resolv.conf");
    } else {
        for (size_t i = 0; i < cfg->dns.nnameservers; i++)
            if (evdns_base_nameserver_ip_add(dns, cfg->dns.nameservers[i]) != 0)
                log_warnx("dns: bad nameserver %s", cfg->dns.nameservers[i]);
    }
    evdns_base_set_option(dns, "timeout:", "2");
    evdns_base_set_option(dns, "attempts:", "2");
    if (evdns_base_load_hosts(dns, cfg->dns.hosts_file) != 0)
        log_warnx("dns: cannot read hosts file %s", cfg->dns.hosts_file);
    return dns;
}

static int
dns_same(const struct config *a, const struct config *b)
{
    if (strcmp(a->dns.hosts_file, b->dns.hosts_file) != 0 ||
        a->dns.nnameservers != b->dns.nnameservers)
        return 0;
    for (size_t i = 0; i < a->dns.nnameservers; i++)
        if (strcmp(a->dns.nameservers[i], b->dns.nameservers[i]) != 0)
            return 0;
    return 1;
}

static void
worker_begin_stop(struct worker *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    for (size_t i = 0; i < w->nlisteners; i++)
        evconnlistener_free(w->listeners[i]);
    w->nlisteners = 0;
    upstream_pool_flush(w->pool);
    conn_drain_all(w);
    struct timeval tv = {w->cfg->limits.shutdown_grace_ms / 1000,
                         (w->cfg->limits.shutdown_grace_ms % 1000) * 1000};
    evtimer_add(w->grace_ev, &tv);
    if (w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

/* Another thread wrote to the eventfd: messages first, then jobs handed back. */
static void
worker_woken(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_warnx("worker %d: wake-up: %s", w->id, strerror(errno));
    offload_complete(w);
    pthread_mutex_lock(&w->mu);
    struct config *next = w->pending;
    int stop = w->stop_requested;
    w->pending = NULL;
    pthread_mutex_unlock(&w->mu);

    if (next) {
        if (!dns_same(w->cfg, next)) {
            struct evdns_base *d = worker_dns(w->base, next);
            struct evdns_base **nv = realloc(w->old_dns, (w->nold_dns + 1) * sizeof(*nv));
            if (d && nv) {
                w->old_dns = nv;
                w->old_dns[w->nold_dns++] = w->dns;
                w->dns = d;
            } else {
                if (nv)
                    w->old_dns = nv;
                if (d)
                    evdns_base_free(d, 0);
                log_warnx("worker %d: resolver not reloaded", w->id);
            }
        }
        if (next->tls_ca != (w->leaf_cache ? tls_leaf_cache_ca(w->leaf_cache) : NULL)) {
            tls_leaf_cache_free(w->leaf_cache);
            w->leaf_cache =
                next->tls_ca ? tls_leaf_cache_new(next->tls_ca, WORKER_LEAF_CACHE) : NULL;
        }
        config_unref(w->cfg);
        w->cfg = next;
        w->xenv.max_head = next->limits.max_header_bytes;
    }
    if (stop)
        worker_begin_stop(w);
}

static void
worker_grace(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    if (w->nconns)
        log_info("worker %d: grace period over, closing %zu connections", w->id, w->nconns);
    event_base_loopexit(w->base, NULL);
}

/* A connection was freed (conn.c reports it through w->on_conn_gone). */
static void
worker_conn_gone(struct worker *w)
{
    worker_accept_resume(w);
    if (w->stopping && w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

int
worker_init(struct worker *w, int id, struct config *cfg)
{
    memset(w, 0, sizeof(*w));
    w->wake_fd = -1;
    w->id = id;
    TAILQ_INIT(&w->conns);
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->done_mu, NULL);
    w->cfg = config_ref(cfg);
    /*
     * The change list folds watching a socket for writable and unwatching it
     * in the same pass into no epoll_ctl at all (bevio.h).  Safe here: no
     * descriptor a loop watches is ever dup()ed.  No lock: see the top.
     */
    struct event_config *ec = event_config_new();
    if (!ec)
        return -1;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST | EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base)
        return -1;
    if (!(w->dns = worker_dns(w->base, cfg)))
        return -1;
    if (worker_wake_init(w) < 0)
        return -1;
    w->grace_ev = evtimer_new(w->base, worker_grace, w);
    w->pool = upstream_pool_new(w);
    w->auth_cache = auth_cache_new(4096, 3600);
    if (cfg->tls_ca && !(w->leaf_cache = tls_leaf_cache_new(cfg->tls_ca, WORKER_LEAF_CACHE)))
        return -1;
    w->scratch = evbuffer_new();
    w->on_conn_gone = worker_conn_gone;
    w->xenv =
        (struct exchange_env){w->pool, w->scratch, cfg->limits.max_header_bytes, &w->stopping};
    w->accept_ev = evtimer_new(w->base, worker_accept_timer, w);
    if (!w->grace_ev || !w->pool || !w->auth_cache || !w->scratch || !w->accept_ev)
        return -1;
    return worker_listen(w, cfg);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    /* A shared acknowledgement store connects now, so /healthz knows it before any traffic. */
    if (rt.acks)
        ack_store_attach(rt.acks, w);
    event_base_dispatch(w->base);
    conn_free_all(w);
    upstream_pool_free(w->pool);
    w->pool = NULL;
    if (w->exited_ev)
        event_active(w->exited_ev, EV_READ, 0);
    return NULL;
}

int
worker_start(struct worker *w, struct event *exited_ev)
{
    w->exited_ev = exited_ev;
    char name[16];
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    snprintf(name, sizeof(name), "aigate-w%d", w->id % 1000);
    pthread_setname_np(w->thread, name);
    return 0;
}

int
worker_wake_init(struct worker *w)
{
    if ((w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        return -1;
    w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, worker_woken, w);
    return w->wake_ev && event_add(w->wake_ev, NULL) == 0 ? 0 : -1;
}

void
worker_wake_free(struct worker *w)
{
    offload_complete(w);
    if (w->wake_ev)
        event_free(w->wake_ev);
    w->wake_ev = NULL;
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    w->wake_fd = -1;
}

void
worker_wake(struct worker *w)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is full, so a wake-up is pending anyway. */
    if (write(w->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warnx("worker %d: cannot wake: %s", w->id, strerror(errno));
}

void
worker_post_config(struct worker *w, struct config *cfg)
{
    pthread_mutex_lock(&w->mu);
    if (w->pending)
        config_unref(w->pending);
    w->pending = config_ref(cfg);
    pthread_mutex_unlock(&w->mu);
    worker_wake(w);
}

void
worker_post_stop(struct worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop_requested = 1;
    pthread_mutex_unlock(&w->mu);
    worker_wake(w);
}

void
worker_join(struct worker *w)
{
    if (w->thread)
        pthread_join(w->thread, NULL);
    w->thread = 0;
}

void
worker_free(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        evconnlistener_free(w->listeners[i]);
    free(w->listeners);
    if (w->grace_ev)
        event_free(w->grace_ev);
    upstream_pool_free(w->pool);
    worker_wake_free(w); /* and jobs that finished after the loop ended: their owners are gone */
    if (w->accept_ev)
        event_free(w->accept_ev);
    pthread_mutex_destroy(&w->done_mu);
    if (w->dns)
        evdns_base_free(w->dns, 1);
    for (size_t i = 0; i < w->nold_dns; i++)
        evdns_base_free(w->old_dns[i], 1);
    free(w->old_dns);
    auth_cache_free(w->auth_cache);
    tls_leaf_cache_free(w->leaf_cache);
    if (w->scratch)
        evbuffer_free(w->scratch);
    if (w->base)
        event_base_free(w->base);
    config_unref(w->cfg);
    config_unref(w->pending);
    pthread_mutex_destroy(&w->mu);
}
