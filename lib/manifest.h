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
 * The content store (<root>/store) keeps every file's content once, by
 * its SHA-256.  Where an object lives follows from its size alone:
 *   - smaller than STORE_SMALL_MAX: a row of store/small.db (SQLite, WAL;
 *     table object(sha BLOB PRIMARY KEY, data BLOB)).  A package is mostly
 *     small files, and a file each would cost an inode each, which is
 *     what a distribution spends its time on (the DP needs one per file;
 *     the store does not);
 *   - else a loose file store/objects/<first 2 hex>/<64 hex>, complete
 *     when it has its name (written in store/.tmp as an O_TMPFILE inode
 *     and linked in, or, where the file system has no O_TMPFILE, as a
 *     named temporary file renamed in; never replacing), and never
 *     modified afterwards.
 * Readers and writers never guess: the manifest gives every file's size.
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

#define STORE_SMALL_MAX (64 * 1024)     /* objects of fewer bytes live in small.db */
#define STORE_SMALL(size) ((size) < STORE_SMALL_MAX)

/* store/objects/<aa>/<hex> for sha under storedir (a loose object). */
int  store_object_path(const char *storedir, const unsigned char sha[32],
                       char *buf, size_t len);
/* Loose objects only: 1 if it exists, 0 if not, -errno if that cannot be told. */
int  store_has(const char *storedir, const unsigned char sha[32]);
/* Create storedir/objects, its 256 fan-out directories 00..ff, storedir/.tmp
 * and storedir/small.db (its schema) if missing (one stat when objects/ff
 * exists).  Writers still make a missing fan-out directory of a store an
 * older build made. */
int  store_init(const char *storedir);
/* Remove a loose object (ENOENT is success). */
int  store_remove(const char *storedir, const unsigned char sha[32]);

/*
 * The store's lock (flock on storedir/.lock), between processes and
 * threads alike (each call opens its own descriptor).  Every writer of
 * objects that a manifest will reference holds it shared (exclusive = 0)
 * from before it decides an object exists until that manifest is
 * committed; the removal of unreferenced objects holds it exclusively
 * while it checks and removes.  So an object about to be referenced is
 * never removed.  Returns the descriptor holding the lock, or -errno;
 * store_unlock(fd) releases it (fd < 0 is ignored).
 */
int  store_lock(const char *storedir, int exclusive);
/* The same, giving up when *stop becomes non-zero (-EINTR): the lock is
 * asked without blocking and again every 20 ms, so that a daemon that
 * stops does not wait for the other holder.  stop may be NULL (then it
 * is store_lock). */
int  store_lock_stop(const char *storedir, int exclusive, const volatile int *stop);
void store_unlock(int fd);
/* Make every object written to the store durable (one syncfs of its file
 * system; sync(2) where syncfs cannot report errors), before a manifest
 * that names them is committed.  0 or -errno. */
int  store_sync(const char *storedir);

/*
 * Reading objects, for DP installs and package files.  A reader holds one
 * read-only connection to small.db; store_get is thread safe (the
 * connection is used under a mutex, microseconds per object).
 * store_get(r, sha, size, buf, &fd): for a small object (STORE_SMALL(size))
 * its bytes are copied into buf (size bytes) and *fd = -1; for a loose one
 * *fd is the object opened read-only (the caller closes it).  -ENOENT when
 * missing, -EUCLEAN when it has another size than asked.
 */
struct store_reader;
int  store_reader_open(const char *storedir, struct store_reader **r);
void store_reader_close(struct store_reader *r);
int  store_get(struct store_reader *r, const unsigned char sha[32], int64_t size,
               void *buf, int *fd);

/*
 * Writing objects (mf_snapshot uses one internally; pck_extract too).
 * Small objects go into small.db transactions, committed every 512 rows,
 * 8 MiB or second, also while a walk reads a large file (so that other
 * writers are not kept waiting for a whole walk)
 * and by store_writer_commit, which makes them durable; loose ones are
 * written by the caller as above.
 * store_writer_has: 1/0/-errno for (sha, size), small ones including those
 * put in this writer's transaction.  store_put_small: INSERT OR IGNORE (an
 * object another writer stored is the same bytes).  All three are thread
 * safe.  store_writer_close rolls back what was not committed; rows of
 * earlier batches stay, unreferenced, until distmgr collects them.
 */
struct store_writer;
int  store_writer_open(const char *storedir, struct store_writer **w);
int  store_writer_has(struct store_writer *w, const unsigned char sha[32], int64_t size);
int  store_put_small(struct store_writer *w, const unsigned char sha[32],
                     const void *data, int64_t size);
int  store_writer_commit(struct store_writer *w);
void store_writer_close(struct store_writer *w);

/*
 * Remove every small object that no row of the site database's manifest
 * table (sitedb_path; column sha256) references; *removed (may be NULL)
 * counts them.  The caller holds the store's exclusive lock (see
 * daemons/distmgr/tasks.c), so no walk is about to reference one.
 */
int  store_gc_small(const char *storedir, const char *sitedb_path, size_t *removed);

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
 * the store lacks the object, written to it (small.db, or a loose file
 * that is never replaced).  small.db is committed, durably, before the
 * walk returns 0; loose objects are not fsync'ed one by one: the
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
