/*
 * backup.h - site backups: running a control file's tasks, the manifest,
 * listing, verifying, pruning and restoring (SPEC 6, 4.3; docs/formats.md,
 * "Backups").
 *
 * A backup is a directory <destination>/<SITE>-<YYYYMMDDTHHMMSSZ>/ built
 * as <destination>/.<SITE>-<stamp>.tmp/ and renamed when complete, holding
 * what the tasks copied, under the same relative paths as in the site root
 * (db/site.db, site.conf, keys/..., inboxes/..., store/...), and last a
 * MANIFEST: a record (record.h) of kind "backup" version 1:
 *
 *   site=<code>  created=<ISO UTC>  root=<the site root backed up>
 *   tasks=<the tasks run, space separated>
 *   file=<sha256 hex> <size> <mode octal> <relative path>   (one per file)
 *   end <sha256>
 *
 * The daemons keep running unless the control file stops them: the
 * database is copied with the online backup API (a snapshot), inbox files
 * are hard-linked as of one listing (files in an inbox are never changed
 * in place, only renamed in and out), store objects likewise.
 */
#ifndef SITESRV_BACKUP_H
#define SITESRV_BACKUP_H

#include "bkctl.h"
#include "common.h"

#define BACKUP_MANIFEST "MANIFEST"

struct backup_opts {
    const char *root;                 /* the site root */
    const char *site;                 /* its code */
    const struct bkctl *ctl;          /* parsed control file */
    const volatile int *stop;         /* polled: -EINTR, the tmp directory removed */
    /* Stop / start a daemon by name, waiting for it (stopped, or ready);
     * 0 or -errno with err.  NULL: [Stop]/[Start] commands fail. */
    int (*daemon_stop)(void *arg, const char *name, char *err, size_t errlen);
    int (*daemon_start)(void *arg, const char *name, char *err, size_t errlen);
    void *arg;
};

/*
 * Run the control file: [Stop], [Tasks] into a new backup under
 * ctl->destination (created if missing), MANIFEST, fsync, rename into
 * place, [Start] (also after a failure, for the daemons [Stop] stopped).
 * 0 with path (the backup's directory), or -errno with err; on failure
 * nothing is left of the new backup.  Nothing outside ctl->destination is
 * ever removed.
 *
 * [Start] runs as written after a success and after a failure alike;
 * after a failure, a daemon [Stop] stopped that [Start] does not name is
 * started too.  One case returns an error with path set (path[0] != 0):
 * the backup is complete and kept, but a [Start] failed.  path is ""
 * in every other failure.  Each task runs once (a repeated one is
 * skipped); -EINTR when *stop was seen; -ENOTSUP for [Stop]/[Start]
 * without the callbacks; -EINVAL for a relative destination.
 */
int backup_run(const struct backup_opts *o, char *path, size_t pathlen, char *err,
               size_t errlen);

enum backup_status { BACKUP_COMPLETE, BACKUP_INCOMPLETE, BACKUP_DAMAGED };

struct backup_info {
    char    path[SS_PATH_MAX];
    char    name[SS_NAME_MAX + 1];
    char    site[SS_SITE_LEN + 1];
    int64_t time_ms;                  /* from the manifest (else the name) */
    enum backup_status status;        /* complete: a manifest that parses */
    long long files;
    long long bytes;
};
const char *backup_status_name(enum backup_status s);

/* The backups in destination (and the .tmp ones, as incomplete), oldest
 * first.  *v malloc'ed.  -ENOENT when destination does not exist.  A
 * final name whose manifest is missing or does not parse is damaged;
 * other entries of destination are not listed. */
int backup_list(const char *destination, struct backup_info **v, size_t *n);

/* Check every file of the backup against its manifest (size, SHA-256),
 * and that no file is missing.  0, or -EBADMSG with err naming the file
 * that differs (or the manifest's fault). */
int backup_verify(const char *path, char *err, size_t errlen);

/* Remove the oldest complete backups of site in destination beyond keep
 * (keep >= 1), and .tmp ones older than a day.  Returns how many went. */
int backup_prune(const char *destination, const char *site, int keep);
/* The same, never removing keep_path (the backup just made: a clock set
 * back would make it look the oldest). */
int backup_prune_except(const char *destination, const char *site, int keep,
                        const char *keep_path);

/*
 * Restore backup path into root: verified first (backup_verify: a damaged
 * backup is refused before anything is written); root must not exist or
 * be an empty directory; the files are copied, the site tree completed
 * (every inbox of inboxes.def with .tmp/work/corrupt, logs/, run/), and
 * site.conf's backup.destination left as it was.  0 or -errno with err
 * (-EBADMSG damaged, -ENOTEMPTY, -ENOTDIR); on a failure after writing
 * began, what was written is removed (root too when this call made it).
 */
int backup_restore(const char *path, const char *root, char *err, size_t errlen);

#endif
