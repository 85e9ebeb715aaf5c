/*
 * The gate: what happens to one request, as data.
 *
 * gate_decide() takes what is known about a request (client, user and
 * groups, method, URL, body scan result, acknowledgement state, local time)
 * and answers with a verdict: the action, the rule that decided, the
 * service, the page to show, the headers to add, the acknowledgement TTL,
 * the tls.warn_fallback outcome, and what more it needs before it can
 * decide.  The live proxy (pipeline.c), the acknowledgement handling
 * (caution.c) and `--explain` (explain.c) all ask it, so they cannot
 * disagree.
 *
 * Pure: no sockets, no event loop, no clock (the caller passes the local
 * time), no globals, no allocation.  Everything it reads is borrowed for the
 * duration of the call; the pointers it hands back (rule, service, headers)
 * live as long as the catalog and policy in struct gate_cfg.
 */
#ifndef AIGATE_GATE_H
#define AIGATE_GATE_H

#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "aigate/http/http_parse.h"
#include "aigate/rules/policy.h"

struct catalog;
struct config;
struct http_msg_field;
struct service;

/* What the gate reads from the configuration (borrowed from a snapshot). */
struct gate_cfg {
    const struct catalog *catalog;
    const struct policy *policy;
    int auth_required;       /* auth.mode asks for credentials (basic, negotiate) */
    int intercept;           /* tls.intercept */
    int warn_fallback_block; /* tls.warn_fallback = "block" */
    int ack_ttl_s;           /* ack.ttl_s */
    int directory_groups;    /* groups also come from the directory (ldap, SPEC 9) */
};

/* Fill g from a loaded config snapshot; g borrows from cfg. */
void gate_cfg_init(struct gate_cfg *g, const struct config *cfg);

/* Where a request's groups came from (bits of gate_req.groups_from). */
#define GATE_GROUPS_CONFIG (1u << 0)    /* the config's `groups` */
#define GATE_GROUPS_DIRECTORY (1u << 1) /* the directory (LDAP), once looked up */

/* Has (user, service) acknowledged the caution page, as far as the caller knows. */
enum gate_ack { GATE_ACK_UNKNOWN, GATE_ACK_YES, GATE_ACK_NO };

struct gate_req {
    const struct sockaddr *client;
    const char *user;  /* NULL: anonymous */
    int authenticated; /* user proved by credentials (or inherited from the CONNECT) */
    const char *const *groups;
    size_t ngroups;
    unsigned groups_from; /* GATE_GROUPS_* sources that groups holds */
    const char *method;   /* "GET", "CONNECT", ... */
    int connect;          /* the request is a CONNECT (url is authority-form) */
    /*
     * The target as the live parser left it (http_parse.h): host, port and
     * scheme ("http", "https" for a request inside an intercepted
     * connection, "" for a CONNECT); url->pathname and url->query point into
     * buf.
     */
    const struct http_url *url;
    const char *buf;
    int has_body;           /* a request body is still to come or in the buffer */
    int body_scanned;       /* dlp_found holds the scan of that body */
    unsigned dlp_found;     /* POLICY_DLP_* kinds found */
    enum gate_ack ack;      /* for (user or @client, service) */
    const struct tm *local; /* local time of the request */
};

enum gate_action {
    GATE_ALLOW,       /* forward (or, for an intercepting CONNECT, intercept) */
    GATE_BLOCK,       /* 403 with the block page */
    GATE_WARN,        /* 403 with the caution page */
    GATE_ACK,         /* the caution page's POST to GATE_ACK_PATH: the proxy answers it */
    GATE_AUTH_NEEDED, /* 407: credentials are required and missing */
    GATE_ERROR,       /* the request cannot be decided (no host) */
};

enum gate_page { GATE_PAGE_NONE, GATE_PAGE_BLOCK, GATE_PAGE_CAUTION };

/* How the request travels with respect to TLS (the audit "tls" field). */
enum gate_tls {
    GATE_TLS_NONE,      /* plain HTTP */
    GATE_TLS_TUNNEL,    /* a CONNECT tunnelled blind */
    GATE_TLS_INTERCEPT, /* a CONNECT that is intercepted, or a request inside one */
};

/*
 * What became of a rule that cannot act on a CONNECT that is not
 * intercepted: tls.warn_fallback applied to a warn (BLOCK or ALLOW), or a
 * rule with add_headers that would let the tunnel through refused (HEADERS:
 * the restriction cannot be enforced blind, SPEC 5b).
 */
enum gate_fallback {
    GATE_FALLBACK_NONE,
    GATE_FALLBACK_BLOCK,
    GATE_FALLBACK_ALLOW,
    GATE_FALLBACK_HEADERS,
};

/* What the gate needs before its decision is final (bits of gate_verdict.needs). */
#define GATE_NEED_GROUPS (1u << 0)    /* the directory's groups for the user */
#define GATE_NEED_BODY (1u << 1)      /* the body's dlp scan: a dlp rule could decide */
#define GATE_NEED_ACK_STATE (1u << 2) /* whether (user, service) acknowledged */

struct gate_verdict {
    enum gate_action action;
    unsigned needs;                 /* GATE_NEED_*; 0 = final */
    const struct policy_rule *rule; /* the deciding rule, NULL if none (or not evaluated) */
    const struct service *service;  /* the catalogued service, NULL if none */
    enum gate_page page;
    enum gate_tls tls;
    enum gate_fallback fallback;
    int request_visible; /* method, path, query and body conditions could be evaluated */
    int ai;              /* AI-related traffic (audit.scope = "ai" logs it) */
    int ack_ttl_s;       /* how long an acknowledgement of this rule lasts */
    /*
     * The deciding rule's add_headers when the request is forwarded under
     * it (GATE_ALLOW, request_visible): set them on the forwarded head,
     * replacing the client's (http_msg_request_head).  Owned by the rule.
     */
    const struct http_msg_field *headers;
    size_t nheaders;
};

#define GATE_ACK_PATH "/__aigate/ack"

/*
 * Decide r under g into *v.  Always fills the whole verdict.
 *
 * v->needs == 0: the decision is final.  Otherwise the verdict is
 * provisional: v->action is what holds if the missing input turns out empty
 * (no directory groups, no personal data in the body, not acknowledged), and
 * needs names what to supply before calling gate_resume().  At most one bit
 * is set, most fundamental first: groups (they can change the rule), then
 * the body (it can change the rule), then the acknowledgement state (it only
 * turns a warn rule into an allow).
 *
 * Order, as the proxy applies it: a usable target (GATE_ERROR), the
 * service (for a request, by host and path: catalog_lookup_path; for a
 * CONNECT, by host), credentials (GATE_AUTH_NEEDED), a CONNECT that
 * gate_intercepts() takes (GATE_ALLOW with tls GATE_TLS_INTERCEPT, no rule:
 * the requests inside are decided one by one), the acknowledgement POST
 * (GATE_ACK), then the policy.  A warn rule gives GATE_WARN with the
 * caution page until acknowledged, GATE_ALLOW after; on a CONNECT that is
 * not intercepted the page cannot be shown and tls.warn_fallback decides
 * (GATE_BLOCK with the block page, or GATE_ALLOW).  A rule with add_headers
 * that would let a CONNECT that is not intercepted through gives GATE_BLOCK
 * with fallback GATE_FALLBACK_HEADERS instead (a 403, never a blind tunnel);
 * when it lets a request through, headers carries its add_headers.
 *
 * Cost: at most two policy evaluations (the body check evaluates as if
 * everything and as if nothing were found), no allocation.
 */
void gate_decide(const struct gate_cfg *g, const struct gate_req *r, struct gate_verdict *v);

/*
 * Finish the provisional verdict v that gate_decide() or gate_resume() gave
 * for r, now that r carries what v->needs named (groups_from with
 * GATE_GROUPS_DIRECTORY and the groups, body_scanned and dlp_found, or ack).
 * Redoes only the steps that depended on it: a supplied acknowledgement
 * state costs no policy evaluation.  Same contract for *v as gate_decide();
 * with needs == 0 it leaves v as it is.
 */
void gate_resume(const struct gate_cfg *g, const struct gate_req *r, struct gate_verdict *v);

/*
 * 1 if a CONNECT to host (normalised, as http_url keeps it) would be
 * intercepted under g, with its host-level catalog entry in *svc (NULL if
 * none).  With tls.intercept, a host is intercepted when a catalog entry
 * names it (with or without paths) or when a rule that needs the request
 * itself (paths, query, methods, dlp, add_headers) names it in `hosts`
 * (policy_wants_request); no other host is ever decrypted.  --explain uses
 * it to see an https URL as the proxy would: a request inside interception,
 * or a blind tunnel.
 */
int gate_intercepts(const struct gate_cfg *g, const char *host, const struct service **svc);

/*
 * The policy request the gate evaluated for r to reach v, in *out (pointing
 * into r and v): for --explain's per-rule account of the decision.
 */
void gate_policy_req(const struct gate_req *r, const struct gate_verdict *v,
                     struct policy_req *out);

/* Names as the audit log and --explain's verdict line write them. */
const char *gate_action_name(enum gate_action a);
const char *gate_page_name(enum gate_page p);
const char *gate_tls_name(enum gate_tls t);

#endif
