/*
 * SipHash-2-4 against the reference vectors of the paper's implementation
 * (key 00..0f, message 00 01 02 ... of length 0..63), and the process key.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigate/core/hash.h"

/* vectors_sip64[len] of the SipHash reference code, as little-endian words. */
static const struct {
    size_t len;
    uint64_t want;
} vectors[] = {
    {0, 0x726fdb47dd0e0e31ULL},  {1, 0x74f839c593dc67fdULL},  {2, 0x0d6c8009d9a94f5aULL},
    {3, 0x85676696d7fb7e2dULL},  {7, 0xab0200f58b01d137ULL},  {8, 0x93f5f5799a932462ULL},
    {9, 0x9e0082df0ba9e4b0ULL},  {15, 0xa129ca6149be45e5ULL}, {16, 0x3f2acc7f57c29bdbULL},
    {31, 0x32d892fad841c342ULL}, {32, 0x7127512f72f27cceULL}, {63, 0x958a324ceb064572ULL},
};

START_TEST(reference_vectors)
{
    uint8_t key[HASH_KEY_LEN], msg[64];

    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
        ck_assert_msg(hash_siphash24(key, msg, vectors[i].len) == vectors[i].want,
                      "length %zu: %016llx, want %016llx", vectors[i].len,
                      (unsigned long long)hash_siphash24(key, msg, vectors[i].len),
                      (unsigned long long)vectors[i].want);
}
END_TEST

START_TEST(unaligned_input)
{
    uint8_t key[HASH_KEY_LEN] = {0}, buf[80];

    for (int i = 0; i < 80; i++)
        buf[i] = (uint8_t)(i * 7);
    for (size_t off = 1; off < 8; off++) {
        uint8_t copy[64];

        memcpy(copy, buf + off, 40);
        ck_assert(hash_siphash24(key, buf + off, 40) == hash_siphash24(key, copy, 40));
    }
}
END_TEST

/* The process key is fixed for the process and not the zero key. */
START_TEST(process_key)
{
    static const char s[] = "chat.deepseek.com";
    uint8_t zero[HASH_KEY_LEN] = {0};
    uint64_t a = hash_bytes(s, strlen(s));

    ck_assert(a == hash_bytes(s, strlen(s)));
    ck_assert(a != hash_siphash24(zero, s, strlen(s)));
    ck_assert(hash_bytes("a", 1) != hash_bytes("b", 1));
    ck_assert(hash_bytes("", 0) == hash_bytes("", 0));
}
END_TEST

Suite *hash_suite(void);

Suite *
hash_suite(void)
{
    Suite *s = suite_create("hash");
    TCase *t = tcase_create("siphash");

    tcase_add_test(t, reference_vectors);
    tcase_add_test(t, unaligned_input);
    tcase_add_test(t, process_key);
    suite_add_tcase(s, t);
    return s;
}
