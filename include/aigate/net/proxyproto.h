/*
 * The PROXY protocol header a load balancer puts before a connection's own
 * bytes (HAProxy's doc/proxy-protocol.txt; "send-proxy" writes version 1,
 * "send-proxy-v2" version 2), so the proxy learns the client's address
 * instead of the balancer's (SPEC section 10, proxy_protocol).
 *
 * Version 1 is one text line: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or
 * "PROXY UNKNOWN[ anything]\r\n", at most PROXYPROTO_V1_MAX bytes with its
 * CRLF.  Version 2 is binary: a 12-byte signature, version and command,
 * family and transport, a 16-bit length, then that many bytes of addresses
 * and TLVs.
 *
 * The parser is pure (no I/O, no allocation) and strict: decimal numbers
 * without leading zeros, exactly one space between fields, a CRLF (never a
 * bare CR or LF), the address family the header names, a v2 length within
 * PROXYPROTO_V2_BODY_MAX that holds the addresses it announces, and TLVs
 * that fill the rest exactly (they are skipped, not interpreted; a CRC32C
 * TLV is not verified).  Anything else is invalid: the connection must be
 * closed, never read as if there were no header.
 *
 * Only connections from the trusted balancers may carry the header; whether
 * a peer is one is the caller's business (config proxy_protocol).
 */
#ifndef AIGATE_PROXYPROTO_H
#define AIGATE_PROXYPROTO_H

#include <stddef.h>
#include <sys/socket.h>

enum proxyproto_rc { PROXYPROTO_INVALID = -1, PROXYPROTO_DONE = 0, PROXYPROTO_AGAIN = 1 };

#define PROXYPROTO_V1_MAX 107       /* longest v1 line with its CRLF (section 2.1) */
#define PROXYPROTO_V2_FIXED 16      /* signature, version/command, family, length */
#define PROXYPROTO_V2_BODY_MAX 2048 /* addresses and TLVs: HAProxy's TLVs fit in a few hundred */
/* Bytes a caller must be ready to hold before the header is known to be complete or invalid. */
#define PROXYPROTO_MAX (PROXYPROTO_V2_FIXED + PROXYPROTO_V2_BODY_MAX)

struct proxyproto_hdr {
    int version; /* 1 or 2 */
    /*
     * 1: src and dst are the client's connection as the balancer saw it
     * (AF_INET or AF_INET6, ports included).  0: the header carries no
     * address to use (v1 UNKNOWN, v2 LOCAL such as a health check, v2 with
     * AF_UNSPEC, AF_UNIX or UDP): the connection's real peer stands.
     */
    int has_addr;
    struct sockaddr_storage src, dst;
    socklen_t addrlen; /* of src and of dst, when has_addr */
    size_t len;        /* bytes of the header: the connection's own data starts after them */
    const char *error; /* on PROXYPROTO_INVALID: why, for the log */
};

/*
 * Parse the PROXY header at the start of buf[0..len), the bytes a connection
 * has delivered so far (more may follow the header: they are not looked at).
 *
 * PROXYPROTO_DONE: a complete valid header of h->len bytes; h describes it.
 * PROXYPROTO_AGAIN: every byte so far can still begin a valid header; call
 *   again with the same bytes and more.  Never returned once len reaches
 *   PROXYPROTO_MAX, so a caller holding that much never waits for ever.
 * PROXYPROTO_INVALID: buf does not start with a valid header (h->error says
 *   why); decided as early as the bytes allow (a first byte that starts
 *   neither version, a bad v2 version, command, family or length before the
 *   addresses arrive, a v1 line longer than PROXYPROTO_V1_MAX).  Nothing is
 *   accepted in part: close the connection.
 *
 * Stateless: each call parses buf from its start, so the buffer may move
 * between calls, and after DONE or INVALID the same bytes give the same
 * answer.  A call costs O(min(len, PROXYPROTO_V1_MAX)) until the v2 body is
 * complete.  h is written on every call (zeroed first).
 */
int proxyproto_parse(const void *buf, size_t len, struct proxyproto_hdr *h);

/* 1 if buf[0..len) begins with a whole PROXY signature ("PROXY " or the 12
 * v2 bytes), else 0: for telling apart a client from an unlisted address that
 * speaks the PROXY protocol (refused with 400) from one that sends junk. */
int proxyproto_is_header(const void *buf, size_t len);

#endif
