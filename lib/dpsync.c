/*
 * dpsync.c - bringing a distribution point to a package version.
 *
 * SYNOPSIS
 *   dp_check      is a DP root an existing directory we may write into
 *   dp_install    build DPPATH/.PKGID.new, make it durable, swap it in
 *   dp_remove     remove DPPATH/PKGID and its .new/.old trees
 *   ss_copy_fd    copy_file_range, or read/write where that is refused
 *
 * DESCRIPTION
 *   Clients read a package from the DP while distmgr replaces it, so a
 *   new version is never written over the visible one.  It is built in a
 *   staging tree beside it (DPPATH/.PKGID.new, mode 0700 while it is
 *   built, so nobody reads it half made), walking the manifest in path
 *   order, which puts every directory before its contents.  A file whose
 *   visible copy already has the manifest's size, mtime and permission
 *   bits is hard-linked from the visible tree: it is not written again,
 *   and readers of the old version keep reading the same inode, which is
 *   never modified.  Other files are copied from the content store under
 *   their final names (the staging tree is invisible, so no temporary
 *   name is needed inside it), then given the manifest's mode and mtime.
 *   Directories are created owner-writable and get their own mode and
 *   mtime last, deepest first, once nothing more is created in them.
 *
 *   The staging tree is made durable before anyone can see it: one
 *   syncfs of the DP's file system where the kernel reports write-back
 *   errors to syncfs (5.8 and later), else an fsync of every file written
 *   and every directory.  Then one renameat2(RENAME_EXCHANGE) swaps it
 *   with the visible tree (RENAME_NOREPLACE for a first version), the
 *   replaced tree moves to DPPATH/.PKGID.old, and the DP directory is
 *   fsync'ed.  A reader that walks the package from a directory
 *   descriptor sees one whole version.  The .old tree stays until the
 *   next install or removal, so that a client in the middle of the old
 *   version can finish.
 *
 *   Where a file system refuses RENAME_EXCHANGE (EINVAL: some network
 *   file systems), the swap is two renames: the visible tree to .old,
 *   then the staging tree in.  A reader may then find no package for a
 *   moment, but still never a mix of two versions.
 *
 *   Everything is done relative to a descriptor of the DP root, and
 *   nothing follows a symbolic link inside it.  Memory does not grow with
 *   the package: one copy buffer per call, allocated only when
 *   copy_file_range cannot be used.
 *
 * DIAGNOSTICS
 *   Returns 0 or a negative errno; err receives a sentence naming the
 *   file and the cause ("copying tools/setup.exe to
 *   /srv/dp1/.CEN00001.new: No space left on device").  A store object
 *   that is missing, of the wrong size or shorter than its size is
 *   -EUCLEAN; a missing DP root -ENOENT; DPPATH/PKGID that is not a
 *   directory -EEXIST (dp_install) or -ENOTDIR (dp_remove), left alone;
 *   a stop request -EINTR.  On an error before the swap the staging tree
 *   is removed and the visible tree is untouched.  Logs a warning only
 *   for cleanup that failed after the outcome was decided (a staging
 *   tree that could not be removed, a replaced tree left at .PKGID.new).
 *   ss_copy_fd returns -ENODATA when the input ends before size bytes.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "dpsync.h"
#include "fsutil.h"
#include "log.h"
#include "util.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define COPY_BUF_SIZE   (1u << 20)
/* copy_file_range takes a size_t, but one call never needs to ask for
 * more than this; the loop goes on. */
#define COPY_CHUNK_MAX  ((int64_t)1 << 30)
#define PKGID_MAX       200

/* ---- copying ------------------------------------------------------- */

/* Copy size bytes from in to out at their file offsets.  *bufp is the
 * read/write buffer, allocated on first need and kept by the caller for
 * the next file.  -ENODATA when in ends early. */
static int copy_fd_buf(int in, int out, int64_t size, char **bufp)
{
    int64_t left = size;
    int use_cfr = 1;

    while (left > 0) {
        if (use_cfr) {
            size_t want = (size_t)(left < COPY_CHUNK_MAX ? left : COPY_CHUNK_MAX);
            ssize_t n = copy_file_range(in, NULL, out, NULL, want, 0);
            if (n > 0) {
                left -= n;
                continue;
            }
            if (n == 0)
                return -ENODATA;
            if (errno == EINTR)
                continue;
            /* Across file systems (before 5.3, and again for some pairs
             * from 5.19), on file systems without support, or on a kernel
             * without the call: fall back for the rest of this file.  The
             * offsets moved only by what was copied, so read/write goes
             * on from there. */
            if (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP ||
                errno == ENOSYS) {
                use_cfr = 0;
                continue;
            }
            return -errno;
        }
        if (*bufp == NULL && (*bufp = malloc(COPY_BUF_SIZE)) == NULL)
            return -ENOMEM;
        size_t want = (size_t)(left < COPY_BUF_SIZE ? left : COPY_BUF_SIZE);
        ssize_t n = read(in, *bufp, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ENODATA;
        int r = ss_write_all(out, *bufp, (size_t)n);
        if (r < 0)
            return r;
        left -= n;
    }
    return 0;
}

int ss_copy_fd(int in, int out, int64_t size)
{
    char *buf = NULL;
    int r;

    if (size < 0)
        return -EINVAL;
    r = copy_fd_buf(in, out, size, &buf);
    free(buf);
    return r;
}

/* ---- small helpers ------------------------------------------------- */

/* Fill err with the formatted text, then ": " and strerror(-r) when r is
 * an error; return r. */
static int SS_PRINTF(4, 5) seterr(char *err, size_t errlen, int r, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    if (err == NULL || errlen == 0)
        return r;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    n = strlen(err);
    if (r < 0 && n < errlen)
        snprintf(err + n, errlen - n, ": %s", strerror(-r));
    return r;
}

/* A package ID becomes a file name in the DP root, and .ID.new/.ID.old
 * beside it: one component, not hidden, short. */
static int pkgid_ok(const char *id)
{
    size_t n = id != NULL ? strlen(id) : 0;

    if (n == 0 || n > PKGID_MAX || id[0] == '.' || strchr(id, '/') != NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return 0;
    return 1;
}

/* ".ID.new" and ".ID.old". */
static int side_names(const char *pkgid, char *newname, char *oldname, size_t len)
{
    if (ss_path(newname, len, ".%s.new", pkgid) < 0 ||
        ss_path(oldname, len, ".%s.old", pkgid) < 0)
        return -ENAMETOOLONG;
    return 0;
}

static int open_dir_at(int dirfd, const char *name)
{
    return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Remove name in parent, whatever it is, never following a symbolic link.
 * Directories the manifest made read-only (0555) are made writable
 * first: they are ours.  A missing name is success. */
static int rm_tree_at(int parent, const char *name)
{
    struct stat st;
    struct dirent *de;
    DIR *d;
    int fd, r = 0;

    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    fd = open_dir_at(parent, name);
    if (fd < 0 && errno == EACCES) {
        /* Unreadable to us (mode 0 or 0111 from a manifest): fchmodat
         * follows links, so make sure it is a directory first. */
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
            fchmodat(parent, name, 0700, 0) == 0)
            fd = open_dir_at(parent, name);
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
        int e = rm_tree_at(dirfd(d), de->d_name);
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

/* renameat2 with flags; where the file system refuses the flags (EINVAL),
 * -EOPNOTSUPP so that the caller can take its fallback. */
static int rename2(int dirfd, const char *from, const char *to, unsigned flags)
{
    if (renameat2(dirfd, from, dirfd, to, flags) == 0)
        return 0;
    if (errno == EINVAL || errno == ENOSYS)
        return -EOPNOTSUPP;
    return -errno;
}

/* A directory rename that does not replace: RENAME_NOREPLACE, else (the
 * file system refuses the flag) a check then a plain rename.  link() is
 * no fallback for a directory; the check is enough because the caller
 * never runs two installs of one package on one DP at once. */
static int rename_dir_noreplace(int dirfd, const char *from, const char *to)
{
    struct stat st;
    int r = rename2(dirfd, from, to, RENAME_NOREPLACE);

    if (r != -EOPNOTSUPP)
        return r;
    if (fstatat(dirfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return -EEXIST;
    if (errno != ENOENT)
        return -errno;
    return renameat(dirfd, from, dirfd, to) == 0 ? 0 : -errno;
}

static int64_t mtime_ns_of(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static void ns_to_times(int64_t ns, struct timespec t[2])
{
    int64_t sec = ns / 1000000000, rem = ns % 1000000000;

    /* Floor division, so that times before 1970 stay right. */
    if (rem < 0) {
        rem += 1000000000;
        sec--;
    }
    t[0].tv_sec = 0;
    t[0].tv_nsec = UTIME_OMIT;          /* the access time is not ours */
    t[1].tv_sec = (time_t)sec;
    t[1].tv_nsec = (long)rem;
}

/* ---- dp_check ------------------------------------------------------ */

int dp_check(const char *dproot, char *err, size_t errlen)
{
    struct stat st;
    int r;

    if (dproot == NULL || *dproot == '\0')
        return seterr(err, errlen, -EINVAL, "no DP root path given");
    if (stat(dproot, &st) < 0) {
        r = -errno;
        if (r == -ENOENT)
            return seterr(err, errlen, r, "DP root %s does not exist", dproot);
        return seterr(err, errlen, r, "DP root %s", dproot);
    }
    if (!S_ISDIR(st.st_mode))
        return seterr(err, errlen, -ENOTDIR, "DP root %s is not a directory", dproot);
    /* AT_EACCESS: the effective IDs are the ones that will write. */
    if (faccessat(AT_FDCWD, dproot, W_OK | X_OK, AT_EACCESS) < 0)
        return seterr(err, errlen, -errno, "DP root %s is not writable", dproot);
    return 0;
}

/* ---- dp_install ---------------------------------------------------- */

struct inst {
    const char *dproot;
    const char *storedir;
    const struct manifest *m;
    int   rootfd;
    int   stagefd;
    int   visfd;                 /* the visible tree, or -1 */
    int   fsync_each;            /* fsync every file and directory */
    char *buf;                   /* copy buffer, on first need */
    struct dp_stats st;
    char  stagepath[SS_PATH_MAX];   /* dproot/.PKGID.new, for messages */
    char *err;
    size_t errlen;
};

/* The visible copy of e is unchanged: same type, size, mtime and
 * permission bits. */
static int vis_same(const struct inst *in, const struct mf_entry *e)
{
    struct stat vs;

    if (in->visfd < 0 || fstatat(in->visfd, e->path, &vs, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    return S_ISREG(vs.st_mode) && vs.st_size == e->size &&
           mtime_ns_of(&vs) == e->mtime_ns && (vs.st_mode & 07777) == (e->mode & 07777);
}

static int copy_from_store(struct inst *in, const struct mf_entry *e)
{
    char obj[SS_PATH_MAX];
    struct timespec t[2];
    struct stat os;
    int src, dst, r;

    r = store_object_path(in->storedir, e->sha, obj, sizeof obj);
    if (r < 0)
        return seterr(in->err, in->errlen, r, "store object path for %s", e->path);
    src = open(obj, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (src < 0) {
        r = -errno;
        /* A missing object is damage to the store, not a missing DP:
         * -ENOENT is kept for the DP root gone. */
        if (r == -ENOENT)
            return seterr(in->err, in->errlen, -EUCLEAN,
                          "store object %s for %s is missing", obj, e->path);
        return seterr(in->err, in->errlen, r, "opening store object %s for %s", obj, e->path);
    }
    if (fstat(src, &os) < 0) {
        r = seterr(in->err, in->errlen, -errno, "reading store object %s", obj);
        close(src);
        return r;
    }
    if (!S_ISREG(os.st_mode) || os.st_size != e->size) {
        close(src);
        return seterr(in->err, in->errlen, -EUCLEAN,
                      "store object %s for %s has the wrong size (%lld bytes, the manifest says %lld)",
                      obj, e->path, (long long)os.st_size, (long long)e->size);
    }
    dst = openat(in->stagefd, e->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 0600);
    if (dst < 0) {
        r = seterr(in->err, in->errlen, -errno, "creating %s in %s", e->path, in->stagepath);
        close(src);
        return r;
    }
    r = copy_fd_buf(src, dst, e->size, &in->buf);
    close(src);
    if (r == -ENODATA) {
        r = seterr(in->err, in->errlen, -EUCLEAN,
                   "store object %s for %s is shorter than its size", obj, e->path);
        goto fail;
    }
    if (r < 0) {
        seterr(in->err, in->errlen, r, "copying %s to %s", e->path, in->stagepath);
        goto fail;
    }
    /* Mode after the data (fchmod does not touch the mtime), mtime last. */
    ns_to_times(e->mtime_ns, t);
    if (fchmod(dst, e->mode & 07777) < 0 || futimens(dst, t) < 0) {
        r = seterr(in->err, in->errlen, -errno, "setting mode and time of %s in %s",
                   e->path, in->stagepath);
        goto fail;
    }
    if (in->fsync_each && (r = ss_fsync_fd(dst)) < 0) {
        seterr(in->err, in->errlen, r, "syncing %s in %s", e->path, in->stagepath);
        goto fail;
    }
    /* Some file systems (NFS) report a failed write only here. */
    if (close(dst) < 0) {
        dst = -1;
        r = seterr(in->err, in->errlen, -errno, "copying %s to %s", e->path, in->stagepath);
        goto fail;
    }
    in->st.copied++;
    in->st.bytes_copied += e->size;
    return 0;
fail:
    if (dst >= 0)
        close(dst);
    return r;
}

static int install_file(struct inst *in, const struct mf_entry *e)
{
    if (vis_same(in, e)) {
        if (linkat(in->visfd, e->path, in->stagefd, e->path, 0) == 0) {
            in->st.linked++;
            return 0;
        }
        /* Another file system (cannot happen beside each other, but a
         * bind mount can), too many links, or a kernel that protects hard
         * links (fs.protected_hardlinks, a file not ours), or the file
         * went away: write it from the store instead. */
        if (errno != EXDEV && errno != EMLINK && errno != EPERM && errno != ENOENT)
            return seterr(in->err, in->errlen, -errno, "linking %s into %s", e->path,
                          in->stagepath);
    }
    return copy_from_store(in, e);
}

/* Give directories their mode and mtime, deepest first (reverse path
 * order), once nothing more is created in them; with fsync_each, fsync
 * them too. */
static int finish_dirs(struct inst *in)
{
    struct timespec t[2];
    int r;

    for (size_t i = in->m->n; i-- > 0;) {
        const struct mf_entry *e = &in->m->e[i];
        if (!S_ISDIR(e->mode))
            continue;
        int fd = open_dir_at(in->stagefd, e->path);
        if (fd < 0)
            return seterr(in->err, in->errlen, -errno, "opening %s in %s", e->path,
                          in->stagepath);
        ns_to_times(e->mtime_ns, t);
        r = 0;
        if (fchmod(fd, e->mode & 07777) < 0 || futimens(fd, t) < 0)
            r = -errno;
        else if (in->fsync_each)
            r = ss_fsync_fd(fd);
        close(fd);
        if (r < 0)
            return seterr(in->err, in->errlen, r, "setting mode and time of directory %s in %s",
                          e->path, in->stagepath);
    }
    return 0;
}

/* syncfs turned out not to be trusted after all (it answers -ENOSYS):
 * fsync every file and directory of the staging tree, deepest first. */
static int fsync_tree(struct inst *in)
{
    for (size_t i = in->m->n; i-- > 0;) {
        const struct mf_entry *e = &in->m->e[i];
        int fd = openat(in->stagefd, e->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        int r = fd < 0 ? -errno : ss_fsync_fd(fd);
        if (fd >= 0)
            close(fd);
        if (r < 0)
            return seterr(in->err, in->errlen, r, "syncing %s in %s", e->path, in->stagepath);
    }
    return 0;
}

static int make_durable(struct inst *in)
{
    int r;

    if (!ss_fsync_enabled())
        return 0;
    if (!in->fsync_each) {
        r = ss_syncfs(in->stagefd);
        if (r == 0)
            return 0;
        if (r != -ENOSYS)
            return seterr(in->err, in->errlen, r, "syncing the file system of %s",
                          in->stagepath);
        if ((r = fsync_tree(in)) < 0)
            return r;
    }
    r = ss_fsync_fd(in->stagefd);
    if (r < 0)
        return seterr(in->err, in->errlen, r, "syncing %s", in->stagepath);
    return 0;
}

/* Build the staging tree's content, given stagefd. */
static int build(struct inst *in, const volatile int *stop)
{
    int r;

    for (size_t i = 0; i < in->m->n; i++) {
        const struct mf_entry *e = &in->m->e[i];

        if (stop != NULL && *stop)
            return seterr(in->err, in->errlen, -EINTR, "installing into %s was interrupted",
                          in->stagepath);
        /* The manifest came from our database or a signed instruction,
         * but a path with ".." would still write outside the tree. */
        if (!mf_path_ok(e->path))
            return seterr(in->err, in->errlen, -EINVAL, "unsafe path in the manifest: %s",
                          e->path);
        if (S_ISDIR(e->mode)) {
            /* Owner-writable until finish_dirs, whatever the manifest
             * says, or a 0555 directory could not be filled. */
            if (mkdirat(in->stagefd, e->path, 0700) < 0)
                return seterr(in->err, in->errlen, -errno, "creating directory %s in %s",
                              e->path, in->stagepath);
            in->st.dirs++;
        } else if (S_ISREG(e->mode)) {
            if ((r = install_file(in, e)) < 0)
                return r;
        } else {
            return seterr(in->err, in->errlen, -EINVAL,
                          "manifest entry %s is neither a file nor a directory", e->path);
        }
    }
    if ((r = finish_dirs(in)) < 0)
        return r;
    /* The package root is read by every client of the DP. */
    if (fchmod(in->stagefd, 0755) < 0)
        return seterr(in->err, in->errlen, -errno, "setting the mode of %s", in->stagepath);
    return make_durable(in);
}

/* Decide how to make the staging tree durable: syncfs where it reports
 * errors, else fsync each file as it is written. */
static int want_fsync_each(void)
{
    struct utsname u;

    if (!ss_fsync_enabled())
        return 0;
    return !(uname(&u) == 0 && ss_kernel_at_least(u.release, 5, 8));
}

/* Put the durable staging tree in place.  Returns 0 once it is visible. */
static int swap_in(struct inst *in, const char *pkgid, const char *newname,
                   const char *oldname)
{
    struct stat st;
    int r;

    if (fstatat(in->rootfd, pkgid, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno != ENOENT)
            return seterr(in->err, in->errlen, -errno, "examining %s/%s", in->dproot, pkgid);
        r = rename_dir_noreplace(in->rootfd, newname, pkgid);
        if (r < 0)
            return seterr(in->err, in->errlen, r, "renaming %s to %s/%s", in->stagepath,
                          in->dproot, pkgid);
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return seterr(in->err, in->errlen, -EEXIST,
                      "%s/%s exists and is not a directory; it was left alone", in->dproot,
                      pkgid);
    r = rename2(in->rootfd, newname, pkgid, RENAME_EXCHANGE);
    if (r == -EOPNOTSUPP) {
        /* No exchange on this file system: two renames.  .old was removed
         * before the build, so the first cannot replace anything. */
        r = rename_dir_noreplace(in->rootfd, pkgid, oldname);
        if (r < 0)
            return seterr(in->err, in->errlen, r, "renaming %s/%s to %s", in->dproot, pkgid,
                          oldname);
        r = rename_dir_noreplace(in->rootfd, newname, pkgid);
        if (r < 0) {
            seterr(in->err, in->errlen, r, "renaming %s to %s/%s", in->stagepath, in->dproot,
                   pkgid);
            if (renameat(in->rootfd, oldname, in->rootfd, pkgid) < 0)
                log_error("dpsync: %s/%s could not be put back from %s: %s", in->dproot,
                          pkgid, oldname, strerror(errno));
            return r;
        }
        return 0;
    }
    if (r < 0)
        return seterr(in->err, in->errlen, r, "exchanging %s with %s/%s", in->stagepath,
                      in->dproot, pkgid);
    /* The new version is visible; the old one is at .new now.  Failing to
     * move it aside is no failure of the install: the next install or
     * removal removes it as a leftover. */
    r = rename_dir_noreplace(in->rootfd, newname, oldname);
    if (r == -EEXIST && rm_tree_at(in->rootfd, oldname) == 0)
        r = rename_dir_noreplace(in->rootfd, newname, oldname);
    if (r < 0)
        log_warn("dpsync: the replaced version of %s/%s stays at %s: %s", in->dproot, pkgid,
                 newname, strerror(-r));
    return 0;
}

int dp_install(const char *dproot, const char *pkgid, const struct manifest *m,
               const char *storedir, const volatile int *stop,
               struct dp_stats *st, char *err, size_t errlen)
{
    char newname[SS_NAME_MAX + 1], oldname[SS_NAME_MAX + 1];
    struct inst in;
    struct stat vs;
    int r, staged = 0;

    if (st != NULL)
        memset(st, 0, sizeof *st);
    if (!pkgid_ok(pkgid))
        return seterr(err, errlen, -EINVAL, "bad package ID \"%s\"", pkgid ? pkgid : "");
    if (m == NULL || storedir == NULL)
        return seterr(err, errlen, -EINVAL, "no manifest or store given");
    if ((r = dp_check(dproot, err, errlen)) < 0)
        return r;

    memset(&in, 0, sizeof in);
    in.dproot = dproot;
    in.storedir = storedir;
    in.m = m;
    in.rootfd = in.stagefd = in.visfd = -1;
    in.err = err;
    in.errlen = errlen;
    in.fsync_each = want_fsync_each();
    if (side_names(pkgid, newname, oldname, sizeof newname) < 0 ||
        ss_path(in.stagepath, sizeof in.stagepath, "%s/%s", dproot, newname) < 0)
        return seterr(err, errlen, -ENAMETOOLONG, "DP path %s/%s is too long", dproot, pkgid);

    in.rootfd = open(dproot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (in.rootfd < 0)
        return seterr(err, errlen, -errno, "opening DP root %s", dproot);

    /* Refuse before touching anything when the name is taken by
     * something that is not a package tree. */
    if (fstatat(in.rootfd, pkgid, &vs, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISDIR(vs.st_mode)) {
            r = seterr(err, errlen, -EEXIST,
                       "%s/%s exists and is not a directory; it was left alone", dproot, pkgid);
            goto out;
        }
        in.visfd = open_dir_at(in.rootfd, pkgid);
        if (in.visfd < 0) {
            r = seterr(err, errlen, -errno, "opening %s/%s", dproot, pkgid);
            goto out;
        }
    } else if (errno != ENOENT) {
        r = seterr(err, errlen, -errno, "examining %s/%s", dproot, pkgid);
        goto out;
    }

    /* An interrupted install, then the generation before the visible one
     * (kept until now for clients still reading it). */
    if ((r = rm_tree_at(in.rootfd, newname)) < 0) {
        seterr(err, errlen, r, "removing the leftover %s", in.stagepath);
        goto out;
    }
    if ((r = rm_tree_at(in.rootfd, oldname)) < 0) {
        seterr(err, errlen, r, "removing the previous version %s/%s", dproot, oldname);
        goto out;
    }

    if (mkdirat(in.rootfd, newname, 0700) < 0) {
        r = seterr(err, errlen, -errno, "creating %s", in.stagepath);
        goto out;
    }
    staged = 1;
    in.stagefd = open_dir_at(in.rootfd, newname);
    if (in.stagefd < 0) {
        r = seterr(err, errlen, -errno, "opening %s", in.stagepath);
        goto out;
    }
    if ((r = build(&in, stop)) < 0)
        goto out;
    if ((r = swap_in(&in, pkgid, newname, oldname)) < 0)
        goto out;
    staged = 0;
    /* The new version is visible now; it is durable once the DP
     * directory's new entries are. */
    if ((r = ss_fsync_fd(in.rootfd)) < 0)
        seterr(err, errlen, r, "syncing DP root %s", dproot);

out:
    if (in.stagefd >= 0)
        close(in.stagefd);
    if (in.visfd >= 0)
        close(in.visfd);
    if (staged) {
        int e = rm_tree_at(in.rootfd, newname);
        if (e < 0)
            log_warn("dpsync: cannot remove the staging tree %s: %s", in.stagepath,
                     strerror(-e));
    }
    if (in.rootfd >= 0)
        close(in.rootfd);
    free(in.buf);
    if (st != NULL)
        *st = in.st;
    return r;
}

/* ---- dp_remove ----------------------------------------------------- */

int dp_remove(const char *dproot, const char *pkgid, char *err, size_t errlen)
{
    char newname[SS_NAME_MAX + 1], oldname[SS_NAME_MAX + 1];
    struct stat st;
    int rootfd, r;

    if (!pkgid_ok(pkgid))
        return seterr(err, errlen, -EINVAL, "bad package ID \"%s\"", pkgid ? pkgid : "");
    if (dproot == NULL || *dproot == '\0')
        return seterr(err, errlen, -EINVAL, "no DP root path given");
    if (side_names(pkgid, newname, oldname, sizeof newname) < 0)
        return seterr(err, errlen, -ENAMETOOLONG, "DP path %s/%s is too long", dproot, pkgid);
    rootfd = open(dproot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        r = -errno;
        if (r == -ENOENT)
            return seterr(err, errlen, r, "DP root %s does not exist", dproot);
        return seterr(err, errlen, r, "opening DP root %s", dproot);
    }

    /* The visible tree first moves to a hidden name, in one rename: a
     * client then finds either the whole package or none, never a tree
     * with half its files removed. */
    if ((r = rm_tree_at(rootfd, oldname)) < 0) {
        seterr(err, errlen, r, "removing %s/%s", dproot, oldname);
        goto out;
    }
    if (fstatat(rootfd, pkgid, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            r = seterr(err, errlen, -ENOTDIR,
                       "%s/%s is not a directory; it was left alone", dproot, pkgid);
            goto out;
        }
        if ((r = rename_dir_noreplace(rootfd, pkgid, oldname)) < 0) {
            seterr(err, errlen, r, "renaming %s/%s to %s", dproot, pkgid, oldname);
            goto out;
        }
        if ((r = ss_fsync_fd(rootfd)) < 0) {
            seterr(err, errlen, r, "syncing DP root %s", dproot);
            goto out;
        }
        if ((r = rm_tree_at(rootfd, oldname)) < 0) {
            seterr(err, errlen, r, "removing %s/%s", dproot, oldname);
            goto out;
        }
    } else if (errno != ENOENT) {
        r = seterr(err, errlen, -errno, "examining %s/%s", dproot, pkgid);
        goto out;
    }
    if ((r = rm_tree_at(rootfd, newname)) < 0) {
        seterr(err, errlen, r, "removing %s/%s", dproot, newname);
        goto out;
    }
    r = ss_fsync_fd(rootfd);
    if (r < 0)
        seterr(err, errlen, r, "syncing DP root %s", dproot);
out:
    close(rootfd);
    return r;
}
