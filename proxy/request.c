/*
 * struct req: creation from a parsed head, the path kept for the audit log,
 * the absolute URL the pages show.
 */
#include "aigate/request.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/pages.h"

/* Longest path (with query) kept for the audit log and the pages. */
#define REQ_PATH_MAX 8192

struct req *
req_new(const char *buf, const struct http_head *h, int stopping)
{
    struct req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    clock_gettime(CLOCK_REALTIME, &r->start);
    size_t ml = h->method.len < sizeof(r->method) - 1 ? h->method.len : sizeof(r->method) - 1;
    memcpy(r->method, buf + h->method.off, ml);
    r->minor = h->version_minor;
    r->keep_alive = h->keep_alive && !stopping;
    r->is_head = h->is_head;
    r->is_connect = h->is_connect;
    r->body = h->body;
    r->body_left = h->content_length;
    r->expect_continue = h->expect_continue;
    r->bytes_in = h->head_len;
    r->status = -1;
    int i = http_header_find(buf, h, "Accept");
    r->wants_html =
        i >= 0 && pages_client_wants_html(buf + h->hdr[i].value.off, h->hdr[i].value.len);
    i = http_header_find(buf, h, "Accept-Language");
    r->lang_ko = i >= 0 && pages_prefers_korean(buf + h->hdr[i].value.off, h->hdr[i].value.len);
    if (r->body == HTTP_BODY_NONE || (r->body == HTTP_BODY_LENGTH && r->body_left == 0))
        r->body_done = 1;
    return r;
}

struct req *
req_new_bad(size_t bytes_in)
{
    struct req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    clock_gettime(CLOCK_REALTIME, &r->start);
    r->bytes_in = bytes_in;
    r->status = -1;
    r->body_done = 1;
    return r;
}

void
req_free(struct req *r)
{
    if (!r)
        return;
    if (r->head)
        evbuffer_free(r->head);
    free(r->path);
    free(r);
}

void
req_set_path(struct req *r, const char *buf)
{
    size_t len = r->url.path.len;
    if (len > REQ_PATH_MAX)
        len = REQ_PATH_MAX;
    free(r->path);
    if (!(r->path = malloc(len + 2)))
        return;
    if (len == 0) {
        strcpy(r->path, "/");
        return;
    }
    memcpy(r->path, buf + r->url.path.off, len);
    r->path[len] = '\0';
}

void
req_url(const struct req *r, char *out, size_t cap)
{
    const char *scheme = r->https ? "https" : r->url.scheme;
    unsigned defport = strcmp(scheme, "https") == 0 ? 443 : 80;
    char port[8] = "";
    if (r->url.port != defport)
        snprintf(port, sizeof(port), ":%u", r->url.port);
    snprintf(out, cap, "%s://%s%s%s%s", scheme, r->url.host_is_v6 ? "[" : "", r->url.host,
             r->url.host_is_v6 ? "]" : "", port);
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "%s", r->path && r->path[0] ? r->path : "/");
}
