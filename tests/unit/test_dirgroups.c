/*
 * Unit tests for proxy/identity/dirgroups.c without a directory server: RFC 4515
 * escaping, filter templates and their checks, the cache verdicts, merging
 * config and directory groups, the `ldap` config section (defaults, errors
 * with FILE:LINE, the private password file), and the service against a
 * port nobody listens on (fast failure, then the back-off answers at once)
 * and against a server that never answers (the timeout_ms deadline,
 * cancelling, and stopping while a lookup is blocked).  Lookups against a
 * real slapd are in tests/e2e/t_directory_parts.sh.
 */
#include <check.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <libconfig.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aigate/core/config.h"
#include "aigate/core/offload.h"
#include "aigate/identity/dircache.h"
#include "aigate/identity/dirgroups.h"
#include "aigate/identity/users.h"
#include "aigate/net/worker.h"

/* ---- escaping and filters -------------------------------------------------------- */

START_TEST(test_escape)
{
    char out[64];
    ck_assert_int_eq(dirgroups_escape("alice", out, sizeof(out)), 5);
    ck_assert_str_eq(out, "alice");
    ck_assert_int_eq(dirgroups_escape("a*b(c)d\\e", out, sizeof(out)), 17);
    ck_assert_str_eq(out, "a\\2ab\\28c\\29d\\5ce");
    ck_assert_int_eq(dirgroups_escape("tab\there\x7f", out, sizeof(out)), 13);
    ck_assert_str_eq(out, "tab\\09here\\7f");
    /* UTF-8 passes unchanged (RFC 4515 allows it as is). */
    ck_assert_int_eq(dirgroups_escape("\xea\xb9\x80", out, sizeof(out)), 3);
    ck_assert_str_eq(out, "\xea\xb9\x80");
    /* Exactly fitting, and one byte short. */
    ck_assert_int_eq(dirgroups_escape("*", out, 4), 3);
    ck_assert_int_eq(dirgroups_escape("*", out, 3), -1);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(dirgroups_escape("", out, 1), 0);
    ck_assert_int_eq(dirgroups_escape("x", out, 0), -1);
}
END_TEST

START_TEST(test_expand)
{
    char out[256];
    ck_assert_int_gt(
        dirgroups_filter_expand("(&(objectClass=person)(uid=%u))", "o*(x)", NULL, out, sizeof(out)),
        0);
    ck_assert_str_eq(out, "(&(objectClass=person)(uid=o\\2a\\28x\\29))");
    ck_assert_int_gt(dirgroups_filter_expand("(|(member=%d)(memberUid=%u)(x=100%%))", "bob",
                                             "uid=bob,ou=R&D (lab),dc=x", out, sizeof(out)),
                     0);
    ck_assert_str_eq(out, "(|(member=uid=bob,ou=R&D \\28lab\\29,dc=x)(memberUid=bob)(x=100%))");
    /* %d with no DN known, unknown escapes, a dangling %, and no room. */
    ck_assert_int_eq(dirgroups_filter_expand("(member=%d)", "bob", NULL, out, sizeof(out)), -1);
    ck_assert_int_eq(dirgroups_filter_expand("(uid=%x)", "bob", NULL, out, sizeof(out)), -1);
    ck_assert_int_eq(dirgroups_filter_expand("(uid=%", "bob", NULL, out, sizeof(out)), -1);
    ck_assert_int_eq(dirgroups_filter_expand("(uid=%u)", "bob", NULL, out, 9), -1);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(dirgroups_filter_expand("(uid=%u)", "bob", NULL, out, 10), 9);
}
END_TEST

START_TEST(test_filter_check)
{
    char why[256];
    ck_assert_int_eq(
        dirgroups_filter_check("(&(objectClass=person)(uid=%u))", "u", why, sizeof(why)), 0);
    ck_assert_int_eq(dirgroups_filter_check("(member=%d)", "ud", why, sizeof(why)), 0);
    ck_assert_int_eq(dirgroups_filter_check("(cn=a\\2ab)", "u", why, sizeof(why)), 0);
    ck_assert_int_eq(dirgroups_filter_check("uid=%u", "u", why, sizeof(why)), -1);
    ck_assert_ptr_nonnull(strstr(why, "parentheses"));
    ck_assert_int_eq(dirgroups_filter_check("(&(uid=%u)", "u", why, sizeof(why)), -1);
    ck_assert_int_eq(dirgroups_filter_check("(uid=%u))(", "u", why, sizeof(why)), -1);
    ck_assert_int_eq(dirgroups_filter_check("(uid=%u)(cn=x)", "u", why, sizeof(why)), -1);
    ck_assert_ptr_nonnull(strstr(why, "after"));
    ck_assert_int_eq(dirgroups_filter_check("(member=%d)", "u", why, sizeof(why)), -1);
    ck_assert_ptr_nonnull(strstr(why, "%d"));
    ck_assert_int_eq(dirgroups_filter_check("(cn=a\\zz)", "u", why, sizeof(why)), -1);
    ck_assert_int_eq(dirgroups_filter_check("(cn=a\nb)", "u", why, sizeof(why)), -1);
    ck_assert_int_eq(dirgroups_filter_check("", "u", why, sizeof(why)), -1);
}
END_TEST

START_TEST(test_judge)
{
    time_t now = 1000000;
    /* Fresh: cached whatever the directory's state. */
    ck_assert_int_eq(dirgroups_judge(1, now - 10, now, 300, 0), DIRGROUPS_CACHED);
    ck_assert_int_eq(dirgroups_judge(1, now - 10, now, 300, 1), DIRGROUPS_CACHED);
    /* Stale and the directory answers: ask it. */
    ck_assert_int_eq(dirgroups_judge(1, now - 300, now, 300, 0), -1);
    ck_assert_int_eq(dirgroups_judge(0, 0, now, 300, 0), -1);
    /* Down: the last known for an hour, then none. */
    ck_assert_int_eq(dirgroups_judge(1, now - 300, now, 300, 1), DIRGROUPS_LAST_KNOWN);
    ck_assert_int_eq(dirgroups_judge(1, now - DIRGROUPS_STALE_S, now, 300, 1),
                     DIRGROUPS_LAST_KNOWN);
    ck_assert_int_eq(dirgroups_judge(1, now - DIRGROUPS_STALE_S - 1, now, 300, 1),
                     DIRGROUPS_UNAVAILABLE);
    ck_assert_int_eq(dirgroups_judge(0, 0, now, 300, 1), DIRGROUPS_UNAVAILABLE);
    /* cache_ttl_s = 0: never fresh. */
    ck_assert_int_eq(dirgroups_judge(1, now, now, 0, 0), -1);
    /* An entry from the future (the clock went back) is not trusted as fresh. */
    ck_assert_int_eq(dirgroups_judge(1, now + 100, now, 300, 0), -1);
    ck_assert_int_eq(dirgroups_judge(1, now + 100, now, 300, 1), DIRGROUPS_UNAVAILABLE);
    ck_assert_str_eq(dirgroups_source_name(DIRGROUPS_DIRECTORY), "directory");
    ck_assert_str_eq(dirgroups_source_name(DIRGROUPS_CACHED), "directory (cached)");
    ck_assert_str_eq(dirgroups_source_name(DIRGROUPS_UNAVAILABLE), "directory unavailable");
}
END_TEST

/* ---- config ------------------------------------------------------------------------- */

static char dir[64];

static void
setup(void)
{
    strcpy(dir, "/tmp/aigate-dirgroups-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *
write_file(const char *name, const char *text, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    ck_assert_int_eq(chmod(path, mode), 0);
    return path;
}

static struct config *
load(const char *text, char *err, size_t errlen)
{
    err[0] = '\0';
    return config_load(write_file("aigate.conf", text, 0644), err, errlen);
}

START_TEST(test_config_defaults)
{
    char err[512];
    struct config *c = load("ldap : { uri = \"ldap://dc1.corp.example\"; base = \"dc=corp\"; };",
                            err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_ptr_nonnull(c->ldap);
    ck_assert_str_eq(c->ldap->uri, "ldap://dc1.corp.example");
    ck_assert_str_eq(c->ldap->base, "dc=corp");
    ck_assert_ptr_null(c->ldap->bind_dn);
    ck_assert_ptr_null(c->ldap->bind_password);
    ck_assert_str_eq(c->ldap->user_filter, "(&(objectClass=person)(uid=%u))");
    ck_assert_str_eq(c->ldap->group_attr, "memberOf");
    ck_assert_ptr_null(c->ldap->group_filter);
    ck_assert_str_eq(c->ldap->group_name_attr, "cn");
    ck_assert_int_eq(c->ldap->cache_ttl_s, 300);
    ck_assert_int_eq(c->ldap->timeout_ms, 2000);
    ck_assert_int_eq(c->ldap->starttls, 0);
    ck_assert_ptr_null(c->ldap->ca_file);
    config_unref(c);
    c = load("", err, sizeof(err));
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(c->ldap);
    config_unref(c);
}
END_TEST

START_TEST(test_config_full)
{
    char err[512], text[1024];
    write_file("ldap.secret", "s3cret pass\r\n", 0600);
    write_file("ca.pem", "x", 0644);
    snprintf(text, sizeof(text),
             "ldap : {\n"
             "  uri = \"ldap://dc1.corp.example:389 ldap://dc2.corp.example\";\n"
             "  base = \"dc=corp,dc=example\";\n"
             "  bind_dn = \"cn=aigate,ou=services,dc=corp,dc=example\";\n"
             "  bind_password_file = \"ldap.secret\";\n"
             "  user_filter = \"(sAMAccountName=%%u)\";\n"
             "  group_filter = \"(member:1.2.840.113556.1.4.1941:=%%d)\";\n"
             "  group_name_attr = \"sAMAccountName\";\n"
             "  cache_ttl_s = 60; timeout_ms = 500; starttls = true; ca_file = \"ca.pem\";\n"
             "};\n"
             "policy = ( { name = \"ai\"; action = \"allow\"; groups = [ \"only-in-ad\" ]; } );\n");
    struct config *c = load(text, err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(c->ldap->bind_password, "s3cret pass");
    ck_assert_str_eq(c->ldap->bind_dn, "cn=aigate,ou=services,dc=corp,dc=example");
    ck_assert_ptr_null(c->ldap->group_attr);
    ck_assert_str_eq(c->ldap->group_filter, "(member:1.2.840.113556.1.4.1941:=%d)");
    ck_assert_int_eq(c->ldap->starttls, 1);
    ck_assert_int_eq(c->ldap->timeout_ms, 500);
    char want[128];
    snprintf(want, sizeof(want), "%s/ca.pem", dir);
    ck_assert_str_eq(c->ldap->ca_file, want);
    config_unref(c);
}
END_TEST

/* The config must fail with a message starting FILE:LINE and containing what. */
static void
load_fails(const char *text, int line, const char *what)
{
    char err[512], want[128];
    struct config *c = load(text, err, sizeof(err));
    ck_assert_msg(c == NULL, "loaded: %s", text);
    snprintf(want, sizeof(want), "%s/aigate.conf:%d: ", dir, line);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "want %s..., got %s", want, err);
    ck_assert_msg(strstr(err, what) != NULL, "want [%s] in %s", what, err);
}

START_TEST(test_config_errors)
{
    write_file("open.secret", "pw\n", 0644);
    write_file("gw.secret", "pw\n", 0620);
    write_file("two.secret", "pw\nmore\n", 0600);
    write_file("empty.secret", "\n", 0600);
    write_file("ok.secret", "pw\n", 0640);
    load_fails("ldap : {\n base = \"dc=x\"; };", 1, "\"uri\" is required");
    load_fails("ldap : { uri = \"ldap://x\";\n };", 1, "\"base\" is required");
    load_fails("ldap : { uri = \"http://x\"; base = \"dc=x\"; };", 1, "not an ldap://");
    load_fails("ldap : { uri = \"ldaps://x\"; base = \"dc=x\";\n starttls = true; };", 2,
               "StartTLS is for ldap://");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\"; group_attr = \"memberOf\";\n"
               " group_filter = \"(member=%d)\"; };",
               2, "not both");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\";\n user_filter = \"(uid=%d)\"; };", 2,
               "%d");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\";\n user_filter = \"(cn=x)\"; };", 2,
               "%u");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\";\n group_filter = \"(member=%d\"; };",
               2, "parentheses");
    load_fails(
        "ldap : { uri = \"ldap://x\"; base = \"dc=x\";\n group_filter = \"(&(member=%d)\"; };", 2,
        "unbalanced");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\";\n group_attr = \"member Of\"; };", 2,
               "not an attribute name");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\";\n timeout_ms = 0; };", 2, "between");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\";\n colour = 1; };", 2,
               "unknown key \"colour\" in ldap");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\";\n bind_dn = \"cn=a\"; };", 2,
               "needs bind_password_file");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\"; bind_dn = \"cn=a\";\n"
               " bind_password_file = \"open.secret\"; };",
               2, "is world-readable (mode 0644): chmod o-rwx");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\"; bind_dn = \"cn=a\";\n"
               " bind_password_file = \"gw.secret\"; };",
               2, "writable by its group");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\"; bind_dn = \"cn=a\";\n"
               " bind_password_file = \"two.secret\"; };",
               2, "one line");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\"; bind_dn = \"cn=a\";\n"
               " bind_password_file = \"empty.secret\"; };",
               2, "one line");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\"; bind_dn = \"cn=a\";\n"
               " bind_password_file = \"missing.secret\"; };",
               2, "No such file");
    load_fails("ldap : { uri = \"ldap://x\"; base = \"dc=x\";\n ca_file = \"nope.pem\"; };", 2,
               "ca_file");
    /* Without a directory, a rule's group must be defined in `groups`. */
    load_fails("policy = ( { name = \"ai\"; action = \"allow\"; groups = [ \"only-in-ad\" ]; } );",
               1, "unknown group");

    char err[512];
    struct config *c = load("ldap : { uri = \"ldap://x\"; base = \"dc=x\"; bind_dn = \"cn=a\";\n"
                            " bind_password_file = \"ok.secret\"; };",
                            err, sizeof(err));
    ck_assert_msg(c != NULL, "a group-readable password file is fine: %s", err);
    ck_assert_str_eq(c->ldap->bind_password, "pw");
    config_unref(c);
}
END_TEST

START_TEST(test_list_build)
{
    char err[512];
    struct config *c = load("groups = ( { name = \"local\"; members = [ \"alice\" ]; },\n"
                            "           { name = \"staff\"; members = [ \"alice\" ]; } );\n",
                            err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    const char *names[] = {"staff", "ai-users"};
    struct dirgroups_answer a = {DIRGROUPS_CACHED, dircache_set_new(names, 2)};
    struct dirgroups_list l;
    ck_assert_int_eq(dirgroups_list_build(&l, c->users, "alice", &a), 0);
    ck_assert_uint_eq(l.n, 3);
    ck_assert_str_eq(l.names[0], "local");
    ck_assert_str_eq(l.sources[0], "config");
    ck_assert_str_eq(l.names[1], "staff"); /* in both: listed once, as config */
    ck_assert_str_eq(l.sources[1], "config");
    ck_assert_str_eq(l.names[2], "ai-users");
    ck_assert_str_eq(l.sources[2], "directory (cached)");
    dirgroups_list_free(&l);
    ck_assert_int_eq(dirgroups_list_build(&l, c->users, "bob", &a), 0);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.sources[0], "directory (cached)");
    dirgroups_list_free(&l);
    ck_assert_int_eq(dirgroups_list_build(&l, c->users, "alice", NULL), 0);
    ck_assert_uint_eq(l.n, 2);
    dirgroups_list_free(&l);
    struct dirgroups_answer none = {DIRGROUPS_UNAVAILABLE, NULL};
    ck_assert_int_eq(dirgroups_list_build(&l, c->users, "bob", &none), 0);
    ck_assert_uint_eq(l.n, 0);
    ck_assert_ptr_null(l.names);
    dirgroups_list_free(&l);
    dircache_set_unref(a.set);
    config_unref(c);
}
END_TEST

/* ---- the service, without a directory -------------------------------------------------- */

static struct worker tw;
static int ncalls;
static struct dirgroups_answer last;
static long long t0;

static long long
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
tw_setup(void)
{
    setup();
    evthread_use_pthreads();
    memset(&tw, 0, sizeof(tw));
    pthread_mutex_init(&tw.done_mu, NULL);
    ck_assert_ptr_nonnull(tw.base = event_base_new());
    ck_assert_int_eq(worker_wake_init(&tw), 0);
    ncalls = 0;
    memset(&last, 0, sizeof(last));
}

static void
tw_teardown(void)
{
    worker_wake_free(&tw);
    event_base_free(tw.base);
    teardown();
}

static void
on_answer(struct dirgroups_answer ans, void *arg)
{
    ck_assert_ptr_eq(arg, &tw);
    ncalls++;
    dircache_set_unref(last.set);
    last = ans;
    event_base_loopbreak(tw.base);
}

/* Run the stand-in worker's loop for up to ms. */
static void
run_for(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(tw.base, &tv);
    event_base_dispatch(tw.base);
}

static struct dirgroups_cfg
cfg_for(char *uri, int timeout_ms)
{
    static char base[] = "dc=x", uf[] = "(uid=%u)", ga[] = "memberOf", gna[] = "cn";
    struct dirgroups_cfg c = {.uri = uri,
                              .base = base,
                              .user_filter = uf,
                              .group_attr = ga,
                              .group_name_attr = gna,
                              .cache_ttl_s = 300,
                              .timeout_ms = timeout_ms};
    return c;
}

/* A listening socket on 127.0.0.1 that never accepts: connections complete, nothing answers. */
static int
silent_listener(char *uri, size_t cap)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(uri, cap, "ldap://127.0.0.1:%u", ntohs(sin.sin_port));
    return fd;
}

/* A port on 127.0.0.1 where nobody listens. */
static void
closed_port(char *uri, size_t cap)
{
    int fd = silent_listener(uri, cap);
    close(fd);
}

START_TEST(test_refused_then_backoff)
{
    char uri[64], err[256];
    struct dirgroups_answer now;
    struct dirgroups_req *req;
    closed_port(uri, sizeof(uri));
    struct dirgroups_cfg c = cfg_for(uri, 3000);
    struct dirgroups *d = dirgroups_new(&c, err, sizeof(err));
    ck_assert_msg(d != NULL, "%s", err);

    t0 = mono_ms();
    ck_assert_int_eq(dirgroups_get(d, &tw, "alice", on_answer, &tw, &now, &req), 0);
    ck_assert_int_eq(ncalls, 0); /* never from inside dirgroups_get() */
    run_for(5000);
    ck_assert_int_eq(ncalls, 1);
    ck_assert_int_eq(last.source, DIRGROUPS_UNAVAILABLE);
    ck_assert_ptr_null(last.set);
    ck_assert_int_lt(mono_ms() - t0, 2500); /* refused: no need to wait for the deadline */

    /* In the back-off: answered at once, without a callback. */
    ck_assert_int_eq(dirgroups_get(d, &tw, "bob", on_answer, &tw, &now, &req), 1);
    ck_assert_int_eq(now.source, DIRGROUPS_UNAVAILABLE);
    ck_assert_ptr_null(now.set);
    struct dirgroups_stats st;
    dirgroups_stats(d, &st);
    ck_assert_uint_eq(st.lookups, 1);
    ck_assert_uint_eq(st.failures, 1);
    ck_assert_uint_eq(st.fallbacks, 1);
    /* Empty or overlong user names are refused. */
    ck_assert_int_eq(dirgroups_get(d, &tw, "", on_answer, &tw, &now, &req), -1);
    dirgroups_free(d);
    dirgroups_free(NULL);
}
END_TEST

START_TEST(test_deadline_and_stop_while_blocked)
{
    char uri[64], err[256];
    struct dirgroups_answer now;
    struct dirgroups_req *req;
    int lfd = silent_listener(uri, sizeof(uri));
    struct dirgroups_cfg c = cfg_for(uri, 300);
    struct dirgroups *d = dirgroups_new(&c, err, sizeof(err));
    ck_assert_msg(d != NULL, "%s", err);

    t0 = mono_ms();
    ck_assert_int_eq(dirgroups_get(d, &tw, "alice", on_answer, &tw, &now, &req), 0);
    ck_assert_int_eq(dirgroups_get(d, &tw, "alice", on_answer, &tw, &now, &req), 0);
    run_for(5000);
    run_for(50);
    long long took = mono_ms() - t0;
    ck_assert_int_eq(ncalls, 2); /* both waiters of the one lookup, at the deadline */
    ck_assert_int_eq(last.source, DIRGROUPS_UNAVAILABLE);
    ck_assert_int_ge(took, 290);
    ck_assert_int_lt(took, 2000);
    struct dirgroups_stats st;
    dirgroups_stats(d, &st);
    ck_assert_uint_eq(st.lookups, 1);
    ck_assert_uint_eq(st.timeouts, 2);

    /* Cancelled before its deadline: no callback. */
    ck_assert_int_eq(dirgroups_get(d, &tw, "carol", on_answer, &tw, &now, &req), 0);
    dirgroups_cancel(req);
    run_for(600);
    ck_assert_int_eq(ncalls, 2);

    /* The lookup thread is blocked on the silent server (its own limit is 10 s): stopping
     * interrupts it. */
    t0 = mono_ms();
    dirgroups_free(d);
    ck_assert_int_lt(mono_ms() - t0, 3000);
    close(lfd);
}
END_TEST

START_TEST(test_reconfigure)
{
    char uri[64], uri2[64], err[256];
    closed_port(uri, sizeof(uri));
    closed_port(uri2, sizeof(uri2));
    struct dirgroups_cfg c = cfg_for(uri, 1000);
    struct dirgroups *d = dirgroups_new(&c, err, sizeof(err));
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(dirgroups_reconfigure(d, &c), 0);
    struct dirgroups_cfg c2 = cfg_for(uri2, 1000);
    ck_assert_int_eq(dirgroups_reconfigure(d, &c2), 0);
    struct dirgroups_answer now;
    struct dirgroups_req *req;
    ck_assert_int_eq(dirgroups_get(d, &tw, "alice", on_answer, &tw, &now, &req), 0);
    run_for(3000);
    ck_assert_int_eq(ncalls, 1);
    dirgroups_free(d);
}
END_TEST

START_TEST(test_lookup_now_unreachable)
{
    char uri[64], why[256];
    struct dircache_set *set = (struct dircache_set *)&set;
    closed_port(uri, sizeof(uri));
    struct dirgroups_cfg c = cfg_for(uri, 1000);
    ck_assert_int_eq(dirgroups_lookup_now(&c, "alice", &set, why, sizeof(why)), 0);
    ck_assert_ptr_null(set);
    ck_assert_msg(strstr(why, "contact") || strstr(why, "connect"), "%s", why);
}
END_TEST

Suite *dirgroups_suite(void);

Suite *
dirgroups_suite(void)
{
    Suite *s = suite_create("dirgroups");
    TCase *tc = tcase_create("pure");
    tcase_add_test(tc, test_escape);
    tcase_add_test(tc, test_expand);
    tcase_add_test(tc, test_filter_check);
    tcase_add_test(tc, test_judge);
    suite_add_tcase(s, tc);
    tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_config_defaults);
    tcase_add_test(tc, test_config_full);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_list_build);
    suite_add_tcase(s, tc);
    tc = tcase_create("service");
    tcase_add_checked_fixture(tc, tw_setup, tw_teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_refused_then_backoff);
    tcase_add_test(tc, test_deadline_and_stop_while_blocked);
    tcase_add_test(tc, test_reconfigure);
    tcase_add_test(tc, test_lookup_now_unreachable);
    suite_add_tcase(s, tc);
    return s;
}
