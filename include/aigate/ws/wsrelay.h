/*
 * A WebSocket whose client-to-origin messages are inspected before they go
 * on (SPEC 6a, when a dlp rule could decide for the upgrade request): a
 * tunnel (tunnel.h) with a filter that parses both directions with ws.h.
 *
 * Client to origin: the client's bytes are fed to an inspecting parser and
 * forwarded only up to what it releases, exactly as the client sent them;
 * a held message waits in the client's input, which is still read (the
 * parser bounds it at ws_parser_hold_max()).  Every data message is scanned
 * (ws_msg_dlp); one holding personal data is put to the owner (judge), and
 * a message the owner blocks is never forwarded: the origin gets a close
 * 1001 after the last message that went on, the client a close 1008 whose
 * reason names the rule, after the origin's frame in progress (the origin's
 * bytes are parsed for framing only, so that close never lands inside one
 * of its frames), and the relay ends once both closes are written.
 * Malformed client framing ends it the same way with the parser's close code
 * (1002, 1007, 1009) to the client, and 1001 to the origin when the last
 * forwarded byte ends a frame.  Malformed origin framing ends it without
 * close frames.  After a close frame from either side nothing more from
 * that side is forwarded (RFC 6455 5.5.1).
 *
 * Ownership and reports as for a tunnel: the relay takes over both
 * bufferevents' callbacks for its life but never frees them; it reports
 * only through ops, from the event loop, never from inside wsrelay_start():
 * activity any number of times, judge inside the processing of a message,
 * end exactly once; after end the owner calls wsrelay_free().
 */
#ifndef AIGATE_WSRELAY_H
#define AIGATE_WSRELAY_H

#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct event_base;
struct dlp;
struct ws_deflate;
struct wsrelay;

struct wsrelay_ops {
    void (*activity)(void *arg);
    /*
     * A message holds the personal data kinds found (POLICY_DLP_* bits,
     * never 0).  NULL lets it through; otherwise it is blocked, and the
     * string (which must outlive the relay) names the rule in the close
     * reason.  Must not call back into the relay.
     */
    const char *(*judge)(void *arg, unsigned found);
    void (*end)(void *arg, const char *why);
};

/*
 * Relay the WebSocket between client and origin (both just past the 101;
 * bytes already in either input are relayed first).  client_eof: the client
 * already sent EOF.  pmd: the permessage-deflate the 101 agreed to.  limit:
 * payload bytes inspected per message (limits.max_body_inspect_bytes).  d:
 * the scanner (borrowed for the relay's life).  up/down: the caller's
 * counters of bytes read from the client and from the origin (held, dropped
 * or forwarded).  NULL on out of memory (nothing taken over).
 */
struct wsrelay *wsrelay_start(struct event_base *base, struct bufferevent *client,
                              struct bufferevent *origin, int client_eof,
                              const struct ws_deflate *pmd, size_t limit, const struct dlp *d,
                              uint64_t *up, uint64_t *down, const struct wsrelay_ops *ops,
                              void *arg);

/* Stop relaying and free the relay; the bufferevents are left with no callbacks.  NULL: no-op. */
void wsrelay_free(struct wsrelay *w);

#endif
