/*
 * Helpers shared by the libFuzzer targets in tests/fuzz/ (one target a file,
 * built by `make fuzz`; see README.md, Tests).  Header-only: each target is
 * one translation unit linked against the proxy's objects.
 *
 * A target must be deterministic: everything it varies (split points,
 * options) comes from the input, so a saved crash replays the same way.
 */
#ifndef AIGATE_FUZZ_H
#define AIGATE_FUZZ_H

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aigate/audit/auditidx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Stop with a message libFuzzer reports as a crash (an oracle failed). */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A small deterministic generator (xorshift32) seeded from the input. */
static inline uint32_t
fuzz_seed(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    return h ? h : 1;
}

static inline uint32_t
fuzz_next(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* A private temporary folder for the process, removed at exit. */
static inline char *
fuzz_dir_buf(void)
{
    static char dir[64];

    return dir;
}

static inline int
fuzz_dir_rm1(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

static inline void
fuzz_dir_remove(void)
{
    if (fuzz_dir_buf()[0] != '\0')
        nftw(fuzz_dir_buf(), fuzz_dir_rm1, 8, FTW_DEPTH | FTW_PHYS);
}

static inline const char *
fuzz_tmpdir(void)
{
    char *dir = fuzz_dir_buf();
    const char *t = getenv("TMPDIR");

    if (dir[0] != '\0')
        return dir;
    snprintf(dir, 64, "%s/aigate-fuzz.XXXXXX", t && *t && strlen(t) < 40 ? t : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
    atexit(fuzz_dir_remove);
    return dir;
}

/* Write data[0..size) to path (replacing it), mode 0600. */
static inline void
fuzz_write_file(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const char *p = data;

    if (fd < 0) {
        perror(path);
        abort();
    }
    while (size > 0) {
        ssize_t w = write(fd, p, size);

        if (w <= 0) {
            perror(path);
            abort();
        }
        p += w;
        size -= (size_t)w;
    }
    close(fd);
}

/* 1 if two audit index answers have the same rows (keys and every count). */
static inline int
fuzz_rows_equal(const struct auditidx_result *a, const struct auditidx_result *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct auditidx_row *x = &a->rows[i], *y = &b->rows[i];

        if ((x->key == NULL) != (y->key == NULL) || (x->key && strcmp(x->key, y->key) != 0) ||
            x->requests != y->requests || x->allow != y->allow || x->warn != y->warn ||
            x->ack != y->ack || x->block != y->block || x->dlp != y->dlp ||
            x->bytes_out != y->bytes_out)
            return 0;
    }
    return 1;
}

#endif
