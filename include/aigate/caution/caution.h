/*
 * The warn action as a person meets it: the caution page, and the
 * acknowledgement POST to /__aigate/ack that the proxy answers itself.
 * Tokens and the acknowledgement store are in ack.c; this module builds the
 * page and checks the form, and reports the store's answer by callback.  It
 * knows nothing of connections: what it needs of the request comes in a
 * struct caution_req, what it answers goes into an evbuffer.
 */
#ifndef AIGATE_CAUTION_H
#define AIGATE_CAUTION_H

#include <stddef.h>
#include <time.h>

#include "aigate/caution/ack.h"

struct evbuffer;
struct config;
struct req;
struct sockaddr;
struct worker;
struct caution_wait;

#define CAUTION_ACK_PATH "/__aigate/ack"
/* Tokens are for the page just shown: a person reads it and clicks within minutes. */
#define CAUTION_TOKEN_MAX_AGE_S 600

/* What the caution module needs of a request. */
struct caution_req {
    const struct config *cfg;
    const struct req *r;         /* user, service, rule, URL, Accept preferences */
    const struct sockaddr *peer; /* the client (anonymous users are keyed by address) */
    const char *peer_str;
    const unsigned char *ack_key; /* ACK_KEY_LEN bytes */
    /* The user's groups, config and directory (ldap), when the directory's were read: the
     * warn rule whose TTL an acknowledgement gets may name a directory group.  Else unset. */
    const char *const *groups;
    size_t ngroups;
    int directory_groups; /* groups holds the directory's too */
};

/* The key acknowledgements are stored under: the user name, or "@address" for anonymous users. */
void caution_user_key(const struct caution_req *cr, char *out, size_t cap);
/* The service key: the catalog id, or "host:NAME" for a warned host outside the catalog. */
void caution_service_key(const struct caution_req *cr, char *out, size_t cap);

/*
 * Has the request's user acknowledged its service (and does that hold at
 * now)?  Asked of the store, which answers through cb on w's loop, exactly
 * once unless ack_store_lookup_cancel() comes first, never from inside this
 * call.  NULL when the question cannot be asked (treat as not acknowledged).
 */
struct ack_lookup *caution_lookup(const struct caution_req *cr, struct ack_store *store,
                                  struct worker *w, time_t now, ack_lookup_cb cb, void *arg);

/*
 * Append the answer to a request a warn rule decided: 403 with the caution
 * page (HTML, with a fresh token) or the text saying a browser is needed.
 * keep: the connection stays open after it.  Returns the bytes appended.
 */
size_t caution_page(struct evbuffer *out, const struct caution_req *cr, time_t now, int keep);

/* The store's answer to an acknowledgement (on the submitting worker's loop): v and the
 * address to send the browser back to. */
typedef void (*caution_ack_cb)(void *arg, enum ack_verdict v, const char *url);

/*
 * POST /__aigate/ack with the form body (len bytes).  Checks the form, the
 * return address (http(s), same service: no open redirect) and the token;
 * when all pass, records the acknowledgement for the warn rule's TTL and the
 * used token (ack_store_commit) and returns the wait handle: cb comes later,
 * exactly once unless cancelled.  When a check fails returns NULL with why
 * (whycap bytes) holding a sentence for the page, and cb never comes; when
 * the store cannot take it returns NULL with why empty (answer 503).
 */
struct caution_wait *caution_ack(const struct caution_req *cr, struct ack_store *store,
                                 struct worker *w, const char *body, size_t len, time_t now,
                                 caution_ack_cb cb, void *arg, char *why, size_t whycap);
/* The sentence a refused acknowledgement's page shows for v. */
void caution_refusal(enum ack_verdict v, char *out, size_t cap);
/* Drop a pending acknowledgement's answer (it is still recorded); NULL is a no-op. */
void caution_ack_cancel(struct caution_wait *cw);

#endif
