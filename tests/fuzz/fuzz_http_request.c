/*
 * libFuzzer target: a request head from a client, and everything the proxy
 * does with one that parsed: the request-target, the headers it reads
 * (Via, Max-Forwards, Accept, Accept-Language, Proxy-Authorization), the
 * catalog lookup and the policy decision, the head it forwards, a page that
 * quotes it, and a chunked body after it.
 *
 * Oracles beyond the sanitizers:
 *   - the parser gives the same result fed the bytes in pieces (as reads
 *     deliver them; unread bytes are poisoned) as fed them at once;
 *   - the head the proxy forwards parses again, with the same method and
 *     the same body framing (a difference is request smuggling);
 *   - the indexed policy_eval() agrees with the rule-by-rule scan.
 */
#include <netinet/in.h>
#include <sanitizer/asan_interface.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "aigate/auth.h"
#include "aigate/catalog.h"
#include "aigate/caution.h"
#include "aigate/config.h"
#include "aigate/http_msg.h"
#include "aigate/http_parse.h"
#include "aigate/pages.h"
#include "aigate/policy.h"
#include "aigate/users.h"

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

/* The forwarded head must parse, as the same request with the same framing. */
static void
check_forwarded(const char *buf, const struct http_head *h, const struct http_url *u)
{
    struct evbuffer *out = evbuffer_new();
    struct http_head f;
    size_t n;
    const char *p;

    FUZZ_CHECK(out != NULL && http_msg_request_head(out, buf, h, u) == 0);
    n = evbuffer_get_length(out);
    p = (const char *)evbuffer_pullup(out, -1);
    memset(&f, 0, sizeof(f));
    /* Room for the Host and Via the proxy adds (two more fields at most). */
    if (h->nhdr + 2 <= HTTP_MAX_HEADERS) {
        FUZZ_CHECK(http_parse_request(p, n, 2 * MAX_HEAD, &f) == HTTP_PARSE_OK);
        FUZZ_CHECK(f.head_len == n);
        FUZZ_CHECK(f.method.len == h->method.len &&
                   memcmp(p + f.method.off, buf + h->method.off, f.method.len) == 0);
        FUZZ_CHECK(f.body == h->body && f.content_length == h->content_length);
        FUZZ_CHECK(http_msg_via_has_us(p, &f));
    }
    evbuffer_free(out);
}

static void
check_policy(const struct config *cfg, const char *method, const char *path, size_t pathlen,
             const char *host, const char *user, uint32_t seed)
{
    const struct service *svc = catalog_lookup(cfg->catalog, host, strlen(host));
    const char *const *groups = NULL;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct policy_req pr = {0};
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
    pr.user = user;
    pr.ngroups = user ? users_groups(cfg->users, user, &groups) : 0;
    pr.groups = groups;
    pr.client = seed & 0x80000 ? (const struct sockaddr *)&sin6 : (const struct sockaddr *)&sin;
    pr.svc = svc;
    pr.host = host;
    pr.local = &local;
    pr.have_request = method != NULL;
    pr.method = method;
    pr.path = path;
    pr.pathlen = pathlen;
    pr.body_inspected = (seed >> 20) & 1;
    pr.dlp_found = pr.body_inspected ? (seed >> 21) & 0x1f : 0;
    FUZZ_CHECK(policy_eval(cfg->policy, &pr) == policy_eval_scan(cfg->policy, &pr));
}

/* What the proxy does with a head that parsed. */
static void
use_head(const char *buf, size_t size, const struct http_head *h, uint32_t seed)
{
    struct http_url u;
    struct auth_cred cred;
    struct page_vars v = {0};
    struct evbuffer *page = evbuffer_new();
    char method[32], target[1024], path[1024];
    const char *val, *user = NULL;
    size_t len, pathlen = 1;
    int rc;

    memset(&u, 0, sizeof(u));
    if (h->is_connect) {
        rc = http_url_parse_authority(buf, h->target, &u);
    } else if (h->target.len > 0 && buf[h->target.off] == '/') {
        strcpy(u.scheme, "https");
        strcpy(u.host, "chatgpt.com");
        u.port = 443;
        rc = http_url_parse_origin(buf, h->target, &u);
    } else {
        rc = http_url_parse_absolute(buf, h->target, &u);
    }
    if (rc == 0) {
        FUZZ_CHECK(memchr(u.host, '\0', sizeof(u.host)) != NULL);
        FUZZ_CHECK(u.path.off + (size_t)u.path.len <= h->target.off + (size_t)h->target.len);
        if (!h->is_connect)
            check_forwarded(buf, h, &u);
    }
    (void)http_msg_via_has_us(buf, h);
    (void)http_msg_max_forwards(buf, h);
    if ((val = header(buf, h, "Accept-Language", &len)) != NULL)
        (void)caution_prefers_korean(val, len);
    if ((val = header(buf, h, "Accept", &len)) != NULL)
        (void)pages_client_wants_html(val, len);
    if ((val = header(buf, h, "Proxy-Authorization", &len)) != NULL &&
        auth_basic_parse(val, len, &cred) == 0)
        user = cred.user;
    (void)http_list_has(buf, h->hdr[0].value, "close");

    snprintf(method, sizeof(method), "%.*s", (int)h->method.len, buf + h->method.off);
    snprintf(target, sizeof(target), "%.*s", (int)h->target.len, buf + h->target.off);
    if (rc == 0) {
        if (u.pathname.len > 0) {
            pathlen = u.pathname.len < sizeof(path) - 1 ? u.pathname.len : sizeof(path) - 1;
            memcpy(path, buf + u.pathname.off, pathlen);
        } else {
            path[0] = '/';
        }
        path[pathlen] = '\0';
        for (size_t i = 0; i < 2; i++)
            check_policy(cfgs[i], h->is_connect ? NULL : method, h->is_connect ? NULL : path,
                         pathlen, u.host, user, seed);
    }
    v.host = rc == 0 ? u.host : NULL;
    v.url = target;
    v.method = method;
    v.user = user;
    v.lang = seed & 1 ? "ko" : "en";
    FUZZ_CHECK(page != NULL &&
               pages_render(page, pages, (enum page_kind)(seed % PAGE_KINDS), &v) == 0);
    FUZZ_CHECK(pages_render_text(page, (enum page_kind)(seed % PAGE_KINDS), &v) == 0);
    evbuffer_free(page);
    if (user != NULL)
        auth_cred_clear(&cred);

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
