/*
 * A client connection: the socket (and, intercepted, the TLS we terminate on
 * it), its peer (the PROXY header's client behind a trusted balancer), its
 * timers, keep-alive, and the one teardown.  What the bytes mean is its
 * owner's business: the request path (pipeline.h) hears of the connection
 * only through struct conn_ops, and drives it through the calls below.
 *
 * The stage says where the request in progress is; the pipeline moves it
 * (see pipeline.h for the request stages), the connection reads only a few
 * of them:
 *
 *   CS_PROXYHDR  a trusted balancer's PROXY header comes first (read here)
 *   CS_IDLE      keep-alive, no byte of the next request yet; idle timeout
 *   CS_HEAD      a head is being read; header timeout
 *   CS_HELD      a 407 held back after repeated failures (auth back-off)
 *   CS_CLOSING   flushing a final response, then closed
 *
 * Invariant: every path that ends a connection goes through conn_close(),
 * which first lets the owner end what is in flight (closing), and nothing
 * frees a connection while a caller up the stack still holds it: deep in
 * the pipeline conn_fail() closes it from the loop instead.
 */
#ifndef AIGATE_CONN_H
#define AIGATE_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

struct worker;
struct config;
struct req;
struct http_head;
struct identity_wait;
struct dirgroups_req;
struct conn_groups;
struct inspect;
struct caution_wait;
struct ack_lookup;
struct exchange;
struct tunnel;
struct wsrelay;
struct upstream;
struct upstream_req;
struct event;
struct evbuffer;
struct bufferevent;
struct ssl_st;
struct conn;

enum conn_stage {
    CS_PROXYHDR,
    CS_IDLE,
    CS_HEAD,
    CS_IDENTITY,
    CS_GROUPS,
    CS_BODY,
    CS_ACKSTATE,
    CS_LOCALBODY,
    CS_ACKWAIT,
    CS_UPSTREAM,
    CS_FORWARD,
    CS_TUNNEL,
    CS_HELD,
    CS_CLOSING
};

enum conn_timeout {
    CONN_TIMEOUT_HEADER, /* the head did not arrive within limits.header_timeout_ms */
    CONN_TIMEOUT_IDLE,   /* nothing moved for limits.idle_timeout_ms */
    CONN_TIMEOUT_HELD,   /* the hold set by conn_hold() is over */
};

/*
 * What the owner hears, from the connection's callbacks (never from inside
 * one of the calls below): bytes to read, output drained, the client's EOF
 * (c->client_eof is set), a deadline, and the teardown (closing: end what
 * is in flight; the connection is freed right after it returns).
 */
struct conn_ops {
    void (*readable)(struct conn *c);
    void (*writable)(struct conn *c);
    void (*eof)(struct conn *c);
    void (*timeout)(struct conn *c, enum conn_timeout why);
    void (*closing)(struct conn *c);
};

struct conn {
    TAILQ_ENTRY(conn) entry;
    struct worker *w;
    struct config *cfg;
    const struct conn_ops *ops;
    struct bufferevent *bev;
    struct sockaddr_storage peer;
    char peer_str[48];
    enum conn_stage stage;
    unsigned allowed : 1, client_eof : 1, timer_header : 1, intercept : 1, dying : 1,
        tls_failed : 1;
    struct event *timer;
    long deadline_base_ms;
    const char *failing; /* closing from the loop for this reason (conn_fail) */

    /* intercept: the client side is TLS we terminated for this CONNECT target */
    char tls_host[256];
    uint16_t tls_port;
    unsigned tls_requests;  /* requests seen inside the intercepted connection */
    struct req *tunnel_req; /* the CONNECT an intercepted connection started with */
    char *auth_user;        /* the user a Negotiate token authenticated this connection as */

    /* the request in progress and what it is waiting for (the pipeline's) */
    struct req *req;
    struct http_head *head; /* its parsed head (the parser's state while reading it) */
    size_t head_pending;    /* bytes of that head still at the start of the input buffer */
    struct identity_wait *idwait;
    char *auth_reply; /* the Negotiate mutual-authentication token for this request's answer */
    struct dirgroups_req *dgreq;
    struct conn_groups *groups; /* the user's groups, config and directory, once read */
    struct inspect *inspect;
    struct caution_wait *ackwait;
    struct ack_lookup *acklookup;
    struct exchange *x;
    struct tunnel *tunnel;
    struct wsrelay *wsr;       /* a WebSocket whose messages are inspected */
    struct upstream_req *ureq; /* CONNECT: the origin connection being made */
    struct upstream *up;       /* CONNECT, WebSocket: the origin connection */
};

/*
 * A new connection on fd (taken: closed on failure) of worker w, reporting
 * to ops; NULL when out of memory.  A peer in proxy_protocol starts in
 * CS_PROXYHDR, any other in CS_HEAD; the header timeout runs.
 */
struct conn *conn_new(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
                      const struct conn_ops *ops);
/* The single teardown; reason goes to the debug log.  ops->closing runs first. */
void conn_close(struct conn *c, const char *reason);
/* Close from the loop (nothing up the stack may hold c afterwards): out of memory and the like. */
void conn_fail(struct conn *c, const char *reason);
/* Shutdown: close idle connections now, let busy ones finish their exchange. */
void conn_drain_all(struct worker *w);
void conn_free_all(struct worker *w);

/* Deadlines: the header's (fixed from now), the idle one (pushed back by conn_touch). */
void conn_timer_header(struct conn *c);
void conn_timer_idle(struct conn *c);
/* Something moved (arg: the connection): the idle deadline starts again. */
void conn_touch(void *arg);
/* Hold what was written for ms (a 407 after failures); ops->timeout(HELD) when over. */
void conn_hold(struct conn *c, unsigned ms);

/* Hand out (emptied) to the client in one piece (one TLS record when intercepted); counted. */
void conn_send(struct conn *c, struct evbuffer *out);
/* Drop the current head (c->head_pending bytes) from the input, once. */
void conn_drain_head(struct conn *c);
/*
 * The exchange is over: with keep, wait for the next request (one already
 * buffered is read from the loop); else close once the answer has left.
 */
void conn_finish(struct conn *c, int keep);
/* Terminate the client's TLS with ssl (taken, even on failure): 0, or -1 (then conn_fail'd). */
int conn_start_tls(struct conn *c, struct ssl_st *ssl);
/* The connection's own callbacks on its bufferevent again (after a relay had them). */
void conn_own_bev(struct conn *c);

#endif
