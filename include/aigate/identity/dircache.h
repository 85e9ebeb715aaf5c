/*
 * Directory groups that were read, per user: the cache behind dirgroups.
 *
 * struct dircache_set is one user's list of group names as the directory
 * gave it: immutable and reference-counted, so the cache, a lookup thread
 * and any number of requests on any worker share one copy; the last unref
 * frees it.
 *
 * struct dircache is a small interface (get, put, clear) so that where the
 * groups are kept can change: dircache_local_new() keeps them in this
 * process (a mutex-guarded hash table with a bounded number of users, the
 * least recently read evicted first); a store shared by several nodes could
 * implement the same calls.  Every call may come from any thread, including
 * a worker's event loop, so an implementation must answer get() without
 * waiting on the network (a shared one would keep a local copy).
 *
 * An entry carries the wall-clock time it was read (read_at); what that age
 * means (fresh within cache_ttl_s, last known for an hour) is decided by
 * dirgroups, not here.  The cache only forgets entries older than the keep_s
 * it was made with.
 */
#ifndef AIGATE_DIRCACHE_H
#define AIGATE_DIRCACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

struct dircache_set {
    atomic_int refs;
    size_t n;
    char **names; /* n NUL-terminated names */
};

/* A set holding copies of names[0..n) (n may be 0), one reference; NULL when out of memory. */
struct dircache_set *dircache_set_new(const char *const *names, size_t n);
/* Another reference to s (NULL: NULL). */
struct dircache_set *dircache_set_ref(struct dircache_set *s);
/* Drop a reference; the last one frees the set.  NULL: no-op. */
void dircache_set_unref(struct dircache_set *s);

struct dircache;

struct dircache_ops {
    /* 1 with *set (a new reference) and *read_at when user has an entry, else 0. */
    int (*get)(struct dircache *c, const char *user, struct dircache_set **set, time_t *read_at);
    /* Store set (the cache takes its own reference) as user's groups read at read_at. */
    void (*put)(struct dircache *c, const char *user, struct dircache_set *set, time_t read_at);
    /* Forget every entry (the directory settings changed). */
    void (*clear)(struct dircache *c);
    void (*free)(struct dircache *c);
};

struct dircache {
    const struct dircache_ops *ops;
};

/*
 * The in-process cache: at most capacity users (the least recently stored is
 * evicted), entries older than keep_s seconds are forgotten.  NULL when out
 * of memory.  Thread-safe.
 */
struct dircache *dircache_local_new(size_t capacity, int keep_s);

/* The interface's calls, for readability at call sites.  dircache_free(NULL) is a no-op. */
int dircache_get(struct dircache *c, const char *user, struct dircache_set **set, time_t *read_at);
void dircache_put(struct dircache *c, const char *user, struct dircache_set *set, time_t read_at);
void dircache_clear(struct dircache *c);
void dircache_free(struct dircache *c);

#endif
