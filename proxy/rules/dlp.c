/*
 * Personal data detection in request bodies.
 *
 * dlp_scan() works in three steps:
 *
 *   1. decode: undo Content-Encoding with zlib, every stage bounded to
 *      max_decoded output bytes so a zip bomb costs at most that much memory;
 *   2. scan the decoded text with the built-in detectors;
 *   3. normalise a copy (form decoding, JSON unescaping, both in place since
 *      neither ever lengthens the text), scan it again if it changed, and run
 *      the custom patterns on it.
 *
 * The built-in detectors are hand-written.  One pass visits each byte; a
 * candidate starts only where a number starts (the byte before is not an
 * ASCII letter or digit, nor a decimal point after a digit) or at an '@'; a
 * candidate reads its own number (at most 64 bytes back and 253 on from an
 * '@'), so each byte is read a bounded number of times and the scan is linear.
 * A number must also end where the candidate ends: digits embedded in a
 * longer number or an identifier ("0x4000000000000002") never match.
 * What they accept:
 *
 *   kr-rrn       YYMMDD-GNNNNNC (hyphen, space or nothing), a real date in the
 *                century given by G (1-8, 5-8 for foreigners), and the check
 *                digit C = (11 - sum(d[i] * w[i]) % 11) % 10, w = 2..9,2..5.
 *                RRNs issued since October 2020 have no valid check digit;
 *                SPEC 5a asks for one, so those are not detected.
 *   credit-card  13-19 digits, plain or grouped as cards are printed
 *                (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4) with single spaces or
 *                hyphens, with a known IIN range and length, passing Luhn.
 *   email        local@label.label...tld: local of [A-Za-z0-9._%+-], labels of
 *                [A-Za-z0-9-], a TLD of at least two letters that is not an
 *                image file extension ("icon@2x.png" is a file name).
 *   phone-kr     01[016789] (mobile) or 02 / 0[3-6][1-5] (landline), then
 *                3-4 and 4 digits separated by the same '-', '.' or ' ' (the
 *                middle group not starting with 0); a mobile number also as
 *                11 digits in a row; "(02) 123-4567"; and +82 forms
 *                ("+82 10-1234-5678", "+82-2-123-4567", "+821012345678",
 *                "+82 (0)10 ...").
 *   api-key      well-known key formats, each a whole token (not preceded or
 *                followed by a letter, digit, '-' or '_'):
 *                OpenAI "sk-" + 48 letters/digits, or "sk-proj-", "sk-svcacct-",
 *                  "sk-admin-", "sk-None-" + 40-250 of [A-Za-z0-9_-];
 *                Anthropic "sk-ant-" + a tag (api03, admin01, oat01, ...) + '-'
 *                  + 32-250 of [A-Za-z0-9_-];
 *                AWS access key ids "AKIA"/"ASIA" + 16 of [A-Z0-9] (not the
 *                  documentation's ...EXAMPLE);
 *                GitHub "ghp_", "gho_", "ghu_", "ghs_", "ghr_" + 36 letters/
 *                  digits, "github_pat_" + 82 of [A-Za-z0-9_];
 *                Slack "xoxa-", "xoxb-", "xoxp-", "xoxr-" + 1-13 digits and
 *                  one or more '-'-separated groups of letters/digits, 20-250
 *                  bytes after the prefix;
 *                Google "AIza" + 35 of [A-Za-z0-9_-].
 *   private-key  a PEM block "-----BEGIN [RSA |EC |DSA |OPENSSH |ENCRYPTED ]
 *                PRIVATE KEY-----" (or "PGP PRIVATE KEY BLOCK") followed, after
 *                at most four header lines, by at least 64 base64 characters.
 */
#include "aigate/rules/dlp.h"
#include "aigate/core/cfgerr.h"

#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#define ZLIB_CONST
#include <zlib.h>

#include "aigate/http/http_parse.h"
#include "aigate/rules/policy.h"

#define DLP_BUILTIN                                                                                \
    (POLICY_DLP_KR_RRN | POLICY_DLP_CREDIT_CARD | POLICY_DLP_EMAIL | POLICY_DLP_PHONE_KR)
#define DLP_MAX_CODINGS 4
#define DLP_KEY_MIN 20 /* the shortest API key: an AWS access key id */
#define DLP_CUSTOM_PREFIX "custom:"
#define DLP_RE_DEPTH_MAX 32    /* nested groups in a custom regex */
#define DLP_RE_GROWTH_MAX 4096 /* pieces a custom regex's repetitions may add */

struct dlp_pattern {
    char *kind; /* "custom:NAME" */
    regex_t re;
};

struct dlp {
    struct dlp_pattern *v;
    size_t n;
};

static const char *const dlp_builtin_names[] = {"kr-rrn",   "credit-card", "email",
                                                "phone-kr", "api-key",     "private-key"};
_Static_assert(sizeof(dlp_builtin_names) / sizeof(dlp_builtin_names[0]) == POLICY_DLP_CUSTOM_FIRST,
               "a name for every built-in kind");

/* ---- loading ------------------------------------------------------------ */

static void dlp_err(char *err, size_t errlen, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
dlp_err(char *err, size_t errlen, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfgerr_vset(err, errlen, s, "dlp_patterns", fmt, ap);
    va_end(ap);
}

void
dlp_free(struct dlp *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++) {
        regfree(&d->v[i].re);
        free(d->v[i].kind);
    }
    free(d->v);
    free(d);
}

static int
dlp_name_ok(const char *name)
{
    if (*name == '\0')
        return 0;
    for (; *name; name++)
        if (!((*name >= 'a' && *name <= 'z') || (*name >= 'A' && *name <= 'Z') ||
              (*name >= '0' && *name <= '9') || *name == '-' || *name == '_' || *name == '.'))
            return 0;
    return 1;
}

/*
 * The index of the ']' that closes the bracket expression opened at re[i]
 * ("[]a]", "[^]a]", "[[:digit:]]" included), or 0 if it is not closed.
 */
static size_t
dlp_bracket_end(const char *re, size_t i)
{
    i++;
    if (re[i] == '^')
        i++;
    if (re[i] == ']')
        i++;
    while (re[i] && re[i] != ']') {
        if (re[i] == '[' && (re[i + 1] == ':' || re[i + 1] == '.' || re[i + 1] == '=')) {
            char end = re[i + 1];

            for (i += 2; re[i] && !(re[i] == end && re[i + 1] == ']'); i++)
                ;
            if (re[i] == '\0')
                return 0;
            i += 2;
        } else {
            i++;
        }
    }
    return re[i] ? i : 0;
}

/*
 * Whether an ERE uses a back-reference (\1..\9, which glibc accepts in ERE):
 * matching those can take exponential time on a hostile body.  Bracket
 * expressions are skipped, a backslash inside one being literal.
 */
static int
dlp_has_backref(const char *re)
{
    for (size_t i = 0; re[i]; i++) {
        if (re[i] == '\\') {
            if (re[i + 1] >= '1' && re[i + 1] <= '9')
                return 1;
            if (re[i + 1] != '\0')
                i++;
        } else if (re[i] == '[' && (i = dlp_bracket_end(re, i)) == 0) {
            return 0;
        }
    }
    return 0;
}

/* An interval "{m}", "{m,}" or "{m,n}" at re[i] (counts capped): 0 with its last index, or -1. */
static int
dlp_re_interval(const char *re, size_t i, size_t *end, uint64_t *m, uint64_t *n)
{
    const uint64_t cap = 1000000;

    if (re[i++] != '{' || !(re[i] >= '0' && re[i] <= '9'))
        return -1;
    for (*m = 0; re[i] >= '0' && re[i] <= '9'; i++)
        *m = *m >= cap ? cap : *m * 10 + (uint64_t)(re[i] - '0');
    *n = *m;
    if (re[i] == ',') {
        i++;
        *n = re[i] >= '0' && re[i] <= '9' ? 0 : *m + 1;
        for (; re[i] >= '0' && re[i] <= '9'; i++)
            *n = *n >= cap ? cap : *n * 10 + (uint64_t)(re[i] - '0');
    }
    if (re[i] != '}')
        return -1;
    *end = i;
    return 0;
}

/*
 * Whether a custom ERE is too big for glibc's regcomp(), which builds it by
 * copying every repeated piece (x{0,32767} takes 8 GB; each '+' of "x+++..."
 * doubles the size) and recurses once per parenthesis (some 20,000 levels
 * overflow the stack): more than DLP_RE_DEPTH_MAX nested groups, or
 * repetitions that add more than DLP_RE_GROWTH_MAX pieces to the pieces
 * written (optional copies count twice: glibc's work on them grows with
 * their square).  That also bounds regexec()'s work per byte of a body.
 */
static int
dlp_re_too_big(const char *re)
{
    struct {
        uint64_t alt, branch, last; /* the group's pieces: branches before, this one, its last */
    } st[DLP_RE_DEPTH_MAX + 1];
    const uint64_t max = DLP_RE_GROWTH_MAX + strlen(re);
    size_t d = 0, end;
    uint64_t m, n;

    memset(st, 0, sizeof(st));
    for (size_t i = 0; re[i]; i++) {
        uint64_t piece = 1;

        if (re[i] == '(') {
            if (d == DLP_RE_DEPTH_MAX)
                return 1;
            d++;
            memset(&st[d], 0, sizeof(st[d]));
            continue;
        }
        if (re[i] == '|') {
            st[d].alt += st[d].branch + 1;
            st[d].branch = st[d].last = 0;
            if (st[d].alt > max)
                return 1;
            continue;
        }
        if (re[i] == '*' || re[i] == '?' || re[i] == '+' ||
            (re[i] == '{' && dlp_re_interval(re, i, &end, &m, &n) == 0)) {
            uint64_t s = st[d].last, q;

            if (re[i] == '{') {
                q = (m > 1 ? m : 1) * s + (n > m ? 2 * (n - m) * s : 0) + 1;
                i = end;
            } else {
                q = (re[i] == '+' ? 2 * s : s) + 1;
            }
            st[d].branch = st[d].branch - s + q;
            st[d].last = q;
            if (st[d].branch > max)
                return 1;
            continue;
        }
        if (re[i] == ')' && d > 0) {
            piece = st[d].alt + st[d].branch + 1;
            d--;
        } else if (re[i] == '\\' && re[i + 1] != '\0') {
            i++;
        } else if (re[i] == '[' && dlp_bracket_end(re, i) != 0) {
            i = dlp_bracket_end(re, i);
        }
        st[d].branch += piece;
        st[d].last = piece;
        if (st[d].branch > max)
            return 1;
    }
    return st[0].alt + st[0].branch > max;
}

/* Compile element e (index i) into d->v[d->n]. */
static int
dlp_load_one(struct dlp *d, const config_setting_t *e, int i, char *err, size_t errlen)
{
    const config_setting_t *name = NULL, *regex = NULL;
    struct dlp_pattern *p = &d->v[d->n];
    const char *nm, *rx;
    int rc;

    if (!config_setting_is_group(e)) {
        dlp_err(err, errlen, e, " #%d: expected a group { name = \"NAME\"; regex = \"ERE\"; }",
                i + 1);
        return -1;
    }
    for (int k = 0; k < config_setting_length(e); k++) {
        const config_setting_t *m = config_setting_get_elem(e, (unsigned)k);
        const char *key = config_setting_name(m);

        if (strcmp(key, "name") == 0) {
            name = m;
        } else if (strcmp(key, "regex") == 0) {
            regex = m;
        } else {
            dlp_err(err, errlen, m, " #%d: unknown key \"%s\" (expected name, regex)", i + 1, key);
            return -1;
        }
    }
    if (name == NULL || config_setting_type(name) != CONFIG_TYPE_STRING) {
        dlp_err(err, errlen, name ? name : e, " #%d: %s", i + 1,
                name ? "name must be a string" : "missing name");
        return -1;
    }
    nm = config_setting_get_string(name);
    if (!dlp_name_ok(nm)) {
        dlp_err(err, errlen, name, " #%d: name \"%s\" must be letters, digits, '-', '_' or '.'",
                i + 1, nm);
        return -1;
    }
    for (size_t k = 0; k < d->n; k++) {
        if (strcmp(d->v[k].kind + strlen(DLP_CUSTOM_PREFIX), nm) == 0) {
            dlp_err(err, errlen, name, " \"%s\": duplicate name (also entry #%zu)", nm, k + 1);
            return -1;
        }
    }
    if (regex == NULL || config_setting_type(regex) != CONFIG_TYPE_STRING ||
        *config_setting_get_string(regex) == '\0') {
        dlp_err(err, errlen, regex ? regex : e, " \"%s\": %s", nm,
                regex ? "regex must be a non-empty string" : "missing regex");
        return -1;
    }
    rx = config_setting_get_string(regex);
    if (dlp_has_backref(rx)) {
        dlp_err(err, errlen, regex, " \"%s\": back-references (\\1 ...) are not allowed", nm);
        return -1;
    }
    if (dlp_re_too_big(rx)) {
        dlp_err(err, errlen, regex,
                " \"%s\": too big (more than %d nested groups, or repetitions adding more "
                "than %d pieces)",
                nm, DLP_RE_DEPTH_MAX, DLP_RE_GROWTH_MAX);
        return -1;
    }
    if ((rc = regcomp(&p->re, rx, REG_EXTENDED | REG_NOSUB)) != 0) {
        char msg[256];

        regerror(rc, &p->re, msg, sizeof(msg));
        dlp_err(err, errlen, regex, " \"%s\": bad regex: %s", nm, msg);
        return -1;
    }
    if ((p->kind = malloc(strlen(DLP_CUSTOM_PREFIX) + strlen(nm) + 1)) == NULL) {
        regfree(&p->re);
        dlp_err(err, errlen, e, ": out of memory");
        return -1;
    }
    strcpy(p->kind, DLP_CUSTOM_PREFIX);
    strcat(p->kind, nm);
    d->n++;
    return 0;
}

struct dlp *
dlp_load(const config_setting_t *dlp_patterns, char *err, size_t errlen)
{
    struct dlp *d = calloc(1, sizeof(*d));
    int n;

    if (d == NULL) {
        snprintf(err, errlen, "dlp_patterns: out of memory");
        return NULL;
    }
    if (dlp_patterns == NULL)
        return d;
    n = config_setting_length(dlp_patterns);
    if (!config_setting_is_list(dlp_patterns) &&
        !(config_setting_is_array(dlp_patterns) && n == 0)) {
        dlp_err(err, errlen, dlp_patterns,
                ": expected a list ( { name = \"NAME\"; regex = \"ERE\"; }, ... )");
        goto fail;
    }
    if (n > POLICY_DLP_CUSTOM_MAX) {
        dlp_err(err, errlen, config_setting_get_elem(dlp_patterns, POLICY_DLP_CUSTOM_MAX),
                ": more than %d patterns", POLICY_DLP_CUSTOM_MAX);
        goto fail;
    }
    if (n > 0 && (d->v = calloc((size_t)n, sizeof(*d->v))) == NULL) {
        dlp_err(err, errlen, dlp_patterns, ": out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++)
        if (dlp_load_one(d, config_setting_get_elem(dlp_patterns, (unsigned)i), i, err, errlen) < 0)
            goto fail;
    return d;
fail:
    dlp_free(d);
    return NULL;
}

const char *
dlp_kind_name(unsigned bit_index, const struct dlp *d)
{
    if (bit_index < POLICY_DLP_CUSTOM_FIRST)
        return dlp_builtin_names[bit_index];
    bit_index -= POLICY_DLP_CUSTOM_FIRST;
    if (d == NULL || bit_index >= d->n)
        return NULL;
    return d->v[bit_index].kind;
}

size_t
dlp_kinds(unsigned mask, const struct dlp *d, const char **names, size_t max)
{
    size_t k = 0;

    for (unsigned b = 0; b < 32 && k < max; b++) {
        const char *nm;

        if ((mask & (1u << b)) && (nm = dlp_kind_name(b, d)) != NULL)
            names[k++] = nm;
    }
    return k;
}

/* ---- built-in detectors ------------------------------------------------- */

static int
dlp_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int
dlp_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
dlp_alnum(unsigned char c)
{
    return dlp_alpha(c) || dlp_digit(c);
}

/* Length of the run of digits at s[i..n). */
static size_t
dlp_run(const unsigned char *s, size_t n, size_t i)
{
    size_t j = i;

    while (j < n && dlp_digit(s[j]))
        j++;
    return j - i;
}

/*
 * Can a number start at i?  Not inside a number, a word ("0x4000...", hex
 * dumps) or a decimal ("3.14...").  Non-ASCII bytes delimit, so a number
 * written against Korean text is still found.
 */
static int
dlp_ldelim(const unsigned char *s, size_t i)
{
    return i == 0 || (!dlp_alnum(s[i - 1]) && !(s[i - 1] == '.' && i >= 2 && dlp_digit(s[i - 2])));
}

/* Can a number end at j (exclusive)?  Not followed by a letter, digit or ".5". */
static int
dlp_rdelim(const unsigned char *s, size_t n, size_t j)
{
    return j == n || (!dlp_alnum(s[j]) && !(s[j] == '.' && j + 1 < n && dlp_digit(s[j + 1])));
}

static int
dlp_days_in_month(unsigned year, unsigned month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
        return 29;
    return days[month - 1];
}

static int
dlp_rrn_at(const unsigned char *s, size_t n, size_t i)
{
    static const unsigned w[12] = {2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5};
    unsigned d[13], sum = 0, year, month, day;
    size_t j = i, k = 0;

    while (k < 6 && j < n && dlp_digit(s[j]))
        d[k++] = s[j++] - '0';
    if (k != 6 || j >= n)
        return 0;
    if (s[j] == '-' || s[j] == ' ')
        j++;
    while (k < 13 && j < n && dlp_digit(s[j]))
        d[k++] = s[j++] - '0';
    if (k != 13 || !dlp_rdelim(s, n, j) || d[6] < 1 || d[6] > 8)
        return 0;
    year = (d[6] == 1 || d[6] == 2 || d[6] == 5 || d[6] == 6 ? 1900 : 2000) + d[0] * 10 + d[1];
    month = d[2] * 10 + d[3];
    day = d[4] * 10 + d[5];
    if (month < 1 || month > 12 || day < 1 || (int)day > dlp_days_in_month(year, month))
        return 0;
    for (k = 0; k < 12; k++)
        sum += d[k] * w[k];
    return (11 - sum % 11) % 10 == d[12];
}

/* Known issuer ranges and their lengths, then Luhn. */
static int
dlp_card_ok(const unsigned char *d, size_t n)
{
    unsigned p2 = d[0] * 10u + d[1], p3 = p2 * 10 + d[2], p4 = p3 * 10 + d[3];
    unsigned sum = 0;
    int iin;

    if (d[0] == 4)
        iin = n == 13 || n == 16 || n == 19; /* Visa */
    else if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720))
        iin = n == 16; /* Mastercard */
    else if (p2 == 34 || p2 == 37)
        iin = n == 15; /* American Express */
    else if (p2 == 36 || (p3 >= 300 && p3 <= 305))
        iin = n >= 14; /* Diners Club */
    else if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649) || (p4 >= 3528 && p4 <= 3589) ||
             p2 == 62)
        iin = n >= 16; /* Discover, JCB, UnionPay */
    else
        iin = 0;
    if (!iin)
        return 0;
    for (size_t k = 0; k < n; k++) {
        unsigned v = d[n - 1 - k];

        if (k % 2 == 1 && (v *= 2) > 9)
            v -= 9;
        sum += v;
    }
    return sum % 10 == 0;
}

/*
 * A card number at i: a plain run of 13-19 digits, or a whole run of groups
 * joined by one kind of separator in a layout cards are printed in (4-4-4-4,
 * 4-4-4-4-3, Amex 4-6-5, Diners 4-6-4).  Requiring the whole run keeps rows of
 * a numeric table ("5420 5421 5422 5423 5424 ...") from matching somewhere in
 * the middle.
 */
static int
dlp_card_at(const unsigned char *s, size_t n, size_t i)
{
    static const char *const layouts[] = {"4444", "44443", "465", "464"};
    unsigned char d[19];
    char layout[6];
    size_t run = dlp_run(s, n, i), total = 0, ngroups = 0, j = i;
    unsigned char sep;

    if (run >= 13 && run <= 19 && dlp_rdelim(s, n, i + run)) {
        for (size_t k = 0; k < run; k++)
            d[k] = s[i + k] - '0';
        if (dlp_card_ok(d, run))
            return 1;
    }
    if (run != 4 || i + run >= n || (s[i + run] != ' ' && s[i + run] != '-') ||
        (i >= 2 && s[i - 1] == s[i + run] && dlp_digit(s[i - 2])))
        return 0;
    sep = s[i + run];
    for (;;) {
        run = dlp_run(s, n, j);
        /* No layout is longer than d: a longer run is no card (and must not overflow d). */
        if (run < 3 || run > 6 || ngroups == sizeof(layout) - 1 || total + run > sizeof(d))
            return 0;
        layout[ngroups++] = (char)('0' + run);
        for (size_t k = 0; k < run; k++)
            d[total++] = s[j + k] - '0';
        j += run;
        if (j + 1 >= n || s[j] != sep || !dlp_digit(s[j + 1]))
            break;
        j++;
    }
    layout[ngroups] = '\0';
    if (!dlp_rdelim(s, n, j))
        return 0;
    for (size_t k = 0; k < sizeof(layouts) / sizeof(layouts[0]); k++)
        if (strcmp(layout, layouts[k]) == 0)
            return dlp_card_ok(d, total);
    return 0;
}

static int
dlp_phone_sep(unsigned char c)
{
    return c == '-' || c == '.' || c == ' ';
}

/*
 * At j: 3-4 digits (an exchange, never starting with 0), a separator (sep, or
 * any if sep is 0), 4 digits, the end of the number.  "02-123-4567-8901" is
 * some other identifier.
 */
static int
dlp_phone_tail(const unsigned char *s, size_t n, size_t j, unsigned char sep)
{
    size_t mid = dlp_run(s, n, j);

    if (mid < 3 || mid > 4 || s[j] == '0')
        return 0;
    j += mid;
    if (j >= n || !dlp_phone_sep(s[j]) || (sep && s[j] != sep))
        return 0;
    sep = s[j++];
    if (dlp_run(s, n, j) != 4)
        return 0;
    j += 4;
    if (!dlp_rdelim(s, n, j))
        return 0;
    return sep == ' ' || j + 1 >= n || s[j] != sep || !dlp_digit(s[j + 1]);
}

/*
 * After the area code: "-NNN(N)-NNNN" with one separator twice, or, when
 * nosep_min is not 0, nosep_min to 8 digits with no separator.
 */
static int
dlp_phone_rest(const unsigned char *s, size_t n, size_t j, size_t nosep_min)
{
    size_t run;

    if (j < n && dlp_phone_sep(s[j]))
        return dlp_phone_tail(s, n, j + 1, s[j]);
    run = dlp_run(s, n, j);
    return nosep_min && run >= nosep_min && run <= 8 && s[j] != '0' && dlp_rdelim(s, n, j + run);
}

static size_t
dlp_area(const unsigned char *s, size_t n, size_t j, int *mobile)
{
    *mobile = 0;
    if (j >= n)
        return 0;
    if (s[j] == '2')
        return 1;
    if (j + 1 >= n)
        return 0;
    if (s[j] == '1' && memchr("016789", s[j + 1], 6) != NULL) {
        *mobile = 1;
        return 2;
    }
    if (s[j] >= '3' && s[j] <= '6' && s[j + 1] >= '1' && s[j + 1] <= '5')
        return 2;
    return 0;
}

static int
dlp_phone_at(const unsigned char *s, size_t n, size_t i)
{
    size_t j, a;
    int mobile;

    if (s[i] == '+') {
        if (i + 3 > n || s[i + 1] != '8' || s[i + 2] != '2')
            return 0;
        j = i + 3;
        if (j < n && dlp_phone_sep(s[j]))
            j++;
        if (j + 3 <= n && memcmp(s + j, "(0)", 3) == 0) {
            j += 3;
            if (j < n && s[j] == ' ')
                j++;
        } else if (j < n && s[j] == '0') {
            j++;
        }
        if ((a = dlp_area(s, n, j, &mobile)) == 0)
            return 0;
        return dlp_phone_rest(s, n, j + a, 7);
    }
    if (s[i] == '(') {
        if (i + 1 >= n || s[i + 1] != '0' || (a = dlp_area(s, n, i + 2, &mobile)) == 0)
            return 0;
        j = i + 2 + a;
        if (j >= n || s[j] != ')')
            return 0;
        j++;
        if (j < n && (s[j] == ' ' || s[j] == '-'))
            j++;
        return dlp_phone_tail(s, n, j, 0);
    }
    if (s[i] != '0' || (a = dlp_area(s, n, i + 1, &mobile)) == 0)
        return 0;
    /* Unseparated, only today's 11-digit mobile numbers: 10 digits are too often something else. */
    return dlp_phone_rest(s, n, i + 1 + a, mobile ? 8 : 0);
}

static int
dlp_local_char(unsigned char c)
{
    return dlp_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

/* A top-level domain, not a file name extension as in "logo@2x.png". */
static int
dlp_tld_ok(const unsigned char *s, size_t len)
{
    static const char *const ext[] = {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico"};

    if (len < 2)
        return 0;
    for (size_t k = 0; k < len; k++)
        if (!dlp_alpha(s[k]))
            return 0;
    for (size_t k = 0; k < sizeof(ext) / sizeof(ext[0]); k++)
        if (strlen(ext[k]) == len && strncasecmp((const char *)s, ext[k], len) == 0)
            return 0;
    return 1;
}

/* Is the '@' at a part of an address?  Looks at most 64 bytes back, 253 on. */
static int
dlp_email_at(const unsigned char *s, size_t n, size_t a)
{
    size_t l = a, j = a + 1, labels = 0;

    while (l > 0 && a - l < 64 && dlp_local_char(s[l - 1]))
        l--;
    while (l < a && s[l] == '.')
        l++;
    if (l == a || s[a - 1] == '.')
        return 0;
    while (j - a <= 253) {
        size_t st = j;

        while (j < n && (dlp_alnum(s[j]) || s[j] == '-') && j - st < 64)
            j++;
        if (j == st || j - st > 63 || s[st] == '-' || s[j - 1] == '-')
            return 0;
        if (++labels >= 2 && dlp_tld_ok(s + st, j - st))
            return 1;
        if (j + 1 >= n || s[j] != '.' || !dlp_alnum(s[j + 1]))
            return 0;
        j++;
    }
    return 0;
}

/*
 * Nonzero when one of the 8 bytes of x lies in 0x28..0x40, the range that
 * holds every byte a built-in kind can start with: '(', '+', the digits and
 * '@'.  The classic word-at-a-time "has a byte between m and n" test: no
 * carry or borrow crosses a byte, so it is exact; bytes >= 0x80 never count.
 */
static uint64_t
dlp_maybe8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, t = x & ones * 0x7f;

    return (ones * (0x7f + 0x41) - t) & ~x & (t + ones * (0x7f - 0x27)) & ones * 0x80;
}

static unsigned
dlp_builtin(const unsigned char *s, size_t n, unsigned found)
{
    size_t i = 0;

    while (i < n && (found & DLP_BUILTIN) != DLP_BUILTIN) {
        size_t end = i + 8 < n ? i + 8 : n;
        uint64_t x;

        if (end - i == 8) {
            memcpy(&x, s + i, 8);
            if (!dlp_maybe8(x)) {
                i = end; /* prose: most words have nothing that can start a kind */
                continue;
            }
        }
        for (; i < end; i++) {
            unsigned char c = s[i];

            if (c == '@') {
                if (!(found & POLICY_DLP_EMAIL) && dlp_email_at(s, n, i))
                    found |= POLICY_DLP_EMAIL;
                continue;
            }
            if (!(dlp_digit(c) || c == '+' || c == '(') || !dlp_ldelim(s, i))
                continue;
            if (dlp_digit(c) && !(found & POLICY_DLP_KR_RRN) && dlp_rrn_at(s, n, i))
                found |= POLICY_DLP_KR_RRN;
            if (dlp_digit(c) && !(found & POLICY_DLP_CREDIT_CARD) && dlp_card_at(s, n, i))
                found |= POLICY_DLP_CREDIT_CARD;
            if (!(found & POLICY_DLP_PHONE_KR) && dlp_phone_at(s, n, i))
                found |= POLICY_DLP_PHONE_KR;
        }
    }
    return found;
}

/* ---- secrets: api-key, private-key --------------------------------------- */

/* A byte of a key's random part: base64url, the alphabet all of them use. */
static int
dlp_key_char(unsigned char c)
{
    return dlp_alnum(c) || c == '-' || c == '_';
}

/* Can a key end at j?  Not inside a longer token. */
static int
dlp_key_rdelim(const unsigned char *s, size_t n, size_t j)
{
    return j == n || !dlp_key_char(s[j]);
}

/* Does s[i..n) start with the literal lit? */
static int
dlp_lit(const unsigned char *s, size_t n, size_t i, const char *lit)
{
    size_t l = strlen(lit);

    return n - i >= l && memcmp(s + i, lit, l) == 0;
}

/* Length of the run of key bytes at s[i..n), counted up to max + 1. */
static size_t
dlp_key_run(const unsigned char *s, size_t n, size_t i, size_t max)
{
    size_t j = i;

    while (j < n && j - i <= max && dlp_key_char(s[j]))
        j++;
    return j - i;
}

/* Exactly len bytes of class ok() at i, then the end of the token. */
static int
dlp_key_exact(const unsigned char *s, size_t n, size_t i, size_t len, int (*ok)(unsigned char))
{
    if (n - i < len)
        return 0;
    for (size_t k = 0; k < len; k++)
        if (!ok(s[i + k]))
            return 0;
    return dlp_key_rdelim(s, n, i + len);
}

static int
dlp_upper_digit(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || dlp_digit(c);
}

static int
dlp_word_char(unsigned char c)
{
    return dlp_alnum(c) || c == '_';
}

/*
 * OpenAI and Anthropic keys at i ("sk-" seen).  Anthropic: "sk-ant-", a
 * version tag (letters and two digits: api03, admin01, oat01, ort01), '-',
 * 32-250 key bytes (api03 and admin01 keys have 95).  OpenAI: 48 letters and
 * digits (user keys, "T3BlbkFJ" in the middle), or a tag proj, svcacct, admin
 * or None, '-', and 40-250 key bytes (today 74 + "T3BlbkFJ" + 74).
 */
static int
dlp_sk_at(const unsigned char *s, size_t n, size_t i)
{
    static const char *const tags[] = {"proj-", "svcacct-", "admin-", "None-"};
    size_t j = i + 3, run;

    if (dlp_lit(s, n, j, "ant-")) {
        size_t letters = 0;

        j += 4;
        while (j < n && s[j] >= 'a' && s[j] <= 'z' && letters < 10) {
            letters++;
            j++;
        }
        if (letters == 0 || n - j < 3 || !dlp_digit(s[j]) || !dlp_digit(s[j + 1]) ||
            s[j + 2] != '-')
            return 0;
        run = dlp_key_run(s, n, j + 3, 250);
        return run >= 32 && run <= 250;
    }
    for (size_t k = 0; k < sizeof(tags) / sizeof(tags[0]); k++) {
        if (dlp_lit(s, n, j, tags[k])) {
            run = dlp_key_run(s, n, j + strlen(tags[k]), 250);
            return run >= 40 && run <= 250;
        }
    }
    return dlp_key_exact(s, n, j, 48, dlp_alnum);
}

/*
 * Slack at i ("xox" seen): xoxa-, xoxb-, xoxp- or xoxr-, a group of 1-13
 * digits, then one or more '-' and a group of letters and digits, 20-250
 * bytes after the prefix in all.
 */
static int
dlp_slack_at(const unsigned char *s, size_t n, size_t i)
{
    size_t j = i + 5, st = j, digits, groups = 0;

    if (n - i < 5 || memchr("abpr", s[i + 3], 4) == NULL || s[i + 4] != '-')
        return 0;
    digits = dlp_run(s, n, j);
    if (digits == 0 || digits > 13)
        return 0;
    j += digits;
    while (j + 1 < n && s[j] == '-' && dlp_alnum(s[j + 1]) && j - st <= 250) {
        j++;
        while (j < n && dlp_alnum(s[j]))
            j++;
        groups++;
    }
    return groups > 0 && j - st >= 20 && j - st <= 250 && dlp_key_rdelim(s, n, j);
}

static int
dlp_api_key_at(const unsigned char *s, size_t n, size_t i)
{
    switch (s[i]) {
    case 's':
        return dlp_lit(s, n, i, "sk-") && dlp_sk_at(s, n, i);
    case 'A':
        if (dlp_lit(s, n, i, "AIza"))
            return dlp_key_exact(s, n, i + 4, 35, dlp_key_char);
        /* AWS access key ids; AWS's documentation uses AKIAIOSFODNN7EXAMPLE. */
        return (dlp_lit(s, n, i, "AKIA") || dlp_lit(s, n, i, "ASIA")) &&
               dlp_key_exact(s, n, i + 4, 16, dlp_upper_digit) && memcmp(s + i + 13, "EXAMPLE", 7);
    case 'g':
        if (dlp_lit(s, n, i, "github_pat_"))
            return dlp_key_exact(s, n, i + 11, 82, dlp_word_char);
        return n - i >= 4 && s[i + 1] == 'h' && memchr("pousr", s[i + 2], 5) != NULL &&
               s[i + 3] == '_' && dlp_key_exact(s, n, i + 4, 36, dlp_alnum);
    case 'x':
        return dlp_lit(s, n, i, "xox") && dlp_slack_at(s, n, i);
    default:
        return 0;
    }
}

/* Skip blanks at j, including the two-byte escapes "\n", "\r", "\t" of JSON text not unescaped. */
static size_t
dlp_pem_blank(const unsigned char *s, size_t n, size_t j)
{
    for (;;) {
        if (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n'))
            j++;
        else if (j + 1 < n && s[j] == '\\' &&
                 (s[j + 1] == 'n' || s[j + 1] == 'r' || s[j + 1] == 't'))
            j += 2;
        else
            return j;
    }
}

static int
dlp_b64_char(unsigned char c)
{
    return dlp_alnum(c) || c == '+' || c == '/' || c == '=';
}

/*
 * A PEM private key at i ("-----BEGIN " seen): the label PRIVATE KEY, RSA
 * PRIVATE KEY, EC PRIVATE KEY, DSA PRIVATE KEY, OPENSSH PRIVATE KEY,
 * ENCRYPTED PRIVATE KEY or PGP PRIVATE KEY BLOCK, "-----", then up to four
 * header lines ("Proc-Type: 4,ENCRYPTED", "Version: ...") and at least 64
 * base64 characters of the key itself (blanks between them allowed): the
 * label alone, as in a question about the format, is not a key.
 */
static int
dlp_pem_at(const unsigned char *s, size_t n, size_t i)
{
    static const char *const labels[] = {"PRIVATE KEY-----",          "RSA PRIVATE KEY-----",
                                         "EC PRIVATE KEY-----",       "DSA PRIVATE KEY-----",
                                         "OPENSSH PRIVATE KEY-----",  "ENCRYPTED PRIVATE KEY-----",
                                         "PGP PRIVATE KEY BLOCK-----"};
    size_t j = i + 11, b64 = 0, k;

    for (k = 0; k < sizeof(labels) / sizeof(labels[0]); k++)
        if (dlp_lit(s, n, j, labels[k]))
            break;
    if (k == sizeof(labels) / sizeof(labels[0]))
        return 0;
    j = dlp_pem_blank(s, n, j + strlen(labels[k]));
    for (int h = 0; h < 4; h++) {
        size_t e = j;

        while (e < n && e - j < 128 && s[e] != ':' && s[e] != '\n' && s[e] != '\\')
            e++;
        if (e == n || s[e] != ':')
            break;
        while (e < n && e - j < 128 && s[e] != '\n' &&
               !(s[e] == '\\' && e + 1 < n && s[e + 1] == 'n'))
            e++;
        j = dlp_pem_blank(s, n, e);
    }
    while (j < n && b64 < 64) {
        size_t b = dlp_pem_blank(s, n, j);

        if (b == n || !dlp_b64_char(s[b]))
            return 0;
        b64++;
        j = b + 1;
    }
    return b64 == 64;
}

/*
 * Secrets: api-key and private-key (what they accept is in the comment at the
 * top).  Every API key is a whole run of key bytes (letters, digits, '-', '_')
 * at least DLP_KEY_MIN long, so the text is probed every DLP_KEY_MIN bytes: a
 * probe on a key byte finds its run's ends and the run's start is tried.  Any
 * run that long holds a probe, each run is walked once, and prose (short
 * words) costs a fraction of a read per byte.  PEM blocks are found with
 * memmem(), each candidate reading at most a few hundred bytes on.
 */
static unsigned
dlp_secrets(const unsigned char *s, size_t n, unsigned found)
{
    const unsigned char *p = s;
    size_t i = DLP_KEY_MIN - 1;

    while (i < n && !(found & POLICY_DLP_API_KEY)) {
        size_t b = i, e = i + 1;

        if (!dlp_key_char(s[i])) {
            i += DLP_KEY_MIN;
            continue;
        }
        while (b > 0 && dlp_key_char(s[b - 1]))
            b--;
        while (e < n && dlp_key_char(s[e]))
            e++;
        if (e - b >= DLP_KEY_MIN && dlp_api_key_at(s, n, b))
            found |= POLICY_DLP_API_KEY;
        i = e + DLP_KEY_MIN; /* s[e] ends the run; the next one starts after it */
    }
    while (n > 0 && !(found & POLICY_DLP_PRIVATE_KEY) &&
           (p = memmem(p, n - (size_t)(p - s), "-----BEGIN ", 11)) != NULL) {
        if (dlp_pem_at(s, n, (size_t)(p - s)))
            found |= POLICY_DLP_PRIVATE_KEY;
        p += 11;
    }
    return found;
}

/* ---- normalisation ------------------------------------------------------ */

static int
dlp_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at s[i..n) as a number, or -1. */
static long
dlp_hex4(const unsigned char *s, size_t n, size_t i)
{
    long v = 0;

    if (i + 4 > n)
        return -1;
    for (size_t k = 0; k < 4; k++) {
        int h = dlp_hex(s[i + k]);

        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t
dlp_utf8(unsigned char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * Undo JSON string escapes in place; returns the new length.  Every escape is
 * at least as long as what it stands for (\uHHHH is 6 bytes for at most 3,
 * a surrogate pair 12 for 4), so the write position never passes the read
 * position.  A lone surrogate becomes U+FFFD; an invalid escape is kept.
 */
static size_t
dlp_json_unescape(unsigned char *s, size_t n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    size_t r = 0, w = 0;

    while (r < n) {
        const char *e;
        long cp, lo;

        if (s[r] != '\\' || r + 1 >= n) {
            s[w++] = s[r++];
        } else if ((e = memchr(from, s[r + 1], sizeof(from) - 1)) != NULL) {
            s[w++] = (unsigned char)to[e - from];
            r += 2;
        } else if (s[r + 1] == 'u' && (cp = dlp_hex4(s, n, r + 2)) >= 0) {
            r += 6;
            if (cp >= 0xd800 && cp <= 0xdbff && r + 1 < n && s[r] == '\\' && s[r + 1] == 'u' &&
                (lo = dlp_hex4(s, n, r + 2)) >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                r += 6;
            } else if (cp >= 0xd800 && cp <= 0xdfff) {
                cp = 0xfffd;
            }
            w += dlp_utf8(s + w, (unsigned long)cp);
        } else {
            s[w++] = s[r++];
        }
    }
    return w;
}

/* Undo form encoding (%XX, '+' for space) in place; returns the new length. */
static size_t
dlp_form_decode(unsigned char *s, size_t n)
{
    size_t w = n;

    http_pct_decode((const char *)s, n, (char *)s, n, HTTP_PCT_PLUS, &w);
    return w;
}

/* Is the media type of a Content-Type value (parameters aside) want? */
static int
dlp_media_is(const char *ct, size_t ctlen, const char *want)
{
    size_t wl = strlen(want), i = 0, end;

    while (i < ctlen && (ct[i] == ' ' || ct[i] == '\t'))
        i++;
    for (end = i; end < ctlen && ct[end] != ';' && ct[end] != ' ' && ct[end] != '\t'; end++)
        ;
    return end - i == wl && strncasecmp(ct + i, want, wl) == 0;
}

static int
dlp_media_is_json(const char *ct, size_t ctlen)
{
    size_t end;

    for (end = 0; end < ctlen && ct[end] != ';'; end++)
        ;
    for (size_t i = 0; i + 4 <= end; i++)
        if (strncasecmp(ct + i, "json", 4) == 0)
            return 1;
    return 0;
}

static int
dlp_looks_json(const unsigned char *s, size_t n)
{
    size_t i = 0;

    if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i < n && (s[i] == '{' || s[i] == '[');
}

/* name=value&...: printable, no blanks except at the end, with an '='. */
static int
dlp_looks_query(const unsigned char *s, size_t n)
{
    int eq = 0;

    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= ' ' || s[i] >= 0x7f)
            return 0;
        eq |= s[i] == '=';
    }
    return eq;
}

enum { DLP_NORM_JSON = 1, DLP_NORM_FORM = 2 };

static int
dlp_norm_mode(const char *ct, size_t ctlen, const unsigned char *s, size_t n)
{
    if (ct != NULL) {
        if (dlp_media_is(ct, ctlen, "application/x-www-form-urlencoded"))
            return DLP_NORM_FORM;
        if (dlp_media_is_json(ct, ctlen))
            return DLP_NORM_JSON;
    }
    if (dlp_looks_json(s, n))
        return DLP_NORM_JSON;
    return dlp_looks_query(s, n) ? DLP_NORM_FORM : 0;
}

/* ---- content decoding --------------------------------------------------- */

/* zlib window bits for what the data looks like: gzip, zlib, else raw deflate. */
static int
dlp_wbits(const unsigned char *s, size_t n)
{
    if (n >= 2 && s[0] == 0x1f && s[1] == 0x8b)
        return 15 + 16;
    if (n >= 2 && (s[0] & 0x0f) == 8 && (s[0] >> 4) <= 7 && (s[0] << 8 | s[1]) % 31 == 0)
        return 15;
    return -15;
}

/*
 * Inflate in[0..n) into a new buffer of at most max bytes (*out, *outlen).
 * Output stops at max, at the end of the stream (gzip members are followed),
 * or at the first error, keeping what came before.  Returns 0, 1 if the data
 * was not a complete stream (corrupt, truncated, not compressed at all), -1
 * only if out of memory.
 */
static int
dlp_inflate(const unsigned char *in, size_t n, size_t max, unsigned char **out, size_t *outlen)
{
    int damaged = 0;
    size_t cap = n > max / 4 ? max : n * 4, used = 0, in_used = 0;
    unsigned char *buf, *nb;
    z_stream z;
    int wbits = dlp_wbits(in, n);

    if (cap < 16384)
        cap = max < 16384 ? max : 16384;
    if ((buf = malloc(cap + 1)) == NULL) /* + 1: never malloc(0) */
        return -1;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, wbits) != Z_OK) {
        free(buf);
        return -1;
    }
    for (;;) {
        size_t in_n, out_n;
        int rc;

        if (used == cap) {
            if (cap == max)
                break;
            cap = cap > max / 2 ? max : cap * 2;
            if ((nb = realloc(buf, cap + 1)) == NULL)
                break;
            buf = nb;
        }
        in_n = n - in_used < UINT_MAX ? n - in_used : UINT_MAX;
        out_n = cap - used < UINT_MAX ? cap - used : UINT_MAX;
        z.next_in = in + in_used;
        z.avail_in = (uInt)in_n;
        z.next_out = buf + used;
        z.avail_out = (uInt)out_n;
        rc = inflate(&z, Z_NO_FLUSH);
        in_used += in_n - z.avail_in;
        used += out_n - z.avail_out;
        if (rc == Z_STREAM_END && wbits > 15 && n - in_used >= 2 && in[in_used] == 0x1f &&
            in[in_used + 1] == 0x8b) {
            inflateReset(&z);
            continue;
        }
        if (rc != Z_OK) {
            damaged = rc != Z_STREAM_END;
            break;
        }
    }
    inflateEnd(&z);
    *out = buf;
    *outlen = used;
    return damaged;
}

/*
 * Undo the codings listed in ce[0..celen) on body, last applied first.  On
 * success *text is body or *dec (then owned by the caller); 1 if a stage was
 * not a complete stream (*text then holds what could be decoded).  -1: a
 * coding we cannot undo, or out of memory (*text is body, *dec NULL).
 */
static int
dlp_decode(const char *ce, size_t celen, const unsigned char *body, size_t len, size_t max,
           unsigned char **dec, const unsigned char **text, size_t *tlen)
{
    size_t ncod = 0, i = 0;
    int damaged = 0, rc;

    *dec = NULL;
    *text = body;
    *tlen = len;
    while (ce != NULL && i < celen) {
        size_t st, end;

        while (i < celen && (ce[i] == ' ' || ce[i] == '\t' || ce[i] == ','))
            i++;
        for (st = i; i < celen && ce[i] != ','; i++)
            ;
        for (end = i; end > st && (ce[end - 1] == ' ' || ce[end - 1] == '\t'); end--)
            ;
        if (end == st || (end - st == 8 && strncasecmp(ce + st, "identity", 8) == 0))
            continue;
        if (!((end - st == 4 && strncasecmp(ce + st, "gzip", 4) == 0) ||
              (end - st == 6 && strncasecmp(ce + st, "x-gzip", 6) == 0) ||
              (end - st == 7 && strncasecmp(ce + st, "deflate", 7) == 0)) ||
            ncod == DLP_MAX_CODINGS)
            return -1;
        ncod++;
    }
    while (ncod-- > 0) {
        unsigned char *out;
        size_t outlen;

        if ((rc = dlp_inflate(*text, *tlen, max, &out, &outlen)) < 0)
            goto fail;
        damaged |= rc;
        free(*dec);
        *dec = out;
        *text = out;
        *tlen = outlen;
    }
    return damaged;
fail:
    free(*dec);
    *dec = NULL;
    *text = body;
    *tlen = len;
    return -1;
}

/* ---- the scan ------------------------------------------------------------ */

/* The kinds in text[0..tlen), as it is and normalised, added to found. */
static unsigned
dlp_scan_text(const struct dlp *d, const unsigned char *text, size_t tlen, const char *content_type,
              size_t ctlen, unsigned found)
{
    unsigned char *norm;
    size_t nlen;
    int mode;

    found = dlp_secrets(text, tlen, dlp_builtin(text, tlen, found));
    mode = dlp_norm_mode(content_type, ctlen, text, tlen);
    /* Without anything to decode, normalising would give the same text again. */
    if (tlen == 0)
        mode = 0;
    if ((mode & DLP_NORM_FORM) && !memchr(text, '%', tlen) && !memchr(text, '+', tlen))
        mode &= ~DLP_NORM_FORM;
    if ((mode & DLP_NORM_JSON) && !memchr(text, '\\', tlen))
        mode &= ~DLP_NORM_JSON;
    if ((mode == 0 && (d == NULL || d->n == 0)) || (norm = malloc(tlen + 1)) == NULL)
        return found;
    memcpy(norm, text, tlen);
    nlen = tlen;
    if (mode & DLP_NORM_FORM)
        nlen = dlp_form_decode(norm, nlen);
    if ((mode & DLP_NORM_JSON) || ((mode & DLP_NORM_FORM) && memchr(norm, '\\', nlen) != NULL))
        nlen = dlp_json_unescape(norm, nlen);
    if (nlen != tlen || memcmp(norm, text, nlen) != 0)
        found = dlp_secrets(norm, nlen, dlp_builtin(norm, nlen, found));
    if (d != NULL && d->n > 0) {
        unsigned char *z = norm;

        while ((z = memchr(z, '\0', nlen - (size_t)(z - norm))) != NULL)
            *z = ' ';
        norm[nlen] = '\0';
        for (size_t i = 0; i < d->n; i++)
            if (regexec(&d->v[i].re, (const char *)norm, 0, NULL, 0) == 0)
                found |= POLICY_DLP_CUSTOM((unsigned)i);
    }
    free(norm);
    return found;
}

unsigned
dlp_scan(const struct dlp *d, const char *body, size_t len, const char *content_encoding,
         size_t celen, const char *content_type, size_t ctlen, size_t max_decoded)
{
    const unsigned char *text;
    unsigned char *dec;
    size_t tlen;
    int rc = dlp_decode(content_encoding, celen, (const unsigned char *)body, len, max_decoded,
                        &dec, &text, &tlen);
    unsigned found = dlp_scan_text(d, text, tlen, content_type, ctlen, 0);

    /*
     * A coding we cannot undo, or data that is not the stream its label says:
     * the bytes as they came are read too, so a label cannot hide plain text.
     */
    if (rc != 0 && text != (const unsigned char *)body)
        found = dlp_scan_text(d, (const unsigned char *)body, len, content_type, ctlen, found);
    free(dec);
    return found;
}
