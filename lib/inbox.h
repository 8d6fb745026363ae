/*
 * inbox.h - inbox hand-off between writers and the one reader (SPEC 2, 4.2).
 *
 * Writer: inbox_drop() builds the file in <inbox>/.tmp/ under a unique
 * name (O_EXCL), writes, fsyncs, moves it into the inbox with a
 * no-replace rename, and fsyncs the inbox directory.  A reader therefore
 * only ever sees complete files.  inbox_drop_many() does the same for a
 * batch with one directory fsync, which is how a writer beats one fsync
 * per hand-off.
 *
 * The hand-over rule, for inbox_drop, inbox_drop_many and
 * inbox_commit_tmp alike: an error means the file was NOT handed over
 * (nothing of it is in the inbox, and the caller may retry); 0 means it
 * was.  A failure after the move into the inbox (the directory fsync)
 * cannot be an error, since the reader may already have the file and a
 * retrying caller would send it twice: it is logged as a warning (the
 * move may not survive a crash of the machine) and 0 is returned.
 *
 * Reader: inbox_scan() lists up to N entries without a stat per entry,
 * skipping dot files and flagging names the library would never write
 * ("odd" names: quarantine them).  inbox_claim() renames an entry into
 * work/; inbox_done() removes it; inbox_return() puts it back;
 * inbox_quarantine() moves it to corrupt/ with a .reason file, a log line
 * and a status message.  inbox_recover() runs at start-up: work/ goes back
 * to the inbox and stale .tmp/ files are removed.
 */
#ifndef SITESRV_INBOX_H
#define SITESRV_INBOX_H

#include "common.h"
#include "uniqname.h"

enum inbox_id {
#define INBOX(sym, path, reader, writers, suffixes) sym,
#include "inboxes.def"
#undef INBOX
    IB_COUNT
};

struct inbox_def {
    enum inbox_id id;
    const char   *path;       /* relative to <root>/inboxes/ */
    const char   *reader;
    const char   *writers;
    const char   *suffixes;   /* space separated, e.g. ".ins .pck" */
};

extern const struct inbox_def inbox_defs[IB_COUNT];

/* Does the declaration of inbox id accept files ending in suffix? 1/0. */
int inbox_accepts(enum inbox_id id, const char *suffix);

/* Create every inbox of the table (and .tmp, work, corrupt in each) under
 * <root>/inboxes. */
int inbox_create_tree(const char *root);

/* .tmp/ files older than this are stale (a writer that died); newer ones
 * may belong to a writer at work right now, so they are left alone. */
#define INBOX_TMP_STALE_S 3600

struct inbox {
    enum inbox_id id;         /* IB_COUNT for a directory outside the table */
    char path[SS_PATH_MAX];   /* absolute or root-relative path of the inbox */
    char prefix[UNIQ_PREFIX_MAX + 1];  /* writer prefix for names we create */
    int  dirfd;               /* the inbox itself */
    int  tmpfd;               /* .tmp/ */
    int  workfd;              /* work/ (reader only, else -1) */
    int  corruptfd;           /* corrupt/ (reader only, else -1) */
};

/* Open a declared inbox of a site, as writer (dir + .tmp) or reader (also
 * work/ and corrupt/, created if missing).  prefix names this writer. */
int inbox_open(struct inbox *ib, const char *root, enum inbox_id id,
               const char *prefix, int reader);
/* Open an inbox by directory path (a client access point on a share, a
 * remote site's receive directory).  id gives the accepted kinds. */
int inbox_open_path(struct inbox *ib, const char *path, enum inbox_id id,
                    const char *prefix, int reader);
void inbox_close(struct inbox *ib);

/* Durable hand-off of one file; the new name is returned in name[] (may be
 * NULL).  -EPERM if the inbox does not accept this suffix, -ENOSPC (before
 * anything is written) if name[] cannot hold the name.  Errors follow the
 * hand-over rule above. */
int inbox_drop(struct inbox *ib, const char *suffix, const void *data,
               size_t len, char *name, size_t namelen);

struct inbox_item {
    const void *data;
    size_t      len;
};
/*
 * Durable hand-off of n files with one directory fsync at the end.  On
 * failure, the files already moved stay (they are complete and handed
 * over); *done says how many, in the order of items[], and the rest were
 * not handed over.  A failed directory fsync at the end is a warning, not
 * an error (the hand-over rule above).
 *
 * Trade-off: a chunk of 4 to 64 files is made durable with one syncfs(2)
 * of the inbox's file system instead of an fsync per file; it measured
 * 1.3x to 3.7x the files per second.  But syncfs writes everything dirty
 * on that file system, not just our files: a batch can wait for
 * gigabytes another process is writing to the same disk (a package
 * store, say).  Keep inboxes on a file system of their own where that
 * matters, or drop one file at a time.  On kernels before 5.8 syncfs
 * returned 0 even after a failed write-back, so there (and where syncfs
 * is missing) each file is fsync'ed instead; see ss_syncfs().
 */
int inbox_drop_many(struct inbox *ib, const char *suffix,
                    const struct inbox_item *items, size_t n, size_t *done);

/* Hand over a file that the caller built itself in ib->tmpfd (already
 * fsync'ed and closed): no-replace move into the inbox (new name on
 * EEXIST), then the directory fsync unless nosync.  On an error the file
 * is still in .tmp/ under tmpname (the caller removes it); a failed
 * directory fsync is a warning, not an error (the hand-over rule above). */
int inbox_commit_tmp(struct inbox *ib, const char *tmpname, const char *suffix,
                     int nosync, char *name, size_t namelen);

struct inbox_entry {
    char name[SS_NAME_MAX + 1];
    int  odd;                 /* not a name we write: quarantine it */
};
/* List up to max entries of the inbox (regular files; directories and dot
 * files skipped).  Names are checked with uniq_name_ok() against the
 * inbox's declared suffixes; the rest are returned with odd=1.  *n is the
 * count filled. */
int inbox_scan(struct inbox *ib, struct inbox_entry *ents, size_t max, size_t *n);

/* The same listing in pages, for a reader that leaves most entries where
 * they are (statmgr's futureq): each inbox_cursor_next() returns the next
 * up to max entries, and *n == 0 at the end of the directory. */
struct inbox_cursor {
    struct inbox *ib;
    void         *dir;        /* DIR * */
};
int  inbox_cursor_open(struct inbox *ib, struct inbox_cursor *c);
int  inbox_cursor_next(struct inbox_cursor *c, struct inbox_entry *ents, size_t max, size_t *n);
void inbox_cursor_close(struct inbox_cursor *c);

/* Count files waiting (not dot files, not directories), the age in seconds
 * of the oldest (by mtime), and files in corrupt/ (without .reason files). */
int inbox_backlog(const char *path, size_t *files, int64_t *oldest_s, size_t *corrupt);

int inbox_claim(struct inbox *ib, const char *name);   /* inbox -> work/; -ENOENT: taken */
int inbox_done(struct inbox *ib, const char *name);    /* unlink work/name */
int inbox_return(struct inbox *ib, const char *name);  /* work/ -> inbox */

/* Move an entry (from work/ if in_work, else from the inbox) into corrupt/
 * under a safe unique name, write <that name>.reason with the original
 * name (escaped) and the reason, log a warning, and emit status message
 * SM_CORRUPT_FILE.  Never deletes. */
int inbox_quarantine(struct inbox *ib, int in_work, const char *name,
                     const char *reason);

/* Start-up recovery.  *returned and *removed may be NULL. */
int inbox_recover(struct inbox *ib, size_t *returned, size_t *removed);
/* The same with .tmp/ files kept until stale_s old: a reader whose
 * writers resume a file there later (a sender's package file over a long
 * outage) keeps them longer than INBOX_TMP_STALE_S. */
int inbox_recover_aged(struct inbox *ib, int64_t stale_s, size_t *returned, size_t *removed);
/* Remove .tmp/ files older than stale_s (no log line).  *removed and
 * *kept (may be NULL) count them. */
int inbox_sweep_tmp(struct inbox *ib, int64_t stale_s, size_t *removed, size_t *kept);

#endif
