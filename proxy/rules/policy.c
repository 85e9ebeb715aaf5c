/*
 * Policy compilation and evaluation.
 *
 * policy_load() turns every condition into its matching form once: lists of
 * strings, CIDRs (netaddr.h), catalog service indices, a hostset for host
 * patterns, minute windows for hours, bitmasks for days and DLP kinds.  No
 * string is parsed per request.
 *
 * Evaluation must not walk the whole policy.  Each rule is filed in exactly one
 * bucket, chosen by the most selective condition it has, in this order:
 *
 *   users      -> by_user[name]              (one bucket per listed user)
 *   services   -> by_service[catalog index]
 *   hosts      -> by_host[pattern]           (exact or wildcard key)
 *   groups     -> by_group[name]
 *   vendor_countries -> by_vendor[code]
 *   categories -> by_category[name]
 *   otherwise  -> generic
 *
 * Every bucket lists rule indices in ascending order.  A rule can only match
 * a request that hits one of its buckets, so a request gathers the buckets it
 * can hit -- its user, its service's index, category and country, its host
 * and each parent suffix as a wildcard, each of its groups, and generic -- and
 * scans each bucket only up to the best (lowest) matching index found so far.
 * The number of buckets is bounded by the request (labels in the host, groups
 * of the user), not by the policy; each lookup is a hash probe.  What remains
 * proportional to the policy is only the rules that genuinely share a key
 * (say, a hundred rules all on category "chat"), which a scan would also pay.
 * policy_eval_scan() is the plain first-match loop the index must agree with.
 */
#include "aigate/rules/policy.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aigate/http/http_msg.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/hostset.h"

struct pol_list {
    size_t *v;
    size_t n, cap;
};

struct policy {
    struct policy_rule *rules;
    size_t n;
    size_t nsvc;
    struct pol_list generic;
    struct pol_list *by_service; /* nsvc entries */
    /* key -> struct pol_list *, the lists owned through `lists` */
    struct hostset *by_user, *by_group, *by_host, *by_vendor, *by_category;
    /* host patterns of rules that need the request itself (policy_wants_request) */
    struct hostset *req_hosts;
    struct pol_list **lists;
    size_t nlists, caplists;
};

/* Load-time context for error messages. */
struct pol_ctx {
    const struct catalog *cat;
    const config_setting_t *dlp_patterns;
    char *err;
    size_t errlen;
    const char *rule; /* name, or NULL before it is known */
    size_t index;
};

static const char *const pol_days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
static const char *const pol_dlp_kinds[] = {"kr-rrn",   "credit-card", "email",
                                            "phone-kr", "api-key",     "private-key"};
_Static_assert(sizeof(pol_dlp_kinds) / sizeof(pol_dlp_kinds[0]) == POLICY_DLP_CUSTOM_FIRST,
               "a name for every built-in dlp kind");

static void pol_err(struct pol_ctx *x, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
pol_err(struct pol_ctx *x, const config_setting_t *s, const char *fmt, ...)
{
    const char *file = s ? config_setting_source_file(s) : NULL;
    unsigned line = s ? config_setting_source_line(s) : 0;
    va_list ap;
    int n;

    if (x->rule)
        n = snprintf(x->err, x->errlen, "%s:%u: rule \"%s\": ", file ? file : "<config>", line,
                     x->rule);
    else
        n = snprintf(x->err, x->errlen, "%s:%u: rule #%zu: ", file ? file : "<config>", line,
                     x->index + 1);
    if (n < 0 || (size_t)n >= x->errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

const char *
policy_action_name(enum policy_action a)
{
    switch (a) {
    case POLICY_ALLOW:
        return "allow";
    case POLICY_BLOCK:
        return "block";
    case POLICY_WARN:
        return "warn";
    }
    return "?";
}

/* ---- loading ------------------------------------------------------------ */

static void
pol_strs_free(struct policy_strs *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* A condition's value: one string or a non-empty list of strings. */
static int
pol_strs(struct pol_ctx *x, const config_setting_t *m, struct policy_strs *out)
{
    int n = 1, single = config_setting_type(m) == CONFIG_TYPE_STRING;

    if (!single && !config_setting_is_array(m) && !config_setting_is_list(m)) {
        pol_err(x, m, "\"%s\" must be a string or a list of strings", config_setting_name(m));
        return -1;
    }
    if (!single && (n = config_setting_length(m)) == 0) {
        pol_err(x, m, "\"%s\" is empty (it would never match)", config_setting_name(m));
        return -1;
    }
    if (!(out->v = calloc((size_t)n, sizeof(char *))))
        goto oom;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = single ? m : config_setting_get_elem(m, (unsigned)i);

        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            pol_err(x, e, "\"%s\" must be a string or a list of strings", config_setting_name(m));
            return -1;
        }
        if (!(out->v[i] = strdup(config_setting_get_string(e))))
            goto oom;
        out->n++;
    }
    return 0;
oom:
    pol_err(x, m, "out of memory");
    return -1;
}

static void
pol_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static void
pol_upper(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
}

static int
pol_cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;

    return x < y ? -1 : x > y;
}

/* "HH:MM" -> minutes, allowing "24:00" only when end is set. */
static int
pol_clock(const char *s, int end)
{
    int h, m;

    if (!(s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] == ':' && s[3] >= '0' &&
          s[3] <= '5' && s[4] >= '0' && s[4] <= '9'))
        return -1;
    h = (s[0] - '0') * 10 + (s[1] - '0');
    m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 24 || (h == 24 && (!end || m != 0)))
        return -1;
    return h * 60 + m;
}

static int
pol_hours(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    if (!(r->windows = calloc(r->hours.n, sizeof(*r->windows)))) {
        pol_err(x, m, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r->hours.n; i++) {
        const char *s = r->hours.v[i];
        struct policy_window *w = &r->windows[i];

        if (strlen(s) != 11 || s[5] != '-' || (w->start = pol_clock(s, 0)) < 0 ||
            (w->end = pol_clock(s + 6, 1)) < 0) {
            pol_err(x, m, "hours \"%s\": expected \"HH:MM-HH:MM\" (e.g. \"09:00-18:00\")", s);
            return -1;
        }
        if (w->start == w->end) {
            pol_err(x, m, "hours \"%s\": empty window", s);
            return -1;
        }
    }
    return 0;
}

static int
pol_days_parse(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    for (size_t i = 0; i < r->days.n; i++) {
        size_t d;

        pol_lower(r->days.v[i]);
        for (d = 0; d < 7 && strcmp(r->days.v[i], pol_days[d]) != 0; d++)
            ;
        if (d == 7) {
            pol_err(x, m, "days \"%s\": expected mon, tue, wed, thu, fri, sat or sun",
                    r->days.v[i]);
            return -1;
        }
        r->day_mask |= 1u << d;
    }
    return 0;
}

static int
pol_dlp_custom(struct pol_ctx *x, const char *name, const config_setting_t *m)
{
    int n = x->dlp_patterns ? config_setting_length(x->dlp_patterns) : 0;

    for (int i = 0; i < n; i++) {
        const char *pn = NULL;

        if (config_setting_lookup_string(config_setting_get_elem(x->dlp_patterns, (unsigned)i),
                                         "name", &pn) &&
            strcmp(pn, name) == 0) {
            if (i >= POLICY_DLP_CUSTOM_MAX) {
                pol_err(x, m, "dlp \"custom:%s\": only the first %d dlp_patterns can be used", name,
                        POLICY_DLP_CUSTOM_MAX);
                return -1;
            }
            return i;
        }
    }
    pol_err(x, m, "dlp \"custom:%s\": no such entry in dlp_patterns", name);
    return -1;
}

static int
pol_dlp(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    for (size_t i = 0; i < r->dlp.n; i++) {
        const char *k = r->dlp.v[i];
        size_t d;
        int c;

        if (strncmp(k, "custom:", 7) == 0) {
            if ((c = pol_dlp_custom(x, k + 7, m)) < 0)
                return -1;
            r->dlp_mask |= POLICY_DLP_CUSTOM((unsigned)c);
            continue;
        }
        for (d = 0; d < POLICY_DLP_CUSTOM_FIRST && strcmp(k, pol_dlp_kinds[d]) != 0; d++)
            ;
        if (d == POLICY_DLP_CUSTOM_FIRST) {
            pol_err(x, m,
                    "dlp \"%s\": expected kr-rrn, credit-card, email, phone-kr, api-key, "
                    "private-key or custom:NAME",
                    k);
            return -1;
        }
        r->dlp_mask |= 1u << d;
    }
    return 0;
}

static int
pol_services(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    if (!(r->service_idx = calloc(r->services.n, sizeof(size_t)))) {
        pol_err(x, m, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r->services.n; i++) {
        const struct service *s = catalog_find_id(x->cat, r->services.v[i]);

        if (!s) {
            pol_err(x, m, "services: \"%s\" is not in the service catalog", r->services.v[i]);
            return -1;
        }
        r->service_idx[i] = s->index;
    }
    qsort(r->service_idx, r->services.n, sizeof(size_t), pol_cmp_size);
    return 0;
}

static int
pol_networks(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    if (!(r->nets.v = calloc(r->networks.n, sizeof(struct cidr)))) {
        pol_err(x, m, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r->networks.n; i++) {
        if (cidr_parse(r->networks.v[i], &r->nets.v[i]) < 0) {
            pol_err(x, m, "networks: \"%s\" is not a CIDR like \"10.0.0.0/8\"", r->networks.v[i]);
            return -1;
        }
        r->nets.n++;
    }
    return 0;
}

static int
pol_hosts(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    char name[HOSTSET_NAME_MAX + 1];
    const char *why;
    int wild, n;

    if (!(r->hostset = hostset_new()))
        goto oom;
    for (size_t i = 0; i < r->hosts.n; i++) {
        if ((n = hostset_pattern_parse(r->hosts.v[i], name, &wild, &why)) < 0) {
            pol_err(x, m, "hosts: \"%s\": %s", r->hosts.v[i], why);
            return -1;
        }
        if (hostset_put(r->hostset, name, (size_t)n, wild, r, NULL) < 0)
            goto oom;
    }
    return 0;
oom:
    pol_err(x, m, "out of memory");
    return -1;
}

static int
pol_categories(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    for (size_t i = 0; i < r->categories.n; i++) {
        pol_lower(r->categories.v[i]);
        if (!catalog_category_valid(r->categories.v[i])) {
            pol_err(x, m,
                    "categories: unknown category \"%s\" (chat, api, image, code, search, "
                    "agent, other)",
                    r->categories.v[i]);
            return -1;
        }
    }
    return 0;
}

static int
pol_vendors(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    for (size_t i = 0; i < r->vendors.n; i++) {
        const char *v = r->vendors.v[i];

        pol_upper(r->vendors.v[i]);
        if (strlen(v) != 2 || v[0] < 'A' || v[0] > 'Z' || v[1] < 'A' || v[1] > 'Z') {
            pol_err(x, m, "vendor_countries: \"%s\" is not an ISO 3166 alpha-2 code", v);
            return -1;
        }
    }
    return 0;
}

static int
pol_methods(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    for (size_t i = 0; i < r->methods.n; i++) {
        const char *s = r->methods.v[i];

        pol_upper(r->methods.v[i]);
        if (!*s || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ-_") != strlen(s)) {
            pol_err(x, m, "methods: \"%s\" is not an HTTP method", s);
            return -1;
        }
    }
    return 0;
}

static int
pol_paths(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    for (size_t i = 0; i < r->paths.n; i++)
        if (r->paths.v[i][0] != '/' && r->paths.v[i][0] != '*') {
            pol_err(x, m, "paths: \"%s\" must start with '/' or '*'", r->paths.v[i]);
            return -1;
        }
    return 0;
}

static int
pol_query(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    for (size_t i = 0; i < r->query.n; i++)
        if (r->query.v[i][0] == '?') {
            pol_err(x, m, "query: \"%s\": write the query without its '?' (e.g. \"*udm=50*\")",
                    r->query.v[i]);
            return -1;
        }
    return 0;
}

struct pol_condspec {
    const char *key;
    unsigned bit;
    size_t off; /* of the struct policy_strs in struct policy_rule */
    int (*compile)(struct pol_ctx *, struct policy_rule *, const config_setting_t *);
};

#define POL_SPEC(k, b, f, fn)                                                                      \
    {                                                                                              \
        k, b, offsetof(struct policy_rule, f), fn                                                  \
    }
static const struct pol_condspec pol_specs[POLICY_C_COUNT] = {
    POL_SPEC("users", POLICY_C_USERS, users, NULL),
    POL_SPEC("groups", POLICY_C_GROUPS, groups, NULL),
    POL_SPEC("networks", POLICY_C_NETWORKS, networks, pol_networks),
    POL_SPEC("services", POLICY_C_SERVICES, services, pol_services),
    POL_SPEC("categories", POLICY_C_CATEGORIES, categories, pol_categories),
    POL_SPEC("vendor_countries", POLICY_C_VENDORS, vendors, pol_vendors),
    POL_SPEC("hosts", POLICY_C_HOSTS, hosts, pol_hosts),
    POL_SPEC("methods", POLICY_C_METHODS, methods, pol_methods),
    POL_SPEC("paths", POLICY_C_PATHS, paths, pol_paths),
    POL_SPEC("query", POLICY_C_QUERY, query, pol_query),
    POL_SPEC("hours", POLICY_C_HOURS, hours, pol_hours),
    POL_SPEC("days", POLICY_C_DAYS, days, pol_days_parse),
    POL_SPEC("dlp", POLICY_C_DLP, dlp, pol_dlp),
};
#undef POL_SPEC

static struct policy_strs *
pol_field(struct policy_rule *r, const struct pol_condspec *sp)
{
    return (struct policy_strs *)(void *)((char *)r + sp->off);
}

static int
pol_action(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    const char *a = config_setting_get_string(m);

    if (a && strcmp(a, "allow") == 0)
        r->action = POLICY_ALLOW;
    else if (a && strcmp(a, "block") == 0)
        r->action = POLICY_BLOCK;
    else if (a && strcmp(a, "warn") == 0)
        r->action = POLICY_WARN;
    else {
        pol_err(x, m, "action must be \"allow\", \"block\" or \"warn\"");
        return -1;
    }
    return 0;
}

/*
 * Fields the proxy itself manages (framing, hop-by-hop, its own Via and
 * Max-Forwards, the 100-continue handshake): a rule may not set them.
 */
static const char *const pol_header_reserved[] = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "via",
    "max-forwards",
    "expect",
};

/* RFC 9110 5.6.2: token = 1*tchar. */
static int
pol_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Why name cannot be a header a rule adds, or NULL. */
static const char *
pol_header_name_bad(const char *name)
{
    size_t n = strlen(name);

    if (n == 0)
        return "is empty";
    if (n > POLICY_HEADER_NAME_MAX)
        return "is too long";
    for (size_t i = 0; i < n; i++)
        if (!pol_tchar((unsigned char)name[i]))
            return "is not a token (RFC 9110: letters, digits and !#$%&'*+-.^_`|~ only; no "
                   "spaces, colons or control characters)";
    for (size_t k = 0; k < sizeof(pol_header_reserved) / sizeof(pol_header_reserved[0]); k++)
        if (strcasecmp(name, pol_header_reserved[k]) == 0)
            return "is managed by the proxy itself and cannot be set by a rule";
    return NULL;
}

/*
 * Why value cannot be sent as a field value, or NULL: RFC 9110 5.5 allows
 * visible characters, spaces and tabs inside, none around; CR, LF and NUL
 * would split or cut the header (a NUL never reaches here: libconfig
 * strings end at one).
 */
static const char *
pol_header_value_bad(const char *value)
{
    size_t n = strlen(value);

    if (n == 0)
        return "is empty";
    if (n > POLICY_HEADER_VALUE_MAX)
        return "is too long";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];

        if (c == '\r' || c == '\n')
            return "contains CR or LF (a header cannot span lines)";
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return "contains a control character";
    }
    if (value[0] == ' ' || value[0] == '\t' || value[n - 1] == ' ' || value[n - 1] == '\t')
        return "starts or ends with white space";
    return NULL;
}

/* One { name = "..."; value = "..."; } entry of add_headers: checked, its sizes added to *bytes. */
static int
pol_header_entry(struct pol_ctx *x, const config_setting_t *e, size_t i, size_t *bytes)
{
    const config_setting_t *nm, *val;
    const char *why;

    if (!config_setting_is_group(e)) {
        pol_err(x, e, "add_headers: entry %zu must be { name = \"...\"; value = \"...\"; }", i + 1);
        return -1;
    }
    for (int k = 0; k < config_setting_length(e); k++) {
        const config_setting_t *m = config_setting_get_elem(e, (unsigned)k);
        const char *key = config_setting_name(m);

        if (strcmp(key, "name") != 0 && strcmp(key, "value") != 0) {
            pol_err(x, m, "add_headers: unknown key \"%s\" (name, value)", key);
            return -1;
        }
    }
    nm = config_setting_get_member(e, "name");
    val = config_setting_get_member(e, "value");
    if (!nm || config_setting_type(nm) != CONFIG_TYPE_STRING || !val ||
        config_setting_type(val) != CONFIG_TYPE_STRING) {
        pol_err(x, e, "add_headers: entry %zu needs a string name and a string value", i + 1);
        return -1;
    }
    if ((why = pol_header_name_bad(config_setting_get_string(nm)))) {
        pol_err(x, nm, "add_headers: header name \"%.*s\" %s", 80, config_setting_get_string(nm),
                why);
        return -1;
    }
    if ((why = pol_header_value_bad(config_setting_get_string(val)))) {
        pol_err(x, val, "add_headers: value of %s %s", config_setting_get_string(nm), why);
        return -1;
    }
    *bytes += strlen(config_setting_get_string(nm)) + strlen(config_setting_get_string(val)) + 2;
    return 0;
}

/*
 * add_headers = ( { name = "..."; value = "..."; }, ... ): checked, then
 * copied into one block (the array, then its strings) that the rule owns.
 */
static int
pol_add_headers(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    size_t n, bytes = 0;
    struct http_msg_field *f;
    char *p;

    if (!config_setting_is_list(m) || (n = (size_t)config_setting_length(m)) == 0) {
        pol_err(x, m,
                "add_headers must be a non-empty list ( { name = \"...\"; value = \"...\"; }, "
                "... )");
        return -1;
    }
    if (n > POLICY_HEADERS_MAX) {
        pol_err(x, m, "add_headers: at most %d headers per rule", POLICY_HEADERS_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);

        if (pol_header_entry(x, e, i, &bytes) < 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            const char *a, *b;

            config_setting_lookup_string(e, "name", &a);
            config_setting_lookup_string(config_setting_get_elem(m, (unsigned)j), "name", &b);
            if (strcasecmp(a, b) == 0) {
                pol_err(x, e, "add_headers: %s is listed twice (names are case-insensitive)", a);
                return -1;
            }
        }
    }
    if (!(f = malloc(n * sizeof(*f) + bytes))) {
        pol_err(x, m, "out of memory");
        return -1;
    }
    p = (char *)(f + n);
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);
        const char *name, *value;
        size_t ln, lv;

        config_setting_lookup_string(e, "name", &name);
        config_setting_lookup_string(e, "value", &value);
        ln = strlen(name) + 1;
        lv = strlen(value) + 1;
        f[i].name = memcpy(p, name, ln);
        f[i].value = memcpy(p + ln, value, lv);
        p += ln + lv;
    }
    r->headers = f;
    r->nheaders = n;
    return 0;
}

/* One member of a rule entry: a fixed key or a condition. */
static int
pol_member(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *m)
{
    const char *key = config_setting_name(m);

    if (strcmp(key, "name") == 0)
        return 0;
    if (strcmp(key, "action") == 0)
        return pol_action(x, r, m);
    if (strcmp(key, "reason") == 0) {
        if (config_setting_type(m) != CONFIG_TYPE_STRING) {
            pol_err(x, m, "reason must be a string");
            return -1;
        }
        if (!(r->reason = strdup(config_setting_get_string(m)))) {
            pol_err(x, m, "out of memory");
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "ack_ttl_s") == 0) {
        if (config_setting_type(m) != CONFIG_TYPE_INT || config_setting_get_int(m) <= 0) {
            pol_err(x, m, "ack_ttl_s must be a positive number of seconds");
            return -1;
        }
        r->ack_ttl_s = config_setting_get_int(m);
        return 0;
    }
    if (strcmp(key, "add_headers") == 0)
        return pol_add_headers(x, r, m);
    for (size_t i = 0; i < POLICY_C_COUNT; i++) {
        const struct pol_condspec *sp = &pol_specs[i];

        if (strcmp(key, sp->key) != 0)
            continue;
        if (pol_strs(x, m, pol_field(r, sp)) < 0)
            return -1;
        r->conds |= sp->bit;
        return sp->compile ? sp->compile(x, r, m) : 0;
    }
    pol_err(x, m,
            "unknown condition \"%s\" (users, groups, networks, services, categories, "
            "vendor_countries, hosts, methods, paths, query, hours, days, dlp; or add_headers)",
            key);
    return -1;
}

static int
pol_rule(struct pol_ctx *x, struct policy_rule *r, const config_setting_t *e, struct hostset *names)
{
    const config_setting_t *nm;
    const char *file = config_setting_source_file(e);
    void *prev = NULL;
    int rc;

    r->ack_ttl_s = -1;
    r->line = config_setting_source_line(e);
    if (!(r->file = strdup(file ? file : "<config>")))
        goto oom;
    if (!config_setting_is_group(e)) {
        pol_err(x, e, "a rule must be a group { name = ...; action = ...; }");
        return -1;
    }
    nm = config_setting_get_member(e, "name");
    if (!nm || config_setting_type(nm) != CONFIG_TYPE_STRING || !*config_setting_get_string(nm)) {
        pol_err(x, nm ? nm : e, "missing \"name\" (a non-empty string)");
        return -1;
    }
    /*
     * The name goes into response headers (Proxy-Status) and pages: visible
     * ASCII without quotes or backslashes, so it can never end a header line
     * or a quoted string.
     */
    for (const char *p = config_setting_get_string(nm); *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '"' || *p == '\\') {
            pol_err(x, nm,
                    "a rule name is letters, digits and punctuation: no spaces, quotes, "
                    "backslashes, control or non-ASCII characters");
            return -1;
        }
    if (!(r->name = strdup(config_setting_get_string(nm))))
        goto oom;
    x->rule = r->name;
    if ((rc = hostset_put(names, r->name, strlen(r->name), 0, r, &prev)) != 0) {
        if (rc < 0)
            goto oom;
        pol_err(x, nm, "duplicate rule name (first at line %d)",
                ((const struct policy_rule *)prev)->line);
        return -1;
    }
    if (!config_setting_get_member(e, "action")) {
        pol_err(x, e, "missing \"action\" (allow, block or warn)");
        return -1;
    }
    for (int i = 0; i < config_setting_length(e); i++)
        if (pol_member(x, r, config_setting_get_elem(e, (unsigned)i)) < 0)
            return -1;
    /*
     * Headers go to the sites a rule names: one naming none would apply to
     * every site, and refuse every CONNECT that is not intercepted.
     */
    if (r->nheaders && !(r->conds & (POLICY_C_HOSTS | POLICY_C_SERVICES | POLICY_C_CATEGORIES |
                                     POLICY_C_VENDORS))) {
        pol_err(x, config_setting_get_member(e, "add_headers"),
                "add_headers needs hosts, services, categories or vendor_countries: the sites "
                "the headers are for (without them every site would get them, and every "
                "CONNECT that is not intercepted would be refused)");
        return -1;
    }
    return 0;
oom:
    pol_err(x, e, "out of memory");
    return -1;
}

/* ---- index -------------------------------------------------------------- */

static int
pol_list_push(struct pol_list *l, size_t idx)
{
    if (l->n > 0 && l->v[l->n - 1] == idx)
        return 0;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 4;
        size_t *nv = realloc(l->v, ncap * sizeof(*nv));

        if (!nv)
            return -1;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = idx;
    return 0;
}

/* Append idx to the list stored under key in map, creating it if needed. */
static int
pol_map_push(struct policy *p, struct hostset *map, const char *key, size_t len, int wild,
             size_t idx)
{
    struct pol_list *l = hostset_get(map, key, len, wild);

    if (!l) {
        if (p->nlists == p->caplists) {
            size_t ncap = p->caplists ? p->caplists * 2 : 16;
            struct pol_list **nl = realloc(p->lists, ncap * sizeof(*nl));

            if (!nl)
                return -1;
            p->lists = nl;
            p->caplists = ncap;
        }
        if (!(l = calloc(1, sizeof(*l))))
            return -1;
        p->lists[p->nlists++] = l;
        if (hostset_put(map, key, len, wild, l, NULL) != 0)
            return -1;
    }
    return pol_list_push(l, idx);
}

static int
pol_map_push_strs(struct policy *p, struct hostset *map, const struct policy_strs *s, size_t idx)
{
    for (size_t i = 0; i < s->n; i++)
        if (pol_map_push(p, map, s->v[i], strlen(s->v[i]), 0, idx) < 0)
            return -1;
    return 0;
}

static int
pol_index_rule(struct policy *p, const struct policy_rule *r)
{
    char name[HOSTSET_NAME_MAX + 1];
    const char *why;
    int wild, n;

    if (r->conds & POLICY_C_USERS)
        return pol_map_push_strs(p, p->by_user, &r->users, r->index);
    if (r->conds & POLICY_C_SERVICES) {
        for (size_t i = 0; i < r->services.n; i++)
            if (pol_list_push(&p->by_service[r->service_idx[i]], r->index) < 0)
                return -1;
        return 0;
    }
    if (r->conds & POLICY_C_HOSTS) {
        for (size_t i = 0; i < r->hosts.n; i++) {
            n = hostset_pattern_parse(r->hosts.v[i], name, &wild, &why);
            if (n < 0 || pol_map_push(p, p->by_host, name, (size_t)n, wild, r->index) < 0)
                return -1;
        }
        return 0;
    }
    if (r->conds & POLICY_C_GROUPS)
        return pol_map_push_strs(p, p->by_group, &r->groups, r->index);
    if (r->conds & POLICY_C_VENDORS)
        return pol_map_push_strs(p, p->by_vendor, &r->vendors, r->index);
    if (r->conds & POLICY_C_CATEGORIES)
        return pol_map_push_strs(p, p->by_category, &r->categories, r->index);
    return pol_list_push(&p->generic, r->index);
}

/* File r's host patterns under req_hosts when it needs the request itself. */
static int
pol_index_req_hosts(struct policy *p, const struct policy_rule *r)
{
    char name[HOSTSET_NAME_MAX + 1];
    const char *why;
    int wild, n;

    if (!(r->conds & POLICY_C_HOSTS) || !((r->conds & POLICY_C_NEEDS_REQUEST) || r->nheaders))
        return 0;
    for (size_t i = 0; i < r->hosts.n; i++) {
        n = hostset_pattern_parse(r->hosts.v[i], name, &wild, &why);
        if (n < 0 || hostset_put(p->req_hosts, name, (size_t)n, wild, (void *)r, NULL) < 0)
            return -1;
    }
    return 0;
}

struct policy *
policy_load(const config_setting_t *policy, const struct catalog *cat,
            const config_setting_t *dlp_patterns, char *err, size_t errlen)
{
    struct pol_ctx x = {cat, dlp_patterns, err, errlen, NULL, 0};
    struct hostset *names = hostset_new();
    struct policy *p = calloc(1, sizeof(*p));
    int n = 0;

    if (!names || !p || !(p->by_user = hostset_new()) || !(p->by_group = hostset_new()) ||
        !(p->by_host = hostset_new()) || !(p->by_vendor = hostset_new()) ||
        !(p->by_category = hostset_new()) || !(p->req_hosts = hostset_new()))
        goto oom;
    p->nsvc = catalog_count(cat);
    if (p->nsvc && !(p->by_service = calloc(p->nsvc, sizeof(*p->by_service))))
        goto oom;
    if (policy) {
        if (!config_setting_is_list(policy)) {
            pol_err(&x, policy, "policy must be a list ( { name = ...; }, ... )");
            goto fail;
        }
        n = config_setting_length(policy);
    }
    if (n > 0 && !(p->rules = calloc((size_t)n, sizeof(*p->rules))))
        goto oom;
    for (int i = 0; i < n; i++) {
        x.rule = NULL;
        x.index = (size_t)i;
        p->rules[i].index = (size_t)i;
        p->n = (size_t)i + 1;
        if (pol_rule(&x, &p->rules[i], config_setting_get_elem(policy, (unsigned)i), names) < 0)
            goto fail;
        if (pol_index_rule(p, &p->rules[i]) < 0 || pol_index_req_hosts(p, &p->rules[i]) < 0)
            goto oom;
    }
    hostset_free(names);
    return p;
oom:
    snprintf(err, errlen, "%s: out of memory",
             policy && config_setting_source_file(policy) ? config_setting_source_file(policy)
                                                          : "<config>");
fail:
    hostset_free(names);
    policy_free(p);
    return NULL;
}

void
policy_free(struct policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        struct policy_rule *r = &p->rules[i];

        for (size_t k = 0; k < POLICY_C_COUNT; k++)
            pol_strs_free(pol_field(r, &pol_specs[k]));
        free(r->name);
        free(r->reason);
        free(r->file);
        free(r->service_idx);
        cidr_list_free(&r->nets);
        hostset_free(r->hostset);
        free(r->windows);
        free((void *)r->headers);
    }
    free(p->rules);
    for (size_t i = 0; i < p->nsvc && p->by_service; i++)
        free(p->by_service[i].v);
    free(p->by_service);
    free(p->generic.v);
    for (size_t i = 0; i < p->nlists; i++) {
        free(p->lists[i]->v);
        free(p->lists[i]);
    }
    free(p->lists);
    hostset_free(p->by_user);
    hostset_free(p->by_group);
    hostset_free(p->by_host);
    hostset_free(p->by_vendor);
    hostset_free(p->by_category);
    hostset_free(p->req_hosts);
    free(p);
}

size_t
policy_count(const struct policy *p)
{
    return p ? p->n : 0;
}

const struct policy_rule *
policy_rule_at(const struct policy *p, size_t i)
{
    return p && i < p->n ? &p->rules[i] : NULL;
}

/* ---- matching ----------------------------------------------------------- */

static int
pol_in(const struct policy_strs *s, const char *v)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], v) == 0)
            return 1;
    return 0;
}

static int
pol_window_has(const struct policy_window *w, int min)
{
    if (w->start < w->end)
        return min >= w->start && min < w->end;
    return min >= w->start || min < w->end;
}

static int
pol_cond_ok(const struct policy_rule *rule, unsigned bit, const struct policy_req *r)
{
    const struct service *svc = r->svc;

    switch (bit) {
    case POLICY_C_USERS:
        return r->user && pol_in(&rule->users, r->user);
    case POLICY_C_GROUPS:
        for (size_t i = 0; i < r->ngroups; i++)
            if (pol_in(&rule->groups, r->groups[i]))
                return 1;
        return 0;
    case POLICY_C_NETWORKS:
        return r->client && cidr_list_match(&rule->nets, r->client);
    case POLICY_C_SERVICES:
        return svc && bsearch(&svc->index, rule->service_idx, rule->services.n, sizeof(size_t),
                              pol_cmp_size) != NULL;
    case POLICY_C_CATEGORIES:
        return svc && pol_in(&rule->categories, svc->category);
    case POLICY_C_VENDORS:
        return svc && pol_in(&rule->vendors, svc->vendor_country);
    case POLICY_C_HOSTS: {
        void *d;

        return r->host && hostset_match_norm(rule->hostset, r->host, strlen(r->host), &d);
    }
    case POLICY_C_METHODS:
        if (!r->have_request || !r->method)
            return 0;
        for (size_t i = 0; i < rule->methods.n; i++)
            if (strcasecmp(rule->methods.v[i], r->method) == 0)
                return 1;
        return 0;
    case POLICY_C_PATHS:
        if (!r->have_request || !r->path)
            return 0;
        for (size_t i = 0; i < rule->paths.n; i++)
            if (catalog_glob(rule->paths.v[i], r->path, r->pathlen))
                return 1;
        return 0;
    case POLICY_C_QUERY:
        if (!r->have_request || !r->query)
            return 0;
        for (size_t i = 0; i < rule->query.n; i++)
            if (catalog_glob(rule->query.v[i], r->query, r->querylen))
                return 1;
        return 0;
    case POLICY_C_HOURS:
        if (!r->local)
            return 0;
        for (size_t i = 0; i < rule->hours.n; i++)
            if (pol_window_has(&rule->windows[i], r->local->tm_hour * 60 + r->local->tm_min))
                return 1;
        return 0;
    case POLICY_C_DAYS:
        return r->local && r->local->tm_wday >= 0 && r->local->tm_wday < 7 &&
               (rule->day_mask & (1u << r->local->tm_wday));
    case POLICY_C_DLP:
        return r->have_request && r->body_inspected && (rule->dlp_mask & r->dlp_found);
    }
    return 0;
}

static int
pol_match(const struct policy_rule *rule, const struct policy_req *r)
{
    if ((rule->conds & POLICY_C_NEEDS_REQUEST) && !r->have_request)
        return 0;
    for (unsigned c = rule->conds; c; c &= c - 1)
        if (!pol_cond_ok(rule, c & -c, r))
            return 0;
    return 1;
}

int
policy_wants_request(const struct policy *p, const char *host)
{
    void *d;

    return p && host && hostset_count(p->req_hosts) > 0 &&
           hostset_match_norm(p->req_hosts, host, strlen(host), &d);
}

const struct policy_rule *
policy_eval_scan(const struct policy *p, const struct policy_req *r)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (pol_match(&p->rules[i], r))
            return &p->rules[i];
    return NULL;
}

/* Lower *best to the first rule of l that matches, looking no further. */
static void
pol_scan(const struct policy *p, const struct pol_list *l, const struct policy_req *r, size_t *best)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n && l->v[i] < *best; i++)
        if (pol_match(&p->rules[l->v[i]], r)) {
            *best = l->v[i];
            return;
        }
}

static const struct pol_list *
pol_get(const struct hostset *map, const char *key, size_t len, int wild)
{
    return hostset_get(map, key, len, wild);
}

const struct policy_rule *
policy_eval(const struct policy *p, const struct policy_req *r)
{
    size_t best = SIZE_MAX;

    if (!p || p->n == 0)
        return NULL;
    pol_scan(p, &p->generic, r, &best);
    if (r->user)
        pol_scan(p, pol_get(p->by_user, r->user, strlen(r->user), 0), r, &best);
    if (r->svc) {
        const struct service *s = r->svc;

        if (s->index < p->nsvc)
            pol_scan(p, &p->by_service[s->index], r, &best);
        pol_scan(p, pol_get(p->by_category, s->category, strlen(s->category), 0), r, &best);
        pol_scan(p, pol_get(p->by_vendor, s->vendor_country, strlen(s->vendor_country), 0), r,
                 &best);
    }
    for (size_t i = 0; i < r->ngroups; i++)
        pol_scan(p, pol_get(p->by_group, r->groups[i], strlen(r->groups[i]), 0), r, &best);
    if (r->host && hostset_count(p->by_host) > 0) {
        void *lists[HOSTSET_MATCH_MAX];
        size_t n =
            hostset_match_all(p->by_host, r->host, strlen(r->host), lists, HOSTSET_MATCH_MAX);

        for (size_t i = 0; i < n; i++)
            pol_scan(p, lists[i], r, &best);
    }
    return best == SIZE_MAX ? NULL : &p->rules[best];
}

/* ---- explanation -------------------------------------------------------- */

static void pol_cat(struct policy_check *c, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Append to c->why, truncating silently when it is full. */
static void
pol_cat(struct policy_check *c, size_t *off, const char *fmt, ...)
{
    va_list ap;
    int w;

    if (*off >= sizeof(c->why) - 1)
        return;
    va_start(ap, fmt);
    w = vsnprintf(c->why + *off, sizeof(c->why) - *off, fmt, ap);
    va_end(ap);
    if (w > 0)
        *off += (size_t)w;
    if (*off >= sizeof(c->why) - 1)
        *off = sizeof(c->why) - 1;
}

static void
pol_cat_strs(struct policy_check *c, size_t *off, const struct policy_strs *s)
{
    pol_cat(c, off, "[");
    for (size_t i = 0; i < s->n; i++)
        pol_cat(c, off, "%s%s", i ? ", " : "", s->v[i]);
    pol_cat(c, off, "]");
}

static void
pol_explain_catalog(const struct policy_rule *rule, unsigned bit, const struct policy_req *r,
                    struct policy_check *c, size_t *off)
{
    const struct service *svc = r->svc;
    const struct policy_strs *want = bit == POLICY_C_SERVICES     ? &rule->services
                                     : bit == POLICY_C_CATEGORIES ? &rule->categories
                                                                  : &rule->vendors;

    if (!svc)
        pol_cat(c, off, "%s is not a catalogued AI service, rule wants ",
                r->host ? r->host : "the host");
    else
        pol_cat(c, off, "%s %s ",
                bit == POLICY_C_SERVICES     ? svc->id
                : bit == POLICY_C_CATEGORIES ? svc->category
                                             : svc->vendor_country,
                c->ok ? "is in" : "is not in");
    pol_cat_strs(c, off, want);
}

static void
pol_explain_dlp(const struct policy_rule *rule, const struct policy_req *r, struct policy_check *c,
                size_t *off)
{
    int first = 1;

    if (!r->have_request || !r->body_inspected) {
        pol_cat(c, off, "request body not inspected, rule wants ");
        pol_cat_strs(c, off, &rule->dlp);
        return;
    }
    pol_cat(c, off, "body contains [");
    for (unsigned d = 0; d < 32; d++) {
        if (!(r->dlp_found & (1u << d)))
            continue;
        if (d < POLICY_DLP_CUSTOM_FIRST)
            pol_cat(c, off, "%s%s", first ? "" : ", ", pol_dlp_kinds[d]);
        else
            pol_cat(c, off, "%scustom pattern #%u", first ? "" : ", ",
                    d - POLICY_DLP_CUSTOM_FIRST + 1);
        first = 0;
    }
    pol_cat(c, off, "], rule wants ");
    pol_cat_strs(c, off, &rule->dlp);
}

static void
pol_explain_cond(const struct policy_rule *rule, unsigned bit, const struct policy_req *r,
                 struct policy_check *c)
{
    const char *is = c->ok ? "is in" : "is not in";
    const char *who = r->user ? r->user : "(anonymous)";
    char net[64];
    size_t off = 0;

    c->why[0] = '\0';
    switch (bit) {
    case POLICY_C_USERS:
        pol_cat(c, &off, "user %s %s ", who, is);
        pol_cat_strs(c, &off, &rule->users);
        break;
    case POLICY_C_GROUPS:
        pol_cat(c, &off, "%s is in [", who);
        for (size_t i = 0; i < r->ngroups; i++)
            pol_cat(c, &off, "%s%s", i ? ", " : "", r->groups[i]);
        pol_cat(c, &off, "], rule wants ");
        pol_cat_strs(c, &off, &rule->groups);
        break;
    case POLICY_C_NETWORKS:
        pol_cat(c, &off, "client %s %s ",
                r->client ? netaddr_ntop(r->client, net, sizeof(net)) : "(unknown)", is);
        pol_cat_strs(c, &off, &rule->networks);
        break;
    case POLICY_C_SERVICES:
    case POLICY_C_CATEGORIES:
    case POLICY_C_VENDORS:
        pol_explain_catalog(rule, bit, r, c, &off);
        break;
    case POLICY_C_HOSTS:
        pol_cat(c, &off, "host %s matches %s ", r->host ? r->host : "(none)",
                c->ok ? "one of" : "none of");
        pol_cat_strs(c, &off, &rule->hosts);
        break;
    case POLICY_C_METHODS:
        if (!r->have_request || !r->method)
            pol_cat(c, &off, "method not visible (tunnel not intercepted), rule wants ");
        else
            pol_cat(c, &off, "%s %s ", r->method, is);
        pol_cat_strs(c, &off, &rule->methods);
        break;
    case POLICY_C_PATHS:
        if (!r->have_request || !r->path)
            pol_cat(c, &off, "path not visible (tunnel not intercepted), rule wants ");
        else
            pol_cat(c, &off, "%.*s matches %s ", (int)(r->pathlen > 120 ? 120 : r->pathlen),
                    r->path, c->ok ? "one of" : "none of");
        pol_cat_strs(c, &off, &rule->paths);
        break;
    case POLICY_C_QUERY:
        if (!r->have_request || !r->query)
            pol_cat(c, &off, "query not visible (tunnel not intercepted), rule wants ");
        else if (r->querylen == 0)
            pol_cat(c, &off, "no query string matches %s ", c->ok ? "one of" : "none of");
        else
            pol_cat(c, &off, "%.*s matches %s ", (int)(r->querylen > 120 ? 120 : r->querylen),
                    r->query, c->ok ? "one of" : "none of");
        pol_cat_strs(c, &off, &rule->query);
        break;
    case POLICY_C_HOURS:
        if (r->local)
            pol_cat(c, &off, "local time %02d:%02d is %s ", r->local->tm_hour, r->local->tm_min,
                    c->ok ? "within" : "outside");
        else
            pol_cat(c, &off, "no clock, rule wants ");
        pol_cat_strs(c, &off, &rule->hours);
        break;
    case POLICY_C_DAYS:
        pol_cat(c, &off, "today is %s, rule wants ",
                r->local && r->local->tm_wday >= 0 && r->local->tm_wday < 7
                    ? pol_days[r->local->tm_wday]
                    : "(unknown)");
        pol_cat_strs(c, &off, &rule->days);
        break;
    case POLICY_C_DLP:
        pol_explain_dlp(rule, r, c, &off);
        break;
    }
}

size_t
policy_rule_check(const struct policy_rule *rule, const struct policy_req *r,
                  struct policy_check *out, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < POLICY_C_COUNT && n < max; i++) {
        const struct pol_condspec *sp = &pol_specs[i];

        if (!(rule->conds & sp->bit))
            continue;
        out[n].cond = sp->key;
        out[n].bit = sp->bit;
        out[n].ok = pol_cond_ok(rule, sp->bit, r);
        pol_explain_cond(rule, sp->bit, r, &out[n]);
        n++;
    }
    return n;
}
