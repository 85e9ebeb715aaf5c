/*
 * Audit log: formatting and escaping (pure), the hash chain, the writer thread
 * with rotation and gzip, whole-line writes on a full disk, checkpoints, and
 * the offline verify tool (--report reads the log through auditidx.c).  The line format, chain
 * input, checkpoint format, partial-line, full-disk and full-queue behaviour are described in
 * include/aigate/audit/audit.h.
 *
 * Threads.  Workers call audit_emit(): format on their own stack, then copy
 * the line into a byte ring (records [u32 len][bytes]) under a mutex held
 * only for the copy.  The single writer thread owns the file descriptor, the
 * chain state and the output buffer; it reads [head, tail) of the ring
 * without the lock (producers only write beyond tail) and frees the space
 * afterwards.  Rotated files are gzipped by a short-lived thread, at most one
 * at a time, so rotation never holds lines back for long; it runs at a lower
 * priority (nice 10) and gzip level 1 (chain hashes and ids do not compress
 * anyway: level 6 saves ~8% of the size for ~1.7x the CPU), so compressing a
 * rotated file does not take CPU from the workers under load.
 *
 * The writer knows, for the file it writes, how many whole lines it holds
 * (counted once when the file is opened) and the chain of the last one: that
 * is what a checkpoint states.  Only whole lines ever stay in the file, so
 * those two are always what a verifier reading the file would find.
 */
#include "aigate/audit/audit.h"

#include "aigate/core/keyfile.h"
#include "aigate/core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include <zlib.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define AUDIT_BATCH (256u << 10) /* ring bytes handled per lock round, output bytes per write */
/*
 * The writer lets lines gather for up to AUDIT_LINGER_MS after the first one
 * (or until AUDIT_WAKE_BYTES are queued) instead of waking for every line:
 * one wake-up per request would cost the workers a context switch each.
 */
#define AUDIT_LINGER_MS 20
#define AUDIT_WAKE_BYTES (128u << 10)
#define AUDIT_CHAIN_SUFFIX 76       /* ,"chain":"<64 hex>"} */
#define AUDIT_READ_LINE (64u << 10) /* longest line the readers accept */
#define AUDIT_TAIL_SCAN (64u << 10) /* bytes of a live file searched for its last chain */
#define AUDIT_STAMP_LEN 16          /* YYYYMMDDTHHMMSSZ */

static const char audit_hex[] = "0123456789abcdef";

/* ---- ids -------------------------------------------------------------------------- */

static uint64_t
audit_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256**, one state per thread, seeded from getrandom(). */
static uint64_t
audit_rand64(void)
{
    static _Thread_local uint64_t s[4];
    static _Thread_local int seeded;

    if (!seeded) {
        if (getrandom(s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            s[0] = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 32);
            s[1] = (uint64_t)(uintptr_t)&seeded;
            s[2] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
            s[3] = 0x2545f4914f6cdd1dull;
        }
        seeded = 1;
    }
    uint64_t r = audit_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = audit_rotl(s[3], 45);
    return r;
}

const char *
audit_action_name(enum audit_action a)
{
    switch (a) {
    case AUDIT_ALLOW:
        return "allow";
    case AUDIT_BLOCK:
        return "block";
    case AUDIT_WARN:
        return "warn";
    case AUDIT_ACK:
        return "ack";
    case AUDIT_AUTH_FAIL:
        return "auth-fail";
    case AUDIT_NONE:
    case AUDIT_ERROR:
        break;
    }
    return "error";
}

void
audit_new_id(char out[33])
{
    unsigned char b[16];

    for (int w = 0; w < 2; w++) {
        uint64_t v = audit_rand64();
        for (int i = 0; i < 8; i++)
            b[w * 8 + i] = (unsigned char)(v >> (56 - 8 * i));
    }
    keyfile_hex(out, 33, b, sizeof(b));
}

/* ---- JSON ------------------------------------------------------------------------- */

/*
 * Length of the valid UTF-8 sequence at s (2..4), or 0 with *adv set to the
 * maximal invalid prefix to replace by one U+FFFD (Unicode's recommended practice).
 */
static size_t
audit_utf8_seq(const unsigned char *s, size_t len, size_t *adv)
{
    unsigned c = s[0], lo = 0x80, hi = 0xbf;
    size_t need, k;

    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
    } else if (c == 0xe0) {
        need = 2;
        lo = 0xa0;
    } else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
        need = 2;
    } else if (c == 0xed) {
        need = 2;
        hi = 0x9f;
    } else if (c == 0xf0) {
        need = 3;
        lo = 0x90;
    } else if (c >= 0xf1 && c <= 0xf3) {
        need = 3;
    } else if (c == 0xf4) {
        need = 3;
        hi = 0x8f;
    } else {
        *adv = 1;
        return 0;
    }
    for (k = 1; k <= need && k < len; k++) {
        unsigned b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf))
            break;
    }
    if (k > need)
        return need + 1;
    *adv = k;
    return 0;
}

/* Escape s into out[0..room); stops at max bytes; *short_room set if room ran out first. */
static size_t
audit_escape(char *out, size_t room, const unsigned char *s, size_t len, size_t max,
             int *short_room)
{
    size_t o = 0, i = 0;
    char u[8];

    while (i < len) {
        const char *unit = u;
        size_t ulen, adv = 1;
        unsigned c = s[i];

        if (c == '"' || c == '\\') {
            u[0] = '\\';
            u[1] = (char)c;
            ulen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            char e = c == '\b'   ? 'b'
                     : c == '\f' ? 'f'
                     : c == '\n' ? 'n'
                     : c == '\r' ? 'r'
                     : c == '\t' ? 't'
                                 : 0;
            u[0] = '\\';
            if (e) {
                u[1] = e;
                ulen = 2;
            } else {
                memcpy(u + 1, "u00", 3);
                u[4] = audit_hex[c >> 4];
                u[5] = audit_hex[c & 0xf];
                ulen = 6;
            }
        } else if (c < 0x80) {
            u[0] = (char)c;
            ulen = 1;
        } else if ((ulen = audit_utf8_seq(s + i, len - i, &adv)) > 0) {
            unit = (const char *)s + i;
            adv = ulen;
        } else {
            unit = "\xef\xbf\xbd";
            ulen = 3;
        }
        if (o + ulen > max)
            break;
        if (o + ulen > room) {
            *short_room = 1;
            break;
        }
        memcpy(out + o, unit, ulen);
        o += ulen;
        i += adv;
    }
    return o;
}

size_t
audit_json_str(char *out, size_t cap, const char *s, size_t len, size_t max)
{
    int short_room = 0;

    if (!s) {
        if (cap < 4)
            return 0;
        memcpy(out, "null", 4);
        return 4;
    }
    if (cap < 2)
        return 0;
    out[0] = '"';
    size_t o = 1 + audit_escape(out + 1, cap - 2, (const unsigned char *)s, len, max, &short_room);
    if (short_room)
        return 0;
    out[o++] = '"';
    return o;
}

struct audit_buf {
    char *p;
    size_t cap, len;
    int full;
};

static void
audit_put(struct audit_buf *b, const char *s, size_t n)
{
    if (b->full || n > b->cap - b->len) {
        b->full = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void
audit_put_str(struct audit_buf *b, const char *key, const char *s, size_t len, size_t max)
{
    audit_put(b, key, strlen(key));
    if (b->full)
        return;
    size_t n = audit_json_str(b->p + b->len, b->cap - b->len, s, len, max);
    if (n == 0)
        b->full = 1;
    b->len += n;
}

static void
audit_put_cstr(struct audit_buf *b, const char *key, const char *s)
{
    audit_put_str(b, key, s, s ? strlen(s) : 0, AUDIT_FIELD_MAX);
}

static void
audit_put_int(struct audit_buf *b, const char *key, int64_t v)
{
    char num[24];
    int n;

    audit_put(b, key, strlen(key));
    if (v < 0) {
        audit_put(b, "null", 4);
        return;
    }
    /* Digits from the right: no printf on the hot path. */
    n = (int)sizeof(num);
    do {
        num[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    audit_put(b, num + n, sizeof(num) - (size_t)n);
}

/* d as exactly width decimal digits (zero-padded) at out. */
static void
audit_digits(char *out, unsigned d, int width)
{
    while (width-- > 0) {
        out[width] = (char)('0' + d % 10);
        d /= 10;
    }
}

/* audit_format() with node_field (`,"node":"NAME"`, node_len bytes; NULL: none) after "tls". */
static size_t
audit_format_node(char *buf, size_t cap, const struct audit_rec *r, int log_query,
                  const char *node_field, size_t node_len)
{
    struct audit_buf b = {buf, cap ? cap - 1 : 0, 0, cap == 0};
    /* {"ts":"YYYY-MM-DDTHH:MM:SS.mmmZ": the seconds' part is made once a second per thread. */
    static _Thread_local char ts[] = "{\"ts\":\"0000-00-00T00:00:00.000Z\"";
    static _Thread_local time_t ts_sec = -1;
    long ms = r->ts.tv_nsec / 1000000;

    if (r->ts.tv_sec != ts_sec) {
        struct tm tm;
        if (!gmtime_r(&r->ts.tv_sec, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
            memset(&tm, 0, sizeof(tm));
        audit_digits(ts + 7, (unsigned)(tm.tm_year + 1900), 4);
        audit_digits(ts + 12, (unsigned)tm.tm_mon + 1, 2);
        audit_digits(ts + 15, (unsigned)tm.tm_mday, 2);
        audit_digits(ts + 18, (unsigned)tm.tm_hour, 2);
        audit_digits(ts + 21, (unsigned)tm.tm_min, 2);
        audit_digits(ts + 24, (unsigned)tm.tm_sec, 2);
        ts_sec = r->ts.tv_sec;
    }
    if (ms < 0 || ms > 999)
        ms = 0;
    audit_digits(ts + 27, (unsigned)ms, 3);
    audit_put(&b, ts, sizeof(ts) - 1);
    audit_put_str(&b, ",\"id\":", r->id[0] ? r->id : NULL, strnlen(r->id, sizeof(r->id)),
                  AUDIT_FIELD_MAX);
    audit_put_cstr(&b, ",\"client\":", r->client);
    audit_put_cstr(&b, ",\"user\":", r->user);
    audit_put_cstr(&b, ",\"method\":", r->method);
    audit_put_cstr(&b, ",\"scheme\":", r->scheme);
    audit_put_cstr(&b, ",\"host\":", r->host);
    audit_put_int(&b, ",\"port\":", r->port);
    size_t plen = 0;
    if (r->path)
        plen = log_query ? strlen(r->path) : strcspn(r->path, "?");
    audit_put_str(&b, ",\"path\":", r->path, plen, AUDIT_PATH_MAX);
    audit_put_cstr(&b, ",\"service\":", r->service);
    audit_put_cstr(&b, ",\"category\":", r->category);
    audit_put_cstr(&b, ",\"rule\":", r->rule);
    audit_put_cstr(&b, ",\"action\":", audit_action_name(r->action));
    audit_put_int(&b, ",\"status\":", r->status);
    audit_put_int(&b, ",\"bytes_in\":", r->bytes_in);
    audit_put_int(&b, ",\"bytes_out\":", r->bytes_out);
    audit_put_int(&b, ",\"ms\":", r->ms);
    audit_put_cstr(&b, ",\"tls\":", r->tls);
    if (node_len)
        audit_put(&b, node_field, node_len);
    if (r->upgrade)
        audit_put_cstr(&b, ",\"upgrade\":", r->upgrade);
    if (r->ndlp > 0 && r->dlp) {
        size_t nd = r->ndlp < AUDIT_DLP_MAX ? r->ndlp : AUDIT_DLP_MAX;
        for (size_t i = 0; i < nd; i++) {
            const char *d = r->dlp[i];
            audit_put_str(&b, i == 0 ? ",\"dlp\":[" : ",", d, d ? strlen(d) : 0,
                          AUDIT_DLP_NAME_MAX);
        }
        audit_put(&b, "]", 1);
    }
    audit_put(&b, "}", 1);
    if (b.full) {
        if (cap)
            buf[0] = '\0';
        return 0;
    }
    buf[b.len] = '\0';
    return b.len;
}

size_t
audit_format(char *buf, size_t cap, const struct audit_rec *r, int log_query)
{
    return audit_format_node(buf, cap, r, log_query, NULL, 0);
}

/* ---- chain ------------------------------------------------------------------------ */

struct audit_mac {
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx;
    unsigned char key[32];
    int keyed; /* ctx holds the key: later lines re-init without re-keying HMAC */
};

static int
audit_mac_init(struct audit_mac *m, const unsigned char key[32])
{
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};

    memset(m, 0, sizeof(*m));
    memcpy(m->key, key, 32);
    m->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!m->mac)
        return -1;
    m->ctx = EVP_MAC_CTX_new(m->mac);
    return m->ctx && EVP_MAC_CTX_set_params(m->ctx, params) ? 0 : -1;
}

static void
audit_mac_free(struct audit_mac *m)
{
    EVP_MAC_CTX_free(m->ctx);
    EVP_MAC_free(m->mac);
    OPENSSL_cleanse(m->key, sizeof(m->key));
    memset(m, 0, sizeof(*m));
}

/* out = hex(HMAC-SHA256(key, p1 || p2)), 64 characters, no NUL; p2 may be empty. */
static int
audit_mac_hex(struct audit_mac *m, const void *p1, size_t l1, const void *p2, size_t l2,
              char out[AUDIT_CHAIN_HEX])
{
    unsigned char md[32];
    size_t mdlen = 0;

    int ok = m->keyed ? EVP_MAC_init(m->ctx, NULL, 0, NULL)
                      : EVP_MAC_init(m->ctx, m->key, sizeof(m->key), NULL);
    m->keyed = ok;
    if (!ok || !EVP_MAC_update(m->ctx, p1, l1) || (l2 && !EVP_MAC_update(m->ctx, p2, l2)) ||
        !EVP_MAC_final(m->ctx, md, &mdlen, sizeof(md)) || mdlen != sizeof(md))
        return -1;
    char hex[2 * sizeof(md) + 1];
    if (keyfile_hex(hex, sizeof(hex), md, sizeof(md)) < 0)
        return -1;
    memcpy(out, hex, AUDIT_CHAIN_HEX);
    return 0;
}

/* out = hex(HMAC-SHA256(key, prev || line)), 64 characters, no NUL. */
static int
audit_mac_chain(struct audit_mac *m, const char prev[AUDIT_CHAIN_HEX], const char *line, size_t len,
                char out[AUDIT_CHAIN_HEX])
{
    return audit_mac_hex(m, prev, AUDIT_CHAIN_HEX, line, len, out);
}

/* If line[0..len) ends with ,"chain":"<64 lower hex>"}, copy the hex to chain. */
static int
audit_chain_suffix(const char *line, size_t len, char chain[AUDIT_CHAIN_HEX])
{
    if (len < AUDIT_CHAIN_SUFFIX + 1 || line[0] != '{')
        return 0;
    const char *s = line + len - AUDIT_CHAIN_SUFFIX;
    if (memcmp(s, ",\"chain\":\"", 10) != 0 || memcmp(s + 74, "\"}", 2) != 0)
        return 0;
    for (size_t i = 0; i < AUDIT_CHAIN_HEX; i++) {
        char c = s[10 + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    memcpy(chain, s + 10, AUDIT_CHAIN_HEX);
    return 1;
}

_Static_assert(KEYFILE_KEY_LEN == 32, "the chain key is a key file");

int
audit_key_load(const char *file, int create, unsigned char key[32], char *err, size_t errlen)
{
    int created;

    if (keyfile_load(file, create, key, &created, err, errlen) < 0) {
        if (errno == EBADMSG)
            snprintf(err, errlen, "%s: not a chain key (64 hex digits or 32 bytes)", file);
        return -1;
    }
    if (created)
        log_info("audit: created chain key %s", file);
    return 0;
}

/* ---- line reader (plain or gzip) -------------------------------------------------- */

struct audit_reader {
    gzFile gz;
    char *buf;
    size_t start, end;
    int eof;
};

static int
audit_reader_open(struct audit_reader *r, const char *file)
{
    memset(r, 0, sizeof(*r));
    r->buf = malloc(AUDIT_READ_LINE);
    if (!r->buf)
        return -1;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || !(r->gz = gzdopen(fd, "rb"))) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        free(r->buf);
        r->buf = NULL;
        errno = e ? e : ENOMEM;
        return -1;
    }
    gzbuffer(r->gz, 128 * 1024);
    return 0;
}

static void
audit_reader_close(struct audit_reader *r)
{
    if (r->gz)
        gzclose(r->gz);
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

static const char *
audit_reader_error(struct audit_reader *r)
{
    int e = Z_OK;
    const char *msg = gzerror(r->gz, &e);
    if (e == Z_ERRNO)
        return strerror(errno);
    return msg && *msg ? msg : "read error";
}

/*
 * Next line (without '\n', *nl says whether it had one; a line longer than
 * the buffer comes back in pieces without nl).  Returns 1, 0 at end, -1 on error.
 * The line stays valid and writable until the next call.
 */
static int
audit_reader_next(struct audit_reader *r, char **line, size_t *len, int *nl)
{
    for (;;) {
        char *p = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (p) {
            *line = r->buf + r->start;
            *len = (size_t)(p - *line);
            *nl = 1;
            r->start += *len + 1;
            return 1;
        }
        if (r->eof || (r->start == 0 && r->end == AUDIT_READ_LINE)) {
            if (r->start == r->end)
                return 0;
            *line = r->buf + r->start;
            *len = r->end - r->start;
            *nl = 0;
            r->start = r->end;
            return 1;
        }
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        int n = gzread(r->gz, r->buf + r->end, (unsigned)(AUDIT_READ_LINE - r->end));
        if (n < 0)
            return -1;
        if (n == 0) {
            int e = Z_OK;
            gzerror(r->gz, &e);
            if (e != Z_OK)
                return -1;
            r->eof = 1;
        }
        r->end += (size_t)n;
    }
}

/* Chain of the last chained complete line of a (plain or gzip) file: 1 found, 0 none, -1 error. */
static int
audit_file_last_chain(const char *file, char chain[AUDIT_CHAIN_HEX])
{
    struct audit_reader r;
    char *line;
    size_t len;
    int nl, rc, found = 0;

    if (audit_reader_open(&r, file) < 0)
        return -1;
    while ((rc = audit_reader_next(&r, &line, &len, &nl)) > 0)
        if (nl && audit_chain_suffix(line, len, chain))
            found = 1;
    audit_reader_close(&r);
    return rc < 0 ? -1 : found;
}

/*
 * The tail of the live file: *ends_nl, and the chain of its last chained
 * complete line among the last AUDIT_TAIL_SCAN bytes.  Returns 1 found, 0 not
 * found with the whole file scanned, -1 not found in a longer file or error.
 */
static int
audit_tail_chain(int fd, uint64_t size, char chain[AUDIT_CHAIN_HEX], int *ends_nl)
{
    size_t want = size < AUDIT_TAIL_SCAN ? (size_t)size : AUDIT_TAIL_SCAN;
    char *buf;
    int rc = size <= AUDIT_TAIL_SCAN ? 0 : -1;

    *ends_nl = 1;
    if (want == 0)
        return 0;
    buf = malloc(want);
    if (!buf)
        return -1;
    if (pread(fd, buf, want, (off_t)(size - want)) != (ssize_t)want) {
        free(buf);
        return -1;
    }
    *ends_nl = buf[want - 1] == '\n';
    char *end = memrchr(buf, '\n', want);
    while (end) {
        char *start = memrchr(buf, '\n', (size_t)(end - buf));
        start = start ? start + 1 : buf;
        if ((start > buf || size <= AUDIT_TAIL_SCAN) &&
            audit_chain_suffix(start, (size_t)(end - start), chain)) {
            rc = 1;
            break;
        }
        end = start > buf ? start - 1 : NULL;
    }
    free(buf);
    return rc;
}

/* ---- rotated files ---------------------------------------------------------------- */

struct audit_rot {
    char *file;
    char stamp[AUDIT_STAMP_LEN + 1];
    unsigned long seq;
    int gz;
};

/* name = BASE.YYYYMMDDTHHMMSSZ[.NNNN][.gz] (older names may lack .NNNN) */
static int
audit_rot_parse(const char *name, const char *base, size_t blen, struct audit_rot *r)
{
    static const char pat[] = "DDDDDDDDTDDDDDDZ";
    const char *s = name + blen + 1;

    if (strncmp(name, base, blen) != 0 || name[blen] != '.' || strlen(s) < AUDIT_STAMP_LEN)
        return 0;
    for (size_t i = 0; i < AUDIT_STAMP_LEN; i++)
        if (pat[i] == 'D' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
            return 0;
    memcpy(r->stamp, s, AUDIT_STAMP_LEN);
    r->stamp[AUDIT_STAMP_LEN] = '\0';
    s += AUDIT_STAMP_LEN;
    r->seq = 0;
    if (s[0] == '.' && s[1] >= '0' && s[1] <= '9') {
        char *e;
        errno = 0;
        r->seq = strtoul(s + 1, &e, 10);
        if (errno)
            return 0;
        s = e;
    }
    r->gz = strcmp(s, ".gz") == 0;
    return r->gz || *s == '\0';
}

static int
audit_rot_cmp(const void *pa, const void *pb)
{
    const struct audit_rot *a = pa, *b = pb;
    int c = strcmp(a->stamp, b->stamp);

    if (c)
        return c;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return a->gz - b->gz;
}

/* All rotated files of path, oldest first; both X and X.gz may appear (mid-compression). */
static int
audit_rot_list(const char *path, struct audit_rot **out, size_t *n)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base), plen = (size_t)(base - path), cap = 0;
    char dir[4096];
    struct audit_rot *v = NULL;
    struct dirent *de;
    DIR *d;

    *out = NULL;
    *n = 0;
    snprintf(dir, sizeof(dir), "%.*s", plen ? (int)plen : 1, plen ? path : ".");
    d = opendir(dir);
    if (!d)
        return -1;
    while ((de = readdir(d))) {
        struct audit_rot r;
        if (!audit_rot_parse(de->d_name, base, blen, &r))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            struct audit_rot *nv = realloc(v, cap * sizeof(*v));
            if (!nv)
                goto fail;
            v = nv;
        }
        size_t flen = plen + strlen(de->d_name) + 1;
        r.file = malloc(flen);
        if (!r.file)
            goto fail;
        snprintf(r.file, flen, "%.*s%s", (int)plen, path, de->d_name);
        v[(*n)++] = r;
    }
    closedir(d);
    if (*n)
        qsort(v, *n, sizeof(*v), audit_rot_cmp);
    *out = v;
    return 0;

fail:
    closedir(d);
    for (size_t i = 0; i < *n; i++)
        free(v[i].file);
    free(v);
    *n = 0;
    return -1;
}

static void
audit_rot_free(struct audit_rot *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].file);
    free(v);
}

static int
audit_rot_same(const struct audit_rot *a, const struct audit_rot *b)
{
    return strcmp(a->stamp, b->stamp) == 0 && a->seq == b->seq;
}

int
audit_rotated_files(const char *path, char ***files, size_t *n)
{
    struct audit_rot *v;
    size_t nv, k = 0;

    *files = NULL;
    *n = 0;
    if (audit_rot_list(path, &v, &nv) < 0)
        return -1;
    char **f = calloc(nv ? nv : 1, sizeof(*f));
    if (!f) {
        audit_rot_free(v, nv);
        return -1;
    }
    for (size_t i = 0; i < nv; i++) {
        /* X and X.gz both present: the compressor is done but has not removed X yet */
        if (i + 1 < nv && audit_rot_same(&v[i], &v[i + 1]) && !v[i].gz && v[i + 1].gz) {
            free(v[i].file);
            continue;
        }
        f[k++] = v[i].file;
    }
    free(v);
    *files = f;
    *n = k;
    return 0;
}

void
audit_files_free(char **files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
}

/* gzip src to src.gz (via src.gz.tmp, fsync'd), then remove src. */
static int
audit_gzip_file(const char *src)
{
    char dst[4096], tmp[4112], buf[65536];
    int in = -1, out = -1, out2 = -1;
    gzFile gz = NULL;
    ssize_t n;

    if (snprintf(dst, sizeof(dst), "%s.gz", src) >= (int)sizeof(dst))
        return -1;
    snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
    in = open(src, O_RDONLY | O_CLOEXEC);
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (in < 0 || out < 0 || (out2 = dup(out)) < 0 || !(gz = gzdopen(out, "wb1")))
        goto fail;
    out = -1;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (gzwrite(gz, buf, (unsigned)n) != (int)n)
            goto fail;
    if (n < 0)
        goto fail;
    int zrc = gzclose(gz);
    gz = NULL;
    if (zrc != Z_OK || fsync(out2) < 0 || rename(tmp, dst) < 0)
        goto fail;
    close(out2);
    close(in);
    unlink(src);
    keyfile_fsync_dir(src);
    return 0;

fail:
    log_warnx("audit: cannot compress %s: %s", src, strerror(errno));
    if (gz)
        gzclose(gz);
    if (out >= 0)
        close(out);
    if (out2 >= 0)
        close(out2);
    if (in >= 0)
        close(in);
    unlink(tmp);
    return -1;
}

struct audit_gzjob {
    char *path;
    int keep;
};

#define AUDIT_WRITER_NICE 5

/* Compress every uncompressed rotated file, then delete the oldest beyond keep. */
static void *
audit_gz_main(void *arg)
{
    struct audit_gzjob *job = arg;
    struct audit_rot *v;
    size_t n;

    setpriority(PRIO_PROCESS, (id_t)gettid(), 10); /* Linux: this thread only */

    if (audit_rot_list(job->path, &v, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            int has_gz = i + 1 < n && audit_rot_same(&v[i], &v[i + 1]) && v[i + 1].gz;
            if (v[i].gz)
                continue;
            if (has_gz) {
                unlink(v[i].file);
                continue;
            }
            audit_gzip_file(v[i].file);
        }
        audit_rot_free(v, n);
    }
    if (job->keep > 0) {
        char **f;
        if (audit_rotated_files(job->path, &f, &n) == 0) {
            for (size_t i = 0; i + (size_t)job->keep < n; i++) {
                if (unlink(f[i]) == 0)
                    log_info("audit: removed old log %s", f[i]);
                else
                    log_warnx("audit: cannot remove %s: %s", f[i], strerror(errno));
            }
            audit_files_free(f, n);
        }
    }
    free(job->path);
    free(job);
    return NULL;
}

/* ---- writer ----------------------------------------------------------------------- */

#define AUDIT_SCAN_CHUNK (256u << 10) /* bytes read at a time when surveying an opened log */
#define AUDIT_CKPT_MAX 8192           /* longest checkpoint line */
#define AUDIT_SIDE_TRIES 100          /* PATH.partial-STAMP, then .1 ... .99 */
#define AUDIT_NOTE_RULE "audit:partial-line"

/* A log file as audit_open_log() found it. */
struct audit_file {
    int fd;
    uint64_t size;  /* bytes */
    uint64_t lines; /* complete lines ('\n') */
    uint64_t whole; /* end of the last complete line; < size: it ends in a partial line */
};

struct audit {
    pthread_mutex_t mu;
    pthread_cond_t nonempty, nonfull;
    unsigned char *ring;
    uint64_t head, tail; /* under mu; ring holds [head, tail) */
    int writer_sleeping, writer_lingering, full_waiters, stop;
    int stalled;     /* under mu: a wait timed out, drop at once until progress */
    int cfg_changed; /* under mu: the fields below are new */
    uint64_t cfg_rotate_bytes;
    int cfg_keep, cfg_ck_s;
    char *cfg_ck_file;         /* owned; the writer takes it */
    struct audit_file pending; /* opened by audit_reconfigure() for pending_path; fd -1: none */
    char *pending_path;
    char *path; /* written by the writer under mu */

    atomic_int reopen;
    atomic_int scope_ai, log_query;
    atomic_uint_least64_t lines, waits, dropped;
    char *node;       /* fixed by audit_open(); NULL: none */
    char *node_field; /* ,"node":"NAME" */
    size_t node_len;

    /* writer thread only */
    int fd;
    uint64_t size, rotate_bytes, rot_at;
    uint64_t file_lines;           /* complete lines in the file */
    char written[AUDIT_CHAIN_HEX]; /* chain of its last line (or of the line it continues) */
    int cut_pending;               /* the file ends in a partial line, from cut_at on */
    uint64_t cut_at;
    int cut_warned;
    int note_pending; /* a cut to record in the log */
    uint64_t note_bytes;
    char note_side[4200];
    int keep;
    char prev[AUDIT_CHAIN_HEX];
    struct audit_mac mac;
    char *out;
    size_t outlen, outlines;
    int dirty, write_failed;
    struct timespec last_sync;
    int ck_s, ck_dirty, ck_due, ck_warned;
    char *ck_file;
    struct timespec ck_last;
    pthread_t gz;
    int gz_running;
    char rot_stamp[AUDIT_STAMP_LEN + 1]; /* newest rotated name, so names only grow */
    unsigned long rot_seq;

    char *key_file;
    pthread_t writer;
};

static void
audit_ring_put(struct audit *a, uint64_t pos, const void *src, size_t n)
{
    size_t off = (size_t)(pos & (AUDIT_QUEUE_BYTES - 1)), first = AUDIT_QUEUE_BYTES - off;

    if (first > n)
        first = n;
    memcpy(a->ring + off, src, first);
    memcpy(a->ring, (const char *)src + first, n - first);
}

static void
audit_ring_get(const struct audit *a, uint64_t pos, void *dst, size_t n)
{
    size_t off = (size_t)(pos & (AUDIT_QUEUE_BYTES - 1)), first = AUDIT_QUEUE_BYTES - off;

    if (first > n)
        first = n;
    memcpy(dst, a->ring + off, first);
    memcpy((char *)dst + first, a->ring, n - first);
}

static void
audit_deadline(struct timespec *t, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* Count the lines of f (fd and size set) and find where the last whole one ends. */
static int
audit_scan(struct audit_file *f)
{
    char *buf = malloc(AUDIT_SCAN_CHUNK);
    uint64_t off = 0;

    f->lines = 0;
    f->whole = 0;
    if (!buf)
        return -1;
    while (off < f->size) {
        uint64_t left = f->size - off;
        ssize_t n = pread(f->fd, buf, left < AUDIT_SCAN_CHUNK ? (size_t)left : AUDIT_SCAN_CHUNK,
                          (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return -1;
        }
        if (n == 0) { /* it shrank under us */
            f->size = off;
            break;
        }
        for (char *p = buf, *end = buf + n; (p = memchr(p, '\n', (size_t)(end - p))); p++) {
            f->lines++;
            f->whole = off + (uint64_t)(p - buf) + 1;
        }
        off += (uint64_t)n;
    }
    free(buf);
    return 0;
}

/*
 * Open path for appending (and reading: audit_cut() copies from it) and
 * survey it.  Nothing is written here: a partial last line is the writer's
 * business (audit_cut).  On failure errno is kept for the caller.
 */
static int
audit_open_log(const char *path, struct audit_file *f, char *err, size_t errlen)
{
    struct stat st;
    int e;

    f->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (f->fd < 0 || fstat(f->fd, &st) < 0)
        goto fail;
    f->size = (uint64_t)st.st_size;
    if (audit_scan(f) < 0)
        goto fail;
    return 0;

fail:
    e = errno;
    snprintf(err, errlen, "%s: %s", path, strerror(e));
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    errno = e;
    return -1;
}

/* The chain to continue from: the live file's last line, else the newest rotated file's. */
static int
audit_find_prev(const char *path, char prev[AUDIT_CHAIN_HEX], char *err, size_t errlen)
{
    struct stat st;
    int ends_nl, rc = 0;
    char **f;
    size_t n;

    memset(prev, '0', AUDIT_CHAIN_HEX);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        rc = fstat(fd, &st) < 0 ? -1 : audit_tail_chain(fd, (uint64_t)st.st_size, prev, &ends_nl);
        close(fd);
        if (rc == 1)
            return 0;
        if (rc < 0) {
            snprintf(err, errlen, "%s: no chained line at its end; not an aigate audit log?", path);
            return -1;
        }
    } else if (errno != ENOENT) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (audit_rotated_files(path, &f, &n) < 0)
        return 0;
    for (size_t i = n; i-- > 0;) {
        rc = audit_file_last_chain(f[i], prev);
        if (rc != 0)
            break;
    }
    audit_files_free(f, n);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read the previous rotated file", path);
        return -1;
    }
    return 0;
}

static void
audit_start_gz(struct audit *a)
{
    struct audit_gzjob *job;

    if (a->gz_running) {
        pthread_join(a->gz, NULL);
        a->gz_running = 0;
    }
    job = malloc(sizeof(*job));
    if (!job || !(job->path = strdup(a->path))) {
        free(job);
        log_warnx("audit: out of memory starting compression");
        return;
    }
    job->keep = a->keep;
    if (pthread_create(&a->gz, NULL, audit_gz_main, job) != 0) {
        log_warnx("audit: cannot start the compression thread");
        free(job->path);
        free(job);
        return;
    }
    pthread_setname_np(a->gz, "aigate-gzip");
    a->gz_running = 1;
}

static int
audit_stopping(struct audit *a)
{
    pthread_mutex_lock(&a->mu);
    int s = a->stop;
    pthread_mutex_unlock(&a->mu);
    return s;
}

static void
audit_sync(struct audit *a)
{
    if (a->dirty && a->fd >= 0)
        fdatasync(a->fd);
    a->dirty = 0;
    clock_gettime(CLOCK_MONOTONIC, &a->last_sync);
}

/* Replace the descriptor with a freshly opened file (path already set). */
static void
audit_switch_fd(struct audit *a, const struct audit_file *f)
{
    audit_sync(a);
    if (a->fd >= 0)
        close(a->fd);
    a->fd = f->fd;
    a->size = f->size;
    a->file_lines = f->lines;
    a->cut_pending = f->whole < f->size;
    a->cut_at = f->whole;
    a->cut_warned = 0;
    a->rot_at = a->rotate_bytes;
    a->ck_dirty = 1;
}

static void
audit_reopen_now(struct audit *a)
{
    struct audit_file f;
    char err[512];

    if (audit_open_log(a->path, &f, err, sizeof(err)) < 0) {
        if (a->fd >= 0)
            log_warnx("audit: reopen failed, still writing to the old file: %s", err);
        return;
    }
    audit_switch_fd(a, &f);
    a->ck_due = 1; /* the last checkpoint may name a file now renamed by logrotate */
    log_info("audit: reopened %s", a->path);
}

/*
 * Move the partial line at the end of the file ([cut_at, size)) to a new side
 * file PATH.partial-YYYYMMDDTHHMMSSZ[.N], fsync'd, then cut the log back to
 * its last whole line; audit_tend() writes the line that records it.
 * Returns 0, or -1 with errno set and the log untouched (tried again later).
 */
static int
audit_cut(struct audit *a)
{
    char stamp[AUDIT_STAMP_LEN + 1], buf[8192];
    struct tm tm;
    time_t now = time(NULL);
    uint64_t off = a->cut_at;
    int sfd = -1, e;

    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 0; i < AUDIT_SIDE_TRIES && sfd < 0; i++) {
        int n =
            i ? snprintf(a->note_side, sizeof(a->note_side), "%s.partial-%s.%d", a->path, stamp, i)
              : snprintf(a->note_side, sizeof(a->note_side), "%s.partial-%s", a->path, stamp);
        if (n < 0 || (size_t)n >= sizeof(a->note_side)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        sfd = open(a->note_side, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (sfd < 0 && errno != EEXIST)
            return -1;
    }
    if (sfd < 0)
        return -1;
    while (off < a->size) {
        uint64_t left = a->size - off;
        ssize_t n = pread(a->fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf), (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            goto fail;
        }
        for (ssize_t w = 0; w < n;) {
            ssize_t k = write(sfd, buf + w, (size_t)(n - w));
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                if (k == 0)
                    errno = ENOSPC;
                goto fail;
            }
            w += k;
        }
        off += (uint64_t)n;
    }
    if (fsync(sfd) < 0)
        goto fail;
    e = close(sfd);
    sfd = -1;
    if (e < 0 || ftruncate(a->fd, (off_t)a->cut_at) < 0)
        goto fail;
    keyfile_fsync_dir(a->note_side);
    a->note_bytes = a->size - a->cut_at;
    a->note_pending = 1;
    a->size = a->cut_at;
    a->cut_pending = 0;
    a->dirty = 1;
    log_warnx("audit: %s ended in a partial line (a crash?): its %" PRIu64
              " bytes were moved to %s",
              a->path, a->note_bytes, a->note_side);
    return 0;

fail:
    e = errno;
    if (sfd >= 0)
        close(sfd);
    unlink(a->note_side);
    errno = e;
    return -1;
}

/* Chain the line L at out + outlen (len bytes, ending with '}') and complete it in place. */
static int
audit_chain_append(struct audit *a, size_t len)
{
    char chain[AUDIT_CHAIN_HEX];
    char *l = a->out + a->outlen;

    if (audit_mac_chain(&a->mac, a->prev, l, len, chain) < 0) {
        log_warnx("audit: HMAC failed, line dropped");
        atomic_fetch_add(&a->dropped, 1);
        return -1;
    }
    l[len - 1] = ',';
    memcpy(l + len, "\"chain\":\"", 9);
    memcpy(l + len + 9, chain, AUDIT_CHAIN_HEX);
    memcpy(l + len + 9 + AUDIT_CHAIN_HEX, "\"}\n", 3);
    a->outlen += len + AUDIT_CHAIN_SUFFIX;
    a->outlines++;
    memcpy(a->prev, chain, AUDIT_CHAIN_HEX);
    return 0;
}

/* n lines, the last ending at out + to, reached the file. */
static void
audit_account(struct audit *a, size_t to, uint64_t n)
{
    if (n == 0)
        return;
    memcpy(a->written, a->out + to - 3 - AUDIT_CHAIN_HEX, AUDIT_CHAIN_HEX);
    a->file_lines += n;
    atomic_fetch_add(&a->lines, n);
    a->dirty = 1;
    a->ck_dirty = 1;
}

static uint64_t
audit_count_nl(const char *p, const char *end)
{
    uint64_t n = 0;

    for (; (p = memchr(p, '\n', (size_t)(end - p))); p++)
        n++;
    return n;
}

/*
 * After a failed write of out[0, off): cut the file back to the end of the
 * last whole line in it and return that offset.  If ftruncate() fails, the
 * piece is left for audit_cut() to move aside before the next write.
 */
static size_t
audit_trim(struct audit *a, size_t off)
{
    const char *nl = off ? memrchr(a->out, '\n', off) : NULL;
    size_t keep = nl ? (size_t)(nl - a->out) + 1 : 0;
    uint64_t to = a->size - (off - keep);

    if (keep == off)
        return off;
    a->dirty = 1;
    if (ftruncate(a->fd, (off_t)to) == 0) {
        a->size = to;
    } else {
        log_warnx("audit: cannot cut %s back to its last whole line: %s", a->path, strerror(errno));
        a->cut_pending = 1;
        a->cut_at = to;
    }
    return keep;
}

/*
 * Write the output buffer, whole lines or nothing.  On errors (disk full...)
 * the file is cut back to its last whole line and the rest retried every
 * second, so the ring fills and workers see back-pressure; when closing, the
 * lines still unwritten are dropped and counted.  A partial line the file was
 * found with is moved aside first (audit_cut).
 */
static void
audit_flush(struct audit *a)
{
    size_t off = 0, done = 0; /* written; counted */
    uint64_t done_lines = 0;

    while (off < a->outlen) {
        const char *why;
        if (a->fd < 0) {
            why = "not open";
        } else if (a->cut_pending && audit_cut(a) < 0) {
            why = strerror(errno);
        } else {
            ssize_t n = write(a->fd, a->out + off, a->outlen - off);
            if (n > 0) {
                off += (size_t)n;
                a->size += (uint64_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            why = n < 0 ? strerror(errno) : "nothing written";
        }
        off = audit_trim(a, off);
        uint64_t k = audit_count_nl(a->out + done, a->out + off);
        audit_account(a, off, k);
        done_lines += k;
        done = off;
        if (!a->write_failed)
            log_warnx("audit: cannot write %s: %s; retrying every second", a->path, why);
        a->write_failed = 1;
        if (audit_stopping(a))
            break;
        struct timespec one = {1, 0};
        nanosleep(&one, NULL);
        if (atomic_exchange(&a->reopen, 0) || a->fd < 0)
            audit_reopen_now(a);
    }
    if (off == a->outlen) {
        audit_account(a, off, a->outlines - done_lines);
        if (a->write_failed) {
            log_warnx("audit: writing %s again", a->path);
            a->write_failed = 0;
        }
    } else {
        atomic_fetch_add(&a->dropped, a->outlines - done_lines);
    }
    a->outlen = 0;
    a->outlines = 0;
}

/* Append line (len bytes, '\n' included) to file: whole or not at all. */
static int
audit_ck_append(const char *file, const char *line, size_t len)
{
    struct stat st;
    ssize_t n;
    int e, fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0)
        goto fail;
    do
        n = write(fd, line, len);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)len) {
        e = n < 0 ? errno : ENOSPC;
        if (n > 0 && S_ISREG(st.st_mode) && ftruncate(fd, st.st_size) < 0)
            log_warnx("audit: cannot cut %s back to its last whole line: %s", file,
                      strerror(errno));
        errno = e;
        goto fail;
    }
    if (fdatasync(fd) < 0 && errno != EINVAL)
        goto fail;
    return close(fd);

fail:
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

/*
 * Emit a checkpoint of the current file under the name file: its line count
 * and last chain, after fdatasync (format in include/aigate/audit/audit.h).
 */
static void
audit_checkpoint(struct audit *a, const char *file)
{
    char line[AUDIT_CKPT_MAX], ts[32], mac[AUDIT_CHAIN_HEX];
    struct tm tm;
    time_t now = time(NULL);
    size_t len;

    audit_sync(a);
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(line, sizeof(line),
                     "aigate-checkpoint v1 ts=%s lines=%" PRIu64 " chain=%.64s%s%s file=", ts,
                     a->file_lines, a->written, a->node ? " node=" : "", a->node ? a->node : "");
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    len = (size_t)n;
    for (const char *p = file; *p; p++) {
        if (len + 1 + 5 + AUDIT_CHAIN_HEX + 2 > sizeof(line)) {
            log_warnx("audit: %s: name too long for a checkpoint", file);
            return;
        }
        line[len++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
    }
    if (audit_mac_hex(&a->mac, line, len, NULL, 0, mac) < 0) {
        log_warnx("audit: HMAC failed, no checkpoint");
        return;
    }
    memcpy(line + len, " mac=", 5);
    memcpy(line + len + 5, mac, AUDIT_CHAIN_HEX);
    len += 5 + AUDIT_CHAIN_HEX;
    syslog(LOG_AUTHPRIV | LOG_NOTICE, "%.*s", (int)len, line);
    a->ck_dirty = 0;
    a->ck_due = 0;
    clock_gettime(CLOCK_MONOTONIC, &a->ck_last);
    if (!a->ck_file)
        return;
    line[len++] = '\n';
    if (audit_ck_append(a->ck_file, line, len) < 0) {
        if (!a->ck_warned)
            log_warnx("audit: cannot append a checkpoint to %s: %s", a->ck_file, strerror(errno));
        a->ck_warned = 1;
        a->ck_dirty = 1; /* try again next period */
    } else if (a->ck_warned) {
        log_warnx("audit: checkpoints reach %s again", a->ck_file);
        a->ck_warned = 0;
    }
}

/* A periodic checkpoint when checkpoint_s have passed and lines were written since the last. */
static void
audit_ck_tick(struct audit *a, const struct timespec *now)
{
    int64_t ns = (int64_t)(now->tv_sec - a->ck_last.tv_sec) * 1000000000 +
                 (now->tv_nsec - a->ck_last.tv_nsec);

    if (a->ck_due || (a->ck_s > 0 && a->ck_dirty && ns >= (int64_t)a->ck_s * 1000000000))
        audit_checkpoint(a, a->path);
}

/*
 * Between batches (out is empty): open a log that could not be created yet,
 * move a partial last line aside, and write the line that records a cut.
 */
static void
audit_tend(struct audit *a)
{
    if (a->fd < 0)
        audit_reopen_now(a);
    if (a->fd >= 0 && a->cut_pending && audit_cut(a) < 0 && !a->cut_warned) {
        log_warnx("audit: %s ends in a partial line that cannot be moved aside yet (%s); "
                  "nothing is written to it until it can",
                  a->path, strerror(errno));
        a->cut_warned = 1;
    }
    if (a->note_pending) {
        struct audit_rec r;
        memset(&r, 0, sizeof(r));
        clock_gettime(CLOCK_REALTIME, &r.ts);
        audit_new_id(r.id);
        r.port = r.status = -1;
        r.bytes_out = r.ms = -1;
        r.path = a->note_side;
        r.rule = AUDIT_NOTE_RULE;
        r.action = AUDIT_ERROR;
        r.bytes_in = (int64_t)a->note_bytes;
        a->note_pending = 0;
        size_t len = audit_format_node(a->out + a->outlen, AUDIT_LINE_MAX, &r, 1, a->node_field,
                                       a->node_len);
        if (len > 0 && audit_chain_append(a, len) == 0)
            audit_flush(a);
    }
}

static void
audit_rotate(struct audit *a)
{
    char stamp[AUDIT_STAMP_LEN + 1], dst[4200], probe[4210], err[512];
    struct tm tm;
    time_t now = time(NULL);
    struct audit_file f;

    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    unsigned long seq = 0;
    if (strcmp(stamp, a->rot_stamp) <= 0) {
        /* same second, or the clock went back: sort after the newest rotated file */
        memcpy(stamp, a->rot_stamp, sizeof(stamp));
        seq = a->rot_seq + 1;
    }
    /*
     * The sequence is always written, zero-padded, so that a shell glob
     * (audit.jsonl.*.gz) lists rotated files oldest first even when several
     * rotations happen within one second.
     */
    for (;; seq++) {
        snprintf(dst, sizeof(dst), "%s.%s.%04lu", a->path, stamp, seq);
        snprintf(probe, sizeof(probe), "%s.gz", dst);
        if (access(dst, F_OK) < 0 && access(probe, F_OK) < 0)
            break;
    }
    audit_sync(a);
    if (rename(a->path, dst) < 0) {
        log_warnx("audit: cannot rotate %s: %s", a->path, strerror(errno));
        a->rot_at = a->size + a->rotate_bytes;
        return;
    }
    if (audit_open_log(a->path, &f, err, sizeof(err)) < 0) {
        log_warnx("audit: cannot open a new %s (%s); going on with the current file", a->path, err);
        if (rename(dst, a->path) < 0)
            log_warnx("audit: cannot move %s back: %s", dst, strerror(errno));
        a->rot_at = a->size + a->rotate_bytes;
        return;
    }
    memcpy(a->rot_stamp, stamp, sizeof(stamp));
    a->rot_seq = seq;
    audit_checkpoint(a, dst);
    audit_switch_fd(a, &f);
    keyfile_fsync_dir(a->path);
    audit_start_gz(a);
}

/* Chain and write the records in [head, tail), at most about AUDIT_BATCH bytes; returns bytes used.
 */
static uint64_t
audit_drain(struct audit *a, uint64_t head, uint64_t tail)
{
    uint64_t pos = head;

    while (pos < tail && pos - head < AUDIT_BATCH) {
        uint32_t len;

        audit_ring_get(a, pos, &len, sizeof(len));
        audit_ring_get(a, pos + sizeof(len), a->out + a->outlen, len);
        pos += sizeof(len) + len;
        if (audit_chain_append(a, len) < 0)
            continue;
        if (a->rot_at && a->size + a->outlen >= a->rot_at) {
            audit_flush(a);
            audit_rotate(a);
        } else if (a->outlen >= AUDIT_BATCH) {
            audit_flush(a);
        }
    }
    if (a->outlen)
        audit_flush(a);
    return pos - head;
}

static void *
audit_writer_main(void *arg)
{
    struct audit *a = arg;

    /*
     * Below the event loops: where the writer shares a core with a worker
     * (a small machine, a pinned process), a request waking the worker
     * preempts a batch of HMACs instead of waiting behind it.  Nice 5 still
     * leaves the writer a third of a busy core, more than a line costs.
     */
    setpriority(PRIO_PROCESS, (id_t)gettid(), AUDIT_WRITER_NICE);

    for (;;) {
        struct timespec dl;
        struct audit_file moved = {.fd = -1};
        char *old_path = NULL;
        int stop, changed;

        audit_tend(a);
        pthread_mutex_lock(&a->mu);
        while (a->head == a->tail && !a->stop && !a->cfg_changed && !atomic_load(&a->reopen)) {
            if (a->dirty) {
                dl = a->last_sync;
                dl.tv_sec += 1;
            } else {
                audit_deadline(&dl, 1000);
            }
            a->writer_sleeping = 1;
            int rc = pthread_cond_timedwait(&a->nonempty, &a->mu, &dl);
            a->writer_sleeping = 0;
            if (rc == ETIMEDOUT)
                break;
        }
        if (a->head != a->tail) {
            struct timespec linger;
            audit_deadline(&linger, AUDIT_LINGER_MS);
            a->writer_lingering = 1;
            while (a->tail - a->head < AUDIT_WAKE_BYTES && !a->stop && !a->cfg_changed &&
                   !atomic_load(&a->reopen))
                if (pthread_cond_timedwait(&a->nonempty, &a->mu, &linger) == ETIMEDOUT)
                    break;
            a->writer_lingering = 0;
        }
        uint64_t head = a->head, tail = a->tail;
        stop = a->stop;
        changed = a->cfg_changed;
        if (changed) {
            a->rotate_bytes = a->cfg_rotate_bytes;
            a->keep = a->cfg_keep;
            a->rot_at = a->rotate_bytes;
            a->ck_s = a->cfg_ck_s;
            free(a->ck_file);
            a->ck_file = a->cfg_ck_file;
            a->cfg_ck_file = NULL;
            if (a->pending.fd >= 0) {
                moved = a->pending;
                old_path = a->path;
                a->path = a->pending_path;
                a->pending_path = NULL;
                a->pending.fd = -1;
            }
            a->cfg_changed = 0;
        }
        pthread_mutex_unlock(&a->mu);

        if (old_path) {
            audit_checkpoint(a, old_path);
            free(old_path);
            audit_switch_fd(a, &moved);
            log_info("audit: now writing %s", a->path);
        }
        if (atomic_exchange(&a->reopen, 0))
            audit_reopen_now(a);

        uint64_t used = audit_drain(a, head, tail);

        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (a->dirty &&
            (now.tv_sec > a->last_sync.tv_sec + 1 ||
             (now.tv_sec == a->last_sync.tv_sec + 1 && now.tv_nsec >= a->last_sync.tv_nsec)))
            audit_sync(a);
        audit_ck_tick(a, &now);

        pthread_mutex_lock(&a->mu);
        a->head += used;
        if (used && a->stalled && !a->write_failed) {
            a->stalled = 0;
            log_warnx("audit: writer caught up; %" PRIu64 " lines dropped so far",
                      (uint64_t)atomic_load(&a->dropped));
        }
        if (used && a->full_waiters)
            pthread_cond_broadcast(&a->nonfull);
        int done = stop && a->head == a->tail;
        pthread_mutex_unlock(&a->mu);
        if (done)
            break;
    }
    audit_tend(a);
    audit_checkpoint(a, a->path);
    return NULL;
}

void
audit_emit(struct audit *a, const struct audit_rec *r)
{
    char line[AUDIT_LINE_MAX];
    uint32_t len;
    size_t need;
    int wake;

    if (!a || !r || (atomic_load_explicit(&a->scope_ai, memory_order_relaxed) && !r->is_ai))
        return;
    len = (uint32_t)audit_format_node(line, sizeof(line), r,
                                      atomic_load_explicit(&a->log_query, memory_order_relaxed),
                                      a->node_field, a->node_len);
    if (len == 0) {
        atomic_fetch_add(&a->dropped, 1);
        return;
    }
    need = sizeof(len) + len;

    pthread_mutex_lock(&a->mu);
    if (a->tail - a->head + need > AUDIT_QUEUE_BYTES) {
        if (!a->stalled) {
            struct timespec dl;
            atomic_fetch_add(&a->waits, 1);
            audit_deadline(&dl, AUDIT_WAIT_MS);
            a->full_waiters++;
            while (a->tail - a->head + need > AUDIT_QUEUE_BYTES)
                if (pthread_cond_timedwait(&a->nonfull, &a->mu, &dl) == ETIMEDOUT)
                    break;
            a->full_waiters--;
        }
        if (a->tail - a->head + need > AUDIT_QUEUE_BYTES) {
            if (!a->stalled)
                log_warnx("audit: queue full for %d ms, dropping audit lines until the writer "
                          "catches up",
                          AUDIT_WAIT_MS);
            a->stalled = 1;
            pthread_mutex_unlock(&a->mu);
            atomic_fetch_add(&a->dropped, 1);
            return;
        }
    }
    audit_ring_put(a, a->tail, &len, sizeof(len));
    audit_ring_put(a, a->tail + sizeof(len), line, len);
    a->tail += need;
    wake = a->writer_sleeping || (a->writer_lingering && a->tail - a->head >= AUDIT_WAKE_BYTES);
    if (wake)
        a->writer_sleeping = a->writer_lingering = 0; /* one signal is enough */
    pthread_mutex_unlock(&a->mu);
    if (wake)
        pthread_cond_signal(&a->nonempty);
}

/* The "node" member as audit_format_node() adds it. */
static int
audit_node_init(struct audit *a, const char *node)
{
    char buf[16 + AUDIT_FIELD_MAX];
    size_t n;

    if (!node)
        return 0;
    memcpy(buf, ",\"node\":", 8);
    n = audit_json_str(buf + 8, sizeof(buf) - 8, node, strlen(node), AUDIT_FIELD_MAX);
    if (n == 0 || !(a->node = strdup(node)) || !(a->node_field = malloc(8 + n)))
        return -1;
    memcpy(a->node_field, buf, 8 + n);
    a->node_len = 8 + n;
    return 0;
}

static void
audit_free(struct audit *a)
{
    if (a->fd >= 0)
        close(a->fd);
    if (a->pending.fd >= 0)
        close(a->pending.fd);
    audit_mac_free(&a->mac);
    free(a->pending_path);
    free(a->cfg_ck_file);
    free(a->ck_file);
    free(a->node);
    free(a->node_field);
    free(a->ring);
    free(a->out);
    free(a->path);
    free(a->key_file);
    free(a);
}

struct audit *
audit_open(const struct audit_cfg *cfg, char *err, size_t errlen)
{
    unsigned char key[32];
    pthread_condattr_t ca;
    struct audit_file f;
    struct audit *a = calloc(1, sizeof(*a));

    if (!a) {
        snprintf(err, errlen, "audit: out of memory");
        return NULL;
    }
    a->fd = -1;
    a->pending.fd = -1;
    a->ring = malloc(AUDIT_QUEUE_BYTES);
    a->out = malloc(AUDIT_BATCH + AUDIT_LINE_MAX + AUDIT_CHAIN_SUFFIX);
    a->path = strdup(cfg->path);
    a->key_file = strdup(cfg->chain_key_file);
    if (!a->ring || !a->out || !a->path || !a->key_file || audit_node_init(a, cfg->node) < 0 ||
        (cfg->checkpoint_file && !(a->ck_file = strdup(cfg->checkpoint_file)))) {
        snprintf(err, errlen, "audit: out of memory");
        goto fail;
    }
    if (audit_key_load(cfg->chain_key_file, 1, key, err, errlen) < 0)
        goto fail;
    int mrc = audit_mac_init(&a->mac, key);
    OPENSSL_cleanse(key, sizeof(key));
    if (mrc < 0) {
        snprintf(err, errlen, "audit: HMAC-SHA256 unavailable");
        goto fail;
    }
    if (audit_find_prev(cfg->path, a->prev, err, errlen) < 0)
        goto fail;
    memcpy(a->written, a->prev, AUDIT_CHAIN_HEX);
    if (audit_open_log(cfg->path, &f, err, errlen) == 0) {
        a->fd = f.fd;
        a->size = f.size;
        a->file_lines = f.lines;
        a->cut_pending = f.whole < f.size;
        a->cut_at = f.whole;
    } else if (errno == ENOSPC || errno == EDQUOT) {
        log_warnx("audit: %s; serving anyway: lines wait for room (then are dropped and "
                  "counted) and the log is created as soon as it can be",
                  err);
    } else {
        goto fail;
    }
    a->rotate_bytes = cfg->rotate_bytes;
    a->rot_at = cfg->rotate_bytes;
    a->keep = cfg->keep;
    a->ck_s = cfg->checkpoint_s;
    atomic_init(&a->scope_ai, cfg->scope_ai);
    atomic_init(&a->log_query, cfg->log_query);
    clock_gettime(CLOCK_MONOTONIC, &a->last_sync);
    a->ck_last = a->last_sync;
    openlog("aigate", LOG_PID | LOG_NDELAY, LOG_DAEMON); /* checkpoints; as log.c does */

    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->nonempty, &ca);
    pthread_cond_init(&a->nonfull, &ca);
    pthread_condattr_destroy(&ca);

    struct audit_rot *rv;
    size_t nr;
    if (audit_rot_list(a->path, &rv, &nr) == 0) {
        int pending = 0;
        for (size_t i = 0; i < nr; i++)
            pending |= !rv[i].gz;
        if (nr) {
            memcpy(a->rot_stamp, rv[nr - 1].stamp, sizeof(a->rot_stamp));
            a->rot_seq = rv[nr - 1].seq;
        }
        audit_rot_free(rv, nr);
        if (pending)
            audit_start_gz(a);
    }
    if (pthread_create(&a->writer, NULL, audit_writer_main, a) != 0) {
        snprintf(err, errlen, "audit: cannot start the writer thread");
        if (a->gz_running)
            pthread_join(a->gz, NULL);
        pthread_cond_destroy(&a->nonempty);
        pthread_cond_destroy(&a->nonfull);
        pthread_mutex_destroy(&a->mu);
        goto fail;
    }
    pthread_setname_np(a->writer, "aigate-audit");
    return a;

fail:
    audit_free(a);
    return NULL;
}

void
audit_request_reopen(struct audit *a)
{
    if (a)
        atomic_store(&a->reopen, 1);
}

int
audit_reconfigure(struct audit *a, const struct audit_cfg *cfg, char *err, size_t errlen)
{
    struct audit_file f = {.fd = -1};
    char *np = NULL, *ck = NULL;

    if (strcmp(cfg->chain_key_file, a->key_file) != 0)
        log_warnx("audit: chain_key_file change to %s takes effect on restart",
                  cfg->chain_key_file);
    if (!cfg->node != !a->node || (cfg->node && strcmp(cfg->node, a->node) != 0))
        log_warnx("audit: node change to %s takes effect on restart",
                  cfg->node ? cfg->node : "(none)");
    if (cfg->checkpoint_file && !(ck = strdup(cfg->checkpoint_file))) {
        snprintf(err, errlen, "audit: out of memory");
        return -1;
    }
    pthread_mutex_lock(&a->mu);
    int moved = strcmp(cfg->path, a->pending_path ? a->pending_path : a->path) != 0;
    pthread_mutex_unlock(&a->mu);
    if (moved) {
        np = strdup(cfg->path);
        if (!np)
            snprintf(err, errlen, "audit: out of memory");
        if (!np || audit_open_log(cfg->path, &f, err, errlen) < 0) {
            free(np);
            free(ck);
            return -1;
        }
    }
    atomic_store(&a->scope_ai, cfg->scope_ai);
    atomic_store(&a->log_query, cfg->log_query);
    pthread_mutex_lock(&a->mu);
    a->cfg_rotate_bytes = cfg->rotate_bytes;
    a->cfg_keep = cfg->keep;
    a->cfg_ck_s = cfg->checkpoint_s;
    free(a->cfg_ck_file);
    a->cfg_ck_file = ck;
    if (moved) {
        if (a->pending.fd >= 0)
            close(a->pending.fd);
        free(a->pending_path);
        a->pending = f;
        a->pending_path = np;
    }
    a->cfg_changed = 1;
    pthread_cond_signal(&a->nonempty);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

void
audit_close(struct audit *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    pthread_cond_signal(&a->nonempty);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->writer, NULL);
    if (a->gz_running)
        pthread_join(a->gz, NULL);
    if (atomic_load(&a->dropped))
        log_warnx("audit: closed %s; %" PRIu64 " lines were dropped", a->path,
                  (uint64_t)atomic_load(&a->dropped));
    pthread_cond_destroy(&a->nonempty);
    pthread_cond_destroy(&a->nonfull);
    pthread_mutex_destroy(&a->mu);
    audit_free(a);
}

int
audit_dropping(struct audit *a)
{
    if (!a)
        return 0;
    pthread_mutex_lock(&a->mu);
    int stalled = a->stalled;
    pthread_mutex_unlock(&a->mu);
    return stalled;
}

void
audit_stats(struct audit *a, uint64_t *lines, uint64_t *waits, uint64_t *dropped)
{
    *lines = a ? atomic_load(&a->lines) : 0;
    *waits = a ? atomic_load(&a->waits) : 0;
    *dropped = a ? atomic_load(&a->dropped) : 0;
}

/* ---- verify ----------------------------------------------------------------------- */

struct audit_ckpt {
    char ts[32];
    uint64_t lines;
    char chain[AUDIT_CHAIN_HEX];
    char file[4096];
};

static int
audit_is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/*
 * The checkpoint in line[0..len) (after any prefix, e.g. syslog's): 1 with ck
 * filled when its MAC holds under m's key, 0 when the line holds none, -1
 * when it looks like one but is malformed or its MAC does not hold.
 */
static int
audit_ckpt_parse(struct audit_mac *m, char *line, size_t len, struct audit_ckpt *ck)
{
    static const char mark[] = "aigate-checkpoint ", v1[] = "aigate-checkpoint v1 ts=";
    char calc[AUDIT_CHAIN_HEX], *p, *e;
    char *s = memmem(line, len, mark, sizeof(mark) - 1);

    if (!s)
        return 0;
    len -= (size_t)(s - line);
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    if (len < sizeof(v1) - 1 + 5 + AUDIT_CHAIN_HEX || memcmp(s, v1, sizeof(v1) - 1) != 0)
        return -1;
    size_t body = len - 5 - AUDIT_CHAIN_HEX;
    if (memcmp(s + body, " mac=", 5) != 0 || audit_mac_hex(m, s, body, NULL, 0, calc) < 0 ||
        CRYPTO_memcmp(calc, s + body + 5, AUDIT_CHAIN_HEX) != 0)
        return -1;
    s[body] = '\0';
    p = s + sizeof(v1) - 1;
    if (!(e = strchr(p, ' ')) || (size_t)(e - p) >= sizeof(ck->ts))
        return -1;
    memcpy(ck->ts, p, (size_t)(e - p));
    ck->ts[e - p] = '\0';
    p = e + 1;
    if (strncmp(p, "lines=", 6) != 0 || p[6] < '0' || p[6] > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(p + 6, &e, 10);
    if (errno || *e != ' ')
        return -1;
    ck->lines = v;
    p = e + 1;
    if (strncmp(p, "chain=", 6) != 0 || strnlen(p + 6, AUDIT_CHAIN_HEX + 1) <= AUDIT_CHAIN_HEX ||
        !audit_is_hex(p + 6, AUDIT_CHAIN_HEX) || p[6 + AUDIT_CHAIN_HEX] != ' ')
        return -1;
    memcpy(ck->chain, p + 6, AUDIT_CHAIN_HEX);
    p += 6 + AUDIT_CHAIN_HEX + 1;
    if (strncmp(p, "node=", 5) == 0) {
        if (!(e = strchr(p, ' ')))
            return -1;
        p = e + 1;
    }
    if (strncmp(p, "file=", 5) != 0 || !p[5] || strlen(p + 5) >= sizeof(ck->file))
        return -1;
    snprintf(ck->file, sizeof(ck->file), "%s", p + 5);
    return 1;
}

/*
 * The last valid checkpoint of in into last; *bad counts lines that look like
 * checkpoints but are not valid ones.  Returns 1 found, 0 none, -1 read error.
 */
static int
audit_ckpt_last(struct audit_mac *m, FILE *in, struct audit_ckpt *last, unsigned long *bad)
{
    static const char mark[] = "aigate-checkpoint ";
    char buf[AUDIT_CKPT_MAX];
    struct audit_ckpt ck;
    int found = 0, rest = 0;

    *bad = 0;
    while (fgets(buf, sizeof(buf), in)) {
        size_t len = strlen(buf);
        int whole = len > 0 && buf[len - 1] == '\n';
        if (rest) { /* the tail of a line longer than buf */
            rest = !whole;
            continue;
        }
        if (!whole && !feof(in)) {
            rest = 1;
            if (memmem(buf, len, mark, sizeof(mark) - 1))
                (*bad)++;
            continue;
        }
        int rc = audit_ckpt_parse(m, buf, len, &ck);
        if (rc < 0)
            (*bad)++;
        else if (rc > 0) {
            *last = ck;
            found = 1;
        }
    }
    return ferror(in) ? -1 : found;
}

/* Is file's base name, or that name without a trailing ".gz", the base name of ck_file? */
static int
audit_ckpt_names(const char *file, const char *ck_file)
{
    const char *s = strrchr(file, '/'), *c = strrchr(ck_file, '/');
    const char *b = s ? s + 1 : file, *cb = c ? c + 1 : ck_file;
    size_t n = strlen(b), cn = strlen(cb);

    if (n == cn && memcmp(b, cb, n) == 0)
        return 1;
    return n == cn + 3 && memcmp(b, cb, cn) == 0 && strcmp(b + cn, ".gz") == 0;
}

int
audit_verify(const char *const *files, size_t n, const char *key_file, int from_any, FILE *out)
{
    return audit_verify_checkpoint(files, n, key_file, from_any, NULL, NULL, out);
}

int
audit_verify_checkpoint(const char *const *files, size_t n, const char *key_file, int from_any,
                        FILE *checkpoints, const char *name, FILE *out)
{
    unsigned char key[32];
    char err[512], prev[AUDIT_CHAIN_HEX], chain[AUDIT_CHAIN_HEX], calc[AUDIT_CHAIN_HEX];
    struct audit_mac mac;
    struct audit_ckpt *ck = NULL;
    uint64_t count = 0, ck_have = 0;
    size_t ck_at = n; /* the file the checkpoint names; n: none */
    int rc = 0, first = 1;

    if (audit_key_load(key_file, 0, key, err, sizeof(err)) < 0) {
        fprintf(out, "%s\n", err);
        return 2;
    }
    int mrc = audit_mac_init(&mac, key);
    OPENSSL_cleanse(key, sizeof(key));
    if (mrc < 0) {
        audit_mac_free(&mac);
        fprintf(out, "HMAC-SHA256 unavailable\n");
        return 2;
    }
    if (checkpoints) {
        unsigned long bad;
        int got = (ck = malloc(sizeof(*ck))) ? audit_ckpt_last(&mac, checkpoints, ck, &bad) : -1;
        if (got <= 0) {
            if (got < 0)
                fprintf(out, "%s: %s\n", name, ck ? strerror(errno) : "out of memory");
            else
                fprintf(out, "%s: no checkpoint made with this chain key\n", name);
            free(ck);
            audit_mac_free(&mac);
            return 2;
        }
        if (bad)
            fprintf(out,
                    "%s: %lu checkpoint line%s ignored (malformed, altered or made with "
                    "another key)\n",
                    name, bad, bad == 1 ? "" : "s");
        for (size_t f = 0; f < n; f++)
            if (audit_ckpt_names(files[f], ck->file))
                ck_at = f;
    }
    memset(prev, '0', sizeof(prev));
    for (size_t f = 0; f < n && rc == 0; f++) {
        struct audit_reader r;
        unsigned long lineno = 0;
        char *line;
        size_t len;
        int nl, got;

        if (audit_reader_open(&r, files[f]) < 0) {
            fprintf(out, "%s: %s\n", files[f], strerror(errno));
            rc = 2;
            break;
        }
        while (rc == 0 && (got = audit_reader_next(&r, &line, &len, &nl)) > 0) {
            lineno++;
            if (!nl || !audit_chain_suffix(line, len, chain)) {
                fprintf(out, "%s:%lu: truncated/incomplete line\n", files[f], lineno);
                rc = 1;
                break;
            }
            line[len - AUDIT_CHAIN_SUFFIX] = '}';
            if (!(first && from_any)) {
                if (audit_mac_chain(&mac, prev, line, len - AUDIT_CHAIN_SUFFIX + 1, calc) < 0) {
                    fprintf(out, "HMAC-SHA256 failed\n");
                    rc = 2;
                    break;
                }
                if (CRYPTO_memcmp(calc, chain, sizeof(calc)) != 0) {
                    fprintf(out, "%s:%lu: chain broken (altered, removed or reordered line)\n",
                            files[f], lineno);
                    rc = 1;
                    break;
                }
            }
            if (f == ck_at && lineno == ck->lines &&
                memcmp(chain, ck->chain, AUDIT_CHAIN_HEX) != 0) {
                fprintf(out,
                        "%s:%lu: does not match the checkpoint of %s (line replaced or file "
                        "rewritten)\n",
                        files[f], lineno, ck->ts);
                rc = 1;
                break;
            }
            memcpy(prev, chain, sizeof(prev));
            first = 0;
            count++;
        }
        if (rc == 0 && got < 0) {
            fprintf(out, "%s: %s\n", files[f], audit_reader_error(&r));
            rc = 2;
        }
        if (f == ck_at)
            ck_have = lineno;
        audit_reader_close(&r);
    }
    audit_mac_free(&mac);
    if (rc == 0 && ck && ck_have < ck->lines) {
        uint64_t miss = ck->lines - ck_have;
        if (ck_at == n)
            fprintf(out,
                    "%s: %" PRIu64 " line%s missing: the checkpoint of %s counted %" PRIu64
                    " lines in it, and it is not among the files checked\n",
                    ck->file, miss, miss == 1 ? "" : "s", ck->ts, ck->lines);
        else
            fprintf(out,
                    "%s: %" PRIu64 " line%s missing: the checkpoint of %s counted %" PRIu64
                    ", the file has %" PRIu64 "\n",
                    files[ck_at], miss, miss == 1 ? "" : "s", ck->ts, ck->lines, ck_have);
        rc = 1;
    }
    if (rc == 0) {
        fprintf(out, "%" PRIu64 " lines verified\n", count);
        if (ck)
            fprintf(out, "checkpoint of %s reached: %s line %" PRIu64 "\n", ck->ts,
                    ck_at < n ? files[ck_at] : ck->file, ck->lines);
    }
    free(ck);
    return rc;
}
