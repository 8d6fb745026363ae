/*
 * test_manifest.c - unit tests of lib/manifest.c: path rules, the diff,
 * the content store (small objects as rows of small.db read back with
 * store_get, a writer seeing its own uncommitted rows, rollback on close,
 * two writers storing the same object, the GC of unreferenced rows), the
 * source walk (links and FIFOs refused, hashes reused, identical content
 * stored once, small files only in small.db and large ones only as loose
 * files, a file changing while it is read refused, the crew of readers
 * giving the serial result, a read error naming its file and rolling the
 * small objects back), database rows and record text.
 *
 * The "changed while read" and read error tests are deterministic: this
 * file defines read(2) itself (the library is linked statically into the
 * test, so its calls bind here), passing every call to the system and,
 * once armed for one inode, changing that file (or failing the read with
 * EIO) right after the first read of it returns.  The walk reads files
 * from several threads, so the hook is armed for one named file and fires
 * once whichever thread reads it (compare-and-swap on the action).  It
 * also defines openat64(2), to refuse O_TMPFILE when asked, so that the
 * store's fallback (named temporary files) is tested too.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include "manifest.h"
#include "record.h"
#include "sitedb.h"

/* ---- read(2) with a hook for the changed-while-read tests ---------------- */

enum hook_action { HOOK_NONE, HOOK_APPEND, HOOK_TOUCH, HOOK_TRUNCATE, HOOK_REWRITE, HOOK_EIO };

static struct {
    int    action;              /* enum hook_action; __atomic */
    dev_t  dev;
    ino_t  ino;
    char   path[SS_PATH_MAX];
    int    fired;               /* read by the test after the walk joined its readers */
    int    no_tmpfile;          /* openat64 refuses O_TMPFILE (EOPNOTSUPP) */
    int    tmpfile_asked;       /* ... and counts the attempts (__atomic) */
} hook;

ssize_t read(int fd, void *buf, size_t n)
{
    ssize_t r = syscall(SYS_read, fd, buf, n);
    struct stat st;
    int a = __atomic_load_n(&hook.action, __ATOMIC_ACQUIRE);

    if (a != HOOK_NONE && r > 0 && fstat(fd, &st) == 0 &&
        st.st_dev == hook.dev && st.st_ino == hook.ino &&
        __atomic_compare_exchange_n(&hook.action, &a, HOOK_NONE, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        hook.fired++;
        if (a == HOOK_EIO) {
            errno = EIO;
            return -1;
        } else if (a == HOOK_APPEND) {
            int w = open(hook.path, O_WRONLY | O_APPEND | O_CLOEXEC);
            if (w >= 0) {
                if (syscall(SYS_write, w, "more", 4) != 4)
                    hook.fired = -1000;
                close(w);
            }
        } else if (a == HOOK_TOUCH) {
            struct timespec ts[2] = { { 0, UTIME_OMIT }, { 1000000000, 5 } };
            if (utimensat(AT_FDCWD, hook.path, ts, 0) < 0)
                hook.fired = -1000;
        } else if (a == HOOK_TRUNCATE) {
            if (truncate(hook.path, 1) < 0)
                hook.fired = -1000;
        } else if (a == HOOK_REWRITE) {
            /* Cut the file and extend it back to its size, then put its
             * mtime back: size and mtime are as before, only the ctime
             * (and the bytes) tell.  The file was written a moment ago and
             * the kernel's file clock is coarse, so this repeats until the
             * ctime has moved (one clock tick at most): without that the
             * test would depend on timing. */
            struct timespec ts[2] = { st.st_atim, st.st_mtim };
            struct stat now;
            for (long k = 0;; k++) {
                if (truncate(hook.path, 1) < 0 || truncate(hook.path, st.st_size) < 0 ||
                    stat(hook.path, &now) < 0 || k > 100000000) {
                    hook.fired = -1000;
                    break;
                }
                if (now.st_ctim.tv_sec != st.st_ctim.tv_sec ||
                    now.st_ctim.tv_nsec != st.st_ctim.tv_nsec)
                    break;
            }
            if (utimensat(AT_FDCWD, hook.path, ts, 0) < 0)
                hook.fired = -1000;
        }
    }
    return r;
}

/* openat(2) as the library sees it (_FILE_OFFSET_BITS=64 names it
 * openat64): refuses O_TMPFILE when the test asks, as a file system
 * without it would. */
int openat64(int dfd, const char *path, int flags, ...)
{
    mode_t mode = 0;

    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if ((flags & O_TMPFILE) == O_TMPFILE) {
        __atomic_fetch_add(&hook.tmpfile_asked, 1, __ATOMIC_RELAXED);
        if (__atomic_load_n(&hook.no_tmpfile, __ATOMIC_ACQUIRE)) {
            errno = EOPNOTSUPP;
            return -1;
        }
    }
    return (int)syscall(SYS_openat, dfd, path, flags, mode);
}

static void hook_arm(const char *path, enum hook_action a)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    hook.dev = st.st_dev;
    hook.ino = st.st_ino;
    assert_int_equal(ss_strcpy(hook.path, sizeof hook.path, path), 0);
    hook.fired = 0;
    __atomic_store_n(&hook.action, a, __ATOMIC_RELEASE);
}

/* ---- fixtures --------------------------------------------------------- */

/* A site-like temporary root: src/ (the package source) and store/. */
struct fx {
    char root[SS_PATH_MAX];
    char src[SS_PATH_MAX];
    char store[SS_PATH_MAX];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    if (f == NULL || tu_mkdtemp(f->root, sizeof f->root, "test_manifest") < 0 ||
        ss_path(f->src, sizeof f->src, "%s/src", f->root) < 0 ||
        ss_path(f->store, sizeof f->store, "%s/store", f->root) < 0 ||
        mkdir(f->src, 0755) < 0) {
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

    hook.action = HOOK_NONE;
    hook.no_tmpfile = 0;
    free(f);
    return r;
}

/* src/<rel> */
static const char *sp(struct fx *f, const char *rel)
{
    static char buf[SS_PATH_MAX];
    assert_int_equal(ss_path(buf, sizeof buf, "%s/%s", f->src, rel), 0);
    return buf;
}

static void mkd(struct fx *f, const char *rel)
{
    assert_int_equal(mkdir(sp(f, rel), 0750), 0);
}

static void put(struct fx *f, const char *rel, const char *text)
{
    tu_write(sp(f, rel), text);
}

static void put_len(struct fx *f, const char *rel, const void *data, size_t len)
{
    tu_write_len(sp(f, rel), data, len);
}

static void set_mtime(struct fx *f, const char *rel, time_t sec, long nsec)
{
    struct timespec ts[2] = { { sec, nsec }, { sec, nsec } };
    assert_int_equal(utimensat(AT_FDCWD, sp(f, rel), ts, AT_SYMLINK_NOFOLLOW), 0);
}

/* Loose objects in store/objects/ (two levels), checking each on the
 * way: its name is the SHA-256 of its content, it sits in the right <aa>,
 * and it is not small (a small object is a row of small.db only). */
static size_t count_objects(struct fx *f)
{
    char path[SS_PATH_MAX];
    size_t n = 0;
    DIR *top;
    struct dirent *a, *o;

    assert_int_equal(ss_path(path, sizeof path, "%s/objects", f->store), 0);
    assert_non_null(top = opendir(path));
    while ((a = readdir(top)) != NULL) {
        char sub[SS_PATH_MAX];
        DIR *d;
        if (a->d_name[0] == '.')
            continue;
        assert_int_equal(strlen(a->d_name), 2);
        assert_int_equal(ss_path(sub, sizeof sub, "%s/%s", path, a->d_name), 0);
        assert_non_null(d = opendir(sub));
        while ((o = readdir(d)) != NULL) {
            char obj[SS_PATH_MAX], hex[65];
            unsigned char sum[32];
            size_t len;
            if (o->d_name[0] == '.')
                continue;
            assert_int_equal(ss_path(obj, sizeof obj, "%s/%s", sub, o->d_name), 0);
            char *data = tu_read(obj, &len);
            assert_int_equal(ss_sha256(data, len, sum), 0);
            free(data);
            assert_false(STORE_SMALL(len));
            ss_hex(sum, 32, hex);
            assert_string_equal(o->d_name, hex);
            assert_memory_equal(a->d_name, hex, 2);
            n++;
        }
        closedir(d);
    }
    closedir(top);
    return n;
}

/* Rows of store/small.db (0 without one), checking each: its key is the
 * SHA-256 of its data, which is small. */
static size_t count_small(struct fx *f)
{
    char path[SS_PATH_MAX];
    sqlite3 *db;
    sqlite3_stmt *st;
    size_t n = 0;
    int rc;

    assert_int_equal(ss_path(path, sizeof path, "%s/small.db", f->store), 0);
    if (access(path, F_OK) < 0)
        return 0;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT sha, data FROM object", -1, &st, NULL),
                     SQLITE_OK);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        unsigned char sum[32];
        int len = sqlite3_column_bytes(st, 1);
        const void *data = sqlite3_column_blob(st, 1);
        assert_int_equal(sqlite3_column_bytes(st, 0), 32);
        assert_int_equal(sqlite3_column_type(st, 1), SQLITE_BLOB);
        assert_true(STORE_SMALL(len));
        assert_int_equal(ss_sha256(len > 0 ? data : "", (size_t)len, sum), 0);
        assert_memory_equal(sqlite3_column_blob(st, 0), sum, 32);
        n++;
    }
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Remove the object of e, wherever its size says it lives. */
static void forget_object(struct fx *f, const struct mf_entry *e)
{
    char path[SS_PATH_MAX];
    sqlite3 *db;
    sqlite3_stmt *st;

    if (!STORE_SMALL(e->size)) {
        assert_int_equal(store_remove(f->store, e->sha), 0);
        return;
    }
    assert_int_equal(ss_path(path, sizeof path, "%s/small.db", f->store), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "DELETE FROM object WHERE sha = ?1", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(st, 1, e->sha, 32, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Is (sha, size) stored (store_get: 1, or 0 when -ENOENT)? */
static int obj_stored(struct fx *f, const unsigned char sha[32], int64_t size)
{
    struct store_reader *r;
    char *buf = malloc(STORE_SMALL_MAX);
    int fd = -1, rc;

    assert_non_null(buf);
    assert_int_equal(store_reader_open(f->store, &r), 0);
    rc = store_get(r, sha, size, buf, &fd);
    store_reader_close(r);
    free(buf);
    if (fd >= 0)
        close(fd);
    assert_true(rc == 0 || rc == -ENOENT);
    return rc == 0;
}

static size_t count_tmp(struct fx *f)
{
    char path[SS_PATH_MAX];
    assert_int_equal(ss_path(path, sizeof path, "%s/.tmp", f->store), 0);
    return tu_count(path);
}

/* The object of an entry, read with store_get, holds exactly the source
 * file's bytes, and lives only where its size says: a row of small.db for
 * a small one (no loose file), a loose file for a large one (no row). */
static void assert_object_is(struct fx *f, const struct mf_entry *e, const char *rel)
{
    struct store_reader *r;
    size_t b;
    int fd = -1;
    char *y = tu_read(sp(f, rel), &b);
    char *x = malloc(b + 1);

    assert_non_null(x);
    assert_int_equal(e->size, (int64_t)b);
    assert_int_equal(store_reader_open(f->store, &r), 0);
    assert_int_equal(store_get(r, e->sha, e->size, x, &fd), 0);
    if (STORE_SMALL(e->size)) {
        assert_int_equal(fd, -1);
        assert_int_equal(store_has(f->store, e->sha), 0);
    } else {
        assert_true(fd >= 0);
        size_t got = 0;
        for (;;) {
            ssize_t n = pread(fd, x + got, b + 1 - got, (off_t)got);
            assert_true(n >= 0);
            if (n == 0)
                break;
            got += (size_t)n;
            assert_true(got <= b);
        }
        assert_int_equal(got, b);
        close(fd);
        /* No row under that hash (any small size would say -EUCLEAN). */
        assert_int_equal(store_get(r, e->sha, 0, x, &fd), -ENOENT);
    }
    assert_memory_equal(x, y, b);
    store_reader_close(r);
    free(x);
    free(y);
}

static void sha_of(const char *text, unsigned char sum[32])
{
    assert_int_equal(ss_sha256(text, strlen(text), sum), 0);
}

/* Open descriptors of this process: a walk must leave none behind. */
static size_t count_fds(void)
{
    return tu_count("/proc/self/fd");
}

static int snap(struct fx *f, const struct manifest *prev, struct manifest *out,
                struct mf_snapstat *st, char *err)
{
    return mf_snapshot(f->src, prev, f->store, out, st, NULL, err, SS_ERR_MAX);
}

/* ---- paths ------------------------------------------------------------ */

static void test_path_ok(void **state)
{
    static char longname[SS_NAME_MAX + 2], longpath[SS_PATH_MAX + 1];
    static const struct { const char *label, *path; int want; } cases[] = {
        { "simple",            "a",            1 },
        { "nested",            "a/b/c.txt",    1 },
        { "spaces",            "my dir/a b",   1 },
        { "dot in name",       ".hidden",      1 },
        { "dots in name",      "a/...",        1 },
        { "dotdot prefix",     "..a/b",        1 },
        { "utf-8",             "caf\xc3\xa9",  1 },
        { "latin-1 byte",      "caf\xe9",      1 },
        { "empty",             "",             0 },
        { "absolute",          "/a",           0 },
        { "trailing slash",    "a/",           0 },
        { "double slash",      "a//b",         0 },
        { "dot",               ".",            0 },
        { "dotdot",            "..",           0 },
        { "dotdot inside",     "a/../b",       0 },
        { "dot inside",        "a/./b",        0 },
        { "dotdot last",       "a/..",         0 },
        { "dot first",         "./a",          0 },
        { "slash only",        "/",            0 },
        { "newline",           "a\nb",         0 },
        { "tab",               "a\tb",         0 },
        { "control 0x01",      "a/\x01",       0 },
        { "escape",            "\x1b[31m",     0 },
        { "delete",            "a\x7f",        0 },
    };
    (void)state;

    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        if (mf_path_ok(cases[i].path) != cases[i].want)
            fail_msg("mf_path_ok(%s): want %d", cases[i].label, cases[i].want);
    }
    assert_int_equal(mf_path_ok(NULL), 0);

    /* A component of 255 bytes is fine, 256 is not; 4095 bytes in all is
     * fine, 4096 is not. */
    memset(longname, 'n', SS_NAME_MAX);
    assert_int_equal(mf_path_ok(longname), 1);
    longname[SS_NAME_MAX] = 'n';
    assert_int_equal(mf_path_ok(longname), 0);
    for (size_t i = 0; i < SS_PATH_MAX - 1; i++)
        longpath[i] = i % 2 ? '/' : 'x';
    longpath[SS_PATH_MAX - 2] = 'x';
    assert_int_equal(strlen(longpath), SS_PATH_MAX - 1);
    assert_int_equal(mf_path_ok(longpath), 1);
    longpath[SS_PATH_MAX - 1] = 'x';
    assert_int_equal(mf_path_ok(longpath), 0);
}

/* ---- the in-memory manifest ---------------------------------------------- */

static struct mf_entry ent(const char *path, int dir, int64_t size, int64_t mt,
                           const char *content)
{
    struct mf_entry e;

    memset(&e, 0, sizeof e);
    e.path = (char *)path;
    e.mode = dir ? S_IFDIR | 0755 : S_IFREG | 0644;
    e.size = size;
    e.mtime_ns = mt;
    if (content != NULL)
        sha_of(content, e.sha);
    return e;
}

static void add(struct manifest *m, struct mf_entry e)
{
    assert_int_equal(mf_add(m, &e), 0);
}

static void test_add_sort_find(void **state)
{
    struct manifest m, c;
    (void)state;

    mf_init(&m);
    add(&m, ent("b", 0, 3, 1, "bbb"));
    add(&m, ent("a", 1, 0, 2, NULL));
    add(&m, ent("a/x", 0, 5, 3, "xxxxx"));
    add(&m, ent("a b", 0, 1, 4, "y"));
    assert_int_equal(m.n, 4);
    assert_int_equal(m.files, 3);
    assert_int_equal(m.bytes, 9);
    /* A negative size, or a total past 2^63, is refused. */
    struct mf_entry bad = ent("c", 0, -1, 0, "");
    assert_int_equal(mf_add(&m, &bad), -EINVAL);
    bad.size = INT64_MAX - 8;
    assert_int_equal(mf_add(&m, &bad), -EOVERFLOW);
    assert_int_equal(m.n, 4);
    assert_int_equal(m.bytes, 9);
    mf_sort(&m);
    assert_string_equal(m.e[0].path, "a");
    assert_string_equal(m.e[1].path, "a b");      /* ' ' sorts before '/' */
    assert_string_equal(m.e[2].path, "a/x");
    assert_string_equal(m.e[3].path, "b");
    assert_non_null(mf_find(&m, "a/x"));
    assert_int_equal(mf_find(&m, "a/x")->size, 5);
    assert_null(mf_find(&m, "a/y"));
    assert_null(mf_find(&m, ""));
    assert_null(mf_find(NULL, "a"));

    /* Equality: a copy is equal; any field changed is not. */
    mf_init(&c);
    for (size_t i = 0; i < m.n; i++)
        assert_int_equal(mf_add(&c, &m.e[i]), 0);
    assert_int_equal(mf_equal(&m, &c), 1);
    assert_int_equal(mf_entry_same(&m.e[2], &c.e[2]), 1);
    c.e[2].mtime_ns++;
    assert_int_equal(mf_entry_same(&m.e[2], &c.e[2]), 0);
    assert_int_equal(mf_equal(&m, &c), 0);
    c.e[2].mtime_ns--;
    c.e[2].sha[31] ^= 1;
    assert_int_equal(mf_equal(&m, &c), 0);
    c.e[2].sha[31] ^= 1;
    c.e[2].mode ^= 0100;
    assert_int_equal(mf_equal(&m, &c), 0);
    c.e[2].mode ^= 0100;
    c.e[3].path[0] = 'c';
    assert_int_equal(mf_equal(&m, &c), 0);
    mf_free(&c);
    mf_init(&c);
    assert_int_equal(mf_equal(&m, &c), 0);
    mf_free(&m);
    assert_int_equal(m.n, 0);
    assert_null(m.e);
    assert_int_equal(mf_equal(&m, &c), 1);        /* two empty manifests */
    mf_free(&m);                                  /* twice is harmless */
}

/* ---- diff ------------------------------------------------------------- */

struct seen {
    size_t n;
    char   path[16][16];
    enum mf_change kind[16];
    int    stop_at;          /* return 7 on this call (1-based), 0 never */
};

static int on_change(void *arg, enum mf_change kind,
                     const struct mf_entry *o, const struct mf_entry *c)
{
    struct seen *s = arg;
    const struct mf_entry *e = c ? c : o;

    assert_true(s->n < 16);
    /* The entries passed match the kind. */
    assert_true(kind == MF_ADDED ? o == NULL && c != NULL
                : kind == MF_REMOVED ? o != NULL && c == NULL
                : o != NULL && c != NULL && strcmp(o->path, c->path) == 0);
    assert_int_equal(ss_strcpy(s->path[s->n], sizeof s->path[0], e->path), 0);
    s->kind[s->n] = kind;
    s->n++;
    return s->stop_at != 0 && (int)s->n == s->stop_at ? 7 : 0;
}

static void test_diff(void **state)
{
    static const struct { const char *path; enum mf_change kind; } want[] = {
        { "a",    MF_UNCHANGED },
        { "a/x",  MF_CHANGED },     /* content */
        { "a/y",  MF_CHANGED },     /* mtime only */
        { "a/z",  MF_CHANGED },     /* mode only */
        { "b",    MF_REMOVED },
        { "c",    MF_UNCHANGED },
        { "d",    MF_ADDED },
        { "e",    MF_CHANGED },     /* a file that became a directory */
        { "z",    MF_REMOVED },
    };
    struct manifest old, cur;
    struct mf_diffstat st;
    struct seen s;
    struct mf_entry e;
    (void)state;

    mf_init(&old);
    mf_init(&cur);
    add(&old, ent("a", 1, 0, 1, NULL));
    add(&old, ent("a/x", 0, 3, 1, "xxx"));
    add(&old, ent("a/y", 0, 3, 1, "yyy"));
    add(&old, ent("a/z", 0, 3, 1, "zzz"));
    add(&old, ent("b", 0, 1, 1, "b"));
    add(&old, ent("c", 0, 1, 1, "c"));
    add(&old, ent("e", 0, 1, 1, "e"));
    add(&old, ent("z", 1, 0, 1, NULL));
    add(&cur, ent("a", 1, 0, 1, NULL));
    add(&cur, ent("a/x", 0, 3, 1, "XXX"));
    add(&cur, ent("a/y", 0, 3, 2, "yyy"));
    e = ent("a/z", 0, 3, 1, "zzz");
    e.mode = S_IFREG | 0755;
    add(&cur, e);
    add(&cur, ent("c", 0, 1, 1, "c"));
    add(&cur, ent("d", 0, 1, 1, "d"));
    add(&cur, ent("e", 1, 0, 1, NULL));

    memset(&s, 0, sizeof s);
    assert_int_equal(mf_diff(&old, &cur, on_change, &s, &st), 0);
    assert_int_equal(s.n, SS_ARRAY_LEN(want));
    for (size_t i = 0; i < SS_ARRAY_LEN(want); i++) {
        assert_string_equal(s.path[i], want[i].path);
        if (s.kind[i] != want[i].kind)
            fail_msg("%s: kind %d, want %d", want[i].path, s.kind[i], want[i].kind);
    }
    assert_int_equal(st.unchanged, 2);
    assert_int_equal(st.changed, 4);
    assert_int_equal(st.added, 1);
    assert_int_equal(st.removed, 2);

    /* No callback, no stats: still fine. */
    assert_int_equal(mf_diff(&old, &cur, NULL, NULL, NULL), 0);

    /* old NULL: everything is added. */
    memset(&s, 0, sizeof s);
    assert_int_equal(mf_diff(NULL, &cur, on_change, &s, &st), 0);
    assert_int_equal(s.n, cur.n);
    for (size_t i = 0; i < s.n; i++)
        assert_int_equal(s.kind[i], MF_ADDED);
    assert_int_equal(st.added, cur.n);
    assert_int_equal(st.unchanged + st.changed + st.removed, 0);

    /* Identical: everything unchanged. */
    assert_int_equal(mf_diff(&cur, &cur, NULL, NULL, &st), 0);
    assert_int_equal(st.unchanged, cur.n);
    assert_int_equal(st.added + st.changed + st.removed, 0);

    /* A non-zero return stops the walk and is returned. */
    memset(&s, 0, sizeof s);
    s.stop_at = 3;
    assert_int_equal(mf_diff(&old, &cur, on_change, &s, &st), 7);
    assert_int_equal(s.n, 3);

    mf_free(&old);
    mf_free(&cur);
}

/* ---- the store ----------------------------------------------------------- */

static void test_store(void **state)
{
    struct fx *f = *state;
    unsigned char sha[32];
    char path[SS_PATH_MAX], want[SS_PATH_MAX], hex[65];

    sha_of("content", sha);
    ss_hex(sha, 32, hex);
    assert_int_equal(store_object_path(f->store, sha, path, sizeof path), 0);
    assert_int_equal(ss_path(want, sizeof want, "%s/objects/%.2s/%s", f->store, hex, hex), 0);
    assert_string_equal(path, want);
    assert_int_equal(store_object_path(f->store, sha, want, 20), -ENAMETOOLONG);

    assert_int_equal(store_has(f->store, sha), 0);           /* no store at all */
    assert_int_equal(store_init(f->store), 0);
    assert_int_equal(store_init(f->store), 0);               /* idempotent */
    assert_int_equal(count_tmp(f), 0);
    assert_int_equal(count_small(f), 0);
    /* small.db: WAL, mode 0640 (like the loose objects). */
    {
        struct stat sb;
        assert_int_equal(ss_path(want, sizeof want, "%s/small.db", f->store), 0);
        assert_int_equal(lstat(want, &sb), 0);
        assert_true(S_ISREG(sb.st_mode));
        assert_int_equal(sb.st_mode & 07777, 0640);
        sqlite3 *db;
        sqlite3_stmt *q;
        assert_int_equal(sqlite3_open_v2(want, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
        sqlite3_finalize(q);
        sqlite3_close(db);
    }
    assert_int_equal(store_has(f->store, sha), 0);
    assert_int_equal(store_remove(f->store, sha), 0);        /* ENOENT is success */

    /* store_init made the 256 fan-out directories: 00 to ff, nothing else. */
    assert_int_equal(ss_path(want, sizeof want, "%s/objects", f->store), 0);
    assert_int_equal(tu_count(want), 256);
    for (unsigned i = 0; i < 256; i++) {
        struct stat sb;
        assert_int_equal(ss_path(want, sizeof want, "%s/objects/%02x", f->store, i), 0);
        assert_int_equal(lstat(want, &sb), 0);
        assert_true(S_ISDIR(sb.st_mode));
    }
    /* With "ff" there, store_init takes the others as made (one stat);
     * without it, it makes the missing ones. */
    assert_int_equal(ss_path(want, sizeof want, "%s/objects/3a", f->store), 0);
    assert_int_equal(rmdir(want), 0);
    assert_int_equal(store_init(f->store), 0);
    assert_int_equal(access(want, F_OK), -1);
    assert_int_equal(ss_path(want, sizeof want, "%s/objects/ff", f->store), 0);
    assert_int_equal(rmdir(want), 0);
    assert_int_equal(store_init(f->store), 0);
    assert_int_equal(access(want, F_OK), 0);
    assert_int_equal(ss_path(want, sizeof want, "%s/objects/3a", f->store), 0);
    assert_int_equal(access(want, F_OK), 0);

    /* A loose object is a large one. */
    char *big = calloc(1, STORE_SMALL_MAX);
    assert_non_null(big);
    assert_int_equal(ss_sha256(big, STORE_SMALL_MAX, sha), 0);
    assert_int_equal(store_object_path(f->store, sha, path, sizeof path), 0);
    tu_write_len(path, big, STORE_SMALL_MAX);
    free(big);
    assert_int_equal(store_has(f->store, sha), 1);
    assert_int_equal(count_objects(f), 1);
    assert_int_equal(store_remove(f->store, sha), 0);
    assert_int_equal(store_has(f->store, sha), 0);
    assert_int_equal(count_objects(f), 0);

    /* A name that is not a regular file is no object. */
    assert_int_equal(mkdir(path, 0755), 0);
    assert_true(store_has(f->store, sha) < 0);
}

/* ---- the walk ------------------------------------------------------------ */

static void make_tree(struct fx *f)
{
    mkd(f, "d1");
    mkd(f, "d1/d2");
    mkd(f, "emptydir");
    put(f, "top.txt", "hello");
    put(f, "d1/d2/deep.txt", "deep");
    put(f, "d1/empty.txt", "");
    put(f, "dup1", "same content");
    put(f, "d1/dup2", "same content");
    put(f, "name with spaces", "spaces");
    assert_int_equal(chmod(sp(f, "top.txt"), 0600), 0);
    set_mtime(f, "top.txt", 1700000000, 123456789);
}

static void test_snapshot_tree(void **state)
{
    static const struct { const char *path; int dir; int64_t size; } want[] = {
        { "d1", 1, 0 }, { "d1/d2", 1, 0 }, { "d1/d2/deep.txt", 0, 4 },
        { "d1/dup2", 0, 12 }, { "d1/empty.txt", 0, 0 }, { "dup1", 0, 12 },
        { "emptydir", 1, 0 }, { "name with spaces", 0, 6 }, { "top.txt", 0, 5 },
    };
    struct fx *f = *state;
    struct manifest m;
    struct mf_snapstat st;
    char err[SS_ERR_MAX];
    unsigned char zero[32] = { 0 };

    size_t fds = count_fds();

    make_tree(f);
    assert_int_equal(snap(f, NULL, &m, &st, err), 0);
    assert_int_equal(count_fds(), fds);
    assert_int_equal(m.n, SS_ARRAY_LEN(want));
    for (size_t i = 0; i < m.n; i++) {
        const struct mf_entry *e = &m.e[i];
        struct stat sb;
        assert_string_equal(e->path, want[i].path);
        assert_int_equal(e->size, want[i].size);
        assert_int_equal(lstat(sp(f, e->path), &sb), 0);
        assert_int_equal(e->mode, sb.st_mode);
        assert_int_equal(e->mtime_ns,
                         (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec);
        if (want[i].dir) {
            assert_true(S_ISDIR(e->mode));
            assert_memory_equal(e->sha, zero, 32);
        } else {
            assert_true(S_ISREG(e->mode));
            assert_object_is(f, e, e->path);
        }
    }
    assert_int_equal(mf_find(&m, "top.txt")->mode, S_IFREG | 0600);
    assert_int_equal(mf_find(&m, "d1")->mode, S_IFDIR | 0750);
    assert_int_equal(mf_find(&m, "top.txt")->mtime_ns, 1700000000123456789LL);
    unsigned char hello[32];
    sha_of("hello", hello);
    assert_memory_equal(mf_find(&m, "top.txt")->sha, hello, 32);
    assert_memory_equal(mf_find(&m, "dup1")->sha, mf_find(&m, "d1/dup2")->sha, 32);

    assert_int_equal(m.files, 6);
    assert_int_equal(m.bytes, 4 + 12 + 0 + 12 + 6 + 5);
    assert_int_equal(st.hashed, 6);
    assert_int_equal(st.reused, 0);
    assert_int_equal(st.bytes_hashed, m.bytes);
    /* Five distinct contents ("" included), the duplicate stored once,
     * all small: rows of small.db, no loose file. */
    assert_int_equal(st.stored, 5);
    assert_int_equal(count_small(f), 5);
    assert_int_equal(count_objects(f), 0);
    assert_int_equal(count_tmp(f), 0);

    /* The same tree again without prev: hashed again, nothing new stored,
     * the same manifest. */
    struct manifest again;
    assert_int_equal(snap(f, NULL, &again, &st, err), 0);
    assert_int_equal(mf_equal(&m, &again), 1);
    assert_int_equal(st.hashed, 6);
    assert_int_equal(st.stored, 0);
    assert_int_equal(count_small(f), 5);
    assert_int_equal(count_objects(f), 0);
    assert_int_equal(count_tmp(f), 0);
    mf_free(&again);
    mf_free(&m);
}

static void test_snapshot_empty(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    struct mf_snapstat st;
    char err[SS_ERR_MAX];

    assert_int_equal(snap(f, NULL, &m, &st, err), 0);
    assert_int_equal(m.n, 0);
    assert_int_equal(st.hashed + st.stored + st.reused, 0);
    mf_free(&m);
}

static void test_snapshot_refused(void **state)
{
    static const struct { const char *label, *path, *word; } cases[] = {
        { "link to file",     "d/link",     "symbolic link" },
        { "link to dir",      "d/dirlink",  "symbolic link" },
        { "dangling link",    "d/dangling", "symbolic link" },
        { "fifo",             "d/fifo",     "FIFO" },
        { "control byte",     "d/bad\x01name", "safe" },
    };
    struct fx *f = *state;
    size_t fds = count_fds();

    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        struct manifest m;
        struct mf_snapstat st;
        char err[SS_ERR_MAX] = "";

        assert_int_equal(ss_rm_rf(f->src), 0);
        assert_int_equal(mkdir(f->src, 0755), 0);
        mkd(f, "d");
        put(f, "d/a.txt", "a");
        put(f, "z.txt", "z");
        if (i == 0)
            assert_int_equal(symlink("a.txt", sp(f, cases[i].path)), 0);
        else if (i == 1)
            assert_int_equal(symlink("..", sp(f, cases[i].path)), 0);
        else if (i == 2)
            assert_int_equal(symlink("/nonexistent", sp(f, cases[i].path)), 0);
        else if (i == 3)
            assert_int_equal(mkfifo(sp(f, cases[i].path), 0644), 0);
        else
            put(f, cases[i].path, "x");
        int r = snap(f, NULL, &m, &st, err);
        if (r != -EINVAL)
            fail_msg("%s: %d (%s), want -EINVAL", cases[i].label, r, err);
        const char *shown = i == 4 ? "d/bad?name" : cases[i].path;
        if (strstr(err, shown) == NULL || strstr(err, cases[i].word) == NULL)
            fail_msg("%s: err \"%s\" should name %s and say %s", cases[i].label, err,
                     shown, cases[i].word);
        assert_int_equal(m.n, 0);
        assert_null(m.e);
        assert_int_equal(count_fds(), fds);
    }
}

static void test_snapshot_root(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    char err[SS_ERR_MAX], path[SS_PATH_MAX];

    assert_int_equal(ss_path(path, sizeof path, "%s/missing", f->root), 0);
    assert_int_equal(mf_snapshot(path, NULL, f->store, &m, NULL, NULL, err, sizeof err),
                     -ENOENT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "does not exist"));

    put(f, "file", "x");
    assert_int_equal(mf_snapshot(sp(f, "file"), NULL, f->store, &m, NULL, NULL,
                                 err, sizeof err), -ENOTDIR);
    assert_non_null(strstr(err, "not a directory"));

    if (geteuid() != 0) {
        mkd(f, "locked");
        assert_int_equal(chmod(sp(f, "locked"), 0), 0);
        assert_int_equal(mf_snapshot(sp(f, "locked"), NULL, f->store, &m, NULL, NULL,
                                     err, sizeof err), -EACCES);
        assert_non_null(strstr(err, "permission denied"));
        /* The same below the root names the relative path. */
        assert_int_equal(snap(f, NULL, &m, NULL, err), -EACCES);
        assert_non_null(strstr(err, "locked"));
        assert_int_equal(chmod(sp(f, "locked"), 0755), 0);
    }
}

static void test_snapshot_stop(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    char err[SS_ERR_MAX];
    volatile int stop = 1;

    make_tree(f);
    assert_int_equal(mf_snapshot(f->src, NULL, f->store, &m, NULL, &stop, err, sizeof err),
                     -EINTR);
    assert_int_equal(m.n, 0);
    stop = 0;
    assert_int_equal(mf_snapshot(f->src, NULL, f->store, &m, NULL, &stop, err, sizeof err), 0);
    assert_int_equal(m.n, 9);
    mf_free(&m);
}

static void test_snapshot_reuse(void **state)
{
    struct fx *f = *state;
    struct manifest v1, v2, v3;
    struct mf_snapstat st;
    char err[SS_ERR_MAX];
    size_t big = (1u << 20) + 12345;          /* streams through the buffer */
    char *data = malloc(big);

    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)(i * 7 + i / 1000);
    make_tree(f);
    put_len(f, "big.bin", data, big);
    put_len(f, "big2.bin", data, big - 1);
    set_mtime(f, "d1/d2/deep.txt", 1600000000, 1);
    set_mtime(f, "dup1", 1600000000, 2);
    set_mtime(f, "big.bin", 1600000000, 3);
    set_mtime(f, "big2.bin", 1600000000, 4);
    set_mtime(f, "name with spaces", 1600000000, 5);

    assert_int_equal(snap(f, NULL, &v1, &st, err), 0);
    assert_int_equal(st.hashed, 8);
    assert_int_equal(st.stored, 7);
    assert_int_equal(count_small(f), 5);
    assert_int_equal(count_objects(f), 2);          /* big.bin, big2.bin */

    /* Nothing changed: every file keeps its hash, none is read. */
    assert_int_equal(snap(f, &v1, &v2, &st, err), 0);
    assert_int_equal(mf_equal(&v1, &v2), 1);
    assert_int_equal(st.reused, 8);
    assert_int_equal(st.hashed, 0);
    assert_int_equal(st.bytes_hashed, 0);
    assert_int_equal(st.stored, 0);
    mf_free(&v2);

    /* deep.txt: same size, new content, new mtime -> read again.
     * dup1: same content, new mtime -> read, nothing to store.
     * big.bin: same content, new mtime (large: hashed against the old
     * object, no temporary copy).  big2.bin: same size, one byte changed,
     * new mtime (large: hashed, found different, read again and stored).
     * name with spaces: its object removed from the store -> read and
     * stored again although size and mtime match. */
    put(f, "d1/d2/deep.txt", "DEEP");
    set_mtime(f, "d1/d2/deep.txt", 1600000001, 1);
    set_mtime(f, "dup1", 1600000001, 2);
    set_mtime(f, "big.bin", 1600000001, 3);
    data[100000] ^= 0x55;
    put_len(f, "big2.bin", data, big - 1);
    set_mtime(f, "big2.bin", 1600000001, 4);
    forget_object(f, mf_find(&v1, "name with spaces"));

    assert_int_equal(snap(f, &v1, &v3, &st, err), 0);
    assert_int_equal(st.reused, 3);               /* top.txt, d1/dup2, d1/empty.txt */
    assert_int_equal(st.hashed, 5);               /* big2.bin read twice, counted once */
    assert_int_equal(st.stored, 3);               /* DEEP, big2', spaces */
    assert_int_equal(st.bytes_hashed, 4 + 12 + (int64_t)big + 2 * (int64_t)(big - 1) + 6);
    /* The old deep and big2 objects stay (the caller removes what no
     * version needs); the removed one is back. */
    assert_int_equal(count_small(f), 5 - 1 + 2);    /* DEEP, spaces */
    assert_int_equal(count_objects(f), 2 + 1);      /* big2' */
    assert_int_equal(count_tmp(f), 0);

    struct mf_diffstat ds;
    assert_int_equal(mf_diff(&v1, &v3, NULL, NULL, &ds), 0);
    assert_int_equal(ds.changed, 4);              /* deep, dup1, big, big2 (mtime or sha) */
    assert_int_equal(ds.added + ds.removed, 0);
    assert_memory_not_equal(mf_find(&v1, "d1/d2/deep.txt")->sha,
                            mf_find(&v3, "d1/d2/deep.txt")->sha, 32);
    assert_memory_equal(mf_find(&v1, "dup1")->sha, mf_find(&v3, "dup1")->sha, 32);
    assert_memory_equal(mf_find(&v1, "big.bin")->sha, mf_find(&v3, "big.bin")->sha, 32);
    assert_memory_not_equal(mf_find(&v1, "big2.bin")->sha,
                            mf_find(&v3, "big2.bin")->sha, 32);
    assert_int_equal(mf_find(&v3, "big.bin")->mtime_ns, 1600000001000000003LL);
    assert_object_is(f, mf_find(&v3, "d1/d2/deep.txt"), "d1/d2/deep.txt");
    assert_object_is(f, mf_find(&v3, "big2.bin"), "big2.bin");
    assert_object_is(f, mf_find(&v3, "big.bin"), "big.bin");
    assert_object_is(f, mf_find(&v3, "name with spaces"), "name with spaces");

    mf_free(&v1);
    mf_free(&v3);
    free(data);
}

/* A file changed while it is read refuses the walk with -EAGAIN, names the
 * file, and leaves no temporary object; the next walk succeeds. */
static void test_snapshot_changed_while_read(void **state)
{
    static const struct { const char *label; enum hook_action a; int big; } cases[] = {
        { "append, small", HOOK_APPEND, 0 },
        { "append, large", HOOK_APPEND, 1 },
        { "touch, small",  HOOK_TOUCH, 0 },
        { "touch, large",  HOOK_TOUCH, 1 },
        { "shrink, large", HOOK_TRUNCATE, 1 },
        { "rewrite, small", HOOK_REWRITE, 0 },
        { "rewrite, large", HOOK_REWRITE, 1 },
    };
    struct fx *f = *state;
    size_t big = (3u << 20) + 1;
    char *data = calloc(1, big);

    size_t fds = count_fds();

    assert_non_null(data);
    mkd(f, "d");
    put(f, "d/before", "before");
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        struct manifest m;
        struct mf_snapstat st;
        char err[SS_ERR_MAX] = "";

        snprintf(data, 64, "case %zu", i);
        put_len(f, "d/moving", data, cases[i].big ? big : 1000);
        hook_arm(sp(f, "d/moving"), cases[i].a);
        int r = snap(f, NULL, &m, &st, err);
        if (hook.fired != 1)
            fail_msg("%s: the hook fired %d times", cases[i].label, hook.fired);
        if (r != -EAGAIN)
            fail_msg("%s: %d (%s), want -EAGAIN", cases[i].label, r, err);
        assert_non_null(strstr(err, "d/moving"));
        assert_non_null(strstr(err, "changed while"));
        assert_int_equal(m.n, 0);
        assert_int_equal(count_tmp(f), 0);
        assert_int_equal(count_fds(), fds);

        /* Untouched, it goes through, and its object is the new content. */
        assert_int_equal(snap(f, NULL, &m, &st, err), 0);
        assert_object_is(f, mf_find(&m, "d/moving"), "d/moving");
        mf_free(&m);
        assert_int_equal(unlink(sp(f, "d/moving")), 0);
    }
    free(data);
}

/* Many files in many directories: one walk, bounded by the manifest (and
 * the descriptors of one path of directories).  Two thousand here, to keep
 * the test quick on a busy disk (creating and removing the files costs far
 * more than the walk); ten thousand were walked in under 0.2 s while this
 * was written. */
static void test_snapshot_many(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    struct mf_snapstat st;
    char err[SS_ERR_MAX], rel[64], text[32];

    for (int d = 0; d < 40; d++) {
        snprintf(rel, sizeof rel, "dir%02d", d);
        mkd(f, rel);
        for (int i = 0; i < 50; i++) {
            snprintf(rel, sizeof rel, "dir%02d/f%03d", d, i);
            snprintf(text, sizeof text, "%d", (d * 50 + i) % 50);
            put(f, rel, text);
        }
    }
    assert_int_equal(snap(f, NULL, &m, &st, err), 0);
    assert_int_equal(m.n, 40 + 2000);
    assert_int_equal(m.files, 2000);
    assert_int_equal(st.hashed, 2000);
    assert_int_equal(st.stored, 50);
    for (size_t i = 1; i < m.n; i++)
        assert_true(strcmp(m.e[i - 1].path, m.e[i].path) < 0);
    struct manifest m2;
    assert_int_equal(snap(f, &m, &m2, &st, err), 0);
    assert_int_equal(st.reused, 2000);
    assert_int_equal(mf_equal(&m, &m2), 1);
    mf_free(&m2);
    mf_free(&m);
}

/* A tree of 300 small files and four large ones (more than the read
 * buffer), some sharing content, in nested directories: big enough for
 * the whole crew of readers. */
#define CREW_FILES 300
#define CREW_BIG   4

static const char *const crew_dirs[] = { "a", "a/b", "a/b/c", "d", "e", "e/f" };

static void crew_rel(int i, char *rel, size_t len)
{
    assert_int_equal(ss_fmt(rel, len, "%s/f%03d", crew_dirs[i % SS_ARRAY_LEN(crew_dirs)], i), 0);
}

static void make_crew_tree(struct fx *f, const char *salt)
{
    char rel[64], text[128];
    size_t big = (1u << 20) + 4321;
    char *data = malloc(big + CREW_BIG);

    assert_non_null(data);
    for (size_t i = 0; i < SS_ARRAY_LEN(crew_dirs); i++)
        mkd(f, crew_dirs[i]);
    for (int i = 0; i < CREW_FILES; i++) {
        crew_rel(i, rel, sizeof rel);
        /* Every tenth file has one of three shared contents. */
        if (i % 10 == 0)
            ss_fmt(text, sizeof text, "shared %d %s", i % 3, salt);
        else
            ss_fmt(text, sizeof text, "file %d of the crew tree %s", i, salt);
        put(f, rel, text);
    }
    for (int k = 0; k < CREW_BIG; k++) {
        /* big3 has big0's bytes. */
        for (size_t i = 0; i < big; i++)
            data[i] = (char)(i * 13 + i / 777 + (k == 3 ? 0 : k) + salt[0]);
        ss_fmt(rel, sizeof rel, "e/big%d", k);
        put_len(f, rel, data, big + (k == 3 ? 0 : (size_t)k));
    }
    free(data);
}

/* The manifest of the tree as a serial reference: lstat and ss_sha256 of
 * every entry, listed by the test itself. */
static void crew_reference(struct fx *f, struct manifest *ref)
{
    char rel[64];
    struct stat sb;

    mf_init(ref);
    for (size_t i = 0; i < SS_ARRAY_LEN(crew_dirs) + CREW_FILES + CREW_BIG; i++) {
        struct mf_entry e;
        if (i < SS_ARRAY_LEN(crew_dirs))
            ss_strcpy(rel, sizeof rel, crew_dirs[i]);
        else if (i < SS_ARRAY_LEN(crew_dirs) + CREW_FILES)
            crew_rel((int)(i - SS_ARRAY_LEN(crew_dirs)), rel, sizeof rel);
        else
            ss_fmt(rel, sizeof rel, "e/big%d", (int)(i - SS_ARRAY_LEN(crew_dirs) - CREW_FILES));
        assert_int_equal(lstat(sp(f, rel), &sb), 0);
        memset(&e, 0, sizeof e);
        e.path = rel;
        e.mode = sb.st_mode;
        e.mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        if (S_ISREG(sb.st_mode)) {
            size_t len;
            char *data = tu_read(sp(f, rel), &len);
            e.size = (int64_t)len;
            assert_int_equal(ss_sha256(data, len, e.sha), 0);
            free(data);
        }
        assert_int_equal(mf_add(ref, &e), 0);
    }
    mf_sort(ref);
}

/* Distinct contents among the files of m. */
static size_t distinct_contents(const struct manifest *m)
{
    size_t n = 0;

    for (size_t i = 0; i < m->n; i++) {
        int seen = 0;
        if (!S_ISREG(m->e[i].mode))
            continue;
        for (size_t j = 0; j < i && !seen; j++)
            seen = S_ISREG(m->e[j].mode) && memcmp(m->e[i].sha, m->e[j].sha, 32) == 0;
        n += !seen;
    }
    return n;
}

/* The crew of readers gives exactly the manifest a serial reading gives,
 * stores each content once, counts exactly, and leaves nothing behind. */
static void test_snapshot_crew(void **state)
{
    struct fx *f = *state;
    struct manifest ref, m, again;
    struct mf_snapstat st;
    char err[SS_ERR_MAX];
    size_t fds = count_fds();

    make_crew_tree(f, "x");
    crew_reference(f, &ref);
    assert_int_equal(ref.files, CREW_FILES + CREW_BIG);
    size_t distinct = distinct_contents(&ref);
    /* 270 unique small ones, 3 shared, 3 distinct big ones. */
    assert_int_equal(distinct, 270 + 3 + 3);

    assert_int_equal(snap(f, NULL, &m, &st, err), 0);
    assert_int_equal(count_fds(), fds);
    assert_int_equal(mf_equal(&ref, &m), 1);
    assert_int_equal(m.files, ref.files);
    assert_int_equal(m.bytes, ref.bytes);
    assert_int_equal(st.hashed, CREW_FILES + CREW_BIG);
    assert_int_equal(st.reused, 0);
    assert_int_equal(st.bytes_hashed, ref.bytes);
    /* Two readers storing the same content at once: one names it, the
     * other's copy is dropped, and only the first counts. */
    assert_int_equal(st.stored, distinct);
    assert_int_equal(count_small(f), distinct - 3);
    assert_int_equal(count_objects(f), 3);
    assert_int_equal(count_tmp(f), 0);
    for (size_t i = 0; i < m.n; i++)
        if (S_ISREG(m.e[i].mode))
            assert_object_is(f, &m.e[i], m.e[i].path);

    /* Again with prev: all reused.  Without: all read, nothing new. */
    assert_int_equal(snap(f, &m, &again, &st, err), 0);
    assert_int_equal(mf_equal(&ref, &again), 1);
    assert_int_equal(st.reused, CREW_FILES + CREW_BIG);
    assert_int_equal(st.hashed + st.stored, 0);
    mf_free(&again);
    assert_int_equal(snap(f, NULL, &again, &st, err), 0);
    assert_int_equal(mf_equal(&ref, &again), 1);
    assert_int_equal(st.hashed, CREW_FILES + CREW_BIG);
    assert_int_equal(st.stored, 0);
    assert_int_equal(count_fds(), fds);
    mf_free(&again);
    mf_free(&m);
    mf_free(&ref);
}

/* A read error in one file among hundreds fails the walk naming that
 * file, with its errno, and leaves no temporary file nor object of it;
 * the readers of the other files stop, and all descriptors are closed. */
static void test_snapshot_read_error(void **state)
{
    static const struct { const char *label; size_t size; } cases[] = {
        { "small", 1000 },
        { "large", (2u << 20) + 1 },          /* streams into a temporary object */
    };
    struct fx *f = *state;
    size_t fds = count_fds();

    make_crew_tree(f, "y");
    for (size_t c = 0; c < SS_ARRAY_LEN(cases); c++) {
        struct manifest m;
        struct mf_snapstat st;
        char err[SS_ERR_MAX] = "";
        unsigned char sum[32];
        char *data = malloc(cases[c].size);

        assert_non_null(data);
        for (size_t i = 0; i < cases[c].size; i++)
            data[i] = (char)(i * 31 + c * 7 + 1);
        assert_int_equal(ss_sha256(data, cases[c].size, sum), 0);
        put_len(f, "a/b/victim", data, cases[c].size);
        free(data);

        hook_arm(sp(f, "a/b/victim"), HOOK_EIO);
        int r = snap(f, NULL, &m, &st, err);
        if (hook.fired != 1)
            fail_msg("%s: the hook fired %d times", cases[c].label, hook.fired);
        if (r != -EIO)
            fail_msg("%s: %d (%s), want -EIO", cases[c].label, r, err);
        if (strstr(err, "a/b/victim") == NULL || strstr(err, "read") == NULL)
            fail_msg("%s: err \"%s\" should name a/b/victim and say read", cases[c].label, err);
        assert_int_equal(m.n, 0);
        assert_null(m.e);
        assert_int_equal(count_tmp(f), 0);
        assert_int_equal(obj_stored(f, sum, (int64_t)cases[c].size), 0);
        assert_int_equal(count_fds(), fds);
        /* The first walk's small objects were one transaction, rolled
         * back: none stays.  (Loose objects linked in stay for the GC.) */
        if (c == 0)
            assert_int_equal(count_small(f), 0);

        /* Without the fault it goes through and stores it. */
        assert_int_equal(snap(f, NULL, &m, &st, err), 0);
        assert_int_equal(obj_stored(f, sum, (int64_t)cases[c].size), 1);
        assert_object_is(f, mf_find(&m, "a/b/victim"), "a/b/victim");
        mf_free(&m);
    }
}

/* A store an older build made (fan-out directories made on demand, so
 * most are missing) takes new objects: the move in says ENOENT, the
 * directory is made, the move is tried again.  Both ways of writing an
 * object are tried: O_TMPFILE and linkat, and named temporary files and
 * a rename, used when O_TMPFILE is refused (asked once per walk, then not
 * again). */
static void test_snapshot_old_store(void **state)
{
    static const struct { const char *label; int no_tmpfile; } cases[] = {
        { "O_TMPFILE",       0 },
        { "named temporary", 1 },
    };
    struct fx *f = *state;
    size_t big = (1u << 20) + 777;
    char *data = malloc(big);
    char path[SS_PATH_MAX];

    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)(i * 5 + i / 3000);
    make_tree(f);
    put_len(f, "big.bin", data, big);
    free(data);
    for (size_t c = 0; c < SS_ARRAY_LEN(cases); c++) {
        struct manifest m;
        struct mf_snapstat st;
        char err[SS_ERR_MAX] = "";

        assert_int_equal(ss_rm_rf(f->store), 0);
        assert_int_equal(store_init(f->store), 0);
        for (unsigned i = 0; i < 255; i++) {
            assert_int_equal(ss_path(path, sizeof path, "%s/objects/%02x", f->store, i), 0);
            assert_int_equal(rmdir(path), 0);
        }
        hook.no_tmpfile = cases[c].no_tmpfile;
        hook.tmpfile_asked = 0;
        int r = snap(f, NULL, &m, &st, err);
        if (r != 0)
            fail_msg("%s: %d (%s)", cases[c].label, r, err);
        assert_int_equal(st.hashed, 7);
        assert_int_equal(st.stored, 6);               /* five small contents and big.bin */
        assert_int_equal(count_small(f), 5);
        assert_int_equal(count_objects(f), 1);
        assert_int_equal(count_tmp(f), 0);
        for (size_t i = 0; i < m.n; i++)
            if (S_ISREG(m.e[i].mode))
                assert_object_is(f, &m.e[i], m.e[i].path);
        if (cases[c].no_tmpfile)
            assert_int_equal(hook.tmpfile_asked, 1);
        else
            assert_int_equal(hook.tmpfile_asked, 1);   /* big.bin only */
        mf_free(&m);
        hook.no_tmpfile = 0;
    }
}

/* Fill n bytes with a pattern of seed; return its SHA-256 in sum. */
static char *pattern(size_t n, int seed, unsigned char sum[32])
{
    char *d = malloc(n + 1);

    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = (char)(i * 11 + i / 509 + (size_t)seed * 3);
    assert_int_equal(ss_sha256(d, n, sum), 0);
    return d;
}

/* Small objects (rows) and large ones (loose files) round trip through
 * store_get; a missing one is -ENOENT, one asked with another size
 * -EUCLEAN, either way. */
static void test_store_get(void **state)
{
    static const struct { const char *label; size_t size; } cases[] = {
        { "empty",            0 },
        { "one byte",         1 },
        { "small",            1000 },
        { "largest small",    STORE_SMALL_MAX - 1 },
        { "smallest large",   STORE_SMALL_MAX },
        { "large",            STORE_SMALL_MAX + 4567 },
    };
    struct fx *f = *state;
    struct store_writer *w;
    struct store_reader *r;
    unsigned char sum[SS_ARRAY_LEN(cases)][32], missing[32];
    char *data[SS_ARRAY_LEN(cases)];
    char *buf = malloc(STORE_SMALL_MAX + 8192);
    char path[SS_PATH_MAX];
    int fd;

    assert_non_null(buf);
    assert_int_equal(store_init(f->store), 0);
    assert_int_equal(store_writer_open(f->store, &w), 0);
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        int64_t n = (int64_t)cases[i].size;
        data[i] = pattern(cases[i].size, (int)i, sum[i]);
        assert_int_equal(store_writer_has(w, sum[i], n), 0);
        if (STORE_SMALL(n)) {
            assert_int_equal(store_put_small(w, sum[i], data[i], n), 0);
            assert_int_equal(store_put_small(w, sum[i], data[i], n), 0);   /* ignored */
        } else {
            /* A large object is the caller's loose file; put refuses it. */
            assert_int_equal(store_put_small(w, sum[i], data[i], n), -EINVAL);
            assert_int_equal(store_object_path(f->store, sum[i], path, sizeof path), 0);
            tu_write_len(path, data[i], cases[i].size);
        }
        assert_int_equal(store_writer_has(w, sum[i], n), 1);
    }
    /* A small row asked with another size: not that object. */
    assert_int_equal(store_writer_has(w, sum[2], 999), -EUCLEAN);
    assert_int_equal(store_writer_commit(w), 0);
    store_writer_close(w);
    assert_int_equal(count_small(f), 4);
    assert_int_equal(count_objects(f), 2);

    memset(missing, 0x5a, sizeof missing);
    assert_int_equal(store_reader_open(f->store, &r), 0);
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        int64_t n = (int64_t)cases[i].size;
        fd = 12345;
        if (store_get(r, sum[i], n, buf, &fd) != 0)
            fail_msg("%s: store_get failed", cases[i].label);
        if (STORE_SMALL(n)) {
            assert_int_equal(fd, -1);
        } else {
            assert_true(fd >= 0);
            assert_int_equal(pread(fd, buf, cases[i].size + 1, 0), (ssize_t)cases[i].size);
            close(fd);
        }
        if (cases[i].size > 0)
            assert_memory_equal(buf, data[i], cases[i].size);
        /* Another size: -EUCLEAN (a size one more, or one less, may be
         * of the other kind: then it is simply not there). */
        fd = 12345;
        int rc = store_get(r, sum[i], n + 1, buf, &fd);
        assert_int_equal(fd, -1);
        if (STORE_SMALL(n) == STORE_SMALL(n + 1))
            assert_int_equal(rc, -EUCLEAN);
        else
            assert_int_equal(rc, -ENOENT);
        if (n > 0 && STORE_SMALL(n) == STORE_SMALL(n - 1))
            assert_int_equal(store_get(r, sum[i], n - 1, buf, &fd), -EUCLEAN);
        assert_int_equal(fd, -1);
        /* Missing, of the same kind. */
        fd = 12345;
        assert_int_equal(store_get(r, missing, n, buf, &fd), -ENOENT);
        assert_int_equal(fd, -1);
        free(data[i]);
    }
    assert_int_equal(store_get(r, missing, -1, buf, &fd), -EINVAL);
    store_reader_close(r);
    free(buf);
}

/* A writer sees its own rows before it commits, other connections only
 * after; closing without a commit leaves nothing; a has() takes no write
 * lock; a broken put is never committed. */
/* A writer commits in batches (512 rows): a long walk does not hold
 * small.db's write lock for all of its reading.  Rows of earlier batches
 * are visible to others before the final commit; closing without it rolls
 * back only the open batch. */
static void test_store_writer_batches(void **state)
{
    struct fx *f = *state;
    struct store_writer *w, *w2;
    unsigned char sha[32];
    char text[32];

    assert_int_equal(store_writer_open(f->store, &w), 0);
    for (int i = 0; i < 600; i++) {
        snprintf(text, sizeof text, "batch object %d", i);
        sha_of(text, sha);
        assert_int_equal(store_put_small(w, sha, text, (int64_t)strlen(text)), 0);
    }
    /* Another writer can take the lock now (the first batch is committed,
     * the second is open: it waits for that one, so ask has() only). */
    assert_int_equal(store_writer_open(f->store, &w2), 0);
    sha_of("batch object 0", sha);
    assert_int_equal(store_writer_has(w2, sha, 14), 1);
    sha_of("batch object 599", sha);
    assert_int_equal(store_writer_has(w2, sha, 16), 0);
    store_writer_close(w2);
    store_writer_close(w);                  /* the open batch rolls back */
    assert_int_equal(count_small(f), 512);
}

static void test_store_writer_tx(void **state)
{
    struct fx *f = *state;
    struct store_writer *w, *w2;
    struct store_reader *r;
    unsigned char a[32], b[32];
    char buf[64];
    int fd;

    sha_of("object a", a);
    sha_of("object b", b);
    /* No store_init: the writer and the reader make small.db themselves. */
    assert_int_equal(store_writer_open(f->store, &w), 0);
    assert_int_equal(store_reader_open(f->store, &r), 0);
    assert_int_equal(store_put_small(w, a, "object a", 8), 0);
    assert_int_equal(store_writer_has(w, a, 8), 1);           /* its own, uncommitted */
    assert_int_equal(store_get(r, a, 8, buf, &fd), -ENOENT);  /* not yet for others */
    /* Another writer asking has() is not blocked by w's write lock. */
    assert_int_equal(store_writer_open(f->store, &w2), 0);
    assert_int_equal(store_writer_has(w2, a, 8), 0);
    store_writer_close(w2);
    /* Closed without a commit: rolled back. */
    store_writer_close(w);
    assert_int_equal(store_get(r, a, 8, buf, &fd), -ENOENT);
    assert_int_equal(count_small(f), 0);

    /* Committed: visible to the reader opened before, and durable rows;
     * the writer goes on with a new transaction after a commit. */
    assert_int_equal(store_writer_open(f->store, &w), 0);
    assert_int_equal(store_writer_commit(w), 0);              /* nothing to commit */
    assert_int_equal(store_put_small(w, a, "object a", 8), 0);
    assert_int_equal(store_writer_commit(w), 0);
    assert_int_equal(store_get(r, a, 8, buf, &fd), 0);
    assert_memory_equal(buf, "object a", 8);
    assert_int_equal(store_put_small(w, b, "object b", 8), 0);
    store_writer_close(w);                                     /* b rolled back */
    assert_int_equal(store_get(r, b, 8, buf, &fd), -ENOENT);
    assert_int_equal(count_small(f), 1);
    store_reader_close(r);
}

struct put_arg {
    const char    *store;
    unsigned char  sha[32];
    const char    *data;
    int            put, commit;     /* results */
};

static void *put_thread(void *p)
{
    struct put_arg *a = p;
    struct store_writer *w;

    a->put = a->commit = -1;
    if (store_writer_open(a->store, &w) < 0)
        return NULL;
    a->put = store_put_small(w, a->sha, a->data, (int64_t)strlen(a->data));
    a->commit = store_writer_commit(w);
    store_writer_close(w);
    return NULL;
}

/* Two writers storing the same object: the second waits for the first's
 * write lock (or runs after it), its INSERT OR IGNORE finds the row, and
 * both succeed with one row stored.  The result does not depend on when
 * the second one starts. */
static void test_store_two_writers(void **state)
{
    struct fx *f = *state;
    struct store_writer *w;
    struct put_arg a = { .store = f->store, .data = "same bytes" };
    pthread_t t;

    sha_of("same bytes", a.sha);
    assert_int_equal(store_writer_open(f->store, &w), 0);
    assert_int_equal(store_put_small(w, a.sha, "same bytes", 10), 0);   /* holds the lock */
    assert_int_equal(pthread_create(&t, NULL, put_thread, &a), 0);
    usleep(50 * 1000);          /* let it reach the lock (not required) */
    assert_int_equal(store_writer_commit(w), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(a.put, 0);
    assert_int_equal(a.commit, 0);
    assert_int_equal(store_writer_has(w, a.sha, 10), 1);
    store_writer_close(w);
    assert_int_equal(count_small(f), 1);
}

/* store_gc_small removes the rows no manifest row references and keeps
 * the others; a site database that cannot be attached removes nothing. */
static void test_store_gc_small(void **state)
{
    struct fx *f = *state;
    struct store_writer *w;
    struct manifest m;
    struct mf_entry e;
    char err[SS_ERR_MAX], dbpath[SS_PATH_MAX], missing[SS_PATH_MAX];
    unsigned char sha[4][32];
    static const char *const text[4] = { "kept 0", "kept 1", "gone 2", "gone 3" };
    sqlite3 *db;
    size_t removed = 99;

    assert_int_equal(store_writer_open(f->store, &w), 0);
    for (int i = 0; i < 4; i++) {
        sha_of(text[i], sha[i]);
        assert_int_equal(store_put_small(w, sha[i], text[i], 6), 0);
    }
    assert_int_equal(store_writer_commit(w), 0);

    /* A site database in a directory whose name needs URI escaping. */
    assert_int_equal(ss_path(dbpath, sizeof dbpath, "%s/db %%?#", f->root), 0);
    assert_int_equal(mkdir(dbpath, 0755), 0);
    assert_int_equal(ss_path(dbpath, sizeof dbpath, "%s/db %%?#/site.db", f->root), 0);
    assert_int_equal(sitedb_open(dbpath, 0, &db, err, sizeof err), 0);
    assert_int_equal(sitedb_exec(db,
        "INSERT INTO package (id, name, source, origin, all_dps, created_ms, updated_ms)"
        " VALUES ('CEN00001', 'p', '/src', 'CEN', 1, 0, 0);"
        "INSERT INTO pkg_version (package, version, files, bytes, created_ms)"
        " VALUES ('CEN00001', 1, 2, 12, 0);"
        "INSERT INTO pkg_version (package, version, files, bytes, created_ms)"
        " VALUES ('CEN00001', 2, 1, 6, 0);"), 0);
    mf_init(&m);
    memset(&e, 0, sizeof e);
    e.path = "d";
    e.mode = S_IFDIR | 0755;                  /* a NULL sha256 references nothing */
    assert_int_equal(mf_add(&m, &e), 0);
    e.path = "d/a";
    e.mode = S_IFREG | 0644;
    e.size = 6;
    memcpy(e.sha, sha[0], 32);
    assert_int_equal(mf_add(&m, &e), 0);
    e.path = "d/b";
    memcpy(e.sha, sha[1], 32);
    assert_int_equal(mf_add(&m, &e), 0);
    assert_int_equal(sitedb_begin(db), 0);
    assert_int_equal(mf_db_save(db, "CEN00001", 1, &m), 0);
    assert_int_equal(mf_db_save(db, "CEN00001", 2, &m), 0);   /* two references to each */
    assert_int_equal(sitedb_commit(db), 0);
    mf_free(&m);

    /* A missing site database is an error, never "nothing referenced". */
    assert_int_equal(ss_path(missing, sizeof missing, "%s/nodb/site.db", f->root), 0);
    assert_true(store_gc_small(f->store, missing, &removed) < 0);
    assert_int_equal(removed, 0);
    assert_int_equal(count_small(f), 4);

    assert_int_equal(store_gc_small(f->store, dbpath, &removed), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(count_small(f), 2);
    assert_int_equal(store_writer_has(w, sha[0], 6), 1);
    assert_int_equal(store_writer_has(w, sha[1], 6), 1);
    assert_int_equal(store_writer_has(w, sha[2], 6), 0);
    assert_int_equal(store_writer_has(w, sha[3], 6), 0);
    assert_int_equal(store_gc_small(f->store, dbpath, NULL), 0);
    assert_int_equal(count_small(f), 2);

    /* The package gone (cascade), its objects go at the next GC. */
    assert_int_equal(sitedb_exec(db, "DELETE FROM package WHERE id = 'CEN00001'"), 0);
    assert_int_equal(store_gc_small(f->store, dbpath, &removed), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(count_small(f), 0);
    sitedb_close(db);
    store_writer_close(w);
}

/* A tree of small and large files, sizes on both sides of the limit:
 * small ones only as rows of small.db (no inode), large ones only as
 * loose files; the next walk with prev finds both kinds stored. */
static void test_snapshot_small_large(void **state)
{
    static const struct { const char *path; size_t size; int small; } files[] = {
        { "s/empty",   0,                       1 },
        { "s/tiny",    100,                     1 },
        { "s/edge",    STORE_SMALL_MAX - 1,     1 },
        { "l/edge",    STORE_SMALL_MAX,         0 },
        { "l/big",     3 * STORE_SMALL_MAX + 1, 0 },
        { "l/huge",    (1u << 20) + 99,         0 },     /* streams through the buffer */
    };
    struct fx *f = *state;
    struct manifest m, again;
    struct mf_snapstat st;
    char err[SS_ERR_MAX];
    unsigned char sum[32];

    mkd(f, "s");
    mkd(f, "l");
    for (size_t i = 0; i < SS_ARRAY_LEN(files); i++) {
        char *d = pattern(files[i].size, (int)i + 40, sum);
        put_len(f, files[i].path, d, files[i].size);
        free(d);
    }
    assert_int_equal(snap(f, NULL, &m, &st, err), 0);
    assert_int_equal(st.hashed, SS_ARRAY_LEN(files));
    assert_int_equal(st.stored, SS_ARRAY_LEN(files));
    assert_int_equal(count_small(f), 3);
    assert_int_equal(count_objects(f), 3);
    assert_int_equal(count_tmp(f), 0);
    for (size_t i = 0; i < SS_ARRAY_LEN(files); i++) {
        const struct mf_entry *e = mf_find(&m, files[i].path);
        assert_non_null(e);
        assert_int_equal(STORE_SMALL(e->size), files[i].small);
        assert_object_is(f, e, files[i].path);
    }
    assert_int_equal(snap(f, &m, &again, &st, err), 0);
    assert_int_equal(st.reused, SS_ARRAY_LEN(files));
    assert_int_equal(st.hashed + st.stored, 0);
    assert_int_equal(mf_equal(&m, &again), 1);
    mf_free(&again);
    mf_free(&m);
}

/* ---- database ------------------------------------------------------------ */

static long long qint(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    long long v;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_db_roundtrip(void **state)
{
    struct fx *f = *state;
    struct manifest m, back;
    char err[SS_ERR_MAX], path[SS_PATH_MAX];
    sqlite3 *db;

    make_tree(f);
    set_mtime(f, "dup1", -5, 7);                /* before the epoch */
    assert_int_equal(snap(f, NULL, &m, NULL, err), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/site.db", f->root), 0);
    assert_int_equal(sitedb_open(path, 0, &db, err, sizeof err), 0);
    assert_int_equal(sitedb_exec(db,
        "INSERT INTO package (id, name, source, origin, all_dps, created_ms, updated_ms)"
        " VALUES ('CEN00001', 'p', '/src', 'CEN', 1, 0, 0);"
        "INSERT INTO pkg_version (package, version, files, bytes, created_ms)"
        " VALUES ('CEN00001', 1, 6, 39, 0);"), 0);
    assert_int_equal(sitedb_begin(db), 0);
    assert_int_equal(mf_db_save(db, "CEN00001", 1, &m), 0);
    assert_int_equal(sitedb_commit(db), 0);

    assert_int_equal(qint(db, "SELECT count(*) FROM manifest"), (long long)m.n);
    assert_int_equal(qint(db, "SELECT count(*) FROM manifest WHERE sha256 IS NULL"), 3);
    assert_int_equal(qint(db, "SELECT count(*) FROM manifest"
                              " WHERE typeof(sha256) = 'blob' AND length(sha256) = 32"), 6);
    assert_int_equal(qint(db, "SELECT mode FROM manifest WHERE path = 'top.txt'"),
                     S_IFREG | 0600);

    assert_int_equal(mf_db_load(db, "CEN00001", 1, &back), 0);
    assert_int_equal(mf_equal(&m, &back), 1);
    assert_int_equal(back.files, m.files);
    assert_int_equal(back.bytes, m.bytes);
    assert_int_equal(mf_find(&back, "dup1")->mtime_ns, -5LL * 1000000000 + 7);
    mf_free(&back);

    /* Another version: empty. */
    assert_int_equal(mf_db_load(db, "CEN00001", 2, &back), 0);
    assert_int_equal(back.n, 0);
    mf_free(&back);

    /* Without its pkg_version row the foreign key refuses the rows. */
    assert_int_equal(sitedb_begin(db), 0);
    assert_true(mf_db_save(db, "CEN00001", 9, &m) < 0);
    assert_int_equal(sitedb_rollback(db), 0);

    /* A row no manifest could hold is refused on load. */
    assert_int_equal(sitedb_exec(db, "UPDATE manifest SET path = 'a/../b'"
                                     " WHERE path = 'dup1'"), 0);
    assert_int_equal(mf_db_load(db, "CEN00001", 1, &back), -EBADMSG);
    assert_int_equal(back.n, 0);
    assert_int_equal(sitedb_exec(db, "UPDATE manifest SET path = 'dup1', sha256 = x'00'"
                                     " WHERE path = 'a/../b'"), 0);
    assert_int_equal(mf_db_load(db, "CEN00001", 1, &back), -EBADMSG);

    /* Cascade: deleting the package removes its manifest. */
    assert_int_equal(sitedb_exec(db, "DELETE FROM package WHERE id = 'CEN00001'"), 0);
    assert_int_equal(qint(db, "SELECT count(*) FROM manifest"), 0);
    sitedb_close(db);
    mf_free(&m);
}

/* ---- record text ------------------------------------------------------- */

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* Build a record of the given name=value fields, parse it, and read the
 * manifest: mf_from_record's result.  r and buf are the caller's. */
static int from_fields(const char *const *fv, size_t n, struct manifest *m,
                       char *err, struct sbuf *b, struct rec *r)
{
    char perr[SS_ERR_MAX];

    ss_sbuf_init(b);
    assert_int_equal(rec_begin(b, "manifest", 1), 0);
    assert_int_equal(rec_add(b, "package", "CEN00001"), 0);
    for (size_t i = 0; i + 1 < n; i += 2) {
        if (strcmp(fv[i + 1], "NUL") == 0)
            assert_int_equal(rec_addn(b, fv[i], "755 0 a\0b", 9), 0);
        else
            assert_int_equal(rec_add(b, fv[i], fv[i + 1]), 0);
    }
    assert_int_equal(rec_end(b), 0);
    assert_int_equal(rec_parse(r, b->data, b->len, &rec_default_limits, perr, sizeof perr), 0);
    return mf_from_record(r, m, err, SS_ERR_MAX);
}

static void test_record_roundtrip(void **state)
{
    struct fx *f = *state;
    struct manifest m, back;
    struct sbuf b;
    struct rec r;
    char err[SS_ERR_MAX];
    struct mf_entry e;

    make_tree(f);
    assert_int_equal(snap(f, NULL, &m, NULL, err), 0);
    /* Edge values the walk did not produce. */
    e = ent("zz", 0, INT64_MAX - m.bytes, -1, "x");
    e.mode = S_IFREG | 07777;
    add(&m, e);
    e = ent("zz dir", 1, 0, INT64_MIN + 1, NULL);
    e.mode = S_IFDIR;
    add(&m, e);
    add(&m, ent("zz dir/ x ", 0, 0, 0, ""));
    mf_sort(&m);

    ss_sbuf_init(&b);
    assert_int_equal(rec_begin(&b, "manifest", 1), 0);
    assert_int_equal(mf_to_record(&m, &b), 0);
    assert_int_equal(rec_end(&b), 0);
    assert_non_null(strstr(b.data, "\nfile=600 5 1700000000123456789 "));
    assert_non_null(strstr(b.data, "\ndir=750 "));
    assert_non_null(strstr(b.data, "\nfile=7777 9223372036854775768 -1 "));
    assert_non_null(strstr(b.data, "\ndir=0 -9223372036854775807 zz dir\n"));
    assert_int_equal(rec_parse(&r, b.data, b.len, &rec_default_limits, err, sizeof err), 0);
    if (mf_from_record(&r, &back, err, sizeof err) != 0)
        fail_msg("mf_from_record: %s", err);
    assert_int_equal(mf_equal(&m, &back), 1);
    assert_int_equal(back.files, m.files);
    assert_int_equal(back.bytes, m.bytes);
    rec_free(&r);
    ss_sbuf_free(&b);
    mf_free(&back);
    mf_free(&m);

    /* Other fields are ignored; an empty manifest is fine. */
    const char *none[] = { "name", "x" };
    assert_int_equal(from_fields(none, 2, &back, err, &b, &r), 0);
    assert_int_equal(back.n, 0);
    rec_free(&r);
    ss_sbuf_free(&b);
    mf_free(&back);

    /* Out of order but parents first is accepted and sorted. */
    const char *unsorted[] = { "dir", "755 1 b", "file", "644 1 2 " H64 " b/x",
                               "dir", "755 1 a" };
    assert_int_equal(from_fields(unsorted, 6, &back, err, &b, &r), 0);
    assert_int_equal(back.n, 3);
    assert_string_equal(back.e[0].path, "a");
    assert_string_equal(back.e[2].path, "b/x");
    assert_int_equal(back.e[2].sha[0], 0x01);
    rec_free(&r);
    ss_sbuf_free(&b);
    mf_free(&back);
}

static void test_record_refused(void **state)
{
    static const struct { const char *label; const char *fv[8]; } cases[] = {
        { "upper-case hex",   { "file", "644 1 2 " "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef" " a" } },
        { "short hex",        { "file", "644 1 2 " "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde" " a" } },
        { "long hex",         { "file", "644 1 2 " H64 "0 a" } },
        { "no path",          { "file", "644 1 2 " H64 } },
        { "empty path",       { "file", "644 1 2 " H64 " " } },
        { "dotdot",           { "dir", "755 0 .." } },
        { "dotdot inside",    { "dir", "755 0 a", "file", "644 1 2 " H64 " a/../b" } },
        { "absolute",         { "dir", "755 0 /a" } },
        { "trailing slash",   { "dir", "755 0 a/" } },
        { "control byte",     { "dir", "755 0 a\001" } },
        { "NUL byte",         { "dir", "NUL" } },
        { "duplicate dir",    { "dir", "755 0 a", "dir", "755 0 a" } },
        { "duplicate file",   { "file", "644 1 2 " H64 " x", "file", "644 1 2 " H64 " x" } },
        { "file and dir",     { "dir", "755 0 x", "file", "644 1 2 " H64 " x" } },
        { "before parent",    { "file", "644 1 2 " H64 " a/x", "dir", "755 0 a" } },
        { "missing parent",   { "dir", "755 0 a", "file", "644 1 2 " H64 " b/x" } },
        { "parent is a file", { "file", "644 1 2 " H64 " a", "file", "644 1 2 " H64 " a/x" } },
        { "double space",     { "file", "644  1 2 " H64 " a" } },
        { "leading space",    { "file", " 644 1 2 " H64 " a" } },
        { "tab separator",    { "file", "644\t1 2 " H64 " a" } },
        { "mode leading 0",   { "file", "0644 1 2 " H64 " a" } },
        { "mode not octal",   { "file", "648 1 2 " H64 " a" } },
        { "mode too large",   { "file", "10000 1 2 " H64 " a" } },
        { "mode missing",     { "dir", " 1 a" } },
        { "size negative",    { "file", "644 -1 2 " H64 " a" } },
        { "size plus",        { "file", "644 +1 2 " H64 " a" } },
        { "size leading 0",   { "file", "644 01 2 " H64 " a" } },
        { "size overflow",    { "file", "644 9223372036854775808 2 " H64 " a" } },
        { "size huge",        { "file", "644 99999999999999999999 2 " H64 " a" } },
        { "sizes overflow",   { "file", "644 9223372036854775807 2 " H64 " a",
                                "file", "644 1 2 " H64 " b" } },
        { "mtime letters",    { "file", "644 1 2x " H64 " a" } },
        { "mtime minus zero", { "dir", "755 -0 a" } },
        { "mtime only minus", { "dir", "755 - a" } },
        { "dir without mtime",{ "dir", "755" } },
        { "empty value",      { "file", "" } },
    };
    (void)state;

    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        struct manifest m;
        struct sbuf b;
        struct rec r;
        char err[SS_ERR_MAX] = "";
        size_t n = 0;

        while (n < 8 && cases[i].fv[n] != NULL)
            n++;
        int rc = from_fields(cases[i].fv, n, &m, err, &b, &r);
        if (rc != -EBADMSG || err[0] == '\0')
            fail_msg("%s: %d (%s), want -EBADMSG with a message", cases[i].label, rc, err);
        assert_int_equal(m.n, 0);
        assert_null(m.e);
        rec_free(&r);
        ss_sbuf_free(&b);
    }
}

int main(void)
{
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_ok),
        cmocka_unit_test(test_add_sort_find),
        cmocka_unit_test(test_diff),
        cmocka_unit_test_setup_teardown(test_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_changed_while_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_crew, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_read_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_old_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_writer_tx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_writer_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_two_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_gc_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_small_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_db_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
