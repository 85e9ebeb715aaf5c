/*
 * Client connections: read a request head, decide, forward it to the origin
 * (or answer it ourselves), stream the bodies both ways with back-pressure,
 * then either wait for the next request (keep-alive, pipelining answered in
 * order: one exchange at a time, later requests wait in the input buffer) or
 * close.
 *
 * Buffers are bounded: the client input by a read high-watermark, each
 * output by disabling the reading side while the other side's output is
 * above CONN_HIGH_WATER, resumed by the write callback below
 * CONN_LOW_WATER.  Body bytes move between evbuffers by reference
 * (evbuffer_remove_buffer), never copied into our own memory.
 *
 * Invariant: every path that ends a connection goes through conn_close().
 */
#include "aigate/conn.h"

#include <crypt.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aigate/ack.h"
#include "aigate/audit.h"
#include "aigate/auth.h"
#include "aigate/catalog.h"
#include "aigate/caution.h"
#include "aigate/config.h"
#include "aigate/dlp.h"
#include "aigate/http_msg.h"
#include "aigate/log.h"
#include "aigate/offload.h"
#include "aigate/pages.h"
#include "aigate/policy.h"
#include "aigate/tls_mitm.h"
#include "aigate/tunnel.h"
#include "aigate/upstream.h"
#include "aigate/users.h"
#include "aigate/worker.h"

#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER (64 * 1024)

static void client_read(struct bufferevent *bev, void *arg);
static void client_write(struct bufferevent *bev, void *arg);
static void client_event(struct bufferevent *bev, short what, void *arg);
static void conn_next(struct conn *c);
static void conn_timer(evutil_socket_t fd, short what, void *arg);
static int chunked_prefix_ok(struct conn *c);
static void conn_parse(struct conn *c);

long
conn_now_ms(struct conn *c)
{
    struct timeval tv;
    event_base_gettimeofday_cached(c->w->base, &tv);
    return (long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void
timer_arm(struct conn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* Header timeout: a fixed deadline from the start of the head. */
static void
timer_header(struct conn *c)
{
    c->timer_header = 1;
    c->deadline_base_ms = conn_now_ms(c);
    timer_arm(c, c->cfg->limits.header_timeout_ms);
}

/* Idle timeout: a sliding deadline, pushed back by conn_touch(). */
static void
timer_idle(struct conn *c)
{
    c->timer_header = 0;
    c->deadline_base_ms = conn_now_ms(c);
    timer_arm(c, c->cfg->limits.idle_timeout_ms);
}

void
conn_touch(struct conn *c)
{
    if (!c->timer_header)
        c->deadline_base_ms = conn_now_ms(c);
}

struct conn *
conn_new(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->w = w;
    c->cfg = config_ref(w->cfg);
    memcpy(&c->peer, sa, salen < sizeof(c->peer) ? salen : sizeof(c->peer));
    netaddr_ntop(sa, c->peer_str, sizeof(c->peer_str));
    c->allowed = cidr_list_match(&c->cfg->client_networks, sa);
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(w->base, conn_timer, c);
    if (!c->bev || !c->timer) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            close(fd);
        if (c->timer)
            event_free(c->timer);
        config_unref(c->cfg);
        free(c);
        atomic_fetch_sub(&rt.nconns, 1);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&w->conns, c, entry);
    w->nconns++;
    bufferevent_setcb(c->bev, client_read, client_write, client_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->cfg->limits.max_header_bytes + 4096);
    bufferevent_setwatermark(c->bev, EV_WRITE, CONN_LOW_WATER, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CS_HEAD;
    timer_header(c);
    return c;
}

static void
req_free(struct req *r)
{
    if (!r)
        return;
    if (r->head)
        evbuffer_free(r->head);
    free(r->path);
    free(r);
}

static void
conn_release_upstream(struct conn *c, int reusable)
{
    upstream_cancel(c->ureq);
    c->ureq = NULL;
    if (c->up) {
        upstream_release(c->up, reusable);
        c->up = NULL;
    }
}

/* 1 when everything written to the client has left the process (TLS layer included). */
static int
conn_flushed(struct conn *c)
{
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
        return 0;
    struct bufferevent *under = c->intercept ? bufferevent_get_underlying(c->bev) : NULL;
    return !under || evbuffer_get_length(bufferevent_get_output(under)) == 0;
}

/*
 * The socket below an intercepted client drained: if we were only waiting
 * for that to close, wake the timer (never free from inside this callback).
 */
static void
under_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;
    if (c->state == CS_CLOSING && !c->dying && info->n_deleted && evbuffer_get_length(buf) == 0)
        event_active(c->timer, EV_TIMEOUT, 0);
}

void
conn_close(struct conn *c, const char *reason)
{
    c->dying = 1;
    log_debug("conn %s closed: %s", c->peer_str, reason);
    if (c->auth_job)
        offload_cancel(c->auth_job); /* the pool frees it when it comes back */
    caution_ack_cancel(c);
    tunnel_free(c);
    conn_release_upstream(c, 0);
    if (c->req && !c->req->audited) {
        /*
         * Torn down mid-flight (timeout, client or origin error, shutdown):
         * still one line.  Decided requests keep their action and the status
         * already sent (null if none); undecided ones are errors.
         */
        struct req *r = c->req;
        conn_audit(c, r, r->action ? r->action : "error",
                   r->resp_head_done || r->is_connect ? r->status : -1);
    }
    req_free(c->req);
    if (c->tunnel_req) {
        /* The intercepted CONNECT ends with the connection: its own audit line. */
        c->intercept = 0;
        conn_audit(c, c->tunnel_req, c->tunnel_req->action, 200);
        req_free(c->tunnel_req);
    }
    if (c->bev)
        bufferevent_free(c->bev);
    event_free(c->timer);
    TAILQ_REMOVE(&c->w->conns, c, entry);
    c->w->nconns--;
    atomic_fetch_sub(&rt.nconns, 1);
    struct worker *w = c->w;
    config_unref(c->cfg);
    free(c);
    worker_conn_gone(w);
}

void
conn_drain_all(struct worker *w)
{
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&w->conns); c; c = next) {
        next = TAILQ_NEXT(c, entry);
        if ((c->state == CS_IDLE || c->state == CS_HEAD) &&
            evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            conn_close(c, "shutdown");
    }
}

void
conn_free_all(struct worker *w)
{
    while (!TAILQ_EMPTY(&w->conns))
        conn_close(TAILQ_FIRST(&w->conns), "shutdown grace over");
}

/* ---- audit --------------------------------------------------------------- */

void
conn_audit(struct conn *c, struct req *r, const char *action, int status)
{
    if (r)
        r->audited = 1;
    if (!rt.audit)
        return;
    struct audit_rec a = {0};
    const char *names[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    a.ts = now;
    audit_new_id(a.id);
    a.client = c->peer_str;
    a.user = r && r->user[0] ? r->user : NULL;
    a.method = r && r->method[0] ? r->method : NULL;
    a.port = -1;
    a.status = status;
    a.bytes_in = a.bytes_out = a.ms = -1;
    a.action = action;
    if (r) {
        if (r->url.host[0]) {
            a.host = r->url.host;
            a.port = r->url.port;
            a.scheme = r->is_connect || c->intercept ? "https" : r->url.scheme;
        }
        a.path = r->path;
        if (r->svc) {
            a.service = r->svc->id;
            a.category = r->svc->category;
        }
        a.rule = r->rule ? r->rule->name : NULL;
        a.bytes_in = (int64_t)r->bytes_in;
        a.bytes_out = (int64_t)r->bytes_out;
        a.ms = (int64_t)((now.tv_sec - r->start.tv_sec) * 1000 +
                         (now.tv_nsec - r->start.tv_nsec) / 1000000);
        if (r->dlp_mask) {
            a.ndlp = dlp_kinds(r->dlp_mask, c->cfg->dlp, names, 32);
            a.dlp = names;
        }
        a.tls = c->intercept || (r->is_connect && c->tunnel_req == r) ? "intercept"
                : r->is_connect                                       ? "tunnel"
                                                                      : "none";
        a.is_ai = r->is_ai;
    }
    audit_emit(rt.audit, &a);
}

/* ---- local responses ------------------------------------------------------ */

static const char *
status_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 303:
        return "See Other";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 405:
        return "Method Not Allowed";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 508:
        return "Loop Detected";
    default:
        return "Error";
    }
}

static int
client_wants_html(struct conn *c, const char *buf, const struct http_head *h)
{
    if (!buf || !h)
        return c->req && c->req->wants_html;
    int i = http_header_find(buf, h, "Accept");
    return i >= 0 && pages_client_wants_html(buf + h->hdr[i].value.off, h->hdr[i].value.len);
}

/* "ko" when the client's Accept-Language prefers Korean, else "en". */
static const char *
client_lang(struct conn *c, const char *buf, const struct http_head *h)
{
    if (!buf || !h)
        return c->req && c->req->lang_ko ? "ko" : "en";
    int i = http_header_find(buf, h, "Accept-Language");
    return i >= 0 && pages_prefers_korean(buf + h->hdr[i].value.off, h->hdr[i].value.len) ? "ko"
                                                                                          : "en";
}

/*
 * Hand src (emptied) to the client in one piece: one TLS record instead of
 * one per header line when the client side is intercepted.  Counted.
 */
static void
conn_out(struct conn *c, struct evbuffer *src)
{
    if (c->req)
        c->req->bytes_out += evbuffer_get_length(src);
    evbuffer_add_buffer(bufferevent_get_output(c->bev), src);
}

/*
 * Send a response generated by the proxy.  extra: more header lines (each
 * ending CRLF) or NULL.  close: close the connection after it.
 */
void
conn_respond(struct conn *c, int status, const char *extra, const char *ctype,
             struct evbuffer *body, int close_after)
{
    struct evbuffer *out = c->w->scratch;
    size_t blen = body ? evbuffer_get_length(body) : 0;
    int keep = !close_after && c->req && c->req->keep_alive && !c->w->stopping;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nServer: aigate\r\nContent-Type: %s\r\n"
                        "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
                        status, status_reason(status), ctype ? ctype : "text/plain; charset=utf-8",
                        blen, extra ? extra : "", keep ? "" : "Connection: close\r\n");
    if (body && !(c->req && c->req->is_head))
        evbuffer_add_buffer(out, body);
    conn_out(c, out);
    if (c->req) {
        c->req->status = status;
        c->req->keep_alive = keep;
    }
}

/*
 * An error answered by the proxy: page (HTML or text), Proxy-Status, audit
 * line, then the next request or close.
 */
void
conn_error(struct conn *c, int status, const char *perror, const char *title, const char *detail,
           const char *buf, const struct http_head *h, int close_after)
{
    struct evbuffer *body = evbuffer_new();
    char extra[256];
    struct page_vars v = {0};
    const char *ctype = "text/plain; charset=utf-8";
    v.status = status;
    v.title = title;
    v.detail = detail;
    v.lang = client_lang(c, buf, h);
    if (c->req) {
        v.host = c->req->url.host[0] ? c->req->url.host : NULL;
        v.method = c->req->method;
    }
    if (body) {
        if (client_wants_html(c, buf, h) && pages_render(body, c->cfg->pages, PAGE_ERROR, &v) == 0)
            ctype = "text/html; charset=utf-8";
        else {
            evbuffer_drain(body, evbuffer_get_length(body));
            pages_render_text(body, PAGE_ERROR, &v);
        }
    }
    snprintf(extra, sizeof(extra),
             "Proxy-Status: aigate; error=%s\r\nContent-Language: %s\r\n"
             "Vary: Accept, Accept-Language\r\n",
             perror, v.lang);
    conn_respond(c, status, extra, ctype, body, close_after);
    if (body)
        evbuffer_free(body);
    conn_audit(c, c->req, "error", status);
    conn_request_end(c);
}

/* ---- request handling ----------------------------------------------------- */

static struct req *
req_new(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    clock_gettime(CLOCK_REALTIME, &r->start);
    size_t ml = h->method.len < sizeof(r->method) - 1 ? h->method.len : sizeof(r->method) - 1;
    memcpy(r->method, buf + h->method.off, ml);
    r->minor = h->version_minor;
    r->keep_alive = h->keep_alive && !c->w->stopping;
    r->is_head = h->is_head;
    r->is_connect = h->is_connect;
    r->body = h->body;
    r->body_left = h->content_length;
    r->expect_continue = h->expect_continue;
    r->bytes_in = h->head_len;
    r->status = -1;
    int i = http_header_find(buf, h, "Accept");
    r->wants_html =
        i >= 0 && pages_client_wants_html(buf + h->hdr[i].value.off, h->hdr[i].value.len);
    i = http_header_find(buf, h, "Accept-Language");
    r->lang_ko = i >= 0 && pages_prefers_korean(buf + h->hdr[i].value.off, h->hdr[i].value.len);
    if (r->body == HTTP_BODY_NONE || (r->body == HTTP_BODY_LENGTH && r->body_left == 0))
        r->body_done = 1;
    return r;
}

/* The path (and query) for the audit log, bounded. */
static void
req_set_path(struct req *r, const char *buf)
{
    size_t len = r->url.path.len;
    if (len > 8192)
        len = 8192;
    r->path = malloc(len + 2);
    if (!r->path)
        return;
    if (len == 0) {
        strcpy(r->path, "/");
        return;
    }
    memcpy(r->path, buf + r->url.path.off, len);
    r->path[len] = '\0';
}

static void
client_407(struct conn *c, const char *buf, const struct http_head *h)
{
    char extra[400];
    const char *lang = client_lang(c, buf, h);
    snprintf(
        extra, sizeof(extra),
        "Proxy-Authenticate: Basic realm=\"%s\", charset=\"UTF-8\"\r\n"
        "Proxy-Status: aigate; error=http_request_denied; details=\"authentication required\"\r\n"
        "Content-Language: %s\r\nVary: Accept, Accept-Language\r\n",
        c->cfg->auth.realm, lang);
    struct evbuffer *body = evbuffer_new();
    struct page_vars v = {.status = 407,
                          .title = "Proxy authentication required",
                          .detail = "Sign in with your organisation account to use the web.",
                          .lang = lang};
    const char *ctype = "text/plain; charset=utf-8";
    if (body) {
        if (client_wants_html(c, buf, h) && pages_render(body, c->cfg->pages, PAGE_ERROR, &v) == 0)
            ctype = "text/html; charset=utf-8";
        else {
            evbuffer_drain(body, evbuffer_get_length(body));
            pages_render_text(body, PAGE_ERROR, &v);
        }
    }
    conn_respond(c, 407, extra, ctype, body, 0);
    if (body)
        evbuffer_free(body);
}

/*
 * Verifying a password (bcrypt: 50-250 ms) never runs on the event loop:
 * a credential cache miss goes to the offload pool, the request waits in
 * CS_AUTHWAIT with its head still in the input buffer, and when the verdict
 * comes back the head is parsed again and finds it (c->auth_verdict).
 */
struct auth_job {
    struct offload_job job; /* first: the pool hands back this pointer */
    struct config *cfg;     /* keeps the htpasswd db alive */
    struct auth_cred cred;
    uint64_t hash;
    int result;
};

static uint64_t
auth_header_hash(const char *v, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)v[i]) * 1099511628211ULL;
    return h;
}

static int
auth_verify_now(const struct config *cfg, const struct auth_cred *cred)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    int rc = cd ? auth_db_verify(cfg->authdb, cred, cd) : 0;
    free(cd);
    return rc;
}

static void
auth_run(struct offload_job *oj)
{
    struct auth_job *j = (struct auth_job *)oj;
    j->result = auth_verify_now(j->cfg, &j->cred);
}

static void
auth_done(struct offload_job *oj)
{
    struct auth_job *j = (struct auth_job *)oj;
    struct conn *c = oj->owner;
    c->auth_job = NULL;
    if (j->result == 1)
        auth_cache_put(c->w->auth_cache, j->cfg->authdb, &j->cred);
    c->auth_verdict = j->result == 1 ? 1 : -1;
    c->auth_verdict_hash = j->hash;
    req_free(c->req);
    c->req = NULL;
    c->state = CS_HEAD;
    conn_parse(c);
}

static void
auth_release(struct offload_job *oj)
{
    struct auth_job *j = (struct auth_job *)oj;
    auth_cred_clear(&j->cred);
    config_unref(j->cfg);
    free(j);
}

/* Hand job to the pool; on success it is the pool's and the request waits. */
static int
auth_submit(struct conn *c, struct auth_job *j, uint64_t hash)
{
    j->job.w = c->w;
    j->job.owner = c;
    j->job.run = auth_run;
    j->job.done = auth_done;
    j->job.release = auth_release;
    j->cfg = config_ref(c->cfg);
    j->hash = hash;
    if (offload_submit(&j->job) < 0) {
        config_unref(j->cfg);
        j->cfg = NULL;
        return -1;
    }
    c->auth_job = &j->job;
    c->state = CS_AUTHWAIT;
    c->head_pending = 0; /* the head stays: it is parsed again with the verdict */
    return 0;
}

/*
 * Who is asking.  Returns 0 with c->req->user set (or empty for anonymous),
 * or -1 when the request was answered (407) or waits for a verdict.
 */
static int
conn_identify(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = c->req;
    const struct config *cfg = c->cfg;
    if (cfg->auth.mode == AUTH_ADDRESS) {
        const char *u = users_by_address(cfg->users, (struct sockaddr *)&c->peer);
        if (u)
            snprintf(r->user, sizeof(r->user), "%s", u);
        return 0;
    }
    if (cfg->auth.mode != AUTH_BASIC)
        return 0;
    int i = http_header_find(buf, h, "Proxy-Authorization");
    /*
     * Inside an intercepted tunnel the user is the one the CONNECT
     * authenticated: browsers never send Proxy-Authorization inside TLS.
     * Credentials that are sent anyway are checked and must name that user.
     */
    const struct req *tr = c->intercept ? c->tunnel_req : NULL;
    if (tr && i < 0) {
        snprintf(r->user, sizeof(r->user), "%s", tr->user);
        return 0;
    }
    int ok = 0;
    if (i >= 0) {
        const char *v = buf + h->hdr[i].value.off;
        size_t vlen = h->hdr[i].value.len;
        struct auth_job *job = calloc(1, sizeof(*job));
        if (!job || auth_basic_parse(v, vlen, &job->cred) < 0) {
            free(job);
            job = NULL;
        } else {
            /* The name that was tried is logged either way (never the password). */
            snprintf(r->user, sizeof(r->user), "%.127s", job->cred.user);
            uint64_t hv = auth_header_hash(v, vlen);
            if (auth_cache_check(c->w->auth_cache, cfg->authdb, &job->cred) == 1) {
                ok = 1;
            } else if (c->auth_verdict && c->auth_verdict_hash == hv) {
                ok = c->auth_verdict > 0;
                c->auth_verdict = 0;
            } else if (auth_submit(c, job, hv) == 0) {
                return -1; /* the verdict comes back to auth_done() */
            } else {
                job->result = auth_verify_now(cfg, &job->cred);
                ok = job->result == 1;
            }
            auth_cred_clear(&job->cred);
            free(job);
        }
    }
    if (ok && tr && strcmp(r->user, tr->user) != 0)
        ok = 0; /* valid, but another user than the tunnel's */
    if (ok) {
        auth_backoff_ok(rt.auth_backoff, (struct sockaddr *)&c->peer);
        return 0;
    }
    unsigned delay = 0;
    if (i >= 0)
        delay = auth_backoff_fail(rt.auth_backoff, (struct sockaddr *)&c->peer, time(NULL));
    else
        r->user[0] = '\0';
    client_407(c, buf, h);
    conn_audit(c, r, "auth-fail", 407);
    if (delay) {
        /*
         * Hold the answer back: the bytes sit in the output buffer until the
         * timer.  Reading goes on (CS_CLOSING discards what arrives) so a
         * client that gives up is seen at once and frees its slot.
         */
        bufferevent_disable(c->bev, EV_WRITE);
        bufferevent_enable(c->bev, EV_READ);
        c->state = CS_CLOSING;
        c->held = 1;
        c->timer_header = 0;
        timer_arm(c, (int)delay);
        return -1;
    }
    conn_request_end(c);
    return -1;
}

void
conn_request_url(const struct conn *c, char *out, size_t cap)
{
    const struct req *r = c->req;
    const char *scheme = c->intercept || r->is_connect ? "https" : r->url.scheme;
    unsigned defport = strcmp(scheme, "https") == 0 ? 443 : 80;
    char port[8] = "";
    if (r->url.port != defport)
        snprintf(port, sizeof(port), ":%u", r->url.port);
    snprintf(out, cap, "%s://%s%s%s%s", scheme, r->url.host_is_v6 ? "[" : "", r->url.host,
             r->url.host_is_v6 ? "]" : "", port);
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "%s", r->path && r->path[0] ? r->path : "/");
}

static void
block_page(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = c->req;
    char extra[500];
    const char *lang = client_lang(c, buf, h);
    snprintf(extra, sizeof(extra),
             "Proxy-Status: aigate; error=http_request_denied; details=\"rule=%s\"\r\n"
             "Content-Language: %s\r\nVary: Accept, Accept-Language\r\n",
             r->rule->name, lang);
    struct evbuffer *body = evbuffer_new();
    struct page_vars v = {0};
    char url[2048];
    conn_request_url(c, url, sizeof(url));
    v.service = r->svc ? r->svc->name : r->url.host;
    v.user = r->user[0] ? r->user : c->peer_str;
    v.rule = r->rule->name;
    v.reason = r->rule->reason;
    v.host = r->url.host;
    v.url = url;
    v.method = r->method;
    v.category = r->svc ? r->svc->category : NULL;
    v.status = 403;
    v.lang = lang;
    const char *ctype = "text/plain; charset=utf-8";
    if (body) {
        if (client_wants_html(c, buf, h) && pages_render(body, c->cfg->pages, PAGE_BLOCK, &v) == 0)
            ctype = "text/html; charset=utf-8";
        else {
            evbuffer_drain(body, evbuffer_get_length(body));
            pages_render_text(body, PAGE_BLOCK, &v);
        }
    }
    conn_respond(c, 403, extra, ctype, body, r->body != HTTP_BODY_NONE);
    if (body)
        evbuffer_free(body);
    conn_audit(c, r, "block", 403);
    conn_request_end(c);
}

struct inspect_buf {
    char *p;
    size_t len, cap;
};

static void
inspect_add(void *arg, const char *p, size_t n)
{
    struct inspect_buf *b = arg;
    size_t room = b->cap - b->len;
    if (n > room)
        n = room;
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* The values of every header line named name, each followed by ',', appended at out. */
static size_t
header_join(char *out, const char *hb, const struct http_head *h, const char *name)
{
    size_t n = 0;
    for (unsigned i = 0; i < h->nhdr; i++)
        if (http_span_ieq(hb, h->hdr[i].name, name)) {
            memcpy(out + n, hb + h->hdr[i].value.off, h->hdr[i].value.len);
            n += h->hdr[i].value.len;
            out[n++] = ',';
        }
    return n;
}

/*
 * Look at the request body for personal data (SPEC 5a), up to
 * limits.max_body_inspect_bytes of it.  The body stays in the input buffer
 * (it is forwarded unchanged afterwards); this copies what it scans.
 * Returns 0 with r->dlp_mask set, or 1 when more of the body must arrive
 * first (the request waits in CS_INSPECT and is parsed again).
 */
static int
conn_inspect(struct conn *c, const char *hb, const struct http_head *h)
{
    struct req *r = c->req;
    const struct config *cfg = c->cfg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t max = cfg->limits.max_body_inspect_bytes;
    size_t have = evbuffer_get_length(in) - h->head_len;
    /* A chunked body carries framing: allow for it when bounding what we wait for. */
    size_t raw_max = r->body == HTTP_BODY_CHUNKED ? max + max / 4 + 65536 : max;
    int complete;
    struct inspect_buf b = {NULL, 0, 0};
    struct evbuffer_ptr pos;
    evbuffer_ptr_set(in, &pos, h->head_len, EVBUFFER_PTR_SET);
    if (r->body == HTTP_BODY_LENGTH) {
        /* The length says when it is all here: copy it once, straight to the scan buffer. */
        size_t want = r->body_left < max ? (size_t)r->body_left : max;
        complete = have >= want;
        if (complete || c->client_eof) {
            b.cap = complete ? want : have;
            if (!(b.p = malloc(b.cap + 1)))
                return 0;
            evbuffer_copyout_from(in, &pos, b.p, b.cap);
            b.len = b.cap;
        }
    } else {
        size_t rawlen = have < raw_max ? have : raw_max, used = 0;
        char *raw = malloc(rawlen + 1);
        b.cap = max;
        if (!raw || !(b.p = malloc(max + 1))) {
            free(raw);
            return 0;
        }
        evbuffer_copyout_from(in, &pos, raw, rawlen);
        struct http_chunk ck;
        http_chunk_init(&ck);
        ck.on_data = inspect_add;
        ck.arg = &b;
        int rc = http_chunk_feed(&ck, raw, rawlen, &used);
        complete = rc != HTTP_PARSE_AGAIN || b.len >= max || rawlen >= raw_max;
        free(raw);
    }
    if (!complete && !c->client_eof) {
        free(b.p);
        /* The client may hold the body back until told to send it (RFC 9110 10.1.1). */
        if (r->expect_continue && r->minor >= 1 && !c->continue_sent) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            evbuffer_add(bufferevent_get_output(c->bev), cont, sizeof(cont) - 1);
            c->continue_sent = 1;
        }
        c->state = CS_INSPECT;
        c->head_pending = 0; /* parsed again once the body is here */
        timer_idle(c);
        bufferevent_setwatermark(c->bev, EV_READ, 0, cfg->limits.max_header_bytes + raw_max + 4096);
        return 1;
    }
    /*
     * Every Content-Encoding line counts (RFC 9110 5.3: as one comma-joined
     * list), or a second line would hide a coding; transfer codings other
     * than chunked (which the chunk parser undid) were applied after them, so
     * they follow in the list.  Content-Type is a single value: when
     * repeated, trust none and let the scan look at the body.
     */
    char *ce = NULL;
    size_t celen = 0;
    unsigned cen = 0, ctn = 0, cti = 0;
    for (unsigned i = 0; i < h->nhdr; i++) {
        if (http_span_ieq(hb, h->hdr[i].name, "Content-Encoding") ||
            http_span_ieq(hb, h->hdr[i].name, "Transfer-Encoding")) {
            celen += h->hdr[i].value.len + 1;
            cen++;
        } else if (http_span_ieq(hb, h->hdr[i].name, "Content-Type")) {
            ctn++;
            cti = i;
        }
    }
    if (cen && !(ce = malloc(celen))) {
        free(b.p);
        return 0;
    }
    if (cen) {
        size_t te_at = celen = header_join(ce, hb, h, "Content-Encoding");
        celen += header_join(ce + celen, hb, h, "Transfer-Encoding");
        /* The chunk parser undid the last transfer coding, chunked (the parser insists on it). */
        if (celen > te_at)
            for (celen--; celen > te_at && ce[celen - 1] != ','; celen--)
                ;
    }
    r->dlp_mask =
        dlp_scan(cfg->dlp, b.p, b.len, ce, celen, ctn == 1 ? hb + h->hdr[cti].value.off : NULL,
                 ctn == 1 ? h->hdr[cti].value.len : 0, max);
    free(ce);
    r->dlp_scanned = 1;
    bufferevent_setwatermark(c->bev, EV_READ, 0, cfg->limits.max_header_bytes + 4096);
    free(b.p);
    return 0;
}

/*
 * Apply the policy.  Returns 0 to go on (allow, or warn until the caution
 * flow exists), -1 when the request was answered (blocked).
 */
static int
conn_decide(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = c->req;
    const struct config *cfg = c->cfg;
    const char *const *groups = NULL;
    size_t ngroups = r->user[0] ? users_groups(cfg->users, r->user, &groups) : 0;
    time_t now = time(NULL);
    struct tm local;
    localtime_r(&now, &local);

    struct policy_req pr = {0};
    char path0[1];
    pr.user = r->user[0] ? r->user : NULL;
    pr.groups = groups;
    pr.ngroups = ngroups;
    pr.client = (const struct sockaddr *)&c->peer;
    pr.svc = r->svc;
    pr.host = r->url.host;
    pr.local = &local;
    if (r->is_connect) {
        pr.have_request = 0;
    } else {
        pr.have_request = 1;
        pr.method = r->method;
        size_t plen = r->url.path.len - (r->url.query.len ? r->url.query.len + 1 : 0);
        pr.path = plen ? buf + r->url.path.off : (path0[0] = '/', path0);
        pr.pathlen = plen ? plen : 1;
    }
    if (pr.have_request && r->body != HTTP_BODY_NONE && !r->body_done) {
        /* Inspect the body only when what it holds could change the decision. */
        pr.body_inspected = 1;
        pr.dlp_found = ~0u;
        const struct policy_rule *with = policy_eval(cfg->policy, &pr);
        pr.body_inspected = 0;
        pr.dlp_found = 0;
        if (with != policy_eval(cfg->policy, &pr)) {
            if (!r->dlp_scanned && conn_inspect(c, buf, h) > 0)
                return -1;
            pr.body_inspected = 1;
            pr.dlp_found = r->dlp_mask;
        }
    }
    r->rule = policy_eval(cfg->policy, &pr);
    r->is_ai = r->svc != NULL;
    if (!r->rule) {
        r->action = "allow";
        return 0;
    }
    switch (r->rule->action) {
    case POLICY_BLOCK:
        r->is_ai = 1;
        block_page(c, buf, h);
        return -1;
    case POLICY_WARN:
        r->is_ai = 1;
        if (caution_acknowledged(c)) {
            /* Acknowledged earlier: passes, logged as allowed under the warn rule. */
            r->action = "allow";
            return 0;
        }
        if (r->is_connect) {
            /* A blind tunnel cannot show the page: tls.warn_fallback decides. */
            r->action = cfg->tls.warn_fallback_block ? "block" : "allow";
            if (!cfg->tls.warn_fallback_block)
                return 0;
            block_page(c, buf, h);
            return -1;
        }
        caution_page(c, buf, h);
        return -1;
    default:
        r->action = "allow";
        return 0;
    }
}

static void upstream_ready(struct upstream *u, enum upstream_err err, const char *detail,
                           void *arg);
static void conn_local_body(struct conn *c);

static void
conn_connect(struct conn *c, int allow_reuse)
{
    c->state = CS_UPSTREAM;
    timer_idle(c);
    SSL_CTX *tls = c->intercept && !c->req->is_connect ? c->cfg->tls_cctx : NULL;
    c->ureq = upstream_get(c->w->pool, c->req->url.host, c->req->url.port, tls, allow_reuse,
                           upstream_ready, c);
    if (!c->ureq)
        conn_error(c, 503, "proxy_internal_error", "Out of resources",
                   "The proxy could not start a connection.", NULL, NULL, 1);
}

static void
answer_options(struct conn *c)
{
    conn_respond(c, 200, "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n", NULL,
                 NULL, 0);
    conn_audit(c, c->req, "allow", 200);
    conn_request_end(c);
}

static void
answer_trace(struct conn *c, const char *buf, const struct http_head *h)
{
    struct evbuffer *body = evbuffer_new();
    if (body) {
        /* Echo the head without credentials. */
        size_t line_end = h->hdr[0].name.off ? h->hdr[0].name.off : h->head_len - 2;
        evbuffer_add(body, buf, h->nhdr ? line_end : h->head_len - 2);
        for (unsigned i = 0; i < h->nhdr; i++) {
            if (http_span_ieq(buf, h->hdr[i].name, "Proxy-Authorization") ||
                http_span_ieq(buf, h->hdr[i].name, "Authorization") ||
                http_span_ieq(buf, h->hdr[i].name, "Cookie"))
                continue;
            evbuffer_add(body, buf + h->hdr[i].name.off, h->hdr[i].name.len);
            evbuffer_add(body, ": ", 2);
            evbuffer_add(body, buf + h->hdr[i].value.off, h->hdr[i].value.len);
            evbuffer_add(body, "\r\n", 2);
        }
        evbuffer_add(body, "\r\n", 2);
    }
    conn_respond(c, 200, NULL, "message/http", body, 0);
    if (body)
        evbuffer_free(body);
    conn_audit(c, c->req, "allow", 200);
    conn_request_end(c);
}

/* Drop the current request head from the input, once. */
static void
conn_drain_head(struct conn *c)
{
    if (c->head_pending) {
        evbuffer_drain(bufferevent_get_input(c->bev), c->head_pending);
        c->head_pending = 0;
    }
}

/* Parse the request target: absolute-form, authority-form (CONNECT), or origin-form inside TLS. */
static int
conn_target(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = c->req;
    int hasbody = r->body != HTTP_BODY_NONE;
    if (r->is_connect) {
        if (c->intercept) {
            conn_error(c, 400, "http_request_error", "Bad request",
                       "CONNECT inside an intercepted connection is not allowed.", buf, h, 1);
            return -1;
        }
        if (http_url_parse_authority(buf, h->target, &r->url) < 0) {
            conn_error(c, 400, "http_request_error", "Bad request",
                       "CONNECT needs a host:port target.", buf, h, 1);
            return -1;
        }
        return 0;
    }
    if (h->target.len == 0 || buf[h->target.off] == '/') {
        if (!c->intercept || http_url_parse_origin(buf, h->target, &r->url) < 0) {
            conn_error(c, 400, "http_request_error", "Not a proxy request",
                       "This is a proxy: requests must carry an absolute URL (http://host/path).",
                       buf, h, hasbody);
            return -1;
        }
        snprintf(r->url.scheme, sizeof(r->url.scheme), "https");
        snprintf(r->url.host, sizeof(r->url.host), "%s", c->tls_host);
        r->url.port = c->tls_port;
        r->url.host_is_v6 = strchr(c->tls_host, ':') != NULL;
    } else if (http_url_parse_absolute(buf, h->target, &r->url) < 0) {
        conn_error(c, 400, "http_request_error", "Bad request", "The request URL is invalid.", buf,
                   h, hasbody);
        return -1;
    } else if (c->intercept && strcmp(r->url.host, c->tls_host) != 0) {
        conn_error(c, 400, "http_request_error", "Bad request",
                   "The URL names another host than the connection.", buf, h, hasbody);
        return -1;
    } else if (!c->intercept && strcmp(r->url.scheme, "http") != 0) {
        conn_error(c, 400, "http_request_error", "Bad request",
                   "https:// URLs must be requested through CONNECT.", buf, h, hasbody);
        return -1;
    }
    /* RFC 9112 3.2: one Host, naming the target's authority (SPEC 12). */
    int host_at = -1;
    for (unsigned i = 0; i < h->nhdr; i++) {
        if (!http_span_ieq(buf, h->hdr[i].name, "Host"))
            continue;
        if (host_at >= 0) {
            conn_error(c, 400, "http_request_error", "Bad request",
                       "The request carries more than one Host header.", buf, h, 1);
            return -1;
        }
        host_at = (int)i;
    }
    if (host_at >= 0 && !http_host_matches(buf, h->hdr[host_at].value, r->url.host, r->url.port,
                                           c->intercept ? 443 : 80)) {
        conn_error(c, 400, "http_request_error", "Bad request",
                   "The Host header names another site than the request target.", buf, h, 1);
        return -1;
    }
    req_set_path(r, buf);
    return 0;
}

/*
 * CONNECT to a catalogued AI host with tls.intercept: answer 200, then
 * terminate the client's TLS with a leaf minted for the host.  The
 * requests inside run through conn_request() like plain HTTP ones.
 */
static void
conn_intercept(struct conn *c)
{
    struct req *r = c->req;
    SSL *ssl = c->w->leaf_cache ? tls_server_ssl(c->w->leaf_cache, r->url.host) : NULL;
    if (!ssl) {
        conn_error(c, 502, "proxy_internal_error", "Interception failed",
                   "The proxy could not make a certificate for this site.", NULL, NULL, 1);
        return;
    }
    conn_drain_head(c);
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    evbuffer_add(bufferevent_get_output(c->bev), ok, sizeof(ok) - 1);
    r->bytes_out += sizeof(ok) - 1;
    struct bufferevent *fb = bufferevent_openssl_filter_new(
        c->w->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!fb) {
        conn_close(c, "cannot start TLS to the client");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(fb, 1);
    /* Bound what the TLS layer queues below us; back-pressure then applies to fb's output. */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, CONN_HIGH_WATER);
    evbuffer_add_cb(bufferevent_get_output(c->bev), under_out_cb, c);
    c->bev = fb;
    bufferevent_setcb(c->bev, client_read, client_write, client_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->cfg->limits.max_header_bytes + 4096);
    bufferevent_setwatermark(c->bev, EV_WRITE, CONN_LOW_WATER, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->intercept = 1;
    snprintf(c->tls_host, sizeof(c->tls_host), "%s", r->url.host);
    c->tls_port = r->url.port;
    r->action = "allow";
    r->status = 200;
    c->tunnel_req = r;
    c->req = NULL;
    c->state = CS_HEAD;
    timer_header(c);
}

/* 1 if the request is the caution page's acknowledgement POST. */
static int
is_ack_request(const struct req *r, const char *buf)
{
    size_t n = sizeof(CAUTION_ACK_PATH) - 1;
    return !r->is_connect && r->url.pathname.len == n &&
           memcmp(buf + r->url.pathname.off, CAUTION_ACK_PATH, n) == 0;
}

/* The ack form: wait for its (small, Content-Length) body, then answer it. */
static void
conn_ack_request(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = c->req;
    if (strcmp(r->method, "POST") != 0) {
        conn_error(c, 405, "http_request_denied", "Method not allowed",
                   "The acknowledgement address only takes the caution page's form.", buf, h,
                   r->body != HTTP_BODY_NONE);
        return;
    }
    if (r->body == HTTP_BODY_CHUNKED) {
        conn_error(c, 411, "http_request_error", "Length required",
                   "Send the acknowledgement form with a Content-Length.", buf, h, 1);
        return;
    }
    if (r->body != HTTP_BODY_LENGTH || r->body_left == 0 || r->body_left > ACK_FORM_MAX) {
        conn_error(c, 400, "http_request_error", "Bad request",
                   "The acknowledgement form is missing or too large.", buf, h, 1);
        return;
    }
    conn_drain_head(c);
    c->state = CS_LOCALBODY;
    conn_local_body(c);
}

/*
 * A parsed head is in buf (still in the input buffer until conn_drain_head).
 * Every path either answers the request itself or hands it to an origin.
 */
static void
conn_request(struct conn *c, const char *buf, const struct http_head *h)
{
    struct req *r = c->req;
    int mf;

    if (!c->allowed) {
        conn_error(c, 403, "http_request_denied", "Access denied",
                   "Your address may not use this proxy.", buf, h, 1);
        return;
    }
    if (conn_target(c, buf, h) < 0)
        return;
    if (c->intercept)
        c->tls_requests++;
    if (http_msg_via_has_us(buf, h)) {
        conn_error(c, 508, "proxy_loop_detected", "Loop detected",
                   "This request has already passed through this proxy.", buf, h, 1);
        return;
    }
    if (r->is_connect && !config_connect_port_ok(c->cfg, r->url.port)) {
        conn_error(c, 403, "http_request_denied", "Port not allowed",
                   "CONNECT is only allowed to the configured ports.", buf, h, 1);
        return;
    }
    if (conn_identify(c, buf, h) < 0)
        return;
    r->svc = catalog_lookup(c->cfg->catalog, r->url.host, strlen(r->url.host));
    if (r->is_connect && r->svc && c->cfg->tls.intercept) {
        r->is_ai = 1;
        conn_intercept(c);
        return;
    }
    if (is_ack_request(r, buf)) {
        r->is_ai = 1;
        conn_ack_request(c, buf, h);
        return;
    }
    if (conn_decide(c, buf, h) < 0)
        return;
    if (r->is_connect) {
        conn_drain_head(c);
        conn_connect(c, 0);
        return;
    }
    if ((strcmp(r->method, "OPTIONS") == 0 || strcmp(r->method, "TRACE") == 0) &&
        (mf = http_msg_max_forwards(buf, h)) == 0) {
        if (r->method[0] == 'O')
            answer_options(c);
        else
            answer_trace(c, buf, h);
        return;
    }
    if (!(r->head = evbuffer_new()) || http_msg_request_head(r->head, buf, h, &r->url) < 0) {
        conn_error(c, 500, "proxy_internal_error", "Internal error", "Out of memory.", buf, h, 1);
        return;
    }
    conn_drain_head(c);
    if (r->body == HTTP_BODY_CHUNKED) {
        http_chunk_init(&r->chunk);
        if (!chunked_prefix_ok(c)) {
            conn_error(c, 400, "http_request_error", "Bad request",
                       "The chunked request body is malformed.", NULL, NULL, 1);
            return;
        }
    }
    conn_connect(c, 1);
}

/*
 * Parse as many request heads as the input holds, answering local ones in
 * place; stops when a request goes to an origin or more bytes are needed.
 */
static void
conn_parse(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while ((c->state == CS_HEAD || c->state == CS_IDLE) && evbuffer_get_length(in) > 0) {
        if (c->state == CS_IDLE) {
            c->state = CS_HEAD;
            timer_header(c);
        }
        size_t len = evbuffer_get_length(in);
        size_t max = c->cfg->limits.max_header_bytes;
        size_t look = len < max + 1 ? len : max + 1;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        struct http_head h;
        memset(&h, 0, sizeof(h));
        int rc = buf ? http_parse_request(buf, look, max, &h) : HTTP_PARSE_ERROR;
        if (rc == HTTP_PARSE_AGAIN) {
            if (look > max) {
                rc = HTTP_PARSE_ERROR;
                h.error_status = 431;
                h.error = "request head too large";
            } else {
                return;
            }
        }
        if (rc == HTTP_PARSE_ERROR) {
            int st = h.error_status ? h.error_status : 400;
            if (!(c->req = calloc(1, sizeof(*c->req))))
                return conn_close(c, "out of memory");
            clock_gettime(CLOCK_REALTIME, &c->req->start);
            c->req->bytes_in = look;
            conn_error(c, st, "http_request_error",
                       st == 431 ? "Request header too large" : "Bad request",
                       h.error ? h.error : "The request is malformed.", NULL, NULL, 1);
            return;
        }
        if (!(c->req = req_new(c, buf, &h)))
            return conn_close(c, "out of memory");
        if (c->inspect_reparse)
            c->req->start = c->inspect_start;
        c->inspect_reparse = 0;
        /* buf points into the input buffer: the head is drained only once it is no longer read. */
        c->head_pending = h.head_len;
        conn_request(c, buf, &h);
        conn_drain_head(c);
    }
    if (c->state == CS_IDLE || c->state == CS_HEAD)
        bufferevent_enable(c->bev, EV_READ);
}

/* ---- forwarding ---------------------------------------------------------- */

static void up_read(struct bufferevent *bev, void *arg);
static void up_write(struct bufferevent *bev, void *arg);
static void up_event(struct bufferevent *bev, short what, void *arg);

/* Move request body bytes from the client to the origin. */
static void
pump_request(struct conn *c)
{
    struct req *r = c->req;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->up->bev);
    size_t avail = evbuffer_get_length(in);
    size_t n = 0;

    if (r->body_done || avail == 0)
        goto pressure;
    if (r->body == HTTP_BODY_LENGTH) {
        n = avail < r->body_left ? avail : (size_t)r->body_left;
        r->body_left -= n;
        if (r->body_left == 0)
            r->body_done = 1;
    } else {
        struct evbuffer_iovec vec[16];
        size_t scanned = 0;
        while (scanned < avail) {
            struct evbuffer_ptr pos;
            evbuffer_ptr_set(in, &pos, scanned, EVBUFFER_PTR_SET);
            int nv = evbuffer_peek(in, (ev_ssize_t)(avail - scanned), &pos, vec, 16);
            int done = 0;
            for (int i = 0; i < nv && i < 16; i++) {
                size_t used = 0;
                int rc = http_chunk_feed(&r->chunk, vec[i].iov_base, vec[i].iov_len, &used);
                scanned += used;
                if (rc == HTTP_PARSE_ERROR) {
                    if (!r->resp_head_done) {
                        conn_release_upstream(c, 0);
                        conn_error(c, 400, "http_request_error", "Bad request",
                                   "The chunked request body is malformed.", NULL, NULL, 1);
                    } else {
                        conn_close(c, "bad chunked request body");
                    }
                    return;
                }
                if (rc == HTTP_PARSE_OK) {
                    r->body_done = 1;
                    done = 1;
                    break;
                }
            }
            if (done || nv <= 0)
                break;
        }
        n = scanned;
    }
    evbuffer_remove_buffer(in, out, n);
    r->bytes_in += n;
    r->body_sent += n;
pressure:
    if (!r->body_done && evbuffer_get_length(out) > CONN_HIGH_WATER)
        bufferevent_disable(c->bev, EV_READ);
}

/*
 * Check the chunked framing of what has already arrived before the origin
 * sees a byte, so a malformed body that came with its head is never
 * forwarded at all.
 */
static int
chunked_prefix_ok(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct http_chunk tmp = c->req->chunk;
    struct evbuffer_iovec vec[32];
    int nv = evbuffer_peek(in, -1, NULL, vec, 32);
    for (int i = 0; i < nv && i < 32; i++) {
        size_t used = 0;
        int rc = http_chunk_feed(&tmp, vec[i].iov_base, vec[i].iov_len, &used);
        if (rc == HTTP_PARSE_ERROR)
            return 0;
        if (rc == HTTP_PARSE_OK)
            break;
    }
    return 1;
}

static void
send_request(struct conn *c)
{
    struct req *r = c->req;
    struct evbuffer *out = bufferevent_get_output(c->up->bev);
    size_t hl = evbuffer_get_length(r->head);
    if (r->body == HTTP_BODY_CHUNKED && !chunked_prefix_ok(c)) {
        conn_release_upstream(c, 0);
        conn_error(c, 400, "http_request_error", "Bad request",
                   "The chunked request body is malformed.", NULL, NULL, 1);
        return;
    }
    evbuffer_add(out, evbuffer_pullup(r->head, (ev_ssize_t)hl), hl);
    c->state = CS_FORWARD;
    pump_request(c);
}

static void
upstream_ready(struct upstream *u, enum upstream_err err, const char *tls_detail, void *arg)
{
    struct conn *c = arg;
    c->ureq = NULL;
    if (err == UPSTREAM_ERR_TLS) {
        char detail[400];
        snprintf(detail, sizeof(detail),
                 "The certificate of %s could not be verified (%s). The proxy refuses to pass "
                 "on a connection it cannot trust.",
                 c->req->url.host, tls_detail ? tls_detail : "handshake failed");
        log_warnx("origin %s:%u: TLS verification failed: %s", c->req->url.host, c->req->url.port,
                  tls_detail ? tls_detail : "handshake failed");
        char perror[300];
        snprintf(perror, sizeof(perror), "tls_certificate_error; details=\"%s\"",
                 tls_detail ? tls_detail : "handshake failed");
        conn_error(c, 502, perror, "Bad gateway", detail, NULL, NULL, !c->req->body_done);
        return;
    }
    if (err != UPSTREAM_OK) {
        char detail[512];
        int status = err == UPSTREAM_ERR_TIMEOUT ? 504 : err == UPSTREAM_ERR_SELF ? 508 : 502;
        snprintf(detail, sizeof(detail), "%s %s:%u: %s",
                 err == UPSTREAM_ERR_DNS ? "Cannot resolve" : "Cannot connect to", c->req->url.host,
                 c->req->url.port,
                 err == UPSTREAM_ERR_DNS       ? "the name does not resolve"
                 : err == UPSTREAM_ERR_TIMEOUT ? "the connection timed out"
                 : err == UPSTREAM_ERR_SELF    ? "that is this proxy itself"
                                               : "the connection was refused");
        conn_error(c, status, upstream_err_name(err),
                   status == 504 ? "Gateway timeout" : "Bad gateway", detail, NULL, NULL,
                   c->req->is_connect || !c->req->body_done);
        return;
    }
    c->up = u;
    conn_touch(c);
    if (c->req->is_connect) {
        tunnel_start(c);
        return;
    }
    bufferevent_setcb(u->bev, up_read, up_write, up_event, c);
    bufferevent_setwatermark(u->bev, EV_WRITE, CONN_LOW_WATER, 0);
    bufferevent_setwatermark(u->bev, EV_READ, 0, c->cfg->limits.max_header_bytes + 4096);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    send_request(c);
}

static void
dechunk_data(void *arg, const char *p, size_t n)
{
    struct conn *c = arg;
    evbuffer_add(bufferevent_get_output(c->bev), p, n);
    c->req->bytes_out += n;
}

/* Called when the response (and request) is complete. */
static void
response_done(struct conn *c)
{
    struct req *r = c->req;
    r->resp_done = 1;
    conn_audit(c, r, r->action ? r->action : "allow", r->status);
    int reusable = r->origin_keep && r->body_done && r->rbody != HTTP_BODY_EOF;
    conn_release_upstream(c, reusable);
    if (!r->body_done)
        r->keep_alive = 0;
    conn_request_end(c);
}

/* Move response body bytes from the origin to the client. */
static void
pump_response(struct conn *c)
{
    struct req *r = c->req;
    struct evbuffer *in = bufferevent_get_input(c->up->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t avail = evbuffer_get_length(in);

    if (r->rbody == HTTP_BODY_LENGTH) {
        size_t n = avail < r->rleft ? avail : (size_t)r->rleft;
        evbuffer_remove_buffer(in, out, n);
        r->rleft -= n;
        r->bytes_out += n;
        if (r->rleft == 0)
            return response_done(c);
    } else if (r->rbody == HTTP_BODY_CHUNKED) {
        struct evbuffer_iovec vec[16];
        size_t scanned = 0;
        int rc = HTTP_PARSE_AGAIN;
        while (scanned < avail && rc == HTTP_PARSE_AGAIN) {
            struct evbuffer_ptr pos;
            evbuffer_ptr_set(in, &pos, scanned, EVBUFFER_PTR_SET);
            int nv = evbuffer_peek(in, (ev_ssize_t)(avail - scanned), &pos, vec, 16);
            if (nv <= 0)
                break;
            for (int i = 0; i < nv && i < 16 && rc == HTTP_PARSE_AGAIN; i++) {
                size_t used = 0;
                rc = http_chunk_feed(&r->rchunk, vec[i].iov_base, vec[i].iov_len, &used);
                scanned += used;
            }
        }
        if (rc == HTTP_PARSE_ERROR)
            return conn_close(c, "bad chunked response from origin");
        if (r->dechunk) {
            evbuffer_drain(in, scanned);
        } else {
            evbuffer_remove_buffer(in, out, scanned);
            r->bytes_out += scanned;
        }
        if (rc == HTTP_PARSE_OK)
            return response_done(c);
    } else if (r->rbody == HTTP_BODY_EOF) {
        evbuffer_remove_buffer(in, out, avail);
        r->bytes_out += avail;
    } else {
        return response_done(c);
    }
    if (evbuffer_get_length(out) > CONN_HIGH_WATER)
        bufferevent_disable(c->up->bev, EV_READ);
}

static void
parse_response(struct conn *c)
{
    struct req *r = c->req;
    struct evbuffer *in = bufferevent_get_input(c->up->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        size_t max = c->cfg->limits.max_header_bytes;
        size_t look = len < max + 1 ? len : max + 1;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        struct http_head h;
        memset(&h, 0, sizeof(h));
        int rc = http_parse_response(buf, look, max, r->is_head, &h);
        if (rc == HTTP_PARSE_AGAIN && look <= max)
            return;
        if (rc != HTTP_PARSE_OK) {
            log_warnx("origin %s:%u sent a malformed response: %s", r->url.host, r->url.port,
                      h.error ? h.error : "head too large");
            conn_release_upstream(c, 0);
            conn_error(c, 502, "http_response_incomplete", "Bad gateway",
                       "The origin sent a malformed response.", NULL, NULL, 1);
            return;
        }
        if (h.status >= 100 && h.status < 200) {
            if (h.status == 101) {
                conn_release_upstream(c, 0);
                conn_error(c, 502, "http_protocol_error", "Bad gateway",
                           "The origin switched protocols, which this proxy does not relay.", NULL,
                           NULL, 1);
                return;
            }
            /* A "100 Continue" we already gave while inspecting the body is not repeated. */
            if (r->minor >= 1 && !(h.status == 100 && c->continue_sent)) {
                http_msg_response_head(c->w->scratch, buf, &h, r->minor, 1, 0);
                conn_out(c, c->w->scratch);
            }
            evbuffer_drain(in, h.head_len);
            continue;
        }
        r->status = h.status;
        r->rbody = h.body;
        r->rleft = h.content_length;
        r->origin_keep = h.keep_alive;
        if (h.body == HTTP_BODY_EOF || c->w->stopping || c->client_eof)
            r->keep_alive = 0;
        r->dechunk = h.body == HTTP_BODY_CHUNKED && r->minor == 0;
        if (r->dechunk)
            r->keep_alive = 0;
        if (h.body == HTTP_BODY_CHUNKED) {
            http_chunk_init(&r->rchunk);
            if (r->dechunk) {
                r->rchunk.on_data = dechunk_data;
                r->rchunk.arg = c;
            }
        }
        http_msg_response_head(c->w->scratch, buf, &h, r->minor, r->keep_alive, r->dechunk);
        conn_out(c, c->w->scratch);
        evbuffer_drain(in, h.head_len);
        r->resp_head_done = 1;
        return;
    }
}

static void
up_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    conn_touch(c);
    if (!c->req->resp_head_done) {
        parse_response(c);
        if (!c->req || !c->up || !c->req->resp_head_done)
            return;
    }
    pump_response(c);
}

static void
up_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    conn_touch(c);
    if (c->state == CS_FORWARD && !c->req->body_done && !c->client_eof)
        bufferevent_enable(c->bev, EV_READ);
}

static void
up_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    struct req *r = c->req;
    (void)bev;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (r->resp_head_done) {
        if (r->rbody == HTTP_BODY_EOF) {
            pump_response(c);
            r->origin_keep = 0;
            response_done(c);
            return;
        }
        conn_close(c, "origin closed mid-response");
        return;
    }
    if (evbuffer_get_length(bufferevent_get_input(c->up->bev)) == 0 && c->up->reused &&
        !r->retried && r->body_sent == 0 && r->body_done) {
        /* A pooled connection the origin had closed: try once on a fresh one. */
        r->retried = 1;
        conn_release_upstream(c, 0);
        conn_connect(c, 0);
        return;
    }
    log_debug("origin %s:%u closed before answering (%s%s)", r->url.host, r->url.port,
              (what & BEV_EVENT_ERROR) ? "error" : "eof",
              c->up->reused ? ", pooled connection" : "");
    conn_release_upstream(c, 0);
    conn_error(c, 502, "http_response_incomplete", "Bad gateway",
               "The origin closed the connection without a complete response.", NULL, NULL, 1);
}

/* The exchange is over: next request, or close after the output drains. */
void
conn_request_end(struct conn *c)
{
    struct req *r = c->req;
    int keep = r && r->keep_alive && r->body_done && !c->client_eof && !c->w->stopping;
    c->continue_sent = 0;
    conn_release_upstream(c, 0);
    req_free(r);
    c->req = NULL;
    atomic_fetch_add_explicit(&rt.requests, 1, memory_order_relaxed);
    if (!keep) {
        c->state = CS_CLOSING;
        timer_idle(c);
        bufferevent_disable(c->bev, EV_READ);
        /* Never free here: callers up the stack still hold c.  The write callback closes. */
        bufferevent_trigger(c->bev, EV_WRITE,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    c->state = CS_IDLE;
    timer_idle(c);
    conn_next(c);
}

/*
 * Defer parsing the next pipelined request to the loop, so a long pipeline
 * of locally answered requests cannot recurse.
 */
static void
conn_next(struct conn *c)
{
    bufferevent_enable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* The body of a request the proxy answers itself has fully arrived: answer it. */
static void
conn_local_body(struct conn *c)
{
    struct req *r = c->req;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) < r->body_left)
        return;
    size_t n = (size_t)r->body_left;
    char *body = malloc(n + 1);
    if (!body)
        return conn_close(c, "out of memory");
    evbuffer_remove(in, body, n);
    body[n] = '\0';
    r->bytes_in += n;
    r->body_left = 0;
    r->body_done = 1;
    caution_ack(c, body, n);
    free(body);
}

/* ---- client callbacks ------------------------------------------------------ */

static void
client_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    conn_touch(c);
    switch (c->state) {
    case CS_HEAD:
    case CS_IDLE:
        conn_parse(c);
        break;
    case CS_FORWARD:
        if (!c->req->body_done)
            pump_request(c);
        break;
    case CS_TUNNEL:
        tunnel_client_read(c);
        break;
    case CS_LOCALBODY:
        conn_local_body(c);
        break;
    case CS_INSPECT:
        /* More of the body: parse the head again, which inspects again. */
        c->inspect_start = c->req->start;
        c->inspect_reparse = 1;
        req_free(c->req);
        c->req = NULL;
        c->state = CS_HEAD;
        conn_parse(c);
        break;
    case CS_UPSTREAM:
    case CS_AUTHWAIT:
    case CS_ACKWAIT:
        break;
    case CS_CLOSING:
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
        break;
    }
}

static void
client_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    conn_touch(c);
    switch (c->state) {
    case CS_CLOSING:
        if (conn_flushed(c))
            conn_close(c, "done");
        break;
    case CS_FORWARD:
        if (c->up && c->req->resp_head_done)
            bufferevent_enable(c->up->bev, EV_READ);
        break;
    case CS_TUNNEL:
        tunnel_client_write(c);
        break;
    default:
        break;
    }
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if ((what & BEV_EVENT_ERROR) && c->intercept && c->tls_requests == 0) {
        /* Most often a client that does not trust the interception CA. */
        unsigned long e = bufferevent_get_openssl_error(c->bev);
        char why[256] = "connection closed during the handshake";
        if (e)
            ERR_error_string_n(e, why, sizeof(why));
        log_warnx("TLS interception of %s for client %s failed: %s (does the client trust the "
                  "aigate CA?)",
                  c->tls_host, c->peer_str, why);
        if (c->tunnel_req)
            c->tunnel_req->action = "error";
        return conn_close(c, "client TLS handshake failed");
    }
    if (what & BEV_EVENT_ERROR)
        return conn_close(c, "client error");
    if (!(what & BEV_EVENT_EOF))
        return;
    c->client_eof = 1;
    switch (c->state) {
    case CS_TUNNEL:
        tunnel_client_eof(c);
        break;
    case CS_FORWARD:
    case CS_UPSTREAM:
        /* A half-closed client may still want its answer; an incomplete request cannot be sent. */
        if (!c->req->body_done)
            conn_close(c, "client closed mid-request");
        break;
    case CS_HEAD:
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
            conn_parse(c);
            return;
        }
        conn_close(c, "client closed");
        break;
    default:
        conn_close(c, "client closed");
        break;
    }
}

static void
conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    long now = conn_now_ms(c);
    if (c->state == CS_CLOSING && !c->held && conn_flushed(c))
        return conn_close(c, "done");
    if (c->held) {
        /* End of an authentication back-off: release the held 407. */
        c->held = 0;
        bufferevent_enable(c->bev, EV_WRITE);
        conn_request_end(c);
        return;
    }
    if (c->timer_header) {
        if (c->state == CS_HEAD && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
            if (!(c->req = calloc(1, sizeof(*c->req))))
                return conn_close(c, "header timeout");
            clock_gettime(CLOCK_REALTIME, &c->req->start);
            conn_error(c, 408, "http_request_error", "Request timeout",
                       "The request head did not arrive in time.", NULL, NULL, 1);
            return;
        }
        return conn_close(c, "header timeout");
    }
    long left = c->deadline_base_ms + c->cfg->limits.idle_timeout_ms - now;
    if (left > 0) {
        timer_arm(c, (int)left);
        return;
    }
    if ((c->state == CS_FORWARD || c->state == CS_UPSTREAM) && c->req && !c->req->resp_head_done) {
        conn_release_upstream(c, 0);
        conn_error(c, 504, "http_response_timeout", "Gateway timeout",
                   "The origin did not answer in time.", NULL, NULL, 1);
        return;
    }
    conn_close(c, "idle timeout");
}
