/*
 * libFuzzer target: request-target parsers (http_url_parse_absolute,
 * http_url_parse_authority, http_url_parse_origin) on the same bytes, which
 * sit in the middle of a buffer as a target does in a head.
 *
 * Oracles beyond the sanitizers: what a parser accepts is well-formed
 * (host NUL-terminated, lower-case, no brackets; spans inside the target,
 * the query after the pathname), and an absolute target's host, port and
 * path read back as a valid authority and origin-form.
 */
#include <ctype.h>
#include <sanitizer/asan_interface.h>
#include <string.h>

#include "aigate/http/http_parse.h"

#include "fuzz.h"

#define PAD 8

static void
check_url(const struct http_url *u, struct http_span t)
{
    size_t hl = strnlen(u->host, sizeof(u->host));
    size_t tend = (size_t)t.off + t.len;

    FUZZ_CHECK(hl < sizeof(u->host));
    FUZZ_CHECK(strnlen(u->scheme, sizeof(u->scheme)) < sizeof(u->scheme));
    for (size_t i = 0; i < hl; i++)
        FUZZ_CHECK(!isupper((unsigned char)u->host[i]) && u->host[i] != '[' && u->host[i] != ']');
    FUZZ_CHECK(u->path.len == 0 || (u->path.off >= t.off && u->path.off + u->path.len <= tend));
    FUZZ_CHECK(u->query.len == 0 || (u->query.off >= t.off && u->query.off + u->query.len <= tend));
    FUZZ_CHECK(u->pathname.len == 0 ||
               (u->pathname.off >= t.off && u->pathname.off + u->pathname.len <= tend));
    FUZZ_CHECK(u->pathname.len <= u->path.len && u->query.len <= u->path.len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf;
    struct http_span t;
    struct http_url u, v;

    if (size > 65536)
        return 0;
    /* Bytes around the target, as in a head: poisoned, a parser must not read them. */
    buf = malloc(size + 2 * PAD);
    memcpy(buf + PAD, data, size);
    ASAN_POISON_MEMORY_REGION(buf, PAD);
    ASAN_POISON_MEMORY_REGION(buf + PAD + size, PAD);
    t.off = PAD;
    t.len = (uint32_t)size;

    memset(&u, 0, sizeof(u));
    if (http_url_parse_absolute(buf, t, &u) == 0) {
        char auth[300];
        int n;

        check_url(&u, t);
        FUZZ_CHECK(u.port != 0 && u.host[0] != '\0');
        FUZZ_CHECK(strcmp(u.scheme, "http") == 0 || strcmp(u.scheme, "https") == 0);
        n = snprintf(auth, sizeof(auth), u.host_is_v6 ? "[%s]:%u" : "%s:%u", u.host,
                     (unsigned)u.port);
        memset(&v, 0, sizeof(v));
        FUZZ_CHECK(http_url_parse_authority(auth, (struct http_span){0, (uint32_t)n}, &v) == 0);
        FUZZ_CHECK(strcmp(v.host, u.host) == 0 && v.port == u.port && v.host_is_v6 == u.host_is_v6);
        if (u.path.len > 0 && buf[u.path.off] == '/') {
            memset(&v, 0, sizeof(v));
            FUZZ_CHECK(http_url_parse_origin(buf, u.path, &v) == 0);
        }
    }
    memset(&u, 0, sizeof(u));
    if (http_url_parse_authority(buf, t, &u) == 0) {
        check_url(&u, t);
        FUZZ_CHECK(u.host[0] != '\0' && u.scheme[0] == '\0');
    }
    memset(&u, 0, sizeof(u));
    if (http_url_parse_origin(buf, t, &u) == 0)
        check_url(&u, t);
    ASAN_UNPOISON_MEMORY_REGION(buf, size + 2 * PAD);
    free(buf);
    return 0;
}
