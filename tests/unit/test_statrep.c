/*
 * test_statrep.c - unit tests for status bundles (lib/statrep.c) and the
 * signed-record pair they share with instructions (rec_sign,
 * rec_parse_signed in lib/pkgfile.c): a round trip with every message
 * back byte for byte and each one parsing as a status message; a
 * tampered signature, a tampered message (checksum kept right), an
 * unknown site, a key of another site; truncated files; too many
 * messages, a count that lies, an unknown field, another kind; the
 * builder's refusals; the reader that skips verification.
 */
#include "testutil.h"

#include <openssl/evp.h>

#include "pkgfile.h"
#include "record.h"
#include "statmsg.h"
#include "statrep.h"

struct ring {
    const char *site;
    EVP_PKEY   *key;
    int         calls;
};

static EVP_PKEY *ring_key(void *arg, const char *site)
{
    struct ring *r = arg;

    r->calls++;
    if (r->key == NULL || strcmp(site, r->site) != 0)
        return NULL;
    assert_int_equal(EVP_PKEY_up_ref(r->key), 1);   /* freed by the parser */
    return r->key;
}

struct fx {
    EVP_PKEY   *key;            /* B01's */
    struct sbuf texts[3];       /* three status message files */
    struct statrep_msg msgs[3];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *istrs[] = { "CEN00001", "a \\ back\\slash\tand tab", "new\nline" };

    assert_non_null(f);
    assert_non_null(f->key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"));
    for (int i = 0; i < 3; i++) {
        struct statmsg m;
        assert_int_equal(sm_init(&m, 2330, "distmgr", i == 2 ? "C02" : "B01"), 0);
        assert_int_equal(sm_add_istr(&m, istrs[i]), 0);
        assert_int_equal(sm_add_attr(&m, "PackageID", "CEN00001"), 0);
        ss_sbuf_init(&f->texts[i]);
        assert_int_equal(sm_format(&m, &f->texts[i]), 0);
        f->msgs[i].data = f->texts[i].data;
        f->msgs[i].len = f->texts[i].len;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    for (int i = 0; i < 3; i++)
        ss_sbuf_free(&f->texts[i]);
    EVP_PKEY_free(f->key);
    free(f);
    return 0;
}

static void build(struct fx *f, struct sbuf *b)
{
    char err[SS_ERR_MAX] = "";

    ss_sbuf_init(b);
    if (statrep_build(b, "B01", 1763769000123ll, f->msgs, 3, f->key, err, sizeof err) != 0)
        fail_msg("%s", err);
}

/* Parse a private copy; out freed unless keep. */
static int parse_copy(const char *data, size_t len, instr_key_fn kf, struct ring *ring,
                      char *err, size_t errlen)
{
    char *copy = malloc(len + 1);
    struct statrep out;

    assert_non_null(copy);
    memcpy(copy, data, len);
    err[0] = '\0';
    int r = statrep_parse(copy, len, kf, ring, &out, err, errlen);
    if (r < 0) {
        assert_true(err[0] != '\0');
        assert_int_equal(out.count, 0);
        assert_null(out.msgs);
    }
    statrep_free(&out);
    free(copy);
    return r;
}

/* Recompute the end line over what precedes it, as a forger would. */
static void reseal(struct sbuf *b)
{
    unsigned char sum[32];
    char hex[65];

    assert_true(b->len > 69);
    assert_int_equal(memcmp(b->data + b->len - 69, "end ", 4), 0);
    assert_int_equal(ss_sha256(b->data, b->len - 69, sum), 0);
    ss_hex(sum, 32, hex);
    memcpy(b->data + b->len - 65, hex, 64);
}

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    struct ring ring = { "B01", f->key, 0 };
    char err[SS_ERR_MAX] = "";
    struct statrep out;
    struct sbuf b;

    build(f, &b);
    assert_memory_equal(b.data, "sitesrv statrep 1\nsite=B01\ncreated=2025-11-21T23:50:00.123Z\n"
                                "count=3\nmsg=sitesrv statmsg 1\\nuid=", 85);
    assert_non_null(strstr(b.data, "\nsignature="));
    char *copy = malloc(b.len + 1);
    assert_non_null(copy);
    memcpy(copy, b.data, b.len);
    if (statrep_parse(copy, b.len, ring_key, &ring, &out, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(ring.calls, 1);
    assert_string_equal(out.site, "B01");
    assert_int_equal(out.created_ms, 1763769000123ll);
    assert_int_equal(out.count, 3);
    for (int i = 0; i < 3; i++) {
        struct statmsg m;
        assert_int_equal(out.msgs[i].len, f->msgs[i].len);
        assert_memory_equal(out.msgs[i].data, f->msgs[i].data, f->msgs[i].len);
        if (sm_parse(&m, (char *)out.msgs[i].data, out.msgs[i].len, err, sizeof err) != 0)
            fail_msg("message %d: %s", i, err);
        assert_int_equal(m.id, 2330);
        assert_string_equal(m.site, i == 2 ? "C02" : "B01");
    }
    statrep_free(&out);
    free(copy);

    /* The reader that trusts the despooler's check needs no key. */
    assert_int_equal(parse_copy(b.data, b.len, NULL, NULL, err, sizeof err), 0);
    ss_sbuf_free(&b);
}

static void test_tampered(void **state)
{
    struct fx *f = *state;
    struct ring ring = { "B01", f->key, 0 };
    char err[SS_ERR_MAX];
    struct sbuf b;

    /* A flipped signature digit, checksum kept right. */
    build(f, &b);
    char *sig = strstr(b.data, "\nsignature=") + 11;
    sig[3] = sig[3] == '0' ? '1' : '0';
    reseal(&b);
    assert_int_equal(parse_copy(b.data, b.len, ring_key, &ring, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "signature does not verify"));
    ss_sbuf_free(&b);

    /* A message altered (its own checksum and the bundle's made right). */
    build(f, &b);
    char *p = strstr(b.data, "istr=CEN00001");
    assert_non_null(p);
    p[5] = 'X';
    reseal(&b);
    assert_int_equal(parse_copy(b.data, b.len, ring_key, &ring, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "signature does not verify"));
    /* Without the end line made right, the checksum refuses it first. */
    ss_sbuf_free(&b);
    build(f, &b);
    p = strstr(b.data, "istr=CEN00001");
    p[5] = 'X';
    assert_int_equal(parse_copy(b.data, b.len, ring_key, &ring, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "checksum"));
    ss_sbuf_free(&b);

    /* Signed by another key than the one recorded for B01. */
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(other);
    char e2[SS_ERR_MAX];
    ss_sbuf_init(&b);
    assert_int_equal(statrep_build(&b, "B01", 0, f->msgs, 3, other, e2, sizeof e2), 0);
    assert_int_equal(parse_copy(b.data, b.len, ring_key, &ring, err, sizeof err), -EPERM);
    EVP_PKEY_free(other);
    ss_sbuf_free(&b);
}

static void test_unknown_site(void **state)
{
    struct fx *f = *state;
    struct ring ring = { "C02", f->key, 0 };
    char err[SS_ERR_MAX];
    struct sbuf b;

    build(f, &b);
    assert_int_equal(parse_copy(b.data, b.len, ring_key, &ring, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "no key recorded for site B01"));
    assert_int_equal(ring.calls, 1);
    ss_sbuf_free(&b);
}

static void test_truncated(void **state)
{
    struct fx *f = *state;
    struct ring ring = { "B01", f->key, 0 };
    char err[SS_ERR_MAX];
    struct sbuf b;

    build(f, &b);
    const size_t cuts[] = { 0, 1, 18, b.len / 2, b.len - 139 - 69, b.len - 70, b.len - 69,
                            b.len - 1 };
    for (size_t i = 0; i < SS_ARRAY_LEN(cuts); i++)
        assert_int_equal(parse_copy(b.data, cuts[i], ring_key, &ring, err, sizeof err),
                         -EBADMSG);
    assert_int_equal(ring.calls, 0);
    ss_sbuf_free(&b);
}

/* Hand-made bundles, signed by the site's own key: the signer is
 * trusted, the content never is. */
static void test_strict(void **state)
{
    struct fx *f = *state;
    struct ring ring = { "B01", f->key, 0 };
    char err[SS_ERR_MAX];
    static const struct {
        const char *label;
        const char *kind;
        const char *count;          /* NULL: no count field */
        size_t      msgs;
        const char *extra;          /* an extra field "name=value" */
        const char *want;
    } t[] = {
        { "too many",   "statrep", "1001", 1001, NULL, "count" },
        { "zero",       "statrep", "0", 0, NULL, "count" },
        { "count lies", "statrep", "3", 2, NULL, "holds 2" },
        { "no count",   "statrep", NULL, 2, NULL, "count" },
        { "unknown",    "statrep", "2", 2, "colour=red", "unknown field colour" },
        { "other kind", "job", "2", 2, NULL, "kind job" },
    };

    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        struct sbuf b;
        char e2[SS_ERR_MAX];
        ss_sbuf_init(&b);
        assert_int_equal(rec_begin(&b, t[i].kind, 1), 0);
        assert_int_equal(rec_add(&b, "site", "B01"), 0);
        assert_int_equal(rec_add(&b, "created", "2025-11-21T23:50:00.123Z"), 0);
        if (t[i].count)
            assert_int_equal(rec_add(&b, "count", t[i].count), 0);
        for (size_t k = 0; k < t[i].msgs; k++)
            assert_int_equal(rec_addn(&b, "msg", f->msgs[k % 3].data, f->msgs[k % 3].len), 0);
        if (t[i].extra) {
            char name[32];
            const char *eq = strchr(t[i].extra, '=');
            snprintf(name, sizeof name, "%.*s", (int)(eq - t[i].extra), t[i].extra);
            assert_int_equal(rec_add(&b, name, eq + 1), 0);
        }
        assert_int_equal(rec_sign(&b, f->key, e2, sizeof e2), 0);
        int r = parse_copy(b.data, b.len, ring_key, &ring, err, sizeof err);
        if (r != -EBADMSG || strstr(err, t[i].want) == NULL)
            fail_msg("%s: got %d \"%s\", want -EBADMSG \"%s\"", t[i].label, r, err, t[i].want);
        ss_sbuf_free(&b);
    }
}

static void test_build_refuses(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX];
    struct sbuf b;
    struct statrep_msg many[STATREP_MAX_MSGS + 1];

    for (size_t i = 0; i < SS_ARRAY_LEN(many); i++)
        many[i] = f->msgs[i % 3];
    ss_sbuf_init(&b);
    assert_int_equal(statrep_build(&b, "B01", 0, f->msgs, 0, f->key, err, sizeof err), -EINVAL);
    assert_int_equal(statrep_build(&b, "B01", 0, many, SS_ARRAY_LEN(many), f->key, err,
                                   sizeof err), -EINVAL);
    assert_int_equal(statrep_build(&b, "b01", 0, f->msgs, 3, f->key, err, sizeof err), -EINVAL);
    assert_int_equal(statrep_build(&b, "B01", 0, f->msgs, 3, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(b.len, 0);
    /* The most messages a bundle holds is fine. */
    assert_int_equal(statrep_build(&b, "B01", 0, many, STATREP_MAX_MSGS, f->key, err,
                                   sizeof err), 0);
    assert_true(b.len < STATREP_MAX_SIZE);
    struct ring ring = { "B01", f->key, 0 };
    assert_int_equal(parse_copy(b.data, b.len, ring_key, &ring, err, sizeof err), 0);
    ss_sbuf_free(&b);
}

static void test_dirs(void **state)
{
    char *root = tu_tmpdir_new("test_statrep");
    char path[SS_PATH_MAX];

    assert_int_equal(statrep_dirs(root), 0);
    assert_int_equal(statrep_dirs(root), 0);        /* again: nothing to do */
    assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/statmgr.box/sites", root), 0);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/inboxes/statmgr.box/outgoing", root), 0);
    assert_int_equal(access(path, F_OK), 0);
    tu_tmpdir_free(root);
}

int main(void)
{
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    sm_set_identity("/nonexistent", "B01", "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_site, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_refuses, setup, teardown),
        cmocka_unit_test(test_dirs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
