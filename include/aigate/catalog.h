/*
 * The catalog of generative-AI services (rules/services.conf): which hosts
 * belong to which service, its category and vendor country.
 *
 * Immutable after catalog_load(); safe to share between threads.  Lookup
 * cost depends on the number of labels in the host, not on catalog size
 * (hostset.h).  The struct service pointers it hands out live as long as the
 * catalog.
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
 * The service owning host (as a client sent it: any case, optional port,
 * "[v6]:port", trailing dot), or NULL if it is not a catalogued AI host.
 * Exact hosts beat wildcards; the longest wildcard suffix wins.
 */
const struct service *catalog_lookup(const struct catalog *c, const char *host, size_t len);

size_t catalog_count(const struct catalog *c);
/* The file's catalog_version ("YYYY-MM-DD"), or "" if it has none. */
const char *catalog_version(const struct catalog *c);
/* The i-th service in file order, NULL past the end. */
const struct service *catalog_service(const struct catalog *c, size_t i);
/* The service with this id, or NULL. */
const struct service *catalog_find_id(const struct catalog *c, const char *id);

/* 1 if s is one of the categories a service may have. */
int catalog_category_valid(const char *s);

#endif
