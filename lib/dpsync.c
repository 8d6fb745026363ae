/*
 * dpsync.c - bringing a distribution point to a package version.
 *
 * SYNOPSIS
 *   dp_check      is a DP root an existing directory we may write into
 *   dp_install    build DPPATH/.PKGID.new, make it durable, swap it in
 *   dp_sweep      remove the DPPATH/.PKGID.trash-* trees installs set aside
 *   dp_remove     remove DPPATH/PKGID and its .new/.old/.trash-* trees
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
 *   never modified.  Other files are written from the content store
 *   under their final names (the staging tree is invisible, so no
 *   temporary name is needed inside it), then given the manifest's mode
 *   and mtime.  One store reader (store_get) serves the whole install and
 *   every thread of it: a small object (STORE_SMALL) arrives as a row of
 *   store/small.db in the thread's own buffer and is written with one
 *   write; a loose one is copied from its file with copy_file_range.
 *   Directories are created owner-writable and get their own mode and
 *   mtime last, deepest first, once nothing more is created in them.
 *
 *   Files are written by a small crew of threads (DP_THREADS), once the
 *   calling thread has created every directory: most of the time of a
 *   file creation is spent in the kernel waiting for the file system's
 *   metadata (inode bitmaps, the journal), not on a CPU, so several
 *   creators overlap those waits even on a machine with few cores.  Each
 *   takes the next file from a shared index over the manifest; the first
 *   error (or a stop request) makes every one of them stop before its
 *   next file, and is the one reported.
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
 *   Removing a tree of thousands of files takes as long as a good part of
 *   an install, so the next install does not remove .old: it renames it,
 *   in one call, to DPPATH/.PKGID.trash-<16 hex digits> (a name never
 *   used twice, so that trees set aside by several installs never meet),
 *   and the caller removes the trash later, once the new version is
 *   recorded, with dp_sweep.  A leftover .PKGID.new is still removed
 *   first: it exists only after a crash.
 *
 *   Where a file system refuses RENAME_EXCHANGE (EINVAL: some network
 *   file systems), the swap is two renames: the visible tree to .old,
 *   then the staging tree in.  A reader may then find no package for a
 *   moment, but still never a mix of two versions.
 *
 *   Everything is done relative to a descriptor of the DP root, and
 *   nothing follows a symbolic link inside it.  Memory does not grow with
 *   the package: per thread, one STORE_SMALL_MAX buffer for small objects
 *   and one copy buffer allocated only when copy_file_range cannot be
 *   used, each allocated on first need and kept for the thread's next
 *   files.
 *
 * DIAGNOSTICS
 *   Returns 0 or a negative errno; err receives a sentence naming the
 *   file and the cause ("copying tools/setup.exe to
 *   /srv/dp1/.CEN00001.new: No space left on device").  A store object
 *   that is missing (a loose file or a row of small.db alike), of the
 *   wrong size or shorter than its size is -EUCLEAN, and so is a store
 *   that cannot be found; a missing DP root -ENOENT; DPPATH/PKGID that is not a
 *   directory -EEXIST (dp_install) or -ENOTDIR (dp_remove), left alone;
 *   a stop request -EINTR.  On an error before the swap the staging tree
 *   is removed and the visible tree is untouched.  Logs a warning only
 *   for cleanup that failed after the outcome was decided (a staging
 *   tree that could not be removed, a replaced tree left at .PKGID.new,
 *   a trash tree dp_sweep could not remove).  ss_copy_fd returns -ENODATA
 *   when the input ends before size bytes.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
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

/* Threads that write a package's files.  Creating a file on ext4 spends
 * most of its time blocked in the kernel (reading inode bitmaps,
 * waiting on the journal) rather than on a CPU, so a few creators overlap
 * those waits even on 2 cores; beyond about 4 they mostly queue on the
 * same directory locks and journal, and every thread may hold a 1 MB copy
 * buffer.  A manifest gets one thread per DP_FILES_PER_THREAD files, so
 * that small packages do not pay for starting threads. */
#ifndef DP_THREADS
#define DP_THREADS          4
#endif
#define DP_FILES_PER_THREAD 64

#define TRASH_TAG       ".trash-"
#define TRASH_HEX       16              /* hex digits after TRASH_TAG */

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

/* ---- trash ------------------------------------------------------- */

/* 16 hex digits nobody used before: random, or, where getrandom cannot
 * answer at once, the clock, the process and a counter of this process. */
static void trash_suffix(char hex[TRASH_HEX + 1])
{
    static atomic_uint_fast64_t seq;
    uint64_t v;

    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
            ((uint64_t)getpid() << 40) ^ (atomic_fetch_add(&seq, 1) << 20);
    }
    ss_hex(&v, sizeof v, hex);
}

/* Is name one of pkgid's trash trees: "." pkgid ".trash-" and exactly
 * TRASH_HEX hex digits, the only names set_aside makes?  Matching no
 * looser than that keeps another package's names (an ID may contain
 * ".trash-") out of reach. */
static int is_trash(const char *name, const char *pkgid)
{
    size_t n = strlen(pkgid), t = strlen(TRASH_TAG);

    if (name[0] != '.' || strncmp(name + 1, pkgid, n) != 0 ||
        strncmp(name + 1 + n, TRASH_TAG, t) != 0)
        return 0;
    name += 1 + n + t;
    for (size_t i = 0; i < TRASH_HEX; i++)
        if (ss_hexval((unsigned char)name[i]) < 0)
            return 0;
    return name[TRASH_HEX] == '\0';
}

/* Move name (pkgid's .old tree) out of the way in one rename, to a fresh
 * trash name for dp_sweep.  A missing name is success.  Where the rename
 * fails for another reason than a name already taken (which a fresh
 * random name makes all but impossible, and is retried), the tree is
 * removed in place, as before there was trash. */
static int set_aside(int rootfd, const char *pkgid, const char *name)
{
    char trash[SS_NAME_MAX + 1], hex[TRASH_HEX + 1];
    int r = -EEXIST;

    for (int tries = 0; tries < 8 && r == -EEXIST; tries++) {
        trash_suffix(hex);
        if (ss_path(trash, sizeof trash, ".%s" TRASH_TAG "%s", pkgid, hex) < 0)
            return -ENAMETOOLONG;
        r = rename_dir_noreplace(rootfd, name, trash);
    }
    if (r == 0 || r == -ENOENT)
        return 0;
    return ss_rm_rf_at(rootfd, name);
}

/* Remove every trash tree of pkgid in the directory rootfd (dproot, for
 * messages).  The first error is returned after trying them all; each
 * tree that stays is logged. */
static int sweep_at(int rootfd, const char *dproot, const char *pkgid, size_t *removed)
{
    struct dirent *de;
    DIR *d;
    int fd, r = 0;

    fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (d == NULL) {
        r = -errno;
        close(fd);
        return r;
    }
    /* Entries removed behind the cursor do not disturb readdir. */
    while ((de = readdir(d)) != NULL) {
        if (!is_trash(de->d_name, pkgid))
            continue;
        int e = ss_rm_rf_at(dirfd(d), de->d_name);
        if (e < 0) {
            log_warn("dpsync: cannot remove the set-aside tree %s/%s: %s", dproot,
                     de->d_name, strerror(-e));
            if (r == 0)
                r = e;
            continue;
        }
        if (removed != NULL)
            (*removed)++;
    }
    closedir(d);
    return r;
}

int dp_sweep(const char *dproot, const char *pkgid, size_t *removed)
{
    int rootfd, r;

    if (removed != NULL)
        *removed = 0;
    if (!pkgid_ok(pkgid) || dproot == NULL || *dproot == '\0')
        return -EINVAL;
    rootfd = open(dproot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return -errno;
    r = sweep_at(rootfd, dproot, pkgid, removed);
    close(rootfd);
    return r;
}

/* ---- dp_install ---------------------------------------------------- */

struct inst {
    const char *dproot;
    const char *storedir;
    const struct manifest *m;
    struct store_reader *rd;     /* shared by the crew: store_get is thread safe */
    int   rootfd;
    int   stagefd;
    int   visfd;                 /* the visible tree, or -1 */
    int   fsync_each;            /* fsync every file and directory */
    struct dp_stats st;
    char  stagepath[SS_PATH_MAX];   /* dproot/.PKGID.new, for messages */
    char *err;
    size_t errlen;
};

/* What the file crew shares.  inst is only read while the crew runs. */
struct crew {
    const struct inst  *in;
    const volatile int *stop;
    atomic_size_t next;          /* the next manifest index to take */
    atomic_int    failed;        /* someone failed: stop before the next file */
    pthread_mutex_t mu;          /* guards r and in->err */
    int           r;             /* the first error */
};

/* One member of the crew: its own buffer, message and counts, summed by
 * the caller after the join, so that no count is shared. */
struct worker {
    struct crew *c;
    char   *buf;                 /* copy buffer, on first need */
    void   *small;               /* STORE_SMALL_MAX bytes for a small object, on first need */
    size_t  linked, copied;
    int64_t bytes;
    char    err[SS_ERR_MAX];
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

/* How messages name e's store object: its loose file, or its SHA-256
 * in small.db. */
static void object_name(const struct inst *in, const struct mf_entry *e, char *buf,
                        size_t len)
{
    char hex[2 * 32 + 1];

    ss_hex(e->sha, 32, hex);
    if (STORE_SMALL(e->size)) {
        if (ss_path(buf, len, "%s in %s/small.db", hex, in->storedir) == 0)
            return;
    } else if (store_object_path(in->storedir, e->sha, buf, len) == 0) {
        return;
    }
    ss_strcpy(buf, len, hex);         /* too long to name in full: the hash says it */
}

/* Write e from the store into the staging tree: a small object from the
 * worker's buffer, a loose one copied from its file. */
static int copy_from_store(struct worker *w, const struct mf_entry *e)
{
    const struct inst *in = w->c->in;
    char obj[SS_PATH_MAX];
    struct timespec t[2];
    int src = -1, dst, r;

    if (e->size < 0)
        return seterr(w->err, sizeof w->err, -EINVAL,
                      "manifest entry %s has a negative size", e->path);
    if (STORE_SMALL(e->size) && w->small == NULL && (w->small = malloc(STORE_SMALL_MAX)) == NULL)
        return seterr(w->err, sizeof w->err, -ENOMEM, "reading the store object for %s",
                      e->path);
    /* The object is fetched before its file is created, so that a damaged
     * store leaves nothing half written behind. */
    r = store_get(in->rd, e->sha, e->size, w->small, &src);
    if (r < 0) {
        object_name(in, e, obj, sizeof obj);
        /* A missing object is damage to the store, not a missing DP:
         * -ENOENT is kept for the DP root gone. */
        if (r == -ENOENT)
            return seterr(w->err, sizeof w->err, -EUCLEAN,
                          "store object %s for %s is missing", obj, e->path);
        if (r == -EUCLEAN)
            return seterr(w->err, sizeof w->err, -EUCLEAN,
                          "store object %s for %s has the wrong size (the manifest says %lld bytes)",
                          obj, e->path, (long long)e->size);
        return seterr(w->err, sizeof w->err, r, "reading store object %s for %s", obj,
                      e->path);
    }
    dst = openat(in->stagefd, e->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 0600);
    if (dst < 0) {
        r = seterr(w->err, sizeof w->err, -errno, "creating %s in %s", e->path, in->stagepath);
        if (src >= 0)
            close(src);
        return r;
    }
    if (src >= 0) {
        r = copy_fd_buf(src, dst, e->size, &w->buf);
        close(src);
    } else {
        r = ss_write_all(dst, w->small, (size_t)e->size);
    }
    if (r == -ENODATA) {
        object_name(in, e, obj, sizeof obj);
        r = seterr(w->err, sizeof w->err, -EUCLEAN,
                   "store object %s for %s is shorter than its size", obj, e->path);
        goto fail;
    }
    if (r < 0) {
        seterr(w->err, sizeof w->err, r, "copying %s to %s", e->path, in->stagepath);
        goto fail;
    }
    /* Mode after the data (fchmod does not touch the mtime), mtime last. */
    ns_to_times(e->mtime_ns, t);
    if (fchmod(dst, e->mode & 07777) < 0 || futimens(dst, t) < 0) {
        r = seterr(w->err, sizeof w->err, -errno, "setting mode and time of %s in %s",
                   e->path, in->stagepath);
        goto fail;
    }
    /* The thread that wrote the file syncs it: nobody else has it open. */
    if (in->fsync_each && (r = ss_fsync_fd(dst)) < 0) {
        seterr(w->err, sizeof w->err, r, "syncing %s in %s", e->path, in->stagepath);
        goto fail;
    }
    /* Some file systems (NFS) report a failed write only here. */
    if (close(dst) < 0) {
        dst = -1;
        r = seterr(w->err, sizeof w->err, -errno, "copying %s to %s", e->path,
                   in->stagepath);
        goto fail;
    }
    w->copied++;
    w->bytes += e->size;
    return 0;
fail:
    if (dst >= 0)
        close(dst);
    return r;
}

static int install_file(struct worker *w, const struct mf_entry *e)
{
    const struct inst *in = w->c->in;

    if (vis_same(in, e)) {
        if (linkat(in->visfd, e->path, in->stagefd, e->path, 0) == 0) {
            w->linked++;
            return 0;
        }
        /* Another file system (cannot happen beside each other, but a
         * bind mount can), too many links, or a kernel that protects hard
         * links (fs.protected_hardlinks, a file not ours), or the file
         * went away: write it from the store instead. */
        if (errno != EXDEV && errno != EMLINK && errno != EPERM && errno != ENOENT)
            return seterr(w->err, sizeof w->err, -errno, "linking %s into %s", e->path,
                          in->stagepath);
    }
    return copy_from_store(w, e);
}

/* Keep the first error of the crew (with its message) and make the others
 * stop before their next file. */
static void crew_fail(struct worker *w, int r)
{
    struct crew *c = w->c;

    pthread_mutex_lock(&c->mu);
    if (c->r == 0) {
        c->r = r;
        if (c->in->err != NULL && c->in->errlen > 0)
            ss_strcpy(c->in->err, c->in->errlen, w->err);   /* truncation is fine */
    }
    pthread_mutex_unlock(&c->mu);
    atomic_store(&c->failed, 1);
}

/* Take files from the shared index until there are none left, someone
 * failed, or a stop is requested. */
static void crew_work(struct worker *w)
{
    struct crew *c = w->c;
    const struct manifest *m = c->in->m;
    int r;

    while (!atomic_load_explicit(&c->failed, memory_order_relaxed)) {
        if (c->stop != NULL && *c->stop) {
            crew_fail(w, seterr(w->err, sizeof w->err, -EINTR,
                                "installing into %s was interrupted", c->in->stagepath));
            return;
        }
        size_t i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= m->n)
            return;
        if (!S_ISREG(m->e[i].mode))
            continue;
        if ((r = install_file(w, &m->e[i])) < 0) {
            crew_fail(w, r);
            return;
        }
    }
}

static void *crew_main(void *arg)
{
    crew_work(arg);
    return NULL;
}

/* Write the files of the manifest into the staging tree, whose
 * directories all exist, with up to DP_THREADS threads (the calling
 * thread is one of them); join them, then add their counts to in->st.
 * 0 or the first error, whose message is in in->err. */
static int write_files(struct inst *in, size_t files, const volatile int *stop)
{
    struct worker w[DP_THREADS];
    pthread_t tid[DP_THREADS];
    struct crew c;
    size_t n, started = 1;

    if (files == 0)
        return 0;
    n = (files + DP_FILES_PER_THREAD - 1) / DP_FILES_PER_THREAD;
    if (n > DP_THREADS)
        n = DP_THREADS;
    memset(&c, 0, sizeof c);
    c.in = in;
    c.stop = stop;
    atomic_init(&c.next, 0);
    atomic_init(&c.failed, 0);
    pthread_mutex_init(&c.mu, NULL);
    memset(w, 0, sizeof w);
    for (size_t k = 0; k < n; k++)
        w[k].c = &c;

    /* The crew takes no asynchronous signal (ss_thread_create): the
     * caller's handlers keep running on the threads it expects.  A thread
     * that cannot be started is no error: the others take its share. */
    for (; started < n; started++)
        if (ss_thread_create(&tid[started], crew_main, &w[started]) < 0)
            break;
    crew_work(&w[0]);
    for (size_t k = 1; k < started; k++)
        pthread_join(tid[k], NULL);

    for (size_t k = 0; k < n; k++) {
        in->st.linked += w[k].linked;
        in->st.copied += w[k].copied;
        in->st.bytes_copied += w[k].bytes;
        free(w[k].buf);
        free(w[k].small);
    }
    pthread_mutex_destroy(&c.mu);
    return c.r;
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

/* Build the staging tree's content, given stagefd: every directory first,
 * in manifest (path) order on this thread, which puts each before its
 * contents; then the files, by the crew; then the directories' modes and
 * times; then durability. */
static int build(struct inst *in, const volatile int *stop)
{
    size_t files = 0;
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
            files++;
        } else {
            return seterr(in->err, in->errlen, -EINVAL,
                          "manifest entry %s is neither a file nor a directory", e->path);
        }
    }
    if ((r = write_files(in, files, stop)) < 0)
        return r;
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
        /* No exchange on this file system: two renames.  .old was set
         * aside before the build, so the first cannot replace anything. */
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
    if (r == -EEXIST && set_aside(in->rootfd, pkgid, oldname) == 0)
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

    /* One reader for the whole install, opened before anything on the DP
     * is touched (it makes a missing small.db, empty, like store_init).
     * A store that still cannot be found is damage to the store, like an
     * object that is missing: -ENOENT stays for a missing DP root. */
    if ((r = store_reader_open(storedir, &in.rd)) < 0) {
        if (r == -ENOENT)
            return seterr(err, errlen, -EUCLEAN, "the store %s cannot be found", storedir);
        return seterr(err, errlen, r, "opening the store %s", storedir);
    }
    in.rootfd = open(dproot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (in.rootfd < 0) {
        r = seterr(err, errlen, -errno, "opening DP root %s", dproot);
        store_reader_close(in.rd);
        return r;
    }

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

    /* An interrupted install is removed; the generation before the
     * visible one (kept until now for clients still reading it) only
     * moves to a trash name, for dp_sweep to remove after the install. */
    if ((r = ss_rm_rf_at(in.rootfd, newname)) < 0) {
        seterr(err, errlen, r, "removing the leftover %s", in.stagepath);
        goto out;
    }
    if ((r = set_aside(in.rootfd, pkgid, oldname)) < 0) {
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
        int e = ss_rm_rf_at(in.rootfd, newname);
        if (e < 0)
            log_warn("dpsync: cannot remove the staging tree %s: %s", in.stagepath,
                     strerror(-e));
    }
    if (in.rootfd >= 0)
        close(in.rootfd);
    store_reader_close(in.rd);
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
    if ((r = ss_rm_rf_at(rootfd, oldname)) < 0) {
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
        if ((r = ss_rm_rf_at(rootfd, oldname)) < 0) {
            seterr(err, errlen, r, "removing %s/%s", dproot, oldname);
            goto out;
        }
    } else if (errno != ENOENT) {
        r = seterr(err, errlen, -errno, "examining %s/%s", dproot, pkgid);
        goto out;
    }
    if ((r = ss_rm_rf_at(rootfd, newname)) < 0) {
        seterr(err, errlen, r, "removing %s/%s", dproot, newname);
        goto out;
    }
    if ((r = sweep_at(rootfd, dproot, pkgid, NULL)) < 0) {
        seterr(err, errlen, r, "removing the set-aside trees .%s" TRASH_TAG "* in %s", pkgid,
               dproot);
        goto out;
    }
    r = ss_fsync_fd(rootfd);
    if (r < 0)
        seterr(err, errlen, r, "syncing DP root %s", dproot);
out:
    close(rootfd);
    return r;
}
