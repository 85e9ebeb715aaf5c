/*
 * --explain report: the deciding rule, its action and reason, the near
 * misses with the failing condition, URL forms and errors.
 */
#include <arpa/inet.h>
#include <check.h>
#include <libconfig.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/rules/catalog.h"
#include "aigate/rules/explain.h"
#include "aigate/rules/gate.h"
#include "aigate/rules/policy.h"

static const char conf[] =
    "services = (\n"
    "{ id = \"deepseek\"; name = \"DeepSeek\"; category = \"chat\"; vendor_country = \"CN\";\n"
    "  hosts = [ \"deepseek.com\", \"*.deepseek.com\" ]; },\n"
    "{ id = \"chatgpt\"; name = \"ChatGPT\"; category = \"chat\"; vendor_country = \"US\";\n"
    "  hosts = [ \"chatgpt.com\" ]; },\n"
    "{ id = \"hubchat\"; name = \"Hub chat\"; category = \"other\"; vendor_country = \"US\";\n"
    "  hosts = [ \"hub.example\" ]; paths = [ \"/chat\", \"/chat/*\" ]; }\n"
    ");\n"
    "policy = (\n"
    "{ name = \"ban-cn-ai\"; action = \"block\"; vendor_countries = [ \"CN\" ];\n"
    "  reason = \"Chinese AI services are banned for business use.\"; },\n"
    "{ name = \"no-uploads\"; action = \"block\"; categories = [ \"chat\" ];\n"
    "  methods = [ \"POST\", \"PUT\" ]; paths = [ \"*/upload*\" ]; },\n"
    "{ name = \"security-free\"; action = \"allow\"; groups = [ \"security\" ]; },\n"
    "{ name = \"tenant\"; action = \"allow\"; hosts = [ \"login.example\" ];\n"
    "  add_headers = ( { name = \"Restrict-Access-To-Tenants\"; value = \"corp.example\"; } ); },\n"
    "{ name = \"caution\"; action = \"warn\"; categories = [ \"chat\" ]; ack_ttl_s = 3600; }\n"
    ");\n";

static config_t cfg;
static struct catalog *cat;
static struct policy *pol;
static struct sockaddr_in client;
static struct tm now;
static int intercept;

static void
setup(void)
{
    char err[256];

    config_init(&cfg);
    ck_assert(config_read_string(&cfg, conf) == CONFIG_TRUE);
    cat = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err));
    ck_assert_msg(cat != NULL, "%s", err);
    pol = policy_load(config_lookup(&cfg, "policy"), cat, NULL, err, sizeof(err));
    ck_assert_msg(pol != NULL, "%s", err);
    intercept = 1;
    client.sin_family = AF_INET;
    client.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    memset(&now, 0, sizeof(now));
    now.tm_year = 126;
    now.tm_mon = 10;
    now.tm_mday = 23;
    now.tm_hour = 13;
    now.tm_min = 10;
    now.tm_wday = 1;
}

static void
teardown(void)
{
    policy_free(pol);
    catalog_free(cat);
    config_destroy(&cfg);
}

/* Run explain_print into a string; *rc gets its return value. */
static char *
run(const char *user, const char *const *groups, size_t ngroups, const char *method,
    const char *url, int *rc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    struct gate_cfg g = {cat, pol, 0, intercept, 1, 28800, 0};
    struct explain_req e = {.user = user,
                            .groups = groups,
                            .ngroups = ngroups,
                            .client = (struct sockaddr *)&client,
                            .method = method,
                            .url = url,
                            .now = &now};

    ck_assert_ptr_nonnull(f);
    *rc = explain_print(f, &g, &e);
    fclose(f);
    return text;
}

#define HAS(text, s) ck_assert_msg(strstr(text, s) != NULL, "missing \"%s\" in:\n%s", s, text)
#define LACKS(text, s) ck_assert_msg(strstr(text, s) == NULL, "unexpected \"%s\" in:\n%s", s, text)

static const char *const staff[] = {"staff"};

START_TEST(deciding_rule_and_reason)
{
    int rc;
    char *t = run("alice", staff, 1, "GET", "https://chat.deepseek.com/", &rc);

    ck_assert_int_eq(rc, 0);
    HAS(t, "deepseek  (DeepSeek)");
    HAS(t, "category    chat");
    HAS(t, "vendor      CN");
    HAS(t, "ban-cn-ai  (<config>:10)  action block");
    HAS(t, "Chinese AI services are banned for business use.");
    HAS(t, "ok  vendor_countries CN is in [CN]");
    HAS(t, "Effective action: block (rule \"ban-cn-ai\")");
    free(t);
}
END_TEST

START_TEST(near_miss_explained)
{
    int rc;
    char *t = run("alice", staff, 1, "POST", "https://chatgpt.com/backend-api/conversation", &rc);

    ck_assert_int_eq(rc, 0);
    HAS(t, "caution  (<config>:17)  action warn");
    HAS(t, "valid 3600 s");
    HAS(t, "Rules that came close");
    /* one condition short: the group rule and the upload rule */
    HAS(t, "security-free");
    HAS(t, "NO  groups           alice is in [staff], rule wants [security]");
    HAS(t, "no-uploads");
    HAS(t, "2 of 3 conditions held");
    HAS(t, "NO  paths            /backend-api/conversation matches none of [*/upload*]");
    HAS(t, "ok  methods          POST is in [POST, PUT]");
    /* the ban failed on its only condition: listed, with the reason */
    HAS(t, "US is not in [CN]");
    HAS(t, "Effective action: warn (rule \"caution\")");
    free(t);
}
END_TEST

START_TEST(no_rule_and_not_catalogued)
{
    int rc;
    char *t = run(NULL, NULL, 0, "GET", "http://www.example.org:8080/a/b?q=1", &rc);

    ck_assert_int_eq(rc, 0);
    HAS(t, "(anonymous)");
    HAS(t, "www.example.org  port 8080");
    HAS(t, "path        /a/b");
    HAS(t, "query       q=1");
    HAS(t, "www.example.org is not a catalogued AI service");
    HAS(t, "none: no rule matched");
    HAS(t, "Effective action: allow (no rule matched)");
    free(t);
}
END_TEST

START_TEST(connect_and_uncatalogued_https)
{
    int rc;
    char *t = run("alice", staff, 1, "CONNECT", "chatgpt.com:443", &rc);

    /* tls.intercept takes a catalogued host: the requests inside decide */
    ck_assert_int_eq(rc, 0);
    HAS(t, "CONNECT tunnel intercepted");
    HAS(t, "Effective action: allow (intercepted)");
    HAS(t, "verdict: action=allow rule=- service=chatgpt page=none tls=intercept headers=0");
    free(t);
    t = run("alice", staff, 1, "CONNECT", "chatgpt.com.example.org:443", &rc);
    ck_assert_int_eq(rc, 0);
    HAS(t, "CONNECT tunnel: only host-level");
    HAS(t, "verdict: action=allow rule=- service=- page=none tls=tunnel headers=0");
    free(t);
    t = run("alice", staff, 1, "POST", "https://upload.example.org/upload", &rc);
    ck_assert_int_eq(rc, 0);
    HAS(t, "tunnelled without");
    HAS(t, "Effective action: allow");
    free(t);
    t = run("alice", staff, 1, "GET", "https://[2001:db8::1]:8443/", &rc);
    ck_assert_int_eq(rc, 0);
    HAS(t, "2001:db8::1  port 8443");
    free(t);
}
END_TEST

START_TEST(headers_query_paths)
{
    int rc;
    char *t = run("alice", staff, 1, "GET", "https://login.example/common/oauth2?x=1", &rc);

    /* an uncatalogued host a headers rule names is intercepted; the headers are listed */
    ck_assert_int_eq(rc, 0);
    HAS(t, "intercepted HTTPS request");
    HAS(t, "query       x=1  (what query conditions match)");
    HAS(t, "adds headers (on the requests it lets through, replacing the client's):\n"
           "    Restrict-Access-To-Tenants: corp.example\n");
    HAS(t, "sets header Restrict-Access-To-Tenants: corp.example");
    HAS(t, "verdict: action=allow rule=tenant service=- page=none tls=intercept headers=1");
    free(t);
    t = run("alice", staff, 1, "CONNECT", "login.example:443", &rc);
    HAS(t, "CONNECT tunnel intercepted");
    free(t);
    /* without interception the CONNECT such a rule decides is refused */
    intercept = 0;
    t = run("alice", staff, 1, "CONNECT", "login.example:443", &rc);
    ck_assert_int_eq(rc, 0);
    HAS(t, "refused with 403, never tunnelled blind");
    HAS(t, "verdict: action=block rule=tenant service=- page=block tls=tunnel headers=0");
    free(t);
    t = run("alice", staff, 1, "GET", "https://login.example/", &rc);
    HAS(t, "verdict: action=block rule=tenant");
    free(t);
    /* a path-scoped entry: the path decides */
    intercept = 1;
    t = run("alice", staff, 1, "GET", "https://hub.example/chat/c/1", &rc);
    HAS(t, "service     hubchat  (Hub chat)");
    HAS(t, "paths       /chat, /chat/*  (a path-scoped entry: the path decides)");
    free(t);
    t = run("alice", staff, 1, "GET", "https://hub.example/models", &rc);
    HAS(t, "hub.example is not a catalogued AI service");
    HAS(t, "tls=intercept");
    free(t);
}
END_TEST

START_TEST(bad_urls)
{
    static const char *const bad[][2] = {{"GET", "chatgpt.com/"},
                                         {"GET", "ftp://chatgpt.com/"},
                                         {"GET", "https://chatgpt.com:0/"},
                                         {"GET", "https://chatgpt.com:99999/"},
                                         {"GET", "https://[::1/"},
                                         {"GET", "https:///path"},
                                         {"CONNECT", "chatgpt.com:443/x"},
                                         {"GET", "https://user:pw@chatgpt.com/"},
                                         {"CONNECT", "https://chatgpt.com/"},
                                         {"GET", "http://chat gpt.com/"},
                                         {NULL, NULL}};

    for (size_t i = 0; bad[i][0]; i++) {
        int rc;
        char *t = run("alice", staff, 1, bad[i][0], bad[i][1], &rc);

        ck_assert_msg(rc == -1, "accepted %s", bad[i][1]);
        HAS(t, "cannot parse");
        free(t);
    }
}
END_TEST

Suite *explain_suite(void);

Suite *
explain_suite(void)
{
    Suite *s = suite_create("explain");
    TCase *t = tcase_create("core");

    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, deciding_rule_and_reason);
    tcase_add_test(t, near_miss_explained);
    tcase_add_test(t, no_rule_and_not_catalogued);
    tcase_add_test(t, connect_and_uncatalogued_https);
    tcase_add_test(t, headers_query_paths);
    tcase_add_test(t, bad_urls);
    suite_add_tcase(s, t);
    return s;
}
