/*
 * Dashboard: the parameters of /api/usage and /api/recent (defaults, every
 * key, every error) and the page's language from Accept-Language.
 */
#include "aigate/admin/dashboard.h"

#include <check.h>
#include <string.h>

#include "aigate/audit/auditidx.h"

#define NOW 1795407000123LL /* 2026-11-23T04:10:00.123Z */

static int
parse(const char *query, int recent, struct auditidx_query *q, char *err)
{
    return dash_parse_query(query, NOW, recent, q, err, 256);
}

START_TEST(test_defaults)
{
    struct auditidx_query q;
    char err[256];
    ck_assert_int_eq(parse(NULL, 0, &q, err), 0);
    ck_assert_int_eq(q.to_ms, NOW);
    ck_assert_int_eq(q.from_ms, NOW - 24 * 3600000LL);
    ck_assert_int_eq(q.by, AUDITIDX_BY_SERVICE);
    ck_assert_int_eq(q.csv, 0);
    ck_assert_int_eq(q.limit, 0);
    ck_assert_int_eq(
        q.service.set + q.user.set + q.group.set + q.action.set + q.category.set + q.rule.set, 0);
    ck_assert_int_eq(parse("", 1, &q, err), 0);
    ck_assert_uint_eq(q.n, 50);
}
END_TEST

START_TEST(test_every_key)
{
    struct auditidx_query q;
    char err[256];
    ck_assert_int_eq(parse("from=2026-11-22T00:00:00Z&to=2026-11-23T09:00:00%2B09:00&by=group&"
                           "service=chatgpt&user=%EA%B9%80&group=staff&action=block&category=&"
                           "rule=no-cards&format=csv&tz=%2B09:00&limit=10",
                           0, &q, err),
                     0);
    ck_assert_int_eq(q.from_ms, 1795305600000LL);
    ck_assert_int_eq(q.to_ms, 1795392000000LL);
    ck_assert_int_eq(q.by, AUDITIDX_BY_GROUP);
    ck_assert_str_eq(q.service.v, "chatgpt");
    ck_assert_str_eq(q.user.v, "\xea\xb9\x80");
    ck_assert_str_eq(q.group.v, "staff");
    ck_assert_str_eq(q.action.v, "block");
    ck_assert(q.category.set && q.category.is_null);
    ck_assert(q.service.set && !q.service.is_null);
    ck_assert_str_eq(q.rule.v, "no-cards");
    ck_assert_int_eq(q.csv, 1);
    ck_assert_int_eq(q.tz_min, 540);
    ck_assert_uint_eq(q.limit, 10);
    /* '+' decoded as a space by the query string still reads as a positive offset */
    ck_assert_int_eq(parse("tz=+05:30&to=2026-11-23T09:40:00+05:30&by=hour", 0, &q, err), 0);
    ck_assert_int_eq(q.tz_min, 330);
    ck_assert_int_eq(q.to_ms, 1795407000000LL);
    ck_assert_int_eq(parse("tz=-03:00&by=day", 0, &q, err), 0);
    ck_assert_int_eq(q.tz_min, -180);
    ck_assert_int_eq(parse("period=7d", 0, &q, err), 0);
    ck_assert_int_eq(q.from_ms, NOW - 7 * 86400000LL);
    ck_assert_int_eq(parse("period=1h&to=2026-11-23T04:00:00Z&by=minute", 0, &q, err), 0);
    ck_assert_int_eq(q.to_ms - q.from_ms, 3600000);
    ck_assert_int_eq(q.by, AUDITIDX_BY_MINUTE);
    ck_assert_int_eq(parse("n=1000&action=warn", 1, &q, err), 0);
    ck_assert_uint_eq(q.n, 1000);
}
END_TEST

START_TEST(test_errors)
{
    static const struct {
        const char *query;
        int recent;
        const char *msg;
    } bad[] = {
        {"by=bogus", 0, "by: one of"},
        {"by=", 0, "by: one of"},
        {"from=yesterday", 0, "from: not an ISO 8601"},
        {"to=2026-02-30", 0, "to: not an ISO 8601"},
        {"from=2026-11-24T00:00:00Z", 0, "from must be before to"},
        {"from=2026-11-23T04:10:00.123Z", 0, "from must be before to"},
        {"from=2026-11-22&period=1h", 0, "from and period"},
        {"period=5x", 0, "period:"},
        {"period=h", 0, "period:"},
        {"period=0d", 0, "period:"},
        {"period=99999999999999d", 0, "period:"},
        {"format=xml", 0, "format: json or csv"},
        {"limit=0", 0, "limit:"},
        {"limit=+5", 0, "limit:"},
        {"limit=100001", 0, "limit:"},
        {"tz=+25:00", 0, "tz:"},
        {"tz=0900", 0, "tz:"},
        {"nope=1", 0, "unknown parameter \"nope\""},
        {"by=user&by=service", 0, "by given twice"},
        {"n=5", 0, "unknown parameter \"n\""},
        {"by=user", 1, "unknown parameter \"by\""},
        {"format=csv", 1, "unknown parameter \"format\""},
        {"n=0", 1, "n:"},
        {"n=1001", 1, "n:"},
        {"novalue", 0, "does not parse"},
    };
    struct auditidx_query q;
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ck_assert_msg(parse(bad[i].query, bad[i].recent, &q, err) == -1, "%s accepted",
                      bad[i].query);
        ck_assert_msg(strstr(err, bad[i].msg) != NULL, "%s: [%s] lacks [%s]", bad[i].query, err,
                      bad[i].msg);
    }
    /* a filter value one byte too long */
    char longq[400] = "service=";
    memset(longq + 8, 'x', AUDITIDX_FILTER_MAX);
    longq[8 + AUDITIDX_FILTER_MAX] = '\0';
    ck_assert_int_eq(parse(longq, 0, &q, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "longer than"));
    longq[8 + AUDITIDX_FILTER_MAX - 1] = '\0';
    ck_assert_int_eq(parse(longq, 0, &q, err), 0);
}
END_TEST

START_TEST(test_lang)
{
    ck_assert_str_eq(dash_lang(NULL), "en");
    ck_assert_str_eq(dash_lang(""), "en");
    ck_assert_str_eq(dash_lang("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"), "ko");
    ck_assert_str_eq(dash_lang("en-US,en;q=0.9,ko;q=0.8"), "en");
    ck_assert_str_eq(dash_lang("fr-FR, ko;q=0.5"), "ko");
    ck_assert_str_eq(dash_lang("fr-FR"), "en");
    ck_assert_str_eq(dash_lang("en;q=0.3, ko;q=0.6"), "ko");
    ck_assert_str_eq(dash_lang("kok, ko-x"), "ko");
    ck_assert_str_eq(dash_lang("KO"), "ko");
}
END_TEST

Suite *dashboard_suite(void);

Suite *
dashboard_suite(void)
{
    Suite *s = suite_create("dashboard");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_every_key);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_lang);
    suite_add_tcase(s, tc);
    return s;
}
