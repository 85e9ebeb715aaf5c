/*
 * Shadow-AI discovery: `aigate --report --unlisted FILE...` (SPEC 2).  The
 * hosts of the audit log that no catalog entry names (with or without
 * paths) but that look like AI services, with their requests and users.
 *
 * A host looks like an AI service when
 *   - a shipped list of known AI domains left out of the catalog names it
 *     (rules/ai-unlisted.txt: a line "example.com" covers that domain and
 *     every host under it; text after the domain is the reason shown), or
 *   - its name does (unlisted_looks_ai): the heuristic reads each label of
 *     the host as runs of letters ("my-ai2-app" is "my", "ai", "app") and
 *     fires on
 *       * a run that is one of the AI words (ai, llm, gpt, chat, chatbot,
 *         copilot, genai, aigc, agi, ...);
 *       * a run that begins or ends with one of the unambiguous ones (gpt,
 *         llm, copilot, chatbot, genai, aigc): chatgpt, gptzero, vllm;
 *       * a run that is an AI word glued to one of a few product words
 *         ("ai" + chat, writer, tools, art, video ...; chat, talk, open,
 *         note, write ... + "ai"): aichat, aiwriter, openai, talkai;
 *       * the .ai top-level domain.
 *     A word hidden inside another is not enough ("mail", "chair",
 *     "detail", "airline", "shanghai", "chateau", "allmusic" are not AI).
 * IP literals never look like anything.
 *
 * Pure except unlisted_known_load() (reads a file) and unlisted_report()
 * (writes to a stream).
 */
#ifndef AIGATE_UNLISTED_H
#define AIGATE_UNLISTED_H

#include <stddef.h>
#include <stdio.h>

struct auditidx;
struct catalog;
struct unlisted_known;

/* The known list's file name, looked for beside the catalog's file. */
#define UNLISTED_KNOWN_FILE "ai-unlisted.txt"

/*
 * Read a list of known AI domains: one domain a line ("example.ai", or
 * "*.example.ai" for the hosts under it only), optionally followed by white
 * space and a reason; '#' starts a comment.  Returns the list, or NULL with
 * "FILE:LINE: message" (or "FILE: why") in err.  Free with
 * unlisted_known_free().
 */
struct unlisted_known *unlisted_known_load(const char *path, char *err, size_t errlen);
void unlisted_known_free(struct unlisted_known *k);
/* Domains read. */
size_t unlisted_known_count(const struct unlisted_known *k);

/*
 * Why host (normalised: lower case, no port) looks like an AI service,
 * written into why (e.g. "name: \"gpt\" in chatgpt4free"), or 0 if it does
 * not.  k may be NULL (the name heuristic only).
 */
int unlisted_why(const struct unlisted_known *k, const char *host, char *why, size_t cap);

/*
 * The --unlisted report for the hosts x counted (auditidx_track_hosts):
 * those neither catalog_lookup() nor catalog_has_scoped() name for which
 * unlisted_why() holds, most requests first, with requests, users (the
 * busiest first) and why.  Returns 0, or -1 when out of memory.
 */
int unlisted_report(FILE *out, const struct auditidx *x, const struct catalog *cat,
                    const struct unlisted_known *k);

#endif
