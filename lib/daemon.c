/*
 * daemon.c - the runtime every sitesrv daemon shares (SPEC 4.3).
 *
 * SYNOPSIS
 *   daemon_main                       arguments, pid lock, conf, log, loop,
 *                                     readiness, signals, orderly stop
 *   daemon_loop daemon_conf daemon_root daemon_name daemon_priv
 *   daemon_stopping daemon_pool       what a daemon asks its runtime
 *   daemon_watch daemon_watch_kick daemon_watch_set_rescan
 *   daemon_watch_close daemon_watch_dir
 *                                     coalesced inbox watching
 *   daemon_embed daemon_embed_free    the same on a caller's loop (tests)
 *   ss_notify                         sd_notify(3) by hand
 *   pidfile_acquire pidfile_owner     the run/<name>.pid lock
 *
 * DESCRIPTION
 *   SMS 2.0 hung when its services were stopped and started back to back.
 *   This runtime is built so that no order or timing of starts and stops
 *   matters, and nothing waits on a sleep:
 *
 *   - Only one instance runs per site: run/<name>.pid carries an fcntl
 *     write lock for the life of the process.  The kernel drops the lock
 *     when the process dies, however it dies, so the stale pid file of a
 *     killed daemon never blocks a start.
 *   - A daemon is announced ready (run/<name>.ready, renamed into place
 *     so a reader never sees half of it, and READY=1 to systemd) only
 *     after its start() returned 0, and the ready file is removed first
 *     thing at stop, so "ready" always means "serving now".
 *   - SIGTERM/SIGINT stop the loop; then, outside any callback, the
 *     daemon's stop() runs, the watches close, the worker pool returns
 *     every queued job to its owner (done(j, 1)) and lets running jobs
 *     finish, and the loop runs until every handle is closed.  A guard
 *     thread exits the process with status 1, naming what was still
 *     running, if that does not complete within [daemon] stop_timeout:
 *     a libuv timer could not do this, because a stuck job or a stuck
 *     stop() blocks the loop thread too.  The guard takes no lock that
 *     anything may hold across I/O (not even the log's): a hung file
 *     system must not hold up the one thing meant to end a hang.
 *   - SITESRV_UNSAFE_NOFSYNC is removed from the environment first
 *     thing, with a warning: a daemon always fsyncs.
 *   - Stop, reload and start signals that arrive before the loop is
 *     ready are held blocked, not lost and not fatal, until the libuv
 *     signal handles exist.
 *
 *   Inbox watching treats inotify as a hint and the directory scan as the
 *   truth: events only set a pending flag and start an idle handle, so a
 *   burst of events becomes one callback on the next loop turn (an idle
 *   handle runs at most once per turn, unlike a 0 ms timer restarted from
 *   its own callback, which libuv 1.44 runs again in the same turn); a
 *   repeating timer rescans in case events were dropped.
 *
 * DIAGNOSTICS
 *   daemon_main returns the process exit status: 0 after an orderly stop
 *   (or --help/--version), 1 when the configuration, the pid lock, the
 *   loop or start() fail or the stop timed out, 2 for a usage error.
 *   Errors before the log is open go to stderr with the "<3>" prefix.  It
 *   logs readiness, stops, reloads and stray handles, a warning when it
 *   removed SITESRV_UNSAFE_NOFSYNC from its environment, and the stop
 *   guard's line (stderr first, the log only if no thread holds it) when
 *   a stop overstays its time limit.  It emits status
 *   messages 8000 (started), 8001 (stopping), 8003 (configuration
 *   reloaded) and 8004 (configuration refused).  The other functions
 *   return 0 or a negative errno, or NULL with a log line.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "fsutil.h"
#include "log.h"
#include "statmsg.h"
#include "util.h"

#define READY_REFRESH_MS  2000      /* ready file status refresh */
#define STATUS_MAX        4096      /* ops->status() buffer */
#define STOP_TIMEOUT_DEF  10000     /* ms, when the conf says 0 */

struct daemon_watch {
    struct daemon       *d;
    struct daemon_watch *next;
    struct daemon_watch **prevp;    /* unlinks in O(1) */
    char                 dir[SS_PATH_MAX];
    daemon_watch_cb      cb;
    void                *arg;
    uv_fs_event_t        ev;
    uv_timer_t           rescan;
    uv_idle_t            idle;
    int64_t              rescan_ms;
    int                  ev_active;     /* inotify watch running */
    int                  ev_warned;     /* warned once about event errors */
    int                  pending;       /* a callback is due */
    int                  closing;
    int                  open_handles;  /* freed when this reaches 0 */
};

struct daemon {
    const struct daemon_ops *ops;
    void                *priv;
    char                 name[SS_NAME_MAX + 1];
    char                 root[SS_PATH_MAX];
    struct ss_conf       conf;
    uv_loop_t            own_loop;
    uv_loop_t           *loop;
    int                  embedded;
    int                  stopping;
    int                  ready;         /* ready file written */
    int                  exit_code;
    struct pool         *pool;
    struct daemon_watch *watches;
    size_t               watch_mem;     /* watches not yet freed */

    /* daemon_main only */
    uv_signal_t          sig_term, sig_int, sig_hup;
    uv_timer_t           status_timer, watchdog_timer;
    int                  have_signals, have_status, have_watchdog;
    int                  pidfd;
    char                 pidpath[SS_PATH_MAX];
    char                 readypath[SS_PATH_MAX];
    char                 readytmp[SS_PATH_MAX];
    char                 pidstr[24];
    char                 started[40];
    char                *ready_last;    /* last content written */

    /* the stop guard thread */
    pthread_t            guard;
    int                  guard_on;
    int                  guard_done;
    pthread_mutex_t      guard_mu;
    pthread_cond_t       guard_cv;
    int64_t              guard_ms;      /* when it acts */
    int64_t              guard_limit;   /* the stop timeout it reports */
    char                 guard_line[512];   /* its last word, pre-formatted */
};

static const int stop_signals[] = { SIGTERM, SIGINT, SIGHUP };

/* ------------------------------------------------------------------ */
/* sd_notify                                                            */

int ss_notify(const char *state)
{
    const char *e = getenv("NOTIFY_SOCKET");
    if (e == NULL || e[0] == '\0')
        return 0;
    /* systemd passes a path or, for the abstract namespace, '@name'. */
    if (e[0] != '/' && e[0] != '@')
        return -EAFNOSUPPORT;

    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t n = strlen(e);
    if (n >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, e, n);
    socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (e[0] == '@')
        sa.sun_path[0] = '\0';      /* abstract: the length excludes any NUL */
    else
        sl += 1;

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
               (struct sockaddr *)&sa, sl) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* ------------------------------------------------------------------ */
/* Pid file                                                             */

int pidfile_acquire(const char *path, int *fdp)
{
    /* The loop covers one race: the previous holder unlinks the file
     * between our open() and our lock, leaving us a lock on an inode no
     * one else will ever open.  Locking the file that is at the path now
     * is what makes the lock mean something. */
    for (int tries = 0; tries < 64; tries++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
            return -errno;
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
        if (fcntl(fd, F_SETLK, &fl) < 0) {
            int e = errno;
            close(fd);
            return (e == EAGAIN || e == EACCES) ? -EAGAIN : -e;
        }
        struct stat a, b;
        if (fstat(fd, &a) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (stat(path, &b) < 0) {
            int e = errno;
            close(fd);
            if (e == ENOENT)
                continue;
            return -e;
        }
        if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
            close(fd);
            continue;
        }
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
        /* A fresh descriptor writes at offset 0; ss_write_all carries on
         * after a short write, so the error it returns is the one that
         * stopped the write, never a stale errno. */
        int e = ftruncate(fd, 0) < 0 ? -errno : ss_write_all(fd, buf, (size_t)n);
        if (e < 0) {
            close(fd);
            return e;
        }
        *fdp = fd;
        return 0;
    }
    return -EAGAIN;
}

pid_t pidfile_owner(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    int r = fcntl(fd, F_GETLK, &fl);
    close(fd);
    if (r < 0 || fl.l_type == F_UNLCK || fl.l_pid < 0)
        return 0;
    return fl.l_pid;
}

/* ------------------------------------------------------------------ */
/* Accessors                                                            */

uv_loop_t *daemon_loop(struct daemon *d)                { return d->loop; }
const struct ss_conf *daemon_conf(struct daemon *d)     { return &d->conf; }
const char *daemon_root(struct daemon *d)               { return d->root; }
const char *daemon_name(struct daemon *d)               { return d->name; }
void *daemon_priv(struct daemon *d)                     { return d->priv; }
int daemon_stopping(struct daemon *d)                   { return d->stopping; }

struct pool *daemon_pool(struct daemon *d, int nthreads)
{
    if (d->pool == NULL && !d->stopping) {
        d->pool = pool_new(d->loop, d->name, nthreads < 1 ? 1 : nthreads);
        if (d->pool == NULL)
            log_error("cannot create a worker pool of %d threads", nthreads);
    }
    return d->pool;
}

/* ------------------------------------------------------------------ */
/* Watches                                                              */

/* An idle handle runs at most once per loop turn, and an active one
 * keeps the loop from blocking in poll, so the callback runs on the next
 * turn however many requests came before it. */
static void watch_on_idle(uv_idle_t *h)
{
    struct daemon_watch *w = h->data;
    uv_idle_stop(h);
    w->pending = 0;
    if (w->closing || w->d->stopping)
        return;
    w->cb(w, w->arg);
}

static void watch_request(struct daemon_watch *w)
{
    if (w->closing || w->d->stopping)
        return;
    if (!w->pending) {
        w->pending = 1;
        uv_idle_start(&w->idle, watch_on_idle);
    }
}

static void watch_on_event(uv_fs_event_t *h, const char *filename, int events,
                           int status)
{
    struct daemon_watch *w = h->data;
    if (status < 0 && !w->ev_warned) {
        /* An error here (or a silently dropped overflow) costs nothing but
         * latency: the scan we ask for below, and the rescan, find it all. */
        w->ev_warned = 1;
        log_warn("watching %s: %s; relying on the scans",
                 w->dir, uv_strerror(status));
    }
    watch_request(w);
}

static int watch_start_events(struct daemon_watch *w, int quiet)
{
    int r = uv_fs_event_start(&w->ev, watch_on_event, w->dir, 0);
    if (r < 0) {
        if (!quiet)
            log_warn("cannot watch %s (%s); rescanning it every %lld ms instead",
                     w->dir, uv_strerror(r), (long long)w->rescan_ms);
        return r;
    }
    w->ev_active = 1;
    return 0;
}

static void watch_on_rescan(uv_timer_t *h)
{
    struct daemon_watch *w = h->data;
    /* A directory missing at start may exist now: try again to watch it
     * (quietly; the failure was logged once). */
    if (!w->ev_active && !w->closing && !w->d->stopping)
        watch_start_events(w, 1);
    watch_request(w);
}

static void watch_on_close(uv_handle_t *h)
{
    struct daemon_watch *w = h->data;
    if (--w->open_handles == 0) {
        w->d->watch_mem--;
        free(w);
    }
}

struct daemon_watch *daemon_watch(struct daemon *d, const char *dir,
                                  int64_t rescan_ms, daemon_watch_cb cb, void *arg)
{
    if (d->stopping) {
        log_warn("not watching %s: stopping", dir);
        return NULL;
    }
    struct daemon_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        log_error("watching %s: out of memory", dir);
        return NULL;
    }
    if (ss_strcpy(w->dir, sizeof(w->dir), dir) < 0) {
        log_error("watching %s: path too long", dir);
        free(w);
        return NULL;
    }
    w->d = d;
    w->cb = cb;
    w->arg = arg;
    w->rescan_ms = rescan_ms > 0 ? rescan_ms : 0;

    /* Init cannot fail for these three on Linux except for resources;
     * each one that is initialised must be closed, hence the count. */
    int r = uv_fs_event_init(d->loop, &w->ev);
    if (r == 0) {
        w->open_handles++;
        r = uv_timer_init(d->loop, &w->rescan);
    }
    if (r == 0) {
        w->open_handles++;
        r = uv_idle_init(d->loop, &w->idle);
    }
    if (r == 0)
        w->open_handles++;
    w->ev.data = w->rescan.data = w->idle.data = w;
    d->watch_mem++;
    w->next = d->watches;
    if (d->watches)
        d->watches->prevp = &w->next;
    w->prevp = &d->watches;
    d->watches = w;
    if (r < 0) {
        log_error("watching %s: %s", dir, uv_strerror(r));
        daemon_watch_close(w);
        return NULL;
    }

    watch_start_events(w, 0);
    if (w->rescan_ms > 0)
        uv_timer_start(&w->rescan, watch_on_rescan, (uint64_t)w->rescan_ms,
                       (uint64_t)w->rescan_ms);
    watch_request(w);               /* the scan at start */
    return w;
}

void daemon_watch_kick(struct daemon_watch *w)
{
    watch_request(w);
}

void daemon_watch_set_rescan(struct daemon_watch *w, int64_t rescan_ms)
{
    if (w->closing)
        return;
    w->rescan_ms = rescan_ms > 0 ? rescan_ms : 0;
    if (w->rescan_ms > 0)
        uv_timer_start(&w->rescan, watch_on_rescan, (uint64_t)w->rescan_ms,
                       (uint64_t)w->rescan_ms);
    else
        uv_timer_stop(&w->rescan);
}

const char *daemon_watch_dir(struct daemon_watch *w)
{
    return w->dir;
}

void daemon_watch_close(struct daemon_watch *w)
{
    if (w == NULL || w->closing)
        return;
    w->closing = 1;
    w->pending = 0;
    *w->prevp = w->next;
    if (w->next)
        w->next->prevp = w->prevp;
    w->next = NULL;
    /* Close in init order; open_handles says how many were initialised. */
    int n = w->open_handles;
    if (n == 0) {
        w->d->watch_mem--;
        free(w);
        return;
    }
    uv_close((uv_handle_t *)&w->ev, watch_on_close);
    if (n > 1)
        uv_close((uv_handle_t *)&w->rescan, watch_on_close);
    if (n > 2)
        uv_close((uv_handle_t *)&w->idle, watch_on_close);
}

static void close_watches(struct daemon *d)
{
    while (d->watches)
        daemon_watch_close(d->watches);
}

/* ------------------------------------------------------------------ */
/* Embedded use                                                         */

struct daemon *daemon_embed(uv_loop_t *loop, const char *root,
                            const char *name, void *priv)
{
    struct daemon *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    if (ss_strcpy(d->root, sizeof(d->root), root) < 0 ||
        ss_strcpy(d->name, sizeof(d->name), name) < 0) {
        free(d);
        return NULL;
    }
    d->loop = loop;
    d->priv = priv;
    d->embedded = 1;
    d->pidfd = -1;
    conf_defaults(&d->conf, d->root);
    return d;
}

void daemon_embed_free(struct daemon *d)
{
    if (d == NULL)
        return;
    d->stopping = 1;
    close_watches(d);
    if (d->pool) {
        pool_stop(d->pool);
        d->pool = NULL;
    }
    /* Close callbacks run in the loop's closing phase; a loop with
     * closing handles never blocks in poll, so NOWAIT turns are enough. */
    while (d->watch_mem > 0)
        uv_run(d->loop, UV_RUN_NOWAIT);
    free(d);
}

/* ------------------------------------------------------------------ */
/* Stop guard                                                           */

/* Format the guard's last word for the stage the stop is in.  All the
 * formatting happens here, in the stopping thread: when the time is up,
 * the guard only copies the line out. */
static void guard_vformat(struct daemon *d, const char *fmt, va_list ap) SS_PRINTF(2, 0);
static void guard_vformat(struct daemon *d, const char *fmt, va_list ap)
{
    char what[256];

    vsnprintf(what, sizeof(what), fmt, ap);
    snprintf(d->guard_line, sizeof(d->guard_line),
             "stop did not complete within its time limit (%lld ms); "
             "still %s; exiting now", (long long)d->guard_limit, what);
}

static void guard_set(struct daemon *d, const char *fmt, ...) SS_PRINTF(2, 3);
static void guard_set(struct daemon *d, const char *fmt, ...)
{
    if (!d->guard_on)
        return;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&d->guard_mu);
    guard_vformat(d, fmt, ap);
    pthread_mutex_unlock(&d->guard_mu);
    va_end(ap);
}

/*
 * The guard waits on its own mutex and condition only; guard_mu is never
 * held across anything that can block (guard_set holds it for a
 * vsnprintf).  When the time is up it must not take any other lock: the
 * thread it is there to cut short may be stuck inside a log write,
 * holding the log's mutex, on a file system that hangs.  So no log_error:
 * sslog_emergency writes the pre-formatted line to stderr, and to the log
 * file only if the log's mutex is free, and then the process exits.
 */
static void *guard_main(void *arg)
{
    struct daemon *d = arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (d->guard_ms % 1000) * 1000000;
    ts.tv_sec += (time_t)(d->guard_ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);

    pthread_mutex_lock(&d->guard_mu);
    while (!d->guard_done) {
        int r = pthread_cond_timedwait(&d->guard_cv, &d->guard_mu, &ts);
        if (r == ETIMEDOUT && !d->guard_done) {
            char line[sizeof(d->guard_line)];
            memcpy(line, d->guard_line, sizeof(line));
            pthread_mutex_unlock(&d->guard_mu);
            sslog_emergency(sslog_default, SSLOG_ERROR, __FILE__, __LINE__, line);
            /* The pid lock dies with the process and the ready file is
             * already gone; claimed work left in work/ is returned by
             * the next start's recovery. */
            _exit(1);
        }
    }
    pthread_mutex_unlock(&d->guard_mu);
    return NULL;
}

static void guard_format(struct daemon *d, const char *fmt, ...) SS_PRINTF(2, 3);
static void guard_format(struct daemon *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    guard_vformat(d, fmt, ap);
    va_end(ap);
}

static void guard_start(struct daemon *d)
{
    int64_t t = d->conf.daemon_stop_timeout > 0 ? d->conf.daemon_stop_timeout
                                                : STOP_TIMEOUT_DEF;
    /* Exit a little before the limit: whoever waits for us (sitectl,
     * systemd) uses the same limit and would otherwise kill us first,
     * without a word in the log about what was stuck. */
    int64_t margin = t / 10 < 1000 ? t / 10 : 1000;
    d->guard_ms = t - margin;
    d->guard_limit = t;
    d->guard_done = 0;
    guard_format(d, "starting to stop");     /* no guard thread yet */

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->guard_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&d->guard_mu, NULL);

    /* The guard must never take a signal meant for the loop. */
    int r = ss_thread_create(&d->guard, guard_main, d);
    if (r < 0) {
        log_warn("cannot start the stop guard thread: %s; the stop "
                 "is not time limited", strerror(-r));
        pthread_cond_destroy(&d->guard_cv);
        pthread_mutex_destroy(&d->guard_mu);
        return;
    }
    d->guard_on = 1;
}

static void guard_stop(struct daemon *d)
{
    if (!d->guard_on)
        return;
    pthread_mutex_lock(&d->guard_mu);
    d->guard_done = 1;
    pthread_cond_signal(&d->guard_cv);
    pthread_mutex_unlock(&d->guard_mu);
    pthread_join(d->guard, NULL);
    pthread_cond_destroy(&d->guard_cv);
    pthread_mutex_destroy(&d->guard_mu);
    d->guard_on = 0;
}

/* ------------------------------------------------------------------ */
/* Ready file                                                           */

/* Build the ready file and rename it into place if it changed.  It is a
 * runtime file, rebuilt by every start, so it is not fsync'ed; the
 * rename alone keeps a reader from seeing half of it. */
static int ready_write(struct daemon *d)
{
    struct sbuf b;
    ss_sbuf_init(&b);
    int r = ss_sbuf_addf(&b, "pid=%ld\nstarted=%s\nready=1\n",
                         (long)getpid(), d->started);
    if (r == 0 && d->ops->status) {
        char *st = calloc(1, STATUS_MAX);
        if (st == NULL) {
            r = -ENOMEM;
        } else {
            d->ops->status(d, st, STATUS_MAX);
            st[STATUS_MAX - 1] = '\0';
            size_t n = strlen(st);
            r = ss_sbuf_add(&b, st, n);
            if (r == 0 && n > 0 && st[n - 1] != '\n')
                r = ss_sbuf_adds(&b, "\n");
            free(st);
        }
    }
    if (r == 0 && d->pool)
        r = ss_sbuf_addf(&b, "queued=%zu\nrunning=%zu\n", pool_queued(d->pool),
                         pool_running(d->pool));
    if (r < 0) {
        ss_sbuf_free(&b);
        return r;
    }
    if (d->ready && d->ready_last && strcmp(d->ready_last, b.data) == 0) {
        ss_sbuf_free(&b);
        return 0;
    }

    int fd = open(d->readytmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        r = -errno;
    } else {
        r = ss_write_all(fd, b.data, b.len);
        if (close(fd) < 0 && r == 0)
            r = -errno;
        if (r == 0 && rename(d->readytmp, d->readypath) < 0)
            r = -errno;
        if (r < 0)
            unlink(d->readytmp);
    }
    if (r < 0) {
        log_error("cannot write %s: %s", d->readypath, strerror(-r));
        ss_sbuf_free(&b);
        return r;
    }
    free(d->ready_last);
    d->ready_last = b.data;     /* keep it to compare with the next one */
    d->ready = 1;
    return 0;
}

static void ready_remove(struct daemon *d)
{
    if (unlink(d->readypath) < 0 && errno != ENOENT)
        log_warn("cannot remove %s: %s", d->readypath, strerror(errno));
    unlink(d->readytmp);
    d->ready = 0;
}

static void on_status_timer(uv_timer_t *h)
{
    struct daemon *d = h->data;
    if (!d->stopping && d->ready)
        ready_write(d);
}

static void on_watchdog(uv_timer_t *h)
{
    ss_notify("WATCHDOG=1");
}

/* ------------------------------------------------------------------ */
/* Signals: stop and reload                                             */

static void stop_begin(struct daemon *d, const char *why)
{
    d->stopping = 1;
    guard_start(d);
    /* No longer serving: say so before anything else. */
    ready_remove(d);
    ss_notify("STOPPING=1");
    log_info("%s stopping (%s)", d->name, why);
    sm_emit(SM_DAEMON_STOPPING, 0, NULL, d->name, why, (const char *)NULL);
    /* The rest runs in daemon_main once uv_run returns: pool_stop() and
     * the final loop run must not be nested inside a callback. */
    uv_stop(d->loop);
}

static void reload(struct daemon *d)
{
    struct ss_conf *nc = malloc(sizeof(*nc));
    char err[SS_ERR_MAX] = "";
    int nwarn = 0;
    int r = nc ? conf_load(nc, d->root, &nwarn, err, sizeof(err)) : -ENOMEM;
    if (r < 0) {
        if (err[0] == '\0')
            snprintf(err, sizeof(err), "%s", strerror(-r));
        log_error("site.conf not reloaded, keeping the running "
                  "configuration: %s", err);
        sm_emit(SM_CONFIG_BAD, -r, NULL, err, (const char *)NULL);
        free(nc);
        return;
    }
    d->conf = *nc;
    free(nc);
    if (sslog_default) {
        sslog_set_max_size(sslog_default, d->conf.log_max_size);
        sslog_reopen(sslog_default);
    }
    sm_set_identity2(d->root, d->conf.site_code, d->name, d->conf.site_machine);
    if (d->ops->reload)
        d->ops->reload(d);
    if (nwarn > 0)
        log_info("configuration reloaded (%d warnings)", nwarn);
    else
        log_info("configuration reloaded");
    char path[SS_PATH_MAX];
    if (ss_path(path, sizeof(path), "%s/site.conf", d->root) < 0)
        ss_strcpy(path, sizeof(path), "site.conf");
    sm_emit(SM_CONFIG_RELOADED, 0, NULL, d->name, path, (const char *)NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (signum == SIGHUP) {
        if (!d->stopping)
            reload(d);
        return;
    }
    if (d->stopping) {
        log_info("%s received while stopping; already stopping", strsignal(signum));
        return;
    }
    stop_begin(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void block_signals(int how, sigset_t *old)
{
    sigset_t s;
    sigemptyset(&s);
    for (size_t i = 0; i < SS_ARRAY_LEN(stop_signals); i++)
        sigaddset(&s, stop_signals[i]);
    pthread_sigmask(how, &s, old);
}

/* ------------------------------------------------------------------ */
/* Closing down                                                         */

static void close_runtime_handles(struct daemon *d)
{
    if (d->have_signals) {
        uv_close((uv_handle_t *)&d->sig_term, NULL);
        uv_close((uv_handle_t *)&d->sig_int, NULL);
        uv_close((uv_handle_t *)&d->sig_hup, NULL);
        d->have_signals = 0;
        /* libuv restores the default action once its last handle for a
         * signal is gone: a late SIGTERM would then kill a process that
         * is about to exit cleanly.  Keep them blocked instead. */
        block_signals(SIG_BLOCK, NULL);
    }
    if (d->have_status) {
        uv_close((uv_handle_t *)&d->status_timer, NULL);
        d->have_status = 0;
    }
    if (d->have_watchdog) {
        uv_close((uv_handle_t *)&d->watchdog_timer, NULL);
        d->have_watchdog = 0;
    }
}

struct stray {
    struct daemon *d;
    int            n;
    int            warn;
};

static void close_stray(uv_handle_t *h, void *arg)
{
    struct stray *s = arg;
    if (uv_is_closing(h))
        return;
    s->n++;
    if (s->warn)
        log_warn("a %s handle was still open after stop; closing it",
                 uv_handle_type_name(uv_handle_get_type(h)));
    uv_close(h, NULL);
}

/* Everything after the loop stopped: the daemon's stop(), watches, the
 * pool, our handles, then a loop run that closes every handle. */
static void stop_finish(struct daemon *d, int call_stop)
{
    if (call_stop && d->ops->stop) {
        guard_set(d, "in the stop handler of %s", d->name);
        d->ops->stop(d);
    }
    close_watches(d);
    if (d->pool) {
        guard_set(d, "waiting for the worker pool (%zu jobs running, %zu queued)",
                  pool_running(d->pool), pool_queued(d->pool));
        pool_stop(d->pool);
        d->pool = NULL;
    }
    close_runtime_handles(d);
    /* A handle the daemon forgot would keep uv_run below from ever
     * returning; close it, and say so, since that is a bug to fix. */
    struct stray s = { d, 0, call_stop };
    uv_walk(d->loop, close_stray, &s);
    guard_set(d, "closing libuv handles and requests");
    uv_run(d->loop, UV_RUN_DEFAULT);
    int r = uv_loop_close(d->loop);
    if (r < 0)
        log_error("the event loop did not close: %s", uv_strerror(r));
    guard_stop(d);
}

/* A start that failed: no stop() (the daemon never started), but what
 * start() left (watches, the pool, handles) is closed just the same, and
 * within the same time limit. */
static void stop_failed_start(struct daemon *d)
{
    d->stopping = 1;
    guard_start(d);
    stop_finish(d, 0);
}

/* ------------------------------------------------------------------ */
/* daemon_main                                                          */

static void usage(FILE *f, const char *name)
{
    fprintf(f,
            "usage: %s [--root DIR]\n"
            "       %s --version | --help\n"
            "\n"
            "Run the sitesrv %s daemon for the site at DIR (default: $SITESRV_ROOT).\n"
            "SIGTERM or SIGINT stops it, SIGHUP reloads site.conf and reopens its log.\n",
            name, name, name);
}

static int mkdir_if_missing(const char *path)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void watchdog_setup(struct daemon *d)
{
    const char *usec = getenv("WATCHDOG_USEC");
    const char *wpid = getenv("WATCHDOG_PID");
    if (usec == NULL || usec[0] == '\0')
        return;
    if (wpid && wpid[0] && strtol(wpid, NULL, 10) != (long)getpid())
        return;                     /* meant for another process */
    char *end;
    errno = 0;
    unsigned long long us = strtoull(usec, &end, 10);
    if (errno || *end || us == 0) {
        log_warn("ignoring WATCHDOG_USEC=%s: not a number of microseconds", usec);
        return;
    }
    uint64_t ms = us / 2000;        /* half the interval */
    if (ms == 0)
        ms = 1;
    if (uv_timer_init(d->loop, &d->watchdog_timer) < 0)
        return;
    d->watchdog_timer.data = d;
    d->have_watchdog = 1;
    uv_timer_start(&d->watchdog_timer, on_watchdog, ms, ms);
}

int daemon_main(int argc, char **argv, const struct daemon_ops *ops, void *priv)
{
    const char *name = ops->name;
    const char *root_arg = NULL;
    int64_t t0 = ss_now_ms();
    char nofsync[32] = "";
    int had_nofsync = 0;

    /* Before anything else: a daemon never runs without fsync.  sitectl
     * passes its environment on, so a SITESRV_UNSAFE_NOFSYNC=1 meant for
     * a test would otherwise reach the daemons.  The cache of
     * ss_fsync_enabled() is reset in case something read it already. */
    const char *nf = getenv(SS_NOFSYNC_ENV);
    if (nf != NULL) {
        had_nofsync = 1;
        snprintf(nofsync, sizeof(nofsync), "%s", nf);
        unsetenv(SS_NOFSYNC_ENV);
        ss_fsync_reset();
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--root") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: --root needs a directory\n", name);
                usage(stderr, name);
                return 2;
            }
            root_arg = argv[++i];
        } else if (strncmp(a, "--root=", 7) == 0) {
            root_arg = a + 7;
        } else if (strcmp(a, "--version") == 0) {
            printf("%s (sitesrv) %s\n", name, SS_VERSION);
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout, name);
            return 0;
        } else {
            fprintf(stderr, "%s: unknown argument '%s'\n", name, a);
            usage(stderr, name);
            return 2;
        }
    }
    if (root_arg == NULL || root_arg[0] == '\0')
        root_arg = getenv("SITESRV_ROOT");
    if (root_arg == NULL || root_arg[0] == '\0') {
        fprintf(stderr, "%s: no site root: give --root DIR or set SITESRV_ROOT\n", name);
        usage(stderr, name);
        return 2;
    }

    struct daemon *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        fprintf(stderr, "<3>%s: out of memory\n", name);
        return 1;
    }
    d->ops = ops;
    d->priv = priv;
    d->pidfd = -1;
    d->loop = &d->own_loop;
    int rc = 1;
    char err[SS_ERR_MAX] = "";

    /* Hold stop and reload signals until the loop can take them: a
     * SIGTERM that arrives while we start must stop us cleanly, not kill
     * us half-way (the default action). */
    block_signals(SIG_BLOCK, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (ss_strcpy(d->name, sizeof(d->name), name) < 0) {
        fprintf(stderr, "<3>%s: daemon name too long\n", name);
        goto out;
    }
    char *real = realpath(root_arg, NULL);
    if (real == NULL) {
        fprintf(stderr, "<3>%s: site root %s: %s\n", name, root_arg, strerror(errno));
        goto out;
    }
    int r = ss_strcpy(d->root, sizeof(d->root), real);
    free(real);
    if (r < 0) {
        fprintf(stderr, "<3>%s: site root %s: path too long\n", name, root_arg);
        goto out;
    }
    ss_fmt_time_iso(t0, d->started, sizeof(d->started));
    snprintf(d->pidstr, sizeof(d->pidstr), "%ld", (long)getpid());

    r = conf_load(&d->conf, d->root, NULL, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "<3>%s: %s\n", name, err[0] ? err : strerror(-r));
        goto out;
    }

    char dir[SS_PATH_MAX];
    if (ss_path(dir, sizeof(dir), "%s/run", d->root) < 0 ||
        ss_path(d->pidpath, sizeof(d->pidpath), "%s/run/%s.pid", d->root, name) < 0 ||
        ss_path(d->readypath, sizeof(d->readypath), "%s/run/%s.ready", d->root, name) < 0 ||
        ss_path(d->readytmp, sizeof(d->readytmp), "%s/run/.%s.ready.tmp", d->root, name) < 0) {
        fprintf(stderr, "<3>%s: site root path too long\n", name);
        goto out;
    }
    if ((r = mkdir_if_missing(dir)) < 0) {
        fprintf(stderr, "<3>%s: cannot create %s: %s\n", name, dir, strerror(-r));
        goto out;
    }
    r = pidfile_acquire(d->pidpath, &d->pidfd);
    if (r == -EAGAIN) {
        pid_t other = pidfile_owner(d->pidpath);
        fprintf(stderr, "<3>%s: already running (pid %ld)\n", name, (long)other);
        goto out;
    }
    if (r < 0) {
        fprintf(stderr, "<3>%s: cannot lock %s: %s\n", name, d->pidpath, strerror(-r));
        goto out;
    }
    /* A ready file left by a killed instance would announce us before we
     * serve: it goes now that the lock says we are the only instance. */
    ready_remove(d);

    if (ss_path(dir, sizeof(dir), "%s/logs", d->root) == 0)
        mkdir_if_missing(dir);
    sslog_default = sslog_open(dir, name, name, d->conf.log_max_size);
    sm_set_identity2(d->root, d->conf.site_code, name, d->conf.site_machine);
    if (had_nofsync)
        log_warn("ignoring %s=%s from the environment: daemons always fsync",
                 SS_NOFSYNC_ENV, nofsync);

    r = uv_loop_init(d->loop);
    if (r < 0) {
        log_error("cannot create the event loop: %s", uv_strerror(r));
        goto out;
    }
    uv_signal_t *sigs[] = { &d->sig_term, &d->sig_int, &d->sig_hup };
    for (size_t i = 0; i < SS_ARRAY_LEN(sigs); i++) {
        uv_signal_init(d->loop, sigs[i]);
        sigs[i]->data = d;
    }
    d->have_signals = 1;
    for (size_t i = 0; i < SS_ARRAY_LEN(sigs); i++) {
        r = uv_signal_start(sigs[i], on_signal, stop_signals[i]);
        if (r < 0) {
            log_error("cannot handle signal %d: %s", stop_signals[i],
                      uv_strerror(r));
            stop_failed_start(d);
            goto out;
        }
    }
    block_signals(SIG_UNBLOCK, NULL);
    uv_timer_init(d->loop, &d->status_timer);
    d->status_timer.data = d;
    d->have_status = 1;
    watchdog_setup(d);

    r = ops->start ? ops->start(d) : 0;
    if (r != 0) {
        log_error("start failed (%s); exiting",
                  r < 0 ? strerror(-r) : "error");
        stop_failed_start(d);
        goto out;
    }

    /* Serving from here on: announce it.  A signal that came during
     * start() is waiting in the loop and will stop us right away. */
    if (ready_write(d) < 0) {
        log_error("cannot announce readiness; stopping");
        stop_begin(d, "ready file not written");
        stop_finish(d, 1);
        goto out;
    }
    char note[128];
    snprintf(note, sizeof(note), "READY=1\nSTATUS=serving\nMAINPID=%ld", (long)getpid());
    ss_notify(note);
    log_info("%s ready (pid %ld)", name, (long)getpid());
    sm_emit(SM_DAEMON_STARTED, 0, NULL, name, SS_VERSION, d->pidstr, (const char *)NULL);
    uv_timer_start(&d->status_timer, on_status_timer, READY_REFRESH_MS, READY_REFRESH_MS);

    uv_run(d->loop, UV_RUN_DEFAULT);
    if (!d->stopping) {
        /* Our signal handles are always active, so this means someone
         * called uv_stop() on our loop: treat it as a stop request. */
        log_warn("the event loop ended without a stop signal");
        stop_begin(d, "event loop ended");
    }
    stop_finish(d, 1);
    log_info("%s stopped", name);
    rc = 0;

out:
    if (d->pidfd >= 0) {
        /* Unlink while the lock is still held, so that no other instance
         * can have locked the file we remove (pidfile_acquire checks that
         * the file it locked is still the one at the path). */
        unlink(d->pidpath);
        close(d->pidfd);
    }
    if (sslog_default) {
        sslog_close(sslog_default);
        sslog_default = NULL;
    }
    free(d->ready_last);
    free(d);
    /* SIGTERM, SIGINT and SIGHUP stay blocked: the caller exits with rc,
     * and a signal that comes now must not turn that status into death
     * by signal (see close_runtime_handles). */
    return rc;
}
