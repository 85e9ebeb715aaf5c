/*
 * One request/response exchange on a client connection (or one CONNECT), as
 * the request path sees it: what arrived, what was decided, what was sent.
 * Plain data, shared by the request path that owns it (pipeline.c) and the
 * modules it drives (exchange.c, inspect.c, caution.c); only the request
 * path creates and frees it.
 */
#ifndef AIGATE_REQUEST_H
#define AIGATE_REQUEST_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "aigate/audit/audit.h"
#include "aigate/http/http_parse.h"

struct evbuffer;
struct http_msg_field;
struct service;
struct policy_rule;

struct req {
    struct http_url url;
    char method[24];
    int minor;
    unsigned keep_alive : 1, is_head : 1, is_connect : 1, body_done : 1, resp_head_done : 1,
        dechunk : 1, origin_keep : 1, retried : 1, expect_continue : 1, continue_sent : 1,
        wants_html : 1, lang_ko : 1, https : 1, dlp_scanned : 1, audited : 1;
    /*
     * WebSocket (SPEC 6a): ws_upgrade, the request opens one (forwarded with
     * its upgrade); ws_inspect, its messages are to be inspected (a dlp rule
     * could decide: a 101 whose extensions cannot be read is refused);
     * upgraded, the origin switched and the exchange became a relay.
     */
    unsigned ws_upgrade : 1, ws_inspect : 1, upgraded : 1;
    enum http_body body;
    uint64_t body_left;
    struct http_chunk chunk;
    struct evbuffer *head; /* serialized head for the origin, kept for one retry */

    enum http_body rbody;
    uint64_t rleft;
    struct http_chunk rchunk;
    int status; /* sent to the client; -1 none yet */

    /* decision */
    char user[128];
    const struct service *svc;
    const struct policy_rule *rule;
    enum audit_action action; /* AUDIT_NONE until decided */
    int ack_state;            /* GATE_ACK_UNKNOWN/YES/NO: the store's answer, once asked */
    int is_ai;
    unsigned dlp_mask; /* personal data kinds found in the body (or in a blocked message) */
    /* headers the deciding rule sets on the forwarded request (SPEC 5b); the rule's */
    const struct http_msg_field *set_headers;
    size_t nset_headers;

    /* accounting */
    uint64_t bytes_in, bytes_out; /* what the client sent and received, heads included */
    uint64_t body_sent;           /* request body bytes handed to the origin */
    struct timespec start;
    char *path; /* target path with query, for the audit log and pages */
};

/*
 * A request for the head h parsed from buf: method, version, framing,
 * Accept and Accept-Language preferences, a WebSocket upgrade, the start
 * time.  keep_alive is
 * cleared when stopping.  NULL on out of memory.  Free with req_free().
 */
struct req *req_new(const char *buf, const struct http_head *h, int stopping);
/* A request that never got a valid head (for an error answer and its audit line). */
struct req *req_new_bad(size_t bytes_in);
void req_free(struct req *r);
/* Keep the target's path and query (bounded) for the audit log and the pages. */
void req_set_path(struct req *r, const char *buf);
/* The absolute URL: scheme (https when r->https), host, non-default port, path and query. */
void req_url(const struct req *r, char *out, size_t cap);

/* Why a request cannot be served as it came (a 400 answer). */
struct req_error {
    const char *title, *detail;
    int close; /* the connection cannot be kept after the answer */
};

/*
 * Take the request target of head h (in buf) into r->url and r->path:
 * absolute-form (http:// only; https goes through CONNECT), authority-form
 * for CONNECT, origin-form only inside an intercepted connection (tls_host:
 * its CONNECT's host and tls_port, NULL when not intercepting; an absolute
 * URL must name that host there).  Checks the Host lines: one at most,
 * naming the target's authority up to case and a default port (SPEC 12).
 * Sets r->https.  NULL when fine, else why not.
 */
const struct req_error *req_target(struct req *r, const char *buf, const struct http_head *h,
                                   const char *tls_host, uint16_t tls_port);

struct dlp;
/*
 * Write r's audit line (SPEC 7) with action and status (< 0: null), the
 * client's address and tls ("none", "tunnel", "intercept"); the dlp kinds
 * found are named by d.  No-op when a is NULL (audit log off).
 */
void req_audit_emit(struct audit *a, const struct req *r, const char *client, const char *tls,
                    const struct dlp *d, enum audit_action action, int status);

#endif
