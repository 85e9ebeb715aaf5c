/*
 * Micro-benchmark of the interception TLS path (proxy/tls/tls_mitm.c), one thread:
 * full handshakes over non-blocking socketpairs between tls_client_ssl() (the
 * browser's side, verifying against the generated CA) and tls_server_ssl(),
 * with the leaf cache hit every time (one host) and missed every time
 * (capacity 0: a certificate is minted per handshake).  Also times
 * tls_server_ssl() alone, which is the proxy's share of a miss or a hit.
 *
 * Build and run: see contrib/bench/README.md.  Usage: tls_bench [SECONDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "aigate/tls/tls_mitm.h"

static double
bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Step both ends until both finish; both sockets are non-blocking. */
static int
bench_handshake(SSL *c, SSL *s)
{
    int cdone = 0, sdone = 0, i;

    for (i = 0; i < 1000 && !(cdone && sdone); i++) {
        int r, e;

        if (!cdone) {
            r = SSL_do_handshake(c);
            e = SSL_get_error(c, r);
            if (r == 1)
                cdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                return -1;
        }
        if (!sdone) {
            r = SSL_do_handshake(s);
            e = SSL_get_error(s, r);
            if (r == 1)
                sdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                return -1;
        }
    }
    return cdone && sdone ? 0 : -1;
}

static int
bench_one(struct tls_leaf_cache *lc, SSL_CTX *cctx, const char *host)
{
    int sv[2], rc = -1;
    SSL *c = NULL, *s = NULL;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    c = tls_client_ssl(cctx, host);
    s = tls_server_ssl(lc, host);
    if (c != NULL && s != NULL && SSL_set_fd(c, sv[0]) && SSL_set_fd(s, sv[1]))
        rc = bench_handshake(c, s);
    SSL_free(c);
    SSL_free(s);
    close(sv[0]);
    close(sv[1]);
    return rc;
}

static void
bench_run(const char *label, struct tls_ca *ca, size_t capacity, SSL_CTX *cctx, double secs)
{
    struct tls_leaf_cache *lc = tls_leaf_cache_new(ca, capacity);
    const char *host = "chat.deepseek.com";
    double start, end;
    uint64_t hits, misses;
    long n = 0;

    if (lc == NULL)
        exit(1);
    start = bench_now();
    do {
        if (cctx != NULL) {
            if (bench_one(lc, cctx, host) < 0) {
                fprintf(stderr, "handshake failed: %s\n", tls_last_error());
                exit(1);
            }
        } else {
            SSL *s = tls_server_ssl(lc, host);

            if (s == NULL)
                exit(1);
            SSL_free(s);
        }
        n++;
    } while ((end = bench_now()) - start < secs);
    tls_leaf_cache_stats(lc, &hits, &misses);
    printf("%-34s %10.0f /s  (%ld in %.2f s; cache hits %llu, misses %llu)\n", label,
           (double)n / (end - start), n, end - start, (unsigned long long)hits,
           (unsigned long long)misses);
    tls_leaf_cache_free(lc);
}

int
main(int argc, char **argv)
{
    char dir[] = "/tmp/aigate-tls-bench-XXXXXX", cert[64], key[64], err[512];
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    struct tls_ca *ca;
    SSL_CTX *cctx;

    if (mkdtemp(dir) == NULL || tls_gen_ca(dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "tls_bench: cannot make a CA in %s: %s\n", dir, err);
        return 1;
    }
    snprintf(cert, sizeof(cert), "%s/ca.pem", dir);
    snprintf(key, sizeof(key), "%s/ca.key", dir);
    ca = tls_ca_load(cert, key, err, sizeof(err));
    cctx = ca != NULL ? tls_client_ctx_new(cert, err, sizeof(err)) : NULL;
    if (cctx == NULL) {
        fprintf(stderr, "tls_bench: %s\n", err);
        return 1;
    }
    printf("%s, %.1f s per case, one thread, both ends in-process\n",
           OpenSSL_version(OPENSSL_VERSION), secs);
    bench_run("tls_server_ssl, cache hit", ca, 1024, NULL, secs);
    bench_run("tls_server_ssl, cache miss (mint)", ca, 0, NULL, secs);
    bench_run("handshake, cache hit", ca, 1024, cctx, secs);
    bench_run("handshake, cache miss (mint)", ca, 0, cctx, secs);
    SSL_CTX_free(cctx);
    tls_ca_unref(ca);
    unlink(cert);
    unlink(key);
    rmdir(dir);
    return 0;
}
