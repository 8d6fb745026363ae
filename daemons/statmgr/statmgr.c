/*
 * statmgr - the Status Manager daemon.
 *
 * SUMMARY
 *   Records the status message files (*.svf) of statmgr.box/statmsgs (the
 *   site's daemons) and cap/statmsgs.box (the client access point drop
 *   box) in the statmsg table of the site database, each message exactly
 *   once.  Messages dated more than statmgr.future_skew ahead wait in
 *   statmgr.box/futureq until they are due.  Records the status bundles
 *   of child sites (statmgr.box/sites, handed over by the despooler) with
 *   the child as their via, and replicates the messages of the components
 *   in statmgr.replicate to the parent site in status bundles, through
 *   the scheduler (replicate.c).
 *
 * DESCRIPTION
 *   This file is the loop side; the ingestion pass is in ingest.c.  The
 *   loop only watches and schedules: a watch on each inbox (inotify as a
 *   hint, a scan at start and every statmgr.rescan) asks for a pass; one
 *   pass runs at a time on a worker thread, and when it reports that work
 *   is left the next one follows at once.  A timer wakes the pass that
 *   reads futureq when the earliest held message is due, and another
 *   every statmgr.rescan, for files an operator moved there by hand.
 *
 *   A replication run (replicate.c) follows a pass that recorded
 *   something, at most one run per REP_MIN_INTERVAL_MS however many
 *   passes there are, and one runs at start and at every rescan (a parent
 *   added by `sitectl site add` is found that way).  It runs on the same
 *   one worker as the passes: the database connection is theirs too.
 *
 *   When the database refuses a pass (a full disk, a lock held too long)
 *   the files stay where they are and passes back off: from one second,
 *   doubling, to statmgr.rescan, while hints in between only note that
 *   work waits.  A daemon that spins on a full disk fills it with logs.
 *
 *   At stop, a running pass is asked to end (an atomic flag it checks
 *   between files, and sitedb_interrupt for a statement or a wait for the
 *   database lock); its recorded files are removed before it returns, and any
 *   removal still running from an earlier pass is waited for, so nothing
 *   outlives the inboxes.
 *
 * DIAGNOSTICS
 *   logs/statmgr.log (see ingest.c for the passes, replicate.c for the
 *   bundles to the parent).  The ready file shows the totals recorded,
 *   already recorded, quarantined and held, and the status bundles and
 *   messages sent to the parent.  Exit
 *   status 0 after an orderly stop, 1 when it cannot start (bad site.conf,
 *   a database that is refused or cannot be opened, inboxes missing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sitedb.h"
#include "statmgr.h"

static void kick(struct statmgr *s);
static void rep_schedule(struct statmgr *s);

static void due_timer_cb(uv_timer_t *t)
{
    struct statmgr *s = t->data;
    s->futureq_wanted = 1;
    kick(s);
}

/* A file an operator moved back from corrupt/, or one whose event was
 * lost, is found by the rescan: watch events are only hints. */
static void rescan_timer_cb(uv_timer_t *t)
{
    due_timer_cb(t);
    rep_schedule(t->data);
}

/* ---------------------------------------------------------- replication */

static void rep_done(struct pool_job *j, int cancelled)
{
    struct statmgr *s = (struct statmgr *)((char *)j - offsetof(struct statmgr, rjob));
    const struct rep_out *o = &s->rout;

    s->rep_busy = 0;
    if (cancelled || daemon_stopping(s->d))
        return;
    s->bundles_sent += o->bundles;
    s->replicated += o->messages;
    if (o->no_parent && !s->rep_noted) {
        log_info("site.parent is %s, but the site table has no parent row for it yet "
                 "(sitectl site add %s --address ... --key ...); status messages for it "
                 "wait", s->rin.parent, s->rin.parent);
        s->rep_noted = 1;
    } else if (!o->no_parent) {
        s->rep_noted = 0;
    }
    if (o->failed) {
        /* The key, the disk or the database: again at the next rescan,
         * or after the next pass that records something. */
        s->rep_again = 0;
        return;
    }
    if (o->more || s->rep_again) {
        s->rep_again = 0;
        rep_schedule(s);
    }
}

static void rep_timer_cb(uv_timer_t *t)
{
    struct statmgr *s = t->data;
    const struct ss_conf *c = daemon_conf(s->d);

    if (daemon_stopping(s->d))
        return;
    if (s->rep_busy) {
        s->rep_again = 1;
        return;
    }
    ss_strcpy(s->rin.site, sizeof s->rin.site, c->site_code);
    ss_strcpy(s->rin.parent, sizeof s->rin.parent, c->site_parent);
    ss_strcpy(s->rin.components, sizeof s->rin.components, c->statmgr_replicate);
    if (!s->rin.parent[0] || !s->rin.components[0])
        return;                 /* nothing goes up: no run at all */
    s->rep_busy = 1;
    s->rep_last = ss_mono_ms();
    s->rjob.work = rep_run;
    s->rjob.done = rep_done;
    pool_submit(s->pool, &s->rjob);
}

/* A run soon: at once, or REP_MIN_INTERVAL_MS after the last one began. */
static void rep_schedule(struct statmgr *s)
{
    if (daemon_stopping(s->d))
        return;
    if (s->rep_busy) {
        s->rep_again = 1;
        return;
    }
    if (uv_is_active((uv_handle_t *)&s->rep_timer))
        return;
    int64_t wait = s->rep_last + REP_MIN_INTERVAL_MS - ss_mono_ms();
    if (s->rep_last == 0 || wait < 0)
        wait = 0;
    uv_timer_start(&s->rep_timer, rep_timer_cb, (uint64_t)wait, 0);
}

static void backoff_timer_cb(uv_timer_t *t)
{
    kick(t->data);
}

static void watch_cb(struct daemon_watch *w, void *arg)
{
    kick(arg);
}

static void ingest_done(struct pool_job *j, int cancelled)
{
    struct statmgr *s = (struct statmgr *)((char *)j - offsetof(struct statmgr, job));
    const struct pass_out *o = &s->out;

    s->job_busy = 0;
    if (cancelled || daemon_stopping(s->d)) {
        /* A removal crew of the last pass may still be at work. */
        ingest_crew_join(s);
        return;
    }
    s->ingested += o->inserted + o->released;
    s->duplicates += o->dup;
    s->quarantined += o->bad;

    /* What futureq holds, and when the earliest is due. */
    if (o->futureq_read) {
        s->future_held = o->future_held;
    } else {
        s->future_held += o->held;
    }
    if (o->future_due_ms != INT64_MAX) {
        int64_t wait = o->future_due_ms - ss_now_ms();
        uint64_t left = uv_timer_get_due_in(&s->due_timer);
        uint64_t want = wait > 0 ? (uint64_t)wait + 1 : 0;
        if (o->futureq_read || !uv_is_active((uv_handle_t *)&s->due_timer) || want < left)
            uv_timer_start(&s->due_timer, due_timer_cb, want, 0);
    } else if (o->futureq_read) {
        uv_timer_stop(&s->due_timer);
    }

    if (o->failed) {
        /* Back off: 1 s, doubling, up to the rescan interval. */
        int64_t cap = daemon_conf(s->d)->statmgr_rescan, delay = 1000;
        for (int i = 1; i < s->fail_streak && delay < cap; i++)
            delay *= 2;
        if (delay > cap)
            delay = cap;
        s->fail_streak++;
        s->backoff_until = ss_mono_ms() + delay;
        uv_timer_start(&s->backoff_timer, backoff_timer_cb, (uint64_t)delay, 0);
        s->job_again = 1;
        return;
    }
    if (s->fail_streak) {
        log_info("the site database records again after %d refused passes", s->fail_streak);
        s->fail_streak = 0;
    }
    /* A pass that changed nothing does not call for another at once (files
     * that cannot be read now wait for an event or the rescan). */
    int progress = o->inserted || o->released || o->dup || o->bad || o->held || o->bundles;
    if (o->inserted || o->released)
        rep_schedule(s);
    if ((o->more && progress) || s->job_again) {
        s->job_again = 0;
        kick(s);
    }
}

static void kick(struct statmgr *s)
{
    if (daemon_stopping(s->d))
        return;
    if (s->job_busy || ss_mono_ms() < s->backoff_until) {
        s->job_again = 1;
        return;
    }
    const struct ss_conf *c = daemon_conf(s->d);
    s->in.skew_ms = c->statmgr_future_skew;
    s->in.read_futureq = s->futureq_wanted;
    s->in.fail_streak = s->fail_streak;
    s->futureq_wanted = 0;
    s->job_again = 0;
    s->job_busy = 1;
    s->job.work = ingest_pass;
    s->job.done = ingest_done;
    pool_submit(s->pool, &s->job);
}

static int statmgr_start(struct daemon *d)
{
    struct statmgr *s = daemon_priv(d);
    const struct ss_conf *c = daemon_conf(d);
    char err[SS_ERR_MAX];
    uv_loop_t *loop = daemon_loop(d);

    s->d = d;
    s->in.batch = (size_t)c->statmgr_batch;
    ss_strcpy(s->in.site, sizeof s->in.site, c->site_code);
    s->futureq_wanted = 1;          /* look into futureq at the first pass */
    if (ingest_open(s, daemon_root(d), err, sizeof err) < 0 ||
        rep_open(s, daemon_root(d), err, sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    /* One pass at a time: the database takes one writer. */
    s->pool = daemon_pool(d, 1);
    if (s->pool == NULL)
        return -1;
    uv_timer_init(loop, &s->due_timer);
    uv_timer_init(loop, &s->rescan_timer);
    uv_timer_init(loop, &s->backoff_timer);
    uv_timer_init(loop, &s->rep_timer);
    s->due_timer.data = s->rescan_timer.data = s->backoff_timer.data = s->rep_timer.data = s;
    uv_timer_start(&s->rescan_timer, rescan_timer_cb, (uint64_t)c->statmgr_rescan,
                   (uint64_t)c->statmgr_rescan);
    s->watch[0] = daemon_watch(d, s->ib[SRC_STATMSGS].path, c->statmgr_rescan, watch_cb, s);
    s->watch[1] = daemon_watch(d, s->ib[SRC_CAP].path, c->statmgr_rescan, watch_cb, s);
    s->watch[2] = daemon_watch(d, s->sites.path, c->statmgr_rescan, watch_cb, s);
    if (!s->watch[0] || !s->watch[1] || !s->watch[2])
        return -1;
    log_info("statmgr serving site %s: %s and %s, %zu files per inbox and pass",
             c->site_code, s->ib[SRC_STATMSGS].path, s->ib[SRC_CAP].path, s->in.batch);
    if (c->site_parent[0] && c->statmgr_replicate[0])
        log_info("status messages of %s go to parent site %s", c->statmgr_replicate,
                 c->site_parent);
    rep_schedule(s);
    return 0;
}

static void statmgr_reload(struct daemon *d)
{
    struct statmgr *s = daemon_priv(d);
    const struct ss_conf *c = daemon_conf(d);

    for (size_t i = 0; i < SS_ARRAY_LEN(s->watch); i++)
        if (s->watch[i])
            daemon_watch_set_rescan(s->watch[i], c->statmgr_rescan);
    uv_timer_start(&s->rescan_timer, rescan_timer_cb, (uint64_t)c->statmgr_rescan,
                   (uint64_t)c->statmgr_rescan);
    /* The batch size is fixed by the buffers allocated at start. */
    if ((size_t)c->statmgr_batch != s->in.batch)
        log_warn("statmgr.batch changes take effect at the next start");
    s->futureq_wanted = 1;          /* future_skew may have changed */
    kick(s);
    rep_schedule(s);                /* site.parent or statmgr.replicate may have */
}

static void statmgr_stop(struct daemon *d)
{
    struct statmgr *s = daemon_priv(d);

    atomic_store(&s->stopping, 1);
    if (s->job_busy || s->rep_busy)
        sitedb_interrupt(s->db);    /* ends a statement, or a wait for the lock */
    else
        ingest_crew_join(s);
    uv_close((uv_handle_t *)&s->due_timer, NULL);
    uv_close((uv_handle_t *)&s->rescan_timer, NULL);
    uv_close((uv_handle_t *)&s->backoff_timer, NULL);
    uv_close((uv_handle_t *)&s->rep_timer, NULL);
}

static void statmgr_status(struct daemon *d, char *buf, size_t len)
{
    struct statmgr *s = daemon_priv(d);
    snprintf(buf, len, "recorded=%llu\nduplicates=%llu\nquarantined=%llu\nfutureq=%zu\n"
             "bundles_sent=%llu\nreplicated=%llu\n",
             (unsigned long long)s->ingested, (unsigned long long)s->duplicates,
             (unsigned long long)s->quarantined, s->future_held,
             (unsigned long long)s->bundles_sent, (unsigned long long)s->replicated);
}

static const struct daemon_ops ops = {
    .name = "statmgr",
    .start = statmgr_start,
    .stop = statmgr_stop,
    .reload = statmgr_reload,
    .status = statmgr_status,
};

int main(int argc, char **argv)
{
    static struct statmgr s;
    int r = daemon_main(argc, argv, &ops, &s);
    /* The runtime has stopped the pool: nothing else uses the inboxes or
     * the connection now. */
    ingest_close(&s);
    rep_close(&s);
    return r;
}
