/*
 * struct req: creation from a parsed head, the path kept for the audit log,
 * the absolute URL the pages show.
 */
#include "aigate/http/request.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/admin/metrics.h"
#include "aigate/http/http_msg.h"
#include "aigate/http/pages.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/dlp.h"
#include "aigate/rules/policy.h"

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
    r->ws_upgrade = http_msg_ws_request(buf, h);
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

/* Why a target is refused (req_target). */
static const struct req_error err_connect_inside = {
    "Bad request", "CONNECT inside an intercepted connection is not allowed.", 1};
static const struct req_error err_connect_target = {"Bad request",
                                                    "CONNECT needs a host:port target.", 1};
static const struct req_error err_not_proxy = {
    "Not a proxy request",
    "This is a proxy: requests must carry an absolute URL (http://host/path).", 0};
static const struct req_error err_bad_url = {"Bad request", "The request URL is invalid.", 0};
static const struct req_error err_other_host = {
    "Bad request", "The URL names another host than the connection.", 0};
static const struct req_error err_https_absolute = {
    "Bad request", "https:// URLs must be requested through CONNECT.", 0};
static const struct req_error err_two_hosts = {"Bad request",
                                               "The request carries more than one Host header.", 1};
static const struct req_error err_host_mismatch = {
    "Bad request", "The Host header names another site than the request target.", 1};

const struct req_error *
req_target(struct req *r, const char *buf, const struct http_head *h, const char *tls_host,
           uint16_t tls_port)
{
    if (r->is_connect) {
        r->https = 1;
        if (tls_host)
            return &err_connect_inside;
        if (http_url_parse_authority(buf, h->target, &r->url) < 0)
            return &err_connect_target;
        return NULL;
    }
    if (h->target.len == 0 || buf[h->target.off] == '/') {
        if (!tls_host || http_url_parse_origin(buf, h->target, &r->url) < 0)
            return &err_not_proxy;
        snprintf(r->url.scheme, sizeof(r->url.scheme), "https");
        snprintf(r->url.host, sizeof(r->url.host), "%s", tls_host);
        r->url.port = tls_port;
        r->url.host_is_v6 = strchr(tls_host, ':') != NULL;
    } else if (http_url_parse_absolute(buf, h->target, &r->url) < 0) {
        return &err_bad_url;
    } else if (tls_host && strcmp(r->url.host, tls_host) != 0) {
        return &err_other_host;
    } else if (!tls_host && strcmp(r->url.scheme, "http") != 0) {
        return &err_https_absolute;
    }
    r->https = tls_host != NULL;
    /* RFC 9112 3.2: one Host, naming the target's authority (SPEC 12). */
    int host_at = -1;
    for (unsigned i = 0; i < h->nhdr; i++) {
        if (!http_span_ieq(buf, h->hdr[i].name, "Host"))
            continue;
        if (host_at >= 0)
            return &err_two_hosts;
        host_at = (int)i;
    }
    if (host_at >= 0 && !http_host_matches(buf, h->hdr[host_at].value, r->url.host, r->url.port,
                                           tls_host ? 443 : 80))
        return &err_host_mismatch;
    req_set_path(r, buf);
    return NULL;
}

void
req_audit_emit(struct audit *au, const struct req *r, const char *client, const char *tls,
               const struct dlp *d, enum audit_action action, int status)
{
    if (!au)
        return;
    struct audit_rec a = {0};
    const char *names[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    a.ts = now;
    audit_new_id(a.id);
    a.client = client;
    a.user = r->user[0] ? r->user : NULL;
    a.method = r->method[0] ? r->method : NULL;
    a.port = -1;
    a.status = status;
    a.action = action;
    if (r->url.host[0]) {
        a.host = r->url.host;
        a.port = r->url.port;
        a.scheme = r->https ? "https" : r->url.scheme;
    }
    a.path = r->path;
    if (r->svc) {
        a.service = r->svc->id;
        a.category = r->svc->category;
    }
    a.rule = r->rule ? r->rule->name : NULL;
    a.bytes_in = (int64_t)r->bytes_in;
    a.bytes_out = (int64_t)r->bytes_out;
    a.ms = (int64_t)((now.tv_sec - r->start.tv_sec) * 1000 +
                     (now.tv_nsec - r->start.tv_nsec) / 1000000);
    if (r->dlp_mask) {
        a.ndlp = dlp_kinds(r->dlp_mask, d, names, 32);
        a.dlp = names;
    }
    a.tls = tls;
    a.upgrade = r->upgraded ? "websocket" : NULL;
    a.is_ai = r->is_ai;
    metrics_request_done(action, a.service, a.rule, status, a.ms);
    audit_emit(au, &a);
}
