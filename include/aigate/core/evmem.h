/*
 * Where libevent's small records live.  libevent keeps one small record per
 * file descriptor number it has ever watched, for the life of the loop;
 * allocated in the middle of a burst (thousands of origin connections at
 * once, each on a new descriptor number) they land between the burst's
 * transient buffers, and once those are freed each record still pins its
 * page: an idle proxy after one burst of 5,000 requests held 20 MB that way.
 * evmem gives libevent an allocator that keeps every request of at most
 * EVMEM_CELL bytes in cells of one reserved region, apart from the heap;
 * larger requests go to malloc as before.  Thread-safe.
 */
#ifndef AIGATE_EVMEM_H
#define AIGATE_EVMEM_H

#define EVMEM_CELL 32

/* Install the allocator (event_set_mem_functions): before any other libevent call.  0 or -1. */
int evmem_install(void);

#endif
