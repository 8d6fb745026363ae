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

#include <pthread.h>
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

/* Run one statement, binding ?1, ?2... from fmt: 's' a text (const char *),
 * 'i' a long long.  0, -EINTR (interrupted), or -EIO (logged). */
int sitedb_execf(sqlite3 *db, const char *sql, const char *fmt, ...);

/*
 * Connections for a daemon's worker threads (a connection is used by one
 * thread at a time): sitedb_pool_get takes an idle one or opens one for
 * <root>/db/site.db (NULL when that fails, logged); sitedb_pool_put gives
 * it back.  sitedb_pool_stop, from the loop thread at a daemon's stop,
 * interrupts the connections in use (sitedb_interrupt) and every one
 * taken afterwards, and closes each as it is given back;
 * sitedb_pool_close closes the idle ones once no worker runs.
 */
#define SITEDB_POOL_MAX 64
struct sitedb_pool {
    pthread_mutex_t lock;
    char     root[4096];
    sqlite3 *idle[SITEDB_POOL_MAX];
    int      nidle;
    sqlite3 *busy[SITEDB_POOL_MAX];
    int      nbusy;
    int      stopping;
};
void     sitedb_pool_init(struct sitedb_pool *p, const char *root);
sqlite3 *sitedb_pool_get(struct sitedb_pool *p);
void     sitedb_pool_put(struct sitedb_pool *p, sqlite3 *db);
void     sitedb_pool_stop(struct sitedb_pool *p);
void     sitedb_pool_close(struct sitedb_pool *p);

/* The errno for a SQLite result code rc of db, for callers that step
 * statements themselves: 0 for SQLITE_OK, SQLITE_ROW and SQLITE_DONE;
 * -EINTR for SQLITE_INTERRUPT, or SQLITE_BUSY after sitedb_interrupt;
 * -EIO for anything else.  Logs nothing. */
int sitedb_errno(sqlite3 *db, int rc);

#endif
