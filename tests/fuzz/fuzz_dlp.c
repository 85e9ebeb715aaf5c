/*
 * libFuzzer target: the DLP scanner (dlp_scan) with all its decoders:
 * Content-Encoding gzip / x-gzip / deflate (zlib or raw) in up to four
 * stages, JSON string escapes, form encoding, the built-in detectors (API
 * keys and PEM private keys too) and custom patterns.
 *
 * Input: two option bytes, then the body.
 *   byte 0, bits 0-2: Content-Encoding (none, gzip, deflate, x-gzip,
 *     "gzip, deflate", "identity, gzip", br, or 7: the text up to the first
 *     '\n' of what follows);
 *   bits 3-5: Content-Type (none, JSON, form, text/plain, multipart, a +json
 *     type with parameters, form in odd case, or 7: the next line, as above);
 *   bit 6: the target compresses the body with the codings named (choices
 *     1-5) and checks that the scan finds what the plain body holds;
 *   bit 7: custom patterns (dlp_patterns) loaded.
 *   byte 1, bits 0-1: max_decoded 64, 4096, 65536 or 1 MiB.
 */
#include <libconfig.h>
#include <string.h>
#include <zlib.h>

#include "aigate/rules/dlp.h"
#include "aigate/rules/policy.h"

#include "fuzz.h"

static const char *const encodings[] = {
    NULL, "gzip", "deflate", "x-gzip", "gzip, deflate", "identity, gzip", "br"};
static const char *const types[] = {NULL,
                                    "application/json",
                                    "application/x-www-form-urlencoded",
                                    "text/plain; charset=utf-8",
                                    "multipart/form-data; boundary=xyz",
                                    "application/vnd.api+json; charset=utf-8",
                                    " Application/X-WWW-Form-Urlencoded;charset=UTF-8"};
static const size_t max_decoded[] = {64, 4096, 65536, 1 << 20};

static struct dlp *custom;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char patterns[] =
        "dlp_patterns = ( { name = \"emp\"; regex = \"EMP-[0-9]{6}\"; },\n"
        "  { name = \"anchored\"; regex = \"^secret( [a-z]+)?$\"; },\n"
        "  { name = \"nul\"; regex = \"a b\"; },\n"
        "  { name = \"utf8\"; regex = \"\xec\xa3\xbc\xeb\xaf\xbc[0-9]+\"; } );\n";
    config_t cfg;
    char err[256];

    (void)argc;
    (void)argv;
    config_init(&cfg);
    if (!config_read_string(&cfg, patterns) ||
        (custom = dlp_load(config_lookup(&cfg, "dlp_patterns"), err, sizeof(err))) == NULL)
        abort();
    config_destroy(&cfg);
    return 0;
}

/* The next line of *p (up to '\n', which is skipped), at most 128 bytes. */
static const char *
take_line(const uint8_t **p, size_t *n, size_t *len)
{
    const uint8_t *nl = memchr(*p, '\n', *n < 128 ? *n : 128);
    const char *s = (const char *)*p;

    *len = nl ? (size_t)(nl - *p) : (*n < 128 ? *n : 128);
    *p += *len + (nl != NULL);
    *n -= *len + (nl != NULL);
    return s;
}

/* Compress in[0..n) with one coding into a new buffer; gzip or zlib-wrapped deflate. */
static unsigned char *
encode(const unsigned char *in, size_t n, int gzip, size_t *outlen)
{
    z_stream z;
    unsigned char *out;
    size_t cap;

    memset(&z, 0, sizeof(z));
    FUZZ_CHECK(deflateInit2(&z, 6, Z_DEFLATED, gzip ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    cap = deflateBound(&z, n) + 32;
    out = malloc(cap);
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
    *outlen = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

/*
 * The body compressed as Content-Encoding choice ce (1-5) says: codings are
 * applied in the order listed.  *fits: every stage's output (what the scanner
 * must inflate) is within max.
 */
static unsigned char *
encode_all(int ce, const unsigned char *body, size_t n, size_t max, size_t *outlen, int *fits)
{
    static const char *const stages[] = {"", "g", "d", "g", "gd", "g"};
    unsigned char *cur = malloc(n + 1), *next;

    memcpy(cur, body, n);
    *fits = n <= max;
    for (const char *s = stages[ce]; *s; s++) {
        next = encode(cur, n, *s == 'g', outlen);
        free(cur);
        cur = next;
        n = *outlen;
        *fits &= s[1] == '\0' || n <= max;
    }
    *outlen = n;
    return cur;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *ce, *ct;
    size_t celen, ctlen, max;
    int ce_choice, ct_choice, do_encode;
    const struct dlp *d;
    unsigned found;

    if (size < 2 || size > (1 << 20))
        return 0;
    ce_choice = data[0] & 7;
    ct_choice = (data[0] >> 3) & 7;
    do_encode = (data[0] >> 6) & 1;
    d = data[0] & 0x80 ? custom : NULL;
    max = max_decoded[data[1] & 3];
    data += 2;
    size -= 2;
    if (ce_choice == 7) {
        ce = take_line(&data, &size, &celen);
    } else {
        ce = encodings[ce_choice];
        celen = ce ? strlen(ce) : 0;
    }
    if (ct_choice == 7) {
        ct = take_line(&data, &size, &ctlen);
    } else {
        ct = types[ct_choice];
        ctlen = ct ? strlen(ct) : 0;
    }
    /* The body in its own allocation, so reading past it is caught. */
    char *body = malloc(size + 1);
    memcpy(body, data, size);
    found = dlp_scan(d, body, size, ce, celen, ct, ctlen, max);
    FUZZ_CHECK(d != NULL || found < (1u << POLICY_DLP_CUSTOM_FIRST));
    if (do_encode && ce_choice >= 1 && ce_choice <= 5) {
        size_t enclen;
        int fits;
        unsigned char *enc =
            encode_all(ce_choice, (const unsigned char *)body, size, max, &enclen, &fits);
        unsigned plain = dlp_scan(d, body, size, NULL, 0, ct, ctlen, max);
        unsigned got = dlp_scan(d, (const char *)enc, enclen, ce, celen, ct, ctlen, max);

        FUZZ_CHECK(!fits || got == plain);
        free(enc);
    }
    free(body);
    return 0;
}
