/*
 * aigate: command line, start-up, signals.  The work happens in the workers
 * (worker.c); this file only wires things together and keeps the current
 * config snapshot for reloads.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "aigate/admin/admin.h"
#include "aigate/audit/audit.h"
#include "aigate/audit/auditidx.h"
#include "aigate/audit/unlisted.h"
#include "aigate/caution/ack.h"
#include "aigate/caution/ackredis.h"
#include "aigate/core/config.h"
#include "aigate/core/evmem.h"
#include "aigate/core/log.h"
#include "aigate/core/netaddr.h"
#include "aigate/core/offload.h"
#include "aigate/identity/auth.h"
#include "aigate/identity/dircache.h"
#include "aigate/identity/dirgroups.h"
#include "aigate/identity/users.h"
#include "aigate/net/worker.h"
#include "aigate/rules/catalog.h"
#include "aigate/rules/dlp.h"
#include "aigate/rules/explain.h"
#include "aigate/rules/gate.h"
#include "aigate/tls/tls_mitm.h"

#define AIGATE_VERSION "0.1.0"

static struct config *current;
static struct worker *workers;
static int nworkers;
static struct event_base *main_base;
static struct admin *admin;
static struct event **exit_evs; /* one per worker: its loop ended */
static int workers_exited;
static struct event *trim_ev; /* gives freed memory back after a burst */

static void
usage(FILE *out)
{
    fprintf(
        out,
        "usage: aigate [-c FILE] [-f] [-t] [-V] [-h]\n"
        "       aigate [-c FILE] --explain USER METHOD URL [BODY]\n"
        "       aigate [-c FILE] --verify-log [--from-any] [--checkpoint FILE|-] FILE [FILE...]\n"
        "       aigate --report FILE [FILE...]\n"
        "       aigate [-c FILE] --report --unlisted FILE [FILE...]\n"
        "       aigate --gen-ca DIR\n"
        "\n"
        "  -c FILE       config file (default rules/aigate.conf, then /etc/aigate/aigate.conf)\n"
        "  -f            stay in the foreground, diagnostics to stderr\n"
        "  -t            check the whole configuration and exit (0 valid, 2 invalid)\n"
        "  --explain USER METHOD URL [BODY]\n"
        "                show which service, rule and action apply; USER is a name,\n"
        "                '-' (anonymous) or '@ADDRESS'; BODY is a file (- = stdin)\n"
        "                holding the request body, scanned for dlp rules\n"
        "  --verify-log FILE...  check the audit log's hash chain\n"
        "  --checkpoint FILE|-   with --verify-log: also check that the log reaches the last\n"
        "                checkpoint in FILE (- = stdin, e.g. lines grepped from syslog)\n"
        "  --report FILE...      counts per service and user from audit logs\n"
        "  --unlisted    with --report: hosts outside the catalog that look like AI\n"
        "                services, with requests and users (shadow AI)\n"
        "  --gen-ca DIR  create DIR/ca.pem and DIR/ca.key (0600), an interception CA\n"
        "  -V            print the version, and the catalog version of the configuration\n"
        "  -h            this help\n"
        "\n"
        "signals: HUP reload, USR1 reopen logs, TERM/INT graceful stop\n");
}

static const char *
default_config(void)
{
    if (access("rules/aigate.conf", R_OK) == 0)
        return "rules/aigate.conf";
    return "/etc/aigate/aigate.conf";
}

/*
 * -V: the program's version, then the catalog version and size of the
 * configuration cfgpath names.  A configuration that does not load is
 * reported on stderr; the exit status stays 0.
 */
static int
print_version(const char *cfgpath)
{
    char err[1024];
    struct config *c;

    printf("aigate %s\n", AIGATE_VERSION);
    if (!(c = config_load(cfgpath, err, sizeof(err)))) {
        fprintf(stderr, "aigate: catalog version unknown: %s\n", err);
        return 0;
    }
    printf("catalog %s, %zu services (%s)\n",
           *catalog_version(c->catalog) ? catalog_version(c->catalog) : "without catalog_version",
           catalog_count(c->catalog), cfgpath);
    config_unref(c);
    return 0;
}

static struct audit_cfg
audit_cfg_of(const struct config *c)
{
    struct audit_cfg ac = {
        .path = c->audit.path,
        .chain_key_file = c->audit.chain_key_file,
        .scope_ai = c->audit.scope_ai,
        .log_query = c->audit.log_query,
        .rotate_bytes = c->audit.rotate_bytes,
        .keep = c->audit.keep,
        .checkpoint_s = c->audit.checkpoint_s,
        .checkpoint_file = c->audit.checkpoint_file,
        .node = c->audit.node,
    };
    return ac;
}

static void
reload(void)
{
    char err[1024];
    struct config *next = config_load(current->path, err, sizeof(err));
    if (!next) {
        log_warnx("reload refused, old configuration stays in force: %s", err);
        return;
    }
    /* A directory named for the first time: its lookup threads start now. */
    if (next->ldap && !rt.dirgroups &&
        !(rt.dirgroups = dirgroups_new(next->ldap, err, sizeof(err)))) {
        log_warnx("reload refused, old configuration stays in force: %s", err);
        config_unref(next);
        return;
    }
    if (next->nlisten != current->nlisten)
        log_warnx("reload: listen addresses change only on restart");
    struct audit_cfg ac = audit_cfg_of(next);
    if (rt.audit && audit_reconfigure(rt.audit, &ac, err, sizeof(err)) < 0) {
        log_warnx("reload refused, old configuration stays in force: %s", err);
        config_unref(next);
        return;
    }
    /* Without ldap the directory is no longer asked; its (idle) threads stay until exit. */
    if (next->ldap && dirgroups_reconfigure(rt.dirgroups, next->ldap) < 0)
        log_warnx("reload: the directory settings stay as they were: out of memory");
    for (int i = 0; i < nworkers; i++)
        worker_post_config(&workers[i], next);
    config_unref(current);
    current = next;
    admin_note_reload(admin, current);
    log_info("configuration reloaded from %s", current->path);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    switch (sig) {
    case SIGHUP:
        reload();
        break;
    case SIGUSR1:
        if (rt.audit)
            audit_request_reopen(rt.audit);
        log_info("log files reopened");
        break;
    default:
        if (atomic_exchange(&rt.draining, 1))
            break;
        log_info("stopping (signal %d): draining for up to %d ms", (int)sig,
                 current->limits.shutdown_grace_ms);
        /* The main loop (admin listener: /healthz says "draining") runs until the workers end. */
        for (int i = 0; i < nworkers; i++)
            worker_post_stop(&workers[i]);
        break;
    }
}

/*
 * After a burst, the freed per-request memory stays in the allocator's
 * arenas: idle connections then look several KiB heavier than they are.
 * Once traffic has paused (no request finished during a whole tick) after
 * some were served, give the free pages back to the system.
 */
#define TRIM_TICK_MS 500

static void
on_trim_tick(evutil_socket_t fd, short what, void *arg)
{
    static unsigned long long seen, trimmed;
    unsigned long long now = atomic_load(&rt.requests);
    (void)fd;
    (void)what;
    (void)arg;
    if (now == seen && now != trimmed) {
        malloc_trim(0);
        trimmed = now;
    }
    seen = now;
}

/* A worker's loop ended (one event per worker, activated from its thread): when all have, stop. */
static void
on_worker_exit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (++workers_exited >= nworkers)
        event_base_loopexit(main_base, NULL);
}

/* --report: the files through the audit index (the one reader of the log), then its tables. */
static int
run_report(char **files, int n)
{
    struct auditidx *x = auditidx_new();
    char err[1024];
    int rc = 0;

    if (!x) {
        fprintf(stderr, "aigate: out of memory\n");
        return 2;
    }
    for (int i = 0; i < n; i++) {
        if (auditidx_load_file(x, files[i], err, sizeof(err)) < 0) {
            printf("%s\n", err);
            rc = 2;
        }
    }
    auditidx_report(x, stdout);
    auditidx_free(x);
    return rc;
}

/*
 * The list of known AI domains outside the catalog: UNLISTED_KNOWN_FILE
 * beside the catalog's file (or the config file).  Missing is not an error
 * (the name heuristic still works); unreadable or malformed is.
 */
static int
unlisted_known_of(const struct config *c, const char *cfgpath, struct unlisted_known **k)
{
    const char *base = *catalog_file(c->catalog) ? catalog_file(c->catalog) : cfgpath;
    const char *slash = strrchr(base, '/');
    char path[4096], err[1024];

    *k = NULL;
    snprintf(path, sizeof(path), "%.*s%s", slash ? (int)(slash - base + 1) : 0, base,
             UNLISTED_KNOWN_FILE);
    if (access(path, F_OK) != 0) {
        fprintf(stderr, "aigate: no %s (known AI domains): the name heuristic only\n", path);
        return 0;
    }
    if (!(*k = unlisted_known_load(path, err, sizeof(err)))) {
        fprintf(stderr, "aigate: %s\n", err);
        return -1;
    }
    return 0;
}

/* --report --unlisted: hosts of the logs outside c's catalog that look like AI services. */
static int
run_unlisted(const struct config *c, const char *cfgpath, char **files, int n)
{
    struct unlisted_known *k;
    struct auditidx *x;
    char err[1024];
    int rc = 0;

    if (unlisted_known_of(c, cfgpath, &k) < 0)
        return 2;
    if (!(x = auditidx_new())) {
        unlisted_known_free(k);
        fprintf(stderr, "aigate: out of memory\n");
        return 2;
    }
    auditidx_track_hosts(x);
    for (int i = 0; i < n; i++) {
        if (auditidx_load_file(x, files[i], err, sizeof(err)) < 0) {
            printf("%s\n", err);
            rc = 2;
        }
    }
    if (unlisted_report(stdout, x, c->catalog, k) < 0) {
        fprintf(stderr, "aigate: out of memory\n");
        rc = 2;
    }
    auditidx_free(x);
    unlisted_known_free(k);
    return rc;
}

/* Read the body for --explain (at most max bytes of it) into a new buffer; NULL on error. */
static char *
explain_body(const char *path, size_t max, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf = f ? malloc(max + 1) : NULL;

    if (buf) {
        *len = fread(buf, 1, max, f);
        if (ferror(f)) {
            free(buf);
            buf = NULL;
        }
    }
    if (f && f != stdin)
        fclose(f);
    if (!buf)
        fprintf(stderr, "aigate: %s: %s\n", path, f ? "read error" : strerror(errno));
    return buf;
}

static int
run_explain(struct config *c, char **argv, int argc)
{
    const char *user = argv[0];
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    struct explain_req e = {0};
    struct gate_cfg g;
    char *body = NULL;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (user[0] == '@') {
        if (inet_pton(AF_INET, user + 1, &in->sin_addr) != 1) {
            in6->sin6_family = AF_INET6;
            if (inet_pton(AF_INET6, user + 1, &in6->sin6_addr) != 1) {
                fprintf(stderr, "aigate: bad address %s\n", user + 1);
                return 2;
            }
        }
        e.user = users_by_address(c->users, (struct sockaddr *)&ss);
    } else if (strcmp(user, "-") != 0) {
        e.user = user;
    }
    if (argc > 3) {
        if (!(body = explain_body(argv[3], c->limits.max_body_inspect_bytes, &e.body_len)))
            return 2;
        e.has_body = 1;
        e.dlp_found =
            dlp_scan(c->dlp, body, e.body_len, NULL, 0, NULL, 0, c->limits.max_body_inspect_bytes);
        e.dlp = c->dlp;
    }
    /* With a directory, its groups are read now (the proxy would use its cache). */
    struct dirgroups_answer dir = {DIRGROUPS_DIRECTORY, NULL};
    struct dirgroups_list l;
    char why[512], dirnote[600];
    if (c->ldap && e.user) {
        if (dirgroups_lookup_now(c->ldap, e.user, &dir.set, why, sizeof(why)))
            snprintf(dirnote, sizeof(dirnote), "%s: read now", c->ldap->uri);
        else
            snprintf(dirnote, sizeof(dirnote), "%s unavailable: %s", c->ldap->uri, why);
        e.directory = dirnote;
    }
    if (dirgroups_list_build(&l, c->users, e.user, c->ldap && e.user ? &dir : NULL) < 0) {
        fprintf(stderr, "aigate: out of memory\n");
        dircache_set_unref(dir.set);
        free(body);
        return 2;
    }
    e.groups = l.names;
    e.sources = l.sources;
    e.ngroups = l.n;
    e.client = (struct sockaddr *)&ss;
    e.method = argv[1];
    e.url = argv[2];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    e.now = &tm;
    gate_cfg_init(&g, c);
    int rc = explain_print(stdout, &g, &e) < 0 ? 2 : 0;
    dirgroups_list_free(&l);
    dircache_set_unref(dir.set);
    free(body);
    return rc;
}

/*
 * Descriptors needed for limits.max_connections: one per client connection,
 * one more for its origin (or a CONNECT tunnel's), plus headroom for
 * listeners, the resolver, the audit log, idle pooled origin connections and
 * the admin listener.  Spliced tunnels take four more (two pipes) while they
 * move bulk data, and fall back to copying when they cannot get them.
 */
#define FD_HEADROOM 512

static void
fd_limit_check(const struct config *c)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)c->limits.max_connections * 2 + FD_HEADROOM;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    struct rlimit nl = {want, rl.rlim_max};
    if (want > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &nl) == 0)
        log_info("file descriptor limit raised from %llu to %llu for max_connections %d",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)want,
                 c->limits.max_connections);
    if (want < need)
        log_warnx("file descriptor limit %llu (hard limit) is below the %llu that max_connections "
                  "%d needs (2 per connection + %d); new connections pause when descriptors run "
                  "out: raise the hard limit (LimitNOFILE= in the systemd unit, ulimit -Hn) or "
                  "lower limits.max_connections",
                  (unsigned long long)want, (unsigned long long)need, c->limits.max_connections,
                  FD_HEADROOM);
}

static int
run_proxy(struct config *c, int foreground)
{
    char err[1024];
    sigset_t all, old;
    struct event *sigs[4] = {NULL, NULL, NULL, NULL};
    static const int signums[4] = {SIGHUP, SIGUSR1, SIGTERM, SIGINT};
    int rc = 1, started = 0, offloading = 0, admin_failed = 0;

    current = c;
    if (!foreground && daemon(1, 0) < 0) {
        fprintf(stderr, "aigate: daemon: %s\n", strerror(errno));
        goto out;
    }
    log_init(foreground, getenv("AIGATE_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_INFO);
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    fd_limit_check(c);
    for (size_t i = 0; i < c->nlisten; i++) {
        if (netaddr_probe_bind((struct sockaddr *)&c->listen[i].ss, c->listen[i].len) < 0) {
            log_warnx("cannot listen on %s: %s", c->listen[i].text, strerror(errno));
            goto out;
        }
    }
    struct audit_cfg ac = audit_cfg_of(c);
    if (!(rt.audit = audit_open(&ac, err, sizeof(err)))) {
        log_warnx("audit log: %s", err);
        goto out;
    }
    if (ack_secret_load(c->ack.secret_file, rt.ack_key, err, sizeof(err)) < 0 ||
        !(rt.acks = c->ack.store ? ack_redis_open(c->ack.store, c->workers, err, sizeof(err))
                                 : ack_store_open(c->ack.state_file, err, sizeof(err)))) {
        log_warnx("acknowledgements: %s", err);
        goto out;
    }
    if (!(rt.auth_backoff = auth_backoff_new()) || offload_start(2) < 0) {
        log_warnx("cannot start: out of resources");
        goto out;
    }
    offloading = 1;
    if (c->ldap && !(rt.dirgroups = dirgroups_new(c->ldap, err, sizeof(err)))) {
        log_warnx("%s", err);
        goto out;
    }
    nworkers = c->workers;
    workers = calloc((size_t)nworkers, sizeof(*workers));
    main_base = event_base_new();
    if (!workers || !main_base)
        goto out;

    /* Workers never see signals: only this thread's loop handles them. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = 0;
    for (int i = 0; i < nworkers && rc == 0; i++)
        if (worker_init(&workers[i], i, c) < 0)
            rc = 1;
    exit_evs = calloc((size_t)nworkers, sizeof(*exit_evs));
    for (int i = 0; exit_evs && i < nworkers; i++)
        if (!(exit_evs[i] = event_new(main_base, -1, 0, on_worker_exit, NULL)))
            rc = 1;
    if (!exit_evs)
        rc = 1;
    for (; rc == 0 && started < nworkers; started++)
        if (worker_start(&workers[started], exit_evs[started]) < 0)
            rc = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    struct timeval tick = {0, TRIM_TICK_MS * 1000};
    if (!(trim_ev = event_new(main_base, -1, EV_PERSIST, on_trim_tick, NULL)) ||
        event_add(trim_ev, &tick) < 0)
        rc = 1;
    for (int i = 0; i < 4; i++) {
        sigs[i] = evsignal_new(main_base, signums[i], on_signal, NULL);
        if (!sigs[i] || evsignal_add(sigs[i], NULL) < 0)
            rc = 1;
    }
    if (rc == 0 && !(admin = admin_start(main_base, c, &admin_failed)) && admin_failed)
        rc = 1;
    if (rc == 0) {
        for (size_t i = 0; i < c->nlisten; i++)
            log_info("listening on %s (%d workers)", c->listen[i].text, nworkers);
        event_base_dispatch(main_base);
    } else {
        for (int i = 0; i < started; i++)
            worker_post_stop(&workers[i]);
    }
    for (int i = 0; i < nworkers; i++)
        worker_join(&workers[i]);
out:
    if (offloading)
        offload_stop();
    /* Its journal thread hands finished commits back to the workers: close it first. */
    ack_store_close(rt.acks);
    rt.acks = NULL;
    /* Its threads hand finished lookups back to the workers too: before worker_free(). */
    dirgroups_free(rt.dirgroups);
    rt.dirgroups = NULL;
    for (int i = 0; workers && i < nworkers; i++)
        worker_free(&workers[i]);
    for (int i = 0; i < 4; i++)
        if (sigs[i])
            event_free(sigs[i]);
    for (int i = 0; exit_evs && i < nworkers; i++)
        if (exit_evs[i])
            event_free(exit_evs[i]);
    if (trim_ev)
        event_free(trim_ev);
    free(exit_evs);
    admin_free(admin);
    if (main_base)
        event_base_free(main_base);
    free(workers);
    audit_close(rt.audit);
    auth_backoff_free(rt.auth_backoff);
    config_unref(current);
    log_info("stopped");
    return rc;
}

int
main(int argc, char **argv)
{
    enum {
        OPT_EXPLAIN = 256,
        OPT_VERIFY,
        OPT_REPORT,
        OPT_FROM_ANY,
        OPT_GENCA,
        OPT_CHECKPOINT,
        OPT_UNLISTED
    };
    static const struct option longopts[] = {
        {"explain", no_argument, NULL, OPT_EXPLAIN},
        {"verify-log", no_argument, NULL, OPT_VERIFY},
        {"report", no_argument, NULL, OPT_REPORT},
        {"unlisted", no_argument, NULL, OPT_UNLISTED},
        {"from-any", no_argument, NULL, OPT_FROM_ANY},
        {"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
        {"gen-ca", required_argument, NULL, OPT_GENCA},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    const char *cfgpath = NULL, *checkpoint = NULL;
    int foreground = isatty(STDERR_FILENO), test = 0, version = 0, mode = 0, from_any = 0, ch;
    int unlisted = 0;
    char err[1024];

    /* Before any other libevent call (evmem.h says why). */
    if (evmem_install() < 0)
        fprintf(stderr, "aigate: evmem: cannot reserve its region; libevent allocates as usual\n");

    while ((ch = getopt_long(argc, argv, "c:ftVh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cfgpath = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 't':
            test = 1;
            break;
        case 'V':
            version = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case OPT_FROM_ANY:
            from_any = 1;
            break;
        case OPT_CHECKPOINT:
            checkpoint = optarg;
            break;
        case OPT_UNLISTED:
            unlisted = 1;
            break;
        case OPT_GENCA:
            if (tls_gen_ca(optarg, err, sizeof(err)) < 0) {
                fprintf(stderr, "aigate: %s\n", err);
                return 1;
            }
            printf("created %s/ca.pem and %s/ca.key\n", optarg, optarg);
            return 0;
        case OPT_EXPLAIN:
        case OPT_VERIFY:
        case OPT_REPORT:
            mode = ch;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    argc -= optind;
    argv += optind;
    if (version)
        return print_version(cfgpath ? cfgpath : default_config());
    if ((mode == OPT_REPORT && argc < 1) || (unlisted && mode != OPT_REPORT)) {
        usage(stderr);
        return 2;
    }
    if (mode == OPT_REPORT && !unlisted)
        return run_report(argv, argc);
    if ((mode == OPT_EXPLAIN && (argc < 3 || argc > 4)) || (mode == OPT_VERIFY && argc < 1) ||
        (mode == 0 && argc != 0) || (checkpoint && mode != OPT_VERIFY)) {
        usage(stderr);
        return 2;
    }
    if (!cfgpath)
        cfgpath = default_config();
    struct config *c = config_load(cfgpath, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    int rc;
    if (mode == OPT_REPORT) {
        rc = run_unlisted(c, cfgpath, argv, argc);
        config_unref(c);
        return rc;
    }
    if (mode == OPT_VERIFY) {
        FILE *cp = NULL;
        if (checkpoint && !(cp = strcmp(checkpoint, "-") == 0 ? stdin : fopen(checkpoint, "r"))) {
            fprintf(stderr, "aigate: %s: %s\n", checkpoint, strerror(errno));
            config_unref(c);
            return 2;
        }
        rc = audit_verify_checkpoint((const char *const *)argv, (size_t)argc,
                                     c->audit.chain_key_file, from_any, cp,
                                     cp == stdin ? "(stdin)" : checkpoint, stdout);
        if (cp && cp != stdin)
            fclose(cp);
        config_unref(c);
        return rc;
    }
    if (mode == OPT_EXPLAIN) {
        rc = run_explain(c, argv, argc);
        config_unref(c);
        return rc;
    }
    if (test) {
        printf("%s: configuration OK\n", cfgpath);
        config_unref(c);
        return 0;
    }
    return run_proxy(c, foreground);
}
