/*
 * sendreq.h - the files of the scheduler and the sender (docs/formats.md,
 * "Jobs" and "Send requests").
 *
 * A job (kind "job" v1, schedule.box/ *.job files) asks for files to be
 * sent to a site: a package version (an instruction and a package file,
 * written by distmgr under store/out/ and shared by every child's job), or
 * a status bundle (written by statmgr, owned by its job: the scheduler
 * removes it once it holds its own link).
 *
 * A send request (kind "sendreq" v1, schedule.box/requests/R.srq) is the
 * scheduler's record of one job for one next hop, and the sender's state
 * of its transfer.  R is the job's own base name, so that a job scheduled
 * twice (a kill between the request and the job's removal) gives one
 * request.  Its files are hard links (or copies) in schedule.box/tosend/
 * named R.ins, R.pck or R.sts.  The sender rewrites the request as the
 * transfer goes (attempts, next try, last error, confirmed offset): a
 * rewrite is a write to requests/.tmp/ and a rename over the old file,
 * so a reader sees the old state or the new one, never a mix.
 */
#ifndef SITESRV_SENDREQ_H
#define SITESRV_SENDREQ_H

#include "common.h"
#include "util.h"

enum send_prio { PRIO_HIGH = 0, PRIO_MEDIUM = 1, PRIO_LOW = 2 };
enum send_type { SEND_PACKAGE = 0, SEND_STATUS = 1 };

#define SENDREQ_MAX_SIZE 16384
/* Where a job's files may be, relative to the site root. */
#define JOB_PACKAGE_DIR  "store/out/"
#define JOB_STATUS_DIR   "inboxes/statmgr.box/outgoing/"

const char *prio_name(enum send_prio p);
int prio_parse(const char *s, enum send_prio *p);     /* 0 or -EINVAL */

struct job {
    enum send_type type;
    char    site[SS_SITE_LEN + 1];      /* final destination */
    enum send_prio priority;
    char    package[16];                /* package jobs */
    long long version;
    char    instruction[SS_PATH_MAX];   /* root-relative */
    char    package_file[SS_PATH_MAX];  /* root-relative */
    char    status_file[SS_PATH_MAX];   /* status jobs: root-relative */
    int64_t created_ms;
};

/* Format j into b (empty on entry). */
int job_format(const struct job *j, struct sbuf *b);
/* Parse (buf modified in place): -EBADMSG with err for anything wrong.
 * Paths must be relative, without "..", "." or empty components. */
int job_parse(char *buf, size_t len, struct job *j, char *err, size_t errlen);

struct sendreq {
    enum send_type type;
    char    dest[SS_SITE_LEN + 1];      /* the job's destination */
    char    hop[SS_SITE_LEN + 1];       /* the site it is sent to */
    enum send_prio priority;
    char    package[16];
    long long version;
    char    xfer[SS_NAME_MAX + 1];      /* base name at the hop: <site>-<32 hex> */
    int64_t size;                       /* bytes to send, all files */
    int64_t offset;                     /* package file bytes confirmed at the hop */
    int     pck_done;                   /* package file renamed in at the hop */
    long long attempts;                 /* failed attempts so far */
    int64_t next_ms;                    /* not before (0: now) */
    char    last_error[256];
    int64_t created_ms;                 /* the job's creation */
};

int srq_format(const struct sendreq *q, struct sbuf *b);
int srq_parse(char *buf, size_t len, struct sendreq *q, char *err, size_t errlen);

/* The tosend/ names of a request's files: R + ".ins", ".pck", ".sts". */

/*
 * Write q as <dirfd>/name, replacing it: built in <tmpfd> (the
 * directory's .tmp/) and renamed over; fsync'ed (file and directory)
 * when durable.  0 or -errno.
 */
int srq_store(int dirfd, int tmpfd, const char *name, const struct sendreq *q, int durable);
/* Read and parse <dirfd>/name.  -ENOENT, -EBADMSG (err) or -errno. */
int srq_load(int dirfd, const char *name, struct sendreq *q, char *err, size_t errlen);

#endif
