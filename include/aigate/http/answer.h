/*
 * How a request ends.  answer_end() is the one end of every request: its
 * audit line (SPEC 7), everything it held released, then the next request
 * or the close; answer_finish() is the same without the connection's part,
 * for a teardown.  The answer_* pages are the proxy's own answers, each
 * ending its request.  Called by the request path (pipeline.c); calls only
 * the connection (conn.h) and the modules below it.
 */
#ifndef AIGATE_ANSWER_H
#define AIGATE_ANSWER_H

#include "aigate/audit/audit.h"
#include "aigate/caution/caution.h"
#include "aigate/identity/dirgroups.h"

struct conn;
struct req;
struct http_head;

/* A request's groups once the directory's were read: the list points into ans.set. */
struct conn_groups {
    struct dirgroups_answer ans;
    struct dirgroups_list list;
};

/* r's audit line (SPEC 7), once (later calls do nothing). */
void answer_audit(struct conn *c, struct req *r, enum audit_action action, int status);
/* The current request's audit line, then all it holds released (what it waits for cancelled). */
void answer_finish(struct conn *c, enum audit_action action, int status);
/* The one end of a request: answer_finish, then the next request (keep-alive) or the close. */
void answer_end(struct conn *c, enum audit_action action, int status);
/* The request's directory lookup, groups and mutual-authentication token go. */
void answer_identity_free(struct conn *c);

/* Whether the connection stays open after a local answer (close_after forces no). */
int answer_keep(struct conn *c, int close_after);
/* The answer built in the worker's scratch buffer goes out; the request ends with action. */
void answer_sent(struct conn *c, enum audit_action action, int status);

/* What the caution module needs of the current request. */
struct caution_req answer_caution_req(struct conn *c);

/* The proxy's own answers; each ends the request. */
void answer_error(struct conn *c, int status, const char *perror, const char *title,
                  const char *detail, int close_after);
void answer_block(struct conn *c);
void answer_blind_refused(struct conn *c);
void answer_caution(struct conn *c);
void answer_407(struct conn *c, unsigned delay_ms);
void answer_max_forwards(struct conn *c, const char *buf, const struct http_head *h);
void answer_see_other(struct conn *c, const char *url);

#endif
