/*
 * A client connection's life.  struct conn owns the client bufferevent, the
 * current request (struct req), the origin connection it is using, and one
 * timer.  conn_close() is the one teardown path; everything the connection
 * took is released there.
 *
 * States:
 *   CS_HEAD     waiting for (the rest of) a request head; header timeout
 *   CS_IDLE     keep-alive, no byte of the next request yet; idle timeout
 *   CS_AUTHWAIT a password is being verified off the loop (the head stays buffered)
 *   CS_UPSTREAM waiting for the origin connection (DNS, connect, pool)
 *   CS_FORWARD  request body up, response down, with back-pressure
 *   CS_TUNNEL   CONNECT relay (tunnel.c)
 *   CS_INSPECT  waiting for the request body a dlp rule needs (the head stays buffered)
 *   CS_LOCALBODY reading the body of a request the proxy answers itself (the ack form)
 *   CS_ACKWAIT  the acknowledgement is being recorded on disk (caution.c answers when it is)
 *   CS_CLOSING  flushing a final response, then closed
 */
#ifndef AIGATE_CONN_H
#define AIGATE_CONN_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include "aigate/http_parse.h"

struct evbuffer;

struct worker;
struct config;
struct upstream;
struct upstream_req;
struct service;
struct policy_rule;
struct tunnel_splice;
struct caution_wait;

enum conn_state {
    CS_HEAD,
    CS_IDLE,
    CS_AUTHWAIT,
    CS_UPSTREAM,
    CS_FORWARD,
    CS_TUNNEL,
    CS_LOCALBODY,
    CS_ACKWAIT,
    CS_INSPECT,
    CS_CLOSING
};

/* One request/response exchange (or one CONNECT tunnel). */
struct req {
    struct http_url url;
    char method[24];
    int minor;
    unsigned keep_alive : 1, is_head : 1, is_connect : 1, body_done : 1, resp_head_done : 1,
        resp_done : 1, dechunk : 1, origin_keep : 1, retried : 1, expect_continue : 1,
        wants_html : 1, lang_ko : 1;
    enum http_body body;
    uint64_t body_left;
    struct http_chunk chunk;
    struct evbuffer *head; /* serialized head for the origin, kept for one retry */

    enum http_body rbody;
    uint64_t rleft;
    struct http_chunk rchunk;
    int status;

    /* decision */
    char user[128];
    const struct service *svc;
    const struct policy_rule *rule;
    const char *action;
    int is_ai;
    unsigned dlp_mask; /* personal data kinds found in the body */
    unsigned dlp_scanned : 1;
    unsigned audited : 1; /* its audit line is written (one per request, SPEC 7) */

    /* accounting */
    uint64_t bytes_in, bytes_out;
    uint64_t body_sent; /* request body bytes handed to the origin */
    struct timespec start;
    char *path; /* target path with query, for the audit log */
};

struct conn {
    TAILQ_ENTRY(conn) entry;
    struct worker *w;
    struct config *cfg;
    struct bufferevent *bev;
    struct sockaddr_storage peer;
    char peer_str[48];
    enum conn_state state;
    unsigned allowed : 1, client_eof : 1, up_eof : 1, client_shut : 1, up_shut : 1,
        timer_header : 1, held : 1, intercept : 1, dying : 1;
    /* intercept: the client side is TLS we terminated for this CONNECT target */
    char tls_host[256];
    uint16_t tls_port;
    unsigned tls_requests;        /* requests seen inside the intercepted connection */
    struct req *tunnel_req;       /* the CONNECT an intercepted connection started with */
    struct offload_job *auth_job; /* password verification in flight */
    struct tunnel_splice *splice; /* blind tunnel moved to splice(2) (tunnel.c) */
    int auth_verdict;             /* 1 ok, -1 refused, 0 none: for the header hashed below */
    uint64_t auth_verdict_hash;
    struct event *timer;
    long deadline_base_ms;
    size_t head_pending; /* bytes of the current head still in the input buffer */
    /*
     * A request whose body is awaited for inspection is parsed again as the
     * body arrives (CS_INSPECT); these survive the re-parse: when it started
     * (the audit line's ms) and whether we sent it "100 Continue".
     */
    struct timespec inspect_start;
    unsigned inspect_reparse : 1, continue_sent : 1;
    struct upstream_req *ureq;
    struct upstream *up;
    struct req *req;
    /* The acknowledgement being recorded (CS_ACKWAIT), owned by caution.c. */
    struct caution_wait *ack_wait;
};

struct conn *conn_new(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen);
/* The single teardown path; reason goes to the debug log. */
void conn_close(struct conn *c, const char *reason);
/* Shutdown: close idle connections now, let busy ones finish their exchange. */
void conn_drain_all(struct worker *w);
void conn_free_all(struct worker *w);

/* Used by tunnel.c. */
long conn_now_ms(struct conn *c);
void conn_touch(struct conn *c);
void conn_request_end(struct conn *c);
/* Answer with a response made by the proxy (extra: header lines ending in CRLF, or NULL). */
void conn_respond(struct conn *c, int status, const char *extra, const char *ctype,
                  struct evbuffer *body, int close_after);
/* Answer with an error page, Proxy-Status, audit line "error"; then next request or close. */
void conn_error(struct conn *c, int status, const char *perror, const char *title,
                const char *detail, const char *buf, const struct http_head *h, int close_after);
/* The current request's absolute URL (scheme, host, non-default port, path and query). */
void conn_request_url(const struct conn *c, char *out, size_t cap);
/* Write the request's audit line (no-op when the audit log is off). */
void conn_audit(struct conn *c, struct req *r, const char *action, int status);

#endif
