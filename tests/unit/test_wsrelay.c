/*
 * The inspecting WebSocket relay (proxy/ws/wsrelay.c over proxy/net/tunnel.c),
 * between socketpairs on a real event loop: clean messages pass byte for
 * byte both ways; a message bigger than the tunnel's high-water mark is held
 * whole and released (no stall); a blocked message never reaches the origin,
 * which gets a masked 1001 after what went before, while the client gets
 * the origin's frames and then a 1008 naming the rule, also when the block
 * comes while the origin is in the middle of a frame; after the client's
 * close frame nothing more goes on; malformed client framing: 1002 to the
 * client; malformed origin framing: the end, without close frames; EOF
 * passes as a half-close.
 */
#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "aigate/rules/policy.h"
#include "aigate/ws/ws.h"
#include "aigate/ws/wsrelay.h"
#include "wsframe.h"

static const unsigned char key[4] = {0x11, 0x22, 0x33, 0x44};

/* ---- the rig: test ends (cli, org) and the relay's ends, socketpairs between them ---- */

struct rig {
    struct event_base *base;
    struct bufferevent *cli, *org; /* what the client and the origin see */
    struct bufferevent *pc, *po;   /* the relay's sides */
    struct wsrelay *w;
    uint64_t up, down;
    const char *block; /* what judge answers */
    unsigned found;    /* kinds judged */
    int ended;
    char why[64];
};

static void
on_activity(void *arg)
{
    (void)arg;
}

static const char *
on_judge(void *arg, unsigned found)
{
    struct rig *r = arg;
    r->found |= found;
    return r->block;
}

static void
on_end(void *arg, const char *why)
{
    struct rig *r = arg;
    r->ended = 1;
    strncpy(r->why, why, sizeof(r->why) - 1);
}

static const struct wsrelay_ops ops = {on_activity, on_judge, on_end};

static struct bufferevent *
side(struct event_base *base, int fd)
{
    struct bufferevent *b = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    ck_assert_ptr_nonnull(b);
    bufferevent_enable(b, EV_READ | EV_WRITE);
    return b;
}

static void
rig_start(struct rig *r, const char *block, const struct ws_deflate *pmd, size_t limit)
{
    int a[2], b[2];
    memset(r, 0, sizeof(*r));
    r->base = event_base_new();
    ck_assert_ptr_nonnull(r->base);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    r->cli = side(r->base, a[0]);
    r->pc = side(r->base, a[1]);
    r->po = side(r->base, b[0]);
    r->org = side(r->base, b[1]);
    r->block = block;
    r->w = wsrelay_start(r->base, r->pc, r->po, 0, pmd, limit, NULL, &r->up, &r->down, &ops, r);
    ck_assert_ptr_nonnull(r->w);
}

static void
rig_stop(struct rig *r)
{
    wsrelay_free(r->w);
    bufferevent_free(r->cli);
    bufferevent_free(r->pc);
    bufferevent_free(r->po);
    bufferevent_free(r->org);
    event_base_free(r->base);
}

/* Run the loop until what the test end b has received reaches n bytes (or the relay ended). */
static void
run_until(struct rig *r, struct bufferevent *b, size_t n)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        event_base_loop(r->base, EVLOOP_NONBLOCK);
        if (b && evbuffer_get_length(bufferevent_get_input(b)) >= n)
            return;
        usleep(200);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < 3000);
}

/* Run the loop for ms milliseconds. */
static void
run_for(struct rig *r, int ms)
{
    for (int i = 0; i < ms * 5; i++) {
        event_base_loop(r->base, EVLOOP_NONBLOCK);
        usleep(200);
    }
}

/* Append a frame (b0: FIN and opcode, wsframe.h), masked with key when mask. */
static void
frame(struct evbuffer *out, unsigned b0, int mask, const void *payload, size_t n)
{
    unsigned char *f = malloc(14 + n);

    ck_assert_ptr_nonnull(f);
    evbuffer_add(out, f, wsframe(f, b0, mask ? key : NULL, 0, payload, n));
    free(f);
}

static void
text(struct evbuffer *out, int mask, const char *s)
{
    frame(out, FIN | OP_TEXT, mask, s, strlen(s));
}

/* The bytes b received, removed (malloc'd, NUL-terminated); *n gets their count. */
static unsigned char *
take(struct bufferevent *b, size_t *n)
{
    struct evbuffer *in = bufferevent_get_input(b);
    *n = evbuffer_get_length(in);
    unsigned char *p = malloc(*n + 1);
    evbuffer_remove(in, p, *n);
    p[*n] = 0;
    return p;
}

/* A serialised evbuffer (malloc'd); *n its length.  The buffer is emptied. */
static unsigned char *
flat(struct evbuffer *e, size_t *n)
{
    *n = evbuffer_get_length(e);
    unsigned char *p = malloc(*n + 1);
    evbuffer_remove(e, p, *n);
    p[*n] = 0;
    return p;
}

/* Check that p[0..n) is an unmasked close frame with code and reason. */
static void
check_close(const unsigned char *p, size_t n, int code, const char *reason)
{
    size_t rl = strlen(reason);
    ck_assert_uint_eq(n, 4 + rl);
    ck_assert_uint_eq(p[0], FIN | OP_CLOSE);
    ck_assert_uint_eq(p[1], 2 + rl);
    ck_assert_int_eq(p[2] << 8 | p[3], code);
    ck_assert(memcmp(p + 4, reason, rl) == 0);
}

/* The code of the masked close frame p[0..n) (2 + 4 + 2 bytes at least). */
static int
masked_close_code(const unsigned char *p, size_t n)
{
    ck_assert_uint_ge(n, 8);
    ck_assert_uint_eq(p[0], FIN | OP_CLOSE);
    ck_assert(p[1] & 0x80);
    return (p[6] ^ p[2]) << 8 | (p[7] ^ p[3]);
}

static const char RRN[] = "my number is 900101-1234568, thanks";

/* ---- tests --------------------------------------------------------------------------- */

START_TEST(test_clean_both_ways)
{
    struct rig r;
    rig_start(&r, "rule-x", NULL, 1 << 20);
    struct evbuffer *up = evbuffer_new(), *down = evbuffer_new(), *want = evbuffer_new();
    text(up, 1, "hello");
    text(up, 1, "900101-1234567 and 4111 1111 1111 1112 are not personal data");
    frame(up, FIN | OP_PING, 1, "p", 1);
    frame(up, OP_TEXT, 1, "frag", 4); /* fragmented, a ping in the middle */
    frame(up, FIN | OP_PING, 1, "q", 1);
    frame(up, FIN | 0x0, 1, "ment", 4);
    evbuffer_add_buffer(want, up);
    size_t wn, gn;
    unsigned char *w = flat(want, &wn);
    evbuffer_add(bufferevent_get_output(r.cli), w, wn);
    text(down, 0, "from the origin");
    size_t dn;
    unsigned char *d = flat(down, &dn);
    evbuffer_add(bufferevent_get_output(r.org), d, dn);
    run_until(&r, r.org, wn);
    run_until(&r, r.cli, dn);
    unsigned char *g = take(r.org, &gn);
    ck_assert_uint_eq(gn, wn);
    ck_assert(memcmp(g, w, wn) == 0);
    free(g);
    g = take(r.cli, &gn);
    ck_assert_uint_eq(gn, dn);
    ck_assert(memcmp(g, d, dn) == 0);
    ck_assert_uint_eq(r.found, 0);
    ck_assert_int_eq(r.ended, 0);
    ck_assert_uint_eq(r.up, wn);
    ck_assert_uint_eq(r.down, dn);
    free(g);
    free(w);
    free(d);
    evbuffer_free(up);
    evbuffer_free(down);
    evbuffer_free(want);
    rig_stop(&r);
}
END_TEST

/* A message of the inspection limit (twice the tunnel's high-water mark) is held whole, then goes.
 */
START_TEST(test_big_message_held)
{
    struct rig r;
    size_t big = 1 << 20, n, gn;
    unsigned char *msg = malloc(big);
    for (size_t i = 0; i < big; i++)
        msg[i] = (unsigned char)('a' + i % 26);
    rig_start(&r, "rule-x", NULL, big);
    struct evbuffer *up = evbuffer_new();
    frame(up, FIN | OP_BIN, 1, msg, big);
    text(up, 1, "after");
    unsigned char *w = flat(up, &n);
    evbuffer_add(bufferevent_get_output(r.cli), w, n);
    run_until(&r, r.org, n);
    unsigned char *g = take(r.org, &gn);
    ck_assert_uint_eq(gn, n);
    ck_assert(memcmp(g, w, n) == 0);
    free(g);
    free(w);
    free(msg);
    evbuffer_free(up);
    rig_stop(&r);
}
END_TEST

START_TEST(test_blocked)
{
    struct rig r;
    size_t n, gn, dn;
    rig_start(&r, "no-pii", NULL, 1 << 20);
    struct evbuffer *e = evbuffer_new();
    text(e, 1, "first");
    unsigned char *first = flat(e, &n);
    text(e, 1, RRN);
    text(e, 1, "after the block");
    unsigned char *rest = flat(e, &gn);
    text(e, 0, "origin says hi");
    unsigned char *d = flat(e, &dn);
    evbuffer_add(bufferevent_get_output(r.org), d, dn);
    run_until(&r, r.cli, dn);
    evbuffer_add(bufferevent_get_output(r.cli), first, n);
    evbuffer_add(bufferevent_get_output(r.cli), rest, gn);
    run_until(&r, r.org, n + 8);
    run_until(&r, r.cli, dn + 4 + strlen("blocked by aigate rule no-pii"));
    run_for(&r, 50);
    ck_assert_int_eq(r.ended, 1);
    ck_assert_str_eq(r.why, "message blocked");
    ck_assert_uint_eq(r.found, POLICY_DLP_KR_RRN);
    /* the origin: the first message, then a masked 1001, nothing of the RRN */
    unsigned char *g = take(r.org, &gn);
    ck_assert_uint_ge(gn, n + 8);
    ck_assert(memcmp(g, first, n) == 0);
    ck_assert_int_eq(masked_close_code(g + n, gn - n), 1001);
    ck_assert_uint_eq(gn, n + 8);
    free(g);
    /* the client: the origin's frame, then 1008 naming the rule */
    g = take(r.cli, &gn);
    ck_assert_uint_ge(gn, dn);
    ck_assert(memcmp(g, d, dn) == 0);
    check_close(g + dn, gn - dn, 1008, "blocked by aigate rule no-pii");
    free(g);
    free(first);
    free(rest);
    free(d);
    evbuffer_free(e);
    rig_stop(&r);
}
END_TEST

/* The block comes while the origin is inside a frame: the 1008 follows that frame's end. */
START_TEST(test_blocked_mid_origin_frame)
{
    struct rig r;
    size_t dn, gn, n;
    rig_start(&r, "no-pii", NULL, 1 << 20);
    struct evbuffer *e = evbuffer_new();
    char payload[300];
    memset(payload, 'o', sizeof(payload));
    frame(e, FIN | OP_TEXT, 0, payload, sizeof(payload));
    unsigned char *d = flat(e, &dn);
    evbuffer_add(bufferevent_get_output(r.org), d, 100); /* part of the origin's frame */
    run_until(&r, r.cli, 100);
    text(e, 1, RRN);
    unsigned char *u = flat(e, &n);
    evbuffer_add(bufferevent_get_output(r.cli), u, n);
    run_for(&r, 50);
    ck_assert_int_eq(r.ended, 0);
    ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_input(r.cli)), 100);
    evbuffer_add(bufferevent_get_output(r.org), d + 100, dn - 100); /* the rest of it */
    text(e, 0, "after the boundary");
    size_t an;
    unsigned char *after = flat(e, &an);
    evbuffer_add(bufferevent_get_output(r.org), after, an);
    run_until(&r, r.cli, dn + 4 + strlen("blocked by aigate rule no-pii"));
    run_for(&r, 50);
    ck_assert_int_eq(r.ended, 1);
    unsigned char *g = take(r.cli, &gn);
    ck_assert_uint_eq(gn, dn + 4 + strlen("blocked by aigate rule no-pii"));
    ck_assert(memcmp(g, d, dn) == 0);
    check_close(g + dn, gn - dn, 1008, "blocked by aigate rule no-pii");
    free(g);
    g = take(r.org, &gn);
    ck_assert_int_eq(masked_close_code(g, gn), 1001);
    free(g);
    free(d);
    free(u);
    free(after);
    evbuffer_free(e);
    rig_stop(&r);
}
END_TEST

/* After the client's close frame nothing more from it goes on; its EOF is a half-close. */
START_TEST(test_close_then_eof)
{
    struct rig r;
    size_t n, gn, x;
    rig_start(&r, "no-pii", NULL, 1 << 20);
    struct evbuffer *e = evbuffer_new();
    text(e, 1, "bye soon");
    frame(e, FIN | OP_CLOSE, 1, "\x03\xe8", 2);
    unsigned char *w = flat(e, &n);
    text(e, 1, "not part of the WebSocket");
    unsigned char *extra = flat(e, &x);
    evbuffer_add(bufferevent_get_output(r.cli), w, n);
    evbuffer_add(bufferevent_get_output(r.cli), extra, x);
    run_until(&r, r.org, n);
    run_for(&r, 30);
    unsigned char *g = take(r.org, &gn);
    ck_assert_uint_eq(gn, n);
    ck_assert(memcmp(g, w, n) == 0);
    free(g);
    /* the client leaves: the origin reads EOF; the origin answers and leaves: the end */
    shutdown(bufferevent_getfd(r.cli), SHUT_WR);
    run_for(&r, 30);
    char buf[16];
    ck_assert_int_eq(read(bufferevent_getfd(r.org), buf, sizeof(buf)), 0);
    frame(e, FIN | OP_CLOSE, 0, "\x03\xe8", 2);
    unsigned char *c = flat(e, &x);
    evbuffer_add(bufferevent_get_output(r.org), c, x);
    run_until(&r, r.cli, x);
    shutdown(bufferevent_getfd(r.org), SHUT_WR);
    run_for(&r, 30);
    ck_assert_int_eq(r.ended, 1);
    ck_assert_str_eq(r.why, "both sides closed");
    g = take(r.cli, &gn);
    ck_assert_uint_eq(gn, x);
    ck_assert(memcmp(g, c, x) == 0);
    free(g);
    free(c);
    free(w);
    free(extra);
    evbuffer_free(e);
    rig_stop(&r);
}
END_TEST

START_TEST(test_client_framing_error)
{
    struct rig r;
    size_t n, gn;
    rig_start(&r, NULL, NULL, 1 << 20);
    struct evbuffer *e = evbuffer_new();
    text(e, 1, "fine");
    unsigned char *ok = flat(e, &n);
    evbuffer_add(bufferevent_get_output(r.cli), ok, n);
    text(e, 0, "unmasked"); /* clients must mask */
    unsigned char *bad = flat(e, &gn);
    evbuffer_add(bufferevent_get_output(r.cli), bad, gn);
    run_until(&r, r.cli, 4);
    run_for(&r, 50);
    ck_assert_int_eq(r.ended, 1);
    ck_assert_str_eq(r.why, "client framing error");
    unsigned char *g = take(r.cli, &gn);
    check_close(g, gn, 1002, "unmasked client frame");
    free(g);
    g = take(r.org, &gn);
    ck_assert_uint_eq(gn, n + 8);
    ck_assert(memcmp(g, ok, n) == 0);
    ck_assert_int_eq(masked_close_code(g + n, gn - n), 1001);
    free(g);
    free(ok);
    free(bad);
    evbuffer_free(e);
    rig_stop(&r);
}
END_TEST

START_TEST(test_origin_framing_error)
{
    struct rig r;
    size_t n, gn;
    rig_start(&r, NULL, NULL, 1 << 20);
    struct evbuffer *e = evbuffer_new();
    text(e, 0, "fine");
    text(e, 1, "masked"); /* servers must not mask */
    unsigned char *d = flat(e, &n);
    evbuffer_add(bufferevent_get_output(r.org), d, n);
    run_for(&r, 50);
    ck_assert_int_eq(r.ended, 1);
    ck_assert_str_eq(r.why, "origin framing error");
    unsigned char *g = take(r.cli, &gn);
    ck_assert_uint_eq(gn, 6); /* the valid frame only, no close */
    ck_assert(memcmp(g, d, 6) == 0);
    free(g);
    ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_input(r.org)), 0);
    free(d);
    evbuffer_free(e);
    rig_stop(&r);
}
END_TEST

Suite *wsrelay_suite(void);

Suite *
wsrelay_suite(void)
{
    Suite *s = suite_create("wsrelay");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_clean_both_ways);
    tcase_add_test(tc, test_big_message_held);
    tcase_add_test(tc, test_blocked);
    tcase_add_test(tc, test_blocked_mid_origin_frame);
    tcase_add_test(tc, test_close_then_eof);
    tcase_add_test(tc, test_client_framing_error);
    tcase_add_test(tc, test_origin_framing_error);
    suite_add_tcase(s, tc);
    return s;
}
