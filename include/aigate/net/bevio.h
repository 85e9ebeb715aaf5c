/*
 * How the proxy's bufferevents move bytes, set once where a connection's
 * bufferevent is made (conn.c for clients, again after TLS starts;
 * upstream.c for origins), so every exchange and tunnel on it inherits it.
 *
 * - Bulk: libevent moves at most 16 KiB per read or write call by default,
 *   so a large body or tunnel costs a trip through the event loop (and,
 *   through TLS, a record) per 16 KiB.  Here a bufferevent and the socket
 *   below its TLS layer, if any, move up to BEVIO_CHUNK per call.
 *   Back-pressure is the caller's, as before (watermarks, disabling reads).
 * - Writes now: libevent writes what is queued only once the socket reports
 *   writable, which costs a pass through the loop and two epoll_ctl calls
 *   (watch for writable, stop watching) per answer.  Here what is queued is
 *   written in the same pass, and the loop's change list (worker.c) folds
 *   the watch and unwatch into nothing; a socket that is full is watched
 *   as before.  Writing that is turned off (conn_hold) stays off.
 */
#ifndef AIGATE_BEVIO_H
#define AIGATE_BEVIO_H

struct bufferevent;

#define BEVIO_CHUNK (256 * 1024)

/* 0, or -1 (out of memory: the bufferevent works, with libevent's defaults). */
int bevio_set(struct bufferevent *bev);

#endif
