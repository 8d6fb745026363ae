/*
 * test_despool.c - unit tests for the Despooler's work on one instruction
 * (daemons/despool/install.c, ds_process), run synchronously on a
 * temporary site B01 whose parent CEN signs: an install (store, package,
 * pkg_version and manifest rows, a request for distmgr, both files gone),
 * a duplicate and an older version (nothing changes), a tampered package
 * file, an unknown site, a bad signature and a manifest path with ".."
 * (both files quarantined), and a missing package file (the instruction
 * goes back to the inbox).  Status bundles (ds_bundle): a good one handed
 * to statmgr.box/sites byte for byte (also where an older root lacks that
 * inbox), an unknown site, a bad signature and a malformed one
 * quarantined, and a stop that gives one back.
 */
#include "testutil.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>

#include "despool.h"
#include "inbox.h"
#include "manifest.h"
#include "pkgfile.h"
#include "sendreq.h"
#include "sitedb.h"
#include "statmsg.h"
#include "statrep.h"

struct fx {
    char        *root;
    char         src[SS_PATH_MAX], sstore[SS_PATH_MAX], store[SS_PATH_MAX];
    sqlite3     *db;
    EVP_PKEY    *key;          /* CEN's signing key */
    struct inbox rx;
    struct ds_env env;
};

static long long sql_int(struct fx *f, const char *q)
{
    sqlite3_stmt *st;
    long long v = -1;

    assert_int_equal(sqlite3_prepare_v2(f->db, q, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void add_site(struct fx *f, const char *code, EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem;
    long len;
    sqlite3_stmt *st;

    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, k), 1);
    len = BIO_get_mem_data(bio, &pem);
    assert_int_equal(sqlite3_prepare_v2(f->db, "INSERT INTO site VALUES (?, 'file:/x', ?, "
                                               "'parent', 0)", -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, pem, (int)len, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    BIO_free(bio);
}

static void put_src(struct fx *f, const char *name, const char *text)
{
    char path[SS_PATH_MAX];

    assert_int_equal(ss_path(path, sizeof path, "%s/%s", f->src, name), 0);
    tu_write(path, text);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[SS_ERR_MAX], path[SS_PATH_MAX];

    assert_non_null(f);
    assert_non_null(f->root = tu_tmpdir_new("test_despool"));
    assert_int_equal(inbox_create_tree(f->root), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/db", f->root), 0);
    assert_int_equal(ss_mkdir_p(path, 0750), 0);
    assert_int_equal(sitedb_open_root(f->root, 0, &f->db, err, sizeof err), 0);
    assert_int_equal(ss_path(f->store, sizeof f->store, "%s/store", f->root), 0);
    assert_int_equal(store_init(f->store), 0);
    assert_int_equal(ss_path(f->sstore, sizeof f->sstore, "%s/cen-store", f->root), 0);
    assert_int_equal(store_init(f->sstore), 0);
    assert_int_equal(ss_path(f->src, sizeof f->src, "%s/src/sub", f->root), 0);
    assert_int_equal(ss_mkdir_p(f->src, 0755), 0);
    assert_int_equal(ss_path(f->src, sizeof f->src, "%s/src", f->root), 0);
    put_src(f, "a.txt", "alpha\n");
    put_src(f, "sub/b.txt", "bravo\n");
    assert_non_null(f->key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"));
    add_site(f, "CEN", f->key);
    assert_int_equal(inbox_open(&f->rx, f->root, IB_RECEIVE, "B01", 1), 0);
    f->env = (struct ds_env){ .root = f->root, .store = f->store, .site = "B01" };
    sm_set_identity2(f->root, "B01", "despool", "testhost");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    inbox_close(&f->rx);
    sitedb_close(f->db);
    EVP_PKEY_free(f->key);
    tu_tmpdir_free(f->root);
    free(f);
    return 0;
}

/*
 * Deliver version v of the source as site `site` signed with key into
 * receive/ (package file unless no_pck; one byte flipped if tamper; an
 * extra manifest entry at `extra` path if not NULL), claim the
 * instruction and process it.
 */
struct opts {
    const char *site;
    EVP_PKEY   *key;
    int         no_pck, tamper;
    const char *extra;
    int         priority;      /* enum send_prio, when prio_set */
    int         prio_set;
    const char *package;       /* CEN00001 if NULL */
    int         fifo_pck;      /* the package file replaced by a FIFO */
    int         link_pck;      /* ... by a symbolic link to the real one */
    int         no_process;    /* only put both files into receive/ */
};

static void deliver(struct fx *f, long long v, const struct opts *o, struct ds_result *res,
                    char *name, size_t namelen)
{
    struct manifest m;
    struct mf_snapstat ss;
    struct instr in;
    struct sbuf b;
    char err[SS_ERR_MAX], pck[SS_NAME_MAX + 1], path[SS_PATH_MAX];

    mf_init(&m);
    ss_sbuf_init(&b);
    memset(&in, 0, sizeof in);
    assert_int_equal(mf_snapshot(f->src, NULL, f->sstore, &m, &ss, NULL, err, sizeof err), 0);
    assert_int_equal(uniq_name(name, namelen, "CEN", ".ins"), 0);
    assert_int_equal(ds_pck_name(name, pck, sizeof pck), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/%s", f->rx.path, pck), 0);
    assert_int_equal(pck_write(f->sstore, &m, path, 3, NULL, &in.pck_size, in.pck_sha, err,
                               sizeof err), 0);
    if (o->tamper) {
        int fd = open(path, O_RDWR);
        unsigned char c;
        assert_true(fd >= 0);
        assert_int_equal(pread(fd, &c, 1, in.pck_size / 2), 1);
        c ^= 1;
        assert_int_equal(pwrite(fd, &c, 1, in.pck_size / 2), 1);
        close(fd);
    }
    if (o->no_pck)
        assert_int_equal(unlink(path), 0);
    if (o->fifo_pck) {
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkfifo(path, 0600), 0);
    }
    if (o->link_pck) {
        char real[SS_PATH_MAX];
        assert_int_equal(ss_path(real, sizeof real, "%s.real", path), 0);
        assert_int_equal(rename(path, real), 0);
        assert_int_equal(symlink(real, path), 0);
    }
    if (o->extra) {
        /* mf_add does not check paths: a forged manifest is signed as is. */
        struct mf_entry e = m.e[0];
        e.path = (char *)o->extra;
        assert_int_equal(mf_add(&m, &e), 0);
        mf_sort(&m);
    }
    (void)ss_strcpy(in.package, sizeof in.package, o->package ? o->package : "CEN00001");
    (void)ss_strcpy(in.name, sizeof in.name, "Test");
    (void)ss_strcpy(in.site, sizeof in.site, o->site ? o->site : "CEN");
    in.version = v;
    in.priority = o->prio_set ? o->priority : PRIO_MEDIUM;
    in.created_ms = ss_now_ms();
    assert_int_equal(instr_build(&b, &in, &m, o->key ? o->key : f->key, err, sizeof err), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/%s", f->rx.path, name), 0);
    tu_write_len(path, b.data, b.len);
    ss_sbuf_free(&b);
    mf_free(&m);
    if (o->no_process)
        return;

    assert_int_equal(inbox_claim(&f->rx, name), 0);
    ds_process(&f->env, f->db, &f->rx, name, res);
    /* Whatever happened, nothing stays claimed. */
    assert_int_equal(tu_count_at(f->rx.workfd), 0);
}

static size_t requests(struct fx *f)
{
    char path[SS_PATH_MAX];

    assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/distmgr.box", f->root), 0);
    DIR *d = opendir(path);
    struct dirent *de;
    size_t n = 0;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        n += strstr(de->d_name, ".pkg") != NULL;
    closedir(d);
    return n;
}

static size_t corrupt(struct fx *f)
{
    DIR *d = fdopendir(dup(f->rx.corruptfd));
    struct dirent *de;
    size_t n = 0;

    assert_non_null(d);
    rewinddir(d);   /* the descriptor's offset is shared with earlier calls */
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.' && !strstr(de->d_name, ".reason");
    closedir(d);
    return n;
}

static void test_install(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct opts o = { 0 };
    char name[UNIQ_NAME_MAX];

    deliver(f, 1, &o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_INSTALLED);
    assert_int_equal(sql_int(f, "SELECT version FROM package WHERE id = 'CEN00001' AND source = ''"
                                " AND origin = 'CEN' AND all_dps = 1"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM pkg_version WHERE package = 'CEN00001'"), 1);
    /* sub, a.txt, sub/b.txt */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM manifest WHERE package = 'CEN00001'"
                                " AND version = 1"), 3);
    assert_int_equal(tu_count_at(f->rx.dirfd), 0 + 3);   /* .tmp, work, corrupt only */
    assert_int_equal(requests(f), 1);

    /* A newer version moves it forward; older rows go. */
    put_src(f, "a.txt", "alpha 2\n");
    deliver(f, 2, &o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_INSTALLED);
    assert_int_equal(sql_int(f, "SELECT version FROM package WHERE id = 'CEN00001'"), 2);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM pkg_version WHERE package = 'CEN00001'"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM manifest WHERE package = 'CEN00001'"
                                " AND version = 1"), 0);
    assert_int_equal(requests(f), 2);
}

static void test_duplicate_and_older(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct opts o = { 0 };
    char name[UNIQ_NAME_MAX];

    deliver(f, 2, &o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_INSTALLED);
    long long upd = sql_int(f, "SELECT updated_ms FROM package WHERE id = 'CEN00001'");

    deliver(f, 2, &o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_DUPLICATE);
    assert_int_equal(res.held, 2);
    deliver(f, 1, &o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_DUPLICATE);
    assert_int_equal(res.held, 2);
    assert_int_equal(sql_int(f, "SELECT version FROM package WHERE id = 'CEN00001'"), 2);
    assert_int_equal(sql_int(f, "SELECT updated_ms FROM package WHERE id = 'CEN00001'"), upd);
    assert_int_equal(tu_count_at(f->rx.dirfd), 3);       /* both files removed */
    assert_int_equal(corrupt(f), 0);
    assert_int_equal(requests(f), 1);
}

/* Each case: both files quarantined, nothing installed. */
static void check_rejected(struct fx *f, const struct opts *o, const char *why)
{
    struct ds_result res;
    char name[UNIQ_NAME_MAX];

    deliver(f, 1, o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_REJECTED);
    if (!strstr(res.why, why))
        fail_msg("reason \"%s\" does not say \"%s\"", res.why, why);
    assert_int_equal(corrupt(f), o->no_pck ? 1 : 2);
    assert_int_equal(tu_count_at(f->rx.dirfd), 3);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM package"), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM pkg_version"), 0);
    assert_int_equal(requests(f), 0);
}

static void test_tampered_pck(void **state)
{
    struct opts o = { .tamper = 1 };
    check_rejected(*state, &o, "package file");
}

static void test_unknown_site(void **state)
{
    struct opts o = { .site = "ZZZ" };
    check_rejected(*state, &o, "no key recorded for site ZZZ");
}

static void test_bad_signature(void **state)
{
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct opts o = { .key = other };

    assert_non_null(other);
    check_rejected(*state, &o, "signature");
    EVP_PKEY_free(other);
}

static void test_path_traversal(void **state)
{
    static const char *const bad[] = { "../x", "sub/../../x", "/etc/x" };

    for (size_t i = 0; i < SS_ARRAY_LEN(bad); i++) {
        struct fx *f = *state;
        struct opts o = { .extra = bad[i] };
        struct ds_result res;
        char name[UNIQ_NAME_MAX];

        deliver(f, 1, &o, &res, name, sizeof name);
        assert_int_equal(res.outcome, DS_REJECTED);
        assert_non_null(strstr(res.why, "format"));
        assert_int_equal(corrupt(f), 2 * (i + 1));
        assert_int_equal(sql_int(f, "SELECT count(*) FROM package"), 0);
    }
}

static void test_waiting(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct opts o = { .no_pck = 1 };
    char name[UNIQ_NAME_MAX];

    deliver(f, 1, &o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_WAITING);
    assert_true(res.parsed);
    assert_true(tu_exists(f->rx.dirfd, name));          /* back in the inbox */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM package"), 0);
}

/* A second delivery of a version installed meanwhile, whose package file
 * is gone with the first (a sender that was killed and sent again): it
 * ends as a duplicate, it does not wait for a package file for ever. */
static void test_redelivered_without_pck(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct opts o = { 0 }, nopck = { .no_pck = 1 };
    char name[UNIQ_NAME_MAX];

    deliver(f, 1, &o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_INSTALLED);
    deliver(f, 1, &nopck, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_DUPLICATE);
    assert_false(tu_exists(f->rx.dirfd, name));
}

static void test_stop(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct opts o = { 0 };
    char name[UNIQ_NAME_MAX];
    volatile int stop = 1;

    f->env.stop = &stop;
    deliver(f, 1, &o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_RETURNED);
    assert_true(tu_exists(f->rx.dirfd, name));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM package"), 0);
    f->env.stop = NULL;
}

/* ---------------------------------------------------------------- order */

/* By priority (high first), then age, then name. */
static void test_cand_order(void **state)
{
    static const struct {
        const char *name;
        int         prio;
        int64_t     mtime;
    } in[] = {
        { "CEN-d.ins", PRIO_LOW, 1 },
        { "CEN-c.ins", PRIO_MEDIUM, 5 },
        { "CEN-b.ins", PRIO_HIGH, 9 },
        { "CEN-a.ins", PRIO_MEDIUM, 5 },
        { "CEN-e.ins", PRIO_HIGH, 2 },
        { "CEN-f.ins", PRIO_MEDIUM, 3 },
    };
    static const char *const want[] = { "CEN-e.ins", "CEN-b.ins", "CEN-f.ins", "CEN-a.ins",
                                        "CEN-c.ins", "CEN-d.ins" };
    struct ds_cand c[SS_ARRAY_LEN(in)];

    (void)state;
    for (size_t i = 0; i < SS_ARRAY_LEN(in); i++) {
        (void)ss_strcpy(c[i].name, sizeof c[i].name, in[i].name);
        c[i].prio = in[i].prio;
        c[i].mtime_ns = in[i].mtime;
    }
    qsort(c, SS_ARRAY_LEN(c), sizeof c[0], ds_cand_cmp);
    for (size_t i = 0; i < SS_ARRAY_LEN(want); i++)
        assert_string_equal(c[i].name, want[i]);
}

/* The priority of a file in receive/, unverified: only the order. */
static void test_peek_priority(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *label, *text;
        int         want;
    } cases[] = {
        { "high", "# sitesrv instruction 1\npackage=CEN00001\npriority=high\nfile=x\n", PRIO_HIGH },
        { "low", "# sitesrv instruction 1\npriority=low\n", PRIO_LOW },
        { "medium", "# sitesrv instruction 1\npriority=medium\nend x\n", PRIO_MEDIUM },
        { "absent", "# sitesrv instruction 1\npackage=CEN00001\n", PRIO_MEDIUM },
        { "bad value", "# sitesrv instruction 1\npriority=urgent\n", PRIO_MEDIUM },
        { "in a value", "# sitesrv instruction 1\nname=a\\npriority=high\n", PRIO_MEDIUM },
        { "empty", "", PRIO_MEDIUM },
    };
    char path[SS_PATH_MAX], name[64];

    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        (void)ss_fmt(name, sizeof name, "CEN-%zu.ins", i);
        assert_int_equal(ss_path(path, sizeof path, "%s/%s", f->rx.path, name), 0);
        tu_write(path, cases[i].text);
        if (ds_peek_priority(f->rx.dirfd, name) != cases[i].want)
            fail_msg("case %s: got %d, want %d", cases[i].label,
                     ds_peek_priority(f->rx.dirfd, name), cases[i].want);
    }
    /* Beyond the first 4 KiB: not looked for. */
    {
        struct sbuf b;
        ss_sbuf_init(&b);
        assert_int_equal(ss_sbuf_adds(&b, "# sitesrv instruction 1\nname="), 0);
        for (int i = 0; i < 5000; i++)
            assert_int_equal(ss_sbuf_add(&b, "x", 1), 0);
        assert_int_equal(ss_sbuf_adds(&b, "\npriority=high\n"), 0);
        assert_int_equal(ss_path(path, sizeof path, "%s/CEN-long.ins", f->rx.path), 0);
        tu_write_len(path, b.data, b.len);
        ss_sbuf_free(&b);
        assert_int_equal(ds_peek_priority(f->rx.dirfd, "CEN-long.ins"), PRIO_MEDIUM);
    }
    /* Missing, a FIFO (must not block), a symbolic link: medium. */
    assert_int_equal(ds_peek_priority(f->rx.dirfd, "CEN-missing.ins"), PRIO_MEDIUM);
    assert_int_equal(ss_path(path, sizeof path, "%s/CEN-fifo.ins", f->rx.path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(ds_peek_priority(f->rx.dirfd, "CEN-fifo.ins"), PRIO_MEDIUM);
    assert_int_equal(ss_path(path, sizeof path, "%s/CEN-link.ins", f->rx.path), 0);
    assert_int_equal(symlink("CEN-0.ins", path), 0);
    assert_int_equal(ds_peek_priority(f->rx.dirfd, "CEN-link.ins"), PRIO_MEDIUM);
}

/* A real signed instruction carries its priority where the peek finds it. */
static void test_peek_real_instruction(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct opts hi = { .priority = PRIO_HIGH, .prio_set = 1, .no_process = 1 };
    struct opts lo = { .priority = PRIO_LOW, .prio_set = 1, .no_process = 1,
                       .package = "CEN00002" };
    char a[UNIQ_NAME_MAX], b[UNIQ_NAME_MAX];

    deliver(f, 1, &hi, &res, a, sizeof a);
    deliver(f, 1, &lo, &res, b, sizeof b);
    assert_int_equal(ds_peek_priority(f->rx.dirfd, a), PRIO_HIGH);
    assert_int_equal(ds_peek_priority(f->rx.dirfd, b), PRIO_LOW);
    /* And the install records it. */
    assert_int_equal(inbox_claim(&f->rx, a), 0);
    ds_process(&f->env, f->db, &f->rx, a, &res);
    assert_int_equal(res.outcome, DS_INSTALLED);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM package WHERE id = 'CEN00001'"
                                " AND priority = 'high'"), 1);
}

/* ---------------------------------------------------------------- fixes */

/* Finding 11: a FIFO or a symbolic link as the package file is refused
 * at once (never blocks a worker); both files are quarantined. */
static void test_pck_not_regular(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct opts fifo = { .fifo_pck = 1 }, link = { .link_pck = 1 };
    char name[UNIQ_NAME_MAX];

    deliver(f, 1, &fifo, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_REJECTED);
    assert_int_equal(corrupt(f), 2);
    deliver(f, 1, &link, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_REJECTED);
    assert_int_equal(corrupt(f), 4);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM package"), 0);
}

/* Finding 12: a version that arrives while the package is being deleted
 * here waits (given back) until the delete is over, then installs. */
static void test_deleting(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct opts o = { 0 };
    char name[UNIQ_NAME_MAX];

    deliver(f, 1, &o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_INSTALLED);
    assert_int_equal(sqlite3_exec(f->db, "UPDATE package SET state = 'deleting'", NULL, NULL,
                                  NULL), SQLITE_OK);
    put_src(f, "a.txt", "alpha 2\n");
    deliver(f, 2, &o, &res, name, sizeof name);
    assert_int_equal(res.outcome, DS_RETURNED);
    assert_int_equal(res.err, -EBUSY);
    assert_true(tu_exists(f->rx.dirfd, name));
    assert_int_equal(sql_int(f, "SELECT version FROM package"), 1);
    assert_int_equal(requests(f), 1);
    /* The delete finished: the row is gone; the version installs afresh. */
    assert_int_equal(sqlite3_exec(f->db, "DELETE FROM package", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(inbox_claim(&f->rx, name), 0);
    ds_process(&f->env, f->db, &f->rx, name, &res);
    assert_int_equal(res.outcome, DS_INSTALLED);
    assert_int_equal(sql_int(f, "SELECT version FROM package WHERE state = 'active'"), 2);
}

/* Finding 5: a package file whose instruction is nowhere, old enough. */
static void test_orphan(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct opts o = { .no_process = 1 };
    char name[UNIQ_NAME_MAX], pck[SS_NAME_MAX + 1];
    int64_t now = ss_now_ms() / 1000, age = 8 * 86400;

    deliver(f, 1, &o, &res, name, sizeof name);
    assert_int_equal(ds_pck_name(name, pck, sizeof pck), 0);
    /* Its instruction in receive/, then in work/: never an orphan. */
    assert_int_equal(ds_pck_orphan(&f->rx, pck, now + age + 1, age), 0);
    assert_int_equal(inbox_claim(&f->rx, name), 0);
    assert_int_equal(ds_pck_orphan(&f->rx, pck, now + age + 1, age), 0);
    /* Without it: only once old enough (the sender may be slow). */
    assert_int_equal(inbox_done(&f->rx, name), 0);
    assert_int_equal(ds_pck_orphan(&f->rx, pck, now, age), 0);
    assert_int_equal(ds_pck_orphan(&f->rx, pck, now + age + 1, age), 1);
    assert_int_equal(ds_pck_orphan(&f->rx, "CEN-missing.pck", now + age + 1, age), 0);
    assert_int_equal(ds_pck_orphan(&f->rx, name, now + age + 1, age), 0);  /* not a .pck */
}

/* Finding 6: reading the package file and the store's lock give
 * up on a stop. */
static void test_stop_points(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct opts o = { .no_process = 1 };
    char name[UNIQ_NAME_MAX], pck[SS_NAME_MAX + 1], path[SS_PATH_MAX], err[SS_ERR_MAX];
    volatile int stop = 1;
    struct manifest m;
    unsigned char sha[32] = { 0 };
    struct stat sb;
    int ex, lk;

    deliver(f, 1, &o, &res, name, sizeof name);
    assert_int_equal(ds_pck_name(name, pck, sizeof pck), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/%s", f->rx.path, pck), 0);
    assert_int_equal(stat(path, &sb), 0);
    mf_init(&m);
    assert_int_equal(store_init(f->store), 0);
    assert_int_equal(pck_extract(path, sb.st_size, sha, &m, f->store, &stop, err, sizeof err),
                     -EINTR);

    assert_true((ex = store_lock(f->store, 1)) >= 0);
    stop = 1;
    assert_int_equal(store_lock_stop(f->store, 0, &stop), -EINTR);
    store_unlock(ex);
    stop = 0;
    assert_true((lk = store_lock_stop(f->store, 0, &stop)) >= 0);
    store_unlock(lk);
}

/* pck_extract_fd keeping the small objects for the caller: verified,
 * nothing put into small.db, the loose count from the manifest. */
static void test_extract_deferred(void **state)
{
    struct fx *f = *state;
    struct manifest m;
    struct mf_snapstat ss;
    struct pck_xopt x = { .defer_max = 1 << 20 };
    char err[SS_ERR_MAX], path[SS_PATH_MAX];
    int64_t size;
    unsigned char sha[32];
    int fd;

    (void)state;
    mf_init(&m);
    assert_int_equal(mf_snapshot(f->src, NULL, f->sstore, &m, &ss, NULL, err, sizeof err), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/x.pck", f->root), 0);
    assert_int_equal(pck_write(f->sstore, &m, path, 3, NULL, &size, sha, err, sizeof err), 0);
    assert_int_equal(store_init(f->store), 0);
    assert_true((fd = open(path, O_RDONLY)) >= 0);
    assert_int_equal(pck_extract_fd(fd, path, size, sha, &m, f->store, NULL, &x, err,
                                    sizeof err), 0);
    assert_int_equal(x.deferred, 1);
    assert_int_equal(x.nsmall, 2);
    assert_int_equal(x.loose, 0);
    for (size_t i = 0, k = 0; i < m.n; i++) {
        unsigned char got[32];
        if (!S_ISREG(m.e[i].mode))
            continue;
        assert_memory_equal(x.small[k].sha, m.e[i].sha, 32);
        assert_int_equal(x.small[k].size, m.e[i].size);
        assert_non_null(SHA256(x.data + x.small[k].off, (size_t)x.small[k].size, got));
        assert_memory_equal(got, m.e[i].sha, 32);
        k++;
    }
    pck_xopt_free(&x);
    /* A wrong SHA-256 of the file: refused, nothing kept. */
    sha[0] ^= 1;
    assert_int_equal(pck_extract_fd(fd, path, size, sha, &m, f->store, NULL, &x, err,
                                    sizeof err), -EBADMSG);
    assert_null(x.small);
    close(fd);
    mf_free(&m);
}

/* Several workers at once with one group: every package installed once,
 * one request each, and the group committed them all. */
struct worker_arg {
    struct fx  *f;
    const char *name;
    struct ds_result res;
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    sqlite3 *db;
    char err[SS_ERR_MAX];

    if (sitedb_open_root(a->f->root, 0, &db, err, sizeof err) < 0)
        return NULL;
    ds_process(&a->f->env, db, &a->f->rx, a->name, &a->res);
    sitedb_close(db);
    return NULL;
}

static void test_group(void **state)
{
    struct fx *f = *state;
    enum { N = 6 };
    struct ds_group g;
    struct worker_arg args[N];
    pthread_t th[N];
    struct ds_result res;
    char names[N][UNIQ_NAME_MAX], pkg[N][16], txt[32];

    assert_int_equal(ds_group_init(&g), 0);
    f->env.group = &g;
    for (int i = 0; i < N; i++) {
        struct opts o = { .no_process = 1 };
        (void)ss_fmt(pkg[i], sizeof pkg[i], "CEN0000%d", i + 1);
        (void)ss_fmt(txt, sizeof txt, "alpha %d\n", i);
        put_src(f, "a.txt", txt);
        o.package = pkg[i];
        deliver(f, 1, &o, &res, names[i], sizeof names[i]);
        assert_int_equal(inbox_claim(&f->rx, names[i]), 0);
        args[i] = (struct worker_arg){ .f = f, .name = names[i] };
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(args[i].res.outcome, DS_INSTALLED);
    assert_int_equal(g.items, N);
    assert_true(g.groups >= 1 && g.groups <= N);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM package WHERE version = 1"), N);
    assert_int_equal(requests(f), N);
    assert_int_equal(tu_count_at(f->rx.dirfd), 3);      /* both files of each gone */
    /* The objects are in small.db: a second site reads them back. */
    {
        struct store_reader *r;
        unsigned char buf[64];
        int fd = -1;
        sqlite3_stmt *st;
        assert_int_equal(store_reader_open(f->store, &r), 0);
        assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT sha256, size FROM manifest WHERE"
                                                   " size > 0", -1, &st, NULL), SQLITE_OK);
        int rows = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            assert_int_equal(sqlite3_column_bytes(st, 0), 32);
            assert_int_equal(store_get(r, sqlite3_column_blob(st, 0),
                                       sqlite3_column_int64(st, 1), buf, &fd), 0);
            rows++;
        }
        sqlite3_finalize(st);
        assert_true(rows >= 2 * N);
        store_reader_close(r);
    }
    f->env.group = NULL;
    ds_group_close(&g);
}

/* ---------------------------------------------------------------- bundles */

/*
 * Deliver a status bundle of two messages from site, signed with key,
 * into receive/ (its last byte replaced by bad if not 0), claim it and
 * process it; its bytes are left in b.
 */
static void deliver_bundle(struct fx *f, const char *site, EVP_PKEY *key, char bad,
                           struct ds_result *res, char *name, size_t namelen, struct sbuf *b)
{
    struct sbuf t[2];
    struct statrep_msg msgs[2];
    char err[SS_ERR_MAX], path[SS_PATH_MAX];

    for (int i = 0; i < 2; i++) {
        struct statmsg m;
        assert_int_equal(sm_init(&m, 8300, "despool", site), 0);
        assert_int_equal(sm_add_istr(&m, "CEN00001"), 0);
        ss_sbuf_init(&t[i]);
        assert_int_equal(sm_format(&m, &t[i]), 0);
        msgs[i].data = t[i].data;
        msgs[i].len = t[i].len;
    }
    ss_sbuf_init(b);
    assert_int_equal(statrep_build(b, site, ss_now_ms(), msgs, 2, key, err, sizeof err), 0);
    if (bad)
        b->data[b->len - 2] = bad;
    assert_int_equal(uniq_name(name, namelen, site, ".sts"), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/%s", f->rx.path, name), 0);
    tu_write_len(path, b->data, b->len);
    for (int i = 0; i < 2; i++)
        ss_sbuf_free(&t[i]);

    assert_int_equal(inbox_claim(&f->rx, name), 0);
    ds_bundle(&f->env, f->db, &f->rx, name, res);
    assert_int_equal(tu_count_at(f->rx.workfd), 0);
}

/* The one file of statmgr.box/sites, checked against want. */
static void assert_handed(struct fx *f, const struct sbuf *want)
{
    char path[SS_PATH_MAX];
    struct inbox sib;
    struct inbox_entry e[4];
    size_t n = 0, len = 0;

    assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/statmgr.box/sites", f->root), 0);
    assert_int_equal(inbox_open_path(&sib, path, IB_SITEMSGS, "B01", 0), 0);
    assert_int_equal(inbox_scan(&sib, e, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_false(e[0].odd);
    char *got = tu_read_at(sib.dirfd, e[0].name, &len);
    assert_int_equal(len, want->len);
    assert_memory_equal(got, want->data, len);
    free(got);
    inbox_close(&sib);
}

static void test_bundle(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct sbuf b;
    char name[UNIQ_NAME_MAX], path[SS_PATH_MAX];

    /* A site root from before bundles: statmgr.box/sites is made. */
    assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/statmgr.box/sites", f->root), 0);
    tu_rm_rf(path);
    deliver_bundle(f, "CEN", f->key, 0, &res, name, sizeof name, &b);
    assert_int_equal(res.outcome, DS_FORWARDED);
    assert_string_equal(res.in.site, "CEN");
    assert_false(tu_exists(f->rx.dirfd, name));
    assert_int_equal(corrupt(f), 0);
    assert_handed(f, &b);
    /* Nothing of a package happened. */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM package"), 0);
    assert_int_equal(requests(f), 0);
    ss_sbuf_free(&b);
}

static void test_bundle_rejected(void **state)
{
    struct fx *f = *state;
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    static const struct {
        const char *site;
        int         other_key;
        char        bad;
        const char *why;
    } t[] = {
        { "ZZZ", 0, 0, "no key recorded for site ZZZ" },
        { "CEN", 1, 0, "signature" },
        { "CEN", 0, 'x', "format" },       /* the end line's checksum */
    };

    assert_non_null(other);
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        struct ds_result res;
        struct sbuf b;
        char name[UNIQ_NAME_MAX], path[SS_PATH_MAX];

        deliver_bundle(f, t[i].site, t[i].other_key ? other : f->key, t[i].bad, &res, name,
                       sizeof name, &b);
        assert_int_equal(res.outcome, DS_REJECTED);
        if (!strstr(res.why, t[i].why))
            fail_msg("case %zu: reason \"%s\" does not say \"%s\"", i, res.why, t[i].why);
        assert_int_equal(corrupt(f), i + 1);
        assert_false(tu_exists(f->rx.dirfd, name));
        assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/statmgr.box/sites", f->root),
                         0);
        assert_int_equal(tu_count(path), 3);           /* .tmp, work, corrupt only */
        ss_sbuf_free(&b);
    }
    EVP_PKEY_free(other);
}

static void test_bundle_stop(void **state)
{
    struct fx *f = *state;
    struct ds_result res;
    struct sbuf b;
    char name[UNIQ_NAME_MAX];
    volatile int stop = 1;

    f->env.stop = &stop;
    deliver_bundle(f, "CEN", f->key, 0, &res, name, sizeof name, &b);
    assert_int_equal(res.outcome, DS_RETURNED);
    assert_true(tu_exists(f->rx.dirfd, name));
    f->env.stop = NULL;
    ss_sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_install, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_and_older, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_pck, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_site, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_traversal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redelivered_without_pck, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
        cmocka_unit_test(test_cand_order),
        cmocka_unit_test_setup_teardown(test_peek_priority, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek_real_instruction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pck_not_regular, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extract_deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_stop, setup, teardown),
    };

    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
