/*
 * test_sender.c - unit tests for the sender's transfer of one request to
 * a file: address (daemons/sender/xfer.c, xfer_run).
 *
 * Each test has its own temporary tree standing for both sites:
 *   tosend/            R.ins, R.pck or R.sts (the sending site's files)
 *   requests/, .tmp/   R.srq, the request, where the confirmed offset goes
 *   receive/, .tmp/    the other site's despoolr.box/receive/
 * with R and the transfer name X two different unique names, so that a
 * mix-up of the two shows.  The cases: a fresh package transfer; resumes
 * from a part file (bytes after the confirmed offset not trusted, a part
 * shorter than the offset continued from its own length, no part at all);
 * a package file already renamed in before a kill; an instruction already
 * committed; a missing receive directory or .tmp (not fatal); a missing
 * source file (fatal); a stop before the start; addresses that are not
 * file:/PATH; a status bundle; and a 40 MiB package stopped from another
 * thread after its first confirmed offset and resumed from the recorded
 * request to a byte-identical file.
 */
#include "testutil.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/inotify.h>

#include "sender.h"
#include "uniqname.h"

#define INS_TEXT "sitesrv instruction (a stand-in: xfer.c never reads it)\n"

struct fx {
    char  *root;
    char   recv[SS_PATH_MAX];
    int    tosendfd, reqfd, reqtmpfd, rxfd, rxtmpfd;
    char   R[UNIQ_NAME_MAX];          /* request base name */
    char   X[UNIQ_NAME_MAX];          /* transfer name at the hop */
    char   srq[UNIQ_NAME_MAX + 8];    /* R.srq */
    char   xpck[UNIQ_NAME_MAX + 8], xins[UNIQ_NAME_MAX + 8], xpart[UNIQ_NAME_MAX + 16];
    unsigned char *pck;               /* the package file's bytes */
    size_t pcklen;
    volatile int stop;
};

/* A fresh "<prefix>-<32 hex>" without a suffix. */
static void base_name(char *buf, size_t len, const char *prefix)
{
    assert_int_equal(uniq_name(buf, len, prefix, ".x"), 0);
    buf[strlen(buf) - 2] = '\0';
    assert_true(strlen(buf) == strlen(prefix) + 33);
}

static int opendir_at(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void mkdir_at(int dfd, const char *name)
{
    assert_int_equal(mkdirat(dfd, name, 0750), 0);
}

/* Bytes that differ from block to block, so that a piece written at the
 * wrong offset never compares equal. */
static void pattern(unsigned char *p, size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;

    for (size_t i = 0; i < len; i++) {
        if ((i & 7) == 0)
            x = x * 1103515245u + 12345u + (uint32_t)(i >> 12);
        p[i] = (unsigned char)(x >> ((i & 3) * 8));
    }
}

static void put_bytes(int dfd, const char *name, const void *data, size_t len)
{
    int fd = openat(dfd, name, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(ss_write_all(fd, data, len), 0);
    assert_int_equal(close(fd), 0);
}

static void assert_bytes(int dfd, const char *name, const void *want, size_t len)
{
    size_t n = 0;
    char *got = tu_read_at(dfd, name, &n);

    if (n != len)
        fail_msg("%s: %zu bytes, want %zu", name, n, len);
    if (memcmp(got, want, len) != 0) {
        size_t i = 0;
        while (i < len && got[i] == ((const char *)want)[i])
            i++;
        free(got);
        fail_msg("%s: differs from byte %zu", name, i);
    }
    free(got);
}

static int64_t file_size(int dfd, const char *name)
{
    struct stat st;
    assert_int_equal(fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
    return st.st_size;
}

/* The request as the scheduler would have written it. */
static void init_req(struct fx *f, struct sendreq *q, enum send_type type, int64_t size)
{
    memset(q, 0, sizeof *q);
    q->type = type;
    (void)ss_strcpy(q->dest, sizeof q->dest, "G01");
    (void)ss_strcpy(q->hop, sizeof q->hop, "B01");
    q->priority = PRIO_MEDIUM;
    if (type == SEND_PACKAGE) {
        (void)ss_strcpy(q->package, sizeof q->package, "CEN00001");
        q->version = 2;
    }
    (void)ss_strcpy(q->xfer, sizeof q->xfer, f->X);
    q->size = size;
    q->created_ms = ss_now_ms();
}

static void init_xfer(struct fx *f, struct xfer *x, const struct sendreq *q)
{
    memset(x, 0, sizeof *x);
    (void)ss_strcpy(x->name, sizeof x->name, f->R);
    x->q = *q;
    assert_int_equal(ss_fmt(x->address, sizeof x->address, "file:%s", f->recv), 0);
    x->tosendfd = f->tosendfd;
    x->reqfd = f->reqfd;
    x->reqtmpfd = f->reqtmpfd;
    x->stop = &f->stop;
}

/* A package request for a package of len pattern bytes, in tosend/ and
 * recorded as requests/R.srq, and its xfer. */
static void package(struct fx *f, size_t len, struct xfer *x)
{
    struct sendreq q;
    char name[UNIQ_NAME_MAX + 8];

    free(f->pck);
    assert_non_null(f->pck = malloc(len ? len : 1));
    f->pcklen = len;
    pattern(f->pck, len, 7);
    assert_int_equal(ss_fmt(name, sizeof name, "%s.pck", f->R), 0);
    put_bytes(f->tosendfd, name, f->pck, len);
    assert_int_equal(ss_fmt(name, sizeof name, "%s.ins", f->R), 0);
    put_bytes(f->tosendfd, name, INS_TEXT, strlen(INS_TEXT));
    init_req(f, &q, SEND_PACKAGE, (int64_t)(len + strlen(INS_TEXT)));
    assert_int_equal(srq_store(f->reqfd, f->reqtmpfd, f->srq, &q, 0), 0);
    init_xfer(f, x, &q);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    int rootfd;

    assert_non_null(f);
    f->root = tu_tmpdir_new("test_sender");
    rootfd = opendir_at(AT_FDCWD, f->root);
    mkdir_at(rootfd, "tosend");
    mkdir_at(rootfd, "requests");
    mkdir_at(rootfd, "requests/.tmp");
    mkdir_at(rootfd, "receive");
    mkdir_at(rootfd, "receive/.tmp");
    f->tosendfd = opendir_at(rootfd, "tosend");
    f->reqfd = opendir_at(rootfd, "requests");
    f->reqtmpfd = opendir_at(rootfd, "requests/.tmp");
    f->rxfd = opendir_at(rootfd, "receive");
    f->rxtmpfd = opendir_at(rootfd, "receive/.tmp");
    close(rootfd);
    assert_int_equal(ss_path(f->recv, sizeof f->recv, "%s/receive", f->root), 0);
    base_name(f->R, sizeof f->R, "CEN");
    base_name(f->X, sizeof f->X, "CEN");
    assert_int_equal(ss_fmt(f->srq, sizeof f->srq, "%s.srq", f->R), 0);
    assert_int_equal(ss_fmt(f->xpck, sizeof f->xpck, "%s.pck", f->X), 0);
    assert_int_equal(ss_fmt(f->xins, sizeof f->xins, "%s.ins", f->X), 0);
    assert_int_equal(ss_fmt(f->xpart, sizeof f->xpart, "%s.pck.part", f->X), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    close(f->tosendfd);
    close(f->reqfd);
    close(f->reqtmpfd);
    close(f->rxfd);
    close(f->rxtmpfd);
    tu_tmpdir_free(f->root);
    free(f->pck);
    free(f);
    return 0;
}

/* Both files committed at the hop and equal to the sources, nothing else
 * there, nothing left in its .tmp. */
static void assert_delivered(struct fx *f)
{
    assert_bytes(f->rxfd, f->xpck, f->pck, f->pcklen);
    assert_bytes(f->rxfd, f->xins, INS_TEXT, strlen(INS_TEXT));
    assert_int_equal(tu_count_at(f->rxfd), 3);          /* X.pck, X.ins, .tmp */
    assert_int_equal(tu_count_at(f->rxtmpfd), 0);
}

static void assert_sent(const struct xfer *x)
{
    if (x->rc != 0)
        fail_msg("xfer_run: %d (%s)", x->rc, x->err);
    assert_int_equal(x->fatal, 0);
}

/* ---- (1) a fresh transfer -------------------------------------------- */

static void test_fresh(void **state)
{
    struct fx *f = *state;
    struct xfer x;

    package(f, (3u << 20) + 123, &x);
    xfer_run(&x);
    assert_sent(&x);
    assert_delivered(f);
    assert_int_equal(x.written, (int64_t)(f->pcklen + strlen(INS_TEXT)));
    assert_int_equal(x.resumed_at, 0);
    assert_int_equal(x.q.pck_done, 1);
    assert_int_equal(x.q.offset, (int64_t)f->pcklen);
    /* The sources stay: the loop removes them once it has recorded the
     * request as sent. */
    assert_int_equal(tu_count_at(f->tosendfd), 2);
    assert_int_equal(tu_count_at(f->reqtmpfd), 0);
}

/* An empty package file is still a package file. */
static void test_empty_package(void **state)
{
    struct fx *f = *state;
    struct xfer x;

    package(f, 0, &x);
    xfer_run(&x);
    assert_sent(&x);
    assert_delivered(f);
    assert_int_equal(x.written, (int64_t)strlen(INS_TEXT));
    assert_int_equal(x.q.pck_done, 1);
}

/*
 * The transfer records its progress in requests/R.srq, the request the
 * loop reads at its next start (sender.c loads "<R>.srq"; x->name is R,
 * without the suffix, as sender.c sets it).
 *
 * A transfer that wrote the offset anywhere else (requests/R, say) would
 * leave R.srq at offset 0: after a kill the next start would truncate the
 * part file to 0 and send the package again from its first byte.
 */
static void test_progress_recorded(void **state)
{
    struct fx *f = *state;
    struct xfer x;
    struct sendreq got;
    char err[SS_ERR_MAX] = "";

    package(f, (1u << 20) + 5, &x);
    xfer_run(&x);
    assert_sent(&x);
    if (tu_exists(f->reqfd, f->R))
        fail_msg("xfer recorded the request as requests/%s, not requests/%s", f->R, f->srq);
    if (srq_load(f->reqfd, f->srq, &got, err, sizeof err) != 0)
        fail_msg("srq_load %s: %s", f->srq, err);
    assert_int_equal(got.pck_done, 1);
    assert_int_equal(got.offset, (int64_t)f->pcklen);
    assert_string_equal(got.xfer, f->X);
    assert_int_equal(tu_count_at(f->reqfd), 2);          /* R.srq and .tmp */
    assert_int_equal(tu_count_at(f->reqtmpfd), 0);
}

/* ---- (2), (3) resumes from a part file ------------------------------ */

struct resume_case {
    const char *label;
    int64_t good;          /* part file: this many correct bytes first */
    int64_t junk;          /* then this many wrong ones (-1: no part file) */
    int64_t offset;        /* the request's confirmed offset */
    int64_t want;          /* resumed_at */
};

#define PSIZE ((int64_t)(3 << 20) + 4097)

static const struct resume_case resumes[] = {
    /* Bytes after the confirmed offset were written but never confirmed:
     * they are not trusted, even when they are longer than the source. */
    { "garbage after the offset", 1 << 20, (1 << 20) + 3, 1 << 20, 1 << 20 },
    { "good bytes after the offset", 2 << 20, 77, 1 << 20, 1 << 20 },
    { "part longer than the source", PSIZE, 1 << 20, 1500000, 1500000 },
    { "offset equals the part", 1234567, 0, 1234567, 1234567 },
    /* The receiver removed the part as stale and a later attempt wrote
     * some of it again: it goes on from the part's own length. */
    { "part shorter than the offset", (1 << 20) + 5, 0, 2 << 20, (1 << 20) + 5 },
    { "no part file", 0, -1, 2 << 20, 0 },
    { "empty part file", 0, 0, 2 << 20, 0 },
    /* An offset beyond the source (a broken record) restarts. */
    { "offset beyond the source", PSIZE, 100, PSIZE + 100, 0 },
    { "offset 0", 2 << 20, 0, 0, 0 },
};

static void test_resume(void **state)
{
    struct fx *f = *state;

    for (size_t i = 0; i < SS_ARRAY_LEN(resumes); i++) {
        const struct resume_case *c = &resumes[i];
        struct xfer x;

        package(f, (size_t)PSIZE, &x);
        (void)unlinkat(f->rxfd, f->xpck, 0);
        (void)unlinkat(f->rxfd, f->xins, 0);
        (void)unlinkat(f->rxtmpfd, f->xpart, 0);
        if (c->junk >= 0) {
            unsigned char *p = malloc((size_t)(c->good + c->junk + 1));
            assert_non_null(p);
            memcpy(p, f->pck, (size_t)c->good);
            memset(p + c->good, 0xa5, (size_t)c->junk);
            put_bytes(f->rxtmpfd, f->xpart, p, (size_t)(c->good + c->junk));
            free(p);
        }
        x.q.offset = c->offset;
        xfer_run(&x);
        if (x.rc != 0)
            fail_msg("%s: xfer_run %d (%s)", c->label, x.rc, x.err);
        if (x.resumed_at != c->want)
            fail_msg("%s: resumed at %lld, want %lld", c->label, (long long)x.resumed_at,
                     (long long)c->want);
        assert_delivered(f);
        if (x.written != PSIZE - c->want + (int64_t)strlen(INS_TEXT))
            fail_msg("%s: wrote %lld bytes", c->label, (long long)x.written);
        assert_int_equal(x.q.pck_done, 1);
    }
}

/* ---- (4), (5) steps done by an earlier attempt ---------------------- */

/* X.pck renamed in, then a kill before the request said so. */
static void test_pck_already_in(void **state)
{
    struct fx *f = *state;
    struct xfer x;

    package(f, (2u << 20) + 9, &x);
    put_bytes(f->rxfd, f->xpck, f->pck, f->pcklen);
    x.q.offset = 1 << 20;
    xfer_run(&x);
    assert_sent(&x);
    assert_delivered(f);
    assert_int_equal(x.written, (int64_t)strlen(INS_TEXT));
    assert_int_equal(x.q.pck_done, 1);
    assert_int_equal(x.q.offset, (int64_t)f->pcklen);
}

/* X.pck and X.ins both there: the request's own earlier commit. */
static void test_ins_already_in(void **state)
{
    struct fx *f = *state;
    struct xfer x;

    package(f, 4096, &x);
    put_bytes(f->rxfd, f->xpck, f->pck, f->pcklen);
    put_bytes(f->rxfd, f->xins, INS_TEXT, strlen(INS_TEXT));
    x.q.pck_done = 1;
    x.q.offset = (int64_t)f->pcklen;
    xfer_run(&x);
    assert_sent(&x);
    assert_delivered(f);

    /* And the same with the package file sent again first (pck_done
     * never recorded): still one of each. */
    package(f, 4096, &x);
    xfer_run(&x);
    assert_sent(&x);
    assert_delivered(f);
}

/* ---- (6), (7) failures ----------------------------------------------- */

static void test_receive_missing(void **state)
{
    struct fx *f = *state;
    struct xfer x;

    package(f, 1000, &x);
    assert_int_equal(ss_fmt(x.address, sizeof x.address, "file:%s/nosuch", f->root), 0);
    xfer_run(&x);
    assert_int_equal(x.rc, -ENOENT);
    assert_int_equal(x.fatal, 0);
    assert_true(x.err[0] != '\0');
    assert_int_equal(tu_count_at(f->rxfd), 1);

    /* A receive directory without its .tmp: a site not set up, or a
     * share half mounted; the request itself is fine. */
    package(f, 1000, &x);
    assert_int_equal(unlinkat(f->rxfd, ".tmp", AT_REMOVEDIR), 0);
    xfer_run(&x);
    assert_true(x.rc < 0);
    assert_int_equal(x.fatal, 0);
    assert_true(x.err[0] != '\0');
    assert_int_equal(tu_count_at(f->rxfd), 0);
}

static void test_source_missing(void **state)
{
    struct fx *f = *state;
    struct xfer x;
    char name[UNIQ_NAME_MAX + 8];

    /* No package file. */
    package(f, 1000, &x);
    assert_int_equal(ss_fmt(name, sizeof name, "%s.pck", f->R), 0);
    assert_int_equal(unlinkat(f->tosendfd, name, 0), 0);
    xfer_run(&x);
    assert_int_equal(x.rc, -ENOENT);
    assert_int_equal(x.fatal, 1);
    assert_false(tu_exists(f->rxfd, f->xins));
    assert_false(tu_exists(f->rxfd, f->xpck));

    /* No instruction (the package file went first). */
    package(f, 1000, &x);
    assert_int_equal(ss_fmt(name, sizeof name, "%s.ins", f->R), 0);
    assert_int_equal(unlinkat(f->tosendfd, name, 0), 0);
    xfer_run(&x);
    assert_int_equal(x.rc, -ENOENT);
    assert_int_equal(x.fatal, 1);
    assert_false(tu_exists(f->rxfd, f->xins));
    assert_int_equal(tu_count_at(f->rxtmpfd), 0);
}

/* ---- (8) stopped before the start ----------------------------------- */

static void test_stopped(void **state)
{
    struct fx *f = *state;
    struct xfer x;

    package(f, (2u << 20) + 1, &x);
    f->stop = 1;
    xfer_run(&x);
    assert_int_equal(x.rc, -ECANCELED);
    assert_false(tu_exists(f->rxfd, f->xins));
    assert_false(tu_exists(f->rxfd, f->xpck));
    assert_int_equal(x.q.pck_done, 0);
    assert_int_equal(x.q.offset, 0);

    /* A status bundle too: no commit once stopped. */
    package(f, 0, &x);
    x.q.pck_done = 1;
    xfer_run(&x);
    assert_int_equal(x.rc, -ECANCELED);
    assert_false(tu_exists(f->rxfd, f->xins));
    f->stop = 0;
}

/* ---- (9) addresses ---------------------------------------------------- */

static void test_addresses(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *address, *want;
    } paths[] = {
        { "file:/srv/b01/receive", "/srv/b01/receive" },
        { "file:/", "/" },
        { "file:relative/receive", NULL },
        { "file:", NULL },
        { "file://host/share", "//host/share" },
        { "smb://host/share", NULL },
        { "FILE:/srv", NULL },
        { "/srv/b01/receive", NULL },
        { "", NULL },
        { "fil", NULL },
    };

    for (size_t i = 0; i < SS_ARRAY_LEN(paths); i++) {
        const char *got = xfer_file_path(paths[i].address);
        if (paths[i].want == NULL ? got != NULL : got == NULL || strcmp(got, paths[i].want))
            fail_msg("xfer_file_path('%s') = '%s'", paths[i].address, got ? got : "(null)");
    }

    static const char *const bad[] = { "smb://x", "file:relative", "file:", "", "nfs:/srv" };
    for (size_t i = 0; i < SS_ARRAY_LEN(bad); i++) {
        struct xfer x;
        package(f, 100, &x);
        (void)ss_strcpy(x.address, sizeof x.address, bad[i]);
        xfer_run(&x);
        if (x.rc != -EINVAL || x.err[0] == '\0')
            fail_msg("address '%s': %d '%s'", bad[i], x.rc, x.err);
        assert_int_equal(tu_count_at(f->rxfd), 1);
    }
}

/* ---- (10) a status bundle ------------------------------------------- */

static void test_status(void **state)
{
    struct fx *f = *state;
    struct sendreq q;
    struct xfer x;
    char name[UNIQ_NAME_MAX + 8];
    unsigned char sts[5000];

    pattern(sts, sizeof sts, 3);
    assert_int_equal(ss_fmt(name, sizeof name, "%s.sts", f->R), 0);
    put_bytes(f->tosendfd, name, sts, sizeof sts);
    init_req(f, &q, SEND_STATUS, sizeof sts);
    init_xfer(f, &x, &q);
    xfer_run(&x);
    assert_sent(&x);
    assert_int_equal(ss_fmt(name, sizeof name, "%s.sts", f->X), 0);
    assert_bytes(f->rxfd, name, sts, sizeof sts);
    assert_int_equal(tu_count_at(f->rxfd), 2);          /* X.sts, .tmp */
    assert_int_equal(tu_count_at(f->rxtmpfd), 0);
    assert_int_equal(x.written, (int64_t)sizeof sts);

    /* Its source gone: fatal. */
    assert_int_equal(ss_fmt(name, sizeof name, "%s.sts", f->R), 0);
    assert_int_equal(unlinkat(f->tosendfd, name, 0), 0);
    base_name(f->X, sizeof f->X, "CEN");
    init_req(f, &q, SEND_STATUS, sizeof sts);
    init_xfer(f, &x, &q);
    xfer_run(&x);
    assert_int_equal(x.rc, -ENOENT);
    assert_int_equal(x.fatal, 1);
    assert_int_equal(tu_count_at(f->rxfd), 2);
}

/* ---- (11) stopped after a confirmed offset, resumed ------------------ */

struct watch {
    struct fx    *f;
    int           ifd;         /* inotify on requests/ */
    volatile int  done;        /* the transfer returned */
    int64_t       seen;        /* the offset > 0 read from R.srq that stopped it */
    int           late;        /* R.srq said pck_done before we stopped it */
};

/* Wait for requests/R.srq to be renamed in (inotify, so that the kernel
 * wakes us at once: a thread spinning on it loses the CPU to the copy
 * under load), and at the first record of a confirmed offset with the
 * package file not yet done, raise the stop flag.  Give up when the
 * transfer has returned. */
static void *watcher(void *arg)
{
    struct watch *w = arg;
    struct sendreq q;
    char err[SS_ERR_MAX];
    char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

    while (!w->done) {
        struct pollfd pfd = { w->ifd, POLLIN, 0 };
        if (poll(&pfd, 1, 5) <= 0 || read(w->ifd, ev, sizeof ev) <= 0)
            continue;
        if (srq_load(w->f->reqfd, w->f->srq, &q, err, sizeof err) != 0 || q.offset == 0)
            continue;
        if (q.pck_done) {
            w->late = 1;
            break;
        }
        w->seen = q.offset;
        w->f->stop = 1;
        break;
    }
    return NULL;
}

static void *runner(void *arg)
{
    xfer_run(arg);
    return NULL;
}

#define BIG ((size_t)(40u << 20) + 4099)

static void test_stop_and_resume(void **state)
{
    struct fx *f = *state;
    struct xfer x;
    struct sendreq rec;
    char err[SS_ERR_MAX] = "";
    int64_t seen = 0;
    int tries;

    /* The stop may come too late (the last 8 MiB copied before the
     * watcher runs, under load): then start again from nothing, a few
     * times. */
    for (tries = 0; tries < 10; tries++) {
        struct watch w = { f, -1, 0, 0, 0 };
        pthread_t tw, tr;
        char path[SS_PATH_MAX];

        (void)unlinkat(f->rxfd, f->xpck, 0);
        (void)unlinkat(f->rxfd, f->xins, 0);
        (void)unlinkat(f->rxtmpfd, f->xpart, 0);
        f->stop = 0;
        package(f, BIG, &x);
        assert_int_equal(ss_path(path, sizeof path, "%s/requests", f->root), 0);
        assert_true((w.ifd = inotify_init1(IN_CLOEXEC)) >= 0);
        assert_true(inotify_add_watch(w.ifd, path, IN_MOVED_TO) >= 0);
        assert_int_equal(pthread_create(&tw, NULL, watcher, &w), 0);
        assert_int_equal(pthread_create(&tr, NULL, runner, &x), 0);
        assert_int_equal(pthread_join(tr, NULL), 0);
        w.done = 1;
        assert_int_equal(pthread_join(tw, NULL), 0);
        close(w.ifd);
        if (w.seen == 0 && !w.late)
            fail_msg("no offset was ever recorded in requests/%s (rc %d, %s; see "
                     "test_progress_recorded)", f->srq, x.rc, x.err);
        seen = w.seen;
        if (x.rc == -ECANCELED && !x.q.pck_done)
            break;
        /* Too late: stopped between the package file and the commit, or
         * not stopped at all. */
        if (x.rc == -ECANCELED)
            assert_false(tu_exists(f->rxfd, f->xins));
        else
            assert_sent(&x);
    }
    if (tries == 10)
        fail_msg("the transfer was never stopped in time (10 tries)");
    if (tries > 0)
        print_message("stopped in time at try %d\n", tries + 1);
    f->stop = 0;

    /* The first confirmation is a whole resume step (1 MiB writes). */
    assert_int_equal(seen, 32LL << 20);
    /* Stopped: nothing committed, the stop position recorded. */
    assert_false(tu_exists(f->rxfd, f->xins));
    assert_false(tu_exists(f->rxfd, f->xpck));
    assert_int_equal(srq_load(f->reqfd, f->srq, &rec, err, sizeof err), 0);
    assert_int_equal(rec.pck_done, 0);
    assert_true(rec.offset >= 32LL << 20);
    assert_true(rec.offset < (int64_t)BIG);
    assert_int_equal(rec.offset, x.q.offset);
    assert_int_equal(x.resumed_at, 0);
    /* The part file holds at least what was recorded. */
    assert_true(file_size(f->rxtmpfd, f->xpart) >= rec.offset);

    /* The next attempt starts from the recorded request alone. */
    init_xfer(f, &x, &rec);
    xfer_run(&x);
    assert_sent(&x);
    assert_int_equal(x.resumed_at, rec.offset);
    assert_int_equal(x.written, (int64_t)BIG - rec.offset + (int64_t)strlen(INS_TEXT));
    assert_delivered(f);
    assert_int_equal(srq_load(f->reqfd, f->srq, &rec, err, sizeof err), 0);
    assert_int_equal(rec.pck_done, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_package, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pck_already_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ins_already_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_and_resume, setup, teardown),
    };

    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
