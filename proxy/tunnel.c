/*
 * The CONNECT relay.  Data moves between the two bufferevents by
 * evbuffer_remove_buffer (chains are handed over, not copied).  The tunnel
 * ends when both directions are closed and flushed, on an error from either
 * side, or on the idle timeout; then one audit line is written.
 */
#include "aigate/tunnel.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>

#include "aigate/conn.h"
#include "aigate/upstream.h"

#define TUNNEL_HIGH_WATER (512 * 1024)
#define TUNNEL_LOW_WATER (128 * 1024)
#define TUNNEL_IO_CHUNK (256 * 1024)

static void
tunnel_end(struct conn *c, const char *why)
{
    (void)why;
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
    if (c->up_eof && !c->client_shut &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
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
    if (!c->up_eof)
        bufferevent_enable(c->up->bev, EV_READ);
    maybe_shutdown(c);
}

void
tunnel_client_eof(struct conn *c)
{
    relay(c->bev, c->up->bev, &c->req->bytes_in);
    maybe_shutdown(c);
}
