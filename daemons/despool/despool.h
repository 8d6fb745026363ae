/*
 * despool.h - what the parts of the Despooler share.
 *
 *   despool.c   the loop side: the receive inbox, the timer that looks
 *               again at instructions waiting for their package file, the
 *               worker pool, the database connections of its threads
 *   install.c   one instruction, on a worker thread: verify, unpack into
 *               the store, record in the site database, hand to distmgr
 *               (ds_process); one status bundle from a child site: verify,
 *               hand to statmgr (ds_bundle); linked into
 *               tests/unit/test_despool too
 */
#ifndef SITESRV_DESPOOL_H
#define SITESRV_DESPOOL_H

#include <pthread.h>
#include <sqlite3.h>

#include "inbox.h"
#include "manifest.h"
#include "pkgfile.h"

/*
 * Group commit: the workers that reach the commit of an install at the
 * same time commit together.  The first one (the leader) takes every
 * install queued, and for all of them: puts their small objects into
 * small.db in one transaction, syncs the store once if any of them has
 * loose objects, records every version in one site database transaction,
 * drops the requests for distmgr with one sync and says the 8300s with
 * one sync; the others wait for it and then finish their own files.
 * Every guarantee of one install holds for each: nothing is said or
 * handed on before what it relies on is durable.
 */
struct ds_gitem;
struct ds_group {
    pthread_mutex_t      mu;
    pthread_cond_t       cv;
    struct ds_gitem     *queue;    /* waiting for a leader, in arrival order */
    int                  busy;     /* a leader is committing */
    struct store_writer *sw;       /* small.db, used by the leader only */
    size_t               groups, items;   /* committed so far (for the log) */
};
int  ds_group_init(struct ds_group *g);
void ds_group_close(struct ds_group *g);

/* What ds_process needs of the daemon. */
struct ds_env {
    const char *root;              /* the site root */
    const char *store;             /* <root>/store */
    const char *site;              /* this site's code (the pkgreq writer prefix) */
    const volatile int *stop;      /* non-zero: give the instruction back */
    struct ds_group *group;        /* NULL: each install commits alone */
};

/* Packages whose small files total at most this are unpacked into memory
 * and their small objects stored by the group's leader. */
#define DS_DEFER_MAX (4 << 20)

enum ds_outcome {
    DS_INSTALLED,   /* installed; both files removed; 8300 */
    DS_DUPLICATE,   /* not newer than the version held; both files removed; 8302 */
    DS_REJECTED,    /* both files quarantined; 8301 */
    DS_WAITING,     /* its package file is not there: instruction returned */
    DS_RETURNED,    /* the daemon stops, or a failure that may pass (the
                     * database, the disk): instruction returned */
    DS_FORWARDED,   /* a status bundle verified and handed to statmgr */
};

struct ds_result {
    enum ds_outcome outcome;
    int           parsed;          /* in holds the verified instruction */
    struct instr  in;
    long long     held;            /* DS_DUPLICATE: the version this site has */
    int           err;             /* -errno of the failure, for DS_RETURNED */
    char          why[SS_ERR_MAX + 128];   /* DS_REJECTED, DS_RETURNED: a sentence */
};

/*
 * Process the instruction name (X.ins), which the caller claimed into
 * ib's work/: its package file is X.pck in the inbox itself.  On return
 * the instruction is finished (done, or quarantined with its package
 * file) or given back to the inbox, as res->outcome says; never left in
 * work/.  Emits 8300, 8301 and 8302 and logs; 8303 is the caller's (once
 * per instruction, which only the loop can tell).
 */
void ds_process(const struct ds_env *env, sqlite3 *db, struct inbox *ib, const char *name,
                struct ds_result *res);

/*
 * Process the status bundle name (X.sts, a file of its own: no package
 * file), which the caller claimed into ib's work/: read it (at most
 * STATREP_MAX_SIZE), verify it (statrep_parse: checksum, kind, fields,
 * the signature with the key the site table records for the site it
 * names), hand its bytes unchanged to statmgr (statmgr.box/sites, created
 * if an older site root lacks it) and remove it: DS_FORWARDED.  A bad
 * bundle is quarantined with 8301 (DS_REJECTED); a failure that may pass
 * (the database, the disk) or a stop gives it back (DS_RETURNED).
 * res->in.site is the site it names once that is known.
 */
void ds_bundle(const struct ds_env *env, sqlite3 *db, struct inbox *ib, const char *name,
               struct ds_result *res);

/* A candidate of a scan of receive/: taken by priority (enum send_prio,
 * high first), then age (modification time), then name. */
struct ds_cand {
    char    name[SS_NAME_MAX + 1];
    int     prio;
    int64_t mtime_ns;
};
int ds_cand_cmp(const void *a, const void *b);

/*
 * The priority of instruction name in directory dirfd, for the order
 * only: the "priority=" line of its first 4 KiB (before the manifest),
 * not verified (the signature is checked when it is processed).  A file
 * that cannot be read, or lacks the line or has another value:
 * PRIO_MEDIUM.  Opens with O_NOFOLLOW|O_NONBLOCK: never blocks.
 */
int ds_peek_priority(int dirfd, const char *name);

/* Is package file pck (X.pck) of inbox ib an orphan: X.ins in neither
 * the inbox nor work/, and pck last modified age_s or more before now_s
 * (seconds since the epoch)?  1 or 0 (0 too when it cannot be told). */
int ds_pck_orphan(struct inbox *ib, const char *pck, int64_t now_s, int64_t age_s);

/* Does name end in suffix?  1 or 0. */
int ds_has_suffix(const char *name, const char *suffix);

/* "X.ins" -> "X.pck" into buf.  0, or -EINVAL for a name not ending in .ins. */
int ds_pck_name(const char *ins, char *buf, size_t len);

#endif
