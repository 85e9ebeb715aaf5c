/*
 * Directory groups: LDAP lookups on a few threads, one lookup per user in
 * flight, answers cached, callers never held past timeout_ms.
 *
 * Shared state (struct dirgroups, one mutex): the current settings (a
 * reference-counted copy, so a reload swaps them while lookups finish with
 * the ones they began with), the flights (users being looked up, each with
 * the requests waiting on it) in a small hash table and a FIFO of flights no
 * thread has taken yet, and the back-off after a failure.
 *
 * A request (struct dirgroups_req) lives on its worker's thread.  It waits on
 * a flight and on a timer of the worker's loop.  Whichever comes first
 * answers it: the deadline timer takes it off the flight (under the mutex)
 * and calls back with what the cache knows; the lookup thread takes every
 * waiter off its flight (under the mutex), gives each the answer, and hands
 * it back with offload_finish(), so the callback runs on the worker's thread
 * from its done event.  A request the thread already took when its timer
 * fires is answered by the timer and only released by the hand-back.
 *
 * Each lookup thread keeps one connection, bound as the service account.  A
 * search on a connection the server has dropped (idle timeout, restart) is
 * retried once on a new connection.  The connection's socket is published
 * under the mutex so that dirgroups_free() can shut it down and a thread
 * blocked in a directory call returns at once.
 */
#include "aigate/identity/dirgroups.h"

#include <errno.h>
#include <event2/event.h>
#include <ldap.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include "aigate/core/hash.h"
#include "aigate/core/log.h"
#include "aigate/core/offload.h"
#include "aigate/identity/dircache.h"
#include "aigate/identity/users.h"
#include "aigate/net/worker.h"

#define DG_BUCKETS 256 /* flight table: users being looked up at once */

/* ---- settings --------------------------------------------------------------------- */

/* Free what c holds, wiping the password. */
static void
dg_cfg_clear(struct dirgroups_cfg *c)
{
    if (c->bind_password) {
        OPENSSL_cleanse(c->bind_password, strlen(c->bind_password));
        free(c->bind_password);
    }
    free(c->uri);
    free(c->base);
    free(c->bind_dn);
    free(c->user_filter);
    free(c->group_attr);
    free(c->group_filter);
    free(c->group_name_attr);
    free(c->ca_file);
    memset(c, 0, sizeof(*c));
}

void
dirgroups_cfg_free(struct dirgroups_cfg *c)
{
    if (!c)
        return;
    dg_cfg_clear(c);
    free(c);
}

struct dg_conf {
    atomic_int refs;
    unsigned long gen;
    struct dirgroups_cfg c;
};

static int
dg_dup(char **dst, const char *src)
{
    *dst = NULL;
    return src && !(*dst = strdup(src)) ? -1 : 0;
}

static void
dg_conf_unref(struct dg_conf *k)
{
    if (!k || atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
        return;
    dg_cfg_clear(&k->c);
    free(k);
}

static struct dg_conf *
dg_conf_new(const struct dirgroups_cfg *src, unsigned long gen)
{
    struct dg_conf *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    atomic_init(&k->refs, 1);
    k->gen = gen;
    struct dirgroups_cfg *c = &k->c;
    c->cache_ttl_s = src->cache_ttl_s;
    c->timeout_ms = src->timeout_ms;
    c->starttls = src->starttls;
    if (dg_dup(&c->uri, src->uri) < 0 || dg_dup(&c->base, src->base) < 0 ||
        dg_dup(&c->bind_dn, src->bind_dn) < 0 ||
        dg_dup(&c->bind_password, src->bind_password) < 0 ||
        dg_dup(&c->user_filter, src->user_filter) < 0 ||
        dg_dup(&c->group_attr, src->group_attr) < 0 ||
        dg_dup(&c->group_filter, src->group_filter) < 0 ||
        dg_dup(&c->group_name_attr, src->group_name_attr) < 0 ||
        dg_dup(&c->ca_file, src->ca_file) < 0) {
        dg_conf_unref(k);
        return NULL;
    }
    return k;
}

static int
dg_streq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static int
dg_cfg_equal(const struct dirgroups_cfg *a, const struct dirgroups_cfg *b)
{
    return dg_streq(a->uri, b->uri) && dg_streq(a->base, b->base) &&
           dg_streq(a->bind_dn, b->bind_dn) && dg_streq(a->bind_password, b->bind_password) &&
           dg_streq(a->user_filter, b->user_filter) && dg_streq(a->group_attr, b->group_attr) &&
           dg_streq(a->group_filter, b->group_filter) &&
           dg_streq(a->group_name_attr, b->group_name_attr) && dg_streq(a->ca_file, b->ca_file) &&
           a->cache_ttl_s == b->cache_ttl_s && a->timeout_ms == b->timeout_ms &&
           a->starttls == b->starttls;
}

/* ---- filters (pure) ----------------------------------------------------------------- */

int
dirgroups_escape(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return -1;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        int esc = *p == '(' || *p == ')' || *p == '*' || *p == '\\' || *p < 0x20 || *p == 0x7f;
        size_t need = esc ? 3 : 1;
        if (o + need >= cap) {
            out[0] = '\0';
            return -1;
        }
        if (esc) {
            out[o++] = '\\';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return (int)o;
}

int
dirgroups_filter_expand(const char *tmpl, const char *user, const char *dn, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return -1;
    out[0] = '\0';
    for (const char *p = tmpl; *p; p++) {
        if (*p != '%') {
            if (o + 1 >= cap)
                goto fail;
            out[o++] = *p;
            out[o] = '\0';
            continue;
        }
        p++;
        const char *v = NULL;
        if (*p == '%') {
            if (o + 1 >= cap)
                goto fail;
            out[o++] = '%';
            out[o] = '\0';
            continue;
        }
        if (*p == 'u')
            v = user;
        else if (*p == 'd')
            v = dn;
        if (!v)
            goto fail;
        int n = dirgroups_escape(v, out + o, cap - o);
        if (n < 0)
            goto fail;
        o += (size_t)n;
    }
    return (int)o;
fail:
    out[0] = '\0';
    return -1;
}

int
dirgroups_filter_check(const char *tmpl, const char *allowed, char *why, size_t whylen)
{
    int depth = 0;
    size_t len = strlen(tmpl);
    if (len == 0 || tmpl[0] != '(' || tmpl[len - 1] != ')') {
        snprintf(why, whylen, "a filter is written in parentheses, e.g. (uid=%%u)");
        return -1;
    }
    if (len > DIRGROUPS_FILTER_MAX / 4) {
        snprintf(why, whylen, "filter longer than %d bytes", DIRGROUPS_FILTER_MAX / 4);
        return -1;
    }
    for (const char *p = tmpl; *p; p++) {
        if ((unsigned char)*p < 0x20) {
            snprintf(why, whylen, "control character in the filter");
            return -1;
        }
        if (*p == '%') {
            p++;
            if (*p != '%' && (!*p || !strchr(allowed, *p))) {
                snprintf(why, whylen, "unknown escape %%%c (use %s%s%%%% for a %%)", *p ? *p : '?',
                         strchr(allowed, 'u') ? "%u for the user name, " : "",
                         strchr(allowed, 'd') ? "%d for the user's DN, " : "");
                return -1;
            }
        } else if (*p == '(') {
            depth++;
        } else if (*p == ')' && --depth < 0) {
            break;
        } else if (*p == '\\' && !(p[1] && p[2] && strchr("0123456789abcdefABCDEF", p[1]) &&
                                   strchr("0123456789abcdefABCDEF", p[2]))) {
            snprintf(why, whylen, "a backslash in a filter starts \\XX (two hex digits)");
            return -1;
        }
        if (depth == 0 && p[1]) {
            snprintf(why, whylen, "text after the filter's closing parenthesis");
            return -1;
        }
    }
    if (depth != 0) {
        snprintf(why, whylen, "unbalanced parentheses");
        return -1;
    }
    return 0;
}

/* An attribute description: a name (letter, then letters, digits, '-') or a numeric OID. */
static int
dg_attr_ok(const char *a)
{
    size_t n = strlen(a);
    if (n == 0 || n > 128)
        return 0;
    if (a[0] >= '0' && a[0] <= '9')
        return strspn(a, "0123456789.") == n && a[n - 1] != '.' && !strstr(a, "..");
    return ((a[0] | 0x20) >= 'a' && (a[0] | 0x20) <= 'z') &&
           strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == n;
}

int
dirgroups_cfg_check(const struct dirgroups_cfg *c, const char **key, char *why, size_t whylen)
{
    char *uris = strdup(c->uri), *save = NULL;
    int rc = -1, n = 0;
    *key = "uri";
    if (!uris) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    for (char *u = strtok_r(uris, " \t", &save); u; u = strtok_r(NULL, " \t", &save)) {
        LDAPURLDesc *lud = NULL;
        if (ldap_url_parse(u, &lud) != LDAP_URL_SUCCESS || !lud->lud_scheme ||
            (strcasecmp(lud->lud_scheme, "ldap") != 0 &&
             strcasecmp(lud->lud_scheme, "ldaps") != 0)) {
            snprintf(why, whylen, "\"%.200s\" is not an ldap:// or ldaps:// URI", u);
            ldap_free_urldesc(lud);
            goto out;
        }
        int tls = strcasecmp(lud->lud_scheme, "ldaps") == 0;
        ldap_free_urldesc(lud);
        if (tls && c->starttls) {
            *key = "starttls";
            snprintf(why, whylen, "StartTLS is for ldap:// (ldaps:// is TLS from the start)");
            goto out;
        }
        n++;
    }
    if (n == 0) {
        snprintf(why, whylen, "no URI");
        goto out;
    }
    if (c->group_attr && !dg_attr_ok(c->group_attr)) {
        *key = "group_attr";
        snprintf(why, whylen, "\"%.200s\" is not an attribute name", c->group_attr);
        goto out;
    }
    if (!dg_attr_ok(c->group_name_attr)) {
        *key = "group_name_attr";
        snprintf(why, whylen, "\"%.200s\" is not an attribute name", c->group_name_attr);
        goto out;
    }
    *key = "user_filter";
    if (dirgroups_filter_check(c->user_filter, "u", why, whylen) < 0)
        goto out;
    if (!strstr(c->user_filter, "%u")) {
        snprintf(why, whylen, "the filter must contain %%u (the user name)");
        goto out;
    }
    *key = "group_filter";
    if (c->group_filter && dirgroups_filter_check(c->group_filter, "ud", why, whylen) < 0)
        goto out;
    rc = 0;
out:
    free(uris);
    return rc;
}

/* ---- answers (pure) --------------------------------------------------------------- */

const char *
dirgroups_source_name(enum dirgroups_source s)
{
    switch (s) {
    case DIRGROUPS_DIRECTORY:
        return "directory";
    case DIRGROUPS_CACHED:
        return "directory (cached)";
    case DIRGROUPS_LAST_KNOWN:
        return "directory (last known, directory unavailable)";
    case DIRGROUPS_UNAVAILABLE:
        break;
    }
    return "directory unavailable";
}

int
dirgroups_judge(int have, time_t read_at, time_t now, int ttl_s, int down)
{
    time_t age = now - read_at;
    if (have && age >= 0 && age < ttl_s)
        return DIRGROUPS_CACHED;
    if (!down)
        return -1;
    if (have && age >= 0 && age <= DIRGROUPS_STALE_S)
        return DIRGROUPS_LAST_KNOWN;
    return DIRGROUPS_UNAVAILABLE;
}

int
dirgroups_list_build(struct dirgroups_list *l, const struct users *u, const char *user,
                     const struct dirgroups_answer *dir)
{
    const char *const *cg = NULL;
    size_t ncg = u && user ? users_groups(u, user, &cg) : 0;
    size_t nd = dir && dir->set ? dir->set->n : 0;
    memset(l, 0, sizeof(*l));
    if (ncg + nd == 0)
        return 0;
    l->names = calloc(ncg + nd, sizeof(*l->names));
    l->sources = calloc(ncg + nd, sizeof(*l->sources));
    if (!l->names || !l->sources) {
        dirgroups_list_free(l);
        return -1;
    }
    for (size_t i = 0; i < ncg; i++) {
        l->names[l->n] = cg[i];
        l->sources[l->n++] = "config";
    }
    for (size_t i = 0; i < nd; i++) {
        const char *g = dir->set->names[i];
        size_t k = 0;
        while (k < ncg && strcmp(cg[k], g) != 0)
            k++;
        if (k < ncg)
            continue; /* listed as a config group already */
        l->names[l->n] = g;
        l->sources[l->n++] = dirgroups_source_name(dir->source);
    }
    return 0;
}

void
dirgroups_list_free(struct dirgroups_list *l)
{
    free(l->names);
    free(l->sources);
    memset(l, 0, sizeof(*l));
}

/* ---- the directory protocol ------------------------------------------------------- */

static int
dg_op_timeout_ms(const struct dirgroups_cfg *c)
{
    return c->timeout_ms * 2 > DIRGROUPS_OP_TIMEOUT_MIN_MS ? c->timeout_ms * 2
                                                           : DIRGROUPS_OP_TIMEOUT_MIN_MS;
}

static struct timeval
dg_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* why = "what: the library's reason (the server's diagnostic)". */
static void
dg_why(LDAP *ld, int rc, const char *what, char *why, size_t whylen)
{
    char *diag = NULL;
    if (ld)
        ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
    snprintf(why, whylen, "%s: %s%s%s%s", what, ldap_err2string(rc), diag && *diag ? " (" : "",
             diag && *diag ? diag : "", diag && *diag ? ")" : "");
    ldap_memfree(diag);
}

/* Results that mean the connection cannot be used any more. */
static int
dg_broken_rc(int rc)
{
    return rc == LDAP_SERVER_DOWN || rc == LDAP_TIMEOUT || rc == LDAP_CONNECT_ERROR ||
           rc == LDAP_UNAVAILABLE || rc == LDAP_BUSY || rc == LDAP_LOCAL_ERROR ||
           rc == LDAP_ENCODING_ERROR || rc == LDAP_DECODING_ERROR || rc == LDAP_NO_MEMORY;
}

/*
 * Open a connection for c (TCP, and TLS for ldaps://); *fd is its socket
 * (-1 if libldap does not say), which the caller may publish so that a
 * blocked call can be interrupted.  0, or -1 with why set (nothing to free).
 */
static int
dg_open(const struct dirgroups_cfg *c, LDAP **out, int *fd, char *why, size_t whylen)
{
    LDAP *ld = NULL;
    int v3 = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND, newctx = 0, rc;
    struct timeval nt = dg_tv(c->timeout_ms), ot = dg_tv(dg_op_timeout_ms(c));

    *fd = -1;
    if ((rc = ldap_initialize(&ld, c->uri)) != LDAP_SUCCESS) {
        dg_why(NULL, rc, c->uri, why, whylen);
        return -1;
    }
    if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &nt) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_TIMEOUT, &ot) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand) != LDAP_OPT_SUCCESS ||
        (c->ca_file &&
         ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, c->ca_file) != LDAP_OPT_SUCCESS) ||
        ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &newctx) != LDAP_OPT_SUCCESS) {
        snprintf(why, whylen, "%s: cannot set the connection's options (TLS settings?)", c->uri);
        goto fail;
    }
    if ((rc = ldap_connect(ld)) != LDAP_SUCCESS) {
        dg_why(ld, rc, "connect", why, whylen);
        goto fail;
    }
    if (ldap_get_option(ld, LDAP_OPT_DESC, fd) != LDAP_OPT_SUCCESS)
        *fd = -1;
    *out = ld;
    return 0;
fail:
    ldap_unbind_ext_s(ld, NULL, NULL);
    return -1;
}

/* StartTLS when configured, then bind as the service account.  0, or -1 with why. */
static int
dg_bind(LDAP *ld, const struct dirgroups_cfg *c, char *why, size_t whylen)
{
    struct berval cred = {0, NULL};
    int rc;
    if (c->starttls && (rc = ldap_start_tls_s(ld, NULL, NULL)) != LDAP_SUCCESS) {
        dg_why(ld, rc, "StartTLS", why, whylen);
        return -1;
    }
    if (c->bind_password) {
        cred.bv_val = c->bind_password;
        cred.bv_len = strlen(c->bind_password);
    }
    rc = ldap_sasl_bind_s(ld, c->bind_dn ? c->bind_dn : "", LDAP_SASL_SIMPLE, &cred, NULL, NULL,
                          NULL);
    if (rc != LDAP_SUCCESS) {
        char what[300];
        snprintf(what, sizeof(what), "bind as %.250s", c->bind_dn ? c->bind_dn : "anonymous");
        dg_why(ld, rc, what, why, whylen);
        return -1;
    }
    return 0;
}

/* Names collected for one user: valid, distinct, at most DIRGROUPS_MAX_GROUPS. */
struct dg_names {
    char *v[DIRGROUPS_MAX_GROUPS];
    size_t n;
    int dropped;
};

static void
dg_names_add(struct dg_names *nm, const char *s, size_t len)
{
    if (len == 0 || len >= DIRGROUPS_NAME_MAX || memchr(s, '\0', len))
        return;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return;
    for (size_t i = 0; i < nm->n; i++)
        if (strlen(nm->v[i]) == len && memcmp(nm->v[i], s, len) == 0)
            return;
    if (nm->n == DIRGROUPS_MAX_GROUPS) {
        nm->dropped = 1;
        return;
    }
    if ((nm->v[nm->n] = strndup(s, len)))
        nm->n++;
}

static void
dg_names_clear(struct dg_names *nm)
{
    for (size_t i = 0; i < nm->n; i++)
        free(nm->v[i]);
    nm->n = 0;
}

/* The first value of attr in the entry (NULL if none): a malloc'd copy. */
static char *
dg_first_value(LDAP *ld, LDAPMessage *e, const char *attr, size_t *len)
{
    struct berval **vals = ldap_get_values_len(ld, e, attr);
    char *out = NULL;
    if (vals && vals[0] && (out = malloc(vals[0]->bv_len + 1))) {
        memcpy(out, vals[0]->bv_val, vals[0]->bv_len);
        out[vals[0]->bv_len] = '\0';
        *len = vals[0]->bv_len;
    }
    ldap_value_free_len(vals);
    return out;
}

/*
 * One search, bounded by the lookup's own time limit.  Returns libldap's
 * result code; *res holds the entries on LDAP_SUCCESS and on
 * LDAP_SIZELIMIT_EXCEEDED (the entries that fit), else NULL.
 */
static int
dg_search(LDAP *ld, const struct dirgroups_cfg *c, const char *base, int scope, const char *filter,
          const char *attr, int sizelimit, LDAPMessage **res)
{
    char *attrs[2] = {(char *)attr, NULL};
    struct timeval tv = dg_tv(dg_op_timeout_ms(c));
    *res = NULL;
    int rc = ldap_search_ext_s(ld, base, scope, filter, attrs, 0, NULL, NULL, &tv, sizelimit, res);
    if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
        ldap_msgfree(*res);
        *res = NULL;
    }
    return rc;
}

/*
 * A group_attr value: a DN whose first RDN names the group (cn=staff,ou=...)
 * gives the name directly; another DN is read for group_name_attr; a value
 * that is not a DN is the name.  -1 when the connection broke (why set).
 */
static int
dg_group_from_value(LDAP *ld, const struct dirgroups_cfg *c, struct berval *val,
                    struct dg_names *nm, char *why, size_t whylen)
{
    LDAPDN dn = NULL;
    if (ldap_bv2dn(val, &dn, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS || !dn || !dn[0]) {
        ldap_dnfree(dn);
        dg_names_add(nm, val->bv_val, val->bv_len);
        return 0;
    }
    size_t alen = strlen(c->group_name_attr);
    for (LDAPAVA **ava = dn[0]; *ava; ava++) {
        if ((*ava)->la_attr.bv_len == alen &&
            strncasecmp((*ava)->la_attr.bv_val, c->group_name_attr, alen) == 0 &&
            !((*ava)->la_flags & LDAP_AVA_BINARY)) {
            dg_names_add(nm, (*ava)->la_value.bv_val, (*ava)->la_value.bv_len);
            ldap_dnfree(dn);
            return 0;
        }
    }
    ldap_dnfree(dn);
    char *dnstr = strndup(val->bv_val, val->bv_len);
    LDAPMessage *res = NULL;
    if (!dnstr)
        return 0;
    int rc =
        dg_search(ld, c, dnstr, LDAP_SCOPE_BASE, "(objectClass=*)", c->group_name_attr, 1, &res);
    free(dnstr);
    if (dg_broken_rc(rc)) {
        dg_why(ld, rc, "reading a group", why, whylen);
        return -1;
    }
    LDAPMessage *e = res ? ldap_first_entry(ld, res) : NULL;
    size_t len = 0;
    char *name = e ? dg_first_value(ld, e, c->group_name_attr, &len) : NULL;
    if (name)
        dg_names_add(nm, name, len);
    free(name);
    ldap_msgfree(res);
    return 0;
}

/*
 * Look user up on ld.  1 with *set (NULL: no groups, or not in the
 * directory), or 0 with why; *broken says the connection must be made again.
 */
static int
dg_lookup(LDAP *ld, const struct dirgroups_cfg *c, const char *user, struct dircache_set **set,
          int *broken, char *why, size_t whylen)
{
    char *filter = malloc(DIRGROUPS_FILTER_MAX);
    struct dg_names *nm = calloc(1, sizeof(*nm));
    LDAPMessage *res = NULL, *gres = NULL;
    char *dn = NULL;
    int ok = 0, rc;

    *set = NULL;
    *broken = 0;
    if (!filter || !nm) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    if (dirgroups_filter_expand(c->user_filter, user, NULL, filter, DIRGROUPS_FILTER_MAX) < 0) {
        snprintf(why, whylen, "user_filter too long for this user name");
        goto out;
    }
    rc = dg_search(ld, c, c->base, LDAP_SCOPE_SUBTREE, filter,
                   c->group_attr ? c->group_attr : LDAP_NO_ATTRS, 2, &res);
    if (!res) {
        *broken = dg_broken_rc(rc);
        dg_why(ld, rc, "searching for the user", why, whylen);
        goto out;
    }
    int n = ldap_count_entries(ld, res);
    if (n != 1) {
        if (n > 1)
            log_warnx("directory: user_filter matches more than one entry for user %s: no "
                      "directory groups for it",
                      user);
        ok = 1; /* not in the directory: no groups */
        goto out;
    }
    LDAPMessage *e = ldap_first_entry(ld, res);
    if (c->group_attr) {
        struct berval **vals = ldap_get_values_len(ld, e, c->group_attr);
        for (size_t i = 0; vals && vals[i]; i++) {
            if (dg_group_from_value(ld, c, vals[i], nm, why, whylen) < 0) {
                *broken = 1;
                ldap_value_free_len(vals);
                goto out;
            }
        }
        ldap_value_free_len(vals);
    } else {
        if (!(dn = ldap_get_dn(ld, e))) {
            snprintf(why, whylen, "the user's entry has no DN");
            goto out;
        }
        if (dirgroups_filter_expand(c->group_filter, user, dn, filter, DIRGROUPS_FILTER_MAX) < 0) {
            snprintf(why, whylen, "group_filter too long for this user's DN");
            goto out;
        }
        rc = dg_search(ld, c, c->base, LDAP_SCOPE_SUBTREE, filter, c->group_name_attr,
                       DIRGROUPS_MAX_GROUPS, &gres);
        if (!gres) {
            *broken = dg_broken_rc(rc);
            dg_why(ld, rc, "searching for the user's groups", why, whylen);
            goto out;
        }
        if (rc == LDAP_SIZELIMIT_EXCEEDED)
            nm->dropped = 1;
        for (LDAPMessage *g = ldap_first_entry(ld, gres); g; g = ldap_next_entry(ld, g)) {
            size_t len = 0;
            char *name = dg_first_value(ld, g, c->group_name_attr, &len);
            if (name)
                dg_names_add(nm, name, len);
            free(name);
        }
    }
    if (nm->dropped)
        log_warnx("directory: user %s has more than %d groups (or the server's size limit was "
                  "reached): the rest are ignored",
                  user, DIRGROUPS_MAX_GROUPS);
    if (nm->n && !(*set = dircache_set_new((const char *const *)nm->v, nm->n))) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    ok = 1;
out:
    if (nm) {
        dg_names_clear(nm);
        free(nm);
    }
    free(filter);
    ldap_memfree(dn);
    ldap_msgfree(res);
    ldap_msgfree(gres);
    return ok;
}

int
dirgroups_lookup_now(const struct dirgroups_cfg *cfg, const char *user, struct dircache_set **set,
                     char *why, size_t whylen)
{
    LDAP *ld = NULL;
    int fd, broken, ok = 0;
    *set = NULL;
    if (dg_open(cfg, &ld, &fd, why, whylen) < 0)
        return 0;
    if (dg_bind(ld, cfg, why, whylen) == 0)
        ok = dg_lookup(ld, cfg, user, set, &broken, why, whylen);
    ldap_unbind_ext_s(ld, NULL, NULL);
    return ok;
}

/* ---- the service -------------------------------------------------------------------- */

struct dirgroups_req;

struct dg_flight {
    struct dg_flight *hnext; /* bucket chain */
    struct dg_flight *qnext; /* not yet taken by a thread */
    TAILQ_HEAD(, dirgroups_req) waiters;
    unsigned hash;
    char user[];
};

struct dirgroups_req {
    struct offload_job job; /* first: handed back to the worker with offload_finish() */
    struct dirgroups *d;
    struct dg_flight *f; /* the lookup it waits on; NULL once taken off it (d->mu) */
    TAILQ_ENTRY(dirgroups_req) link;
    struct dirgroups_req *hand_next; /* the lookup thread's list of requests to hand back */
    struct event *timer;             /* the timeout_ms deadline, on the worker's loop */
    dirgroups_cb cb;
    void *arg;
    struct dirgroups_answer ans; /* from the lookup thread */
    int answered;                /* cb ran (worker's thread only) */
    char user[DIRGROUPS_NAME_MAX];
};

struct dg_thread {
    struct dirgroups *d;
    pthread_t tid;
    LDAP *ld;
    unsigned long gen; /* the settings ld was made with */
    int fd;            /* ld's socket, -1 when none (d->mu): dirgroups_free() shuts it down */
};

struct dirgroups {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct dg_conf *conf;
    struct dircache *cache;
    struct dg_flight *buckets[DG_BUCKETS];
    struct dg_flight *qhead, *qtail;
    struct dg_thread threads[DIRGROUPS_THREADS];
    int nthreads;
    int stopping;
    long long down_until_ms; /* monotonic: do not try the directory before */
    int backoff_ms;
    int down_logged;
    struct dirgroups_stats st;
};

static long long
dg_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* User names come from clients: keyed hash (hash.h). */
static unsigned
dg_hash(const char *s)
{
    return (unsigned)hash_bytes(s, strlen(s));
}

/* The flight for user (d->mu held), or NULL. */
static struct dg_flight *
dg_flight_find(struct dirgroups *d, const char *user, unsigned h)
{
    struct dg_flight *f = d->buckets[h % DG_BUCKETS];
    while (f && (f->hash != h || strcmp(f->user, user) != 0))
        f = f->hnext;
    return f;
}

static void
dg_flight_unlink(struct dirgroups *d, struct dg_flight *f)
{
    struct dg_flight **pp = &d->buckets[f->hash % DG_BUCKETS];
    while (*pp != f)
        pp = &(*pp)->hnext;
    *pp = f->hnext;
}

/* What the cache knows for user when the directory cannot answer now (any thread). */
static struct dirgroups_answer
dg_fallback(struct dircache *cache, const char *user, int ttl_s)
{
    struct dirgroups_answer a = {DIRGROUPS_UNAVAILABLE, NULL};
    time_t read_at = 0;
    int have = dircache_get(cache, user, &a.set, &read_at);
    a.source = (enum dirgroups_source)dirgroups_judge(have, read_at, time(NULL), ttl_s, 1);
    if (a.source == DIRGROUPS_UNAVAILABLE) {
        dircache_set_unref(a.set);
        a.set = NULL;
    }
    return a;
}

static void
dg_req_free(struct dirgroups_req *r)
{
    if (r->timer)
        event_free(r->timer);
    dircache_set_unref(r->ans.set);
    free(r);
}

/* The hand-back, on the worker's thread (offload_complete). */
static void
dg_req_done(struct offload_job *job)
{
    struct dirgroups_req *r = (struct dirgroups_req *)job;
    if (r->answered)
        return; /* the deadline answered it */
    r->answered = 1;
    evtimer_del(r->timer);
    struct dirgroups_answer a = r->ans;
    r->ans.set = NULL;
    r->cb(a, r->arg);
}

static void
dg_req_release(struct offload_job *job)
{
    dg_req_free((struct dirgroups_req *)job);
}

/* timeout_ms passed: answer from the cache; a lookup still running fills it later. */
static void
dg_req_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct dirgroups_req *r = arg;
    struct dirgroups *d = r->d;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&d->mu);
    int waiting = r->f != NULL;
    if (waiting) {
        TAILQ_REMOVE(&r->f->waiters, r, link);
        r->f = NULL;
    }
    int ttl = d->conf->c.cache_ttl_s;
    d->st.timeouts++;
    pthread_mutex_unlock(&d->mu);
    struct dirgroups_answer a = dg_fallback(d->cache, r->user, ttl);
    r->answered = 1;
    dirgroups_cb cb = r->cb;
    void *cbarg = r->arg;
    if (waiting)
        dg_req_free(r); /* never handed to the thread: ours to free */
    /* else the thread's hand-back is on its way and releases r */
    cb(a, cbarg);
}

int
dirgroups_get(struct dirgroups *d, struct worker *w, const char *user, dirgroups_cb cb, void *arg,
              struct dirgroups_answer *now, struct dirgroups_req **reqp)
{
    struct dircache_set *set = NULL;
    time_t read_at = 0;
    size_t ulen = strlen(user);
    *reqp = NULL;
    if (ulen == 0 || ulen >= DIRGROUPS_NAME_MAX)
        return -1;
    int have = dircache_get(d->cache, user, &set, &read_at);

    pthread_mutex_lock(&d->mu);
    int ttl = d->conf->c.cache_ttl_s, tmo = d->conf->c.timeout_ms;
    int down = d->stopping || dg_mono_ms() < d->down_until_ms;
    int j = dirgroups_judge(have, read_at, time(NULL), ttl, down);
    if (j >= 0) {
        if (j == DIRGROUPS_CACHED)
            d->st.hits++;
        else
            d->st.fallbacks++;
    }
    pthread_mutex_unlock(&d->mu);
    if (j >= 0) {
        now->source = (enum dirgroups_source)j;
        now->set = set;
        if (j == DIRGROUPS_UNAVAILABLE) {
            dircache_set_unref(set);
            now->set = NULL;
        }
        return 1;
    }
    dircache_set_unref(set);

    struct dirgroups_req *r = calloc(1, sizeof(*r));
    struct dg_flight *nf = calloc(1, sizeof(*nf) + ulen + 1);
    if (!r || !nf || !(r->timer = evtimer_new(w->base, dg_req_deadline, r))) {
        free(nf);
        if (r)
            dg_req_free(r);
        return -1;
    }
    r->job.w = w;
    r->job.owner = r;
    r->job.done = dg_req_done;
    r->job.release = dg_req_release;
    r->d = d;
    r->cb = cb;
    r->arg = arg;
    memcpy(r->user, user, ulen + 1);
    memcpy(nf->user, user, ulen + 1);
    nf->hash = dg_hash(user);
    TAILQ_INIT(&nf->waiters);

    pthread_mutex_lock(&d->mu);
    struct dg_flight *f = dg_flight_find(d, user, nf->hash);
    if (!f) {
        f = nf;
        nf = NULL;
        f->hnext = d->buckets[f->hash % DG_BUCKETS];
        d->buckets[f->hash % DG_BUCKETS] = f;
        if (d->qtail)
            d->qtail->qnext = f;
        else
            d->qhead = f;
        d->qtail = f;
        pthread_cond_signal(&d->cv);
    }
    TAILQ_INSERT_TAIL(&f->waiters, r, link);
    r->f = f;
    pthread_mutex_unlock(&d->mu);
    free(nf);

    struct timeval tv = dg_tv(tmo);
    evtimer_add(r->timer, &tv);
    *reqp = r;
    return 0;
}

void
dirgroups_cancel(struct dirgroups_req *r)
{
    struct dirgroups *d = r->d;
    evtimer_del(r->timer);
    pthread_mutex_lock(&d->mu);
    int waiting = r->f != NULL;
    if (waiting) {
        TAILQ_REMOVE(&r->f->waiters, r, link);
        r->f = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    if (waiting)
        dg_req_free(r);
    else
        offload_cancel(&r->job); /* being handed back: released on the worker */
}

/* Drop the thread's connection. */
static void
dg_drop(struct dg_thread *t)
{
    pthread_mutex_lock(&t->d->mu);
    LDAP *ld = t->ld;
    t->ld = NULL;
    t->fd = -1;
    pthread_mutex_unlock(&t->d->mu);
    if (ld)
        ldap_unbind_ext_s(ld, NULL, NULL);
}

/* One user's lookup on the thread's connection, connecting (again) when needed. */
static int
dg_thread_lookup(struct dg_thread *t, const struct dg_conf *k, const char *user,
                 struct dircache_set **set, char *why, size_t whylen)
{
    if (t->ld && t->gen != k->gen)
        dg_drop(t);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = 0, broken = 0;
        if (!t->ld) {
            LDAP *ld = NULL;
            int fd = -1;
            if (dg_open(&k->c, &ld, &fd, why, whylen) < 0)
                return 0;
            pthread_mutex_lock(&t->d->mu);
            t->ld = ld;
            t->fd = fd;
            t->gen = k->gen;
            if (t->d->stopping && fd >= 0)
                shutdown(fd, SHUT_RDWR);
            pthread_mutex_unlock(&t->d->mu);
            if (dg_bind(ld, &k->c, why, whylen) < 0) {
                dg_drop(t);
                return 0;
            }
            fresh = 1;
        }
        if (dg_lookup(t->ld, &k->c, user, set, &broken, why, whylen))
            return 1;
        if (!broken)
            return 0;
        dg_drop(t);
        if (fresh)
            return 0; /* a new connection failed: no point in another */
    }
    return 0;
}

enum dg_outcome { DG_READ, DG_FAILED, DG_SKIPPED /* the directory is in its back-off */ };

/*
 * A lookup ended (d->mu held): record the outcome, and take every waiter off
 * the flight with its answer.  Returns the requests to hand back.
 */
static struct dirgroups_req *
dg_settle(struct dirgroups *d, struct dg_flight *f, const struct dg_conf *k, enum dg_outcome o,
          struct dircache_set *set, const char *why)
{
    struct dirgroups_answer a;
    struct dirgroups_req *list = NULL, *r;

    if (o == DG_READ) {
        a.source = DIRGROUPS_DIRECTORY;
        a.set = dircache_set_ref(set);
        if (k == d->conf) /* not read with settings a reload has replaced */
            dircache_put(d->cache, f->user, set, time(NULL));
        d->backoff_ms = 0;
        d->down_until_ms = 0;
        if (d->down_logged)
            log_info("directory %s answers again", k->c.uri);
        d->down_logged = 0;
    } else {
        if (o == DG_FAILED) {
            d->st.failures++;
            d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : DIRGROUPS_BACKOFF_MIN_MS;
            if (d->backoff_ms > DIRGROUPS_BACKOFF_MAX_MS)
                d->backoff_ms = DIRGROUPS_BACKOFF_MAX_MS;
            d->down_until_ms = dg_mono_ms() + d->backoff_ms;
            if (!d->down_logged)
                log_warnx("directory %s: %s; users keep the groups last read for up to %d s, "
                          "others get none until it answers",
                          k->c.uri, why, DIRGROUPS_STALE_S);
            d->down_logged = 1;
        }
        a = dg_fallback(d->cache, f->user, k->c.cache_ttl_s);
    }
    dg_flight_unlink(d, f);
    while ((r = TAILQ_FIRST(&f->waiters))) {
        TAILQ_REMOVE(&f->waiters, r, link);
        r->f = NULL;
        r->ans.source = a.source;
        r->ans.set = dircache_set_ref(a.set);
        r->hand_next = list;
        list = r;
    }
    dircache_set_unref(a.set);
    return list;
}

static void *
dg_main(void *arg)
{
    struct dg_thread *t = arg;
    struct dirgroups *d = t->d;
    char why[512];

    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->qhead && !d->stopping)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->stopping)
            break;
        struct dg_flight *f = d->qhead;
        d->qhead = f->qnext;
        if (!d->qhead)
            d->qtail = NULL;
        struct dg_conf *k = d->conf;
        atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
        enum dg_outcome o = dg_mono_ms() < d->down_until_ms ? DG_SKIPPED : DG_FAILED;
        d->st.lookups += o != DG_SKIPPED;
        pthread_mutex_unlock(&d->mu);

        struct dircache_set *set = NULL;
        if (o != DG_SKIPPED && dg_thread_lookup(t, k, f->user, &set, why, sizeof(why)))
            o = DG_READ;

        pthread_mutex_lock(&d->mu);
        struct dirgroups_req *list = dg_settle(d, f, k, o, set, why);
        pthread_mutex_unlock(&d->mu);
        while (list) {
            struct dirgroups_req *next = list->hand_next;
            offload_finish(&list->job); /* from here the worker owns it */
            list = next;
        }
        dircache_set_unref(set);
        free(f);
        dg_conf_unref(k);
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    dg_drop(t);
    return NULL;
}

struct dirgroups *
dirgroups_new(const struct dirgroups_cfg *cfg, char *err, size_t errlen)
{
    struct dirgroups *d = calloc(1, sizeof(*d));
    if (!d || !(d->conf = dg_conf_new(cfg, 1)) ||
        !(d->cache = dircache_local_new(DIRGROUPS_CACHE_USERS, DIRGROUPS_STALE_S))) {
        snprintf(err, errlen, "directory: out of memory");
        goto fail;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    for (; d->nthreads < DIRGROUPS_THREADS; d->nthreads++) {
        struct dg_thread *t = &d->threads[d->nthreads];
        t->d = d;
        t->fd = -1;
        int e = pthread_create(&t->tid, NULL, dg_main, t);
        if (e != 0) {
            snprintf(err, errlen, "directory: cannot start a lookup thread: %s", strerror(e));
            dirgroups_free(d);
            return NULL;
        }
        pthread_setname_np(t->tid, "aigate-ldap");
    }
    return d;
fail:
    if (d) {
        dg_conf_unref(d->conf);
        dircache_free(d->cache);
    }
    free(d);
    return NULL;
}

int
dirgroups_reconfigure(struct dirgroups *d, const struct dirgroups_cfg *cfg)
{
    pthread_mutex_lock(&d->mu);
    int same = dg_cfg_equal(&d->conf->c, cfg);
    unsigned long gen = d->conf->gen + 1;
    pthread_mutex_unlock(&d->mu);
    if (same)
        return 0;
    struct dg_conf *k = dg_conf_new(cfg, gen);
    if (!k)
        return -1;
    pthread_mutex_lock(&d->mu);
    struct dg_conf *old = d->conf;
    d->conf = k;
    d->down_until_ms = 0;
    d->backoff_ms = 0;
    d->down_logged = 0;
    pthread_mutex_unlock(&d->mu);
    dircache_clear(d->cache);
    dg_conf_unref(old);
    return 0;
}

void
dirgroups_free(struct dirgroups *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->stopping = 1;
    for (int i = 0; i < d->nthreads; i++)
        if (d->threads[i].fd >= 0)
            shutdown(d->threads[i].fd, SHUT_RDWR); /* a blocked directory call returns */
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    for (int i = 0; i < d->nthreads; i++)
        pthread_join(d->threads[i].tid, NULL);
    /* Flights nobody took: their requests were cancelled with their connections. */
    for (struct dg_flight *f = d->qhead, *next; f; f = next) {
        next = f->qnext;
        free(f);
    }
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    dircache_free(d->cache);
    dg_conf_unref(d->conf);
    free(d);
}

void
dirgroups_stats(struct dirgroups *d, struct dirgroups_stats *st)
{
    pthread_mutex_lock(&d->mu);
    *st = d->st;
    pthread_mutex_unlock(&d->mu);
}
