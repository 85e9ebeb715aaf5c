/*
 * libFuzzer target: the WebSocket frame parser, message assembler and
 * permessage-deflate inflater (ws_parser_feed), and the extension
 * negotiation parsers.
 *
 * Input: two option bytes, then the data.
 *   byte 0, bit 0: permessage-deflate agreed; bit 1: client_no_context_takeover;
 *     bit 2: the origin's direction (unmasked frames, framing only, no callback);
 *     bits 3-4: inspection limit 0, 16, 4096 or 1 MiB;
 *     bit 5: the callback blocks messages holding "BLOCK";
 *     bit 6: the callback runs the DLP scanner on each message (ws_msg_dlp);
 *     bit 7: build mode (below).
 *   byte 1: seeds how the stream is cut into pieces; in build mode, how
 *     messages are fragmented.
 *
 * Raw mode: the data is the client's byte stream.  Oracles beyond the
 * sanitizers: fed in random pieces (each its own exact allocation) it gives
 * the same answer, the same messages (count, lengths, flags, a hash of the
 * payloads) and the same released prefix as fed at once (but for data that
 * turns out not to inflate after a truncated message was passed); the released
 * prefix never shrinks, never passes what was consumed, and a call after
 * the end repeats the answer taking nothing.  The data also goes through
 * ws_ext_offer() and ws_ext_agreed().
 *
 * Build mode: the data is a list of messages separated by 0xff; the target
 * frames them itself (masked, compressed with one deflater when the
 * extension is on, cut into fragments with pings between) and checks that
 * the parser hands back each message exactly (the ones within the limit),
 * with no error, and releases the whole stream.
 */
#include <string.h>
#include <zlib.h>

#include "aigate/ws/ws.h"

#include "fuzz.h"

static const size_t limits[] = {0, 16, 4096, 1 << 20};

struct seen {
    size_t n;
    uint64_t hash; /* FNV-1a over lengths, flags and payloads, in order */
    int block, dlp;
    /* build mode: the expected messages, checked as they come */
    const uint8_t *const *want;
    const size_t *want_len;
    size_t nwant;
};

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static int
on_msg(void *arg, const struct ws_msg *m)
{
    struct seen *s = arg;
    unsigned flags = m->text | m->compressed << 1 | m->truncated << 2;

    FUZZ_CHECK(m->p != NULL);
    if (s->want != NULL) {
        FUZZ_CHECK(s->n < s->nwant);
        if (!m->truncated)
            FUZZ_CHECK(m->len == s->want_len[s->n] && memcmp(m->p, s->want[s->n], m->len) == 0);
        else
            FUZZ_CHECK(m->len < s->want_len[s->n] && memcmp(m->p, s->want[s->n], m->len) == 0);
    }
    s->n++;
    s->hash = fnv(s->hash, &m->len, sizeof(m->len));
    s->hash = fnv(s->hash, &flags, sizeof(flags));
    s->hash = fnv(s->hash, m->p, m->len);
    if (s->dlp)
        (void)ws_msg_dlp(NULL, m);
    return s->block && m->len >= 5 && memmem(m->p, m->len, "BLOCK", 5) != NULL;
}

struct result {
    int rc;
    uint64_t released, consumed;
    int boundary, code;
    struct seen seen;
};

/* Feed data in pieces cut by seed (0: at once). */
static void
run(struct result *r, const struct ws_deflate *pmd, int server, size_t limit, const uint8_t *data,
    size_t size, uint32_t seed, const struct seen *proto)
{
    struct ws_parser *p;
    size_t off = 0;

    memset(r, 0, sizeof(*r));
    r->seen = *proto;
    p = ws_parser_new(server ? WS_FROM_SERVER : WS_FROM_CLIENT, pmd, limit, server ? NULL : on_msg,
                      &r->seen);
    FUZZ_CHECK(p != NULL);
    r->rc = WS_AGAIN;
    do {
        size_t n = size - off, got;
        uint64_t before = ws_parser_released(p);
        uint8_t *piece;

        if (seed != 0) {
            size_t cut = 1 + fuzz_next(&seed) % (fuzz_next(&seed) % 4 == 0 ? 512 : 16);

            n = cut < n ? cut : n;
        }
        piece = malloc(n + 1);
        memcpy(piece, data + off, n);
        r->rc = ws_parser_feed(p, piece, n, &got);
        free(piece);
        FUZZ_CHECK(got <= n);
        FUZZ_CHECK(r->rc != WS_AGAIN || got == n);
        r->consumed += got;
        off += n;
        FUZZ_CHECK(ws_parser_released(p) >= before);
        FUZZ_CHECK(ws_parser_released(p) <= r->consumed);
    } while (r->rc == WS_AGAIN && off < size);
    r->released = ws_parser_released(p);
    r->boundary = ws_parser_at_boundary(p);
    r->code = ws_parser_close_code(p);
    FUZZ_CHECK((r->rc == WS_ERROR) == (ws_parser_error(p) != NULL));
    FUZZ_CHECK(r->rc != WS_BLOCKED || r->boundary);
    if (r->rc != WS_AGAIN) {
        size_t got = 1;

        FUZZ_CHECK(ws_parser_feed(p, data, size, &got) == r->rc && got == 0);
        FUZZ_CHECK(ws_parser_released(p) == r->released);
    }
    ws_parser_free(p);
}

static void
raw_mode(const struct ws_deflate *pmd, int server, size_t limit, const uint8_t *data, size_t size,
         uint32_t seed, const struct seen *proto)
{
    struct result whole, pieces;
    struct ws_deflate agreed;
    unsigned flags = 0;

    run(&whole, pmd, server, limit, data, size, 0, proto);
    run(&pieces, pmd, server, limit, data, size, seed | 1, proto);
    FUZZ_CHECK(whole.rc == pieces.rc && whole.code == pieces.code);
    /*
     * Compressed data that turns bad after a truncated message was passed:
     * how much of it was released before depends on the pieces.
     */
    FUZZ_CHECK((whole.released == pieces.released && whole.boundary == pieces.boundary) ||
               (whole.rc == WS_ERROR && whole.code != WS_CLOSE_PROTOCOL));
    FUZZ_CHECK(whole.seen.n == pieces.seen.n && whole.seen.hash == pieces.seen.hash);
    FUZZ_CHECK(whole.rc != WS_AGAIN || whole.consumed == pieces.consumed);

    memset(&agreed, 0, sizeof(agreed));
    agreed.client_max_window_bits = agreed.server_max_window_bits = 15;
    if (ws_ext_agreed((const char *)data, size, &agreed) == 0 && agreed.on)
        FUZZ_CHECK(agreed.client_max_window_bits >= 8 && agreed.client_max_window_bits <= 15 &&
                   agreed.server_max_window_bits >= 8 && agreed.server_max_window_bits <= 15);
    if (ws_ext_offer((const char *)data, size, &flags) == 0)
        FUZZ_CHECK((flags & ~(WS_EXT_DEFLATE | WS_EXT_OTHER)) == 0);
}

/* ---- build mode ----------------------------------------------------------- */

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void
add(struct buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void
add_frame(struct buf *b, unsigned b0, const uint8_t *payload, size_t n, uint32_t *seed)
{
    uint8_t h[14], mask[4];
    size_t hl = 2;

    for (int k = 0; k < 4; k++)
        mask[k] = (uint8_t)fuzz_next(seed);
    h[0] = (uint8_t)b0;
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int k = 0; k < 8; k++)
            h[2 + k] = (uint8_t)((uint64_t)n >> (56 - 8 * k));
        hl = 10;
    }
    memcpy(h + hl, mask, 4);
    add(b, h, hl + 4);
    for (size_t k = 0; k < n; k++) {
        uint8_t c = payload[k] ^ mask[k & 3];

        add(b, &c, 1);
    }
}

/* One message: compressed if the extension is on, cut in up to four fragments with pings. */
static void
add_message(struct buf *b, z_stream *z, int text, const uint8_t *m, size_t n, uint32_t *seed)
{
    uint8_t *body = (uint8_t *)m, *out = NULL;
    size_t blen = n, off = 0;
    int first = 1;

    if (z != NULL) {
        size_t cap = deflateBound(z, n) + 16;

        out = malloc(cap);
        if (n == 0) {
            out[0] = 0;
            blen = 1;
        } else {
            z->next_in = (uint8_t *)m;
            z->avail_in = (uInt)n;
            z->next_out = out;
            z->avail_out = (uInt)cap;
            FUZZ_CHECK(deflate(z, Z_SYNC_FLUSH) == Z_OK && z->avail_in == 0);
            blen = cap - z->avail_out - 4;
        }
        body = out;
    }
    do {
        size_t k = blen - off;
        int parts = 1 + (int)(fuzz_next(seed) % 4);

        if (parts > 1 && k > 1)
            k = 1 + fuzz_next(seed) % k;
        add_frame(
            b, (off + k == blen ? 0x80 : 0) | (first ? (text ? 1 : 2) | (z != NULL ? 0x40 : 0) : 0),
            body + off, k, seed);
        if (off + k < blen && fuzz_next(seed) % 2)
            add_frame(b, 0x89, (const uint8_t *)"ping", 4, seed);
        off += k;
        first = 0;
    } while (off < blen);
    free(out);
}

static void
build_mode(int deflate_on, int reset, size_t limit, const uint8_t *data, size_t size, uint32_t seed)
{
    struct ws_deflate pmd = {0, 0, 0, 15, 15};
    const uint8_t *msgs[64];
    size_t lens[64], n = 0, off = 0;
    struct seen proto;
    struct result r;
    struct buf b = {0};
    z_stream z;

    while (off <= size && n < 64) {
        const uint8_t *end = memchr(data + off, 0xff, size - off);
        size_t len = end ? (size_t)(end - (data + off)) : size - off;

        msgs[n] = data + off;
        lens[n++] = len;
        off += len + 1;
    }
    pmd.on = deflate_on != 0;
    pmd.client_no_context_takeover = reset != 0;
    memset(&z, 0, sizeof(z));
    if (deflate_on)
        FUZZ_CHECK(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    for (size_t i = 0; i < n; i++) {
        if (deflate_on && reset)
            FUZZ_CHECK(deflateReset(&z) == Z_OK);
        add_message(&b, deflate_on ? &z : NULL, (int)(i % 2), msgs[i], lens[i], &seed);
    }
    if (deflate_on)
        deflateEnd(&z);
    memset(&proto, 0, sizeof(proto));
    proto.want = msgs;
    proto.want_len = lens;
    proto.nwant = n;
    run(&r, &pmd, 0, limit, b.p, b.len, seed | 1, &proto);
    FUZZ_CHECK(r.rc == WS_AGAIN && r.seen.n == n && r.released == b.len);
    free(b.p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ws_deflate pmd = {0, 0, 0, 15, 15};
    struct seen proto;
    size_t limit;
    uint32_t seed;

    if (size < 2 || size > (1 << 20))
        return 0;
    pmd.on = data[0] & 1;
    pmd.client_no_context_takeover = (data[0] >> 1) & 1;
    limit = limits[(data[0] >> 3) & 3];
    seed = data[1] * 2654435761u + 1;
    memset(&proto, 0, sizeof(proto));
    proto.block = (data[0] >> 5) & 1;
    proto.dlp = (data[0] >> 6) & 1;
    if (data[0] & 0x80)
        build_mode(pmd.on, pmd.client_no_context_takeover, limit, data + 2, size - 2, seed);
    else
        raw_mode(&pmd, (data[0] >> 2) & 1, limit, data + 2, size - 2, seed, &proto);
    return 0;
}
