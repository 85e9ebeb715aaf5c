/*
 * A client connection: the owner of everything a request needs, and the
 * request path as a pipeline.  Each request moves through stages and
 * resumes where it waited, never from the start:
 *
 *   CS_PROXYHDR  a connection from a trusted balancer (proxy_protocol): its
 *                PROXY header, which names the real client, comes first;
 *                header timeout
 *   CS_IDLE      keep-alive, no byte of the next request yet; idle timeout
 *   CS_HEAD      reading a head; the parser keeps its place across reads
 *                (c->head), so a head that trickles in costs O(n); header
 *                timeout
 *   CS_IDENTITY  who is asking is being checked off the loop (identity.h);
 *                the head stays in the input buffer, parsed
 *   CS_GROUPS    the directory's groups for the user are being read (ldap,
 *                dirgroups.h): a cached answer costs no wait; a lookup is
 *                answered by its callback, at the latest at ldap.timeout_ms
 *   CS_BODY      the body a dlp rule needs is arriving (inspect.h): only the
 *                new bytes are looked at
 *   CS_ACKSTATE  a warn rule matched: the acknowledgement store is asked
 *                whether this user acknowledged the service (ack.h; a shared
 *                store answers over the network)
 *   CS_LOCALBODY reading the body of a request the proxy answers itself (the
 *                caution page's acknowledgement form)
 *   CS_ACKWAIT   the acknowledgement is being recorded (caution.h)
 *   CS_UPSTREAM  a CONNECT waits for its origin connection (upstream.h)
 *   CS_FORWARD   the request is with its origin (exchange.h)
 *   CS_TUNNEL    CONNECT relay (tunnel.h), or a WebSocket after the origin's
 *                101: relayed like a tunnel, or through wsrelay.h when a dlp
 *                rule could decide (its request's line is written when it
 *                ends)
 *   CS_HELD      a 407 held back after repeated failures (auth back-off)
 *   CS_CLOSING   flushing a final response, then closed
 *
 * Negotiate (Kerberos) authenticates the connection, not the request: the
 * user a token proved is kept (auth_user) and its later requests, and the
 * inner requests of its intercepted tunnel, are that user's (SPEC 9).
 *
 * Lower layers (identity, dirgroups, inspect, caution, exchange, tunnel,
 * wsrelay, upstream) report to the connection by callback; none of them
 * calls the connection by name.  Every request ends in one place, which
 * writes its one audit line (SPEC 7), also when the connection is torn down
 * mid-request; and a connection ends only in conn_close(), which logs why at
 * debug level.
 */
#ifndef AIGATE_CONN_H
#define AIGATE_CONN_H

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
struct bufferevent;

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

struct conn {
    TAILQ_ENTRY(conn) entry;
    struct worker *w;
    struct config *cfg;
    struct bufferevent *bev;
    struct sockaddr_storage peer;
    char peer_str[48];
    enum conn_stage stage;
    unsigned allowed : 1, client_eof : 1, timer_header : 1, intercept : 1, dying : 1;
    struct event *timer;
    long deadline_base_ms;
    const char *failing; /* closing from the loop for this reason (conn_fail) */

    /* intercept: the client side is TLS we terminated for this CONNECT target */
    char tls_host[256];
    uint16_t tls_port;
    unsigned tls_requests;  /* requests seen inside the intercepted connection */
    struct req *tunnel_req; /* the CONNECT an intercepted connection started with */
    char *auth_user;        /* the user a Negotiate token authenticated this connection as */

    /* the request in progress and what it is waiting for */
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

/* A new connection on fd (taken: closed on failure) of worker w; NULL when out of memory. */
struct conn *conn_new(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen);
/* The single teardown; reason goes to the debug log.  A request in flight gets its audit line. */
void conn_close(struct conn *c, const char *reason);
/* Shutdown: close idle connections now, let busy ones finish their exchange. */
void conn_drain_all(struct worker *w);
void conn_free_all(struct worker *w);

#endif
