/*
 * Request counters: what /metrics shows per action, service, rule, status
 * class and latency bucket; exact totals from many threads at once; names
 * beyond the table counted as "other"; upstream error kinds and TLS
 * handshake failures.  Each test runs in its own process (fresh counters).
 */
#include "aigate/admin/metrics.h"

#include <check.h>
#include <event2/buffer.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of the line starting with series (name and labels) in the /metrics text. */
static unsigned long long
value(const char *series)
{
    struct evbuffer *b = evbuffer_new();
    metrics_write(b);
    evbuffer_add(b, "", 1);
    const char *text = (const char *)evbuffer_pullup(b, -1);
    char want[300];
    snprintf(want, sizeof(want), "\n%s ", series);
    const char *p = strstr(text, want);
    unsigned long long v = p ? strtoull(p + strlen(want), NULL, 10) : ~0ull;
    evbuffer_free(b);
    return v;
}

START_TEST(test_counts)
{
    metrics_request_done(AUDIT_ALLOW, "chatgpt", NULL, 200, 3);
    metrics_request_done(AUDIT_ALLOW, "chatgpt", "default", 200, 30);
    metrics_request_done(AUDIT_BLOCK, "deepseek", "ban", 403, 0);
    metrics_request_done(AUDIT_WARN, "claude", "caution", 403, 7000);
    metrics_request_done(AUDIT_NONE, NULL, NULL, -1, -1);
    ck_assert_uint_eq(value("aigate_requests_by_action_total{action=\"allow\"}"), 2);
    ck_assert_uint_eq(value("aigate_requests_by_action_total{action=\"block\"}"), 1);
    ck_assert_uint_eq(value("aigate_requests_by_action_total{action=\"other\"}"), 1);
    ck_assert_uint_eq(value("aigate_requests_by_action_total{action=\"ack\"}"), 0);
    ck_assert_uint_eq(value("aigate_requests_by_service_total{service=\"chatgpt\"}"), 2);
    ck_assert_uint_eq(value("aigate_requests_by_service_total{service=\"none\"}"), 1);
    ck_assert_uint_eq(value("aigate_requests_by_rule_total{rule=\"none\"}"), 2);
    ck_assert_uint_eq(value("aigate_requests_by_rule_total{rule=\"ban\"}"), 1);
    ck_assert_uint_eq(value("aigate_responses_total{code=\"2xx\"}"), 2);
    ck_assert_uint_eq(value("aigate_responses_total{code=\"4xx\"}"), 2);
    ck_assert_uint_eq(value("aigate_responses_total{code=\"none\"}"), 1);
    /* 0 and 3 ms <= 5 ms, 30 ms <= 50 ms, 7 s <= 10 s; the unknown duration is left out */
    ck_assert_uint_eq(value("aigate_request_duration_seconds_bucket{le=\"0.005\"}"), 2);
    ck_assert_uint_eq(value("aigate_request_duration_seconds_bucket{le=\"0.025\"}"), 2);
    ck_assert_uint_eq(value("aigate_request_duration_seconds_bucket{le=\"0.05\"}"), 3);
    ck_assert_uint_eq(value("aigate_request_duration_seconds_bucket{le=\"5\"}"), 3);
    ck_assert_uint_eq(value("aigate_request_duration_seconds_bucket{le=\"10\"}"), 4);
    ck_assert_uint_eq(value("aigate_request_duration_seconds_bucket{le=\"+Inf\"}"), 4);
    ck_assert_uint_eq(value("aigate_request_duration_seconds_count"), 4);
    metrics_tls_handshake_failed();
    ck_assert_uint_eq(value("aigate_tls_handshake_failures_total"), 1);
    metrics_upstream_error("connection_refused");
    metrics_upstream_error("tls_certificate_error; details=\"expired\"");
    metrics_upstream_error("whatever");
    metrics_upstream_error(NULL);
    ck_assert_uint_eq(value("aigate_upstream_errors_total{kind=\"connection_refused\"}"), 1);
    ck_assert_uint_eq(value("aigate_upstream_errors_total{kind=\"tls_certificate_error\"}"), 1);
    ck_assert_uint_eq(value("aigate_upstream_errors_total{kind=\"other\"}"), 2);
    ck_assert_uint_eq(value("aigate_upstream_errors_total{kind=\"dns_error\"}"), 0);
}
END_TEST

#define THREADS 24
#define PER_THREAD 20000

static void *
hammer(void *arg)
{
    static const char *const svc[] = {"a", "b", "c", NULL};
    long t = (long)arg;
    for (int i = 0; i < PER_THREAD; i++)
        metrics_request_done(i % 2 ? AUDIT_ALLOW : AUDIT_BLOCK, svc[(i + t) % 4], "r", 200,
                             i % 100);
    return NULL;
}

START_TEST(test_threads_exact)
{
    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, (void *)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    unsigned long long total = THREADS * PER_THREAD;
    ck_assert_uint_eq(value("aigate_requests_by_action_total{action=\"allow\"}"), total / 2);
    ck_assert_uint_eq(value("aigate_requests_by_rule_total{rule=\"r\"}"), total);
    ck_assert_uint_eq(value("aigate_requests_by_service_total{service=\"a\"}") +
                          value("aigate_requests_by_service_total{service=\"b\"}") +
                          value("aigate_requests_by_service_total{service=\"c\"}") +
                          value("aigate_requests_by_service_total{service=\"none\"}"),
                      total);
    ck_assert_uint_eq(value("aigate_request_duration_seconds_count"), total);
}
END_TEST

START_TEST(test_names_bounded)
{
    char name[32];
    for (int i = 0; i < METRICS_NAMES + 10; i++) {
        snprintf(name, sizeof(name), "svc-%d", i);
        metrics_request_done(AUDIT_ALLOW, name, "x\"y\\z", 200, 1);
    }
    ck_assert_uint_eq(value("aigate_requests_by_service_total{service=\"other\"}"), 10);
    ck_assert_uint_eq(value("aigate_requests_by_service_total{service=\"svc-0\"}"), 1);
    /* label values are escaped */
    ck_assert_uint_eq(value("aigate_requests_by_rule_total{rule=\"x\\\"y\\\\z\"}"),
                      METRICS_NAMES + 10);
}
END_TEST

Suite *metrics_suite(void);

Suite *
metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_counts);
    tcase_add_test(tc, test_threads_exact);
    tcase_add_test(tc, test_names_bounded);
    suite_add_tcase(s, tc);
    return s;
}
