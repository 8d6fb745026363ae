/*
 * fsutil.c - file system primitives with the durability rules of SPEC 4.2.
 *
 * SYNOPSIS
 *   ss_write_all ss_read_file           whole-buffer I/O
 *   ss_fsync_fd ss_fsync_dir            fsync, unless SITESRV_UNSAFE_NOFSYNC=1
 *   ss_fsync_enabled ss_fsync_reset
 *   ss_syncfs ss_kernel_at_least        syncfs where it reports errors (5.8+)
 *   ss_rename_noreplace                 a move that cannot replace
 *   ss_link_move_noreplace              its link()+unlink() fallback
 *   ss_mkdir_p ss_rm_rf ss_rm_rf_at     directory trees
 *   ss_write_file_atomic                replace a control file atomically
 *   ss_unlink_many                      remove many files, overlapping their I/O
 *
 * DESCRIPTION
 *   The no-replace rename is the heart of the collision rule: a plain
 *   rename() silently replaces what is already at the new name, which is
 *   how SMS 2.0 lost status messages.  renameat2(RENAME_NOREPLACE) fails
 *   with EEXIST instead; where a file system refuses the flag (EINVAL on
 *   some NFS and CIFS mounts, ENOSYS on old kernels) we use link(), which
 *   has always failed with EEXIST rather than replace, then unlink() the
 *   old name.  Either way the caller draws a new name and tries again:
 *   we let the kernel resolve collisions rather than doing a worse job in
 *   the application.
 *
 *   fsync can be switched off for unit tests only, with the environment
 *   variable SITESRV_UNSAFE_NOFSYNC=1; nothing else changes then.  The
 *   answer is cached; ss_fsync_reset() forgets it (daemon_main removes the
 *   variable, then resets, so a daemon never runs without fsync).
 *
 *   ss_syncfs() makes a whole batch durable in one call, but only on
 *   kernels from 5.8 on: older ones returned 0 from syncfs even when the
 *   write-back had failed, so there it answers -ENOSYS and the caller
 *   fsyncs each file, which does report the failure.
 *
 * DIAGNOSTICS
 *   Nothing is logged.  Every function returns 0 or a negative errno
 *   (-EEXIST from the no-replace rename, -EFBIG from ss_read_file for a
 *   file over the caller's limit, -ENAMETOOLONG for a path that does not
 *   fit, or whatever the system call said).
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "fsutil.h"
#include "util.h"

int ss_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)             /* should not happen for regular files */
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * O_NONBLOCK keeps a FIFO planted in an inbox from hanging the reader
 * (fstat then refuses it as not a regular file).  O_NOATIME: a reader of
 * an inbox reads each file once and removes it, and under relatime that
 * first read would dirty the inode (its atime is not after its mtime) for
 * nothing.  Only the owner (or CAP_FOWNER) may ask for it; once refused it
 * is not asked again, so a reader of other users' files does not pay two
 * opens per file.
 */
static int open_for_reading(int dirfd, const char *name)
{
    static atomic_int noatime_refused;
    int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;

    if (!atomic_load_explicit(&noatime_refused, memory_order_relaxed)) {
        int fd = openat(dirfd, name, flags | O_NOATIME);
        if (fd >= 0 || errno != EPERM)
            return fd;
        atomic_store_explicit(&noatime_refused, 1, memory_order_relaxed);
    }
    return openat(dirfd, name, flags);
}

int ss_read_file(int dirfd, const char *name, size_t max, char **bufp, size_t *lenp)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0, cap;
    int fd, r = 0;

    fd = open_for_reading(dirfd, name);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        r = -EISDIR;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        goto out;
    }
    if ((uint64_t)st.st_size > (uint64_t)max) {
        r = -EFBIG;
        goto out;
    }
    /* The file may grow while we read: read at most max + 1 bytes, and
     * treat the extra byte as proof that it is too large. */
    cap = (size_t)st.st_size + 1;
    if (cap < 64)
        cap = 64;
    buf = malloc(cap);
    if (buf == NULL) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (len > max)
                break;
            size_t ncap = cap * 2;
            if (max < SIZE_MAX - 2 && ncap > max + 2)
                ncap = max + 2;
            if (ncap <= cap) {
                r = -EFBIG;
                goto out;
            }
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                r = -ENOMEM;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max)
            break;
    }
    if (len > max) {
        r = -EFBIG;
        goto out;
    }
    buf[len] = '\0';
    *bufp = buf;
    if (lenp)
        *lenp = len;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return r;
}

/* -1 unknown, else the answer.  A race between two first callers
 * computes the same value twice, which is harmless. */
static int fsync_on = -1;
static int syncfs_trusted = -1;

int ss_fsync_enabled(void)
{
    int v = __atomic_load_n(&fsync_on, __ATOMIC_RELAXED);

    if (v < 0) {
        const char *e = getenv(SS_NOFSYNC_ENV);
        v = (e != NULL && strcmp(e, "1") == 0) ? 0 : 1;
        __atomic_store_n(&fsync_on, v, __ATOMIC_RELAXED);
    }
    return v;
}

void ss_fsync_reset(void)
{
    __atomic_store_n(&fsync_on, -1, __ATOMIC_RELAXED);
    __atomic_store_n(&syncfs_trusted, -1, __ATOMIC_RELAXED);
}

int ss_kernel_at_least(const char *release, int major, int minor)
{
    long v[2];
    const char *p = release;

    /* "MAJOR.MINOR" then anything ("-28-amd64", ".0", "+"). */
    for (int i = 0; i < 2; i++) {
        char *end;
        if (p == NULL || *p < '0' || *p > '9')
            return 0;
        errno = 0;
        v[i] = strtol(p, &end, 10);
        if (errno != 0)
            return 0;
        if (i == 0 && *end != '.')
            return 0;
        p = end + 1;
    }
    return v[0] > major || (v[0] == major && v[1] >= minor);
}

/* Linux 5.8 made syncfs report write-back errors (per-superblock error
 * tracking); before that a failed write-back was reported only to an
 * fsync of the file itself, so trusting syncfs could hand over a file
 * whose data never reached the disk. */
static int syncfs_reports_errors(void)
{
    int v = __atomic_load_n(&syncfs_trusted, __ATOMIC_RELAXED);

    if (v < 0) {
        struct utsname u;
        v = uname(&u) == 0 && ss_kernel_at_least(u.release, 5, 8);
        __atomic_store_n(&syncfs_trusted, v, __ATOMIC_RELAXED);
    }
    return v;
}

int ss_syncfs(int fd)
{
    if (!ss_fsync_enabled())
        return 0;
    if (!syncfs_reports_errors())
        return -ENOSYS;
    while (syncfs(fd) < 0) {
        if (errno == EINTR)
            continue;
        return -errno;
    }
    return 0;
}

int ss_fsync_fd(int fd)
{
    if (!ss_fsync_enabled())
        return 0;
    while (fsync(fd) < 0) {
        if (errno == EINTR)
            continue;
        /* EINVAL: the file system cannot sync this kind of file (some
         * FUSE and network file systems for directories).  There is
         * nothing better we could do, so it is not an error. */
        if (errno == EINVAL)
            return 0;
        return -errno;
    }
    return 0;
}

int ss_fsync_dir(const char *path)
{
    int fd, r;

    if (!ss_fsync_enabled())
        return 0;
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    r = ss_fsync_fd(fd);
    close(fd);
    return r;
}

int ss_link_move_noreplace(int olddirfd, const char *oldname,
                           int newdirfd, const char *newname)
{
    /* link() fails with EEXIST when newname exists, never replaces. */
    if (linkat(olddirfd, oldname, newdirfd, newname, 0) < 0)
        return -errno;
    if (unlinkat(olddirfd, oldname, 0) < 0) {
        int e = errno;
        /* Someone else removed the old name meanwhile: the file now
         * lives at the new name only, which is what a move means. */
        if (e == ENOENT)
            return 0;
        /* Otherwise undo, so the file does not exist twice (a reader
         * would process it twice). */
        unlinkat(newdirfd, newname, 0);
        return -e;
    }
    return 0;
}

int ss_rename_noreplace(int olddirfd, const char *oldname,
                        int newdirfd, const char *newname)
{
    if (renameat2(olddirfd, oldname, newdirfd, newname, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* The file system (or kernel) refuses the flag. */
    return ss_link_move_noreplace(olddirfd, oldname, newdirfd, newname);
}

static int mkdir_one(const char *path, mode_t mode)
{
    struct stat st;

    if (mkdir(path, mode) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    /* Something is there: fine if it is a directory (or a link to one). */
    if (stat(path, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int ss_mkdir_p(const char *path, mode_t mode)
{
    char buf[SS_PATH_MAX];
    int r;

    if (path == NULL || *path == '\0')
        return -EINVAL;
    r = ss_strcpy(buf, sizeof buf, path);
    if (r < 0)
        return -ENAMETOOLONG;
    /* Create each prefix ending before a '/', then the whole path. */
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/' || p[-1] == '/')
            continue;
        *p = '\0';
        r = mkdir_one(buf, mode);
        *p = '/';
        if (r < 0)
            return r;
    }
    return mkdir_one(buf, mode);
}

static int open_dir_nofollow(int dirfd, const char *name)
{
    return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Remove name in dirfd, whatever it is, never following a symbolic link.
 * A directory without owner rwx (a package tree can hold 0555 or 0
 * directories) is made 0700 first: whoever may remove it may do that. */
int ss_rm_rf_at(int parent, const char *name)
{
    struct stat st;
    struct dirent *de;
    DIR *d;
    int fd, r = 0;

    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    fd = open_dir_nofollow(parent, name);
    if (fd < 0 && errno == EACCES) {
        /* fchmodat follows links: make sure it is a directory first. */
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
            fchmodat(parent, name, 0700, 0) == 0)
            fd = open_dir_nofollow(parent, name);
        else
            errno = EACCES;
    }
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700 && fchmod(fd, 0700) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    d = fdopendir(fd);
    if (d == NULL) {
        r = -errno;
        close(fd);
        return r;
    }
    /* Entries removed behind the cursor do not disturb readdir. */
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int e = ss_rm_rf_at(dirfd(d), de->d_name);
        if (e < 0 && r == 0)
            r = e;
    }
    closedir(d);
    if (r < 0)
        return r;
    if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int ss_rm_rf(const char *path)
{
    if (path == NULL || *path == '\0')
        return -EINVAL;
    return ss_rm_rf_at(AT_FDCWD, path);
}

int ss_write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode)
{
    char tmp[SS_PATH_MAX], dir[SS_PATH_MAX], real[PATH_MAX];
    struct stat st;
    int fd, r;

    /* An installed site keeps site.conf in /etc/sitesrv behind a symbolic
     * link: replace the file the link names, not the link itself. */
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        if (realpath(path, real) == NULL)
            return -errno;
        path = real;
    }
    r = ss_path(tmp, sizeof tmp, "%s.tmp-XXXXXX", path);
    if (r < 0)
        return r;
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* mkostemp creates 0600; the caller's mode, without the umask. */
    if (fchmod(fd, mode) < 0) {
        r = -errno;
        close(fd);
        goto fail;
    }
    r = ss_write_all(fd, buf, len);
    if (r == 0)
        r = ss_fsync_fd(fd);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r < 0)
        goto fail;
    if (rename(tmp, path) < 0) {
        r = -errno;
        goto fail;
    }
    /* The rename is durable only once the directory is synced. */
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return ss_fsync_dir(".");
    if (slash == path)
        return ss_fsync_dir("/");
    r = ss_path(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (r < 0)
        return r;
    return ss_fsync_dir(dir);
fail:
    unlink(tmp);
    return r;
}

/* The threads of a crew take items by an atomic index, so a slow unlink
 * never holds up the items behind it. */
static void *unlink_crew_run(void *arg)
{
    struct ss_unlink_crew *c = arg;
    size_t i;

    while ((i = atomic_fetch_add(&c->next, 1)) < c->n) {
        struct ss_unlink_item *it = &c->items[i];
        it->err = unlinkat(it->dirfd, it->name, 0) < 0 ? -errno : 0;
        if (it->err != 0)
            atomic_fetch_add(&c->failed, 1);
    }
    return NULL;
}

static void crew_init(struct ss_unlink_crew *c, struct ss_unlink_item *items, size_t n)
{
    c->items = items;
    c->n = n;
    atomic_init(&c->next, 0);
    atomic_init(&c->failed, 0);
    c->started = 0;
}

/* Start up to want threads, one per 32 items at most (a thread is worth
 * its start only with a few dozen files to share).  Fewer if the system
 * refuses one: still correct. */
static void crew_spawn(struct ss_unlink_crew *c, int want)
{
    if (want > SS_UNLINK_THREADS_MAX)
        want = SS_UNLINK_THREADS_MAX;
    while (c->started < want && (size_t)c->started * 32 < c->n) {
        if (pthread_create(&c->tid[c->started], NULL, unlink_crew_run, c) != 0)
            break;
        c->started++;
    }
}

void ss_unlink_start(struct ss_unlink_crew *c, struct ss_unlink_item *items,
                     size_t n, int threads)
{
    crew_init(c, items, n);
    crew_spawn(c, threads);
    if (c->started == 0)
        unlink_crew_run(c);
}

size_t ss_unlink_wait(struct ss_unlink_crew *c)
{
    for (int t = 0; t < c->started; t++)
        pthread_join(c->tid[t], NULL);
    c->started = 0;
    return atomic_load(&c->failed);
}

size_t ss_unlink_many(struct ss_unlink_item *items, size_t n, int threads)
{
    struct ss_unlink_crew c;

    crew_init(&c, items, n);
    crew_spawn(&c, threads - 1);      /* the caller is one of them */
    unlink_crew_run(&c);
    return ss_unlink_wait(&c);
}
