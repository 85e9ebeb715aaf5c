/*
 * libFuzzer target: a request head from a client, and everything the proxy
 * does with one that parsed (req_new, req_target): the request-target and
 * its Host lines, the headers it reads (Via, Max-Forwards, Accept,
 * Accept-Language, Proxy-Authorization Basic and Negotiate), the gate's
 * decision (catalog, policy, add_headers), the head it forwards, the pages and the
 * TRACE echo it answers with, its audit line, and a chunked body after it.
 *
 * Oracles beyond the sanitizers:
 *   - the parser gives the same result fed the bytes in pieces (as reads
 *     deliver them; unread bytes are poisoned) as fed them at once;
 *   - the head the proxy forwards parses again, with the same method and
 *     the same body framing (a difference is request smuggling);
 *   - the indexed policy_eval() agrees with the rule-by-rule scan for every
 *     evaluation the gate makes, and the gate's verdict is final once its
 *     missing inputs are supplied;
 *   - the audit line is one JSON object the index reads;
 *   - a TRACE echo carries no credentials or cookies.
 */
#include <netinet/in.h>
#include <sanitizer/asan_interface.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "aigate/audit/audit.h"
#include "aigate/audit/auditidx.h"
#include "aigate/identity/auth.h"
#include "aigate/rules/catalog.h"
#include "aigate/core/config.h"
#include "aigate/rules/gate.h"
#include "aigate/http/http_msg.h"
#include "aigate/http/http_parse.h"
#include "aigate/identity/negotiate.h"
#include "aigate/http/pages.h"
#include "aigate/rules/policy.h"
#include "aigate/http/request.h"
#include "aigate/http/respond.h"
#include "aigate/identity/users.h"

#include "fuzz.h"

#define MAX_HEAD 65536

/* A policy with every kind of condition, over the shipped catalog. */
static const char extra_conf[] =
    "groups = ( { name = \"staff\"; members = [ \"alice\", \"bob\" ]; },\n"
    "           { name = \"security\"; members = [ \"carol\" ]; } );\n"
    "dlp_patterns = ( { name = \"emp\"; regex = \"EMP-[0-9]{6}\"; } );\n"
    "policy = (\n"
    "  { name = \"u\"; action = \"block\"; users = [ \"mallory\" ]; },\n"
    "  { name = \"n\"; action = \"allow\"; networks = [ \"10.1.0.0/16\", \"fd00::/8\" ];\n"
    "    groups = [ \"security\" ]; },\n"
    "  { name = \"h\"; action = \"warn\"; hosts = [ \"*.example.org\", \"example.com\" ];\n"
    "    methods = [ \"POST\", \"PUT\" ]; paths = [ \"/api/*/upload*\", \"*.php\" ]; },\n"
    "  { name = \"t\"; action = \"block\"; hours = [ \"22:00-06:00\" ]; days = [ \"sat\", "
    "\"sun\" ];\n"
    "    categories = [ \"chat\" ]; },\n"
    "  { name = \"d\"; action = \"block\"; dlp = [ \"email\", \"custom:emp\" ]; },\n"
    "  { name = \"q\"; action = \"warn\"; hosts = [ \"www.google.com\" ]; query = [ \"*udm=50*\" "
    "]; "
    "},\n"
    "  { name = \"w\"; action = \"allow\"; services = [ \"chatgpt\" ]; methods = [ \"POST\" ];\n"
    "    add_headers = ( { name = \"ChatGPT-Allowed-Workspace-Id\"; value = \"ws-1\"; },\n"
    "                    { name = \"X-Trace\"; value = \"a b\"; } ); },\n"
    "  { name = \"s\"; action = \"warn\"; services = [ \"chatgpt\" ]; ack_ttl_s = 60; },\n"
    "  { name = \"v\"; action = \"block\"; vendor_countries = [ \"CN\" ]; }\n"
    ");\n";

static struct config *cfgs[2];
static struct pages *pages;

static struct config *
load_conf(const char *name, const char *text)
{
    char path[128], err[512];
    struct config *c;

    snprintf(path, sizeof(path), "%s/%s", fuzz_tmpdir(), name);
    fuzz_write_file(path, text, strlen(text));
    if ((c = config_load(path, err, sizeof(err))) == NULL) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    return c;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char text[4096], err[256];

    (void)argc;
    (void)argv;
    snprintf(text, sizeof(text),
             "groups = ( { name = \"security\"; members = [ \"carol\" ]; },\n"
             "           { name = \"staff\"; members = [ \"alice\", \"bob\" ]; } );\n"
             "@include \"%s/services.conf\"\n@include \"%s/policy.conf\"\n",
             FUZZ_RULES_DIR, FUZZ_RULES_DIR);
    cfgs[0] = load_conf("shipped.conf", text);
    snprintf(text, sizeof(text), "@include \"%s/services.conf\"\n%s", FUZZ_RULES_DIR, extra_conf);
    cfgs[1] = load_conf("extra.conf", text);
    if ((pages = pages_load(NULL, err, sizeof(err))) == NULL)
        abort();
    return 0;
}

/* The same request fed in pieces of 1..32 bytes; bytes not yet "read" are poisoned. */
static int
parse_pieces(const uint8_t *data, size_t size, uint32_t seed, struct http_head *h)
{
    char *buf = malloc(size + 1);
    size_t have = 0;
    int rc;

    memcpy(buf, data, size);
    ASAN_POISON_MEMORY_REGION(buf, size + 1);
    memset(h, 0, sizeof(*h));
    do {
        size_t step = 1 + fuzz_next(&seed) % 32;

        have = size - have < step ? size : have + step;
        ASAN_UNPOISON_MEMORY_REGION(buf, have);
        rc = http_parse_request(buf, have, MAX_HEAD, h);
    } while (rc == HTTP_PARSE_AGAIN && have < size);
    /* After OK or ERROR, a further call repeats the result. */
    if (rc != HTTP_PARSE_AGAIN)
        FUZZ_CHECK(http_parse_request(buf, have, MAX_HEAD, h) == rc);
    ASAN_UNPOISON_MEMORY_REGION(buf, size + 1);
    free(buf);
    return rc;
}

static int
span_eq(struct http_span a, struct http_span b)
{
    return a.off == b.off && a.len == b.len;
}

static void
check_same(const struct http_head *a, const struct http_head *b)
{
    FUZZ_CHECK(a->head_len == b->head_len && a->nhdr == b->nhdr);
    FUZZ_CHECK(span_eq(a->method, b->method) && span_eq(a->target, b->target));
    FUZZ_CHECK(a->version_minor == b->version_minor && a->body == b->body &&
               a->content_length == b->content_length && a->keep_alive == b->keep_alive &&
               a->has_upgrade == b->has_upgrade && a->expect_continue == b->expect_continue &&
               a->is_head == b->is_head && a->is_connect == b->is_connect);
    for (unsigned i = 0; i < a->nhdr; i++)
        FUZZ_CHECK(span_eq(a->hdr[i].name, b->hdr[i].name) &&
                   span_eq(a->hdr[i].value, b->hdr[i].value));
}

static const char *
header(const char *buf, const struct http_head *h, const char *name, size_t *len)
{
    int i = http_header_find(buf, h, name);

    if (i < 0)
        return NULL;
    *len = h->hdr[i].value.len;
    return buf + h->hdr[i].value.off;
}

/*
 * The forwarded head must parse, as the same request with the same framing,
 * carrying each header the rule sets exactly once, with its value.
 */
static void
check_forwarded(const char *buf, const struct http_head *h, const struct http_url *u,
                const struct http_msg_field *set, size_t nset)
{
    struct evbuffer *out = evbuffer_new();
    struct http_head f;
    size_t n;
    const char *p;

    FUZZ_CHECK(out != NULL &&
               http_msg_request_head(out, buf, h, u, set, nset, http_msg_ws_request(buf, h)) == 0);
    n = evbuffer_get_length(out);
    p = (const char *)evbuffer_pullup(out, -1);
    memset(&f, 0, sizeof(f));
    /* Room for the Host, Via and set fields the proxy adds. */
    if (h->nhdr + 2 + nset <= HTTP_MAX_HEADERS) {
        FUZZ_CHECK(http_parse_request(p, n, 2 * MAX_HEAD, &f) == HTTP_PARSE_OK);
        FUZZ_CHECK(f.head_len == n);
        FUZZ_CHECK(f.method.len == h->method.len &&
                   memcmp(p + f.method.off, buf + h->method.off, f.method.len) == 0);
        FUZZ_CHECK(f.body == h->body && f.content_length == h->content_length);
        FUZZ_CHECK(http_msg_via_has_us(p, &f));
        for (size_t k = 0; k < nset; k++) {
            int seen = 0;

            for (unsigned i = 0; i < f.nhdr; i++)
                if (http_span_ieq(p, f.hdr[i].name, set[k].name)) {
                    FUZZ_CHECK(f.hdr[i].value.len == strlen(set[k].value) &&
                               memcmp(p + f.hdr[i].value.off, set[k].value, f.hdr[i].value.len) ==
                                   0);
                    seen++;
                }
            FUZZ_CHECK(seen == 1);
        }
    }
    evbuffer_free(out);
}

/*
 * The gate's verdict under cfg for the request, its missing inputs supplied
 * from seed; every policy evaluation it made must agree with the scan.
 */
static void
decide(const struct config *cfg, const struct req *r, const char *buf, uint32_t seed,
       struct gate_verdict *v)
{
    const char *const *groups = NULL;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct gate_cfg g;
    struct gate_req gr = {0};
    struct policy_req pr;
    struct tm local = {0};

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(seed & 1 ? 0x0a010203u : 0x7f000001u);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr.s6_addr[0] = 0xfd;
    local.tm_hour = (int)(seed >> 1) % 24;
    local.tm_min = (int)(seed >> 6) % 60;
    local.tm_wday = (int)(seed >> 12) % 7;
    gate_cfg_init(&g, cfg);
    g.auth_required = (seed >> 15) & 1;
    gr.client = seed & 0x80000 ? (const struct sockaddr *)&sin6 : (const struct sockaddr *)&sin;
    gr.user = r->user[0] ? r->user : NULL;
    gr.authenticated = gr.user != NULL;
    gr.ngroups = gr.user ? users_groups(cfg->users, gr.user, &groups) : 0;
    gr.groups = groups;
    gr.groups_from = GATE_GROUPS_CONFIG;
    gr.method = r->method;
    gr.connect = r->is_connect;
    gr.url = &r->url;
    gr.buf = buf;
    gr.has_body = !r->body_done;
    gr.ack = GATE_ACK_UNKNOWN;
    gr.local = &local;
    gate_decide(&g, &gr, v);
    for (int round = 0; v->needs && round < 4; round++) {
        gate_policy_req(&gr, v, &pr);
        FUZZ_CHECK(policy_eval(cfg->policy, &pr) == policy_eval_scan(cfg->policy, &pr));
        if (v->needs & GATE_NEED_GROUPS)
            gr.groups_from |= GATE_GROUPS_DIRECTORY;
        else if (v->needs & GATE_NEED_BODY) {
            gr.body_scanned = 1;
            gr.dlp_found = (seed >> 21) & 0x3f;
        } else if (v->needs & GATE_NEED_ACK_STATE) {
            gr.ack = (seed >> 27) & 1 ? GATE_ACK_YES : GATE_ACK_NO;
        }
        gate_resume(&g, &gr, v);
    }
    FUZZ_CHECK(v->needs == 0);
    gate_policy_req(&gr, v, &pr);
    FUZZ_CHECK(policy_eval(cfg->policy, &pr) == policy_eval_scan(cfg->policy, &pr));
    FUZZ_CHECK(v->nheaders == 0 || (v->action == GATE_ALLOW && v->request_visible));
}

/*
 * The audit line for r: whatever the client sent, it is one JSON object
 * the index reads (jansson, and the fast path the same way when it can).
 */
static void
check_audit_line(const struct req *r, uint32_t seed)
{
    static char line[AUDIT_LINE_MAX], a[8192], b[8192];
    struct audit_rec rec = {0};
    size_t n;

    rec.ts.tv_sec = 1764496800 + (time_t)(seed % 86400);
    rec.ts.tv_nsec = (long)(seed % 1000) * 1000000;
    audit_new_id(rec.id);
    rec.client = "127.0.0.1";
    rec.user = r->user[0] ? r->user : NULL;
    rec.method = r->method[0] ? r->method : NULL;
    rec.port = -1;
    if (r->url.host[0]) {
        rec.scheme = r->https ? "https" : r->url.scheme;
        rec.host = r->url.host;
        rec.port = r->url.port;
    }
    rec.path = r->path;
    rec.rule = r->rule ? r->rule->name : NULL;
    rec.action = (enum audit_action)(seed % (AUDIT_ERROR + 1));
    rec.status = 200;
    rec.bytes_in = (int64_t)r->bytes_in;
    rec.bytes_out = -1;
    rec.ms = 3;
    rec.tls = r->https ? "intercept" : "none";
    FUZZ_CHECK((n = audit_format(line, sizeof(line), &rec, (seed >> 3) & 1)) > 0);
    FUZZ_CHECK(auditidx_parse_debug(line, n, 0, b, sizeof(b)) == 0);
    if (auditidx_parse_debug(line, n, 1, a, sizeof(a)) == 0)
        FUZZ_CHECK(strcmp(a, b) == 0);
}

/* A TRACE echo never carries credentials or cookies. */
static void
check_trace(const char *buf, const struct http_head *h)
{
    struct evbuffer *out = evbuffer_new();
    struct http_head e;
    const char *p, *body;
    size_t n;

    FUZZ_CHECK(out != NULL && respond_trace(out, buf, h, 1, 0) > 0);
    n = evbuffer_get_length(out);
    p = (const char *)evbuffer_pullup(out, -1);
    body = memmem(p, n, "\r\n\r\n", 4);
    FUZZ_CHECK(body != NULL);
    body += 4;
    memset(&e, 0, sizeof(e));
    if (http_parse_request(body, n - (size_t)(body - p), 2 * MAX_HEAD, &e) == HTTP_PARSE_OK)
        for (unsigned i = 0; i < e.nhdr; i++)
            FUZZ_CHECK(!http_span_ieq(body, e.hdr[i].name, "Proxy-Authorization") &&
                       !http_span_ieq(body, e.hdr[i].name, "Authorization") &&
                       !http_span_ieq(body, e.hdr[i].name, "Cookie"));
    evbuffer_free(out);
}

/* What the proxy does with a head that parsed (request.c, http_msg.c, respond.c, ...). */
static void
use_head(const char *buf, size_t size, const struct http_head *h, uint32_t seed)
{
    struct req *r = req_new(buf, h, (seed >> 2) & 1);
    struct evbuffer *out = evbuffer_new();
    const char *tls_host = NULL, *val, *tok;
    const struct req_error *e;
    struct auth_cred cred;
    char url[2048];
    size_t len, toklen;

    FUZZ_CHECK(r != NULL && out != NULL);
    if (h->target.len == 0 || buf[h->target.off] == '/' || (seed >> 4) & 1)
        tls_host = (seed >> 5) & 1 ? "2001:db8::1" : "chatgpt.com";
    if ((val = header(buf, h, "Proxy-Authorization", &len)) != NULL) {
        if (auth_basic_parse(val, len, &cred) == 0) {
            if (cred.ulen < sizeof(r->user))
                memcpy(r->user, cred.user, cred.ulen + 1);
            auth_cred_clear(&cred);
        }
        if (negotiate_parse(val, len, &tok, &toklen) == NEGOTIATE_PARSE_OK)
            FUZZ_CHECK(tok >= val && tok + toklen <= val + len && toklen <= NEGOTIATE_TOKEN_MAX);
    }
    (void)http_msg_via_has_us(buf, h);
    (void)http_msg_max_forwards(buf, h);
    if ((e = req_target(r, buf, h, tls_host, 443)) == NULL) {
        struct gate_verdict v;

        FUZZ_CHECK(memchr(r->url.host, '\0', sizeof(r->url.host)) != NULL);
        req_url(r, url, sizeof(url));
        decide(cfgs[1], r, buf, seed, &v);
        if (!h->is_connect)
            check_forwarded(buf, h, &r->url, v.headers, v.nheaders);
        decide(cfgs[0], r, buf, seed, &v);
        r->rule = v.rule;
        r->svc = v.service;
        if (v.action == GATE_BLOCK && v.rule != NULL)
            FUZZ_CHECK(respond_block(out, pages, r, "127.0.0.1", r->keep_alive) > 0);
    }
    FUZZ_CHECK(respond_error(out, pages, r, e ? 400 : 502, "http_request_error",
                             e ? e->title : "Bad gateway", e ? e->detail : r->path,
                             r->keep_alive) > 0);
    FUZZ_CHECK(
        respond_auth(out, pages, r, "aigate", RESPOND_AUTH_BASIC | RESPOND_AUTH_NEGOTIATE, 0) > 0);
    if (http_span_ieq(buf, h->method, "TRACE"))
        check_trace(buf, h);
    check_audit_line(r, seed);
    evbuffer_free(out);
    req_free(r);

    if (h->body == HTTP_BODY_CHUNKED) {
        struct http_chunk c;
        size_t consumed;

        http_chunk_init(&c);
        (void)http_chunk_feed(&c, buf + h->head_len, size - h->head_len, &consumed);
        FUZZ_CHECK(consumed <= size - h->head_len);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    uint32_t seed = fuzz_seed(data, size);
    struct http_head *whole = calloc(1, sizeof(*whole)), *pieces = malloc(sizeof(*pieces));
    int rc = http_parse_request(buf, size, MAX_HEAD, whole);

    FUZZ_CHECK(parse_pieces(data, size, seed, pieces) == rc);
    if (rc == HTTP_PARSE_OK) {
        FUZZ_CHECK(whole->head_len <= size);
        check_same(whole, pieces);
        use_head(buf, size, whole, seed);
    } else if (rc == HTTP_PARSE_ERROR) {
        FUZZ_CHECK(whole->error_status == pieces->error_status);
        FUZZ_CHECK(whole->error_status == 400 || whole->error_status == 431);
    }
    /* A small limit: 431 instead of a crash. */
    memset(whole, 0, sizeof(*whole));
    (void)http_parse_request(buf, size, 64, whole);
    free(whole);
    free(pieces);
    return 0;
}
