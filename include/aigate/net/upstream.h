/*
 * Origin connections: asynchronous name resolution (evdns, honouring the
 * configured hosts file), connect with a timeout, trying each resolved
 * address in turn, and a per-worker keep-alive pool keyed by host:port.
 *
 * upstream_get() never calls back synchronously: completion is always
 * delivered from the event loop, so the caller's state is consistent when
 * the callback runs.  The caller owns a returned struct upstream until it
 * hands it back with upstream_release().
 */
#ifndef AIGATE_UPSTREAM_H
#define AIGATE_UPSTREAM_H

#include <stdint.h>

struct worker;
struct bufferevent;
struct upstream_pool;
struct upstream_req;
struct ssl_ctx_st;

struct upstream {
    struct bufferevent *bev;
    struct upstream_pool *pool;
    char key[272];   /* "host:port" */
    unsigned bucket; /* of key in the pool: hashed once, when connected */
    int reused;      /* came from the pool */
    struct upstream *next_idle;
    struct upstream *prev_idle;
    struct upstream *lru_next, *lru_prev;
    long idle_since_ms;
};

enum upstream_err {
    UPSTREAM_OK = 0,
    UPSTREAM_ERR_DNS,
    UPSTREAM_ERR_REFUSED,
    UPSTREAM_ERR_TIMEOUT,
    UPSTREAM_ERR_SELF, /* resolves to one of our own listeners */
    UPSTREAM_ERR_TLS,  /* TLS handshake or origin certificate verification failed */
    UPSTREAM_ERR_INTERNAL,
};

/* detail: a human explanation of err (e.g. the certificate problem), or NULL. */
typedef void (*upstream_cb)(struct upstream *u, enum upstream_err err, const char *detail,
                            void *arg);

struct upstream_pool *upstream_pool_new(struct worker *w);
void upstream_pool_free(struct upstream_pool *p);
/* Close every idle connection (shutdown). */
void upstream_pool_flush(struct upstream_pool *p);

/*
 * Get a connection to host:port, from the pool when allow_reuse, else new.
 * With tls (a client context), the connection speaks TLS to the origin,
 * with SNI and the origin's certificate verified for host; plain and TLS
 * connections are pooled apart.
 * Returns a handle for upstream_cancel(), or NULL on immediate failure
 * (out of memory).  cb runs exactly once unless cancelled.
 */
struct upstream_req *upstream_get(struct upstream_pool *p, const char *host, uint16_t port,
                                  struct ssl_ctx_st *tls, int allow_reuse, upstream_cb cb,
                                  void *arg);
void upstream_cancel(struct upstream_req *r);

/* Hand a connection back: to the pool if reusable, else closed. */
void upstream_release(struct upstream *u, int reusable);

const char *upstream_err_name(enum upstream_err e);

#endif
