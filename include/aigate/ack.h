/*
 * Caution-page acknowledgements (SPEC sections 3 "ack" and 6 "warn"): the
 * secret, the tokens the caution page carries, the store of who acknowledged
 * which service until when, and the parsing of the POST /__aigate/ack form.
 * Everything here is free of sockets and event loops.
 *
 * Secret file.  A key file (include/aigate/keyfile.h): 64 hex characters and
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
 * arbitrary entry.  Changes wake a writer thread that rewrites state_file
 * (temporary file in the same folder, fsync, rename, fsync of the folder), at
 * most ACK_FLUSH_PER_S times a second, so callers never wait on the disk.
 * The writer formats a few kilobytes of entries per hold of the mutex and
 * writes them with it released, so no caller waits for a whole pass; an entry
 * changed meanwhile triggers another write.  The interface is small on
 * purpose: a fleet behind a load balancer can back it with a shared store
 * (e.g. Redis with SET key NX EX for nonces and acknowledgements) without
 * changing the callers.
 *
 * State file format (UTF-8 text, '\n'-terminated lines):
 *   # comment                          (the writer puts a header line first)
 *   USER<TAB>SERVICE<TAB>EXPIRES       an acknowledgement
 *   NONCE<TAB>EXPIRES                  a used token nonce (24 lower-case hex)
 * EXPIRES is decimal seconds since the epoch.  In USER and SERVICE the bytes
 * '%', '#', TAB, DEL and all other controls are written %XX (upper-case hex);
 * other bytes are written as they are.  Expired lines are skipped at load;
 * anything malformed is an error "FILE:LINE: message".
 */
#ifndef AIGATE_ACK_H
#define AIGATE_ACK_H

#include <stddef.h>
#include <time.h>

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

enum ack_verdict { ACK_OK = 0, ACK_FORGED, ACK_EXPIRED, ACK_REPLAYED, ACK_MALFORMED };

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
 * Replays are the store's business: see ack_store_consume_nonce(). */
enum ack_verdict ack_token_check(const unsigned char key[ACK_KEY_LEN], const char *token,
                                 size_t len, const char *user, const char *service, time_t now,
                                 int max_age_s);

/* A short English phrase for logs ("ok", "forged", ...). */
const char *ack_verdict_text(enum ack_verdict v);

/* Open the store and load state_file (a missing file is an empty store).
 * Starts the writer thread.  NULL with err on a corrupt file or failure. */
struct ack_store *ack_store_open(const char *state_file, char *err, size_t errlen);

/* Write pending changes, stop the writer and free.  NULL is a no-op. */
void ack_store_close(struct ack_store *s);

/* Record the nonce of token (already checked with ack_token_check) as used
 * until expires (any time after the token itself expires, e.g. now +
 * max_age_s).  ACK_OK the first time, ACK_REPLAYED if it was already used,
 * ACK_MALFORMED if token does not parse, ACK_FORGED never.  Out of memory
 * is reported as ACK_REPLAYED: refusing is the safe side. */
enum ack_verdict ack_store_consume_nonce(struct ack_store *s, const char *token, size_t len,
                                         time_t expires);

/* Acknowledge service for user until expires (replacing an earlier expiry).
 * 0, or -1 if a name is too long or out of memory. */
int ack_store_grant(struct ack_store *s, const char *user, const char *service, time_t expires);

/* 1 if user acknowledged service and that has not expired at now, else 0. */
int ack_store_check(struct ack_store *s, const char *user, const char *service, time_t now);

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
