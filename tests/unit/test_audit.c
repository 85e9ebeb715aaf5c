/*
 * Audit log: escaping, field order, nulls, the chain through the real writer
 * (tampering, deletion, reordering, truncation), rotation with gzip and keep,
 * reopen, reconfigure, scope, the key file, and the report.  A full disk is
 * played by RLIMIT_FSIZE (writes past it are cut short, then fail with EFBIG,
 * SIGXFSZ ignored): whole lines or nothing, start-up on it, the partial line
 * left by a crash moved aside; checkpoints and the "node" field.
 */
#include "aigate/audit/audit.h"
#include "aigate/audit/auditidx.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct tdir {
    char dir[64], log[128], key[128];
};

static void
tdir_make(struct tdir *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/aigate-audit-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    snprintf(t->log, sizeof(t->log), "%s/audit.jsonl", t->dir);
    snprintf(t->key, sizeof(t->key), "%s/audit.key", t->dir);
}

static void
tdir_remove(struct tdir *t)
{
    DIR *d = opendir(t->dir);
    struct dirent *de;
    char p[512];

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            snprintf(p, sizeof(p), "%s/%s", t->dir, de->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(t->dir);
}

static struct audit_cfg
tcfg(const struct tdir *t)
{
    struct audit_cfg c = {.path = t->log, .chain_key_file = t->key};
    return c;
}

static void
rec_fill(struct audit_rec *r, int i)
{
    static const char *const users[] = {"alice", "bob", "carol"};
    static const enum audit_action actions[] = {AUDIT_ALLOW, AUDIT_BLOCK, AUDIT_WARN, AUDIT_ACK,
                                                AUDIT_ALLOW};

    memset(r, 0, sizeof(*r));
    r->ts.tv_sec = 1795407000 + i;
    r->ts.tv_nsec = 123000000;
    audit_new_id(r->id);
    r->client = "10.20.3.4";
    r->user = users[i % 3];
    r->method = "GET";
    r->scheme = "https";
    r->host = "chat.deepseek.com";
    r->port = 443;
    r->path = "/c/x?q=secret";
    r->service = i % 2 ? "deepseek" : "chatgpt";
    r->category = "chat";
    r->rule = "caution";
    r->action = actions[i % 5];
    r->status = 200;
    r->bytes_in = 512;
    r->bytes_out = 2048;
    r->ms = 3;
    r->tls = "intercept";
    r->is_ai = 1;
}

static void
emit_n(struct audit *a, int from, int n)
{
    struct audit_rec r;
    for (int i = from; i < from + n; i++) {
        rec_fill(&r, i);
        audit_emit(a, &r);
    }
}

static void
write_log(const struct tdir *t, struct audit_cfg c, int n)
{
    char err[256];
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    emit_n(a, 0, n);
    audit_close(a);
    (void)t;
}

/* Run audit_verify over files; returns its result, output in out. */
static int
verify(const char *const *files, size_t n, const char *key, int from_any, char *out, size_t cap)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    int rc = audit_verify(files, n, key, from_any, f);
    fclose(f);
    snprintf(out, cap, "%s", buf);
    free(buf);
    return rc;
}

static int
verify1(const char *file, const char *key, char *out, size_t cap)
{
    const char *files[] = {file};
    return verify(files, 1, key, 0, out, cap);
}

/* The file as an array of lines, each with its '\n'. */
static size_t
read_lines(const char *file, char ***lines)
{
    FILE *f = fopen(file, "r");
    char *l = NULL;
    size_t cap = 0, n = 0;
    ssize_t got;

    ck_assert_ptr_nonnull(f);
    *lines = NULL;
    while ((got = getline(&l, &cap, f)) > 0) {
        *lines = realloc(*lines, (n + 1) * sizeof(**lines));
        (*lines)[n++] = strndup(l, (size_t)got);
    }
    free(l);
    fclose(f);
    return n;
}

static void
write_lines(const char *file, char **lines, size_t n)
{
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < n; i++)
        fputs(lines[i], f);
    fclose(f);
}

static void
free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

static size_t
esc(const char *s, size_t len, size_t max, char *out, size_t cap)
{
    size_t n = audit_json_str(out, cap - 1, s, len, max);
    out[n] = '\0';
    return n;
}

START_TEST(test_escape_controls)
{
    char out[32], want[16];

    for (int c = 0; c < 0x20; c++) {
        char in = (char)c;
        switch (c) {
        case '\b':
            snprintf(want, sizeof(want), "\"\\b\"");
            break;
        case '\f':
            snprintf(want, sizeof(want), "\"\\f\"");
            break;
        case '\n':
            snprintf(want, sizeof(want), "\"\\n\"");
            break;
        case '\r':
            snprintf(want, sizeof(want), "\"\\r\"");
            break;
        case '\t':
            snprintf(want, sizeof(want), "\"\\t\"");
            break;
        default:
            snprintf(want, sizeof(want), "\"\\u%04x\"", c);
        }
        esc(&in, 1, 100, out, sizeof(out));
        ck_assert_str_eq(out, want);
    }
    esc("\x7f", 1, 100, out, sizeof(out));
    ck_assert_str_eq(out, "\"\\u007f\"");
    esc("a\"b\\c/", 6, 100, out, sizeof(out));
    ck_assert_str_eq(out, "\"a\\\"b\\\\c/\"");
    esc(NULL, 0, 100, out, sizeof(out));
    ck_assert_str_eq(out, "null");
    esc("\"x\n{\"action\":\"allow\"}", 21, 100, out, sizeof(out));
    ck_assert_ptr_null(strchr(out, '\n'));
}
END_TEST

START_TEST(test_escape_utf8)
{
#define FFFD "\xef\xbf\xbd"
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"\xc3\xa9", "\xc3\xa9"},
        {"\xed\x95\x9c\xea\xb8\x80", "\xed\x95\x9c\xea\xb8\x80"},
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
        {"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"},
        {"\xc0\x80", FFFD FFFD},
        {"\xc1\xbf", FFFD FFFD},
        {"\xe0\x80\x80", FFFD FFFD FFFD},
        {"\xf0\x80\x80\x80", FFFD FFFD FFFD FFFD},
        {"\xed\xa0\x80", FFFD FFFD FFFD},
        {"\xed\xbf\xbf", FFFD FFFD FFFD},
        {"\xe2\x82", FFFD},
        {"\xe2\x82"
         "A",
         FFFD "A"},
        {"\xf0\x9f\x98", FFFD},
        {"\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD},
        {"\xf5\x80", FFFD FFFD},
        {"\xff", FFFD},
        {"\x80", FFFD},
        {"a\xbf"
         "b",
         "a" FFFD "b"},
    };
    char out[64], want[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        esc(cases[i].in, strlen(cases[i].in), 100, out, sizeof(out));
        snprintf(want, sizeof(want), "\"%s\"", cases[i].want);
        ck_assert_msg(strcmp(out, want) == 0, "case %zu", i);
    }
#undef FFFD
}
END_TEST

START_TEST(test_long_values)
{
    static char big[10000], line[AUDIT_LINE_MAX], out[2048];
    struct audit_rec r;

    memset(big, 'a', sizeof(big) - 1);
    rec_fill(&r, 0);
    r.path = big;
    ck_assert_uint_gt(audit_format(line, sizeof(line), &r, 0), 0);
    const char *p = strstr(line, "\"path\":\"");
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(strcspn(p + 8, "\""), AUDIT_PATH_MAX);

    /* cut never splits a UTF-8 sequence or an escape */
    char s[2100];
    s[0] = 'a';
    for (int i = 0; i < 1000; i++)
        memcpy(s + 1 + 2 * i, "\xc3\xa9", 2);
    s[2001] = '\0';
    ck_assert_uint_eq(esc(s, strlen(s), AUDIT_FIELD_MAX, out, sizeof(out)), 1023 + 2);
    ck_assert_str_eq(out + 1022, "\xc3\xa9\"");
    memset(s, 'a', 1022);
    s[1022] = '\x01';
    ck_assert_uint_eq(esc(s, 1023, AUDIT_FIELD_MAX, out, sizeof(out)), 1022 + 2);

    /* every field at its worst still fits AUDIT_LINE_MAX */
    static char ctl[5000];
    const char *dlp[100];
    memset(ctl, '\x01', sizeof(ctl) - 1);
    for (int i = 0; i < 100; i++)
        dlp[i] = ctl;
    memset(&r, 0, sizeof(r));
    memset(r.id, 'f', 32);
    r.client = r.user = r.method = r.scheme = r.host = r.path = ctl;
    r.service = r.category = r.rule = r.tls = ctl;
    r.port = r.status = 2147483647;
    r.bytes_in = r.bytes_out = r.ms = INT64_MAX;
    r.dlp = dlp;
    r.ndlp = 100;
    r.ts.tv_sec = 253402300799;
    size_t n = audit_format(line, sizeof(line), &r, 1);
    ck_assert_uint_gt(n, 0);
    ck_assert_uint_lt(n, AUDIT_LINE_MAX);
}
END_TEST

START_TEST(test_small_cap)
{
    char line[AUDIT_LINE_MAX], buf[1200];
    struct audit_rec r;

    rec_fill(&r, 0);
    size_t full = audit_format(line, sizeof(line), &r, 1);
    ck_assert_uint_lt(full, sizeof(buf) - 16);
    for (size_t cap = 0; cap <= full + 1; cap++) {
        memset(buf, 'Z', sizeof(buf));
        size_t n = audit_format(buf, cap, &r, 1);
        ck_assert_uint_eq(n, cap == full + 1 ? full : 0);
        for (size_t i = cap; i < sizeof(buf); i++)
            ck_assert_int_eq(buf[i], 'Z');
    }
}
END_TEST

START_TEST(test_field_order)
{
    char line[AUDIT_LINE_MAX];
    struct audit_rec r;

    rec_fill(&r, 0);
    memcpy(r.id, "0192af0000000000000000000000beef", 33);
    audit_format(line, sizeof(line), &r, 0);
    ck_assert_str_eq(line,
                     "{\"ts\":\"2026-11-23T04:10:00.123Z\",\"id\":\"0192af0000000000000000000000"
                     "beef\",\"client\":\"10.20.3.4\",\"user\":\"alice\",\"method\":\"GET\","
                     "\"scheme\":\"https\",\"host\":\"chat.deepseek.com\",\"port\":443,"
                     "\"path\":\"/c/x\",\"service\":\"chatgpt\",\"category\":\"chat\","
                     "\"rule\":\"caution\",\"action\":\"allow\",\"status\":200,"
                     "\"bytes_in\":512,\"bytes_out\":2048,\"ms\":3,\"tls\":\"intercept\"}");
    audit_format(line, sizeof(line), &r, 1);
    ck_assert_ptr_nonnull(strstr(line, ",\"path\":\"/c/x?q=secret\","));

    const char *dlp[] = {"kr-rrn", "email"};
    r.dlp = dlp;
    r.ndlp = 2;
    audit_format(line, sizeof(line), &r, 0);
    ck_assert_ptr_nonnull(strstr(line, ",\"tls\":\"intercept\",\"dlp\":[\"kr-rrn\",\"email\"]}"));
}
END_TEST

START_TEST(test_nulls)
{
    char line[AUDIT_LINE_MAX];
    struct audit_rec r;

    memset(&r, 0, sizeof(r));
    r.port = r.status = -1;
    r.bytes_in = r.bytes_out = r.ms = -1;
    r.action = AUDIT_AUTH_FAIL;
    audit_format(line, sizeof(line), &r, 0);
    ck_assert_str_eq(line, "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"id\":null,\"client\":null,"
                           "\"user\":null,\"method\":null,\"scheme\":null,\"host\":null,"
                           "\"port\":null,\"path\":null,\"service\":null,\"category\":null,"
                           "\"rule\":null,\"action\":\"auth-fail\",\"status\":null,"
                           "\"bytes_in\":null,\"bytes_out\":null,\"ms\":null,\"tls\":null}");
}
END_TEST

START_TEST(test_new_id)
{
    char a[33], b[33];

    audit_new_id(a);
    audit_new_id(b);
    ck_assert_uint_eq(strlen(a), 32);
    ck_assert_uint_eq(strspn(a, "0123456789abcdef"), 32);
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(test_chain_tamper)
{
    struct tdir t;
    char out[512], want[512], copy[160], **lines;
    uint64_t n, waits, dropped;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    char err[256];
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    emit_n(a, 0, 50);
    audit_close(a);
    ck_assert_int_eq(verify1(t.log, t.key, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "50 lines verified\n");

    size_t nl = read_lines(t.log, &lines);
    ck_assert_uint_eq(nl, 50);
    ck_assert_ptr_null(strstr(lines[0], "secret"));
    snprintf(copy, sizeof(copy), "%s/copy.jsonl", t.dir);

    /* one altered byte in line 10 */
    char *u = strstr(lines[9], "\"user\":\"");
    ck_assert_ptr_nonnull(u);
    u[8] ^= 1;
    write_lines(copy, lines, nl);
    u[8] ^= 1;
    ck_assert_int_eq(verify1(copy, t.key, out, sizeof(out)), 1);
    snprintf(want, sizeof(want), "%s:10: chain broken (altered, removed or reordered line)\n",
             copy);
    ck_assert_str_eq(out, want);

    /* line 10 removed */
    char *l10 = lines[9];
    memmove(lines + 9, lines + 10, 40 * sizeof(*lines));
    write_lines(copy, lines, 49);
    memmove(lines + 10, lines + 9, 40 * sizeof(*lines));
    lines[9] = l10;
    ck_assert_int_eq(verify1(copy, t.key, out, sizeof(out)), 1);
    ck_assert_str_eq(out, want);

    /* lines 10 and 11 swapped */
    lines[9] = lines[10];
    lines[10] = l10;
    write_lines(copy, lines, nl);
    lines[10] = lines[9];
    lines[9] = l10;
    ck_assert_int_eq(verify1(copy, t.key, out, sizeof(out)), 1);
    ck_assert_str_eq(out, want);

    /* the last line cut short */
    size_t ll = strlen(lines[49]);
    lines[49][ll - 10] = '\0';
    write_lines(copy, lines, nl);
    ck_assert_int_eq(verify1(copy, t.key, out, sizeof(out)), 1);
    snprintf(want, sizeof(want), "%s:50: truncated/incomplete line\n", copy);
    ck_assert_str_eq(out, want);

    /* line 1 gone: strict fails at 1, from_any takes the new first line as anchor */
    write_lines(copy, lines + 1, 48);
    const char *files[] = {copy};
    ck_assert_int_eq(verify(files, 1, t.key, 0, out, sizeof(out)), 1);
    snprintf(want, sizeof(want), "%s:1: chain broken (altered, removed or reordered line)\n", copy);
    ck_assert_str_eq(out, want);
    ck_assert_int_eq(verify(files, 1, t.key, 1, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "48 lines verified\n");

    /* another key */
    char key2[160];
    snprintf(key2, sizeof(key2), "%s/other.key", t.dir);
    FILE *k = fopen(key2, "w");
    fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", k);
    fclose(k);
    ck_assert_int_eq(verify1(t.log, key2, out, sizeof(out)), 1);
    snprintf(want, sizeof(want), "%s:1: chain broken (altered, removed or reordered line)\n",
             t.log);
    ck_assert_str_eq(out, want);

    /* missing file: I/O error */
    snprintf(copy, sizeof(copy), "%s/none.jsonl", t.dir);
    ck_assert_int_eq(verify1(copy, t.key, out, sizeof(out)), 2);

    free_lines(lines, nl);
    audit_stats(NULL, &n, &waits, &dropped);
    ck_assert_uint_eq(n, 0);
    tdir_remove(&t);
}
END_TEST

START_TEST(test_key_file)
{
    struct tdir t;
    struct stat st;
    unsigned char k1[32], k2[32];
    char err[256], buf[100];

    tdir_make(&t);
    ck_assert_int_eq(audit_key_load(t.key, 0, k1, err, sizeof(err)), -1);
    ck_assert_int_eq(audit_key_load(t.key, 1, k1, err, sizeof(err)), 0);
    ck_assert_int_eq(stat(t.key, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    FILE *f = fopen(t.key, "r");
    ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
    fclose(f);
    ck_assert_uint_eq(strlen(buf), 65);
    ck_assert_uint_eq(strspn(buf, "0123456789abcdef"), 64);
    ck_assert_int_eq(audit_key_load(t.key, 1, k2, err, sizeof(err)), 0);
    ck_assert_mem_eq(k1, k2, 32);

    f = fopen(t.key, "w");
    fputs("not a key\n", f);
    fclose(f);
    ck_assert_int_eq(audit_key_load(t.key, 1, k2, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "not a chain key"));
    tdir_remove(&t);
}
END_TEST

static void
wait_lines(struct audit *a, uint64_t want)
{
    uint64_t lines, waits, dropped;
    for (int i = 0; i < 5000; i++) {
        audit_stats(a, &lines, &waits, &dropped);
        if (lines >= want)
            return;
        usleep(1000);
    }
    ck_abort_msg("writer did not write %llu lines", (unsigned long long)want);
}

/* The side file PATH.partial-* of t's log, or "" when there is none. */
static void
side_file(const struct tdir *t, char *out, size_t cap)
{
    DIR *d = opendir(t->dir);
    struct dirent *de;

    out[0] = '\0';
    while ((de = readdir(d)))
        if (strncmp(de->d_name, "audit.jsonl.partial-", 20) == 0)
            ck_assert_int_lt(snprintf(out, cap, "%s/%.100s", t->dir, de->d_name), (int)cap);
    closedir(d);
}

static off_t
file_size(const char *file)
{
    struct stat st;
    ck_assert_int_eq(stat(file, &st), 0);
    return st.st_size;
}

static char *
file_text(const char *file)
{
    FILE *f = fopen(file, "r");
    char *buf = calloc(1, 65536);
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static const char fragment[] = "{\"ts\":\"2026-11-23T04:1";

/* A partial line (a crash) at start: moved to a side file, recorded, the chain verifies. */
START_TEST(test_restart_and_partial_line)
{
    struct tdir t;
    char out[512], side[256], want[512], **lines;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    write_log(&t, c, 5);
    write_log(&t, c, 5);
    ck_assert_int_eq(verify1(t.log, t.key, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "10 lines verified\n");

    FILE *f = fopen(t.log, "a");
    fputs(fragment, f);
    fclose(f);
    write_log(&t, c, 3);
    ck_assert_int_eq(verify1(t.log, t.key, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "14 lines verified\n");

    side_file(&t, side, sizeof(side));
    ck_assert_str_ne(side, "");
    char *kept = file_text(side);
    ck_assert_str_eq(kept, fragment);
    free(kept);
    size_t nl = read_lines(t.log, &lines);
    ck_assert_uint_eq(nl, 14);
    snprintf(want, sizeof(want),
             ",\"path\":\"%s\",\"service\":null,\"category\":null,\"rule\":\"audit:partial-line\","
             "\"action\":\"error\",\"status\":null,\"bytes_in\":%zu,\"bytes_out\":null,\"ms\":null,"
             "\"tls\":null,\"chain\":\"",
             side, strlen(fragment));
    ck_assert_ptr_nonnull(strstr(lines[10], want));
    ck_assert_ptr_nonnull(strstr(lines[10], "\"client\":null,\"user\":null,\"method\":null"));
    free_lines(lines, nl);
    tdir_remove(&t);
}
END_TEST

/* Lower the file size limit (soft) to n bytes; SIGXFSZ is ignored so writes fail with EFBIG. */
static void
disk_full_at(rlim_t n)
{
    struct rlimit rl;
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = n;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void
disk_free(void)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

START_TEST(test_full_whole_lines)
{
    struct tdir t;
    char out[512], err[256];
    uint64_t lines, waits, dropped;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    write_log(&t, c, 5);
    off_t size0 = file_size(t.log);

    /* room for a third of a line: the piece written is cut off again */
    disk_full_at((rlim_t)size0 + 100);
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    emit_n(a, 5, 3);
    usleep(400000);
    ck_assert_int_eq(file_size(t.log), size0);
    audit_stats(a, &lines, &waits, &dropped);
    ck_assert_uint_eq(lines, 0);

    /* room again: the lines waiting are written */
    disk_free();
    wait_lines(a, 3);
    audit_stats(a, &lines, &waits, &dropped);
    ck_assert_uint_eq(dropped, 0);

    /* full again and stopped while full: no partial line is left behind */
    off_t size1 = file_size(t.log);
    disk_full_at((rlim_t)size1 + 50);
    emit_n(a, 8, 4);
    usleep(400000);
    ck_assert_int_eq(file_size(t.log), size1);
    audit_close(a);
    ck_assert_int_eq(file_size(t.log), size1);
    disk_free();
    ck_assert_int_eq(verify1(t.log, t.key, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "8 lines verified\n");

    /* and the next start continues the chain */
    write_log(&t, c, 2);
    ck_assert_int_eq(verify1(t.log, t.key, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "10 lines verified\n");
    tdir_remove(&t);
}
END_TEST

/* SIGUSR1 (logrotate moved the file) while the disk is full: the lines land whole in the new file.
 */
START_TEST(test_full_reopen)
{
    struct tdir t;
    char out[512], err[256], old[160], **lines;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    write_log(&t, c, 5);
    off_t size0 = file_size(t.log);
    disk_full_at((rlim_t)size0 + 100);
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    emit_n(a, 5, 3);
    usleep(400000);
    snprintf(old, sizeof(old), "%s/audit.jsonl.1", t.dir);
    ck_assert_int_eq(rename(t.log, old), 0);
    audit_request_reopen(a);
    wait_lines(a, 3);
    audit_close(a);
    disk_free();
    ck_assert_int_eq(file_size(old), size0);
    size_t nl = read_lines(t.log, &lines);
    ck_assert_uint_eq(nl, 3);
    free_lines(lines, nl);
    const char *files[] = {old, t.log};
    ck_assert_int_eq(verify(files, 2, t.key, 0, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "8 lines verified\n");
    tdir_remove(&t);
}
END_TEST

/*
 * Start on a full disk with a partial line left by a crash: aigate starts,
 * writes nothing (the piece cannot be moved aside yet), and once there is
 * room the piece goes to the side file and the chain continues.
 */
START_TEST(test_full_start)
{
    struct tdir t;
    char out[512], err[256], side[256], **lines;
    uint64_t lines_n, waits, dropped;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    write_log(&t, c, 5);
    FILE *f = fopen(t.log, "a");
    fputs(fragment, f);
    fclose(f);
    off_t size0 = file_size(t.log);

    disk_full_at(10);
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    emit_n(a, 5, 3);
    usleep(400000);
    audit_stats(a, &lines_n, &waits, &dropped);
    ck_assert_uint_eq(lines_n, 0);
    audit_close(a);
    ck_assert_int_eq(file_size(t.log), size0);
    side_file(&t, side, sizeof(side));
    ck_assert_str_eq(side, "");

    disk_free();
    write_log(&t, c, 2);
    side_file(&t, side, sizeof(side));
    ck_assert_str_ne(side, "");
    char *kept = file_text(side);
    ck_assert_str_eq(kept, fragment);
    free(kept);
    size_t nl = read_lines(t.log, &lines);
    ck_assert_uint_eq(nl, 8);
    ck_assert_ptr_nonnull(strstr(lines[5], "\"rule\":\"audit:partial-line\",\"action\":\"error\""));
    free_lines(lines, nl);
    ck_assert_int_eq(verify1(t.log, t.key, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "8 lines verified\n");
    tdir_remove(&t);
}
END_TEST

START_TEST(test_reopen)
{
    struct tdir t;
    char out[512], old[160], err[256], **lines;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    emit_n(a, 0, 5);
    wait_lines(a, 5);
    snprintf(old, sizeof(old), "%s/audit.jsonl.1", t.dir);
    ck_assert_int_eq(rename(t.log, old), 0);
    audit_request_reopen(a);
    emit_n(a, 5, 7);
    audit_close(a);
    size_t nl = read_lines(t.log, &lines);
    ck_assert_uint_eq(nl, 7);
    free_lines(lines, nl);
    const char *files[] = {old, t.log};
    ck_assert_int_eq(verify(files, 2, t.key, 0, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "12 lines verified\n");
    tdir_remove(&t);
}
END_TEST

START_TEST(test_reconfigure)
{
    struct tdir t;
    char out[512], err[256], other[160], **lines;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    c.scope_ai = 1;
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    struct audit_rec r;
    for (int i = 0; i < 5; i++) {
        rec_fill(&r, i);
        r.is_ai = i < 2;
        audit_emit(a, &r);
    }
    wait_lines(a, 2);

    snprintf(other, sizeof(other), "%s/moved.jsonl", t.dir);
    c.path = other;
    c.scope_ai = 0;
    c.log_query = 1;
    ck_assert_int_eq(audit_reconfigure(a, &c, err, sizeof(err)), 0);
    rec_fill(&r, 7);
    r.is_ai = 0;
    audit_emit(a, &r);
    audit_emit(a, &r);
    audit_close(a);

    size_t nl = read_lines(t.log, &lines);
    ck_assert_uint_eq(nl, 2);
    free_lines(lines, nl);
    nl = read_lines(other, &lines);
    ck_assert_uint_eq(nl, 2);
    ck_assert_ptr_nonnull(strstr(lines[0], "?q=secret"));
    free_lines(lines, nl);
    const char *files[] = {t.log, other};
    ck_assert_int_eq(verify(files, 2, t.key, 0, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "4 lines verified\n");

    c.path = t.log;
    a = audit_open(&c, err, sizeof(err));
    ck_assert_ptr_nonnull(a);
    snprintf(other, sizeof(other), "%s/no/such/dir.jsonl", t.dir);
    c.path = other;
    ck_assert_int_eq(audit_reconfigure(a, &c, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "no/such/dir.jsonl"));
    audit_close(a);
    tdir_remove(&t);
}
END_TEST

/* audit_verify_checkpoint() over files with the checkpoints in ckfile. */
static int
verify_ck(const char *const *files, size_t n, int from_any, const char *key, const char *ckfile,
          char *out, size_t cap)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len), *ck = fopen(ckfile, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(ck);
    int rc = audit_verify_checkpoint(files, n, key, from_any, ck, ckfile, f);
    fclose(ck);
    fclose(f);
    snprintf(out, cap, "%s", buf);
    free(buf);
    return rc;
}

static int
verify_ck1(const char *file, const char *key, const char *ckfile, char *out, size_t cap)
{
    const char *files[] = {file};
    return verify_ck(files, 1, 0, key, ckfile, out, cap);
}

/* The chain of a log line (64 hex characters), NUL-terminated in out. */
static void
line_chain(const char *line, char out[65])
{
    const char *c = strstr(line, "\"chain\":\"");
    ck_assert_ptr_nonnull(c);
    memcpy(out, c + 9, 64);
    out[64] = '\0';
}

/* A checkpoint at stop; cutting lines off the end is found and counted. */
START_TEST(test_checkpoint_stop)
{
    struct tdir t;
    char out[1024], want[1024], ckf[160], cp[160], chain[65], **lines, **cks;

    tdir_make(&t);
    snprintf(ckf, sizeof(ckf), "%s/checkpoints", t.dir);
    snprintf(cp, sizeof(cp), "%s/cut.jsonl", t.dir);
    struct audit_cfg c = tcfg(&t);
    c.checkpoint_file = ckf;
    write_log(&t, c, 7);

    size_t nl = read_lines(t.log, &lines);
    ck_assert_uint_eq(nl, 7);
    size_t nc = read_lines(ckf, &cks);
    ck_assert_uint_eq(nc, 1);
    line_chain(lines[6], chain);
    ck_assert_int_eq(strncmp(cks[0], "aigate-checkpoint v1 ts=", 24), 0);
    snprintf(want, sizeof(want), " lines=7 chain=%s file=%s mac=", chain, t.log);
    ck_assert_ptr_nonnull(strstr(cks[0], want));
    ck_assert_uint_eq(strlen(strstr(cks[0], " mac=")), 5 + 64 + 1);

    ck_assert_int_eq(verify_ck1(t.log, t.key, ckf, out, sizeof(out)), 0);
    ck_assert_ptr_nonnull(strstr(out, "7 lines verified\ncheckpoint of "));
    snprintf(want, sizeof(want), " reached: %s line 7\n", t.log);
    ck_assert_ptr_nonnull(strstr(out, want));

    /* the last line deleted: a valid chain, but one line short of the checkpoint */
    write_lines(t.log, lines, 6);
    ck_assert_int_eq(verify1(t.log, t.key, out, sizeof(out)), 0);
    ck_assert_int_eq(verify_ck1(t.log, t.key, ckf, out, sizeof(out)), 1);
    snprintf(want, sizeof(want), "%s: 1 line missing: the checkpoint of ", t.log);
    ck_assert_ptr_nonnull(strstr(out, want));
    ck_assert_ptr_nonnull(strstr(out, " counted 7, the file has 6\n"));
    ck_assert_ptr_null(strstr(out, "verified"));

    /* truncated to 3 lines */
    write_lines(t.log, lines, 3);
    ck_assert_int_eq(verify_ck1(t.log, t.key, ckf, out, sizeof(out)), 1);
    ck_assert_ptr_nonnull(strstr(out, ": 4 lines missing: "));
    ck_assert_ptr_nonnull(strstr(out, " counted 7, the file has 3\n"));

    /* only another file given: the checkpoint's file is not among those checked */
    write_lines(t.log, lines, 7);
    write_lines(cp, lines, 7);
    ck_assert_int_eq(verify_ck1(cp, t.key, ckf, out, sizeof(out)), 1);
    snprintf(want, sizeof(want), "%s: 7 lines missing: ", t.log);
    ck_assert_ptr_nonnull(strstr(out, want));
    ck_assert_ptr_nonnull(strstr(out, "not among the files checked\n"));
    ck_assert_int_eq(verify_ck1(t.log, t.key, ckf, out, sizeof(out)), 0);

    /* rewritten by someone holding the key (same count, other lines): the chain at line 7 differs
     */
    struct tdir t2;
    tdir_make(&t2);
    ck_assert_int_eq(link(t.key, t2.key), 0);
    write_log(&t2, tcfg(&t2), 9);
    ck_assert_int_eq(verify_ck1(t2.log, t.key, ckf, out, sizeof(out)), 1);
    snprintf(want, sizeof(want), "%s:7: does not match the checkpoint of ", t2.log);
    ck_assert_ptr_nonnull(strstr(out, want));
    tdir_remove(&t2);
    free_lines(lines, nl);

    /* checkpoints grepped from syslog, with junk and a forged one around a valid one */
    char sys[160];
    snprintf(sys, sizeof(sys), "%s/syslog", t.dir);
    FILE *f = fopen(sys, "w");
    fprintf(f, "Dec  6 06:00:00 host sshd[1]: something else\n");
    fprintf(f, "Dec  6 06:00:01 host aigate[42]: %s", cks[0]);
    char *forged = strdup(cks[0]);
    *strstr(forged, " lines=7 ") = '\0';
    fprintf(f, "Dec  6 06:00:02 host aigate[42]: %s lines=3 %s", forged,
            strstr(cks[0], " lines=7 ") + 9);
    fclose(f);
    free(forged);
    ck_assert_int_eq(verify_ck1(t.log, t.key, sys, out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "%s: 1 checkpoint line ignored (malformed, altered", sys);
    ck_assert_ptr_nonnull(strstr(out, want));

    /* no valid checkpoint at all */
    f = fopen(sys, "w");
    size_t cl = strlen(cks[0]);
    fprintf(f, "%.*s%c\n", (int)cl - 2, cks[0], cks[0][cl - 2] == '0' ? '1' : '0');
    fclose(f);
    ck_assert_int_eq(verify_ck1(t.log, t.key, sys, out, sizeof(out)), 2);
    ck_assert_ptr_nonnull(strstr(out, ": no checkpoint made with this chain key\n"));
    free_lines(cks, nc);
    tdir_remove(&t);
}
END_TEST

/* Rotation writes a checkpoint naming the rotated file; matched against its .gz. */
START_TEST(test_checkpoint_rotation)
{
    struct tdir t;
    char out[1024], ckf[160], one[160], **cks, **rot;
    size_t nrot;

    tdir_make(&t);
    snprintf(ckf, sizeof(ckf), "%s/checkpoints", t.dir);
    snprintf(one, sizeof(one), "%s/one", t.dir);
    struct audit_cfg c = tcfg(&t);
    c.checkpoint_file = ckf;
    c.rotate_bytes = 4000;
    write_log(&t, c, 40);
    ck_assert_int_eq(audit_rotated_files(t.log, &rot, &nrot), 0);
    ck_assert_uint_ge(nrot, 3);
    size_t nc = read_lines(ckf, &cks);
    ck_assert_uint_eq(nc, nrot + 1);
    const char **files = calloc(nrot + 1, sizeof(*files));
    for (size_t i = 0; i < nrot; i++)
        files[i] = rot[i];
    files[nrot] = t.log;
    ck_assert_int_eq(verify_ck(files, nrot + 1, 0, t.key, ckf, out, sizeof(out)), 0);
    ck_assert_ptr_nonnull(strstr(out, "40 lines verified\n"));

    /* the first rotation's checkpoint: its count fits the first .gz */
    char *slash = strrchr(rot[0], '/');
    size_t blen = strlen(slash) - 3; /* "/NAME" without ".gz" */
    ck_assert_ptr_nonnull(strstr(cks[0], " file="));
    ck_assert_int_eq(strncmp(strstr(cks[0], " file=") + 6 + strlen(t.dir), slash, blen), 0);
    FILE *f = fopen(one, "w");
    fputs(cks[0], f);
    fclose(f);
    ck_assert_int_eq(verify_ck(files, nrot + 1, 0, t.key, one, out, sizeof(out)), 0);
    ck_assert_int_eq(verify_ck(files + 1, nrot, 1, t.key, one, out, sizeof(out)), 1);
    ck_assert_ptr_nonnull(strstr(out, "not among the files checked"));
    free(files);
    audit_files_free(rot, nrot);
    free_lines(cks, nc);
    tdir_remove(&t);
}
END_TEST

/* checkpoint_s: a periodic checkpoint once lines were written, none while idle. */
START_TEST(test_checkpoint_periodic)
{
    struct tdir t;
    char err[256], ckf[160], **cks;
    size_t nc = 0;

    tdir_make(&t);
    snprintf(ckf, sizeof(ckf), "%s/checkpoints", t.dir);
    struct audit_cfg c = tcfg(&t);
    c.checkpoint_file = ckf;
    c.checkpoint_s = 1;
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    emit_n(a, 0, 2);
    wait_lines(a, 2);
    for (int i = 0; i < 40 && access(ckf, F_OK) < 0; i++)
        usleep(100000);
    nc = read_lines(ckf, &cks);
    ck_assert_uint_eq(nc, 1);
    ck_assert_ptr_nonnull(strstr(cks[0], " lines=2 "));
    free_lines(cks, nc);
    usleep(2200000);
    nc = read_lines(ckf, &cks);
    ck_assert_uint_eq(nc, 1);
    free_lines(cks, nc);
    audit_close(a);
    nc = read_lines(ckf, &cks);
    ck_assert_uint_eq(nc, 2);
    free_lines(cks, nc);
    tdir_remove(&t);
}
END_TEST

/*
 * audit.node: "node" after "tls" and before "upgrade" and "dlp"; verified like
 * any field; in checkpoints too.
 */
START_TEST(test_node)
{
    struct tdir t;
    char out[512], err[256], ckf[160], **lines, **cks;
    static const char *const kinds[] = {"kr-rrn"};

    tdir_make(&t);
    snprintf(ckf, sizeof(ckf), "%s/checkpoints", t.dir);
    struct audit_cfg c = tcfg(&t);
    c.node = "gw-1.corp";
    c.checkpoint_file = ckf;
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    struct audit_rec r;
    rec_fill(&r, 0);
    audit_emit(a, &r);
    r.dlp = kinds;
    r.ndlp = 1;
    audit_emit(a, &r);
    r.upgrade = "websocket";
    audit_emit(a, &r);
    audit_close(a);
    size_t nl = read_lines(t.log, &lines);
    ck_assert_uint_eq(nl, 3);
    ck_assert_ptr_nonnull(
        strstr(lines[0], "\"tls\":\"intercept\",\"node\":\"gw-1.corp\",\"chain\":"));
    ck_assert_ptr_nonnull(strstr(
        lines[1], "\"tls\":\"intercept\",\"node\":\"gw-1.corp\",\"dlp\":[\"kr-rrn\"],\"chain\":"));
    /* "upgrade" (a WebSocket, SPEC 6a) after "node", before "dlp" */
    ck_assert_ptr_nonnull(strstr(lines[2],
                                 "\"tls\":\"intercept\",\"node\":\"gw-1.corp\",\"upgrade\":"
                                 "\"websocket\",\"dlp\":[\"kr-rrn\"],\"chain\":"));
    free_lines(lines, nl);
    size_t nc = read_lines(ckf, &cks);
    ck_assert_uint_eq(nc, 1);
    ck_assert_ptr_nonnull(strstr(cks[0], " node=gw-1.corp file="));
    free_lines(cks, nc);
    ck_assert_int_eq(verify1(t.log, t.key, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "3 lines verified\n");
    ck_assert_int_eq(verify_ck1(t.log, t.key, ckf, out, sizeof(out)), 0);
    tdir_remove(&t);
}
END_TEST

static size_t
count_dir(const struct tdir *t, const char *suffix)
{
    DIR *d = opendir(t->dir);
    struct dirent *de;
    size_t n = 0, sl = strlen(suffix);

    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "audit.jsonl.", 12) == 0 && l >= sl &&
            strcmp(de->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void
verify_all(const struct tdir *t, int from_any, char *out, size_t cap, int want_rc)
{
    char **rot;
    size_t n;

    ck_assert_int_eq(audit_rotated_files(t->log, &rot, &n), 0);
    const char **files = calloc(n + 1, sizeof(*files));
    for (size_t i = 0; i < n; i++)
        files[i] = rot[i];
    files[n] = t->log;
    ck_assert_int_eq(verify(files, n + 1, t->key, from_any, out, cap), want_rc);
    free(files);
    audit_files_free(rot, n);
}

START_TEST(test_rotation_keep)
{
    struct tdir t;
    char out[512], **rot;
    size_t n;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    c.rotate_bytes = 4000;
    c.keep = 3;
    write_log(&t, c, 300);
    ck_assert_int_eq(audit_rotated_files(t.log, &rot, &n), 0);
    ck_assert_uint_eq(n, 3);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(rot[i] + strlen(rot[i]) - 3, ".gz");
    audit_files_free(rot, n);
    ck_assert_uint_eq(count_dir(&t, ".gz"), 3);
    ck_assert_uint_eq(count_dir(&t, ""), 3);
    verify_all(&t, 0, out, sizeof(out), 1);
    verify_all(&t, 1, out, sizeof(out), 0);
    tdir_remove(&t);
}
END_TEST

START_TEST(test_rotation_all)
{
    struct tdir t;
    char out[512];
    struct stat st;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    c.rotate_bytes = 4000;
    write_log(&t, c, 300);
    ck_assert_uint_gt(count_dir(&t, ".gz"), 20);
    ck_assert_uint_eq(count_dir(&t, ".gz"), count_dir(&t, ""));
    ck_assert_int_eq(stat(t.log, &st), 0);
    ck_assert_int_lt(st.st_size, 4000);
    verify_all(&t, 0, out, sizeof(out), 0);
    ck_assert_str_eq(out, "300 lines verified\n");

    /* a restart after rotation continues the chain from the newest rotated file */
    ck_assert_int_eq(unlink(t.log), 0);
    c.rotate_bytes = 0;
    write_log(&t, c, 2);
    verify_all(&t, 0, out, sizeof(out), 0);
    ck_assert_str_eq(out, "302 lines verified\n");
    tdir_remove(&t);
}
END_TEST

struct emitter {
    struct audit *a;
    int from;
};

static void *
emitter_main(void *arg)
{
    struct emitter *e = arg;
    emit_n(e->a, e->from, 2000);
    return NULL;
}

START_TEST(test_threads)
{
    struct tdir t;
    char out[512], err[256];
    pthread_t th[4];
    struct emitter em[4];
    uint64_t lines, waits, dropped;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    for (int i = 0; i < 4; i++) {
        em[i].a = a;
        em[i].from = i * 2000;
        pthread_create(&th[i], NULL, emitter_main, &em[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    wait_lines(a, 8000);
    audit_stats(a, &lines, &waits, &dropped);
    ck_assert_uint_eq(lines, 8000);
    ck_assert_uint_eq(dropped, 0);
    audit_close(a);
    ck_assert_int_eq(verify1(t.log, t.key, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "8000 lines verified\n");
    tdir_remove(&t);
}
END_TEST

/* A log that cannot be written (ENOSPC): workers wait once, then drop and count. */
START_TEST(test_queue_full)
{
    struct tdir t;
    char err[256];
    uint64_t lines, waits, dropped;
    struct timespec t0, t1;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    c.path = "/dev/full";
    struct audit *a = audit_open(&c, err, sizeof(err));
    ck_assert_msg(a != NULL, "%s", err);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    emit_n(a, 0, 30000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    audit_stats(a, &lines, &waits, &dropped);
    ck_assert_uint_eq(lines, 0);
    ck_assert_uint_eq(waits, 1);
    ck_assert_uint_gt(dropped, 30000 - AUDIT_QUEUE_BYTES / 300);
    ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 3);
    audit_close(a);
    tdir_remove(&t);
}
END_TEST

START_TEST(test_report)
{
    struct tdir t;
    char *buf = NULL;
    size_t len = 0;

    tdir_make(&t);
    struct audit_cfg c = tcfg(&t);
    c.rotate_bytes = 3000;
    write_log(&t, c, 30);
    char **rot;
    size_t n;
    ck_assert_int_eq(audit_rotated_files(t.log, &rot, &n), 0);
    ck_assert_uint_gt(n, 1);
    /* --report reads the files through the audit index */
    struct auditidx *x = auditidx_new();
    char err[256];
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(auditidx_load_file(x, rot[i], err, sizeof(err)), 0);
    ck_assert_int_eq(auditidx_load_file(x, t.log, err, sizeof(err)), 0);
    FILE *f = open_memstream(&buf, &len);
    auditidx_report(x, f);
    fclose(f);
    auditidx_free(x);
    audit_files_free(rot, n);

    ck_assert_ptr_nonnull(
        strstr(buf, "period: 2026-11-23T04:10:00.123Z .. 2026-11-23T04:10:29.123Z\n"));
    ck_assert_ptr_nonnull(strstr(buf, "lines: 30 (unreadable: 0)\n"));
    ck_assert_ptr_nonnull(
        strstr(buf, "actions: allow 12 warn 6 ack 6 block 6 auth-fail 0 error 0\n"));
    /* i odd -> deepseek (15), actions cycle over 5: deepseek gets i = 1,3,...,29 */
    unsigned long v[7];
    char *row = strstr(buf, "\ndeepseek ");
    ck_assert_ptr_nonnull(row);
    ck_assert_int_eq(sscanf(row, " deepseek %lu %lu %lu %lu %lu %lu %lu", &v[0], &v[1], &v[2],
                            &v[3], &v[4], &v[5], &v[6]),
                     7);
    ck_assert_uint_eq(v[0], 15);
    ck_assert_uint_eq(v[1] + v[2] + v[3] + v[4], 15);
    ck_assert_uint_eq(v[1], 6);
    /* users sorted by total, all equal (10 each) then by name */
    char *ua = strstr(buf, "\nalice "), *ub = strstr(buf, "\nbob "), *uc = strstr(buf, "\ncarol ");
    ck_assert(ua && ub && uc && ua < ub && ub < uc);
    free(buf);
    tdir_remove(&t);
}
END_TEST

/* A line chained by an earlier build (lower-case hex HMAC-SHA256, computed
 * independently) still verifies. */
START_TEST(test_known_chain_verifies)
{
    struct tdir t;
    FILE *f, *out = fopen("/dev/null", "w");
    const char *files[1];

    tdir_make(&t);
    files[0] = t.log;
    ck_assert_ptr_nonnull(f = fopen(t.key, "w"));
    for (int i = 0; i < 32; i++)
        fprintf(f, "%02x", i);
    fputc('\n', f);
    fclose(f);
    ck_assert_ptr_nonnull(f = fopen(t.log, "w"));
    fputs("{\"a\":1,\"chain\":\"5ae0a7eb9c4a28c9a09277c295cfadcaae4d0c87a28982270f80c0ba20bb5511\"}"
          "\n",
          f);
    fclose(f);
    ck_assert_int_eq(audit_verify(files, 1, t.key, 0, out), 0);
    fclose(out);
    tdir_remove(&t);
}
END_TEST

Suite *audit_suite(void);

Suite *
audit_suite(void)
{
    Suite *s = suite_create("audit");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, test_escape_controls);
    tcase_add_test(tc, test_known_chain_verifies);
    tcase_add_test(tc, test_escape_utf8);
    tcase_add_test(tc, test_long_values);
    tcase_add_test(tc, test_small_cap);
    tcase_add_test(tc, test_field_order);
    tcase_add_test(tc, test_nulls);
    tcase_add_test(tc, test_new_id);
    suite_add_tcase(s, tc);
    tc = tcase_create("writer");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_chain_tamper);
    tcase_add_test(tc, test_key_file);
    tcase_add_test(tc, test_restart_and_partial_line);
    tcase_add_test(tc, test_full_whole_lines);
    tcase_add_test(tc, test_full_reopen);
    tcase_add_test(tc, test_full_start);
    tcase_add_test(tc, test_checkpoint_stop);
    tcase_add_test(tc, test_checkpoint_rotation);
    tcase_add_test(tc, test_checkpoint_periodic);
    tcase_add_test(tc, test_node);
    tcase_add_test(tc, test_reopen);
    tcase_add_test(tc, test_reconfigure);
    tcase_add_test(tc, test_rotation_keep);
    tcase_add_test(tc, test_rotation_all);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_queue_full);
    tcase_add_test(tc, test_report);
    suite_add_tcase(s, tc);
    return s;
}
