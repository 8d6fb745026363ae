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
 *
 * DESCRIPTION
 *   Every daemon and sitectl share one SQLite file.  It is opened in WAL
 *   mode, so that readers (sitectl, backups) never block the writer and
 *   the writer never blocks readers, with a busy timeout so that two
 *   writers wait for each other instead of failing, and with foreign keys
 *   enforced.
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
 *   and the transaction calls log the SQLite error text with log_error
 *   and return -EIO.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
};

int sitedb_schema_version(void)
{
    return (int)SS_ARRAY_LEN(migrations);
}

/* Fill the caller's error buffer, which may be absent. */
static void SS_PRINTF(3, 4) seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);   /* a cut sentence is still a sentence */
    va_end(ap);
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
            seterr(err, errlen, "%s: cannot begin schema migration: %s", path,
                   msg ? msg : sqlite3_errstr(rc));
            sqlite3_free(msg);
            return -EIO;
        }
        /* Read again under the write lock: another process may have
         * migrated since we looked. */
        rc = read_user_version(db, &v);
        if (rc != SQLITE_OK) {
            seterr(err, errlen, "%s: cannot read schema version: %s", path,
                   sqlite3_errmsg(db));
            goto fail;
        }
        if (v > target) {
            seterr(err, errlen, "site database schema version %d is newer than "
                   "this sitesrv (%d); refusing to run", v, target);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -EPROTO;
        }
        if (v == target) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);   /* nothing written */
            return 0;
        }
        if (v < 0) {
            seterr(err, errlen, "%s: invalid schema version %d", path, v);
            goto fail;
        }
        rc = sqlite3_exec(db, migrations[v], NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
            seterr(err, errlen, "%s: schema migration %d to %d failed: %s", path,
                   v, v + 1, msg ? msg : sqlite3_errstr(rc));
            sqlite3_free(msg);
            goto fail;
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            seterr(err, errlen, "%s: cannot commit schema migration %d to %d: %s",
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
    seterr(err, errlen, "%s", "");
    rc = sqlite3_open_v2(path, &db, oflags, NULL);
    if (rc != SQLITE_OK) {
        seterr(err, errlen, "cannot open site database %s: %s", path,
               db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -EIO;
    }
    sqlite3_extended_result_codes(db, 1);

    /* Set the busy timeout before anything reads the file, so that even
     * the first read waits for a writer that holds the lock. */
    rc = sqlite3_busy_timeout(db, 10000);
    if (rc == SQLITE_OK)
        rc = read_user_version(db, &v);
    if (rc != SQLITE_OK) {
        seterr(err, errlen, "cannot read site database %s: %s", path,
               sqlite3_errmsg(db));
        goto fail_eio;
    }
    /* Refuse a newer schema before changing anything in the file. */
    if (v > sitedb_schema_version()) {
        seterr(err, errlen, "site database schema version %d is newer than "
               "this sitesrv (%d); refusing to run", v, sitedb_schema_version());
        sqlite3_close(db);
        return -EPROTO;
    }

    if (!rdonly) {
        /* The journal mode is a property of the file; a read-only
         * connection cannot change it and simply uses what the daemons
         * set.  SQLite answers with the mode actually in force. */
        rc = query_text(db, "PRAGMA journal_mode = WAL", buf, sizeof buf);
        if (rc != SQLITE_OK || strcmp(buf, "wal") != 0) {
            seterr(err, errlen, "cannot put site database %s in WAL mode: %s", path,
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
        seterr(err, errlen, "cannot configure site database %s: %s", path,
               sqlite3_errmsg(db));
        goto fail_eio;
    }

    if (rdonly) {
        if (v < sitedb_schema_version()) {
            seterr(err, errlen, "site database %s has schema version %d, older than "
                   "this sitesrv (%d); run a daemon once to migrate",
                   path, v, sitedb_schema_version());
            goto fail_eio;
        }
    } else {
        r = migrate(db, path, err, errlen);
        if (r < 0) {
            sqlite3_close(db);
            return r;
        }
    }
    *dbp = db;
    return 0;

fail_eio:
    sqlite3_close(db);
    return -EIO;
}

int sitedb_open_root(const char *root, int flags, sqlite3 **db, char *err, size_t errlen)
{
    char dir[SS_PATH_MAX], path[SS_PATH_MAX];

    *db = NULL;
    if (ss_path(dir, sizeof dir, "%s/db", root) < 0 ||
        ss_path(path, sizeof path, "%s/db/site.db", root) < 0) {
        seterr(err, errlen, "site root path is too long: %s", root);
        return -ENAMETOOLONG;
    }
    /* Only db/ is created: a missing root is a mistake to report, not a
     * directory to invent.  Read-only opens create nothing. */
    if (!(flags & SITEDB_RDONLY) && mkdir(dir, 0750) < 0 && errno != EEXIST) {
        int e = errno;
        seterr(err, errlen, "cannot create %s: %s", dir, strerror(e));
        return -e;
    }
    return sitedb_open(path, flags, db, err, errlen);
}

void sitedb_close(sqlite3 *db)
{
    if (db == NULL)
        return;
    if (sqlite3_close(db) == SQLITE_BUSY) {
        /* A statement was not finalized: a leak in the caller.  Say so,
         * and let SQLite close the connection once it is finalized. */
        log_error("site database closed with unfinalized statements");
        sqlite3_close_v2(db);
    }
}

int sitedb_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_error("site database: %s (in \"%s\")", msg ? msg : sqlite3_errmsg(db), sql);
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

int sitedb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        log_error("site database: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(db));
        *st = NULL;
        return -EIO;
    }
    return 0;
}

/* The busy timeout does the waiting: IMMEDIATE takes the write lock now,
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
