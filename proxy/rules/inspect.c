/*
 * Body collection for the dlp scan (see inspect.h).  Linear in the body:
 * every byte is looked at once, copied at most once.
 */
#include "aigate/rules/inspect.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/rules/dlp.h"

struct inspect {
    enum http_body body;
    uint64_t length; /* HTTP_BODY_LENGTH: the declared length */
    size_t max;      /* payload bytes kept */
    size_t raw_max;  /* raw bytes looked at before giving up waiting */
    size_t seen;     /* raw body bytes already fed to the decoder */
    struct http_chunk ck;
    char *buf;
    size_t len;
    int ready;
};

static void
inspect_add(void *arg, const char *p, size_t n)
{
    struct inspect *in = arg;
    size_t room = in->max - in->len;
    if (n > room)
        n = room;
    memcpy(in->buf + in->len, p, n);
    in->len += n;
}

struct inspect *
inspect_new(enum http_body body, uint64_t length, size_t max)
{
    struct inspect *in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    in->body = body;
    in->length = length;
    in->max = max;
    /* A chunked body carries framing: allow for it when bounding what we wait for. */
    in->raw_max = body == HTTP_BODY_CHUNKED ? max + max / 4 + 65536 : max;
    http_chunk_init(&in->ck);
    in->ck.on_data = inspect_add;
    in->ck.arg = in;
    return in;
}

void
inspect_free(struct inspect *in)
{
    if (!in)
        return;
    free(in->buf);
    free(in);
}

size_t
inspect_raw_max(const struct inspect *in)
{
    return in->raw_max;
}

int
inspect_feed(struct inspect *in, struct evbuffer *input, size_t head_len, int eof)
{
    if (in->ready)
        return INSPECT_READY;
    size_t total = evbuffer_get_length(input);
    size_t have = total > head_len ? total - head_len : 0;
    if (in->body == HTTP_BODY_LENGTH) {
        /* The length says when it is all here: copy it once. */
        size_t want = in->length < in->max ? (size_t)in->length : in->max;
        if (have < want && !eof)
            return INSPECT_MORE;
        size_t n = have < want ? have : want;
        if (!(in->buf = malloc(n + 1)))
            n = 0;
        struct evbuffer_ptr pos;
        evbuffer_ptr_set(input, &pos, head_len, EVBUFFER_PTR_SET);
        if (n)
            evbuffer_copyout_from(input, &pos, in->buf, n);
        in->len = n;
        in->ready = 1;
        return INSPECT_READY;
    }
    if (!in->buf && !(in->buf = malloc(in->max + 1))) {
        in->ready = 1;
        return INSPECT_READY;
    }
    size_t upto = have < in->raw_max ? have : in->raw_max;
    int rc = HTTP_PARSE_AGAIN;
    while (in->seen < upto && rc == HTTP_PARSE_AGAIN && in->len < in->max) {
        struct evbuffer_iovec vec[16];
        struct evbuffer_ptr pos;
        evbuffer_ptr_set(input, &pos, head_len + in->seen, EVBUFFER_PTR_SET);
        int nv = evbuffer_peek(input, (ev_ssize_t)(upto - in->seen), &pos, vec, 16);
        if (nv <= 0)
            break;
        for (int i = 0; i < nv && i < 16 && rc == HTTP_PARSE_AGAIN; i++) {
            size_t n = vec[i].iov_len, used = 0;
            if (n > upto - in->seen)
                n = upto - in->seen;
            rc = http_chunk_feed(&in->ck, vec[i].iov_base, n, &used);
            in->seen += used;
            if (in->seen >= upto)
                break;
        }
    }
    if (rc != HTTP_PARSE_AGAIN || in->len >= in->max || in->seen >= in->raw_max || eof) {
        in->ready = 1;
        return INSPECT_READY;
    }
    return INSPECT_MORE;
}

/* The values of every header line named name, each followed by ',', appended at out. */
static size_t
header_join(char *out, const char *hb, const struct http_head *h, const char *name)
{
    size_t n = 0;
    for (unsigned i = 0; i < h->nhdr; i++)
        if (http_span_ieq(hb, h->hdr[i].name, name)) {
            memcpy(out + n, hb + h->hdr[i].value.off, h->hdr[i].value.len);
            n += h->hdr[i].value.len;
            out[n++] = ',';
        }
    return n;
}

unsigned
inspect_scan(struct inspect *in, const struct dlp *d, const char *hb, const struct http_head *h)
{
    char *ce = NULL;
    size_t celen = 0;
    unsigned cen = 0, ctn = 0, cti = 0;
    for (unsigned i = 0; i < h->nhdr; i++) {
        if (http_span_ieq(hb, h->hdr[i].name, "Content-Encoding") ||
            http_span_ieq(hb, h->hdr[i].name, "Transfer-Encoding")) {
            celen += h->hdr[i].value.len + 1;
            cen++;
        } else if (http_span_ieq(hb, h->hdr[i].name, "Content-Type")) {
            ctn++;
            cti = i;
        }
    }
    if (cen && !(ce = malloc(celen)))
        return 0;
    if (cen) {
        size_t te_at = celen = header_join(ce, hb, h, "Content-Encoding");
        celen += header_join(ce + celen, hb, h, "Transfer-Encoding");
        /* The chunk parser undid the last transfer coding, chunked (the parser insists on it). */
        if (celen > te_at)
            for (celen--; celen > te_at && ce[celen - 1] != ','; celen--)
                ;
    }
    unsigned mask = dlp_scan(d, in->buf ? in->buf : "", in->len, ce, celen,
                             ctn == 1 ? hb + h->hdr[cti].value.off : NULL,
                             ctn == 1 ? h->hdr[cti].value.len : 0, in->max);
    free(ce);
    return mask;
}
