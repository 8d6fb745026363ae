/*
 * test_dpsync.c - unit tests of lib/dpsync.c: installing a package version
 * on a distribution point, removing it, and what a client reading the DP
 * meanwhile sees.
 *
 * Each test builds its manifests and store objects itself, the way the
 * store keeps them: a small object (STORE_SMALL, under 64 KiB) as a row of
 * store/small.db put through a store writer, a larger one as a loose file
 * at store_object_path(sha).  V1 and V2 hold both kinds.  It installs them
 * into a DP root under a fresh temporary directory, then walks the DP and
 * compares it with the manifest both ways: every entry found is in the
 * manifest with the same type, mode, mtime, size and content, and the
 * number found is the manifest's.  A store is damaged by SQL on small.db
 * (its documented table object(sha, data)) or on the loose file.
 *
 * Installs set the previous .old generation aside under a trash name
 * (.PKG.trash-<16 hex>) rather than removing it; dp_sweep removes those.
 * Manifests of more than 64 files are written by several threads: the
 * parallel tests check exact counts and that the first failure among
 * them is reported, with nothing left behind.
 *
 * The atomic-visibility test runs a reader thread that walks the package
 * from a directory descriptor, reading every file, while the main thread
 * installs two alternating versions; every complete walk must be exactly
 * one version.
 */
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>

#include "testutil.h"

#include "dpsync.h"
#include "manifest.h"
#include "record.h"

#define PKG "CEN00001"
#define NS(s) ((int64_t)(s) * 1000000000 + 123456789)

struct fspec {
    const char *path;
    const char *content;        /* NULL for a directory */
    unsigned    mode;           /* permission bits */
    int64_t     mtime_s;
};

#define DIR_(p, mode, t)    { p, NULL, S_IFDIR | (mode), t }
#define FILE_(p, c, mode, t) { p, c, S_IFREG | (mode), t }

struct fx {
    char root[SS_PATH_MAX];
    char dp[SS_PATH_MAX];       /* root/dp */
    char store[SS_PATH_MAX];    /* root/store */
    char pkg[SS_PATH_MAX];      /* root/dp/PKG */
    char pnew[SS_PATH_MAX];     /* root/dp/.PKG.new */
    char pold[SS_PATH_MAX];     /* root/dp/.PKG.old */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    if (f == NULL || tu_mkdtemp(f->root, sizeof f->root, "test_dpsync") < 0 ||
        ss_path(f->dp, sizeof f->dp, "%s/dp", f->root) < 0 ||
        ss_path(f->store, sizeof f->store, "%s/store", f->root) < 0 ||
        ss_path(f->pkg, sizeof f->pkg, "%s/%s", f->dp, PKG) < 0 ||
        ss_path(f->pnew, sizeof f->pnew, "%s/.%s.new", f->dp, PKG) < 0 ||
        ss_path(f->pold, sizeof f->pold, "%s/.%s.old", f->dp, PKG) < 0 ||
        mkdir(f->dp, 0755) < 0 || store_init(f->store) < 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    int r = ss_rm_rf(f->root);

    free(f);
    return r;
}

/* ---- building manifests and store objects ----------------------------- */

/* A writer for the small objects of one fixture, committed by put_end. */
static struct store_writer *put_begin(const char *store)
{
    struct store_writer *w = NULL;

    assert_int_equal(store_writer_open(store, &w), 0);
    assert_non_null(w);
    return w;
}

static void put_end(struct store_writer *w)
{
    assert_int_equal(store_writer_commit(w), 0);
    store_writer_close(w);
}

/* Put data into the store where the store keeps it: a small object into
 * small.db through w, a large one as a loose file. */
static void put_object(const char *store, struct store_writer *w, const unsigned char sha[32],
                       const char *data, size_t len)
{
    char path[SS_PATH_MAX], dir[SS_PATH_MAX];

    if (STORE_SMALL((int64_t)len)) {
        int has = store_writer_has(w, sha, (int64_t)len);
        assert_true(has == 0 || has == 1);
        if (!has)
            assert_int_equal(store_put_small(w, sha, data, (int64_t)len), 0);
        return;
    }
    assert_int_equal(store_object_path(store, sha, path, sizeof path), 0);
    assert_int_equal(ss_strcpy(dir, sizeof dir, path), 0);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(ss_mkdir_p(dir, 0755), 0);
    if (!tu_exists(AT_FDCWD, path))
        tu_write_len(path, data, len);
}

/* One statement on store/small.db with sha bound to ?1 and data (may be
 * NULL: not bound) to ?2; the number of rows it changed. */
static int small_db_exec(const char *store, const char *sql, const unsigned char sha[32],
                         const char *data, size_t len)
{
    char path[SS_PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n;

    assert_int_equal(ss_path(path, sizeof path, "%s/small.db", store), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_bind_blob(st, 1, sha, 32, SQLITE_TRANSIENT), SQLITE_OK);
    if (data != NULL)
        assert_int_equal(sqlite3_bind_blob(st, 2, data, (int)len, SQLITE_TRANSIENT), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    n = sqlite3_changes(db);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return n;
}

/* Remove the object (sha, size) from wherever the store keeps it; 1 if
 * it was there, else 0. */
static int remove_object(const char *store, const unsigned char sha[32], int64_t size)
{
    char obj[SS_PATH_MAX];

    if (STORE_SMALL(size))
        return small_db_exec(store, "DELETE FROM object WHERE sha = ?1", sha, NULL, 0);
    assert_int_equal(store_object_path(store, sha, obj, sizeof obj), 0);
    if (unlink(obj) == 0)
        return 1;
    assert_int_equal(errno, ENOENT);
    return 0;
}

/* Damage the store object of content (of len bytes): remove it, or, with
 * replace, give it replace's bytes (another size) under the same name. */
static void damage_object(const char *store, const char *content, size_t len,
                          const char *replace)
{
    unsigned char sha[32];
    char obj[SS_PATH_MAX];

    assert_int_equal(ss_sha256(content, len, sha), 0);
    assert_int_equal(remove_object(store, sha, (int64_t)len), 1);
    if (STORE_SMALL((int64_t)len)) {
        if (replace != NULL)
            assert_int_equal(small_db_exec(store, "INSERT INTO object(sha, data) VALUES(?1, ?2)",
                                           sha, replace, strlen(replace)), 1);
        return;
    }
    assert_int_equal(store_object_path(store, sha, obj, sizeof obj), 0);
    if (replace != NULL)
        tu_write(obj, replace);
}

/* Remove the store object of content, damaged or not, so that the next
 * build stores it afresh. */
static void drop_object(const char *store, const char *content, size_t len)
{
    unsigned char sha[32];

    assert_int_equal(ss_sha256(content, len, sha), 0);
    remove_object(store, sha, (int64_t)len);
}

static void build(const char *store, const struct fspec *s, size_t n, struct manifest *m)
{
    struct store_writer *w = put_begin(store);

    mf_init(m);
    for (size_t i = 0; i < n; i++) {
        struct mf_entry e;
        memset(&e, 0, sizeof e);
        e.path = (char *)s[i].path;
        e.mode = s[i].mode;
        e.mtime_ns = NS(s[i].mtime_s);
        if (s[i].content != NULL) {
            e.size = (int64_t)strlen(s[i].content);
            assert_int_equal(ss_sha256(s[i].content, (size_t)e.size, e.sha), 0);
            put_object(store, w, e.sha, s[i].content, (size_t)e.size);
        }
        assert_int_equal(mf_add(m, &e), 0);
    }
    put_end(w);
    mf_sort(m);
}

/* ---- comparing a tree with a manifest --------------------------------- */

static size_t check_dir(int dfd, const char *prefix, const struct manifest *m)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    size_t found = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        char rel[SS_PATH_MAX];
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        assert_int_equal(ss_path(rel, sizeof rel, "%s%s%s", prefix, *prefix ? "/" : "",
                                 de->d_name), 0);
        const struct mf_entry *e = mf_find(m, rel);
        if (e == NULL)
            fail_msg("%s is on the DP but not in the manifest", rel);
        assert_int_equal(fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW), 0);
        if ((st.st_mode & S_IFMT) != (e->mode & S_IFMT))
            fail_msg("%s has the wrong type", rel);
        if ((st.st_mode & 07777) != (e->mode & 07777))
            fail_msg("%s has mode %o, want %o", rel, st.st_mode & 07777, e->mode & 07777);
        int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        if (mt != e->mtime_ns)
            fail_msg("%s has mtime %lld, want %lld", rel, (long long)mt,
                     (long long)e->mtime_ns);
        found++;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            assert_true(sub >= 0);
            found += check_dir(sub, rel, m);
            close(sub);
        } else {
            size_t len;
            unsigned char sha[32];
            char *buf = tu_read_at(dfd, de->d_name, &len);
            assert_int_equal((int64_t)len, e->size);
            assert_int_equal(ss_sha256(buf, len, sha), 0);
            if (memcmp(sha, e->sha, 32) != 0)
                fail_msg("%s has the wrong content", rel);
            free(buf);
        }
    }
    closedir(d);
    return found;
}

/* The tree at path is exactly m: every entry found is in m, as m says,
 * and there are as many as m has. */
static void check_tree(const char *path, const struct manifest *m)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    assert_true(fd >= 0);
    assert_int_equal(check_dir(fd, "", m), m->n);
    close(fd);
}

static ino_t ino_of(const char *dir, const char *rel)
{
    char p[SS_PATH_MAX];
    struct stat st;

    assert_int_equal(ss_path(p, sizeof p, "%s/%s", dir, rel), 0);
    assert_int_equal(lstat(p, &st), 0);
    return st.st_ino;
}

/* How many entries of the DP root are trash trees of PKG (".PKG.trash-"
 * and 16 lower-case hex digits); the path of the last one found in first
 * (may be NULL). */
static size_t count_trash(const struct fx *f, char *first, size_t len)
{
    DIR *d = opendir(f->dp);
    struct dirent *de;
    size_t n = 0, plen = strlen("." PKG ".trash-");

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "." PKG ".trash-", plen) != 0 ||
            strlen(de->d_name + plen) != 16 ||
            strspn(de->d_name + plen, "0123456789abcdef") != 16)
            continue;
        if (first != NULL)
            assert_int_equal(ss_path(first, len, "%s/%s", f->dp, de->d_name), 0);
        n++;
    }
    closedir(d);
    return n;
}

static int install(struct fx *f, const struct manifest *m, struct dp_stats *st,
                   char *err, size_t errlen)
{
    return dp_install(f->dp, PKG, m, f->store, NULL, st, err, errlen);
}

/* ---- the versions ---------------------------------------------------- */

/* Contents of more than STORE_SMALL_MAX bytes (loose objects), filled by
 * main() with printable text (the fixtures take strlen). */
static char BIG_A[100000 + 1];     /* big.bin of V1 */
static char BIG_B[70000 + 1];      /* big.bin of V2 */
static char BIG_S[STORE_SMALL_MAX + 1];   /* same.bin, the smallest loose size */

static void fill_text(char *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed | 1;

    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = i % 64 == 63 ? '\n' : (char)('a' + x % 26);
    }
    buf[len] = '\0';
}

static const struct fspec V1[] = {
    DIR_("bin", 0755, 1000),
    FILE_("bin/tool", "#!/bin/sh\necho tool\n", 0755, 1001),
    DIR_("doc", 0555, 1002),                    /* read-only: filled before its mode */
    FILE_("doc/a.txt", "document a\n", 0444, 1003),
    FILE_("doc/b.txt", "document b\n", 0640, 1004),
    FILE_("empty", "", 0600, 1005),
    DIR_("gone", 0700, 1006),
    FILE_("gone/f", "soon removed\n", 0644, 1007),
    FILE_("readme.txt", "version 1\n", 0644, 1008),
    FILE_("a.b", "sorts between a directory and its contents\n", 0644, 1009),
    FILE_("big.bin", BIG_A, 0644, 1010),
    FILE_("same.bin", BIG_S, 0600, 1011),
};

/* readme.txt changed (content), bin/tool changed (mode only), big.bin
 * changed (a loose object of another size), doc/a.txt removed, new.txt
 * added, newdir/ added, gone/ removed; same.bin (loose) unchanged. */
static const struct fspec V2[] = {
    DIR_("bin", 0755, 1000),
    FILE_("bin/tool", "#!/bin/sh\necho tool\n", 0700, 1001),
    DIR_("doc", 0555, 2002),
    FILE_("doc/b.txt", "document b\n", 0640, 1004),
    FILE_("empty", "", 0600, 1005),
    FILE_("readme.txt", "version 2, longer\n", 0644, 2008),
    FILE_("a.b", "sorts between a directory and its contents\n", 0644, 1009),
    FILE_("new.txt", "new in 2\n", 0644, 2010),
    DIR_("newdir", 0750, 2011),
    DIR_("newdir/deep", 0755, 2012),
    FILE_("newdir/deep/x", "deep\n", 0644, 2013),
    FILE_("big.bin", BIG_B, 0644, 2014),
    FILE_("same.bin", BIG_S, 0600, 1011),
};

/* ---- tests ------------------------------------------------------------ */

static void test_first_install(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    struct dp_stats st;
    char err[SS_ERR_MAX] = "";
    struct stat sb;

    build(f->store, V1, SS_ARRAY_LEN(V1), &m);
    assert_int_equal(install(f, &m, &st, err, sizeof err), 0);
    check_tree(f->pkg, &m);
    assert_int_equal(st.copied, 9);             /* 7 small objects, 2 loose */
    assert_int_equal(st.linked, 0);
    assert_int_equal(st.dirs, 3);
    assert_int_equal(st.bytes_copied, m.bytes);
    assert_false(tu_exists(AT_FDCWD, f->pnew));
    assert_false(tu_exists(AT_FDCWD, f->pold));
    assert_int_equal(stat(f->pkg, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0755);
    assert_int_equal(tu_count(f->dp), 1);
    mf_free(&m);
}

static void test_delta_update(void **state)
{
    struct fx *f = *state;
    struct manifest m1, m2;
    struct dp_stats st;
    char err[SS_ERR_MAX] = "";
    static const char *const kept[] = { "doc/b.txt", "empty", "a.b", "same.bin" };
    static const char *const changed[] = { "readme.txt", "bin/tool", "big.bin" };
    ino_t kept_ino[SS_ARRAY_LEN(kept)], changed_ino[SS_ARRAY_LEN(changed)];

    build(f->store, V1, SS_ARRAY_LEN(V1), &m1);
    build(f->store, V2, SS_ARRAY_LEN(V2), &m2);
    assert_int_equal(install(f, &m1, NULL, err, sizeof err), 0);
    for (size_t i = 0; i < SS_ARRAY_LEN(kept); i++)
        kept_ino[i] = ino_of(f->pkg, kept[i]);
    for (size_t i = 0; i < SS_ARRAY_LEN(changed); i++)
        changed_ino[i] = ino_of(f->pkg, changed[i]);

    assert_int_equal(install(f, &m2, &st, err, sizeof err), 0);
    check_tree(f->pkg, &m2);
    assert_int_equal(st.linked, SS_ARRAY_LEN(kept));
    assert_int_equal(st.copied, 5);             /* readme, tool, new.txt, deep/x, big.bin */
    assert_int_equal(st.dirs, 4);
    for (size_t i = 0; i < SS_ARRAY_LEN(kept); i++)
        assert_true(ino_of(f->pkg, kept[i]) == kept_ino[i]);
    for (size_t i = 0; i < SS_ARRAY_LEN(changed); i++)
        assert_true(ino_of(f->pkg, changed[i]) != changed_ino[i]);
    /* The previous generation is whole, including the mode of bin/tool:
     * nothing was changed through a shared inode. */
    check_tree(f->pold, &m1);
    assert_false(tu_exists(AT_FDCWD, f->pnew));

    /* Again with the same version: everything is linked, the v1 tree is
     * set aside as trash (whole, until dp_sweep) and the replaced v2
     * generation is the new .old. */
    char trash[SS_PATH_MAX];
    size_t swept = 99;
    assert_int_equal(install(f, &m2, &st, err, sizeof err), 0);
    assert_int_equal(st.copied, 0);
    assert_int_equal(st.linked, (size_t)m2.files);
    check_tree(f->pkg, &m2);
    check_tree(f->pold, &m2);
    assert_int_equal(count_trash(f, trash, sizeof trash), 1);
    check_tree(trash, &m1);
    assert_int_equal(tu_count(f->dp), 3);
    assert_int_equal(dp_sweep(f->dp, PKG, &swept), 0);
    assert_int_equal(swept, 1);
    assert_int_equal(tu_count(f->dp), 2);
    mf_free(&m1);
    mf_free(&m2);
}

static void test_missing_root(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    char root[SS_PATH_MAX], err[SS_ERR_MAX] = "";

    build(f->store, V1, SS_ARRAY_LEN(V1), &m);
    assert_int_equal(ss_path(root, sizeof root, "%s/nope", f->root), 0);
    assert_int_equal(dp_check(root, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, root));
    err[0] = '\0';
    assert_int_equal(dp_install(root, PKG, &m, f->store, NULL, NULL, err, sizeof err),
                     -ENOENT);
    assert_non_null(strstr(err, "does not exist"));
    assert_false(tu_exists(AT_FDCWD, root));
    assert_int_equal(dp_remove(root, PKG, err, sizeof err), -ENOENT);
    assert_false(tu_exists(AT_FDCWD, root));
    mf_free(&m);
}

/* As root, permissions do not stop us (and chattr is not available here):
 * a DP root that is a regular file stands in for an unusable one. */
static void test_root_unusable(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    char root[SS_PATH_MAX], err[SS_ERR_MAX] = "";
    int want;

    build(f->store, V1, SS_ARRAY_LEN(V1), &m);
    assert_int_equal(ss_path(root, sizeof root, "%s/dp2", f->root), 0);
    if (geteuid() == 0) {
        tu_write(root, "not a directory\n");
        want = -ENOTDIR;
    } else {
        assert_int_equal(mkdir(root, 0555), 0);
        want = -EACCES;
    }
    assert_int_equal(dp_check(root, err, sizeof err), want);
    assert_int_equal(dp_install(root, PKG, &m, f->store, NULL, NULL, err, sizeof err), want);
    assert_non_null(strstr(err, root));
    if (want == -EACCES) {
        assert_int_equal(tu_count(root), 0);
        assert_int_equal(chmod(root, 0755), 0);
    } else {
        tu_assert_content(AT_FDCWD, root, "not a directory\n");
    }
    mf_free(&m);
}

/* A missing or damaged store object fails the install with -EUCLEAN; the
 * visible tree stays as it was and no staging tree is left.  A small
 * object missing from small.db is the same failure, with the same words,
 * as a loose object missing from objects/. */
static void test_bad_store_object(void **state)
{
    static const struct {
        const char *label;
        const char *path;       /* the file of V2 whose object is damaged */
        const char *replace;    /* NULL: remove the object */
        const char *want;
    } cases[] = {
        { "small missing", "new.txt", NULL, "is missing" },
        { "small wrong size", "new.txt", "xx", "has the wrong size" },
        { "loose missing", "big.bin", NULL, "is missing" },
        { "loose wrong size", "big.bin", "xx", "has the wrong size" },
    };
    struct fx *f = *state;
    char first_msg[2][SS_ERR_MAX] = { "", "" };

    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        struct manifest m1, m2;
        char err[SS_ERR_MAX] = "";
        const char *content = NULL;

        for (size_t k = 0; k < SS_ARRAY_LEN(V2); k++)
            if (strcmp(V2[k].path, cases[i].path) == 0)
                content = V2[k].content;
        assert_non_null(content);
        build(f->store, V1, SS_ARRAY_LEN(V1), &m1);
        build(f->store, V2, SS_ARRAY_LEN(V2), &m2);
        assert_int_equal(dp_remove(f->dp, PKG, err, sizeof err), 0);
        assert_int_equal(install(f, &m1, NULL, err, sizeof err), 0);
        damage_object(f->store, content, strlen(content), cases[i].replace);
        assert_int_equal(install(f, &m2, NULL, err, sizeof err), -EUCLEAN);
        if (strstr(err, cases[i].want) == NULL || strstr(err, cases[i].path) == NULL ||
            strncmp(err, "store object ", 13) != 0)
            fail_msg("%s: unexpected message \"%s\"", cases[i].label, err);
        if (cases[i].replace == NULL)
            ss_strcpy(first_msg[STORE_SMALL((int64_t)strlen(content)) ? 0 : 1], SS_ERR_MAX,
                      err);
        check_tree(f->pkg, &m1);
        assert_false(tu_exists(AT_FDCWD, f->pnew));
        assert_int_equal(tu_count(f->dp), 1);
        drop_object(f->store, content, strlen(content));
        mf_free(&m1);
        mf_free(&m2);
    }
    /* Both missing kinds end the same way: "... for PATH is missing". */
    assert_non_null(strstr(first_msg[0], " for new.txt is missing"));
    assert_non_null(strstr(first_msg[1], " for big.bin is missing"));
}

/* A store that lost small.db (a store an older build made has none
 * either): the small objects are missing, which is -EUCLEAN as for any
 * missing object, never the DP's -ENOENT; the visible tree stays. */
static void test_store_without_db(void **state)
{
    static const char *const sidecars[] = { "", "-wal", "-shm", "-journal" };
    struct fx *f = *state;
    struct manifest m1, m2;
    char err[SS_ERR_MAX] = "";

    build(f->store, V1, SS_ARRAY_LEN(V1), &m1);
    build(f->store, V2, SS_ARRAY_LEN(V2), &m2);
    assert_int_equal(install(f, &m1, NULL, err, sizeof err), 0);
    for (size_t i = 0; i < SS_ARRAY_LEN(sidecars); i++) {
        char p[SS_PATH_MAX];
        assert_int_equal(ss_path(p, sizeof p, "%s/small.db%s", f->store, sidecars[i]), 0);
        assert_true(unlink(p) == 0 || errno == ENOENT);
    }
    /* V2's new small files need the store (the unchanged ones are linked). */
    err[0] = '\0';
    assert_int_equal(install(f, &m2, NULL, err, sizeof err), -EUCLEAN);
    assert_non_null(strstr(err, f->store));
    check_tree(f->pkg, &m1);
    assert_false(tu_exists(AT_FDCWD, f->pnew));
    assert_int_equal(tu_count(f->dp), 1);
    mf_free(&m1);
    mf_free(&m2);
}

static void test_remove(void **state)
{
    struct fx *f = *state;
    struct manifest m1, m2;
    char err[SS_ERR_MAX] = "";

    build(f->store, V1, SS_ARRAY_LEN(V1), &m1);
    build(f->store, V2, SS_ARRAY_LEN(V2), &m2);
    assert_int_equal(install(f, &m1, NULL, err, sizeof err), 0);
    assert_int_equal(install(f, &m2, NULL, err, sizeof err), 0);
    assert_int_equal(install(f, &m1, NULL, err, sizeof err), 0);
    assert_true(tu_exists(AT_FDCWD, f->pold));
    assert_int_equal(count_trash(f, NULL, 0), 1);     /* v1 with its 0555 doc/ */
    /* And an interrupted install's leftover, with a read-only directory. */
    char p[SS_PATH_MAX];
    assert_int_equal(mkdir(f->pnew, 0700), 0);
    assert_int_equal(ss_path(p, sizeof p, "%s/ro", f->pnew), 0);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(ss_path(p, sizeof p, "%s/ro/f", f->pnew), 0);
    tu_write(p, "half");
    assert_int_equal(ss_path(p, sizeof p, "%s/ro", f->pnew), 0);
    assert_int_equal(chmod(p, 0500), 0);
    assert_int_equal(dp_remove(f->dp, PKG, err, sizeof err), 0);
    assert_int_equal(tu_count(f->dp), 0);
    /* Nothing to remove is no error. */
    assert_int_equal(dp_remove(f->dp, PKG, err, sizeof err), 0);
    mf_free(&m1);
    mf_free(&m2);
}

/* The debris of a crash during an install: a half-built .PKG.new, with a
 * read-only directory in it, is removed by the next install. */
static void test_leftover_staging(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    char p[SS_PATH_MAX], err[SS_ERR_MAX] = "";

    build(f->store, V1, SS_ARRAY_LEN(V1), &m);
    assert_int_equal(mkdir(f->pnew, 0700), 0);
    assert_int_equal(ss_path(p, sizeof p, "%s/doc", f->pnew), 0);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(ss_path(p, sizeof p, "%s/doc/half", f->pnew), 0);
    tu_write(p, "half written");
    assert_int_equal(ss_path(p, sizeof p, "%s/doc", f->pnew), 0);
    assert_int_equal(chmod(p, 0500), 0);
    assert_int_equal(ss_path(p, sizeof p, "%s/stray", f->pnew), 0);
    tu_write(p, "stray");

    assert_int_equal(install(f, &m, NULL, err, sizeof err), 0);
    assert_false(tu_exists(AT_FDCWD, f->pnew));
    check_tree(f->pkg, &m);
    mf_free(&m);
}

/* An install leaves the previous .old under a trash name instead of
 * removing it; dp_sweep removes every trash tree of the package and
 * nothing else: not the visible tree, not .old, not names that only look
 * like trash or belong to another package. */
static void test_sweep(void **state)
{
    static const char *const decoys[] = {
        ".CEN00001.trash-0123456789abcdeX",       /* not hex */
        ".CEN00001.trash-0123456789abcdef0",      /* too long */
        ".CEN00001.trash-",
        ".CEN000010.trash-0123456789abcdef",      /* another package */
        "CEN00001.trash-0123456789abcdef",        /* not hidden */
        ".CEN00001.old.trash-0123456789abcdef",
    };
    struct fx *f = *state;
    struct manifest m1, m2;
    char err[SS_ERR_MAX] = "", trash[SS_PATH_MAX], oldtrash[SS_PATH_MAX];
    size_t removed = 99;
    ino_t old_ino;

    build(f->store, V1, SS_ARRAY_LEN(V1), &m1);
    build(f->store, V2, SS_ARRAY_LEN(V2), &m2);
    for (size_t i = 0; i < SS_ARRAY_LEN(decoys); i++) {
        char p[SS_PATH_MAX];
        assert_int_equal(ss_path(p, sizeof p, "%s/%s", f->dp, decoys[i]), 0);
        tu_write(p, decoys[i]);
    }
    const size_t nd = SS_ARRAY_LEN(decoys);

    /* Nothing to sweep yet. */
    assert_int_equal(dp_sweep(f->dp, PKG, &removed), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(install(f, &m1, NULL, err, sizeof err), 0);
    assert_int_equal(install(f, &m2, NULL, err, sizeof err), 0);
    assert_int_equal(count_trash(f, NULL, 0), 0);
    old_ino = ino_of(f->pold, ".");

    /* The third install moves .old (v1) to a trash name: the same tree
     * (same inode), whole, read-only doc/ included. */
    assert_int_equal(install(f, &m1, NULL, err, sizeof err), 0);
    assert_int_equal(count_trash(f, trash, sizeof trash), 1);
    assert_true(ino_of(trash, ".") == old_ino);
    check_tree(trash, &m1);
    check_tree(f->pkg, &m1);
    check_tree(f->pold, &m2);
    assert_int_equal(tu_count(f->dp), nd + 3);

    /* Trash accumulates until swept: each name is new. */
    assert_int_equal(install(f, &m2, NULL, err, sizeof err), 0);
    assert_int_equal(ss_strcpy(oldtrash, sizeof oldtrash, trash), 0);
    assert_int_equal(count_trash(f, NULL, 0), 2);
    assert_true(tu_exists(AT_FDCWD, oldtrash));

    assert_int_equal(dp_sweep(f->dp, PKG, &removed), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(count_trash(f, NULL, 0), 0);
    check_tree(f->pkg, &m2);
    check_tree(f->pold, &m1);
    assert_int_equal(tu_count(f->dp), nd + 2);
    for (size_t i = 0; i < nd; i++) {
        char p[SS_PATH_MAX];
        assert_int_equal(ss_path(p, sizeof p, "%s/%s", f->dp, decoys[i]), 0);
        tu_assert_content(AT_FDCWD, p, decoys[i]);
    }
    assert_int_equal(dp_sweep(f->dp, PKG, NULL), 0);

    /* dp_remove removes trash too, and only the package's. */
    assert_int_equal(install(f, &m1, NULL, err, sizeof err), 0);
    assert_int_equal(count_trash(f, NULL, 0), 1);
    assert_int_equal(dp_remove(f->dp, PKG, err, sizeof err), 0);
    assert_int_equal(tu_count(f->dp), nd);

    /* Bad arguments. */
    char missing[SS_PATH_MAX];
    assert_int_equal(ss_path(missing, sizeof missing, "%s/missing", f->root), 0);
    assert_int_equal(dp_sweep(missing, PKG, &removed), -ENOENT);
    assert_int_equal(dp_sweep(f->dp, "../x", &removed), -EINVAL);
    assert_int_equal(dp_sweep("", PKG, &removed), -EINVAL);
    mf_free(&m1);
    mf_free(&m2);
}

/* ---- many files: the crew -------------------------------------------- */

#define MANY 500
#define MANY_DIRS 10

/* MANY files in MANY_DIRS directories; file i's content depends on i and,
 * for the files change_every divides (none when 0), on gen. */
static void build_many(const char *store, int gen, int change_every, struct manifest *m)
{
    struct store_writer *w = put_begin(store);

    mf_init(m);
    for (int d = 0; d < MANY_DIRS; d++) {
        struct mf_entry e;
        char path[64];
        memset(&e, 0, sizeof e);
        assert_int_equal(ss_path(path, sizeof path, "d%02d", d), 0);
        e.path = path;
        e.mode = S_IFDIR | 0755;
        e.mtime_ns = NS(5000 + d);
        assert_int_equal(mf_add(m, &e), 0);
    }
    for (int i = 0; i < MANY; i++) {
        struct mf_entry e;
        char path[64], content[256];
        int g = change_every > 0 && i % change_every == 0 ? gen : 0;
        int len = snprintf(content, sizeof content, "file %d generation %d %.*s\n", i, g,
                           i % 200, "................................................"
                           "................................................................"
                           "................................................................"
                           "................................................................");
        memset(&e, 0, sizeof e);
        assert_int_equal(ss_path(path, sizeof path, "d%02d/f%04d", i % MANY_DIRS, i), 0);
        e.path = path;
        e.mode = S_IFREG | (i % 3 == 0 ? 0755 : 0644);
        e.mtime_ns = NS(6000 + i + g);
        e.size = len;
        assert_int_equal(ss_sha256(content, (size_t)len, e.sha), 0);
        put_object(store, w, e.sha, content, (size_t)len);
        assert_int_equal(mf_add(m, &e), 0);
    }
    put_end(w);
    mf_sort(m);
}

/* Several threads write the files: the tree and the counts are exact. */
static void test_parallel(void **state)
{
    struct fx *f = *state;
    struct manifest m1, m2;
    struct dp_stats st;
    char err[SS_ERR_MAX] = "";

    build_many(f->store, 1, 0, &m1);
    build_many(f->store, 2, 7, &m2);          /* every 7th file changed */
    assert_int_equal(install(f, &m1, &st, err, sizeof err), 0);
    check_tree(f->pkg, &m1);
    assert_int_equal(st.copied, MANY);
    assert_int_equal(st.linked, 0);
    assert_int_equal(st.dirs, MANY_DIRS);
    assert_int_equal(st.bytes_copied, m1.bytes);

    assert_int_equal(install(f, &m2, &st, err, sizeof err), 0);
    check_tree(f->pkg, &m2);
    check_tree(f->pold, &m1);
    const size_t changed = (MANY + 6) / 7;
    assert_int_equal(st.copied, changed);
    assert_int_equal(st.linked, MANY - changed);
    int64_t want = 0;
    for (size_t i = 0; i < m2.n; i++)
        if (S_ISREG(m2.e[i].mode) && mf_find(&m1, m2.e[i].path)->mtime_ns != m2.e[i].mtime_ns)
            want += m2.e[i].size;
    assert_int_equal(st.bytes_copied, want);
    mf_free(&m1);
    mf_free(&m2);
}

/* A store object (a row of small.db) missing among many files copied by
 * several threads: the install fails with -EUCLEAN naming that file (the
 * first failure of several when more are missing), no staging tree is
 * left and the visible tree is untouched. */
static void test_parallel_error(void **state)
{
    static const struct {
        const char *label;
        int missing[5];         /* file numbers whose object is removed; -1 ends */
    } cases[] = {
        { "one in the middle", { 245, -1 } },
        { "late in the manifest", { 469, -1 } },   /* the last changed file of d09 */
        { "several", { 7, 140, 252, 371, -1 } },
    };
    struct fx *f = *state;

    for (size_t c = 0; c < SS_ARRAY_LEN(cases); c++) {
        struct manifest m1, m2;
        char err[SS_ERR_MAX] = "";
        struct dp_stats st;
        int found = 0;

        build_many(f->store, 0, 0, &m1);
        build_many(f->store, 3 + (int)c, 7, &m2);
        assert_int_equal(dp_remove(f->dp, PKG, err, sizeof err), 0);
        assert_int_equal(install(f, &m1, NULL, err, sizeof err), 0);
        for (int k = 0; cases[c].missing[k] >= 0; k++) {
            char path[64];
            int i = cases[c].missing[k];
            assert_int_equal(i % 7, 0);
            assert_int_equal(ss_path(path, sizeof path, "d%02d/f%04d", i % MANY_DIRS, i), 0);
            const struct mf_entry *e = mf_find(&m2, path);
            assert_non_null(e);
            assert_true(STORE_SMALL(e->size));      /* a row of small.db */
            assert_int_equal(remove_object(f->store, e->sha, e->size), 1);
        }
        err[0] = '\0';
        assert_int_equal(install(f, &m2, &st, err, sizeof err), -EUCLEAN);
        for (int k = 0; cases[c].missing[k] >= 0; k++) {
            char path[64];
            int i = cases[c].missing[k];
            assert_int_equal(ss_path(path, sizeof path, "d%02d/f%04d", i % MANY_DIRS, i), 0);
            found += strstr(err, path) != NULL;
        }
        if (found != 1 || strstr(err, "is missing") == NULL)
            fail_msg("%s: unexpected message \"%s\"", cases[c].label, err);
        assert_false(tu_exists(AT_FDCWD, f->pnew));
        check_tree(f->pkg, &m1);
        /* The counts say what was done before the failure, no more. */
        assert_true(st.copied + st.linked < MANY);
        assert_int_equal(tu_count(f->dp), 1);
        mf_free(&m1);
        mf_free(&m2);
    }
}

/* Something that is not a package tree under the package's name is left
 * alone by both install and removal. */
static void test_pkgid_is_a_file(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    char err[SS_ERR_MAX] = "";

    build(f->store, V1, SS_ARRAY_LEN(V1), &m);
    tu_write(f->pkg, "someone's file\n");
    assert_int_equal(install(f, &m, NULL, err, sizeof err), -EEXIST);
    assert_non_null(strstr(err, "not a directory"));
    tu_assert_content(AT_FDCWD, f->pkg, "someone's file\n");
    assert_int_equal(tu_count(f->dp), 1);
    assert_int_equal(dp_remove(f->dp, PKG, err, sizeof err), -ENOTDIR);
    tu_assert_content(AT_FDCWD, f->pkg, "someone's file\n");
    mf_free(&m);
}

static void test_stop(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    char err[SS_ERR_MAX] = "";
    volatile int stop = 1;

    build(f->store, V1, SS_ARRAY_LEN(V1), &m);
    assert_int_equal(dp_install(f->dp, PKG, &m, f->store, &stop, NULL, err, sizeof err),
                     -EINTR);
    assert_int_equal(tu_count(f->dp), 0);
    mf_free(&m);
}

static void test_bad_arguments(void **state)
{
    static const char *const ids[] = { "", ".hidden", "../x", "a/b", "tab\there" };
    struct fx *f = *state;
    struct manifest m;
    char err[SS_ERR_MAX];

    mf_init(&m);
    for (size_t i = 0; i < SS_ARRAY_LEN(ids); i++) {
        assert_int_equal(dp_install(f->dp, ids[i], &m, f->store, NULL, NULL, err, sizeof err),
                         -EINVAL);
        assert_int_equal(dp_remove(f->dp, ids[i], err, sizeof err), -EINVAL);
    }
    assert_int_equal(dp_check("", err, sizeof err), -EINVAL);
    assert_int_equal(tu_count(f->dp), 0);

    /* An unsafe manifest path never writes outside the tree. */
    struct fspec bad[] = { FILE_("../escape", "x", 0644, 1) };
    build(f->store, bad, 1, &m);
    assert_int_equal(install(f, &m, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(tu_count(f->dp), 0);
    char esc[SS_PATH_MAX];
    assert_int_equal(ss_path(esc, sizeof esc, "%s/escape", f->dp), 0);
    assert_false(tu_exists(AT_FDCWD, esc));
    assert_int_equal(ss_path(esc, sizeof esc, "%s/escape", f->root), 0);
    assert_false(tu_exists(AT_FDCWD, esc));
    mf_free(&m);
}

/* An empty manifest installs an empty package directory. */
static void test_empty_manifest(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    char err[SS_ERR_MAX];

    mf_init(&m);
    assert_int_equal(install(f, &m, NULL, err, sizeof err), 0);
    assert_int_equal(tu_count(f->pkg), 0);
    mf_free(&m);
}

static void test_copy_fd(void **state)
{
    struct fx *f = *state;
    char in[SS_PATH_MAX], out[SS_PATH_MAX];
    size_t big = (3u << 20) + 17, len;
    char *data = malloc(big), *got;
    int ifd, ofd, p[2];

    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)(i * 7 + i / 4096);
    assert_int_equal(ss_path(in, sizeof in, "%s/in", f->root), 0);
    assert_int_equal(ss_path(out, sizeof out, "%s/out", f->root), 0);
    tu_write_len(in, data, big);

    /* File to file: copy_file_range. */
    ifd = open(in, O_RDONLY);
    ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(ifd >= 0 && ofd >= 0);
    assert_int_equal(ss_copy_fd(ifd, ofd, (int64_t)big), 0);
    close(ofd);
    got = tu_read(out, &len);
    assert_int_equal(len, big);
    assert_memory_equal(got, data, big);
    free(got);

    /* Asking for more than there is: -ENODATA. */
    assert_int_equal(lseek(ifd, 0, SEEK_SET), 0);
    ofd = open(out, O_WRONLY | O_TRUNC);
    assert_true(ofd >= 0);
    assert_int_equal(ss_copy_fd(ifd, ofd, (int64_t)big + 1), -ENODATA);
    close(ofd);

    /* Into a pipe copy_file_range refuses (EINVAL): read/write. */
    assert_int_equal(lseek(ifd, 0, SEEK_SET), 0);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(ss_copy_fd(ifd, p[1], 1000), 0);
    close(p[1]);
    char buf[2000];
    ssize_t n = read(p[0], buf, sizeof buf);
    assert_int_equal(n, 1000);
    assert_memory_equal(buf, data, 1000);
    close(p[0]);
    close(ifd);
    free(data);
}

static void test_dp_check(void **state)
{
    struct fx *f = *state;
    char file[SS_PATH_MAX], missing[SS_PATH_MAX], err[SS_ERR_MAX];

    assert_int_equal(ss_path(file, sizeof file, "%s/file", f->root), 0);
    assert_int_equal(ss_path(missing, sizeof missing, "%s/missing", f->root), 0);
    tu_write(file, "x");
    const struct { const char *path; int want; } cases[] = {
        { f->dp, 0 },
        { missing, -ENOENT },
        { file, -ENOTDIR },
        { "", -EINVAL },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++)
        assert_int_equal(dp_check(cases[i].path, err, sizeof err), cases[i].want);
    assert_false(tu_exists(AT_FDCWD, missing));
}

/* ---- atomic visibility ------------------------------------------------ */

static const struct fspec VA[] = {
    FILE_("a.txt", "A: a", 0644, 3000),
    FILE_("onlyA.txt", "A: only in A", 0644, 3001),
    FILE_("shared.txt", "in A and B alike", 0644, 3002),   /* linked each time */
    DIR_("sub", 0755, 3003),
    FILE_("sub/s.txt", "A: sub/s", 0644, 3004),
};
static const struct fspec VB[] = {
    FILE_("a.txt", "B: a, longer", 0644, 4000),
    FILE_("onlyB.txt", "B: only in B", 0644, 4001),
    FILE_("shared.txt", "in A and B alike", 0644, 3002),
    DIR_("sub", 0755, 3003),
    FILE_("sub/s.txt", "B: sub/s", 0644, 4004),
    FILE_("sub/t.txt", "B: sub/t", 0644, 4005),
};

#define WALK_MAX 16

struct seen {
    char path[64];
    char content[64];
};

struct reader {
    char pkg[SS_PATH_MAX];
    atomic_int  stop;
    atomic_long walks_started;
    atomic_long installs_started, installs_done;   /* written by the main thread */
    long exact_a, exact_b;      /* complete walks that were one version */
    long mixed;                 /* a whole walk that was neither: the failure */
    long overlapped;            /* walks a removal may have overlapped */
    long overlapped_bad;        /* ...that saw content of two versions */
    long open_failed;           /* the package directory was missing */
    long errors;                /* anything else */
    char first_mixed[512];
};

/* Read the tree under dfd into s[], fd-relative.  Returns 0, or -errno
 * (-ENOENT for a file that vanished). */
static int walk(int dfd, const char *prefix, struct seen *s, size_t *n)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    int r = 0;

    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return -EIO;
    }
    while (r == 0 && (de = readdir(d)) != NULL) {
        char rel[64];
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (ss_path(rel, sizeof rel, "%s%s%s", prefix, *prefix ? "/" : "", de->d_name) < 0) {
            r = -ENAMETOOLONG;
            break;
        }
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            r = -errno;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                r = -errno;
                break;
            }
            r = walk(sub, rel, s, n);
            close(sub);
            continue;
        }
        if (*n == WALK_MAX) {
            r = -E2BIG;
            break;
        }
        int ffd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (ffd < 0) {
            r = -errno;
            break;
        }
        ssize_t got = read(ffd, s[*n].content, sizeof s[*n].content - 1);
        close(ffd);
        if (got < 0) {
            r = -EIO;
            break;
        }
        s[*n].content[got] = '\0';
        ss_strcpy(s[*n].path, sizeof s[*n].path, rel);
        (*n)++;
    }
    closedir(d);
    return r;
}

/* How many of the n entries seen are files of v with v's content. */
static size_t matches(const struct seen *s, size_t n, const struct fspec *v, size_t vn)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < vn; j++)
            if (v[j].content != NULL && strcmp(s[i].path, v[j].path) == 0 &&
                strcmp(s[i].content, v[j].content) == 0) {
                k++;
                break;
            }
    return k;
}

static size_t files_of(const struct fspec *v, size_t vn)
{
    size_t k = 0;

    for (size_t j = 0; j < vn; j++)
        k += v[j].content != NULL;
    return k;
}

static void *reader_run(void *arg)
{
    struct reader *rd = arg;
    const size_t na = SS_ARRAY_LEN(VA), nb = SS_ARRAY_LEN(VB);

    while (!atomic_load(&rd->stop)) {
        struct seen s[WALK_MAX];
        size_t n = 0;

        /* The tree opened below was installed by install number c0 or a
         * later one; a tree is removed only by the dp_sweep that follows
         * the second install after the one that replaced it (it is .old
         * until then, and that install sets it aside as trash).  So
         * unless install c0+2 has started by the end of the walk, no
         * removal can have touched what this walk read. */
        long c0 = atomic_load(&rd->installs_done);
        atomic_fetch_add(&rd->walks_started, 1);
        int fd = open(rd->pkg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            rd->open_failed++;
            continue;
        }
        int r = walk(fd, "", s, &n);
        close(fd);
        int overlapped = atomic_load(&rd->installs_started) >= c0 + 2;

        int is_a = r == 0 && n == files_of(VA, na) && matches(s, n, VA, na) == n;
        int is_b = r == 0 && n == files_of(VB, nb) && matches(s, n, VB, nb) == n;
        if (is_a) {
            rd->exact_a++;
        } else if (is_b) {
            rd->exact_b++;
        } else if (overlapped && (r == 0 || r == -ENOENT)) {
            /* Partial is possible here; content from both is not. */
            rd->overlapped++;
            if (matches(s, n, VA, na) != n && matches(s, n, VB, nb) != n)
                rd->overlapped_bad++;
        } else if (r != 0) {
            rd->errors++;
        } else {
            if (rd->mixed++ == 0) {
                size_t off = 0;
                for (size_t i = 0; i < n && off < sizeof rd->first_mixed; i++)
                    off += (size_t)snprintf(rd->first_mixed + off,
                                            sizeof rd->first_mixed - off, "%s=\"%s\" ",
                                            s[i].path, s[i].content);
            }
        }
    }
    return NULL;
}

static void test_atomic_visibility(void **state)
{
    /* Installs with the reader kept in step, then installs running free,
     * where a walk may also overlap the removal of the generation it
     * reads (counted apart: partial, but never two versions). */
    enum { INSTALLS = 200, FREE = 100 };
    struct fx *f = *state;
    struct manifest ma, mb;
    struct reader *rd = calloc(1, sizeof *rd);
    char err[SS_ERR_MAX] = "";
    pthread_t tid;

    assert_non_null(rd);
    build(f->store, VA, SS_ARRAY_LEN(VA), &ma);
    build(f->store, VB, SS_ARRAY_LEN(VB), &mb);
    assert_int_equal(install(f, &ma, NULL, err, sizeof err), 0);
    atomic_store(&rd->installs_started, 1);
    atomic_store(&rd->installs_done, 1);
    assert_int_equal(ss_strcpy(rd->pkg, sizeof rd->pkg, f->pkg), 0);
    assert_int_equal(pthread_create(&tid, NULL, reader_run, rd), 0);

    for (int i = 0; i < INSTALLS + FREE; i++) {
        struct dp_stats st;
        const struct manifest *m = i % 2 == 0 ? &mb : &ma;
        atomic_fetch_add(&rd->installs_started, 1);
        int r = install(f, m, &st, err, sizeof err);
        /* As distmgr does, once the install is recorded. */
        size_t swept = 0;
        if (r == 0 && dp_sweep(f->dp, PKG, &swept) < 0)
            fail_msg("dp_sweep after install %d failed", i);
        if (r == 0 && swept != (i >= 1 ? 1u : 0u))
            fail_msg("dp_sweep after install %d removed %zu trees", i, swept);
        atomic_fetch_add(&rd->installs_done, 1);
        if (r != 0) {
            atomic_store(&rd->stop, 1);
            pthread_join(tid, NULL);
            fail_msg("install %d: %s", i, err);
        }
        assert_int_equal(st.linked, 1);           /* shared.txt */
        /* Let the reader begin a walk of this version before the next
         * install, so that every install overlaps a walk and the reader
         * completes at least one walk per install, however loaded the
         * machine is: the walk that begins now cannot be overlapped by
         * the removal of its tree, which comes two installs later, after
         * the reader has begun its next walk. */
        if (i >= INSTALLS)
            continue;
        long w = atomic_load(&rd->walks_started);
        while (atomic_load(&rd->walks_started) == w)
            sched_yield();
    }
    atomic_store(&rd->stop, 1);
    assert_int_equal(pthread_join(tid, NULL), 0);

    long complete = rd->exact_a + rd->exact_b;
    print_message("[ info     ] %ld walks: %ld exactly A, %ld exactly B, %ld mixed, "
                  "%ld possibly overlapped by a removal (%ld with two versions), "
                  "%ld missing package, %ld other errors\n",
                  (long)atomic_load(&rd->walks_started), rd->exact_a, rd->exact_b, rd->mixed,
                  rd->overlapped, rd->overlapped_bad, rd->open_failed, rd->errors);
    if (rd->mixed != 0)
        fail_msg("%ld walks saw neither whole version (a mix or a part), the first: %s",
                 rd->mixed, rd->first_mixed);
    assert_int_equal(rd->overlapped_bad, 0);
    assert_int_equal(rd->open_failed, 0);
    assert_int_equal(rd->errors, 0);
    assert_true(complete >= INSTALLS - 1);
    assert_true(rd->exact_a > 0 && rd->exact_b > 0);
    check_tree(f->pkg, (INSTALLS + FREE) % 2 == 0 ? &ma : &mb);
    free(rd);
    mf_free(&ma);
    mf_free(&mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_install, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_unusable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_store_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_without_db, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftover_staging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pkgid_is_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dp_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_atomic_visibility, setup, teardown),
    };

    fill_text(BIG_A, sizeof BIG_A - 1, 1);
    fill_text(BIG_B, sizeof BIG_B - 1, 2);
    fill_text(BIG_S, sizeof BIG_S - 1, 3);
    setenv(SS_NOFSYNC_ENV, "1", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
