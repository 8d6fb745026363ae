/*
 * sched.c - the scheduler part of the sender daemon: jobs into send
 * requests.
 *
 * SYNOPSIS
 *   sched_pass(s)                  take every job waiting in schedule.box
 *   sched_route(s, dest, hop)      the next hop towards a site
 *   sched_drop_files(s, name)      remove a request's files from tosend/
 *
 * DESCRIPTION
 *   A job (distmgr's package version for a child, statmgr's status bundle
 *   for the parent) becomes one send request for its next hop:
 *   requests/R.srq, where R is the job's own base name, with its files
 *   linked into tosend/R.ins, R.pck or R.sts.  Linked, not named: distmgr
 *   removes a version's files from store/out/ when a newer version is
 *   made, and statmgr's bundle is the job's own, so the request keeps its
 *   own reference (a copy where a link cannot be made).
 *
 *   A pass writes the requests of every job it took, makes them durable
 *   together (one syncfs, or an fsync per file where syncfs cannot be
 *   trusted, then the two directories), and only then removes the jobs.
 *   A kill before that leaves the jobs in the inbox (work/ is returned at
 *   start) and the next pass finds R.srq already there: a job is never
 *   scheduled twice and never lost.
 *
 *   Routing: a site the site table knows is its own hop; a site learnt
 *   behind a child (the route table, filled by statmgr from replicated
 *   status) goes through that child; anything else goes up to the parent.
 *   A job with no route at all waits in the inbox (8204 once, keyed) and
 *   is looked at again at the next pass: adding the site routes it.
 *
 * DIAGNOSTICS
 *   logs/sched.log: one line per job scheduled, quarantined or waiting.
 *   A job that does not parse goes to corrupt/ (inbox_quarantine, 8002).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpsync.h"
#include "fsutil.h"
#include "sender.h"
#include "sitedb.h"
#include "statmsg.h"

#define PASS_MAX 256                    /* jobs claimed per pass */
#define DEFER_MS     5000               /* a job given back waits this long... */
#define DEFER_MAX_MS 300000             /* ...doubling to this */

#define slog(t, ...) log_to(s->schedlog, (t), __VA_ARGS__)

static int site_known(struct sender *s, const char *code)
{
    sqlite3_stmt *st = NULL;
    int found = 0;

    if (sitedb_prepare(s->db, "SELECT 1 FROM site WHERE code = ?1", &st) < 0)
        return 0;
    sqlite3_bind_text(st, 1, code, -1, SQLITE_STATIC);
    found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

int sched_route(struct sender *s, const char *dest, char hop[SS_SITE_LEN + 1])
{
    sqlite3_stmt *st = NULL;
    int rc = -ENOENT;

    if (site_known(s, dest)) {
        (void)ss_strcpy(hop, SS_SITE_LEN + 1, dest);
        return 0;
    }
    /* The route table arrives with status replication; a database
     * without it simply has no learnt routes. */
    if (sqlite3_prepare_v2(s->db, "SELECT via FROM route WHERE site = ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            const char *via = (const char *)sqlite3_column_text(st, 0);
            if (via && ss_site_code_ok(via) && strcmp(via, s->site) != 0 &&
                site_known(s, via)) {
                (void)ss_strcpy(hop, SS_SITE_LEN + 1, via);
                rc = 0;
            }
        }
    }
    sqlite3_finalize(st);
    if (rc == 0)
        return 0;
    if (s->parent[0] && strcmp(dest, s->site) != 0 && site_known(s, s->parent)) {
        (void)ss_strcpy(hop, SS_SITE_LEN + 1, s->parent);
        return 0;
    }
    return -ENOENT;
}

void sched_drop_files(struct sender *s, const char *name)
{
    static const char *const sfx[] = { ".ins", ".pck", ".sts" };
    char f[SS_NAME_MAX + 8];

    for (size_t i = 0; i < SS_ARRAY_LEN(sfx); i++)
        if (ss_fmt(f, sizeof f, "%s%s", name, sfx[i]) == 0 &&
            unlinkat(s->tosend.dirfd, f, 0) < 0 && errno != ENOENT)
            log_warn("cannot remove %s/%s: %s", s->tosend.path, f, strerror(errno));
}

/* Give tosend/ its own reference to <root>/rel as dst: a hard link, or a
 * copy where the two are on different file systems.  *size gets its
 * length.  An existing dst is an earlier pass's link of the same job. */
static int take_file(struct sender *s, const char *rel, const char *dst, int64_t *size)
{
    char src[SS_PATH_MAX];
    struct stat sb;
    int rc, in, out;

    if ((rc = ss_path(src, sizeof src, "%s/%s", s->root, rel)) < 0)
        return rc;
    if (fstatat(s->tosend.dirfd, dst, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
        *size = sb.st_size;
        return 0;
    }
    if (lstat(src, &sb) < 0)
        return -errno;
    if (!S_ISREG(sb.st_mode))
        return -EINVAL;
    *size = sb.st_size;
    if (linkat(AT_FDCWD, src, s->tosend.dirfd, dst, 0) == 0)
        return 0;
    if (errno != EXDEV && errno != EPERM && errno != EMLINK)
        return -errno;
    if ((in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return -errno;
    out = openat(s->tosend.dirfd, dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (out < 0) {
        rc = -errno;
        close(in);
        return rc;
    }
    rc = ss_copy_fd(in, out, sb.st_size);
    if (rc == 0)
        rc = ss_fsync_fd(out);
    close(in);
    close(out);
    if (rc < 0)
        (void)unlinkat(s->tosend.dirfd, dst, 0);
    return rc;
}

/* ---- jobs given back ----------------------------------------------- */

static struct deferred *defer_get(struct sender *s, const char *name, int create)
{
    struct deferred *d;

    for (d = s->deferred; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    if (!create || !(d = calloc(1, sizeof *d)))
        return NULL;
    (void)ss_strcpy(d->name, sizeof d->name, name);
    d->seen = s->pass_gen;
    d->next = s->deferred;
    s->deferred = d;
    s->unroutable++;
    return d;
}

static void defer_del(struct sender *s, const char *name)
{
    for (struct deferred **p = &s->deferred; *p; p = &(*p)->next)
        if (strcmp((*p)->name, name) == 0) {
            struct deferred *d = *p;
            *p = d->next;
            free(d);
            s->unroutable--;
            return;
        }
}

/* Give job name back to the inbox, not to be looked at before a growing
 * delay.  Returns the entry (NULL without memory: then it is looked at
 * again at the next pass, which is what happened before). */
static struct deferred *defer(struct sender *s, const char *name)
{
    struct deferred *d = defer_get(s, name, 1);
    int rc = inbox_return(&s->jobs, name);

    if (rc < 0 && rc != -ENOENT)
        slog(SSLOG_ERROR, "cannot return job %s to the inbox: %s; it is returned at the "
             "next start", name, strerror(-rc));
    if (d) {
        int64_t delay = DEFER_MS;
        for (int i = 1; i < d->tries + 1 && delay < DEFER_MAX_MS; i++)
            delay *= 2;
        d->tries++;
        d->not_before = ss_mono_ms() + (delay < DEFER_MAX_MS ? delay : DEFER_MAX_MS);
    }
    return d;
}

int64_t sched_deferred_next(struct sender *s)
{
    int64_t next = 0;

    for (struct deferred *d = s->deferred; d; d = d->next)
        if (next == 0 || d->not_before < next)
            next = d->not_before;
    return next;
}

void sched_deferred_wake(struct sender *s)
{
    for (struct deferred *d = s->deferred; d; d = d->next)
        d->not_before = 0;
}

struct req *req_find(struct sender *s, const char *name)
{
    for (struct req *r = s->reqlist; r; r = r->next)
        if (strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

void sched_forget_scheduled(struct sender *s)
{
    struct inbox_cursor cur;
    struct inbox_entry ents[256];
    size_t n, gone = 0;

    if (inbox_cursor_open(&s->jobs, &cur) < 0)
        return;
    while (inbox_cursor_next(&cur, ents, SS_ARRAY_LEN(ents), &n) == 0 && n > 0)
        for (size_t i = 0; i < n; i++) {
            char f[SS_NAME_MAX + 8];
            size_t l = strlen(ents[i].name);
            if (ents[i].odd || l < 5 ||
                ss_fmt(f, sizeof f, "%.*s.srq", (int)(l - 4), ents[i].name) < 0)
                continue;
            if (faccessat(s->reqs.dirfd, f, F_OK, AT_SYMLINK_NOFOLLOW) == 0 &&
                unlinkat(s->jobs.dirfd, ents[i].name, 0) == 0)
                gone++;
        }
    inbox_cursor_close(&cur);
    if (gone)
        slog(SSLOG_INFO, "%zu jobs whose requests were made before a restart removed", gone);
}

/* What one job of a pass became. */
struct taken {
    char    job[SS_NAME_MAX + 1];     /* R.job, in work/ */
    char    status_file[SS_PATH_MAX]; /* a status job's bundle, removed once durable */
    struct req *r;
};

/* Turn the claimed job into a request (in memory and requests/R.srq,
 * not yet durable).  1 scheduled, 0 already scheduled earlier (the job
 * is finished at once), -1 job returned or quarantined. */
static int schedule_one(struct sender *s, const char *name, struct taken *t)
{
    char *buf = NULL, err[SS_ERR_MAX], srq[SS_NAME_MAX + 8];
    size_t len = 0;
    struct job j;
    struct sendreq q;
    struct req *r;
    char R[UNIQ_NAME_MAX], hop[SS_SITE_LEN + 1], f[SS_NAME_MAX + 8];
    size_t nl = strlen(name);
    int rc;

    if ((rc = ss_read_file(s->jobs.workfd, name, SENDREQ_MAX_SIZE, &buf, &len)) < 0) {
        if (rc == -EFBIG) {
            (void)inbox_quarantine(&s->jobs, 1, name, "larger than a job can be");
            return -1;
        }
        slog(SSLOG_ERROR, "cannot read job %s: %s; it waits in the inbox", name, strerror(-rc));
        (void)defer(s, name);
        return -1;
    }
    rc = job_parse(buf, len, &j, err, sizeof err);
    free(buf);
    if (rc < 0) {
        slog(SSLOG_WARN, "job %s is not a valid job: %s", name, err);
        (void)inbox_quarantine(&s->jobs, 1, name, err);
        return -1;
    }
    (void)ss_strcpy(R, sizeof R, name);
    R[nl - 4] = '\0';                       /* ".job" */
    if (ss_fmt(srq, sizeof srq, "%s.srq", R) < 0)
        return -1;
    if (j.type == SEND_STATUS)
        (void)ss_strcpy(t->status_file, sizeof t->status_file, j.status_file);
    if (faccessat(s->reqs.dirfd, srq, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        /* Made by an earlier pass whose jobs could not be finished (or
         * before a kill): the request is the one to keep, in memory too. */
        slog(SSLOG_INFO, "job %s was scheduled before: request %s", name, srq);
        if (!req_find(s, R) && (r = calloc(1, sizeof *r)) != NULL) {
            if (srq_load(s->reqs.dirfd, srq, &r->q, err, sizeof err) == 0) {
                (void)ss_strcpy(r->name, sizeof r->name, R);
                t->r = r;
            } else {
                free(r);
            }
        }
        return 0;
    }
    if (sched_route(s, j.site, hop) < 0) {
        struct deferred *d = defer(s, name);
        if (!d || !d->noted) {
            char key[UNIQ_NAME_MAX + 8];
            (void)ss_fmt(key, sizeof key, "noroute-%s", R);
            slog(SSLOG_WARN, "job %s: no route to site %s (neither a known site, nor learnt "
                 "behind a child, nor a parent to go through); it waits", name, j.site);
            sm_emit_keyed(SM_SEND_NO_ROUTE, key, 0, NULL, j.site, name, NULL);
            if (d)
                d->noted = 1;
        }
        return -1;
    }

    memset(&q, 0, sizeof q);
    q.type = j.type;
    (void)ss_strcpy(q.dest, sizeof q.dest, j.site);
    (void)ss_strcpy(q.hop, sizeof q.hop, hop);
    q.priority = j.priority;
    (void)ss_strcpy(q.package, sizeof q.package, j.package);
    q.version = j.version;
    (void)ss_strcpy(q.xfer, sizeof q.xfer, R);
    q.created_ms = j.created_ms;
    if (j.type == SEND_PACKAGE) {
        int64_t a = 0, b = 0;
        if ((rc = ss_fmt(f, sizeof f, "%s.ins", R)) == 0)
            rc = take_file(s, j.instruction, f, &a);
        if (rc == 0 && (rc = ss_fmt(f, sizeof f, "%s.pck", R)) == 0)
            rc = take_file(s, j.package_file, f, &b);
        q.size = a + b;
    } else {
        if ((rc = ss_fmt(f, sizeof f, "%s.sts", R)) == 0)
            rc = take_file(s, j.status_file, f, &q.size);
    }
    if (rc == -ENOENT) {
        /* distmgr removes a version's files once a newer one is made, or
         * the package is deleted: the newer version has its own job. */
        char key[UNIQ_NAME_MAX + 8];
        (void)ss_fmt(key, sizeof key, "gone-%s", R);
        slog(SSLOG_WARN, "job %s: its files are gone (a newer version or a deletion "
             "superseded it); the job is removed", name);
        sm_emit_keyed(SM_SEND_FAILED, key, ENOENT, NULL, name, j.site,
                      "its files are gone: a newer version or a deletion superseded it", NULL);
        sched_drop_files(s, R);
        return 0;
    }
    if (rc < 0) {
        slog(SSLOG_ERROR, "job %s: cannot link its files into %s: %s; it waits in the inbox",
             name, s->tosend.path, strerror(-rc));
        sched_drop_files(s, R);
        (void)defer(s, name);
        return -1;
    }
    if ((rc = srq_store(s->reqs.dirfd, s->reqs.tmpfd, srq, &q, 0)) < 0) {
        slog(SSLOG_ERROR, "job %s: cannot write request %s: %s; it waits in the inbox", name,
             srq, strerror(-rc));
        sched_drop_files(s, R);
        (void)defer(s, name);
        return -1;
    }
    if (!(r = calloc(1, sizeof *r))) {
        /* The request file is there: the next start loads it. */
        slog(SSLOG_ERROR, "out of memory for request %s; it is loaded at the next start", srq);
        return 0;
    }
    (void)ss_strcpy(r->name, sizeof r->name, R);
    r->q = q;
    t->r = r;
    if (q.type == SEND_PACKAGE)
        slog(SSLOG_INFO, "job %s: package %s version %lld for site %s via %s, %s priority, "
             "%lld bytes: request %s", name, q.package, q.version, q.dest, q.hop,
             prio_name(q.priority), (long long)q.size, srq);
    else
        slog(SSLOG_INFO, "job %s: status bundle for site %s via %s, %lld bytes: request %s",
             name, q.dest, q.hop, (long long)q.size, srq);
    return 1;
}

/* Make this pass's requests and links durable: one syncfs of their file
 * system, or an fsync per request where syncfs cannot be trusted. */
static int make_durable(struct sender *s, struct taken *t, size_t n)
{
    int rc = ss_syncfs(s->reqs.dirfd);

    if (rc == -ENOSYS) {
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            char f[SS_NAME_MAX + 8];
            int fd;
            if (!t[i].r || ss_fmt(f, sizeof f, "%s.srq", t[i].r->name) < 0)
                continue;
            if ((fd = openat(s->reqs.dirfd, f, O_RDONLY | O_CLOEXEC)) < 0)
                return -errno;
            rc = ss_fsync_fd(fd);
            close(fd);
        }
    }
    if (rc == 0)
        rc = ss_fsync_fd(s->tosend.dirfd);
    if (rc == 0)
        rc = ss_fsync_fd(s->reqs.dirfd);
    return rc;
}

int sched_pass(struct sender *s)
{
    struct inbox_entry *ents = calloc(PASS_MAX, sizeof *ents);
    struct taken *t = calloc(PASS_MAX, sizeof *t);
    struct inbox_cursor cur;
    size_t n = 0, nt = 0, claimed = 0;
    int rc, scheduled = 0, more = 0, complete = 0;
    int64_t now = ss_mono_ms();

    if (!ents || !t) {
        free(ents);
        free(t);
        return 0;
    }
    /* The whole directory in pages (a job given back is skipped until it
     * is due, so it neither loops nor hides the jobs behind it), at most
     * PASS_MAX jobs taken per pass. */
    s->pass_gen++;
    if ((rc = inbox_cursor_open(&s->jobs, &cur)) < 0) {
        slog(SSLOG_WARN, "cannot list %s: %s", s->jobs.path, strerror(-rc));
    } else {
        while (!more && (rc = inbox_cursor_next(&cur, ents, PASS_MAX, &n)) == 0 && n > 0) {
            for (size_t i = 0; i < n; i++) {
                struct deferred *d;
                if (ents[i].odd) {
                    (void)inbox_quarantine(&s->jobs, 0, ents[i].name,
                                           "not a job name (<writer>-<32 hex>.job)");
                    continue;
                }
                if ((d = defer_get(s, ents[i].name, 0)) != NULL) {
                    d->seen = s->pass_gen;
                    if (now < d->not_before)
                        continue;
                }
                if (claimed == PASS_MAX) {
                    more = 1;
                    break;
                }
                if ((rc = inbox_claim(&s->jobs, ents[i].name)) < 0)
                    continue;
                claimed++;
                struct taken *tk = &t[nt];
                memset(tk, 0, sizeof *tk);
                (void)ss_strcpy(tk->job, sizeof tk->job, ents[i].name);
                rc = schedule_one(s, ents[i].name, tk);
                if (rc >= 0)
                    nt++;          /* finished below, once durable */
            }
        }
        complete = !more && rc == 0;
        inbox_cursor_close(&cur);
    }
    /* Deferred jobs no longer there (taken by hand, or a kill's leftovers). */
    if (complete)
        for (struct deferred **p = &s->deferred; *p;) {
            if ((*p)->seen != s->pass_gen) {
                struct deferred *d = *p;
                *p = d->next;
                free(d);
                s->unroutable--;
            } else {
                p = &(*p)->next;
            }
        }
    if (nt && (rc = make_durable(s, t, nt)) < 0) {
        /* Not durable: the jobs stay; the requests written are kept and
         * the next pass finds them (R.srq exists). */
        slog(SSLOG_ERROR, "cannot make %zu send requests durable: %s; their jobs stay in "
             "the inbox", nt, strerror(-rc));
        for (size_t i = 0; i < nt; i++) {
            (void)defer(s, t[i].job);
            free(t[i].r);
        }
        nt = 0;
    }
    for (size_t i = 0; i < nt; i++) {
        if (t[i].status_file[0]) {
            char p[SS_PATH_MAX];
            if (ss_path(p, sizeof p, "%s/%s", s->root, t[i].status_file) == 0 &&
                unlink(p) < 0 && errno != ENOENT)
                slog(SSLOG_WARN, "cannot remove %s: %s", p, strerror(errno));
        }
        if ((rc = inbox_done(&s->jobs, t[i].job)) < 0 && rc != -ENOENT)
            slog(SSLOG_WARN, "cannot remove job %s: %s (its request exists: it is not "
                 "scheduled twice)", t[i].job, strerror(-rc));
        defer_del(s, t[i].job);
        if (t[i].r) {
            t[i].r->next = s->reqlist;
            s->reqlist = t[i].r;
            scheduled++;
        }
    }
    s->scheduled += (uint64_t)scheduled;
    free(ents);
    free(t);
    return more ? -EAGAIN : scheduled;
}
