/*
 * WebSocket (RFC 6455) frames, for inspecting what a client sends before it
 * reaches the origin (SPEC 6a): an incremental frame parser, a message
 * assembler that undoes permessage-deflate (RFC 7692), the extension
 * negotiation it needs, and the close frames the relay writes when it ends a
 * WebSocket.  Pure: no sockets, no event loop.
 *
 * The relay forwards the client's bytes as they came, never re-encoded
 * frames.  A parser tells it how many of them may go on: ws_parser_released()
 * is a prefix of everything fed so far.  A data message is held (not
 * released) from its first frame until its payload has been inspected: the
 * callback is handed the payload, unmasked and inflated, when the message
 * ends, or earlier when it outgrows the inspection limit; if the callback
 * lets it pass the held bytes are released, otherwise nothing of the message
 * ever is.  Control frames (ping, pong, close) are released as they arrive,
 * except inside a held message, where they wait with it so the stream keeps
 * its order.  So a message with personal data never reaches the origin, and
 * what does reach it is byte for byte what the client sent.
 *
 * Inspection limit.  At most `limit` payload bytes of a message are
 * inspected (limits.max_body_inspect_bytes, as for bodies), and a message's
 * held frames may take at most ws_parser_hold_max() bytes of the stream (tiny
 * fragments and interleaved control frames cost framing): whichever comes
 * first, the callback gets the prefix with truncated set and, if it passes,
 * the rest of the message is released as it arrives without inspection.
 * Compressed messages are inflated into that buffer and no further, so a
 * deflate bomb costs at most `limit` bytes of memory; when the client keeps
 * its compression context (no client_no_context_takeover) the rest of a
 * truncated message is still inflated, into a small scratch buffer, because
 * the next message may refer back to it; a message inflating beyond
 * WS_INFLATE_MAX ends the connection (1009).
 *
 * Validation.  Framing is checked strictly, because the relay and the origin
 * must agree on where every frame and message ends: reserved opcodes, RSV2
 * and RSV3, RSV1 without permessage-deflate or on a control frame or a
 * continuation, an unmasked client frame (a masked server frame), a control
 * frame that is fragmented or longer than 125 bytes, a continuation with no
 * message started, a new message inside a fragmented one, a 64-bit length
 * with its top bit set, and compressed data that does not inflate are all
 * errors that end the connection; nothing after the last whole valid frame
 * is forwarded.  Longer-than-needed length encodings are accepted: they are
 * unambiguous, and the origin decides on them.  What is left to the
 * endpoints, which check it themselves and fail the connection: UTF-8
 * validity of text messages (inspection reads the bytes either way), close
 * codes and reasons, the payload of pings and pongs.  After a close frame
 * the client may send nothing more (RFC 6455 5.5.1): further bytes are not
 * part of the WebSocket and are never released.
 */
#ifndef AIGATE_WS_H
#define AIGATE_WS_H

#include <stddef.h>
#include <stdint.h>

struct dlp;

enum ws_rc {
    WS_ERROR = -1,   /* malformed framing or data; see ws_parser_error() */
    WS_CLOSED = 0,   /* a close frame ended the stream */
    WS_AGAIN = 1,    /* all bytes taken, more to come */
    WS_BLOCKED = 2,  /* the callback refused a message */
    WS_BOUNDARY = 3, /* ws_parser_stop(): the stream is at a frame boundary */
};

/* Close codes (RFC 6455 7.4.1). */
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_BAD_DATA 1007
#define WS_CLOSE_POLICY 1008
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_INTERNAL 1011

#define WS_CLOSE_FRAME_MAX (2 + 4 + 125) /* header, mask, payload (RFC 6455 5.5) */
#define WS_INFLATE_MAX (256u << 20)      /* inflated bytes per message, inspected or not */

/* Who writes the frames a parser reads: clients must mask, servers must not. */
enum ws_role { WS_FROM_CLIENT, WS_FROM_SERVER };

/* permessage-deflate as the origin's 101 agreed it (RFC 7692 7.1). */
struct ws_deflate {
    unsigned on : 1;
    unsigned client_no_context_takeover : 1;
    unsigned server_no_context_takeover : 1;
    uint8_t client_max_window_bits; /* 8..15; 15 when not given */
    uint8_t server_max_window_bits;
};

/* A data message as the callback sees it. */
struct ws_msg {
    const unsigned char *p; /* payload, unmasked and inflated; valid during the call */
    size_t len;
    unsigned text : 1;       /* opcode 1 (text), else 2 (binary) */
    unsigned compressed : 1; /* RSV1: p is the inflated payload */
    unsigned truncated : 1;  /* the message goes on beyond p, uninspected */
};

/*
 * Called once per data message with what was inspected (len may be 0).
 * Return 0 to let the message through, anything else to block it: the
 * feeding call then returns WS_BLOCKED and no byte of the message is
 * released.  It must not call back into the parser.
 */
typedef int (*ws_msg_cb)(void *arg, const struct ws_msg *m);

struct ws_parser;

/*
 * A parser for one direction of one WebSocket.  role: whose frames.
 * pmd: what the 101 agreed (NULL or pmd->on == 0: no extension; RSV1 is then
 * an error).  cb: the message callback, or NULL to track framing only (no
 * message is held or inflated; ws_parser_at_boundary() still works, for the
 * origin's direction).  limit: payload bytes inspected per message.
 * Returns NULL when out of memory.  The caller owns the result.
 */
struct ws_parser *ws_parser_new(enum ws_role role, const struct ws_deflate *pmd, size_t limit,
                                ws_msg_cb cb, void *arg);
void ws_parser_free(struct ws_parser *p);

/*
 * Parse buf[0..len), the next bytes of the stream.  *consumed gets how many
 * were taken.
 * WS_AGAIN: all len bytes taken, more to come.
 * WS_CLOSED: the close frame ended after *consumed bytes; the bytes after it
 *   are not part of the WebSocket.
 * WS_BLOCKED: the callback refused a message; *consumed bytes were taken, up
 *   to where its inspection ended.  The caller closes the WebSocket
 *   (ws_close_frame()).
 * WS_BOUNDARY: only after ws_parser_stop(): the frame in progress ended after
 *   *consumed bytes (0 if none was in progress).
 * WS_ERROR: malformed; ws_parser_error() says why and ws_parser_close_code()
 *   which code to close the client with.  *consumed bytes were taken.
 * The callback runs inside this call, for every message that ends (or
 * outgrows the limit) in buf.  Resumable at any byte boundary; buf may be
 * any piece of the stream and need not stay valid after the call.  After
 * anything but WS_AGAIN, further calls return the same with *consumed = 0.
 * Out of memory is a WS_ERROR (close code 1011).
 */
int ws_parser_feed(struct ws_parser *p, const unsigned char *buf, size_t len, size_t *consumed);

/*
 * How many bytes of the stream, from its start, may be forwarded: a prefix
 * of what was consumed, never decreasing.  Bytes of a message waiting for
 * inspection, of a blocked message and from a malformed frame on are not in
 * it.  A frame header is released only once it is whole and valid.
 */
uint64_t ws_parser_released(const struct ws_parser *p);

/*
 * 1 when the released bytes end at a frame boundary, so a frame (a close)
 * may be written right after them; 0 when they end inside a frame.  Always 1
 * after WS_BLOCKED; after WS_ERROR it may be 0 (a compressed frame whose
 * data turned bad after its start was released): then close the connection
 * without a close frame.
 */
int ws_parser_at_boundary(const struct ws_parser *p);

/*
 * Stop at the next frame boundary: from now on ws_parser_feed() takes bytes
 * only up to the end of the frame in progress and then returns WS_BOUNDARY
 * (at once, taking nothing, if none is in progress).  For the origin's
 * direction when a message was blocked: the 1008 close to the client must
 * not land in the middle of one of the origin's frames.
 */
void ws_parser_stop(struct ws_parser *p);

/* The bound on held stream bytes per message: what the relay must be able to buffer. */
uint64_t ws_parser_hold_max(const struct ws_parser *p);
/* After WS_ERROR: a static string saying why, and the close code; NULL and 0 otherwise. */
const char *ws_parser_error(const struct ws_parser *p);
int ws_parser_close_code(const struct ws_parser *p);

/*
 * Sec-WebSocket-Extensions (RFC 6455 9.1, RFC 7692 7.1), one header line at
 * a time: value[0..len), not NUL-terminated.
 *
 * ws_ext_offer: the request's offers.  Adds to *flags WS_EXT_DEFLATE when
 * permessage-deflate is offered and WS_EXT_OTHER when anything else is.
 * Returns 0, or -1 when the value is not an extension list.
 *
 * ws_ext_agreed: the origin's 101.  Zero *d and set both window bits to 15
 * before the first line.  Fills *d from a permessage-deflate element.
 * Returns 0, or -1 when the frames could not be read: a syntax error, an
 * extension other than permessage-deflate (its RSV bits would be unknown),
 * permessage-deflate twice, or an unknown, repeated or invalid parameter
 * (window bits outside 8..15, a value on a no_context_takeover).
 */
#define WS_EXT_DEFLATE 1u
#define WS_EXT_OTHER 2u
int ws_ext_offer(const char *value, size_t len, unsigned *flags);
int ws_ext_agreed(const char *value, size_t len, struct ws_deflate *d);

/*
 * Write a close frame into out: code, then reason (cut at a UTF-8 character
 * boundary to fit 123 bytes; NULL for none).  mask: mask it with a random key,
 * as frames to the origin must be (RFC 6455 5.3); unmasked for the client.
 * Returns its length (at most WS_CLOSE_FRAME_MAX), or 0 if no random key
 * could be had.
 */
size_t ws_close_frame(unsigned char out[WS_CLOSE_FRAME_MAX], int mask, uint16_t code,
                      const char *reason);

/*
 * The DLP kinds (POLICY_DLP_* bits) in a message, with the scanner bodies
 * use (dlp_scan): text and binary alike as the bytes they are, JSON escapes
 * and form encoding undone when the message looks like either, custom
 * patterns too.  The message is already inflated.
 */
unsigned ws_msg_dlp(const struct dlp *d, const struct ws_msg *m);

#endif
