/*
 * Config loading: libconfig text -> an immutable, reference-counted struct
 * config.  Every key has a default, so an empty file is a valid config.
 * Unknown keys are errors that name the key; every error carries FILE:LINE.
 * The sections owned by other modules (services, policy, groups, addresses,
 * pages) are handed to those modules' loaders, so one snapshot holds
 * everything a request needs.
 */
#include "aigate/core/config.h"

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aigate/caution/ackredis.h"
#include "aigate/http/pages.h"
#include "aigate/identity/auth.h"
#include "aigate/identity/dirgroups.h"
#include "aigate/identity/negotiate.h"
#include "aigate/identity/users.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/dlp.h"
#include "aigate/rules/policy.h"
#include "aigate/tls/tls_mitm.h"

struct cfg_ctx {
    const char *path;
    const char *dir;
    char *err;
    size_t errlen;
};

/* Like config_setting_get_member(), but a NULL group (an absent section) has no members. */
static const config_setting_t *
cfg_member(const config_setting_t *g, const char *key)
{
    return g ? config_setting_get_member(g, key) : NULL;
}

static int cfg_fail(struct cfg_ctx *x, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
cfg_fail(struct cfg_ctx *x, const config_setting_t *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *file = s ? config_setting_source_file(s) : NULL;
    unsigned line = s ? config_setting_source_line(s) : 0;
    if (!file)
        file = x->path;
    if (line)
        snprintf(x->err, x->errlen, "%s:%u: %s", file, line, msg);
    else
        snprintf(x->err, x->errlen, "%s: %s", file, msg);
    return -1;
}

/* Reject members of group s that are not in the NULL-terminated list known. */
static int
cfg_known_keys(struct cfg_ctx *x, const config_setting_t *s, const char *where,
               const char *const *known)
{
    int n = s ? config_setting_length(s) : 0;
    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        const char *name = config_setting_name(m);
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            if (name && strcmp(name, *k) == 0)
                ok = 1;
        if (!ok)
            return cfg_fail(x, m, "unknown key \"%s\"%s%s", name ? name : "?", where ? " in " : "",
                            where ? where : "");
    }
    return 0;
}

static int
cfg_int(struct cfg_ctx *x, const config_setting_t *grp, const char *key, long long lo, long long hi,
        long long *out)
{
    const config_setting_t *s = cfg_member(grp, key);
    if (!s)
        return 0;
    long long v;
    if (config_setting_type(s) == CONFIG_TYPE_INT)
        v = config_setting_get_int(s);
    else if (config_setting_type(s) == CONFIG_TYPE_INT64)
        v = config_setting_get_int64(s);
    else
        return cfg_fail(x, s, "\"%s\" must be an integer", key);
    if (v < lo || v > hi)
        return cfg_fail(x, s, "\"%s\" must be between %lld and %lld", key, lo, hi);
    *out = v;
    return 0;
}

static int
cfg_bool(struct cfg_ctx *x, const config_setting_t *grp, const char *key, int *out)
{
    const config_setting_t *s = cfg_member(grp, key);
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return cfg_fail(x, s, "\"%s\" must be true or false", key);
    *out = config_setting_get_bool(s);
    return 0;
}

static int
cfg_str(struct cfg_ctx *x, const config_setting_t *grp, const char *key, const char **out)
{
    const config_setting_t *s = cfg_member(grp, key);
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return cfg_fail(x, s, "\"%s\" must be a string", key);
    *out = config_setting_get_string(s);
    return 0;
}

/* Resolve p against the folder of the file that named it (setting s). */
static char *
cfg_path(struct cfg_ctx *x, const config_setting_t *s, const char *p)
{
    char *out = NULL;
    if (p[0] == '/')
        return strdup(p);
    const char *dir = x->dir;
    char *tmp = NULL;
    const char *file = s ? config_setting_source_file(s) : NULL;
    if (file) {
        tmp = strdup(file);
        if (tmp)
            dir = dirname(tmp);
    }
    if (asprintf(&out, "%s/%s", dir, p) < 0)
        out = NULL;
    free(tmp);
    return out;
}

static int
cfg_path_key(struct cfg_ctx *x, const config_setting_t *grp, const char *key, const char *def,
             char **out)
{
    const char *v = def;
    if (cfg_str(x, grp, key, &v) < 0)
        return -1;
    free(*out);
    *out = NULL;
    if (!v)
        return 0;
    const config_setting_t *s = cfg_member(grp, key);
    *out = cfg_path(x, s, v);
    return *out ? 0 : cfg_fail(x, s, "out of memory");
}

/* Accept a string or a list/array of strings; calls fn for each element. */
static int
cfg_strings(struct cfg_ctx *x, const config_setting_t *s, const char *key,
            int (*fn)(struct cfg_ctx *, const config_setting_t *, const char *, void *), void *arg)
{
    if (config_setting_type(s) == CONFIG_TYPE_STRING)
        return fn(x, s, config_setting_get_string(s), arg);
    if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST)
        return cfg_fail(x, s, "\"%s\" must be a list of strings", key);
    int n = config_setting_length(s);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING)
            return cfg_fail(x, e, "\"%s\" must be a list of strings", key);
        if (fn(x, e, config_setting_get_string(e), arg) < 0)
            return -1;
    }
    return 0;
}

static int
add_listen(struct cfg_ctx *x, const config_setting_t *s, const char *v, void *arg)
{
    struct config *c = arg;
    struct listen_addr la = {0};
    if (netaddr_parse_listen(v, &la.ss, &la.len) < 0)
        return cfg_fail(x, s, "bad listen address \"%s\" (want host:port or [v6]:port)", v);
    struct listen_addr *nv = realloc(c->listen, (c->nlisten + 1) * sizeof(*nv));
    if (!nv)
        return cfg_fail(x, s, "out of memory");
    c->listen = nv;
    if (!(la.text = strdup(v)))
        return cfg_fail(x, s, "out of memory");
    c->listen[c->nlisten++] = la;
    return 0;
}

static int
add_network(struct cfg_ctx *x, const config_setting_t *s, const char *v, void *arg)
{
    struct cidr_list *l = arg;
    struct cidr cd;
    if (cidr_parse(v, &cd) < 0)
        return cfg_fail(x, s, "bad network \"%s\" (want CIDR like 10.0.0.0/8)", v);
    struct cidr *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (!nv)
        return cfg_fail(x, s, "out of memory");
    l->v = nv;
    l->v[l->n++] = cd;
    return 0;
}

static int
add_nameserver(struct cfg_ctx *x, const config_setting_t *s, const char *v, void *arg)
{
    struct config *c = arg;
    char **nv = realloc(c->dns.nameservers, (c->dns.nnameservers + 1) * sizeof(*nv));
    if (!nv)
        return cfg_fail(x, s, "out of memory");
    c->dns.nameservers = nv;
    if (!(nv[c->dns.nnameservers] = strdup(v)))
        return cfg_fail(x, s, "out of memory");
    c->dns.nnameservers++;
    return 0;
}

static int
load_ports(struct cfg_ctx *x, struct config *c, const config_setting_t *s)
{
    if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST)
        return cfg_fail(x, s, "\"connect_ports\" must be a list of ports");
    int n = config_setting_length(s);
    free(c->connect_ports);
    c->connect_ports = calloc((size_t)n + 1, sizeof(uint16_t));
    c->nconnect_ports = 0;
    if (!c->connect_ports)
        return cfg_fail(x, s, "out of memory");
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_INT)
            return cfg_fail(x, e, "\"connect_ports\" must be a list of ports");
        int p = config_setting_get_int(e);
        if (p < 1 || p > 65535)
            return cfg_fail(x, e, "port %d out of range 1-65535", p);
        c->connect_ports[c->nconnect_ports++] = (uint16_t)p;
    }
    return 0;
}

static int
load_limits(struct cfg_ctx *x, struct config *c, const config_setting_t *g)
{
    static const char *const keys[] = {
        "max_connections", "max_header_bytes",   "max_body_inspect_bytes", "header_timeout_ms",
        "idle_timeout_ms", "connect_timeout_ms", "shutdown_grace_ms",      NULL};
    struct limits *l = &c->limits;
    long long v;
    if (cfg_known_keys(x, g, "limits", keys) < 0)
        return -1;
#define LIM(key, field, lo, hi)                                                                    \
    do {                                                                                           \
        v = (long long)l->field;                                                                   \
        if (cfg_int(x, g, key, lo, hi, &v) < 0)                                                    \
            return -1;                                                                             \
        l->field = (__typeof__(l->field))v;                                                        \
    } while (0)
    LIM("max_connections", max_connections, 1, 10000000);
    LIM("max_header_bytes", max_header_bytes, 1024, 16 * 1024 * 1024);
    LIM("max_body_inspect_bytes", max_body_inspect_bytes, 0, 1024LL * 1024 * 1024);
    LIM("header_timeout_ms", header_timeout_ms, 1, 3600000);
    LIM("idle_timeout_ms", idle_timeout_ms, 1, 86400000);
    LIM("connect_timeout_ms", connect_timeout_ms, 1, 3600000);
    LIM("shutdown_grace_ms", shutdown_grace_ms, 0, 3600000);
#undef LIM
    return 0;
}

/*
 * A file holding a secret (keytab, directory password), opened or named by
 * st: refused when others may read or write it, or its group may write it.
 * Group read is allowed: it is how a file owned by root is shown to the
 * service's group (chgrp aigate FILE; chmod 0640 FILE).
 */
static int
cfg_secret_mode(struct cfg_ctx *x, const config_setting_t *s, const char *what, const char *path,
                const struct stat *st)
{
    unsigned mode = (unsigned)st->st_mode & 07777;
    if (!S_ISREG(st->st_mode))
        return cfg_fail(x, s, "%s %s is not a regular file", what, path);
    if (st->st_mode & S_IROTH)
        return cfg_fail(x, s, "%s %s is world-readable (mode %04o): chmod o-rwx %s", what, path,
                        mode, path);
    if (st->st_mode & S_IWOTH)
        return cfg_fail(x, s, "%s %s is world-writable (mode %04o): chmod o-rwx %s", what, path,
                        mode, path);
    if (st->st_mode & S_IWGRP)
        return cfg_fail(x, s, "%s %s is writable by its group (mode %04o): chmod g-w %s", what,
                        path, mode, path);
    return 0;
}

static int
load_auth(struct cfg_ctx *x, struct config *c, const config_setting_t *g)
{
    static const char *const keys[] = {"mode",      "realm",       "htpasswd", "keytab",
                                       "principal", "strip_realm", NULL};
    const char *mode = "none", *realm = "aigate", *principal = "";
    if (cfg_known_keys(x, g, "auth", keys) < 0 || cfg_str(x, g, "mode", &mode) < 0 ||
        cfg_str(x, g, "realm", &realm) < 0)
        return -1;
    if (strcmp(mode, "none") == 0)
        c->auth.mode = AUTH_NONE;
    else if (strcmp(mode, "basic") == 0)
        c->auth.mode = AUTH_BASIC;
    else if (strcmp(mode, "address") == 0)
        c->auth.mode = AUTH_ADDRESS;
    else if (strcmp(mode, "negotiate") == 0)
        c->auth.mode = AUTH_NEGOTIATE;
    else
        return cfg_fail(x, cfg_member(g, "mode"),
                        "auth mode \"%s\" is not one of basic, negotiate, address, none", mode);
    for (const char *p = realm; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            return cfg_fail(x, cfg_member(g, "realm"),
                            "realm must not contain quotes, backslashes or control characters");
    free(c->auth.realm);
    c->auth.realm = strdup(realm);
    if (!c->auth.realm)
        return cfg_fail(x, g, "out of memory");
    if (c->auth.mode == AUTH_BASIC &&
        cfg_path_key(x, g, "htpasswd", "users.htpasswd", &c->auth.htpasswd) < 0)
        return -1;
    if (c->auth.mode != AUTH_NEGOTIATE)
        return 0;
    c->auth.strip_realm = 1;
    if (cfg_path_key(x, g, "htpasswd", NULL, &c->auth.htpasswd) < 0 ||
        cfg_path_key(x, g, "keytab", "proxy.keytab", &c->auth.keytab) < 0 ||
        cfg_str(x, g, "principal", &principal) < 0 ||
        cfg_bool(x, g, "strip_realm", &c->auth.strip_realm) < 0)
        return -1;
    for (const char *p = principal; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return cfg_fail(x, cfg_member(g, "principal"),
                            "principal must not contain control characters");
    free(c->auth.principal);
    c->auth.principal = NULL;
    if (*principal && !(c->auth.principal = strdup(principal)))
        return cfg_fail(x, g, "out of memory");
    return 0;
}

/*
 * The Kerberos acceptor: the keytab must be a private file holding a key for
 * the principal; the credential is acquired here so that -t finds what the
 * proxy would.
 */
static int
load_negotiate(struct cfg_ctx *x, struct config *c, const config_setting_t *g)
{
    const config_setting_t *s = cfg_member(g, "keytab") ? cfg_member(g, "keytab") : g;
    char msg[768];
    struct stat st;
    if (stat(c->auth.keytab, &st) < 0)
        return cfg_fail(x, s, "keytab %s: %s", c->auth.keytab, strerror(errno));
    if (cfg_secret_mode(x, s, "keytab", c->auth.keytab, &st) < 0)
        return -1;
    if (negotiate_keytab_check(c->auth.keytab, c->auth.principal, msg, sizeof(msg)) < 0)
        return cfg_fail(
            x, cfg_member(g, "principal") && c->auth.principal ? cfg_member(g, "principal") : s,
            "%s", msg);
    if (!(c->negotiate = negotiate_new(c->auth.keytab, c->auth.principal, c->auth.strip_realm, msg,
                                       sizeof(msg))))
        return cfg_fail(x, s, "%s", msg);
    return 0;
}

/* bind_password_file: one line (its line end is not part of the password), a private file. */
static int
cfg_read_password(struct cfg_ctx *x, const config_setting_t *s, const char *path, char **out)
{
    char buf[1026];
    struct stat st;
    ssize_t n = 0, r;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY), rc = -1;
    if (fd < 0)
        return cfg_fail(x, s, "bind_password_file %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        cfg_fail(x, s, "bind_password_file %s: %s", path, strerror(errno));
        goto out;
    }
    if (cfg_secret_mode(x, s, "bind_password_file", path, &st) < 0)
        goto out;
    while (n < (ssize_t)sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - (size_t)n)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            cfg_fail(x, s, "bind_password_file %s: %s", path, strerror(errno));
            goto out;
        }
        n += r;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n == 0 || n > 1024 || memchr(buf, '\0', (size_t)n) || memchr(buf, '\n', (size_t)n)) {
        cfg_fail(x, s, "bind_password_file %s must hold the password on one line (1-1024 bytes)",
                 path);
        goto out;
    }
    if (!(*out = strndup(buf, (size_t)n))) {
        cfg_fail(x, s, "out of memory");
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    close(fd);
    return rc;
}

/* The `ldap` section: where users' groups come from besides `groups`. */
static int
load_ldap(struct cfg_ctx *x, struct config *c, const config_setting_t *g)
{
    static const char *const keys[] = {
        "uri",         "base",       "bind_dn",      "bind_password_file",
        "user_filter", "group_attr", "group_filter", "group_name_attr",
        "cache_ttl_s", "timeout_ms", "starttls",     "ca_file",
        NULL};
    const char *uri = NULL, *base = NULL, *bind_dn = "",
               *user_filter = "(&(objectClass=person)(uid=%u))", *group_attr = NULL,
               *group_filter = NULL, *name_attr = "cn", *key = NULL;
    long long ttl = 300, tmo = 2000;
    int starttls = 0;
    char *pwfile = NULL, *ca_file = NULL, why[256];
    struct dirgroups_cfg *d = NULL;

    if (cfg_known_keys(x, g, "ldap", keys) < 0 || cfg_str(x, g, "uri", &uri) < 0 ||
        cfg_str(x, g, "base", &base) < 0 || cfg_str(x, g, "bind_dn", &bind_dn) < 0 ||
        cfg_str(x, g, "user_filter", &user_filter) < 0 ||
        cfg_str(x, g, "group_attr", &group_attr) < 0 ||
        cfg_str(x, g, "group_filter", &group_filter) < 0 ||
        cfg_str(x, g, "group_name_attr", &name_attr) < 0 ||
        cfg_int(x, g, "cache_ttl_s", 0, 86400, &ttl) < 0 ||
        cfg_int(x, g, "timeout_ms", 10, 60000, &tmo) < 0 ||
        cfg_bool(x, g, "starttls", &starttls) < 0 ||
        cfg_path_key(x, g, "bind_password_file", NULL, &pwfile) < 0 ||
        cfg_path_key(x, g, "ca_file", NULL, &ca_file) < 0)
        goto fail;
    if (!uri || !*uri) {
        cfg_fail(x, g, "ldap: \"uri\" is required (e.g. \"ldap://dc1.corp.example\")");
        goto fail;
    }
    if (!base || !*base) {
        cfg_fail(x, g, "ldap: \"base\" is required (e.g. \"dc=corp,dc=example\")");
        goto fail;
    }
    if (group_attr && group_filter) {
        cfg_fail(x, cfg_member(g, "group_filter"),
                 "ldap: set group_attr or group_filter, not both");
        goto fail;
    }
    if (*bind_dn && !pwfile) {
        cfg_fail(x, cfg_member(g, "bind_dn"), "ldap: bind_dn needs bind_password_file");
        goto fail;
    }
    if (!*bind_dn && pwfile) {
        cfg_fail(x, cfg_member(g, "bind_password_file"),
                 "ldap: bind_password_file without bind_dn");
        goto fail;
    }
    if (ca_file && access(ca_file, R_OK) < 0) {
        cfg_fail(x, cfg_member(g, "ca_file"), "ca_file %s: %s", ca_file, strerror(errno));
        goto fail;
    }
    if (!(d = calloc(1, sizeof(*d))) || !(d->uri = strdup(uri)) || !(d->base = strdup(base)) ||
        (*bind_dn && !(d->bind_dn = strdup(bind_dn))) || !(d->user_filter = strdup(user_filter)) ||
        !(d->group_name_attr = strdup(name_attr)) ||
        (group_filter && !(d->group_filter = strdup(group_filter))) ||
        (!group_filter && !(d->group_attr = strdup(group_attr ? group_attr : "memberOf")))) {
        cfg_fail(x, g, "out of memory");
        goto fail;
    }
    d->ca_file = ca_file;
    ca_file = NULL;
    d->cache_ttl_s = (int)ttl;
    d->timeout_ms = (int)tmo;
    d->starttls = starttls;
    if (dirgroups_cfg_check(d, &key, why, sizeof(why)) < 0) {
        cfg_fail(x, cfg_member(g, key) ? cfg_member(g, key) : g, "ldap %s: %s", key, why);
        goto fail;
    }
    if (pwfile &&
        cfg_read_password(x, cfg_member(g, "bind_password_file"), pwfile, &d->bind_password) < 0)
        goto fail;
    free(pwfile);
    dirgroups_cfg_free(c->ldap);
    c->ldap = d;
    return 0;
fail:
    free(pwfile);
    free(ca_file);
    dirgroups_cfg_free(d);
    return -1;
}

static int
load_tls(struct cfg_ctx *x, struct config *c, const config_setting_t *g)
{
    static const char *const keys[] = {"intercept",        "ca_cert",       "ca_key",
                                       "upstream_ca_file", "warn_fallback", NULL};
    const char *wf = "block";
    if (cfg_known_keys(x, g, "tls", keys) < 0 ||
        cfg_bool(x, g, "intercept", &c->tls.intercept) < 0 ||
        cfg_path_key(x, g, "ca_cert", "../certs/ca.pem", &c->tls.ca_cert) < 0 ||
        cfg_path_key(x, g, "ca_key", "../certs/ca.key", &c->tls.ca_key) < 0 ||
        cfg_path_key(x, g, "upstream_ca_file", "/etc/ssl/certs/ca-certificates.crt",
                     &c->tls.upstream_ca_file) < 0 ||
        cfg_str(x, g, "warn_fallback", &wf) < 0)
        return -1;
    if (strcmp(wf, "block") == 0)
        c->tls.warn_fallback_block = 1;
    else if (strcmp(wf, "allow") == 0)
        c->tls.warn_fallback_block = 0;
    else
        return cfg_fail(x, cfg_member(g, "warn_fallback"),
                        "warn_fallback must be \"block\" or \"allow\"");
    return 0;
}

static int
load_ack(struct cfg_ctx *x, struct config *c, const config_setting_t *g)
{
    static const char *const keys[] = {"ttl_s", "state_file", "secret_file", "store", NULL};
    long long v = c->ack.ttl_s;
    const char *store = "";
    if (cfg_known_keys(x, g, "ack", keys) < 0 || cfg_int(x, g, "ttl_s", 1, 31536000, &v) < 0 ||
        cfg_path_key(x, g, "state_file", "acks.state", &c->ack.state_file) < 0 ||
        cfg_path_key(x, g, "secret_file", "ack.secret", &c->ack.secret_file) < 0 ||
        cfg_str(x, g, "store", &store) < 0)
        return -1;
    c->ack.ttl_s = (int)v;
    free(c->ack.store);
    c->ack.store = NULL;
    if (store[0]) {
        /* The syntax only: whether the server answers is the running proxy's business. */
        struct ack_redis_url u;
        char why[256];
        if (ack_redis_url_parse(store, &u, why, sizeof(why)) < 0)
            return cfg_fail(x, cfg_member(g, "store"), "%s", why);
        if (!(c->ack.store = strdup(store)))
            return cfg_fail(x, g, "out of memory");
    }
    return 0;
}

/* audit.node: a name for machines and people alike, 1-64 of [A-Za-z0-9._-]. */
static int
cfg_node_ok(const char *v)
{
    size_t n = strlen(v);

    if (n < 1 || n > 64)
        return 0;
    return strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static int
load_audit(struct cfg_ctx *x, struct config *c, const config_setting_t *g)
{
    static const char *const keys[] = {"path",         "scope", "log_query",    "chain_key_file",
                                       "rotate_bytes", "keep",  "checkpoint_s", "checkpoint_file",
                                       "node",         NULL};
    const char *scope = "all", *node = NULL;
    long long rb = (long long)c->audit.rotate_bytes, keep = c->audit.keep,
              cks = c->audit.checkpoint_s;
    if (cfg_known_keys(x, g, "audit", keys) < 0 ||
        cfg_path_key(x, g, "path", "audit.jsonl", &c->audit.path) < 0 ||
        cfg_path_key(x, g, "chain_key_file", "audit.key", &c->audit.chain_key_file) < 0 ||
        cfg_path_key(x, g, "checkpoint_file", NULL, &c->audit.checkpoint_file) < 0 ||
        cfg_str(x, g, "scope", &scope) < 0 ||
        cfg_bool(x, g, "log_query", &c->audit.log_query) < 0 ||
        cfg_int(x, g, "rotate_bytes", 0, LLONG_MAX, &rb) < 0 ||
        cfg_int(x, g, "keep", 0, 100000, &keep) < 0 ||
        cfg_int(x, g, "checkpoint_s", 0, 86400, &cks) < 0 || cfg_str(x, g, "node", &node) < 0)
        return -1;
    if (strcmp(scope, "all") == 0)
        c->audit.scope_ai = 0;
    else if (strcmp(scope, "ai") == 0)
        c->audit.scope_ai = 1;
    else
        return cfg_fail(x, cfg_member(g, "scope"), "audit scope must be \"all\" or \"ai\"");
    if (c->audit.checkpoint_file &&
        (strcmp(c->audit.checkpoint_file, c->audit.path) == 0 ||
         strcmp(c->audit.checkpoint_file, c->audit.chain_key_file) == 0))
        return cfg_fail(x, cfg_member(g, "checkpoint_file"),
                        "checkpoint_file must be a file of its own (it anchors the audit log "
                        "from outside)");
    free(c->audit.node);
    c->audit.node = NULL;
    if (node) {
        if (!cfg_node_ok(node))
            return cfg_fail(x, cfg_member(g, "node"),
                            "audit node must be 1-64 letters, digits, '.', '_' or '-'");
        if (!(c->audit.node = strdup(node)))
            return cfg_fail(x, g, "out of memory");
    }
    c->audit.rotate_bytes = (uint64_t)rb;
    c->audit.keep = (int)keep;
    c->audit.checkpoint_s = (int)cks;
    return 0;
}

static int
load_dns(struct cfg_ctx *x, struct config *c, const config_setting_t *g)
{
    static const char *const keys[] = {"hosts_file", "nameservers", NULL};
    if (cfg_known_keys(x, g, "dns", keys) < 0 ||
        cfg_path_key(x, g, "hosts_file", "/etc/hosts", &c->dns.hosts_file) < 0)
        return -1;
    const config_setting_t *ns = cfg_member(g, "nameservers");
    if (ns && cfg_strings(x, ns, "nameservers", add_nameserver, c) < 0)
        return -1;
    return 0;
}

static int
load_admin(struct cfg_ctx *x, struct config *c, const config_setting_t *g)
{
    static const char *const keys[] = {"listen", "htpasswd", NULL};
    const char *l = NULL;
    if (cfg_known_keys(x, g, "admin", keys) < 0 || cfg_str(x, g, "listen", &l) < 0 ||
        cfg_path_key(x, g, "htpasswd", NULL, &c->admin_htpasswd) < 0)
        return -1;
    if (!l)
        return 0;
    if (netaddr_parse_listen(l, &c->admin.ss, &c->admin.len) < 0)
        return cfg_fail(x, cfg_member(g, "listen"), "bad admin listen \"%s\"", l);
    c->admin.text = strdup(l);
    return c->admin.text ? 0 : cfg_fail(x, g, "out of memory");
}

static void
config_defaults(struct config *c)
{
    c->workers = 0;
    c->limits = (struct limits){
        .max_connections = 20000,
        .max_header_bytes = 65536,
        .max_body_inspect_bytes = 1048576,
        .header_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .connect_timeout_ms = 10000,
        .shutdown_grace_ms = 5000,
    };
    c->tls.warn_fallback_block = 1;
    c->ack.ttl_s = 28800;
    c->audit.rotate_bytes = 104857600;
    c->audit.keep = 10;
    c->audit.checkpoint_s = 60;
}

/* Apply defaults for keys whose sections were absent. */
static int
config_fill(struct cfg_ctx *x, struct config *c)
{
    if (c->nlisten == 0 && add_listen(x, NULL, "127.0.0.1:3128", c) < 0)
        return -1;
    if (!c->client_networks.v && (add_network(x, NULL, "127.0.0.0/8", &c->client_networks) < 0 ||
                                  add_network(x, NULL, "::1/128", &c->client_networks) < 0))
        return -1;
    if (!c->connect_ports) {
        c->connect_ports = calloc(1, sizeof(uint16_t));
        if (!c->connect_ports)
            return -1;
        c->connect_ports[0] = 443;
        c->nconnect_ports = 1;
    }
    if (!c->auth.realm && load_auth(x, c, NULL) < 0)
        return -1;
    if (!c->tls.ca_cert && load_tls(x, c, NULL) < 0)
        return -1;
    if (!c->ack.state_file && load_ack(x, c, NULL) < 0)
        return -1;
    if (!c->audit.path && load_audit(x, c, NULL) < 0)
        return -1;
    if (!c->dns.hosts_file && load_dns(x, c, NULL) < 0)
        return -1;
    if (!c->pages_dir && !(c->pages_dir = cfg_path(x, NULL, "pages")))
        return -1;
    if (c->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n > 0 ? (int)(n > 64 ? 64 : n) : 1;
    }
    return 0;
}

/* A rule naming a group nobody defined would silently never match: refuse it. */
static int
config_check_groups(struct cfg_ctx *x, const struct config *c)
{
    for (size_t i = 0; i < policy_count(c->policy); i++) {
        const struct policy_rule *r = policy_rule_at(c->policy, i);
        for (size_t g = 0; g < r->groups.n; g++) {
            if (users_group_exists(c->users, r->groups.v[g]))
                continue;
            snprintf(x->err, x->errlen, "%s:%d: rule \"%s\": unknown group \"%s\" (not in groups)",
                     r->file ? r->file : x->path, r->line, r->name, r->groups.v[g]);
            return -1;
        }
    }
    return 0;
}

/* libconfig lets a NULL group stand for "absent": make the helpers accept it. */
static int
config_sections(struct cfg_ctx *x, struct config *c, config_t *lc)
{
    static const char *const keys[] = {"listen",
                                       "workers",
                                       "client_networks",
                                       "connect_ports",
                                       "limits",
                                       "auth",
                                       "ldap",
                                       "groups",
                                       "addresses",
                                       "tls",
                                       "ack",
                                       "audit",
                                       "pages_dir",
                                       "dns",
                                       "admin",
                                       "services",
                                       "policy",
                                       "dlp_patterns",
                                       "proxy_protocol",
                                       "catalog_version",
                                       NULL};
    const config_setting_t *root = config_root_setting(lc), *s;
    long long w = 0;

    if (cfg_known_keys(x, root, NULL, keys) < 0)
        return -1;
    if ((s = config_setting_get_member(root, "listen")) &&
        cfg_strings(x, s, "listen", add_listen, c) < 0)
        return -1;
    if (cfg_int(x, root, "workers", 0, 64, &w) < 0)
        return -1;
    c->workers = (int)w;
    if ((s = config_setting_get_member(root, "client_networks"))) {
        if (cfg_strings(x, s, "client_networks", add_network, &c->client_networks) < 0)
            return -1;
        if (!c->client_networks.v && !(c->client_networks.v = calloc(1, sizeof(struct cidr))))
            return -1;
    }
    if ((s = config_setting_get_member(root, "connect_ports")) && load_ports(x, c, s) < 0)
        return -1;
    if ((s = config_setting_get_member(root, "proxy_protocol")) &&
        cfg_strings(x, s, "proxy_protocol", add_network, &c->proxy_protocol) < 0)
        return -1;

#define SECTION(key, fn)                                                                           \
    if ((s = config_setting_get_member(root, key))) {                                              \
        if (config_setting_type(s) != CONFIG_TYPE_GROUP)                                           \
            return cfg_fail(x, s, "\"%s\" must be a group { ... }", key);                          \
        if (fn(x, c, s) < 0)                                                                       \
            return -1;                                                                             \
    }
    SECTION("limits", load_limits)
    SECTION("auth", load_auth)
    SECTION("ldap", load_ldap)
    SECTION("tls", load_tls)
    SECTION("ack", load_ack)
    SECTION("audit", load_audit)
    SECTION("dns", load_dns)
    SECTION("admin", load_admin)
#undef SECTION
    if (cfg_path_key(x, root, "pages_dir", "pages", &c->pages_dir) < 0)
        return -1;
    if (config_fill(x, c) < 0)
        return -1;

    /* Modules with their own sections, loaded into this snapshot. */
    if (!(c->catalog =
              catalog_load(config_setting_get_member(root, "services"), x->err, x->errlen)))
        return -1;
    if (!(c->users = users_load(config_setting_get_member(root, "groups"),
                                config_setting_get_member(root, "addresses"), x->err, x->errlen)))
        return -1;
    if (!(c->policy =
              policy_load(config_setting_get_member(root, "policy"), c->catalog,
                          config_setting_get_member(root, "dlp_patterns"), x->err, x->errlen)))
        return -1;
    /* With a directory, a rule may name a group that only the directory knows. */
    if (!c->ldap && config_check_groups(x, c) < 0)
        return -1;
    if (!(c->dlp = dlp_load(config_setting_get_member(root, "dlp_patterns"), x->err, x->errlen)))
        return -1;
    if (!(c->pages = pages_load(c->pages_dir, x->err, x->errlen)))
        return -1;
    if (c->auth.htpasswd && !(c->authdb = auth_db_load(c->auth.htpasswd, x->err, x->errlen)))
        return -1;
    if (c->auth.mode == AUTH_NEGOTIATE &&
        load_negotiate(x, c, config_setting_get_member(root, "auth")) < 0)
        return -1;
    if (c->admin_htpasswd && !(c->admin_db = auth_db_load(c->admin_htpasswd, x->err, x->errlen)))
        return -1;
    if (c->tls.intercept) {
        if (!(c->tls_ca = tls_ca_load(c->tls.ca_cert, c->tls.ca_key, x->err, x->errlen)))
            return -1;
        if (!(c->tls_cctx = tls_client_ctx_new(c->tls.upstream_ca_file, x->err, x->errlen)))
            return -1;
    }
    return 0;
}

/*
 * Module loaders name settings of the main file "<config>" (it is read from
 * a string, so libconfig has no file name for them): put the path back.
 */
static void
config_name_main(char *err, size_t errlen, const char *path)
{
    static const char anon[] = "<config>";
    if (strncmp(err, anon, sizeof(anon) - 1) != 0)
        return;
    char rest[1024];
    snprintf(rest, sizeof(rest), "%s", err + sizeof(anon) - 1);
    snprintf(err, errlen, "%s%s", path, rest);
}

/* libconfig 1.5 gives up on includes nested deeper than this. */
#define CONFIG_INCLUDE_DEPTH 10

/*
 * The quoted path of an "@include" line (leading blanks allowed): *q is its
 * first character, the return its length.  -1 if line is no @include.
 */
static ssize_t
include_path(const char *line, const char **q)
{
    const char *p = line, *e;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncmp(p, "@include", 8) != 0)
        return -1;
    if (!(p = strchr(p + 8, '"')) || !(e = strchr(p + 1, '"')))
        return -1;
    *q = p + 1;
    return e - (p + 1);
}

/*
 * libconfig 1.5 opens @include files itself, and when one cannot be read as
 * a file (a directory) its scanner calls exit(): a SIGHUP would end the
 * proxy instead of keeping the old configuration; a FIFO or a device would
 * be read forever.  So every file included, at any depth, must be a regular
 * file before libconfig sees the text.  Nested paths are checked as libconfig
 * resolves them (as written).  0, or -1 with "FILE:LINE: message" in err.
 */
static int
include_check(const char *from, int lineno, const char *path, int depth, char *err, size_t errlen)
{
    struct stat st;
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, rc = 0;

    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "%s:%d: @include \"%s\": %s", from, lineno, path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s:%d: @include \"%s\": not a regular file", from, lineno, path);
        return -1;
    }
    if (depth >= CONFIG_INCLUDE_DEPTH || !(f = fopen(path, "r")))
        return 0; /* libconfig says what is wrong */
    while (rc == 0 && getline(&line, &cap, f) != -1) {
        const char *q;
        ssize_t len = include_path(line, &q);
        n++;
        if (len >= 0) {
            char *inc = strndup(q, (size_t)len);
            rc = inc ? include_check(path, n, inc, depth + 1, err, errlen) : 0;
            free(inc);
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/*
 * Read the main file and make its relative @include paths absolute against
 * its folder (libconfig 1.5 would prefix an include_dir even to absolute
 * paths); every file included must be a regular file (include_check).  Line
 * numbers are unchanged.  Returns a malloc'd string, or NULL with err set.
 */
static char *
config_text(const char *path, const char *dir, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *out = NULL, *line = NULL;
    size_t outlen = 0, cap = 0;
    FILE *mem;
    int n = 0, bad = 0;
    if (!f) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    if (!(mem = open_memstream(&out, &outlen))) {
        snprintf(err, errlen, "%s: out of memory", path);
        fclose(f);
        return NULL;
    }
    while (!bad && getline(&line, &cap, f) != -1) {
        const char *q;
        ssize_t len = include_path(line, &q);
        char *inc;
        n++;
        if (len < 0) {
            fputs(line, mem);
            continue;
        }
        if (len > 0 && q[0] != '/') {
            fwrite(line, 1, (size_t)(q - line), mem);
            fprintf(mem, "%s/%s", dir, q);
            if (asprintf(&inc, "%s/%.*s", dir, (int)len, q) < 0)
                inc = NULL;
        } else {
            fputs(line, mem);
            inc = strndup(q, (size_t)len);
        }
        if (!inc) {
            snprintf(err, errlen, "%s: out of memory", path);
            bad = 1;
        } else {
            bad = include_check(path, n, inc, 1, err, errlen) < 0;
            free(inc);
        }
    }
    if (!bad && ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        bad = 1;
    }
    fclose(mem);
    free(line);
    fclose(f);
    if (bad) {
        free(out);
        return NULL;
    }
    return out;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
    config_t lc;
    char *text = NULL;
    struct config *c = calloc(1, sizeof(*c));
    char *tmp = strdup(path);
    struct cfg_ctx x = {.path = path, .err = err, .errlen = errlen};

    config_init(&lc);
    if (!c || !tmp) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    atomic_init(&c->refs, 1);
    c->path = strdup(path);
    c->dir = strdup(dirname(tmp));
    if (!c->path || !c->dir) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    x.dir = c->dir;
    config_defaults(c);
    if (!(text = config_text(path, c->dir, err, errlen)))
        goto fail;
    if (!config_read_string(&lc, text)) {
        snprintf(err, errlen, "%s:%d: %s", config_error_file(&lc) ? config_error_file(&lc) : path,
                 config_error_line(&lc), config_error_text(&lc));
        goto fail;
    }
    if (config_sections(&x, c, &lc) < 0) {
        config_name_main(err, errlen, path);
        goto fail;
    }
    config_destroy(&lc);
    free(text);
    free(tmp);
    return c;
fail:
    config_destroy(&lc);
    free(text);
    free(tmp);
    config_unref(c);
    return NULL;
}

struct config *
config_ref(struct config *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void
config_unref(struct config *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < c->nlisten; i++)
        free(c->listen[i].text);
    free(c->listen);
    cidr_list_free(&c->client_networks);
    cidr_list_free(&c->proxy_protocol);
    free(c->connect_ports);
    free(c->auth.realm);
    free(c->auth.htpasswd);
    free(c->auth.keytab);
    free(c->auth.principal);
    dirgroups_cfg_free(c->ldap);
    negotiate_free(c->negotiate);
    free(c->tls.ca_cert);
    free(c->tls.ca_key);
    free(c->tls.upstream_ca_file);
    free(c->ack.state_file);
    free(c->ack.secret_file);
    free(c->ack.store);
    free(c->audit.path);
    free(c->audit.chain_key_file);
    free(c->audit.checkpoint_file);
    free(c->audit.node);
    free(c->pages_dir);
    free(c->dns.hosts_file);
    for (size_t i = 0; i < c->dns.nnameservers; i++)
        free(c->dns.nameservers[i]);
    free(c->dns.nameservers);
    free(c->admin.text);
    free(c->admin_htpasswd);
    auth_db_free(c->admin_db);
    catalog_free(c->catalog);
    policy_free(c->policy);
    users_free(c->users);
    pages_free(c->pages);
    auth_db_free(c->authdb);
    tls_ca_unref(c->tls_ca);
    dlp_free(c->dlp);
    SSL_CTX_free(c->tls_cctx);
    free(c->path);
    free(c->dir);
    free(c);
}

int
config_connect_port_ok(const struct config *c, unsigned port)
{
    for (size_t i = 0; i < c->nconnect_ports; i++)
        if (c->connect_ports[i] == port)
            return 1;
    return 0;
}
