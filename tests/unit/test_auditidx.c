/*
 * Audit index: counting per key with filters and groups, exact period bounds,
 * hour/day keys in a time zone, unreadable and partial lines, gzip files, the
 * fast path against jansson on lines from the real formatter, the JSON and
 * CSV answers, /api/recent, --report, and the follow thread (a line
 * completed later, rotations by the real writer several between two polls,
 * a restart equal to the run before).
 */
#include "aigate/audit/auditidx.h"

#include <check.h>
#include <dirent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <libconfig.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "aigate/audit/audit.h"
#include "aigate/identity/users.h"

#define CHAIN ",\"chain\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}"
#define T0 1795407000LL /* 2026-11-23T04:10:00Z */

static char dir[64], logpath[128];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/aigate-idx-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(logpath, sizeof(logpath), "%s/audit.jsonl", dir);
}

static void
teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[512];
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
    rmdir(dir);
}

static enum audit_action
act_of(const char *name)
{
    static const enum audit_action all[] = {AUDIT_ALLOW, AUDIT_BLOCK,     AUDIT_WARN,
                                            AUDIT_ACK,   AUDIT_AUTH_FAIL, AUDIT_ERROR};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(audit_action_name(all[i]), name) == 0)
            return all[i];
    ck_abort_msg("no action %s", name);
    return AUDIT_NONE;
}

/* One line as the writer makes it (audit_format + a chain field), with a newline. */
static void
put_line(FILE *f, int64_t sec, int ms, const char *user, const char *service, const char *rule,
         const char *action, int64_t bytes_out, const char *dlp)
{
    struct audit_rec r = {0};
    char buf[AUDIT_LINE_MAX];
    const char *kinds[1] = {dlp};
    r.ts.tv_sec = (time_t)sec;
    r.ts.tv_nsec = ms * 1000000L;
    snprintf(r.id, sizeof(r.id), "%032x", 7);
    r.client = "10.0.0.1";
    r.user = user;
    r.method = "GET";
    r.scheme = "https";
    r.host = "h.example";
    r.port = 443;
    r.path = "/p";
    r.service = service;
    r.category = service ? "chat" : NULL;
    r.rule = rule;
    r.action = act_of(action);
    r.status = 200;
    r.bytes_in = 10;
    r.bytes_out = bytes_out;
    r.ms = 3;
    r.tls = "intercept";
    r.dlp = dlp ? kinds : NULL;
    r.ndlp = dlp ? 1 : 0;
    size_t n = audit_format(buf, sizeof(buf), &r, 0);
    ck_assert_uint_gt(n, 0);
    fwrite(buf, 1, n - 1, f);
    fputs(CHAIN "\n", f);
}

/*
 * The mix: 10 lines in 2026-11-23T04:10..06:xx UTC.
 *   alice chatgpt allow x3 (bytes 100 each), alice chatgpt block + dlp (rule no-cards, bytes 5)
 *   bob claude warn x2, bob claude ack, bob claude allow (rule caution)
 *   anonymous (null user) no service allow (bytes null), carol gemini error
 */
static void
write_mix(FILE *f)
{
    put_line(f, T0, 0, "alice", "chatgpt", NULL, "allow", 100, NULL);
    put_line(f, T0 + 1, 500, "alice", "chatgpt", NULL, "allow", 100, NULL);
    put_line(f, T0 + 2, 0, "alice", "chatgpt", NULL, "allow", 100, NULL);
    put_line(f, T0 + 3, 0, "alice", "chatgpt", "no-cards", "block", 5, "credit-card");
    put_line(f, T0 + 3600, 0, "bob", "claude", "caution", "warn", 1000, NULL);
    put_line(f, T0 + 3601, 0, "bob", "claude", "caution", "warn", 1000, NULL);
    put_line(f, T0 + 3602, 0, "bob", "claude", NULL, "ack", 50, NULL);
    put_line(f, T0 + 3603, 0, "bob", "claude", "caution", "allow", 7, NULL);
    put_line(f, T0 + 7200, 0, NULL, NULL, NULL, "allow", -1, NULL);
    put_line(f, T0 + 7201, 999, "carol", "gemini", NULL, "error", 0, NULL);
}

static struct auditidx *
load_mix(void)
{
    FILE *f = fopen(logpath, "w");
    ck_assert_ptr_nonnull(f);
    write_mix(f);
    fclose(f);
    struct auditidx *x = auditidx_new();
    char err[256];
    ck_assert_int_eq(auditidx_load_file(x, logpath, err, sizeof(err)), 0);
    return x;
}

static struct auditidx_query
q_all(enum auditidx_by by)
{
    struct auditidx_query q = {0};
    q.from_ms = (T0 - 86400) * 1000;
    q.to_ms = (T0 + 86400) * 1000;
    q.by = by;
    return q;
}

static void
filt(struct auditidx_filter *f, const char *v)
{
    f->set = 1;
    f->is_null = v == NULL;
    snprintf(f->v, sizeof(f->v), "%s", v ? v : "");
}

/* The row of key (NULL: the null row), or NULL. */
static const struct auditidx_row *
row(const struct auditidx_result *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++)
        if ((!key && !r->rows[i].key) || (key && r->rows[i].key && !strcmp(key, r->rows[i].key)))
            return &r->rows[i];
    return NULL;
}

#define ROW_EQ(res, key, req, al, wa, ak, bl, dl, by)                                              \
    do {                                                                                           \
        const struct auditidx_row *r_ = row(res, key);                                             \
        ck_assert_msg(r_ != NULL, "no row %s", key ? key : "null");                                \
        ck_assert_uint_eq(r_->requests, req);                                                      \
        ck_assert_uint_eq(r_->allow, al);                                                          \
        ck_assert_uint_eq(r_->warn, wa);                                                           \
        ck_assert_uint_eq(r_->ack, ak);                                                            \
        ck_assert_uint_eq(r_->block, bl);                                                          \
        ck_assert_uint_eq(r_->dlp, dl);                                                            \
        ck_assert_uint_eq(r_->bytes_out, by);                                                      \
    } while (0)

START_TEST(test_count_by)
{
    struct auditidx *x = load_mix();
    struct auditidx_result res;
    struct auditidx_query q = q_all(AUDITIDX_BY_SERVICE);
    uint64_t lines, bad, bytes;

    auditidx_stats(x, &lines, &bad, &bytes);
    ck_assert_uint_eq(lines, 10);
    ck_assert_uint_eq(bad, 0);
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 4);
    ROW_EQ(&res, "chatgpt", 4, 3, 0, 0, 1, 1, 305);
    ROW_EQ(&res, "claude", 4, 1, 2, 1, 0, 0, 2057);
    ROW_EQ(&res, NULL, 1, 1, 0, 0, 0, 0, 0);
    ROW_EQ(&res, "gemini", 1, 0, 0, 0, 0, 0, 0);
    /* requests descending, then key, null last */
    ck_assert_str_eq(res.rows[0].key, "chatgpt");
    ck_assert_str_eq(res.rows[1].key, "claude");
    ck_assert_str_eq(res.rows[2].key, "gemini");
    ck_assert_ptr_null(res.rows[3].key);
    auditidx_result_free(&res);

    q.by = AUDITIDX_BY_RULE;
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ROW_EQ(&res, "no-cards", 1, 0, 0, 0, 1, 1, 5);
    ROW_EQ(&res, "caution", 3, 1, 2, 0, 0, 0, 2007);
    ROW_EQ(&res, NULL, 6, 4, 0, 1, 0, 0, 350);
    auditidx_result_free(&res);

    q.by = AUDITIDX_BY_ACTION;
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 5);
    ROW_EQ(&res, "allow", 5, 5, 0, 0, 0, 0, 307);
    ROW_EQ(&res, "error", 1, 0, 0, 0, 0, 0, 0);
    auditidx_result_free(&res);

    q.by = AUDITIDX_BY_USER;
    filt(&q.action, "allow");
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 3);
    ROW_EQ(&res, "alice", 3, 3, 0, 0, 0, 0, 300);
    ROW_EQ(&res, NULL, 1, 1, 0, 0, 0, 0, 0);
    auditidx_result_free(&res);

    q = q_all(AUDITIDX_BY_USER);
    filt(&q.user, NULL); /* null user only */
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 1);
    ROW_EQ(&res, NULL, 1, 1, 0, 0, 0, 0, 0);
    auditidx_result_free(&res);

    q = q_all(AUDITIDX_BY_CATEGORY);
    filt(&q.service, "nosuch");
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 0);
    auditidx_result_free(&res);

    q = q_all(AUDITIDX_BY_SERVICE);
    q.limit = 2;
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 2);
    auditidx_result_free(&res);
    auditidx_free(x);
}
END_TEST

START_TEST(test_period_exact)
{
    struct auditidx *x = load_mix();
    struct auditidx_result res;
    struct auditidx_query q = q_all(AUDITIDX_BY_ACTION);

    /* [T0 + 1.500 s, T0 + 3 s): only the second line; to is exclusive, from inclusive */
    q.from_ms = (T0 + 1) * 1000 + 500;
    q.to_ms = (T0 + 3) * 1000 - 1000;
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 1);
    ROW_EQ(&res, "allow", 1, 1, 0, 0, 0, 0, 100);
    auditidx_result_free(&res);
    q.from_ms++;
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 0);
    auditidx_result_free(&res);
    q.from_ms = T0 * 1000;
    q.to_ms = (T0 + 3) * 1000 + 1;
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ROW_EQ(&res, "allow", 3, 3, 0, 0, 0, 0, 300);
    ROW_EQ(&res, "block", 1, 0, 0, 0, 1, 1, 5);
    auditidx_result_free(&res);
    auditidx_free(x);
}
END_TEST

START_TEST(test_hour_day_tz)
{
    struct auditidx *x = load_mix();
    struct auditidx_result res;
    struct auditidx_query q = q_all(AUDITIDX_BY_HOUR);

    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 3);
    ck_assert_str_eq(res.rows[0].key, "2026-11-23T04:00:00Z");
    ck_assert_uint_eq(res.rows[0].requests, 4);
    ck_assert_str_eq(res.rows[1].key, "2026-11-23T05:00:00Z");
    ck_assert_str_eq(res.rows[2].key, "2026-11-23T06:00:00Z");
    auditidx_result_free(&res);

    q.tz_min = 9 * 60; /* KST: 13:10 .. 15:10 */
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_str_eq(res.rows[0].key, "2026-11-23T13:00:00+09:00");
    auditidx_result_free(&res);

    q.tz_min = -5 * 60; /* 23:10 the day before .. 01:10 */
    q.by = AUDITIDX_BY_DAY;
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 2);
    ck_assert_str_eq(res.rows[0].key, "2026-11-22");
    ck_assert_uint_eq(res.rows[0].requests, 4);
    ck_assert_str_eq(res.rows[1].key, "2026-11-23");
    ck_assert_uint_eq(res.rows[1].requests, 6);
    auditidx_result_free(&res);

    q.by = AUDITIDX_BY_MINUTE;
    q.tz_min = 0;
    q.from_ms = T0 * 1000;
    q.to_ms = (T0 + 60) * 1000;
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 1);
    ck_assert_str_eq(res.rows[0].key, "2026-11-23T04:10:00Z");
    auditidx_result_free(&res);

    q = q_all(AUDITIDX_BY_HOUR);
    q.from_ms = 0;
    q.to_ms = 253402300799000LL; /* 9999-12-31: too many hours */
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), -2);
    ck_assert_uint_eq(res.n, 0);
    auditidx_free(x);
}
END_TEST

START_TEST(test_groups)
{
    config_t c;
    char err[256];
    config_init(&c);
    ck_assert(config_read_string(&c, "groups = ( { name = \"staff\"; members = [ \"alice\", "
                                     "\"bob\" ]; }, { name = \"security\"; members = [ "
                                     "\"bob\" ]; } );") == CONFIG_TRUE);
    struct users *u = users_load(config_setting_get_member(config_root_setting(&c), "groups"), NULL,
                                 err, sizeof(err));
    ck_assert_ptr_nonnull(u);
    struct auditidx *x = load_mix();
    struct auditidx_result res;
    struct auditidx_query q = q_all(AUDITIDX_BY_GROUP);

    ck_assert_int_eq(auditidx_query(x, &q, u, &res), 0);
    ck_assert_uint_eq(res.n, 3);
    ROW_EQ(&res, "staff", 8, 4, 2, 1, 1, 1, 2362);
    ROW_EQ(&res, "security", 4, 1, 2, 1, 0, 0, 2057);
    ROW_EQ(&res, NULL, 2, 1, 0, 0, 0, 0, 0); /* carol (no group) and the anonymous line */
    auditidx_result_free(&res);

    q.by = AUDITIDX_BY_USER;
    filt(&q.group, "security");
    ck_assert_int_eq(auditidx_query(x, &q, u, &res), 0);
    ck_assert_uint_eq(res.n, 1);
    ROW_EQ(&res, "bob", 4, 1, 2, 1, 0, 0, 2057);
    auditidx_result_free(&res);

    filt(&q.group, NULL); /* users in no group */
    ck_assert_int_eq(auditidx_query(x, &q, u, &res), 0);
    ck_assert_uint_eq(res.n, 2);
    ck_assert_ptr_nonnull(row(&res, "carol"));
    ck_assert_ptr_nonnull(row(&res, NULL));
    auditidx_result_free(&res);

    /* without a configuration nobody is in a group */
    q = q_all(AUDITIDX_BY_GROUP);
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 1);
    ROW_EQ(&res, NULL, 10, 5, 2, 1, 1, 1, 2362);
    auditidx_result_free(&res);
    auditidx_free(x);
    users_free(u);
    config_destroy(&c);
}
END_TEST

START_TEST(test_unreadable_and_partial)
{
    FILE *f = fopen(logpath, "w");
    ck_assert_ptr_nonnull(f);
    write_mix(f);
    fputs("not json\n", f);
    fputs("[1,2]\n", f);
    fputs("{\"ts\":\"yesterday\",\"action\":\"allow\"}\n", f);
    fputs("{\"ts\":\"2026-11-23T04:10:00.000Z\"}\n", f); /* no action */
    fputs("{\"ts\":\"2026-11-23T04:10:00.000Z\",\"action\":\"allow\",\"user\":5}\n", f); /* user */
    fputs("{\"ts\":\"2026-11-23T04:10:00.000Z\",\"action\":\"allow\",\"bytes_out\":-1}\n", f);
    fputs("\n", f);
    /* hand-written but valid: another field order, an escape, a unicode user: jansson */
    fputs("{\"action\":\"block\",\"user\":\"\\uae40\\ucca0\\uc218\",\"service\":\"chat\\\"gpt\","
          "\"ts\":\"2026-11-23T04:10:00Z\",\"dlp\":[\"email\"]}\n",
          f);
    fputs("{\"ts\":\"2026-11-23T04:10:00.000Z\",\"action\":\"allow\"", f); /* no newline */
    fclose(f);
    struct auditidx *x = auditidx_new();
    char err[256];
    uint64_t lines, bad, bytes;
    ck_assert_int_eq(auditidx_load_file(x, logpath, err, sizeof(err)), 0);
    auditidx_stats(x, &lines, &bad, &bytes);
    ck_assert_uint_eq(lines, 11);
    ck_assert_uint_eq(bad, 8); /* 7 bad lines (the empty one too) and the partial last line */
    struct auditidx_result res;
    struct auditidx_query q = q_all(AUDITIDX_BY_USER);
    filt(&q.service, "chat\"gpt");
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ck_assert_uint_eq(res.n, 1);
    ROW_EQ(&res, "\xea\xb9\x80\xec\xb2\xa0\xec\x88\x98", 1, 0, 0, 0, 1, 1, 0);
    auditidx_result_free(&res);
    auditidx_free(x);

    /* a missing file is an error that names it */
    x = auditidx_new();
    ck_assert_int_eq(auditidx_load_file(x, "/nonexistent/audit.jsonl", err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/audit.jsonl"));
    auditidx_free(x);
}
END_TEST

START_TEST(test_gzip)
{
    char gzpath[160], *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    write_mix(m);
    fclose(m);
    snprintf(gzpath, sizeof(gzpath), "%s/audit.jsonl.20261123T041000Z.0001.gz", dir);
    gzFile gz = gzopen(gzpath, "wb");
    ck_assert_ptr_nonnull(gz);
    ck_assert_int_eq(gzwrite(gz, buf, (unsigned)len), (int)len);
    gzclose(gz);
    struct auditidx *x = auditidx_new();
    char err[256];
    uint64_t lines, bad, bytes;
    ck_assert_int_eq(auditidx_load_file(x, gzpath, err, sizeof(err)), 0);
    auditidx_stats(x, &lines, &bad, &bytes);
    ck_assert_uint_eq(lines, 10);
    ck_assert_uint_eq(bad, 0);
    struct auditidx_result res;
    struct auditidx_query q = q_all(AUDITIDX_BY_SERVICE);
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    ROW_EQ(&res, "claude", 4, 1, 2, 1, 0, 0, 2057);
    auditidx_result_free(&res);
    auditidx_free(x);

    /* a damaged gzip file: an error naming it, the lines before it kept */
    gz = gzopen(gzpath, "wb");
    gzwrite(gz, buf, (unsigned)len);
    gzclose(gz);
    ck_assert_int_eq(truncate(gzpath, 60), 0);
    x = auditidx_new();
    ck_assert_int_eq(auditidx_load_file(x, gzpath, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, gzpath));
    auditidx_free(x);
    free(buf);
}
END_TEST

/* The fast path never accepts what jansson would not, and takes the same fields. */
static void
differential(const char *line, size_t len, int *fast_ok)
{
    char a[4096], b[4096];
    int fr = auditidx_parse_debug(line, len, 1, a, sizeof(a));
    int jr = auditidx_parse_debug(line, len, 0, b, sizeof(b));
    if (fr == 0) {
        ck_assert_msg(jr == 0, "fast path took what jansson refuses: %.*s", (int)len, line);
        ck_assert_str_eq(a, b);
        (*fast_ok)++;
    } else {
        ck_assert_int_eq(fr, 1);
    }
}

START_TEST(test_fast_path_agrees)
{
    static const char *const users[] = {
        "alice", NULL, "\xea\xb9\x80\xec\xb2\xa0\xec\x88\x98", "a\"b", "c\\d", "tab\tx", "", "x y"};
    static const char *const dlps[] = {NULL, "email"};
    int fast_ok = 0, lines = 0;
    char buf[AUDIT_LINE_MAX + 128];

    for (size_t u = 0; u < sizeof(users) / sizeof(users[0]); u++)
        for (int nulls = 0; nulls < 2; nulls++)
            for (size_t d = 0; d < 2; d++) {
                struct audit_rec r = {0};
                const char *kinds[2] = {dlps[d], "kr-rrn"};
                r.ts.tv_sec = T0;
                r.ts.tv_nsec = 5000000;
                snprintf(r.id, sizeof(r.id), "%032x", 9);
                r.client = nulls ? NULL : "10.0.0.1";
                r.user = users[u];
                r.method = "POST";
                r.scheme = "https";
                r.host = "chat.example";
                r.port = nulls ? -1 : 443;
                r.path = "/a/b?c=d";
                r.service = nulls ? NULL : "chatgpt";
                r.category = nulls ? NULL : "chat";
                r.rule = nulls ? NULL : "rule-1";
                r.action = AUDIT_BLOCK;
                r.status = nulls ? -1 : 403;
                r.bytes_in = nulls ? -1 : 0;
                r.bytes_out = nulls ? -1 : 123456789012LL;
                r.ms = nulls ? -1 : 12;
                r.tls = nulls ? NULL : "none";
                r.dlp = dlps[d] ? kinds : NULL;
                r.ndlp = dlps[d] ? 2 : 0;
                size_t n = audit_format(buf, sizeof(buf), &r, 0);
                ck_assert_uint_gt(n, 0);
                memcpy(buf + n - 1, CHAIN, sizeof(CHAIN));
                n = n - 1 + strlen(CHAIN);
                differential(buf, n, &fast_ok);
                lines++;
                /* every prefix and a changed byte at every place: still never disagreeing */
                for (size_t cut = 0; cut < n; cut++)
                    differential(buf, cut, &fast_ok);
                for (size_t i = 0; i < n; i++) {
                    char c = buf[i];
                    buf[i] = c == '"' ? 'x' : c == ',' ? ' ' : '"';
                    differential(buf, n, &fast_ok);
                    buf[i] = c;
                }
            }
    /* the plain lines (alice, null, "", "x y"; with and without nulls and dlp) took the fast path
     */
    ck_assert_int_ge(fast_ok, 16);
    ck_assert_int_eq(lines, 32);
}
END_TEST

START_TEST(test_write_json_csv)
{
    FILE *f = fopen(logpath, "w");
    put_line(f, T0, 0, "=cmd", "chatgpt", NULL, "allow", 1, NULL);
    put_line(f, T0, 0, "a,b", "chatgpt", NULL, "warn", 2, NULL);
    put_line(f, T0, 0, "q\"x", "chatgpt", NULL, "allow", 3, NULL);
    put_line(f, T0, 0, NULL, "chatgpt", NULL, "allow", 3, NULL);
    fclose(f);
    struct auditidx *x = auditidx_new();
    char err[256];
    ck_assert_int_eq(auditidx_load_file(x, logpath, err, sizeof(err)), 0);
    struct auditidx_result res;
    struct auditidx_query q = q_all(AUDITIDX_BY_USER);
    ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
    struct evbuffer *b = evbuffer_new();
    ck_assert_int_eq(auditidx_result_write(&q, &res, b), 0);
    evbuffer_add(b, "", 1);
    const char *s = (const char *)evbuffer_pullup(b, -1);
    ck_assert_str_eq(s,
                     "{\"from\":\"2026-11-22T04:10:00.000Z\",\"to\":\"2026-11-24T04:10:00.000Z\","
                     "\"by\":\"user\",\"rows\":["
                     "{\"key\":\"=cmd\",\"requests\":1,\"allow\":1,\"warn\":0,\"ack\":0,"
                     "\"block\":0,\"dlp\":0,\"bytes_out\":1},"
                     "{\"key\":\"a,b\",\"requests\":1,\"allow\":0,\"warn\":1,\"ack\":0,"
                     "\"block\":0,\"dlp\":0,\"bytes_out\":2},"
                     "{\"key\":\"q\\\"x\",\"requests\":1,\"allow\":1,\"warn\":0,\"ack\":0,"
                     "\"block\":0,\"dlp\":0,\"bytes_out\":3},"
                     "{\"key\":null,\"requests\":1,\"allow\":1,\"warn\":0,\"ack\":0,"
                     "\"block\":0,\"dlp\":0,\"bytes_out\":3}]}\n");
    evbuffer_free(b);
    b = evbuffer_new();
    q.csv = 1;
    ck_assert_int_eq(auditidx_result_write(&q, &res, b), 0);
    evbuffer_add(b, "", 1);
    s = (const char *)evbuffer_pullup(b, -1);
    ck_assert_str_eq(s, "key,requests,allow,warn,ack,block,dlp,bytes_out\r\n"
                        "'=cmd,1,1,0,0,0,0,1\r\n"
                        "\"a,b\",1,0,1,0,0,0,2\r\n"
                        "\"q\"\"x\",1,1,0,0,0,0,3\r\n"
                        ",1,1,0,0,0,0,3\r\n");
    evbuffer_free(b);
    auditidx_result_free(&res);
    auditidx_free(x);
}
END_TEST

/* Every grouping names itself in the JSON answer; "minute" once read past the names (found by
 * tests/fuzz/fuzz_audit_log). */
START_TEST(test_write_every_by)
{
    static const char *const names[] = {"service",  "user", "group", "rule",  "action",
                                        "category", "hour", "day",   "minute"};
    FILE *f = fopen(logpath, "w");
    put_line(f, T0, 0, "alice", "chatgpt", NULL, "allow", 1, NULL);
    fclose(f);
    struct auditidx *x = auditidx_new();
    char err[256], want[64];
    ck_assert_int_eq(auditidx_load_file(x, logpath, err, sizeof(err)), 0);
    for (int by = AUDITIDX_BY_SERVICE; by <= AUDITIDX_BY_MINUTE; by++) {
        struct auditidx_result res;
        struct auditidx_query q = q_all((enum auditidx_by)by);
        struct evbuffer *b = evbuffer_new();
        ck_assert_int_eq(auditidx_query(x, &q, NULL, &res), 0);
        ck_assert_int_eq(auditidx_result_write(&q, &res, b), 0);
        evbuffer_add(b, "", 1);
        snprintf(want, sizeof(want), "\"by\":\"%s\"", names[by]);
        ck_assert_ptr_nonnull(strstr((const char *)evbuffer_pullup(b, -1), want));
        evbuffer_free(b);
        auditidx_result_free(&res);
    }
    auditidx_free(x);
}
END_TEST

START_TEST(test_recent_and_report)
{
    struct auditidx *x = load_mix();
    struct auditidx_query q = q_all(AUDITIDX_BY_SERVICE);
    struct evbuffer *b = evbuffer_new();
    q.n = 3;
    ck_assert_int_eq(auditidx_recent_write(x, &q, NULL, b), 0);
    evbuffer_add(b, "", 1);
    const char *s = (const char *)evbuffer_pullup(b, -1);
    /* newest first: carol, the anonymous line, bob's allow */
    const char *c1 = strstr(s, "\"user\":\"carol\""), *c2 = strstr(s, "\"user\":null"),
               *c3 = strstr(s, "\"user\":\"bob\"");
    ck_assert(c1 && c2 && c3 && c1 < c2 && c2 < c3);
    ck_assert_ptr_eq(strstr(c3 + 1, "\"user\":"), NULL);
    evbuffer_free(b);

    b = evbuffer_new();
    q.n = 50;
    filt(&q.action, "warn");
    ck_assert_int_eq(auditidx_recent_write(x, &q, NULL, b), 0);
    evbuffer_add(b, "", 1);
    s = (const char *)evbuffer_pullup(b, -1);
    ck_assert_ptr_nonnull(strstr(s, "\"action\":\"warn\""));
    ck_assert_ptr_null(strstr(s, "\"action\":\"allow\""));
    evbuffer_free(b);

    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    auditidx_report(x, f);
    fclose(f);
    ck_assert_ptr_nonnull(
        strstr(out, "period: 2026-11-23T04:10:00.000Z .. 2026-11-23T06:10:01.999Z\n"));
    ck_assert_ptr_nonnull(strstr(out, "lines: 10 (unreadable: 0)\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "actions: allow 5 warn 2 ack 1 block 1 auth-fail 0 error 1\n"));
    ck_assert_ptr_nonnull(strstr(out, "\n-  "));
    free(out);
    auditidx_free(x);
}
END_TEST

/* A line as the writer makes it, for host and client. */
static void
put_host_line(FILE *f, int64_t sec, const char *client, const char *user, const char *host)
{
    struct audit_rec r = {0};
    char buf[AUDIT_LINE_MAX];
    r.ts.tv_sec = (time_t)sec;
    snprintf(r.id, sizeof(r.id), "%032x", 8);
    r.client = client;
    r.user = user;
    r.method = "CONNECT";
    r.host = host;
    r.port = 443;
    r.action = AUDIT_ALLOW;
    r.status = 200;
    r.bytes_in = r.bytes_out = r.ms = 1;
    r.tls = "tunnel";
    size_t n = audit_format(buf, sizeof(buf), &r, 0);
    ck_assert_uint_gt(n, 0);
    fwrite(buf, 1, n - 1, f);
    fputs(CHAIN "\n", f);
}

static int
keep_not_b(const char *host, void *arg)
{
    (*(int *)arg)++;
    return strcmp(host, "b.example") != 0;
}

/* --report --unlisted: lines per host and per (host, user or @client), through both parsers. */
START_TEST(test_hosts)
{
    FILE *f = fopen(logpath, "w");
    ck_assert_ptr_nonnull(f);
    put_host_line(f, T0, "10.0.0.1", "alice", "a.example");
    put_host_line(f, T0 + 1, "10.0.0.1", "alice", "a.example");
    put_host_line(f, T0 + 2, "10.0.0.2", "bob", "a.example");
    put_host_line(f, T0 + 3, "10.0.0.3", NULL, "a.example");
    put_host_line(f, T0 + 4, "10.0.0.3", NULL, "b.example");
    put_host_line(f, T0 + 5, NULL, NULL, "b.example");
    put_host_line(f, T0 + 6, "10.0.0.1", "alice", NULL);
    /* an escaped host goes through jansson */
    fputs("{\"ts\":\"2026-11-23T04:10:07.000Z\",\"user\":\"carol\",\"host\":\"c\\u002eexample\","
          "\"action\":\"allow\"}\n",
          f);
    fclose(f);

    struct auditidx *x = auditidx_new();
    char err[256];
    struct auditidx_host *h;
    size_t n;
    int asked = 0;
    auditidx_track_hosts(x);
    ck_assert_int_eq(auditidx_load_file(x, logpath, err, sizeof(err)), 0);
    ck_assert_int_eq(auditidx_hosts(x, NULL, NULL, &h, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(h[0].host, "a.example");
    ck_assert_uint_eq(h[0].requests, 4);
    ck_assert_uint_eq(h[0].nwho, 3);
    ck_assert_str_eq(h[0].who[0].name, "alice");
    ck_assert_uint_eq(h[0].who[0].requests, 2);
    ck_assert_str_eq(h[0].who[1].name, "@10.0.0.3");
    ck_assert_str_eq(h[0].who[2].name, "bob");
    ck_assert_str_eq(h[1].host, "b.example");
    ck_assert_uint_eq(h[1].requests, 2);
    ck_assert_str_eq(h[1].who[0].name, "@-");
    ck_assert_str_eq(h[1].who[1].name, "@10.0.0.3");
    ck_assert_str_eq(h[2].host, "c.example");
    ck_assert_str_eq(h[2].who[0].name, "carol");
    auditidx_hosts_free(h, n);
    /* keep() is asked once per host */
    ck_assert_int_eq(auditidx_hosts(x, keep_not_b, &asked, &h, &n), 0);
    ck_assert_int_eq(asked, 3);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(h[1].host, "c.example");
    auditidx_hosts_free(h, n);
    auditidx_free(x);

    /* without tracking nothing is counted */
    x = auditidx_new();
    ck_assert_int_eq(auditidx_load_file(x, logpath, err, sizeof(err)), 0);
    ck_assert_int_eq(auditidx_hosts(x, NULL, NULL, &h, &n), 0);
    ck_assert_uint_eq(n, 0);
    auditidx_hosts_free(h, n);
    auditidx_free(x);
}
END_TEST

START_TEST(test_parse_time)
{
    int64_t ms;
    ck_assert_int_eq(auditidx_parse_time("2026-11-23T04:10:00.123Z", 24, &ms), 0);
    ck_assert_int_eq(ms, T0 * 1000 + 123);
    ck_assert_int_eq(auditidx_parse_time("2026-11-23T13:10:00+09:00", 25, &ms), 0);
    ck_assert_int_eq(ms, T0 * 1000);
    ck_assert_int_eq(auditidx_parse_time("2026-11-23T13:10:00 09:00", 25, &ms), 0);
    ck_assert_int_eq(ms, T0 * 1000);
    ck_assert_int_eq(auditidx_parse_time("2026-11-22T23:10-0500", 21, &ms), 0);
    ck_assert_int_eq(ms, T0 * 1000);
    ck_assert_int_eq(auditidx_parse_time("2026-11-23", 10, &ms), 0);
    ck_assert_int_eq(ms, (T0 - 4 * 3600 - 600) * 1000);
    ck_assert_int_eq(auditidx_parse_time("2024-02-29T00:00:00,5Z", 22, &ms), 0);
    static const char *const bad[] = {"2026-11-23T04:10:00",
                                      "2026-02-29",
                                      "2026-13-01",
                                      "2026-11-23T24:00Z",
                                      "2026-11-23T04:10:00.Z",
                                      "1969-12-31",
                                      "2026-11-23T04:10:00+9:00",
                                      "2026-11-23X",
                                      "",
                                      "2026-11-23T04:10:00Zjunk"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(auditidx_parse_time(bad[i], strlen(bad[i]), &ms) < 0, "%s", bad[i]);
    char out[48];
    auditidx_format_time(T0 * 1000 + 7, 0, out, sizeof(out));
    ck_assert_str_eq(out, "2026-11-23T04:10:00.007Z");
    auditidx_format_time(T0 * 1000, -90, out, sizeof(out));
    ck_assert_str_eq(out, "2026-11-23T02:40:00.000-01:30");
}
END_TEST

/*
 * The hour summaries give what counting every record gives: random periods
 * (to the millisecond), groupings, time zones and filters over a log with
 * lines slightly out of order.
 */
START_TEST(test_summaries_agree)
{
    static const char *const users[] = {"alice", "bob", "carol", NULL};
    static const char *const svcs[] = {"chatgpt", "claude", "gemini", NULL};
    static const char *const acts[] = {"allow", "warn", "ack", "block", "error"};
    static const int tzs[] = {0, 540, -300, 330, -570};
    FILE *f = fopen(logpath, "w");
    unsigned seed = 16;
    int64_t span = 3 * 86400;
    for (int i = 0; i < 20000; i++) {
        int64_t t = T0 + (int64_t)i * span / 20000 - (rand_r(&seed) % 5);
        int ms = rand_r(&seed) % 1000;
        if (i % 50 == 0) /* some exactly on an hour's first millisecond */
            t -= t % 3600, ms = 0;
        put_line(f, t, ms, users[rand_r(&seed) % 4], svcs[rand_r(&seed) % 4],
                 rand_r(&seed) % 2 ? "r1" : NULL, acts[rand_r(&seed) % 5], rand_r(&seed) % 5000,
                 rand_r(&seed) % 10 ? NULL : "email");
    }
    fclose(f);
    struct auditidx *x = auditidx_new();
    char err[256];
    ck_assert_int_eq(auditidx_load_file(x, logpath, err, sizeof(err)), 0);
    for (int n = 0; n < 400; n++) {
        struct auditidx_query q = {0};
        int64_t a =
            (T0 - 3600) * 1000 + (int64_t)(rand_r(&seed) % (unsigned)((span + 7200) * 1000));
        int64_t b = a + 1 + (int64_t)(rand_r(&seed) % (unsigned)(span * 1000));
        if (n % 3 == 0) /* periods on whole hours too */
            a -= a % 3600000, b -= b % 3600000 - 3600000;
        q.from_ms = a;
        q.to_ms = b;
        q.by = (enum auditidx_by)(rand_r(&seed) % 9);
        q.tz_min = tzs[rand_r(&seed) % 5];
        if (q.by == AUDITIDX_BY_MINUTE)
            q.to_ms = a + 1 + rand_r(&seed) % 7200000;
        if (rand_r(&seed) % 3 == 0)
            filt(&q.service, svcs[rand_r(&seed) % 4]);
        if (rand_r(&seed) % 4 == 0)
            filt(&q.action, acts[rand_r(&seed) % 5]);
        if (rand_r(&seed) % 4 == 0)
            filt(&q.user, users[rand_r(&seed) % 4]);
        struct auditidx_result fast, ref;
        ck_assert_int_eq(auditidx_query(x, &q, NULL, &fast), 0);
        q.scan = 1;
        ck_assert_int_eq(auditidx_query(x, &q, NULL, &ref), 0);
        ck_assert_uint_eq(fast.n, ref.n);
        for (size_t i = 0; i < ref.n; i++) {
            const struct auditidx_row *p = &fast.rows[i], *r = &ref.rows[i];
            ck_assert(!p->key == !r->key && (!p->key || strcmp(p->key, r->key) == 0));
            ck_assert(p->requests == r->requests && p->allow == r->allow && p->warn == r->warn &&
                      p->ack == r->ack && p->block == r->block && p->dlp == r->dlp &&
                      p->bytes_out == r->bytes_out);
        }
        auditidx_result_free(&fast);
        auditidx_result_free(&ref);
    }
    auditidx_free(x);
}
END_TEST

/* ---- the follow thread ------------------------------------------------------------- */

struct waiter {
    int done, status;
    struct event_base *base;
};

static void
job_done(struct auditidx_job *j)
{
    struct waiter *w = j->arg;
    w->done = 1;
    w->status = j->status;
    event_base_loopbreak(w->base);
}

/* Total requests of the index now, through a job on its thread. */
static uint64_t
total(struct auditidx *x, struct event_base *base)
{
    struct waiter w = {0, 0, base};
    struct auditidx_job j = {0};
    j.kind = AUDITIDX_JOB_USAGE;
    j.q = q_all(AUDITIDX_BY_ACTION);
    j.q.to_ms = INT64_MAX / 2;
    j.out = evbuffer_new();
    j.done = job_done;
    j.arg = &w;
    ck_assert_int_eq(auditidx_submit(x, &j), 0);
    while (!w.done)
        event_base_dispatch(base);
    ck_assert_int_eq(w.status, 200);
    evbuffer_add(j.out, "", 1);
    const char *s = (const char *)evbuffer_pullup(j.out, -1);
    uint64_t n = 0;
    for (const char *p = s; (p = strstr(p, "\"requests\":")); p += 11)
        n += strtoull(p + 11, NULL, 10);
    evbuffer_free(j.out);
    return n;
}

/* Poll total() until it is want (5 s at most); returns the last total. */
static uint64_t
wait_total(struct auditidx *x, struct event_base *base, uint64_t want)
{
    uint64_t n = 0;
    for (int i = 0; i < 100 && (n = total(x, base)) != want; i++)
        usleep(50000);
    return n;
}

START_TEST(test_follow_partial_line)
{
    evthread_use_pthreads();
    struct event_base *base = event_base_new();
    FILE *f = fopen(logpath, "w");
    write_mix(f);
    fclose(f);
    struct auditidx *x = auditidx_new();
    char err[256];
    ck_assert_int_eq(auditidx_start(x, logpath, base, err, sizeof(err)), 0);
    ck_assert_uint_eq(wait_total(x, base, 10), 10);
    ck_assert(auditidx_ready(x));

    /* half a line: not counted, and not unreadable either, until its end arrives */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    put_line(m, T0 + 10, 0, "dave", "chatgpt", NULL, "allow", 1, NULL);
    fclose(m);
    f = fopen(logpath, "a");
    fwrite(buf, 1, len / 2, f);
    fclose(f);
    usleep(3 * AUDITIDX_POLL_MS * 1000);
    ck_assert_uint_eq(total(x, base), 10);
    f = fopen(logpath, "a");
    fwrite(buf + len / 2, 1, len - len / 2, f);
    fclose(f);
    ck_assert_uint_eq(wait_total(x, base, 11), 11);
    free(buf);
    auditidx_free(x);
    event_base_free(base);
}
END_TEST

START_TEST(test_follow_rotations)
{
    evthread_use_pthreads();
    struct event_base *base = event_base_new();
    char keypath[160], err[256];
    snprintf(keypath, sizeof(keypath), "%s/audit.key", dir);
    struct audit_cfg c = {.path = logpath, .chain_key_file = keypath, .rotate_bytes = 2000};
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    struct auditidx *x = auditidx_new();
    ck_assert_int_eq(auditidx_start(x, logpath, base, err, sizeof(err)), 0);

    /* ~5 lines a file: many rotations, several between two polls of the index */
    struct audit_rec r = {0};
    for (int i = 0; i < 400; i++) {
        clock_gettime(CLOCK_REALTIME, &r.ts);
        audit_new_id(r.id);
        r.user = i % 2 ? "alice" : "bob";
        r.service = "chatgpt";
        r.action = i % 3 ? AUDIT_ALLOW : AUDIT_BLOCK;
        r.port = r.status = -1;
        r.bytes_in = r.bytes_out = r.ms = -1;
        audit_emit(a, &r);
        if (i % 40 == 0)
            usleep(20000);
    }
    ck_assert_uint_eq(wait_total(x, base, 400), 400);
    audit_close(a);
    ck_assert_uint_eq(wait_total(x, base, 400), 400);
    auditidx_free(x);

    /* a new start over the same files (now gzip'ed): the same total */
    char **rot;
    size_t nrot;
    ck_assert_int_eq(audit_rotated_files(logpath, &rot, &nrot), 0);
    ck_assert_uint_gt(nrot, 20);
    audit_files_free(rot, nrot);
    x = auditidx_new();
    ck_assert_int_eq(auditidx_start(x, logpath, base, err, sizeof(err)), 0);
    ck_assert_uint_eq(wait_total(x, base, 400), 400);
    auditidx_free(x);
    event_base_free(base);
}
END_TEST

/* Freeing the index with jobs queued hands them back with status -1. */
START_TEST(test_free_with_jobs)
{
    evthread_use_pthreads();
    struct event_base *base = event_base_new();
    struct auditidx *x = auditidx_new();
    char err[256];
    ck_assert_int_eq(auditidx_start(x, logpath, base, err, sizeof(err)), 0);
    struct waiter w[3];
    struct auditidx_job j[3];
    memset(j, 0, sizeof(j));
    for (int i = 0; i < 3; i++) {
        w[i] = (struct waiter){0, 0, base};
        j[i].kind = AUDITIDX_JOB_RECENT;
        j[i].q = q_all(AUDITIDX_BY_SERVICE);
        j[i].out = evbuffer_new();
        j[i].done = job_done;
        j[i].arg = &w[i];
        ck_assert_int_eq(auditidx_submit(x, &j[i]), 0);
    }
    auditidx_free(x);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(w[i].done, 1);
        ck_assert(w[i].status == -1 || w[i].status == 200);
        evbuffer_free(j[i].out);
    }
    event_base_free(base);
}
END_TEST

Suite *auditidx_suite(void);

Suite *
auditidx_suite(void)
{
    Suite *s = suite_create("auditidx");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_count_by);
    tcase_add_test(tc, test_period_exact);
    tcase_add_test(tc, test_hour_day_tz);
    tcase_add_test(tc, test_groups);
    tcase_add_test(tc, test_unreadable_and_partial);
    tcase_add_test(tc, test_gzip);
    tcase_add_test(tc, test_fast_path_agrees);
    tcase_add_test(tc, test_summaries_agree);
    tcase_add_test(tc, test_write_json_csv);
    tcase_add_test(tc, test_write_every_by);
    tcase_add_test(tc, test_recent_and_report);
    tcase_add_test(tc, test_parse_time);
    tcase_add_test(tc, test_hosts);
    tcase_add_test(tc, test_follow_partial_line);
    tcase_add_test(tc, test_follow_rotations);
    tcase_add_test(tc, test_free_with_jobs);
    suite_add_tcase(s, tc);
    return s;
}
