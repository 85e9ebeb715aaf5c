/*
 * Request counters (design in include/aigate/admin/metrics.h): per-thread shards of
 * relaxed atomics, summed when /metrics is read, and two name tables whose
 * slots are claimed once by compare-and-swap.
 */
#include "aigate/admin/metrics.h"

#include "aigate/core/hash.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum { ACT_ALLOW, ACT_WARN, ACT_ACK, ACT_BLOCK, ACT_AUTHFAIL, ACT_ERROR, ACT_OTHER, ACT_N };
static const char *const metrics_actions[ACT_N] = {"allow",     "warn",  "ack",  "block",
                                                   "auth-fail", "error", "other"};

static const char *const metrics_upstream_kinds[] = {"dns_error",
                                                     "dns_timeout",
                                                     "connection_refused",
                                                     "connection_timeout",
                                                     "connection_terminated",
                                                     "http_response_timeout",
                                                     "tls_protocol_error",
                                                     "tls_certificate_error",
                                                     "http_protocol_error",
                                                     "other"};
#define UP_N (sizeof(metrics_upstream_kinds) / sizeof(metrics_upstream_kinds[0]))

/* Upper bounds of the latency buckets, in ms (Prometheus "le" is in seconds). */
static const int64_t metrics_le_ms[] = {5,   10,   25,   50,   100,   250,
                                        500, 1000, 2500, 5000, 10000, 30000};
#define LE_N (sizeof(metrics_le_ms) / sizeof(metrics_le_ms[0]))

struct metrics_shard {
    atomic_ullong action[ACT_N];
    atomic_ullong status[6]; /* 1xx..5xx, then none */
    atomic_ullong le[LE_N + 1];
    atomic_ullong ms_sum, ms_count;
    atomic_ullong tls_failed;
    atomic_ullong upstream[UP_N];
    atomic_ullong service[METRICS_NAMES + 2]; /* slots, then "none", "other" */
    atomic_ullong rule[METRICS_NAMES + 2];
} __attribute__((aligned(64)));

struct metrics_names {
    _Atomic(char *) name[METRICS_NAMES];
};

static struct metrics_shard metrics_shards[METRICS_SHARDS];
static struct metrics_names metrics_services, metrics_rules;
static atomic_uint metrics_next_shard;
static _Thread_local struct metrics_shard *metrics_mine;

static struct metrics_shard *
metrics_shard(void)
{
    if (!metrics_mine)
        metrics_mine = &metrics_shards[atomic_fetch_add_explicit(&metrics_next_shard, 1,
                                                                 memory_order_relaxed) %
                                       METRICS_SHARDS];
    return metrics_mine;
}

static void
metrics_add(atomic_ullong *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* The slot of name in t: METRICS_NAMES for none (NULL), METRICS_NAMES + 1 for other. */
static size_t
metrics_slot(struct metrics_names *t, const char *name)
{
    if (!name)
        return METRICS_NAMES;
    uint64_t h = hash_bytes(name, strlen(name));
    for (size_t k = 0; k < METRICS_NAMES; k++) {
        size_t i = (size_t)((h + k) % METRICS_NAMES);
        char *cur = atomic_load_explicit(&t->name[i], memory_order_acquire);
        if (!cur) {
            char *mine = strdup(name);
            if (!mine)
                return METRICS_NAMES + 1;
            if (atomic_compare_exchange_strong_explicit(&t->name[i], &cur, mine,
                                                        memory_order_acq_rel, memory_order_acquire))
                return i;
            free(mine); /* another thread took the slot: cur is its name */
        }
        if (strcmp(cur, name) == 0)
            return i;
    }
    return METRICS_NAMES + 1;
}

void
metrics_request_done(enum audit_action action, const char *service, const char *rule, int status,
                     int64_t ms)
{
    struct metrics_shard *s = metrics_shard();
    int a = action == AUDIT_ALLOW       ? ACT_ALLOW
            : action == AUDIT_WARN      ? ACT_WARN
            : action == AUDIT_ACK       ? ACT_ACK
            : action == AUDIT_BLOCK     ? ACT_BLOCK
            : action == AUDIT_AUTH_FAIL ? ACT_AUTHFAIL
            : action == AUDIT_ERROR     ? ACT_ERROR
                                        : ACT_OTHER;
    metrics_add(&s->action[a], 1);
    metrics_add(&s->status[status >= 100 && status <= 599 ? status / 100 - 1 : 5], 1);
    metrics_add(&s->service[metrics_slot(&metrics_services, service)], 1);
    metrics_add(&s->rule[metrics_slot(&metrics_rules, rule)], 1);
    if (ms >= 0) {
        size_t b = 0;
        while (b < LE_N && ms > metrics_le_ms[b])
            b++;
        metrics_add(&s->le[b], 1);
        metrics_add(&s->ms_sum, (uint64_t)ms);
        metrics_add(&s->ms_count, 1);
    }
}

void
metrics_tls_handshake_failed(void)
{
    metrics_add(&metrics_shard()->tls_failed, 1);
}

void
metrics_upstream_error(const char *kind)
{
    size_t k = UP_N - 1, n = kind ? strcspn(kind, "; ") : 0;
    for (size_t i = 0; kind && i + 1 < UP_N; i++)
        if (strlen(metrics_upstream_kinds[i]) == n &&
            strncmp(kind, metrics_upstream_kinds[i], n) == 0) {
            k = i;
            break;
        }
    metrics_add(&metrics_shard()->upstream[k], 1);
}

/* The sum over the shards of the counter at byte offset off. */
static uint64_t
metrics_sum(size_t off)
{
    uint64_t n = 0;
    for (size_t i = 0; i < METRICS_SHARDS; i++)
        n += atomic_load_explicit((atomic_ullong *)((char *)&metrics_shards[i] + off),
                                  memory_order_relaxed);
    return n;
}
#define SUM(field) metrics_sum(offsetof(struct metrics_shard, field))

/* A label value: names come from the configuration, but escape \ " and newlines all the same. */
static void
metrics_label(struct evbuffer *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(out, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, v, 1);
    }
}

static void
metrics_write_names(struct evbuffer *out, const char *metric, const char *label,
                    struct metrics_names *t, size_t field_off)
{
    for (size_t i = 0; i < METRICS_NAMES + 2; i++) {
        const char *name = i == METRICS_NAMES       ? "none"
                           : i == METRICS_NAMES + 1 ? "other"
                                                    : atomic_load(&t->name[i]);
        if (!name)
            continue;
        uint64_t n = metrics_sum(field_off + i * sizeof(atomic_ullong));
        if (!n && i >= METRICS_NAMES)
            continue;
        evbuffer_add_printf(out, "%s{%s=\"", metric, label);
        metrics_label(out, name);
        evbuffer_add_printf(out, "\"} %" PRIu64 "\n", n);
    }
}

void
metrics_write(struct evbuffer *out)
{
    evbuffer_add_printf(out,
                        "# HELP aigate_requests_by_action_total Requests and tunnels finished, by "
                        "the action in their audit line.\n"
                        "# TYPE aigate_requests_by_action_total counter\n");
    for (int a = 0; a < ACT_N; a++)
        evbuffer_add_printf(out, "aigate_requests_by_action_total{action=\"%s\"} %" PRIu64 "\n",
                            metrics_actions[a],
                            metrics_sum(offsetof(struct metrics_shard, action) +
                                        (size_t)a * sizeof(atomic_ullong)));
    evbuffer_add_printf(out, "# HELP aigate_requests_by_service_total Requests and tunnels "
                             "finished, by AI service (none: not a catalogued service).\n"
                             "# TYPE aigate_requests_by_service_total counter\n");
    metrics_write_names(out, "aigate_requests_by_service_total", "service", &metrics_services,
                        offsetof(struct metrics_shard, service));
    evbuffer_add_printf(out, "# HELP aigate_requests_by_rule_total Requests and tunnels "
                             "finished, by the policy rule that decided (none: no rule).\n"
                             "# TYPE aigate_requests_by_rule_total counter\n");
    metrics_write_names(out, "aigate_requests_by_rule_total", "rule", &metrics_rules,
                        offsetof(struct metrics_shard, rule));
    evbuffer_add_printf(out, "# HELP aigate_responses_total Responses by status class.\n"
                             "# TYPE aigate_responses_total counter\n");
    static const char *const classes[6] = {"1xx", "2xx", "3xx", "4xx", "5xx", "none"};
    for (size_t c = 0; c < 6; c++)
        evbuffer_add_printf(
            out, "aigate_responses_total{code=\"%s\"} %" PRIu64 "\n", classes[c],
            metrics_sum(offsetof(struct metrics_shard, status) + c * sizeof(atomic_ullong)));
    evbuffer_add_printf(out, "# HELP aigate_request_duration_seconds Time from a request's start "
                             "to its audit line.\n"
                             "# TYPE aigate_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t b = 0; b <= LE_N; b++) {
        cum += metrics_sum(offsetof(struct metrics_shard, le) + b * sizeof(atomic_ullong));
        if (b < LE_N)
            evbuffer_add_printf(out,
                                "aigate_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                                (double)metrics_le_ms[b] / 1000, cum);
        else
            evbuffer_add_printf(
                out, "aigate_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    evbuffer_add_printf(out,
                        "aigate_request_duration_seconds_sum %.3f\n"
                        "aigate_request_duration_seconds_count %" PRIu64 "\n",
                        (double)SUM(ms_sum) / 1000, SUM(ms_count));
    evbuffer_add_printf(out,
                        "# HELP aigate_tls_handshake_failures_total Client TLS handshakes with "
                        "aigate that failed (most often: a client without the aigate CA).\n"
                        "# TYPE aigate_tls_handshake_failures_total counter\n"
                        "aigate_tls_handshake_failures_total %" PRIu64 "\n",
                        SUM(tls_failed));
    evbuffer_add_printf(out, "# HELP aigate_upstream_errors_total Failures reaching an origin, by "
                             "RFC 9209 error kind.\n"
                             "# TYPE aigate_upstream_errors_total counter\n");
    for (size_t k = 0; k < UP_N; k++)
        evbuffer_add_printf(
            out, "aigate_upstream_errors_total{kind=\"%s\"} %" PRIu64 "\n",
            metrics_upstream_kinds[k],
            metrics_sum(offsetof(struct metrics_shard, upstream) + k * sizeof(atomic_ullong)));
}
