/*
 * fsutil.h - file system primitives with the durability rules of SPEC 4.2.
 *
 * Everything returns 0 or a negative errno.  The no-replace rename is the
 * heart of the collision rule: it fails with -EEXIST rather than
 * overwrite, and the caller draws a new name.
 */
#ifndef SITESRV_FSUTIL_H
#define SITESRV_FSUTIL_H

#include <pthread.h>
#include <sys/types.h>
#include "common.h"

/* Whole-buffer write, restarting on EINTR and short writes. */
int ss_write_all(int fd, const void *buf, size_t len);

/* Read a whole regular file (openat(dirfd, name), O_NOFOLLOW) into a
 * malloc'ed, NUL-terminated buffer.  -EFBIG if it is larger than max,
 * without reading it all; -EISDIR/-EINVAL for what is not a regular file. */
int ss_read_file(int dirfd, const char *name, size_t max, char **buf, size_t *len);

/* fsync a directory given by fd, or by path. */
int ss_fsync_fd(int fd);
int ss_fsync_dir(const char *path);

/* renameat2(RENAME_NOREPLACE); where the file system refuses that flag
 * (EINVAL, some network file systems), link()+unlink() which is just as
 * unable to replace.  -EEXIST when the new name exists. */
int ss_rename_noreplace(int olddirfd, const char *oldname,
                        int newdirfd, const char *newname);
/* The fallback on its own: linkat() (-EEXIST rather than replace), then
 * unlinkat() of the old name (undoing the link if that fails).  Public so
 * tests can exercise it on file systems that accept RENAME_NOREPLACE. */
int ss_link_move_noreplace(int olddirfd, const char *oldname,
                           int newdirfd, const char *newname);

/* Remove many files, up to `threads` at once (the caller's thread is one
 * of them).  On a file system that discards freed blocks synchronously
 * (ext4 mounted with -o discard) each unlink waits for the device, and
 * that wait happens outside the directory lock, so parallel unlinks
 * overlap it.  Each item's err is set to 0 or a negative errno (-ENOENT
 * included); the return value counts the items that failed. */
struct ss_unlink_item {
    int         dirfd;
    const char *name;
    int         err;
};
size_t ss_unlink_many(struct ss_unlink_item *items, size_t n, int threads);

/* The same in the background: ss_unlink_start() returns at once with up
 * to `threads` threads removing the items (which must stay valid), and
 * ss_unlink_wait() joins them and returns the failure count.  When no
 * thread can be started, start does the work itself before returning. */
#define SS_UNLINK_THREADS_MAX 32
struct ss_unlink_crew {
    struct ss_unlink_item *items;
    size_t          n;
    _Atomic size_t  next;
    _Atomic size_t  failed;
    int             started;
    pthread_t       tid[SS_UNLINK_THREADS_MAX];
};
void   ss_unlink_start(struct ss_unlink_crew *c, struct ss_unlink_item *items,
                       size_t n, int threads);
size_t ss_unlink_wait(struct ss_unlink_crew *c);

/* mkdir -p; existing directories are fine. */
int ss_mkdir_p(const char *path, mode_t mode);

/* Remove a tree (no symlink following).  Used for temporary trees only. */
int ss_rm_rf(const char *path);
/* The same for name in dirfd; a directory without owner rwx is made 0700
 * first (a package tree may hold read-only directories). */
int ss_rm_rf_at(int dirfd, const char *name);

/* Replace a file atomically: write path.tmp-XXXX, fsync, rename over path,
 * fsync the directory.  For configuration and control files. */
int ss_write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode);

/* Skip the fsync calls (and only those) when SITESRV_UNSAFE_NOFSYNC=1 is in
 * the environment.  Unit tests set it; benchmarks never do, and
 * daemon_main() removes it from a daemon's environment (with a warning)
 * before anything can read it, so daemons always fsync.  The answer is
 * read once and cached. */
#define SS_NOFSYNC_ENV "SITESRV_UNSAFE_NOFSYNC"
int ss_fsync_enabled(void);

/* syncfs(2) on the file system of fd: one call makes every file written
 * there durable, at the price of also writing whatever else is dirty on
 * that file system.  0 when done (or when fsync is off); -ENOSYS when
 * syncfs cannot be trusted and the caller must fsync each file instead:
 * the kernel lacks it, or it is older than 5.8, whose syncfs returned 0
 * even after a failed write-back (the kernel version is read once, with
 * uname); else the negative errno of syncfs. */
int ss_syncfs(int fd);

/* Does a kernel release string (uname -r: "5.10.0-28-amd64", "6.1.0")
 * name version major.minor or later?  1 or 0; 0 for one that does not
 * parse, which makes the caller take the safe path. */
int ss_kernel_at_least(const char *release, int major, int minor);

/* Forget what ss_fsync_enabled() and ss_syncfs() cached (the environment
 * variable, the kernel version), so that their next calls look again:
 * for daemon_main() once it removed SITESRV_UNSAFE_NOFSYNC, and for
 * tests.  Not meant to race with those calls. */
void ss_fsync_reset(void);

#endif
