/*
 * Counters for /metrics (Prometheus text format) that the request path feeds:
 * finished requests by action, by service and by rule, response status
 * classes, a latency histogram, client TLS handshake failures and upstream
 * errors by kind.
 *
 * Cheap on the hot path and lock-free: each thread adds to its own shard
 * (METRICS_SHARDS of them, given out on a thread's first call; threads beyond
 * that share) with relaxed atomic adds, and metrics_write() sums the shards.
 * Services and rules are counted by name in fixed tables of METRICS_NAMES
 * slots claimed once with a compare-and-swap (names are never freed, so the
 * series survive reloads, as Prometheus expects of a counter); a name that
 * finds no free slot counts under "other".  A null service or rule (traffic
 * to no catalogued service, no rule deciding) counts under "none".
 *
 * All functions are thread-safe and never block.
 */
#ifndef AIGATE_METRICS_H
#define AIGATE_METRICS_H

#include <stdint.h>

#include "aigate/audit/audit.h"

#define METRICS_SHARDS 16
#define METRICS_NAMES 512 /* services (and rules) counted by name; the rest are "other" */

struct evbuffer;

/*
 * A request or tunnel finished with an audit line: its action (AUDIT_NONE
 * counts as "other"), service and
 * rule (NULL: none), the status sent (< 0: none) and its duration (ms, < 0:
 * not known, left out of the histogram).
 */
void metrics_request_done(enum audit_action action, const char *service, const char *rule,
                          int status, int64_t ms);

/* A client's TLS handshake with aigate failed (most often: it does not trust the aigate CA). */
void metrics_tls_handshake_failed(void);

/*
 * Reaching an origin failed.  kind is an RFC 9209 Proxy-Status error name:
 * dns_error, dns_timeout, connection_refused, connection_timeout,
 * connection_terminated, http_response_timeout, tls_protocol_error,
 * tls_certificate_error, http_protocol_error; anything else counts as "other".
 * A whole Proxy-Status value may be passed: what follows ';' or ' ' is ignored.
 */
void metrics_upstream_error(const char *kind);

/* Append every counter above in Prometheus text format. */
void metrics_write(struct evbuffer *out);

#endif
