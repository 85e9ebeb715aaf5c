/*
 * Unit tests for proxy/http/http_msg.c: forwarded request and response heads
 * (hop-by-hop removal incl. Connection-named fields, Host rewrite, Via,
 * Max-Forwards), Via loop detection, fields the proxy sets (add_headers)
 * replacing the client's.
 */
#include <check.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/http/http_msg.h"

/* What out holds, as a string (malloc'd); out is freed. */
static char *
taken(struct evbuffer *out)
{
    size_t n = evbuffer_get_length(out);
    char *r = malloc(n + 1);

    ck_assert_ptr_nonnull(r);
    evbuffer_remove(out, r, n);
    r[n] = '\0';
    evbuffer_free(out);
    return r;
}

/*
 * Request s (absolute-form) parsed and serialised with set[0..nset), as a
 * WebSocket upgrade when ws (malloc'd).
 */
static char *
fwd_request_full(const char *s, const struct http_msg_field *set, size_t nset, int ws)
{
    struct http_head h;
    struct http_url u;
    struct evbuffer *out = evbuffer_new();

    ck_assert_ptr_nonnull(out);
    memset(&h, 0, sizeof(h));
    ck_assert_int_eq(http_parse_request(s, strlen(s), 65536, &h), HTTP_PARSE_OK);
    ck_assert_int_eq(http_url_parse_absolute(s, h.target, &u), 0);
    ck_assert_int_eq(http_msg_request_head(out, s, &h, &u, set, nset, ws), 0);
    return taken(out);
}

static char *
fwd_request(const char *s)
{
    return fwd_request_full(s, NULL, 0, 0);
}

static char *
fwd_request_set(const char *s, const struct http_msg_field *set, size_t nset)
{
    return fwd_request_full(s, set, nset, 0);
}

static char *
fwd_request_ws(const char *s)
{
    return fwd_request_full(s, NULL, 0, 1);
}

/* The 101 of s as forwarded to a WebSocket client (malloc'd). */
static char *
fwd_switch(const char *s)
{
    struct http_head h;
    struct evbuffer *out = evbuffer_new();

    ck_assert_ptr_nonnull(out);
    memset(&h, 0, sizeof(h));
    ck_assert_int_eq(http_parse_response(s, strlen(s), 65536, 0, &h), HTTP_PARSE_OK);
    ck_assert_int_eq(http_msg_ws_accepted(s, &h), 1);
    ck_assert_int_eq(http_msg_ws_switch_head(out, s, &h), 0);
    return taken(out);
}

/* http_msg_ws_request() on request s, or http_msg_ws_accepted() on response s. */
static int
is_ws(const char *s, int response)
{
    struct http_head h;
    memset(&h, 0, sizeof(h));
    if (response) {
        ck_assert_int_eq(http_parse_response(s, strlen(s), 65536, 0, &h), HTTP_PARSE_OK);
        return http_msg_ws_accepted(s, &h);
    }
    ck_assert_int_eq(http_parse_request(s, strlen(s), 65536, &h), HTTP_PARSE_OK);
    return http_msg_ws_request(s, &h);
}

static char *
fwd_response(const char *s, int client_minor, int keep_alive, int dechunk)
{
    struct http_head h;
    struct evbuffer *out = evbuffer_new();

    ck_assert_ptr_nonnull(out);
    memset(&h, 0, sizeof(h));
    ck_assert_int_eq(http_parse_response(s, strlen(s), 65536, 0, &h), HTTP_PARSE_OK);
    ck_assert_int_eq(http_msg_response_head(out, s, &h, client_minor, keep_alive, dechunk), 0);
    return taken(out);
}

#define CHECK_FWD(fn, expect, ...)                                                                 \
    do {                                                                                           \
        char *got_ = fn(__VA_ARGS__);                                                              \
        ck_assert_str_eq(got_, expect);                                                            \
        free(got_);                                                                                \
    } while (0)

START_TEST(test_request_line_host)
{
    CHECK_FWD(fwd_request, "GET /a?b HTTP/1.1\r\nHost: example.com\r\nVia: 1.1 aigate\r\n\r\n",
              "GET http://Example.com/a?b HTTP/1.0\r\nHost: evil.example\r\n\r\n");
    CHECK_FWD(fwd_request,
              "GET / HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nVia: 1.1 aigate\r\n\r\n",
              "GET http://example.com:8080 HTTP/1.1\r\nAccept: */*\r\n\r\n");
    CHECK_FWD(fwd_request, "GET /?q HTTP/1.1\r\nHost: h\r\nVia: 1.1 aigate\r\n\r\n",
              "GET http://h:80?q#frag HTTP/1.1\r\n\r\n");
    CHECK_FWD(fwd_request, "GET /x HTTP/1.1\r\nHost: h:443\r\nVia: 1.1 aigate\r\n\r\n",
              "GET http://h:443/x HTTP/1.1\r\n\r\n");
    CHECK_FWD(fwd_request, "GET /x HTTP/1.1\r\nHost: h\r\nVia: 1.1 aigate\r\n\r\n",
              "GET https://h:443/x HTTP/1.1\r\n\r\n");
    CHECK_FWD(fwd_request, "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\nVia: 1.1 aigate\r\n\r\n",
              "GET http://[2001:DB8::1]:8080/ HTTP/1.1\r\n\r\n");
    CHECK_FWD(fwd_request, "GET / HTTP/1.1\r\nHost: [::1]\r\nVia: 1.1 aigate\r\n\r\n",
              "GET http://[::1]/ HTTP/1.1\r\n\r\n");
}
END_TEST

START_TEST(test_request_hop_by_hop)
{
    CHECK_FWD(fwd_request,
              "POST / HTTP/1.1\r\nHost: h\r\nA: 1\r\nTransfer-Encoding: chunked\r\nD: 4\r\n"
              "Via: 1.1 aigate\r\n\r\n",
              "POST http://h/ HTTP/1.1\r\nConnection: keep-alive, X-Secret , x-other\r\n"
              "A: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive, X-Proxied\r\n"
              "Proxy-Authorization: Basic YTpi\r\nProxy-Authenticate: Basic\r\nTE: trailers\r\n"
              "Trailer: X-T\r\nUpgrade: websocket\r\nX-Secret: s\r\nX-Other: o\r\n"
              "X-Proxied: p\r\nTransfer-Encoding: chunked\r\nD: 4\r\n\r\n");
    /* Content-Length is kept; a name merely containing a Connection token is kept */
    CHECK_FWD(fwd_request,
              "PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-Secret-2: k\r\n"
              "Via: 1.1 aigate\r\n\r\n",
              "PUT http://h/f HTTP/1.1\r\nConnection: X-Secret\r\nContent-Length: 3\r\n"
              "X-Secret: s\r\nX-Secret-2: k\r\n\r\n");
}
END_TEST

START_TEST(test_request_via_maxfwd)
{
    CHECK_FWD(fwd_request,
              "GET / HTTP/1.1\r\nHost: h\r\nB: 2\r\nVia: 1.0 fred, 1.1 p.example (x, y), 2 q, 1.1 "
              "aigate\r\n\r\n",
              "GET http://h/ HTTP/1.1\r\nVia: 1.0 fred, 1.1 p.example (x, y)\r\nB: 2\r\n"
              "via: 2 q\r\nVia:\r\n\r\n");
    CHECK_FWD(fwd_request,
              "OPTIONS / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 4\r\nVia: 1.1 aigate\r\n\r\n",
              "OPTIONS http://h/ HTTP/1.1\r\nMax-Forwards: 5\r\nMax-Forwards: 9\r\n\r\n");
    CHECK_FWD(fwd_request,
              "TRACE / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nVia: 1.1 aigate\r\n\r\n",
              "TRACE http://h/ HTTP/1.1\r\nMax-Forwards: 0\r\n\r\n");
    /* only OPTIONS and TRACE are counted down; invalid values pass as they are */
    CHECK_FWD(fwd_request,
              "GET / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 5\r\nVia: 1.1 aigate\r\n\r\n",
              "GET http://h/ HTTP/1.1\r\nMax-Forwards: 5\r\n\r\n");
    CHECK_FWD(fwd_request,
              "OPTIONS / HTTP/1.1\r\nHost: h\r\nMax-Forwards: x5\r\nVia: 1.1 aigate\r\n\r\n",
              "OPTIONS http://h/ HTTP/1.1\r\nMax-Forwards: x5\r\n\r\n");
}
END_TEST

static const struct http_msg_field ws_set[] = {
    {"ChatGPT-Allowed-Workspace-Id", "11111111-2222-3333-4444-555555555555"},
    {"anthropic-allowed-org-ids", "aaaa,bbbb"},
};

/* The proxy's fields replace every client line of the same name, whatever its case or count. */
START_TEST(test_request_set_fields)
{
    CHECK_FWD(fwd_request_set,
              "GET /c HTTP/1.1\r\nHost: chatgpt.com\r\nAccept: */*\r\n"
              "ChatGPT-Allowed-Workspace-Id: 11111111-2222-3333-4444-555555555555\r\n"
              "anthropic-allowed-org-ids: aaaa,bbbb\r\nVia: 1.1 aigate\r\n\r\n",
              "GET http://chatgpt.com/c HTTP/1.1\r\nHost: chatgpt.com\r\n"
              "chatgpt-allowed-workspace-id: evil-1\r\nAccept: */*\r\n"
              "CHATGPT-ALLOWED-WORKSPACE-ID: evil-2\r\nAnthropic-Allowed-Org-Ids: x\r\n\r\n",
              ws_set, 2);
    /* Named in Connection by the client: still only ours reaches the origin. */
    CHECK_FWD(fwd_request_set,
              "GET / HTTP/1.1\r\nHost: h\r\n"
              "ChatGPT-Allowed-Workspace-Id: 11111111-2222-3333-4444-555555555555\r\n"
              "Via: 1.1 aigate\r\n\r\n",
              "GET http://h/ HTTP/1.1\r\nConnection: ChatGPT-Allowed-Workspace-Id\r\n"
              "ChatGPT-Allowed-Workspace-Id: evil\r\n\r\n",
              ws_set, 1);
    /* An empty client value and a longer name sharing the prefix: only the exact name goes. */
    CHECK_FWD(fwd_request_set,
              "GET / HTTP/1.1\r\nHost: h\r\nanthropic-allowed-org-ids-x: keep\r\n"
              "ChatGPT-Allowed-Workspace-Id: 11111111-2222-3333-4444-555555555555\r\n"
              "anthropic-allowed-org-ids: aaaa,bbbb\r\nVia: 1.1 aigate\r\n\r\n",
              "GET http://h/ HTTP/1.1\r\nanthropic-allowed-org-ids:\r\n"
              "anthropic-allowed-org-ids-x: keep\r\n\r\n",
              ws_set, 2);
}
END_TEST

START_TEST(test_response_head)
{
    const char *r = "HTTP/1.0 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: t=5\r\n"
                    "Content-Length: 2\r\nVia: 1.0 up\r\nSet-Cookie: a=b\r\n\r\nhi";

    CHECK_FWD(
        fwd_response,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\nVia: 1.0 up, 1.1 aigate\r\n"
        "\r\n",
        r, 1, 1, 0);
    CHECK_FWD(
        fwd_response,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\nVia: 1.0 up, 1.1 aigate\r\n"
        "Connection: keep-alive\r\n\r\n",
        r, 0, 1, 0);
    CHECK_FWD(
        fwd_response,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\nVia: 1.0 up, 1.1 aigate\r\n"
        "Connection: close\r\n\r\n",
        r, 1, 0, 0);

    r = "HTTP/1.1 404 \r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nUpgrade: h2c\r\n"
        "Proxy-Authenticate: Basic\r\n\r\n";
    CHECK_FWD(fwd_response,
              "HTTP/1.1 404 \r\nTransfer-Encoding: chunked\r\nVia: 1.1 aigate\r\n\r\n", r, 1, 1, 0);
    CHECK_FWD(fwd_response, "HTTP/1.1 404 \r\nVia: 1.1 aigate\r\nConnection: close\r\n\r\n", r, 0,
              0, 1);
    CHECK_FWD(fwd_response, "HTTP/1.1 204 \r\nVia: 1.1 aigate\r\n\r\n", "HTTP/1.1 204\r\n\r\n", 1,
              1, 0);
}
END_TEST

static int
via_us(const char *s)
{
    struct http_head h;

    memset(&h, 0, sizeof(h));
    ck_assert_int_eq(http_parse_request(s, strlen(s), 65536, &h), HTTP_PARSE_OK);
    return http_msg_via_has_us(s, &h);
}

static int
maxfwd(const char *s)
{
    struct http_head h;

    memset(&h, 0, sizeof(h));
    ck_assert_int_eq(http_parse_request(s, strlen(s), 65536, &h), HTTP_PARSE_OK);
    return http_msg_max_forwards(s, &h);
}

START_TEST(test_via_loop)
{
    ck_assert(via_us("GET / HTTP/1.1\r\nVia: 1.1 aigate\r\n\r\n"));
    ck_assert(via_us("GET / HTTP/1.1\r\nVia: 1.0 a, 1.1 AIGATE (comment)\r\n\r\n"));
    ck_assert(via_us("GET / HTTP/1.1\r\nVia: 1.0 a\r\nVia: HTTP/1.1 aigate\r\n\r\n"));
    ck_assert(via_us("GET / HTTP/1.1\r\nVia: 1.0 a (b, c), 1.1 aigate\r\n\r\n"));
    ck_assert(!via_us("GET / HTTP/1.1\r\n\r\n"));
    ck_assert(!via_us("GET / HTTP/1.1\r\nVia: 1.1 aigate2, 1.1 x\r\n\r\n"));
    ck_assert(!via_us("GET / HTTP/1.1\r\nVia: 1.1 x (aigate), aigate\r\n\r\n"));
    ck_assert(!via_us("GET / HTTP/1.1\r\nVia: 1.1 x (a, 1.1 aigate)\r\n\r\n"));
    ck_assert(!via_us("GET / HTTP/1.1\r\nX-Via: 1.1 aigate\r\n\r\n"));
}
END_TEST

/*
 * A Via value that leaves a comment open would swallow the element we
 * append ("1.0 a (x, 1.1 aigate"), and the next aigate would not see the
 * loop (found by tests/fuzz/fuzz_http_request): such a value is dropped.
 */
START_TEST(test_via_open_comment)
{
    static const char *const in[] = {
        "GET http://h/ HTTP/1.1\r\nVia: 1.0 a (open\r\n\r\n",
        "GET http://h/ HTTP/1.1\r\nVia: 1.0 a (b (c) d\r\nVia: 1.1 b (ok)\r\n\r\n",
        "GET http://h/ HTTP/1.1\r\nVia: 1.0 a (b \\\r\n\r\n",
    };
    static const char *const out[] = {
        "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 aigate\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 b (ok), 1.1 aigate\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 aigate\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char *fwd = fwd_request(in[i]);

        ck_assert_str_eq(fwd, out[i]);
        ck_assert(via_us(fwd));
        free(fwd);
    }
}
END_TEST

START_TEST(test_max_forwards)
{
    ck_assert_int_eq(maxfwd("OPTIONS * HTTP/1.1\r\nMax-Forwards: 10\r\n\r\n"), 10);
    ck_assert_int_eq(maxfwd("OPTIONS * HTTP/1.1\r\nMax-Forwards: 0\r\n\r\n"), 0);
    ck_assert_int_eq(maxfwd("OPTIONS * HTTP/1.1\r\nMax-Forwards: 99999999999999\r\n\r\n"),
                     2147483647);
    ck_assert_int_eq(maxfwd("OPTIONS * HTTP/1.1\r\n\r\n"), -1);
    ck_assert_int_eq(maxfwd("OPTIONS * HTTP/1.1\r\nMax-Forwards:\r\n\r\n"), -1);
    ck_assert_int_eq(maxfwd("OPTIONS * HTTP/1.1\r\nMax-Forwards: -1\r\n\r\n"), -1);
    ck_assert_int_eq(maxfwd("OPTIONS * HTTP/1.1\r\nMax-Forwards: 1 2\r\n\r\n"), -1);
}
END_TEST

START_TEST(test_websocket)
{
    const char *up = "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n";
    char req[512];

    /* which requests open a WebSocket */
    snprintf(req, sizeof(req), "GET http://h/ws HTTP/1.1\r\nHost: h\r\n%s\r\n", up);
    ck_assert_int_eq(is_ws(req, 0), 1);
    ck_assert_int_eq(is_ws("GET http://h/ HTTP/1.1\r\nConnection: upgrade\r\n"
                           "Upgrade: h2c, WebSocket\r\nContent-Length: 0\r\n\r\n",
                           0),
                     1);
    snprintf(req, sizeof(req), "GET http://h/ws HTTP/1.0\r\nHost: h\r\n%s\r\n", up);
    ck_assert_int_eq(is_ws(req, 0), 0);
    snprintf(req, sizeof(req), "POST http://h/ws HTTP/1.1\r\n%s\r\n", up);
    ck_assert_int_eq(is_ws(req, 0), 0);
    snprintf(req, sizeof(req), "GET http://h/ws HTTP/1.1\r\nContent-Length: 2\r\n%s\r\n", up);
    ck_assert_int_eq(is_ws(req, 0), 0);
    ck_assert_int_eq(is_ws("GET http://h/ HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 0), 0);
    ck_assert_int_eq(is_ws("GET http://h/ HTTP/1.1\r\nConnection: upgrade\r\n\r\n", 0), 0);
    ck_assert_int_eq(
        is_ws("GET http://h/ HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n", 0), 0);
    ck_assert_int_eq(is_ws("GET http://h/ HTTP/1.1\r\nConnection: upgrade\r\n"
                           "Upgrade: websocketx\r\n\r\n",
                           0),
                     0);

    /* forwarded: the upgrade and the Sec-WebSocket-* fields go on, other hop-by-hop ones do not */
    CHECK_FWD(fwd_request_ws,
              "GET /chat?x=1 HTTP/1.1\r\nHost: h:8080\r\nSec-WebSocket-Key: a2V5\r\n"
              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
              "Sec-WebSocket-Protocol: chat\r\nOrigin: http://h:8080\r\nVia: 1.1 aigate\r\n"
              "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
              "GET http://h:8080/chat?x=1 HTTP/1.1\r\nHost: h:8080\r\n"
              "Connection: keep-alive, Upgrade, X-Hop\r\nUpgrade: h2c, WebSocket\r\n"
              "Sec-WebSocket-Key: a2V5\r\nSec-WebSocket-Version: 13\r\n"
              "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Protocol: chat\r\n"
              "Origin: http://h:8080\r\nX-Hop: 1\r\nProxy-Authorization: Basic YTpi\r\n\r\n");
    /* the same request not relayed as a WebSocket loses its upgrade */
    CHECK_FWD(fwd_request,
              "GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: a2V5\r\nVia: 1.1 aigate\r\n\r\n",
              "GET http://h/ HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
              "Sec-WebSocket-Key: a2V5\r\n\r\n");

    /* the origin's answer */
    ck_assert_int_eq(is_ws("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                           "Upgrade: websocket\r\n\r\n",
                           1),
                     1);
    ck_assert_int_eq(is_ws("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 1), 0);
    ck_assert_int_eq(is_ws("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                           "Upgrade: h2c\r\n\r\n",
                           1),
                     0);
    ck_assert_int_eq(is_ws("HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                           "Content-Length: 0\r\n\r\n",
                           1),
                     0);
    CHECK_FWD(
        fwd_switch,
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: czNwUGxV\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
        "Sec-WebSocket-Protocol: chat\r\nVia: 1.1 origin, 1.1 aigate\r\n"
        "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: upgrade, "
        "X-Hop\r\nSec-WebSocket-Accept: czNwUGxV\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
        "Sec-WebSocket-Protocol: chat\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nVia: 1.1 origin\r\n\r\n");
}
END_TEST

Suite *http_msg_suite(void);

Suite *
http_msg_suite(void)
{
    Suite *s = suite_create("http_msg");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_request_line_host);
    tcase_add_test(tc, test_request_hop_by_hop);
    tcase_add_test(tc, test_request_via_maxfwd);
    tcase_add_test(tc, test_request_set_fields);
    tcase_add_test(tc, test_response_head);
    tcase_add_test(tc, test_via_loop);
    tcase_add_test(tc, test_via_open_comment);
    tcase_add_test(tc, test_max_forwards);
    tcase_add_test(tc, test_websocket);
    suite_add_tcase(s, tc);
    return s;
}
