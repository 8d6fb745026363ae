/*
 * statmgr - the Status Manager daemon.
 *
 * SUMMARY
 *   Ingests status message files (*.svf) from inboxes/statmgr.box/statmsgs
 *   (every daemon of the site) and inboxes/cap/statmsgs.box (the client
 *   access point drop box) into the statmsg table of the site database,
 *   each message exactly once.  Messages dated more than
 *   statmgr.future_skew ahead wait in statmgr.box/futureq until due.
 *
 * DESCRIPTION
 *   The loop thread only watches: a watch on each inbox (inotify as a hint,
 *   a scan at start and every statmgr.rescan) asks for an ingestion pass.
 *   The pass runs on one worker thread, which owns the database
 *   connection: it scans up to statmgr.batch files across the inboxes,
 *   parses each (lib/statmsg.c, untrusted input), inserts them in one
 *   transaction with INSERT OR IGNORE on the message's 128-bit uid, commits,
 *   and only then unlinks the files.  A crash between the commit and the
 *   unlinks leaves files that are read again at restart and ignored by the
 *   uid key, so nothing is lost and nothing is counted twice.  That key is
 *   also why statmgr does not claim files into work/ first: ingestion is
 *   idempotent, so the extra rename per file would buy nothing.
 *
 *   Removing a file costs as much as reading it, and far more where the
 *   file system discards freed blocks synchronously (ext4 -o discard), so
 *   removal is done by a crew of threads (ss_unlink_many), and while a
 *   backlog lasts the files of one pass are removed during the next,
 *   which skips the names still being removed.  A second worker thread
 *   for the passes would not help: the database takes one writer.
 *
 *   A file that cannot be read as a status message is quarantined to its
 *   inbox's corrupt/ with a reason, a warning and status message 8002.
 *   An error of the database (disk full, ...) rolls the batch back and the
 *   files stay where they are for the next pass.
 *
 * DIAGNOSTICS
 *   logs/statmgr.log: a line per pass that did work (counts), warnings for
 *   quarantined files and database errors.  Exit status 0 after an orderly
 *   stop, 1 when it cannot start (bad site.conf, database refused).
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "fsutil.h"
#include "inbox.h"
#include "log.h"
#include "sitedb.h"
#include "statmsg.h"
#include "util.h"

/* Threads that remove the files of a recorded batch (ss_unlink_many):
 * measured on ext4 with -o discard, 8 remove about three times as many
 * files per second as one, and more do not help. */
#define UNLINK_THREADS 8

/* Where a message came from; the order is the scan order of a pass. */
enum src { SRC_STATMSGS, SRC_CAP, SRC_FUTUREQ, SRC_COUNT };

struct statmgr {
    struct daemon  *d;
    sqlite3        *db;                 /* worker thread only */
    sqlite3_stmt   *ins;
    struct inbox    ib[SRC_COUNT];
    struct daemon_watch *watch[2];
    struct pool    *pool;
    struct pool_job job;
    int             job_busy;           /* loop thread */
    int             job_again;          /* a hint arrived while busy */
    uv_timer_t      future_timer;       /* the earliest held message is due */
    uv_timer_t      rescan_timer;       /* look into futureq now and then */
    int             future_rescan_req;  /* loop thread: asked for by rescan_timer */

    /* Settings copied for the worker at submit time. */
    size_t          batch;
    int64_t         skew_ms;
    char            site[SS_SITE_LEN + 1];

    /* Results of the last pass, read on the loop thread in done(). */
    int             more;               /* a scan was cut at the batch size */
    int64_t         future_due_ms;      /* earliest held message, INT64_MAX none */
    size_t          future_held;
    int             future_rescan;      /* worker: read futureq this pass */
    struct statmsg  msg;                /* worker's parse buffer (10 KB) */

    /* Totals, for the ready file. */
    uint64_t        ingested, duplicates, quarantined, db_errors;

    struct inbox_entry *ents;
    /*
     * Files recorded by a pass, to be removed after its commit.  Removing
     * costs as much as reading (more where the file system discards freed
     * blocks), so while the backlog lasts the files of one pass are
     * removed by a crew of threads during the next pass, which fills the
     * other half and skips the names still being removed.
     */
    struct donebuf {
        char                 (*names)[UNIQ_NAME_MAX];  /* valid names: they fit */
        struct ss_unlink_item *items;                 /* sorted by name after commit */
        size_t                 n;
    } dbuf[2];
    int             cur;                /* the half this pass fills */
    struct ss_unlink_crew crew;         /* removing dbuf[!cur] when crew_running */
    int             crew_running;
    struct sbuf     istr, attrs;
};

static void kick(struct statmgr *s);

/* ---------------------------------------------------------------- worker */

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

/* Insert one parsed message.  Returns 1 inserted, 0 already there, <0 error. */
static int insert(struct statmgr *s, const struct statmsg *m, enum src src, int64_t now)
{
    sqlite3_stmt *st = s->ins;
    char tbuf[8];

    if (json_istr(&s->istr, m) < 0 || json_attrs(&s->attrs, m) < 0)
        return -ENOMEM;
    tbuf[0] = m->severity;
    tbuf[1] = '\0';
    sqlite3_reset(st);
    sqlite3_bind_blob(st, 1, m->uid, sizeof m->uid, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)m->id);
    sqlite3_bind_text(st, 3, tbuf, 1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, sm_type_name(m->type), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, m->component, -1, SQLITE_STATIC);
    /* A client does not always know its site: it is then ours. */
    sqlite3_bind_text(st, 6, m->site[0] ? m->site : s->site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, m->machine, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, m->pid);
    sqlite3_bind_int64(st, 9, m->tid);
    sqlite3_bind_int64(st, 10, m->time_ms);
    sqlite3_bind_int(st, 11, m->oserr);
    sqlite3_bind_text(st, 12, s->istr.data, (int)s->istr.len, SQLITE_STATIC);
    sqlite3_bind_text(st, 13, s->attrs.data, (int)s->attrs.len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 14, now);
    sqlite3_bind_text(st, 15, src == SRC_CAP ? "cap" : "statmsgs", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        log_error("inserting status message %u: %s", m->id, sqlite3_errmsg(s->db));
        return -EIO;
    }
    return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

/* What one pass did, for its log line and status messages. */
struct pass {
    int64_t now;
    size_t  inserted, dup, bad, held, released, skipped;
    int     in_tx, failed;
};

static void note_future(struct statmgr *s, const struct statmsg *m)
{
    s->future_held++;
    if (m->time_ms - s->skew_ms < s->future_due_ms)
        s->future_due_ms = m->time_ms - s->skew_ms;
}

/* Park a message dated too far ahead in futureq under its own name. */
static void hold(struct statmgr *s, enum src src, const char *name, const struct statmsg *m)
{
    char nn[UNIQ_NAME_MAX], when[40], skew[32];
    int r = ss_rename_noreplace(s->ib[src].dirfd, name, s->ib[SRC_FUTUREQ].dirfd, name);

    if (r == -EEXIST)
        r = uniq_move(s->ib[src].dirfd, name, s->ib[SRC_FUTUREQ].dirfd,
                      s->ib[SRC_FUTUREQ].prefix, ".svf", nn, sizeof nn);
    if (r < 0) {
        log_warn("cannot move %s/%s to futureq: %s", s->ib[src].path, name, strerror(-r));
        return;
    }
    note_future(s, m);
    ss_fmt_time_iso(m->time_ms, when, sizeof when);
    ss_fmt_duration(s->skew_ms, skew, sizeof skew);
    log_info("holding status message %u from %s dated %s in futureq", m->id, m->machine, when);
    sm_emit(SM_STAT_FUTURE_HELD, 0, NULL, m->machine, when, skew, NULL);
}

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ss_unlink_item *)a)->name,
                  ((const struct ss_unlink_item *)b)->name);
}

/* Is name among the files the crew is removing?  (A name drawn in two
 * inboxes at once would only be put off to the next pass, so the inbox
 * is not compared.) */
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

/* Wait for the crew, if it is removing the previous pass's files. */
static void crew_join(struct statmgr *s)
{
    if (!s->crew_running)
        return;
    if (ss_unlink_wait(&s->crew) > 0)
        report_unlinks(&s->dbuf[!s->cur]);
    s->dbuf[!s->cur].n = 0;
    s->crew_running = 0;
}

/*
 * Read, check and record (or hold, or quarantine) one file.  Database
 * trouble sets p->failed, which ends the pass and rolls it back.
 */
static void ingest_one(struct statmgr *s, struct pass *p, enum src src,
                       const struct inbox_entry *e)
{
    struct inbox *ib = &s->ib[src];
    char err[SS_ERR_MAX], *buf = NULL;
    size_t len = 0;
    int r;

    if (being_removed(s, e->name)) {
        p->skipped++;
        return;
    }
    if (e->odd) {
        inbox_quarantine(ib, 0, e->name, "not a status message file name");
        p->bad++;
        return;
    }
    r = ss_read_file(ib->dirfd, e->name, SM_FILE_MAX, &buf, &len);
    if (r == -ENOENT)
        return;                 /* gone already: nothing to do */
    if (r < 0) {
        if (r == -EMFILE || r == -ENFILE || r == -ENOMEM || r == -EIO) {
            /* Our trouble, not the file's: leave it for the next pass. */
            log_warn("cannot read %s/%s: %s", ib->path, e->name, strerror(-r));
            return;
        }
        if (r == -EFBIG)
            ss_fmt(err, sizeof err, "larger than %d bytes", SM_FILE_MAX);
        else
            ss_fmt(err, sizeof err, "cannot be read: %s", strerror(-r));
        inbox_quarantine(ib, 0, e->name, err);
        p->bad++;
        return;
    }
    r = sm_parse(&s->msg, buf, len, err, sizeof err);
    free(buf);
    if (r < 0) {
        inbox_quarantine(ib, 0, e->name, err);
        p->bad++;
        return;
    }
    if (s->msg.time_ms > p->now + s->skew_ms) {
        if (src == SRC_FUTUREQ)
            note_future(s, &s->msg);
        else
            hold(s, src, e->name, &s->msg);
        p->held++;
        return;
    }
    if (!p->in_tx) {
        if (sitedb_begin(s->db) < 0) {
            p->failed = 1;
            return;
        }
        p->in_tx = 1;
    }
    r = insert(s, &s->msg, src == SRC_CAP ? SRC_CAP : SRC_STATMSGS, p->now);
    if (r < 0) {
        p->failed = 1;
        return;
    }
    if (r == 0)
        p->dup++;
    else
        p->inserted++;
    if (src == SRC_FUTUREQ)
        p->released++;
    struct donebuf *db = &s->dbuf[s->cur];
    ss_strcpy(db->names[db->n], UNIQ_NAME_MAX, e->name);
    db->items[db->n].dirfd = ib->dirfd;
    db->items[db->n].name = db->names[db->n];
    db->n++;
}

/*
 * One pass: up to batch files from each inbox, one transaction, then the
 * unlinks.  futureq is read only when a held message may be due (or on
 * the periodic rescan), and read whole, in pages: its entries mostly stay
 * where they are, so a bounded scan from the start would see the same
 * first page for ever.  Runs on the worker thread.
 */
static void ingest_work(struct pool_job *j)
{
    struct statmgr *s = (struct statmgr *)((char *)j - offsetof(struct statmgr, job));
    struct pass p = { .now = ss_now_ms() };

    s->more = 0;
    s->dbuf[s->cur].n = 0;
    for (int src = SRC_STATMSGS; src <= SRC_CAP && !p.failed; src++) {
        struct inbox_cursor cur;
        size_t n = 0, fresh = 0;

        /* Page through the inbox until a batch of files not already being
         * removed, or the end. */
        if (inbox_cursor_open(&s->ib[src], &cur) < 0)
            continue;
        while (!p.failed && fresh < s->batch &&
               inbox_cursor_next(&cur, s->ents, s->batch - fresh, &n) == 0 && n > 0) {
            for (size_t i = 0; i < n && !p.failed; i++) {
                size_t skipped = p.skipped;
                ingest_one(s, &p, (enum src)src, &s->ents[i]);
                fresh += p.skipped == skipped;
            }
        }
        inbox_cursor_close(&cur);
        if (fresh >= s->batch)
            s->more = 1;
    }
    if (!p.failed && (p.now >= s->future_due_ms || s->future_rescan)) {
        struct inbox_cursor cur;
        size_t n = 0, room = s->batch;

        s->future_rescan = 0;
        /* Recomputed from what is still held after this pass. */
        s->future_due_ms = INT64_MAX;
        s->future_held = 0;
        if (inbox_cursor_open(&s->ib[SRC_FUTUREQ], &cur) == 0) {
            while (!p.failed && room > 0 &&
                   inbox_cursor_next(&cur, s->ents, room, &n) == 0 && n > 0) {
                for (size_t i = 0; i < n && !p.failed; i++)
                    ingest_one(s, &p, SRC_FUTUREQ, &s->ents[i]);
                room = p.released < s->batch ? s->batch - p.released : 0;
            }
            inbox_cursor_close(&cur);
        }
        if (room == 0) {
            s->future_due_ms = 0;       /* more are due: go on next pass */
            s->more = 1;
        }
    }
    if (p.in_tx) {
        if (!p.failed && sitedb_commit(s->db) < 0)
            p.failed = 1;
        if (p.failed)
            sitedb_rollback(s->db);
    }
    /* Only after the commit: a file is removed once its row is durable.
     * While more work waits, the crew removes this pass's files during
     * the next pass; at the end of a backlog they go before the pass
     * returns, so that an idle statmgr has no thread running. */
    crew_join(s);
    struct donebuf *db = &s->dbuf[s->cur];
    if (p.failed) {
        db->n = 0;
    } else if (db->n > 0 && s->more) {
        qsort(db->items, db->n, sizeof *db->items, item_cmp);
        ss_unlink_start(&s->crew, db->items, db->n, UNLINK_THREADS);
        s->crew_running = 1;
        s->cur = !s->cur;
    } else if (db->n > 0) {
        if (ss_unlink_many(db->items, db->n, UNLINK_THREADS) > 0)
            report_unlinks(db);
        db->n = 0;
    }
    if (p.failed) {
        s->db_errors++;
        s->more = 0;     /* the periodic rescan retries; do not spin on a full disk */
        s->future_due_ms = 0;
        log_error("database error: %zu messages left in their inboxes for the next pass",
                  p.inserted + p.dup);
        return;
    }
    s->ingested += p.inserted;
    s->duplicates += p.dup;
    s->quarantined += p.bad;
    if (p.inserted || p.dup || p.bad)
        log_info("ingested %zu status messages (%zu already recorded, %zu quarantined, "
                 "%zu held for the future)", p.inserted, p.dup, p.bad, p.held);
    if (p.released) {
        char cnt[24];
        snprintf(cnt, sizeof cnt, "%zu", p.released);
        sm_emit(SM_STAT_FUTURE_RELEASED, 0, NULL, cnt, NULL);
    }
    /* The backlog is gone: give back the page cache and the heap a burst
     * grew, so that an idle statmgr stays small (it mostly idles). */
    if (!s->more && (p.inserted || p.dup || p.bad)) {
        sqlite3_db_release_memory(s->db);
        malloc_trim(0);
    }
}

/* ------------------------------------------------------------ loop thread */

static void future_timer_cb(uv_timer_t *t)
{
    kick(t->data);
}

static void ingest_done(struct pool_job *j, int cancelled)
{
    struct statmgr *s = (struct statmgr *)((char *)j - offsetof(struct statmgr, job));

    s->job_busy = 0;
    if (cancelled || daemon_stopping(s->d))
        return;
    if (s->future_due_ms != INT64_MAX) {
        int64_t wait = s->future_due_ms - ss_now_ms();
        uv_timer_start(&s->future_timer, future_timer_cb,
                       wait > 0 ? (uint64_t)wait + 1 : 0, 0);
    }
    if (s->more || s->job_again) {
        s->job_again = 0;
        kick(s);
    }
}

static void kick(struct statmgr *s)
{
    if (daemon_stopping(s->d))
        return;
    if (s->job_busy) {
        s->job_again = 1;
        return;
    }
    const struct ss_conf *c = daemon_conf(s->d);
    /* The worker reads these while it runs; they change only between
     * passes, here. */
    s->skew_ms = c->statmgr_future_skew;
    s->future_rescan = s->future_rescan_req;
    s->future_rescan_req = 0;
    s->job_busy = 1;
    s->job.work = ingest_work;
    s->job.done = ingest_done;
    pool_submit(s->pool, &s->job);
}

/* A file an operator moved back from corrupt/, or one that arrived while
 * statmgr was busy, is found by this rescan: watch events are only hints. */
static void rescan_timer_cb(uv_timer_t *t)
{
    struct statmgr *s = t->data;
    s->future_rescan_req = 1;
    kick(s);
}

static void watch_cb(struct daemon_watch *w, void *arg)
{
    kick(arg);
}

static int statmgr_start(struct daemon *d)
{
    struct statmgr *s = daemon_priv(d);
    const struct ss_conf *c = daemon_conf(d);
    static const enum inbox_id ids[SRC_COUNT] = { IB_STATMSGS, IB_CAP, IB_FUTUREQ };
    char err[SS_ERR_MAX], prefix[UNIQ_PREFIX_MAX + 1];
    int r;

    s->d = d;
    s->batch = (size_t)c->statmgr_batch;
    s->future_due_ms = 0;        /* look into futureq at the first pass */
    ss_strcpy(s->site, sizeof s->site, c->site_code);
    uniq_prefix_sanitize(c->site_code, prefix, sizeof prefix);
    ss_sbuf_init(&s->istr);
    ss_sbuf_init(&s->attrs);

    r = sitedb_open_root(daemon_root(d), 0, &s->db, err, sizeof err);
    if (r < 0) {
        log_error("cannot open the site database: %s", err);
        return -1;
    }
    r = sitedb_prepare(s->db,
        "INSERT OR IGNORE INTO statmsg (uid, msgid, severity, type, component, site, "
        "machine, pid, tid, time_ms, oserr, istr, attrs, received_ms, via) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        &s->ins);
    if (r < 0)
        return -1;
    for (int i = 0; i < SRC_COUNT; i++) {
        size_t ret = 0, rm = 0;
        r = inbox_open(&s->ib[i], daemon_root(d), ids[i], prefix, 1);
        if (r < 0) {
            log_error("cannot open inbox %s: %s", inbox_defs[ids[i]].path, strerror(-r));
            return -1;
        }
        inbox_recover(&s->ib[i], &ret, &rm);
    }
    /* A pass handles up to batch files per inbox. */
    s->ents = calloc(s->batch, sizeof *s->ents);
    int ok = s->ents != NULL;
    for (int i = 0; i < 2; i++) {
        s->dbuf[i].names = calloc(s->batch * SRC_COUNT, sizeof *s->dbuf[i].names);
        s->dbuf[i].items = calloc(s->batch * SRC_COUNT, sizeof *s->dbuf[i].items);
        ok = ok && s->dbuf[i].names && s->dbuf[i].items;
    }
    if (!ok) {
        log_error("out of memory for a batch of %zu", s->batch);
        return -1;
    }
    s->pool = daemon_pool(d, 1);
    if (s->pool == NULL)
        return -1;
    uv_timer_init(daemon_loop(d), &s->future_timer);
    s->future_timer.data = s;
    uv_timer_init(daemon_loop(d), &s->rescan_timer);
    s->rescan_timer.data = s;
    uv_timer_start(&s->rescan_timer, rescan_timer_cb, (uint64_t)c->statmgr_rescan,
                   (uint64_t)c->statmgr_rescan);
    s->watch[0] = daemon_watch(d, s->ib[SRC_STATMSGS].path, c->statmgr_rescan, watch_cb, s);
    s->watch[1] = daemon_watch(d, s->ib[SRC_CAP].path, c->statmgr_rescan, watch_cb, s);
    if (!s->watch[0] || !s->watch[1])
        return -1;
    log_info("statmgr serving site %s: %s and %s, batch %zu", c->site_code,
             s->ib[SRC_STATMSGS].path, s->ib[SRC_CAP].path, s->batch);
    return 0;
}

static void statmgr_reload(struct daemon *d)
{
    struct statmgr *s = daemon_priv(d);
    const struct ss_conf *c = daemon_conf(d);

    for (int i = 0; i < 2; i++)
        if (s->watch[i])
            daemon_watch_set_rescan(s->watch[i], c->statmgr_rescan);
    uv_timer_start(&s->rescan_timer, rescan_timer_cb, (uint64_t)c->statmgr_rescan,
                   (uint64_t)c->statmgr_rescan);
    /* The batch size is fixed by the arrays allocated at start. */
    if ((size_t)c->statmgr_batch != s->batch)
        log_warn("statmgr.batch changes take effect at the next start");
    kick(s);
}

static void statmgr_stop(struct daemon *d)
{
    struct statmgr *s = daemon_priv(d);
    uv_close((uv_handle_t *)&s->future_timer, NULL);
    uv_close((uv_handle_t *)&s->rescan_timer, NULL);
}

static void statmgr_status(struct daemon *d, char *buf, size_t len)
{
    struct statmgr *s = daemon_priv(d);
    snprintf(buf, len, "ingested=%llu\nduplicates=%llu\nquarantined=%llu\nfutureq=%zu\n",
             (unsigned long long)s->ingested, (unsigned long long)s->duplicates,
             (unsigned long long)s->quarantined, s->future_held);
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
    /* The runtime has stopped the pool: the connection is ours again. */
    if (s.ins)
        sqlite3_finalize(s.ins);
    if (s.db)
        sitedb_close(s.db);
    for (int i = 0; i < SRC_COUNT; i++)
        if (s.ib[i].path[0])
            inbox_close(&s.ib[i]);
    free(s.ents);
    /* A stop between two passes of a backlog leaves the crew at work. */
    crew_join(&s);
    for (int i = 0; i < 2; i++) {
        free(s.dbuf[i].names);
        free(s.dbuf[i].items);
    }
    ss_sbuf_free(&s.istr);
    ss_sbuf_free(&s.attrs);
    return r;
}
