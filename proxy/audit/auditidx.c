/*
 * Audit index (design in include/aigate/audit/auditidx.h): interned strings,
 * combos, 16-byte records in chunks, a ring of the newest lines, the query
 * engine with its JSON/CSV writers, the --report tables, and the thread that
 * builds the index and follows the live file.
 *
 * All index data belongs to one thread at a time: the caller's without a
 * thread, the index thread's after auditidx_start().  The only shared state
 * is the job queues (mutex + condition variable) and the ready flag.
 */
#include "aigate/audit/auditidx.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "aigate/audit/audit.h"
#include "aigate/core/hash.h"
#include "aigate/core/log.h"
#include "aigate/identity/users.h"

#define IDX_READ_BLOCK (1u << 20)
#define IDX_HOUR_MS 3600000LL
#define IDX_DAY_MS 86400000LL
#define IDX_NONE UINT32_MAX

/* Actions with a column of their own, in --report's order; the rest count in "other". */
enum { ACT_ALLOW, ACT_WARN, ACT_ACK, ACT_BLOCK, ACT_AUTHFAIL, ACT_ERROR, ACT_OTHER, ACT_N };
static const char *const idx_act_names[ACT_N] = {"allow",     "warn",  "ack",  "block",
                                                 "auth-fail", "error", "other"};

/* ---- interned strings ------------------------------------------------------------- */

struct idx_strs {
    char *pool; /* NUL-terminated strings */
    size_t pool_len, pool_cap;
    uint32_t *off; /* off[id]: offset in pool; id 0 is null */
    uint32_t n, cap;
    uint32_t *slot; /* open addressing: id or 0 */
    uint32_t nslot;
};

static const char *
idx_str(const struct idx_strs *t, uint32_t id)
{
    return id ? t->pool + t->off[id] : NULL;
}

/* Id of s[0..len), or 0 when absent. */
static uint32_t
idx_str_find(const struct idx_strs *t, const char *s, size_t len)
{
    if (!t->nslot)
        return 0;
    for (uint32_t j = (uint32_t)hash_bytes(s, len) & (t->nslot - 1);;
         j = (j + 1) & (t->nslot - 1)) {
        uint32_t id = t->slot[j];
        if (!id)
            return 0;
        const char *o = t->pool + t->off[id];
        if (strncmp(o, s, len) == 0 && o[len] == '\0')
            return id;
    }
}

static int
idx_str_grow(struct idx_strs *t)
{
    uint32_t ns = t->nslot ? 2 * t->nslot : 256;
    uint32_t *slot = calloc(ns, sizeof(*slot));
    if (!slot)
        return -1;
    for (uint32_t id = 1; id < t->n; id++) {
        const char *s = t->pool + t->off[id];
        uint32_t j = (uint32_t)hash_bytes(s, strlen(s)) & (ns - 1);
        while (slot[j])
            j = (j + 1) & (ns - 1);
        slot[j] = id;
    }
    free(t->slot);
    t->slot = slot;
    t->nslot = ns;
    return 0;
}

/* Id of s[0..len), added when new; IDX_NONE when out of memory.  s holds no NUL. */
static uint32_t
idx_str_intern(struct idx_strs *t, const char *s, size_t len)
{
    uint32_t id = idx_str_find(t, s, len);
    if (id)
        return id;
    if (t->n == 0)
        t->n = 1;
    if (2 * (t->n + 1) > t->nslot && idx_str_grow(t) < 0)
        return IDX_NONE;
    if (t->n + 1 > t->cap) {
        uint32_t nc = t->cap ? 2 * t->cap : 256;
        uint32_t *off = realloc(t->off, nc * sizeof(*off));
        if (!off)
            return IDX_NONE;
        t->off = off;
        t->cap = nc;
    }
    if (t->pool_len + len + 1 > t->pool_cap) {
        size_t nc = t->pool_cap ? 2 * t->pool_cap : 4096;
        while (nc < t->pool_len + len + 1)
            nc *= 2;
        if (nc > UINT32_MAX)
            return IDX_NONE;
        char *p = realloc(t->pool, nc);
        if (!p)
            return IDX_NONE;
        t->pool = p;
        t->pool_cap = nc;
    }
    memcpy(t->pool + t->pool_len, s, len);
    t->pool[t->pool_len + len] = '\0';
    id = t->n++;
    t->off[id] = (uint32_t)t->pool_len;
    t->pool_len += len + 1;
    uint32_t j = (uint32_t)hash_bytes(s, len) & (t->nslot - 1);
    while (t->slot[j])
        j = (j + 1) & (t->nslot - 1);
    t->slot[j] = id;
    return id;
}

/* ---- combos ----------------------------------------------------------------------- */

enum { F_SERVICE, F_CATEGORY, F_USER, F_RULE, F_ACTION, F_N };
static const char *const idx_field_names[F_N] = {"service", "category", "user", "rule", "action"};

struct idx_combo {
    uint32_t f[F_N]; /* string ids */
    uint8_t act;     /* ACT_* */
    uint8_t dlp;     /* the lines carry a "dlp" field */
};

struct idx_combos {
    struct idx_combo *v;
    uint32_t n, cap;
    uint32_t *slot; /* index + 1, or 0 */
    uint32_t nslot;
};

static uint64_t
idx_combo_hash(const struct idx_combo *c)
{
    uint32_t k[F_N + 1];
    memcpy(k, c->f, sizeof(c->f));
    k[F_N] = c->dlp;
    return hash_bytes(k, sizeof(k));
}

static int
idx_combo_eq(const struct idx_combo *a, const struct idx_combo *b)
{
    return memcmp(a->f, b->f, sizeof(a->f)) == 0 && a->dlp == b->dlp;
}

static uint32_t
idx_combo_intern(struct idx_combos *t, const struct idx_combo *c)
{
    if (2 * (t->n + 1) > t->nslot) {
        uint32_t ns = t->nslot ? 2 * t->nslot : 1024;
        uint32_t *slot = calloc(ns, sizeof(*slot));
        if (!slot)
            return IDX_NONE;
        for (uint32_t i = 0; i < t->n; i++) {
            uint32_t j = (uint32_t)idx_combo_hash(&t->v[i]) & (ns - 1);
            while (slot[j])
                j = (j + 1) & (ns - 1);
            slot[j] = i + 1;
        }
        free(t->slot);
        t->slot = slot;
        t->nslot = ns;
    }
    uint32_t j = (uint32_t)idx_combo_hash(c) & (t->nslot - 1);
    for (; t->slot[j]; j = (j + 1) & (t->nslot - 1))
        if (idx_combo_eq(&t->v[t->slot[j] - 1], c))
            return t->slot[j] - 1;
    if (t->n == t->cap) {
        uint32_t nc = t->cap ? 2 * t->cap : 1024;
        struct idx_combo *v = realloc(t->v, nc * sizeof(*v));
        if (!v)
            return IDX_NONE;
        t->v = v;
        t->cap = nc;
    }
    t->v[t->n] = *c;
    t->slot[j] = t->n + 1;
    return t->n++;
}

/* ---- hosts (--report --unlisted) --------------------------------------------------- */

/*
 * Lines per (host, who), who being the user or "@CLIENT" for anonymous
 * lines: an open-addressing table of string-id pairs, filled only when
 * auditidx_track_hosts() asked for it (the dashboard's index never does).
 */
struct idx_pair {
    uint32_t host, who; /* string ids; host 0 marks a free cell */
    uint64_t n;
};

struct idx_hostuse {
    int on;
    struct idx_pair *v;
    uint32_t n, cap; /* cap: a power of two */
};

static uint32_t
idx_pair_slot(uint32_t host, uint32_t who, uint32_t cap)
{
    uint32_t k[2] = {host, who};
    return (uint32_t)hash_bytes(k, sizeof(k)) & (cap - 1);
}

static int
idx_pair_add(struct idx_hostuse *t, uint32_t host, uint32_t who)
{
    uint32_t j;

    if (2 * (t->n + 1) > t->cap) {
        uint32_t nc = t->cap ? 2 * t->cap : 1024;
        struct idx_pair *v = calloc(nc, sizeof(*v));
        if (!v)
            return -1;
        for (uint32_t i = 0; i < t->cap; i++) {
            if (!t->v[i].host)
                continue;
            for (j = idx_pair_slot(t->v[i].host, t->v[i].who, nc); v[j].host;
                 j = (j + 1) & (nc - 1))
                ;
            v[j] = t->v[i];
        }
        free(t->v);
        t->v = v;
        t->cap = nc;
    }
    for (j = idx_pair_slot(host, who, t->cap); t->v[j].host; j = (j + 1) & (t->cap - 1))
        if (t->v[j].host == host && t->v[j].who == who) {
            t->v[j].n++;
            return 0;
        }
    t->v[j] = (struct idx_pair){host, who, 1};
    t->n++;
    return 0;
}

/* ---- records ---------------------------------------------------------------------- */

struct idx_rec {
    uint32_t combo;
    uint32_t dt; /* ms since the chunk's base */
    uint64_t bytes_out;
};

struct idx_chunk {
    int64_t base, min, max;
    uint32_t n, cap;
    struct idx_rec *rec;
};

/*
 * Counts per combo for one UTC hour: what a query takes for the whole hours
 * of its period (only the two ends of a period are counted from records).
 * Open addressing on the combo; IDX_NONE marks a free cell.
 */
struct idx_cell {
    uint32_t combo;
    uint32_t count;
    uint64_t bytes_out;
};

struct idx_hour {
    int64_t hour; /* ms / IDX_HOUR_MS */
    uint32_t n, cap;
    struct idx_cell *cell;
};

/* A line read from the log, kept for /api/recent. */
struct idx_recent {
    char *line;
    size_t len, cap;
    int64_t ts;
    uint32_t combo;
};

/* Bytes of a file not yet cut into lines. */
struct idx_feed {
    char *buf;
    size_t len, cap;
    int skipping; /* inside a line longer than AUDITIDX_LINE_MAX */
};

struct auditidx {
    struct idx_strs strs;
    struct idx_combos combos;
    struct idx_chunk **chunks;
    size_t nchunks, capchunks;
    struct idx_hour **hours; /* sorted by hour */
    size_t nhours, caphours;
    uint64_t lines, bad;
    int64_t first_ts, last_ts;
    struct idx_recent recent[AUDITIDX_RECENT];
    size_t recent_next, nrecent;
    int oom_logged;
    struct idx_hostuse hostuse; /* lines per (host, who) when tracking hosts */

    /* the thread */
    int running;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    atomic_int ready;
    struct auditidx_job *jobs, **jobs_tail;
    struct auditidx_job *done, **done_tail;
    struct event *done_ev;
    char *path;
    int *rot_fds;
    size_t nrot;
    char **seen; /* rotated files read or being read, without ".gz" */
    size_t nseen;
    int live_fd;
    dev_t live_dev;
    ino_t live_ino;
    off_t live_off;
    struct idx_feed live_feed;
    char *block;
};

struct auditidx *
auditidx_new(void)
{
    struct auditidx *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->live_fd = -1;
    x->jobs_tail = &x->jobs;
    x->done_tail = &x->done;
    atomic_init(&x->ready, 1);
    return x;
}

static int
idx_append(struct auditidx *x, int64_t ts, uint32_t combo, uint64_t bytes_out)
{
    struct idx_chunk *c = x->nchunks ? x->chunks[x->nchunks - 1] : NULL;
    if (!c || c->n == AUDITIDX_CHUNK || ts < c->base || ts - c->base > (int64_t)UINT32_MAX) {
        if (x->nchunks == x->capchunks) {
            size_t nc = x->capchunks ? 2 * x->capchunks : 64;
            struct idx_chunk **v = realloc(x->chunks, nc * sizeof(*v));
            if (!v)
                return -1;
            x->chunks = v;
            x->capchunks = nc;
        }
        if (!(c = calloc(1, sizeof(*c))))
            return -1;
        /* Lines reach the log in the order requests end, not quite in time order: leave room. */
        c->base = ts - IDX_HOUR_MS;
        c->min = c->max = ts;
        x->chunks[x->nchunks++] = c;
    }
    if (c->n == c->cap) {
        uint32_t nc = c->cap ? 2 * c->cap : 1024;
        if (nc > AUDITIDX_CHUNK)
            nc = AUDITIDX_CHUNK;
        struct idx_rec *r = realloc(c->rec, nc * sizeof(*r));
        if (!r)
            return -1;
        c->rec = r;
        c->cap = nc;
    }
    c->rec[c->n++] = (struct idx_rec){combo, (uint32_t)(ts - c->base), bytes_out};
    if (ts < c->min)
        c->min = ts;
    if (ts > c->max)
        c->max = ts;
    return 0;
}

static int64_t idx_floor_div(int64_t a, int64_t b);

static uint32_t
idx_cell_slot(uint32_t combo, uint32_t cap)
{
    return (uint32_t)hash_bytes(&combo, sizeof(combo)) & (cap - 1);
}

static int
idx_hour_grow(struct idx_hour *h)
{
    uint32_t nc = h->cap ? 2 * h->cap : 64;
    struct idx_cell *cell = malloc(nc * sizeof(*cell));
    if (!cell)
        return -1;
    for (uint32_t i = 0; i < nc; i++)
        cell[i].combo = IDX_NONE;
    for (uint32_t i = 0; i < h->cap; i++) {
        if (h->cell[i].combo == IDX_NONE)
            continue;
        uint32_t j = idx_cell_slot(h->cell[i].combo, nc);
        while (cell[j].combo != IDX_NONE)
            j = (j + 1) & (nc - 1);
        cell[j] = h->cell[i];
    }
    free(h->cell);
    h->cell = cell;
    h->cap = nc;
    return 0;
}

/* The summary of hour (made when missing, kept sorted); NULL when out of memory. */
static struct idx_hour *
idx_hour_get(struct auditidx *x, int64_t hour)
{
    size_t lo = 0, hi = x->nhours;
    if (hi && x->hours[hi - 1]->hour == hour) /* lines come mostly in time order */
        return x->hours[hi - 1];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (x->hours[mid]->hour < hour)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < x->nhours && x->hours[lo]->hour == hour)
        return x->hours[lo];
    if (x->nhours == x->caphours) {
        size_t nc = x->caphours ? 2 * x->caphours : 256;
        struct idx_hour **v = realloc(x->hours, nc * sizeof(*v));
        if (!v)
            return NULL;
        x->hours = v;
        x->caphours = nc;
    }
    struct idx_hour *h = calloc(1, sizeof(*h));
    if (!h || idx_hour_grow(h) < 0) {
        free(h);
        return NULL;
    }
    h->hour = hour;
    memmove(x->hours + lo + 1, x->hours + lo, (x->nhours - lo) * sizeof(*x->hours));
    x->hours[lo] = h;
    x->nhours++;
    return h;
}

/* Add n lines (n may be -1: take one back) of combo to the summary of ts's hour. */
static int
idx_hour_add(struct auditidx *x, int64_t ts, uint32_t combo, int n, uint64_t bytes_out)
{
    struct idx_hour *h = idx_hour_get(x, idx_floor_div(ts, IDX_HOUR_MS));
    if (!h || (2 * (h->n + 1) > h->cap && idx_hour_grow(h) < 0))
        return -1;
    uint32_t j = idx_cell_slot(combo, h->cap);
    while (h->cell[j].combo != IDX_NONE && h->cell[j].combo != combo)
        j = (j + 1) & (h->cap - 1);
    if (h->cell[j].combo == IDX_NONE) {
        h->cell[j] = (struct idx_cell){combo, 0, 0};
        h->n++;
    }
    h->cell[j].count += (uint32_t)n;
    h->cell[j].bytes_out += n > 0 ? bytes_out : -bytes_out;
    return 0;
}

static void
idx_recent_put(struct auditidx *x, const char *line, size_t len, int64_t ts, uint32_t combo)
{
    struct idx_recent *r = &x->recent[x->recent_next];
    if (len > r->cap) {
        char *p = realloc(r->line, len);
        if (!p)
            return;
        r->line = p;
        r->cap = len;
    }
    memcpy(r->line, line, len);
    r->len = len;
    r->ts = ts;
    r->combo = combo;
    x->recent_next = (x->recent_next + 1) % AUDITIDX_RECENT;
    if (x->nrecent < AUDITIDX_RECENT)
        x->nrecent++;
}

/* ---- time ------------------------------------------------------------------------- */

static int64_t
idx_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int
idx_digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int
auditidx_parse_time(const char *s, size_t len, int64_t *ms)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
    size_t i;

    if (len < 10 || idx_digits(s, 4, &y) < 0 || s[4] != '-' || idx_digits(s + 5, 2, &mo) < 0 ||
        s[7] != '-' || idx_digits(s + 8, 2, &d) < 0)
        return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
        return -1;
    i = 10;
    if (i < len) {
        if ((s[i] != 'T' && s[i] != 't') || len < i + 6 || idx_digits(s + i + 1, 2, &h) < 0 ||
            s[i + 3] != ':' || idx_digits(s + i + 4, 2, &mi) < 0 || h > 23 || mi > 59)
            return -1;
        i += 6;
        if (i < len && s[i] == ':') {
            if (len < i + 3 || idx_digits(s + i + 1, 2, &sec) < 0 || sec > 60)
                return -1;
            i += 3;
            if (i < len && (s[i] == '.' || s[i] == ',')) {
                size_t k = 0;
                for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, k++)
                    if (k < 3)
                        frac = frac * 10 + (s[i] - '0');
                if (k == 0)
                    return -1;
                for (; k < 3; k++)
                    frac *= 10;
            }
        }
        if (i == len)
            return -1;
        if (s[i] == 'Z' || s[i] == 'z') {
            i++;
        } else if (s[i] == '+' || s[i] == '-' || s[i] == ' ') {
            int oh, om, sign = s[i] == '-' ? -1 : 1;
            if (len == i + 6 && s[i + 3] == ':' && idx_digits(s + i + 1, 2, &oh) == 0 &&
                idx_digits(s + i + 4, 2, &om) == 0)
                i += 6;
            else if (len == i + 5 && idx_digits(s + i + 1, 2, &oh) == 0 &&
                     idx_digits(s + i + 3, 2, &om) == 0)
                i += 5;
            else
                return -1;
            if (oh > 23 || om > 59)
                return -1;
            off = sign * (oh * 60 + om);
        } else {
            return -1;
        }
    }
    if (i != len)
        return -1;
    int64_t t = idx_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off * 60;
    *ms = t * 1000 + frac;
    return 0;
}

static int64_t
idx_floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

void
auditidx_format_time(int64_t ms, int tz_min, char *out, size_t outlen)
{
    int64_t local = ms + (int64_t)tz_min * 60000;
    time_t secs = (time_t)idx_floor_div(local, 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        memset(&tm, 0, sizeof(tm));
    char zone[16] = "Z";
    if (tz_min)
        snprintf(zone, sizeof(zone), "%c%02d:%02d", tz_min < 0 ? '-' : '+', abs(tz_min) / 60,
                 abs(tz_min) % 60);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03d%s", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(local - (int64_t)secs * 1000),
             zone);
}

/* ---- lines ------------------------------------------------------------------------ */

static int
idx_act_of(const char *s)
{
    for (int a = 0; a < ACT_OTHER; a++)
        if (strcmp(s, idx_act_names[a]) == 0)
            return a;
    return ACT_OTHER;
}

static void
idx_oom(struct auditidx *x)
{
    if (!x->oom_logged)
        log_warnx("audit index: out of memory, lines are left out");
    x->oom_logged = 1;
}

/* What the index takes from a line.  Strings point into the line or into its jansson object. */
struct idx_fields {
    int64_t ts;
    const char *s[F_N]; /* NULL: null or absent */
    size_t l[F_N];
    int dlp;
    uint64_t bytes_out;
    const char *host, *client; /* NULL: null, absent, or (jansson) not a string */
    size_t hostl, clientl;
};

/*
 * The general parser: jansson.  Returns 0 with *root to json_decref() once
 * the strings are no longer needed, or -1 (unreadable: not a JSON object, no
 * valid "ts", no string "action", a non-string field, a bytes_out that is not
 * a non-negative integer or null).
 */
static int
idx_parse_json(const char *line, size_t len, struct idx_fields *p, json_t **root)
{
    json_error_t jerr;
    json_t *o = json_loadb(line, len, 0, &jerr), *v;

    memset(p, 0, sizeof(*p));
    *root = o;
    if (!o || !json_is_object(o))
        return -1;
    v = json_object_get(o, "ts");
    if (!json_is_string(v) ||
        auditidx_parse_time(json_string_value(v), json_string_length(v), &p->ts) < 0)
        return -1;
    for (int f = 0; f < F_N; f++) {
        v = json_object_get(o, idx_field_names[f]);
        if (!v || json_is_null(v))
            continue;
        if (!json_is_string(v))
            return -1;
        p->s[f] = json_string_value(v);
        p->l[f] = json_string_length(v);
    }
    if (!p->s[F_ACTION])
        return -1;
    v = json_object_get(o, "bytes_out");
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        p->bytes_out = (uint64_t)json_integer_value(v);
    else if (v && !json_is_null(v))
        return -1;
    v = json_object_get(o, "dlp");
    p->dlp = json_is_array(v) && json_array_size(v) > 0;
    if (json_is_string(v = json_object_get(o, "host"))) {
        p->host = json_string_value(v);
        p->hostl = json_string_length(v);
    }
    if (json_is_string(v = json_object_get(o, "client"))) {
        p->client = json_string_value(v);
        p->clientl = json_string_length(v);
    }
    return 0;
}

/*
 * The fast path, for lines exactly as aigate's writer makes them (audit.h:
 * every field in its order, "node" and "dlp" optional, "chain" last) whose
 * strings are printable ASCII without escapes and whose integers are plain:
 * jansson costs ~7 us a line, this well under 1 us, and a log is almost only
 * such lines.  Anything else (an escape, a non-ASCII byte, another layout)
 * returns 1 and the line goes to jansson, so both always agree on what they
 * accept (tests/unit/test_auditidx.c checks this on lines from the writer).
 * Returns 0 (parsed) or 1 (use jansson).
 */
enum { FV_STR, FV_INT, FV_ANY };
/* Fields outside the combo that the fast path takes (idx_fields). */
enum { FK_SKIP = -1, FK_BYTES_OUT = -2, FK_CLIENT = -3, FK_HOST = -4 };
struct idx_fast_key {
    const char *key; /* ,"name": */
    size_t len;
    int field; /* F_*, or one of FK_* */
    int kind;  /* FV_STR: string or null; FV_INT: integer or null */
};
#define FK(k, f, kind)                                                                             \
    {                                                                                              \
        ",\"" k "\":", sizeof(k) + 3, f, kind                                                      \
    }
static const struct idx_fast_key idx_fast_keys[] = {
    FK("id", FK_SKIP, FV_STR),
    FK("client", FK_CLIENT, FV_STR),
    FK("user", F_USER, FV_STR),
    FK("method", FK_SKIP, FV_STR),
    FK("scheme", FK_SKIP, FV_STR),
    FK("host", FK_HOST, FV_STR),
    FK("port", FK_SKIP, FV_INT),
    FK("path", FK_SKIP, FV_STR),
    FK("service", F_SERVICE, FV_STR),
    FK("category", F_CATEGORY, FV_STR),
    FK("rule", F_RULE, FV_STR),
    FK("action", F_ACTION, FV_STR),
    FK("status", FK_SKIP, FV_INT),
    FK("bytes_in", FK_SKIP, FV_INT),
    FK("bytes_out", FK_BYTES_OUT, FV_INT),
    FK("ms", FK_SKIP, FV_INT),
    FK("tls", FK_SKIP, FV_STR),
};
#undef FK

/* A string value at *pp (after its opening quote) of plain ASCII; end after the closing quote. */
static int
idx_fast_str(const char **pp, const char *end, const char **s, size_t *l)
{
    const char *p = *pp;
    *s = p;
    while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f && *p != '"' &&
           *p != '\\')
        p++;
    if (p >= end || *p != '"')
        return 1;
    *l = (size_t)(p - *s);
    *pp = p + 1;
    return 0;
}

static int
idx_fast_value(const char **pp, const char *end, int kind, const char **s, size_t *l, int64_t *num)
{
    const char *p = *pp;
    *s = NULL;
    if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
        *pp = p + 4;
        *num = -1;
        return 0;
    }
    if (kind == FV_STR) {
        if (p >= end || *p != '"')
            return 1;
        *pp = p + 1;
        return idx_fast_str(pp, end, s, l);
    }
    /* a non-negative integer without leading zeros, at most 18 digits */
    const char *d = p;
    int64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9' && p - d < 18)
        v = v * 10 + (*p++ - '0');
    if (p == d || (p - d > 1 && *d == '0') || (p < end && *p >= '0' && *p <= '9'))
        return 1;
    *num = v;
    *pp = p;
    return 0;
}

static int
idx_parse_fast(const char *line, size_t len, struct idx_fields *p)
{
    const char *s = line, *end = line + len, *v;
    size_t vl;
    int64_t num = -1;

    memset(p, 0, sizeof(*p));
    if (len < 7 + 24 + 1 + 76 || memcmp(s, "{\"ts\":\"", 7) != 0 || s[7 + 24] != '"' ||
        auditidx_parse_time(s + 7, 24, &p->ts) < 0)
        return 1;
    s += 7 + 25;
    for (size_t k = 0; k < sizeof(idx_fast_keys) / sizeof(idx_fast_keys[0]); k++) {
        const struct idx_fast_key *fk = &idx_fast_keys[k];
        if ((size_t)(end - s) < fk->len || memcmp(s, fk->key, fk->len) != 0)
            return 1;
        s += fk->len;
        if (idx_fast_value(&s, end, fk->kind, &v, &vl, &num))
            return 1;
        if (fk->field >= 0 && v) {
            p->s[fk->field] = v;
            p->l[fk->field] = vl;
        } else if (fk->field == FK_BYTES_OUT) {
            p->bytes_out = num < 0 ? 0 : (uint64_t)num;
        } else if (fk->field == FK_HOST) {
            p->host = v;
            p->hostl = v ? vl : 0;
        } else if (fk->field == FK_CLIENT) {
            p->client = v;
            p->clientl = v ? vl : 0;
        }
    }
    if (!p->s[F_ACTION])
        return 1;
    if (end - s > 9 && memcmp(s, ",\"node\":\"", 9) == 0) {
        s += 9;
        if (idx_fast_str(&s, end, &v, &vl))
            return 1;
    }
    if (end - s > 9 && memcmp(s, ",\"dlp\":[\"", 9) == 0) {
        s += 9;
        for (;;) {
            if (idx_fast_str(&s, end, &v, &vl) || s >= end)
                return 1;
            if (*s == ']')
                break;
            if (end - s < 2 || s[0] != ',' || s[1] != '"')
                return 1;
            s += 2;
        }
        s++;
        p->dlp = 1;
    }
    if (end - s != 76 || memcmp(s, ",\"chain\":\"", 10) != 0 || memcmp(s + 74, "\"}", 2) != 0)
        return 1;
    for (int i = 10; i < 74; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 1;
    return 0;
}

/* Count the line's (host, who) when tracking hosts; -1 when out of memory. */
static int
idx_host_add(struct auditidx *x, const struct idx_fields *p, uint32_t user)
{
    char who[AUDITIDX_FILTER_MAX];
    uint32_t h, w = user;

    if (!x->hostuse.on || !p->host || p->hostl == 0 || memchr(p->host, '\0', p->hostl))
        return 0;
    if ((h = idx_str_intern(&x->strs, p->host, p->hostl)) == IDX_NONE)
        return -1;
    if (!w) {
        size_t n = p->client && p->clientl < sizeof(who) - 1 && !memchr(p->client, '\0', p->clientl)
                       ? p->clientl
                       : 0;
        who[0] = '@';
        memcpy(who + 1, n ? p->client : "-", n ? n : 1);
        if ((w = idx_str_intern(&x->strs, who, (n ? n : 1) + 1)) == IDX_NONE)
            return -1;
    }
    return idx_pair_add(&x->hostuse, h, w);
}

/* Index one line (no newline).  Unreadable lines are counted in bad. */
static void
idx_line(struct auditidx *x, const char *line, size_t len)
{
    struct idx_fields p;
    struct idx_combo c = {0};
    json_t *root = NULL;

    if (idx_parse_fast(line, len, &p) != 0 && idx_parse_json(line, len, &p, &root) < 0)
        goto bad;
    for (int f = 0; f < F_N; f++) {
        if (!p.s[f])
            continue;
        c.f[f] = idx_str_intern(&x->strs, p.s[f], p.l[f]);
        if (c.f[f] == IDX_NONE)
            goto oom;
    }
    c.act = (uint8_t)idx_act_of(idx_str(&x->strs, c.f[F_ACTION]));
    c.dlp = (uint8_t)p.dlp;
    if (idx_host_add(x, &p, c.f[F_USER]) < 0)
        goto oom;
    json_decref(root);
    root = NULL;
    uint32_t id = idx_combo_intern(&x->combos, &c);
    if (id == IDX_NONE || idx_hour_add(x, p.ts, id, 1, p.bytes_out) < 0)
        goto oom;
    if (idx_append(x, p.ts, id, p.bytes_out) < 0) {
        idx_hour_add(x, p.ts, id, -1, p.bytes_out);
        goto oom;
    }
    if (x->lines == 0 || p.ts < x->first_ts)
        x->first_ts = p.ts;
    if (x->lines == 0 || p.ts > x->last_ts)
        x->last_ts = p.ts;
    x->lines++;
    idx_recent_put(x, line, len, p.ts, id);
    return;
oom:
    idx_oom(x);
bad:
    json_decref(root);
    x->bad++;
}

int
auditidx_parse_debug(const char *line, size_t len, int fast, char *out, size_t cap)
{
    struct idx_fields p;
    json_t *root = NULL;
    int rc = fast ? idx_parse_fast(line, len, &p) : idx_parse_json(line, len, &p, &root);
    if (rc == 0) {
        size_t o = (size_t)snprintf(out, cap, "%" PRId64 "|%d|%" PRIu64, p.ts, p.dlp, p.bytes_out);
        for (int f = 0; f < F_N && o < cap; f++)
            o += (size_t)snprintf(out + o, cap - o, "|%s=%.*s", p.s[f] ? "s" : "null", (int)p.l[f],
                                  p.s[f] ? p.s[f] : "");
        if (o < cap)
            o += (size_t)snprintf(out + o, cap - o, "|host=%.*s|client=%.*s", (int)p.hostl,
                                  p.host ? p.host : "", (int)p.clientl, p.client ? p.client : "");
    }
    json_decref(root);
    return rc;
}

/* Cut data into lines; an unfinished last line waits in f for more. */
static void
idx_feed(struct auditidx *x, struct idx_feed *f, const char *data, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (f->skipping) {
            if (nl)
                f->skipping = 0;
        } else if (f->len + take > AUDITIDX_LINE_MAX) {
            x->bad++;
            f->len = 0;
            f->skipping = !nl;
        } else if (nl && f->len == 0) {
            idx_line(x, data, take);
        } else {
            if (f->len + take > f->cap) {
                size_t nc = f->cap ? f->cap : 4096;
                while (nc < f->len + take)
                    nc *= 2;
                char *b = realloc(f->buf, nc);
                if (!b) {
                    idx_oom(x);
                    x->bad++;
                    f->len = 0;
                    f->skipping = !nl;
                    goto next;
                }
                f->buf = b;
                f->cap = nc;
            }
            memcpy(f->buf + f->len, data, take);
            f->len += take;
            if (nl) {
                idx_line(x, f->buf, f->len);
                f->len = 0;
            }
        }
    next:
        if (!nl)
            break;
        data += take + 1;
        n -= take + 1;
    }
}

/* The end of a finished file: an unfinished last line is unreadable. */
static void
idx_feed_end(struct auditidx *x, struct idx_feed *f)
{
    if (f->len > 0 || f->skipping)
        x->bad++;
    f->len = 0;
    f->skipping = 0;
}

/* Read a finished file (fd, plain or gzip, taken over) to its end; stop_flag may end it early. */
static int
idx_read_gz(struct auditidx *x, int fd, char *block, const int *stop_flag, char *err, size_t errlen,
            const char *name)
{
    struct idx_feed f = {0};
    gzFile gz = gzdopen(fd, "rb");
    int n, rc = 0;

    if (!gz) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", name);
        return -1;
    }
    gzbuffer(gz, 256 * 1024);
    while ((n = gzread(gz, block, IDX_READ_BLOCK)) > 0) {
        idx_feed(x, &f, block, (size_t)n);
        if (stop_flag && __atomic_load_n(stop_flag, __ATOMIC_RELAXED))
            break;
    }
    int e = Z_OK;
    const char *msg = gzerror(gz, &e);
    if (n < 0 || (e != Z_OK && e != Z_STREAM_END)) {
        snprintf(err, errlen, "%s: %s", name,
                 e == Z_ERRNO  ? strerror(errno)
                 : msg && *msg ? msg
                               : "read error");
        rc = -1;
    }
    idx_feed_end(x, &f);
    free(f.buf);
    gzclose(gz);
    return rc;
}

int
auditidx_load_file(struct auditidx *x, const char *file, char *err, size_t errlen)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", file, strerror(errno));
        return -1;
    }
    char *block = malloc(IDX_READ_BLOCK);
    if (!block) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", file);
        return -1;
    }
    int rc = idx_read_gz(x, fd, block, NULL, err, errlen, file);
    free(block);
    return rc;
}

void
auditidx_stats(const struct auditidx *x, uint64_t *lines, uint64_t *bad, uint64_t *bytes)
{
    uint64_t b = sizeof(*x) + x->strs.pool_cap + (uint64_t)x->strs.cap * 4 +
                 (uint64_t)x->strs.nslot * 4 + (uint64_t)x->combos.cap * sizeof(struct idx_combo) +
                 (uint64_t)x->combos.nslot * 4 + x->capchunks * sizeof(void *);
    for (size_t i = 0; i < x->nchunks; i++)
        b += sizeof(struct idx_chunk) + (uint64_t)x->chunks[i]->cap * sizeof(struct idx_rec);
    for (size_t i = 0; i < AUDITIDX_RECENT; i++)
        b += x->recent[i].cap;
    b += x->caphours * sizeof(void *);
    for (size_t i = 0; i < x->nhours; i++)
        b += sizeof(struct idx_hour) + (uint64_t)x->hours[i]->cap * sizeof(struct idx_cell);
    *lines = x->lines;
    *bad = x->bad;
    *bytes = b;
}

/* ---- queries ---------------------------------------------------------------------- */

/* Per-query state: which combos pass the filters, and users' groups. */
struct idx_q {
    const struct auditidx *x;
    const struct auditidx_query *q;
    const struct users *users;
    uint8_t *pass; /* per combo */
};

/* The filter's string id: 0 for null, IDX_NONE when no line has it. */
static uint32_t
idx_filter_id(const struct auditidx *x, const struct auditidx_filter *f)
{
    if (f->is_null)
        return 0;
    uint32_t id = idx_str_find(&x->strs, f->v, strlen(f->v));
    return id ? id : IDX_NONE;
}

static size_t
idx_groups_of(const struct idx_q *s, uint32_t user, const char *const **groups)
{
    *groups = NULL;
    if (!user || !s->users)
        return 0;
    return users_groups(s->users, idx_str(&s->x->strs, user), groups);
}

static int
idx_pass_build(struct idx_q *s)
{
    const struct auditidx *x = s->x;
    const struct auditidx_query *q = s->q;
    const struct auditidx_filter *fs[F_N] = {&q->service, &q->category, &q->user, &q->rule,
                                             &q->action};
    uint32_t want[F_N];
    int8_t *ingroup = NULL;

    if (!(s->pass = calloc(x->combos.n ? x->combos.n : 1, 1)))
        return -1;
    for (int f = 0; f < F_N; f++)
        want[f] = fs[f]->set ? idx_filter_id(x, fs[f]) : 0;
    if (q->group.set && x->strs.n && !(ingroup = calloc(x->strs.n, 1)))
        return -1;
    for (uint32_t i = 0; i < x->combos.n; i++) {
        const struct idx_combo *c = &x->combos.v[i];
        int ok = 1;
        for (int f = 0; f < F_N && ok; f++)
            ok = !fs[f]->set || c->f[f] == want[f];
        if (ok && q->group.set) {
            uint32_t u = c->f[F_USER];
            if (!ingroup[u]) {
                const char *const *g;
                size_t ng = idx_groups_of(s, u, &g);
                ingroup[u] = q->group.is_null && ng == 0 ? 1 : -1;
                for (size_t k = 0; k < ng && !q->group.is_null; k++)
                    if (strcmp(g[k], q->group.v) == 0)
                        ingroup[u] = 1;
            }
            ok = ingroup[u] == 1;
        }
        s->pass[i] = (uint8_t)ok;
    }
    free(ingroup);
    return 0;
}

static void
idx_row_add(struct auditidx_row *r, const struct idx_combo *c, uint64_t n, uint64_t bytes)
{
    r->requests += n;
    r->bytes_out += bytes;
    if (c->dlp)
        r->dlp += n;
    switch (c->act) {
    case ACT_ALLOW:
        r->allow += n;
        break;
    case ACT_WARN:
        r->warn += n;
        break;
    case ACT_ACK:
        r->ack += n;
        break;
    case ACT_BLOCK:
        r->block += n;
        break;
    default:
        break;
    }
}

/* Run BODY for each record REC in [from, to), its time in T. */
#define IDX_FOR_RECORDS(x, from, to, REC, T, BODY)                                                 \
    for (size_t ci_ = 0; ci_ < (x)->nchunks; ci_++) {                                              \
        const struct idx_chunk *ch_ = (x)->chunks[ci_];                                            \
        if (ch_->max < (from) || ch_->min >= (to))                                                 \
            continue;                                                                              \
        int whole_ = ch_->min >= (from) && ch_->max < (to);                                        \
        for (uint32_t ri_ = 0; ri_ < ch_->n; ri_++) {                                              \
            const struct idx_rec *REC = &ch_->rec[ri_];                                            \
            int64_t T = ch_->base + REC->dt;                                                       \
            if (!whole_ && (T < (from) || T >= (to)))                                              \
                continue;                                                                          \
            BODY                                                                                   \
        }                                                                                          \
    }

/*
 * The whole UTC hours [*h0, *h1) of [from, to), which the hour summaries
 * answer; 0 when there are none (then every record in [from, to) is counted).
 */
static int
idx_whole_hours(int64_t from, int64_t to, int64_t *h0, int64_t *h1)
{
    *h0 =
        idx_floor_div(from, IDX_HOUR_MS) + (idx_floor_div(from, IDX_HOUR_MS) * IDX_HOUR_MS < from);
    *h1 = idx_floor_div(to, IDX_HOUR_MS);
    return *h0 < *h1;
}

/* Index of the first summary at or after hour h. */
static size_t
idx_hour_at(const struct auditidx *x, int64_t h)
{
    size_t lo = 0, hi = x->nhours;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (x->hours[mid]->hour < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Per combo counts and bytes over [from, to): summaries for whole hours (unless scan), records
 * for the rest. */
static int
idx_count_combos(const struct auditidx *x, int64_t from, int64_t to, int scan, uint64_t **cnt,
                 uint64_t **bytes)
{
    size_t n = x->combos.n ? x->combos.n : 1;
    int64_t h0, h1;
    *cnt = calloc(n, sizeof(**cnt));
    *bytes = calloc(n, sizeof(**bytes));
    if (!*cnt || !*bytes) {
        free(*cnt);
        free(*bytes);
        return -1;
    }
    uint64_t *c = *cnt, *b = *bytes;
    if (scan || !idx_whole_hours(from, to, &h0, &h1)) {
        IDX_FOR_RECORDS(x, from, to, r, t, {
            (void)t;
            c[r->combo]++;
            b[r->combo] += r->bytes_out;
        })
        return 0;
    }
    for (size_t i = idx_hour_at(x, h0); i < x->nhours && x->hours[i]->hour < h1; i++) {
        const struct idx_hour *h = x->hours[i];
        for (uint32_t k = 0; k < h->cap; k++)
            if (h->cell[k].combo != IDX_NONE) {
                c[h->cell[k].combo] += h->cell[k].count;
                b[h->cell[k].combo] += h->cell[k].bytes_out;
            }
    }
    IDX_FOR_RECORDS(x, from, h0 * IDX_HOUR_MS, r, t, {
        (void)t;
        c[r->combo]++;
        b[r->combo] += r->bytes_out;
    })
    IDX_FOR_RECORDS(x, h1 * IDX_HOUR_MS, to, r, t, {
        (void)t;
        c[r->combo]++;
        b[r->combo] += r->bytes_out;
    })
    return 0;
}

/* Rows keyed by string: a small open-addressing map from key to row index. */
struct idx_rows {
    struct auditidx_row *v;
    size_t n, cap;
    uint32_t *slot; /* row + 1 */
    size_t nslot;
};

static struct auditidx_row *
idx_rows_get(struct idx_rows *t, const char *key)
{
    if (2 * (t->n + 1) > t->nslot) {
        size_t ns = t->nslot ? 2 * t->nslot : 64;
        uint32_t *slot = calloc(ns, sizeof(*slot));
        if (!slot)
            return NULL;
        for (size_t i = 0; i < t->n; i++) {
            const char *k = t->v[i].key;
            size_t j = (k ? hash_bytes(k, strlen(k)) : 0) & (ns - 1);
            while (slot[j])
                j = (j + 1) & (ns - 1);
            slot[j] = (uint32_t)i + 1;
        }
        free(t->slot);
        t->slot = slot;
        t->nslot = ns;
    }
    size_t j = (key ? hash_bytes(key, strlen(key)) : 0) & (t->nslot - 1);
    for (; t->slot[j]; j = (j + 1) & (t->nslot - 1)) {
        struct auditidx_row *r = &t->v[t->slot[j] - 1];
        if ((!key && !r->key) || (key && r->key && strcmp(key, r->key) == 0))
            return r;
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 64;
        struct auditidx_row *v = realloc(t->v, nc * sizeof(*v));
        if (!v)
            return NULL;
        t->v = v;
        t->cap = nc;
    }
    struct auditidx_row *r = &t->v[t->n];
    memset(r, 0, sizeof(*r));
    if (key && !(r->key = strdup(key)))
        return NULL;
    t->slot[j] = (uint32_t)++t->n;
    return r;
}

static int
idx_row_cmp(const void *pa, const void *pb)
{
    const struct auditidx_row *a = pa, *b = pb;
    if (a->requests != b->requests)
        return a->requests > b->requests ? -1 : 1;
    if (!a->key || !b->key)
        return !a->key - !b->key;
    return strcmp(a->key, b->key);
}

static void
idx_row_merge(struct auditidx_row *d, const struct auditidx_row *r)
{
    d->requests += r->requests;
    d->allow += r->allow;
    d->warn += r->warn;
    d->ack += r->ack;
    d->block += r->block;
    d->dlp += r->dlp;
    d->bytes_out += r->bytes_out;
}

/*
 * Rows keyed by a field: counts per combo, summed into one row per string id
 * of the field (an array, no hashing per combo), then one row per id; groups
 * are the user rows handed to each group of their user.
 */
static int
idx_query_keys(struct idx_q *s, struct auditidx_result *res)
{
    const struct auditidx *x = s->x;
    const struct auditidx_query *q = s->q;
    struct idx_rows rows = {0};
    uint64_t *cnt, *bytes;
    int field = q->by == AUDITIDX_BY_SERVICE    ? F_SERVICE
                : q->by == AUDITIDX_BY_USER     ? F_USER
                : q->by == AUDITIDX_BY_RULE     ? F_RULE
                : q->by == AUDITIDX_BY_ACTION   ? F_ACTION
                : q->by == AUDITIDX_BY_CATEGORY ? F_CATEGORY
                                                : F_USER; /* by=group: users first */
    uint32_t nstr = x->strs.n ? x->strs.n : 1;

    if (idx_count_combos(x, q->from_ms, q->to_ms, q->scan, &cnt, &bytes) < 0)
        return -1;
    struct auditidx_row *by_id = calloc(nstr, sizeof(*by_id));
    if (!by_id)
        goto fail;
    for (uint32_t i = 0; i < x->combos.n; i++)
        if (cnt[i] && s->pass[i])
            idx_row_add(&by_id[x->combos.v[i].f[field]], &x->combos.v[i], cnt[i], bytes[i]);
    for (uint32_t id = 0; id < nstr; id++) {
        if (!by_id[id].requests)
            continue;
        const char *const *g = NULL;
        size_t ng = q->by == AUDITIDX_BY_GROUP ? idx_groups_of(s, id, &g) : 0;
        for (size_t k = 0; k < (ng ? ng : 1); k++) {
            struct auditidx_row *r =
                idx_rows_get(&rows, ng                           ? g[k]
                                    : q->by == AUDITIDX_BY_GROUP ? NULL
                                                                 : idx_str(&x->strs, id));
            if (!r)
                goto fail;
            idx_row_merge(r, &by_id[id]);
        }
    }
    free(by_id);
    free(cnt);
    free(bytes);
    free(rows.slot);
    if (rows.n)
        qsort(rows.v, rows.n, sizeof(*rows.v), idx_row_cmp);
    res->rows = rows.v;
    res->n = rows.n;
    return 0;
fail:
    free(by_id);
    free(cnt);
    free(bytes);
    free(rows.slot);
    res->rows = rows.v;
    res->n = rows.n;
    auditidx_result_free(res);
    return -1;
}

static int
idx_query_time(struct idx_q *s, struct auditidx_result *res)
{
    const struct auditidx *x = s->x;
    const struct auditidx_query *q = s->q;
    int64_t unit = q->by == AUDITIDX_BY_HOUR  ? IDX_HOUR_MS
                   : q->by == AUDITIDX_BY_DAY ? IDX_DAY_MS
                                              : 60000;
    int64_t tz = (int64_t)q->tz_min * 60000;
    int64_t first = idx_floor_div(q->from_ms + tz, unit);
    int64_t nb = q->to_ms > q->from_ms ? idx_floor_div(q->to_ms - 1 + tz, unit) - first + 1 : 0;

    res->rows = NULL;
    res->n = 0;
    if (nb > AUDITIDX_MAX_BUCKETS)
        return -2;
    struct auditidx_row *b = calloc(nb ? (size_t)nb : 1, sizeof(*b));
    if (!b)
        return -1;
    const uint8_t *pass = s->pass;
    const struct idx_combo *combos = x->combos.v;
    int64_t h0, h1, from = q->from_ms, to = q->to_ms;
    /* A UTC hour lies in one bucket when the offset is whole hours: then summaries serve. */
    if (!q->scan && unit != 60000 && q->tz_min % 60 == 0 && idx_whole_hours(from, to, &h0, &h1)) {
        for (size_t i = idx_hour_at(x, h0); i < x->nhours && x->hours[i]->hour < h1; i++) {
            const struct idx_hour *h = x->hours[i];
            struct auditidx_row *row = &b[idx_floor_div(h->hour * IDX_HOUR_MS + tz, unit) - first];
            for (uint32_t k = 0; k < h->cap; k++)
                if (h->cell[k].combo != IDX_NONE && pass[h->cell[k].combo])
                    idx_row_add(row, &combos[h->cell[k].combo], h->cell[k].count,
                                h->cell[k].bytes_out);
        }
        IDX_FOR_RECORDS(x, from, h0 * IDX_HOUR_MS, r, t, {
            if (pass[r->combo])
                idx_row_add(&b[idx_floor_div(t + tz, unit) - first], &combos[r->combo], 1,
                            r->bytes_out);
        })
        from = h1 * IDX_HOUR_MS;
    }
    IDX_FOR_RECORDS(x, from, to, r, t, {
        if (pass[r->combo])
            idx_row_add(&b[idx_floor_div(t + tz, unit) - first], &combos[r->combo], 1,
                        r->bytes_out);
    })
    size_t k = 0;
    for (int64_t i = 0; i < nb; i++) {
        if (!b[i].requests)
            continue;
        char key[48];
        auditidx_format_time((first + i) * unit - tz, q->tz_min, key, sizeof(key));
        if (q->by == AUDITIDX_BY_DAY) {
            key[10] = '\0';
        } else {
            /* YYYY-MM-DDTHH:MM:00 and the zone, without the milliseconds */
            memmove(key + 19, key + 23, strlen(key + 23) + 1);
        }
        b[k] = b[i];
        if (!(b[k].key = strdup(key))) {
            res->rows = b;
            res->n = k;
            auditidx_result_free(res);
            return -1;
        }
        k++;
    }
    res->rows = b;
    res->n = k;
    return 0;
}

int
auditidx_query(const struct auditidx *x, const struct auditidx_query *q, const struct users *users,
               struct auditidx_result *res)
{
    struct idx_q s = {x, q, users, NULL};
    int rc;

    res->rows = NULL;
    res->n = 0;
    if (idx_pass_build(&s) < 0) {
        free(s.pass);
        return -1;
    }
    if (q->by == AUDITIDX_BY_HOUR || q->by == AUDITIDX_BY_DAY || q->by == AUDITIDX_BY_MINUTE)
        rc = idx_query_time(&s, res);
    else
        rc = idx_query_keys(&s, res);
    free(s.pass);
    if (rc == 0 && q->limit && res->n > q->limit) {
        for (size_t i = q->limit; i < res->n; i++)
            free(res->rows[i].key);
        res->n = q->limit;
    }
    return rc;
}

void
auditidx_result_free(struct auditidx_result *res)
{
    for (size_t i = 0; i < res->n; i++)
        free(res->rows[i].key);
    free(res->rows);
    res->rows = NULL;
    res->n = 0;
}

static const char *const idx_by_names[] = {"service",  "user", "group", "rule",  "action",
                                           "category", "hour", "day",   "minute"};
_Static_assert(sizeof(idx_by_names) / sizeof(idx_by_names[0]) == AUDITIDX_BY_MINUTE + 1,
               "a name for every grouping");

/* A CSV field: quoted when it holds a separator, quote or line break; a leading = + - @ TAB CR
 * (a spreadsheet formula) is neutralised with a leading apostrophe (OWASP). */
static void
idx_csv_field(struct evbuffer *out, const char *s)
{
    if (!s)
        return;
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    int formula = strchr("=+-@\t\r", s[0]) != NULL && s[0];
    if (quote)
        evbuffer_add(out, "\"", 1);
    if (formula)
        evbuffer_add(out, "'", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            evbuffer_add(out, "\"", 1);
        evbuffer_add(out, p, 1);
    }
    if (quote)
        evbuffer_add(out, "\"", 1);
}

static void
idx_json_str(struct evbuffer *out, const char *s)
{
    char buf[AUDITIDX_FILTER_MAX * 6 + 8];
    if (!s) {
        evbuffer_add(out, "null", 4);
        return;
    }
    size_t n = audit_json_str(buf, sizeof(buf), s, strlen(s), sizeof(buf) - 8);
    evbuffer_add(out, buf, n);
}

int
auditidx_result_write(const struct auditidx_query *q, const struct auditidx_result *res,
                      struct evbuffer *out)
{
    char from[48], to[48];
    int rc = 0;

    if (q->csv) {
        rc |= evbuffer_add_printf(out, "key,requests,allow,warn,ack,block,dlp,bytes_out\r\n") < 0;
        for (size_t i = 0; i < res->n; i++) {
            const struct auditidx_row *r = &res->rows[i];
            idx_csv_field(out, r->key);
            rc |= evbuffer_add_printf(out,
                                      ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
                                      ",%" PRIu64 ",%" PRIu64 "\r\n",
                                      r->requests, r->allow, r->warn, r->ack, r->block, r->dlp,
                                      r->bytes_out) < 0;
        }
        return rc ? -1 : 0;
    }
    auditidx_format_time(q->from_ms, 0, from, sizeof(from));
    auditidx_format_time(q->to_ms, 0, to, sizeof(to));
    rc |= evbuffer_add_printf(out, "{\"from\":\"%s\",\"to\":\"%s\",\"by\":\"%s\",\"rows\":[", from,
                              to, idx_by_names[q->by]) < 0;
    for (size_t i = 0; i < res->n; i++) {
        const struct auditidx_row *r = &res->rows[i];
        evbuffer_add(out, i ? ",{\"key\":" : "{\"key\":", i ? 8 : 7);
        idx_json_str(out, r->key);
        rc |= evbuffer_add_printf(out,
                                  ",\"requests\":%" PRIu64 ",\"allow\":%" PRIu64
                                  ",\"warn\":%" PRIu64 ",\"ack\":%" PRIu64 ",\"block\":%" PRIu64
                                  ",\"dlp\":%" PRIu64 ",\"bytes_out\":%" PRIu64 "}",
                                  r->requests, r->allow, r->warn, r->ack, r->block, r->dlp,
                                  r->bytes_out) < 0;
    }
    rc |= evbuffer_add(out, "]}\n", 3) < 0;
    return rc ? -1 : 0;
}

int
auditidx_recent_write(const struct auditidx *x, const struct auditidx_query *q,
                      const struct users *users, struct evbuffer *out)
{
    struct idx_q s = {x, q, users, NULL};
    size_t want = q->n ? q->n : 50, got = 0;
    int rc = 0;

    if (idx_pass_build(&s) < 0) {
        free(s.pass);
        return -1;
    }
    rc |= evbuffer_add(out, "{\"lines\":[", 10) < 0;
    for (size_t k = 0; k < x->nrecent && got < want; k++) {
        const struct idx_recent *r =
            &x->recent[(x->recent_next + AUDITIDX_RECENT - 1 - k) % AUDITIDX_RECENT];
        if (r->ts < q->from_ms || r->ts >= q->to_ms || !s.pass[r->combo])
            continue;
        if (got++)
            rc |= evbuffer_add(out, ",", 1) < 0;
        rc |= evbuffer_add(out, r->line, r->len) < 0;
    }
    rc |= evbuffer_add(out, "]}\n", 3) < 0;
    free(s.pass);
    return rc ? -1 : 0;
}

/* ---- --report --------------------------------------------------------------------- */

struct idx_rep_row {
    const char *name;
    uint64_t c[ACT_N], total;
};

static int
idx_rep_cmp(const void *pa, const void *pb)
{
    const struct idx_rep_row *a = pa, *b = pb;
    if (a->total != b->total)
        return a->total > b->total ? -1 : 1;
    return strcmp(a->name, b->name);
}

static void
idx_rep_table(FILE *out, const struct auditidx *x, const uint64_t *cnt, int field,
              const char *title)
{
    struct idx_rep_row *rows = calloc(x->strs.n + 1, sizeof(*rows));
    uint32_t *at = calloc(x->strs.n + 1, sizeof(*at));
    size_t k = 0;
    int w = (int)strlen(title);

    if (!rows || !at) {
        free(rows);
        free(at);
        return;
    }
    for (uint32_t i = 0; i < x->combos.n; i++) {
        const struct idx_combo *c = &x->combos.v[i];
        if (!cnt[i])
            continue;
        uint32_t id = c->f[field];
        if (!at[id]) {
            at[id] = (uint32_t)++k;
            rows[k - 1].name = id ? idx_str(&x->strs, id) : "-";
        }
        rows[at[id] - 1].c[c->act] += cnt[i];
        rows[at[id] - 1].total += cnt[i];
    }
    for (size_t i = 0; i < k; i++)
        if ((int)strlen(rows[i].name) > w)
            w = (int)strlen(rows[i].name);
    if (w > 40)
        w = 40;
    if (k)
        qsort(rows, k, sizeof(*rows), idx_rep_cmp);
    fprintf(out, "\n%-*s %9s", w, title, "total");
    for (int a = 0; a < ACT_OTHER; a++)
        fprintf(out, " %9s", idx_act_names[a]);
    fputc('\n', out);
    for (size_t i = 0; i < k; i++) {
        /* control bytes of a name would garble the terminal */
        char clean[AUDIT_FIELD_MAX + 1];
        size_t j;
        for (j = 0; rows[i].name[j] && j + 1 < sizeof(clean); j++)
            clean[j] = ((unsigned char)rows[i].name[j] < 0x20 || rows[i].name[j] == 0x7f)
                           ? '?'
                           : rows[i].name[j];
        clean[j] = '\0';
        fprintf(out, "%-*s %9" PRIu64, w, clean, rows[i].total);
        for (int a = 0; a < ACT_OTHER; a++)
            fprintf(out, " %9" PRIu64, rows[i].c[a]);
        fputc('\n', out);
    }
    free(rows);
    free(at);
}

void
auditidx_report(const struct auditidx *x, FILE *out)
{
    uint64_t *cnt, *bytes, tot[ACT_N] = {0};
    char first[48] = "-", last[48] = "-";

    if (idx_count_combos(x, x->lines ? x->first_ts : 0, x->lines ? x->last_ts + 1 : 0, 0, &cnt,
                         &bytes) < 0) {
        fprintf(out, "out of memory\n");
        return;
    }
    for (uint32_t i = 0; i < x->combos.n; i++)
        tot[x->combos.v[i].act] += cnt[i];
    if (x->lines) {
        auditidx_format_time(x->first_ts, 0, first, sizeof(first));
        auditidx_format_time(x->last_ts, 0, last, sizeof(last));
    }
    fprintf(out, "period: %s .. %s\n", first, last);
    fprintf(out, "lines: %" PRIu64 " (unreadable: %" PRIu64 ")\n", x->lines, x->bad);
    fprintf(out, "actions:");
    for (int a = 0; a < ACT_N; a++)
        if (a != ACT_OTHER || tot[a])
            fprintf(out, " %s %" PRIu64, idx_act_names[a], tot[a]);
    fputc('\n', out);
    idx_rep_table(out, x, cnt, F_SERVICE, "service");
    idx_rep_table(out, x, cnt, F_USER, "user");
    free(cnt);
    free(bytes);
}

void
auditidx_track_hosts(struct auditidx *x)
{
    x->hostuse.on = 1;
}

static int
idx_who_cmp(const void *pa, const void *pb)
{
    const struct auditidx_who *a = pa, *b = pb;
    if (a->requests != b->requests)
        return a->requests > b->requests ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int
idx_host_cmp(const void *pa, const void *pb)
{
    const struct auditidx_host *a = pa, *b = pb;
    if (a->requests != b->requests)
        return a->requests > b->requests ? -1 : 1;
    return strcmp(a->host, b->host);
}

int
auditidx_hosts(const struct auditidx *x, int (*keep)(const char *host, void *arg), void *arg,
               struct auditidx_host **out, size_t *n)
{
    const struct idx_hostuse *t = &x->hostuse;
    uint32_t *at = calloc(x->strs.n + 1, sizeof(*at)); /* host id -> row + 1, or UINT32_MAX */
    struct auditidx_host *rows = NULL;
    size_t k = 0;

    *out = NULL;
    *n = 0;
    if (!at)
        return -1;
    /* rows for the hosts kept, with their totals and how many users */
    for (uint32_t i = 0; i < t->cap; i++) {
        const struct idx_pair *e = &t->v[i];
        if (!e->host || at[e->host] == UINT32_MAX)
            continue;
        if (!at[e->host]) {
            if (keep && !keep(idx_str(&x->strs, e->host), arg)) {
                at[e->host] = UINT32_MAX;
                continue;
            }
            struct auditidx_host *r = realloc(rows, (k + 1) * sizeof(*r));
            if (!r)
                goto oom;
            rows = r;
            rows[k] = (struct auditidx_host){idx_str(&x->strs, e->host), 0, NULL, 0};
            at[e->host] = (uint32_t)++k;
        }
        rows[at[e->host] - 1].requests += e->n;
        rows[at[e->host] - 1].nwho++;
    }
    for (size_t r = 0; r < k; r++) {
        if (!(rows[r].who = calloc(rows[r].nwho, sizeof(*rows[r].who))))
            goto oom;
        rows[r].nwho = 0;
    }
    for (uint32_t i = 0; i < t->cap; i++) {
        const struct idx_pair *e = &t->v[i];
        if (!e->host || at[e->host] == UINT32_MAX || !at[e->host])
            continue;
        struct auditidx_host *r = &rows[at[e->host] - 1];
        r->who[r->nwho++] = (struct auditidx_who){idx_str(&x->strs, e->who), e->n};
    }
    for (size_t r = 0; r < k; r++)
        qsort(rows[r].who, rows[r].nwho, sizeof(*rows[r].who), idx_who_cmp);
    if (k)
        qsort(rows, k, sizeof(*rows), idx_host_cmp);
    free(at);
    *out = rows;
    *n = k;
    return 0;
oom:
    free(at);
    auditidx_hosts_free(rows, k);
    return -1;
}

void
auditidx_hosts_free(struct auditidx_host *h, size_t n)
{
    for (size_t i = 0; h && i < n; i++)
        free(h[i].who);
    free(h);
}

/* ---- the thread ------------------------------------------------------------------- */

static int
idx_stopping(struct auditidx *x)
{
    return __atomic_load_n(&x->stop, __ATOMIC_RELAXED);
}

/* Read the live file from where we are to its end. */
static void
idx_live_read(struct auditidx *x)
{
    ssize_t n;
    while (x->live_fd >= 0 && (n = pread(x->live_fd, x->block, IDX_READ_BLOCK, x->live_off)) > 0) {
        x->live_off += n;
        idx_feed(x, &x->live_feed, x->block, (size_t)n);
        if (idx_stopping(x))
            return;
    }
}

/* A rotated file's name without ".gz": the same before and after compression. */
static size_t
idx_rot_keylen(const char *file)
{
    size_t n = strlen(file);
    return n > 3 && strcmp(file + n - 3, ".gz") == 0 ? n - 3 : n;
}

static int
idx_seen(const struct auditidx *x, const char *file)
{
    size_t n = idx_rot_keylen(file);
    for (size_t i = 0; i < x->nseen; i++)
        if (strlen(x->seen[i]) == n && strncmp(x->seen[i], file, n) == 0)
            return 1;
    return 0;
}

/* The rotated files now, oldest first; NULL (logged) when they cannot be listed. */
static char **
idx_rot_list(struct auditidx *x, size_t *n)
{
    char **files;
    if (audit_rotated_files(x->path, &files, n) < 0) {
        log_warnx("audit index: cannot list the rotated files of %s: %s", x->path, strerror(errno));
        return NULL;
    }
    return files;
}

/* Remember files (taken over) as the rotated files read or being read. */
static void
idx_seen_set(struct auditidx *x, char **files, size_t n)
{
    audit_files_free(x->seen, x->nseen);
    x->seen = files;
    x->nseen = n;
    for (size_t i = 0; i < n; i++)
        files[i][idx_rot_keylen(files[i])] = '\0';
}

/* Read a rotated file by name: as named, or compressed meanwhile (name.gz). */
static void
idx_read_rotated(struct auditidx *x, const char *file)
{
    char gz[4096], err[512];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && snprintf(gz, sizeof(gz), "%s.gz", file) < (int)sizeof(gz))
        fd = open(gz, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_warnx("audit index: %s: %s (left out)", file, strerror(errno));
        return;
    }
    if (idx_read_gz(x, fd, x->block, &x->stop, err, sizeof(err), file) < 0)
        log_warnx("audit index: %s", err);
}

/*
 * Find the live file again after a rotation (old_done: the file we followed
 * was read to its end; it is the oldest rotated file we have not seen) or
 * when none was open.  Every rotated file we have not seen is read first, in
 * order; the path is then opened and the listing taken again: a rotation in
 * between shows as a new name, and then the file just opened is closed
 * unread and the round repeats (it is read under its rotated name).
 */
static void
idx_live_find(struct auditidx *x, int old_done)
{
    for (int round = 0; round < 100 && !idx_stopping(x); round++) {
        size_t n, k;
        char **files = idx_rot_list(x, &n);
        if (!files)
            return;
        for (k = 0; k < n; k++) {
            if (idx_seen(x, files[k]))
                continue;
            if (old_done)
                old_done = 0;
            else
                idx_read_rotated(x, files[k]);
        }
        idx_seen_set(x, files, n);
        struct stat st;
        int fd = open(x->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return; /* not there yet: the writer creates it, a later poll opens it */
        if (fstat(fd, &st) < 0 || !(files = idx_rot_list(x, &n))) {
            close(fd);
            return;
        }
        int rotated = 0;
        for (k = 0; k < n && !rotated; k++)
            rotated = !idx_seen(x, files[k]);
        audit_files_free(files, n);
        if (rotated) {
            close(fd);
            continue;
        }
        x->live_fd = fd;
        x->live_dev = st.st_dev;
        x->live_ino = st.st_ino;
        x->live_off = 0;
        return;
    }
}

/*
 * One look at the live file: new bytes; a rotation (the path names another
 * file now: finish the old one, catch up with the rotated files, follow the
 * new one); a truncation (read again from the start).
 */
static void
idx_live_poll(struct auditidx *x)
{
    struct stat st;

    if (x->live_fd < 0)
        idx_live_find(x, 0);
    idx_live_read(x);
    if (x->live_fd < 0 || stat(x->path, &st) < 0)
        return;
    if (st.st_dev != x->live_dev || st.st_ino != x->live_ino) {
        idx_live_read(x);
        idx_feed_end(x, &x->live_feed);
        close(x->live_fd);
        x->live_fd = -1;
        idx_live_find(x, 1);
        idx_live_read(x);
    } else if (st.st_size < x->live_off) {
        log_warnx("audit index: %s was cut shorter; reading it again from its start", x->path);
        x->live_off = 0;
        x->live_feed.len = 0;
        x->live_feed.skipping = 0;
        idx_live_read(x);
    }
}

static void
idx_job_run(struct auditidx *x, struct auditidx_job *j)
{
    int rc;
    if (j->kind == AUDITIDX_JOB_RECENT) {
        rc = auditidx_recent_write(x, &j->q, j->users, j->out);
    } else {
        struct auditidx_result res;
        rc = auditidx_query(x, &j->q, j->users, &res);
        if (rc == 0)
            rc = auditidx_result_write(&j->q, &res, j->out);
        auditidx_result_free(&res);
    }
    j->status = 200;
    if (rc < 0) {
        evbuffer_drain(j->out, evbuffer_get_length(j->out));
        evbuffer_add_printf(j->out, "{\"error\":\"%s\"}\n",
                            rc == -2 ? "too many hours or days in the period for by"
                                     : "the query failed: out of memory");
        j->status = rc == -2 ? 400 : 500;
    }
}

static void *
idx_thread(void *arg)
{
    struct auditidx *x = arg;
    char err[512];
    struct timespec next;

    /* The proxy first: on a busy machine the index takes what the workers leave (Linux: this
     * thread only). */
    setpriority(PRIO_PROCESS, (id_t)gettid(), AUDITIDX_NICE);

    for (size_t i = 0; i < x->nrot && !idx_stopping(x); i++) {
        if (idx_read_gz(x, x->rot_fds[i], x->block, &x->stop, err, sizeof(err), "rotated file") < 0)
            log_warnx("audit index: %s", err);
        x->rot_fds[i] = -1;
    }
    idx_live_find(x, 0);
    idx_live_read(x);
    if (!idx_stopping(x)) {
        uint64_t lines, bad, bytes;
        auditidx_stats(x, &lines, &bad, &bytes);
        log_info("audit index: %" PRIu64 " lines (%" PRIu64 " unreadable) from %s and %zu rotated "
                 "files, %" PRIu64 " KiB",
                 lines, bad, x->path, x->nrot, bytes >> 10);
    }
    atomic_store(&x->ready, 1);
    pthread_mutex_lock(&x->mu);
    while (!x->stop) {
        struct auditidx_job *jobs = x->jobs;
        x->jobs = NULL;
        x->jobs_tail = &x->jobs;
        pthread_mutex_unlock(&x->mu);
        idx_live_poll(x);
        struct auditidx_job *done = NULL, **tail = &done;
        while (jobs) {
            struct auditidx_job *j = jobs;
            jobs = j->next;
            j->next = NULL;
            idx_job_run(x, j);
            *tail = j;
            tail = &j->next;
        }
        pthread_mutex_lock(&x->mu);
        if (done) {
            *x->done_tail = done;
            x->done_tail = tail;
            event_active(x->done_ev, EV_READ, 0);
        }
        if (!x->stop && !x->jobs) {
            clock_gettime(CLOCK_MONOTONIC, &next);
            next.tv_nsec += AUDITIDX_POLL_MS * 1000000L;
            next.tv_sec += next.tv_nsec / 1000000000L;
            next.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&x->cv, &x->mu, &next);
        }
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* On the reply base: hand finished jobs back. */
static void
idx_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct auditidx *x = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&x->mu);
    struct auditidx_job *j = x->done;
    x->done = NULL;
    x->done_tail = &x->done;
    pthread_mutex_unlock(&x->mu);
    while (j) {
        struct auditidx_job *next = j->next;
        j->next = NULL;
        j->done(j);
        j = next;
    }
}

int
auditidx_start(struct auditidx *x, const char *path, struct event_base *reply_base, char *err,
               size_t errlen)
{
    char **rot = NULL;
    size_t nrot = 0;
    pthread_condattr_t ca;

    if (!(x->path = strdup(path)) || !(x->block = malloc(IDX_READ_BLOCK)) ||
        !(x->done_ev = event_new(reply_base, -1, 0, idx_done_cb, x))) {
        snprintf(err, errlen, "audit index: out of memory");
        return -1;
    }
    if (audit_rotated_files(path, &rot, &nrot) < 0) {
        snprintf(err, errlen, "audit index: cannot list the rotated files of %s: %s", path,
                 strerror(errno));
        return -1;
    }
    if (nrot && !(x->rot_fds = calloc(nrot, sizeof(*x->rot_fds)))) {
        audit_files_free(rot, nrot);
        snprintf(err, errlen, "audit index: out of memory");
        return -1;
    }
    for (size_t i = 0; i < nrot; i++) {
        int fd = open(rot[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            log_warnx("audit index: %s: %s (left out)", rot[i], strerror(errno));
            continue;
        }
        x->rot_fds[x->nrot++] = fd;
    }
    idx_seen_set(x, rot, nrot);
    pthread_mutex_init(&x->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&x->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_store(&x->ready, 0);
    x->running = 1;
    if (pthread_create(&x->th, NULL, idx_thread, x) != 0) {
        x->running = 0;
        atomic_store(&x->ready, 1);
        snprintf(err, errlen, "audit index: cannot start its thread");
        return -1;
    }
    pthread_setname_np(x->th, "aigate-index"); /* for top -H and the bench */
    return 0;
}

int
auditidx_submit(struct auditidx *x, struct auditidx_job *job)
{
    if (!x || !x->running)
        return -1;
    job->next = NULL;
    pthread_mutex_lock(&x->mu);
    *x->jobs_tail = job;
    x->jobs_tail = &job->next;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
    return 0;
}

int
auditidx_ready(struct auditidx *x)
{
    return atomic_load(&x->ready);
}

void
auditidx_free(struct auditidx *x)
{
    if (!x)
        return;
    if (x->running) {
        pthread_mutex_lock(&x->mu);
        __atomic_store_n(&x->stop, 1, __ATOMIC_RELAXED);
        pthread_cond_signal(&x->cv);
        pthread_mutex_unlock(&x->mu);
        pthread_join(x->th, NULL);
        pthread_mutex_destroy(&x->mu);
        pthread_cond_destroy(&x->cv);
        /* Jobs finished but not handed back yet come first: they were submitted first. */
        *x->done_tail = x->jobs;
        for (struct auditidx_job *j = x->done, *next; j; j = next) {
            next = j->next;
            j->next = NULL;
            j->status = -1;
            j->done(j);
        }
    }
    for (size_t i = 0; i < x->nrot; i++)
        if (x->rot_fds[i] >= 0)
            close(x->rot_fds[i]);
    free(x->rot_fds);
    audit_files_free(x->seen, x->nseen);
    if (x->live_fd >= 0)
        close(x->live_fd);
    free(x->live_feed.buf);
    if (x->done_ev)
        event_free(x->done_ev);
    free(x->path);
    free(x->block);
    for (size_t i = 0; i < x->nchunks; i++) {
        free(x->chunks[i]->rec);
        free(x->chunks[i]);
    }
    free(x->chunks);
    for (size_t i = 0; i < x->nhours; i++) {
        free(x->hours[i]->cell);
        free(x->hours[i]);
    }
    free(x->hours);
    for (size_t i = 0; i < AUDITIDX_RECENT; i++)
        free(x->recent[i].line);
    free(x->strs.pool);
    free(x->strs.off);
    free(x->strs.slot);
    free(x->combos.v);
    free(x->combos.slot);
    free(x->hostuse.v);
    free(x);
}
