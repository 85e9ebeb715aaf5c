/*
 * libevent's small records in a region of their own (see evmem.h).  The
 * region is reserved once (virtual address space only; a cell's page is
 * touched when first handed out), carved into EVMEM_CELL-byte cells, and
 * freed cells go on a free list; when the region is used up, small
 * requests fall back to malloc.  Ownership of a pointer is its address:
 * inside the region it is a cell.
 */
#include "aigate/core/evmem.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* 2M cells: far more descriptor numbers than a process may have open. */
#define EVMEM_REGION (64u << 20)

static char *region;
static size_t region_used;
static void *free_cells;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int
in_region(const void *p)
{
    return region && (const char *)p >= region && (const char *)p < region + EVMEM_REGION;
}

static void *
evmem_malloc(size_t n)
{
    void *cell = NULL;
    if (n > EVMEM_CELL)
        return malloc(n);
    pthread_mutex_lock(&mu);
    if (free_cells) {
        cell = free_cells;
        memcpy(&free_cells, cell, sizeof(void *));
    } else if (region_used + EVMEM_CELL <= EVMEM_REGION) {
        cell = region + region_used;
        region_used += EVMEM_CELL;
    }
    pthread_mutex_unlock(&mu);
    return cell ? cell : malloc(n);
}

static void
evmem_free(void *p)
{
    if (!in_region(p)) {
        free(p);
        return;
    }
    pthread_mutex_lock(&mu);
    memcpy(p, &free_cells, sizeof(void *));
    free_cells = p;
    pthread_mutex_unlock(&mu);
}

static void *
evmem_realloc(void *p, size_t n)
{
    if (!p)
        return evmem_malloc(n);
    if (!in_region(p))
        return realloc(p, n);
    if (n <= EVMEM_CELL)
        return p;
    void *q = malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, EVMEM_CELL);
    evmem_free(p);
    return q;
}

int
evmem_install(void)
{
    void *r = mmap(NULL, EVMEM_REGION, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        return -1;
    region = r;
    event_set_mem_functions(evmem_malloc, evmem_realloc, evmem_free);
    return 0;
}
