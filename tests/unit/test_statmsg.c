/*
 * test_statmsg.c - unit tests of lib/statmsg.c: the catalogue, building,
 * the file form (round trip and every refusal, invalid UTF-8 included),
 * rendering, the identity (machine name, published whole while other
 * threads build messages), the exported field checks, and emitting into a
 * site's status message inbox.
 */
#include "testutil.h"

#include <dirent.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "inbox.h"
#include "record.h"
#include "statmsg.h"
#include "uniqname.h"

/* Every value of enum sm_id: the catalogue must hold each. */
static const unsigned all_ids[] = {
    SM_DIST_BEGIN, SM_DIST_OK, SM_DIST_FAILED, SM_DIST_STORED,
    SM_DIST_DP_COPY_FAILED, SM_DIST_DP_DONE, SM_DIST_TO_SITE, SM_DIST_DP_START,
    SM_DAEMON_STARTED, SM_DAEMON_STOPPING, SM_CORRUPT_FILE, SM_CONFIG_RELOADED,
    SM_CONFIG_BAD, SM_POOL_BACKLOG, SM_DIST_DP_FAILED_MAX,
    SM_STAT_FUTURE_HELD, SM_STAT_FUTURE_RELEASED, SM_STAT_INGEST_ERROR,
    SM_CLIENT_TEST,
};

/* ---- catalogue -------------------------------------------------------- */

static void test_catalog(void **state)
{
    assert_true(sm_catalog_len >= SS_ARRAY_LEN(all_ids));
    for (size_t i = 0; i < sm_catalog_len; i++) {
        const struct sm_catalog *c = &sm_catalog[i];
        if (i > 0 && sm_catalog[i - 1].id >= c->id)
            fail_msg("catalogue not sorted or not unique at %u", c->id);
        assert_true(c->id <= 65535);
        assert_true(c->severity == 'I' || c->severity == 'W' || c->severity == 'E');
        assert_true(c->type == SM_MILESTONE || c->type == SM_DETAIL || c->type == SM_AUDIT);
        assert_non_null(c->component);
        assert_true(c->component[0] != '\0');
        assert_non_null(c->text);
        assert_true(strlen(c->text) > 5);
        assert_ptr_equal(sm_lookup(c->id), c);
    }
    for (size_t i = 0; i < SS_ARRAY_LEN(all_ids); i++)
        if (sm_lookup(all_ids[i]) == NULL)
            fail_msg("ID %u missing from the catalogue", all_ids[i]);
    static const unsigned absent[] = { 0, 1, 2299, 2303, 8006, 8599, 8601, 65535, 70000 };
    for (size_t i = 0; i < SS_ARRAY_LEN(absent); i++)
        assert_null(sm_lookup(absent[i]));
    /* Spot checks against SPEC 5. */
    assert_int_equal(sm_lookup(SM_DIST_FAILED)->severity, 'E');
    assert_int_equal(sm_lookup(SM_DIST_DP_COPY_FAILED)->severity, 'E');
    assert_int_equal(sm_lookup(SM_CORRUPT_FILE)->severity, 'W');
    assert_int_equal(sm_lookup(SM_DIST_DP_FAILED_MAX)->severity, 'E');
}

static void test_type_names(void **state)
{
    static const struct { const char *s; int ok; enum sm_type t; } cases[] = {
        { "milestone", 1, SM_MILESTONE }, { "detail", 1, SM_DETAIL },
        { "audit", 1, SM_AUDIT }, { "Milestone", 0, 0 }, { "", 0, 0 }, { "info", 0, 0 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        enum sm_type t = SM_AUDIT;
        int rc = sm_type_parse(cases[i].s, &t);
        assert_int_equal(rc, cases[i].ok ? 0 : -EINVAL);
        if (cases[i].ok) {
            assert_int_equal(t, cases[i].t);
            assert_string_equal(sm_type_name(t), cases[i].s);
        }
    }
    assert_int_equal(sm_type_parse(NULL, NULL), -EINVAL);
}

/* ---- building --------------------------------------------------------- */

static void test_init(void **state)
{
    struct statmsg a, b;
    static const unsigned char zero[16];

    sm_set_identity(NULL, NULL, NULL);
    assert_int_equal(sm_init(&a, SM_CORRUPT_FILE, NULL, NULL), 0);
    assert_int_equal(a.id, SM_CORRUPT_FILE);
    assert_int_equal(a.severity, 'W');
    assert_int_equal(a.type, SM_MILESTONE);
    assert_string_equal(a.component, "unknown");      /* "any" in the catalogue */
    assert_string_equal(a.site, "");
    assert_true(a.machine[0] != '\0');
    assert_null(strchr(a.machine, '.'));
    assert_int_equal(a.pid, (long)getpid());
    assert_int_equal(a.tid, (long)gettid());
    assert_true(a.time_ms > 1700000000000LL);
    assert_int_equal(a.nistr, 0);
    assert_int_equal(a.nattr, 0);
    assert_memory_not_equal(a.uid, zero, 16);

    assert_int_equal(sm_init(&b, SM_DIST_BEGIN, NULL, "B01"), 0);
    assert_memory_not_equal(a.uid, b.uid, 16);
    assert_string_equal(b.component, "distmgr");
    assert_string_equal(b.site, "B01");
    assert_int_equal(b.severity, 'I');

    /* Not in the catalogue: I / milestone. */
    assert_int_equal(sm_init(&b, 12345, "my client", NULL), 0);
    assert_int_equal(b.severity, 'I');
    assert_int_equal(b.type, SM_MILESTONE);
    assert_string_equal(b.component, "my client");

    /* The identity fills in what the caller leaves out. */
    sm_set_identity("/nonexistent", "CEN", "statmgr");
    assert_int_equal(sm_init(&b, SM_DIST_BEGIN, NULL, NULL), 0);
    assert_string_equal(b.component, "statmgr");
    assert_string_equal(b.site, "CEN");
    assert_int_equal(sm_init(&b, SM_DIST_BEGIN, "sender", ""), 0);
    assert_string_equal(b.component, "sender");
    assert_string_equal(b.site, "");
    sm_set_identity(NULL, NULL, NULL);

    assert_int_equal(sm_init(&b, 65536, NULL, NULL), -EINVAL);
    assert_int_equal(sm_init(&b, 1, "bad/component", NULL), -EINVAL);
    assert_int_equal(sm_init(&b, 1, NULL, "cen"), -EINVAL);
}

static void test_identity_machine(void **state)
{
    struct statmsg m;
    char host[SM_MACHINE];

    ss_host_short(host, sizeof host);

    /* site.machine, when set, is the name messages carry. */
    sm_set_identity2("/nonexistent", "CEN", "statmgr", "srv-01");
    assert_int_equal(sm_init(&m, SM_DIST_BEGIN, NULL, NULL), 0);
    assert_string_equal(m.machine, "srv-01");
    assert_string_equal(m.site, "CEN");
    assert_string_equal(m.component, "statmgr");

    /* A reload that sets it again, or changes it. */
    sm_set_identity2("/nonexistent", "CEN", "statmgr", "srv-01");
    assert_int_equal(sm_init(&m, SM_DIST_BEGIN, NULL, NULL), 0);
    assert_string_equal(m.machine, "srv-01");
    sm_set_identity2("/nonexistent", "CEN", "statmgr", "srv-02.example");
    assert_int_equal(sm_init(&m, SM_DIST_BEGIN, NULL, NULL), 0);
    assert_string_equal(m.machine, "srv-02.example");

    /* Empty, NULL or invalid: the short host name. */
    static const char *const fallback[] = { "", NULL, "bad\nname", "h\xc3\xb4te" };
    for (size_t i = 0; i < SS_ARRAY_LEN(fallback); i++) {
        sm_set_identity2("/nonexistent", "CEN", "statmgr", fallback[i]);
        assert_int_equal(sm_init(&m, SM_DIST_BEGIN, NULL, NULL), 0);
        assert_string_equal(m.machine, host);
    }
    /* The three-argument form leaves it to the host name too. */
    sm_set_identity2("/nonexistent", "CEN", "statmgr", "srv-01");
    sm_set_identity("/nonexistent", "CEN", "statmgr");
    assert_int_equal(sm_init(&m, SM_DIST_BEGIN, NULL, NULL), 0);
    assert_string_equal(m.machine, host);
    sm_set_identity(NULL, NULL, NULL);
}

/*
 * The identity is replaced while other threads build messages (a daemon
 * reloading on SIGHUP): every message must carry one whole identity, the
 * old one or the new, never a mix or a half-cleared one.  Two identities
 * alternate as fast as they can be set while readers check each message.
 */
struct race {
    atomic_int stop;
    atomic_long mixed;
    atomic_long built;
    char        bad[128];
};

static void *race_reader(void *arg)
{
    struct race *r = arg;
    struct statmsg *m = malloc(sizeof *m);

    assert_non_null(m);
    while (!atomic_load(&r->stop)) {
        if (sm_init(m, 1, NULL, NULL) != 0) {
            atomic_fetch_add(&r->mixed, 1);
            continue;
        }
        int a = strcmp(m->site, "AAA") == 0 && strcmp(m->component, "alpha") == 0;
        int b = strcmp(m->site, "BBB") == 0 && strcmp(m->component, "beta") == 0;
        if (!a && !b && atomic_fetch_add(&r->mixed, 1) == 0)
            snprintf(r->bad, sizeof r->bad, "site \"%s\" component \"%s\"", m->site,
                     m->component);
        atomic_fetch_add(&r->built, 1);
    }
    free(m);
    return NULL;
}

static void test_identity_threads(void **state)
{
    static struct race r;
    pthread_t t[2];

    memset(&r, 0, sizeof r);
    sm_set_identity("/nonexistent", "AAA", "alpha");
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++)
        assert_int_equal(pthread_create(&t[i], NULL, race_reader, &r), 0);
    /* Enough swaps that a reader meets many of them, whatever the speed
     * of the machine: a count, not a time. */
    for (int i = 0; i < 20000 || atomic_load(&r.built) < 20000; i++) {
        if (i & 1)
            sm_set_identity("/nonexistent", "AAA", "alpha");
        else
            sm_set_identity("/nonexistent", "BBB", "beta");
        if (i > 2000000)
            break;
    }
    atomic_store(&r.stop, 1);
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++)
        pthread_join(t[i], NULL);
    sm_set_identity(NULL, NULL, NULL);
    if (atomic_load(&r.mixed) != 0)
        fail_msg("%ld of %ld messages mixed two identities (e.g. %s)", atomic_load(&r.mixed),
                 atomic_load(&r.built), r.bad);
}

static void test_istr_attr(void **state)
{
    struct statmsg m;
    char big[SM_ISTR_LEN + 100];

    assert_int_equal(sm_init(&m, 1, "t", NULL), 0);
    for (int i = 0; i < SM_MAX_ISTR; i++)
        assert_int_equal(sm_add_istr(&m, "s"), 0);
    assert_int_equal(sm_add_istr(&m, "s"), -E2BIG);
    assert_int_equal(m.nistr, SM_MAX_ISTR);

    /* Long strings are cut to 511 bytes, never inside a UTF-8 sequence. */
    m.nistr = 0;
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(sm_add_istr(&m, big), 0);
    assert_int_equal(strlen(m.istr[0]), SM_ISTR_LEN - 1);
    memset(big, 'a', SM_ISTR_LEN - 2);
    strcpy(big + SM_ISTR_LEN - 2, "\xc3\xa9zz");          /* é across the cut */
    assert_int_equal(sm_add_istr(&m, big), 0);
    assert_int_equal(strlen(m.istr[1]), SM_ISTR_LEN - 2);
    memset(big, 'a', SM_ISTR_LEN - 3);
    strcpy(big + SM_ISTR_LEN - 3, "\xc3\xa9zz");          /* é just fits */
    assert_int_equal(sm_add_istr(&m, big), 0);
    assert_int_equal(strlen(m.istr[2]), SM_ISTR_LEN - 1);
    assert_int_equal(sm_add_istr(&m, NULL), 0);
    assert_string_equal(m.istr[3], "");
    /* Bytes that are not UTF-8 become '?': the message is still sent,
     * and sm_format() takes it. */
    assert_int_equal(sm_add_istr(&m, "caf\xe9 \xff\xfe ok \xc3\xa9"), 0);
    assert_string_equal(m.istr[4], "caf? ?? ok \xc3\xa9");

    static const char *const bad_names[] = { "", "a b", "a=b", "é", "12345678901234567890123456789012" };
    for (size_t i = 0; i < SS_ARRAY_LEN(bad_names); i++)
        assert_int_equal(sm_add_attr(&m, bad_names[i], "v"), -EINVAL);
    assert_int_equal(sm_add_attr(&m, "PackageID", "CEN00001"), 0);
    assert_int_equal(sm_add_attr(&m, "PackageID", "CEN00002"), -EEXIST);
    assert_int_equal(sm_add_attr(&m, "Path", "/srv/\x80x"), 0);
    assert_string_equal(sm_attr_get(&m, "Path"), "/srv/?x");
    m.nattr--;
    assert_string_equal(sm_attr_get(&m, "PackageID"), "CEN00001");
    assert_null(sm_attr_get(&m, "DP"));
    for (int i = 1; i < SM_MAX_ATTR; i++) {
        char n[16];
        snprintf(n, sizeof n, "a%d", i);
        assert_int_equal(sm_add_attr(&m, n, n), 0);
    }
    assert_int_equal(sm_add_attr(&m, "more", "x"), -E2BIG);
    assert_string_equal(sm_attr_get(&m, "a15"), "a15");
}

/* ---- file form -------------------------------------------------------- */

static void test_roundtrip_full(void **state)
{
    struct statmsg m, p;
    struct sbuf b;
    char err[SS_ERR_MAX];

    sm_set_identity(NULL, NULL, NULL);
    assert_int_equal(sm_init(&m, SM_DIST_DP_COPY_FAILED, "distmgr", "CEN"), 0);
    m.oserr = -13;
    for (int i = 0; i < SM_MAX_ISTR; i++) {
        char s[64];
        snprintf(s, sizeof s, "istr %d = \\ \n\t \xc3\xa9 %%1", i);
        assert_int_equal(sm_add_istr(&m, s), 0);
    }
    for (int i = 0; i < SM_MAX_ATTR; i++) {
        char n[16], v[64];
        snprintf(n, sizeof n, "Attr.%d", i);
        snprintf(v, sizeof v, "value=%d\nwith=equals", i);
        assert_int_equal(sm_add_attr(&m, n, v), 0);
    }
    ss_sbuf_init(&b);
    assert_int_equal(sm_format(&m, &b), 0);
    assert_true(b.len < SM_FILE_MAX);
    assert_int_equal(sm_parse(&p, b.data, b.len, err, sizeof err), 0);

    assert_memory_equal(p.uid, m.uid, 16);
    assert_int_equal(p.id, m.id);
    assert_int_equal(p.severity, 'E');
    assert_int_equal(p.type, m.type);
    assert_string_equal(p.component, "distmgr");
    assert_string_equal(p.site, "CEN");
    assert_string_equal(p.machine, m.machine);
    assert_int_equal(p.pid, m.pid);
    assert_int_equal(p.tid, m.tid);
    assert_int_equal(p.time_ms, m.time_ms);
    assert_int_equal(p.oserr, -13);
    assert_int_equal(p.nistr, SM_MAX_ISTR);
    for (int i = 0; i < SM_MAX_ISTR; i++)
        assert_string_equal(p.istr[i], m.istr[i]);
    assert_int_equal(p.nattr, SM_MAX_ATTR);
    for (int i = 0; i < SM_MAX_ATTR; i++) {
        assert_string_equal(p.attr[i].name, m.attr[i].name);
        assert_string_equal(p.attr[i].value, m.attr[i].value);
    }
    ss_sbuf_free(&b);

    /* sm_format wants an empty buffer, and refuses what sm_parse would. */
    ss_sbuf_init(&b);
    ss_sbuf_adds(&b, "x");
    assert_int_equal(sm_format(&m, &b), -EINVAL);
    ss_sbuf_reset(&b);
    m.severity = 'X';
    assert_int_equal(sm_format(&m, &b), -EINVAL);
    m.severity = 'I';
    strcpy(m.site, "cen");
    assert_int_equal(sm_format(&m, &b), -EINVAL);
    strcpy(m.site, "CEN");
    assert_int_equal(sm_format(&m, &b), 0);
    ss_sbuf_free(&b);
}

/* sm_format() refuses every field sm_parse() would refuse, also when the
 * builders were bypassed and the struct filled in by hand. */
static void test_format_refuses(void **state)
{
    static const struct { const char *label; int field; const char *value; } t[] = {
        /* field: 0 istr[0], 1 attr value, 2 attr name, 3 component, 4 machine */
        { "istr latin-1",     0, "caf\xe9" },
        { "istr cut seq",     0, "ab\xe2\x82" },
        { "istr surrogate",   0, "\xed\xa0\x80" },
        { "attr value bad",   1, "\xff" },
        { "attr name blank",  2, "a b" },
        { "component utf-8",  3, "caf\xc3\xa9" },
        { "machine utf-8",    4, "h\xc3\xb4te" },
        { "machine bad",      4, "h\xf4te" },
    };
    struct statmsg m;
    struct sbuf b;

    ss_sbuf_init(&b);
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        assert_int_equal(sm_init(&m, SM_CLIENT_TEST, "client", "CEN"), 0);
        assert_int_equal(sm_add_istr(&m, "fine"), 0);
        assert_int_equal(sm_add_attr(&m, "Name", "fine"), 0);
        switch (t[i].field) {
        case 0: strcpy(m.istr[0], t[i].value); break;
        case 1: strcpy(m.attr[0].value, t[i].value); break;
        case 2: strcpy(m.attr[0].name, t[i].value); break;
        case 3: strcpy(m.component, t[i].value); break;
        case 4: strcpy(m.machine, t[i].value); break;
        }
        ss_sbuf_reset(&b);
        if (sm_format(&m, &b) != -EINVAL)
            fail_msg("%s: sm_format took it", t[i].label);
    }

    /* The rest of what the parser refuses. */
    assert_int_equal(sm_init(&m, SM_CLIENT_TEST, "client", "CEN"), 0);
    m.type = (enum sm_type)7;
    ss_sbuf_reset(&b);
    assert_int_equal(sm_format(&m, &b), -EINVAL);
    m.type = SM_DETAIL;
    assert_int_equal(sm_add_attr(&m, "A", "1"), 0);
    assert_int_equal(sm_add_attr(&m, "B", "2"), 0);
    strcpy(m.attr[1].name, "A");                        /* a repeated name */
    assert_int_equal(sm_format(&m, &b), -EINVAL);
    m.nattr = 0;
    m.time_ms = 253402300800000LL;                      /* year 10000 */
    assert_int_equal(sm_format(&m, &b), -EINVAL);
    m.time_ms = 1795305000123LL;
    memset(m.istr[0], 'a', sizeof m.istr[0]);           /* no NUL in the field */
    m.nistr = 1;
    assert_int_equal(sm_format(&m, &b), -EINVAL);
    m.istr[0][SM_ISTR_LEN - 1] = '\0';
    assert_int_equal(sm_format(&m, &b), 0);
    ss_sbuf_free(&b);
}

static void test_field_checks(void **state)
{
    static const struct { const char *label, *in; int comp, mach, attr; } t[] = {
        { "word",        "distmgr",            1, 1, 1 },
        { "with space",  "my client",          1, 1, 0 },
        { "dotted",      "pc-17.example",      1, 1, 1 },
        { "slash",       "a/b",                0, 1, 0 },
        { "equals",      "a=b",                0, 1, 0 },
        { "empty",       "",                   0, 0, 0 },
        { "utf-8",       "caf\xc3\xa9",        0, 0, 0 },
        { "not utf-8",   "caf\xe9",            0, 0, 0 },
        { "newline",     "a\nb",               0, 0, 0 },
        { "32 bytes",    "12345678901234567890123456789012", 0, 1, 0 },
        { "63 bytes",    "123456789012345678901234567890123456789012345678901234567890123",
          0, 1, 0 },
        { "64 bytes",    "1234567890123456789012345678901234567890123456789012345678901234",
          0, 0, 0 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        if (sm_component_ok(t[i].in) != t[i].comp || sm_machine_ok(t[i].in) != t[i].mach ||
            sm_attr_name_ok(t[i].in) != t[i].attr)
            fail_msg("%s: component %d machine %d attr %d, want %d %d %d", t[i].label,
                     sm_component_ok(t[i].in), sm_machine_ok(t[i].in),
                     sm_attr_name_ok(t[i].in), t[i].comp, t[i].mach, t[i].attr);
    }
    assert_int_equal(sm_component_ok(NULL), 0);
    assert_int_equal(sm_machine_ok(NULL), 0);
    assert_int_equal(sm_attr_name_ok(NULL), 0);
}

/* A statmsg record written field by field, with one change. */
enum op { OP_NONE, OP_REPLACE, OP_ADD, OP_DROP };
struct sm_case {
    const char *label;
    enum op     op;
    const char *name;
    const char *value;
    size_t      vlen;       /* 0: strlen(value) */
    int         times;      /* OP_ADD: how many (value gets a number if > 1) */
    int         want;       /* 0 or -EBADMSG */
    const char *err;        /* substring of err[] */
};

static const char *const base_fields[][2] = {
    { "uid", "00112233445566778899aabbccddeeff" },
    { "id", "2300" },
    { "severity", "I" },
    { "type", "milestone" },
    { "component", "distmgr" },
    { "site", "CEN" },
    { "machine", "host1" },
    { "pid", "100" },
    { "tid", "101" },
    { "time", "2026-11-21T23:50:00.123Z" },
    { "oserr", "0" },
    { "istr", "Pkg" },
    { "istr", "CEN00001" },
    { "attr", "PackageID=CEN00001" },
};

static void build_case(struct sbuf *b, const char *kind, int version, const struct sm_case *c)
{
    ss_sbuf_init(b);
    assert_int_equal(rec_begin(b, kind, version), 0);
    int replaced = 0;
    for (size_t i = 0; i < SS_ARRAY_LEN(base_fields); i++) {
        const char *n = base_fields[i][0], *v = base_fields[i][1];
        size_t vl = strlen(v);
        if (c && !replaced && strcmp(n, c->name) == 0) {
            if (c->op == OP_DROP) {
                replaced = 1;
                continue;
            }
            if (c->op == OP_REPLACE) {
                v = c->value;
                vl = c->vlen ? c->vlen : strlen(v);
                replaced = 1;
            }
        }
        assert_int_equal(rec_addn(b, n, v, vl), 0);
    }
    if (c && c->op == OP_ADD) {
        for (int k = 0; k < (c->times ? c->times : 1); k++) {
            if (c->times > 1) {
                /* Distinct values: "<value><k>" or "<name><k>=<rest>". */
                const char *eq = strchr(c->value, '=');
                if (eq)
                    assert_int_equal(rec_addf(b, c->name, "%.*s%d%s", (int)(eq - c->value),
                                              c->value, k, eq), 0);
                else
                    assert_int_equal(rec_addf(b, c->name, "%s%d", c->value, k), 0);
            } else {
                assert_int_equal(rec_addn(b, c->name, c->value,
                                          c->vlen ? c->vlen : strlen(c->value)), 0);
            }
        }
    }
    assert_int_equal(rec_end(b), 0);
}

static char s512[SM_ISTR_LEN + 1];
static char s256[SM_ATTR_VALUE + 8];

static const struct sm_case sm_cases[] = {
    { "base", OP_NONE, "", "", 0, 0, 0, "" },
    { "empty site", OP_REPLACE, "site", "", 0, 0, 0, "" },
    { "10 istr", OP_ADD, "istr", "x", 0, 8, 0, "" },
    { "16 attr", OP_ADD, "attr", "n=v", 0, 15, 0, "" },
    { "time without ms", OP_REPLACE, "time", "2026-11-21T23:50:00Z", 0, 0, 0, "" },
    { "negative oserr", OP_REPLACE, "oserr", "-2", 0, 0, 0, "" },
    { "istr of 511", OP_REPLACE, "istr", s512 + 1, 0, 0, 0, "" },
    { "id 70000", OP_REPLACE, "id", "70000", 0, 0, -EBADMSG, "field id" },
    { "id -1", OP_REPLACE, "id", "-1", 0, 0, -EBADMSG, "field id" },
    { "id empty", OP_REPLACE, "id", "", 0, 0, -EBADMSG, "field id" },
    { "id text", OP_REPLACE, "id", "12a", 0, 0, -EBADMSG, "field id" },
    { "id NUL", OP_REPLACE, "id", "12\0" "3", 4, 0, -EBADMSG, "field id: NUL byte" },
    { "severity X", OP_REPLACE, "severity", "X", 0, 0, -EBADMSG, "field severity" },
    { "severity II", OP_REPLACE, "severity", "II", 0, 0, -EBADMSG, "field severity" },
    { "severity lower", OP_REPLACE, "severity", "i", 0, 0, -EBADMSG, "field severity" },
    { "type info", OP_REPLACE, "type", "info", 0, 0, -EBADMSG, "field type" },
    { "site cen", OP_REPLACE, "site", "cen", 0, 0, -EBADMSG, "field site" },
    { "site CENT", OP_REPLACE, "site", "CENT", 0, 0, -EBADMSG, "field site" },
    { "component slash", OP_REPLACE, "component", "a/b", 0, 0, -EBADMSG, "field component" },
    { "component empty", OP_REPLACE, "component", "", 0, 0, -EBADMSG, "field component" },
    { "component 32", OP_REPLACE, "component", "12345678901234567890123456789012", 0, 0,
      -EBADMSG, "field component" },
    { "machine empty", OP_REPLACE, "machine", "", 0, 0, -EBADMSG, "field machine" },
    { "machine control", OP_REPLACE, "machine", "ho\x01st", 0, 0, -EBADMSG, "field machine" },
    { "machine newline", OP_REPLACE, "machine", "ho\nst", 0, 0, -EBADMSG, "field machine" },
    { "machine 64", OP_REPLACE, "machine",
      "1234567890123456789012345678901234567890123456789012345678901234", 0, 0,
      -EBADMSG, "field machine" },
    { "uid short", OP_REPLACE, "uid", "0011", 0, 0, -EBADMSG, "field uid" },
    { "uid not hex", OP_REPLACE, "uid", "0011223344556677889900aabbccddzz", 0, 0,
      -EBADMSG, "field uid" },
    { "uid long", OP_REPLACE, "uid", "00112233445566778899aabbccddeeff00", 0, 0,
      -EBADMSG, "field uid" },
    { "pid -1", OP_REPLACE, "pid", "-1", 0, 0, -EBADMSG, "field pid" },
    { "tid x", OP_REPLACE, "tid", "x", 0, 0, -EBADMSG, "field tid" },
    { "time word", OP_REPLACE, "time", "yesterday", 0, 0, -EBADMSG, "field time" },
    { "oserr float", OP_REPLACE, "oserr", "1.5", 0, 0, -EBADMSG, "field oserr" },
    { "oserr too big", OP_REPLACE, "oserr", "2147483648", 0, 0, -EBADMSG, "field oserr" },
    { "11 istr", OP_ADD, "istr", "x", 0, 9, -EBADMSG, "more than 10 insertion strings" },
    { "istr of 512", OP_REPLACE, "istr", s512, 0, 0, -EBADMSG, "field istr: longer" },
    { "istr NUL", OP_REPLACE, "istr", "a\0b", 3, 0, -EBADMSG, "field istr: NUL byte" },
    { "istr utf-8", OP_REPLACE, "istr", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 0, 0, 0, "" },
    { "istr latin-1", OP_REPLACE, "istr", "caf\xe9", 0, 0, -EBADMSG,
      "insertion string 1 is not valid UTF-8" },
    { "istr cut seq", OP_ADD, "istr", "ab\xe2\x82", 0, 0, -EBADMSG,
      "insertion string 3 is not valid UTF-8" },
    { "istr overlong", OP_REPLACE, "istr", "\xc0\xaf", 0, 0, -EBADMSG, "not valid UTF-8" },
    { "istr surrogate", OP_REPLACE, "istr", "\xed\xa0\x80", 0, 0, -EBADMSG, "not valid UTF-8" },
    { "attr value utf-8", OP_REPLACE, "attr", "PackageID=\xc3\xa9t\xc3\xa9", 0, 0, 0, "" },
    { "attr value bad", OP_REPLACE, "attr", "PackageID=CEN\xff", 0, 0, -EBADMSG,
      "value of PackageID is not valid UTF-8" },
    { "component bad", OP_REPLACE, "component", "dist\xe9", 0, 0, -EBADMSG, "field component" },
    { "machine utf-8", OP_REPLACE, "machine", "h\xc3\xb4te", 0, 0, -EBADMSG, "field machine" },
    { "machine bad", OP_REPLACE, "machine", "h\xf4te", 0, 0, -EBADMSG, "field machine" },
    { "17 attr", OP_ADD, "attr", "n=v", 0, 16, -EBADMSG, "more than 16 attributes" },
    { "attr no equals", OP_ADD, "attr", "novalue", 0, 0, -EBADMSG, "field attr" },
    { "attr bad name", OP_ADD, "attr", "a b=c", 0, 0, -EBADMSG, "field attr" },
    { "attr empty name", OP_ADD, "attr", "=c", 0, 0, -EBADMSG, "field attr" },
    { "attr twice", OP_ADD, "attr", "PackageID=x", 0, 0, -EBADMSG, "PackageID appears twice" },
    { "attr value 256", OP_REPLACE, "attr", s256, 0, 0, -EBADMSG, "value longer" },
    { "unknown field", OP_ADD, "color", "red", 0, 0, -EBADMSG, "unknown field color" },
    { "id twice", OP_ADD, "id", "2301", 0, 0, -EBADMSG, "field id: appears twice" },
    { "missing uid", OP_DROP, "uid", NULL, 0, 0, -EBADMSG, "missing field uid" },
    { "missing time", OP_DROP, "time", NULL, 0, 0, -EBADMSG, "missing field time" },
    { "missing oserr", OP_DROP, "oserr", NULL, 0, 0, -EBADMSG, "missing field oserr" },
};

static void test_parse_cases(void **state)
{
    memset(s512, 'a', SM_ISTR_LEN);
    s512[SM_ISTR_LEN] = '\0';
    memcpy(s256, "n=", 2);
    memset(s256 + 2, 'v', SM_ATTR_VALUE);
    s256[SM_ATTR_VALUE + 2] = '\0';

    for (size_t i = 0; i < SS_ARRAY_LEN(sm_cases); i++) {
        const struct sm_case *c = &sm_cases[i];
        struct sbuf b;
        struct statmsg m;
        char err[SS_ERR_MAX] = "";

        build_case(&b, "statmsg", 1, c->op == OP_NONE ? NULL : c);
        int rc = sm_parse(&m, b.data, b.len, err, sizeof err);
        if (rc != c->want)
            fail_msg("%s: rc %d, want %d (%s)", c->label, rc, c->want, err);
        if (rc < 0 && strstr(err, c->err) == NULL)
            fail_msg("%s: err \"%s\", want \"%s\"", c->label, err, c->err);
        ss_sbuf_free(&b);
    }
}

static void test_parse_base_values(void **state)
{
    struct sbuf b;
    struct statmsg m;
    char err[SS_ERR_MAX], hex[33];

    build_case(&b, "statmsg", 1, NULL);
    assert_int_equal(sm_parse(&m, b.data, b.len, err, sizeof err), 0);
    ss_hex(m.uid, 16, hex);
    assert_string_equal(hex, "00112233445566778899aabbccddeeff");
    assert_int_equal(m.id, 2300);
    assert_string_equal(m.machine, "host1");
    assert_int_equal(m.pid, 100);
    assert_int_equal(m.tid, 101);
    assert_int_equal(m.time_ms, 1795305000123LL);
    assert_int_equal(m.nistr, 2);
    assert_string_equal(m.istr[1], "CEN00001");
    assert_string_equal(sm_attr_get(&m, "PackageID"), "CEN00001");
    ss_sbuf_free(&b);
}

static void test_parse_kind_version(void **state)
{
    static const struct { const char *kind; int version; const char *err; } cases[] = {
        { "job", 1, "not a status message" },
        { "statmsg", 2, "version 2 is not supported" },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        struct sbuf b;
        struct statmsg m;
        char err[SS_ERR_MAX];
        build_case(&b, cases[i].kind, cases[i].version, NULL);
        assert_int_equal(sm_parse(&m, b.data, b.len, err, sizeof err), -EBADMSG);
        assert_non_null(strstr(err, cases[i].err));
        ss_sbuf_free(&b);
    }

    /* Damage passes through from the record layer; size is capped. */
    struct sbuf b;
    struct statmsg m;
    char err[SS_ERR_MAX];
    build_case(&b, "statmsg", 1, NULL);
    b.data[20] ^= 1;
    assert_int_equal(sm_parse(&m, b.data, b.len, err, sizeof err), -EBADMSG);
    char *big = calloc(1, SM_FILE_MAX + 1);
    assert_non_null(big);
    assert_int_equal(sm_parse(&m, big, SM_FILE_MAX + 1, err, sizeof err), -EFBIG);
    free(big);
    ss_sbuf_free(&b);
}

/* ---- rendering -------------------------------------------------------- */

static void test_render(void **state)
{
    struct statmsg m;
    char out[1024];

    assert_int_equal(sm_init(&m, SM_DIST_BEGIN, "distmgr", NULL), 0);
    sm_add_istr(&m, "Office");
    sm_add_istr(&m, "CEN00001");
    sm_render(&m, out, sizeof out);
    assert_string_equal(out, "Distribution Manager is beginning to process package \"Office\" "
                             "(package ID = CEN00001).");

    /* A missing insertion string renders as nothing. */
    m.nistr = 1;
    sm_render(&m, out, sizeof out);
    assert_string_equal(out, "Distribution Manager is beginning to process package \"Office\" "
                             "(package ID = ).");

    /* Cut to the buffer, always terminated. */
    sm_render(&m, out, 11);
    assert_string_equal(out, "Distributi");
    out[0] = 'x';
    sm_render(&m, out, 0);
    assert_int_equal(out[0], 'x');

    /* An ID outside the catalogue. */
    assert_int_equal(sm_init(&m, 12345, "client", NULL), 0);
    sm_render(&m, out, sizeof out);
    assert_string_equal(out, "message ID 12345");
    sm_add_istr(&m, "a");
    sm_add_istr(&m, "b c");
    sm_render(&m, out, sizeof out);
    assert_string_equal(out, "message ID 12345: a; b c");

    /* %10 is the tenth string, %1 followed by a digit stays %1. */
    static const struct { const char *text; int nistr; const char *want; } cases[] = {
        { "%1 and %10", 10, "s1 and s10" },
        { "%10%1", 10, "s10s1" },
        { "%12", 10, "s12" },
        { "%1", 0, "" },
        { "%10", 9, "" },
        { "100% sure %0 %", 1, "100% sure %0 %" },
        { "%%1", 1, "%s1" },
        { "[%3]", 2, "[]" },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        m.nistr = 0;
        for (int k = 1; k <= cases[i].nistr; k++) {
            char s[16];
            snprintf(s, sizeof s, "s%d", k);
            sm_add_istr(&m, s);
        }
        sm_render_text(cases[i].text, &m, out, sizeof out);
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("render \"%s\": \"%s\", want \"%s\"", cases[i].text, out, cases[i].want);
    }
}

/* ---- writing into an inbox -------------------------------------------- */

/* A site root with the whole inbox tree (malloc'ed), and in dir the path
 * of one of its inboxes. */
static char *make_root(const char *inbox, char *dir, size_t len)
{
    char *root = tu_tmpdir_new("test_statmsg");
    assert_int_equal(inbox_create_tree(root), 0);
    assert_int_equal(ss_path(dir, len, "%s/inboxes/%s", root, inbox), 0);
    return root;
}

/* The only .svf file in dir: its name and parsed content. */
static void read_one(const char *dir, char *name, size_t namelen, struct statmsg *m)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    char path[SS_PATH_MAX], err[SS_ERR_MAX];

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || n < 4 || strcmp(e->d_name + n - 4, ".svf") != 0)
            continue;
        found++;
        ss_strcpy(name, namelen, e->d_name);
    }
    closedir(d);
    assert_int_equal(found, 1);

    assert_int_equal(ss_path(path, sizeof path, "%s/%s", dir, name), 0);
    size_t n;
    char *buf = tu_read(path, &n);
    assert_true(n > 0);
    if (sm_parse(m, buf, n, err, sizeof err) != 0)
        fail_msg("emitted file does not parse: %s", err);
    free(buf);
}

static void test_emit(void **state)
{
    char dir[SS_PATH_MAX], name[SS_NAME_MAX + 1];
    char *root = make_root("statmgr.box/statmsgs", dir, sizeof dir);
    struct statmsg m;

    sm_set_identity(root, "CEN", "distmgr");
    const char *const attrs[] = { "PackageID", "CEN00001", "DP", "/srv/dp1", NULL };
    assert_int_equal(sm_emit(SM_DIST_BEGIN, 0, attrs, "Office", "CEN00001", (char *)NULL), 0);

    read_one(dir, name, sizeof name, &m);
    assert_true(uniq_name_ok(name, ".svf"));
    assert_memory_equal(name, "CEN-", 4);
    assert_int_equal(m.id, SM_DIST_BEGIN);
    assert_int_equal(m.severity, 'I');
    assert_string_equal(m.component, "distmgr");
    assert_string_equal(m.site, "CEN");
    assert_int_equal(m.pid, (long)getpid());
    assert_int_equal(m.nistr, 2);
    assert_string_equal(m.istr[0], "Office");
    assert_string_equal(m.istr[1], "CEN00001");
    assert_int_equal(m.nattr, 2);
    assert_string_equal(sm_attr_get(&m, "DP"), "/srv/dp1");

    /* No site root: refused, logged, not fatal. */
    sm_set_identity(NULL, NULL, NULL);
    assert_int_equal(sm_emit(SM_CLIENT_TEST, 0, NULL, "x", (char *)NULL), -ENOENT);

    /* A root without inboxes: an error, not a crash. */
    char missing[SS_PATH_MAX];
    assert_int_equal(ss_path(missing, sizeof missing, "%s/nothing", root), 0);
    sm_set_identity(missing, "CEN", "distmgr");
    assert_true(sm_emit(SM_CLIENT_TEST, 0, NULL, "x", (char *)NULL) < 0);
    sm_set_identity(NULL, NULL, NULL);

    tu_tmpdir_free(root);
}

/* Files in dir that are not dot files. */
static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && e->d_type != DT_DIR)
            n++;
    closedir(d);
    return n;
}

/* A batch holds its messages until its end, then hands them all over;
 * more than a batch holds go out in full batches on the way; an empty
 * batch and an end without a begin do nothing. */
static void test_emit_batch(void **state)
{
    char dir[SS_PATH_MAX];
    char *root = make_root("statmgr.box/statmsgs", dir, sizeof dir);

    sm_set_identity(root, "CEN", "sender");
    assert_int_equal(sm_batch_end(), 0);
    sm_batch_begin();
    assert_int_equal(sm_batch_end(), 0);
    assert_int_equal(count_files(dir), 0);

    sm_batch_begin();
    for (int i = 0; i < 3; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(sm_emit_keyed(SM_CLIENT_TEST, key, 0, NULL, key, (char *)NULL), 0);
    }
    assert_int_equal(count_files(dir), 0);
    assert_int_equal(sm_batch_end(), 0);
    assert_int_equal(count_files(dir), 3);

    /* 70 messages: one full batch of 64 on the way, 6 at the end. */
    sm_batch_begin();
    for (int i = 0; i < 70; i++)
        assert_int_equal(sm_emit(SM_CLIENT_TEST, 0, NULL, "x", (char *)NULL), 0);
    assert_int_equal(count_files(dir), 3 + 64);
    assert_int_equal(sm_batch_end(), 0);
    assert_int_equal(count_files(dir), 3 + 70);

    /* After the end, a message is written at once again. */
    assert_int_equal(sm_emit(SM_CLIENT_TEST, 0, NULL, "y", (char *)NULL), 0);
    assert_int_equal(count_files(dir), 3 + 71);
    sm_set_identity(NULL, NULL, NULL);
    tu_tmpdir_free(root);
}

static void test_write_client_box(void **state)
{
    /* A client that does not know its site writes under its machine name. */
    char dir[SS_PATH_MAX], name[SS_NAME_MAX + 1];
    char *root = make_root("cap/statmsgs.box", dir, sizeof dir);
    struct statmsg m, p;

    sm_set_identity(NULL, NULL, NULL);
    assert_int_equal(sm_init(&m, SM_CLIENT_TEST, "client", ""), 0);
    strcpy(m.machine, "pc-17.example");
    sm_add_istr(&m, "hello");
    assert_int_equal(sm_write(&m, dir), 0);
    read_one(dir, name, sizeof name, &p);
    assert_memory_equal(name, "pc_17_example-", 14);
    assert_memory_equal(p.uid, m.uid, 16);
    assert_string_equal(p.istr[0], "hello");
    assert_string_equal(p.site, "");

    tu_tmpdir_free(root);
}

int main(void)
{
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catalog),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_identity_machine),
        cmocka_unit_test(test_identity_threads),
        cmocka_unit_test(test_istr_attr),
        cmocka_unit_test(test_roundtrip_full),
        cmocka_unit_test(test_format_refuses),
        cmocka_unit_test(test_field_checks),
        cmocka_unit_test(test_parse_cases),
        cmocka_unit_test(test_parse_base_values),
        cmocka_unit_test(test_parse_kind_version),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_emit),
        cmocka_unit_test(test_emit_batch),
        cmocka_unit_test(test_write_client_box),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
