/*
 * libFuzzer target: the acknowledgement POST as caution_ack() reads it: the
 * form (ack_form_parse), the return URL (ack_url_parse_host) and the token
 * (ack_token_check), with the buffers caution.c uses.  The whole input is
 * also tried as a bare token and as a bare URL.
 *
 * Oracles beyond the sanitizers: an accepted return URL holds no byte that
 * could break the Location header it goes into, and its host is lower-case
 * and bracket-free; a token accepted for one user and service is refused
 * for any other (the key, user and issue time are fixed, so seed tokens made
 * with them stay valid).
 */
#include <string.h>
#include <time.h>

#include "aigate/caution/ack.h"

#include "fuzz.h"

/* 2026-01-01T00:00:00Z: the seeds' tokens were issued then. */
#define NOW ((time_t)1767225600)
#define MAX_AGE 600

static const unsigned char key[ACK_KEY_LEN] = "aigate fuzz ack key, 32 bytes!!";

static void
check_url(const char *url)
{
    char host[ACK_HOST_MAX];
    int https = -1;

    if (ack_url_parse_host(url, host, sizeof(host), &https) < 0)
        return;
    FUZZ_CHECK(https == 0 || https == 1);
    for (const char *p = url; *p; p++)
        FUZZ_CHECK((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f);
    FUZZ_CHECK(host[0] != '\0');
    for (const char *p = host; *p; p++)
        FUZZ_CHECK(!(*p >= 'A' && *p <= 'Z') && *p != '[' && *p != ']' && *p != '/' && *p != '@');
}

static void
check_token(const char *token, size_t len, const char *user, const char *service)
{
    enum ack_verdict v = ack_token_check(key, token, len, user, service, NOW, MAX_AGE);

    FUZZ_CHECK(v >= ACK_OK && v <= ACK_MALFORMED);
    (void)ack_verdict_text(v);
    if (v != ACK_OK)
        return;
    FUZZ_CHECK(len <= ACK_TOKEN_LEN_MAX);
    FUZZ_CHECK(ack_token_check(key, token, len, "mallory", service, NOW, MAX_AGE) == ACK_FORGED);
    FUZZ_CHECK(ack_token_check(key, token, len, user, "other", NOW, MAX_AGE) == ACK_FORGED);
    FUZZ_CHECK(ack_token_check(key, token, len, user, service, NOW + 2 * MAX_AGE, MAX_AGE) ==
               ACK_EXPIRED);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char url[ACK_URL_MAX + 1], token[ACK_TOKEN_BUF + 64], *copy = malloc(size + 1);

    if (ack_form_parse((const char *)data, size, url, sizeof(url), token, sizeof(token)) == 0) {
        FUZZ_CHECK(url[0] != '\0' && token[0] != '\0');
        check_url(url);
        check_token(token, strlen(token), "alice", "chatgpt");
        check_token(token, strlen(token), "@127.0.0.1", "host:example.com");
    }
    /* Bare token (not NUL-terminated: data itself) and bare URL. */
    check_token((const char *)data, size, "alice", "chatgpt");
    memcpy(copy, data, size);
    copy[size] = '\0';
    check_url(copy);
    free(copy);
    return 0;
}
