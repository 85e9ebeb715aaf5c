/*
 * Work that must not run on an event loop (a bcrypt verification takes
 * 50-250 ms) runs on a small shared pool of threads.  A finished job comes
 * back to the worker that submitted it through that worker's completion
 * list and event, so its done() callback runs on the worker's own thread.
 *
 * Ownership: the submitter fills a job and hands it over; the job is freed
 * by the worker after done() (or without calling done() once cancelled).
 * Cancelling clears job->owner, which is read on the worker thread alone,
 * and sets job->cancelled, which a pool thread reads before run(): the work
 * of a client that went away is not done.
 */
#ifndef AIGATE_OFFLOAD_H
#define AIGATE_OFFLOAD_H

#include <stdatomic.h>

struct worker;

struct offload_job {
    struct offload_job *next;
    struct worker *w;
    void *owner;                              /* NULL once cancelled */
    atomic_int cancelled;                     /* set by offload_cancel(): run() is skipped */
    void (*run)(struct offload_job *job);     /* on a pool thread */
    void (*done)(struct offload_job *job);    /* on w's thread, only if owner is still set */
    void (*release)(struct offload_job *job); /* frees the job (always called, on w's thread) */
};

int offload_start(int nthreads);
void offload_stop(void);
/* Queue job; 0, or -1 if the pool is not running (the job is not taken). */
int offload_submit(struct offload_job *job);
/*
 * Worker side: the owner is going away.  done() will not be called; a job
 * still queued is not run (its release() still comes, on w's thread).
 */
void offload_cancel(struct offload_job *job);
/* Give a finished job back to job->w, from any thread: its done() (unless
 * cancelled) and release() then run on w's thread.  The pool's threads end
 * every job with it; a subsystem with threads of its own (the ack journal)
 * hands its jobs back the same way.  After the call the job is the worker's. */
void offload_finish(struct offload_job *job);
/* Worker side: run the done() callbacks of finished jobs (from the worker's event). */
void offload_complete(struct worker *w);

#endif
