/*
 * Unit tests for proxy/identity/negotiate.c without a KDC: parsing the
 * Proxy-Authorization value, user names from principals (which realm is
 * stripped), the keytab check on keytabs made here with random keys, the
 * acceptor's refusals of tokens that are not Kerberos (with a reason that
 * never quotes the token, from several threads at once), and the auth keys
 * of the config (negotiate mode, keytab permissions, FILE:LINE errors).
 * Real tickets from a real KDC are in tests/e2e/t_directory_parts.sh.
 */
#include <check.h>
#include <krb5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aigate/core/config.h"
#include "aigate/identity/auth.h"
#include "aigate/identity/negotiate.h"

static char dir[64];
static char keytab[128];

/* A keytab at path with one random AES key for each principal. */
static void
make_keytab(const char *path, const char *const *principals, size_t n)
{
    krb5_context ctx;
    krb5_keytab kt;
    char name[256];
    ck_assert_int_eq(krb5_init_context(&ctx), 0);
    snprintf(name, sizeof(name), "WRFILE:%s", path);
    ck_assert_int_eq(krb5_kt_resolve(ctx, name, &kt), 0);
    for (size_t i = 0; i < n; i++) {
        krb5_keytab_entry e;
        memset(&e, 0, sizeof(e));
        ck_assert_int_eq(krb5_parse_name(ctx, principals[i], &e.principal), 0);
        e.vno = 2;
        ck_assert_int_eq(krb5_c_make_random_key(ctx, ENCTYPE_AES256_CTS_HMAC_SHA1_96, &e.key), 0);
        ck_assert_int_eq(krb5_kt_add_entry(ctx, kt, &e), 0);
        krb5_free_principal(ctx, e.principal);
        krb5_free_keyblock_contents(ctx, &e.key);
    }
    krb5_kt_close(ctx, kt);
    krb5_free_context(ctx);
    ck_assert_int_eq(chmod(path, 0600), 0);
}

static void
setup(void)
{
    static const char *const p[] = {"HTTP/proxy.corp.example@CORP.EXAMPLE",
                                    "HTTP/other.corp.example@CORP.EXAMPLE"};
    strcpy(dir, "/tmp/aigate-negotiate-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(keytab, sizeof(keytab), "%s/proxy.keytab", dir);
    make_keytab(keytab, p, 2);
}

static void
teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- parsing ---------------------------------------------------------------------- */

static enum negotiate_parse_rc
parse(const char *v, const char **tok, size_t *len)
{
    return negotiate_parse(v, strlen(v), tok, len);
}

START_TEST(test_parse)
{
    const char *tok;
    size_t len;
    ck_assert_int_eq(parse("Negotiate YIIC/QYG", &tok, &len), NEGOTIATE_PARSE_OK);
    ck_assert_uint_eq(len, 8);
    ck_assert_int_eq(strncmp(tok, "YIIC/QYG", len), 0);
    ck_assert_int_eq(parse("  negotiate \t YWJjZA==  \t", &tok, &len), NEGOTIATE_PARSE_OK);
    ck_assert_uint_eq(len, 8);
    ck_assert_int_eq(strncmp(tok, "YWJjZA==", len), 0);
    ck_assert_int_eq(parse("NEGOTIATE YWJjZGU=", &tok, &len), NEGOTIATE_PARSE_OK);
    /* Other schemes are not ours. */
    ck_assert_int_eq(parse("Basic YWxpY2U6cHc=", &tok, &len), NEGOTIATE_PARSE_OTHER);
    ck_assert_int_eq(parse("NegotiateX YWJj", &tok, &len), NEGOTIATE_PARSE_OTHER);
    ck_assert_int_eq(parse("Negotiat", &tok, &len), NEGOTIATE_PARSE_OTHER);
    ck_assert_int_eq(parse("", &tok, &len), NEGOTIATE_PARSE_OTHER);
    /* Ours, but broken. */
    ck_assert_int_eq(parse("Negotiate", &tok, &len), NEGOTIATE_PARSE_BAD);
    ck_assert_int_eq(parse("Negotiate   ", &tok, &len), NEGOTIATE_PARSE_BAD);
    ck_assert_int_eq(parse("Negotiate YWJ", &tok, &len), NEGOTIATE_PARSE_BAD);
    ck_assert_int_eq(parse("Negotiate YW=j", &tok, &len), NEGOTIATE_PARSE_BAD);
    ck_assert_int_eq(parse("Negotiate Y===", &tok, &len), NEGOTIATE_PARSE_BAD);
    ck_assert_int_eq(parse("Negotiate YW Jj", &tok, &len), NEGOTIATE_PARSE_BAD);
    ck_assert_int_eq(parse("Negotiate YW-_", &tok, &len), NEGOTIATE_PARSE_BAD);
    ck_assert_ptr_null(tok);
    /* Not NUL-terminated: only len bytes count. */
    ck_assert_int_eq(negotiate_parse("Negotiate YWJjZA==garbage", 18, &tok, &len),
                     NEGOTIATE_PARSE_OK);
    ck_assert_uint_eq(len, 8);
}
END_TEST

START_TEST(test_parse_length_limit)
{
    size_t n = strlen("Negotiate ") + NEGOTIATE_TOKEN_MAX + 4;
    char *v = malloc(n + 1);
    const char *tok;
    size_t len;
    ck_assert_ptr_nonnull(v);
    memcpy(v, "Negotiate ", 10);
    memset(v + 10, 'A', n - 10);
    v[n] = '\0';
    ck_assert_int_eq(negotiate_parse(v, n, &tok, &len), NEGOTIATE_PARSE_BAD);
    ck_assert_int_eq(negotiate_parse(v, n - 4, &tok, &len), NEGOTIATE_PARSE_OK);
    ck_assert_uint_eq(len, NEGOTIATE_TOKEN_MAX);
    free(v);
}
END_TEST

START_TEST(test_user_name)
{
    char out[64];
    const char *svc = "HTTP/proxy.corp.example@CORP.EXAMPLE";
    ck_assert_int_eq(negotiate_user_name("alice@CORP.EXAMPLE", svc, 1, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "alice");
    ck_assert_int_eq(negotiate_user_name("alice@CORP.EXAMPLE", svc, 0, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "alice@CORP.EXAMPLE");
    /* Another realm keeps its realm, so it can never pass for a local user. */
    ck_assert_int_eq(negotiate_user_name("alice@PARTNER.EXAMPLE", svc, 1, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "alice@PARTNER.EXAMPLE");
    ck_assert_int_eq(negotiate_user_name("alice@corp.example", svc, 1, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "alice@corp.example");
    /* An escaped @ belongs to the name. */
    ck_assert_int_eq(negotiate_user_name("alice\\@home@CORP.EXAMPLE", svc, 1, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "alice\\@home");
    ck_assert_int_eq(negotiate_user_name("host/pc1@CORP.EXAMPLE", svc, 1, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "host/pc1");
    /* Service realm unknown: nothing stripped. */
    ck_assert_int_eq(negotiate_user_name("alice@CORP.EXAMPLE", NULL, 1, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "alice@CORP.EXAMPLE");
    /* Does not fit; nothing left. */
    ck_assert_int_eq(negotiate_user_name("alice@CORP.EXAMPLE", svc, 0, out, 10), -1);
    ck_assert_int_eq(negotiate_user_name("@CORP.EXAMPLE", svc, 1, out, sizeof(out)), -1);
}
END_TEST

/* ---- keytab and acceptor ------------------------------------------------------------ */

START_TEST(test_keytab_check)
{
    char err[512], empty[160], missing[160];
    ck_assert_int_eq(negotiate_keytab_check(keytab, NULL, err, sizeof(err)), 0);
    ck_assert_int_eq(
        negotiate_keytab_check(keytab, "HTTP/proxy.corp.example@CORP.EXAMPLE", err, sizeof(err)),
        0);
    ck_assert_int_eq(negotiate_keytab_check(keytab, "HTTP/other.corp.example", err, sizeof(err)),
                     0);
    ck_assert_int_eq(
        negotiate_keytab_check(keytab, "HTTP/proxy.corp.example@OTHER.EXAMPLE", err, sizeof(err)),
        -1);
    ck_assert_msg(strstr(err, "holds no key for HTTP/proxy.corp.example@OTHER.EXAMPLE"), "%s", err);
    ck_assert_int_eq(negotiate_keytab_check(keytab, "HTTP/nothere", err, sizeof(err)), -1);
    snprintf(missing, sizeof(missing), "%s/missing.keytab", dir);
    ck_assert_int_eq(negotiate_keytab_check(missing, NULL, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "No such file"), "%s", err);
    snprintf(empty, sizeof(empty), "%s/empty.keytab", dir);
    FILE *f = fopen(empty, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(negotiate_keytab_check(empty, NULL, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "empty.keytab"), "%s", err);
}
END_TEST

START_TEST(test_acceptor_needs_the_principal)
{
    char err[512];
    struct negotiate *n = negotiate_new(keytab, NULL, 1, err, sizeof(err));
    ck_assert_msg(n != NULL, "%s", err);
    negotiate_free(n);
    n = negotiate_new(keytab, "HTTP/proxy.corp.example", 1, err, sizeof(err));
    ck_assert_msg(n != NULL, "%s", err);
    negotiate_free(n);
    n = negotiate_new(keytab, "HTTP/nothere.corp.example@CORP.EXAMPLE", 1, err, sizeof(err));
    ck_assert_ptr_null(n);
    ck_assert_msg(strstr(err, "nothere"), "%s", err);
    negotiate_free(NULL);
}
END_TEST

static struct negotiate *shared;

/* Valid base64, not a Kerberos token: refused with a reason that does not quote it. */
static void *
accept_garbage(void *arg)
{
    static const char *const toks[] = {
        "YWJjZA==",             /* "abcd" */
        "YIIBAAYGKwYBBQUCoA==", /* a SPNEGO header, cut short */
        "YCgGCSqGSIb3EgECAgEAbh0wG6ADAgEFoQMCAQ6iBwMFAAAAAACjBQAAAAA=", /* krb5 AP-REQ, junk */
    };
    (void)arg;
    for (int i = 0; i < 30; i++) {
        struct negotiate_result res;
        const char *t = toks[i % 3];
        ck_assert_int_eq(negotiate_accept(shared, t, strlen(t), &res), 0);
        ck_assert_msg(res.reason[0] != '\0' && strcmp(res.reason, "Success") != 0, "reason: %s",
                      res.reason);
        ck_assert_msg(!strstr(res.reason, t), "the reason quotes the token: %s", res.reason);
        ck_assert_str_eq(res.user, "");
        ck_assert_ptr_null(res.reply);
        negotiate_result_clear(&res);
    }
    return NULL;
}

START_TEST(test_accept_refuses_garbage)
{
    char err[512];
    struct negotiate_result res;
    pthread_t t[4];
    shared = negotiate_new(keytab, NULL, 1, err, sizeof(err));
    ck_assert_msg(shared != NULL, "%s", err);
    ck_assert_int_eq(negotiate_accept(shared, "YWJj", 3, &res), 0);
    ck_assert_str_eq(res.reason, "token is not base64");
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, accept_garbage, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    negotiate_free(shared);
}
END_TEST

/* ---- config --------------------------------------------------------------------------- */

static struct config *
load(const char *text, char *err, size_t errlen)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/aigate.conf", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    err[0] = '\0';
    return config_load(path, err, errlen);
}

START_TEST(test_config_negotiate)
{
    char err[512];
    struct config *c = load("auth : { mode = \"negotiate\"; };", err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err); /* keytab defaults to proxy.keytab beside the config */
    ck_assert_int_eq(c->auth.mode, AUTH_NEGOTIATE);
    ck_assert_str_eq(c->auth.keytab, keytab);
    ck_assert_ptr_null(c->auth.principal);
    ck_assert_int_eq(c->auth.strip_realm, 1);
    ck_assert_ptr_null(c->auth.htpasswd);
    ck_assert_ptr_null(c->authdb);
    ck_assert_ptr_nonnull(c->negotiate);
    config_unref(c);

    char path[160];
    snprintf(path, sizeof(path), "%s/users.htpasswd", dir);
    FILE *f = fopen(path, "w");
    fputs("alice:$2y$10$C.gLKbEyfMwEavN1I47kUOFEjZ5fcdGViZUXgA/.byjlqIKquoPM6\n", f);
    fclose(f);
    c = load("auth : { mode = \"negotiate\"; principal = \"HTTP/proxy.corp.example\";\n"
             "  strip_realm = false; htpasswd = \"users.htpasswd\"; realm = \"Corp\"; };",
             err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(c->auth.principal, "HTTP/proxy.corp.example");
    ck_assert_int_eq(c->auth.strip_realm, 0);
    ck_assert_str_eq(c->auth.htpasswd, path);
    ck_assert_ptr_nonnull(c->authdb); /* Basic offered as well */
    config_unref(c);
}
END_TEST

static void
load_fails(const char *text, int line, const char *what)
{
    char err[512], want[128];
    struct config *c = load(text, err, sizeof(err));
    ck_assert_msg(c == NULL, "loaded: %s", text);
    snprintf(want, sizeof(want), "%s/aigate.conf:%d: ", dir, line);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "want %s..., got %s", want, err);
    ck_assert_msg(strstr(err, what) != NULL, "want [%s] in %s", what, err);
}

START_TEST(test_config_negotiate_errors)
{
    load_fails("auth : { mode = \"kerberos\"; };", 1, "not one of basic, negotiate");
    load_fails("auth : { mode = \"negotiate\";\n keytab = \"nope.keytab\"; };", 2, "No such file");
    load_fails("auth : { mode = \"negotiate\";\n principal = \"HTTP/nothere@CORP.EXAMPLE\"; };", 2,
               "holds no key for HTTP/nothere@CORP.EXAMPLE");
    load_fails("auth : { mode = \"negotiate\";\n strip_realm = 1; };", 2, "true or false");
    load_fails("auth : { mode = \"negotiate\";\n keytab_file = \"x\"; };", 2,
               "unknown key \"keytab_file\" in auth");
    ck_assert_int_eq(chmod(keytab, 0604), 0);
    load_fails("auth : { mode = \"negotiate\";\n keytab = \"proxy.keytab\"; };", 2,
               "is world-readable (mode 0604): chmod o-rwx");
    ck_assert_int_eq(chmod(keytab, 0602), 0);
    load_fails("auth : { mode = \"negotiate\"; };", 1, "is world-writable");
    ck_assert_int_eq(chmod(keytab, 0660), 0);
    load_fails("auth : { mode = \"negotiate\"; };", 1, "writable by its group");
    ck_assert_int_eq(chmod(keytab, 0640), 0);
    char err[512];
    struct config *c = load("auth : { mode = \"negotiate\"; };", err, sizeof(err));
    ck_assert_msg(c != NULL, "group-readable is fine: %s", err);
    config_unref(c);
    /* The keys of negotiate mean nothing to basic: its htpasswd default stays. */
    c = load("auth : { mode = \"basic\"; htpasswd = \"proxy.keytab\"; };", err, sizeof(err));
    ck_assert_ptr_null(c);
}
END_TEST

Suite *negotiate_suite(void);

Suite *
negotiate_suite(void)
{
    Suite *s = suite_create("negotiate");
    TCase *tc = tcase_create("pure");
    tcase_add_test(tc, test_parse);
    tcase_add_test(tc, test_parse_length_limit);
    tcase_add_test(tc, test_user_name);
    suite_add_tcase(s, tc);
    tc = tcase_create("keytab");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_keytab_check);
    tcase_add_test(tc, test_acceptor_needs_the_principal);
    tcase_add_test(tc, test_accept_refuses_garbage);
    tcase_add_test(tc, test_config_negotiate);
    tcase_add_test(tc, test_config_negotiate_errors);
    suite_add_tcase(s, tc);
    return s;
}
