/*
 * install.c - the Despooler's work for one instruction, on a worker thread.
 *
 * SYNOPSIS
 *   ds_process(env, db, inbox, name, &result)
 *   ds_bundle(env, db, inbox, name, &result)
 *   ds_pck_name(ins, buf, len)
 *   ds_pck_orphan(inbox, pck, now_s, age_s)
 *   ds_peek_priority(dirfd, name)
 *   ds_cand_cmp(a, b)
 *   ds_group_init(group) ds_group_close(group)
 *   ds_has_suffix(name, suffix)
 *
 * DESCRIPTION
 *   An instruction X.ins arrives in despoolr.box/receive after its package
 *   file X.pck (the sender renames the instruction in last: that rename
 *   is the commit).  ds_process takes the claimed instruction through:
 *
 *   1. read it and verify it (instr_parse): the record's checksum, the
 *      Ed25519 signature with the public key the site table records for
 *      the site it names (an unknown site is refused), the fields, and
 *      the manifest (mf_from_record refuses an absolute path, a ".."
 *      component, anything that would land outside the package
 *      directory).  Anything wrong: both files to corrupt/, 8301.
 *   2. X.pck not there: the instruction goes back to the inbox at once
 *      (DS_WAITING); the loop looks again later.  A worker never waits.
 *   3. the version is not newer than the one this site holds: nothing
 *      changes; both files are removed, 8302.
 *   4. the package file is opened (O_NOFOLLOW|O_NONBLOCK: a link or a
 *      FIFO put in its place is refused, never waited on) and, under the
 *      store's shared lock (taken so that a stop gives up waiting; held
 *      so that distmgr's collection of unreferenced objects never removes
 *      what this version is about to reference), pck_extract_fd checks
 *      the file's size and SHA-256 and every file's SHA-256 (a mismatch:
 *      both files to corrupt/, 8301), storing large files as loose
 *      objects and keeping small ones, verified, in memory.
 *   5. the commit, together with the other workers that are this far
 *      (group commit, struct ds_group): one small.db transaction for the
 *      small objects of all of them (durable at its commit); one syncfs
 *      of the store only if one of them has loose objects (a loose
 *      object found in the store may be another writer's, not yet
 *      synced); one BEGIN IMMEDIATE transaction in which each package
 *      row moves forward to its version (never back: the version, the
 *      package's own source and a delete in progress are read again
 *      inside the transaction; a delete in progress gives the
 *      instruction back until it is over), its pkg_version and manifest
 *      rows are inserted and older versions' rows deleted; then, only
 *      with that committed, the requests for distmgr (update) handed
 *      over together, and the 8300s together.  If a request fails,
 *      distmgr's periodic scan finds the version anyway.
 *   6. the package file and the instruction are removed.
 *
 *   A kill anywhere leaves the instruction in work/ (returned to the
 *   inbox at the next start) or already finished: step 3 makes a repeat
 *   of a committed install harmless.  Loose objects pck_extract stored
 *   before a kill are correct content that no manifest references until
 *   distmgr's collection removes them.
 *
 *   A package this site makes from a source of its own (source not empty)
 *   is never replaced from another site: such an instruction is rejected.
 *
 *   A status bundle X.sts (a child site's status messages, lib/statrep.h)
 *   is one file, committed by its rename into receive/: ds_bundle checks
 *   its checksum, fields and signature (the same key lookup), drops its
 *   bytes unchanged into statmgr.box/sites and removes it.  It never
 *   touches the store or the package tables.  A kill after the drop and
 *   before the removal hands it over twice; statmgr records each message
 *   once (its uid).
 *
 * DIAGNOSTICS
 *   logs/despool.log (info for installs and duplicates, warn for
 *   rejections, error for failures that return the instruction); status
 *   messages 8300 (PackageID, Version, Site), 8301 (for a bad instruction
 *   or status bundle), 8302 (PackageID, Version, Site) and, through
 *   inbox_quarantine, the corrupt-file message.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "despool.h"
#include "fsutil.h"
#include "log.h"
#include "manifest.h"
#include "pkgreq.h"
#include "sendreq.h"
#include "sitedb.h"
#include "statmsg.h"
#include "statrep.h"

int ds_has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), l = strlen(suffix);

    return n > l && strcmp(name + n - l, suffix) == 0;
}

int ds_pck_name(const char *ins, char *buf, size_t len)
{
    size_t n = strlen(ins);

    if (n < 5 || strcmp(ins + n - 4, ".ins") != 0 || n >= len)
        return -EINVAL;
    memcpy(buf, ins, n - 4);
    memcpy(buf + n - 4, ".pck", 5);
    return 0;
}

int ds_cand_cmp(const void *a, const void *b)
{
    const struct ds_cand *x = a, *y = b;

    if (x->prio != y->prio)
        return x->prio < y->prio ? -1 : 1;
    if (x->mtime_ns != y->mtime_ns)
        return x->mtime_ns < y->mtime_ns ? -1 : 1;
    return strcmp(x->name, y->name);
}

int ds_peek_priority(int dirfd, const char *name)
{
    char buf[4097], *p;
    enum send_prio pr;
    ssize_t n;
    size_t len = 0;
    int fd;

    if ((fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0)
        return PRIO_MEDIUM;
    while (len < sizeof buf - 1 &&
           ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            len += (size_t)n;
    close(fd);
    buf[len] = 0;
    /* A field starts a line; a value never holds a raw newline (the
     * record escapes it), so "\npriority=" is the field. */
    if (!(p = memmem(buf, len, "\npriority=", 10)))
        return PRIO_MEDIUM;
    p += 10;
    p[strcspn(p, "\n")] = 0;
    if (prio_parse(p, &pr) < 0)
        return PRIO_MEDIUM;
    return (int)pr;
}

int ds_pck_orphan(struct inbox *ib, const char *pck, int64_t now_s, int64_t age_s)
{
    char ins[SS_NAME_MAX + 1];
    size_t l = strlen(pck);
    struct stat sb;

    if (!ds_has_suffix(pck, ".pck") || l >= sizeof ins)
        return 0;
    memcpy(ins, pck, l - 4);
    memcpy(ins + l - 4, ".ins", 5);
    if (faccessat(ib->dirfd, ins, F_OK, AT_SYMLINK_NOFOLLOW) == 0 ||
        (ib->workfd >= 0 && faccessat(ib->workfd, ins, F_OK, AT_SYMLINK_NOFOLLOW) == 0))
        return 0;
    if (fstatat(ib->dirfd, pck, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    return now_s - (int64_t)sb.st_mtim.tv_sec >= age_s;
}

/* ---------------------------------------------------------------- keys */

struct keyctx {
    sqlite3 *db;
    int      dberr;            /* the database failed: not the sender's fault */
    char     site[SS_SITE_LEN + 1];
    char     why[SS_ERR_MAX];  /* a recorded key that does not load */
};

/* instr_key_fn: the public key recorded for site, or NULL. */
static EVP_PKEY *key_for(void *arg, const char *site)
{
    struct keyctx *k = arg;
    sqlite3_stmt *st;
    EVP_PKEY *key = NULL;
    int rc;

    (void)ss_strcpy(k->site, sizeof k->site, site);
    if ((rc = sitedb_prepare(k->db, "SELECT pubkey FROM site WHERE code = ?", &st)) < 0) {
        k->dberr = rc;
        return NULL;
    }
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *pem = (const char *)sqlite3_column_text(st, 0);
        int len = sqlite3_column_bytes(st, 0);
        if (!pem || sign_load_public_pem(pem, (size_t)len, &key, k->why, sizeof k->why) < 0)
            key = NULL;
    } else if (rc != SQLITE_DONE) {
        k->dberr = sitedb_errno(k->db, rc);
        if (k->dberr == 0)
            k->dberr = -EIO;
    }
    sqlite3_finalize(st);
    return key;
}

/* ---------------------------------------------------------------- helpers */

/* The package's version, whether it has a source of this site and
 * whether it is being deleted here (deleting may be NULL): 0 (*version 0
 * when there is no row) or -errno. */
static int held_state(sqlite3 *db, const char *pkg, long long *version, int *own,
                      int *deleting)
{
    sqlite3_stmt *st;
    int rc;

    *version = 0;
    *own = 0;
    if (deleting)
        *deleting = 0;
    if ((rc = sitedb_prepare(db, "SELECT version, source, state FROM package WHERE id = ?",
                             &st)) < 0)
        return rc;
    sqlite3_bind_text(st, 1, pkg, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *src = sqlite3_column_text(st, 1);
        const unsigned char *state = sqlite3_column_text(st, 2);
        *version = sqlite3_column_int64(st, 0);
        *own = src && src[0];
        if (deleting)
            *deleting = state && strcmp((const char *)state, "deleting") == 0;
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = sitedb_errno(db, rc);
        if (rc == 0)
            rc = -EIO;
    }
    sqlite3_finalize(st);
    return rc;
}

static void give_back(struct inbox *ib, const char *name, struct ds_result *res,
                      enum ds_outcome outcome)
{
    int rc = inbox_return(ib, name);

    if (rc < 0)
        log_error("%s: cannot return it to %s: %s; it is returned at the next start",
                  name, ib->path, strerror(-rc));
    res->outcome = outcome;
}

static void reject(struct inbox *ib, const char *name, const char *pck, const char *site,
                   struct ds_result *res, const char *why)
{
    int rc;

    (void)ss_strcpy(res->why, sizeof res->why, why);
    res->outcome = DS_REJECTED;
    log_warn("%s %s from site %s rejected: %s",
             ds_has_suffix(name, STATREP_SUFFIX) ? "status bundle" : "instruction", name,
             site[0] ? site : "unknown", why);
    if ((rc = inbox_quarantine(ib, 1, name, why)) < 0)
        log_error("%s: cannot quarantine it: %s", name, strerror(-rc));
    /* The package file goes with it, if it came; it is evidence too. */
    if (pck[0] && faccessat(ib->dirfd, pck, F_OK, AT_SYMLINK_NOFOLLOW) == 0 &&
        (rc = inbox_quarantine(ib, 0, pck, why)) < 0 && rc != -ENOENT)
        log_error("package file %s: cannot quarantine it: %s", pck, strerror(-rc));
    {
        /* The package is named only once the signature held. */
        char vs[24];
        const char *attrs[] = { "Site", site, "PackageID", res->in.package, "Version", vs, NULL };
        (void)ss_fmt(vs, sizeof vs, "%lld", res->in.version);
        if (!site[0])
            attrs[0] = NULL;
        else if (!res->parsed)
            attrs[2] = NULL;
        sm_emit(SM_DESPOOL_REJECTED, 0, attrs, name, site[0] ? site : "unknown", why, NULL);
    }
}

/* Both files removed: the instruction is finished. */
static void finish(struct inbox *ib, const char *name, const char *pck)
{
    int rc;

    /* The package file first: a kill in between leaves the instruction,
     * which ends as a duplicate at the next start, not a package file
     * nothing would ever remove. */
    if (unlinkat(ib->dirfd, pck, 0) < 0 && errno != ENOENT)
        log_error("package file %s: cannot remove it: %s", pck, strerror(errno));
    if ((rc = inbox_done(ib, name)) < 0 && rc != -ENOENT)
        log_error("instruction %s: cannot remove it from work/: %s", name, strerror(-rc));
}

/* 8300 for (package, version): keyed, so that saying it again after a
 * kill (the redo finds the version held and says it from duplicate())
 * is recorded once, and a kill before it was said loses nothing. */
static void say_installed(const struct instr *in)
{
    char vs[24], key[64];
    const char *attrs[] = { "PackageID", in->package, "Version", vs, "Site", in->site, NULL };

    (void)ss_fmt(vs, sizeof vs, "%lld", in->version);
    (void)ss_fmt(key, sizeof key, "installed/%s/%lld", in->package, in->version);
    sm_emit_keyed(SM_DESPOOL_INSTALLED, key, 0, attrs, in->package, vs, in->site, NULL);
}

static void duplicate(struct inbox *ib, const char *name, const char *pck,
                      struct ds_result *res)
{
    const struct instr *in = &res->in;
    char vs[24], hs[24];
    const char *attrs[] = { "PackageID", in->package, "Version", vs, "Site", in->site, NULL };

    (void)ss_fmt(vs, sizeof vs, "%lld", in->version);
    (void)ss_fmt(hs, sizeof hs, "%lld", res->held);
    res->outcome = DS_DUPLICATE;
    log_info("instruction %s: package %s version %lld from site %s is not newer than "
             "version %lld held here; nothing changed", name, in->package, in->version,
             in->site, res->held);
    if (res->held == in->version)
        say_installed(in);      /* perhaps never said: killed before it */
    finish(ib, name, pck);
    sm_emit(SM_DESPOOL_DUPLICATE, 0, attrs, in->package, vs, in->site, hs, NULL);
}

/* What the group's transaction decided for one install. */
enum verdict_kind { V_ERROR, V_RECORDED, V_DUPLICATE, V_OWN, V_DELETING };

/* One install waiting for, or in, a group commit. */
struct ds_gitem {
    const struct instr    *in;
    const struct manifest *m;
    struct pck_xopt       *x;
    enum verdict_kind      verdict;
    long long              held;     /* V_DUPLICATE: the version this site has */
    int                    err;      /* V_ERROR: -errno */
    char                   why[SS_ERR_MAX];
    int                    done;
    struct ds_gitem       *next;
};

int ds_group_init(struct ds_group *g)
{
    int rc;

    memset(g, 0, sizeof *g);
    if ((rc = pthread_mutex_init(&g->mu, NULL)) != 0)
        return -rc;
    if ((rc = pthread_cond_init(&g->cv, NULL)) != 0) {
        pthread_mutex_destroy(&g->mu);
        return -rc;
    }
    return 0;
}

void ds_group_close(struct ds_group *g)
{
    store_writer_close(g->sw);
    g->sw = NULL;
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

/* The rows of one version, inside the group's open transaction: its
 * verdict.  The version is read again here, inside the transaction
 * (another worker, or an earlier install of the group, may have
 * recorded one as new), and so is whether the package is this site's
 * own (finding 13) or being deleted here (finding 12: recorded now, it
 * would be wiped by the delete; it waits until the delete is over).
 * -errno when a statement failed: the transaction is then in doubt. */
static int record_one(sqlite3 *db, struct ds_gitem *it, long long now)
{
    const struct instr *in = it->in;
    const struct manifest *m = it->m;
    long long held;
    int own, deleting, rc;

    if ((rc = held_state(db, in->package, &held, &own, &deleting)) < 0)
        return rc;
    if (own) {
        it->verdict = V_OWN;
        return 0;
    }
    if (held >= in->version) {
        it->held = held;
        it->verdict = V_DUPLICATE;
        return 0;
    }
    if (deleting) {
        it->verdict = V_DELETING;
        return 0;
    }
    if ((rc = sitedb_execf(db,
            "INSERT INTO package (id, name, source, origin, version, all_dps, state,"
            " last_error, created_ms, updated_ms, priority) VALUES (?1, ?2, '', ?3, ?4, 1,"
            " 'active', '', ?5, ?5, ?6) ON CONFLICT(id) DO UPDATE SET version ="
            " excluded.version, name = excluded.name, origin = excluded.origin,"
            " updated_ms = excluded.updated_ms, priority = excluded.priority"
            " WHERE excluded.version > package.version",
            "sssiis", in->package, in->name, in->site, in->version, now,
            prio_name((enum send_prio)in->priority))) < 0 ||
        (rc = sitedb_execf(db, "INSERT INTO pkg_version (package, version, files, bytes,"
                            " created_ms) VALUES (?, ?, ?, ?, ?)", "siiii", in->package,
                        in->version, (long long)m->files, (long long)m->bytes, now)) < 0 ||
        (rc = mf_db_save(db, in->package, in->version, m)) < 0 ||
        (rc = sitedb_execf(db, "DELETE FROM pkg_version WHERE package = ? AND version < ?",
                        "si", in->package, in->version)) < 0 ||
        /* As distmgr does when it makes a version: the DP history of older
         * versions is dropped (a DP is brought to the newest), or an
         * overdue row nothing acts on would keep distmgr's timer firing. */
        (rc = sitedb_execf(db, "DELETE FROM retry WHERE scope = 'dp' AND target GLOB ?1 || '/*'"
                            " AND target NOT GLOB ?1 || '/del/*'"
                            " AND target NOT GLOB ?1 || '/' || ?2 || '/*'",
                        "si", in->package, in->version)) < 0)
        return rc;
    it->verdict = V_RECORDED;
    return 0;
}

static void group_fail(struct ds_gitem *list, int err, const char *why)
{
    for (struct ds_gitem *it = list; it; it = it->next) {
        it->verdict = V_ERROR;
        it->err = err;
        (void)ss_strcpy(it->why, sizeof it->why, why);
    }
}

/* Requests for distmgr, one per package recorded, handed over together
 * (one sync); a failure is logged: distmgr's periodic scan finds the
 * versions anyway. */
static void group_pkgreqs(const struct ds_env *env, struct ds_gitem *list)
{
    struct inbox ib;
    struct sbuf bufs[64];
    struct inbox_item items[64];
    size_t n = 0, done = 0;
    int rc;

    for (struct ds_gitem *it = list; it; it = it->next) {
        struct pkgreq r = { .action = PKGREQ_UPDATE, .time_ms = ss_now_ms() };
        if (it->verdict != V_RECORDED)
            continue;
        if (n == SS_ARRAY_LEN(bufs)) {
            /* More than a group ever holds: the rest one by one. */
            if ((rc = pkgreq_drop(env->root, env->site, PKGREQ_UPDATE, it->in->package)) < 0)
                log_error("package %s version %lld: cannot drop a request into distmgr.box: "
                          "%s; distmgr's next scan finds the version", it->in->package,
                          it->in->version, strerror(-rc));
            continue;
        }
        (void)ss_strcpy(r.package, sizeof r.package, it->in->package);
        ss_sbuf_init(&bufs[n]);
        if (pkgreq_format(&r, &bufs[n]) < 0) {
            ss_sbuf_free(&bufs[n]);
            log_error("package %s: cannot format a request for distmgr", it->in->package);
            continue;
        }
        items[n].data = bufs[n].data;
        items[n].len = bufs[n].len;
        n++;
    }
    if (n == 0)
        return;
    if ((rc = inbox_open(&ib, env->root, IB_DISTMGR, env->site, 0)) == 0) {
        rc = inbox_drop_many(&ib, ".pkg", items, n, &done);
        inbox_close(&ib);
    }
    if (rc < 0)
        log_error("%zu of %zu requests for distmgr not dropped into distmgr.box: %s; "
                  "distmgr's next scan finds the versions", n - done, n, strerror(-rc));
    for (size_t i = 0; i < n; i++)
        ss_sbuf_free(&bufs[i]);
}

static void say_installed(const struct instr *in);

/* The leader's work for the installs of list, on its connection db. */
static void group_commit(const struct ds_env *env, struct ds_group *g, sqlite3 *db,
                         struct ds_gitem *list)
{
    long long now = ss_now_ms();
    int sync = 0, small = 0, rc;

    /* 1. The small objects of every install, one small.db transaction
     * (synchronous=FULL: durable when the commit returns). */
    for (struct ds_gitem *it = list; it; it = it->next) {
        sync |= it->x->loose > 0;
        small |= it->x->deferred && it->x->nsmall > 0;
    }
    if (small) {
        if (!g->sw && (rc = store_writer_open(env->store, &g->sw)) < 0) {
            group_fail(list, rc, "cannot open the store's small.db");
            return;
        }
        rc = 0;
        for (struct ds_gitem *it = list; it && rc == 0; it = it->next)
            for (size_t i = 0; it->x->deferred && i < it->x->nsmall && rc == 0; i++) {
                const struct pck_small *ps = &it->x->small[i];
                rc = store_put_small(g->sw, ps->sha, it->x->data + ps->off, ps->size);
            }
        /* A failed put breaks the writer: its commit reports it and
         * rolls back, and the writer is usable again. */
        int crc = store_writer_commit(g->sw);
        if (rc == 0)
            rc = crc;
        if (rc < 0) {
            group_fail(list, rc, "cannot store the small objects in small.db");
            return;
        }
    }
    /* 2. Loose objects (stored by this install or found, perhaps written
     * by another one not yet synced) durable before a manifest names
     * them.  Small objects need no syncfs: their commit was durable. */
    if (sync && (rc = store_sync(env->store)) < 0) {
        group_fail(list, rc, "cannot make the content store durable");
        return;
    }
    /* 3. Every version in one transaction. */
    if ((rc = sitedb_begin(db)) < 0) {
        group_fail(list, rc, "cannot record the version in the site database");
        return;
    }
    for (struct ds_gitem *it = list; it; it = it->next)
        if ((rc = record_one(db, it, now)) < 0)
            break;
    if (rc < 0 || (rc = sitedb_commit(db)) < 0) {
        sitedb_rollback(db);
        group_fail(list, rc, "cannot record the version in the site database");
        return;
    }
    /* 4. Only now, with the versions durable: distmgr's requests and the
     * 8300s, each kind handed over with one sync. */
    group_pkgreqs(env, list);
    sm_batch_begin();
    for (struct ds_gitem *it = list; it; it = it->next)
        if (it->verdict == V_RECORDED)
            say_installed(it->in);
    (void)sm_batch_end();
}

/* Queue it and wait until a leader (perhaps this thread) committed it. */
static void group_run(const struct ds_env *env, sqlite3 *db, struct ds_gitem *it)
{
    struct ds_group local, *g = env->group;
    struct ds_gitem **tp;

    if (!g) {
        if (ds_group_init(&local) < 0) {
            group_fail(it, -ENOMEM, "out of memory");
            return;
        }
        g = &local;
    }
    pthread_mutex_lock(&g->mu);
    for (tp = &g->queue; *tp; tp = &(*tp)->next)
        ;
    *tp = it;
    while (!it->done) {
        if (g->busy) {
            pthread_cond_wait(&g->cv, &g->mu);
            continue;
        }
        /* Lead: take every install queued, this one among them. */
        struct ds_gitem *list = g->queue;
        size_t n = 0;
        g->queue = NULL;
        g->busy = 1;
        pthread_mutex_unlock(&g->mu);
        group_commit(env, g, db, list);
        pthread_mutex_lock(&g->mu);
        for (struct ds_gitem *x = list, *nx; x; x = nx) {
            nx = x->next;
            x->next = NULL;
            x->done = 1;
            n++;
        }
        g->groups++;
        g->items += n;
        g->busy = 0;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    if (g == &local)
        ds_group_close(&local);
}

/* What the file is called in messages. */
static const char *what_of(const char *name)
{
    return ds_has_suffix(name, STATREP_SUFFIX) ? "status bundle" : "instruction";
}

/* Read the claimed file name (at most max bytes) into *buf.  0, or -1
 * when it is finished already: rejected (not a regular file of at most
 * max bytes; pck goes with it) or given back (a read error that may
 * pass). */
static int read_claimed(struct inbox *ib, const char *name, size_t max, const char *pck,
                        char **buf, size_t *len, struct ds_result *res)
{
    char why[SS_ERR_MAX];
    int rc = ss_read_file(ib->workfd, name, max, buf, len);

    if (rc == -EFBIG || rc == -EISDIR || rc == -EINVAL) {
        (void)ss_fmt(why, sizeof why, "format: not a regular file of at most %zu bytes", max);
        reject(ib, name, pck, "", res, why);
        return -1;
    }
    if (rc < 0) {
        res->err = rc;
        (void)ss_fmt(res->why, sizeof res->why, "cannot read it: %s", strerror(-rc));
        log_error("%s %s: %s; it waits in the inbox", what_of(name), name, res->why);
        give_back(ib, name, res, DS_RETURNED);
        return -1;
    }
    return 0;
}

/* After the parse of a signed file (rc, err): 0 when it verified, or -1
 * when it is finished: given back (the site table could not be read, no
 * memory) or rejected with pck (malformed, unknown site, bad signature). */
static int verdict(struct inbox *ib, const char *name, const char *pck, int rc,
                   const struct keyctx *kc, const char *err, struct ds_result *res)
{
    char why[SS_ERR_MAX + 96];

    if (kc->dberr) {
        res->err = kc->dberr;
        (void)ss_fmt(res->why, sizeof res->why, "cannot read the site table");
        if (kc->dberr != -EINTR)
            log_error("%s %s: %s; it waits in the inbox", what_of(name), name, res->why);
        give_back(ib, name, res, DS_RETURNED);
        return -1;
    }
    if (rc == -ENOMEM) {
        res->err = rc;
        (void)ss_fmt(res->why, sizeof res->why, "out of memory");
        log_error("%s %s: out of memory; it waits in the inbox", what_of(name), name);
        give_back(ib, name, res, DS_RETURNED);
        return -1;
    }
    if (rc < 0) {
        const char *kind = rc == -EPERM ? "signature" : "format";
        if (rc == -EPERM && kc->why[0])
            (void)ss_fmt(why, sizeof why, "signature: %s (the key recorded for site %s: %s)",
                         err, kc->site, kc->why);
        else
            (void)ss_fmt(why, sizeof why, "%s: %s", kind, err[0] ? err : strerror(-rc));
        reject(ib, name, pck, kc->site, res, why);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the work */

void ds_process(const struct ds_env *env, sqlite3 *db, struct inbox *ib, const char *name,
                struct ds_result *res)
{
    struct instr *in = &res->in;
    struct keyctx kc = { .db = db };
    struct manifest m;
    struct stat sb;
    char pck[SS_NAME_MAX + 1], path[SS_PATH_MAX], err[SS_ERR_MAX], why[SS_ERR_MAX + 96];
    char vs[24];
    char *buf = NULL;
    size_t len = 0;
    long long held;
    int own, rc, lk = -1, pfd = -1;
    int64_t t0 = ss_mono_ms();
    struct pck_xopt x;
    struct ds_gitem it;

    memset(res, 0, sizeof *res);
    memset(&x, 0, sizeof x);
    memset(&it, 0, sizeof it);
    mf_init(&m);
    err[0] = 0;
    if (ds_pck_name(name, pck, sizeof pck) < 0) {
        /* The loop submits only .ins names; be safe all the same. */
        reject(ib, name, "", "", res, "not an instruction name");
        return;
    }
    if (env->stop && *env->stop) {
        give_back(ib, name, res, DS_RETURNED);
        return;
    }

    /* 1. Read and verify. */
    if (read_claimed(ib, name, INSTR_MAX_SIZE, pck, &buf, &len, res) < 0)
        return;
    rc = instr_parse(buf, len, key_for, &kc, in, &m, err, sizeof err);
    free(buf);
    if (verdict(ib, name, pck, rc, &kc, err, res) < 0)
        goto out;
    res->parsed = 1;
    (void)ss_fmt(vs, sizeof vs, "%lld", in->version);

    /* 2. Not newer: nothing to do.  Before the package file is looked
     * for: a second delivery of a version installed meanwhile (its
     * package file already removed) must end, not wait for ever. */
    if ((rc = held_state(db, in->package, &held, &own, NULL)) < 0) {
        res->err = rc;
        (void)ss_fmt(res->why, sizeof res->why, "cannot read the package table");
        give_back(ib, name, res, DS_RETURNED);
        goto out;
    }
    if (own) {
        (void)ss_fmt(why, sizeof why, "package %s is made at this site from a source of its "
                     "own; it is not replaced from site %s", in->package, in->site);
        reject(ib, name, pck, in->site, res, why);
        goto out;
    }
    if (held >= in->version) {
        res->held = held;
        duplicate(ib, name, pck, res);
        goto out;
    }

    /* 3. The package file: opened here, without following a symbolic
     * link and without blocking on a FIFO (finding 11), and that very
     * file is what is checked and unpacked. */
    if ((pfd = openat(ib->dirfd, pck, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0) {
        if (errno == ENOENT) {
            give_back(ib, name, res, DS_WAITING);
        } else if (errno == ELOOP) {
            reject(ib, name, pck, in->site, res, "package file: not a regular file");
        } else {
            res->err = -errno;
            (void)ss_fmt(res->why, sizeof res->why, "cannot open %s: %s", pck,
                         strerror(errno));
            log_error("instruction %s: %s", name, res->why);
            give_back(ib, name, res, DS_RETURNED);
        }
        goto out;
    }
    if (fstat(pfd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        reject(ib, name, pck, in->site, res, "package file: not a regular file");
        goto out;
    }

    /* 4. Into the store, then the database, under the store's lock
     * (given up at a stop: finding 6). */
    if ((lk = store_lock_stop(env->store, 0, env->stop)) < 0) {
        if (lk == -EINTR) {
            give_back(ib, name, res, DS_RETURNED);
            goto out;
        }
        res->err = lk;
        (void)ss_fmt(res->why, sizeof res->why, "cannot lock the content store: %s",
                     strerror(-lk));
        log_error("instruction %s: %s", name, res->why);
        give_back(ib, name, res, DS_RETURNED);
        goto out;
    }
    if ((rc = ss_path(path, sizeof path, "%s/%s", ib->path, pck)) < 0)
        (void)ss_strcpy(path, sizeof path, pck);     /* only for messages */
    err[0] = 0;
    x.defer_max = DS_DEFER_MAX;
    rc = pck_extract_fd(pfd, path, in->pck_size, in->pck_sha, &m, env->store, env->stop, &x,
                        err, sizeof err);
    if (rc == -EINTR) {
        give_back(ib, name, res, DS_RETURNED);   /* stopping: unpacked again next time */
        goto out;
    }
    if (rc == -EBADMSG) {
        (void)ss_fmt(why, sizeof why, "package file: %s", err[0] ? err : "does not match");
        reject(ib, name, pck, in->site, res, why);
        goto out;
    }
    if (rc < 0) {
        res->err = rc;
        (void)ss_fmt(res->why, sizeof res->why, "cannot unpack %s into the store: %s", pck,
                     err[0] ? err : strerror(-rc));
        log_error("instruction %s: %s; it is tried again", name, res->why);
        give_back(ib, name, res, DS_RETURNED);
        goto out;
    }
    if (env->stop && *env->stop) {
        give_back(ib, name, res, DS_RETURNED);
        goto out;
    }
    /* The small objects, the store's sync, the rows, distmgr's request
     * and 8300, together with the installs of other workers that are
     * this far now (struct ds_group). */
    it.in = in;
    it.m = &m;
    it.x = &x;
    group_run(env, db, &it);
    store_unlock(lk);
    lk = -1;
    switch (it.verdict) {
    case V_RECORDED:
        break;
    case V_DUPLICATE:
        res->held = it.held;
        duplicate(ib, name, pck, res);      /* another worker was first */
        goto out;
    case V_OWN:
        (void)ss_fmt(why, sizeof why, "package %s is made at this site from a source of its "
                     "own; it is not replaced from site %s", in->package, in->site);
        reject(ib, name, pck, in->site, res, why);
        goto out;
    case V_DELETING:
        /* Given back with the loop's growing delay until the delete is
         * over; then it installs afresh (finding 12). */
        res->err = -EBUSY;
        (void)ss_fmt(res->why, sizeof res->why, "package %s is being deleted at this site; "
                     "version %lld waits until that is finished", in->package, in->version);
        log_info("instruction %s: %s", name, res->why);
        give_back(ib, name, res, DS_RETURNED);
        goto out;
    case V_ERROR:
        res->err = it.err;
        (void)ss_fmt(res->why, sizeof res->why, "%s: %s", it.why, strerror(-it.err));
        if (it.err != -EINTR)
            log_error("instruction %s: %s; it is tried again", name, res->why);
        give_back(ib, name, res, DS_RETURNED);
        goto out;
    }

    /* 5. Done: distmgr's request and 8300 were handed over by the group
     * (said before the files go, see say_installed). */
    finish(ib, name, pck);
    res->outcome = DS_INSTALLED;
    log_info("instruction %s: package %s (\"%s\") version %lld from site %s installed: "
             "%lld files, %lld bytes in %lld ms", name, in->package, in->name, in->version,
             in->site, (long long)m.files, (long long)m.bytes,
             (long long)(ss_mono_ms() - t0));
out:
    store_unlock(lk);
    if (pfd >= 0)
        close(pfd);
    pck_xopt_free(&x);
    mf_free(&m);
}

/* ---------------------------------------------------------------- status bundles */

/* Hand the bundle's bytes to statmgr: 0 or -errno (logged). */
static int to_statmgr(const struct ds_env *env, const char *name, const char *buf, size_t len,
                      char *out, size_t outlen)
{
    struct inbox sib;
    int rc;

    rc = inbox_open(&sib, env->root, IB_SITEMSGS, env->site, 0);
    if (rc == -ENOENT && (rc = statrep_dirs(env->root)) == 0)
        rc = inbox_open(&sib, env->root, IB_SITEMSGS, env->site, 0);
    if (rc < 0) {
        log_error("status bundle %s: cannot open inbox %s: %s; it waits in the inbox", name,
                  inbox_defs[IB_SITEMSGS].path, strerror(-rc));
        return rc;
    }
    if ((rc = inbox_drop(&sib, STATREP_SUFFIX, buf, len, out, outlen)) < 0)
        log_error("status bundle %s: cannot hand it to statmgr (%s): %s; it waits in the inbox",
                  name, sib.path, strerror(-rc));
    inbox_close(&sib);
    return rc;
}

void ds_bundle(const struct ds_env *env, sqlite3 *db, struct inbox *ib, const char *name,
               struct ds_result *res)
{
    struct keyctx kc = { .db = db };
    struct statrep rep;
    char err[SS_ERR_MAX], handed[UNIQ_NAME_MAX];
    char *buf = NULL, *copy = NULL;
    size_t len = 0;
    int rc;

    memset(res, 0, sizeof *res);
    memset(&rep, 0, sizeof rep);
    err[0] = 0;
    if (env->stop && *env->stop) {
        give_back(ib, name, res, DS_RETURNED);
        return;
    }
    if (read_claimed(ib, name, STATREP_MAX_SIZE, "", &buf, &len, res) < 0)
        return;
    /* The parse works in place, and statmgr gets the bytes as they came. */
    if ((copy = malloc(len + 1)) == NULL) {
        rc = -ENOMEM;
    } else {
        memcpy(copy, buf, len + 1);
        rc = statrep_parse(copy, len, key_for, &kc, &rep, err, sizeof err);
    }
    if (verdict(ib, name, "", rc, &kc, err, res) < 0)
        goto out;
    (void)ss_strcpy(res->in.site, sizeof res->in.site, rep.site);
    if (env->stop && *env->stop) {
        give_back(ib, name, res, DS_RETURNED);
        goto out;
    }
    if ((rc = to_statmgr(env, name, buf, len, handed, sizeof handed)) < 0) {
        res->err = rc;
        (void)ss_fmt(res->why, sizeof res->why, "cannot hand it to statmgr: %s", strerror(-rc));
        give_back(ib, name, res, DS_RETURNED);
        goto out;
    }
    if ((rc = inbox_done(ib, name)) < 0 && rc != -ENOENT)
        log_error("status bundle %s: cannot remove it from work/: %s", name, strerror(-rc));
    res->outcome = DS_FORWARDED;
    log_info("status bundle %s from site %s: %zu status messages handed to statmgr as %s",
             name, rep.site, rep.count, handed);
out:
    statrep_free(&rep);
    free(copy);
    free(buf);
}
