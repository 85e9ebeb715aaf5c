/*
 * Audit index: the audit log's numbers for the dashboard, GET /api/usage,
 * GET /api/recent and --report (SPEC section 11).  The log is the only truth:
 * the index is rebuilt from it (rotated files, plain or gzip, oldest first,
 * then the live file) at start and then follows the live file as lines are
 * written, so every number is a count of whole lines in the log.
 *
 * Form: one record per line, 16 bytes.  A line's strings (service, category,
 * user, rule, action) are interned once (id 0 is JSON null or absent), and
 * the tuple (service, category, user, rule, action, dlp-or-not) is interned as
 * a "combo"; a record is {combo, ms since its chunk's base, bytes_out}, in
 * chunks of AUDITIDX_CHUNK records that carry their first and last time.  Why
 * records and not per-hour counters: a query's from/to may fall anywhere (the
 * dashboard asks for "the last hour" at any second), and counters per hour
 * could only answer whole hours, so they would not agree exactly with the
 * log; records answer any [from, to) to the millisecond.  16 bytes is about
 * 1/25 of the line they stand for (1 GiB of log, the default keep, is ~50 MiB
 * of index); combos are few (users x services x rules in use), so a query
 * counts per combo in one tight pass over the records in range (chunks wholly
 * inside need no time test, chunks wholly outside are skipped) and maps the
 * combos to keys afterwards.  On top of the records, per UTC hour, the
 * counts and bytes per combo (a few thousand cells an hour in a large
 * organisation): a query takes the whole hours of its period from them and
 * counts records only for the two partial hours at its ends, so a 30-day
 * query reads ~720 small tables instead of every line, and still agrees
 * with the log to the millisecond.
 *
 * Groups: the audit line has no groups field, so by=group and group= use the
 * groups a user belongs to NOW (config `groups` of the snapshot the query
 * carries; directory groups, section 9, are not known here), not when the
 * request was made; a request counts once in each of
 * its user's groups (so group rows may add up to more than the total), and
 * requests of users in no group (anonymous included) are the row with key
 * null.  "dlp" counts the lines that carry a "dlp" field, whatever their
 * action.  Time keys of by=minute, by=hour and by=day are the start of the
 * minute, hour or day in the query's UTC offset.
 *
 * Lines: a line exactly in the writer's layout with plain ASCII strings (almost
 * every line) is read by a strict fast path, any other by jansson (which is
 * ~10x slower); both take the same fields, and a line that is not a JSON object
 * with a "ts" (ISO 8601 UTC as the writer writes it) and a string "action" is
 * counted as unreadable and skipped.  Unknown actions count in "requests"
 * only.  A line longer than AUDITIDX_LINE_MAX is unreadable.  A last line
 * without its newline is unreadable in a finished (rotated or given) file
 * and waited for in the live file.
 *
 * Threads: auditidx_start() runs a thread that owns the index, at nice
 * AUDITIDX_NICE so that building and querying take the CPU the workers leave
 * (on a saturated machine about 1.5 % of a core, never nothing).  It builds,
 * then polls the live file every AUDITIDX_POLL_MS (size, and device/inode of
 * the path: a rotation or external logrotate renames the file and a new one
 * appears; the old one is read to its end first, then the new one from its
 * start; a file cut shorter than what was read is read again from its start).
 * Queries are jobs handed to that thread (auditidx_submit): they run there
 * between reads, never on the caller's loop, and need no lock on the data; a
 * job submitted while the first build runs waits for it, so answers are never
 * partial.  The finished job comes back through an event on the caller's
 * event base, so its done() runs on the caller's thread, exactly once.  Lines
 * of rotated files that `keep` deletes while running stay counted until the
 * next start.
 *
 * Without a thread (--report, tests) the same index is filled with
 * auditidx_load_file() and queried with auditidx_query() on the caller's
 * thread.
 */
#ifndef AIGATE_AUDITIDX_H
#define AIGATE_AUDITIDX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AUDITIDX_CHUNK 65536          /* records per chunk */
#define AUDITIDX_LINE_MAX (64u << 10) /* longest line indexed */
#define AUDITIDX_RECENT 1000          /* newest lines kept for /api/recent */
#define AUDITIDX_POLL_MS 250          /* how often the live file is looked at */
#define AUDITIDX_NICE 19              /* the thread's nice value: the workers come first */
#define AUDITIDX_FILTER_MAX 256       /* bytes of a filter value, NUL included */
#define AUDITIDX_MAX_BUCKETS 100000   /* by=hour/day: longest period in buckets */

struct auditidx;
struct users;
struct event_base;
struct evbuffer;

enum auditidx_by {
    AUDITIDX_BY_SERVICE,
    AUDITIDX_BY_USER,
    AUDITIDX_BY_GROUP,
    AUDITIDX_BY_RULE,
    AUDITIDX_BY_ACTION,
    AUDITIDX_BY_CATEGORY,
    AUDITIDX_BY_HOUR,
    AUDITIDX_BY_DAY,
    AUDITIDX_BY_MINUTE, /* for the dashboard's last hour */
};

/* A filter: set = 0 means any value; set with is_null matches JSON null (an empty value in the
 * API). */
struct auditidx_filter {
    int set, is_null;
    char v[AUDITIDX_FILTER_MAX];
};

struct auditidx_query {
    int64_t from_ms, to_ms; /* [from, to), ms since the epoch */
    enum auditidx_by by;
    struct auditidx_filter service, user, group, action, category, rule;
    int tz_min;   /* UTC offset of hour/day keys, minutes (-1439..1439) */
    size_t limit; /* keep the first limit rows; 0: all */
    int csv;      /* answer CSV instead of JSON */
    size_t n;     /* /api/recent: lines wanted (1..AUDITIDX_RECENT) */
    int scan;     /* count every record, not the hour summaries (tests: the reference) */
};

struct auditidx_row {
    char *key; /* NULL: null */
    uint64_t requests, allow, warn, ack, block, dlp, bytes_out;
};

struct auditidx_result {
    struct auditidx_row *rows;
    size_t n;
};

struct auditidx *auditidx_new(void);
/* Stops the thread (jobs not yet done are handed to their done() with status -1 first, on the
 * caller's thread, which must be the reply base's), then frees.  NULL is a no-op. */
void auditidx_free(struct auditidx *x);

/*
 * Index a finished file (plain or gzip) on the caller's thread.  Returns 0,
 * or -1 with err filled (the lines read before the error stay indexed).
 * Not while the thread runs.
 */
int auditidx_load_file(struct auditidx *x, const char *file, char *err, size_t errlen);

/* Lines indexed and lines found unreadable, and the index's bytes of memory. */
void auditidx_stats(const struct auditidx *x, uint64_t *lines, uint64_t *bad, uint64_t *bytes);

/*
 * Rows of q (filters, period, grouping; users: group membership now, may be
 * NULL) into res, sorted: minute/hour/day by time, others by requests descending
 * then key (null last).  Returns 0, -1 (out of memory) or -2 (by=minute, hour
 * or day over more than AUDITIDX_MAX_BUCKETS of them), res empty on error.
 */
int auditidx_query(const struct auditidx *x, const struct auditidx_query *q,
                   const struct users *users, struct auditidx_result *res);
void auditidx_result_free(struct auditidx_result *res);

/* The /api/usage body for res: JSON {"from","to","by","rows":[...]} or CSV with a header. */
int auditidx_result_write(const struct auditidx_query *q, const struct auditidx_result *res,
                          struct evbuffer *out);

/* The /api/recent body: {"lines":[...]} with the newest q->n lines passing q's filters, newest
 * first, each the audit line's own object. */
int auditidx_recent_write(const struct auditidx *x, const struct auditidx_query *q,
                          const struct users *users, struct evbuffer *out);

/*
 * The --report text: period, line counts, actions, then per service and per
 * user the totals by action, largest first.
 */
void auditidx_report(const struct auditidx *x, FILE *out);

/*
 * --report --unlisted: also count lines per host and per (host, user), the
 * user being "@CLIENT" (the client address) on lines without one.  Call
 * before the first auditidx_load_file(); never on an index with a thread
 * (the dashboard's does not count hosts, so its memory does not grow with
 * every site visited).
 */
void auditidx_track_hosts(struct auditidx *x);

struct auditidx_who {
    const char *name; /* a user, or "@ADDRESS" for anonymous lines; x's */
    uint64_t requests;
};

struct auditidx_host {
    const char *host;  /* as the audit line has it (lower case, no port); x's */
    uint64_t requests; /* lines naming it: requests, and tunnels */
    struct auditidx_who *who;
    size_t nwho;
};

/*
 * The hosts counted since auditidx_track_hosts() for which keep(host, arg)
 * returns 1 (keep NULL: all), each with its users, most requests first
 * (then by name), into *out: n rows owned by the caller (free with
 * auditidx_hosts_free), whose strings belong to x.  Returns 0, or -1 when
 * out of memory (nothing to free).
 */
int auditidx_hosts(const struct auditidx *x, int (*keep)(const char *host, void *arg), void *arg,
                   struct auditidx_host **out, size_t *n);
void auditidx_hosts_free(struct auditidx_host *h, size_t n);

/*
 * Start following the log at path on a thread: its rotated files and the
 * live file are opened here (so a rotation after this call cannot hide a
 * file), read on the thread, then the live file followed.  Finished jobs come
 * back through an event of reply_base (created after evthread_use_pthreads()).
 * Returns 0, or -1 with err filled.  A missing live file is waited for.
 */
int auditidx_start(struct auditidx *x, const char *path, struct event_base *reply_base, char *err,
                   size_t errlen);

enum auditidx_job_kind { AUDITIDX_JOB_USAGE, AUDITIDX_JOB_RECENT };

/*
 * A query for the thread.  The submitter fills kind, q, users (must stay
 * valid until done(): hold the config snapshot that owns it), out (an empty
 * evbuffer that receives the body), done and arg.  done() runs on the reply
 * base's thread exactly once, with status 200 (out holds the body), 400 or 500
 * (out holds a JSON error: too many buckets, out of memory) or -1 (the index is being freed: do
 * not answer); the job is the submitter's again from then on.
 */
struct auditidx_job {
    enum auditidx_job_kind kind;
    struct auditidx_query q;
    const struct users *users;
    struct evbuffer *out;
    int status;
    void (*done)(struct auditidx_job *job);
    void *arg;
    struct auditidx_job *next; /* the index's */
};

/* Hand job to the thread.  Returns 0, or -1 (no thread running; job untouched). */
int auditidx_submit(struct auditidx *x, struct auditidx_job *job);
/* 1 once the first build is done (always 1 without a thread). */
int auditidx_ready(struct auditidx *x);

/*
 * Parse an ISO 8601 time: YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS[.fraction]]
 * followed by Z, +HH:MM, -HH:MM, +HHMM or -HHMM (a space stands for '+', as
 * a query string decodes it); a date alone is midnight UTC.  Years 1970-9999.
 * Sets *ms (since the epoch) and returns 0, or -1.
 */
int auditidx_parse_time(const char *s, size_t len, int64_t *ms);
/* ms as YYYY-MM-DDTHH:MM:SS.mmmZ (tz_min 0) or with +HH:MM; out holds 40 bytes. */
void auditidx_format_time(int64_t ms, int tz_min, char *out, size_t outlen);

/*
 * For tests: parse one line with the fast path (fast = 1) or jansson (0) and
 * write what the index takes from it as text into out.  Returns 0 (parsed),
 * 1 (fast path: not the writer's plain layout, jansson decides) or -1
 * (jansson: unreadable).
 */
int auditidx_parse_debug(const char *line, size_t len, int fast, char *out, size_t cap);

#endif
