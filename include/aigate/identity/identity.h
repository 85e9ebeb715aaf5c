/*
 * Who is asking (SPEC 3 auth.mode, 6 "Identity inside a tunnel").
 *
 *   auth.mode "none"     anonymous (the address identifies the client)
 *   auth.mode "address"  the user mapped to the client's network
 *   auth.mode "basic"    Proxy-Authorization: Basic against the htpasswd
 *                        file; a verified credential is cached per worker,
 *                        a cache miss is verified on the offload pool
 *                        (bcrypt never runs on an event loop)
 *   auth.mode "negotiate"  Proxy-Authorization: Negotiate (SPNEGO/Kerberos,
 *                        negotiate.h), every token accepted on the offload
 *                        pool; Basic as above too when auth.htpasswd is set.
 *                        Connection-based (SPEC 9): a connection a token
 *                        authenticated is that user's (conn_user) until it
 *                        closes, so its later requests need no header
 *
 * Inside an intercepted tunnel the user is the one the CONNECT
 * authenticated (tunnel_user): browsers never send Proxy-Authorization
 * inside TLS.  Credentials that are sent anyway are checked and must name
 * that user.
 *
 * Refused credentials count towards the client's back-off (auth.h); why a
 * Negotiate token was refused (replay, clock skew, a key the keytab lacks)
 * goes to the diagnostic log at info level, never the token.
 *
 * identity_resolve() answers at once (IDENTITY_OK or IDENTITY_REFUSED, the
 * result filled) or later (IDENTITY_PENDING: cb runs exactly once on the
 * worker's loop with the result, unless identity_cancel() is called first;
 * never from inside identity_resolve()).  An answer given at once leaves
 * res->reply to the caller (free() it).
 */
#ifndef AIGATE_IDENTITY_H
#define AIGATE_IDENTITY_H

#include <stddef.h>

struct config;
struct sockaddr;
struct worker;
struct auth_cache;
struct auth_backoff;
struct identity_wait;

enum identity_rc { IDENTITY_OK = 0, IDENTITY_REFUSED, IDENTITY_PENDING };

struct identity_q {
    struct config *cfg;       /* referenced by a pending check for its life */
    struct worker *w;         /* whose loop a pending check comes back to */
    struct auth_cache *cache; /* the worker's verified credentials */
    struct auth_backoff *backoff;
    const struct sockaddr *peer;
    const char *tunnel_user; /* inner request of an intercepted tunnel: its user ("" = anonymous) */
    const char *conn_user;   /* negotiate: the user a token authenticated this connection as */
    const char *authz;       /* Proxy-Authorization value, or NULL */
    size_t authz_len;
};

struct identity_result {
    char user[128];    /* the user, or the name that was tried when refused; "" anonymous */
    unsigned delay_ms; /* refused: hold the 407 back this long (repeated failures) */
    int negotiated;    /* OK by a Negotiate token: the connection is user's from now on */
    char *reply;       /* negotiated: GSSAPI's mutual-authentication token (base64) for
                        * "Proxy-Authenticate: Negotiate <reply>", or NULL.  malloc'd: the
                        * receiver takes it (and sets it NULL) or frees it */
};

/* res is the callee's to read; it may take res->reply, which is freed when cb returns otherwise. */
typedef void (*identity_cb)(void *arg, enum identity_rc rc, struct identity_result *res);

enum identity_rc identity_resolve(const struct identity_q *q, struct identity_result *res,
                                  identity_cb cb, void *arg, struct identity_wait **wait);
/* The owner is going away: cb will not run.  NULL is a no-op. */
void identity_cancel(struct identity_wait *wait);

#endif
