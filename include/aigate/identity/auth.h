/*
 * Proxy authentication: Basic credentials checked against an htpasswd file.
 *
 * struct auth_db is the loaded htpasswd file: immutable once loaded, so the
 * workers of one config snapshot share it without locks.  Each load gets a
 * new generation number; credential-cache keys include it, so a reload
 * (SIGHUP) never lets a cached credential outlive a changed password.
 *
 * Verifying a password costs one crypt(3) computation (bcrypt: tens of ms).
 * struct auth_cache remembers credentials that verified, per worker (single-
 * threaded, no locks), keyed by a SHA-256 digest of a per-cache random salt,
 * the generation, the user and the password: a plaintext password is never
 * stored.  The cache is reached only through auth_cache_check() and
 * auth_cache_put(), both keyed by that digest, so a shared store (shared
 * memory, a cluster cache) can replace it behind the same two calls.
 *
 * auth_basic_verify() is the whole check in one call.  A worker that must not
 * block its event loop on crypt can split it: auth_basic_parse() and
 * auth_cache_check() on the loop, auth_db_verify() on a helper thread (the db
 * is immutable and the call is thread-safe given its own struct crypt_data),
 * then auth_cache_put() back on the loop.
 *
 * struct auth_backoff slows down repeated failures per client address; it is
 * shared by all workers (mutex inside, taken only on failures and on the first
 * success after failures).  Callers answer an unknown user and a wrong
 * password identically.
 */
#ifndef AIGATE_AUTH_H
#define AIGATE_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

struct auth_db;
struct auth_cache;
struct auth_backoff;
struct crypt_data;

#define AUTH_HEADER_MAX 1024 /* longest Proxy-Authorization value accepted */
#define AUTH_USER_MAX 256    /* user name, including the terminating NUL */
#define AUTH_PASS_MAX 768    /* password, including the terminating NUL */

/* Decoded Basic credentials.  Holds a plaintext password: clear it
 * (auth_cred_clear) as soon as it is no longer needed. */
struct auth_cred {
    char user[AUTH_USER_MAX];
    char pass[AUTH_PASS_MAX];
    size_t ulen, plen;
};

/* Load an htpasswd file (user:hash lines, '#' comments, blank lines).
 * Accepts bcrypt ($2y$, $2b$, $2a$), SHA-512-crypt ($6$) and SHA-256-crypt
 * ($5$); anything else is an error "FILE:LINE: unsupported hash ...". */
struct auth_db *auth_db_load(const char *path, char *err, size_t errlen);
void auth_db_free(struct auth_db *db);
size_t auth_db_count(const struct auth_db *db);
uint64_t auth_db_generation(const struct auth_db *db);

/* Parse a Proxy-Authorization value ("Basic <base64>", scheme case-
 * insensitive, strict base64, at most AUTH_HEADER_MAX bytes).  0 or -1. */
int auth_basic_parse(const char *hdr_value, size_t len, struct auth_cred *cred);
void auth_cred_clear(struct auth_cred *cred);

/* One crypt computation: 1 if cred matches db, else 0.  An unknown user is
 * checked against a dummy hash so it takes as long as a known one.  cd must be
 * zeroed before its first use and not be shared between threads. */
int auth_db_verify(const struct auth_db *db, const struct auth_cred *cred, struct crypt_data *cd);

/* Per-worker cache of verified credentials: capacity entries at most, each
 * valid for ttl_s seconds.  Not thread-safe. */
struct auth_cache *auth_cache_new(size_t capacity, int ttl_s);
void auth_cache_free(struct auth_cache *cache);
/* 1 if cred verified against this db generation within the TTL. */
int auth_cache_check(struct auth_cache *cache, const struct auth_db *db,
                     const struct auth_cred *cred);
void auth_cache_put(struct auth_cache *cache, const struct auth_db *db,
                    const struct auth_cred *cred);
/* Counters for /metrics: cache hits and misses since creation. */
void auth_cache_stats(const struct auth_cache *cache, uint64_t *hits, uint64_t *misses);

/* Whole check: parse, cache, crypt.  Returns 1 and copies the user name into
 * user (usercap bytes, NUL-terminated) when valid, 0 otherwise.  cache may be
 * NULL (no caching). */
int auth_basic_verify(const struct auth_db *db, struct auth_cache *cache, const char *hdr_value,
                      size_t len, char *user, size_t usercap);

/* Failure back-off per client address (IPv4-mapped IPv6 counts as IPv4).
 * auth_backoff_fail() records a failure at now and returns how many ms the
 * caller must wait before answering 407: 0 for the first AUTH_BACKOFF_FREE
 * failures, then 250 ms doubling up to 8 s.  The count restarts after
 * AUTH_BACKOFF_WINDOW_S seconds without a failure, or on auth_backoff_ok().
 * Memory is bounded: the stalest entries are evicted. */
#define AUTH_BACKOFF_FREE 3
#define AUTH_BACKOFF_WINDOW_S 60
#define AUTH_BACKOFF_MIN_MS 250u
#define AUTH_BACKOFF_MAX_MS 8000u
struct auth_backoff *auth_backoff_new(void);
void auth_backoff_free(struct auth_backoff *b);
unsigned auth_backoff_fail(struct auth_backoff *b, const struct sockaddr *client, time_t now);
void auth_backoff_ok(struct auth_backoff *b, const struct sockaddr *client);

#endif
