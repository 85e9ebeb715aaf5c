/*
 * Config loading: defaults, every error carries FILE:LINE, unknown keys are
 * named, includes resolve against the config's folder, refcounting.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aigate/core/config.h"

static char dir[64];

static void
setup(void)
{
    strcpy(dir, "/tmp/aigate-cfg-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *
write_file(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static struct config *
load(const char *text, char *err, size_t errlen)
{
    err[0] = '\0';
    return config_load(write_file("aigate.conf", text), err, errlen);
}

START_TEST(test_empty_defaults)
{
    char err[512];
    struct config *c = load("", err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_uint_eq(c->nlisten, 1);
    ck_assert_str_eq(c->listen[0].text, "127.0.0.1:3128");
    ck_assert_int_ge(c->workers, 1);
    ck_assert_uint_eq(c->nconnect_ports, 1);
    ck_assert_int_eq(c->connect_ports[0], 443);
    ck_assert_int_eq(c->limits.max_connections, 20000);
    ck_assert_uint_eq(c->limits.max_header_bytes, 65536);
    ck_assert_int_eq(c->limits.header_timeout_ms, 10000);
    ck_assert_int_eq(c->limits.idle_timeout_ms, 60000);
    ck_assert_int_eq(c->limits.connect_timeout_ms, 10000);
    ck_assert_int_eq(c->limits.shutdown_grace_ms, 5000);
    ck_assert_int_eq(c->auth.mode, AUTH_NONE);
    ck_assert_int_eq(c->tls.intercept, 0);
    ck_assert_int_eq(c->tls.warn_fallback_block, 1);
    ck_assert_int_eq(c->ack.ttl_s, 28800);
    ck_assert_int_eq(c->audit.scope_ai, 0);
    ck_assert_uint_eq(c->audit.rotate_bytes, 104857600);
    ck_assert_int_eq(c->audit.keep, 10);
    ck_assert_str_eq(c->dns.hosts_file, "/etc/hosts");
    ck_assert_uint_eq(c->client_networks.n, 2);
    ck_assert_ptr_null(c->admin.text);
    /* Relative paths resolve against the config's folder. */
    char want[256];
    snprintf(want, sizeof(want), "%s/audit.jsonl", dir);
    ck_assert_str_eq(c->audit.path, want);
    config_unref(c);
}
END_TEST

START_TEST(test_values)
{
    char err[512];
    struct config *c =
        load("listen = [ \"127.0.0.1:8080\", \"[::1]:8081\" ];\n"
             "workers = 3;\n"
             "client_networks = [ \"10.0.0.0/8\" ];\n"
             "connect_ports = [ 443, 8443 ];\n"
             "limits : { max_connections = 5; header_timeout_ms = 1000; };\n"
             "audit : { path = \"/var/tmp/x.jsonl\"; scope = \"ai\"; };\n"
             "dns : { hosts_file = \"hosts\"; nameservers = [ \"127.0.0.1:53\" ]; };\n"
             "tls : { warn_fallback = \"allow\"; };\n"
             "admin : { listen = \"127.0.0.1:3129\"; };\n",
             err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_uint_eq(c->nlisten, 2);
    ck_assert_int_eq(c->workers, 3);
    ck_assert_uint_eq(c->client_networks.n, 1);
    ck_assert(config_connect_port_ok(c, 8443));
    ck_assert(!config_connect_port_ok(c, 80));
    ck_assert_int_eq(c->limits.max_connections, 5);
    ck_assert_int_eq(c->limits.header_timeout_ms, 1000);
    ck_assert_int_eq(c->limits.idle_timeout_ms, 60000);
    ck_assert_str_eq(c->audit.path, "/var/tmp/x.jsonl");
    ck_assert_int_eq(c->audit.scope_ai, 1);
    ck_assert_uint_eq(c->dns.nnameservers, 1);
    ck_assert_int_eq(c->tls.warn_fallback_block, 0);
    ck_assert_str_eq(c->admin.text, "127.0.0.1:3129");
    struct config *r = config_ref(c);
    config_unref(c);
    ck_assert_int_eq(r->workers, 3); /* still alive: one reference left */
    config_unref(r);
}
END_TEST

struct bad_case {
    const char *text;
    const char *want; /* substring of the message after FILE: */
};

static const struct bad_case bad_cases[] = {
    {"listen = [ \"127.0.0.1:3128\" ];\nbogus = 1;\n", ":2: unknown key \"bogus\""},
    {"limits : {\n  max_conections = 5;\n};\n", ":2: unknown key \"max_conections\" in limits"},
    {"listen = [ \"nonsense\" ];\n", ":1: bad listen address"},
    {"\n\nclient_networks = [ \"10.0.0.0/33\" ];\n", ":3: bad network"},
    {"connect_ports = [ 0 ];\n", ":1: port 0 out of range"},
    {"limits : { header_timeout_ms = \"10\"; };\n", ":1: \"header_timeout_ms\" must be an integer"},
    {"auth : { mode = \"kerberos\"; };\n", ":1: auth mode \"kerberos\""},
    {"audit : { scope = \"some\"; };\n", ":1: audit scope must be"},
    {"tls : { warn_fallback = \"maybe\"; };\n", ":1: warn_fallback must be"},
    {"workers = 100;\n", ":1: \"workers\" must be between"},
    {"listen = [ \"127.0.0.1:3128\" \n", ":2:"}, /* syntax error */
    {"limits = 5;\n", ":1: \"limits\" must be a group"},
    {"proxy_protocol = [ \"10.0.0.0/33\" ];\n", ":1: bad network \"10.0.0.0/33\""},
    {"proxy_protocol = [ \"lb.example\" ];\n", ":1: bad network"},
    {"proxy_protocol = 5;\n", ":1: \"proxy_protocol\" must be a list of strings"},
    {"\nack : { store = \"http://redis:6379/0\"; };\n", ":2: ack.store: want redis://"},
    {"ack : { store = \"rediss://r:6379/0\"; };\n", ":1: ack.store: rediss:// (TLS)"},
    {"ack : { store = \"redis://r:0/0\"; };\n", ":1: ack.store: port must be"},
    {"ack : { store = \"redis://:@r/0\"; };\n", ":1: ack.store: empty password"},
    {"ack : { store = 6379; };\n", ":1: \"store\" must be a string"},
};

START_TEST(test_errors)
{
    char err[512];
    const struct bad_case *bc = &bad_cases[_i];
    struct config *c = load(bc->text, err, sizeof(err));
    ck_assert_msg(c == NULL, "case %d loaded", _i);
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "%s/aigate.conf:", dir);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "case %d: %s", _i, err);
    ck_assert_msg(strstr(err, bc->want) != NULL, "case %d: want %s, got %s", _i, bc->want, err);
}
END_TEST

/* SPEC 10: the fleet keys; -t checks the store's syntax, never its reachability. */
START_TEST(test_fleet_keys)
{
    char err[512];
    struct config *c = load("proxy_protocol = [ \"10.0.0.0/8\", \"fd00::/8\" ];\n"
                            "ack : { store = \"redis://:s3cret@10.9.9.9:1/2\"; };\n",
                            err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_uint_eq(c->proxy_protocol.n, 2);
    ck_assert_str_eq(c->ack.store, "redis://:s3cret@10.9.9.9:1/2");
    config_unref(c);
    c = load("ack : { store = \"\"; };\n", err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_ptr_null(c->ack.store);
    ck_assert_uint_eq(c->proxy_protocol.n, 0);
    config_unref(c);
    /* A bad URL's error never repeats the password. */
    c = load("ack : { store = \"redis://:s3cret@bad host/0\"; };\n", err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_ptr_null(strstr(err, "s3cret"));
}
END_TEST

START_TEST(test_include_error_names_included_file)
{
    char err[512];
    write_file("policy.conf", "policy = (\n  { name = \"x\"; action = \"explode\"; }\n);\n");
    struct config *c = load("@include \"policy.conf\"\n", err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "policy.conf:2:") != NULL, "%s", err);
}
END_TEST

/* libconfig 1.5 exits the process on an @include it cannot read as a file. */
START_TEST(test_include_not_a_file)
{
    char err[512], sub[300], fifo[300], text[700];
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);

    struct config *c = load("listen = [ \"127.0.0.1:3128\" ];\n@include \"/\"\n", err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "aigate.conf:2: @include \"/\": not a regular file") != NULL, "%s",
                  err);

    ck_assert_ptr_null(load("@include \"fifo\"\n", err, sizeof(err)));
    ck_assert_msg(strstr(err, "aigate.conf:1: @include") && strstr(err, "not a regular file"), "%s",
                  err);

    /* nested: the included file names a directory on its third line */
    snprintf(text, sizeof(text), "# one\n# two\n@include \"%s\"\n", sub);
    write_file("inner.conf", text);
    ck_assert_ptr_null(load("@include \"inner.conf\"\n", err, sizeof(err)));
    ck_assert_msg(strstr(err, "inner.conf:3: @include") && strstr(err, "not a regular file"), "%s",
                  err);

    ck_assert_ptr_null(load("@include \"missing.conf\"\n", err, sizeof(err)));
    ck_assert_msg(strstr(err, "aigate.conf:1: @include") && strstr(err, "No such file"), "%s", err);
}
END_TEST

START_TEST(test_missing_file)
{
    char err[512];
    struct config *c = config_load("/nonexistent/aigate.conf", err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "/nonexistent/aigate.conf") != NULL, "%s", err);
}
END_TEST

START_TEST(test_shipped_config)
{
    char err[512];
    struct config *c = config_load("rules/aigate.conf", err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_ptr_nonnull(c->catalog);
    ck_assert_ptr_nonnull(c->policy);
    config_unref(c);
}
END_TEST

Suite *config_suite(void);

Suite *
config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_empty_defaults);
    tcase_add_test(tc, test_values);
    tcase_add_loop_test(tc, test_errors, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, test_include_error_names_included_file);
    tcase_add_test(tc, test_include_not_a_file);
    tcase_add_test(tc, test_fleet_keys);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_shipped_config);
    suite_add_tcase(s, tc);
    return s;
}
