/*
 * Shadow-AI discovery (unlisted.h): which hosts of the audit log look like
 * AI services although the catalog does not name them.
 *
 * The name heuristic works on runs of letters, never on substrings of them,
 * except for "gpt" (no word of any language the logs are likely to hold
 * contains it): that is what keeps "mail", "detail", "chair", "airline" and
 * "shanghai" out while "chatgpt4free", "ai-writer" and "openai-proxy" come
 * in.  The word lists are short on purpose: a false positive costs a
 * security team a glance, a long list of generic words would bury the real
 * finds.
 */
#include "aigate/audit/unlisted.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/audit/auditidx.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/hostset.h"

#define UNLISTED_LINE_MAX 1024 /* longest line of the known list */
#define UNLISTED_USERS_SHOWN 8 /* users named per host; the rest are counted */

struct unlisted_known {
    struct hostset *set; /* pattern -> reason (a string in reasons, may be "") */
    char **reasons;
    size_t n, cap;
};

/* Runs of letters that are AI words on their own. */
static const char *const ul_words[] = {
    "ai",       "aigc",  "agi", "chat", "chatbot", "chatbots", "copilot",
    "copilots", "genai", "gpt", "llm",  "llms",    NULL,
};
/* Runs beginning or ending with one of these are AI names (chatgpt, gptzero, vllm). */
static const char *const ul_affixes[] = {"gpt", "llm", "copilot", "chatbot", "genai", "aigc", NULL};
/* "ai" + one of these: aichat, aiwriter, aitools. */
static const char *const ul_ai_tails[] = {
    "agent",    "agents", "app",       "apps",       "art",        "assistant", "avatar",
    "bot",      "bots",   "chat",      "code",       "coder",      "companion", "design",
    "detector", "doc",    "docs",      "gen",        "girlfriend", "hub",       "humanizer",
    "image",    "images", "img",       "lab",        "labs",       "model",     "models",
    "music",    "note",   "notes",     "novel",      "paint",      "pdf",       "photo",
    "photos",   "search", "story",     "studio",     "summarizer", "summary",   "text",
    "tool",     "tools",  "translate", "translator", "video",      "videos",    "voice",
    "write",    "writer", "writing",   NULL,
};
/* One of these + "ai": openai, talkai, noteai. */
static const char *const ul_ai_heads[] = {
    "ask",  "auto", "brain", "chat",  "code",  "copy",  "deep",  "doc",   "docs",   "easy",
    "fast", "free", "gen",   "get",   "hey",   "image", "learn", "magic", "math",   "mind",
    "my",   "note", "open",  "pdf",   "photo", "poly",  "smart", "story", "study",  "super",
    "talk", "text", "try",   "tutor", "video", "voice", "wiki",  "write", "writer", NULL,
};
/* "chat" + one of these: chatpdf, chatllm. */
static const char *const ul_chat_tails[] = {"ai",  "bot", "bots", "doc", "docs",
                                            "gpt", "llm", "pdf",  NULL};

static int
ul_in(const char *const *list, const char *s, size_t n)
{
    for (size_t i = 0; list[i]; i++)
        if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0)
            return 1;
    return 0;
}

/* s[0..n) is word w followed (tail) or preceded (!tail) by one of list. */
static int
ul_glued(const char *s, size_t n, const char *w, const char *const *list, int tail)
{
    size_t wl = strlen(w);

    if (n <= wl)
        return 0;
    if (tail)
        return memcmp(s, w, wl) == 0 && ul_in(list, s + wl, n - wl);
    return memcmp(s + n - wl, w, wl) == 0 && ul_in(list, s, n - wl);
}

/* Why the run of letters s[0..n) is an AI name, or NULL. */
static const char *
ul_run_why(const char *s, size_t n)
{
    if (ul_in(ul_words, s, n))
        return "an AI word";
    if (memmem(s, n, "gpt", 3))
        return "\"gpt\" in it";
    for (size_t i = 0; ul_affixes[i]; i++) {
        size_t al = strlen(ul_affixes[i]);

        if (n > al &&
            (memcmp(s, ul_affixes[i], al) == 0 || memcmp(s + n - al, ul_affixes[i], al) == 0))
            return "an AI word at its start or end";
    }
    if (ul_glued(s, n, "ai", ul_ai_tails, 1) || ul_glued(s, n, "ai", ul_ai_heads, 0) ||
        ul_glued(s, n, "chat", ul_chat_tails, 1))
        return "an AI word and a product word";
    return NULL;
}

static int
ul_is_ip(const char *host)
{
    return strchr(host, ':') != NULL || strspn(host, "0123456789.") == strlen(host);
}

/* The name heuristic (unlisted.h). */
static int
ul_name_why(const char *host, char *why, size_t cap)
{
    const char *tld = strrchr(host, '.');

    if (!*host || ul_is_ip(host))
        return 0;
    if (tld && strcmp(tld, ".ai") == 0) {
        snprintf(why, cap, "name: the .ai top-level domain");
        return 1;
    }
    for (const char *p = host; *p;) {
        const char *r;
        size_t n;

        while (*p && !(*p >= 'a' && *p <= 'z'))
            p++;
        for (r = p; *p >= 'a' && *p <= 'z'; p++)
            ;
        n = (size_t)(p - r);
        if (n == 0)
            continue;
        const char *w = ul_run_why(r, n);
        if (w) {
            snprintf(why, cap, "name: \"%.*s\", %s", (int)(n > 60 ? 60 : n), r, w);
            return 1;
        }
    }
    return 0;
}

int
unlisted_why(const struct unlisted_known *k, const char *host, char *why, size_t cap)
{
    void *reason;

    if (k && hostset_match_norm(k->set, host, strlen(host), &reason)) {
        snprintf(why, cap, "known AI domain%s%.200s", *(const char *)reason ? ": " : "",
                 (const char *)reason);
        return 1;
    }
    return ul_name_why(host, why, cap);
}

/* ---- the known list ---------------------------------------------------------------- */

void
unlisted_known_free(struct unlisted_known *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n; i++)
        free(k->reasons[i]);
    free(k->reasons);
    hostset_free(k->set);
    free(k);
}

size_t
unlisted_known_count(const struct unlisted_known *k)
{
    return k ? k->n : 0;
}

/* One line's domain and reason into k; -1 with why set. */
static int
ul_known_add(struct unlisted_known *k, char *line, const char **why)
{
    char name[HOSTSET_NAME_MAX + 1], *reason, *end;
    int wild, n;

    line += strspn(line, " \t");
    end = line + strcspn(line, " \t");
    reason = *end ? end + 1 : end;
    *end = '\0';
    reason += strspn(reason, " \t");
    for (end = reason + strlen(reason); end > reason && (end[-1] == ' ' || end[-1] == '\t');)
        *--end = '\0';
    if ((n = hostset_pattern_parse(line, name, &wild, why)) < 0)
        return -1;
    if (k->n == k->cap) {
        size_t nc = k->cap ? 2 * k->cap : 64;
        char **v = realloc(k->reasons, nc * sizeof(*v));
        if (!v)
            goto oom;
        k->reasons = v;
        k->cap = nc;
    }
    if (!(k->reasons[k->n] = strdup(reason)))
        goto oom;
    k->n++;
    /* "example.ai" covers the domain and every host under it, as the lists write domains */
    if (hostset_put(k->set, name, (size_t)n, wild, k->reasons[k->n - 1], NULL) < 0 ||
        (!wild && hostset_put(k->set, name, (size_t)n, 1, k->reasons[k->n - 1], NULL) < 0))
        goto oom;
    return 0;
oom:
    *why = "out of memory";
    return -1;
}

struct unlisted_known *
unlisted_known_load(const char *path, char *err, size_t errlen)
{
    struct unlisted_known *k = calloc(1, sizeof(*k));
    FILE *f = fopen(path, "r");
    char line[UNLISTED_LINE_MAX + 2];
    const char *why = "out of memory";
    unsigned lineno = 0;

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(k);
        return NULL;
    }
    if (!k || !(k->set = hostset_new()))
        goto fail;
    while (fgets(line, sizeof(line), f)) {
        size_t len = strlen(line);

        lineno++;
        if (len > UNLISTED_LINE_MAX) {
            why = "line too long";
            goto fail;
        }
        line[strcspn(line, "#\r\n")] = '\0';
        if (line[strspn(line, " \t")] == '\0')
            continue;
        if (ul_known_add(k, line, &why) < 0)
            goto fail;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        fclose(f);
        unlisted_known_free(k);
        return NULL;
    }
    fclose(f);
    return k;
fail:
    snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
    fclose(f);
    unlisted_known_free(k);
    return NULL;
}

/* ---- the report -------------------------------------------------------------------- */

struct ul_keep {
    const struct catalog *cat;
    const struct unlisted_known *k;
    size_t outside; /* hosts the catalog does not name */
};

static int
ul_keep(const char *host, void *arg)
{
    struct ul_keep *s = arg;
    char why[256];

    if (catalog_lookup(s->cat, host, strlen(host)) ||
        catalog_has_scoped(s->cat, host, strlen(host)))
        return 0;
    s->outside++;
    return unlisted_why(s->k, host, why, sizeof(why));
}

/* s with control bytes replaced: audit strings may hold anything. */
static void
ul_print(FILE *out, const char *s, int width)
{
    char clean[HOSTSET_NAME_MAX + 1];
    size_t j;

    for (j = 0; s[j] && j + 1 < sizeof(clean); j++)
        clean[j] = ((unsigned char)s[j] < 0x20 || s[j] == 0x7f) ? '?' : s[j];
    clean[j] = '\0';
    fprintf(out, "%-*s", width, clean);
}

int
unlisted_report(FILE *out, const struct auditidx *x, const struct catalog *cat,
                const struct unlisted_known *k)
{
    struct ul_keep s = {cat, k, 0};
    struct auditidx_host *h;
    size_t n;
    uint64_t lines, bad, bytes;

    if (auditidx_hosts(x, ul_keep, &s, &h, &n) < 0)
        return -1;
    auditidx_stats(x, &lines, &bad, &bytes);
    fprintf(out,
            "lines: %" PRIu64 " (unreadable: %" PRIu64 ")\n"
            "catalog: %s, %zu services; known AI domains outside it: %zu\n"
            "hosts outside the catalog: %zu, looking like AI services: %zu\n",
            lines, bad, *catalog_version(cat) ? catalog_version(cat) : "no catalog_version",
            catalog_count(cat), unlisted_known_count(k), s.outside, n);
    if (n)
        fprintf(out, "\n%9s %6s  %-40s %s\n", "requests", "users", "host", "why");
    for (size_t i = 0; i < n; i++) {
        char why[256];

        unlisted_why(k, h[i].host, why, sizeof(why));
        fprintf(out, "%9" PRIu64 " %6zu  ", h[i].requests, h[i].nwho);
        ul_print(out, h[i].host, 40);
        fprintf(out, " %s\n%18s", why, "");
        for (size_t u = 0; u < h[i].nwho && u < UNLISTED_USERS_SHOWN; u++) {
            fprintf(out, "%s", u ? ", " : "");
            ul_print(out, h[i].who[u].name, 0);
            fprintf(out, " %" PRIu64, h[i].who[u].requests);
        }
        if (h[i].nwho > UNLISTED_USERS_SHOWN)
            fprintf(out, ", and %zu more", h[i].nwho - UNLISTED_USERS_SHOWN);
        fputc('\n', out);
    }
    auditidx_hosts_free(h, n);
    return 0;
}
