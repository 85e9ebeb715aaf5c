/* tls_load.c — TLS load client of contrib/bench/intercept.sh (not a test).
 *
 * Build: cc -O2 -pthread -o tls_load contrib/bench/tls_load.c -lssl -lcrypto
 *
 *   tls_load [-x PROXYPORT] -t HOST:PORT -C CAFILE [-b BODYFILE] [-u PATH]
 *            [-d SECS] [-c CONC] [-p PID,PID...] MODE [HOST...]
 *
 * Every exchange goes to 127.0.0.1: to PROXYPORT with a "CONNECT HOST:PORT"
 * first when -x is given, else straight to PORT (the direct reference).  The
 * TLS client sends HOST as SNI, verifies the chain against CAFILE only and
 * the certificate against HOST, then sends "GET PATH" (default /1k).  An
 * answer counts only if it is a 200 with Content-Length and, with -b, its
 * body is byte for byte the file's.  One blocking thread per connection
 * (CONC threads): enough for one core of handshakes, and simple.
 *
 * Modes:
 *   conn    each thread: connect, [CONNECT], full handshake, one GET with
 *           "Connection: close", close; again, for SECS (after one exchange
 *           per thread before the clock starts).  conns/s.
 *   resume  the same, each connection offering the session (ticket) of the
 *           thread's previous one; resumed= counts the resumed handshakes.
 *   keep    CONC kept-alive connections, set up (one GET each) before the
 *           clock starts, then GET after GET on each for SECS.  req/s.
 *   check   one exchange, then one offering its session; prints what the
 *           client was shown (protocol, key, issuer, subject) and whether the
 *           second handshake was resumed.  Exit status 0 if both passed.
 *   first   for every HOST given after the mode (the port of -t): one
 *           exchange (the first connection to that name), then a second one
 *           to the same name; prints their times, TCP connect to last byte.
 *
 * -p: processes whose utime+stime (/proc/PID/stat, all threads) is read when
 * the measured window opens and closes: adds cpu_cores= and cpu_us_per_op=.
 *
 * Output, conn/resume/keep: "RESULT rate=N unit=conns/s|req/s ok=N errors=N
 * resumed=N p50_ms=X p99_ms=X secs=S [cpu_cores=X cpu_us_per_op=X]".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *host, *path = "/1k";
static int tport, pport, conc = 50;
static double secs = 5;
static unsigned char *want_body;
static long want_len = -1;
static SSL_CTX *ctx;
static int npids, pids[128];

static atomic_int ready, measuring, stopping;

struct worker {
	pthread_t th;
	long ok, errors, resumed;
	double *lat;
	size_t nlat, caplat;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long cpu_ticks(void)
{
	long long t = 0;
	for (int i = 0; i < npids; i++) {
		char fn[64], b[2048];
		snprintf(fn, sizeof fn, "/proc/%d/stat", pids[i]);
		FILE *f = fopen(fn, "r");
		if (!f)
			continue;
		size_t n = fread(b, 1, sizeof b - 1, f);
		fclose(f);
		b[n] = 0;
		char *p = strrchr(b, ')');
		unsigned long long u, s;
		/* fields after the name: state ppid pgrp session tty_nr tpgid flags
		 * minflt cminflt majflt cmajflt utime stime */
		if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &u, &s) == 2)
			t += u + s;
	}
	return t;
}

static void add_lat(struct worker *w, double ms)
{
	if (w->nlat == w->caplat) {
		w->caplat = w->caplat ? w->caplat * 2 : 1024;
		w->lat = realloc(w->lat, w->caplat * sizeof *w->lat);
		if (!w->lat)
			abort();
	}
	w->lat[w->nlat++] = ms;
}

/* A TCP connection to the proxy (or origin), through CONNECT when -x. */
static int open_conn(const char *name)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(pport ? pport : tport),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		goto bad;
	if (pport) {
		char b[1024];
		int n = snprintf(b, sizeof b, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", name, tport, name, tport);
		if (send(fd, b, n, MSG_NOSIGNAL) != n)
			goto bad;
		/* read the answer head byte by byte: nothing after it may be consumed */
		size_t got = 0;
		while (got < sizeof b - 1) {
			if (recv(fd, b + got, 1, 0) != 1)
				goto bad;
			got++;
			if (got >= 4 && !memcmp(b + got - 4, "\r\n\r\n", 4))
				break;
		}
		b[got] = 0;
		if (strncmp(b, "HTTP/1.", 7) || strncmp(b + 8, " 200", 4))
			goto bad;
	}
	return fd;
bad:
	close(fd);
	return -1;
}

static SSL *tls_open(int fd, const char *name, SSL_SESSION *offer)
{
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		return NULL;
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, name);
	SSL_set1_host(ssl, name);
	if (offer)
		SSL_set_session(ssl, offer);
	if (SSL_connect(ssl) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

static int ssl_write_all(SSL *ssl, const char *p, size_t n)
{
	while (n) {
		int r = SSL_write(ssl, p, n);
		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	return 0;
}

/* One GET; 0 if the answer is a 200 whose body is the expected one. */
static int get(SSL *ssl, const char *name, int close_conn)
{
	char req[1024], buf[16384];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: tls_load\r\n%s\r\n", path, name,
	                 tport, close_conn ? "Connection: close\r\n" : "");
	if (ssl_write_all(ssl, req, n) < 0)
		return -1;
	size_t got = 0;
	char *end = NULL;
	while (!end) {
		if (got >= sizeof buf - 1)
			return -1;
		int r = SSL_read(ssl, buf + got, sizeof buf - 1 - got);
		if (r <= 0)
			return -1;
		got += r;
		buf[got] = 0;
		end = memmem(buf, got, "\r\n\r\n", 4);
	}
	if (strncmp(buf, "HTTP/1.", 7) || strncmp(buf + 8, " 200", 4))
		return -1;
	long clen = -1;
	for (char *p = strstr(buf, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
		if (!strncasecmp(p + 2, "content-length:", 15))
			clen = strtol(p + 17, NULL, 10);
		else if (!strncasecmp(p + 2, "transfer-encoding:", 18))
			return -1;
	}
	if (clen < 0 || (want_len >= 0 && clen != want_len))
		return -1;
	long seen = got - (end + 4 - buf);
	if (seen > clen || (want_body && memcmp(end + 4, want_body, seen)))
		return -1;
	while (seen < clen) {
		int r = SSL_read(ssl, buf, sizeof buf < (size_t)(clen - seen) ? sizeof buf : (size_t)(clen - seen));
		if (r <= 0)
			return -1;
		if (want_body && memcmp(buf, want_body + seen, r))
			return -1;
		seen += r;
	}
	return 0;
}

static void tls_close(SSL *ssl, int fd)
{
	if (ssl) {
		SSL_shutdown(ssl); /* our close_notify; the peer's is not awaited */
		SSL_free(ssl);
	}
	if (fd >= 0)
		close(fd);
}

/* conn / resume / first / check: one connection, one GET; its time in *ms. */
static int one_exchange(const char *name, SSL_SESSION **sess, int *reused, double *ms)
{
	double t0 = now();
	int fd = open_conn(name), rc = -1;
	SSL *ssl = NULL;
	if (fd < 0)
		return -1;
	ssl = tls_open(fd, name, sess ? *sess : NULL);
	if (!ssl)
		goto out;
	if (reused)
		*reused = SSL_session_reused(ssl);
	if (get(ssl, name, 1) < 0)
		goto out;
	rc = 0;
	if (ms)
		*ms = (now() - t0) * 1e3;
	if (sess) { /* after the response: TLS 1.3 tickets have arrived */
		SSL_SESSION *s = SSL_get1_session(ssl);
		if (s && SSL_SESSION_is_resumable(s)) {
			SSL_SESSION_free(*sess);
			*sess = s;
		} else
			SSL_SESSION_free(s);
	}
out:
	tls_close(ssl, fd);
	ERR_clear_error();
	return rc;
}

static const char *mode;

static void *run_conn(void *arg)
{
	struct worker *w = arg;
	SSL_SESSION *sess = NULL;
	int res = !strcmp(mode, "resume");
	/* one unmeasured exchange first: with -r every measured one can offer a session */
	for (int tries = 0; tries < 3 && one_exchange(host, res ? &sess : NULL, NULL, NULL) < 0; tries++)
		usleep(10000);
	atomic_fetch_add(&ready, 1);
	while (!atomic_load(&stopping)) {
		int reused = 0;
		double ms;
		int rc = one_exchange(host, res ? &sess : NULL, &reused, &ms);
		if (!atomic_load(&measuring) || atomic_load(&stopping))
			continue;
		if (rc == 0) {
			w->ok++;
			w->resumed += reused;
			add_lat(w, ms);
		} else
			w->errors++;
	}
	SSL_SESSION_free(sess);
	return NULL;
}

static void *run_keep(void *arg)
{
	struct worker *w = arg;
	int fd = -1, counted = 0;
	SSL *ssl = NULL;
	while (!atomic_load(&stopping)) {
		if (!ssl) {
			fd = open_conn(host);
			ssl = fd < 0 ? NULL : tls_open(fd, host, NULL);
			if (!ssl || get(ssl, host, 0) < 0) {
				tls_close(ssl, fd);
				ssl = NULL, fd = -1;
				if (atomic_load(&measuring))
					w->errors++;
				usleep(10000);
				continue;
			}
			if (!counted++)
				atomic_fetch_add(&ready, 1);
		}
		double t0 = now();
		int rc = get(ssl, host, 0);
		if (atomic_load(&measuring) && !atomic_load(&stopping)) {
			if (rc == 0) {
				w->ok++;
				add_lat(w, (now() - t0) * 1e3);
			} else
				w->errors++;
		}
		if (rc < 0) {
			tls_close(ssl, fd);
			ssl = NULL, fd = -1;
		}
	}
	tls_close(ssl, fd);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int load(void)
{
	int keep = !strcmp(mode, "keep");
	struct worker *w = calloc(conc, sizeof *w);
	for (int i = 0; i < conc; i++)
		if (pthread_create(&w[i].th, NULL, keep ? run_keep : run_conn, &w[i])) {
			perror("pthread_create");
			return 2;
		}
	double deadline = now() + 15;
	while (atomic_load(&ready) < conc && now() < deadline)
		usleep(10000);
	long long c0 = cpu_ticks();
	double t0 = now();
	atomic_store(&measuring, 1);
	usleep((useconds_t)(secs * 1e6));
	atomic_store(&stopping, 1);
	double took = now() - t0;
	long long c1 = cpu_ticks();
	long ok = 0, errors = 0, resumed = 0;
	size_t n = 0;
	for (int i = 0; i < conc; i++) {
		pthread_join(w[i].th, NULL);
		ok += w[i].ok, errors += w[i].errors, resumed += w[i].resumed;
		n += w[i].nlat;
	}
	double *all = malloc((n + 1) * sizeof *all);
	size_t k = 0;
	for (int i = 0; i < conc; i++) {
		memcpy(all + k, w[i].lat, w[i].nlat * sizeof *all);
		k += w[i].nlat;
	}
	qsort(all, n, sizeof *all, cmp_double);
	printf("RESULT rate=%.0f unit=%s ok=%ld errors=%ld resumed=%ld p50_ms=%.2f p99_ms=%.2f secs=%.1f conc=%d", ok / took,
	       keep ? "req/s" : "conns/s", ok, errors, resumed, n ? all[n / 2] : 0.0, n ? all[(size_t)(n * 0.99)] : 0.0,
	       took, conc);
	if (npids) {
		double cs = (double)(c1 - c0) / sysconf(_SC_CLK_TCK);
		printf(" cpu_cores=%.2f cpu_us_per_op=%.0f", cs / took, ok ? cs * 1e6 / ok : 0.0);
	}
	printf("\n");
	return ok ? 0 : 1;
}

static void underscores(char *s)
{
	for (; *s; s++)
		if (*s == ' ')
			*s = '_';
}

static int check(void)
{
	int fd = open_conn(host);
	SSL *ssl = fd < 0 ? NULL : tls_open(fd, host, NULL);
	if (!ssl) {
		unsigned long e = ERR_peek_error();
		fprintf(stderr, "tls_load: %s: %s\n", fd < 0 ? "connect/CONNECT failed" : "TLS handshake failed",
		        e ? ERR_error_string(e, NULL) : "-");
		tls_close(ssl, fd);
		printf("CHECK FAIL\n");
		return 1;
	}
	X509 *c = SSL_get1_peer_certificate(ssl);
	char iss[512] = "-", sub[512] = "-";
	const char *kt = "?";
	int bits = 0;
	if (c) {
		X509_NAME_oneline(X509_get_issuer_name(c), iss, sizeof iss);
		X509_NAME_oneline(X509_get_subject_name(c), sub, sizeof sub);
		EVP_PKEY *pk = X509_get0_pubkey(c);
		int id = pk ? EVP_PKEY_get_base_id(pk) : 0;
		kt = id == EVP_PKEY_EC ? "EC" : id == EVP_PKEY_RSA ? "RSA" : "other";
		bits = pk ? EVP_PKEY_get_bits(pk) : 0;
		X509_free(c);
	}
	underscores(iss);
	underscores(sub);
	char proto[32], cipher[64];
	snprintf(proto, sizeof proto, "%s", SSL_get_version(ssl));
	snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(ssl));
	int body = get(ssl, host, 1) == 0;
	SSL_SESSION *sess = body ? SSL_get1_session(ssl) : NULL;
	tls_close(ssl, fd);
	int reused = 0, second = body && one_exchange(host, &sess, &reused, NULL) == 0;
	SSL_SESSION_free(sess);
	printf("CHECK %s body=%s second=%s resumed=%d proto=%s cipher=%s key=%s-%d issuer=%s subject=%s\n",
	       body && second ? "pass" : "FAIL", body ? "ok" : "bad", second ? "ok" : "bad", reused, proto, cipher, kt,
	       bits, iss, sub);
	return body && second ? 0 : 1;
}

static int first(int n, char **names)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		double a = 0, b = 0;
		int ra = one_exchange(names[i], NULL, NULL, &a);
		int rb = ra == 0 ? one_exchange(names[i], NULL, NULL, &b) : -1;
		if (ra == 0 && rb == 0)
			printf("FIRST host=%s first_ms=%.2f second_ms=%.2f\n", names[i], a, b);
		else {
			printf("FIRST host=%s failed=1\n", names[i]);
			bad = 1;
		}
	}
	return bad;
}

static void usage(void)
{
	fprintf(stderr, "usage: tls_load [-x PROXYPORT] -t HOST:PORT -C CAFILE [-b BODYFILE] [-u PATH] [-d SECS] "
	                "[-c CONC] [-p PID,...] conn|resume|keep|check|first [HOST...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static char target[256];
	const char *cafile = NULL, *bodyfile = NULL;
	int o;
	while ((o = getopt(argc, argv, "x:t:C:b:u:d:c:p:")) != -1) {
		switch (o) {
		case 'x': pport = atoi(optarg); break;
		case 't': snprintf(target, sizeof target, "%s", optarg); break;
		case 'C': cafile = optarg; break;
		case 'b': bodyfile = optarg; break;
		case 'u': path = optarg; break;
		case 'd': secs = atof(optarg); break;
		case 'c': conc = atoi(optarg); break;
		case 'p':
			for (char *t = strtok(optarg, ","); t && npids < 128; t = strtok(NULL, ","))
				pids[npids++] = atoi(t);
			break;
		default: usage();
		}
	}
	if (optind >= argc || !cafile || !strchr(target, ':') || conc < 1)
		usage();
	mode = argv[optind];
	*strrchr(target, ':') = 0;
	host = target;
	tport = atoi(target + strlen(target) + 1);
	if (bodyfile) {
		FILE *f = fopen(bodyfile, "rb");
		struct stat st;
		if (!f || fstat(fileno(f), &st) < 0) {
			perror(bodyfile);
			return 2;
		}
		want_len = st.st_size;
		want_body = malloc(want_len + 1);
		if (fread(want_body, 1, want_len, f) != (size_t)want_len) {
			perror(bodyfile);
			return 2;
		}
		fclose(f);
	}
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
		fprintf(stderr, "tls_load: cannot load %s\n", cafile);
		return 2;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x08http/1.1", 9);
	/* sessions are offered only where a mode asks for it, never from a cache */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

	if (!strcmp(mode, "conn") || !strcmp(mode, "resume") || !strcmp(mode, "keep"))
		return load();
	if (!strcmp(mode, "check"))
		return check();
	if (!strcmp(mode, "first"))
		return first(argc - optind - 1, argv + optind + 1);
	usage();
}
