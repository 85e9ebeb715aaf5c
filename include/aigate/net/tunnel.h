/*
 * A byte relay between two bufferevents: CONNECT tunnels and WebSockets
 * (SPEC 6a).  Bytes flow both ways unchanged until both sides have closed.
 * Each direction is bounded: when the receiving side's output passes
 * TUNNEL_HIGH_WATER the sending side stops being read until it drains.  A
 * half-close (EOF from one side) is passed on as shutdown(SHUT_WR) once
 * everything before it has been written (for a TLS side, through its TLS
 * layer too).  With splice_ok (both bufferevents are plain sockets) the
 * relay switches to splice(2) through a pipe per direction once both sides
 * are quiet, so bulk data never enters user space.
 *
 * A filter (tunnel_set_filter) sees every byte before it goes on and
 * decides how much of it may: what it holds back stays in the sending
 * side's input, which is still read (a filter bounds what it holds itself),
 * so holding never stalls the relay.  A filtered tunnel never splices.
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

#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct evbuffer;
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

/*
 * A filter on both directions.  relay is called each time bytes arrived in
 * in (the input of the side from_client names) instead of moving them all
 * to out (the other side's output): it moves what may go on
 * (evbuffer_remove_buffer), may drain what must not and may add bytes of
 * its own to out; what it leaves in in is held and offered again, with what
 * arrives after it, on the next call.  eof: that side has sent EOF, nothing
 * more will come; whatever the call leaves in in is then dropped.  Every
 * byte removed from in counts as moved (the caller's up/down counters).  It
 * may call tunnel_finish() and tunnel_write(), nothing else of the tunnel.
 */
struct tunnel_filter {
    void (*relay)(void *arg, int from_client, struct evbuffer *in, struct evbuffer *out, int eof);
};

/* Filter t through f (arg is its own).  Only right after tunnel_start(), before the loop runs. */
void tunnel_set_filter(struct tunnel *t, const struct tunnel_filter *f, void *arg);

/* Append data[0..len) to the client's (to_client) or the origin's output, after what is there. */
void tunnel_write(struct tunnel *t, int to_client, const void *data, size_t len);

/*
 * End the relay once what the outputs hold has been written (to the socket,
 * through a TLS layer too): nothing more is relayed and whatever either side
 * sends from now on is read and dropped.  Then ops->end runs with why, from
 * the loop, as for any end.  For a filter that has written its last bytes
 * (the close frames of a WebSocket it ends).
 */
void tunnel_finish(struct tunnel *t, const char *why);

#endif
