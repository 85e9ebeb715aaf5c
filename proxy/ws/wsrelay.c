/*
 * The inspecting WebSocket relay (see wsrelay.h): a tunnel filter holding a
 * parser per direction.
 *
 * Each direction keeps two stream offsets: fed, the bytes given to its
 * parser, and taken, the bytes removed from the sending side's input
 * (forwarded, or dropped once the direction is over).  The input always
 * starts at offset taken, so the bytes not yet fed start fed - taken into
 * it, and what the parser releases beyond taken is what may go on now.
 *
 * Ending a WebSocket (a blocked message, bad client framing) is two steps:
 * the client's direction stops at once, with the 1001 for the origin
 * written after the last released byte; the origin's parser is told to
 * stop at its next frame boundary, and when it reaches it (often at once)
 * the client's close frame follows the origin's last whole frame and the
 * tunnel finishes.
 */
#include "aigate/ws/wsrelay.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>

#include "aigate/core/log.h"
#include "aigate/net/tunnel.h"
#include "aigate/ws/ws.h"

enum { WSR_UP, WSR_DOWN }; /* client to origin, origin to client */

struct wsrelay {
    struct tunnel *t;
    struct ws_parser *p[2];
    uint64_t fed[2], taken[2];
    unsigned over[2];   /* that direction forwards nothing more */
    unsigned closing;   /* the client's close waits for the origin's frame boundary */
    unsigned peer_gone; /* the origin's close already went to the client */
    const struct dlp *dlp;
    const char *rule; /* the rule that blocked a message */
    uint16_t code;    /* the close to send the client */
    char reason[124];
    const struct wsrelay_ops *ops;
    void *arg;
};

/* ---- messages --------------------------------------------------------------- */

/* The inspecting parser's callback: scan the message, let the owner judge what it holds. */
static int
on_message(void *arg, const struct ws_msg *m)
{
    struct wsrelay *w = arg;
    unsigned found = ws_msg_dlp(w->dlp, m);
    if (!found)
        return 0;
    w->rule = w->ops->judge(w->arg, found);
    return w->rule != NULL;
}

/* ---- ending the WebSocket ------------------------------------------------------ */

/* The origin's frames stopped at a boundary: the client's close goes after them, then the end. */
static void
close_client(struct wsrelay *w)
{
    unsigned char frame[WS_CLOSE_FRAME_MAX];
    size_t n;
    w->closing = 0;
    w->over[WSR_DOWN] = 1;
    /* A client that already has the origin's close frame gets no second one. */
    if (!w->peer_gone && (n = ws_close_frame(frame, 0, w->code, w->reason)) > 0)
        tunnel_write(w->t, 1, frame, n);
    tunnel_finish(w->t, w->rule ? "message blocked" : "client framing error");
}

/*
 * Stop the client's direction (its bytes from now on are dropped), close
 * towards the origin when to_origin, and close the client with code and
 * reason once the origin's frame in progress has ended.
 */
static void
end_websocket(struct wsrelay *w, uint16_t code, const char *reason, int to_origin)
{
    static const unsigned char none[1];
    unsigned char frame[WS_CLOSE_FRAME_MAX];
    size_t n, used;
    w->over[WSR_UP] = 1;
    w->code = code;
    snprintf(w->reason, sizeof(w->reason), "%s", reason);
    if (to_origin && (n = ws_close_frame(frame, 1, WS_CLOSE_GOING_AWAY, NULL)) > 0)
        tunnel_write(w->t, 0, frame, n);
    if (w->over[WSR_DOWN])
        return close_client(w);
    w->closing = 1;
    ws_parser_stop(w->p[WSR_DOWN]);
    /* Nothing of the origin's stream is unfed: at a boundary now, or after more of its bytes. */
    if (ws_parser_feed(w->p[WSR_DOWN], none, 0, &used) != WS_AGAIN)
        close_client(w);
}

/* ---- the filter ---------------------------------------------------------------- */

/* Feed the parser of direction d the bytes of in it has not seen; its last answer. */
static int
feed(struct wsrelay *w, int d, struct evbuffer *in)
{
    size_t have = evbuffer_get_length(in);
    int rc = WS_AGAIN;
    while (rc == WS_AGAIN && w->fed[d] - w->taken[d] < have) {
        struct evbuffer_iovec vec[16];
        struct evbuffer_ptr pos;
        size_t skip = (size_t)(w->fed[d] - w->taken[d]);
        evbuffer_ptr_set(in, &pos, skip, EVBUFFER_PTR_SET);
        int nv = evbuffer_peek(in, (ev_ssize_t)(have - skip), &pos, vec, 16);
        if (nv <= 0)
            break;
        for (int i = 0; i < nv && i < 16 && rc == WS_AGAIN; i++) {
            size_t used = 0;
            rc = ws_parser_feed(w->p[d], vec[i].iov_base, vec[i].iov_len, &used);
            w->fed[d] += used;
        }
    }
    return rc;
}

static void
filter_relay(void *arg, int from_client, struct evbuffer *in, struct evbuffer *out, int eof)
{
    struct wsrelay *w = arg;
    int d = from_client ? WSR_UP : WSR_DOWN;
    (void)eof; /* what is held at EOF is dropped by the tunnel: it was never inspected */
    if (w->over[d]) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    int rc = feed(w, d, in);
    size_t n = (size_t)(ws_parser_released(w->p[d]) - w->taken[d]);
    evbuffer_remove_buffer(in, out, n);
    w->taken[d] += n;
    switch (rc) {
    case WS_AGAIN:
        return;
    case WS_CLOSED:
        /* The close frame went on; nothing after it is part of the WebSocket. */
        w->over[d] = 1;
        w->peer_gone |= d == WSR_DOWN;
        if (d == WSR_DOWN && w->closing)
            close_client(w);
        break;
    case WS_BOUNDARY:
        close_client(w);
        break;
    case WS_BLOCKED: {
        char reason[160];
        snprintf(reason, sizeof(reason), "blocked by aigate rule %s", w->rule);
        log_debug("websocket: a message was blocked by rule %s", w->rule);
        end_websocket(w, WS_CLOSE_POLICY, reason, 1);
        break;
    }
    case WS_ERROR:
        if (d == WSR_DOWN) {
            log_info("websocket: the origin sent a malformed frame (%s)", ws_parser_error(w->p[d]));
            w->over[WSR_UP] = w->over[WSR_DOWN] = 1;
            tunnel_finish(w->t, "origin framing error");
            break;
        }
        log_info("websocket: the client sent a malformed frame (%s)", ws_parser_error(w->p[d]));
        end_websocket(w, (uint16_t)ws_parser_close_code(w->p[d]), ws_parser_error(w->p[d]),
                      ws_parser_at_boundary(w->p[d]));
        break;
    }
    evbuffer_drain(in, evbuffer_get_length(in));
}

static const struct tunnel_filter filter = {filter_relay};

/* ---- the tunnel's reports, passed on ------------------------------------------------ */

static void
relay_activity(void *arg)
{
    struct wsrelay *w = arg;
    w->ops->activity(w->arg);
}

static void
relay_end(void *arg, const char *why)
{
    struct wsrelay *w = arg;
    w->ops->end(w->arg, why);
}

static const struct tunnel_ops tops = {relay_activity, relay_end};

/* ---- life ------------------------------------------------------------------------------ */

struct wsrelay *
wsrelay_start(struct event_base *base, struct bufferevent *client, struct bufferevent *origin,
              int client_eof, const struct ws_deflate *pmd, size_t limit, const struct dlp *d,
              uint64_t *up, uint64_t *down, const struct wsrelay_ops *ops, void *arg)
{
    struct wsrelay *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->dlp = d;
    w->ops = ops;
    w->arg = arg;
    if (!(w->p[WSR_UP] = ws_parser_new(WS_FROM_CLIENT, pmd, limit, on_message, w)) ||
        !(w->p[WSR_DOWN] = ws_parser_new(WS_FROM_SERVER, pmd, limit, NULL, NULL)) ||
        !(w->t = tunnel_start(base, client, origin, client_eof, 0, up, down, &tops, w)))
        goto fail;
    tunnel_set_filter(w->t, &filter, w);
    return w;
fail:
    ws_parser_free(w->p[WSR_UP]);
    ws_parser_free(w->p[WSR_DOWN]);
    free(w);
    return NULL;
}

void
wsrelay_free(struct wsrelay *w)
{
    if (!w)
        return;
    tunnel_free(w->t);
    ws_parser_free(w->p[WSR_UP]);
    ws_parser_free(w->p[WSR_DOWN]);
    free(w);
}
