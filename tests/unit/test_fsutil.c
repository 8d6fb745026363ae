/*
 * test_fsutil.c - unit tests for lib/fsutil.c: the no-replace rename (and
 * its link()+unlink() fallback) never replaces, ss_read_file refuses what
 * is too large or not a regular file, ss_write_file_atomic, ss_mkdir_p,
 * ss_rm_rf, ss_write_all.  Each test works in its own temporary directory.
 */
#include "testutil.h"

static int setup(void **state)
{
    return (*state = tu_dir_new("test_fsutil", NULL)) != NULL ? 0 : -1;
}

typedef int (*move_fn)(int, const char *, int, const char *);

static void check_noreplace(struct tu_dir *f, move_fn mv)
{
    tu_put(f->dfd, "a", "first");
    tu_put(f->dfd, "b", "second");
    /* The target exists: EEXIST, and both files keep their content. */
    assert_int_equal(mv(f->dfd, "a", f->dfd, "b"), -EEXIST);
    tu_assert_content(f->dfd, "a", "first");
    tu_assert_content(f->dfd, "b", "second");
    /* A free target: the file moves. */
    assert_int_equal(mv(f->dfd, "a", f->dfd, "c"), 0);
    assert_false(tu_exists(f->dfd, "a"));
    tu_assert_content(f->dfd, "c", "first");
    /* A missing source. */
    assert_int_equal(mv(f->dfd, "nothere", f->dfd, "d"), -ENOENT);
    assert_false(tu_exists(f->dfd, "d"));
}

static void test_rename_noreplace(void **state)
{
    check_noreplace(*state, ss_rename_noreplace);
}

static void test_link_move_noreplace(void **state)
{
    check_noreplace(*state, ss_link_move_noreplace);
}

static void test_rename_noreplace_across_dirs(void **state)
{
    struct tu_dir *f = *state;

    assert_int_equal(mkdirat(f->dfd, "sub", 0750), 0);
    int sfd = openat(f->dfd, "sub", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(sfd >= 0);
    tu_put(f->dfd, "x", "outer");
    tu_put(sfd, "x", "inner");
    assert_int_equal(ss_rename_noreplace(f->dfd, "x", sfd, "x"), -EEXIST);
    tu_assert_content(f->dfd, "x", "outer");
    tu_assert_content(sfd, "x", "inner");
    assert_int_equal(ss_link_move_noreplace(f->dfd, "x", sfd, "x"), -EEXIST);
    tu_assert_content(sfd, "x", "inner");
    assert_int_equal(ss_rename_noreplace(f->dfd, "x", sfd, "y"), 0);
    tu_assert_content(sfd, "y", "outer");
    close(sfd);
}

static void test_read_file(void **state)
{
    struct tu_dir *f = *state;
    char *buf = NULL;
    size_t len = 99;

    /* A file exactly as large as max is read; one byte less refuses it. */
    tu_put(f->dfd, "ten", "0123456789");
    tu_assert_read(f->dfd, "ten", 10, "0123456789");
    assert_int_equal(ss_read_file(f->dfd, "ten", 9, &buf, &len), -EFBIG);
    assert_null(buf);

    tu_put(f->dfd, "empty", "");
    tu_assert_read(f->dfd, "empty", 10, "");

    /* Bigger than the 64-byte first buffer: the read loop grows it. */
    char big[5000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tu_put(f->dfd, "big", big);
    tu_assert_read(f->dfd, "big", sizeof big - 1, big);
}

static void test_read_file_too_big_not_read(void **state)
{
    struct tu_dir *f = *state;
    char *buf = NULL;
    size_t len;

    /* 64 GiB sparse: reading it whole (or allocating for it) would be
     * noticed; the size check must refuse it from fstat alone. */
    int fd = openat(f->dfd, "huge", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 64LL << 30), 0);
    close(fd);
    assert_int_equal(ss_read_file(f->dfd, "huge", 1 << 20, &buf, &len), -EFBIG);
    assert_null(buf);
}

static void test_read_file_not_regular(void **state)
{
    struct tu_dir *f = *state;
    char *buf = NULL;
    size_t len;

    assert_int_equal(mkdirat(f->dfd, "dir", 0750), 0);
    assert_int_equal(ss_read_file(f->dfd, "dir", 100, &buf, &len), -EISDIR);
    tu_put(f->dfd, "target", "t");
    assert_int_equal(symlinkat("target", f->dfd, "link"), 0);
    assert_int_equal(ss_read_file(f->dfd, "link", 100, &buf, &len), -ELOOP);
    assert_int_equal(mkfifoat(f->dfd, "fifo", 0600), 0);
    /* Must not hang waiting for a writer. */
    assert_int_equal(ss_read_file(f->dfd, "fifo", 100, &buf, &len), -EINVAL);
    assert_int_equal(ss_read_file(f->dfd, "missing", 100, &buf, &len), -ENOENT);
    assert_null(buf);
}

static void test_write_file_atomic(void **state)
{
    struct tu_dir *f = *state;
    char path[SS_PATH_MAX], lng[SS_PATH_MAX + 10];
    struct stat st;

    assert_int_equal(ss_path(path, sizeof path, "%s/ctl.conf", f->dir), 0);
    assert_int_equal(ss_write_file_atomic(path, "one\n", 4, 0644), 0);
    tu_assert_content(f->dfd, "ctl.conf", "one\n");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    ino_t first = st.st_ino;

    /* Replacing: new content, a new inode (renamed over, not rewritten),
     * and no temporary file left beside it. */
    assert_int_equal(ss_write_file_atomic(path, "two, longer\n", 12, 0600), 0);
    tu_assert_content(f->dfd, "ctl.conf", "two, longer\n");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_true(st.st_ino != first);
    assert_int_equal(tu_count(f->dir), 1);

    memset(lng, 'a', sizeof lng - 1);
    lng[0] = '/';
    lng[sizeof lng - 1] = '\0';
    assert_int_equal(ss_write_file_atomic(lng, "x", 1, 0644), -ENAMETOOLONG);
    /* A directory that does not exist. */
    assert_int_equal(ss_path(path, sizeof path, "%s/no/such/file", f->dir), 0);
    assert_int_equal(ss_write_file_atomic(path, "x", 1, 0644), -ENOENT);
    assert_int_equal(tu_count(f->dir), 1);

    /* Through a symbolic link (an installed site.conf): the file it names
     * is replaced and the link stays a link. */
    char link[SS_PATH_MAX];
    assert_int_equal(ss_path(path, sizeof path, "%s/ctl.conf", f->dir), 0);
    assert_int_equal(ss_path(link, sizeof link, "%s/link.conf", f->dir), 0);
    assert_int_equal(symlink("ctl.conf", link), 0);
    assert_int_equal(ss_write_file_atomic(link, "three\n", 6, 0644), 0);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    tu_assert_content(f->dfd, "ctl.conf", "three\n");
    assert_int_equal(tu_count(f->dir), 2);
}

static void test_mkdir_p(void **state)
{
    struct tu_dir *f = *state;
    char path[SS_PATH_MAX];
    struct stat st;

    assert_int_equal(ss_path(path, sizeof path, "%s/a/b/c", f->dir), 0);
    assert_int_equal(ss_mkdir_p(path, 0750), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* Again: existing directories are fine. */
    assert_int_equal(ss_mkdir_p(path, 0750), 0);
    /* Trailing and doubled slashes. */
    assert_int_equal(ss_path(path, sizeof path, "%s/a//d/e/", f->dir), 0);
    assert_int_equal(ss_mkdir_p(path, 0750), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/a/d/e", f->dir), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* A file in the way. */
    tu_put(f->dfd, "file", "x");
    assert_int_equal(ss_path(path, sizeof path, "%s/file/sub", f->dir), 0);
    assert_int_equal(ss_mkdir_p(path, 0750), -ENOTDIR);
    assert_int_equal(ss_path(path, sizeof path, "%s/file", f->dir), 0);
    assert_int_equal(ss_mkdir_p(path, 0750), -ENOTDIR);
    assert_int_equal(ss_mkdir_p("", 0750), -EINVAL);
}

static void test_rm_rf(void **state)
{
    struct tu_dir *f = *state;
    char path[SS_PATH_MAX], outside[SS_PATH_MAX];

    /* A file outside the tree that a symlink inside points at. */
    assert_int_equal(mkdirat(f->dfd, "keep", 0750), 0);
    int kfd = openat(f->dfd, "keep", O_RDONLY | O_DIRECTORY);
    assert_true(kfd >= 0);
    tu_put(kfd, "precious", "p");

    assert_int_equal(ss_path(path, sizeof path, "%s/tree/x/y", f->dir), 0);
    assert_int_equal(ss_mkdir_p(path, 0750), 0);
    int yfd = open(path, O_RDONLY | O_DIRECTORY);
    assert_true(yfd >= 0);
    tu_put(yfd, "f1", "1");
    tu_put(yfd, ".hidden", "h");
    assert_int_equal(ss_path(outside, sizeof outside, "%s/keep", f->dir), 0);
    assert_int_equal(symlinkat(outside, yfd, "link-to-keep"), 0);
    close(yfd);

    assert_int_equal(ss_path(path, sizeof path, "%s/tree", f->dir), 0);
    assert_int_equal(ss_rm_rf(path), 0);
    assert_false(tu_exists(f->dfd, "tree"));
    tu_assert_content(kfd, "precious", "p");
    close(kfd);
    /* Missing: nothing to do. */
    assert_int_equal(ss_rm_rf(path), 0);
    /* A single file. */
    tu_put(f->dfd, "single", "s");
    assert_int_equal(ss_path(path, sizeof path, "%s/single", f->dir), 0);
    assert_int_equal(ss_rm_rf(path), 0);
    assert_false(tu_exists(f->dfd, "single"));
}

static void test_write_all_and_fsync(void **state)
{
    struct tu_dir *f = *state;
    static char big[1 << 20];

    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    int fd = openat(f->dfd, "w", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ss_write_all(fd, big, sizeof big), 0);
    assert_int_equal(ss_fsync_fd(fd), 0);
    close(fd);
    char *buf;
    size_t len;
    assert_int_equal(ss_read_file(f->dfd, "w", sizeof big, &buf, &len), 0);
    assert_int_equal(len, sizeof big);
    assert_memory_equal(buf, big, sizeof big);
    free(buf);
    assert_int_equal(ss_write_all(-1, "x", 1), -EBADF);
    assert_int_equal(ss_fsync_dir(f->dir), 0);
    /* main() set SITESRV_UNSAFE_NOFSYNC=1. */
    assert_int_equal(ss_fsync_enabled(), 0);
}

/* Many files removed by a crew, at once and in the background: every
 * item is accounted for, a missing one reports -ENOENT and counts as a
 * failure, and nothing else in the directory is touched. */
static void test_unlink_many(void **state)
{
    struct tu_dir *f = *state;
    enum { N = 300 };
    static char names[N][32];
    static struct ss_unlink_item items[N];
    struct ss_unlink_crew crew;

    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            assert_int_equal(ss_fmt(names[i], sizeof names[i], "f%d", i), 0);
            if (i != 7)             /* item 7 names a file that is not there */
                tu_put(f->dfd, names[i], "x");
            items[i] = (struct ss_unlink_item){ .dirfd = f->dfd, .name = names[i], .err = 1 };
        }
        tu_put(f->dfd, "keep", "");
        if (round == 0) {
            assert_int_equal(ss_unlink_many(items, N, 8), 1);
        } else {
            ss_unlink_start(&crew, items, N, 8);
            assert_int_equal(ss_unlink_wait(&crew), 1);
        }
        for (int i = 0; i < N; i++)
            assert_int_equal(items[i].err, i == 7 ? -ENOENT : 0);
        assert_int_equal(tu_count(f->dir), 1);     /* only "keep" */
        assert_int_equal(unlinkat(f->dfd, "keep", 0), 0);
    }
}

/* The kernel check behind ss_syncfs: syncfs reports a failed write-back
 * from 5.8 on; anything that does not parse takes the safe path. */
static void test_kernel_at_least(void **state)
{
    static const struct {
        const char *release;
        int         major, minor;
        int         want;
    } cases[] = {
        { "5.8.0", 5, 8, 1 },
        { "5.8", 5, 8, 1 },
        { "5.7.19", 5, 8, 0 },
        { "5.10.0-28-amd64", 5, 8, 1 },
        { "5.1.0", 5, 10, 0 },              /* minor compared as a number */
        { "6.1.0-18-amd64", 5, 8, 1 },
        { "6.0", 5, 8, 1 },
        { "10.0.1", 5, 8, 1 },
        { "4.19.0-25-amd64", 5, 8, 0 },
        { "2.6.32-754.el6.x86_64", 5, 8, 0 },
        { "5", 5, 8, 0 },
        { "5.", 5, 0, 0 },
        { "", 5, 8, 0 },
        { "linux-6.1", 5, 8, 0 },
        { "99999999999999999999.1", 5, 8, 0 },   /* out of range */
    };

    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++)
        if (ss_kernel_at_least(cases[i].release, cases[i].major, cases[i].minor) !=
            cases[i].want)
            fail_msg("\"%s\" at least %d.%d: want %d", cases[i].release,
                     cases[i].major, cases[i].minor, cases[i].want);
    assert_int_equal(ss_kernel_at_least(NULL, 5, 8), 0);
}

/* ss_fsync_enabled caches the environment; ss_fsync_reset makes it look
 * again (daemon_main relies on that after removing the variable). */
static void test_fsync_reset(void **state)
{
    static const struct {
        const char *value;      /* NULL: unset */
        int         want;
    } cases[] = {
        { "1", 0 }, { NULL, 1 }, { "0", 1 }, { "yes", 1 }, { "", 1 }, { "1", 0 },
    };

    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        int before = ss_fsync_enabled();
        if (cases[i].value)
            assert_int_equal(setenv(SS_NOFSYNC_ENV, cases[i].value, 1), 0);
        else
            assert_int_equal(unsetenv(SS_NOFSYNC_ENV), 0);
        assert_int_equal(ss_fsync_enabled(), before);    /* cached */
        ss_fsync_reset();
        if (ss_fsync_enabled() != cases[i].want)
            fail_msg("%s=%s: want enabled %d", SS_NOFSYNC_ENV,
                     cases[i].value ? cases[i].value : "(unset)", cases[i].want);
    }
    /* With fsync off, ss_syncfs does nothing on any kernel. */
    assert_int_equal(ss_syncfs(-1), 0);
}

int main(void)
{
    setenv(SS_NOFSYNC_ENV, "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rename_noreplace, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_link_move_noreplace, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_rename_noreplace_across_dirs, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_read_file, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_read_file_too_big_not_read, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_read_file_not_regular, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_write_file_atomic, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_mkdir_p, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_rm_rf, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_write_all_and_fsync, setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_unlink_many, setup, tu_dir_teardown),
        cmocka_unit_test(test_kernel_at_least),
        cmocka_unit_test(test_fsync_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
