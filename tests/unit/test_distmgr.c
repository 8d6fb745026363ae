/*
 * test_distmgr.c - unit tests for the Distribution Manager's tasks
 * (daemons/distmgr/tasks.c), run synchronously on a temporary site:
 * the DP state transitions (pending -> installed; retrying with a
 * growing delay; failed after max_retries; back by `retry now` or a new
 * version), exactly one job per (package, version, child site) however
 * often the package task and the DP retries run (SPEC 4.1, Q319207), the
 * recovery of jobs staged by a killed run, deletion, and the collection
 * of store objects no version uses.
 */
#include "testutil.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>

#include "distmgr.h"
#include "inbox.h"
#include "manifest.h"
#include "record.h"
#include "pool.h"
#include "retry.h"
#include "sitedb.h"
#include "statmsg.h"

struct fx {
    char    big[80000];         /* a file above STORE_SMALL_MAX: a loose object */
    char   *root;
    char    src[SS_PATH_MAX], dp1[SS_PATH_MAX], dp2[SS_PATH_MAX];
    struct distmgr dm;
    sqlite3 *db;                /* the test's own connection */
};

static void sql(struct fx *f, const char *fmt, ...)
{
    char q[4096];
    va_list ap;
    char *msg = NULL;

    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    if (sqlite3_exec(f->db, q, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", q, msg);
}

static long long sql_int(struct fx *f, const char *fmt, ...)
{
    char q[4096];
    va_list ap;
    sqlite3_stmt *st;
    long long v = -1;

    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    assert_int_equal(sqlite3_prepare_v2(f->db, q, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void sql_text(struct fx *f, char *out, size_t len, const char *fmt, ...)
{
    char q[4096];
    va_list ap;
    sqlite3_stmt *st;

    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    out[0] = 0;
    assert_int_equal(sqlite3_prepare_v2(f->db, q, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        (void)ss_strcpy(out, len, (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static void write_key(const char *root)
{
    char path[SS_PATH_MAX];
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    FILE *fp;

    assert_non_null(k);
    assert_int_equal(ss_path(path, sizeof path, "%s/keys", root), 0);
    assert_int_equal(ss_mkdir_p(path, 0700), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/keys/site.key", root), 0);
    assert_non_null(fp = fopen(path, "w"));
    assert_int_equal(PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[SS_ERR_MAX], path[SS_PATH_MAX];

    assert_non_null(f);
    f->root = tu_tmpdir_new("test_distmgr");
    assert_non_null(f->root);
    assert_int_equal(inbox_create_tree(f->root), 0);
    write_key(f->root);
    assert_int_equal(ss_path(f->src, sizeof f->src, "%s/src", f->root), 0);
    assert_int_equal(ss_path(f->dp1, sizeof f->dp1, "%s/dp1", f->root), 0);
    assert_int_equal(ss_path(f->dp2, sizeof f->dp2, "%s/dp2", f->root), 0);   /* absent */
    assert_int_equal(ss_mkdir_p(f->dp1, 0755), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/sub", f->src), 0);
    assert_int_equal(ss_mkdir_p(path, 0755), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/a.txt", f->src), 0);
    tu_write(path, "alpha\n");
    assert_int_equal(ss_path(path, sizeof path, "%s/sub/b.txt", f->src), 0);
    tu_write(path, "bravo\n");
    for (size_t i = 0; i < sizeof f->big; i++)
        f->big[i] = (char)('a' + i % 23);
    assert_int_equal(ss_path(path, sizeof path, "%s/big.bin", f->src), 0);
    tu_write_len(path, f->big, sizeof f->big);
    assert_int_equal(ss_path(path, sizeof path, "%s/db", f->root), 0);
    assert_int_equal(ss_mkdir_p(path, 0750), 0);
    assert_int_equal(sitedb_open_root(f->root, 0, &f->db, err, sizeof err), 0);

    struct distmgr *dm = &f->dm;
    (void)ss_strcpy(dm->root, sizeof dm->root, f->root);
    sitedb_pool_init(&dm->dbs, f->root);
    (void)ss_strcpy(dm->site, sizeof dm->site, "CEN");
    assert_int_equal(ss_path(dm->store, sizeof dm->store, "%s/store", f->root), 0);
    assert_int_equal(store_init(dm->store), 0);
    dm->policy = (struct retry_policy){ 1, 2, 3, 0.0 };   /* ms: due at once in a test */
    assert_int_equal(inbox_open(&dm->schedbox, f->root, IB_SCHEDULE, "CEN", 0), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/distmgr.box/outgoing", f->root), 0);
    assert_int_equal(ss_mkdir_p(path, 0750), 0);
    dm->outfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dm->outfd >= 0);
    sm_set_identity2(f->root, "CEN", "distmgr", "testhost");

    sql(f, "INSERT INTO dp VALUES ('DP1', '%s', 0), ('DP2', '%s', 0)", f->dp1, f->dp2);
    sql(f, "INSERT INTO package (id, name, source, origin, version, all_dps, created_ms,"
           " updated_ms) VALUES ('CEN00001', 'Test', '%s', 'CEN', 0, 1, 0, 0)", f->src);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    sitedb_close(f->db);
    sitedb_pool_close(&f->dm.dbs);
    close(f->dm.outfd);
    inbox_close(&f->dm.schedbox);
    pthread_mutex_destroy(&f->dm.dbs.lock);
    tu_tmpdir_free(f->root);
    free(f);
    return 0;
}

/* Run one task to its end on this thread; its wants are returned. */
static struct task *run(struct fx *f, enum task_kind kind, const char *pkg, const char *dp,
                        int new_version)
{
    struct task *t = calloc(1, sizeof *t);

    assert_non_null(t);
    t->dm = &f->dm;
    t->kind = kind;
    t->new_version = new_version;
    (void)ss_strcpy(t->pkg, sizeof t->pkg, pkg ? pkg : "");
    (void)ss_strcpy(t->dp, sizeof t->dp, dp ? dp : "");
    task_work(&t->job);
    assert_int_equal(t->rc, 0);
    return t;
}

static void task_free(struct task *t)
{
    free(t->wants);
    free(t);
}

static int wants_dp(const struct task *t, const char *dp)
{
    for (size_t i = 0; i < t->nwants; i++)
        if (strcmp(t->wants[i].dp, dp) == 0)
            return 1;
    return 0;
}

static void run_free(struct fx *f, enum task_kind kind, const char *pkg, const char *dp,
                     int new_version)
{
    task_free(run(f, kind, pkg, dp, new_version));
}

static size_t count_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0, sl = strlen(suffix);

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l > sl && strcmp(de->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* Status messages with this ID written to statmgr.box/statmsgs, counted
 * by distinct uid (statmgr records a uid once). */
static size_t count_msgs(struct fx *f, unsigned id)
{
    char dir[SS_PATH_MAX], uids[64][33];
    DIR *d;
    struct dirent *de;
    size_t n = 0;

    assert_int_equal(ss_path(dir, sizeof dir, "%s/inboxes/statmgr.box/statmsgs", f->root), 0);
    assert_non_null(d = opendir(dir));
    while ((de = readdir(d)) != NULL) {
        char path[SS_PATH_MAX], want[32], u[33] = "", *text = NULL, *uid;
        size_t len, k;
        if (de->d_name[0] == '.' || de->d_type == DT_DIR)
            continue;
        assert_int_equal(ss_path(path, sizeof path, "%s/%s", dir, de->d_name), 0);
        assert_int_equal(ss_read_file(AT_FDCWD, path, 65536, &text, &len), 0);
        snprintf(want, sizeof want, "\nid=%u\n", id);
        if (strstr(text, want) && (uid = strstr(text, "uid=")) != NULL)
            memcpy(u, uid + 4, 32);
        free(text);
        if (!u[0])
            continue;
        for (k = 0; k < n; k++)
            if (strcmp(uids[k], u) == 0)
                break;
        if (k == n && n < 64)
            (void)ss_strcpy(uids[n++], sizeof uids[0], u);
    }
    closedir(d);
    return n;
}

/* Is an object with this content in the store (small.db or loose)?  1/0. */
static int obj_exists(struct fx *f, const void *data, size_t len)
{
    struct store_reader *r;
    unsigned char sha[32];
    char *buf = malloc(len + 1);
    int fd = -1, rc;

    assert_non_null(buf);
    assert_int_equal(ss_sha256(data, len, sha), 0);
    assert_int_equal(store_reader_open(f->dm.store, &r), 0);
    rc = store_get(r, sha, (int64_t)len, buf, &fd);
    if (fd >= 0)
        close(fd);
    store_reader_close(r);
    free(buf);
    assert_true(rc == 0 || rc == -ENOENT);
    return rc == 0;
}

static void add_child_sites(struct fx *f, int n)
{
    for (int i = 1; i <= n; i++)
        sql(f, "INSERT INTO site VALUES ('B%02d', 'file:/nowhere', 'key', 'child', 0)", i);
}

/* pending -> installed on a reachable DP; an unreachable one retries with
 * its history per (package, version, DP), and no longer once installed. */
static void test_install_and_retry(void **state)
{
    struct fx *f = *state;
    char s[64], path[SS_PATH_MAX];
    struct task *t;

    t = run(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    assert_int_equal(sql_int(f, "SELECT version FROM package"), 1);
    assert_true(wants_dp(t, "DP1"));
    assert_true(wants_dp(t, "DP2"));
    task_free(t);

    run_free(f, T_DP, "CEN00001", "DP1", 0);
    sql_text(f, s, sizeof s, "SELECT state FROM dp_state WHERE dp = 'DP1'");
    assert_string_equal(s, "installed");
    assert_int_equal(ss_path(path, sizeof path, "%s/CEN00001/sub/b.txt", f->dp1), 0);
    assert_true(tu_file_contains(path, "bravo"));

    run_free(f, T_DP, "CEN00001", "DP2", 0);
    sql_text(f, s, sizeof s, "SELECT state FROM dp_state WHERE dp = 'DP2'");
    assert_string_equal(s, "retrying");
    assert_int_equal(sql_int(f, "SELECT attempts FROM retry WHERE scope = 'dp'"
                                " AND target = 'CEN00001/1/DP2'"), 1);
    sql_text(f, s, sizeof s, "SELECT last_error FROM dp_state WHERE dp = 'DP2'");
    assert_non_null(strstr(s, "dp2"));

    /* Due again (1 ms policy): the scan lists DP2, never DP1. */
    usleep(5000);
    t = run(f, T_SCAN, NULL, NULL, 0);
    assert_true(wants_dp(t, "DP2"));
    assert_false(wants_dp(t, "DP1"));
    task_free(t);

    /* The DP comes back: installed, and its history is gone. */
    assert_int_equal(ss_mkdir_p(f->dp2, 0755), 0);
    run_free(f, T_DP, "CEN00001", "DP2", 0);
    sql_text(f, s, sizeof s, "SELECT state FROM dp_state WHERE dp = 'DP2'");
    assert_string_equal(s, "installed");
    assert_int_equal(sql_int(f, "SELECT count(*) FROM retry"), 0);
    t = run(f, T_SCAN, NULL, NULL, 0);
    assert_int_equal(t->nwants, 0);
    task_free(t);
    assert_int_equal(count_msgs(f, SM_DIST_DP_DONE), 2);
    assert_int_equal(count_msgs(f, SM_DIST_DP_COPY_FAILED), 1);
}

/* retrying -> failed after max_retries (8100 once); out of every scan;
 * `retry now` brings it back; a new version starts it again too. */
static void test_failed_after_max(void **state)
{
    struct fx *f = *state;
    char s[64];
    struct task *t;

    run_free(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    for (int i = 0; i < 3; i++) {
        usleep(5000);
        run_free(f, T_DP, "CEN00001", "DP2", 0);
    }
    sql_text(f, s, sizeof s, "SELECT state FROM dp_state WHERE dp = 'DP2'");
    assert_string_equal(s, "failed");
    assert_int_equal(count_msgs(f, SM_DIST_DP_FAILED_MAX), 1);
    /* Failed: a T_DP does nothing, the scan does not list it. */
    run_free(f, T_DP, "CEN00001", "DP2", 0);
    assert_int_equal(sql_int(f, "SELECT attempts FROM retry WHERE target = 'CEN00001/1/DP2'"), 3);
    usleep(5000);
    t = run(f, T_SCAN, NULL, NULL, 0);
    assert_false(wants_dp(t, "DP2"));
    task_free(t);

    /* `sitectl retry now CEN00001 DP2` does this. */
    int n = 0;
    assert_int_equal(retry_now(f->db, "dp", "CEN00001/1/DP2", ss_now_ms(), &n), 0);
    assert_int_equal(n, 1);
    sql(f, "UPDATE dp_state SET state = 'pending' WHERE dp = 'DP2' AND state = 'failed'");
    t = run(f, T_SCAN, NULL, NULL, 0);
    assert_true(wants_dp(t, "DP2"));
    task_free(t);
    run_free(f, T_DP, "CEN00001", "DP2", 0);
    sql_text(f, s, sizeof s, "SELECT state FROM dp_state WHERE dp = 'DP2'");
    assert_string_equal(s, "retrying");

    /* Fail it again, then a new source version: wanted at once. */
    for (int i = 0; i < 3; i++) {
        usleep(5000);
        run_free(f, T_DP, "CEN00001", "DP2", 0);
    }
    sql_text(f, s, sizeof s, "SELECT state FROM dp_state WHERE dp = 'DP2'");
    assert_string_equal(s, "failed");
    char path[SS_PATH_MAX];
    assert_int_equal(ss_path(path, sizeof path, "%s/a.txt", f->src), 0);
    tu_write(path, "alpha, changed\n");
    t = run(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    assert_int_equal(sql_int(f, "SELECT version FROM package"), 2);
    assert_true(wants_dp(t, "DP2"));
    task_free(t);
    /* Version 1 is pruned: its object no version uses is gone, the one
     * version 2 still uses stays. */
    assert_false(obj_exists(f, "alpha\n", 6));
    assert_true(obj_exists(f, "bravo\n", 6));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM pkg_version"), 1);
    /* Version 1's DP history is gone with it: nothing would act on it,
     * and an overdue row would keep the retry timer firing. */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM retry WHERE target GLOB 'CEN00001/1/*'"), 0);
}

/* Removing a package from a DP that stays away ends in failed after
 * max_retries, like an install: no more attempts, no ping-pong between
 * the package task and the DP task, until `retry now`. */
static void test_delete_unreachable_gives_up(void **state)
{
    struct fx *f = *state;
    struct task *t;

    run_free(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    run_free(f, T_DP, "CEN00001", "DP1", 0);
    assert_int_equal(ss_mkdir_p(f->dp2, 0755), 0);
    run_free(f, T_DP, "CEN00001", "DP2", 0);
    assert_int_equal(ss_rm_rf(f->dp2), 0);
    sql(f, "UPDATE package SET state = 'deleting'");
    run_free(f, T_DP, "CEN00001", "DP1", 0);       /* removed there at once */
    for (int i = 0; i < 3; i++) {
        usleep(5000);
        run_free(f, T_DP, "CEN00001", "DP2", 0);
    }
    assert_int_equal(sql_int(f, "SELECT attempts FROM retry WHERE target = 'CEN00001/del/DP2'"), 3);
    char st[16];
    sql_text(f, st, sizeof st, "SELECT state FROM retry WHERE target = 'CEN00001/del/DP2'");
    assert_string_equal(st, "failed");
    usleep(5000);
    t = run(f, T_SCAN, NULL, NULL, 0);
    assert_false(wants_dp(t, "DP2"));
    task_free(t);
    t = run(f, T_DP, "CEN00001", "DP2", 0);
    assert_false(t->deleting);          /* no attempt, so no package task either */
    task_free(t);
    assert_int_equal(sql_int(f, "SELECT attempts FROM retry WHERE target = 'CEN00001/del/DP2'"), 3);
    t = run(f, T_PKG, "CEN00001", NULL, 0);
    assert_false(t->gone);
    assert_int_equal(t->nwants, 0);
    task_free(t);
}

/* What child sites are sent cannot be built (no signing key): reported
 * once, recorded as a "sites" retry, and the task does not fail (a failed
 * task would be run again at once); the scan leaves it until due. */
static void test_sites_failure_backs_off(void **state)
{
    struct fx *f = *state;
    char path[SS_PATH_MAX];
    struct task *t;

    f->dm.policy.first_ms = f->dm.policy.max_ms = 60000;
    add_child_sites(f, 1);
    assert_int_equal(ss_path(path, sizeof path, "%s/keys/site.key", f->root), 0);
    assert_int_equal(unlink(path), 0);
    t = run(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    task_free(t);
    assert_int_equal(sql_int(f, "SELECT attempts FROM retry WHERE scope = 'sites'"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM site_job"), 0);
    t = run(f, T_SCAN, NULL, NULL, 0);
    for (size_t i = 0; i < t->nwants; i++)
        assert_false(t->wants[i].dp[0] == 0 && strcmp(t->wants[i].pkg, "CEN00001") == 0);
    task_free(t);
    write_key(f->root);
    sql(f, "UPDATE retry SET next_ms = 0 WHERE scope = 'sites'");
    run_free(f, T_PKG, "CEN00001", NULL, VERSION_NO);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM site_job WHERE state = 'queued'"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM retry WHERE scope = 'sites'"), 0);
}

/* Q319207: one job per (package, version, child site), however many
 * package tasks and DP retries run; 2339 once per job. */
static void test_jobs_exactly_once(void **state)
{
    struct fx *f = *state;
    char box[SS_PATH_MAX], path[SS_PATH_MAX];

    add_child_sites(f, 3);
    assert_int_equal(ss_path(box, sizeof box, "%s/inboxes/schedule.box", f->root), 0);
    run_free(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    for (int i = 0; i < 20; i++) {
        usleep(3000);
        run_free(f, T_DP, "CEN00001", "DP2", 0);    /* unreachable: retried */
        run_free(f, T_PKG, "CEN00001", NULL, i % 3); /* unchanged source */
        run_free(f, T_SCAN, NULL, NULL, 0);
    }
    assert_int_equal(sql_int(f, "SELECT version FROM package"), 1);
    assert_int_equal(count_suffix(box, ".job"), 3);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM site_job WHERE state = 'queued'"), 3);
    assert_int_equal(count_msgs(f, SM_DIST_TO_SITE), 3);
    assert_int_equal(ss_path(path, sizeof path, "%s/store/out/CEN00001-1.pck", f->root), 0);
    assert_true(access(path, F_OK) == 0);

    /* A new version: three more, once. */
    assert_int_equal(ss_path(path, sizeof path, "%s/new.txt", f->src), 0);
    tu_write(path, "charlie\n");
    run_free(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    run_free(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    assert_int_equal(sql_int(f, "SELECT version FROM package"), 2);
    assert_int_equal(count_suffix(box, ".job"), 6);
    assert_int_equal(count_msgs(f, SM_DIST_TO_SITE), 6);

    /* A child site added later gets the current version only. */
    sql(f, "INSERT INTO site VALUES ('B09', 'file:/nowhere', 'key', 'child', 0)");
    struct task *t = run(f, T_SCAN, NULL, NULL, 0);
    int found = 0;
    for (size_t i = 0; i < t->nwants; i++)
        found |= strcmp(t->wants[i].pkg, "CEN00001") == 0 && t->wants[i].dp[0] == 0;
    assert_true(found);
    task_free(t);
    run_free(f, T_PKG, "CEN00001", NULL, 0);
    assert_int_equal(count_suffix(box, ".job"), 7);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM site_job WHERE site = 'B09'"), 1);
}

/* A killed run: a staged row with its file is handed over at start (and
 * 2339 is not counted twice), a file without a row is removed. */
static void test_recover_staged(void **state)
{
    struct fx *f = *state;
    char box[SS_PATH_MAX], out[SS_PATH_MAX], path[SS_PATH_MAX];

    add_child_sites(f, 1);
    assert_int_equal(ss_path(box, sizeof box, "%s/inboxes/schedule.box", f->root), 0);
    assert_int_equal(ss_path(out, sizeof out, "%s/inboxes/distmgr.box/outgoing", f->root), 0);
    run_free(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    assert_int_equal(count_suffix(box, ".job"), 1);

    /* As if killed after the commit of a staged row, before the move. */
    assert_int_equal(ss_path(path, sizeof path, "%s/CEN-0123456789abcdef0123456789abcdef.job", out), 0);
    tu_write(path, "sitesrv job 1\n");
    sql(f, "INSERT INTO site_job VALUES ('CEN00001', 9, 'B01', 'staged',"
           " 'CEN-0123456789abcdef0123456789abcdef.job', 0)");
    /* ...and a file whose row never committed. */
    assert_int_equal(ss_path(path, sizeof path, "%s/CEN-fedcba9876543210fedcba9876543210.job", out), 0);
    tu_write(path, "sitesrv job 1\n");

    assert_int_equal(dm_recover_jobs(&f->dm), 0);
    assert_int_equal(count_suffix(box, ".job"), 2);
    assert_int_equal(count_suffix(out, ".job"), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM site_job WHERE state = 'staged'"), 0);
    /* Once more (a second kill right after): nothing moves twice. */
    sql(f, "UPDATE site_job SET state = 'staged' WHERE version = 9");
    assert_int_equal(dm_recover_jobs(&f->dm), 0);
    assert_int_equal(count_suffix(box, ".job"), 2);
    assert_int_equal(count_msgs(f, SM_DIST_TO_SITE), 2);
}

/* active -> deleting -> gone: removed from the DPs first (an unreachable
 * one keeps the package until it comes back), then from the database and
 * the store. */
static void test_delete(void **state)
{
    struct fx *f = *state;
    char path[SS_PATH_MAX];
    struct task *t;

    assert_int_equal(ss_mkdir_p(f->dp2, 0755), 0);
    run_free(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    run_free(f, T_DP, "CEN00001", "DP1", 0);
    run_free(f, T_DP, "CEN00001", "DP2", 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM dp_state WHERE state = 'installed'"), 2);

    sql(f, "UPDATE package SET state = 'deleting'");
    assert_int_equal(ss_rm_rf(f->dp2), 0);             /* DP2 away */
    t = run(f, T_PKG, "CEN00001", NULL, 0);
    assert_false(t->gone);
    assert_true(wants_dp(t, "DP1") && wants_dp(t, "DP2"));
    task_free(t);
    run_free(f, T_DP, "CEN00001", "DP1", 0);
    run_free(f, T_DP, "CEN00001", "DP2", 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/CEN00001", f->dp1), 0);
    assert_true(access(path, F_OK) < 0);
    t = run(f, T_PKG, "CEN00001", NULL, 0);
    assert_false(t->gone);                          /* DP2 still holds it */
    task_free(t);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM package"), 1);

    assert_int_equal(ss_mkdir_p(f->dp2, 0755), 0);
    usleep(5000);
    run_free(f, T_DP, "CEN00001", "DP2", 0);
    t = run(f, T_PKG, "CEN00001", NULL, 0);
    assert_true(t->gone);
    task_free(t);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM package"), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM manifest"), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM retry"), 0);
    /* Every object (a.txt, b.txt, big.bin) is gone from the store. */
    assert_false(obj_exists(f, "alpha\n", 6));
    assert_false(obj_exists(f, "bravo\n", 6));
    assert_false(obj_exists(f, f->big, sizeof f->big));
}

/* A symlink in the source: 2302, no version, the DP keeps what it has. */
static void test_bad_source(void **state)
{
    struct fx *f = *state;
    char path[SS_PATH_MAX], s[512];

    run_free(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    run_free(f, T_DP, "CEN00001", "DP1", 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/sub/link", f->src), 0);
    assert_int_equal(symlink("/etc/passwd", path), 0);
    struct task *t = run(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    assert_int_equal(t->outcome, 2);
    task_free(t);
    assert_int_equal(sql_int(f, "SELECT version FROM package"), 1);
    sql_text(f, s, sizeof s, "SELECT last_error FROM package");
    assert_non_null(strstr(s, "sub/link"));
    assert_int_equal(count_msgs(f, SM_DIST_FAILED), 1);
    assert_int_equal(ss_path(path, sizeof path, "%s/CEN00001/a.txt", f->dp1), 0);
    assert_true(tu_file_contains(path, "alpha"));
    /* The administrator's to fix: not retried.  A source that is away is. */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM retry WHERE scope = 'source'"), 0);
    assert_int_equal(ss_rm_rf(f->src), 0);
    t = run(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    assert_int_equal(t->outcome, 2);
    assert_true(wants_dp(t, "DP2"));    /* DPs still served the version there is */
    task_free(t);
    assert_int_equal(sql_int(f, "SELECT attempts FROM retry WHERE scope = 'source'"
                                " AND target = 'CEN00001'"), 1);
    assert_int_equal(count_msgs(f, SM_DIST_FAILED), 2);
    assert_int_equal(sql_int(f, "SELECT version FROM package"), 1);
}

/* Objects a killed or failed walk stored, that no version references,
 * are collected; referenced ones stay. */
static void test_gc(void **state)
{
    struct fx *f = *state;
    static char orphan_big[100000];
    struct store_writer *w;
    unsigned char sha[32];
    char path[SS_PATH_MAX];

    run_free(f, T_PKG, "CEN00001", NULL, VERSION_ASKED);
    /* A small and a loose object no version references, as a killed walk
     * leaves them. */
    assert_int_equal(ss_sha256("orphan\n", 7, sha), 0);
    assert_int_equal(store_writer_open(f->dm.store, &w), 0);
    assert_int_equal(store_put_small(w, sha, "orphan\n", 7), 0);
    assert_int_equal(store_writer_commit(w), 0);
    store_writer_close(w);
    memset(orphan_big, 'o', sizeof orphan_big);
    assert_int_equal(ss_sha256(orphan_big, sizeof orphan_big, sha), 0);
    assert_int_equal(store_object_path(f->dm.store, sha, path, sizeof path), 0);
    tu_write_len(path, orphan_big, sizeof orphan_big);
    assert_true(obj_exists(f, "orphan\n", 7));
    assert_true(obj_exists(f, orphan_big, sizeof orphan_big));

    run_free(f, T_GC, NULL, NULL, 0);
    assert_false(obj_exists(f, "orphan\n", 7));
    assert_false(obj_exists(f, orphan_big, sizeof orphan_big));
    assert_true(obj_exists(f, "alpha\n", 6));
    assert_true(obj_exists(f, f->big, sizeof f->big));
}

int main(void)
{
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_install_and_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_after_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jobs_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_staged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_unreachable_gives_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sites_failure_backs_off, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
