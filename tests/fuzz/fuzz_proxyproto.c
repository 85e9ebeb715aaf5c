/*
 * libFuzzer target: a PROXY protocol header (proxyproto_parse) at the start
 * of a connection, as a listed load balancer would send it.
 *
 * Oracle beyond the sanitizers: the answer for the whole input decides the
 * answer for every prefix (each prefix in its own exact allocation, so
 * reading past it is caught).  For a header of L bytes every shorter prefix
 * needs more and every longer one gives the same header; for an invalid
 * input the answers go AGAIN... then INVALID for good; the parser never
 * asks for more once it holds PROXYPROTO_MAX bytes; a carried address is
 * AF_INET or AF_INET6 with the matching length.
 */
#include <netinet/in.h>
#include <string.h>

#include "aigate/net/proxyproto.h"

#include "fuzz.h"

static int
parse_copy(const uint8_t *data, size_t n, struct proxyproto_hdr *h)
{
    uint8_t *p = malloc(n ? n : 1);
    int rc;

    memcpy(p, data, n);
    rc = proxyproto_parse(p, n, h);
    free(p);
    return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxyproto_hdr whole, h;
    int rc = parse_copy(data, size, &whole), refused = 0;

    FUZZ_CHECK(rc == PROXYPROTO_DONE || rc == PROXYPROTO_AGAIN || rc == PROXYPROTO_INVALID);
    FUZZ_CHECK(rc != PROXYPROTO_AGAIN || size < PROXYPROTO_MAX);
    FUZZ_CHECK((rc == PROXYPROTO_INVALID) == (whole.error != NULL));
    if (rc == PROXYPROTO_DONE) {
        FUZZ_CHECK(whole.len > 0 && whole.len <= size && whole.len <= PROXYPROTO_MAX);
        FUZZ_CHECK(whole.version == 1 || whole.version == 2);
        FUZZ_CHECK(whole.version != 1 || whole.len <= PROXYPROTO_V1_MAX);
        FUZZ_CHECK(proxyproto_is_header(data, size));
        if (whole.has_addr) {
            FUZZ_CHECK(whole.src.ss_family == whole.dst.ss_family);
            FUZZ_CHECK((whole.src.ss_family == AF_INET &&
                        whole.addrlen == sizeof(struct sockaddr_in)) ||
                       (whole.src.ss_family == AF_INET6 &&
                        whole.addrlen == sizeof(struct sockaddr_in6)));
        }
    }
    for (size_t k = 0; k < size && k <= PROXYPROTO_MAX; k++) {
        int prc = parse_copy(data, k, &h);
        if (rc == PROXYPROTO_DONE) {
            FUZZ_CHECK(prc == (k < whole.len ? PROXYPROTO_AGAIN : PROXYPROTO_DONE));
            if (prc == PROXYPROTO_DONE)
                FUZZ_CHECK(memcmp(&h, &whole, sizeof(h)) == 0);
        } else if (rc == PROXYPROTO_AGAIN) {
            FUZZ_CHECK(prc == PROXYPROTO_AGAIN);
        } else {
            FUZZ_CHECK(prc != PROXYPROTO_DONE);
            FUZZ_CHECK(!refused || prc == PROXYPROTO_INVALID);
            refused |= prc == PROXYPROTO_INVALID;
        }
    }
    return 0;
}
