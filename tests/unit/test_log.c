/*
 * test_log.c - CMTrace records: exact format, escaping, cutting, roll-over
 * with one generation, reopen after a move, concurrent writers, stderr,
 * and sslog_emergency, which must not wait for a log held by a writer
 * stuck in write(2) (a FIFO nobody reads stands in for a hung disk).
 */
#include "testutil.h"

#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>

#include "log.h"
#include "util.h"

/* 2026-11-21 23:50:01.234 UTC */
static int64_t fixed_ms(void)
{
    struct tm tm = {0};
    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 10;
    tm.tm_mday = 21;
    tm.tm_hour = 23;
    tm.tm_min = 50;
    tm.tm_sec = 1;
    return (int64_t)timegm(&tm) * 1000 + 234;
}

static const struct {
    const char *label;
    int bias;
    const char *text, *component;
    int type;
    long thread;
    const char *file;
    int line;
    const char *want;
} formats[] = {
    {"bias 0", 0, "hello", "statmgr", 1, 42, "x.c", 7,
     "<![LOG[hello]LOG]!><time=\"23:50:01.234+000\" date=\"11-21-2026\" component=\"statmgr\" "
     "context=\"\" type=\"1\" thread=\"42\" file=\"x.c:7\">\n"},
    {"bias -60 crosses midnight", -60, "hello", "statmgr", 1, 42, "x.c", 7,
     "<![LOG[hello]LOG]!><time=\"00:50:01.234-060\" date=\"11-22-2026\" component=\"statmgr\" "
     "context=\"\" type=\"1\" thread=\"42\" file=\"x.c:7\">\n"},
    {"bias 480, path cut to basename", 480, "w", "distmgr", 2, 1234, "daemons/distmgr/dm.c", 900,
     "<![LOG[w]LOG]!><time=\"15:50:01.234+480\" date=\"11-21-2026\" component=\"distmgr\" "
     "context=\"\" type=\"2\" thread=\"1234\" file=\"dm.c:900\">\n"},
    {"escapes", 0, "a\nb\r\nc\td\x01]LOG]!>e\\n", "c", 3, 1, "x.c", 1,
     "<![LOG[a\\nb\\r\\nc\td\\x01]LOG]!\\x3ee\\\\n]LOG]!><time=\"23:50:01.234+000\" "
     "date=\"11-21-2026\" component=\"c\" context=\"\" type=\"3\" thread=\"1\" file=\"x.c:1\">\n"},
    {"empty text", 0, "", "c", 1, 1, "x.c", 1,
     "<![LOG[]LOG]!><time=\"23:50:01.234+000\" date=\"11-21-2026\" component=\"c\" "
     "context=\"\" type=\"1\" thread=\"1\" file=\"x.c:1\">\n"},
};

static void test_format(void **state)
{
    char buf[1024];
    for (size_t i = 0; i < SS_ARRAY_LEN(formats); i++) {
        size_t n = sslog_format(buf, sizeof buf, formats[i].text, fixed_ms(), formats[i].bias,
                                formats[i].component, formats[i].type, formats[i].thread,
                                formats[i].file, formats[i].line);
        if (strcmp(buf, formats[i].want) != 0 || n != strlen(buf))
            fail_msg("%s: got\n%s want\n%s", formats[i].label, buf, formats[i].want);
    }
}

static const char *tail_of(const char *rec)
{
    return strstr(rec, "]LOG]!><time=");
}

static void test_format_cut(void **state)
{
    char big[3000], buf[200], full[4000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';

    size_t n = sslog_format(buf, sizeof buf, big, fixed_ms(), 0, "c", 1, 1, "x.c", 1);
    assert_int_equal(n, strlen(buf));
    assert_true(n < sizeof buf);
    assert_int_equal(buf[n - 1], '\n');
    assert_memory_equal(buf, "<![LOG[aaa", 10);
    sslog_format(full, sizeof full, "", fixed_ms(), 0, "c", 1, 1, "x.c", 1);
    assert_string_equal(tail_of(buf), tail_of(full));

    /* An escape is never cut in half: only whole "\n" units fit. */
    char nl[300];
    memset(nl, '\n', sizeof nl - 1);
    nl[sizeof nl - 1] = '\0';
    n = sslog_format(buf, sizeof buf, nl, fixed_ms(), 0, "c", 1, 1, "x.c", 1);
    const char *t = tail_of(buf);
    assert_non_null(t);
    assert_int_equal((t - buf - 7) % 2, 0);
    assert_int_equal(t[-1], 'n');

    /* Nor is a UTF-8 character: "é" is two bytes. */
    char utf[401];
    for (int i = 0; i < 400; i += 2)
        memcpy(utf + i, "\xc3\xa9", 2);
    utf[400] = '\0';
    for (size_t len = 150; len < 160; len++) {
        n = sslog_format(buf, len, utf, fixed_ms(), 0, "c", 1, 1, "x.c", 1);
        t = tail_of(buf);
        assert_non_null(t);
        assert_int_equal((t - buf - 7) % 2, 0);
        assert_true(n < len);
    }

    /* Too small for the frame: still one line. */
    n = sslog_format(buf, 20, "x", fixed_ms(), 0, "c", 1, 1, "x.c", 1);
    assert_int_equal(n, 19);
    assert_int_equal(buf[18], '\n');
    assert_int_equal(buf[19], '\0');
}

/* ---- escaping -------------------------------------------------------- */

static const struct {
    const char *label;
    const char *text;
    size_t      len;        /* of the output buffer */
    const char *want;
    int         whole;
} escapes[] = {
    {"plain", "plain text", 64, "plain text", 1},
    {"backslash doubled", "a\\b\\", 64, "a\\\\b\\\\", 1},
    {"LF CR, tab kept", "a\nb\rc\td", 64, "a\\nb\\rc\td", 1},
    {"controls and DEL", "\x01\x1b[0m\x7f", 64, "\\x01\\x1b[0m\\x7f", 1},
    {"end marker", "x]LOG]!>y]LOG]>", 64, "x]LOG]!\\x3ey]LOG]>", 1},
    {"UTF-8 kept", "\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80", 64,
     "\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80", 1},
    {"invalid bytes", "\xff\xc3(\x80", 64, "\\xff\\xc3(\\x80", 1},
    {"C1 control", "\xc2\x85\xc2\xa0", 64, "\\xc2\\x85\xc2\xa0", 1},
    {"surrogate", "\xed\xa0\x80", 64, "\\xed\\xa0\\x80", 1},
    {"overlong", "\xc0\xaf\xe0\x80\xaf", 64, "\\xc0\\xaf\\xe0\\x80\\xaf", 1},
    {"past U+10FFFF", "\xf4\x90\x80\x80", 64, "\\xf4\\x90\\x80\\x80", 1},
    {"cut before an escape", "abc\n", 5, "abc", 0},
    {"escape fits exactly", "abc\n", 6, "abc\\n", 1},
    {"cut before a character", "a\xc3\xa9", 3, "a", 0},
    {"character fits exactly", "a\xc3\xa9", 4, "a\xc3\xa9", 1},
    {"room for the NUL only", "x", 1, "", 0},
    {"empty", "", 1, "", 1},
    {"NULL is empty", NULL, 8, "", 1},
};

/* Undo sslog_escape: \\ \n \r \xHH.  Returns the length. */
static size_t unescape(const char *s, char *out)
{
    size_t o = 0;

    for (; *s; s++) {
        if (*s != '\\') {
            out[o++] = *s;
            continue;
        }
        s++;
        if (*s == 'n' || *s == 'r') {
            out[o++] = *s == 'n' ? '\n' : '\r';
        } else if (*s == '\\') {
            out[o++] = '\\';
        } else {
            assert_int_equal(*s, 'x');
            assert_true(ss_hexval(s[1]) >= 0 && ss_hexval(s[2]) >= 0);
            out[o++] = (char)(ss_hexval(s[1]) * 16 + ss_hexval(s[2]));
            s += 2;
        }
    }
    out[o] = '\0';
    return o;
}

static void test_escape(void **state)
{
    char out[64], back[256], in[256];
    int whole;

    for (size_t i = 0; i < SS_ARRAY_LEN(escapes); i++) {
        memset(out, '#', sizeof out);
        size_t n = sslog_escape(out, escapes[i].len, escapes[i].text, &whole);
        if (strcmp(out, escapes[i].want) != 0 || n != strlen(out) ||
            whole != escapes[i].whole)
            fail_msg("%s: got \"%s\" (%zu, whole %d), want \"%s\" (whole %d)",
                     escapes[i].label, out, n, whole, escapes[i].want, escapes[i].whole);
    }
    memset(out, '#', sizeof out);
    assert_int_equal(sslog_escape(out, 0, "x", NULL), 0);
    assert_int_equal(out[0], '#');          /* len 0 writes nothing */

    /* Every byte value, alone and after every other: the result has no
     * control character but tab, is valid UTF-8, and decodes back. */
    static char big[4 * 2 * 256 * 256 + 1];
    static char raw[2 * 256 * 256 + 1], dec[2 * 256 * 256 + 1];
    size_t r = 0;
    for (int a = 1; a < 256; a++)
        for (int b = 1; b < 256; b++) {
            raw[r++] = (char)a;
            raw[r++] = (char)b;
        }
    raw[r] = '\0';
    size_t n = sslog_escape(big, sizeof big, raw, &whole);
    assert_int_equal(whole, 1);
    assert_true(ss_utf8_valid(big, n));
    for (size_t i = 0; i < n; i++)
        assert_false(((unsigned char)big[i] < 0x20 && big[i] != '\t') || big[i] == 0x7f);
    assert_int_equal(unescape(big, dec), r);
    assert_memory_equal(dec, raw, r);

    /* Cut anywhere, what went in still decodes to a prefix of the text. */
    snprintf(in, sizeof in, "a\\b\n\xc3\xa9\xff]LOG]!>\xf0\x9f\x98\x80z");
    for (size_t len = 1; len < 40; len++) {
        n = sslog_escape(out, len, in, &whole);
        assert_true(n < len);
        size_t k = unescape(out, back);
        assert_memory_equal(back, in, k);
        assert_int_equal(whole, k == strlen(in));
    }
}

/* sslog_format's time and date of ms (UTC, bias 0) agree with gmtime_r. */
static void check_date(int64_t ms)
{
    char buf[512], want[64];
    int64_t s = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    time_t t = (time_t)s;
    struct tm tm;

    assert_non_null(gmtime_r(&t, &tm));
    snprintf(want, sizeof want, "time=\"%02d:%02d:%02d.%03d+000\" date=\"%02d-%02d-%04d\"",
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms - s * 1000), tm.tm_mon + 1,
             tm.tm_mday, tm.tm_year + 1900);
    sslog_format(buf, sizeof buf, "d", ms, 0, "c", 1, 1, "x.c", 1);
    if (strstr(buf, want) == NULL)
        fail_msg("%lld ms: got %s want %s", (long long)ms, buf, want);
}

/* The calendar is computed without gmtime_r (its lock): it must agree
 * with gmtime_r anyway, leap days and times before 1970 included. */
static void test_format_dates(void **state)
{
    static const int64_t days[] = {
        -25567, -1, 0, 59, 10956, 11016, 11017, 19782, 47540, 73048,
    };
    static const int64_t in_day_ms[] = { 0, -1, 1, 43199007, 86399999, 3723000 };

    /* Around midnight of some days (1900, 1969, 1970, leap days of 2000
     * and 2100...), and odd times. */
    for (size_t i = 0; i < SS_ARRAY_LEN(days); i++)
        for (size_t k = 0; k < SS_ARRAY_LEN(in_day_ms); k++)
            check_date(days[i] * 86400000 + in_day_ms[k]);
    /* And every 1000003 seconds over two centuries. */
    for (int64_t s = -2208988800LL; s < 4102444800LL; s += 1000003)
        check_date(s * 1000);
}

/* ---- files ----------------------------------------------------------- */

/* dir/name, read whole. */
static char *slurp(const char *dir, const char *name, size_t *len)
{
    char p[SS_PATH_MAX];

    assert_int_equal(ss_path(p, sizeof p, "%s/%s", dir, name), 0);
    return tu_read(p, len);
}

static regex_t record_re;

/* Every line is a well-formed record; returns the number of lines. */
static int check_records(char *text, const char *component)
{
    int n = 0;
    char *save, *line;
    size_t len = strlen(text);

    assert_true(len == 0 || text[len - 1] == '\n');
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        if (regexec(&record_re, line, 0, NULL, 0) != 0)
            fail_msg("malformed record: %s", line);
        char want[64];
        snprintf(want, sizeof want, "component=\"%s\"", component);
        assert_non_null(strstr(line, want));
        n++;
    }
    return n;
}

static void test_write_and_rollover(void **state)
{
    char *dir = tu_tmpdir_new("test_log");
    struct sslog *l = sslog_open(dir, "distmgr", "SMS_DISTRIBUTION_MANAGER", 2000);
    size_t loglen, rolledlen;

    assert_non_null(l);
    sslog_set_stderr(l, 0);
    log_to(l, SSLOG_INFO, "first %d", 1);
    char *t = slurp(dir, "distmgr.log", NULL);
    assert_non_null(t);
    assert_memory_equal(t, "<![LOG[first 1]LOG]!><time=\"", 28);
    assert_non_null(strstr(t, "file=\"test_log.c:"));
    assert_int_equal(check_records(t, "SMS_DISTRIBUTION_MANAGER"), 1);
    free(t);

    /* Write well past the size twice: exactly one .lo_, neither file over
     * the limit, and no record lost from the last two generations. */
    for (int i = 0; i < 60; i++)
        log_to(l, SSLOG_INFO, "line %d of the roll-over test", i);
    assert_int_equal(tu_count(dir), 2);
    char *log = slurp(dir, "distmgr.log", &loglen);
    char *rolled = slurp(dir, "distmgr.lo_", &rolledlen);
    assert_non_null(log);
    assert_non_null(rolled);
    assert_true(loglen <= 2000);
    assert_true(rolledlen <= 2000);
    assert_true(rolledlen > 2000 - 200);   /* it was full, not rolled early */
    assert_non_null(strstr(log, "line 59 of"));
    assert_null(strstr(log, "first 1"));
    assert_null(strstr(rolled, "first 1"));   /* the older generation is gone */
    int nl = check_records(log, "SMS_DISTRIBUTION_MANAGER");
    int nr = check_records(rolled, "SMS_DISTRIBUTION_MANAGER");
    assert_true(nl > 0 && nr > 0);
    free(log);
    free(rolled);

    /* A log opened again starts from the file's real size. */
    sslog_close(l);
    l = sslog_open(dir, "distmgr", "SMS_DISTRIBUTION_MANAGER", 2000);
    sslog_set_stderr(l, 0);
    for (int i = 0; i < 20; i++)
        log_to(l, SSLOG_INFO, "again %d of the roll-over test", i);
    log = slurp(dir, "distmgr.log", &loglen);
    assert_true(loglen <= 2000);
    free(log);
    sslog_close(l);
    tu_tmpdir_free(dir);
}

static void test_reopen_after_move(void **state)
{
    char *dir = tu_tmpdir_new("test_log");
    char from[SS_PATH_MAX], to[SS_PATH_MAX];
    struct sslog *l = sslog_open(dir, "statmgr", "SMS_STATUS_MANAGER", 0);

    assert_non_null(l);
    log_to(l, SSLOG_INFO, "one");
    assert_int_equal(ss_path(from, sizeof from, "%s/statmgr.log", dir), 0);
    assert_int_equal(ss_path(to, sizeof to, "%s/moved.log", dir), 0);
    assert_int_equal(rename(from, to), 0);
    log_to(l, SSLOG_INFO, "two");          /* still the moved file */
    assert_int_equal(sslog_reopen(l), 0);
    log_to(l, SSLOG_INFO, "three");

    char *moved = slurp(dir, "moved.log", NULL);
    char *fresh = slurp(dir, "statmgr.log", NULL);
    assert_non_null(moved);
    assert_non_null(fresh);
    assert_non_null(strstr(moved, "[one]"));
    assert_non_null(strstr(moved, "[two]"));
    assert_null(strstr(moved, "three"));
    assert_int_equal(check_records(fresh, "SMS_STATUS_MANAGER"), 1);
    free(moved);
    free(fresh);
    sslog_close(l);
    tu_tmpdir_free(dir);
}

#define THREADS 4
#define LINES   1000

struct writer {
    struct sslog *l;
    int id;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < LINES; i++)
        log_to(w->l, SSLOG_INFO, "writer %d line %d\nsecond half", w->id, i);
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    char *dir = tu_tmpdir_new("test_log");
    struct sslog *l = sslog_open(dir, "sender", "SMS_LAN_SENDER", 0);
    pthread_t th[THREADS];
    struct writer w[THREADS];
    int next[THREADS] = {0};

    assert_non_null(l);
    for (int i = 0; i < THREADS; i++) {
        w[i].l = l;
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    sslog_close(l);

    char *text = slurp(dir, "sender.log", NULL);
    assert_non_null(text);
    /* Each writer's lines are there, whole and in its own order. */
    for (char *p = text; *p != '\0'; p = strchr(p, '\n') + 1) {
        int id, n;
        assert_int_equal(sscanf(p, "<![LOG[writer %d line %d\\nsecond half]", &id, &n), 2);
        assert_true(id >= 0 && id < THREADS);
        assert_int_equal(n, next[id]);
        next[id]++;
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(next[i], LINES);
    assert_int_equal(check_records(text, "SMS_LAN_SENDER"), THREADS * LINES);
    free(text);
    tu_tmpdir_free(dir);
}

/* ---- stderr ---------------------------------------------------------- */

/* Runs fn with stderr sent to a file and returns what it wrote. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char *dir = tu_tmpdir_new("test_log");
    char p[SS_PATH_MAX];
    int saved = dup(2), fd;

    assert_int_equal(ss_path(p, sizeof p, "%s/stderr", dir), 0);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0 && saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);
    fn(arg);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    char *out = slurp(dir, "stderr", NULL);
    tu_tmpdir_free(dir);
    return out;
}

static void default_null(void *arg)
{
    sslog_default = NULL;
    log_info("plain %s", "info");
    log_warn("a warning\nin two lines");
    errno = EXDEV;
    log_error("an error");
    assert_int_equal(errno, EXDEV);     /* logging keeps errno */
}

static void with_log(void *arg)
{
    struct sslog *l = arg;
    log_to(l, SSLOG_INFO, "not on stderr");
    log_to(l, SSLOG_WARN, "warned");
    log_to(l, SSLOG_ERROR, "failed");
    sslog_set_stderr(l, 0);
    log_to(l, SSLOG_ERROR, "quiet");
}

static void no_file(void *arg)
{
    struct sslog *l = sslog_open("/nonexistent/dir", "x", "comp", 0);
    assert_non_null(l);
    log_to(l, SSLOG_INFO, "still said");
    sslog_close(l);
}

static void test_stderr(void **state)
{
    char *out = capture_stderr(default_null, NULL);
    char want[256];
    snprintf(want, sizeof want, "<6>%s: plain info\n<4>%s: a warning\\nin two lines\n"
             "<3>%s: an error\n", program_invocation_short_name,
             program_invocation_short_name, program_invocation_short_name);
    assert_string_equal(out, want);
    free(out);

    char *dir = tu_tmpdir_new("test_log");
    struct sslog *l = sslog_open(dir, "despool", "SMS_DESPOOLER", 0);
    out = capture_stderr(with_log, l);
    assert_string_equal(out, "<4>SMS_DESPOOLER: warned\n<3>SMS_DESPOOLER: failed\n");
    free(out);
    sslog_close(l);
    char *text = slurp(dir, "despool.log", NULL);
    assert_int_equal(check_records(text, "SMS_DESPOOLER"), 4);
    free(text);
    tu_tmpdir_free(dir);

    /* A log that cannot be opened says so and falls back to stderr. */
    out = capture_stderr(no_file, NULL);
    assert_non_null(strstr(out, "<4>comp: cannot open log /nonexistent/dir/x.log"));
    assert_non_null(strstr(out, "<6>comp: still said\n"));
    free(out);
}

/* ---- sslog_emergency ------------------------------------------------- */

struct emerg {
    struct sslog *l;
    const char   *text;
};

static void emergency(void *arg)
{
    struct emerg *e = arg;
    errno = EXDEV;
    sslog_emergency(e->l, SSLOG_ERROR, __FILE__, __LINE__, e->text);
    assert_int_equal(errno, EXDEV);
}

/* With the log free: stderr, and a record in the file. */
static void test_emergency(void **state)
{
    char *dir = tu_tmpdir_new("test_log");
    struct sslog *l = sslog_open(dir, "guard", "GUARD", 0);
    struct emerg e = { l, "stop did not complete\nin time" };

    char *out = capture_stderr(emergency, &e);
    assert_string_equal(out, "<3>GUARD: stop did not complete\\nin time\n");
    free(out);
    sslog_close(l);
    char *text = slurp(dir, "guard.log", NULL);
    const char *rec = "<![LOG[stop did not complete\\nin time]LOG]!>";
    assert_memory_equal(text, rec, strlen(rec));
    assert_non_null(strstr(text, "type=\"3\""));
    assert_int_equal(check_records(text, "GUARD"), 1);
    free(text);

    /* No log: stderr only. */
    e.l = NULL;
    out = capture_stderr(emergency, &e);
    assert_non_null(strstr(out, "<3>"));
    assert_non_null(strstr(out, ": stop did not complete\\nin time\n"));
    free(out);
    tu_tmpdir_free(dir);
}

struct flood {
    struct sslog *l;
    int           stop;         /* atomic */
    pid_t         tid;          /* atomic */
};

static void *flood_main(void *arg)
{
    struct flood *f = arg;
    static char big[5000];

    __atomic_store_n(&f->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
    memset(big, 'f', sizeof big - 1);
    while (!__atomic_load_n(&f->stop, __ATOMIC_RELAXED))
        log_to(f->l, SSLOG_INFO, "%s", big);
    return NULL;
}

/* Is thread tid asleep in write(2)?  /proc/<tid>/syscall names the system
 * call a sleeping thread is in ("running" for one that is not). */
static int asleep_in_write(pid_t tid)
{
    char path[64], buf[128];
    int want = SYS_write, fd;
    ssize_t n;

    if (tid == 0)
        return 0;
    snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", (long)tid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return atoi(buf) == want && buf[0] != 'r';
}

/* A writer stuck in write(2) holds the log's mutex: sslog_emergency must
 * still return, with its line on stderr (and not in the file).  If it
 * waited for the mutex, the alarm would end the test. */
static void test_emergency_log_held(void **state)
{
    char *dir = tu_tmpdir_new("test_log");
    char fifo[SS_PATH_MAX];
    struct flood fl = { NULL, 0, 0 };
    pthread_t th;

    assert_int_equal(ss_path(fifo, sizeof fifo, "%s/stuck.log", dir), 0);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    assert_true(rfd >= 0);
    fl.l = sslog_open(dir, "stuck", "STUCK", 0);
    assert_non_null(fl.l);
    assert_int_equal(pthread_create(&th, NULL, flood_main, &fl), 0);

    /* The writer asleep in write(2) is waiting for the pipe to drain,
     * and it holds the log's mutex (it writes under it). */
    int64_t end = ss_mono_ms() + 10000;
    while (!asleep_in_write(__atomic_load_n(&fl.tid, __ATOMIC_RELAXED)) &&
           ss_mono_ms() < end)
        poll(NULL, 0, 1);
    assert_true(asleep_in_write(fl.tid));

    struct emerg e = { fl.l, "guard line while the log is stuck" };
    alarm(20);
    char *out = capture_stderr(emergency, &e);
    alarm(0);
    assert_string_equal(out, "<3>STUCK: guard line while the log is stuck\n");
    free(out);

    /* Let the writer go, and check the record did not go to the file. */
    struct sbuf got;
    char buf[65536];
    ss_sbuf_init(&got);
    __atomic_store_n(&fl.stop, 1, __ATOMIC_RELAXED);
    for (;;) {
        ssize_t n = read(rfd, buf, sizeof buf);
        if (n > 0) {
            assert_int_equal(ss_sbuf_add(&got, buf, (size_t)n), 0);
            continue;
        }
        if (pthread_tryjoin_np(th, NULL) == 0)
            break;
        poll(NULL, 0, 1);
    }
    ssize_t n;
    while ((n = read(rfd, buf, sizeof buf)) > 0)
        assert_int_equal(ss_sbuf_add(&got, buf, (size_t)n), 0);
    assert_true(got.len > 10000);       /* the flood went through the pipe */
    assert_null(strstr(got.data, "guard line"));
    ss_sbuf_free(&got);
    sslog_close(fl.l);
    close(rfd);
    tu_tmpdir_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_cut),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_format_dates),
        cmocka_unit_test(test_emergency),
        cmocka_unit_test(test_emergency_log_held),
        cmocka_unit_test(test_write_and_rollover),
        cmocka_unit_test(test_reopen_after_move),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_stderr),
    };
    int r = regcomp(&record_re,
                    "^<!\\[LOG\\[.*\\]LOG\\]!><time=\"[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}"
                    "[+-][0-9]{3}\" date=\"[0-9]{2}-[0-9]{2}-[0-9]{4}\" component=\"[^\"]*\" "
                    "context=\"\" type=\"[123]\" thread=\"[0-9]+\" file=\"[^\"]+:[0-9]+\">$",
                    REG_EXTENDED | REG_NOSUB);
    if (r != 0)
        return 2;
    r = cmocka_run_group_tests(tests, NULL, NULL);
    regfree(&record_re);
    return r;
}
