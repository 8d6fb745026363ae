/*
 * test_daemon.c - unit tests of lib/daemon.c: the pid file lock, sd_notify
 * by hand, coalesced directory watching, and daemon_main end to end with a
 * tiny daemon run in a forked child.
 *
 * The end-to-end tests use the notify socket as their channel: the child
 * daemon (and the test daemon's callbacks) send datagrams to a socket the
 * test owns, so the test waits for events instead of sleeping.  Every wait
 * has a deadline and a child that overstays it is killed, so a broken
 * runtime fails a test instead of hanging it.
 */
#include "testutil.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "daemon.h"
#include "inbox.h"
#include "log.h"
#include "util.h"

#define WAIT_MS 5000                /* deadline of every wait */

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

/* Replace a file atomically, so that a daemon reloading it at the same
 * moment reads the old or the new content, never half of one. */
static void write_file(const char *path, const char *text)
{
    assert_int_equal(ss_write_file_atomic(path, text, strlen(text), 0644), 0);
}

static int file_exists(const char *path)
{
    return tu_exists(AT_FDCWD, path);
}

/* Children not yet reaped: a failing test leaves none running. */
static pid_t children[16];

static void child_add(pid_t pid)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(children); i++)
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
}

static void child_forget(pid_t pid)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(children); i++)
        if (children[i] == pid)
            children[i] = 0;
}

static int reap_children(void **state)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(children); i++)
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    return 0;
}

/* Wait for a child's exit with a deadline; kill it if it overstays.
 * Returns the wait status, or -1 when it had to be killed. */
static int wait_child(pid_t pid, int timeout_ms)
{
    int64_t end = ss_mono_ms() + timeout_ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            child_forget(pid);
            return st;
        }
        if (ss_mono_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            child_forget(pid);
            return -1;
        }
        struct timespec ts = { 0, 5 * 1000000 };
        nanosleep(&ts, NULL);
    }
}

/* A child must exit by itself with code; one that overstays is killed
 * and fails the test. */
static void expect_exit(pid_t pid, int code)
{
    int st = wait_child(pid, WAIT_MS + 5000);
    if (st == -1)
        fail_msg("child (pid %ld) did not exit; killed", (long)pid);
    if (!WIFEXITED(st))
        fail_msg("child died by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    assert_int_equal(WEXITSTATUS(st), code);
}

/* A datagram socket bound to path (or to an abstract name for '@...'). */
static int notify_listen(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t n = strlen(name);
    assert_true(n < sizeof(sa.sun_path));
    memcpy(sa.sun_path, name, n);
    socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    else
        sl += 1;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sl), 0);
    return fd;
}

/* Datagrams read while waiting for another one are kept here, so that a
 * test can wait for messages in any order (a job may report before the
 * daemon's READY=1). */
static struct {
    int  fd;
    int  n;
    char m[64][256];
} backlog = { -1, 0, { "" } };

static int notify_recv_raw(int fd, char *buf, size_t len, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    ssize_t n = recv(fd, buf, len - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return (int)n;
}

/* Next message, oldest kept one first, within timeout_ms: its length, or -1. */
static int notify_recv(int fd, char *buf, size_t len, int timeout_ms)
{
    if (backlog.fd == fd && backlog.n > 0) {
        snprintf(buf, len, "%s", backlog.m[0]);
        memmove(backlog.m[0], backlog.m[1], sizeof(backlog.m[0]) * (size_t)--backlog.n);
        return (int)strlen(buf);
    }
    return notify_recv_raw(fd, buf, len, timeout_ms);
}

/* Wait for a message starting with prefix, keeping the others for later;
 * 0 when found (left in buf), -1 at the deadline. */
static int notify_expect(int fd, const char *prefix, char *buf, size_t len)
{
    size_t pl = strlen(prefix);
    if (backlog.fd != fd) {
        backlog.fd = fd;
        backlog.n = 0;
    }
    for (int i = 0; i < backlog.n; i++) {
        if (strncmp(backlog.m[i], prefix, pl) == 0) {
            snprintf(buf, len, "%s", backlog.m[i]);
            memmove(backlog.m[i], backlog.m[i + 1],
                    sizeof(backlog.m[0]) * (size_t)(backlog.n - i - 1));
            backlog.n--;
            return 0;
        }
    }
    int64_t end = ss_mono_ms() + WAIT_MS;
    for (;;) {
        int64_t left = end - ss_mono_ms();
        if (left <= 0)
            return -1;
        if (notify_recv_raw(fd, buf, len, (int)left) < 0)
            return -1;
        if (strncmp(buf, prefix, pl) == 0)
            return 0;
        if (backlog.n < (int)SS_ARRAY_LEN(backlog.m))
            snprintf(backlog.m[backlog.n++], sizeof(backlog.m[0]), "%s", buf);
    }
}

static void tell(const char *fmt, ...) SS_PRINTF(1, 2);

/* ------------------------------------------------------------------ */
/* Pid file                                                             */

/* Run check(path) in a forked child, which holds none of this process's
 * fcntl locks, and expect it to return 1. */
static void in_child(int (*check)(const char *path), const char *path)
{
    pid_t c = fork();
    assert_true(c >= 0);
    if (c == 0)
        _exit(check(path) ? 0 : 1);
    child_add(c);
    expect_exit(c, 0);
}

static int owner_is_parent(const char *path)
{
    return pidfile_owner(path) == getppid();
}

static int acquire_refused(const char *path)
{
    int fd = -1;
    return pidfile_acquire(path, &fd) == -EAGAIN;
}

/* A holder that dies without cleaning up, as a killed daemon does. */
static int acquire_and_die(const char *path)
{
    int fd = -1;
    return pidfile_acquire(path, &fd) == 0;
}

/* A pid that cannot be written whole: with a file size limit of 2 bytes,
 * write(2) stops short, then fails with EFBIG.  That error is reported,
 * not whatever stale errno was left from before. */
static int acquire_short_write(const char *path)
{
    struct rlimit rl = { 2, 2 };
    int fd = -1;

    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
        return 0;
    errno = EPERM;
    return pidfile_acquire(path, &fd) == -EFBIG;
}

/* The pid file names this process.  Opening and closing it drops this
 * process's lock on it, so a test reads it this way only at its end. */
static void assert_names_us(const char *path)
{
    char want[32];
    snprintf(want, sizeof(want), "%ld\n", (long)getpid());
    assert_true(tu_file_contains(path, want));
}

static void test_pidfile_owner_sees_holder(void **state)
{
    struct tu_dir *t = tu_dir_new("test_daemon", "x.pid");
    assert_non_null(t);
    assert_int_equal(pidfile_owner(t->path), 0);       /* no file yet */

    int fd = -1;
    assert_int_equal(pidfile_acquire(t->path, &fd), 0);
    assert_true(fd >= 0);
    /* Read through our own descriptor: opening and closing the file
     * again would drop this process's fcntl lock. */
    char want[32], got[32] = "";
    snprintf(want, sizeof(want), "%ld\n", (long)getpid());
    assert_int_equal(pread(fd, got, sizeof(got) - 1, 0), (ssize_t)strlen(want));
    assert_string_equal(got, want);
    in_child(owner_is_parent, t->path);

    close(fd);
    assert_int_equal(tu_dir_free(t), 0);
}

static void test_pidfile_second_acquire_fails(void **state)
{
    struct tu_dir *t = tu_dir_new("test_daemon", "x.pid");
    assert_non_null(t);
    int fd = -1;
    assert_int_equal(pidfile_acquire(t->path, &fd), 0);
    in_child(acquire_refused, t->path);
    /* Our lock is intact: the file still names us. */
    assert_names_us(t->path);

    close(fd);
    assert_int_equal(tu_dir_free(t), 0);
}

static void test_pidfile_short_write(void **state)
{
    struct tu_dir *t = tu_dir_new("test_daemon", "x.pid");
    assert_non_null(t);
    in_child(acquire_short_write, t->path);
    assert_int_equal(tu_dir_free(t), 0);
}

static void test_pidfile_stale_is_acquirable(void **state)
{
    struct tu_dir *t = tu_dir_new("test_daemon", "x.pid");
    assert_non_null(t);
    in_child(acquire_and_die, t->path);
    assert_true(file_exists(t->path));
    assert_int_equal(pidfile_owner(t->path), 0);

    int fd = -1;
    assert_int_equal(pidfile_acquire(t->path, &fd), 0);
    assert_names_us(t->path);
    close(fd);
    assert_int_equal(tu_dir_free(t), 0);
}

/* ------------------------------------------------------------------ */
/* ss_notify                                                            */

static void test_notify_path_and_abstract(void **state)
{
    struct tu_dir *t = tu_dir_new("test_daemon", "notify");
    char abstract[64], buf[256];
    assert_non_null(t);
    snprintf(abstract, sizeof(abstract), "@sitesrv-test-daemon-%ld-%ld",
             (long)getpid(), (long)ss_mono_ms());
    const char *names[] = { t->path, abstract };

    for (size_t i = 0; i < SS_ARRAY_LEN(names); i++) {
        int fd = notify_listen(names[i]);
        assert_int_equal(setenv("NOTIFY_SOCKET", names[i], 1), 0);
        assert_int_equal(ss_notify("READY=1"), 0);
        assert_int_equal(notify_recv(fd, buf, sizeof(buf), WAIT_MS), 7);
        assert_string_equal(buf, "READY=1");
        close(fd);
    }
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(tu_dir_free(t), 0);
}

static void test_notify_unset_and_bad(void **state)
{
    static const struct {
        const char *label;
        const char *env;          /* NULL: unset */
        int         want;         /* 0, or the error; 1: any error */
    } cases[] = {
        { "unset", NULL, 0 },
        { "empty", "", 0 },
        { "not a unix address", "vsock:2:3", -EAFNOSUPPORT },
        { "nobody listening", "/nonexistent-dir/sitesrv/notify", 1 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        if (cases[i].env)
            setenv("NOTIFY_SOCKET", cases[i].env, 1);
        else
            unsetenv("NOTIFY_SOCKET");
        int r = ss_notify("READY=1");
        if (cases[i].want == 1) {
            if (r >= 0)
                fail_msg("%s: ss_notify returned %d, want an error", cases[i].label, r);
        } else if (r != cases[i].want) {
            fail_msg("%s: ss_notify returned %d, want %d", cases[i].label, r, cases[i].want);
        }
    }
    unsetenv("NOTIFY_SOCKET");
}

/* ------------------------------------------------------------------ */
/* daemon_watch on an embedded runtime                                  */

struct wctx {
    uv_loop_t           *loop;
    struct daemon_watch *w;
    int                  calls;
    int                  target;    /* uv_stop when calls reaches it */
    int                  kick;      /* kick again from every callback */
    int                  close_first;
};

static void wcb(struct daemon_watch *w, void *arg)
{
    struct wctx *c = arg;
    c->calls++;
    if (c->kick)
        daemon_watch_kick(w);
    if (c->close_first && c->calls == 1) {
        daemon_watch_close(w);
        c->w = NULL;
    }
    if (c->calls >= c->target)
        uv_stop(c->loop);
}

static void on_deadline(uv_timer_t *t)
{
    *(int *)t->data = 1;
    uv_stop(t->loop);
}

/* Run the loop until the callback count reaches target or ms pass.
 * Returns 1 when the deadline came first. */
static int run_for(uv_loop_t *loop, struct wctx *c, int target, int ms)
{
    uv_timer_t t;
    int expired = 0;
    c->target = target;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, on_deadline, (uint64_t)ms, 0);
    if (c->calls < target)
        uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return expired;
}

static void touch(const char *dir, int i)
{
    char p[512];
    assert_int_equal(ss_path(p, sizeof(p), "%s/f%04d", dir, i), 0);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    close(fd);
}

/* A daemon embedded in a loop of the test's own, rooted in a fresh
 * temporary directory. */
struct emb {
    char           dir[SS_PATH_MAX];
    uv_loop_t      loop;
    struct daemon *d;
};

static void emb_open(struct emb *e)
{
    tu_tmpdir(e->dir, sizeof(e->dir), "test_daemon");
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->d = daemon_embed(&e->loop, e->dir, "testd", NULL);
    assert_non_null(e->d);
}

/* Free the daemon (unless the test has) and close the loop, which fails
 * while anything is still open on it. */
static void emb_close(struct emb *e)
{
    if (e->d != NULL)
        daemon_embed_free(e->d);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    tu_rm_rf(e->dir);
}

static void test_watch_start_event_coalesce(void **state)
{
    struct emb e;
    emb_open(&e);

    struct wctx c = { .loop = &e.loop };
    c.w = daemon_watch(e.d, e.dir, 0, wcb, &c);
    assert_non_null(c.w);
    assert_string_equal(daemon_watch_dir(c.w), e.dir);
    assert_int_equal(c.calls, 0);       /* runs from the loop, not inline */

    /* The scan at start. */
    assert_int_equal(run_for(&e.loop, &c, 1, WAIT_MS), 0);
    assert_int_equal(c.calls, 1);

    /* A new file. */
    touch(e.dir, 0);
    assert_int_equal(run_for(&e.loop, &c, 2, WAIT_MS), 0);
    assert_int_equal(c.calls, 2);

    /* A burst of events becomes one callback (two at most, should the
     * kernel queue split): without coalescing this would be ~200. */
    for (int i = 1; i <= 100; i++)
        touch(e.dir, i);
    assert_int_equal(run_for(&e.loop, &c, 3, WAIT_MS), 0);
    run_for(&e.loop, &c, 1000, 200);      /* let any stragglers arrive */
    assert_in_range(c.calls, 3, 4);

    emb_close(&e);
}

static void test_watch_once_per_turn(void **state)
{
    struct emb e;
    emb_open(&e);

    /* A callback that always asks for more still runs once per turn,
     * so the loop keeps serving its other handles (and signals). */
    struct wctx c = { .loop = &e.loop, .kick = 1, .target = 1000 };
    c.w = daemon_watch(e.d, e.dir, 0, wcb, &c);
    assert_non_null(c.w);
    for (int i = 1; i <= 5; i++) {
        uv_run(&e.loop, UV_RUN_NOWAIT);
        assert_int_equal(c.calls, i);
    }
    emb_close(&e);
}

static void test_watch_rescan_without_events(void **state)
{
    char missing[SS_PATH_MAX];
    struct emb e;
    emb_open(&e);
    assert_int_equal(ss_path(missing, sizeof(missing), "%s/not-yet", e.dir), 0);

    /* An existing quiet directory, and one that cannot be watched: both
     * are scanned by the timer alone. */
    const char *dirs[] = { e.dir, missing };
    for (size_t i = 0; i < SS_ARRAY_LEN(dirs); i++) {
        struct wctx c = { .loop = &e.loop };
        c.w = daemon_watch(e.d, dirs[i], 20, wcb, &c);
        assert_non_null(c.w);
        assert_int_equal(run_for(&e.loop, &c, 4, WAIT_MS), 0);
        assert_true(c.calls >= 4);
        /* No periodic rescan any more: the count stays put. */
        daemon_watch_set_rescan(c.w, 0);
        int before = c.calls;
        run_for(&e.loop, &c, 1000, 100);
        assert_int_equal(c.calls, before);
        daemon_watch_close(c.w);
    }
    emb_close(&e);
}

static void test_watch_close_in_callback(void **state)
{
    struct emb e;
    emb_open(&e);

    struct wctx c = { .loop = &e.loop, .close_first = 1 };
    c.w = daemon_watch(e.d, e.dir, 10, wcb, &c);
    assert_non_null(c.w);
    assert_int_equal(run_for(&e.loop, &c, 1, WAIT_MS), 0);
    assert_null(c.w);
    touch(e.dir, 1);
    run_for(&e.loop, &c, 1000, 100);
    assert_int_equal(c.calls, 1);
    emb_close(&e);
}

struct tjob {
    struct pool_job j;
    int             worked;
    int             done;
    int             cancelled;
    uv_loop_t      *loop;
};

static void tjob_work(struct pool_job *j)
{
    ((struct tjob *)j)->worked = 1;
}

static void tjob_done(struct pool_job *j, int cancelled)
{
    struct tjob *t = (struct tjob *)j;
    t->done = 1;
    t->cancelled = cancelled;
    uv_stop(t->loop);
}

static void test_embedded_pool(void **state)
{
    struct emb e;
    emb_open(&e);
    assert_string_equal(daemon_name(e.d), "testd");
    assert_string_equal(daemon_root(e.d), e.dir);
    assert_ptr_equal(daemon_loop(e.d), &e.loop);
    assert_int_equal(daemon_stopping(e.d), 0);
    assert_true(daemon_conf(e.d)->daemon_stop_timeout > 0);

    struct pool *p = daemon_pool(e.d, 2);
    assert_non_null(p);
    assert_ptr_equal(daemon_pool(e.d, 5), p);     /* created once */
    struct tjob t = { .j = { tjob_work, tjob_done, NULL }, .loop = &e.loop };
    pool_submit(p, &t.j);
    uv_timer_t tm;
    int expired = 0;
    uv_timer_init(&e.loop, &tm);
    tm.data = &expired;
    uv_timer_start(&tm, on_deadline, WAIT_MS, 0);
    uv_run(&e.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&tm, NULL);
    assert_int_equal(expired, 0);
    assert_int_equal(t.worked, 1);
    assert_int_equal(t.done, 1);
    assert_int_equal(t.cancelled, 0);
    /* The deadline timer, closed above, finishes closing in one more turn. */
    daemon_embed_free(e.d);
    e.d = NULL;
    uv_run(&e.loop, UV_RUN_NOWAIT);
    emb_close(&e);
}

/* ------------------------------------------------------------------ */
/* daemon_main end to end                                               */

/* What the test daemon does; set before fork, inherited by the child. */
struct tcfg {
    int fail_start;
    int watch;           /* watch inboxes/, report each scan */
    int stuck_job;       /* a job that never ends: the stop guard must act */
    int jobs;            /* one job held until stop(), one queued behind it */
    int report_fsync;    /* tell FSYNC=<ss_fsync_enabled()> ENV=set|unset */
    int flood_log;       /* stop() logs until a log write blocks */
    void (*prep)(void);  /* run in the child just before daemon_main */
};
static struct tcfg cfg;
static int release_pipe[2] = { -1, -1 };
static struct pool_job job_a, job_b, job_stuck;

static void tell(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ss_notify(buf);
}

static void on_scan(struct daemon_watch *w, void *arg)
{
    tell("SCAN=1");
}

static void work_a(struct pool_job *j)
{
    char c;
    tell("JOB_A_RUNNING=1");
    while (read(release_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
}

static void work_b(struct pool_job *j)
{
    tell("JOB_B_RAN=1");
}

static void work_stuck(struct pool_job *j)
{
    tell("STUCK_RUNNING=1");
    for (;;)
        pause();        /* worker threads block every signal: forever */
}

static void job_done(struct pool_job *j, int cancelled)
{
    tell("DONE_%s=%d", j == &job_a ? "A" : j == &job_b ? "B" : "X", cancelled);
    /* Job A is released only once B has been returned, so that B is
     * still queued when the pool stops (else the one worker would take
     * it the moment A ended).  If B were never returned, A would never
     * end and the stop guard would fail the test with exit status 1. */
    if (j == &job_b)
        (void)!write(release_pipe[1], "x", 1);
}

static int tstart(struct daemon *d)
{
    if (cfg.fail_start)
        return -EIO;
    if (cfg.report_fsync)
        tell("FSYNC=%d ENV=%s", ss_fsync_enabled(),
             getenv(SS_NOFSYNC_ENV) != NULL ? "set" : "unset");
    if (cfg.watch) {
        char dir[SS_PATH_MAX];
        if (ss_path(dir, sizeof(dir), "%s/inboxes", daemon_root(d)) < 0 ||
            daemon_watch(d, dir, 0, on_scan, d) == NULL)
            return -EIO;
    }
    if (cfg.stuck_job) {
        struct pool *p = daemon_pool(d, 1);
        if (p == NULL)
            return -EIO;
        job_stuck = (struct pool_job){ work_stuck, job_done, NULL };
        pool_submit(p, &job_stuck);
    }
    if (cfg.jobs) {
        struct pool *p = daemon_pool(d, 1);
        if (p == NULL || pipe(release_pipe) < 0)
            return -EIO;
        job_a = (struct pool_job){ work_a, job_done, NULL };
        job_b = (struct pool_job){ work_b, job_done, NULL };
        pool_submit(p, &job_a);
        pool_submit(p, &job_b);
    }
    return 0;
}

static void tstop(struct daemon *d)
{
    tell("STOP_CALLED=1");
    if (cfg.flood_log) {
        /* A log on a FIFO that nobody reads: the write that fills it
         * blocks forever, holding the log's mutex, as on a hung disk. */
        static char big[4000];
        memset(big, 'x', sizeof(big) - 1);
        for (;;)
            log_info("%s", big);
    }
}

static void treload(struct daemon *d)
{
    tell("RELOAD=%s", daemon_conf(d)->site_code);
}

static void tstatus(struct daemon *d, char *buf, size_t len)
{
    snprintf(buf, len, "test=%s", daemon_conf(d)->site_code);
}

static const struct daemon_ops tops = {
    .name = "testd", .start = tstart, .stop = tstop,
    .reload = treload, .status = tstatus,
};

struct site {
    char root[256];
    char sock[512];
    char pid[512];
    char ready[512];
    char log[512];
    int  fd;             /* notify socket */
};

static void site_setup(struct site *s, const char *extra_conf)
{
    char p[512], conf[1024];
    tu_tmpdir(s->root, sizeof(s->root), "test_daemon");
    assert_int_equal(ss_path(p, sizeof(p), "%s/site.conf", s->root), 0);
    snprintf(conf, sizeof(conf), "[site]\ncode = TST\n%s", extra_conf ? extra_conf : "");
    write_file(p, conf);
    assert_int_equal(inbox_create_tree(s->root), 0);
    assert_int_equal(ss_path(s->sock, sizeof(s->sock), "%s/notify", s->root), 0);
    assert_int_equal(ss_path(s->pid, sizeof(s->pid), "%s/run/testd.pid", s->root), 0);
    assert_int_equal(ss_path(s->ready, sizeof(s->ready), "%s/run/testd.ready", s->root), 0);
    assert_int_equal(ss_path(s->log, sizeof(s->log), "%s/logs/testd.log", s->root), 0);
    s->fd = notify_listen(s->sock);
    backlog.fd = -1;
    backlog.n = 0;
}

static void site_teardown(struct site *s)
{
    backlog.fd = -1;
    backlog.n = 0;
    close(s->fd);
    tu_rm_rf(s->root);
}

/* Fork a child running daemon_main with the given arguments. */
static pid_t spawn(struct site *s, const struct tcfg *c, char **argv)
{
    cfg = *c;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("NOTIFY_SOCKET", s->sock, 1);
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        if (cfg.prep != NULL)
            cfg.prep();
        int argc = 0;
        while (argv[argc])
            argc++;
        _exit(daemon_main(argc, argv, &tops, NULL));
    }
    child_add(pid);
    return pid;
}

static pid_t spawn_root(struct site *s, const struct tcfg *c)
{
    char *argv[] = { "testd", "--root", s->root, NULL };
    return spawn(s, c, argv);
}

/* Start a daemon on the site's root and wait for its READY=1, which is
 * left in buf. */
static pid_t start_ready(struct site *s, const struct tcfg *c, char *buf, size_t len)
{
    pid_t pid = spawn_root(s, c);
    assert_int_equal(notify_expect(s->fd, "READY=1", buf, len), 0);
    return pid;
}

/* Stop a daemon by signal: it exits 0 and leaves neither its ready file
 * nor its pid file behind. */
static void stop_clean(struct site *s, pid_t pid, int sig)
{
    assert_int_equal(kill(pid, sig), 0);
    expect_exit(pid, 0);
    assert_false(file_exists(s->ready));
    assert_false(file_exists(s->pid));
}

static void test_main_ready_and_stop(void **state)
{
    struct site s;
    char buf[512], want[64];
    site_setup(&s, NULL);
    struct tcfg c = { .watch = 1 };
    pid_t pid = start_ready(&s, &c, buf, sizeof(buf));
    snprintf(want, sizeof(want), "MAINPID=%ld", (long)pid);
    assert_non_null(strstr(buf, want));
    /* The ready file was in place before READY=1 was sent. */
    snprintf(want, sizeof(want), "pid=%ld\n", (long)pid);
    assert_true(tu_file_contains(s.ready, want));
    assert_true(tu_file_contains(s.ready, "ready=1\n"));
    assert_true(tu_file_contains(s.ready, "test=TST\n"));
    assert_int_equal(pidfile_owner(s.pid), pid);
    /* The watch's scan at start. */
    assert_int_equal(notify_expect(s.fd, "SCAN=1", buf, sizeof(buf)), 0);

    /* A second instance refuses to start and leaves the first alone. */
    struct tcfg c2 = { 0 };
    pid_t pid2 = spawn_root(&s, &c2);
    expect_exit(pid2, 1);
    assert_int_equal(pidfile_owner(s.pid), pid);
    assert_true(file_exists(s.ready));

    stop_clean(&s, pid, SIGTERM);
    assert_int_equal(notify_expect(s.fd, "STOPPING=1", buf, sizeof(buf)), 0);
    assert_int_equal(notify_expect(s.fd, "STOP_CALLED=1", buf, sizeof(buf)), 0);
    assert_true(tu_file_contains(s.log, "testd ready"));
    assert_true(tu_file_contains(s.log, "testd stopped"));

    /* Back to back: a new start right after the stop is ready again. */
    pid = start_ready(&s, &c, buf, sizeof(buf));
    stop_clean(&s, pid, SIGINT);
    site_teardown(&s);
}

/* In the child: hold SIGTERM blocked until the test has sent it, so that
 * it is already pending when daemon_main begins. */
static void hold_sigterm(void)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    tell("BLOCKED=1");
    int64_t end = ss_mono_ms() + WAIT_MS;
    do {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
        sigpending(&pending);
    } while (!sigismember(&pending, SIGTERM) && ss_mono_ms() < end);
}

static void test_main_stop_before_ready(void **state)
{
    /* A SIGTERM already pending when daemon_main begins (it came before
     * the signal handles existed) is held, then stops the daemon in
     * order: exit 0, never death by signal, nothing left behind. */
    struct site s;
    char buf[256];
    site_setup(&s, NULL);
    struct tcfg c = { .watch = 1, .prep = hold_sigterm };
    pid_t pid = spawn_root(&s, &c);
    assert_int_equal(notify_expect(s.fd, "BLOCKED=1", buf, sizeof(buf)), 0);
    stop_clean(&s, pid, SIGTERM);
    site_teardown(&s);
}

static void test_main_start_fails(void **state)
{
    struct site s;
    char buf[512];
    site_setup(&s, NULL);
    /* A stale ready file of a killed instance must not survive either. */
    char run[512];
    assert_int_equal(ss_path(run, sizeof(run), "%s/run", s.root), 0);
    assert_int_equal(mkdir(run, 0755), 0);
    write_file(s.ready, "pid=1\nready=1\n");

    struct tcfg c = { .fail_start = 1 };
    pid_t pid = spawn_root(&s, &c);
    expect_exit(pid, 1);
    assert_false(file_exists(s.ready));
    assert_false(file_exists(s.pid));
    /* Nothing announced readiness. */
    while (notify_recv(s.fd, buf, sizeof(buf), 0) >= 0)
        assert_null(strstr(buf, "READY=1"));
    site_teardown(&s);
}

static void test_main_arguments(void **state)
{
    struct site s;
    site_setup(&s, NULL);
    struct tcfg c = { 0 };
    char rootopt[600];
    snprintf(rootopt, sizeof(rootopt), "--root=%s", s.root);
    static const struct {
        const char *label;
        const char *args[4];
        int         want;
    } cases[] = {
        { "unknown option", { "--frobnicate" }, 2 },
        { "--root without a value", { "--root" }, 2 },
        { "no root at all", { NULL }, 2 },
        { "--version", { "--version" }, 0 },
        { "--help", { "--help" }, 0 },
        { "root does not exist", { "--root", "/nonexistent/sitesrv/root" }, 1 },
    };
    unsetenv("SITESRV_ROOT");
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        char *argv[6] = { "testd" };
        for (int k = 0; k < 4 && cases[i].args[k]; k++)
            argv[k + 1] = (char *)cases[i].args[k];
        pid_t pid = spawn(&s, &c, argv);
        int st = wait_child(pid, WAIT_MS);
        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != cases[i].want)
            fail_msg("%s: status %d, want exit %d", cases[i].label, st, cases[i].want);
    }

    /* $SITESRV_ROOT and --root=DIR both name the root; stop at once. */
    setenv("SITESRV_ROOT", s.root, 1);
    char *argv_env[] = { "testd", NULL };
    char *argv_eq[] = { "testd", rootopt, NULL };
    char **argvs[] = { argv_env, argv_eq };
    for (size_t i = 0; i < SS_ARRAY_LEN(argvs); i++) {
        char buf[256];
        pid_t pid = spawn(&s, &c, argvs[i]);
        assert_int_equal(notify_expect(s.fd, "READY=1", buf, sizeof(buf)), 0);
        stop_clean(&s, pid, SIGTERM);
    }
    unsetenv("SITESRV_ROOT");

    /* A bad site.conf refuses to start. */
    char p[512];
    assert_int_equal(ss_path(p, sizeof(p), "%s/site.conf", s.root), 0);
    write_file(p, "[site]\ncode = TST\n[daemon]\nstop_timeout = soon\n");
    pid_t pid = spawn_root(&s, &c);
    expect_exit(pid, 1);
    assert_false(file_exists(s.ready));
    site_teardown(&s);
}

static void test_main_reload(void **state)
{
    struct site s;
    char buf[512], p[512];
    site_setup(&s, NULL);
    assert_int_equal(ss_path(p, sizeof(p), "%s/site.conf", s.root), 0);
    struct tcfg c = { 0 };
    pid_t pid = start_ready(&s, &c, buf, sizeof(buf));

    /* A good change is taken. */
    write_file(p, "[site]\ncode = TS2\n");
    kill(pid, SIGHUP);
    assert_int_equal(notify_expect(s.fd, "RELOAD=", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "RELOAD=TS2");

    /* A bad one is refused and the daemon keeps running on the old one. */
    write_file(p, "[site]\ncode = TS3\nthis is not a key line\n");
    kill(pid, SIGHUP);
    write_file(p, "[site]\ncode = TS4\n");
    kill(pid, SIGHUP);
    assert_int_equal(notify_expect(s.fd, "RELOAD=", buf, sizeof(buf)), 0);
    /* Either both SIGHUPs were handled (the bad one refused) or they were
     * merged into one; in no case is the bad file's code taken. */
    assert_string_equal(buf, "RELOAD=TS4");

    write_file(p, "[site]\ncode = TS5\nbad line\n");
    kill(pid, SIGHUP);
    kill(pid, SIGTERM);     /* SIGHUP (1) is delivered before SIGTERM (15) */
    expect_exit(pid, 0);
    assert_true(tu_file_contains(s.log, "configuration reloaded"));
    assert_true(tu_file_contains(s.log, "not reloaded"));
    /* No RELOAD after the refused file. */
    while (notify_recv(s.fd, buf, sizeof(buf), 0) >= 0)
        assert_null(strstr(buf, "RELOAD=TS5"));
    site_teardown(&s);
}

static void test_main_stop_returns_queued_jobs(void **state)
{
    struct site s;
    char buf[512];
    site_setup(&s, NULL);
    struct tcfg c = { .jobs = 1 };
    pid_t pid = start_ready(&s, &c, buf, sizeof(buf));
    assert_int_equal(notify_expect(s.fd, "JOB_A_RUNNING=1", buf, sizeof(buf)), 0);
    /* With a runtime pool, the ready file shows its depth. */
    assert_true(tu_file_contains(s.ready, "queued="));
    assert_true(tu_file_contains(s.ready, "running="));
    stop_clean(&s, pid, SIGTERM);

    /* Job A ran to its end; job B, still queued, was returned. */
    int a = -1, b = -1, b_ran = 0;
    while (notify_recv(s.fd, buf, sizeof(buf), 0) >= 0) {
        if (strncmp(buf, "DONE_A=", 7) == 0)
            a = atoi(buf + 7);
        if (strncmp(buf, "DONE_B=", 7) == 0)
            b = atoi(buf + 7);
        if (strcmp(buf, "JOB_B_RAN=1") == 0)
            b_ran = 1;
    }
    assert_int_equal(a, 0);
    assert_int_equal(b, 1);
    assert_int_equal(b_ran, 0);
    site_teardown(&s);
}

static void test_main_stop_timeout_guard(void **state)
{
    struct site s;
    char buf[512];
    site_setup(&s, "[daemon]\nstop_timeout = 1s\n");
    struct tcfg c = { .stuck_job = 1 };
    pid_t pid = start_ready(&s, &c, buf, sizeof(buf));
    assert_int_equal(notify_expect(s.fd, "STUCK_RUNNING=1", buf, sizeof(buf)), 0);
    kill(pid, SIGTERM);
    /* Exits by itself, with status 1, naming what was stuck. */
    expect_exit(pid, 1);
    assert_false(file_exists(s.ready));
    assert_true(tu_file_contains(s.log, "worker pool"));
    /* The stale pid file does not stop the next start. */
    struct tcfg c2 = { 0 };
    pid = start_ready(&s, &c2, buf, sizeof(buf));
    stop_clean(&s, pid, SIGTERM);
    site_teardown(&s);
}

/* In the child: stderr to this file. */
static char child_stderr[600];

static void stderr_to_file(void)
{
    int fd = open(child_stderr, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
    }
}

/* The stop guard must not wait for the log: here the stop handler is
 * stuck inside a log write, holding the log's mutex.  The guard still
 * ends the process in time, and says why on stderr. */
static void test_main_stop_guard_log_stuck(void **state)
{
    struct site s;
    char buf[512], dir[600];
    site_setup(&s, "[daemon]\nstop_timeout = 1s\n");
    assert_int_equal(ss_path(dir, sizeof(dir), "%s/logs", s.root), 0);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mkfifo(s.log, 0644), 0);
    /* A reader, so that the daemon can open the FIFO; it never reads. */
    int rfd = open(s.log, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    assert_true(rfd >= 0);
    assert_int_equal(ss_path(child_stderr, sizeof(child_stderr), "%s/stderr", s.root), 0);

    struct tcfg c = { .flood_log = 1, .prep = stderr_to_file };
    pid_t pid = start_ready(&s, &c, buf, sizeof(buf));
    kill(pid, SIGTERM);
    assert_int_equal(notify_expect(s.fd, "STOP_CALLED=1", buf, sizeof(buf)), 0);
    expect_exit(pid, 1);
    assert_true(tu_file_contains(child_stderr,
                                 "<3>testd: stop did not complete within its time limit "
                                 "(1000 ms); still in the stop handler of testd; exiting now\n"));
    close(rfd);
    site_teardown(&s);
}

/* In the child: SITESRV_UNSAFE_NOFSYNC=1, and already read (cached) as
 * something before daemon_main might have done. */
static void nofsync_cached(void)
{
    setenv(SS_NOFSYNC_ENV, "1", 1);
    if (ss_fsync_enabled())
        _exit(3);
}

/* A daemon started with SITESRV_UNSAFE_NOFSYNC=1 (sitectl passes its
 * environment on) removes it, says so, and fsyncs. */
static void test_main_nofsync_removed(void **state)
{
    struct site s;
    char buf[512];
    site_setup(&s, NULL);
    struct tcfg c = { .report_fsync = 1, .prep = nofsync_cached };
    pid_t pid = start_ready(&s, &c, buf, sizeof(buf));
    assert_int_equal(notify_expect(s.fd, "FSYNC=", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "FSYNC=1 ENV=unset");
    stop_clean(&s, pid, SIGTERM);
    assert_true(tu_file_contains(s.log, "ignoring SITESRV_UNSAFE_NOFSYNC=1 from the "
                                        "environment: daemons always fsync"));
    site_teardown(&s);
}

/* In the child: ask for keep-alives every 20 ms. */
static void want_watchdog(void)
{
    setenv("WATCHDOG_USEC", "20000", 1);
}

static void test_main_watchdog(void **state)
{
    struct site s;
    char buf[512];
    site_setup(&s, NULL);
    struct tcfg c = { .prep = want_watchdog };
    pid_t pid = start_ready(&s, &c, buf, sizeof(buf));
    assert_int_equal(notify_expect(s.fd, "WATCHDOG=1", buf, sizeof(buf)), 0);
    stop_clean(&s, pid, SIGTERM);
    site_teardown(&s);
}

int main(void)
{
    setenv(SS_NOFSYNC_ENV, "1", 1);
    unsetenv("NOTIFY_SOCKET");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_pidfile_owner_sees_holder, reap_children),
        cmocka_unit_test_teardown(test_pidfile_second_acquire_fails, reap_children),
        cmocka_unit_test_teardown(test_pidfile_stale_is_acquirable, reap_children),
        cmocka_unit_test_teardown(test_pidfile_short_write, reap_children),
        cmocka_unit_test_teardown(test_notify_path_and_abstract, reap_children),
        cmocka_unit_test_teardown(test_notify_unset_and_bad, reap_children),
        cmocka_unit_test_teardown(test_watch_start_event_coalesce, reap_children),
        cmocka_unit_test_teardown(test_watch_once_per_turn, reap_children),
        cmocka_unit_test_teardown(test_watch_rescan_without_events, reap_children),
        cmocka_unit_test_teardown(test_watch_close_in_callback, reap_children),
        cmocka_unit_test_teardown(test_embedded_pool, reap_children),
        cmocka_unit_test_teardown(test_main_ready_and_stop, reap_children),
        cmocka_unit_test_teardown(test_main_stop_before_ready, reap_children),
        cmocka_unit_test_teardown(test_main_start_fails, reap_children),
        cmocka_unit_test_teardown(test_main_arguments, reap_children),
        cmocka_unit_test_teardown(test_main_reload, reap_children),
        cmocka_unit_test_teardown(test_main_stop_returns_queued_jobs, reap_children),
        cmocka_unit_test_teardown(test_main_stop_timeout_guard, reap_children),
        cmocka_unit_test_teardown(test_main_watchdog, reap_children),
        cmocka_unit_test_teardown(test_main_stop_guard_log_stuck, reap_children),
        cmocka_unit_test_teardown(test_main_nofsync_removed, reap_children),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
