/*
 * libFuzzer target: a Proxy-Authorization value (auth_basic_parse).
 *
 * Oracles beyond the sanitizers: accepted credentials are NUL-free strings of
 * the lengths given, the user name has no colon and no control byte, and
 * encoding them again gives a value that parses to the same credentials.
 */
#include <string.h>

#include <openssl/evp.h>

#include "aigate/identity/auth.h"

#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct auth_cred cred, again;
    unsigned char plain[AUTH_USER_MAX + AUTH_PASS_MAX];
    char hdr[AUTH_HEADER_MAX * 2];
    size_t n;
    int len;

    if (auth_basic_parse((const char *)data, size, &cred) < 0) {
        for (size_t i = 0; i < sizeof(cred.user); i++)
            FUZZ_CHECK(cred.user[i] == '\0');
        return 0;
    }
    FUZZ_CHECK(cred.ulen > 0 && cred.ulen < sizeof(cred.user) && cred.plen < sizeof(cred.pass));
    FUZZ_CHECK(strlen(cred.user) == cred.ulen && strlen(cred.pass) == cred.plen);
    for (size_t i = 0; i < cred.ulen; i++)
        FUZZ_CHECK(cred.user[i] != ':' && (unsigned char)cred.user[i] >= 0x20 &&
                   cred.user[i] != 0x7f);
    memcpy(plain, cred.user, cred.ulen);
    plain[cred.ulen] = ':';
    memcpy(plain + cred.ulen + 1, cred.pass, cred.plen);
    n = cred.ulen + 1 + cred.plen;
    memcpy(hdr, "Basic ", 6);
    len = EVP_EncodeBlock((unsigned char *)hdr + 6, plain, (int)n);
    FUZZ_CHECK(auth_basic_parse(hdr, 6 + (size_t)len, &again) == 0);
    FUZZ_CHECK(again.ulen == cred.ulen && again.plen == cred.plen &&
               memcmp(again.user, cred.user, cred.ulen) == 0 &&
               memcmp(again.pass, cred.pass, cred.plen) == 0);
    auth_cred_clear(&cred);
    auth_cred_clear(&again);
    return 0;
}
