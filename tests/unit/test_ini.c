/*
 * test_ini.c - the strict INI reader: good and bad lines, line numbers in
 * errors, callback errors, files.
 */
#include "testutil.h"

#include <stdio.h>

#include "ini.h"
#include "util.h"

/* Every callback call as text: "N:[sec]" for a header, "N:sec.key=value"
 * for an entry, "N:sec.key!" for a bare word. */
static int record_cb(void *arg, int lineno, const char *section, const char *key,
                     const char *value, char *err, size_t errlen)
{
    struct sbuf *b = arg;
    if (key == NULL)
        ss_sbuf_addf(b, "%d:[%s] ", lineno, section);
    else if (value == NULL)
        ss_sbuf_addf(b, "%d:%s.%s! ", lineno, section, key);
    else
        ss_sbuf_addf(b, "%d:%s.%s=%s| ", lineno, section, key, value);
    return 0;
}

static const struct {
    const char *label, *input, *want;
} good[] = {
    {"empty", "", ""},
    {"only comments and blanks", "; a\n# b\n\n   \t\n  ; c\n", ""},
    {"section and entry", "[site]\ncode = CEN\n", "1:[site] 2:site.code=CEN| "},
    {"blanks trimmed", "  [a]  \n\t k \t=\t v w \t\n", "1:[a] 2:a.k=v w| "},
    {"no blanks", "[a]\nk=v\n", "1:[a] 2:a.k=v| "},
    {"empty value", "[a]\nk =\nj=   \n", "1:[a] 2:a.k=| 3:a.j=| "},
    {"bare word", "[Tasks]\nstop_all\n", "1:[Tasks] 2:Tasks.stop_all! "},
    {"value keeps = ; # and quotes", "[a]\nk = x=1 ; not a comment # \"q\"\n",
     "1:[a] 2:a.k=x=1 ; not a comment # \"q\"| "},
    {"name characters", "[a.b-c_D9]\nK.e-y_1 = 2\n", "1:[a.b-c_D9] 2:a.b-c_D9.K.e-y_1=2| "},
    {"CRLF", "[a]\r\nk = v\r\n\r\n; c\r\nj = w\r\n",
     "1:[a] 2:a.k=v| 5:a.j=w| "},
    {"no final newline", "[a]\nk = v", "1:[a] 2:a.k=v| "},
    {"line numbers count comments", "; one\n\n[a]\n; four\nk = 5\n",
     "3:[a] 5:a.k=5| "},
    {"section repeated", "[a]\nk=1\n[b]\n[a]\nj=2\n",
     "1:[a] 2:a.k=1| 3:[b] 4:[a] 5:a.j=2| "},
    {"tab in value", "[a]\nk = x\ty\n", "1:[a] 2:a.k=x\ty| "},
};

static void test_good_lines(void **state)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(good); i++) {
        struct sbuf b;
        char err[SS_ERR_MAX] = "";
        ss_sbuf_init(&b);
        ss_sbuf_adds(&b, "");
        int r = ini_parse_buf(good[i].input, strlen(good[i].input), record_cb, &b,
                              err, sizeof err);
        if (r != 0 || strcmp(b.data, good[i].want) != 0)
            fail_msg("%s: r=%d err=\"%s\" got \"%s\" want \"%s\"", good[i].label, r,
                     err, b.data, good[i].want);
        ss_sbuf_free(&b);
    }
}

static const struct {
    const char *label, *input, *want;   /* want: the start of err */
} bad[] = {
    {"key before a section", "k = v\n", "line 1: \"k\" comes before any [section]"},
    {"unterminated header", "[a\n", "line 1: section header \"[a\" does not end with ']'"},
    {"empty section name", "; x\n[]\n", "line 2: bad section name"},
    {"blank in section name", "[a b]\n", "line 1: bad section name"},
    {"bad character in section", "[a/b]\n", "line 1: bad section name"},
    {"missing key", "[a]\n= v\n", "line 2: missing key before '='"},
    {"bad key", "[a]\nk y = v\n", "line 2: bad key \"k y\""},
    {"bad key character", "[a]\n\n\nk$ = v\n", "line 4: bad key \"k$\""},
    {"two words", "[a]\nstop all\n", "line 2: expected \"key = value\""},
    {"text after header", "[a] x\n", "line 1: section header"},
    {"NUL byte", "[a]\nk = v\0w\n", "line 2: NUL byte"},
    {"control character", "[a]\nk = \033[1m\n", "line 2: control character 0x1b"},
    {"stray CR", "[a]\nk = a\rb\n", "line 2: control character 0x0d"},
};

static void test_bad_lines(void **state)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(bad); i++) {
        struct sbuf b;
        char err[SS_ERR_MAX] = "";
        /* The NUL case needs the real length; the rest are C strings. */
        size_t len = strlen(bad[i].input);
        if (strcmp(bad[i].label, "NUL byte") == 0)
            len = sizeof "[a]\nk = v\0w\n" - 1;
        ss_sbuf_init(&b);
        int r = ini_parse_buf(bad[i].input, len, record_cb, &b, err, sizeof err);
        if (r != -EBADMSG || strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
            fail_msg("%s: r=%d err=\"%s\" want \"%s...\"", bad[i].label, r, err,
                     bad[i].want);
        ss_sbuf_free(&b);
    }
}

static void test_line_length(void **state)
{
    /* "[a]\n" then "k = " and a value making exactly INI_LINE_MAX bytes. */
    size_t n = INI_LINE_MAX;
    char *buf = malloc(n + 16);
    char err[SS_ERR_MAX] = "";
    struct sbuf b;

    assert_non_null(buf);
    memcpy(buf, "[a]\nk = ", 8);
    memset(buf + 8, 'x', n - 4);
    memcpy(buf + 4 + n, "\r\n", 3);         /* CR not counted in the length */
    ss_sbuf_init(&b);
    assert_int_equal(ini_parse_buf(buf, strlen(buf), record_cb, &b, err, sizeof err), 0);
    ss_sbuf_free(&b);

    buf[4 + n] = 'x';                       /* one byte more */
    buf[4 + n + 1] = '\n';
    ss_sbuf_init(&b);
    assert_int_equal(ini_parse_buf(buf, strlen(buf), record_cb, &b, err, sizeof err),
                     -EBADMSG);
    assert_string_equal(err, "line 2: line longer than 4096 bytes");
    ss_sbuf_free(&b);
    free(buf);
}

static int refuse_cb(void *arg, int lineno, const char *section, const char *key,
                     const char *value, char *err, size_t errlen)
{
    if (key != NULL && strcmp(key, "bad") == 0) {
        snprintf(err, errlen, "no \"%s\" here", key);
        return 42;
    }
    if (key != NULL && strcmp(key, "silent") == 0)
        return -EINVAL;
    return 0;
}

static void test_callback_error(void **state)
{
    char err[SS_ERR_MAX] = "";
    const char *t = "[a]\nok = 1\nbad = 2\nnot reached\n";

    assert_int_equal(ini_parse_buf(t, strlen(t), refuse_cb, NULL, err, sizeof err), 42);
    assert_string_equal(err, "line 3: no \"bad\" here");
    t = "[a]\nsilent\n";
    assert_int_equal(ini_parse_buf(t, strlen(t), refuse_cb, NULL, err, sizeof err), -EINVAL);
    assert_string_equal(err, "line 2: refused by the reader");
    assert_int_equal(ini_parse_named(t, strlen(t), "x.conf", refuse_cb, NULL, err, sizeof err),
                     -EINVAL);
    assert_string_equal(err, "x.conf:2: refused by the reader");
}

static void test_file(void **state)
{
    char path[SS_PATH_MAX], want[SS_PATH_MAX + 64], err[SS_ERR_MAX];
    char *dir = tu_tmpdir_new("test_ini");
    struct sbuf b;

    assert_int_equal(ss_path(path, sizeof path, "%s/site.conf", dir), 0);
    tu_write(path, "[a]\nk = v\n");
    ss_sbuf_init(&b);
    assert_int_equal(ini_parse_file(path, record_cb, &b, err, sizeof err), 0);
    assert_string_equal(b.data, "1:[a] 2:a.k=v| ");
    ss_sbuf_free(&b);

    tu_write(path, "[a]\nk = v\n\nk y\n");
    ss_sbuf_init(&b);
    assert_int_equal(ini_parse_file(path, record_cb, &b, err, sizeof err), -EBADMSG);
    snprintf(want, sizeof want, "%s:4: expected \"key = value\"", path);
    assert_memory_equal(err, want, strlen(want));
    ss_sbuf_free(&b);

    /* Larger than INI_FILE_MAX: refused without parsing. */
    char *big = malloc(INI_FILE_MAX + 2);
    assert_non_null(big);
    memset(big, '\n', INI_FILE_MAX + 1);
    tu_write_len(path, big, INI_FILE_MAX + 1);
    free(big);
    assert_int_equal(ini_parse_file(path, record_cb, NULL, err, sizeof err), -EFBIG);
    assert_non_null(strstr(err, "larger than"));

    assert_int_equal(unlink(path), 0);
    assert_int_equal(ini_parse_file(path, record_cb, NULL, err, sizeof err), -ENOENT);
    snprintf(want, sizeof want, "%s: ", path);
    assert_memory_equal(err, want, strlen(want));

    /* A directory is not a configuration file. */
    assert_int_equal(ini_parse_file(dir, record_cb, NULL, err, sizeof err), -EISDIR);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_lines),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_line_length),
        cmocka_unit_test(test_callback_error),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
