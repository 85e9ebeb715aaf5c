/*
 * Proxy authentication with Kerberos: `Proxy-Authorization: Negotiate
 * <SPNEGO token>` (RFC 4559) accepted through GSSAPI (MIT Kerberos) with the
 * service keys of auth.keytab, config auth.mode = "negotiate" (SPEC section 9).
 *
 * struct negotiate is the acceptor of one config snapshot: the credential
 * for auth.principal (or for every service principal in the keytab) is
 * acquired once, with the keytab named in the credential itself (no
 * process-wide KRB5_KTNAME), and restricted so that SPNEGO negotiates
 * Kerberos only.  It is immutable afterwards; negotiate_accept() may run on
 * any number of threads at once (MIT's credential handles are locked
 * inside), and is slow enough (keytab read, decryption, a replay-cache file
 * write) that it must not run on an event loop: it is an offload job.
 *
 * Replays: the acceptor uses MIT's default replay cache ("dfl:", a file in
 * KRB5RCACHEDIR, default /var/tmp, shared by every process of the same user),
 * named in the credential so that KRB5RCACHETYPE=none in the environment
 * cannot turn it off.  A token seen before is refused.
 *
 * Tokens whose ticket is for a service principal the keytab has no key for
 * (another service, another realm), or for another principal than
 * auth.principal when it is set, are refused.  A client of another realm
 * that the KDC trusts is accepted, but keeps its realm in the user name even
 * with strip_realm: only the service principal's own realm is stripped, so
 * "alice@PARTNER.EXAMPLE" never becomes the local "alice".
 */
#ifndef AIGATE_NEGOTIATE_H
#define AIGATE_NEGOTIATE_H

#include <stddef.h>

/* Longest token accepted, in base64 characters: Windows' MaxTokenSize (48000 bytes,
 * for users in many groups) is 64000 in base64. */
#define NEGOTIATE_TOKEN_MAX 65536
#define NEGOTIATE_USER_MAX 256   /* user name or principal, with its NUL */
#define NEGOTIATE_REASON_MAX 256 /* a refusal's reason, with its NUL */

struct negotiate;

/*
 * Check keytab for -t and at every load: it must be readable and hold a key
 * for principal ("HTTP/host" or "HTTP/host@REALM"; a name without realm
 * matches it in any realm), or any key when principal is NULL.  0, or -1
 * with a message in err (no FILE:LINE: the caller adds it).
 */
int negotiate_keytab_check(const char *keytab, const char *principal, char *err, size_t errlen);

/* The acceptor for keytab and principal (NULL: any in the keytab); checks the keytab
 * first (negotiate_keytab_check()).  NULL with err set. */
struct negotiate *negotiate_new(const char *keytab, const char *principal, int strip_realm,
                                char *err, size_t errlen);
void negotiate_free(struct negotiate *n);

/* Results of negotiate_parse(). */
enum negotiate_parse_rc {
    NEGOTIATE_PARSE_OK = 0,     /* *tok, *toklen: the base64 token inside v */
    NEGOTIATE_PARSE_OTHER = -1, /* another scheme (Basic, ...): not ours */
    NEGOTIATE_PARSE_BAD = -2,   /* "Negotiate" with no, an overlong or a non-base64 token */
};

/*
 * Parse a Proxy-Authorization value: "Negotiate" (any case), one or more
 * spaces, a base64 token (RFC 4648 alphabet, '=' padding only at the end,
 * length a multiple of 4, at most NEGOTIATE_TOKEN_MAX), optional trailing
 * spaces or tabs.  Pure; v need not be NUL-terminated.
 */
enum negotiate_parse_rc negotiate_parse(const char *v, size_t len, const char **tok,
                                        size_t *toklen);

struct negotiate_result {
    char user[NEGOTIATE_USER_MAX];      /* accepted: the user (realm stripped if configured) */
    char principal[NEGOTIATE_USER_MAX]; /* accepted: the client principal in full */
    char *reply; /* accepted: base64 token for "Proxy-Authenticate: Negotiate <reply>"
                  * (mutual authentication), or NULL; malloc'd, see negotiate_result_clear() */
    char reason[NEGOTIATE_REASON_MAX]; /* refused: why, for the auth-fail audit line; never
                                        * contains the token */
};

/*
 * Accept one token (the base64 text negotiate_parse() found).  Returns 1
 * (accepted: user, principal, reply) or 0 (refused: reason).  A token that
 * needs another round trip (SPNEGO whose first mechanism is not Kerberos) is
 * refused.  Delegated credentials are never kept.  Thread-safe; blocking.
 */
int negotiate_accept(const struct negotiate *n, const char *tok, size_t toklen,
                     struct negotiate_result *res);

/* Free res->reply; res may be reused.  */
void negotiate_result_clear(struct negotiate_result *res);

/*
 * The user name for a client principal, given the service principal it
 * authenticated to: with strip, "alice@REALM" becomes "alice" when REALM is
 * the service principal's realm; otherwise the principal is the name.  An
 * escaped '@' ("\@") is part of a name, not a realm separator.  Pure; 0, or
 * -1 if it does not fit (cap bytes with the NUL).
 */
int negotiate_user_name(const char *client, const char *service, int strip, char *out, size_t cap);

#endif
