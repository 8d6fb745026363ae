/*
 * sitedb.c - the site database (db/site.db): open, migrate, transactions.
 *
 * SYNOPSIS
 *   sitedb_schema_version()
 *   sitedb_open(path, flags, &db, err, errlen)
 *   sitedb_open_root(root, flags, &db, err, errlen)
 *   sitedb_close(db)
 *   sitedb_begin(db) sitedb_commit(db) sitedb_rollback(db)
 *   sitedb_exec(db, sql) sitedb_prepare(db, sql, &st)
 *   sitedb_interrupt(db) sitedb_errno(db, rc) sitedb_execf(db, sql, fmt, ...)
 *   sitedb_pool_init/get/put/stop/close   connections for worker threads
 *
 * DESCRIPTION
 *   Every daemon and sitectl share one SQLite file.  It is opened in WAL
 *   mode, so that readers (sitectl, backups) never block the writer and
 *   the writer never blocks readers, with a busy handler so that two
 *   writers wait for each other (up to SITEDB_BUSY_TIMEOUT_MS) instead of
 *   failing, and with foreign keys enforced.
 *
 *   A daemon that stops must not sit in that wait: sitedb_interrupt()
 *   ends a running statement (sqlite3_interrupt) and also a wait for the
 *   lock, which sqlite3_interrupt alone does not (SQLite keeps sleeping
 *   for the whole busy timeout).  Both come back as -EINTR, so that a
 *   caller can tell a stop from a database error.
 *
 *   The schema is an ordered array of migrations: migration i takes
 *   PRAGMA user_version from i to i+1.  Each runs in its own BEGIN
 *   IMMEDIATE transaction that also sets user_version, so a crash leaves
 *   the database at a whole version, and two daemons starting at once do
 *   not both apply the same migration: the second one waits for the
 *   write lock, reads the version again inside its transaction, and finds
 *   nothing left to do.  Adding a migration is adding one string to the
 *   end of the array; the array's length is the schema version.
 *
 *   A database written by a newer sitesrv is refused, never misread or
 *   "migrated" backwards.  A read-only open (sitectl looking at a site)
 *   migrates nothing, so it also refuses an older schema: a daemon must
 *   run once to bring it up to date.
 *
 *   Each connection is used by one thread at a time, so SQLite's own
 *   per-connection mutex is switched off (SQLITE_OPEN_NOMUTEX).
 *
 * DIAGNOSTICS
 *   sitedb_open fills err with a sentence and returns -EPROTO for a newer
 *   schema, -EIO for anything else (cannot open, not a database, older
 *   schema read-only, a failed migration).  sitedb_exec, sitedb_prepare
 *   and the transaction calls return -EINTR after sitedb_interrupt (logged
 *   as information: a stop is not an error), else log the SQLite error
 *   text with log_error and return -EIO.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "sitedb.h"
#include "util.h"

/*
 * The migrations, oldest first.  To change the schema, append one string;
 * never edit a migration that has shipped, since databases in the field
 * have already run it.
 */
static const char *const migrations[] = {
    /* 1: status messages and retry history. */
    "CREATE TABLE statmsg (\n"
    "  seq INTEGER PRIMARY KEY,\n"
    "  uid BLOB NOT NULL UNIQUE,\n"
    "  msgid INTEGER NOT NULL,\n"
    "  severity TEXT NOT NULL,\n"
    "  type TEXT NOT NULL,\n"
    "  component TEXT NOT NULL,\n"
    "  site TEXT NOT NULL,\n"
    "  machine TEXT NOT NULL,\n"
    "  pid INTEGER NOT NULL,\n"
    "  tid INTEGER NOT NULL,\n"
    "  time_ms INTEGER NOT NULL,\n"
    "  oserr INTEGER NOT NULL,\n"
    "  istr TEXT NOT NULL,\n"
    "  attrs TEXT NOT NULL,\n"
    "  received_ms INTEGER NOT NULL,\n"
    "  via TEXT NOT NULL\n"
    ");\n"
    "CREATE INDEX statmsg_time ON statmsg(time_ms);\n"
    "CREATE INDEX statmsg_msgid ON statmsg(msgid);\n"
    "CREATE TABLE retry (\n"
    "  scope TEXT NOT NULL, target TEXT NOT NULL,\n"
    "  state TEXT NOT NULL CHECK (state IN ('retrying','failed')),\n"
    "  attempts INTEGER NOT NULL, next_ms INTEGER NOT NULL,\n"
    "  last_error TEXT NOT NULL, updated_ms INTEGER NOT NULL,\n"
    "  PRIMARY KEY (scope, target)) WITHOUT ROWID;\n"
    "CREATE INDEX retry_due ON retry(scope, state, next_ms);\n",

    /* 2: distribution points, sites, packages, versions and their
     * manifests, per-DP state and the jobs handed to the scheduler. */
    "CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;\n"
    "CREATE TABLE dp (\n"
    "  name TEXT PRIMARY KEY, path TEXT NOT NULL UNIQUE,\n"
    "  added_ms INTEGER NOT NULL) WITHOUT ROWID;\n"
    "CREATE TABLE site (\n"
    "  code TEXT PRIMARY KEY, address TEXT NOT NULL, pubkey TEXT NOT NULL,\n"
    "  relation TEXT NOT NULL CHECK (relation IN ('child','parent')),\n"
    "  added_ms INTEGER NOT NULL) WITHOUT ROWID;\n"
    "CREATE TABLE package (\n"
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL,\n"
    "  origin TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0,\n"
    "  all_dps INTEGER NOT NULL,\n"
    "  state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active','deleting')),\n"
    "  last_error TEXT NOT NULL DEFAULT '',\n"
    "  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL) WITHOUT ROWID;\n"
    "CREATE TABLE package_dp (\n"
    "  package TEXT NOT NULL REFERENCES package(id) ON DELETE CASCADE,\n"
    "  dp TEXT NOT NULL, PRIMARY KEY (package, dp)) WITHOUT ROWID;\n"
    "CREATE TABLE pkg_version (\n"
    "  package TEXT NOT NULL REFERENCES package(id) ON DELETE CASCADE,\n"
    "  version INTEGER NOT NULL, files INTEGER NOT NULL, bytes INTEGER NOT NULL,\n"
    "  created_ms INTEGER NOT NULL,\n"
    "  PRIMARY KEY (package, version)) WITHOUT ROWID;\n"
    "CREATE TABLE manifest (\n"
    "  package TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL,\n"
    "  mode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,\n"
    "  sha256 BLOB,\n"
    "  PRIMARY KEY (package, version, path),\n"
    "  FOREIGN KEY (package, version) REFERENCES pkg_version(package, version)\n"
    "    ON DELETE CASCADE) WITHOUT ROWID;\n"
    "CREATE INDEX manifest_sha ON manifest(sha256);\n"
    "CREATE TABLE dp_state (\n"
    "  package TEXT NOT NULL REFERENCES package(id) ON DELETE CASCADE,\n"
    "  dp TEXT NOT NULL,\n"
    "  state TEXT NOT NULL CHECK (state IN\n"
    "    ('pending','installing','installed','retrying','failed','removing')),\n"
    "  version INTEGER NOT NULL DEFAULT 0, target INTEGER NOT NULL DEFAULT 0,\n"
    "  last_error TEXT NOT NULL DEFAULT '', updated_ms INTEGER NOT NULL,\n"
    "  PRIMARY KEY (package, dp)) WITHOUT ROWID;\n"
    "CREATE TABLE site_job (\n"
    "  package TEXT NOT NULL, version INTEGER NOT NULL, site TEXT NOT NULL,\n"
    "  state TEXT NOT NULL CHECK (state IN ('staged','queued')),\n"
    "  job TEXT NOT NULL, created_ms INTEGER NOT NULL,\n"
    "  PRIMARY KEY (package, version, site)) WITHOUT ROWID;\n",

    /* 3: routes learnt from status bundles: a site below a child site is
     * reached through that child (the scheduler's next hop). */
    "CREATE TABLE route (site TEXT PRIMARY KEY, via TEXT NOT NULL,\n"
    "  updated_ms INTEGER NOT NULL) WITHOUT ROWID;\n",

    /* 4: a package's send priority: the order of its jobs at the sender
     * and of its instructions at each despooler below. */
    "ALTER TABLE package ADD COLUMN priority TEXT NOT NULL DEFAULT 'medium'\n"
    "  CHECK (priority IN ('high','medium','low'));\n",
};

int sitedb_schema_version(void)
{
    return (int)SS_ARRAY_LEN(migrations);
}

/*
 * What we keep per connection: the state of its busy wait, and whether
 * sitedb_interrupt() asked it to give up.  SQLite 3.40 has no slot for
 * a caller's data on a connection, so the connections are in a list;
 * it is short (a daemon has a few) and walked only on an interrupt or an
 * error.
 */
struct conn {
    sqlite3     *db;
    struct conn *next;
    int64_t      busy_since;     /* ss_mono_ms() of the first busy call */
    int          interrupted;    /* atomic: sitedb_interrupt() was called */
};
static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static struct conn *conns;

/* Find c for db and unlink it (pass unlink 0 to only find it).  Caller
 * holds conns_mu. */
static struct conn *conn_find(sqlite3 *db, int unlink)
{
    for (struct conn **pp = &conns; *pp; pp = &(*pp)->next)
        if ((*pp)->db == db) {
            struct conn *c = *pp;
            if (unlink)
                *pp = c->next;
            return c;
        }
    return NULL;
}

static int conn_interrupted(sqlite3 *db)
{
    pthread_mutex_lock(&conns_mu);
    struct conn *c = conn_find(db, 0);
    int v = c != NULL && __atomic_load_n(&c->interrupted, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&conns_mu);
    return v;
}

/*
 * The busy handler, instead of sqlite3_busy_timeout(): it waits in steps
 * of at most 20 ms for up to SITEDB_BUSY_TIMEOUT_MS, like SQLite's own,
 * but gives up at once when sitedb_interrupt() was called.  That is the
 * point of it: sqlite3_interrupt() alone does not end a busy wait (SQLite
 * 3.40 keeps sleeping for the whole timeout), and a worker waiting in
 * BEGIN IMMEDIATE would outlast its daemon's stop timeout.
 */
static int busy_wait(void *arg, int count)
{
    static const int step_ms[] = { 1, 2, 5, 10, 15, 20 };
    struct conn *c = arg;
    int64_t now = ss_mono_ms();

    if (__atomic_load_n(&c->interrupted, __ATOMIC_RELAXED))
        return 0;
    if (count == 0)
        c->busy_since = now;
    int64_t left = c->busy_since + SITEDB_BUSY_TIMEOUT_MS - now;
    if (left <= 0)
        return 0;
    int64_t ms = step_ms[count < (int)SS_ARRAY_LEN(step_ms) ? count
                                                            : (int)SS_ARRAY_LEN(step_ms) - 1];
    if (ms > left)
        ms = left;
    struct timespec ts = { 0, (long)ms * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return !__atomic_load_n(&c->interrupted, __ATOMIC_RELAXED);
}

/* Register db and install the busy handler: 0 or -ENOMEM. */
static int conn_add(sqlite3 *db)
{
    struct conn *c = calloc(1, sizeof *c);

    if (c == NULL)
        return -ENOMEM;
    c->db = db;
    sqlite3_busy_handler(db, busy_wait, c);
    pthread_mutex_lock(&conns_mu);
    c->next = conns;
    conns = c;
    pthread_mutex_unlock(&conns_mu);
    return 0;
}

/* Unregister and close.  When SQLite keeps the connection as a zombie
 * (unfinalized statements), a later step may still call the busy
 * handler: its state is then left allocated, a small leak for a bug the
 * caller is told about. */
static int conn_close(sqlite3 *db)
{
    pthread_mutex_lock(&conns_mu);
    struct conn *c = conn_find(db, 1);
    pthread_mutex_unlock(&conns_mu);
    int rc = sqlite3_close(db);
    if (rc == SQLITE_BUSY)
        sqlite3_close_v2(db);
    else
        free(c);
    return rc;
}

int sitedb_errno(sqlite3 *db, int rc)
{
    int prim = rc & 0xff;

    if (prim == SQLITE_OK || prim == SQLITE_ROW || prim == SQLITE_DONE)
        return 0;
    if (prim == SQLITE_INTERRUPT || (prim == SQLITE_BUSY && conn_interrupted(db)))
        return -EINTR;
    return -EIO;
}

void sitedb_interrupt(sqlite3 *db)
{
    pthread_mutex_lock(&conns_mu);
    struct conn *c = conn_find(db, 0);
    if (c != NULL) {
        __atomic_store_n(&c->interrupted, 1, __ATOMIC_RELAXED);
        sqlite3_interrupt(db);
    }
    pthread_mutex_unlock(&conns_mu);
}

/* Run a PRAGMA (or any statement) that returns one value; copy it as
 * text into out, or "" when there is no row. */
static int query_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    out[0] = '\0';
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        if (t != NULL)
            snprintf(out, outlen, "%s", (const char *)t);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int read_user_version(sqlite3 *db, int *v)
{
    char buf[32];
    int rc = query_text(db, "PRAGMA user_version", buf, sizeof buf);
    if (rc == SQLITE_OK)
        *v = atoi(buf);
    return rc;
}

/* Apply migrations from the database's current version up to ours. */
static int migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int target = sitedb_schema_version();

    for (;;) {
        int v, rc;
        char *msg = NULL;
        char sql[64];

        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
            ss_seterr(err, errlen, "%s: cannot begin schema migration: %s", path,
                   msg ? msg : sqlite3_errstr(rc));
            sqlite3_free(msg);
            return -EIO;
        }
        /* Read again under the write lock: another process may have
         * migrated since we looked. */
        rc = read_user_version(db, &v);
        if (rc != SQLITE_OK) {
            ss_seterr(err, errlen, "%s: cannot read schema version: %s", path,
                   sqlite3_errmsg(db));
            goto fail;
        }
        if (v > target) {
            ss_seterr(err, errlen, "site database schema version %d is newer than "
                   "this sitesrv (%d); refusing to run", v, target);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -EPROTO;
        }
        if (v == target) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);   /* nothing written */
            return 0;
        }
        if (v < 0) {
            ss_seterr(err, errlen, "%s: invalid schema version %d", path, v);
            goto fail;
        }
        rc = sqlite3_exec(db, migrations[v], NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
            ss_seterr(err, errlen, "%s: schema migration %d to %d failed: %s", path,
                   v, v + 1, msg ? msg : sqlite3_errstr(rc));
            sqlite3_free(msg);
            goto fail;
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            ss_seterr(err, errlen, "%s: cannot commit schema migration %d to %d: %s",
                   path, v, v + 1, sqlite3_errmsg(db));
            goto fail;
        }
        log_info("%s: site database schema migrated from version %d to %d",
                 path, v, v + 1);
    }

fail:
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -EIO;
}

int sitedb_open(const char *path, int flags, sqlite3 **dbp, char *err, size_t errlen)
{
    int rdonly = (flags & SITEDB_RDONLY) != 0;
    int oflags = SQLITE_OPEN_NOMUTEX |
                 (rdonly ? SQLITE_OPEN_READONLY
                         : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    sqlite3 *db = NULL;
    char buf[32];
    int rc, v, r;

    *dbp = NULL;
    ss_seterr(err, errlen, "%s", "");
    rc = sqlite3_open_v2(path, &db, oflags, NULL);
    if (rc != SQLITE_OK) {
        ss_seterr(err, errlen, "cannot open site database %s: %s", path,
               db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -EIO;
    }
    sqlite3_extended_result_codes(db, 1);

    /* Set the busy handler before anything reads the file, so that even
     * the first read waits for a writer that holds the lock. */
    if (conn_add(db) < 0) {
        ss_seterr(err, errlen, "cannot open site database %s: out of memory", path);
        sqlite3_close(db);
        return -EIO;
    }
    rc = read_user_version(db, &v);
    if (rc != SQLITE_OK) {
        ss_seterr(err, errlen, "cannot read site database %s: %s", path,
               sqlite3_errmsg(db));
        goto fail_eio;
    }
    /* Refuse a newer schema before changing anything in the file. */
    if (v > sitedb_schema_version()) {
        ss_seterr(err, errlen, "site database schema version %d is newer than "
               "this sitesrv (%d); refusing to run", v, sitedb_schema_version());
        conn_close(db);
        return -EPROTO;
    }

    if (!rdonly) {
        /* The journal mode is a property of the file; a read-only
         * connection cannot change it and simply uses what the daemons
         * set.  SQLite answers with the mode actually in force. */
        /* Connections opening a new file at once can get SQLITE_BUSY here
         * without SQLite calling the busy handler (the switch to WAL needs
         * the file to itself): wait and ask again, within the busy timeout. */
        for (int waited = 0;; waited += 20) {
            rc = query_text(db, "PRAGMA journal_mode = WAL", buf, sizeof buf);
            if (rc != SQLITE_BUSY || waited >= SITEDB_BUSY_TIMEOUT_MS)
                break;
            struct timespec ts = { 0, 20 * 1000000L };
            nanosleep(&ts, NULL);
        }
        if (rc != SQLITE_OK || strcmp(buf, "wal") != 0) {
            ss_seterr(err, errlen, "cannot put site database %s in WAL mode: %s", path,
                   rc != SQLITE_OK ? sqlite3_errmsg(db) : buf);
            goto fail_eio;
        }
    }
    /*
     * synchronous=FULL: in WAL mode that is one fsync of the WAL per
     * commit.  Daemons delete an inbox file as soon as the transaction
     * that recorded it has committed, so a commit must survive a power
     * loss, not only the death of a process: with NORMAL the last commits
     * could vanish after their files were already gone.  Batching many
     * files into one transaction keeps the cost to one fsync per batch.
     */
    rc = sqlite3_exec(db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        ss_seterr(err, errlen, "cannot configure site database %s: %s", path,
               sqlite3_errmsg(db));
        goto fail_eio;
    }

    if (rdonly) {
        if (v < sitedb_schema_version()) {
            ss_seterr(err, errlen, "site database %s has schema version %d, older than "
                   "this sitesrv (%d); run a daemon once to migrate",
                   path, v, sitedb_schema_version());
            goto fail_eio;
        }
    } else {
        r = migrate(db, path, err, errlen);
        if (r < 0) {
            conn_close(db);
            return r;
        }
    }
    *dbp = db;
    return 0;

fail_eio:
    conn_close(db);
    return -EIO;
}

int sitedb_open_root(const char *root, int flags, sqlite3 **db, char *err, size_t errlen)
{
    char dir[SS_PATH_MAX], path[SS_PATH_MAX];

    *db = NULL;
    if (ss_path(dir, sizeof dir, "%s/db", root) < 0 ||
        ss_path(path, sizeof path, "%s/db/site.db", root) < 0) {
        ss_seterr(err, errlen, "site root path is too long: %s", root);
        return -ENAMETOOLONG;
    }
    /* Only db/ is created: a missing root is a mistake to report, not a
     * directory to invent.  Read-only opens create nothing. */
    if (!(flags & SITEDB_RDONLY) && mkdir(dir, 0750) < 0 && errno != EEXIST) {
        int e = errno;
        ss_seterr(err, errlen, "cannot create %s: %s", dir, strerror(e));
        return -e;
    }
    return sitedb_open(path, flags, db, err, errlen);
}

void sitedb_close(sqlite3 *db)
{
    if (db == NULL)
        return;
    if (conn_close(db) == SQLITE_BUSY) {
        /* A statement was not finalized: a leak in the caller.  Say so;
         * SQLite closes the connection once it is finalized. */
        log_error("site database closed with unfinalized statements");
    }
}

int sitedb_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    int r = sitedb_errno(db, rc);
    if (r == -EINTR)
        log_info("site database: interrupted (in \"%s\")", sql);
    else if (r < 0)
        log_error("site database: %s (in \"%s\")", msg ? msg : sqlite3_errmsg(db), sql);
    sqlite3_free(msg);
    return r;
}

int sitedb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    int r = sitedb_errno(db, rc);
    if (r < 0) {
        if (r == -EINTR)
            log_info("site database: interrupted (preparing \"%s\")", sql);
        else
            log_error("site database: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(db));
        *st = NULL;
    }
    return r;
}

/* The busy handler does the waiting: IMMEDIATE takes the write lock now,
 * so a busy database is noticed here and not at the first write. */
int sitedb_begin(sqlite3 *db)
{
    return sitedb_exec(db, "BEGIN IMMEDIATE");
}

int sitedb_commit(sqlite3 *db)
{
    return sitedb_exec(db, "COMMIT");
}

/* SQLite rolls some failed transactions back by itself (SQLITE_FULL,
 * SQLITE_IOERR...), so rolling back when none is open is not an error. */
int sitedb_rollback(sqlite3 *db)
{
    if (sqlite3_get_autocommit(db))
        return 0;
    return sitedb_exec(db, "ROLLBACK");
}

int sitedb_execf(sqlite3 *db, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *st;
    va_list ap;
    int rc, i = 1;

    if ((rc = sitedb_prepare(db, sql, &st)) < 0)
        return rc;
    va_start(ap, fmt);
    for (const char *f = fmt; *f; f++, i++) {
        if (*f == 's')
            sqlite3_bind_text(st, i, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_int64(st, i, va_arg(ap, long long));
    }
    va_end(ap);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = sitedb_errno(db, rc);
        if (rc != -EINTR)
            log_error("site database: %s", sqlite3_errmsg(db));
    } else {
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

void sitedb_pool_init(struct sitedb_pool *p, const char *root)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    (void)ss_strcpy(p->root, sizeof p->root, root);
}

sqlite3 *sitedb_pool_get(struct sitedb_pool *p)
{
    sqlite3 *db = NULL;
    char err[SS_ERR_MAX];

    pthread_mutex_lock(&p->lock);
    if (p->nidle > 0)
        db = p->idle[--p->nidle];
    pthread_mutex_unlock(&p->lock);
    if (!db && sitedb_open_root(p->root, 0, &db, err, sizeof err) < 0) {
        log_error("%s", err);
        return NULL;
    }
    pthread_mutex_lock(&p->lock);
    if (p->nbusy < SITEDB_POOL_MAX)
        p->busy[p->nbusy++] = db;
    /* A stop that came while this connection was idle or being opened
     * must still end its waits. */
    if (p->stopping)
        sitedb_interrupt(db);
    pthread_mutex_unlock(&p->lock);
    return db;
}

void sitedb_pool_put(struct sitedb_pool *p, sqlite3 *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->nbusy; i++)
        if (p->busy[i] == db) {
            p->busy[i] = p->busy[--p->nbusy];
            break;
        }
    if (!p->stopping && p->nidle < SITEDB_POOL_MAX) {
        p->idle[p->nidle++] = db;
        db = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    if (db)
        sitedb_close(db);
}

void sitedb_pool_stop(struct sitedb_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    for (int i = 0; i < p->nbusy; i++)
        sitedb_interrupt(p->busy[i]);
    pthread_mutex_unlock(&p->lock);
}

void sitedb_pool_close(struct sitedb_pool *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->nidle > 0)
        sitedb_close(p->idle[--p->nidle]);
    pthread_mutex_unlock(&p->lock);
}
