/*
 * Addresses and CIDR networks: parsing "10.0.0.0/8", "::1/128", "host:port",
 * "[v6]:port", and matching a socket address against a network list.
 * Pure: no I/O.
 */
#ifndef AIGATE_NETADDR_H
#define AIGATE_NETADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int prefix;
};

struct cidr_list {
    struct cidr *v;
    size_t n;
};

/* Parse "a.b.c.d/n", "x::y/n" or a bare address (full-length prefix). 0 or -1. */
int cidr_parse(const char *s, struct cidr *out);
/* 1 if sa (AF_INET, AF_INET6, or v4-mapped v6) lies inside c. */
int cidr_match(const struct cidr *c, const struct sockaddr *sa);
int cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);
void cidr_list_free(struct cidr_list *l);

/* Parse "host:port" / "[v6]:port" / "*:port" into a sockaddr. 0 or -1. */
int netaddr_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/*
 * Bind a throw-away socket without SO_REUSEPORT: fails (EADDRINUSE) when
 * another process already listens there, which SO_REUSEPORT would hide.
 */
int netaddr_probe_bind(const struct sockaddr *sa, socklen_t len);
/*
 * Socket options for every proxied TCP connection, client or origin side:
 * TCP_NODELAY (heads and small bodies leave at once) and TCP_NOTSENT_LOWAT
 * (writes stop once NETADDR_NOTSENT_LOWAT bytes wait unsent in the kernel).
 * The latter bounds what the proxy queues ahead of a slow receiver without
 * limiting what is in flight on the wire, so long fat paths keep their full
 * window; data a receiver is about to read stays small and cache-warm.
 */
#define NETADDR_NOTSENT_LOWAT (16 * 1024)
void netaddr_tune_stream(int fd);
/* Format sa's address (no port) into buf; returns buf. */
const char *netaddr_ntop(const struct sockaddr *sa, char *buf, size_t len);

#endif
