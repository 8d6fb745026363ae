/*
 * NAME
 *   manifest - package source versions: file lists, the source walk, the
 *   content store, the diff, database rows and record text (SPEC 3).
 *
 * SYNOPSIS
 *   mf_init mf_free mf_add mf_sort mf_find mf_path_ok mf_entry_same
 *   mf_equal mf_diff
 *   store_object_path store_has store_init store_remove store_lock store_lock_stop
 *   store_unlock
 *   store_sync
 *   store_reader_open store_reader_close store_get
 *   store_writer_open store_writer_has store_put_small store_writer_commit
 *   store_writer_close store_gc_small
 *   mf_snapshot
 *   mf_db_save mf_db_load
 *   mf_to_record mf_from_record
 *
 * DESCRIPTION
 *   A manifest is an array of entries sorted by path (strcmp), one per
 *   regular file and directory below a package source root.  mf_diff
 *   merges two of them in one pass; distmgr uses it to copy only new and
 *   changed files to a DP and to remove what a version dropped.
 *
 *   The content store keeps each file's bytes once under their SHA-256.
 *   An object smaller than STORE_SMALL_MAX is a row of store/small.db
 *   (SQLite, WAL, so that readers run beside a writer; mode 0640): a
 *   package is mostly small files, and an inode each is what a first
 *   distribution spent its store phase creating.  Every connection to it
 *   is opened NOMUTEX and used under its owner's mutex, with a 10 s busy
 *   timeout, since distmgr and the despooler both write it.  A writer
 *   takes the write lock (BEGIN IMMEDIATE) at its first put only, so one
 *   that finds everything stored blocks no one; its has() runs on the
 *   same connection and so sees its own uncommitted rows; its commit is
 *   durable (synchronous=FULL) and closing without one rolls back.  A put
 *   that fails poisons the transaction: it is never committed, since
 *   SQLite may already have rolled the earlier rows back.  store_gc_small
 *   attaches the site database read-only and deletes the rows no manifest
 *   row references, in one statement.
 *
 *   A larger object is a loose file (objects/<aa>/<hex>; store_init
 *   makes the 256 <aa> directories once, so no writer tries a mkdir per
 *   object).  It is written as an O_TMPFILE inode in store/.tmp, which
 *   has no name until linkat gives it its object name (through
 *   /proc/self/fd, which needs no privilege), so a crash leaves nothing
 *   to clean up and no random name is drawn; where O_TMPFILE is refused
 *   (or /proc is missing) it is written under a unique name in
 *   store/.tmp and renamed in.  Both the link and the
 *   rename cannot replace, so an object name always means complete
 *   content, and two writers storing the same bytes at once both succeed
 *   (the second says EEXIST and its copy is dropped).  Objects are never
 *   fsync'ed one by one: the caller makes the store durable with one
 *   syncfs before it records the version that needs them.
 *
 *   mf_snapshot walks a source tree with openat() relative to directory
 *   descriptors and never follows a symbolic link below the root: a name
 *   is looked at with fstatat(AT_SYMLINK_NOFOLLOW), files are opened with
 *   O_NOFOLLOW, and anything but a regular file or directory refuses the
 *   walk, since a link could point outside the source and a device or
 *   FIFO could block or never end.  Each directory is listed whole into
 *   the manifest and its listing closed before its subdirectories are
 *   entered, so only one descriptor per level stays open.  A file whose
 *   path, type, size and mtime match the previous version, and whose
 *   object is stored, keeps its hash without being read; the walk collects
 *   the others.  A crew of readers (the calling thread and up to three
 *   more, each with its own 1 MiB buffer and hash context) then takes
 *   them from a shared index: creating inodes in the store is what a
 *   first distribution waits for, and several creators overlap those
 *   waits.  A reader opens its file from the source root with openat2
 *   (RESOLVE_NO_SYMLINKS), or component by component with O_NOFOLLOW, so
 *   that no link is followed even if a directory was replaced since the
 *   walk.  Each file is read once: its bytes are hashed and, when the
 *   store lacks them, stored in the same pass (see snap_file for how that
 *   is known before the hash is): a small file, read whole into the
 *   reader's buffer, as a row put in the walk's one small.db transaction,
 *   committed before the walk returns 0 and rolled back on any error (a
 *   loose object already linked in stays, complete, for distmgr's GC).  A file whose size, mtime or ctime moves
 *   while it is read, or whose byte count is not its size, fails the walk
 *   with -EAGAIN rather than being stored torn.  The first error recorded
 *   wins, and the other readers stop at their next buffer or file.  The
 *   manifest array is not resized while the readers run, and each entry
 *   is written by the one reader that took it, so the result is the
 *   serial one.
 *
 *   The database rows (table manifest, migration 2 of sitedb.c) and the
 *   record text of instructions carry the same fields; both readers check
 *   what they read, since a row or a line that no manifest could hold must
 *   not reach a DP.  The record reader is strict: canonical numbers,
 *   64 lower-case hex digits, single spaces, safe paths, no duplicate, and
 *   every entry's parent directory listed before it.
 *
 *   Not thread safe per manifest; separate manifests and walks may run in
 *   separate threads.  mf_snapshot starts its readers itself and joins
 *   them before it returns.
 *
 * DIAGNOSTICS
 *   Functions return 0 or a negative errno.  mf_snapshot fills err with a
 *   sentence naming the relative path at fault: -EINVAL (link, device,
 *   FIFO, socket, unsafe name), -EAGAIN (changed or removed during the
 *   walk), -EINTR (stop), -ENOENT/-ENOTDIR/-EACCES (source root), or the
 *   errno of a failed read or store write (-ENOSPC...).  mf_from_record
 *   returns -EBADMSG with err.  mf_db_save/mf_db_load log a database
 *   error and return -EIO or -EINTR (sitedb_errno); a malformed stored row
 *   is logged and refused with -EBADMSG.  store_has returns -EUCLEAN for an
 *   object name that is not a regular file.  store_get and
 *   store_writer_has return -ENOENT (get) or 0 (has) for a missing
 *   object and -EUCLEAN for one of another size than asked, without a
 *   log line.  A failed SQLite call on small.db is logged ("content
 *   store DIR/small.db: cannot ...") and returns the system's errno
 *   when SQLite saw one (-ENOSPC...), -EBUSY when another writer held
 *   the lock past the busy timeout, -ENOMEM, or -EIO.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>      /* struct open_how, RESOLVE_* (Linux 5.6) */
#endif
#endif

#include "fsutil.h"
#include "log.h"
#include "manifest.h"
#include "record.h"
#include "sitedb.h"
#include "uniqname.h"

#include <openssl/evp.h>

void mf_init(struct manifest *m)
{
    memset(m, 0, sizeof *m);
}

void mf_free(struct manifest *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->e[i].path);
    free(m->e);
    mf_init(m);
}

int mf_add(struct manifest *m, const struct mf_entry *e)
{
    if (e == NULL || e->path == NULL || e->size < 0)
        return -EINVAL;
    /* Sizes may come from another site's instruction: a total that would
     * not fit is refused rather than wrapped. */
    if (S_ISREG(e->mode) && e->size > INT64_MAX - m->bytes)
        return -EOVERFLOW;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct mf_entry *ne;
        if (cap > SIZE_MAX / sizeof *ne)
            return -ENOMEM;
        ne = realloc(m->e, cap * sizeof *ne);
        if (ne == NULL)
            return -ENOMEM;
        m->e = ne;
        m->cap = cap;
    }
    char *p = strdup(e->path);
    if (p == NULL)
        return -ENOMEM;
    m->e[m->n] = *e;
    m->e[m->n].path = p;
    m->n++;
    if (S_ISREG(e->mode)) {
        m->files++;
        m->bytes += e->size;
    }
    return 0;
}

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct mf_entry *)a)->path, ((const struct mf_entry *)b)->path);
}

void mf_sort(struct manifest *m)
{
    if (m->n > 1)
        qsort(m->e, m->n, sizeof *m->e, ent_cmp);
}

const struct mf_entry *mf_find(const struct manifest *m, const char *path)
{
    size_t lo = 0, hi = m ? m->n : 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(path, m->e[mid].path);
        if (c == 0)
            return &m->e[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int mf_path_ok(const char *path)
{
    size_t len, comp = 0;
    const unsigned char *p, *start;

    if (path == NULL || (len = strlen(path)) == 0 || len >= SS_PATH_MAX)
        return 0;
    start = (const unsigned char *)path;
    for (p = start;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - start);
            if (n == 0 || n > SS_NAME_MAX)
                return 0;
            if (start[0] == '.' && (n == 1 || (n == 2 && start[1] == '.')))
                return 0;
            comp++;
            if (*p == '\0')
                break;
            start = p + 1;
        } else if (*p < 0x20 || *p == 0x7f) {
            return 0;
        }
    }
    return comp > 0;
}

int mf_entry_same(const struct mf_entry *a, const struct mf_entry *b)
{
    return a->mode == b->mode && a->size == b->size && a->mtime_ns == b->mtime_ns &&
           memcmp(a->sha, b->sha, sizeof a->sha) == 0;
}

int mf_equal(const struct manifest *a, const struct manifest *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->e[i].path, b->e[i].path) != 0 || !mf_entry_same(&a->e[i], &b->e[i]))
            return 0;
    return 1;
}

/* ---- small objects: store/small.db -------------------------------------- */

#define SMALL_DB "small.db"
#define SMALL_BUSY_MS 10000     /* several processes write small.db */
#define SMALL_SCHEMA \
    "CREATE TABLE IF NOT EXISTS object (sha BLOB PRIMARY KEY, data BLOB NOT NULL)" \
    " WITHOUT ROWID"

/* The errno for a failed SQLite call on db, logged with what was being
 * done: the system's errno when SQLite saw one (a full disk, a missing
 * file), -EBUSY when another writer held the lock for the whole busy
 * timeout, -ENOMEM, else -EIO. */
static int small_err(sqlite3 *db, int rc, const char *storedir, const char *doing)
{
    int prim = rc & 0xff, e = db != NULL ? sqlite3_system_errno(db) : 0;
    int r = prim == SQLITE_BUSY || prim == SQLITE_LOCKED ? -EBUSY
          : prim == SQLITE_NOMEM ? -ENOMEM
          : prim == SQLITE_FULL ? -ENOSPC
          : (prim == SQLITE_IOERR || prim == SQLITE_CANTOPEN) && e > 0 ? -e
          : prim == SQLITE_READONLY || prim == SQLITE_PERM ? -EACCES
          : -EIO;

    log_error("content store %s/%s: cannot %s: %s", storedir, SMALL_DB, doing,
              db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    return r;
}

/* Open storedir/small.db with flags (SQLITE_OPEN_READONLY or _READWRITE;
 * NOMUTEX is added: every user serializes a connection with its own
 * mutex), with the busy timeout set.  It must exist (store_init). */
static int small_open(const char *storedir, int flags, sqlite3 **dbp)
{
    char path[SS_PATH_MAX];
    sqlite3 *db = NULL;
    int r, rc;

    *dbp = NULL;
    if ((r = ss_path(path, sizeof path, "%s/%s", storedir, SMALL_DB)) < 0)
        return r;
    rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        r = small_err(db, rc, storedir, "open it");
        sqlite3_close(db);
        return r;
    }
    sqlite3_busy_timeout(db, SMALL_BUSY_MS);
    /* Durable at COMMIT (WAL: an fsync of the log per commit), unless
     * the tests turned every fsync off. */
    if (!(flags & SQLITE_OPEN_READONLY)) {
        rc = sqlite3_exec(db, ss_fsync_enabled() ? "PRAGMA synchronous=FULL"
                                                 : "PRAGMA synchronous=OFF", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            r = small_err(db, rc, storedir, "set its synchronous mode");
            sqlite3_close(db);
            return r;
        }
    }
    *dbp = db;
    return 0;
}

static int wal_cb(void *arg, int ncol, char **val, char **name)
{
    int *is_wal = arg;

    if (ncol > 0 && val[0] != NULL && strcmp(val[0], "wal") == 0)
        *is_wal = 1;
    return 0;
}

/* Create small.db (mode 0640, like the loose objects; SQLite gives its
 * -wal and -shm files the same mode), switch it to WAL, so that readers
 * run beside a writer, and create its table.  Idempotent, and safe
 * beside another process doing the same. */
static int small_create(const char *storedir, int storefd)
{
    sqlite3 *db;
    int fd, r, rc, is_wal = 0;

    fd = openat(storefd, SMALL_DB, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd >= 0) {
        /* The umask could have taken bits off; an empty file is an empty
         * database to SQLite. */
        r = fchmod(fd, 0640) < 0 ? -errno : 0;
        close(fd);
        if (r < 0)
            return r;
    } else if (errno != EEXIST) {
        return -errno;
    }
    if ((r = small_open(storedir, SQLITE_OPEN_READWRITE, &db)) < 0)
        return r;
    /* Two daemons starting together on a new site both switch it; SQLite
     * answers the second with SQLITE_BUSY at once, without its busy
     * handler, so the switch is asked again for a while (as sitedb does). */
    for (int tries = 0;; tries++) {
        rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", wal_cb, &is_wal, NULL);
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || tries >= 200)
            break;
        struct timespec ts = { 0, 25 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    if (rc != SQLITE_OK) {
        r = small_err(db, rc, storedir, "switch it to WAL");
    } else if (!is_wal) {
        log_error("content store %s/%s: cannot switch it to WAL mode", storedir, SMALL_DB);
        r = -EIO;
    } else if ((rc = sqlite3_exec(db, SMALL_SCHEMA, NULL, NULL, NULL)) != SQLITE_OK) {
        r = small_err(db, rc, storedir, "create its table");
    }
    sqlite3_close(db);
    return r;
}

/* ---- the content store --------------------------------------------------- */

int store_object_path(const char *storedir, const unsigned char sha[32],
                      char *buf, size_t len)
{
    char hex[65];

    ss_hex(sha, 32, hex);
    return ss_path(buf, len, "%s/objects/%.2s/%s", storedir, hex, hex);
}

int store_has(const char *storedir, const unsigned char sha[32])
{
    char path[SS_PATH_MAX];
    struct stat st;
    int r = store_object_path(storedir, sha, path, sizeof path);

    if (r < 0)
        return r;
    if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    return S_ISREG(st.st_mode) ? 1 : -EUCLEAN;
}

int store_init(const char *storedir)
{
    char path[SS_PATH_MAX], sub[3];
    struct stat st;
    int r = 0, fd, sfd;

    if ((r = ss_path(path, sizeof path, "%s/objects", storedir)) < 0 ||
        (r = ss_mkdir_p(path, 0755)) < 0 ||
        (r = ss_path(path, sizeof path, "%s/.tmp", storedir)) < 0 ||
        (r = ss_mkdir_p(path, 0755)) < 0 ||
        (r = ss_path(path, sizeof path, "%s/objects", storedir)) < 0)
        return r;
    /* The 256 fan-out directories are made here once, so that a writer
     * storing an object does not try a mkdir per object.  They are made
     * in order and "ff" last: when it is there, so are the others (a
     * store an older build made, with them made on demand, may lack some;
     * its writers make a missing one when the move in says ENOENT). */
    if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    if (fstatat(fd, "ff", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
        for (unsigned i = 0; i < 256 && r == 0; i++) {
            ss_fmt(sub, sizeof sub, "%02x", i);
            if (mkdirat(fd, sub, 0755) < 0 && errno != EEXIST)
                r = -errno;
        }
    }
    close(fd);
    if (r < 0)
        return r;

    /* small.db: made when missing, or when empty (a crash between its
     * creation and its schema leaves an empty file; a database with its
     * table is never empty). */
    if ((sfd = open(storedir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    if (fstatat(sfd, SMALL_DB, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        r = errno == ENOENT ? small_create(storedir, sfd) : -errno;
    } else if (!S_ISREG(st.st_mode)) {
        r = -EUCLEAN;
    } else if (st.st_size == 0) {
        r = small_create(storedir, sfd);
    }
    close(sfd);
    return r;
}

int store_lock(const char *storedir, int exclusive)
{
    char path[SS_PATH_MAX];
    int fd, rc;

    if ((rc = ss_path(path, sizeof path, "%s/.lock", storedir)) < 0)
        return rc;
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640)) < 0)
        return -errno;
    while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) < 0) {
        if (errno != EINTR) {
            rc = -errno;
            close(fd);
            return rc;
        }
    }
    return fd;
}

int store_lock_stop(const char *storedir, int exclusive, const volatile int *stop)
{
    char path[SS_PATH_MAX];
    int fd, rc;

    if (!stop)
        return store_lock(storedir, exclusive);
    if ((rc = ss_path(path, sizeof path, "%s/.lock", storedir)) < 0)
        return rc;
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640)) < 0)
        return -errno;
    for (;;) {
        if (*stop) {
            close(fd);
            return -EINTR;
        }
        if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
            return fd;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            rc = -errno;
            close(fd);
            return rc;
        }
        if (errno == EWOULDBLOCK)
            usleep(20000);
    }
}

void store_unlock(int fd)
{
    if (fd >= 0)
        close(fd);              /* drops the flock */
}

int store_sync(const char *storedir)
{
    int fd, rc;

    if ((fd = open(storedir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    rc = ss_syncfs(fd);
    close(fd);
    if (rc == -ENOSYS) {
        /* No trustworthy syncfs: sync(2) waits for every write-back. */
        sync();
        rc = 0;
    }
    return rc;
}

int store_remove(const char *storedir, const unsigned char sha[32])
{
    char path[SS_PATH_MAX];
    int r = store_object_path(storedir, sha, path, sizeof path);

    if (r < 0)
        return r;
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

/* small.db exists, with its table, for a reader or writer to open: a
 * store that an older build made (loose objects only) gets it now. */
static int small_ensure(const char *storedir)
{
    char path[SS_PATH_MAX];
    struct stat st;
    int r;

    if ((r = ss_path(path, sizeof path, "%s/%s", storedir, SMALL_DB)) < 0)
        return r;
    if (stat(path, &st) == 0 && st.st_size > 0)
        return 0;
    return store_init(storedir);
}

struct store_reader {
    pthread_mutex_t mu;         /* serializes db and get */
    sqlite3        *db;         /* read-only */
    sqlite3_stmt   *get;
    char           *storedir;
    int             objfd;      /* store/objects */
    int             noatime;    /* still ask for O_NOATIME (atomic) */
};

int store_reader_open(const char *storedir, struct store_reader **rp)
{
    struct store_reader *r;
    char path[SS_PATH_MAX];
    int e, rc;

    *rp = NULL;
    if ((e = small_ensure(storedir)) < 0)
        return e;
    if ((e = ss_path(path, sizeof path, "%s/objects", storedir)) < 0)
        return e;
    if ((r = calloc(1, sizeof *r)) == NULL || (r->storedir = strdup(storedir)) == NULL) {
        free(r);
        return -ENOMEM;
    }
    r->noatime = 1;
    pthread_mutex_init(&r->mu, NULL);
    if ((r->objfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        e = -errno;
        goto fail;
    }
    if ((e = small_open(storedir, SQLITE_OPEN_READONLY, &r->db)) < 0)
        goto fail;
    rc = sqlite3_prepare_v3(r->db, "SELECT data FROM object WHERE sha = ?1", -1,
                            SQLITE_PREPARE_PERSISTENT, &r->get, NULL);
    if (rc != SQLITE_OK) {
        e = small_err(r->db, rc, storedir, "prepare a read");
        goto fail;
    }
    *rp = r;
    return 0;
fail:
    store_reader_close(r);
    return e;
}

void store_reader_close(struct store_reader *r)
{
    if (r == NULL)
        return;
    sqlite3_finalize(r->get);
    sqlite3_close(r->db);
    if (r->objfd >= 0)
        close(r->objfd);
    pthread_mutex_destroy(&r->mu);
    free(r->storedir);
    free(r);
}

/* A loose object, opened read-only, that must have size bytes. */
static int get_loose(struct store_reader *r, const unsigned char sha[32], int64_t size,
                     int *fdp)
{
    char name[3 + 64 + 1], hex[65];
    struct stat st;
    int fd;

    ss_hex(sha, 32, hex);
    ss_fmt(name, sizeof name, "%.2s/%s", hex, hex);
    for (;;) {
        int noatime = __atomic_load_n(&r->noatime, __ATOMIC_RELAXED);
        fd = openat(r->objfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
                    (noatime ? O_NOATIME : 0));
        if (fd >= 0)
            break;
        if (errno == EPERM && noatime) {
            /* O_NOATIME is for the owner only: a store of another user's
             * objects is read without it. */
            __atomic_store_n(&r->noatime, 0, __ATOMIC_RELAXED);
            continue;
        }
        if (errno == EINTR)
            continue;
        /* A link where an object should be is no object (never followed). */
        return errno == ELOOP ? -EUCLEAN : -errno;
    }
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size != size) {
        close(fd);
        return -EUCLEAN;
    }
    *fdp = fd;
    return 0;
}

int store_get(struct store_reader *r, const unsigned char sha[32], int64_t size,
              void *buf, int *fd)
{
    int e, rc;

    *fd = -1;
    if (size < 0)
        return -EINVAL;
    if (!STORE_SMALL(size))
        return get_loose(r, sha, size, fd);

    pthread_mutex_lock(&r->mu);
    sqlite3_bind_blob(r->get, 1, sha, 32, SQLITE_STATIC);
    rc = sqlite3_step(r->get);
    if (rc == SQLITE_ROW) {
        const void *data = sqlite3_column_blob(r->get, 0);
        int n = sqlite3_column_bytes(r->get, 0);
        if (n != size || sqlite3_column_type(r->get, 0) != SQLITE_BLOB) {
            e = -EUCLEAN;
        } else {
            if (n > 0)
                memcpy(buf, data, (size_t)n);
            e = 0;
        }
    } else if (rc == SQLITE_DONE) {
        e = -ENOENT;
    } else {
        e = small_err(r->db, rc, r->storedir, "read an object");
    }
    /* The reset ends the read transaction, which would otherwise keep the
     * writers' checkpoints from reaching the end of the log. */
    sqlite3_reset(r->get);
    sqlite3_clear_bindings(r->get);
    pthread_mutex_unlock(&r->mu);
    return e;
}

struct store_writer {
    pthread_mutex_t mu;         /* serializes db, its statements and intx */
    sqlite3        *db;
    sqlite3_stmt   *has, *put;
    char           *storedir;
    int             intx;       /* our BEGIN IMMEDIATE is open */
    int             broken;     /* a put failed: no commit of this transaction */
    size_t          txrows;     /* rows and bytes put in the open transaction */
    int64_t         txbytes;
    int64_t         txstart;    /* monotonic ms of its BEGIN */
};

/* A writer commits after this many rows or bytes: small.db takes one
 * writer at a time, and a walk of a large source must not keep the
 * despooler or another package's walk waiting for all of its reading.
 * Rows committed early and never referenced (the walk failed) are what
 * distmgr's collection removes. */
#define WRITER_BATCH_ROWS  512
#define WRITER_BATCH_BYTES (8 << 20)
#define WRITER_BATCH_MS    1000     /* and a transaction is never kept open longer */

int store_writer_open(const char *storedir, struct store_writer **wp)
{
    struct store_writer *w;
    int e, rc;

    *wp = NULL;
    if ((e = small_ensure(storedir)) < 0)
        return e;
    if ((w = calloc(1, sizeof *w)) == NULL || (w->storedir = strdup(storedir)) == NULL) {
        free(w);
        return -ENOMEM;
    }
    pthread_mutex_init(&w->mu, NULL);
    if ((e = small_open(storedir, SQLITE_OPEN_READWRITE, &w->db)) < 0)
        goto fail;
    rc = sqlite3_prepare_v3(w->db, "SELECT length(data) FROM object WHERE sha = ?1", -1,
                            SQLITE_PREPARE_PERSISTENT, &w->has, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(w->db, "INSERT OR IGNORE INTO object (sha, data) VALUES (?1, ?2)",
                                -1, SQLITE_PREPARE_PERSISTENT, &w->put, NULL);
    if (rc != SQLITE_OK) {
        e = small_err(w->db, rc, storedir, "prepare its statements");
        goto fail;
    }
    *wp = w;
    return 0;
fail:
    store_writer_close(w);
    return e;
}

void store_writer_close(struct store_writer *w)
{
    if (w == NULL)
        return;
    sqlite3_finalize(w->has);
    sqlite3_finalize(w->put);
    /* What was not committed goes: closing a connection with a transaction
     * open rolls it back, but an explicit ROLLBACK says so. */
    if (w->db != NULL && !sqlite3_get_autocommit(w->db))
        sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(w->db);
    pthread_mutex_destroy(&w->mu);
    free(w->storedir);
    free(w);
}

int store_writer_has(struct store_writer *w, const unsigned char sha[32], int64_t size)
{
    int e, rc;

    if (size < 0)
        return -EINVAL;
    if (!STORE_SMALL(size))
        return store_has(w->storedir, sha);

    pthread_mutex_lock(&w->mu);
    /* On the writer's own connection: inside its transaction, this sees
     * the rows it put and has not committed yet. */
    sqlite3_bind_blob(w->has, 1, sha, 32, SQLITE_STATIC);
    rc = sqlite3_step(w->has);
    if (rc == SQLITE_ROW)
        e = sqlite3_column_int64(w->has, 0) == size ? 1 : -EUCLEAN;
    else if (rc == SQLITE_DONE)
        e = 0;
    else
        e = small_err(w->db, rc, w->storedir, "look up an object");
    sqlite3_reset(w->has);
    sqlite3_clear_bindings(w->has);
    pthread_mutex_unlock(&w->mu);
    return e;
}

/* Commit the open batch; w->mu held.  A failure breaks the writer (its
 * final commit reports it). */
static int batch_commit(struct store_writer *w)
{
    int rc = sqlite3_exec(w->db, "COMMIT", NULL, NULL, NULL);

    if (rc != SQLITE_OK) {
        w->broken = small_err(w->db, rc, w->storedir, "commit a batch");
        return w->broken;
    }
    w->intx = 0;
    w->txrows = 0;
    w->txbytes = 0;
    return 0;
}

/* Commit a batch open for WRITER_BATCH_MS or more: called by a reader
 * between chunks of a large file, which may take long while small rows
 * another reader put wait uncommitted, holding small.db's one write lock. */
static void writer_tick(struct store_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    if (w->intx && !w->broken && ss_mono_ms() - w->txstart >= WRITER_BATCH_MS)
        (void)batch_commit(w);
    pthread_mutex_unlock(&w->mu);
}

/* store_put_small, saying whether the row is new (*added 1) or was there
 * (another writer, or an earlier put of this one, stored the same bytes):
 * mf_snapshot counts the objects it stored. */
static int writer_put(struct store_writer *w, const unsigned char sha[32],
                      const void *data, int64_t size, int *added)
{
    int e = 0, rc;

    *added = 0;
    if (size < 0 || !STORE_SMALL(size) || (size > 0 && data == NULL))
        return -EINVAL;
    pthread_mutex_lock(&w->mu);
    if (w->broken) {
        e = w->broken;
        goto out;
    }
    if (!w->intx) {
        /* The write lock is taken at the first put, not at open: a writer
         * that finds everything stored never blocks another one. */
        rc = sqlite3_exec(w->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            e = small_err(w->db, rc, w->storedir, "begin a transaction");
            goto out;
        }
        w->intx = 1;
        w->txstart = ss_mono_ms();
    }
    sqlite3_bind_blob(w->put, 1, sha, 32, SQLITE_STATIC);
    /* A NULL pointer would bind NULL, not an empty blob. */
    if (size == 0)
        sqlite3_bind_zeroblob(w->put, 2, 0);
    else
        sqlite3_bind_blob(w->put, 2, data, (int)size, SQLITE_STATIC);
    rc = sqlite3_step(w->put);
    if (rc == SQLITE_DONE) {
        *added = sqlite3_changes(w->db) > 0;
        w->txrows++;
        w->txbytes += size;
        if (w->txrows >= WRITER_BATCH_ROWS || w->txbytes >= WRITER_BATCH_BYTES ||
            ss_mono_ms() - w->txstart >= WRITER_BATCH_MS) {
            sqlite3_reset(w->put);
            e = batch_commit(w);
        }
    } else {
        e = small_err(w->db, rc, w->storedir, "store an object");
        /* SQLite may have rolled the whole transaction back already: the
         * rows put before are in doubt, so this one is never committed. */
        w->broken = e;
    }
    sqlite3_reset(w->put);
    sqlite3_clear_bindings(w->put);
out:
    pthread_mutex_unlock(&w->mu);
    return e;
}

int store_put_small(struct store_writer *w, const unsigned char sha[32],
                    const void *data, int64_t size)
{
    int added;

    return writer_put(w, sha, data, size, &added);
}

int store_writer_commit(struct store_writer *w)
{
    int e = 0, rc;

    pthread_mutex_lock(&w->mu);
    if (w->broken) {
        e = w->broken;
        if (!sqlite3_get_autocommit(w->db))
            sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
        w->intx = 0;
        w->broken = 0;
        w->txrows = 0;
        w->txbytes = 0;
    } else if (w->intx) {
        /* synchronous=FULL: the log is fsync'ed before COMMIT returns. */
        rc = sqlite3_exec(w->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            e = small_err(w->db, rc, w->storedir, "commit");
            if (!sqlite3_get_autocommit(w->db))
                sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
        }
        w->intx = 0;
        w->txrows = 0;
        w->txbytes = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return e;
}

/* A file name as a SQLite URI path: '%', '?', '#' and bytes outside
 * printable ASCII percent-encoded. */
static int uri_path(char *dst, size_t len, const char *path)
{
    static const char hexd[] = "0123456789abcdef";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        int esc = *p <= 0x20 || *p >= 0x7f || *p == '%' || *p == '?' || *p == '#';
        if (o + (esc ? 3 : 1) >= len)
            return -ENAMETOOLONG;
        if (esc) {
            dst[o++] = '%';
            dst[o++] = hexd[*p >> 4];
            dst[o++] = hexd[*p & 15];
        } else {
            dst[o++] = (char)*p;
        }
    }
    dst[o] = '\0';
    return 0;
}

int store_gc_small(const char *storedir, const char *sitedb_path, size_t *removed)
{
    char uri[3 * SS_PATH_MAX + 16], upath[3 * SS_PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int r, rc;

    if (removed != NULL)
        *removed = 0;
    if ((r = small_ensure(storedir)) < 0)
        return r;
    if ((r = uri_path(upath, sizeof upath, sitedb_path)) < 0 ||
        (r = ss_path(uri, sizeof uri, "file:%s?mode=ro", upath)) < 0)
        return r;
    if ((r = small_open(storedir, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, &db)) < 0)
        return r;
    /* The site database only read, never created: mode=ro fails on a
     * missing file rather than attaching an empty one, whose empty
     * manifest table would say that nothing is referenced. */
    rc = sqlite3_prepare_v2(db, "ATTACH ?1 AS site", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, uri, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        r = small_err(db, rc, storedir, "attach the site database");
        goto out;
    }
    rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        r = small_err(db, rc, storedir, "begin a transaction");
        goto out;
    }
    /* manifest_sha indexes site.manifest(sha256): one probe per object.
     * A missing manifest table is an error here, never "nothing referenced". */
    rc = sqlite3_exec(db, "DELETE FROM object WHERE NOT EXISTS"
                      " (SELECT 1 FROM site.manifest m WHERE m.sha256 = object.sha)",
                      NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        size_t n = (size_t)sqlite3_changes(db);
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc == SQLITE_OK && removed != NULL)
            *removed = n;
    }
    if (rc != SQLITE_OK) {
        r = small_err(db, rc, storedir, "remove unreferenced objects");
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
out:
    sqlite3_close(db);
    return r;
}

int mf_diff(const struct manifest *old, const struct manifest *cur,
            mf_diff_cb cb, void *arg, struct mf_diffstat *st)
{
    size_t i = 0, j = 0, no = old ? old->n : 0, nc = cur ? cur->n : 0;
    struct mf_diffstat dummy;

    if (st == NULL)
        st = &dummy;
    memset(st, 0, sizeof *st);
    /* Both lists are sorted by strcmp, so one merge pass visits the union
     * of their paths in order. */
    while (i < no || j < nc) {
        const struct mf_entry *a = i < no ? &old->e[i] : NULL;
        const struct mf_entry *b = j < nc ? &cur->e[j] : NULL;
        enum mf_change kind;
        int c = a == NULL ? 1 : b == NULL ? -1 : strcmp(a->path, b->path);

        if (c < 0) {
            kind = MF_REMOVED;
            b = NULL;
            st->removed++;
            i++;
        } else if (c > 0) {
            kind = MF_ADDED;
            a = NULL;
            st->added++;
            j++;
        } else {
            kind = mf_entry_same(a, b) ? MF_UNCHANGED : MF_CHANGED;
            if (kind == MF_UNCHANGED)
                st->unchanged++;
            else
                st->changed++;
            i++;
            j++;
        }
        if (cb != NULL) {
            int r = cb(arg, kind, a, b);
            if (r != 0)
                return r;
        }
    }
    return 0;
}

/* ---- the source walk ---------------------------------------------------- */

#define SNAP_BUF (1u << 20)     /* one read buffer per reader */
/* A small object is put from the buffer it was read into. */
_Static_assert(STORE_SMALL_MAX <= SNAP_BUF, "a small object must fit the read buffer");

/* Readers of one walk.  What a first distribution waits for is the kernel
 * creating inodes in the store (blocked on the file system's bitmaps far
 * longer than hashing takes: 0.17 s of CPU for 196 MB), and several
 * creators in flight overlap those waits even on two cores.  Four cost
 * 4 MiB of buffers, well within distmgr's memory goal. */
#define SNAP_THREADS 4
/* At most one reader per this many files to read: a small tree is not
 * worth starting a thread for. */
#define SNAP_FILES_PER_THREAD 32

/* A file the walk found to read: its entry, and prev's hash of it when
 * that content is stored and likely the same (same size, new mtime). */
struct snap_job {
    size_t               idx;
    const unsigned char *cand;
};

struct snap {
    const struct manifest *prev;
    const char          *storedir;
    struct manifest     *out;
    const volatile int  *stop;
    char                *err;
    size_t               errlen;
    int                  rootfd;        /* the source root */
    int                  tmpfd;         /* store/.tmp */
    int                  objfd;         /* store/objects */
    struct store_writer *sw;            /* small objects: one small.db transaction */
    EVP_MD              *md;            /* SHA-256, fetched once, shared (EVP_MD is) */
    size_t               reused;
    struct snap_job     *job;           /* files to read, in walk order */
    size_t               njob, capjob;
    /* Shared by the readers: __atomic builtins, or under mu. */
    size_t               next;          /* next job to take */
    int                  failed;        /* an error is recorded: everyone stops */
    int                  noatime;       /* still ask for O_NOATIME */
    int                  tmpfile;       /* objects via O_TMPFILE + linkat */
    int                  openat2;       /* openat2(RESOLVE_NO_SYMLINKS) works */
    pthread_mutex_t      mu;
    int                  rc;            /* the first error (under mu) */
    /* The path of the name being listed (walk thread only): one buffer
     * rather than one per level of a recursion that may be 2,000 deep. */
    char                 path[SS_PATH_MAX];
};

/* One reader of the crew: its own buffer, hash context and counts. */
struct snap_reader {
    struct snap   *s;
    unsigned char *buf;
    EVP_MD_CTX    *ctx;
    size_t         hashed, stored;
    int64_t        bytes_hashed;
    int64_t        bytes_delta;         /* entry sizes corrected from fstat */
    pthread_t      tid;
    int            started;
};

/* A temporary object: an O_TMPFILE inode (no name until it is complete),
 * or, where the file system has no O_TMPFILE, a named file in store/.tmp. */
struct objtmp {
    int  fd;                            /* -1: none */
    int  named;
    char name[UNIQ_NAME_MAX];
};

static int flag_get(const int *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void flag_set(int *p, int v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* A path for an error message: control bytes (which a source name may
 * hold, and which mf_path_ok refuses) shown as '?', cut to fit. */
static void show_path(char *dst, size_t len, const char *path)
{
    ss_strcpy(dst, len, path);
    for (char *p = dst; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

/* Record an error of the walk.  The first one wins (its message and
 * code are what mf_snapshot returns); it also tells every reader to stop. */
static int snap_fail(struct snap *s, int r, const char *path, const char *what)
{
    char shown[SS_PATH_MAX];

    show_path(shown, sizeof shown, path);
    pthread_mutex_lock(&s->mu);
    if (s->rc == 0) {
        s->rc = r;
        ss_seterr(s->err, s->errlen, "%s: %s", shown, what);
    }
    pthread_mutex_unlock(&s->mu);
    flag_set(&s->failed, 1);
    return r;
}

static int snap_errno(struct snap *s, int r, const char *path, const char *doing)
{
    char what[160];

    ss_fmt(what, sizeof what, "cannot %s: %s", doing, strerror(-r));
    return snap_fail(s, r, path, what);
}

static const char *base_name(const char *path)
{
    const char *sl = strrchr(path, '/');
    return sl ? sl + 1 : path;
}

/* Did the file stay the same while it was read?  Size and mtime are what
 * the contract names; ctime is compared too, because a writer (or a copy
 * tool) may set the mtime back to what it was after it wrote, and the
 * kernel changes the ctime with every write, truncate and utimensat, so
 * no one can put it back. */
static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* objects/<aa>/<hex> relative to store/objects: "aa/<hex>". */
static void object_name(const unsigned char sha[32], char name[3 + 64 + 1])
{
    char hex[65];

    ss_hex(sha, 32, hex);
    memcpy(name, hex, 2);
    name[2] = '/';
    memcpy(name + 3, hex, 65);
}

/* store_has, relative to the open objects directory. */
static int object_has(struct snap *s, const char *name)
{
    struct stat st;

    if (fstatat(s->objfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    return S_ISREG(st.st_mode) ? 1 : -EUCLEAN;
}

/* The fan-out directory of name ("aa/..."): store_init makes all 256, so
 * this is for a store an older build made, which made them one by one. */
static int make_fanout(struct snap *s, const char *name)
{
    char sub[3] = { name[0], name[1], '\0' };

    if (mkdirat(s->objfd, sub, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int obj_create(struct snap *s, struct objtmp *t, const char *path)
{
    int r;

    t->named = 0;
    if (flag_get(&s->tmpfile)) {
        /* An inode with no name: nothing to clean up after a crash, no
         * random name to draw, no rename.  linkat names it when it is
         * complete (obj_commit). */
        t->fd = openat(s->tmpfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0640);
        if (t->fd >= 0)
            return 0;
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
            return snap_errno(s, -errno, path, "create a temporary object in the store");
        /* The file system (or kernel) has no O_TMPFILE: named temporary
         * files from now on. */
        flag_set(&s->tmpfile, 0);
    }
    r = uniq_create(s->tmpfd, "obj", ".tmp", t->name, sizeof t->name, &t->fd);
    if (r < 0) {
        t->fd = -1;
        return snap_errno(s, r, path, "create a temporary object in the store");
    }
    t->named = 1;
    return 0;
}

static void obj_drop(struct snap *s, struct objtmp *t)
{
    if (t->fd >= 0)
        close(t->fd);
    if (t->named)
        unlinkat(s->tmpfd, t->name, 0);
    t->fd = -1;
    t->named = 0;
}

static int link_tmpfile(struct snap *s, int fd, const char *name)
{
    char proc[48];

    /* linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the
     * descriptor's /proc name, followed, does the same for anyone. */
    if (ss_path(proc, sizeof proc, "/proc/self/fd/%d", fd) < 0)
        return -ENAMETOOLONG;
    if (linkat(AT_FDCWD, proc, s->objfd, name, AT_SYMLINK_FOLLOW) < 0)
        return -errno;
    return 0;
}

/* Give the complete temporary object its name objects/<aa>/<hex>, never
 * replacing: EEXIST means another writer (another walk, the despooler)
 * stored the same content first; the object is complete either way and
 * ours is dropped.  *stored says whether ours is the one named. */
static int obj_commit(struct snap *s, struct objtmp *t, const char *name, const char *path,
                      int *stored)
{
    int r, c;

    *stored = 0;
    if (!t->named) {
        r = link_tmpfile(s, t->fd, name);
        if (r == -ENOENT && make_fanout(s, name) == 0)
            r = link_tmpfile(s, t->fd, name);
        /* Write errors were seen by write(); a local file system's close
         * reports none, but one that did would leave the named object
         * in doubt, so that name goes again. */
        c = close(t->fd);
        t->fd = -1;
        if (r == 0 && c < 0) {
            r = -errno;
            unlinkat(s->objfd, name, 0);
            return snap_errno(s, r, path, "write its content to the store");
        }
    } else {
        c = close(t->fd);
        t->fd = -1;
        if (c < 0) {
            r = -errno;
            obj_drop(s, t);
            return snap_errno(s, r, path, "write its content to the store");
        }
        r = ss_rename_noreplace(s->tmpfd, t->name, s->objfd, name);
        if (r == -ENOENT && make_fanout(s, name) == 0)
            r = ss_rename_noreplace(s->tmpfd, t->name, s->objfd, name);
        if (r == 0)
            t->named = 0;           /* moved: nothing left to remove */
        obj_drop(s, t);
    }
    if (r == 0) {
        *stored = 1;
        return 0;
    }
    if (r == -EEXIST)
        return 0;
    return snap_errno(s, r, path, "store its content");
}

/* Read fd from its start to its end once: hash every byte, and copy them
 * to tmpfd when it is open (>= 0).  When whole is set the file fits the
 * buffer and is kept there (for a store write after the hash).  *got
 * counts the bytes read; reading stops past the size fstat gave, since a
 * longer file is already known to have changed.  -ECANCELED, with no
 * message, when another reader failed meanwhile. */
static int read_hash(struct snap_reader *w, int fd, int64_t size, int whole, int tmpfd,
                     unsigned char sha[32], int64_t *got, const char *path)
{
    struct snap *s = w->s;
    unsigned char extra;
    unsigned int mdlen = 0;
    int64_t total = 0;
    int r;

    if (EVP_DigestInit_ex(w->ctx, s->md, NULL) != 1)
        return snap_fail(s, -EIO, path, "cannot start SHA-256 (OpenSSL)");
    for (;;) {
        unsigned char *dst = w->buf;
        size_t room = SNAP_BUF;
        if (flag_get(&s->failed))
            return -ECANCELED;
        if (!whole)
            writer_tick(s->sw);     /* a long read must not hold small.db's lock */
        if (whole) {
            dst = w->buf + total;
            room = SNAP_BUF - (size_t)total;
            if (room == 0) {                /* only to see the end of the file */
                dst = &extra;
                room = 1;
            }
        }
        ssize_t n = read(fd, dst, room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return snap_errno(s, -errno, path, "read it");
        }
        if (n == 0)
            break;
        total += n;
        if (total > size || dst == &extra)
            break;
        if (EVP_DigestUpdate(w->ctx, dst, (size_t)n) != 1)
            return snap_fail(s, -EIO, path, "cannot hash it (OpenSSL)");
        if (tmpfd >= 0 && (r = ss_write_all(tmpfd, dst, (size_t)n)) < 0)
            return snap_errno(s, r, path, "write its content to the store");
    }
    *got = total;
    if (EVP_DigestFinal_ex(w->ctx, sha, &mdlen) != 1 || mdlen != 32)
        return snap_fail(s, -EIO, path, "cannot finish SHA-256 (OpenSSL)");
    return 0;
}

#if defined(SYS_openat2) && defined(RESOLVE_NO_SYMLINKS)
static long sys_openat2(int dfd, const char *path, int flags)
{
    struct open_how how;

    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned)flags;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH;
    return syscall(SYS_openat2, dfd, path, &how, sizeof how);
}
#endif

/* Does openat2 with RESOLVE_NO_SYMLINKS work here (Linux 5.6, and no
 * seccomp filter refusing it)?  Asked once per walk. */
static int probe_openat2(int rootfd)
{
#if defined(SYS_openat2) && defined(RESOLVE_NO_SYMLINKS)
    long fd = sys_openat2(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        close((int)fd);
        return 1;
    }
#endif
    return 0;
}

/* Open path (relative to the source root) following no symbolic link in
 * any of its components: the walk saw directories and a regular file
 * there, but the readers open the file later, from the root, and a
 * directory on the way may have been replaced by a link meanwhile.
 * Returns the descriptor, or -1 with errno (ELOOP for a link). */
static int open_below(struct snap *s, const char *path, int flags)
{
#if defined(SYS_openat2) && defined(RESOLVE_NO_SYMLINKS)
    if (s->openat2) {
        for (int k = 0;; k++) {
            long fd = sys_openat2(s->rootfd, path, flags);
            /* EAGAIN: a rename elsewhere raced the lookup; it is safe to
             * ask again, and a few times is plenty. */
            if (fd >= 0 || errno != EAGAIN || k == 16)
                return (int)fd;
        }
    }
#endif
    /* Without openat2: one component at a time, each O_NOFOLLOW. */
    char part[SS_NAME_MAX + 1];
    const char *p = path, *sl;
    int dfd = s->rootfd, fd, e;

    while ((sl = strchr(p, '/')) != NULL) {
        size_t n = (size_t)(sl - p);
        if (n >= sizeof part) {
            fd = -1;
            e = ENAMETOOLONG;
            goto out;
        }
        memcpy(part, p, n);
        part[n] = '\0';
        fd = openat(dfd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        e = errno;
        if (dfd != s->rootfd)
            close(dfd);
        if (fd < 0) {
            errno = e;
            return -1;
        }
        dfd = fd;
        p = sl + 1;
    }
    fd = openat(dfd, p, flags);
    e = errno;
out:
    if (dfd != s->rootfd)
        close(dfd);
    errno = e;
    return fd;
}

static int open_source_file(struct snap *s, const char *path)
{
    /* O_NONBLOCK: should the name have become a FIFO since it was
     * looked at, the open must not wait for a writer. */
    int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;

    for (;;) {
        int noatime = flag_get(&s->noatime);
        int fd = open_below(s, path, flags | (noatime ? O_NOATIME : 0));
        if (fd >= 0)
            return fd;
        if (errno == EINTR)
            continue;
        if (errno == EPERM && noatime) {
            /* O_NOATIME is for the file's owner (or CAP_FOWNER) only; a
             * source of someone else's files is read without it, and
             * the walk stops asking. */
            flag_set(&s->noatime, 0);
            continue;
        }
        /* The walk saw a regular file below directories here: a link
         * now (the file or a directory above it), a directory that is
         * no longer one, or no name at all, is a change during the walk. */
        if (errno == ELOOP || errno == ENOTDIR)
            return snap_fail(s, -EAGAIN, path, "was replaced during the walk of the source"
                             " (a symbolic link or file on its path now; never followed)");
        if (errno == ENOENT)
            return snap_fail(s, -EAGAIN, path, "was removed during the walk of the source");
        return snap_errno(s, -errno, path, "open it");
    }
}

/* Hash (and store) the file of job j: run by one reader, which alone
 * writes that manifest entry. */
static int snap_file(struct snap_reader *w, const struct snap_job *j)
{
    struct snap *s = w->s;
    struct mf_entry *e = &s->out->e[j->idx];
    const char *path = e->path;             /* the array does not move while readers run */
    const unsigned char *cand = j->cand;
    unsigned char sha[32];
    char name[3 + 64 + 1];
    struct objtmp t = { .fd = -1 };
    struct stat before, after;
    int64_t got = 0;
    int fd, r, has, stored;

    if ((fd = open_source_file(s, path)) < 0)
        return fd;

again:
    if (fstat(fd, &before) < 0) {
        r = snap_errno(s, -errno, path, "stat it");
        goto out;
    }
    if (!S_ISREG(before.st_mode)) {
        r = snap_fail(s, -EINVAL, path, "is no longer a regular file (refused)");
        goto out;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

    /* Which content the store already holds is known only once the file
     * is hashed.  A file that fits the buffer is read into it, hashed,
     * and written to the store only when the store lacks it (a small one,
     * STORE_SMALL, as a row of small.db; the others as loose objects).  A larger
     * one streams through the buffer: it is hashed only, when the same
     * path had the same size in the previous version and that content is
     * stored (a touched file: most likely the same bytes); otherwise it
     * is copied to a temporary object while it is hashed, and that copy
     * is dropped if the store turns out to hold the content already. */
    int whole = before.st_size <= (off_t)SNAP_BUF;
    if (!whole && cand == NULL && (r = obj_create(s, &t, path)) < 0)
        goto out;
    r = read_hash(w, fd, before.st_size, whole, t.fd, sha, &got, path);
    if (r < 0)
        goto out;
    if (fstat(fd, &after) < 0) {
        r = snap_errno(s, -errno, path, "stat it");
        goto out;
    }
    if (!same_file(&before, &after) || got != before.st_size) {
        r = snap_fail(s, -EAGAIN, path, "changed while it was read (will be read again later)");
        goto out;
    }
    w->bytes_hashed += got;

    if (!whole && cand != NULL && memcmp(cand, sha, 32) != 0) {
        /* Not the previous content after all: read it again, this time
         * into a temporary object.  Rare (same size, new bytes). */
        cand = NULL;
        if (lseek(fd, 0, SEEK_SET) < 0) {
            r = snap_errno(s, -errno, path, "seek back to its start");
            goto out;
        }
        goto again;
    }
    w->hashed++;

    if (STORE_SMALL(got)) {
        /* A small object is a row of small.db, put in the walk's one
         * transaction: no inode.  Two readers with the same bytes may both
         * find it missing; INSERT OR IGNORE keeps one row, and only the
         * reader whose row it is counts it. */
        has = store_writer_has(s->sw, sha, got);
        if (has < 0) {
            r = snap_errno(s, has, path, "look up its content in the store (small.db)");
            goto out;
        }
        if (has == 0) {
            if ((r = writer_put(s->sw, sha, w->buf, got, &stored)) < 0) {
                r = snap_errno(s, r, path, "store its content (small.db)");
                goto out;
            }
            w->stored += (size_t)stored;
        }
    } else if (whole || t.fd >= 0) {
        object_name(sha, name);
        has = object_has(s, name);
        if (has < 0) {
            r = snap_errno(s, has, path, "look up its content in the store");
            goto out;
        }
        if (has == 0) {
            if (t.fd < 0) {
                if ((r = obj_create(s, &t, path)) < 0)
                    goto out;
                if ((r = ss_write_all(t.fd, w->buf, (size_t)got)) < 0) {
                    r = snap_errno(s, r, path, "write its content to the store");
                    goto out;
                }
            }
            if ((r = obj_commit(s, &t, name, path, &stored)) < 0)
                goto out;
            w->stored += (size_t)stored;
        }
    }

    /* The entry takes what the open file said, which is what was hashed
     * (the directory scan looked a moment earlier). */
    w->bytes_delta += (int64_t)before.st_size - e->size;
    e->size = before.st_size;
    e->mtime_ns = mtime_ns(&before);
    e->mode = S_IFREG | (before.st_mode & 07777);
    memcpy(e->sha, sha, 32);
    r = 0;

out:
    obj_drop(s, &t);
    close(fd);
    return r;
}

/* Decide, on the walk, what the file of out->e[idx] needs: prev's hash
 * (same size and mtime, object stored), or a reader. */
static int snap_plan(struct snap *s, size_t idx)
{
    struct mf_entry *e = &s->out->e[idx];
    const struct mf_entry *p = s->prev ? mf_find(s->prev, e->path) : NULL;
    const unsigned char *cand = NULL;

    /* The previous hash is worth a look-up when it may be kept (same
     * mtime), or when it may spare a large file its temporary copy. */
    if (p != NULL && S_ISREG(p->mode) && p->size == e->size &&
        (p->mtime_ns == e->mtime_ns || p->size > (int64_t)SNAP_BUF)) {
        /* Small objects are rows of small.db, large ones loose files: the
         * size says which (store_writer_has asks the right one). */
        int has = store_writer_has(s->sw, p->sha, p->size);
        if (has < 0)
            return snap_errno(s, has, e->path, "look up its previous content in the store");
        if (has == 1 && p->mtime_ns == e->mtime_ns) {
            memcpy(e->sha, p->sha, 32);
            s->reused++;
            return 0;
        }
        if (has == 1)
            cand = p->sha;
    }
    if (s->njob == s->capjob) {
        size_t cap = s->capjob ? s->capjob * 2 : 64;
        struct snap_job *nj;
        if (cap > SIZE_MAX / sizeof *nj || (nj = realloc(s->job, cap * sizeof *nj)) == NULL)
            return snap_fail(s, -ENOMEM, e->path, "out of memory");
        s->job = nj;
        s->capjob = cap;
    }
    s->job[s->njob].idx = idx;
    s->job[s->njob].cand = cand;
    s->njob++;
    return 0;
}

/* Walk the directory open as dfd, whose path is rel ("" for the root):
 * first list it into the manifest (one fstatat per name, never following
 * a link), close the listing, then plan its files and descend into its
 * directories.  Only the descriptors of the directories being walked stay
 * open, one per level.  Files are read afterwards, by the readers. */
static int snap_dir(struct snap *s, int dfd, const char *rel)
{
    char *path = s->path;
    size_t first = s->out->n, last;
    int lfd, r = 0;
    DIR *d;
    struct dirent *de;

    if ((lfd = dup(dfd)) < 0)
        return snap_errno(s, -errno, *rel ? rel : ".", "list it");
    if ((d = fdopendir(lfd)) == NULL) {
        r = -errno;
        close(lfd);
        return snap_errno(s, r, *rel ? rel : ".", "list it");
    }
    for (;;) {
        struct stat sb;
        struct mf_entry e;

        errno = 0;
        if ((de = readdir(d)) == NULL) {
            if (errno != 0)
                r = snap_errno(s, -errno, *rel ? rel : ".", "list it");
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if ((*rel ? ss_path(path, sizeof s->path, "%s/%s", rel, de->d_name)
                  : ss_path(path, sizeof s->path, "%s", de->d_name)) < 0) {
            r = snap_fail(s, -ENAMETOOLONG, *rel ? rel : ".",
                          "holds a path too long for a package");
            break;
        }
        if (!mf_path_ok(path)) {
            r = snap_fail(s, -EINVAL, path,
                          "is no safe package path (control byte or over-long name)");
            break;
        }
        if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            r = errno == ENOENT
                ? snap_fail(s, -EAGAIN, path, "was removed during the walk of the source")
                : snap_errno(s, -errno, path, "stat it");
            break;
        }
        memset(&e, 0, sizeof e);
        e.path = path;
        e.mtime_ns = mtime_ns(&sb);
        if (S_ISDIR(sb.st_mode)) {
            e.mode = S_IFDIR | (sb.st_mode & 07777);
        } else if (S_ISREG(sb.st_mode)) {
            e.mode = S_IFREG | (sb.st_mode & 07777);
            e.size = sb.st_size;
        } else {
            r = snap_fail(s, -EINVAL, path,
                          S_ISLNK(sb.st_mode) ? "is a symbolic link (refused, never followed)"
                          : S_ISFIFO(sb.st_mode) ? "is a FIFO (refused)"
                          : S_ISSOCK(sb.st_mode) ? "is a socket (refused)"
                          : "is a device (refused)");
            break;
        }
        if ((r = mf_add(s->out, &e)) < 0) {
            snap_fail(s, r, path, "out of memory");
            break;
        }
    }
    closedir(d);
    if (r < 0)
        return r;

    last = s->out->n;
    for (size_t i = first; i < last && r == 0; i++) {
        if (s->stop != NULL && *s->stop)
            return snap_fail(s, -EINTR, s->out->e[i].path, "walk stopped before it");
        const char *p = s->out->e[i].path;
        if (S_ISREG(s->out->e[i].mode)) {
            r = snap_plan(s, i);
            continue;
        }
        int cfd = openat(dfd, base_name(p), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd < 0) {
            if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                return snap_fail(s, -EAGAIN, p, "was replaced during the walk of the source");
            return snap_errno(s, -errno, p, "open the directory");
        }
        r = snap_dir(s, cfd, p);
        close(cfd);
    }
    return r;
}

/* A reader: take the next file until none is left, an error is
 * recorded (by any reader) or stop is set. */
static void *snap_reader_run(void *arg)
{
    struct snap_reader *w = arg;
    struct snap *s = w->s;

    while (!flag_get(&s->failed)) {
        size_t i = __atomic_fetch_add(&s->next, 1, __ATOMIC_RELAXED);
        if (i >= s->njob)
            break;
        if (s->stop != NULL && *s->stop) {
            snap_fail(s, -EINTR, s->out->e[s->job[i].idx].path, "walk stopped before it");
            break;
        }
        if (snap_file(w, &s->job[i]) < 0)
            break;
    }
    return NULL;
}

/* Read the files the walk collected with a crew of readers: the calling
 * thread and up to SNAP_THREADS - 1 more.  The manifest array is not
 * resized while they run, and each entry has one writer. */
static int snap_read_all(struct snap *s, struct mf_snapstat *st)
{
    struct snap_reader w[SNAP_THREADS];
    size_t n = (s->njob + SNAP_FILES_PER_THREAD - 1) / SNAP_FILES_PER_THREAD, k;
    int r = 0;

    if (n > SNAP_THREADS)
        n = SNAP_THREADS;
    if (n == 0)
        n = 1;
    memset(w, 0, sizeof w);
    for (k = 0; k < n; k++) {
        w[k].s = s;
        w[k].buf = malloc(SNAP_BUF);
        w[k].ctx = EVP_MD_CTX_new();
        if (w[k].buf == NULL || w[k].ctx == NULL)
            break;
    }
    if (k == 0) {
        r = snap_fail(s, -ENOMEM, ".", "out of memory (read buffer)");
        goto out;
    }
    n = k;          /* fewer readers if memory ran short */
    s->openat2 = probe_openat2(s->rootfd);

    /* The readers take no asynchronous signal: the caller's thread
     * handles them as it did before there was a crew, and sets stop. */
    for (k = 1; k < n; k++)
        w[k].started = ss_thread_create(&w[k].tid, snap_reader_run, &w[k]) == 0;
    snap_reader_run(&w[0]);
    for (k = 1; k < n; k++)
        if (w[k].started)
            pthread_join(w[k].tid, NULL);

    for (k = 0; k < n; k++) {
        st->hashed += w[k].hashed;
        st->stored += w[k].stored;
        st->bytes_hashed += w[k].bytes_hashed;
        s->out->bytes += w[k].bytes_delta;
    }
out:
    for (k = 0; k < SNAP_THREADS; k++) {
        EVP_MD_CTX_free(w[k].ctx);
        free(w[k].buf);
    }
    if (r == 0 && flag_get(&s->failed))
        r = s->rc;
    return r;
}

static int open_store(struct snap *s)
{
    char path[SS_PATH_MAX];
    int r;

    if ((r = store_init(s->storedir)) < 0)
        return snap_errno(s, r, s->storedir, "create the content store");
    if ((r = ss_path(path, sizeof path, "%s/.tmp", s->storedir)) < 0)
        return snap_fail(s, r, s->storedir, "path too long");
    if ((s->tmpfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return snap_errno(s, -errno, path, "open the store");
    if ((r = ss_path(path, sizeof path, "%s/objects", s->storedir)) < 0)
        return snap_fail(s, r, s->storedir, "path too long");
    if ((s->objfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return snap_errno(s, -errno, path, "open the store");
    if ((r = store_writer_open(s->storedir, &s->sw)) < 0)
        return snap_errno(s, r, s->storedir, "open the store's small.db");
    /* An O_TMPFILE object is named through /proc/self/fd: without /proc
     * (a bare chroot), named temporary files are used instead. */
    if (ss_path(path, sizeof path, "/proc/self/fd/%d", s->tmpfd) < 0 ||
        faccessat(AT_FDCWD, path, F_OK, 0) < 0)
        s->tmpfile = 0;
    return 0;
}

int mf_snapshot(const char *srcdir, const struct manifest *prev, const char *storedir,
                struct manifest *out, struct mf_snapstat *st,
                const volatile int *stop, char *err, size_t errlen)
{
    struct mf_snapstat dummy;
    struct snap s = {
        .prev = prev, .storedir = storedir, .out = out, .stop = stop,
        .err = err, .errlen = errlen, .rootfd = -1, .tmpfd = -1, .objfd = -1,
        .noatime = 1, .tmpfile = 1,
    };
    int r;

    if (st == NULL)
        st = &dummy;
    mf_init(out);
    memset(st, 0, sizeof *st);
    if (err != NULL && errlen > 0)
        err[0] = '\0';

    /* The root is the directory the administrator named, so a link in its
     * own path is followed like any path; nothing below it ever is. */
    s.rootfd = open(srcdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s.rootfd < 0) {
        r = -errno;
        const char *why = r == -ENOENT ? "does not exist"
                        : r == -ENOTDIR ? "is not a directory"
                        : r == -EACCES ? "cannot be read (permission denied)"
                        : strerror(-r);
        ss_seterr(err, errlen, "source directory %s %s", srcdir, why);
        return r;
    }
    pthread_mutex_init(&s.mu, NULL);
    if ((r = open_store(&s)) < 0)
        goto out;
    /* Fetched once rather than looked up by every EVP_DigestInit_ex. */
    if ((s.md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
        r = snap_fail(&s, -ENOMEM, srcdir, "out of memory (or no SHA-256 in OpenSSL)");
        goto out;
    }
    r = snap_dir(&s, s.rootfd, "");
    st->reused = s.reused;
    if (r == 0 && s.njob > 0)
        r = snap_read_all(&s, st);
    /* The small objects the walk put are one transaction, made durable
     * here (synchronous=FULL) before the caller records the version.  On
     * an error it is rolled back by store_writer_close below; loose
     * objects already linked in stay, complete, for distmgr's GC. */
    if (r == 0 && (r = store_writer_commit(s.sw)) < 0)
        snap_errno(&s, r, storedir, "commit its small objects (small.db)");
    if (r == 0)
        mf_sort(out);

out:
    if (r < 0 && s.rc < 0)
        r = s.rc;               /* the first error, whose message err holds */
    store_writer_close(s.sw);
    EVP_MD_free(s.md);
    free(s.job);
    if (s.tmpfd >= 0)
        close(s.tmpfd);
    if (s.objfd >= 0)
        close(s.objfd);
    close(s.rootfd);
    pthread_mutex_destroy(&s.mu);
    if (r < 0)
        mf_free(out);
    return r;
}

/* ---- in the site database ----------------------------------------------- */

int mf_db_save(sqlite3 *db, const char *pkg, long long version, const struct manifest *m)
{
    static const char sql[] =
        "INSERT INTO manifest (package, version, path, mode, size, mtime_ns, sha256)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    sqlite3_stmt *st = NULL;
    int r;

    if ((r = sitedb_prepare(db, sql, &st)) < 0)
        return r;
    for (size_t i = 0; i < m->n && r == 0; i++) {
        const struct mf_entry *e = &m->e[i];
        int rc;

        sqlite3_bind_text(st, 1, pkg, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, version);
        sqlite3_bind_text(st, 3, e->path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, e->mode);
        sqlite3_bind_int64(st, 5, e->size);
        sqlite3_bind_int64(st, 6, e->mtime_ns);
        if (S_ISDIR(e->mode))
            sqlite3_bind_null(st, 7);
        else
            sqlite3_bind_blob(st, 7, e->sha, 32, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if ((r = sitedb_errno(db, rc)) < 0)
            log_error("site database: cannot record %s version %lld path %s: %s",
                      pkg, version, e->path, sqlite3_errmsg(db));
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    sqlite3_finalize(st);
    return r;
}

int mf_db_load(sqlite3 *db, const char *pkg, long long version, struct manifest *m)
{
    static const char sql[] =
        "SELECT path, mode, size, mtime_ns, sha256 FROM manifest"
        " WHERE package = ?1 AND version = ?2 ORDER BY path";
    sqlite3_stmt *st = NULL;
    int r, rc, sorted = 1;

    mf_init(m);
    if ((r = sitedb_prepare(db, sql, &st)) < 0)
        return r;
    sqlite3_bind_text(st, 1, pkg, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct mf_entry e;
        const char *path = (const char *)sqlite3_column_text(st, 0);
        sqlite3_int64 mode = sqlite3_column_int64(st, 1);
        const void *sha = sqlite3_column_blob(st, 4);
        int shalen = sqlite3_column_bytes(st, 4);

        memset(&e, 0, sizeof e);
        e.path = (char *)path;
        e.mode = (unsigned)mode;
        e.size = sqlite3_column_int64(st, 2);
        e.mtime_ns = sqlite3_column_int64(st, 3);
        /* The rows were written by mf_db_save, but a database is a file:
         * a row that no manifest could hold is refused, not installed. */
        if (path == NULL || !mf_path_ok(path) || mode < 0 || (mode & ~(sqlite3_int64)(S_IFMT | 07777)) ||
            !(S_ISDIR(e.mode) ? sha == NULL && e.size == 0
                              : S_ISREG(e.mode) && shalen == 32 && e.size >= 0)) {
            log_error("site database: manifest of %s version %lld has a malformed row (path %s)",
                      pkg, version, path ? path : "NULL");
            r = -EBADMSG;
            break;
        }
        if (sha != NULL)
            memcpy(e.sha, sha, 32);
        if (m->n > 0) {
            int c = strcmp(m->e[m->n - 1].path, path);
            if (c == 0) {
                log_error("site database: manifest of %s version %lld lists %s twice",
                          pkg, version, path);
                r = -EBADMSG;
                break;
            }
            if (c > 0)
                sorted = 0;
        }
        if ((r = mf_add(m, &e)) < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE && (r = sitedb_errno(db, rc)) < 0)
        log_error("site database: cannot load the manifest of %s version %lld: %s",
                  pkg, version, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (r < 0) {
        mf_free(m);
        return r;
    }
    if (!sorted)            /* a collation other than BINARY, should one appear */
        mf_sort(m);
    return 0;
}

/* ---- as record text -------------------------------------------------------- */

int mf_to_record(const struct manifest *m, struct sbuf *b)
{
    char hex[65];
    int r;

    for (size_t i = 0; i < m->n; i++) {
        const struct mf_entry *e = &m->e[i];
        if (S_ISDIR(e->mode)) {
            r = rec_addf(b, "dir", "%o %lld %s", e->mode & 07777,
                         (long long)e->mtime_ns, e->path);
        } else if (S_ISREG(e->mode)) {
            ss_hex(e->sha, 32, hex);
            r = rec_addf(b, "file", "%o %lld %lld %s %s", e->mode & 07777,
                         (long long)e->size, (long long)e->mtime_ns, hex, e->path);
        } else {
            r = -EINVAL;
        }
        if (r < 0)
            return r;
    }
    return 0;
}

/* Parse one canonical number ending at a single space: octal (base 8) or
 * decimal, no sign unless neg_ok, no leading zero unless the number is
 * 0, within [0, max] (or down to -max).  Advances *s past the space. */
static int parse_num(const char **s, int base, int neg_ok, int64_t max, int64_t *out)
{
    const char *p = *s;
    int neg = 0;
    uint64_t v = 0;

    if (neg_ok && *p == '-') {
        neg = 1;
        p++;
    }
    const char *d = p;
    while (*p >= '0' && *p < '0' + base) {
        uint64_t digit = (uint64_t)(*p - '0');
        if (v > ((uint64_t)max - digit) / (uint64_t)base)
            return -1;
        v = v * (uint64_t)base + digit;
        p++;
    }
    if (p == d || (*d == '0' && p - d > 1) || (neg && v == 0) || *p != ' ')
        return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    *s = p + 1;
    return 0;
}

static int parse_field(const char *name, const char *v, size_t vlen, struct mf_entry *e,
                       char *err, size_t errlen)
{
    const char *p = v, *what = NULL;
    int64_t mode, size = 0, mt;
    int isdir = strcmp(name, "dir") == 0;

    memset(e, 0, sizeof *e);
    if (strlen(v) != vlen)
        what = "a NUL byte";
    else if (parse_num(&p, 8, 0, 07777, &mode) < 0)
        what = "a bad mode";
    else if (!isdir && parse_num(&p, 10, 0, INT64_MAX, &size) < 0)
        what = "a bad size";
    else if (parse_num(&p, 10, 1, INT64_MAX, &mt) < 0)
        what = "a bad modification time";
    if (what == NULL && !isdir) {
        for (int i = 0; i < 64; i++)
            if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
                what = "a bad SHA-256 (64 lower-case hex digits)";
                break;
            }
        if (what == NULL && p[64] != ' ')
            what = "a bad SHA-256 (64 lower-case hex digits)";
        for (int i = 0; what == NULL && i < 32; i++)
            e->sha[i] = (unsigned char)(ss_hexval(p[2 * i]) << 4 | ss_hexval(p[2 * i + 1]));
        p += 65;
    }
    if (what == NULL && !mf_path_ok(p))
        what = "an unsafe path";
    if (what != NULL) {
        char shown[80];
        show_path(shown, sizeof shown, v);
        ss_seterr(err, errlen, "manifest entry %s=%s%s has %s", name, shown,
                   strlen(v) >= sizeof shown - 1 ? "..." : "", what);
        return -EBADMSG;
    }
    e->path = (char *)p;
    e->mode = (unsigned)mode | (isdir ? S_IFDIR : S_IFREG);
    e->size = size;
    e->mtime_ns = mt;
    return 0;
}

static int entp_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct mf_entry *const *)a)->path,
                  (*(const struct mf_entry *const *)b)->path);
}

int mf_from_record(const struct rec *r, struct manifest *m, char *err, size_t errlen)
{
    const struct mf_entry **byname = NULL;
    char shown[SS_PATH_MAX];
    int rc = 0;

    mf_init(m);
    for (size_t i = 0; i < r->nfields && rc == 0; i++) {
        const struct rec_field *f = &r->fields[i];
        struct mf_entry e;
        if (strcmp(f->name, "file") != 0 && strcmp(f->name, "dir") != 0)
            continue;
        if ((rc = parse_field(f->name, f->value, f->vlen, &e, err, errlen)) < 0)
            break;
        if ((rc = mf_add(m, &e)) == -EOVERFLOW) {
            ss_seterr(err, errlen, "manifest: the file sizes add up to more than 2^63 bytes");
            rc = -EBADMSG;
        } else if (rc < 0) {
            ss_seterr(err, errlen, "manifest: out of memory");
        }
    }
    if (rc < 0)
        goto out;

    /* Duplicates and parents are checked on a sorted view of the entries
     * in the record's own order: a parent must be a directory listed
     * earlier, so that a reader creating entries in record order always
     * has the parent in place. */
    if (m->n > 0 && (byname = malloc(m->n * sizeof *byname)) == NULL) {
        rc = -ENOMEM;
        ss_seterr(err, errlen, "manifest: out of memory");
        goto out;
    }
    for (size_t i = 0; i < m->n; i++)
        byname[i] = &m->e[i];
    if (m->n > 1)
        qsort(byname, m->n, sizeof *byname, entp_cmp);
    for (size_t i = 1; i < m->n; i++)
        if (strcmp(byname[i - 1]->path, byname[i]->path) == 0) {
            show_path(shown, sizeof shown, byname[i]->path);
            ss_seterr(err, errlen, "manifest lists %s twice", shown);
            rc = -EBADMSG;
            goto out;
        }
    for (size_t i = 0; i < m->n; i++) {
        const char *path = m->e[i].path, *sl = strrchr(path, '/');
        if (sl == NULL)
            continue;
        /* Binary search of the parent among the sorted view. */
        size_t plen = (size_t)(sl - path), lo = 0, hi = m->n;
        const struct mf_entry *par = NULL;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = strncmp(byname[mid]->path, path, plen);
            if (c == 0)
                c = byname[mid]->path[plen] == '\0' ? 0 : 1;
            if (c == 0) {
                par = byname[mid];
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (par == NULL || !S_ISDIR(par->mode) || par > &m->e[i]) {
            show_path(shown, sizeof shown, path);
            ss_seterr(err, errlen, "manifest lists %s before its parent directory%s", shown,
                   par == NULL ? " (which is missing)"
                   : !S_ISDIR(par->mode) ? " (which is a file)" : "");
            rc = -EBADMSG;
            goto out;
        }
    }
    mf_sort(m);

out:
    free(byname);
    if (rc < 0)
        mf_free(m);
    return rc;
}
