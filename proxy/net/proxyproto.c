/*
 * PROXY protocol v1 and v2 header parser (include/aigate/net/proxyproto.h).
 *
 * Both versions are parsed from the start of the buffer on every call: a v1
 * line is at most 107 bytes and a v2 body is only read once all of it is
 * there, so re-reading is cheaper than carrying state, and a partial header
 * is checked as far as it goes so that junk is refused at once.
 */
#include "aigate/net/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

static const unsigned char pp_v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                            0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char pp_v1_sig[] = "PROXY ";
#define PP_V1_SIG_LEN (sizeof(pp_v1_sig) - 1)

/* v2 command (low nibble of byte 13) and family/transport (byte 14), section 2.2. */
#define PP_V2_VERSION 0x2
#define PP_V2_LOCAL 0x0
#define PP_V2_PROXY 0x1
#define PP_V2_TCP4 0x11
#define PP_V2_TCP6 0x21
#define PP_V2_V4_ADDR 12    /* two IPv4 addresses and two ports */
#define PP_V2_V6_ADDR 36    /* two IPv6 addresses and two ports */
#define PP_V2_UNIX_ADDR 216 /* two 108-byte paths */
#define PP_V2_TLV_HEAD 3    /* type and a 16-bit length */

#define PP_V6_TEXT_MAX 45 /* "ffff:...:ffff" is 39; an embedded IPv4 tail makes 45 */

static int
pp_invalid(struct proxyproto_hdr *h, const char *why)
{
    h->error = why;
    return PROXYPROTO_INVALID;
}

/* A decimal number of n bytes without sign or leading zero, at most max. */
static int
pp_dec(const char *s, size_t n, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* "a.b.c.d": exactly four decimal octets (section 2.1: no leading zeros). */
static int
pp_v4_text(const char *s, size_t n, struct in_addr *a)
{
    unsigned char b[4];
    size_t i = 0;

    for (int k = 0; k < 4; k++) {
        size_t start = i;
        unsigned long v;
        while (i < n && s[i] != '.')
            i++;
        if (i - start > 3 || pp_dec(s + start, i - start, 255, &v) < 0)
            return -1;
        b[k] = (unsigned char)v;
        if (k < 3) {
            if (i >= n)
                return -1;
            i++; /* the dot */
        }
    }
    if (i != n)
        return -1;
    memcpy(&a->s_addr, b, 4);
    return 0;
}

/* An IPv6 address as inet_pton(3) reads it, from hex digits, colons and dots only. */
static int
pp_v6_text(const char *s, size_t n, struct in6_addr *a)
{
    char buf[PP_V6_TEXT_MAX + 1];

    if (n < 2 || n > PP_V6_TEXT_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              c == ':' || c == '.'))
            return -1;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(AF_INET6, buf, a) == 1 ? 0 : -1;
}

static void
pp_set_v4(struct sockaddr_storage *ss, const void *addr, uint16_t port_be)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, addr, 4);
    in->sin_port = port_be;
}

static void
pp_set_v6(struct sockaddr_storage *ss, const void *addr, uint16_t port_be)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_addr, addr, 16);
    in6->sin6_port = port_be;
}

/*
 * The fields of a complete v1 line (n bytes, no CRLF) after "PROXY ":
 * "TCP4 SRC DST SPORT DPORT", "TCP6 ..." or "UNKNOWN[ anything]".
 */
static int
pp_v1_line(const char *l, size_t n, struct proxyproto_hdr *h)
{
    const char *f[5];
    size_t fl[5], nf = 0, i = PP_V1_SIG_LEN;

    if (n - i >= 7 && memcmp(l + i, "UNKNOWN", 7) == 0 && (n - i == 7 || l[i + 7] == ' '))
        return PROXYPROTO_DONE; /* the rest is to be ignored (section 2.1) */
    while (i <= n) {
        const char *sp = memchr(l + i, ' ', n - i);
        size_t end = sp ? (size_t)(sp - l) : n;
        if (nf == 5)
            return pp_invalid(h, "PROXY v1: too many fields");
        f[nf] = l + i;
        fl[nf++] = end - i;
        i = end + 1;
    }
    if (nf != 5)
        return pp_invalid(h, "PROXY v1: expected PROTO SRC DST SPORT DPORT");
    int v6;
    if (fl[0] == 4 && memcmp(f[0], "TCP4", 4) == 0)
        v6 = 0;
    else if (fl[0] == 4 && memcmp(f[0], "TCP6", 4) == 0)
        v6 = 1;
    else
        return pp_invalid(h, "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");

    union {
        struct in_addr v4;
        struct in6_addr v6;
    } a[2];
    unsigned long port[2];
    for (int k = 0; k < 2; k++) {
        int bad = v6 ? pp_v6_text(f[1 + k], fl[1 + k], &a[k].v6)
                     : pp_v4_text(f[1 + k], fl[1 + k], &a[k].v4);
        if (bad)
            return pp_invalid(h, v6 ? "PROXY v1: bad IPv6 address" : "PROXY v1: bad IPv4 address");
        if (pp_dec(f[3 + k], fl[3 + k], 65535, &port[k]) < 0)
            return pp_invalid(h, "PROXY v1: bad port");
    }
    for (int k = 0; k < 2; k++) {
        struct sockaddr_storage *ss = k ? &h->dst : &h->src;
        if (v6)
            pp_set_v6(ss, &a[k].v6, htons((uint16_t)port[k]));
        else
            pp_set_v4(ss, &a[k].v4, htons((uint16_t)port[k]));
    }
    h->addrlen = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    h->has_addr = 1;
    return PROXYPROTO_DONE;
}

static int
pp_v1(const char *p, size_t len, struct proxyproto_hdr *h)
{
    size_t n = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;

    h->version = 1;
    if (memcmp(p, pp_v1_sig, n < PP_V1_SIG_LEN ? n : PP_V1_SIG_LEN) != 0)
        return pp_invalid(h, "PROXY v1: bad signature");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r') {
            if (i + 2 > PROXYPROTO_V1_MAX)
                return pp_invalid(h, "PROXY v1: no CRLF within 107 bytes");
            if (i + 1 == len)
                return PROXYPROTO_AGAIN;
            if (p[i + 1] != '\n')
                return pp_invalid(h, "PROXY v1: CR without LF");
            if (i < PP_V1_SIG_LEN)
                return pp_invalid(h, "PROXY v1: bad signature");
            h->len = i + 2;
            return pp_v1_line(p, i, h);
        }
        if (c < 0x20 || c > 0x7e)
            return pp_invalid(h, "PROXY v1: control or non-ASCII byte in the line");
    }
    if (n == PROXYPROTO_V1_MAX)
        return pp_invalid(h, "PROXY v1: no CRLF within 107 bytes");
    return PROXYPROTO_AGAIN;
}

/* Skip the TLVs of b[0..n): each must be whole, and together they fill n exactly. */
static int
pp_v2_tlvs(const unsigned char *b, size_t n)
{
    size_t i = 0;

    while (i < n) {
        if (n - i < PP_V2_TLV_HEAD)
            return -1;
        size_t vl = (size_t)b[i + 1] << 8 | b[i + 2];
        if (vl > n - i - PP_V2_TLV_HEAD)
            return -1;
        i += PP_V2_TLV_HEAD + vl;
    }
    return 0;
}

static int
pp_v2(const unsigned char *p, size_t len, struct proxyproto_hdr *h)
{
    size_t n = len < sizeof(pp_v2_sig) ? len : sizeof(pp_v2_sig);

    h->version = 2;
    if (memcmp(p, pp_v2_sig, n) != 0)
        return pp_invalid(h, "PROXY v2: bad signature");
    if (len > 12 && (p[12] >> 4 != PP_V2_VERSION))
        return pp_invalid(h, "PROXY v2: version is not 2");
    if (len > 12 && (p[12] & 0xf) != PP_V2_LOCAL && (p[12] & 0xf) != PP_V2_PROXY)
        return pp_invalid(h, "PROXY v2: command is neither LOCAL nor PROXY");
    size_t need = 0; /* address bytes the family announces */
    if (len > 13) {
        switch (p[13]) {
        case 0x00:
            break;
        case 0x11:
        case 0x12:
            need = PP_V2_V4_ADDR;
            break;
        case 0x21:
        case 0x22:
            need = PP_V2_V6_ADDR;
            break;
        case 0x31:
        case 0x32:
            need = PP_V2_UNIX_ADDR;
            break;
        default:
            return pp_invalid(h, "PROXY v2: unknown address family or transport");
        }
    }
    if (len < PROXYPROTO_V2_FIXED)
        return PROXYPROTO_AGAIN;
    size_t body = (size_t)p[14] << 8 | p[15];
    int local = (p[12] & 0xf) == PP_V2_LOCAL;
    if (body > PROXYPROTO_V2_BODY_MAX)
        return pp_invalid(h, "PROXY v2: header longer than aigate accepts");
    if (!local && body < need)
        return pp_invalid(h, "PROXY v2: length shorter than the addresses");
    if (len < PROXYPROTO_V2_FIXED + body)
        return PROXYPROTO_AGAIN;
    h->len = PROXYPROTO_V2_FIXED + body;
    if (local)
        return PROXYPROTO_DONE; /* a health check: the family and the rest are ignored */

    const unsigned char *a = p + PROXYPROTO_V2_FIXED;
    if (need && pp_v2_tlvs(a + need, body - need) < 0)
        return pp_invalid(h, "PROXY v2: TLVs do not fill the header exactly");
    uint16_t sport, dport;
    if (p[13] == PP_V2_TCP4) {
        memcpy(&sport, a + 8, 2);
        memcpy(&dport, a + 10, 2);
        pp_set_v4(&h->src, a, sport);
        pp_set_v4(&h->dst, a + 4, dport);
        h->addrlen = sizeof(struct sockaddr_in);
        h->has_addr = 1;
    } else if (p[13] == PP_V2_TCP6) {
        memcpy(&sport, a + 32, 2);
        memcpy(&dport, a + 34, 2);
        pp_set_v6(&h->src, a, sport);
        pp_set_v6(&h->dst, a + 16, dport);
        h->addrlen = sizeof(struct sockaddr_in6);
        h->has_addr = 1;
    }
    /* AF_UNSPEC, AF_UNIX and UDP: fall back to the real peer (section 2.2). */
    return PROXYPROTO_DONE;
}

int
proxyproto_parse(const void *buf, size_t len, struct proxyproto_hdr *h)
{
    const unsigned char *p = buf;

    memset(h, 0, sizeof(*h));
    if (len == 0)
        return PROXYPROTO_AGAIN;
    if (p[0] == pp_v1_sig[0])
        return pp_v1(buf, len, h);
    if (p[0] == pp_v2_sig[0])
        return pp_v2(p, len, h);
    return pp_invalid(h, "no PROXY protocol header");
}

int
proxyproto_is_header(const void *buf, size_t len)
{
    return (len >= PP_V1_SIG_LEN && memcmp(buf, pp_v1_sig, PP_V1_SIG_LEN) == 0) ||
           (len >= sizeof(pp_v2_sig) && memcmp(buf, pp_v2_sig, sizeof(pp_v2_sig)) == 0);
}
