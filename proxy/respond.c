/*
 * Local responses (see respond.h).
 */
#include "aigate/respond.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

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
