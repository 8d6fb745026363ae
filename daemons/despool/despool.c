/*
 * despool - the Despooler daemon.
 *
 * SUMMARY
 *   Verifies what another site sent into inboxes/despoolr.box/receive,
 *   installs it into this site's store and database, and hands it to this
 *   site's distmgr, which serves the DPs and the child sites (SPEC 2, 3).
 *
 * DESCRIPTION
 *   This file is the loop side; the work for one instruction is in
 *   install.c (ds_process).  The loop watches receive/: an instruction
 *   X.ins is committed when it is there (the sender renames it in after
 *   its package file X.pck), so only .ins files are taken; .pck files are
 *   left where they are for their instruction.  A status bundle X.sts (a
 *   child site's status messages) is a file of its own, committed by its
 *   rename: it is taken like an instruction and handed to statmgr
 *   (ds_bundle).  Any other name is quarantined.  Instructions are taken
 *   by priority (the "priority=" line near the top of the record, read
 *   once per name and unverified: it is only an order; the signature is
 *   checked when the instruction is processed), then age (modification
 *   time), then name, at most despool.threads at once (a few more are
 *   claimed and queued), each claimed into work/ on the loop thread and
 *   processed on a worker of the pool.  A full scan of receive/ keeps its
 *   sorted candidates; a finished job takes the next of them, and
 *   receive/ is listed again only after a watch event, the periodic
 *   rescan, or when the list is used up.  A name's order (priority and
 *   time) is remembered, so a scan costs a readdir and a lookup per name,
 *   not a stat and a read.  Names a complete scan no longer lists are
 *   forgotten.  About hourly, a package file whose instruction is in
 *   neither receive/ nor work/ and that is older than 8 days is
 *   quarantined ("package file without its instruction"); the sender
 *   legitimately leaves one waiting for its instruction for a while.
 *
 *   An instruction whose package file has not arrived goes back to the
 *   inbox at once: no worker waits for it.  The loop remembers its name
 *   and looks again as soon as its package file is there (the watch's
 *   event), else after WAIT_RETRY_MS doubling to WAIT_RETRY_MAX_MS; 8303
 *   says so once per instruction (per run).  An instruction returned after
 *   a failure that may pass (the database, the disk) is looked at again
 *   after FAIL_RETRY_MS doubling to FAIL_RETRY_MAX_MS, not on every event,
 *   so that a broken disk does not make a busy loop.  A name is not taken
 *   again while its job is in flight (a worker may give it back before
 *   the loop hears of it).
 *
 *   Every claimed instruction is finished, quarantined with its package
 *   file, or returned to the inbox: by ds_process, by the pool's done()
 *   for a job cancelled at stop, and by inbox_recover at the next start
 *   after a kill.  At stop the workers see the stop flag between steps,
 *   and the database connections are interrupted.
 *
 * DIAGNOSTICS
 *   logs/despool.log.  The ready file shows installed=, rejected=,
 *   duplicates=, waiting= (instructions waiting for their package file
 *   now), quarantined= (odd names) and bundles= (status bundles handed to
 *   statmgr).  Exit status 0 after an orderly
 *   stop, 1 when it cannot start.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "despool.h"
#include "log.h"
#include "manifest.h"
#include "sendreq.h"
#include "sitedb.h"
#include "statmsg.h"
#include "statrep.h"

#define RESCAN_MS      60000   /* a full look at receive/ at least this often */
#define WAIT_RETRY_MS  2000    /* an instruction waiting for its package file... */
#define WAIT_RETRY_MAX_MS 60000 /* ...doubling to this */
#define FAIL_RETRY_MS  5000    /* after a failure that may pass... */
#define FAIL_RETRY_MAX_MS 300000 /* ...doubling to this */
#define PAGE           256
#define ORPHAN_SWEEP_MS 3600000 /* package files without instruction: looked for hourly... */
#define ORPHAN_AGE_S   (8 * 86400) /* ...and quarantined at this age */

/* A name the loop knows: every instruction or status bundle seen in
 * receive/, with what ordering it needs (looked at once per name) and,
 * once it was given back, when to look at it again. */
struct held {
    char    name[UNIQ_NAME_MAX];
    int     prio;              /* enum send_prio of the instruction (peeked) */
    int64_t mtime_ns;          /* its modification time when first seen */
    uint64_t seen;             /* the last full scan that listed it */
    int64_t not_before;        /* monotonic ms; 0: due */
    int     waiting;           /* for its package file: its arrival is enough */
    int     noted;             /* 8303 said */
    int     inflight;          /* claimed and submitted: not due until it is back */
    int     tries;             /* looked at and given back, in a row: the delay grows */
    struct held *next;         /* hash chain */
};

struct despool {
    struct daemon  *d;
    char            root[SS_PATH_MAX];
    char            store[SS_PATH_MAX];
    char            site[SS_SITE_LEN + 1];
    struct ds_env   env;
    struct ds_group group;         /* the commits of several workers together */
    int             group_ok;
    atomic_int      stopping;
    atomic_int      store_ok;      /* store_init done */
    volatile int    stop_flag;     /* what the workers poll */

    struct sitedb_pool dbs;        /* connections for the workers */

    /* Loop thread only. */
    struct inbox    rx;
    struct pool    *pool;
    struct daemon_watch *watch;
    uv_timer_t      timer;
    int             timer_open;
    struct held   **ht;            /* the names known, hashed */
    size_t          htsize, nheld;
    uint64_t        gen;           /* full scans so far */
    struct ds_cand *cand;          /* the sorted candidates of the last full scan... */
    size_t          ncand, cpos;   /* ...and the next one to take */
    int64_t         orphan_ms;     /* the last look for package files without instruction */
    size_t          inflight;
    int             slots;         /* claimed at most at once */
    uint64_t        installed, rejected, duplicates, quarantined, bundles;
};

struct ds_job {
    struct pool_job  job;
    struct despool  *ds;
    char             name[UNIQ_NAME_MAX];
    struct ds_result res;
};

/* ---------------------------------------------------------------- held names */

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603ULL;

    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

/* Twice the buckets once there are more names than buckets: a backlog of
 * many thousand names costs one lookup each per scan, not a list walk. */
static void held_grow(struct despool *ds)
{
    size_t nsize = ds->htsize ? ds->htsize * 2 : 256;
    struct held **nt = calloc(nsize, sizeof *nt);

    if (!nt)
        return;                 /* longer chains, still correct */
    for (size_t i = 0; i < ds->htsize; i++)
        for (struct held *h = ds->ht[i], *nx; h; h = nx) {
            nx = h->next;
            size_t b = name_hash(h->name) & (nsize - 1);
            h->next = nt[b];
            nt[b] = h;
        }
    free(ds->ht);
    ds->ht = nt;
    ds->htsize = nsize;
}

static struct held *held_get(struct despool *ds, const char *name, int create)
{
    struct held *h;
    size_t b;

    if (ds->htsize) {
        for (h = ds->ht[name_hash(name) & (ds->htsize - 1)]; h; h = h->next)
            if (strcmp(h->name, name) == 0)
                return h;
    }
    if (!create)
        return NULL;
    if (ds->nheld >= ds->htsize)
        held_grow(ds);
    if (!ds->htsize || !(h = calloc(1, sizeof *h)))
        return NULL;
    if (ss_strcpy(h->name, sizeof h->name, name) < 0) {
        free(h);
        return NULL;
    }
    h->prio = -1;               /* not peeked yet */
    b = name_hash(name) & (ds->htsize - 1);
    h->next = ds->ht[b];
    ds->ht[b] = h;
    ds->nheld++;
    return h;
}

static void held_del(struct despool *ds, const char *name)
{
    if (!ds->htsize)
        return;
    for (struct held **hp = &ds->ht[name_hash(name) & (ds->htsize - 1)]; *hp;
         hp = &(*hp)->next)
        if (strcmp((*hp)->name, name) == 0) {
            struct held *h = *hp;
            *hp = h->next;
            free(h);
            ds->nheld--;
            return;
        }
}

/* Forget the names the full scan gen did not list (removed by an
 * operator, renamed by a return, taken meanwhile) unless a job has them:
 * finding 10, entries that would otherwise stay for the whole run. */
static void held_prune(struct despool *ds, uint64_t gen)
{
    for (size_t i = 0; i < ds->htsize; i++)
        for (struct held **hp = &ds->ht[i]; *hp;) {
            struct held *h = *hp;
            if (h->seen != gen && !h->inflight) {
                *hp = h->next;
                free(h);
                ds->nheld--;
            } else {
                hp = &h->next;
            }
        }
}

static void held_free_all(struct despool *ds)
{
    for (size_t i = 0; i < ds->htsize; i++)
        for (struct held *h = ds->ht[i], *nx; h; h = nx) {
            nx = h->next;
            free(h);
        }
    free(ds->ht);
    ds->ht = NULL;
    ds->htsize = ds->nheld = 0;
}

static size_t held_waiting(const struct despool *ds)
{
    size_t n = 0;

    for (size_t i = 0; i < ds->htsize; i++)
        for (const struct held *h = ds->ht[i]; h; h = h->next)
            n += h->waiting != 0;
    return n;
}

/* ---------------------------------------------------------------- jobs */

/* The content store made (store_init) once, on first use: a site whose
 * store does not exist yet is not a reason to refuse to start. */
static int store_ready(struct despool *ds)
{
    int rc;

    if (atomic_load(&ds->store_ok))
        return 0;
    if ((rc = store_init(ds->store)) == 0)
        atomic_store(&ds->store_ok, 1);
    return rc;
}

static void job_work(struct pool_job *j)
{
    struct ds_job *jb = (struct ds_job *)j;
    struct despool *ds = jb->ds;
    sqlite3 *db = NULL;
    int rc;

    /* A status bundle needs no store: only an instruction waits for it. */
    if (!ds_has_suffix(jb->name, STATREP_SUFFIX) && (rc = store_ready(ds)) < 0) {
        memset(&jb->res, 0, sizeof jb->res);
        jb->res.err = rc;
        log_error("cannot prepare the content store %s: %s; instruction %s waits in the inbox",
                  ds->store, strerror(-rc), jb->name);
        if (inbox_return(&ds->rx, jb->name) < 0)
            log_error("instruction %s: cannot return it to the inbox", jb->name);
        jb->res.outcome = DS_RETURNED;
        return;
    }
    if (!(db = sitedb_pool_get(&ds->dbs))) {
        memset(&jb->res, 0, sizeof jb->res);
        jb->res.err = -EIO;
        (void)ss_strcpy(jb->res.why, sizeof jb->res.why, "cannot open the site database");
        if (inbox_return(&ds->rx, jb->name) < 0)
            log_error("instruction %s: cannot return it to the inbox", jb->name);
        jb->res.outcome = DS_RETURNED;
        return;
    }
    if (ds_has_suffix(jb->name, STATREP_SUFFIX))
        ds_bundle(&ds->env, db, &ds->rx, jb->name, &jb->res);
    else
        ds_process(&ds->env, db, &ds->rx, jb->name, &jb->res);
    sitedb_pool_put(&ds->dbs, db);
}

static void feed(struct despool *ds);

/* The delay before the tries-th look at an instruction given back: from
 * base, doubling, to max -- a full disk or a package file that never
 * comes must not cost an unpack or a signature check every few seconds. */
static int64_t held_delay(int tries, int64_t base, int64_t max)
{
    int64_t d = base;

    for (int i = 1; i < tries && d < max; i++)
        d *= 2;
    return d < max ? d : max;
}

static void job_done(struct pool_job *j, int cancelled)
{
    struct ds_job *jb = (struct ds_job *)j;
    struct despool *ds = jb->ds;
    struct held *h;
    int rc;

    ds->inflight--;
    if (cancelled) {
        /* Queued when the daemon stopped: never started, still in work/. */
        if ((rc = inbox_return(&ds->rx, jb->name)) < 0 && rc != -ENOENT)
            log_error("instruction %s: cannot return it to the inbox: %s; it is returned at "
                      "the next start", jb->name, strerror(-rc));
        free(jb);
        return;
    }
    switch (jb->res.outcome) {
    case DS_INSTALLED:
        ds->installed++;
        held_del(ds, jb->name);
        break;
    case DS_DUPLICATE:
        ds->duplicates++;
        held_del(ds, jb->name);
        break;
    case DS_REJECTED:
        ds->rejected++;
        held_del(ds, jb->name);
        break;
    case DS_FORWARDED:
        ds->bundles++;
        held_del(ds, jb->name);
        break;
    case DS_WAITING:
        if (!(h = held_get(ds, jb->name, 1)))
            break;
        h->inflight = 0;
        h->waiting = 1;
        h->tries++;
        /* Its package file's arrival makes it due at once (held_due). */
        h->not_before = ss_mono_ms() + held_delay(h->tries, WAIT_RETRY_MS, WAIT_RETRY_MAX_MS);
        if (!h->noted) {
            char vs[24];
            const char *attrs[] = { "PackageID", jb->res.in.package, "Version", vs, "Site",
                                    jb->res.in.site, NULL };
            h->noted = 1;
            (void)ss_fmt(vs, sizeof vs, "%lld", jb->res.in.version);
            log_info("instruction %s (package %s version %lld from site %s): its package file "
                     "has not arrived; looked at again when it does", jb->name,
                     jb->res.in.package, jb->res.in.version, jb->res.in.site);
            sm_emit(SM_DESPOOL_WAITING, 0, attrs, jb->name, jb->res.in.package, vs, NULL);
        }
        break;
    case DS_RETURNED:
        if (daemon_stopping(ds->d))
            break;
        if ((h = held_get(ds, jb->name, 1)) != NULL) {
            h->inflight = 0;
            h->waiting = 0;
            h->tries++;
            h->not_before = ss_mono_ms() + held_delay(h->tries, FAIL_RETRY_MS, FAIL_RETRY_MAX_MS);
        }
        break;
    }
    free(jb);
    if (!daemon_stopping(ds->d))
        feed(ds);
}

/* ---------------------------------------------------------------- the inbox */

/* Is a known name to be taken now? */
static int held_due(struct despool *ds, const struct held *h, int64_t now)
{
    char pck[SS_NAME_MAX + 1];

    if (h->inflight)
        return 0;               /* a worker gave it back, its done() is to come */
    if (h->tries == 0 || now >= h->not_before)
        return 1;
    return h->waiting && ds_pck_name(h->name, pck, sizeof pck) == 0 &&
           faccessat(ds->rx.dirfd, pck, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

static void submit(struct despool *ds, struct held *h)
{
    struct ds_job *jb;
    int rc;

    if ((rc = inbox_claim(&ds->rx, h->name)) < 0) {
        if (rc != -ENOENT)
            log_warn("instruction %s: cannot claim it: %s", h->name, strerror(-rc));
        return;
    }
    if (!(jb = calloc(1, sizeof *jb))) {
        log_error("out of memory: instruction %s waits in the inbox", h->name);
        (void)inbox_return(&ds->rx, h->name);
        return;
    }
    jb->ds = ds;
    (void)ss_strcpy(jb->name, sizeof jb->name, h->name);
    jb->job.work = job_work;
    jb->job.done = job_done;
    /* The worker may give it back to the inbox before its done() runs
     * here: until then a scan must not take it again. */
    h->inflight = 1;
    ds->inflight++;
    pool_submit(ds->pool, &jb->job);
}

/* Take the next candidates of the last full scan while slots are free
 * (finding 14: a finished job does not cost a listing of receive/).
 * A candidate gone meanwhile (claim: ENOENT) or not due any more is
 * skipped.  When the list is used up with slots free, a full scan looks
 * for what came meanwhile. */
static void feed(struct despool *ds)
{
    int64_t now = ss_mono_ms();

    while (ds->inflight < (size_t)ds->slots && ds->cpos < ds->ncand &&
           !daemon_stopping(ds->d)) {
        struct held *h = held_get(ds, ds->cand[ds->cpos++].name, 0);
        if (h && held_due(ds, h, now))
            submit(ds, h);
    }
    if (ds->cpos >= ds->ncand && ds->ncand > 0 && ds->inflight < (size_t)ds->slots &&
        ds->watch && !daemon_stopping(ds->d)) {
        ds->ncand = ds->cpos = 0;
        daemon_watch_kick(ds->watch);
    }
}

/* A package file X.pck whose instruction is in neither receive/ nor
 * work/ and that is older than ORPHAN_AGE_S: quarantined (finding 5).
 * The sender puts X.pck before X.ins, and may wait long between the two
 * when its own site is down, hence days, not hours. */
static void orphan_check(struct despool *ds, const char *pck, int64_t now_s)
{
    char ins[SS_NAME_MAX + 1];

    /* Its instruction known to the loop: it is in flight or waiting. */
    if (ss_strcpy(ins, sizeof ins, pck) < 0 || strlen(ins) < 5)
        return;
    memcpy(ins + strlen(ins) - 4, ".ins", 4);
    if (held_get(ds, ins, 0) != NULL || !ds_pck_orphan(&ds->rx, pck, now_s, ORPHAN_AGE_S))
        return;
    ds->quarantined++;
    (void)inbox_quarantine(&ds->rx, 0, pck, "package file without its instruction");
}

static void watch_cb(struct daemon_watch *w, void *arg)
{
    struct despool *ds = arg;
    struct inbox_cursor cur;
    struct inbox_entry ents[PAGE];
    struct ds_cand *c = NULL;
    char **pcks = NULL;
    size_t n, nc = 0, cap = 0, np = 0, pcap = 0;
    int64_t now = ss_mono_ms();
    uint64_t gen = ++ds->gen;
    int rc, cut = 0, sweep;

    (void)w;
    if ((rc = inbox_cursor_open(&ds->rx, &cur)) < 0) {
        log_warn("cannot list %s: %s", ds->rx.path, strerror(-rc));
        return;
    }
    /* Package files without their instruction are looked for now and
     * then, not at every scan. */
    sweep = ds->orphan_ms == 0 || now - ds->orphan_ms >= ORPHAN_SWEEP_MS;
    while ((rc = inbox_cursor_next(&cur, ents, SS_ARRAY_LEN(ents), &n)) == 0 && n > 0 &&
           !daemon_stopping(ds->d)) {
        for (size_t i = 0; i < n; i++) {
            const char *nm = ents[i].name;
            struct held *h;
            struct stat sb;

            if (ents[i].odd) {
                ds->quarantined++;
                (void)inbox_quarantine(&ds->rx, 0, nm, "not an instruction, package file "
                                       "or status bundle name (<site>-<32 hex>.ins, .pck "
                                       "or .sts)");
                continue;
            }
            if (!ds_has_suffix(nm, ".ins") && !ds_has_suffix(nm, STATREP_SUFFIX)) {
                /* A package file: its instruction takes it. */
                if (sweep && ds_has_suffix(nm, ".pck")) {
                    if (np == pcap) {
                        size_t ncap = pcap ? pcap * 2 : 16;
                        char **nw = realloc(pcks, ncap * sizeof *nw);
                        if (!nw)
                            continue;
                        pcks = nw;
                        pcap = ncap;
                    }
                    if ((pcks[np] = strdup(nm)) != NULL)
                        np++;
                }
                continue;
            }
            if (!(h = held_get(ds, nm, 1))) {
                cut = 1;
                continue;
            }
            h->seen = gen;
            if (h->prio < 0) {
                /* First sight: its order, once (finding 14: no stat per
                 * name per scan). */
                if (fstatat(ds->rx.dirfd, nm, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
                    held_del(ds, nm);
                    continue;   /* taken meanwhile */
                }
                h->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
                h->prio = ds_has_suffix(nm, ".ins") ? ds_peek_priority(ds->rx.dirfd, nm)
                                                    : PRIO_MEDIUM;
            }
            if (!held_due(ds, h, now))
                continue;
            if (nc == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                struct ds_cand *nw = realloc(c, ncap * sizeof *nw);
                if (!nw) {
                    cut = 1;
                    continue;
                }
                c = nw;
                cap = ncap;
            }
            (void)ss_strcpy(c[nc].name, sizeof c[nc].name, nm);
            c[nc].prio = h->prio;
            c[nc].mtime_ns = h->mtime_ns;
            nc++;
        }
    }
    inbox_cursor_close(&cur);
    if (rc < 0) {
        cut = 1;
        log_warn("cannot list %s: %s", ds->rx.path, strerror(-rc));
    }
    if (!cut && !daemon_stopping(ds->d))
        held_prune(ds, gen);    /* a complete listing: what it lacks is gone */
    if (sweep && rc == 0 && !daemon_stopping(ds->d)) {
        int64_t now_s = ss_now_ms() / 1000;
        size_t gone = 0;
        ds->orphan_ms = now;
        for (size_t i = 0; i < np; i++)
            orphan_check(ds, pcks[i], now_s);
        /* Part files of sends given up (expired at the sending site). */
        if (inbox_sweep_tmp(&ds->rx, ORPHAN_AGE_S, &gone, NULL) == 0 && gone)
            log_info("removed %zu files left in %s/.tmp for more than %d days", gone,
                     ds->rx.path, ORPHAN_AGE_S / 86400);
    }
    for (size_t i = 0; i < np; i++)
        free(pcks[i]);
    free(pcks);
    if (nc)
        qsort(c, nc, sizeof *c, ds_cand_cmp);
    free(ds->cand);
    ds->cand = c;
    ds->ncand = nc;
    ds->cpos = 0;
    feed(ds);
}

static void timer_cb(uv_timer_t *tm)
{
    struct despool *ds = tm->data;
    int64_t now = ss_mono_ms();

    if (!ds->watch || daemon_stopping(ds->d))
        return;
    /* Only when an instruction given back is due again (finding 10: not a
     * full scan every few seconds for ever); a waiting one's package file
     * makes an event of its own. */
    for (size_t i = 0; i < ds->htsize; i++)
        for (const struct held *h = ds->ht[i]; h; h = h->next)
            if (!h->inflight && h->tries > 0 && now >= h->not_before) {
                daemon_watch_kick(ds->watch);
                return;
            }
}

/* ---------------------------------------------------------------- runtime */

static int despool_start(struct daemon *d)
{
    struct despool *ds = daemon_priv(d);
    const struct ss_conf *c = daemon_conf(d);
    char path[SS_PATH_MAX];
    size_t returned = 0, removed = 0;
    int rc, threads;

    ds->d = d;
    (void)ss_strcpy(ds->root, sizeof ds->root, daemon_root(d));
    sitedb_pool_init(&ds->dbs, ds->root);
    (void)ss_strcpy(ds->site, sizeof ds->site, c->site_code);
    if ((rc = ss_path(ds->store, sizeof ds->store, "%s/store", ds->root)) == 0 &&
        (rc = ss_path(path, sizeof path, "%s/small.db", ds->store)) == 0 &&
        access(path, F_OK) == 0)
        rc = store_ready(ds);
    /* else a new site: distmgr, starting now too, makes the store, and
     * the first instruction makes it if distmgr has not (store_ready). */
    if (rc < 0) {
        log_error("cannot prepare the content store %s/store: %s", ds->root, strerror(-rc));
        return -1;
    }
    /* statmgr.box/sites, where bundles go, is missing from site roots
     * made before bundles existed. */
    if ((rc = statrep_dirs(ds->root)) < 0)
        log_warn("cannot create inboxes/statmgr.box/sites under %s: %s; status bundles from "
                 "child sites wait in the inbox", ds->root, strerror(-rc));
    ds->env.root = ds->root;
    ds->env.store = ds->store;
    ds->env.site = ds->site;
    ds->env.stop = &ds->stop_flag;
    if ((rc = ds_group_init(&ds->group)) < 0) {
        log_error("cannot start: %s", strerror(-rc));
        return -1;
    }
    ds->group_ok = 1;
    ds->env.group = &ds->group;
    if ((rc = inbox_open(&ds->rx, ds->root, IB_RECEIVE, ds->site, 1)) < 0) {
        log_error("cannot open inbox despoolr.box/receive under %s/inboxes: %s", ds->root,
                  strerror(-rc));
        return -1;
    }
    /* A sender resumes its package file in .tmp/ after an outage of its
     * own or of this site: kept as long as an orphan package file. */
    if ((rc = inbox_recover_aged(&ds->rx, ORPHAN_AGE_S, &returned, &removed)) < 0) {
        log_error("cannot recover %s: %s", ds->rx.path, strerror(-rc));
        return -1;
    }
    if (returned)
        log_info("%zu instructions of an interrupted run returned to the inbox", returned);
    threads = c->despool_threads > 0 && c->despool_threads <= 256 ? (int)c->despool_threads : 1;
    /* A few more claimed than workers, so that a worker never idles
     * while the loop lists the directory. */
    ds->slots = threads * 2;
    if (!(ds->pool = daemon_pool(d, threads)))
        return -1;
    uv_timer_init(daemon_loop(d), &ds->timer);
    ds->timer.data = ds;
    ds->timer_open = 1;
    uv_timer_start(&ds->timer, timer_cb, WAIT_RETRY_MS, WAIT_RETRY_MS);
    if (!(ds->watch = daemon_watch(d, ds->rx.path, RESCAN_MS, watch_cb, ds)))
        return -1;
    log_info("despool serving site %s: %d workers on %s", ds->site, threads, ds->rx.path);
    return 0;
}

static void despool_reload(struct daemon *d)
{
    struct despool *ds = daemon_priv(d);

    if ((long long)pool_threads(ds->pool) != daemon_conf(d)->despool_threads)
        log_warn("despool.threads changes take effect at the next start");
}

static void despool_stop(struct daemon *d)
{
    struct despool *ds = daemon_priv(d);

    atomic_store(&ds->stopping, 1);
    ds->stop_flag = 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    sitedb_pool_stop(&ds->dbs);
    if (ds->timer_open) {
        uv_close((uv_handle_t *)&ds->timer, NULL);
        ds->timer_open = 0;
    }
}

static void despool_status(struct daemon *d, char *buf, size_t len)
{
    struct despool *ds = daemon_priv(d);

    snprintf(buf, len, "installed=%llu\nrejected=%llu\nduplicates=%llu\nwaiting=%zu\n"
             "quarantined=%llu\nbundles=%llu\n", (unsigned long long)ds->installed,
             (unsigned long long)ds->rejected, (unsigned long long)ds->duplicates,
             held_waiting(ds), (unsigned long long)ds->quarantined,
             (unsigned long long)ds->bundles);
}

static const struct daemon_ops ops = {
    .name = "despool",
    .start = despool_start,
    .stop = despool_stop,
    .reload = despool_reload,
    .status = despool_status,
};

int main(int argc, char **argv)
{
    static struct despool ds = {
        .dbs.lock = PTHREAD_MUTEX_INITIALIZER,
        .rx = { .dirfd = -1, .tmpfd = -1, .workfd = -1, .corruptfd = -1 },
    };
    int r = daemon_main(argc, argv, &ops, &ds);

    /* The pool is stopped: no job uses the connections or the inbox now. */
    held_free_all(&ds);
    free(ds.cand);
    if (ds.group_ok)
        ds_group_close(&ds.group);
    sitedb_pool_close(&ds.dbs);
    if (ds.rx.dirfd >= 0)
        inbox_close(&ds.rx);
    return r;
}
