/*
 * The CONNECT relay.  It starts on the bufferevents (the 200 answer and any
 * bytes already buffered move between evbuffers by reference); as soon as
 * both sides are quiet and empty it switches to splice(2) through a pipe per
 * direction, so the bulk of a tunnel never enters user space.  Each pipe is
 * the only buffer of its direction: while it holds data, the sending side is
 * not read (back-pressure).  The tunnel ends when both directions are closed
 * and flushed, on an error from either side, or on the idle timeout; then one
 * audit line is written.
 */
#include "aigate/tunnel.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aigate/conn.h"
#include "aigate/upstream.h"
#include "aigate/worker.h"

#define TUNNEL_HIGH_WATER (512 * 1024)
#define TUNNEL_LOW_WATER (128 * 1024)
#define TUNNEL_IO_CHUNK (256 * 1024)
/* Room for a few bursts; more only lets data go cold in the cache before it is sent. */
#define TUNNEL_PIPE_SIZE (256 * 1024)

/* One direction of a spliced tunnel: from -> pipe -> to. */
struct splice_dir {
    struct conn *c;
    int from, to;
    int pipe[2];
    size_t inpipe; /* bytes in the pipe, not yet written to `to` */
    size_t cap;    /* the pipe's size: reading stops while it is full */
    int eof, shut;
    struct event *rev, *wev;
    uint64_t *count;
    struct splice_dir *other;
};

struct tunnel_splice {
    struct splice_dir up, down; /* client->origin, origin->client */
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
}

void
tunnel_free(struct conn *c)
{
    if (!c->splice)
        return;
    splice_dir_free(&c->splice->up);
    splice_dir_free(&c->splice->down);
    free(c->splice);
    c->splice = NULL;
}

static void maybe_splice(struct conn *c);

static void
tunnel_end(struct conn *c, const char *why)
{
    (void)why;
    tunnel_free(c);
    conn_audit(c, c->req, c->req->action ? c->req->action : "allow", c->req->status);
    c->req->keep_alive = 0;
    conn_request_end(c);
}

/* Move what src has read into dst's output; apply back-pressure on src. */
static void
relay(struct bufferevent *src, struct bufferevent *dst, uint64_t *count)
{
    struct evbuffer *in = bufferevent_get_input(src);
    struct evbuffer *out = bufferevent_get_output(dst);
    size_t n = evbuffer_get_length(in);
    if (n) {
        evbuffer_remove_buffer(in, out, n);
        *count += n;
    }
    if (evbuffer_get_length(out) > TUNNEL_HIGH_WATER)
        bufferevent_disable(src, EV_READ);
}

/* Shut down writing on dst once its output is empty and its peer has sent EOF. */
static void
maybe_shutdown(struct conn *c)
{
    if (c->up_eof && !c->client_shut && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
        c->client_shut = 1;
    }
    if (c->client_eof && !c->up_shut &&
        evbuffer_get_length(bufferevent_get_output(c->up->bev)) == 0) {
        shutdown(bufferevent_getfd(c->up->bev), SHUT_WR);
        c->up_shut = 1;
    }
    if (c->client_shut && c->up_shut)
        tunnel_end(c, "both sides closed");
}

static void
up_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    conn_touch(c);
    relay(bev, c->bev, &c->req->bytes_out);
}

static void
up_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    conn_touch(c);
    if (!c->client_eof)
        bufferevent_enable(c->bev, EV_READ);
    maybe_shutdown(c);
    if (c->state == CS_TUNNEL && c->req)
        maybe_splice(c);
}

static void
up_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_ERROR) {
        tunnel_end(c, "origin error");
        return;
    }
    if (what & BEV_EVENT_EOF) {
        relay(bev, c->bev, &c->req->bytes_out);
        c->up_eof = 1;
        maybe_shutdown(c);
    }
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
    struct conn *c = d->c;
    conn_touch(c);
    if (d->inpipe < d->cap && !d->eof) {
        ssize_t n = splice(d->from, NULL, d->pipe[1], NULL, d->cap - d->inpipe,
                           SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (n > 0)
            d->inpipe += (size_t)n;
        else if (n == 0)
            d->eof = 1;
        else if (errno != EAGAIN && errno != EINTR)
            return tunnel_end(c, "read error");
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
        return tunnel_end(c, "write error");
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
        tunnel_end(c, "both sides closed");
}

static int
splice_dir_init(struct conn *c, struct splice_dir *d, int from, int to, uint64_t *count)
{
    d->c = c;
    d->from = from;
    d->to = to;
    d->count = count;
    d->pipe[0] = d->pipe[1] = -1;
    if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    fcntl(d->pipe[1], F_SETPIPE_SZ, TUNNEL_PIPE_SIZE);
    int sz = fcntl(d->pipe[1], F_GETPIPE_SZ);
    d->cap = sz > 0 ? (size_t)sz : 65536;
    d->rev = event_new(c->w->base, from, EV_READ | EV_PERSIST, splice_readable, d);
    d->wev = event_new(c->w->base, to, EV_WRITE | EV_PERSIST, splice_readable, d);
    return d->rev && d->wev ? 0 : -1;
}

/*
 * Switch to splice(2) once nothing is buffered on either side and neither
 * has closed: from then on the bufferevents stay disabled (they still own
 * the sockets) and the pipes carry the data.
 */
static void
maybe_splice(struct conn *c)
{
    struct bufferevent *ub = c->up->bev;
    if (c->splice || c->client_eof || c->up_eof ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) ||
        evbuffer_get_length(bufferevent_get_input(c->bev)) ||
        evbuffer_get_length(bufferevent_get_output(ub)) ||
        evbuffer_get_length(bufferevent_get_input(ub)))
        return;
    struct tunnel_splice *s = calloc(1, sizeof(*s));
    if (!s)
        return;
    c->splice = s;
    int cfd = bufferevent_getfd(c->bev), ufd = bufferevent_getfd(ub);
    if (splice_dir_init(c, &s->up, cfd, ufd, &c->req->bytes_in) < 0 ||
        splice_dir_init(c, &s->down, ufd, cfd, &c->req->bytes_out) < 0) {
        tunnel_free(c); /* stay on the bufferevents */
        return;
    }
    s->up.other = &s->down;
    s->down.other = &s->up;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_disable(ub, EV_READ | EV_WRITE);
    event_add(s->up.rev, NULL);
    event_add(s->down.rev, NULL);
}

void
tunnel_start(struct conn *c)
{
    struct bufferevent *ub = c->up->bev;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    evbuffer_add(out, ok, sizeof(ok) - 1);
    c->req->status = 200;
    c->req->bytes_out += sizeof(ok) - 1;
    c->req->body_done = 1;
    c->state = CS_TUNNEL;
    bufferevent_setcb(ub, up_read, up_write, up_event, c);
    bufferevent_setwatermark(ub, EV_WRITE, TUNNEL_LOW_WATER, 0);
    bufferevent_setwatermark(ub, EV_READ, 0, 0);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_setwatermark(c->bev, EV_WRITE, TUNNEL_LOW_WATER, 0);
    /* Bulk data: move it in large reads and writes (the default is 16 KiB a call). */
    bufferevent_set_max_single_read(ub, TUNNEL_IO_CHUNK);
    bufferevent_set_max_single_write(ub, TUNNEL_IO_CHUNK);
    bufferevent_set_max_single_read(c->bev, TUNNEL_IO_CHUNK);
    bufferevent_set_max_single_write(c->bev, TUNNEL_IO_CHUNK);
    bufferevent_enable(ub, EV_READ | EV_WRITE);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* Bytes the client pipelined after the CONNECT head (a TLS hello). */
    tunnel_client_read(c);
    if (c->client_eof)
        tunnel_client_eof(c);
}

void
tunnel_client_read(struct conn *c)
{
    relay(c->bev, c->up->bev, &c->req->bytes_in);
}

void
tunnel_client_write(struct conn *c)
{
    if (c->splice)
        return;
    if (!c->up_eof)
        bufferevent_enable(c->up->bev, EV_READ);
    maybe_shutdown(c);
    if (c->state == CS_TUNNEL && c->req)
        maybe_splice(c);
}

void
tunnel_client_eof(struct conn *c)
{
    relay(c->bev, c->up->bev, &c->req->bytes_in);
    maybe_shutdown(c);
}
