/*
 * Unit tests for proxy/net/proxyproto.c: PROXY protocol v1 and v2 headers as
 * HAProxy's send-proxy and send-proxy-v2 write them, split at every byte,
 * with the connection's own bytes after them; TCP4, TCP6, UNKNOWN, LOCAL and
 * the families that fall back to the real peer; TLVs; and garbage,
 * truncated, oversized and almost-right headers, refused as early as the
 * bytes allow.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/net/proxyproto.h"

static const unsigned char v2sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                        0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char http_tail[] = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";

/* Parse buf[0..n) from an allocation of exactly n bytes, so a read past it is caught. */
static int
parse_exact(const void *buf, size_t n, struct proxyproto_hdr *h)
{
    void *copy = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, buf, n);
    int rc = proxyproto_parse(copy, n, h);
    free(copy);
    return rc;
}

/*
 * A complete valid header of n bytes: every proper prefix needs more, the
 * whole is DONE with h->len == n, and the same with the connection's first
 * request after it (which is not part of the header).  *h is the result.
 */
static void
expect_done(const void *hdr, size_t n, struct proxyproto_hdr *h)
{
    struct proxyproto_hdr t;
    for (size_t k = 0; k < n; k++)
        ck_assert_msg(parse_exact(hdr, k, &t) == PROXYPROTO_AGAIN, "prefix %zu of %zu: %s", k, n,
                      t.error ? t.error : "(done)");
    ck_assert_msg(parse_exact(hdr, n, h) == PROXYPROTO_DONE, "whole: %s",
                  h->error ? h->error : "?");
    ck_assert_uint_eq(h->len, n);
    unsigned char *more = malloc(n + sizeof(http_tail));
    memcpy(more, hdr, n);
    memcpy(more + n, http_tail, sizeof(http_tail) - 1);
    ck_assert_int_eq(parse_exact(more, n + sizeof(http_tail) - 1, &t), PROXYPROTO_DONE);
    ck_assert_uint_eq(t.len, n);
    ck_assert_int_eq(t.has_addr, h->has_addr);
    free(more);
}

/*
 * An invalid header: refused once `at` bytes are there (every shorter
 * prefix still needs more), and every longer prefix stays refused.
 */
static void
expect_invalid_at(const void *hdr, size_t n, size_t at)
{
    struct proxyproto_hdr t;
    ck_assert_uint_le(at, n);
    for (size_t k = 0; k <= n; k++) {
        int rc = parse_exact(hdr, k, &t);
        if (k < at) {
            ck_assert_msg(rc == PROXYPROTO_AGAIN, "prefix %zu (refusal expected at %zu): rc %d %s",
                          k, at, rc, t.error ? t.error : "");
        } else {
            ck_assert_msg(rc == PROXYPROTO_INVALID, "prefix %zu (refusal expected at %zu): rc %d",
                          k, at, rc);
            ck_assert_ptr_nonnull(t.error);
        }
    }
}

static void
expect_invalid_str(const char *s)
{
    size_t n = strlen(s);
    struct proxyproto_hdr t;
    for (size_t k = 0; k < n; k++)
        ck_assert_int_ne(parse_exact(s, k, &t), PROXYPROTO_DONE);
    ck_assert_msg(parse_exact(s, n, &t) == PROXYPROTO_INVALID, "accepted: %s", s);
}

static void
assert_v4(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    char buf[INET_ADDRSTRLEN];
    ck_assert_int_eq(in->sin_family, AF_INET);
    ck_assert_str_eq(inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf)), addr);
    ck_assert_uint_eq(ntohs(in->sin_port), port);
}

static void
assert_v6(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    char buf[INET6_ADDRSTRLEN];
    ck_assert_int_eq(in6->sin6_family, AF_INET6);
    ck_assert_str_eq(inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf)), addr);
    ck_assert_uint_eq(ntohs(in6->sin6_port), port);
}

/* ---- version 1 ---- */

START_TEST(v1_tcp4)
{
    static const char l[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    struct proxyproto_hdr h;
    expect_done(l, sizeof(l) - 1, &h);
    ck_assert_int_eq(h.version, 1);
    ck_assert_int_eq(h.has_addr, 1);
    ck_assert_uint_eq(h.addrlen, sizeof(struct sockaddr_in));
    assert_v4(&h.src, "192.168.0.1", 56324);
    assert_v4(&h.dst, "192.168.0.11", 443);
}
END_TEST

START_TEST(v1_tcp4_extremes)
{
    static const char hi[] = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    static const char lo[] = "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n";
    struct proxyproto_hdr h;
    ck_assert_uint_eq(sizeof(hi) - 1, 56); /* the longest TCP4 line (section 2.1) */
    expect_done(hi, sizeof(hi) - 1, &h);
    assert_v4(&h.src, "255.255.255.255", 65535);
    expect_done(lo, sizeof(lo) - 1, &h);
    assert_v4(&h.src, "0.0.0.0", 0);
    assert_v4(&h.dst, "0.0.0.0", 0);
}
END_TEST

START_TEST(v1_tcp6)
{
    static const char l[] = "PROXY TCP6 2001:db8::1 ::1 40000 3128\r\n";
    static const char full[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                               "FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n";
    static const char mapped[] = "PROXY TCP6 ::ffff:10.1.2.3 ::ffff:10.0.0.1 1 2\r\n";
    struct proxyproto_hdr h;
    expect_done(l, sizeof(l) - 1, &h);
    ck_assert_int_eq(h.has_addr, 1);
    ck_assert_uint_eq(h.addrlen, sizeof(struct sockaddr_in6));
    assert_v6(&h.src, "2001:db8::1", 40000);
    assert_v6(&h.dst, "::1", 3128);
    ck_assert_uint_eq(sizeof(full) - 1, 104); /* the longest TCP6 line */
    expect_done(full, sizeof(full) - 1, &h);
    assert_v6(&h.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    expect_done(mapped, sizeof(mapped) - 1, &h);
    assert_v6(&h.src, "::ffff:10.1.2.3", 1);
}
END_TEST

START_TEST(v1_unknown)
{
    static const char s[] = "PROXY UNKNOWN\r\n";
    static const char worst[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    static const char junk[] = "PROXY UNKNOWN whatever the sender had\r\n";
    struct proxyproto_hdr h;
    expect_done(s, sizeof(s) - 1, &h);
    ck_assert_int_eq(h.has_addr, 0);
    ck_assert_int_eq(h.version, 1);
    ck_assert_uint_eq(sizeof(worst) - 1, PROXYPROTO_V1_MAX);
    expect_done(worst, sizeof(worst) - 1, &h);
    ck_assert_int_eq(h.has_addr, 0);
    expect_done(junk, sizeof(junk) - 1, &h);
    ck_assert_int_eq(h.has_addr, 0);
}
END_TEST

START_TEST(v1_invalid)
{
    static const char *const bad[] = {
        "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",        /* leading zero in an octet */
        "PROXY TCP4 1.2.3.4 5.6.7.8 0443 2\r\n",      /* leading zero in a port */
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",     /* port out of range */
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",        /* sign */
        "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",       /* octet out of range */
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",           /* three octets */
        "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",       /* five octets */
        "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n",          /* empty octet */
        "PROXY TCP4 1.2.3.4 ::1 1 2\r\n",             /* family mismatch */
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",         /* family mismatch */
        "PROXY TCP6 ::1 ::1::2 1 2\r\n",              /* two double colons */
        "PROXY TCP6 ::1 ::g 1 2\r\n",                 /* not hex */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",       /* too many fields */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",           /* too few */
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",        /* two spaces */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",        /* trailing space */
        "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",        /* tab */
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",        /* two spaces after PROXY */
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",         /* unknown protocol */
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",         /* lower case */
        "PROXY UNKNOWNX\r\n",                         /* not the UNKNOWN keyword */
        "PROXY UNKNOWN\n",                            /* bare LF */
        "PROXY UNKNOWN\rX\r\n",                       /* CR without LF */
        "PROXY \r\n",                                 /* nothing */
        "PROXY\r\n",                                  /* no space */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",           /* LF alone */
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",         /* lower-case signature */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xc3\xa9\r\n", /* non-ASCII */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid_str(bad[i]);
    static const char nul[] = "PROXY UNKNOWN \0x\r\n";
    expect_invalid_at(nul, sizeof(nul) - 1, 15);
}
END_TEST

START_TEST(v1_refused_early)
{
    static const char get[] = "GET / HTTP/1.1\r\n";
    static const char prx[] = "PRXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
    static const char lf[] = "PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n";
    expect_invalid_at(get, sizeof(get) - 1, 1);
    expect_invalid_at(prx, sizeof(prx) - 1, 3);
    expect_invalid_at(lf, sizeof(lf) - 1, 19);
}
END_TEST

START_TEST(v1_oversized)
{
    /* 108 bytes with the CRLF: one too many, refused once 107 are there without a CRLF. */
    char l[200];
    memcpy(l, "PROXY UNKNOWN ", 14);
    memset(l + 14, 'a', 92);
    memcpy(l + 106, "\r\n", 2);
    expect_invalid_at(l, 108, 107);
    /* A line that never ends: refused at 107 bytes, never left waiting. */
    memset(l + 14, 'b', sizeof(l) - 14);
    expect_invalid_at(l, sizeof(l), 107);
    /* 107 bytes exactly is fine. */
    struct proxyproto_hdr h;
    memcpy(l + 105, "\r\n", 2);
    expect_done(l, 107, &h);
}
END_TEST

/* ---- version 2 ---- */

/* Build a v2 header into out: ver_cmd, fam, then body (blen bytes); returns its length. */
static size_t
v2(unsigned char *out, unsigned ver_cmd, unsigned fam, const void *body, size_t blen)
{
    memcpy(out, v2sig, 12);
    out[12] = (unsigned char)ver_cmd;
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(blen >> 8);
    out[15] = (unsigned char)blen;
    if (blen)
        memcpy(out + 16, body, blen);
    return 16 + blen;
}

static size_t
v4body(unsigned char *b, const char *src, unsigned sport, const char *dst, unsigned dport)
{
    inet_pton(AF_INET, src, b);
    inet_pton(AF_INET, dst, b + 4);
    b[8] = (unsigned char)(sport >> 8);
    b[9] = (unsigned char)sport;
    b[10] = (unsigned char)(dport >> 8);
    b[11] = (unsigned char)dport;
    return 12;
}

START_TEST(v2_tcp4)
{
    unsigned char body[64], h2[128];
    struct proxyproto_hdr h;
    size_t n = v2(h2, 0x21, 0x11, body, v4body(body, "127.0.0.2", 51000, "127.0.0.1", 3128));
    ck_assert_uint_eq(n, 28);
    expect_done(h2, n, &h);
    ck_assert_int_eq(h.version, 2);
    ck_assert_int_eq(h.has_addr, 1);
    ck_assert_uint_eq(h.addrlen, sizeof(struct sockaddr_in));
    assert_v4(&h.src, "127.0.0.2", 51000);
    assert_v4(&h.dst, "127.0.0.1", 3128);
}
END_TEST

START_TEST(v2_tcp6)
{
    unsigned char body[36], h2[64];
    struct proxyproto_hdr h;
    inet_pton(AF_INET6, "2001:db8::42", body);
    inet_pton(AF_INET6, "fd00::1", body + 16);
    body[32] = 0xc3;
    body[33] = 0x50; /* 50000 */
    body[34] = 0x0c;
    body[35] = 0x38; /* 3128 */
    size_t n = v2(h2, 0x21, 0x21, body, sizeof(body));
    expect_done(h2, n, &h);
    ck_assert_int_eq(h.has_addr, 1);
    ck_assert_uint_eq(h.addrlen, sizeof(struct sockaddr_in6));
    assert_v6(&h.src, "2001:db8::42", 50000);
    assert_v6(&h.dst, "fd00::1", 3128);
}
END_TEST

START_TEST(v2_local)
{
    unsigned char h2[64], junk[5] = {1, 2, 3, 4, 5};
    struct proxyproto_hdr h;
    /* HAProxy's health checks (check-send-proxy): LOCAL, AF_UNSPEC, no body. */
    size_t n = v2(h2, 0x20, 0x00, NULL, 0);
    expect_done(h2, n, &h);
    ck_assert_int_eq(h.has_addr, 0);
    ck_assert_int_eq(h.version, 2);
    /* LOCAL ignores whatever the length covers, even with a family set. */
    n = v2(h2, 0x20, 0x11, junk, sizeof(junk));
    expect_done(h2, n, &h);
    ck_assert_int_eq(h.has_addr, 0);
}
END_TEST

START_TEST(v2_fallback_families)
{
    unsigned char body[300], h2[400];
    struct proxyproto_hdr h;
    memset(body, 0x41, sizeof(body));
    /* PROXY with AF_UNSPEC: the real peer stands. */
    size_t n = v2(h2, 0x21, 0x00, NULL, 0);
    expect_done(h2, n, &h);
    ck_assert_int_eq(h.has_addr, 0);
    /* UDP over IPv4 and IPv6, UNIX stream and datagram: valid, not ours. */
    static const unsigned fams[] = {0x12, 0x22, 0x31, 0x32};
    static const size_t lens[] = {12, 36, 216, 216};
    for (size_t i = 0; i < 4; i++) {
        n = v2(h2, 0x21, fams[i], body, lens[i]);
        expect_done(h2, n, &h);
        ck_assert_int_eq(h.has_addr, 0);
    }
}
END_TEST

START_TEST(v2_tlvs)
{
    unsigned char body[2100], h2[2200];
    struct proxyproto_hdr h;
    size_t b = v4body(body, "10.1.2.3", 1234, "10.0.0.1", 3128);
    /* ALPN "h2", an empty NOOP, a UNIQUE_ID of 32 bytes, an SSL TLV with a sub-TLV. */
    static const unsigned char tlvs[] = {
        0x01, 0x00, 0x02, 'h',  '2',  0x04, 0x00, 0x00, 0x05, 0x00, 0x20, 'u', 'u', 'u',  'u',
        'u',  'u',  'u',  'u',  'u',  'u',  'u',  'u',  'u',  'u',  'u',  'u', 'u', 'u',  'u',
        'u',  'u',  'u',  'u',  'u',  'u',  'u',  'u',  'u',  'u',  'u',  'u', 'u', 0x20, 0x00,
        0x0b, 0x01, 0x00, 0x00, 0x00, 0x00, 0x21, 0x00, 0x03, 'T',  'L',  'S'};
    memcpy(body + b, tlvs, sizeof(tlvs));
    size_t n = v2(h2, 0x21, 0x11, body, b + sizeof(tlvs));
    expect_done(h2, n, &h);
    assert_v4(&h.src, "10.1.2.3", 1234);

    /* The largest body accepted: addresses and one NOOP TLV filling the rest. */
    size_t fill = PROXYPROTO_V2_BODY_MAX - b - 3;
    body[b] = 0x04;
    body[b + 1] = (unsigned char)(fill >> 8);
    body[b + 2] = (unsigned char)fill;
    memset(body + b + 3, 0, fill);
    n = v2(h2, 0x21, 0x11, body, PROXYPROTO_V2_BODY_MAX);
    ck_assert_uint_eq(n, PROXYPROTO_MAX);
    expect_done(h2, n, &h);
    ck_assert_int_eq(h.has_addr, 1);
}
END_TEST

START_TEST(v2_bad_tlvs)
{
    unsigned char body[64], h2[128];
    size_t b = v4body(body, "10.1.2.3", 1234, "10.0.0.1", 3128);
    /* A TLV claiming more bytes than the header has. */
    static const unsigned char longer[] = {0x01, 0x00, 0x0a, 'h', '2'};
    memcpy(body + b, longer, sizeof(longer));
    size_t n = v2(h2, 0x21, 0x11, body, b + sizeof(longer));
    expect_invalid_at(h2, n, n);
    /* Two bytes left: not even a TLV head. */
    static const unsigned char stub[] = {0x04, 0x00};
    memcpy(body + b, stub, sizeof(stub));
    n = v2(h2, 0x21, 0x11, body, b + sizeof(stub));
    expect_invalid_at(h2, n, n);
}
END_TEST

START_TEST(v2_refused_early)
{
    unsigned char body[64], h2[128];
    size_t b = v4body(body, "10.1.2.3", 1234, "10.0.0.1", 3128);
    /* Version 1 in the binary form: refused at the 13th byte. */
    size_t n = v2(h2, 0x11, 0x11, body, b);
    expect_invalid_at(h2, n, 13);
    /* Commands other than LOCAL and PROXY. */
    n = v2(h2, 0x22, 0x11, body, b);
    expect_invalid_at(h2, n, 13);
    n = v2(h2, 0x2f, 0x11, body, b);
    expect_invalid_at(h2, n, 13);
    /* Unknown families and transports: at the 14th. */
    static const unsigned fams[] = {0x01, 0x10, 0x13, 0x23, 0x33, 0x41, 0xff};
    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        n = v2(h2, 0x21, fams[i], body, b);
        expect_invalid_at(h2, n, 14);
    }
    /* A body too short for the addresses it announces: at the 16th. */
    n = v2(h2, 0x21, 0x11, body, 11);
    expect_invalid_at(h2, n, 16);
    n = v2(h2, 0x21, 0x21, body, 35);
    expect_invalid_at(h2, n, 16);
    /* A broken signature: at its first wrong byte. */
    memcpy(h2, v2sig, 12);
    h2[4] = 0x01;
    expect_invalid_at(h2, 12, 5);
    memcpy(h2, v2sig, 12);
    h2[11] = 0x0d;
    expect_invalid_at(h2, 12, 12);
}
END_TEST

START_TEST(v2_oversized)
{
    static unsigned char h2[PROXYPROTO_MAX + 64];
    memset(h2, 0, sizeof(h2));
    size_t n = v2(h2, 0x21, 0x11, NULL, 0);
    h2[14] = (unsigned char)((PROXYPROTO_V2_BODY_MAX + 1) >> 8);
    h2[15] = (unsigned char)(PROXYPROTO_V2_BODY_MAX + 1);
    expect_invalid_at(h2, n, 16);
    h2[14] = 0xff;
    h2[15] = 0xff;
    expect_invalid_at(h2, n, 16);
}
END_TEST

/* ---- both ---- */

START_TEST(empty_and_garbage)
{
    struct proxyproto_hdr h;
    ck_assert_int_eq(proxyproto_parse("", 0, &h), PROXYPROTO_AGAIN);
    static const char tls[] = "\x16\x03\x01\x02\x00\x01";
    expect_invalid_at(tls, sizeof(tls) - 1, 1);
    static const char crlf[] = "\r\nGET / HTTP/1.1\r\n";
    expect_invalid_at(crlf, sizeof(crlf) - 1, 3);
}
END_TEST

/* Whatever the bytes, a caller holding PROXYPROTO_MAX of them never waits for more. */
START_TEST(never_waits_past_max)
{
    static unsigned char buf[PROXYPROTO_MAX];
    struct proxyproto_hdr h;
    uint32_t x = 2463534242u;
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < sizeof(buf); i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf[i] = (unsigned char)x;
        }
        if (round % 2 == 0) {
            memcpy(buf, "PROXY UNKNOWN ", 14);
            for (size_t i = 14; i < sizeof(buf); i++)
                buf[i] = (unsigned char)(0x20 + buf[i] % 0x5f);
        } else {
            memcpy(buf, v2sig, 12);
            buf[12] = 0x20 | (buf[12] & 1);
            buf[13] = 0x11;
        }
        int rc = proxyproto_parse(buf, sizeof(buf), &h);
        ck_assert_int_ne(rc, PROXYPROTO_AGAIN);
        ck_assert(rc == PROXYPROTO_INVALID || h.len <= sizeof(buf));
    }
}
END_TEST

START_TEST(is_header)
{
    ck_assert_int_eq(proxyproto_is_header("PROXY TCP4", 10), 1);
    ck_assert_int_eq(proxyproto_is_header("PROXY ", 6), 1);
    ck_assert_int_eq(proxyproto_is_header("PROXY", 5), 0);
    ck_assert_int_eq(proxyproto_is_header("GET / HTTP/1.1", 14), 0);
    ck_assert_int_eq(proxyproto_is_header(v2sig, 12), 1);
    ck_assert_int_eq(proxyproto_is_header(v2sig, 11), 0);
}
END_TEST

Suite *proxyproto_suite(void);

Suite *
proxyproto_suite(void)
{
    Suite *s = suite_create("proxyproto");
    TCase *tc = tcase_create("v1");
    tcase_add_test(tc, v1_tcp4);
    tcase_add_test(tc, v1_tcp4_extremes);
    tcase_add_test(tc, v1_tcp6);
    tcase_add_test(tc, v1_unknown);
    tcase_add_test(tc, v1_invalid);
    tcase_add_test(tc, v1_refused_early);
    tcase_add_test(tc, v1_oversized);
    suite_add_tcase(s, tc);

    tc = tcase_create("v2");
    tcase_add_test(tc, v2_tcp4);
    tcase_add_test(tc, v2_tcp6);
    tcase_add_test(tc, v2_local);
    tcase_add_test(tc, v2_fallback_families);
    tcase_add_test(tc, v2_tlvs);
    tcase_add_test(tc, v2_bad_tlvs);
    tcase_add_test(tc, v2_refused_early);
    tcase_add_test(tc, v2_oversized);
    suite_add_tcase(s, tc);

    tc = tcase_create("both");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, empty_and_garbage);
    tcase_add_test(tc, never_waits_past_max);
    tcase_add_test(tc, is_header);
    suite_add_tcase(s, tc);
    return s;
}
