/*
 * ws_bench: a WebSocket echo origin and a load generator, for comparing
 * WebSocket relaying through aigate with a blind tunnel and with no proxy
 * (contrib/bench/ws_bench.sh runs it; README.md there explains the numbers).
 * Not a test.  One thread, libevent; TLS with OpenSSL.
 *
 *   ws_bench server PORT [CERT KEY]
 *       echo every message back (same opcode, unmasked), plain or TLS
 *   ws_bench client HOST PORT [options]
 *       --proxy HOST:PORT     through an HTTP proxy
 *       --connect             through a CONNECT tunnel (else, with --proxy,
 *                             an absolute-form GET with the upgrade: ws:// as
 *                             a proxy relays it)
 *       --tls                 wss:// (TLS to HOST, inside the tunnel when
 *                             proxied; the certificate is not verified)
 *       --conns N (8) --size BYTES (128) --window W (32) --seconds S (5)
 *   Prints: conns=N size=B msgs=M secs=T msgs_s=X mb_s=Y
 *
 * The client keeps W messages in flight per connection: it sends W binary
 * messages of ASCII text (words, no personal data), and one more for each
 * echo it gets.  Frames are masked with a zero key (a valid key that makes
 * masking free for the generator; a proxy that unmasks does the same work
 * for any key).  Counting starts once every connection is open.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define WSB_HEAD_MAX 8192
#define WSB_OUT_HIGH (4u << 20) /* server: stop reading while this much is unsent */
#define WSB_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- frames ------------------------------------------------------------------ */

/*
 * If in starts with a whole frame: its header length (mask included) into
 * *hlen, payload length into *plen, its first byte into *b0, the mask into
 * mask (zero when none); 1.  0 when more bytes are needed.
 */
static int
frame_peek(struct evbuffer *in, size_t *hlen, uint64_t *plen, unsigned char *b0,
           unsigned char mask[4])
{
    unsigned char h[14];
    size_t have = evbuffer_get_length(in), need = 2;
    if (have < 2)
        return 0;
    evbuffer_copyout(in, h, have < sizeof(h) ? have : sizeof(h));
    unsigned len7 = h[1] & 0x7f, masked = h[1] >> 7;
    need += (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (have < need)
        return 0;
    uint64_t len = len7;
    size_t at = 2;
    if (len7 >= 126) {
        unsigned nb = len7 == 126 ? 2 : 8;
        len = 0;
        for (unsigned k = 0; k < nb; k++)
            len = len << 8 | h[at++];
    }
    memset(mask, 0, 4);
    if (masked)
        memcpy(mask, h + at, 4);
    if (have - need < len)
        return 0;
    *hlen = need;
    *plen = len;
    *b0 = h[0];
    return 1;
}

/* A frame header (FIN, opcode of b0) for len payload bytes, masked with a zero key when mask. */
static size_t
frame_head(unsigned char out[14], unsigned char b0, uint64_t len, int mask)
{
    size_t n = 2;
    out[0] = b0;
    if (len < 126) {
        out[1] = (unsigned char)len;
    } else if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        n = 4;
    } else {
        out[1] = 127;
        for (int k = 0; k < 8; k++)
            out[2 + k] = (unsigned char)(len >> (56 - 8 * k));
        n = 10;
    }
    if (mask) {
        out[1] |= 0x80;
        memset(out + n, 0, 4);
        n += 4;
    }
    return n;
}

/* The end of an HTTP head in in: its length with the blank line, or 0. */
static size_t
head_end(struct evbuffer *in)
{
    struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    return p.pos < 0 ? 0 : (size_t)p.pos + 4;
}

static void
nodelay(struct bufferevent *bev)
{
    int one = 1;
    setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- the echo origin ------------------------------------------------------------ */

struct server {
    struct event_base *base;
    SSL_CTX *ctx;
};

struct sconn {
    struct bufferevent *bev;
    int open; /* past the 101 */
};

static void
sconn_free(struct sconn *s)
{
    bufferevent_free(s->bev);
    free(s);
}

/* The handshake: Sec-WebSocket-Accept = base64(SHA-1(key GUID)) (RFC 6455 4.2.2). */
static int
server_handshake(struct sconn *s, struct evbuffer *in)
{
    size_t n = head_end(in);
    if (!n)
        return evbuffer_get_length(in) > WSB_HEAD_MAX ? -1 : 0;
    char head[WSB_HEAD_MAX + 1];
    if (n > WSB_HEAD_MAX)
        return -1;
    evbuffer_remove(in, head, n);
    head[n] = '\0';
    const char *k = strcasestr(head, "\r\nSec-WebSocket-Key:");
    if (!k)
        return -1;
    k += 20;
    while (*k == ' ')
        k++;
    size_t kl = strcspn(k, "\r ");
    char cat[128];
    unsigned char md[SHA_DIGEST_LENGTH], acc[64];
    if (kl > 64)
        return -1;
    snprintf(cat, sizeof(cat), "%.*s%s", (int)kl, k, WSB_GUID);
    SHA1((const unsigned char *)cat, strlen(cat), md);
    EVP_EncodeBlock(acc, md, SHA_DIGEST_LENGTH);
    evbuffer_add_printf(bufferevent_get_output(s->bev),
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                        acc);
    s->open = 1;
    return 0;
}

static void
server_read(struct bufferevent *bev, void *arg)
{
    struct sconn *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev), *out = bufferevent_get_output(bev);
    if (!s->open && (server_handshake(s, in) < 0 || !s->open)) {
        if (!s->open && evbuffer_get_length(in) > WSB_HEAD_MAX)
            sconn_free(s);
        return;
    }
    size_t hlen;
    uint64_t plen;
    unsigned char b0, mask[4], h[14];
    while (frame_peek(in, &hlen, &plen, &b0, mask)) {
        evbuffer_drain(in, hlen);
        evbuffer_add(out, h, frame_head(h, b0, plen, 0));
        if (mask[0] | mask[1] | mask[2] | mask[3]) {
            unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)plen);
            for (uint64_t i = 0; i < plen; i++)
                p[i] ^= mask[i & 3];
        }
        evbuffer_remove_buffer(in, out, (size_t)plen);
        if ((b0 & 0x0f) == 0x8) { /* close: echoed, then the end */
            bufferevent_disable(bev, EV_READ);
            return;
        }
    }
    if (evbuffer_get_length(out) > WSB_OUT_HIGH)
        bufferevent_disable(bev, EV_READ);
}

static void
server_write(struct bufferevent *bev, void *arg)
{
    (void)arg;
    bufferevent_enable(bev, EV_READ);
}

static void
server_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        sconn_free(arg);
}

static void
server_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
              void *arg)
{
    struct server *srv = arg;
    struct sconn *s = calloc(1, sizeof(*s));
    (void)l;
    (void)sa;
    (void)salen;
    if (!s) {
        evutil_closesocket(fd);
        return;
    }
    if (srv->ctx)
        s->bev = bufferevent_openssl_socket_new(srv->base, fd, SSL_new(srv->ctx),
                                                BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    else
        s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!s->bev) {
        evutil_closesocket(fd);
        free(s);
        return;
    }
    nodelay(s->bev);
    bufferevent_setwatermark(s->bev, EV_WRITE, WSB_OUT_HIGH / 2, 0);
    bufferevent_setcb(s->bev, server_read, server_write, server_event, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static int
run_server(int port, const char *cert, const char *key)
{
    struct server srv = {event_base_new(), NULL};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (cert) {
        srv.ctx = SSL_CTX_new(TLS_server_method());
        if (!srv.ctx || SSL_CTX_use_certificate_chain_file(srv.ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(srv.ctx, key, SSL_FILETYPE_PEM) != 1) {
            fprintf(stderr, "ws_bench: cannot load %s / %s\n", cert, key);
            return 1;
        }
    }
    struct evconnlistener *l = evconnlistener_new_bind(srv.base, server_accept, &srv,
                                                       LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
                                                       1024, (struct sockaddr *)&sin, sizeof(sin));
    if (!l) {
        fprintf(stderr, "ws_bench: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    event_base_dispatch(srv.base);
    return 0;
}

/* ---- the load generator ------------------------------------------------------------- */

struct client {
    struct event_base *base;
    SSL_CTX *ctx;
    const char *host, *proxy_host;
    int port, proxy_port, connect, tls;
    int conns, window, seconds, open;
    size_t size;
    unsigned char *frame; /* one whole masked message */
    size_t frame_len;
    uint64_t msgs, bytes;
    struct timespec start;
    int failed;
};

enum cstate { C_CONNECTING, C_TUNNEL, C_UPGRADE, C_OPEN };

struct cconn {
    struct client *c;
    struct bufferevent *bev;
    enum cstate st;
};

static void cconn_read(struct bufferevent *bev, void *arg);
static void cconn_event(struct bufferevent *bev, short what, void *arg);

static void
fail_conn(struct cconn *k, const char *why)
{
    fprintf(stderr, "ws_bench: connection failed: %s\n", why);
    k->c->failed = 1;
    event_base_loopexit(k->c->base, NULL);
}

static void
send_msg(struct cconn *k)
{
    evbuffer_add_reference(bufferevent_get_output(k->bev), k->c->frame, k->c->frame_len, NULL,
                           NULL);
}

/* TCP (or the tunnel) is up: TLS if asked, then the upgrade request. */
static void
start_ws(struct cconn *k)
{
    struct client *c = k->c;
    if (c->tls) {
        SSL *ssl = SSL_new(c->ctx);
        SSL_set_tlsext_host_name(ssl, c->host);
        struct bufferevent *fb =
            bufferevent_openssl_filter_new(c->base, k->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
                                           BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (!fb)
            return fail_conn(k, "TLS");
        bufferevent_openssl_set_allow_dirty_shutdown(fb, 1);
        k->bev = fb;
        bufferevent_setcb(fb, cconn_read, NULL, cconn_event, k);
        bufferevent_enable(fb, EV_READ | EV_WRITE);
    }
    /* ws:// through a proxy: absolute-form; otherwise (direct, tunnel) origin-form */
    char target[300] = "/ws";
    if (c->proxy_host && !c->connect)
        snprintf(target, sizeof(target), "http://%s:%d/ws", c->host, c->port);
    evbuffer_add_printf(bufferevent_get_output(k->bev),
                        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n",
                        target, c->host, c->port);
    k->st = C_UPGRADE;
}

static void
cconn_read(struct bufferevent *bev, void *arg)
{
    struct cconn *k = arg;
    struct client *c = k->c;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    char line[16];
    if (k->st == C_TUNNEL || k->st == C_UPGRADE) {
        if (!(n = head_end(in)))
            return;
        evbuffer_copyout(in, line, sizeof(line));
        evbuffer_drain(in, n);
        if (k->st == C_TUNNEL) {
            if (memcmp(line + 9, "200", 3) != 0)
                return fail_conn(k, "CONNECT refused");
            return start_ws(k);
        }
        if (memcmp(line + 9, "101", 3) != 0)
            return fail_conn(k, "upgrade refused");
        k->st = C_OPEN;
        for (int i = 0; i < c->window; i++)
            send_msg(k);
        if (++c->open == c->conns) {
            clock_gettime(CLOCK_MONOTONIC, &c->start);
            c->msgs = c->bytes = 0;
        }
    }
    size_t hlen;
    uint64_t plen;
    unsigned char b0, mask[4];
    while (frame_peek(in, &hlen, &plen, &b0, mask)) {
        evbuffer_drain(in, hlen + plen);
        c->msgs++;
        c->bytes += plen;
        send_msg(k);
    }
}

static void
cconn_event(struct bufferevent *bev, short what, void *arg)
{
    struct cconn *k = arg;
    struct client *c = k->c;
    if (what & BEV_EVENT_CONNECTED) {
        if (k->st != C_CONNECTING)
            return;
        nodelay(bev);
        if (c->proxy_host && c->connect) {
            evbuffer_add_printf(bufferevent_get_output(bev),
                                "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", c->host, c->port,
                                c->host, c->port);
            k->st = C_TUNNEL;
            return;
        }
        return start_ws(k);
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        fail_conn(k, what & BEV_EVENT_EOF ? "closed" : "error");
}

static void
client_done(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    struct timespec now;
    (void)fd;
    (void)what;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (double)(now.tv_sec - c->start.tv_sec) + (now.tv_nsec - c->start.tv_nsec) / 1e9;
    if (c->open < c->conns || secs <= 0) {
        fprintf(stderr, "ws_bench: only %d of %d connections opened\n", c->open, c->conns);
        c->failed = 1;
    } else {
        printf("conns=%d size=%zu msgs=%llu secs=%.2f msgs_s=%.0f mb_s=%.1f\n", c->conns, c->size,
               (unsigned long long)c->msgs, secs, (double)c->msgs / secs,
               (double)c->bytes / secs / 1e6);
    }
    event_base_loopexit(c->base, NULL);
}

static int
run_client(struct client *c)
{
    static const char words[] = "please draft a short reply to the customer about the delivery "
                                "schedule and the budget for the next quarter ";
    unsigned char h[14];
    size_t hl = frame_head(h, 0x82, c->size, 1);
    c->base = event_base_new();
    c->frame_len = hl + c->size;
    c->frame = malloc(c->frame_len);
    if (!c->base || !c->frame)
        return 1;
    memcpy(c->frame, h, hl);
    for (size_t i = 0; i < c->size; i++)
        c->frame[hl + i] = (unsigned char)words[i % (sizeof(words) - 1)];
    if (c->tls) {
        c->ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    }
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_port = htons((uint16_t)(c->proxy_host ? c->proxy_port : c->port));
    if (inet_pton(AF_INET, c->proxy_host ? c->proxy_host : "127.0.0.1", &sin.sin_addr) != 1)
        return 1;
    for (int i = 0; i < c->conns; i++) {
        struct cconn *k = calloc(1, sizeof(*k));
        k->c = c;
        k->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
        bufferevent_setcb(k->bev, cconn_read, NULL, cconn_event, k);
        bufferevent_enable(k->bev, EV_READ | EV_WRITE);
        if (bufferevent_socket_connect(k->bev, (struct sockaddr *)&sin, sizeof(sin)) < 0)
            return 1;
    }
    struct timeval tv = {c->seconds, 0};
    struct event *done = evtimer_new(c->base, client_done, c);
    evtimer_add(done, &tv);
    event_base_dispatch(c->base);
    return c->failed;
}

int
main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* a peer that leaves is an event, not the end of the process */
    if (argc >= 3 && strcmp(argv[1], "server") == 0)
        return run_server(atoi(argv[2]), argc >= 5 ? argv[3] : NULL, argc >= 5 ? argv[4] : NULL);
    if (argc < 4 || strcmp(argv[1], "client") != 0) {
        fprintf(stderr, "usage: ws_bench server PORT [CERT KEY]\n"
                        "       ws_bench client HOST PORT [--proxy HOST:PORT] [--connect] "
                        "[--tls] [--conns N] [--size BYTES] [--window W] [--seconds S]\n");
        return 2;
    }
    struct client c = {.host = argv[2],
                       .port = atoi(argv[3]),
                       .conns = 8,
                       .size = 128,
                       .window = 32,
                       .seconds = 5};
    static char phost[64];
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(a, "--proxy") == 0) {
            const char *colon = strrchr(v, ':');
            if (!colon || (size_t)(colon - v) >= sizeof(phost))
                return 2;
            memcpy(phost, v, (size_t)(colon - v));
            c.proxy_host = phost;
            c.proxy_port = atoi(colon + 1);
            i++;
        } else if (strcmp(a, "--connect") == 0) {
            c.connect = 1;
        } else if (strcmp(a, "--tls") == 0) {
            c.tls = 1;
        } else if (strcmp(a, "--conns") == 0) {
            c.conns = atoi(v), i++;
        } else if (strcmp(a, "--size") == 0) {
            c.size = (size_t)atol(v), i++;
        } else if (strcmp(a, "--window") == 0) {
            c.window = atoi(v), i++;
        } else if (strcmp(a, "--seconds") == 0) {
            c.seconds = atoi(v), i++;
        } else {
            fprintf(stderr, "ws_bench: unknown option %s\n", a);
            return 2;
        }
    }
    if (c.conns < 1 || c.window < 1 || c.seconds < 1)
        return 2;
    return run_client(&c);
}
