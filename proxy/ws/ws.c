/*
 * WebSocket frames and messages (RFC 6455, RFC 7692); the contract is in
 * include/aigate/ws/ws.h.
 *
 * One state machine per direction.  WS_S_HEAD gathers a frame header (2 to
 * 14 bytes) a byte at a time, checking each byte as it arrives so a bad frame
 * is refused before its payload; WS_S_PAYLOAD walks the payload in whatever
 * pieces the caller has; WS_S_DONE repeats a final answer.  Nothing is copied
 * except what inspection needs: the payload of a held message, unmasked into
 * one buffer (grown by doubling up to the limit, kept for the next message
 * unless it grew large), or unmasked a scratch-full at a time into zlib.
 *
 * Positions are counted from the start of the stream (off); `released` is
 * the prefix the relay may forward.  It moves to `off` after every step
 * except while a data message is held (mode WS_M_HOLD): from the first byte
 * of its first frame until the callback has passed it.  A header is never
 * released half-read, so a refused frame is never partly forwarded.
 *
 * Inflating: one raw inflate stream (window bits 15, which reads whatever
 * window the client negotiated) lives as long as the parser; the payload of
 * an RSV1 message goes in as it arrives, 00 00 ff ff after its last frame
 * (RFC 7692 7.2.2), and the stream is reset after each message when the
 * client agreed not to keep its context.  A block with BFINAL set ends a
 * zlib stream but not the WebSocket's (RFC 7692 7.2.3.4): the stream is
 * restarted with the last 32 KiB of output as its dictionary, so later data
 * can still refer back as the sender's would.
 */
#include "aigate/ws/ws.h"
#include "aigate/rules/dlp.h"

#include <limits.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#define ZLIB_CONST
#include <zlib.h>

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PONG 0xa

#define WS_CONTROL_MAX 125 /* RFC 6455 5.5 */
#define WS_REASON_MAX 123  /* a close payload is a 2-byte code and the reason */
#define WS_BUF_MIN 4096    /* a message buffer's first size */
#define WS_BUF_KEEP 65536  /* a larger one is freed when its message ends */
#define WS_HOLD_SLACK 4096 /* held framing beyond twice the limit */
#define WS_SCRATCH 4096    /* unmasked compressed bytes, or discarded output, per step */
#define WS_WINDOW 32768    /* the largest deflate window (RFC 1951) */

enum ws_state { WS_S_HEAD, WS_S_PAYLOAD, WS_S_DONE };

/* What happens to the data message in progress. */
enum ws_mode {
    WS_M_NONE, /* no message in progress */
    WS_M_HOLD, /* collecting it for the callback; its bytes are held */
    WS_M_PASS, /* passed (or not inspected): its bytes go on as they come */
};

struct ws_zs {
    z_stream z;
    unsigned char in[WS_SCRATCH];  /* compressed bytes, unmasked */
    unsigned char out[WS_SCRATCH]; /* output beyond what is inspected */
};

struct ws_parser {
    enum ws_role role;
    struct ws_deflate pmd;
    size_t limit;
    uint64_t hold_max;
    ws_msg_cb cb;
    void *arg;
    struct ws_zs *zs; /* only when inspecting with permessage-deflate */

    enum ws_state state;
    int done_rc; /* what WS_S_DONE answers */
    int stop;    /* ws_parser_stop() */

    /* the frame header being read */
    unsigned char hdr[14];
    unsigned hlen, hneed;

    /* the frame in progress */
    unsigned opcode, fin;
    unsigned char mask[4];
    uint64_t remaining; /* payload bytes still to come */
    uint64_t pos;       /* payload bytes seen, for the mask's phase */

    /* the data message in progress */
    enum ws_mode mode;
    unsigned text : 1, compressed : 1;
    unsigned skip_inflate : 1; /* truncated, and no later message needs the rest */
    unsigned stream_end : 1;   /* the zlib stream ended (BFINAL) with nothing after it yet */
    uint64_t msg_start;        /* offset of its first frame */
    uint64_t inflated;
    unsigned char *buf;
    size_t len, cap;

    /* the stream */
    uint64_t off, released;
    int boundary; /* released ends at a frame boundary */
    const char *error;
    int close_code;
};

static const unsigned char ws_trailer[4] = {0x00, 0x00, 0xff, 0xff};

/* ---- parser life -------------------------------------------------------- */

struct ws_parser *
ws_parser_new(enum ws_role role, const struct ws_deflate *pmd, size_t limit, ws_msg_cb cb,
              void *arg)
{
    struct ws_parser *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->role = role;
    if (pmd != NULL)
        p->pmd = *pmd;
    p->limit = limit;
    p->hold_max =
        limit > (UINT64_MAX - WS_HOLD_SLACK) / 2 ? UINT64_MAX : 2 * (uint64_t)limit + WS_HOLD_SLACK;
    p->cb = cb;
    p->arg = arg;
    p->boundary = 1;
    if (cb != NULL && p->pmd.on) {
        if ((p->zs = calloc(1, sizeof(*p->zs))) == NULL)
            goto fail;
        if (inflateInit2(&p->zs->z, -15) != Z_OK) {
            free(p->zs);
            p->zs = NULL;
            goto fail;
        }
    }
    return p;
fail:
    free(p);
    return NULL;
}

void
ws_parser_free(struct ws_parser *p)
{
    if (p == NULL)
        return;
    if (p->zs != NULL) {
        inflateEnd(&p->zs->z);
        free(p->zs);
    }
    free(p->buf);
    free(p);
}

uint64_t
ws_parser_released(const struct ws_parser *p)
{
    return p->released;
}

int
ws_parser_at_boundary(const struct ws_parser *p)
{
    return p->boundary;
}

void
ws_parser_stop(struct ws_parser *p)
{
    p->stop = 1;
}

uint64_t
ws_parser_hold_max(const struct ws_parser *p)
{
    return p->hold_max;
}

const char *
ws_parser_error(const struct ws_parser *p)
{
    return p->error;
}

int
ws_parser_close_code(const struct ws_parser *p)
{
    return p->close_code;
}

/* ---- steps -------------------------------------------------------------- */

static int
ws_finish(struct ws_parser *p, int rc)
{
    p->state = WS_S_DONE;
    p->done_rc = rc;
    return rc;
}

static int
ws_fail(struct ws_parser *p, int code, const char *why)
{
    p->error = why;
    p->close_code = code;
    return ws_finish(p, WS_ERROR);
}

/* Everything consumed but a header still being read may go on, unless a message is held. */
static void
ws_release(struct ws_parser *p)
{
    if (p->mode == WS_M_HOLD)
        return;
    p->released = p->off - (p->state == WS_S_HEAD ? p->hlen : 0);
    p->boundary = p->state != WS_S_PAYLOAD;
}

/*
 * Hand the message (or what of it was collected) to the callback.  Passed:
 * a truncated message goes on uninspected (WS_M_PASS), a whole one is done.
 */
static int
ws_verdict(struct ws_parser *p, int truncated)
{
    struct ws_msg m;

    memset(&m, 0, sizeof(m));
    m.p = p->buf != NULL ? p->buf : (const unsigned char *)"";
    m.len = p->len;
    m.text = p->text;
    m.compressed = p->compressed;
    m.truncated = truncated != 0;
    if (p->cb(p->arg, &m) != 0)
        return ws_finish(p, WS_BLOCKED);
    p->mode = truncated ? WS_M_PASS : WS_M_NONE;
    if (truncated && p->compressed && p->pmd.client_no_context_takeover)
        p->skip_inflate = 1;
    return WS_AGAIN;
}

/* Room for want more bytes in the message buffer (len + want <= limit). */
static int
ws_grow(struct ws_parser *p, size_t want)
{
    size_t cap;
    unsigned char *nb;

    if (p->cap - p->len >= want)
        return 0;
    cap = p->cap > p->limit / 2 ? p->limit : p->cap * 2;
    if (cap < WS_BUF_MIN)
        cap = WS_BUF_MIN;
    if (cap < p->len + want)
        cap = p->len + want;
    if (cap > p->limit)
        cap = p->limit;
    if ((nb = realloc(p->buf, cap)) == NULL)
        return ws_fail(p, WS_CLOSE_INTERNAL, "out of memory");
    p->buf = nb;
    p->cap = cap;
    return 0;
}

static void
ws_unmask(unsigned char *dst, const unsigned char *src, size_t n, const unsigned char mask[4],
          uint64_t phase)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] ^ mask[(phase + i) & 3];
}

/* Restart the zlib stream after a final block, keeping its window. */
static int
ws_inflate_restart(struct ws_parser *p)
{
    z_stream *z = &p->zs->z;
    unsigned char *dict = malloc(WS_WINDOW);
    uInt dlen = WS_WINDOW;
    int ok;

    if (dict == NULL)
        return ws_fail(p, WS_CLOSE_INTERNAL, "out of memory");
    ok = inflateGetDictionary(z, dict, &dlen) == Z_OK && inflateReset(z) == Z_OK &&
         (dlen == 0 || inflateSetDictionary(z, dict, dlen) == Z_OK);
    free(dict);
    return ok ? 0 : ws_fail(p, WS_CLOSE_INTERNAL, "inflate restart failed");
}

/*
 * Inflate in[0..n): into the message buffer while collecting and it has room,
 * else into scratch (the first byte there makes the message truncated).
 */
static int
ws_inflate(struct ws_parser *p, const unsigned char *in, size_t n)
{
    z_stream *z = &p->zs->z;

    z->next_in = in;
    z->avail_in = (uInt)n;
    for (;;) {
        int collect = p->mode == WS_M_HOLD && p->len < p->limit, zrc, rc;
        unsigned char *out = p->zs->out;
        size_t room = sizeof(p->zs->out), got;

        if (p->skip_inflate)
            return WS_AGAIN;
        if (collect) {
            if (ws_grow(p, 1) < 0)
                return WS_ERROR;
            out = p->buf + p->len;
            room = p->cap - p->len;
            if (room > UINT_MAX)
                room = UINT_MAX;
        }
        z->next_out = out;
        z->avail_out = (uInt)room;
        zrc = inflate(z, Z_SYNC_FLUSH);
        got = room - z->avail_out;
        if ((p->inflated += got) > WS_INFLATE_MAX)
            return ws_fail(p, WS_CLOSE_TOO_BIG, "message inflates beyond WS_INFLATE_MAX");
        if (collect)
            p->len += got;
        else if (got > 0 && p->mode == WS_M_HOLD && (rc = ws_verdict(p, 1)) != WS_AGAIN)
            return rc;
        /* Truncated, the rest unread: whatever zlib found further on is no matter. */
        if (p->skip_inflate)
            return WS_AGAIN;
        if (zrc == Z_STREAM_END) {
            if (ws_inflate_restart(p) < 0)
                return WS_ERROR;
            p->stream_end = z->avail_in == 0;
            if (p->stream_end)
                return WS_AGAIN;
            continue;
        }
        if (zrc == Z_BUF_ERROR && z->avail_in == 0)
            return WS_AGAIN;
        if (zrc != Z_OK)
            return ws_fail(p, WS_CLOSE_BAD_DATA, "permessage-deflate data does not inflate");
        if (z->avail_in == 0 && z->avail_out > 0)
            return WS_AGAIN;
    }
}

/* Payload bytes of a data frame: collected, inflated, or neither. */
static int
ws_data(struct ws_parser *p, const unsigned char *in, size_t n)
{
    size_t room, take;
    int rc;

    if (p->compressed && p->zs != NULL) {
        for (size_t done = 0; done < n && !p->skip_inflate;) {
            take = n - done < WS_SCRATCH ? n - done : WS_SCRATCH;
            ws_unmask(p->zs->in, in + done, take, p->mask, p->pos + done);
            p->stream_end = 0;
            if ((rc = ws_inflate(p, p->zs->in, take)) != WS_AGAIN)
                return rc;
            done += take;
        }
        return WS_AGAIN;
    }
    if (p->mode != WS_M_HOLD)
        return WS_AGAIN;
    room = p->limit - p->len;
    take = n < room ? n : room;
    if (take > 0) {
        if (ws_grow(p, take) < 0)
            return WS_ERROR;
        ws_unmask(p->buf + p->len, in, take, p->mask, p->pos);
        p->len += take;
    }
    return take < n ? ws_verdict(p, 1) : WS_AGAIN;
}

/* One header byte; each is checked as soon as it can be. */
static int
ws_head_byte(struct ws_parser *p, unsigned char c)
{
    unsigned op = p->hdr[0] & 0x0f, len7;

    p->hdr[p->hlen++] = c;
    if (p->hlen == 1) {
        op = c & 0x0f;
        if (c & 0x30)
            return ws_fail(p, WS_CLOSE_PROTOCOL, "RSV2 or RSV3 set");
        if ((op > WS_OP_BINARY && op < WS_OP_CLOSE) || op > WS_OP_PONG)
            return ws_fail(p, WS_CLOSE_PROTOCOL, "reserved opcode");
        if (op >= WS_OP_CLOSE && !(c & 0x80))
            return ws_fail(p, WS_CLOSE_PROTOCOL, "fragmented control frame");
        if ((c & 0x40) && !p->pmd.on)
            return ws_fail(p, WS_CLOSE_PROTOCOL, "RSV1 without permessage-deflate");
        if ((c & 0x40) && op != WS_OP_TEXT && op != WS_OP_BINARY)
            return ws_fail(p, WS_CLOSE_PROTOCOL, "RSV1 on a control frame or continuation");
        if (op == WS_OP_CONT && p->mode == WS_M_NONE)
            return ws_fail(p, WS_CLOSE_PROTOCOL, "continuation without a message");
        if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && p->mode != WS_M_NONE)
            return ws_fail(p, WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
        return WS_AGAIN;
    }
    if (p->hlen == 2) {
        len7 = c & 0x7f;
        if (p->role == WS_FROM_CLIENT && !(c & 0x80))
            return ws_fail(p, WS_CLOSE_PROTOCOL, "unmasked client frame");
        if (p->role == WS_FROM_SERVER && (c & 0x80))
            return ws_fail(p, WS_CLOSE_PROTOCOL, "masked server frame");
        if (op >= WS_OP_CLOSE && len7 > WS_CONTROL_MAX)
            return ws_fail(p, WS_CLOSE_PROTOCOL, "control frame over 125 bytes");
        p->hneed = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (c & 0x80 ? 4 : 0);
        return WS_AGAIN;
    }
    if (p->hlen == 3 && (p->hdr[1] & 0x7f) == 127 && (c & 0x80))
        return ws_fail(p, WS_CLOSE_PROTOCOL, "64-bit length with the top bit set");
    return WS_AGAIN;
}

/* The header is whole: take the frame on. */
static void
ws_frame_start(struct ws_parser *p)
{
    unsigned len7 = p->hdr[1] & 0x7f, h = 2;
    uint64_t len = len7;

    if (len7 >= 126) {
        unsigned nb = len7 == 126 ? 2 : 8;

        len = 0;
        for (unsigned k = 0; k < nb; k++)
            len = len << 8 | p->hdr[h++];
    }
    if (p->hdr[1] & 0x80)
        memcpy(p->mask, p->hdr + h, 4);
    else
        memset(p->mask, 0, 4);
    p->opcode = p->hdr[0] & 0x0f;
    p->fin = p->hdr[0] >> 7;
    p->remaining = len;
    p->pos = 0;
    if (p->opcode == WS_OP_TEXT || p->opcode == WS_OP_BINARY) {
        p->mode = p->cb != NULL ? WS_M_HOLD : WS_M_PASS;
        p->text = p->opcode == WS_OP_TEXT;
        p->compressed = (p->hdr[0] & 0x40) != 0;
        p->skip_inflate = 0;
        p->msg_start = p->off - p->hlen;
        p->inflated = 0;
        p->len = 0;
    }
    p->state = WS_S_PAYLOAD;
    p->hlen = 0;
}

static void
ws_msg_end(struct ws_parser *p)
{
    if (p->compressed && p->zs != NULL && p->pmd.client_no_context_takeover)
        inflateReset(&p->zs->z);
    p->mode = WS_M_NONE;
    p->len = 0;
    if (p->cap > WS_BUF_KEEP) {
        free(p->buf);
        p->buf = NULL;
        p->cap = 0;
    }
}

/* The frame's payload is all in. */
static int
ws_frame_end(struct ws_parser *p)
{
    int rc;

    p->state = WS_S_HEAD;
    if (p->opcode == WS_OP_CLOSE) {
        /* A message cut off by the close never completes; what came of it is inspected. */
        if (p->mode == WS_M_HOLD && (rc = ws_verdict(p, 1)) != WS_AGAIN)
            return rc;
        p->mode = WS_M_NONE;
        ws_release(p);
        return ws_finish(p, WS_CLOSED);
    }
    if (p->opcode >= WS_OP_CLOSE || !p->fin)
        return WS_AGAIN;
    /*
     * The trailer completes the empty stored block a sync flush leaves
     * open.  A sender that ended the message with a final block should
     * have added the block's first byte (RFC 7692 7.2.3.4); without it the
     * trailer is no block at all, and is skipped as zlib users do.
     */
    if (p->compressed && p->zs != NULL && !p->stream_end &&
        (rc = ws_inflate(p, ws_trailer, sizeof(ws_trailer))) != WS_AGAIN)
        return rc;
    p->stream_end = 0;
    if (p->mode == WS_M_HOLD && (rc = ws_verdict(p, 0)) != WS_AGAIN)
        return rc;
    ws_msg_end(p);
    return WS_AGAIN;
}

int
ws_parser_feed(struct ws_parser *p, const unsigned char *buf, size_t len, size_t *consumed)
{
    size_t i = 0;
    int rc = WS_AGAIN;

    *consumed = 0;
    if (p->state == WS_S_DONE)
        return p->done_rc;
    for (;;) {
        if (p->mode == WS_M_HOLD && p->off - p->msg_start >= p->hold_max) {
            if ((rc = ws_verdict(p, 1)) != WS_AGAIN)
                break;
            ws_release(p);
        }
        if (p->state == WS_S_HEAD) {
            if (p->stop && p->hlen == 0) {
                rc = ws_finish(p, WS_BOUNDARY);
                break;
            }
            if (i == len)
                break;
            p->off++;
            if ((rc = ws_head_byte(p, buf[i++])) != WS_AGAIN)
                break;
            if (p->hlen < 2 || p->hlen < p->hneed)
                continue;
            ws_frame_start(p);
        } else {
            uint64_t k = len - i;

            if (k == 0 && p->remaining > 0)
                break;
            if (k > p->remaining)
                k = p->remaining;
            if (p->mode == WS_M_HOLD && k > p->hold_max - (p->off - p->msg_start))
                k = p->hold_max - (p->off - p->msg_start);
            if (p->opcode < WS_OP_CLOSE && k > 0 &&
                (rc = ws_data(p, buf + i, (size_t)k)) != WS_AGAIN) {
                i += (size_t)k;
                p->off += k;
                break;
            }
            i += (size_t)k;
            p->off += k;
            p->remaining -= k;
            p->pos += k;
        }
        if (p->state == WS_S_PAYLOAD && p->remaining == 0 && (rc = ws_frame_end(p)) != WS_AGAIN)
            break;
        ws_release(p);
    }
    *consumed = i;
    return rc;
}

/* ---- Sec-WebSocket-Extensions -------------------------------------------- */

struct ws_tok {
    const char *p;
    size_t n;
};

#define WS_EXT_PARAMS 4
#define WS_EXT_VALUE 8

/* One element of an extension list: its name and parameters. */
struct ws_ext_elem {
    struct ws_tok name;
    struct {
        struct ws_tok name;
        char value[WS_EXT_VALUE]; /* unquoted, NUL-terminated; "" when cut */
        int has_value;
    } param[WS_EXT_PARAMS];
    size_t nparam; /* may pass WS_EXT_PARAMS: the others were only checked */
};

/* tchar of RFC 9110 5.6.2. */
static int
ws_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static size_t
ws_ows(const char *v, size_t len, size_t i)
{
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    return i;
}

static int
ws_token(const char *v, size_t len, size_t *i, struct ws_tok *t)
{
    size_t j = *i;

    while (j < len && ws_tchar((unsigned char)v[j]))
        j++;
    if (j == *i)
        return -1;
    t->p = v + *i;
    t->n = j - *i;
    *i = j;
    return 0;
}

/* A parameter value: a token or a quoted-string whose content is a token (RFC 6455 9.1). */
static int
ws_param_value(const char *v, size_t len, size_t *i, char *out)
{
    struct ws_tok t;
    size_t j = *i, n = 0;

    if (j < len && v[j] == '"') {
        for (j++; j < len && v[j] != '"'; j++) {
            if (v[j] == '\\' && ++j == len)
                return -1;
            if (!ws_tchar((unsigned char)v[j]))
                return -1;
            if (n < WS_EXT_VALUE - 1)
                out[n] = v[j];
            n++;
        }
        if (j == len || n == 0)
            return -1;
        *i = j + 1;
    } else {
        if (ws_token(v, len, i, &t) < 0)
            return -1;
        for (n = 0; n < t.n && n < WS_EXT_VALUE - 1; n++)
            out[n] = t.p[n];
        n = t.n;
    }
    out[n < WS_EXT_VALUE ? n : 0] = '\0';
    return 0;
}

/*
 * The next element of the list at *i into e: 1, or 0 at the end, -1 on a
 * syntax error.  Empty elements (",,") are skipped (RFC 9110 5.6.1).
 */
static int
ws_ext_next(const char *v, size_t len, size_t *i, struct ws_ext_elem *e)
{
    size_t j = ws_ows(v, len, *i);

    while (j < len && v[j] == ',')
        j = ws_ows(v, len, j + 1);
    if (j == len) {
        *i = j;
        return 0;
    }
    memset(e, 0, sizeof(*e));
    if (ws_token(v, len, &j, &e->name) < 0)
        return -1;
    for (;;) {
        struct ws_tok pn;
        char value[WS_EXT_VALUE];
        int has_value = 0;

        j = ws_ows(v, len, j);
        if (j == len || v[j] == ',')
            break;
        if (v[j] != ';')
            return -1;
        j = ws_ows(v, len, j + 1);
        if (ws_token(v, len, &j, &pn) < 0)
            return -1;
        j = ws_ows(v, len, j);
        if (j < len && v[j] == '=') {
            j = ws_ows(v, len, j + 1);
            if (ws_param_value(v, len, &j, value) < 0)
                return -1;
            has_value = 1;
        }
        if (e->nparam < WS_EXT_PARAMS) {
            e->param[e->nparam].name = pn;
            e->param[e->nparam].has_value = has_value;
            if (has_value)
                memcpy(e->param[e->nparam].value, value, sizeof(value));
        }
        e->nparam++;
    }
    *i = j;
    return 1;
}

static int
ws_tok_is(struct ws_tok t, const char *s)
{
    return t.n == strlen(s) && strncasecmp(t.p, s, t.n) == 0;
}

int
ws_ext_offer(const char *value, size_t len, unsigned *flags)
{
    struct ws_ext_elem e;
    size_t i = 0;
    int rc;

    while ((rc = ws_ext_next(value, len, &i, &e)) == 1)
        *flags |= ws_tok_is(e.name, "permessage-deflate") ? WS_EXT_DEFLATE : WS_EXT_OTHER;
    return rc;
}

/* Window bits: "8" to "15" exactly (RFC 7692 7.1.2). */
static int
ws_window_bits(const char *s)
{
    if (s[0] >= '8' && s[0] <= '9' && s[1] == '\0')
        return s[0] - '0';
    if (s[0] == '1' && s[1] >= '0' && s[1] <= '5' && s[2] == '\0')
        return 10 + s[1] - '0';
    return -1;
}

int
ws_ext_agreed(const char *value, size_t len, struct ws_deflate *d)
{
    struct ws_ext_elem e;
    size_t i = 0;
    int rc;

    while ((rc = ws_ext_next(value, len, &i, &e)) == 1) {
        unsigned seen = 0;

        if (!ws_tok_is(e.name, "permessage-deflate") || d->on || e.nparam > WS_EXT_PARAMS)
            return -1;
        d->on = 1;
        for (size_t k = 0; k < e.nparam; k++) {
            static const char *const names[] = {"client_no_context_takeover",
                                                "server_no_context_takeover",
                                                "client_max_window_bits", "server_max_window_bits"};
            unsigned n;
            int bits = -1;

            for (n = 0; n < 4 && !ws_tok_is(e.param[k].name, names[n]); n++)
                ;
            if (n == 4 || (seen & 1u << n) || e.param[k].has_value != (n >= 2))
                return -1;
            seen |= 1u << n;
            if (n >= 2 && (bits = ws_window_bits(e.param[k].value)) < 0)
                return -1;
            if (n == 0)
                d->client_no_context_takeover = 1;
            else if (n == 1)
                d->server_no_context_takeover = 1;
            else if (n == 2)
                d->client_max_window_bits = (uint8_t)bits;
            else
                d->server_max_window_bits = (uint8_t)bits;
        }
    }
    return rc;
}

/* ---- close frames and inspection ---------------------------------------- */

size_t
ws_close_frame(unsigned char out[WS_CLOSE_FRAME_MAX], int mask, uint16_t code, const char *reason)
{
    size_t rl = reason != NULL ? strlen(reason) : 0, n, h = 2;
    unsigned char key[4];

    if (rl > WS_REASON_MAX) {
        rl = WS_REASON_MAX;
        while (rl > 0 && ((unsigned char)reason[rl] & 0xc0) == 0x80)
            rl--;
    }
    n = 2 + rl;
    out[0] = 0x80 | WS_OP_CLOSE;
    out[1] = (unsigned char)((mask ? 0x80 : 0) | n);
    if (mask) {
        if (RAND_bytes(key, sizeof(key)) != 1)
            return 0;
        memcpy(out + h, key, sizeof(key));
        h += sizeof(key);
    }
    out[h] = (unsigned char)(code >> 8);
    out[h + 1] = (unsigned char)code;
    if (rl > 0)
        memcpy(out + h + 2, reason, rl);
    if (mask)
        ws_unmask(out + h, out + h, n, key, 0);
    return h + n;
}

unsigned
ws_msg_dlp(const struct dlp *d, const struct ws_msg *m)
{
    return dlp_scan(d, (const char *)m->p, m->len, NULL, 0, NULL, 0, m->len);
}
