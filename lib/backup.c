/*
 * backup.c - site backups: running a control file's tasks, the manifest,
 * listing, verifying, pruning and restoring (SPEC 6, 4.3).
 *
 * SYNOPSIS
 *   backup_run                 [Stop], [Tasks] into a new backup, [Start]
 *   backup_list                the backups of a destination, oldest first
 *   backup_status_name         "complete", "incomplete", "damaged"
 *   backup_verify              every file against the MANIFEST
 *   backup_prune               keep the newest N complete backups of a site
 *   backup_restore             a verified backup into a new site root
 *
 * DESCRIPTION
 *   A backup is built in <destination>/.<SITE>-<stamp>.tmp/ and renamed
 *   to <SITE>-<stamp> (or <SITE>-<stamp>-2, -3... when that exists) once
 *   its MANIFEST is written and everything is durable, so a directory
 *   with a final name is always whole; a crash leaves a .tmp directory,
 *   which backup_list shows as incomplete and backup_prune removes after
 *   a day.  Nothing outside the destination is ever removed: every removal
 *   here is of a name inside the destination's directory descriptor.
 *
 *   The daemons keep running (unless the control file stops them), so
 *   each task takes a view that is consistent by construction rather than
 *   by stopping writers:
 *     - the databases (db/site.db, store/small.db) are copied with the
 *       online backup API in one sqlite3_backup_step(-1): one read
 *       transaction, hence one snapshot, while the daemons go on writing
 *       (in WAL mode readers do not block writers).  The copy is written
 *       without journal or syncs (it is ours alone, and synced once at the
 *       end), switched to journal_mode=DELETE so that it is one
 *       self-contained file, and checked with PRAGMA quick_check;
 *     - inbox files and store objects are never changed in place, only
 *       renamed in and out (send requests are rewritten by rename too), so
 *       a hard link taken now keeps the file as it is now, at no cost;
 *       across file systems (EXDEV) or where linking is refused they are
 *       copied.  A file that goes away between the listing and the link
 *       was consumed meanwhile and is left out (an inbox file claimed so is
 *   taken from the inbox's work/, listed after it);
 *     - site.conf and keys/ are small and copied (a copy, not a link: they
 *       are edited by replacement, but the backup must not share the
 *       private key's inode with the site either way).
 *
 *   Every file of the backup is hashed for the MANIFEST.  Hashing the
 *   database copy is the costly part, so files are hashed on 2 to 4
 *   threads while the main thread goes on: the database copy is hashed
 *   (and fsync'ed) while quick_check reads it, the inbox files while the
 *   next ones are linked.  Files this run wrote are fsync'ed one by one
 *   by those threads; linked files were made durable by their writers,
 *   and their new names by the fsync of every directory of the backup.
 *   No syncfs: it would also wait for whatever else is dirty on the
 *   site's file system.
 *
 *   Inboxes: the inbox itself, its work/ (claimed, in progress: the
 *   reader will finish it, or inbox_recover returns it, after a restore)
 *   and its corrupt/ (quarantined files and their .reason: the
 *   administrator's to look at, worth keeping); never .tmp/ (files being
 *   written, not yet handed over).  The inbox is listed before its work/,
 *   so a file claimed in between is seen twice: a name already taken
 *   from the inbox is skipped in work/ (names are unique, so it is the
 *   same file), and the restored site processes it once.
 *
 *   The store: store/small.db by the backup API, and everything else under
 *   store/ (objects/aa/<sha>, out/...) linked, except dot entries
 *   (store/.tmp) and small.db's -wal, -shm and -journal files.
 *
 *   The database copy cannot be interrupted in the middle (one backup
 *   step); the stop flag is polled before and after it, between files,
 *   and every 64 MiB while hashing.
 *
 * DIAGNOSTICS
 *   backup_run logs one info line when it starts and one when it
 *   succeeds, and an error with the reason when it fails; backup_prune
 *   logs each backup it removes.  Functions return 0 (or a count) or a
 *   negative errno, and fill err with a sentence naming the task and the
 *   file: -EBADMSG for a damaged backup or manifest, -EINTR when stopped,
 *   -EIO for a database the backup API or quick_check refused,
 *   -ENOTEMPTY for a restore into a directory that is not empty.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "backup.h"
#include "fsutil.h"
#include "inbox.h"
#include "log.h"
#include "manifest.h"
#include "record.h"
#include "sitedb.h"
#include "util.h"

#define BK_BUF            (1u << 20)          /* read/hash buffer, per thread */
#define BK_THREADS_MIN    2
#define BK_THREADS_MAX    4
#define BK_STOP_EVERY     (64u << 20)         /* stop flag polled while hashing */
#define BK_STAMP_LEN      16                  /* YYYYMMDDTHHMMSSZ */
#define BK_NAME_TRIES     999
#define BK_TMP_STALE_MS   (24LL * 3600 * 1000)
#define BK_BUSY_GIVEUP_MS (120 * 1000)        /* source database locked this long */

/* A manifest lists every file of a backup: a store of many objects makes
 * a large one, far beyond the record defaults meant for hand-off files. */
static const struct rec_limits bk_limits = {
    .max_size = 1u << 30,
    .max_line = SS_PATH_MAX + 256,
    .max_fields = 1u << 24,
};

const char *backup_status_name(enum backup_status s)
{
    switch (s) {
    case BACKUP_COMPLETE: return "complete";
    case BACKUP_INCOMPLETE: return "incomplete";
    case BACKUP_DAMAGED: return "damaged";
    }
    return "unknown";
}

/* ---- small helpers ------------------------------------------------------ */

static int stopped(const volatile int *stop)
{
    return stop != NULL && *stop != 0;
}

struct strvec {
    char  **v;
    size_t  n, cap;
};

static int sv_add(struct strvec *s, const char *str)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **v = realloc(s->v, cap * sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    if ((s->v[s->n] = strdup(str)) == NULL)
        return -ENOMEM;
    s->n++;
    return 0;
}

static void sv_free(struct strvec *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The mode of a directory of a site (or backup) tree: keys/ and db/ are
 * closed to others, as `sitectl init` makes them. */
static mode_t dir_mode(const char *rel)
{
    if (strcmp(rel, "keys") == 0)
        return 0700;
    if (strcmp(rel, "db") == 0 || strcmp(rel, "backup") == 0)
        return 0750;
    return 0755;
}

/* mkdir -p of reldir below fd, each new directory noted in dirs (for the
 * final fsync).  last caches the last directory made, since files come
 * grouped by directory. */
static int mkdirs_at(int fd, const char *reldir, struct strvec *dirs, char *last, size_t lastlen)
{
    char p[SS_PATH_MAX];
    int r;

    if (*reldir == '\0' || strcmp(reldir, last) == 0)
        return 0;
    if ((r = ss_strcpy(p, sizeof p, reldir)) < 0)
        return r;
    for (char *s = p;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdirat(fd, p, dir_mode(p)) == 0) {
            if ((r = sv_add(dirs, p)) < 0)
                return r;
        } else if (errno != EEXIST) {
            return -errno;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    ss_strcpy(last, lastlen, reldir);
    return 0;
}

/* The directory part of a relative path ("" for a top-level name). */
static void dir_of(const char *rel, char *out, size_t len)
{
    const char *s = strrchr(rel, '/');
    size_t n = s ? (size_t)(s - rel) : 0;

    if (n >= len)
        n = len - 1;
    memcpy(out, rel, n);
    out[n] = '\0';
}

/* Copy the data of in to out: copy_file_range where the kernel can (it
 * may share extents, never the inode), else read/write.  ctx, when given,
 * hashes what is copied (read/write only, then), *copied counts it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static int copy_data(int in, int out, SHA256_CTX *ctx, int64_t *copied)
{
    int64_t total = 0;
    char *buf;

    if (ctx == NULL) {
        for (;;) {
            ssize_t n = copy_file_range(in, NULL, out, NULL, 1u << 30, 0);
            if (n > 0) {
                total += n;
                continue;
            }
            if (n == 0) {
                if (copied)
                    *copied = total;
                return 0;
            }
            if (errno == EINTR)
                continue;
            if (total == 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                               errno == EOPNOTSUPP || errno == EBADF))
                break;          /* not here: plain read/write below */
            return -errno;
        }
    }
    if ((buf = malloc(BK_BUF)) == NULL)
        return -ENOMEM;
    for (;;) {
        ssize_t n = read(in, buf, BK_BUF);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            free(buf);
            return e;
        }
        if (n == 0)
            break;
        if (ctx != NULL)
            SHA256_Update(ctx, buf, (size_t)n);
        int r = ss_write_all(out, buf, (size_t)n);
        if (r < 0) {
            free(buf);
            return r;
        }
        total += n;
    }
    free(buf);
    if (copied)
        *copied = total;
    return 0;
}
#pragma GCC diagnostic pop

/*
 * Copy the regular file src (below sfd; a symbolic link followed only
 * when follow) to dst below dfd, created with O_EXCL and the source's
 * permission bits (or mode when mode != 0).  fsync when dosync.  -ENOENT
 * when the source is gone; -EINVAL when it is not a regular file.
 */
static int copy_file(int sfd, const char *src, int dfd, const char *dst, int follow,
                     unsigned mode, int dosync, SHA256_CTX *ctx, int64_t *copied)
{
    struct stat st;
    int in, out, r;

    in = openat(sfd, src, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
    if (in < 0)
        return errno == ELOOP ? -EINVAL : -errno;
    if (fstat(in, &st) < 0) {
        r = -errno;
        close(in);
        return r;
    }
    if (!S_ISREG(st.st_mode)) {
        close(in);
        return -EINVAL;
    }
    if (mode == 0)
        mode = st.st_mode & 07777;
    out = openat(dfd, dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) {
        r = -errno;
        close(in);
        return r;
    }
    (void)posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
    r = copy_data(in, out, ctx, copied);
    /* The umask must not loosen or tighten what we restore. */
    if (r == 0 && fchmod(out, mode) < 0)
        r = -errno;
    if (r == 0 && dosync)
        r = ss_fsync_fd(out);
    if (close(out) < 0 && r == 0)
        r = -errno;
    close(in);
    return r;
}

/* ---- hashing on a few threads ------------------------------------------- */

struct bk_file {
    char         *path;         /* relative to the backup directory */
    const char   *task;         /* for messages */
    int           copied;       /* written by this run: fsync it */
    int           err;          /* 0, or what hashing it met */
    int64_t       size;
    unsigned      mode;
    unsigned char sha[32];
    /* backup_verify: what the manifest says */
    int64_t       want_size;
    unsigned      want_mode;
    unsigned char want_sha[32];
};

struct hasher {
    pthread_mutex_t  mu;
    pthread_cond_t   cv;
    struct bk_file **v;
    size_t           n, cap, next;
    int              closed;
    int              started;
    _Atomic int      abort;         /* a failed run: leave the rest */
    int              basefd;
    int              dosync;
    const volatile int *stop;
    pthread_t        tid[BK_THREADS_MAX];
    int              nthreads;
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static int hash_file(struct hasher *h, struct bk_file *f, char *buf)
{
    SHA256_CTX c;
    struct stat st;
    int64_t total = 0, since = 0;
    int fd, r = 0;

    fd = openat(h->basefd, f->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ELOOP ? -EINVAL : -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    SHA256_Init(&c);
    for (;;) {
        ssize_t n = read(fd, buf, BK_BUF);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (n == 0)
            break;
        SHA256_Update(&c, buf, (size_t)n);
        total += n;
        if ((since += n) >= BK_STOP_EVERY) {
            since = 0;
            if (stopped(h->stop) || h->abort) {
                r = -EINTR;
                break;
            }
        }
    }
    if (r == 0 && h->dosync && f->copied)
        r = ss_fsync_fd(fd);
    close(fd);
    if (r == 0) {
        SHA256_Final(f->sha, &c);
        f->size = total;
        f->mode = st.st_mode & 07777;
    }
    return r;
}
#pragma GCC diagnostic pop

static void *hasher_main(void *arg)
{
    struct hasher *h = arg;
    char *buf = malloc(BK_BUF);

    for (;;) {
        pthread_mutex_lock(&h->mu);
        while (h->next >= h->n && !h->closed)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->next >= h->n) {
            pthread_mutex_unlock(&h->mu);
            break;
        }
        struct bk_file *f = h->v[h->next++];
        pthread_mutex_unlock(&h->mu);
        if (buf == NULL)
            f->err = -ENOMEM;
        else if (stopped(h->stop) || h->abort)
            f->err = -EINTR;
        else
            f->err = hash_file(h, f, buf);
    }
    free(buf);
    return NULL;
}

static int hasher_start(struct hasher *h, int basefd, int dosync, const volatile int *stop)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int want = ncpu < BK_THREADS_MIN ? BK_THREADS_MIN : ncpu > BK_THREADS_MAX ? BK_THREADS_MAX
                                                                              : (int)ncpu;

    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->basefd = basefd;
    h->dosync = dosync;
    h->stop = stop;
    h->started = 1;
    for (int i = 0; i < want; i++) {
        if (ss_thread_create(&h->tid[h->nthreads], hasher_main, h) != 0)
            break;
        h->nthreads++;
    }
    return 0;
}

/* Queue a file for hashing (it must exist below basefd by now). */
static int hasher_add(struct hasher *h, const char *path, const char *task, int copied,
                      struct bk_file **out)
{
    struct bk_file *f = calloc(1, sizeof *f);
    int r = 0;

    if (f == NULL || (f->path = strdup(path)) == NULL) {
        free(f);
        return -ENOMEM;
    }
    f->task = task;
    f->copied = copied;
    pthread_mutex_lock(&h->mu);
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        struct bk_file **v = realloc(h->v, cap * sizeof *v);
        if (v == NULL)
            r = -ENOMEM;
        else {
            h->v = v;
            h->cap = cap;
        }
    }
    if (r == 0) {
        h->v[h->n++] = f;
        pthread_cond_signal(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    if (r < 0) {
        free(f->path);
        free(f);
    } else if (out != NULL) {
        *out = f;
    }
    return r;
}

/* No more files: wait for the threads (or, when none could be started,
 * hash everything here), then sort the files by path. */
static void hasher_finish(struct hasher *h)
{
    if (!h->started)
        return;
    pthread_mutex_lock(&h->mu);
    h->closed = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (h->nthreads == 0)
        hasher_main(h);
    for (int i = 0; i < h->nthreads; i++)
        pthread_join(h->tid[i], NULL);
    h->nthreads = 0;
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp((*(struct bk_file *const *)a)->path, (*(struct bk_file *const *)b)->path);
}

static void hasher_sort(struct hasher *h)
{
    if (h->n > 1)
        qsort(h->v, h->n, sizeof *h->v, cmp_file);
}

static void hasher_free(struct hasher *h)
{
    if (!h->started)
        return;
    hasher_finish(h);
    for (size_t i = 0; i < h->n; i++) {
        free(h->v[i]->path);
        free(h->v[i]);
    }
    free(h->v);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    memset(h, 0, sizeof *h);
}

/* ---- backup names --------------------------------------------------------- */

/* "<SITE>-<stamp>" or "<SITE>-<stamp>-N" (N 2..999), optionally as a
 * temporary ".<...>.tmp".  1 and the parts, or 0. */
static int parse_name(const char *name, char *site, int64_t *ms, int *tmp)
{
    char base[SS_NAME_MAX + 1];
    size_t len = strlen(name);
    struct tm tm;

    *tmp = 0;
    if (name[0] == '.') {
        if (len < 5 || strcmp(name + len - 4, ".tmp") != 0)
            return 0;
        len -= 5;
        memcpy(base, name + 1, len);
        base[len] = '\0';
        *tmp = 1;
    } else if (ss_strcpy(base, sizeof base, name) < 0) {
        return 0;
    }
    len = strlen(base);
    if (len < SS_SITE_LEN + 1 + BK_STAMP_LEN || base[SS_SITE_LEN] != '-')
        return 0;
    memcpy(site, base, SS_SITE_LEN);
    site[SS_SITE_LEN] = '\0';
    if (!ss_site_code_ok(site))
        return 0;
    const char *s = base + SS_SITE_LEN + 1;
    for (int i = 0; i < BK_STAMP_LEN; i++) {
        int want_digit = i != 8 && i != 15;
        if (want_digit ? (s[i] < '0' || s[i] > '9') : s[i] != (i == 8 ? 'T' : 'Z'))
            return 0;
    }
    const char *rest = s + BK_STAMP_LEN;
    if (*rest != '\0') {
        long long n;
        if (*rest != '-' || rest[1] == '0' || ss_parse_int(rest + 1, 2, BK_NAME_TRIES, &n) < 0)
            return 0;
    }
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%4d%2d%2dT%2d%2d%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *ms = (int64_t)timegm(&tm) * 1000;
    return 1;
}

/* ---- the manifest ----------------------------------------------------------- */

struct mf_line {
    char         *path;          /* points into the parsed record */
    int64_t       size;
    unsigned      mode;
    unsigned char sha[32];
};

struct bk_manifest {
    char           *buf;         /* the file, parsed in place */
    struct rec      rec;
    const char     *site, *created, *root, *tasks;
    int64_t         time_ms;
    struct mf_line *files;
    size_t          n;
    long long       bytes;
};

static void manifest_free(struct bk_manifest *m)
{
    free(m->files);
    rec_free(&m->rec);
    free(m->buf);
    memset(m, 0, sizeof *m);
}

/* "<sha> <size> <mode> <path>" */
static int parse_file_line(const char *v, struct mf_line *l)
{
    const char *p = v, *q;
    char num[32];
    long long n;

    char hex[65];

    if (strlen(v) < 64 + 6 || v[64] != ' ')
        return -1;
    memcpy(hex, v, 64);
    hex[64] = '\0';
    if (ss_unhex(hex, l->sha, 32) < 0)
        return -1;
    p = v + 65;
    if ((q = strchr(p, ' ')) == NULL || (size_t)(q - p) >= sizeof num)
        return -1;
    memcpy(num, p, (size_t)(q - p));
    num[q - p] = '\0';
    if (ss_parse_int(num, 0, INT64_MAX, &n) < 0)
        return -1;
    l->size = n;
    p = q + 1;
    if ((q = strchr(p, ' ')) == NULL || q == p || q - p > 5)
        return -1;
    l->mode = 0;
    for (const char *s = p; s < q; s++) {
        if (*s < '0' || *s > '7')
            return -1;
        l->mode = l->mode * 8 + (unsigned)(*s - '0');
    }
    if (l->mode > 07777)
        return -1;
    l->path = (char *)q + 1;
    return 0;
}

/* Read and check <dirfd>/MANIFEST: the record, its fields, every file
 * line (a safe path, sorted, unique, never MANIFEST itself).  -EBADMSG
 * with err, -ENOENT when there is none. */
static int manifest_load(int dirfd, struct bk_manifest *m, char *err, size_t errlen)
{
    char perr[SS_ERR_MAX];
    size_t len = 0, nf;
    int r;

    memset(m, 0, sizeof *m);
    r = ss_read_file(dirfd, BACKUP_MANIFEST, bk_limits.max_size, &m->buf, &len);
    if (r < 0) {
        ss_seterr(err, errlen, "cannot read its %s: %s", BACKUP_MANIFEST, strerror(-r));
        return r == -ENOENT ? -ENOENT : r == -EFBIG ? -EBADMSG : r;
    }
    r = rec_parse(&m->rec, m->buf, len, &bk_limits, perr, sizeof perr);
    if (r < 0) {
        ss_seterr(err, errlen, "its %s is damaged: %s", BACKUP_MANIFEST, perr);
        manifest_free(m);
        return r == -ENOMEM ? r : -EBADMSG;
    }
    if (strcmp(m->rec.kind, "backup") != 0 || m->rec.version != 1) {
        ss_seterr(err, errlen, "its %s is a \"%s\" record version %d, not a backup version 1",
                  BACKUP_MANIFEST, m->rec.kind, m->rec.version);
        manifest_free(m);
        return -EBADMSG;
    }
    if ((m->site = rec_need(&m->rec, "site", perr, sizeof perr)) == NULL ||
        (m->created = rec_need(&m->rec, "created", perr, sizeof perr)) == NULL ||
        (m->root = rec_need(&m->rec, "root", perr, sizeof perr)) == NULL ||
        (m->tasks = rec_need(&m->rec, "tasks", perr, sizeof perr)) == NULL ||
        ss_parse_time_iso(m->created, &m->time_ms) < 0) {
        ss_seterr(err, errlen, "its %s is damaged: %s", BACKUP_MANIFEST,
                  m->created && m->tasks ? "bad created time" : perr);
        manifest_free(m);
        return -EBADMSG;
    }
    nf = rec_count(&m->rec, "file");
    if (nf > 0 && (m->files = calloc(nf, sizeof *m->files)) == NULL) {
        manifest_free(m);
        return -ENOMEM;
    }
    for (size_t i = 0, k = 0; i < m->rec.nfields; i++) {
        const struct rec_field *f = &m->rec.fields[i];
        if (strcmp(f->name, "file") != 0)
            continue;
        struct mf_line *l = &m->files[k];
        if (strlen(f->value) != f->vlen || parse_file_line(f->value, l) < 0 ||
            !mf_path_ok(l->path) || strcmp(l->path, BACKUP_MANIFEST) == 0) {
            ss_seterr(err, errlen, "its %s is damaged: bad file line \"%.200s\"",
                      BACKUP_MANIFEST, f->value);
            manifest_free(m);
            return -EBADMSG;
        }
        if (k > 0 && strcmp(m->files[k - 1].path, l->path) >= 0) {
            ss_seterr(err, errlen, "its %s is damaged: file %s is out of order or repeated",
                      BACKUP_MANIFEST, l->path);
            manifest_free(m);
            return -EBADMSG;
        }
        m->bytes += l->size;
        m->n = ++k;
    }
    return 0;
}

/* ---- walking a tree ----------------------------------------------------- */

struct walker {
    int   basefd;
    int   skip_dots;                 /* leave out dot entries */
    int (*file)(void *arg, const char *rel);    /* a regular file */
    int (*other)(void *arg, const char *rel);   /* neither file nor directory; NULL: ignore */
    int (*skip)(void *arg, const char *rel);    /* 1: leave this entry out */
    void *arg;
    int   has_x;                     /* a directory never entered: the destination */
    dev_t xdev;
    ino_t xino;
};

/* Walk rel (a directory below basefd; "." for basefd itself) in no
 * particular order.  A directory that vanished meanwhile is no error. */
static int walk(struct walker *w, const char *rel)
{
    char sub[SS_PATH_MAX];
    struct dirent *de;
    struct stat st;
    DIR *d;
    int fd, r = 0;

    fd = openat(w->basefd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (w->has_x && fstat(fd, &st) == 0 && st.st_dev == w->xdev && st.st_ino == w->xino) {
        close(fd);
        return 0;
    }
    if ((d = fdopendir(fd)) == NULL) {
        r = -errno;
        close(fd);
        return r;
    }
    while (r == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (w->skip_dots && de->d_name[0] == '.')
            continue;
        r = strcmp(rel, ".") == 0 ? ss_path(sub, sizeof sub, "%s", de->d_name)
                                  : ss_path(sub, sizeof sub, "%s/%s", rel, de->d_name);
        if (r < 0)
            break;
        if (w->skip && w->skip(w->arg, sub))
            continue;
        unsigned char t = de->d_type;
        if (t == DT_UNKNOWN) {
            if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                    continue;
                r = -errno;
                break;
            }
            t = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR : DT_LNK;
        }
        if (t == DT_DIR)
            r = walk(w, sub);
        else if (t == DT_REG)
            r = w->file(w->arg, sub);
        else if (w->other)
            r = w->other(w->arg, sub);
    }
    closedir(d);
    return r;
}

/* ---- backup_run ---------------------------------------------------------- */

enum { T_DATABASE = 1, T_CONFIG = 2, T_KEYS = 4, T_INBOXES = 8, T_STORE = 16 };

struct run {
    const struct backup_opts *o;
    int            rootfd;
    int            tmpfd;
    char           tmppath[SS_PATH_MAX];
    struct hasher  h;
    struct strvec  dirs;            /* made in the backup, for fsync */
    char           lastdir[SS_PATH_MAX];
    const char    *task;
    char          *err;
    size_t         errlen;
    dev_t          destdev;
    ino_t          destino;
    long long      linked, copied, skipped;
};

static int run_fail(struct run *rn, int r, const char *rel, const char *what)
{
    if (r == -EINTR)
        ss_seterr(rn->err, rn->errlen, "%s: interrupted (the daemon is stopping)", rn->task);
    else if (rel != NULL)
        ss_seterr(rn->err, rn->errlen, "%s: %s%s%s: %s", rn->task, what ? what : "",
                  what ? " " : "", rel, strerror(-r));
    else
        ss_seterr(rn->err, rn->errlen, "%s: %s: %s", rn->task, what ? what : "",
                  strerror(-r));
    return r;
}

static int run_mkparent(struct run *rn, const char *rel)
{
    char dir[SS_PATH_MAX];

    dir_of(rel, dir, sizeof dir);
    return mkdirs_at(rn->tmpfd, dir, &rn->dirs, rn->lastdir, sizeof rn->lastdir);
}

/* Copy rel from the site into the backup (a file this run writes). */
static int run_copy(struct run *rn, const char *rel, int follow)
{
    int r;

    if (stopped(rn->o->stop))
        return run_fail(rn, -EINTR, NULL, NULL);
    if ((r = run_mkparent(rn, rel)) < 0)
        return run_fail(rn, r, rel, "cannot make the directory of");
    r = copy_file(rn->rootfd, rel, rn->tmpfd, rel, follow, 0, 0, NULL, NULL);
    if (r < 0)
        return run_fail(rn, r, rel, "cannot copy");
    rn->copied++;
    if ((r = hasher_add(&rn->h, rel, rn->task, 1, NULL)) < 0)
        return run_fail(rn, r, rel, NULL);
    return 0;
}

/* Hard-link rel from the site into the backup; copied where linking is
 * impossible; skipped when it went away (consumed since the listing). */
static int run_link(struct run *rn, const char *rel)
{
    int r, copied = 0;

    if (stopped(rn->o->stop))
        return run_fail(rn, -EINTR, NULL, NULL);
    if ((r = run_mkparent(rn, rel)) < 0)
        return run_fail(rn, r, rel, "cannot make the directory of");
    if (linkat(rn->rootfd, rel, rn->tmpfd, rel, 0) < 0) {
        r = -errno;
        if (r == -ENOENT) {
            rn->skipped++;
            return 0;
        }
        if (r != -EXDEV && r != -EPERM && r != -EMLINK)
            return run_fail(rn, r, rel, "cannot link");
        /* Another file system, protected_hardlinks, too many links: a copy. */
        r = copy_file(rn->rootfd, rel, rn->tmpfd, rel, 0, 0, 0, NULL, NULL);
        if (r == -ENOENT) {
            rn->skipped++;
            return 0;
        }
        if (r < 0)
            return run_fail(rn, r, rel, "cannot copy");
        copied = 1;
        rn->copied++;
    } else {
        rn->linked++;
    }
    if ((r = hasher_add(&rn->h, rel, rn->task, copied, NULL)) < 0)
        return run_fail(rn, r, rel, NULL);
    return 0;
}

static int sqlite_fail(struct run *rn, sqlite3 *db, const char *rel, const char *what)
{
    ss_seterr(rn->err, rn->errlen, "%s: %s %s: %s", rn->task, what, rel,
              db ? sqlite3_errmsg(db) : "out of memory");
    return -EIO;
}

/*
 * Copy the SQLite database rel of the site into the backup with the online
 * backup API in one step (one snapshot), then check the copy with PRAGMA
 * quick_check while the hasher reads it.  -ENOENT (no message) when the
 * source does not exist and !required.
 */
static int run_sqlite(struct run *rn, const char *rel, int required)
{
    char src[SS_PATH_MAX], dst[SS_PATH_MAX], dir[SS_PATH_MAX];
    sqlite3 *s = NULL, *d = NULL;
    sqlite3_backup *b;
    sqlite3_stmt *st = NULL;
    struct stat sst;
    int rc, r;

    if (stopped(rn->o->stop))
        return run_fail(rn, -EINTR, NULL, NULL);
    if (fstatat(rn->rootfd, rel, &sst, 0) < 0) {
        r = -errno;
        if (r == -ENOENT && !required)
            return r;
        return run_fail(rn, r, rel, NULL);
    }
    if ((r = ss_path(src, sizeof src, "%s/%s", rn->o->root, rel)) < 0 ||
        (r = ss_path(dst, sizeof dst, "%s/%s", rn->tmppath, rel)) < 0)
        return run_fail(rn, r, rel, NULL);
    if ((r = run_mkparent(rn, rel)) < 0)
        return run_fail(rn, r, rel, "cannot make the directory of");

    rc = sqlite3_open_v2(src, &s, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        r = sqlite_fail(rn, s, rel, "cannot open");
        goto out;
    }
    sqlite3_busy_timeout(s, SITEDB_BUSY_TIMEOUT_MS);
    rc = sqlite3_open_v2(dst, &d, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         NULL);
    /* The copy is ours alone until the backup is renamed into place, and
     * it is fsync'ed once at the end: a journal and syncs during the copy
     * would only slow it down. */
    if (rc != SQLITE_OK ||
        sqlite3_exec(d, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", NULL, NULL, NULL) !=
            SQLITE_OK) {
        r = sqlite_fail(rn, d, rel, "cannot create the copy of");
        goto out;
    }
    if ((b = sqlite3_backup_init(d, "main", s, "main")) == NULL) {
        r = sqlite_fail(rn, d, rel, "cannot start the backup of");
        goto out;
    }
    /* One step of -1 pages holds one read transaction for the whole copy:
     * a snapshot.  A busy source (a writer's exclusive lock, the rollback
     * journal mode of an old database) is waited for, within reason. */
    int64_t t0 = ss_mono_ms();
    for (;;) {
        rc = sqlite3_backup_step(b, -1);
        if (rc == SQLITE_DONE || (rc != SQLITE_BUSY && rc != SQLITE_LOCKED))
            break;
        if (stopped(rn->o->stop) || ss_mono_ms() - t0 > BK_BUSY_GIVEUP_MS)
            break;
        sqlite3_sleep(100);
    }
    int frc = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && stopped(rn->o->stop))
            r = run_fail(rn, -EINTR, NULL, NULL);
        else
            r = sqlite_fail(rn, rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? s : d, rel,
                            "cannot back up");
        goto out;
    }
    if (frc != SQLITE_OK) {
        r = sqlite_fail(rn, d, rel, "cannot back up");
        goto out;
    }
    /* The copy carries the source's WAL mode in its header, and opening
     * it would make -wal and -shm files beside it: one self-contained file
     * in rollback mode instead (sitedb_open puts WAL back after a
     * restore). */
    if (sqlite3_exec(d, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        r = sqlite_fail(rn, d, rel, "cannot finish the copy of");
        goto out;
    }
    if (sqlite3_close(d) != SQLITE_OK) {
        r = sqlite_fail(rn, d, rel, "cannot close the copy of");
        d = NULL;
        goto out;
    }
    d = NULL;
    sqlite3_close(s);
    s = NULL;
    if (fchmodat(rn->tmpfd, rel, sst.st_mode & 07777, 0) < 0) {
        r = run_fail(rn, -errno, rel, "cannot set the mode of");
        goto out;
    }
    rn->copied++;
    if ((r = hasher_add(&rn->h, rel, rn->task, 1, NULL)) < 0) {
        r = run_fail(rn, r, rel, NULL);
        goto out;
    }

    /* quick_check of what is on disk (not of the copy's page cache). */
    rc = sqlite3_open_v2(dst, &d, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    /* Read through a mapping rather than read() into the page cache of
     * SQLite: the check of a 512 MB copy takes half the time. */
    if (rc == SQLITE_OK)
        (void)sqlite3_exec(d, "PRAGMA mmap_size=2147418112", NULL, NULL, NULL);
    if (rc != SQLITE_OK || sqlite3_prepare_v2(d, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK) {
        r = sqlite_fail(rn, d, rel, "cannot check the copy of");
        goto out;
    }
    rc = sqlite3_step(st);
    const char *res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (rc != SQLITE_ROW || res == NULL || strcmp(res, "ok") != 0) {
        if (rc == SQLITE_ROW)
            ss_seterr(rn->err, rn->errlen, "%s: PRAGMA quick_check of the copy of %s says: %.300s",
                      rn->task, rel, res ? res : "(null)");
        else
            sqlite_fail(rn, d, rel, "cannot check the copy of");
        r = -EIO;
        goto out;
    }
    r = 0;
out:
    sqlite3_finalize(st);
    if (d)
        sqlite3_close(d);
    if (s)
        sqlite3_close(s);
    /* A read-only open of a database in rollback mode makes no side file,
     * but one left by a failed step must not become a stray of the
     * backup. */
    static const char *const side[] = { "-journal", "-wal", "-shm" };
    for (size_t i = 0; i < SS_ARRAY_LEN(side); i++)
        if (ss_path(dir, sizeof dir, "%s%s", rel, side[i]) == 0)
            (void)unlinkat(rn->tmpfd, dir, 0);
    return r;
}

/* Regular non-dot files of rel below rootfd, sorted.  -ENOENT when rel
 * does not exist. */
static int list_files(int rootfd, const char *rel, struct strvec *out)
{
    struct dirent *de;
    struct stat st;
    DIR *d;
    int fd, r = 0;

    if ((fd = openat(rootfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    if ((d = fdopendir(fd)) == NULL) {
        r = -errno;
        close(fd);
        return r;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (de->d_type == DT_UNKNOWN) {
            if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                !S_ISREG(st.st_mode))
                continue;
        } else if (de->d_type != DT_REG) {
            continue;
        }
        if ((r = sv_add(out, de->d_name)) < 0)
            break;
    }
    closedir(d);
    if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return r;
}

static int task_inboxes(struct run *rn)
{
    char rel[SS_PATH_MAX], dir[SS_PATH_MAX];
    int r = 0;

    for (size_t i = 0; i < IB_COUNT && r == 0; i++) {
        static const char *const part[] = { "", "/work", "/corrupt" };
        struct strvec inbox = { 0 };
        for (size_t p = 0; p < SS_ARRAY_LEN(part) && r == 0; p++) {
            struct strvec names = { 0 };
            if ((r = ss_path(dir, sizeof dir, "inboxes/%s%s", inbox_defs[i].path, part[p])) < 0) {
                run_fail(rn, r, inbox_defs[i].path, NULL);
                break;
            }
            r = list_files(rn->rootfd, dir, &names);
            if (r == -ENOENT || r == -ENOTDIR) {
                r = 0;
            } else if (r < 0) {
                run_fail(rn, r, dir, "cannot list");
            }
            for (size_t k = 0; k < names.n && r == 0; k++) {
                /* Backup requests and their results are not the site's
                 * state: a restored site must not answer them again. */
                if (inbox_defs[i].id == IB_SITEBKUP && strcmp(names.v[k], "sitebkup.ctl") != 0)
                    continue;
                /* Claimed between the two listings and taken from the
                 * inbox already: once is enough. */
                if (p == 1 && inbox.n > 0 && bsearch(&names.v[k], inbox.v, inbox.n, sizeof *inbox.v, cmp_str))
                    continue;
                if ((r = ss_path(rel, sizeof rel, "%s/%s", dir, names.v[k])) < 0) {
                    run_fail(rn, r, names.v[k], NULL);
                    break;
                }
                long long before = rn->skipped;
                r = run_link(rn, rel);
                /* Gone from the inbox before its link (claimed meanwhile):
                 * not taken, so work/ must not skip it. */
                if (r == 0 && p == 0 && rn->skipped != before)
                    names.v[k][0] = '\0';
            }
            if (p == 0 && names.n > 1)
                qsort(names.v, names.n, sizeof *names.v, cmp_str);
            if (p == 0) {
                inbox = names;
            } else {
                sv_free(&names);
            }
        }
        sv_free(&inbox);
    }
    return r;
}

static int keys_file(void *arg, const char *rel)
{
    return run_copy(arg, rel, 0);
}

static int task_keys(struct run *rn)
{
    struct walker w = { .basefd = rn->rootfd, .skip_dots = 1, .file = keys_file, .arg = rn,
                        .has_x = 1, .xdev = rn->destdev, .xino = rn->destino };
    struct stat st;
    int r;

    if (fstatat(rn->rootfd, "keys", &st, 0) < 0)
        return run_fail(rn, -errno, "keys", NULL);
    if ((r = mkdirs_at(rn->tmpfd, "keys", &rn->dirs, rn->lastdir, sizeof rn->lastdir)) < 0)
        return run_fail(rn, r, "keys", "cannot make");
    r = walk(&w, "keys");
    if (r < 0 && rn->err[0] == '\0')
        run_fail(rn, r, "keys", "cannot list");
    return r;
}

static int store_skip(void *arg, const char *rel)
{
    (void)arg;
    return strcmp(rel, "store/small.db") == 0 || strcmp(rel, "store/small.db-wal") == 0 ||
           strcmp(rel, "store/small.db-shm") == 0 || strcmp(rel, "store/small.db-journal") == 0;
}

static int store_file(void *arg, const char *rel)
{
    return run_link(arg, rel);
}

static int task_store(struct run *rn)
{
    struct walker w = { .basefd = rn->rootfd, .skip_dots = 1, .file = store_file,
                        .skip = store_skip, .arg = rn,
                        .has_x = 1, .xdev = rn->destdev, .xino = rn->destino };
    struct stat st;
    int r;

    if (fstatat(rn->rootfd, "store", &st, 0) < 0) {
        if (errno == ENOENT) {
            log_info("backup: the site has no store/, nothing to copy for the store task");
            return 0;
        }
        return run_fail(rn, -errno, "store", NULL);
    }
    r = run_sqlite(rn, "store/small.db", 0);
    if (r < 0 && r != -ENOENT)
        return r;
    r = walk(&w, "store");
    if (r < 0 && rn->err[0] == '\0')
        run_fail(rn, r, "store", "cannot list");
    return r;
}

static int run_task(struct run *rn, int t)
{
    switch (t) {
    case T_DATABASE:
        rn->task = "database";
        return run_sqlite(rn, "db/site.db", 1);
    case T_CONFIG:
        rn->task = "config";
        return run_copy(rn, "site.conf", 1);   /* installed: a link to /etc/sitesrv */
    case T_KEYS:
        rn->task = "keys";
        return task_keys(rn);
    case T_INBOXES:
        rn->task = "inboxes";
        return task_inboxes(rn);
    case T_STORE:
        rn->task = "store";
        return task_store(rn);
    }
    return -EINVAL;
}

static const char *task_name(int t)
{
    switch (t) {
    case T_DATABASE: return "database";
    case T_CONFIG: return "config";
    case T_KEYS: return "keys";
    case T_INBOXES: return "inboxes";
    case T_STORE: return "store";
    }
    return "?";
}

static int op_task(enum bkctl_op op)
{
    switch (op) {
    case BK_DATABASE: return T_DATABASE;
    case BK_CONFIG: return T_CONFIG;
    case BK_KEYS: return T_KEYS;
    case BK_INBOXES: return T_INBOXES;
    case BK_STORE: return T_STORE;
    default: return 0;
    }
}

/* fsync every directory the run made (deepest first), then the backup's. */
static int run_sync_dirs(struct run *rn)
{
    int r;

    for (size_t i = rn->dirs.n; i-- > 0;) {
        int fd = openat(rn->tmpfd, rn->dirs.v[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return run_fail(rn, -errno, rn->dirs.v[i], "cannot open");
        r = ss_fsync_fd(fd);
        close(fd);
        if (r < 0)
            return run_fail(rn, r, rn->dirs.v[i], "cannot fsync");
    }
    if ((r = ss_fsync_fd(rn->tmpfd)) < 0)
        return run_fail(rn, r, rn->tmppath, "cannot fsync");
    return 0;
}

/* Hash results, then the MANIFEST, written and fsync'ed. */
static int run_manifest(struct run *rn, const char *tasks, int64_t created)
{
    struct sbuf b;
    char hex[65], when[40];
    int fd, r = 0;

    hasher_finish(&rn->h);
    hasher_sort(&rn->h);
    for (size_t i = 0; i < rn->h.n; i++) {
        struct bk_file *f = rn->h.v[i];
        if (f->err < 0) {
            rn->task = f->task;
            return run_fail(rn, f->err, f->path, "cannot read back");
        }
    }
    rn->task = "manifest";
    ss_fmt_time_iso(created, when, sizeof when);
    ss_sbuf_init(&b);
    if ((r = rec_begin(&b, "backup", 1)) == 0 && (r = rec_add(&b, "site", rn->o->site)) == 0 &&
        (r = rec_add(&b, "created", when)) == 0 && (r = rec_add(&b, "root", rn->o->root)) == 0)
        r = rec_add(&b, "tasks", tasks);
    for (size_t i = 0; i < rn->h.n && r == 0; i++) {
        struct bk_file *f = rn->h.v[i];
        ss_hex(f->sha, 32, hex);
        r = rec_addf(&b, "file", "%s %lld %o %s", hex, (long long)f->size, f->mode, f->path);
    }
    if (r == 0)
        r = rec_end(&b);
    if (r < 0) {
        ss_sbuf_free(&b);
        return run_fail(rn, r, BACKUP_MANIFEST, "cannot build");
    }
    fd = openat(rn->tmpfd, BACKUP_MANIFEST, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        r = -errno;
    if (r == 0)
        r = ss_write_all(fd, b.data, b.len);
    if (r == 0)
        r = ss_fsync_fd(fd);
    if (fd >= 0 && close(fd) < 0 && r == 0)
        r = -errno;
    ss_sbuf_free(&b);
    if (r < 0)
        return run_fail(rn, r, BACKUP_MANIFEST, "cannot write");
    return 0;
}

/* Stop or start one daemon through the caller. */
static int run_daemon(const struct backup_opts *o, int start, const char *name, char *err,
                      size_t errlen)
{
    char e[SS_ERR_MAX] = "";
    int (*fn)(void *, const char *, char *, size_t) = start ? o->daemon_start : o->daemon_stop;
    int r;

    if (fn == NULL) {
        ss_seterr(err, errlen, "cannot %s %s: this caller cannot stop or start daemons",
                  start ? "start" : "stop", name);
        return -ENOTSUP;
    }
    r = fn(o->arg, name, e, sizeof e);
    if (r < 0)
        ss_seterr(err, errlen, "cannot %s %s: %s", start ? "start" : "stop", name,
                  e[0] ? e : strerror(-r));
    return r < 0 ? r : 0;
}

/*
 * [Start]: the section as written, after a success or a failure alike, so
 * that the site ends as the control file wants either way; after a
 * failure also every daemon [Stop] stopped that [Start] does not name (a
 * failed backup must not leave fewer daemons running than before).  The
 * first error is returned (the others are logged); every start is tried.
 */
static int run_starts(const struct backup_opts *o, char stoppedv[][16], int nstopped, int failed,
                      char *err, size_t errlen)
{
    const struct bkctl *c = o->ctl;
    char started[BKCTL_MAX_CMDS][16];
    int nstarted = 0, first = 0;
    char e[SS_ERR_MAX];

    for (int i = 0; i < c->n; i++) {
        const struct bkctl_cmd *cmd = &c->cmd[i];
        if (cmd->op != BK_START)
            continue;
        for (int k = 0; k < cmd->ndaemons && k < 4; k++) {
            int r = run_daemon(o, 1, cmd->daemon_order[k], e, sizeof e);
            if (nstarted < BKCTL_MAX_CMDS)
                ss_strcpy(started[nstarted++], sizeof started[0], cmd->daemon_order[k]);
            if (r < 0) {
                log_error("backup: %s", e);
                if (first == 0) {
                    first = r;
                    ss_seterr(err, errlen, "%s", e);
                }
            }
        }
    }
    for (int i = 0; i < nstopped; i++) {
        int named = 0;
        for (int k = 0; k < nstarted; k++)
            named |= strcmp(started[k], stoppedv[i]) == 0;
        if (named)
            continue;
        if (!failed) {
            log_warn("backup: %s was stopped by the control file and is left stopped "
                     "([Start] does not name it)", stoppedv[i]);
            continue;
        }
        int r = run_daemon(o, 1, stoppedv[i], e, sizeof e);
        if (r < 0) {
            log_error("backup: %s", e);
            if (first == 0) {
                first = r;
                ss_seterr(err, errlen, "%s", e);
            }
        }
    }
    return first;
}

static int stamp_name(char *buf, size_t len, const char *site, int64_t ms, int n, int tmp)
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    char stamp[32], suffix[16] = "";

    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    if (n > 1)
        snprintf(suffix, sizeof suffix, "-%d", n);
    return tmp ? ss_fmt(buf, len, ".%s-%s%s.tmp", site, stamp, suffix)
               : ss_fmt(buf, len, "%s-%s%s", site, stamp, suffix);
}

int backup_run(const struct backup_opts *o, char *path, size_t pathlen, char *err, size_t errlen)
{
    char stoppedv[BKCTL_MAX_CMDS][16];
    int nstopped = 0, r = 0, failed = 0, destfd = -1, made_tmp = 0, seq = 1, done = 0;
    char tmpname[SS_NAME_MAX + 1] = "", final[SS_NAME_MAX + 1] = "", tasks[128] = "";
    char e[SS_ERR_MAX] = "";
    struct run rn;
    struct stat st;

    if (path && pathlen)
        path[0] = '\0';
    if (err && errlen)
        err[0] = '\0';
    if (o == NULL || o->ctl == NULL || o->root == NULL || o->site == NULL ||
        !ss_site_code_ok(o->site) || o->ctl->destination[0] != '/') {
        ss_seterr(err, errlen, "backup: bad arguments (site, root, or a destination that is "
                               "not absolute)");
        return -EINVAL;
    }
    const struct bkctl *c = o->ctl;
    memset(&rn, 0, sizeof rn);
    rn.o = o;
    rn.rootfd = rn.tmpfd = -1;
    rn.err = e;
    rn.errlen = sizeof e;
    int64_t t0 = ss_mono_ms(), created = 0;

    /* The new backup's temporary directory. */
    rn.task = "destination";
    if ((r = ss_mkdir_p(c->destination, 0750)) < 0) {
        run_fail(&rn, r, c->destination, "cannot make");
        goto fail;
    }
    destfd = open(c->destination, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (destfd < 0 || fstat(destfd, &st) < 0) {
        run_fail(&rn, r = -errno, c->destination, "cannot open");
        goto fail;
    }
    rn.destdev = st.st_dev;
    rn.destino = st.st_ino;
    if ((rn.rootfd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rn.task = "root";
        run_fail(&rn, r = -errno, o->root, "cannot open the site root");
        goto fail;
    }
    /* [Stop], in the order written: only once the destination and the
     * root are known to be usable, so that a destination that cannot be
     * made stops nothing. */
    for (int i = 0; i < c->n && r == 0; i++) {
        const struct bkctl_cmd *cmd = &c->cmd[i];
        if (cmd->op != BK_STOP)
            continue;
        for (int k = 0; k < cmd->ndaemons && k < 4 && r == 0; k++) {
            if (stopped(o->stop)) {
                r = -EINTR;
                ss_seterr(e, sizeof e, "stop: interrupted (the daemon is stopping)");
                break;
            }
            r = run_daemon(o, 0, cmd->daemon_order[k], e, sizeof e);
            /* A failed stop may have stopped it anyway: [Start] it too. */
            if (nstopped < BKCTL_MAX_CMDS)
                ss_strcpy(stoppedv[nstopped++], sizeof stoppedv[0], cmd->daemon_order[k]);
        }
    }
    if (r < 0)
        goto fail;

    created = ss_now_ms();
    for (; seq <= BK_NAME_TRIES; seq++) {
        if ((r = stamp_name(final, sizeof final, o->site, created, seq, 0)) < 0 ||
            (r = stamp_name(tmpname, sizeof tmpname, o->site, created, seq, 1)) < 0)
            break;
        if (fstatat(destfd, final, &st, AT_SYMLINK_NOFOLLOW) == 0)
            continue;
        if (mkdirat(destfd, tmpname, 0750) == 0) {
            made_tmp = 1;
            break;
        }
        if (errno != EEXIST) {
            r = -errno;
            break;
        }
    }
    if (!made_tmp) {
        run_fail(&rn, r < 0 ? r : -EEXIST, tmpname, "cannot make the backup directory");
        r = r < 0 ? r : -EEXIST;
        goto fail;
    }
    if ((r = ss_path(rn.tmppath, sizeof rn.tmppath, "%s/%s", c->destination, tmpname)) < 0 ||
        (rn.tmpfd = openat(destfd, tmpname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        run_fail(&rn, r = r < 0 ? r : -errno, tmpname, "cannot open");
        goto fail;
    }
    hasher_start(&rn.h, rn.tmpfd, 1, o->stop);
    log_info("backup of site %s (%s) into %s started", o->site, o->root, rn.tmppath);

    /* The store's lock, shared, across the tasks when the store is among
     * them: distmgr's collection of unused objects (which takes it
     * exclusive) cannot remove an object the database copy names before
     * the store task links it. */
    int store_lockfd = -1;
    char storedir[SS_PATH_MAX];
    for (int i = 0; i < c->n; i++)
        if (c->cmd[i].op == BK_STORE && ss_path(storedir, sizeof storedir, "%s/store", o->root) == 0 &&
            access(storedir, F_OK) == 0) {
            int lr = store_lock_stop(storedir, 0, o->stop);
            if (lr >= 0)
                store_lockfd = lr;
            else if (lr == -EINTR)
                r = run_fail(&rn, -EINTR, NULL, NULL);
            else
                log_warn("backup: cannot take the store's lock (%s): objects collected "
                         "meanwhile may be missing from the backup", strerror(-lr));
            break;
        }
    /* [Tasks], in the order written; each task once. */
    for (int i = 0; i < c->n && r == 0; i++) {
        int t = op_task(c->cmd[i].op);
        if (t == 0 || (done & t))
            continue;
        done |= t;
        if (tasks[0])
            ss_strcpy(tasks + strlen(tasks), sizeof tasks - strlen(tasks), " ");
        ss_strcpy(tasks + strlen(tasks), sizeof tasks - strlen(tasks), task_name(t));
        r = run_task(&rn, t);
    }
    store_unlock(store_lockfd);
    if (r == 0 && stopped(o->stop)) {
        rn.task = "backup";
        r = run_fail(&rn, -EINTR, NULL, NULL);
    }
    if (r == 0)
        r = run_manifest(&rn, tasks, created);
    if (r == 0) {
        rn.task = "sync";
        r = run_sync_dirs(&rn);
    }
    if (r == 0 && stopped(o->stop)) {
        rn.task = "backup";
        r = run_fail(&rn, -EINTR, NULL, NULL);
    }
    /* Into place, never replacing: a name taken meanwhile draws the next. */
    while (r == 0) {
        r = ss_rename_noreplace(destfd, tmpname, destfd, final);
        if (r != -EEXIST || ++seq > BK_NAME_TRIES)
            break;
        if ((r = stamp_name(final, sizeof final, o->site, created, seq, 0)) < 0)
            break;
    }
    if (r < 0) {
        if (e[0] == '\0') {
            rn.task = "rename";
            run_fail(&rn, r, final, "cannot rename the backup to");
        }
        goto fail;
    }
    made_tmp = 0;
    if ((r = ss_fsync_fd(destfd)) < 0)
        log_warn("backup: cannot fsync %s after the rename: %s", c->destination, strerror(-r));
    if (path)
        ss_path(path, pathlen, "%s/%s", c->destination, final);
    log_info("backup of site %s into %s/%s complete: %zu files (%lld linked, %lld copied, "
             "%lld gone before they could be linked) in %lld ms",
             o->site, c->destination, final, rn.h.n, rn.linked, rn.copied, rn.skipped,
             (long long)(ss_mono_ms() - t0));
    r = 0;
    goto starts;

fail:
    failed = 1;
    rn.h.abort = 1;
    hasher_free(&rn.h);
    if (made_tmp && destfd >= 0) {
        /* tmpname is a name inside the destination: nothing else can go. */
        int rr = ss_rm_rf_at(destfd, tmpname);
        if (rr < 0)
            log_warn("backup: cannot remove %s/%s: %s", c->destination, tmpname, strerror(-rr));
    }
    log_error("backup of site %s failed: %s", o->site, e[0] ? e : strerror(-r));
    ss_seterr(err, errlen, "%s", e[0] ? e : strerror(-r));

starts:
    {
        char se[SS_ERR_MAX] = "";
        /* Stopping: the daemons [Stop] stopped are left to the next start
         * of sitebkup (which the caller told), not started against the
         * administrator's stop of the site. */
        int sr = stopped(o->stop) ? 0 : run_starts(o, stoppedv, nstopped, failed, se, sizeof se);
        if (sr < 0 && r == 0) {
            /* The backup is complete and stays (path says where); the run
             * still failed, since a daemon is not running. */
            r = sr;
            ss_seterr(err, errlen, "backup %s complete, but %s", final, se);
        }
    }
    hasher_free(&rn.h);
    sv_free(&rn.dirs);
    if (rn.tmpfd >= 0)
        close(rn.tmpfd);
    if (rn.rootfd >= 0)
        close(rn.rootfd);
    if (destfd >= 0)
        close(destfd);
    return r;
}

/* ---- backup_list, backup_prune ---------------------------------------------- */

static int cmp_info(const void *a, const void *b)
{
    const struct backup_info *x = a, *y = b;

    if (x->time_ms != y->time_ms)
        return x->time_ms < y->time_ms ? -1 : 1;
    return strcmp(x->name, y->name);
}

int backup_list(const char *destination, struct backup_info **v, size_t *n)
{
    struct backup_info *out = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    struct stat st;
    DIR *d;
    int fd, r = 0;

    *v = NULL;
    *n = 0;
    if (destination == NULL || *destination == '\0')
        return -EINVAL;
    if ((fd = open(destination, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    if ((d = fdopendir(fd)) == NULL) {
        r = -errno;
        close(fd);
        return r;
    }
    while ((de = readdir(d)) != NULL) {
        char site[SS_SITE_LEN + 1];
        int64_t ms;
        int tmp;

        if (!parse_name(de->d_name, site, &ms, &tmp))
            continue;
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            continue;
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct backup_info *nv = realloc(out, ncap * sizeof *nv);
            if (nv == NULL) {
                r = -ENOMEM;
                break;
            }
            out = nv;
            cap = ncap;
        }
        struct backup_info *b = &out[cnt];
        memset(b, 0, sizeof *b);
        if (ss_path(b->path, sizeof b->path, "%s/%s", destination, de->d_name) < 0)
            continue;
        ss_strcpy(b->name, sizeof b->name, de->d_name);
        ss_strcpy(b->site, sizeof b->site, site);
        b->time_ms = ms;
        b->status = tmp ? BACKUP_INCOMPLETE : BACKUP_DAMAGED;
        if (!tmp) {
            int bfd = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
            struct bk_manifest m;
            if (bfd >= 0 && manifest_load(bfd, &m, NULL, 0) == 0) {
                b->status = BACKUP_COMPLETE;
                b->time_ms = m.time_ms;
                b->files = (long long)m.n;
                b->bytes = m.bytes;
                manifest_free(&m);
            }
            if (bfd >= 0)
                close(bfd);
        }
        cnt++;
    }
    closedir(d);
    if (r < 0) {
        free(out);
        return r;
    }
    if (cnt > 1)
        qsort(out, cnt, sizeof *out, cmp_info);
    *v = out;
    *n = cnt;
    return 0;
}

int backup_prune(const char *destination, const char *site, int keep)
{
    return backup_prune_except(destination, site, keep, NULL);
}

int backup_prune_except(const char *destination, const char *site, int keep, const char *keep_path)
{
    struct backup_info *v = NULL;
    size_t n = 0, complete = 0;
    int64_t now = ss_now_ms();
    int fd, r, removed = 0;

    if (keep < 1 || site == NULL || !ss_site_code_ok(site))
        return -EINVAL;
    if ((r = backup_list(destination, &v, &n)) < 0)
        return r;
    if ((fd = open(destination, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = -errno;
        free(v);
        return r;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].site, site) == 0 && v[i].status == BACKUP_COMPLETE)
            complete++;
    /* Oldest first: the first (complete - keep) complete ones go. */
    for (size_t i = 0; i < n; i++) {
        struct backup_info *b = &v[i];
        struct stat st;
        int go = 0;

        if (strcmp(b->site, site) != 0)
            continue;
        /* The one just made stays, whatever the clock said of it. */
        if (keep_path && strcmp(b->path, keep_path) == 0)
            continue;
        if (b->status == BACKUP_COMPLETE && complete > (size_t)keep) {
            go = 1;
            complete--;
        } else if (b->status == BACKUP_INCOMPLETE && b->name[0] == '.' &&
                   now - b->time_ms > BK_TMP_STALE_MS &&
                   fstatat(fd, b->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                   now - (int64_t)st.st_mtime * 1000 > BK_TMP_STALE_MS) {
            go = 1;         /* a run that died long ago, not one at work */
        }
        if (!go)
            continue;
        /* A name inside the destination: nothing else can go. */
        if ((r = ss_rm_rf_at(fd, b->name)) < 0) {
            log_warn("backup: cannot remove %s: %s", b->path, strerror(-r));
            continue;
        }
        log_info("backup: removed %s backup %s", backup_status_name(b->status), b->path);
        removed++;
    }
    if (removed > 0 && (r = ss_fsync_fd(fd)) < 0)
        log_warn("backup: cannot fsync %s: %s", destination, strerror(-r));
    close(fd);
    free(v);
    return removed;
}

/* ---- backup_verify ------------------------------------------------------------ */

static int verify_file(void *arg, const char *rel)
{
    struct strvec *s = arg;

    if (strcmp(rel, BACKUP_MANIFEST) == 0)
        return 0;
    return sv_add(s, rel);
}

static int verify_other(void *arg, const char *rel)
{
    /* Noted as a file: it is not in the manifest, so it is reported. */
    return sv_add(arg, rel);
}

/* Check the backup in bfd against m: the files on disk are exactly the
 * manifest's, each with its size and SHA-256.  The first fault in path
 * order is reported. */
static int verify_at(int bfd, const struct bk_manifest *m, char *err, size_t errlen)
{
    struct strvec disk = { 0 };
    struct walker w = { .basefd = bfd, .skip_dots = 0, .file = verify_file,
                        .other = verify_other, .arg = &disk };
    struct hasher h;
    size_t i = 0, k = 0;
    int r;

    if ((r = walk(&w, ".")) < 0) {
        ss_seterr(err, errlen, "cannot list the backup: %s", strerror(-r));
        sv_free(&disk);
        return r;
    }
    if (disk.n > 1)
        qsort(disk.v, disk.n, sizeof *disk.v, cmp_str);
    while (i < m->n || k < disk.n) {
        int c = i >= m->n ? 1 : k >= disk.n ? -1 : strcmp(m->files[i].path, disk.v[k]);
        if (c < 0) {
            ss_seterr(err, errlen, "file %s is missing", m->files[i].path);
            sv_free(&disk);
            return -EBADMSG;
        }
        if (c > 0) {
            ss_seterr(err, errlen, "file %s is not in the manifest", disk.v[k]);
            sv_free(&disk);
            return -EBADMSG;
        }
        i++;
        k++;
    }
    sv_free(&disk);

    hasher_start(&h, bfd, 0, NULL);
    for (i = 0; i < m->n && r == 0; i++) {
        struct bk_file *f;
        r = hasher_add(&h, m->files[i].path, "verify", 0, &f);
        if (r == 0) {
            f->want_size = m->files[i].size;
            memcpy(f->want_sha, m->files[i].sha, 32);
        }
    }
    hasher_finish(&h);
    hasher_sort(&h);
    for (i = 0; i < h.n && r == 0; i++) {
        struct bk_file *f = h.v[i];
        if (f->err == -EINVAL) {
            ss_seterr(err, errlen, "file %s is not a regular file", f->path);
            r = -EBADMSG;
        } else if (f->err < 0) {
            ss_seterr(err, errlen, "cannot read file %s: %s", f->path, strerror(-f->err));
            r = f->err == -ENOENT ? -EBADMSG : f->err;
        } else if (f->size != f->want_size) {
            ss_seterr(err, errlen, "file %s has %lld bytes, the manifest says %lld", f->path,
                      (long long)f->size, (long long)f->want_size);
            r = -EBADMSG;
        } else if (memcmp(f->sha, f->want_sha, 32) != 0) {
            ss_seterr(err, errlen, "file %s differs from the manifest (SHA-256)", f->path);
            r = -EBADMSG;
        }
    }
    if (r == -ENOMEM)
        ss_seterr(err, errlen, "out of memory");
    hasher_free(&h);
    return r;
}

int backup_verify(const char *path, char *err, size_t errlen)
{
    struct bk_manifest m;
    char e[SS_ERR_MAX] = "";
    int fd, r;

    if (path == NULL || *path == '\0')
        return -EINVAL;
    if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = -errno;
        ss_seterr(err, errlen, "%s: %s", path, strerror(-r));
        return r;
    }
    r = manifest_load(fd, &m, e, sizeof e);
    if (r == -ENOENT)
        r = -EBADMSG;       /* no manifest: an incomplete backup */
    if (r == 0) {
        r = verify_at(fd, &m, e, sizeof e);
        manifest_free(&m);
    }
    close(fd);
    if (r < 0)
        ss_seterr(err, errlen, "backup %s: %s", path, e);
    return r;
}

/* ---- backup_restore --------------------------------------------------------- */

/* Remove what a failed restore wrote: the root when it made it, else the
 * entries of the root (which was empty when the restore began). */
static void restore_undo(const char *root, int rootfd, int made_root)
{
    struct dirent *de;
    DIR *d;
    int fd;

    if (made_root) {
        (void)ss_rm_rf(root);
        return;
    }
    if ((fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return;
    }
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            (void)ss_rm_rf_at(rootfd, de->d_name);
    closedir(d);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
int backup_restore(const char *path, const char *root, char *err, size_t errlen)
{
    static const char *const extra[] = { "keys", "db", "store", "logs", "run", "backup" };
    struct bk_manifest m;
    struct strvec dirs = { 0 };
    char e[SS_ERR_MAX] = "", last[SS_PATH_MAX] = "", dir[SS_PATH_MAX];
    int bfd = -1, rootfd = -1, made_root = 0, r;
    struct stat st;

    if (path == NULL || root == NULL || *path == '\0' || *root == '\0') {
        ss_seterr(err, errlen, "restore: no backup or no root");
        return -EINVAL;
    }
    /* Verified first: nothing is written for a damaged backup. */
    if ((r = backup_verify(path, e, sizeof e)) < 0) {
        ss_seterr(err, errlen, "restore refused: %s", e);
        return r;
    }
    if ((bfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (r = manifest_load(bfd, &m, e, sizeof e)) < 0) {
        r = bfd < 0 ? -errno : r;
        ss_seterr(err, errlen, "restore: backup %s: %s", path, e[0] ? e : strerror(-r));
        if (bfd >= 0)
            close(bfd);
        return r;
    }

    if (stat(root, &st) < 0) {
        if (errno != ENOENT) {
            r = -errno;
            ss_seterr(err, errlen, "restore: root %s: %s", root, strerror(-r));
            goto out;
        }
        if ((r = ss_mkdir_p(root, 0755)) < 0) {
            ss_seterr(err, errlen, "restore: cannot make root %s: %s", root, strerror(-r));
            goto out;
        }
        made_root = 1;
    } else if (!S_ISDIR(st.st_mode)) {
        r = -ENOTDIR;
        ss_seterr(err, errlen, "restore: root %s is not a directory", root);
        goto out;
    }
    if ((rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = -errno;
        ss_seterr(err, errlen, "restore: cannot open root %s: %s", root, strerror(-r));
        goto out;
    }
    if (!made_root) {
        int fd = dup(rootfd);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;
        int any = 0;
        if (d == NULL) {
            r = -errno;
            if (fd >= 0)
                close(fd);
            ss_seterr(err, errlen, "restore: cannot list root %s: %s", root, strerror(-r));
            goto out;
        }
        while (!any && (de = readdir(d)) != NULL)
            any = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
        closedir(d);
        if (any) {
            r = -ENOTEMPTY;
            ss_seterr(err, errlen, "restore: root %s exists and is not empty", root);
            rootfd = (close(rootfd), -1);
            goto out;
        }
    }

    /* Copies, never links: the restored site must not share an inode with
     * the backup (a daemon writing to one would change the other).  Each
     * file is hashed again as it is copied, so what lands in the site is
     * what the manifest says even if the backup changed since the check. */
    for (size_t i = 0; i < m.n; i++) {
        const struct mf_line *l = &m.files[i];
        SHA256_CTX c;
        unsigned char sha[32];
        int64_t got = 0;

        dir_of(l->path, dir, sizeof dir);
        if ((r = mkdirs_at(rootfd, dir, &dirs, last, sizeof last)) < 0) {
            ss_seterr(err, errlen, "restore: cannot make directory %s/%s: %s", root, dir,
                      strerror(-r));
            goto undo;
        }
        SHA256_Init(&c);
        /* Permission bits only: a backup cannot make a setuid file. */
        r = copy_file(bfd, l->path, rootfd, l->path, 0, (l->mode & 0777) ? (l->mode & 0777) : 0600,
                      0, &c, &got);
        if (r < 0) {
            ss_seterr(err, errlen, "restore: cannot copy %s: %s", l->path, strerror(-r));
            goto undo;
        }
        SHA256_Final(sha, &c);
        if (got != l->size || memcmp(sha, l->sha, 32) != 0) {
            r = -EBADMSG;
            ss_seterr(err, errlen, "restore: file %s of the backup changed during the restore",
                      l->path);
            goto undo;
        }
    }
    /* The rest of a site tree: every inbox with .tmp/work/corrupt, and the
     * directories `sitectl init` makes. */
    if ((r = inbox_create_tree(root)) < 0) {
        ss_seterr(err, errlen, "restore: cannot make the inboxes under %s: %s", root,
                  strerror(-r));
        goto undo;
    }
    for (size_t i = 0; i < SS_ARRAY_LEN(extra); i++) {
        if (mkdirat(rootfd, extra[i], dir_mode(extra[i])) == 0) {
            if ((r = sv_add(&dirs, extra[i])) < 0)
                goto undo;
        } else if (errno != EEXIST) {
            r = -errno;
            ss_seterr(err, errlen, "restore: cannot make %s/%s: %s", root, extra[i],
                      strerror(-r));
            goto undo;
        }
    }

    /* Durable: one syncfs of the new site's file system, or (where that
     * cannot be trusted) every file; then every directory. */
    r = ss_syncfs(rootfd);
    for (size_t i = 0; r == -ENOSYS && i < m.n; i++) {
        int fd = openat(rootfd, m.files[i].path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        int fr = fd < 0 ? -errno : ss_fsync_fd(fd);
        if (fd >= 0)
            close(fd);
        if (fr < 0) {
            r = fr;
            break;
        }
        if (i + 1 == m.n)
            r = 0;
    }
    if (r == -ENOSYS)
        r = 0;      /* no files at all */
    if (r < 0) {
        ss_seterr(err, errlen, "restore: cannot sync %s: %s", root, strerror(-r));
        goto undo;
    }
    for (size_t i = dirs.n; i-- > 0;) {
        int fd = openat(rootfd, dirs.v[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = fd < 0 ? -errno : ss_fsync_fd(fd);
        if (fd >= 0)
            close(fd);
        if (r < 0) {
            ss_seterr(err, errlen, "restore: cannot fsync %s/%s: %s", root, dirs.v[i],
                      strerror(-r));
            goto undo;
        }
    }
    if ((r = ss_fsync_fd(rootfd)) < 0) {
        ss_seterr(err, errlen, "restore: cannot fsync %s: %s", root, strerror(-r));
        goto undo;
    }
    if (made_root) {
        char parent[SS_PATH_MAX];
        dir_of(root, parent, sizeof parent);
        (void)ss_fsync_dir(parent[0] ? parent : (root[0] == '/' ? "/" : "."));
    }
    log_info("restored backup %s (site %s, %zu files) into %s", path, m.site, m.n, root);
    r = 0;
    goto out;

undo:
    restore_undo(root, rootfd, made_root);
out:
    sv_free(&dirs);
    manifest_free(&m);
    if (rootfd >= 0)
        close(rootfd);
    close(bfd);
    return r;
}
#pragma GCC diagnostic pop
