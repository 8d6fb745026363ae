/*
 * inbox.c - inbox hand-off between writers and the one reader (SPEC 2, 4.2).
 *
 * SYNOPSIS
 *   inbox_defs[] inbox_accepts inbox_create_tree     the declared inboxes
 *   inbox_open inbox_open_path inbox_close
 *   inbox_drop inbox_drop_many inbox_commit_tmp      writer side
 *   inbox_scan inbox_claim inbox_done inbox_return   reader side
 *   inbox_cursor_open inbox_cursor_next inbox_cursor_close   scan in pages
 *   inbox_quarantine inbox_recover inbox_backlog
 *
 * DESCRIPTION
 *   The table inboxes/inboxes.def is the one list of inboxes; inbox_defs[]
 *   is generated from it, so no other file names an inbox path.
 *
 *   A writer builds a file in <inbox>/.tmp/ under a unique name (O_EXCL),
 *   writes it whole, fsyncs it, checks close(), and moves it into the
 *   inbox with a rename that cannot replace; then it fsyncs the inbox
 *   directory.  A reader therefore only ever sees complete files, and a
 *   name collision can never overwrite one: on EEXIST a new name is drawn.
 *   inbox_drop_many() syncs the directory once for a whole batch.
 *
 *   The reader lists the inbox without a stat per entry, claims a file by
 *   renaming it into work/ (the rename decides who owns it), and removes
 *   or returns it when done.  Names the library would never write are
 *   reported as odd; the caller quarantines them into corrupt/ together
 *   with a .reason file.  Nothing is ever deleted by the quarantine, and
 *   start-up recovery returns work/ to the inbox and removes only .tmp/
 *   files old enough that no live writer can own them.
 *
 * DIAGNOSTICS
 *   inbox_quarantine logs a warning and emits status message
 *   SM_CORRUPT_FILE; inbox_recover logs what it returned and removed;
 *   inbox_drop logs a refused suffix; a failed directory sync after a
 *   hand-over is logged as a warning and not returned (inbox.h says why).
 *   Names and reasons are escaped with sslog_escape() in the .reason file
 *   and the status message.  Functions return 0 or a negative
 *   errno: -EPERM for a suffix the inbox does not accept, -ENOENT from
 *   inbox_claim when another reader took the file, -EBADF for a reader
 *   call on an inbox opened as writer, -ENAMETOOLONG for a path that
 *   does not fit, or the system call's error.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "inbox.h"
#include "log.h"
#include "statmsg.h"
#include "uniqname.h"
#include "util.h"

const struct inbox_def inbox_defs[IB_COUNT] = {
#define INBOX(sym, path, reader, writers, suffixes) \
    [sym] = { sym, path, reader, writers, suffixes },
#include "inboxes.def"
#undef INBOX
};

#define DIR_MODE 0750
#define QUARANTINE_PREFIX "corrupt"
#define QUARANTINE_SUFFIX ".bad"
#define REASON_EXT ".reason"

/* The i-th suffix of a space separated list into buf; 0 when there is
 * none (or it does not fit, which the table never does). */
static int nth_suffix(const char *list, size_t i, char *buf, size_t len)
{
    const char *p = list;

    for (;;) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return 0;
        size_t n = strcspn(p, " ");
        if (i-- == 0) {
            if (n >= len)
                return 0;
            memcpy(buf, p, n);
            buf[n] = '\0';
            return 1;
        }
        p += n;
    }
}

/* A directory outside the table (IB_COUNT) accepts any well-formed
 * suffix; uniq_name() will refuse a malformed one. */
int inbox_accepts(enum inbox_id id, const char *suffix)
{
    char s[UNIQ_SUFFIX_MAX + 1];

    if (suffix == NULL)
        return 0;
    if ((unsigned)id >= IB_COUNT)
        return suffix[0] == '.';
    for (size_t i = 0; nth_suffix(inbox_defs[id].suffixes, i, s, sizeof s); i++)
        if (strcmp(s, suffix) == 0)
            return 1;
    return 0;
}

/* Is name one we would write into inbox id?  The matched suffix is
 * copied to sfx (may be NULL). */
static int name_ok_for(enum inbox_id id, const char *name, char *sfx, size_t sfxlen)
{
    char s[UNIQ_SUFFIX_MAX + 1];

    if ((unsigned)id >= IB_COUNT) {
        if (!uniq_name_ok(name, NULL))
            return 0;
        if (sfx)
            ss_strcpy(sfx, sfxlen, strrchr(name, '.'));
        return 1;
    }
    for (size_t i = 0; nth_suffix(inbox_defs[id].suffixes, i, s, sizeof s); i++)
        if (uniq_name_ok(name, s)) {
            if (sfx)
                ss_strcpy(sfx, sfxlen, s);
            return 1;
        }
    return 0;
}

/* Names that may be used with *at() in one directory. */
static int plain_name(const char *name)
{
    return name != NULL && name[0] != '\0' && strchr(name, '/') == NULL &&
           strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

int inbox_create_tree(const char *root)
{
    static const char *const sub[] = { ".tmp", "work", "corrupt" };
    char path[SS_PATH_MAX];
    int r;

    for (size_t i = 0; i < IB_COUNT; i++) {
        for (size_t j = 0; j <= SS_ARRAY_LEN(sub); j++) {
            if (j == 0)
                r = ss_path(path, sizeof path, "%s/inboxes/%s", root, inbox_defs[i].path);
            else
                r = ss_path(path, sizeof path, "%s/inboxes/%s/%s", root,
                            inbox_defs[i].path, sub[j - 1]);
            if (r < 0)
                return r;
            r = ss_mkdir_p(path, DIR_MODE);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* Open (creating if missing) a subdirectory of the inbox. */
static int open_sub(int dirfd, const char *name, int *fd)
{
    if (mkdirat(dirfd, name, DIR_MODE) < 0 && errno != EEXIST)
        return -errno;
    *fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return *fd < 0 ? -errno : 0;
}

int inbox_open_path(struct inbox *ib, const char *path, enum inbox_id id,
                    const char *prefix, int reader)
{
    int r;

    memset(ib, 0, sizeof *ib);
    ib->id = id;
    ib->dirfd = ib->tmpfd = ib->workfd = ib->corruptfd = -1;
    if ((unsigned)id > IB_COUNT)
        return -EINVAL;
    r = ss_strcpy(ib->path, sizeof ib->path, path);
    if (r < 0)
        return -ENAMETOOLONG;
    uniq_prefix_sanitize(prefix, ib->prefix, sizeof ib->prefix);
    /* The inbox itself is never created here: a missing one means the
     * site (or the share) is not there, which the caller must hear. */
    ib->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ib->dirfd < 0)
        return -errno;
    r = open_sub(ib->dirfd, ".tmp", &ib->tmpfd);
    if (r == 0 && reader)
        r = open_sub(ib->dirfd, "work", &ib->workfd);
    if (r == 0 && reader)
        r = open_sub(ib->dirfd, "corrupt", &ib->corruptfd);
    if (r < 0)
        inbox_close(ib);
    return r;
}

int inbox_open(struct inbox *ib, const char *root, enum inbox_id id,
               const char *prefix, int reader)
{
    char path[SS_PATH_MAX];
    int r;

    if ((unsigned)id >= IB_COUNT) {
        memset(ib, 0, sizeof *ib);
        ib->dirfd = ib->tmpfd = ib->workfd = ib->corruptfd = -1;
        return -EINVAL;
    }
    r = ss_path(path, sizeof path, "%s/inboxes/%s", root, inbox_defs[id].path);
    if (r < 0) {
        memset(ib, 0, sizeof *ib);
        ib->dirfd = ib->tmpfd = ib->workfd = ib->corruptfd = -1;
        return r;
    }
    return inbox_open_path(ib, path, id, prefix, reader);
}

void inbox_close(struct inbox *ib)
{
    int *fds[] = { &ib->dirfd, &ib->tmpfd, &ib->workfd, &ib->corruptfd };

    for (size_t i = 0; i < SS_ARRAY_LEN(fds); i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}

static int check_suffix(struct inbox *ib, const char *suffix)
{
    if (inbox_accepts(ib->id, suffix))
        return 0;
    log_warn("inbox %s: refusing a file of kind \"%s\", which it does not accept",
             ib->path, suffix ? suffix : "(null)");
    return -EPERM;
}

/* Will the caller's name buffer hold the name we hand over?  Checked
 * before the move: a file handed over with an error returned would be
 * sent twice by a caller that retries (see sync_handed_over). */
static int name_room(struct inbox *ib, const char *tmpname, const char *suffix,
                     char *name, size_t namelen)
{
    size_t need = strlen(ib->prefix) + 1 + 2 * UNIQ_RAND_BYTES + strlen(suffix) + 1;

    if (tmpname != NULL && uniq_name_ok(tmpname, suffix) && strlen(tmpname) + 1 > need)
        need = strlen(tmpname) + 1;
    return name == NULL || namelen >= need ? 0 : -ENOSPC;
}

/*
 * The directory fsync after files were moved in.  They are handed over
 * already: the reader may have taken them, and an error returned now
 * would make a caller that retries send them twice.  So a failure is a
 * warning (the moves may not survive a crash of the machine), never the
 * caller's error: the rule of inbox.h for every hand-over.
 */
static void sync_handed_over(struct inbox *ib, size_t files)
{
    int s = ss_fsync_fd(ib->dirfd);

    if (s < 0)
        log_warn("inbox %s: %zu file(s) handed over, but the directory sync "
                 "failed (%s): the move may not survive a crash", ib->path,
                 files, strerror(-s));
}

int inbox_commit_tmp(struct inbox *ib, const char *tmpname, const char *suffix,
                     int nosync, char *name, size_t namelen)
{
    char newname[UNIQ_NAME_MAX];
    int r;

    if (!plain_name(tmpname))
        return -EINVAL;
    if ((r = check_suffix(ib, suffix)) < 0)
        return r;
    if ((r = name_room(ib, tmpname, suffix, name, namelen)) < 0)
        return r;
    if (ib->dirfd < 0 || ib->tmpfd < 0)
        return -EBADF;
    r = -EEXIST;
    /* A name uniq_create() drew is as unique in the inbox as in .tmp/;
     * keeping it lets an operator follow one file through both. */
    if (uniq_name_ok(tmpname, suffix) && ss_strcpy(newname, sizeof newname, tmpname) == 0)
        r = ss_rename_noreplace(ib->tmpfd, tmpname, ib->dirfd, newname);
    if (r == -EEXIST)
        r = uniq_move(ib->tmpfd, tmpname, ib->dirfd, ib->prefix, suffix,
                      newname, sizeof newname);
    if (r < 0)
        return r;
    if (name != NULL)
        ss_strcpy(name, namelen, newname);  /* fits: name_room() */
    if (!nosync)
        sync_handed_over(ib, 1);
    return 0;
}

/* Build one file in .tmp/ and move it in; on failure nothing is left in
 * .tmp/.  The directory fsync is the caller's when nosync. */
static int drop_one(struct inbox *ib, const char *suffix, const void *data,
                    size_t len, int nosync, char *name, size_t namelen)
{
    char tmpname[UNIQ_NAME_MAX];
    int fd, r;

    r = uniq_create(ib->tmpfd, ib->prefix, suffix, tmpname, sizeof tmpname, &fd);
    if (r < 0)
        return r;
    r = ss_write_all(fd, data, len);
    if (r == 0)
        r = ss_fsync_fd(fd);
    /* close() is where some network file systems report a failed write. */
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0)
        r = inbox_commit_tmp(ib, tmpname, suffix, nosync, name, namelen);
    if (r < 0)
        unlinkat(ib->tmpfd, tmpname, 0);    /* ENOENT if it was moved */
    return r;
}

int inbox_drop(struct inbox *ib, const char *suffix, const void *data,
               size_t len, char *name, size_t namelen)
{
    int r = check_suffix(ib, suffix);

    if (r < 0)
        return r;
    if ((r = name_room(ib, NULL, suffix, name, namelen)) < 0)
        return r;
    if (ib->dirfd < 0 || ib->tmpfd < 0)
        return -EBADF;
    return drop_one(ib, suffix, data, len, 0, name, namelen);
}

/* Files of a batch written before any is synced: bounded, so that a large
 * batch does not hold a descriptor per item. */
#define DROP_CHUNK 64

/*
 * One chunk of inbox_drop_many.  All files are written first, then made
 * durable together: syncfs() on the file system of .tmp/ costs about one
 * journal commit for the whole chunk, where an fsync per file costs one
 * commit each (measured: 1.3x to 3.7x the files per second).  syncfs also
 * writes whatever else is dirty on that file system, which is why it is
 * used only for batches (the trade-off is in inbox.h); a chunk of fewer
 * than SYNCFS_MIN files, a kernel whose syncfs does not report write-back
 * errors (before 5.8) or one without syncfs gets an fsync per file
 * (ss_syncfs says -ENOSYS).  Then the no-replace moves, whose directory
 * fsync the caller does once.  On an error at item k, items before k are
 * handed over and the rest of the chunk is removed from .tmp/.
 */
#define SYNCFS_MIN 4

static int drop_chunk(struct inbox *ib, const char *suffix,
                      const struct inbox_item *items, size_t n, size_t *moved)
{
    char tmp[DROP_CHUNK][UNIQ_NAME_MAX];
    int fd[DROP_CHUNK];
    size_t made = 0, ok;
    int r = 0;

    *moved = 0;
    for (; made < n; made++) {
        r = uniq_create(ib->tmpfd, ib->prefix, suffix, tmp[made], sizeof tmp[made], &fd[made]);
        if (r < 0)
            break;
        r = ss_write_all(fd[made], items[made].data, items[made].len);
        if (r < 0) {
            close(fd[made]);
            unlinkat(ib->tmpfd, tmp[made], 0);
            break;
        }
    }
    /* Sync and close every file made; the first failure ends what is
     * handed over.  A failed syncfs hands over nothing. */
    int whole = made >= SYNCFS_MIN && ss_fsync_enabled();
    ok = made;
    if (whole) {
        int e = ss_syncfs(ib->tmpfd);
        if (e == -ENOSYS) {
            whole = 0;
        } else if (e < 0) {
            ok = 0;
            if (r == 0)
                r = e;
        }
    }
    for (size_t i = 0; i < made; i++) {
        int e = whole ? 0 : ss_fsync_fd(fd[i]);
        if (close(fd[i]) < 0 && e == 0)
            e = -errno;
        if (e < 0 && i < ok) {
            ok = i;
            if (r == 0)
                r = e;
        }
    }
    for (size_t i = 0; i < ok; i++) {
        int e = inbox_commit_tmp(ib, tmp[i], suffix, 1, NULL, 0);
        if (e < 0) {
            if (r == 0)
                r = e;
            break;
        }
        (*moved)++;
    }
    for (size_t i = *moved; i < made; i++)
        unlinkat(ib->tmpfd, tmp[i], 0);
    return r;
}

int inbox_drop_many(struct inbox *ib, const char *suffix,
                    const struct inbox_item *items, size_t n, size_t *done)
{
    size_t i = 0;
    int r = check_suffix(ib, suffix);

    if (done)
        *done = 0;
    if (r < 0)
        return r;
    if (ib->dirfd < 0 || ib->tmpfd < 0)
        return -EBADF;
    while (i < n && r == 0) {
        size_t moved, k = n - i < DROP_CHUNK ? n - i : DROP_CHUNK;
        r = drop_chunk(ib, suffix, items + i, k, &moved);
        i += moved;
    }
    /* Even after a failure, what was moved must be made durable: the
     * caller is told those are handed over. */
    if (i > 0)
        sync_handed_over(ib, i);
    if (done)
        *done = i;
    return r;
}

/* Open a directory fd afresh for reading (its own offset). */
static DIR *open_list(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;

    if (fd < 0)
        return NULL;
    d = fdopendir(fd);
    if (d == NULL) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return d;
}

static int is_dir_at(int dirfd, const char *name)
{
    struct stat st;

    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

int inbox_cursor_open(struct inbox *ib, struct inbox_cursor *c)
{
    c->ib = ib;
    c->dir = NULL;
    if (ib->dirfd < 0)
        return -EBADF;
    c->dir = open_list(ib->dirfd);
    return c->dir == NULL ? -errno : 0;
}

void inbox_cursor_close(struct inbox_cursor *c)
{
    if (c->dir != NULL)
        closedir(c->dir);
    c->dir = NULL;
}

int inbox_cursor_next(struct inbox_cursor *c, struct inbox_entry *ents, size_t max, size_t *n)
{
    struct inbox *ib = c->ib;
    struct dirent *de;
    size_t k = 0;

    *n = 0;
    if (c->dir == NULL)
        return -EBADF;
    while (k < max) {
        errno = 0;
        de = readdir(c->dir);
        if (de == NULL) {
            *n = k;
            return errno != 0 ? -errno : 0;
        }
        /* Dot files are ours (.tmp) or someone's work in progress;
         * directories are work/, corrupt/ and nested inboxes. */
        if (de->d_name[0] == '.' || de->d_type == DT_DIR)
            continue;
        if (ss_strcpy(ents[k].name, sizeof ents[k].name, de->d_name) < 0)
            continue;       /* cannot happen: NAME_MAX is 255 */
        /* Without a stat, DT_UNKNOWN counts as a file; anything known to
         * be other than a regular file (symlink, FIFO...) is odd. */
        ents[k].odd = !((de->d_type == DT_REG || de->d_type == DT_UNKNOWN) &&
                        name_ok_for(ib->id, de->d_name, NULL, 0));
        /* On a file system without d_type, work/ or a nested inbox would
         * look like an odd file and be quarantined: one stat, for odd
         * names only, rules that out. */
        if (ents[k].odd && de->d_type == DT_UNKNOWN && is_dir_at(ib->dirfd, de->d_name))
            continue;
        k++;
    }
    *n = k;
    return 0;
}

int inbox_scan(struct inbox *ib, struct inbox_entry *ents, size_t max, size_t *n)
{
    struct inbox_cursor c;
    int r;

    *n = 0;
    r = inbox_cursor_open(ib, &c);
    if (r < 0)
        return r;
    r = inbox_cursor_next(&c, ents, max, n);
    inbox_cursor_close(&c);
    return r;
}

int inbox_claim(struct inbox *ib, const char *name)
{
    if (ib->workfd < 0)
        return -EBADF;
    if (!plain_name(name))
        return -EINVAL;
    /* The rename decides who owns the file: -ENOENT means another reader
     * took it first.  No-replace, so a leftover in work/ of the same name
     * is never overwritten (-EEXIST). */
    return ss_rename_noreplace(ib->dirfd, name, ib->workfd, name);
}

int inbox_done(struct inbox *ib, const char *name)
{
    if (ib->workfd < 0)
        return -EBADF;
    if (!plain_name(name))
        return -EINVAL;
    return unlinkat(ib->workfd, name, 0) < 0 ? -errno : 0;
}

/* The suffix a name of ours carries for this inbox, else the trailing
 * ".xxx" if well formed, else fallback. */
static void name_suffix(enum inbox_id id, const char *name, const char *fallback,
                        char *sfx, size_t len)
{
    const char *dot;

    if (name_ok_for(id, name, sfx, len))
        return;
    dot = strrchr(name, '.');
    if (dot != NULL && dot != name && inbox_accepts(id, dot) &&
        strlen(dot) <= UNIQ_SUFFIX_MAX && ss_strcpy(sfx, len, dot) == 0)
        return;
    ss_strcpy(sfx, len, fallback);
}

int inbox_return(struct inbox *ib, const char *name)
{
    char sfx[UNIQ_SUFFIX_MAX + 1], newname[UNIQ_NAME_MAX];
    int r;

    if (ib->workfd < 0)
        return -EBADF;
    if (!plain_name(name))
        return -EINVAL;
    r = ss_rename_noreplace(ib->workfd, name, ib->dirfd, name);
    if (r != -EEXIST)
        return r;
    /* Someone dropped a file of the same name meanwhile (only possible
     * for names we did not draw): a new name, never a replacement. */
    name_suffix(ib->id, name, QUARANTINE_SUFFIX, sfx, sizeof sfx);
    return uniq_move(ib->workfd, name, ib->dirfd, ib->prefix, sfx,
                     newname, sizeof newname);
}

/* Write corrupt/<qname>.reason; the move already happened, so a failure
 * here is reported but does not undo it. */
static int write_reason(struct inbox *ib, const char *qname, const char *ename,
                        const char *ereason)
{
    char rname[UNIQ_NAME_MAX + sizeof REASON_EXT], when[40];
    struct sbuf b;
    int fd, r;

    r = ss_path(rname, sizeof rname, "%s%s", qname, REASON_EXT);
    if (r < 0)
        return r;
    if (ss_fmt_time_iso(ss_now_ms(), when, sizeof when) < 0)
        when[0] = '\0';
    ss_sbuf_init(&b);
    r = ss_sbuf_addf(&b, "original: %s\ninbox: %s\nreason: %s\ntime: %s\n",
                     ename, ib->path, ereason, when);
    if (r < 0)
        goto out;
    fd = openat(ib->corruptfd, rname,
                O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    r = ss_write_all(fd, b.data, b.len);
    if (r == 0)
        r = ss_fsync_fd(fd);
    if (close(fd) < 0 && r == 0)
        r = -errno;
out:
    ss_sbuf_free(&b);
    return r;
}

int inbox_quarantine(struct inbox *ib, int in_work, const char *name,
                     const char *reason)
{
    char sfx[UNIQ_SUFFIX_MAX + 1], qname[UNIQ_NAME_MAX];
    char ename[4 * SS_NAME_MAX + 1], ereason[1024];
    int from = in_work ? ib->workfd : ib->dirfd;
    int r;

    if (from < 0 || ib->corruptfd < 0)
        return -EBADF;
    if (!plain_name(name))
        return -EINVAL;
    if (reason == NULL || *reason == '\0')
        reason = "unspecified";
    /* The escaped forms go where plain text is wanted (the .reason file,
     * the status message); the log escapes the raw ones itself. */
    sslog_escape(ename, sizeof ename, name, NULL);
    sslog_escape(ereason, sizeof ereason, reason, NULL);
    name_suffix(ib->id, name, QUARANTINE_SUFFIX, sfx, sizeof sfx);

    r = uniq_move(from, name, ib->corruptfd, QUARANTINE_PREFIX, sfx,
                  qname, sizeof qname);
    if (r < 0) {
        log_error("inbox %s: cannot quarantine %s%s (%s): %s", ib->path,
                  in_work ? "work/" : "", name, reason, strerror(-r));
        return r;
    }
    int w = write_reason(ib, qname, ename, ereason);
    if (w < 0)
        log_error("inbox %s: cannot write %s/corrupt/%s%s: %s", ib->path,
                  ib->path, qname, REASON_EXT, strerror(-w));
    w = ss_fsync_fd(ib->corruptfd);
    if (w < 0)
        log_error("inbox %s: cannot sync %s/corrupt: %s", ib->path, ib->path,
                  strerror(-w));
    log_warn("inbox %s: quarantined %s%s as %s/corrupt/%s: %s", ib->path,
             in_work ? "work/" : "", name, ib->path, qname, reason);

    const char *attrs[] = { "Inbox", ib->path, NULL };
    sm_emit(SM_CORRUPT_FILE, 0, attrs, ename, ib->path, qname, ereason, (const char *)NULL);
    return 0;
}

int inbox_sweep_tmp(struct inbox *ib, int64_t stale_s, size_t *removed, size_t *kept)
{
    size_t nrem = 0, nkept = 0;
    struct dirent *de;
    struct stat st;
    int r = 0;
    DIR *d;

    if (removed)
        *removed = 0;
    if (kept)
        *kept = 0;
    if (ib->tmpfd < 0)
        return -EBADF;
    /* A .tmp/ file of a writer that died is garbage, but one being
     * written right now is not: only old ones go. */
    time_t now = time(NULL);
    d = open_list(ib->tmpfd);
    if (d == NULL)
        return -errno;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            de->d_type == DT_DIR)
            continue;
        if (fstatat(ib->tmpfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT && r == 0)
                r = -errno;
            continue;       /* ENOENT: its writer moved it in */
        }
        if (S_ISDIR(st.st_mode))
            continue;
        if ((int64_t)now - (int64_t)st.st_mtime <= stale_s) {
            nkept++;
            continue;
        }
        if (unlinkat(ib->tmpfd, de->d_name, 0) == 0)
            nrem++;
        else if (errno != ENOENT && r == 0)
            r = -errno;
    }
    closedir(d);
    if (nrem > 0)
        ss_fsync_fd(ib->tmpfd);
    if (removed)
        *removed = nrem;
    if (kept)
        *kept = nkept;
    return r;
}

int inbox_recover_aged(struct inbox *ib, int64_t stale_s, size_t *returned, size_t *removed)
{
    size_t nret = 0, nrem = 0, nkept = 0;
    struct dirent *de;
    int r = 0, e;
    DIR *d;

    if (returned)
        *returned = 0;
    if (removed)
        *removed = 0;
    if (ib->dirfd < 0 || ib->tmpfd < 0)
        return -EBADF;

    /* Work a dead reader had claimed goes back to the inbox. */
    if (ib->workfd >= 0) {
        d = open_list(ib->workfd);
        if (d == NULL)
            return -errno;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                de->d_type == DT_DIR)
                continue;
            e = inbox_return(ib, de->d_name);
            if (e == 0) {
                nret++;
            } else if (e != -ENOENT) {
                log_error("inbox %s: cannot return work/%s: %s", ib->path,
                          de->d_name, strerror(-e));
                if (r == 0)
                    r = e;
            }
        }
        closedir(d);
    }

    e = inbox_sweep_tmp(ib, stale_s, &nrem, &nkept);
    if (e < 0 && r == 0)
        r = e;
    if (nret > 0 || nrem > 0 || nkept > 0)
        log_info("inbox %s: recovery returned %zu file(s) from work/, removed "
                 "%zu stale file(s) from .tmp/, left %zu recent one(s)",
                 ib->path, nret, nrem, nkept);
    if (returned)
        *returned = nret;
    if (removed)
        *removed = nrem;
    return r;
}

/* Is this entry a file for counting purposes?  DT_UNKNOWN costs a stat. */
static int entry_is_file(int dirfd, const struct dirent *de)
{
    struct stat st;

    if (de->d_type == DT_DIR)
        return 0;
    if (de->d_type != DT_UNKNOWN)
        return 1;
    if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    return !S_ISDIR(st.st_mode);
}

int inbox_backlog(const char *path, size_t *files, int64_t *oldest_s, size_t *corrupt)
{
    size_t nf = 0, nc = 0;
    int64_t oldest = INT64_MAX;
    struct dirent *de;
    struct stat st;
    int dfd, cfd;
    DIR *d;

    if (files)
        *files = 0;
    if (oldest_s)
        *oldest_s = 0;
    if (corrupt)
        *corrupt = 0;
    dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    d = open_list(dfd);
    if (d == NULL) {
        int e = -errno;
        close(dfd);
        return e;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || de->d_type == DT_DIR)
            continue;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;       /* claimed meanwhile */
        if (S_ISDIR(st.st_mode))
            continue;
        nf++;
        if ((int64_t)st.st_mtime < oldest)
            oldest = (int64_t)st.st_mtime;
    }
    closedir(d);

    cfd = openat(dfd, "corrupt", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cfd >= 0) {
        d = fdopendir(cfd);
        if (d == NULL) {
            close(cfd);
        } else {
            size_t rl = strlen(REASON_EXT);
            while ((de = readdir(d)) != NULL) {
                size_t l = strlen(de->d_name);
                if (de->d_name[0] == '.' || !entry_is_file(cfd, de))
                    continue;
                if (l >= rl && strcmp(de->d_name + l - rl, REASON_EXT) == 0)
                    continue;
                nc++;
            }
            closedir(d);
        }
    }
    close(dfd);

    if (files)
        *files = nf;
    if (oldest_s && nf > 0) {
        int64_t age = (int64_t)time(NULL) - oldest;
        *oldest_s = age > 0 ? age : 0;
    }
    if (corrupt)
        *corrupt = nc;
    return 0;
}

int inbox_recover(struct inbox *ib, size_t *returned, size_t *removed)
{
    return inbox_recover_aged(ib, INBOX_TMP_STALE_S, returned, removed);
}
