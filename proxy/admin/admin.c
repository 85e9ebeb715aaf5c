/*
 * Admin HTTP endpoints on libevent's evhttp: tiny, read-only, loopback by
 * default.  Counters come from the runtime (atomics), so serving them needs
 * no lock and never touches a worker.
 */
#include "aigate/admin/admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aigate/admin/dashboard.h"
#include "aigate/admin/metrics.h"
#include "aigate/audit/audit.h"
#include "aigate/caution/ack.h"
#include "aigate/core/config.h"
#include "aigate/core/log.h"
#include "aigate/identity/dirgroups.h"
#include "aigate/net/worker.h"

struct admin {
    struct evhttp *http;
    struct dash *dash;
    time_t started;
    unsigned long reloads;
};

/*
 * Out of descriptors: pause accepting (a readable listener would spin) and
 * retry shortly.  evhttp owns the listener's callback argument, so the retry
 * is a one-shot event on the listener itself (it cannot outlive the loop).
 */
#define ADMIN_ACCEPT_PAUSE_MS 100
#define ADMIN_MAX_HEAD 16384 /* request line and headers */
#define ADMIN_TIMEOUT_S 60

static void
admin_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(arg);
}

static void
admin_accept_error(struct evconnlistener *l, void *arg)
{
    int e = errno;
    (void)arg;
    if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
        log_warnx("admin: accept: %s", strerror(e));
        return;
    }
    struct timeval tv = {0, ADMIN_ACCEPT_PAUSE_MS * 1000};
    evconnlistener_disable(l);
    event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, admin_accept_resume, l, &tv);
}

static void
admin_healthz(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return evhttp_send_error(req, 500, NULL);
    /* Not ok: a load balancer should send new clients elsewhere (the body says why). */
    int status = 200;
    if (atomic_load(&rt.draining)) {
        status = 503;
        evbuffer_add_printf(b, "draining: shutting down, not taking new clients\n");
    }
    if (audit_dropping(rt.audit)) {
        status = 503;
        evbuffer_add_printf(b, "audit log: lines are being dropped (the writer cannot keep up: "
                               "disk full or too slow)\n");
    }
    char why[512];
    if (rt.acks && !ack_store_healthy(rt.acks, why, sizeof(why))) {
        status = 503;
        evbuffer_add_printf(b, "ack store: unreachable (%s)\n", why);
    }
    if (status == 200)
        evbuffer_add_printf(b, "ok\n");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evhttp_send_reply(req, status, status == 200 ? "OK" : "Service Unavailable", b);
    evbuffer_free(b);
}

/* The acknowledgement store's answers: latency histogram, errors, reachability. */
static void
admin_ack_metrics(struct evbuffer *b)
{
    struct ack_store_metrics m;
    char why[8];
    ack_store_metrics(rt.acks, &m);
    evbuffer_add_printf(b,
                        "# HELP aigate_ack_store_seconds Time from an acknowledgement store call "
                        "to its answer.\n"
                        "# TYPE aigate_ack_store_seconds histogram\n");
    for (int i = 0; i < ACK_LATENCY_BUCKETS; i++)
        evbuffer_add_printf(b, "aigate_ack_store_seconds_bucket{le=\"%g\"} %llu\n",
                            ack_latency_le[i], m.le[i]);
    evbuffer_add_printf(
        b,
        "aigate_ack_store_seconds_bucket{le=\"+Inf\"} %llu\n"
        "aigate_ack_store_seconds_sum %.6f\n"
        "aigate_ack_store_seconds_count %llu\n"
        "# HELP aigate_ack_store_errors_total Store calls that failed (unreachable, "
        "timed out, error reply, not recorded).\n"
        "# TYPE aigate_ack_store_errors_total counter\n"
        "aigate_ack_store_errors_total %llu\n"
        "# HELP aigate_ack_store_up 1 when the acknowledgement store answers.\n"
        "# TYPE aigate_ack_store_up gauge\n"
        "aigate_ack_store_up %d\n",
        m.calls, (double)m.latency_ns / 1e9, m.calls, m.errors,
        ack_store_healthy(rt.acks, why, sizeof(why)));
}

/* The directory's group lookups (ldap). */
static void
admin_directory_metrics(struct evbuffer *b)
{
    struct dirgroups_stats st;
    dirgroups_stats(rt.dirgroups, &st);
    evbuffer_add_printf(
        b,
        "# HELP aigate_directory_cache_hits_total Group lookups answered from a fresh cache "
        "entry.\n"
        "# TYPE aigate_directory_cache_hits_total counter\n"
        "aigate_directory_cache_hits_total %llu\n"
        "# HELP aigate_directory_lookups_total Lookups made in the directory.\n"
        "# TYPE aigate_directory_lookups_total counter\n"
        "aigate_directory_lookups_total %llu\n"
        "# HELP aigate_directory_failures_total Lookups that could not reach or read the "
        "directory.\n"
        "# TYPE aigate_directory_failures_total counter\n"
        "aigate_directory_failures_total %llu\n"
        "# HELP aigate_directory_timeouts_total Requests answered at ldap.timeout_ms, before "
        "the directory did.\n"
        "# TYPE aigate_directory_timeouts_total counter\n"
        "aigate_directory_timeouts_total %llu\n"
        "# HELP aigate_directory_fallbacks_total Requests answered with the last known (or no) "
        "groups while the directory was down.\n"
        "# TYPE aigate_directory_fallbacks_total counter\n"
        "aigate_directory_fallbacks_total %llu\n",
        st.hits, st.lookups, st.failures, st.timeouts, st.fallbacks);
}

static void
admin_metrics(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return evhttp_send_error(req, 500, NULL);
    uint64_t lines = 0, waits = 0, dropped = 0;
    if (rt.audit)
        audit_stats(rt.audit, &lines, &waits, &dropped);
    evbuffer_add_printf(
        b,
        "# HELP aigate_connections_open Client connections open now.\n"
        "# TYPE aigate_connections_open gauge\n"
        "aigate_connections_open %d\n"
        "# HELP aigate_requests_total Requests and tunnels finished.\n"
        "# TYPE aigate_requests_total counter\n"
        "aigate_requests_total %llu\n"
        "# HELP aigate_audit_lines_total Audit lines written.\n"
        "# TYPE aigate_audit_lines_total counter\n"
        "aigate_audit_lines_total %llu\n"
        "# HELP aigate_audit_waits_total Times a worker waited for the audit writer.\n"
        "# TYPE aigate_audit_waits_total counter\n"
        "aigate_audit_waits_total %llu\n"
        "# HELP aigate_audit_dropped_total Audit lines lost because the disk did not keep up.\n"
        "# TYPE aigate_audit_dropped_total counter\n"
        "aigate_audit_dropped_total %llu\n"
        "# HELP aigate_accept_paused_total Times accepting paused for lack of file descriptors.\n"
        "# TYPE aigate_accept_paused_total counter\n"
        "aigate_accept_paused_total %llu\n"
        "# HELP aigate_proxy_protocol_refused_total Connections closed for a missing or invalid "
        "PROXY protocol header, or refused for one from an unlisted address.\n"
        "# TYPE aigate_proxy_protocol_refused_total counter\n"
        "aigate_proxy_protocol_refused_total %llu\n"
        "# HELP aigate_reloads_total Successful configuration reloads.\n"
        "# TYPE aigate_reloads_total counter\n"
        "aigate_reloads_total %lu\n"
        "# HELP aigate_start_time_seconds Start time (Unix seconds).\n"
        "# TYPE aigate_start_time_seconds gauge\n"
        "aigate_start_time_seconds %lld\n",
        atomic_load(&rt.nconns), (unsigned long long)atomic_load(&rt.requests),
        (unsigned long long)lines, (unsigned long long)waits, (unsigned long long)dropped,
        (unsigned long long)atomic_load(&rt.accept_paused),
        (unsigned long long)atomic_load(&rt.proxy_refused), a->reloads, (long long)a->started);
    if (rt.acks)
        admin_ack_metrics(b);
    if (rt.dirgroups)
        admin_directory_metrics(b);
    metrics_write(b);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

struct admin *
admin_start(struct event_base *base, struct config *cfg, int *failed)
{
    *failed = 0;
    if (!cfg->admin.text)
        return NULL;
    struct admin *a = calloc(1, sizeof(*a));
    if (!a || !(a->http = evhttp_new(base)))
        goto fail;
    a->started = time(NULL);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    /* Bounds for a listener anyone on the network may reach: small heads, no bodies. */
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEAD);
    evhttp_set_max_body_size(a->http, 0);
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
    evhttp_set_cb(a->http, "/healthz", admin_healthz, a);
    evhttp_set_cb(a->http, "/metrics", admin_metrics, a);
    if (!(a->dash = dash_new(base, a->http, cfg)))
        goto fail;
    evutil_socket_t fd = socket(cfg->admin.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct evhttp_bound_socket *bs = NULL;
    if (bind(fd, (const struct sockaddr *)&cfg->admin.ss, cfg->admin.len) < 0 ||
        listen(fd, 64) < 0 || !(bs = evhttp_accept_socket_with_handle(a->http, fd))) {
        evutil_closesocket(fd);
        goto fail;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(bs), admin_accept_error);
    log_info("admin endpoints on %s (/healthz, /metrics, the dashboard at /%s)", cfg->admin.text,
             cfg->admin_db ? "" : ": off until admin.htpasswd is set");
    return a;
fail:
    log_warnx("cannot serve admin endpoints on %s", cfg->admin.text);
    admin_free(a);
    *failed = 1;
    return NULL;
}

void
admin_note_reload(struct admin *a, struct config *cfg)
{
    if (!a)
        return;
    a->reloads++;
    dash_set_config(a->dash, cfg);
}

void
admin_free(struct admin *a)
{
    if (!a)
        return;
    /* The dashboard first: its threads hold requests that evhttp_free() frees. */
    dash_free(a->dash);
    if (a->http)
        evhttp_free(a->http);
    free(a);
}
