/*
 * sender - the Scheduler and Sender daemon.
 *
 * SUMMARY
 *   Turns jobs in inboxes/schedule.box into send requests (sched.c) and
 *   carries each to its next hop's despoolr.box/receive/ (xfer.c), with
 *   per-site concurrency, priorities and a per-site throttle (SPEC 2, 3).
 *
 * DESCRIPTION
 *   This file is the loop.  It knows every send request (requests/R.srq,
 *   loaded at start, added by the scheduler's passes) and starts
 *   transfers on the worker pool: at most sender.max_sendings at once, at
 *   most sender.max_per_site to one site, high priority before medium
 *   before low, then oldest first.
 *
 *   A failed transfer throttles its site as a whole: the retry table
 *   keeps one row per site (scope "send", target the site code) whose
 *   delay grows from sender.retry_delay to sender.retry_max_delay, so a
 *   dead site costs one attempt per delay, never every slot, while other
 *   sites flow.  Its first success clears the row.  The request keeps its
 *   attempts, last error and confirmed offset in its own file.  A request
 *   older than sender.job_lifetime (from its job's creation) is removed
 *   with 8203.
 *
 *   A transfer that ends -- sent, failed, or stopped -- reports to the
 *   loop in the pool's done(); only the loop changes the request list,
 *   the sites and the database.  At stop, the workers see the stop flag
 *   between chunks, record their offset, and the next start resumes.
 *
 * DIAGNOSTICS
 *   logs/sender.log (transfers) and logs/sched.log (jobs).  Status
 *   messages 8200 sent, 8201 retrying, 8202 failed, 8203 expired, with
 *   PackageID, Version and Site attributes (package requests only: a
 *   status bundle's fate is logged, not reported as status, which would
 *   make another bundle).  The ready file shows pending=, active=, sent=,
 *   failed=, expired=, scheduled=.  Exit status 0 after an orderly stop,
 *   1 when it cannot start.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "retry.h"
#include "sender.h"
#include "sitedb.h"
#include "statmsg.h"

#define RESCAN_MS     60000     /* a full look at schedule.box at least this often */
#define TIMER_MAX_MS  60000
#define SITES_MS      1000      /* site rows and throttles re-read at most this often */
#define SMALL_MAX     (1 << 20) /* a request this small goes in a batch... */
#define BATCH_MAX     32        /* ...of at most this many to one site */

/* One worker job: one request, or a batch of small ones to one site. */
struct xjob {
    struct pool_job job;
    struct sender  *s;
    size_t          n;
    struct req     *r[BATCH_MAX];
    struct xfer    *x;          /* n of them */
};

/* ---------------------------------------------------------------- sites */

static struct site *site_get(struct sender *s, const char *code)
{
    struct site *st;

    for (st = s->sites; st; st = st->next)
        if (strcmp(st->code, code) == 0)
            return st;
    if (!(st = calloc(1, sizeof *st)))
        return NULL;
    (void)ss_strcpy(st->code, sizeof st->code, code);
    st->next = s->sites;
    s->sites = st;
    s->sites_stale = 1;         /* its address is read at the next dispatch */
    return st;
}

/* Addresses from the site table and throttles from the retry table: both
 * change under us (sitectl site add, retry now), so they are read before
 * every dispatch. */
static void sites_refresh(struct sender *s)
{
    int64_t now = ss_mono_ms();

    if (!s->sites_stale && now - s->sites_mono < SITES_MS)
        return;
    s->sites_stale = 0;
    s->sites_mono = now;
    for (struct site *st = s->sites; st; st = st->next) {
        sqlite3_stmt *q = NULL;
        struct retry_state rs;

        int rc, g;

        /* On a database error the previous values stand (a busy database
         * must neither forget an address nor lift a throttle). */
        if (sitedb_prepare(s->db, "SELECT address FROM site WHERE code = ?1", &q) == 0) {
            sqlite3_bind_text(q, 1, st->code, -1, SQLITE_STATIC);
            rc = sqlite3_step(q);
            if (rc == SQLITE_ROW && sqlite3_column_text(q, 0))
                (void)ss_strcpy(st->address, sizeof st->address,
                                (const char *)sqlite3_column_text(q, 0));
            else if (rc == SQLITE_DONE)
                st->address[0] = '\0';
            sqlite3_finalize(q);
        }
        if ((g = retry_get(s->db, "send", st->code, &rs)) == 0) {
            st->attempts = rs.attempts;
            st->next_ms = rs.next_ms;
            (void)ss_strcpy(st->last_error, sizeof st->last_error, rs.last_error);
        } else if (g == -ENOENT) {
            st->attempts = 0;
            st->next_ms = 0;
            st->last_error[0] = '\0';
        }
    }
}

/* ---------------------------------------------------------------- requests */

static void req_unlink(struct sender *s, struct req *r)
{
    for (struct req **p = &s->reqlist; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            return;
        }
}

/* The request is over (sent, failed or expired): its files go. */
static void req_finish(struct sender *s, struct req *r)
{
    char f[SS_NAME_MAX + 8];

    /* The request first: files without a request are removed at start. */
    if (ss_fmt(f, sizeof f, "%s.srq", r->name) == 0 && unlinkat(s->reqs.dirfd, f, 0) < 0 &&
        errno != ENOENT)
        log_warn("cannot remove request %s: %s", f, strerror(errno));
    sched_drop_files(s, r->name);
    req_unlink(s, r);
    free(r);
}

static void req_store(struct sender *s, struct req *r)
{
    char f[SS_NAME_MAX + 8];
    int rc;

    if (ss_fmt(f, sizeof f, "%s.srq", r->name) == 0 &&
        (rc = srq_store(s->reqs.dirfd, s->reqs.tmpfd, f, &r->q, 1)) < 0)
        log_warn("cannot update request %s: %s", f, strerror(-rc));
}

static void pkg_attrs(const struct req *r, char *vs, size_t vl, const char **attrs)
{
    (void)ss_fmt(vs, vl, "%lld", r->q.version);
    attrs[0] = "PackageID";
    attrs[1] = r->q.package;
    attrs[2] = "Version";
    attrs[3] = vs;
    attrs[4] = "Site";
    attrs[5] = r->q.dest;
    attrs[6] = NULL;
}

static void expire(struct sender *s, struct req *r)
{
    char at[24], vs[24];
    const char *attrs[7];

    s->expired++;
    if (r->q.type == SEND_PACKAGE) {
        pkg_attrs(r, vs, sizeof vs, attrs);
        (void)ss_fmt(at, sizeof at, "%lld", r->q.attempts);
        log_error("request %s: package %s version %lld for site %s not delivered within the "
                  "job lifetime (%lld attempts; last error: %s); removed", r->name,
                  r->q.package, r->q.version, r->q.dest, r->q.attempts,
                  r->q.last_error[0] ? r->q.last_error : "none");
        sm_emit_keyed(SM_SEND_EXPIRED, r->name, 0, attrs, r->q.package, vs, r->q.dest, at,
                      r->q.last_error[0] ? r->q.last_error : "none", NULL);
    } else {
        log_error("request %s: status bundle for site %s not delivered within the job "
                  "lifetime (last error: %s); removed", r->name, r->q.dest,
                  r->q.last_error[0] ? r->q.last_error : "none");
    }
    req_finish(s, r);
}

/* ---------------------------------------------------------------- transfers */

/*
 * On the worker: the transfer, then for each request sent its 8200 and
 * the removal of its files, so that the loop thread, which starts the
 * next transfers, does no file work for the finished ones.  The messages
 * of a batch are handed over together (sm_batch_begin).
 */
static void xjob_work(struct pool_job *j)
{
    struct xjob *xj = (struct xjob *)j;
    struct sender *s = xj->s;

    if (xj->n == 1)
        xfer_run(&xj->x[0]);
    else
        xfer_run_many(xj->x, xj->n);
    sm_batch_begin();
    for (size_t i = 0; i < xj->n; i++) {
        struct xfer *x = &xj->x[i];

        if (x->rc != 0)
            continue;
        if (x->q.type == SEND_PACKAGE) {
            char vs[24], sz[24];
            const char *attrs[] = { "PackageID", x->q.package, "Version", vs, "Site",
                                    x->q.dest, NULL };
            (void)ss_fmt(vs, sizeof vs, "%lld", x->q.version);
            (void)ss_fmt(sz, sizeof sz, "%lld", (long long)x->q.size);
            /* Keyed: said again after a kill before the request is gone,
             * recorded once. */
            sm_emit_keyed(SM_SEND_SENT, x->name, 0, attrs, x->q.package, vs, x->q.dest, sz,
                          NULL);
        }
    }
    /* Said before the request goes (a kill between says it again at the
     * next start, keyed: recorded once); the request before its files (a
     * request whose files are gone would be given up with 8202). */
    (void)sm_batch_end();
    for (size_t i = 0; i < xj->n; i++) {
        char f[SS_NAME_MAX + 8];
        if (xj->x[i].rc != 0)
            continue;
        if (ss_fmt(f, sizeof f, "%s.srq", xj->x[i].name) == 0 &&
            unlinkat(s->reqs.dirfd, f, 0) < 0 && errno != ENOENT)
            log_warn("cannot remove request %s: %s", f, strerror(errno));
        sched_drop_files(s, xj->x[i].name);
    }
}

static void dispatch(struct sender *s);

/* One request's outcome, on the loop thread. */
static void req_done(struct sender *s, struct req *r, const struct xfer *x)
{
    struct site *st = site_get(s, r->q.hop);
    char vs[24];
    const char *attrs[7];

    r->running = 0;
    r->q.offset = x->q.offset;
    r->q.pck_done = x->q.pck_done;
    if (x->rc == 0) {
        s->sent++;
        s->bytes_sent += x->written;
        if (r->q.type == SEND_PACKAGE)
            log_info("request %s: sent package %s version %lld to site %s via %s (%lld bytes "
                     "written, resumed at %lld)", r->name, r->q.package, r->q.version,
                     r->q.dest, r->q.hop, (long long)x->written, (long long)x->resumed_at);
        else
            log_info("request %s: sent a status bundle to site %s (%lld bytes)", r->name,
                     r->q.hop, (long long)x->written);
        if (st)
            st->answered = 1;
        if (st && st->attempts > 0) {
            (void)retry_success(s->db, "send", st->code);
            log_info("site %s answers again after %lld failed attempts", st->code,
                     st->attempts);
            st->attempts = 0;
            st->next_ms = 0;
        }
        /* The worker removed its files. */
        req_unlink(s, r);
        free(r);
    } else if (x->rc == -ECANCELED) {
        log_info("request %s: stopped at byte %lld; resumed at the next start", r->name,
                 (long long)r->q.offset);
    } else if (x->fatal) {
        s->failed++;
        log_error("request %s: %s; the request cannot be sent and is removed", r->name, x->err);
        if (r->q.type == SEND_PACKAGE) {
            pkg_attrs(r, vs, sizeof vs, attrs);
            sm_emit_keyed(SM_SEND_FAILED, r->name, -x->rc, attrs, r->name, r->q.dest, x->err,
                          NULL);
        }
        req_finish(s, r);
    } else {
        struct retry_policy pol = {
            .first_ms = s->retry_delay, .max_ms = s->retry_max_delay,
            .max_attempts = 0, .jitter = 0.1,
        };
        struct retry_state rs;
        int64_t now = ss_now_ms();

        r->q.attempts++;
        (void)ss_strcpy(r->q.last_error, sizeof r->q.last_error, x->err);
        if (x->local) {
            /* This request's own trouble on this server (its files), not
             * the site's: it waits alone, the site keeps flowing. */
            r->q.next_ms = r->hold_ms = now + retry_delay_ms(&pol, r->q.attempts, 0.5);
            req_store(s, r);
            log_warn("request %s: %s (attempt %lld); tried again later", r->name, x->err,
                     r->q.attempts);
            return;
        }
        if (st && st->next_ms > now) {
            /* A transfer that ran beside the one that throttled the site:
             * the same outage, counted once, or the delay would grow with
             * max_per_site instead of with time. */
        } else if (retry_failure(s->db, "send", r->q.hop, x->err, &pol, now, &rs) == 0 && st) {
            st->attempts = rs.attempts;
            st->next_ms = rs.next_ms;
            (void)ss_strcpy(st->last_error, sizeof st->last_error, rs.last_error);
        } else if (st) {
            st->next_ms = now + s->retry_delay;
        }
        r->q.next_ms = st ? st->next_ms : now + s->retry_delay;
        req_store(s, r);
        char after[32], at[24];
        ss_fmt_duration(r->q.next_ms - now, after, sizeof after);
        log_warn("request %s to site %s via %s failed (attempt %lld): %s; site %s is "
                 "throttled for %s", r->name, r->q.dest, r->q.hop, r->q.attempts, x->err,
                 r->q.hop, after);
        if (r->q.type == SEND_PACKAGE) {
            char key[UNIQ_NAME_MAX + 24];
            pkg_attrs(r, vs, sizeof vs, attrs);
            (void)ss_fmt(at, sizeof at, "%lld", r->q.attempts);
            (void)ss_fmt(key, sizeof key, "%s-%lld", r->name, r->q.attempts);
            sm_emit_keyed(SM_SEND_RETRYING, key, -x->rc, attrs, r->q.package, vs,
                          r->q.dest, at, x->err, after, NULL);
        }
    }
}

static void xjob_done(struct pool_job *j, int cancelled)
{
    struct xjob *xj = (struct xjob *)j;
    struct sender *s = xj->s;
    struct site *st = site_get(s, xj->r[0]->q.hop);

    s->active--;
    if (st)
        st->active--;
    for (size_t i = 0; i < xj->n; i++) {
        if (cancelled)
            xj->r[i]->running = 0;
        else
            req_done(s, xj->r[i], &xj->x[i]);
    }
    free(xj->x);
    free(xj);
    if (!cancelled && !daemon_stopping(s->d))
        dispatch(s);
}

/* Start n requests to site st as one worker job (one slot). */
static void start(struct sender *s, struct req **rs, size_t n, struct site *st)
{
    struct xjob *xj = calloc(1, sizeof *xj);

    if (!xj || !(xj->x = calloc(n, sizeof *xj->x))) {
        free(xj);
        return;
    }
    xj->s = s;
    xj->n = n;
    for (size_t i = 0; i < n; i++) {
        struct xfer *x = &xj->x[i];
        xj->r[i] = rs[i];
        (void)ss_strcpy(x->name, sizeof x->name, rs[i]->name);
        x->q = rs[i]->q;
        (void)ss_strcpy(x->address, sizeof x->address, st->address);
        x->tosendfd = s->tosend.dirfd;
        x->reqfd = s->reqs.dirfd;
        x->reqtmpfd = s->reqs.tmpfd;
        x->stop = &s->stop_flag;
        rs[i]->running = 1;
    }
    xj->job.work = xjob_work;
    xj->job.done = xjob_done;
    s->active++;
    st->active++;
    pool_submit(s->pool, &xj->job);
}

static int cand_cmp(const void *a, const void *b)
{
    const struct req *x = *(struct req *const *)a, *y = *(struct req *const *)b;

    if (x->q.priority != y->q.priority)
        return x->q.priority < y->q.priority ? -1 : 1;
    if (x->q.created_ms != y->q.created_ms)
        return x->q.created_ms < y->q.created_ms ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void timer_cb(uv_timer_t *t);

/* Start what may start; arm the timer for the next thing due. */
static void dispatch(struct sender *s)
{
    int64_t now = ss_now_ms(), next = now + TIMER_MAX_MS;
    struct req **cand = NULL, *r, *nx;
    size_t n = 0, cap = 0;

    if (daemon_stopping(s->d))
        return;
    for (r = s->reqlist; r; r = r->next)
        (void)site_get(s, r->q.hop);
    sites_refresh(s);
    for (r = s->reqlist; r; r = nx) {
        nx = r->next;
        if (r->running)
            continue;
        if (s->job_lifetime > 0 && now - r->q.created_ms >= s->job_lifetime) {
            expire(s, r);
            continue;
        }
        int64_t due = s->job_lifetime > 0 ? r->q.created_ms + s->job_lifetime : next;
        struct site *st = site_get(s, r->q.hop);
        if (!st)
            continue;
        if (!st->address[0] && !st->noaddr_logged) {
            st->noaddr_logged = 1;
            log_warn("site %s has no address (sitectl site add %s --address file:PATH ...): "
                     "its requests wait, until the job lifetime", st->code, st->code);
        } else if (st->address[0]) {
            st->noaddr_logged = 0;
        }
        /* Every slot busy: only the expiry and the timer matter now. */
        if (s->active >= s->max_sendings) {
            if (due < next)
                next = due;
            continue;
        }
        /* The site's throttle alone decides (the request's next_try says
         * what it was when it failed): `sitectl send now` or another
         * request's success makes every request of the site due. */
        int64_t when = st->next_ms > r->hold_ms ? st->next_ms : r->hold_ms;
        if (when > now || !st->address[0]) {
            if (st->address[0] && when < due)
                due = when;
            if (due < next)
                next = due;
            continue;
        }
        if (due < next)
            next = due;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            struct req **p = realloc(cand, nc * sizeof *p);
            if (!p)
                break;
            cand = p;
            cap = nc;
        }
        cand[n++] = r;
    }
    if (n)
        qsort(cand, n, sizeof *cand, cand_cmp);
    for (size_t i = 0; i < n && s->active < s->max_sendings; i++) {
        struct site *st = site_get(s, cand[i]->q.hop);
        struct req *batch[BATCH_MAX];
        size_t nb = 0;

        /* A site that has not answered in this run, or failed last,
         * gets one transfer until it answers: a share that hangs holds
         * one slot, not max_per_site of them.  A site whose first
         * transfer just failed is throttled now. */
        int limit = st && st->answered && st->attempts == 0 ? s->max_per_site : 1;
        if (cand[i]->running || !st || st->active >= limit || st->next_ms > now)
            continue;
        batch[nb++] = cand[i];
        /* Small requests to the same site go together, in the same order
         * (priority, then age): one slot, one sync for all of them. */
        if (cand[i]->q.size <= SMALL_MAX)
            for (size_t k = i + 1; k < n && nb < BATCH_MAX; k++)
                if (!cand[k]->running && cand[k]->q.size <= SMALL_MAX &&
                    strcmp(cand[k]->q.hop, cand[i]->q.hop) == 0)
                    batch[nb++] = cand[k];
        start(s, batch, nb, st);
    }
    free(cand);
    int64_t dn = sched_deferred_next(s);
    if (dn > 0) {
        /* A job given back is due (monotonic clock, like its delay). */
        int64_t in = dn - ss_mono_ms();
        if (now + in < next)
            next = now + (in > 0 ? in : 0);
    }
    if (s->timer_open) {
        int64_t in = next - now;
        uv_timer_start(&s->timer, timer_cb, in < 100 ? 100 : (uint64_t)in, 0);
    }
}

static void timer_cb(uv_timer_t *t)
{
    struct sender *s = t->data;
    int64_t dn = sched_deferred_next(s);

    if (dn > 0 && dn <= ss_mono_ms() && s->watch)
        daemon_watch_kick(s->watch);
    dispatch(s);
}

static void watch_cb(struct daemon_watch *w, void *arg)
{
    struct sender *s = arg;

    if (sched_pass(s) == -EAGAIN)
        daemon_watch_kick(w);
    dispatch(s);
}

/* ---------------------------------------------------------------- start-up */

/* Every request file, and tosend/ files no request owns (a kill between
 * the link and the request: the job is still in the inbox and links
 * them again). */
static int load_requests(struct sender *s)
{
    struct inbox_cursor cur;
    struct inbox_entry ents[256];
    size_t n, loaded = 0;
    int rc;

    if ((rc = inbox_cursor_open(&s->reqs, &cur)) < 0)
        return rc;
    while ((rc = inbox_cursor_next(&cur, ents, SS_ARRAY_LEN(ents), &n)) == 0 && n > 0) {
        for (size_t i = 0; i < n; i++) {
            char err[SS_ERR_MAX];
            struct req *r;
            size_t l = strlen(ents[i].name);

            if (ents[i].odd || l < 5) {
                (void)inbox_quarantine(&s->reqs, 0, ents[i].name, "not a request name");
                continue;
            }
            if (!(r = calloc(1, sizeof *r)))
                return -ENOMEM;
            if ((rc = srq_load(s->reqs.dirfd, ents[i].name, &r->q, err, sizeof err)) < 0) {
                free(r);
                if (rc == -ENOENT)
                    continue;
                log_error("request %s is damaged: %s", ents[i].name, err);
                (void)inbox_quarantine(&s->reqs, 0, ents[i].name, err);
                continue;
            }
            (void)ss_strcpy(r->name, sizeof r->name, ents[i].name);
            r->name[l - 4] = '\0';
            r->next = s->reqlist;
            s->reqlist = r;
            loaded++;
        }
    }
    inbox_cursor_close(&cur);
    if (loaded)
        log_info("%zu send requests waiting from an earlier run", loaded);

    /* tosend/ files whose request is not there. */
    if ((rc = inbox_cursor_open(&s->tosend, &cur)) < 0)
        return rc;
    while ((rc = inbox_cursor_next(&cur, ents, SS_ARRAY_LEN(ents), &n)) == 0 && n > 0) {
        for (size_t i = 0; i < n; i++) {
            char base[UNIQ_NAME_MAX], f[SS_NAME_MAX + 8];
            char *dot;
            (void)ss_strcpy(base, sizeof base, ents[i].name);
            if ((dot = strrchr(base, '.')) != NULL)
                *dot = '\0';
            if (ss_fmt(f, sizeof f, "%s.srq", base) == 0 &&
                faccessat(s->reqs.dirfd, f, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
                (void)unlinkat(s->tosend.dirfd, ents[i].name, 0);
        }
    }
    inbox_cursor_close(&cur);
    return 0;
}

static void apply_conf(struct sender *s, const struct ss_conf *c)
{
    s->max_sendings = c->sender_max_sendings > 0 && c->sender_max_sendings <= 256
                          ? (int)c->sender_max_sendings : 1;
    s->max_per_site = c->sender_max_per_site > 0 && c->sender_max_per_site <= 256
                          ? (int)c->sender_max_per_site : 1;
    /* One site never takes every slot: one stays for the others. */
    if (s->max_sendings > 1 && s->max_per_site >= s->max_sendings)
        s->max_per_site = s->max_sendings - 1;
    s->retry_delay = c->sender_retry_delay;
    s->retry_max_delay = c->sender_retry_max_delay;
    s->job_lifetime = c->sender_job_lifetime;
    (void)ss_strcpy(s->parent, sizeof s->parent, c->site_parent);
}

static int sender_start(struct daemon *d)
{
    struct sender *s = daemon_priv(d);
    const struct ss_conf *c = daemon_conf(d);
    char dir[SS_PATH_MAX], err[SS_ERR_MAX];
    size_t ret = 0, rm = 0;
    int rc;

    s->d = d;
    (void)ss_strcpy(s->root, sizeof s->root, daemon_root(d));
    (void)ss_strcpy(s->site, sizeof s->site, c->site_code);
    apply_conf(s, c);
    if (ss_path(dir, sizeof dir, "%s/logs", s->root) == 0)
        s->schedlog = sslog_open(dir, "sched", "sched", c->log_max_size);
    if ((rc = sitedb_open_root(s->root, 0, &s->db, err, sizeof err)) < 0) {
        log_error("cannot open the site database: %s", err);
        return -1;
    }
    if ((rc = inbox_open(&s->jobs, s->root, IB_SCHEDULE, s->site, 1)) < 0 ||
        (rc = inbox_open(&s->reqs, s->root, IB_REQUESTS, s->site, 1)) < 0 ||
        (rc = inbox_open(&s->tosend, s->root, IB_TOSEND, s->site, 1)) < 0) {
        log_error("cannot open the inboxes of schedule.box under %s/inboxes: %s", s->root,
                  strerror(-rc));
        return -1;
    }
    if ((rc = inbox_recover(&s->jobs, &ret, &rm)) < 0 ||
        (rc = inbox_recover(&s->reqs, NULL, NULL)) < 0 ||
        (rc = inbox_recover(&s->tosend, NULL, NULL)) < 0) {
        log_error("cannot recover schedule.box: %s", strerror(-rc));
        return -1;
    }
    if (ret)
        log_to(s->schedlog, SSLOG_INFO, "%zu jobs of an interrupted run returned to the inbox",
               ret);
    if ((rc = load_requests(s)) < 0) {
        log_error("cannot load the send requests: %s", strerror(-rc));
        return -1;
    }
    sched_forget_scheduled(s);
    s->pool_threads = s->max_sendings;
    if (!(s->pool = daemon_pool(d, s->pool_threads)))
        return -1;
    uv_timer_init(daemon_loop(d), &s->timer);
    s->timer.data = s;
    s->timer_open = 1;
    if (!(s->watch = daemon_watch(d, s->jobs.path, RESCAN_MS, watch_cb, s)))
        return -1;
    log_info("sender serving site %s: at most %d transfers, %d per site", s->site,
             s->max_sendings, s->max_per_site);
    log_to(s->schedlog, SSLOG_INFO, "scheduler serving site %s (parent %s)", s->site,
           s->parent[0] ? s->parent : "none");
    return 0;
}

static void sender_reload(struct daemon *d)
{
    struct sender *s = daemon_priv(d);
    int threads = s->pool_threads;

    apply_conf(s, daemon_conf(d));
    s->sites_stale = 1;
    sched_deferred_wake(s);         /* a site may have been added */
    if (s->watch)
        daemon_watch_kick(s->watch);
    if (s->max_sendings > threads) {
        log_warn("sender.max_sendings above %d takes effect at the next start", threads);
        s->max_sendings = threads;
        if (s->max_sendings > 1 && s->max_per_site >= s->max_sendings)
            s->max_per_site = s->max_sendings - 1;
    }
    if (s->schedlog) {
        sslog_set_max_size(s->schedlog, daemon_conf(d)->log_max_size);
        (void)sslog_reopen(s->schedlog);
    }
    dispatch(s);
}

static void sender_stop(struct daemon *d)
{
    struct sender *s = daemon_priv(d);

    s->stop_flag = 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (s->timer_open) {
        uv_close((uv_handle_t *)&s->timer, NULL);
        s->timer_open = 0;
    }
}

static void sender_status(struct daemon *d, char *buf, size_t len)
{
    struct sender *s = daemon_priv(d);
    size_t pending = 0;

    for (struct req *r = s->reqlist; r; r = r->next)
        pending++;
    snprintf(buf, len, "pending=%zu\nactive=%d\nsent=%llu\nfailed=%llu\nexpired=%llu\n"
             "scheduled=%llu\n", pending, s->active, (unsigned long long)s->sent,
             (unsigned long long)s->failed, (unsigned long long)s->expired,
             (unsigned long long)s->scheduled);
}

static const struct daemon_ops ops = {
    .name = "sender",
    .start = sender_start,
    .stop = sender_stop,
    .reload = sender_reload,
    .status = sender_status,
};

int main(int argc, char **argv)
{
    static struct sender s = {
        .jobs = { .dirfd = -1, .tmpfd = -1, .workfd = -1, .corruptfd = -1 },
        .reqs = { .dirfd = -1, .tmpfd = -1, .workfd = -1, .corruptfd = -1 },
        .tosend = { .dirfd = -1, .tmpfd = -1, .workfd = -1, .corruptfd = -1 },
    };
    int r = daemon_main(argc, argv, &ops, &s);

    /* The pool is stopped: no transfer uses the lists or descriptors. */
    while (s.reqlist) {
        struct req *q = s.reqlist;
        s.reqlist = q->next;
        free(q);
    }
    while (s.sites) {
        struct site *st = s.sites;
        s.sites = st->next;
        free(st);
    }
    if (s.jobs.dirfd >= 0)
        inbox_close(&s.jobs);
    if (s.reqs.dirfd >= 0)
        inbox_close(&s.reqs);
    if (s.tosend.dirfd >= 0)
        inbox_close(&s.tosend);
    if (s.db)
        sitedb_close(s.db);
    if (s.schedlog)
        sslog_close(s.schedlog);
    return r;
}
