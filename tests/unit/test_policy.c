/*
 * Policy compilation and evaluation: first match, every condition type,
 * time windows, requests seen only as CONNECT, load errors with rule and
 * line, the query condition, add_headers and the hosts that rules needing
 * the request name, the shipped policy, and the index agreeing with a plain
 * scan.
 */
#include <arpa/inet.h>
#include <check.h>
#include <libconfig.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/http/http_msg.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/hostset.h"
#include "aigate/rules/policy.h"

static const char services[] =
    "services = (\n"
    "{ id = \"deepseek\"; name = \"DeepSeek\"; category = \"chat\"; vendor_country = \"CN\";\n"
    "  hosts = [ \"deepseek.com\", \"*.deepseek.com\" ]; },\n"
    "{ id = \"deepseek-api\"; name = \"DeepSeek API\"; category = \"api\"; vendor_country = "
    "\"CN\"; hosts = [ \"api.deepseek.com\" ]; },\n"
    "{ id = \"chatgpt\"; name = \"ChatGPT\"; category = \"chat\"; vendor_country = \"US\";\n"
    "  hosts = [ \"chatgpt.com\", \"*.chatgpt.com\" ]; },\n"
    "{ id = \"midjourney\"; name = \"Midjourney\"; category = \"image\"; vendor_country = "
    "\"US\"; hosts = [ \"*.midjourney.com\" ]; },\n"
    "{ id = \"clova\"; name = \"CLOVA X\"; category = \"chat\"; vendor_country = \"KR\";\n"
    "  hosts = [ \"clova-x.naver.com\" ]; }\n"
    ");\n";

static config_t cfg;
static struct catalog *cat;
static struct policy *pol;
static char err[512];

/* Load services + text; the policy is NULL on error (err says why). */
static void
load(const char *text)
{
    char *all;

    config_init(&cfg);
    ck_assert_int_ne(asprintf(&all, "%s%s", services, text), -1);
    ck_assert_msg(config_read_string(&cfg, all) == CONFIG_TRUE, "libconfig: %s line %d",
                  config_error_text(&cfg), config_error_line(&cfg));
    free(all);
    cat = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err));
    ck_assert_msg(cat != NULL, "%s", err);
    err[0] = '\0';
    pol = policy_load(config_lookup(&cfg, "policy"), cat, config_lookup(&cfg, "dlp_patterns"), err,
                      sizeof(err));
}

static void
unload(void)
{
    policy_free(pol);
    catalog_free(cat);
    config_destroy(&cfg);
    pol = NULL;
    cat = NULL;
}

struct treq {
    struct policy_req r;
    struct sockaddr_storage ss;
    struct tm tm;
    char host[HOSTSET_NAME_MAX + 1];
};

/* A request as the proxy would build it; client is an IPv4 or IPv6 literal. */
static struct policy_req *
mkreq(struct treq *t, const char *user, const char *const *groups, size_t ngroups,
      const char *client, const char *method, const char *url_host, const char *path)
{
    memset(t, 0, sizeof(*t));
    if (strchr(client, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t->ss;

        s6->sin6_family = AF_INET6;
        ck_assert_int_eq(inet_pton(AF_INET6, client, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&t->ss;

        s4->sin_family = AF_INET;
        ck_assert_int_eq(inet_pton(AF_INET, client, &s4->sin_addr), 1);
    }
    ck_assert_int_gt(hostset_host_normalise(url_host, strlen(url_host), t->host), 0);
    t->tm.tm_hour = 10;
    t->tm.tm_wday = 1;
    t->r.user = user;
    t->r.groups = groups;
    t->r.ngroups = ngroups;
    t->r.client = (struct sockaddr *)&t->ss;
    t->r.svc = catalog_lookup(cat, url_host, strlen(url_host));
    t->r.host = t->host;
    t->r.local = &t->tm;
    t->r.have_request = method != NULL;
    t->r.method = method;
    t->r.path = path;
    t->r.pathlen = path ? strlen(path) : 0;
    t->r.query = method ? "" : NULL;
    return &t->r;
}

static const char *
decide(const struct policy_req *r)
{
    const struct policy_rule *a = policy_eval(pol, r), *b = policy_eval_scan(pol, r);

    ck_assert_ptr_eq(a, b);
    return a ? a->name : "(none)";
}

static const char *const staff[] = {"staff"};
static const char *const sec[] = {"staff", "security"};

START_TEST(first_match_in_order)
{
    struct treq t;

    load("policy = (\n"
         "{ name = \"ban\"; action = \"block\"; vendor_countries = \"CN\"; reason = \"no\"; },\n"
         "{ name = \"sec\"; action = \"allow\"; groups = [ \"security\" ]; },\n"
         "{ name = \"caution\"; action = \"warn\"; categories = [ \"chat\", \"image\" ]; "
         "ack_ttl_s = 600; },\n"
         "{ name = \"rest\"; action = \"allow\"; }\n"
         ");\n");
    ck_assert_msg(pol != NULL, "%s", err);
    ck_assert_uint_eq(policy_count(pol), 4);
    ck_assert_str_eq(
        decide(mkreq(&t, "alice", staff, 1, "127.0.0.1", "GET", "chat.deepseek.com", "/")), "ban");
    ck_assert_str_eq(
        decide(mkreq(&t, "carol", sec, 2, "127.0.0.1", "GET", "chat.deepseek.com", "/")), "ban");
    ck_assert_str_eq(decide(mkreq(&t, "alice", staff, 1, "127.0.0.1", "GET", "chatgpt.com", "/")),
                     "caution");
    ck_assert_str_eq(decide(mkreq(&t, "carol", sec, 2, "127.0.0.1", "GET", "chatgpt.com", "/")),
                     "sec");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "127.0.0.1", "GET", "www.example.org", "/")),
                     "rest");
    ck_assert_int_eq(policy_rule_at(pol, 0)->action, POLICY_BLOCK);
    ck_assert_str_eq(policy_rule_at(pol, 0)->reason, "no");
    ck_assert_int_eq(policy_rule_at(pol, 0)->ack_ttl_s, -1);
    ck_assert_int_eq(policy_rule_at(pol, 2)->ack_ttl_s, 600);
    ck_assert_int_eq(policy_rule_at(pol, 2)->action, POLICY_WARN);
    ck_assert_str_eq(policy_action_name(POLICY_WARN), "warn");
    ck_assert_str_eq(policy_action_name(POLICY_ALLOW), "allow");
    ck_assert_str_eq(policy_action_name(POLICY_BLOCK), "block");
    ck_assert_ptr_null(policy_rule_at(pol, 4));
    unload();
}
END_TEST

START_TEST(no_rules_allows)
{
    struct treq t;

    load("");
    ck_assert_msg(pol != NULL, "%s", err);
    ck_assert_uint_eq(policy_count(pol), 0);
    ck_assert_ptr_null(
        policy_eval(pol, mkreq(&t, "a", NULL, 0, "127.0.0.1", "GET", "chatgpt.com", "/")));
    unload();
    policy_free(NULL);
}
END_TEST

START_TEST(each_condition)
{
    struct treq t;

    load("policy = (\n"
         "{ name = \"u\"; action = \"block\"; users = [ \"mallory\", \"eve\" ]; },\n"
         "{ name = \"net\"; action = \"block\"; networks = [ \"10.20.0.0/16\", \"fd00::/8\" ]; },\n"
         "{ name = \"svc\"; action = \"warn\"; services = \"deepseek-api\"; },\n"
         "{ name = \"cat\"; action = \"warn\"; categories = \"IMAGE\"; },\n"
         "{ name = \"ven\"; action = \"block\"; vendor_countries = \"kr\"; },\n"
         "{ name = \"host\"; action = \"block\"; hosts = [ \"*.Tracker.example\", "
         "\"exact.example.org.\" ]; },\n"
         "{ name = \"meth\"; action = \"block\"; methods = \"delete\"; },\n"
         "{ name = \"path\"; action = \"block\"; paths = [ \"/api/*/chat\", \"*.exe\" ]; },\n"
         "{ name = \"grp\"; action = \"warn\"; groups = \"interns\"; }\n"
         ");\n");
    ck_assert_msg(pol != NULL, "%s", err);
    ck_assert_str_eq(decide(mkreq(&t, "eve", NULL, 0, "127.0.0.1", "GET", "a.example", "/")), "u");
    ck_assert_str_eq(decide(mkreq(&t, "evelyn", NULL, 0, "127.0.0.1", "GET", "a.example", "/")),
                     "(none)");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "10.20.3.4", "GET", "a.example", "/")), "net");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "10.21.3.4", "GET", "a.example", "/")),
                     "(none)");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "fd12::1", "GET", "a.example", "/")), "net");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "api.deepseek.com", "/")),
                     "svc");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "chat.deepseek.com", "/")),
                     "(none)");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "cdn.midjourney.com", "/")),
                     "cat");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "clova-x.naver.com", "/")),
                     "ven");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "x.y.tracker.example", "/")),
                     "host");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "tracker.example", "/")),
                     "(none)");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "EXACT.example.org:8080", "/")),
                     "host");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "DELETE", "a.example", "/")), "meth");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "delete", "a.example", "/")), "meth");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "a.example", "/api/v1/x/chat")),
                     "path");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "a.example", "/api/chat")),
                     "(none)");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "a.example", "/dl/setup.exe")),
                     "path");
    ck_assert_str_eq(decide(mkreq(&t, "bob", (const char *const[]){"x", "interns"}, 2, "::1", "GET",
                                  "a.example", "/")),
                     "grp");
    unload();
}
END_TEST

START_TEST(path_globs)
{
    struct treq t;

    load("policy = (\n"
         "{ name = \"up\"; action = \"block\"; paths = [ \"*/upload*\", \"*/files*\" ]; },\n"
         "{ name = \"exact\"; action = \"block\"; paths = \"/exact\"; },\n"
         "{ name = \"mid\"; action = \"block\"; paths = \"/a/*/b/*/c\"; }\n"
         ");\n");
    ck_assert_msg(pol != NULL, "%s", err);
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "POST", "a.example", "/upload")), "up");
    ck_assert_str_eq(
        decide(mkreq(&t, NULL, NULL, 0, "::1", "POST", "a.example", "/backend-api/files/x/y")),
        "up");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "POST", "a.example", "/v1/uploads")),
                     "up");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "POST", "a.example", "/uploadx")),
                     "up");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "POST", "a.example", "/v1/chat")),
                     "(none)");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "a.example", "/exact")),
                     "exact");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "a.example", "/exact/")),
                     "(none)");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "a.example", "/exac")),
                     "(none)");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "a.example", "/a/1/2/b/3/c")),
                     "mid");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "a.example", "/a/b/c")),
                     "(none)");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "GET", "a.example", "/a//b//c")),
                     "mid");
    /* pathlen is honoured: the query after it is not part of the path */
    mkreq(&t, NULL, NULL, 0, "::1", "GET", "a.example", "/exact?x=/upload");
    t.r.pathlen = 6;
    ck_assert_str_eq(decide(&t.r), "exact");
    unload();
}
END_TEST

static const char *
at(struct treq *t, int hour, int min, int wday)
{
    mkreq(t, NULL, NULL, 0, "::1", "GET", "a.example", "/");
    t->tm.tm_hour = hour;
    t->tm.tm_min = min;
    t->tm.tm_wday = wday;
    return decide(&t->r);
}

START_TEST(hours_and_days)
{
    struct treq t;

    load("policy = (\n"
         "{ name = \"night\"; action = \"block\"; hours = \"22:00-06:00\"; },\n"
         "{ name = \"office\"; action = \"allow\"; hours = [ \"09:00-12:00\", \"13:00-18:00\" ];\n"
         "  days = [ \"mon\", \"TUE\", \"wed\", \"thu\", \"fri\" ]; },\n"
         "{ name = \"weekend\"; action = \"warn\"; days = [ \"sat\", \"sun\" ]; },\n"
         "{ name = \"late\"; action = \"warn\"; hours = \"18:00-24:00\"; }\n"
         ");\n");
    ck_assert_msg(pol != NULL, "%s", err);
    ck_assert_str_eq(at(&t, 23, 0, 3), "night");
    ck_assert_str_eq(at(&t, 22, 0, 3), "night");
    ck_assert_str_eq(at(&t, 0, 0, 3), "night");
    ck_assert_str_eq(at(&t, 5, 59, 3), "night");
    ck_assert_str_eq(at(&t, 6, 0, 3), "(none)");
    ck_assert_str_eq(at(&t, 9, 0, 1), "office");
    ck_assert_str_eq(at(&t, 8, 59, 1), "(none)");
    ck_assert_str_eq(at(&t, 12, 0, 5), "(none)");
    ck_assert_str_eq(at(&t, 12, 59, 5), "(none)");
    ck_assert_str_eq(at(&t, 13, 0, 5), "office");
    ck_assert_str_eq(at(&t, 17, 59, 2), "office");
    ck_assert_str_eq(at(&t, 18, 0, 2), "late");
    ck_assert_str_eq(at(&t, 21, 59, 2), "late");
    ck_assert_str_eq(at(&t, 10, 0, 6), "weekend");
    ck_assert_str_eq(at(&t, 10, 0, 0), "weekend");
    ck_assert_str_eq(at(&t, 23, 30, 0), "night");
    t.r.local = NULL;
    ck_assert_str_eq(decide(&t.r), "(none)");
    unload();
}
END_TEST

START_TEST(connect_sees_host_level_only)
{
    struct treq t;

    load("dlp_patterns = ( { name = \"project\"; regex = \"PRJ-[0-9]+\"; } );\n"
         "policy = (\n"
         "{ name = \"up\"; action = \"block\"; categories = \"chat\"; paths = \"*/upload*\"; },\n"
         "{ name = \"posts\"; action = \"block\"; methods = \"POST\"; },\n"
         "{ name = \"pii\"; action = \"block\"; dlp = [ \"kr-rrn\", \"custom:project\" ]; },\n"
         "{ name = \"chat\"; action = \"warn\"; categories = \"chat\"; }\n"
         ");\n");
    ck_assert_msg(pol != NULL, "%s", err);
    ck_assert_uint_eq(policy_rule_at(pol, 2)->dlp_mask, POLICY_DLP_KR_RRN | POLICY_DLP_CUSTOM(0));
    /* CONNECT chatgpt.com:443 without interception */
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", NULL, "chatgpt.com:443", NULL)),
                     "chat");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", NULL, "example.org:443", NULL)),
                     "(none)");
    /* the same, intercepted */
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "POST", "chatgpt.com", "/upload")),
                     "up");
    ck_assert_str_eq(decide(mkreq(&t, NULL, NULL, 0, "::1", "POST", "example.org", "/x")), "posts");
    /* dlp needs an inspected body */
    mkreq(&t, NULL, NULL, 0, "::1", "GET", "example.org", "/x");
    t.r.dlp_found = POLICY_DLP_KR_RRN;
    ck_assert_str_eq(decide(&t.r), "(none)");
    t.r.body_inspected = 1;
    ck_assert_str_eq(decide(&t.r), "pii");
    t.r.dlp_found = POLICY_DLP_EMAIL;
    ck_assert_str_eq(decide(&t.r), "(none)");
    t.r.dlp_found = POLICY_DLP_CUSTOM(0);
    ck_assert_str_eq(decide(&t.r), "pii");
    t.r.have_request = 0;
    ck_assert_str_eq(decide(&t.r), "(none)");
    unload();
}
END_TEST

static void
set_query(struct treq *t, const char *q)
{
    t->r.query = q;
    t->r.querylen = strlen(q);
}

START_TEST(query_condition)
{
    struct treq t;
    struct policy_check c[POLICY_C_COUNT];

    load("policy = (\n"
         "{ name = \"ai-mode\"; action = \"block\"; hosts = [ \"google.com\", \"www.google.com\" "
         "];\n"
         "  paths = \"/search\"; query = [ \"*udm=50*\", \"aimode=1\" ]; },\n"
         "{ name = \"any-query\"; action = \"warn\"; hosts = \"q.example.org\"; query = \"*\"; }\n"
         ");\n");
    ck_assert_msg(pol != NULL, "%s", err);
    mkreq(&t, NULL, NULL, 0, "::1", "GET", "www.google.com", "/search");
    set_query(&t, "q=weather&udm=50&sei=x");
    ck_assert_str_eq(decide(&t.r), "ai-mode");
    set_query(&t, "udm=50");
    ck_assert_str_eq(decide(&t.r), "ai-mode");
    set_query(&t, "aimode=1");
    ck_assert_str_eq(decide(&t.r), "ai-mode");
    set_query(&t, "x=1&aimode=1"); /* no '*': the whole query */
    ck_assert_str_eq(decide(&t.r), "(none)");
    set_query(&t, "q=weather&udm=5");
    ck_assert_str_eq(decide(&t.r), "(none)");
    set_query(&t, "q=UDM=50"); /* case matters, as in paths */
    ck_assert_str_eq(decide(&t.r), "(none)");
    set_query(&t, "");
    ck_assert_str_eq(decide(&t.r), "(none)");
    mkreq(&t, NULL, NULL, 0, "::1", "GET", "www.google.com", "/images");
    set_query(&t, "udm=50");
    ck_assert_str_eq(decide(&t.r), "(none)");
    /* a CONNECT cannot see the query */
    mkreq(&t, NULL, NULL, 0, "::1", NULL, "www.google.com:443", NULL);
    ck_assert_str_eq(decide(&t.r), "(none)");
    /* "*" matches an empty query too: a request has a query string, maybe empty */
    mkreq(&t, NULL, NULL, 0, "::1", "GET", "q.example.org", "/");
    ck_assert_str_eq(decide(&t.r), "any-query");
    /* --explain's account */
    mkreq(&t, NULL, NULL, 0, "::1", "GET", "google.com", "/search");
    set_query(&t, "q=x");
    ck_assert_uint_eq(policy_rule_check(policy_rule_at(pol, 0), &t.r, c, POLICY_C_COUNT), 3);
    ck_assert_str_eq(c[2].cond, "query");
    ck_assert_int_eq(c[2].ok, 0);
    ck_assert_str_eq(c[2].why, "q=x matches none of [*udm=50*, aimode=1]");
    mkreq(&t, NULL, NULL, 0, "::1", NULL, "google.com:443", NULL);
    policy_rule_check(policy_rule_at(pol, 0), &t.r, c, POLICY_C_COUNT);
    ck_assert_ptr_nonnull(strstr(c[2].why, "not visible"));
    unload();
}
END_TEST

START_TEST(add_headers_loaded)
{
    const struct policy_rule *r;

    load("policy = (\n"
         "{ name = \"gpt\"; action = \"allow\"; services = \"chatgpt\";\n"
         "  add_headers = ( { name = \"ChatGPT-Allowed-Workspace-Id\"; value = \"1111-2222\"; },\n"
         "                  { value = \"a,b\"; name = \"anthropic-allowed-org-ids\"; } ); },\n"
         "{ name = \"plain\"; action = \"allow\"; }\n"
         ");\n");
    ck_assert_msg(pol != NULL, "%s", err);
    r = policy_rule_at(pol, 0);
    ck_assert_uint_eq(r->nheaders, 2);
    ck_assert_str_eq(r->headers[0].name, "ChatGPT-Allowed-Workspace-Id");
    ck_assert_str_eq(r->headers[0].value, "1111-2222");
    ck_assert_str_eq(r->headers[1].name, "anthropic-allowed-org-ids");
    ck_assert_str_eq(r->headers[1].value, "a,b");
    ck_assert_uint_eq(policy_rule_at(pol, 1)->nheaders, 0);
    ck_assert_ptr_null(policy_rule_at(pol, 1)->headers);
    unload();
}
END_TEST

/* Rules needing the request name the hosts that interception must cover, and only those. */
START_TEST(wants_request_hosts)
{
    load("policy = (\n"
         "{ name = \"p\"; action = \"block\"; hosts = [ \"www.google.com\", \"*.bing.com\" ];\n"
         "  query = \"*udm=50*\"; },\n"
         "{ name = \"m\"; action = \"block\"; hosts = \"paste.example\"; methods = \"POST\"; },\n"
         "{ name = \"d\"; action = \"block\"; hosts = \"notes.example\"; dlp = \"email\"; },\n"
         "{ name = \"h\"; action = \"allow\"; hosts = \"login.microsoftonline.com\";\n"
         "  add_headers = ( { name = \"Restrict-Access-Context\"; value = \"x\"; } ); },\n"
         "{ name = \"only-host\"; action = \"block\"; hosts = \"host-only.example\"; },\n"
         "{ name = \"no-host\"; action = \"block\"; paths = \"/upload*\"; }\n"
         ");\n");
    ck_assert_msg(pol != NULL, "%s", err);
    ck_assert_int_eq(policy_wants_request(pol, "www.google.com"), 1);
    ck_assert_int_eq(policy_wants_request(pol, "google.com"), 0);
    ck_assert_int_eq(policy_wants_request(pol, "copilot.bing.com"), 1);
    ck_assert_int_eq(policy_wants_request(pol, "bing.com"), 0);
    ck_assert_int_eq(policy_wants_request(pol, "paste.example"), 1);
    ck_assert_int_eq(policy_wants_request(pol, "notes.example"), 1);
    ck_assert_int_eq(policy_wants_request(pol, "login.microsoftonline.com"), 1);
    ck_assert_int_eq(policy_wants_request(pol, "host-only.example"), 0);
    ck_assert_int_eq(policy_wants_request(pol, "www.example.org"), 0);
    ck_assert_int_eq(policy_wants_request(pol, "chatgpt.com"), 0);
    ck_assert_int_eq(policy_wants_request(NULL, "www.google.com"), 0);
    unload();
}
END_TEST

START_TEST(dlp_secret_kinds)
{
    load("policy = (\n"
         "{ name = \"secrets\"; action = \"block\"; dlp = [ \"api-key\", \"private-key\" ]; }\n"
         ");\n");
    ck_assert_msg(pol != NULL, "%s", err);
    ck_assert_uint_eq(policy_rule_at(pol, 0)->dlp_mask,
                      POLICY_DLP_API_KEY | POLICY_DLP_PRIVATE_KEY);
    unload();
}
END_TEST

static void
expect_error(const char *text, const char *prefix, const char *what)
{
    load(text);
    ck_assert_msg(pol == NULL, "loaded: %s", text);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "'%s' does not start with '%s'", err,
                  prefix);
    ck_assert_msg(strstr(err, what) != NULL, "'%s' lacks '%s'", err, what);
    unload();
}

/* The services text above is 10 lines; "policy = (" is line 11. */
START_TEST(load_errors)
{
    expect_error("policy = (\n{ name = \"a\\r\\nX-Evil: 1\"; action = \"block\"; }\n);",
                 "<config>:12: ", "no spaces, quotes");
    expect_error("policy = (\n{ name = \"two words\"; action = \"block\"; }\n);",
                 "<config>:12: ", "no spaces, quotes");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; },\n"
                 "{ name = \"b\"; action = \"block\";\n  colour = \"red\"; }\n);",
                 "<config>:14: rule \"b\": ", "unknown condition \"colour\"");
    expect_error("policy = (\n{ name = \"a\"; action = \"block\";\n"
                 " services = [ \"chatgpt\", \"bard\" ]; }\n);",
                 "<config>:13: rule \"a\": ", "\"bard\" is not in the service catalog");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; },\n{ action = \"allow\"; }\n);",
                 "<config>:13: rule #2: ", "missing \"name\"");
    expect_error("policy = (\n{ name = \"a\"; action = \"deny\"; }\n);",
                 "<config>:12: rule \"a\": ", "action must be");
    expect_error("policy = (\n{ name = \"a\"; }\n);",
                 "<config>:12: rule \"a\": ", "missing \"action\"");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; },\n"
                 "{ name = \"a\"; action = \"block\"; }\n);",
                 "<config>:13: rule \"a\": ", "duplicate rule name (first at line 12)");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; hours = \"9-17\"; }\n);",
                 "<config>:12: rule \"a\": ", "HH:MM-HH:MM");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; hours = \"09:00-25:00\"; }\n);",
                 "<config>:12: rule \"a\": ", "hours");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; hours = \"09:00-09:00\"; }\n);",
                 "<config>:12: rule \"a\": ", "empty window");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; days = [ \"mon\", \"funday\" ]; "
                 "}\n);",
                 "<config>:12: rule \"a\": ", "funday");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; dlp = \"passport\"; }\n);",
                 "<config>:12: rule \"a\": ", "passport");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; dlp = \"custom:nope\"; }\n);",
                 "<config>:12: rule \"a\": ", "no such entry in dlp_patterns");
    expect_error(
        "policy = (\n{ name = \"a\"; action = \"allow\"; networks = \"10.0.0.0/33\"; }\n);",
        "<config>:12: rule \"a\": ", "10.0.0.0/33");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; methods = \"GE T\"; }\n);",
                 "<config>:12: rule \"a\": ", "not an HTTP method");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; categories = \"toys\"; }\n);",
                 "<config>:12: rule \"a\": ", "unknown category \"toys\"");
    expect_error(
        "policy = (\n{ name = \"a\"; action = \"allow\"; vendor_countries = \"CHN\"; }\n);",
        "<config>:12: rule \"a\": ", "CHN");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; hosts = \"*.com\"; }\n);",
                 "<config>:12: rule \"a\": ", "too broad");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; users = []; }\n);",
                 "<config>:12: rule \"a\": ", "empty");
    expect_error("policy = (\n{ name = \"a\"; action = \"allow\"; users = [ 1 ]; }\n);",
                 "<config>:12: rule \"a\": ", "list of strings");
    expect_error("policy = (\n{ name = \"a\"; action = \"warn\"; ack_ttl_s = -5; }\n);",
                 "<config>:12: rule \"a\": ", "ack_ttl_s");
    expect_error("policy = (\n{ name = \"a\"; action = \"warn\"; paths = \"upload\"; }\n);",
                 "<config>:12: rule \"a\": ", "must start with");
    expect_error("policy = { a = 1; };", "<config>:11: ", "list");
    expect_error("policy = (\n{ name = \"a\"; action = \"block\"; query = \"?udm=50\"; }\n);",
                 "<config>:12: rule \"a\": ", "without its '?'");
}
END_TEST

/* add_headers checked at load, naming the line of what is wrong (-t prints it). */
START_TEST(add_headers_errors)
{
    static const char head[] =
        "policy = (\n{ name = \"ws\"; action = \"allow\"; hosts = \"h.example\";\n";
    char text[1024];
    struct {
        const char *body, *prefix, *what;
    } cases[] = {
        {"add_headers = ( { name = \"Bad Name\"; value = \"v\"; } ); }\n);",
         "<config>:13: ", "header name \"Bad Name\" is not a token"},
        {"add_headers = ( { name = \"X-A:\"; value = \"v\"; } ); }\n);",
         "<config>:13: ", "not a token"},
        {"add_headers = ( { name = \"X-A\";\n value = \"v\\r\\nX-Evil: 1\"; } ); }\n);",
         "<config>:14: ", "value of X-A contains CR or LF"},
        {"add_headers = ( { name = \"X-A\"; value = \"v\\n\"; } ); }\n);",
         "<config>:13: ", "CR or LF"},
        {"add_headers = ( { name = \"X-A\"; value = \"v\\x01\"; } ); }\n);",
         "<config>:13: ", "control character"},
        {"add_headers = ( { name = \"X-A\"; value = \"\"; } ); }\n);", "<config>:13: ", "is empty"},
        {"add_headers = ( { name = \"X-A\"; value = \" v\"; } ); }\n);",
         "<config>:13: ", "white space"},
        {"add_headers = ( { name = \"\"; value = \"v\"; } ); }\n);", "<config>:13: ", "is empty"},
        {"add_headers = ( { name = \"Host\"; value = \"v\"; } ); }\n);",
         "<config>:13: ", "managed by the proxy"},
        {"add_headers = ( { name = \"transfer-encoding\"; value = \"v\"; } ); }\n);",
         "<config>:13: ", "managed by the proxy"},
        {"add_headers = ( { name = \"X-A\"; value = \"1\"; },\n { name = \"x-a\"; value = \"2\"; } "
         "); }\n);",
         "<config>:14: ", "x-a is listed twice"},
        {"add_headers = ( { name = \"X-A\"; val = \"1\"; } ); }\n);",
         "<config>:13: ", "unknown key \"val\""},
        {"add_headers = ( { name = \"X-A\"; } ); }\n);", "<config>:13: ", "string value"},
        {"add_headers = ( { name = \"X-A\"; value = 1; } ); }\n);",
         "<config>:13: ", "string value"},
        {"add_headers = ( ); }\n);", "<config>:13: ", "non-empty list"},
        {"add_headers = [ \"X-A: 1\" ]; }\n);", "<config>:13: ", "non-empty list"},
        {"add_headers = ( \"X-A: 1\" ); }\n);", "<config>:13: ", "entry 1 must be"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "%s%s", head, cases[i].body);
        load(text);
        ck_assert_msg(pol == NULL, "loaded: %s", text);
        ck_assert_msg(strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) == 0,
                      "case %zu: '%s' does not start with '%s'", i, err, cases[i].prefix);
        ck_assert_msg(strstr(err, "rule \"ws\": add_headers") != NULL, "case %zu: '%s'", i, err);
        ck_assert_msg(strstr(err, cases[i].what) != NULL, "case %zu: '%s' lacks '%s'", i, err,
                      cases[i].what);
        unload();
    }
    /* a rule adding headers must say for which sites */
    load("policy = (\n{ name = \"ws\"; action = \"allow\"; users = \"alice\";\n"
         "  add_headers = ( { name = \"X-A\"; value = \"1\"; } ); }\n);");
    ck_assert_ptr_null(pol);
    ck_assert_msg(strstr(err, "<config>:13: rule \"ws\": add_headers needs hosts, services") !=
                      NULL,
                  "%s", err);
    unload();
    /* at most POLICY_HEADERS_MAX, names and values bounded */
    {
        char *big = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&big, &len);

        fprintf(f, "%sadd_headers = (", head);
        for (int i = 0; i <= POLICY_HEADERS_MAX; i++)
            fprintf(f, "%s{ name = \"X-H%d\"; value = \"v\"; }", i ? "," : "", i);
        fprintf(f, "); }\n);");
        fclose(f);
        load(big);
        free(big);
        ck_assert_ptr_null(pol);
        ck_assert_ptr_nonnull(strstr(err, "at most"));
        unload();
    }
    {
        char *v = malloc(POLICY_HEADER_VALUE_MAX + 2), *text2 = NULL;

        memset(v, 'a', POLICY_HEADER_VALUE_MAX + 1);
        v[POLICY_HEADER_VALUE_MAX + 1] = '\0';
        ck_assert_int_ne(asprintf(&text2,
                                  "%sadd_headers = ( { name = \"X\"; value = \"%s\"; } ); }\n);",
                                  head, v),
                         -1);
        load(text2);
        ck_assert_ptr_null(pol);
        ck_assert_ptr_nonnull(strstr(err, "too long"));
        unload();
        v[POLICY_HEADER_VALUE_MAX] = '\0';
        free(text2);
        ck_assert_int_ne(asprintf(&text2,
                                  "%sadd_headers = ( { name = \"X\"; value = \"%s\"; } ); }\n);",
                                  head, v),
                         -1);
        load(text2);
        ck_assert_msg(pol != NULL, "%s", err);
        ck_assert_uint_eq(strlen(policy_rule_at(pol, 0)->headers[0].value),
                          POLICY_HEADER_VALUE_MAX);
        unload();
        free(text2);
        free(v);
    }
}
END_TEST

START_TEST(explain_checks)
{
    struct policy_check c[POLICY_C_COUNT];
    struct treq t;
    size_t n;

    load("policy = (\n"
         "{ name = \"sec\"; action = \"allow\"; groups = [ \"security\" ]; categories = \"chat\"; "
         "},\n"
         "{ name = \"tun\"; action = \"block\"; methods = \"POST\"; hours = \"09:00-10:00\"; }\n"
         ");\n");
    ck_assert_msg(pol != NULL, "%s", err);
    mkreq(&t, "alice", staff, 1, "::1", "GET", "chatgpt.com", "/");
    n = policy_rule_check(policy_rule_at(pol, 0), &t.r, c, POLICY_C_COUNT);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(c[0].cond, "groups");
    ck_assert_int_eq(c[0].ok, 0);
    ck_assert_str_eq(c[0].why, "alice is in [staff], rule wants [security]");
    ck_assert_str_eq(c[1].cond, "categories");
    ck_assert_int_eq(c[1].ok, 1);
    ck_assert_str_eq(c[1].why, "chat is in [chat]");
    mkreq(&t, NULL, NULL, 0, "::1", NULL, "example.org:443", NULL);
    t.tm.tm_hour = 11;
    n = policy_rule_check(policy_rule_at(pol, 1), &t.r, c, POLICY_C_COUNT);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(c[0].ok, 0);
    ck_assert_ptr_nonnull(strstr(c[0].why, "not visible"));
    ck_assert_str_eq(c[1].why, "local time 11:00 is outside [09:00-10:00]");
    unload();
}
END_TEST

START_TEST(shipped_policy)
{
    config_t sc, pc;
    struct treq t;
    static const char *const security[] = {"security"};

    config_init(&sc);
    config_init(&pc);
    ck_assert_msg(config_read_file(&sc, "rules/services.conf") == CONFIG_TRUE, "%s",
                  config_error_text(&sc));
    ck_assert_msg(config_read_file(&pc, "rules/policy.conf") == CONFIG_TRUE, "%s:%d",
                  config_error_text(&pc), config_error_line(&pc));
    cat = catalog_load(config_lookup(&sc, "services"), err, sizeof(err));
    ck_assert_msg(cat != NULL, "%s", err);
    pol = policy_load(config_lookup(&pc, "policy"), cat, NULL, err, sizeof(err));
    ck_assert_msg(pol != NULL, "%s", err);
    ck_assert_uint_ge(policy_count(pol), 5);
    ck_assert_str_eq(
        decide(mkreq(&t, "alice", staff, 1, "127.0.0.1", "GET", "chat.deepseek.com", "/")),
        "ban-cn-ai");
    ck_assert_str_eq(
        decide(mkreq(&t, "carol", security, 1, "127.0.0.1", "GET", "chat.deepseek.com", "/")),
        "ban-cn-ai");
    ck_assert_str_eq(
        decide(mkreq(&t, "carol", security, 1, "10.99.3.4", "GET", "chat.deepseek.com", "/")),
        "security-lab");
    ck_assert_str_eq(decide(mkreq(&t, "alice", staff, 1, "127.0.0.1", "GET", "chatgpt.com", "/")),
                     "caution");
    ck_assert_str_eq(
        decide(mkreq(&t, "carol", security, 1, "127.0.0.1", "GET", "chatgpt.com", "/")),
        "security-free");
    ck_assert_str_eq(decide(mkreq(&t, "carol", security, 1, "127.0.0.1", "POST", "chatgpt.com",
                                  "/backend-api/files")),
                     "no-uploads");
    ck_assert_str_eq(
        decide(mkreq(&t, "alice", staff, 1, "127.0.0.1", "GET", "api.openai.com", "/v1/models")),
        "default");
    ck_assert_str_eq(
        decide(mkreq(&t, "alice", staff, 1, "127.0.0.1", "GET", "www.example.org", "/")),
        "default");
    policy_free(pol);
    catalog_free(cat);
    config_destroy(&sc);
    config_destroy(&pc);
    pol = NULL;
    cat = NULL;
}
END_TEST

/* ---- the index agrees with a plain scan on a large random policy ---------- */

static unsigned long rng = 88172645463325252ul;

static unsigned
rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static const char *const r_cats[] = {"chat", "api", "image"};
static const char *const r_vendors[] = {"CN", "US", "KR"};
static const char *const r_svcs[] = {"deepseek", "deepseek-api", "chatgpt", "midjourney", "clova"};
static const char *const r_hosts[] = {"chatgpt.com",   "*.deepseek.com",  "*.example.org",
                                      "a.example.org", "*.b.example.org", "clova-x.naver.com"};
static const char *const r_reqhosts[] = {
    "chatgpt.com", "chat.deepseek.com",  "api.deepseek.com",  "a.example.org", "x.b.example.org",
    "example.org", "img.midjourney.com", "clova-x.naver.com", "other.net"};
static const char *const r_methods[] = {"GET", "POST", "PUT"};
static const char *const r_paths[] = {"/", "/upload", "/api/files/1", "/v1/chat"};
static const char *const r_pathpats[] = {"*/upload*", "/api/*", "/v1/chat", "*"};
static const char *const r_queries[] = {"", "udm=50", "q=1&udm=50", "q=2"};
static const char *const r_querypats[] = {"*udm=50*", "q=*", "*"};

static void
gen_cond(unsigned kind, FILE *f)
{
    switch (kind) {
    case 0:
        fprintf(f, " users = [ \"u%u\", \"u%u\" ];", rnd(40), rnd(40));
        break;
    case 1:
        fprintf(f, " groups = \"g%u\";", rnd(10));
        break;
    case 2:
        fprintf(f, " networks = \"10.%u.0.0/16\";", rnd(4));
        break;
    case 3:
        fprintf(f, " services = [ \"%s\", \"%s\" ];", r_svcs[rnd(5)], r_svcs[rnd(5)]);
        break;
    case 4:
        fprintf(f, " categories = \"%s\";", r_cats[rnd(3)]);
        break;
    case 5:
        fprintf(f, " vendor_countries = \"%s\";", r_vendors[rnd(3)]);
        break;
    case 6:
        fprintf(f, " hosts = [ \"%s\", \"%s\" ];", r_hosts[rnd(6)], r_hosts[rnd(6)]);
        break;
    case 7:
        fprintf(f, " methods = \"%s\";", r_methods[rnd(3)]);
        break;
    case 8:
        fprintf(f, " paths = \"%s\";", r_pathpats[rnd(4)]);
        break;
    case 9:
        fprintf(f, " hours = \"%02u:00-%02u:00\";", rnd(12), 12 + rnd(12));
        break;
    case 11:
        fprintf(f, " query = \"%s\";", r_querypats[rnd(3)]);
        break;
    default:
        fprintf(f, " days = [ \"mon\", \"%s\" ];", rnd(2) ? "sat" : "sun");
        break;
    }
}

START_TEST(index_matches_scan)
{
    char *text = NULL, *g[3], gb[3][8];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    static unsigned char seen[10000];
    unsigned distinct = 0;
    size_t deepest = 0;

    ck_assert_ptr_nonnull(f);
    fprintf(f, "policy = (\n");
    for (unsigned i = 0; i < 10000; i++) {
        /* a bare rule would end every search; keep the rules selective */
        unsigned nc = 3 + rnd(3), used = 0;

        fprintf(f, "%s{ name = \"r%u\"; action = \"%s\";", i ? ",\n" : "", i,
                rnd(2) ? "block" : "warn");
        while (nc > 0) {
            unsigned kind = rnd(12);

            if (used & (1u << kind))
                continue;
            used |= 1u << kind;
            gen_cond(kind, f);
            nc--;
        }
        fprintf(f, " }");
    }
    fprintf(f, "\n);\n");
    fclose(f);
    load(text);
    free(text);
    ck_assert_msg(pol != NULL, "%s", err);
    ck_assert_uint_eq(policy_count(pol), 10000);
    for (unsigned i = 0; i < 6000; i++) {
        struct treq t;
        char user[16], client[32];
        size_t ng = rnd(4);
        const char *m = rnd(5) ? r_methods[rnd(3)] : NULL;
        const struct policy_rule *d;

        for (size_t k = 0; k < ng && k < 3; k++) {
            snprintf(gb[k], sizeof(gb[k]), "g%u", rnd(10));
            g[k] = gb[k];
        }
        snprintf(user, sizeof(user), "u%u", rnd(60));
        snprintf(client, sizeof(client), "10.%u.1.2", rnd(6));
        mkreq(&t, rnd(8) ? user : NULL, (const char *const *)g, ng > 3 ? 3 : ng, client, m,
              r_reqhosts[rnd(9)], m ? r_paths[rnd(4)] : NULL);
        t.tm.tm_hour = (int)rnd(24);
        t.tm.tm_wday = (int)rnd(7);
        if (m)
            set_query(&t, r_queries[rnd(4)]);
        decide(&t.r);
        if ((d = policy_eval(pol, &t.r)) && !seen[d->index]++) {
            distinct++;
            deepest = d->index > deepest ? d->index : deepest;
        }
    }
    /* many different rules decide, some far down the list */
    ck_assert_uint_gt(distinct, 200);
    ck_assert_uint_gt(deepest, 2000);
    unload();
}
END_TEST

Suite *policy_suite(void);

Suite *
policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *t = tcase_create("core");

    tcase_set_timeout(t, 30);
    tcase_add_test(t, first_match_in_order);
    tcase_add_test(t, no_rules_allows);
    tcase_add_test(t, each_condition);
    tcase_add_test(t, path_globs);
    tcase_add_test(t, hours_and_days);
    tcase_add_test(t, connect_sees_host_level_only);
    tcase_add_test(t, query_condition);
    tcase_add_test(t, add_headers_loaded);
    tcase_add_test(t, wants_request_hosts);
    tcase_add_test(t, dlp_secret_kinds);
    tcase_add_test(t, load_errors);
    tcase_add_test(t, add_headers_errors);
    tcase_add_test(t, explain_checks);
    tcase_add_test(t, shipped_policy);
    tcase_add_test(t, index_matches_scan);
    suite_add_tcase(s, t);
    return s;
}
