/*
 * Groups and address-identified users, compiled from the config into hash
 * tables: user -> its groups (a precomputed array), group name -> exists, and
 * (family, prefix, network) -> user for the longest-prefix match.
 *
 * Invariants: immutable after users_load(); every table is open-addressed
 * with a load factor of at most 1/2 and holds indexes (+1, 0 = empty) into
 * arrays owned by struct users.
 */
#include "aigate/identity/users.h"
#include "aigate/core/hash.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "aigate/core/netaddr.h"

struct users_tab {
    uint32_t *slot; /* index + 1, 0 = empty */
    size_t mask;
};

struct users_member {
    const char **groups; /* slice of users.garr */
    size_t ngroups;
};

struct users_net {
    struct cidr net; /* host bits cleared */
    char *user;
    const config_setting_t *where;
};

struct users {
    char **groups;
    const config_setting_t **group_where;
    size_t ngroups;
    char **member_names; /* parallel to members */
    struct users_member *members;
    size_t nmembers;
    const char **garr; /* every member's groups, back to back */
    struct users_net *nets;
    size_t nnets;
    struct users_tab gtab, utab, ntab;
    int plen4[33], plen6[129]; /* distinct prefix lengths, longest first */
    size_t nplen4, nplen6;
};

/* A (user, group) membership while loading. */
struct users_pair {
    const char *user;
    size_t group;
    const config_setting_t *where;
};

static int users_fail(char *err, size_t errlen, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
users_fail(char *err, size_t errlen, const config_setting_t *s, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *file = s ? config_setting_source_file(s) : NULL;
    snprintf(err, errlen, "%s:%u: %s", file ? file : "config",
             s ? config_setting_source_line(s) : 0, msg);
    return -1;
}

static uint64_t
users_hash(const void *p, size_t n)
{
    return hash_bytes(p, n);
}

static int
users_tab_init(struct users_tab *t, size_t n)
{
    size_t size = 8;
    while (size < 2 * n)
        size <<= 1;
    if (!(t->slot = calloc(size, sizeof(*t->slot))))
        return -1;
    t->mask = size - 1;
    return 0;
}

static uint64_t
users_net_hash(const struct cidr *c)
{
    uint8_t key[18];
    key[0] = (uint8_t)c->family;
    key[1] = (uint8_t)c->prefix;
    memcpy(key + 2, c->addr, 16);
    return users_hash(key, sizeof(key));
}

static int
users_net_eq(const struct cidr *a, const struct cidr *b)
{
    return a->family == b->family && a->prefix == b->prefix && memcmp(a->addr, b->addr, 16) == 0;
}

/* The slot of t holding name (t indexes names[]), or the empty slot where it
 * would go. */
static uint32_t *
users_tab_str(const struct users_tab *t, char *const *names, const char *name)
{
    size_t i = (size_t)users_hash(name, strlen(name)) & t->mask;
    for (;; i = (i + 1) & t->mask) {
        uint32_t *s = &t->slot[i];
        if (*s == 0 || strcmp(names[*s - 1], name) == 0)
            return s;
    }
}

static uint32_t *
users_tab_net(const struct users *u, const struct cidr *c)
{
    size_t i = (size_t)users_net_hash(c) & u->ntab.mask;
    for (;; i = (i + 1) & u->ntab.mask) {
        uint32_t *s = &u->ntab.slot[i];
        if (*s == 0 || users_net_eq(&u->nets[*s - 1].net, c))
            return s;
    }
}

static void
users_mask(struct cidr *c)
{
    int bytes = c->family == AF_INET ? 4 : 16;
    for (int i = 0; i < 16; i++) {
        int keep = c->prefix - 8 * i;
        if (i >= bytes || keep <= 0)
            c->addr[i] = 0;
        else if (keep < 8)
            c->addr[i] &= (uint8_t)(0xff << (8 - keep));
    }
}

/* Check the members of entry e against the NULL-terminated list known. */
static int
users_known_keys(const config_setting_t *e, const char *where, const char *const *known, char *err,
                 size_t errlen)
{
    int n = config_setting_length(e);
    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(e, (unsigned)i);
        const char *name = config_setting_name(m);
        const char *const *k = known;
        while (*k && (!name || strcmp(name, *k) != 0))
            k++;
        if (!*k)
            return users_fail(err, errlen, m, "unknown key \"%s\" in %s entry", name ? name : "?",
                              where);
    }
    return 0;
}

/* The non-empty string member key of entry e, or NULL with err filled. */
static const char *
users_str(const config_setting_t *e, const char *where, const char *key, char *err, size_t errlen)
{
    const config_setting_t *s = config_setting_get_member(e, key);
    if (!s) {
        users_fail(err, errlen, e, "%s entry without \"%s\"", where, key);
        return NULL;
    }
    const char *v = config_setting_get_string(s);
    if (!v) {
        users_fail(err, errlen, s, "\"%s\" must be a string", key);
        return NULL;
    }
    if (!*v) {
        users_fail(err, errlen, s, "\"%s\" must not be empty", key);
        return NULL;
    }
    return v;
}

static int
users_is_list(const config_setting_t *s)
{
    return config_setting_is_list(s) || config_setting_is_array(s);
}

static int
users_pair_cmp(const void *a, const void *b)
{
    const struct users_pair *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    if (c)
        return c;
    return (x->group > y->group) - (x->group < y->group);
}

static int
users_load_groups(struct users *u, const config_setting_t *groups, char *err, size_t errlen)
{
    static const char *const keys[] = {"name", "members", NULL};
    struct users_pair *pairs = NULL;
    size_t npairs = 0, cap = 0;
    int rc = -1;

    if (!users_is_list(groups))
        return users_fail(err, errlen, groups,
                          "groups must be a list: ( { name = \"...\"; members = [ ... ]; }, ... )");
    size_t n = (size_t)config_setting_length(groups);
    u->groups = calloc(n ? n : 1, sizeof(*u->groups));
    u->group_where = calloc(n ? n : 1, sizeof(*u->group_where));
    if (!u->groups || !u->group_where || users_tab_init(&u->gtab, n) < 0)
        return users_fail(err, errlen, groups, "out of memory");

    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(groups, (unsigned)i);
        if (!config_setting_is_group(e)) {
            users_fail(err, errlen, e, "each groups entry must be { name = ...; members = ...; }");
            goto out;
        }
        const char *name;
        if (users_known_keys(e, "groups", keys, err, errlen) < 0 ||
            !(name = users_str(e, "groups", "name", err, errlen)))
            goto out;
        const config_setting_t *where = config_setting_get_member(e, "name");
        uint32_t *slot = users_tab_str(&u->gtab, u->groups, name);
        if (*slot) {
            users_fail(err, errlen, where, "duplicate group \"%s\" (first on line %u)", name,
                       config_setting_source_line(u->group_where[*slot - 1]));
            goto out;
        }
        if (!(u->groups[i] = strdup(name))) {
            users_fail(err, errlen, e, "out of memory");
            goto out;
        }
        u->group_where[i] = where;
        u->ngroups = i + 1;
        *slot = (uint32_t)(i + 1);

        const config_setting_t *mem = config_setting_get_member(e, "members");
        if (!mem)
            continue;
        if (!users_is_list(mem)) {
            users_fail(err, errlen, mem, "\"members\" must be a list of user names");
            goto out;
        }
        for (int k = 0; k < config_setting_length(mem); k++) {
            const config_setting_t *m = config_setting_get_elem(mem, (unsigned)k);
            const char *user = config_setting_get_string(m);
            if (!user || !*user) {
                users_fail(err, errlen, m, "members of group \"%s\" must be non-empty strings",
                           name);
                goto out;
            }
            if (npairs == cap) {
                size_t ncap = cap ? 2 * cap : 16;
                struct users_pair *np = realloc(pairs, ncap * sizeof(*np));
                if (!np) {
                    users_fail(err, errlen, m, "out of memory");
                    goto out;
                }
                pairs = np;
                cap = ncap;
            }
            pairs[npairs++] = (struct users_pair){user, i, m};
        }
    }

    /* Sort memberships by user (then group order) and fold them into one
     * slice of garr per user. */
    if (npairs > 1)
        qsort(pairs, npairs, sizeof(*pairs), users_pair_cmp);
    u->members = calloc(npairs ? npairs : 1, sizeof(*u->members));
    u->member_names = calloc(npairs ? npairs : 1, sizeof(*u->member_names));
    u->garr = calloc(npairs ? npairs : 1, sizeof(*u->garr));
    if (!u->members || !u->member_names || !u->garr || users_tab_init(&u->utab, npairs) < 0) {
        users_fail(err, errlen, groups, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < npairs; i++) {
        if (i > 0 && strcmp(pairs[i].user, pairs[i - 1].user) == 0) {
            if (pairs[i].group == pairs[i - 1].group) {
                users_fail(err, errlen, pairs[i].where, "user \"%s\" listed twice in group \"%s\"",
                           pairs[i].user, u->groups[pairs[i].group]);
                goto out;
            }
        } else {
            char *name = strdup(pairs[i].user);
            if (!name) {
                users_fail(err, errlen, pairs[i].where, "out of memory");
                goto out;
            }
            u->member_names[u->nmembers] = name;
            u->members[u->nmembers].groups = u->garr + i;
            *users_tab_str(&u->utab, u->member_names, name) = (uint32_t)++u->nmembers;
        }
        struct users_member *m = &u->members[u->nmembers - 1];
        m->groups[m->ngroups++] = u->groups[pairs[i].group];
    }
    rc = 0;
out:
    free(pairs);
    return rc;
}

static int
users_load_addresses(struct users *u, const config_setting_t *addrs, char *err, size_t errlen)
{
    static const char *const keys[] = {"network", "user", NULL};
    int have4[33] = {0}, have6[129] = {0};

    if (!users_is_list(addrs))
        return users_fail(
            err, errlen, addrs,
            "addresses must be a list: ( { network = \"...\"; user = \"...\"; }, ... )");
    size_t n = (size_t)config_setting_length(addrs);
    u->nets = calloc(n ? n : 1, sizeof(*u->nets));
    if (!u->nets || users_tab_init(&u->ntab, n) < 0)
        return users_fail(err, errlen, addrs, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(addrs, (unsigned)i);
        if (!config_setting_is_group(e))
            return users_fail(err, errlen, e,
                              "each addresses entry must be { network = ...; user = ...; }");
        const char *net, *user;
        if (users_known_keys(e, "addresses", keys, err, errlen) < 0 ||
            !(net = users_str(e, "addresses", "network", err, errlen)) ||
            !(user = users_str(e, "addresses", "user", err, errlen)))
            return -1;
        const config_setting_t *where = config_setting_get_member(e, "network");
        struct users_net *un = &u->nets[i];
        if (cidr_parse(net, &un->net) < 0)
            return users_fail(err, errlen, where, "bad network \"%s\" (want a.b.c.d/n or x::y/n)",
                              net);
        users_mask(&un->net);
        uint32_t *slot = users_tab_net(u, &un->net);
        if (*slot)
            return users_fail(err, errlen, where, "duplicate network \"%s\" (first on line %u)",
                              net, config_setting_source_line(u->nets[*slot - 1].where));
        if (!(un->user = strdup(user)))
            return users_fail(err, errlen, e, "out of memory");
        un->where = where;
        u->nnets = i + 1;
        *slot = (uint32_t)(i + 1);
        if (un->net.family == AF_INET)
            have4[un->net.prefix] = 1;
        else
            have6[un->net.prefix] = 1;
    }
    for (int p = 32; p >= 0; p--)
        if (have4[p])
            u->plen4[u->nplen4++] = p;
    for (int p = 128; p >= 0; p--)
        if (have6[p])
            u->plen6[u->nplen6++] = p;
    return 0;
}

struct users *
users_load(const config_setting_t *groups, const config_setting_t *addresses, char *err,
           size_t errlen)
{
    struct users *u = calloc(1, sizeof(*u));
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if ((groups && users_load_groups(u, groups, err, errlen) < 0) ||
        (addresses && users_load_addresses(u, addresses, err, errlen) < 0)) {
        users_free(u);
        return NULL;
    }
    return u;
}

void
users_free(struct users *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->ngroups; i++)
        free(u->groups[i]);
    for (size_t i = 0; i < u->nmembers; i++)
        free(u->member_names[i]);
    for (size_t i = 0; i < u->nnets; i++)
        free(u->nets[i].user);
    free(u->groups);
    free(u->group_where);
    free(u->member_names);
    free(u->members);
    free(u->garr);
    free(u->nets);
    free(u->gtab.slot);
    free(u->utab.slot);
    free(u->ntab.slot);
    free(u);
}

size_t
users_groups(const struct users *u, const char *user, const char *const **out)
{
    *out = NULL;
    if (!u->utab.slot)
        return 0;
    uint32_t s = *users_tab_str(&u->utab, u->member_names, user);
    if (!s)
        return 0;
    *out = u->members[s - 1].groups;
    return u->members[s - 1].ngroups;
}

int
users_group_exists(const struct users *u, const char *group)
{
    return u->gtab.slot && *users_tab_str(&u->gtab, u->groups, group) != 0;
}

const char *
users_by_address(const struct users *u, const struct sockaddr *sa)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    struct cidr key;
    const int *plens;
    size_t nplens;

    if (u->nnets == 0)
        return NULL;
    memset(&key, 0, sizeof(key));
    if (sa->sa_family == AF_INET) {
        key.family = AF_INET;
        memcpy(key.addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
            key.family = AF_INET;
            memcpy(key.addr, a + 12, 4);
        } else {
            key.family = AF_INET6;
            memcpy(key.addr, a, 16);
        }
    } else {
        return NULL;
    }
    plens = key.family == AF_INET ? u->plen4 : u->plen6;
    nplens = key.family == AF_INET ? u->nplen4 : u->nplen6;
    for (size_t i = 0; i < nplens; i++) {
        key.prefix = plens[i];
        users_mask(&key);
        uint32_t s = *users_tab_net(u, &key);
        if (s)
            return u->nets[s - 1].user;
    }
    return NULL;
}
