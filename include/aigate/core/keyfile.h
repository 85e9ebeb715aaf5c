/*
 * Secret key files: the ack secret and the audit chain key.  A key is
 * KEYFILE_KEY_LEN bytes stored as 2 * KEYFILE_KEY_LEN hex digits (either case)
 * and an optional line end ("\n" or "\r\n"), or as exactly KEYFILE_KEY_LEN raw
 * bytes.  A missing file can be created with a fresh random key, written as
 * lower-case hex and "\n", mode 0600: the key goes to a temporary file in the
 * same folder, is fsynced, and link(2) gives it its final name, so the file
 * appears whole or not at all and, when several processes race to create it,
 * the first link wins and everyone reads that key.  A file whose mode lets
 * group or others in is still used, with a warning.
 */
#ifndef AIGATE_KEYFILE_H
#define AIGATE_KEYFILE_H

#include <stddef.h>

#define KEYFILE_KEY_LEN 32

/*
 * Load the key in path into key.  When the file is missing and create is set,
 * make it first.  *created (may be NULL) says whether this call made the file.
 * 0, or -1 with err "PATH: message"; on -1 errno is EBADMSG exactly when the
 * file was read but does not hold a key, so callers can word that case.
 */
int keyfile_load(const char *path, int create, unsigned char key[KEYFILE_KEY_LEN], int *created,
                 char *err, size_t errlen);

/*
 * Create a temporary file beside path (same folder, so rename(2) or link(2)
 * can give it path's name), O_CLOEXEC, mode 0600; its name goes to
 * tmp[tmplen].  The fd, or -1 with errno (ENAMETOOLONG if the name does not
 * fit).
 */
int keyfile_mktemp(const char *path, char *tmp, size_t tmplen);

/*
 * Lower-case hex of in[0..n) (OpenSSL's encoder), 2n digits and a NUL in out,
 * which holds cap >= 2n + 1 bytes: the spelling of key files, ack nonces and
 * the audit chain.  0, or -1 if out is too small.
 */
int keyfile_hex(char *out, size_t cap, const unsigned char *in, size_t n);

/* fsync the folder holding path ("." for a bare name), so a name just created,
 * renamed or removed in it survives a crash.  0, or -1 with errno. */
int keyfile_fsync_dir(const char *path_in_dir);

#endif
