/*
 * Page templates: loading, one-time parsing into segments, rendering with
 * HTML escaping; the text/plain variants; Accept negotiation.
 *
 * Invariants: a parsed template is a list of segments, each either a slice of
 * the template text or a placeholder index, so rendering never scans for
 * "{{"; every value goes through the escaper; struct pages never changes
 * after pages_load().
 */
#include "aigate/http/pages.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PAGES_FILE_MAX (1024 * 1024)

enum pages_var {
    PV_SERVICE,
    PV_USER,
    PV_RULE,
    PV_REASON,
    PV_HOST,
    PV_URL,
    PV_TOKEN,
    PV_STATUS,
    PV_TITLE,
    PV_DETAIL,
    PV_METHOD,
    PV_CATEGORY,
    PV_LANG,
    PV_COUNT
};

static const char *const pages_var_names[PV_COUNT] = {
    "service", "user",  "rule",   "reason", "host",     "url",  "token",
    "status",  "title", "detail", "method", "category", "lang",
};

static const char *const pages_file_names[PAGE_KINDS] = {"block.html", "caution.html",
                                                         "error.html"};

/* Built-in pages hold both languages; the CSS shows the one {{lang}} names. */
#define PAGES_LANG_CSS                                                                             \
    "html:not([lang|=\"ko\"]) .ko{display:none}html[lang|=\"ko\"] .en{display:none}"

static const char pages_default_block[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"{{lang}}\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>{{service}} · 차단됨 / Blocked</title>\n"
    "<style>" PAGES_LANG_CSS "body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em "
    "auto;padding:0 1em;color:#222}h1{font-size:1.4em;color:#a40000}dt{font-weight:600}dd{margin:0 "
    "0 "
    ".5em;overflow-wrap:anywhere}</style>\n"
    "</head><body>\n"
    "<h1><span class=\"ko\">{{service}} 이용이 차단되었습니다</span>"
    "<span class=\"en\">Access to {{service}} is blocked</span></h1>\n"
    "<p>{{reason}}</p>\n"
    "<dl><dt><span class=\"ko\">주소</span><span class=\"en\">Address</span></dt><dd>{{url}}</dd>"
    "<dt><span class=\"ko\">적용 규칙</span><span class=\"en\">Rule</span></dt><dd>{{rule}}</dd>"
    "<dt><span class=\"ko\">사용자</span><span "
    "class=\"en\">User</span></dt><dd>{{user}}</dd></dl>\n"
    "<p><span class=\"ko\">업무상 이 서비스가 필요하면 정보보안 담당 부서에 규칙 {{rule}}을(를) "
    "알려 문의해 주십시오.</span><span class=\"en\">If you need this service for your work, "
    "contact "
    "your IT security team and quote rule {{rule}}.</span></p>\n"
    "</body></html>\n";

static const char pages_default_caution[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"{{lang}}\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>Before you use {{service}}</title>\n"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 "
    "1em;color:#222}h1{font-size:1.4em}button{font-size:1em;padding:.5em 1em}</style>\n"
    "</head><body>\n"
    "<h1>Before you use {{service}}</h1>\n"
    "<p>{{reason}}</p>\n"
    "<ul><li>Do not enter personal details or confidential work data.</li>\n"
    "<li>Do not trust the answers blindly: check them.</li>\n"
    "<li>Your use of this service is logged.</li></ul>\n"
    "<form method=\"post\" action=\"/__aigate/ack\">\n"
    "<input type=\"hidden\" name=\"url\" value=\"{{url}}\">\n"
    "<input type=\"hidden\" name=\"token\" value=\"{{token}}\">\n"
    "<button type=\"submit\">I understand, continue</button></form>\n"
    "<p><small>User {{user}}, rule {{rule}}.</small></p>\n"
    "</body></html>\n";

static const char pages_default_error[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"{{lang}}\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>{{status}} {{title}}</title>\n"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 "
    "1em;color:#222}h1{font-size:1.4em}footer{color:#777;font-size:.9em}</style>\n"
    "</head><body>\n"
    "<h1>{{status}} {{title}}</h1>\n"
    "<p>{{detail}}</p>\n"
    "<footer>aigate</footer>\n"
    "</body></html>\n";

static const char *const pages_defaults[PAGE_KINDS] = {pages_default_block, pages_default_caution,
                                                       pages_default_error};

/*
 * Korean for the titles and details the proxy puts on its own pages
 * (gettext-style: keyed by the English text).  A text not listed here (one
 * with a host name or a library's reason in it) is shown in English.
 */
static const char *const pages_ko_catalog[][2] = {
    {"Access denied", "접근이 거부되었습니다"},
    {"Acknowledgement not accepted", "확인이 처리되지 않았습니다"},
    {"Acknowledgement not recorded", "확인이 기록되지 않았습니다"},
    {"The acknowledgement could not be recorded. Go back and load the page again.",
     "확인을 기록하지 못했습니다. 이전 페이지로 돌아가 다시 불러와 주십시오."},
    {"Bad gateway", "원 서버에 연결할 수 없습니다"},
    {"Bad request", "잘못된 요청입니다"},
    {"Gateway timeout", "원 서버 응답 시간이 초과되었습니다"},
    {"Interception failed", "보안 검사를 위한 연결에 실패했습니다"},
    {"Internal error", "프록시 내부 오류입니다"},
    {"Length required", "본문 길이가 필요합니다"},
    {"Loop detected", "요청이 프록시를 반복해서 지나고 있습니다"},
    {"Method not allowed", "허용되지 않는 요청 방식입니다"},
    {"Not a proxy request", "프록시 요청이 아닙니다"},
    {"Out of resources", "프록시의 자원이 부족합니다"},
    {"Port not allowed", "허용되지 않는 포트입니다"},
    {"Proxy authentication required", "프록시 로그인이 필요합니다"},
    {"Request timeout", "요청 시간이 초과되었습니다"},
    {"Request header too large", "요청 헤더가 너무 큽니다"},
    {"Service unavailable", "지금은 서비스를 이용할 수 없습니다"},
    {"Out of memory.", "프록시의 메모리가 부족합니다."},
    {"Sign in with your organisation account to use the web.",
     "웹을 이용하려면 기관 계정으로 로그인해 주십시오."},
    {"Your address may not use this proxy.", "이 주소에서는 프록시를 이용할 수 없습니다."},
    {"CONNECT is only allowed to the configured ports.",
     "CONNECT는 허용된 포트로만 할 수 있습니다."},
    {"The request carries more than one Host header.", "요청에 Host 헤더가 둘 이상 있습니다."},
    {"The Host header names another site than the request target.",
     "Host 헤더가 요청 주소와 다른 사이트를 가리킵니다."},
    {"The URL names another host than the connection.", "요청 주소가 연결된 호스트와 다릅니다."},
    {"The request URL is invalid.", "요청 주소가 올바르지 않습니다."},
    {"The request is malformed.", "요청 형식이 올바르지 않습니다."},
    {"The request head did not arrive in time.", "요청 헤더가 제시간에 도착하지 않았습니다."},
    {"The chunked request body is malformed.", "요청 본문의 청크 형식이 올바르지 않습니다."},
    {"This is a proxy: requests must carry an absolute URL (http://host/path).",
     "이곳은 프록시입니다. 요청에는 절대 주소(http://host/path)가 필요합니다."},
    {"https:// URLs must be requested through CONNECT.",
     "https:// 주소는 CONNECT로 요청해야 합니다."},
    {"CONNECT needs a host:port target.", "CONNECT에는 host:port 대상이 필요합니다."},
    {"CONNECT inside an intercepted connection is not allowed.",
     "검사 중인 연결 안에서는 CONNECT를 할 수 없습니다."},
    {"This request has already passed through this proxy.",
     "이 요청은 이미 이 프록시를 지났습니다."},
    {"The origin closed the connection without a complete response.",
     "원 서버가 응답을 마치지 않고 연결을 끊었습니다."},
    {"The origin did not answer in time.", "원 서버가 제시간에 응답하지 않았습니다."},
    {"The origin sent a malformed response.", "원 서버가 잘못된 형식의 응답을 보냈습니다."},
    {"The proxy could not make a certificate for this site.",
     "프록시가 이 사이트의 인증서를 만들지 못했습니다."},
    {"The proxy could not start a connection.", "프록시가 연결을 시작하지 못했습니다."},
    {"The acknowledgement address only takes the caution page's form.",
     "확인 주소는 유의사항 페이지의 양식만 받습니다."},
    {"Send the acknowledgement form with a Content-Length.",
     "확인 양식은 Content-Length와 함께 보내 주십시오."},
    {"The acknowledgement form is missing or too large.", "확인 양식이 없거나 너무 큽니다."},
    {"The acknowledgement form is incomplete or malformed.",
     "확인 양식이 불완전하거나 형식이 올바르지 않습니다."},
    {"The return address is not an http(s) address.", "돌아갈 주소가 http(s) 주소가 아닙니다."},
    {"The return address belongs to a different service.", "돌아갈 주소가 다른 서비스에 속합니다."},
};

const char *
pages_text(const char *en, const char *lang)
{
    if (!en || !lang || strcmp(lang, "ko") != 0)
        return en;
    for (size_t i = 0; i < sizeof(pages_ko_catalog) / sizeof(pages_ko_catalog[0]); i++)
        if (strcmp(pages_ko_catalog[i][0], en) == 0)
            return pages_ko_catalog[i][1];
    return en;
}

struct pages_seg {
    size_t off, len; /* literal slice of text when var < 0 */
    int var;
};

struct pages_tmpl {
    char *text;
    struct pages_seg *segs;
    size_t nsegs;
    int from_file;
};

struct pages {
    struct pages_tmpl t[PAGE_KINDS];
};

static int
pages_add_seg(struct pages_tmpl *t, size_t *cap, size_t off, size_t len, int var)
{
    if (var < 0 && len == 0)
        return 0;
    if (t->nsegs == *cap) {
        size_t ncap = *cap ? 2 * *cap : 16;
        struct pages_seg *ns = realloc(t->segs, ncap * sizeof(*ns));
        if (!ns)
            return -1;
        t->segs = ns;
        *cap = ncap;
    }
    t->segs[t->nsegs++] = (struct pages_seg){off, len, var};
    return 0;
}

static int
pages_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

/* Split t->text (len bytes) into segments.  name is the file for errors. */
static int
pages_parse(struct pages_tmpl *t, size_t len, const char *name, char *err, size_t errlen)
{
    const char *s = t->text;
    size_t pos = 0, cap = 0, line = 1, counted = 0;

    for (;;) {
        const char *open = memmem(s + pos, len - pos, "{{", 2);
        size_t at = open ? (size_t)(open - s) : len;
        if (pages_add_seg(t, &cap, pos, at - pos, -1) < 0)
            goto oom;
        if (!open)
            return 0;
        for (; counted < at; counted++)
            if (s[counted] == '\n')
                line++;
        size_t i = at + 2;
        while (i < len && s[i] == ' ')
            i++;
        size_t nb = i;
        while (i < len && pages_is_name_char(s[i]))
            i++;
        size_t ne = i;
        while (i < len && s[i] == ' ')
            i++;
        if (i + 1 >= len || s[i] != '}' || s[i + 1] != '}') {
            snprintf(err, errlen, "%s:%zu: unterminated or malformed placeholder \"%.*s\"", name,
                     line, (int)(ne - at < 40 ? ne - at : 40), s + at);
            return -1;
        }
        int var = -1;
        for (int k = 0; k < PV_COUNT; k++)
            if (strlen(pages_var_names[k]) == ne - nb &&
                memcmp(pages_var_names[k], s + nb, ne - nb) == 0)
                var = k;
        if (var < 0) {
            snprintf(err, errlen, "%s:%zu: unknown placeholder {{%.*s}}", name, line,
                     (int)(ne - nb < 40 ? ne - nb : 40), s + nb);
            return -1;
        }
        if (pages_add_seg(t, &cap, 0, 0, var) < 0)
            goto oom;
        pos = i + 2;
    }
oom:
    snprintf(err, errlen, "%s: out of memory", name);
    return -1;
}

/* Read dir/file into t->text.  1 if read, 0 if the file does not exist, -1 on
 * error.  *len receives the size. */
static int
pages_read(struct pages_tmpl *t, const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    if (!(t->text = malloc(PAGES_FILE_MAX + 1))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    *len = fread(t->text, 1, PAGES_FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto out;
    }
    if (*len > PAGES_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, PAGES_FILE_MAX);
        goto out;
    }
    char *shrunk = realloc(t->text, *len + 1);
    if (shrunk)
        t->text = shrunk;
    t->text[*len] = '\0';
    rc = 1;
out:
    fclose(f);
    return rc;
}

struct pages *
pages_load(const char *dir, char *err, size_t errlen)
{
    struct pages *p = calloc(1, sizeof(*p));
    char path[4096];

    if (!p) {
        snprintf(err, errlen, "%s: out of memory", dir ? dir : "pages");
        return NULL;
    }
    for (int k = 0; k < PAGE_KINDS; k++) {
        struct pages_tmpl *t = &p->t[k];
        size_t len = 0;
        int got = 0;
        const char *name = pages_file_names[k];
        if (dir) {
            if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, pages_file_names[k]) >=
                sizeof(path)) {
                snprintf(err, errlen, "%s: path too long", dir);
                goto fail;
            }
            if ((got = pages_read(t, path, &len, err, errlen)) < 0)
                goto fail;
            name = path;
        }
        if (!got) {
            len = strlen(pages_defaults[k]);
            if (!(t->text = strdup(pages_defaults[k]))) {
                snprintf(err, errlen, "%s: out of memory", pages_file_names[k]);
                goto fail;
            }
            name = pages_file_names[k];
        }
        t->from_file = got;
        if (pages_parse(t, len, name, err, errlen) < 0)
            goto fail;
    }
    return p;
fail:
    pages_free(p);
    return NULL;
}

void
pages_free(struct pages *p)
{
    if (!p)
        return;
    for (int k = 0; k < PAGE_KINDS; k++) {
        free(p->t[k].text);
        free(p->t[k].segs);
    }
    free(p);
}

int
pages_from_file(const struct pages *p, enum page_kind kind)
{
    return p->t[kind].from_file;
}

/* How c is written in HTML: NULL when as is, "" when dropped (controls). */
static const char *
pages_entity(unsigned char c)
{
    switch (c) {
    case '&':
        return "&amp;";
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '"':
        return "&quot;";
    case '\'':
        return "&#39;";
    default:
        return c < 0x20 || c == 0x7f ? "" : NULL;
    }
}

size_t
pages_html_escape(char *dst, size_t cap, const char *src)
{
    size_t need = 0, o = 0;
    int full = cap == 0;
    for (const unsigned char *s = (const unsigned char *)src; *s; s++) {
        const char *ent = pages_entity(*s);
        size_t n = ent ? strlen(ent) : 1;
        need += n;
        if (full || o + n >= cap) {
            full = 1;
            continue;
        }
        if (ent)
            memcpy(dst + o, ent, n);
        else
            dst[o] = (char)*s;
        o += n;
    }
    if (cap)
        dst[o] = '\0';
    return need;
}

/* Append s to out: HTML-escaped when html, else only stripped of controls.
 * Runs of plain bytes go in one evbuffer_add. */
static int
pages_add_value(struct evbuffer *out, const char *s, int html)
{
    const char *run = s;
    for (; *s; s++) {
        const char *ent = pages_entity((unsigned char)*s);
        if (!ent || (!html && *ent))
            continue;
        if (s > run && evbuffer_add(out, run, (size_t)(s - run)) < 0)
            return -1;
        if (*ent && evbuffer_add(out, ent, strlen(ent)) < 0)
            return -1;
        run = s + 1;
    }
    return s > run ? evbuffer_add(out, run, (size_t)(s - run)) : 0;
}

static const char *
pages_value(const struct page_vars *v, int var, char *num, size_t numlen)
{
    const char *s = NULL;
    switch (var) {
    case PV_SERVICE:
        s = v->service;
        break;
    case PV_USER:
        s = v->user;
        break;
    case PV_RULE:
        s = v->rule;
        break;
    case PV_REASON:
        s = v->reason;
        break;
    case PV_HOST:
        s = v->host;
        break;
    case PV_URL:
        s = v->url;
        break;
    case PV_TOKEN:
        s = v->token;
        break;
    case PV_TITLE:
        s = pages_text(v->title, v->lang);
        break;
    case PV_DETAIL:
        s = pages_text(v->detail, v->lang);
        break;
    case PV_METHOD:
        s = v->method;
        break;
    case PV_CATEGORY:
        s = v->category;
        break;
    case PV_LANG:
        s = v->lang ? v->lang : "en";
        break;
    case PV_STATUS:
        if (v->status > 0) {
            snprintf(num, numlen, "%d", v->status);
            s = num;
        }
        break;
    }
    return s ? s : "";
}

int
pages_render(struct evbuffer *out, const struct pages *p, enum page_kind kind,
             const struct page_vars *v)
{
    const struct pages_tmpl *t = &p->t[kind];
    char num[16];
    for (size_t i = 0; i < t->nsegs; i++) {
        const struct pages_seg *sg = &t->segs[i];
        int rc = sg->var < 0 ? evbuffer_add(out, t->text + sg->off, sg->len)
                             : pages_add_value(out, pages_value(v, sg->var, num, sizeof(num)), 1);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Append the literal a, then value s (controls stripped), then literal b. */
static int
pages_text_line(struct evbuffer *out, const char *a, const char *s, const char *b)
{
    if (evbuffer_add(out, a, strlen(a)) < 0 || pages_add_value(out, s, 0) < 0)
        return -1;
    return evbuffer_add(out, b, strlen(b));
}

int
pages_render_text(struct evbuffer *out, enum page_kind kind, const struct page_vars *v)
{
    const char *service = v->service ? v->service : v->host;
    int ko = v->lang && strcmp(v->lang, "ko") == 0;
    int rc = 0;

    switch (kind) {
    case PAGE_BLOCK:
        if (ko)
            rc |= pages_text_line(out, "", service ? service : "이 사이트",
                                  " 이용이 차단되었습니다.\n");
        else
            rc |= pages_text_line(out, "Access to ", service ? service : "this site",
                                  " is blocked.\n");
        if (v->reason)
            rc |= pages_text_line(out, ko ? "사유: " : "Reason: ", v->reason, "\n");
        if (v->url)
            rc |= pages_text_line(out, ko ? "주소: " : "Address: ", v->url, "\n");
        if (v->user)
            rc |= pages_text_line(out, ko ? "사용자: " : "User: ", v->user, "\n");
        if (v->rule)
            rc |= pages_text_line(
                out,
                ko ? "업무상 이 서비스가 필요하면 정보보안 담당 부서에 문의하며 다음 규칙을 "
                     "알려 주십시오: "
                   : "If you need this service for your work, contact your IT security team "
                     "and quote rule ",
                v->rule, ko ? "\n" : ".\n");
        break;
    case PAGE_CAUTION:
        rc |= pages_text_line(out, ko ? "" : "Using ", service ? service : "this service",
                              ko ? " 이용 전에 유의사항 확인이 필요합니다.\n"
                                 : " needs your acknowledgement first.\n");
        rc |=
            pages_text_line(out, ko ? "웹 브라우저에서 " : "Open ", v->url ? v->url : "the address",
                            ko ? " 주소를 열어 유의사항을 읽고 계속하십시오.\n"
                               : " in a web browser to read the usage notice and continue.\n");
        if (v->rule)
            rc |= pages_text_line(out, ko ? "적용 규칙: " : "Rule: ", v->rule, "\n");
        break;
    case PAGE_ERROR:
        if (v->status > 0)
            rc |= evbuffer_add_printf(out, "%d ", v->status) < 0 ? -1 : 0;
        rc |= pages_text_line(out, "", v->title ? pages_text(v->title, v->lang) : "Error", "\n");
        if (v->detail)
            rc |= pages_text_line(out, "", pages_text(v->detail, v->lang), "\n");
        break;
    }
    return rc < 0 ? -1 : 0;
}

int
pages_prefers_korean(const char *v, size_t len)
{
    double best_q = -1;
    int best_ko = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t tag = i;
        while (i < len && v[i] != ';' && v[i] != ',' && v[i] != ' ')
            i++;
        size_t taglen = i - tag;
        double q = 1.0;
        while (i < len && v[i] != ',') {
            if (v[i] == 'q' && i + 1 < len && v[i + 1] == '=') {
                char num[8] = {0};
                size_t n = 0;
                for (i += 2; i < len && n < sizeof(num) - 1 &&
                             ((v[i] >= '0' && v[i] <= '9') || v[i] == '.');
                     i++)
                    num[n++] = v[i];
                q = atof(num);
                continue;
            }
            i++;
        }
        if (taglen == 0 || q <= 0)
            continue;
        int ko = taglen >= 2 && (v[tag] | 0x20) == 'k' && (v[tag + 1] | 0x20) == 'o' &&
                 (taglen == 2 || v[tag + 2] == '-');
        int en = taglen >= 2 && (v[tag] | 0x20) == 'e' && (v[tag + 1] | 0x20) == 'n' &&
                 (taglen == 2 || v[tag + 2] == '-');
        if ((ko || en) && q > best_q) {
            best_q = q;
            best_ko = ko;
        }
    }
    return best_ko;
}

/* Is the q parameter value s (n bytes) zero ("0", "0.", "0.000")? */
static int
pages_q_zero(const char *s, size_t n)
{
    if (n == 0 || s[0] != '0')
        return 0;
    if (n == 1)
        return 1;
    if (s[1] != '.')
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] != '0')
            return 0;
    return 1;
}

static void
pages_trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
}

int
pages_client_wants_html(const char *accept, size_t len)
{
    const char *end = accept + len, *el = accept;
    while (el < end) {
        const char *ee = memchr(el, ',', (size_t)(end - el));
        if (!ee)
            ee = end;
        const char *semi = memchr(el, ';', (size_t)(ee - el));
        const char *ts = el, *te = semi ? semi : ee;
        pages_trim(&ts, &te);
        int acceptable = te - ts == 9 && strncasecmp(ts, "text/html", 9) == 0;
        for (const char *ps = semi; acceptable && ps && ps < ee;) {
            const char *pe = memchr(ps + 1, ';', (size_t)(ee - ps - 1));
            const char *ns = ps + 1, *ne = pe ? pe : ee;
            const char *eq = memchr(ns, '=', (size_t)(ne - ns));
            if (eq) {
                const char *ks = ns, *ke = eq, *vs = eq + 1, *ve = ne;
                pages_trim(&ks, &ke);
                pages_trim(&vs, &ve);
                if (ke - ks == 1 && (*ks == 'q' || *ks == 'Q') &&
                    pages_q_zero(vs, (size_t)(ve - vs)))
                    acceptable = 0;
            }
            ps = pe;
        }
        if (acceptable)
            return 1;
        el = ee + 1;
    }
    return 0;
}
