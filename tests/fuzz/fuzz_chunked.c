/*
 * libFuzzer target: a chunked body (http_chunk_feed), fed in random pieces
 * as reads deliver it.
 *
 * Oracle beyond the sanitizers: fed in pieces (each piece in its own exact
 * allocation, so reading past it is caught) it gives the same verdict, the
 * same error, the same body length and the same decoded payload as fed at
 * once; a call after the end repeats the verdict and consumes nothing.
 */
#include <string.h>

#include "aigate/http/http_parse.h"

#include "fuzz.h"

struct sink {
    char *p;
    size_t len, cap;
};

static void
sink_add(void *arg, const char *p, size_t n)
{
    struct sink *s = arg;

    FUZZ_CHECK(n > 0 && s->len + n <= s->cap);
    memcpy(s->p + s->len, p, n);
    s->len += n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t seed = fuzz_seed(data, size);
    struct sink a = {malloc(size + 1), 0, size}, b = {malloc(size + 1), 0, size};
    struct http_chunk whole, pieces;
    size_t consumed, total = 0, off = 0;
    int rc, prc = HTTP_PARSE_AGAIN;

    http_chunk_init(&whole);
    whole.on_data = sink_add;
    whole.arg = &a;
    rc = http_chunk_feed(&whole, (const char *)data, size, &consumed);
    FUZZ_CHECK(consumed <= size);
    FUZZ_CHECK(rc != HTTP_PARSE_AGAIN || consumed == size);
    FUZZ_CHECK((rc == HTTP_PARSE_ERROR) == (whole.error != NULL));

    http_chunk_init(&pieces);
    pieces.on_data = sink_add;
    pieces.arg = &b;
    while (prc == HTTP_PARSE_AGAIN && off < size) {
        size_t n = 1 + fuzz_next(&seed) % (fuzz_next(&seed) % 4 == 0 ? 256 : 8);
        size_t got;
        char *piece;

        if (n > size - off)
            n = size - off;
        piece = malloc(n);
        memcpy(piece, data + off, n);
        prc = http_chunk_feed(&pieces, piece, n, &got);
        free(piece);
        FUZZ_CHECK(got <= n && (prc != HTTP_PARSE_AGAIN || got == n));
        total += got;
        off += n;
    }
    if (size == 0)
        prc = http_chunk_feed(&pieces, (const char *)data, 0, &total);
    FUZZ_CHECK(prc == rc && total == consumed);
    FUZZ_CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
    FUZZ_CHECK(rc != HTTP_PARSE_ERROR || strcmp(whole.error, pieces.error) == 0);
    if (rc != HTTP_PARSE_AGAIN) {
        FUZZ_CHECK(http_chunk_feed(&pieces, (const char *)data, size, &consumed) == rc);
        FUZZ_CHECK(consumed == 0);
    }
    free(a.p);
    free(b.p);
    return 0;
}
