/*
 * SipHash-2-4 (hash.h), written from the paper's definition: the key k0, k1
 * initialises four 64-bit words v0..v3 from the constants "somepseudorandom
 * lygenera tedbytes"; each 8-byte little-endian message word m is absorbed as
 * v3 ^= m, two SipRounds, v0 ^= m; the last word carries the length mod 256
 * in its top byte; finalisation is v2 ^= 0xff and four SipRounds, and the
 * result v0 ^ v1 ^ v2 ^ v3.
 */
#include "aigate/core/hash.h"

#include <endian.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static uint8_t hash_key[HASH_KEY_LEN];
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static inline uint64_t
hash_rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t
hash_le64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static inline void
hash_sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = hash_rotl(v[1], 13) ^ v[0];
    v[0] = hash_rotl(v[0], 32);
    v[2] += v[3];
    v[3] = hash_rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = hash_rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = hash_rotl(v[1], 17) ^ v[2];
    v[2] = hash_rotl(v[2], 32);
}

static inline void
hash_absorb(uint64_t v[4], uint64_t m)
{
    v[3] ^= m;
    hash_sipround(v);
    hash_sipround(v);
    v[0] ^= m;
}

uint64_t
hash_siphash24(const uint8_t key[HASH_KEY_LEN], const void *in, size_t len)
{
    const uint8_t *p = in;
    uint64_t k0 = hash_le64(key), k1 = hash_le64(key + 8);
    uint64_t v[4] = {k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
                     k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL};
    size_t full = len & ~(size_t)7;
    uint64_t last = (uint64_t)(len & 0xff) << 56;

    for (size_t i = 0; i < full; i += 8)
        hash_absorb(v, hash_le64(p + i));
    for (size_t j = 0; j < (len & 7); j++)
        last |= (uint64_t)p[full + j] << (8 * j);
    hash_absorb(v, last);
    v[2] ^= 0xff;
    for (int r = 0; r < 4; r++)
        hash_sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static void
hash_seed(void)
{
    if (RAND_bytes(hash_key, sizeof(hash_key)) == 1)
        return;
    if (getrandom(hash_key, sizeof(hash_key), 0) == (ssize_t)sizeof(hash_key))
        return;
    abort();
}

uint64_t
hash_bytes(const void *in, size_t len)
{
    pthread_once(&hash_once, hash_seed);
    return hash_siphash24(hash_key, in, len);
}
