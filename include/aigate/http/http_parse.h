/*
 * Incremental, in-place HTTP/1.x message parser for a forward proxy.
 *
 * The parser never allocates and never copies: it is handed the bytes that
 * have arrived so far (a contiguous buffer) and records offsets into them.
 * http_parse_request()/http_parse_response() are called again with the whole
 * (grown) buffer until they return HTTP_PARSE_OK; they detect hard errors as
 * early as possible (bare CR, bare LF, NUL, obs-fold, bad tokens) so a
 * malformed request is refused before its terminator arrives.
 *
 * Strictness follows llhttp's strict mode (see ../shared/conformance): every
 * framing ambiguity is an error, never "repaired".
 *
 * Resuming: struct http_head carries the parser's position (h->ps).  Zero the
 * whole struct (memset) before the first call for each new message and leave
 * it alone between calls; each call then scans only the bytes that arrived
 * since the previous one, so a head trickling in byte by byte costs O(n).
 * The buffer may move between calls (only offsets are kept), but the bytes
 * already seen must not change.  Once a call returned OK or ERROR, further
 * calls return the same result.  Empty lines (CRLF) before a request line are
 * skipped (RFC 9112 section 2.2); they count in head_len.
 */
#ifndef AIGATE_HTTP_PARSE_H
#define AIGATE_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum http_parse_rc { HTTP_PARSE_ERROR = -1, HTTP_PARSE_OK = 0, HTTP_PARSE_AGAIN = 1 };

#define HTTP_MAX_HEADERS 128
#define HTTP_CHUNK_MAX_LINE 4096      /* chunk-size line incl. extensions */
#define HTTP_CHUNK_MAX_TRAILERS 16384 /* whole trailer section */

struct http_span {
    uint32_t off; /* offset into the parsed buffer */
    uint32_t len;
};

struct http_header {
    struct http_span name;
    struct http_span value; /* leading/trailing OWS trimmed */
};

enum http_body {
    HTTP_BODY_NONE = 0, /* no body (Content-Length 0, HEAD response, 1xx/204/304) */
    HTTP_BODY_LENGTH,   /* content_length bytes */
    HTTP_BODY_CHUNKED,  /* chunked; use struct http_chunk */
    HTTP_BODY_EOF,      /* response delimited by connection close */
};

struct http_head {
    /* request line */
    struct http_span method;
    struct http_span target;
    /* status line */
    int status;
    struct http_span reason;
    int version_minor; /* HTTP/1.0 -> 0, HTTP/1.1 -> 1 */

    struct http_header hdr[HTTP_MAX_HEADERS];
    unsigned nhdr;
    size_t head_len; /* bytes of the head, including the blank line */

    /* framing derived from the headers */
    enum http_body body;
    uint64_t content_length;
    unsigned keep_alive : 1;      /* persistent per version + Connection */
    unsigned has_upgrade : 1;     /* Connection: upgrade with an Upgrade header */
    unsigned expect_continue : 1; /* Expect: 100-continue */
    unsigned is_head : 1;         /* request method is HEAD */
    unsigned is_connect : 1;      /* request method is CONNECT */

    /* on HTTP_PARSE_ERROR: 400 or 431 (head over max_head), and why */
    int error_status;
    const char *error;

    /* resume state, private to http_parse.c; all zero before the first call */
    struct {
        uint32_t off;       /* next byte to scan */
        uint32_t value_end; /* end of the current value without trailing OWS */
        uint16_t state;
        uint16_t idx; /* position within a literal (version, status) */
        uint32_t flags;
    } ps;
};

/*
 * Parse a request head from buf[0..len).  max_head bounds the head size
 * (431 beyond it).  Methods are those llhttp knows (GET, POST, ..., CONNECT);
 * unknown methods are an error.  Requests with both Content-Length and
 * Transfer-Encoding, differing Content-Length values, Transfer-Encoding whose
 * final coding is not chunked, obs-fold, whitespace before the colon, NUL or
 * bare CR/LF anywhere in the head, or a bad version are errors (400).
 */
int http_parse_request(const char *buf, size_t len, size_t max_head, struct http_head *h);

/*
 * Parse a response head.  req_is_head: the request was HEAD (no body).
 * Body kind follows RFC 9112 section 6.3 (1xx/204/304 have none; without
 * Content-Length or chunked the body runs until close).
 */
int http_parse_response(const char *buf, size_t len, size_t max_head, int req_is_head,
                        struct http_head *h);

/* Case-insensitive lookup; returns the index of the first header named name, or -1. */
int http_header_find(const char *buf, const struct http_head *h, const char *name);
/* 1 if span s of buf equals str, ignoring ASCII case. */
static inline int
http_span_ieq(const char *buf, struct http_span s, const char *str)
{
    /* Inline: str is nearly always a literal, so its length is known at compile time. */
    size_t n = strlen(str);
    if (s.len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)buf[s.off + i], b = (unsigned char)str[i];
        if ((a >= 'A' && a <= 'Z' ? a + 32 : a) != (b >= 'A' && b <= 'Z' ? b + 32 : b))
            return 0;
    }
    return 1;
}
/* 1 if the comma-separated token list in s contains token (ASCII case-insensitive). */
int http_list_has(const char *buf, struct http_span s, const char *token);

/*
 * Chunked body scanner.  Feeds raw bytes (which the proxy forwards
 * unchanged) and validates the framing: hex sizes without junk or overflow,
 * CRLF after each chunk, extensions, trailer fields.  on_data, if set, gets
 * the decoded payload bytes (for inspection).
 */
struct http_chunk {
    int state;
    uint64_t remaining; /* payload bytes left in the current chunk */
    unsigned ndigits;
    uint32_t line_len; /* bytes in the current size/trailer line, bounded */
    void (*on_data)(void *arg, const char *p, size_t n);
    void *arg;
    const char *error; /* on HTTP_PARSE_ERROR: why */
};

/* Zero the scanner (including on_data/arg: set them after this). */
void http_chunk_init(struct http_chunk *c);
/*
 * Scan buf[0..len).  *consumed gets the bytes that belong to the body.
 * HTTP_PARSE_OK: the body ended (last chunk and trailers) after *consumed.
 * HTTP_PARSE_AGAIN: all len bytes belong to the body, more to come.
 * HTTP_PARSE_ERROR: malformed framing (c->error says why); *consumed is the
 *   valid prefix, which may be forwarded before the connection is closed.
 * Resumable at any byte boundary; after OK or ERROR further calls repeat it
 * (with *consumed = 0).
 */
int http_chunk_feed(struct http_chunk *c, const char *buf, size_t len, size_t *consumed);

/* A request target parsed in absolute-form or (for CONNECT) authority-form. */
struct http_url {
    char scheme[8]; /* "http", "https", or "" for authority-form */
    char host[256]; /* lower-cased, no brackets, no trailing dot */
    uint16_t port;  /* explicit or the scheme default */
    int host_is_v6; /* host was a bracketed IPv6 literal */
    /*
     * path: the origin-form to send, path and query ("/a/b?q").  len 0 when the
     * target had no path and no query: send "/" then; if it starts with '?'
     * (as "http://h?q" gives) send "/" before it.  A fragment is not part of
     * it (see below).
     */
    struct http_span path;
    struct http_span query;    /* after '?', len 0 if none */
    struct http_span pathname; /* path without the query, len 0 if none ("/" meant) */
};

/*
 * Parse an absolute-form target ("http://host[:port]/path?q").  Userinfo,
 * an empty or invalid host, a bad port (0, > 65535), a scheme other than
 * http/https, spaces, control or non-ASCII bytes are an error (-1).  An empty
 * port ("http://h:/") means the default (RFC 3986 section 6.2.3).  A fragment
 * ("#frag") is accepted and dropped: llhttp accepts it, browsers never send
 * one, and it must not reach the origin.  Offsets in u->path/u->query/
 * u->pathname are relative to buf (the same buffer as the head).
 */
int http_url_parse_absolute(const char *buf, struct http_span target, struct http_url *u);
/* Parse an authority-form target ("host:port", "[v6]:port"); port required. 0 or -1. */
int http_url_parse_authority(const char *buf, struct http_span target, struct http_url *u);
/*
 * Parse an origin-form target ("/path?q", as inside an intercepted TLS
 * connection) into u->path/query/pathname only; scheme, host and port are
 * left as they are (fill them from the CONNECT authority).  0 or -1.
 */
int http_url_parse_origin(const char *buf, struct http_span target, struct http_url *u);

/* Flags of http_pct_decode(). */
#define HTTP_PCT_PLUS 1u   /* '+' stands for a space (application/x-www-form-urlencoded) */
#define HTTP_PCT_STRICT 2u /* a '%' without two hex digits after it, or a NUL, is an error */

/*
 * Undo percent-encoding (RFC 3986 section 2.1) of s[0..n) into out, which
 * holds cap bytes and may be s itself (the result is never longer).  Without
 * HTTP_PCT_STRICT a '%' not followed by two hex digits is kept as it is and
 * NUL bytes (raw or %00) pass.  No NUL is appended.  Returns 0 with the decoded
 * length in *outlen, or -1 on a strict error or when out is too small.
 */
int http_pct_decode(const char *s, size_t n, char *out, size_t cap, unsigned flags, size_t *outlen);

/*
 * 1 if the Host field value names host:port (host as http_url keeps it:
 * lower-cased, no brackets, no trailing dot), ignoring ASCII case, a trailing
 * dot and an omitted default_port (RFC 9112 section 3.2); 0 for another
 * authority and for a value that is not a valid authority (empty included).
 */
int http_host_matches(const char *buf, struct http_span value, const char *host, uint16_t port,
                      uint16_t default_port);

#endif
