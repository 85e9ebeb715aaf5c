/*
 * Unit tests for proxy/identity/auth.c: htpasswd loading, Basic parsing, crypt
 * verification for each hash format, the credential cache, the back-off.
 */
#include <check.h>
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>

#include "aigate/identity/auth.h"

static char tmpdir[64];
static char htfile[128];

static void
setup(void)
{
    strcpy(tmpdir, "/tmp/aigate_auth_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(htfile, sizeof(htfile), "%s/users.htpasswd", tmpdir);
}

static void
teardown(void)
{
    unlink(htfile);
    rmdir(tmpdir);
}

static void
write_file(const char *text)
{
    FILE *f = fopen(htfile, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* crypt(3) hash of pw with a fresh salt of the given prefix and cost. */
static char *
make_hash(const char *prefix, unsigned long count, const char *pw)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    ck_assert_ptr_nonnull(cd);
    ck_assert_ptr_nonnull(crypt_gensalt_rn(prefix, count, NULL, 0, salt, sizeof(salt)));
    char *out = strdup(crypt_r(pw, salt, cd));
    free(cd);
    return out;
}

/* "Basic " + base64(user:pass) */
static char *
basic(const char *userpass)
{
    size_t n = strlen(userpass);
    char *out = malloc(6 + 4 * ((n + 2) / 3) + 1);
    memcpy(out, "Basic ", 6);
    EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)userpass, (int)n);
    return out;
}

static int
verify(struct auth_db *db, struct auth_cache *c, const char *userpass, char *user, size_t cap)
{
    char *h = basic(userpass);
    int ok = auth_basic_verify(db, c, h, strlen(h), user, cap);
    free(h);
    return ok;
}

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct auth_db *
load_ok(const char *text)
{
    char err[512] = "";
    write_file(text);
    struct auth_db *db = auth_db_load(htfile, err, sizeof(err));
    ck_assert_msg(db != NULL, "load failed: %s", err);
    return db;
}

static void
load_fails(const char *text, const char *want)
{
    char err[512] = "", expect[512];
    write_file(text);
    ck_assert_ptr_null(auth_db_load(htfile, err, sizeof(err)));
    snprintf(expect, sizeof(expect), "%s:%s", htfile, want);
    ck_assert_msg(strncmp(err, expect, strlen(expect)) == 0, "got \"%s\", want \"%s...\"", err,
                  expect);
}

START_TEST(each_format_verifies)
{
    static const struct {
        const char *prefix;
        unsigned long count;
    } fmt[] = {{"$2y$", 4}, {"$2b$", 4}, {"$2a$", 4}, {"$6$", 0}, {"$5$", 0}, {"$5$", 1000}};
    char text[4096] = "# test users\n\n", user[AUTH_USER_MAX], up[64];
    for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
        snprintf(up, sizeof(up), "pw-%zu", i);
        char *h = make_hash(fmt[i].prefix, fmt[i].count, up);
        size_t n = strlen(text);
        snprintf(text + n, sizeof(text) - n, "u%zu:%s\r\n", i, h);
        free(h);
    }
    struct auth_db *db = load_ok(text);
    ck_assert_uint_eq(auth_db_count(db), 6);
    for (size_t i = 0; i < 6; i++) {
        snprintf(up, sizeof(up), "u%zu:pw-%zu", i, i);
        memset(user, 0, sizeof(user));
        ck_assert_msg(verify(db, NULL, up, user, sizeof(user)) == 1, "format %zu", i);
        snprintf(up, sizeof(up), "u%zu", i);
        ck_assert_str_eq(user, up);
        snprintf(up, sizeof(up), "u%zu:pw-%zu!", i, i);
        ck_assert_int_eq(verify(db, NULL, up, user, sizeof(user)), 0);
        snprintf(up, sizeof(up), "u%zu:", i);
        ck_assert_int_eq(verify(db, NULL, up, user, sizeof(user)), 0);
    }
    /* Another user's password does not work. */
    ck_assert_int_eq(verify(db, NULL, "u0:pw-1", user, sizeof(user)), 0);
    auth_db_free(db);
}
END_TEST

START_TEST(unknown_user_and_empty_db)
{
    char user[64];
    char *h = make_hash("$2y$", 4, "secret");
    char text[256];
    snprintf(text, sizeof(text), "alice:%s\n", h);
    free(h);
    struct auth_db *db = load_ok(text);
    ck_assert_int_eq(verify(db, NULL, "mallory:secret", user, sizeof(user)), 0);
    ck_assert_int_eq(verify(db, NULL, "alice:secret", user, sizeof(user)), 1);
    ck_assert_int_eq(verify(db, NULL, "Alice:secret", user, sizeof(user)), 0);
    auth_db_free(db);

    db = load_ok("# nobody\n\n   \n");
    ck_assert_uint_eq(auth_db_count(db), 0);
    ck_assert_int_eq(verify(db, NULL, "alice:secret", user, sizeof(user)), 0);
    auth_db_free(db);
}
END_TEST

START_TEST(unknown_user_costs_a_crypt)
{
    char user[64];
    char *h = make_hash("$2y$", 10, "secret");
    char text[256];
    snprintf(text, sizeof(text), "alice:%s\n", h);
    free(h);
    struct auth_db *db = load_ok(text);
    double t0 = now_ms();
    ck_assert_int_eq(verify(db, NULL, "alice:wrong", user, sizeof(user)), 0);
    double t1 = now_ms();
    ck_assert_int_eq(verify(db, NULL, "mallory:wrong", user, sizeof(user)), 0);
    double t2 = now_ms();
    ck_assert_msg(t2 - t1 > (t1 - t0) / 2, "known %.2f ms, unknown %.2f ms", t1 - t0, t2 - t1);
    auth_db_free(db);
}
END_TEST

START_TEST(header_parsing)
{
    struct auth_cred c;
    static const char *const bad[] = {
        "",
        "Basic",
        "Basic ",
        "YWxpY2U6c2VjcmV0",         /* missing scheme */
        "Bearer YWxpY2U6c2VjcmV0",  /* other scheme */
        "Basic YWxpY2U6c2VjcmV0=",  /* length not a multiple of 4 */
        "Basic YWxpY2U6c2VjcmV",    /* truncated */
        "Basic YWxp!2U6c2VjcmV0",   /* bad character */
        "Basic YWxpY2U6c2VjcmV0\"", /* trailing junk */
        "Basic YQ==YQ==",           /* padding in the middle */
        "Basic YR==",               /* non-canonical padding bits */
        "Basic YWxpY2U=",           /* "alice": no colon */
        "Basic OnNlY3JldA==",       /* ":secret": empty user */
        "Basic YQBiOmM=",           /* "a\0b:c": NUL */
        "Basic YQpiOmM=",           /* "a\nb:c": control in user */
        "Basicx YWxpY2U6c2VjcmV0",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(auth_basic_parse(bad[i], strlen(bad[i]), &c) == -1, "accepted \"%s\"",
                      bad[i]);

    static const char *const good[] = {"Basic YWxpY2U6c2VjcmV0", "bAsIc YWxpY2U6c2VjcmV0",
                                       "  Basic   YWxpY2U6c2VjcmV0 \t"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ck_assert_int_eq(auth_basic_parse(good[i], strlen(good[i]), &c), 0);
        ck_assert_str_eq(c.user, "alice");
        ck_assert_str_eq(c.pass, "secret");
        ck_assert_uint_eq(c.ulen, 5);
        ck_assert_uint_eq(c.plen, 6);
    }
    /* The password may hold colons; the length bound is on the raw value. */
    const char *colons = "Basic YTpiOmM="; /* a:b:c */
    ck_assert_int_eq(auth_basic_parse(colons, strlen(colons), &c), 0);
    ck_assert_str_eq(c.user, "a");
    ck_assert_str_eq(c.pass, "b:c");
    ck_assert_int_eq(auth_basic_parse(colons, 8, &c), -1);

    char big[AUTH_HEADER_MAX + 64];
    memset(big, 'A', sizeof(big));
    memcpy(big, "Basic YTpi", 10);
    ck_assert_int_eq(auth_basic_parse(big, AUTH_HEADER_MAX + 4, &c), -1);
    auth_cred_clear(&c);
    ck_assert_uint_eq(c.ulen, 0);
    ck_assert_int_eq(c.user[0], 0);
}
END_TEST

START_TEST(user_buffer_too_small)
{
    char user[4];
    char *h = make_hash("$5$", 0, "pw");
    char text[256];
    snprintf(text, sizeof(text), "alice:%s\n", h);
    free(h);
    struct auth_db *db = load_ok(text);
    ck_assert_int_eq(verify(db, NULL, "alice:pw", user, sizeof(user)), 0);
    char user6[6];
    ck_assert_int_eq(verify(db, NULL, "alice:pw", user6, sizeof(user6)), 1);
    ck_assert_str_eq(user6, "alice");
    auth_db_free(db);
}
END_TEST

START_TEST(cache_hit_skips_crypt)
{
    char user[64], text[256];
    uint64_t hits, misses;
    char *h = make_hash("$2y$", 10, "secret");
    snprintf(text, sizeof(text), "alice:%s\n", h);
    free(h);
    struct auth_db *db = load_ok(text);
    struct auth_cache *c = auth_cache_new(64, 60);
    ck_assert_ptr_nonnull(c);

    ck_assert_int_eq(verify(db, c, "alice:wrong", user, sizeof(user)), 0);
    ck_assert_int_eq(verify(db, c, "alice:wrong", user, sizeof(user)), 0);
    auth_cache_stats(c, &hits, &misses);
    ck_assert_uint_eq(hits, 0); /* failures are never cached */
    ck_assert_uint_eq(misses, 2);

    ck_assert_int_eq(verify(db, c, "alice:secret", user, sizeof(user)), 1);
    double t0 = now_ms();
    ck_assert_int_eq(verify(db, c, "alice:secret", user, sizeof(user)), 1);
    double dt = now_ms() - t0;
    ck_assert_msg(dt < 1.0, "cached verify took %.3f ms", dt);
    ck_assert_str_eq(user, "alice");
    auth_cache_stats(c, &hits, &misses);
    ck_assert_uint_eq(hits, 1);
    ck_assert_uint_eq(misses, 3);

    /* A different password for the same user is not a hit. */
    ck_assert_int_eq(verify(db, c, "alice:secreT", user, sizeof(user)), 0);
    auth_cache_stats(c, &hits, &misses);
    ck_assert_uint_eq(hits, 1);
    auth_cache_free(c);
    auth_db_free(db);
}
END_TEST

START_TEST(reload_invalidates_cache)
{
    char user[64], text[256];
    uint64_t hits, misses;
    char *h = make_hash("$2y$", 4, "old");
    snprintf(text, sizeof(text), "alice:%s\n", h);
    free(h);
    struct auth_db *db1 = load_ok(text);
    struct auth_cache *c = auth_cache_new(64, 60);
    ck_assert_int_eq(verify(db1, c, "alice:old", user, sizeof(user)), 1);
    ck_assert_int_eq(verify(db1, c, "alice:old", user, sizeof(user)), 1);
    auth_cache_stats(c, &hits, &misses);
    ck_assert_uint_eq(hits, 1);

    h = make_hash("$2y$", 4, "new");
    snprintf(text, sizeof(text), "alice:%s\n", h);
    free(h);
    struct auth_db *db2 = load_ok(text);
    ck_assert_uint_ne(auth_db_generation(db1), auth_db_generation(db2));
    ck_assert_int_eq(verify(db2, c, "alice:old", user, sizeof(user)), 0);
    ck_assert_int_eq(verify(db2, c, "alice:new", user, sizeof(user)), 1);
    auth_cache_stats(c, &hits, &misses);
    ck_assert_uint_eq(hits, 1);
    ck_assert_uint_eq(misses, 3);
    auth_cache_free(c);
    auth_db_free(db1);
    auth_db_free(db2);
}
END_TEST

static void
cred(struct auth_cred *c, const char *user, const char *pass)
{
    memset(c, 0, sizeof(*c));
    c->ulen = strlen(user);
    c->plen = strlen(pass);
    memcpy(c->user, user, c->ulen);
    memcpy(c->pass, pass, c->plen);
}

START_TEST(cache_bounded_and_expires)
{
    struct auth_db *db = load_ok("");
    struct auth_cache *c = auth_cache_new(4, 1);
    struct auth_cred a[5];
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        cred(&a[i], name, "pw");
    }
    for (int i = 0; i < 4; i++)
        auth_cache_put(c, db, &a[i]);
    /* Touch u0, so u1 is the least recently used when u4 needs room. */
    ck_assert_int_eq(auth_cache_check(c, db, &a[0]), 1);
    auth_cache_put(c, db, &a[4]);
    ck_assert_int_eq(auth_cache_check(c, db, &a[1]), 0);
    ck_assert_int_eq(auth_cache_check(c, db, &a[0]), 1);
    ck_assert_int_eq(auth_cache_check(c, db, &a[4]), 1);
    usleep(1100 * 1000);
    ck_assert_int_eq(auth_cache_check(c, db, &a[4]), 0);
    ck_assert_ptr_null(auth_cache_new(0, 10));
    ck_assert_ptr_null(auth_cache_new(10, 0));
    auth_cache_free(c);
    auth_cache_free(NULL);
    auth_db_free(db);
}
END_TEST

static void
sin4(struct sockaddr_in *s, const char *a)
{
    memset(s, 0, sizeof(*s));
    s->sin_family = AF_INET;
    ck_assert_int_eq(inet_pton(AF_INET, a, &s->sin_addr), 1);
}

static void
sin6(struct sockaddr_in6 *s, const char *a)
{
    memset(s, 0, sizeof(*s));
    s->sin6_family = AF_INET6;
    ck_assert_int_eq(inet_pton(AF_INET6, a, &s->sin6_addr), 1);
}

START_TEST(backoff_sequence)
{
    static const unsigned want[] = {0, 0, 0, 250, 500, 1000, 2000, 4000, 8000, 8000, 8000};
    struct auth_backoff *b = auth_backoff_new();
    struct sockaddr_in a, other;
    struct sockaddr_in6 mapped, v6;
    sin4(&a, "10.1.2.3");
    sin4(&other, "10.1.2.4");
    sin6(&mapped, "::ffff:10.1.2.3");
    sin6(&v6, "2001:db8::1");
    time_t t = 1000;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        ck_assert_uint_eq(auth_backoff_fail(b, (struct sockaddr *)&a, t++), want[i]);
    /* v4-mapped is the same client; other addresses are not affected. */
    ck_assert_uint_eq(auth_backoff_fail(b, (struct sockaddr *)&mapped, t), 8000);
    ck_assert_uint_eq(auth_backoff_fail(b, (struct sockaddr *)&other, t), 0);
    ck_assert_uint_eq(auth_backoff_fail(b, (struct sockaddr *)&v6, t), 0);

    auth_backoff_ok(b, (struct sockaddr *)&a);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(auth_backoff_fail(b, (struct sockaddr *)&a, t), 0);
    ck_assert_uint_eq(auth_backoff_fail(b, (struct sockaddr *)&a, t), 250);
    /* A quiet minute forgets. */
    t += AUTH_BACKOFF_WINDOW_S;
    ck_assert_uint_eq(auth_backoff_fail(b, (struct sockaddr *)&a, t), 0);
    /* ok for an address that never failed is harmless. */
    auth_backoff_ok(b, (struct sockaddr *)&other);
    auth_backoff_ok(b, (struct sockaddr *)&v6);
    auth_backoff_free(b);
    auth_backoff_free(NULL);
}
END_TEST

START_TEST(backoff_bounded)
{
    struct auth_backoff *b = auth_backoff_new();
    struct sockaddr_in a, x;
    sin4(&a, "192.0.2.1");
    for (int i = 0; i < 5; i++)
        auth_backoff_fail(b, (struct sockaddr *)&a, 1000);
    ck_assert_uint_eq(auth_backoff_fail(b, (struct sockaddr *)&a, 1000), 1000);
    /* 100k other clients fail once each, later: the table stays the same size
     * and the stalest entry (a) is evicted. */
    for (uint32_t i = 0; i < 100000; i++) {
        memset(&x, 0, sizeof(x));
        x.sin_family = AF_INET;
        x.sin_addr.s_addr = htonl(0x0a000000u + i);
        ck_assert_uint_eq(auth_backoff_fail(b, (struct sockaddr *)&x, 1001), 0);
    }
    ck_assert_uint_eq(auth_backoff_fail(b, (struct sockaddr *)&a, 1002), 0);
    auth_backoff_free(b);
}
END_TEST

START_TEST(htpasswd_errors)
{
    char *h = make_hash("$2y$", 4, "x");
    char text[1024];

    load_fails("# users\nalice\n", "2: expected user:hash");
    load_fails(":$apr1$abc$def\n", "1: expected user:hash");
    load_fails("\n\ndave:$apr1$Bn2Bvx2O$cnV5xNwD7n3f7bBMjmvp0.\n",
               "3: unsupported hash for user \"dave\"");
    load_fails("bob:secret\n", "1: unsupported hash for user \"bob\"");
    load_fails("carol:ab01FAX.bQRSU\n", "1: unsupported hash for user \"carol\"");
    load_fails("eve:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "1: unsupported hash for user \"eve\"");
    load_fails("trunc:$2y$04$abcdefghijklmnopqrstuu\n", "1: unsupported hash for user \"trunc\"");
    snprintf(text, sizeof(text), "# a\nalice:%s\nbob:%s\n\nalice:%s\n", h, h, h);
    load_fails(text, "5: duplicate user \"alice\" (first on line 2)");
    snprintf(text, sizeof(text), "ok:%s\nbad%c:%s\n", h, 1, h);
    load_fails(text, "2: control character in user name");
    free(h);

    char err[256];
    snprintf(htfile, sizeof(htfile), "%s/missing", tmpdir);
    ck_assert_ptr_null(auth_db_load(htfile, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "cannot open"));
    snprintf(htfile, sizeof(htfile), "%s/users.htpasswd", tmpdir);
    auth_db_free(NULL);
}
END_TEST

START_TEST(shipped_sample)
{
    char err[256], user[64];
    struct auth_db *db = auth_db_load("rules/users.htpasswd", err, sizeof(err));
    ck_assert_msg(db != NULL, "%s", err);
    ck_assert_uint_eq(auth_db_count(db), 3);
    ck_assert_int_eq(verify(db, NULL, "alice:alice-pass", user, sizeof(user)), 1);
    ck_assert_int_eq(verify(db, NULL, "bob:bob-pass", user, sizeof(user)), 1);
    ck_assert_int_eq(verify(db, NULL, "carol:carol-pass", user, sizeof(user)), 1);
    ck_assert_int_eq(verify(db, NULL, "carol:alice-pass", user, sizeof(user)), 0);
    auth_db_free(db);
}
END_TEST

Suite *auth_suite(void);

Suite *
auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, each_format_verifies);
    tcase_add_test(tc, unknown_user_and_empty_db);
    tcase_add_test(tc, unknown_user_costs_a_crypt);
    tcase_add_test(tc, header_parsing);
    tcase_add_test(tc, user_buffer_too_small);
    tcase_add_test(tc, cache_hit_skips_crypt);
    tcase_add_test(tc, reload_invalidates_cache);
    tcase_add_test(tc, cache_bounded_and_expires);
    tcase_add_test(tc, backoff_sequence);
    tcase_add_test(tc, backoff_bounded);
    tcase_add_test(tc, htpasswd_errors);
    tcase_add_test(tc, shipped_sample);
    suite_add_tcase(s, tc);
    return s;
}
