/*
 * The AI service catalog: services.conf -> an immutable table of services and
 * a hostset mapping every host pattern to a struct cat_host: the service
 * naming that pattern without paths, and the services naming it with paths.
 *
 * Invariants after catalog_load(): ids are unique, every host pattern belongs
 * to at most one service without paths and to any number of path-scoped
 * ones (each once), categories are from the fixed set, countries are two
 * upper-case letters.  Nothing is allocated on lookup.
 */
#include "aigate/rules/catalog.h"
#include "aigate/core/cfgerr.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/rules/hostset.h"

/* What one host pattern maps to. */
struct cat_host {
    const struct service *svc;     /* the entry without paths, NULL if none */
    const struct service **scoped; /* entries with paths, in file order */
    size_t nscoped;
};

struct catalog {
    struct service *v;
    size_t n;
    struct hostset *hosts; /* pattern -> struct cat_host * */
    struct hostset *ids;   /* id -> struct service * */
    struct cat_host **hv;  /* every struct cat_host, for freeing */
    size_t nh, caph;
    size_t nscoped;   /* services with paths */
    char version[11]; /* catalog_version, "" if none */
    char *file;       /* where `services` was read from, NULL if unknown */
};

static const char *const cat_categories[] = {"chat",   "api",   "image", "code",
                                             "search", "agent", "other", NULL};
static const char *const cat_keys[] = {"id",    "name",    "category", "vendor_country",
                                       "hosts", "checked", "paths",    NULL};

static void cat_err(char *err, size_t errlen, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
cat_err(char *err, size_t errlen, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfgerr_vset(err, errlen, s, "", fmt, ap);
    va_end(ap);
}

int
catalog_category_valid(const char *s)
{
    for (size_t i = 0; cat_categories[i]; i++)
        if (strcmp(s, cat_categories[i]) == 0)
            return 1;
    return 0;
}

static int
cat_id_valid(const char *s)
{
    if (!*s || *s == '-')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return 0;
    return 1;
}

/* 1 if s is a real calendar date written "YYYY-MM-DD", year 2000 to 9999. */
static int
cat_date_valid(const char *s)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = 0, m, d;

    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !(s[i] >= '0' && s[i] <= '9'))
            return 0;
    for (int i = 0; i < 4; i++)
        y = y * 10 + (s[i] - '0');
    m = (s[5] - '0') * 10 + (s[6] - '0');
    d = (s[8] - '0') * 10 + (s[9] - '0');
    if (y < 2000 || m < 1 || m > 12 || d < 1)
        return 0;
    if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return d <= 29;
    return d <= mdays[m - 1];
}

/*
 * An optional date member: absent leaves out[] empty; present must be a string
 * holding a real "YYYY-MM-DD" date.  id: the service's `checked`, or NULL for
 * the file's `catalog_version`.
 */
static int
cat_date(const config_setting_t *m, const char *id, char out[11], char *err, size_t errlen)
{
    const char *v;

    out[0] = '\0';
    if (!m)
        return 0;
    if (config_setting_type(m) != CONFIG_TYPE_STRING ||
        !cat_date_valid(v = config_setting_get_string(m))) {
        if (id)
            cat_err(err, errlen, m, "service \"%s\": checked must be a date \"YYYY-MM-DD\"", id);
        else
            cat_err(err, errlen, m, "catalog_version must be a date \"YYYY-MM-DD\"");
        return -1;
    }
    memcpy(out, v, 11);
    return 0;
}

/* A required string member of e, duplicated into *out. */
static int
cat_string(const config_setting_t *e, const char *key, const char *id, char **out, char *err,
           size_t errlen)
{
    const config_setting_t *m = config_setting_get_member(e, key);

    if (!m) {
        cat_err(err, errlen, e, "service \"%s\": missing \"%s\"", id, key);
        return -1;
    }
    if (config_setting_type(m) != CONFIG_TYPE_STRING) {
        cat_err(err, errlen, m, "service \"%s\": \"%s\" must be a string", id, key);
        return -1;
    }
    if (!(*out = strdup(config_setting_get_string(m)))) {
        cat_err(err, errlen, m, "out of memory");
        return -1;
    }
    return 0;
}

/* The struct cat_host of pattern name (made when new); NULL when out of memory. */
static struct cat_host *
cat_host_get(struct catalog *c, const char *name, size_t n, int wild)
{
    struct cat_host *h = hostset_get(c->hosts, name, n, wild);

    if (h)
        return h;
    if (c->nh == c->caph) {
        size_t nc = c->caph ? 2 * c->caph : 64;
        struct cat_host **v = realloc(c->hv, nc * sizeof(*v));

        if (!v)
            return NULL;
        c->hv = v;
        c->caph = nc;
    }
    if (!(h = calloc(1, sizeof(*h))))
        return NULL;
    c->hv[c->nh++] = h;
    if (hostset_put(c->hosts, name, n, wild, h, NULL) != 0)
        return NULL;
    return h;
}

/* File svc under pattern name: as its entry without paths, or as one more path-scoped one. */
static int
cat_host_attach(struct cat_host *h, struct service *svc, const config_setting_t *hs,
                const char *shown, char *err, size_t errlen)
{
    const struct service *other = h->svc;

    if (svc->npaths) {
        for (size_t i = 0; i < h->nscoped; i++)
            if (h->scoped[i] == svc) {
                cat_err(err, errlen, hs, "service \"%s\": host \"%s\" is listed twice", svc->id,
                        shown);
                return -1;
            }
        const struct service **v = realloc(h->scoped, (h->nscoped + 1) * sizeof(*v));
        if (!v) {
            cat_err(err, errlen, hs, "out of memory");
            return -1;
        }
        h->scoped = v;
        h->scoped[h->nscoped++] = svc;
        return 0;
    }
    if (other == svc)
        cat_err(err, errlen, hs, "service \"%s\": host \"%s\" is listed twice", svc->id, shown);
    else if (other)
        cat_err(err, errlen, hs, "host \"%s\" is listed by both \"%s\" (line %d) and \"%s\"", shown,
                other->id, other->line, svc->id);
    else
        h->svc = svc;
    return other ? -1 : 0;
}

static int
cat_add_host(struct catalog *c, struct service *svc, const config_setting_t *h, char *err,
             size_t errlen)
{
    char name[HOSTSET_NAME_MAX + 1];
    const char *why, *text;
    struct cat_host *ch;
    int wild, n;

    if (config_setting_type(h) != CONFIG_TYPE_STRING) {
        cat_err(err, errlen, h, "service \"%s\": hosts must be strings", svc->id);
        return -1;
    }
    text = config_setting_get_string(h);
    if ((n = hostset_pattern_parse(text, name, &wild, &why)) < 0) {
        cat_err(err, errlen, h, "service \"%s\": host \"%s\": %s", svc->id, text, why);
        return -1;
    }
    if (!(svc->hosts[svc->nhosts] = malloc((size_t)n + 3))) {
        cat_err(err, errlen, h, "out of memory");
        return -1;
    }
    snprintf(svc->hosts[svc->nhosts++], (size_t)n + 3, "%s%s", wild ? "*." : "", name);
    if (!(ch = cat_host_get(c, name, (size_t)n, wild))) {
        cat_err(err, errlen, h, "out of memory");
        return -1;
    }
    return cat_host_attach(ch, svc, h, svc->hosts[svc->nhosts - 1], err, errlen);
}

/*
 * The optional `paths`: a string or a non-empty list of globs, each starting
 * with '/' (they match the path without its query).
 */
static int
cat_paths(struct catalog *c, struct service *svc, const config_setting_t *e, char *err,
          size_t errlen)
{
    const config_setting_t *ps = config_setting_get_member(e, "paths");
    int single, n = 1;

    if (!ps)
        return 0;
    single = config_setting_type(ps) == CONFIG_TYPE_STRING;
    if (!single && !config_setting_is_array(ps) && !config_setting_is_list(ps)) {
        cat_err(err, errlen, ps, "service \"%s\": paths must be a list of strings", svc->id);
        return -1;
    }
    if (!single && (n = config_setting_length(ps)) == 0) {
        cat_err(err, errlen, ps, "service \"%s\": paths is empty", svc->id);
        return -1;
    }
    if (!(svc->paths = calloc((size_t)n, sizeof(char *)))) {
        cat_err(err, errlen, ps, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *p = single ? ps : config_setting_get_elem(ps, (unsigned)i);
        const char *v = config_setting_get_string(p);

        if (config_setting_type(p) != CONFIG_TYPE_STRING || !v || v[0] != '/') {
            cat_err(err, errlen, p, "service \"%s\": each path must be a string starting with '/'",
                    svc->id);
            return -1;
        }
        if (strchr(v, '?')) {
            cat_err(err, errlen, p,
                    "service \"%s\": path \"%s\": paths match the path without its query; a "
                    "service told apart only by its query needs a policy rule with `query`",
                    svc->id, v);
            return -1;
        }
        if (!(svc->paths[i] = strdup(v))) {
            cat_err(err, errlen, p, "out of memory");
            return -1;
        }
        svc->npaths++;
    }
    c->nscoped++;
    return 0;
}

static int
cat_hosts(struct catalog *c, struct service *svc, const config_setting_t *e, char *err,
          size_t errlen)
{
    const config_setting_t *hs = config_setting_get_member(e, "hosts");
    int n;

    if (!hs) {
        cat_err(err, errlen, e, "service \"%s\": missing \"hosts\"", svc->id);
        return -1;
    }
    if (config_setting_type(hs) == CONFIG_TYPE_STRING) {
        if (!(svc->hosts = calloc(1, sizeof(char *))))
            goto oom;
        return cat_add_host(c, svc, hs, err, errlen);
    }
    if (!config_setting_is_array(hs) && !config_setting_is_list(hs)) {
        cat_err(err, errlen, hs, "service \"%s\": hosts must be a list of strings", svc->id);
        return -1;
    }
    if ((n = config_setting_length(hs)) == 0) {
        cat_err(err, errlen, hs, "service \"%s\": hosts is empty", svc->id);
        return -1;
    }
    if (!(svc->hosts = calloc((size_t)n, sizeof(char *))))
        goto oom;
    for (int i = 0; i < n; i++)
        if (cat_add_host(c, svc, config_setting_get_elem(hs, (unsigned)i), err, errlen) < 0)
            return -1;
    return 0;
oom:
    cat_err(err, errlen, hs, "out of memory");
    return -1;
}

static int
cat_service(struct catalog *c, struct service *svc, const config_setting_t *e, char *err,
            size_t errlen)
{
    const config_setting_t *idm;
    void *prev = NULL;
    int rc;

    svc->line = config_setting_source_line(e);
    if (!config_setting_is_group(e)) {
        cat_err(err, errlen, e, "service entry must be a group { id = ...; ... }");
        return -1;
    }
    idm = config_setting_get_member(e, "id");
    if (cat_string(e, "id", "?", &svc->id, err, errlen) < 0)
        return -1;
    if (!cat_id_valid(svc->id)) {
        cat_err(err, errlen, idm, "service \"%s\": id must be lower-case letters, digits and '-'",
                svc->id);
        return -1;
    }
    for (int i = 0; i < config_setting_length(e); i++) {
        const config_setting_t *m = config_setting_get_elem(e, (unsigned)i);
        const char *key = config_setting_name(m);
        size_t k;

        for (k = 0; cat_keys[k] && strcmp(cat_keys[k], key) != 0; k++)
            ;
        if (!cat_keys[k]) {
            cat_err(err, errlen, m, "service \"%s\": unknown key \"%s\"", svc->id, key);
            return -1;
        }
    }
    if ((rc = hostset_put(c->ids, svc->id, strlen(svc->id), 0, svc, &prev)) != 0) {
        if (rc < 0)
            cat_err(err, errlen, idm, "out of memory");
        else
            cat_err(err, errlen, idm, "service \"%s\" is defined twice (first at line %d)", svc->id,
                    ((const struct service *)prev)->line);
        return -1;
    }
    if (cat_string(e, "name", svc->id, &svc->name, err, errlen) < 0 ||
        cat_string(e, "category", svc->id, &svc->category, err, errlen) < 0 ||
        cat_string(e, "vendor_country", svc->id, &svc->vendor_country, err, errlen) < 0)
        return -1;
    if (!catalog_category_valid(svc->category)) {
        cat_err(err, errlen, config_setting_get_member(e, "category"),
                "service \"%s\": unknown category \"%s\" (chat, api, image, code, search, "
                "agent, other)",
                svc->id, svc->category);
        return -1;
    }
    if (strlen(svc->vendor_country) != 2 ||
        !(svc->vendor_country[0] >= 'A' && svc->vendor_country[0] <= 'Z' &&
          svc->vendor_country[1] >= 'A' && svc->vendor_country[1] <= 'Z')) {
        cat_err(err, errlen, config_setting_get_member(e, "vendor_country"),
                "service \"%s\": vendor_country must be an ISO 3166 alpha-2 code like \"US\"",
                svc->id);
        return -1;
    }
    if (cat_date(config_setting_get_member(e, "checked"), svc->id, svc->checked, err, errlen) < 0)
        return -1;
    if (cat_paths(c, svc, e, err, errlen) < 0)
        return -1;
    return cat_hosts(c, svc, e, err, errlen);
}

struct catalog *
catalog_load(const config_setting_t *services, char *err, size_t errlen)
{
    struct catalog *c = calloc(1, sizeof(*c));
    int n = 0;

    if (!c || !(c->hosts = hostset_new()) || !(c->ids = hostset_new())) {
        snprintf(err, errlen, "<config>: out of memory");
        goto fail;
    }
    if (!services)
        return c;
    if (config_setting_source_file(services) &&
        !(c->file = strdup(config_setting_source_file(services)))) {
        snprintf(err, errlen, "<config>: out of memory");
        goto fail;
    }
    if (config_setting_parent(services) &&
        cat_date(config_setting_get_member(config_setting_parent(services), "catalog_version"),
                 NULL, c->version, err, errlen) < 0)
        goto fail;
    if (!config_setting_is_list(services) && !config_setting_is_array(services)) {
        cat_err(err, errlen, services, "services must be a list ( { ... }, ... )");
        goto fail;
    }
    n = config_setting_length(services);
    if (n > 0 && !(c->v = calloc((size_t)n, sizeof(*c->v)))) {
        cat_err(err, errlen, services, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        c->v[i].index = (size_t)i;
        c->n = (size_t)i + 1;
        if (cat_service(c, &c->v[i], config_setting_get_elem(services, (unsigned)i), err, errlen) <
            0)
            goto fail;
    }
    return c;
fail:
    catalog_free(c);
    return NULL;
}

void
catalog_free(struct catalog *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        struct service *s = &c->v[i];

        for (size_t j = 0; j < s->nhosts; j++)
            free(s->hosts[j]);
        free(s->hosts);
        for (size_t j = 0; j < s->npaths; j++)
            free(s->paths[j]);
        free(s->paths);
        free(s->id);
        free(s->name);
        free(s->category);
        free(s->vendor_country);
    }
    free(c->v);
    for (size_t i = 0; i < c->nh; i++) {
        free(c->hv[i]->scoped);
        free(c->hv[i]);
    }
    free(c->hv);
    free(c->file);
    hostset_free(c->hosts);
    hostset_free(c->ids);
    free(c);
}

int
catalog_glob(const char *pat, const char *s, size_t n)
{
    size_t pi = 0, si = 0, star = SIZE_MAX, mark = 0;

    while (si < n) {
        if (pat[pi] == '*') {
            star = ++pi;
            mark = si;
        } else if (pat[pi] && pat[pi] == s[si]) {
            pi++;
            si++;
        } else if (star != SIZE_MAX) {
            pi = star;
            si = ++mark;
        } else {
            return 0;
        }
    }
    while (pat[pi] == '*')
        pi++;
    return pat[pi] == '\0';
}

/* Every pattern naming host (normalised into norm), most specific first; how many. */
static size_t
cat_matches(const struct catalog *c, const char *host, size_t len, char *norm, void **out)
{
    int n = hostset_host_normalise(host, len, norm);

    if (!c || n < 0)
        return 0;
    return hostset_match_all(c->hosts, norm, (size_t)n, out, HOSTSET_MATCH_MAX);
}

static int
cat_path_matches(const struct service *s, const char *path, size_t pathlen)
{
    for (size_t i = 0; i < s->npaths; i++)
        if (catalog_glob(s->paths[i], path, pathlen))
            return 1;
    return 0;
}

const struct service *
catalog_lookup(const struct catalog *c, const char *host, size_t len)
{
    char norm[HOSTSET_NAME_MAX + 1];
    void *hs[HOSTSET_MATCH_MAX];
    const struct cat_host *h;
    size_t n;

    if (!c || !hostset_match(c->hosts, host, len, hs))
        return NULL;
    if ((h = hs[0])->svc || c->nscoped == 0)
        return h->svc;
    /* The most specific pattern has only path-scoped entries: a wider one may name the host. */
    n = cat_matches(c, host, len, norm, hs);
    for (size_t i = 0; i < n; i++)
        if ((h = hs[i])->svc)
            return h->svc;
    return NULL;
}

const struct service *
catalog_lookup_path(const struct catalog *c, const char *host, size_t len, const char *path,
                    size_t pathlen)
{
    char norm[HOSTSET_NAME_MAX + 1];
    void *hs[HOSTSET_MATCH_MAX];
    size_t n;

    if (!path || !c || c->nscoped == 0)
        return catalog_lookup(c, host, len);
    /* Most hosts: the most specific pattern decides at once (one probe per label until a hit). */
    if (!hostset_match(c->hosts, host, len, hs))
        return NULL;
    const struct cat_host *first = hs[0];
    for (size_t k = 0; k < first->nscoped; k++)
        if (cat_path_matches(first->scoped[k], path, pathlen))
            return first->scoped[k];
    if (first->svc)
        return first->svc;
    n = cat_matches(c, host, len, norm, hs);
    for (size_t i = 0; i < n; i++) {
        const struct cat_host *h = hs[i];

        for (size_t k = 0; k < h->nscoped; k++)
            if (cat_path_matches(h->scoped[k], path, pathlen))
                return h->scoped[k];
        if (h->svc)
            return h->svc;
    }
    return NULL;
}

int
catalog_has_scoped(const struct catalog *c, const char *host, size_t len)
{
    char norm[HOSTSET_NAME_MAX + 1];
    void *hs[HOSTSET_MATCH_MAX];
    size_t n;

    if (!c || c->nscoped == 0)
        return 0;
    n = cat_matches(c, host, len, norm, hs);
    for (size_t i = 0; i < n; i++)
        if (((const struct cat_host *)hs[i])->nscoped)
            return 1;
    return 0;
}

const char *
catalog_version(const struct catalog *c)
{
    return c ? c->version : "";
}

const char *
catalog_file(const struct catalog *c)
{
    return c && c->file ? c->file : "";
}

size_t
catalog_count(const struct catalog *c)
{
    return c ? c->n : 0;
}

const struct service *
catalog_service(const struct catalog *c, size_t i)
{
    return c && i < c->n ? &c->v[i] : NULL;
}

const struct service *
catalog_find_id(const struct catalog *c, const char *id)
{
    return c ? hostset_get(c->ids, id, strlen(id), 0) : NULL;
}
