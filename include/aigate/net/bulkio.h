/*
 * Bulk transfers through a bufferevent: libevent moves at most 16 KiB per
 * read or write call by default, so a large body or tunnel costs a trip
 * through the event loop (and, through TLS, a record) per 16 KiB.  After
 * bulkio_set() a bufferevent and the socket below its TLS layer, if any,
 * move up to BULKIO_CHUNK per call.  Back-pressure is the caller's, as
 * before (watermarks, disabling reads).  Set once where a connection's
 * bufferevent is made (conn.c for clients, also after TLS starts;
 * upstream.c for origins), so every exchange and tunnel on it inherits it.
 */
#ifndef AIGATE_BULKIO_H
#define AIGATE_BULKIO_H

struct bufferevent;

#define BULKIO_CHUNK (256 * 1024)

void bulkio_set(struct bufferevent *bev);

#endif
