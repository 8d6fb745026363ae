/*
 * manifest.h - a package source version: its file list, the walk of a
 * source directory that makes one, the content store it fills, and the
 * diff between two versions (SPEC 3, issue 3).
 *
 * A manifest is a list of entries sorted by path (bytewise, strcmp), one
 * per directory and regular file of the source tree below its root (the
 * root itself is not an entry).  Paths are relative, '/' separated, with
 * no empty, "." or ".." component and no leading or trailing '/'.
 *
 * The content store (<root>/store) keeps every file's content once, named
 * by its SHA-256: store/objects/<first 2 hex>/<64 hex>.  An object is
 * complete when it has its name (written in store/.tmp as an O_TMPFILE
 * inode and linked in, or, where the file system has no O_TMPFILE, as a
 * named temporary file renamed in; never replacing), and is never
 * modified afterwards.
 */
#ifndef SITESRV_MANIFEST_H
#define SITESRV_MANIFEST_H

#include <sqlite3.h>
#include <sys/types.h>
#include "common.h"
#include "util.h"

struct mf_entry {
    char         *path;        /* malloc'ed */
    unsigned      mode;        /* st_mode: S_IFDIR or S_IFREG | permission bits (07777) */
    int64_t       size;        /* bytes; 0 for a directory */
    int64_t       mtime_ns;    /* modification time, ns since the epoch */
    unsigned char sha[32];     /* content SHA-256; zero for a directory */
};

struct manifest {
    struct mf_entry *e;
    size_t  n, cap;
    int64_t files;             /* regular files */
    int64_t bytes;             /* sum of their sizes */
};

void mf_init(struct manifest *m);
void mf_free(struct manifest *m);
/* Append a copy of *e (path duplicated); updates files/bytes.  The caller
 * calls mf_sort() when done unless it appended in order. */
int  mf_add(struct manifest *m, const struct mf_entry *e);
void mf_sort(struct manifest *m);
/* Entry for path, or NULL (binary search; m sorted). */
const struct mf_entry *mf_find(const struct manifest *m, const char *path);
/* Is path a safe manifest path (rules above; at most 4095 bytes, valid
 * UTF-8 not required but no NUL, no control byte)?  1/0. */
int  mf_path_ok(const char *path);
/* Same content and metadata (mode, size, mtime, sha)?  1/0. */
int  mf_entry_same(const struct mf_entry *a, const struct mf_entry *b);
/* Identical manifests (every entry mf_entry_same)?  1/0. */
int  mf_equal(const struct manifest *a, const struct manifest *b);

/* Diff of two versions.  old may be NULL (everything is added).  cb is
 * called once per path of the union, in path order, with kind MF_ADDED
 * (only in new), MF_REMOVED (only in old), MF_CHANGED (both, not
 * mf_entry_same) or MF_UNCHANGED; a non-zero return stops and is
 * returned.  *st (may be NULL) counts each kind. */
enum mf_change { MF_UNCHANGED, MF_ADDED, MF_REMOVED, MF_CHANGED };
struct mf_diffstat { size_t unchanged, added, removed, changed; };
typedef int (*mf_diff_cb)(void *arg, enum mf_change kind,
                          const struct mf_entry *oldent, const struct mf_entry *newent);
int mf_diff(const struct manifest *old, const struct manifest *cur,
            mf_diff_cb cb, void *arg, struct mf_diffstat *st);

/* --- the content store --- */

/* store/objects/<aa>/<hex> for sha under storedir. */
int  store_object_path(const char *storedir, const unsigned char sha[32],
                       char *buf, size_t len);
/* 1 if the object exists, 0 if not, -errno if that cannot be told. */
int  store_has(const char *storedir, const unsigned char sha[32]);
/* Create storedir/objects, its 256 fan-out directories 00..ff, and
 * storedir/.tmp if missing (one stat when objects/ff exists).  Writers
 * still make a missing fan-out directory of a store an older build made. */
int  store_init(const char *storedir);
/* Remove the object (ENOENT is success). */
int  store_remove(const char *storedir, const unsigned char sha[32]);

/* --- a source version --- */

struct mf_snapstat {
    size_t  hashed;            /* files read and hashed */
    size_t  reused;            /* files whose hash came from prev (size and mtime equal) */
    size_t  stored;            /* new objects written to the store */
    int64_t bytes_hashed;
};

/*
 * Walk srcdir and build its manifest in *out (sorted).  Regular files
 * and directories only: a symbolic link, device, FIFO or socket anywhere
 * in the tree refuses the walk with -EINVAL and err naming it (never
 * followed).  A file of prev (may be NULL) with the same path, type, size
 * and mtime keeps prev's hash without being read, provided its object is
 * in the store; any other file is read once, hashed (SHA-256) and, when
 * the store lacks the object, written to it (store/.tmp, then a link or
 * rename that never replaces).  Objects are not fsync'ed one by one: the
 * caller makes the store durable (syncfs) before it records the version.
 *
 * The tree is walked on the calling thread; the files to read are then
 * read by a crew of up to 4 threads (the caller's and 3 more, one per 32
 * files to read, with all signals blocked), joined before the return.
 * The result does not depend on the crew: same manifest, same counts.
 *
 * A file that changes while it is read (size, mtime or ctime differ
 * between the fstat before and after -- the kernel moves ctime on every
 * write, even one that puts the mtime back -- or the bytes read differ
 * from the size), or an entry that vanishes or is replaced during the
 * walk, refuses
 * the walk with -EAGAIN, err naming it: the caller retries the version
 * later, it is never stored torn.  Missing or unreadable srcdir: -ENOENT,
 * -ENOTDIR, -EACCES with err.  stop (may be NULL) is polled between files
 * (by every reader): -EINTR when it becomes non-zero.  When several files
 * fail at once the first error recorded is returned, err naming its file.
 * Memory: the manifest, one 16-byte job per file to read, and one 1 MiB
 * read buffer per reader (4 at most), never a whole file.
 */
int mf_snapshot(const char *srcdir, const struct manifest *prev, const char *storedir,
                struct manifest *out, struct mf_snapstat *st,
                const volatile int *stop, char *err, size_t errlen);

/* --- in the site database (tables pkg_version and manifest, migration 2) --- */

/* Insert the manifest rows of (pkg, version); the caller holds the
 * transaction and inserts the pkg_version row itself. */
int mf_db_save(sqlite3 *db, const char *pkg, long long version, const struct manifest *m);
/* Load (pkg, version); an empty manifest when it has no rows. */
int mf_db_load(sqlite3 *db, const char *pkg, long long version, struct manifest *m);

/* --- as text, for instructions to other sites --- */

/* Append one field per entry, in order:
 *   file=<mode octal> <size> <mtime_ns> <sha hex> <path>
 *   dir=<mode octal> <mtime_ns> <path>
 * (the path is last, so it may hold spaces). */
int mf_to_record(const struct manifest *m, struct sbuf *b);
struct rec;
/* Read those fields back (other fields ignored); refuses a malformed
 * line, an unsafe path (mf_path_ok), a duplicate path, or a file whose
 * parent directory is not listed, with -EBADMSG and err. */
int mf_from_record(const struct rec *r, struct manifest *m, char *err, size_t errlen);

#endif
