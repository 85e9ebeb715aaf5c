/*
 * TLS interception: the CA, leaf minting, the per-worker leaf cache, and the
 * client and origin SSL objects (see tls_mitm.h for the contract).
 *
 * Design, after sslsplit: one leaf key pair is made when the CA is loaded and
 * every minted certificate carries it, so a miss costs one signature and no key
 * generation, and a hit costs nothing but reference counts.  A cached leaf is
 * re-minted half-way through its 30 days, so a long-running worker never
 * serves an expired one.  The extensions that are the same
 * for every leaf (basicConstraints, keyUsage, EKU, AKI) are built once at load
 * and copied in.  The leaf cache stores certificates, not SSL_CTXs (an OpenSSL 3
 * SSL_CTX is large and slow to make): each cache owns one server SSL_CTX and
 * each SSL gets its leaf, key and chain set on it directly.
 *
 * Invariants: a struct tls_ca never changes after tls_ca_load() (its X509
 * extension caches are filled at load, so concurrent readers never write);
 * a cache is touched by one thread only; a cache entry is on the hash chain
 * of its bucket and on the LRU list, or freed.
 */
#include "aigate/tls/tls_mitm.h"
#include "aigate/core/hash.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "aigate/core/log.h"

#define TLS_CA_CN "aigate interception CA"
#define TLS_CA_O "aigate"
#define TLS_CA_DAYS 3650
#define TLS_LEAF_BACKDATE_S 3600
#define TLS_LEAF_LIFETIME_S (30L * 24 * 3600)
#define TLS_HOST_MAX 253
#define TLS_CN_MAX 64 /* ub-common-name (RFC 5280) */
#define TLS_SESS_CACHE 2048
/* Forward-secret AEAD/CBC suites for TLS 1.2. */
#define TLS_CIPHERS "HIGH:!aNULL:!kRSA:!PSK:!SRP:!MD5:!RC4:!3DES:!CAMELLIA:!ARIA"
/*
 * TLS 1.3: OpenSSL's three suites, AES-128-GCM first (as browsers and
 * Mozilla's recommended server configuration order them).  Every byte of an
 * intercepted connection is decrypted and encrypted again on one core; with
 * 10 AES rounds instead of 14 a 100 MiB download costs the proxy ~15% less.
 */
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

static const unsigned char tls_alpn_http11[] = "\x08http/1.1";

struct tls_ca {
    atomic_int refs;
    X509 *cert;
    EVP_PKEY *key;
    EVP_PKEY *leaf_key;
    X509_EXTENSION *leaf_exts[4]; /* basicConstraints, keyUsage, EKU, AKI */
};

struct tls_leaf {
    char *host;
    uint64_t hash;
    X509 *cert;
    time_t refresh_at;            /* re-mint from then on; 0: never (capped by the CA) */
    struct tls_leaf *hnext;       /* bucket chain */
    struct tls_leaf *prev, *next; /* LRU list, most recent first */
};

struct tls_leaf_cache {
    struct tls_ca *ca;
    SSL_CTX *ctx;
    size_t capacity, count, nbuckets; /* nbuckets: power of two */
    struct tls_leaf **buckets;
    struct tls_leaf *head, *tail;
    uint64_t hits, misses;
};

const char *
tls_last_error(void)
{
    static _Thread_local char buf[256];
    unsigned long e = ERR_get_error();

    ERR_clear_error();
    if (e == 0)
        return "unknown TLS error";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

/*
 * Normalise a host for minting and lookup: strip IPv6 brackets and one
 * trailing dot, lower-case, and accept only what can appear in a DNS name
 * (letters, digits, '-', '_', non-empty labels) or an IP literal.  Anything else
 * (commas, spaces, '*', '/') is refused so it can never reach a certificate.
 */
static int
tls_host_norm(const char *host, char *out, size_t outlen, int *is_ip)
{
    unsigned char addr[16];
    size_t len = host ? strlen(host) : 0;
    size_t i;

    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    } else if (len > 1 && host[len - 1] == '.') {
        len--;
    }
    if (len == 0 || len > TLS_HOST_MAX || len >= outlen)
        return -1;
    for (i = 0; i < len; i++) {
        char c = host[i];

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        out[i] = c;
    }
    out[len] = '\0';
    if (inet_pton(AF_INET, out, addr) == 1 || inet_pton(AF_INET6, out, addr) == 1) {
        *is_ip = 1;
        return 0;
    }
    *is_ip = 0;
    for (i = 0; i < len; i++) {
        char c = out[i];

        if (c == '.') {
            if (i == 0 || out[i - 1] == '.')
                return -1;
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            return -1;
        }
    }
    return 0;
}

static int
tls_rand_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = 0;

    /* 128 random bits, never zero: positive, at most 17 DER octets. */
    if (bn != NULL && BN_rand(bn, 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ODD) == 1)
        ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

static int
tls_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return -1;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static EVP_PKEY *
tls_keygen(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* Write a memory BIO to a new file, failing if the file exists; mode is forced. */
static int
tls_write_new(const char *path, mode_t mode, BIO *mem, char *err, size_t errlen)
{
    char *data;
    long len = BIO_get_mem_data(mem, &data);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    size_t off = 0;

    if (fd < 0) {
        snprintf(err, errlen, "%s: %s%s", path, strerror(errno),
                 errno == EEXIST ? "; refusing to overwrite" : "");
        return -1;
    }
    if (fchmod(fd, mode) < 0)
        goto fail;
    while (off < (size_t)len) {
        ssize_t n = write(fd, data + off, (size_t)len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        off += (size_t)n;
    }
    if (fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(path);
    return -1;
}

static X509 *
tls_make_ca_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *name;

    if (x == NULL || !X509_set_version(x, X509_VERSION_3) || tls_rand_serial(x) < 0)
        goto fail;
    name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)TLS_CA_O, -1,
                                    -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)TLS_CA_CN, -1,
                                    -1, 0) ||
        !X509_set_issuer_name(x, name))
        goto fail;
    if (X509_gmtime_adj(X509_getm_notBefore(x), -24L * 3600) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), TLS_CA_DAYS, 0, NULL) == NULL ||
        !X509_set_pubkey(x, key))
        goto fail;
    if (tls_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
        tls_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        tls_add_ext(x, x, NID_subject_key_identifier, "hash") < 0 ||
        tls_add_ext(x, x, NID_authority_key_identifier, "keyid:always") < 0)
        goto fail;
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

int
tls_gen_ca(const char *dir, char *err, size_t errlen)
{
    char certpath[4096], keypath[4096];
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIO *kmem = NULL, *cmem = NULL;
    struct stat st;
    int rc = -1;

    if (snprintf(certpath, sizeof(certpath), "%s/ca.pem", dir) >= (int)sizeof(certpath) ||
        snprintf(keypath, sizeof(keypath), "%s/ca.key", dir) >= (int)sizeof(keypath)) {
        snprintf(err, errlen, "%s: path too long", dir);
        return -1;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (lstat(certpath, &st) == 0) {
        snprintf(err, errlen, "%s: already exists; refusing to overwrite", certpath);
        return -1;
    }
    if ((key = tls_keygen()) == NULL || (cert = tls_make_ca_cert(key)) == NULL) {
        snprintf(err, errlen, "cannot make CA: %s", tls_last_error());
        goto done;
    }
    kmem = BIO_new(BIO_s_secmem()); /* cleared when freed */
    cmem = BIO_new(BIO_s_mem());
    if (kmem == NULL || cmem == NULL ||
        !PEM_write_bio_PrivateKey(kmem, key, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_X509(cmem, cert)) {
        snprintf(err, errlen, "cannot encode CA: %s", tls_last_error());
        goto done;
    }
    /* The key first, with O_EXCL: that is what must never be clobbered. */
    if (tls_write_new(keypath, 0600, kmem, err, errlen) < 0)
        goto done;
    if (tls_write_new(certpath, 0644, cmem, err, errlen) < 0) {
        unlink(keypath);
        goto done;
    }
    rc = 0;
done:
    BIO_free(kmem);
    BIO_free(cmem);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/* PEM passphrase callback: never prompt on a terminal, refuse encrypted keys. */
static int
tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static X509 *
tls_read_cert(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    X509 *x;

    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot read certificate: %s", path, strerror(errno));
        return NULL;
    }
    x = PEM_read_X509(f, NULL, tls_no_passphrase, NULL);
    fclose(f);
    if (x == NULL)
        snprintf(err, errlen, "%s: cannot read certificate: %s", path, tls_last_error());
    return x;
}

static EVP_PKEY *
tls_read_key(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    EVP_PKEY *k;
    struct stat st;

    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot read private key: %s", path, strerror(errno));
        return NULL;
    }
    k = PEM_read_PrivateKey(f, NULL, tls_no_passphrase, NULL);
    if (k == NULL)
        snprintf(err, errlen, "%s: cannot read private key (encrypted keys are not supported): %s",
                 path, tls_last_error());
    else if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0)
        log_warnx("%s: private key is accessible by group or others (mode %04o); chmod 600 it",
                  path, (unsigned)(st.st_mode & 07777));
    fclose(f);
    return k;
}

/* The extensions every leaf carries, built once against the CA certificate. */
static int
tls_ca_build_exts(struct tls_ca *ca)
{
    static const struct {
        int nid;
        const char *value;
    } spec[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_authority_key_identifier, "keyid,issuer"},
    };
    X509V3_CTX v3;
    size_t i;

    X509V3_set_ctx(&v3, ca->cert, NULL, NULL, NULL, 0);
    for (i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
        ca->leaf_exts[i] = X509V3_EXT_conf_nid(NULL, &v3, spec[i].nid, spec[i].value);
        if (ca->leaf_exts[i] == NULL)
            return -1;
    }
    return 0;
}

struct tls_ca *
tls_ca_load(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    struct tls_ca *ca = calloc(1, sizeof(*ca));
    time_t soon = time(NULL) + TLS_LEAF_LIFETIME_S;

    if (ca == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&ca->refs, 1);
    if ((ca->cert = tls_read_cert(cert_file, err, errlen)) == NULL ||
        (ca->key = tls_read_key(key_file, err, errlen)) == NULL)
        goto fail;
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "%s does not match %s", key_file, cert_file);
        goto fail;
    }
    /* Also fills the certificate's extension cache, so later use is read-only. */
    if (X509_check_ca(ca->cert) == 0) {
        snprintf(err, errlen, "%s: not a CA certificate (needs CA:TRUE and keyCertSign)",
                 cert_file);
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(ca->cert)) <= 0) {
        snprintf(err, errlen, "%s: certificate has expired; generate a new CA", cert_file);
        goto fail;
    }
    if (X509_cmp_time(X509_get0_notAfter(ca->cert), &soon) < 0)
        log_warnx("%s: the interception CA expires within 30 days; generate a new one and "
                  "distribute it (certs/README.md)",
                  cert_file);
    if ((ca->leaf_key = tls_keygen()) == NULL || tls_ca_build_exts(ca) < 0) {
        snprintf(err, errlen, "%s: cannot prepare leaf certificates: %s", cert_file,
                 tls_last_error());
        goto fail;
    }
    return ca;
fail:
    tls_ca_unref(ca);
    return NULL;
}

struct tls_ca *
tls_ca_ref(struct tls_ca *ca)
{
    if (ca != NULL)
        atomic_fetch_add_explicit(&ca->refs, 1, memory_order_relaxed);
    return ca;
}

void
tls_ca_unref(struct tls_ca *ca)
{
    size_t i;

    if (ca == NULL || atomic_fetch_sub_explicit(&ca->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (i = 0; i < sizeof(ca->leaf_exts) / sizeof(ca->leaf_exts[0]); i++)
        X509_EXTENSION_free(ca->leaf_exts[i]);
    EVP_PKEY_free(ca->leaf_key);
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    free(ca);
}

static int
tls_add_san(X509 *x, const char *host, int is_ip)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gen = GENERAL_NAME_new();
    int ok = 0;

    if (gens == NULL || gen == NULL)
        goto done;
    if (is_ip) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);

        if (ip == NULL)
            goto done;
        GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
    } else {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();

        if (dns == NULL || !ASN1_STRING_set(dns, host, -1)) {
            ASN1_IA5STRING_free(dns);
            goto done;
        }
        GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
    }
    if (!sk_GENERAL_NAME_push(gens, gen))
        goto done;
    gen = NULL;
    ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
done:
    GENERAL_NAME_free(gen);
    GENERAL_NAMES_free(gens);
    return ok ? 0 : -1;
}

/*
 * Mint the leaf for a normalised host: one signature with the CA key.  A
 * cached leaf is re-minted half-way through its life (*refresh_at), unless the
 * CA's own expiry capped it and a new one could not live longer.
 */
static X509 *
tls_mint(const struct tls_ca *ca, const char *host, int is_ip, time_t *refresh_at)
{
    X509 *x = X509_new();
    time_t now = time(NULL), end = now + TLS_LEAF_LIFETIME_S;
    size_t i;

    *refresh_at = 0;

    if (x == NULL || !X509_set_version(x, X509_VERSION_3) || tls_rand_serial(x) < 0)
        goto fail;
    if (strlen(host) <= TLS_CN_MAX &&
        !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                    (const unsigned char *)host, -1, -1, 0))
        goto fail;
    if (!X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
        X509_time_adj_ex(X509_getm_notBefore(x), 0, -TLS_LEAF_BACKDATE_S, &now) == NULL)
        goto fail;
    if (X509_cmp_time(X509_get0_notAfter(ca->cert), &end) < 0) {
        if (!X509_set1_notAfter(x, X509_get0_notAfter(ca->cert)))
            goto fail;
    } else if (X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &end) == NULL) {
        goto fail;
    } else {
        *refresh_at = now + TLS_LEAF_LIFETIME_S / 2;
    }
    if (!X509_set_pubkey(x, ca->leaf_key) || tls_add_san(x, host, is_ip) < 0)
        goto fail;
    for (i = 0; i < sizeof(ca->leaf_exts) / sizeof(ca->leaf_exts[0]); i++)
        if (!X509_add_ext(x, ca->leaf_exts[i], -1))
            goto fail;
    if (X509_sign(x, ca->key, EVP_sha256()) <= 0)
        goto fail;
    return x;
fail:
    log_warnx("tls: cannot mint a certificate for %s: %s", host, tls_last_error());
    X509_free(x);
    return NULL;
}

/* Offer nothing but HTTP/1.1: a client offering only h2 gets no ALPN at all. */
static int
tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                unsigned int inlen, void *arg)
{
    unsigned char *sel;

    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, tls_alpn_http11, sizeof(tls_alpn_http11) - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int
tls_ctx_common(SSL_CTX *ctx)
{
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle connections give their record buffers back (memory per idle connection). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS) || !SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES))
        return -1;
    return 0;
}

struct tls_leaf_cache *
tls_leaf_cache_new(struct tls_ca *ca, size_t capacity)
{
    struct tls_leaf_cache *lc = calloc(1, sizeof(*lc));

    if (lc == NULL)
        return NULL;
    lc->capacity = capacity;
    for (lc->nbuckets = 16; lc->nbuckets < capacity; lc->nbuckets <<= 1)
        ;
    lc->buckets = calloc(lc->nbuckets, sizeof(*lc->buckets));
    if (lc->buckets == NULL)
        goto fail;
    lc->ctx = SSL_CTX_new(TLS_server_method());
    if (lc->ctx == NULL || tls_ctx_common(lc->ctx) < 0)
        goto fail;
    SSL_CTX_set_alpn_select_cb(lc->ctx, tls_alpn_select, NULL);
    SSL_CTX_sess_set_cache_size(lc->ctx, TLS_SESS_CACHE);
    lc->ca = tls_ca_ref(ca);
    return lc;
fail:
    log_warnx("tls: cannot create leaf cache: %s", tls_last_error());
    tls_leaf_cache_free(lc);
    return NULL;
}

static void
tls_leaf_free(struct tls_leaf *e)
{
    X509_free(e->cert);
    free(e->host);
    free(e);
}

void
tls_leaf_cache_free(struct tls_leaf_cache *lc)
{
    struct tls_leaf *e, *next;

    if (lc == NULL)
        return;
    for (e = lc->head; e != NULL; e = next) {
        next = e->next;
        tls_leaf_free(e);
    }
    free(lc->buckets);
    SSL_CTX_free(lc->ctx);
    tls_ca_unref(lc->ca);
    free(lc);
}

struct tls_ca *
tls_leaf_cache_ca(const struct tls_leaf_cache *lc)
{
    return lc->ca;
}

void
tls_leaf_cache_stats(const struct tls_leaf_cache *lc, uint64_t *hits, uint64_t *misses)
{
    *hits = lc->hits;
    *misses = lc->misses;
}

size_t
tls_leaf_cache_size(const struct tls_leaf_cache *lc)
{
    return lc->count;
}

/* Hosts come from clients: keyed hash (hash.h). */
static uint64_t
tls_hash(const char *s)
{
    return hash_bytes(s, strlen(s));
}

static void
tls_lru_unlink(struct tls_leaf_cache *lc, struct tls_leaf *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        lc->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        lc->tail = e->prev;
    e->prev = e->next = NULL;
}

static void
tls_lru_push(struct tls_leaf_cache *lc, struct tls_leaf *e)
{
    e->prev = NULL;
    e->next = lc->head;
    if (lc->head != NULL)
        lc->head->prev = e;
    else
        lc->tail = e;
    lc->head = e;
}

static void
tls_cache_evict_tail(struct tls_leaf_cache *lc)
{
    struct tls_leaf *e = lc->tail, **pp;

    for (pp = &lc->buckets[e->hash & (lc->nbuckets - 1)]; *pp != e; pp = &(*pp)->hnext)
        ;
    *pp = e->hnext;
    tls_lru_unlink(lc, e);
    tls_leaf_free(e);
    lc->count--;
}

/*
 * The leaf for a normalised host: borrowed from the cache (*owned = 0), or a
 * new reference the caller must free when it could not be cached (*owned = 1).
 */
static X509 *
tls_cache_get(struct tls_leaf_cache *lc, const char *host, int is_ip, int *owned)
{
    uint64_t h = tls_hash(host);
    struct tls_leaf *e;
    time_t refresh_at;
    X509 *x;

    *owned = 0;
    for (e = lc->buckets[h & (lc->nbuckets - 1)]; e != NULL; e = e->hnext)
        if (e->hash == h && strcmp(e->host, host) == 0)
            break;
    if (e != NULL && (e->refresh_at == 0 || time(NULL) < e->refresh_at)) {
        lc->hits++;
        if (e != lc->head) {
            tls_lru_unlink(lc, e);
            tls_lru_push(lc, e);
        }
        return e->cert;
    }
    lc->misses++;
    if ((x = tls_mint(lc->ca, host, is_ip, &refresh_at)) == NULL)
        return NULL;
    if (e != NULL) { /* stale: replace in place */
        X509_free(e->cert);
        e->cert = x;
        e->refresh_at = refresh_at;
        if (e != lc->head) {
            tls_lru_unlink(lc, e);
            tls_lru_push(lc, e);
        }
        return x;
    }
    e = lc->capacity > 0 ? calloc(1, sizeof(*e)) : NULL;
    if (e == NULL || (e->host = strdup(host)) == NULL) {
        /* Not cached (capacity 0 or no memory): the caller drops it after use. */
        free(e);
        *owned = 1;
        return x;
    }
    if (lc->count == lc->capacity)
        tls_cache_evict_tail(lc);
    e->hash = h;
    e->cert = x;
    e->refresh_at = refresh_at;
    e->hnext = lc->buckets[h & (lc->nbuckets - 1)];
    lc->buckets[h & (lc->nbuckets - 1)] = e;
    tls_lru_push(lc, e);
    lc->count++;
    return x;
}

SSL *
tls_server_ssl(struct tls_leaf_cache *lc, const char *host)
{
    char norm[TLS_HOST_MAX + 1];
    int is_ip, owned;
    X509 *leaf;
    SSL *ssl;

    if (tls_host_norm(host, norm, sizeof(norm), &is_ip) < 0) {
        log_warnx("tls: refusing to mint a certificate for an invalid host name");
        return NULL;
    }
    if ((leaf = tls_cache_get(lc, norm, is_ip, &owned)) == NULL)
        return NULL;
    ssl = SSL_new(lc->ctx);
    if (ssl == NULL || !SSL_use_certificate(ssl, leaf) ||
        !SSL_use_PrivateKey(ssl, lc->ca->leaf_key) || !SSL_add1_chain_cert(ssl, lc->ca->cert)) {
        log_warnx("tls: cannot set up the client-side TLS for %s: %s", norm, tls_last_error());
        SSL_free(ssl);
        ssl = NULL;
    } else {
        SSL_set_accept_state(ssl);
    }
    if (owned)
        X509_free(leaf);
    return ssl;
}

SSL_CTX *
tls_client_ctx_new(const char *upstream_ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL || tls_ctx_common(ctx) < 0) {
        snprintf(err, errlen, "cannot create TLS client context: %s", tls_last_error());
        goto fail;
    }
    if (upstream_ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, upstream_ca_file, NULL) != 1) {
            snprintf(err, errlen, "%s: cannot load CA certificates: %s", upstream_ca_file,
                     tls_last_error());
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "cannot load the default CA certificates: %s", tls_last_error());
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* SSL_CTX_set_alpn_protos returns 0 on success. */
    if (SSL_CTX_set_alpn_protos(ctx, tls_alpn_http11, sizeof(tls_alpn_http11) - 1) != 0) {
        snprintf(err, errlen, "cannot set ALPN: %s", tls_last_error());
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL *
tls_client_ssl(SSL_CTX *ctx, const char *host)
{
    char norm[TLS_HOST_MAX + 1];
    int is_ip;
    SSL *ssl;

    if (tls_host_norm(host, norm, sizeof(norm), &is_ip) < 0) {
        log_warnx("tls: invalid origin host name");
        return NULL;
    }
    if ((ssl = SSL_new(ctx)) == NULL)
        goto fail;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (is_ip) {
        if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), norm))
            goto fail;
    } else if (!SSL_set_tlsext_host_name(ssl, norm) || !SSL_set1_host(ssl, norm)) {
        goto fail;
    }
    SSL_set_connect_state(ssl);
    return ssl;
fail:
    log_warnx("tls: cannot set up TLS to %s: %s", norm, tls_last_error());
    SSL_free(ssl);
    return NULL;
}

const char *
tls_verify_error(const SSL *ssl)
{
    long r = SSL_get_verify_result(ssl);

    return r == X509_V_OK ? NULL : X509_verify_cert_error_string(r);
}
