/*
 * test_sendreq.c - unit tests for lib/sendreq.c: jobs and send requests.
 *
 * Round trips of job_format/job_parse (a package job, a status job) and
 * srq_format/srq_parse (package and status requests, next_try empty and
 * set, offsets, a last_error holding a newline and other odd bytes); the
 * refusals, table-driven, each built as a well-formed record (a correct
 * checksum) from a valid base with one field replaced, removed or added,
 * so that the parser's own checks are what refuses it; every truncation
 * and every single-byte change of a valid file refused by the checksum;
 * srq_store (replacing a file, nothing left in .tmp, durable or not, a
 * leftover .new of a killed rewrite) and srq_load (-ENOENT, -EBADMSG).
 */
#include "testutil.h"

#include <stdio.h>

#include "record.h"
#include "sendreq.h"

#define XFER     "CEN-0123456789abcdef0123456789abcdef"
#define CREATED  "2026-01-02T03:04:05.678Z"

/* ---- building records field by field ------------------------------- */

struct field {
    const char *name, *value;
};

enum op { OP_SET, OP_DEL, OP_ADD };

/* One change to a base record: set (replace the value of the first field
 * of that name), delete it, or add another field at the end. */
struct change {
    enum op     op;
    const char *name, *value;
};

#define MAXCH 3

struct bad {
    const char   *label;
    const char   *kind;      /* NULL: the right one */
    int           version;   /* 0: 1 */
    struct change ch[MAXCH];
    const char   *want;      /* a substring of err */
};

/* Build base (NULL-terminated) with the changes of c into b. */
static void build(struct sbuf *b, const char *kind, const struct field *base,
                  const struct bad *c)
{
    ss_sbuf_init(b);
    assert_int_equal(rec_begin(b, c->kind ? c->kind : kind, c->version ? c->version : 1), 0);
    for (const struct field *f = base; f->name; f++) {
        const char *v = f->value;
        int del = 0;
        for (int i = 0; i < MAXCH && c->ch[i].name; i++) {
            if (strcmp(c->ch[i].name, f->name) != 0)
                continue;
            if (c->ch[i].op == OP_SET)
                v = c->ch[i].value;
            else if (c->ch[i].op == OP_DEL)
                del = 1;
        }
        if (!del)
            assert_int_equal(rec_add(b, f->name, v), 0);
    }
    for (int i = 0; i < MAXCH && c->ch[i].name; i++)
        if (c->ch[i].op == OP_ADD)
            assert_int_equal(rec_add(b, c->ch[i].name, c->ch[i].value), 0);
    assert_int_equal(rec_end(b), 0);
}

static const struct field job_base[] = {
    { "site", "B01" },
    { "priority", "high" },
    { "package", "CEN00001" },
    { "version", "3" },
    { "instruction", "store/out/CEN00001-3.ins" },
    { "package_file", "store/out/CEN00001-3.pck" },
    { "created", CREATED },
    { NULL, NULL },
};

static const struct field sts_job_base[] = {
    { "site", "CEN" },
    { "priority", "low" },
    { "status_file", "inboxes/statmgr.box/outgoing/B01-x.sts" },
    { "created", CREATED },
    { NULL, NULL },
};

static const struct field srq_base[] = {
    { "type", "package" },
    { "dest", "G01" },
    { "hop", "B01" },
    { "priority", "medium" },
    { "package", "CEN00001" },
    { "version", "3" },
    { "xfer", XFER },
    { "size", "1000" },
    { "offset", "0" },
    { "pck_done", "0" },
    { "attempts", "0" },
    { "next_try", "" },
    { "last_error", "" },
    { "created", CREATED },
    { NULL, NULL },
};

/* ---- jobs ------------------------------------------------------------- */

static struct job package_job(void)
{
    struct job j;

    memset(&j, 0, sizeof j);
    j.type = SEND_PACKAGE;
    (void)ss_strcpy(j.site, sizeof j.site, "B01");
    j.priority = PRIO_MEDIUM;
    (void)ss_strcpy(j.package, sizeof j.package, "CEN0001F");
    j.version = 1234567890123LL;
    (void)ss_strcpy(j.instruction, sizeof j.instruction, "store/out/CEN0001F-1.ins");
    (void)ss_strcpy(j.package_file, sizeof j.package_file, "store/out/CEN0001F-1.pck");
    j.created_ms = 1767323045678LL;
    return j;
}

static void job_roundtrip(const struct job *in)
{
    struct sbuf b;
    struct job out;
    char err[SS_ERR_MAX] = "";

    ss_sbuf_init(&b);
    assert_int_equal(job_format(in, &b), 0);
    memset(&out, 0x5a, sizeof out);
    if (job_parse(b.data, b.len, &out, err, sizeof err) != 0)
        fail_msg("job_parse: %s", err);
    assert_int_equal(out.type, in->type);
    assert_string_equal(out.site, in->site);
    assert_int_equal(out.priority, in->priority);
    assert_string_equal(out.package, in->package);
    assert_int_equal(out.version, in->version);
    assert_string_equal(out.instruction, in->instruction);
    assert_string_equal(out.package_file, in->package_file);
    assert_string_equal(out.status_file, in->status_file);
    assert_int_equal(out.created_ms, in->created_ms);
    /* Nothing else is left over from before the parse. */
    assert_memory_equal(&out, in, sizeof out);
    ss_sbuf_free(&b);
}

static void test_job_roundtrip(void **state)
{
    struct job j = package_job();

    job_roundtrip(&j);
    for (int p = PRIO_HIGH; p <= PRIO_LOW; p++) {
        j.priority = (enum send_prio)p;
        job_roundtrip(&j);
    }

    memset(&j, 0, sizeof j);
    j.type = SEND_STATUS;
    (void)ss_strcpy(j.site, sizeof j.site, "CEN");
    j.priority = PRIO_LOW;
    (void)ss_strcpy(j.status_file, sizeof j.status_file, "inboxes/statmgr.box/outgoing/B01-1.sts");
    j.created_ms = 1;
    job_roundtrip(&j);
}

static void test_prio(void **state)
{
    enum send_prio p;

    assert_string_equal(prio_name(PRIO_HIGH), "high");
    assert_string_equal(prio_name(PRIO_MEDIUM), "medium");
    assert_string_equal(prio_name(PRIO_LOW), "low");
    assert_string_equal(prio_name((enum send_prio)7), "unknown");
    assert_int_equal(prio_parse("low", &p), 0);
    assert_int_equal(p, PRIO_LOW);
    assert_int_equal(prio_parse("HIGH", &p), -EINVAL);
    assert_int_equal(prio_parse("", &p), -EINVAL);
    assert_int_equal(prio_parse("unknown", &p), -EINVAL);
}

/* The base records themselves parse: the refusals below are the change. */
static void test_job_base_ok(void **state)
{
    static const struct bad none = { "none", NULL, 0, { { 0 } }, NULL };
    char err[SS_ERR_MAX];
    struct sbuf b;
    struct job j;

    build(&b, "job", job_base, &none);
    assert_int_equal(job_parse(b.data, b.len, &j, err, sizeof err), 0);
    assert_int_equal(j.type, SEND_PACKAGE);
    assert_int_equal(j.version, 3);
    ss_sbuf_free(&b);
    build(&b, "job", sts_job_base, &none);
    assert_int_equal(job_parse(b.data, b.len, &j, err, sizeof err), 0);
    assert_int_equal(j.type, SEND_STATUS);
    assert_string_equal(j.status_file, "inboxes/statmgr.box/outgoing/B01-x.sts");
    ss_sbuf_free(&b);
}

static const struct bad job_bad[] = {
    { "wrong kind", "sendreq", 0, { { 0 } }, "not a job" },
    { "version 2", NULL, 2, { { 0 } }, "version 2" },
    { "unknown field", NULL, 0, { { OP_ADD, "colour", "red" } }, "unknown field 'colour'" },
    { "repeated field", NULL, 0, { { OP_ADD, "site", "B02" } }, "more than once" },
    { "repeated path", NULL, 0, { { OP_ADD, "instruction", "a" } }, "more than once" },
    { "missing site", NULL, 0, { { OP_DEL, "site", NULL } }, "site" },
    { "missing created", NULL, 0, { { OP_DEL, "created", NULL } }, "created" },
    { "created not a time", NULL, 0, { { OP_SET, "created", "yesterday" } }, "created" },
    { "bad priority", NULL, 0, { { OP_SET, "priority", "urgent" } }, "priority" },
    { "priority in capitals", NULL, 0, { { OP_SET, "priority", "High" } }, "priority" },
    { "site lower case", NULL, 0, { { OP_SET, "site", "b01" } }, "site code" },
    { "site too short", NULL, 0, { { OP_SET, "site", "B0" } }, "site code" },
    { "site too long", NULL, 0, { { OP_SET, "site", "B012" } }, "site code" },
    { "site empty", NULL, 0, { { OP_SET, "site", "" } }, "site" },
    { "package lower case", NULL, 0, { { OP_SET, "package", "cen00001" } }, "package ID" },
    { "package too short", NULL, 0, { { OP_SET, "package", "CEN0001" } }, "package ID" },
    { "package not hex", NULL, 0, { { OP_SET, "package", "CEN0000G" } }, "package ID" },
    { "missing package", NULL, 0, { { OP_DEL, "package", NULL } }, "package" },
    { "version 0", NULL, 0, { { OP_SET, "version", "0" } }, "version" },
    { "version negative", NULL, 0, { { OP_SET, "version", "-1" } }, "version" },
    { "version not a number", NULL, 0, { { OP_SET, "version", "3a" } }, "version" },
    { "missing version", NULL, 0, { { OP_DEL, "version", NULL } }, "version" },
    { "instruction absolute", NULL, 0,
      { { OP_SET, "instruction", "/etc/passwd" } }, "not a safe relative path" },
    { "instruction with ..", NULL, 0,
      { { OP_SET, "instruction", "store/../../etc/passwd" } }, "not a safe relative path" },
    { "instruction only ..", NULL, 0,
      { { OP_SET, "instruction", ".." } }, "not a safe relative path" },
    { "instruction with .", NULL, 0,
      { { OP_SET, "instruction", "store/./out/x.ins" } }, "not a safe relative path" },
    { "instruction empty component", NULL, 0,
      { { OP_SET, "instruction", "store//out/x.ins" } }, "not a safe relative path" },
    { "instruction trailing slash", NULL, 0,
      { { OP_SET, "instruction", "store/out/" } }, "not a safe relative path" },
    { "instruction empty", NULL, 0,
      { { OP_SET, "instruction", "" } }, "instruction" },
    { "instruction outside store/out", NULL, 0,
      { { OP_SET, "instruction", "keys/site.key" } }, "is not under store/out/" },
    { "package_file outside store/out", NULL, 0,
      { { OP_SET, "package_file", "db/site.db" } }, "is not under store/out/" },
    { "package_file with ..", NULL, 0,
      { { OP_SET, "package_file", "../x.pck" } }, "not a safe relative path" },
    { "package_file absolute", NULL, 0,
      { { OP_SET, "package_file", "/x.pck" } }, "not a safe relative path" },
    { "missing package_file", NULL, 0, { { OP_DEL, "package_file", NULL } }, "package_file" },
    { "status job names a package", NULL, 0,
      { { OP_ADD, "status_file", "inboxes/x.sts" } }, "names a package" },
    { "status job names an instruction", NULL, 0,
      { { OP_DEL, "package", NULL }, { OP_ADD, "status_file", "inboxes/x.sts" } },
      "names a package" },
};

static const struct bad sts_job_bad[] = {
    { "status_file absolute", NULL, 0,
      { { OP_SET, "status_file", "/tmp/x.sts" } }, "not a safe relative path" },
    { "status_file with ..", NULL, 0,
      { { OP_SET, "status_file", "inboxes/../../x.sts" } }, "not a safe relative path" },
    { "status_file empty component", NULL, 0,
      { { OP_SET, "status_file", "inboxes//x.sts" } }, "not a safe relative path" },
    { "status job with a package", NULL, 0,
      { { OP_ADD, "package", "CEN00001" } }, "names a package" },
};

static void refuse_jobs(const struct field *base, const struct bad *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char err[SS_ERR_MAX] = "";
        struct sbuf b;
        struct job j;

        build(&b, "job", base, &t[i]);
        int rc = job_parse(b.data, b.len, &j, err, sizeof err);
        if (rc != -EBADMSG || !strstr(err, t[i].want))
            fail_msg("%s: job_parse gave %d, err '%s' (wanted -EBADMSG, '%s')", t[i].label, rc,
                     err, t[i].want);
        ss_sbuf_free(&b);
    }
}

static void test_job_refused(void **state)
{
    refuse_jobs(job_base, job_bad, SS_ARRAY_LEN(job_bad));
    refuse_jobs(sts_job_base, sts_job_bad, SS_ARRAY_LEN(sts_job_bad));
}

/* ---- send requests ---------------------------------------------------- */

static struct sendreq package_req(void)
{
    struct sendreq q;

    memset(&q, 0, sizeof q);
    q.type = SEND_PACKAGE;
    (void)ss_strcpy(q.dest, sizeof q.dest, "G01");
    (void)ss_strcpy(q.hop, sizeof q.hop, "B01");
    q.priority = PRIO_HIGH;
    (void)ss_strcpy(q.package, sizeof q.package, "CEN00001");
    q.version = 7;
    (void)ss_strcpy(q.xfer, sizeof q.xfer, XFER);
    q.size = 200LL << 20;
    q.offset = 96LL << 20;
    q.pck_done = 0;
    q.attempts = 4;
    q.next_ms = 0;
    q.created_ms = 1767323045678LL;
    return q;
}

static void srq_roundtrip(const struct sendreq *in)
{
    struct sbuf b;
    struct sendreq out;
    char err[SS_ERR_MAX] = "";

    ss_sbuf_init(&b);
    assert_int_equal(srq_format(in, &b), 0);
    memset(&out, 0x5a, sizeof out);
    if (srq_parse(b.data, b.len, &out, err, sizeof err) != 0)
        fail_msg("srq_parse: %s", err);
    assert_int_equal(out.type, in->type);
    assert_string_equal(out.dest, in->dest);
    assert_string_equal(out.hop, in->hop);
    assert_int_equal(out.priority, in->priority);
    assert_string_equal(out.package, in->package);
    assert_int_equal(out.version, in->version);
    assert_string_equal(out.xfer, in->xfer);
    assert_int_equal(out.size, in->size);
    assert_int_equal(out.offset, in->offset);
    assert_int_equal(out.pck_done, in->pck_done);
    assert_int_equal(out.attempts, in->attempts);
    assert_int_equal(out.next_ms, in->next_ms);
    assert_string_equal(out.last_error, in->last_error);
    assert_int_equal(out.created_ms, in->created_ms);
    assert_memory_equal(&out, in, sizeof out);
    ss_sbuf_free(&b);
}

static void test_srq_roundtrip(void **state)
{
    struct sendreq q = package_req();

    /* next_try empty (now), an offset, no error. */
    srq_roundtrip(&q);

    /* next_try set, package file done, a last error with a newline and
     * other bytes the record escapes. */
    q.next_ms = 1767323999001LL;
    q.pck_done = 1;
    q.offset = q.size;
    (void)ss_strcpy(q.last_error, sizeof q.last_error,
                    "cannot open /mnt/b01/receive: No such file\nsecond line\r\t"
                    "back\\slash \x01\x1f\x7f key=value caf\xc3\xa9 \xff");
    srq_roundtrip(&q);

    /* A last error that fills the field. */
    memset(q.last_error, 'e', sizeof q.last_error - 1);
    q.last_error[sizeof q.last_error - 1] = '\0';
    srq_roundtrip(&q);

    /* Offsets at the ends of their range. */
    memset(q.last_error, 0, sizeof q.last_error);
    q.size = INT64_MAX;
    q.offset = INT64_MAX - 1;
    q.pck_done = 0;
    q.attempts = 0;
    srq_roundtrip(&q);

    /* A status request has no package. */
    memset(&q, 0, sizeof q);
    q.type = SEND_STATUS;
    (void)ss_strcpy(q.dest, sizeof q.dest, "CEN");
    (void)ss_strcpy(q.hop, sizeof q.hop, "B01");
    q.priority = PRIO_LOW;
    (void)ss_strcpy(q.xfer, sizeof q.xfer, "G01-ffffffffffffffffffffffffffffffff");
    q.size = 512;
    q.created_ms = 1000;
    srq_roundtrip(&q);
    for (int p = PRIO_HIGH; p <= PRIO_LOW; p++) {
        q.priority = (enum send_prio)p;
        srq_roundtrip(&q);
    }
}

static void test_srq_base_ok(void **state)
{
    static const struct bad none = { "none", NULL, 0, { { 0 } }, NULL };
    char err[SS_ERR_MAX];
    struct sbuf b;
    struct sendreq q;

    build(&b, "sendreq", srq_base, &none);
    if (srq_parse(b.data, b.len, &q, err, sizeof err) != 0)
        fail_msg("srq_parse: %s", err);
    assert_int_equal(q.next_ms, 0);
    assert_string_equal(q.xfer, XFER);
    ss_sbuf_free(&b);
}

static const struct bad srq_bad[] = {
    { "wrong kind", "job", 0, { { 0 } }, "not a sendreq" },
    { "version 2", NULL, 2, { { 0 } }, "version 2" },
    { "unknown field", NULL, 0, { { OP_ADD, "route", "B01" } }, "unknown field 'route'" },
    { "repeated field", NULL, 0, { { OP_ADD, "offset", "5" } }, "more than once" },
    { "repeated hop", NULL, 0, { { OP_ADD, "hop", "B01" } }, "more than once" },
    { "bad type", NULL, 0, { { OP_SET, "type", "bundle" } }, "type" },
    { "missing type", NULL, 0, { { OP_DEL, "type", NULL } }, "type" },
    { "bad priority", NULL, 0, { { OP_SET, "priority", "normal" } }, "priority" },
    { "dest not a site code", NULL, 0, { { OP_SET, "dest", "g01" } }, "site code" },
    { "hop not a site code", NULL, 0, { { OP_SET, "hop", "B01/" } }, "site code" },
    { "missing hop", NULL, 0, { { OP_DEL, "hop", NULL } }, "hop" },
    { "package malformed", NULL, 0, { { OP_SET, "package", "CEN-0001" } }, "package ID" },
    { "version 0", NULL, 0, { { OP_SET, "version", "0" } }, "version" },
    { "xfer too short", NULL, 0, { { OP_SET, "xfer", "CEN-0123" } }, "not a unique name" },
    { "xfer with a path", NULL, 0,
      { { OP_SET, "xfer", "../CEN-0123456789abcdef0123456789abcdef" } }, "not a unique name" },
    { "xfer with a suffix", NULL, 0,
      { { OP_SET, "xfer", XFER ".pck" } }, "not a unique name" },
    { "xfer without prefix", NULL, 0,
      { { OP_SET, "xfer", "-0123456789abcdef0123456789abcdef" } }, "not a unique name" },
    { "xfer empty", NULL, 0, { { OP_SET, "xfer", "" } }, "not a unique name" },
    { "size negative", NULL, 0, { { OP_SET, "size", "-1" } }, "size" },
    { "offset not a number", NULL, 0, { { OP_SET, "offset", "12k" } }, "offset" },
    { "offset negative", NULL, 0, { { OP_SET, "offset", "-5" } }, "offset" },
    { "pck_done 2", NULL, 0, { { OP_SET, "pck_done", "2" } }, "pck_done" },
    { "attempts negative", NULL, 0, { { OP_SET, "attempts", "-1" } }, "attempts" },
    { "next_try not a time", NULL, 0, { { OP_SET, "next_try", "soon" } }, "next_try" },
    { "missing last_error", NULL, 0, { { OP_DEL, "last_error", NULL } }, "last_error" },
    { "missing created", NULL, 0, { { OP_DEL, "created", NULL } }, "created" },
};

static void test_srq_refused(void **state)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(srq_bad); i++) {
        char err[SS_ERR_MAX] = "";
        struct sbuf b;
        struct sendreq q;

        build(&b, "sendreq", srq_base, &srq_bad[i]);
        int rc = srq_parse(b.data, b.len, &q, err, sizeof err);
        if (rc != -EBADMSG || !strstr(err, srq_bad[i].want))
            fail_msg("%s: srq_parse gave %d, err '%s' (wanted -EBADMSG, '%s')", srq_bad[i].label,
                     rc, err, srq_bad[i].want);
        ss_sbuf_free(&b);
    }
}

/* ---- damaged files ---------------------------------------------------- */

typedef int (*parse_fn)(char *buf, size_t len, void *out, char *err, size_t errlen);

static int parse_job(char *buf, size_t len, void *out, char *err, size_t errlen)
{
    return job_parse(buf, len, out, err, errlen);
}

static int parse_srq(char *buf, size_t len, void *out, char *err, size_t errlen)
{
    return srq_parse(buf, len, out, err, errlen);
}

/* Every truncation and every one-bit change of a valid file is refused
 * as a whole with -EBADMSG and a reason. */
static void damage_all(const struct sbuf *good, parse_fn parse, void *out, const char *what)
{
    char err[SS_ERR_MAX];
    char *buf = malloc(good->len + 1);

    assert_non_null(buf);
    for (size_t n = 0; n < good->len; n++) {
        memcpy(buf, good->data, n);
        err[0] = '\0';
        int rc = parse(buf, n, out, err, sizeof err);
        if (rc != -EBADMSG || err[0] == '\0')
            fail_msg("%s truncated to %zu of %zu bytes: %d '%s'", what, n, good->len, rc, err);
    }
    for (size_t i = 0; i < good->len; i++) {
        memcpy(buf, good->data, good->len);
        buf[i] ^= 0x01;
        err[0] = '\0';
        int rc = parse(buf, good->len, out, err, sizeof err);
        if (rc != -EBADMSG || err[0] == '\0')
            fail_msg("%s with byte %zu altered: %d '%s'", what, i, rc, err);
    }
    /* Something after the end line. */
    memcpy(buf, good->data, good->len);
    buf[good->len] = '\n';
    assert_int_equal(parse(buf, good->len + 1, out, err, sizeof err), -EBADMSG);
    free(buf);
}

static void test_damaged(void **state)
{
    struct job j = package_job(), jo;
    struct sendreq q = package_req(), qo;
    struct sbuf b;

    (void)ss_strcpy(q.last_error, sizeof q.last_error, "line one\nline two");
    q.next_ms = 1767323999001LL;
    ss_sbuf_init(&b);
    assert_int_equal(job_format(&j, &b), 0);
    damage_all(&b, parse_job, &jo, "job");
    ss_sbuf_reset(&b);
    assert_int_equal(srq_format(&q, &b), 0);
    damage_all(&b, parse_srq, &qo, "sendreq");
    ss_sbuf_free(&b);
}

/* ---- srq_store / srq_load --------------------------------------------- */

struct dirs {
    char *root;
    int   dfd, tmpfd;
};

static int dirs_setup(void **state)
{
    struct dirs *d = calloc(1, sizeof *d);
    char path[SS_PATH_MAX];

    if (!d || !(d->root = malloc(SS_PATH_MAX)) ||
        tu_mkdtemp(d->root, SS_PATH_MAX, "test_sendreq") < 0 ||
        ss_path(path, sizeof path, "%s/.tmp", d->root) < 0 || mkdir(path, 0750) < 0)
        return -1;
    d->dfd = open(d->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    d->tmpfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dfd < 0 || d->tmpfd < 0)
        return -1;
    *state = d;
    return 0;
}

static int dirs_teardown(void **state)
{
    struct dirs *d = *state;

    close(d->tmpfd);
    close(d->dfd);
    int rc = ss_rm_rf(d->root);
    free(d->root);
    free(d);
    return rc;
}

static void assert_same_req(const struct sendreq *a, const struct sendreq *b)
{
    assert_string_equal(a->xfer, b->xfer);
    assert_int_equal(a->offset, b->offset);
    assert_int_equal(a->pck_done, b->pck_done);
    assert_int_equal(a->attempts, b->attempts);
    assert_string_equal(a->last_error, b->last_error);
    assert_memory_equal(a, b, sizeof *a);
}

static void test_store_load(void **state)
{
    struct dirs *d = *state;
    struct sendreq q = package_req(), got;
    char err[SS_ERR_MAX];
    const char *name = "B01-00000000000000000000000000000001.srq";

    for (int durable = 1; durable >= 0; durable--) {
        q.offset = durable ? 32LL << 20 : 64LL << 20;
        q.attempts = durable ? 1 : 2;
        memset(q.last_error, 0, sizeof q.last_error);
        (void)ss_strcpy(q.last_error, sizeof q.last_error, durable ? "first\nerror" : "second");
        assert_int_equal(srq_store(d->dfd, d->tmpfd, name, &q, durable), 0);
        if (srq_load(d->dfd, name, &got, err, sizeof err) != 0)
            fail_msg("srq_load: %s", err);
        assert_same_req(&got, &q);
        /* The new file replaced the old one; nothing stays behind. */
        assert_int_equal(tu_count_at(d->dfd), 2);      /* name and .tmp */
        assert_int_equal(tu_count_at(d->tmpfd), 0);
    }
}

/* A rewrite killed after writing its .new: the next store replaces it. */
static void test_store_over_leftover(void **state)
{
    struct dirs *d = *state;
    struct sendreq q = package_req(), got;
    char err[SS_ERR_MAX];
    const char *name = "B01-00000000000000000000000000000002.srq";

    tu_put(d->tmpfd, "B01-00000000000000000000000000000002.srq.new", "half a reque");
    q.pck_done = 1;
    assert_int_equal(srq_store(d->dfd, d->tmpfd, name, &q, 0), 0);
    assert_int_equal(srq_load(d->dfd, name, &got, err, sizeof err), 0);
    assert_same_req(&got, &q);
    assert_int_equal(tu_count_at(d->tmpfd), 0);
}

/* A store that cannot be built leaves the old file as it was. */
static void test_store_fails_cleanly(void **state)
{
    struct dirs *d = *state;
    struct sendreq q = package_req(), got;
    char err[SS_ERR_MAX];
    const char *name = "B01-00000000000000000000000000000003.srq";

    assert_int_equal(srq_store(d->dfd, d->tmpfd, name, &q, 0), 0);
    /* The .tmp directory is not writable through a read-only fd of a
     * file: openat on a non-directory fd fails with ENOTDIR. */
    int fd = openat(d->dfd, name, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    q.offset = 1;
    assert_true(srq_store(d->dfd, fd, name, &q, 0) < 0);
    close(fd);
    assert_int_equal(srq_load(d->dfd, name, &got, err, sizeof err), 0);
    assert_int_equal(got.offset, 96LL << 20);
    assert_int_equal(tu_count_at(d->tmpfd), 0);
}

static void test_load_errors(void **state)
{
    struct dirs *d = *state;
    struct sendreq q = package_req(), got;
    char err[SS_ERR_MAX] = "";
    struct sbuf b;

    assert_int_equal(srq_load(d->dfd, "none.srq", &got, err, sizeof err), -ENOENT);
    assert_true(err[0] != '\0');

    /* A damaged file: one byte of a stored request changed. */
    const char *name = "B01-00000000000000000000000000000004.srq";
    char path[SS_PATH_MAX];
    assert_int_equal(srq_store(d->dfd, d->tmpfd, name, &q, 0), 0);
    assert_int_equal(ss_path(path, sizeof path, "%s/%s", d->root, name), 0);
    ss_sbuf_init(&b);
    assert_int_equal(srq_format(&q, &b), 0);
    char *p = strstr(b.data, "offset=");
    assert_non_null(p);
    p[7] = '8';                                 /* 100663296 -> 800663296 */
    tu_write_len(path, b.data, b.len);
    err[0] = '\0';
    assert_int_equal(srq_load(d->dfd, name, &got, err, sizeof err), -EBADMSG);
    assert_true(err[0] != '\0');

    /* Truncated. */
    tu_write_len(path, b.data, b.len / 2);
    assert_int_equal(srq_load(d->dfd, name, &got, err, sizeof err), -EBADMSG);

    /* A job is not a request. */
    struct job j = package_job();
    ss_sbuf_reset(&b);
    assert_int_equal(job_format(&j, &b), 0);
    tu_write_len(path, b.data, b.len);
    assert_int_equal(srq_load(d->dfd, name, &got, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "not a sendreq"));

    /* Empty, and larger than any request may be. */
    tu_write_len(path, "", 0);
    assert_int_equal(srq_load(d->dfd, name, &got, err, sizeof err), -EBADMSG);
    char *big = malloc(SENDREQ_MAX_SIZE + 2);
    assert_non_null(big);
    memset(big, 'x', SENDREQ_MAX_SIZE + 1);
    tu_write_len(path, big, SENDREQ_MAX_SIZE + 1);
    free(big);
    assert_true(srq_load(d->dfd, name, &got, err, sizeof err) < 0);
    ss_sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prio),
        cmocka_unit_test(test_job_roundtrip),
        cmocka_unit_test(test_job_base_ok),
        cmocka_unit_test(test_job_refused),
        cmocka_unit_test(test_srq_roundtrip),
        cmocka_unit_test(test_srq_base_ok),
        cmocka_unit_test(test_srq_refused),
        cmocka_unit_test(test_damaged),
        cmocka_unit_test_setup_teardown(test_store_load, dirs_setup, dirs_teardown),
        cmocka_unit_test_setup_teardown(test_store_over_leftover, dirs_setup, dirs_teardown),
        cmocka_unit_test_setup_teardown(test_store_fails_cleanly, dirs_setup, dirs_teardown),
        cmocka_unit_test_setup_teardown(test_load_errors, dirs_setup, dirs_teardown),
    };

    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
