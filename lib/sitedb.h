/*
 * sitedb.h - the site database (db/site.db, SQLite).
 *
 * Opened in WAL mode with a busy timeout and foreign keys on; schema
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

/* The schema version this build writes. */
int sitedb_schema_version(void);

/* Open path (created if missing, unless RDONLY) and migrate.  -EPROTO for
 * a newer schema, -EIO otherwise; err says which. */
int sitedb_open(const char *path, int flags, sqlite3 **db, char *err, size_t errlen);
/* Open <root>/db/site.db. */
int sitedb_open_root(const char *root, int flags, sqlite3 **db, char *err, size_t errlen);
void sitedb_close(sqlite3 *db);

int sitedb_begin(sqlite3 *db);      /* BEGIN IMMEDIATE */
int sitedb_commit(sqlite3 *db);
int sitedb_rollback(sqlite3 *db);
/* Run SQL without results; logs and returns -EIO on error. */
int sitedb_exec(sqlite3 *db, const char *sql);
/* Prepare or log; -EIO. */
int sitedb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st);

#endif
