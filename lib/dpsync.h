/*
 * dpsync.h - bringing a distribution point to a package version
 * (SPEC 3 "package to DPs", 4.1; issue 3).
 *
 * A package's content on a DP is at DPPATH/PKGID/, a plain copy of the
 * source tree of the installed version (files with the manifest's mode
 * and mtime).  A new version is built beside it, in DPPATH/.PKGID.new:
 * files unchanged since the visible tree (same type, size, mtime and
 * mode there) are hard links to it, so they are not written again; new
 * and changed files are written from the content store (a small object
 * from its row of store/small.db, a loose one copied from its file; one
 * store reader serves the whole install).  The staging tree is made durable (one syncfs of the DP's file system, or an fsync
 * per file where syncfs cannot report errors), then swapped with the
 * visible tree in one renameat2(RENAME_EXCHANGE) (RENAME_NOREPLACE for
 * the first version), and the DP directory is fsync'ed.  A reader that
 * walks the package from a directory descriptor therefore sees either
 * the whole old version or the whole new one, never a mix.
 *
 * The tree that was replaced is kept as DPPATH/.PKGID.old until the
 * next install or removal of that package on that DP, so that a client
 * in the middle of reading the old version can finish.  The next install
 * does not spend its time removing it: it renames it (one rename) to
 * DPPATH/.PKGID.trash-<16 hex digits>, and the caller removes such trees
 * with dp_sweep once the new version is recorded, off the path that
 * decides when a DP is "installed".
 *
 * The files of a version are written by up to DP_THREADS threads (see
 * dpsync.c), started and joined inside dp_install, with the asynchronous
 * signals blocked.
 *
 * distmgr never creates DPPATH itself: a missing DP root is an error.
 */
#ifndef SITESRV_DPSYNC_H
#define SITESRV_DPSYNC_H

#include "common.h"
#include "manifest.h"

struct dp_stats {
    size_t  linked;            /* files kept (hard link to the visible tree) */
    size_t  copied;            /* files written from the store */
    int64_t bytes_copied;
    size_t  dirs;              /* directories created */
};

/*
 * Is dproot usable: an existing directory we may write into?  0, or
 * -ENOENT, -ENOTDIR, -EACCES/-EPERM/-EROFS with err naming it.  Never
 * creates anything.
 */
int dp_check(const char *dproot, char *err, size_t errlen);

/*
 * Bring dproot/pkgid to manifest m, content from storedir (store_get:
 * small.db rows and loose objects, as the manifest's sizes say).  Leftovers of an interrupted install (.pkgid.new) are removed first, and
 * the previous .pkgid.old is renamed to a .pkgid.trash-* name for
 * dp_sweep.  Returns 0 once the new version is visible and durable; on
 * any error (-ENOENT DP root gone, -ENOSPC, -EIO, a store object missing
 * or of the wrong size, or a store that cannot be found: -EUCLEAN...) the staging tree is removed, the
 * visible tree is untouched, and err names the file and the cause (the
 * first error when several files failed at once).  stop (may be NULL) is
 * polled between files by every thread: -EINTR.  Thread safe for
 * different (dproot, pkgid); the caller never runs two installs of one
 * pair at once.
 */
int dp_install(const char *dproot, const char *pkgid, const struct manifest *m,
               const char *storedir, const volatile int *stop,
               struct dp_stats *st, char *err, size_t errlen);

/*
 * Remove every dproot/.pkgid.trash-<16 hex> tree that installs set aside,
 * and nothing else; *removed (may be NULL) counts them.  0 (also when
 * there was none), or the first -errno after trying them all (each tree
 * that stays is logged as a warning; -EINVAL for a bad pkgid, -ENOENT for
 * a missing DP root).  Safe while an install of the same pair runs: it
 * touches no other name.  Not made durable: a tree that comes back after
 * a crash is swept next time.
 */
int dp_sweep(const char *dproot, const char *pkgid, size_t *removed);

/* Remove dproot/pkgid and its .new/.old/.trash-* trees.  0 (also when
 * there was nothing), or -errno with err (a missing DP root is -ENOENT). */
int dp_remove(const char *dproot, const char *pkgid, char *err, size_t errlen);

/* Copy one regular file's content: copy_file_range, falling back to
 * read/write where the kernel or file system refuses it.  0 or -errno. */
int ss_copy_fd(int in, int out, int64_t size);

#endif
