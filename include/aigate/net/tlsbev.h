/*
 * TLS on a connection's socket, both legs of interception (client and
 * origin).  tlsbev_start() hands the socket of a plain bufferevent to
 * OpenSSL: when nothing is left in the plain bufferevent (what it held to
 * send is written out first), OpenSSL reads and writes the socket itself,
 * which saves a copy each way and a pass through the event loop per
 * write; otherwise the TLS layer reads through the plain bufferevent (a
 * libevent filter), as it must to see bytes already read.
 *
 * With OpenSSL on the socket, a read limit (watermark) can stop libevent
 * half-way through a record; the rest waits inside OpenSSL, where the
 * socket's readiness never reports it.  So reading resumes only through
 * tlsbev_read_on() and tlsbev_read_limit(), and a drained input buffer
 * resumes it too: each hands that rest over if there is one.  Both are
 * plain bufferevent_enable()/setwatermark() for any other bufferevent.
 */
#ifndef AIGATE_TLSBEV_H
#define AIGATE_TLSBEV_H

#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <stddef.h>

struct event_base;

/*
 * A TLS bufferevent (BEV_OPT_CLOSE_ON_FREE, deferred callbacks, dirty
 * shutdown allowed) in state st over plain's socket.  plain is freed, or is
 * the filter's underlying bufferevent (bufferevent_get_underlying() tells).
 * NULL on failure (out of memory): plain is still the caller's, its socket
 * possibly closed; ssl was handed to libevent, which frees it once it has
 * taken it (a filter that fails before that leaves it unfreed, as before).
 */
struct bufferevent *tlsbev_start(struct event_base *base, struct bufferevent *plain, SSL *ssl,
                                 enum bufferevent_ssl_state st);

/* bufferevent_enable(bev, EV_READ | also). */
void tlsbev_read_on(struct bufferevent *bev, short also);

/* bufferevent_setwatermark(bev, EV_READ, 0, high); 0: no limit. */
void tlsbev_read_limit(struct bufferevent *bev, size_t high);

/*
 * OpenSSL on the socket makes each piece of the output buffer a TLS record
 * and a write(2) of its own: a head and its body, or WebSocket frames read
 * one by one, would go out as many small ones.  This makes the first
 * record's worth (16 KiB) of bev's output one piece; bevio.c calls it on
 * every add.  Nothing for other bufferevents.
 */
void tlsbev_coalesce(struct bufferevent *bev);

#endif
