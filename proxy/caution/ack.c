/*
 * Acknowledgements of the caution page: secret, tokens, the store with its
 * journal and state file, the ack form and the return-target URL check.  See
 * include/aigate/caution/ack.h for the formats and the crash argument.
 *
 * Invariants: the store's tables and the journal queue are only touched under
 * s->mu, and nothing under s->mu does I/O or waits; the state file on disk is
 * always a complete file written by the writer thread (temporary file +
 * rename); the journal file is written by the journal thread alone and ends
 * in whole commits, except after a failed write, which is cut off before the
 * next; a commit's nonce is in memory before its journal line is written and
 * its grant right after the line is synced, so every line before s->jend is
 * in memory; table keys are hashed with the process's keyed hash (hash.h),
 * so clients cannot aim entries at one bucket.
 */
#include "aigate/caution/ack.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "aigate/core/hash.h"
#include "aigate/core/keyfile.h"
#include "aigate/core/log.h"
#include "aigate/core/offload.h"
#include "aigate/http/http_parse.h"

#define ACK_NONCE_BYTES (ACK_NONCE_HEX / 2)
#define ACK_BUCKETS_MIN 1024
#define ACK_LINE_MAX (3 * (ACK_USER_MAX + ACK_SERVICE_MAX) + 64)
#define ACK_RETRY_S 5
#define ACK_SWEEP_BUCKETS 64
#define ACK_LINE_FIXED 24          /* two tabs, a time, a newline */
#define ACK_CHUNK_BYTES (32 << 10) /* state text formatted per hold of the mutex */
#define ACK_JOURNAL_SUFFIX ".journal"
#define ACK_STATE_HEADER "# aigate acknowledgements v1: USER\tSERVICE\tEXPIRES | NONCE\tEXPIRES\n"

static const char ack_b64tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int
ack_is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Parse n decimal digits (no sign, no leading zero, at most
 * ACK_ISSUED_DIGITS_MAX) into a positive *v. */
static int
ack_parse_dec(const char *s, size_t n, long long *v)
{
    long long x = 0;
    if (n == 0 || n > ACK_ISSUED_DIGITS_MAX || s[0] < '1' || s[0] > '9')
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int d = s[i] - '0';
        if (x > (INT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

/* Undo %XX (and '+' when plus) of s (n bytes) into out (cap bytes, NUL
 * included).  -1 on a bad %XX, a decoded NUL or no room. */
static int
ack_pct_decode(const char *s, size_t n, char *out, size_t cap, int plus, size_t *outlen)
{
    if (cap == 0 || http_pct_decode(s, n, out, cap - 1,
                                    HTTP_PCT_STRICT | (plus ? HTTP_PCT_PLUS : 0), outlen) < 0)
        return -1;
    out[*outlen] = '\0';
    return 0;
}

int
ack_name_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    return n <= max && !memchr(s, '\n', n);
}

static int
ack_write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- secret ---------------------------------------------------------------- */

_Static_assert(ACK_KEY_LEN == KEYFILE_KEY_LEN, "the ack secret is a key file");

int
ack_secret_load(const char *file, unsigned char key[ACK_KEY_LEN], char *err, size_t errlen)
{
    int created;

    if (keyfile_load(file, 1, key, &created, err, errlen) < 0)
        return -1;
    if (created)
        log_info("ack: created secret %s", file);
    return 0;
}

/* ---- tokens ---------------------------------------------------------------- */

struct ack_tok {
    const char *issued; /* digits, ilen bytes */
    size_t ilen;
    long long t;
    const char *nonce; /* ACK_NONCE_HEX bytes */
    const char *mac;   /* ACK_MAC_B64 bytes */
};

static int
ack_token_parse(const char *tok, size_t len, struct ack_tok *p)
{
    const size_t tail = 1 + ACK_NONCE_HEX + 1 + ACK_MAC_B64;
    if (!tok || len <= tail || len > ACK_TOKEN_LEN_MAX)
        return -1;
    p->issued = tok;
    p->ilen = len - tail;
    p->nonce = tok + p->ilen + 1;
    p->mac = p->nonce + ACK_NONCE_HEX + 1;
    if (ack_parse_dec(tok, p->ilen, &p->t) < 0 || tok[p->ilen] != '.' ||
        !ack_is_lower_hex(p->nonce, ACK_NONCE_HEX) || p->nonce[ACK_NONCE_HEX] != '.')
        return -1;
    for (size_t i = 0; i < ACK_MAC_B64; i++)
        if (!memchr(ack_b64tbl, p->mac[i], sizeof(ack_b64tbl) - 1))
            return -1;
    return 0;
}

/* out = unpadded base64url of the 32-byte MAC, ACK_MAC_B64 bytes, no NUL. */
static int
ack_mac(const unsigned char key[ACK_KEY_LEN], const char *user, const char *service,
        const char *issued, size_t ilen, const char *nonce, char *out)
{
    char msg[3 + ACK_USER_MAX + 1 + ACK_SERVICE_MAX + 1 + ACK_ISSUED_DIGITS_MAX + 1 +
             ACK_NONCE_HEX + 1];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    int n = snprintf(msg, sizeof(msg), "v1\n%s\n%s\n%.*s\n%.*s", user, service, (int)ilen, issued,
                     ACK_NONCE_HEX, nonce);
    if (n < 0 || (size_t)n >= sizeof(msg))
        return -1;
    if (!HMAC(EVP_sha256(), key, ACK_KEY_LEN, (const unsigned char *)msg, (size_t)n, md, &mdlen) ||
        mdlen != 32)
        return -1;
    /* base64 of 32 bytes is 43 characters and one '='; base64url drops it and
     * spells 62 and 63 '-' and '_' (RFC 4648 section 5). */
    unsigned char b64[4 * ((32 + 2) / 3) + 1];
    if (EVP_EncodeBlock(b64, md, 32) != ACK_MAC_B64 + 1)
        return -1;
    for (size_t i = 0; i < ACK_MAC_B64; i++)
        out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
    return 0;
}

int
ack_token_make(const unsigned char key[ACK_KEY_LEN], const char *user, const char *service,
               time_t issued, char *out, size_t cap)
{
    unsigned char rnd[ACK_NONCE_BYTES];
    char buf[ACK_TOKEN_BUF];

    if (!ack_name_ok(user, ACK_USER_MAX) || !ack_name_ok(service, ACK_SERVICE_MAX) || issued <= 0 ||
        RAND_bytes(rnd, sizeof(rnd)) != 1)
        return -1;
    int n = snprintf(buf, sizeof(buf), "%lld.", (long long)issued);
    if (n < 2 || n > ACK_ISSUED_DIGITS_MAX + 1)
        return -1;
    char *nonce = buf + n;
    if (keyfile_hex(nonce, sizeof(buf) - (size_t)n, rnd, sizeof(rnd)) < 0)
        return -1;
    nonce[ACK_NONCE_HEX] = '.';
    if (ack_mac(key, user, service, buf, (size_t)n - 1, nonce, nonce + ACK_NONCE_HEX + 1) < 0)
        return -1;
    size_t len = (size_t)n + ACK_NONCE_HEX + 1 + ACK_MAC_B64;
    if (len + 1 > cap)
        return -1;
    memcpy(out, buf, len);
    out[len] = '\0';
    return 0;
}

enum ack_verdict
ack_token_check(const unsigned char key[ACK_KEY_LEN], const char *token, size_t len,
                const char *user, const char *service, time_t now, int max_age_s)
{
    struct ack_tok p;
    char mac[ACK_MAC_B64];

    if (ack_token_parse(token, len, &p) < 0 || !ack_name_ok(user, ACK_USER_MAX) ||
        !ack_name_ok(service, ACK_SERVICE_MAX))
        return ACK_MALFORMED;
    if (ack_mac(key, user, service, p.issued, p.ilen, p.nonce, mac) < 0 ||
        CRYPTO_memcmp(mac, p.mac, ACK_MAC_B64) != 0)
        return ACK_FORGED;
    if (p.t > (long long)now + ACK_FUTURE_SKEW_S || max_age_s < 0 ||
        (long long)now - p.t > max_age_s)
        return ACK_EXPIRED;
    return ACK_OK;
}

int
ack_token_nonce(const char *token, size_t len, char nonce[ACK_NONCE_HEX + 1])
{
    struct ack_tok p;

    if (ack_token_parse(token, len, &p) < 0)
        return -1;
    memcpy(nonce, p.nonce, ACK_NONCE_HEX);
    nonce[ACK_NONCE_HEX] = '\0';
    return 0;
}

const char *
ack_verdict_text(enum ack_verdict v)
{
    switch (v) {
    case ACK_OK:
        return "ok";
    case ACK_FORGED:
        return "forged";
    case ACK_EXPIRED:
        return "expired or not yet valid";
    case ACK_REPLAYED:
        return "already used";
    case ACK_MALFORMED:
        return "malformed";
    case ACK_STORE_FAILED:
        return "not recorded";
    }
    return "unknown";
}

/* ---- hash tables ------------------------------------------------------------ */

struct ack_entry {
    struct ack_entry *next;
    uint64_t hash;
    time_t expires;
    size_t klen;
    char key[]; /* klen bytes and a NUL; for acks USER NUL SERVICE */
};

struct ack_table {
    struct ack_entry **b;
    size_t nb; /* power of two */
    size_t n, max;
    size_t keybytes; /* sum of klen over entries */
    size_t cursor;   /* next bucket to sweep or evict from when full */
};

static int
ack_table_init(struct ack_table *t, size_t max)
{
    t->nb = ACK_BUCKETS_MIN;
    t->max = max;
    t->b = calloc(t->nb, sizeof(*t->b));
    return t->b ? 0 : -1;
}

static void
ack_table_free(struct ack_table *t)
{
    for (size_t i = 0; t->b && i < t->nb; i++) {
        struct ack_entry *e = t->b[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(t->b);
}

static void
ack_table_unlink(struct ack_table *t, struct ack_entry **pp)
{
    struct ack_entry *e = *pp;
    *pp = e->next;
    t->n--;
    t->keybytes -= e->klen;
    free(e);
}

/* The live entry for key, or NULL; expired entries met on the way go. */
static struct ack_entry *
ack_table_find(struct ack_table *t, uint64_t h, const char *key, size_t klen, time_t now)
{
    struct ack_entry **pp = &t->b[h & (t->nb - 1)];
    while (*pp) {
        struct ack_entry *e = *pp;
        if (e->expires <= now) {
            ack_table_unlink(t, pp);
            continue;
        }
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
        pp = &e->next;
    }
    return NULL;
}

static void
ack_table_grow(struct ack_table *t)
{
    size_t nb = t->nb * 2;
    struct ack_entry **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->nb; i++) {
        struct ack_entry *e = t->b[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(t->b);
    t->b = b;
    t->nb = nb;
    t->cursor = 0;
}

/* Called when full: sweep the next ACK_SWEEP_BUCKETS buckets for expired
 * entries, then drop arbitrary ones until there is room for one more.  The
 * cost per insert stays bounded, and a table full of expired entries gives
 * them up first. */
static void
ack_table_make_room(struct ack_table *t, time_t now)
{
    for (size_t k = 0; k < ACK_SWEEP_BUCKETS; k++) {
        struct ack_entry **pp = &t->b[t->cursor];
        while (*pp) {
            if ((*pp)->expires <= now)
                ack_table_unlink(t, pp);
            else
                pp = &(*pp)->next;
        }
        t->cursor = (t->cursor + 1) & (t->nb - 1);
    }
    while (t->n >= t->max) {
        while (!t->b[t->cursor])
            t->cursor = (t->cursor + 1) & (t->nb - 1);
        ack_table_unlink(t, &t->b[t->cursor]);
    }
}

/* Insert key with expires, or update the entry there.  1 if it was new, 0 if
 * it existed (only when !replace is that a "seen" answer), -1 on no memory. */
static int
ack_table_put(struct ack_table *t, uint64_t h, const char *key, size_t klen, time_t expires,
              time_t now, int replace)
{
    struct ack_entry *e = ack_table_find(t, h, key, klen, now);
    if (e) {
        if (replace)
            e->expires = expires;
        return 0;
    }
    if (t->n >= t->max)
        ack_table_make_room(t, now);
    if (t->n >= t->nb && t->nb < t->max)
        ack_table_grow(t);
    if (!(e = malloc(sizeof(*e) + klen + 1)))
        return -1;
    e->hash = h;
    e->expires = expires;
    e->klen = klen;
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    e->next = t->b[h & (t->nb - 1)];
    t->b[h & (t->nb - 1)] = e;
    t->n++;
    t->keybytes += klen;
    return 1;
}

/* ---- store ------------------------------------------------------------------ */

/*
 * Journal positions are logical: bytes ever written to the journal, so they
 * keep their meaning when compaction replaces the file by its tail.  The
 * journal's first byte is at jbase, its end at jbase + jlen.
 */
struct ack_fstore {
    struct ack_store base; /* first: the store's handle is this */
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* wakes the state writer */
    pthread_cond_t jcv; /* wakes the journal thread */
    struct ack_table acks, nonces;
    char *path, *jpath;
    unsigned long gen; /* bumped on every change */
    int stop, jstop;
    struct ack_commit *qhead, **qtail; /* commits waiting for the journal */
    uint64_t jend;                     /* every journal line before it is in memory */
    uint64_t jcover; /* every journal line before it is in the state file on disk */
    struct ack_store_stats st;
    /* The journal file: the journal thread's alone (open and close's while it is not running). */
    int jfd;         /* -1: not open (open failed; tried again at the next commit) */
    uint64_t jbase;  /* logical position of its first byte */
    size_t jlen;     /* its length up to the end of the last whole commit */
    int jcut;        /* bytes past jlen may be there: cut them before the next write */
    int jdir;        /* its name is not yet synced in its folder */
    uint64_t jtried; /* the cover of the last compaction that failed */
    char *jbuf;      /* a batch's text, or the tail being copied */
    size_t jbufcap;
    pthread_t writer, journal;
    int have_journal;
};

static const struct ack_store_ops ack_file_ops;

/* A commit: in the journal queue, then handed back to its worker. */
struct ack_commit {
    struct offload_job job; /* first: the hand-back returns this pointer; owner is the commit */
    struct ack_commit *qnext;
    ack_commit_cb cb;
    void *arg;
    enum ack_verdict verdict;
    long long start; /* ack_store_clock() at the call */
    uint64_t hash;   /* of the pair key */
    time_t grant_expires;
    size_t klen, tlen;
    char *text; /* the journal lines, tlen bytes, after the key */
    char key[]; /* USER NUL SERVICE NUL, then the text */
};

/* Build USER NUL SERVICE into key; its length, or 0 if a name is too long. */
static size_t
ack_pair_key(const char *user, const char *service, char *key)
{
    size_t ul = strnlen(user, ACK_USER_MAX + 1), sl = strnlen(service, ACK_SERVICE_MAX + 1);
    if (ul > ACK_USER_MAX || sl > ACK_SERVICE_MAX)
        return 0;
    memcpy(key, user, ul);
    key[ul] = '\0';
    memcpy(key + ul + 1, service, sl);
    return ul + 1 + sl;
}

static void
ack_file_changed(struct ack_fstore *s)
{
    s->gen++;
    pthread_cond_signal(&s->cv);
}

static int
ack_file_check(struct ack_store *base, const char *user, const char *service, time_t now)
{
    struct ack_fstore *s = (struct ack_fstore *)base;
    char key[ACK_USER_MAX + 1 + ACK_SERVICE_MAX];
    size_t klen = ack_pair_key(user, service, key);
    if (!klen)
        return 0;
    uint64_t h = hash_bytes(key, klen);
    pthread_mutex_lock(&s->mu);
    int ok = ack_table_find(&s->acks, h, key, klen, now) != NULL;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static char *
ack_put_encoded(char *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '%' || c == '#') {
            *o++ = '%';
            *o++ = "0123456789ABCDEF"[c >> 4];
            *o++ = "0123456789ABCDEF"[c & 0xf];
        } else {
            *o++ = (char)c;
        }
    }
    return o;
}

/* USER TAB SERVICE, encoded, from a pair key (klen bytes). */
static char *
ack_put_pair(char *o, const char *key, size_t klen)
{
    size_t ul = strlen(key);
    o = ack_put_encoded(o, key, ul);
    *o++ = '\t';
    return ack_put_encoded(o, key + ul + 1, klen - ul - 1);
}

static char *
ack_put_line_end(char *o, time_t expires)
{
    char num[24], *e = num + sizeof(num);
    unsigned long long v = (unsigned long long)expires;
    *--e = '\n';
    do
        *--e = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    *--e = '\t';
    memcpy(o, e, (size_t)(num + sizeof(num) - e));
    return o + (num + sizeof(num) - e);
}

struct ack_chunk {
    char *p;
    size_t len, cap;
};

/* Format the live entries of bucket i of t into c, if they fit.  0, 1 if
 * they do not fit (and nothing was added), -1 if they never could. */
static int
ack_format_bucket(const struct ack_table *t, size_t i, int pairs, time_t now, struct ack_chunk *c)
{
    size_t need = 0;
    for (const struct ack_entry *e = t->b[i]; e; e = e->next)
        need += (pairs ? 3 : 1) * e->klen + ACK_LINE_FIXED;
    if (need > c->cap - c->len)
        return need > c->cap ? -1 : 1;
    char *o = c->p + c->len;
    for (const struct ack_entry *e = t->b[i]; e; e = e->next) {
        if (e->expires <= now)
            continue;
        if (pairs) {
            o = ack_put_pair(o, e->key, e->klen);
        } else {
            memcpy(o, e->key, e->klen);
            o += e->klen;
        }
        o = ack_put_line_end(o, e->expires);
    }
    c->len = (size_t)(o - c->p);
    return 0;
}

/* Stream the live entries of t to fd, formatting at most about
 * ACK_CHUNK_BYTES per hold of s->mu and writing with the mutex released, so
 * workers wait microseconds, not a whole pass.  The result is not one
 * instant's picture: a change made meanwhile may be missed, but it bumped
 * s->gen, so another write follows.  A rehash meanwhile moves entries between
 * buckets: then this table is written again from its start. */
static int
ack_stream_table(struct ack_fstore *s, struct ack_table *t, int pairs, int fd, struct ack_chunk *c)
{
    off_t start = lseek(fd, 0, SEEK_CUR);
    time_t now = time(NULL);
    size_t i = 0;
    int rc = 0;

    pthread_mutex_lock(&s->mu);
    size_t nb = t->nb;
    while (i < t->nb && rc == 0) {
        if (t->nb != nb) {
            nb = t->nb;
            i = 0;
            if (start < 0 || ftruncate(fd, start) < 0 || lseek(fd, start, SEEK_SET) < 0) {
                rc = -1;
                break;
            }
        }
        while (i < t->nb && (rc = ack_format_bucket(t, i, pairs, now, c)) == 0)
            i++;
        if (rc < 0) {
            /* One chain longer than a chunk: only when rehashing failed. */
            size_t ncap = 2 * c->cap;
            char *np = realloc(c->p, ncap);
            if (!np)
                break;
            c->p = np;
            c->cap = ncap;
            rc = 0;
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        rc = ack_write_all(fd, c->p, c->len);
        c->len = 0;
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return rc < 0 ? -1 : 0;
}

/* Write the state file: temporary file in the same folder, fsync, rename,
 * fsync of the folder.  Called by the writer without s->mu. */
static int
ack_state_write(struct ack_fstore *s)
{
    char tmp[4096];
    struct ack_chunk c = {malloc(ACK_CHUNK_BYTES), 0, ACK_CHUNK_BYTES};
    int fd = -1, e;

    if (!c.p) {
        errno = ENOMEM;
        goto fail;
    }
    if ((fd = keyfile_mktemp(s->path, tmp, sizeof(tmp))) < 0)
        goto fail;
    if (ack_write_all(fd, ACK_STATE_HEADER, sizeof(ACK_STATE_HEADER) - 1) < 0 ||
        ack_stream_table(s, &s->acks, 1, fd, &c) < 0 ||
        ack_stream_table(s, &s->nonces, 0, fd, &c) < 0 || fsync(fd) < 0)
        goto fail_unlink;
    e = close(fd);
    fd = -1;
    if (e < 0 || rename(tmp, s->path) < 0)
        goto fail_unlink;
    keyfile_fsync_dir(s->path);
    free(c.p);
    return 0;

fail_unlink:
    e = errno;
    unlink(tmp);
    errno = e;
fail:
    log_warnx("ack: cannot write state file %s: %s", s->path, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(c.p);
    return -1;
}

static void
ack_wait_until(struct ack_fstore *s, const struct timespec *deadline)
{
    while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, deadline) != ETIMEDOUT)
        ;
}

/* The writer: sleeps until a change, writes the state file, then waits out
 * the batching interval (or ACK_RETRY_S after a failure) before the next
 * write.  The journal position read before a write is what the written file
 * covers: published once the file is in place, for compaction.  On stop it
 * writes what is pending once more and leaves. */
static void *
ack_writer_main(void *arg)
{
    struct ack_fstore *s = arg;
    unsigned long written = 0;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && s->gen == written)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->gen == written)
            break;
        unsigned long gen = s->gen;
        uint64_t cover = s->jend;
        int stopping = s->stop;
        pthread_mutex_unlock(&s->mu);

        int ok = ack_state_write(s) == 0;
        if (ok)
            written = gen;
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        if (ok) {
            deadline.tv_nsec += 1000000000L / ACK_FLUSH_PER_S;
            deadline.tv_sec += deadline.tv_nsec / 1000000000L;
            deadline.tv_nsec %= 1000000000L;
        } else {
            deadline.tv_sec += ACK_RETRY_S;
        }
        pthread_mutex_lock(&s->mu);
        if (ok && cover > s->jcover) {
            s->jcover = cover;
            pthread_cond_signal(&s->jcv);
        }
        if (!ok && stopping)
            break;
        ack_wait_until(s, &deadline);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- journal ------------------------------------------------------------------ */

static int
ack_pwrite_all(int fd, const char *p, size_t n, off_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = ENOSPC;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

static int
ack_pread_all(int fd, char *p, size_t n, off_t off)
{
    while (n) {
        ssize_t r = pread(fd, p, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO; /* shorter than we wrote it */
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

static int
ack_jbuf_reserve(struct ack_fstore *s, size_t n)
{
    if (n <= s->jbufcap)
        return 0;
    char *p = realloc(s->jbuf, n);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    s->jbuf = p;
    s->jbufcap = n;
    return 0;
}

/* Open (creating) the journal when the store could not at start. */
static int
ack_journal_open(struct ack_fstore *s)
{
    s->jfd = open(s->jpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->jfd < 0)
        return -1;
    s->jcut = 1; /* whatever is there was never replayed: start from jlen (0) */
    s->jdir = 1;
    return 0;
}

/* Write the batch's text (n bytes) at the journal's end with one write and
 * sync it (and the journal's name, when new).  0, or -1 with the journal
 * still ending at its last whole commit or marked to be cut back to it. */
static int
ack_journal_append(struct ack_fstore *s, const struct ack_commit *batch, size_t n)
{
    if (s->jfd < 0 && ack_journal_open(s) < 0)
        goto fail;
    if (s->jcut) {
        if (ftruncate(s->jfd, (off_t)s->jlen) < 0)
            goto fail;
        s->jcut = 0;
    }
    if (ack_jbuf_reserve(s, n) < 0)
        goto fail;
    size_t o = 0;
    for (const struct ack_commit *c = batch; c; c = c->qnext) {
        memcpy(s->jbuf + o, c->text, c->tlen);
        o += c->tlen;
    }
    if (ack_pwrite_all(s->jfd, s->jbuf, n, (off_t)s->jlen) < 0 || fdatasync(s->jfd) < 0 ||
        (s->jdir && keyfile_fsync_dir(s->jpath) < 0)) {
        s->jcut = 1;
        goto fail;
    }
    s->jdir = 0;
    s->jlen += n;
    return 0;
fail:
    log_warnx("ack: cannot write journal %s: %s", s->jpath, strerror(errno));
    return -1;
}

/* Make a queued batch durable, apply its grants and hand every commit back
 * to its worker.  Called by the journal thread without s->mu. */
static void
ack_journal_batch(struct ack_fstore *s, struct ack_commit *batch)
{
    size_t n = 0, count = 0;
    for (const struct ack_commit *c = batch; c; c = c->qnext) {
        n += c->tlen;
        count++;
    }
    int ok = ack_journal_append(s, batch, n) == 0;
    time_t now = time(NULL);

    pthread_mutex_lock(&s->mu);
    for (struct ack_commit *c = batch; c; c = c->qnext) {
        c->verdict = ACK_STORE_FAILED;
        if (ok && ack_table_put(&s->acks, c->hash, c->key, c->klen, c->grant_expires, now, 1) >= 0)
            c->verdict = ACK_OK;
        ack_store_observe(&s->base, c->start, c->verdict != ACK_OK);
    }
    if (ok) {
        s->jend = s->jbase + s->jlen;
        s->st.commits += count;
        s->st.syncs++;
        ack_file_changed(s);
    }
    pthread_mutex_unlock(&s->mu);
    while (batch) {
        struct ack_commit *next = batch->qnext;
        offload_finish(&batch->job); /* the worker's from here on */
        batch = next;
    }
}

/*
 * The state file on disk covers the journal up to cover: replace the journal
 * by the rest (written since the state file was streamed; usually nothing).
 * The rest goes to a temporary file that is synced before it is renamed over
 * the journal, so the name always holds either the whole journal or its
 * uncovered tail; the folder is synced before a commit on the new file
 * completes (jdir).  Called by the journal thread, or by close after it.
 */
static int
ack_journal_compact(struct ack_fstore *s, uint64_t cover)
{
    size_t keep = s->jlen - (size_t)(cover - s->jbase);
    char tmp[4096];
    int fd = -1;

    if (s->jfd < 0 || ack_jbuf_reserve(s, keep) < 0 ||
        ack_pread_all(s->jfd, s->jbuf, keep, (off_t)(s->jlen - keep)) < 0 ||
        (fd = keyfile_mktemp(s->jpath, tmp, sizeof(tmp))) < 0)
        goto fail;
    if (ack_write_all(fd, s->jbuf, keep) < 0 || fdatasync(fd) < 0 || rename(tmp, s->jpath) < 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        goto fail;
    }
    if (keyfile_fsync_dir(s->jpath) < 0)
        s->jdir = 1;
    close(s->jfd);
    s->jfd = fd;
    s->jcut = 0;
    s->jbase = cover;
    s->jlen = keep;
    pthread_mutex_lock(&s->mu);
    s->st.compactions++;
    pthread_mutex_unlock(&s->mu);
    return 0;
fail:
    log_warnx("ack: cannot compact journal %s: %s", s->jpath, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* The journal thread: compacts when the state writer has covered more of the
 * journal, otherwise takes every queued commit as one batch.  On stop it
 * finishes what is queued and leaves. */
static void *
ack_journal_main(void *arg)
{
    struct ack_fstore *s = arg;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->qhead && !s->jstop && (s->jcover <= s->jbase || s->jcover == s->jtried))
            pthread_cond_wait(&s->jcv, &s->mu);
        uint64_t cover = s->jcover;
        if (cover > s->jbase && cover != s->jtried) {
            pthread_mutex_unlock(&s->mu);
            if (ack_journal_compact(s, cover) < 0)
                s->jtried = cover; /* again after the next state write */
            pthread_mutex_lock(&s->mu);
            continue;
        }
        struct ack_commit *batch = s->qhead;
        if (!batch)
            break; /* stopping, nothing queued */
        s->qhead = NULL;
        s->qtail = &s->qhead;
        pthread_mutex_unlock(&s->mu);
        ack_journal_batch(s, batch);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- commits -------------------------------------------------------------------- */

static void
ack_commit_done(struct offload_job *job)
{
    struct ack_commit *c = (struct ack_commit *)job;
    c->cb(c->verdict, c->arg);
}

static void
ack_commit_release(struct offload_job *job)
{
    free(job);
}

static struct ack_commit *
ack_file_commit(struct ack_store *base, struct worker *w, const char *token, size_t len,
                time_t nonce_expires, const char *user, const char *service, time_t grant_expires,
                ack_commit_cb cb, void *arg)
{
    struct ack_fstore *s = (struct ack_fstore *)base;
    char key[ACK_USER_MAX + 1 + ACK_SERVICE_MAX];
    struct ack_tok p;
    size_t klen = 0;
    int ok = ack_token_parse(token, len, &p) == 0 && (klen = ack_pair_key(user, service, key));
    /* The key, then its journal text: a nonce line and an acknowledgement line. */
    size_t room = ok ? klen + 1 + ACK_NONCE_HEX + 3 * klen + 2 * ACK_LINE_FIXED : 0;
    struct ack_commit *c = malloc(sizeof(*c) + room);

    if (!c)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->job.w = w;
    c->job.owner = c;
    c->job.done = ack_commit_done;
    c->job.release = ack_commit_release;
    c->cb = cb;
    c->arg = arg;
    c->start = ack_store_clock();
    if (!ok) {
        c->verdict = ACK_MALFORMED;
        offload_finish(&c->job);
        return c;
    }
    memcpy(c->key, key, klen);
    c->key[klen] = '\0';
    c->klen = klen;
    c->hash = hash_bytes(key, klen);
    c->grant_expires = grant_expires;
    char *o = c->text = c->key + klen + 1;
    memcpy(o, p.nonce, ACK_NONCE_HEX);
    o = ack_put_line_end(o + ACK_NONCE_HEX, nonce_expires);
    o = ack_put_line_end(ack_put_pair(o, key, klen), grant_expires);
    c->tlen = (size_t)(o - c->text);

    uint64_t h = hash_bytes(p.nonce, ACK_NONCE_HEX);
    time_t now = time(NULL);
    pthread_mutex_lock(&s->mu);
    int rc = ack_table_put(&s->nonces, h, p.nonce, ACK_NONCE_HEX, nonce_expires, now, 0);
    if (rc > 0) {
        ack_file_changed(s);
        *s->qtail = c;
        s->qtail = &c->qnext;
        pthread_cond_signal(&s->jcv);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc <= 0) {
        /* Used before, or no memory to remember it: refusing is the safe side. */
        c->verdict = ACK_REPLAYED;
        ack_store_observe(&s->base, c->start, 0);
        offload_finish(&c->job);
    }
    return c;
}

static void
ack_file_stats(struct ack_store *base, struct ack_store_stats *out)
{
    struct ack_fstore *s = (struct ack_fstore *)base;
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

/* A lookup the file store answers at once, handed back through w's loop. */
struct ack_lookup {
    struct offload_job job; /* first: the handle is the job (ack.h, store implementations) */
    ack_lookup_cb cb;
    void *arg;
    enum ack_lookup_answer answer;
};

static void
ack_lookup_done(struct offload_job *job)
{
    struct ack_lookup *l = (struct ack_lookup *)job;
    l->cb(l->answer, l->arg);
}

static struct ack_lookup *
ack_file_lookup(struct ack_store *s, struct worker *w, const char *user, const char *service,
                time_t now, ack_lookup_cb cb, void *arg)
{
    long long start = ack_store_clock();
    struct ack_lookup *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    l->job.w = w;
    l->job.owner = l;
    l->job.done = ack_lookup_done;
    l->job.release = ack_commit_release;
    l->cb = cb;
    l->arg = arg;
    l->answer = ack_file_check(s, user, service, now) ? ACK_LOOKUP_YES : ACK_LOOKUP_NO;
    ack_store_observe(s, start, 0);
    offload_finish(&l->job);
    return l;
}

/* ---- loading -------------------------------------------------------------------- */

static int
ack_load_fail(char *err, size_t errlen, const char *path, size_t line, const char *msg)
{
    snprintf(err, errlen, "%s:%zu: %s", path, line, msg);
    return -1;
}

/* Parse one state line (n bytes, no newline) into the tables. */
static int
ack_load_line(struct ack_fstore *s, char *l, size_t n, time_t now, const char **msg)
{
    char *f[3];
    size_t fl[3], nf = 0;
    char *p = l, *end = l + n;

    for (;;) {
        char *tab = memchr(p, '\t', (size_t)(end - p));
        if (nf == 3) {
            *msg = "too many fields";
            return -1;
        }
        f[nf] = p;
        fl[nf++] = (size_t)((tab ? tab : end) - p);
        if (!tab)
            break;
        p = tab + 1;
    }
    long long exp;
    if (nf < 2 || ack_parse_dec(f[nf - 1], fl[nf - 1], &exp) < 0) {
        *msg = nf < 2 ? "expected USER<TAB>SERVICE<TAB>EXPIRES or NONCE<TAB>EXPIRES"
                      : "bad expiry time";
        return -1;
    }
    if (nf == 2) {
        if (fl[0] != ACK_NONCE_HEX || !ack_is_lower_hex(f[0], ACK_NONCE_HEX)) {
            *msg = "bad nonce";
            return -1;
        }
        if ((time_t)exp <= now)
            return 0;
        uint64_t h = hash_bytes(f[0], ACK_NONCE_HEX);
        if (ack_table_put(&s->nonces, h, f[0], ACK_NONCE_HEX, (time_t)exp, now, 1) < 0)
            goto oom;
        return 0;
    }
    char user[ACK_USER_MAX + 1], service[ACK_SERVICE_MAX + 1], key[sizeof(user) + sizeof(service)];
    size_t ul, sl;
    if (ack_pct_decode(f[0], fl[0], user, sizeof(user), 0, &ul) < 0 ||
        ack_pct_decode(f[1], fl[1], service, sizeof(service), 0, &sl) < 0) {
        *msg = "bad user or service (too long, bad %XX or NUL)";
        return -1;
    }
    if ((time_t)exp <= now)
        return 0;
    size_t klen = ack_pair_key(user, service, key);
    uint64_t h = hash_bytes(key, klen);
    if (ack_table_put(&s->acks, h, key, klen, (time_t)exp, now, 1) < 0)
        goto oom;
    return 0;
oom:
    *msg = "out of memory";
    return -1;
}

/*
 * Load path into the tables.  For the journal (whole != NULL) a last line
 * without its newline is a torn write and is left out, and *whole gets the
 * length up to the last whole line (-1 when the file is missing).  0, or -1
 * with err.
 */
static int
ack_load_file(struct ack_fstore *s, const char *path, off_t *whole, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    off_t off = 0;
    time_t now = time(NULL);
    int rc = -1;

    if (whole)
        *whole = -1;
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        const char *msg = NULL;
        lineno++;
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n')
            len--;
        else if (whole)
            break; /* torn: its commit was never answered */
        off += n;
        if (len > ACK_LINE_MAX)
            msg = "line too long";
        else if (memchr(line, '\0', len))
            msg = "NUL byte";
        if (msg) {
            ack_load_fail(err, errlen, path, lineno, msg);
            goto out;
        }
        if (len == 0 || line[0] == '#')
            continue;
        if (ack_load_line(s, line, len, now, &msg) < 0) {
            ack_load_fail(err, errlen, path, lineno, msg);
            goto out;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto out;
    }
    if (whole)
        *whole = off;
    rc = 0;
out:
    free(line);
    fclose(f);
    return rc;
}

/* Load the state file and replay the journal, then open the journal for
 * appending with any torn tail cut off. */
static int
ack_file_load(struct ack_fstore *s, char *err, size_t errlen)
{
    off_t whole;

    if (ack_load_file(s, s->path, NULL, err, errlen) < 0 ||
        ack_load_file(s, s->jpath, &whole, err, errlen) < 0)
        return -1;
    s->jfd = open(s->jpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->jfd < 0) {
        log_warnx("ack: cannot open journal %s: %s (acknowledgements fail until it can be)",
                  s->jpath, strerror(errno));
        return 0;
    }
    s->jdir = whole < 0;
    if (whole > 0) {
        s->jlen = (size_t)whole;
        s->jend = s->jlen;
        s->gen = 1; /* write the state file soon, so the journal is compacted */
    }
    if (ftruncate(s->jfd, whole > 0 ? whole : 0) < 0)
        s->jcut = 1;
    return 0;
}

/* Stop the journal thread after it has finished what is queued. */
static void
ack_journal_stop(struct ack_fstore *s)
{
    if (!s->have_journal)
        return;
    pthread_mutex_lock(&s->mu);
    s->jstop = 1;
    pthread_cond_signal(&s->jcv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->journal, NULL);
    s->have_journal = 0;
}

static void
ack_file_free(struct ack_fstore *s, int sync)
{
    if (s->jfd >= 0)
        close(s->jfd);
    if (sync) {
        pthread_cond_destroy(&s->jcv);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
    }
    ack_table_free(&s->acks);
    ack_table_free(&s->nonces);
    free(s->jbuf);
    free(s->jpath);
    free(s->path);
    free(s);
}

struct ack_store *
ack_store_open(const char *state_file, char *err, size_t errlen)
{
    struct ack_fstore *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;
    int sync = 0;

    if (!s) {
        snprintf(err, errlen, "%s: out of memory", state_file);
        return NULL;
    }
    ack_store_init(&s->base, &ack_file_ops);
    s->jfd = -1;
    s->qtail = &s->qhead;
    size_t jl = strlen(state_file) + sizeof(ACK_JOURNAL_SUFFIX);
    if (!(s->path = strdup(state_file)) || !(s->jpath = malloc(jl)) ||
        ack_table_init(&s->acks, ACK_STORE_MAX_ACKS) < 0 ||
        ack_table_init(&s->nonces, ACK_STORE_MAX_NONCES) < 0) {
        snprintf(err, errlen, "%s: out of memory", state_file);
        goto fail;
    }
    snprintf(s->jpath, jl, "%s" ACK_JOURNAL_SUFFIX, state_file);
    if (ack_file_load(s, err, errlen) < 0)
        goto fail;
    if (pthread_condattr_init(&ca) != 0)
        goto fail_thread;
    sync = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
           pthread_mutex_init(&s->mu, NULL) == 0;
    if (sync && pthread_cond_init(&s->cv, &ca) != 0) {
        pthread_mutex_destroy(&s->mu);
        sync = 0;
    }
    if (sync && pthread_cond_init(&s->jcv, NULL) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        sync = 0;
    }
    pthread_condattr_destroy(&ca);
    if (!sync || pthread_create(&s->journal, NULL, ack_journal_main, s) != 0)
        goto fail_thread;
    s->have_journal = 1;
    pthread_setname_np(s->journal, "aigate-ackjrnl");
    if (pthread_create(&s->writer, NULL, ack_writer_main, s) != 0)
        goto fail_thread;
    pthread_setname_np(s->writer, "aigate-ackstate");
    return &s->base;

fail_thread:
    snprintf(err, errlen, "%s: cannot start the state writer", state_file);
    ack_journal_stop(s);
fail:
    ack_file_free(s, sync);
    return NULL;
}

static void
ack_file_close(struct ack_store *base)
{
    struct ack_fstore *s = (struct ack_fstore *)base;
    ack_journal_stop(s);
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->writer, NULL);
    if (s->jcover > s->jbase)
        ack_journal_compact(s, s->jcover);
    if (s->st.commits)
        log_info("ack: %lu acknowledgements journaled with %lu syncs", s->st.commits, s->st.syncs);
    ack_file_free(s, 1);
}

static const struct ack_store_ops ack_file_ops = {
    .name = "file",
    .commit = ack_file_commit,
    .lookup = ack_file_lookup,
    .check = ack_file_check,
    .stats = ack_file_stats,
    .close = ack_file_close,
};

/* ---- the store interface -------------------------------------------------------- */

const double ack_latency_le[ACK_LATENCY_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01,   0.025,   0.05,   0.1,   0.25,   1.0};

void
ack_store_init(struct ack_store *s, const struct ack_store_ops *ops)
{
    s->ops = ops;
    atomic_init(&s->calls, 0);
    atomic_init(&s->errors, 0);
    atomic_init(&s->latency_ns, 0);
    for (int i = 0; i < ACK_LATENCY_BUCKETS; i++)
        atomic_init(&s->le[i], 0);
}

long long
ack_store_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void
ack_store_observe(struct ack_store *s, long long start, int failed)
{
    long long ns = ack_store_clock() - start;
    if (ns < 0)
        ns = 0;
    atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->latency_ns, (unsigned long long)ns, memory_order_relaxed);
    if (failed)
        atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
    for (int i = 0; i < ACK_LATENCY_BUCKETS; i++) {
        if ((double)ns <= ack_latency_le[i] * 1e9) {
            atomic_fetch_add_explicit(&s->le[i], 1, memory_order_relaxed);
            break;
        }
    }
}

void
ack_store_metrics(struct ack_store *s, struct ack_store_metrics *out)
{
    unsigned long long sum = 0;
    out->calls = atomic_load_explicit(&s->calls, memory_order_relaxed);
    out->errors = atomic_load_explicit(&s->errors, memory_order_relaxed);
    out->latency_ns = atomic_load_explicit(&s->latency_ns, memory_order_relaxed);
    for (int i = 0; i < ACK_LATENCY_BUCKETS; i++) {
        sum += atomic_load_explicit(&s->le[i], memory_order_relaxed);
        out->le[i] = sum;
    }
}

struct ack_commit *
ack_store_commit(struct ack_store *s, struct worker *w, const char *token, size_t len,
                 time_t nonce_expires, const char *user, const char *service, time_t grant_expires,
                 ack_commit_cb cb, void *arg)
{
    return s->ops->commit(s, w, token, len, nonce_expires, user, service, grant_expires, cb, arg);
}

void
ack_store_cancel(struct ack_commit *c)
{
    if (c)
        offload_cancel((struct offload_job *)c); /* the commit itself still completes */
}

struct ack_lookup *
ack_store_lookup(struct ack_store *s, struct worker *w, const char *user, const char *service,
                 time_t now, ack_lookup_cb cb, void *arg)
{
    return s->ops->lookup(s, w, user, service, now, cb, arg);
}

void
ack_store_lookup_cancel(struct ack_lookup *l)
{
    if (l)
        offload_cancel((struct offload_job *)l);
}

int
ack_store_check(struct ack_store *s, const char *user, const char *service, time_t now)
{
    return s->ops->check ? s->ops->check(s, user, service, now) : 0;
}

void
ack_store_attach(struct ack_store *s, struct worker *w)
{
    if (s->ops->attach)
        s->ops->attach(s, w);
}

int
ack_store_healthy(struct ack_store *s, char *why, size_t cap)
{
    if (cap)
        why[0] = '\0';
    return s->ops->healthy ? s->ops->healthy(s, why, cap) : 1;
}

void
ack_store_stats(struct ack_store *s, struct ack_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (s->ops->stats)
        s->ops->stats(s, out);
}

void
ack_store_close(struct ack_store *s)
{
    if (s)
        s->ops->close(s);
}

/* ---- form and return target -------------------------------------------------- */

int
ack_form_parse(const char *body, size_t len, char *url, size_t urlcap, char *token, size_t tokcap)
{
    int have_url = 0, have_tok = 0;
    const char *p = body, *end = body + len;

    if (len > ACK_FORM_MAX)
        return -1;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *fe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(fe - p));
        const char *ke = eq ? eq : fe, *vs = eq ? eq + 1 : fe;
        char name[8];
        size_t nl, vl;
        /* A name that does not decode into name[] is not one of ours. */
        if (ack_pct_decode(p, (size_t)(ke - p), name, sizeof(name), 1, &nl) == 0) {
            int is_url = strcmp(name, "url") == 0, is_tok = strcmp(name, "token") == 0;
            if (is_url || is_tok) {
                int *have = is_url ? &have_url : &have_tok;
                if (*have ||
                    ack_pct_decode(vs, (size_t)(fe - vs), is_url ? url : token,
                                   is_url ? urlcap : tokcap, 1, &vl) < 0 ||
                    vl == 0)
                    return -1;
                *have = 1;
            }
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    return have_url && have_tok ? 0 : -1;
}

/* A DNS name or IPv4 address: labels of letters, digits, '-' and '_', each 1
 * to 63 bytes, at most 253 bytes without an optional final dot. */
static int
ack_hostname_ok(const char *h, size_t n)
{
    if (n && h[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_') ||
            ++label > 63)
            return 0;
    }
    return label > 0;
}

int
ack_url_parse_host(const char *url, char *host, size_t hostcap, int *is_https)
{
    size_t n = strnlen(url, ACK_URL_MAX + 1);
    const char *p, *hs, *he, *port;
    int https;

    if (n > ACK_URL_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return -1;
    }
    if (strncasecmp(url, "http://", 7) == 0) {
        https = 0;
        p = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        https = 1;
        p = url + 8;
    } else {
        return -1;
    }
    const char *aend = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(aend - p)))
        return -1;
    if (p < aend && *p == '[') {
        const char *rb = memchr(p, ']', (size_t)(aend - p));
        char lit[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (!rb)
            return -1;
        hs = p + 1;
        he = rb;
        port = rb + 1;
        if ((size_t)(he - hs) >= sizeof(lit))
            return -1;
        memcpy(lit, hs, (size_t)(he - hs));
        lit[he - hs] = '\0';
        if (inet_pton(AF_INET6, lit, &a6) != 1 || (port < aend && *port != ':'))
            return -1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(aend - p));
        hs = p;
        he = port = colon ? colon : aend;
        if (!ack_hostname_ok(hs, (size_t)(he - hs)))
            return -1;
    }
    if (port < aend) {
        long long pn;
        if (ack_parse_dec(port + 1, (size_t)(aend - port - 1), &pn) < 0 || pn > 65535)
            return -1;
    }
    size_t hl = (size_t)(he - hs);
    if (hl + 1 > hostcap)
        return -1;
    for (size_t i = 0; i < hl; i++) {
        char c = hs[i];
        host[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    host[hl] = '\0';
    if (is_https)
        *is_https = https;
    return 0;
}
