/*
 * ingest.c - the Status Manager's ingestion pass.
 *
 * SYNOPSIS
 *   ingest_open(s, root, err, errlen)   database, statement, inboxes, buffers
 *   ingest_pass(job)                    one pass, on the worker thread
 *   ingest_crew_join(s)                 wait for the removal crew
 *   ingest_close(s)
 *
 * DESCRIPTION
 *   A pass reads up to statmgr.batch files from each of statmgr.box/
 *   statmsgs and cap/statmsgs.box, parses each (lib/statmsg.c: untrusted
 *   input, checksum first), and records it with INSERT OR IGNORE keyed on
 *   the message's 128-bit uid.
 *
 *   It also records up to SITES_PER_PASS status bundles of child sites
 *   from statmgr.box/sites (lib/statrep.c; the despooler verified their
 *   signatures): each is claimed into work/, its messages recorded with
 *   via = the child site it came through (local messages have via
 *   "statmsgs" or "cap"), a route row noted for every site below that
 *   child, and the bundle removed once the transaction has committed.  A
 *   message of a bundle that does not parse is skipped with a warning,
 *   and the others are recorded; a bundle that does not parse is
 *   quarantined.  A kill before the removal leaves the bundle in work/,
 *   which inbox_recover returns at the next start: its messages are then
 *   already recorded, and the uid key ignores them.  Files are removed only after the
 *   transaction that recorded them has committed: a crash between the two
 *   leaves files that the next start reads again and the uid key ignores,
 *   so nothing is lost and nothing counted twice.  The same key is why
 *   statmgr does not claim files into work/: ingestion is idempotent, so
 *   the extra rename per file would buy nothing.
 *
 *   Slow file work never happens inside a transaction: before a file is
 *   quarantined (a move, a .reason file, fsyncs, status message 8002) the
 *   rows so far are committed, so the database's write lock is held only
 *   for inserts.
 *
 *   A message dated more than statmgr.future_skew ahead moves to futureq/
 *   under a name that carries its time ("T<ms>-<random>.svf"), so that
 *   deciding which held messages are due is a directory listing, not a
 *   read of every file; a name without the time (an operator moved it
 *   there) is read to learn it.
 *
 *   Removing a file costs as much as reading it, far more where the file
 *   system discards freed blocks synchronously (ext4 -o discard).  While
 *   a backlog lasts, a crew of threads (ss_unlink_start) removes one
 *   pass's files during the next pass, which leaves the names still being
 *   removed alone; at the end of a backlog, and at stop, the removal is
 *   waited for before the pass returns, so no crew outlives its inboxes.
 *
 * DIAGNOSTICS
 *   Logs a line per pass that did work; warnings for files it cannot read
 *   for reasons of the environment (they stay: permissions, no memory,
 *   I/O errors) and for quarantined files (inbox_quarantine); an error
 *   when the database refuses a pass (the loop backs off).  Results go to
 *   s->out for the loop thread.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "sitedb.h"
#include "statmgr.h"
#include "statrep.h"

/* Prefix of a held message's name: 'T' and its time in ms. */
#define HELD_PREFIX 'T'

/* The transaction of a pass: opened at the first insert, committed
 * before slow file work and at the end.  `committed` counts the files of
 * dbuf[cur] whose rows are durable: they may go even if a later part of
 * the pass fails. */
struct tx {
    int    open;
    size_t committed;
};

/* ------------------------------------------------------------- records */

static int json_istr(struct sbuf *b, const struct statmsg *m)
{
    ss_sbuf_reset(b);
    int r = ss_sbuf_add(b, "[", 1);
    for (int i = 0; r == 0 && i < m->nistr; i++) {
        if (i)
            r = ss_sbuf_add(b, ",", 1);
        if (r == 0)
            r = ss_sbuf_add_json_str(b, m->istr[i]);
    }
    return r ? r : ss_sbuf_add(b, "]", 1);
}

static int json_attrs(struct sbuf *b, const struct statmsg *m)
{
    ss_sbuf_reset(b);
    int r = ss_sbuf_add(b, "{", 1);
    for (int i = 0; r == 0 && i < m->nattr; i++) {
        if (i)
            r = ss_sbuf_add(b, ",", 1);
        if (r == 0)
            r = ss_sbuf_add_json_str(b, m->attr[i].name);
        if (r == 0)
            r = ss_sbuf_add(b, ":", 1);
        if (r == 0)
            r = ss_sbuf_add_json_str(b, m->attr[i].value);
    }
    return r ? r : ss_sbuf_add(b, "}", 1);
}

/* Insert one parsed message that came through via ("statmsgs", "cap", or
 * the child site of a bundle).  1 inserted, 0 already there, <0 error
 * (-EINTR when a stop interrupted the database). */
static int insert(struct statmgr *s, const struct statmsg *m, const char *via, int64_t now)
{
    sqlite3_stmt *st = s->ins;
    char sev[2] = { m->severity, '\0' };

    if (json_istr(&s->istr, m) < 0 || json_attrs(&s->attrs, m) < 0)
        return -ENOMEM;
    sqlite3_bind_blob(st, 1, m->uid, sizeof m->uid, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)m->id);
    sqlite3_bind_text(st, 3, sev, 1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, sm_type_name(m->type), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, m->component, -1, SQLITE_STATIC);
    /* A client does not always know its site: it is then ours. */
    sqlite3_bind_text(st, 6, m->site[0] ? m->site : s->in.site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, m->machine, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, m->pid);
    sqlite3_bind_int64(st, 9, m->tid);
    sqlite3_bind_int64(st, 10, m->time_ms);
    sqlite3_bind_int(st, 11, m->oserr);
    sqlite3_bind_text(st, 12, s->istr.data, (int)s->istr.len, SQLITE_STATIC);
    sqlite3_bind_text(st, 13, s->attrs.data, (int)s->attrs.len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 14, now);
    sqlite3_bind_text(st, 15, via, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);              /* ready for the next row, whatever rc */
    if (rc != SQLITE_DONE && sitedb_errno(s->db, rc) == -EINTR)
        return -EINTR;
    if (rc != SQLITE_DONE) {
        log_error("recording status message %u: %s", m->id, sqlite3_errmsg(s->db));
        return -EIO;
    }
    return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

static void note_failure(struct statmgr *s, int r)
{
    if (r == -EINTR)
        s->out.interrupted = 1;
    s->out.failed = 1;
}

/* Commit the rows so far, if any. */
static void flush_tx(struct statmgr *s, struct tx *t)
{
    if (!t->open || s->out.failed)
        return;
    int r = sitedb_commit(s->db);
    t->open = 0;
    if (r < 0) {
        sitedb_rollback(s->db);
        note_failure(s, r);
        return;
    }
    t->committed = s->dbuf[s->cur].n;
}

/* -------------------------------------------------------- removal crew */

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ss_unlink_item *)a)->name,
                  ((const struct ss_unlink_item *)b)->name);
}

/* Is name among the files the crew is removing?  (A name drawn in two
 * inboxes at once would only be put off to the next pass, so the inbox is
 * not compared.) */
static int being_removed(const struct statmgr *s, const char *name)
{
    const struct donebuf *db = &s->dbuf[!s->cur];
    struct ss_unlink_item key = { .name = name };

    return s->crew_running && db->n > 0 &&
           bsearch(&key, db->items, db->n, sizeof *db->items, item_cmp) != NULL;
}

static void report_unlinks(const struct donebuf *db)
{
    for (size_t i = 0; i < db->n; i++)
        if (db->items[i].err < 0 && db->items[i].err != -ENOENT)
            log_warn("cannot remove the recorded file %s: %s", db->items[i].name,
                     strerror(-db->items[i].err));
}

void ingest_crew_join(struct statmgr *s)
{
    if (!s->crew_running)
        return;
    if (ss_unlink_wait(&s->crew) > 0)
        report_unlinks(&s->dbuf[!s->cur]);
    s->dbuf[!s->cur].n = 0;
    s->crew_running = 0;
}

/* Remove the files recorded by this pass: by the crew during the next
 * pass while a backlog lasts, else now. */
static void remove_recorded(struct statmgr *s, size_t n)
{
    struct donebuf *db = &s->dbuf[s->cur];

    ingest_crew_join(s);
    db->n = n;
    if (db->n == 0)
        return;
    if (s->out.more && !atomic_load(&s->stopping)) {
        qsort(db->items, db->n, sizeof *db->items, item_cmp);
        ss_unlink_start(&s->crew, db->items, db->n, UNLINK_THREADS);
        s->crew_running = 1;
        s->cur = !s->cur;
        return;
    }
    if (ss_unlink_many(db->items, db->n, UNLINK_THREADS) > 0)
        report_unlinks(db);
    db->n = 0;
}

/* --------------------------------------------------------------- files */

/* The time in a held message's name "T<ms>-<hex>.svf", or -1. */
static int64_t held_time(const char *name)
{
    int64_t t = 0;
    const char *p = name + 1;

    if (name[0] != HELD_PREFIX || *p == '-')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (t > (INT64_MAX - 9) / 10)
            return -1;
        t = t * 10 + (*p - '0');
    }
    return *p == '-' ? t : -1;
}

static void note_future(struct statmgr *s, int64_t time_ms)
{
    s->out.future_held++;
    if (time_ms - s->in.skew_ms < s->out.future_due_ms)
        s->out.future_due_ms = time_ms - s->in.skew_ms;
}

/* Park a message dated too far ahead in futureq under a name that carries
 * its time.  A rename: if we die half-way the file is in one place or the
 * other, both of which are read again.  -errno when it stays where it is. */
static int hold(struct statmgr *s, enum src src, const char *name, const struct statmsg *m)
{
    char prefix[UNIQ_PREFIX_MAX + 1], nn[UNIQ_NAME_MAX];
    int r = ss_fmt(prefix, sizeof prefix, "%c%lld", HELD_PREFIX, (long long)m->time_ms);

    if (r == 0)
        r = uniq_move(s->ib[src].dirfd, name, s->ib[SRC_FUTUREQ].dirfd, prefix, ".svf",
                      nn, sizeof nn);
    if (r < 0) {
        log_warn("cannot move %s/%s to futureq: %s", s->ib[src].path, name, strerror(-r));
        return r;
    }
    /* A pass that reads futureq after this counts it there. */
    if (!s->in.read_futureq)
        note_future(s, m->time_ms);
    s->out.held++;
    return 0;
}

/* Errors of reading that say nothing about the file: it stays for a later
 * pass (STYLE: triage errno at the call site). */
static int environment_error(int r)
{
    switch (-r) {
    case EACCES: case EPERM: case EMFILE: case ENFILE: case ENOMEM:
    case EIO: case ENOSPC: case EINTR: case EAGAIN: case ESTALE:
        return 1;
    default:
        return 0;
    }
}

enum verdict { V_SKIPPED, V_LEFT, V_DONE };

/* Read, check and record (or hold, or quarantine) one file. */
static enum verdict ingest_one(struct statmgr *s, struct tx *t, enum src src,
                               const struct inbox_entry *e, int64_t now)
{
    struct inbox *ib = &s->ib[src];
    struct pass_out *o = &s->out;
    char err[SS_ERR_MAX], *buf = NULL;
    size_t len = 0;
    int r;

    if (being_removed(s, e->name))
        return V_SKIPPED;
    if (e->odd) {
        ss_strcpy(err, sizeof err, "not a status message file name");
        goto quarantine;
    }
    r = ss_read_file(ib->dirfd, e->name, SM_FILE_MAX, &buf, &len);
    if (r == -ENOENT)
        return V_SKIPPED;           /* gone already: nothing to do */
    if (r < 0 && environment_error(r)) {
        log_warn("cannot read %s/%s (left for a later pass): %s", ib->path, e->name,
                 strerror(-r));
        return V_LEFT;
    }
    if (r < 0) {
        if (r == -EFBIG)
            ss_fmt(err, sizeof err, "larger than %d bytes", SM_FILE_MAX);
        else
            ss_fmt(err, sizeof err, "cannot be read: %s", strerror(-r));
        goto quarantine;
    }
    r = sm_parse(&s->msg, buf, len, err, sizeof err);
    free(buf);
    if (r < 0)
        goto quarantine;

    if (s->msg.time_ms > now + s->in.skew_ms) {
        return hold(s, src, e->name, &s->msg) < 0 ? V_LEFT : V_DONE;
    }
    if (!t->open) {
        if ((r = sitedb_begin(s->db)) < 0) {
            note_failure(s, r);
            return V_LEFT;
        }
        t->open = 1;
    }
    r = insert(s, &s->msg, src == SRC_CAP ? "cap" : "statmsgs", now);
    if (r < 0) {
        note_failure(s, r);
        return V_LEFT;
    }
    if (r == 0)
        o->dup++;
    else if (src == SRC_FUTUREQ)
        o->released++;
    else
        o->inserted++;

    struct donebuf *db = &s->dbuf[s->cur];
    ss_strcpy(db->names[db->n], UNIQ_NAME_MAX, e->name);
    db->items[db->n].dirfd = ib->dirfd;
    db->items[db->n].name = db->names[db->n];
    db->n++;
    return V_DONE;

quarantine:
    /* Moving, syncing and a status message: not under the write lock. */
    flush_tx(s, t);
    if (o->failed)
        return V_LEFT;
    inbox_quarantine(ib, 0, e->name, err);
    o->bad++;
    return V_DONE;
}

/* Up to batch files of one inbox that are not being removed already. */
static void pass_inbox(struct statmgr *s, struct tx *t, enum src src, int64_t now)
{
    struct inbox_cursor cur;
    size_t n = 0, done = 0;

    if (inbox_cursor_open(&s->ib[src], &cur) < 0)
        return;
    while (done < s->in.batch && !s->out.failed && !atomic_load(&s->stopping) &&
           inbox_cursor_next(&cur, s->ents, s->in.batch - done, &n) == 0 && n > 0)
        for (size_t i = 0; i < n && !s->out.failed && !atomic_load(&s->stopping); i++)
            done += ingest_one(s, t, src, &s->ents[i], now) == V_DONE;
    inbox_cursor_close(&cur);
    if (done >= s->in.batch)
        s->out.more = 1;
}

/* futureq, whole: the due ones are recorded (up to batch of them), the
 * others only counted, from their names where they carry their time. */
static void pass_futureq(struct statmgr *s, struct tx *t, int64_t now)
{
    struct inbox_cursor cur;
    size_t n = 0;

    s->out.futureq_read = 1;
    if (inbox_cursor_open(&s->ib[SRC_FUTUREQ], &cur) < 0)
        return;
    while (!s->out.failed && !atomic_load(&s->stopping) &&
           inbox_cursor_next(&cur, s->ents, s->in.batch, &n) == 0 && n > 0) {
        for (size_t i = 0; i < n && !s->out.failed; i++) {
            const struct inbox_entry *e = &s->ents[i];
            int64_t when = e->odd ? -1 : held_time(e->name);
            if (when >= 0 && when > now + s->in.skew_ms) {
                note_future(s, when);
                continue;
            }
            if (s->out.released >= s->in.batch) {
                /* More are due than a pass records: go on at once. */
                s->out.more = 1;
                note_future(s, now + s->in.skew_ms);
                continue;
            }
            ingest_one(s, t, SRC_FUTUREQ, e, now);
        }
    }
    inbox_cursor_close(&cur);
}

/* ----------------------------------------------------- child sites */

/* Note that site is reached through via (the scheduler's next hop). */
static int note_route(struct statmgr *s, const char *site, const char *via, int64_t now)
{
    sqlite3_stmt *st = s->route;

    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, via, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && sitedb_errno(s->db, rc) == -EINTR)
        return -EINTR;
    if (rc != SQLITE_DONE) {
        log_error("recording the route to site %s: %s", site, sqlite3_errmsg(s->db));
        return -EIO;
    }
    return 0;
}

/* Record the messages of one parsed bundle in the pass's transaction.
 * 0, or <0 when the database failed (noted). */
static int record_bundle(struct statmgr *s, struct tx *t, const char *name,
                         const struct statrep *rep, int64_t now)
{
    struct pass_out *o = &s->out;
    char err[SS_ERR_MAX], routed[SS_SITE_LEN + 1] = "";
    int r;

    for (size_t i = 0; i < rep->count && !atomic_load(&s->stopping); i++) {
        /* Each message is a file's text: sm_parse checks it in place. */
        if (sm_parse(&s->msg, (char *)rep->msgs[i].data, rep->msgs[i].len, err,
                     sizeof err) < 0) {
            log_warn("status bundle %s from site %s: message %zu of %zu skipped: %s", name,
                     rep->site, i + 1, rep->count, err);
            o->skipped++;
            continue;
        }
        if (!s->msg.site[0])        /* a client's, recorded at the child */
            ss_strcpy(s->msg.site, sizeof s->msg.site, rep->site);
        if (!t->open) {
            if ((r = sitedb_begin(s->db)) < 0) {
                note_failure(s, r);
                return r;
            }
            t->open = 1;
        }
        if ((r = insert(s, &s->msg, rep->site, now)) < 0) {
            note_failure(s, r);
            return r;
        }
        if (r == 0) {
            o->dup++;
        } else {
            o->inserted++;
            o->from_sites++;
        }
        /* A site below the child is reached through it; messages of one
         * site come in runs, so the last one noted is remembered. */
        if (strcmp(s->msg.site, rep->site) != 0 && strcmp(s->msg.site, s->in.site) != 0 &&
            strcmp(s->msg.site, routed) != 0) {
            if ((r = note_route(s, s->msg.site, rep->site, now)) < 0) {
                note_failure(s, r);
                return r;
            }
            ss_strcpy(routed, sizeof routed, s->msg.site);
        }
    }
    if (atomic_load(&s->stopping)) {
        note_failure(s, -EINTR);
        return -EINTR;
    }
    return 0;
}

/* One bundle file of statmgr.box/sites. */
static void ingest_bundle(struct statmgr *s, struct tx *t, const struct inbox_entry *e,
                          int64_t now)
{
    struct inbox *ib = &s->sites;
    struct pass_out *o = &s->out;
    struct statrep rep;
    char err[SS_ERR_MAX], *buf = NULL;
    size_t len = 0;
    int r, in_work = 0;

    memset(&rep, 0, sizeof rep);
    if (e->odd) {
        ss_strcpy(err, sizeof err, "not a status bundle file name (<site>-<32 hex>.sts)");
        goto quarantine;
    }
    if ((r = inbox_claim(ib, e->name)) < 0) {
        if (r != -ENOENT)
            log_warn("cannot claim %s/%s (left for a later pass): %s", ib->path, e->name,
                     strerror(-r));
        return;
    }
    in_work = 1;
    r = ss_read_file(ib->workfd, e->name, STATREP_MAX_SIZE, &buf, &len);
    if (r < 0 && environment_error(r)) {
        log_warn("cannot read %s/work/%s (left for a later pass): %s", ib->path, e->name,
                 strerror(-r));
        (void)inbox_return(ib, e->name);
        return;
    }
    if (r < 0) {
        if (r == -EFBIG)
            ss_fmt(err, sizeof err, "larger than %d bytes", STATREP_MAX_SIZE);
        else
            ss_fmt(err, sizeof err, "cannot be read: %s", strerror(-r));
        goto quarantine;
    }
    if ((r = statrep_parse(buf, len, NULL, NULL, &rep, err, sizeof err)) < 0) {
        if (r == -ENOMEM) {
            log_warn("%s/work/%s: out of memory (left for a later pass)", ib->path, e->name);
            (void)inbox_return(ib, e->name);
            free(buf);
            return;
        }
        goto quarantine;
    }
    r = record_bundle(s, t, e->name, &rep, now);
    if (r == 0)
        flush_tx(s, t);             /* the rows are durable before the file goes */
    if (o->failed) {
        if ((r = inbox_return(ib, e->name)) < 0)
            log_warn("cannot return %s/work/%s: %s; it is returned at the next start",
                     ib->path, e->name, strerror(-r));
    } else {
        if ((r = inbox_done(ib, e->name)) < 0 && r != -ENOENT)
            log_warn("cannot remove the recorded bundle %s/work/%s: %s", ib->path, e->name,
                     strerror(-r));
        o->bundles++;
    }
    statrep_free(&rep);
    free(buf);
    return;

quarantine:
    free(buf);
    flush_tx(s, t);
    if (o->failed) {
        if (in_work)
            (void)inbox_return(ib, e->name);
        return;
    }
    inbox_quarantine(ib, in_work, e->name, err);
    o->bad++;
}

/* Up to SITES_PER_PASS bundles of statmgr.box/sites. */
static void pass_sites(struct statmgr *s, struct tx *t, int64_t now)
{
    struct inbox_entry ents[SITES_PER_PASS];
    size_t n = 0;

    if (s->sites.dirfd < 0 || inbox_scan(&s->sites, ents, SS_ARRAY_LEN(ents), &n) < 0)
        return;
    for (size_t i = 0; i < n && !s->out.failed && !atomic_load(&s->stopping); i++)
        ingest_bundle(s, t, &ents[i], now);
    if (n == SS_ARRAY_LEN(ents))
        s->out.more = 1;
}

void ingest_pass(struct pool_job *j)
{
    struct statmgr *s = (struct statmgr *)((char *)j - offsetof(struct statmgr, job));
    struct pass_out *o = &s->out;
    struct tx t = { 0, 0 };
    int64_t now = ss_now_ms();

    memset(o, 0, sizeof *o);
    o->future_due_ms = INT64_MAX;
    s->dbuf[s->cur].n = 0;
    pass_inbox(s, &t, SRC_STATMSGS, now);
    pass_inbox(s, &t, SRC_CAP, now);
    if (!o->failed && !atomic_load(&s->stopping))
        pass_sites(s, &t, now);
    if (s->in.read_futureq)
        pass_futureq(s, &t, now);
    flush_tx(s, &t);
    if (t.open)                     /* a failure left it open */
        sitedb_rollback(s->db);

    /* Only what is committed may go: a file is removed once its row is
     * durable. */
    if (o->failed)
        o->more = 0;
    remove_recorded(s, t.committed);

    if (o->failed && !o->interrupted) {
        log_error("the site database refused a pass (%s); the status messages stay "
                  "in their inboxes until it is retried", sqlite3_errmsg(s->db));
        /* Once per outage: the message itself waits in the inbox, and is
         * recorded when the database is back. */
        if (s->in.fail_streak == 0)
            sm_emit(SM_STAT_INGEST_ERROR, 0, NULL, sqlite3_errmsg(s->db), NULL);
    }
    if (o->held) {
        char n[24], skew[32], due[40];
        snprintf(n, sizeof n, "%zu", o->held);
        ss_fmt_duration(s->in.skew_ms, skew, sizeof skew);
        ss_fmt_time_iso(o->future_due_ms, due, sizeof due);
        sm_emit(SM_STAT_FUTURE_HELD, 0, NULL, n, skew, due, NULL);
    }
    if (o->released) {
        char n[24];
        snprintf(n, sizeof n, "%zu", o->released);
        sm_emit(SM_STAT_FUTURE_RELEASED, 0, NULL, n, NULL);
    }
    if (!o->failed && (o->inserted || o->dup || o->bad || o->released))
        log_info("recorded %zu status messages (%zu released from futureq, %zu already "
                 "recorded), quarantined %zu, held %zu for the future", o->inserted,
                 o->released, o->dup, o->bad, o->held);
    if (!o->failed && (o->bundles || o->skipped))
        log_info("recorded %zu status bundles of child sites: %zu new messages, %zu bad "
                 "ones skipped", o->bundles, o->from_sites, o->skipped);
    /* The backlog is gone: give back the page cache and the heap a burst
     * grew, so that an idle statmgr stays small (it mostly idles). */
    if (!o->more && (o->inserted || o->dup || o->bad || o->released)) {
        sqlite3_db_release_memory(s->db);
        malloc_trim(0);
    }
}

/* ----------------------------------------------------------- set-up */

int ingest_open(struct statmgr *s, const char *root, char *err, size_t errlen)
{
    static const enum inbox_id ids[SRC_COUNT] = { IB_STATMSGS, IB_CAP, IB_FUTUREQ };
    char prefix[UNIQ_PREFIX_MAX + 1];
    int r;

    ss_sbuf_init(&s->istr);
    ss_sbuf_init(&s->attrs);
    r = sitedb_open_root(root, 0, &s->db, err, errlen);
    if (r < 0)
        return r;
    r = sitedb_prepare(s->db,
        "INSERT OR IGNORE INTO statmsg (uid, msgid, severity, type, component, site, "
        "machine, pid, tid, time_ms, oserr, istr, attrs, received_ms, via) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        &s->ins);
    if (r < 0) {
        ss_fmt(err, errlen, "cannot prepare the insert: %s", sqlite3_errmsg(s->db));
        return r;
    }
    r = sitedb_prepare(s->db,
        "INSERT INTO route (site, via, updated_ms) VALUES (?1, ?2, ?3) ON CONFLICT(site) "
        "DO UPDATE SET via = excluded.via, updated_ms = excluded.updated_ms", &s->route);
    if (r < 0) {
        ss_fmt(err, errlen, "cannot prepare the route upsert: %s", sqlite3_errmsg(s->db));
        return r;
    }
    uniq_prefix_sanitize(s->in.site, prefix, sizeof prefix);
    /* statmgr.box/sites is missing from site roots made before status
     * bundles existed. */
    if ((r = statrep_dirs(root)) < 0) {
        ss_fmt(err, errlen, "cannot create inboxes/statmgr.box/sites: %s", strerror(-r));
        return r;
    }
    if ((r = inbox_open(&s->sites, root, IB_SITEMSGS, prefix, 1)) < 0) {
        ss_fmt(err, errlen, "cannot open inbox %s: %s", inbox_defs[IB_SITEMSGS].path,
               strerror(-r));
        return r;
    }
    inbox_recover(&s->sites, NULL, NULL);
    for (int i = 0; i < SRC_COUNT; i++) {
        size_t ret = 0, rm = 0;
        r = inbox_open(&s->ib[i], root, ids[i], prefix, 1);
        if (r < 0) {
            ss_fmt(err, errlen, "cannot open inbox %s: %s", inbox_defs[ids[i]].path,
                   strerror(-r));
            return r;
        }
        inbox_recover(&s->ib[i], &ret, &rm);
    }
    /* A pass records up to batch files per inbox (futureq's due ones
     * included), and reads a scan in pages of batch entries. */
    size_t most = s->in.batch * SRC_COUNT;
    s->ents = calloc(s->in.batch, sizeof *s->ents);
    int ok = s->ents != NULL;
    for (int i = 0; i < 2; i++) {
        s->dbuf[i].names = calloc(most, sizeof *s->dbuf[i].names);
        s->dbuf[i].items = calloc(most, sizeof *s->dbuf[i].items);
        ok = ok && s->dbuf[i].names && s->dbuf[i].items;
    }
    if (!ok) {
        ss_fmt(err, errlen, "out of memory for a batch of %zu", s->in.batch);
        return -ENOMEM;
    }
    return 0;
}

void ingest_close(struct statmgr *s)
{
    /* The crew works on the inboxes' descriptors: it goes first. */
    ingest_crew_join(s);
    for (int i = 0; i < SRC_COUNT; i++)
        if (s->ib[i].path[0])
            inbox_close(&s->ib[i]);
    if (s->sites.path[0])
        inbox_close(&s->sites);
    if (s->ins)
        sqlite3_finalize(s->ins);
    if (s->route)
        sqlite3_finalize(s->route);
    s->route = NULL;
    if (s->db)
        sitedb_close(s->db);
    s->ins = NULL;
    s->db = NULL;
    free(s->ents);
    for (int i = 0; i < 2; i++) {
        free(s->dbuf[i].names);
        free(s->dbuf[i].items);
    }
    ss_sbuf_free(&s->istr);
    ss_sbuf_free(&s->attrs);
}
