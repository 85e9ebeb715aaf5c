/*
 * Who is asking (see identity.h).  A password check that misses the cache
 * goes to the offload pool as an identity_wait; its result comes back on
 * the worker's loop through offload's done(), which hands it to the owner's
 * callback.
 */
#include "aigate/identity.h"

#include <crypt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "aigate/auth.h"
#include "aigate/config.h"
#include "aigate/offload.h"
#include "aigate/users.h"

struct identity_wait {
    struct offload_job job; /* first: the pool hands back this pointer */
    struct config *cfg;     /* keeps the htpasswd db alive */
    struct auth_cache *cache;
    struct auth_backoff *backoff;
    struct sockaddr_storage peer;
    struct auth_cred cred;
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
    res->delay_ms = auth_backoff_fail(backoff, peer, time(NULL));
    return IDENTITY_REFUSED;
}

static void
job_run(struct offload_job *oj)
{
    struct identity_wait *iw = (struct identity_wait *)oj;
    iw->result = verify_now(iw->cfg, &iw->cred);
}

static void
job_done(struct offload_job *oj)
{
    struct identity_wait *iw = (struct identity_wait *)oj;
    struct identity_result res = {0};
    snprintf(res.user, sizeof(res.user), "%.127s", iw->cred.user);
    if (iw->result == 1)
        auth_cache_put(iw->cache, iw->cfg->authdb, &iw->cred);
    enum identity_rc rc = verdict(iw->result == 1, iw->has_tunnel_user ? iw->tunnel_user : NULL,
                                  iw->backoff, (struct sockaddr *)&iw->peer, &res);
    iw->cb(iw->arg, rc, &res);
}

static void
job_release(struct offload_job *oj)
{
    struct identity_wait *iw = (struct identity_wait *)oj;
    auth_cred_clear(&iw->cred);
    config_unref(iw->cfg);
    free(iw);
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
    if (cfg->auth.mode != AUTH_BASIC)
        return IDENTITY_OK;
    if (q->tunnel_user && !q->authz) {
        snprintf(res->user, sizeof(res->user), "%s", q->tunnel_user);
        return IDENTITY_OK;
    }
    if (!q->authz)
        return IDENTITY_REFUSED; /* asked to sign in: no failure to count */
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
        return IDENTITY_PENDING;
    }
    /* No pool (not running): verify here, once. */
    int ok = verify_now(cfg, &iw->cred) == 1;
    if (ok)
        auth_cache_put(q->cache, cfg->authdb, &iw->cred);
    auth_cred_clear(&iw->cred);
    config_unref(iw->cfg);
    free(iw);
    return verdict(ok, q->tunnel_user, q->backoff, q->peer, res);
}

void
identity_cancel(struct identity_wait *wait)
{
    if (wait)
        offload_cancel(&wait->job); /* the pool frees it when it comes back */
}
