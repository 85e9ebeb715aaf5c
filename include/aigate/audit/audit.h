/*
 * Audit log: one JSON object per line (JSON Lines), hash-chained, written by one
 * writer thread so that workers never touch the disk (SPEC section 7).
 *
 * Line format.  audit_format() writes the fields in SPEC order: ts, id, client,
 * user, method, scheme, host, port, path, service, category, rule, action,
 * status, bytes_in, bytes_out, ms, tls, then "node" (the writer's
 * audit_cfg.node, present only when set), "upgrade" (the protocol a request
 * switched to, "websocket", present only then), "dlp" (an array of the kinds
 * of personal data found, present only when there are any), and finally
 * "chain".
 * Missing values are null.  Strings are JSON-escaped: '"' and '\\', control
 * bytes as \b \f \n \r \t or \u00XX (DEL too); invalid UTF-8 (overlongs,
 * surrogates, truncated sequences, code points above U+10FFFF) becomes U+FFFD.
 * Escaped values are cut at AUDIT_PATH_MAX (path) or AUDIT_FIELD_MAX (others)
 * bytes, never inside an escape or a UTF-8 sequence; "dlp" keeps at most
 * AUDIT_DLP_MAX kinds.  The path loses its "?query" unless log_query.
 *
 * Chain.  Let L be the line as audit_format() makes it (ends with '}', no
 * chain, no newline) and P the 64 lower-case hex characters of the previous
 * line's chain.  chain = lower-case hex(HMAC-SHA256(key, P || L)).  The stored
 * line is L without its final '}', then ,"chain":"<64 hex>"} and '\n'; so the
 * verifier gets L back by replacing the trailing ,"chain":"<64 hex>"} with }.
 * The first line of a fresh log chains from 64 '0'; the first line of a new
 * file (rotation, SIGUSR1 reopen, restart, new path) chains from the last line
 * written before it.  Like any hash chain it cannot show lines cut from the
 * very end of the newest file: checkpoints (below) can.
 *
 * Key file (include/aigate/core/keyfile.h): 64 hex characters and a newline (a raw
 * 32-byte file is accepted too).  Created when missing with mode 0600 via a
 * temporary file and link(2), so it appears whole or not at all; a key
 * readable by group or others is used with a warning.
 *
 * Whole lines only.  The file never keeps a partial line.  A short write (disk
 * full) is cut back to the end of the last whole line with ftruncate(2) and the
 * rest retried every second; lines still unwritten when the writer closes are
 * dropped and counted.  A file found ending in a partial line when it is opened
 * (a crash, a power cut) has that piece moved to a side file
 * PATH.partial-YYYYMMDDTHHMMSSZ[.N] and cut off before anything else is
 * written, and the next line records it: action "error", rule
 * "audit:partial-line", path = the side file, bytes_in = the bytes moved; it
 * chains from the last whole line, so the file verifies.  Until the side file
 * can be written (disk still full) nothing is written to the log.  A log that
 * cannot even be created for lack of space (ENOSPC, EDQUOT) does not stop
 * audit_open(): the writer keeps trying every second, as for a full disk.
 *
 * Checkpoints anchor the chain outside the file.  At most every
 * checkpoint_s seconds when lines were written since the last one, after a
 * rotation (naming the rotated file), after a reopen, before a new path is
 * used (naming the old file) and when the writer closes, it emits one line
 *   aigate-checkpoint v1 ts=YYYY-MM-DDTHH:MM:SSZ lines=N chain=C[ node=NODE] file=F mac=M
 * where N is the number of lines in file F, C the chain of its line N (for
 * N = 0, the chain F continues from), and M = hex(HMAC-SHA256(chain key, the
 * text before " mac=")); control bytes in F become '?'.  A checkpoint input
 * starts with "aigate-checkpoint", a chain input with 64 hex digits, so one
 * MAC can never stand for the other.  The log is fdatasync'd first, so a
 * checkpoint never counts a line a crash could still take away.  The line
 * goes to syslog (LOG_AUTHPRIV | LOG_NOTICE, ident "aigate") and, when
 * checkpoint_file is set, is appended to that file (whole or not at all).
 *
 * Full queue.  audit_emit() formats on the calling thread, outside any lock,
 * and copies the line into a bounded byte ring (AUDIT_QUEUE_BYTES).  When the
 * ring is full the worker waits (back-pressure, counted in "waits") up to
 * AUDIT_WAIT_MS for the writer to make room: a slow disk slows requests down
 * instead of losing evidence silently.  If the writer makes no room in that
 * time (disk full, hung NFS) the line is dropped and counted in "dropped", a
 * warning is logged, and until the writer makes progress again later lines
 * are dropped at once instead of waiting, so a dead disk cannot stall every
 * worker.  Dropped lines never reach the chain, so the chain stays verifiable;
 * the counters (and the warning) show the gap.  Nothing can deadlock: the
 * writer never waits for a worker.
 *
 * Durability: the writer writes as soon as lines arrive (batched), and
 * fdatasync()s at least once a second and on close, so a machine crash loses
 * at most the last second.  Rotation: when the file reaches rotate_bytes it
 * is renamed PATH.YYYYMMDDTHHMMSSZ.NNNN (a sequence, so names sort oldest first), a new
 * file is opened (if it cannot be, the rename is undone and the old file kept),
 * and a short-lived thread gzips the renamed file to ….gz, removes the
 * original and deletes the oldest rotated files beyond keep (keep <= 0 keeps
 * all); a file that cannot be compressed (disk full) stays as it is and is
 * compressed after a later rotation.  rotate_bytes 0 disables rotation (e.g.
 * when logrotate does it; then SIGUSR1 -> audit_request_reopen()).
 */
#ifndef AIGATE_AUDIT_H
#define AIGATE_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define AUDIT_PATH_MAX 4096   /* escaped bytes of "path" */
#define AUDIT_FIELD_MAX 1024  /* escaped bytes of any other string */
#define AUDIT_DLP_MAX 16      /* kinds listed in "dlp" */
#define AUDIT_DLP_NAME_MAX 64 /* escaped bytes of one kind */
#define AUDIT_LINE_MAX 20480  /* bound of audit_format() output, NUL included */
#define AUDIT_CHAIN_HEX 64
#define AUDIT_QUEUE_BYTES (4u << 20)
#define AUDIT_WAIT_MS 250

/* SPEC 7's actions.  AUDIT_NONE: not decided yet (never written as such). */
enum audit_action {
    AUDIT_NONE = 0,
    AUDIT_ALLOW,
    AUDIT_BLOCK,
    AUDIT_WARN,
    AUDIT_ACK,
    AUDIT_AUTH_FAIL,
    AUDIT_ERROR,
};

/* "allow", "block", "warn", "ack", "auth-fail", "error"; AUDIT_NONE gives "error". */
const char *audit_action_name(enum audit_action a);

struct audit_rec {
    struct timespec ts;
    char id[33];
    const char *client, *user, *method, *scheme, *host;
    int port;         /* < 0: null */
    const char *path; /* may include ?query */
    const char *service, *category, *rule;
    enum audit_action action;
    int status;                      /* < 0: null */
    int64_t bytes_in, bytes_out, ms; /* < 0: null */
    const char *tls;                 /* none|tunnel|intercept, NULL: null */
    const char *upgrade;             /* "websocket" for a WebSocket (SPEC 6a); NULL: absent */
    const char *const *dlp;
    size_t ndlp;
    int is_ai; /* hit a catalogued service or a block/warn rule */
};

struct audit_cfg {
    const char *path;           /* resolved */
    const char *chain_key_file; /* resolved */
    int scope_ai;               /* 1: only records with is_ai */
    int log_query;
    uint64_t rotate_bytes;       /* 0: never rotate */
    int keep;                    /* rotated files kept; <= 0: all */
    int checkpoint_s;            /* periodic checkpoints at most this often; 0: none */
    const char *checkpoint_file; /* resolved; NULL: checkpoints to syslog only */
    const char *node;            /* "node" of every line; NULL: none.  Fixed by audit_open() */
};

struct audit;

/* Random 128-bit id as 32 lower-case hex characters and a NUL. */
void audit_new_id(char out[33]);

/*
 * JSON string of s[0..len) (quotes included) into out, escaped as described
 * above and cut at max bytes between the quotes; s NULL gives null.  Returns
 * the length written (no NUL is written), or 0 if cap is too small.
 */
size_t audit_json_str(char *out, size_t cap, const char *s, size_t len, size_t max);

/* The line L of r (see above) NUL-terminated; returns strlen or 0 if cap is too small. */
size_t audit_format(char *buf, size_t cap, const struct audit_rec *r, int log_query);

/*
 * Load the chain key (32 bytes) from file; with create, make it when missing.
 * Returns 0 or -1 with err filled.
 */
int audit_key_load(const char *file, int create, unsigned char key[32], char *err, size_t errlen);

/*
 * Rotated files of the log at path (PATH.YYYYMMDDTHHMMSSZ[.NNNN][.gz]), oldest
 * first.  *files is malloc'd, free with audit_files_free().  Returns 0 or -1.
 */
int audit_rotated_files(const char *path, char ***files, size_t *n);
void audit_files_free(char **files, size_t n);

/* Writer.  Returns NULL with err filled on failure; audit_close(NULL) is a no-op. */
struct audit *audit_open(const struct audit_cfg *cfg, char *err, size_t errlen);
/* Thread-safe; never touches the disk; a NULL a is a no-op. */
void audit_emit(struct audit *a, const struct audit_rec *r);
/* Async-signal-safe: asks the writer to reopen the file at the same path. */
void audit_request_reopen(struct audit *a);
/*
 * Apply a new config; a new path is opened here (errors reported) and used
 * next.  node and chain_key_file keep their audit_open() values (a warning
 * says so when they differ).
 */
int audit_reconfigure(struct audit *a, const struct audit_cfg *cfg, char *err, size_t errlen);
/* Drain, fsync, join the threads, free. */
void audit_close(struct audit *a);
void audit_stats(struct audit *a, uint64_t *lines, uint64_t *waits, uint64_t *dropped);
/* 1 while lines are being dropped (the writer made no room in time), else 0.  Thread-safe. */
int audit_dropping(struct audit *a);

/*
 * Check the chain across files (oldest first; plain or gzip).  The first line
 * must chain from 64 '0' unless from_any (for a set whose predecessors were
 * deleted by rotation: the first line is then taken as the anchor, unchecked).
 * Prints "FILE:LINE: chain broken (altered, removed or reordered line)" or
 * "FILE:LINE: truncated/incomplete line" and returns 1, or prints
 * "N lines verified" and returns 0; I/O errors print a message and return 2.
 */
int audit_verify(const char *const *files, size_t n, const char *key_file, int from_any, FILE *out);

/*
 * audit_verify(), and with checkpoints (a stream of lines, e.g. the
 * checkpoint file or lines grepped from syslog; name for messages) also
 * check the files against the last checkpoint in it that carries a valid MAC
 * under this key (other lines are ignored; lines that look like checkpoints
 * but fail the MAC are counted in a note).  The checkpoint's file is matched
 * by base name (a trailing ".gz" on a given file ignored; the last match
 * wins).  Prints and returns 1 when that file is not among files or has fewer
 * lines than the checkpoint counted ("FILE: N lines missing ...") or when its
 * line N does not carry the checkpoint's chain ("FILE:N: does not match the
 * checkpoint ..."); returns 2 when no valid checkpoint is found.  On success
 * prints "N lines verified" and "checkpoint of TS reached: FILE line N".
 * checkpoints NULL: exactly audit_verify().
 */
int audit_verify_checkpoint(const char *const *files, size_t n, const char *key_file, int from_any,
                            FILE *checkpoints, const char *name, FILE *out);

#endif
