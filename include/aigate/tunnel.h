/*
 * A byte relay between two bufferevents: CONNECT tunnels (and, later,
 * upgraded connections).  Bytes flow both ways unchanged until both sides
 * have closed.  Each direction is bounded: when the receiving side's output
 * passes TUNNEL_HIGH_WATER the sending side stops being read until it
 * drains.  A half-close (EOF from one side) is passed on as
 * shutdown(SHUT_WR) once everything before it has been written.  With
 * splice_ok (both bufferevents are plain sockets) the relay switches to
 * splice(2) through a pipe per direction once both sides are quiet, so bulk
 * data never enters user space.
 *
 * Ownership: the tunnel takes over both bufferevents' callbacks for its
 * life, but the bufferevents stay the caller's (tunnel_free never frees
 * them).  It reports only through ops, from the event loop, never from
 * inside tunnel_start(): activity (for the caller's idle timer) any number
 * of times, then end exactly once (both directions closed, or an error);
 * after end the caller calls tunnel_free().
 */
#ifndef AIGATE_TUNNEL_H
#define AIGATE_TUNNEL_H

#include <stdint.h>

struct bufferevent;
struct event_base;
struct tunnel;

struct tunnel_ops {
    void (*activity)(void *arg);
    void (*end)(void *arg, const char *why);
};

/*
 * Relay between client and origin.  client_eof: the client already sent EOF.
 * Counters (the caller's) grow by the bytes moved client->origin (up) and
 * origin->client (down).  Bytes already in either input buffer are relayed
 * first.  NULL on out of memory (nothing taken over).
 */
struct tunnel *tunnel_start(struct event_base *base, struct bufferevent *client,
                            struct bufferevent *origin, int client_eof, int splice_ok, uint64_t *up,
                            uint64_t *down, const struct tunnel_ops *ops, void *arg);
/* Stop relaying and release the tunnel's own state; both bufferevents are left
 * with no callbacks (the caller sets its own again).  NULL is a no-op. */
void tunnel_free(struct tunnel *t);

#endif
