/*
 * ackstore_driver URL [COMMANDS]: one "node" of a fleet's acknowledgement store, for
 * tests/e2e/t_ackredis.sh.  Opens the store for URL (redis://... or
 * file:STATE_FILE) with one stand-in worker whose event loop runs all the
 * time (so the store's connection lives, breaks and comes back as in the
 * proxy), reads one command per line from COMMANDS (a FIFO; default stdin:
 * a shell gives background jobs /dev/null, which no loop can wait on) and prints one answer line
 * per command on stdout, in order:
 *
 *   token USER SVC                  a fresh token (fixed test secret)
 *   commit TOKEN USER SVC TTL       ok | already used | malformed | not recorded
 *   lookup USER SVC                 yes | no | unavailable
 *   health                          up | down: WHY
 *   wait up|down SECONDS            up | down | timeout (polls the health)
 *   metrics                         calls N errors N
 *   quit                            closes the store and exits 0
 *
 * USER and SVC may be "-" for an empty name; "%XX" in them is undone.  Built
 * by the test against build/libaigate.a (or the ASan one).
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aigate/caution/ack.h"
#include "aigate/caution/ackredis.h"
#include "aigate/core/offload.h"
#include "aigate/net/worker.h"

static const unsigned char key[ACK_KEY_LEN] = "fleet-test-secret-0123456789abcd";
static struct worker w;
static struct ack_store *store;
static struct event *in_ev, *wait_ev;
static char line[8192];
static size_t linelen;
static int busy;               /* an answer is pending: do not read the next command yet */
static int eof, closed;        /* stdin ended; the store is closed (run nothing more) */
static int wait_up, wait_left; /* "wait": wanted state, 50 ms polls left */

static void next_command(void);

static void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
answer(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    busy = 0;
    next_command();
}

static void
on_commit(enum ack_verdict v, void *arg)
{
    (void)arg;
    answer("%s", ack_verdict_text(v));
}

static void
on_lookup(enum ack_lookup_answer a, void *arg)
{
    (void)arg;
    answer("%s", a == ACK_LOOKUP_YES ? "yes" : a == ACK_LOOKUP_NO ? "no" : "unavailable");
}

static void
on_wait(evutil_socket_t fd, short what, void *arg)
{
    char why[512];
    (void)fd;
    (void)what;
    (void)arg;
    int up = ack_store_healthy(store, why, sizeof(why));
    if (up == wait_up) {
        answer("%s", up ? "up" : "down");
        return;
    }
    if (wait_left-- <= 0) {
        answer("%s", "timeout");
        return;
    }
    struct timeval tv = {0, 50000};
    evtimer_add(wait_ev, &tv);
}

/* "-" is the empty name; %XX escapes are undone in place. */
static char *
arg_name(char *s)
{
    char *o = s;
    if (strcmp(s, "-") == 0)
        return s + 1;
    for (char *p = s; *p; p++) {
        unsigned hi, lo;
        if (*p == '%' && sscanf(p + 1, "%1x%1x", &hi, &lo) == 2) {
            *o++ = (char)(hi << 4 | lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return s;
}

static void
run(char *cmd)
{
    char *v[6];
    int n = 0;
    for (char *tok = strtok(cmd, " "); tok && n < 6; tok = strtok(NULL, " "))
        v[n++] = tok;
    time_t now = time(NULL);
    busy = 1;
    if (n == 3 && strcmp(v[0], "token") == 0) {
        char t[ACK_TOKEN_BUF];
        if (ack_token_make(key, arg_name(v[1]), arg_name(v[2]), now, t, sizeof(t)) < 0)
            strcpy(t, "error");
        answer("%s", t);
    } else if (n == 5 && strcmp(v[0], "commit") == 0) {
        if (!ack_store_commit(store, &w, v[1], strlen(v[1]), now + 600, arg_name(v[2]),
                              arg_name(v[3]), now + atoi(v[4]), on_commit, NULL))
            answer("%s", "error");
    } else if (n == 3 && strcmp(v[0], "lookup") == 0) {
        if (!ack_store_lookup(store, &w, arg_name(v[1]), arg_name(v[2]), now, on_lookup, NULL))
            answer("%s", "error");
    } else if (n == 1 && strcmp(v[0], "health") == 0) {
        char why[512];
        if (ack_store_healthy(store, why, sizeof(why)))
            answer("%s", "up");
        else
            answer("down: %s", why);
    } else if (n == 3 && strcmp(v[0], "wait") == 0) {
        wait_up = strcmp(v[1], "up") == 0;
        wait_left = atoi(v[2]) * 20;
        on_wait(-1, 0, NULL);
    } else if (n == 1 && strcmp(v[0], "metrics") == 0) {
        struct ack_store_metrics m;
        char buf[128];
        ack_store_metrics(store, &m);
        snprintf(buf, sizeof(buf), "calls %llu errors %llu", m.calls, m.errors);
        answer("%s", buf);
    } else if (n == 1 && strcmp(v[0], "quit") == 0) {
        event_base_loopbreak(w.base);
    } else {
        answer("%s", "bad command");
    }
}

/* Run the commands that have arrived, one at a time, each after the previous answer. */
static void
next_command(void)
{
    char *nl;
    if (closed)
        return;
    while (!busy && (nl = memchr(line, '\n', linelen))) {
        char cmd[sizeof(line)];
        size_t n = (size_t)(nl - line);
        memcpy(cmd, line, n);
        cmd[n] = '\0';
        memmove(line, nl + 1, linelen - n - 1);
        linelen -= n + 1;
        run(cmd);
    }
    if (!busy && eof)
        event_base_loopbreak(w.base); /* every command before the end has its answer */
}

static void
on_input(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    ssize_t r = read(fd, line + linelen, sizeof(line) - 1 - linelen);
    if (r <= 0) {
        eof = 1;
        event_del(in_ev);
    } else {
        linelen += (size_t)r;
    }
    next_command();
}

int
main(int argc, char **argv)
{
    char err[512];

    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: ackstore_driver redis://...|file:STATE_FILE [COMMANDS]\n");
        return 2;
    }
    int in = argc == 3 ? open(argv[2], O_RDONLY | O_CLOEXEC) : 0;
    if (in < 0) {
        perror(argv[2]);
        return 1;
    }
    evthread_use_pthreads();
    pthread_mutex_init(&w.done_mu, NULL);
    w.base = event_base_new();
    int woken = w.base ? worker_wake_init(&w) : -1;
    in_ev = event_new(w.base, in, EV_READ | EV_PERSIST, on_input, NULL);
    wait_ev = evtimer_new(w.base, on_wait, NULL);
    if (!w.base || woken < 0 || !in_ev || !wait_ev)
        return 1;
    store = strncmp(argv[1], "file:", 5) == 0 ? ack_store_open(argv[1] + 5, err, sizeof(err))
                                              : ack_redis_open(argv[1], 1, err, sizeof(err));
    if (!store) {
        fprintf(stderr, "ackstore_driver: %s\n", err);
        return 1;
    }
    ack_store_attach(store, &w);
    event_add(in_ev, NULL);
    event_base_dispatch(w.base);
    closed = 1;
    ack_store_close(store);
    worker_wake_free(&w);
    event_free(in_ev);
    event_free(wait_ev);
    event_base_free(w.base);
    pthread_mutex_destroy(&w.done_mu);
    return 0;
}
