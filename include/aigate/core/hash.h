/*
 * One keyed hash for every hash table: SipHash-2-4 (Aumasson and Bernstein,
 * "SipHash: a fast short-input PRF", INDOCRYPT 2012) under a key drawn at
 * random once per process.  Table keys come from clients (host names, user
 * names, addresses, upstream host:port): with a secret key nobody can aim
 * many keys at one bucket.  Hash values differ from run to run; never store
 * them or send them anywhere.
 */
#ifndef AIGATE_HASH_H
#define AIGATE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_KEY_LEN 16

/*
 * SipHash-2-4 of in[0..len) under key (16 bytes, read as two little-endian
 * 64-bit words as in the paper).  Pure; for tests and for keys of one's own.
 */
uint64_t hash_siphash24(const uint8_t key[HASH_KEY_LEN], const void *in, size_t len);

/*
 * SipHash-2-4 of in[0..len) under the process key.  The key is drawn on the
 * first call of any thread (OpenSSL RAND_bytes, else getrandom(2)); if the
 * system has no randomness at all the process aborts rather than hash with a
 * key an attacker could know.  Thread-safe, no allocation.
 */
uint64_t hash_bytes(const void *in, size_t len);

#endif
