/*
 * Shadow-AI discovery: the name heuristic (AI names found, words that only
 * hide "ai" or "chat" left alone), the known list (coverage of subdomains,
 * reasons, errors with line numbers), the shipped rules/ai-unlisted.txt, and
 * the report over an audit index with a catalog (path-scoped hosts count as
 * catalogued).
 */
#include "aigate/audit/unlisted.h"

#include <check.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aigate/audit/auditidx.h"
#include "aigate/rules/catalog.h"

static int
looks(const char *host)
{
    char why[256];

    return unlisted_why(NULL, host, why, sizeof(why));
}

START_TEST(names_found)
{
    static const char *const ai[] = {
        "chatgpt4free.example",
        "ai.corp.example",
        "my-ai-app.com",
        "gptzero.me",
        "notegpt.io",
        "openllm.example",
        "vllm.example",
        "talkai.info",
        "aichat.example",
        "aiwriter.example",
        "openai-proxy.example",
        "copilot-clone.example",
        "aigc.cn",
        "agi.example",
        "something.ai",
        "llm-gateway.example",
        "chatbot.example",
        "genai-lab.example",
        "chatpdf.com",
        "kimi-chat.example",
        "www.ai2.example",
        "x.aitools.example",
        "llms.example",
        "mail-ai.example",
    };
    char why[256];

    for (size_t i = 0; i < sizeof(ai) / sizeof(ai[0]); i++)
        ck_assert_msg(looks(ai[i]), "%s should look like AI", ai[i]);
    ck_assert_int_eq(unlisted_why(NULL, "chat.shadow-ai.example", why, sizeof(why)), 1);
    ck_assert_str_eq(why, "name: \"chat\", an AI word");
    unlisted_why(NULL, "x.example.ai", why, sizeof(why));
    ck_assert_str_eq(why, "name: the .ai top-level domain");
    unlisted_why(NULL, "mygptapp.example", why, sizeof(why));
    ck_assert_str_eq(why, "name: \"mygptapp\", \"gpt\" in it");
    unlisted_why(NULL, "openai-proxy.example", why, sizeof(why));
    ck_assert_str_eq(why, "name: \"openai\", an AI word and a product word");
}
END_TEST

START_TEST(words_left_alone)
{
    static const char *const not_ai[] = {
        "mail.google.com",
        "chair.example",
        "detail.example",
        "airline.com",
        "shanghai.gov.cn",
        "chateau.fr",
        "allmusic.com",
        "thai.example",
        "bonsai.example",
        "aid.org",
        "domain.com",
        "gmail.com",
        "rain.example",
        "said.example",
        "aim.com",
        "aisle.example",
        "samurai.jp",
        "dubai.ae",
        "mumbai.in",
        "raid.example",
        "egypt.example",
        "chatham.example",
        "smallmouth.example",
        "fullmoon.example",
        "brain.example",
        "maintenance.example",
        "chai.example",
        "trail.example",
        "10.1.2.3",
        "2001:db8::1",
        "",
    };

    for (size_t i = 0; i < sizeof(not_ai) / sizeof(not_ai[0]); i++)
        ck_assert_msg(!looks(not_ai[i]), "%s should not look like AI", not_ai[i]);
}
END_TEST

static char dir[64];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/aigate-unl-XXXXXX");
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
    static char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
    return path;
}

START_TEST(known_list)
{
    char err[256], why[256];
    struct unlisted_known *k =
        unlisted_known_load(write_file("k.txt", "# comment\n\n"
                                                "  plainname.example   a quiet AI tool  \n"
                                                "*.wild.example\n"
                                                "other.example # trailing comment\n"),
                            err, sizeof(err));

    ck_assert_msg(k != NULL, "%s", err);
    ck_assert_uint_eq(unlisted_known_count(k), 3);
    ck_assert_int_eq(unlisted_why(k, "plainname.example", why, sizeof(why)), 1);
    ck_assert_str_eq(why, "known AI domain: a quiet AI tool");
    ck_assert_int_eq(unlisted_why(k, "api.plainname.example", why, sizeof(why)), 1);
    ck_assert_int_eq(unlisted_why(k, "x.wild.example", why, sizeof(why)), 1);
    ck_assert_int_eq(unlisted_why(k, "wild.example", why, sizeof(why)), 0);
    ck_assert_int_eq(unlisted_why(k, "other.example", why, sizeof(why)), 1);
    ck_assert_str_eq(why, "known AI domain");
    ck_assert_int_eq(unlisted_why(k, "plainname.example.net", why, sizeof(why)), 0);
    unlisted_known_free(k);
    unlisted_known_free(NULL);

    ck_assert_ptr_null(unlisted_known_load(write_file("bad.txt", "ok.example\n\nbad..example\n"),
                                           err, sizeof(err)));
    ck_assert_msg(strstr(err, "bad.txt:3: ") != NULL, "%s", err);
    ck_assert_ptr_null(unlisted_known_load(write_file("broad.txt", "*.com\n"), err, sizeof(err)));
    ck_assert_msg(strstr(err, "broad.txt:1: ") != NULL, "%s", err);
    ck_assert_ptr_null(unlisted_known_load("/nonexistent/ai-unlisted.txt", err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/ai-unlisted.txt: "));
}
END_TEST

/* The shipped list loads, and what it names is not in the shipped catalog. */
START_TEST(shipped_list)
{
    config_t cfg;
    char err[512], why[256];
    struct unlisted_known *k = unlisted_known_load("rules/ai-unlisted.txt", err, sizeof(err));
    struct catalog *c;

    ck_assert_msg(k != NULL, "%s", err);
    ck_assert_uint_ge(unlisted_known_count(k), 20);
    config_init(&cfg);
    ck_assert(config_read_file(&cfg, "rules/services.conf") == CONFIG_TRUE);
    c = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_ptr_null(catalog_lookup(c, "chutes.ai", 9));
    ck_assert_int_eq(unlisted_why(k, "chutes.ai", why, sizeof(why)), 1);
    ck_assert_int_eq(unlisted_why(k, "www.lmstudio.ai", why, sizeof(why)), 1);
    ck_assert_ptr_nonnull(strstr(why, "known AI domain"));
    catalog_free(c);
    config_destroy(&cfg);
    unlisted_known_free(k);
}
END_TEST

START_TEST(report)
{
    static const char services[] =
        "services = (\n"
        "{ id = \"chatgpt\"; name = \"ChatGPT\"; category = \"chat\"; vendor_country = \"US\";\n"
        "  hosts = [ \"chatgpt.com\" ]; },\n"
        "{ id = \"hubchat\"; name = \"Hub chat\"; category = \"chat\"; vendor_country = \"US\";\n"
        "  hosts = [ \"chat.hub.example\" ]; paths = \"/chat/*\"; }\n"
        ");\n";
    static const char *const hosts[] = {
        "x.shadow-ai.example", "x.shadow-ai.example", "chatgpt.com",         "chat.hub.example",
        "mail.example",        "tool.quiet.example",  "x.shadow-ai.example", NULL};
    static const char *const users[] = {"alice", "bob", "alice", "alice", "carol", "dave", NULL};
    config_t cfg;
    char err[256], *text = NULL;
    size_t len = 0;
    FILE *f, *out;
    struct catalog *c;
    struct unlisted_known *k =
        unlisted_known_load(write_file("k.txt", "quiet.example  niche tool\n"), err, sizeof(err));
    struct auditidx *x = auditidx_new();
    const char *log;

    config_init(&cfg);
    ck_assert(config_read_string(&cfg, services) == CONFIG_TRUE);
    c = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_ptr_nonnull(f = open_memstream(&text, &len));
    for (size_t i = 0; hosts[i]; i++)
        fprintf(f,
                "{\"ts\":\"2026-12-06T08:00:0%zu.000Z\",\"client\":\"10.0.0.9\",\"user\":%s%s%s,"
                "\"host\":\"%s\",\"action\":\"allow\"}\n",
                i, users[i] ? "\"" : "", users[i] ? users[i] : "null", users[i] ? "\"" : "",
                hosts[i]);
    fclose(f);
    log = write_file("audit.jsonl", text);
    free(text);
    auditidx_track_hosts(x);
    ck_assert_int_eq(auditidx_load_file(x, log, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(out = open_memstream(&text, &len));
    ck_assert_int_eq(unlisted_report(out, x, c, k), 0);
    fclose(out);
    ck_assert_msg(strstr(text, "hosts outside the catalog: 3, looking like AI services: 2\n"), "%s",
                  text);
    ck_assert_msg(strstr(text, "        3      3  x.shadow-ai.example"), "%s", text);
    ck_assert_msg(strstr(text, "alice 1, bob 1, @10.0.0.9 1") ||
                      strstr(text, "@10.0.0.9 1, alice 1, bob 1"),
                  "%s", text);
    ck_assert_msg(
        strstr(text, "tool.quiet.example                       known AI domain: niche tool"), "%s",
        text);
    ck_assert_msg(!strstr(text, "chatgpt.com") && !strstr(text, "chat.hub.example") &&
                      !strstr(text, "mail.example"),
                  "%s", text);
    /* the busiest host first */
    ck_assert_ptr_nonnull(strstr(text, "x.shadow-ai.example"));
    ck_assert(strstr(text, "x.shadow-ai.example") < strstr(text, "tool.quiet.example"));
    free(text);
    auditidx_free(x);
    unlisted_known_free(k);
    catalog_free(c);
    config_destroy(&cfg);
}
END_TEST

Suite *unlisted_suite(void);

Suite *
unlisted_suite(void)
{
    Suite *s = suite_create("unlisted");
    TCase *t = tcase_create("core");

    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, names_found);
    tcase_add_test(t, words_left_alone);
    tcase_add_test(t, known_list);
    tcase_add_test(t, shipped_list);
    tcase_add_test(t, report);
    suite_add_tcase(s, t);
    return s;
}
