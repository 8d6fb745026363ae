/*
 * test_pool.c - unit tests for lib/pool.c: every job is done exactly
 * once, the pool never runs more jobs than threads, pool_stop returns
 * queued jobs with cancelled=1 and lets running ones finish, and jobs can
 * be submitted from the loop while others run.
 */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>

#include "fsutil.h"
#include "inbox.h"
#include "pool.h"
#include "statmsg.h"

struct ctx;

struct tjob {
    struct pool_job pj;          /* first: a pool_job * is a tjob * */
    struct ctx *ctx;
    int idx;
    atomic_int worked;           /* times work() ran */
    int done;                    /* times done() ran */
    int cancelled;               /* done(..., 1) */
    int ran_on_loop;             /* done() ran on the loop thread */
};

struct ctx {
    uv_loop_t loop;
    pthread_t loop_thread;
    struct pool *pool;
    int nthreads;
    int total;                   /* jobs expected in all */
    int ndone;
    atomic_int cur;              /* jobs in work() now */
    atomic_int max_cur;
    atomic_int blocked_ok;       /* work() saw SIGTERM blocked */
    int max_running_seen;        /* pool_running() seen from done() */
    int resubmit_until;          /* test_submit_from_loop: jobs to create */
    int created;
    struct tjob *jobs;
    /* gate for test_stop_with_queued */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate_open;
    int first_started;
};

static void track_concurrency(struct ctx *c)
{
    int now = atomic_fetch_add(&c->cur, 1) + 1;
    int m = atomic_load(&c->max_cur);
    while (now > m && !atomic_compare_exchange_weak(&c->max_cur, &m, now))
        ;
}

static void check_signals_blocked(struct ctx *c)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    if (sigismember(&cur, SIGTERM) && sigismember(&cur, SIGHUP))
        atomic_fetch_add(&c->blocked_ok, 1);
}

static void work_plain(struct pool_job *pj)
{
    struct tjob *j = (struct tjob *)pj;
    struct ctx *c = j->ctx;

    track_concurrency(c);
    check_signals_blocked(c);
    atomic_fetch_add(&j->worked, 1);
    if (j->idx % 50 == 0)
        usleep(200);             /* give the others a chance to overlap */
    atomic_fetch_sub(&c->cur, 1);
}

static void done_count(struct pool_job *pj, int cancelled)
{
    struct tjob *j = (struct tjob *)pj;
    struct ctx *c = j->ctx;
    int running = (int)pool_running(c->pool);

    j->done++;
    j->cancelled += cancelled;
    j->ran_on_loop = pthread_equal(pthread_self(), c->loop_thread);
    if (running > c->max_running_seen)
        c->max_running_seen = running;
    if (++c->ndone == c->total)
        uv_stop(&c->loop);
}

static struct ctx *ctx_new(int nthreads, int total)
{
    struct ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(uv_loop_init(&c->loop), 0);
    c->loop_thread = pthread_self();
    c->nthreads = nthreads;
    c->total = total;
    c->jobs = calloc((size_t)total, sizeof *c->jobs);
    assert_non_null(c->jobs);
    for (int i = 0; i < total; i++) {
        c->jobs[i].ctx = c;
        c->jobs[i].idx = i;
        c->jobs[i].pj.work = work_plain;
        c->jobs[i].pj.done = done_count;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->pool = pool_new(&c->loop, "test", nthreads);
    assert_non_null(c->pool);
    assert_int_equal(pool_threads(c->pool), nthreads);
    return c;
}

/* pool_stop must leave nothing open on the loop: uv_loop_close says. */
static void ctx_free(struct ctx *c)
{
    assert_int_equal(uv_loop_close(&c->loop), 0);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->jobs);
    free(c);
}

static void test_all_done_once(void **state)
{
    struct ctx *c = ctx_new(3, 1000);

    for (int i = 0; i < c->total; i++)
        pool_submit(c->pool, &c->jobs[i].pj);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(c->ndone, c->total);
    assert_int_equal(pool_queued(c->pool), 0);
    pool_stop(c->pool);
    for (int i = 0; i < c->total; i++) {
        assert_int_equal(atomic_load(&c->jobs[i].worked), 1);
        assert_int_equal(c->jobs[i].done, 1);
        assert_int_equal(c->jobs[i].cancelled, 0);
        assert_true(c->jobs[i].ran_on_loop);
    }
    assert_true(atomic_load(&c->max_cur) >= 1);
    assert_true(atomic_load(&c->max_cur) <= 3);
    assert_true(c->max_running_seen <= 3);
    assert_int_equal(atomic_load(&c->blocked_ok), c->total);
    ctx_free(c);
}

static void test_running_bounded(void **state)
{
    static const int threads[] = { 1, 2, 4 };
    for (size_t k = 0; k < sizeof threads / sizeof threads[0]; k++) {
        struct ctx *c = ctx_new(threads[k], 200);
        for (int i = 0; i < c->total; i++)
            pool_submit(c->pool, &c->jobs[i].pj);
        assert_true(pool_running(c->pool) <= (size_t)threads[k]);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        pool_stop(c->pool);
        assert_int_equal(c->ndone, c->total);
        assert_true(atomic_load(&c->max_cur) <= threads[k]);
        assert_true(c->max_running_seen <= threads[k]);
        ctx_free(c);
    }
}

/* The first job blocks until the first cancelled done() opens the gate:
 * so it is certainly running when pool_stop takes the queue, and the
 * others are certainly still queued. */
static void work_gated(struct pool_job *pj)
{
    struct tjob *j = (struct tjob *)pj;
    struct ctx *c = j->ctx;

    atomic_fetch_add(&j->worked, 1);
    pthread_mutex_lock(&c->mu);
    c->first_started = 1;
    pthread_cond_broadcast(&c->cv);
    while (!c->gate_open)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void done_gate(struct pool_job *pj, int cancelled)
{
    struct tjob *j = (struct tjob *)pj;
    struct ctx *c = j->ctx;

    if (cancelled) {
        pthread_mutex_lock(&c->mu);
        c->gate_open = 1;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    j->done++;
    j->cancelled += cancelled;
    j->ran_on_loop = pthread_equal(pthread_self(), c->loop_thread);
    c->ndone++;
}

/* Submit every job with the given done(), the first one gated, and wait
 * until that one runs. */
static void submit_gated(struct ctx *c, void (*done)(struct pool_job *, int))
{
    for (int i = 0; i < c->total; i++) {
        c->jobs[i].pj.work = i == 0 ? work_gated : work_plain;
        c->jobs[i].pj.done = done;
        pool_submit(c->pool, &c->jobs[i].pj);
    }
    pthread_mutex_lock(&c->mu);
    while (!c->first_started)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void test_stop_with_queued(void **state)
{
    struct ctx *c = ctx_new(1, 10);

    submit_gated(c, done_gate);
    assert_int_equal(pool_running(c->pool), 1);
    assert_int_equal(pool_queued(c->pool), 9);

    pool_stop(c->pool);
    assert_int_equal(c->ndone, 10);
    assert_int_equal(atomic_load(&c->jobs[0].worked), 1);
    assert_int_equal(c->jobs[0].done, 1);
    assert_int_equal(c->jobs[0].cancelled, 0);    /* ran: finished normally */
    for (int i = 1; i < c->total; i++) {
        assert_int_equal(atomic_load(&c->jobs[i].worked), 0);
        assert_int_equal(c->jobs[i].done, 1);
        assert_int_equal(c->jobs[i].cancelled, 1);
    }
    for (int i = 0; i < c->total; i++)
        assert_true(c->jobs[i].ran_on_loop);
    ctx_free(c);
}

/* Stopping an idle pool, and a pool whose jobs finished but whose
 * done() calls have not run yet: those run during pool_stop. */
static void test_stop_idle_and_pending_done(void **state)
{
    struct ctx *c = ctx_new(2, 20);
    pool_stop(c->pool);
    ctx_free(c);

    c = ctx_new(2, 20);
    for (int i = 0; i < c->total; i++)
        pool_submit(c->pool, &c->jobs[i].pj);
    /* Wait (without the loop) until every job has left the queue and
     * finished; their done() calls are then pending on the loop. */
    while (pool_queued(c->pool) > 0 || pool_running(c->pool) > 0)
        usleep(1000);
    pool_stop(c->pool);
    int worked = 0, cancelled = 0;
    for (int i = 0; i < c->total; i++) {
        assert_int_equal(c->jobs[i].done, 1);
        worked += atomic_load(&c->jobs[i].worked);
        cancelled += c->jobs[i].cancelled;
    }
    assert_int_equal(worked, c->total);
    assert_int_equal(cancelled, 0);
    ctx_free(c);
}

/* done() submits the next jobs from the loop while workers run others. */
static void done_resubmit(struct pool_job *pj, int cancelled)
{
    struct tjob *j = (struct tjob *)pj;
    struct ctx *c = j->ctx;

    done_count(pj, cancelled);
    for (int k = 0; k < 2 && c->created < c->resubmit_until; k++) {
        struct tjob *n = &c->jobs[c->created++];
        n->pj.done = done_resubmit;
        pool_submit(c->pool, &n->pj);
    }
}

static void test_submit_from_loop(void **state)
{
    struct ctx *c = ctx_new(2, 300);

    c->resubmit_until = c->total;
    for (int i = 0; i < 4; i++) {
        struct tjob *n = &c->jobs[c->created++];
        n->pj.done = done_resubmit;
        pool_submit(c->pool, &n->pj);
    }
    uv_run(&c->loop, UV_RUN_DEFAULT);
    pool_stop(c->pool);
    assert_int_equal(c->created, c->total);
    assert_int_equal(c->ndone, c->total);
    for (int i = 0; i < c->total; i++) {
        assert_int_equal(atomic_load(&c->jobs[i].worked), 1);
        assert_int_equal(c->jobs[i].done, 1);
        assert_int_equal(c->jobs[i].cancelled, 0);
    }
    assert_true(atomic_load(&c->max_cur) <= 2);
    ctx_free(c);
}

/* A done() that resubmits while the pool is stopping gets its job back
 * cancelled, and pool_stop still returns. */
static void done_resubmit_once(struct pool_job *pj, int cancelled)
{
    struct tjob *j = (struct tjob *)pj;
    struct ctx *c = j->ctx;

    done_gate(pj, cancelled);
    if (cancelled && j->done == 1)
        pool_submit(c->pool, pj);
}

static void test_resubmit_during_stop(void **state)
{
    struct ctx *c = ctx_new(1, 5);

    submit_gated(c, done_resubmit_once);
    pool_stop(c->pool);
    assert_int_equal(c->jobs[0].done, 1);
    assert_int_equal(c->jobs[0].cancelled, 0);
    for (int i = 1; i < c->total; i++) {
        assert_int_equal(atomic_load(&c->jobs[i].worked), 0);
        assert_int_equal(c->jobs[i].done, 2);
        assert_int_equal(c->jobs[i].cancelled, 2);
    }
    ctx_free(c);
}

/* A full pool says so: a warning in the log, and status message 8005 in
 * the site's inbox, once however many jobs pile up (it is a condition,
 * not an event per job). */
static void test_backlog_status_message(void **state)
{
    char *root = tu_tmpdir_new("test_pool");
    char box[SS_PATH_MAX];
    struct inbox_entry ents[16];
    struct inbox ib;
    size_t n = 0;

    assert_non_null(root);
    assert_int_equal(inbox_create_tree(root), 0);
    sm_set_identity(root, "TST", "test_pool");
    struct ctx *c = ctx_new(1, 10);
    submit_gated(c, done_gate);          /* 1 running, 9 waiting */
    pool_stop(c->pool);
    ctx_free(c);

    assert_int_equal(ss_path(box, sizeof box, "%s/inboxes/statmgr.box/statmsgs", root), 0);
    assert_int_equal(inbox_open_path(&ib, box, IB_STATMSGS, "X", 0), 0);
    assert_int_equal(inbox_scan(&ib, ents, SS_ARRAY_LEN(ents), &n), 0);
    assert_int_equal(n, 1);
    char *buf;
    size_t len;
    struct statmsg m;
    char err[SS_ERR_MAX];
    assert_int_equal(ss_read_file(ib.dirfd, ents[0].name, SM_FILE_MAX, &buf, &len), 0);
    assert_int_equal(sm_parse(&m, buf, len, err, sizeof err), 0);
    free(buf);
    assert_int_equal(m.id, SM_POOL_BACKLOG);
    inbox_close(&ib);
    sm_set_identity(NULL, NULL, NULL);
    tu_tmpdir_free(root);
}

static void test_bad_args(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_null(pool_new(&loop, "bad", 0));
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_done_once),
        cmocka_unit_test(test_running_bounded),
        cmocka_unit_test(test_stop_with_queued),
        cmocka_unit_test(test_stop_idle_and_pending_done),
        cmocka_unit_test(test_submit_from_loop),
        cmocka_unit_test(test_resubmit_during_stop),
        cmocka_unit_test(test_backlog_status_message),
        cmocka_unit_test(test_bad_args),
    };
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
