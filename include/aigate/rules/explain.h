/*
 * `aigate --explain USER METHOD URL [BODY]`: a readable account of how the
 * loaded catalog and policy treat one request -- the service it belongs to,
 * the rule that decides and why, and the earlier rules that nearly matched --
 * ending with one machine-readable verdict line.  The decision is the gate's
 * (gate.h) on the URL as the live parser reads it, so the report and the
 * proxy cannot disagree.  Pure: it only writes to the stream it is given.
 */
#ifndef AIGATE_EXPLAIN_H
#define AIGATE_EXPLAIN_H

#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

struct dlp;
struct gate_cfg;

struct explain_req {
    const char *user; /* NULL: anonymous */
    const char *const *groups;
    const char *const *sources; /* where each group came from (parallel to groups), or NULL */
    size_t ngroups;
    const char *directory; /* the directory's state, or NULL when none is configured */
    const struct sockaddr *client;
    const char *method;
    /*
     * "http://host[:port]/path?query" or "https://...", or for CONNECT an
     * authority "host:port", as a client sends it to the proxy.  An https
     * URL is seen as a request inside interception when the gate would
     * intercept its host, otherwise as the CONNECT a client sends for it.
     */
    const char *url;
    const struct tm *now;
    int has_body;          /* a request body was given */
    size_t body_len;       /* its length, for the report */
    unsigned dlp_found;    /* POLICY_DLP_* kinds its scan found */
    const struct dlp *dlp; /* names the kinds (custom patterns); may be NULL */
};

/*
 * Print the report for e under g.  The last line reads
 * "verdict: action=A rule=R service=S page=P tls=T headers=N" (N headers
 * set on the forwarded request; "-" for no rule or
 * service), with the names of gate.h.  A warn rule is reported as not yet
 * acknowledged.  Returns 0, or -1 if the URL is not one the proxy would
 * accept (a message is written to out).
 */
int explain_print(FILE *out, const struct gate_cfg *g, const struct explain_req *e);

#endif
