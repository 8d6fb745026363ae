/*
 * bkctl.h - the backup control file (SPEC 6; docs/formats.md, "Backup
 * control file").
 *
 * An INI-like file run top to bottom:
 *
 *   ; comment (also #), blank lines ignored
 *   [Tokens]
 *   NAME = value          NAME [A-Z][A-Z0-9_]{0,31}; value may use %NAME% of a
 *                         token set above, or a built-in: %SITE% (site code),
 *                         %ROOT% (site root), %DESTINATION% (backup.destination)
 *   [Stop]
 *   stop DAEMON...        distmgr sender despool statmgr (never sitebkup)
 *   [Tasks]
 *   destination PATH      where this run's backups go (default %DESTINATION%):
 *                         absolute, non-empty, and inside backup.destination
 *   database              db/site.db through the online backup API, checked
 *                         with PRAGMA quick_check on the copy
 *   config                site.conf
 *   keys                  keys/ (the site's key pair and recorded keys)
 *   inboxes               every inbox's files, as of one moment (hard links)
 *   store                 store/: small.db by the backup API, objects linked
 *   [Start]
 *   start DAEMON...       waits for each to be ready (never a sleep)
 *
 * Sections appear at most once each, in this order (any may be missing).
 * Each task, and destination, appears at most once; destination comes
 * before the tasks.  A file without a task is refused.
 * Parsing is strict: an unknown section or command, a bad argument, a
 * token used but not set, a repeated token: the whole file is refused
 * before anything runs, with "line N: ..." in err.  %% is a literal %.
 *
 * struct bkctl is large (BKCTL_MAX_CMDS paths, about 1 MiB): allocate it.
 */
#ifndef SITESRV_BKCTL_H
#define SITESRV_BKCTL_H

#include "common.h"

#define BKCTL_MAX_SIZE  (256 * 1024)
#define BKCTL_MAX_CMDS  256
#define BKCTL_LINE_MAX  4096        /* bytes of a line, without its end */
#define BKCTL_MAX_TOKENS 256        /* tokens set in [Tokens] */
#define BKCTL_TOKEN_NAME_MAX 32     /* characters of a token name */

enum bkctl_op {
    BK_STOP,            /* daemons[] */
    BK_DESTINATION,     /* path */
    BK_DATABASE,
    BK_CONFIG,
    BK_KEYS,
    BK_INBOXES,
    BK_STORE,
    BK_START,           /* daemons[] */
};

/* Daemons a control file may stop and start, as a bit mask. */
enum {
    BK_D_DISTMGR = 1 << 0, BK_D_SENDER = 1 << 1, BK_D_DESPOOL = 1 << 2, BK_D_STATMGR = 1 << 3,
};

struct bkctl_cmd {
    enum bkctl_op op;
    int       line;                 /* in the file, for messages */
    unsigned  daemons;              /* BK_STOP, BK_START: BK_D_* in the order given */
    char      daemon_order[4][16];  /* the names in the order written */
    int       ndaemons;
    char      path[SS_PATH_MAX];    /* BK_DESTINATION, tokens expanded */
};

struct bkctl {
    struct bkctl_cmd cmd[BKCTL_MAX_CMDS];
    int       n;
    char      destination[SS_PATH_MAX];  /* the effective one (checked) */
};

/* What the parser knows of the site: the built-in tokens and the limit of
 * destinations (backup.destination, absolute). */
struct bkctl_env {
    const char *site;
    const char *root;
    const char *destination;
};

/*
 * Parse buf[0..len) (not modified).  0, or -EBADMSG with err "line N:
 * ..." (or -EFBIG/-ENOMEM; c->n is 0 then).  On success c->destination is
 * the directory this run writes its backup into: the `destination` command's, else
 * env->destination; it is absolute, without "." or ".." components, and
 * equal to or below env->destination (a destination outside it is
 * refused, naming its line).
 */
int bkctl_parse(const char *buf, size_t len, const struct bkctl_env *env, struct bkctl *c,
                char *err, size_t errlen);

/* The default control file (no [Stop]): what sitebkup runs when
 * sitebkup.box/sitebkup.ctl does not exist. */
extern const char bkctl_default[];

#endif
