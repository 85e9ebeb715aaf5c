/*
 * WebSocket frames and messages: every frame shape fed whole, split at every
 * byte and byte by byte; masking; control frames inside fragmented messages;
 * what is released when; malformed frames; permessage-deflate with and
 * without context takeover, a final block inside a message, the deflate bomb
 * bound; the inspection and hold limits; blocking; extension negotiation;
 * close frames; DLP kinds found in messages (split across fragments and
 * compressed too).
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <zlib.h>

#include "aigate/rules/dlp.h"
#include "aigate/rules/policy.h"
#include "aigate/ws/ws.h"
#include "wsframe.h"

#define LIMIT (1024 * 1024)
#define MAXMSG 16

/* ---- building streams ---------------------------------------------------- */

struct stream {
    unsigned char *p;
    size_t len, cap;
};

static void
put(struct stream *s, const void *p, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2 + 64;
        s->p = realloc(s->p, s->cap);
        ck_assert_ptr_nonnull(s->p);
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
}

static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Append a frame (wsframe.h), masked with key unless mask is 0. */
static void
frame_ex(struct stream *s, unsigned b0, int mask, int wide, const void *payload, size_t n)
{
    unsigned char *f = malloc(14 + n);

    ck_assert_ptr_nonnull(f);
    put(s, f, wsframe(f, b0, mask ? key : NULL, wide, payload, n));
    free(f);
}

static void
frame(struct stream *s, unsigned b0, const void *payload, size_t n)
{
    frame_ex(s, b0, 1, 0, payload, n);
}

static void
frame_str(struct stream *s, unsigned b0, const char *text)
{
    frame(s, b0, text, strlen(text));
}

/*
 * Raw deflate with a sync flush, the trailing 00 00 ff ff removed (RFC 7692
 * 7.2.1); an empty message is the single byte 00 (RFC 7692 7.2.3.6).
 */
static size_t
compress_msg(z_stream *z, const void *in, size_t n, unsigned char *out, size_t cap)
{
    if (n == 0) {
        out[0] = 0x00;
        return 1;
    }
    z->next_in = (unsigned char *)in;
    z->avail_in = (uInt)n;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(z, Z_SYNC_FLUSH), Z_OK);
    ck_assert_uint_eq(z->avail_in, 0);
    n = cap - z->avail_out;
    ck_assert(n >= 4 && memcmp(out + n - 4, "\x00\x00\xff\xff", 4) == 0);
    return n - 4;
}

static void
deflater(z_stream *z)
{
    memset(z, 0, sizeof(*z));
    ck_assert_int_eq(deflateInit2(z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
}

/* ---- running the parser -------------------------------------------------- */

struct msg {
    unsigned char *p;
    size_t len;
    int text, compressed, truncated;
};

struct run {
    struct msg m[MAXMSG];
    int n;
    int block;    /* block messages whose payload contains "BLOCK" */
    int rc;       /* last feed's answer */
    size_t taken; /* bytes consumed in all */
    uint64_t released;
    int boundary;
    const char *error;
    int code;
};

static int
on_msg(void *arg, const struct ws_msg *m)
{
    struct run *r = arg;
    struct msg *x;

    ck_assert_int_lt(r->n, MAXMSG);
    x = &r->m[r->n++];
    x->p = malloc(m->len + 1);
    memcpy(x->p, m->p, m->len);
    x->len = m->len;
    x->text = m->text;
    x->compressed = m->compressed;
    x->truncated = m->truncated;
    return r->block && memmem(m->p, m->len, "BLOCK", 5) != NULL;
}

static void
run_free(struct run *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->m[i].p);
}

static const struct ws_deflate no_ext = {0, 0, 0, 15, 15};
static const struct ws_deflate pmd_keep = {1, 0, 0, 15, 15};
static const struct ws_deflate pmd_reset = {1, 1, 1, 15, 15};

/*
 * Feed s to a new parser in pieces: cuts[] are the piece ends (ascending,
 * the last one s->len).  Each piece is its own allocation.  Stops at the
 * first answer that is not WS_AGAIN, after checking a further call repeats it.
 */
static void
feed_cuts(struct run *r, const struct stream *s, const struct ws_deflate *pmd, size_t limit,
          const size_t *cuts, size_t ncuts)
{
    struct ws_parser *p = ws_parser_new(WS_FROM_CLIENT, pmd, limit, on_msg, r);
    size_t from = 0;
    int block = r->block;

    memset(r, 0, sizeof(*r));
    r->block = block;
    r->rc = WS_AGAIN;
    ck_assert_ptr_nonnull(p);
    for (size_t c = 0; c < ncuts && r->rc == WS_AGAIN; c++) {
        size_t n = cuts[c] - from, got;
        unsigned char *piece = malloc(n + 1);

        memcpy(piece, s->p + from, n);
        r->rc = ws_parser_feed(p, piece, n, &got);
        free(piece);
        ck_assert_uint_le(got, n);
        ck_assert(r->rc != WS_AGAIN || got == n);
        ck_assert_uint_le(ws_parser_released(p), r->taken + got);
        r->taken += got;
        from = cuts[c];
    }
    r->released = ws_parser_released(p);
    r->boundary = ws_parser_at_boundary(p);
    r->error = ws_parser_error(p);
    r->code = ws_parser_close_code(p);
    if (r->rc != WS_AGAIN) {
        size_t got = 1;

        ck_assert_int_eq(ws_parser_feed(p, s->p, s->len, &got), r->rc);
        ck_assert_uint_eq(got, 0);
        ck_assert_uint_eq(ws_parser_released(p), r->released);
    }
    ck_assert((r->rc == WS_ERROR) == (r->error != NULL));
    ws_parser_free(p);
}

static void
feed_whole(struct run *r, const struct stream *s, const struct ws_deflate *pmd, size_t limit)
{
    size_t cut = s->len;

    feed_cuts(r, s, pmd, limit, &cut, 1);
}

static void
same_run(const struct run *a, const struct run *b, const char *how)
{
    ck_assert_msg(a->rc == b->rc && a->n == b->n && a->released == b->released &&
                      a->boundary == b->boundary && a->code == b->code,
                  "%s: rc %d/%d, %d/%d messages, released %llu/%llu, boundary %d/%d", how, a->rc,
                  b->rc, a->n, b->n, (unsigned long long)a->released,
                  (unsigned long long)b->released, a->boundary, b->boundary);
    if (a->rc == WS_AGAIN)
        ck_assert_uint_eq(a->taken, b->taken);
    for (int i = 0; i < a->n; i++) {
        ck_assert_msg(a->m[i].len == b->m[i].len && a->m[i].text == b->m[i].text &&
                          a->m[i].truncated == b->m[i].truncated &&
                          memcmp(a->m[i].p, b->m[i].p, a->m[i].len) == 0,
                      "%s: message %d differs", how, i);
    }
}

/*
 * Feed s whole, then split in two at every byte, then byte by byte (for
 * streams up to a few KiB), checking every way gives the same messages,
 * answer and release.  *r is the whole run.
 */
static void
feed_all_ways(struct run *r, const struct stream *s, const struct ws_deflate *pmd, size_t limit)
{
    struct run x;
    size_t *cuts;

    feed_whole(r, s, pmd, limit);
    if (s->len > 4096)
        return;
    x.block = r->block;
    for (size_t at = 0; at <= s->len; at++) {
        size_t two[2] = {at, s->len};

        feed_cuts(&x, s, pmd, limit, two, 2);
        same_run(r, &x, "split");
        run_free(&x);
    }
    cuts = malloc((s->len + 1) * sizeof(*cuts));
    for (size_t k = 0; k < s->len; k++)
        cuts[k] = k + 1;
    feed_cuts(&x, s, pmd, limit, cuts, s->len);
    same_run(r, &x, "byte by byte");
    run_free(&x);
    free(cuts);
}

static void
expect_msg(const struct run *r, int i, int text, const void *payload, size_t len, int truncated)
{
    ck_assert_int_gt(r->n, i);
    ck_assert_int_eq(r->m[i].text, text);
    ck_assert_int_eq(r->m[i].truncated, truncated);
    ck_assert_uint_eq(r->m[i].len, len);
    ck_assert(memcmp(r->m[i].p, payload, len) == 0);
}

static unsigned char *
pattern(size_t n)
{
    unsigned char *b = malloc(n + 1);

    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 7 + (i >> 8));
    return b;
}

/* ---- frames --------------------------------------------------------------- */

START_TEST(frame_shapes)
{
    static const size_t sizes[] = {0, 1, 125, 126, 127, 1000, 65535, 65536, 70000};
    static const int widths[] = {0, 16, 64}; /* shortest, 16-bit, 64-bit length */

    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (size_t w = 0; w < 3; w++) {
            int wide = widths[w];
            unsigned char *b;
            struct stream s = {0};
            struct run r = {0};

            if (wide == 16 && sizes[k] >= 65536)
                continue;
            b = pattern(sizes[k]);
            frame_ex(&s, FIN | (k % 2 ? OP_BIN : OP_TEXT), 1, wide, b, sizes[k]);
            feed_all_ways(&r, &s, &no_ext, LIMIT);
            ck_assert_int_eq(r.rc, WS_AGAIN);
            ck_assert_int_eq(r.n, 1);
            expect_msg(&r, 0, k % 2 == 0, b, sizes[k], 0);
            ck_assert_uint_eq(r.released, s.len);
            ck_assert_int_eq(r.boundary, 1);
            run_free(&r);
            free(s.p);
            free(b);
        }
    }
}
END_TEST

/* Several messages in one stream, text and binary, with pings and pongs between. */
START_TEST(several_messages)
{
    struct stream s = {0};
    struct run r = {0};

    frame_str(&s, FIN | OP_TEXT, "hello");
    frame_str(&s, FIN | OP_PING, "are you there");
    frame(&s, FIN | OP_BIN, "\x00\x01\x02", 3);
    frame_str(&s, FIN | OP_PONG, "");
    frame_str(&s, FIN | OP_TEXT, "");
    frame_str(&s, FIN | OP_TEXT, "{\"text\":\"\xec\x95\x88\xeb\x85\x95\"}");
    feed_all_ways(&r, &s, &no_ext, LIMIT);
    ck_assert_int_eq(r.rc, WS_AGAIN);
    ck_assert_int_eq(r.n, 4);
    expect_msg(&r, 0, 1, "hello", 5, 0);
    expect_msg(&r, 1, 0, "\x00\x01\x02", 3, 0);
    expect_msg(&r, 2, 1, "", 0, 0);
    expect_msg(&r, 3, 1, "{\"text\":\"\xec\x95\x88\xeb\x85\x95\"}", 17, 0);
    ck_assert_uint_eq(r.released, s.len);
    run_free(&r);
    free(s.p);
}
END_TEST

/* Fragments, each with its own mask, and control frames between them. */
START_TEST(fragmented_with_control_frames)
{
    struct stream s = {0};
    struct run r = {0};

    frame_str(&s, OP_TEXT, "The quick ");
    frame_str(&s, FIN | OP_PING, "p");
    frame_str(&s, OP_CONT, "");
    frame_str(&s, OP_CONT, "brown fox ");
    frame_str(&s, FIN | OP_PONG, "q");
    frame_str(&s, FIN | OP_CONT, "jumps");
    frame_str(&s, FIN | OP_BIN, "next");
    feed_all_ways(&r, &s, &no_ext, LIMIT);
    ck_assert_int_eq(r.rc, WS_AGAIN);
    ck_assert_int_eq(r.n, 2);
    expect_msg(&r, 0, 1, "The quick brown fox jumps", 25, 0);
    expect_msg(&r, 1, 0, "next", 4, 0);
    run_free(&r);
    free(s.p);
}
END_TEST

/* What may be forwarded, step by step. */
START_TEST(release_points)
{
    struct stream s = {0};
    struct ws_parser *p;
    struct run r = {0};
    size_t got, ping_end, first, cont_end, last_end;

    frame_str(&s, FIN | OP_PING, "x");
    ping_end = s.len;
    frame_str(&s, OP_TEXT, "abc");
    first = s.len;
    frame_str(&s, FIN | OP_PING, "y");
    frame_str(&s, OP_CONT, "def");
    cont_end = s.len;
    frame_str(&s, FIN | OP_CONT, "g");
    last_end = s.len;
    frame(&s, FIN | OP_PING, "0123456789", 10);

    p = ws_parser_new(WS_FROM_CLIENT, NULL, LIMIT, on_msg, &r);
    /* half a ping header: nothing */
    ck_assert_int_eq(ws_parser_feed(p, s.p, 1, &got), WS_AGAIN);
    ck_assert_uint_eq(ws_parser_released(p), 0);
    /* the ping: all of it, at a boundary */
    ck_assert_int_eq(ws_parser_feed(p, s.p + 1, ping_end - 1, &got), WS_AGAIN);
    ck_assert_uint_eq(ws_parser_released(p), ping_end);
    ck_assert_int_eq(ws_parser_at_boundary(p), 1);
    /* a message's frames and the control frames among them are held */
    ck_assert_int_eq(ws_parser_feed(p, s.p + ping_end, first - ping_end, &got), WS_AGAIN);
    ck_assert_int_eq(ws_parser_feed(p, s.p + first, cont_end - first, &got), WS_AGAIN);
    ck_assert_uint_eq(ws_parser_released(p), ping_end);
    ck_assert_int_eq(r.n, 0);
    /* the last fragment passes them all */
    ck_assert_int_eq(ws_parser_feed(p, s.p + cont_end, last_end - cont_end, &got), WS_AGAIN);
    ck_assert_int_eq(r.n, 1);
    expect_msg(&r, 0, 1, "abcdefg", 7, 0);
    ck_assert_uint_eq(ws_parser_released(p), last_end);
    /* a control frame's header once whole, its payload as it comes */
    ck_assert_int_eq(ws_parser_feed(p, s.p + last_end, 5, &got), WS_AGAIN);
    ck_assert_uint_eq(ws_parser_released(p), last_end);
    ck_assert_int_eq(ws_parser_feed(p, s.p + last_end + 5, 3, &got), WS_AGAIN);
    ck_assert_uint_eq(ws_parser_released(p), last_end + 8);
    ck_assert_int_eq(ws_parser_at_boundary(p), 0);
    ck_assert_int_eq(ws_parser_feed(p, s.p + last_end + 8, s.len - last_end - 8, &got), WS_AGAIN);
    ck_assert_uint_eq(ws_parser_released(p), s.len);
    ck_assert_int_eq(ws_parser_at_boundary(p), 1);
    ws_parser_free(p);
    run_free(&r);
    free(s.p);
}
END_TEST

/* Good frames then a malformed one: an error, only released bytes released. */
static void
expect_bad(const struct stream *good, size_t released, const unsigned char *bad, size_t badlen,
           const struct ws_deflate *pmd, int code, const char *why)
{
    struct stream s = {0};
    struct run r = {0};

    put(&s, good->p, good->len);
    put(&s, bad, badlen);
    feed_all_ways(&r, &s, pmd, LIMIT);
    ck_assert_int_eq(r.rc, WS_ERROR);
    ck_assert_msg(strstr(r.error, why) != NULL, "\"%s\" for %s", r.error, why);
    ck_assert_int_eq(r.code, code);
    ck_assert_uint_eq(r.released, released);
    ck_assert_int_eq(r.boundary, 1);
    run_free(&r);
    free(s.p);
}

START_TEST(bad_frames)
{
    struct stream good = {0}, frag = {0};

    frame_str(&good, FIN | OP_TEXT, "fine");
    frame_str(&frag, FIN | OP_TEXT, "fine");
    frame_str(&frag, OP_TEXT, "part");
#define BAD(g, pmd, code, why, ...)                                                                \
    do {                                                                                           \
        static const unsigned char b_[] = {__VA_ARGS__};                                           \
        expect_bad(g, (g)->len < 20 ? (g)->len : 10, b_, sizeof(b_), pmd, code, why);              \
    } while (0)
    BAD(&good, &no_ext, 1002, "unmasked client frame", 0x81, 0x02, 'h', 'i');
    BAD(&good, &no_ext, 1002, "RSV1 without permessage-deflate", 0xc1, 0x80, 1, 2, 3, 4);
    BAD(&good, &no_ext, 1002, "RSV2 or RSV3", 0xa1, 0x80, 1, 2, 3, 4);
    BAD(&good, &no_ext, 1002, "RSV2 or RSV3", 0x91, 0x80, 1, 2, 3, 4);
    BAD(&good, &no_ext, 1002, "reserved opcode", 0x83, 0x80, 1, 2, 3, 4);
    BAD(&good, &no_ext, 1002, "reserved opcode", 0x8b, 0x80, 1, 2, 3, 4);
    BAD(&good, &no_ext, 1002, "control frame over 125", 0x89, 0xfe, 0x00, 0x7e);
    BAD(&good, &no_ext, 1002, "fragmented control", 0x09, 0x80, 1, 2, 3, 4);
    BAD(&good, &no_ext, 1002, "continuation without a message", 0x80, 0x80, 1, 2, 3, 4);
    BAD(&good, &no_ext, 1002, "continuation without a message", 0x00, 0x80, 1, 2, 3, 4);
    BAD(&good, &no_ext, 1002, "top bit", 0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0);
    BAD(&good, &pmd_keep, 1002, "RSV1 on a control", 0xc9, 0x80, 1, 2, 3, 4);
    /* inside a fragmented message: the message is held, so only "fine" is released */
    BAD(&frag, &no_ext, 1002, "new message inside", 0x81, 0x80, 1, 2, 3, 4);
    BAD(&frag, &no_ext, 1002, "new message inside", 0x02, 0x80, 1, 2, 3, 4);
    BAD(&frag, &pmd_keep, 1002, "RSV1 on a control frame or continuation", 0xc0, 0x80, 1, 2, 3, 4);
#undef BAD
    free(good.p);
    free(frag.p);
}
END_TEST

/* The held part of a message that turns bad is never released. */
START_TEST(bad_inside_held_message)
{
    struct stream s = {0};
    struct run r = {0};
    size_t before;

    frame_str(&s, FIN | OP_TEXT, "fine");
    before = s.len;
    frame_str(&s, OP_TEXT, "900101-");
    frame_str(&s, FIN | OP_PING, "");
    put(&s, "\x80\x05", 2); /* unmasked continuation */
    feed_all_ways(&r, &s, &no_ext, LIMIT);
    ck_assert_int_eq(r.rc, WS_ERROR);
    ck_assert_uint_eq(r.released, before);
    ck_assert_int_eq(r.n, 1);
    run_free(&r);
    free(s.p);
}
END_TEST

/* The largest lengths parse (the frame just never ends here). */
START_TEST(huge_lengths)
{
    static const unsigned char h[] = {0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 1,    2,    3,    4,    0xaa, 0xbb};
    struct stream s = {0};
    struct run r = {0};

    put(&s, h, sizeof(h));
    feed_all_ways(&r, &s, &no_ext, 8);
    ck_assert_int_eq(r.rc, WS_AGAIN);
    ck_assert_int_eq(r.n, 0);
    ck_assert_uint_eq(r.released, 0);
    run_free(&r);
    free(s.p);
}
END_TEST

START_TEST(close_ends_the_stream)
{
    struct stream s = {0};
    struct run r = {0};
    size_t end;

    frame_str(&s, FIN | OP_TEXT, "bye");
    frame(&s, FIN | OP_CLOSE, "\x03\xe8", 2);
    end = s.len;
    frame_str(&s, FIN | OP_TEXT, "after the close");
    feed_all_ways(&r, &s, &no_ext, LIMIT);
    ck_assert_int_eq(r.rc, WS_CLOSED);
    ck_assert_uint_eq(r.taken, end);
    ck_assert_uint_eq(r.released, end);
    ck_assert_int_eq(r.n, 1);
    run_free(&r);
    free(s.p);

    /* a close inside a fragmented message: what came of the message is inspected */
    memset(&s, 0, sizeof(s));
    frame_str(&s, OP_TEXT, "half a ");
    frame_str(&s, FIN | OP_CLOSE, "");
    feed_all_ways(&r, &s, &no_ext, LIMIT);
    ck_assert_int_eq(r.rc, WS_CLOSED);
    ck_assert_int_eq(r.n, 1);
    expect_msg(&r, 0, 1, "half a ", 7, 1);
    ck_assert_uint_eq(r.released, s.len);
    run_free(&r);
    r.block = 1;
    free(s.p);
    memset(&s, 0, sizeof(s));
    frame_str(&s, OP_TEXT, "BLOCK");
    frame_str(&s, FIN | OP_CLOSE, "");
    feed_all_ways(&r, &s, &no_ext, LIMIT);
    ck_assert_int_eq(r.rc, WS_BLOCKED);
    ck_assert_uint_eq(r.released, 0);
    run_free(&r);
    free(s.p);
}
END_TEST

START_TEST(blocking)
{
    struct stream s = {0};
    struct run r = {0};
    size_t before;

    frame_str(&s, FIN | OP_TEXT, "ok");
    frame_str(&s, FIN | OP_PING, "");
    before = s.len;
    frame_str(&s, OP_TEXT, "this is ");
    frame_str(&s, FIN | OP_PING, "");
    frame_str(&s, OP_CONT, "BLO");
    frame_str(&s, FIN | OP_CONT, "CKED");
    frame_str(&s, FIN | OP_TEXT, "never seen");
    r.block = 1;
    feed_all_ways(&r, &s, &no_ext, LIMIT);
    ck_assert_int_eq(r.rc, WS_BLOCKED);
    ck_assert_int_eq(r.n, 2);
    expect_msg(&r, 1, 1, "this is BLOCKED", 15, 0);
    ck_assert_uint_eq(r.released, before);
    ck_assert_int_eq(r.boundary, 1);
    run_free(&r);
    free(s.p);
}
END_TEST

/* Beyond the inspection limit: the prefix is inspected, the rest goes on. */
START_TEST(inspection_limit)
{
    unsigned char *b = pattern(1000);
    struct stream s = {0};
    struct run r = {0};

    frame(&s, OP_BIN, b, 60);
    frame(&s, FIN | OP_CONT, b + 60, 940);
    frame_str(&s, FIN | OP_TEXT, "small");
    feed_all_ways(&r, &s, &no_ext, 100);
    ck_assert_int_eq(r.rc, WS_AGAIN);
    ck_assert_int_eq(r.n, 2);
    expect_msg(&r, 0, 0, b, 100, 1);
    expect_msg(&r, 1, 1, "small", 5, 0);
    ck_assert_uint_eq(r.released, s.len);
    run_free(&r);
    free(s.p);

    /* exactly the limit is not truncated */
    memset(&s, 0, sizeof(s));
    frame(&s, FIN | OP_BIN, b, 100);
    feed_all_ways(&r, &s, &no_ext, 100);
    expect_msg(&r, 0, 0, b, 100, 0);
    run_free(&r);
    free(s.p);

    /* a limit of 0: every non-empty message is truncated at once */
    memset(&s, 0, sizeof(s));
    frame(&s, FIN | OP_BIN, b, 10);
    frame(&s, FIN | OP_BIN, b, 0);
    feed_all_ways(&r, &s, &no_ext, 0);
    ck_assert_int_eq(r.n, 2);
    expect_msg(&r, 0, 0, b, 0, 1);
    expect_msg(&r, 1, 0, b, 0, 0);
    run_free(&r);
    free(s.p);
    free(b);
}
END_TEST

/* Framing that holds no payload (empty fragments) cannot be held without bound. */
START_TEST(hold_limit)
{
    struct stream s = {0};
    struct run r = {0};
    struct ws_parser *p = ws_parser_new(WS_FROM_CLIENT, NULL, 10, on_msg, &r);
    uint64_t hold = ws_parser_hold_max(p);
    size_t got;

    ws_parser_free(p);
    ck_assert_uint_eq(hold, 2 * 10 + 4096);
    frame_str(&s, OP_TEXT, "abc");
    while (s.len < hold + 600) {
        frame_str(&s, OP_CONT, "");
        frame_str(&s, FIN | OP_PING, "");
    }
    frame_str(&s, FIN | OP_CONT, "BLOCK");
    r.block = 1;
    feed_whole(&r, &s, &no_ext, 10);
    ck_assert_int_eq(r.rc, WS_AGAIN);
    ck_assert_int_eq(r.n, 1);
    expect_msg(&r, 0, 1, "abc", 3, 1);
    ck_assert_uint_eq(r.released, s.len);
    run_free(&r);

    /* fed byte by byte, the verdict comes when the hold is full, not later */
    p = ws_parser_new(WS_FROM_CLIENT, NULL, 10, on_msg, &r);
    memset(&r, 0, sizeof(r));
    for (size_t i = 0; i < s.len && r.n == 0; i++) {
        ck_assert_int_eq(ws_parser_feed(p, s.p + i, 1, &got), WS_AGAIN);
        ck_assert_uint_le(i + 1 - ws_parser_released(p), hold + 14);
    }
    ck_assert_int_eq(r.n, 1);
    /* every frame after the first is 6 bytes: a header half read is not released */
    ck_assert_uint_eq((ws_parser_released(p) - 9) % 6, 0);
    ck_assert_uint_eq(ws_parser_released(p), hold - (hold - 9) % 6);
    ws_parser_free(p);
    run_free(&r);
    free(s.p);
}
END_TEST

/* ---- permessage-deflate -------------------------------------------------- */

/* Messages compressed with one deflater (context kept) or a fresh one each. */
static void
deflate_messages(struct stream *s, const char *const *msgs, size_t n, int keep, int fragment)
{
    z_stream z;

    deflater(&z);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(msgs[i]), cap = len + 64, c;
        unsigned char *out = malloc(cap);

        if (!keep)
            ck_assert_int_eq(deflateReset(&z), Z_OK);
        c = compress_msg(&z, msgs[i], len, out, cap);
        if (fragment && c >= 3) {
            frame(s, RSV1 | OP_TEXT, out, 1);
            frame_str(s, FIN | OP_PING, "");
            frame(s, OP_CONT, out + 1, 1);
            frame(s, FIN | OP_CONT, out + 2, c - 2);
        } else {
            frame(s, FIN | RSV1 | OP_TEXT, out, c);
        }
        free(out);
    }
    deflateEnd(&z);
}

static const char *const chat[] = {
    "{\"type\":\"message\",\"text\":\"hello there, how are you today?\"}",
    "{\"type\":\"message\",\"text\":\"hello there, how are you today? fine\"}",
    "{\"type\":\"message\",\"text\":\"hello there, how are you today? fine thanks\"}",
    "",
    "{\"type\":\"message\",\"text\":\"hello there\"}",
};

START_TEST(deflate_context_takeover)
{
    for (int fragment = 0; fragment <= 1; fragment++) {
        struct stream s = {0};
        struct run r = {0};

        deflate_messages(&s, chat, 5, 1, fragment);
        feed_all_ways(&r, &s, &pmd_keep, LIMIT);
        ck_assert_int_eq(r.rc, WS_AGAIN);
        ck_assert_int_eq(r.n, 5);
        for (int i = 0; i < 5; i++) {
            expect_msg(&r, i, 1, chat[i], strlen(chat[i]), 0);
            ck_assert_int_eq(r.m[i].compressed, 1);
        }
        run_free(&r);
        /* the stream refers back: reset between messages, it cannot be read */
        feed_whole(&r, &s, &pmd_reset, LIMIT);
        ck_assert_int_eq(r.rc, WS_ERROR);
        ck_assert_int_eq(r.code, 1007);
        ck_assert_int_eq(r.n, 1);
        run_free(&r);
        free(s.p);
    }
}
END_TEST

START_TEST(deflate_no_context_takeover)
{
    struct stream s = {0};
    struct run r = {0};

    deflate_messages(&s, chat, 5, 0, 1);
    frame_str(&s, FIN | OP_TEXT, "plain, not compressed");
    feed_all_ways(&r, &s, &pmd_reset, LIMIT);
    ck_assert_int_eq(r.rc, WS_AGAIN);
    ck_assert_int_eq(r.n, 6);
    for (int i = 0; i < 5; i++)
        expect_msg(&r, i, 1, chat[i], strlen(chat[i]), 0);
    expect_msg(&r, 5, 1, "plain, not compressed", 21, 0);
    ck_assert_int_eq(r.m[5].compressed, 0);
    run_free(&r);
    /* independent messages read the same with the context kept */
    feed_whole(&r, &s, &pmd_keep, LIMIT);
    ck_assert_int_eq(r.n, 6);
    run_free(&r);
    free(s.p);
}
END_TEST

/*
 * A message ending its zlib stream with a final block, followed (as RFC 7692
 * 7.2.3.4 has it) by the byte 00 or not; the next one still refers back to it.
 */
START_TEST(deflate_final_block)
{
    static const char m1[] = "the same words again and again and again", m2[] = "again and again";

    for (int zero = 0; zero <= 1; zero++) {
        unsigned char out[256];
        struct stream s = {0};
        struct run r = {0};
        z_stream z;
        size_t c;

        deflater(&z);
        z.next_in = (unsigned char *)m1;
        z.avail_in = sizeof(m1) - 1;
        z.next_out = out;
        z.avail_out = sizeof(out) - 1;
        ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
        c = sizeof(out) - 1 - z.avail_out;
        if (zero)
            out[c++] = 0x00;
        frame(&s, RSV1 | OP_TEXT, out, 3);
        frame(&s, FIN | OP_CONT, out + 3, c - 3);
        ck_assert_int_eq(deflateReset(&z), Z_OK);
        ck_assert_int_eq(deflateSetDictionary(&z, (const unsigned char *)m1, sizeof(m1) - 1), Z_OK);
        c = compress_msg(&z, m2, sizeof(m2) - 1, out, sizeof(out));
        frame(&s, FIN | RSV1 | OP_TEXT, out, c);
        deflateEnd(&z);
        feed_all_ways(&r, &s, &pmd_keep, LIMIT);
        ck_assert_msg(r.rc == WS_AGAIN, "%s", r.error);
        ck_assert_int_eq(r.n, 2);
        expect_msg(&r, 0, 1, m1, sizeof(m1) - 1, 0);
        expect_msg(&r, 1, 1, m2, sizeof(m2) - 1, 0);
        run_free(&r);
        free(s.p);
    }
}
END_TEST

START_TEST(deflate_corrupt)
{
    struct stream s = {0};
    struct run r = {0};

    frame_str(&s, FIN | OP_TEXT, "fine");
    frame(&s, FIN | RSV1 | OP_TEXT, "\xff\xff\xff\xff", 4);
    feed_all_ways(&r, &s, &pmd_keep, LIMIT);
    ck_assert_int_eq(r.rc, WS_ERROR);
    ck_assert_int_eq(r.code, 1007);
    ck_assert_uint_eq(r.released, s.len - 10);
    run_free(&r);
    free(s.p);

    /*
     * Without context takeover nothing past a truncated message's limit is
     * inflated: damage there is the origin's to find, however the bytes come.
     */
    {
        unsigned char out[64];
        z_stream z;
        size_t c;

        memset(&s, 0, sizeof(s));
        deflater(&z);
        c = compress_msg(&z, "hello world", 11, out, sizeof(out) - 4);
        memcpy(out + c, "\xff\xff\xff\xff", 4);
        frame(&s, FIN | RSV1 | OP_TEXT, out, c + 4);
        deflateEnd(&z);
        feed_all_ways(&r, &s, &pmd_reset, 4);
        ck_assert_int_eq(r.rc, WS_AGAIN);
        expect_msg(&r, 0, 1, "hell", 4, 1);
        run_free(&r);
        free(s.p);
    }
}
END_TEST

static long
maxrss_kb(void)
{
    struct rusage ru;

    ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* n zeros, deflated, framed as one compressed binary message in frames of at most 64 KiB. */
static void
zero_bomb(struct stream *s, z_stream *z, size_t n)
{
    static unsigned char zeros[1 << 16];
    size_t cap = n / 500 + 4096, c = 0;
    unsigned char *out = malloc(cap);

    z->next_out = out;
    z->avail_out = (uInt)cap;
    while (n > 0) {
        size_t k = n < sizeof(zeros) ? n : sizeof(zeros);

        z->next_in = zeros;
        z->avail_in = (uInt)k;
        ck_assert_int_eq(deflate(z, (n -= k) == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH), Z_OK);
    }
    c = cap - z->avail_out - 4;
    for (size_t off = 0; off < c; off += 65536) {
        size_t k = c - off < 65536 ? c - off : 65536;

        frame(s, (off == 0 ? RSV1 | OP_BIN : OP_CONT) | (off + k == c ? FIN : 0), out + off, k);
    }
    free(out);
}

/* 200 MiB of zeros in 200 KiB: memory stays at the limit; a later message still reads. */
START_TEST(deflate_bomb_is_bounded)
{
    for (int keep = 0; keep <= 1; keep++) {
        struct stream s = {0};
        struct run r = {0};
        unsigned char out[128];
        long before;
        z_stream z;
        size_t c;

        deflater(&z);
        zero_bomb(&s, &z, 200u << 20);
        if (!keep)
            ck_assert_int_eq(deflateReset(&z), Z_OK);
        c = compress_msg(&z, "after the bomb", 14, out, sizeof(out));
        frame(&s, FIN | RSV1 | OP_TEXT, out, c);
        deflateEnd(&z);
        before = maxrss_kb();
        feed_whole(&r, &s, keep ? &pmd_keep : &pmd_reset, LIMIT);
        ck_assert_int_lt(maxrss_kb() - before, 16 * 1024);
        ck_assert_int_eq(r.rc, WS_AGAIN);
        ck_assert_int_eq(r.n, 2);
        ck_assert_uint_eq(r.m[0].len, LIMIT);
        ck_assert_int_eq(r.m[0].truncated, 1);
        expect_msg(&r, 1, 1, "after the bomb", 14, 0);
        ck_assert_uint_eq(r.released, s.len);
        run_free(&r);
        free(s.p);
    }
}
END_TEST

/* Kept context: a message inflating past WS_INFLATE_MAX ends the connection. */
START_TEST(deflate_inflate_max)
{
    struct stream s = {0};
    struct run r = {0};
    z_stream z;

    deflater(&z);
    zero_bomb(&s, &z, WS_INFLATE_MAX + 1);
    deflateEnd(&z);
    feed_whole(&r, &s, &pmd_keep, LIMIT);
    ck_assert_int_eq(r.rc, WS_ERROR);
    ck_assert_int_eq(r.code, 1009);
    ck_assert_int_eq(r.n, 1);
    run_free(&r);
    /* without context takeover the rest is not inflated at all */
    feed_whole(&r, &s, &pmd_reset, LIMIT);
    ck_assert_int_eq(r.rc, WS_AGAIN);
    run_free(&r);
    free(s.p);
}
END_TEST

/* ---- the origin's direction ----------------------------------------------- */

START_TEST(server_frames_and_boundaries)
{
    struct stream s = {0};
    struct ws_parser *p;
    size_t got, first;

    frame_ex(&s, FIN | OP_TEXT, 0, 0, "from the origin", 15);
    first = s.len;
    frame_ex(&s, FIN | OP_BIN, 0, 0, "0123456789", 10);

    /* stopped mid-frame: taken up to the end of that frame only */
    p = ws_parser_new(WS_FROM_SERVER, NULL, 0, NULL, NULL);
    ck_assert_int_eq(ws_parser_feed(p, s.p, 5, &got), WS_AGAIN);
    ck_assert_int_eq(ws_parser_at_boundary(p), 0);
    ws_parser_stop(p);
    ck_assert_int_eq(ws_parser_feed(p, s.p + 5, s.len - 5, &got), WS_BOUNDARY);
    ck_assert_uint_eq(got, first - 5);
    ck_assert_uint_eq(ws_parser_released(p), first);
    ck_assert_int_eq(ws_parser_at_boundary(p), 1);
    ck_assert_int_eq(ws_parser_feed(p, s.p + first, s.len - first, &got), WS_BOUNDARY);
    ck_assert_uint_eq(got, 0);
    ws_parser_free(p);

    /* stopped at a boundary: nothing more is taken */
    p = ws_parser_new(WS_FROM_SERVER, NULL, 0, NULL, NULL);
    ck_assert_int_eq(ws_parser_feed(p, s.p, first, &got), WS_AGAIN);
    ws_parser_stop(p);
    ck_assert_int_eq(ws_parser_feed(p, s.p + first, s.len - first, &got), WS_BOUNDARY);
    ck_assert_uint_eq(got, 0);
    ws_parser_free(p);

    /* a masked frame is not the origin's */
    p = ws_parser_new(WS_FROM_SERVER, NULL, 0, NULL, NULL);
    ck_assert_int_eq(ws_parser_feed(p, (const unsigned char *)"\x81\x81xxxxy", 7, &got), WS_ERROR);
    ck_assert_str_eq(ws_parser_error(p), "masked server frame");
    ws_parser_free(p);

    /* RSV1 with the extension, tracked without inflating */
    p = ws_parser_new(WS_FROM_SERVER, &pmd_keep, 0, NULL, NULL);
    ck_assert_int_eq(ws_parser_feed(p, (const unsigned char *)"\xc1\x03zzz", 5, &got), WS_AGAIN);
    ck_assert_uint_eq(ws_parser_released(p), 5);
    ws_parser_free(p);
    free(s.p);
}
END_TEST

/* ---- negotiation ----------------------------------------------------------- */

static int
offer(const char *v, unsigned *flags)
{
    *flags = 0;
    return ws_ext_offer(v, strlen(v), flags);
}

START_TEST(extension_offers)
{
    unsigned f;

    ck_assert_int_eq(offer("permessage-deflate; client_max_window_bits", &f), 0);
    ck_assert_uint_eq(f, WS_EXT_DEFLATE);
    ck_assert_int_eq(offer("permessage-deflate; client_no_context_takeover; "
                           "server_max_window_bits=10, permessage-deflate",
                           &f),
                     0);
    ck_assert_uint_eq(f, WS_EXT_DEFLATE);
    ck_assert_int_eq(offer("x-webkit-deflate-frame, permessage-deflate;a=\"1\"", &f), 0);
    ck_assert_uint_eq(f, WS_EXT_DEFLATE | WS_EXT_OTHER);
    ck_assert_int_eq(offer("", &f), 0);
    ck_assert_uint_eq(f, 0);
    ck_assert_int_eq(offer(" , ,foo", &f), 0);
    ck_assert_uint_eq(f, WS_EXT_OTHER);
    ck_assert_int_eq(offer("permessage-deflate;", &f), -1);
    ck_assert_int_eq(offer("permessage-deflate; a=", &f), -1);
    ck_assert_int_eq(offer("permessage-deflate; a=\"b c\"", &f), -1);
    ck_assert_int_eq(offer("permessage-deflate; a=\"unterminated", &f), -1);
    ck_assert_int_eq(offer("per message", &f), -1);
    ck_assert_int_eq(offer("a;b=c;", &f), -1);
}
END_TEST

static int
agreed(const char *v, struct ws_deflate *d)
{
    memset(d, 0, sizeof(*d));
    d->client_max_window_bits = d->server_max_window_bits = 15;
    return ws_ext_agreed(v, strlen(v), d);
}

START_TEST(extension_agreed)
{
    struct ws_deflate d;

    ck_assert_int_eq(agreed("permessage-deflate", &d), 0);
    ck_assert(d.on && !d.client_no_context_takeover && d.client_max_window_bits == 15);
    ck_assert_int_eq(agreed("Permessage-Deflate ; client_no_context_takeover;"
                            "server_no_context_takeover ; client_max_window_bits=\"10\"; "
                            "server_max_window_bits=8",
                            &d),
                     0);
    ck_assert(d.on && d.client_no_context_takeover && d.server_no_context_takeover);
    ck_assert_uint_eq(d.client_max_window_bits, 10);
    ck_assert_uint_eq(d.server_max_window_bits, 8);
    ck_assert_int_eq(agreed("", &d), 0);
    ck_assert(!d.on);
    /* over two header lines: one permessage-deflate only */
    ck_assert_int_eq(agreed("permessage-deflate", &d), 0);
    ck_assert_int_eq(ws_ext_agreed("permessage-deflate", 18, &d), -1);
    ck_assert_int_eq(agreed("permessage-deflate, permessage-deflate", &d), -1);
    ck_assert_int_eq(agreed("x-webkit-deflate-frame", &d), -1);
    ck_assert_int_eq(agreed("permessage-deflate; foo", &d), -1);
    ck_assert_int_eq(agreed("permessage-deflate; client_no_context_takeover=1", &d), -1);
    ck_assert_int_eq(agreed("permessage-deflate; client_max_window_bits", &d), -1);
    ck_assert_int_eq(agreed("permessage-deflate; client_max_window_bits=7", &d), -1);
    ck_assert_int_eq(agreed("permessage-deflate; client_max_window_bits=16", &d), -1);
    ck_assert_int_eq(agreed("permessage-deflate; client_max_window_bits=08", &d), -1);
    ck_assert_int_eq(agreed("permessage-deflate; server_max_window_bits=123456789012", &d), -1);
    ck_assert_int_eq(agreed("permessage-deflate; server_no_context_takeover; "
                            "server_no_context_takeover",
                            &d),
                     -1);
    ck_assert_int_eq(agreed("permessage-deflate; a; b; c; d; e", &d), -1);
    ck_assert_int_eq(agreed("permessage-deflate;;", &d), -1);
}
END_TEST

/* ---- close frames ------------------------------------------------------------ */

START_TEST(close_frames)
{
    unsigned char f[WS_CLOSE_FRAME_MAX], u[WS_CLOSE_FRAME_MAX];
    char reason[200];
    size_t n;

    n = ws_close_frame(f, 0, 1008, "blocked by rule no-personal-data");
    ck_assert_uint_eq(n, 2 + 2 + 32);
    ck_assert(memcmp(f, "\x88\x22\x03\xf0", 4) == 0);
    ck_assert(memcmp(f + 4, "blocked by rule no-personal-data", 32) == 0);

    n = ws_close_frame(f, 1, 1001, NULL);
    ck_assert_uint_eq(n, 2 + 4 + 2);
    ck_assert_uint_eq(f[0], 0x88);
    ck_assert_uint_eq(f[1], 0x82);
    for (int i = 0; i < 2; i++)
        u[i] = f[6 + i] ^ f[2 + i];
    ck_assert(memcmp(u, "\x03\xe9", 2) == 0);

    /* a long reason is cut at a character: 41 three-byte characters fill the 123 bytes */
    reason[0] = '\0';
    for (int i = 0; i < 45; i++)
        strcat(reason, "\xea\xb7\x9c");
    n = ws_close_frame(f, 1, 1008, reason);
    ck_assert_uint_eq(n, 2 + 4 + 2 + 123);
    n = ws_close_frame(f, 0, 1008, reason + 1);
    ck_assert_uint_le(n, WS_CLOSE_FRAME_MAX);
    ck_assert_uint_eq(f[1], n - 2);
    ck_assert((f[n - 1] & 0xc0) == 0x80 && (f[n - 3] & 0xe0) == 0xe0);

    /* the parser reads what it writes */
    {
        struct stream s = {0};
        struct run r = {0};

        n = ws_close_frame(f, 1, 1001, "going away");
        put(&s, f, n);
        feed_all_ways(&r, &s, &no_ext, LIMIT);
        ck_assert_int_eq(r.rc, WS_CLOSED);
        ck_assert_uint_eq(r.released, n);
        run_free(&r);
        free(s.p);
    }
}
END_TEST

/* ---- DLP in messages ---------------------------------------------------------- */

struct dlp_run {
    unsigned found;
    int n;
};

static int
on_msg_dlp(void *arg, const struct ws_msg *m)
{
    struct dlp_run *d = arg;
    unsigned f = ws_msg_dlp(NULL, m);

    d->found |= f;
    d->n++;
    return f != 0;
}

static unsigned
dlp_of(const struct stream *s, const struct ws_deflate *pmd, int *rc)
{
    struct dlp_run d = {0, 0};
    struct ws_parser *p = ws_parser_new(WS_FROM_CLIENT, pmd, LIMIT, on_msg_dlp, &d);
    size_t got;

    *rc = ws_parser_feed(p, s->p, s->len, &got);
    ws_parser_free(p);
    return d.found;
}

START_TEST(dlp_split_across_fragments)
{
    struct stream s = {0};
    int rc;

    /* an RRN cut in three, with a ping between */
    frame_str(&s, OP_TEXT, "{\"text\":\"my number is 9001");
    frame_str(&s, FIN | OP_PING, "");
    frame_str(&s, OP_CONT, "01-12");
    frame_str(&s, FIN | OP_CONT, "34568\"}");
    ck_assert_uint_eq(dlp_of(&s, &no_ext, &rc), POLICY_DLP_KR_RRN);
    ck_assert_int_eq(rc, WS_BLOCKED);
    free(s.p);

    /* the same with permessage-deflate */
    {
        static const char *const m[] = {"hello", "{\"text\":\"my number is 900101-1234568\"}"};

        memset(&s, 0, sizeof(s));
        deflate_messages(&s, m, 2, 1, 1);
        ck_assert_uint_eq(dlp_of(&s, &pmd_keep, &rc), POLICY_DLP_KR_RRN);
        ck_assert_int_eq(rc, WS_BLOCKED);
        free(s.p);
    }

    /* Luhn-invalid and clean messages pass */
    memset(&s, 0, sizeof(s));
    frame_str(&s, FIN | OP_TEXT, "{\"text\":\"card 4111 1111 1111 1112 and 900101-1234567\"}");
    frame_str(&s, OP_TEXT, "nothing ");
    frame_str(&s, FIN | OP_CONT, "here");
    ck_assert_uint_eq(dlp_of(&s, &no_ext, &rc), 0);
    ck_assert_int_eq(rc, WS_AGAIN);
    free(s.p);
}
END_TEST

START_TEST(dlp_secrets_in_messages)
{
    static const char pem[] =
        "-----BEGIN OPENSSH PRIVATE KEY-----\\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
        "\\n-----END OPENSSH PRIVATE KEY-----";
    struct stream s = {0};
    char json[512];
    int rc;

    snprintf(json, sizeof(json), "{\"messages\":[{\"role\":\"user\",\"content\":\"fix: %s\"}]}",
             "key = \\\"sk-ant-api03-FHz5r1pY4OjE2jBMptUsGr7CmY-uCu3ZR1zTOlUcR64cXQLioDnkHIfxIq2H"
             "Zt_PlJhx2jIclHkCiHp6bR1IqfEouHgxzAA\\\"");
    frame_str(&s, FIN | OP_TEXT, json);
    ck_assert_uint_eq(dlp_of(&s, &no_ext, &rc), POLICY_DLP_API_KEY);
    free(s.p);

    memset(&s, 0, sizeof(s));
    snprintf(json, sizeof(json), "{\"content\":\"%s\"}", pem);
    frame(&s, OP_TEXT, json, 40);
    frame(&s, FIN | OP_CONT, json + 40, strlen(json) - 40);
    ck_assert_uint_eq(dlp_of(&s, &no_ext, &rc), POLICY_DLP_PRIVATE_KEY);
    free(s.p);

    /* binary messages are read as bytes */
    memset(&s, 0, sizeof(s));
    frame(&s, FIN | OP_BIN,
          "\x00\x01"
          "AKIATTNS4LRWBQCABM6P\x00",
          23);
    ck_assert_uint_eq(dlp_of(&s, &no_ext, &rc), POLICY_DLP_API_KEY);
    free(s.p);
}
END_TEST

Suite *ws_suite(void);

Suite *
ws_suite(void)
{
    Suite *s = suite_create("ws");
    TCase *t = tcase_create("core");

    tcase_set_timeout(t, 30);
    tcase_add_test(t, frame_shapes);
    tcase_add_test(t, several_messages);
    tcase_add_test(t, fragmented_with_control_frames);
    tcase_add_test(t, release_points);
    tcase_add_test(t, bad_frames);
    tcase_add_test(t, bad_inside_held_message);
    tcase_add_test(t, huge_lengths);
    tcase_add_test(t, close_ends_the_stream);
    tcase_add_test(t, blocking);
    tcase_add_test(t, inspection_limit);
    tcase_add_test(t, hold_limit);
    tcase_add_test(t, deflate_context_takeover);
    tcase_add_test(t, deflate_no_context_takeover);
    tcase_add_test(t, deflate_final_block);
    tcase_add_test(t, deflate_corrupt);
    tcase_add_test(t, deflate_bomb_is_bounded);
    tcase_add_test(t, deflate_inflate_max);
    tcase_add_test(t, server_frames_and_boundaries);
    tcase_add_test(t, extension_offers);
    tcase_add_test(t, extension_agreed);
    tcase_add_test(t, close_frames);
    tcase_add_test(t, dlp_split_across_fragments);
    tcase_add_test(t, dlp_secrets_in_messages);
    suite_add_tcase(s, t);
    return s;
}
