/*
 * pool.c - a bounded pool of worker threads for blocking work.
 *
 * SYNOPSIS
 *   pool_new(loop, name, nthreads)
 *   pool_submit(pool, job)
 *   pool_queued(pool) pool_running(pool) pool_threads(pool)
 *   pool_stop(pool)
 *
 * DESCRIPTION
 *   Daemons hand blocking work (copying into the store, SQLite, hashing)
 *   to a fixed set of threads of their own rather than to libuv's shared
 *   pool, which also runs every uv_fs_* request: a few long copies there
 *   would stall all file operations of the loop.
 *
 *   Jobs wait in a FIFO (a singly linked list with head and tail, under
 *   one mutex; workers sleep on a condition variable).  When a worker
 *   finishes a job it appends it to a done list and wakes the loop with a
 *   uv_async_t; the loop thread then calls done(job, 0) for each, so that
 *   owners never see their callbacks on a foreign thread.
 *
 *   Submitting never blocks and never fails: "the pool is full" just
 *   means a longer queue, which is logged (at most once a second) so that
 *   an operator sees a backlog instead of a hang (SPEC 4.3, the SMS
 *   "waiting for an available despooling thread").
 *
 *   pool_stop() takes every queued job off the queue and returns it with
 *   done(job, 1), lets the running ones finish (done(job, 0)), joins the
 *   threads and closes the async handle: every job is finished or
 *   returned, exactly once.  A job submitted from a done() callback while
 *   the pool stops is returned the same way.
 *
 *   Worker threads are created with every asynchronous signal blocked, so
 *   that SIGTERM, SIGHUP and friends are delivered to the loop thread,
 *   where the daemon's uv_signal_t handlers expect them.
 *
 * DIAGNOSTICS
 *   pool_new logs and returns NULL if a thread or the async handle
 *   cannot be created.  pool_submit logs a warning with the queue depth
 *   when more jobs wait than there are threads (at most once a second),
 *   and emits status message 8005 about it (at most once in ten minutes).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "statmsg.h"
#include "util.h"

/* Status message 8005 (a backlog) at most this often per pool. */
#define POOL_MSG_INTERVAL_MS (10 * 60 * 1000)

struct pool {
    uv_loop_t       *loop;
    char             name[32];
    int              nthreads;
    int              nstarted;      /* threads actually created */
    pthread_t       *threads;
    uv_async_t       async;
    int              async_ok;      /* async initialised */
    int              closed;        /* async close callback ran */

    pthread_mutex_t  mu;            /* guards everything below */
    pthread_cond_t   cv;            /* a job was queued, or stopping */
    struct pool_job *qhead, *qtail; /* waiting jobs, FIFO */
    size_t           queued;
    size_t           running;
    struct pool_job *dhead, *dtail; /* finished, done() not yet called */
    int              stopping;
    int64_t          last_warn_ms;  /* monotonic: last backlog warning */
    int64_t          last_msg_ms;   /* monotonic: last status message 8005 */
};

static void list_append(struct pool_job **head, struct pool_job **tail, struct pool_job *j)
{
    j->next = NULL;
    if (*tail != NULL)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    struct pool_job *j;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stopping && p->qhead == NULL)
            pthread_cond_wait(&p->cv, &p->mu);
        /* Once stopping, queued jobs belong to pool_stop, which returns
         * them; a worker only finishes the job it already runs. */
        if (p->stopping)
            break;
        j = p->qhead;
        p->qhead = j->next;
        if (p->qhead == NULL)
            p->qtail = NULL;
        p->queued--;
        p->running++;
        pthread_mutex_unlock(&p->mu);

        j->work(j);

        pthread_mutex_lock(&p->mu);
        p->running--;
        list_append(&p->dhead, &p->dtail, j);
        /* uv_async_send is thread safe and coalesces wake-ups; the handle
         * is closed only after every worker has been joined. */
        uv_async_send(&p->async);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Loop thread: call done(j, 0) for every finished job. */
static void run_done(struct pool *p)
{
    struct pool_job *j, *next;

    pthread_mutex_lock(&p->mu);
    j = p->dhead;
    p->dhead = p->dtail = NULL;
    pthread_mutex_unlock(&p->mu);
    for (; j != NULL; j = next) {
        next = j->next;      /* done() may free or resubmit j */
        j->done(j, 0);
    }
}

static void on_async(uv_async_t *h)
{
    run_done(h->data);
}

static void on_close(uv_handle_t *h)
{
    struct pool *p = h->data;
    p->closed = 1;
}

/* Stop and join the first p->nstarted threads (pool_new's error path and
 * pool_stop). */
static void join_all(struct pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nstarted; i++)
        pthread_join(p->threads[i], NULL);
    p->nstarted = 0;
}

static void pool_free(struct pool *p)
{
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

struct pool *pool_new(uv_loop_t *loop, const char *name, int nthreads)
{
    struct pool *p;
    int r;

    if (nthreads < 1) {
        log_error("pool %s: %d threads requested; at least one is needed", name, nthreads);
        return NULL;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL || (p->threads = calloc((size_t)nthreads, sizeof *p->threads)) == NULL) {
        log_error("pool %s: out of memory", name);
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->nthreads = nthreads;
    p->last_warn_ms = INT64_MIN / 2;
    ss_strcpy(p->name, sizeof p->name, name);   /* a cut name is fine in a log */
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);

    /* Workers take no asynchronous signal (ss_thread_create): those are
     * the loop thread's. */
    for (int i = 0; i < nthreads; i++) {
        r = ss_thread_create(&p->threads[i], worker, p);
        if (r < 0) {
            log_error("pool %s: cannot create worker thread %d of %d: %s",
                      p->name, i + 1, nthreads, strerror(-r));
            join_all(p);
            pool_free(p);
            return NULL;
        }
        p->nstarted++;
    }

    /* No job can complete before pool_new returns, so initialising the
     * async handle after the threads is safe, and keeps the error path
     * above free of handles that would need the loop to close. */
    r = uv_async_init(loop, &p->async, on_async);
    if (r < 0) {
        log_error("pool %s: cannot create the wake-up handle: %s", p->name, uv_strerror(r));
        join_all(p);
        pool_free(p);
        return NULL;
    }
    p->async.data = p;
    p->async_ok = 1;
    return p;
}

void pool_submit(struct pool *p, struct pool_job *j)
{
    size_t queued = 0, running = 0;
    int warn = 0, msg = 0;

    pthread_mutex_lock(&p->mu);
    list_append(&p->qhead, &p->qtail, j);
    p->queued++;
    if (!p->stopping) {
        pthread_cond_signal(&p->cv);
        if (p->queued > (size_t)p->nthreads) {
            int64_t now = ss_mono_ms();
            if (now - p->last_warn_ms >= 1000) {
                p->last_warn_ms = now;
                warn = 1;
                queued = p->queued;
                running = p->running;
            }
            /* A status message too, but rarely: a backlog is a condition,
             * not an event per job. */
            if (warn && (p->last_msg_ms == 0 || now - p->last_msg_ms >= POOL_MSG_INTERVAL_MS)) {
                p->last_msg_ms = now;
                msg = 1;
            }
        }
    }
    pthread_mutex_unlock(&p->mu);
    /* Log outside the lock: workers should not wait on our log write. */
    if (warn)
        log_warn("pool %s: %zu jobs waiting, %zu running", p->name, queued, running);
    if (msg) {
        char q[24], t[24];
        snprintf(q, sizeof q, "%zu", queued);
        snprintf(t, sizeof t, "%d", p->nthreads);
        sm_emit(SM_POOL_BACKLOG, 0, NULL, p->name, q, t, NULL);
    }
}

size_t pool_queued(struct pool *p)
{
    size_t n;
    pthread_mutex_lock(&p->mu);
    n = p->queued;
    pthread_mutex_unlock(&p->mu);
    return n;
}

size_t pool_running(struct pool *p)
{
    size_t n;
    pthread_mutex_lock(&p->mu);
    n = p->running;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int pool_threads(struct pool *p)
{
    return p->nthreads;
}

/* Loop thread: return every queued job with done(j, 1).  Returns how many. */
static size_t cancel_queued(struct pool *p)
{
    struct pool_job *j, *next;
    size_t n = 0;

    pthread_mutex_lock(&p->mu);
    j = p->qhead;
    p->qhead = p->qtail = NULL;
    p->queued = 0;
    pthread_mutex_unlock(&p->mu);
    for (; j != NULL; j = next, n++) {
        next = j->next;
        j->done(j, 1);
    }
    return n;
}

void pool_stop(struct pool *p)
{
    int more;

    if (p == NULL)
        return;
    /* Stop the workers taking new jobs, then return the queued ones at
     * once: their owners can put back what they claimed while the
     * running jobs finish. */
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    cancel_queued(p);

    /* Running jobs finish normally; joining waits for them. */
    join_all(p);

    /* done() callbacks may submit again; those jobs are returned too,
     * until nothing is left. */
    do {
        pthread_mutex_lock(&p->mu);
        more = p->dhead != NULL || p->qhead != NULL;
        pthread_mutex_unlock(&p->mu);
        run_done(p);
        cancel_queued(p);
    } while (more);

    if (p->async_ok) {
        /* A handle must be closed, and its close callback run, before
         * its memory is freed.  UV_RUN_NOWAIT processes pending closes
         * without waiting for the daemon's other handles. */
        uv_close((uv_handle_t *)&p->async, on_close);
        while (!p->closed)
            uv_run(p->loop, UV_RUN_NOWAIT);
    }
    pool_free(p);
}
