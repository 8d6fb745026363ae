/*
 * test_inbox.c - unit tests for lib/inbox.c: the declared table, the
 * writer's drop (one and many), the reader's scan, claim, done, return,
 * quarantine (with its .reason file and status message), start-up
 * recovery and the backlog counts.  Each test gets a fresh site root with
 * the whole inbox tree under $TMPDIR.
 *
 * The hand-over rule (an error means not handed over) and the choice
 * between syncfs and an fsync per file are tested with fake fsync, syncfs
 * and uname defined in this file (see "Fault injection").
 */
#include "testutil.h"

#include <stdio.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>

#include "inbox.h"
#include "statmsg.h"
#include "util.h"

struct fx {
    char root[SS_PATH_MAX];
    struct inbox w;     /* writer */
    struct inbox r;     /* reader */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    if (f == NULL)
        return -1;
    *state = f;
    f->w.dirfd = f->w.tmpfd = f->w.workfd = f->w.corruptfd = -1;
    f->r = f->w;
    if (tu_mkdtemp(f->root, sizeof f->root, "test_inbox") < 0 ||
        inbox_create_tree(f->root) < 0)
        return -1;
    sm_set_identity(f->root, "CEN", "test_inbox");
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    inbox_close(&f->w);
    inbox_close(&f->r);
    int r = ss_rm_rf(f->root);
    free(f);
    return r;
}

static void open_both(struct fx *f, enum inbox_id id)
{
    assert_int_equal(inbox_open(&f->w, f->root, id, "CEN", 0), 0);
    assert_int_equal(inbox_open(&f->r, f->root, id, "CEN", 1), 0);
}

/* Entries of inboxes/<sub> in a site root. */
static size_t count_path(const char *root, const char *sub)
{
    char path[SS_PATH_MAX];
    assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/%s", root, sub), 0);
    return tu_count(path);
}

/* A file in .tmp/ or the inbox with the given age in seconds. */
static void set_age(int dfd, const char *name, time_t age)
{
    struct timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = time(NULL) - age;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    assert_int_equal(utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW), 0);
}

/* ---- fault injection -------------------------------------------------- */

/*
 * This binary defines fsync, syncfs and uname: the library's calls resolve
 * to these, since a program's own definition comes before the C
 * library's.  They count calls, fail on request and report the kernel
 * release a test asks for; they do no I/O.  Only the tests that call
 * fake_start() switch fsync on; the others run with
 * SITESRV_UNSAFE_NOFSYNC=1 and never get here.
 */
static struct {
    int         file_fsyncs, dir_fsyncs, syncfs_calls;
    int         fail_file_fsync, fail_dir_fsync, fail_syncfs;  /* errno, 0: succeed */
    const char *release;                                        /* NULL: the real one */
    struct inbox *watch;        /* an inbox: count its files at each data sync */
    int         visible_at_sync;  /* the most files it held at a data sync */
} fake;

/* Files (not dot files, not directories) in the watched inbox now. */
static void note_visible(void)
{
    struct inbox_entry ents[80];
    size_t n = 0;

    if (fake.watch == NULL || inbox_scan(fake.watch, ents, SS_ARRAY_LEN(ents), &n) < 0)
        return;
    if ((int)n > fake.visible_at_sync)
        fake.visible_at_sync = (int)n;
}

int fsync(int fd)
{
    struct stat st;
    int e;

    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        fake.dir_fsyncs++;
        e = fake.fail_dir_fsync;
    } else {
        fake.file_fsyncs++;
        note_visible();
        e = fake.fail_file_fsync;
    }
    if (e != 0) {
        errno = e;
        return -1;
    }
    return 0;
}

int syncfs(int fd)
{
    fake.syncfs_calls++;
    note_visible();
    if (fake.fail_syncfs != 0) {
        errno = fake.fail_syncfs;
        return -1;
    }
    return 0;
}

int uname(struct utsname *u)
{
    if (syscall(SYS_uname, u) < 0)
        return -1;
    if (fake.release != NULL)
        snprintf(u->release, sizeof u->release, "%s", fake.release);
    return 0;
}

/* fsync on (through the fakes), counters at zero, the given kernel. */
static void fake_start(const char *release)
{
    memset(&fake, 0, sizeof fake);
    fake.release = release;
    assert_int_equal(setenv(SS_NOFSYNC_ENV, "0", 1), 0);
    ss_fsync_reset();
}

static int fake_teardown(void **state)
{
    memset(&fake, 0, sizeof fake);
    setenv(SS_NOFSYNC_ENV, "1", 1);
    ss_fsync_reset();
    return teardown(state);
}

/* n items "item 0", "item 1"... in data[]. */
static void make_items(struct inbox_item *items, char (*data)[16], int n)
{
    for (int i = 0; i < n; i++) {
        assert_int_equal(ss_fmt(data[i], sizeof data[i], "item %d", i), 0);
        items[i].data = data[i];
        items[i].len = strlen(data[i]);
    }
}

/* Files waiting in the reader's inbox. */
static size_t inbox_files(struct fx *f)
{
    struct inbox_entry ents[64];
    size_t n;

    assert_int_equal(inbox_scan(&f->r, ents, SS_ARRAY_LEN(ents), &n), 0);
    return n;
}

/* ---- tests ----------------------------------------------------------- */

static void test_table_and_tree(void **state)
{
    struct fx *f = *state;
    char path[SS_PATH_MAX];
    struct stat st;

    mode_t mask = umask(0);
    umask(mask);
    assert_string_equal(inbox_defs[IB_STATMSGS].path, "statmgr.box/statmsgs");
    assert_string_equal(inbox_defs[IB_CAP].reader, "statmgr");
    for (size_t i = 0; i < IB_COUNT; i++) {
        assert_int_equal(inbox_defs[i].id, i);
        static const char *const sub[] = { "", "/.tmp", "/work", "/corrupt" };
        for (size_t j = 0; j < SS_ARRAY_LEN(sub); j++) {
            assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/%s%s", f->root,
                                     inbox_defs[i].path, sub[j]), 0);
            if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
                fail_msg("missing %s", path);
            assert_int_equal(st.st_mode & 0777, 0750 & ~mask);
        }
    }
    /* Creating it again is fine. */
    assert_int_equal(inbox_create_tree(f->root), 0);

    static const struct { const char *label; enum inbox_id id; const char *sfx; int want; } t[] = {
        { "statmsgs .svf",      IB_STATMSGS, ".svf", 1 },
        { "statmsgs .job",      IB_STATMSGS, ".job", 0 },
        { "tosend .ins",        IB_TOSEND,   ".ins", 1 },
        { "tosend .pck",        IB_TOSEND,   ".pck", 1 },
        { "tosend .pc",         IB_TOSEND,   ".pc",  0 },
        { "tosend .ins .pck",   IB_TOSEND,   ".ins .pck", 0 },
        { "sitebkup .bkt",      IB_SITEBKUP, ".bkt", 1 },
        { "distmgr empty",      IB_DISTMGR,  "",     0 },
        { "distmgr NULL",       IB_DISTMGR,  NULL,   0 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++)
        if (inbox_accepts(t[i].id, t[i].sfx) != t[i].want)
            fail_msg("%s: want %d", t[i].label, t[i].want);
}

static void test_open(void **state)
{
    struct fx *f = *state;
    char path[SS_PATH_MAX];

    assert_int_equal(inbox_open(&f->w, f->root, IB_SCHEDULE, "my-host.x", 0), 0);
    assert_true(f->w.dirfd >= 0 && f->w.tmpfd >= 0);
    assert_int_equal(f->w.workfd, -1);
    assert_int_equal(f->w.corruptfd, -1);
    assert_string_equal(f->w.prefix, "my_host_x");
    assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/schedule.box", f->root), 0);
    assert_string_equal(f->w.path, path);
    /* A writer cannot claim. */
    assert_int_equal(inbox_claim(&f->w, "x"), -EBADF);
    inbox_close(&f->w);
    inbox_close(&f->w);     /* twice is harmless */

    /* An arbitrary directory: .tmp/ is created for writers too, work/
     * and corrupt/ for readers. */
    assert_int_equal(ss_path(path, sizeof path, "%s/share", f->root), 0);
    assert_int_equal(mkdir(path, 0750), 0);
    assert_int_equal(inbox_open_path(&f->w, path, IB_CAP, "CLI01", 0), 0);
    assert_true(tu_exists(f->w.dirfd, ".tmp"));
    assert_false(tu_exists(f->w.dirfd, "work"));
    assert_int_equal(inbox_open_path(&f->r, path, IB_CAP, "CEN", 1), 0);
    assert_true(tu_exists(f->r.dirfd, "work"));
    assert_true(tu_exists(f->r.dirfd, "corrupt"));

    /* A missing inbox is not created behind the caller's back. */
    struct inbox x;
    assert_int_equal(ss_path(path, sizeof path, "%s/nosuchsite", f->root), 0);
    assert_int_equal(inbox_open(&x, path, IB_STATMSGS, "CEN", 1), -ENOENT);
    assert_int_equal(x.dirfd, -1);
    inbox_close(&x);
    assert_int_equal(inbox_open(&x, f->root, IB_COUNT, "CEN", 1), -EINVAL);
}

static void test_drop_then_scan(void **state)
{
    struct fx *f = *state;
    char name[UNIQ_NAME_MAX];
    struct inbox_entry ents[8];
    size_t n = 99;

    open_both(f, IB_STATMSGS);
    assert_int_equal(inbox_drop(&f->w, ".svf", "hello\n", 6, name, sizeof name), 0);
    assert_true(uniq_name_ok(name, ".svf"));
    assert_memory_equal(name, "CEN-", 4);
    tu_assert_content(f->w.dirfd, name, "hello\n");
    assert_int_equal(tu_count_at(f->w.tmpfd), 0);     /* nothing left behind */

    assert_int_equal(inbox_scan(&f->r, ents, SS_ARRAY_LEN(ents), &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ents[0].name, name);
    assert_int_equal(ents[0].odd, 0);

    /* A name buffer too small is refused before anything is handed
     * over (a caller retrying would otherwise send the file twice). */
    char small[20];
    assert_int_equal(inbox_drop(&f->w, ".svf", "x", 1, small, sizeof small), -ENOSPC);
    assert_int_equal(inbox_scan(&f->r, ents, SS_ARRAY_LEN(ents), &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(tu_count_at(f->w.tmpfd), 0);

    /* Empty data is a valid file too. */
    assert_int_equal(inbox_drop(&f->w, ".svf", "", 0, NULL, 0), 0);
    assert_int_equal(inbox_scan(&f->r, ents, SS_ARRAY_LEN(ents), &n), 0);
    assert_int_equal(n, 2);
}

static void test_drop_wrong_suffix(void **state)
{
    struct fx *f = *state;
    char name[UNIQ_NAME_MAX] = "";

    open_both(f, IB_STATMSGS);
    assert_int_equal(inbox_drop(&f->w, ".job", "x", 1, name, sizeof name), -EPERM);
    assert_int_equal(inbox_drop(&f->w, "svf", "x", 1, name, sizeof name), -EPERM);
    size_t done = 7;
    struct inbox_item it = { "x", 1 };
    assert_int_equal(inbox_drop_many(&f->w, ".pkg", &it, 1, &done), -EPERM);
    assert_int_equal(done, 0);
    /* Nothing written anywhere: inbox holds only .tmp, work, corrupt. */
    assert_int_equal(tu_count_at(f->w.dirfd), 3);
    assert_int_equal(tu_count_at(f->w.tmpfd), 0);
}

static void test_scan_skips_and_flags(void **state)
{
    struct fx *f = *state;
    char good[UNIQ_NAME_MAX], wrongsfx[UNIQ_NAME_MAX];
    struct inbox_entry ents[16];
    size_t n;

    open_both(f, IB_SCHEDULE);      /* has the requests/ and tosend/ subdirs */
    assert_int_equal(inbox_drop(&f->w, ".job", "job", 3, good, sizeof good), 0);
    assert_int_equal(uniq_name(wrongsfx, sizeof wrongsfx, "CEN", ".svf"), 0);
    tu_put(f->w.dirfd, wrongsfx, "misrouted");
    tu_put(f->w.dirfd, ".hidden", "dot file");
    tu_put(f->w.dirfd, "hello.job", "foreign name");
    tu_put(f->w.dirfd, "bad\nname.job", "newline");
    tu_put(f->w.dirfd, "CEN-0123456789ABCDEF0123456789ABCDEF.job", "upper hex");
    assert_int_equal(mkdirat(f->w.dirfd, "somedir", 0750), 0);
    assert_int_equal(symlinkat(good, f->w.dirfd, "CEN-00000000000000000000000000000000.job"), 0);

    assert_int_equal(inbox_scan(&f->r, ents, SS_ARRAY_LEN(ents), &n), 0);
    /* good, wrong suffix, hello.job, newline, upper hex, symlink. */
    assert_int_equal(n, 6);
    int seen_good = 0, odd = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(ents[i].name[0] != '.');
        assert_string_not_equal(ents[i].name, "somedir");
        assert_string_not_equal(ents[i].name, "requests");
        assert_string_not_equal(ents[i].name, "work");
        if (strcmp(ents[i].name, good) == 0) {
            seen_good = 1;
            assert_int_equal(ents[i].odd, 0);
        } else {
            assert_int_equal(ents[i].odd, 1);
            odd++;
        }
    }
    assert_true(seen_good);
    assert_int_equal(odd, 5);

    /* Bounded: at most max per call. */
    assert_int_equal(inbox_scan(&f->r, ents, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(inbox_scan(&f->r, ents, 0, &n), 0);
    assert_int_equal(n, 0);
}

static void test_claim_done_return(void **state)
{
    struct fx *f = *state;
    char name[UNIQ_NAME_MAX];

    open_both(f, IB_STATMSGS);
    assert_int_equal(inbox_drop(&f->w, ".svf", "msg", 3, name, sizeof name), 0);

    assert_int_equal(inbox_claim(&f->r, name), 0);
    assert_false(tu_exists(f->r.dirfd, name));
    tu_assert_content(f->r.workfd, name, "msg");
    /* Taken already. */
    assert_int_equal(inbox_claim(&f->r, name), -ENOENT);

    assert_int_equal(inbox_return(&f->r, name), 0);
    assert_false(tu_exists(f->r.workfd, name));
    tu_assert_content(f->r.dirfd, name, "msg");

    assert_int_equal(inbox_claim(&f->r, name), 0);
    assert_int_equal(inbox_done(&f->r, name), 0);
    assert_false(tu_exists(f->r.workfd, name));
    assert_false(tu_exists(f->r.dirfd, name));
    assert_int_equal(inbox_done(&f->r, name), -ENOENT);

    assert_int_equal(inbox_claim(&f->r, "CEN-00000000000000000000000000000000.svf"), -ENOENT);
    assert_int_equal(inbox_claim(&f->r, "../escape"), -EINVAL);
    assert_int_equal(inbox_claim(&f->r, ""), -EINVAL);
    assert_int_equal(inbox_claim(&f->r, ".."), -EINVAL);
}

static void test_return_never_replaces(void **state)
{
    struct fx *f = *state;
    char name[UNIQ_NAME_MAX];

    /* An odd name claimed, then a file of the same name dropped again by
     * someone: the return picks a new name and both survive. */
    open_both(f, IB_STATMSGS);
    tu_put(f->r.dirfd, "client.svf", "first");
    assert_int_equal(inbox_claim(&f->r, "client.svf"), 0);
    tu_put(f->r.dirfd, "client.svf", "second");
    assert_int_equal(inbox_return(&f->r, "client.svf"), 0);
    tu_assert_content(f->r.dirfd, "client.svf", "second");
    assert_int_equal(tu_count_at(f->r.workfd), 0);
    /* The inbox now holds client.svf and one <prefix>-<hex>.svf with
     * "first"; find it with a scan. */
    struct inbox_entry ents[8];
    size_t n;
    assert_int_equal(inbox_scan(&f->r, ents, 8, &n), 0);
    assert_int_equal(n, 2);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        if (!ents[i].odd) {
            tu_assert_content(f->r.dirfd, ents[i].name, "first");
            found = 1;
        }
    assert_true(found);
    (void)name;
}

/* The first name in corrupt/ that does not end in .reason. */
static void corrupt_files(int cfd, char *data, size_t dlen, size_t *ndata, size_t *nreason)
{
    int fd = openat(cfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fdopendir(fd);
    struct dirent *de;

    *ndata = *nreason = 0;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.')
            continue;
        if (l > 7 && strcmp(de->d_name + l - 7, ".reason") == 0) {
            (*nreason)++;
        } else {
            (*ndata)++;
            assert_int_equal(ss_strcpy(data, dlen, de->d_name), 0);
        }
    }
    closedir(d);
}

static void test_quarantine(void **state)
{
    struct fx *f = *state;
    const char *odd = "bad\nname\xff.txt";
    char q[SS_NAME_MAX + 1], rname[SS_NAME_MAX + 1];
    size_t nd, nr;

    open_both(f, IB_SCHEDULE);
    size_t before = count_path(f->root, "statmgr.box/statmsgs");
    tu_put(f->r.dirfd, odd, "evidence");
    assert_int_equal(inbox_quarantine(&f->r, 0, odd, "not a name we write"), 0);
    assert_false(tu_exists(f->r.dirfd, odd));

    corrupt_files(f->r.corruptfd, q, sizeof q, &nd, &nr);
    assert_int_equal(nd, 1);
    assert_int_equal(nr, 1);
    /* A safe name; the original had no suffix this inbox takes, so ".bad". */
    assert_true(uniq_name_ok(q, ".bad"));
    assert_memory_equal(q, "corrupt-", 8);
    tu_assert_content(f->r.corruptfd, q, "evidence");

    assert_int_equal(ss_path(rname, sizeof rname, "%s.reason", q), 0);
    char *txt;
    size_t len;
    assert_int_equal(ss_read_file(f->r.corruptfd, rname, 4096, &txt, &len), 0);
    assert_non_null(strstr(txt, "bad\\nname\\xff.txt"));     /* escaped */
    assert_non_null(strstr(txt, "not a name we write"));
    assert_null(strchr(txt, '\xff'));
    free(txt);

    /* The status message went to statmgr's inbox. */
    char sm[SS_NAME_MAX + 1];
    assert_int_equal(count_path(f->root, "statmgr.box/statmsgs"), before + 1);
    struct inbox s;
    assert_int_equal(inbox_open(&s, f->root, IB_STATMSGS, "T", 1), 0);
    struct inbox_entry ents[4];
    size_t n;
    assert_int_equal(inbox_scan(&s, ents, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ents[0].odd, 0);
    assert_int_equal(ss_strcpy(sm, sizeof sm, ents[0].name), 0);
    assert_int_equal(ss_read_file(s.dirfd, sm, SM_FILE_MAX, &txt, &len), 0);
    struct statmsg m;
    char err[SS_ERR_MAX];
    if (sm_parse(&m, txt, len, err, sizeof err) != 0)
        fail_msg("status message does not parse: %s", err);
    assert_int_equal(m.id, SM_CORRUPT_FILE);
    assert_non_null(sm_attr_get(&m, "Inbox"));
    assert_string_equal(sm_attr_get(&m, "Inbox"), f->r.path);
    free(txt);
    inbox_close(&s);

    /* From work/, with a name of ours: the suffix is kept. */
    char name[UNIQ_NAME_MAX];
    assert_int_equal(inbox_drop(&f->w, ".job", "j", 1, name, sizeof name), 0);
    assert_int_equal(inbox_claim(&f->r, name), 0);
    assert_int_equal(inbox_quarantine(&f->r, 1, name, "does not parse"), 0);
    assert_false(tu_exists(f->r.workfd, name));
    corrupt_files(f->r.corruptfd, q, sizeof q, &nd, &nr);
    assert_int_equal(nd, 2);
    assert_int_equal(nr, 2);

    /* Gone meanwhile: an error, nothing written. */
    assert_int_equal(inbox_quarantine(&f->r, 1, name, "x"), -ENOENT);
    corrupt_files(f->r.corruptfd, q, sizeof q, &nd, &nr);
    assert_int_equal(nd, 2);
}

static void test_quarantine_long_name(void **state)
{
    struct fx *f = *state;
    char lng[256], q[SS_NAME_MAX + 1];
    size_t nd, nr;

    open_both(f, IB_STATMSGS);
    memset(lng, 'z', 255);
    memcpy(lng + 251, ".svf", 4);
    lng[255] = '\0';
    tu_put(f->r.dirfd, lng, "long");
    assert_int_equal(inbox_quarantine(&f->r, 0, lng, "name too long"), 0);
    corrupt_files(f->r.corruptfd, q, sizeof q, &nd, &nr);
    assert_int_equal(nd, 1);
    assert_int_equal(nr, 1);
    /* The inbox accepts .svf, so the kind survives quarantine. */
    assert_true(uniq_name_ok(q, ".svf"));
    tu_assert_content(f->r.corruptfd, q, "long");
    assert_false(tu_exists(f->r.dirfd, lng));
}

static void test_recover(void **state)
{
    struct fx *f = *state;
    char a[UNIQ_NAME_MAX], b[UNIQ_NAME_MAX];
    size_t ret = 99, rem = 99;

    open_both(f, IB_STATMSGS);
    assert_int_equal(inbox_drop(&f->w, ".svf", "a", 1, a, sizeof a), 0);
    assert_int_equal(inbox_drop(&f->w, ".svf", "b", 1, b, sizeof b), 0);
    assert_int_equal(inbox_claim(&f->r, a), 0);
    assert_int_equal(inbox_claim(&f->r, b), 0);
    tu_put(f->w.tmpfd, "stale", "a writer died");
    set_age(f->w.tmpfd, "stale", INBOX_TMP_STALE_S + 600);
    tu_put(f->w.tmpfd, "live", "a writer at work");
    set_age(f->w.tmpfd, "live", 60);
    tu_put(f->w.tmpfd, "new", "just now");

    assert_int_equal(inbox_recover(&f->r, &ret, &rem), 0);
    assert_int_equal(ret, 2);
    assert_int_equal(rem, 1);
    assert_int_equal(tu_count_at(f->r.workfd), 0);
    tu_assert_content(f->r.dirfd, a, "a");
    tu_assert_content(f->r.dirfd, b, "b");
    assert_false(tu_exists(f->r.tmpfd, "stale"));
    assert_true(tu_exists(f->r.tmpfd, "live"));
    assert_true(tu_exists(f->r.tmpfd, "new"));

    /* Nothing to do the second time. */
    assert_int_equal(inbox_recover(&f->r, &ret, &rem), 0);
    assert_int_equal(ret, 0);
    assert_int_equal(rem, 0);
    assert_int_equal(inbox_recover(&f->r, NULL, NULL), 0);

    /* A reader whose writers resume files in .tmp/ keeps them longer: a
     * two-hour-old part file stays with an 8-day age, goes at 9 days. */
    size_t kept = 0;
    tu_put(f->w.tmpfd, "part", "resumed later");
    set_age(f->w.tmpfd, "part", 7200);
    assert_int_equal(inbox_recover_aged(&f->r, 8 * 86400, &ret, &rem), 0);
    assert_int_equal(rem, 0);
    assert_true(tu_exists(f->r.tmpfd, "part"));
    set_age(f->w.tmpfd, "part", 9 * 86400);
    assert_int_equal(inbox_sweep_tmp(&f->r, 8 * 86400, &rem, &kept), 0);
    assert_int_equal(rem, 1);
    assert_int_equal(kept, 2);          /* "live" and "new" */
    assert_false(tu_exists(f->r.tmpfd, "part"));
}

static void test_drop_many(void **state)
{
    struct fx *f = *state;
    enum { N = 100 };
    struct inbox_item items[N];
    char data[N][16];
    struct inbox_entry ents[N + 10];
    size_t done = 0, n;

    open_both(f, IB_STATMSGS);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ss_fmt(data[i], sizeof data[i], "item %d", i), 0);
        items[i].data = data[i];
        items[i].len = strlen(data[i]);
    }
    assert_int_equal(inbox_drop_many(&f->w, ".svf", items, N, &done), 0);
    assert_int_equal(done, N);
    assert_int_equal(tu_count_at(f->w.tmpfd), 0);
    assert_int_equal(inbox_scan(&f->r, ents, SS_ARRAY_LEN(ents), &n), 0);
    assert_int_equal(n, N);

    /* Every item exactly once. */
    int seen[N] = { 0 };
    for (size_t i = 0; i < n; i++) {
        char *buf;
        size_t len;
        long long k;
        assert_int_equal(ents[i].odd, 0);
        assert_int_equal(ss_read_file(f->r.dirfd, ents[i].name, 64, &buf, &len), 0);
        assert_memory_equal(buf, "item ", 5);
        assert_int_equal(ss_parse_int(buf + 5, 0, N - 1, &k), 0);
        seen[k]++;
        free(buf);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);

    assert_int_equal(inbox_drop_many(&f->w, ".svf", items, 0, &done), 0);
    assert_int_equal(done, 0);
}

/* Paging through an inbox whose entries stay put (statmgr's futureq):
 * every entry is seen once, in pages, and then the end is reported. */
static void test_cursor_pages(void **state)
{
    struct fx *f = *state;
    enum { N = 25, PAGE = 10 };
    struct inbox_entry ents[PAGE];
    struct inbox_cursor c;
    char names[N][SS_NAME_MAX + 1];
    size_t n, total = 0, pages = 0;

    open_both(f, IB_FUTUREQ);
    for (int i = 0; i < N; i++)
        assert_int_equal(inbox_drop(&f->w, ".svf", "x", 1, names[i], sizeof names[i]), 0);
    assert_int_equal(inbox_cursor_open(&f->r, &c), 0);
    for (;;) {
        assert_int_equal(inbox_cursor_next(&c, ents, PAGE, &n), 0);
        if (n == 0)
            break;
        pages++;
        for (size_t i = 0; i < n; i++) {
            int found = 0;
            for (int k = 0; k < N; k++)
                if (strcmp(names[k], ents[i].name) == 0) {
                    found = 1;
                    names[k][0] = '\0';       /* seen: a second sighting fails */
                }
            assert_true(found);
            total++;
        }
    }
    inbox_cursor_close(&c);
    assert_int_equal(total, N);
    assert_int_equal(pages, 3);
}

static void test_commit_tmp(void **state)
{
    struct fx *f = *state;
    char tmp[UNIQ_NAME_MAX], name[UNIQ_NAME_MAX];
    int fd;

    open_both(f, IB_TOSEND);
    assert_int_equal(uniq_create(f->w.tmpfd, f->w.prefix, ".pck", tmp, sizeof tmp, &fd), 0);
    assert_int_equal(ss_write_all(fd, "package", 7), 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(inbox_commit_tmp(&f->w, tmp, ".pck", 0, name, sizeof name), 0);
    assert_string_equal(name, tmp);     /* the drawn name is kept */
    tu_assert_content(f->w.dirfd, name, "package");
    assert_false(tu_exists(f->w.tmpfd, tmp));

    /* A caller's own temporary name gets a unique one in the inbox. */
    tu_put(f->w.tmpfd, "building", "instruction");
    assert_int_equal(inbox_commit_tmp(&f->w, "building", ".ins", 1, name, sizeof name), 0);
    assert_true(uniq_name_ok(name, ".ins"));
    tu_assert_content(f->w.dirfd, name, "instruction");
    assert_int_equal(inbox_commit_tmp(&f->w, "building", ".ins", 1, name, sizeof name), -ENOENT);
}

/* A failed directory fsync comes after the move: the file is handed over
 * (the reader may have it), so every hand-over call reports success, and
 * a caller that retries does not send it twice. */
static void test_dir_sync_failure_is_handed_over(void **state)
{
    struct fx *f = *state;
    char name[UNIQ_NAME_MAX], tmp[UNIQ_NAME_MAX], data[8][16];
    struct inbox_item items[8];
    size_t done = 99;
    int fd;

    fake_start("6.1.0");
    fake.fail_dir_fsync = EIO;
    open_both(f, IB_STATMSGS);

    assert_int_equal(inbox_drop(&f->w, ".svf", "one", 3, name, sizeof name), 0);
    tu_assert_content(f->w.dirfd, name, "one");

    assert_int_equal(uniq_create(f->w.tmpfd, f->w.prefix, ".svf", tmp, sizeof tmp, &fd), 0);
    assert_int_equal(ss_write_all(fd, "two", 3), 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(inbox_commit_tmp(&f->w, tmp, ".svf", 0, name, sizeof name), 0);
    tu_assert_content(f->w.dirfd, name, "two");

    make_items(items, data, 8);
    assert_int_equal(inbox_drop_many(&f->w, ".svf", items, 8, &done), 0);
    assert_int_equal(done, 8);

    assert_int_equal(fake.dir_fsyncs, 3);       /* each was tried, and failed */
    assert_int_equal(inbox_files(f), 10);
    assert_int_equal(tu_count_at(f->w.tmpfd), 0);
}

/* The other half of the rule: a failure before the move is an error, and
 * then nothing was handed over (and nothing is left in .tmp/). */
static void test_file_sync_failure_hands_over_nothing(void **state)
{
    struct fx *f = *state;
    char name[UNIQ_NAME_MAX], data[10][16];
    struct inbox_item items[10];
    size_t done = 99;

    fake_start("6.1.0");
    open_both(f, IB_STATMSGS);
    make_items(items, data, 10);

    fake.fail_file_fsync = EIO;
    assert_int_equal(inbox_drop(&f->w, ".svf", "one", 3, name, sizeof name), -EIO);
    /* 3 files: below the syncfs batch size, an fsync each. */
    assert_int_equal(inbox_drop_many(&f->w, ".svf", items, 3, &done), -EIO);
    assert_int_equal(done, 0);

    fake.fail_file_fsync = 0;
    fake.fail_syncfs = EIO;
    assert_int_equal(inbox_drop_many(&f->w, ".svf", items, 10, &done), -EIO);
    assert_int_equal(done, 0);
    assert_int_equal(fake.syncfs_calls, 1);

    assert_int_equal(inbox_files(f), 0);
    assert_int_equal(tu_count_at(f->w.tmpfd), 0);
}

/* A batch is synced with one syncfs only where syncfs reports a failed
 * write-back (Linux 5.8 and later); before, an fsync per file.  (The
 * version parsing itself is tested in test_fsutil.) */
static void test_drop_many_sync_by_kernel(void **state)
{
    static const struct {
        const char *release;
        int         n;
        int         syncfs, file_fsyncs;
    } cases[] = {
        { "5.8.0", 64, 1, 0 },
        { "5.7.19", 10, 0, 10 },              /* syncfs hides errors there */
        { "6.1.0-18-amd64", 3, 0, 3 },        /* too few for syncfs */
        { "6.1.0-18-amd64", 70, 2, 0 },       /* two chunks */
    };
    struct fx *f = *state;
    char data[70][16];
    struct inbox_item items[70];

    open_both(f, IB_STATMSGS);
    make_items(items, data, 70);
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        size_t done = 0;
        fake_start(cases[i].release);
        assert_int_equal(inbox_drop_many(&f->w, ".svf", items, (size_t)cases[i].n, &done), 0);
        if ((int)done != cases[i].n || fake.syncfs_calls != cases[i].syncfs ||
            fake.file_fsyncs != cases[i].file_fsyncs || fake.dir_fsyncs != 1)
            fail_msg("kernel %s, %d files: done %zu, syncfs %d, file fsyncs %d, "
                     "dir fsyncs %d; want syncfs %d, file fsyncs %d, dir fsyncs 1",
                     cases[i].release, cases[i].n, done, fake.syncfs_calls,
                     fake.file_fsyncs, fake.dir_fsyncs, cases[i].syncfs,
                     cases[i].file_fsyncs);
    }
}

/* SPEC 4.2: a reader never sees a partial file.  While a writer makes its
 * data durable (fsync of the file, or the syncfs of a batch), nothing of
 * it is in the inbox yet: it is still in .tmp/, and appears only by the
 * rename after.  A writer that built its file in the inbox itself would
 * show it here at sync time. */
static void test_not_visible_before_durable(void **state)
{
    static const struct { const char *release; int n; } cases[] = {
        { "6.1.0", 1 },         /* inbox_drop: fsync of the file */
        { "6.1.0", 64 },        /* inbox_drop_many: one syncfs */
        { "5.7.0", 8 },         /* inbox_drop_many: an fsync per file */
    };
    struct fx *f = *state;
    char data[64][16];
    struct inbox_item items[64];

    open_both(f, IB_STATMSGS);
    make_items(items, data, 64);
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        size_t done = 0, n = 0;
        struct inbox_entry ents[80];
        fake_start(cases[i].release);
        fake.watch = &f->r;
        if (cases[i].n == 1)
            assert_int_equal(inbox_drop(&f->w, ".svf", "x", 1, NULL, 0), 0);
        else
            assert_int_equal(inbox_drop_many(&f->w, ".svf", items, (size_t)cases[i].n, &done), 0);
        assert_true(fake.file_fsyncs + fake.syncfs_calls > 0);
        if (fake.visible_at_sync != 0)
            fail_msg("kernel %s, %d file(s): %d visible in the inbox while being synced",
                     cases[i].release, cases[i].n, fake.visible_at_sync);
        /* ... and all there once handed over; then cleared for the next case. */
        assert_int_equal(inbox_scan(&f->r, ents, SS_ARRAY_LEN(ents), &n), 0);
        assert_int_equal(n, (size_t)cases[i].n);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(unlinkat(f->r.dirfd, ents[k].name, 0), 0);
    }
}

static void test_backlog(void **state)
{
    struct fx *f = *state;
    char path[SS_PATH_MAX], name[UNIQ_NAME_MAX];
    size_t files = 99, corrupt = 99;
    int64_t oldest = -1;

    open_both(f, IB_STATMSGS);
    assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/statmgr.box/statmsgs", f->root), 0);
    assert_int_equal(inbox_backlog(path, &files, &oldest, &corrupt), 0);
    assert_int_equal(files, 0);
    assert_int_equal(oldest, 0);
    assert_int_equal(corrupt, 0);

    assert_int_equal(inbox_drop(&f->w, ".svf", "1", 1, name, sizeof name), 0);
    set_age(f->w.dirfd, name, 5000);
    assert_int_equal(inbox_drop(&f->w, ".svf", "2", 1, NULL, 0), 0);
    tu_put(f->w.dirfd, "odd-but-waiting", "3");
    tu_put(f->w.dirfd, ".dotfile", "not counted");
    tu_put(f->w.tmpfd, "building", "not counted");
    assert_int_equal(mkdirat(f->w.dirfd, "adir", 0750), 0);
    tu_put(f->r.dirfd, "broken", "x");
    assert_int_equal(inbox_quarantine(&f->r, 0, "broken", "test"), 0);

    assert_int_equal(inbox_backlog(path, &files, &oldest, &corrupt), 0);
    /* 2 dropped + odd-but-waiting + the SM_CORRUPT_FILE message that
     * the quarantine itself emitted into this very inbox. */
    assert_int_equal(files, 4);
    assert_true(oldest >= 5000);
    assert_int_equal(corrupt, 1);

    assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/nothere", f->root), 0);
    assert_int_equal(inbox_backlog(path, &files, &oldest, &corrupt), -ENOENT);
}

int main(void)
{
    setenv(SS_NOFSYNC_ENV, "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_table_and_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_then_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_wrong_suffix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_skips_and_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_done_return, setup, teardown),
        cmocka_unit_test_setup_teardown(test_return_never_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quarantine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quarantine_long_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_tmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_sync_failure_is_handed_over, setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(test_file_sync_failure_hands_over_nothing, setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(test_not_visible_before_durable, setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_drop_many_sync_by_kernel, setup, fake_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
