/*
 * test_backup.c - backups of a fake site root: run, manifest, verify,
 * list, prune, restore, stop flag, failures, a database written during
 * the backup.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/time.h>

#include "testutil.h"

#include "backup.h"
#include "inbox.h"
#include "record.h"

#define SITE "ABC"
#define OBJ_HEX "ab00000000000000000000000000000000000000000000000000000000000001"

struct fx {
    char  dir[SS_PATH_MAX];         /* the test's temporary directory */
    char  root[SS_PATH_MAX];        /* <dir>/site */
    char  dest[SS_PATH_MAX];        /* <dir>/dest */
    struct bkctl *ctl;
    struct backup_opts o;
    volatile int stop;
    char  calls[512];               /* "stop distmgr,start distmgr," */
    int   stop_on_stop;             /* daemon_stop sets the stop flag */
};

/* ---- the fake site -------------------------------------------------------- */

static void db_exec(sqlite3 *db, const char *sql)
{
    char *e = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK)
        fail_msg("%s: %s", sql, e);
}

static void make_db(const char *path, int rows)
{
    sqlite3 *db;
    char sql[256];

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    db_exec(db, "PRAGMA journal_mode=WAL");
    db_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    db_exec(db, "BEGIN");
    for (int i = 1; i <= rows; i++) {
        snprintf(sql, sizeof sql, "INSERT INTO t VALUES(%d, 'row %d %s')", i, i,
                 "padding padding padding padding padding padding padding padding");
        db_exec(db, sql);
    }
    db_exec(db, "COMMIT");
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static long long db_count(const char *path, char *check, size_t checklen)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long long n = -1;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (check) {
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        snprintf(check, checklen, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

static void put(struct fx *f, const char *rel, const char *text, mode_t mode)
{
    char p[SS_PATH_MAX];
    assert_int_equal(ss_path(p, sizeof p, "%s/%s", f->root, rel), 0);
    tu_write(p, text);
    assert_int_equal(chmod(p, mode), 0);
}

static void mk(struct fx *f, const char *rel, mode_t mode)
{
    char p[SS_PATH_MAX];
    assert_int_equal(ss_path(p, sizeof p, "%s/%s", f->root, rel), 0);
    assert_int_equal(ss_mkdir_p(p, mode), 0);
    assert_int_equal(chmod(p, mode), 0);
}

static void make_site(struct fx *f, int rows)
{
    char p[SS_PATH_MAX];
    sqlite3 *db;

    mk(f, "db", 0750);
    assert_int_equal(ss_path(p, sizeof p, "%s/db/site.db", f->root), 0);
    make_db(p, rows);
    put(f, "site.conf", "[site]\ncode = ABC\n", 0644);
    mk(f, "keys", 0700);
    put(f, "keys/site.key", "PRIVATE KEY\n", 0600);
    put(f, "keys/site.pub", "PUBLIC KEY\n", 0644);
    assert_int_equal(inbox_create_tree(f->root), 0);
    put(f, "inboxes/distmgr.box/a.pkg", "package request a\n", 0640);
    put(f, "inboxes/distmgr.box/work/b.pkg", "package request b\n", 0640);
    put(f, "inboxes/distmgr.box/.tmp/c.pkg", "half written\n", 0640);
    put(f, "inboxes/statmgr.box/statmsgs/corrupt/d.svf", "bad message\n", 0640);
    put(f, "inboxes/statmgr.box/statmsgs/corrupt/d.svf.reason", "why\n", 0640);
    put(f, "inboxes/schedule.box/requests/e.srq", "send request\n", 0640);
    mk(f, "store/objects/ab", 0755);
    mk(f, "store/out", 0755);
    mk(f, "store/.tmp", 0755);
    assert_int_equal(ss_path(p, sizeof p, "%s/store/small.db", f->root), 0);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    db_exec(db, "PRAGMA journal_mode=WAL");
    db_exec(db, "CREATE TABLE object(sha BLOB PRIMARY KEY, data BLOB)");
    db_exec(db, "INSERT INTO object VALUES(x'01', x'0203')");
    sqlite3_close(db);
    put(f, "store/objects/ab/" OBJ_HEX, "a large object\n", 0640);
    put(f, "store/out/x.pck", "package file\n", 0640);
    put(f, "store/.tmp/junk", "in progress\n", 0640);
}

static int cb_stop(void *arg, const char *name, char *err, size_t errlen)
{
    struct fx *f = arg;
    size_t n = strlen(f->calls);
    snprintf(f->calls + n, sizeof f->calls - n, "stop %s,", name);
    if (f->stop_on_stop)
        f->stop = 1;
    return 0;
}

static int cb_start(void *arg, const char *name, char *err, size_t errlen)
{
    struct fx *f = arg;
    size_t n = strlen(f->calls);
    snprintf(f->calls + n, sizeof f->calls - n, "start %s,", name);
    return 0;
}

static void ctl_add(struct bkctl *c, enum bkctl_op op, const char *d1, const char *d2)
{
    struct bkctl_cmd *cmd = &c->cmd[c->n++];
    memset(cmd, 0, sizeof *cmd);
    cmd->op = op;
    cmd->line = c->n;
    if (d1)
        snprintf(cmd->daemon_order[cmd->ndaemons++], 16, "%s", d1);
    if (d2)
        snprintf(cmd->daemon_order[cmd->ndaemons++], 16, "%s", d2);
}

static void ctl_tasks(struct bkctl *c)
{
    ctl_add(c, BK_DATABASE, NULL, NULL);
    ctl_add(c, BK_CONFIG, NULL, NULL);
    ctl_add(c, BK_KEYS, NULL, NULL);
    ctl_add(c, BK_INBOXES, NULL, NULL);
    ctl_add(c, BK_STORE, NULL, NULL);
}

static struct fx *fx_new(int rows)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    tu_tmpdir(f->dir, sizeof f->dir, "test_backup");
    assert_int_equal(ss_path(f->root, sizeof f->root, "%s/site", f->dir), 0);
    assert_int_equal(ss_path(f->dest, sizeof f->dest, "%s/dest", f->dir), 0);
    assert_int_equal(mkdir(f->root, 0755), 0);
    make_site(f, rows);
    f->ctl = calloc(1, sizeof *f->ctl);
    assert_non_null(f->ctl);
    ctl_tasks(f->ctl);
    snprintf(f->ctl->destination, sizeof f->ctl->destination, "%s", f->dest);
    f->o.root = f->root;
    f->o.site = SITE;
    f->o.ctl = f->ctl;
    f->o.stop = &f->stop;
    f->o.daemon_stop = cb_stop;
    f->o.daemon_start = cb_start;
    f->o.arg = f;
    return f;
}

static void fx_free(struct fx *f)
{
    tu_rm_rf(f->dir);
    free(f->ctl);
    free(f);
}

static void run_ok(struct fx *f, char *path, size_t len)
{
    char err[SS_ERR_MAX] = "";
    int r = backup_run(&f->o, path, len, err, sizeof err);
    if (r != 0)
        fail_msg("backup_run: %d %s", r, err);
}

static void bpath(char *out, size_t len, const char *backup, const char *rel)
{
    assert_int_equal(ss_path(out, len, "%s/%s", backup, rel), 0);
}

static int has_tmp_dir(const char *dest)
{
    DIR *d = opendir(dest);
    struct dirent *de;
    int n = 0;
    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

static void verify_ok(const char *path)
{
    char err[SS_ERR_MAX] = "";
    int r = backup_verify(path, err, sizeof err);
    if (r != 0)
        fail_msg("backup_verify: %d %s", r, err);
}

static void sha_hex(const char *text, char *hex)
{
    unsigned char sha[32];
    ss_sha256(text, strlen(text), sha);
    ss_hex(sha, 32, hex);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_run_tree_and_manifest(void **state)
{
    struct fx *f = fx_new(100);
    char path[SS_PATH_MAX], p[SS_PATH_MAX], q[SS_PATH_MAX], check[64], hex[65], want[256];
    char err[SS_ERR_MAX];
    struct stat st, st2;

    run_ok(f, path, sizeof path);
    assert_non_null(strstr(path, f->dest));
    assert_int_equal(has_tmp_dir(f->dest), 0);
    assert_string_equal(f->calls, "");

    static const char *const present[] = {
        "MANIFEST", "db/site.db", "site.conf", "keys/site.key", "keys/site.pub",
        "inboxes/distmgr.box/a.pkg", "inboxes/distmgr.box/work/b.pkg",
        "inboxes/statmgr.box/statmsgs/corrupt/d.svf",
        "inboxes/statmgr.box/statmsgs/corrupt/d.svf.reason",
        "inboxes/schedule.box/requests/e.srq", "store/small.db",
        "store/objects/ab/" OBJ_HEX, "store/out/x.pck",
    };
    static const char *const absent[] = {
        "inboxes/distmgr.box/.tmp/c.pkg", "store/.tmp", "store/small.db-wal",
        "store/small.db-shm", "db/site.db-wal", "db/site.db-shm", "db/site.db-journal",
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(present); i++) {
        bpath(p, sizeof p, path, present[i]);
        if (!tu_exists(AT_FDCWD, p))
            fail_msg("missing in the backup: %s", present[i]);
    }
    for (size_t i = 0; i < SS_ARRAY_LEN(absent); i++) {
        bpath(p, sizeof p, path, absent[i]);
        if (tu_exists(AT_FDCWD, p))
            fail_msg("should not be in the backup: %s", absent[i]);
    }
    /* The private key stays 0600 in a 0700 directory. */
    bpath(p, sizeof p, path, "keys/site.key");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    bpath(p, sizeof p, path, "keys");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    /* Inbox files are hard links; keys are copies. */
    bpath(p, sizeof p, path, "inboxes/distmgr.box/a.pkg");
    bpath(q, sizeof q, f->root, "inboxes/distmgr.box/a.pkg");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(stat(q, &st2), 0);
    assert_true(st.st_ino == st2.st_ino);
    bpath(p, sizeof p, path, "keys/site.key");
    bpath(q, sizeof q, f->root, "keys/site.key");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(stat(q, &st2), 0);
    assert_true(st.st_ino != st2.st_ino);
    /* The database copy: every row, and sound. */
    bpath(p, sizeof p, path, "db/site.db");
    assert_int_equal(db_count(p, check, sizeof check), 100);
    assert_string_equal(check, "ok");

    /* The MANIFEST: a valid record with one line per file, sorted. */
    size_t len;
    bpath(p, sizeof p, path, "MANIFEST");
    char *buf = tu_read(p, &len);
    assert_true(strncmp(buf, "sitesrv backup 1\nsite=ABC\ncreated=", 34) == 0);
    sha_hex("package request a\n", hex);
    snprintf(want, sizeof want, "file=%s 18 640 inboxes/distmgr.box/a.pkg\n", hex);
    assert_non_null(strstr(buf, want));
    assert_non_null(strstr(buf, "tasks=database config keys inboxes store\n"));
    struct rec r;
    assert_int_equal(rec_parse(&r, buf, len, &(struct rec_limits){ 1 << 20, 8192, 1000 }, err,
                               sizeof err), 0);
    assert_int_equal(rec_count(&r, "file"), SS_ARRAY_LEN(present) - 1);
    const char *prev = NULL;
    for (size_t i = 0; i < rec_count(&r, "file"); i++) {
        const char *v = rec_get_nth(&r, "file", i);
        const char *path_part = strchr(strchr(strchr(v, ' ') + 1, ' ') + 1, ' ') + 1;
        if (prev)
            assert_true(strcmp(prev, path_part) < 0);
        prev = path_part;
    }
    rec_free(&r);
    free(buf);

    verify_ok(path);
    fx_free(f);
}

/* Damage one backup: a flipped byte, a removed file, a stray file. */
enum damage { FLIP, REMOVE, STRAY, TRUNC };
static const struct {
    const char *label;
    enum damage how;
    const char *rel;
} damage_cases[] = {
    { "flipped byte in the database copy", FLIP, "db/site.db" },
    { "flipped byte in an inbox file", FLIP, "inboxes/distmgr.box/a.pkg" },
    { "flipped byte in the key", FLIP, "keys/site.key" },
    { "truncated store object", TRUNC, "store/objects/ab/" OBJ_HEX },
    { "removed file", REMOVE, "site.conf" },
    { "stray file", STRAY, "inboxes/distmgr.box/zz.pkg" },
    { "stray dot file", STRAY, "store/.hidden" },
    { "manifest altered", FLIP, "MANIFEST" },
};

static void damage(const char *backup, enum damage how, const char *rel)
{
    char p[SS_PATH_MAX];
    bpath(p, sizeof p, backup, rel);
    if (how == REMOVE) {
        assert_int_equal(unlink(p), 0);
    } else if (how == STRAY) {
        tu_write(p, "stray\n");
    } else if (how == TRUNC) {
        assert_int_equal(truncate(p, 3), 0);
    } else {
        /* Not in place: a linked file must not change the site's copy. */
        size_t len;
        char *buf = tu_read(p, &len);
        assert_true(len > 0);
        buf[len / 2] ^= 0x20;
        assert_int_equal(unlink(p), 0);
        tu_write_len(p, buf, len);
        free(buf);
    }
}

static void test_verify_damage(void **state)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(damage_cases); i++) {
        struct fx *f = fx_new(50);
        char path[SS_PATH_MAX], err[SS_ERR_MAX] = "";

        run_ok(f, path, sizeof path);
        verify_ok(path);
        damage(path, damage_cases[i].how, damage_cases[i].rel);
        int r = backup_verify(path, err, sizeof err);
        if (r != -EBADMSG || strstr(err, damage_cases[i].rel) == NULL)
            fail_msg("%s: %d \"%s\"", damage_cases[i].label, r, err);
        fx_free(f);
    }
}

static void test_list_and_prune(void **state)
{
    struct fx *f = fx_new(10);
    char path[3][SS_PATH_MAX], p[SS_PATH_MAX];
    struct backup_info *v;
    size_t n;

    assert_int_equal(backup_list(f->dest, &v, &n), -ENOENT);
    for (int i = 0; i < 3; i++)
        run_ok(f, path[i], sizeof path[i]);
    assert_string_not_equal(path[0], path[1]);
    /* A run that died long ago, one at work now, one of another site,
     * something that is not a backup, and a damaged one. */
    bpath(p, sizeof p, f->dest, ".ABC-20200101T000000Z.tmp");
    assert_int_equal(mkdir(p, 0750), 0);
    struct timeval old[2] = { { 1577836800, 0 }, { 1577836800, 0 } };
    assert_int_equal(utimes(p, old), 0);
    bpath(p, sizeof p, f->dest, ".ABC-29990101T000000Z.tmp");
    assert_int_equal(mkdir(p, 0750), 0);
    bpath(p, sizeof p, f->dest, "XYZ-20210101T000000Z");
    assert_int_equal(mkdir(p, 0750), 0);
    bpath(p, sizeof p, f->dest, "notes");
    assert_int_equal(mkdir(p, 0750), 0);
    bpath(p, sizeof p, f->dest, "ABC-20190101T000000Z");
    assert_int_equal(mkdir(p, 0750), 0);
    bpath(p, sizeof p, f->dest, "ABC-20190101T000000Z/MANIFEST");
    tu_write(p, "sitesrv backup 1\nsite=ABC\nend 00\n");

    assert_int_equal(backup_list(f->dest, &v, &n), 0);
    assert_int_equal(n, 7);
    static const struct { const char *name_start; enum backup_status st; } want[] = {
        { "ABC-2019", BACKUP_DAMAGED }, { ".ABC-2020", BACKUP_INCOMPLETE },
        { "XYZ-2021", BACKUP_DAMAGED }, { "ABC-", BACKUP_COMPLETE },
        { "ABC-", BACKUP_COMPLETE }, { "ABC-", BACKUP_COMPLETE },
        { ".ABC-2999", BACKUP_INCOMPLETE },
    };
    for (size_t i = 0; i < n; i++) {
        if (strncmp(v[i].name, want[i].name_start, strlen(want[i].name_start)) != 0 ||
            v[i].status != want[i].st)
            fail_msg("entry %zu: %s %s", i, v[i].name, backup_status_name(v[i].status));
        if (i > 0)
            assert_true(v[i - 1].time_ms <= v[i].time_ms);
    }
    assert_string_equal(v[3].path, path[0]);
    assert_string_equal(v[5].path, path[2]);
    assert_int_equal(v[3].files, 12);
    assert_true(v[3].bytes > 0);
    assert_string_equal(backup_status_name(BACKUP_COMPLETE), "complete");
    assert_string_equal(backup_status_name(BACKUP_INCOMPLETE), "incomplete");
    assert_string_equal(backup_status_name(BACKUP_DAMAGED), "damaged");
    free(v);

    assert_int_equal(backup_prune(f->dest, SITE, 0), -EINVAL);
    /* Keep 2: the oldest complete one and the stale .tmp go. */
    assert_int_equal(backup_prune(f->dest, SITE, 2), 2);
    assert_false(tu_exists(AT_FDCWD, path[0]));
    assert_true(tu_exists(AT_FDCWD, path[1]));
    assert_true(tu_exists(AT_FDCWD, path[2]));
    assert_int_equal(backup_list(f->dest, &v, &n), 0);
    assert_int_equal(n, 5);
    free(v);
    bpath(p, sizeof p, f->dest, ".ABC-29990101T000000Z.tmp");
    assert_true(tu_exists(AT_FDCWD, p));      /* may be at work */
    bpath(p, sizeof p, f->dest, "notes");
    assert_true(tu_exists(AT_FDCWD, p));
    bpath(p, sizeof p, f->dest, "ABC-20190101T000000Z");
    assert_true(tu_exists(AT_FDCWD, p));      /* damaged: the administrator's */
    assert_int_equal(backup_prune(f->dest, SITE, 2), 0);
    assert_int_equal(backup_prune(f->dest, SITE, 1), 1);
    assert_false(tu_exists(AT_FDCWD, path[1]));
    assert_true(tu_exists(AT_FDCWD, path[2]));
    fx_free(f);
}

static void test_restore(void **state)
{
    struct fx *f = fx_new(100);
    char path[SS_PATH_MAX], nroot[SS_PATH_MAX], p[SS_PATH_MAX], q[SS_PATH_MAX], check[64];
    char err[SS_ERR_MAX] = "";
    struct stat st, st2;

    run_ok(f, path, sizeof path);
    assert_int_equal(ss_path(nroot, sizeof nroot, "%s/new/site", f->dir), 0);
    int r = backup_restore(path, nroot, err, sizeof err);
    if (r != 0)
        fail_msg("restore: %d %s", r, err);

    bpath(p, sizeof p, nroot, "db/site.db");
    assert_int_equal(db_count(p, check, sizeof check), 100);
    assert_string_equal(check, "ok");
    bpath(p, sizeof p, nroot, "site.conf");
    tu_assert_content(AT_FDCWD, p, "[site]\ncode = ABC\n");
    bpath(p, sizeof p, nroot, "keys/site.key");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    tu_assert_content(AT_FDCWD, p, "PRIVATE KEY\n");
    bpath(p, sizeof p, nroot, "keys");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    bpath(p, sizeof p, nroot, "inboxes/distmgr.box/work/b.pkg");
    tu_assert_content(AT_FDCWD, p, "package request b\n");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    /* Copies, not links of the backup. */
    bpath(q, sizeof q, path, "inboxes/distmgr.box/work/b.pkg");
    assert_int_equal(stat(q, &st2), 0);
    assert_true(st.st_ino != st2.st_ino);
    bpath(p, sizeof p, nroot, "store/objects/ab/" OBJ_HEX);
    tu_assert_content(AT_FDCWD, p, "a large object\n");
    /* The whole site tree. */
    for (size_t i = 0; i < IB_COUNT; i++) {
        static const char *const sub[] = { "", "/.tmp", "/work", "/corrupt" };
        for (size_t k = 0; k < SS_ARRAY_LEN(sub); k++) {
            assert_int_equal(ss_path(p, sizeof p, "%s/inboxes/%s%s", nroot, inbox_defs[i].path,
                                     sub[k]), 0);
            assert_int_equal(stat(p, &st), 0);
            assert_true(S_ISDIR(st.st_mode));
        }
    }
    static const char *const dirs[] = { "logs", "run", "backup", "store", "db" };
    for (size_t i = 0; i < SS_ARRAY_LEN(dirs); i++) {
        bpath(p, sizeof p, nroot, dirs[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
    }
    bpath(p, sizeof p, nroot, "MANIFEST");
    assert_false(tu_exists(AT_FDCWD, p));

    /* Into an existing empty directory is fine too. */
    assert_int_equal(ss_path(nroot, sizeof nroot, "%s/empty", f->dir), 0);
    assert_int_equal(mkdir(nroot, 0755), 0);
    assert_int_equal(backup_restore(path, nroot, err, sizeof err), 0);
    fx_free(f);
}

static void test_restore_refused(void **state)
{
    struct fx *f = fx_new(20);
    char path[SS_PATH_MAX], nroot[SS_PATH_MAX], p[SS_PATH_MAX], err[SS_ERR_MAX] = "";

    run_ok(f, path, sizeof path);
    /* Not empty: refused, the directory untouched. */
    assert_int_equal(ss_path(nroot, sizeof nroot, "%s/full", f->dir), 0);
    assert_int_equal(mkdir(nroot, 0755), 0);
    bpath(p, sizeof p, nroot, "mine");
    tu_write(p, "keep me\n");
    assert_int_equal(backup_restore(path, nroot, err, sizeof err), -ENOTEMPTY);
    assert_non_null(strstr(err, "not empty"));
    assert_int_equal(tu_count(nroot), 1);
    tu_assert_content(AT_FDCWD, p, "keep me\n");
    /* Not a directory. */
    assert_int_equal(backup_restore(path, p, err, sizeof err), -ENOTDIR);

    /* Damaged: refused naming the file, nothing written. */
    damage(path, FLIP, "keys/site.key");
    assert_int_equal(ss_path(nroot, sizeof nroot, "%s/new", f->dir), 0);
    assert_int_equal(backup_restore(path, nroot, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "keys/site.key"));
    assert_false(tu_exists(AT_FDCWD, nroot));
    /* An incomplete one (no MANIFEST) likewise. */
    bpath(p, sizeof p, path, "MANIFEST");
    assert_int_equal(unlink(p), 0);
    assert_int_equal(backup_restore(path, nroot, err, sizeof err), -EBADMSG);
    assert_false(tu_exists(AT_FDCWD, nroot));
    fx_free(f);
}

static void test_stop_flag(void **state)
{
    struct fx *f = fx_new(20);
    char path[SS_PATH_MAX] = "x", err[SS_ERR_MAX] = "";

    f->stop = 1;
    assert_int_equal(backup_run(&f->o, path, sizeof path, err, sizeof err), -EINTR);
    assert_string_equal(path, "");
    assert_int_equal(tu_count(f->dest), 0);

    /* Set while the run is under way (by a [Stop]): nothing of the backup
     * is left, and the daemon stopped is not started against the stop (the
     * next sitebkup starts it: run/sitebkup.stopped). */
    f->stop = 0;
    f->stop_on_stop = 1;
    f->ctl->n = 0;
    ctl_add(f->ctl, BK_STOP, "sender", NULL);
    ctl_tasks(f->ctl);
    assert_int_equal(backup_run(&f->o, path, sizeof path, err, sizeof err), -EINTR);
    assert_non_null(strstr(err, "interrupted"));
    assert_string_equal(f->calls, "stop sender,");
    assert_int_equal(tu_count(f->dest), 0);
    fx_free(f);
}

static void test_stop_start_and_failures(void **state)
{
    struct fx *f = fx_new(20);
    char path[SS_PATH_MAX], err[SS_ERR_MAX] = "", p[SS_PATH_MAX];

    f->ctl->n = 0;
    ctl_add(f->ctl, BK_STOP, "distmgr", "sender");
    ctl_tasks(f->ctl);
    ctl_add(f->ctl, BK_START, "sender", "distmgr");
    run_ok(f, path, sizeof path);
    assert_string_equal(f->calls, "stop distmgr,stop sender,start sender,start distmgr,");
    verify_ok(path);

    /* A task fails (no database): the error names it, nothing is left,
     * and the daemons come back even though [Start] names only one. */
    f->calls[0] = '\0';
    f->ctl->n = 0;
    ctl_add(f->ctl, BK_STOP, "distmgr", "sender");
    ctl_tasks(f->ctl);
    ctl_add(f->ctl, BK_START, "sender", NULL);
    bpath(p, sizeof p, f->root, "db/site.db");
    assert_int_equal(unlink(p), 0);
    assert_int_equal(backup_run(&f->o, path, sizeof path, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "database"));
    assert_non_null(strstr(err, "db/site.db"));
    assert_string_equal(f->calls, "stop distmgr,stop sender,start sender,start distmgr,");
    assert_int_equal(tu_count(f->dest), 1);     /* the first backup only */
    assert_int_equal(has_tmp_dir(f->dest), 0);

    /* [Stop] without a way to stop daemons. */
    f->o.daemon_stop = NULL;
    assert_int_equal(backup_run(&f->o, path, sizeof path, err, sizeof err), -ENOTSUP);
    assert_non_null(strstr(err, "distmgr"));
    fx_free(f);
}

static void test_destination_unusable(void **state)
{
    struct fx *f = fx_new(20);
    char path[SS_PATH_MAX], err[SS_ERR_MAX] = "", p[SS_PATH_MAX];

    /* Below a regular file: cannot be made; nothing anywhere removed. */
    bpath(p, sizeof p, f->dir, "plain");
    tu_write(p, "a file\n");
    assert_int_equal(ss_path(f->ctl->destination, sizeof f->ctl->destination, "%s/dest", p), 0);
    assert_true(backup_run(&f->o, path, sizeof path, err, sizeof err) < 0);
    assert_non_null(strstr(err, "destination"));
    tu_assert_content(AT_FDCWD, p, "a file\n");
    assert_int_equal(tu_count(f->dir), 2);          /* site, plain */
    bpath(p, sizeof p, f->root, "inboxes/distmgr.box/a.pkg");
    assert_true(tu_exists(AT_FDCWD, p));

    /* A relative destination is refused. */
    snprintf(f->ctl->destination, sizeof f->ctl->destination, "relative/dest");
    assert_int_equal(backup_run(&f->o, path, sizeof path, err, sizeof err), -EINVAL);

    /* A destination inside the store is never walked into. */
    assert_int_equal(ss_path(f->ctl->destination, sizeof f->ctl->destination,
                             "%s/store/bk", f->root), 0);
    run_ok(f, path, sizeof path);
    verify_ok(path);
    run_ok(f, path, sizeof path);
    verify_ok(path);
    fx_free(f);
}

/* A writer inserting rows all through the backup. */
struct writer {
    const char *path;
    volatile int done;
    long long rows;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    sqlite3 *db;
    char sql[256];

    if (sqlite3_open(w->path, &db) != SQLITE_OK)
        return NULL;
    sqlite3_busy_timeout(db, 10000);
    for (long long i = 0; !w->done; i++) {
        snprintf(sql, sizeof sql,
                 "BEGIN IMMEDIATE; INSERT INTO t(v) VALUES('concurrent %lld'); "
                 "INSERT INTO t(v) VALUES('second %lld'); COMMIT", i, i);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK)
            w->rows += 2;
    }
    sqlite3_close(db);
    return NULL;
}

static void test_database_written_during_backup(void **state)
{
    struct fx *f = fx_new(20000);
    char path[SS_PATH_MAX], p[SS_PATH_MAX], dbp[SS_PATH_MAX], check[64];
    struct writer w = { 0 };
    pthread_t tid;

    bpath(dbp, sizeof dbp, f->root, "db/site.db");
    w.path = dbp;
    assert_int_equal(pthread_create(&tid, NULL, writer_main, &w), 0);
    while (w.rows < 10)
        usleep(1000);
    for (int i = 0; i < 3; i++) {
        run_ok(f, path, sizeof path);
        bpath(p, sizeof p, path, "db/site.db");
        long long n = db_count(p, check, sizeof check);
        assert_string_equal(check, "ok");
        /* A snapshot: whole transactions only (two rows each). */
        assert_true(n >= 20000 + 10);
        assert_int_equal((n - 20000) % 2, 0);
        verify_ok(path);
    }
    w.done = 1;
    pthread_join(tid, NULL);
    assert_true(db_count(dbp, NULL, 0) >= 20010);
    fx_free(f);
}

int main(void)
{
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_tree_and_manifest),
        cmocka_unit_test(test_verify_damage),
        cmocka_unit_test(test_list_and_prune),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_restore_refused),
        cmocka_unit_test(test_stop_flag),
        cmocka_unit_test(test_stop_start_and_failures),
        cmocka_unit_test(test_destination_unusable),
        cmocka_unit_test(test_database_written_during_backup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
