/*
 * The policy: an ordered list of rules (rules/policy.conf), compiled once at
 * load and evaluated per request without parsing or allocating.  The first
 * rule whose conditions all hold decides; no match means allow.
 *
 * Pure: no I/O except policy_rule_check()'s text for --explain.  A struct
 * policy is immutable after policy_load() and is bound to the catalog it was
 * loaded against (service indices); both live in the same config snapshot.
 */
#ifndef AIGATE_POLICY_H
#define AIGATE_POLICY_H

#include <libconfig.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "aigate/core/netaddr.h"

struct catalog;
struct service;
struct hostset;
struct http_msg_field;

enum policy_action { POLICY_ALLOW, POLICY_BLOCK, POLICY_WARN };

/* DLP kinds as bits of policy_req.dlp_found and of a rule's dlp condition. */
#define POLICY_DLP_KR_RRN (1u << 0)
#define POLICY_DLP_CREDIT_CARD (1u << 1)
#define POLICY_DLP_EMAIL (1u << 2)
#define POLICY_DLP_PHONE_KR (1u << 3)
#define POLICY_DLP_API_KEY (1u << 4)
#define POLICY_DLP_PRIVATE_KEY (1u << 5)
/* "custom:NAME": bit for the i-th entry of the top-level dlp_patterns list. */
#define POLICY_DLP_CUSTOM_FIRST 6
#define POLICY_DLP_CUSTOM_MAX 26
#define POLICY_DLP_CUSTOM(i) (1u << (POLICY_DLP_CUSTOM_FIRST + (i)))

struct policy_strs {
    char **v;
    size_t n;
};

struct policy_window {
    int start, end; /* minutes since midnight; end may be 1440; start > end wraps */
};

/* Which conditions a rule has (bits of policy_rule.conds). */
enum policy_cond {
    POLICY_C_USERS = 1 << 0,
    POLICY_C_GROUPS = 1 << 1,
    POLICY_C_NETWORKS = 1 << 2,
    POLICY_C_SERVICES = 1 << 3,
    POLICY_C_CATEGORIES = 1 << 4,
    POLICY_C_VENDORS = 1 << 5,
    POLICY_C_HOSTS = 1 << 6,
    POLICY_C_METHODS = 1 << 7,
    POLICY_C_PATHS = 1 << 8,
    POLICY_C_HOURS = 1 << 9,
    POLICY_C_DAYS = 1 << 10,
    POLICY_C_DLP = 1 << 11,
    POLICY_C_QUERY = 1 << 12,
};
#define POLICY_C_COUNT 13
/* Conditions that need the request itself, not just the CONNECT target. */
#define POLICY_C_NEEDS_REQUEST (POLICY_C_METHODS | POLICY_C_PATHS | POLICY_C_QUERY | POLICY_C_DLP)

/*
 * add_headers limits (SPEC 5b): per rule, and bytes of a name and a value
 * (the limits Cloudflare Gateway sets on its header operations, which no
 * vendor's workspace header comes near).
 */
#define POLICY_HEADERS_MAX 20
#define POLICY_HEADER_NAME_MAX 256
#define POLICY_HEADER_VALUE_MAX 4096

struct policy_rule {
    char *name;
    enum policy_action action;
    char *reason;  /* NULL if none */
    int ack_ttl_s; /* -1: ack.ttl_s */
    char *file;    /* where it was written, for --explain */
    int line;
    size_t index; /* position in the policy */

    unsigned conds; /* enum policy_cond bits present */
    struct policy_strs users, groups, categories, vendors, methods, paths, query, hours, days, dlp;
    struct policy_strs services; /* ids as written */
    size_t *service_idx;         /* catalog indices, sorted */
    struct policy_strs networks; /* as written */
    struct cidr_list nets;
    struct policy_strs hosts; /* as written */
    struct hostset *hostset;
    struct policy_window *windows; /* hours.n entries */
    unsigned day_mask;             /* bit tm_wday */
    unsigned dlp_mask;

    /*
     * add_headers (SPEC 5b): set on the forwarded request when this rule
     * lets it through; names are RFC 9110 tokens, unique in the rule
     * (case-insensitively), values printable.  One allocation owns the
     * array and its strings.  NULL / 0 when the rule adds none.
     */
    const struct http_msg_field *headers;
    size_t nheaders;
};

struct policy_req {
    const char *user; /* NULL: anonymous */
    const char *const *groups;
    size_t ngroups;
    const struct sockaddr *client;
    const struct service *svc; /* NULL if not catalogued */
    const char *host;          /* normalised lowercase, no port */
    const char *method;        /* NULL on a non-intercepted CONNECT */
    const char *path;          /* without query; NULL on CONNECT */
    size_t pathlen;
    const char *query; /* after '?', "" when there is none; NULL on CONNECT */
    size_t querylen;
    const struct tm *local; /* local time of the request (injectable) */
    int have_request;       /* 0: non-intercepted CONNECT, host-level conditions only */
    unsigned dlp_found;     /* POLICY_DLP_* found in the body */
    int body_inspected;
};

struct policy;

/*
 * Compile the `policy` list (NULL: no rules) against cat.  dlp_patterns is the
 * top-level list that `custom:NAME` refers to (may be NULL).  On error returns
 * NULL with "FILE:LINE: rule "NAME": message" in err.
 */
struct policy *policy_load(const config_setting_t *policy, const struct catalog *cat,
                           const config_setting_t *dlp_patterns, char *err, size_t errlen);
void policy_free(struct policy *p);

/*
 * 1 if a rule that needs the request itself (paths, query, methods, dlp or
 * add_headers) names host (normalised, as http_url keeps it) in its `hosts`:
 * with tls.intercept such a host is intercepted even when it is not
 * catalogued (SPEC 5).  One hash probe per label of host.
 */
int policy_wants_request(const struct policy *p, const char *host);

/* The deciding rule, or NULL (allow).  Cost independent of the rule count. */
const struct policy_rule *policy_eval(const struct policy *p, const struct policy_req *r);
/* The same by trying every rule in order: the reference for tests. */
const struct policy_rule *policy_eval_scan(const struct policy *p, const struct policy_req *r);

size_t policy_count(const struct policy *p);
const struct policy_rule *policy_rule_at(const struct policy *p, size_t i);
const char *policy_action_name(enum policy_action a);

/* One condition's verdict for --explain. */
struct policy_check {
    const char *cond; /* "groups", "paths", ... */
    unsigned bit;     /* enum policy_cond */
    int ok;
    char why[256]; /* e.g. "alice is in [staff], rule wants [security]" */
};

/*
 * Evaluate every condition of rule against r (no short-circuit) and describe
 * each in out[0..max).  Returns the number of conditions (at most
 * POLICY_C_COUNT); the rule matches iff all of them are ok.
 */
size_t policy_rule_check(const struct policy_rule *rule, const struct policy_req *r,
                         struct policy_check *out, size_t max);

#endif
