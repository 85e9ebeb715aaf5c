/*
 * Unit tests for proxy/caution/ack.c: the secret file, tokens and every verdict, the
 * store (commit, check, expiry, replay, cancel, bounds, threads), its state
 * file (persistence, corrupt files, atomic writes), its journal (group
 * commit, replay, torn tail, compaction, kill -9), the ack form and the
 * return-target URL check with the usual open-redirect tricks.
 */
#include <check.h>
#include <dirent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "aigate/caution/ack.h"
#include "aigate/core/offload.h"
#include "aigate/net/worker.h"

static char tmpdir[64];
static char statefile[128];
static char secretfile[128];
static const unsigned char key1[ACK_KEY_LEN] = "0123456789abcdef0123456789abcdef";
static const unsigned char key2[ACK_KEY_LEN] = "0123456789abcdef0123456789abcdeF";

static void
setup(void)
{
    strcpy(tmpdir, "/tmp/aigate_ack_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(statefile, sizeof(statefile), "%s/acks.state", tmpdir);
    snprintf(secretfile, sizeof(secretfile), "%s/ack.secret", tmpdir);
}

static void
teardown(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    char path[512];
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(tmpdir);
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static char *
read_file(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static size_t
count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    int c;
    ck_assert_ptr_nonnull(f);
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* ---- secret ---- */

START_TEST(secret_created_then_reused)
{
    unsigned char k[ACK_KEY_LEN], k2[ACK_KEY_LEN];
    char err[256];
    struct stat st;

    ck_assert_int_eq(ack_secret_load(secretfile, k, err, sizeof(err)), 0);
    ck_assert_int_eq(stat(secretfile, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(st.st_size, 2 * ACK_KEY_LEN + 1);
    const char *text = read_file(secretfile);
    ck_assert_uint_eq(strspn(text, "0123456789abcdef"), 2 * ACK_KEY_LEN);
    ck_assert_int_eq(text[2 * ACK_KEY_LEN], '\n');
    ck_assert_int_eq(ack_secret_load(secretfile, k2, err, sizeof(err)), 0);
    ck_assert_mem_eq(k, k2, ACK_KEY_LEN);

    /* A second, fresh file gets a different secret. */
    unlink(secretfile);
    ck_assert_int_eq(ack_secret_load(secretfile, k2, err, sizeof(err)), 0);
    ck_assert_int_ne(memcmp(k, k2, ACK_KEY_LEN), 0);
}
END_TEST

START_TEST(secret_hand_written)
{
    unsigned char k[ACK_KEY_LEN];
    char err[256];

    /* No final newline, upper case, readable by others (warns, still loads). */
    write_file(secretfile, "000102030405060708090A0B0C0D0E0F101112131415161718191a1b1c1d1e1f",
               0644);
    ck_assert_int_eq(ack_secret_load(secretfile, k, err, sizeof(err)), 0);
    for (int i = 0; i < ACK_KEY_LEN; i++)
        ck_assert_int_eq(k[i], i);
}
END_TEST

START_TEST(secret_corrupt)
{
    static const char *const bad[] = {
        "",
        "00",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1\n",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0\n",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\n",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\n",
    };
    unsigned char k[ACK_KEY_LEN];
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(secretfile, bad[i], 0600);
        err[0] = '\0';
        ck_assert_int_eq(ack_secret_load(secretfile, k, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, secretfile));
    }
    ck_assert_int_eq(ack_secret_load(tmpdir, k, err, sizeof(err)), -1);
    ck_assert_int_eq(ack_secret_load("/nonexistent-dir/ack.secret", k, err, sizeof(err)), -1);
}
END_TEST

/* ---- tokens ---- */

START_TEST(token_round_trip)
{
    char t1[ACK_TOKEN_BUF], t2[ACK_TOKEN_BUF];
    time_t now = 1760000000;

    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t1, sizeof(t1)), 0);
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t2, sizeof(t2)), 0);
    ck_assert_str_ne(t1, t2); /* fresh nonce each time */
    ck_assert_uint_le(strlen(t1), ACK_TOKEN_LEN_MAX);
    ck_assert_uint_eq(strspn(t1, "0123456789abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-_"),
                      strlen(t1));
    ck_assert_int_eq(strncmp(t1, "1760000000.", 11), 0);
    ck_assert_int_eq(ack_token_check(key1, t1, strlen(t1), "alice", "deepseek", now, 600), ACK_OK);
    ck_assert_int_eq(ack_token_check(key1, t2, strlen(t2), "alice", "deepseek", now + 600, 600),
                     ACK_OK);
    /* The check reads only len bytes. */
    char padded[ACK_TOKEN_BUF + 8];
    snprintf(padded, sizeof(padded), "%s&x=1", t1);
    ck_assert_int_eq(ack_token_check(key1, padded, strlen(t1), "alice", "deepseek", now, 600),
                     ACK_OK);
    /* Odd but legal names. */
    ck_assert_int_eq(ack_token_make(key1, "", "x", now, t1, sizeof(t1)), 0);
    ck_assert_int_eq(ack_token_check(key1, t1, strlen(t1), "", "x", now, 600), ACK_OK);
    ck_assert_int_eq(ack_token_make(key1, "김철수", "naver-clova", now, t1, sizeof(t1)), 0);
    ck_assert_int_eq(ack_token_check(key1, t1, strlen(t1), "김철수", "naver-clova", now, 600),
                     ACK_OK);
}
END_TEST

/* Another character of the same kind: digit, lower-case hex, base64url. */
static char
flip(char c)
{
    if (c == '9' || c == 'f' || c == 'z' || c == 'Z')
        return (char)(c - 1);
    if (c == '-')
        return '_';
    if (c == '_')
        return '-';
    return (char)(c + 1);
}

START_TEST(token_forged)
{
    char t[ACK_TOKEN_BUF];
    time_t now = 1760000000;

    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t, sizeof(t)), 0);
    size_t len = strlen(t);
    /* Change every byte, one at a time, to another byte of the same class so
     * the token still parses: the MAC must catch it. */
    for (size_t i = 0; i < len; i++) {
        char saved = t[i];
        if (t[i] == '.')
            continue;
        t[i] = flip(t[i]);
        ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", now, 1 << 30),
                         ACK_FORGED);
        t[i] = saved;
    }
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", now, 600), ACK_OK);
    ck_assert_int_eq(ack_token_check(key1, t, len, "bob", "deepseek", now, 600), ACK_FORGED);
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "chatgpt", now, 600), ACK_FORGED);
    ck_assert_int_eq(ack_token_check(key1, t, len, "Alice", "deepseek", now, 600), ACK_FORGED);
    ck_assert_int_eq(ack_token_check(key2, t, len, "alice", "deepseek", now, 600), ACK_FORGED);
    /* User and service cannot be shifted into each other. */
    ck_assert_int_eq(ack_token_make(key1, "ab", "c", now, t, sizeof(t)), 0);
    ck_assert_int_eq(ack_token_check(key1, t, strlen(t), "a", "bc", now, 600), ACK_FORGED);
}
END_TEST

START_TEST(token_expired_and_future)
{
    char t[ACK_TOKEN_BUF];
    time_t issued = 1760000000;

    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", issued, t, sizeof(t)), 0);
    size_t len = strlen(t);
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", issued + 600, 600), ACK_OK);
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", issued + 601, 600),
                     ACK_EXPIRED);
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", issued + 86400, 600),
                     ACK_EXPIRED);
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", issued + 1, 0),
                     ACK_EXPIRED);
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", issued, -1), ACK_EXPIRED);
    /* Issued in the future: a little skew is fine, more is not. */
    ck_assert_int_eq(
        ack_token_check(key1, t, len, "alice", "deepseek", issued - ACK_FUTURE_SKEW_S, 600),
        ACK_OK);
    ck_assert_int_eq(
        ack_token_check(key1, t, len, "alice", "deepseek", issued - ACK_FUTURE_SKEW_S - 1, 600),
        ACK_EXPIRED);
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", 1000, 600), ACK_EXPIRED);
    /* A forged token reports forged whatever its time. */
    t[len - 1] = t[len - 1] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", issued + 86400, 600),
                     ACK_FORGED);
}
END_TEST

START_TEST(token_malformed)
{
    char good[ACK_TOKEN_BUF];
    time_t now = 1760000000;
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, good, sizeof(good)), 0);
    const char *dot1 = strchr(good, '.'), *dot2 = strchr(dot1 + 1, '.');
    char nonce[ACK_NONCE_HEX + 1], mac[ACK_MAC_B64 + 1], t[256];
    snprintf(nonce, sizeof(nonce), "%.*s", ACK_NONCE_HEX, dot1 + 1);
    snprintf(mac, sizeof(mac), "%s", dot2 + 1);
    ck_assert_uint_eq(strlen(mac), ACK_MAC_B64);

    static const char *const heads[] = {
        "01760000000",
        "-1760000000",
        "+1760000000",
        "1760000000 ",
        "17600000x0",
        "99999999999999999999", /* 20 digits */
        "9999999999999999999",  /* 19 digits, beyond 64 bits */
        "0",
        "",
    };
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        snprintf(t, sizeof(t), "%s.%s.%s", heads[i], nonce, mac);
        ck_assert_msg(ack_token_check(key1, t, strlen(t), "alice", "deepseek", now, 600) ==
                          ACK_MALFORMED,
                      "case %zu: %s", i, t);
    }
    ck_assert_int_eq(ack_token_check(key1, "", 0, "alice", "deepseek", now, 600), ACK_MALFORMED);
    ck_assert_int_eq(ack_token_check(key1, "1760000000.", 11, "alice", "deepseek", now, 600),
                     ACK_MALFORMED);
    /* Structural damage to a good token. */
    size_t len = strlen(good);
    ck_assert_int_eq(ack_token_check(key1, good, len - 1, "alice", "deepseek", now, 600),
                     ACK_MALFORMED);
    snprintf(t, sizeof(t), "%s=", good);
    ck_assert_int_eq(ack_token_check(key1, t, strlen(t), "alice", "deepseek", now, 600),
                     ACK_MALFORMED);
    snprintf(t, sizeof(t), "%s", good);
    t[dot1 - good + 1] = 'A'; /* upper-case hex in the nonce */
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", now, 600), ACK_MALFORMED);
    snprintf(t, sizeof(t), "%s", good);
    t[dot2 - good] = '-';
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", now, 600), ACK_MALFORMED);
    snprintf(t, sizeof(t), "%s", good);
    t[len - 1] = '+'; /* not base64url */
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", now, 600), ACK_MALFORMED);
    t[len - 1] = '\0';
    ck_assert_int_eq(ack_token_check(key1, t, len, "alice", "deepseek", now, 600), ACK_MALFORMED);
    ck_assert_int_eq(ack_token_check(key1, NULL, 0, "alice", "deepseek", now, 600), ACK_MALFORMED);
    memset(t, '1', sizeof(t) - 1);
    ck_assert_int_eq(ack_token_check(key1, t, sizeof(t) - 1, "alice", "deepseek", now, 600),
                     ACK_MALFORMED);
    /* Unusable names. */
    char longname[ACK_USER_MAX + 2];
    memset(longname, 'u', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    ck_assert_int_eq(ack_token_check(key1, good, len, "a\nb", "deepseek", now, 600), ACK_MALFORMED);
    ck_assert_int_eq(ack_token_check(key1, good, len, longname, "deepseek", now, 600),
                     ACK_MALFORMED);
    ck_assert_int_eq(ack_token_make(key1, "a\nb", "deepseek", now, t, sizeof(t)), -1);
    ck_assert_int_eq(ack_token_make(key1, "alice", "deep\nseek", now, t, sizeof(t)), -1);
    ck_assert_int_eq(ack_token_make(key1, longname, "deepseek", now, t, sizeof(t)), -1);
    longname[ACK_USER_MAX] = '\0';
    ck_assert_int_eq(ack_token_make(key1, longname, "deepseek", now, t, sizeof(t)), 0);
    ck_assert_int_eq(ack_token_check(key1, t, strlen(t), longname, "deepseek", now, 600), ACK_OK);
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", 0, t, sizeof(t)), -1);
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", -5, t, sizeof(t)), -1);
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t, 11 + 25 + ACK_MAC_B64), -1);
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t, 11 + 25 + ACK_MAC_B64 + 1),
                     0);
}
END_TEST

START_TEST(verdict_texts)
{
    const char *seen[6];
    enum ack_verdict v[] = {ACK_OK,       ACK_FORGED,    ACK_EXPIRED,
                            ACK_REPLAYED, ACK_MALFORMED, ACK_STORE_FAILED};
    for (int i = 0; i < 6; i++) {
        seen[i] = ack_verdict_text(v[i]);
        ck_assert_ptr_nonnull(seen[i]);
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(seen[i], seen[j]);
    }
    ck_assert_str_eq(ack_verdict_text(ACK_FORGED), "forged");
}
END_TEST

/* ---- store ---- */

/*
 * A stand-in for a worker: the store hands finished commits back to it the
 * way the offload pool does, and the test runs its loop to receive them.
 */
static struct worker tw;
static int ndone; /* callbacks run */

static void
tw_init_worker(struct worker *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->done_mu, NULL);
    ck_assert_ptr_nonnull(w->base = event_base_new());
    ck_assert_int_eq(worker_wake_init(w), 0);
}

static void
tw_free_worker(struct worker *w)
{
    worker_wake_free(w);
    event_base_free(w->base);
    pthread_mutex_destroy(&w->done_mu);
}

static void
tw_init(void)
{
    evthread_use_pthreads();
    tw_init_worker(&tw);
    ndone = 0;
}

static void
tw_free(void)
{
    tw_free_worker(&tw);
}

static void
store_setup(void)
{
    setup();
    tw_init();
}

static void
store_teardown(void)
{
    tw_free();
    teardown();
}

static void
on_commit(enum ack_verdict v, void *arg)
{
    *(enum ack_verdict *)arg = v;
    ndone++;
}

/* Run the loop until n callbacks have run in all. */
static void
run_until(int n)
{
    while (ndone < n)
        event_base_loop(tw.base, EVLOOP_ONCE);
}

#define NOT_YET ((enum ack_verdict) - 1)

/* Submit a commit; its verdict lands in *v.  The callback never runs inside the call. */
static void
submit(struct ack_store *s, const char *tok, time_t nexp, const char *user, const char *svc,
       time_t gexp, enum ack_verdict *v)
{
    int before = ndone;
    *v = NOT_YET;
    ck_assert_ptr_nonnull(
        ack_store_commit(s, &tw, tok, strlen(tok), nexp, user, svc, gexp, on_commit, v));
    ck_assert_int_eq(ndone, before);
    ck_assert_int_eq(*v, NOT_YET);
}

static enum ack_verdict
commit(struct ack_store *s, const char *tok, time_t nexp, const char *user, const char *svc,
       time_t gexp)
{
    enum ack_verdict v;
    submit(s, tok, nexp, user, svc, gexp, &v);
    run_until(ndone + 1);
    return v;
}

/* A well-formed token with nonce i (the store does not check MACs). */
static const char *
fake_token(unsigned i)
{
    static char t[ACK_TOKEN_BUF];
    snprintf(t, sizeof(t), "1760000000.%024x.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", i);
    return t;
}

/* Acknowledge (user, svc) until gexp with a fresh token. */
static enum ack_verdict
grant(struct ack_store *s, const char *user, const char *svc, time_t gexp)
{
    static unsigned next = 0x100000;
    return commit(s, fake_token(next++), time(NULL) + 600, user, svc, gexp);
}

static struct ack_store *
open_store(void)
{
    char err[256] = "";
    struct ack_store *s = ack_store_open(statefile, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    return s;
}

static const char *
journal_path(void)
{
    static char p[160];
    snprintf(p, sizeof(p), "%s.journal", statefile);
    return p;
}

static long
file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

START_TEST(store_grant_check_expiry)
{
    struct ack_store *s = open_store();
    time_t now = time(NULL);

    ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", now), 0);
    ck_assert_int_eq(grant(s, "alice", "deepseek", now + 100), ACK_OK);
    ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", now), 1);
    ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", now + 99), 1);
    ck_assert_int_eq(ack_store_check(s, "bob", "deepseek", now), 0);
    ck_assert_int_eq(ack_store_check(s, "alice", "chatgpt", now), 0);
    ck_assert_int_eq(ack_store_check(s, "alicedeepseek", "", now), 0);
    ck_assert_int_eq(ack_store_check(s, "alic", "edeepseek", now), 0);
    /* A new grant replaces the expiry. */
    ck_assert_int_eq(grant(s, "alice", "deepseek", now + 1000), ACK_OK);
    ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", now + 500), 1);
    /* Expiry is exclusive, and an expired entry stays gone. */
    ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", now + 1000), 0);
    ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", now), 0);
    ck_assert_int_eq(grant(s, "carol", "claude", now - 1), ACK_OK);
    ck_assert_int_eq(ack_store_check(s, "carol", "claude", now), 0);

    char longname[ACK_USER_MAX + 2];
    memset(longname, 'u', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    ck_assert_int_eq(grant(s, longname, "deepseek", now + 100), ACK_MALFORMED);
    ck_assert_int_eq(ack_store_check(s, longname, "deepseek", now), 0);
    ack_store_close(s);
    ack_store_close(NULL);
}
END_TEST

START_TEST(store_replay)
{
    struct ack_store *s = open_store();
    time_t now = time(NULL);
    char t1[ACK_TOKEN_BUF], t2[ACK_TOKEN_BUF], t3[ACK_TOKEN_BUF];
    enum ack_verdict v1, v2;

    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t1, sizeof(t1)), 0);
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t2, sizeof(t2)), 0);
    ck_assert_int_eq(commit(s, t1, now + 600, "alice", "deepseek", now + 60), ACK_OK);
    ck_assert_int_eq(commit(s, t1, now + 600, "alice", "deepseek", now + 60), ACK_REPLAYED);
    ck_assert_int_eq(commit(s, t2, now + 600, "alice", "deepseek", now + 60), ACK_OK);
    ck_assert_int_eq(commit(s, t2, now + 600, "alice", "deepseek", now + 60), ACK_REPLAYED);
    ck_assert_int_eq(commit(s, "garbage", now + 600, "alice", "deepseek", now + 60), ACK_MALFORMED);
    t1[strlen(t1) - 1] = '\0';
    ck_assert_int_eq(commit(s, t1, now + 600, "alice", "deepseek", now + 60), ACK_MALFORMED);
    /* Two commits of one token in flight at once: exactly one wins. */
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t3, sizeof(t3)), 0);
    submit(s, t3, now + 600, "alice", "deepseek", now + 60, &v1);
    submit(s, t3, now + 600, "alice", "deepseek", now + 60, &v2);
    run_until(ndone + 2);
    ck_assert_int_eq(v1, ACK_OK);
    ck_assert_int_eq(v2, ACK_REPLAYED);
    /* Once forgotten (its token expired by then), a nonce is accepted again:
     * ack_token_check is what refuses such an old token. */
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t1, sizeof(t1)), 0);
    ck_assert_int_eq(commit(s, t1, now - 1, "alice", "deepseek", now + 60), ACK_OK);
    ck_assert_int_eq(commit(s, t1, now + 600, "alice", "deepseek", now + 60), ACK_OK);
    ck_assert_int_eq(commit(s, t1, now + 600, "alice", "deepseek", now + 60), ACK_REPLAYED);
    ack_store_close(s);
}
END_TEST

START_TEST(store_cancel)
{
    struct ack_store *s = open_store();
    time_t now = time(NULL);
    enum ack_verdict v = NOT_YET;

    /* A cancelled commit never calls back, but is recorded all the same. */
    struct ack_commit *c = ack_store_commit(s, &tw, fake_token(1), strlen(fake_token(1)), now + 600,
                                            "alice", "deepseek", now + 60, on_commit, &v);
    ck_assert_ptr_nonnull(c);
    ack_store_cancel(c);
    ack_store_cancel(NULL);
    ck_assert_int_eq(grant(s, "bob", "deepseek", now + 60), ACK_OK);
    for (int i = 0; i < 50 && !ack_store_check(s, "alice", "deepseek", now); i++)
        usleep(10000);
    event_base_loop(tw.base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(ndone, 1);
    ck_assert_int_eq(v, NOT_YET);
    ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", now), 1);
    ck_assert_int_eq(commit(s, fake_token(1), now + 600, "x", "y", now + 60), ACK_REPLAYED);
    ack_store_close(s);
}
END_TEST

static void
on_lookup(enum ack_lookup_answer a, void *arg)
{
    *(int *)arg = (int)a;
    ndone++;
}

/* The asynchronous lookup every store answers: the file store knows at once
 * and still answers through the worker's loop. */
START_TEST(store_lookup)
{
    struct ack_store *s = open_store();
    time_t now = time(NULL);
    int a = -1, b = -1, gone = -1;
    char why[64];

    ck_assert_ptr_nonnull(ack_store_lookup(s, &tw, "alice", "deepseek", now, on_lookup, &a));
    ck_assert_int_eq(ndone, 0);
    run_until(1);
    ck_assert_int_eq(a, ACK_LOOKUP_NO);
    ck_assert_int_eq(grant(s, "alice", "deepseek", now + 60), ACK_OK);
    int before = ndone;
    ck_assert_ptr_nonnull(ack_store_lookup(s, &tw, "alice", "deepseek", now, on_lookup, &a));
    ck_assert_ptr_nonnull(ack_store_lookup(s, &tw, "alice", "claude", now, on_lookup, &b));
    struct ack_lookup *l = ack_store_lookup(s, &tw, "alice", "deepseek", now, on_lookup, &gone);
    ck_assert_ptr_nonnull(l);
    ack_store_lookup_cancel(l);
    ack_store_lookup_cancel(NULL);
    ck_assert_int_eq(ndone, before);
    run_until(before + 2);
    event_base_loop(tw.base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(ndone, before + 2);
    ck_assert_int_eq(a, ACK_LOOKUP_YES);
    ck_assert_int_eq(b, ACK_LOOKUP_NO);
    ck_assert_int_eq(gone, -1);
    /* Expired at a later now; names the store cannot hold are never acknowledged. */
    ck_assert_ptr_nonnull(ack_store_lookup(s, &tw, "alice", "deepseek", now + 61, on_lookup, &a));
    ck_assert_ptr_nonnull(ack_store_lookup(s, &tw, "al\nice", "deepseek", now, on_lookup, &b));
    run_until(before + 4);
    ck_assert_int_eq(a, ACK_LOOKUP_NO);
    ck_assert_int_eq(b, ACK_LOOKUP_NO);

    /* The file store is always healthy and counts its answers, none of them errors. */
    ck_assert_int_eq(ack_store_healthy(s, why, sizeof(why)), 1);
    struct ack_store_metrics m;
    ack_store_metrics(s, &m);
    ck_assert_uint_eq(m.calls, 7); /* 6 lookups answered, 1 commit */
    ck_assert_uint_eq(m.errors, 0);
    ck_assert_uint_eq(m.le[ACK_LATENCY_BUCKETS - 1], m.calls);
    ack_store_close(s);
}
END_TEST

START_TEST(store_persists)
{
    time_t now = time(NULL);
    char t1[ACK_TOKEN_BUF], t2[ACK_TOKEN_BUF];
    const char *odd_user = "a\tb\nc%d#e\r\x7f f";

    struct ack_store *s = open_store();
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t1, sizeof(t1)), 0);
    ck_assert_int_eq(ack_token_make(key1, "alice", "deepseek", now, t2, sizeof(t2)), 0);
    ck_assert_int_eq(commit(s, t1, now + 600, "alice", "deepseek", now + 3600), ACK_OK);
    ck_assert_int_eq(grant(s, "#bob", "chat%gpt", now + 3600), ACK_OK);
    ck_assert_int_eq(grant(s, odd_user, "claude", now + 3600), ACK_OK);
    ck_assert_int_eq(grant(s, "", "x", now + 3600), ACK_OK);
    ck_assert_int_eq(grant(s, "dave", "gemini", now + 1), ACK_OK);
    ack_store_close(s);

    const char *text = read_file(statefile);
    ck_assert_int_eq(text[0], '#');
    ck_assert_ptr_nonnull(strstr(text, "\nalice\tdeepseek\t"));
    ck_assert_ptr_nonnull(strstr(text, "\n%23bob\tchat%25gpt\t"));
    ck_assert_ptr_nonnull(strstr(text, "\na%09b%0Ac%25d%23e%0D%7F f\tclaude\t"));
    ck_assert_int_eq(count_lines(statefile), 1 + 5 + 5);
    /* Closing left the state file covering everything: the journal is empty. */
    ck_assert_int_eq(file_size(journal_path()), 0);

    sleep(2); /* dave's acknowledgement expires meanwhile */
    s = open_store();
    now = time(NULL);
    ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", now), 1);
    ck_assert_int_eq(ack_store_check(s, "#bob", "chat%gpt", now), 1);
    ck_assert_int_eq(ack_store_check(s, odd_user, "claude", now), 1);
    ck_assert_int_eq(ack_store_check(s, "", "x", now), 1);
    ck_assert_int_eq(ack_store_check(s, "dave", "gemini", now), 0);
    ck_assert_int_eq(ack_store_check(s, "alice", "chatgpt", now), 0);
    ck_assert_int_eq(commit(s, t1, now + 600, "alice", "deepseek", now + 3600), ACK_REPLAYED);
    ck_assert_int_eq(commit(s, t2, now + 600, "alice", "deepseek", now + 3600), ACK_OK);
    ack_store_close(s);
    /* The expired line was dropped on the next write. */
    ck_assert_ptr_null(strstr(read_file(statefile), "dave"));
    ck_assert_int_eq(count_lines(statefile), 1 + 4 + 6);
}
END_TEST

START_TEST(store_writes_without_close)
{
    struct ack_store *s = open_store();
    enum ack_verdict v[1000];
    ck_assert_int_eq(access(statefile, F_OK), -1); /* nothing changed: no write */
    ck_assert_int_eq(grant(s, "alice", "deepseek", time(NULL) + 3600), ACK_OK);
    int found = 0;
    for (int i = 0; i < 100 && !found; i++) {
        usleep(20000);
        found = access(statefile, F_OK) == 0 && strstr(read_file(statefile), "alice") != NULL;
    }
    ck_assert_msg(found, "state file not written within 2 s");
    /* Many changes in a burst are batched, and the last one lands. */
    for (unsigned i = 0; i < 1000; i++) {
        char user[16];
        snprintf(user, sizeof(user), "u%u", i);
        submit(s, fake_token(i), time(NULL) + 600, user, "deepseek", time(NULL) + 3600, &v[i]);
    }
    run_until(ndone + 1000);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(v[i], ACK_OK);
    ack_store_close(s);
    ck_assert_int_eq(count_lines(statefile), 1 + 1001 + 1001);
}
END_TEST

START_TEST(store_atomic_file)
{
    char oldlink[160];
    time_t now = time(NULL);

    /* The old file is replaced, never rewritten in place: a hard link to it
     * keeps the old content. */
    write_file(statefile, "old\tuser\t9999999999\n", 0600);
    snprintf(oldlink, sizeof(oldlink), "%s/old-link", tmpdir);
    ck_assert_int_eq(link(statefile, oldlink), 0);
    struct ack_store *s = open_store();
    ck_assert_int_eq(ack_store_check(s, "old", "user", now), 1);
    for (int i = 0; i < 200; i++) {
        char user[16];
        snprintf(user, sizeof(user), "user%d", i);
        ck_assert_int_eq(grant(s, user, "chatgpt", now + 3600), ACK_OK);
        if (i % 50 == 0)
            usleep(300000);
    }
    ack_store_close(s);

    struct stat st;
    ck_assert_int_eq(stat(statefile, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(stat(journal_path(), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    const char *text = read_file(statefile);
    ck_assert_int_eq(text[strlen(text) - 1], '\n');
    ck_assert_int_eq(count_lines(statefile), 1 + 1 + 200 + 200);
    ck_assert_str_eq(read_file(oldlink), "old\tuser\t9999999999\n");
    /* Only the state file, its journal and the link are left: no temporary file. */
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            files++;
            ck_assert_msg(strcmp(de->d_name, "acks.state") == 0 ||
                              strcmp(de->d_name, "acks.state.journal") == 0 ||
                              strcmp(de->d_name, "old-link") == 0,
                          "left over: %s", de->d_name);
        }
    closedir(d);
    ck_assert_int_eq(files, 3);
}
END_TEST

START_TEST(store_unwritable_does_not_hang)
{
    char err[256];
    struct ack_store *s = ack_store_open("/nonexistent-dir/acks.state", err, sizeof(err));
    time_t now = time(NULL);
    ck_assert_ptr_nonnull(s);
    /* Nothing can be recorded: refused, and the token stays used. */
    ck_assert_int_eq(commit(s, fake_token(1), now + 600, "alice", "deepseek", now + 60),
                     ACK_STORE_FAILED);
    ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", now), 0);
    ck_assert_int_eq(commit(s, fake_token(1), now + 600, "alice", "deepseek", now + 60),
                     ACK_REPLAYED);
    ack_store_close(s);
}
END_TEST

START_TEST(store_load_errors)
{
    static const struct {
        const char *text;
        int line;
    } bad[] = {
        {"# header\nalice\tdeepseek\t9999999999\nbroken line\n", 3},
        {"alice\tdeepseek\n", 1},
        {"alice\tdeepseek\t12x\n", 1},
        {"alice\tdeepseek\t-5\n", 1},
        {"alice\tdeepseek\t\n", 1},
        {"alice\tdeep\tseek\t9999999999\n", 1},
        {"al%zzice\tdeepseek\t9999999999\n", 1},
        {"al%00ice\tdeepseek\t9999999999\n", 1},
        {"al%4\tdeepseek\t9999999999\n", 1},
        {"\n\n0123456789abcdef0123456\t9999999999\n", 3}, /* short nonce */
        {"0123456789ABCDEF01234567\t9999999999\n", 1},    /* upper-case nonce */
        {"0123456789abcdef0123456g\t9999999999\n", 1},    /* not hex */
        {"alice\tdeepseek\t99999999999999999999\n", 1},   /* 20 digits */
    };
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(statefile, bad[i].text, 0600);
        err[0] = '\0';
        ck_assert_msg(ack_store_open(statefile, err, sizeof(err)) == NULL, "case %zu loaded", i);
        char want[200];
        snprintf(want, sizeof(want), "%s:%d: ", statefile, bad[i].line);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "case %zu: %s", i, err);
    }
    /* A NUL byte inside a line. */
    static const char nul[] = "x\ty\t9999999999\nalice\0x\tdeepseek\t9999999999\n";
    FILE *f = fopen(statefile, "w");
    ck_assert_ptr_nonnull(f);
    fwrite(nul, 1, sizeof(nul) - 1, f);
    fclose(f);
    ck_assert_ptr_null(ack_store_open(statefile, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, ":2: "));
    /* Over-long user after decoding. */
    f = fopen(statefile, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < ACK_USER_MAX + 1; i++)
        fputc('u', f);
    fputs("\tdeepseek\t9999999999\n", f);
    fclose(f);
    ck_assert_ptr_null(ack_store_open(statefile, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, ":1: "));
    /* Not readable as a file. */
    ck_assert_ptr_null(ack_store_open(tmpdir, err, sizeof(err)));

    /* Acceptable: empty, comments and blank lines, no final newline, expired. */
    static const char *const good[] = {
        "",
        "# only a comment\n\n",
        "alice\tdeepseek\t9999999999",
        "bob\tclaude\t1\n0123456789abcdef01234567\t1\n",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        write_file(statefile, good[i], 0600);
        struct ack_store *s = ack_store_open(statefile, err, sizeof(err));
        ck_assert_msg(s != NULL, "good case %zu: %s", i, err);
        ck_assert_int_eq(ack_store_check(s, "alice", "deepseek", time(NULL)), i == 2);
        ck_assert_int_eq(ack_store_check(s, "bob", "claude", time(NULL)), 0);
        ack_store_close(s);
    }
}
END_TEST

START_TEST(store_bounded)
{
    struct ack_store *s = open_store();
    time_t now = time(NULL);
    enum ack_verdict v[4096];
    unsigned i = 0;

    while (i < ACK_STORE_MAX_NONCES + 100) {
        unsigned n = 0;
        for (; n < 4096 && i < ACK_STORE_MAX_NONCES + 100; n++, i++)
            submit(s, fake_token(i), now + 600, "alice", "deepseek", now + 60, &v[n]);
        run_until(ndone + (int)n);
        for (unsigned k = 0; k < n; k++)
            ck_assert_int_eq(v[k], ACK_OK);
    }
    /* The most recent one is certainly still there. */
    ck_assert_int_eq(commit(s, fake_token(i - 1), now + 600, "a", "b", now + 60), ACK_REPLAYED);
    ack_store_close(s);
    ck_assert_uint_eq(count_lines(statefile), 1 + 1 + ACK_STORE_MAX_NONCES);
}
END_TEST

START_TEST(store_expired_make_room_first)
{
    struct ack_store *s = open_store();
    time_t now = time(NULL);
    enum ack_verdict v[4096];
    const unsigned keep = 0xffffffu, fresh = 0x1000000u;

    ck_assert_int_eq(commit(s, fake_token(keep), now + 600, "a", "b", now + 60), ACK_OK);
    for (unsigned i = 0; i < ACK_STORE_MAX_NONCES - 1;) {
        unsigned n = 0;
        for (; n < 4096 && i < ACK_STORE_MAX_NONCES - 1; n++, i++)
            submit(s, fake_token(i), now + 1, "a", "b", now + 60, &v[n]);
        run_until(ndone + (int)n);
        for (unsigned k = 0; k < n; k++)
            ck_assert_int_eq(v[k], ACK_OK);
    }
    sleep(2);
    /* Full of expired entries: they make room, never a live one. */
    for (unsigned i = 0; i < 1000; i++)
        submit(s, fake_token(fresh + i), now + 600, "a", "b", now + 60, &v[i]);
    run_until(ndone + 1000);
    for (unsigned i = 0; i < 1000; i++) {
        ck_assert_int_eq(v[i], ACK_OK);
        submit(s, fake_token(fresh + i), now + 600, "a", "b", now + 60, &v[i]);
    }
    run_until(ndone + 1000);
    for (unsigned i = 0; i < 1000; i++)
        ck_assert_int_eq(v[i], ACK_REPLAYED);
    ck_assert_int_eq(commit(s, fake_token(keep), now + 600, "a", "b", now + 60), ACK_REPLAYED);
    ack_store_close(s);
}
END_TEST

#define THREADS 4
#define PER_THREAD 2000

struct submitter {
    struct ack_store *s;
    int id;
    struct worker w; /* its own loop, as each proxy worker has */
    int done;
    struct slot {
        struct submitter *a;
        enum ack_verdict v;
    } slot[PER_THREAD];
};

static void
on_thread_commit(enum ack_verdict v, void *arg)
{
    struct slot *sl = arg;
    sl->v = v;
    sl->a->done++;
}

static void *
submitter(void *p)
{
    struct submitter *a = p;
    time_t now = time(NULL);
    char user[32], t[ACK_TOKEN_BUF];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(user, sizeof(user), "w%d-%d", a->id, i % 50);
        a->slot[i].a = a;
        if (ack_token_make(key1, user, "deepseek", now, t, sizeof(t)) < 0 ||
            !ack_store_commit(a->s, &a->w, t, strlen(t), now + 600, user, "deepseek", now + 3600,
                              on_thread_commit, &a->slot[i]))
            return (void *)1;
        ack_store_check(a->s, user, "deepseek", now);
        event_base_loop(a->w.base, EVLOOP_NONBLOCK);
    }
    while (a->done < PER_THREAD)
        event_base_loop(a->w.base, EVLOOP_ONCE);
    return NULL;
}

/* Workers on their own threads commit at once, each loop collecting its
 * answers: every one lands, and they share syncs (group commit). */
START_TEST(store_threads)
{
    struct ack_store *s = open_store();
    pthread_t th[THREADS];
    static struct submitter args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i].s = s;
        args[i].id = i;
        tw_init_worker(&args[i].w);
        ck_assert_int_eq(pthread_create(&th[i], NULL, submitter, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        ck_assert_ptr_null(rv);
    }
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < PER_THREAD; k++)
            ck_assert_int_eq(args[i].slot[k].v, ACK_OK);
    struct ack_store_stats st;
    ack_store_stats(s, &st);
    ck_assert_uint_eq(st.commits, THREADS * PER_THREAD);
    ck_assert_msg(st.syncs < st.commits / 2, "%lu commits took %lu syncs", st.commits, st.syncs);
    ack_store_close(s);
    for (int i = 0; i < THREADS; i++)
        tw_free_worker(&args[i].w);
    ck_assert_uint_eq(count_lines(statefile), 1 + THREADS * 50 + THREADS * PER_THREAD);
}
END_TEST

/* ---- journal ---- */

/* N commits submitted together cost far fewer than N syncs. */
START_TEST(journal_group_commit)
{
    enum { N = 200 };
    struct ack_store *s = open_store();
    enum ack_verdict v[N];
    time_t now = time(NULL);
    char user[16];

    for (unsigned i = 0; i < N; i++) {
        snprintf(user, sizeof(user), "u%u", i);
        submit(s, fake_token(i), now + 600, user, "chatgpt", now + 3600, &v[i]);
    }
    run_until(N);
    struct ack_store_stats st;
    ack_store_stats(s, &st);
    for (unsigned i = 0; i < N; i++) {
        snprintf(user, sizeof(user), "u%u", i);
        ck_assert_int_eq(v[i], ACK_OK);
        ck_assert_int_eq(ack_store_check(s, user, "chatgpt", now), 1);
    }
    ck_assert_uint_eq(st.commits, N);
    /* Timing decides how many batches form; on a loaded machine a third of N has been seen. */
    ck_assert_msg(st.syncs >= 1 && st.syncs <= N / 2, "%d commits took %lu syncs", N, st.syncs);
    ack_store_close(s);
}
END_TEST

/* Loading is the state file, then the journal in order: the last word on a
 * grant wins, nonces from both are used, expired lines are skipped. */
START_TEST(journal_replay)
{
    time_t now = time(NULL);
    char text[1024];

    snprintf(text, sizeof(text), "# state\nalice\tchatgpt\t%lld\nbob\tclaude\t%lld\n%s\t%lld\n",
             (long long)now + 50, (long long)now + 50, "00000000000000000000000a",
             (long long)now + 600);
    write_file(statefile, text, 0600);
    snprintf(text, sizeof(text),
             "%s\t%lld\nalice\tchatgpt\t%lld\n%s\t%lld\nalice\tchatgpt\t%lld\n"
             "%s\t%lld\ncarol\tgemini\t%lld\n%s\t1\ndave\tgemini\t1\n",
             "00000000000000000000000b", (long long)now + 600, (long long)now + 10,
             "00000000000000000000000c", (long long)now + 600, (long long)now + 5000,
             "00000000000000000000000d", (long long)now + 600, (long long)now + 70,
             "00000000000000000000000e");
    write_file(journal_path(), text, 0600);

    struct ack_store *s = open_store();
    ck_assert_int_eq(ack_store_check(s, "alice", "chatgpt", now + 4000), 1);
    ck_assert_int_eq(ack_store_check(s, "bob", "claude", now), 1);
    ck_assert_int_eq(ack_store_check(s, "carol", "gemini", now), 1);
    ck_assert_int_eq(ack_store_check(s, "dave", "gemini", now), 0);
    static const unsigned used[] = {0xa, 0xb, 0xc, 0xd};
    for (size_t i = 0; i < sizeof(used) / sizeof(used[0]); i++)
        ck_assert_int_eq(commit(s, fake_token(used[i]), now + 600, "x", "y", now + 60),
                         ACK_REPLAYED);
    ck_assert_int_eq(commit(s, fake_token(0xe), now + 600, "x", "y", now + 60), ACK_OK);
    ack_store_close(s);
}
END_TEST

/* A last journal line cut short by a crash is ignored and cut off; a bad
 * line anywhere else stops the start with FILE:LINE. */
START_TEST(journal_torn_tail)
{
    time_t now = time(NULL);
    char text[512], err[256];
    int whole;

    /* Torn inside the nonce line of the second commit. */
    snprintf(text, sizeof(text), "%s\t%lld\nalice\tchatgpt\t%lld\n%n%s\t17",
             "00000000000000000000000a", (long long)now + 600, (long long)now + 3600, &whole,
             "00000000000000000000000b");
    write_file(journal_path(), text, 0600);
    struct ack_store *s = open_store();
    ck_assert_int_eq(ack_store_check(s, "alice", "chatgpt", now), 1);
    /* The torn commit was never answered: its token may still be used, once. */
    ck_assert_int_eq(commit(s, fake_token(0xb), now + 600, "bob", "chatgpt", now + 3600), ACK_OK);
    ck_assert_int_eq(commit(s, fake_token(0xa), now + 600, "x", "y", now + 60), ACK_REPLAYED);
    ack_store_close(s);
    /* What followed went after the last whole line: everything loads. */
    s = open_store();
    ck_assert_int_eq(ack_store_check(s, "alice", "chatgpt", now), 1);
    ck_assert_int_eq(ack_store_check(s, "bob", "chatgpt", now), 1);
    ck_assert_int_eq(commit(s, fake_token(0xb), now + 600, "x", "y", now + 60), ACK_REPLAYED);
    ack_store_close(s);
    unlink(statefile);

    /* Torn inside the acknowledgement line: the nonce line is whole, so the
     * token stays used (safe), the acknowledgement is lost; the file is cut
     * back to the last whole line at once. */
    snprintf(text, sizeof(text), "%s\t%lld\n%nbob\tcha", "00000000000000000000000c",
             (long long)now + 600, &whole);
    write_file(journal_path(), text, 0600);
    s = open_store();
    ck_assert_int_le(file_size(journal_path()), whole);
    ck_assert_int_eq(ack_store_check(s, "bob", "chatgpt", now), 0);
    ck_assert_int_eq(commit(s, fake_token(0xc), now + 600, "x", "y", now + 60), ACK_REPLAYED);
    ack_store_close(s);

    /* Only the very last line may be torn: garbage with a newline after it is corruption. */
    snprintf(text, sizeof(text), "%s\t%lld\nbob\tcha\n%s\t%lld\n", "00000000000000000000000a",
             (long long)now + 600, "00000000000000000000000b", (long long)now + 600);
    write_file(journal_path(), text, 0600);
    err[0] = '\0';
    ck_assert_ptr_null(ack_store_open(statefile, err, sizeof(err)));
    char want[200];
    snprintf(want, sizeof(want), "%s:2: ", journal_path());
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
    /* A torn last line that is garbage is still only torn. */
    snprintf(text, sizeof(text), "%s\t%lld\n\x01\x02zz%%", "00000000000000000000000a",
             (long long)now + 600);
    write_file(journal_path(), text, 0600);
    s = open_store();
    ck_assert_int_eq(commit(s, fake_token(0xa), now + 600, "x", "y", now + 60), ACK_REPLAYED);
    ack_store_close(s);
}
END_TEST

/* Once the state file covers the journal, the journal is emptied; what is
 * committed after that is in the journal until the next state write. */
START_TEST(journal_compaction)
{
    struct ack_store *s = open_store();
    time_t now = time(NULL);
    struct ack_store_stats st;

    ck_assert_int_eq(grant(s, "alice", "chatgpt", now + 3600), ACK_OK);
    ck_assert_int_gt(file_size(journal_path()), 0);
    for (int i = 0; i < 200; i++) {
        ack_store_stats(s, &st);
        if (st.compactions > 0 && file_size(journal_path()) == 0)
            break;
        usleep(10000);
    }
    ck_assert_uint_ge(st.compactions, 1);
    ck_assert_int_eq(file_size(journal_path()), 0);
    ck_assert_ptr_nonnull(strstr(read_file(statefile), "alice\tchatgpt\t"));
    /* The next commit goes to the (new) journal file. */
    ck_assert_int_eq(grant(s, "bob", "chatgpt", now + 3600), ACK_OK);
    ck_assert_ptr_nonnull(strstr(read_file(journal_path()), "bob\tchatgpt\t"));
    ack_store_close(s);

    /* The state file alone now holds both, and no temporary file is left. */
    ck_assert_int_eq(file_size(journal_path()), 0);
    s = open_store();
    ck_assert_int_eq(ack_store_check(s, "alice", "chatgpt", now), 1);
    ck_assert_int_eq(ack_store_check(s, "bob", "chatgpt", now), 1);
    ack_store_close(s);
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    while ((de = readdir(d)))
        ck_assert_msg(de->d_name[0] == '.' || strcmp(de->d_name, "acks.state") == 0 ||
                          strcmp(de->d_name, "acks.state.journal") == 0,
                      "left over: %s", de->d_name);
    closedir(d);
}
END_TEST

/* A journal left non-empty by a crash is folded into the state file soon
 * after the next start, without any new commit. */
START_TEST(journal_compacted_after_start)
{
    time_t now = time(NULL);
    char text[256];
    snprintf(text, sizeof(text), "%s\t%lld\nalice\tchatgpt\t%lld\n", "00000000000000000000000a",
             (long long)now + 600, (long long)now + 3600);
    write_file(journal_path(), text, 0600);
    struct ack_store *s = open_store();
    for (int i = 0; i < 200 && file_size(journal_path()) != 0; i++)
        usleep(10000);
    ck_assert_int_eq(file_size(journal_path()), 0);
    ck_assert_ptr_nonnull(strstr(read_file(statefile), "alice\tchatgpt\t"));
    ack_store_close(s);
}
END_TEST

/* kill -9 right after an acknowledgement was answered: it and its used
 * token are there after the restart.  The first commit makes the state
 * writer write and then pause, so the second one is on disk only through
 * the journal when the process dies. */
START_TEST(journal_survives_kill)
{
    time_t now = time(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        event_reinit(tw.base);
        struct ack_store *s = open_store();
        if (grant(s, "warm", "up", now + 3600) != ACK_OK)
            _exit(2);
        usleep(50000);
        if (commit(s, fake_token(7), now + 600, "alice", "chatgpt", now + 3600) != ACK_OK)
            _exit(3);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
    struct ack_store *s = open_store();
    ck_assert_int_eq(ack_store_check(s, "alice", "chatgpt", now), 1);
    ck_assert_int_eq(commit(s, fake_token(7), now + 600, "alice", "chatgpt", now + 3600),
                     ACK_REPLAYED);
    ack_store_close(s);
}
END_TEST

/* ---- form ---- */

static int
form(const char *body, char *url, char *tok)
{
    return ack_form_parse(body, strlen(body), url, 64, tok, 32);
}

START_TEST(form_parsing)
{
    char url[64], tok[32];

    ck_assert_int_eq(form("url=https%3A%2F%2Fchat.deepseek.com%2F&token=1.ab.cd", url, tok), 0);
    ck_assert_str_eq(url, "https://chat.deepseek.com/");
    ck_assert_str_eq(tok, "1.ab.cd");
    ck_assert_int_eq(form("x=1&token=T&y&url=http://a/b+c%2b%2B&z=", url, tok), 0);
    ck_assert_str_eq(url, "http://a/b c++");
    ck_assert_str_eq(tok, "T");
    ck_assert_int_eq(form("&&token=T&&url=u&&", url, tok), 0);
    ck_assert_str_eq(url, "u");
    ck_assert_int_eq(form("%75%72%6c=u2&%74oken=T", url, tok), 0); /* encoded names */
    ck_assert_str_eq(url, "u2");
    ck_assert_int_eq(form("url=a=b&token=T", url, tok), 0);
    ck_assert_str_eq(url, "a=b");
    ck_assert_int_eq(form("tokens=x&urls=y&url=u&token=T&bad%zzname=1", url, tok), 0);

    /* Missing, empty, duplicated. */
    ck_assert_int_eq(form("", url, tok), -1);
    ck_assert_int_eq(form("url=u", url, tok), -1);
    ck_assert_int_eq(form("token=T", url, tok), -1);
    ck_assert_int_eq(form("url=&token=T", url, tok), -1);
    ck_assert_int_eq(form("url&token=T", url, tok), -1);
    ck_assert_int_eq(form("url=u&token=", url, tok), -1);
    ck_assert_int_eq(form("url=u&token=T&url=v", url, tok), -1);
    ck_assert_int_eq(form("url=u&token=T&token=T", url, tok), -1);
    ck_assert_int_eq(form("URL=u&Token=T", url, tok), -1);
    /* Malformed escapes and NULs. */
    ck_assert_int_eq(form("url=%zz&token=T", url, tok), -1);
    ck_assert_int_eq(form("url=%4&token=T", url, tok), -1);
    ck_assert_int_eq(form("url=u&token=T%", url, tok), -1);
    ck_assert_int_eq(form("url=a%00b&token=T", url, tok), -1);
    ck_assert_int_eq(
        ack_form_parse("url=a\0b&token=T", sizeof("url=a\0b&token=T") - 1, url, 64, tok, 32), -1);
    ck_assert_int_eq(
        ack_form_parse("url=ab&token=T\0", sizeof("url=ab&token=T\0") - 1, url, 64, tok, 32), -1);
    ck_assert_int_eq(ack_form_parse("url=ab&token=T", 14, url, 64, tok, 32), 0);
    /* Only len bytes are read. */
    ck_assert_int_eq(ack_form_parse("url=ab&token=T&url=x", 14, url, 64, tok, 32), 0);
    /* Sizes: a value must fit with its NUL. */
    ck_assert_int_eq(ack_form_parse("url=abc&token=T", 15, url, 4, tok, 32), 0);
    ck_assert_int_eq(ack_form_parse("url=abcd&token=T", 16, url, 4, tok, 32), -1);
    ck_assert_int_eq(ack_form_parse("url=%41%42%43&token=T", 21, url, 4, tok, 32), 0);
    ck_assert_str_eq(url, "ABC");
    ck_assert_int_eq(ack_form_parse("url=u&token=T", 13, url, 64, tok, 0), -1);
    static char big[ACK_FORM_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    memcpy(big, "url=u&token=T&", 14);
    ck_assert_int_eq(ack_form_parse(big, ACK_FORM_MAX, url, 64, tok, 32), 0);
    ck_assert_int_eq(ack_form_parse(big, ACK_FORM_MAX + 1, url, 64, tok, 32), -1);
}
END_TEST

/* ---- return target ---- */

START_TEST(url_hosts)
{
    char host[ACK_HOST_MAX];
    int https = -1;

    ck_assert_int_eq(ack_url_parse_host("https://chat.deepseek.com/", host, sizeof(host), &https),
                     0);
    ck_assert_str_eq(host, "chat.deepseek.com");
    ck_assert_int_eq(https, 1);
    ck_assert_int_eq(
        ack_url_parse_host("HTTP://Chat.DeepSeek.COM:8080/a/b?c=d#e", host, sizeof(host), &https),
        0);
    ck_assert_str_eq(host, "chat.deepseek.com");
    ck_assert_int_eq(https, 0);
    ck_assert_int_eq(ack_url_parse_host("https://chat.deepseek.com", host, sizeof(host), NULL), 0);
    ck_assert_int_eq(ack_url_parse_host("https://chat.deepseek.com.?x", host, sizeof(host), NULL),
                     0);
    ck_assert_str_eq(host, "chat.deepseek.com.");
    ck_assert_int_eq(ack_url_parse_host("https://x.com#frag", host, sizeof(host), NULL), 0);
    ck_assert_str_eq(host, "x.com");
    ck_assert_int_eq(ack_url_parse_host("http://10.1.2.3:65535/", host, sizeof(host), NULL), 0);
    ck_assert_str_eq(host, "10.1.2.3");
    ck_assert_int_eq(ack_url_parse_host("http://[2001:DB8::1]:443/x", host, sizeof(host), NULL), 0);
    ck_assert_str_eq(host, "2001:db8::1");
    ck_assert_int_eq(ack_url_parse_host("http://[::1]/", host, sizeof(host), NULL), 0);
    ck_assert_str_eq(host, "::1");
    /* Host buffer size: NUL included. */
    ck_assert_int_eq(ack_url_parse_host("https://abc.de/", host, 7, NULL), 0);
    ck_assert_int_eq(ack_url_parse_host("https://abc.de/", host, 6, NULL), -1);
}
END_TEST

START_TEST(url_open_redirects)
{
    static const char *const bad[] = {
        "//evil.com",
        "//evil.com/https://chat.deepseek.com/",
        "/path",
        "evil.com",
        "https://evil.com@chat.deepseek.com",
        "https://chat.deepseek.com@evil.com/",
        "https://user:pass@chat.deepseek.com/",
        "https://chat.deepseek.com%40evil.com/",
        "javascript:alert(1)",
        "JavaScript://chat.deepseek.com/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://chat.deepseek.com/",
        "http:\\\\evil.com",
        "https:\\\\evil.com\\chat.deepseek.com",
        "https://evil.com\\@chat.deepseek.com/",
        "https://chat.deepseek.com/\\evil.com",
        "http:/evil.com",
        "http:evil.com",
        "https:///evil.com",
        "https://",
        "https://:443/",
        "https://chat.deepseek.com/\r\nLocation: https://evil.com/",
        "https://chat.deepseek.com/%0d%0a\nSet-Cookie: x=1",
        "https://chat.deepseek.com\r\n.evil.com/",
        "https://chat.deepseek.com\t.evil.com/",
        " https://chat.deepseek.com/",
        "https://chat.deepseek.com/ x",
        "https://chat.deepseek.com%00.evil.com/",
        "https://chat.deepseek.com:/",
        "https://chat.deepseek.com:0/",
        "https://chat.deepseek.com:65536/",
        "https://chat.deepseek.com:443x/",
        "https://chat.deepseek.com:-1/",
        "https://chat..deepseek.com/",
        "https://.chat.deepseek.com/",
        "https://chat.deepseek.com../",
        "https://ch%61t.deepseek.com/",
        "https://chat.deepseek.com;evil.com/",
        "https://chat.deep seek.com/",
        "https://\xd0\xb0pple.com/",
        "https://[::1/",
        "https://[::1]x/",
        "https://[evil.com]/",
        "https://[fe80::1%25eth0]/",
        "https://[]/",
        "",
    };
    char host[ACK_HOST_MAX];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(ack_url_parse_host(bad[i], host, sizeof(host), NULL) == -1,
                      "accepted case %zu: %s -> %s", i, bad[i], host);
    ck_assert_int_eq(
        ack_url_parse_host("https://chat.deepseek.com\0@evil.com", host, sizeof(host), NULL), 0);
    ck_assert_str_eq(host, "chat.deepseek.com"); /* a C string ends at NUL */

    /* Label and name lengths. */
    char u[600];
    snprintf(u, sizeof(u), "https://%063d.com/", 0);
    ck_assert_int_eq(ack_url_parse_host(u, host, sizeof(host), NULL), 0);
    snprintf(u, sizeof(u), "https://%064d.com/", 0);
    ck_assert_int_eq(ack_url_parse_host(u, host, sizeof(host), NULL), -1);
    snprintf(u, sizeof(u), "https://%063d.%063d.%063d.%061d/", 0, 0, 0, 0); /* 253 */
    ck_assert_int_eq(ack_url_parse_host(u, host, sizeof(host), NULL), 0);
    snprintf(u, sizeof(u), "https://%063d.%063d.%063d.%062d/", 0, 0, 0, 0); /* 254 */
    ck_assert_int_eq(ack_url_parse_host(u, host, sizeof(host), NULL), -1);
    /* Whole URL length. */
    static char longurl[ACK_URL_MAX + 2];
    memset(longurl, 'a', sizeof(longurl) - 1);
    memcpy(longurl, "https://x.com/", 14);
    longurl[ACK_URL_MAX] = '\0';
    ck_assert_int_eq(ack_url_parse_host(longurl, host, sizeof(host), NULL), 0);
    longurl[ACK_URL_MAX] = 'a';
    ck_assert_int_eq(ack_url_parse_host(longurl, host, sizeof(host), NULL), -1);
}
END_TEST

/* A token made by an earlier build (base64url HMAC-SHA256, computed
 * independently) still checks. */
START_TEST(known_token_checks)
{
    static const char tok[] =
        "1700000000.00112233445566778899aabb.9lACwZ-pr3I4vRqQ-c0KqjsQu8sbpucTjBmlyh3R8jw";
    unsigned char key[ACK_KEY_LEN];

    for (int i = 0; i < ACK_KEY_LEN; i++)
        key[i] = (unsigned char)i;
    ck_assert_int_eq(ack_token_check(key, tok, strlen(tok), "alice", "chatgpt", 1700000005, 600),
                     ACK_OK);
    ck_assert_int_ne(ack_token_check(key, tok, strlen(tok), "bob", "chatgpt", 1700000005, 600),
                     ACK_OK);
}
END_TEST

Suite *ack_suite(void);

Suite *
ack_suite(void)
{
    Suite *s = suite_create("ack");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, known_token_checks);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, secret_created_then_reused);
    tcase_add_test(tc, secret_hand_written);
    tcase_add_test(tc, secret_corrupt);
    tcase_add_test(tc, token_round_trip);
    tcase_add_test(tc, token_forged);
    tcase_add_test(tc, token_expired_and_future);
    tcase_add_test(tc, token_malformed);
    tcase_add_test(tc, verdict_texts);
    tcase_add_test(tc, form_parsing);
    tcase_add_test(tc, url_hosts);
    tcase_add_test(tc, url_open_redirects);
    suite_add_tcase(s, tc);

    tc = tcase_create("store");
    tcase_add_checked_fixture(tc, store_setup, store_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, store_grant_check_expiry);
    tcase_add_test(tc, store_replay);
    tcase_add_test(tc, store_cancel);
    tcase_add_test(tc, store_lookup);
    tcase_add_test(tc, store_persists);
    tcase_add_test(tc, store_writes_without_close);
    tcase_add_test(tc, store_atomic_file);
    tcase_add_test(tc, store_unwritable_does_not_hang);
    tcase_add_test(tc, store_load_errors);
    tcase_add_test(tc, store_bounded);
    tcase_add_test(tc, store_expired_make_room_first);
    tcase_add_test(tc, store_threads);
    tcase_add_test(tc, journal_group_commit);
    tcase_add_test(tc, journal_replay);
    tcase_add_test(tc, journal_torn_tail);
    tcase_add_test(tc, journal_compaction);
    tcase_add_test(tc, journal_compacted_after_start);
    tcase_add_test(tc, journal_survives_kill);
    suite_add_tcase(s, tc);
    return s;
}
