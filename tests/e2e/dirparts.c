/*
 * dirparts: drives the directory modules (negotiate.c, dirgroups.c) on their
 * own, for tests/e2e/t_directory_parts.sh, linked against libaigate.a.
 *
 *   dirparts keytab-check KEYTAB PRINCIPAL|-
 *       "ok", or the message config_load() would give.
 *   dirparts negotiate [-n] KEYTAB PRINCIPAL|- TOKENFILE...
 *       Accept each file's token (a Proxy-Authorization value, or a bare token:
 *       one without a space) with one acceptor, in order; -n keeps the realm.  One line
 *       per token: "accepted user=U principal=P reply=yes|no" or
 *       "refused reason=R".
 *   dirparts tokens HOST N
 *       Print N Proxy-Authorization values ("Negotiate <token>"), one a line,
 *       for HTTP@HOST with the current ticket cache, each from its own
 *       security context (as N browser connections would send them).
 *   dirparts negotiate-bench KEYTAB HOST N THREADS
 *       Make N SPNEGO tokens for HTTP@HOST with the current ticket cache (as a
 *       browser would, one security context each), then accept them all with
 *       THREADS threads sharing one acceptor: "made N in MS ms; accepted A of N
 *       in MS ms with T threads: R/s".
 *   dirparts groups CONFIG
 *       Load CONFIG (its ldap section and groups), start dirgroups on a
 *       stand-in worker loop, and answer commands read from stdin:
 *         get USER        one lookup: "USER source=S groups=G ms=N how=now|callback"
 *                         (G: name(source) separated by commas, "-" when none)
 *         burst N USER    N lookups at once, then one line per answer as for get
 *         now USER        a blocking lookup as --explain makes it
 *         stats           "hits=... lookups=... failures=... timeouts=... fallbacks=..."
 *       Every answer line is flushed, so a test can read it from a pipe.
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <gssapi/gssapi.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aigate/core/config.h"
#include "aigate/core/offload.h"
#include "aigate/identity/dircache.h"
#include "aigate/identity/dirgroups.h"
#include "aigate/identity/negotiate.h"
#include "aigate/net/worker.h"

static long long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
cmd_keytab_check(int argc, char **argv)
{
    char err[1024];
    if (argc != 2)
        return 2;
    if (negotiate_keytab_check(argv[0], strcmp(argv[1], "-") ? argv[1] : NULL, err, sizeof(err)) <
        0) {
        printf("%s\n", err);
        return 1;
    }
    printf("ok\n");
    return 0;
}

static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t cap = 0;
    if (!f)
        return NULL;
    ssize_t n = getline(&buf, &cap, f);
    fclose(f);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return buf;
}

static int
cmd_negotiate(int argc, char **argv)
{
    char err[1024];
    int strip = 1;
    if (argc > 0 && strcmp(argv[0], "-n") == 0) {
        strip = 0;
        argc--;
        argv++;
    }
    if (argc < 3)
        return 2;
    struct negotiate *n =
        negotiate_new(argv[0], strcmp(argv[1], "-") ? argv[1] : NULL, strip, err, sizeof(err));
    if (!n) {
        printf("acceptor: %s\n", err);
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        char *text = read_file(argv[i]);
        char *value = NULL;
        struct negotiate_result res = {0};
        const char *tok;
        size_t toklen;
        if (!text) {
            printf("refused reason=cannot read %s\n", argv[i]);
            continue;
        }
        if (!strchr(text, ' ') && asprintf(&value, "Negotiate %s", text) < 0)
            value = NULL;
        const char *v = value ? value : text;
        enum negotiate_parse_rc prc = negotiate_parse(v, strlen(v), &tok, &toklen);
        if (prc != NEGOTIATE_PARSE_OK)
            printf("refused reason=header: %s\n",
                   prc == NEGOTIATE_PARSE_OTHER ? "other scheme" : "bad token");
        else if (negotiate_accept(n, tok, toklen, &res))
            printf("accepted user=%s principal=%s reply=%s\n", res.user, res.principal,
                   res.reply ? "yes" : "no");
        else
            printf("refused reason=%s\n", res.reason);
        negotiate_result_clear(&res);
        free(value);
        free(text);
        fflush(stdout);
    }
    negotiate_free(n);
    return 0;
}

/* ---- negotiate-bench ------------------------------------------------------------------- */

struct bench {
    struct negotiate *n;
    char **toks;
    size_t ntoks;
    atomic_size_t next, accepted;
};

/* One initiator token for target (base64, malloc'd), or NULL. */
static char *
make_token(gss_name_t target)
{
    static gss_OID_desc spnego = {6, "\x2b\x06\x01\x05\x05\x02"};
    OM_uint32 major, minor;
    gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    char *b64 = NULL;
    major =
        gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &ctx, target, &spnego, GSS_C_MUTUAL_FLAG,
                             0, GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, NULL, &out, NULL, NULL);
    if (!GSS_ERROR(major) && out.length && (b64 = malloc(4 * ((out.length + 2) / 3) + 1)))
        EVP_EncodeBlock((unsigned char *)b64, out.value, (int)out.length);
    gss_release_buffer(&minor, &out);
    if (ctx != GSS_C_NO_CONTEXT)
        gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
    return b64;
}

/* The GSSAPI name of the service HTTP@host, or GSS_C_NO_NAME. */
static gss_name_t
service_name(const char *host)
{
    char svc[300];
    OM_uint32 minor;
    gss_name_t target = GSS_C_NO_NAME;
    snprintf(svc, sizeof(svc), "HTTP@%s", host);
    gss_buffer_desc nb = {strlen(svc), svc};
    if (GSS_ERROR(gss_import_name(&minor, &nb, GSS_C_NT_HOSTBASED_SERVICE, &target)))
        return GSS_C_NO_NAME;
    return target;
}

static int
cmd_tokens(int argc, char **argv)
{
    OM_uint32 minor;
    long n;
    if (argc != 2 || (n = strtol(argv[1], NULL, 10)) < 1)
        return 2;
    gss_name_t target = service_name(argv[0]);
    if (target == GSS_C_NO_NAME) {
        fprintf(stderr, "cannot import the name HTTP@%s\n", argv[0]);
        return 1;
    }
    for (long i = 0; i < n; i++) {
        char *t = make_token(target);
        if (!t) {
            fprintf(stderr, "cannot make a token (kinit?)\n");
            gss_release_name(&minor, &target);
            return 1;
        }
        printf("Negotiate %s\n", t);
        free(t);
    }
    gss_release_name(&minor, &target);
    return 0;
}

static void *
bench_accept(void *arg)
{
    struct bench *b = arg;
    size_t i;
    while ((i = atomic_fetch_add(&b->next, 1)) < b->ntoks) {
        struct negotiate_result res;
        if (negotiate_accept(b->n, b->toks[i], strlen(b->toks[i]), &res))
            atomic_fetch_add(&b->accepted, 1);
        negotiate_result_clear(&res);
    }
    return NULL;
}

static int
cmd_negotiate_bench(int argc, char **argv)
{
    char err[1024];
    struct bench b = {0};
    OM_uint32 minor;
    gss_name_t target;
    pthread_t th[64];
    int nth;
    if (argc != 4 || (b.ntoks = strtoul(argv[2], NULL, 10)) == 0 || (nth = atoi(argv[3])) < 1 ||
        nth > 64)
        return 2;
    if ((target = service_name(argv[1])) == GSS_C_NO_NAME ||
        !(b.n = negotiate_new(argv[0], NULL, 1, err, sizeof(err))) ||
        !(b.toks = calloc(b.ntoks, sizeof(*b.toks)))) {
        printf("set-up failed: %s\n", b.n ? "out of memory" : err);
        return 1;
    }
    long long t0 = now_ms();
    for (size_t i = 0; i < b.ntoks; i++)
        if (!(b.toks[i] = make_token(target))) {
            printf("cannot make a token (kinit?)\n");
            return 1;
        }
    long long t1 = now_ms();
    for (int i = 0; i < nth; i++)
        pthread_create(&th[i], NULL, bench_accept, &b);
    for (int i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    long long t2 = now_ms();
    printf("made %zu in %lld ms; accepted %zu of %zu in %lld ms with %d threads: %.0f/s\n", b.ntoks,
           t1 - t0, (size_t)atomic_load(&b.accepted), b.ntoks, t2 - t1, nth,
           (double)b.ntoks * 1000.0 / (double)(t2 - t1 > 0 ? t2 - t1 : 1));
    for (size_t i = 0; i < b.ntoks; i++)
        free(b.toks[i]);
    free(b.toks);
    gss_release_name(&minor, &target);
    negotiate_free(b.n);
    return 0;
}

/* ---- groups: a stand-in worker ---------------------------------------------------- */

static struct worker tw;
static struct config *cfg;
static int pending;

struct call {
    char user[DIRGROUPS_NAME_MAX];
    long long start;
};

static void
print_answer(const char *user, struct dirgroups_answer *a, long long ms, const char *how)
{
    struct dirgroups_list l;
    printf("%s source=%s groups=", user, dirgroups_source_name(a->source));
    if (dirgroups_list_build(&l, cfg->users, user, a) < 0) {
        printf("(out of memory)");
    } else {
        for (size_t i = 0; i < l.n; i++)
            printf("%s%s(%s)", i ? "," : "", l.names[i], l.sources[i]);
        if (l.n == 0)
            printf("-");
        dirgroups_list_free(&l);
    }
    printf(" ms=%lld how=%s\n", ms, how);
    fflush(stdout);
    dircache_set_unref(a->set);
}

static void
on_answer(struct dirgroups_answer ans, void *arg)
{
    struct call *c = arg;
    print_answer(c->user, &ans, now_ms() - c->start, "callback");
    free(c);
    if (--pending == 0)
        event_base_loopbreak(tw.base);
}

static void
start_get(struct dirgroups *d, const char *user)
{
    struct call *c = calloc(1, sizeof(*c));
    struct dirgroups_answer now;
    struct dirgroups_req *req;
    if (!c) {
        printf("%s error=out of memory\n", user);
        return;
    }
    snprintf(c->user, sizeof(c->user), "%s", user);
    c->start = now_ms();
    int rc = dirgroups_get(d, &tw, user, on_answer, c, &now, &req);
    if (rc == 1) {
        print_answer(user, &now, now_ms() - c->start, "now");
        free(c);
    } else if (rc == 0) {
        pending++;
    } else {
        printf("%s error=dirgroups_get failed\n", user);
        free(c);
    }
}

static int
cmd_groups(int argc, char **argv)
{
    char err[1024], line[512];
    if (argc != 1)
        return 2;
    evthread_use_pthreads();
    if (!(cfg = config_load(argv[0], err, sizeof(err)))) {
        printf("config: %s\n", err);
        return 1;
    }
    if (!cfg->ldap) {
        printf("config: no ldap section\n");
        config_unref(cfg);
        return 1;
    }
    pthread_mutex_init(&tw.done_mu, NULL);
    tw.base = event_base_new();
    int woken = tw.base ? worker_wake_init(&tw) : -1;
    struct dirgroups *d = woken == 0 ? dirgroups_new(cfg->ldap, err, sizeof(err)) : NULL;
    if (!d) {
        printf("dirgroups: %s\n", woken == 0 ? err : "no event loop");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof(line), stdin)) {
        char user[DIRGROUPS_NAME_MAX];
        int n;
        line[strcspn(line, "\r\n")] = '\0';
        if (sscanf(line, "get %255s", user) == 1) {
            start_get(d, user);
        } else if (sscanf(line, "burst %d %255s", &n, user) == 2) {
            for (int i = 0; i < n; i++)
                start_get(d, user);
        } else if (sscanf(line, "now %255s", user) == 1) {
            struct dircache_set *set = NULL;
            long long t0 = now_ms();
            if (dirgroups_lookup_now(cfg->ldap, user, &set, err, sizeof(err))) {
                struct dirgroups_answer a = {DIRGROUPS_DIRECTORY, set};
                print_answer(user, &a, now_ms() - t0, "blocking");
            } else {
                printf("%s unavailable=%s\n", user, err);
                fflush(stdout);
            }
        } else if (strcmp(line, "stats") == 0) {
            struct dirgroups_stats st;
            dirgroups_stats(d, &st);
            printf("hits=%llu lookups=%llu failures=%llu timeouts=%llu fallbacks=%llu\n", st.hits,
                   st.lookups, st.failures, st.timeouts, st.fallbacks);
            fflush(stdout);
        } else {
            printf("unknown command: %s\n", line);
            fflush(stdout);
        }
        if (pending)
            event_base_dispatch(tw.base);
    }
    dirgroups_free(d);
    worker_wake_free(&tw);
    event_base_free(tw.base);
    pthread_mutex_destroy(&tw.done_mu);
    config_unref(cfg);
    return 0;
}

int
main(int argc, char **argv)
{
    int rc = 2;
    if (argc >= 2 && strcmp(argv[1], "keytab-check") == 0)
        rc = cmd_keytab_check(argc - 2, argv + 2);
    else if (argc >= 2 && strcmp(argv[1], "negotiate") == 0)
        rc = cmd_negotiate(argc - 2, argv + 2);
    else if (argc >= 2 && strcmp(argv[1], "tokens") == 0)
        rc = cmd_tokens(argc - 2, argv + 2);
    else if (argc >= 2 && strcmp(argv[1], "negotiate-bench") == 0)
        rc = cmd_negotiate_bench(argc - 2, argv + 2);
    else if (argc >= 2 && strcmp(argv[1], "groups") == 0)
        rc = cmd_groups(argc - 2, argv + 2);
    if (rc == 2)
        fprintf(stderr, "usage: dirparts keytab-check KEYTAB PRINCIPAL|-\n"
                        "       dirparts negotiate [-n] KEYTAB PRINCIPAL|- TOKENFILE...\n"
                        "       dirparts tokens HOST N\n"
                        "       dirparts negotiate-bench KEYTAB HOST N THREADS\n"
                        "       dirparts groups CONFIG  (commands on stdin)\n");
    return rc;
}
