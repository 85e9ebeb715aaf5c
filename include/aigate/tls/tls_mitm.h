/*
 * TLS interception building blocks (pure OpenSSL 3, no sockets, no event loop):
 *
 *  - the interception CA: tls_gen_ca() writes one, tls_ca_load() reads one.  A
 *    loaded struct tls_ca also holds the single ECDSA P-256 key pair that every
 *    minted leaf certificate uses (made at load, as sslsplit does), so minting
 *    costs one signature and no key generation.  Immutable after load and
 *    refcounted, so many worker threads may share it.
 *  - a per-worker leaf cache (single-threaded, no locks): a bounded LRU of leaf
 *    certificates keyed by the lower-case host; tls_server_ssl() hands out the
 *    client-facing SSL with the leaf for that host, minting it on a miss.
 *  - the origin side: a client SSL_CTX that verifies origins against the
 *    configured trust store, and tls_client_ssl() with SNI and host name checks.
 *
 * Both sides speak TLS 1.2+ and only ever negotiate ALPN "http/1.1" (never h2:
 * the proxy's pipeline is HTTP/1.1).  Returned SSL objects are fresh and owned
 * by the caller (or by libevent once handed to bufferevent_openssl_*_new() with
 * BEV_OPT_CLOSE_ON_FREE); they hold their own references to certificates, keys
 * and contexts, so freeing a cache or a CA while connections are open is safe.
 */
#ifndef AIGATE_TLS_MITM_H
#define AIGATE_TLS_MITM_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

struct tls_ca;
struct tls_leaf_cache;

/*
 * Create DIR/ca.pem and DIR/ca.key (mode 0600) holding a new interception CA:
 * ECDSA P-256, CN "aigate interception CA", O "aigate", valid from one day ago
 * for ten years, basicConstraints critical CA:TRUE pathlen:0, keyUsage critical
 * keyCertSign,cRLSign, subjectKeyIdentifier, random 128-bit serial.  DIR is
 * created (0755) if missing.  Existing files are never overwritten.
 * Returns 0, or -1 with err filled.
 */
int tls_gen_ca(const char *dir, char *err, size_t errlen);

/*
 * Load a CA certificate and its private key (PEM; an encrypted key is refused,
 * never prompted for).  Checks that the certificate is a CA, has not expired
 * and matches the key; warns if the key file is accessible by group or others.
 * Returns a CA with one reference, or NULL with err filled, e.g.
 * "certs/ca.pem: cannot read certificate: No such file or directory".
 */
struct tls_ca *tls_ca_load(const char *cert_file, const char *key_file, char *err, size_t errlen);
struct tls_ca *tls_ca_ref(struct tls_ca *ca);
void tls_ca_unref(struct tls_ca *ca);

/*
 * A leaf cache for one worker thread, holding its own reference to ca.
 * capacity 0 disables caching (every tls_server_ssl() mints).
 */
struct tls_leaf_cache *tls_leaf_cache_new(struct tls_ca *ca, size_t capacity);
void tls_leaf_cache_free(struct tls_leaf_cache *lc);
/* The CA the cache mints with (borrowed), to notice a CA change on reload. */
struct tls_ca *tls_leaf_cache_ca(const struct tls_leaf_cache *lc);
void tls_leaf_cache_stats(const struct tls_leaf_cache *lc, uint64_t *hits, uint64_t *misses);
size_t tls_leaf_cache_size(const struct tls_leaf_cache *lc);

/*
 * A new server-side SSL (accept state set) presenting a certificate for host:
 * a DNS name or an IP literal (IPv6 with or without brackets), no port; case
 * and a trailing dot are ignored.  The leaf has SAN DNS:host (IP:host for
 * literals), CN=host, validity now-1h .. now+30 days capped by the CA's
 * notAfter, keyUsage digitalSignature, EKU serverAuth, AKI, and is sent with
 * the CA as its chain.  A cache hit costs no signing.  Returns NULL on failure
 * (logged), including a host that is not a plausible name or address.
 */
SSL *tls_server_ssl(struct tls_leaf_cache *lc, const char *host);

/*
 * A context for connections to origins: peers are verified against
 * upstream_ca_file (NULL: OpenSSL's default trust store), TLS 1.2+, ALPN
 * "http/1.1".  Returns NULL with err filled.  Free with SSL_CTX_free().
 */
SSL_CTX *tls_client_ctx_new(const char *upstream_ca_file, char *err, size_t errlen);

/*
 * A new client-side SSL (connect state set) for host (same forms as above):
 * SNI for names (not for IP literals) and name/address verification, so an
 * origin certificate for another name, expired or untrusted fails the
 * handshake.  Returns NULL on failure (logged).
 */
SSL *tls_client_ssl(SSL_CTX *ctx, const char *host);

/* Why the origin's certificate was rejected ("certificate has expired"), or NULL. */
const char *tls_verify_error(const SSL *ssl);

/*
 * The oldest queued OpenSSL error of this thread as text (the queue is then
 * cleared), or "unknown TLS error".  The string lives until the thread's next call.
 */
const char *tls_last_error(void);

#endif
