/*
 * Responses the proxy makes itself: the status line and the fixed headers,
 * and the one "page or text" responder every local answer goes through (the
 * block, caution and error pages as HTML for browsers, their text/plain form
 * otherwise, in the client's language).  Writes into an evbuffer only: no
 * connection, no I/O.
 */
#ifndef AIGATE_RESPOND_H
#define AIGATE_RESPOND_H

#include <stddef.h>

#include "aigate/http/pages.h"

struct evbuffer;

/* The reason phrase for status ("Error" for one it does not know). */
const char *respond_reason(int status);

/*
 * Append a complete response to out: status line, Server, Content-Type
 * (text/plain when ctype is NULL), Content-Length, Cache-Control: no-store,
 * extra (header lines each ending CRLF, or NULL), Connection: close unless
 * keep; then body (emptied into out; NULL for none) unless head_only.
 * Returns the number of bytes appended.
 */
size_t respond_raw(struct evbuffer *out, int status, const char *extra, const char *ctype,
                   struct evbuffer *body, int keep, int head_only);

/*
 * Append the page kind rendered with v as a complete response with
 * v->status: HTML when html and the template renders, its text/plain form
 * otherwise; Content-Language (v->lang) and Vary: Accept, Accept-Language
 * are added to extra.  Returns the number of bytes appended (0 only when out
 * of memory).
 */
size_t respond_page(struct evbuffer *out, const struct pages *pages, enum page_kind kind,
                    const struct page_vars *v, int html, const char *extra, int keep,
                    int head_only);

struct req;
struct http_head;

/* The error page for r (status, RFC 9209 perror, title and detail in English: pages.h
 * translates them), as an HTML or text answer per r's Accept and Accept-Language. */
size_t respond_error(struct evbuffer *out, const struct pages *pages, const struct req *r,
                     int status, const char *perror, const char *title, const char *detail,
                     int keep);
/* 403 with the block page for r decided by r->rule (client: shown when r has no user). */
size_t respond_block(struct evbuffer *out, const struct pages *pages, const struct req *r,
                     const char *client, int keep);
/* Schemes a 407 offers (bits of respond_auth()'s schemes). */
#define RESPOND_AUTH_BASIC (1u << 0)     /* Proxy-Authenticate: Basic realm="…" */
#define RESPOND_AUTH_NEGOTIATE (1u << 1) /* Proxy-Authenticate: Negotiate (SPEC 9) */

/* 407 asking to sign in with schemes (RESPOND_AUTH_*), Negotiate first: clients take the
 * first they support, and one with a Kerberos ticket should not be asked for a password. */
size_t respond_auth(struct evbuffer *out, const struct pages *pages, const struct req *r,
                    const char *realm, unsigned schemes, int keep);
/* 200 echoing the head h (in buf) as message/http, without credentials or cookies (TRACE). */
size_t respond_trace(struct evbuffer *out, const char *buf, const struct http_head *h, int keep,
                     int head_only);
/* 303 to url (Location) with a short text body. */
size_t respond_see_other(struct evbuffer *out, const char *url, int keep);

#endif
