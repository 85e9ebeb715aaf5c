/*
 * Incremental HTTP/1.x parser: request and status lines, header fields,
 * framing, chunked bodies and request-target URLs.
 *
 * Design.  Like nginx's ngx_http_parse.c this is a byte-at-a-time
 * `switch (state)` machine that keeps offsets, never copies and never
 * allocates.  The state lives in the caller's struct (h->ps, struct
 * http_chunk), so a call resumes exactly where the previous one stopped and
 * a head arriving one byte at a time is scanned once in total.
 *
 * Every byte is checked as it arrives, so a malformed head is refused at the
 * first bad byte rather than at the blank line: bare CR or LF, NUL and other
 * controls, whitespace before a colon or at the start of a line (obs-fold),
 * bad token characters, an unknown method or a version other than HTTP/1.0
 * and HTTP/1.1.  The framing headers (Content-Length, Transfer-Encoding) are
 * checked when their line ends, so conflicts are found before the head is
 * complete; only "Transfer-Encoding without a final chunked" needs the whole
 * head, because a later field line may still add chunked.
 *
 * Strictness follows llhttp's strict mode, since a proxy that is more lenient
 * than the origin behind it (or the other way round) is how request
 * smuggling happens.  Responses get two concessions real origins need: an
 * empty or missing reason phrase, and a body running to close when there is
 * no framing header; their framing rules are as strict as for requests.
 */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "aigate/http/http_parse.h"

enum head_state {
    S_START = 0, /* before the first line; empty lines are skipped */
    S_START_LF,
    S_METHOD,
    S_TARGET_START,
    S_TARGET,
    S_VERSION,  /* request: "HTTP/1.x" then CR */
    S_RVERSION, /* response: "HTTP/1.x" then SP */
    S_STATUS,
    S_STATUS_END,
    S_REASON,
    S_LINE_LF,
    S_FIELD_START,
    S_NAME,
    S_VALUE_OWS,
    S_VALUE,
    S_VALUE_LF,
    S_END_LF,
    S_DONE,
    S_ERROR,
};

/* h->ps.flags: what the field lines said so far */
#define F_CL 0x001           /* Content-Length seen */
#define F_TE 0x002           /* Transfer-Encoding seen */
#define F_TE_CHUNKED 0x004   /* chunked seen in Transfer-Encoding */
#define F_TE_FINAL 0x008     /* ... and it is the last coding so far */
#define F_CONN_CLOSE 0x010   /* Connection: close */
#define F_CONN_KA 0x020      /* Connection: keep-alive */
#define F_CONN_UPGRADE 0x040 /* Connection: upgrade */
#define F_UPGRADE 0x080      /* Upgrade header present */
#define F_RESPONSE 0x100     /* parsing a response */

static const char HTTP_VERSION_PREFIX[] = "HTTP/1.";

/*
 * llhttp's HTTP methods (constants.ts METHODS_HTTP) minus PRI, which only
 * starts an HTTP/2 preface ("PRI * HTTP/2.0") and so can never come with a
 * valid HTTP/1.x version; RTSP and ICE methods are not HTTP.
 */
static const char *const http_methods[] = {
    "DELETE",     "GET",      "HEAD",       "POST",     "PUT",    "CONNECT",   "OPTIONS",
    "TRACE",      "COPY",     "LOCK",       "MKCOL",    "MOVE",   "PROPFIND",  "PROPPATCH",
    "SEARCH",     "UNLOCK",   "BIND",       "REBIND",   "UNBIND", "ACL",       "REPORT",
    "MKACTIVITY", "CHECKOUT", "MERGE",      "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE",
    "PATCH",      "PURGE",    "MKCALENDAR", "LINK",     "UNLINK", "SOURCE",    "QUERY",
};
#define N_METHODS (sizeof(http_methods) / sizeof(http_methods[0]))

/* RFC 9110 tchar: ALPHA, DIGIT and !#$%&'*+-.^_`|~ (a table: it is asked of every name byte). */
static const unsigned char tchar_table[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static int
is_tchar(unsigned char c)
{
    return tchar_table[c];
}

/* field-vchar / obs-text: anything visible, no controls, no DEL */
static int
is_vchar_or_obs(unsigned char c)
{
    return (c > 0x20 && c < 0x7f) || c >= 0x80;
}

static int
is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char
lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* 1 if some method starts with the n (>= 1) bytes at p; 2 if one equals them. */
static int
method_match(const char *p, size_t n)
{
    int r = 0;

    for (size_t i = 0; i < N_METHODS; i++) {
        const char *m = http_methods[i];
        if (m[0] != p[0])
            continue;
        size_t ml = strlen(m);
        if (ml >= n && memcmp(m, p, n) == 0) {
            if (ml == n)
                return 2;
            r = 1;
        }
    }
    return r;
}

int
http_list_has(const char *buf, struct http_span s, const char *token)
{
    const char *p = buf + s.off, *end = p + s.len;

    while (p < end) {
        const char *e = memchr(p, ',', (size_t)(end - p));
        const char *a = p, *b = e ? e : end;

        while (a < b && is_ows((unsigned char)*a))
            a++;
        while (b > a && is_ows((unsigned char)b[-1]))
            b--;
        struct http_span el = {(uint32_t)(a - buf), (uint32_t)(b - a)};
        if (http_span_ieq(buf, el, token))
            return 1;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return 0;
}

int
http_header_find(const char *buf, const struct http_head *h, const char *name)
{
    for (unsigned i = 0; i < h->nhdr; i++)
        if (http_span_ieq(buf, h->hdr[i].name, name))
            return (int)i;
    return -1;
}

static int
fail(struct http_head *h, int status, const char *why)
{
    h->ps.state = S_ERROR;
    h->error_status = status;
    h->error = why;
    return HTTP_PARSE_ERROR;
}

static int
parse_content_length(const char *buf, struct http_head *h, struct http_span v)
{
    uint64_t n = 0;

    if (v.len == 0)
        return fail(h, 400, "empty Content-Length");
    /* a list of identical values ("5, 5") is allowed by RFC 9110 but refused here */
    for (uint32_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)buf[v.off + i];
        if (c < '0' || c > '9')
            return fail(h, 400, "invalid Content-Length");
        if (n > (UINT64_MAX - (uint64_t)(c - '0')) / 10)
            return fail(h, 400, "Content-Length overflow");
        n = n * 10 + (uint64_t)(c - '0');
    }
    if ((h->ps.flags & F_CL) && n != h->content_length)
        return fail(h, 400, "differing Content-Length values");
    if (h->ps.flags & F_TE)
        return fail(h, 400, "Content-Length with Transfer-Encoding");
    h->content_length = n;
    h->ps.flags |= F_CL;
    return HTTP_PARSE_AGAIN;
}

/*
 * Transfer-Encoding = #transfer-coding.  chunked must be the last coding of
 * a request and may appear once; a response whose last coding is not chunked
 * is read until close (RFC 9112 section 6.3).
 */
static int
parse_transfer_encoding(const char *buf, struct http_head *h, struct http_span v)
{
    const char *p = buf + v.off, *end = p + v.len;
    int response = (h->ps.flags & F_RESPONSE) != 0;

    if (h->ps.flags & F_CL)
        return fail(h, 400, "Transfer-Encoding with Content-Length");
    if (h->version_minor == 0)
        return fail(h, 400, "Transfer-Encoding in HTTP/1.0");
    h->ps.flags |= F_TE;
    while (p < end) {
        const char *e = memchr(p, ',', (size_t)(end - p));
        const char *a = p, *b = e ? e : end, *n;

        while (a < b && is_ows((unsigned char)*a))
            a++;
        while (b > a && is_ows((unsigned char)b[-1]))
            b--;
        if (a < b) {
            for (n = a; n < b && is_tchar((unsigned char)*n); n++)
                ;
            if (n == a)
                return fail(h, 400, "invalid Transfer-Encoding");
            int chunked = (n - a == 7 && strncasecmp(a, "chunked", 7) == 0);
            if (n < b) {
                const char *q = n;
                while (q < b && is_ows((unsigned char)*q))
                    q++;
                if (chunked || *q != ';')
                    return fail(h, 400, "invalid Transfer-Encoding");
            }
            if (h->ps.flags & F_TE_CHUNKED) {
                if (!response)
                    return fail(h, 400, "chunked is not the final transfer coding");
                if (chunked)
                    return fail(h, 400, "chunked applied twice");
            }
            if (chunked)
                h->ps.flags |= F_TE_CHUNKED | F_TE_FINAL;
            else
                h->ps.flags &= ~(uint32_t)F_TE_FINAL;
        }
        if (e == NULL)
            break;
        p = e + 1;
    }
    return HTTP_PARSE_AGAIN;
}

/* A field line is complete: note what framing and connection handling need. */
static int
field_done(const char *buf, struct http_head *h)
{
    struct http_header *f = &h->hdr[h->nhdr - 1];

    if (http_span_ieq(buf, f->name, "content-length"))
        return parse_content_length(buf, h, f->value);
    if (http_span_ieq(buf, f->name, "transfer-encoding"))
        return parse_transfer_encoding(buf, h, f->value);
    if (http_span_ieq(buf, f->name, "connection") ||
        (!(h->ps.flags & F_RESPONSE) && http_span_ieq(buf, f->name, "proxy-connection"))) {
        if (http_list_has(buf, f->value, "close"))
            h->ps.flags |= F_CONN_CLOSE;
        if (http_list_has(buf, f->value, "keep-alive"))
            h->ps.flags |= F_CONN_KA;
        if (http_list_has(buf, f->value, "upgrade"))
            h->ps.flags |= F_CONN_UPGRADE;
    } else if (http_span_ieq(buf, f->name, "upgrade")) {
        h->ps.flags |= F_UPGRADE;
    } else if (http_span_ieq(buf, f->name, "expect")) {
        if (http_span_ieq(buf, f->value, "100-continue"))
            h->expect_continue = 1;
    }
    return HTTP_PARSE_AGAIN;
}

/* The blank line arrived: derive keep-alive and the body kind. */
static int
head_done(struct http_head *h, int req_is_head)
{
    uint32_t fl = h->ps.flags;

    if (h->version_minor == 1)
        h->keep_alive = !(fl & F_CONN_CLOSE);
    else
        h->keep_alive = (fl & F_CONN_KA) && !(fl & F_CONN_CLOSE);
    h->has_upgrade = (fl & F_CONN_UPGRADE) && (fl & F_UPGRADE);

    if (!(fl & F_RESPONSE)) {
        if (fl & F_TE) {
            if (!(fl & F_TE_FINAL))
                return fail(h, 400, "Transfer-Encoding without final chunked");
            h->body = HTTP_BODY_CHUNKED;
        } else {
            h->body = h->content_length > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
        }
    } else if (req_is_head || h->status < 200 || h->status == 204 || h->status == 304) {
        h->body = HTTP_BODY_NONE;
    } else if (fl & F_TE) {
        h->body = (fl & F_TE_FINAL) ? HTTP_BODY_CHUNKED : HTTP_BODY_EOF;
    } else if (fl & F_CL) {
        h->body = h->content_length > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
    } else {
        h->body = HTTP_BODY_EOF;
    }
    if (h->body == HTTP_BODY_EOF)
        h->keep_alive = 0;
    h->ps.state = S_DONE;
    return HTTP_PARSE_OK;
}

static int
parse_head(const char *buf, size_t len, size_t max_head, int response, int req_is_head,
           struct http_head *h)
{
    size_t i, end;
    int rc;

    if (h->ps.state == S_DONE)
        return HTTP_PARSE_OK;
    if (h->ps.state == S_ERROR)
        return HTTP_PARSE_ERROR;
    if (response)
        h->ps.flags |= F_RESPONSE;
    if (max_head > UINT32_MAX - 1)
        max_head = UINT32_MAX - 1;
    end = len < max_head ? len : max_head;

    for (i = h->ps.off; i < end; i++) {
        unsigned char c = (unsigned char)buf[i];

    again:
        switch ((enum head_state)h->ps.state) {
        case S_START:
            if (c == '\r') {
                h->ps.state = S_START_LF;
                break;
            }
            if (response) {
                h->ps.state = S_RVERSION;
                h->ps.idx = 0;
            } else {
                h->method.off = (uint32_t)i;
                h->ps.state = S_METHOD;
            }
            goto again; /* this byte starts the line */
        case S_START_LF:
            if (c != '\n')
                return fail(h, 400, "CR without LF");
            h->ps.state = S_START;
            break;

        case S_METHOD:
            if (c == ' ') {
                h->method.len = (uint32_t)(i - h->method.off);
                if (method_match(buf + h->method.off, h->method.len) != 2)
                    return fail(h, 400, "unknown method");
                h->is_head = http_span_ieq(buf, h->method, "HEAD");
                h->is_connect = http_span_ieq(buf, h->method, "CONNECT");
                h->ps.state = S_TARGET_START;
                break;
            }
            if (!((c >= 'A' && c <= 'Z') || c == '-') ||
                method_match(buf + h->method.off, i + 1 - h->method.off) == 0)
                return fail(h, 400, "unknown method");
            break;
        case S_TARGET_START:
            if (c <= 0x20 || c >= 0x7f)
                return fail(h, 400, "invalid request-target");
            h->target.off = (uint32_t)i;
            h->ps.state = S_TARGET;
            break;
        case S_TARGET:
            if (c > 0x20 && c < 0x7f) {
                size_t j = i + 1;
                while (j < end && buf[j] > 0x20 && buf[j] < 0x7f)
                    j++;
                i = j - 1;
                break;
            }
            if (c == ' ') {
                h->target.len = (uint32_t)(i - h->target.off);
                h->ps.state = S_VERSION;
                h->ps.idx = 0;
                break;
            }
            if (c <= 0x20 || c >= 0x7f)
                return fail(h, 400, "invalid character in request-target");
            break;
        case S_VERSION:
        case S_RVERSION:
            if (h->ps.idx < sizeof(HTTP_VERSION_PREFIX) - 1) {
                if (c != (unsigned char)HTTP_VERSION_PREFIX[h->ps.idx])
                    return fail(h, 400, "invalid HTTP version");
            } else if (h->ps.idx == sizeof(HTTP_VERSION_PREFIX) - 1) {
                if (c != '0' && c != '1')
                    return fail(h, 400, "unsupported HTTP version");
                h->version_minor = c - '0';
            } else if (h->ps.state == S_VERSION) {
                if (c != '\r')
                    return fail(h, 400, "expected CRLF after version");
                h->ps.state = S_LINE_LF;
                break;
            } else {
                if (c != ' ')
                    return fail(h, 400, "expected space after version");
                h->ps.state = S_STATUS;
                h->ps.idx = 0;
                break;
            }
            h->ps.idx++;
            break;
        case S_STATUS:
            if (c < '0' || c > '9' || (h->ps.idx == 0 && c == '0'))
                return fail(h, 400, "invalid status code");
            h->status = h->status * 10 + (c - '0');
            if (++h->ps.idx == 3)
                h->ps.state = S_STATUS_END;
            break;
        case S_STATUS_END:
            h->reason.off = (uint32_t)i + 1;
            if (c == '\r') {
                h->reason.off = (uint32_t)i;
                h->ps.state = S_LINE_LF;
            } else if (c == ' ') {
                h->ps.state = S_REASON;
            } else {
                return fail(h, 400, "invalid status code");
            }
            break;
        case S_REASON:
            if (c == '\r') {
                h->reason.len = (uint32_t)(i - h->reason.off);
                h->ps.state = S_LINE_LF;
            } else if (!is_ows(c) && !is_vchar_or_obs(c)) {
                return fail(h, 400, "invalid character in reason phrase");
            }
            break;
        case S_LINE_LF:
            if (c != '\n')
                return fail(h, 400, "CR without LF");
            h->ps.state = S_FIELD_START;
            break;

        case S_FIELD_START:
            if (c == '\r') {
                h->ps.state = S_END_LF;
                break;
            }
            if (is_ows(c))
                return fail(h, 400, "whitespace at start of field line (obs-fold)");
            if (!is_tchar(c))
                return fail(h, 400, "invalid character in field name");
            if (h->nhdr == HTTP_MAX_HEADERS)
                return fail(h, 431, "too many header fields");
            h->hdr[h->nhdr].name.off = (uint32_t)i;
            h->ps.state = S_NAME;
            break;
        case S_NAME:
            if (is_tchar(c)) {
                /* The rest of the name in one run (the switch is per byte otherwise). */
                size_t j = i + 1;
                while (j < end && is_tchar((unsigned char)buf[j]))
                    j++;
                i = j - 1;
                break;
            }
            if (c == ':') {
                h->hdr[h->nhdr].name.len = (uint32_t)(i - h->hdr[h->nhdr].name.off);
                h->ps.state = S_VALUE_OWS;
            } else if (is_ows(c)) {
                return fail(h, 400, "whitespace before colon");
            } else if (!is_tchar(c)) {
                return fail(h, 400, "invalid character in field name");
            }
            break;
        case S_VALUE_OWS:
            if (is_ows(c))
                break;
            h->hdr[h->nhdr].value.off = (uint32_t)i;
            h->ps.value_end = (uint32_t)i;
            h->ps.state = S_VALUE;
            /* fall through */
        case S_VALUE:
            if (is_vchar_or_obs(c)) {
                /* A run of visible bytes in one go; OWS inside it is handled below. */
                size_t j = i + 1;
                while (j < end && is_vchar_or_obs((unsigned char)buf[j]))
                    j++;
                h->ps.value_end = (uint32_t)j;
                i = j - 1;
            } else if (c == '\r') {
                h->ps.state = S_VALUE_LF;
            } else if (!is_ows(c)) {
                return fail(h, 400, "invalid character in field value");
            }
            break;
        case S_VALUE_LF:
            if (c != '\n')
                return fail(h, 400, "CR without LF");
            h->hdr[h->nhdr].value.len = h->ps.value_end - h->hdr[h->nhdr].value.off;
            h->nhdr++;
            h->ps.state = S_FIELD_START;
            h->ps.off = (uint32_t)i + 1;
            if (field_done(buf, h) == HTTP_PARSE_ERROR)
                return HTTP_PARSE_ERROR;
            break;
        case S_END_LF:
            if (c != '\n')
                return fail(h, 400, "CR without LF");
            h->head_len = i + 1;
            h->ps.off = (uint32_t)i + 1;
            return head_done(h, req_is_head);
        case S_DONE:
        case S_ERROR:
            break;
        }
    }
    h->ps.off = (uint32_t)i;
    rc = HTTP_PARSE_AGAIN;
    if (len > max_head)
        rc = fail(h, 431, "header section too large");
    return rc;
}

int
http_parse_request(const char *buf, size_t len, size_t max_head, struct http_head *h)
{
    return parse_head(buf, len, max_head, 0, 0, h);
}

int
http_parse_response(const char *buf, size_t len, size_t max_head, int req_is_head,
                    struct http_head *h)
{
    return parse_head(buf, len, max_head, 1, req_is_head, h);
}

/* ---- chunked bodies ----------------------------------------------------- */

enum chunk_state {
    C_SIZE = 0, /* first hex digit of a chunk size */
    C_SIZE_MORE,
    C_EXT_NAME_START,
    C_EXT_NAME,
    C_EXT_VAL_START,
    C_EXT_VAL,
    C_EXT_QUOTED,
    C_EXT_QUOTED_ESC,
    C_EXT_QUOTED_END,
    C_SIZE_LF,
    C_DATA,
    C_DATA_CR,
    C_DATA_LF,
    C_TRAILER_START,
    C_TRAILER_NAME,
    C_TRAILER_VALUE,
    C_TRAILER_LF,
    C_END_LF,
    C_DONE,
    C_ERROR,
};

void
http_chunk_init(struct http_chunk *c)
{
    memset(c, 0, sizeof(*c));
}

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int
chunk_fail(struct http_chunk *c, const char *why, size_t at, size_t *consumed)
{
    c->state = C_ERROR;
    c->error = why;
    *consumed = at;
    return HTTP_PARSE_ERROR;
}

int
http_chunk_feed(struct http_chunk *c, const char *buf, size_t len, size_t *consumed)
{
    size_t i;

    *consumed = 0;
    if (c->state == C_DONE)
        return HTTP_PARSE_OK;
    if (c->state == C_ERROR)
        return HTTP_PARSE_ERROR;

    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)buf[i];
        int d;

        if (c->state == C_DATA) {
            size_t n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            if (c->on_data != NULL)
                c->on_data(c->arg, buf + i, n);
            c->remaining -= n;
            i += n - 1;
            if (c->remaining == 0)
                c->state = C_DATA_CR;
            continue;
        }
        if (c->state <= C_SIZE_LF && ++c->line_len > HTTP_CHUNK_MAX_LINE)
            return chunk_fail(c, "chunk size line too long", i, consumed);
        if (c->state >= C_TRAILER_START && ++c->line_len > HTTP_CHUNK_MAX_TRAILERS)
            return chunk_fail(c, "trailer section too large", i, consumed);

        switch ((enum chunk_state)c->state) {
        case C_SIZE:
        case C_SIZE_MORE:
            if ((d = hexval(ch)) >= 0) {
                if (c->remaining != 0 || d != 0)
                    c->ndigits++;
                if (c->ndigits > 16)
                    return chunk_fail(c, "chunk size overflow", i, consumed);
                c->remaining = (c->remaining << 4) | (uint64_t)d;
                c->state = C_SIZE_MORE;
            } else if (c->state == C_SIZE) {
                return chunk_fail(c, "invalid chunk size", i, consumed);
            } else if (ch == ';') {
                c->state = C_EXT_NAME_START;
            } else if (ch == '\r') {
                c->state = C_SIZE_LF;
            } else {
                return chunk_fail(c, "invalid character in chunk size", i, consumed);
            }
            break;
        case C_EXT_NAME_START:
            if (!is_tchar(ch))
                return chunk_fail(c, "invalid chunk extension", i, consumed);
            c->state = C_EXT_NAME;
            break;
        case C_EXT_NAME:
        case C_EXT_VAL:
            if (is_tchar(ch))
                break;
            if (ch == '=' && c->state == C_EXT_NAME)
                c->state = C_EXT_VAL_START;
            else if (ch == ';')
                c->state = C_EXT_NAME_START;
            else if (ch == '\r')
                c->state = C_SIZE_LF;
            else
                return chunk_fail(c, "invalid chunk extension", i, consumed);
            break;
        case C_EXT_VAL_START:
            if (ch == '"')
                c->state = C_EXT_QUOTED;
            else if (is_tchar(ch))
                c->state = C_EXT_VAL;
            else
                return chunk_fail(c, "invalid chunk extension", i, consumed);
            break;
        case C_EXT_QUOTED:
            if (ch == '"')
                c->state = C_EXT_QUOTED_END;
            else if (ch == '\\')
                c->state = C_EXT_QUOTED_ESC;
            else if (!is_ows(ch) && !is_vchar_or_obs(ch))
                return chunk_fail(c, "invalid chunk extension", i, consumed);
            break;
        case C_EXT_QUOTED_ESC:
            if (!is_ows(ch) && !is_vchar_or_obs(ch))
                return chunk_fail(c, "invalid chunk extension", i, consumed);
            c->state = C_EXT_QUOTED;
            break;
        case C_EXT_QUOTED_END:
            if (ch == ';')
                c->state = C_EXT_NAME_START;
            else if (ch == '\r')
                c->state = C_SIZE_LF;
            else
                return chunk_fail(c, "invalid chunk extension", i, consumed);
            break;
        case C_SIZE_LF:
            if (ch != '\n')
                return chunk_fail(c, "CR without LF after chunk size", i, consumed);
            c->line_len = 0;
            c->ndigits = 0;
            c->state = c->remaining == 0 ? C_TRAILER_START : C_DATA;
            break;
        case C_DATA_CR:
            if (ch != '\r')
                return chunk_fail(c, "chunk data not followed by CRLF", i, consumed);
            c->state = C_DATA_LF;
            break;
        case C_DATA_LF:
            if (ch != '\n')
                return chunk_fail(c, "chunk data not followed by CRLF", i, consumed);
            c->state = C_SIZE;
            break;
        case C_TRAILER_START:
            if (ch == '\r')
                c->state = C_END_LF;
            else if (is_tchar(ch))
                c->state = C_TRAILER_NAME;
            else
                return chunk_fail(c, "invalid trailer field", i, consumed);
            break;
        case C_TRAILER_NAME:
            if (ch == ':')
                c->state = C_TRAILER_VALUE;
            else if (!is_tchar(ch))
                return chunk_fail(c, "invalid trailer field", i, consumed);
            break;
        case C_TRAILER_VALUE:
            if (ch == '\r')
                c->state = C_TRAILER_LF;
            else if (!is_ows(ch) && !is_vchar_or_obs(ch))
                return chunk_fail(c, "invalid trailer field", i, consumed);
            break;
        case C_TRAILER_LF:
            if (ch != '\n')
                return chunk_fail(c, "CR without LF in trailer", i, consumed);
            c->state = C_TRAILER_START;
            break;
        case C_END_LF:
            if (ch != '\n')
                return chunk_fail(c, "CR without LF after trailers", i, consumed);
            c->state = C_DONE;
            *consumed = i + 1;
            return HTTP_PARSE_OK;
        case C_DATA:
        case C_DONE:
        case C_ERROR:
            break;
        }
    }
    *consumed = len;
    return HTTP_PARSE_AGAIN;
}

/* ---- request-target URLs ------------------------------------------------ */

/*
 * host[:port] or [v6][:port] from p[0..n) into u.  default_port 0 makes the
 * port mandatory.
 */
static int
parse_authority(const char *p, size_t n, uint16_t default_port, struct http_url *u)
{
    size_t i = 0, hl = 0;

    if (memchr(p, '@', n) != NULL)
        return -1;
    if (n > 0 && p[0] == '[') {
        struct in6_addr a6;
        const char *rb = memchr(p, ']', n);
        if (rb == NULL)
            return -1;
        hl = (size_t)(rb - p) - 1;
        if (hl == 0 || hl >= 46)
            return -1;
        for (size_t k = 0; k < hl; k++) {
            unsigned char c = (unsigned char)p[1 + k];
            if (hexval(c) < 0 && c != ':' && c != '.')
                return -1;
            u->host[k] = (char)lower(c);
        }
        u->host[hl] = '\0';
        if (inet_pton(AF_INET6, u->host, &a6) != 1)
            return -1;
        u->host_is_v6 = 1;
        i = hl + 2;
    } else {
        for (; i < n && p[i] != ':'; i++) {
            unsigned char c = (unsigned char)p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_'))
                return -1;
            if (c == '.' && (i == 0 || p[i - 1] == '.'))
                return -1; /* empty label */
            if (hl >= sizeof(u->host) - 1)
                return -1;
            u->host[hl++] = (char)lower(c);
        }
        if (hl > 0 && u->host[hl - 1] == '.')
            hl--;
        if (hl == 0)
            return -1;
        u->host[hl] = '\0';
        u->host_is_v6 = 0;
    }

    u->port = default_port;
    if (i == n)
        return default_port != 0 ? 0 : -1;
    if (p[i] != ':')
        return -1;
    i++;
    if (i == n)
        return default_port != 0 ? 0 : -1;
    if (n - i > 5)
        return -1;
    unsigned port = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        port = port * 10 + (unsigned)(p[i] - '0');
    }
    if (port == 0 || port > 65535)
        return -1;
    u->port = (uint16_t)port;
    return 0;
}

/* Visible ASCII only: no spaces, controls, DEL or non-ASCII bytes. */
static int
target_chars_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
            return 0;
    return 1;
}

/* p[0..n) is "[/path][?query][#fragment]" at buffer offset off. */
static void
split_path(const char *p, size_t n, uint32_t off, struct http_url *u)
{
    const char *hash = memchr(p, '#', n);
    size_t pl = hash ? (size_t)(hash - p) : n;
    const char *q = memchr(p, '?', pl);

    u->path.off = off;
    u->path.len = (uint32_t)pl;
    u->pathname.off = off;
    u->pathname.len = (uint32_t)(q ? (size_t)(q - p) : pl);
    if (q != NULL) {
        u->query.off = off + (uint32_t)(q - p) + 1;
        u->query.len = (uint32_t)(pl - (size_t)(q - p) - 1);
    } else {
        u->query.off = off + (uint32_t)pl;
        u->query.len = 0;
    }
}

int
http_url_parse_absolute(const char *buf, struct http_span target, struct http_url *u)
{
    const char *p = buf + target.off;
    size_t n = target.len, sl, a, ae;
    uint16_t defport;

    memset(u, 0, sizeof(*u));
    if (!target_chars_ok(p, n))
        return -1;
    for (sl = 0; sl < n && p[sl] != ':'; sl++)
        ;
    if (sl == 4 && strncasecmp(p, "http", 4) == 0)
        defport = 80;
    else if (sl == 5 && strncasecmp(p, "https", 5) == 0)
        defport = 443;
    else
        return -1;
    if (n < sl + 3 || p[sl + 1] != '/' || p[sl + 2] != '/')
        return -1;
    for (size_t k = 0; k < sl; k++)
        u->scheme[k] = (char)lower((unsigned char)p[k]);
    u->scheme[sl] = '\0';

    a = sl + 3;
    for (ae = a; ae < n && p[ae] != '/' && p[ae] != '?' && p[ae] != '#'; ae++)
        ;
    if (parse_authority(p + a, ae - a, defport, u) < 0)
        return -1;
    split_path(p + ae, n - ae, target.off + (uint32_t)ae, u);
    return 0;
}

int
http_url_parse_authority(const char *buf, struct http_span target, struct http_url *u)
{
    const char *p = buf + target.off;

    memset(u, 0, sizeof(*u));
    if (!target_chars_ok(p, target.len))
        return -1;
    if (parse_authority(p, target.len, 0, u) < 0)
        return -1;
    u->path.off = u->query.off = u->pathname.off = target.off + target.len;
    return 0;
}

int
http_url_parse_origin(const char *buf, struct http_span target, struct http_url *u)
{
    const char *p = buf + target.off;

    if (target.len == 0 || p[0] != '/' || !target_chars_ok(p, target.len))
        return -1;
    split_path(p, target.len, target.off, u);
    return 0;
}

int
http_pct_decode(const char *s, size_t n, char *out, size_t cap, unsigned flags, size_t *outlen)
{
    size_t r = 0, w = 0;

    while (r < n) {
        int hi, lo;
        unsigned char c = (unsigned char)s[r];

        if (c == '%' && r + 2 < n && (hi = hexval((unsigned char)s[r + 1])) >= 0 &&
            (lo = hexval((unsigned char)s[r + 2])) >= 0) {
            c = (unsigned char)(hi << 4 | lo);
            r += 3;
        } else if (c == '%' && (flags & HTTP_PCT_STRICT)) {
            return -1;
        } else {
            if (c == '+' && (flags & HTTP_PCT_PLUS))
                c = ' ';
            r++;
        }
        if (w >= cap || (c == '\0' && (flags & HTTP_PCT_STRICT)))
            return -1;
        out[w++] = (char)c;
    }
    *outlen = w;
    return 0;
}

int
http_host_matches(const char *buf, struct http_span value, const char *host, uint16_t port,
                  uint16_t default_port)
{
    struct http_url hu;
    memset(&hu, 0, sizeof(hu));
    if (!target_chars_ok(buf + value.off, value.len) ||
        parse_authority(buf + value.off, value.len, default_port, &hu) < 0)
        return 0;
    return hu.port == port && strcmp(hu.host, host) == 0;
}
