/*
 * test_uniqname.c - unit tests for lib/uniqname.c, including the forced
 * collision of SPEC 4.2: this binary is linked with -Wl,--wrap=getrandom,
 * so every getrandom() call of the library lands in __wrap_getrandom()
 * below, which can hand out the same bytes several times in a row.  Then
 * uniq_create() and uniq_move() must meet EEXIST, draw again, and leave
 * the file already there untouched.
 */
#include "testutil.h"

#include <sys/random.h>

#include "uniqname.h"
#include "util.h"

/* ---- the getrandom() wrapper ---------------------------------------- */

enum rmode {
    R_REAL,         /* pass through to the kernel */
    R_REPEAT,       /* byte A for the first `repeat` calls, then B, B+1... */
    R_CHOPPY,       /* EINTR once, then at most 5 bytes per call */
    R_ENOSYS,       /* as on a kernel without getrandom */
    R_EFAULT,       /* any other failure */
};

static enum rmode rmode = R_REAL;
static int repeat;              /* R_REPEAT: calls that return byte A */
static unsigned calls;          /* calls since the mode was set */
static unsigned char next_byte; /* R_CHOPPY: the pattern continues */

ssize_t __real_getrandom(void *buf, size_t len, unsigned flags);

ssize_t __wrap_getrandom(void *buf, size_t len, unsigned flags)
{
    unsigned char *p = buf;

    calls++;
    switch (rmode) {
    case R_REAL:
        return __real_getrandom(buf, len, flags);
    case R_REPEAT:
        memset(p, calls <= (unsigned)repeat ? 0xaa : (int)(0x10 + calls), len);
        return (ssize_t)len;
    case R_CHOPPY:
        if (calls == 1) {
            errno = EINTR;
            return -1;
        }
        if (len > 5)
            len = 5;
        for (size_t i = 0; i < len; i++)
            p[i] = next_byte++;
        return (ssize_t)len;
    case R_ENOSYS:
        errno = ENOSYS;
        return -1;
    case R_EFAULT:
        errno = EFAULT;
        return -1;
    }
    return -1;
}

static void set_mode(enum rmode m, int rep)
{
    rmode = m;
    repeat = rep;
    calls = 0;
    next_byte = 0;
}

/* ---- fixture --------------------------------------------------------- */

static int setup(void **state)
{
    set_mode(R_REAL, 0);
    return (*state = tu_dir_new("test_uniq", NULL)) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    set_mode(R_REAL, 0);
    return tu_dir_teardown(state);
}

/* The name the R_REPEAT mode produces while it repeats (byte 0xaa). */
static void repeated_name(char *buf, size_t len, const char *prefix, const char *suffix)
{
    unsigned char b[UNIQ_RAND_BYTES];
    char hex[2 * UNIQ_RAND_BYTES + 1];

    memset(b, 0xaa, sizeof b);
    ss_hex(b, sizeof b, hex);
    assert_int_equal(ss_path(buf, len, "%s-%s%s", prefix, hex, suffix), 0);
}

/* ---- tests ----------------------------------------------------------- */

static void test_name_format(void **state)
{
    char name[UNIQ_NAME_MAX];

    assert_int_equal(uniq_name(name, sizeof name, "CEN", ".svf"), 0);
    assert_int_equal(strlen(name), 3 + 1 + 32 + 4);
    assert_memory_equal(name, "CEN-", 4);
    for (int i = 4; i < 36; i++)
        assert_true(strchr("0123456789abcdef", name[i]) != NULL);
    assert_string_equal(name + 36, ".svf");
    assert_true(uniq_name_ok(name, ".svf"));
    assert_true(uniq_name_ok(name, NULL));
    assert_false(uniq_name_ok(name, ".job"));

    /* The longest prefix and suffix fit UNIQ_NAME_MAX exactly. */
    char pfx[UNIQ_PREFIX_MAX + 1];
    memset(pfx, 'P', UNIQ_PREFIX_MAX);
    pfx[UNIQ_PREFIX_MAX] = '\0';
    assert_int_equal(uniq_name(name, sizeof name, pfx, ".abcdefg"), 0);
    assert_int_equal(strlen(name) + 1, UNIQ_NAME_MAX);
    assert_true(uniq_name_ok(name, ".abcdefg"));
}

static void test_name_bad_args(void **state)
{
    static const struct { const char *label, *prefix, *suffix; } t[] = {
        { "empty prefix",       "",     ".svf" },
        { "NULL prefix",        NULL,   ".svf" },
        { "dash in prefix",     "a-b",  ".svf" },
        { "dot in prefix",      "a.b",  ".svf" },
        { "prefix too long",    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", ".svf" },
        { "no dot",             "CEN",  "svf" },
        { "dot only",           "CEN",  "." },
        { "upper case suffix",  "CEN",  ".SVF" },
        { "suffix too long",    "CEN",  ".abcdefgh" },
        { "two dots",           "CEN",  ".a.b" },
        { "NULL suffix",        "CEN",  NULL },
    };
    char name[UNIQ_NAME_MAX];
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++)
        if (uniq_name(name, sizeof name, t[i].prefix, t[i].suffix) != -EINVAL)
            fail_msg("%s: not refused", t[i].label);
    assert_int_equal(uniq_name(name, 20, "CEN", ".svf"), -ENOSPC);
}

static void test_name_ok_table(void **state)
{
    static const struct { const char *label, *name, *suffix; int want; } t[] = {
        { "good",             "CEN-0123456789abcdef0123456789abcdef.svf", ".svf", 1 },
        { "good any suffix",  "CEN-0123456789abcdef0123456789abcdef.svf", NULL, 1 },
        { "good underscore",  "my_host_1-0123456789abcdef0123456789abcdef.job", ".job", 1 },
        { "good long suffix", "X-0123456789abcdef0123456789abcdef.abcdefg", NULL, 1 },
        { "wrong suffix",     "CEN-0123456789abcdef0123456789abcdef.svf", ".job", 0 },
        { "no suffix",        "CEN-0123456789abcdef0123456789abcdef", NULL, 0 },
        { "uppercase hex",    "CEN-0123456789ABCDEF0123456789abcdef.svf", ".svf", 0 },
        { "short hex",        "CEN-0123456789abcdef0123456789abcde.svf", ".svf", 0 },
        { "long hex",         "CEN-0123456789abcdef0123456789abcdef0.svf", ".svf", 0 },
        { "non-hex digit",    "CEN-0123456789abcdeg0123456789abcdef.svf", ".svf", 0 },
        { "no prefix",        "-0123456789abcdef0123456789abcdef.svf", ".svf", 0 },
        { "no dash",          "CEN0123456789abcdef0123456789abcdef.svf", ".svf", 0 },
        { "extra char end",   "CEN-0123456789abcdef0123456789abcdef.svfx", ".svf", 0 },
        { "extra char start", " CEN-0123456789abcdef0123456789abcdef.svf", ".svf", 0 },
        { "dot in prefix",    "C.N-0123456789abcdef0123456789abcdef.svf", ".svf", 0 },
        { "newline",          "CEN-0123456789abcdef0123456789abcdef.svf\n", ".svf", 0 },
        { "newline in hex",   "CEN-0123456789abcdef\n123456789abcdef.svf", ".svf", 0 },
        { "newline prefix",   "C\nN-0123456789abcdef0123456789abcdef.svf", NULL, 0 },
        { "non-utf8",         "C\xffN-0123456789abcdef0123456789abcdef.svf", NULL, 0 },
        { "prefix too long",  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456-0123456789abcdef0123456789abcdef.svf", NULL, 0 },
        { "suffix too long",  "CEN-0123456789abcdef0123456789abcdef.abcdefgh", NULL, 0 },
        { "upper suffix",     "CEN-0123456789abcdef0123456789abcdef.SVF", NULL, 0 },
        { "tmp file",         ".tmp", NULL, 0 },
        { "empty",            "", NULL, 0 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++)
        if (uniq_name_ok(t[i].name, t[i].suffix) != t[i].want)
            fail_msg("%s: want %d", t[i].label, t[i].want);
    assert_false(uniq_name_ok(NULL, NULL));
}

static void test_prefix_sanitize(void **state)
{
    static const struct { const char *label, *in, *want; } t[] = {
        { "site code",       "CEN",                 "CEN" },
        { "underscore",      "my_host",             "my_host" },
        { "host name",       "my-host.example.com", "my_host_example_com" },
        { "empty",           "",                    "X" },
        { "NULL",            NULL,                  "X" },
        { "newline",         "a\nb",                "a_b" },
        { "utf-8 bytes",     "caf\xc3\xa9",         "caf__" },
        { "slash",           "../etc",              "___etc" },
        { "truncated",       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345" },
    };
    char out[UNIQ_PREFIX_MAX + 1];
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        uniq_prefix_sanitize(t[i].in, out, sizeof out);
        if (strcmp(out, t[i].want) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", t[i].label, out, t[i].want);
        /* Whatever goes in, the result is a prefix uniq_name() takes. */
        char name[UNIQ_NAME_MAX];
        assert_int_equal(uniq_name(name, sizeof name, out, ".svf"), 0);
        assert_true(uniq_name_ok(name, ".svf"));
    }
    /* A small destination is respected. */
    char small[4];
    uniq_prefix_sanitize("ABCDEFG", small, sizeof small);
    assert_string_equal(small, "ABC");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_many_distinct(void **state)
{
    enum { N = 10000 };
    char (*names)[UNIQ_NAME_MAX] = malloc(N * sizeof *names);

    assert_non_null(names);
    for (int i = 0; i < N; i++)
        assert_int_equal(uniq_name(names[i], UNIQ_NAME_MAX, "CEN", ".svf"), 0);
    qsort(names, N, sizeof *names, cmp_str);
    for (int i = 1; i < N; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            fail_msg("duplicate name %s", names[i]);
    free(names);
}

static void test_random_sources(void **state)
{
    unsigned char b[16], zero[16] = { 0 };

    /* EINTR and short reads: the loop fills the whole buffer in order. */
    set_mode(R_CHOPPY, 0);
    memset(b, 0xee, sizeof b);
    assert_int_equal(uniq_random(b, sizeof b), 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(b[i], i);
    assert_int_equal(calls, 1 + 4);     /* EINTR, then 5+5+5+1 bytes */

    /* No getrandom in the kernel: OpenSSL fills it instead. */
    set_mode(R_ENOSYS, 0);
    memset(b, 0, sizeof b);
    assert_int_equal(uniq_random(b, sizeof b), 0);
    assert_memory_not_equal(b, zero, sizeof b);
    assert_int_equal(calls, 1);

    /* Any other failure is -EIO, not a silent fallback. */
    set_mode(R_EFAULT, 0);
    assert_int_equal(uniq_random(b, sizeof b), -EIO);
    char name[UNIQ_NAME_MAX];
    assert_int_equal(uniq_name(name, sizeof name, "CEN", ".svf"), -EIO);
    set_mode(R_REAL, 0);
}

static void test_create_forced_collision(void **state)
{
    struct tu_dir *f = *state;
    char taken[UNIQ_NAME_MAX], name[UNIQ_NAME_MAX];
    struct stat st;
    int fd = -1;

    /* The name the first thousand draws produce already exists: an SMS
     * client gave up after a few collisions and dropped the message;
     * here there is no such limit. */
    repeated_name(taken, sizeof taken, "CEN", ".svf");
    tu_put(f->dfd, taken, "the first client's status message");

    set_mode(R_REPEAT, 1000);
    assert_int_equal(uniq_create(f->dfd, "CEN", ".svf", name, sizeof name, &fd), 0);
    /* A thousand EEXIST, then a draw with different bytes. */
    assert_int_equal(calls, 1001);
    assert_true(fd >= 0);
    assert_string_not_equal(name, taken);
    assert_true(uniq_name_ok(name, ".svf"));
    assert_int_equal(ss_write_all(fd, "second", 6), 0);
    assert_int_equal(close(fd), 0);

    /* Nothing overwritten: both files, each with its own content. */
    tu_assert_content(f->dfd, taken, "the first client's status message");
    tu_assert_content(f->dfd, name, "second");
    assert_int_equal(tu_count_at(f->dfd), 2);
    assert_int_equal(fstatat(f->dfd, name, &st, 0), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
}

static void test_move_forced_collision(void **state)
{
    struct tu_dir *f = *state;
    char taken[UNIQ_NAME_MAX], name[UNIQ_NAME_MAX];

    assert_int_equal(mkdirat(f->dfd, "inbox", 0750), 0);
    int ifd = openat(f->dfd, "inbox", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(ifd >= 0);
    repeated_name(taken, sizeof taken, "CLI", ".svf");
    tu_put(ifd, taken, "already delivered");
    tu_put(f->dfd, "outgoing", "new message");

    set_mode(R_REPEAT, 1000);
    assert_int_equal(uniq_move(f->dfd, "outgoing", ifd, "CLI", ".svf",
                               name, sizeof name), 0);
    assert_int_equal(calls, 1001);
    assert_string_not_equal(name, taken);
    assert_true(uniq_name_ok(name, ".svf"));
    tu_assert_content(ifd, taken, "already delivered");
    tu_assert_content(ifd, name, "new message");
    assert_int_equal(tu_count_at(ifd), 2);
    /* The source is gone: a move, not a copy. */
    assert_int_equal(faccessat(f->dfd, "outgoing", F_OK, AT_SYMLINK_NOFOLLOW), -1);

    /* A missing source is an error, not an endless loop. */
    set_mode(R_REAL, 0);
    assert_int_equal(uniq_move(f->dfd, "outgoing", ifd, "CLI", ".svf",
                               name, sizeof name), -ENOENT);
    close(ifd);
}

static void test_create_errors(void **state)
{
    struct tu_dir *f = *state;
    char name[UNIQ_NAME_MAX];
    int fd = -1;

    assert_int_equal(uniq_create(f->dfd, "a-b", ".svf", name, sizeof name, &fd), -EINVAL);
    assert_int_equal(uniq_create(-1, "CEN", ".svf", name, sizeof name, &fd), -EBADF);
    assert_int_equal(fd, -1);
    assert_int_equal(tu_count_at(f->dfd), 0);
}

int main(void)
{
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_name_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_ok_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_sanitize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_distinct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_forced_collision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move_forced_collision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
