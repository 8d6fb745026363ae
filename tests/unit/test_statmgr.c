/*
 * test_statmgr.c - unit tests for the Status Manager's work on status
 * bundles, run synchronously on temporary sites (no loop, no daemon):
 *
 *   the parent's side (ingest.c): a bundle of child site B01 recorded
 *   with via B01, its grandchild's message giving a route C02 -> B01; the
 *   same messages again recorded once; a bad message inside a good bundle
 *   skipped, the others kept; a malformed bundle quarantined;
 *
 *   the child's side (replicate.c): with a parent row and a key, a run
 *   writes one signed bundle of the listed components only, a job naming
 *   it, and moves the cursor; a second run sends nothing; without the
 *   parent row nothing is sent and the cursor stays; at start a bundle no
 *   job names is removed and one a job names is kept.
 *
 * The daemon's two files are linked into this test (OBJS_test_statmgr in
 * the Makefile), its main() left out.
 */
#include "testutil.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "sitedb.h"
#include "statmgr.h"
#include "statrep.h"

#include "sendreq.h"

struct fx {
    char           *root;
    struct statmgr *s;
    EVP_PKEY       *key;        /* this site's */
};

static long long sql_int(struct fx *f, const char *q)
{
    sqlite3_stmt *st;
    long long v = -1;

    assert_int_equal(sqlite3_prepare_v2(f->s->db, q, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static char *pem_of(EVP_PKEY *k, int priv, long *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *p, *out;

    assert_non_null(bio);
    assert_int_equal(priv ? PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL)
                          : PEM_write_bio_PUBKEY(bio, k), 1);
    *len = BIO_get_mem_data(bio, &p);
    assert_non_null(out = malloc((size_t)*len + 1));
    memcpy(out, p, (size_t)*len);
    out[*len] = '\0';
    BIO_free(bio);
    return out;
}

/* A site root for code (with keys/site.key), statmgr's inboxes open. */
static struct fx *site_new(const char *code)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[SS_ERR_MAX] = "", path[SS_PATH_MAX];
    long len;

    assert_non_null(f);
    assert_non_null(f->root = tu_tmpdir_new("test_statmgr"));
    assert_int_equal(inbox_create_tree(f->root), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/db", f->root), 0);
    assert_int_equal(ss_mkdir_p(path, 0750), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/keys", f->root), 0);
    assert_int_equal(ss_mkdir_p(path, 0700), 0);
    assert_non_null(f->key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"));
    char *pem = pem_of(f->key, 1, &len);
    assert_int_equal(ss_path(path, sizeof path, "%s/keys/site.key", f->root), 0);
    tu_write_len(path, pem, (size_t)len);
    free(pem);
    sm_set_identity2(f->root, code, "statmgr", "testhost");

    assert_non_null(f->s = calloc(1, sizeof *f->s));
    f->s->in.batch = 64;
    f->s->in.skew_ms = 300000;
    ss_strcpy(f->s->in.site, sizeof f->s->in.site, code);
    if (ingest_open(f->s, f->root, err, sizeof err) != 0 ||
        rep_open(f->s, f->root, err, sizeof err) != 0)
        fail_msg("%s", err);
    return f;
}

static void site_free(struct fx *f)
{
    ingest_close(f->s);
    rep_close(f->s);
    free(f->s);
    EVP_PKEY_free(f->key);
    tu_tmpdir_free(f->root);
    free(f);
}

static void add_site(struct fx *f, const char *code, EVP_PKEY *k, const char *relation)
{
    long len;
    char *pem = pem_of(k, 0, &len);

    assert_int_equal(sitedb_execf(f->s->db, "INSERT INTO site VALUES (?, 'file:/x', ?, ?, 0)",
                                  "sss", code, pem, relation), 0);
    free(pem);
}

static void pass(struct fx *f)
{
    ingest_pass(&f->s->job);
    ingest_crew_join(f->s);
    assert_false(f->s->out.failed);
}

/* A status message file of id from component at site, into t. */
static void msg_text(struct sbuf *t, unsigned id, const char *component, const char *site)
{
    struct statmsg m;

    assert_int_equal(sm_init(&m, id, component, site), 0);
    assert_int_equal(sm_add_istr(&m, "CEN00001"), 0);
    assert_int_equal(sm_add_attr(&m, "PackageID", "CEN00001"), 0);
    ss_sbuf_init(t);
    assert_int_equal(sm_format(&m, t), 0);
}

/* Drop a bundle of msgs from site into statmgr.box/sites. */
static void drop_bundle(struct fx *f, const char *site, const struct statrep_msg *msgs,
                        size_t n, EVP_PKEY *key)
{
    struct sbuf b;
    char err[SS_ERR_MAX];

    ss_sbuf_init(&b);
    assert_int_equal(statrep_build(&b, site, ss_now_ms(), msgs, n, key, err, sizeof err), 0);
    assert_int_equal(inbox_drop(&f->s->sites, ".sts", b.data, b.len, NULL, 0), 0);
    ss_sbuf_free(&b);
}

/* ------------------------------------------------------- the parent's side */

static void test_ingest_bundle(void **state)
{
    struct fx *f = site_new("CEN");
    EVP_PKEY *child = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct sbuf t[3];
    struct statrep_msg msgs[3];

    assert_non_null(child);
    msg_text(&t[0], 2330, "distmgr", "B01");
    msg_text(&t[1], 8300, "despool", "B01");
    msg_text(&t[2], 8300, "despool", "C02");      /* a grandchild's, through B01 */
    for (int i = 0; i < 3; i++)
        msgs[i] = (struct statrep_msg){ t[i].data, t[i].len };

    drop_bundle(f, "B01", msgs, 3, child);
    pass(f);
    assert_int_equal(f->s->out.bundles, 1);
    assert_int_equal(f->s->out.inserted, 3);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM statmsg WHERE via = 'B01'"), 3);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM statmsg WHERE site = 'C02'"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM statmsg WHERE site = 'B01' AND "
                                "component = 'distmgr' AND msgid = 2330"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM route WHERE site = 'C02' AND via = 'B01'"),
                     1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM route"), 1);
    assert_int_equal(tu_count_at(f->s->sites.dirfd), 3);      /* .tmp, work, corrupt */
    assert_int_equal(tu_count_at(f->s->sites.workfd), 0);

    /* The same messages again (a bundle sent twice): recorded once. */
    drop_bundle(f, "B01", msgs, 3, child);
    pass(f);
    assert_int_equal(f->s->out.bundles, 1);
    assert_int_equal(f->s->out.inserted, 0);
    assert_int_equal(f->s->out.dup, 3);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM statmsg"), 3);

    for (int i = 0; i < 3; i++)
        ss_sbuf_free(&t[i]);
    EVP_PKEY_free(child);
    site_free(f);
}

static void test_ingest_bad(void **state)
{
    struct fx *f = site_new("CEN");
    EVP_PKEY *child = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct sbuf t[2];
    static const char junk[] = "sitesrv statmsg 1\nnot a message\n";
    struct statrep_msg msgs[3];

    assert_non_null(child);
    msg_text(&t[0], 2330, "distmgr", "B01");
    msg_text(&t[1], 2301, "distmgr", "B01");
    msgs[0] = (struct statrep_msg){ t[0].data, t[0].len };
    msgs[1] = (struct statrep_msg){ junk, sizeof junk - 1 };
    msgs[2] = (struct statrep_msg){ t[1].data, t[1].len };

    /* One bad message: skipped, the others kept. */
    drop_bundle(f, "B01", msgs, 3, child);
    pass(f);
    assert_int_equal(f->s->out.bundles, 1);
    assert_int_equal(f->s->out.skipped, 1);
    assert_int_equal(f->s->out.inserted, 2);
    assert_int_equal(f->s->out.bad, 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM statmsg WHERE via = 'B01'"), 2);

    /* A bundle that is not one: quarantined. */
    assert_int_equal(inbox_drop(&f->s->sites, ".sts", junk, sizeof junk - 1, NULL, 0), 0);
    pass(f);
    assert_int_equal(f->s->out.bad, 1);
    assert_int_equal(f->s->out.bundles, 0);
    assert_int_equal(tu_count_at(f->s->sites.corruptfd), 2);  /* the file and its .reason */
    assert_int_equal(tu_count_at(f->s->sites.workfd), 0);

    for (int i = 0; i < 2; i++)
        ss_sbuf_free(&t[i]);
    EVP_PKEY_free(child);
    site_free(f);
}

/* -------------------------------------------------------- the child's side */

/* Record n messages of component at this site through statmsgs/. */
static void record(struct fx *f, const char *component, int n)
{
    char dir[SS_PATH_MAX];

    assert_int_equal(ss_path(dir, sizeof dir, "%s/inboxes/statmgr.box/statmsgs", f->root), 0);
    for (int i = 0; i < n; i++) {
        struct statmsg m;
        assert_int_equal(sm_init(&m, 2330, component, NULL), 0);
        assert_int_equal(sm_write(&m, dir), 0);
    }
    pass(f);
}

static void set_rep(struct fx *f, const char *parent, const char *components)
{
    ss_strcpy(f->s->rin.site, sizeof f->s->rin.site, f->s->in.site);
    ss_strcpy(f->s->rin.parent, sizeof f->s->rin.parent, parent);
    ss_strcpy(f->s->rin.components, sizeof f->s->rin.components, components);
}

/* The one job of schedule.box: its bundle's path (root-relative). */
static void the_job(struct fx *f, char *bundle, size_t len)
{
    struct inbox_entry e[4];
    size_t n = 0, blen = 0;
    char err[SS_ERR_MAX];
    struct job j;

    assert_int_equal(inbox_scan(&f->s->sched, e, 4, &n), 0);
    assert_int_equal(n, 1);
    char *buf = tu_read_at(f->s->sched.dirfd, e[0].name, &blen);
    if (job_parse(buf, blen, &j, err, sizeof err) != 0)
        fail_msg("%s", err);
    free(buf);
    assert_int_equal(j.type, SEND_STATUS);
    assert_string_equal(j.site, "CEN");
    assert_int_equal(j.priority, PRIO_HIGH);
    assert_int_equal(ss_strcpy(bundle, len, j.status_file), 0);
}

static EVP_PKEY *own_key(void *arg, const char *site)
{
    struct fx *f = arg;

    assert_string_equal(site, "B01");
    assert_int_equal(EVP_PKEY_up_ref(f->key), 1);
    return f->key;
}

static void test_replicate(void **state)
{
    struct fx *f = site_new("B01");
    EVP_PKEY *parent = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char rel[SS_PATH_MAX], path[SS_PATH_MAX], err[SS_ERR_MAX];
    struct statrep rep;
    size_t len = 0;

    assert_non_null(parent);
    record(f, "distmgr", 3);
    record(f, "sitectl", 2);                    /* not in the list */
    record(f, "despool", 1);
    set_rep(f, "CEN", "distmgr despool sender");

    /* No parent row yet: nothing goes, the cursor stays. */
    rep_run(&f->s->rjob);
    assert_true(f->s->rout.no_parent);
    assert_int_equal(f->s->rout.bundles, 0);
    assert_int_equal(tu_count_at(f->s->outgoing.dirfd), 1);   /* .tmp */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM counter WHERE name = 'statrep.seq'"), 0);

    add_site(f, "CEN", parent, "parent");
    rep_run(&f->s->rjob);
    assert_false(f->s->rout.failed);
    assert_int_equal(f->s->rout.bundles, 1);
    assert_int_equal(f->s->rout.messages, 4);
    assert_int_equal(sql_int(f, "SELECT value FROM counter WHERE name = 'statrep.seq'"),
                     sql_int(f, "SELECT max(seq) FROM statmsg"));
    the_job(f, rel, sizeof rel);
    assert_int_equal(strncmp(rel, "inboxes/statmgr.box/outgoing/B01-", 33), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/%s", f->root, rel), 0);
    char *buf = tu_read(path, &len);
    if (statrep_parse(buf, len, own_key, f, &rep, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_string_equal(rep.site, "B01");
    assert_int_equal(rep.count, 4);
    for (size_t i = 0; i < rep.count; i++) {
        struct statmsg m;
        assert_int_equal(sm_parse(&m, (char *)rep.msgs[i].data, rep.msgs[i].len, err,
                                  sizeof err), 0);
        assert_true(strcmp(m.component, "distmgr") == 0 || strcmp(m.component, "despool") == 0);
        assert_string_equal(m.site, "B01");
    }
    statrep_free(&rep);
    free(buf);

    /* Caught up: a second run sends nothing. */
    rep_run(&f->s->rjob);
    assert_int_equal(f->s->rout.bundles, 0);
    assert_int_equal(tu_count_at(f->s->outgoing.dirfd), 2);   /* .tmp and the bundle */

    /* Only non-listed messages since: the cursor moves, nothing is sent. */
    record(f, "sitectl", 2);
    rep_run(&f->s->rjob);
    assert_int_equal(f->s->rout.bundles, 0);
    assert_int_equal(sql_int(f, "SELECT value FROM counter WHERE name = 'statrep.seq'"),
                     sql_int(f, "SELECT max(seq) FROM statmsg"));

    /* An empty list replicates nothing. */
    record(f, "distmgr", 1);
    set_rep(f, "CEN", "");
    rep_run(&f->s->rjob);
    assert_int_equal(f->s->rout.bundles, 0);

    EVP_PKEY_free(parent);
    site_free(f);
}

static void test_orphans(void **state)
{
    struct fx *f = site_new("B01");
    EVP_PKEY *parent = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char rel[SS_PATH_MAX], err[SS_ERR_MAX] = "";

    assert_non_null(parent);
    add_site(f, "CEN", parent, "parent");
    record(f, "distmgr", 2);
    set_rep(f, "CEN", "distmgr");
    rep_run(&f->s->rjob);
    assert_int_equal(f->s->rout.bundles, 1);
    the_job(f, rel, sizeof rel);
    /* A bundle whose job was never written (a kill in between). */
    assert_int_equal(inbox_drop(&f->s->outgoing, ".sts", "x", 1, NULL, 0), 0);
    assert_int_equal(tu_count_at(f->s->outgoing.dirfd), 3);

    /* The next start removes it and keeps the one its job names. */
    rep_close(f->s);
    if (rep_open(f->s, f->root, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(tu_count_at(f->s->outgoing.dirfd), 2);
    assert_true(tu_exists(f->s->outgoing.dirfd, strrchr(rel, '/') + 1));

    /* A job the scheduler claimed (schedule.box/work) names it too. */
    struct inbox_entry e[2];
    size_t n = 0;
    assert_int_equal(inbox_scan(&f->s->sched, e, 2, &n), 0);
    assert_int_equal(n, 1);
    char to[SS_NAME_MAX + 8];
    assert_true(mkdirat(f->s->sched.dirfd, "work", 0750) == 0 || errno == EEXIST);
    assert_int_equal(ss_fmt(to, sizeof to, "work/%s", e[0].name), 0);
    assert_int_equal(renameat(f->s->sched.dirfd, e[0].name, f->s->sched.dirfd, to), 0);
    rep_close(f->s);
    if (rep_open(f->s, f->root, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_true(tu_exists(f->s->outgoing.dirfd, strrchr(rel, '/') + 1));

    /* And once no job names it (the scheduler took it), it goes. */
    assert_int_equal(unlinkat(f->s->sched.dirfd, to, 0), 0);
    rep_close(f->s);
    if (rep_open(f->s, f->root, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_false(tu_exists(f->s->outgoing.dirfd, strrchr(rel, '/') + 1));
    EVP_PKEY_free(parent);
    site_free(f);
}

int main(void)
{
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ingest_bundle),
        cmocka_unit_test(test_ingest_bad),
        cmocka_unit_test(test_replicate),
        cmocka_unit_test(test_orphans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
