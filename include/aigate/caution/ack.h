/*
 * Caution-page acknowledgements (SPEC sections 3 "ack" and 6 "warn"): the
 * secret, the tokens the caution page carries, the store of who acknowledged
 * which service until when, and the parsing of the POST /__aigate/ack form.
 * Nothing here touches a socket or runs an event loop; the store has threads
 * of its own and hands finished commits back to the submitting worker
 * through the offload pool's completion path (include/aigate/core/offload.h).
 *
 * Secret file.  A key file (include/aigate/core/keyfile.h): 64 hex characters and
 * a newline (32 random bytes), a raw 32-byte file is accepted too.  Created
 * when missing with mode 0600 via a temporary file and link(2), so it appears
 * whole or not at all; one readable by group or others is used with a warning.
 *
 * Token.  "ISSUED.NONCE.MAC": ISSUED is the issue time in decimal seconds
 * since the epoch (no sign, no leading zero), NONCE 24 lower-case hex
 * characters (96 random bits), MAC the unpadded base64url of
 * HMAC-SHA256(secret, "v1\n" USER "\n" SERVICE "\n" ISSUED "\n" NONCE).
 * Every character is URL-safe.  A token proves that this proxy showed the
 * caution page for (USER, SERVICE) at ISSUED; it does not say that it was
 * used.  The nonce makes each token single-use through the store.
 *
 * Store.  Two bounded hash tables behind one mutex: (user, service) ->
 * expiry of the acknowledgement, and used nonce -> when it may be forgotten.
 * Expired entries go lazily (on lookup, on insert into their bucket, and in a
 * sweep when a table is full); a table still full after the sweep drops an
 * arbitrary entry.
 *
 * Durability.  An acknowledgement is one commit: "this nonce is used, and
 * (user, service) is acknowledged until then".  ack_store_commit() marks the
 * nonce used in memory at once (a second POST of the token is refused even
 * before the disk has it) and queues the commit's two lines for the journal,
 * STATE_FILE.journal beside the state file.  A journal thread takes
 * everything queued, writes it with one write(2), fdatasyncs, and only then
 * applies the grants to memory and completes the waiters, so a burst of
 * acknowledgements costs one sync and the 303 goes out only for a commit on
 * disk.  A crash may lose an acknowledgement whose answer was never sent; it
 * never lets a token that was answered 303 be used again.  A failed write or
 * sync answers ACK_STORE_FAILED (the nonce stays used: refusing is the safe
 * side) and the journal is cut back to its last whole commit before the next.
 *
 * Compaction.  A writer thread rewrites the state file from memory
 * (temporary file in the same folder, fsync, rename, fsync of the folder) at
 * most ACK_FLUSH_PER_S times a second after a change.  Every journal line
 * below the journal's applied end J is in memory (nonces go in before their
 * line is written, grants right after it is synced), so a state file
 * streamed after reading J holds everything below J: the entries present
 * then, minus ones that expired or were dropped from a full table, which
 * memory has dropped too.  Once that state file is renamed into place and the
 * folder synced, the journal thread replaces the journal by its part from J
 * on (usually nothing): that part is written to a temporary file, synced,
 * renamed over the journal, and the folder synced before the next commit on
 * the new file completes.  A crash at any point leaves one of: the old state
 * file with the whole journal; the new state file with the whole journal
 * (the covered part replays over it harmlessly: nonces are a set, and every
 * grant the state file has from after J is in the journal after J too, so
 * the grants replayed in commit order leave each pair at its latest
 * commit); or the new state file with the journal's tail.  Each loads to
 * everything committed.  The state file never has to be in step with the
 * journal for this: it may also hold nonces whose commit failed.
 *
 * Loading.  The state file, then the journal replayed line by line.  A last
 * journal line without its newline is a write torn by the crash: ignored and
 * cut off (its commit was never answered; when the tear is in the
 * acknowledgement line, the whole nonce line before it keeps the token
 * used).  Any other malformed line, in either file, is an error
 * "FILE:LINE: message".
 *
 * Other stores.  A store is reached only through the calls below, which
 * dispatch on its ops table (struct ack_store_ops): the file store above
 * (ack_store_open) is the default; a store shared by a fleet (Redis or
 * Valkey, include/aigate/caution/ackredis.h) implements the same calls with one
 * connection per worker loop, its replies arriving on that loop.  Every
 * answer reaches the caller the same way whatever the store: a callback on
 * the submitting worker's thread, from its loop, never inside the call,
 * exactly once unless cancelled (struct offload_job hand-back).  A store
 * that cannot answer says so (ACK_LOOKUP_UNAVAILABLE, ACK_STORE_FAILED):
 * the caller then shows the caution page again or answers 503, never allows.
 *
 * State file and journal format (UTF-8 text, '\n'-terminated lines):
 *   # comment                          (the writer puts a header line first)
 *   USER<TAB>SERVICE<TAB>EXPIRES       an acknowledgement
 *   NONCE<TAB>EXPIRES                  a used token nonce (24 lower-case hex)
 * EXPIRES is decimal seconds since the epoch.  In USER and SERVICE the bytes
 * '%', '#', TAB, DEL and all other controls are written %XX (upper-case hex);
 * other bytes are written as they are.  Expired lines are skipped at load.
 * A journal commit is its nonce line followed by its acknowledgement line.
 */
#ifndef AIGATE_ACK_H
#define AIGATE_ACK_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

struct worker;

#define ACK_KEY_LEN 32
#define ACK_NONCE_HEX 24
#define ACK_MAC_B64 43
#define ACK_ISSUED_DIGITS_MAX 19
/* Longest token and the buffer that holds it with its NUL. */
#define ACK_TOKEN_LEN_MAX (ACK_ISSUED_DIGITS_MAX + 1 + ACK_NONCE_HEX + 1 + ACK_MAC_B64)
#define ACK_TOKEN_BUF (ACK_TOKEN_LEN_MAX + 1)
/* How far in the future an issue time may be (clock skew across a fleet). */
#define ACK_FUTURE_SKEW_S 60
#define ACK_USER_MAX 256    /* bytes of a user name */
#define ACK_SERVICE_MAX 128 /* bytes of a service id */
#define ACK_URL_MAX 8192    /* bytes of the url form field */
#define ACK_HOST_MAX 256    /* bytes of a host, NUL included */
#define ACK_FORM_MAX 16384  /* bytes of a whole ack form body */
#define ACK_STORE_MAX_ACKS 262144
#define ACK_STORE_MAX_NONCES 262144
#define ACK_FLUSH_PER_S 4

enum ack_verdict {
    ACK_OK = 0,
    ACK_FORGED,
    ACK_EXPIRED,
    ACK_REPLAYED,
    ACK_MALFORMED,
    ACK_STORE_FAILED /* the store could not record it */
};

struct ack_store;

/* Read the secret from file, creating it when missing.  0 or -1 with err. */
int ack_secret_load(const char *file, unsigned char key[ACK_KEY_LEN], char *err, size_t errlen);

/* Write a fresh token for (user, service) issued at issued into out (cap
 * bytes, NUL-terminated; ACK_TOKEN_BUF is always enough).  -1 if a name is
 * too long or holds '\n', issued <= 0, cap is too small or no randomness. */
int ack_token_make(const unsigned char key[ACK_KEY_LEN], const char *user, const char *service,
                   time_t issued, char *out, size_t cap);

/* Check token (len bytes, no NUL needed) for (user, service) at now:
 * ACK_MALFORMED if it does not parse (or a name is unusable), ACK_FORGED if
 * the MAC does not match (wrong key, user or service, or altered), and
 * ACK_EXPIRED if it was issued more than max_age_s ago or more than
 * ACK_FUTURE_SKEW_S in the future.  The MAC comparison is constant-time.
 * Replays are the store's business: see ack_store_commit(). */
enum ack_verdict ack_token_check(const unsigned char key[ACK_KEY_LEN], const char *token,
                                 size_t len, const char *user, const char *service, time_t now,
                                 int max_age_s);

/* A short English phrase for logs ("ok", "forged", ...). */
const char *ack_verdict_text(enum ack_verdict v);

/* Open the file store: load state_file and replay state_file.journal (missing
 * files are an empty store), cut a torn last journal line off, and start the
 * journal and state writer threads.  A journal that cannot be created is
 * warned about and tried again at each commit (which fails until it can).
 * NULL with err ("FILE:LINE: message" for a corrupt line) on failure. */
struct ack_store *ack_store_open(const char *state_file, char *err, size_t errlen);

/* Close any store.  The file store finishes the queued commits, writes the
 * state file, empties the journal it covers, stops its threads and frees; a
 * shared store closes its connections (calls in flight answer failure).
 * Call once no worker can call the store any more (their loops have ended)
 * and before the workers are freed (answers are handed back to them).  NULL
 * is a no-op. */
void ack_store_close(struct ack_store *s);

struct ack_commit;

/* v: ACK_OK once the commit is durable, else why not (see ack_store_commit). */
typedef void (*ack_commit_cb)(enum ack_verdict v, void *arg);

/*
 * Record the acknowledgement that token (len bytes, already checked with
 * ack_token_check() for user and service) stands for: its nonce is used
 * until nonce_expires (any time after the token itself expires) and user has
 * acknowledged service until grant_expires.
 *
 * cb(v, arg) runs exactly once, on w's thread from its event loop, unless
 * the commit is cancelled first; never from inside this call.  v is ACK_OK
 * when both are durable (the grant is visible to ack_store_check() from then
 * on; the file store has synced its journal, a shared store has both keys),
 * ACK_REPLAYED when the nonce was used before, through any node of a shared
 * store (also while that earlier commit is still in flight), ACK_MALFORMED
 * when token does not parse or a name is too long, ACK_STORE_FAILED when
 * writing or syncing the journal failed or a shared store could not be
 * reached or did not answer in time (the nonce may stay used).  The nonce is taken at
 * once, so of two concurrent commits of one token exactly one can succeed.
 *
 * Call it on w's thread.  Returns the handle for ack_store_cancel(), valid
 * until cb runs or the commit is cancelled; NULL on immediate failure (out
 * of memory: then cb never runs and nothing was recorded).  The store owns
 * the handle.
 */
struct ack_commit *ack_store_commit(struct ack_store *s, struct worker *w, const char *token,
                                    size_t len, time_t nonce_expires, const char *user,
                                    const char *service, time_t grant_expires, ack_commit_cb cb,
                                    void *arg);

/* Forget the callback of a commit in flight (its connection went away): cb
 * will not run; the commit itself still completes.  Only on the thread of
 * the worker it was submitted for.  NULL is a no-op. */
void ack_store_cancel(struct ack_commit *c);

struct ack_store_stats {
    unsigned long commits;     /* journal commits written and synced */
    unsigned long syncs;       /* fdatasyncs of the journal that completed commits */
    unsigned long compactions; /* journals replaced by their uncovered tail */
};

/* The file store's journal counters since ack_store_open() (zeros for other stores). */
void ack_store_stats(struct ack_store *s, struct ack_store_stats *out);

/* 1 if user acknowledged service and that has not expired at now, else 0.
 * Synchronous: the file store looks in memory; a store without a local
 * answer (Redis) says 0, so the caution page is shown again.  The live path
 * should use ack_store_lookup(), which every store answers. */
int ack_store_check(struct ack_store *s, const char *user, const char *service, time_t now);

enum ack_lookup_answer {
    ACK_LOOKUP_NO = 0,      /* not acknowledged, or expired */
    ACK_LOOKUP_YES,         /* acknowledged until after now */
    ACK_LOOKUP_UNAVAILABLE, /* the store could not answer: show the caution page again */
};

struct ack_lookup;

typedef void (*ack_lookup_cb)(enum ack_lookup_answer a, void *arg);

/*
 * Ask whether user has acknowledged service and that holds at now.
 *
 * cb(a, arg) runs exactly once, on w's thread from its event loop, unless
 * the lookup is cancelled first; never from inside this call (the file
 * store knows at once and still answers through w's loop).  A name that is
 * too long or holds '\n' is ACK_LOOKUP_NO.  A store that is unreachable, or
 * does not answer within its timeout, answers ACK_LOOKUP_UNAVAILABLE.
 *
 * Call it on w's thread.  Returns the handle for ack_store_lookup_cancel(),
 * valid until cb runs or the lookup is cancelled; NULL on immediate failure
 * (out of memory: then cb never runs).  The store owns the handle.
 */
struct ack_lookup *ack_store_lookup(struct ack_store *s, struct worker *w, const char *user,
                                    const char *service, time_t now, ack_lookup_cb cb, void *arg);

/* Forget the callback of a lookup in flight: cb will not run.  Only on the
 * thread of the worker it was submitted for.  NULL is a no-op. */
void ack_store_lookup_cancel(struct ack_lookup *l);

/* Get w's share of the store ready now (a shared store connects at once, so
 * its health is known before the first request).  Call on w's thread when
 * its loop starts; optional, the first call does the same.  No-op for the
 * file store. */
void ack_store_attach(struct ack_store *s, struct worker *w);

/* 1 if the store answers, 0 if it is unreachable, with why ("redis
 * 10.0.0.5:6379: Connection refused") in why (cap bytes).  Any thread. */
int ack_store_healthy(struct ack_store *s, char *why, size_t cap);

/* Latency buckets of ack_store_metrics (upper bounds in seconds, "le"). */
#define ACK_LATENCY_BUCKETS 12
extern const double ack_latency_le[ACK_LATENCY_BUCKETS];

struct ack_store_metrics {
    unsigned long long calls;  /* lookups and commits the store answered */
    unsigned long long errors; /* of them: unavailable, not recorded, timed out */
    unsigned long long latency_ns;
    unsigned long long le[ACK_LATENCY_BUCKETS]; /* cumulative, as Prometheus wants */
};

/* Counters since open, for /metrics.  Any thread. */
void ack_store_metrics(struct ack_store *s, struct ack_store_metrics *out);

/*
 * Store implementations.  A store is a struct ack_store followed by its own
 * state; ops says how it does each call.  Rules every store keeps: a handle
 * it returns (struct ack_commit, struct ack_lookup) begins with the struct
 * offload_job through which the answer is handed to the worker
 * (offload_finish), so cancelling is offload_cancel() on it; each answered
 * call is counted with ack_store_observe().
 */
struct ack_store_ops {
    const char *name; /* "file", "redis" */
    struct ack_commit *(*commit)(struct ack_store *s, struct worker *w, const char *token,
                                 size_t len, time_t nonce_expires, const char *user,
                                 const char *service, time_t grant_expires, ack_commit_cb cb,
                                 void *arg);
    struct ack_lookup *(*lookup)(struct ack_store *s, struct worker *w, const char *user,
                                 const char *service, time_t now, ack_lookup_cb cb, void *arg);
    int (*check)(struct ack_store *s, const char *user, const char *service,
                 time_t now);                                        /* or NULL */
    void (*attach)(struct ack_store *s, struct worker *w);           /* or NULL */
    int (*healthy)(struct ack_store *s, char *why, size_t cap);      /* or NULL: always */
    void (*stats)(struct ack_store *s, struct ack_store_stats *out); /* or NULL: zeros */
    void (*close)(struct ack_store *s);
};

struct ack_store {
    const struct ack_store_ops *ops;
    atomic_ullong calls, errors, latency_ns;
    atomic_ullong le[ACK_LATENCY_BUCKETS];
};

/* Set up the common part of a new store. */
void ack_store_init(struct ack_store *s, const struct ack_store_ops *ops);
/* Nanoseconds on the monotonic clock, for ack_store_observe(). */
long long ack_store_clock(void);
/* Count a call answered now that began at start (ack_store_clock()); failed: it was an error. */
void ack_store_observe(struct ack_store *s, long long start, int failed);

/* The NONCE part of a token that parses (len bytes) into nonce (24 hex
 * characters and a NUL).  0, or -1 if the token does not parse. */
int ack_token_nonce(const char *token, size_t len, char nonce[ACK_NONCE_HEX + 1]);
/* 1 if name is at most max bytes and holds no '\n' (what the store takes). */
int ack_name_ok(const char *name, size_t max);

/* Parse an application/x-www-form-urlencoded body (len bytes) for the fields
 * "url" and "token" (any order, other fields ignored), undoing %XX and '+'.
 * 0, or -1 if either is missing, empty, given twice, does not fit its buffer
 * (NUL included), has a bad %XX or decodes to a NUL, or the body is longer
 * than ACK_FORM_MAX. */
int ack_form_parse(const char *body, size_t len, char *url, size_t urlcap, char *token,
                   size_t tokcap);

/* Take the host of an absolute http:// or https:// URL (scheme in any case)
 * for the return-target check, lower-cased, without port (and an IPv6
 * literal without brackets), into host (hostcap bytes, NUL included).
 * *is_https tells the scheme.  -1 for anything else: relative or
 * scheme-relative URLs, other schemes, userinfo, an empty or invalid host or
 * port, spaces, controls, backslashes or non-ASCII bytes anywhere, or a URL
 * longer than ACK_URL_MAX.  The caller still has to check that the host
 * belongs to the acknowledged service. */
int ack_url_parse_host(const char *url, char *host, size_t hostcap, int *is_https);

#endif
