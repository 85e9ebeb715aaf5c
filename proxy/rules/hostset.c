/*
 * Host-name pattern sets (see hostset.h for the semantics).
 *
 * One open-addressing table with linear probing, kept at most half full, holds
 * every (name, wildcard) key with its keyed hash (hash.h).  Entries are never
 * removed, so probing stops at the first empty slot.  Matching never
 * allocates: it normalises into a caller stack buffer and probes at most
 * (labels + 1) keys.
 */
#include "aigate/rules/hostset.h"
#include "aigate/core/hash.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct hs_entry {
    char *key; /* NULL: empty slot */
    uint32_t len;
    uint32_t hash;
    int wild;
    void *data;
};

struct hostset {
    struct hs_entry *tab;
    size_t cap; /* power of two */
    size_t n;
    uint64_t wild_labels; /* bit k: a wildcard key of k labels exists (63: 63 or more) */
};

/* The keyed hash (hash.h); the wildcard flag flips bits so "x" and "*.x" part. */
static uint32_t
hs_hash(const char *s, size_t len, int wild)
{
    return (uint32_t)hash_bytes(s, len) ^ (wild ? 0x5bd1e995u : 0);
}

struct hostset *
hostset_new(void)
{
    struct hostset *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->cap = 16;
    if (!(s->tab = calloc(s->cap, sizeof(*s->tab)))) {
        free(s);
        return NULL;
    }
    return s;
}

void
hostset_free(struct hostset *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->cap; i++)
        free(s->tab[i].key);
    free(s->tab);
    free(s);
}

size_t
hostset_count(const struct hostset *s)
{
    return s ? s->n : 0;
}

static struct hs_entry *
hs_find(const struct hostset *s, const char *name, size_t len, int wild, uint32_t h)
{
    size_t mask = s->cap - 1;

    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct hs_entry *e = &s->tab[i];

        if (!e->key)
            return e;
        if (e->hash == h && e->len == len && e->wild == wild && memcmp(e->key, name, len) == 0)
            return e;
    }
}

/* Bit of wild_labels for a name of this many labels. */
static uint64_t
hs_depth_bit(unsigned labels)
{
    return (uint64_t)1 << (labels > 63 ? 63 : labels);
}

static unsigned
hs_labels(const char *name, size_t len)
{
    unsigned n = 1;

    for (size_t i = 0; i < len; i++)
        n += name[i] == '.';
    return n;
}

static int
hs_grow(struct hostset *s)
{
    size_t ncap = s->cap * 2;
    struct hs_entry *ntab = calloc(ncap, sizeof(*ntab));
    struct hs_entry *old = s->tab;
    size_t ocap = s->cap;

    if (!ntab)
        return -1;
    s->tab = ntab;
    s->cap = ncap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].key)
            *hs_find(s, old[i].key, old[i].len, old[i].wild, old[i].hash) = old[i];
    free(old);
    return 0;
}

int
hostset_put(struct hostset *s, const char *name, size_t len, int wildcard, void *data, void **prev)
{
    uint32_t h = hs_hash(name, len, wildcard);
    struct hs_entry *e = hs_find(s, name, len, wildcard, h);

    if (e->key) {
        if (prev)
            *prev = e->data;
        return 1;
    }
    if ((s->n + 1) * 2 > s->cap) {
        if (hs_grow(s) < 0)
            return -1;
        e = hs_find(s, name, len, wildcard, h);
    }
    if (!(e->key = malloc(len + 1)))
        return -1;
    memcpy(e->key, name, len);
    e->key[len] = '\0';
    e->len = (uint32_t)len;
    e->hash = h;
    e->wild = wildcard != 0;
    e->data = data;
    s->n++;
    if (wildcard)
        s->wild_labels |= hs_depth_bit(hs_labels(name, len));
    return 0;
}

void *
hostset_get(const struct hostset *s, const char *name, size_t len, int wildcard)
{
    if (!s || s->n == 0)
        return NULL;
    return hs_find(s, name, len, wildcard != 0, hs_hash(name, len, wildcard != 0))->data;
}

static int
hs_lookup(const struct hostset *s, const char *name, size_t len, int wild, void **data)
{
    struct hs_entry *e = hs_find(s, name, len, wild, hs_hash(name, len, wild));

    if (!e->key)
        return 0;
    *data = e->data;
    return 1;
}

/*
 * Walk the keys that can match host, most specific first: the exact host,
 * then each parent suffix as a wildcard, skipping suffixes with a label count
 * no wildcard has (so a deep host costs a probe per wildcard depth in use).
 */
size_t
hostset_match_all(const struct hostset *s, const char *host, size_t len, void **out, size_t max)
{
    unsigned labels;
    size_t n = 0;

    if (!s || s->n == 0 || len == 0 || max == 0)
        return 0;
    if (hs_lookup(s, host, len, 0, &out[n]))
        n++;
    labels = hs_labels(host, len);
    for (size_t i = 0; i < len && n < max && s->wild_labels; i++) {
        if (host[i] != '.')
            continue;
        labels--; /* of the suffix after this dot */
        if ((s->wild_labels & hs_depth_bit(labels)) &&
            hs_lookup(s, host + i + 1, len - i - 1, 1, &out[n]))
            n++;
    }
    return n;
}

int
hostset_match_norm(const struct hostset *s, const char *host, size_t len, void **data)
{
    return hostset_match_all(s, host, len, data, 1) == 1;
}

int
hostset_match(const struct hostset *s, const char *host, size_t len, void **data)
{
    char buf[HOSTSET_NAME_MAX + 1];
    int n = hostset_host_normalise(host, len, buf);

    if (n < 0)
        return 0;
    return hostset_match_norm(s, buf, (size_t)n, data);
}

static char
hs_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

int
hostset_host_normalise(const char *host, size_t len, char *out)
{
    const char *end;
    size_t n;

    if (len > 0 && host[0] == '[') {
        if (!(end = memchr(host, ']', len)))
            return -1;
        host++;
    } else {
        const char *colon = memchr(host, ':', len);

        end = host + len;
        /* One colon is a port; several mean a bare IPv6 literal. */
        if (colon && !memchr(colon + 1, ':', (size_t)(end - colon - 1)))
            end = colon;
    }
    n = (size_t)(end - host);
    if (n > 0 && host[n - 1] == '.')
        n--;
    if (n == 0 || n > HOSTSET_NAME_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = hs_lower(host[i]);
    out[n] = '\0';
    return (int)n;
}

int
hostset_pattern_parse(const char *pattern, char *out, int *wildcard, const char **why)
{
    const char *p = pattern;
    size_t n = 0, label = 0, labels = 1;

    *wildcard = 0;
    if (p[0] == '*' && p[1] == '.') {
        *wildcard = 1;
        p += 2;
    }
    for (; *p; p++) {
        char c = hs_lower(*p);

        if (c == '.') {
            if (p[1] == '\0')
                break;
            if (label == 0) {
                *why = "empty label";
                return -1;
            }
            label = 0;
            labels++;
        } else if (c == '*') {
            *why = "'*' is allowed only as the whole first label (\"*.example.com\")";
            return -1;
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            *why = "invalid character (use letters, digits, '-', '_'; IDNs in punycode)";
            return -1;
        } else if (++label > 63) {
            *why = "label longer than 63 characters";
            return -1;
        }
        if (n >= 253) {
            *why = "name longer than 253 characters";
            return -1;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    if (n == 0 || label == 0) {
        *why = n == 0 ? "empty host name" : "empty label";
        return -1;
    }
    if (*wildcard && labels < 2) {
        *why = "wildcard over a top-level domain is too broad";
        return -1;
    }
    return (int)n;
}
