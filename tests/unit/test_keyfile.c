/*
 * Unit tests for proxy/core/keyfile.c: creation (mode 0600, no temporary file
 * left, fresh keys), reloading, the hex and raw formats, malformed and
 * unusable files, a missing file without create, two processes racing to
 * create the same file, and keyfile_fsync_dir.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aigate/core/keyfile.h"

#define RACE_ROUNDS 40

static char tmpdir[64];
static char keyfile[128];

static void
setup(void)
{
    strcpy(tmpdir, "/tmp/aigate_keyfile_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(keyfile, sizeof(keyfile), "%s/test.key", tmpdir);
}

static void
teardown(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    char path[512];
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
        if (unlink(path) < 0)
            rmdir(path);
    }
    if (d)
        closedir(d);
    rmdir(tmpdir);
}

static void
write_bytes(const char *path, const void *p, size_t n, mode_t mode)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(path, mode), 0);
}

static size_t
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static const char hex_0_to_31[] =
    "000102030405060708090A0B0C0D0E0F101112131415161718191a1b1c1d1e1f";

static void
assert_0_to_31(const unsigned char k[KEYFILE_KEY_LEN])
{
    for (int i = 0; i < KEYFILE_KEY_LEN; i++)
        ck_assert_int_eq(k[i], i);
}

START_TEST(create_then_reload)
{
    unsigned char k[KEYFILE_KEY_LEN], k2[KEYFILE_KEY_LEN];
    char err[256], text[80];
    struct stat st;
    int created = -1;

    ck_assert_int_eq(keyfile_load(keyfile, 1, k, &created, err, sizeof(err)), 0);
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(stat(keyfile, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(st.st_size, 2 * KEYFILE_KEY_LEN + 1);
    ck_assert_uint_eq(count_entries(tmpdir), 1);

    FILE *f = fopen(keyfile, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(text, sizeof(text), f));
    fclose(f);
    ck_assert_uint_eq(strspn(text, "0123456789abcdef"), 2 * KEYFILE_KEY_LEN);
    ck_assert_str_eq(text + 2 * KEYFILE_KEY_LEN, "\n");

    ck_assert_int_eq(keyfile_load(keyfile, 1, k2, &created, err, sizeof(err)), 0);
    ck_assert_int_eq(created, 0);
    ck_assert_mem_eq(k, k2, KEYFILE_KEY_LEN);
    ck_assert_int_eq(keyfile_load(keyfile, 0, k2, NULL, err, sizeof(err)), 0);
    ck_assert_mem_eq(k, k2, KEYFILE_KEY_LEN);

    /* A fresh file gets a fresh key. */
    ck_assert_int_eq(unlink(keyfile), 0);
    ck_assert_int_eq(keyfile_load(keyfile, 1, k2, &created, err, sizeof(err)), 0);
    ck_assert_int_eq(created, 1);
    ck_assert_int_ne(memcmp(k, k2, KEYFILE_KEY_LEN), 0);
}
END_TEST

START_TEST(hex_formats)
{
    static const char *const endings[] = {"", "\n", "\r\n"};
    unsigned char k[KEYFILE_KEY_LEN];
    char err[256], text[80];
    int created = -1;

    for (size_t i = 0; i < sizeof(endings) / sizeof(endings[0]); i++) {
        snprintf(text, sizeof(text), "%s%s", hex_0_to_31, endings[i]);
        write_bytes(keyfile, text, strlen(text), 0600);
        memset(k, 0xff, sizeof(k));
        ck_assert_int_eq(keyfile_load(keyfile, 1, k, &created, err, sizeof(err)), 0);
        ck_assert_int_eq(created, 0);
        assert_0_to_31(k);
    }
    /* Readable by others: a warning, still used. */
    write_bytes(keyfile, hex_0_to_31, strlen(hex_0_to_31), 0644);
    ck_assert_int_eq(keyfile_load(keyfile, 0, k, NULL, err, sizeof(err)), 0);
    assert_0_to_31(k);
}
END_TEST

START_TEST(raw_format)
{
    unsigned char raw[KEYFILE_KEY_LEN], k[KEYFILE_KEY_LEN];
    char err[256];

    for (int i = 0; i < KEYFILE_KEY_LEN; i++)
        raw[i] = (unsigned char)(i * 37 + 10); /* includes '\n' (10) and '\r'-like bytes */
    write_bytes(keyfile, raw, sizeof(raw), 0600);
    ck_assert_int_eq(keyfile_load(keyfile, 0, k, NULL, err, sizeof(err)), 0);
    ck_assert_mem_eq(k, raw, KEYFILE_KEY_LEN);
}
END_TEST

START_TEST(malformed)
{
    /* The first keep hex digits of a good key, then tail. */
    static const struct {
        size_t keep;
        const char *tail;
    } bad[] = {
        {0, ""},    {2, ""},     {31, ""}, /* one byte short of raw */
        {32, "\n"},                        /* 33 bytes: neither raw nor hex */
        {63, "\n"}, {64, "0\n"}, {63, "g\n"}, {64, "\n\n"}, {64, "\r"}, {64, " \n"}, {64, "\n\r\n"},
    };
    char text[80];
    unsigned char k[KEYFILE_KEY_LEN], before[KEYFILE_KEY_LEN];
    char err[256];
    int created = -1;

    memset(before, 0x5a, sizeof(before));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int len =
            snprintf(text, sizeof(text), "%.*s%s", (int)bad[i].keep, hex_0_to_31, bad[i].tail);
        write_bytes(keyfile, text, (size_t)len, 0600);
        memcpy(k, before, sizeof(k));
        err[0] = '\0';
        errno = 0;
        ck_assert_int_eq(keyfile_load(keyfile, 1, k, &created, err, sizeof(err)), -1);
        ck_assert_int_eq(errno, EBADMSG);
        ck_assert_int_eq(created, 0);
        ck_assert_int_eq(strncmp(err, keyfile, strlen(keyfile)), 0);
        ck_assert_int_eq(err[strlen(keyfile)], ':');
        ck_assert_ptr_nonnull(strstr(err, "hex"));
        ck_assert_mem_eq(k, before, KEYFILE_KEY_LEN); /* left alone */
    }
}
END_TEST

START_TEST(unusable)
{
    unsigned char k[KEYFILE_KEY_LEN];
    char err[256], path[256];

    /* Missing without create: an error, and nothing is made. */
    errno = 0;
    ck_assert_int_eq(keyfile_load(keyfile, 0, k, NULL, err, sizeof(err)), -1);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_int_eq(strncmp(err, keyfile, strlen(keyfile)), 0);
    ck_assert_ptr_nonnull(strstr(err, "cannot open"));
    ck_assert_int_eq(access(keyfile, F_OK), -1);
    ck_assert_uint_eq(count_entries(tmpdir), 0);

    /* A directory is not a key file. */
    ck_assert_int_eq(keyfile_load(tmpdir, 1, k, NULL, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));

    /* A folder that does not exist cannot be created in. */
    snprintf(path, sizeof(path), "%s/nodir/test.key", tmpdir);
    ck_assert_int_eq(keyfile_load(path, 1, k, NULL, err, sizeof(err)), -1);
    ck_assert_int_eq(strncmp(err, path, strlen(path)), 0);
    ck_assert_ptr_nonnull(strstr(err, "cannot create"));
    ck_assert_uint_eq(count_entries(tmpdir), 0);
}
END_TEST

/* Two processes create the same file at once, round after round: exactly one
 * of them creates it, both read the same key, no temporary file is left. */
START_TEST(create_race)
{
    for (int round = 0; round < RACE_ROUNDS; round++) {
        unsigned char k[2][KEYFILE_KEY_LEN];
        char path[256];
        int fds[2][2], go[2], created = 0;
        pid_t pid[2];

        snprintf(path, sizeof(path), "%s/race%d.key", tmpdir, round);
        ck_assert_int_eq(pipe(go), 0);
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(pipe(fds[i]), 0);
            pid[i] = fork();
            ck_assert_int_ge(pid[i], 0);
            if (pid[i] == 0) {
                unsigned char key[KEYFILE_KEY_LEN + 1];
                char err[256], c;
                int made = 0;
                close(go[1]);
                if (read(go[0], &c, 1) != 0) /* wait for the start: the pipe closing */
                    _exit(2);
                if (keyfile_load(path, 1, key, &made, err, sizeof(err)) < 0)
                    _exit(1);
                key[KEYFILE_KEY_LEN] = (unsigned char)made;
                _exit(write(fds[i][1], key, sizeof(key)) == (ssize_t)sizeof(key) ? 0 : 1);
            }
            close(fds[i][1]);
        }
        close(go[0]);
        close(go[1]);
        for (int i = 0; i < 2; i++) {
            unsigned char buf[KEYFILE_KEY_LEN + 1];
            int status;
            ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
            ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            ck_assert_int_eq(read(fds[i][0], buf, sizeof(buf)), (ssize_t)sizeof(buf));
            close(fds[i][0]);
            memcpy(k[i], buf, KEYFILE_KEY_LEN);
            created += buf[KEYFILE_KEY_LEN];
        }
        ck_assert_int_eq(created, 1);
        ck_assert_mem_eq(k[0], k[1], KEYFILE_KEY_LEN);
        ck_assert_uint_eq(count_entries(tmpdir), (size_t)round + 1);
    }
}
END_TEST

START_TEST(fsync_dir)
{
    char path[256];

    ck_assert_int_eq(keyfile_fsync_dir(keyfile), 0);
    ck_assert_int_eq(keyfile_fsync_dir("bare-name"), 0);
    ck_assert_int_eq(keyfile_fsync_dir("/etc"), 0);
    snprintf(path, sizeof(path), "%s/nodir/x", tmpdir);
    errno = 0;
    ck_assert_int_eq(keyfile_fsync_dir(path), -1);
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

START_TEST(hex_is_lower_case)
{
    static const unsigned char in[] = {0x00, 0x9f, 0xab, 0xff, 0x10};
    char out[11];

    ck_assert_int_eq(keyfile_hex(out, sizeof(out), in, sizeof(in)), 0);
    ck_assert_str_eq(out, "009fabff10");
    ck_assert_int_eq(keyfile_hex(out, 10, in, sizeof(in)), -1);
    ck_assert_int_eq(keyfile_hex(out, 1, in, 0), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

Suite *keyfile_suite(void);

Suite *
keyfile_suite(void)
{
    Suite *s = suite_create("keyfile");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, hex_is_lower_case);
    tcase_add_test(tc, create_then_reload);
    tcase_add_test(tc, hex_formats);
    tcase_add_test(tc, raw_format);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, unusable);
    tcase_add_test(tc, create_race);
    tcase_add_test(tc, fsync_dir);
    suite_add_tcase(s, tc);
    return s;
}
