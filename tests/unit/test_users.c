/*
 * Unit tests for proxy/identity/users.c: group membership, address-identified users
 * (longest prefix), and config validation messages.
 */
#include <check.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "aigate/identity/users.h"

static char tmpdir[64];
static char cfgfile[128];
static config_t cfg;

static void
setup(void)
{
    strcpy(tmpdir, "/tmp/aigate_users_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(cfgfile, sizeof(cfgfile), "%s/aigate.conf", tmpdir);
    config_init(&cfg);
}

static void
teardown(void)
{
    config_destroy(&cfg);
    unlink(cfgfile);
    rmdir(tmpdir);
}

/* Parse text as a config file and load its groups/addresses. */
static struct users *
load(const char *text, char *err, size_t errlen)
{
    FILE *f = fopen(cfgfile, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    ck_assert_msg(config_read_file(&cfg, cfgfile) == CONFIG_TRUE, "%s:%d: %s",
                  config_error_file(&cfg), config_error_line(&cfg), config_error_text(&cfg));
    const config_setting_t *root = config_root_setting(&cfg);
    return users_load(config_setting_get_member(root, "groups"),
                      config_setting_get_member(root, "addresses"), err, errlen);
}

static struct users *
load_ok(const char *text)
{
    char err[512] = "";
    struct users *u = load(text, err, sizeof(err));
    ck_assert_msg(u != NULL, "load failed: %s", err);
    return u;
}

static void
load_fails(const char *text, const char *want)
{
    char err[512] = "", expect[512];
    ck_assert_ptr_null(load(text, err, sizeof(err)));
    snprintf(expect, sizeof(expect), "%s:%s", cfgfile, want);
    ck_assert_msg(strcmp(err, expect) == 0, "got \"%s\", want \"%s\"", err, expect);
}

static const char *
by_addr(const struct users *u, const char *a)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, a, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
    } else {
        ck_assert_int_eq(inet_pton(AF_INET6, a, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
    }
    return users_by_address(u, (struct sockaddr *)&ss);
}

START_TEST(group_membership)
{
    struct users *u = load_ok("groups = (\n"
                              "  { name = \"security\"; members = [ \"carol\", \"alice\" ]; },\n"
                              "  { name = \"staff\";    members = [ \"alice\", \"bob\" ]; },\n"
                              "  { name = \"empty\"; },\n"
                              "  { name = \"interns\";  members = ( \"dave\" ); }\n"
                              ");\n");
    const char *const *g;
    ck_assert_uint_eq(users_groups(u, "alice", &g), 2);
    ck_assert_str_eq(g[0], "security");
    ck_assert_str_eq(g[1], "staff");
    ck_assert_uint_eq(users_groups(u, "bob", &g), 1);
    ck_assert_str_eq(g[0], "staff");
    ck_assert_uint_eq(users_groups(u, "carol", &g), 1);
    ck_assert_str_eq(g[0], "security");
    ck_assert_uint_eq(users_groups(u, "dave", &g), 1);
    ck_assert_str_eq(g[0], "interns");
    ck_assert_uint_eq(users_groups(u, "mallory", &g), 0);
    ck_assert_ptr_null(g);
    ck_assert_uint_eq(users_groups(u, "Alice", &g), 0);

    ck_assert_int_eq(users_group_exists(u, "security"), 1);
    ck_assert_int_eq(users_group_exists(u, "empty"), 1);
    ck_assert_int_eq(users_group_exists(u, "interns"), 1);
    ck_assert_int_eq(users_group_exists(u, "admins"), 0);
    ck_assert_ptr_null(by_addr(u, "10.0.0.1"));
    users_free(u);
}
END_TEST

START_TEST(many_groups)
{
    size_t cap = 1 << 20, n = 0;
    char *text = malloc(cap);
    n += (size_t)snprintf(text + n, cap - n, "groups = (\n");
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(text + n, cap - n,
                              "{ name = \"g%d\"; members = [ \"u%d\", \"all\" ]; }%s\n", i, i % 100,
                              i < 1999 ? "," : "");
    snprintf(text + n, cap - n, ");\n");
    struct users *u = load_ok(text);
    free(text);
    const char *const *g;
    ck_assert_uint_eq(users_groups(u, "all", &g), 2000);
    ck_assert_str_eq(g[0], "g0");
    ck_assert_str_eq(g[1999], "g1999");
    ck_assert_uint_eq(users_groups(u, "u7", &g), 20);
    ck_assert_str_eq(g[19], "g1907");
    ck_assert_int_eq(users_group_exists(u, "g1234"), 1);
    ck_assert_int_eq(users_group_exists(u, "g2000"), 0);
    users_free(u);
}
END_TEST

START_TEST(address_longest_prefix)
{
    struct users *u = load_ok("addresses = (\n"
                              "  { network = \"10.0.0.0/8\";     user = \"ten\"; },\n"
                              "  { network = \"10.20.0.0/16\";   user = \"finance-floor\"; },\n"
                              "  { network = \"10.20.3.4\";      user = \"kiosk\"; },\n"
                              "  { network = \"10.30.1.2/16\";   user = \"host-bits\"; },\n"
                              "  { network = \"2001:db8::/32\";  user = \"v6\"; },\n"
                              "  { network = \"2001:db8:1::/48\"; user = \"v6-lab\"; },\n"
                              "  { network = \"0.0.0.0/0\";      user = \"anyone4\"; }\n"
                              ");\n");
    ck_assert_str_eq(by_addr(u, "10.1.2.3"), "ten");
    ck_assert_str_eq(by_addr(u, "10.20.9.9"), "finance-floor");
    ck_assert_str_eq(by_addr(u, "10.20.3.4"), "kiosk");
    ck_assert_str_eq(by_addr(u, "10.20.3.5"), "finance-floor");
    ck_assert_str_eq(by_addr(u, "10.30.200.1"), "host-bits");
    ck_assert_str_eq(by_addr(u, "192.0.2.1"), "anyone4");
    ck_assert_str_eq(by_addr(u, "::ffff:10.20.3.4"), "kiosk");
    ck_assert_str_eq(by_addr(u, "2001:db8:ffff::1"), "v6");
    ck_assert_str_eq(by_addr(u, "2001:db8:1:2::3"), "v6-lab");
    ck_assert_ptr_null(by_addr(u, "2001:db9::1"));
    ck_assert_ptr_null(by_addr(u, "::1"));
    const char *const *g;
    ck_assert_uint_eq(users_groups(u, "ten", &g), 0);
    ck_assert_int_eq(users_group_exists(u, "ten"), 0);

    struct sockaddr unix_sa = {.sa_family = AF_UNIX};
    ck_assert_ptr_null(users_by_address(u, &unix_sa));
    users_free(u);
}
END_TEST

START_TEST(absent_sections)
{
    char err[64];
    struct users *u = users_load(NULL, NULL, err, sizeof(err));
    ck_assert_ptr_nonnull(u);
    const char *const *g = (const char *const *)u;
    ck_assert_uint_eq(users_groups(u, "alice", &g), 0);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(users_group_exists(u, "staff"), 0);
    ck_assert_ptr_null(by_addr(u, "127.0.0.1"));
    users_free(u);
    users_free(NULL);

    u = load_ok("groups = ();\naddresses = ();\n");
    ck_assert_uint_eq(users_groups(u, "alice", &g), 0);
    ck_assert_ptr_null(by_addr(u, "::1"));
    users_free(u);
}
END_TEST

START_TEST(validation)
{
    load_fails("groups = (\n { name = \"a\"; },\n { name = \"b\"; },\n { name = \"a\"; }\n);\n",
               "4: duplicate group \"a\" (first on line 2)");
    load_fails("groups = (\n { members = [ \"x\" ]; }\n);\n", "2: groups entry without \"name\"");
    load_fails("groups = (\n { name = \"\"; }\n);\n", "2: \"name\" must not be empty");
    load_fails("groups = (\n { name = 3; }\n);\n", "2: \"name\" must be a string");
    load_fails("groups = (\n { name = \"a\";\n   colour = \"red\"; }\n);\n",
               "3: unknown key \"colour\" in groups entry");
    load_fails("groups = (\n { name = \"a\"; members = \"x\"; }\n);\n",
               "2: \"members\" must be a list of user names");
    load_fails("groups = (\n { name = \"a\"; members = [ 1 ]; }\n);\n",
               "2: members of group \"a\" must be non-empty strings");
    load_fails("groups = (\n { name = \"a\"; members = [ \"x\",\n \"x\" ]; }\n);\n",
               "3: user \"x\" listed twice in group \"a\"");
    load_fails("groups = { name = \"a\"; };\n",
               "1: groups must be a list: ( { name = \"...\"; members = [ ... ]; }, ... )");
    load_fails("groups = ( \"a\" );\n",
               "1: each groups entry must be { name = ...; members = ...; }");

    load_fails("addresses = (\n { network = \"10.0.0.0/33\"; user = \"x\"; }\n);\n",
               "2: bad network \"10.0.0.0/33\" (want a.b.c.d/n or x::y/n)");
    load_fails("addresses = (\n { network = \"finance\"; user = \"x\"; }\n);\n",
               "2: bad network \"finance\" (want a.b.c.d/n or x::y/n)");
    load_fails("addresses = (\n { network = \"10.0.0.0/8\"; }\n);\n",
               "2: addresses entry without \"user\"");
    load_fails(
        "addresses = (\n { network = \"10.0.0.0/8\"; user = \"x\";\n  users = \"y\"; }\n);\n",
        "3: unknown key \"users\" in addresses entry");
    load_fails("addresses = (\n { network = \"10.0.0.0/8\"; user = \"x\"; },\n"
               " { network = \"10.1.0.0/8\"; user = \"y\"; }\n);\n",
               "3: duplicate network \"10.1.0.0/8\" (first on line 2)");
    load_fails("addresses = \"10.0.0.0/8\";\n",
               "1: addresses must be a list: ( { network = \"...\"; user = \"...\"; }, ... )");
}
END_TEST

Suite *users_suite(void);

Suite *
users_suite(void)
{
    Suite *s = suite_create("users");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, group_membership);
    tcase_add_test(tc, many_groups);
    tcase_add_test(tc, address_longest_prefix);
    tcase_add_test(tc, absent_sections);
    tcase_add_test(tc, validation);
    suite_add_tcase(s, tc);
    return s;
}
