/*
 * Personal data detection: each built-in detector's positives and negatives,
 * normalisation (JSON escapes, form encoding), Content-Encoding (gzip, zlib
 * and raw deflate, a bounded zip bomb), custom patterns and their load errors.
 */
#include <check.h>
#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include "aigate/rules/dlp.h"
#include "aigate/rules/policy.h"

#define MAX_DECODED (1024 * 1024)

static config_t cfg;
static char err[512];

/* Kinds found in a plain text/plain body without custom patterns. */
static unsigned
scan_plain(const char *s)
{
    return dlp_scan(NULL, s, strlen(s), NULL, 0, "text/plain", 10, MAX_DECODED);
}

static unsigned
scan_ct(const char *s, const char *ct)
{
    return dlp_scan(NULL, s, strlen(s), NULL, 0, ct, ct ? strlen(ct) : 0, MAX_DECODED);
}

static void
expect(const char *const *texts, size_t n, unsigned kind, int found)
{
    for (size_t i = 0; i < n; i++) {
        unsigned got = scan_plain(texts[i]) & kind;

        ck_assert_msg(found ? got != 0 : got == 0, "\"%s\": expected %s", texts[i],
                      found ? "a match" : "no match");
    }
}

#define EXPECT(kind, found, ...)                                                                   \
    do {                                                                                           \
        static const char *const t_[] = {__VA_ARGS__};                                             \
        expect(t_, sizeof(t_) / sizeof(t_[0]), kind, found);                                       \
    } while (0)

START_TEST(rrn_forms)
{
    EXPECT(POLICY_DLP_KR_RRN, 1, "900101-1234568", "8503152345678", "x 000229-3123454 y",
           "960229-2123459", "991231-5123451", "040101-7123451", "900101 1234568",
           "\xec\xa3\xbc\xeb\xaf\xbc 900101-1234568\xec\x9e\x85\xeb\x8b\x88\xeb\x8b\xa4",
           "rrn:900101-1234568.", "(900101-1234568)");
    EXPECT(POLICY_DLP_KR_RRN, 0, "900101-1234567", /* check digit */
           "020229-4567898",                       /* 2002 is not a leap year */
           "000229-1123459",                       /* nor is 1900 */
           "900230-1234563", "901301-1234565", "900001-1234566",
           "900101-9234560",                     /* gender digit 9 */
           "1900101-1234568", "900101-12345689", /* inside longer numbers */
           "19001011234568", "90010112345680", "0.9001011234568", "9001011234568.5",
           "900101--1234568", "900101_1234568", "900101", "hello world");
}
END_TEST

START_TEST(card_forms)
{
    EXPECT(POLICY_DLP_CREDIT_CARD, 1, "4111111111111111", "4111 1111 1111 1111",
           "card 4111-1111-1111-1111 exp 12/29", "my card is 4111 1111 1111 1111.",
           "5555555555554444", "2223003122003222", "378282246310005", "3782 822463 10005",
           "6011111111111117", "6500000000000002", "3530111333300000", "6200000000000005",
           "30569309025904", "36227206271667", "4222222222222", "4111111111111111110",
           "4111 1111 1111 1111 110", "3056 930902 5904", "{\"n\":4111111111111111}");
    EXPECT(POLICY_DLP_CREDIT_CARD, 0, "4111111111111112", /* Luhn */
           "1234567812345670", "9410000000000005",        /* no known issuer */
           "411111111111116",                             /* Visa with 15 digits */
           "555555555555442", "5011111111111119", "41111111111111110000", "94111111111111111",
           "0.4111111111111111", "4111111111111111.5", "4111 1111-1111 1111",
           "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "order 1700000000000", "hello world");
}
END_TEST

/*
 * Runs of card-like groups longer than any card layout (the longest is
 * 4-4-4-4-3, 19 digits): five groups of up to 6 digits once overflowed the
 * 19-digit buffer (a remote crash, issue 11).  No match, no write past it.
 */
START_TEST(card_groups_longer_than_a_card)
{
    EXPECT(POLICY_DLP_CREDIT_CARD, 0, "1234-123456-123456-123456-123456",
           "4111 111111 111111 111111 111111", "4111-111111-111111-111111-1111",
           "4111 1111 1111 1111 111111", "4111-1111-1111-1111-1111-1111",
           "x 4111 666666 666666 666666 666666 y");
}
END_TEST

START_TEST(email_forms)
{
    EXPECT(POLICY_DLP_EMAIL, 1, "alice@example.com", "a.b+tag@sub.example.co.kr",
           "x_y%z@foo-bar.io", "mail me at bob@example.com.", "<carol@example.org>",
           "bob@example.com.1",
           "\xea\xb9\x80"
           "alice@example.com");
    EXPECT(POLICY_DLP_EMAIL, 0, "user@localhost", "a@b.c", "@example.com", "a@-foo.com",
           "a@foo-.com", "icon@2x.png", "logo@3x.JPG", "x@1.2.3.4", "a@.com", "foo.@example.com",
           "pkg@1.2.3", "@@@", "a@", "alice at example dot com");
}
END_TEST

START_TEST(phone_forms)
{
    EXPECT(POLICY_DLP_PHONE_KR, 1, "010-1234-5678", "010.1234.5678", "010 1234 5678", "01012345678",
           "011-123-4567", "01112345678", "016-123-4567", "019.1234.5678", "+82 10-1234-5678",
           "+82-10-1234-5678", "+821012345678", "+82 (0)10 1234 5678", "+82 010-1234-5678",
           "+82-2-123-4567", "02-123-4567", "02-1234-5678", "031-123-4567", "064.123.4567",
           "055 123 4567", "(02) 123-4567", "(031)123-4567",
           "\xec\xa0\x84\xed\x99\x94:010-1234-5678\xeb\xa1\x9c", "010-1234-5678 010-1234");
    EXPECT(POLICY_DLP_PHONE_KR, 0, "012-1234-5678", "070-1234-5678", "037-123-4567",
           "010-1234-56789", "010-12-5678", "010-12345-678", "0212345678", "0311234567",
           "010-1234.5678", "02-123-4567-8901", "0111234567", "0162908708", "010-0123-4567",
           "01001234567", "02.123.4567.8", "9010-1234-5678", "x01012345678901", "12345678901",
           "+83 10-1234-5678", "+82 99-1234-5678", "0.01012345678", "2024.02.15", "05.12.2024",
           "hello world");
}
END_TEST

/* Made-up keys in the formats of dlp.c's api-key (random, never issued). */
#define K_OPENAI "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"
#define K_PROJ                                                                                     \
    "sk-proj-CfrL1spNxnyVmihA_2O76UMFxFkM_R5Kjp1vRt-1fjORS_6ilI8ihN5KXSc7Tvo_hBKqFYY_"             \
    "kvT3BlbkFJ5ZJr3J1TWDtkwtDDb-xHKas1VOqg6YYZYn9ZhyiA4uoRgnatmUdjAWtGSU8po-799NksnRH9uc"
#define K_ANT                                                                                      \
    "sk-ant-api03-FHz5r1pY4OjE2jBMptUsGr7CmY-uCu3ZR1zTOlUcR64cXQLioDnkHIfxIq2HZt_"                 \
    "PlJhx2jIclHkCiHp6bR1IqfEouHgxzAA"
#define K_AWS "AKIATTNS4LRWBQCABM6P"
#define K_GHP "ghp_eOV4qBkdfQ1y3GQsMpSscDlkrCaqx9vJupc9"
#define K_PAT                                                                                      \
    "github_pat_2WjQ5TY4MyWuUFjsUNPjc0_"                                                           \
    "1T5GOBUSZGi6HWGK10Zb0RLZ5TR9SPofbciOx9gy1CJdObOIRpFqaDZeV7G"
#define K_SLACK "xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
#define K_GOOGLE "AIzali8GjHEAD6_Wj9KfzjsQGMrb9h-ImB-LK77"

START_TEST(api_key_forms)
{
    EXPECT(
        POLICY_DLP_API_KEY, 1, K_OPENAI, K_PROJ, K_ANT, K_AWS, K_GHP, K_PAT, K_SLACK, K_GOOGLE,
        "OPENAI_API_KEY=" K_OPENAI "\n", "Authorization: Bearer " K_PROJ, "{\"key\":\"" K_ANT "\"}",
        "x-api-key: '" K_ANT "'",
        "sk-svcacct-AUsdMlHUvTCQCyEZDz_TddJ8HyS5SUkCnD8zRA9a9SkpXz9w3QlY7ZkuvqT3BlbkFJdt7s8Stqcbnr3"
        "yBdGBLEPH1qhT61qtc4xatws8phP9nhFyJfm5di4PzJ59",
        "sk-ant-admin01-FHz5r1pY4OjE2jBMptUsGr7CmY-uCu3ZR1zTOlUcR64cXQLioDnkHIfxIq2HZt_PlJhx2jIcl"
        "HkCiHp6bR1IqfEouHgxzAA",
        "aws_access_key_id = ASIA4G37ZTNOVMIZWDIA", "gho_eOV4qBkdfQ1y3GQsMpSscDlkrCaqx9vJupc9",
        "ghu_eOV4qBkdfQ1y3GQsMpSscDlkrCaqx9vJupc9", "ghs_4tnwlavyfErGPmpGXafq0fjzLczbttOofL9H",
        "ghr_eOV4qBkdfQ1y3GQsMpSscDlkrCaqx9vJupc9",
        "xoxp-41684372915-1320496754-45609968301-e708ba56e1517a99f6b5fb07349476ef",
        "xoxa-2-511111111-31111111111-3111111111111-e039d02840a0b9379c",
        "xoxr-1-4614724432022-OPsWQqkSkt9u", "maps?key=" K_GOOGLE "&q=seoul",
        "\xed\x82\xa4\xeb\x8a\x94 " K_GHP "\xec\x9e\x85\xeb\x8b\x88\xeb\x8b\xa4");
    EXPECT(POLICY_DLP_API_KEY, 0,
           /* one byte short or long, or inside a longer token */
           "sk-u8jzPde0IgxLd6GncfBAT3BlbkFJepfJBd0Kh8oOOL8dKLz",
           "sk-u8jzPde0IgxLd6GncfBAT3BlbkFJepfJBd0Kh8oOOL8dKLzdx", "x" K_OPENAI, K_OPENAI "-x",
           "AKIATTNS4LRWBQCABM6", "AKIATTNS4LRWBQCABM6PQ", "TODAYINASIAASACKOFRICEFELLOVER",
           "ghp_eOV4qBkdfQ1y3GQsMpSscDlkrCaqx9vJupc", "ghp_eOV4qBkdfQ1y3GQsMpSscDlkrCaqx9vJupc9a",
           "xghp_eOV4qBkdfQ1y3GQsMpSscDlkrCaqx9vJupc9", "ghx_eOV4qBkdfQ1y3GQsMpSscDlkrCaqx9vJupc9",
           "github_pat_2WjQ5TY4MyWuUFjsUNPjc0_1T5GOBUSZGi6HWGK10Zb0RLZ5TR9SPofbciOx9gy1CJdObOIRpFq"
           "aDZeV7",
           "AIzali8GjHEAD6_Wj9KfzjsQGMrb9h-ImB-LK7", "AIzali8GjHEAD6_Wj9KfzjsQGMrb9h-ImB-LK77x",
           /* placeholders and prose */
           "AKIAIOSFODNN7EXAMPLE", "sk-proj-REPLACE_ME", "sk-ant-api03-xxxx", "sk-ant-xyz-" K_GHP,
           "xoxb-your-bot-token-goes-here", "xoxb-123", "xoxb-12345-abcd234",
           "xoxb-12345678901234-abcdefghijklmnopqrstuvwxyz", "use sk-learn or scikit-learn",
           "a risk-proj-management-plan-with-a-long-name-that-goes-on-and-on-and-on-forever",
           "task-force", "AKIA is how an access key id starts; ghp_ a GitHub token",
           "The AIza prefix marks Google API keys.");
}
END_TEST

#define PEM_BODY                                                                                   \
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVcB9Hq8u1qRw0xGk\n"                           \
    "yN2cZ7uGzlqKc1mY9fL0Xb+hRANCAAS3Qx5mQm0cQ1Yg5pXl9vJt3pN8a2rWcEjk\n"

START_TEST(private_key_forms)
{
    EXPECT(
        POLICY_DLP_PRIVATE_KEY, 1, "-----BEGIN PRIVATE KEY-----\n" PEM_BODY,
        "key:\r\n-----BEGIN RSA PRIVATE KEY-----\r\n" PEM_BODY "-----END RSA PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----\n" PEM_BODY "-----END EC PRIVATE KEY-----\n",
        "-----BEGIN DSA PRIVATE KEY-----\n" PEM_BODY,
        "-----BEGIN OPENSSH PRIVATE KEY-----\n" PEM_BODY,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n" PEM_BODY,
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,"
        "0123456789ABCDEF0123456789ABCDEF\n\n" PEM_BODY,
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n" PEM_BODY,
        /* pasted as one line, or with the JSON escapes still in */
        "-----BEGIN PRIVATE KEY----- MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVcB9Hq8u1qRw0x"
        "Gk -----END PRIVATE KEY-----",
        "{\"text\":\"-----BEGIN PRIVATE KEY-----\\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIB\\n"
        "AQQgVcB9Hq8u1qRw0xGkyN2cZ7uGzlqKc1mY9fL0Xb\\n\"}");
    EXPECT(POLICY_DLP_PRIVATE_KEY, 0, "-----BEGIN PRIVATE KEY-----",
           "What goes after -----BEGIN PRIVATE KEY----- in a PEM file?",
           "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
           "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVcB9Hq8u1q"
           "\n-----END PRIVATE KEY-----",
           "-----BEGIN CERTIFICATE-----\n" PEM_BODY, "-----BEGIN PUBLIC KEY-----\n" PEM_BODY,
           "-----BEGIN RSA PUBLIC KEY-----\n" PEM_BODY, "-----BEGIN  PRIVATE KEY-----\n" PEM_BODY,
           "-----BEGIN private key-----\n" PEM_BODY);
}
END_TEST

/* Each secret as the whole body, at every offset of filler text, and in a JSON string. */
START_TEST(secrets_everywhere)
{
    static const char *const keys[] = {K_OPENAI, K_PROJ, K_ANT,   K_AWS,
                                       K_GHP,    K_PAT,  K_SLACK, K_GOOGLE};
    char buf[512];

    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        for (int pad = 0; pad < 24; pad++) {
            int n = snprintf(buf, sizeof(buf), "%.*s %s.", pad, "lorem ipsum dolor sit amet, co",
                             keys[k]);

            ck_assert_uint_eq(dlp_scan(NULL, buf, (size_t)n, NULL, 0, NULL, 0, MAX_DECODED),
                              POLICY_DLP_API_KEY);
        }
        snprintf(buf, sizeof(buf), "{\"messages\":[{\"content\":\"my key is\\n%s\"}]}", keys[k]);
        ck_assert_uint_eq(scan_ct(buf, "application/json"), POLICY_DLP_API_KEY);
    }
    snprintf(buf, sizeof(buf), "%s %s", K_AWS, "-----BEGIN PRIVATE KEY-----\n" PEM_BODY);
    ck_assert_uint_eq(scan_plain(buf), POLICY_DLP_API_KEY | POLICY_DLP_PRIVATE_KEY);
    /* form-encoded: the key's '-' and '_' survive, its neighbours are decoded */
    ck_assert_uint_eq(scan_ct("q=my+key+%22" K_GHP "%22", "application/x-www-form-urlencoded"),
                      POLICY_DLP_API_KEY);
}
END_TEST

/* Ordinary prose and code with plenty of 's', 'A', 'g', 'x' and '-' find nothing. */
START_TEST(secrets_quiet_on_prose)
{
    static const char text[] =
        "Ask the assistant: a sk-learn pipeline (scikit-learn) with AdaBoost and AIC scores; "
        "github issues, gh pr list, xo-xo, xox, -----, --- BEGIN ---, AKIA-less ASIAN markets. "
        "int main(void) { return get_value(x_axis, gho, ghp); } /* ghp_ */ ----- BEGIN";
    char *big = malloc(1 << 20);
    size_t n = 0;

    ck_assert_uint_eq(scan_plain(text), 0);
    while (n + sizeof(text) < (1u << 20)) {
        memcpy(big + n, text, sizeof(text) - 1);
        n += sizeof(text) - 1;
    }
    ck_assert_uint_eq(dlp_scan(NULL, big, n, NULL, 0, "text/plain", 10, MAX_DECODED), 0);
    free(big);
}
END_TEST

/* Hostile shapes stay linear: one endless token, endless prefixes, endless PEM headers. */
START_TEST(secrets_linear)
{
    static const char *const units[] = {
        "a", "sk-", "sk-ant-api03-", "xoxb-1-", "-----BEGIN ", "-----BEGIN PRIVATE KEY-----\nA:"};
    size_t size = 4u << 20;
    char *big = malloc(size);

    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        size_t l = strlen(units[u]), n = 0;

        while (n + l <= size) {
            memcpy(big + n, units[u], l);
            n += l;
        }
        ck_assert_uint_eq(dlp_scan(NULL, big, n, NULL, 0, "text/plain", 10, MAX_DECODED) &
                              (POLICY_DLP_API_KEY | POLICY_DLP_PRIVATE_KEY),
                          0);
    }
    free(big);
}
END_TEST

START_TEST(several_kinds)
{
    const char *s = "call 010-1234-5678 or mail bob@example.com; card 4111111111111111";

    ck_assert_uint_eq(scan_plain(s),
                      POLICY_DLP_PHONE_KR | POLICY_DLP_EMAIL | POLICY_DLP_CREDIT_CARD);
    ck_assert_uint_eq(dlp_scan(NULL, "", 0, NULL, 0, NULL, 0, MAX_DECODED), 0);
    ck_assert_uint_eq(dlp_scan(NULL, NULL, 0, NULL, 0, NULL, 0, MAX_DECODED), 0);
}
END_TEST

/*
 * The scan skips 8 bytes at a time where nothing can start: every kind must
 * still be found wherever it falls against those blocks, at the very end of
 * the body, and next to UTF-8 text (bytes >= 0x80 are skipped too).
 */
START_TEST(found_at_every_offset)
{
    static const struct {
        const char *data;
        unsigned kind;
    } kinds[] = {
        {"900101-1234568", POLICY_DLP_KR_RRN},     {"4111 1111 1111 1111", POLICY_DLP_CREDIT_CARD},
        {"bob@example.com", POLICY_DLP_EMAIL},     {"010-1234-5678", POLICY_DLP_PHONE_KR},
        {"+82 10-1234-5678", POLICY_DLP_PHONE_KR}, {"(02) 123-4567", POLICY_DLP_PHONE_KR},
    };
    static const char *const pads[] = {"Please summarise the meeting notes ",
                                       "\xed\x9a\x8c\xec\x9d\x98\xeb\xa1\x9d "};
    char buf[256];

    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
        for (size_t p = 0; p < 2; p++)
            for (size_t off = 0; off < 17; off++)
                for (int tail = 0; tail < 2; tail++) {
                    int n = snprintf(buf, sizeof(buf), "%.*s %s%s", (int)off, pads[p],
                                     kinds[k].data, tail ? " thanks" : "");

                    ck_assert_int_lt(n, (int)sizeof(buf));
                    ck_assert_msg(scan_plain(buf) & kinds[k].kind, "not found: \"%s\"", buf);
                }
}
END_TEST

START_TEST(json_escapes)
{
    const char *rrn = "{\"prompt\":\"\\u0039\\u0030\\u0030\\u0031\\u0030\\u0031-1234568\"}";
    const char *mail = "{\"m\":\"alice\\u0040example.com\"}";
    const char *phone = "[\"010\\u002d1234\\u002d5678\"]";
    const char *card = "{\"c\":\"4111\\u00201111\\u00201111\\u00201111\"}";

    ck_assert_uint_eq(scan_ct(rrn, "application/json"), POLICY_DLP_KR_RRN);
    ck_assert_uint_eq(scan_ct(rrn, NULL), POLICY_DLP_KR_RRN);
    ck_assert_uint_eq(scan_ct(rrn, "text/plain"), POLICY_DLP_KR_RRN); /* looks like JSON */
    ck_assert_uint_eq(scan_ct(mail, "application/json; charset=utf-8"), POLICY_DLP_EMAIL);
    ck_assert_uint_eq(scan_ct(phone, NULL), POLICY_DLP_PHONE_KR);
    ck_assert_uint_eq(scan_ct(card, "application/vnd.api+json"), POLICY_DLP_CREDIT_CARD);
    /* JSON content type on a body that does not start like JSON (NDJSON tail). */
    ck_assert_uint_eq(scan_ct("  \"bob\\u0040example.com\"", "application/x-ndjson"),
                      POLICY_DLP_EMAIL);
    /* Not JSON, not decoded: the escape hides nothing from a human either. */
    ck_assert_uint_eq(scan_ct("bob\\u0040example.com", "text/plain"), 0);
    /* Escaped backslash: "\\u0040" is a backslash and "u0040", not an '@'. */
    ck_assert_uint_eq(scan_ct("{\"m\":\"bob\\\\u0040example.com\"}", NULL), 0);
    /* Truncated and bogus escapes are kept as they are. */
    ck_assert_uint_eq(scan_ct("{\"m\":\"\\x \\u12 \\ud800 \\u00", NULL), 0);
}
END_TEST

START_TEST(form_encoding)
{
    const char *form = "application/x-www-form-urlencoded";

    ck_assert_uint_eq(scan_ct("q=alice%40example.com&x=1", form), POLICY_DLP_EMAIL);
    ck_assert_uint_eq(scan_ct("msg=010+1234+5678", form), POLICY_DLP_PHONE_KR);
    ck_assert_uint_eq(scan_ct("r=900101%2D1234568", "Application/X-WWW-Form-Urlencoded"),
                      POLICY_DLP_KR_RRN);
    /* Query-like bodies without the content type. */
    ck_assert_uint_eq(scan_ct("email=bob%40example.com\r\n", NULL), POLICY_DLP_EMAIL);
    ck_assert_uint_eq(scan_ct("c=4111%201111%201111%201111", "text/plain"), POLICY_DLP_CREDIT_CARD);
    /* JSON inside a form field. */
    ck_assert_uint_eq(scan_ct("data=%7B%22a%22%3A%22bob%5Cu0040example.com%22%7D", form),
                      POLICY_DLP_EMAIL);
    /* Prose with a '%' is not a query string. */
    ck_assert_uint_eq(scan_ct("50% of bob%40example.com = x", "text/plain"), 0);
    /* Bad and truncated %-escapes are kept. */
    ck_assert_uint_eq(scan_ct("a=%zz&b=%4", form), 0);
}
END_TEST

START_TEST(multipart_as_is)
{
    const char *ct = "multipart/form-data; boundary=xyz";
    const char *hidden = "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n"
                         "q=bob%40example.com\r\n--xyz--\r\n";
    const char *plain = "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n"
                        "{\"m\":\"bob@example.com\"}\r\n--xyz--\r\n";

    ck_assert_uint_eq(scan_ct(hidden, ct), 0);
    ck_assert_uint_eq(scan_ct(plain, ct), POLICY_DLP_EMAIL);
}
END_TEST

/* zlib stream of s with the given window bits (31 gzip, 15 zlib, -15 raw). */
static unsigned char *
compress_with(const void *s, size_t n, int wbits, size_t *outlen)
{
    z_stream z;
    size_t cap = deflateBound(NULL, (uLong)n) + 64;
    unsigned char *out = malloc(cap);

    ck_assert_ptr_nonnull(out);
    memset(&z, 0, sizeof(z));
    ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (unsigned char *)(uintptr_t)s;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    *outlen = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static unsigned
scan_ce(const unsigned char *body, size_t n, const char *ce, size_t max)
{
    return dlp_scan(NULL, (const char *)body, n, ce, strlen(ce), "application/json", 16, max);
}

START_TEST(content_encoding)
{
    const char *text =
        "{\"prompt\":\"my card is 4111 1111 1111 1111, mail bob\\u0040example.com\"}";
    unsigned want = POLICY_DLP_CREDIT_CARD | POLICY_DLP_EMAIL;
    size_t gn, zn, rn, twon, m1n, m2n, n = strlen(text);
    unsigned char *gz = compress_with(text, n, 31, &gn);
    unsigned char *zl = compress_with(text, n, 15, &zn);
    unsigned char *raw = compress_with(text, n, -15, &rn);
    unsigned char *two = compress_with(zl, zn, 31, &twon); /* deflate, then gzip */
    unsigned char both[1024], *m1, *m2;

    ck_assert_uint_eq(scan_ce(gz, gn, "gzip", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce(gz, gn, "x-gzip", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce(gz, gn, " GZIP ", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce(zl, zn, "deflate", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce(raw, rn, "Deflate", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce(gz, gn, "identity, gzip", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce(two, twon, "deflate, gzip", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce((const unsigned char *)text, n, "identity", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce((const unsigned char *)text, n, "", MAX_DECODED), want);
    /* Compressed data is not scanned as text. */
    ck_assert_uint_eq(scan_ce(gz, gn, "identity", MAX_DECODED), 0);
    /* Codings we cannot undo: the bytes are read as they came, so a label cannot hide text. */
    ck_assert_uint_eq(scan_ce((const unsigned char *)text, n, "br", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce((const unsigned char *)text, n, "gzip, zstd", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce(gz, gn, "gzip, zstd", MAX_DECODED), 0);
    ck_assert_uint_eq(scan_ce(gz, gn, "gzip, gzip, gzip, gzip, gzip", MAX_DECODED), 0);
    /* Plain text labelled gzip or deflate is not a stream: read as it came. */
    ck_assert_uint_eq(scan_ce((const unsigned char *)text, n, "gzip", MAX_DECODED), want);
    ck_assert_uint_eq(scan_ce((const unsigned char *)text, n, "deflate", MAX_DECODED), want);
    /* Two gzip members in one body, a kind in each. */
    m1 = compress_with("mail bob@example.com ", 21, 31, &m1n);
    m2 = compress_with("card 4111111111111111", 21, 31, &m2n);
    ck_assert_uint_lt(m1n + m2n, sizeof(both));
    memcpy(both, m1, m1n);
    memcpy(both + m1n, m2, m2n);
    ck_assert_uint_eq(scan_ce(both, m1n + m2n, "gzip", MAX_DECODED), want);
    free(m1);
    free(m2);
    /* The bound applies: 30 bytes decoded stop inside the card. */
    ck_assert_uint_eq(scan_ce(gz, gn, "gzip", 30), 0);
    ck_assert_uint_eq(scan_ce(gz, gn, "gzip", 0), 0);
    free(gz);
    free(zl);
    free(raw);
    free(two);
}
END_TEST

/* A truncated or corrupt stream is scanned up to the damage. */
START_TEST(damaged_streams)
{
    static char text[65536];
    unsigned seed = 1;
    size_t gn, rn;
    unsigned char *gz, *raw;

    strcpy(text, "alice@example.com ");
    for (size_t i = strlen(text); i < sizeof(text) - 32; i++) {
        seed = seed * 1103515245u + 12345u;
        text[i] = (char)('a' + (seed >> 16) % 26);
    }
    strcpy(text + sizeof(text) - 32, " 010-1234-5678");
    gz = compress_with(text, strlen(text), 31, &gn);
    raw = compress_with(text, strlen(text), -15, &rn);
    ck_assert_uint_eq(scan_ce(gz, gn, "gzip", MAX_DECODED), POLICY_DLP_EMAIL | POLICY_DLP_PHONE_KR);
    ck_assert_uint_eq(scan_ce(gz, gn / 2, "gzip", MAX_DECODED), POLICY_DLP_EMAIL);
    ck_assert_uint_eq(scan_ce(raw, rn / 2, "deflate", MAX_DECODED), POLICY_DLP_EMAIL);
    /* Garbage in the middle: the prefix is still read (and a bad CRC does not hide it). */
    memset(gz + gn / 2, 0xff, 64);
    ck_assert_uint_ne(scan_ce(gz, gn, "gzip", MAX_DECODED) & POLICY_DLP_EMAIL, 0);
    /* Not compressed at all despite the label. */
    ck_assert_uint_eq(scan_ce((const unsigned char *)"xx", 2, "gzip", MAX_DECODED), 0);
    free(gz);
    free(raw);
}
END_TEST

static long
maxrss_kb(void)
{
    struct rusage ru;

    ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/*
 * 256 MiB of zeros behind an e-mail address, another address at the very
 * end: with a 1 MiB bound the first is found, the second never decoded, and
 * the process does not grow by anything like 256 MiB.
 */
START_TEST(gzip_bomb_is_bounded)
{
    static unsigned char zeros[1 << 20];
    const char *head = "head alice@example.com ", *tail = " tail 4111111111111111";
    size_t cap = 1 << 20, n;
    unsigned char *out = malloc(cap);
    long before;
    z_stream z;

    ck_assert_ptr_nonnull(out);
    memset(&z, 0, sizeof(z));
    ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    z.next_in = (unsigned char *)(uintptr_t)head;
    z.avail_in = (uInt)strlen(head);
    ck_assert_int_eq(deflate(&z, Z_NO_FLUSH), Z_OK);
    for (int i = 0; i < 256; i++) {
        z.next_in = zeros;
        z.avail_in = sizeof(zeros);
        ck_assert_int_eq(deflate(&z, Z_NO_FLUSH), Z_OK);
    }
    z.next_in = (unsigned char *)(uintptr_t)tail;
    z.avail_in = (uInt)strlen(tail);
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    n = cap - z.avail_out;
    deflateEnd(&z);
    ck_assert_uint_lt(n, 1 << 20);

    before = maxrss_kb();
    ck_assert_uint_eq(dlp_scan(NULL, (const char *)out, n, "gzip", 4, NULL, 0, MAX_DECODED),
                      POLICY_DLP_EMAIL);
    ck_assert_int_lt(maxrss_kb() - before, 64 * 1024);
    free(out);
}
END_TEST

static struct dlp *
load(const char *text)
{
    config_init(&cfg);
    ck_assert_msg(config_read_string(&cfg, text) == CONFIG_TRUE, "libconfig: %s line %d",
                  config_error_text(&cfg), config_error_line(&cfg));
    err[0] = '\0';
    return dlp_load(config_lookup(&cfg, "dlp_patterns"), err, sizeof(err));
}

static void
done(struct dlp *d)
{
    dlp_free(d);
    config_destroy(&cfg);
}

static const char patterns[] = "dlp_patterns = (\n"
                               "  { name = \"emp\"; regex = \"EMP-[0-9]{6}\"; },\n"
                               "  { name = \"proj.x_1\"; regex = \"project (falcon|eagle)\"; },\n"
                               "  { name = \"smile\"; regex = \"\xf0\x9f\x98\x80 a/b\"; }\n"
                               ");\n";

START_TEST(custom_patterns)
{
    struct dlp *d = load(patterns);
    const char nul[] = "abc\0EMP-123456";
    const char *json = "{\"t\":\"\\ud83d\\ude00 a\\/b\"}";

    ck_assert_msg(d != NULL, "%s", err);
    ck_assert_uint_eq(dlp_scan(d, "id EMP-123456", 13, NULL, 0, NULL, 0, MAX_DECODED),
                      POLICY_DLP_CUSTOM(0));
    ck_assert_uint_eq(dlp_scan(d, "EMP-12345", 9, NULL, 0, NULL, 0, MAX_DECODED), 0);
    ck_assert_uint_eq(
        dlp_scan(d, "on project eagle, bob@example.com", 33, NULL, 0, NULL, 0, MAX_DECODED),
        POLICY_DLP_CUSTOM(1) | POLICY_DLP_EMAIL);
    /* Custom patterns see the normalised text: a surrogate pair and "\/". */
    ck_assert_uint_eq(dlp_scan(d, json, strlen(json), NULL, 0, NULL, 0, MAX_DECODED),
                      POLICY_DLP_CUSTOM(2));
    ck_assert_uint_eq(dlp_scan(d, "q=EMP%2D123456", 14, NULL, 0,
                               "application/x-www-form-urlencoded", 33, MAX_DECODED),
                      POLICY_DLP_CUSTOM(0));
    /* A NUL in the body does not hide what follows it. */
    ck_assert_uint_eq(dlp_scan(d, nul, sizeof(nul) - 1, NULL, 0, NULL, 0, MAX_DECODED),
                      POLICY_DLP_CUSTOM(0));
    done(d);
}
END_TEST

START_TEST(kind_names)
{
    struct dlp *d = load(patterns);
    const char *names[8];

    ck_assert_msg(d != NULL, "%s", err);
    ck_assert_str_eq(dlp_kind_name(0, d), "kr-rrn");
    ck_assert_str_eq(dlp_kind_name(1, NULL), "credit-card");
    ck_assert_str_eq(dlp_kind_name(2, d), "email");
    ck_assert_str_eq(dlp_kind_name(3, d), "phone-kr");
    ck_assert_str_eq(dlp_kind_name(4, d), "api-key");
    ck_assert_str_eq(dlp_kind_name(5, NULL), "private-key");
    ck_assert_str_eq(dlp_kind_name(POLICY_DLP_CUSTOM_FIRST, d), "custom:emp");
    ck_assert_str_eq(dlp_kind_name(POLICY_DLP_CUSTOM_FIRST + 1, d), "custom:proj.x_1");
    ck_assert_ptr_null(dlp_kind_name(POLICY_DLP_CUSTOM_FIRST + 3, d));
    ck_assert_ptr_null(dlp_kind_name(POLICY_DLP_CUSTOM_FIRST, NULL));
    ck_assert_ptr_null(dlp_kind_name(40, d));

    ck_assert_uint_eq(dlp_kinds(POLICY_DLP_EMAIL | POLICY_DLP_KR_RRN | POLICY_DLP_CUSTOM(1) |
                                    POLICY_DLP_CUSTOM(20),
                                d, names, 8),
                      3);
    ck_assert_str_eq(names[0], "kr-rrn");
    ck_assert_str_eq(names[1], "email");
    ck_assert_str_eq(names[2], "custom:proj.x_1");
    ck_assert_uint_eq(dlp_kinds(0xffffffffu, d, names, 2), 2);
    ck_assert_str_eq(names[1], "credit-card");
    ck_assert_uint_eq(dlp_kinds(0, d, names, 8), 0);
    done(d);
}
END_TEST

START_TEST(no_patterns)
{
    struct dlp *d = load("other = 1;\n");

    ck_assert_msg(d != NULL, "%s", err);
    ck_assert_uint_eq(dlp_scan(d, "bob@example.com", 15, NULL, 0, NULL, 0, MAX_DECODED),
                      POLICY_DLP_EMAIL);
    done(d);
    d = load("dlp_patterns = ();\n");
    ck_assert_msg(d != NULL, "%s", err);
    done(d);
    d = load("dlp_patterns = [];\n");
    ck_assert_msg(d != NULL, "%s", err);
    done(d);
    dlp_free(NULL);
}
END_TEST

static void
load_fails(const char *text, const char *want)
{
    struct dlp *d = load(text);

    ck_assert_msg(d == NULL, "loaded: %s", text);
    ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
    done(NULL);
}

/*
 * Custom patterns glibc's regcomp() would build into something huge: it
 * copies every repeated piece (x{0,32767} took 8 GB, each '+' of "x+++"
 * doubles) and recurses per parenthesis (deep nesting overflowed the stack).
 * Found by tests/fuzz/fuzz_config; what real patterns look like still loads.
 */
static char *
rx_conf(const char *head, const char *unit, size_t n, const char *tail)
{
    size_t len = strlen(head) + strlen(unit) * n + strlen(tail) + 64;
    char *s = malloc(len), *p = s;

    ck_assert_ptr_nonnull(s);
    p += sprintf(p, "dlp_patterns = ( { name = \"a\"; regex = \"%s", head);
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s", unit);
    sprintf(p, "%s\"; } );\n", tail);
    return s;
}

START_TEST(regex_too_big)
{
    static const struct {
        const char *head, *unit;
        size_t n;
        const char *tail;
        int ok;
    } c[] = {
        {"x", "+", 13, "", 0},
        {"", "(", 33, "x", 0}, /* closed below */
        {"((x{100}){100}){10}", "", 0, "", 0},
        {"[a-z]{0,2100}", "", 0, "", 0},
        {"x", "+", 8, "", 1},
        {"", "(", 32, "x", 1},
        {"[A-Za-z0-9_-]{40,250}", "", 0, "", 1},
        {"(secret|confidential|internal){1,3} x{2}{3}", "", 0, "", 1},
        {"(", "keyword|", 800, "last)", 1}, /* 6,400 bytes written, no repetition */
    };

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        char tail[128];
        char *text;
        struct dlp *d;

        snprintf(tail, sizeof(tail), "%s", c[i].tail);
        if (strcmp(c[i].unit, "(") == 0)
            for (size_t k = 0; k < c[i].n && strlen(tail) + 2 < sizeof(tail); k++)
                strcat(tail, ")");
        text = rx_conf(c[i].head, c[i].unit, c[i].n, tail);
        d = load(text);
        if (c[i].ok)
            ck_assert_msg(d != NULL, "case %zu refused: %s", i, err);
        else
            ck_assert_msg(d == NULL && strstr(err, "dlp_patterns \"a\": too big") != NULL,
                          "case %zu: \"%s\"", i, err);
        done(d);
        free(text);
    }
}
END_TEST

START_TEST(load_errors)
{
    load_fails("dlp_patterns = (\n { name = \"a\"; regex = \"x\"; },\n"
               " { name = \"bad\";\n   regex = \"EMP-[0-9\"; }\n);\n",
               "<config>:4: dlp_patterns \"bad\": bad regex: ");
    load_fails("dlp_patterns = (\n { name = \"bad\"; regex = \"a{2,1}\"; }\n);\n",
               "<config>:2: dlp_patterns \"bad\": bad regex: ");
    load_fails("dlp_patterns = (\n { name = \"a\"; regex = \"x\"; },\n { regex = \"y\"; }\n);\n",
               "<config>:3: dlp_patterns #2: missing name");
    load_fails("dlp_patterns = ( { name = \"a\";\n regex = 5; } );\n",
               "<config>:2: dlp_patterns \"a\": regex must be a non-empty string");
    load_fails("dlp_patterns = ( { name = \"a\"; regex = \"\"; } );\n",
               "<config>:1: dlp_patterns \"a\": regex must be a non-empty string");
    load_fails("dlp_patterns = (\n { name = \"a\"; } );\n",
               "<config>:2: dlp_patterns \"a\": missing regex");
    load_fails("dlp_patterns = ( { name = 1; regex = \"x\"; } );\n",
               "<config>:1: dlp_patterns #1: name must be a string");
    load_fails("dlp_patterns = ( { name = \"a b\"; regex = \"x\"; } );\n",
               "dlp_patterns #1: name \"a b\" must be");
    load_fails("dlp_patterns = ( { name = \"\"; regex = \"x\"; } );\n",
               "dlp_patterns #1: name \"\" must be");
    load_fails("dlp_patterns = (\n { name = \"a\"; regex = \"x\"; },\n\n"
               " { name = \"a\"; regex = \"y\"; }\n);\n",
               "<config>:4: dlp_patterns \"a\": duplicate name (also entry #1)");
    load_fails("dlp_patterns = (\n { name = \"a\"; regex = \"x\";\n   flags = \"i\"; }\n);\n",
               "<config>:3: dlp_patterns #1: unknown key \"flags\"");
    load_fails("dlp_patterns = ( \"x\" );\n", "<config>:1: dlp_patterns #1: expected a group");
    load_fails("dlp_patterns = \"x\";\n", "<config>:1: dlp_patterns: expected a list");
    load_fails("dlp_patterns = ( { name = \"a\"; regex = \"(ab)\\\\1\"; } );\n",
               "dlp_patterns \"a\": back-references");
}
END_TEST

START_TEST(backrefs_in_brackets_are_literal)
{
    struct dlp *d = load("dlp_patterns = ( { name = \"a\"; regex = \"x[\\\\1]y\"; },\n"
                         "{ name = \"b\"; regex = \"[]\\\\2[:alpha:]]+\"; },\n"
                         "{ name = \"c\"; regex = \"\\\\(\\\\.\"; } );\n");

    ck_assert_msg(d != NULL, "%s", err);
    ck_assert_uint_eq(dlp_scan(d, "x1y", 3, NULL, 0, NULL, 0, MAX_DECODED),
                      POLICY_DLP_CUSTOM(0) | POLICY_DLP_CUSTOM(1));
    ck_assert_uint_eq(dlp_scan(d, "(.", 2, NULL, 0, NULL, 0, MAX_DECODED), POLICY_DLP_CUSTOM(2));
    done(d);
}
END_TEST

/* dlp_patterns with n entries p0, p1, ..., entry i on line i + 2. */
static void
many_patterns(char *text, size_t size, int n)
{
    size_t off = (size_t)snprintf(text, size, "dlp_patterns = (\n");

    for (int i = 0; i < n; i++)
        off += (size_t)snprintf(text + off, size - off, "{ name = \"p%d\"; regex = \"P%d\"; }%s\n",
                                i, i, i + 1 < n ? "," : "");
    snprintf(text + off, size - off, ");\n");
}

START_TEST(too_many_patterns)
{
    char text[4096];
    struct dlp *d;

    many_patterns(text, sizeof(text), POLICY_DLP_CUSTOM_MAX);
    d = load(text);
    ck_assert_msg(d != NULL, "%s", err);
    ck_assert_uint_eq(POLICY_DLP_CUSTOM_FIRST + POLICY_DLP_CUSTOM_MAX, 32);
    ck_assert_str_eq(dlp_kind_name(POLICY_DLP_CUSTOM_FIRST + 25, d), "custom:p25");
    ck_assert_uint_eq(dlp_scan(d, "P25", 3, NULL, 0, NULL, 0, MAX_DECODED),
                      POLICY_DLP_CUSTOM(25) | POLICY_DLP_CUSTOM(2));
    done(d);
    many_patterns(text, sizeof(text), POLICY_DLP_CUSTOM_MAX + 1);
    load_fails(text, "<config>:28: dlp_patterns: more than 26 patterns");
}
END_TEST

START_TEST(errors_name_the_file)
{
    char path[] = "/tmp/test_dlp_XXXXXX";
    int fd = mkstemp(path);
    const char text[] = "# patterns\ndlp_patterns = (\n  { name = \"x\"; regex = \"(\"; }\n);\n";
    struct dlp *d;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    close(fd);
    config_init(&cfg);
    ck_assert_int_eq(config_read_file(&cfg, path), CONFIG_TRUE);
    d = dlp_load(config_lookup(&cfg, "dlp_patterns"), err, sizeof(err));
    unlink(path);
    ck_assert_ptr_null(d);
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0 &&
                      strncmp(err + strlen(path), ":3: ", 4) == 0,
                  "%s", err);
    config_destroy(&cfg);
}
END_TEST

Suite *dlp_suite(void);

Suite *
dlp_suite(void)
{
    Suite *s = suite_create("dlp");
    TCase *t = tcase_create("core");

    tcase_add_test(t, rrn_forms);
    tcase_add_test(t, card_forms);
    tcase_add_test(t, card_groups_longer_than_a_card);
    tcase_add_test(t, email_forms);
    tcase_add_test(t, phone_forms);
    tcase_add_test(t, api_key_forms);
    tcase_add_test(t, private_key_forms);
    tcase_add_test(t, secrets_everywhere);
    tcase_add_test(t, secrets_quiet_on_prose);
    tcase_add_test(t, secrets_linear);
    tcase_add_test(t, several_kinds);
    tcase_add_test(t, found_at_every_offset);
    tcase_add_test(t, json_escapes);
    tcase_add_test(t, form_encoding);
    tcase_add_test(t, multipart_as_is);
    tcase_add_test(t, content_encoding);
    tcase_add_test(t, damaged_streams);
    tcase_add_test(t, gzip_bomb_is_bounded);
    tcase_add_test(t, custom_patterns);
    tcase_add_test(t, kind_names);
    tcase_add_test(t, no_patterns);
    tcase_add_test(t, load_errors);
    tcase_add_test(t, regex_too_big);
    tcase_add_test(t, backrefs_in_brackets_are_literal);
    tcase_add_test(t, too_many_patterns);
    tcase_add_test(t, errors_name_the_file);
    suite_add_tcase(s, t);
    return s;
}
