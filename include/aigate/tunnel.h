/*
 * CONNECT tunnels: after "200 Connection established", bytes flow both ways
 * unchanged until both sides have closed.  Each direction is bounded: when
 * the receiving side's output passes TUNNEL_HIGH_WATER the sending side stops
 * being read until it drains.  A half-close (EOF from one side) is passed on
 * as shutdown(SHUT_WR) once everything before it has been written.
 */
#ifndef AIGATE_TUNNEL_H
#define AIGATE_TUNNEL_H

struct conn;

/* c->up is connected: answer 200 and start relaying. */
void tunnel_start(struct conn *c);
void tunnel_client_read(struct conn *c);
void tunnel_client_write(struct conn *c);
void tunnel_client_eof(struct conn *c);
/* Release the splice state (pipes, events) if any; part of conn_close(). */
void tunnel_free(struct conn *c);

#endif
