/*
 * sender.h - what the parts of the sender daemon share: the scheduler
 * (sched.c, jobs into send requests), the transfer (xfer.c, one request
 * to one address, on a worker) and the loop (sender.c).
 */
#ifndef SITESRV_SENDER_H
#define SITESRV_SENDER_H

#include <sqlite3.h>
#include <uv.h>

#include "daemon.h"
#include "inbox.h"
#include "log.h"
#include "sendreq.h"

/* One send request the loop knows (requests/<name>.srq). */
struct req {
    char    name[UNIQ_NAME_MAX];     /* R: the base name, without .srq */
    struct sendreq q;
    int     running;
    int64_t hold_ms;                 /* its own delay after a local error (UTC ms) */
    struct req *next;
};

/* A job given back to schedule.box (no route, a failure that may pass):
 * not looked at again before not_before, so that its return (an inotify
 * event) does not make a busy loop. */
struct deferred {
    char    name[UNIQ_NAME_MAX];     /* R.job */
    int64_t not_before;              /* monotonic ms */
    int     tries;
    int     noted;                   /* 8204 said, or the failure logged once */
    unsigned seen;                   /* the pass generation that last listed it */
    struct deferred *next;
};

/* A site requests go to: its address and its throttle. */
struct site {
    char    code[SS_SITE_LEN + 1];
    char    address[SS_PATH_MAX];    /* "" when the site table has no row */
    int     active;                  /* transfers running now */
    int     answered;                /* a transfer to it succeeded in this run */
    int     noaddr_logged;           /* "no address" said once */
    long long attempts;              /* failures in a row (retry table) */
    int64_t next_ms;                 /* throttled until (UTC ms) */
    char    last_error[256];
    struct site *next;
};

struct sender {
    struct daemon *d;
    char    root[SS_PATH_MAX];
    char    site[SS_SITE_LEN + 1];
    char    parent[SS_SITE_LEN + 1];
    struct sslog *schedlog;          /* logs/sched.log */
    sqlite3 *db;                     /* loop thread only */
    struct inbox jobs;               /* schedule.box, as reader */
    struct inbox reqs;               /* schedule.box/requests */
    struct inbox tosend;             /* schedule.box/tosend */
    struct pool *pool;
    struct daemon_watch *watch;
    uv_timer_t timer;
    int     timer_open;
    volatile int stop_flag;          /* what the workers poll */

    struct req  *reqlist;
    struct site *sites;
    int     active;
    int     max_sendings, max_per_site;
    int64_t retry_delay, retry_max_delay, job_lifetime;
    int     unroutable;              /* jobs deferred (struct deferred) */
    struct deferred *deferred;
    unsigned pass_gen;
    int     pool_threads;            /* the pool's size, fixed at start */
    int     sites_stale;             /* re-read the site rows at the next dispatch */
    int64_t sites_mono;              /* when they were read (monotonic ms) */
    uint64_t sent, failed, expired, scheduled;
    int64_t bytes_sent;
};

/* ---- sched.c: jobs into send requests (loop thread) */

/* Take every job in schedule.box: one request per job for its next hop,
 * its files linked into tosend/.  Returns how many were scheduled, or
 * -EAGAIN when a full page was taken and more may wait. */
int sched_pass(struct sender *s);
/* The next hop for a destination: itself when the site table knows it,
 * else the child it was learnt behind (route table), else the parent.
 * 0 with hop[], or -ENOENT. */
int sched_route(struct sender *s, const char *dest, char hop[SS_SITE_LEN + 1]);
/* The files of request name in tosend/ (name + .ins/.pck/.sts). */
void sched_drop_files(struct sender *s, const char *name);
/* At start, before any transfer: jobs whose request exists already (a
 * kill after the request was made durable, before the job went) are
 * removed, so that a request sent and gone cannot be scheduled again. */
void sched_forget_scheduled(struct sender *s);
/* The earliest monotonic time a deferred job is due; 0 when none. */
int64_t sched_deferred_next(struct sender *s);
/* Every deferred job due now (a reload: a site may have been added). */
void sched_deferred_wake(struct sender *s);
/* The request named name in the list, or NULL. */
struct req *req_find(struct sender *s, const char *name);

/* ---- xfer.c: one transfer (worker thread) */

struct xfer {
    char    name[UNIQ_NAME_MAX];
    struct sendreq q;                /* updated: offset, pck_done */
    char    address[SS_PATH_MAX];
    int     tosendfd;
    int     reqfd, reqtmpfd;         /* to record the confirmed offset */
    const volatile int *stop;
    int     rc;                      /* 0 sent; -ECANCELED stopped; else failed */
    int     fatal;                   /* the request itself is broken: no retry helps */
    int     local;                   /* failed on this server (its files), not at the site */
    char    err[256];
    int64_t written;                 /* bytes written at the hop this time */
    int64_t resumed_at;              /* package file offset this attempt began at */
};

/* Carry x->q to x->address.  Sets x->rc and x->err. */
void xfer_run(struct xfer *x);
/* Several small requests to one address (xs[i].address all equal), with
 * one sync for their files: each xs[i].rc and err set as by xfer_run.
 * A small request is sent whole (no resume offsets). */
void xfer_run_many(struct xfer *xs, size_t n);
/* "file:/abs/path" -> "/abs/path"; NULL for anything else. */
const char *xfer_file_path(const char *address);

#endif
