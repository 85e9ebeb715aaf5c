/*
 * Serialising message heads for forwarding: a request to the origin and a
 * response back to the client, with hop-by-hop fields removed (RFC 9110
 * section 7.6.1), our Via added and Max-Forwards handled.
 *
 * All functions read the head in place (buf is the buffer the head was parsed
 * from, h its struct http_head) and append to an evbuffer; nothing is kept.
 * Bodies are forwarded as they are, so Content-Length and Transfer-Encoding
 * pass through (except when a chunked response is decoded for an HTTP/1.0
 * client).
 */
#ifndef AIGATE_HTTP_MSG_H
#define AIGATE_HTTP_MSG_H

#include <event2/buffer.h>

#include "aigate/http/http_parse.h"

/* the Via pseudonym we add and look for */
#define HTTP_MSG_VIA_NAME "aigate"

/* A header field to set on a forwarded request: NUL-terminated, checked by its owner. */
struct http_msg_field {
    const char *name;  /* an RFC 9110 token */
    const char *value; /* no CR, LF or NUL */
};

/*
 * Append "METHOD SP origin-form SP HTTP/1.1 CRLF", "Host:" from u (host,
 * "[v6]", ":port" unless the scheme's default; replaces the client's Host),
 * the client's fields in order minus hop-by-hop ones (Connection,
 * Keep-Alive, Proxy-Connection, Proxy-Authorization, Proxy-Authenticate, TE,
 * Trailer, Upgrade and every field named in Connection/Proxy-Connection),
 * Max-Forwards decremented for OPTIONS and TRACE, one Via with
 * "1.1 aigate" appended to earlier values, and the blank line.  The
 * origin-form is u->path ("/" when empty, "/" prefixed when it starts with
 * '?').  u's spans refer to buf.
 *
 * set[0..nset) (may be NULL when nset is 0) are fields the proxy sets
 * (SPEC 5b): each is written once, after the client's fields, and every
 * client field with one of their names (ASCII case-insensitive, however
 * many lines) is left out, so the client can neither override nor remove
 * them.  The caller guarantees names are distinct tokens and values hold no
 * CR, LF or NUL.
 *
 * websocket (a request http_msg_ws_request() accepts): the upgrade goes on,
 * as "Connection: Upgrade" and "Upgrade: websocket" (the Sec-WebSocket-*
 * fields are end-to-end and pass anyway).  0, or -1 if the evbuffer could
 * not grow.
 */
int http_msg_request_head(struct evbuffer *out, const char *buf, const struct http_head *h,
                          const struct http_url *u, const struct http_msg_field *set, size_t nset,
                          int websocket);

/*
 * Append "HTTP/1.1 STATUS REASON", the origin's fields minus hop-by-hop ones,
 * Via, and "Connection: close" when !keep_alive or "Connection: keep-alive"
 * when keep_alive for an HTTP/1.0 client (client_minor 0).  dechunk: the
 * caller sends the chunked body decoded and close-delimited (HTTP/1.0
 * client), so Transfer-Encoding is dropped.  0 or -1.
 */
int http_msg_response_head(struct evbuffer *out, const char *buf, const struct http_head *h,
                           int client_minor, int keep_alive, int dechunk);

/*
 * Append the 101 that switches the client to the WebSocket the origin's 101
 * h agreed to: its status line and fields minus hop-by-hop ones (the
 * Sec-WebSocket-Accept, -Extensions and -Protocol fields pass), Via, then
 * "Connection: Upgrade" and "Upgrade: websocket".  0 or -1.
 */
int http_msg_ws_switch_head(struct evbuffer *out, const char *buf, const struct http_head *h);

/*
 * 1 if request head h is a WebSocket opening handshake (RFC 6455 4.1) the
 * proxy relays: GET, HTTP/1.1, no body (or an empty one), Connection naming "upgrade" and an
 * Upgrade field whose protocol list names "websocket".  Other upgrades are
 * not relayed (their Upgrade is stripped).  0 otherwise.
 */
int http_msg_ws_request(const char *buf, const struct http_head *h);

/* 1 if response head h is a 101 switching to "websocket" (Connection: upgrade included), else 0. */
int http_msg_ws_accepted(const char *buf, const struct http_head *h);

/* 1 if a Via element's received-by is our pseudonym (a forwarding loop), else 0. */
int http_msg_via_has_us(const char *buf, const struct http_head *h);

/*
 * The first Max-Forwards value (values beyond INT_MAX read as INT_MAX), or
 * -1 if there is none or it is not a plain decimal number.
 */
int http_msg_max_forwards(const char *buf, const struct http_head *h);

#endif
