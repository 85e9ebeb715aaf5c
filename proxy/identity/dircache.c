/*
 * The in-process directory group cache: a hash table of users (separate
 * chaining, a power-of-two number of buckets sized for the capacity) and a
 * list in the order entries were stored, whose oldest end is evicted when the
 * table is full.  One mutex guards it; every call holds it for one probe and
 * a few pointer moves.  Sets are reference-counted, so a get() hands out a
 * reference instead of copying names under the lock.
 */
#include "aigate/identity/dircache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "aigate/core/hash.h"

struct dircache_set *
dircache_set_new(const char *const *names, size_t n)
{
    struct dircache_set *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    if (n && !(s->names = calloc(n, sizeof(*s->names))))
        goto fail;
    for (; s->n < n; s->n++)
        if (!(s->names[s->n] = strdup(names[s->n])))
            goto fail;
    return s;
fail:
    dircache_set_unref(s);
    return NULL;
}

struct dircache_set *
dircache_set_ref(struct dircache_set *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void
dircache_set_unref(struct dircache_set *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s->names);
    free(s);
}

int
dircache_get(struct dircache *c, const char *user, struct dircache_set **set, time_t *read_at)
{
    return c->ops->get(c, user, set, read_at);
}

void
dircache_put(struct dircache *c, const char *user, struct dircache_set *set, time_t read_at)
{
    c->ops->put(c, user, set, read_at);
}

void
dircache_clear(struct dircache *c)
{
    c->ops->clear(c);
}

void
dircache_free(struct dircache *c)
{
    if (c)
        c->ops->free(c);
}

/* ---- the local implementation ---------------------------------------------------- */

struct dcl_entry {
    struct dcl_entry *hnext;
    TAILQ_ENTRY(dcl_entry) age; /* head: stored longest ago */
    struct dircache_set *set;
    time_t read_at;
    uint64_t hash;
    char user[];
};

struct dcl {
    struct dircache base; /* first: the interface's pointer is ours */
    pthread_mutex_t mu;
    struct dcl_entry **buckets;
    size_t mask; /* buckets - 1 */
    size_t n, capacity;
    int keep_s;
    TAILQ_HEAD(, dcl_entry) by_age;
};

/* User names come from clients: keyed hash (hash.h). */
static uint64_t
dcl_hash(const char *s)
{
    return hash_bytes(s, strlen(s));
}

/* The link that points at user's entry (or the chain's terminating NULL). */
static struct dcl_entry **
dcl_slot(struct dcl *l, const char *user, uint64_t h)
{
    struct dcl_entry **pp = &l->buckets[h & l->mask];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->user, user) != 0))
        pp = &(*pp)->hnext;
    return pp;
}

static void
dcl_unlink(struct dcl *l, struct dcl_entry **pp)
{
    struct dcl_entry *e = *pp;
    *pp = e->hnext;
    TAILQ_REMOVE(&l->by_age, e, age);
    l->n--;
    dircache_set_unref(e->set);
    free(e);
}

static int
dcl_get(struct dircache *c, const char *user, struct dircache_set **set, time_t *read_at)
{
    struct dcl *l = (struct dcl *)c;
    uint64_t h = dcl_hash(user);
    int found = 0;
    pthread_mutex_lock(&l->mu);
    struct dcl_entry **pp = dcl_slot(l, user, h);
    if (*pp && time(NULL) - (*pp)->read_at > l->keep_s) {
        dcl_unlink(l, pp);
    } else if (*pp) {
        *set = dircache_set_ref((*pp)->set);
        *read_at = (*pp)->read_at;
        found = 1;
    }
    pthread_mutex_unlock(&l->mu);
    return found;
}

static void
dcl_put(struct dircache *c, const char *user, struct dircache_set *set, time_t read_at)
{
    struct dcl *l = (struct dcl *)c;
    uint64_t h = dcl_hash(user);
    size_t ulen = strlen(user);
    struct dcl_entry *e = malloc(sizeof(*e) + ulen + 1);
    if (!e)
        return; /* not remembered: the next request looks the user up again */
    memcpy(e->user, user, ulen + 1);
    e->hash = h;
    e->set = dircache_set_ref(set);
    e->read_at = read_at;
    pthread_mutex_lock(&l->mu);
    struct dcl_entry **pp = dcl_slot(l, user, h);
    if (*pp)
        dcl_unlink(l, pp);
    else if (l->n >= l->capacity) {
        struct dcl_entry *old = TAILQ_FIRST(&l->by_age);
        dcl_unlink(l, dcl_slot(l, old->user, old->hash));
    }
    pp = &l->buckets[h & l->mask];
    e->hnext = *pp;
    *pp = e;
    TAILQ_INSERT_TAIL(&l->by_age, e, age);
    l->n++;
    pthread_mutex_unlock(&l->mu);
}

static void
dcl_clear(struct dircache *c)
{
    struct dcl *l = (struct dcl *)c;
    pthread_mutex_lock(&l->mu);
    struct dcl_entry *e;
    while ((e = TAILQ_FIRST(&l->by_age)))
        dcl_unlink(l, dcl_slot(l, e->user, e->hash));
    pthread_mutex_unlock(&l->mu);
}

static void
dcl_free(struct dircache *c)
{
    struct dcl *l = (struct dcl *)c;
    dcl_clear(c);
    pthread_mutex_destroy(&l->mu);
    free(l->buckets);
    free(l);
}

static const struct dircache_ops dcl_ops = {
    .get = dcl_get,
    .put = dcl_put,
    .clear = dcl_clear,
    .free = dcl_free,
};

struct dircache *
dircache_local_new(size_t capacity, int keep_s)
{
    struct dcl *l = calloc(1, sizeof(*l));
    size_t nb = 16;
    if (!l || capacity == 0)
        goto fail;
    while (nb < capacity && nb < ((size_t)1 << 20))
        nb <<= 1;
    if (!(l->buckets = calloc(nb, sizeof(*l->buckets))))
        goto fail;
    l->base.ops = &dcl_ops;
    l->mask = nb - 1;
    l->capacity = capacity;
    l->keep_s = keep_s;
    TAILQ_INIT(&l->by_age);
    pthread_mutex_init(&l->mu, NULL);
    return &l->base;
fail:
    if (l)
        free(l->buckets);
    free(l);
    return NULL;
}
