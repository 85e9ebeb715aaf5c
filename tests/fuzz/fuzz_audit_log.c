/*
 * libFuzzer target: the audit log readers.  --verify-log (audit_verify, and
 * audit_verify_checkpoint with a checkpoint stream) and the audit index that
 * --report, /api/usage and /api/recent read (auditidx_load_file, both line
 * parsers, queries, the report), on a log written to temporary files, plain
 * or gzip.  Rotated logs are gzip and a verifier reads what it is handed.
 *
 * Input: one option byte, then the log.
 *   bit 0: the target gzips the log (else it is written as it is, which may
 *     itself be gzip: the readers take either);
 *   bit 1: --from-any;
 *   bit 2: the log is split at its first 0xff byte into two files, read in
 *     order (a chain continues across rotated files);
 *   bit 3: what follows the last 0xfe byte is a checkpoint stream
 *     (--verify-log --checkpoint);
 *   bits 4-7: what the index query groups by.
 * The chain key is fixed, so seeds made with it verify.
 *
 * Oracles beyond the sanitizers: gzipped by the target, the log gets the same
 * verdicts as written plain (unless it was gzip already); a line the index's
 * fast path reads, jansson reads the same; a query counted from the hour
 * summaries agrees with one counting every record.
 */
#include <string.h>
#include <zlib.h>

#include <event2/buffer.h>

#include "aigate/audit/audit.h"
#include "aigate/audit/auditidx.h"

#include "fuzz.h"

/* The chain key of the seeds: 32 bytes, as hex. */
static const char key_hex[] = "6169676174652066757a7a20617564697420636861696e206b65792c20333221\n";

static char key_file[128], files[2][128], gz_files[2][128];
static FILE *devnull;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = fuzz_tmpdir();

    (void)argc;
    (void)argv;
    snprintf(key_file, sizeof(key_file), "%s/audit.key", dir);
    fuzz_write_file(key_file, key_hex, strlen(key_hex));
    for (int i = 0; i < 2; i++) {
        snprintf(files[i], sizeof(files[i]), "%s/audit%d.jsonl", dir, i);
        snprintf(gz_files[i], sizeof(gz_files[i]), "%s/audit%d.jsonl.gz", dir, i);
    }
    if ((devnull = fopen("/dev/null", "w")) == NULL)
        abort();
    return 0;
}

static void
write_gzip(const char *path, const uint8_t *data, size_t size)
{
    gzFile gz = gzopen(path, "wb1");

    FUZZ_CHECK(gz != NULL);
    FUZZ_CHECK(size == 0 || gzwrite(gz, data, (unsigned)size) == (int)size);
    FUZZ_CHECK(gzclose(gz) == Z_OK);
}

static int
is_gzip(const uint8_t *p, size_t n)
{
    return n >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

/* The index over the files: report, and one query by summaries and by records. */
static int
run_index(const char *const names[2], size_t nfiles, enum auditidx_by by)
{
    struct auditidx *x = auditidx_new();
    struct auditidx_query q;
    struct auditidx_result fast = {0}, scan = {0};
    struct evbuffer *out = evbuffer_new();
    char err[512];
    int rc = 0;

    FUZZ_CHECK(x != NULL && out != NULL);
    for (size_t i = 0; i < nfiles; i++)
        rc |= auditidx_load_file(x, names[i], err, sizeof(err)) < 0;
    auditidx_report(x, devnull);
    memset(&q, 0, sizeof(q));
    q.by = by;
    /* 2026-11-28 .. 2026-12-02, where the seeds' lines are, cut mid-hour. */
    q.from_ms = 1764288000000 + 1234567;
    q.to_ms = 1764633600000 - 7654321;
    q.tz_min = by == AUDITIDX_BY_DAY ? 540 : 0;
    q.n = 50;
    if (auditidx_query(x, &q, NULL, &fast) == 0) {
        q.scan = 1;
        FUZZ_CHECK(auditidx_query(x, &q, NULL, &scan) == 0);
        FUZZ_CHECK(fuzz_rows_equal(&fast, &scan));
        FUZZ_CHECK(auditidx_result_write(&q, &fast, out) == 0);
    }
    FUZZ_CHECK(auditidx_recent_write(x, &q, NULL, out) == 0);
    auditidx_result_free(&fast);
    auditidx_result_free(&scan);
    evbuffer_free(out);
    auditidx_free(x);
    return rc;
}

/* Both line parsers of the index on every line of the log. */
static void
check_lines(const uint8_t *data, size_t size)
{
    static char a[8192], b[8192];

    while (size > 0) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t len = nl ? (size_t)(nl - data) : size;

        if (auditidx_parse_debug((const char *)data, len, 1, a, sizeof(a)) == 0) {
            FUZZ_CHECK(auditidx_parse_debug((const char *)data, len, 0, b, sizeof(b)) == 0);
            FUZZ_CHECK(strcmp(a, b) == 0);
        }
        if (!nl)
            break;
        data += len + 1;
        size -= len + 1;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *plain[2] = {files[0], files[1]}, *gz[2] = {gz_files[0], gz_files[1]};
    const uint8_t *cut, *cp = NULL;
    size_t nfiles = 1, len[2], cplen = 0;
    int flags, verify, report;
    FILE *cps = NULL;
    char *cpbuf = NULL;

    if (size < 1)
        return 0;
    flags = data[0];
    data++;
    size--;
    if ((flags & 8) && (cut = memrchr(data, 0xfe, size)) != NULL) {
        cp = cut + 1;
        cplen = size - (size_t)(cp - data);
        size = (size_t)(cut - data);
    }
    len[0] = size;
    len[1] = 0;
    if ((flags & 4) && (cut = memchr(data, 0xff, size)) != NULL) {
        nfiles = 2;
        len[0] = (size_t)(cut - data);
        len[1] = size - len[0] - 1;
    }
    check_lines(data, size);
    fuzz_write_file(files[0], data, len[0]);
    fuzz_write_file(files[1], data + size - len[1], len[1]);
    if (cp != NULL) {
        cpbuf = malloc(cplen + 1);
        memcpy(cpbuf, cp, cplen);
        cps = cplen ? fmemopen(cpbuf, cplen, "r") : fopen("/dev/null", "r");
        FUZZ_CHECK(cps != NULL);
    }
    verify =
        audit_verify_checkpoint(plain, nfiles, key_file, flags & 2, cps, "checkpoints", devnull);
    FUZZ_CHECK(verify >= 0 && verify <= 2);
    report = run_index(plain, nfiles, (enum auditidx_by)((flags >> 4) % 9));
    /* Parts that are gzip themselves read differently once wrapped again. */
    if ((flags & 1) && !is_gzip(data, len[0]) && !is_gzip(data + size - len[1], len[1])) {
        write_gzip(gz_files[0], data, len[0]);
        write_gzip(gz_files[1], data + size - len[1], len[1]);
        if (cps != NULL)
            rewind(cps);
        FUZZ_CHECK(audit_verify_checkpoint(gz, nfiles, key_file, flags & 2, cps, "checkpoints",
                                           devnull) == verify);
        FUZZ_CHECK(run_index(gz, nfiles, (enum auditidx_by)((flags >> 4) % 9)) == report);
    }
    if (cps != NULL)
        fclose(cps);
    free(cpbuf);
    return 0;
}
