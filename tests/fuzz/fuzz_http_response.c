/*
 * libFuzzer target: a response head from an origin (http_parse_response),
 * the head the proxy sends on to its client, and a chunked body after it.
 *
 * Oracles beyond the sanitizers:
 *   - the same result fed in pieces (unread bytes poisoned) as at once;
 *   - the head the proxy forwards parses again with the same status and the
 *     same body framing (for a client that gets the body dechunked: framed
 *     by the connection's close).
 */
#include <sanitizer/asan_interface.h>
#include <string.h>

#include <event2/buffer.h>

#include "aigate/http/http_msg.h"
#include "aigate/http/http_parse.h"

#include "fuzz.h"

#define MAX_HEAD 65536

static int
parse_pieces(const uint8_t *data, size_t size, int req_is_head, uint32_t seed, struct http_head *h)
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
        rc = http_parse_response(buf, have, MAX_HEAD, req_is_head, h);
    } while (rc == HTTP_PARSE_AGAIN && have < size);
    if (rc != HTTP_PARSE_AGAIN)
        FUZZ_CHECK(http_parse_response(buf, have, MAX_HEAD, req_is_head, h) == rc);
    ASAN_UNPOISON_MEMORY_REGION(buf, size + 1);
    free(buf);
    return rc;
}

static void
check_same(const struct http_head *a, const struct http_head *b)
{
    FUZZ_CHECK(a->head_len == b->head_len && a->nhdr == b->nhdr && a->status == b->status);
    FUZZ_CHECK(a->reason.off == b->reason.off && a->reason.len == b->reason.len);
    FUZZ_CHECK(a->version_minor == b->version_minor && a->body == b->body &&
               a->content_length == b->content_length && a->keep_alive == b->keep_alive &&
               a->has_upgrade == b->has_upgrade);
    for (unsigned i = 0; i < a->nhdr; i++)
        FUZZ_CHECK(a->hdr[i].name.off == b->hdr[i].name.off &&
                   a->hdr[i].name.len == b->hdr[i].name.len &&
                   a->hdr[i].value.off == b->hdr[i].value.off &&
                   a->hdr[i].value.len == b->hdr[i].value.len);
}

static void
check_forwarded(const char *buf, const struct http_head *h, int req_is_head, uint32_t seed)
{
    struct evbuffer *out = evbuffer_new();
    int minor = seed & 1, keep_alive = (seed >> 1) & 1;
    int dechunk = h->body == HTTP_BODY_CHUNKED && (seed >> 2) & 1;
    struct http_head f;
    const char *p;
    size_t n;

    FUZZ_CHECK(out != NULL);
    FUZZ_CHECK(http_msg_response_head(out, buf, h, minor, keep_alive, dechunk) == 0);
    n = evbuffer_get_length(out);
    p = (const char *)evbuffer_pullup(out, -1);
    memset(&f, 0, sizeof(f));
    /* Room for the Via and Connection the proxy adds. */
    if (h->nhdr + 2 <= HTTP_MAX_HEADERS) {
        FUZZ_CHECK(http_parse_response(p, n, 2 * MAX_HEAD, req_is_head, &f) == HTTP_PARSE_OK);
        FUZZ_CHECK(f.head_len == n && f.status == h->status);
        FUZZ_CHECK(f.body == (dechunk ? HTTP_BODY_EOF : h->body));
        FUZZ_CHECK(f.content_length == h->content_length);
        FUZZ_CHECK(http_msg_via_has_us(p, &f));
    }
    evbuffer_free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    uint32_t seed = fuzz_seed(data, size);
    struct http_head *whole = malloc(sizeof(*whole)), *pieces = malloc(sizeof(*pieces));

    for (int req_is_head = 0; req_is_head < 2; req_is_head++) {
        int rc;

        memset(whole, 0, sizeof(*whole));
        rc = http_parse_response(buf, size, MAX_HEAD, req_is_head, whole);
        FUZZ_CHECK(parse_pieces(data, size, req_is_head, seed, pieces) == rc);
        if (rc == HTTP_PARSE_ERROR) {
            FUZZ_CHECK(whole->error_status == pieces->error_status);
            continue;
        }
        if (rc != HTTP_PARSE_OK)
            continue;
        FUZZ_CHECK(whole->head_len <= size);
        FUZZ_CHECK(whole->status >= 100 && whole->status <= 999);
        check_same(whole, pieces);
        check_forwarded(buf, whole, req_is_head, seed);
        if (whole->body == HTTP_BODY_CHUNKED) {
            struct http_chunk c;
            size_t consumed;

            http_chunk_init(&c);
            (void)http_chunk_feed(&c, buf + whole->head_len, size - whole->head_len, &consumed);
            FUZZ_CHECK(consumed <= size - whole->head_len);
        }
    }
    free(whole);
    free(pieces);
    return 0;
}
