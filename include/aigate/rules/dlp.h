/*
 * Personal data in request bodies and WebSocket messages (SPEC 5a, 6a):
 * Korean resident registration numbers, card numbers, e-mail addresses, Korean
 * phone numbers, secrets (API keys of well-known formats, PEM private keys)
 * and custom POSIX ERE patterns from the top-level `dlp_patterns` list.
 *
 * Pure: no I/O.  dlp_scan() is handed a whole (bounded) body once; it undoes
 * Content-Encoding, scans the text as it is and once more after undoing JSON
 * string escapes and form encoding, and returns the kinds found as the
 * POLICY_DLP_* bits of policy.h (custom pattern i is POLICY_DLP_CUSTOM(i), i
 * being its index in dlp_patterns, the same index policy_load() uses).  The
 * built-in detectors are hand-written and linear in the body's length.
 *
 * A struct dlp is immutable after dlp_load() and may be shared by threads
 * (regexec() is thread-safe on a shared regex_t).
 */
#ifndef AIGATE_DLP_H
#define AIGATE_DLP_H

#include <libconfig.h>
#include <stddef.h>

struct dlp;

/*
 * Compile dlp_patterns = ( { name = "NAME"; regex = "ERE"; }, ... ), at most
 * POLICY_DLP_CUSTOM_MAX entries.  NULL (no list) gives the built-in detectors
 * only.  On error returns NULL with "FILE:LINE: message" in err.  The caller
 * owns the result.
 */
struct dlp *dlp_load(const config_setting_t *dlp_patterns, char *err, size_t errlen);
void dlp_free(struct dlp *d);

/*
 * The POLICY_DLP_* bits of the kinds found in body[0..len).  content_encoding
 * and content_type are the header values (not NUL-terminated; NULL if absent).
 *
 * Content-Encoding: gzip, x-gzip and deflate (zlib-wrapped or raw) are undone,
 * each stage producing at most max_decoded bytes; a stream that inflates
 * further is cut there and the prefix scanned, and one that is corrupt (or
 * not compressed at all despite its label) is scanned up to the damage and
 * as the bytes came.  Any other coding (br, zstd, compress, ...) or more than
 * four stages: the bytes are scanned as they came (a label must not hide
 * plain text).  identity bodies are scanned in full (the caller bounds len).
 *
 * The decoded text is scanned as it is, and again after normalising: for
 * application/x-www-form-urlencoded or a body that looks like a query string,
 * %XX and '+' are decoded (then JSON escapes if any remain); for a JSON
 * content type or a body starting with '{' or '[', JSON string escapes
 * (\uHHHH with surrogate pairs, \n, \", \/ ...) are undone.  multipart
 * bodies are scanned as they are.  Custom patterns run on the normalised
 * text (NUL bytes in it read as spaces; ^ and $ anchor at its ends).
 * Allocates at most about twice the decoded size; on allocation failure
 * returns what was found so far.
 */
unsigned dlp_scan(const struct dlp *d, const char *body, size_t len, const char *content_encoding,
                  size_t celen, const char *content_type, size_t ctlen, size_t max_decoded);

/*
 * Name of bit bit_index: "kr-rrn", "credit-card", "email", "phone-kr",
 * "api-key", "private-key" or "custom:NAME" (owned by d).  NULL for a bit with no kind.  d may be
 * NULL.
 */
const char *dlp_kind_name(unsigned bit_index, const struct dlp *d);

/*
 * Fill names[0..max) with the names of mask's bits in ascending order (for the
 * audit "dlp" array); returns how many were stored.  Bits with no kind are
 * skipped.
 */
size_t dlp_kinds(unsigned mask, const struct dlp *d, const char **names, size_t max);

#endif
