/*
 * The acknowledgement store shared by a fleet: Redis or Valkey (SPEC
 * section 10, ack.store = "redis://[:PASSWORD@]HOST:PORT/DB").  It
 * implements the calls of include/aigate/caution/ack.h, so a caution acknowledged
 * through one node is honoured by every node and a token used on one node is
 * refused on all of them.
 *
 * Keys (USER and SERVICE written with '%', ':', controls, space and DEL as
 * %XX, upper-case hex, so the two parts cannot run into each other; other
 * bytes as they are):
 *   ack:USER:SERVICE   value: EXPIRES (decimal Unix seconds); TTL: until then
 *   nonce:NONCE        value: 1; TTL: until the token could no longer be used
 * A commit is "SET nonce:N 1 NX EX ttl" and, only if that set it, "SET
 * ack:U:S EXPIRES EX ttl": the NX decides, on the server, which of two
 * commits of one token wins, whichever nodes they came through.  A lookup is
 * "GET ack:U:S" (an answer is also checked against EXPIRES, so a clock ahead
 * of the server's does not stretch an acknowledgement).
 *
 * Connections.  One hiredis asynchronous connection per worker, on the
 * worker's event loop (libevent adapter), made on the worker's first call
 * (or ack_store_attach) and pipelined: every call is one or two commands
 * queued on it, answered in order.  Nothing blocks a loop: a host name is
 * resolved with the worker's evdns; connect, AUTH, SELECT and a PING that
 * proves the connection run asynchronously like every command.  A call that
 * gets no answer within ACK_REDIS_TIMEOUT_MS, a refused or lost connection,
 * and an error reply all close the connection; calls then answer
 * ACK_LOOKUP_UNAVAILABLE or ACK_STORE_FAILED at once until a new connection
 * (tried after ACK_REDIS_BACKOFF_MIN_MS, doubling to ACK_REDIS_BACKOFF_MAX_MS)
 * has answered its PING.  The store is unhealthy while any worker's
 * connection is down.
 *
 * No TLS (hiredis 0.14 has none): keep Redis on a private network or behind
 * a TLS tunnel.  The password is never logged.
 */
#ifndef AIGATE_ACKREDIS_H
#define AIGATE_ACKREDIS_H

#include <stddef.h>

#include "aigate/caution/ack.h"

#define ACK_REDIS_URL_MAX 1024
#define ACK_REDIS_DEFAULT_PORT 6379
#define ACK_REDIS_DB_MAX 65535
/* "ack:" USER ":" SERVICE, every byte %XX at worst, and a NUL. */
#define ACK_REDIS_KEY_MAX (4 + 3 * ACK_USER_MAX + 1 + 3 * ACK_SERVICE_MAX + 1)
#define ACK_REDIS_TIMEOUT_MS 1000
#define ACK_REDIS_BACKOFF_MIN_MS 100
#define ACK_REDIS_BACKOFF_MAX_MS 2000

struct ack_redis_url {
    char host[256];     /* a name, an IPv4 address or an IPv6 address without brackets */
    int port;           /* ACK_REDIS_DEFAULT_PORT when the URL has none */
    int db;             /* 0 when the URL has none */
    char user[128];     /* "": AUTH with the password alone */
    char password[256]; /* "": no AUTH */
};

/*
 * Parse "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]": HOST a DNS name, an
 * IPv4 address or a bracketed IPv6 address; PORT 1-65535; DB 0 to
 * ACK_REDIS_DB_MAX; USER and PASSWORD with %XX escapes undone (a decoded
 * control byte is refused).  The scheme is matched without case.  0, or -1
 * with err (never echoing the password) for anything else: another scheme
 * (rediss:// is named: no TLS), a query or fragment, spaces, controls or
 * non-ASCII bytes, an empty or invalid host, a bad port or database, a
 * userinfo without ':' or with an empty password, a URL longer than
 * ACK_REDIS_URL_MAX.
 */
int ack_redis_url_parse(const char *url, struct ack_redis_url *u, char *err, size_t errlen);

/* The key of (user, service)'s acknowledgement into out (cap bytes, NUL
 * included; ACK_REDIS_KEY_MAX always does).  Its length, or 0 if a name is
 * unusable (ack_name_ok) or cap is too small. */
size_t ack_redis_key_ack(char *out, size_t cap, const char *user, const char *service);

/* The key of a used token nonce (ACK_NONCE_HEX lower-case hex characters). */
size_t ack_redis_key_nonce(char *out, size_t cap, const char *nonce);

/*
 * Open the Redis store for url (parsed as above) serving workers whose id is
 * below nslots.  Nothing is connected yet: each worker connects on its first
 * call or ack_store_attach(), so an unreachable server does not stop the
 * proxy from starting (calls fail and /healthz says why until it is back).
 * NULL with err on a bad URL or no memory.  Close with ack_store_close().
 */
struct ack_store *ack_redis_open(const char *url, int nslots, char *err, size_t errlen);

#endif
