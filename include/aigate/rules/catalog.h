/*
 * The catalog of generative-AI services (rules/services.conf): which hosts
 * belong to which service, its category and vendor country.
 *
 * A service that lives on a path of a shared host (huggingface.co/chat)
 * carries `paths`: on its hosts, the requests whose path matches one of them
 * belong to it, the others to an entry naming the host without paths (or to
 * none).  Such path-scoped entries decide only where the request itself is
 * seen: catalog_lookup() (a CONNECT, a host) never returns them,
 * catalog_lookup_path() (a request) does.
 *
 * Immutable after catalog_load(); safe to share between threads.  Lookup
 * cost depends on the number of labels in the host and the paths listed for
 * that host, not on catalog size (hostset.h: each host pattern maps to its
 * host-level service and its own short list of path-scoped services).  The
 * struct service pointers it hands out live as long as the catalog.
 */
#ifndef AIGATE_CATALOG_H
#define AIGATE_CATALOG_H

#include <libconfig.h>
#include <stddef.h>

struct service {
    char *id;             /* lowercase [a-z0-9-], unique */
    char *name;           /* display name */
    char *category;       /* chat | api | image | code | search | agent | other */
    char *vendor_country; /* ISO 3166 alpha-2, upper case */
    char **hosts;         /* patterns as normalised, "*." kept */
    size_t nhosts;
    char **paths; /* globs on the path ('*' any run, '/' included); NULL: the whole host */
    size_t npaths;
    char checked[11]; /* "YYYY-MM-DD" its hosts were last verified; "" if not given */
    int line;         /* where the entry starts in its file */
    size_t index;     /* position in the catalog: 0 .. catalog_count() - 1 */
};

struct catalog;

/*
 * Build a catalog from the `services` list (NULL: an empty catalog).  The
 * optional `catalog_version = "YYYY-MM-DD"` beside it (same parent setting) is
 * read too.  `checked` (per entry) and `catalog_version` are optional here, so
 * an operator's own catalog needs neither; when given they must be real dates.
 * On error returns NULL and writes "FILE:LINE: message" into err.
 */
struct catalog *catalog_load(const config_setting_t *services, char *err, size_t errlen);
void catalog_free(struct catalog *c);

/*
 * The service owning host as a whole (as a client sent it: any case,
 * optional port, "[v6]:port", trailing dot), or NULL if no entry without
 * paths names it.  Exact hosts beat wildcards; the longest wildcard suffix
 * wins.  What a CONNECT belongs to.
 */
const struct service *catalog_lookup(const struct catalog *c, const char *host, size_t len);

/*
 * The service a request for path[0..pathlen) (without query) on host
 * belongs to: going from the most specific pattern naming host to the
 * least, the first path-scoped entry of that pattern (in file order) with a
 * path matching, else that pattern's entry without paths.  NULL if none.
 * With path NULL it is catalog_lookup().
 */
const struct service *catalog_lookup_path(const struct catalog *c, const char *host, size_t len,
                                          const char *path, size_t pathlen);

/* 1 if a path-scoped entry names host (such a host is intercepted, SPEC 4). */
int catalog_has_scoped(const struct catalog *c, const char *host, size_t len);

/*
 * Glob as the catalog's `paths` and the policy's `paths` and `query` use
 * it: '*' matches any run of bytes ('/' included), every other byte itself.
 * 1 if pat (NUL-terminated) matches s[0..n).
 */
int catalog_glob(const char *pat, const char *s, size_t n);

size_t catalog_count(const struct catalog *c);
/* The file `services` was read from (as libconfig names it), or "" if unknown. */
const char *catalog_file(const struct catalog *c);
/* The file's catalog_version ("YYYY-MM-DD"), or "" if it has none. */
const char *catalog_version(const struct catalog *c);
/* The i-th service in file order, NULL past the end. */
const struct service *catalog_service(const struct catalog *c, size_t i);
/* The service with this id, or NULL. */
const struct service *catalog_find_id(const struct catalog *c, const char *id);

/* 1 if s is one of the categories a service may have. */
int catalog_category_valid(const char *s);

#endif
