/*
 * distmgr - the Distribution Manager daemon.
 *
 * SUMMARY
 *   Turns package sources into stored, hashed package versions, brings
 *   the site's distribution points to them, and hands each version to the
 *   scheduler once per child site (SPEC 3, 4.1).
 *
 * DESCRIPTION
 *   This file is the loop side; the work is in tasks.c.  The loop reads
 *   the package requests of inboxes/distmgr.box (sitectl writes the
 *   database first, so a request only says "look at package X"), keeps a
 *   small record per package of what is wanted and what runs, and submits
 *   tasks to a pool of distmgr.threads workers:
 *
 *     T_PKG  one per package at a time, and never beside a T_DP of the
 *            same package: a new version, child-site jobs, a deletion
 *     T_DP   one per (package, DP) at a time, DPs in parallel
 *     T_SCAN the whole site: at start, after `retry now` for every
 *            package, when a retry is due, and every minute
 *     T_GC   store objects no version uses: at start, after a failed walk
 *
 *   An update request stays claimed in work/ until the T_PKG that answers
 *   it has finished, so a kill never loses one (inbox_recover returns it
 *   at the next start).  Retries are not counted in memory: the retry
 *   table says when each (package, version, DP) is due, the timer fires
 *   then, and a scan finds what is due.
 *
 *   At stop, running tasks see the stop flag between files (a DP install
 *   removes its staging tree, a source walk its partial object) and the
 *   database connections are interrupted; claimed requests go back to the
 *   inbox.
 *
 * DIAGNOSTICS
 *   logs/distmgr.log.  The ready file shows versions made, DP installs,
 *   DP failures, requests quarantined and the tasks queued and running.
 *   Exit status 0 after an orderly stop, 1 when it cannot start (bad
 *   site.conf, the database, the inboxes or the store missing).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "distmgr.h"
#include "fsutil.h"
#include "log.h"
#include "manifest.h"
#include "pkgreq.h"
#include "sitedb.h"

#define SCAN_EVERY_MS   60000   /* a scan at least this often */
#define BACKOFF_MS      5000    /* after a task the database refused */
#define INTAKE_BATCH    64

static void pump(struct distmgr *dm, struct pkg *p);
static void want_scan(struct distmgr *dm);
static void want_gc(struct distmgr *dm);

/* ---------------------------------------------------------------- packages */

static struct pkg *pkg_get(struct distmgr *dm, const char *id, int create)
{
    struct pkg *p;

    for (p = dm->pkgs; p; p = p->next)
        if (strcmp(p->id, id) == 0)
            return p;
    if (!create || !(p = calloc(1, sizeof *p)))
        return NULL;
    (void)ss_strcpy(p->id, sizeof p->id, id);
    p->next = dm->pkgs;
    dm->pkgs = p;
    return p;
}

static int name_in(const struct dpname *l, const char *name)
{
    for (; l; l = l->next)
        if (strcmp(l->name, name) == 0)
            return 1;
    return 0;
}

static void name_add(struct dpname **l, const char *name)
{
    struct dpname *n;

    if (name_in(*l, name) || !(n = calloc(1, sizeof *n)))
        return;
    (void)ss_strcpy(n->name, sizeof n->name, name);
    n->next = *l;
    *l = n;
}

static void name_del(struct dpname **l, const char *name)
{
    for (; *l; l = &(*l)->next)
        if (strcmp((*l)->name, name) == 0) {
            struct dpname *n = *l;
            *l = n->next;
            free(n);
            return;
        }
}

static void names_free(struct dpname **l)
{
    while (*l) {
        struct dpname *n = *l;
        *l = n->next;
        free(n);
    }
}

/* Requests answered (done) or given back to the inbox (returned). */
static void reqs_finish(struct distmgr *dm, struct reqname **l, int give_back)
{
    while (*l) {
        struct reqname *r = *l;
        int rc = give_back ? inbox_return(&dm->reqbox, r->name) : inbox_done(&dm->reqbox, r->name);
        if (rc < 0 && rc != -ENOENT)
            log_warn("request %s: cannot %s it: %s", r->name,
                     give_back ? "return" : "remove", strerror(-rc));
        *l = r->next;
        free(r);
    }
}

/* Forget a package the loop has nothing more to do for. */
static void pkg_forget_if_idle(struct distmgr *dm, struct pkg *p)
{
    struct pkg **pp;

    if (p->excl || p->ndp || p->want_pkg || p->dp_want || p->reqs || p->reqs_running)
        return;
    for (pp = &dm->pkgs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            free(p);
            return;
        }
}

/* ---------------------------------------------------------------- tasks */

static void arm_retry_timer(struct distmgr *dm, int64_t next_ms);

static void task_done(struct pool_job *j, int cancelled)
{
    struct task *t = (struct task *)j;
    struct distmgr *dm = t->dm;
    struct pkg *p = t->kind == T_SCAN ? NULL : pkg_get(dm, t->pkg, 0);
    int stopped = cancelled || t->rc == -EINTR || daemon_stopping(dm->d);

    if (t->kind == T_SCAN)
        dm->scan_busy = 0;
    if (t->kind == T_GC)
        dm->gc_busy = 0;
    if (p && t->kind == T_PKG) {
        p->excl = 0;
        if (stopped) {
            reqs_finish(dm, &p->reqs_running, 1);
        } else if (t->rc < 0) {
            /* The database refused: the requests wait for the next try. */
            struct reqname **l = &p->reqs_running;
            while (*l)
                l = &(*l)->next;
            *l = p->reqs;
            p->reqs = p->reqs_running;
            p->reqs_running = NULL;
            p->want_pkg = 1;
            p->want_version = (t->new_version > p->want_version ? t->new_version : p->want_version);
            /* Not at once: a task that failed now fails again now. */
            p->not_before = ss_mono_ms() + BACKOFF_MS;
            arm_retry_timer(dm, ss_now_ms() + BACKOFF_MS);
        } else {
            reqs_finish(dm, &p->reqs_running, 0);
            dm->versions += t->outcome == 1;
            if (t->outcome == 2)
                dm->gc_again = 1;   /* the failed walk may have stored objects */
        }
    }
    if (p && t->kind == T_DP) {
        p->ndp--;
        name_del(&p->dp_busy, t->dp);
        dm->installs += t->outcome == 1;
        dm->failures += t->outcome == 2;
        if (t->deleting && !stopped)
            p->want_pkg = 1;    /* finish the deletion when every DP is done */
        if (t->rc < 0 && !stopped)
            arm_retry_timer(dm, ss_now_ms() + BACKOFF_MS);
    }
    if (!stopped) {
        for (size_t i = 0; i < t->nwants; i++) {
            struct want *w = &t->wants[i];
            struct pkg *q = pkg_get(dm, w->pkg, 1);
            if (!q)
                continue;
            if (w->dp[0] == 0 || strcmp(w->dp, "+") == 0) {
                q->want_pkg = 1;
                if (w->dp[0] == '+')
                    q->want_version = q->want_version > VERSION_IF_DUE ? q->want_version : VERSION_IF_DUE;
            } else {
                name_add(&q->dp_want, w->dp);
            }
        }
        for (size_t i = 0; i < t->nwants; i++) {
            struct pkg *q = pkg_get(dm, t->wants[i].pkg, 0);
            if (q)
                pump(dm, q);
        }
        if (t->next_retry != INT64_MAX)
            arm_retry_timer(dm, t->next_retry);
    }
    if (p) {
        if (t->gone && !stopped) {
            names_free(&p->dp_want);    /* nothing left to serve */
            p->want_pkg = 0;
        }
        if (!stopped)
            pump(dm, p);
        pkg_forget_if_idle(dm, p);
    }
    if (t->kind == T_SCAN && dm->scan_again && !stopped) {
        dm->scan_again = 0;
        want_scan(dm);
    }
    if (dm->gc_again && !dm->gc_busy && !stopped) {
        dm->gc_again = 0;
        want_gc(dm);
    }
    free(t->wants);
    free(t);
}

static void submit(struct distmgr *dm, enum task_kind kind, const char *pkg, const char *dp,
                   int new_version)
{
    struct task *t = calloc(1, sizeof *t);

    if (!t) {
        log_error("out of memory: task for %s not run; the next scan finds it", pkg ? pkg : "scan");
        return;
    }
    t->dm = dm;
    t->kind = kind;
    t->new_version = new_version;
    t->next_retry = INT64_MAX;
    (void)ss_strcpy(t->pkg, sizeof t->pkg, pkg ? pkg : "");
    (void)ss_strcpy(t->dp, sizeof t->dp, dp ? dp : "");
    t->job.work = task_work;
    t->job.done = task_done;
    pool_submit(dm->pool, &t->job);
}

/* Start what a package may start now (see distmgr.h for the rule). */
static void pump(struct distmgr *dm, struct pkg *p)
{
    struct dpname *n, *next;

    if (daemon_stopping(dm->d) || p->excl)
        return;
    if (p->want_pkg) {
        if (p->ndp || ss_mono_ms() < p->not_before)
            return;             /* the DP tasks finish first; or backing off */
        p->excl = 1;
        p->reqs_running = p->reqs;
        p->reqs = NULL;
        submit(dm, T_PKG, p->id, NULL, p->want_version);
        p->want_pkg = p->want_version = 0;
        return;
    }
    for (n = p->dp_want; n; n = next) {
        next = n->next;
        if (name_in(p->dp_busy, n->name))
            continue;           /* runs again after the current one */
        name_add(&p->dp_busy, n->name);
        p->ndp++;
        submit(dm, T_DP, p->id, n->name, 0);
        name_del(&p->dp_want, n->name);
    }
}

static void want_scan(struct distmgr *dm)
{
    if (daemon_stopping(dm->d))
        return;
    if (dm->scan_busy) {
        dm->scan_again = 1;
        return;
    }
    dm->scan_busy = 1;
    submit(dm, T_SCAN, NULL, NULL, 0);
}

/* Collect store objects no version uses: at start, after a failed walk. */
static void want_gc(struct distmgr *dm)
{
    if (daemon_stopping(dm->d))
        return;
    if (dm->gc_busy) {
        dm->gc_again = 1;
        return;
    }
    dm->gc_busy = 1;
    submit(dm, T_GC, NULL, NULL, 0);
}

static void retry_timer_cb(uv_timer_t *tm)
{
    struct distmgr *dm = tm->data;

    want_scan(dm);
    /* Packages whose task backed off after a failure. */
    for (struct pkg *p = dm->pkgs; p; p = p->next)
        if (p->want_pkg)
            pump(dm, p);
    /* Until a task says otherwise, look again within a minute. */
    uv_timer_start(&dm->retry_timer, retry_timer_cb, SCAN_EVERY_MS, 0);
}

static void arm_retry_timer(struct distmgr *dm, int64_t next_ms)
{
    int64_t wait = next_ms - ss_now_ms();
    uint64_t want = wait > 0 ? (uint64_t)wait + 1 : 0, left;

    if (daemon_stopping(dm->d))
        return;
    /* A retry already due that the last scan did not start (its DP task
     * is running, or nothing can act on it) must not make the timer fire
     * again at once, and again: look again in a second. */
    if (wait <= 0)
        want = 1000;
    left = uv_timer_get_due_in(&dm->retry_timer);
    if (!uv_is_active((uv_handle_t *)&dm->retry_timer) || want < left)
        uv_timer_start(&dm->retry_timer, retry_timer_cb, want, 0);
}

/* ---------------------------------------------------------------- requests */

static void intake_one(struct distmgr *dm, const char *name)
{
    struct pkgreq r;
    char err[SS_ERR_MAX], *buf = NULL;
    size_t len = 0;
    struct pkg *p;
    int rc;

    if ((rc = inbox_claim(&dm->reqbox, name)) < 0) {
        if (rc != -ENOENT)
            log_warn("request %s: cannot claim it: %s", name, strerror(-rc));
        return;
    }
    rc = ss_read_file(dm->reqbox.workfd, name, PKGREQ_MAX_SIZE, &buf, &len);
    if (rc == -EFBIG) {
        (void)ss_fmt(err, sizeof err, "larger than %d bytes", PKGREQ_MAX_SIZE);
    } else if (rc < 0) {
        log_warn("request %s: cannot read it: %s; it waits in the inbox", name, strerror(-rc));
        (void)inbox_return(&dm->reqbox, name);
        return;
    } else {
        rc = pkgreq_parse(buf, len, &r, err, sizeof err);
    }
    free(buf);
    if (rc < 0) {
        dm->quarantined++;
        (void)inbox_quarantine(&dm->reqbox, 1, name, err);
        return;
    }
    log_info("request %s: %s %s", name, pkgreq_action_name(r.action), r.package);
    if (r.action == PKGREQ_RETRY && strcmp(r.package, "*") == 0) {
        (void)inbox_done(&dm->reqbox, name);
        want_scan(dm);
        return;
    }
    if (!(p = pkg_get(dm, r.package, 1))) {
        (void)inbox_return(&dm->reqbox, name);
        return;
    }
    if (r.action == PKGREQ_UPDATE) {
        /* Answered when the version task that follows it is done. */
        struct reqname *q = calloc(1, sizeof *q);
        if (!q) {
            (void)inbox_return(&dm->reqbox, name);
            return;
        }
        (void)ss_strcpy(q->name, sizeof q->name, name);
        q->next = p->reqs;
        p->reqs = q;
        p->want_version = VERSION_ASKED;
    } else {
        /* The database holds a deletion and `retry now`; the request
         * only wakes us. */
        (void)inbox_done(&dm->reqbox, name);
    }
    p->want_pkg = 1;
    pump(dm, p);
}

static void watch_cb(struct daemon_watch *w, void *arg)
{
    struct distmgr *dm = arg;
    struct inbox_entry ents[INTAKE_BATCH];
    size_t n = 0;
    int rc;

    if ((rc = inbox_scan(&dm->reqbox, ents, SS_ARRAY_LEN(ents), &n)) < 0) {
        log_warn("cannot list %s: %s", dm->reqbox.path, strerror(-rc));
        return;
    }
    for (size_t i = 0; i < n && !daemon_stopping(dm->d); i++) {
        if (ents[i].odd) {
            dm->quarantined++;
            (void)inbox_quarantine(&dm->reqbox, 0, ents[i].name,
                                   "not a package request name (<prefix>-<32 hex>.pkg)");
            continue;
        }
        intake_one(dm, ents[i].name);
    }
    if (n == SS_ARRAY_LEN(ents))
        daemon_watch_kick(w);
}

/* ---------------------------------------------------------------- runtime */

/* Objects a killed source walk left half-written in store/.tmp.  Only old
 * ones: the despooler may be writing a fresh one right now. */
static void store_tmp_cleanup(struct distmgr *dm)
{
    char path[SS_PATH_MAX];
    struct dirent *de;
    struct stat sb;
    size_t n = 0;
    DIR *dir;
    int fd;

    if (ss_path(path, sizeof path, "%s/.tmp", dm->store) < 0 || !(dir = opendir(path)))
        return;
    fd = dirfd(dir);
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.' || fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(sb.st_mode) || sb.st_mtime > time(NULL) - INBOX_TMP_STALE_S)
            continue;
        if (unlinkat(fd, de->d_name, 0) == 0)
            n++;
    }
    closedir(dir);
    if (n)
        log_info("store: removed %zu partial objects of an interrupted run from %s", n, path);
}

static void set_policy(struct distmgr *dm, const struct ss_conf *c)
{
    dm->policy.first_ms = c->distmgr_retry_delay;
    dm->policy.max_ms = c->distmgr_retry_max_delay;
    dm->policy.max_attempts = c->distmgr_max_retries;
    dm->policy.jitter = 0.1;
}

static int distmgr_start(struct daemon *d)
{
    struct distmgr *dm = daemon_priv(d);
    const struct ss_conf *c = daemon_conf(d);
    char path[SS_PATH_MAX];
    size_t returned = 0, removed = 0;
    int rc;

    dm->d = d;
    dm->outfd = -1;
    (void)ss_strcpy(dm->root, sizeof dm->root, daemon_root(d));
    (void)ss_strcpy(dm->site, sizeof dm->site, c->site_code);
    set_policy(dm, c);
    sitedb_pool_init(&dm->dbs, dm->root);
    if ((rc = ss_path(dm->store, sizeof dm->store, "%s/store", dm->root)) < 0 ||
        (rc = store_init(dm->store)) < 0) {
        log_error("cannot prepare the content store %s/store: %s", dm->root, strerror(-rc));
        return -1;
    }
    store_tmp_cleanup(dm);
    if ((rc = inbox_open(&dm->reqbox, dm->root, IB_DISTMGR, dm->site, 1)) < 0) {
        log_error("cannot open inbox distmgr.box under %s/inboxes: %s", dm->root, strerror(-rc));
        return -1;
    }
    if ((rc = inbox_open(&dm->schedbox, dm->root, IB_SCHEDULE, dm->site, 0)) < 0) {
        log_error("cannot open inbox schedule.box under %s/inboxes: %s", dm->root, strerror(-rc));
        return -1;
    }
    if ((rc = ss_path(path, sizeof path, "%s/outgoing", dm->reqbox.path)) < 0 ||
        (rc = ss_mkdir_p(path, 0750)) < 0 ||
        (dm->outfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        log_error("cannot open %s/outgoing: %s", dm->reqbox.path,
                  strerror(rc < 0 ? -rc : errno));
        return -1;
    }
    if ((rc = inbox_recover(&dm->reqbox, &returned, &removed)) < 0) {
        log_error("cannot recover %s: %s", dm->reqbox.path, strerror(-rc));
        return -1;
    }
    if (returned)
        log_info("%zu requests of an interrupted run returned to the inbox", returned);
    if ((rc = dm_recover_jobs(dm)) < 0) {
        log_error("cannot finish the jobs of an interrupted run: %s", strerror(-rc));
        return -1;
    }
    if (!(dm->pool = daemon_pool(d, (int)c->distmgr_threads)))
        return -1;
    uv_timer_init(daemon_loop(d), &dm->retry_timer);
    dm->retry_timer.data = dm;
    want_scan(dm);
    want_gc(dm);
    uv_timer_start(&dm->retry_timer, retry_timer_cb, SCAN_EVERY_MS, 0);
    if (!(dm->watch = daemon_watch(d, dm->reqbox.path, SCAN_EVERY_MS, watch_cb, dm)))
        return -1;
    log_info("distmgr serving site %s: %lld workers, retries from %lld ms to %lld ms, "
             "at most %lld attempts", dm->site, c->distmgr_threads,
             (long long)c->distmgr_retry_delay, (long long)c->distmgr_retry_max_delay,
             c->distmgr_max_retries);
    return 0;
}

static void distmgr_reload(struct daemon *d)
{
    struct distmgr *dm = daemon_priv(d);

    set_policy(dm, daemon_conf(d));
    if ((long long)pool_threads(dm->pool) != daemon_conf(d)->distmgr_threads)
        log_warn("distmgr.threads changes take effect at the next start");
    want_scan(dm);
}

static void distmgr_stop(struct daemon *d)
{
    struct distmgr *dm = daemon_priv(d);

    atomic_store(&dm->stopping, 1);
    sitedb_pool_stop(&dm->dbs);
    uv_close((uv_handle_t *)&dm->retry_timer, NULL);
    /* Requests not yet given to a task go back now; those of running or
     * queued tasks in task_done(). */
    for (struct pkg *p = dm->pkgs; p; p = p->next)
        reqs_finish(dm, &p->reqs, 1);
}

static void distmgr_status(struct daemon *d, char *buf, size_t len)
{
    struct distmgr *dm = daemon_priv(d);
    snprintf(buf, len, "versions=%llu\ninstalls=%llu\ndp_failures=%llu\nquarantined=%llu\n",
             (unsigned long long)dm->versions, (unsigned long long)dm->installs,
             (unsigned long long)dm->failures, (unsigned long long)dm->quarantined);
}

static const struct daemon_ops ops = {
    .name = "distmgr",
    .start = distmgr_start,
    .stop = distmgr_stop,
    .reload = distmgr_reload,
    .status = distmgr_status,
};

int main(int argc, char **argv)
{
    static struct distmgr dm = { .dbs.lock = PTHREAD_MUTEX_INITIALIZER, .outfd = -1 };
    int r = daemon_main(argc, argv, &ops, &dm);

    /* The pool is stopped: no task uses the connections or inboxes now. */
    for (struct pkg *p = dm.pkgs, *n; p; p = n) {
        n = p->next;
        reqs_finish(&dm, &p->reqs, 1);
        reqs_finish(&dm, &p->reqs_running, 1);
        names_free(&p->dp_want);
        names_free(&p->dp_busy);
        free(p);
    }
    sitedb_pool_close(&dm.dbs);
    if (dm.outfd >= 0)
        close(dm.outfd);
    inbox_close(&dm.reqbox);
    inbox_close(&dm.schedbox);
    return r;
}
