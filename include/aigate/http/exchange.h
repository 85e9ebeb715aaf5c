/*
 * One request forwarded to its origin and the response relayed back: get
 * an origin connection (upstream.h), send the head (r->head), stream the
 * request body up and the response down with back-pressure, de-chunk for
 * HTTP/1.0 clients, retry once on a pooled connection the origin had
 * closed.  The connection that owns the request drives it
 * (exchange_client_readable/writable when its bufferevent is) and learns the
 * outcome only through ops, from the event loop, never from inside
 * exchange_start():
 *
 *   activity  any number of times (bytes moved: the owner's idle timer)
 *   done      once: the response went out completely (r->status and
 *             r->keep_alive are final; the origin connection is back in the
 *             pool or closed)
 *   failed    once, instead of done: nothing of the response reached the
 *             client; the owner answers with an error page (e says which)
 *   aborted   once, instead of done: the response had started; the owner
 *             can only close the connection
 *   upgraded  once, instead of done: the request opened a WebSocket
 *             (r->ws_upgrade) and the origin switched to it (a 101 with
 *             Upgrade: websocket, SPEC 6a).  The 101 went to the client
 *             (r->status 101, r->upgraded set); the origin connection u,
 *             with whatever followed the 101 still in its input, is the
 *             owner's now: its callbacks are cleared and it is disabled,
 *             and it is never reusable (upstream_release(u, 0)).  pmd is
 *             the permessage-deflate the 101 agreed to (off when none).
 *             With r->ws_inspect a 101 agreeing to any other extension,
 *             whose frames could not be read, is refused instead (failed,
 *             502): the client never sees it.
 *
 * After done/failed/aborted/upgraded the owner calls exchange_free().  Freeing an
 * exchange at any other time (timeout, client gone, shutdown) cancels it and
 * closes the origin connection.
 */
#ifndef AIGATE_EXCHANGE_H
#define AIGATE_EXCHANGE_H

#include <stddef.h>

struct bufferevent;
struct evbuffer;
struct exchange;
struct req;
struct ssl_ctx_st;
struct upstream;
struct upstream_pool;
struct ws_deflate;

struct exchange_error {
    int status;         /* 400, 502, 504, 508 */
    const char *perror; /* RFC 9209 Proxy-Status error (with details when any) */
    const char *title, *detail;
    int close; /* the connection cannot be kept (a body is unread or half-sent) */
};

struct exchange_ops {
    void (*activity)(void *arg);
    void (*done)(void *arg);
    void (*failed)(void *arg, const struct exchange_error *e);
    void (*aborted)(void *arg, const char *why);
    void (*upgraded)(void *arg, struct upstream *u, const struct ws_deflate *pmd);
};

struct exchange_env {
    struct upstream_pool *pool;
    struct evbuffer *scratch; /* builds response heads */
    size_t max_head;          /* limits.max_header_bytes */
    const int *stopping;      /* the worker is shutting down: no keep-alive */
};

/*
 * Forward r (whose serialized head is r->head and whose body, if any, is
 * still in client's input) to r->url's origin, over TLS with tls (a client
 * context) or in the clear.  NULL on out of memory.
 */
struct exchange *exchange_start(const struct exchange_env *env, struct req *r,
                                struct bufferevent *client, struct ssl_ctx_st *tls,
                                const struct exchange_ops *ops, void *arg);
void exchange_free(struct exchange *x);
/* The client sent more bytes / drained its output / sent EOF (client_eof: no more will come). */
void exchange_client_readable(struct exchange *x);
void exchange_client_writable(struct exchange *x);
void exchange_client_eof(struct exchange *x);

/*
 * Before the origin sees the body: 1 if the chunked body bytes that already
 * arrived in buf are well framed so far (a malformed body that came with its
 * head is refused before anything is forwarded).
 */
int exchange_chunked_prefix_ok(struct evbuffer *in, const struct req *r);

#endif
