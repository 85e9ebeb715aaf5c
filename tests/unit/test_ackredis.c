/*
 * Unit tests for proxy/caution/ackredis.c without a Redis server: the redis:// URL
 * (what it takes, what it refuses, that errors never show the password),
 * the key formats, and the store's behaviour when the server cannot be
 * reached or never answers: lookups say unavailable, commits fail, both
 * through the worker's loop and never inside the call, the store reports
 * itself unhealthy with the reason, and errors are counted.  The real-server
 * behaviour (grant on one node, honoured on another, replay refused, expiry,
 * recovery) is tests/e2e/t_ackredis.sh.
 */
#include <arpa/inet.h>
#include <check.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "aigate/caution/ack.h"
#include "aigate/caution/ackredis.h"
#include "aigate/core/offload.h"
#include "aigate/net/worker.h"

/* ---- URL ---- */

START_TEST(url_good)
{
    struct ack_redis_url u;
    char err[256];

    ck_assert_int_eq(ack_redis_url_parse("redis://10.0.0.5:6380/3", &u, err, sizeof(err)), 0);
    ck_assert_str_eq(u.host, "10.0.0.5");
    ck_assert_int_eq(u.port, 6380);
    ck_assert_int_eq(u.db, 3);
    ck_assert_str_eq(u.password, "");
    ck_assert_str_eq(u.user, "");

    ck_assert_int_eq(
        ack_redis_url_parse("redis://:s3cret@redis.corp.example:6379/0", &u, err, sizeof(err)), 0);
    ck_assert_str_eq(u.host, "redis.corp.example");
    ck_assert_str_eq(u.password, "s3cret");
    ck_assert_str_eq(u.user, "");

    /* ACL user, escapes in the password, an unescaped '@' in it (the last '@' ends it). */
    ck_assert_int_eq(
        ack_redis_url_parse("REDIS://aigate:p%40ss%3Aw0rd@[fd00::1]:7000/15", &u, err, sizeof(err)),
        0);
    ck_assert_str_eq(u.user, "aigate");
    ck_assert_str_eq(u.password, "p@ss:w0rd");
    ck_assert_str_eq(u.host, "fd00::1");
    ck_assert_int_eq(u.port, 7000);
    ck_assert_int_eq(u.db, 15);
    ck_assert_int_eq(ack_redis_url_parse("redis://:a@b@h/1", &u, err, sizeof(err)), 0);
    ck_assert_str_eq(u.password, "a@b");
    ck_assert_str_eq(u.host, "h");

    /* Defaults: port 6379, database 0. */
    ck_assert_int_eq(ack_redis_url_parse("redis://valkey", &u, err, sizeof(err)), 0);
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(u.db, 0);
    ck_assert_int_eq(ack_redis_url_parse("redis://valkey:6379/", &u, err, sizeof(err)), 0);
    ck_assert_int_eq(u.db, 0);
    ck_assert_int_eq(ack_redis_url_parse("redis://[::1]", &u, err, sizeof(err)), 0);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(ack_redis_url_parse("redis://h:65535/65535", &u, err, sizeof(err)), 0);
}
END_TEST

START_TEST(url_bad)
{
    static const struct {
        const char *url, *want;
    } bad[] = {
        {"", "want redis://"},
        {"http://h:6379/0", "want redis://"},
        {"redis:/h", "want redis://"},
        {"rediss://h:6380/0", "rediss:// (TLS) is not supported"},
        {"redis://", "empty or invalid host"},
        {"redis://:6379/0", "empty or invalid host"},
        {"redis://h_#/0", "query or fragment"},
        {"redis://h:6379/0?timeout=1", "query or fragment"},
        {"redis://bad host/0", "spaces, control"},
        {"redis://h\t/0", "spaces, control"},
        {"redis://h\xc3\xa9/0", "non-ASCII"},
        {"redis://h..example/0", "invalid host"},
        {"redis://h:0/0", "port must be 1-65535"},
        {"redis://h:65536/0", "port must be 1-65535"},
        {"redis://h:06379/0", "port must be 1-65535"},
        {"redis://h:/0", "port must be 1-65535"},
        {"redis://h:x/0", "port must be 1-65535"},
        {"redis://h/65536", "database must be"},
        {"redis://h/-1", "database must be"},
        {"redis://h/01", "database must be"},
        {"redis://h/0/1", "database must be"},
        {"redis://[::1/0", "unclosed '['"},
        {"redis://[::g]/0", "bad IPv6 address"},
        {"redis://[::1]x/0", "junk after the IPv6 address"},
        {"redis://s3cret@h/0", "must be :PASSWORD or USER:PASSWORD"},
        {"redis://:@h/0", "empty password"},
        {"redis://:s3cret%0a@h/0", "bad %XX escape or control byte"},
        {"redis://:s3cret%zz@h/0", "bad %XX escape"},
        {"redis://:s3cret%4@h/0", "bad %XX escape"},
    };
    struct ack_redis_url u;
    char err[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ck_assert_msg(ack_redis_url_parse(bad[i].url, &u, err, sizeof(err)) == -1, "accepted: %s",
                      bad[i].url);
        ck_assert_msg(strncmp(err, "ack.store: ", 11) == 0, "%s: %s", bad[i].url, err);
        ck_assert_msg(!bad[i].want || strstr(err, bad[i].want), "%s: want %s, got %s", bad[i].url,
                      bad[i].want, err);
        ck_assert_msg(!strstr(err, "s3cret"), "the password shows in: %s", err);
    }
    char longurl[ACK_REDIS_URL_MAX + 16];
    memcpy(longurl, "redis://h/", 10);
    memset(longurl + 10, '1', sizeof(longurl) - 11);
    longurl[sizeof(longurl) - 1] = '\0';
    ck_assert_int_eq(ack_redis_url_parse(longurl, &u, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "too long"));
}
END_TEST

/* ---- keys ---- */

START_TEST(keys)
{
    char k[ACK_REDIS_KEY_MAX];

    ck_assert_uint_eq(ack_redis_key_ack(k, sizeof(k), "alice", "deepseek"), 18);
    ck_assert_str_eq(k, "ack:alice:deepseek");
    /* Anonymous users by address and services outside the catalog carry ':'. */
    ck_assert_uint_gt(ack_redis_key_ack(k, sizeof(k), "@::1", "host:chat.example"), 0);
    ck_assert_str_eq(k, "ack:@%3A%3A1:host%3Achat.example");
    ck_assert_uint_gt(ack_redis_key_ack(k, sizeof(k), "a:b", "c"), 0);
    ck_assert_str_eq(k, "ack:a%3Ab:c");
    ck_assert_uint_gt(ack_redis_key_ack(k, sizeof(k), "a", "b:c"), 0);
    ck_assert_str_eq(k, "ack:a:b%3Ac"); /* differs from the one above */
    ck_assert_uint_gt(ack_redis_key_ack(k, sizeof(k), "100% me", "x\ty\x7f"), 0);
    ck_assert_str_eq(k, "ack:100%25%20me:x%09y%7F");
    ck_assert_uint_gt(ack_redis_key_ack(k, sizeof(k), "\xea\xb9\x80", "deepseek"), 0);
    ck_assert_str_eq(k, "ack:\xea\xb9\x80:deepseek");
    /* Unusable names, and a buffer too small. */
    ck_assert_uint_eq(ack_redis_key_ack(k, sizeof(k), "a\nb", "s"), 0);
    char user[ACK_USER_MAX + 2];
    memset(user, ':', sizeof(user) - 1);
    user[sizeof(user) - 1] = '\0';
    ck_assert_uint_eq(ack_redis_key_ack(k, sizeof(k), user, "s"), 0);
    user[ACK_USER_MAX] = '\0'; /* the longest, all escaped, still fits */
    char svc[ACK_SERVICE_MAX + 1];
    memset(svc, '%', sizeof(svc) - 1);
    svc[sizeof(svc) - 1] = '\0';
    ck_assert_uint_eq(ack_redis_key_ack(k, sizeof(k), user, svc), sizeof(k) - 1);
    ck_assert_uint_eq(ack_redis_key_ack(k, 10, "alice", "deepseek"), 0);

    ck_assert_uint_eq(ack_redis_key_nonce(k, sizeof(k), "0123456789abcdef01234567"), 30);
    ck_assert_str_eq(k, "nonce:0123456789abcdef01234567");
    ck_assert_uint_eq(ack_redis_key_nonce(k, sizeof(k), "0123"), 0);
    ck_assert_uint_eq(ack_redis_key_nonce(k, 20, "0123456789abcdef01234567"), 0);
}
END_TEST

/* ---- the store without a server ---- */

static struct worker tw;
static int ndone;

static void
store_setup(void)
{
    evthread_use_pthreads();
    memset(&tw, 0, sizeof(tw));
    pthread_mutex_init(&tw.done_mu, NULL);
    ck_assert_ptr_nonnull(tw.base = event_base_new());
    ck_assert_int_eq(worker_wake_init(&tw), 0);
    ndone = 0;
}

static void
store_teardown(void)
{
    worker_wake_free(&tw);
    event_base_free(tw.base);
    pthread_mutex_destroy(&tw.done_mu);
}

static void
on_lookup(enum ack_lookup_answer a, void *arg)
{
    *(int *)arg = (int)a;
    ndone++;
}

static void
on_commit(enum ack_verdict v, void *arg)
{
    *(int *)arg = (int)v;
    ndone++;
}

/* Run the loop until n callbacks have run, for at most secs seconds. */
static void
run_until(int n, int secs)
{
    time_t end = time(NULL) + secs;
    while (ndone < n && time(NULL) <= end) {
        struct timeval tv = {0, 50000};
        event_base_loopexit(tw.base, &tv);
        event_base_loop(tw.base, EVLOOP_ONCE);
    }
    ck_assert_int_ge(ndone, n);
}

/* A port on 127.0.0.1 where nothing listens (bound, never listened on, closed). */
static int
closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static const unsigned char key[ACK_KEY_LEN] = "0123456789abcdef0123456789abcdef";

/* Lookups and commits against a closed port: answered through the loop, as failures. */
static void
expect_failures(struct ack_store *s, int secs)
{
    char tok[ACK_TOKEN_BUF];
    int a = -1, v = -1;
    time_t now = time(NULL);

    ck_assert_int_eq(ack_token_make(key, "alice", "deepseek", now, tok, sizeof(tok)), 0);
    ck_assert_ptr_nonnull(ack_store_lookup(s, &tw, "alice", "deepseek", now, on_lookup, &a));
    ck_assert_ptr_nonnull(ack_store_commit(s, &tw, tok, strlen(tok), now + 600, "alice", "deepseek",
                                           now + 3600, on_commit, &v));
    ck_assert_int_eq(ndone, 0); /* never inside the call */
    run_until(2, secs);
    ck_assert_int_eq(a, ACK_LOOKUP_UNAVAILABLE);
    ck_assert_int_eq(v, ACK_STORE_FAILED);
}

START_TEST(refused)
{
    char url[64], err[256], why[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", closed_port());
    struct ack_store *s = ack_redis_open(url, 1, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    ck_assert_int_eq(ack_store_healthy(s, why, sizeof(why)), 1); /* nothing tried yet */

    expect_failures(s, 5);
    ck_assert_int_eq(ack_store_healthy(s, why, sizeof(why)), 0);
    ck_assert_msg(strstr(why, "redis 127.0.0.1:") && strstr(why, "refused"), "%s", why);

    /* Still down: the next calls fail at once (until a retry connects). */
    ndone = 0;
    expect_failures(s, 5);
    struct ack_store_metrics m;
    ack_store_metrics(s, &m);
    ck_assert_uint_eq(m.calls, 4);
    ck_assert_uint_eq(m.errors, 4);
    ck_assert_uint_eq(m.le[ACK_LATENCY_BUCKETS - 1], 4);
    /* The synchronous check has no answer from a shared store: not acknowledged. */
    ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", time(NULL)), 0);
    ack_store_close(s);
}
END_TEST

/* A malformed token or an unusable name is decided without the server. */
START_TEST(malformed_without_server)
{
    char url[64], err[256];
    int a = -1, v = -1;
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", closed_port());
    struct ack_store *s = ack_redis_open(url, 1, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_nonnull(ack_store_commit(s, &tw, "junk", 4, time(NULL) + 600, "alice", "deepseek",
                                           time(NULL) + 60, on_commit, &v));
    ck_assert_ptr_nonnull(
        ack_store_lookup(s, &tw, "al\nice", "deepseek", time(NULL), on_lookup, &a));
    ck_assert_int_eq(ndone, 0);
    run_until(2, 5);
    ck_assert_int_eq(v, ACK_MALFORMED);
    ck_assert_int_eq(a, ACK_LOOKUP_NO);
    struct ack_store_metrics m;
    ack_store_metrics(s, &m);
    ck_assert_uint_eq(m.errors, 0);
    ack_store_close(s);
}
END_TEST

/* A server that accepts the connection and never answers: the calls time out. */
START_TEST(silent_server)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t al = sizeof(a);
    char url[64], err[256], why[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 8), 0); /* the kernel completes connections; nobody reads */
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", ntohs(a.sin_port));
    struct ack_store *s = ack_redis_open(url, 1, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    ack_store_attach(s, &tw);
    long long t0 = ack_store_clock();
    expect_failures(s, 10);
    long long ms = (ack_store_clock() - t0) / 1000000;
    ck_assert_int_ge(ms, ACK_REDIS_TIMEOUT_MS - 50);
    ck_assert_int_le(ms, 5 * ACK_REDIS_TIMEOUT_MS);
    ck_assert_int_eq(ack_store_healthy(s, why, sizeof(why)), 0);
    ck_assert_msg(strstr(why, "no answer within"), "%s", why);
    ack_store_close(s);
    close(fd);
}
END_TEST

/* Closing with calls in flight answers them (through the worker) and frees everything. */
START_TEST(close_in_flight)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t al = sizeof(a);
    char url[64], err[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0), ans = -1;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", ntohs(a.sin_port));
    struct ack_store *s = ack_redis_open(url, 1, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_nonnull(ack_store_lookup(s, &tw, "bob", "claude", time(NULL), on_lookup, &ans));
    struct ack_lookup *gone =
        ack_store_lookup(s, &tw, "carol", "claude", time(NULL), on_lookup, &ans);
    ck_assert_ptr_nonnull(gone);
    ack_store_lookup_cancel(gone); /* its callback never runs */
    event_base_loop(tw.base, EVLOOP_NONBLOCK);
    ack_store_close(s);
    offload_complete(&tw);
    ck_assert_int_eq(ndone, 1);
    ck_assert_int_eq(ans, ACK_LOOKUP_UNAVAILABLE);
    close(fd);
}
END_TEST

/* A worker id beyond the slots the store was opened for gets failures, not a crash. */
START_TEST(worker_out_of_range)
{
    char err[256];
    int a = -1;
    struct ack_store *s = ack_redis_open("redis://127.0.0.1:1/0", 1, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    tw.id = 1;
    ck_assert_ptr_nonnull(ack_store_lookup(s, &tw, "bob", "claude", time(NULL), on_lookup, &a));
    run_until(1, 5);
    ck_assert_int_eq(a, ACK_LOOKUP_UNAVAILABLE);
    tw.id = 0;
    ack_store_close(s);
    ck_assert_ptr_null(ack_redis_open("redis://h/0", 0, err, sizeof(err)));
    ck_assert_ptr_null(ack_redis_open("http://h/0", 1, err, sizeof(err)));
}
END_TEST

Suite *ackredis_suite(void);

Suite *
ackredis_suite(void)
{
    Suite *s = suite_create("ackredis");
    TCase *tc = tcase_create("url and keys");
    tcase_add_test(tc, url_good);
    tcase_add_test(tc, url_bad);
    tcase_add_test(tc, keys);
    suite_add_tcase(s, tc);

    tc = tcase_create("no server");
    tcase_add_checked_fixture(tc, store_setup, store_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, refused);
    tcase_add_test(tc, malformed_without_server);
    tcase_add_test(tc, silent_server);
    tcase_add_test(tc, close_in_flight);
    tcase_add_test(tc, worker_out_of_range);
    suite_add_tcase(s, tc);
    return s;
}
