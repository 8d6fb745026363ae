/*
 * NAME
 *   daemons.c - sitectl start, stop and status: running a site's daemons
 *   without systemd.
 *
 * SYNOPSIS
 *   cmd_start(), cmd_stop(), cmd_status()
 *   ctl_daemons[], ctl_daemon_known(), ctl_daemon_bin(),
 *   ctl_daemon_installed(), ctl_daemon_pid()
 *
 * DESCRIPTION
 *   The truth about a daemon is its pid lock (lib/daemon pidfile_owner):
 *   a pid file left by a killed daemon holds no lock, so it never prevents
 *   a start (SPEC 4.3).  A daemon is ready when run/<name>.ready names its
 *   pid; the runtime writes that file only once the daemon really serves.
 *
 *   start forks every daemon first and then waits for all of them, each
 *   on a condition - its ready file, its exit, or the timeout - polled
 *   every 5 ms; nothing waits for a fixed time, and no daemon waits for
 *   another.  A daemon's stdout and stderr go to run/<name>.stderr so that
 *   one that dies at start-up can be explained.  If two `sitectl start`
 *   race, the loser's child exits on the lock and the loser then simply
 *   waits for the winner's daemon to be ready.
 *
 *   stop sends SIGTERM to all named daemons, then waits until each has
 *   released its lock, up to daemon.stop_timeout + 5 s; --force sends
 *   SIGKILL to what is left.
 *
 * DIAGNOSTICS
 *   One line per daemon on stdout; failures on stderr with the tail of
 *   the daemon's stderr file.  Exit 1 if any daemon failed to start or
 *   stop, 2 for an unknown daemon or option.  status exits 1 when site.conf
 *   is missing (nothing printed on stdout) or does not load (the report is
 *   printed all the same, without a site code; --json has "site": null and
 *   "error"), the error on stderr naming the root.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "daemon.h"
#include "sitectl.h"

const char *const ctl_daemons[] = { "distmgr", "sender", "despool", "statmgr", "sitebkup" };
const size_t ctl_ndaemons = SS_ARRAY_LEN(ctl_daemons);

#define POLL_MS 5

int ctl_daemon_known(const char *name)
{
    for (size_t i = 0; i < ctl_ndaemons; i++)
        if (strcmp(ctl_daemons[i], name) == 0)
            return 1;
    return 0;
}

int ctl_daemon_bin(const char *name, char *buf, size_t len)
{
    const char *env = getenv("SITESRV_LIBEXEC");
    if (env && *env)
        return ss_path(buf, len, "%s/%s", env, name);

    /* Beside ourselves: build/bin/sitectl -> build/libexec/sitesrv/, and
     * PREFIX/bin/sitectl -> PREFIX/libexec/sitesrv/ once installed. */
    char exe[SS_PATH_MAX], dir[SS_PATH_MAX], real[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0)
        return -errno;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -ENOENT;
    *slash = '\0';
    int r = ss_path(dir, sizeof dir, "%s/../libexec/sitesrv", exe);
    if (r < 0)
        return r;
    return ss_path(buf, len, "%s/%s", realpath(dir, real) ? real : dir, name);
}

int ctl_daemon_installed(const char *name)
{
    char bin[SS_PATH_MAX];
    return ctl_daemon_bin(name, bin, sizeof bin) == 0 && access(bin, X_OK) == 0;
}

static int run_path(char *buf, size_t len, const char *root, const char *name,
                    const char *ext)
{
    return ss_path(buf, len, "%s/run/%s.%s", root, name, ext);
}

pid_t ctl_daemon_pid(const char *root, const char *name)
{
    char p[SS_PATH_MAX];
    if (run_path(p, sizeof p, root, name, "pid") < 0)
        return 0;
    return pidfile_owner(p);
}

/* The integer value of "key=N" on a line of lines (a ready file), or -1. */
static long long kv_int(const char *lines, const char *key)
{
    size_t kl = strlen(key);
    for (const char *l = lines; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        if (strncmp(l, key, kl) == 0 && l[kl] == '=') {
            char *end;
            long long v = strtoll(l + kl + 1, &end, 10);
            if (end != l + kl + 1 && (*end == '\n' || *end == '\0'))
                return v;
        }
    }
    return -1;
}

/* The ready file: "pid=N" and the daemon's status lines ("queued=3"...).
 * Reads it into buf; returns the pid it names, 0 if none or no file. */
static pid_t ready_read(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n <= 0)
        return (buf[0] = '\0'), 0;
    buf[n] = '\0';
    long long v = kv_int(buf, "pid");
    return v > 0 && v <= INT_MAX ? (pid_t)v : 0;
}

static pid_t ready_pid(const char *path)
{
    char buf[4096];
    return ready_read(path, buf, sizeof buf);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Is pid a zombie or exiting (state Z or X in /proc/PID/stat)?  A process
 * killed by a signal is that until its last thread is gone. */
static int pid_dying(pid_t pid)
{
    char path[64], buf[512];
    (void)snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* "pid (comm) S ...": comm may hold spaces and parentheses. */
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* The last lines of a daemon's stderr file, indented, to explain a
 * failed start. */
static void print_tail(const char *path, int lines)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[4096];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t n = pread(fd, buf, sizeof buf - 1, from);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    char *p = buf + n;
    int k = 0;
    while (p > buf && k < lines) {
        p--;
        if (*p == '\n')
            k++;
    }
    if (*p == '\n')
        p++;
    fprintf(stderr, "  last lines of %s:\n", path);
    for (char *l = strtok(p, "\n"); l; l = strtok(NULL, "\n"))
        fprintf(stderr, "    %s\n", l);
}

struct djob {
    const char *name;
    char  bin[SS_PATH_MAX];
    char  pidf[SS_PATH_MAX];
    char  readyf[SS_PATH_MAX];
    char  errf[SS_PATH_MAX];
    pid_t pid;
    int   child;          /* forked by us: waitpid() tells its exit */
    int   pending;
    int   killed;
    int   respawns;       /* lock holders waited for or restarted */
    int64_t t0;
};

/* Parse the DAEMON... arguments (none = every daemon; for start, every
 * installed one) and the options into jobs. */
static int parse_daemons(struct ctl *c, int argc, char **argv, int starting,
                         struct djob *jobs, size_t *njobs, int64_t *timeout_ms,
                         int *force)
{
    size_t n = 0;
    int named = 0;
    for (int i = 0; i < argc; i++) {
        const char *v;
        if (ctl_common(c, argc, argv, &i))
            continue;
        if (ctl_opt(c, argc, argv, &i, "--timeout", &v)) {
            if (ss_parse_duration_ms(v, timeout_ms) < 0 || *timeout_ms <= 0)
                ctl_usage_error(c, "bad --timeout '%s' (seconds, or 500ms, 2m ...)", v);
            continue;
        }
        if (force && ctl_flag(argv[i], "--force")) {
            *force = 1;
            continue;
        }
        if (argv[i][0] == '-')
            ctl_usage_error(c, "unknown option %s", argv[i]);
        if (!ctl_daemon_known(argv[i]))
            ctl_usage_error(c, "unknown daemon '%s'", argv[i]);
        named = 1;
        int dup = 0;
        for (size_t k = 0; k < n; k++)
            dup |= strcmp(jobs[k].name, argv[i]) == 0;
        if (!dup && n < ctl_ndaemons)
            jobs[n++].name = argv[i];
    }
    if (!named) {
        for (size_t k = 0; k < ctl_ndaemons; k++)
            if (!starting || ctl_daemon_installed(ctl_daemons[k]))
                jobs[n++].name = ctl_daemons[k];
    }
    const char *root = ctl_root(c);
    for (size_t k = 0; k < n; k++) {
        struct djob *j = &jobs[k];
        if (ctl_daemon_bin(j->name, j->bin, sizeof j->bin) < 0 ||
            run_path(j->pidf, sizeof j->pidf, root, j->name, "pid") < 0 ||
            run_path(j->readyf, sizeof j->readyf, root, j->name, "ready") < 0 ||
            run_path(j->errf, sizeof j->errf, root, j->name, "stderr") < 0) {
            ctl_err("path too long for daemon %s under %s", j->name, root);
            return -ENAMETOOLONG;
        }
    }
    *njobs = n;
    return 0;
}

/* Fork and exec one daemon, detached in its own session. */
static int spawn(const char *root, struct djob *j)
{
    int errfd = open(j->errf, O_TRUNC | O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0640);
    if (errfd < 0) {
        ctl_err("%s: %s", j->errf, strerror(errno));
        return -errno;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(errfd);
        ctl_err("cannot fork for %s: %s", j->name, strerror(e));
        return -e;
    }
    if (pid == 0) {
        setsid();
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0 && nul != 0) {
            dup2(nul, 0);
            close(nul);
        }
        dup2(errfd, 1);
        dup2(errfd, 2);
        /* Nothing of sitectl may leak into a long-running daemon. */
        long maxfd = sysconf(_SC_OPEN_MAX);
        if (maxfd < 0 || maxfd > 65536)
            maxfd = 65536;
        for (long fd = 3; fd < maxfd; fd++)
            close((int)fd);
        char *const args[] = { j->bin, "--root", (char *)root, NULL };
        execv(j->bin, args);
        dprintf(2, "sitectl: cannot run %s: %s\n", j->bin, strerror(errno));
        _exit(127);
    }
    close(errfd);
    j->pid = pid;
    j->child = 1;
    j->pending = 1;
    j->t0 = ss_mono_ms();
    return 0;
}

int cmd_start(struct ctl *c, int argc, char **argv)
{
    struct djob jobs[SS_ARRAY_LEN(ctl_daemons)];
    size_t n = 0;
    int64_t timeout = 30000;
    memset(jobs, 0, sizeof jobs);
    if (parse_daemons(c, argc, argv, 1, jobs, &n, &timeout, NULL) < 0)
        return CTL_FAIL;
    const char *root = ctl_root(c);
    if (n == 0) {
        char bin[SS_PATH_MAX] = "libexec/sitesrv/ beside sitectl";
        ctl_daemon_bin("statmgr", bin, sizeof bin);
        ctl_err("no daemon is installed (looked for %s and the others beside it; "
                "$SITESRV_LIBEXEC overrides)", bin);
        return CTL_FAIL;
    }

    char conf[SS_PATH_MAX], run[SS_PATH_MAX];
    if (ss_path(conf, sizeof conf, "%s/site.conf", root) < 0 ||
        ss_path(run, sizeof run, "%s/run", root) < 0 || access(conf, F_OK) < 0) {
        ctl_err("%s is not a site root (no site.conf; sitectl init --site CODE)", root);
        return CTL_FAIL;
    }
    /* run/ of an installed root is /run/sitesrv, gone after a reboot. */
    int r = ctl_make_dir(run, 0755);
    if (r < 0) {
        ctl_err("%s: %s", run, strerror(-r));
        return CTL_FAIL;
    }

    int rc = CTL_OK;
    for (size_t k = 0; k < n; k++) {
        struct djob *j = &jobs[k];
        if (access(j->bin, X_OK) < 0) {
            ctl_err("daemon %s is not installed (%s: %s)", j->name, j->bin, strerror(errno));
            rc = CTL_FAIL;
            continue;
        }
        pid_t owner = pidfile_owner(j->pidf);
        /* A daemon just killed can still hold its pid file's lock for a
         * moment while its threads exit, with its ready file (which a
         * SIGKILL leaves) naming it: that is not a running daemon.  Wait
         * for the lock to go, then start a new one. */
        for (int64_t until = ss_mono_ms() + 5000; owner > 0 && pid_dying(owner) &&
             ss_mono_ms() < until;) {
            sleep_ms(10);
            owner = pidfile_owner(j->pidf);
        }
        if (owner > 0) {
            if (ready_pid(j->readyf) == owner) {
                printf("%s already running (pid %ld)\n", j->name, (long)owner);
                continue;
            }
            /* Started by someone else a moment ago: wait for it too. */
            j->pid = owner;
            j->pending = 1;
            j->t0 = ss_mono_ms();
            continue;
        }
        if (spawn(root, j) < 0)
            rc = CTL_FAIL;
    }

    int64_t deadline = ss_mono_ms() + timeout;
    for (;;) {
        int left = 0;
        for (size_t k = 0; k < n; k++) {
            struct djob *j = &jobs[k];
            if (!j->pending)
                continue;
            if (ready_pid(j->readyf) == j->pid) {
                j->pending = 0;
                if (j->child)
                    printf("%s started (pid %ld, ready in %lld ms)\n", j->name,
                           (long)j->pid, (long long)(ss_mono_ms() - j->t0));
                else
                    printf("%s already running (pid %ld)\n", j->name, (long)j->pid);
                continue;
            }
            int status = 0;
            int gone = j->child ? waitpid(j->pid, &status, WNOHANG) == j->pid
                                : pidfile_owner(j->pidf) != j->pid;
            if (gone) {
                /* Lost a race with another start (or with a daemon that was
                 * still stopping)?  Then wait for the lock holder... */
                pid_t owner = pidfile_owner(j->pidf);
                if (owner > 0 && owner != j->pid && j->respawns < 3) {
                    j->pid = owner;
                    j->child = 0;
                    j->respawns++;
                    left++;
                    continue;
                }
                /* ...and when the one we waited for was stopping and is
                 * gone without being ready, start a fresh one. */
                if (!j->child && owner == 0 && j->respawns < 3) {
                    j->respawns++;
                    if (spawn(root, j) == 0) {
                        left++;
                        continue;
                    }
                }
                j->pending = 0;
                rc = CTL_FAIL;
                if (j->child && WIFEXITED(status))
                    ctl_err("%s failed to start (exit status %d)", j->name, WEXITSTATUS(status));
                else if (j->child && WIFSIGNALED(status))
                    ctl_err("%s failed to start (killed by signal %d)", j->name, WTERMSIG(status));
                else
                    ctl_err("%s (pid %ld) exited before it was ready", j->name, (long)j->pid);
                print_tail(j->errf, 10);
                continue;
            }
            left++;
        }
        if (!left)
            break;
        if (ss_mono_ms() >= deadline) {
            for (size_t k = 0; k < n; k++) {
                if (!jobs[k].pending)
                    continue;
                ctl_err("%s (pid %ld) not ready after %lld ms; it may still be "
                        "starting (see %s)", jobs[k].name, (long)jobs[k].pid,
                        (long long)timeout, jobs[k].errf);
            }
            rc = CTL_FAIL;
            break;
        }
        sleep_ms(POLL_MS);
    }
    return rc;
}

/* A ready file whose pid holds no lock any more is a leftover of a
 * killed daemon: remove it so that nobody reads it as ready. */
static void remove_stale_ready(const struct djob *j)
{
    pid_t rp = ready_pid(j->readyf);
    if (rp > 0 && pidfile_owner(j->pidf) != rp && unlink(j->readyf) < 0 && errno != ENOENT)
        ctl_err("cannot remove %s: %s", j->readyf, strerror(errno));
}

/*
 * Has pid finished?  The daemon drops its pid lock a moment before it
 * exits (after its last log line, before the process is torn down), and
 * "stop returns once each has exited" should hold to the letter: so also
 * wait until the process is gone, or a zombie that only awaits its
 * parent.  A pid reused in that moment would at worst make us wait for
 * the timeout.
 */
static int process_gone(pid_t pid)
{
    char path[64], buf[256];
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    f = fopen(path, "re");
    if (f == NULL)
        return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')'. */
    const char *p = strrchr(buf, ')');
    return p == NULL || (p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

int cmd_stop(struct ctl *c, int argc, char **argv)
{
    struct djob jobs[SS_ARRAY_LEN(ctl_daemons)];
    size_t n = 0;
    int64_t timeout = -1;
    int force = 0;
    memset(jobs, 0, sizeof jobs);
    if (parse_daemons(c, argc, argv, 0, jobs, &n, &timeout, &force) < 0)
        return CTL_FAIL;
    const char *root = ctl_root(c);

    if (timeout < 0) {
        /* The daemons' own stop timeout, and time to exit after it. */
        struct ss_conf *cf = calloc(1, sizeof *cf);
        char err[SS_ERR_MAX];
        timeout = 15000;
        if (cf && conf_load(cf, root, NULL, err, sizeof err) == 0 &&
            cf->daemon_stop_timeout > 0)
            timeout = cf->daemon_stop_timeout + 5000;
        free(cf);
    }

    int rc = CTL_OK;
    for (size_t k = 0; k < n; k++) {
        struct djob *j = &jobs[k];
        j->pid = pidfile_owner(j->pidf);
        if (j->pid <= 0) {
            remove_stale_ready(j);
            /* "stop" with no names covers every daemon; say nothing of
             * those this installation does not have. */
            if (ctl_daemon_installed(j->name))
                printf("%s not running\n", j->name);
            continue;
        }
        j->t0 = ss_mono_ms();
        if (kill(j->pid, SIGTERM) < 0) {
            if (errno == ESRCH) {             /* exited just now */
                j->pending = 1;
                continue;
            }
            ctl_err("cannot stop %s (pid %ld): %s", j->name, (long)j->pid, strerror(errno));
            rc = CTL_FAIL;
            continue;
        }
        j->pending = 1;
    }

    int64_t deadline = ss_mono_ms() + timeout;
    for (;;) {
        int left = 0;
        for (size_t k = 0; k < n; k++) {
            struct djob *j = &jobs[k];
            if (!j->pending)
                continue;
            if (pidfile_owner(j->pidf) != j->pid && process_gone(j->pid)) {
                j->pending = 0;
                remove_stale_ready(j);
                printf("%s %s (in %lld ms)\n", j->name, j->killed ? "killed" : "stopped",
                       (long long)(ss_mono_ms() - j->t0));
                continue;
            }
            left++;
        }
        if (!left)
            break;
        if (ss_mono_ms() >= deadline) {
            int again = 0;
            for (size_t k = 0; k < n; k++) {
                struct djob *j = &jobs[k];
                if (!j->pending)
                    continue;
                if (force && !j->killed) {
                    ctl_err("%s (pid %ld) did not stop in %lld ms; sending SIGKILL",
                            j->name, (long)j->pid, (long long)timeout);
                    if (kill(j->pid, SIGKILL) == 0 || errno == ESRCH) {
                        j->killed = 1;
                        again = 1;
                        continue;
                    }
                }
                ctl_err("%s (pid %ld) did not stop in %lld ms%s", j->name, (long)j->pid,
                        (long long)(ss_mono_ms() - j->t0),
                        force ? "" : " (sitectl stop --force kills it)");
                j->pending = 0;
                rc = CTL_FAIL;
            }
            if (!again)
                break;
            deadline = ss_mono_ms() + 5000;
        }
        sleep_ms(POLL_MS);
    }
    return rc;
}

/* ---- status ---- */

struct dstate {
    const char *name;
    int   installed;
    pid_t pid;
    int   ready;
    long long queued, running;       /* -1: not reported */
    char  lines[4096];               /* the ready file */
};

static void daemon_state(const char *root, const char *name, struct dstate *s)
{
    char readyf[SS_PATH_MAX];
    memset(s, 0, sizeof *s);
    s->name = name;
    s->installed = ctl_daemon_installed(name);
    s->pid = ctl_daemon_pid(root, name);
    s->queued = s->running = -1;
    if (s->pid > 0 && run_path(readyf, sizeof readyf, root, name, "ready") == 0 &&
        ready_read(readyf, s->lines, sizeof s->lines) == s->pid) {
        s->ready = 1;
        s->queued = kv_int(s->lines, "queued");
        s->running = kv_int(s->lines, "running");
    } else {
        s->lines[0] = '\0';
    }
}

static const char *state_word(const struct dstate *s)
{
    if (s->pid > 0)
        return s->ready ? "ready" : "starting";
    return s->installed ? "stopped" : "not installed";
}

/* The ready file's other lines, as JSON members or as "k=v k=v" text. */
static void extra_lines(const char *lines, struct sbuf *b, int json)
{
    int first = 1;
    for (const char *l = lines; l && *l; ) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        const char *eq = memchr(l, '=', len);
        if (eq && strncmp(l, "pid=", 4) != 0) {
            char k[64], v[512];
            snprintf(k, sizeof k, "%.*s", (int)(eq - l), l);
            snprintf(v, sizeof v, "%.*s", (int)(len - (size_t)(eq - l) - 1), eq + 1);
            if (json) {
                ss_sbuf_adds(b, first ? "" : ", ");
                ss_sbuf_add_json_str(b, k);
                ss_sbuf_adds(b, ": ");
                ss_sbuf_add_json_str(b, v);
            } else if (strcmp(k, "queued") != 0 && strcmp(k, "running") != 0 &&
                       strcmp(k, "ready") != 0) {
                ss_sbuf_addf(b, "%s%s=%s", first ? "" : " ", k, v);
            } else {
                goto next;
            }
            first = 0;
        }
next:
        l = nl ? nl + 1 : NULL;
    }
}

int cmd_status(struct ctl *c, int argc, char **argv)
{
    int json = ctl_listing_args(c, argc, argv);
    const char *root = ctl_root(c);

    /* A monitoring script must see a wrong root or a broken site.conf as
     * a failure (exit 1).  Without site.conf this is no site: nothing to
     * report.  With one that does not load, the daemons may still run on
     * the configuration they loaded before (a reload keeps the old one),
     * which the administrator needs to see: the report follows, without a
     * site code and with the error, and the exit is still 1. */
    char site[SS_SITE_LEN + 1] = "", conf_path[SS_PATH_MAX], cerr[SS_ERR_MAX] = "";
    struct ss_conf *cf = calloc(1, sizeof *cf);
    if (!cf) {
        ctl_err("out of memory");
        return CTL_FAIL;
    }
    int cr = ctl_load_conf(root, cf, cerr, sizeof cerr);
    if (cr == 0)
        ss_strcpy(site, sizeof site, cf->site_code);
    free(cf);
    if (cr < 0 && (cr == -ENOENT ||
                   ss_path(conf_path, sizeof conf_path, "%s/site.conf", root) < 0 ||
                   access(conf_path, F_OK) < 0))
        return CTL_FAIL;
    int rc = cr < 0 ? CTL_FAIL : CTL_OK;

    struct sbuf b;
    ss_sbuf_init(&b);
    struct dstate s;
    if (json) {
        ss_sbuf_adds(&b, "{\"site\": ");
        if (site[0])
            ss_sbuf_add_json_str(&b, site);
        else
            ss_sbuf_adds(&b, "null");
        ss_sbuf_adds(&b, ", \"root\": ");
        ss_sbuf_add_json_str(&b, root);
        if (cr < 0) {
            ss_sbuf_adds(&b, ", \"error\": ");
            ss_sbuf_add_json_str(&b, cerr);
        }
        ss_sbuf_adds(&b, ",\n \"daemons\": [");
        for (size_t i = 0; i < ctl_ndaemons; i++) {
            daemon_state(root, ctl_daemons[i], &s);
            ss_sbuf_adds(&b, i ? ",\n  {\"name\": " : "\n  {\"name\": ");
            ss_sbuf_add_json_str(&b, s.name);
            ss_sbuf_addf(&b, ", \"installed\": %s, \"state\": \"%s\", \"running\": %s, "
                         "\"pid\": ", s.installed ? "true" : "false", state_word(&s),
                         s.pid > 0 ? "true" : "false");
            if (s.pid > 0)
                ss_sbuf_addf(&b, "%ld", (long)s.pid);
            else
                ss_sbuf_adds(&b, "null");
            ss_sbuf_addf(&b, ", \"ready\": %s, \"queued\": ", s.ready ? "true" : "false");
            if (s.queued >= 0)
                ss_sbuf_addf(&b, "%lld", s.queued);
            else
                ss_sbuf_adds(&b, "null");
            ss_sbuf_adds(&b, ", \"running_jobs\": ");
            if (s.running >= 0)
                ss_sbuf_addf(&b, "%lld", s.running);
            else
                ss_sbuf_adds(&b, "null");
            ss_sbuf_adds(&b, ", \"status\": {");
            extra_lines(s.lines, &b, 1);
            ss_sbuf_adds(&b, "}}");
        }
        ss_sbuf_adds(&b, "\n ],\n \"inboxes\": ");
        ctl_inbox_report(root, 1, &b);
        ss_sbuf_adds(&b, "}\n");
        if (ctl_print_sbuf(&b) != CTL_OK)
            rc = CTL_FAIL;
        ss_sbuf_free(&b);
        return rc;
    }

    printf("site %s  root %s\n\n", site[0] ? site : "? (site.conf does not load)", root);
    printf("%-9s %-14s %8s %7s %8s  %s\n", "daemon", "state", "pid", "queued",
           "running", "other");
    for (size_t i = 0; i < ctl_ndaemons; i++) {
        daemon_state(root, ctl_daemons[i], &s);
        char pid[24] = "-", q[24] = "-", r[24] = "-";
        if (s.pid > 0)
            snprintf(pid, sizeof pid, "%ld", (long)s.pid);
        if (s.queued >= 0)
            snprintf(q, sizeof q, "%lld", s.queued);
        if (s.running >= 0)
            snprintf(r, sizeof r, "%lld", s.running);
        ss_sbuf_reset(&b);
        extra_lines(s.lines, &b, 0);
        printf("%-9s %-14s %8s %7s %8s%s%s\n", s.name, state_word(&s), pid, q, r,
               b.data && b.data[0] ? "  " : "", b.data ? b.data : "");
    }
    ss_sbuf_free(&b);
    printf("\n");
    ctl_inbox_report(root, 0, NULL);
    return rc;
}
