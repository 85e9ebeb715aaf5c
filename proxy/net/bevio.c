/* How the proxy's bufferevents move bytes (see bevio.h). */
#include "aigate/net/bevio.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h> /* ev_write, to write in this pass */
#include <event2/event.h>

#include "aigate/net/tlsbev.h"

/*
 * Bytes were queued: libevent has asked to be told when the socket is
 * writable.  Run its write handler in this pass instead; it unwatches the
 * socket once the buffer is empty.  (Its own callback on the buffer runs
 * after this one: a first add to an empty buffer is written when the
 * socket says so, later ones in the same pass.)  TLS on the socket: first
 * the output is made fewer, larger records (tlsbev_coalesce).
 */
static void
output_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct bufferevent *bev = arg;
    (void)buf;
    if (!info->n_added)
        return;
    tlsbev_coalesce(bev);
    if ((bufferevent_get_enabled(bev) & EV_WRITE) && event_pending(&bev->ev_write, EV_WRITE, NULL))
        event_active(&bev->ev_write, EV_WRITE, 1);
}

int
bevio_set(struct bufferevent *bev)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);
    bufferevent_set_max_single_read(bev, BEVIO_CHUNK);
    bufferevent_set_max_single_write(bev, BEVIO_CHUNK);
    if (under) {
        bufferevent_set_max_single_read(under, BEVIO_CHUNK);
        bufferevent_set_max_single_write(under, BEVIO_CHUNK);
        return 0; /* a filter: it writes into under, which is written as before */
    }
    return evbuffer_add_cb(bufferevent_get_output(bev), output_added, bev) ? 0 : -1;
}
