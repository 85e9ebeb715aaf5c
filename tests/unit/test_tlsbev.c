/*
 * tlsbev: TLS with OpenSSL on the socket.  A client thread sends 40000 bytes
 * (three records) over a socket pair; the proxy side reads them through
 * tlsbev_start() with a read limit far below a record, so libevent stops
 * half-way through records and the rest waits inside OpenSSL.  Every byte
 * must still arrive: when the reader drains its input, and when reading is
 * turned off and on again (tlsbev_read_on) or its limit raised
 * (tlsbev_read_limit), after the socket has gone quiet.
 */
#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aigate/net/tlsbev.h"
#include "aigate/tls/tls_mitm.h"

#define TOTAL 40000
#define HOST "t.example"

enum mode { DRAIN, OFF_ON, LIMIT_UP };

static char dir[64], cert_path[128], key_path[128], err[512];
static struct tls_ca *ca;
static struct tls_leaf_cache *lc;

struct client {
    int fd;
    SSL_CTX *ctx;
    int sent;
};

struct server {
    struct event_base *base;
    struct bufferevent *tls;
    struct event *later;
    enum mode mode;
    size_t got;
    unsigned char sum;
};

static void
setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the proxy does */
    strcpy(dir, "/tmp/aigate-tlsbev-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cert_path, sizeof(cert_path), "%s/ca.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/ca.key", dir);
    ck_assert_msg(tls_gen_ca(dir, err, sizeof(err)) == 0, "%s", err);
    ck_assert_ptr_nonnull(ca = tls_ca_load(cert_path, key_path, err, sizeof(err)));
    ck_assert_ptr_nonnull(lc = tls_leaf_cache_new(ca, 4));
}

static void
teardown(void)
{
    tls_leaf_cache_free(lc);
    tls_ca_unref(ca);
    unlink(cert_path);
    unlink(key_path);
    rmdir(dir);
}

/* Handshake, TOTAL bytes in one SSL_write (three records), then wait for the close. */
static void *
client_main(void *arg)
{
    struct client *cl = arg;
    unsigned char *buf = malloc(TOTAL), b;
    SSL *ssl = tls_client_ssl(cl->ctx, HOST);
    for (size_t i = 0; i < TOTAL; i++)
        buf[i] = (unsigned char)(i * 7 + 1);
    SSL_set_fd(ssl, cl->fd);
    if (SSL_connect(ssl) == 1 && SSL_write(ssl, buf, TOTAL) == TOTAL)
        cl->sent = 1;
    while (SSL_read(ssl, &b, 1) > 0)
        continue;
    SSL_free(ssl);
    free(buf);
    return NULL;
}

static void
take(struct server *s)
{
    struct evbuffer *in = bufferevent_get_input(s->tls);
    size_t n = evbuffer_get_length(in);
    unsigned char *p = evbuffer_pullup(in, -1);
    for (size_t i = 0; i < n; i++) {
        if (p[i] != (unsigned char)((s->got + i) * 7 + 1))
            s->sum = 1;
    }
    s->got += n;
    evbuffer_drain(in, n);
    if (s->got >= TOTAL)
        event_base_loopbreak(s->base);
}

/* After a pause (the socket has long gone quiet): turn reading back on, or raise the limit. */
static void
resume(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    (void)fd;
    (void)what;
    if (s->mode == OFF_ON) {
        take(s);
        tlsbev_read_on(s->tls, 0);
    } else {
        tlsbev_read_limit(s->tls, evbuffer_get_length(bufferevent_get_input(s->tls)) + 4000);
    }
}

static void
server_read(struct bufferevent *bev, void *arg)
{
    struct server *s = arg;
    struct timeval pause = {0, 20 * 1000};
    size_t have = evbuffer_get_length(bufferevent_get_input(bev));
    if (s->mode == DRAIN || s->got + have >= TOTAL)
        return take(s);
    if (s->mode == OFF_ON) {
        bufferevent_disable(bev, EV_READ); /* and hold what came */
        evtimer_add(s->later, &pause);
    } else if (!evtimer_pending(s->later, NULL)) {
        /* Hold it all: past the limit, libevent calls again until the limit is raised. */
        evtimer_add(s->later, &pause);
    }
}

static void
run(enum mode mode)
{
    int sv[2];
    struct client cl = {0};
    struct server s = {.mode = mode};
    struct timeval limit = {3, 0};
    pthread_t th;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_ptr_nonnull(cl.ctx = tls_client_ctx_new(cert_path, err, sizeof(err)));
    cl.fd = sv[1];
    ck_assert_int_eq(pthread_create(&th, NULL, client_main, &cl), 0);

    ck_assert_ptr_nonnull(s.base = event_base_new());
    evutil_make_socket_nonblocking(sv[0]);
    struct bufferevent *plain = bufferevent_socket_new(s.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    ck_assert_ptr_nonnull(plain);
    s.tls = tlsbev_start(s.base, plain, tls_server_ssl(lc, HOST), BUFFEREVENT_SSL_ACCEPTING);
    ck_assert_ptr_nonnull(s.tls);
    ck_assert_ptr_null(bufferevent_get_underlying(s.tls)); /* OpenSSL on the socket */
    s.later = evtimer_new(s.base, resume, &s);
    bufferevent_setcb(s.tls, server_read, NULL, NULL, &s);
    tlsbev_read_limit(s.tls, 200);
    tlsbev_read_on(s.tls, 0);
    event_base_loopexit(s.base, &limit);
    event_base_dispatch(s.base);

    shutdown(sv[0], SHUT_RDWR); /* the client's read ends */
    pthread_join(th, NULL);
    event_free(s.later);
    bufferevent_free(s.tls); /* closes sv[0] when the base is freed */
    close(sv[1]);
    SSL_CTX_free(cl.ctx);
    event_base_free(s.base);
    ck_assert_int_eq(cl.sent, 1);
    ck_assert_msg(s.got == TOTAL, "got %zu of %d bytes", s.got, TOTAL);
    ck_assert_int_eq(s.sum, 0);
}

START_TEST(drained_input_reads_on)
{
    run(DRAIN);
}
END_TEST

START_TEST(read_on_after_off_reads_on)
{
    run(OFF_ON);
}
END_TEST

START_TEST(raised_limit_reads_on)
{
    run(LIMIT_UP);
}
END_TEST

Suite *tlsbev_suite(void);

Suite *
tlsbev_suite(void)
{
    Suite *s = suite_create("tlsbev");
    TCase *t = tcase_create("core");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, drained_input_reads_on);
    tcase_add_test(t, read_on_after_off_reads_on);
    tcase_add_test(t, raised_limit_reads_on);
    suite_add_tcase(s, t);
    return s;
}
