/*
 * The pages the proxy answers with itself: block, caution (warn) and error.
 *
 * Templates are HTML files in pages_dir (block.html, caution.html,
 * error.html) with {{name}} placeholders; a missing file falls back to a
 * built-in default, so an empty config works.  Each template is parsed once,
 * at load, into literal and placeholder segments: rendering only copies.
 *
 * Every value is HTML-escaped (& < > " ') and stripped of control
 * characters, which makes it safe in element text and in quoted attribute
 * values.  It is not safe inside <script>, <style>, unquoted attributes or
 * as a URL attribute (href/src) value: templates must not put values there.
 *
 * struct pages is immutable after pages_load() and shared by all workers.
 */
#ifndef AIGATE_PAGES_H
#define AIGATE_PAGES_H

#include <stddef.h>

struct evbuffer;
struct pages;

enum page_kind { PAGE_BLOCK = 0, PAGE_CAUTION, PAGE_ERROR };
#define PAGE_KINDS 3

/* Values for the placeholders; NULL renders as empty, except lang (NULL ->
 * "en") and status (0 -> empty). */
struct page_vars {
    const char *service, *user, *rule, *reason, *host, *url, *token, *title, *detail, *method,
        *category, *lang;
    int status;
};

/* dir may be NULL or name a missing folder (built-in defaults for all).
 * Errors read "FILE:LINE: message". */
struct pages *pages_load(const char *dir, char *err, size_t errlen);
void pages_free(struct pages *p);

/* 1 if the template for kind came from a file, 0 if built in. */
int pages_from_file(const struct pages *p, enum page_kind kind);

/* Append the HTML page (UTF-8) to out.  0 or -1 (out of memory). */
int pages_render(struct evbuffer *out, const struct pages *p, enum page_kind kind,
                 const struct page_vars *v);
/* Append the text/plain variant, for clients that do not accept HTML. */
int pages_render_text(struct evbuffer *out, enum page_kind kind, const struct page_vars *v);

/* HTML-escape src into dst (cap bytes, always NUL-terminated when cap > 0,
 * never cutting an entity).  Returns the length the whole escaped string
 * needs (excluding the NUL), like snprintf: >= cap means truncated. */
size_t pages_html_escape(char *dst, size_t cap, const char *src);

/* 1 if Accept-Language prefers Korean over English (highest q wins, ties go to the first). */
int pages_prefers_korean(const char *value, size_t len);

/*
 * The text a page shows for the English title or detail en, in lang ("ko"
 * or "en"/NULL): its Korean translation when the catalog has one, else en.
 * The result is static or en itself.
 */
const char *pages_text(const char *en, const char *lang);

/* 1 if an Accept header value lists text/html with a non-zero q. */
int pages_client_wants_html(const char *accept, size_t len);

#endif
