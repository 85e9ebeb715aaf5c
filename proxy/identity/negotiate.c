/*
 * Negotiate (SPNEGO/Kerberos) proxy authentication through MIT GSSAPI.
 *
 * One acceptor credential per config snapshot, acquired from the configured
 * keytab with gss_acquire_cred_from() (the keytab and the replay cache are
 * named in the credential store, so nothing process-wide is set and two
 * snapshots with different keytabs can coexist during a reload).  Each token
 * gets a fresh security context, accepted and deleted in one call: with
 * Kerberos as SPNEGO's mechanism one round trip completes it, and the
 * connection, not the context, carries the identity afterwards.
 */
#include "aigate/identity/negotiate.h"

#include <errno.h>
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <krb5.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct negotiate {
    gss_cred_id_t cred;
    int strip_realm;
};

/* ---- keytab check ------------------------------------------------------------------ */

int
negotiate_keytab_check(const char *keytab, const char *principal, char *err, size_t errlen)
{
    krb5_context ctx = NULL;
    krb5_keytab kt = NULL;
    krb5_principal want = NULL;
    krb5_kt_cursor cur;
    krb5_keytab_entry ent;
    char name[PATH_MAX + 8];
    int rc = -1, started = 0, nkeys = 0, found = 0;
    krb5_error_code k;

    if (access(keytab, R_OK) < 0) {
        snprintf(err, errlen, "keytab %s: %s", keytab, strerror(errno));
        return -1;
    }
    if ((k = krb5_init_context(&ctx)) != 0) {
        snprintf(err, errlen, "keytab %s: cannot start Kerberos (%s)", keytab, error_message(k));
        return -1;
    }
    snprintf(name, sizeof(name), "FILE:%s", keytab);
    if ((k = krb5_kt_resolve(ctx, name, &kt)) != 0)
        goto krb_fail;
    if (principal &&
        (k = krb5_parse_name_flags(ctx, principal,
                                   strchr(principal, '@') ? 0 : KRB5_PRINCIPAL_PARSE_NO_REALM,
                                   &want)) != 0) {
        const char *m = krb5_get_error_message(ctx, k);
        snprintf(err, errlen, "principal \"%s\": %s", principal, m);
        krb5_free_error_message(ctx, m);
        goto out;
    }
    if ((k = krb5_kt_start_seq_get(ctx, kt, &cur)) != 0)
        goto krb_fail;
    started = 1;
    while ((k = krb5_kt_next_entry(ctx, kt, &ent, &cur)) == 0) {
        nkeys++;
        if (!want ||
            (strchr(principal, '@') ? krb5_principal_compare_flags(ctx, ent.principal, want, 0)
                                    : krb5_principal_compare_any_realm(ctx, ent.principal, want)))
            found = 1;
        krb5_free_keytab_entry_contents(ctx, &ent);
    }
    if (k != KRB5_KT_END)
        goto krb_fail;
    if (nkeys == 0)
        snprintf(err, errlen, "keytab %s holds no keys", keytab);
    else if (!found)
        snprintf(err, errlen, "keytab %s holds no key for %s (klist -k %s lists its principals)",
                 keytab, principal, keytab);
    else
        rc = 0;
    goto out;
krb_fail:;
    const char *m = krb5_get_error_message(ctx, k);
    snprintf(err, errlen, "keytab %s: %s", keytab, m);
    krb5_free_error_message(ctx, m);
out:
    if (started)
        krb5_kt_end_seq_get(ctx, kt, &cur);
    if (want)
        krb5_free_principal(ctx, want);
    if (kt)
        krb5_kt_close(ctx, kt);
    krb5_free_context(ctx);
    return rc;
}

/* ---- GSSAPI messages ----------------------------------------------------------------- */

/* The text of one status code (GSS_C_GSS_CODE or GSS_C_MECH_CODE), joined by "; ". */
static void
neg_status_text(OM_uint32 code, int type, char *out, size_t cap)
{
    OM_uint32 minor, more = 0;
    size_t o = 0;
    out[0] = '\0';
    do {
        gss_buffer_desc msg = GSS_C_EMPTY_BUFFER;
        if (GSS_ERROR(gss_display_status(&minor, code, type, GSS_C_NO_OID, &more, &msg)))
            break;
        int n = snprintf(out + o, cap - o, "%s%.*s", o ? "; " : "", (int)msg.length,
                         (const char *)msg.value);
        gss_release_buffer(&minor, &msg);
        if (n < 0 || (size_t)n >= cap - o)
            break;
        o += (size_t)n;
    } while (more);
}

/*
 * Why a token was refused: MIT's own words for the Kerberos error ("Request
 * is a replay", "Clock skew too great", "Request ticket server ... not found
 * in keytab", ...), which operators can look up.  GSSAPI's minor codes are
 * remapped per mechanism, so they are read through gss_display_status(), not
 * compared with krb5 error constants.  A mechanism that gave no detail
 * (minor text "Success") is described by the major status.
 */
static void
neg_reason(OM_uint32 major, OM_uint32 minor, char *out, size_t cap)
{
    out[0] = '\0';
    if (minor)
        neg_status_text(minor, GSS_C_MECH_CODE, out, cap);
    if (out[0] && strcmp(out, "Success") != 0)
        return;
    switch (GSS_ROUTINE_ERROR(major)) {
    case GSS_S_DEFECTIVE_TOKEN:
        snprintf(out, cap, "malformed token");
        break;
    case GSS_S_BAD_MECH:
        snprintf(out, cap, "not a Kerberos token");
        break;
    case GSS_S_FAILURE:
        snprintf(out, cap, "not a valid Kerberos token");
        break;
    default:
        neg_status_text(major, GSS_C_GSS_CODE, out, cap);
        if (!out[0])
            snprintf(out, cap, "GSSAPI error %u/%u", (unsigned)major, (unsigned)minor);
    }
}

/* ---- the acceptor --------------------------------------------------------------------- */

struct negotiate *
negotiate_new(const char *keytab, const char *principal, int strip_realm, char *err, size_t errlen)
{
    static gss_OID_desc krb5_oid = {9, "\x2a\x86\x48\x86\xf7\x12\x01\x02\x02"};
    gss_OID_set_desc only_krb5 = {1, &krb5_oid};
    char ktname[PATH_MAX + 8], reason[NEGOTIATE_REASON_MAX];
    gss_key_value_element_desc el[2] = {{"keytab", ktname}, {"rcache", "dfl:"}};
    gss_key_value_set_desc store = {2, el};
    gss_name_t name = GSS_C_NO_NAME;
    OM_uint32 major, minor;
    struct negotiate *n = calloc(1, sizeof(*n));
    char *pname = NULL;

    if (!n) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->cred = GSS_C_NO_CREDENTIAL;
    n->strip_realm = strip_realm;
    /* First, so that GSSAPI never meets a keytab without the key (it leaks on that path). */
    if (negotiate_keytab_check(keytab, principal, err, errlen) < 0)
        goto fail;
    snprintf(ktname, sizeof(ktname), "FILE:%s", keytab);
    if (principal) {
        /* "HTTP/host" (no realm) is imported as the host-based name "HTTP@host", which MIT's
         * acceptor matches in any realm; anything else as the principal it is. */
        const char *slash = strchr(principal, '/');
        gss_OID type = GSS_KRB5_NT_PRINCIPAL_NAME;
        if (!(pname = strdup(principal))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        if (!strchr(principal, '@') && !strchr(principal, '\\') && slash && slash[1] &&
            !strchr(slash + 1, '/')) {
            type = GSS_C_NT_HOSTBASED_SERVICE;
            pname[slash - principal] = '@';
        }
        gss_buffer_desc b = {strlen(pname), pname};
        major = gss_import_name(&minor, &b, type, &name);
        if (GSS_ERROR(major)) {
            neg_reason(major, minor, reason, sizeof(reason));
            snprintf(err, errlen, "principal \"%s\": %s", principal, reason);
            goto fail;
        }
    }
    major = gss_acquire_cred_from(&minor, name, GSS_C_INDEFINITE, GSS_C_NO_OID_SET, GSS_C_ACCEPT,
                                  &store, &n->cred, NULL, NULL);
    if (GSS_ERROR(major)) {
        neg_reason(major, minor, reason, sizeof(reason));
        snprintf(err, errlen, "keytab %s: cannot take the service's keys: %s", keytab, reason);
        goto fail;
    }
    major = gss_set_neg_mechs(&minor, n->cred, &only_krb5);
    if (GSS_ERROR(major)) {
        neg_reason(major, minor, reason, sizeof(reason));
        snprintf(err, errlen, "keytab %s: cannot limit SPNEGO to Kerberos: %s", keytab, reason);
        goto fail;
    }
    gss_release_name(&minor, &name);
    free(pname);
    return n;
fail:
    if (name != GSS_C_NO_NAME)
        gss_release_name(&minor, &name);
    free(pname);
    negotiate_free(n);
    return NULL;
}

void
negotiate_free(struct negotiate *n)
{
    OM_uint32 minor;
    if (!n)
        return;
    if (n->cred != GSS_C_NO_CREDENTIAL)
        gss_release_cred(&minor, &n->cred);
    free(n);
}

/* ---- parsing --------------------------------------------------------------------------- */

static int
neg_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

enum negotiate_parse_rc
negotiate_parse(const char *v, size_t len, const char **tok, size_t *toklen)
{
    static const char scheme[] = "negotiate";
    size_t i = 0, sl = sizeof(scheme) - 1;

    *tok = NULL;
    *toklen = 0;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    if (len - i < sl || strncasecmp(v + i, scheme, sl) != 0 ||
        (len - i > sl && v[i + sl] != ' ' && v[i + sl] != '\t'))
        return NEGOTIATE_PARSE_OTHER;
    i += sl;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    size_t end = len;
    while (end > i && (v[end - 1] == ' ' || v[end - 1] == '\t'))
        end--;
    size_t n = end - i, pad = 0;
    if (n == 0 || n % 4 != 0 || n > NEGOTIATE_TOKEN_MAX)
        return NEGOTIATE_PARSE_BAD;
    while (pad < 2 && v[i + n - 1 - pad] == '=')
        pad++;
    for (size_t k = 0; k < n - pad; k++)
        if (!neg_b64_char((unsigned char)v[i + k]))
            return NEGOTIATE_PARSE_BAD;
    *tok = v + i;
    *toklen = n;
    return NEGOTIATE_PARSE_OK;
}

/* ---- names ------------------------------------------------------------------------------- */

/* The '@' that starts name's realm (the last one not escaped by '\'), or NULL. */
static const char *
neg_realm_at(const char *name)
{
    const char *at = NULL;
    for (const char *p = name; *p; p++) {
        if (*p == '\\' && p[1])
            p++;
        else if (*p == '@')
            at = p;
    }
    return at;
}

int
negotiate_user_name(const char *client, const char *service, int strip, char *out, size_t cap)
{
    const char *cat = neg_realm_at(client), *sat = service ? neg_realm_at(service) : NULL;
    size_t n = strlen(client);
    if (strip && cat && sat && strcmp(cat, sat) == 0)
        n = (size_t)(cat - client);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(out, client, n);
    out[n] = '\0';
    return 0;
}

/* A name as GSSAPI displays it, checked: printable, fits. */
static int
neg_display(gss_name_t name, char *out, size_t cap)
{
    OM_uint32 minor;
    gss_buffer_desc b = GSS_C_EMPTY_BUFFER;
    int rc = -1;
    if (GSS_ERROR(gss_display_name(&minor, name, &b, NULL)))
        return -1;
    if (b.length > 0 && b.length < cap && !memchr(b.value, '\0', b.length)) {
        rc = 0;
        for (size_t i = 0; i < b.length; i++)
            if (((const unsigned char *)b.value)[i] < 0x20 ||
                ((const unsigned char *)b.value)[i] == 0x7f)
                rc = -1;
        memcpy(out, b.value, b.length);
        out[b.length] = '\0';
    }
    gss_release_buffer(&minor, &b);
    return rc;
}

/* ---- accepting ----------------------------------------------------------------------------- */

int
negotiate_accept(const struct negotiate *n, const char *tok, size_t toklen,
                 struct negotiate_result *res)
{
    OM_uint32 major, minor, dminor;
    gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
    gss_name_t src = GSS_C_NO_NAME, targ = GSS_C_NO_NAME;
    gss_buffer_desc in = GSS_C_EMPTY_BUFFER, out = GSS_C_EMPTY_BUFFER;
    gss_OID mech = GSS_C_NO_OID;
    unsigned char *raw = NULL;
    char service[NEGOTIATE_USER_MAX];
    int ok = 0;

    memset(res, 0, sizeof(*res));
    if (toklen == 0 || toklen % 4 != 0 || toklen > NEGOTIATE_TOKEN_MAX) {
        snprintf(res->reason, sizeof(res->reason), "token is not base64");
        return 0;
    }
    if (!(raw = malloc(toklen / 4 * 3 + 1))) {
        snprintf(res->reason, sizeof(res->reason), "out of memory");
        return 0;
    }
    int dec = EVP_DecodeBlock(raw, (const unsigned char *)tok, (int)toklen);
    if (dec < 0) {
        snprintf(res->reason, sizeof(res->reason), "token is not base64");
        goto out;
    }
    for (size_t k = toklen; k > 0 && tok[k - 1] == '='; k--)
        dec--; /* EVP_DecodeBlock counts the padding as zero bytes */
    in.value = raw;
    in.length = (size_t)dec;

    major = gss_accept_sec_context(&minor, &ctx, n->cred, &in, GSS_C_NO_CHANNEL_BINDINGS, &src,
                                   &mech, &out, NULL, NULL, NULL);
    if (major == GSS_S_CONTINUE_NEEDED) {
        snprintf(res->reason, sizeof(res->reason),
                 "the client's first mechanism is not Kerberos (only Kerberos is accepted)");
        goto out;
    }
    if (GSS_ERROR(major)) {
        neg_reason(major, minor, res->reason, sizeof(res->reason));
        goto out;
    }
    if (!gss_oid_equal(mech, gss_mech_krb5) && !gss_oid_equal(mech, gss_mech_krb5_old) &&
        !gss_oid_equal(mech, gss_mech_krb5_wrong)) {
        snprintf(res->reason, sizeof(res->reason), "not a Kerberos token");
        goto out;
    }
    if (neg_display(src, res->principal, sizeof(res->principal)) < 0) {
        snprintf(res->reason, sizeof(res->reason), "client principal name unusable");
        goto out;
    }
    major = gss_inquire_context(&minor, ctx, NULL, &targ, NULL, NULL, NULL, NULL, NULL);
    if (GSS_ERROR(major) || neg_display(targ, service, sizeof(service)) < 0)
        service[0] = '\0';
    if (negotiate_user_name(res->principal, service[0] ? service : NULL, n->strip_realm, res->user,
                            sizeof(res->user)) < 0) {
        snprintf(res->reason, sizeof(res->reason), "client principal name unusable");
        goto out;
    }
    if (out.length > 0) {
        if (out.length > NEGOTIATE_TOKEN_MAX / 4 * 3 ||
            !(res->reply = malloc(4 * ((out.length + 2) / 3) + 1))) {
            snprintf(res->reason, sizeof(res->reason), "out of memory");
            goto out;
        }
        EVP_EncodeBlock((unsigned char *)res->reply, out.value, (int)out.length);
    }
    ok = 1;
out:
    if (!ok) {
        free(res->reply);
        res->reply = NULL;
        res->user[0] = res->principal[0] = '\0';
    }
    gss_release_buffer(&dminor, &out);
    if (src != GSS_C_NO_NAME)
        gss_release_name(&dminor, &src);
    if (targ != GSS_C_NO_NAME)
        gss_release_name(&dminor, &targ);
    if (ctx != GSS_C_NO_CONTEXT)
        gss_delete_sec_context(&dminor, &ctx, GSS_C_NO_BUFFER);
    free(raw);
    return ok;
}

void
negotiate_result_clear(struct negotiate_result *res)
{
    free(res->reply);
    res->reply = NULL;
}
