/*
 * TLS interception: CA generation and loading, leaf minting (verified with
 * X509_verify_cert), the LRU leaf cache, ALPN, and full in-memory handshakes
 * (BIO pairs) between tls_client_ssl() and tls_server_ssl(), including the
 * failures hostname verification and expiry must cause.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "aigate/tls/tls_mitm.h"

static char dir[64];
static char cert_path[128], key_path[128];
static char err[512];
static struct tls_ca *ca;

static void
path_in(char *out, size_t outlen, const char *name)
{
    snprintf(out, outlen, "%s/%s", dir, name);
}

static void
setup(void)
{
    strcpy(dir, "/tmp/aigate-tls-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    path_in(cert_path, sizeof(cert_path), "ca.pem");
    path_in(key_path, sizeof(key_path), "ca.key");
    ck_assert_msg(tls_gen_ca(dir, err, sizeof(err)) == 0, "%s", err);
    ca = tls_ca_load(cert_path, key_path, err, sizeof(err));
    ck_assert_msg(ca != NULL, "%s", err);
}

static void
teardown(void)
{
    static const char *const names[] = {"ca.pem",       "ca.key",       "short.pem",
                                        "other/ca.pem", "other/ca.key", "garbage.pem"};
    char p[128];
    size_t i;

    tls_ca_unref(ca);
    ca = NULL;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        path_in(p, sizeof(p), names[i]);
        unlink(p);
    }
    path_in(p, sizeof(p), "other");
    rmdir(p);
    rmdir(dir);
}

static X509 *
read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x;

    ck_assert_ptr_nonnull(f);
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert_ptr_nonnull(x);
    return x;
}

static EVP_PKEY *
read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k;

    ck_assert_ptr_nonnull(f);
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert_ptr_nonnull(k);
    return k;
}

static void
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    ck_assert_ptr_nonnull(ext);
    ck_assert_int_eq(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/*
 * A certificate built by hand: CN/SAN for a leaf (issuer given) or a CA
 * (issuer NULL: self-signed), valid from now+nb to now+na seconds.
 */
static X509 *
make_cert(EVP_PKEY *pub, X509 *issuer, EVP_PKEY *signer, long nb, long na, const char *host)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_get_subject_name(x);
    char san[300];

    ck_assert_int_eq(X509_set_version(x, X509_VERSION_3), 1);
    ck_assert_int_eq(ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL)), 1);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_gmtime_adj(X509_getm_notBefore(x), nb);
    X509_gmtime_adj(X509_getm_notAfter(x), na);
    X509_set_pubkey(x, pub);
    if (issuer != NULL) {
        snprintf(san, sizeof(san), "DNS:%s", host);
        add_ext(x, issuer, NID_subject_alt_name, san);
        add_ext(x, issuer, NID_ext_key_usage, "serverAuth");
    } else {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
        add_ext(x, x, NID_subject_key_identifier, "hash");
    }
    ck_assert_int_gt(X509_sign(x, signer, EVP_sha256()), 0);
    return x;
}

static void
write_cert(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(PEM_write_X509(f, x), 1);
    ck_assert_int_eq(fclose(f), 0);
}

static int
has_ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);

    ck_assert_int_ge(i, 0);
    return X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

/* Seconds from now to t (negative: in the past). */
static long
secs_from_now(const ASN1_TIME *t)
{
    int days, secs;

    ck_assert_int_eq(ASN1_TIME_diff(&days, &secs, NULL, t), 1);
    return days * 86400L + secs;
}

/* Drive both ends over a BIO pair until both finish or one fails: 0 or -1. */
static int
handshake(SSL *c, SSL *s)
{
    BIO *bc, *bs;
    int cdone = 0, sdone = 0, i;

    ck_assert_int_eq(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    for (i = 0; i < 64 && !(cdone && sdone); i++) {
        SSL *ends[2] = {c, s};
        int *done[2] = {&cdone, &sdone};
        int k;

        for (k = 0; k < 2; k++) {
            int r, e;

            if (*done[k])
                continue;
            r = SSL_do_handshake(ends[k]);
            if (r == 1) {
                *done[k] = 1;
                continue;
            }
            e = SSL_get_error(ends[k], r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                return -1;
            }
        }
    }
    return cdone && sdone ? 0 : -1;
}

static SSL_CTX *
client_ctx(const char *trust)
{
    SSL_CTX *ctx = tls_client_ctx_new(trust, err, sizeof(err));

    ck_assert_msg(ctx != NULL, "%s", err);
    return ctx;
}

START_TEST(gen_ca_files_and_fields)
{
    struct stat st;
    X509 *x = read_cert(cert_path);
    EVP_PKEY *k = read_key(key_path);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    char cn[64], o[64];
    const BIGNUM *bn;
    BIGNUM *serial;

    ck_assert_int_eq(stat(key_path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(stat(cert_path, &st), 0);
    ck_assert_int_eq(
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) > 0, 1);
    ck_assert_str_eq(cn, "aigate interception CA");
    ck_assert_int_gt(
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationName, o, sizeof(o)), 0);
    ck_assert_int_eq(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
    ck_assert_int_eq(X509_verify(x, pub), 1);
    ck_assert_int_eq(X509_check_private_key(x, k), 1);
    ck_assert(EVP_PKEY_is_a(pub, "EC"));
    ck_assert_int_eq(EVP_PKEY_get_bits(pub), 256);

    ck_assert_int_eq(X509_check_ca(x), 1);
    ck_assert_int_eq(X509_get_pathlen(x), 0);
    ck_assert_int_eq(has_ext_critical(x, NID_basic_constraints), 1);
    ck_assert_int_eq(has_ext_critical(x, NID_key_usage), 1);
    ck_assert_uint_eq(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    ck_assert_ptr_nonnull(X509_get0_subject_key_id(x));

    serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    bn = serial;
    ck_assert_int_gt(BN_num_bits(bn), 64);
    ck_assert_int_le(BN_num_bits(bn), 128);
    BN_free(serial);

    ck_assert_int_le(secs_from_now(X509_get0_notBefore(x)), -86400 + 60);
    ck_assert_int_ge(secs_from_now(X509_get0_notAfter(x)), 3649L * 86400);
    ck_assert_int_le(secs_from_now(X509_get0_notAfter(x)), 3651L * 86400);
    EVP_PKEY_free(k);
    X509_free(x);
}
END_TEST

static char *
slurp(const char *path)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");
    size_t n;

    ck_assert_ptr_nonnull(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

START_TEST(gen_ca_refuses_to_overwrite)
{
    char *key_before = slurp(key_path), *cert_before = slurp(cert_path);
    char *key_after, *cert_after, other[128];

    ck_assert_int_eq(tls_gen_ca(dir, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "refusing to overwrite") != NULL, "%s", err);
    /* Only the key left: still refused, and the key is untouched. */
    ck_assert_int_eq(unlink(cert_path), 0);
    ck_assert_int_eq(tls_gen_ca(dir, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "ca.key") != NULL && strstr(err, "refusing") != NULL, "%s", err);
    key_after = slurp(key_path);
    ck_assert_str_eq(key_before, key_after);
    ck_assert_int_ne(access(cert_path, F_OK), 0);
    free(key_before);
    free(key_after);

    /* A fresh directory (created on demand) gets a distinct CA. */
    path_in(other, sizeof(other), "other");
    ck_assert_msg(tls_gen_ca(other, err, sizeof(err)) == 0, "%s", err);
    path_in(other, sizeof(other), "other/ca.pem");
    cert_after = slurp(other);
    ck_assert_str_ne(cert_before, cert_after);
    free(cert_before);
    free(cert_after);
}
END_TEST

START_TEST(load_errors)
{
    char other_key[128], garbage[128], missing[128];
    FILE *f;
    struct tls_ca *c;

    path_in(missing, sizeof(missing), "nope.pem");
    c = tls_ca_load(missing, key_path, err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "nope.pem: cannot read certificate") != NULL, "%s", err);

    path_in(garbage, sizeof(garbage), "garbage.pem");
    f = fopen(garbage, "w");
    fputs("not a certificate\n", f);
    fclose(f);
    c = tls_ca_load(garbage, key_path, err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "garbage.pem: cannot read certificate") != NULL, "%s", err);
    c = tls_ca_load(cert_path, garbage, err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "garbage.pem: cannot read private key") != NULL, "%s", err);

    path_in(other_key, sizeof(other_key), "other");
    ck_assert_int_eq(tls_gen_ca(other_key, err, sizeof(err)), 0);
    path_in(other_key, sizeof(other_key), "other/ca.key");
    c = tls_ca_load(cert_path, other_key, err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "other/ca.key does not match") != NULL, "%s", err);
}
END_TEST

START_TEST(load_refuses_leaf_and_expired)
{
    EVP_PKEY *k = read_key(key_path);
    X509 *cax = read_cert(cert_path);
    X509 *x = make_cert(k, cax, k, -3600, 86400, "not-a-ca.example");
    char p[128];
    struct tls_ca *c;

    path_in(p, sizeof(p), "short.pem");
    write_cert(p, x);
    X509_free(x);
    c = tls_ca_load(p, key_path, err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "not a CA certificate") != NULL, "%s", err);

    x = make_cert(k, NULL, k, -7200, -3600, "old CA");
    unlink(p);
    write_cert(p, x);
    X509_free(x);
    c = tls_ca_load(p, key_path, err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "expired") != NULL, "%s", err);
    EVP_PKEY_free(k);
    X509_free(cax);
}
END_TEST

START_TEST(load_warns_on_readable_key)
{
    char logp[128], *logged;
    int saved = dup(STDERR_FILENO), fd;
    struct tls_ca *c;

    path_in(logp, sizeof(logp), "garbage.pem");
    fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(chmod(key_path, 0640), 0);
    dup2(fd, STDERR_FILENO);
    c = tls_ca_load(cert_path, key_path, err, sizeof(err));
    dup2(saved, STDERR_FILENO);
    close(fd);
    close(saved);
    ck_assert_msg(c != NULL, "%s", err);
    tls_ca_unref(c);
    logged = slurp(logp);
    ck_assert_msg(strstr(logged, "ca.key: private key is accessible by group or others") != NULL,
                  "%s", logged);
    free(logged);
}
END_TEST

static X509 *
leaf_of(SSL *ssl)
{
    X509 *x = SSL_get_certificate(ssl);

    ck_assert_ptr_nonnull(x);
    return x;
}

/* X509_verify_cert of leaf against the generated CA, as a browser trusting it would. */
static int
verify_leaf(X509 *leaf)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    X509 *cax = read_cert(cert_path);
    int ok;

    X509_STORE_add_cert(store, cax);
    X509_STORE_CTX_init(sc, store, leaf, NULL);
    X509_STORE_CTX_set_purpose(sc, X509_PURPOSE_SSL_SERVER);
    ok = X509_verify_cert(sc);
    X509_STORE_CTX_free(sc);
    X509_STORE_free(store);
    X509_free(cax);
    return ok;
}

START_TEST(mint_leaf_verifies)
{
    struct tls_leaf_cache *lc = tls_leaf_cache_new(ca, 8);
    SSL *ssl = tls_server_ssl(lc, "chat.deepseek.com");
    X509 *leaf = leaf_of(ssl), *cax = read_cert(cert_path);
    GENERAL_NAMES *gens;
    const GENERAL_NAME *gn;
    AUTHORITY_KEYID *akid;
    STACK_OF(X509) *chain = NULL;
    char cn[80];

    ck_assert_int_eq(verify_leaf(leaf), 1);
    ck_assert_int_eq(X509_check_host(leaf, "chat.deepseek.com", 0, 0, NULL), 1);
    ck_assert_int_ne(X509_check_host(leaf, "api.deepseek.com", 0, 0, NULL), 1);
    ck_assert_int_eq(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(cax)), 0);
    X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn));
    ck_assert_str_eq(cn, "chat.deepseek.com");

    gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    ck_assert_ptr_nonnull(gens);
    ck_assert_int_eq(sk_GENERAL_NAME_num(gens), 1);
    gn = sk_GENERAL_NAME_value(gens, 0);
    ck_assert_int_eq(gn->type, GEN_DNS);
    ck_assert_str_eq((const char *)ASN1_STRING_get0_data(gn->d.dNSName), "chat.deepseek.com");
    GENERAL_NAMES_free(gens);

    ck_assert(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE);
    ck_assert(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
    ck_assert_int_eq(X509_check_ca(leaf), 0);
    akid = X509_get_ext_d2i(leaf, NID_authority_key_identifier, NULL, NULL);
    ck_assert_ptr_nonnull(akid);
    ck_assert_int_eq(ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(cax)), 0);
    AUTHORITY_KEYID_free(akid);

    ck_assert_int_le(secs_from_now(X509_get0_notBefore(leaf)), -3600 + 60);
    ck_assert_int_ge(secs_from_now(X509_get0_notBefore(leaf)), -3600 - 60);
    ck_assert_int_ge(secs_from_now(X509_get0_notAfter(leaf)), 30L * 86400 - 60);
    ck_assert_int_le(secs_from_now(X509_get0_notAfter(leaf)), 30L * 86400 + 60);

    ck_assert_int_eq(SSL_get0_chain_certs(ssl, &chain), 1);
    ck_assert_int_eq(sk_X509_num(chain), 1);
    ck_assert_int_eq(X509_cmp(sk_X509_value(chain, 0), cax), 0);
    ck_assert_int_eq(SSL_CTX_get_min_proto_version(SSL_get_SSL_CTX(ssl)), TLS1_2_VERSION);
    ck_assert_int_eq(SSL_is_server(ssl), 1);

    X509_free(cax);
    SSL_free(ssl);
    tls_leaf_cache_free(lc);
}
END_TEST

START_TEST(mint_ip_literals)
{
    struct tls_leaf_cache *lc = tls_leaf_cache_new(ca, 8);
    SSL *v4 = tls_server_ssl(lc, "192.0.2.7");
    SSL *v6 = tls_server_ssl(lc, "[2001:DB8::1]");
    GENERAL_NAMES *gens;

    ck_assert_ptr_nonnull(v4);
    ck_assert_ptr_nonnull(v6);
    ck_assert_int_eq(verify_leaf(leaf_of(v4)), 1);
    ck_assert_int_eq(X509_check_ip_asc(leaf_of(v4), "192.0.2.7", 0), 1);
    ck_assert_int_ne(X509_check_ip_asc(leaf_of(v4), "192.0.2.8", 0), 1);
    ck_assert_int_eq(X509_check_ip_asc(leaf_of(v6), "2001:db8::1", 0), 1);
    gens = X509_get_ext_d2i(leaf_of(v4), NID_subject_alt_name, NULL, NULL);
    ck_assert_int_eq(sk_GENERAL_NAME_num(gens), 1);
    ck_assert_int_eq(sk_GENERAL_NAME_value(gens, 0)->type, GEN_IPADD);
    GENERAL_NAMES_free(gens);
    SSL_free(v4);
    SSL_free(v6);
    tls_leaf_cache_free(lc);
}
END_TEST

START_TEST(invalid_hosts_refused)
{
    static const char *const bad[] = {
        "",          "a b.example", "evil.com,DNS:bank.com", "x/y", "*.example.com", "a..b",
        ".lead.dot", "[]",          "ex\nample.com"};
    struct tls_leaf_cache *lc = tls_leaf_cache_new(ca, 8);
    SSL_CTX *cctx = client_ctx(cert_path);
    char longname[300];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(tls_server_ssl(lc, bad[i]) == NULL, "minted for \"%s\"", bad[i]);
        ck_assert_msg(tls_client_ssl(cctx, bad[i]) == NULL, "client for \"%s\"", bad[i]);
    }
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    ck_assert_ptr_null(tls_server_ssl(lc, longname));
    ck_assert_ptr_null(tls_server_ssl(lc, NULL));
    ck_assert_uint_eq(tls_leaf_cache_size(lc), 0);
    SSL_CTX_free(cctx);
    tls_leaf_cache_free(lc);
}
END_TEST

START_TEST(long_host_has_san_without_cn)
{
    struct tls_leaf_cache *lc = tls_leaf_cache_new(ca, 8);
    const char *host = "a-very-long-label-that-goes-on-and-on-and-on-for-a-while.chat.example.com";
    SSL *ssl = tls_server_ssl(lc, host);

    ck_assert_ptr_nonnull(ssl);
    ck_assert_int_gt((int)strlen(host), 64);
    ck_assert_int_eq(X509_NAME_entry_count(X509_get_subject_name(leaf_of(ssl))), 0);
    ck_assert_int_eq(X509_check_host(leaf_of(ssl), host, 0, 0, NULL), 1);
    ck_assert_int_eq(verify_leaf(leaf_of(ssl)), 1);
    SSL_free(ssl);
    tls_leaf_cache_free(lc);
}
END_TEST

START_TEST(cache_hit_and_normalisation)
{
    struct tls_leaf_cache *lc = tls_leaf_cache_new(ca, 8);
    SSL *a = tls_server_ssl(lc, "chat.deepseek.com");
    SSL *b = tls_server_ssl(lc, "Chat.DeepSeek.COM.");
    uint64_t hits, misses;

    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    tls_leaf_cache_stats(lc, &hits, &misses);
    ck_assert_uint_eq(hits, 1);
    ck_assert_uint_eq(misses, 1);
    ck_assert_ptr_eq(leaf_of(a), leaf_of(b));
    ck_assert_uint_eq(tls_leaf_cache_size(lc), 1);
    ck_assert_ptr_eq(tls_leaf_cache_ca(lc), ca);
    SSL_free(a);
    SSL_free(b);
    tls_leaf_cache_free(lc);
}
END_TEST

static void
expect_stats(struct tls_leaf_cache *lc, uint64_t h, uint64_t m)
{
    uint64_t hits, misses;

    tls_leaf_cache_stats(lc, &hits, &misses);
    ck_assert_uint_eq(hits, h);
    ck_assert_uint_eq(misses, m);
}

static void
touch(struct tls_leaf_cache *lc, const char *host)
{
    SSL *ssl = tls_server_ssl(lc, host);

    ck_assert_ptr_nonnull(ssl);
    SSL_free(ssl);
}

START_TEST(lru_eviction)
{
    struct tls_leaf_cache *lc = tls_leaf_cache_new(ca, 2);

    touch(lc, "a.example"); /* miss: [a] */
    touch(lc, "b.example"); /* miss: [b a] */
    touch(lc, "a.example"); /* hit:  [a b] */
    expect_stats(lc, 1, 2);
    touch(lc, "c.example"); /* miss, evicts b: [c a] */
    ck_assert_uint_eq(tls_leaf_cache_size(lc), 2);
    touch(lc, "a.example"); /* hit: [a c] */
    expect_stats(lc, 2, 3);
    touch(lc, "b.example"); /* miss, evicts c: [b a] */
    expect_stats(lc, 2, 4);
    touch(lc, "a.example"); /* hit */
    touch(lc, "c.example"); /* miss: c was evicted */
    expect_stats(lc, 3, 5);
    ck_assert_uint_eq(tls_leaf_cache_size(lc), 2);
    tls_leaf_cache_free(lc);
}
END_TEST

START_TEST(many_hosts_and_capacity_zero)
{
    struct tls_leaf_cache *lc = tls_leaf_cache_new(ca, 50);
    char host[64];
    int i;

    for (i = 0; i < 200; i++) {
        snprintf(host, sizeof(host), "h%d.example.com", i);
        touch(lc, host);
    }
    for (i = 150; i < 200; i++) {
        snprintf(host, sizeof(host), "h%d.example.com", i);
        touch(lc, host);
    }
    expect_stats(lc, 50, 200);
    ck_assert_uint_eq(tls_leaf_cache_size(lc), 50);
    tls_leaf_cache_free(lc);

    lc = tls_leaf_cache_new(ca, 0);
    touch(lc, "chat.deepseek.com");
    touch(lc, "chat.deepseek.com");
    expect_stats(lc, 0, 2);
    ck_assert_uint_eq(tls_leaf_cache_size(lc), 0);
    tls_leaf_cache_free(lc);
}
END_TEST

/* Handshake a cache-minted server SSL for server_host with a client expecting client_host. */
static int
mitm_handshake(const char *server_host, const char *client_host, SSL **cp, SSL **sp)
{
    struct tls_ca *own = tls_ca_load(cert_path, key_path, err, sizeof(err));
    struct tls_leaf_cache *lc;
    SSL_CTX *cctx = client_ctx(cert_path);

    ck_assert_msg(own != NULL, "%s", err);
    lc = tls_leaf_cache_new(own, 4);
    tls_ca_unref(own);
    *sp = tls_server_ssl(lc, server_host);
    *cp = tls_client_ssl(cctx, client_host);
    ck_assert_ptr_nonnull(*sp);
    ck_assert_ptr_nonnull(*cp);
    /* The SSLs keep what they need: cache, CA and client context may go first. */
    tls_leaf_cache_free(lc);
    SSL_CTX_free(cctx);
    return handshake(*cp, *sp);
}

static void
expect_alpn(SSL *ssl, const char *want)
{
    const unsigned char *p;
    unsigned int n;

    SSL_get0_alpn_selected(ssl, &p, &n);
    if (want == NULL) {
        ck_assert_uint_eq(n, 0);
        return;
    }
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_int_eq(memcmp(p, want, n), 0);
}

START_TEST(handshake_right_host)
{
    SSL *c, *s;
    char buf[16];

    ck_assert_int_eq(mitm_handshake("chat.deepseek.com", "chat.deepseek.com", &c, &s), 0);
    ck_assert_int_eq(SSL_get_verify_result(c), X509_V_OK);
    ck_assert_ptr_null(tls_verify_error(c));
    ck_assert_str_eq(SSL_get_servername(s, TLSEXT_NAMETYPE_host_name), "chat.deepseek.com");
    ck_assert_int_ge(SSL_version(c), TLS1_2_VERSION);
    ck_assert_str_eq(SSL_CIPHER_get_name(SSL_get_current_cipher(c)), "TLS_AES_128_GCM_SHA256");
    expect_alpn(c, "http/1.1");
    expect_alpn(s, "http/1.1");
    ck_assert_int_eq(SSL_write(c, "GET / HTTP/1.1\r\n", 16), 16);
    ck_assert_int_eq(SSL_read(s, buf, sizeof(buf)), 16);
    ck_assert_int_eq(memcmp(buf, "GET / HTTP/1.1\r\n", 16), 0);
    SSL_free(c);
    SSL_free(s);
}
END_TEST

START_TEST(handshake_ip_literal)
{
    SSL *c, *s;

    ck_assert_int_eq(mitm_handshake("192.0.2.7", "192.0.2.7", &c, &s), 0);
    ck_assert_ptr_null(SSL_get_servername(s, TLSEXT_NAMETYPE_host_name));
    SSL_free(c);
    SSL_free(s);
}
END_TEST

START_TEST(handshake_wrong_host_fails)
{
    SSL *c, *s;

    ck_assert_int_eq(mitm_handshake("chat.deepseek.com", "api.openai.com", &c, &s), -1);
    ck_assert_int_eq(SSL_get_verify_result(c), X509_V_ERR_HOSTNAME_MISMATCH);
    ck_assert_str_eq(tls_verify_error(c), "hostname mismatch");
    SSL_free(c);
    SSL_free(s);

    ck_assert_int_eq(mitm_handshake("192.0.2.7", "192.0.2.8", &c, &s), -1);
    ck_assert_int_eq(SSL_get_verify_result(c), X509_V_ERR_IP_ADDRESS_MISMATCH);
    SSL_free(c);
    SSL_free(s);
}
END_TEST

START_TEST(handshake_untrusted_ca_fails)
{
    struct tls_leaf_cache *lc = tls_leaf_cache_new(ca, 4);
    char other[128];
    SSL_CTX *cctx;
    SSL *c, *s;

    path_in(other, sizeof(other), "other");
    ck_assert_int_eq(tls_gen_ca(other, err, sizeof(err)), 0);
    path_in(other, sizeof(other), "other/ca.pem");
    cctx = client_ctx(other);
    c = tls_client_ssl(cctx, "chat.deepseek.com");
    s = tls_server_ssl(lc, "chat.deepseek.com");
    ck_assert_int_eq(handshake(c, s), -1);
    /* The chain we send ends in our CA, which this client does not trust. */
    ck_assert_int_eq(SSL_get_verify_result(c), X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN);
    ck_assert_ptr_nonnull(tls_verify_error(c));
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    tls_leaf_cache_free(lc);
}
END_TEST

START_TEST(handshake_expired_leaf_fails)
{
    EVP_PKEY *cak = read_key(key_path), *lk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *cax = read_cert(cert_path);
    X509 *leaf = make_cert(lk, cax, cak, -10L * 86400, -86400, "chat.deepseek.com");
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = client_ctx(cert_path);
    SSL *c, *s;

    ck_assert_int_eq(SSL_CTX_use_certificate(sctx, leaf), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(sctx, lk), 1);
    s = SSL_new(sctx);
    SSL_set_accept_state(s);
    c = tls_client_ssl(cctx, "chat.deepseek.com");
    ck_assert_int_eq(handshake(c, s), -1);
    ck_assert_int_eq(SSL_get_verify_result(c), X509_V_ERR_CERT_HAS_EXPIRED);
    ck_assert_str_eq(tls_verify_error(c), "certificate has expired");
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    X509_free(leaf);
    X509_free(cax);
    EVP_PKEY_free(lk);
    EVP_PKEY_free(cak);
}
END_TEST

START_TEST(alpn_never_h2)
{
    struct tls_leaf_cache *lc = tls_leaf_cache_new(ca, 4);
    SSL_CTX *cctx = client_ctx(cert_path);
    static const unsigned char h2_first[] = "\x02h2\x08http/1.1";
    static const unsigned char h2_only[] = "\x02h2";
    SSL *c, *s;

    c = tls_client_ssl(cctx, "chat.deepseek.com");
    s = tls_server_ssl(lc, "chat.deepseek.com");
    ck_assert_int_eq(SSL_set_alpn_protos(c, h2_first, sizeof(h2_first) - 1), 0);
    ck_assert_int_eq(handshake(c, s), 0);
    expect_alpn(c, "http/1.1");
    expect_alpn(s, "http/1.1");
    SSL_free(c);
    SSL_free(s);

    c = tls_client_ssl(cctx, "chat.deepseek.com");
    s = tls_server_ssl(lc, "chat.deepseek.com");
    ck_assert_int_eq(SSL_set_alpn_protos(c, h2_only, sizeof(h2_only) - 1), 0);
    ck_assert_int_eq(handshake(c, s), 0);
    expect_alpn(c, NULL);
    expect_alpn(s, NULL);
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    tls_leaf_cache_free(lc);
}
END_TEST

START_TEST(leaf_capped_by_ca_expiry)
{
    EVP_PKEY *k = read_key(key_path);
    X509 *shortca = make_cert(k, NULL, k, -86400, 2L * 86400, "short-lived CA");
    char p[128];
    struct tls_ca *sca;
    struct tls_leaf_cache *lc;
    SSL *ssl;

    path_in(p, sizeof(p), "short.pem");
    write_cert(p, shortca);
    sca = tls_ca_load(p, key_path, err, sizeof(err));
    ck_assert_msg(sca != NULL, "%s", err);
    lc = tls_leaf_cache_new(sca, 4);
    tls_ca_unref(sca);
    ssl = tls_server_ssl(lc, "chat.deepseek.com");
    ck_assert_ptr_nonnull(ssl);
    ck_assert_int_eq(
        ASN1_TIME_compare(X509_get0_notAfter(leaf_of(ssl)), X509_get0_notAfter(shortca)), 0);
    SSL_free(ssl);
    /* A re-mint could not live longer, so the capped leaf stays cached. */
    touch(lc, "chat.deepseek.com");
    expect_stats(lc, 1, 1);
    tls_leaf_cache_free(lc);
    X509_free(shortca);
    EVP_PKEY_free(k);
}
END_TEST

START_TEST(client_ctx_errors)
{
    char missing[128];
    SSL_CTX *ctx;

    path_in(missing, sizeof(missing), "no-bundle.pem");
    ctx = tls_client_ctx_new(missing, err, sizeof(err));
    ck_assert_ptr_null(ctx);
    ck_assert_msg(strstr(err, "no-bundle.pem: cannot load CA certificates") != NULL, "%s", err);
    ctx = client_ctx(cert_path);
    ck_assert_int_eq(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
    ck_assert_int_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    SSL_CTX_free(ctx);
    ck_assert_str_eq(tls_last_error(), "unknown TLS error");
    tls_leaf_cache_free(NULL);
    tls_ca_unref(NULL);
}
END_TEST

Suite *tls_mitm_suite(void);

Suite *
tls_mitm_suite(void)
{
    Suite *s = suite_create("tls_mitm");
    TCase *t = tcase_create("core");

    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, gen_ca_files_and_fields);
    tcase_add_test(t, gen_ca_refuses_to_overwrite);
    tcase_add_test(t, load_errors);
    tcase_add_test(t, load_refuses_leaf_and_expired);
    tcase_add_test(t, load_warns_on_readable_key);
    tcase_add_test(t, mint_leaf_verifies);
    tcase_add_test(t, mint_ip_literals);
    tcase_add_test(t, invalid_hosts_refused);
    tcase_add_test(t, long_host_has_san_without_cn);
    tcase_add_test(t, cache_hit_and_normalisation);
    tcase_add_test(t, lru_eviction);
    tcase_add_test(t, many_hosts_and_capacity_zero);
    tcase_add_test(t, handshake_right_host);
    tcase_add_test(t, handshake_ip_literal);
    tcase_add_test(t, handshake_wrong_host_fails);
    tcase_add_test(t, handshake_untrusted_ca_fails);
    tcase_add_test(t, handshake_expired_leaf_fails);
    tcase_add_test(t, alpn_never_h2);
    tcase_add_test(t, leaf_capped_by_ca_expiry);
    tcase_add_test(t, client_ctx_errors);
    suite_add_tcase(s, t);
    return s;
}
