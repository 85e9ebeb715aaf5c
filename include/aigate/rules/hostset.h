/*
 * Host-name pattern sets: the matching engine shared by the service catalog
 * and the policy's `hosts` conditions.
 *
 * A pattern is either an exact host ("chat.example.com") or a wildcard
 * ("*.example.com") that matches every subdomain but not the bare domain.
 * Patterns are stored normalised (lower case, no trailing dot) in one
 * open-addressing hash keyed by (name, wildcard flag).  A lookup tries the
 * exact host, then each parent suffix as a wildcard, longest first, so the
 * most specific pattern wins and the cost depends on the number of labels in
 * the host, never on the size of the set.
 *
 * Keys are opaque strings to the hash itself, so hostset_put/hostset_get also
 * serve as a plain string -> pointer map (policy.c indexes users and groups
 * with them).  Stored data pointers are borrowed, never freed by the set.
 */
#ifndef AIGATE_HOSTSET_H
#define AIGATE_HOSTSET_H

#include <stddef.h>

/* Longest host name we normalise (RFC 1035: 253 + trailing dot, with slack). */
#define HOSTSET_NAME_MAX 255
/* Most keys one host can match: the exact name plus one wildcard per parent. */
#define HOSTSET_MATCH_MAX (HOSTSET_NAME_MAX / 2 + 1)

struct hostset;

struct hostset *hostset_new(void);
void hostset_free(struct hostset *s);
size_t hostset_count(const struct hostset *s);

/*
 * Validate and normalise a pattern as written in a config file: lower-cased,
 * trailing dot removed, labels of [a-z0-9_-] of 1..63 bytes, "*." allowed
 * only as the whole first label.  Writes the name without "*." into out
 * (HOSTSET_NAME_MAX + 1 bytes) and sets *wildcard.  Returns its length, or -1
 * with *why set to a static description of the problem.
 */
int hostset_pattern_parse(const char *pattern, char *out, int *wildcard, const char **why);

/*
 * Normalise a host as a client sent it (Host header, CONNECT authority,
 * URL authority): drops ":port" or the brackets and port of "[v6]:port",
 * lower-cases, removes one trailing dot.  out holds HOSTSET_NAME_MAX + 1
 * bytes.  Returns the length, or -1 if the host is empty or too long.
 */
int hostset_host_normalise(const char *host, size_t len, char *out);

/*
 * Insert name (already normalised) with its data.  Returns 0 when added, 1 if
 * the key was already present (the set is unchanged and *prev, if not NULL,
 * receives the stored data), -1 when out of memory.
 */
int hostset_put(struct hostset *s, const char *name, size_t len, int wildcard, void *data,
                void **prev);
/* Data stored under exactly this key, or NULL. */
void *hostset_get(const struct hostset *s, const char *name, size_t len, int wildcard);

/*
 * Most specific pattern matching an already normalised host: an exact entry,
 * else the longest wildcard suffix.  Returns 1 with *data set, or 0.
 */
int hostset_match_norm(const struct hostset *s, const char *host, size_t len, void **data);
/*
 * Data of every key matching an already normalised host, most specific
 * first, at most max of them (a host has at most HOSTSET_NAME_MAX / 2 + 1
 * labels).  Returns how many were stored in out.
 */
size_t hostset_match_all(const struct hostset *s, const char *host, size_t len, void **out,
                         size_t max);
/* The same for a raw host (port, case, trailing dot tolerated). */
int hostset_match(const struct hostset *s, const char *host, size_t len, void **data);

#endif
