/*
 * sitebkup - the Site Backup daemon.
 *
 * SUMMARY
 *   Runs the backup control file (SPEC 6) on its schedule (backup.daily_at)
 *   and when asked (`sitectl backup now`, a request in sitebkup.box), and
 *   keeps backup.keep backups.
 *
 * DESCRIPTION
 *   The control file is inboxes/sitebkup.box/sitebkup.ctl when it exists,
 *   else the default one (lib/bkctl.c: no [Stop], the daemons keep
 *   running).  It is read and parsed afresh for every run, strictly: a
 *   file that does not parse fails the run before anything happens (8502
 *   naming the line).  The run itself (lib/backup.c) happens on a worker
 *   thread; the loop keeps answering signals, so a stop interrupts it
 *   between files (the unfinished backup is removed) within the stop
 *   limit.
 *
 *   Requests: every `<name>.bkt` waiting in sitebkup.box when a run starts
 *   is claimed and answered by that run (one backup for several requests
 *   made meanwhile); each gets a result file results/<name>.res (record
 *   kind "backupres": status, path, error, finished) that `sitectl backup
 *   now --wait` reads.  A request that does not parse is quarantined.
 *
 *   [Stop] and [Start] commands run `sitectl --root ROOT stop|start NAME`
 *   (the sitectl beside this daemon: ../../bin/sitectl), which return once
 *   the daemon has exited or is ready: the run waits on readiness, never
 *   on a sleep (SPEC 4.3).  The child gets a clean signal mask and default
 *   dispositions, since this daemon's threads block its signals.
 *
 * DIAGNOSTICS
 *   logs/sitebkup.log; status messages 8500 started, 8501 succeeded, 8502
 *   failed.  The ready file shows running=, succeeded=, failed=, last=.
 *   Exit status 0 after an orderly stop, 1 when it cannot start.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "bkctl.h"
#include "daemon.h"
#include "fsutil.h"
#include "inbox.h"
#include "log.h"
#include "record.h"
#include "statmsg.h"

extern char **environ;

#define CTL_NAME     "sitebkup.ctl"
#define RESULTS_DIR  "results"
#define MAX_REQS     64            /* requests one run answers */

struct sitebkup {
    struct daemon *d;
    char     root[SS_PATH_MAX];
    char     site[SS_SITE_LEN + 1];
    char     sitectl[SS_PATH_MAX];   /* "" when not found */
    struct inbox box;
    struct pool *pool;
    struct daemon_watch *watch;
    uv_timer_t daily;
    int      daily_open;
    volatile int stop_flag;
    int      running;
    int      scheduled_due;          /* the schedule fired during a run */
    int      sched_day;              /* local YYYYMMDD of the last scheduled run */
    uint64_t succeeded, failed;
    char     last[SS_PATH_MAX];
};

struct bjob {
    struct pool_job job;
    struct sitebkup *b;
    char     why[32];
    /* The configuration as the run began (the loop may reload it). */
    char     destination[SS_PATH_MAX];
    long long keep;
    int      resume;               /* start what an interrupted run stopped */
    char     reqs[MAX_REQS][UNIQ_NAME_MAX];
    int      nreqs;
    /* results */
    int      rc;
    char     path[SS_PATH_MAX];
    char     err[SS_ERR_MAX + 256];
    int64_t  ms;
    long long files, bytes;
};

static int has_suffix(const char *name, const char *sfx)
{
    size_t n = strlen(name), k = strlen(sfx);
    return n > k && strcmp(name + n - k, sfx) == 0;
}

/* ---------------------------------------------------------------- sitectl */

/* Run sitectl --root ROOT VERB NAME and wait for it. */
static int run_sitectl(struct sitebkup *b, const char *verb, const char *name, char *err,
                       size_t errlen)
{
    char *argv[] = { "sitectl", "--root", b->root, (char *)verb, (char *)name, NULL };
    posix_spawnattr_t at;
    sigset_t none, defs;
    pid_t pid;
    int rc, st;

    if (!b->sitectl[0]) {
        ss_seterr(err, errlen, "cannot %s %s: sitectl is not installed beside sitebkup", verb,
                  name);
        return -ENOENT;
    }
    sigemptyset(&none);
    sigemptyset(&defs);
    sigaddset(&defs, SIGTERM);
    sigaddset(&defs, SIGINT);
    sigaddset(&defs, SIGHUP);
    sigaddset(&defs, SIGCHLD);
    sigaddset(&defs, SIGPIPE);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &defs);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    /* Not this daemon's service manager's variables: the daemons sitectl
     * starts are not ours to announce. */
    size_t ne = 0;
    for (char **e = environ; *e; e++)
        ne++;
    char **envp = calloc(ne + 1, sizeof *envp);
    if (!envp) {
        posix_spawnattr_destroy(&at);
        ss_seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ne = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "NOTIFY_SOCKET=", 14) != 0 && strncmp(*e, "WATCHDOG_", 9) != 0 &&
            strncmp(*e, "LISTEN_", 7) != 0)
            envp[ne++] = *e;
    rc = posix_spawn(&pid, b->sitectl, NULL, &at, argv, envp);
    free(envp);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        ss_seterr(err, errlen, "cannot run %s: %s", b->sitectl, strerror(rc));
        return -rc;
    }
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            int e = errno;
            ss_seterr(err, errlen, "cannot wait for sitectl %s %s: %s", verb, name, strerror(e));
            return -e;
        }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        ss_seterr(err, errlen, "sitectl %s %s failed (%s %d)", verb, name,
                  WIFEXITED(st) ? "exit status" : "signal",
                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return -EIO;
    }
    log_info("sitectl %s %s: done", verb, name);
    return 0;
}

static int stop_daemon(void *arg, const char *name, char *err, size_t errlen)
{
    return run_sitectl(arg, "stop", name, err, errlen);
}

static int start_daemon(void *arg, const char *name, char *err, size_t errlen)
{
    return run_sitectl(arg, "start", name, err, errlen);
}

/* ---------------------------------------------------------------- a run */

/* run/sitebkup.stopped names the daemons a control file's [Stop] stops,
 * from before the [Stop] until the run has started them again: a
 * sitebkup killed (or stopped past its limit) in between starts them at
 * its next start.  ctl NULL removes it. */
static void note_stopped(struct sitebkup *b, const struct bkctl *ctl)
{
    char path[SS_PATH_MAX], names[256] = "";

    if (ss_path(path, sizeof path, "%s/run/sitebkup.stopped", b->root) < 0)
        return;
    if (!ctl) {
        (void)unlink(path);
        return;
    }
    for (int i = 0; i < ctl->n; i++)
        if (ctl->cmd[i].op == BK_STOP)
            for (int k = 0; k < ctl->cmd[i].ndaemons; k++) {
                size_t l = strlen(names);
                (void)snprintf(names + l, sizeof names - l, "%s\n", ctl->cmd[i].daemon_order[k]);
            }
    if (names[0]) {
        int rc = ss_write_file_atomic(path, names, strlen(names), 0640);
        if (rc < 0)
            log_warn("cannot write %s: %s", path, strerror(-rc));
    }
}

/* Start the daemons an interrupted run had stopped (run/sitebkup.stopped). */
static void resume_stopped(struct bjob *bj)
{
    struct sitebkup *b = bj->b;
    char path[SS_PATH_MAX], *buf = NULL, *save = NULL;
    size_t len = 0;

    if (ss_path(path, sizeof path, "%s/run/sitebkup.stopped", b->root) < 0 ||
        ss_read_file(AT_FDCWD, path, 4096, &buf, &len) < 0)
        return;
    for (char *name = strtok_r(buf, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
        char err[SS_ERR_MAX];
        if (strcmp(name, "distmgr") && strcmp(name, "sender") && strcmp(name, "despool") &&
            strcmp(name, "statmgr"))
            continue;
        log_warn("an interrupted backup had stopped %s: starting it", name);
        if (run_sitectl(b, "start", name, err, sizeof err) < 0)
            log_error("%s", err);
    }
    free(buf);
    (void)unlink(path);
    bj->rc = 0;
}

static void bjob_work(struct pool_job *j)
{
    struct bjob *bj = (struct bjob *)j;
    struct sitebkup *b = bj->b;
    struct bkctl *ctl = NULL;
    struct bkctl_env env = { b->site, b->root, bj->destination };
    char *text = NULL, perr[SS_ERR_MAX];
    size_t len = 0;
    int64_t t0 = ss_mono_ms();
    int own = 1;

    if (bj->resume) {
        resume_stopped(bj);
        return;
    }
    if (!(ctl = calloc(1, sizeof *ctl))) {
        bj->rc = -ENOMEM;
        ss_seterr(bj->err, sizeof bj->err, "out of memory");
        return;
    }
    bj->rc = ss_read_file(b->box.dirfd, CTL_NAME, BKCTL_MAX_SIZE, &text, &len);
    if (bj->rc == -ENOENT) {
        own = 0;
        text = (char *)bkctl_default;
        len = strlen(bkctl_default);
        bj->rc = 0;
    }
    if (bj->rc < 0) {
        ss_seterr(bj->err, sizeof bj->err, "cannot read the control file %s/%s: %s",
                  b->box.path, CTL_NAME, strerror(-bj->rc));
        goto out;
    }
    if ((bj->rc = bkctl_parse(text, len, &env, ctl, perr, sizeof perr)) < 0) {
        ss_seterr(bj->err, sizeof bj->err, "control file %s: %s",
                  own ? CTL_NAME : "(default)", perr);
        goto out;
    }
    {
        const char *attrs[] = { "Destination", ctl->destination, NULL };
        sm_emit(SM_BACKUP_STARTED, 0, attrs, b->site, ctl->destination, bj->why, NULL);
        log_info("backup of site %s into %s (%s, control file %s)", b->site, ctl->destination,
                 bj->why, own ? CTL_NAME : "default");
    }
    struct backup_opts o = {
        .root = b->root, .site = b->site, .ctl = ctl, .stop = &b->stop_flag,
        .daemon_stop = stop_daemon, .daemon_start = start_daemon, .arg = b,
    };
    note_stopped(b, ctl);
    bj->rc = backup_run(&o, bj->path, sizeof bj->path, bj->err, sizeof bj->err);
    /* backup_run started again what it stopped -- unless sitebkup is
     * stopping: then the marker stays for the next start. */
    if (!b->stop_flag)
        note_stopped(b, NULL);
    if (bj->rc == 0) {
        struct backup_info *v = NULL;
        size_t n = 0;
        int gone = backup_prune_except(ctl->destination, b->site,
                                       bj->keep > 0 ? (int)bj->keep : 1, bj->path);
        if (gone > 0)
            log_info("removed %d older backups (backup.keep %lld)", gone, bj->keep);
        if (backup_list(ctl->destination, &v, &n) == 0)
            for (size_t i = 0; i < n; i++)
                if (strcmp(v[i].path, bj->path) == 0) {
                    bj->files = v[i].files;
                    bj->bytes = v[i].bytes;
                }
        free(v);
    }
out:
    bj->ms = ss_mono_ms() - t0;
    if (own)
        free(text);
    free(ctl);
}

/* results/<request without .bkt>.res, written whole (tmp + rename). */
static void write_result(struct sitebkup *b, const char *req, const struct bjob *bj)
{
    char dir[SS_PATH_MAX], path[SS_PATH_MAX], when[40], base[UNIQ_NAME_MAX];
    struct sbuf s;
    size_t l = strlen(req);

    (void)ss_strcpy(base, sizeof base, req);
    if (l > 4)
        base[l - 4] = '\0';
    if (ss_path(dir, sizeof dir, "%s/%s", b->box.path, RESULTS_DIR) < 0 ||
        ss_path(path, sizeof path, "%s/%s.res", dir, base) < 0)
        return;
    (void)ss_mkdir_p(dir, 0750);
    (void)ss_fmt_time_iso(ss_now_ms(), when, sizeof when);
    ss_sbuf_init(&s);
    if (rec_begin(&s, "backupres", 1) == 0 &&
        rec_add(&s, "status", bj->rc == 0 ? "succeeded" : "failed") == 0 &&
        rec_add(&s, "path", bj->rc == 0 ? bj->path : "") == 0 &&
        rec_add(&s, "error", bj->rc == 0 ? "" : bj->err) == 0 &&
        rec_add(&s, "finished", when) == 0 && rec_end(&s) == 0) {
        int rc = ss_write_file_atomic(path, s.data, s.len, 0640);
        if (rc < 0)
            log_warn("cannot write the result %s: %s", path, strerror(-rc));
    }
    ss_sbuf_free(&s);
}

/* Results nobody read (a `backup now` without --wait) go after a day. */
static void sweep_results(struct sitebkup *b)
{
    char dir[SS_PATH_MAX];
    struct dirent *de;
    time_t now = time(NULL);
    DIR *d;

    if (ss_path(dir, sizeof dir, "%s/%s", b->box.path, RESULTS_DIR) < 0 || !(d = opendir(dir)))
        return;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (!has_suffix(de->d_name, ".res") ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (now - st.st_mtime > 86400)
            (void)unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

static int local_day(time_t t)
{
    struct tm tm;

    localtime_r(&t, &tm);
    return (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

static void kick(struct sitebkup *b);
static void arm_daily(struct sitebkup *b);

static void bjob_done(struct pool_job *j, int cancelled)
{
    struct bjob *bj = (struct bjob *)j;
    struct sitebkup *b = bj->b;
    char dur[32], nf[24], nb[24];

    b->running = 0;
    if (bj->resume) {
        free(bj);
        if (!daemon_stopping(b->d))
            kick(b);
        return;
    }
    if (cancelled) {
        bj->rc = -EINTR;
        ss_seterr(bj->err, sizeof bj->err, "sitebkup stopped before the backup began");
    }
    ss_fmt_duration(bj->ms, dur, sizeof dur);
    if (bj->rc == 0) {
        b->succeeded++;
        (void)ss_strcpy(b->last, sizeof b->last, bj->path);
        (void)ss_fmt(nf, sizeof nf, "%lld", bj->files);
        (void)ss_fmt(nb, sizeof nb, "%lld", bj->bytes);
        log_info("backup %s complete: %lld files, %lld bytes, in %s", bj->path, bj->files,
                 bj->bytes, dur);
        const char *attrs[] = { "Backup", bj->path, NULL };
        sm_emit(SM_BACKUP_SUCCEEDED, 0, attrs, bj->path, nf, nb, dur, NULL);
    } else {
        b->failed++;
        log_error("backup failed: %s", bj->err);
        sm_emit(SM_BACKUP_FAILED, -bj->rc, NULL, bj->err, NULL);
    }
    for (int i = 0; i < bj->nreqs; i++) {
        if (bj->rc == -EINTR && daemon_stopping(b->d)) {
            /* Stopped: the request stays for the next start. */
            (void)inbox_return(&b->box, bj->reqs[i]);
            continue;
        }
        write_result(b, bj->reqs[i], bj);
        (void)inbox_done(&b->box, bj->reqs[i]);
    }
    free(bj);
    sweep_results(b);
    if (!daemon_stopping(b->d))
        kick(b);            /* more requests, or a schedule that fell due */
}

static void start_run(struct sitebkup *b, const char *why, struct inbox_entry *reqs, size_t n)
{
    struct bjob *bj = calloc(1, sizeof *bj);

    if (!bj) {
        log_error("out of memory: the backup (%s) is not run", why);
        return;
    }
    bj->b = b;
    (void)ss_strcpy(bj->why, sizeof bj->why, why);
    (void)ss_strcpy(bj->destination, sizeof bj->destination,
                    daemon_conf(b->d)->backup_destination);
    bj->keep = daemon_conf(b->d)->backup_keep;
    for (size_t i = 0; i < n && bj->nreqs < MAX_REQS; i++) {
        if (inbox_claim(&b->box, reqs[i].name) < 0)
            continue;
        (void)ss_strcpy(bj->reqs[bj->nreqs++], UNIQ_NAME_MAX, reqs[i].name);
    }
    bj->job.work = bjob_work;
    bj->job.done = bjob_done;
    b->running = 1;
    pool_submit(b->pool, &bj->job);
}

/* ---------------------------------------------------------------- requests */


/* A request is a record kind backupreq v1; anything else is quarantined. */
static int request_ok(struct sitebkup *b, const char *name, char *why, size_t len)
{
    char *buf = NULL;
    size_t n = 0;
    struct rec r;
    int rc = ss_read_file(b->box.dirfd, name, 4096, &buf, &n);

    if (rc < 0) {
        ss_seterr(why, len, "unreadable: %s", strerror(-rc));
        return rc == -ENOENT ? -ENOENT : 0;
    }
    static const struct rec_limits lim = { 4096, 4096, 8 };
    rc = rec_parse(&r, buf, n, &lim, why, len);
    if (rc == 0) {
        if (strcmp(r.kind, "backupreq") != 0 || r.version != 1) {
            ss_seterr(why, len, "not a backup request (kind %s version %d)", r.kind,
                      r.version);
            rc = -EBADMSG;
        }
        rec_free(&r);
    }
    free(buf);
    return rc == 0 ? 1 : 0;
}

static void watch_cb(struct daemon_watch *w, void *arg)
{
    struct sitebkup *b = arg;
    struct inbox_entry ents[MAX_REQS], ok[MAX_REQS];
    size_t n = 0, nok = 0;

    (void)w;
    if (b->running)
        return;             /* its done() looks again */
    if (inbox_scan(&b->box, ents, SS_ARRAY_LEN(ents), &n) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        char why[SS_ERR_MAX];
        if (strcmp(ents[i].name, CTL_NAME) == 0)
            continue;       /* the control file itself */
        if (ents[i].odd || !has_suffix(ents[i].name, ".bkt")) {
            if (ents[i].odd || has_suffix(ents[i].name, ".ctl"))
                (void)inbox_quarantine(&b->box, 0, ents[i].name,
                                       "not a backup request (<writer>-<32 hex>.bkt) nor "
                                       "sitebkup.ctl");
            continue;
        }
        int r = request_ok(b, ents[i].name, why, sizeof why);
        if (r == 1)
            ok[nok++] = ents[i];
        else if (r == 0)
            (void)inbox_quarantine(&b->box, 0, ents[i].name, why);
    }
    if (nok > 0)
        start_run(b, "request", ok, nok);
    else if (b->scheduled_due) {
        b->scheduled_due = 0;
        b->sched_day = local_day(time(NULL));
        start_run(b, "schedule", NULL, 0);
        arm_daily(b);
    }
}

static void kick(struct sitebkup *b)
{
    if (b->watch)
        daemon_watch_kick(b->watch);
}

/* ---------------------------------------------------------------- schedule */

/* Milliseconds until the next local minutes-after-midnight `at`, on a
 * later day than done_day (the day of the last scheduled run: the day
 * the clocks go back has its HH:MM twice, and runs once). */
static int64_t until_daily(int at, int done_day)
{
    time_t now = time(NULL);
    struct tm tm;

    localtime_r(&now, &tm);
    tm.tm_hour = at / 60;
    tm.tm_min = at % 60;
    tm.tm_sec = 0;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    if (t <= now || local_day(t) == done_day) {
        tm.tm_mday += 1;
        tm.tm_isdst = -1;
        t = mktime(&tm);
    }
    return (int64_t)(t - now) * 1000;
}

static void daily_cb(uv_timer_t *t)
{
    struct sitebkup *b = t->data;

    b->scheduled_due = 1;
    if (!b->running)
        kick(b);            /* watch_cb starts it */
}

static void arm_daily(struct sitebkup *b)
{
    int at = daemon_conf(b->d)->backup_daily_at;

    if (!b->daily_open)
        return;
    uv_timer_stop(&b->daily);
    if (at < 0)
        return;
    int64_t in = until_daily(at, b->sched_day);
    uv_timer_start(&b->daily, daily_cb, (uint64_t)(in > 0 ? in : 1000), 0);
    log_info("next scheduled backup in %lld s (backup.daily_at %02d:%02d)",
             (long long)(in / 1000), at / 60, at % 60);
}

/* ---------------------------------------------------------------- runtime */

static void find_sitectl(struct sitebkup *b)
{
    char self[SS_PATH_MAX], *slash;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

    b->sitectl[0] = '\0';
    if (n <= 0)
        return;
    self[n] = '\0';
    if (!(slash = strrchr(self, '/')))
        return;
    *slash = '\0';
    /* build/libexec/sitesrv/sitebkup -> build/bin/sitectl; installed the
     * same under PREFIX. */
    if (ss_path(b->sitectl, sizeof b->sitectl, "%s/../../bin/sitectl", self) < 0 ||
        access(b->sitectl, X_OK) < 0) {
        log_warn("sitectl not found beside sitebkup (%s): a control file's [Stop] and "
                 "[Start] will fail", b->sitectl);
        b->sitectl[0] = '\0';
    }
}

static int sitebkup_start(struct daemon *d)
{
    struct sitebkup *b = daemon_priv(d);
    const struct ss_conf *c = daemon_conf(d);
    size_t ret = 0, rm = 0;
    int rc;

    b->d = d;
    (void)ss_strcpy(b->root, sizeof b->root, daemon_root(d));
    (void)ss_strcpy(b->site, sizeof b->site, c->site_code);
    find_sitectl(b);
    if ((rc = inbox_open(&b->box, b->root, IB_SITEBKUP, b->site, 1)) < 0) {
        log_error("cannot open inbox sitebkup.box under %s/inboxes: %s", b->root,
                  strerror(-rc));
        return -1;
    }
    if ((rc = inbox_recover(&b->box, &ret, &rm)) < 0) {
        log_error("cannot recover %s: %s", b->box.path, strerror(-rc));
        return -1;
    }
    if (ret)
        log_info("%zu backup requests of an interrupted run returned to the inbox", ret);
    if (!(b->pool = daemon_pool(d, 1)))
        return -1;
    /* A run killed between its [Stop] and its [Start]: start those first. */
    char marker[SS_PATH_MAX];
    struct bjob *rj;
    if (ss_path(marker, sizeof marker, "%s/run/sitebkup.stopped", b->root) == 0 &&
        access(marker, F_OK) == 0 && (rj = calloc(1, sizeof *rj)) != NULL) {
        rj->b = b;
        rj->resume = 1;
        rj->job.work = bjob_work;
        rj->job.done = bjob_done;
        b->running = 1;
        pool_submit(b->pool, &rj->job);
    }
    uv_timer_init(daemon_loop(d), &b->daily);
    b->daily.data = b;
    b->daily_open = 1;
    arm_daily(b);
    if (!(b->watch = daemon_watch(d, b->box.path, 60000, watch_cb, b)))
        return -1;
    log_info("sitebkup serving site %s: backups into %s, keeping %lld", b->site,
             c->backup_destination, c->backup_keep);
    return 0;
}

static void sitebkup_reload(struct daemon *d)
{
    struct sitebkup *b = daemon_priv(d);

    arm_daily(b);
}

static void sitebkup_stop(struct daemon *d)
{
    struct sitebkup *b = daemon_priv(d);

    b->stop_flag = 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (b->daily_open) {
        uv_close((uv_handle_t *)&b->daily, NULL);
        b->daily_open = 0;
    }
}

static void sitebkup_status(struct daemon *d, char *buf, size_t len)
{
    struct sitebkup *b = daemon_priv(d);

    snprintf(buf, len, "running=%d\nsucceeded=%llu\nfailed=%llu\nlast=%s\n", b->running,
             (unsigned long long)b->succeeded, (unsigned long long)b->failed,
             b->last[0] ? b->last : "-");
}

static const struct daemon_ops ops = {
    .name = "sitebkup",
    .start = sitebkup_start,
    .stop = sitebkup_stop,
    .reload = sitebkup_reload,
    .status = sitebkup_status,
};

int main(int argc, char **argv)
{
    static struct sitebkup b = {
        .box = { .dirfd = -1, .tmpfd = -1, .workfd = -1, .corruptfd = -1 },
    };
    int r = daemon_main(argc, argv, &ops, &b);

    if (b.box.dirfd >= 0)
        inbox_close(&b.box);
    return r;
}
