/*
 * The dashboard's HTTP side (design in include/aigate/admin/dashboard.h): routes,
 * Basic authentication with the verifier thread, the API's parameters, and
 * the hand-over of queries to the audit index.
 *
 * A request that needs a password check is parked in a struct dash_auth
 * while the verifier thread runs crypt(3); the thread hands it back through
 * d->auth_ev, and the route's serve() then runs on the loop.  A query is a
 * struct dash_job (an auditidx_job plus the request and the configuration
 * whose groups it uses) that the index hands back through its own event.
 */
#include "aigate/admin/dashboard.h"

#include <crypt.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "aigate/audit/audit.h"
#include "aigate/audit/auditidx.h"
#include "aigate/core/config.h"
#include "aigate/core/log.h"
#include "aigate/identity/auth.h"
#include "aigate/net/worker.h"

#define DASH_REALM "aigate dashboard"
#define DASH_CSP "default-src 'self'"
#define DASH_AUTH_PENDING_MAX 32 /* password checks waiting at once; more get 503 */
#define DASH_AUTH_CACHE 64
#define DASH_AUTH_TTL_S 600
#define DASH_LIMIT_MAX 100000
#define DASH_PERIOD_MAX_DAYS 3660

/* The page, its script and its style sheet, compiled in (proxy/admin/dash_assets.S). */
extern const char dash_index_html[], dash_js[], dash_css[];
extern const unsigned long dash_index_html_len, dash_js_len, dash_css_len;

struct dash;
typedef void (*dash_serve_fn)(struct dash *d, struct evhttp_request *req);

/* A request waiting for its password check. */
struct dash_auth {
    struct dash *d;
    struct evhttp_request *req;
    struct config *cfg; /* its admin_db */
    struct auth_cred cred;
    dash_serve_fn serve;
    int ok;
    struct dash_auth *next;
};

/* A query waiting for the index. */
struct dash_job {
    struct auditidx_job j;
    struct dash *d;
    struct evhttp_request *req;
    struct config *cfg; /* j.users belongs to it */
};

struct dash {
    struct event_base *base;
    struct config *cfg;
    struct auditidx *idx;
    char *idx_path;
    struct auth_cache *cache;

    pthread_t th;
    int th_running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    struct dash_auth *todo, **todo_tail, *done, **done_tail;
    int pending; /* loop side: parked in todo or done */
    struct event *auth_ev;
};

/* ---- parameters ------------------------------------------------------------------- */

static int
dash_filter(struct auditidx_filter *f, const char *v, const char *name, char *err, size_t errlen)
{
    size_t n = strlen(v);
    if (n >= sizeof(f->v)) {
        snprintf(err, errlen, "%s: longer than %zu bytes", name, sizeof(f->v) - 1);
        return -1;
    }
    f->set = 1;
    f->is_null = n == 0;
    memcpy(f->v, v, n + 1);
    return 0;
}

static int
dash_uint(const char *v, long lo, long hi, long *out)
{
    char *end;
    if (!*v || *v < '0' || *v > '9')
        return -1;
    long n = strtol(v, &end, 10);
    if (*end || n < lo || n > hi)
        return -1;
    *out = n;
    return 0;
}

static int
dash_tz(const char *v, int *tz_min)
{
    size_t n = strlen(v);
    int h, m;
    if (n == 1 && (v[0] == 'Z' || v[0] == 'z')) {
        *tz_min = 0;
        return 0;
    }
    if (n != 6 || (v[0] != '+' && v[0] != '-' && v[0] != ' ') || v[3] != ':' ||
        sscanf(v + 1, "%2d", &h) != 1 || sscanf(v + 4, "%2d", &m) != 1 || v[1] < '0' ||
        v[1] > '9' || v[2] < '0' || v[2] > '9' || v[4] < '0' || v[4] > '9' || v[5] < '0' ||
        v[5] > '9' || h > 23 || m > 59)
        return -1;
    *tz_min = (v[0] == '-' ? -1 : 1) * (h * 60 + m);
    return 0;
}

int
dash_parse_query(const char *query, int64_t now_ms, int recent, struct auditidx_query *q, char *err,
                 size_t errlen)
{
    static const char *const bys[] = {"service",  "user", "group", "rule",  "action",
                                      "category", "hour", "day",   "minute"};
    static const char *const keys[] = {"from",   "to",    "period", "by",       "service",
                                       "user",   "group", "action", "category", "rule",
                                       "format", "tz",    "limit",  "n",        NULL};
    struct evkeyvalq kv;
    struct evkeyval *e;
    unsigned seen = 0;
    int64_t from = 0, to = now_ms, period = 24 * 3600000LL;
    int rc = -1;

    memset(q, 0, sizeof(*q));
    TAILQ_INIT(&kv);
    if (query && *query && evhttp_parse_query_str(query, &kv) < 0) {
        snprintf(err, errlen, "the query string does not parse");
        goto out;
    }
    TAILQ_FOREACH(e, &kv, next) {
        int k;
        for (k = 0; keys[k] && strcmp(keys[k], e->key) != 0; k++)
            ;
        if (!keys[k] || (recent && (k == 3 || k == 10 || k == 11 || k == 12)) ||
            (!recent && k == 13)) {
            snprintf(err, errlen, "unknown parameter \"%.64s\"", e->key);
            goto out;
        }
        if (seen & (1u << k)) {
            snprintf(err, errlen, "%s given twice", keys[k]);
            goto out;
        }
        seen |= 1u << k;
        const char *v = e->value;
        long n;
        switch (k) {
        case 0:
        case 1:
            if (auditidx_parse_time(v, strlen(v), k == 0 ? &from : &to) < 0) {
                snprintf(err, errlen, "%s: not an ISO 8601 time such as 2026-11-23T04:10:00Z",
                         keys[k]);
                goto out;
            }
            break;
        case 2: {
            size_t len = strlen(v);
            char unit = len ? v[len - 1] : 0;
            char num[16];
            if ((unit != 'h' && unit != 'd') || len < 2 || len > sizeof(num)) {
                snprintf(err, errlen, "period: a number of hours or days such as 24h or 7d");
                goto out;
            }
            memcpy(num, v, len - 1);
            num[len - 1] = '\0';
            if (dash_uint(num, 1, unit == 'h' ? DASH_PERIOD_MAX_DAYS * 24 : DASH_PERIOD_MAX_DAYS,
                          &n) < 0) {
                snprintf(err, errlen,
                         "period: a number of hours or days such as 24h or 7d "
                         "(at most 10 years)");
                goto out;
            }
            period = n * (unit == 'h' ? 3600000LL : 86400000LL);
            break;
        }
        case 3: {
            size_t b;
            for (b = 0; b < sizeof(bys) / sizeof(bys[0]) && strcmp(bys[b], v) != 0; b++)
                ;
            if (b == sizeof(bys) / sizeof(bys[0])) {
                snprintf(err, errlen,
                         "by: one of service, user, group, rule, action, category, "
                         "hour, day");
                goto out;
            }
            q->by = (enum auditidx_by)b;
            break;
        }
        case 4:
        case 5:
        case 6:
        case 7:
        case 8:
        case 9: {
            struct auditidx_filter *f[] = {&q->service, &q->user,     &q->group,
                                           &q->action,  &q->category, &q->rule};
            if (dash_filter(f[k - 4], v, keys[k], err, errlen) < 0)
                goto out;
            break;
        }
        case 10:
            if (strcmp(v, "json") != 0 && strcmp(v, "csv") != 0) {
                snprintf(err, errlen, "format: json or csv");
                goto out;
            }
            q->csv = v[0] == 'c';
            break;
        case 11:
            if (dash_tz(v, &q->tz_min) < 0) {
                snprintf(err, errlen, "tz: Z, +HH:MM or -HH:MM");
                goto out;
            }
            break;
        case 12:
            if (dash_uint(v, 1, DASH_LIMIT_MAX, &n) < 0) {
                snprintf(err, errlen, "limit: a number from 1 to %d", DASH_LIMIT_MAX);
                goto out;
            }
            q->limit = (size_t)n;
            break;
        default:
            if (dash_uint(v, 1, AUDITIDX_RECENT, &n) < 0) {
                snprintf(err, errlen, "n: a number from 1 to %d", AUDITIDX_RECENT);
                goto out;
            }
            q->n = (size_t)n;
            break;
        }
    }
    if ((seen & 1u) && (seen & 4u)) {
        snprintf(err, errlen, "from and period: give one of them");
        goto out;
    }
    if (!(seen & 1u))
        from = to - period;
    if (from >= to) {
        snprintf(err, errlen, "from must be before to");
        goto out;
    }
    q->from_ms = from;
    q->to_ms = to;
    if (recent && !q->n)
        q->n = 50;
    rc = 0;
out:
    evhttp_clear_headers(&kv);
    return rc;
}

const char *
dash_lang(const char *al)
{
    double best = -1;
    const char *lang = "en";

    while (al && *al) {
        while (*al == ' ' || *al == ',')
            al++;
        size_t n = strcspn(al, ",");
        char tag[64];
        snprintf(tag, sizeof(tag), "%.*s", (int)(n < sizeof(tag) ? n : sizeof(tag) - 1), al);
        al += n;
        double qv = 1;
        char *semi = strchr(tag, ';');
        if (semi) {
            *semi = '\0';
            char *qp = strstr(semi + 1, "q=");
            if (qp)
                qv = strtod(qp + 2, NULL);
        }
        tag[strcspn(tag, " ")] = '\0';
        int ko = strncasecmp(tag, "ko", 2) == 0 && (tag[2] == '\0' || tag[2] == '-');
        int en = strncasecmp(tag, "en", 2) == 0 && (tag[2] == '\0' || tag[2] == '-');
        if ((ko || en) && qv > best) {
            best = qv;
            lang = ko ? "ko" : "en";
        }
    }
    return lang;
}

/* ---- responses -------------------------------------------------------------------- */

static void
dash_headers(struct evhttp_request *req, const char *type)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Content-Security-Policy", DASH_CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Cache-Control", "no-store");
}

static void
dash_reply(struct evhttp_request *req, int status, const char *reason, const char *type,
           struct evbuffer *body)
{
    dash_headers(req, type);
    evhttp_send_reply(req, status, reason, body);
}

/* A JSON {"error": msg} answer (also for the page's paths: a browser shows it as text). */
static void
dash_error(struct evhttp_request *req, int status, const char *reason, const char *msg)
{
    struct evbuffer *b = evbuffer_new();
    char esc[1024];
    if (!b)
        return evhttp_send_error(req, 500, NULL);
    size_t n = audit_json_str(esc, sizeof(esc), msg, strlen(msg), sizeof(esc) - 8);
    evbuffer_add_printf(b, "{\"error\":%.*s}\n", (int)n, esc);
    dash_reply(req, status, reason, "application/json", b);
    evbuffer_free(b);
}

static void
dash_serve_page(struct dash *d, struct evhttp_request *req)
{
    (void)d;
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return evhttp_send_error(req, 500, NULL);
    const char *al = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept-Language");
    const char *lang = dash_lang(al);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query && strcmp(query, "lang=ko") == 0)
        lang = "ko";
    else if (query && strcmp(query, "lang=en") == 0)
        lang = "en";
    /* The page's one placeholder: the language of <html lang="…">. */
    const char *mark = memmem(dash_index_html, dash_index_html_len, "{{lang}}", 8);
    size_t pre = mark ? (size_t)(mark - dash_index_html) : dash_index_html_len;
    evbuffer_add(b, dash_index_html, pre);
    if (mark) {
        evbuffer_add(b, lang, 2);
        evbuffer_add(b, mark + 8, dash_index_html_len - pre - 8);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Vary", "Accept-Language");
    dash_reply(req, 200, "OK", "text/html; charset=utf-8", b);
    evbuffer_free(b);
}

static void
dash_serve_static(struct evhttp_request *req, const char *data, size_t len, const char *type)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return evhttp_send_error(req, 500, NULL);
    evbuffer_add_reference(b, data, len, NULL, NULL);
    dash_reply(req, 200, "OK", type, b);
    evbuffer_free(b);
}

static void
dash_serve_js(struct dash *d, struct evhttp_request *req)
{
    (void)d;
    dash_serve_static(req, dash_js, dash_js_len, "text/javascript; charset=utf-8");
}

static void
dash_serve_css(struct dash *d, struct evhttp_request *req)
{
    (void)d;
    dash_serve_static(req, dash_css, dash_css_len, "text/css; charset=utf-8");
}

/* ---- queries ---------------------------------------------------------------------- */

static void
dash_job_done(struct auditidx_job *aj)
{
    struct dash_job *j = (struct dash_job *)aj;
    if (aj->status == 200)
        dash_reply(j->req, 200, "OK", aj->q.csv ? "text/csv; charset=utf-8" : "application/json",
                   aj->out);
    else if (aj->status > 0)
        dash_reply(j->req, aj->status, aj->status == 400 ? "Bad Request" : "Internal Server Error",
                   "application/json", aj->out);
    else if (!j->d->stop)
        dash_error(j->req, 503, "Service Unavailable", "the audit index restarted: try again");
    evbuffer_free(aj->out);
    config_unref(j->cfg);
    free(j);
}

static void
dash_serve_api(struct dash *d, struct evhttp_request *req, enum auditidx_job_kind kind)
{
    char err[256];
    struct timespec now;
    struct dash_job *j = calloc(1, sizeof(*j));

    if (!j || !(j->j.out = evbuffer_new())) {
        free(j);
        return dash_error(req, 500, "Internal Server Error", "out of memory");
    }
    clock_gettime(CLOCK_REALTIME, &now);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (dash_parse_query(query, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
                         kind == AUDITIDX_JOB_RECENT, &j->j.q, err, sizeof(err)) < 0) {
        evbuffer_free(j->j.out);
        free(j);
        return dash_error(req, 400, "Bad Request", err);
    }
    j->d = d;
    j->req = req;
    j->cfg = config_ref(d->cfg);
    j->j.kind = kind;
    j->j.users = j->cfg->users;
    j->j.done = dash_job_done;
    if (auditidx_submit(d->idx, &j->j) < 0) {
        evbuffer_free(j->j.out);
        config_unref(j->cfg);
        free(j);
        return dash_error(req, 503, "Service Unavailable", "the audit index is not running");
    }
}

static void
dash_serve_usage(struct dash *d, struct evhttp_request *req)
{
    dash_serve_api(d, req, AUDITIDX_JOB_USAGE);
}

static void
dash_serve_recent(struct dash *d, struct evhttp_request *req)
{
    dash_serve_api(d, req, AUDITIDX_JOB_RECENT);
}

/* ---- authentication --------------------------------------------------------------- */

static void
dash_unauthorized_now(struct evhttp_request *req)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                      "Basic realm=\"" DASH_REALM "\", charset=\"UTF-8\"");
    dash_error(req, 401, "Unauthorized", "user name and password needed (admin.htpasswd)");
}

static void
dash_unauthorized_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dash_unauthorized_now(arg);
}

/* A wrong password: 401, later and later for an address that keeps failing (auth.h). */
static void
dash_unauthorized(struct dash *d, struct evhttp_request *req)
{
    struct evhttp_connection *con = evhttp_request_get_connection(req);
    const struct sockaddr *sa = con ? evhttp_connection_get_addr(con) : NULL;
    unsigned ms = sa && rt.auth_backoff ? auth_backoff_fail(rt.auth_backoff, sa, time(NULL)) : 0;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (ms && event_base_once(d->base, -1, EV_TIMEOUT, dash_unauthorized_cb, req, &tv) == 0)
        return;
    dash_unauthorized_now(req);
}

static void *
dash_verify_thread(void *arg)
{
    struct dash *d = arg;
    struct crypt_data *cd = calloc(1, sizeof(*cd));

    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        struct dash_auth *a = d->todo;
        if (!a) {
            pthread_cond_wait(&d->cv, &d->mu);
            continue;
        }
        d->todo = a->next;
        if (!d->todo)
            d->todo_tail = &d->todo;
        pthread_mutex_unlock(&d->mu);
        a->ok = cd && auth_db_verify(a->cfg->admin_db, &a->cred, cd) == 1;
        a->next = NULL;
        pthread_mutex_lock(&d->mu);
        *d->done_tail = a;
        d->done_tail = &a->next;
        event_active(d->auth_ev, EV_READ, 0);
    }
    pthread_mutex_unlock(&d->mu);
    free(cd);
    return NULL;
}

static void
dash_auth_free(struct dash_auth *a)
{
    auth_cred_clear(&a->cred);
    config_unref(a->cfg);
    free(a);
}

static void
dash_auth_done(evutil_socket_t fd, short what, void *arg)
{
    struct dash *d = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&d->mu);
    struct dash_auth *a = d->done;
    d->done = NULL;
    d->done_tail = &d->done;
    pthread_mutex_unlock(&d->mu);
    while (a) {
        struct dash_auth *next = a->next;
        d->pending--;
        if (a->ok) {
            auth_cache_put(d->cache, a->cfg->admin_db, &a->cred);
            if (rt.auth_backoff) {
                struct evhttp_connection *con = evhttp_request_get_connection(a->req);
                if (con)
                    auth_backoff_ok(rt.auth_backoff, evhttp_connection_get_addr(con));
            }
            a->serve(d, a->req);
        } else {
            dash_unauthorized(d, a->req);
        }
        dash_auth_free(a);
        a = next;
    }
}

/* Check the credentials, then serve(): at once from the cache, or after the verifier thread. */
static void
dash_guard(struct dash *d, struct evhttp_request *req, dash_serve_fn serve)
{
    struct config *c = d->cfg;
    if (!c->admin_db)
        return dash_error(req, 403, "Forbidden",
                          "the dashboard is off: set admin.htpasswd in the configuration");
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    struct dash_auth *a = calloc(1, sizeof(*a));
    if (!a)
        return dash_error(req, 500, "Internal Server Error", "out of memory");
    if (!h || auth_basic_parse(h, strlen(h), &a->cred) < 0) {
        free(a);
        return dash_unauthorized_now(req);
    }
    if (auth_cache_check(d->cache, c->admin_db, &a->cred) == 1) {
        auth_cred_clear(&a->cred);
        free(a);
        return serve(d, req);
    }
    if (d->pending >= DASH_AUTH_PENDING_MAX || !d->th_running) {
        auth_cred_clear(&a->cred);
        free(a);
        return dash_error(req, 503, "Service Unavailable", "too many logins at once: try again");
    }
    a->d = d;
    a->req = req;
    a->cfg = config_ref(c);
    a->serve = serve;
    d->pending++;
    pthread_mutex_lock(&d->mu);
    *d->todo_tail = a;
    d->todo_tail = &a->next;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void
dash_route(struct evhttp_request *req, void *arg)
{
    struct dash *d = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    static const struct {
        const char *path;
        dash_serve_fn serve;
    } routes[] = {
        {"/", dash_serve_page},           {"/index.html", dash_serve_page},
        {"/dash.js", dash_serve_js},      {"/dash.css", dash_serve_css},
        {"/api/usage", dash_serve_usage}, {"/api/recent", dash_serve_recent},
    };
    /* Browsers ask for it unprompted: nothing, rather than a 404 in their console. */
    if (path && strcmp(path, "/favicon.ico") == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "max-age=86400");
        return evhttp_send_reply(req, 204, "No Content", NULL);
    }
    for (size_t i = 0; path && i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(path, routes[i].path) == 0)
            return dash_guard(d, req, routes[i].serve);
    dash_error(req, 404, "Not Found", "no such page");
}

/* ---- life ------------------------------------------------------------------------- */

/* The index for the configuration in force: started with admin.htpasswd, renewed on a new path. */
static void
dash_index_update(struct dash *d)
{
    const struct config *c = d->cfg;
    char err[512];

    if (!c->admin_db || (d->idx && strcmp(d->idx_path, c->audit.path) == 0))
        return;
    auditidx_free(d->idx);
    free(d->idx_path);
    d->idx = NULL;
    d->idx_path = strdup(c->audit.path);
    if (!d->idx_path || !(d->idx = auditidx_new()) ||
        auditidx_start(d->idx, c->audit.path, d->base, err, sizeof(err)) < 0) {
        log_warnx("dashboard: %s", d->idx ? err : "out of memory");
        auditidx_free(d->idx);
        d->idx = NULL;
        free(d->idx_path);
        d->idx_path = NULL;
    }
}

struct dash *
dash_new(struct event_base *base, struct evhttp *http, struct config *cfg)
{
    struct dash *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->base = base;
    d->cfg = config_ref(cfg);
    d->todo_tail = &d->todo;
    d->done_tail = &d->done;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (!(d->cache = auth_cache_new(DASH_AUTH_CACHE, DASH_AUTH_TTL_S)) ||
        !(d->auth_ev = event_new(base, -1, 0, dash_auth_done, d)))
        goto fail;
    if (pthread_create(&d->th, NULL, dash_verify_thread, d) != 0)
        goto fail;
    pthread_setname_np(d->th, "aigate-dashauth");
    d->th_running = 1;
    evhttp_set_gencb(http, dash_route, d);
    dash_index_update(d);
    return d;
fail:
    dash_free(d);
    return NULL;
}

void
dash_set_config(struct dash *d, struct config *cfg)
{
    if (!d)
        return;
    config_unref(d->cfg);
    d->cfg = config_ref(cfg);
    dash_index_update(d);
}

void
dash_free(struct dash *d)
{
    if (!d)
        return;
    d->stop = 1;
    auditidx_free(d->idx);
    if (d->th_running) {
        pthread_mutex_lock(&d->mu);
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->th, NULL);
    }
    *d->todo_tail = d->done;
    for (struct dash_auth *a = d->todo, *next; a; a = next) {
        next = a->next;
        dash_auth_free(a);
    }
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    if (d->auth_ev)
        event_free(d->auth_ev);
    auth_cache_free(d->cache);
    free(d->idx_path);
    config_unref(d->cfg);
    free(d);
}
