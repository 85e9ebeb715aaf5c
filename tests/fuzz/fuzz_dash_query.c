/*
 * libFuzzer target: the dashboard's API query strings (dash_parse_query, for
 * GET /api/usage and GET /api/recent) and the queries they make on an audit
 * index: periods, time zones, groupings, filters, limits, JSON and CSV.
 *
 * The index holds a day of lines written at start-up by audit_format() (the
 * writer's own format), for a few users, services, rules and actions, some
 * with dlp kinds, some with null fields.
 *
 * Oracles beyond the sanitizers: a usage query counted from the hour
 * summaries agrees with one counting every record; its rows are sorted as
 * promised (time keys ascending, other keys by requests descending).
 */
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "aigate/admin/dashboard.h"
#include "aigate/audit/audit.h"
#include "aigate/audit/auditidx.h"

#include "fuzz.h"

/* 2026-11-30T12:00:00Z, the end of the indexed day */
#define NOW_MS 1764504000000LL

static struct auditidx *idx;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const users[] = {"alice", "bob", "carol", NULL};
    static const char *const services[] = {"chatgpt", "deepseek", "claude", NULL};
    static const char *const dlp[] = {"kr-rrn", "custom:emp"};
    char path[128], err[256], line[AUDIT_LINE_MAX];
    FILE *f;

    (void)argc;
    (void)argv;
    snprintf(path, sizeof(path), "%s/audit.jsonl", fuzz_tmpdir());
    if ((f = fopen(path, "w")) == NULL)
        abort();
    for (int i = 0; i < 500; i++) {
        struct audit_rec r = {0};
        size_t n;

        r.ts.tv_sec = (time_t)(NOW_MS / 1000 - 86400 + i * 173);
        r.ts.tv_nsec = (i * 7919 % 1000) * 1000000L;
        snprintf(r.id, sizeof(r.id), "%032x", i);
        r.client = "127.0.0.1";
        r.user = users[i % 4];
        r.method = "POST";
        r.scheme = "https";
        r.host = "example.com";
        r.port = 443;
        r.path = "/api";
        r.service = services[i % 4 == 3 ? 3 : i % 3];
        r.category = r.service ? "chat" : NULL;
        r.rule = i % 5 == 0 ? "ban-cn-ai" : i % 5 == 1 ? "caution" : NULL;
        r.action = (enum audit_action)(1 + i % AUDIT_ERROR);
        r.status = 200;
        r.bytes_in = 100;
        r.bytes_out = i;
        r.ms = 5;
        r.tls = "intercept";
        r.dlp = i % 7 == 0 ? dlp : NULL;
        r.ndlp = i % 7 == 0 ? 2 : 0;
        if ((n = audit_format(line, sizeof(line), &r, 0)) == 0)
            abort();
        fprintf(f, "%s\n", line);
    }
    fclose(f);
    if ((idx = auditidx_new()) == NULL || auditidx_load_file(idx, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    return 0;
}

static void
usage(const struct auditidx_query *pq)
{
    struct auditidx_query q = *pq;
    struct auditidx_result fast = {0}, scan = {0};
    struct evbuffer *out = evbuffer_new();
    int time_keys =
        q.by == AUDITIDX_BY_HOUR || q.by == AUDITIDX_BY_DAY || q.by == AUDITIDX_BY_MINUTE;

    FUZZ_CHECK(out != NULL);
    if (auditidx_query(idx, &q, NULL, &fast) == 0) {
        q.scan = 1;
        FUZZ_CHECK(auditidx_query(idx, &q, NULL, &scan) == 0);
        FUZZ_CHECK(fuzz_rows_equal(&fast, &scan));
        for (size_t i = 1; i < fast.n; i++) {
            const struct auditidx_row *a = &fast.rows[i - 1], *b = &fast.rows[i];

            if (time_keys)
                FUZZ_CHECK(a->key && b->key && strcmp(a->key, b->key) < 0);
            else
                FUZZ_CHECK(a->requests >= b->requests);
        }
        FUZZ_CHECK(auditidx_result_write(&q, &fast, out) == 0);
    }
    auditidx_result_free(&fast);
    auditidx_result_free(&scan);
    evbuffer_free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *query = malloc(size + 1), err[256];
    struct auditidx_query q;

    memcpy(query, data, size);
    query[size] = '\0';
    if (dash_parse_query(query, NOW_MS, 0, &q, err, sizeof(err)) == 0) {
        FUZZ_CHECK(q.from_ms < q.to_ms && q.tz_min > -1440 && q.tz_min < 1440);
        usage(&q);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    if (dash_parse_query(query, NOW_MS, 1, &q, err, sizeof(err)) == 0) {
        struct evbuffer *out = evbuffer_new();

        FUZZ_CHECK(q.n >= 1 && q.n <= AUDITIDX_RECENT);
        FUZZ_CHECK(out != NULL && auditidx_recent_write(idx, &q, NULL, out) == 0);
        evbuffer_free(out);
    }
    free(query);
    return 0;
}
