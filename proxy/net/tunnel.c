/*
 * The relay.  It starts on the bufferevents (bytes move between evbuffers by
 * reference); as soon as both sides are quiet and empty, and the caller
 * allowed it, it switches to splice(2) through a pipe per direction.  Each
 * pipe is the only buffer of its direction: while it holds data, the sending
 * side is not read (back-pressure).  The relay ends when both directions are
 * closed and flushed, or on an error from either side.
 *
 * A TLS side (an OpenSSL filter bufferevent) counts as written only when
 * the socket below it has taken everything too; a callback on that socket's
 * output wakes the tunnel when it drains, since the filter's own write
 * callback does not.
 *
 * Invariant: ops->end runs at most once, always from a libevent callback,
 * and is the last thing the tunnel does there (the owner may free it from
 * inside); after it the tunnel does nothing until tunnel_free().
 */
#include "aigate/net/tunnel.h"
#include "aigate/net/tlsbev.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define TUNNEL_HIGH_WATER (512 * 1024)
#define TUNNEL_LOW_WATER (128 * 1024)
/* Room for a few bursts; more only lets data go cold in the cache before it is sent. */
#define TUNNEL_PIPE_SIZE (256 * 1024)

/* One direction of a spliced tunnel: from -> pipe -> to. */
struct splice_dir {
    struct tunnel *t;
    int from, to;
    int pipe[2];
    size_t inpipe; /* bytes in the pipe, not yet written to `to` */
    size_t cap;    /* the pipe's size: reading stops while it is full */
    int eof, shut;
    struct event *rev, *wev;
    uint64_t *count;
    struct splice_dir *other;
};

struct tunnel {
    struct event_base *base;
    struct bufferevent *client, *origin;
    const struct tunnel_ops *ops;
    void *arg;
    uint64_t *up, *down;
    unsigned client_eof : 1, origin_eof : 1, client_shut : 1, origin_shut : 1, splice_ok : 1,
        spliced : 1, ended : 1, kicked : 1, finishing : 1;
    struct event *kick; /* from the loop: the first pass over what was buffered, later checks */
    struct splice_dir sup, sdown;
    const struct tunnel_filter *filter;
    void *farg;
    const char *finish_why;
    /* on the output of the socket below a TLS side: client, origin */
    struct evbuffer_cb_entry *under_cb[2];
};

static void
splice_dir_free(struct splice_dir *d)
{
    if (d->rev)
        event_free(d->rev);
    if (d->wev)
        event_free(d->wev);
    if (d->pipe[0] >= 0)
        close(d->pipe[0]);
    if (d->pipe[1] >= 0)
        close(d->pipe[1]);
    d->rev = d->wev = NULL;
    d->pipe[0] = d->pipe[1] = -1;
}

static void
tunnel_end(struct tunnel *t, const char *why)
{
    if (t->ended)
        return;
    t->ended = 1;
    bufferevent_disable(t->client, EV_READ);
    bufferevent_disable(t->origin, EV_READ | EV_WRITE);
    if (t->spliced) {
        if (t->sup.rev)
            event_del(t->sup.rev);
        if (t->sup.wev)
            event_del(t->sup.wev);
        if (t->sdown.rev)
            event_del(t->sdown.rev);
        if (t->sdown.wev)
            event_del(t->sdown.wev);
    }
    t->ops->end(t->arg, why);
}

/* The socket's bufferevent: bev itself, or the one below its TLS layer. */
static struct bufferevent *
below(struct bufferevent *bev)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);
    return under ? under : bev;
}

/* 1 when everything written to bev has reached its socket (through a TLS layer too). */
static int
flushed(struct bufferevent *bev)
{
    return evbuffer_get_length(bufferevent_get_output(bev)) == 0 &&
           evbuffer_get_length(bufferevent_get_output(below(bev))) == 0;
}

/*
 * Move what src has read into dst's output (through the filter, if any);
 * apply back-pressure on src.  Finishing, it is dropped.
 */
static void
relay(struct tunnel *t, struct bufferevent *src, struct bufferevent *dst, uint64_t *count)
{
    struct evbuffer *in = bufferevent_get_input(src);
    struct evbuffer *out = bufferevent_get_output(dst);
    size_t n = evbuffer_get_length(in);
    int from_client = src == t->client;
    int eof = from_client ? t->client_eof : t->origin_eof;

    if (t->finishing) {
        evbuffer_drain(in, n);
        *count += n;
        return;
    }
    if (!t->filter) {
        evbuffer_remove_buffer(in, out, n);
    } else if (n || eof) {
        t->filter->relay(t->farg, from_client, in, out, eof);
        if (eof)
            evbuffer_drain(in, evbuffer_get_length(in));
    }
    *count += n - evbuffer_get_length(in);
    if (!t->finishing && evbuffer_get_length(out) > TUNNEL_HIGH_WATER)
        bufferevent_disable(src, EV_READ);
}

/*
 * Shut down writing towards a side once its output is written and its peer
 * has sent EOF; end when both are shut, or when finishing and both outputs
 * are written.  1 if the tunnel ended (the caller returns at once: the
 * owner may have freed it).
 */
static int
maybe_shutdown(struct tunnel *t)
{
    if (t->ended)
        return 1;
    if (t->finishing) {
        if (!flushed(t->client) || !flushed(t->origin))
            return 0;
        tunnel_end(t, t->finish_why);
        return 1;
    }
    if (t->origin_eof && !t->client_shut && flushed(t->client)) {
        shutdown(bufferevent_getfd(below(t->client)), SHUT_WR);
        t->client_shut = 1;
    }
    if (t->client_eof && !t->origin_shut && flushed(t->origin)) {
        shutdown(bufferevent_getfd(below(t->origin)), SHUT_WR);
        t->origin_shut = 1;
    }
    if (!t->client_shut || !t->origin_shut)
        return 0;
    tunnel_end(t, "both sides closed");
    return 1;
}

static void splice_step(struct splice_dir *d);

static void
splice_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    splice_step(arg);
}

/*
 * Move what can be moved: read from `from` into the pipe while it has room,
 * write the pipe out to `to`; wait for writability when `to` is full, and
 * stop reading while the pipe is full (that is the back-pressure).
 */
static void
splice_step(struct splice_dir *d)
{
    struct tunnel *t = d->t;
    if (t->ended)
        return;
    t->ops->activity(t->arg);
    if (d->inpipe < d->cap && !d->eof) {
        ssize_t n = splice(d->from, NULL, d->pipe[1], NULL, d->cap - d->inpipe,
                           SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (n > 0)
            d->inpipe += (size_t)n;
        else if (n == 0)
            d->eof = 1;
        else if (errno != EAGAIN && errno != EINTR)
            return tunnel_end(t, "read error");
    }
    while (d->inpipe > 0) {
        ssize_t m =
            splice(d->pipe[0], NULL, d->to, NULL, d->inpipe, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (m > 0) {
            d->inpipe -= (size_t)m;
            *d->count += (uint64_t)m;
            continue;
        }
        if (m < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        return tunnel_end(t, "write error");
    }
    if (d->inpipe > 0)
        event_add(d->wev, NULL);
    else
        event_del(d->wev);
    if (!d->eof && d->inpipe < d->cap)
        event_add(d->rev, NULL);
    else
        event_del(d->rev);
    if (!d->eof || d->inpipe > 0)
        return;
    if (!d->shut) {
        shutdown(d->to, SHUT_WR);
        d->shut = 1;
    }
    if (d->other->shut)
        tunnel_end(t, "both sides closed");
}

static int
splice_dir_init(struct tunnel *t, struct splice_dir *d, int from, int to, uint64_t *count)
{
    d->t = t;
    d->from = from;
    d->to = to;
    d->count = count;
    if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        d->pipe[0] = d->pipe[1] = -1;
        return -1;
    }
    fcntl(d->pipe[1], F_SETPIPE_SZ, TUNNEL_PIPE_SIZE);
    int sz = fcntl(d->pipe[1], F_GETPIPE_SZ);
    d->cap = sz > 0 ? (size_t)sz : 65536;
    d->rev = event_new(t->base, from, EV_READ | EV_PERSIST, splice_readable, d);
    d->wev = event_new(t->base, to, EV_WRITE | EV_PERSIST, splice_readable, d);
    return d->rev && d->wev ? 0 : -1;
}

/*
 * Switch to splice(2) once nothing is buffered on either side and neither
 * has closed: from then on the bufferevents stay disabled (they still own
 * the sockets) and the pipes carry the data.  Without pipes (descriptors
 * short) the relay simply stays on the bufferevents.
 */
static void
maybe_splice(struct tunnel *t)
{
    if (!t->splice_ok || t->spliced || t->ended || t->client_eof || t->origin_eof ||
        evbuffer_get_length(bufferevent_get_output(t->client)) ||
        evbuffer_get_length(bufferevent_get_input(t->client)) ||
        evbuffer_get_length(bufferevent_get_output(t->origin)) ||
        evbuffer_get_length(bufferevent_get_input(t->origin)))
        return;
    int cfd = bufferevent_getfd(t->client), ofd = bufferevent_getfd(t->origin);
    if (splice_dir_init(t, &t->sup, cfd, ofd, t->up) < 0 ||
        splice_dir_init(t, &t->sdown, ofd, cfd, t->down) < 0) {
        splice_dir_free(&t->sup);
        splice_dir_free(&t->sdown);
        t->splice_ok = 0;
        return;
    }
    t->spliced = 1;
    t->sup.other = &t->sdown;
    t->sdown.other = &t->sup;
    bufferevent_disable(t->client, EV_READ | EV_WRITE);
    bufferevent_disable(t->origin, EV_READ | EV_WRITE);
    event_add(t->sup.rev, NULL);
    event_add(t->sdown.rev, NULL);
}

static void
client_read(struct bufferevent *bev, void *arg)
{
    struct tunnel *t = arg;
    if (t->ended)
        return;
    t->ops->activity(t->arg);
    relay(t, bev, t->origin, t->up);
    maybe_shutdown(t);
}

static void
client_write(struct bufferevent *bev, void *arg)
{
    struct tunnel *t = arg;
    (void)bev;
    if (t->spliced || t->ended)
        return;
    t->ops->activity(t->arg);
    if (!t->origin_eof)
        tlsbev_read_on(t->origin, 0);
    if (!maybe_shutdown(t))
        maybe_splice(t);
}

static void
side_event(struct tunnel *t, struct bufferevent *bev, short what)
{
    int is_client = bev == t->client;
    if (t->ended)
        return;
    if (what & BEV_EVENT_ERROR)
        return tunnel_end(t, is_client ? "client error" : "origin error");
    if (!(what & BEV_EVENT_EOF))
        return;
    if (is_client) {
        t->client_eof = 1;
        relay(t, bev, t->origin, t->up);
    } else {
        t->origin_eof = 1;
        relay(t, bev, t->client, t->down);
    }
    maybe_shutdown(t);
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
    side_event(arg, bev, what);
}

static void
origin_read(struct bufferevent *bev, void *arg)
{
    struct tunnel *t = arg;
    if (t->ended)
        return;
    t->ops->activity(t->arg);
    relay(t, bev, t->client, t->down);
    maybe_shutdown(t);
}

static void
origin_write(struct bufferevent *bev, void *arg)
{
    struct tunnel *t = arg;
    (void)bev;
    if (t->spliced || t->ended)
        return;
    t->ops->activity(t->arg);
    if (!t->client_eof)
        tlsbev_read_on(t->client, 0);
    if (!maybe_shutdown(t))
        maybe_splice(t);
}

static void
origin_event(struct bufferevent *bev, short what, void *arg)
{
    side_event(arg, bev, what);
}

/*
 * From the loop.  The first time, what was buffered before the tunnel
 * started: bytes that came with the CONNECT head (a TLS hello) or after a
 * 101, an EOF already seen.  Later: a TLS side's socket drained, or the
 * relay is finishing.
 */
static void
tunnel_kick(evutil_socket_t fd, short what, void *arg)
{
    struct tunnel *t = arg;
    (void)fd;
    (void)what;
    if (t->ended)
        return;
    if (!t->kicked) {
        t->kicked = 1;
        relay(t, t->client, t->origin, t->up);
        relay(t, t->origin, t->client, t->down);
    }
    maybe_shutdown(t);
}

/* The socket below a TLS side took bytes: once it has all, a half-close or the end may be due. */
static void
under_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct tunnel *t = arg;
    if (!t->ended && info->n_deleted && evbuffer_get_length(buf) == 0 &&
        (t->finishing || t->client_eof || t->origin_eof))
        event_active(t->kick, EV_TIMEOUT, 0);
}

struct tunnel *
tunnel_start(struct event_base *base, struct bufferevent *client, struct bufferevent *origin,
             int client_eof, int splice_ok, uint64_t *up, uint64_t *down,
             const struct tunnel_ops *ops, void *arg)
{
    struct tunnel *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->base = base;
    t->client = client;
    t->origin = origin;
    t->client_eof = client_eof != 0;
    t->splice_ok = splice_ok != 0;
    t->up = up;
    t->down = down;
    t->ops = ops;
    t->arg = arg;
    t->sup.pipe[0] = t->sup.pipe[1] = t->sdown.pipe[0] = t->sdown.pipe[1] = -1;
    if (!(t->kick = event_new(base, -1, 0, tunnel_kick, t))) {
        free(t);
        return NULL;
    }
    struct bufferevent *sides[2] = {client, origin};
    for (int i = 0; i < 2; i++) {
        struct bufferevent *under = bufferevent_get_underlying(sides[i]);
        if (under &&
            !(t->under_cb[i] = evbuffer_add_cb(bufferevent_get_output(under), under_drained, t))) {
            if (i == 1 && t->under_cb[0])
                evbuffer_remove_cb_entry(bufferevent_get_output(below(client)), t->under_cb[0]);
            event_free(t->kick);
            free(t);
            return NULL;
        }
    }
    bufferevent_setcb(origin, origin_read, origin_write, origin_event, t);
    bufferevent_setcb(client, client_read, client_write, client_event, t);
    bufferevent_setwatermark(origin, EV_WRITE, TUNNEL_LOW_WATER, 0);
    bufferevent_setwatermark(client, EV_WRITE, TUNNEL_LOW_WATER, 0);
    tlsbev_read_limit(origin, 0);
    tlsbev_read_limit(client, 0);
    tlsbev_read_on(origin, EV_WRITE);
    if (t->client_eof)
        bufferevent_enable(client, EV_WRITE);
    else
        tlsbev_read_on(client, EV_WRITE);
    event_active(t->kick, EV_TIMEOUT, 0);
    return t;
}

void
tunnel_set_filter(struct tunnel *t, const struct tunnel_filter *f, void *arg)
{
    t->filter = f;
    t->farg = arg;
    t->splice_ok = 0;
}

void
tunnel_write(struct tunnel *t, int to_client, const void *data, size_t len)
{
    evbuffer_add(bufferevent_get_output(to_client ? t->client : t->origin), data, len);
}

void
tunnel_finish(struct tunnel *t, const char *why)
{
    if (t->finishing || t->ended)
        return;
    t->finishing = 1;
    t->finish_why = why;
    /* Keep reading (and dropping) so what the peers still send does not pile up unread. */
    if (!t->client_eof)
        tlsbev_read_on(t->client, 0);
    if (!t->origin_eof)
        tlsbev_read_on(t->origin, 0);
    event_active(t->kick, EV_TIMEOUT, 0);
}

void
tunnel_free(struct tunnel *t)
{
    if (!t)
        return;
    struct bufferevent *sides[2] = {t->client, t->origin};
    for (int i = 0; i < 2; i++)
        if (t->under_cb[i])
            evbuffer_remove_cb_entry(bufferevent_get_output(below(sides[i])), t->under_cb[i]);
    bufferevent_setcb(t->client, NULL, NULL, NULL, NULL);
    bufferevent_setcb(t->origin, NULL, NULL, NULL, NULL);
    splice_dir_free(&t->sup);
    splice_dir_free(&t->sdown);
    event_free(t->kick);
    free(t);
}
