/*
 * CIDR parsing and matching; listen-address parsing.  Pure functions.
 */
#include "aigate/core/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
cidr_parse(const char *s, struct cidr *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(buf))
        return -1;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    memset(out, 0, sizeof(*out));
    int maxp;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        maxp = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        maxp = 128;
    } else {
        return -1;
    }
    out->prefix = maxp;
    if (slash) {
        char *end;
        if (slash[1] < '0' || slash[1] > '9')
            return -1;
        long p = strtol(slash + 1, &end, 10);
        if (*end != '\0' || p < 0 || p > maxp)
            return -1;
        out->prefix = (int)p;
    }
    return 0;
}

static int
prefix_eq(const uint8_t *a, const uint8_t *b, int prefix)
{
    int full = prefix / 8, rem = prefix % 8;
    if (memcmp(a, b, (size_t)full) != 0)
        return 0;
    if (rem == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rem));
    return (a[full] & mask) == (b[full] & mask);
}

int
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (c->family == AF_INET)
            return prefix_eq(c->addr, (const uint8_t *)&in->sin_addr, c->prefix);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *a = in6->sin6_addr.s6_addr;
        if (c->family == AF_INET6)
            return prefix_eq(c->addr, a, c->prefix);
        if (memcmp(a, v4mapped, 12) == 0)
            return prefix_eq(c->addr, a + 12, c->prefix);
    }
    return 0;
}

int
cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
    for (size_t i = 0; i < l->n; i++)
        if (cidr_match(&l->v[i], sa))
            return 1;
    return 0;
}

void
cidr_list_free(struct cidr_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int
netaddr_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[64];
    const char *colon;
    const char *h = s;
    size_t hlen;

    memset(ss, 0, sizeof(*ss));
    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = s + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - s);
    }
    if (hlen >= sizeof(host))
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end;
    if (colon[1] < '0' || colon[1] > '9')
        return -1;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return -1;

    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (hlen == 0 || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0) {
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        in->sin_port = htons((uint16_t)port);
        *len = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *len = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*in6);
        return 0;
    }
    if (strcmp(host, "localhost") == 0) {
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = htons((uint16_t)port);
        *len = sizeof(*in);
        return 0;
    }
    return -1;
}

const char *
netaddr_ntop(const struct sockaddr *sa, char *buf, size_t len)
{
    buf[0] = '\0';
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
    else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(in6->sin6_addr.s6_addr, v4mapped, 12) == 0)
            inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, buf, (socklen_t)len);
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)len);
    }
    return buf;
}

int
netaddr_probe_bind(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = bind(fd, sa, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

void
netaddr_tune_stream(int fd)
{
    int one = 1, lowat = NETADDR_NOTSENT_LOWAT;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
}
