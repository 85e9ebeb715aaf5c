/*
 * Unit tests for proxy/http/pages.c: escaping, template parsing and rendering,
 * built-in defaults, the text variants, Accept negotiation.
 */
#include <check.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aigate/http/pages.h"

static char tmpdir[64];

static void
setup(void)
{
    strcpy(tmpdir, "/tmp/aigate_pages_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown(void)
{
    static const char *const names[] = {"block.html", "caution.html", "error.html"};
    char path[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

static void
write_page(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Render into a NUL-terminated heap string. */
static char *
render(const struct pages *p, enum page_kind kind, const struct page_vars *v, int text)
{
    struct evbuffer *b = evbuffer_new();
    ck_assert_int_eq(text ? pages_render_text(b, kind, v) : pages_render(b, p, kind, v), 0);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

START_TEST(escape_every_special)
{
    char out[128];
    const char *in = "a&b<c>d\"e'f\x01g\x7fh\ti\r\nj\x1bk";
    const char *want = "a&amp;b&lt;c&gt;d&quot;e&#39;fghijk";
    ck_assert_uint_eq(pages_html_escape(out, sizeof(out), in), strlen(want));
    ck_assert_str_eq(out, want);
    ck_assert_uint_eq(pages_html_escape(out, sizeof(out), "plain 한국어 text"),
                      strlen("plain 한국어 text"));
    ck_assert_str_eq(out, "plain 한국어 text");
    ck_assert_uint_eq(pages_html_escape(out, sizeof(out), ""), 0);
    ck_assert_str_eq(out, "");

    /* Truncation never cuts an entity and always terminates. */
    ck_assert_uint_eq(pages_html_escape(out, 4, "ab&c"), 8);
    ck_assert_str_eq(out, "ab");
    ck_assert_uint_eq(pages_html_escape(out, 8, "ab&c"), 8);
    ck_assert_str_eq(out, "ab&amp;");
    ck_assert_uint_eq(pages_html_escape(out, 9, "ab&c"), 8);
    ck_assert_str_eq(out, "ab&amp;c");
    ck_assert_uint_eq(pages_html_escape(out, 1, "x"), 1);
    ck_assert_str_eq(out, "");
    ck_assert_uint_eq(pages_html_escape(NULL, 0, "<>"), 8);
}
END_TEST

START_TEST(builtin_defaults)
{
    char err[256];
    struct pages *p = pages_load(NULL, err, sizeof(err));
    ck_assert_ptr_nonnull(p);
    struct page_vars v = {.service = "DeepSeek",
                          .user = "alice",
                          .rule = "ban-cn-ai",
                          .reason = "Chinese AI services are banned for business use.",
                          .host = "chat.deepseek.com",
                          .url = "https://chat.deepseek.com/?q=<x>",
                          .token = "tok\"en"};
    char *s = render(p, PAGE_BLOCK, &v, 0);
    ck_assert_ptr_nonnull(strstr(s, "Access to DeepSeek is blocked"));
    ck_assert_ptr_nonnull(strstr(s, "quote rule ban-cn-ai."));
    ck_assert_ptr_nonnull(strstr(s, "https://chat.deepseek.com/?q=&lt;x&gt;"));
    ck_assert_ptr_nonnull(strstr(s, "<meta name=\"viewport\""));
    ck_assert_ptr_nonnull(strstr(s, "<html lang=\"en\">"));
    ck_assert_ptr_null(strstr(s, "{{"));
    free(s);

    s = render(p, PAGE_CAUTION, &v, 0);
    ck_assert_ptr_nonnull(strstr(s, "action=\"/__aigate/ack\""));
    ck_assert_ptr_nonnull(strstr(s, "name=\"token\" value=\"tok&quot;en\""));
    ck_assert_ptr_nonnull(
        strstr(s, "name=\"url\" value=\"https://chat.deepseek.com/?q=&lt;x&gt;\""));
    ck_assert_ptr_nonnull(strstr(s, "DeepSeek"));
    free(s);

    struct page_vars e = {.status = 502,
                          .title = "Bad Gateway",
                          .detail = "Could not connect to example.com.",
                          .lang = "ko"};
    s = render(p, PAGE_ERROR, &e, 0);
    ck_assert_ptr_nonnull(strstr(s, "<title>502 Bad Gateway</title>"));
    ck_assert_ptr_nonnull(strstr(s, "Could not connect to example.com."));
    ck_assert_ptr_nonnull(strstr(s, "aigate"));
    ck_assert_ptr_nonnull(strstr(s, "<html lang=\"ko\">"));
    free(s);
    for (int k = 0; k < PAGE_KINDS; k++)
        ck_assert_int_eq(pages_from_file(p, (enum page_kind)k), 0);
    pages_free(p);
    pages_free(NULL);

    /* A folder without templates, or no folder at all, also gives defaults. */
    p = pages_load(tmpdir, err, sizeof(err));
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(pages_from_file(p, PAGE_BLOCK), 0);
    pages_free(p);
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/nope", tmpdir);
    p = pages_load(missing, err, sizeof(err));
    ck_assert_ptr_nonnull(p);
    pages_free(p);
}
END_TEST

START_TEST(placeholders_render)
{
    char err[256];
    write_page("block.html", "[{{service}}|{{user}}|{{rule}}|{{reason}}|{{host}}|{{url}}|"
                             "{{token}}|{{status}}|{{title}}|{{detail}}|{{method}}|"
                             "{{category}}|{{lang}}|{{ service }}]{ {x} }{}\n");
    struct pages *p = pages_load(tmpdir, err, sizeof(err));
    ck_assert_msg(p != NULL, "%s", err);
    ck_assert_int_eq(pages_from_file(p, PAGE_BLOCK), 1);
    ck_assert_int_eq(pages_from_file(p, PAGE_ERROR), 0);
    struct page_vars v = {.service = "S&",
                          .user = "<u>",
                          .rule = "r'",
                          .reason = "\"why\"",
                          .host = "h",
                          .url = "u\r\nX: y",
                          .token = "t",
                          .status = 403,
                          .title = "T",
                          .detail = "D",
                          .method = "GET",
                          .category = "chat",
                          .lang = "ko"};
    char *s = render(p, PAGE_BLOCK, &v, 0);
    ck_assert_str_eq(s, "[S&amp;|&lt;u&gt;|r&#39;|&quot;why&quot;|h|uX: y|t|403|T|D|GET|chat|ko|"
                        "S&amp;]{ {x} }{}\n");
    free(s);

    struct page_vars none = {0};
    s = render(p, PAGE_BLOCK, &none, 0);
    ck_assert_str_eq(s, "[||||||||||||en|]{ {x} }{}\n");
    free(s);
    pages_free(p);
}
END_TEST

static void
load_fails(const char *text, const char *want)
{
    char err[512] = "", expect[512];
    write_page("error.html", text);
    ck_assert_ptr_null(pages_load(tmpdir, err, sizeof(err)));
    snprintf(expect, sizeof(expect), "%s/error.html:%s", tmpdir, want);
    ck_assert_msg(strcmp(err, expect) == 0, "got \"%s\", want \"%s\"", err, expect);
}

START_TEST(template_errors)
{
    load_fails("<html>\n<body>\n<p>{{nope}}</p>\n", "3: unknown placeholder {{nope}}");
    load_fails("{{Service}}", "1: unknown placeholder {{Service}}");
    load_fails("a\nb {{service", "2: unterminated or malformed placeholder \"{{service\"");
    load_fails("x\n\n{{service user}}", "3: unterminated or malformed placeholder \"{{service\"");
    load_fails("{{}}", "1: unknown placeholder {{}}");
}
END_TEST

START_TEST(shipped_templates)
{
    char err[256];
    struct pages *p = pages_load("rules/pages", err, sizeof(err));
    ck_assert_msg(p != NULL, "%s", err);
    ck_assert_int_eq(pages_from_file(p, PAGE_BLOCK), 1);
    ck_assert_int_eq(pages_from_file(p, PAGE_ERROR), 1);
    struct page_vars v = {.service = "DeepSeek",
                          .user = "alice",
                          .rule = "ban-cn-ai",
                          .reason = "Banned <b>",
                          .host = "chat.deepseek.com",
                          .url = "https://chat.deepseek.com/"};
    char *s = render(p, PAGE_BLOCK, &v, 0);
    ck_assert_ptr_nonnull(strstr(s, "Access to DeepSeek is blocked"));
    ck_assert_ptr_nonnull(strstr(s, "Banned &lt;b&gt;"));
    ck_assert_ptr_nonnull(strstr(s, "contact your IT security team and quote rule ban-cn-ai."));
    ck_assert_ptr_nonnull(strstr(s, "<meta name=\"viewport\""));
    ck_assert_ptr_null(strstr(s, "<script"));
    ck_assert_ptr_null(strstr(s, "http://"));
    free(s);
    struct page_vars e = {.status = 504, .title = "Gateway Timeout", .detail = "No answer."};
    s = render(p, PAGE_ERROR, &e, 0);
    ck_assert_ptr_nonnull(strstr(s, "504"));
    ck_assert_ptr_nonnull(strstr(s, "Gateway Timeout"));
    ck_assert_ptr_nonnull(strstr(s, "aigate"));
    free(s);
    pages_free(p);
}
END_TEST

START_TEST(text_variants)
{
    struct page_vars v = {.service = "DeepSeek",
                          .user = "alice",
                          .rule = "ban-cn-ai",
                          .reason = "Banned.",
                          .url = "https://chat.deepseek.com/a\r\nSet-Cookie: x"};
    char *s = render(NULL, PAGE_BLOCK, &v, 1);
    ck_assert_str_eq(s, "Access to DeepSeek is blocked.\n"
                        "Reason: Banned.\n"
                        "Address: https://chat.deepseek.com/aSet-Cookie: x\n"
                        "User: alice\n"
                        "If you need this service for your work, contact your IT security team "
                        "and quote rule ban-cn-ai.\n");
    free(s);

    struct page_vars h = {.host = "api.example.com"};
    s = render(NULL, PAGE_BLOCK, &h, 1);
    ck_assert_str_eq(s, "Access to api.example.com is blocked.\n");
    free(s);

    s = render(NULL, PAGE_CAUTION, &v, 1);
    ck_assert_ptr_nonnull(strstr(s, "DeepSeek needs your acknowledgement"));
    ck_assert_ptr_nonnull(strstr(s, "in a web browser"));
    ck_assert_ptr_null(strchr(s, '<'));
    free(s);

    struct page_vars e = {.status = 502, .title = "Bad Gateway", .detail = "No route."};
    s = render(NULL, PAGE_ERROR, &e, 1);
    ck_assert_str_eq(s, "502 Bad Gateway\nNo route.\n");
    free(s);
}
END_TEST

static int
wants(const char *a)
{
    return pages_client_wants_html(a, strlen(a));
}

START_TEST(accept_negotiation)
{
    ck_assert_int_eq(wants("text/html"), 1);
    ck_assert_int_eq(wants("TEXT/HTML"), 1);
    ck_assert_int_eq(wants("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                           "image/webp,*/*;q=0.8"),
                     1);
    ck_assert_int_eq(wants("application/json, text/html ; level=1 ; q=0.5"), 1);
    ck_assert_int_eq(wants("text/html;q=1"), 1);
    ck_assert_int_eq(wants("text/html;q=0.001"), 1);
    ck_assert_int_eq(wants("text/html;q=0"), 0);
    ck_assert_int_eq(wants("text/html; Q=0.000"), 0);
    ck_assert_int_eq(wants("text/plain, text/html;q=0"), 0);
    ck_assert_int_eq(wants("text/html;q=0, text/html;level=2"), 1);
    ck_assert_int_eq(wants("*/*"), 0);
    ck_assert_int_eq(wants("text/*"), 0);
    ck_assert_int_eq(wants("application/json"), 0);
    ck_assert_int_eq(wants("text/htmlx"), 0);
    ck_assert_int_eq(wants("xtext/html"), 0);
    ck_assert_int_eq(wants(""), 0);
    ck_assert_int_eq(wants(",,;"), 0);
    ck_assert_int_eq(pages_client_wants_html("text/html", 8), 0);
    ck_assert_int_eq(pages_client_wants_html("text/html, x", 9), 1);
}
END_TEST

START_TEST(korean)
{
    ck_assert_int_eq(pages_prefers_korean("ko-KR,ko;q=0.9,en;q=0.8", 23), 1);
    ck_assert_int_eq(pages_prefers_korean("en-US,en;q=0.9,ko;q=0.8", 23), 0);
    ck_assert_int_eq(pages_prefers_korean("en;q=0.5, ko;q=0.7", 18), 1);
    ck_assert_int_eq(pages_prefers_korean("ko;q=0", 6), 0);
    ck_assert_int_eq(pages_prefers_korean("kok", 3), 0);
    ck_assert_str_eq(pages_text("Bad gateway", "ko"), "원 서버에 연결할 수 없습니다");
    ck_assert_str_eq(pages_text("Bad gateway", "en"), "Bad gateway");
    ck_assert_str_eq(pages_text("Bad gateway", NULL), "Bad gateway");
    ck_assert_str_eq(pages_text("Cannot resolve x", "ko"), "Cannot resolve x");
    ck_assert_ptr_null(pages_text(NULL, "ko"));

    struct pages *p;
    char err[256];
    ck_assert_ptr_nonnull(p = pages_load(NULL, err, sizeof(err)));
    struct evbuffer *b = evbuffer_new();
    struct page_vars v = {.service = "DeepSeek", .rule = "r", .lang = "ko"};
    ck_assert_int_eq(pages_render(b, p, PAGE_BLOCK, &v), 0);
    evbuffer_add(b, "", 1);
    const char *s = (const char *)evbuffer_pullup(b, -1);
    ck_assert_ptr_nonnull(strstr(s, "<html lang=\"ko\">"));
    ck_assert_ptr_nonnull(strstr(s, "DeepSeek 이용이 차단되었습니다"));
    evbuffer_drain(b, evbuffer_get_length(b));
    struct page_vars e = {.status = 502, .title = "Bad gateway", .lang = "ko"};
    ck_assert_int_eq(pages_render(b, p, PAGE_ERROR, &e), 0);
    evbuffer_add(b, "", 1);
    s = (const char *)evbuffer_pullup(b, -1);
    ck_assert_ptr_nonnull(strstr(s, "502 원 서버에 연결할 수 없습니다"));
    evbuffer_drain(b, evbuffer_get_length(b));
    ck_assert_int_eq(pages_render_text(b, PAGE_BLOCK, &v), 0);
    evbuffer_add(b, "", 1);
    s = (const char *)evbuffer_pullup(b, -1);
    ck_assert_ptr_nonnull(strstr(s, "DeepSeek 이용이 차단되었습니다."));
    evbuffer_free(b);
    pages_free(p);
}
END_TEST

Suite *pages_suite(void);

Suite *
pages_suite(void)
{
    Suite *s = suite_create("pages");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, escape_every_special);
    tcase_add_test(tc, builtin_defaults);
    tcase_add_test(tc, placeholders_render);
    tcase_add_test(tc, template_errors);
    tcase_add_test(tc, shipped_templates);
    tcase_add_test(tc, text_variants);
    tcase_add_test(tc, accept_negotiation);
    tcase_add_test(tc, korean);
    suite_add_tcase(s, tc);
    return s;
}
