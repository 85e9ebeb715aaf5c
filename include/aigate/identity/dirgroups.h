/*
 * A user's groups from the directory (LDAP: Active Directory, OpenLDAP, ...),
 * config section `ldap` (SPEC section 9).
 *
 * Lookups never run on an event loop.  A few threads each hold a connection
 * bound as the service account (ldap:// with optional StartTLS, or ldaps://)
 * and run them: the user's entry is found with user_filter (%u = the user
 * name, RFC 4515-escaped), then the groups either come from the entry's
 * group_attr values (memberOf: group DNs, named by their first RDN when it
 * is group_name_attr, else by reading group_name_attr from the group entry)
 * or from a search with group_filter (%d = the user's DN, %u = the name, both
 * escaped), named by group_name_attr.  A connection that broke is made again
 * at the next lookup.
 *
 * Answers are cached per user (struct dircache) for cache_ttl_s.  Only one
 * lookup per user is in flight: later requests for that user wait on it.  A
 * caller never waits longer than timeout_ms: at the deadline it is answered
 * with the user's last known groups (or none), and a lookup that finishes
 * later still fills the cache.  When the directory cannot be reached, the
 * groups last read are used for up to DIRGROUPS_STALE_S, then none; after a
 * failure the directory is not tried again for a back-off (DIRGROUPS_
 * BACKOFF_MIN_MS doubling up to DIRGROUPS_BACKOFF_MAX_MS) and requests are
 * answered at once from what is known.
 *
 * Completion follows include/aigate/net/upstream.h: the callback runs on the
 * requesting worker's thread, never from inside dirgroups_get(), exactly
 * once unless dirgroups_cancel() came first.
 */
#ifndef AIGATE_DIRGROUPS_H
#define AIGATE_DIRGROUPS_H

#include <stddef.h>
#include <time.h>

struct worker;
struct users;
struct dircache_set;

#define DIRGROUPS_STALE_S                                                                          \
    3600                    /* last known groups are used this long when the directory is down     \
                             */
#define DIRGROUPS_THREADS 2 /* lookup threads, each with its own connection */
#define DIRGROUPS_CACHE_USERS 100000 /* users remembered at most */
#define DIRGROUPS_MAX_GROUPS 1024    /* groups taken per user; more are ignored (logged) */
#define DIRGROUPS_NAME_MAX 256       /* longest group or user name, with its NUL */
#define DIRGROUPS_FILTER_MAX 16384   /* longest filter after expansion */
#define DIRGROUPS_BACKOFF_MIN_MS 500
#define DIRGROUPS_BACKOFF_MAX_MS 10000
#define DIRGROUPS_OP_TIMEOUT_MIN_MS 10000 /* a lookup's own limit: max(this, 2 * timeout_ms) */

/* The `ldap` section, validated by config_load(). */
struct dirgroups_cfg {
    char *uri;     /* one or more ldap:// or ldaps:// URIs, separated by spaces */
    char *base;    /* search base */
    char *bind_dn; /* NULL: anonymous */
    char *
        bind_password; /* bind_password_file's contents (secret; never logged); NULL if anonymous */
    char *user_filter; /* with %u */
    char *group_attr;  /* exactly one of group_attr ... */
    char *group_filter; /* ... and group_filter (with %d and/or %u) is set */
    char *group_name_attr;
    int cache_ttl_s;
    int timeout_ms;
    int starttls;
    char *ca_file; /* NULL: the system's trust store */
};

/*
 * Check c as config_load() built it (the password is read later): URIs
 * (ldap:// or ldaps://, StartTLS only with ldap://), attribute names, the
 * filters' escapes.  0, or -1 with *key the setting at fault and why.
 */
int dirgroups_cfg_check(const struct dirgroups_cfg *c, const char **key, char *why, size_t whylen);

/* Free c and what it holds, wiping the password.  NULL: no-op. */
void dirgroups_cfg_free(struct dirgroups_cfg *c);

/*
 * RFC 4515 escaping of an assertion value: NUL, '(', ')', '*', '\' and other
 * control bytes become \XX (two lower-case hex digits); everything else is
 * copied.  Writes at most cap bytes including the NUL; returns the length
 * written, or -1 if out is too small (out is then "").
 */
int dirgroups_escape(const char *in, char *out, size_t cap);

/*
 * Expand a filter template: %u is the escaped user, %d the escaped dn (NULL
 * when not known: then %d is an error), %% a '%'.  Same return as
 * dirgroups_escape().
 */
int dirgroups_filter_expand(const char *tmpl, const char *user, const char *dn, char *out,
                            size_t cap);

/*
 * Check a filter template at load: parenthesised, balanced, and using only
 * the escapes in allowed (e.g. "u" or "ud").  0, or -1 with a message in why.
 */
int dirgroups_filter_check(const char *tmpl, const char *allowed, char *why, size_t whylen);

/* Where a request's directory groups came from. */
enum dirgroups_source {
    DIRGROUPS_DIRECTORY,   /* read from the directory for this request */
    DIRGROUPS_CACHED,      /* read within cache_ttl_s */
    DIRGROUPS_LAST_KNOWN,  /* the directory is down or slow: groups read within DIRGROUPS_STALE_S */
    DIRGROUPS_UNAVAILABLE, /* the directory is down or slow and nothing recent is known: none */
};

/* "directory", "directory (cached)", "directory (last known, directory unavailable)",
 * "directory unavailable". */
const char *dirgroups_source_name(enum dirgroups_source s);

struct dirgroups_answer {
    enum dirgroups_source source;
    struct dircache_set *set; /* a reference its receiver owns; NULL: no groups */
};

/*
 * What is known without asking the directory, for a user whose cache entry
 * (have, read_at) is as given at time now: DIRGROUPS_CACHED while younger than
 * ttl_s; otherwise, when the directory cannot answer (down), DIRGROUPS_LAST_KNOWN
 * while younger than DIRGROUPS_STALE_S, else DIRGROUPS_UNAVAILABLE; and -1 when
 * the directory should be asked.  Pure.
 */
int dirgroups_judge(int have, time_t read_at, time_t now, int ttl_s, int down);

struct dirgroups;
struct dirgroups_req;

/*
 * Start the service for cfg (copied: the caller keeps cfg), with the
 * in-process cache.  Threads start now; the directory is first contacted by
 * the first lookup.  NULL with a message in err.
 */
struct dirgroups *dirgroups_new(const struct dirgroups_cfg *cfg, char *err, size_t errlen);

/*
 * New settings (a reload).  Nothing happens when they equal the current ones;
 * otherwise the cache is cleared and each thread connects again before its
 * next lookup.  Lookups in flight finish with the settings they started
 * with.  0, or -1 when out of memory (the old settings stay).
 */
int dirgroups_reconfigure(struct dirgroups *d, const struct dirgroups_cfg *cfg);

/*
 * Stop: blocked directory operations are interrupted and the threads joined.
 * Every request must have completed or been cancelled (workers are gone).
 * NULL: no-op.
 */
void dirgroups_free(struct dirgroups *d);

/* Called on w's thread with the answer (the callee owns ans.set). */
typedef void (*dirgroups_cb)(struct dirgroups_answer ans, void *arg);

/*
 * The directory groups of user for a request on worker w; call on w's thread.
 *   1  the answer is known now (fresh cache entry, or the directory is known
 *      to be down): *now holds it (the caller owns now->set); cb is not called.
 *   0  a lookup is needed: *reqp is its handle; cb(ans, arg) runs later on w's
 *      thread exactly once, at the latest timeout_ms from now, unless
 *      dirgroups_cancel(*reqp) is called before.  After cb the handle is gone.
 *  -1  out of memory: nothing is pending.
 * user must be 1 to DIRGROUPS_NAME_MAX - 1 bytes.
 */
int dirgroups_get(struct dirgroups *d, struct worker *w, const char *user, dirgroups_cb cb,
                  void *arg, struct dirgroups_answer *now, struct dirgroups_req **reqp);

/* Before cb ran, on w's thread: cb will not be called; the handle is gone. */
void dirgroups_cancel(struct dirgroups_req *r);

/* Counters since start, for /metrics. */
struct dirgroups_stats {
    unsigned long long hits;      /* answered from a fresh cache entry */
    unsigned long long lookups;   /* directory lookups made */
    unsigned long long failures;  /* lookups that could not reach or read the directory */
    unsigned long long timeouts;  /* requests answered at the timeout_ms deadline */
    unsigned long long fallbacks; /* requests answered while the directory was down */
};
void dirgroups_stats(struct dirgroups *d, struct dirgroups_stats *st);

/*
 * One blocking lookup with its own connection (for --explain; never on an
 * event loop).  1 with *set (owned by the caller; NULL when the user has no
 * groups or is not in the directory), or 0 with why set when the directory
 * could not be reached or read.
 */
int dirgroups_lookup_now(const struct dirgroups_cfg *cfg, const char *user,
                         struct dircache_set **set, char *why, size_t whylen);

/*
 * A user's groups with where each came from: the config `groups` first
 * (source "config"), then the directory's (source dirgroups_source_name())
 * that are not already listed.  What the policy and --explain both use.
 */
struct dirgroups_list {
    size_t n;
    const char **names;   /* n names, pointing into u and dir->set: keep both alive */
    const char **sources; /* n sources, static strings */
};

/* Build l for user from u (may be NULL) and dir (NULL: no directory).  0, or -1 when out
 * of memory.  l is empty (n = 0, NULL arrays) when there are no groups. */
int dirgroups_list_build(struct dirgroups_list *l, const struct users *u, const char *user,
                         const struct dirgroups_answer *dir);
void dirgroups_list_free(struct dirgroups_list *l);

#endif
