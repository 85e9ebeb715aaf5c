/*
 * The offload pool: a mutex/condvar queue feeding a few threads.  Jobs are
 * rare (credential cache misses) and long, so a simple queue is right.
 */
#include "aigate/core/offload.h"

#include <pthread.h>
#include <stdlib.h>

#include "aigate/net/worker.h"

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static struct offload_job *queue_head, *queue_tail;
static pthread_t *threads;
static int nthreads, stopping;

static void *
offload_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&pool_mu);
        while (!queue_head && !stopping)
            pthread_cond_wait(&pool_cv, &pool_mu);
        struct offload_job *job = queue_head;
        if (!job) {
            pthread_mutex_unlock(&pool_mu);
            return NULL;
        }
        queue_head = job->next;
        if (!queue_head)
            queue_tail = NULL;
        pthread_mutex_unlock(&pool_mu);

        if (!atomic_load_explicit(&job->cancelled, memory_order_relaxed))
            job->run(job);
        offload_finish(job);
    }
}

void
offload_finish(struct offload_job *job)
{
    struct worker *w = job->w;
    pthread_mutex_lock(&w->done_mu);
    job->next = w->done_jobs;
    w->done_jobs = job;
    pthread_mutex_unlock(&w->done_mu);
    worker_wake(w);
}

int
offload_start(int n)
{
    threads = calloc((size_t)n, sizeof(*threads));
    if (!threads)
        return -1;
    for (; nthreads < n; nthreads++) {
        if (pthread_create(&threads[nthreads], NULL, offload_main, NULL) != 0)
            break;
        pthread_setname_np(threads[nthreads], "aigate-offload");
    }
    return nthreads > 0 ? 0 : -1;
}

/* Finish what is queued, then join.  Call after the workers have stopped. */
void
offload_stop(void)
{
    pthread_mutex_lock(&pool_mu);
    stopping = 1;
    pthread_cond_broadcast(&pool_cv);
    pthread_mutex_unlock(&pool_mu);
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    threads = NULL;
    nthreads = 0;
}

int
offload_submit(struct offload_job *job)
{
    pthread_mutex_lock(&pool_mu);
    if (stopping || nthreads == 0) {
        pthread_mutex_unlock(&pool_mu);
        return -1;
    }
    job->next = NULL;
    if (queue_tail)
        queue_tail->next = job;
    else
        queue_head = job;
    queue_tail = job;
    pthread_cond_signal(&pool_cv);
    pthread_mutex_unlock(&pool_mu);
    return 0;
}

void
offload_cancel(struct offload_job *job)
{
    job->owner = NULL;
    atomic_store_explicit(&job->cancelled, 1, memory_order_relaxed);
}

void
offload_complete(struct worker *w)
{
    pthread_mutex_lock(&w->done_mu);
    struct offload_job *job = w->done_jobs;
    w->done_jobs = NULL;
    pthread_mutex_unlock(&w->done_mu);
    while (job) {
        struct offload_job *next = job->next;
        if (job->owner)
            job->done(job);
        job->release(job);
        job = next;
    }
}
