/*
 * tasks.c - the Distribution Manager's work, on worker threads.
 *
 * SYNOPSIS
 *   task_work(job)                 the pool's work function for every task
 *   dm_recover_jobs(dm)            at start: finish the hand-over of staged jobs
 *   dm_next_retry(db)              when the retry timer should fire
 *
 * DESCRIPTION
 *   T_PKG (exclusive per package): for a package being deleted, finish the
 *   deletion once no DP holds it; otherwise make a new source version when
 *   asked (walk and hash the source, store new content, record the
 *   manifest; an unchanged source keeps its version), prune the versions
 *   no longer needed and the content only they used, and hand the version
 *   to every child site that does not have it yet: one job in
 *   schedule.box per (package, version, child site), recorded in site_job,
 *   so however often the task or the DP retries run, no site is sent a
 *   version twice (SPEC 4.1, Q319207).  It returns the DPs that want work.
 *
 *   T_DP: bring one DP to the package's version (lib/dpsync.c), or remove
 *   the package from it when the package is being deleted.  A failure is
 *   recorded as retry history of (package, version, DP) and touches
 *   nothing else: no other DP, and no child site.
 *
 *   T_SCAN: find every package and DP that wants work now (at start, after
 *   `sitectl retry now`, on the retry timer).
 *
 *   T_GC: remove store objects no manifest references: what a source walk
 *   stored before it was killed or failed.  At start, and after a failed
 *   walk; one fan-out directory at a time under the exclusive store lock,
 *   so that walks are held up briefly, not for the whole store.
 *
 *   The hand-over of a job to the scheduler happens in three durable
 *   steps: the job file is written and fsync'ed in distmgr.box/outgoing/,
 *   a site_job row (state staged) is committed, and the file is moved into
 *   schedule.box (row state queued).  A kill between any two leaves either
 *   a file without a row (removed at the next start: the job was never
 *   handed over, and the next T_PKG writes it again) or a row with or
 *   without its file (moved at the next start if still there): never two
 *   jobs, never none.  2339 is emitted with a uid derived from (package,
 *   version, site), so an emission repeated after a kill is recorded once.
 *
 *   Content store and garbage: a source walk holds a shared lock on
 *   store/.lock from before it decides an object exists until its manifest
 *   is committed; the removal of unreferenced objects holds it exclusively
 *   while it checks and removes.  So an object another walk is about to
 *   reference is never removed under it, by this or any other process.
 *   Every writer of the store (the despooler unpacking a package file too)
 *   holds the shared lock from its first object to its manifest's commit.
 *
 * DIAGNOSTICS
 *   logs/distmgr.log; status messages 2300-2342 and 8100 with the
 *   attributes PackageID, Version, DP and Site.  Tasks set task->rc: 0, or
 *   -EINTR when the daemon stopped them, or another -errno (already logged).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "distmgr.h"
#include "dpsync.h"
#include "fsutil.h"
#include "log.h"
#include "manifest.h"
#include "pkgfile.h"
#include "pool.h"
#include "record.h"
#include "sendreq.h"
#include "sitedb.h"
#include "statmsg.h"

#define SCOPE_DP     "dp"
#define SCOPE_SOURCE "source"
#define SCOPE_SITES  "sites"

/* ---------------------------------------------------------------- helpers */

static void txt(char *dst, size_t len, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    (void)ss_strcpy(dst, len, s ? (const char *)s : "");
}

/* A size for a log line. */
static const char *szs(int64_t bytes, char buf[32])
{
    ss_fmt_size((uint64_t)(bytes < 0 ? 0 : bytes), buf, 32);
    return buf;
}

static int add_want(struct task *t, const char *pkg, const char *dp)
{
    struct want *w = realloc(t->wants, (t->nwants + 1) * sizeof *w);
    if (!w)
        return -ENOMEM;
    t->wants = w;
    (void)ss_strcpy(w[t->nwants].pkg, sizeof w->pkg, pkg);
    (void)ss_strcpy(w[t->nwants].dp, sizeof w->dp, dp ? dp : "");
    t->nwants++;
    return 0;
}

/* Small objects (small.db) no manifest row references any more.  The
 * caller holds the store lock exclusively.  Returns how many went. */
static size_t collect_small(struct distmgr *dm)
{
    char path[SS_PATH_MAX];
    size_t n = 0;
    int rc;

    if (ss_path(path, sizeof path, "%s/db/site.db", dm->root) < 0)
        return 0;
    if ((rc = store_gc_small(dm->store, path, &n)) < 0)
        log_warn("store: cannot remove unused small objects: %s; they stay until the next "
                 "collection", strerror(-rc));
    return n;
}

/* Remove the loose objects of cand[] that no manifest row references any
 * more, and, when small ones may have been dropped too, the small objects
 * nothing references.  Takes the store lock exclusively.  Failures are
 * logged: an object left behind is garbage, not damage. */
static void store_collect(struct distmgr *dm, sqlite3 *db, unsigned char (*cand)[32], size_t n,
                          int small)
{
    sqlite3_stmt *st = NULL;
    size_t removed = 0;
    int lk, rc;

    if (n == 0 && !small)
        return;
    if ((lk = store_lock(dm->store, 1)) < 0) {
        log_warn("store: cannot lock %s/.lock: %s; unused content stays", dm->store,
                 strerror(-lk));
        return;
    }
    if (sitedb_prepare(db, "SELECT 1 FROM manifest WHERE sha256 = ? LIMIT 1", &st) < 0)
        goto out;
    /* One read transaction for every check, not a lock round per object;
     * it starts after the lock is held (see task_gc). */
    if (sitedb_exec(db, "BEGIN") < 0)
        goto out;
    for (size_t i = 0; i < n && !atomic_load(&dm->stopping); i++) {
        sqlite3_reset(st);
        sqlite3_bind_blob(st, 1, cand[i], 32, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            continue;
        if (rc != SQLITE_DONE)
            break;
        if (store_remove(dm->store, cand[i]) == 0)
            removed++;
    }
    sqlite3_finalize(st);
    st = NULL;
    (void)sitedb_exec(db, "COMMIT");
    if (small)
        removed += collect_small(dm);
    if (removed)
        log_info("store: removed %zu objects no package version uses", removed);
out:
    sqlite3_finalize(st);
    store_unlock(lk);
}

/* Loose objects of every version of pkg: candidates for removal once the
 * package is gone; *small says whether it had small ones too. */
static int collect_candidates(sqlite3 *db, const char *pkg, unsigned char (**out)[32], size_t *n,
                              int *small)
{
    sqlite3_stmt *st;
    unsigned char (*v)[32] = NULL;
    size_t cap = 0;
    int rc;

    *out = NULL;
    *n = 0;
    rc = sitedb_prepare(db,
        "SELECT DISTINCT sha256, size FROM manifest WHERE package = ?1 AND sha256 IS NOT NULL", &st);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(st, 1, pkg, -1, SQLITE_STATIC);
    *small = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != 32)
            continue;
        if (STORE_SMALL(sqlite3_column_int64(st, 1))) {
            *small = 1;
            continue;
        }
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            void *p = realloc(v, nc * 32);
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            v = p;
            cap = nc;
        }
        memcpy(v[(*n)++], sqlite3_column_blob(st, 0), 32);
    }
    rc = sitedb_errno(db, rc);
    sqlite3_finalize(st);
    if (rc < 0) {
        free(v);
        *n = 0;
        return rc;
    }
    *out = v;
    return 0;
}

static int sha_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

/* Objects prev uses and cur does not: what pruning prev may leave unused
 * (store_collect checks that no other package uses them).  Computed from
 * the two manifests, so an update that changed 44 of 4,300 files checks
 * 44 objects, not 4,300. */
static int dropped_objects(const struct manifest *prev, const struct manifest *cur,
                           unsigned char (**out)[32], size_t *n, int *small)
{
    unsigned char (*have)[32] = NULL, (*v)[32] = NULL;
    size_t nh = 0, nv = 0, i;

    *out = NULL;
    *n = 0;
    *small = 0;
    if (prev->files == 0)
        return 0;
    if (cur->files > 0 && !(have = malloc((size_t)cur->files * 32)))
        return -ENOMEM;
    if (!(v = malloc((size_t)prev->files * 32))) {
        free(have);
        return -ENOMEM;
    }
    for (i = 0; i < cur->n; i++)
        if (S_ISREG(cur->e[i].mode) && nh < (size_t)cur->files)
            memcpy(have[nh++], cur->e[i].sha, 32);
    qsort(have, nh, 32, sha_cmp);
    for (i = 0; i < prev->n; i++) {
        const struct mf_entry *e = &prev->e[i];
        if (!S_ISREG(e->mode) || nv >= (size_t)prev->files ||
            (nh && bsearch(e->sha, have, nh, 32, sha_cmp)))
            continue;
        if (STORE_SMALL(e->size)) {
            *small = 1;         /* small.db is collected as a whole */
            continue;
        }
        memcpy(v[nv++], e->sha, 32);
    }
    free(have);
    /* The same content twice in prev is one object. */
    qsort(v, nv, 32, sha_cmp);
    for (i = 0; i < nv; i++)
        if (*n == 0 || memcmp(v[*n - 1], v[i], 32) != 0)
            memmove(v[(*n)++], v[i], 32);
    *out = v;
    return 0;
}

struct pkgrow {
    char      id[16];
    char      name[256];
    char      source[SS_PATH_MAX];
    char      state[16];
    long long version;
    enum send_prio priority;
};

static int load_pkg(sqlite3 *db, const char *id, struct pkgrow *p)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = sitedb_prepare(db, "SELECT name, source, state, version, priority FROM package "
                             "WHERE id = ?",
                             &st)) < 0)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        (void)ss_strcpy(p->id, sizeof p->id, id);
        txt(p->name, sizeof p->name, st, 0);
        txt(p->source, sizeof p->source, st, 1);
        txt(p->state, sizeof p->state, st, 2);
        p->version = sqlite3_column_int64(st, 3);
        const char *pr = (const char *)sqlite3_column_text(st, 4);
        if (!pr || prio_parse(pr, &p->priority) < 0)
            p->priority = PRIO_MEDIUM;
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    } else {
        rc = sitedb_errno(db, rc);
    }
    sqlite3_finalize(st);
    return rc;
}

/*
 * The DPs that want a T_DP now: for an active package, every target DP
 * not installed at the package's version, not failed for it, and not
 * waiting for a later retry; for a package being deleted, every DP that
 * may still hold it.  pkg NULL: every package.
 */
static int find_dp_wants(sqlite3 *db, struct task *t, const char *pkg, int64_t now)
{
    static const char sql[] =
        "SELECT p.id, d.name FROM package p JOIN dp d"
        "  ON (p.all_dps = 1 OR EXISTS (SELECT 1 FROM package_dp pd"
        "                               WHERE pd.package = p.id AND pd.dp = d.name))"
        " LEFT JOIN dp_state s ON s.package = p.id AND s.dp = d.name"
        " LEFT JOIN retry r ON r.scope = 'dp'"
        "  AND r.target = p.id || '/' || p.version || '/' || d.name"
        " WHERE p.state = 'active' AND p.version > 0 AND (?1 IS NULL OR p.id = ?1)"
        "  AND NOT (s.state IS 'installed' AND s.version = p.version)"
        "  AND NOT (s.state IS 'failed' AND s.target = p.version)"
        "  AND (r.state IS NULL OR (r.state = 'retrying' AND r.next_ms <= ?2))"
        " UNION ALL"
        " SELECT p.id, s.dp FROM package p JOIN dp_state s ON s.package = p.id"
        " LEFT JOIN retry r ON r.scope = 'dp' AND r.target = p.id || '/del/' || s.dp"
        " WHERE p.state = 'deleting' AND (?1 IS NULL OR p.id = ?1)"
        "  AND (r.state IS NULL OR (r.state = 'retrying' AND r.next_ms <= ?2))";
    sqlite3_stmt *st;
    char id[16], dp[33];
    int rc;

    if ((rc = sitedb_prepare(db, sql, &st)) < 0)
        return rc;
    if (pkg)
        sqlite3_bind_text(st, 1, pkg, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        txt(id, sizeof id, st, 0);
        txt(dp, sizeof dp, st, 1);
        if (add_want(t, id, dp) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    rc = sitedb_errno(db, rc);
    sqlite3_finalize(st);
    return rc;
}

/* ---------------------------------------------------------------- T_SCAN */

static int task_scan(struct task *t, sqlite3 *db)
{
    /* Packages that want their exclusive task: deletions to finish, new
     * packages whose first version is not made yet, child sites without
     * the current version, source walks due for a retry. */
    static const char sql[] =
        "SELECT id, 0 FROM package WHERE state = 'deleting'"
        " UNION SELECT id, 1 FROM package WHERE state = 'active' AND version = 0"
        "   AND source <> ''"
        " UNION SELECT p.id, 0 FROM package p, site s"
        "   WHERE p.state = 'active' AND p.version > 0 AND s.relation = 'child'"
        "   AND NOT EXISTS (SELECT 1 FROM site_job j WHERE j.package = p.id"
        "                   AND j.version = p.version AND j.site = s.code)"
        "   AND NOT EXISTS (SELECT 1 FROM retry r WHERE r.scope = 'sites' AND r.target = p.id"
        "                   AND (r.state = 'failed' OR r.next_ms > ?1))"
        " UNION SELECT package, 0 FROM site_job WHERE state = 'staged'"
        " UNION SELECT substr(target, 1, 8), 1 FROM retry WHERE scope = 'source'"
        "   AND state = 'retrying' AND next_ms <= ?1";
    sqlite3_stmt *st;
    int64_t now = ss_now_ms();
    char id[16];
    int rc;

    if ((rc = sitedb_prepare(db, sql, &st)) < 0)
        return rc;
    sqlite3_bind_int64(st, 1, now);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        txt(id, sizeof id, st, 0);
        /* dp "" = the package task; "+" = with a new version. */
        if (add_want(t, id, sqlite3_column_int(st, 1) ? "+" : "") < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    rc = sitedb_errno(db, rc);
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;
    return find_dp_wants(db, t, NULL, now);
}

/* store/out files of a version no job will be written for any more.  A
 * scheduler that has not copied them yet fails that job; the newer
 * version's job supersedes it (a version never moves backwards). */
static void remove_outfiles(struct distmgr *dm, const char *pkg, long long version)
{
    static const char *const ext[] = { "pck", "ins" };
    char path[SS_PATH_MAX];

    for (size_t i = 0; version > 0 && i < SS_ARRAY_LEN(ext); i++)
        if (ss_path(path, sizeof path, "%s/out/%s-%lld.%s", dm->store, pkg, version, ext[i]) == 0)
            (void)unlink(path);
}

/* ---------------------------------------------------------------- T_PKG: deletion */

static int pkg_finish_delete(struct task *t, sqlite3 *db, const struct pkgrow *p)
{
    struct distmgr *dm = t->dm;
    unsigned char (*cand)[32] = NULL;
    sqlite3_stmt *st;
    size_t ncand = 0;
    int small = 0;
    long long v;
    int rc, left;

    /* Source and child-site retries of a package being deleted are moot. */
    if ((rc = sitedb_execf(db, "DELETE FROM retry WHERE scope IN ('source', 'sites') AND target = ?",
                        "s", p->id)) < 0)
        return rc;
    if ((rc = sitedb_prepare(db, "SELECT count(*) FROM dp_state s WHERE package = ?"
                                 " AND EXISTS (SELECT 1 FROM dp d WHERE d.name = s.dp)", &st)) < 0)
        return rc;
    sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    left = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    rc = sitedb_errno(db, rc);
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;
    if (left > 0)
        return find_dp_wants(db, t, p->id, ss_now_ms());

    if ((rc = collect_candidates(db, p->id, &cand, &ncand, &small)) < 0)
        return rc;
    if ((rc = sitedb_begin(db)) < 0)
        goto out;
    if ((rc = sitedb_execf(db, "DELETE FROM package WHERE id = ?", "s", p->id)) < 0 ||
        (rc = sitedb_execf(db, "DELETE FROM site_job WHERE package = ?", "s", p->id)) < 0 ||
        (rc = sitedb_execf(db, "DELETE FROM retry WHERE scope IN ('dp','source','sites')"
                            " AND (target = ?1 OR substr(target, 1, 9) = ?1 || '/')",
                        "s", p->id)) < 0 ||
        (rc = sitedb_commit(db)) < 0) {
        sitedb_rollback(db);
        goto out;
    }
    store_collect(dm, db, cand, ncand, small);
    for (v = p->version; v >= 1 && v + 2 > p->version; v--)
        remove_outfiles(dm, p->id, v);
    log_info("package %s (\"%s\") deleted from every distribution point and from the store",
             p->id, p->name);
    t->gone = 1;
out:
    free(cand);
    return rc;
}

/* ---------------------------------------------------------------- T_PKG: a new version */

static void pkg_failed(struct task *t, sqlite3 *db, const struct pkgrow *p, int err,
                       const char *why, int retry)
{
    struct distmgr *dm = t->dm;
    const char *attrs[] = { "PackageID", p->id, NULL };
    struct retry_state rs;

    log_error("package %s (\"%s\"): %s", p->id, p->name, why);
    sm_emit(SM_DIST_FAILED, -err, attrs, p->name, p->id, why, NULL);
    if (sitedb_begin(db) < 0)
        return;
    if (sitedb_execf(db, "UPDATE package SET last_error = ?, updated_ms = ? WHERE id = ?",
                  "sis", why, (long long)ss_now_ms(), p->id) < 0 ||
        (retry && retry_failure(db, SCOPE_SOURCE, p->id, why, &dm->policy, ss_now_ms(), &rs) < 0) ||
        sitedb_commit(db) < 0) {
        sitedb_rollback(db);
        return;
    }
    if (retry) {
        char when[40];
        (void)ss_fmt_time_iso(rs.next_ms, when, sizeof when);
        if (rs.state == RETRY_FAILED)
            log_error("package %s: the source failed %lld times; no more attempts until "
                      "`sitectl package update %s`", p->id, rs.attempts, p->id);
        else
            log_info("package %s: the source is tried again at %s (attempt %lld)", p->id,
                     when, rs.attempts + 1);
    }
}

static int pkg_new_version(struct task *t, sqlite3 *db, struct pkgrow *p)
{
    struct distmgr *dm = t->dm;
    struct manifest prev, cur;
    struct mf_snapstat ss = { 0 };
    unsigned char (*cand)[32] = NULL;
    size_t ncand = 0;
    int small = 0;
    char err[SS_ERR_MAX], vs[24], zb[32];
    const char *attrs[] = { "PackageID", p->id, "Version", vs, NULL };
    const char *pattrs[] = { "PackageID", p->id, NULL };
    int rc, lk = -1;
    int64_t t0 = ss_mono_ms();

    mf_init(&prev);
    mf_init(&cur);
    sm_emit(SM_DIST_BEGIN, 0, pattrs, p->name, p->id, NULL);
    if (p->version > 0 && (rc = mf_db_load(db, p->id, p->version, &prev)) < 0)
        goto out;
    if ((lk = store_lock(dm->store, 0)) < 0) {
        (void)ss_fmt(err, sizeof err, "cannot lock the content store: %s", strerror(-lk));
        pkg_failed(t, db, p, lk, err, 1);
        t->outcome = 2;
        rc = 0;
        goto out;
    }
    err[0] = 0;
    rc = mf_snapshot(p->source, p->version > 0 ? &prev : NULL, dm->store, &cur, &ss,
                     (const volatile int *)&dm->stopping, err, sizeof err);
    if (rc == -EINTR)
        goto out;
    if (rc < 0) {
        char why[SS_ERR_MAX + 64];
        (void)ss_fmt(why, sizeof why, "source %s: %s", p->source, err[0] ? err : strerror(-rc));
        /* A symlink or device in the source is the administrator's to fix;
         * anything else (a share away, a file being written) may pass. */
        pkg_failed(t, db, p, rc, why, rc != -EINVAL);
        t->outcome = 2;
        rc = 0;                 /* reported; the DPs keep the version they have */
        goto out;
    }
    if (p->version > 0 && mf_equal(&prev, &cur)) {
        log_info("package %s: source unchanged (%lld files, %s hashed again); version stays %lld",
                 p->id, (long long)cur.files, szs(ss.bytes_hashed, zb), p->version);
        rc = sitedb_execf(db, "DELETE FROM retry WHERE scope = 'source' AND target = ?", "s", p->id);
        goto out;
    }
    if ((rc = store_sync(dm->store)) < 0) {
        (void)ss_fmt(err, sizeof err, "cannot make the content store durable: %s", strerror(-rc));
        pkg_failed(t, db, p, rc, err, 1);
        t->outcome = 2;
        rc = 0;
        goto out;
    }
    if ((rc = dropped_objects(&prev, &cur, &cand, &ncand, &small)) < 0)
        goto out;
    if ((rc = sitedb_begin(db)) < 0)
        goto out;
    {
        long long nv = p->version + 1, now = ss_now_ms();
        if ((rc = sitedb_execf(db, "INSERT INTO pkg_version (package, version, files, bytes,"
                                " created_ms) VALUES (?, ?, ?, ?, ?)", "siiii", p->id, nv,
                            (long long)cur.files, (long long)cur.bytes, now)) < 0 ||
            (rc = mf_db_save(db, p->id, nv, &cur)) < 0 ||
            (rc = sitedb_execf(db, "UPDATE package SET version = ?, last_error = '', updated_ms = ?"
                                " WHERE id = ?", "iis", nv, now, p->id)) < 0 ||
            /* Older versions are not needed: a DP is brought to the newest,
             * and what it holds of an older one is on the DP itself. */
            (rc = sitedb_execf(db, "DELETE FROM pkg_version WHERE package = ? AND version < ?",
                            "si", p->id, nv)) < 0 ||
            (rc = sitedb_execf(db, "DELETE FROM retry WHERE scope = 'source' AND target = ?",
                            "s", p->id)) < 0 ||
            /* Older versions' DP history: nothing will act on it again
             * (a DP is brought to the newest), and an overdue row would
             * keep the retry timer firing. */
            (rc = sitedb_execf(db, "DELETE FROM retry WHERE scope = 'dp' AND target GLOB ?1 || '/*'"
                                " AND target NOT GLOB ?1 || '/del/*'"
                                " AND target NOT GLOB ?1 || '/' || ?2 || '/*'",
                            "si", p->id, nv)) < 0 ||
            (rc = sitedb_commit(db)) < 0) {
            sitedb_rollback(db);
            goto out;
        }
        p->version = nv;
        t->outcome = 1;
    }
    store_unlock(lk);
    lk = -1;
    store_collect(dm, db, cand, ncand, small);
    remove_outfiles(dm, p->id, p->version - 1);
    (void)ss_fmt(vs, sizeof vs, "%lld", p->version);
    log_info("package %s version %lld stored: %lld files, %s (%zu hashed, %zu unchanged, "
             "%zu new objects) in %lld ms", p->id, p->version, (long long)cur.files,
             szs(cur.bytes, zb), ss.hashed, ss.reused, ss.stored,
             (long long)(ss_mono_ms() - t0));
    sm_emit(SM_DIST_STORED, 0, attrs, p->id, vs, NULL);
    rc = 0;
out:
    store_unlock(lk);
    free(cand);
    mf_free(&prev);
    mf_free(&cur);
    return rc;
}

/* ---------------------------------------------------------------- T_PKG: child sites */

/* store/out/<pkg>-<v>.pck and .ins, built once per version. */
static int ensure_outfiles(struct distmgr *dm, sqlite3 *db, const struct pkgrow *p,
                           char *pck, char *ins, size_t len, char *err, size_t errlen)
{
    struct manifest m;
    struct instr in;
    struct sbuf b;
    EVP_PKEY *key = NULL;
    char dir[SS_PATH_MAX], keypath[SS_PATH_MAX];
    struct stat sb;
    int rc;

    if ((rc = ss_path(dir, sizeof dir, "%s/out", dm->store)) < 0 ||
        (rc = ss_path(pck, len, "%s/%s-%lld.pck", dir, p->id, p->version)) < 0 ||
        (rc = ss_path(ins, len, "%s/%s-%lld.ins", dir, p->id, p->version)) < 0 ||
        (rc = ss_path(keypath, sizeof keypath, "%s/keys/site.key", dm->root)) < 0)
        return rc;
    if (stat(ins, &sb) == 0 && stat(pck, &sb) == 0)
        return 0;
    if ((rc = ss_mkdir_p(dir, 0750)) < 0) {
        (void)ss_fmt(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
        return rc;
    }
    mf_init(&m);
    ss_sbuf_init(&b);
    memset(&in, 0, sizeof in);
    if ((rc = mf_db_load(db, p->id, p->version, &m)) < 0) {
        (void)ss_fmt(err, errlen, "cannot load the manifest of version %lld", p->version);
        goto out;
    }
    if ((rc = pck_write(dm->store, &m, pck, 3, (const volatile int *)&dm->stopping,
                        &in.pck_size, in.pck_sha, err, errlen)) < 0)
        goto out;
    if ((rc = sign_load_private(keypath, &key, err, errlen)) < 0)
        goto out;
    (void)ss_strcpy(in.package, sizeof in.package, p->id);
    (void)ss_strcpy(in.name, sizeof in.name, p->name);
    (void)ss_strcpy(in.site, sizeof in.site, dm->site);
    in.version = p->version;
    in.priority = (int)p->priority;
    in.created_ms = ss_now_ms();
    if ((rc = instr_build(&b, &in, &m, key, err, errlen)) < 0)
        goto out;
    if ((rc = ss_write_file_atomic(ins, b.data, b.len, 0640)) < 0)
        (void)ss_fmt(err, errlen, "cannot write %s: %s", ins, strerror(-rc));
out:
    EVP_PKEY_free(key);
    ss_sbuf_free(&b);
    mf_free(&m);
    return rc;
}

static int write_job(struct distmgr *dm, const struct pkgrow *p, const char *site,
                     const char *pck, const char *ins, int outfd, char *name, size_t namelen)
{
    struct sbuf b;
    struct job j = {
        .type = SEND_PACKAGE, .priority = p->priority, .version = p->version,
        .created_ms = ss_now_ms(),
    };
    int fd = -1, rc;
    size_t rl = strlen(dm->root) + 1;

    ss_sbuf_init(&b);
    /* Paths relative to the site root: a restored or moved root stays right. */
    if ((rc = ss_strcpy(j.site, sizeof j.site, site)) < 0 ||
        (rc = ss_strcpy(j.package, sizeof j.package, p->id)) < 0 ||
        (rc = ss_strcpy(j.instruction, sizeof j.instruction, ins + rl)) < 0 ||
        (rc = ss_strcpy(j.package_file, sizeof j.package_file, pck + rl)) < 0 ||
        (rc = job_format(&j, &b)) < 0)
        goto out;
    if ((rc = uniq_create(outfd, dm->site, ".job", name, namelen, &fd)) < 0)
        goto out;
    if ((rc = ss_write_all(fd, b.data, b.len)) < 0 || (rc = ss_fsync_fd(fd)) < 0) {
        close(fd);
        (void)unlinkat(outfd, name, 0);
        goto out;
    }
    close(fd);
out:
    ss_sbuf_free(&b);
    return rc;
}

/* Move a staged job into schedule.box, mark its row queued, say so once. */
static int hand_over(struct distmgr *dm, sqlite3 *db, int outfd, const char *pkg,
                     long long version, const char *site, const char *staged)
{
    char name[UNIQ_NAME_MAX], vs[24], key[64];
    const char *attrs[] = { "PackageID", pkg, "Version", vs, "Site", site, NULL };
    int rc;

    rc = uniq_move(outfd, staged, dm->schedbox.dirfd, dm->site, ".job", name, sizeof name);
    if (rc == -ENOENT) {
        /* Moved before a kill: the row is all that is left to update. */
        (void)ss_strcpy(name, sizeof name, staged);
    } else if (rc < 0) {
        log_error("cannot move job %s into %s: %s", staged, dm->schedbox.path, strerror(-rc));
        return rc;
    } else if (ss_fsync_fd(dm->schedbox.dirfd) < 0) {
        log_warn("cannot fsync %s: the job %s may not survive a crash", dm->schedbox.path, name);
    }
    /* Said before the row is marked: a kill in between says it again at
     * the next start, and the keyed uid makes statmgr record it once. */
    (void)ss_fmt(vs, sizeof vs, "%lld", version);
    (void)ss_fmt(key, sizeof key, "%s/%lld/%s", pkg, version, site);
    log_info("package %s version %lld handed to the scheduler for child site %s (%s)", pkg,
             version, site, name);
    sm_emit_keyed(SM_DIST_TO_SITE, key, 0, attrs, pkg, vs, site, NULL);
    return sitedb_execf(db, "UPDATE site_job SET state = 'queued', job = ?"
                         " WHERE package = ? AND version = ? AND site = ?",
                     "ssis", name, pkg, version, site);
}

/* Finish the hand-over of staged jobs (of pkg; NULL: all): after a kill,
 * or a move into schedule.box that failed.  *moved (may be NULL) counts. */
static int hand_over_staged(struct distmgr *dm, sqlite3 *db, const char *pkg, size_t *moved)
{
    sqlite3_stmt *st;
    int rc;

    for (;;) {
        char id[16], site[8], job[UNIQ_NAME_MAX];
        long long v;
        if ((rc = sitedb_prepare(db, "SELECT package, version, site, job FROM site_job"
                                     " WHERE state = 'staged' AND (?1 IS NULL OR package = ?1)"
                                     " LIMIT 1", &st)) < 0)
            return rc;
        if (pkg)
            sqlite3_bind_text(st, 1, pkg, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            rc = sitedb_errno(db, rc);
            sqlite3_finalize(st);
            return rc;
        }
        txt(id, sizeof id, st, 0);
        v = sqlite3_column_int64(st, 1);
        txt(site, sizeof site, st, 2);
        txt(job, sizeof job, st, 3);
        sqlite3_finalize(st);
        if ((rc = hand_over(dm, db, dm->outfd, id, v, site, job)) < 0)
            return rc;
        if (moved)
            (*moved)++;
    }
}

static int pkg_sites(struct task *t, sqlite3 *db, const struct pkgrow *p)
{
    struct distmgr *dm = t->dm;
    char (*sites)[SS_SITE_LEN + 1] = NULL;
    size_t n = 0, i;
    sqlite3_stmt *st;
    char pck[SS_PATH_MAX], ins[SS_PATH_MAX], err[SS_ERR_MAX], name[UNIQ_NAME_MAX];
    int rc, outfd = -1;

    if ((rc = hand_over_staged(dm, db, p->id, NULL)) < 0)
        return rc;
    if ((rc = sitedb_prepare(db, "SELECT code FROM site s WHERE relation = 'child'"
                                 " AND NOT EXISTS (SELECT 1 FROM site_job j WHERE j.package = ?1"
                                 " AND j.version = ?2 AND j.site = s.code) ORDER BY code",
                             &st)) < 0)
        return rc;
    sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, p->version);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        void *q = realloc(sites, (n + 1) * sizeof *sites);
        if (!q) {
            rc = SQLITE_NOMEM;
            break;
        }
        sites = q;
        txt(sites[n++], SS_SITE_LEN + 1, st, 0);
    }
    rc = sitedb_errno(db, rc);
    sqlite3_finalize(st);
    if (rc < 0 || n == 0)
        goto out;

    err[0] = 0;
    if ((rc = ensure_outfiles(dm, db, p, pck, ins, sizeof pck, err, sizeof err)) == -EINTR)
        goto out;               /* stopping: the next start builds it */
    if (rc < 0) {
        char why[SS_ERR_MAX + 64];
        struct retry_state rs;
        (void)ss_fmt(why, sizeof why, "cannot build what child sites are sent: %s",
                     err[0] ? err : strerror(-rc));
        log_error("package %s version %lld: %s", p->id, p->version, why);
        const char *attrs[] = { "PackageID", p->id, NULL };
        sm_emit(SM_DIST_FAILED, -rc, attrs, p->name, p->id, why, NULL);
        if (sitedb_begin(db) == 0) {
            if (retry_failure(db, SCOPE_SITES, p->id, why, &dm->policy, ss_now_ms(), &rs) < 0 ||
                sitedb_commit(db) < 0)
                sitedb_rollback(db);
        }
        rc = 0;                 /* reported; the "sites" retry row brings it back */
        goto out;
    }
    outfd = dup(dm->outfd);
    if (outfd < 0) {
        rc = -errno;
        goto out;
    }
    for (i = 0; i < n && !atomic_load(&dm->stopping); i++) {
        if ((rc = write_job(dm, p, sites[i], pck, ins, outfd, name, sizeof name)) < 0) {
            log_error("package %s: cannot write the job for site %s: %s", p->id, sites[i],
                      strerror(-rc));
            break;
        }
        if ((rc = sitedb_begin(db)) < 0 ||
            (rc = sitedb_execf(db, "INSERT INTO site_job (package, version, site, state, job,"
                                " created_ms) VALUES (?, ?, ?, 'staged', ?, ?)", "sissi",
                            p->id, p->version, sites[i], name, (long long)ss_now_ms())) < 0 ||
            (rc = sitedb_commit(db)) < 0) {
            sitedb_rollback(db);
            (void)unlinkat(outfd, name, 0);
            break;
        }
        if ((rc = hand_over(dm, db, outfd, p->id, p->version, sites[i], name)) < 0)
            break;          /* the row stays staged: the next start moves it */
    }
    if (rc == 0)
        (void)sitedb_execf(db, "DELETE FROM retry WHERE scope = 'sites' AND target = ?", "s", p->id);
out:
    if (outfd >= 0)
        close(outfd);
    free(sites);
    return rc;
}

int dm_recover_jobs(struct distmgr *dm)
{
    sqlite3 *db = sitedb_pool_get(&dm->dbs);
    struct inbox_entry ents[256];
    size_t n = 0, moved = 0, removed = 0;
    int rc;

    if (!db)
        return -EIO;
    /* Staged rows: finish the hand-over (their file may be moved already). */
    if ((rc = hand_over_staged(dm, db, NULL, &moved)) < 0)
        goto out;
    /* Files without a row were never handed over: the row is the commit. */
    {
        DIR *d;
        struct dirent *de;
        int fd = dup(dm->outfd);
        if (fd < 0 || !(d = fdopendir(fd))) {
            rc = -errno;
            if (fd >= 0)
                close(fd);
            goto out;
        }
        while ((de = readdir(d)) != NULL && n < SS_ARRAY_LEN(ents)) {
            if (de->d_name[0] == '.')
                continue;
            (void)ss_strcpy(ents[n++].name, sizeof ents[0].name, de->d_name);
        }
        closedir(d);
    }
    for (size_t i = 0; i < n; i++) {
        (void)unlinkat(dm->outfd, ents[i].name, 0);
        removed++;
    }
    if (moved || removed)
        log_info("jobs of an interrupted run: %zu handed to the scheduler, %zu never recorded "
                 "removed (they are written again)", moved, removed);
    rc = 0;
out:
    sitedb_pool_put(&dm->dbs, db);
    return rc;
}

/* Is a retry of the package's source walk due now? */
static int source_retry_due(sqlite3 *db, const char *pkg)
{
    struct retry_state rs;

    return retry_get(db, SCOPE_SOURCE, pkg, &rs) == 0 && rs.state == RETRY_RETRYING &&
           rs.next_ms <= ss_now_ms();
}

static int task_pkg(struct task *t, sqlite3 *db)
{
    struct pkgrow p;
    int rc;

    if ((rc = load_pkg(db, t->pkg, &p)) == -ENOENT) {
        t->gone = 1;
        return 0;
    }
    if (rc < 0)
        return rc;
    if (strcmp(p.state, "deleting") == 0)
        return pkg_finish_delete(t, db, &p);
    if (p.source[0] && (t->new_version == VERSION_ASKED || p.version == 0 ||
                        (t->new_version == VERSION_IF_DUE && source_retry_due(db, p.id)))) {
        if ((rc = pkg_new_version(t, db, &p)) < 0)
            return rc;
        if (p.version == 0)
            return 0;           /* failed, reported; the retry brings it back */
        if (t->outcome != 2 && !atomic_load(&t->dm->stopping)) {
            const char *attrs[] = { "PackageID", p.id, NULL };
            sm_emit(SM_DIST_OK, 0, attrs, p.name, p.id, NULL);
        }
    }
    if (p.version > 0 && (rc = pkg_sites(t, db, &p)) < 0)
        return rc;
    return find_dp_wants(db, t, p.id, ss_now_ms());
}

/* ---------------------------------------------------------------- T_DP */

struct dprow {
    char      path[SS_PATH_MAX];
    char      state[16];
    long long version;         /* installed */
    int       has_state;
};

static int load_dp(sqlite3 *db, const char *pkg, const char *dp, struct dprow *r)
{
    sqlite3_stmt *st;
    int rc;

    memset(r, 0, sizeof *r);
    if ((rc = sitedb_prepare(db, "SELECT d.path, s.state, s.version FROM dp d"
                                 " LEFT JOIN dp_state s ON s.package = ?1 AND s.dp = d.name"
                                 " WHERE d.name = ?2", &st)) < 0)
        return rc;
    sqlite3_bind_text(st, 1, pkg, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dp, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        txt(r->path, sizeof r->path, st, 0);
        r->has_state = sqlite3_column_type(st, 1) != SQLITE_NULL;
        txt(r->state, sizeof r->state, st, 1);
        r->version = sqlite3_column_int64(st, 2);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : sitedb_errno(db, rc);
    }
    sqlite3_finalize(st);
    return rc;
}

static int set_dp_state(sqlite3 *db, const char *pkg, const char *dp, const char *state,
                        long long version, long long target, const char *error)
{
    return sitedb_execf(db,
        /* Not for a DP removed (sitectl dp remove) while the task ran: its
         * row would hold up a deletion of the package for ever. */
        "INSERT INTO dp_state (package, dp, state, version, target, last_error, updated_ms)"
        " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS (SELECT 1 FROM dp WHERE name = ?2)"
        " ON CONFLICT (package, dp) DO UPDATE SET"
        " state = ?3, version = ?4, target = ?5, last_error = ?6, updated_ms = ?7",
        "sssiisi", pkg, dp, state, version, target, error, (long long)ss_now_ms());
}

static int dp_remove_task(struct task *t, sqlite3 *db, const char *path)
{
    struct distmgr *dm = t->dm;
    char err[SS_ERR_MAX], target[128];
    struct retry_state rs;
    int rc, r2;

    err[0] = 0;
    (void)ss_fmt(target, sizeof target, "%s/del/%s", t->pkg, t->dp);
    rc = dp_remove(path, t->pkg, err, sizeof err);
    if ((r2 = sitedb_begin(db)) < 0)
        return r2;
    if (rc == 0) {
        r2 = sitedb_execf(db, "DELETE FROM dp_state WHERE package = ? AND dp = ?", "ss", t->pkg, t->dp);
        if (r2 == 0)
            r2 = retry_success(db, SCOPE_DP, target);
        if (r2 == 0)
            log_info("package %s removed from distribution point %s (%s)", t->pkg, t->dp, path);
    } else {
        log_warn("cannot remove package %s from distribution point %s: %s", t->pkg, t->dp,
                 err[0] ? err : strerror(-rc));
        r2 = retry_failure(db, SCOPE_DP, target, err[0] ? err : strerror(-rc), &dm->policy,
                           ss_now_ms(), &rs);
        if (r2 == 0)
            r2 = set_dp_state(db, t->pkg, t->dp, "removing", 0, 0, err[0] ? err : strerror(-rc));
    }
    if (r2 < 0 || (r2 = sitedb_commit(db)) < 0) {
        sitedb_rollback(db);
        return r2;
    }
    return 0;
}

/* Did `sitectl retry clear` set this DP to failed while we were at it? */
static int cleared_meanwhile(sqlite3 *db, const char *pkg, const char *dp)
{
    struct dprow r;

    return load_dp(db, pkg, dp, &r) == 0 && r.has_state && strcmp(r.state, "failed") == 0;
}

static int task_dp(struct task *t, sqlite3 *db)
{
    struct distmgr *dm = t->dm;
    struct pkgrow p;
    struct dprow r;
    struct manifest m;
    struct dp_stats ds = { 0 };
    struct retry_state rs;
    char err[SS_ERR_MAX], vs[24], target[128], zb[32];
    const char *attrs[] = { "PackageID", t->pkg, "Version", vs, "DP", t->dp, NULL };
    int rc, r2, failed_now, cleared = 0;
    int64_t t0;

    if ((rc = load_pkg(db, t->pkg, &p)) == -ENOENT || (rc == 0 && p.version == 0))
        return 0;
    if (rc < 0)
        return rc;
    if ((rc = load_dp(db, t->pkg, t->dp, &r)) == -ENOENT)
        return 0;               /* the DP was removed meanwhile */
    if (rc < 0)
        return rc;
    if (strcmp(p.state, "deleting") == 0) {
        char del[128];
        (void)ss_fmt(del, sizeof del, "%s/del/%s", t->pkg, t->dp);
        if (retry_get(db, SCOPE_DP, del, &rs) == 0 &&
            (rs.state == RETRY_FAILED || rs.next_ms > ss_now_ms()))
            return 0;           /* given up, or not due: no ping-pong with T_PKG */
        t->deleting = 1;
        return dp_remove_task(t, db, r.path);
    }
    if (r.has_state && strcmp(r.state, "installed") == 0 && r.version == p.version)
        return 0;

    (void)ss_fmt(vs, sizeof vs, "%lld", p.version);
    (void)ss_fmt(target, sizeof target, "%s/%lld/%s", p.id, p.version, t->dp);
    /* Still waiting, or given up (the scan filters these; a stale want may not). */
    if (retry_get(db, SCOPE_DP, target, &rs) == 0 &&
        (rs.state == RETRY_FAILED || rs.next_ms > ss_now_ms()))
        return 0;

    mf_init(&m);
    if ((rc = mf_db_load(db, p.id, p.version, &m)) < 0)
        goto out;
    if ((rc = sitedb_begin(db)) < 0)
        goto out;
    if ((rc = set_dp_state(db, p.id, t->dp, "installing", r.version, p.version, "")) < 0 ||
        (rc = sitedb_commit(db)) < 0) {
        sitedb_rollback(db);
        goto out;
    }
    log_info("package %s version %lld: distributing to %s (%s), %lld files, %s", p.id,
             p.version, t->dp, r.path, (long long)m.files, szs(m.bytes, zb));
    sm_emit(SM_DIST_DP_START, 0, attrs, p.id, vs, t->dp, NULL);
    t0 = ss_mono_ms();
    err[0] = 0;
    rc = dp_install(r.path, p.id, &m, dm->store, (const volatile int *)&dm->stopping, &ds,
                    err, sizeof err);
    if (rc == -EINTR) {
        /* Stopped: the DP keeps its visible version; the next start goes on. */
        (void)set_dp_state(db, p.id, t->dp, "pending", r.version, p.version, "");
        goto out;
    }
    if ((r2 = sitedb_begin(db)) < 0) {
        rc = r2;
        goto out;
    }
    if (rc == 0) {
        r2 = set_dp_state(db, p.id, t->dp, "installed", p.version, p.version, "");
        if (r2 == 0)
            r2 = sitedb_execf(db, "DELETE FROM retry WHERE scope = 'dp' AND target GLOB ?1 || '/*/' || ?2",
                           "ss", p.id, t->dp);
        failed_now = 0;
    } else if (cleared_meanwhile(db, p.id, t->dp)) {
        /* `retry clear` while this attempt ran: the administrator's word
         * stands; no new history. */
        r2 = 0;
        cleared = 1;
        log_info("package %s version %lld on %s failed, retries were cleared meanwhile: %s",
                 p.id, p.version, t->dp, err[0] ? err : "");
    } else {
        const char *why = err[0] ? err : strerror(-rc);
        r2 = retry_failure(db, SCOPE_DP, target, why, &dm->policy, ss_now_ms(), &rs);
        failed_now = r2 == 1;
        if (r2 >= 0)
            r2 = set_dp_state(db, p.id, t->dp, failed_now ? "failed" : "retrying", r.version,
                              p.version, why);
    }
    if (r2 < 0 || (r2 = sitedb_commit(db)) < 0) {
        sitedb_rollback(db);
        rc = r2;
        goto out;
    }
    if (cleared) {
        rc = 0;
    } else if (rc == 0) {
        log_info("package %s version %lld installed on %s: %zu files copied (%s), %zu kept, "
                 "in %lld ms", p.id, p.version, t->dp, ds.copied, szs(ds.bytes_copied, zb),
                 ds.linked, (long long)(ss_mono_ms() - t0));
        sm_emit(SM_DIST_DP_DONE, 0, attrs, p.id, vs, t->dp, NULL);
        t->outcome = 1;
        /* The generation before the previous one goes now, after the DP
         * is recorded installed, not on the way there. */
        size_t swept = 0;
        if (dp_sweep(r.path, p.id, &swept) < 0)
            log_warn("package %s on %s: old generations not all removed; the next install "
                     "tries again", p.id, t->dp);
    } else {
        t->outcome = 2;
        const char *why = err[0] ? err : strerror(-rc);
        char when[40], att[24];
        (void)ss_fmt_time_iso(rs.next_ms, when, sizeof when);
        (void)ss_fmt(att, sizeof att, "%lld", rs.attempts);
        sm_emit(SM_DIST_DP_COPY_FAILED, -rc, attrs, p.id, vs, t->dp, why, NULL);
        if (failed_now) {
            log_error("package %s version %lld on %s failed %lld times, giving up: %s", p.id,
                      p.version, t->dp, rs.attempts, why);
            sm_emit(SM_DIST_DP_FAILED_MAX, -rc, attrs, p.id, vs, t->dp, att, NULL);
        } else {
            log_warn("package %s version %lld on %s failed (attempt %lld), retrying at %s: %s",
                     p.id, p.version, t->dp, rs.attempts, when, why);
        }
        rc = 0;                 /* reported and recorded */
    }
out:
    mf_free(&m);
    return rc;
}

/* ---------------------------------------------------------------- T_GC */

static int task_gc(struct task *t, sqlite3 *db)
{
    struct distmgr *dm = t->dm;
    sqlite3_stmt *st = NULL;
    char dir[SS_PATH_MAX];
    size_t removed = 0;
    int rc;

    if ((rc = sitedb_prepare(db, "SELECT 1 FROM manifest WHERE sha256 = ? LIMIT 1", &st)) < 0)
        return rc;
    for (int fan = 0; fan < 256 && !atomic_load(&dm->stopping); fan++) {
        struct dirent *de;
        DIR *d;
        int lk;

        if (ss_path(dir, sizeof dir, "%s/objects/%02x", dm->store, fan) < 0 || !(d = opendir(dir)))
            continue;
        if ((lk = store_lock(dm->store, 1)) < 0) {
            closedir(d);
            rc = lk;
            break;
        }
        /* The read transaction starts after the lock is held, so it sees
         * every manifest a walk committed before releasing its shared lock. */
        if ((rc = sitedb_exec(db, "BEGIN")) < 0) {
            store_unlock(lk);
            closedir(d);
            break;
        }
        while ((de = readdir(d)) != NULL && !atomic_load(&dm->stopping)) {
            unsigned char sha[32];
            if (strlen(de->d_name) != 64 || ss_unhex(de->d_name, sha, 32) < 0)
                continue;
            sqlite3_reset(st);
            sqlite3_bind_blob(st, 1, sha, 32, SQLITE_STATIC);
            rc = sqlite3_step(st);
            if (rc == SQLITE_DONE) {
                if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                    removed++;
            } else if (rc != SQLITE_ROW) {
                break;
            }
        }
        /* A statement left on a row would keep this snapshot open past the
         * COMMIT, and the next directory would be checked against it. */
        sqlite3_reset(st);
        (void)sitedb_exec(db, "COMMIT");
        store_unlock(lk);
        closedir(d);
        rc = (rc == SQLITE_ROW || rc == SQLITE_DONE || rc == 0) ? 0 : sitedb_errno(db, rc);
        if (rc < 0)
            break;
    }
    sqlite3_finalize(st);
    if (rc == 0 && !atomic_load(&dm->stopping)) {
        int lk = store_lock(dm->store, 1);
        if (lk >= 0) {
            removed += collect_small(dm);
            store_unlock(lk);
        }
    }
    if (removed)
        log_info("store: removed %zu objects that no package version uses (left by an "
                 "interrupted or failed source walk)", removed);
    return rc;
}

/* ---------------------------------------------------------------- dispatch */

void task_work(struct pool_job *j)
{
    struct task *t = (struct task *)j;
    sqlite3 *db;

    if (atomic_load(&t->dm->stopping)) {
        t->rc = -EINTR;
        return;
    }
    if ((db = sitedb_pool_get(&t->dm->dbs)) == NULL) {
        t->rc = -EIO;
        return;
    }
    switch (t->kind) {
    case T_SCAN: t->rc = task_scan(t, db); break;
    case T_PKG:  t->rc = task_pkg(t, db); break;
    case T_DP:   t->rc = task_dp(t, db); break;
    case T_GC:   t->rc = task_gc(t, db); break;
    }
    /* A statement a stop interrupted may have left a transaction open. */
    if (!sqlite3_get_autocommit(db))
        sitedb_rollback(db);
    t->next_retry = atomic_load(&t->dm->stopping) ? INT64_MAX : dm_next_retry(db);
    sitedb_pool_put(&t->dm->dbs, db);
}

int64_t dm_next_retry(sqlite3 *db)
{
    static const char *const scopes[] = { SCOPE_DP, SCOPE_SOURCE, SCOPE_SITES };
    int64_t best = INT64_MAX, n;

    for (size_t i = 0; i < SS_ARRAY_LEN(scopes); i++)
        if (retry_next_due(db, scopes[i], &n) == 0 && n < best)
            best = n;
    return best;
}
