/*
 * Workers: one event loop per thread.  Each worker owns its listeners (one
 * SO_REUSEPORT socket per listen address, so the kernel spreads accepts with
 * no shared lock), its connections, its upstream pool, its resolver and its
 * current config snapshot.  The main thread talks to workers only by
 * message: a new snapshot on reload, a stop on shutdown.
 */
#ifndef AIGATE_WORKER_H
#define AIGATE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/queue.h>
#include <time.h>

#include "aigate/http/exchange.h"

struct config;
struct conn;
struct audit;
struct auth_cache;
struct auth_backoff;
struct upstream_pool;
struct ack_store;
struct tls_leaf_cache;
struct offload_job;
struct dirgroups;

/* Process-wide state shared by all workers. */
struct runtime {
    struct audit *audit;               /* NULL: audit log disabled */
    struct auth_backoff *auth_backoff; /* shared across workers */
    atomic_int nconns;                 /* open client connections, all workers */
    atomic_ullong requests;            /* served requests, all workers */
    unsigned char ack_key[32];         /* HMAC key of caution acknowledgement tokens */
    struct ack_store *acks;            /* acknowledgements, shared by all workers */
    atomic_int draining;               /* SIGTERM: stopping, /healthz says so */
    atomic_ullong accept_paused;       /* accepting paused for lack of descriptors */
    atomic_ullong proxy_refused;       /* connections refused for their PROXY protocol header */
    /* Groups from the directory (config `ldap`), or NULL.  Set by the main thread before a
     * snapshot naming ldap reaches a worker, read only for such snapshots; never replaced. */
    struct dirgroups *dirgroups;
};

extern struct runtime rt;

struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct evdns_base *dns;
    struct evdns_base **old_dns; /* replaced by reloads; freed at exit */
    size_t nold_dns;
    struct evconnlistener **listeners;
    size_t nlisteners;

    struct config *cfg; /* this worker's reference to the current snapshot */
    pthread_mutex_t mu; /* guards pending/stop_requested only */
    struct config *pending;
    int stop_requested;
    int wake_fd; /* eventfd: worker_wake() */
    struct event *wake_ev;
    struct event *grace_ev;
    int stopping;

    TAILQ_HEAD(, conn) conns;
    size_t nconns;
    struct upstream_pool *pool;
    struct auth_cache *auth_cache;
    struct evbuffer *scratch; /* builds a response head before one add to the client */
    struct exchange_env xenv; /* what request forwarding needs of this worker */
    void (*on_conn_gone)(struct worker *w); /* a connection was freed */
    /* minted leaves for this worker's CA; NULL without interception */
    struct tls_leaf_cache *leaf_cache;
    pthread_mutex_t done_mu; /* guards done_jobs: the offload pool hands jobs back */
    struct offload_job *done_jobs;
    struct event *exited_ev; /* the owner's (main thread) event, activated when the loop ended */
    struct event *accept_ev; /* resumes accepting after a pause for lack of descriptors */
    int accept_paused;
    time_t accept_logged;         /* last "out of descriptors" warning */
    unsigned long accept_refused; /* pauses since that warning */
};

/* Create the worker's loop and listeners for cfg; 0 or -1 (logged). */
int worker_init(struct worker *w, int id, struct config *cfg);
/* Start the thread; when its loop has ended and its connections are gone it activates exited_ev
 * (an event of the caller's loop, may be NULL). */
int worker_start(struct worker *w, struct event *exited_ev);
/* From any thread: the worker's loop runs its messages and the jobs handed back to it. */
void worker_wake(struct worker *w);
/*
 * What worker_wake() needs, on w->base (worker_init() does this; tests that
 * run a loop of their own as a worker call it).  worker_wake_free() runs the
 * jobs still handed back, then releases it.
 */
int worker_wake_init(struct worker *w);
void worker_wake_free(struct worker *w);
/* Hand a new snapshot to the worker (takes a reference).  Thread-safe. */
void worker_post_config(struct worker *w, struct config *cfg);
/* Ask the worker to stop accepting and drain within the grace period. */
void worker_post_stop(struct worker *w);
/* Wait for the worker's thread; then (after offload_stop) worker_free() releases it. */
void worker_join(struct worker *w);
void worker_free(struct worker *w);

#endif
