/*
 * test_util.c - unit tests for lib/util.c: checked formatting, parsers
 * (durations, sizes, integers, ISO times), site codes, hex, sbuf and JSON
 * string escaping, UTF-8 checks and the cut that keeps text valid, the
 * short host name.  Table driven: {label, input, want}.
 */
#include "testutil.h"

#include <stdio.h>

#include "util.h"

static void test_path_fmt_strcpy(void **state)
{
    char buf[8];

    assert_int_equal(ss_path(buf, sizeof buf, "%s/%s", "ab", "cd"), 0);
    assert_string_equal(buf, "ab/cd");
    /* Exactly full (7 chars + NUL) fits, one more does not. */
    assert_int_equal(ss_path(buf, sizeof buf, "%s", "1234567"), 0);
    assert_int_equal(ss_path(buf, sizeof buf, "%s", "12345678"), -ENAMETOOLONG);
    assert_int_equal(ss_fmt(buf, sizeof buf, "%d", 1234567), 0);
    assert_int_equal(ss_fmt(buf, sizeof buf, "%d", 12345678), -ENOSPC);

    assert_int_equal(ss_strcpy(buf, sizeof buf, "short"), 0);
    assert_string_equal(buf, "short");
    assert_int_equal(ss_strcpy(buf, sizeof buf, "much too long"), -ENOSPC);
    assert_int_equal(strlen(buf), sizeof buf - 1);      /* cut but terminated */
    assert_int_equal(ss_strcpy(buf, 0, "x"), -ENOSPC);
}

static void test_clocks(void **state)
{
    /* 2020-01-01 is well in the past on any machine that runs this. */
    assert_true(ss_now_ms() > 1577836800000LL);
    int64_t a = ss_mono_ms(), b = ss_mono_ms();
    assert_true(b >= a);
}

static void test_parse_duration(void **state)
{
    static const struct { const char *label, *in; int rc; int64_t want; } t[] = {
        { "milliseconds",   "500ms", 0, 500 },
        { "seconds",        "30s",   0, 30000 },
        { "minutes",        "30m",   0, 1800000 },
        { "hours",          "4h",    0, 14400000 },
        { "days",           "7d",    0, 604800000 },
        { "bare seconds",   "10",    0, 10000 },
        { "zero",           "0",     0, 0 },
        { "upper case",     "30S",   0, 30000 },
        { "empty",          "",      -EINVAL, 0 },
        { "unit only",      "s",     -EINVAL, 0 },
        { "negative",       "-1s",   -EINVAL, 0 },
        { "unknown unit",   "1x",    -EINVAL, 0 },
        { "fraction",       "1.5s",  -EINVAL, 0 },
        { "leading space",  " 1s",   -EINVAL, 0 },
        { "inner space",    "1 s",   -EINVAL, 0 },
        { "overflow",       "99999999999999999999", -ERANGE, 0 },
        { "too large",      "999999999999999d", -ERANGE, 0 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        int64_t v = -42;
        int r = ss_parse_duration_ms(t[i].in, &v);
        if (r != t[i].rc)
            fail_msg("%s: \"%s\" gave %d, want %d", t[i].label, t[i].in, r, t[i].rc);
        if (r == 0 && v != t[i].want)
            fail_msg("%s: \"%s\" gave %lld, want %lld", t[i].label, t[i].in,
                     (long long)v, (long long)t[i].want);
        if (r != 0 && v != -42)
            fail_msg("%s: output written on error", t[i].label);
    }
}

static void test_fmt_duration(void **state)
{
    static const struct { const char *label; int64_t in; const char *want; } t[] = {
        { "seconds",     90000,     "90s" },
        { "minutes",     1800000,   "30m" },
        { "hours",       3600000,   "1h" },
        { "days",        86400000,  "1d" },
        { "not exact",   1500,      "1500ms" },
        { "zero",        0,         "0ms" },
    };
    char buf[32];
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        ss_fmt_duration(t[i].in, buf, sizeof buf);
        if (strcmp(buf, t[i].want) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", t[i].label, buf, t[i].want);
        /* And it parses back to the same value. */
        int64_t back;
        assert_int_equal(ss_parse_duration_ms(buf, &back), 0);
        assert_int_equal(back, t[i].in);
    }
    /* Negative durations keep their sign (a clock that went back). */
    ss_fmt_duration(-1800000, buf, sizeof buf);
    assert_string_equal(buf, "-30m");
    ss_fmt_duration(INT64_MIN, buf, sizeof buf);
    assert_string_equal(buf, "-9223372036854775808ms");
}

static void test_fmt_size(void **state)
{
    static const struct { const char *label; uint64_t in; const char *want; } t[] = {
        { "gigabytes",   3ULL << 30,         "3GB" },
        { "megabytes",   2 << 20,            "2MB" },
        { "kilobytes",   4096,               "4KB" },
        { "not exact",   1000,               "1000" },
        { "KB not MB",   (2 << 20) + 1024,   "2049KB" },
        { "zero",        0,                  "0" },
    };
    char buf[32];
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        ss_fmt_size(t[i].in, buf, sizeof buf);
        if (strcmp(buf, t[i].want) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", t[i].label, buf, t[i].want);
        uint64_t back;
        assert_int_equal(ss_parse_size(buf, &back), 0);
        assert_int_equal(back, t[i].in);
    }
}

static void test_parse_size(void **state)
{
    static const struct { const char *label, *in; int rc; uint64_t want; } t[] = {
        { "MB",          "2MB",   0, 2097152 },
        { "k",           "512k",  0, 524288 },
        { "G",           "1G",    0, 1073741824ULL },
        { "GiB",         "3GiB",  0, 3ULL << 30 },
        { "bytes",       "100",   0, 100 },
        { "b",           "100b",  0, 100 },
        { "zero",        "0",     0, 0 },
        { "empty",       "",      -EINVAL, 0 },
        { "unit only",   "MB",    -EINVAL, 0 },
        { "tera",        "1T",    -EINVAL, 0 },
        { "negative",    "-1",    -EINVAL, 0 },
        { "fraction",    "1.5M",  -EINVAL, 0 },
        { "overflow",    "17179869184G", -ERANGE, 0 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        uint64_t v = 0;
        int r = ss_parse_size(t[i].in, &v);
        if (r != t[i].rc)
            fail_msg("%s: \"%s\" gave %d, want %d", t[i].label, t[i].in, r, t[i].rc);
        if (r == 0 && v != t[i].want)
            fail_msg("%s: \"%s\" gave %llu, want %llu", t[i].label, t[i].in,
                     (unsigned long long)v, (unsigned long long)t[i].want);
    }
}

static void test_parse_int(void **state)
{
    static const struct {
        const char *label, *in; long long min, max; int rc; long long want;
    } t[] = {
        { "plain",          "42",   0, 100, 0, 42 },
        { "negative",       "-5",   -10, 10, 0, -5 },
        { "plus sign",      "+5",   0, 10, 0, 5 },
        { "at max",         "100",  0, 100, 0, 100 },
        { "at min",         "0",    0, 100, 0, 0 },
        { "above max",      "101",  0, 100, -ERANGE, 0 },
        { "below min",      "-1",   0, 100, -ERANGE, 0 },
        { "letters",        "abc",  0, 100, -EINVAL, 0 },
        { "trailing junk",  "12a",  0, 100, -EINVAL, 0 },
        { "empty",          "",     0, 100, -EINVAL, 0 },
        { "leading space",  " 1",   0, 100, -EINVAL, 0 },
        { "trailing space", "1 ",   0, 100, -EINVAL, 0 },
        { "overflow",       "99999999999999999999", LLONG_MIN, LLONG_MAX, -ERANGE, 0 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        long long v = 0;
        int r = ss_parse_int(t[i].in, t[i].min, t[i].max, &v);
        if (r != t[i].rc)
            fail_msg("%s: \"%s\" gave %d, want %d", t[i].label, t[i].in, r, t[i].rc);
        if (r == 0 && v != t[i].want)
            fail_msg("%s: \"%s\" gave %lld, want %lld", t[i].label, t[i].in, v, t[i].want);
    }
    long long v;
    assert_int_equal(ss_parse_int(NULL, 0, 1, &v), -EINVAL);
}

static void test_time_iso_fmt(void **state)
{
    static const struct { const char *label; int64_t ms; const char *want; } t[] = {
        { "epoch",          0,               "1970-01-01T00:00:00.000Z" },
        { "before epoch",   -1,              "1969-12-31T23:59:59.999Z" },
        { "a moment",       1795305000123LL, "2026-11-21T23:50:00.123Z" },
        { "leap day",       951782400000LL,  "2000-02-29T00:00:00.000Z" },
    };
    char buf[40];
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        assert_int_equal(ss_fmt_time_iso(t[i].ms, buf, sizeof buf), 0);
        if (strcmp(buf, t[i].want) != 0)
            fail_msg("%s: got %s, want %s", t[i].label, buf, t[i].want);
    }
    assert_int_equal(ss_fmt_time_iso(0, buf, 10), -ENOSPC);
}

static void test_time_iso_round_trip(void **state)
{
    /* A spread of values, including negative ones and odd milliseconds. */
    int64_t v = -86400000LL * 400 - 7;
    char buf[40];
    for (int i = 0; i < 500; i++) {
        int64_t back = 0;
        assert_int_equal(ss_fmt_time_iso(v, buf, sizeof buf), 0);
        assert_int_equal(ss_parse_time_iso(buf, &back), 0);
        if (back != v)
            fail_msg("%lld -> %s -> %lld", (long long)v, buf, (long long)back);
        v += 86400000LL * 37 + 3600000LL * 5 + 61001;
    }
}

static void test_time_iso_parse(void **state)
{
    static const struct { const char *label, *in; int rc; int64_t want; } t[] = {
        { "full",            "2026-11-21T23:50:00.123Z", 0, 1795305000123LL },
        { "no millis",       "2026-11-21T23:50:00Z",     0, 1795305000000LL },
        { "no seconds",      "2026-11-21T23:50Z",        0, 1795305000000LL },
        { "space separator", "2026-11-21 23:50:00Z",     0, 1795305000000LL },
        { "one digit frac",  "2026-11-21T23:50:00.1Z",   0, 1795305000100LL },
        { "long frac",       "2026-11-21T23:50:00.12345Z", 0, 1795305000123LL },
        { "plus offset",     "2026-11-22T00:50:00+01:00", 0, 1795305000000LL },
        { "minus offset",    "2026-11-21T18:20:00-05:30", 0, 1795305000000LL },
        { "offset no colon", "2026-11-22T00:50:00+0100", 0, 1795305000000LL },
        { "bare date",       "2026-11-21",               0, 1795219200000LL },
        { "empty",           "",                          -EINVAL, 0 },
        { "slashes",         "2026/11/21",                -EINVAL, 0 },
        { "month 13",        "2026-13-01",                -EINVAL, 0 },
        { "month 0",         "2026-00-01",                -EINVAL, 0 },
        { "day 32",          "2026-01-32",                -EINVAL, 0 },
        { "31 february",     "2026-02-31",                -EINVAL, 0 },
        { "29 feb no leap",  "2026-02-29",                -EINVAL, 0 },
        { "29 feb leap",     "2028-02-29",                0, 1835395200000LL },
        { "31 april",        "2026-04-31",                -EINVAL, 0 },
        { "second 60",       "2026-11-21T23:59:60Z",      -EINVAL, 0 },
        { "hour 25",         "2026-11-21T25:00:00Z",      -EINVAL, 0 },
        { "minute 60",       "2026-11-21T23:60:00Z",      -EINVAL, 0 },
        { "empty fraction",  "2026-11-21T23:50:00.Z",     -EINVAL, 0 },
        { "junk after",      "2026-11-21T23:50:00Zx",     -EINVAL, 0 },
        { "junk time",       "2026-11-21Tjunk",           -EINVAL, 0 },
        { "short year",      "26-11-21",                  -EINVAL, 0 },
        { "bad offset",      "2026-11-21T23:50:00+25:00", -EINVAL, 0 },
        { "date then Z",     "2026-11-21Z",               -EINVAL, 0 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        int64_t v = 0;
        int r = ss_parse_time_iso(t[i].in, &v);
        if (r != t[i].rc)
            fail_msg("%s: \"%s\" gave %d, want %d", t[i].label, t[i].in, r, t[i].rc);
        if (r == 0 && v != t[i].want)
            fail_msg("%s: \"%s\" gave %lld, want %lld", t[i].label, t[i].in,
                     (long long)v, (long long)t[i].want);
    }
}

static void test_site_code(void **state)
{
    static const struct { const char *label, *in; int want; } t[] = {
        { "letters",       "CEN",  1 },
        { "mixed",         "B01",  1 },
        { "digits",        "123",  1 },
        { "lower case",    "cen",  0 },
        { "too short",     "CE",   0 },
        { "too long",      "CENT", 0 },
        { "punctuation",   "C-N",  0 },
        { "empty",         "",     0 },
        { "space",         "CE ",  0 },
        { "NULL",          NULL,   0 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++)
        if (ss_site_code_ok(t[i].in) != t[i].want)
            fail_msg("%s: want %d", t[i].label, t[i].want);
}

static void test_hex(void **state)
{
    unsigned char in[256], out[256];
    char hex[513];

    for (int i = 0; i < 256; i++)
        in[i] = (unsigned char)i;
    ss_hex(in, sizeof in, hex);
    assert_int_equal(strlen(hex), 512);
    assert_memory_equal(hex, "000102", 6);
    assert_string_equal(hex + 506, "fdfeff");
    assert_int_equal(ss_unhex(hex, out, sizeof out), 0);
    assert_memory_equal(in, out, sizeof in);

    static const struct { const char *label, *in; int rc; } t[] = {
        { "lower",       "00ff7a", 0 },
        { "upper",       "00FF7A", 0 },
        { "too short",   "00ff7",  -EINVAL },
        { "too long",    "00ff7a0", -EINVAL },
        { "not hex",     "00fg7a", -EINVAL },
        { "empty",       "",       -EINVAL },
    };
    unsigned char b[3];
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        int r = ss_unhex(t[i].in, b, sizeof b);
        if (r != t[i].rc)
            fail_msg("%s: \"%s\" gave %d, want %d", t[i].label, t[i].in, r, t[i].rc);
        if (r == 0 && (b[0] != 0x00 || b[1] != 0xff || b[2] != 0x7a))
            fail_msg("%s: wrong bytes", t[i].label);
    }
}

static void test_sbuf(void **state)
{
    struct sbuf b;
    char big[1000];

    ss_sbuf_init(&b);
    assert_int_equal(ss_sbuf_adds(&b, "abc"), 0);
    assert_int_equal(ss_sbuf_add(&b, "de\0f", 4), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "abcde\0f", 8);
    ss_sbuf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");

    /* Longer than the 256-byte fast path of addf. */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(ss_sbuf_addf(&b, "<%s>%d", big, 42), 0);
    assert_int_equal(b.len, 999 + 4);
    assert_int_equal(b.data[0], '<');
    assert_string_equal(b.data + 1000, ">42");
    assert_int_equal(ss_sbuf_addf(&b, "%s", "!"), 0);
    assert_int_equal(b.len, 1004);
    assert_int_equal(strlen(b.data), b.len);
    ss_sbuf_free(&b);
    assert_null(b.data);
    ss_sbuf_free(&b);       /* twice is harmless */
}

static void test_json_str(void **state)
{
    static const struct { const char *label, *in, *want; } t[] = {
        { "plain",       "abc",          "\"abc\"" },
        { "empty",       "",             "\"\"" },
        { "quote",       "a\"b",         "\"a\\\"b\"" },
        { "backslash",   "a\\b",         "\"a\\\\b\"" },
        { "newline",     "a\nb",         "\"a\\nb\"" },
        { "cr tab",      "\r\t",         "\"\\r\\t\"" },
        { "control",     "\x01",         "\"\\u0001\"" },
        { "del",         "\x7f",         "\"\\u007f\"" },
        { "utf-8",       "caf\xc3\xa9",  "\"caf\xc3\xa9\"" },
        { "4-byte",      "\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"" },
        /* Not UTF-8: one U+FFFD per bad byte, the rest kept. */
        { "bad byte",    "a\xff" "b",    "\"a\\ufffdb\"" },
        { "latin-1",     "caf\xe9",      "\"caf\\ufffd\"" },
        { "cut seq",     "\xe2\x82",     "\"\\ufffd\\ufffd\"" },
        { "stray cont",  "\x80x",        "\"\\ufffdx\"" },
        { "overlong",    "\xc0\xaf",     "\"\\ufffd\\ufffd\"" },
        { "surrogate",   "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },
    };
    struct sbuf b;
    ss_sbuf_init(&b);
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        ss_sbuf_reset(&b);
        assert_int_equal(ss_sbuf_add_json_str(&b, t[i].in), 0);
        if (strcmp(b.data, t[i].want) != 0)
            fail_msg("%s: got %s, want %s", t[i].label, b.data, t[i].want);
    }
    ss_sbuf_free(&b);
}

static void test_utf8_valid(void **state)
{
    static const struct { const char *label, *in; int valid; size_t first; } t[] = {
        /* first: ss_utf8_seqlen of the first byte */
        { "ascii",          "abc",                  1, 1 },
        { "empty",          "",                     1, 0 },
        { "2-byte",         "\xc3\xa9",             1, 2 },
        { "3-byte",         "\xe2\x82\xac",         1, 3 },
        { "4-byte",         "\xf0\x9f\x98\x80",     1, 4 },
        { "max U+10FFFF",   "\xf4\x8f\xbf\xbf",     1, 4 },
        { "U+FFFF",         "\xef\xbf\xbf",         1, 3 },
        { "stray cont",     "\x80",                 0, 0 },
        { "lone lead",      "\xc3",                 0, 0 },
        { "lead then ascii", "\xc3" "a",            0, 0 },
        { "cut 3-byte",     "\xe2\x82",             0, 0 },
        { "overlong C0",    "\xc0\x80",             0, 0 },
        { "overlong C1",    "\xc1\xbf",             0, 0 },
        { "overlong E0",    "\xe0\x80\x80",         0, 0 },
        { "overlong F0",    "\xf0\x80\x80\x80",     0, 0 },
        { "surrogate",      "\xed\xa0\x80",         0, 0 },
        { "past 10FFFF",    "\xf4\x90\x80\x80",     0, 0 },
        { "F5",             "\xf5\x80\x80\x80",     0, 0 },
        { "FF",             "\xff",                 0, 0 },
        { "good then bad",  "ok\xe9",               0, 1 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        size_t n = strlen(t[i].in);
        if (ss_utf8_valid(t[i].in, n) != t[i].valid)
            fail_msg("%s: valid %d, want %d", t[i].label, !t[i].valid, t[i].valid);
        if (ss_utf8_seqlen(t[i].in, n) != t[i].first)
            fail_msg("%s: seqlen %zu, want %zu", t[i].label,
                     ss_utf8_seqlen(t[i].in, n), t[i].first);
    }
    /* The length bounds the look: a sequence is not read past n. */
    assert_int_equal(ss_utf8_seqlen("\xe2\x82\xac", 2), 0);
    assert_int_equal(ss_utf8_valid("ab\xe2\x82\xac", 4), 0);

    static const struct { const char *in, *want; size_t bad; } z[] = {
        { "plain", "plain", 0 },
        { "caf\xc3\xa9", "caf\xc3\xa9", 0 },
        { "caf\xe9!", "caf?!", 1 },
        { "\xff\xfe\x80ok", "???ok", 3 },
        { "\xe2\x82", "??", 2 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(z); i++) {
        char buf[32];
        strcpy(buf, z[i].in);
        assert_int_equal(ss_utf8_sanitize(buf), z[i].bad);
        assert_string_equal(buf, z[i].want);
        assert_true(ss_utf8_valid(buf, strlen(buf)));
    }
}

static void test_strcpy_utf8(void **state)
{
    /* Cut into len bytes: never inside a character. */
    static const struct { const char *label, *in; size_t len; int rc; const char *want; } t[] = {
        { "fits",          "abc",                   8, 0,       "abc" },
        { "exactly",       "abcdefg",               8, 0,       "abcdefg" },
        { "ascii cut",     "abcdefgh",              8, -ENOSPC, "abcdefg" },
        { "2-byte whole",  "abcde\xc3\xa9",          8, 0,       "abcde\xc3\xa9" },
        { "2-byte cut",    "abcdef\xc3\xa9",         8, -ENOSPC, "abcdef" },
        { "3-byte cut 1",  "abcde\xe2\x82\xac",      8, -ENOSPC, "abcde" },
        { "3-byte cut 2",  "abcd\xe2\x82\xacx",      8, -ENOSPC, "abcd\xe2\x82\xac" },
        { "4-byte cut",    "abc\xf0\x9f\x98\x80x",   7, -ENOSPC, "abc" },
        { "first char",    "\xc3\xa9",              2, -ENOSPC, "" },
        { "len 1",         "abc",                   1, -ENOSPC, "" },
        { "NULL src",      NULL,                    4, 0,       "" },
        /* Not UTF-8: five continuation bytes are no character to keep
         * whole, so the byte cut stands. */
        { "garbage",       "\x80\x80\x80\x80\x80\x80", 5, -ENOSPC, "\x80\x80\x80\x80" },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        char buf[16];
        memset(buf, 'Z', sizeof buf);
        int rc = ss_strcpy_utf8(buf, t[i].len, t[i].in);
        if (rc != t[i].rc || strcmp(buf, t[i].want) != 0)
            fail_msg("%s: rc %d \"%s\", want %d \"%s\"", t[i].label, rc, buf, t[i].rc,
                     t[i].want);
    }
    char one = 'Z';
    assert_int_equal(ss_strcpy_utf8(&one, 0, "x"), -ENOSPC);
    assert_int_equal(one, 'Z');
}

static void test_host_short(void **state)
{
    char full[256], buf[64], small[4];

    ss_host_short(buf, sizeof buf);
    assert_true(buf[0] != '\0');
    assert_null(strchr(buf, '.'));
    if (gethostname(full, sizeof full) == 0 && full[0] != '\0') {
        full[sizeof full - 1] = '\0';
        full[strcspn(full, ".")] = '\0';
        assert_memory_equal(buf, full, strlen(buf));
    }
    ss_host_short(small, sizeof small);
    assert_true(strlen(small) <= 3 && small[0] != '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_fmt_strcpy),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_fmt_duration),
        cmocka_unit_test(test_fmt_size),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_time_iso_fmt),
        cmocka_unit_test(test_time_iso_round_trip),
        cmocka_unit_test(test_time_iso_parse),
        cmocka_unit_test(test_site_code),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_sbuf),
        cmocka_unit_test(test_json_str),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_strcpy_utf8),
        cmocka_unit_test(test_host_short),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
