/*
 * The warn action as a person meets it: the caution page, and the
 * acknowledgement POST to /__aigate/ack that the proxy answers itself.
 * Tokens and the acknowledgement store are in ack.c; this file is the part
 * that talks HTTP on a client connection.
 */
#ifndef AIGATE_CAUTION_H
#define AIGATE_CAUTION_H

#include <stddef.h>

#include "aigate/http_parse.h"

struct conn;

#define CAUTION_ACK_PATH "/__aigate/ack"

/* The key acknowledgements are stored under: the user name, or "@address" for anonymous users. */
void caution_user_key(const struct conn *c, char *out, size_t cap);
/* The service key: the catalog id, or "host:NAME" for a warned host outside the catalog. */
void caution_service_key(const struct conn *c, char *out, size_t cap);

/* 1 if the current request's user has acknowledged its service and the acknowledgement holds. */
int caution_acknowledged(const struct conn *c);

/* Answer a request decided by a warn rule: the caution page (HTML) or a 403 text. */
void caution_page(struct conn *c, const char *buf, const struct http_head *h);

/* Answer POST /__aigate/ack; body is the complete form (len bytes).  A form
 * that passes every check is recorded asynchronously: the connection waits
 * in CS_ACKWAIT and the answer goes out when the store has the
 * acknowledgement on disk (or could not record it: 503). */
void caution_ack(struct conn *c, const char *body, size_t len);

/* Drop the connection's pending acknowledgement answer, if any (from
 * conn_close: the store's callback then never comes). */
void caution_ack_cancel(struct conn *c);

#endif
