/*
 * Service catalog and host pattern sets: precedence, normalisation, errors
 * with line numbers, path-scoped entries, and the shipped rules/services.conf.
 */
#include <check.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/rules/catalog.h"
#include "aigate/rules/hostset.h"

static config_t cfg;
static char err[512];

static struct catalog *
load(const char *text)
{
    config_init(&cfg);
    ck_assert_msg(config_read_string(&cfg, text) == CONFIG_TRUE, "libconfig: %s line %d",
                  config_error_text(&cfg), config_error_line(&cfg));
    err[0] = '\0';
    return catalog_load(config_lookup(&cfg, "services"), err, sizeof(err));
}

static void
done(struct catalog *c)
{
    catalog_free(c);
    config_destroy(&cfg);
}

static const char *
id_of(const struct catalog *c, const char *host)
{
    const struct service *s = catalog_lookup(c, host, strlen(host));

    return s ? s->id : NULL;
}

#define SVC(id, hosts)                                                                             \
    "{ id = \"" id "\"; name = \"" id "\"; category = \"chat\"; vendor_country = \"US\"; "         \
    "hosts = [ " hosts " ]; }\n"

static const char precedence[] = "services = (\n" SVC("wide", "\"*.example.com\"") "," SVC(
    "api-wide",
    "\"*.api.example."
    "com\"") "," SVC("api",
                     "\"api.example.com\"") "," SVC("bare",
                                                    "\"example.com\"") "," SVC("idn",
                                                                               "\"xn--9n2bp8q.xn--"
                                                                               "3e0b707e\"") "," SVC("ip",
                                                                                                     "\"10."
                                                                                                     "1.2."
                                                                                                     "3\"") ",{ id = \"last\"; name = \"Last\"; category = \"api\"; "
                                                                                                            "vendor_country = \"KR\"; hosts = \"last.example.net\"; }\n"
                                                                                                            ");\n";

START_TEST(exact_beats_wildcard_longest_wildcard_wins)
{
    struct catalog *c = load(precedence);

    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_uint_eq(catalog_count(c), 7);
    ck_assert_str_eq(id_of(c, "api.example.com"), "api");
    ck_assert_str_eq(id_of(c, "v1.api.example.com"), "api-wide");
    ck_assert_str_eq(id_of(c, "a.b.api.example.com"), "api-wide");
    ck_assert_str_eq(id_of(c, "www.example.com"), "wide");
    ck_assert_str_eq(id_of(c, "example.com"), "bare");
    ck_assert_str_eq(id_of(c, "last.example.net"), "last");
    ck_assert_ptr_null(id_of(c, "com"));
    ck_assert_ptr_null(id_of(c, "example.org"));
    ck_assert_ptr_null(id_of(c, "notexample.com"));
    ck_assert_ptr_null(id_of(c, "example.com.evil.net"));
    done(c);
}
END_TEST

START_TEST(wildcard_does_not_match_bare_domain)
{
    struct catalog *c = load("services = (" SVC("w", "\"*.deepseek.com\"") ");");

    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_ptr_null(id_of(c, "deepseek.com"));
    ck_assert_str_eq(id_of(c, "chat.deepseek.com"), "w");
    ck_assert_ptr_null(id_of(c, "xdeepseek.com"));
    done(c);
}
END_TEST

START_TEST(case_port_trailing_dot)
{
    struct catalog *c = load(precedence);

    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(id_of(c, "API.Example.COM"), "api");
    ck_assert_str_eq(id_of(c, "api.example.com."), "api");
    ck_assert_str_eq(id_of(c, "api.example.com:443"), "api");
    ck_assert_str_eq(id_of(c, "Api.Example.Com.:8443"), "api");
    ck_assert_str_eq(id_of(c, "WWW.EXAMPLE.COM.:80"), "wide");
    ck_assert_str_eq(id_of(c, "10.1.2.3:443"), "ip");
    ck_assert_ptr_null(id_of(c, "[::1]:443"));
    ck_assert_ptr_null(id_of(c, ":443"));
    ck_assert_ptr_null(id_of(c, ""));
    /* the length given is honoured: no reading past it */
    ck_assert_ptr_nonnull(catalog_lookup(c, "api.example.com/junk", 15));
    ck_assert_str_eq(catalog_lookup(c, "api.example.comXX", 15)->id, "api");
    done(c);
}
END_TEST

START_TEST(idn_punycode)
{
    struct catalog *c = load(precedence);

    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(id_of(c, "xn--9n2bp8q.xn--3e0b707e"), "idn");
    ck_assert_str_eq(id_of(c, "XN--9N2BP8Q.XN--3E0B707E.:443"), "idn");
    done(c);
}
END_TEST

START_TEST(ipv6_and_overlong_hosts)
{
    char big[600];
    char out[HOSTSET_NAME_MAX + 1];
    struct catalog *c = load(precedence);

    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_int_eq(hostset_host_normalise("[2001:DB8::1]:443", 17, out), 11);
    ck_assert_str_eq(out, "2001:db8::1");
    ck_assert_int_eq(hostset_host_normalise("2001:db8::1", 11, out), 11);
    ck_assert_int_eq(hostset_host_normalise("[::1", 4, out), -1);
    memset(big, 'a', sizeof(big));
    ck_assert_int_eq(hostset_host_normalise(big, sizeof(big), out), -1);
    ck_assert_ptr_null(catalog_lookup(c, big, sizeof(big)));
    memcpy(big + sizeof(big) - 16, ".api.example.com", 16);
    ck_assert_ptr_null(catalog_lookup(c, big, sizeof(big)));
    done(c);
}
END_TEST

START_TEST(null_services_is_empty)
{
    struct catalog *c = catalog_load(NULL, err, sizeof(err));

    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(catalog_count(c), 0);
    ck_assert_ptr_null(catalog_lookup(c, "chat.deepseek.com", 17));
    ck_assert_ptr_null(catalog_service(c, 0));
    catalog_free(c);
    catalog_free(NULL);
}
END_TEST

static void
expect_error(const char *text, const char *line, const char *a, const char *b)
{
    struct catalog *c = load(text);

    ck_assert_msg(c == NULL, "loaded: %s", text);
    ck_assert_msg(strncmp(err, line, strlen(line)) == 0, "'%s' does not start with '%s'", err,
                  line);
    ck_assert_msg(strstr(err, a) != NULL, "'%s' lacks '%s'", err, a);
    ck_assert_msg(!b || strstr(err, b) != NULL, "'%s' lacks '%s'", err, b);
    config_destroy(&cfg);
}

START_TEST(host_in_two_services)
{
    expect_error("services = (\n" SVC("one", "\"a.example.com\"") ",\n" SVC(
                     "two", "\"b.example.com\",\n \"A.Example.com.\"") ");",
                 "<config>:5: ", "\"one\" (line 2)", "\"two\"");
    expect_error(
        "services = (\n" SVC("one", "\"*.example.com\"") "," SVC("two", "\"*.EXAMPLE.com\"") ");",
        "<config>:3: ", "one", "two");
    expect_error("services = (\n" SVC("one", "\"x.example.com\", \"x.example.com\"") ");",
                 "<config>:2: ", "listed twice", NULL);
}
END_TEST

START_TEST(invalid_patterns)
{
    expect_error("services = (\n" SVC("s", "\"*example.com\"") ");", "<config>:2: ", "*example.com",
                 "first label");
    expect_error("services = (\n" SVC("s", "\"a.*.example.com\"") ");", "<config>:2: ", "'*'",
                 NULL);
    expect_error("services = (\n" SVC("s", "\"*.com\"") ");", "<config>:2: ", "too broad", NULL);
    expect_error("services = (\n" SVC("s", "\"exa mple.com\"") ");", "<config>:2: ", "character",
                 NULL);
    expect_error("services = (\n" SVC("s", "\"a..com\"") ");", "<config>:2: ", "empty label", NULL);
    expect_error("services = (\n" SVC("s", "\"\"") ");", "<config>:2: ", "empty", NULL);
    expect_error("services = (\n" SVC("s", "42") ");", "<config>:2: ", "strings", NULL);
    expect_error("services = (\n{ id = \"s\"; name = \"S\"; category = \"chat\";\n"
                 "vendor_country = \"US\"; hosts = []; });",
                 "<config>:3: ", "empty", NULL);
}
END_TEST

START_TEST(bad_entries)
{
    expect_error("services = (\n" SVC(
                     "ok", "\"ok.example\"") ","
                                             "{ id = \"s\"; name = \"S\"; category = \"chat\"; "
                                             "vendor_country = \"US\";\n"
                                             "  hosts = [\"s.example\"]; colour = \"red\"; });",
                 "<config>:4: ", "unknown key", "colour");
    expect_error("services = (\n{ id = \"s\"; name = \"S\"; category = \"toys\"; "
                 "vendor_country = \"US\"; hosts = [\"s.example\"]; });",
                 "<config>:2: ", "unknown category", "toys");
    expect_error("services = (\n{ id = \"s\"; name = \"S\"; category = \"chat\"; "
                 "vendor_country = \"USA\"; hosts = [\"s.example\"]; });",
                 "<config>:2: ", "vendor_country", NULL);
    expect_error("services = (\n{ id = \"s\"; name = \"S\"; category = \"chat\"; "
                 "vendor_country = \"us\"; hosts = [\"s.example\"]; });",
                 "<config>:2: ", "vendor_country", NULL);
    expect_error("services = (\n" SVC("dup", "\"a.example\"") "," SVC("dup", "\"b.example\"") ");",
                 "<config>:3: ", "dup", "twice");
    expect_error("services = (\n{ id = \"Bad_Id\"; name = \"S\"; category = \"chat\"; "
                 "vendor_country = \"US\"; hosts = [\"s.example\"]; });",
                 "<config>:2: ", "Bad_Id", NULL);
    expect_error("services = (\n{ id = \"s\"; category = \"chat\";\n vendor_country = \"US\"; "
                 "hosts = [\"s.example\"]; });",
                 "<config>:2: ", "missing \"name\"", NULL);
    expect_error("services = (\n{ id = \"s\"; name = \"S\"; category = \"chat\";\n "
                 "vendor_country = \"US\"; });",
                 "<config>:2: ", "missing \"hosts\"", NULL);
    expect_error("services = (\n\"just a string\");", "<config>:2: ", "group", NULL);
    expect_error("services = { a = 1; };", "<config>:1: ", "list", NULL);
}
END_TEST

START_TEST(hostset_generic)
{
    struct hostset *s = hostset_new();
    char name[HOSTSET_NAME_MAX + 1];
    const char *why;
    void *d = NULL;
    int w;
    int vals[3];

    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(hostset_pattern_parse("*.Foo.Example.", name, &w, &why), 11);
    ck_assert_str_eq(name, "foo.example");
    ck_assert_int_eq(w, 1);
    ck_assert_int_eq(hostset_put(s, name, 11, w, &vals[0], NULL), 0);
    ck_assert_int_eq(hostset_put(s, "foo.example", 11, 0, &vals[1], NULL), 0);
    ck_assert_int_eq(hostset_put(s, "foo.example", 11, 0, &vals[2], &d), 1);
    ck_assert_ptr_eq(d, &vals[1]);
    /* many keys force the table to grow; all stay reachable */
    for (int i = 0; i < 5000; i++) {
        char k[32];
        int n = snprintf(k, sizeof(k), "h%d.example", i);

        ck_assert_int_eq(hostset_put(s, k, (size_t)n, i & 1, &vals[2], NULL), 0);
    }
    ck_assert_uint_eq(hostset_count(s), 5002);
    ck_assert_int_eq(hostset_match(s, "a.h1.example", 12, &d), 1);
    ck_assert_ptr_eq(d, &vals[2]);
    ck_assert_int_eq(hostset_match(s, "h1.example", 10, &d), 0);
    ck_assert_int_eq(hostset_match(s, "h2.example", 10, &d), 1);
    ck_assert_int_eq(hostset_match(s, "FOO.example:1", 13, &d), 1);
    ck_assert_ptr_eq(d, &vals[1]);
    ck_assert_int_eq(hostset_match(s, "x.foo.example", 13, &d), 1);
    ck_assert_ptr_eq(d, &vals[0]);
    ck_assert_ptr_eq(hostset_get(s, "foo.example", 11, 1), &vals[0]);
    ck_assert_ptr_null(hostset_get(s, "bar.example", 11, 0));
    hostset_free(s);
    hostset_free(NULL);
}
END_TEST

START_TEST(shipped_catalog)
{
    static const char *const required[] = {
        "deepseek",      "deepseek-api", "chatgpt",    "openai-api", "claude",
        "anthropic-api", "gemini",       "gemini-api", "copilot",    "perplexity",
        "mistral",       "grok",         "meta-ai",    "poe",        "character-ai",
        "huggingchat",   "kimi",         "qwen",       "ernie",      "doubao",
        "zhipu",         "minimax",      "clova-x",    "wrtn",       NULL};
    static const char *const lookups[][2] = {{"chat.deepseek.com", "deepseek"},
                                             {"api.deepseek.com", "deepseek-api"},
                                             {"deepseek.com", "deepseek"},
                                             {"chatgpt.com", "chatgpt"},
                                             {"api.openai.com", "openai-api"},
                                             {"claude.ai", "claude"},
                                             {"api.anthropic.com", "anthropic-api"},
                                             {"gemini.google.com", "gemini"},
                                             {"generativelanguage.googleapis.com", "gemini-api"},
                                             {"copilot.microsoft.com", "copilot"},
                                             {"api.githubcopilot.com", "github-copilot"},
                                             {"www.perplexity.ai", "perplexity"},
                                             {"chat.mistral.ai", "mistral"},
                                             {"api.mistral.ai", "mistral-api"},
                                             {"grok.com", "grok"},
                                             {"www.meta.ai", "meta-ai"},
                                             {"poe.com", "poe"},
                                             {"character.ai", "character-ai"},
                                             {"huggingface.co", "huggingface"},
                                             {"kimi.com", "kimi"},
                                             {"api.moonshot.cn", "kimi-api"},
                                             {"chat.qwen.ai", "qwen"},
                                             {"yiyan.baidu.com", "ernie"},
                                             {"www.doubao.com", "doubao"},
                                             {"chatglm.cn", "zhipu"},
                                             {"hailuoai.com", "minimax"},
                                             {"clova-x.naver.com", "clova-x"},
                                             {"wrtn.ai", "wrtn"},
                                             {NULL, NULL}};
    static const char *const not_ai[] = {"www.google.com",
                                         "google.com",
                                         "mail.google.com",
                                         "github.com",
                                         "microsoft.com",
                                         "www.microsoft.com",
                                         "www.naver.com",
                                         "www.baidu.com",
                                         "example.com",
                                         "googleapis.com",
                                         NULL};
    struct catalog *c;

    config_init(&cfg);
    ck_assert_msg(config_read_file(&cfg, "rules/services.conf") == CONFIG_TRUE,
                  "rules/services.conf: %s:%d", config_error_text(&cfg), config_error_line(&cfg));
    c = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_uint_ge(catalog_count(c), 40);
    for (size_t i = 0; required[i]; i++)
        ck_assert_msg(catalog_find_id(c, required[i]) != NULL, "missing %s", required[i]);
    for (size_t i = 0; lookups[i][0]; i++) {
        const char *got = id_of(c, lookups[i][0]);

        ck_assert_msg(got && strcmp(got, lookups[i][1]) == 0, "%s -> %s, want %s", lookups[i][0],
                      got ? got : "(none)", lookups[i][1]);
    }
    for (size_t i = 0; not_ai[i]; i++)
        ck_assert_msg(id_of(c, not_ai[i]) == NULL, "%s is not AI but -> %s", not_ai[i],
                      id_of(c, not_ai[i]));
    ck_assert_str_eq(catalog_find_id(c, "deepseek")->vendor_country, "CN");
    ck_assert_str_eq(catalog_find_id(c, "deepseek-api")->category, "api");
    ck_assert_str_eq(catalog_find_id(c, "clova-x")->vendor_country, "KR");
    for (size_t i = 0; i < catalog_count(c); i++)
        ck_assert_uint_eq(catalog_service(c, i)->index, i);
    done(c);
}
END_TEST

START_TEST(checked_and_catalog_version)
{
    struct catalog *c = load("catalog_version = \"2026-12-06\";\n"
                             "services = ( { id = \"a\"; name = \"A\"; category = \"chat\"; "
                             "vendor_country = \"US\"; checked = \"2024-02-29\"; "
                             "hosts = [ \"a.example\" ]; },\n" SVC("b", "\"b.example\"") ");");

    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(catalog_version(c), "2026-12-06");
    ck_assert_str_eq(catalog_find_id(c, "a")->checked, "2024-02-29");
    /* optional for an operator's own entries */
    ck_assert_str_eq(catalog_find_id(c, "b")->checked, "");
    done(c);

    c = load("services = (" SVC("b", "\"b.example\"") ");");
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(catalog_version(c), "");
    done(c);
    ck_assert_str_eq(catalog_version(NULL), "");
}
END_TEST

START_TEST(bad_dates)
{
    static const char *const bad[] = {"2026-13-01", "2026-00-10", "2026-02-29",  "2025-04-31",
                                      "2026-12-32", "2026-12-00", "1999-12-31",  "2026-1-06",
                                      "2026/12/06", "26-12-06",   "2026-12-06 ", "",
                                      "2026-12-0x", "20261206",   NULL};
    char text[512];

    for (size_t i = 0; bad[i]; i++) {
        snprintf(text, sizeof(text),
                 "services = (\n" SVC(
                     "ok", "\"ok.example\"") ",\n"
                                             "{ id = \"s\"; name = \"S\"; category = \"chat\"; "
                                             "vendor_country = \"US\";\n"
                                             "  checked = \"%s\"; hosts = [ \"s.example\" ]; });",
                 bad[i]);
        expect_error(text, "<config>:5: ", "service \"s\": checked", "YYYY-MM-DD");
        snprintf(text, sizeof(text),
                 "\ncatalog_version = \"%s\";\nservices = (" SVC("ok", "\"ok.example\"") ");",
                 bad[i]);
        expect_error(text, "<config>:2: ", "catalog_version", "YYYY-MM-DD");
    }
    expect_error("services = (\n{ id = \"s\"; name = \"S\"; category = \"chat\"; "
                 "vendor_country = \"US\";\n checked = 20261206; hosts = [ \"s.example\" ]; });",
                 "<config>:3: ", "checked", "YYYY-MM-DD");
    expect_error(
        "catalog_version = [ \"2026-12-06\" ];\nservices = (" SVC("ok", "\"ok.example\"") ");",
        "<config>:1: ", "catalog_version", NULL);
}
END_TEST

/*
 * The holes the catalog once had: each of these hosts let traffic pass a rule
 * meant for its service.  Host -> the service that must own it.
 */
static const char *const shipped_holes[][2] = {
    {"kimi.ai", "kimi"},
    {"www.kimi.ai", "kimi"},
    {"platform.kimi.ai", "kimi-api"},
    {"api.kimi.com", "kimi-api"},
    {"www.coze.com", "coze"},
    {"coze.com", "coze"},
    {"www.coze.cn", "coze"},
    {"coze.cn", "coze"},
    {"api.coze.com", "coze-api"},
    {"api.coze.cn", "coze-api"},
    {"www.cici.com", "dola"},
    {"www.ciciai.com", "dola"},
    {"api-normal-i18n.ciciai.com", "dola"},
    {"www.dola.com", "dola"},
    {"dola.com", "dola"},
    {"www.trae.ai", "trae"},
    {"trae.ai", "trae"},
    {"www.trae.cn", "trae"},
    {"www.marscode.com", "trae"},
    {"www.marscode.cn", "trae"},
    {"trae-api-sg.mchost.guru", "trae"},
    {"copilot.com", "copilot"},
    {"www.copilot.com", "copilot"},
    {"claudeusercontent.com", "claude"},
    {"www.claudeusercontent.com", "claude"},
    {"bridge.claudeusercontent.com", "claude"},
    {"grok.x.com", "grok"},
    {"ppl-ai-file-upload.s3.amazonaws.com", "perplexity"},
    {"pplx-res.cloudinary.com", "perplexity"},
    {"chatgpt.livekit.cloud", "chatgpt"},
    {"chat.com", "chatgpt"},
    {"www.chat.com", "chatgpt"},
    {"mate.kanana.ai", "kanana"},
    {"kanana.ai", "kanana"},
    {"api.kanana.ai", "kanana-api"},
    {"adot.ai", "adot"},
    {"www.adot.ai", "adot"},
    {"awf-gw.adot.ai", "adot-api"},
    {"duck.ai", "duck-ai"},
    /* path-scoped: a CONNECT to its Space belongs to Spaces (shipped_paths: the paths) */
    {"huggingchat-chat-ui.hf.space", "huggingface-spaces"},
    {"cdn-lfs.huggingface.co", "huggingface"},
    {"hf.co", "huggingface"},
    {"some-demo.hf.space", "huggingface-spaces"},
    {"router.huggingface.co", "huggingface-api"},
    {NULL, NULL}};

/* Shared platforms the widened catalog must still leave alone. */
static const char *const shipped_shared[] = {"x.com",
                                             "www.x.com",
                                             "api.x.com",
                                             "livekit.cloud",
                                             "host.livekit.cloud",
                                             "turn.livekit.cloud",
                                             "foo.turn.livekit.cloud",
                                             "s3.amazonaws.com",
                                             "other-bucket.s3.amazonaws.com",
                                             "res.cloudinary.com",
                                             "cloudinary.com",
                                             "blob.core.windows.net",
                                             "other.blob.core.windows.net",
                                             "duckduckgo.com",
                                             "api.cloudflare.com",
                                             "www.cloudflare.com",
                                             "googleapis.com",
                                             "www.googleapis.com",
                                             "clients6.google.com",
                                             "githubusercontent.com",
                                             "raw.githubusercontent.com",
                                             "gallery.vsassets.io",
                                             "bytedance.com",
                                             "www.kakao.com",
                                             "www.sktelecom.com",
                                             NULL};

START_TEST(shipped_holes_closed)
{
    struct catalog *c;

    config_init(&cfg);
    ck_assert_msg(config_read_file(&cfg, "rules/services.conf") == CONFIG_TRUE,
                  "rules/services.conf: %s:%d", config_error_text(&cfg), config_error_line(&cfg));
    c = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    for (size_t i = 0; shipped_holes[i][0]; i++) {
        const char *got = id_of(c, shipped_holes[i][0]);

        ck_assert_msg(got && strcmp(got, shipped_holes[i][1]) == 0, "%s -> %s, want %s",
                      shipped_holes[i][0], got ? got : "(none)", shipped_holes[i][1]);
    }
    for (size_t i = 0; shipped_shared[i]; i++)
        ck_assert_msg(id_of(c, shipped_shared[i]) == NULL, "shared host %s -> %s",
                      shipped_shared[i], id_of(c, shipped_shared[i]));
    /* ByteDance's international apps are CN; HuggingChat is chat, the hub is not */
    ck_assert_str_eq(catalog_find_id(c, "coze")->vendor_country, "CN");
    ck_assert_str_eq(catalog_find_id(c, "dola")->vendor_country, "CN");
    ck_assert_str_eq(catalog_find_id(c, "trae")->vendor_country, "CN");
    ck_assert_str_eq(catalog_find_id(c, "kanana")->vendor_country, "KR");
    ck_assert_str_eq(catalog_find_id(c, "adot")->vendor_country, "KR");
    ck_assert_str_eq(catalog_find_id(c, "huggingchat")->category, "chat");
    ck_assert_str_ne(catalog_find_id(c, "huggingface")->category, "chat");
    ck_assert_str_ne(catalog_find_id(c, "huggingface-spaces")->category, "chat");
    done(c);
}
END_TEST

static const char *
path_id(const struct catalog *c, const char *host, const char *path)
{
    const struct service *s = catalog_lookup_path(c, host, strlen(host), path, strlen(path));

    return s ? s->id : "(none)";
}

#define SVCP(id, hosts, paths)                                                                     \
    "{ id = \"" id "\"; name = \"" id "\"; category = \"chat\"; vendor_country = \"US\"; "         \
    "hosts = [ " hosts " ]; paths = [ " paths " ]; }\n"

START_TEST(path_scoped)
{
    struct catalog *c = load(
        "services = (\n" SVC("hub", "\"hub.example\", \"*.hub.example\"") "," SVCP("chat", "\"hub.example\", \"chat-space.spaces.example\"", "\"/chat\", \"/chat/*\"") "," SVCP(
            "chat-api", "\"hub.example\"",
            "\"/chat/api/*\"") "," SVC("spaces",
                                       "\"*.spaces.example\"") "," SVCP("wide-ai",
                                                                        "\"*.social.example\"",
                                                                        "\"/ai/*\"") "," SVCP("soci"
                                                                                              "al-"
                                                                                              "ai",
                                                                                              "\"so"
                                                                                              "cial"
                                                                                              ".exa"
                                                                                              "mple"
                                                                                              "\"",
                                                                                              "\"/"
                                                                                              "i/"
                                                                                              "ai\""
                                                                                              ", "
                                                                                              "\"/"
                                                                                              "i/"
                                                                                              "ai/"
                                                                                              "*\"") ");");

    ck_assert_msg(c != NULL, "%s", err);
    /* host level: path-scoped entries never own a host */
    ck_assert_str_eq(id_of(c, "hub.example"), "hub");
    ck_assert_str_eq(id_of(c, "chat-space.spaces.example"), "spaces");
    ck_assert_ptr_null(id_of(c, "social.example"));
    ck_assert_ptr_null(id_of(c, "www.social.example"));
    /* request level: the path decides, the first path-scoped entry in file order wins */
    ck_assert_str_eq(path_id(c, "hub.example", "/chat"), "chat");
    ck_assert_str_eq(path_id(c, "HUB.example.:443", "/chat/conversation/1"), "chat");
    ck_assert_str_eq(path_id(c, "hub.example", "/chat/api/x"), "chat");
    ck_assert_str_eq(path_id(c, "hub.example", "/chatdb/model"), "hub");
    ck_assert_str_eq(path_id(c, "hub.example", "/"), "hub");
    ck_assert_str_eq(path_id(c, "cdn.hub.example", "/chat"), "hub");
    ck_assert_str_eq(path_id(c, "chat-space.spaces.example", "/chat/"), "chat");
    ck_assert_str_eq(path_id(c, "chat-space.spaces.example", "/other"), "spaces");
    ck_assert_str_eq(path_id(c, "social.example", "/i/ai"), "social-ai");
    ck_assert_str_eq(path_id(c, "social.example", "/home"), "(none)");
    ck_assert_str_eq(path_id(c, "x.social.example", "/ai/run"), "wide-ai");
    ck_assert_str_eq(path_id(c, "x.social.example", "/i/ai"), "(none)");
    ck_assert_str_eq(path_id(c, "other.example", "/chat"), "(none)");
    /* no path: the host level */
    ck_assert_str_eq(catalog_lookup_path(c, "hub.example", 11, NULL, 0)->id, "hub");
    /* which hosts are named by a path-scoped entry (they are intercepted) */
    ck_assert_int_eq(catalog_has_scoped(c, "hub.example", 11), 1);
    ck_assert_int_eq(catalog_has_scoped(c, "social.example:443", 18), 1);
    ck_assert_int_eq(catalog_has_scoped(c, "deep.x.social.example", 21), 1);
    ck_assert_int_eq(catalog_has_scoped(c, "cdn.hub.example", 15), 0);
    ck_assert_int_eq(catalog_has_scoped(c, "other.example", 13), 0);
    ck_assert_uint_eq(catalog_find_id(c, "chat")->npaths, 2);
    ck_assert_str_eq(catalog_find_id(c, "chat")->paths[1], "/chat/*");
    ck_assert_uint_eq(catalog_find_id(c, "hub")->npaths, 0);
    done(c);
    /* an entry without paths and path-scoped ones on one host; two without paths is an error */
    expect_error("services = (\n" SVCP("a", "\"s.example\"", "\"/a\"") "," SVCP(
                     "b", "\"s.example\"",
                     "\"/b\"") "," SVC("c", "\"s.example\"") "," SVC("d", "\"s.example\"") ");",
                 "<config>:5: ", "\"c\" (line 4)", "\"d\"");
    expect_error("services = (\n" SVCP("a", "\"s.example\", \"S.example\"", "\"/a\"") ");",
                 "<config>:2: ", "listed twice", NULL);
    expect_error("services = (\n" SVCP("a", "\"s.example\"", "\"a/*\"") ");",
                 "<config>:2: ", "starting with '/'", NULL);
    expect_error("services = (\n" SVCP("a", "\"s.example\"", "\"/search?udm=50\"") ");",
                 "<config>:2: ", "without its query", "query");
    expect_error("services = (\n" SVCP("a", "\"s.example\"", "") ");", "<config>:2: ", "empty",
                 NULL);
    expect_error("services = (\n" SVCP("a", "\"s.example\"", "1") ");",
                 "<config>:2: ", "starting with '/'", NULL);
}
END_TEST

/* The shipped path-scoped entries: HuggingChat, Grok on X, Duck.ai, Workers AI. */
START_TEST(shipped_paths)
{
    struct catalog *c;

    config_init(&cfg);
    ck_assert_msg(config_read_file(&cfg, "rules/services.conf") == CONFIG_TRUE,
                  "rules/services.conf: %s:%d", config_error_text(&cfg), config_error_line(&cfg));
    c = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(path_id(c, "huggingface.co", "/chat"), "huggingchat");
    ck_assert_str_eq(path_id(c, "huggingface.co", "/chat/conversation/66a1"), "huggingchat");
    ck_assert_str_eq(path_id(c, "huggingface.co", "/chatdb/some-model"), "huggingface");
    ck_assert_str_eq(path_id(c, "huggingface.co", "/meta-llama/Llama-3.1-8B"), "huggingface");
    ck_assert_str_eq(path_id(c, "huggingchat-chat-ui.hf.space", "/chat/"), "huggingchat");
    ck_assert_str_eq(path_id(c, "x.com", "/i/grok"), "grok-x");
    ck_assert_str_eq(path_id(c, "x.com", "/i/api/2/grok/add_response.json"), "grok-x");
    ck_assert_str_eq(path_id(c, "x.com", "/home"), "(none)");
    ck_assert_str_eq(path_id(c, "x.com", "/i/grokking"), "(none)");
    ck_assert_str_eq(path_id(c, "duckduckgo.com", "/duckchat/v1/chat"), "duck-ai-ddg");
    ck_assert_str_eq(path_id(c, "duckduckgo.com", "/"), "(none)");
    ck_assert_str_eq(path_id(c, "api.cloudflare.com",
                             "/client/v4/accounts/0123abcd/ai/run/@cf/meta/llama-3.1-8b-instruct"),
                     "cloudflare-workers-ai");
    ck_assert_str_eq(
        path_id(c, "api.cloudflare.com", "/client/v4/accounts/0123abcd/ai/v1/chat/completions"),
        "cloudflare-workers-ai");
    ck_assert_str_eq(path_id(c, "api.cloudflare.com", "/client/v4/zones"), "(none)");
    for (size_t i = 0; i < 4; i++) {
        static const char *const scoped[] = {"huggingface.co", "x.com", "duckduckgo.com",
                                             "api.cloudflare.com"};

        ck_assert_msg(catalog_has_scoped(c, scoped[i], strlen(scoped[i])), "%s", scoped[i]);
    }
    ck_assert_int_eq(catalog_has_scoped(c, "www.x.com", 9), 0);
    ck_assert_int_eq(catalog_has_scoped(c, "chatgpt.com", 11), 0);
    done(c);
}
END_TEST

START_TEST(shipped_dates)
{
    struct catalog *c;

    config_init(&cfg);
    ck_assert_msg(config_read_file(&cfg, "rules/services.conf") == CONFIG_TRUE,
                  "rules/services.conf: %s:%d", config_error_text(&cfg), config_error_line(&cfg));
    c = catalog_load(config_lookup(&cfg, "services"), err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    /* the shipped file carries a version and a checked date on every entry */
    ck_assert_uint_eq(strlen(catalog_version(c)), 10);
    for (size_t i = 0; i < catalog_count(c); i++) {
        const struct service *s = catalog_service(c, i);

        ck_assert_msg(strlen(s->checked) == 10, "%s (line %d) has no checked date", s->id, s->line);
        ck_assert_msg(strcmp(s->checked, catalog_version(c)) <= 0,
                      "%s checked %s after the catalog version %s", s->id, s->checked,
                      catalog_version(c));
    }
    done(c);
}
END_TEST

Suite *catalog_suite(void);

Suite *
catalog_suite(void)
{
    Suite *s = suite_create("catalog");
    TCase *t = tcase_create("core");

    tcase_add_test(t, exact_beats_wildcard_longest_wildcard_wins);
    tcase_add_test(t, wildcard_does_not_match_bare_domain);
    tcase_add_test(t, case_port_trailing_dot);
    tcase_add_test(t, idn_punycode);
    tcase_add_test(t, ipv6_and_overlong_hosts);
    tcase_add_test(t, null_services_is_empty);
    tcase_add_test(t, host_in_two_services);
    tcase_add_test(t, invalid_patterns);
    tcase_add_test(t, bad_entries);
    tcase_add_test(t, hostset_generic);
    tcase_add_test(t, shipped_catalog);
    tcase_add_test(t, checked_and_catalog_version);
    tcase_add_test(t, bad_dates);
    tcase_add_test(t, shipped_holes_closed);
    tcase_add_test(t, shipped_dates);
    tcase_add_test(t, path_scoped);
    tcase_add_test(t, shipped_paths);
    suite_add_tcase(s, t);
    return s;
}
