/* TLS on a connection's socket (see tlsbev.h). */
#include "aigate/net/tlsbev.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h> /* ev_read, to hand over what OpenSSL holds */
#include <event2/event.h>
#include <openssl/ssl.h>

#define TLSBEV_RECORD 16384 /* the most a TLS record carries */

/* bev's SSL when bev is TLS with OpenSSL on the socket (not a filter); else NULL. */
static SSL *
socket_ssl(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    return ssl && !bufferevent_get_underlying(bev) ? ssl : NULL;
}

/*
 * Decrypted bytes OpenSSL holds for a TLS bufferevent on its own socket:
 * let its read event run, which reads them if reading is on and not
 * limited (and does nothing otherwise).
 */
static void
kick(struct bufferevent *bev)
{
    SSL *ssl = socket_ssl(bev);
    if (ssl && SSL_pending(ssl) > 0)
        event_active(&bev->ev_read, EV_READ, 1);
}

static void
input_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    if (info->n_deleted)
        kick(arg);
}

/* Write out what plain holds; 1 when it then holds nothing either way. */
static int
plain_empty(struct bufferevent *plain)
{
    evutil_socket_t fd = bufferevent_getfd(plain);
    struct evbuffer *out = bufferevent_get_output(plain);
    if (evbuffer_get_length(bufferevent_get_input(plain)) > 0)
        return 0;
    evbuffer_unfreeze(out, 1); /* the bufferevent keeps it frozen between its own writes */
    while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
        continue;
    evbuffer_freeze(out, 1);
    return evbuffer_get_length(out) == 0;
}

struct bufferevent *
tlsbev_start(struct event_base *base, struct bufferevent *plain, SSL *ssl,
             enum bufferevent_ssl_state st)
{
    /*
     * Deferred callbacks: OpenSSL can meet the peer's close (close_notify, or
     * EOF) in the same pass as the last records, and libevent reports it
     * before it hands those bytes over; deferred, the read callback runs
     * first (and nothing frees the bufferevent inside its own read).
     */
    const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    struct bufferevent *tls;
    if (plain_empty(plain)) {
        tls = bufferevent_openssl_socket_new(base, bufferevent_getfd(plain), ssl, st, opts);
        /* The socket is the TLS layer's now (on failure libevent closed it, with ssl). */
        bufferevent_setfd(plain, -1);
        if (!tls)
            return NULL;
        if (!evbuffer_add_cb(bufferevent_get_input(tls), input_drained, tls)) {
            bufferevent_free(tls);
            return NULL;
        }
        bufferevent_free(plain);
    } else if (!(tls = bufferevent_openssl_filter_new(base, plain, ssl, st, opts))) {
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
    return tls;
}

void
tlsbev_read_on(struct bufferevent *bev, short also)
{
    bufferevent_enable(bev, EV_READ | also);
    kick(bev);
}

void
tlsbev_read_limit(struct bufferevent *bev, size_t high)
{
    bufferevent_setwatermark(bev, EV_READ, 0, high);
    kick(bev);
}

void
tlsbev_coalesce(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t n = evbuffer_get_length(out);
    if (n > TLSBEV_RECORD)
        n = TLSBEV_RECORD;
    if (evbuffer_get_contiguous_space(out) < n && socket_ssl(bev))
        evbuffer_pullup(out, (ev_ssize_t)n);
}
