/*
 * statmgr.h - what the Status Manager's parts share: the loop side
 * (statmgr.c: watches, timers, start and stop), the ingestion pass
 * (ingest.c: runs on a worker thread and owns the database connection;
 * it also records the status bundles of child sites) and the replication
 * run (replicate.c: status bundles for the parent site, on the same one
 * worker thread, so the two never use the connection at once).
 *
 * Ownership: the loop thread writes `in` before it submits a pass and
 * reads `out` in the pass's done callback; the pass reads `in` and writes
 * `out` only while it runs.  The pool's queue lock orders the two, so no
 * field is ever touched by both at once.  `stopping` is the one field
 * both read while a pass runs, hence atomic.
 */
#ifndef SITESRV_STATMGR_H
#define SITESRV_STATMGR_H

#include <stdatomic.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "daemon.h"
#include "fsutil.h"
#include "inbox.h"
#include "statmsg.h"
#include "uniqname.h"
#include "util.h"

/* Where a message came from; the order is the scan order of a pass. */
enum src { SRC_STATMSGS, SRC_CAP, SRC_FUTUREQ, SRC_COUNT };

/* Threads that remove the files of a recorded pass (ss_unlink_many):
 * measured on ext4 with -o discard, 8 remove about three times as many
 * files per second as one, and more do not help. */
#define UNLINK_THREADS 8

/* Status bundles of child sites recorded in one pass at most. */
#define SITES_PER_PASS 16
/* Status bundles built in one replication run at most: a long backlog
 * goes in runs, so that ingestion passes get the worker in between. */
#define REP_BUNDLES_PER_RUN 20
/* At most one replication run per this many ms (coalesced). */
#define REP_MIN_INTERVAL_MS 1000
/* The cursor's row in the counter table: the last statmsg seq looked at. */
#define REP_CURSOR "statrep.seq"

/* Inputs of a pass, set by the loop thread at submit time. */
struct pass_in {
    size_t  batch;              /* files read per inbox in one pass */
    int64_t skew_ms;            /* statmgr.future_skew */
    int     read_futureq;       /* a held message may be due, or a rescan */
    int     fail_streak;        /* passes refused by the database in a row */
    char    site[SS_SITE_LEN + 1];
};

/* What a pass did, read by the loop thread when it is done. */
struct pass_out {
    size_t  inserted, dup, bad, held, released;
    size_t  bundles;            /* status bundles of child sites recorded */
    size_t  from_sites;         /* messages of those recorded (in inserted too) */
    size_t  skipped;            /* bad messages inside good bundles */
    int     more;               /* work is waiting: pass again at once */
    int     failed;             /* the database refused: back off */
    int     interrupted;        /* stopped half-way by a stop */
    int     futureq_read;       /* future_* below are a fresh count */
    size_t  future_held;        /* messages in futureq after the pass */
    int64_t future_due_ms;      /* the earliest is due then (INT64_MAX: none) */
};

/* Inputs of a replication run, set by the loop thread at submit time. */
struct rep_in {
    char    site[SS_SITE_LEN + 1];
    char    parent[SS_SITE_LEN + 1];  /* "" none */
    char    components[256];          /* statmgr.replicate */
};

/* What a replication run did. */
struct rep_out {
    size_t  bundles, messages;
    int     more;               /* stopped at REP_BUNDLES_PER_RUN: run again */
    int     failed;             /* try again later */
    int     no_parent;          /* site.parent set, but no parent row yet */
};

/* Files recorded by a pass, removed after its commit (see ingest.c). */
struct donebuf {
    char                 (*names)[UNIQ_NAME_MAX];  /* valid names only: they fit */
    struct ss_unlink_item *items;                 /* sorted by name when handed on */
    size_t                 n;
};

struct statmgr {
    struct daemon       *d;
    sqlite3             *db;            /* the pass's */
    sqlite3_stmt        *ins;
    struct inbox         ib[SRC_COUNT];
    struct inbox_entry  *ents;          /* a page of a scan: batch entries */
    struct statmsg       msg;           /* the pass's parse buffer */
    struct sbuf          istr, attrs;   /* the pass's JSON buffers */
    struct inbox         sites;         /* statmgr.box/sites: child sites' bundles */
    sqlite3_stmt        *route;         /* upsert of a route learnt from a bundle */

    /* Replication, on the worker thread (replicate.c). */
    char                 root[SS_PATH_MAX];
    struct inbox         outgoing;      /* statmgr.box/outgoing (writer) */
    struct inbox         sched;         /* schedule.box (writer) */
    EVP_PKEY            *key;           /* keys/site.key, loaded at the first run */
    struct rep_in        rin;
    struct rep_out       rout;
    struct pool_job      rjob;

    /* Removal crew: the files of one pass go while the next one runs. */
    struct donebuf       dbuf[2];
    int                  cur;           /* the half the running pass fills */
    struct ss_unlink_crew crew;         /* removing dbuf[!cur] when crew_running */
    int                  crew_running;

    struct pass_in       in;
    struct pass_out      out;
    atomic_int           stopping;

    /* Loop thread only. */
    struct pool         *pool;
    struct pool_job      job;
    struct daemon_watch *watch[3];
    uv_timer_t           due_timer;     /* the earliest held message is due */
    uv_timer_t           rescan_timer;  /* look into futureq now and then */
    uv_timer_t           backoff_timer; /* retry after a database error */
    uv_timer_t           rep_timer;     /* the next replication run */
    int                  rep_busy, rep_again, rep_noted;
    int64_t              rep_last;      /* monotonic ms of the last run's start */
    uint64_t             replicated, bundles_sent;
    int                  job_busy, job_again, futureq_wanted;
    int                  fail_streak;
    int64_t              backoff_until; /* monotonic ms */
    size_t               future_held;
    uint64_t             ingested, duplicates, quarantined;
};

/* ingest.c */
int  ingest_open(struct statmgr *s, const char *root, char *err, size_t errlen);
void ingest_pass(struct pool_job *j);          /* the pool job's work() */
void ingest_crew_join(struct statmgr *s);      /* no pass may be running */
void ingest_close(struct statmgr *s);

/* replicate.c */
/* Open statmgr.box/outgoing and schedule.box (creating outgoing/ and
 * sites/ where an older site root lacks them) and remove the bundles of
 * outgoing/ that no job names (a kill between the bundle and its job). */
int  rep_open(struct statmgr *s, const char *root, char *err, size_t errlen);
void rep_run(struct pool_job *j);              /* the replication job's work() */
void rep_close(struct statmgr *s);

#endif
