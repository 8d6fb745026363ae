/*
 * sitedb.h - the site database (db/site.db, SQLite).
 *
 * Opened in WAL mode with a busy handler and foreign keys on; schema
 * migrations are an ordered list applied by PRAGMA user_version, each in
 * its own transaction; a database whose user_version is newer than this
 * build knows is refused rather than misread.  Writers use BEGIN
 * IMMEDIATE so that a busy database is waited for at the start of a
 * transaction, not half-way through it.
 */
#ifndef SITESRV_SITEDB_H
#define SITESRV_SITEDB_H

#include <sqlite3.h>
#include "common.h"

#define SITEDB_RDONLY 0x1     /* open read-only, no migration */

/* How long a connection waits for another one's write lock. */
#define SITEDB_BUSY_TIMEOUT_MS 10000

/* The schema version this build writes. */
int sitedb_schema_version(void);

/* Open path (created if missing, unless RDONLY) and migrate.  -EPROTO for
 * a newer schema, -EIO otherwise; err says which. */
int sitedb_open(const char *path, int flags, sqlite3 **db, char *err, size_t errlen);
/* Open <root>/db/site.db. */
int sitedb_open_root(const char *root, int flags, sqlite3 **db, char *err, size_t errlen);
void sitedb_close(sqlite3 *db);

/*
 * The calls below return 0, -EINTR when the connection was interrupted
 * (sitedb_interrupt: the daemon is stopping; the transaction did not
 * happen, roll back and give the work back), or -EIO for any other
 * database error, which they log.
 */
int sitedb_begin(sqlite3 *db);      /* BEGIN IMMEDIATE */
int sitedb_commit(sqlite3 *db);
int sitedb_rollback(sqlite3 *db);
/* Run SQL without results. */
int sitedb_exec(sqlite3 *db, const char *sql);
int sitedb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st);

/*
 * For a daemon's stop, from any thread: make db give up.  A statement
 * running on it ends with SQLITE_INTERRUPT (sqlite3_interrupt), and a
 * wait for the write lock (BEGIN IMMEDIATE on a busy database) ends at
 * once; the calls above then return -EINTR.  Calling sqlite3_interrupt()
 * directly is not enough: it does not end a busy wait.  The connection
 * stays interrupted for lock waits until sitedb_close (statements that
 * need no wait still run, so a rollback works).  db must be open.
 */
void sitedb_interrupt(sqlite3 *db);

/* The errno for a SQLite result code rc of db, for callers that step
 * statements themselves: 0 for SQLITE_OK, SQLITE_ROW and SQLITE_DONE;
 * -EINTR for SQLITE_INTERRUPT, or SQLITE_BUSY after sitedb_interrupt;
 * -EIO for anything else.  Logs nothing. */
int sitedb_errno(sqlite3 *db, int rc);

#endif
