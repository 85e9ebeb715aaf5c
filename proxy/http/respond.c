/*
 * Local responses (see respond.h).
 */
#include "aigate/http/respond.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/http/request.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/policy.h"

const char *
respond_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 303:
        return "See Other";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 405:
        return "Method Not Allowed";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 508:
        return "Loop Detected";
    default:
        return "Error";
    }
}

size_t
respond_raw(struct evbuffer *out, int status, const char *extra, const char *ctype,
            struct evbuffer *body, int keep, int head_only)
{
    size_t before = evbuffer_get_length(out);
    size_t blen = body ? evbuffer_get_length(body) : 0;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nServer: aigate\r\nContent-Type: %s\r\n"
                        "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
                        status, respond_reason(status), ctype ? ctype : "text/plain; charset=utf-8",
                        blen, extra ? extra : "", keep ? "" : "Connection: close\r\n");
    if (body && !head_only)
        evbuffer_add_buffer(out, body);
    return evbuffer_get_length(out) - before;
}

size_t
respond_page(struct evbuffer *out, const struct pages *pages, enum page_kind kind,
             const struct page_vars *v, int html, const char *extra, int keep, int head_only)
{
    struct evbuffer *body = evbuffer_new();
    const char *ctype = "text/plain; charset=utf-8";
    char hdrs[1024];
    if (!body)
        return 0;
    if (html && pages_render(body, pages, kind, v) == 0) {
        ctype = "text/html; charset=utf-8";
    } else {
        evbuffer_drain(body, evbuffer_get_length(body));
        pages_render_text(body, kind, v);
    }
    snprintf(hdrs, sizeof(hdrs), "%sContent-Language: %s\r\nVary: Accept, Accept-Language\r\n",
             extra ? extra : "", v->lang ? v->lang : "en");
    size_t n = respond_raw(out, v->status, hdrs, ctype, body, keep, head_only);
    evbuffer_free(body);
    return n;
}

static const char *
lang_of(const struct req *r)
{
    return r->lang_ko ? "ko" : "en";
}

size_t
respond_error(struct evbuffer *out, const struct pages *pages, const struct req *r, int status,
              const char *perror, const char *title, const char *detail, int keep)
{
    struct page_vars v = {0};
    char extra[400];
    v.status = status;
    v.title = title;
    v.detail = detail;
    v.lang = lang_of(r);
    v.host = r->url.host[0] ? r->url.host : NULL;
    v.method = r->method;
    snprintf(extra, sizeof(extra), "Proxy-Status: aigate; error=%s\r\n", perror);
    return respond_page(out, pages, PAGE_ERROR, &v, r->wants_html, extra, keep, r->is_head);
}

size_t
respond_block(struct evbuffer *out, const struct pages *pages, const struct req *r,
              const char *client, int keep)
{
    char extra[400], url[2048];
    struct page_vars v = {0};
    snprintf(extra, sizeof(extra),
             "Proxy-Status: aigate; error=http_request_denied; details=\"rule=%s\"\r\n",
             r->rule->name);
    req_url(r, url, sizeof(url));
    v.service = r->svc ? r->svc->name : r->url.host;
    v.user = r->user[0] ? r->user : client;
    v.rule = r->rule->name;
    v.reason = r->rule->reason;
    v.host = r->url.host;
    v.url = url;
    v.method = r->method;
    v.category = r->svc ? r->svc->category : NULL;
    v.status = 403;
    v.lang = lang_of(r);
    return respond_page(out, pages, PAGE_BLOCK, &v, r->wants_html, extra, keep, r->is_head);
}

size_t
respond_auth(struct evbuffer *out, const struct pages *pages, const struct req *r,
             const char *realm, unsigned schemes, int keep)
{
    char extra[400];
    struct page_vars v = {.status = 407,
                          .title = "Proxy authentication required",
                          .detail = "Sign in with your organisation account to use the web.",
                          .lang = lang_of(r)};
    snprintf(
        extra, sizeof(extra),
        "%s%s%.200s%s"
        "Proxy-Status: aigate; error=http_request_denied; details=\"authentication required\"\r\n",
        schemes & RESPOND_AUTH_NEGOTIATE ? "Proxy-Authenticate: Negotiate\r\n" : "",
        schemes & RESPOND_AUTH_BASIC ? "Proxy-Authenticate: Basic realm=\"" : "",
        schemes & RESPOND_AUTH_BASIC ? realm : "",
        schemes & RESPOND_AUTH_BASIC ? "\", charset=\"UTF-8\"\r\n" : "");
    return respond_page(out, pages, PAGE_ERROR, &v, r->wants_html, extra, keep, r->is_head);
}

size_t
respond_trace(struct evbuffer *out, const char *buf, const struct http_head *h, int keep,
              int head_only)
{
    struct evbuffer *body = evbuffer_new();
    if (body) {
        size_t line_end = h->hdr[0].name.off ? h->hdr[0].name.off : h->head_len - 2;
        evbuffer_add(body, buf, h->nhdr ? line_end : h->head_len - 2);
        for (unsigned i = 0; i < h->nhdr; i++) {
            if (http_span_ieq(buf, h->hdr[i].name, "Proxy-Authorization") ||
                http_span_ieq(buf, h->hdr[i].name, "Authorization") ||
                http_span_ieq(buf, h->hdr[i].name, "Cookie"))
                continue;
            evbuffer_add(body, buf + h->hdr[i].name.off, h->hdr[i].name.len);
            evbuffer_add(body, ": ", 2);
            evbuffer_add(body, buf + h->hdr[i].value.off, h->hdr[i].value.len);
            evbuffer_add(body, "\r\n", 2);
        }
        evbuffer_add(body, "\r\n", 2);
    }
    size_t n = respond_raw(out, 200, NULL, "message/http", body, keep, head_only);
    if (body)
        evbuffer_free(body);
    return n;
}

size_t
respond_see_other(struct evbuffer *out, const char *url, int keep)
{
    size_t ulen = strlen(url);
    char *extra = malloc(ulen + 16);
    struct evbuffer *b = evbuffer_new();
    if (extra)
        snprintf(extra, ulen + 16, "Location: %s\r\n", url);
    if (b)
        evbuffer_add_printf(b, "Acknowledged. Continue to %s\n", url);
    size_t n = respond_raw(out, 303, extra, NULL, b, keep, 0);
    free(extra);
    if (b)
        evbuffer_free(b);
    return n;
}
