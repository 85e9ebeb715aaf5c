/*
 * Secret key files shared by the ack secret and the audit chain key: load,
 * create atomically when missing, and fsync a folder after a name changes in
 * it.  See include/aigate/core/keyfile.h for the file format.
 *
 * Invariants: a key file is only ever created under its final name by
 * link(2) from a complete, fsynced temporary file, so no reader sees it half
 * written; key material on the stack is cleansed before returning.
 */
#include "aigate/core/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "aigate/core/log.h"

#define KEYFILE_HEX_LEN (2 * KEYFILE_KEY_LEN)

int
keyfile_hex(char *out, size_t cap, const unsigned char *in, size_t n)
{
    size_t len = 0;

    if (cap < 2 * n + 1 || OPENSSL_buf2hexstr_ex(out, cap, &len, in, n, '\0') != 1)
        return -1;
    /* OpenSSL writes 0-9 and A-F; 0x20 lower-cases the letters and leaves the digits. */
    for (size_t i = 0; i < 2 * n; i++)
        out[i] = (char)(out[i] | 0x20);
    return 0;
}

/* Decode the n bytes of a key file into key: KEYFILE_KEY_LEN raw bytes, or
 * hex digits with at most one "\n" or "\r\n" after them.  buf has room for a
 * NUL after the hex digits. */
static int
keyfile_parse(unsigned char *buf, size_t n, unsigned char key[KEYFILE_KEY_LEN])
{
    unsigned char k[KEYFILE_KEY_LEN];
    size_t klen = 0;
    int rc = -1;

    if (n == KEYFILE_KEY_LEN) {
        memcpy(key, buf, KEYFILE_KEY_LEN);
        return 0;
    }
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
    }
    if (n != KEYFILE_HEX_LEN)
        return -1;
    buf[n] = '\0';
    if (OPENSSL_hexstr2buf_ex(k, sizeof(k), &klen, (const char *)buf, '\0') == 1 &&
        klen == sizeof(k)) {
        memcpy(key, k, sizeof(k));
        rc = 0;
    }
    OPENSSL_cleanse(k, sizeof(k));
    return rc;
}

/* Create path with a fresh key unless it exists.  Another process that
 * creates it meanwhile wins (link(2) fails with EEXIST) and its key is the one
 * the caller reads; *made tells whether ours was linked. */
static int
keyfile_create(const char *path, int *made, char *err, size_t errlen)
{
    unsigned char key[KEYFILE_KEY_LEN];
    char hex[KEYFILE_HEX_LEN + 1], tmp[4096];
    ssize_t w;
    int fd = -1, rc = -1, e;

    if (RAND_bytes(key, sizeof(key)) != 1) {
        snprintf(err, errlen, "%s: no randomness for a new key", path);
        goto out;
    }
    if (keyfile_hex(hex, sizeof(hex), key, sizeof(key)) < 0) {
        snprintf(err, errlen, "%s: cannot encode the new key", path);
        goto out;
    }
    hex[KEYFILE_HEX_LEN] = '\n';
    if ((fd = keyfile_mktemp(path, tmp, sizeof(tmp))) < 0)
        goto fail;
    if (fchmod(fd, 0600) < 0)
        goto fail_unlink;
    w = write(fd, hex, sizeof(hex));
    if (w != (ssize_t)sizeof(hex)) {
        if (w >= 0)
            errno = ENOSPC; /* a short write to a regular file: the disk is full */
        goto fail_unlink;
    }
    if (fsync(fd) < 0)
        goto fail_unlink;
    e = close(fd);
    fd = -1;
    if (e < 0)
        goto fail_unlink;
    if (link(tmp, path) == 0)
        *made = 1;
    else if (errno != EEXIST)
        goto fail_unlink;
    unlink(tmp);
    keyfile_fsync_dir(path);
    rc = 0;
    goto out;

fail_unlink:
    e = errno;
    unlink(tmp);
    errno = e;
fail:
    snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
out:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(hex, sizeof(hex));
    return rc;
}

int
keyfile_load(const char *path, int create, unsigned char key[KEYFILE_KEY_LEN], int *created,
             char *err, size_t errlen)
{
    /* The longest valid file is hex and "\r\n"; one byte more shows it is too long. */
    unsigned char buf[KEYFILE_HEX_LEN + 3];
    struct stat st;
    size_t n = 0;
    int made = 0, rc = -1, e;

    if (created)
        *created = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        if (keyfile_create(path, &made, err, errlen) < 0)
            return -1;
        if (created)
            *created = made;
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        e = errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        errno = EINVAL;
        goto out;
    }
    if (st.st_mode & 077)
        log_warnx("keyfile: %s is accessible to group or others; chmod 600 it", path);
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (keyfile_parse(buf, n, key) < 0) {
        snprintf(err, errlen, "%s: expected %d hex digits or %d raw bytes", path, KEYFILE_HEX_LEN,
                 KEYFILE_KEY_LEN);
        errno = EBADMSG;
        goto out;
    }
    rc = 0;
out:
    e = errno;
    OPENSSL_cleanse(buf, sizeof(buf));
    close(fd);
    errno = e;
    return rc;
}

int
keyfile_fsync_dir(const char *path_in_dir)
{
    const char *slash = strrchr(path_in_dir, '/');
    char dir[4096];
    size_t len;
    int fd, rc, e;

    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path_in_dir) {
        strcpy(dir, "/");
    } else {
        len = (size_t)(slash - path_in_dir);
        if (len >= sizeof(dir)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(dir, path_in_dir, len);
        dir[len] = '\0';
    }
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -1;
    rc = fsync(fd);
    e = errno;
    close(fd);
    errno = e;
    return rc;
}

int
keyfile_mktemp(const char *path, char *tmp, size_t tmplen)
{
    enum { RANDOM_CHARS = 6 }; /* mkstemp(3) replaces the template's last six characters */
    int n = snprintf(tmp, tmplen, "%s.tmp", path);

    if (n < 0 || (size_t)n + RANDOM_CHARS >= tmplen) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memset(tmp + n, 'X', RANDOM_CHARS);
    tmp[n + RANDOM_CHARS] = '\0';
    return mkostemp(tmp, O_CLOEXEC);
}
