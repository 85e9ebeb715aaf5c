/*
 * The Redis/Valkey acknowledgement store (include/aigate/caution/ackredis.h).
 *
 * Each worker has its own connection (struct ar_conn), touched only on that
 * worker's thread while its loop runs, and by ack_store_close() after the
 * loops have ended.  A call is a request (struct ar_req) that begins with
 * the offload job that hands its answer to the worker, so answers always
 * arrive from the worker's loop, never inside the call, whatever happened.
 * A connection keeps its requests in the order they were sent (hiredis
 * answers in that order), so the oldest deadline is always the first.
 *
 * A connection's life: IDLE -> (RESOLVING ->) CONNECTING -> UP, and from any
 * of them DOWN on a failure, then a retry timer back to CONNECTING.  While
 * not CONNECTING or UP there is no hiredis context and calls fail at once.
 * We drop a context by taking it off the connection first and then freeing
 * it, so hiredis's callbacks for it (the NULL replies of its requests, its
 * disconnect callback) can tell that it is no longer the connection's.
 */
#include "aigate/caution/ackredis.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "aigate/core/log.h"
#include "aigate/core/offload.h"
#include "aigate/net/worker.h"

#define AR_NS_PER_MS 1000000LL
#define AR_WHY_MAX 256

enum ar_state { AR_IDLE = 0, AR_RESOLVING, AR_CONNECTING, AR_UP, AR_DOWN };
enum ar_kind { AR_HANDSHAKE, AR_LOOKUP, AR_COMMIT };

struct ar_conn;

struct ack_redis {
    struct ack_store base; /* first: the store's handle is this */
    struct ack_redis_url url;
    char where[300]; /* "redis HOST:PORT/DB", for logs and /healthz */
    int nslots;
    struct ar_conn **slots; /* by worker id; each made and used by its worker */
    int closing;
    atomic_int ndown;   /* connections that are down */
    pthread_mutex_t mu; /* guards why */
    char why[AR_WHY_MAX];
};

/* A name lookup in flight; outlives its connection if the store closes first. */
struct ar_resolve {
    struct ar_conn *rc; /* NULL once the store closed */
    struct evdns_getaddrinfo_request *req;
};

struct ar_req {
    struct offload_job job; /* first: the handle of ack.h is the job */
    TAILQ_ENTRY(ar_req) link;
    struct ar_conn *rc; /* while sent and unanswered */
    struct ack_redis *s;
    enum ar_kind kind;
    int step; /* a commit: 0 while the nonce SET is out, 1 for the grant SET */
    long long start, deadline;
    ack_commit_cb commit_cb;
    ack_lookup_cb lookup_cb;
    void *arg;
    enum ack_verdict verdict;
    enum ack_lookup_answer answer;
    time_t now;
    long long grant_expires, grant_ttl;
    char key[ACK_REDIS_KEY_MAX];
};

TAILQ_HEAD(ar_reqs, ar_req);

struct ar_conn {
    struct ack_redis *s;
    struct worker *w;
    enum ar_state state;
    int down; /* counted in s->ndown */
    int backoff_ms;
    redisAsyncContext *ac; /* while CONNECTING or UP */
    struct ar_resolve *res;
    struct event *retry, *timeout;
    struct ar_reqs pending; /* sent, in order */
};

/* ---- URL and keys ------------------------------------------------------------ */

static int
ar_fail_parse(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "ack.store: %s", msg);
    return -1;
}

static int
ar_unhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Undo %XX of s[0..n) into out (cap bytes, NUL included); -1 on a bad
 * escape, a decoded control byte or no room. */
static int
ar_pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = ar_unhex(s[i + 1]), lo = ar_unhex(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f || o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    if (cap == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

/* Letters, digits, '-' and '_' in dot-separated labels of 1-63, at most 253 in all. */
static int
ar_hostname_ok(const char *h, size_t n)
{
    size_t label = 0;
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_') &&
                   ++label <= 63) {
            continue;
        } else {
            return 0;
        }
    }
    return label > 0;
}

/* A decimal number of s[0..n) (no sign, no leading zero), lo..hi. */
static int
ar_dec(const char *s, size_t n, long lo, long hi, long *out)
{
    long v = 0;
    if (n == 0 || n > 9 || (n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int
ack_redis_url_parse(const char *url, struct ack_redis_url *u, char *err, size_t errlen)
{
    static const char scheme[] = "redis://";
    size_t n = strnlen(url, ACK_REDIS_URL_MAX + 1);
    long v;

    memset(u, 0, sizeof(*u));
    u->port = ACK_REDIS_DEFAULT_PORT;
    if (n > ACK_REDIS_URL_MAX)
        return ar_fail_parse(err, errlen, "URL too long");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return ar_fail_parse(err, errlen, "spaces, control or non-ASCII bytes in the URL");
    if (strncasecmp(url, "rediss://", 9) == 0)
        return ar_fail_parse(err, errlen,
                             "rediss:// (TLS) is not supported: use redis:// on a private "
                             "network or through a TLS tunnel");
    if (strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
        return ar_fail_parse(err, errlen, "want redis://[:PASSWORD@]HOST:PORT/DB");
    const char *p = url + sizeof(scheme) - 1, *end = url + n;
    if (memchr(p, '?', (size_t)(end - p)) || memchr(p, '#', (size_t)(end - p)))
        return ar_fail_parse(err, errlen, "a query or fragment is not supported in the URL");
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *aend = slash ? slash : end;
    const char *at = NULL;
    for (const char *q = p; q < aend; q++)
        if (*q == '@')
            at = q; /* the last one: an unescaped '@' may be in the password */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return ar_fail_parse(err, errlen,
                                 "the part before '@' must be :PASSWORD or "
                                 "USER:PASSWORD");
        if (colon + 1 == at)
            return ar_fail_parse(err, errlen, "empty password");
        if (ar_pct_decode(p, (size_t)(colon - p), u->user, sizeof(u->user)) < 0 ||
            ar_pct_decode(colon + 1, (size_t)(at - colon - 1), u->password, sizeof(u->password)) <
                0)
            return ar_fail_parse(err, errlen,
                                 "user or password too long, or a bad %XX escape "
                                 "or control byte in it");
        p = at + 1;
    }
    const char *hs, *he, *port;
    if (p < aend && *p == '[') {
        const char *rb = memchr(p, ']', (size_t)(aend - p));
        struct in6_addr a6;
        if (!rb)
            return ar_fail_parse(err, errlen, "unclosed '[' in the host");
        hs = p + 1;
        he = rb;
        port = rb + 1;
        if ((size_t)(he - hs) >= sizeof(u->host))
            return ar_fail_parse(err, errlen, "bad IPv6 address");
        memcpy(u->host, hs, (size_t)(he - hs));
        if (inet_pton(AF_INET6, u->host, &a6) != 1)
            return ar_fail_parse(err, errlen, "bad IPv6 address");
        if (port < aend && *port != ':')
            return ar_fail_parse(err, errlen, "junk after the IPv6 address");
    } else {
        const char *colon = memchr(p, ':', (size_t)(aend - p));
        hs = p;
        he = port = colon ? colon : aend;
        if (!ar_hostname_ok(hs, (size_t)(he - hs)))
            return ar_fail_parse(err, errlen, "empty or invalid host");
        memcpy(u->host, hs, (size_t)(he - hs));
    }
    if (port < aend) {
        if (ar_dec(port + 1, (size_t)(aend - port - 1), 1, 65535, &v) < 0)
            return ar_fail_parse(err, errlen, "port must be 1-65535");
        u->port = (int)v;
    }
    if (slash && slash + 1 < end) {
        if (ar_dec(slash + 1, (size_t)(end - slash - 1), 0, ACK_REDIS_DB_MAX, &v) < 0)
            return ar_fail_parse(err, errlen, "database must be a number 0-65535");
        u->db = (int)v;
    }
    return 0;
}

/* Append s (n bytes) to out at *o, escaping what could be confused in a key. */
static int
ar_key_part(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '%' || c == ':') {
            if (*o + 3 >= cap)
                return -1;
            out[(*o)++] = '%';
            out[(*o)++] = hex[c >> 4];
            out[(*o)++] = hex[c & 0xf];
        } else {
            if (*o + 1 >= cap)
                return -1;
            out[(*o)++] = (char)c;
        }
    }
    return 0;
}

size_t
ack_redis_key_ack(char *out, size_t cap, const char *user, const char *service)
{
    size_t o = 0;
    if (!ack_name_ok(user, ACK_USER_MAX) || !ack_name_ok(service, ACK_SERVICE_MAX) || cap < 5)
        return 0;
    memcpy(out, "ack:", 4);
    o = 4;
    if (ar_key_part(out, cap, &o, user, strlen(user)) < 0 || o + 1 >= cap)
        return 0;
    out[o++] = ':';
    if (ar_key_part(out, cap, &o, service, strlen(service)) < 0)
        return 0;
    out[o] = '\0';
    return o;
}

size_t
ack_redis_key_nonce(char *out, size_t cap, const char *nonce)
{
    int n = snprintf(out, cap, "nonce:%.*s", ACK_NONCE_HEX, nonce);
    if (n < 0 || (size_t)n >= cap || strnlen(nonce, ACK_NONCE_HEX + 1) != ACK_NONCE_HEX)
        return 0;
    return (size_t)n;
}

/* ---- health ------------------------------------------------------------------ */

static void
ar_set_why(struct ack_redis *s, const char *why)
{
    pthread_mutex_lock(&s->mu);
    snprintf(s->why, sizeof(s->why), "%s", why);
    pthread_mutex_unlock(&s->mu);
}

static int
ar_healthy(struct ack_store *base, char *why, size_t cap)
{
    struct ack_redis *s = (struct ack_redis *)base;
    if (atomic_load(&s->ndown) == 0)
        return 1;
    pthread_mutex_lock(&s->mu);
    snprintf(why, cap, "%s: %s", s->where, s->why);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* ---- connections ---------------------------------------------------------------- */

static void ar_connect(struct ar_conn *rc);
static void ar_reply(redisAsyncContext *ac, void *r, void *priv);

static void
ar_arm_timeout(struct ar_conn *rc)
{
    struct ar_req *q = TAILQ_FIRST(&rc->pending);
    if (!q) {
        evtimer_del(rc->timeout);
        return;
    }
    long long left = q->deadline - ack_store_clock();
    if (left < 0)
        left = 0;
    struct timeval tv = {(time_t)(left / 1000000000LL), (suseconds_t)(left % 1000000000LL / 1000)};
    evtimer_add(rc->timeout, &tv);
}

/* The connection failed: calls fail from now until a new one is up. */
static void
ar_down(struct ar_conn *rc, const char *why)
{
    struct ack_redis *s = rc->s;
    if (rc->state == AR_DOWN)
        return;
    rc->state = AR_DOWN;
    ar_set_why(s, why);
    if (!rc->down) {
        rc->down = 1;
        if (atomic_fetch_add(&s->ndown, 1) == 0 && !s->closing)
            log_warnx("ack store: %s unreachable: %s (cautions are shown again and "
                      "acknowledgements refused until it is back)",
                      s->where, why);
    }
    if (!s->closing) {
        struct timeval tv = {rc->backoff_ms / 1000, (rc->backoff_ms % 1000) * 1000};
        evtimer_add(rc->retry, &tv);
        rc->backoff_ms = rc->backoff_ms * 2 > ACK_REDIS_BACKOFF_MAX_MS ? ACK_REDIS_BACKOFF_MAX_MS
                                                                       : rc->backoff_ms * 2;
    }
}

/* Close the connection ourselves (timeout, error reply, close): its requests fail. */
static void
ar_drop(struct ar_conn *rc, const char *why)
{
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    ar_down(rc, why);
    if (ac)
        redisAsyncFree(ac); /* deferred by hiredis when inside one of its callbacks */
}

static void
ar_up(struct ar_conn *rc)
{
    struct ack_redis *s = rc->s;
    rc->state = AR_UP;
    rc->backoff_ms = ACK_REDIS_BACKOFF_MIN_MS;
    if (rc->down) {
        rc->down = 0;
        if (atomic_fetch_sub(&s->ndown, 1) == 1)
            log_info("ack store: %s reachable again", s->where);
    }
}

static void
ar_on_connect(const redisAsyncContext *ac, int status)
{
    struct ar_conn *rc = ac->data;
    if (rc->ac != ac || status == REDIS_OK)
        return;    /* connected: the handshake's PING says when it is usable */
    rc->ac = NULL; /* hiredis frees it after this */
    ar_down(rc, ac->errstr[0] ? ac->errstr : "cannot connect");
}

static void
ar_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct ar_conn *rc = ac->data;
    if (rc->ac != ac)
        return; /* one we dropped */
    rc->ac = NULL;
    ar_down(rc, status == REDIS_OK || !ac->errstr[0] ? "connection closed" : ac->errstr);
}

static void
ar_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct ar_conn *rc = arg;
    struct ar_req *q = TAILQ_FIRST(&rc->pending);
    (void)fd;
    (void)what;
    if (!q)
        return;
    if (ack_store_clock() < q->deadline) {
        ar_arm_timeout(rc);
        return;
    }
    char why[64];
    snprintf(why, sizeof(why), "no answer within %d ms", ACK_REDIS_TIMEOUT_MS);
    ar_drop(rc, why);
}

static void
ar_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ar_connect(arg);
}

/* Queue one command for q on rc.  -1 when rc has no usable context. */
static int
ar_send(struct ar_conn *rc, struct ar_req *q, int argc, const char **argv, const size_t *lens)
{
    if (!rc->ac || redisAsyncCommandArgv(rc->ac, ar_reply, q, argc, argv, lens) != REDIS_OK)
        return -1;
    q->rc = rc;
    q->deadline = ack_store_clock() + ACK_REDIS_TIMEOUT_MS * AR_NS_PER_MS;
    TAILQ_INSERT_TAIL(&rc->pending, q, link);
    if (TAILQ_FIRST(&rc->pending) == q)
        ar_arm_timeout(rc);
    return 0;
}

/* Queue a handshake command (AUTH, SELECT, PING). */
static int
ar_handshake(struct ar_conn *rc, int argc, const char **argv)
{
    size_t lens[3];
    struct ar_req *q = calloc(1, sizeof(*q));
    if (!q)
        return -1;
    q->kind = AR_HANDSHAKE;
    q->s = rc->s;
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (ar_send(rc, q, argc, argv, lens) < 0) {
        free(q);
        return -1;
    }
    return 0;
}

/* Connect to ip (a numeric address) and queue the handshake. */
static void
ar_start(struct ar_conn *rc, const char *ip)
{
    const struct ack_redis_url *u = &rc->s->url;
    redisAsyncContext *ac = redisAsyncConnect(ip, u->port);
    char db[16];

    if (!ac || ac->err) {
        char why[AR_WHY_MAX];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        ar_down(rc, why);
        return;
    }
    ac->data = rc;
    if (redisLibeventAttach(ac, rc->w->base) != REDIS_OK) {
        redisAsyncFree(ac);
        ar_down(rc, "cannot attach to the event loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, ar_on_connect);
    redisAsyncSetDisconnectCallback(ac, ar_on_disconnect);
    rc->ac = ac;
    rc->state = AR_CONNECTING;
    snprintf(db, sizeof(db), "%d", u->db);
    const char *auth1[] = {"AUTH", u->password}, *auth2[] = {"AUTH", u->user, u->password};
    const char *sel[] = {"SELECT", db}, *ping[] = {"PING"};
    if ((u->password[0] &&
         (u->user[0] ? ar_handshake(rc, 3, auth2) : ar_handshake(rc, 2, auth1)) < 0) ||
        (u->db && ar_handshake(rc, 2, sel) < 0) || ar_handshake(rc, 1, ping) < 0)
        ar_drop(rc, "cannot queue the handshake");
}

static void
ar_resolved(int err, struct evutil_addrinfo *ai, void *arg)
{
    struct ar_resolve *res = arg;
    struct ar_conn *rc = res->rc;
    char ip[INET6_ADDRSTRLEN], why[AR_WHY_MAX];

    free(res);
    if (!rc) {
        if (ai)
            evutil_freeaddrinfo(ai);
        return; /* the store closed meanwhile */
    }
    rc->res = NULL;
    if (err || !ai) {
        snprintf(why, sizeof(why), "cannot resolve %.200s: %s", rc->s->url.host,
                 evutil_gai_strerror(err));
        ar_down(rc, why);
        return;
    }
    const void *a = ai->ai_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
    int ok = inet_ntop(ai->ai_family, a, ip, sizeof(ip)) != NULL;
    evutil_freeaddrinfo(ai);
    if (ok)
        ar_start(rc, ip);
    else
        ar_down(rc, "cannot resolve: bad address");
}

static void
ar_connect(struct ar_conn *rc)
{
    const char *host = rc->s->url.host;
    unsigned char a[sizeof(struct in6_addr)];

    if (rc->s->closing)
        return;
    if (inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1) {
        ar_start(rc, host);
        return;
    }
    if (!rc->w->dns) {
        ar_down(rc, "no resolver for the host name");
        return;
    }
    struct ar_resolve *res = calloc(1, sizeof(*res));
    if (!res) {
        ar_down(rc, "out of memory");
        return;
    }
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    res->rc = rc;
    rc->res = res;
    rc->state = AR_RESOLVING;
    /* The answer may come before this returns (hosts file): then res is gone. */
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(rc->w->dns, host, NULL, &hints, ar_resolved, res);
    if (rc->res == res)
        res->req = req;
}

/* w's connection, made (and connecting) on w's first call. */
static struct ar_conn *
ar_slot(struct ack_redis *s, struct worker *w)
{
    if (w->id < 0 || w->id >= s->nslots)
        return NULL;
    struct ar_conn *rc = s->slots[w->id];
    if (!rc) {
        if (!(rc = calloc(1, sizeof(*rc))))
            return NULL;
        rc->s = s;
        rc->w = w;
        rc->backoff_ms = ACK_REDIS_BACKOFF_MIN_MS;
        TAILQ_INIT(&rc->pending);
        rc->retry = evtimer_new(w->base, ar_retry, rc);
        rc->timeout = evtimer_new(w->base, ar_timeout, rc);
        if (!rc->retry || !rc->timeout) {
            if (rc->retry)
                event_free(rc->retry);
            if (rc->timeout)
                event_free(rc->timeout);
            free(rc);
            return NULL;
        }
        s->slots[w->id] = rc;
    }
    if (rc->state == AR_IDLE)
        ar_connect(rc);
    return rc;
}

/* ---- calls ---------------------------------------------------------------------- */

static void
ar_done(struct offload_job *job)
{
    struct ar_req *q = (struct ar_req *)job;
    if (q->kind == AR_LOOKUP)
        q->lookup_cb(q->answer, q->arg);
    else
        q->commit_cb(q->verdict, q->arg);
}

static void
ar_release(struct offload_job *job)
{
    free(job);
}

/* Hand q's answer to its worker; failed: count it as a store error. */
static void
ar_complete(struct ar_req *q, int failed)
{
    ack_store_observe(&q->s->base, q->start, failed);
    offload_finish(&q->job);
}

static struct ar_req *
ar_req_new(struct ack_redis *s, struct worker *w, enum ar_kind kind, void *arg)
{
    struct ar_req *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->job.w = w;
    q->job.owner = q;
    q->job.done = ar_done;
    q->job.release = ar_release;
    q->s = s;
    q->kind = kind;
    q->arg = arg;
    q->start = ack_store_clock();
    return q;
}

/* An error reply closes the connection (a server LOADING, READONLY after a
 * failover, a lost AUTH): the next one starts clean and /healthz says why. */
static void
ar_error_reply(struct ar_conn *rc, const redisReply *r)
{
    char why[AR_WHY_MAX];
    snprintf(why, sizeof(why), "error reply: %.*s", (int)(r->len < 200 ? r->len : 200), r->str);
    ar_drop(rc, why);
}

static int
ar_is_ok(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STATUS && r->len == 2 && memcmp(r->str, "OK", 2) == 0;
}

static void
ar_handshake_reply(struct ar_conn *rc, struct ar_req *q, const redisReply *r)
{
    free(q);
    if (!r)
        return; /* the connection is going: its callbacks say why */
    if (r->type == REDIS_REPLY_ERROR) {
        ar_error_reply(rc, r);
        return;
    }
    if (r->type == REDIS_REPLY_STATUS && r->len == 4 && memcmp(r->str, "PONG", 4) == 0 &&
        rc->state == AR_CONNECTING)
        ar_up(rc);
}

static void
ar_lookup_reply(struct ar_conn *rc, struct ar_req *q, const redisReply *r)
{
    long long exp = 0;

    if (!r || r->type == REDIS_REPLY_ERROR) {
        q->answer = ACK_LOOKUP_UNAVAILABLE;
        if (r)
            ar_error_reply(rc, r);
        ar_complete(q, 1);
        return;
    }
    q->answer = ACK_LOOKUP_NO;
    if (r->type == REDIS_REPLY_STRING && r->len > 0 && r->len <= 19) {
        int digits = 1;
        for (size_t i = 0; i < r->len; i++) {
            if (r->str[i] < '0' || r->str[i] > '9')
                digits = 0;
            else
                exp = exp * 10 + (r->str[i] - '0');
        }
        if (digits && exp > (long long)q->now)
            q->answer = ACK_LOOKUP_YES;
    }
    ar_complete(q, 0);
}

static int
ar_send_grant(struct ar_conn *rc, struct ar_req *q)
{
    char exp[24], ttl[24];
    snprintf(exp, sizeof(exp), "%lld", q->grant_expires);
    snprintf(ttl, sizeof(ttl), "%lld", q->grant_ttl);
    const char *argv[] = {"SET", q->key, exp, "EX", ttl};
    size_t lens[] = {3, strlen(q->key), strlen(exp), 2, strlen(ttl)};
    q->step = 1;
    return ar_send(rc, q, 5, argv, lens);
}

static void
ar_commit_reply(struct ar_conn *rc, struct ar_req *q, const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_ERROR)
        ar_error_reply(rc, r);
    if (q->step == 0 && r && r->type == REDIS_REPLY_NIL) {
        q->verdict = ACK_REPLAYED; /* SET NX found it: used before, through some node */
        ar_complete(q, 0);
        return;
    }
    if (q->step == 0) {
        if (ar_is_ok(r) && ar_send_grant(rc, q) == 0)
            return; /* the nonce is ours: now the grant */
        q->verdict = ACK_STORE_FAILED;
    } else {
        q->verdict = ar_is_ok(r) ? ACK_OK : ACK_STORE_FAILED;
    }
    ar_complete(q, q->verdict != ACK_OK);
}

static void
ar_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct ar_req *q = priv;
    struct ar_conn *rc = q->rc;
    const redisReply *r = reply;

    (void)ac;
    TAILQ_REMOVE(&rc->pending, q, link);
    q->rc = NULL;
    ar_arm_timeout(rc);
    switch (q->kind) {
    case AR_HANDSHAKE:
        ar_handshake_reply(rc, q, r);
        break;
    case AR_LOOKUP:
        ar_lookup_reply(rc, q, r);
        break;
    case AR_COMMIT:
        ar_commit_reply(rc, q, r);
        break;
    }
}

static struct ack_lookup *
ar_lookup(struct ack_store *base, struct worker *w, const char *user, const char *service,
          time_t now, ack_lookup_cb cb, void *arg)
{
    struct ack_redis *s = (struct ack_redis *)base;
    struct ar_req *q = ar_req_new(s, w, AR_LOOKUP, arg);

    if (!q)
        return NULL;
    q->lookup_cb = cb;
    q->now = now;
    size_t klen = ack_redis_key_ack(q->key, sizeof(q->key), user, service);
    if (!klen) {
        q->answer = ACK_LOOKUP_NO;
        ar_complete(q, 0);
        return (struct ack_lookup *)q;
    }
    struct ar_conn *rc = ar_slot(s, w);
    const char *argv[] = {"GET", q->key};
    size_t lens[] = {3, klen};
    if (!rc || ar_send(rc, q, 2, argv, lens) < 0) {
        q->answer = ACK_LOOKUP_UNAVAILABLE;
        ar_complete(q, 1);
    }
    return (struct ack_lookup *)q;
}

static struct ack_commit *
ar_commit(struct ack_store *base, struct worker *w, const char *token, size_t len,
          time_t nonce_expires, const char *user, const char *service, time_t grant_expires,
          ack_commit_cb cb, void *arg)
{
    struct ack_redis *s = (struct ack_redis *)base;
    struct ar_req *q = ar_req_new(s, w, AR_COMMIT, arg);
    char nonce[ACK_NONCE_HEX + 1], nkey[ACK_NONCE_HEX + 16], nttl[24];
    time_t now = time(NULL);

    if (!q)
        return NULL;
    q->commit_cb = cb;
    size_t nklen = 0;
    if (ack_token_nonce(token, len, nonce) < 0 ||
        !ack_redis_key_ack(q->key, sizeof(q->key), user, service) ||
        !(nklen = ack_redis_key_nonce(nkey, sizeof(nkey), nonce))) {
        q->verdict = ACK_MALFORMED;
        ar_complete(q, 0);
        return (struct ack_commit *)q;
    }
    q->grant_expires = (long long)grant_expires;
    q->grant_ttl = grant_expires > now ? (long long)(grant_expires - now) : 1;
    snprintf(nttl, sizeof(nttl), "%lld",
             nonce_expires > now ? (long long)(nonce_expires - now) : 1LL);
    struct ar_conn *rc = ar_slot(s, w);
    const char *argv[] = {"SET", nkey, "1", "NX", "EX", nttl};
    size_t lens[] = {3, nklen, 1, 2, 2, strlen(nttl)};
    if (!rc || ar_send(rc, q, 6, argv, lens) < 0) {
        q->verdict = ACK_STORE_FAILED;
        ar_complete(q, 1);
    }
    return (struct ack_commit *)q;
}

static void
ar_attach(struct ack_store *base, struct worker *w)
{
    ar_slot((struct ack_redis *)base, w);
}

/* After the workers' loops have ended: every connection closes and what is
 * in flight answers failure (handed to the workers, freed with them). */
static void
ar_close(struct ack_store *base)
{
    struct ack_redis *s = (struct ack_redis *)base;

    s->closing = 1;
    for (int i = 0; i < s->nslots; i++) {
        struct ar_conn *rc = s->slots[i];
        if (!rc)
            continue;
        if (rc->res) {
            rc->res->rc = NULL; /* its callback frees it, whenever it runs */
            if (rc->res->req)
                evdns_getaddrinfo_cancel(rc->res->req);
            rc->res = NULL;
        }
        ar_drop(rc, "closing");
        event_free(rc->retry);
        event_free(rc->timeout);
        free(rc);
    }
    free(s->slots);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static const struct ack_store_ops ar_ops = {
    .name = "redis",
    .commit = ar_commit,
    .lookup = ar_lookup,
    .attach = ar_attach,
    .healthy = ar_healthy,
    .close = ar_close,
};

struct ack_store *
ack_redis_open(const char *url, int nslots, char *err, size_t errlen)
{
    struct ack_redis *s = calloc(1, sizeof(*s));

    if (!s || nslots < 1 || !(s->slots = calloc((size_t)nslots, sizeof(*s->slots)))) {
        snprintf(err, errlen, "ack.store: out of memory");
        goto fail;
    }
    if (ack_redis_url_parse(url, &s->url, err, errlen) < 0)
        goto fail;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        snprintf(err, errlen, "ack.store: cannot make a mutex");
        goto fail;
    }
    ack_store_init(&s->base, &ar_ops);
    s->nslots = nslots;
    atomic_init(&s->ndown, 0);
    snprintf(s->where, sizeof(s->where),
             strchr(s->url.host, ':') ? "redis [%s]:%d/%d" : "redis %s:%d/%d", s->url.host,
             s->url.port, s->url.db);
    return &s->base;
fail:
    if (s)
        free(s->slots);
    free(s);
    return NULL;
}
