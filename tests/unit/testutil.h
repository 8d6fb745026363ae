/*
 * testutil.h - fixtures shared by the unit tests: a temporary directory
 * under $TMPDIR and its removal, counting a directory's entries, writing
 * and reading a small file, asserting a file's content.
 *
 * SYNOPSIS
 *   tu_mkdtemp tu_tmpdir tu_tmpdir_new tu_tmpdir_free tu_rm_rf
 *   tu_dir_new tu_dir_free tu_dir_teardown      (struct tu_dir)
 *   tu_count_at tu_count tu_exists
 *   tu_put tu_write tu_write_len
 *   tu_read tu_read_at tu_file_contains tu_assert_read tu_assert_content
 *
 * DESCRIPTION
 *   Every test binary is one .c file compiled alone against the library,
 *   so these are static inline functions in a header rather than a second
 *   object to link.  Each test gets its own directory made by mkdtemp(3)
 *   as "$TMPDIR/<prefix>.XXXXXX" (/tmp when TMPDIR is unset or empty), so
 *   tests never see each other's files and can run in parallel.
 *
 *   The file helpers use the library's own primitives (ss_write_all,
 *   ss_read_file, ss_rm_rf), which test_fsutil checks on their own.
 *
 * DIAGNOSTICS
 *   The tu_mkdtemp/tu_dir_new pair returns -1/NULL for cmocka setup
 *   functions, which report failure by their return value; everything
 *   else fails the running test through a cmocka assertion.
 */
#ifndef SITESRV_TESTUTIL_H
#define SITESRV_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "util.h"

/* Large enough for any file a test reads back whole (the concurrent
 * writers' log of test_log is near 1 MiB). */
#define TU_READ_MAX (64u << 20)

/* ---- temporary directories ------------------------------------------- */

/* Make "$TMPDIR/<prefix>.XXXXXX" into buf: 0, or -1 when the name does not
 * fit or mkdtemp fails. */
static inline int tu_mkdtemp(char *buf, size_t len, const char *prefix)
{
    const char *t = getenv("TMPDIR");

    if (ss_path(buf, len, "%s/%s.XXXXXX", t && *t ? t : "/tmp", prefix) < 0 ||
        mkdtemp(buf) == NULL)
        return -1;
    return 0;
}

/* The same, failing the test when the directory cannot be made. */
static inline void tu_tmpdir(char *buf, size_t len, const char *prefix)
{
    assert_int_equal(tu_mkdtemp(buf, len, prefix), 0);
}

/* The same into a malloc'ed buffer of SS_PATH_MAX bytes. */
static inline char *tu_tmpdir_new(const char *prefix)
{
    char *d = malloc(SS_PATH_MAX);

    assert_non_null(d);
    tu_tmpdir(d, SS_PATH_MAX, prefix);
    return d;
}

/* Remove a tree (no symlink following), failing the test if that fails. */
static inline void tu_rm_rf(const char *path)
{
    assert_int_equal(ss_rm_rf(path), 0);
}

/* Remove and free what tu_tmpdir_new made. */
static inline void tu_tmpdir_free(char *dir)
{
    tu_rm_rf(dir);
    free(dir);
}

/* A temporary directory held open, for the *at() calls, and the path of
 * one file in it for the tests that work on a single file. */
struct tu_dir {
    char dir[SS_PATH_MAX];
    int  dfd;
    char path[SS_PATH_MAX];     /* dir/name; "" without a name */
};

/* Close (if open), remove and free: ss_rm_rf's result. */
static inline int tu_dir_free(struct tu_dir *d)
{
    if (d->dfd >= 0)
        close(d->dfd);
    int r = ss_rm_rf(d->dir);
    free(d);
    return r;
}

/* calloc'ed and made, or NULL (for a cmocka setup to return -1).  The
 * file name may be NULL; the file itself is not created. */
static inline struct tu_dir *tu_dir_new(const char *prefix, const char *name)
{
    struct tu_dir *d = calloc(1, sizeof *d);

    if (d == NULL)
        return NULL;
    if (tu_mkdtemp(d->dir, sizeof d->dir, prefix) < 0) {
        free(d);
        return NULL;
    }
    d->dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dfd < 0 ||
        (name != NULL && ss_path(d->path, sizeof d->path, "%s/%s", d->dir, name) < 0)) {
        tu_dir_free(d);
        return NULL;
    }
    return d;
}

/* A cmocka teardown for a state made by tu_dir_new. */
static inline int tu_dir_teardown(void **state)
{
    return tu_dir_free(*state);
}

/* ---- directory contents ---------------------------------------------- */

/* Entries of an open directory other than . and .. (hidden ones too). */
static inline size_t tu_count_at(int dfd)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    size_t n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* The same for a directory given by path. */
static inline size_t tu_count(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    assert_true(fd >= 0);
    size_t n = tu_count_at(fd);
    close(fd);
    return n;
}

/* Whether name exists in dfd (AT_FDCWD for a path); a link is not
 * followed. */
static inline int tu_exists(int dfd, const char *name)
{
    struct stat st;
    return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* ---- writing --------------------------------------------------------- */

/* Create name in dfd holding text; it must not exist yet (O_EXCL). */
static inline void tu_put(int dfd, const char *name, const char *text)
{
    int fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ss_write_all(fd, text, strlen(text)), 0);
    assert_int_equal(close(fd), 0);
}

/* Create or truncate path and write len bytes of data to it. */
static inline void tu_write_len(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ss_write_all(fd, data, len), 0);
    assert_int_equal(close(fd), 0);
}

static inline void tu_write(const char *path, const char *text)
{
    tu_write_len(path, text, strlen(text));
}

/* ---- reading --------------------------------------------------------- */

/* The whole of a regular file, malloc'ed and NUL-terminated; len may be
 * NULL.  A file that cannot be read fails the test. */
static inline char *tu_read_at(int dfd, const char *name, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    int r = ss_read_file(dfd, name, TU_READ_MAX, &buf, &n);

    if (r < 0)
        fail_msg("cannot read %s: %s", name, strerror(-r));
    if (len != NULL)
        *len = n;
    return buf;
}

static inline char *tu_read(const char *path, size_t *len)
{
    return tu_read_at(AT_FDCWD, path, len);
}

/* Whether path can be read and holds needle; 0 for a missing file. */
static inline int tu_file_contains(const char *path, const char *needle)
{
    char *buf = NULL;
    size_t n;

    if (ss_read_file(AT_FDCWD, path, TU_READ_MAX, &buf, &n) < 0)
        return 0;
    int found = strstr(buf, needle) != NULL;
    free(buf);
    return found;
}

/* ss_read_file(dfd, name, max) succeeds with exactly want. */
static inline void tu_assert_read(int dfd, const char *name, size_t max, const char *want)
{
    char *buf = NULL;
    size_t len = 0;

    assert_int_equal(ss_read_file(dfd, name, max, &buf, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_string_equal(buf, want);
    free(buf);
}

/* name in dfd holds exactly want. */
static inline void tu_assert_content(int dfd, const char *name, const char *want)
{
    tu_assert_read(dfd, name, 1 << 20, want);
}

#endif
