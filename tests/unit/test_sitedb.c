/*
 * test_sitedb.c - unit tests for lib/sitedb.c: open, migrate, refuse a
 * newer schema, read-only opens, transactions, the statmsg uid key, and
 * sitedb_interrupt (-EINTR for a stop, both for a running statement and
 * for a wait for the write lock).
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>

#include "sitedb.h"
#include "util.h"

static int setup(void **state)
{
    return (*state = tu_dir_new("test_sitedb", "site.db")) != NULL ? 0 : -1;
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v;
    assert_int_equal(sitedb_prepare(db, sql, &st), 0);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void query_str(sqlite3 *db, const char *sql, char *buf, size_t len)
{
    sqlite3_stmt *st;
    assert_int_equal(sitedb_prepare(db, sql, &st), 0);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static void test_fresh_open_migrates(void **state)
{
    struct tu_dir *f = *state;
    sqlite3 *db;
    char err[SS_ERR_MAX], buf[64];

    assert_true(sitedb_schema_version() >= 1);
    assert_int_equal(sitedb_open(f->path, 0, &db, err, sizeof err), 0);
    assert_int_equal(query_int(db, "PRAGMA user_version"), sitedb_schema_version());
    query_str(db, "PRAGMA journal_mode", buf, sizeof buf);
    assert_string_equal(buf, "wal");
    assert_int_equal(query_int(db, "PRAGMA foreign_keys"), 1);
    assert_int_equal(query_int(db, "PRAGMA synchronous"), 2);   /* FULL */
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_schema"
                                   " WHERE name IN ('statmsg','retry','statmsg_time',"
                                   "'statmsg_msgid','retry_due')"), 5);
    sitedb_close(db);
}

static void test_reopen_idempotent(void **state)
{
    struct tu_dir *f = *state;
    sqlite3 *db;
    char err[SS_ERR_MAX];

    assert_int_equal(sitedb_open(f->path, 0, &db, err, sizeof err), 0);
    assert_int_equal(sitedb_exec(db, "INSERT INTO retry VALUES ('s','t','failed',3,0,'e',0)"), 0);
    sitedb_close(db);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sitedb_open(f->path, 0, &db, err, sizeof err), 0);
        assert_int_equal(query_int(db, "PRAGMA user_version"), sitedb_schema_version());
        assert_int_equal(query_int(db, "SELECT count(*) FROM retry"), 1);
        sitedb_close(db);
    }
    /* And a read-only open of the current schema works and sees it. */
    assert_int_equal(sitedb_open(f->path, SITEDB_RDONLY, &db, err, sizeof err), 0);
    assert_int_equal(query_int(db, "SELECT attempts FROM retry"), 3);
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM retry", NULL, NULL, NULL), SQLITE_OK);
    sitedb_close(db);
}

static void test_newer_schema_refused(void **state)
{
    struct tu_dir *f = *state;
    static const int modes[] = { 0, SITEDB_RDONLY };
    sqlite3 *db;
    char err[SS_ERR_MAX], want[SS_ERR_MAX];

    assert_int_equal(sitedb_open(f->path, 0, &db, err, sizeof err), 0);
    assert_int_equal(sitedb_exec(db, "PRAGMA user_version = 999"), 0);
    sitedb_close(db);
    snprintf(want, sizeof want, "site database schema version 999 is newer than "
             "this sitesrv (%d); refusing to run", sitedb_schema_version());
    for (size_t i = 0; i < SS_ARRAY_LEN(modes); i++) {
        db = (sqlite3 *)1;
        err[0] = '\0';
        assert_int_equal(sitedb_open(f->path, modes[i], &db, err, sizeof err), -EPROTO);
        assert_null(db);
        assert_string_equal(err, want);
    }
    /* Refused without being touched. */
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 999);
    sqlite3_close(db);
}

static void test_rdonly_missing_and_old(void **state)
{
    struct tu_dir *f = *state;
    sqlite3 *db = (sqlite3 *)1;
    char err[SS_ERR_MAX] = "";
    struct stat sb;

    assert_int_equal(sitedb_open(f->path, SITEDB_RDONLY, &db, err, sizeof err), -EIO);
    assert_null(db);
    assert_true(strlen(err) > 0);
    assert_int_equal(stat(f->path, &sb), -1);    /* nothing was created */

    /* An existing database at schema 0 is older: a daemon must migrate it. */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE x (a)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    err[0] = '\0';
    assert_int_equal(sitedb_open(f->path, SITEDB_RDONLY, &db, err, sizeof err), -EIO);
    assert_non_null(strstr(err, "run a daemon once to migrate"));
    /* A read-write open migrates it, keeping what was there. */
    assert_int_equal(sitedb_open(f->path, 0, &db, err, sizeof err), 0);
    assert_int_equal(query_int(db, "PRAGMA user_version"), sitedb_schema_version());
    assert_int_equal(query_int(db, "SELECT count(*) FROM x"), 0);
    sitedb_close(db);
}

static void test_not_a_database(void **state)
{
    struct tu_dir *f = *state;
    sqlite3 *db;
    char err[SS_ERR_MAX] = "";
    FILE *fp = fopen(f->path, "w");

    assert_non_null(fp);
    for (int i = 0; i < 100; i++)
        fputs("this is not an SQLite database\n", fp);
    fclose(fp);
    assert_int_equal(sitedb_open(f->path, 0, &db, err, sizeof err), -EIO);
    assert_true(strlen(err) > 0);
}

static void test_open_root(void **state)
{
    struct tu_dir *f = *state;
    char root[SS_PATH_MAX], path[SS_PATH_MAX], err[SS_ERR_MAX];
    sqlite3 *db;
    struct stat sb;

    assert_int_equal(ss_path(root, sizeof root, "%s/root", f->dir), 0);
    assert_int_equal(mkdir(root, 0750), 0);
    /* Read-only does not create db/. */
    assert_true(sitedb_open_root(root, SITEDB_RDONLY, &db, err, sizeof err) < 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/db", root), 0);
    assert_int_equal(stat(path, &sb), -1);

    assert_int_equal(sitedb_open_root(root, 0, &db, err, sizeof err), 0);
    sitedb_close(db);
    assert_int_equal(ss_path(path, sizeof path, "%s/db/site.db", root), 0);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sitedb_open_root(root, SITEDB_RDONLY, &db, err, sizeof err), 0);
    sitedb_close(db);
}

static void test_begin_commit_rollback(void **state)
{
    struct tu_dir *f = *state;
    sqlite3 *db;
    char err[SS_ERR_MAX];
    sqlite3_stmt *st;

    assert_int_equal(sitedb_open(f->path, 0, &db, err, sizeof err), 0);
    assert_int_equal(sitedb_begin(db), 0);
    assert_int_equal(sqlite3_get_autocommit(db), 0);
    assert_int_equal(sitedb_exec(db, "INSERT INTO retry VALUES ('s','a','retrying',1,0,'',0)"), 0);
    assert_int_equal(sitedb_commit(db), 0);
    assert_int_equal(sqlite3_get_autocommit(db), 1);

    assert_int_equal(sitedb_begin(db), 0);
    assert_int_equal(sitedb_exec(db, "INSERT INTO retry VALUES ('s','b','retrying',1,0,'',0)"), 0);
    assert_int_equal(sitedb_rollback(db), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM retry"), 1);
    /* Rolling back with no transaction open is harmless. */
    assert_int_equal(sitedb_rollback(db), 0);

    /* Errors are -EIO. */
    assert_int_equal(sitedb_exec(db, "INSERT INTO retry VALUES ('s','c','bogus',1,0,'',0)"), -EIO);
    assert_int_equal(sitedb_exec(db, "SELEC nonsense"), -EIO);
    assert_int_equal(sitedb_prepare(db, "SELECT * FROM no_such_table", &st), -EIO);
    assert_null(st);
    assert_int_equal(sitedb_commit(db), -EIO);   /* nothing to commit */
    sitedb_close(db);
}

/* A second connection cannot begin a write transaction while the first
 * holds one; after commit it can (the busy timeout only bounds waiting). */
static void test_two_connections(void **state)
{
    struct tu_dir *f = *state;
    sqlite3 *a, *b;
    char err[SS_ERR_MAX];

    assert_int_equal(sitedb_open(f->path, 0, &a, err, sizeof err), 0);
    assert_int_equal(sitedb_open(f->path, 0, &b, err, sizeof err), 0);
    assert_int_equal(sitedb_begin(a), 0);
    assert_int_equal(sitedb_exec(a, "INSERT INTO retry VALUES ('s','a','retrying',1,0,'',0)"), 0);
    /* A reader is not blocked by the writer (WAL) and sees the old state. */
    assert_int_equal(query_int(b, "SELECT count(*) FROM retry"), 0);
    assert_int_equal(sitedb_commit(a), 0);
    assert_int_equal(sitedb_begin(b), 0);
    assert_int_equal(query_int(b, "SELECT count(*) FROM retry"), 1);
    assert_int_equal(sitedb_commit(b), 0);
    sitedb_close(a);
    sitedb_close(b);
}

static void test_uid_unique(void **state)
{
    struct tu_dir *f = *state;
    sqlite3 *db;
    sqlite3_stmt *st;
    char err[SS_ERR_MAX];
    static const unsigned char uid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

    assert_int_equal(sitedb_open(f->path, 0, &db, err, sizeof err), 0);
    assert_int_equal(sitedb_prepare(db,
        "INSERT OR IGNORE INTO statmsg (uid, msgid, severity, type, component, site,"
        " machine, pid, tid, time_ms, oserr, istr, attrs, received_ms, via)"
        " VALUES (?1, 2300, 'I', 'milestone', 'distmgr', 'CEN', 'host', 1, 2, 3, 0,"
        " '[]', '{}', 4, 'statmsgs')", &st), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sqlite3_bind_blob(st, 1, uid, sizeof uid, SQLITE_STATIC), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        assert_int_equal(sqlite3_changes(db), i == 0 ? 1 : 0);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(query_int(db, "SELECT count(*) FROM statmsg"), 1);
    assert_int_equal(query_int(db, "SELECT length(uid) FROM statmsg"), 16);
    sitedb_close(db);
}

/* Daemons start in any order and at the same moment (SPEC 4.3): several
 * connections opening one fresh file at once all succeed, and the schema
 * is migrated exactly once. */
struct opener {
    const char *path;
    int rc;
    char err[SS_ERR_MAX];
};

static void *open_thread(void *arg)
{
    struct opener *o = arg;
    sqlite3 *db;
    o->rc = sitedb_open(o->path, 0, &db, o->err, sizeof o->err);
    if (o->rc == 0)
        sitedb_close(db);
    return NULL;
}

static void test_concurrent_open(void **state)
{
    struct tu_dir *f = *state;
    struct opener o[4];
    pthread_t t[4];
    sqlite3 *db;
    char err[SS_ERR_MAX];

    for (int i = 0; i < 4; i++) {
        o[i].path = f->path;
        o[i].rc = 1;
        assert_int_equal(pthread_create(&t[i], NULL, open_thread, &o[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        if (o[i].rc != 0)
            fprintf(stderr, "opener %d: %s\n", i, o[i].err);
        assert_int_equal(o[i].rc, 0);
    }
    assert_int_equal(sitedb_open(f->path, SITEDB_RDONLY, &db, err, sizeof err), 0);
    assert_int_equal(query_int(db, "PRAGMA user_version"), sitedb_schema_version());
    sitedb_close(db);
}

/* ---- sitedb_interrupt ------------------------------------------------- */

struct waiter {
    sqlite3 *db;
    int      r;
};

static void *begin_thread(void *arg)
{
    struct waiter *w = arg;
    w->r = sitedb_begin(w->db);
    return NULL;
}

/* A worker waiting in BEGIN IMMEDIATE for another connection's write
 * lock gives up with -EINTR when interrupted (from another thread, as a
 * daemon's stop does), instead of waiting out the busy timeout with
 * -EIO; the connection stays interrupted for lock waits, and everything
 * else still works. */
static void test_interrupt_lock_wait(void **state)
{
    struct tu_dir *f = *state;
    sqlite3 *a, *b;
    char err[SS_ERR_MAX];
    pthread_t t;

    assert_int_equal(sitedb_open(f->path, 0, &a, err, sizeof err), 0);
    assert_int_equal(sitedb_open(f->path, 0, &b, err, sizeof err), 0);
    assert_int_equal(sitedb_begin(a), 0);
    assert_int_equal(sitedb_exec(a, "INSERT INTO retry VALUES ('s','a','retrying',1,0,'',0)"), 0);

    /* Whether the interrupt comes before the wait starts or during it,
     * the wait ends with -EINTR. */
    struct waiter w = { b, 1 };
    assert_int_equal(pthread_create(&t, NULL, begin_thread, &w), 0);
    sitedb_interrupt(b);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.r, -EINTR);
    assert_int_equal(sqlite3_get_autocommit(b), 1);     /* no transaction */
    assert_int_equal(sitedb_begin(b), -EINTR);           /* still interrupted */
    assert_int_equal(sitedb_errno(b, SQLITE_BUSY), -EINTR);
    assert_int_equal(sitedb_errno(b, SQLITE_BUSY_SNAPSHOT), -EINTR);

    /* The other connection is not disturbed, and b still reads and,
     * with nobody holding the lock, writes. */
    assert_int_equal(sitedb_commit(a), 0);
    assert_int_equal(query_int(b, "SELECT count(*) FROM retry"), 1);
    assert_int_equal(sitedb_begin(b), 0);
    assert_int_equal(sitedb_exec(b, "INSERT INTO retry VALUES ('s','b','retrying',1,0,'',0)"), 0);
    assert_int_equal(sitedb_commit(b), 0);
    assert_int_equal(query_int(a, "SELECT count(*) FROM retry"), 2);
    assert_int_equal(sitedb_errno(a, SQLITE_BUSY), -EIO);  /* a was not interrupted */
    sitedb_close(a);
    sitedb_close(b);
}

/* An SQL function that interrupts its own connection when its argument
 * reaches 100, so that the statement is interrupted while it runs. */
static void stop_at_100(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    if (sqlite3_value_int64(argv[0]) == 100)
        sitedb_interrupt(sqlite3_user_data(ctx));
    sqlite3_result_int(ctx, 1);
}

/* A statement interrupted while it runs is -EINTR, not -EIO; the
 * transaction it was in can be rolled back. */
static void test_interrupt_statement(void **state)
{
    struct tu_dir *f = *state;
    sqlite3 *db;
    char err[SS_ERR_MAX];
    static const struct {
        int rc, want;
    } codes[] = {
        { SQLITE_OK, 0 }, { SQLITE_ROW, 0 }, { SQLITE_DONE, 0 },
        { SQLITE_INTERRUPT, -EINTR }, { SQLITE_BUSY, -EIO }, { SQLITE_ERROR, -EIO },
        { SQLITE_IOERR_WRITE, -EIO }, { SQLITE_FULL, -EIO }, { SQLITE_CONSTRAINT, -EIO },
    };

    assert_int_equal(sitedb_open(f->path, 0, &db, err, sizeof err), 0);
    for (size_t i = 0; i < SS_ARRAY_LEN(codes); i++)
        if (sitedb_errno(db, codes[i].rc) != codes[i].want)
            fail_msg("sitedb_errno(%d): want %d", codes[i].rc, codes[i].want);

    assert_int_equal(sqlite3_create_function(db, "stop_at_100", 1, SQLITE_UTF8, db,
                                             stop_at_100, NULL, NULL), SQLITE_OK);
    assert_int_equal(sitedb_begin(db), 0);
    assert_int_equal(sitedb_exec(db, "INSERT INTO retry VALUES ('s','a','retrying',1,0,'',0)"), 0);
    assert_int_equal(sitedb_exec(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL"
                                     " SELECT x + 1 FROM c WHERE stop_at_100(x) AND x < 10000000)"
                                     " SELECT count(*) FROM c"), -EINTR);
    assert_int_equal(sitedb_rollback(db), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM retry"), 0);
    sitedb_close(db);
}

/* The connection pool: a connection given back is the one taken next;
 * after sitedb_pool_stop a connection taken cannot wait for the write
 * lock, and one given back is closed, not kept.  sitedb_execf binds text
 * and integers in order. */
static void test_pool_and_execf(void **state)
{
    struct tu_dir *f = *state;
    struct sitedb_pool pool;
    sqlite3 *a, *b, *holder;
    char err[SS_ERR_MAX], root[SS_PATH_MAX];

    assert_int_equal(ss_path(root, sizeof root, "%s/db", f->dir), 0);
    assert_int_equal(ss_mkdir_p(root, 0750), 0);
    sitedb_pool_init(&pool, f->dir);
    assert_non_null(a = sitedb_pool_get(&pool));
    assert_int_equal(sitedb_execf(a, "INSERT INTO retry VALUES (?1, ?2, 'retrying', ?3, 0, '', 0)",
                                  "ssi", "dp", "P/1/D", 7LL), 0);
    assert_int_equal(query_int(a, "SELECT attempts FROM retry WHERE target = 'P/1/D'"), 7);
    assert_int_equal(sitedb_execf(a, "SELECT nonsense FROM nowhere", ""), -EIO);
    sitedb_pool_put(&pool, a);
    assert_ptr_equal(b = sitedb_pool_get(&pool), a);
    sitedb_pool_put(&pool, b);

    /* Another connection holds the write lock; after the stop, a pooled
     * connection gives up at once instead of waiting for it. */
    assert_int_equal(sitedb_open_root(f->dir, 0, &holder, err, sizeof err), 0);
    assert_int_equal(sitedb_begin(holder), 0);
    sitedb_pool_stop(&pool);
    assert_non_null(b = sitedb_pool_get(&pool));
    assert_int_equal(sitedb_begin(b), -EINTR);
    sitedb_pool_put(&pool, b);              /* closed, not kept */
    assert_int_equal(pool.nidle, 0);
    assert_int_equal(sitedb_rollback(holder), 0);
    sitedb_close(holder);
    sitedb_pool_close(&pool);
    pthread_mutex_destroy(&pool.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_open_migrates, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_idempotent, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_rdonly_missing_and_old, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_open_root, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_begin_commit_rollback, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_two_connections, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_uid_unique, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_open, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_lock_wait, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_statement, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_pool_and_execf, setup, tu_dir_teardown),
    };
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
