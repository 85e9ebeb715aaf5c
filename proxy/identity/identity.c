/*
 * Who is asking (see identity.h).  A password check that misses the cache,
 * and every Negotiate token, goes to the offload pool as an identity_wait;
 * its result comes back on the worker's loop through offload's done(), which
 * hands it to the owner's callback.
 */
#include "aigate/identity/identity.h"

#include <crypt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "aigate/core/config.h"
#include "aigate/core/log.h"
#include "aigate/core/netaddr.h"
#include "aigate/core/offload.h"
#include "aigate/identity/auth.h"
#include "aigate/identity/negotiate.h"
#include "aigate/identity/users.h"

struct identity_wait {
    struct offload_job job; /* first: the pool hands back this pointer */
    struct config *cfg;     /* keeps the htpasswd db and the Kerberos acceptor alive */
    struct auth_cache *cache;
    struct auth_backoff *backoff;
    struct sockaddr_storage peer;
    struct auth_cred cred; /* Basic */
    char *token;           /* Negotiate: the base64 token (a copy); NULL for Basic */
    size_t toklen;
    struct negotiate_result nres;
    char tunnel_user[128];
    int has_tunnel_user;
    int result;
    identity_cb cb;
    void *arg;
};

static int
verify_now(const struct config *cfg, const struct auth_cred *cred)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    int rc = cd ? auth_db_verify(cfg->authdb, cred, cd) : 0;
    free(cd);
    return rc;
}

/* The verdict on credentials for user (verified: ok), given the tunnel's user if any. */
static enum identity_rc
verdict(int ok, const char *tunnel_user, struct auth_backoff *backoff, const struct sockaddr *peer,
        struct identity_result *res)
{
    if (ok && tunnel_user && strcmp(res->user, tunnel_user) != 0)
        ok = 0; /* valid, but another user than the tunnel's */
    if (ok) {
        auth_backoff_ok(backoff, peer);
        return IDENTITY_OK;
    }
    free(res->reply);
    res->reply = NULL;
    res->negotiated = 0;
    res->delay_ms = auth_backoff_fail(backoff, peer, time(NULL));
    return IDENTITY_REFUSED;
}

/* A Negotiate refusal, for the operator: why (never the token). */
static void
negotiate_refused(const struct sockaddr *peer, const char *why)
{
    char addr[64];
    log_info("Negotiate authentication from %s refused: %s", netaddr_ntop(peer, addr, sizeof(addr)),
             why);
}

/*
 * The outcome of negotiate_accept() (accepted: 1) into res: the user, and
 * the mutual-authentication token taken from nres.  A user name that does
 * not fit is refused rather than cut (a cut name could be someone else's).
 */
static int
negotiate_outcome(int accepted, struct negotiate_result *nres, const struct sockaddr *peer,
                  struct identity_result *res)
{
    if (accepted && strlen(nres->user) >= sizeof(res->user)) {
        snprintf(nres->reason, sizeof(nres->reason), "user name %.60s... longer than %zu bytes",
                 nres->user, sizeof(res->user) - 1);
        accepted = 0;
    }
    if (!accepted) {
        negotiate_refused(peer, nres->reason);
        return 0;
    }
    snprintf(res->user, sizeof(res->user), "%s", nres->user);
    res->negotiated = 1;
    res->reply = nres->reply;
    nres->reply = NULL;
    return 1;
}

static void
job_run(struct offload_job *oj)
{
    struct identity_wait *iw = (struct identity_wait *)oj;
    if (iw->token)
        iw->result = negotiate_accept(iw->cfg->negotiate, iw->token, iw->toklen, &iw->nres);
    else
        iw->result = verify_now(iw->cfg, &iw->cred);
}

static void
job_done(struct offload_job *oj)
{
    struct identity_wait *iw = (struct identity_wait *)oj;
    struct identity_result res = {0};
    const struct sockaddr *peer = (struct sockaddr *)&iw->peer;
    int ok;
    if (iw->token) {
        ok = negotiate_outcome(iw->result == 1, &iw->nres, peer, &res);
    } else {
        snprintf(res.user, sizeof(res.user), "%.127s", iw->cred.user);
        ok = iw->result == 1;
        if (ok)
            auth_cache_put(iw->cache, iw->cfg->authdb, &iw->cred);
    }
    enum identity_rc rc =
        verdict(ok, iw->has_tunnel_user ? iw->tunnel_user : NULL, iw->backoff, peer, &res);
    iw->cb(iw->arg, rc, &res);
    free(res.reply);
}

static void
job_release(struct offload_job *oj)
{
    struct identity_wait *iw = (struct identity_wait *)oj;
    auth_cred_clear(&iw->cred);
    negotiate_result_clear(&iw->nres);
    free(iw->token);
    config_unref(iw->cfg);
    free(iw);
}

/* Hand iw to the pool: IDENTITY_PENDING, or -1 when there is no pool (iw untouched). */
static int
submit(const struct identity_q *q, struct identity_wait *iw, identity_cb cb, void *arg,
       struct identity_wait **wait)
{
    iw->job.w = q->w;
    iw->job.owner = iw;
    iw->job.run = job_run;
    iw->job.done = job_done;
    iw->job.release = job_release;
    iw->cfg = config_ref(q->cfg);
    iw->cache = q->cache;
    iw->backoff = q->backoff;
    memcpy(&iw->peer, q->peer,
           q->peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                          : sizeof(struct sockaddr_in));
    if (q->tunnel_user) {
        snprintf(iw->tunnel_user, sizeof(iw->tunnel_user), "%s", q->tunnel_user);
        iw->has_tunnel_user = 1;
    }
    iw->cb = cb;
    iw->arg = arg;
    if (offload_submit(&iw->job) == 0) {
        *wait = iw;
        return 0;
    }
    config_unref(iw->cfg);
    iw->cfg = NULL;
    return -1;
}

/* Basic credentials in q->authz: from the worker's cache, or verified on the pool. */
static enum identity_rc
resolve_basic(const struct identity_q *q, struct identity_result *res, identity_cb cb, void *arg,
              struct identity_wait **wait)
{
    const struct config *cfg = q->cfg;
    struct identity_wait *iw = calloc(1, sizeof(*iw));
    if (!iw || auth_basic_parse(q->authz, q->authz_len, &iw->cred) < 0) {
        free(iw);
        return verdict(0, NULL, q->backoff, q->peer, res);
    }
    /* The name that was tried is logged either way (never the password). */
    snprintf(res->user, sizeof(res->user), "%.127s", iw->cred.user);
    if (auth_cache_check(q->cache, cfg->authdb, &iw->cred) == 1) {
        auth_cred_clear(&iw->cred);
        free(iw);
        return verdict(1, q->tunnel_user, q->backoff, q->peer, res);
    }
    if (submit(q, iw, cb, arg, wait) == 0)
        return IDENTITY_PENDING;
    /* No pool (not running): verify here, once. */
    int ok = verify_now(cfg, &iw->cred) == 1;
    if (ok)
        auth_cache_put(q->cache, cfg->authdb, &iw->cred);
    auth_cred_clear(&iw->cred);
    free(iw);
    return verdict(ok, q->tunnel_user, q->backoff, q->peer, res);
}

/* Negotiate token tok (base64, toklen bytes): accepted on the pool. */
static enum identity_rc
resolve_negotiate(const struct identity_q *q, const char *tok, size_t toklen,
                  struct identity_result *res, identity_cb cb, void *arg,
                  struct identity_wait **wait)
{
    struct identity_wait *iw = calloc(1, sizeof(*iw));
    if (!iw || !(iw->token = malloc(toklen))) {
        free(iw);
        negotiate_refused(q->peer, "out of memory");
        return verdict(0, NULL, q->backoff, q->peer, res);
    }
    memcpy(iw->token, tok, toklen);
    iw->toklen = toklen;
    if (submit(q, iw, cb, arg, wait) == 0)
        return IDENTITY_PENDING;
    /* No pool (not running): accept here, once. */
    int ok = negotiate_accept(q->cfg->negotiate, tok, toklen, &iw->nres);
    ok = negotiate_outcome(ok, &iw->nres, q->peer, res);
    negotiate_result_clear(&iw->nres);
    free(iw->token);
    free(iw);
    return verdict(ok, q->tunnel_user, q->backoff, q->peer, res);
}

enum identity_rc
identity_resolve(const struct identity_q *q, struct identity_result *res, identity_cb cb, void *arg,
                 struct identity_wait **wait)
{
    const struct config *cfg = q->cfg;
    memset(res, 0, sizeof(*res));
    *wait = NULL;
    if (cfg->auth.mode == AUTH_ADDRESS) {
        const char *u = users_by_address(cfg->users, q->peer);
        if (u)
            snprintf(res->user, sizeof(res->user), "%s", u);
        return IDENTITY_OK;
    }
    if (cfg->auth.mode != AUTH_BASIC && cfg->auth.mode != AUTH_NEGOTIATE)
        return IDENTITY_OK;
    if (q->tunnel_user && !q->authz) {
        snprintf(res->user, sizeof(res->user), "%s", q->tunnel_user);
        return IDENTITY_OK;
    }
    if (!q->authz && cfg->auth.mode == AUTH_NEGOTIATE && q->conn_user) {
        snprintf(res->user, sizeof(res->user), "%s", q->conn_user);
        return IDENTITY_OK;
    }
    if (!q->authz)
        return IDENTITY_REFUSED; /* asked to sign in: no failure to count */
    if (cfg->auth.mode == AUTH_BASIC)
        return resolve_basic(q, res, cb, arg, wait);
    const char *tok;
    size_t toklen;
    switch (negotiate_parse(q->authz, q->authz_len, &tok, &toklen)) {
    case NEGOTIATE_PARSE_OK:
        return resolve_negotiate(q, tok, toklen, res, cb, arg, wait);
    case NEGOTIATE_PARSE_OTHER:
        if (cfg->authdb)
            return resolve_basic(q, res, cb, arg, wait);
        negotiate_refused(q->peer, "credentials of another scheme than Negotiate");
        break;
    case NEGOTIATE_PARSE_BAD:
        negotiate_refused(q->peer, "malformed Negotiate header (no, an overlong or a "
                                   "non-base64 token)");
        break;
    }
    return verdict(0, NULL, q->backoff, q->peer, res);
}

void
identity_cancel(struct identity_wait *wait)
{
    if (wait)
        offload_cancel(&wait->job); /* the pool frees it when it comes back */
}
