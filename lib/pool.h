/*
 * pool.h - a bounded worker pool for blocking work (disk, SQLite,
 * hashing), kept off libuv's shared thread pool which also serves every
 * uv_fs_* call.
 *
 * A fixed number of threads take jobs from a FIFO queue.  Submitting never
 * blocks: a full pool queues the job and logs the queue depth (at most
 * once a second).  Each job's done() runs on the loop thread after its
 * work() returns.  pool_stop() lets running jobs finish, then calls done()
 * with cancelled=1 for every job still queued (so that its owner can
 * return what it claimed), then joins the threads: every job is either
 * finished or returned, never forgotten.
 */
#ifndef SITESRV_POOL_H
#define SITESRV_POOL_H

#include <uv.h>
#include "common.h"

struct pool;

struct pool_job {
    void (*work)(struct pool_job *j);                 /* worker thread */
    void (*done)(struct pool_job *j, int cancelled);  /* loop thread */
    struct pool_job *next;                            /* private */
};

/* nthreads >= 1.  NULL on failure (logged). */
struct pool *pool_new(uv_loop_t *loop, const char *name, int nthreads);
void   pool_submit(struct pool *p, struct pool_job *j);
size_t pool_queued(struct pool *p);    /* waiting, not running */
size_t pool_running(struct pool *p);
int    pool_threads(struct pool *p);
/* Stop and free, as described above.  Must be called on the loop thread;
 * runs the loop until every done() has run. */
void   pool_stop(struct pool *p);

#endif
