/*
 * test_record.c - unit tests of lib/record.c: the self-checking record
 * format (round trips, escapes, limits, and every way a file is refused).
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>

#include "record.h"

/* ---- helpers ---------------------------------------------------------- */

/* body + a correct end line, as rec_end() would write it. */
static char *seal(const char *body, size_t blen, size_t *outlen)
{
    unsigned char sum[32];
    char hex[65];
    assert_int_equal(ss_sha256(body, blen, sum), 0);
    ss_hex(sum, 32, hex);
    char *out = malloc(blen + 70);
    assert_non_null(out);
    memcpy(out, body, blen);
    memcpy(out + blen, "end ", 4);
    memcpy(out + blen + 4, hex, 64);
    out[blen + 68] = '\n';
    *outlen = blen + 69;
    return out;
}

/* A small valid record built by the writer. */
static void sample(struct sbuf *b)
{
    ss_sbuf_init(b);
    assert_int_equal(rec_begin(b, "job", 3), 0);
    assert_int_equal(rec_add(b, "package", "CEN00001"), 0);
    assert_int_equal(rec_add(b, "file", "a b\\c\td\ne"), 0);
    assert_int_equal(rec_add(b, "file", ""), 0);
    assert_int_equal(rec_addf(b, "count", "%d", 42), 0);
    assert_int_equal(rec_end(b), 0);
}

/* Parse a private copy of data[0..len); returns the result, err filled. */
static int parse_copy(const char *data, size_t len, const struct rec_limits *lim,
                      char *err, size_t errlen)
{
    struct rec r;
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    int rc = rec_parse(&r, copy, len, lim, err, errlen);
    if (rc == 0)
        rec_free(&r);
    else
        assert_true(err[0] != '\0');
    free(copy);
    return rc;
}

/* ---- round trips ------------------------------------------------------ */

static void test_roundtrip(void **state)
{
    struct sbuf b;
    struct rec r;
    char err[SS_ERR_MAX];
    long long v;

    sample(&b);
    assert_int_equal(rec_parse(&r, b.data, b.len, NULL, err, sizeof err), 0);
    assert_string_equal(r.kind, "job");
    assert_int_equal(r.version, 3);
    assert_int_equal(r.nfields, 4);
    assert_string_equal(rec_get(&r, "package"), "CEN00001");
    assert_string_equal(rec_get(&r, "file"), "a b\\c\td\ne");
    assert_string_equal(rec_get_nth(&r, "file", 1), "");
    assert_null(rec_get_nth(&r, "file", 2));
    assert_int_equal(rec_count(&r, "file"), 2);
    assert_int_equal(rec_count(&r, "nothing"), 0);
    assert_null(rec_get(&r, "nothing"));
    assert_null(rec_need(&r, "nothing", err, sizeof err));
    assert_string_equal(err, "missing field nothing");
    assert_non_null(rec_need(&r, "package", err, sizeof err));
    assert_int_equal(rec_get_int(&r, "count", 0, 100, &v, err, sizeof err), 0);
    assert_int_equal(v, 42);
    assert_int_equal(rec_get_int(&r, "count", 0, 10, &v, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "count"));
    assert_int_equal(rec_get_int(&r, "package", 0, 10, &v, err, sizeof err), -EBADMSG);
    assert_int_equal(rec_get_int(&r, "absent", 0, 10, &v, err, sizeof err), -EBADMSG);
    assert_string_equal(err, "missing field absent");
    rec_free(&r);
    rec_free(&r);       /* idempotent */
    ss_sbuf_free(&b);

    /* An escaped NUL inside digits does not make a number. */
    ss_sbuf_init(&b);
    assert_int_equal(rec_begin(&b, "x", 1), 0);
    assert_int_equal(rec_addn(&b, "n", "12\0" "34", 5), 0);
    assert_int_equal(rec_end(&b), 0);
    assert_int_equal(rec_parse(&r, b.data, b.len, NULL, err, sizeof err), 0);
    assert_int_equal(rec_get_int(&r, "n", 0, 100000, &v, err, sizeof err), -EBADMSG);
    rec_free(&r);
    ss_sbuf_free(&b);
}

static void test_exact_text(void **state)
{
    /* The writer's output is exactly the documented grammar. */
    struct sbuf b;
    ss_sbuf_init(&b);
    assert_int_equal(rec_begin(&b, "x", 1), 0);
    assert_int_equal(rec_add(&b, "k", "v\\\n\r\t\x01\x7f\xc3\xa9"), 0);
    const char *want = "sitesrv x 1\nk=v\\\\\\n\\r\\t\\x01\\x7f\xc3\xa9\n";
    assert_string_equal(b.data, want);
    assert_int_equal(rec_end(&b), 0);
    assert_int_equal(b.len, strlen(want) + 69);
    assert_memory_equal(b.data + strlen(want), "end ", 4);
    ss_sbuf_free(&b);
}

static void test_every_byte(void **state)
{
    /* All 256 byte values, together and one at a time, survive. */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;

    for (int i = -1; i < 256; i++) {
        struct sbuf b;
        struct rec r;
        char err[SS_ERR_MAX];
        const void *val = i < 0 ? (const void *)all : (const void *)&all[i];
        size_t vlen = i < 0 ? sizeof all : 1;

        ss_sbuf_init(&b);
        assert_int_equal(rec_begin(&b, "bytes", 1), 0);
        assert_int_equal(rec_addn(&b, "v", val, vlen), 0);
        assert_int_equal(rec_addn(&b, "after", "z", 1), 0);
        assert_int_equal(rec_end(&b), 0);
        /* The raw text never holds a control byte but the newlines. */
        for (size_t k = 0; k < b.len; k++)
            assert_true(b.data[k] == '\n' || (unsigned char)b.data[k] >= 0x20);
        assert_int_equal(rec_parse(&r, b.data, b.len, NULL, err, sizeof err), 0);
        assert_int_equal(r.nfields, 2);
        assert_int_equal(r.fields[0].vlen, vlen);
        assert_memory_equal(r.fields[0].value, val, vlen);
        assert_int_equal(r.fields[0].value[vlen], '\0');
        assert_string_equal(rec_get(&r, "after"), "z");
        rec_free(&r);
        ss_sbuf_free(&b);
    }
}

static void test_long_addf(void **state)
{
    struct sbuf b;
    struct rec r;
    char err[SS_ERR_MAX], big[3000];

    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ss_sbuf_init(&b);
    assert_int_equal(rec_begin(&b, "x", 1), 0);
    assert_int_equal(rec_addf(&b, "big", "<%s>", big), 0);
    assert_int_equal(rec_end(&b), 0);
    assert_int_equal(rec_parse(&r, b.data, b.len, NULL, err, sizeof err), 0);
    assert_int_equal(r.fields[0].vlen, sizeof big + 1);
    assert_int_equal(r.fields[0].value[0], '<');
    assert_int_equal(r.fields[0].value[sizeof big], '>');
    rec_free(&r);
    ss_sbuf_free(&b);
}

/* ---- writer refusals -------------------------------------------------- */

static void test_writer_refuses(void **state)
{
    static const struct { const char *label, *kind; int version; } begins[] = {
        { "upper-case kind", "Job", 1 },
        { "empty kind", "", 1 },
        { "kind too long", "abcdefghijklmnop", 1 },
        { "kind with digit", "job2", 1 },
        { "version 0", "job", 0 },
        { "version 1000", "job", 1000 },
        { "negative version", "job", -1 },
    };
    static const char *const names[] = {
        "", "a b", "a=b", "a\nb", "é", "a/b",
        "12345678901234567890123456789012345678901234567890123456789012345",
    };
    struct sbuf b;

    for (size_t i = 0; i < SS_ARRAY_LEN(begins); i++) {
        ss_sbuf_init(&b);
        if (rec_begin(&b, begins[i].kind, begins[i].version) != -EINVAL)
            fail_msg("rec_begin accepted: %s", begins[i].label);
        ss_sbuf_free(&b);
    }
    ss_sbuf_init(&b);
    assert_int_equal(rec_begin(&b, "job", 999), 0);
    /* A record must start its buffer. */
    assert_int_equal(rec_begin(&b, "job", 1), -EINVAL);
    size_t len = b.len;
    for (size_t i = 0; i < SS_ARRAY_LEN(names); i++) {
        if (rec_add(&b, names[i], "v") != -EINVAL)
            fail_msg("rec_add accepted name \"%s\"", names[i]);
        assert_int_equal(b.len, len);
    }
    assert_int_equal(rec_add(&b, NULL, "v"), -EINVAL);
    assert_int_equal(rec_add(&b, "a", NULL), -EINVAL);
    /* 64 characters is the longest name. */
    assert_int_equal(rec_add(&b, "1234567890123456789012345678901234567890123456789012345678901234",
                             "ok"), 0);
    assert_int_equal(rec_add(&b, "A-Z_a.z-0", "ok"), 0);
    ss_sbuf_free(&b);

    /* rec_end on a buffer that is not a record. */
    ss_sbuf_init(&b);
    assert_int_equal(rec_end(&b), -EINVAL);
    ss_sbuf_adds(&b, "hello\n");
    assert_int_equal(rec_end(&b), -EINVAL);
    ss_sbuf_free(&b);
}

/* ---- parser refusals -------------------------------------------------- */

struct bad_case {
    const char *label;
    const char *text;       /* body; sealed with a correct end line if seal */
    int         seal;
    const char *after;      /* appended after sealing, may be NULL */
    int         chop;       /* bytes removed from the end after all that */
    int         want;
    const char *err;        /* substring of err[] */
};

static const struct bad_case bad_cases[] = {
    { "empty file", "", 0, NULL, 0, -EBADMSG, "truncated" },
    { "header only", "sitesrv job 1\n", 0, NULL, 0, -EBADMSG, "truncated: no end line" },
    { "no end line", "sitesrv job 1\na=1\n", 0, NULL, 0, -EBADMSG, "truncated: no end line" },
    { "no final newline", "sitesrv job 1\na=1\n", 1, NULL, 1, -EBADMSG, "truncated" },
    { "data after end", "sitesrv job 1\na=1\n", 1, "a=2\n", 0, -EBADMSG, "data after end line" },
    { "blank line after end", "sitesrv job 1\n", 1, "\n", 0, -EBADMSG, "data after end line" },
    { "second record after end", "sitesrv job 1\n", 1, "sitesrv job 1\n", 0, -EBADMSG,
      "data after end line" },
    { "checksum mismatch", "sitesrv job 1\na=1\n"
      "end 0000000000000000000000000000000000000000000000000000000000000000\n",
      0, NULL, 0, -EBADMSG, "checksum mismatch" },
    { "upper-case checksum", "sitesrv job 1\n"
      "end BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\n",
      0, NULL, 0, -EBADMSG, "line 2: malformed end line" },
    { "short end line", "sitesrv job 1\nend 1234\n", 0, NULL, 0, -EBADMSG,
      "line 2: malformed end line" },
    { "bad escape", "sitesrv job 1\nok=1\nv=a\\qb\n", 1, NULL, 0, -EBADMSG,
      "line 3: bad escape \\q" },
    { "bad hex escape", "sitesrv job 1\nv=\\x4g\n", 1, NULL, 0, -EBADMSG, "line 2: bad escape \\x" },
    { "short hex escape", "sitesrv job 1\nv=\\x4\n", 1, NULL, 0, -EBADMSG, "line 2: bad escape \\x" },
    { "backslash at end", "sitesrv job 1\nv=ab\\\n", 1, NULL, 0, -EBADMSG, "line 2: backslash" },
    { "CR", "sitesrv job 1\nv=a\r\n", 1, NULL, 0, -EBADMSG, "line 2: carriage return" },
    { "CR at end of header", "sitesrv job 1\r\n", 1, NULL, 0, -EBADMSG, "line 1: carriage return" },
    { "raw tab", "sitesrv job 1\nv=a\tb\n", 1, NULL, 0, -EBADMSG, "line 2: control byte 0x09" },
    { "raw DEL", "sitesrv job 1\nv=a\x7f\n", 1, NULL, 0, -EBADMSG, "line 2: control byte 0x7f" },
    { "no equals", "sitesrv job 1\njustaword\n", 1, NULL, 0, -EBADMSG, "line 2: no '='" },
    { "empty line", "sitesrv job 1\n\n", 1, NULL, 0, -EBADMSG, "line 2: no '='" },
    { "empty name", "sitesrv job 1\n=v\n", 1, NULL, 0, -EBADMSG, "line 2: bad field name" },
    { "space in name", "sitesrv job 1\na b=v\n", 1, NULL, 0, -EBADMSG, "line 2: bad field name" },
    { "slash in name", "sitesrv job 1\na/b=v\n", 1, NULL, 0, -EBADMSG, "line 2: bad field name" },
    { "8-bit name", "sitesrv job 1\n\xc3\xa9=v\n", 1, NULL, 0, -EBADMSG, "line 2: bad field name" },
    { "name of 65", "sitesrv job 1\n"
      "12345678901234567890123456789012345678901234567890123456789012345=v\n",
      1, NULL, 0, -EBADMSG, "line 2: bad field name" },
    { "end as first line", "", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "no magic", "sitesrx job 1\n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "upper kind", "sitesrv Job 1\n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "long kind", "sitesrv abcdefghijklmnop 1\n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "no version", "sitesrv job\n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "empty version", "sitesrv job \n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "version 0", "sitesrv job 0\n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "leading zero", "sitesrv job 01\n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "version 1000", "sitesrv job 1000\n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "signed version", "sitesrv job +1\n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "two spaces", "sitesrv  job 1\n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
    { "trailing space", "sitesrv job 1 \n", 1, NULL, 0, -EBADMSG, "line 1: bad header" },
};

static void test_bad_records(void **state)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(bad_cases); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct sbuf b;
        char err[SS_ERR_MAX];
        size_t len;

        ss_sbuf_init(&b);
        if (c->seal) {
            char *s = seal(c->text, strlen(c->text), &len);
            ss_sbuf_add(&b, s, len);
            free(s);
        } else {
            ss_sbuf_add(&b, c->text, strlen(c->text));
        }
        if (c->after)
            ss_sbuf_adds(&b, c->after);
        len = b.len - (size_t)c->chop;
        err[0] = '\0';
        int rc = parse_copy(b.data ? b.data : "", len, NULL, err, sizeof err);
        if (rc != c->want)
            fail_msg("%s: rc %d, want %d (%s)", c->label, rc, c->want, err);
        if (strstr(err, c->err) == NULL)
            fail_msg("%s: err \"%s\", want \"%s\"", c->label, err, c->err);
        ss_sbuf_free(&b);
    }
}

static void test_nul_byte(void **state)
{
    /* A NUL anywhere in the raw text is refused, checksum or not. */
    static const char body[] = "sitesrv job 1\nv=a\0b\n";
    size_t len;
    char err[SS_ERR_MAX];
    char *s = seal(body, sizeof body - 1, &len);
    assert_int_equal(parse_copy(s, len, NULL, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "line 2: NUL byte"));
    free(s);

    static const char hdr[] = "sitesrv job 1\0\n";
    s = seal(hdr, sizeof hdr - 1, &len);
    assert_int_equal(parse_copy(s, len, NULL, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "line 1: NUL byte"));
    free(s);
}

static void test_every_prefix_refused(void **state)
{
    struct sbuf b;
    char err[SS_ERR_MAX];

    sample(&b);
    assert_int_equal(parse_copy(b.data, b.len, NULL, err, sizeof err), 0);
    for (size_t n = 0; n < b.len; n++) {
        int rc = parse_copy(b.data, n, NULL, err, sizeof err);
        if (rc != -EBADMSG)
            fail_msg("prefix of %zu/%zu bytes: rc %d", n, b.len, rc);
    }
    ss_sbuf_free(&b);
}

static void test_every_flip_refused(void **state)
{
    static const unsigned char masks[] = { 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80 };
    struct sbuf b;
    char err[SS_ERR_MAX];

    sample(&b);
    for (size_t i = 0; i < b.len; i++) {
        for (size_t k = 0; k < SS_ARRAY_LEN(masks); k++) {
            b.data[i] ^= (char)masks[k];
            int rc = parse_copy(b.data, b.len, NULL, err, sizeof err);
            b.data[i] ^= (char)masks[k];
            if (rc != -EBADMSG)
                fail_msg("byte %zu ^ 0x%02x: rc %d", i, masks[k], rc);
        }
    }
    ss_sbuf_free(&b);
}

/* ---- limits ----------------------------------------------------------- */

static void test_huge_line(void **state)
{
    /* A 10 MB line is refused by the line limit, with or without a
     * newline, before anything else reads it. */
    const size_t big = 10 * 1024 * 1024;
    const struct rec_limits lim = { 64 * 1024 * 1024, 64 * 1024, 100 };
    char err[SS_ERR_MAX];
    struct rec r;
    char *buf = malloc(big + 200);
    assert_non_null(buf);

    size_t n = (size_t)sprintf(buf, "sitesrv job 1\nv=");
    memset(buf + n, 'x', big);
    n += big;
    buf[n++] = '\n';
    size_t len;
    char *s = seal(buf, n, &len);
    assert_int_equal(rec_parse(&r, s, len, &lim, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "line 2: longer than 65536 bytes"));
    free(s);

    /* No newline at all. */
    memset(buf, 'y', big);
    assert_int_equal(rec_parse(&r, buf, big, &lim, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "line 1: longer than"));

    /* With the default limits the size alone refuses it. */
    assert_int_equal(rec_parse(&r, buf, big, NULL, err, sizeof err), -EFBIG);
    free(buf);
}

static void test_limits(void **state)
{
    struct sbuf b;
    char err[SS_ERR_MAX];

    /* max_fields: 3 fit, 4 do not. */
    for (int nf = 3; nf <= 4; nf++) {
        const struct rec_limits lim = { 4096, 4096, 3 };
        ss_sbuf_init(&b);
        assert_int_equal(rec_begin(&b, "f", 1), 0);
        for (int i = 0; i < nf; i++)
            assert_int_equal(rec_addf(&b, "n", "%d", i), 0);
        assert_int_equal(rec_end(&b), 0);
        int rc = parse_copy(b.data, b.len, &lim, err, sizeof err);
        if (nf == 3) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, -EBADMSG);
            assert_non_null(strstr(err, "line 5: too many fields"));
        }
        ss_sbuf_free(&b);
    }

    /* max_size: exactly the size passes, one byte less refuses. */
    sample(&b);
    struct rec_limits lim = { b.len, 4096, 100 };
    assert_int_equal(parse_copy(b.data, b.len, &lim, err, sizeof err), 0);
    lim.max_size = b.len - 1;
    assert_int_equal(parse_copy(b.data, b.len, &lim, err, sizeof err), -EFBIG);
    assert_non_null(strstr(err, "over the limit"));
    ss_sbuf_free(&b);

    /* max_line counts the newline: a line of exactly max_line passes. */
    for (size_t extra = 0; extra <= 1; extra++) {
        const size_t maxl = 100;
        char val[200];
        /* "v=" + value + "\n" == maxl + extra */
        size_t vl = maxl + extra - 3;
        memset(val, 'a', vl);
        val[vl] = '\0';
        ss_sbuf_init(&b);
        assert_int_equal(rec_begin(&b, "l", 1), 0);
        assert_int_equal(rec_add(&b, "v", val), 0);
        assert_int_equal(rec_end(&b), 0);
        struct rec_limits ll = { 4096, maxl, 10 };
        int rc = parse_copy(b.data, b.len, &ll, err, sizeof err);
        assert_int_equal(rc, extra ? -EBADMSG : 0);
        if (extra)
            assert_non_null(strstr(err, "line 2: longer than 100 bytes"));
        ss_sbuf_free(&b);
    }
}

/* ---- SHA-256 ---------------------------------------------------------- */

static const struct { const char *in, *hex; } sha_vectors[] = {
    { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
};

static void test_sha256(void **state)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(sha_vectors); i++) {
        unsigned char sum[32];
        char hex[65];
        assert_int_equal(ss_sha256(sha_vectors[i].in, strlen(sha_vectors[i].in), sum), 0);
        ss_hex(sum, 32, hex);
        assert_string_equal(hex, sha_vectors[i].hex);
    }
}

static void *sha_thread(void *arg)
{
    long bad = 0;
    for (int k = 0; k < 2000; k++) {
        size_t i = (size_t)k % SS_ARRAY_LEN(sha_vectors);
        unsigned char sum[32];
        char hex[65];
        if (ss_sha256(sha_vectors[i].in, strlen(sha_vectors[i].in), sum) < 0)
            bad++;
        ss_hex(sum, 32, hex);
        if (strcmp(hex, sha_vectors[i].hex) != 0)
            bad++;
    }
    return (void *)bad;
}

static void test_sha256_threads(void **state)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, sha_thread, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_int_equal((long)bad, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_exact_text),
        cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_long_addf),
        cmocka_unit_test(test_writer_refuses),
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_every_prefix_refused),
        cmocka_unit_test(test_every_flip_refused),
        cmocka_unit_test(test_huge_line),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_sha256_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
