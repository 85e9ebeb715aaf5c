/*
 * libFuzzer target: the audit log readers, --verify-log (audit_verify) and
 * --report (audit_report), on a log written to a temporary file, plain or
 * gzip.  Rotated logs are gzip and a verifier reads what it is handed.
 *
 * Input: one option byte, then the log.
 *   bit 0: the target gzips the log (else it is written as it is, which may
 *     itself be gzip: the readers take either);
 *   bit 1: --from-any;
 *   bit 2: the log is split at its first 0xff byte into two files, read in
 *     order (a chain continues across rotated files).
 * The chain key is fixed, so seeds made with it verify.
 *
 * Oracle beyond the sanitizers: gzipped by the target, the log gets the same
 * verdicts as written plain (unless it was gzip already).
 */
#include <string.h>
#include <zlib.h>

#include "aigate/audit.h"

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

/* Verdicts of both readers on the files (plain or gz) holding the parts. */
static void
run(const char *const names[2], size_t nfiles, int from_any, int *verify, int *report)
{
    *verify = audit_verify(names, nfiles, key_file, from_any, devnull);
    *report = audit_report(names, nfiles, devnull);
    FUZZ_CHECK(*verify >= 0 && *verify <= 2 && *report >= 0 && *report <= 2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *plain[2] = {files[0], files[1]}, *gz[2] = {gz_files[0], gz_files[1]};
    const uint8_t *cut;
    size_t nfiles = 1, len[2];
    int flags, v1, r1, v2, r2;

    if (size < 1)
        return 0;
    flags = data[0];
    data++;
    size--;
    len[0] = size;
    len[1] = 0;
    if ((flags & 4) && (cut = memchr(data, 0xff, size)) != NULL) {
        nfiles = 2;
        len[0] = (size_t)(cut - data);
        len[1] = size - len[0] - 1;
    }
    fuzz_write_file(files[0], data, len[0]);
    fuzz_write_file(files[1], data + size - len[1], len[1]);
    run(plain, nfiles, flags & 2, &v1, &r1);
    /* Parts that are gzip themselves read differently once wrapped again. */
    if ((flags & 1) && !is_gzip(data, len[0]) && !is_gzip(data + size - len[1], len[1])) {
        write_gzip(gz_files[0], data, len[0]);
        write_gzip(gz_files[1], data + size - len[1], len[1]);
        run(gz, nfiles, flags & 2, &v2, &r2);
        FUZZ_CHECK(v1 == v2 && r1 == r2);
    }
    return 0;
}
