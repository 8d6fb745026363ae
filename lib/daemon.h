/*
 * daemon.h - the runtime every sitesrv daemon shares (SPEC 4.3).
 *
 *   daemon_main(argc, argv, &ops)   parse --root, lock run/<name>.pid,
 *                                    load site.conf, open logs/<name>.log,
 *                                    run ops.start on a libuv loop, then
 *                                    announce readiness (run/<name>.ready
 *                                    and READY=1 to $NOTIFY_SOCKET) only
 *                                    after start() returned 0;
 *                                    SIGTERM/SIGINT -> ops.stop, pool
 *                                    drained, claimed work returned, exit
 *                                    well within the stop timeout;
 *                                    SIGHUP -> reload site.conf, reopen
 *                                    logs, ops.reload.  First of all it
 *                                    removes SITESRV_UNSAFE_NOFSYNC from
 *                                    its environment (with a warning):
 *                                    a daemon always fsyncs.
 *
 * Inbox watching (daemon_watch): uv_fs_event on the directory is only a
 * hint (inotify reports a file at creation and drops events on overflow);
 * the scan is the truth.  A watch coalesces events into one callback per
 * loop turn, fires once at start, and again every `rescan` ms.
 *
 * sd_notify is written by hand to $NOTIFY_SOCKET (no libsystemd):
 * READY=1, STATUS=..., STOPPING=1, and WATCHDOG=1 every half
 * $WATCHDOG_USEC when that is set.
 */
#ifndef SITESRV_DAEMON_H
#define SITESRV_DAEMON_H

#include <uv.h>
#include "common.h"
#include "conf.h"
#include "pool.h"

struct daemon;

struct daemon_ops {
    const char *name;                        /* "statmgr": pid, ready, log names */
    int  (*start)(struct daemon *d);         /* 0 = serving; else exit 1 */
    void (*stop)(struct daemon *d);          /* stop taking work; close handles */
    void (*reload)(struct daemon *d);        /* after site.conf was reloaded */
    /* Append "key=value" status lines for run/<name>.ready (may be NULL). */
    void (*status)(struct daemon *d, char *buf, size_t len);
};

/* Returns the exit status (0 stopped in order, 1 failure, 2 usage) for the
 * caller to exit with: `return daemon_main(argc, argv, &ops, priv);`.
 * SIGTERM, SIGINT and SIGHUP are left blocked, so that a late signal
 * cannot turn that status into death by signal. */
int daemon_main(int argc, char **argv, const struct daemon_ops *ops, void *priv);

uv_loop_t            *daemon_loop(struct daemon *d);
const struct ss_conf *daemon_conf(struct daemon *d);
const char           *daemon_root(struct daemon *d);
const char           *daemon_name(struct daemon *d);
void                 *daemon_priv(struct daemon *d);
int                   daemon_stopping(struct daemon *d);
/* A worker pool owned by the runtime: created on first use with nthreads,
 * stopped (drained, jobs cancelled) after ops.stop. */
struct pool          *daemon_pool(struct daemon *d, int nthreads);

/* sd_notify(3) by hand.  0, or -errno; no-op when $NOTIFY_SOCKET unset. */
int ss_notify(const char *state);

/* Pid file: lock <path> (fcntl write lock, held for the process's life)
 * and write our pid.  -EAGAIN if another live process holds it. */
int pidfile_acquire(const char *path, int *fd);
/* Pid of the process holding the lock on path; 0 if none (or no file,
 * or it cannot be read).  Never call it on a pid file this process holds:
 * closing any descriptor of a file drops the process's fcntl locks. */
pid_t pidfile_owner(const char *path);

struct daemon_watch;
typedef void (*daemon_watch_cb)(struct daemon_watch *w, void *arg);
/* Watch directory dir: cb(w, arg) once soon, after filesystem events
 * (coalesced), and every rescan_ms (0: no periodic rescan).  At most one
 * callback per loop turn; none once the daemon is stopping.  A directory
 * that cannot be watched (yet) is logged and rescanned only.  NULL on
 * failure (logged). */
struct daemon_watch *daemon_watch(struct daemon *d, const char *dir,
                                  int64_t rescan_ms, daemon_watch_cb cb, void *arg);
/* Ask for another callback soon (more work was left in the directory). */
void daemon_watch_kick(struct daemon_watch *w);
void daemon_watch_set_rescan(struct daemon_watch *w, int64_t rescan_ms);
/* Closed automatically at stop; may be closed earlier. */
void daemon_watch_close(struct daemon_watch *w);
/* The directory a watch looks at (for the callback's scan). */
const char *daemon_watch_dir(struct daemon_watch *w);

/* A runtime bound to a loop the caller owns, without arguments, pid file,
 * log, signals or ready file: for unit tests and tools that want
 * daemon_watch() and daemon_pool().  conf holds the defaults for root.
 * daemon_embed_free() closes the watches and the pool and runs the loop
 * (UV_RUN_NOWAIT) until their handles are closed; call it from outside
 * any callback.  The caller closes its loop afterwards. */
struct daemon *daemon_embed(uv_loop_t *loop, const char *root,
                            const char *name, void *priv);
void daemon_embed_free(struct daemon *d);

#endif
