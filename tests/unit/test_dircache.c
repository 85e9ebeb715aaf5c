/*
 * Unit tests for proxy/identity/dircache.c: reference-counted group sets, the local
 * cache's get/put/replace, its capacity (oldest stored evicted first), its
 * age limit, clear, and use from several threads at once.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aigate/identity/dircache.h"

static struct dircache_set *
set_of(const char *a, const char *b)
{
    const char *v[2] = {a, b};
    struct dircache_set *s = dircache_set_new(v, b ? 2 : a ? 1 : 0);
    ck_assert_ptr_nonnull(s);
    return s;
}

START_TEST(test_set_copies_and_counts)
{
    char name[] = "staff";
    const char *v[1] = {name};
    struct dircache_set *s = dircache_set_new(v, 1);
    ck_assert_ptr_nonnull(s);
    name[0] = 'X';
    ck_assert_str_eq(s->names[0], "staff");
    ck_assert_ptr_eq(dircache_set_ref(s), s);
    dircache_set_unref(s);
    ck_assert_uint_eq(s->n, 1); /* still alive: one reference left */
    dircache_set_unref(s);
    dircache_set_unref(NULL);
    ck_assert_ptr_null(dircache_set_ref(NULL));
    struct dircache_set *empty = dircache_set_new(NULL, 0);
    ck_assert_ptr_nonnull(empty);
    ck_assert_uint_eq(empty->n, 0);
    dircache_set_unref(empty);
}
END_TEST

START_TEST(test_get_put_replace)
{
    struct dircache *c = dircache_local_new(10, 3600);
    struct dircache_set *got = NULL, *a = set_of("staff", "ai-users"),
                        *b = set_of("security", NULL);
    time_t at = 0, now = time(NULL);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(dircache_get(c, "alice", &got, &at), 0);
    dircache_put(c, "alice", a, now - 5);
    ck_assert_int_eq(dircache_get(c, "alice", &got, &at), 1);
    ck_assert_ptr_eq(got, a);
    ck_assert_int_eq((long)at, (long)(now - 5));
    dircache_set_unref(got);
    dircache_put(c, "alice", b, now);
    ck_assert_int_eq(dircache_get(c, "alice", &got, &at), 1);
    ck_assert_ptr_eq(got, b);
    ck_assert_int_eq((long)at, (long)now);
    dircache_set_unref(got);
    /* NULL: a user the directory knows in no group. */
    dircache_put(c, "dave", NULL, now);
    got = a;
    ck_assert_int_eq(dircache_get(c, "dave", &got, &at), 1);
    ck_assert_ptr_null(got);
    ck_assert_int_eq(dircache_get(c, "Alice", &got, &at), 0);
    dircache_set_unref(a);
    dircache_set_unref(b);
    dircache_free(c);
    dircache_free(NULL);
}
END_TEST

START_TEST(test_capacity_evicts_oldest_stored)
{
    struct dircache *c = dircache_local_new(2, 3600);
    struct dircache_set *s = set_of("g", NULL), *got;
    time_t at, now = time(NULL);
    dircache_put(c, "a", s, now);
    dircache_put(c, "b", s, now);
    dircache_put(c, "a", s, now); /* stored again: now the newest */
    dircache_put(c, "c", s, now); /* evicts b */
    ck_assert_int_eq(dircache_get(c, "b", &got, &at), 0);
    ck_assert_int_eq(dircache_get(c, "a", &got, &at), 1);
    dircache_set_unref(got);
    ck_assert_int_eq(dircache_get(c, "c", &got, &at), 1);
    dircache_set_unref(got);
    dircache_set_unref(s);
    dircache_free(c);
}
END_TEST

START_TEST(test_age_limit_and_clear)
{
    struct dircache *c = dircache_local_new(10, 60);
    struct dircache_set *s = set_of("g", NULL), *got;
    time_t at, now = time(NULL);
    dircache_put(c, "old", s, now - 61);
    dircache_put(c, "new", s, now - 59);
    ck_assert_int_eq(dircache_get(c, "old", &got, &at), 0);
    ck_assert_int_eq(dircache_get(c, "new", &got, &at), 1);
    dircache_set_unref(got);
    dircache_clear(c);
    ck_assert_int_eq(dircache_get(c, "new", &got, &at), 0);
    dircache_put(c, "new", s, now);
    ck_assert_int_eq(dircache_get(c, "new", &got, &at), 1);
    dircache_set_unref(got);
    dircache_set_unref(s);
    dircache_free(c);
}
END_TEST

static struct dircache *shared;

static void *
hammer(void *arg)
{
    char user[32];
    unsigned seed = (unsigned)(size_t)arg;
    struct dircache_set *s = set_of("g", NULL), *got;
    time_t at;
    for (int i = 0; i < 20000; i++) {
        snprintf(user, sizeof(user), "u%u", rand_r(&seed) % 300);
        if (i % 3 == 0)
            dircache_put(shared, user, s, time(NULL));
        else if (dircache_get(shared, user, &got, &at))
            dircache_set_unref(got);
    }
    dircache_set_unref(s);
    return NULL;
}

START_TEST(test_threads)
{
    pthread_t t[4];
    shared = dircache_local_new(100, 3600);
    for (size_t i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, (void *)(i + 1)), 0);
    for (size_t i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    dircache_free(shared);
}
END_TEST

Suite *dircache_suite(void);

Suite *
dircache_suite(void)
{
    Suite *s = suite_create("dircache");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_set_copies_and_counts);
    tcase_add_test(tc, test_get_put_replace);
    tcase_add_test(tc, test_capacity_evicts_oldest_stored);
    tcase_add_test(tc, test_age_limit_and_clear);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return s;
}
