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
#include <stdio.h>

#include "despool.h"
#include "inbox.h"
#include "manifest.h"
#include "pkgfile.h"
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
    f->env = (struct ds_env){ f->root, f->store, "B01", NULL };
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
    if (o->extra) {
        /* mf_add does not check paths: a forged manifest is signed as is. */
        struct mf_entry e = m.e[0];
        e.path = (char *)o->extra;
        assert_int_equal(mf_add(&m, &e), 0);
        mf_sort(&m);
    }
    (void)ss_strcpy(in.package, sizeof in.package, "CEN00001");
    (void)ss_strcpy(in.name, sizeof in.name, "Test");
    (void)ss_strcpy(in.site, sizeof in.site, o->site ? o->site : "CEN");
    in.version = v;
    in.created_ms = ss_now_ms();
    assert_int_equal(instr_build(&b, &in, &m, o->key ? o->key : f->key, err, sizeof err), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/%s", f->rx.path, name), 0);
    tu_write_len(path, b.data, b.len);
    ss_sbuf_free(&b);
    mf_free(&m);

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
        cmocka_unit_test_setup_teardown(test_bundle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_stop, setup, teardown),
    };

    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
