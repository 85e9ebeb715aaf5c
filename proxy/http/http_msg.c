/*
 * Forwarded message heads: request line and Host rewrite, hop-by-hop field
 * removal, Via, Max-Forwards.
 *
 * The heads are written straight from the parsed buffer with one
 * evbuffer_add per piece; no field is copied or reformatted except the ones
 * we change (Host, Via, Max-Forwards, Connection).  Our Via is always the
 * last field, merged with any Via the message had, so there is exactly one.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "aigate/http/http_msg.h"

/* RFC 9110 7.6.1 plus the proxy-only fields and Keep-Alive's companion. */
/*
 * Connection-type fields of one head (there are rarely more than one or two;
 * past HOP_CONN_MAX the rest are ignored for naming extra hop-by-hop fields,
 * which are removed anyway when they are standard ones).
 */
#define HOP_CONN_MAX 16
struct hop_conn {
    unsigned idx[HOP_CONN_MAX];
    unsigned n;
};

static const char *const hop_by_hop[] = {
    "connection",         "keep-alive", "proxy-connection", "proxy-authorization",
    "proxy-authenticate", "te",         "trailer",          "upgrade",
};

static int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* 1 if the comma list at span list contains span name (case-insensitive). */
static int
list_has_span(const char *buf, struct http_span list, struct http_span name)
{
    const char *p = buf + list.off, *end = p + list.len;

    while (p < end) {
        const char *e = memchr(p, ',', (size_t)(end - p));
        const char *a = p, *b = e ? e : end;

        while (a < b && is_ows(*a))
            a++;
        while (b > a && is_ows(b[-1]))
            b--;
        if ((size_t)(b - a) == name.len && strncasecmp(a, buf + name.off, name.len) == 0)
            return 1;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return 0;
}

/* 1 if field i must not be forwarded: hop-by-hop or named in Connection. */
static int
is_hop(const char *buf, const struct http_head *h, const struct hop_conn *hc, unsigned i)
{
    struct http_span name = h->hdr[i].name;

    for (size_t k = 0; k < sizeof(hop_by_hop) / sizeof(hop_by_hop[0]); k++)
        if (http_span_ieq(buf, name, hop_by_hop[k]))
            return 1;
    for (unsigned j = 0; j < hc->n; j++)
        if (list_has_span(buf, h->hdr[hc->idx[j]].value, name))
            return 1;
    return 0;
}

/* Find the Connection / Proxy-Connection fields once per head (not once per header). */
static void
hop_conn_find(const char *buf, const struct http_head *h, struct hop_conn *hc)
{
    hc->n = 0;
    for (unsigned j = 0; j < h->nhdr && hc->n < HOP_CONN_MAX; j++) {
        struct http_span n = h->hdr[j].name;
        if (http_span_ieq(buf, n, "connection") || http_span_ieq(buf, n, "proxy-connection"))
            hc->idx[hc->n++] = j;
    }
}

static int
add_span(struct evbuffer *out, const char *buf, struct http_span s)
{
    return evbuffer_add(out, buf + s.off, s.len);
}

static int
add_str(struct evbuffer *out, const char *s)
{
    return evbuffer_add(out, s, strlen(s));
}

static int
add_field(struct evbuffer *out, const char *buf, const struct http_header *f)
{
    int rc = add_span(out, buf, f->name);

    rc |= evbuffer_add(out, ": ", 2);
    rc |= add_span(out, buf, f->value);
    rc |= evbuffer_add(out, "\r\n", 2);
    return rc;
}

/*
 * Via = #( received-protocol RWS received-by [ RWS comment ] ).  Comments may
 * hold commas, so elements are split outside parentheses only.  Returns 1 if
 * an element's received-by is us; *open (if not NULL) tells whether the value
 * ends inside a comment, where anything appended to it would be swallowed.
 */
static int
via_scan(const char *p, const char *end, int *open)
{
    static const size_t us_len = sizeof(HTTP_MSG_VIA_NAME) - 1;
    int found = 0, depth = 0;

    while (p < end) {
        const char *a;

        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        while (p < end && !is_ows(*p) && *p != ',')
            p++; /* received-protocol */
        while (p < end && is_ows(*p))
            p++;
        for (a = p; p < end && !is_ows(*p) && *p != ','; p++)
            ;
        if ((size_t)(p - a) == us_len && strncasecmp(a, HTTP_MSG_VIA_NAME, us_len) == 0)
            found = 1;
        for (; p < end && (depth > 0 || *p != ','); p++) {
            if (*p == '(')
                depth++;
            else if (*p == ')' && depth > 0)
                depth--;
            else if (*p == '\\' && depth > 0 && p + 1 < end)
                p++;
        }
    }
    if (open != NULL)
        *open = depth > 0;
    return found;
}

/*
 * One Via: the message's Via values, then ours.  A value that leaves a
 * comment open is dropped: it would swallow our element, and the next aigate
 * on a loop would not see it.
 */
static int
add_via(struct evbuffer *out, const char *buf, const struct http_head *h)
{
    int rc = add_str(out, "Via: "), open;

    for (unsigned i = 0; i < h->nhdr; i++) {
        const char *v = buf + h->hdr[i].value.off;

        if (!http_span_ieq(buf, h->hdr[i].name, "via") || h->hdr[i].value.len == 0)
            continue;
        (void)via_scan(v, v + h->hdr[i].value.len, &open);
        if (open)
            continue;
        rc |= add_span(out, buf, h->hdr[i].value);
        rc |= evbuffer_add(out, ", ", 2);
    }
    rc |= add_str(out, "1.1 " HTTP_MSG_VIA_NAME "\r\n");
    return rc;
}

/* 1 if name is the name of one of set[0..n). */
static int
is_set(const char *buf, struct http_span name, const struct http_msg_field *set, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (http_span_ieq(buf, name, set[k].name))
            return 1;
    return 0;
}

/* The WebSocket upgrade, as forwarded each way (RFC 6455 4.1, 4.2.2). */
static const char ws_upgrade[] = "Connection: Upgrade\r\nUpgrade: websocket\r\n";

int
http_msg_request_head(struct evbuffer *out, const char *buf, const struct http_head *h,
                      const struct http_url *u, const struct http_msg_field *set, size_t nset,
                      int websocket)
{
    int rc, maxfwd = -1, mf_done = 0;

    rc = add_span(out, buf, h->method);
    rc |= evbuffer_add(out, " ", 1);
    if (u->path.len == 0 || buf[u->path.off] != '/')
        rc |= evbuffer_add(out, "/", 1);
    rc |= add_span(out, buf, u->path);
    rc |= add_str(out, " HTTP/1.1\r\nHost: ");
    if (u->host_is_v6)
        rc |= evbuffer_add_printf(out, "[%s]", u->host) < 0;
    else
        rc |= add_str(out, u->host);
    if (!((u->port == 80 && strcmp(u->scheme, "http") == 0) ||
          (u->port == 443 && strcmp(u->scheme, "https") == 0)))
        rc |= evbuffer_add_printf(out, ":%u", (unsigned)u->port) < 0;
    rc |= evbuffer_add(out, "\r\n", 2);

    if (http_span_ieq(buf, h->method, "OPTIONS") || http_span_ieq(buf, h->method, "TRACE"))
        maxfwd = http_msg_max_forwards(buf, h);

    struct hop_conn hc;
    hop_conn_find(buf, h, &hc);
    for (unsigned i = 0; i < h->nhdr; i++) {
        struct http_span n = h->hdr[i].name;
        if (http_span_ieq(buf, n, "host") || http_span_ieq(buf, n, "via") ||
            is_hop(buf, h, &hc, i) || is_set(buf, n, set, nset))
            continue;
        if (maxfwd >= 0 && http_span_ieq(buf, n, "max-forwards")) {
            if (!mf_done)
                rc |= evbuffer_add_printf(out, "Max-Forwards: %d\r\n",
                                          maxfwd > 0 ? maxfwd - 1 : 0) < 0;
            mf_done = 1;
            continue;
        }
        rc |= add_field(out, buf, &h->hdr[i]);
    }
    for (size_t k = 0; k < nset; k++) {
        rc |= add_str(out, set[k].name);
        rc |= evbuffer_add(out, ": ", 2);
        rc |= add_str(out, set[k].value);
        rc |= evbuffer_add(out, "\r\n", 2);
    }
    rc |= add_via(out, buf, h);
    if (websocket)
        rc |= add_str(out, ws_upgrade);
    rc |= evbuffer_add(out, "\r\n", 2);
    return rc ? -1 : 0;
}

/* A response's status line, its end-to-end fields (not Transfer-Encoding when dechunk), Via. */
static int
add_response(struct evbuffer *out, const char *buf, const struct http_head *h, int dechunk)
{
    char status[16];
    int rc;

    snprintf(status, sizeof(status), "HTTP/1.1 %03d ", h->status);
    rc = add_str(out, status);
    rc |= add_span(out, buf, h->reason);
    rc |= evbuffer_add(out, "\r\n", 2);
    struct hop_conn hc;
    hop_conn_find(buf, h, &hc);
    for (unsigned i = 0; i < h->nhdr; i++) {
        struct http_span n = h->hdr[i].name;
        if (http_span_ieq(buf, n, "via") || is_hop(buf, h, &hc, i))
            continue;
        if (dechunk && http_span_ieq(buf, n, "transfer-encoding"))
            continue;
        rc |= add_field(out, buf, &h->hdr[i]);
    }
    rc |= add_via(out, buf, h);
    return rc;
}

int
http_msg_response_head(struct evbuffer *out, const char *buf, const struct http_head *h,
                       int client_minor, int keep_alive, int dechunk)
{
    int rc = add_response(out, buf, h, dechunk);
    if (!keep_alive)
        rc |= add_str(out, "Connection: close\r\n");
    else if (client_minor == 0)
        rc |= add_str(out, "Connection: keep-alive\r\n");
    rc |= evbuffer_add(out, "\r\n", 2);
    return rc ? -1 : 0;
}

int
http_msg_ws_switch_head(struct evbuffer *out, const char *buf, const struct http_head *h)
{
    int rc = add_response(out, buf, h, 0);
    rc |= add_str(out, ws_upgrade);
    rc |= evbuffer_add(out, "\r\n", 2);
    return rc ? -1 : 0;
}

/* 1 if h has Connection: upgrade and an Upgrade field listing "websocket". */
static int
ws_upgrade_named(const char *buf, const struct http_head *h)
{
    if (!h->has_upgrade)
        return 0;
    for (unsigned i = 0; i < h->nhdr; i++)
        if (http_span_ieq(buf, h->hdr[i].name, "upgrade") &&
            http_list_has(buf, h->hdr[i].value, "websocket"))
            return 1;
    return 0;
}

int
http_msg_ws_request(const char *buf, const struct http_head *h)
{
    return http_span_ieq(buf, h->method, "GET") && h->version_minor == 1 &&
           (h->body == HTTP_BODY_NONE || (h->body == HTTP_BODY_LENGTH && h->content_length == 0)) &&
           ws_upgrade_named(buf, h);
}

int
http_msg_ws_accepted(const char *buf, const struct http_head *h)
{
    return h->status == 101 && ws_upgrade_named(buf, h);
}

int
http_msg_via_has_us(const char *buf, const struct http_head *h)
{
    for (unsigned i = 0; i < h->nhdr; i++) {
        const struct http_header *f = &h->hdr[i];
        if (http_span_ieq(buf, f->name, "via") &&
            via_scan(buf + f->value.off, buf + f->value.off + f->value.len, NULL))
            return 1;
    }
    return 0;
}

int
http_msg_max_forwards(const char *buf, const struct http_head *h)
{
    int i = http_header_find(buf, h, "max-forwards");
    long long v = 0;

    if (i < 0 || h->hdr[i].value.len == 0)
        return -1;
    for (uint32_t k = 0; k < h->hdr[i].value.len; k++) {
        char c = buf[h->hdr[i].value.off + k];
        if (c < '0' || c > '9')
            return -1;
        if (v <= INT_MAX)
            v = v * 10 + (c - '0');
    }
    return v > INT_MAX ? INT_MAX : (int)v;
}
