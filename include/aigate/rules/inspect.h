/*
 * Collecting a request body for the personal-data scan (SPEC 5a) while it
 * arrives, without re-reading what was already seen: a Content-Length body
 * is copied once when it is all there (or at the limit); a chunked one is
 * fed to the chunk decoder as each piece comes, only the new bytes each
 * time, its payload kept up to the limit.  The body itself stays in the
 * connection's input buffer, untouched, to be forwarded as it came.
 */
#ifndef AIGATE_INSPECT_H
#define AIGATE_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#include "aigate/http/http_parse.h"

struct evbuffer;
struct dlp;
struct inspect;

enum inspect_rc { INSPECT_MORE = 0, INSPECT_READY = 1 };

/* For a body of kind body (LENGTH with length bytes, or CHUNKED), keeping up to max bytes. */
struct inspect *inspect_new(enum http_body body, uint64_t length, size_t max);
void inspect_free(struct inspect *in);

/*
 * Look at what input holds after the head (head_len bytes).  INSPECT_READY
 * once the whole body, or max bytes of it, or (eof: the client sent all it
 * will) what there is, has been collected; INSPECT_MORE while more must
 * arrive.  Only bytes not seen by an earlier call are looked at.  A chunked
 * body whose framing is broken is ready with what came before the damage
 * (the forwarding refuses it later).  After READY further calls return READY.
 */
int inspect_feed(struct inspect *in, struct evbuffer *input, size_t head_len, int eof);

/*
 * Raw bytes of the body that may have to sit in the input buffer before the
 * collection is complete (the read watermark while waiting): max plus the
 * chunked framing that comes with it.
 */
size_t inspect_raw_max(const struct inspect *in);

/*
 * Scan what was collected (after READY): the POLICY_DLP_* bits found.  The
 * request's codings come from the head h of buffer hb: every
 * Content-Encoding line counts (RFC 9110 5.3: one comma-joined list), then
 * the transfer codings other than the final chunked (applied after them); a
 * repeated Content-Type is trusted as none.
 */
unsigned inspect_scan(struct inspect *in, const struct dlp *d, const char *hb,
                      const struct http_head *h);

#endif
