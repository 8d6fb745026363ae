/*
 * distmgr.h - what the parts of the Distribution Manager share.
 *
 *   distmgr.c   the loop side: the request inbox, the retry timer, and the
 *               scheduling of tasks onto the worker pool
 *   tasks.c     the tasks, on worker threads: a package's version and
 *               child-site jobs (exclusive per package), one DP's install
 *               or removal, the scan that finds work, and the collection
 *               of store objects no version uses
 *
 * Per package, either one exclusive task runs, or any number of DP tasks
 * (one per DP): a new version never prunes content that a DP install of
 * the same package is copying.
 */
#ifndef SITESRV_DISTMGR_H
#define SITESRV_DISTMGR_H

#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>

#include "daemon.h"
#include "inbox.h"
#include "retry.h"
#include "sitedb.h"
#include "util.h"

struct distmgr;

/* One unit of work the loop wants done for a package (or, for the scan,
 * for the whole site). */
enum task_kind { T_PKG, T_DP, T_SCAN, T_GC };

/* A (package, DP) or package pair the scan found wanting work. */
struct want {
    char pkg[16];
    char dp[33];               /* "" for the package task */
};

/* Whether a T_PKG walks the source for a new version: an administrator's
 * update always does; a scan's finding (a package without a version, a
 * source walk due for a retry) only if that still holds when the task
 * runs, so that a scan racing with an update does not walk twice. */
enum { VERSION_NO = 0, VERSION_IF_DUE = 1, VERSION_ASKED = 2 };

struct task {
    struct pool_job job;
    struct distmgr *dm;
    enum task_kind  kind;
    char            pkg[16];
    char            dp[33];
    int             new_version;   /* T_PKG: VERSION_* below */
    /* Results, read on the loop thread in done(). */
    int             rc;
    struct want    *wants;         /* T_PKG, T_SCAN: work found */
    size_t          nwants;
    int             gone;          /* T_PKG: the package no longer exists */
    int             deleting;      /* T_DP: it removed (or tried to) a deleted package */
    int             outcome;       /* T_DP: 1 installed, 2 failed; T_PKG: 1 new version */
    int64_t         next_retry;    /* earliest retry due after the task, INT64_MAX none */
};

/* The loop thread's view of one package. */
struct dpname {
    char name[33];
    struct dpname *next;
};
struct reqname {
    char name[UNIQ_NAME_MAX];
    struct reqname *next;
};
struct pkg {
    char            id[16];
    int             excl;          /* a T_PKG is submitted */
    int             ndp;           /* T_DP submitted */
    int             want_pkg;      /* a T_PKG is wanted */
    int             want_version;  /*   ...that makes a new version (VERSION_*) */
    struct dpname  *dp_want;       /* DPs wanting a T_DP */
    struct dpname  *dp_busy;       /* DPs with a T_DP submitted */
    struct reqname *reqs;          /* update requests waiting for a T_PKG */
    struct reqname *reqs_running;  /* those the running T_PKG will answer */
    int64_t         not_before;    /* monotonic ms: no T_PKG before (after a failure) */
    struct pkg     *next;
};

struct distmgr {
    struct daemon  *d;
    char            root[SS_PATH_MAX];
    char            store[SS_PATH_MAX];
    char            site[SS_SITE_LEN + 1];
    struct retry_policy policy;
    atomic_int      stopping;

    struct sitedb_pool dbs;        /* connections for worker threads */

    /* Loop thread only. */
    struct inbox    reqbox;        /* distmgr.box, as its reader */
    struct inbox    schedbox;      /* schedule.box, as a writer */
    int             outfd;         /* distmgr.box/outgoing: jobs staged */
    struct pool    *pool;
    struct daemon_watch *watch;
    uv_timer_t      retry_timer;
    struct pkg     *pkgs;
    int             scan_busy, scan_again;
    int             gc_busy, gc_again;
    uint64_t        versions, installs, failures, quarantined;
};

/* tasks.c */
void task_work(struct pool_job *j);
/* Jobs staged in distmgr.box/outgoing by a run that was killed: move
 * the recorded ones into schedule.box, remove the others.  At start. */
int      dm_recover_jobs(struct distmgr *dm);
/* Earliest next attempt among distmgr's retry scopes on db; INT64_MAX if none. */
int64_t  dm_next_retry(sqlite3 *db);

#endif
