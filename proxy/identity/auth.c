/*
 * Basic proxy authentication against an htpasswd file, with a per-worker
 * cache of verified credentials and a shared per-address failure back-off.
 *
 * Invariants: a loaded auth_db never changes (shared read-only by workers);
 * the cache never holds a password, only salted digests that include the db
 * generation; an unknown user costs the same crypt as a known one; the
 * back-off table has a fixed size whatever clients send.
 */
#include "aigate/identity/auth.h"
#include "aigate/core/hash.h"

#include <crypt.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <netinet/in.h>

#define AUTH_LINE_MAX 4096

/* Checked against when the user is unknown and the db holds no bcrypt hash;
 * the password behind it is random and was thrown away. */
static const char AUTH_DUMMY_HASH[] =
    "$2y$10$OLNv.BztpJBjPOx6eh5TJu./KfCOEvhkiQlgJYv6M0GoUZK16afN2";

struct auth_user {
    char *name;
    char *hash;
    unsigned line;
};

struct auth_db {
    struct auth_user *v; /* sorted by name */
    size_t n;
    uint64_t generation;
    const char *dummy; /* hash used for unknown users */
};

static atomic_uint_fast64_t auth_generation;

static int auth_fail(char *err, size_t errlen, const char *path, unsigned line, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));

static int
auth_fail(char *err, size_t errlen, const char *path, unsigned line, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line)
        snprintf(err, errlen, "%s:%u: %s", path, line, msg);
    else
        snprintf(err, errlen, "%s: %s", path, msg);
    return -1;
}

static int
auth_is_b64crypt(int c)
{
    return c == '.' || c == '/' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
           (c >= 'a' && c <= 'z');
}

static size_t
auth_b64crypt_span(const char *s)
{
    size_t i = 0;
    while (auth_is_b64crypt((unsigned char)s[i]))
        i++;
    return i;
}

/* $2y$NN$ + 22 salt + 31 hash characters, cost 04..31. */
static int
auth_hash_bcrypt_ok(const char *h)
{
    if (h[0] != '$' || h[1] != '2' || (h[2] != 'a' && h[2] != 'b' && h[2] != 'y') || h[3] != '$')
        return 0;
    if (h[4] < '0' || h[4] > '3' || h[5] < '0' || h[5] > '9' || h[6] != '$')
        return 0;
    int cost = (h[4] - '0') * 10 + (h[5] - '0');
    return cost >= 4 && cost <= 31 && auth_b64crypt_span(h + 7) == 53 && h[60] == '\0';
}

/* $5$ / $6$ [rounds=N$] salt(1..16) $ hash(43 / 86). */
static int
auth_hash_sha_ok(const char *h)
{
    size_t want;
    if (strncmp(h, "$5$", 3) == 0)
        want = 43;
    else if (strncmp(h, "$6$", 3) == 0)
        want = 86;
    else
        return 0;
    const char *p = h + 3;
    if (strncmp(p, "rounds=", 7) == 0) {
        p += 7;
        size_t digits = strspn(p, "0123456789");
        if (digits == 0 || digits > 9 || p[digits] != '$')
            return 0;
        p += digits + 1;
    }
    size_t salt = auth_b64crypt_span(p);
    if (salt == 0 || salt > 16 || p[salt] != '$')
        return 0;
    p += salt + 1;
    return auth_b64crypt_span(p) == want && p[want] == '\0';
}

static int
auth_user_cmp(const void *a, const void *b)
{
    const struct auth_user *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return (x->line > y->line) - (x->line < y->line);
}

static int
auth_db_add(struct auth_db *db, size_t *cap, const char *name, const char *hash, unsigned line)
{
    if (db->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct auth_user *nv = realloc(db->v, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        db->v = nv;
        *cap = ncap;
    }
    struct auth_user *u = &db->v[db->n];
    u->name = strdup(name);
    u->hash = strdup(hash);
    u->line = line;
    if (!u->name || !u->hash) {
        free(u->name);
        free(u->hash);
        return -1;
    }
    db->n++;
    return 0;
}

/* Parse one line (already stripped of its end-of-line).  0, or -1 with err. */
static int
auth_db_line(struct auth_db *db, size_t *cap, char *s, const char *path, unsigned line, char *err,
             size_t errlen)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        s[--len] = '\0';
    if (len == 0 || s[0] == '#')
        return 0;
    char *colon = strchr(s, ':');
    if (!colon || colon == s)
        return auth_fail(err, errlen, path, line, "expected user:hash");
    *colon = '\0';
    const char *hash = colon + 1;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return auth_fail(err, errlen, path, line, "control character in user name");
    if (strlen(s) >= AUTH_USER_MAX)
        return auth_fail(err, errlen, path, line, "user name longer than %d bytes",
                         AUTH_USER_MAX - 1);
    if (!auth_hash_bcrypt_ok(hash) && !auth_hash_sha_ok(hash))
        return auth_fail(err, errlen, path, line,
                         "unsupported hash for user \"%s\" (use bcrypt $2y$, $6$ or $5$)", s);
    if (auth_db_add(db, cap, s, hash, line) < 0)
        return auth_fail(err, errlen, path, line, "out of memory");
    return 0;
}

struct auth_db *
auth_db_load(const char *path, char *err, size_t errlen)
{
    struct auth_db *db = calloc(1, sizeof(*db));
    FILE *f = NULL;
    char *buf = NULL;
    size_t bufcap = 0, cap = 0;
    unsigned line = 0;

    if (!db) {
        auth_fail(err, errlen, path, 0, "out of memory");
        goto fail;
    }
    if (!(f = fopen(path, "re"))) {
        auth_fail(err, errlen, path, 0, "cannot open: %s", strerror(errno));
        goto fail;
    }
    for (;;) {
        errno = 0;
        ssize_t got = getline(&buf, &bufcap, f);
        if (got < 0) {
            if (errno) {
                auth_fail(err, errlen, path, line + 1, "read error: %s", strerror(errno));
                goto fail;
            }
            break;
        }
        line++;
        if (got > AUTH_LINE_MAX) {
            auth_fail(err, errlen, path, line, "line longer than %d bytes", AUTH_LINE_MAX);
            goto fail;
        }
        if ((size_t)got != strlen(buf)) {
            auth_fail(err, errlen, path, line, "NUL byte in line");
            goto fail;
        }
        while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
            buf[--got] = '\0';
        if (auth_db_line(db, &cap, buf, path, line, err, errlen) < 0)
            goto fail;
    }
    if (db->n > 1)
        qsort(db->v, db->n, sizeof(*db->v), auth_user_cmp);
    for (size_t i = 1; i < db->n; i++)
        if (strcmp(db->v[i - 1].name, db->v[i].name) == 0) {
            auth_fail(err, errlen, path, db->v[i].line, "duplicate user \"%s\" (first on line %u)",
                      db->v[i].name, db->v[i - 1].line);
            goto fail;
        }
    db->dummy = AUTH_DUMMY_HASH;
    for (size_t i = 0; i < db->n; i++)
        if (db->v[i].hash[1] == '2') {
            db->dummy = db->v[i].hash;
            break;
        }
    if (db->dummy == AUTH_DUMMY_HASH && db->n > 0)
        db->dummy = db->v[0].hash;
    db->generation = atomic_fetch_add(&auth_generation, 1) + 1;
    free(buf);
    fclose(f);
    return db;
fail:
    free(buf);
    if (f)
        fclose(f);
    auth_db_free(db);
    return NULL;
}

void
auth_db_free(struct auth_db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->n; i++) {
        free(db->v[i].name);
        free(db->v[i].hash);
    }
    free(db->v);
    free(db);
}

size_t
auth_db_count(const struct auth_db *db)
{
    return db->n;
}

uint64_t
auth_db_generation(const struct auth_db *db)
{
    return db->generation;
}

/*
 * Strict RFC 4648 base64: padded and canonical (unused bits zero), decoded by
 * OpenSSL.  Canonical means the encoding of what it decodes to is the input
 * itself, which also refuses the whitespace EVP_DecodeBlock would skip.
 * Returns the decoded length or -1.
 */
static long
auth_b64_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
    unsigned char again[AUTH_HEADER_MAX + 1];
    int n;

    if (len == 0 || len % 4 != 0 || len > AUTH_HEADER_MAX || len / 4 * 3 > cap)
        return -1;
    if ((n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len)) < 0)
        return -1;
    n -= (s[len - 1] == '=') + (s[len - 2] == '=');
    int ok = n >= 0 && EVP_EncodeBlock(again, out, n) == (int)len && memcmp(again, s, len) == 0;
    OPENSSL_cleanse(again, sizeof(again));
    return ok ? n : -1;
}

int
auth_basic_parse(const char *v, size_t len, struct auth_cred *cred)
{
    unsigned char dec[AUTH_HEADER_MAX];
    size_t i = 0;
    int rc = -1;

    memset(cred, 0, sizeof(*cred));
    if (len > AUTH_HEADER_MAX)
        return -1;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    if (len - i < 6 || strncasecmp(v + i, "basic", 5) != 0 || v[i + 5] != ' ')
        return -1;
    i += 6;
    while (i < len && v[i] == ' ')
        i++;
    size_t end = len;
    while (end > i && (v[end - 1] == ' ' || v[end - 1] == '\t'))
        end--;
    long n = auth_b64_decode(v + i, end - i, dec, sizeof(dec));
    if (n < 0)
        goto out;
    unsigned char *colon = memchr(dec, ':', (size_t)n);
    if (!colon || colon == dec || memchr(dec, '\0', (size_t)n))
        goto out;
    size_t ulen = (size_t)(colon - dec), plen = (size_t)n - ulen - 1;
    if (ulen >= sizeof(cred->user) || plen >= sizeof(cred->pass))
        goto out;
    for (size_t k = 0; k < ulen; k++)
        if (dec[k] < 0x20 || dec[k] == 0x7f)
            goto out;
    memcpy(cred->user, dec, ulen);
    memcpy(cred->pass, colon + 1, plen);
    cred->ulen = ulen;
    cred->plen = plen;
    rc = 0;
out:
    OPENSSL_cleanse(dec, sizeof(dec));
    if (rc < 0)
        auth_cred_clear(cred);
    return rc;
}

void
auth_cred_clear(struct auth_cred *cred)
{
    OPENSSL_cleanse(cred, sizeof(*cred));
}

static const struct auth_user *
auth_db_find(const struct auth_db *db, const char *name)
{
    size_t lo = 0, hi = db->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, db->v[mid].name);
        if (c == 0)
            return &db->v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int
auth_db_verify(const struct auth_db *db, const struct auth_cred *cred, struct crypt_data *cd)
{
    const struct auth_user *u = auth_db_find(db, cred->user);
    const char *hash = u ? u->hash : db->dummy;
    const char *out = crypt_r(cred->pass, hash, cd);
    size_t hlen = strlen(hash);
    int ok = out && strlen(out) == hlen && CRYPTO_memcmp(out, hash, hlen) == 0;
    OPENSSL_cleanse(cd->output, sizeof(cd->output));
    return u != NULL && ok;
}

/*
 * The credential cache: set-associative (AUTH_CACHE_WAYS entries per set,
 * least recently used evicted within a set), indexed by the digest itself,
 * which is uniformly distributed.  Lookups are O(1) and never allocate.
 */
#define AUTH_CACHE_WAYS 4

struct auth_cache_entry {
    uint8_t key[SHA256_DIGEST_LENGTH];
    time_t expires; /* monotonic seconds; 0 = empty */
    uint64_t used;  /* LRU stamp */
};

struct auth_cache {
    struct auth_cache_entry *v;
    size_t nsets; /* power of two */
    int ttl_s;
    uint64_t clock;
    uint64_t hits, misses;
    uint8_t salt[16];
    struct crypt_data *cd; /* for auth_basic_verify; ~32 KiB, kept off the stack */
};

static time_t
auth_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

struct auth_cache *
auth_cache_new(size_t capacity, int ttl_s)
{
    struct auth_cache *c;
    size_t nsets = 1;

    if (capacity == 0 || ttl_s <= 0) {
        errno = EINVAL;
        return NULL;
    }
    while (nsets * AUTH_CACHE_WAYS < capacity && nsets < ((size_t)1 << 24))
        nsets <<= 1;
    if (!(c = calloc(1, sizeof(*c))))
        return NULL;
    c->nsets = nsets;
    c->ttl_s = ttl_s;
    c->v = calloc(nsets * AUTH_CACHE_WAYS, sizeof(*c->v));
    c->cd = calloc(1, sizeof(*c->cd));
    if (!c->v || !c->cd || RAND_bytes(c->salt, sizeof(c->salt)) != 1) {
        auth_cache_free(c);
        return NULL;
    }
    return c;
}

void
auth_cache_free(struct auth_cache *c)
{
    if (!c)
        return;
    free(c->v);
    if (c->cd)
        OPENSSL_cleanse(c->cd, sizeof(*c->cd));
    free(c->cd);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

static void
auth_cache_key(const struct auth_cache *c, const struct auth_db *db, const struct auth_cred *cred,
               uint8_t key[SHA256_DIGEST_LENGTH])
{
    unsigned char buf[sizeof(c->salt) + 8 + AUTH_USER_MAX + 1 + AUTH_PASS_MAX];
    size_t n = 0;
    memcpy(buf, c->salt, sizeof(c->salt));
    n += sizeof(c->salt);
    for (int i = 0; i < 8; i++)
        buf[n++] = (unsigned char)(db->generation >> (8 * i));
    memcpy(buf + n, cred->user, cred->ulen);
    n += cred->ulen;
    buf[n++] = ':';
    memcpy(buf + n, cred->pass, cred->plen);
    n += cred->plen;
    SHA256(buf, n, key);
    OPENSSL_cleanse(buf, n);
}

static struct auth_cache_entry *
auth_cache_set(const struct auth_cache *c, const uint8_t *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return &c->v[(h & (c->nsets - 1)) * AUTH_CACHE_WAYS];
}

int
auth_cache_check(struct auth_cache *c, const struct auth_db *db, const struct auth_cred *cred)
{
    uint8_t key[SHA256_DIGEST_LENGTH];
    time_t now = auth_monotonic();
    auth_cache_key(c, db, cred, key);
    struct auth_cache_entry *set = auth_cache_set(c, key);
    for (int w = 0; w < AUTH_CACHE_WAYS; w++) {
        struct auth_cache_entry *e = &set[w];
        if (e->expires == 0 || CRYPTO_memcmp(e->key, key, sizeof(key)) != 0)
            continue;
        if (now >= e->expires) {
            memset(e, 0, sizeof(*e));
            break;
        }
        e->used = ++c->clock;
        c->hits++;
        return 1;
    }
    c->misses++;
    return 0;
}

void
auth_cache_put(struct auth_cache *c, const struct auth_db *db, const struct auth_cred *cred)
{
    uint8_t key[SHA256_DIGEST_LENGTH];
    auth_cache_key(c, db, cred, key);
    struct auth_cache_entry *set = auth_cache_set(c, key), *victim = &set[0];
    for (int w = 0; w < AUTH_CACHE_WAYS; w++) {
        struct auth_cache_entry *e = &set[w];
        if (e->expires != 0 && memcmp(e->key, key, sizeof(key)) == 0) {
            victim = e;
            break;
        }
        if (e->expires == 0 || (victim->expires != 0 && e->used < victim->used))
            victim = e;
    }
    memcpy(victim->key, key, sizeof(key));
    victim->expires = auth_monotonic() + c->ttl_s;
    victim->used = ++c->clock;
}

void
auth_cache_stats(const struct auth_cache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = c->hits;
    *misses = c->misses;
}

int
auth_basic_verify(const struct auth_db *db, struct auth_cache *cache, const char *hdr_value,
                  size_t len, char *user, size_t usercap)
{
    struct auth_cred cred;
    struct crypt_data *cd = NULL;
    int ok = 0;

    if (auth_basic_parse(hdr_value, len, &cred) < 0)
        return 0;
    if (cred.ulen >= usercap)
        goto out;
    if (cache && auth_cache_check(cache, db, &cred)) {
        ok = 1;
    } else {
        cd = cache ? cache->cd : calloc(1, sizeof(*cd));
        if (!cd)
            goto out;
        ok = auth_db_verify(db, &cred, cd);
        if (ok && cache)
            auth_cache_put(cache, db, &cred);
    }
    if (ok)
        memcpy(user, cred.user, cred.ulen + 1);
out:
    if (cd && !cache)
        free(cd);
    auth_cred_clear(&cred);
    return ok;
}

/*
 * Failure back-off: a fixed table of AUTH_BO_SETS sets of AUTH_BO_WAYS
 * entries, indexed by a keyed hash of the address (so clients cannot aim at
 * one set), the entry with the oldest failure evicted when a set is full.
 * used[] counts live entries per set so auth_backoff_ok() can skip the mutex
 * for the addresses that never failed.
 */
#define AUTH_BO_SETS 512
#define AUTH_BO_WAYS 8

struct auth_bo_entry {
    uint8_t addr[16];
    time_t last; /* 0 = empty */
    unsigned fails;
};

struct auth_backoff {
    pthread_mutex_t mu;
    atomic_uint used[AUTH_BO_SETS];
    struct auth_bo_entry v[AUTH_BO_SETS * AUTH_BO_WAYS];
};

struct auth_backoff *
auth_backoff_new(void)
{
    struct auth_backoff *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return NULL;
    }
    for (size_t i = 0; i < AUTH_BO_SETS; i++)
        atomic_init(&b->used[i], 0);
    return b;
}

void
auth_backoff_free(struct auth_backoff *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static void
auth_bo_addr(const struct sockaddr *sa, uint8_t addr[16])
{
    memset(addr, 0, 16);
    if (sa->sa_family == AF_INET) {
        addr[10] = addr[11] = 0xff;
        memcpy(addr + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static size_t
auth_bo_set(const uint8_t addr[16])
{
    return (size_t)(hash_bytes(addr, 16) % AUTH_BO_SETS);
}

unsigned
auth_backoff_fail(struct auth_backoff *b, const struct sockaddr *client, time_t now)
{
    uint8_t addr[16];
    auth_bo_addr(client, addr);
    size_t set = auth_bo_set(addr);
    struct auth_bo_entry *base = &b->v[set * AUTH_BO_WAYS], *e = NULL, *victim = &base[0];

    pthread_mutex_lock(&b->mu);
    for (int w = 0; w < AUTH_BO_WAYS; w++) {
        struct auth_bo_entry *x = &base[w];
        if (x->last != 0 && memcmp(x->addr, addr, 16) == 0) {
            e = x;
            break;
        }
        if (x->last == 0 || (victim->last != 0 && x->last < victim->last))
            victim = x;
    }
    if (!e) {
        e = victim;
        if (e->last == 0)
            atomic_fetch_add(&b->used[set], 1);
        memcpy(e->addr, addr, 16);
        e->fails = 0;
    } else if (now - e->last >= AUTH_BACKOFF_WINDOW_S) {
        e->fails = 0;
    }
    if (e->fails < 64)
        e->fails++;
    e->last = now > 0 ? now : 1;
    unsigned fails = e->fails;
    pthread_mutex_unlock(&b->mu);

    if (fails <= AUTH_BACKOFF_FREE)
        return 0;
    unsigned shift = fails - AUTH_BACKOFF_FREE - 1;
    if (shift >= 6)
        return AUTH_BACKOFF_MAX_MS;
    unsigned ms = AUTH_BACKOFF_MIN_MS << shift;
    return ms < AUTH_BACKOFF_MAX_MS ? ms : AUTH_BACKOFF_MAX_MS;
}

void
auth_backoff_ok(struct auth_backoff *b, const struct sockaddr *client)
{
    uint8_t addr[16];
    auth_bo_addr(client, addr);
    size_t set = auth_bo_set(addr);
    if (atomic_load_explicit(&b->used[set], memory_order_relaxed) == 0)
        return;
    struct auth_bo_entry *base = &b->v[set * AUTH_BO_WAYS];
    pthread_mutex_lock(&b->mu);
    for (int w = 0; w < AUTH_BO_WAYS; w++)
        if (base[w].last != 0 && memcmp(base[w].addr, addr, 16) == 0) {
            memset(&base[w], 0, sizeof(base[w]));
            atomic_fetch_sub(&b->used[set], 1);
            break;
        }
    pthread_mutex_unlock(&b->mu);
}
