/*
 * test_conf.c - site.conf: the key table and its defaults, loading with
 * overrides and errors that name file and line, warnings for unknown keys,
 * checking values, editing the file byte for byte, and the shipped example
 * config/site.conf kept in step with the table.
 */
#include "testutil.h"

#include <ctype.h>
#include <stdio.h>

#include "conf.h"
#include "log.h"
#include "util.h"

/* ---- helpers --------------------------------------------------------- */

/* Removes the files conf tests create in a root, then the root: rmdir
 * fails, and with it the test, if anything else was left behind (such as
 * a temporary file of conf_set_file). */
static void remove_root(char *root)
{
    static const char *names[] = {"site.conf", "edit.conf", "test.log", "test.lo_"};
    char p[SS_PATH_MAX];
    for (size_t i = 0; i < SS_ARRAY_LEN(names); i++) {
        assert_int_equal(ss_path(p, sizeof p, "%s/%s", root, names[i]), 0);
        unlink(p);
    }
    assert_int_equal(rmdir(root), 0);
    free(root);
}

/* A root with site.conf holding text. */
static char *root_with(const char *text, char *path, size_t len)
{
    char *root = tu_tmpdir_new("test_conf");
    assert_int_equal(ss_path(path, len, "%s/site.conf", root), 0);
    tu_write(path, text);
    return root;
}

/* Two configurations are the same: root and every key's value. */
static void assert_same_conf(const struct ss_conf *a, const struct ss_conf *b)
{
    char va[SS_PATH_MAX], vb[SS_PATH_MAX];

    assert_string_equal(a->root, b->root);
    for (size_t i = 0; i < conf_nkeys; i++) {
        assert_int_equal(conf_value_str(a, &conf_keys[i], va, sizeof va), 0);
        assert_int_equal(conf_value_str(b, &conf_keys[i], vb, sizeof vb), 0);
        if (strcmp(va, vb) != 0)
            fail_msg("%s.%s: \"%s\" != \"%s\"", conf_keys[i].section, conf_keys[i].key, va, vb);
    }
}

/* ---- the table and defaults ------------------------------------------ */

static void test_table(void **state)
{
    char name[128], err[SS_ERR_MAX];

    assert_true(conf_nkeys >= 20);
    for (size_t i = 0; i < conf_nkeys; i++) {
        const struct conf_key *k = &conf_keys[i];
        snprintf(name, sizeof name, "%s.%s", k->section, k->key);
        assert_ptr_equal(conf_find(name), k);           /* names are unique */
        assert_true(k->doc != NULL && k->doc[0] != '\0');
        if (k->flags & CONF_REQUIRED)
            continue;
        if (conf_check(name, k->def, err, sizeof err) != 0)
            fail_msg("default of %s does not check: %s", name, err);
    }
    assert_null(conf_find("distmgr.nosuch"));
    assert_null(conf_find("nosuch.threads"));
    assert_null(conf_find("distmgr"));
    assert_null(conf_find("distmgr."));
    assert_null(conf_find(".threads"));
    assert_null(conf_find(NULL));
}

static void test_defaults(void **state)
{
    struct ss_conf c;
    char buf[SS_PATH_MAX];

    conf_defaults(&c, "/srv/site");
    assert_string_equal(c.root, "/srv/site");
    assert_string_equal(c.site_code, "");
    assert_string_equal(c.site_parent, "");
    assert_true(c.site_machine[0] != '\0');
    assert_null(strchr(c.site_machine, '.'));
    assert_int_equal(c.distmgr_retry_delay, 30 * 60 * 1000);
    assert_int_equal(c.distmgr_retry_max_delay, 4 * 3600 * 1000);
    assert_int_equal(c.distmgr_max_retries, 100);
    assert_int_equal(c.distmgr_threads, 3);
    assert_int_equal(c.sender_max_sendings, 5);
    assert_int_equal(c.sender_max_per_site, 3);
    assert_int_equal(c.sender_retry_delay, 60 * 1000);
    assert_int_equal(c.sender_retry_max_delay, 3600 * 1000);
    assert_int_equal(c.sender_job_lifetime, 7LL * 86400 * 1000);
    assert_int_equal(c.despool_threads, 3);
    assert_int_equal(c.statmgr_future_skew, 5 * 60 * 1000);
    assert_int_equal(c.statmgr_rescan, 30 * 1000);
    assert_int_equal(c.statmgr_batch, 1000);
    assert_string_equal(c.backup_destination, "/srv/site/backup");
    assert_int_equal(c.backup_keep, 7);
    assert_int_equal(c.backup_daily_at, -1);
    assert_int_equal(c.log_max_size, 2 * 1024 * 1024);
    assert_int_equal(c.daemon_stop_timeout, 10 * 1000);

    /* Every default formats back to the text of the table. */
    for (size_t i = 0; i < conf_nkeys; i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->flags & (CONF_REQUIRED | CONF_COMPUTED))
            continue;
        assert_int_equal(conf_value_str(&c, k, buf, sizeof buf), 0);
        if (strcmp(buf, k->def) != 0)
            fail_msg("%s.%s: formatted \"%s\", table says \"%s\"", k->section, k->key,
                     buf, k->def);
    }
}

static void test_value_str(void **state)
{
    struct ss_conf c;
    char buf[64];

    conf_defaults(&c, "/r");
    c.log_max_size = 1536;
    assert_int_equal(conf_value_str(&c, conf_find("log.max_size"), buf, sizeof buf), 0);
    assert_string_equal(buf, "1536");
    c.log_max_size = 3ULL << 30;
    assert_int_equal(conf_value_str(&c, conf_find("log.max_size"), buf, sizeof buf), 0);
    assert_string_equal(buf, "3GB");
    c.log_max_size = 64 * 1024;
    assert_int_equal(conf_value_str(&c, conf_find("log.max_size"), buf, sizeof buf), 0);
    assert_string_equal(buf, "64KB");
    c.backup_daily_at = 2 * 60 + 5;
    assert_int_equal(conf_value_str(&c, conf_find("backup.daily_at"), buf, sizeof buf), 0);
    assert_string_equal(buf, "02:05");
    c.statmgr_rescan = 1500;
    assert_int_equal(conf_value_str(&c, conf_find("statmgr.rescan"), buf, sizeof buf), 0);
    assert_string_equal(buf, "1500ms");
    assert_int_equal(conf_value_str(&c, conf_find("backup.destination"), buf, 4), -ENOSPC);
}

/* ---- conf_check ------------------------------------------------------- */

static const struct {
    const char *key, *value;
    int want;
    const char *err;   /* start of the message, for failures */
} checks[] = {
    {"site.code", "CEN", 0, NULL},
    {"site.code", "", -EINVAL, "bad site code \"\" for site.code"},
    {"site.code", "cen", -EINVAL, "bad site code \"cen\" for site.code"},
    {"site.code", "CENT", -EINVAL, "bad site code"},
    {"site.parent", "", 0, NULL},
    {"site.parent", "B01", 0, NULL},
    {"site.machine", "srv-01.x_y", 0, NULL},
    {"site.machine", "", 0, NULL},
    {"site.machine", "<short host name>", -EINVAL, "bad name"},
    {"distmgr.retry_delay", "90s", 0, NULL},
    {"distmgr.retry_delay", "3x", -EINVAL,
     "bad duration \"3x\" for distmgr.retry_delay"},
    {"distmgr.retry_delay", "0s", -EINVAL, "bad duration \"0s\" for distmgr.retry_delay (at least 100ms)"},
    {"statmgr.future_skew", "0", 0, NULL},
    {"distmgr.threads", "64", 0, NULL},
    {"distmgr.threads", "65", -EINVAL,
     "bad integer \"65\" for distmgr.threads (a whole number from 1 to 64)"},
    {"distmgr.threads", "0", -EINVAL, "bad integer"},
    {"distmgr.threads", "3.5", -EINVAL, "bad integer"},
    {"distmgr.threads", " 3", -EINVAL, "bad value \" 3\" for distmgr.threads (leading"},
    {"distmgr.max_retries", "1000000", 0, NULL},
    {"statmgr.batch", "100001", -EINVAL, "bad integer"},
    {"log.max_size", "512k", 0, NULL},
    {"log.max_size", "1000", -EINVAL, "bad size \"1000\" for log.max_size (at least 4KB)"},
    {"log.max_size", "2 MB", -EINVAL, "bad size"},
    {"backup.daily_at", "", 0, NULL},
    {"backup.daily_at", "23:59", 0, NULL},
    {"backup.daily_at", "24:00", -EINVAL, "bad time of day \"24:00\""},
    {"backup.daily_at", "2:00", -EINVAL, "bad time of day"},
    {"backup.destination", "/mnt/backup", 0, NULL},
    {"backup.destination", "", 0, NULL},
    {"backup.destination", "backup", -EINVAL, "bad path \"backup\" for backup.destination (must be absolute)"},
    {"backup.keep", "1000", 0, NULL},
    {"daemon.stop_timeout", "500ms", -EINVAL, "bad duration"},
    {"sender.job_lifetime", "14d", 0, NULL},
    {"sender.job_lifetime", "7d\nx", -EINVAL, "bad value for sender.job_lifetime (control character 0x0a)"},
    {"sender.nosuch", "1", -ENOENT, "unknown key sender.nosuch"},
    {"nodot", "1", -ENOENT, "unknown key nodot"},
};

static void test_check(void **state)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(checks); i++) {
        char err[SS_ERR_MAX] = "";
        int r = conf_check(checks[i].key, checks[i].value, err, sizeof err);
        if (r != checks[i].want ||
            (checks[i].err != NULL && strncmp(err, checks[i].err, strlen(checks[i].err)) != 0))
            fail_msg("%s = \"%s\": r=%d err=\"%s\", want %d \"%s\"", checks[i].key,
                     checks[i].value, r, err, checks[i].want,
                     checks[i].err != NULL ? checks[i].err : "");
    }
}

/* ---- conf_load -------------------------------------------------------- */

static void test_load_overrides(void **state)
{
    char path[SS_PATH_MAX], err[SS_ERR_MAX] = "";
    char *root = root_with(
        "; comment\n"
        "[site]\n"
        "code = B01\n"
        "parent = CEN\n"
        "machine = dp-host\n"
        "[distmgr]\n"
        "retry_delay = 90s\n"
        "threads = 8\n"
        "[backup]\n"
        "destination = /mnt/bk\n"
        "daily_at = 01:30\n"
        "[log]\n"
        "max_size = 512KB\n"
        "[distmgr]\n"
        "max_retries = 5\n", path, sizeof path);
    struct ss_conf c;
    int nwarn = -1;

    assert_int_equal(conf_load(&c, root, &nwarn, err, sizeof err), 0);
    assert_int_equal(nwarn, 0);
    assert_string_equal(c.root, root);
    assert_string_equal(c.site_code, "B01");
    assert_string_equal(c.site_parent, "CEN");
    assert_string_equal(c.site_machine, "dp-host");
    assert_int_equal(c.distmgr_retry_delay, 90000);
    assert_int_equal(c.distmgr_threads, 8);
    assert_int_equal(c.distmgr_max_retries, 5);
    assert_int_equal(c.distmgr_retry_max_delay, 4 * 3600 * 1000);   /* default */
    assert_string_equal(c.backup_destination, "/mnt/bk");
    assert_int_equal(c.backup_daily_at, 90);
    assert_int_equal(c.log_max_size, 512 * 1024);
    assert_int_equal(c.sender_max_sendings, 5);

    /* Only the code: everything else at its default, computed ones too. */
    tu_write(path, "[site]\ncode = CEN\n");
    assert_int_equal(conf_load(&c, root, NULL, err, sizeof err), 0);
    struct ss_conf d;
    conf_defaults(&d, root);
    snprintf(d.site_code, sizeof d.site_code, "CEN");
    assert_same_conf(&c, &d);
    remove_root(root);
}

static const struct {
    const char *label, *text;
    const char *want;   /* err after "PATH" ("" for the bare path) */
} load_errors[] = {
    {"bad duration",
     "[site]\ncode = CEN\n\n[distmgr]\nretry_delay = 3x\n",
     ":5: bad duration \"3x\" for distmgr.retry_delay"},
    {"bad integer", "[sender]\nmax_sendings = 0\n[site]\ncode = CEN\n",
     ":2: bad integer \"0\" for sender.max_sendings"},
    {"bad site code", "[site]\ncode = cen\n", ":2: bad site code \"cen\" for site.code"},
    {"bad parent", "[site]\ncode = CEN\nparent = X\n", ":3: bad site code \"X\" for site.parent"},
    {"duplicate key", "[site]\ncode = CEN\n[distmgr]\nthreads = 4\n; again\nthreads = 5\n",
     ":6: distmgr.threads set twice (first at line 4)"},
    {"duplicate across repeated section",
     "[site]\ncode = CEN\n[log]\nmax_size = 1MB\n[site]\ncode = B01\n",
     ":6: site.code set twice (first at line 2)"},
    {"bare word", "[site]\ncode = CEN\n[backup]\nkeep\n",
     ":4: backup.keep without a value"},
    {"malformed line", "[site]\ncode = CEN\n[backup\n",
     ":3: section header \"[backup\" does not end with ']'"},
    {"missing code", "[site]\nparent = CEN\n", ": site.code is missing"},
    {"empty file", "", ": site.code is missing"},
    {"cap below first delay", "[site]\ncode = CEN\n[sender]\nretry_delay = 2h\n",
     ":4: sender.retry_max_delay 1h is shorter than sender.retry_delay 2h"},
    {"own parent", "[site]\ncode = B01\nparent = B01\n",
     ":3: site.parent B01 is this site's own code"},
};

static void test_load_errors(void **state)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(load_errors); i++) {
        char path[SS_PATH_MAX], want[SS_PATH_MAX + 128], err[SS_ERR_MAX] = "";
        char *root = root_with(load_errors[i].text, path, sizeof path);
        struct ss_conf c, before;

        /* The caller's configuration stays exactly as it was. */
        conf_defaults(&c, "/old/root");
        snprintf(c.site_code, sizeof c.site_code, "OLD");
        c.distmgr_threads = 42;
        memcpy(&before, &c, sizeof c);
        int r = conf_load(&c, root, NULL, err, sizeof err);
        snprintf(want, sizeof want, "%s%s", path, load_errors[i].want);
        if (r != -EINVAL || strncmp(err, want, strlen(want)) != 0)
            fail_msg("%s: r=%d err=\"%s\" want \"%s...\"", load_errors[i].label, r, err, want);
        assert_same_conf(&c, &before);
        remove_root(root);
    }
}

static void test_load_missing_file(void **state)
{
    char err[SS_ERR_MAX];
    char *root = tu_tmpdir_new("test_conf");
    struct ss_conf c;

    assert_int_equal(conf_load(&c, root, NULL, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "/site.conf: no such file"));
    remove_root(root);
}

static void test_load_unknown_keys(void **state)
{
    char path[SS_PATH_MAX], err[SS_ERR_MAX] = "", want[SS_PATH_MAX + 64];
    char *root = root_with("[site]\ncode = CEN\nfoo = 1\n"
                           "[nosuch]\nx = 1\n"
                           "[sender]\nmax_sendings = 9\n", path, sizeof path);
    struct ss_conf c;
    int nwarn = 0;

    /* The warnings go to the default log, which we read back. */
    struct sslog *saved = sslog_default;
    sslog_default = sslog_open(root, "test", "test", 0);
    sslog_set_stderr(sslog_default, 0);
    assert_int_equal(conf_load(&c, root, &nwarn, err, sizeof err), 0);
    sslog_close(sslog_default);
    sslog_default = saved;

    assert_int_equal(nwarn, 3);
    assert_int_equal(c.sender_max_sendings, 9);     /* the rest is loaded */
    char logpath[SS_PATH_MAX];
    assert_int_equal(ss_path(logpath, sizeof logpath, "%s/test.log", root), 0);
    char *log = tu_read(logpath, NULL);
    snprintf(want, sizeof want, "[%s:3: unknown key site.foo (ignored)]", path);
    assert_non_null(strstr(log, want));
    snprintf(want, sizeof want, "[%s:4: unknown section [nosuch] (ignored)]", path);
    assert_non_null(strstr(log, want));
    snprintf(want, sizeof want, "[%s:5: unknown key nosuch.x (ignored)]", path);
    assert_non_null(strstr(log, want));
    assert_non_null(strstr(log, "type=\"2\""));
    free(log);
    remove_root(root);
}

/* ---- conf_set_file ---------------------------------------------------- */

#define BASE \
    "; site.conf for the test\n" \
    "\n" \
    "[site]\n" \
    "code = CEN   \n" \
    "\n" \
    "[distmgr]\n" \
    "; how many at once\n" \
    "  threads   =  3\n" \
    "retry_delay=30m\n" \
    "\n" \
    "; the despooler\n" \
    "[despool]\n" \
    "threads = 3\n" \
    "\n" \
    "# end\n"

/* conf_set_file only writes a file that loads: fragments that test the
 * editing of other sections start with this. */
#define SITE "[site]\ncode = CEN\n"

static const struct {
    const char *label, *before, *key, *value, *after;
} edits[] = {
    {"replace in section, keep indentation and spacing", BASE, "distmgr.threads", "8",
     "; site.conf for the test\n\n[site]\ncode = CEN   \n\n[distmgr]\n; how many at once\n"
     "  threads   =  8\nretry_delay=30m\n\n; the despooler\n[despool]\nthreads = 3\n\n# end\n"},
    {"same key name in the other section", BASE, "despool.threads", "12",
     "; site.conf for the test\n\n[site]\ncode = CEN   \n\n[distmgr]\n; how many at once\n"
     "  threads   =  3\nretry_delay=30m\n\n; the despooler\n[despool]\nthreads = 12\n\n# end\n"},
    {"replace without blanks", BASE, "distmgr.retry_delay", "1h",
     "; site.conf for the test\n\n[site]\ncode = CEN   \n\n[distmgr]\n; how many at once\n"
     "  threads   =  3\nretry_delay=1h\n\n; the despooler\n[despool]\nthreads = 3\n\n# end\n"},
    {"add to a section, before the next one's comment", BASE, "distmgr.max_retries", "7",
     "; site.conf for the test\n\n[site]\ncode = CEN   \n\n[distmgr]\n; how many at once\n"
     "  threads   =  3\nretry_delay=30m\nmax_retries = 7\n\n; the despooler\n[despool]\n"
     "threads = 3\n\n# end\n"},
    {"add to the first section", BASE, "site.parent", "B01",
     "; site.conf for the test\n\n[site]\ncode = CEN   \nparent = B01\n\n[distmgr]\n"
     "; how many at once\n  threads   =  3\nretry_delay=30m\n\n; the despooler\n[despool]\n"
     "threads = 3\n\n# end\n"},
    {"add to the last section, a closing comment stays last",
     SITE "[backup]\nkeep = 7\n\n# end of file\n", "backup.daily_at", "02:00",
     SITE "[backup]\nkeep = 7\ndaily_at = 02:00\n\n# end of file\n"},
    {"add to the last section ending in a comment of its own",
     SITE "[backup]\nkeep = 7\n; was 3\n", "backup.daily_at", "02:00",
     SITE "[backup]\nkeep = 7\n; was 3\ndaily_at = 02:00\n"},
    {"new section at the end", BASE, "log.max_size", "1MB",
     BASE "\n[log]\nmax_size = 1MB\n"},
    {"empty value", BASE, "site.parent", "",
     "; site.conf for the test\n\n[site]\ncode = CEN   \nparent =\n\n[distmgr]\n"
     "; how many at once\n  threads   =  3\nretry_delay=30m\n\n; the despooler\n[despool]\n"
     "threads = 3\n\n# end\n"},
    {"last line without newline", "[site]\ncode = CEN", "site.parent", "B01",
     "[site]\ncode = CEN\nparent = B01\n"},
    {"replace the last line without newline", "[site]\ncode = CEN", "site.code", "B01",
     "[site]\ncode = B01"},
    {"new section after a file without newline", "[site]\ncode = CEN", "log.max_size", "4MB",
     "[site]\ncode = CEN\n\n[log]\nmax_size = 4MB\n"},
    {"new section after a blank line", "[site]\ncode = CEN\n\n", "log.max_size", "4MB",
     "[site]\ncode = CEN\n\n[log]\nmax_size = 4MB\n"},
    {"empty file", "", "site.code", "CEN", "[site]\ncode = CEN\n"},
    {"CRLF file stays CRLF", "[site]\r\ncode = CEN\r\n\r\n[log]\r\nmax_size = 1MB\r\n",
     "site.parent", "B01",
     "[site]\r\ncode = CEN\r\nparent = B01\r\n\r\n[log]\r\nmax_size = 1MB\r\n"},
    {"CRLF replace", "[site]\r\ncode = CEN\r\n", "site.code", "B01", "[site]\r\ncode = B01\r\n"},
    {"section repeated: key found in the first", "[site]\ncode = CEN\n[log]\n[site]\nparent = B01\n",
     "site.code", "X01", "[site]\ncode = X01\n[log]\n[site]\nparent = B01\n"},
    {"section repeated: added to the last", "[site]\ncode = CEN\n[log]\n[site]\nparent = B01\n",
     "site.machine", "m1", "[site]\ncode = CEN\n[log]\n[site]\nparent = B01\nmachine = m1\n"},
    {"commented-out key stays a comment",
     SITE "[backup]\n; destination = <root>/backup\nkeep = 7\n",
     "backup.destination", "/mnt/b",
     SITE "[backup]\n; destination = <root>/backup\nkeep = 7\ndestination = /mnt/b\n"},
    {"only a header", SITE "[backup]\n", "backup.keep", "3", SITE "[backup]\nkeep = 3\n"},
    {"header followed by another's comment", SITE "[backup]\n; about log\n[log]\n",
     "backup.keep", "3", SITE "[backup]\nkeep = 3\n; about log\n[log]\n"},
};

static void test_set_file(void **state)
{
    char *root = tu_tmpdir_new("test_conf");
    char path[SS_PATH_MAX], err[SS_ERR_MAX];
    struct stat st;

    assert_int_equal(ss_path(path, sizeof path, "%s/edit.conf", root), 0);
    for (size_t i = 0; i < SS_ARRAY_LEN(edits); i++) {
        tu_write(path, edits[i].before);
        assert_int_equal(chmod(path, 0640), 0);
        err[0] = '\0';
        int r = conf_set_file(path, edits[i].key, edits[i].value, err, sizeof err);
        char *after = tu_read(path, NULL);
        if (r != 0 || strcmp(after, edits[i].after) != 0)
            fail_msg("%s: r=%d err=\"%s\"\n--- got\n%s--- want\n%s---", edits[i].label, r, err,
                     after, edits[i].after);
        free(after);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0640);
    }
    remove_root(root);
}

static void test_set_file_errors(void **state)
{
    char *root = tu_tmpdir_new("test_conf");
    char path[SS_PATH_MAX], err[SS_ERR_MAX], want[SS_PATH_MAX + 64];

    assert_int_equal(ss_path(path, sizeof path, "%s/edit.conf", root), 0);
    tu_write(path, BASE);

    /* A bad value or an unknown key leaves the file alone. */
    assert_int_equal(conf_set_file(path, "distmgr.threads", "100", err, sizeof err), -EINVAL);
    assert_string_equal(err, "bad integer \"100\" for distmgr.threads (a whole number from 1 to 64)");
    assert_int_equal(conf_set_file(path, "distmgr.nosuch", "1", err, sizeof err), -ENOENT);
    assert_int_equal(conf_set_file(path, "distmgr.retry_delay", "3x", err, sizeof err), -EINVAL);
    assert_int_equal(conf_set_file(path, "site.parent", "B01\n[x]", err, sizeof err), -EINVAL);
    char *after = tu_read(path, NULL);
    assert_string_equal(after, BASE);
    free(after);

    /* A file that does not parse is not edited. */
    tu_write(path, "[site]\ncode = CEN\nthis is wrong\n");
    assert_int_equal(conf_set_file(path, "site.parent", "B01", err, sizeof err), -EINVAL);
    snprintf(want, sizeof want, "%s:3: expected", path);
    assert_memory_equal(err, want, strlen(want));

    /* Nor one where the key is given twice: which one would we edit? */
    tu_write(path, "[site]\ncode = CEN\ncode = B01\n");
    assert_int_equal(conf_set_file(path, "site.code", "X01", err, sizeof err), -EINVAL);
    snprintf(want, sizeof want, "%s:3: site.code set twice (first at line 2)", path);
    assert_memory_equal(err, want, strlen(want));

    assert_int_equal(unlink(path), 0);
    assert_int_equal(conf_set_file(path, "site.code", "CEN", err, sizeof err), -ENOENT);
    remove_root(root);
}

/* An edit then a load: what was set is what is read. */
static void test_set_then_load(void **state)
{
    char path[SS_PATH_MAX], err[SS_ERR_MAX] = "";
    char *root = root_with("[site]\ncode = CEN\n", path, sizeof path);
    struct ss_conf c;

    assert_int_equal(conf_set_file(path, "backup.daily_at", "03:15", err, sizeof err), 0);
    assert_int_equal(conf_set_file(path, "sender.job_lifetime", "2d", err, sizeof err), 0);
    assert_int_equal(conf_set_file(path, "sender.job_lifetime", "3d", err, sizeof err), 0);
    assert_int_equal(conf_load(&c, root, NULL, err, sizeof err), 0);
    assert_int_equal(c.backup_daily_at, 3 * 60 + 15);
    assert_int_equal(c.sender_job_lifetime, 3LL * 86400 * 1000);
    remove_root(root);
}

/*
 * An edit that no daemon could load is refused before the file is
 * touched: every rule of conf_load, the ones between two keys included.
 * An edit that mends a file that would not load is taken.
 */
static const struct {
    const char *label, *before, *key, *value;
    int want;
    const char *err;        /* substring of err, "" when want is 0 */
} unloadable[] = {
    {"max below the delay in the file", BASE, "distmgr.retry_max_delay", "1m", -EINVAL,
     "edit.conf:10: distmgr.retry_max_delay 1m is shorter than distmgr.retry_delay 30m"},
    {"delay above the default max", BASE, "distmgr.retry_delay", "5h", -EINVAL,
     "distmgr.retry_max_delay 4h is shorter than distmgr.retry_delay 5h"},
    {"sender pair", SITE "[sender]\nretry_max_delay = 10m\n", "sender.retry_delay", "1h",
     -EINVAL, "sender.retry_max_delay 10m is shorter than sender.retry_delay 1h"},
    {"no site.code", "[log]\nmax_size = 1MB\n", "log.max_size", "2MB", -EINVAL,
     "site.code is missing"},
    {"a value elsewhere in the file is bad", SITE "[distmgr]\nthreads = 100\n",
     "log.max_size", "2MB", -EINVAL, "edit.conf:4: bad integer \"100\" for distmgr.threads"},
    {"max equal to the delay", BASE, "distmgr.retry_max_delay", "30m", 0, ""},
    {"the edit mends the pair",
     SITE "[distmgr]\nretry_delay = 30m\nretry_max_delay = 1m\n", "distmgr.retry_max_delay",
     "1h", 0, ""},
    {"the edit adds the missing site.code", "[log]\nmax_size = 1MB\n", "site.code", "CEN",
     0, ""},
};

static void test_set_file_refuses_unloadable(void **state)
{
    char *root = tu_tmpdir_new("test_conf");
    char path[SS_PATH_MAX], err[SS_ERR_MAX];
    struct stat before, after;
    struct ss_conf c;

    assert_int_equal(ss_path(path, sizeof path, "%s/edit.conf", root), 0);
    for (size_t i = 0; i < SS_ARRAY_LEN(unloadable); i++) {
        tu_write(path, unloadable[i].before);
        assert_int_equal(stat(path, &before), 0);
        err[0] = '\0';
        int r = conf_set_file(path, unloadable[i].key, unloadable[i].value, err, sizeof err);
        if (r != unloadable[i].want)
            fail_msg("%s: r=%d, want %d (%s)", unloadable[i].label, r, unloadable[i].want, err);
        assert_int_equal(stat(path, &after), 0);
        if (r < 0) {
            if (strstr(err, unloadable[i].err) == NULL || strstr(err, "left unchanged") == NULL)
                fail_msg("%s: err \"%s\", want \"%s\" and \"left unchanged\"",
                         unloadable[i].label, err, unloadable[i].err);
            /* Not replaced at all: the same inode, the same bytes. */
            assert_int_equal(after.st_ino, before.st_ino);
            tu_assert_content(AT_FDCWD, path, unloadable[i].before);
        } else {
            char *text = tu_read(path, NULL);
            assert_int_equal(conf_load_buf(&c, root, path, text, strlen(text), NULL, err,
                                           sizeof err), 0);
            free(text);
        }
    }
    remove_root(root);
}

/* conf_load_buf is conf_load without the read: same result, same errors
 * (placed under the given name). */
static void test_load_buf(void **state)
{
    static const char *const texts[] = {
        "[site]\ncode = CEN\n[distmgr]\nretry_delay = 1m\n[log]\nmax_size = 4KB\n",
        "[site]\ncode = CEN\n[distmgr]\nretry_delay = 1h\nretry_max_delay = 10m\n",
        "[site]\ncode = CEN\n[distmgr]\nthreads = x\n",
        "[site]\nparent = B01\n",
        "[site]\ncode = CEN\ncode = B01\n",
    };
    char path[SS_PATH_MAX], e1[SS_ERR_MAX], e2[SS_ERR_MAX];
    struct ss_conf a, b;

    for (size_t i = 0; i < SS_ARRAY_LEN(texts); i++) {
        char *root = root_with(texts[i], path, sizeof path);
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        e1[0] = e2[0] = '\0';
        int r1 = conf_load(&a, root, NULL, e1, sizeof e1);
        int r2 = conf_load_buf(&b, root, path, texts[i], strlen(texts[i]), NULL, e2, sizeof e2);
        if (r1 != r2 || strcmp(e1, e2) != 0)
            fail_msg("text %zu: conf_load %d \"%s\", conf_load_buf %d \"%s\"", i, r1, e1,
                     r2, e2);
        if (r1 == 0)
            assert_same_conf(&a, &b);
        remove_root(root);
    }
    /* Without a name, errors say site.conf. */
    assert_int_equal(conf_load_buf(&a, "/r", NULL, texts[1], strlen(texts[1]), NULL, e1,
                                   sizeof e1), -EINVAL);
    assert_memory_equal(e1, "site.conf:5: ", 13);
}

/* ---- the shipped example ------------------------------------------------ */

struct ex_line {
    char section[64];
    char key[64];
    char value[256];
    int  commented;     /* "; key = value" */
    int  lineno;
};

/* Splits the example into lines and finds its active and commented keys. */
static int example_keys(char *text, struct ex_line *out, int max, char **lines, int *nlines)
{
    char section[64] = "";
    int n = 0, ln = 0;
    char *p = text;

    while (*p != '\0') {
        char *nl = strchr(p, '\n');
        if (nl != NULL)
            *nl = '\0';
        lines[ln++] = p;
        char *s = p;
        while (*s == ' ' || *s == '\t')
            s++;
        int commented = 0;
        if (*s == '[') {
            sscanf(s, "[%63[^]]]", section);
        } else {
            if (*s == ';' || *s == '#') {
                commented = 1;
                s++;
                while (*s == ' ')
                    s++;
            }
            char key[64], value[256] = "";
            int got = sscanf(s, "%63[A-Za-z0-9_.-] = %255[^\n]", key, value);
            char dotted[160];
            snprintf(dotted, sizeof dotted, "%.63s.%.63s", section, key);
            /* Comment prose is not a key: only "word =" lines count, and
             * commented ones only when they name a key of the table. */
            if (got >= 1 && strchr(s, '=') != NULL &&
                strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
                    == strlen(key) &&
                (!commented || conf_find(dotted) != NULL)) {
                assert_true(n < max);
                snprintf(out[n].section, sizeof out[n].section, "%s", section);
                snprintf(out[n].key, sizeof out[n].key, "%s", key);
                snprintf(out[n].value, sizeof out[n].value, "%s", value);
                /* trailing blanks of the value */
                size_t vl = strlen(out[n].value);
                while (vl > 0 && isspace((unsigned char)out[n].value[vl - 1]))
                    out[n].value[--vl] = '\0';
                out[n].commented = commented;
                out[n].lineno = ln;
                n++;
            }
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    *nlines = ln;
    return n;
}

static void test_example_in_sync(void **state)
{
    const char *src = getenv("SITESRV_SRCDIR");
    char path[SS_PATH_MAX], err[SS_ERR_MAX] = "";
    struct ex_line ex[128];
    char *lines[1024];
    int nlines;

    if (src == NULL || *src == '\0')
        src = ".";
    assert_int_equal(ss_path(path, sizeof path, "%s/config/site.conf", src), 0);
    char *text = tu_read(path, NULL);
    int n = example_keys(text, ex, (int)SS_ARRAY_LEN(ex), lines, &nlines);

    /* Every active line is a key of the table with a valid value. */
    for (int i = 0; i < n; i++) {
        char dotted[160];
        snprintf(dotted, sizeof dotted, "%.63s.%.63s", ex[i].section, ex[i].key);
        if (conf_find(dotted) == NULL)
            fail_msg("%s:%d: %s is not in the key table", path, ex[i].lineno, dotted);
        if (!ex[i].commented && conf_check(dotted, ex[i].value, err, sizeof err) != 0)
            fail_msg("%s:%d: %s", path, ex[i].lineno, err);
    }

    /* Every key of the table is there once, with the table's default and
     * its meaning in the comment just above it. */
    for (size_t k = 0; k < conf_nkeys; k++) {
        const struct conf_key *ck = &conf_keys[k];
        int found = -1;
        for (int i = 0; i < n; i++)
            if (strcmp(ex[i].section, ck->section) == 0 && strcmp(ex[i].key, ck->key) == 0) {
                if (found >= 0)
                    fail_msg("%s.%s appears twice in %s", ck->section, ck->key, path);
                found = i;
            }
        if (found < 0)
            fail_msg("%s.%s is missing from %s", ck->section, ck->key, path);
        const struct ex_line *e = &ex[found];
        if (ck->flags & CONF_REQUIRED) {
            if (e->commented || !ss_site_code_ok(e->value))
                fail_msg("%s.%s should be shown with an example code", ck->section, ck->key);
        } else if (ck->flags & CONF_COMPUTED) {
            if (!e->commented)
                fail_msg("%s.%s has a computed default and should be commented out",
                         ck->section, ck->key);
        } else if (e->commented || strcmp(e->value, ck->def) != 0) {
            fail_msg("%s:%d: %s.%s = \"%s\" but the table's default is \"%s\"", path,
                     e->lineno, ck->section, ck->key, e->value, ck->def);
        }
        int doc = 0;
        for (int l = e->lineno - 2; l >= 0 && lines[l][0] == ';'; l--)
            if (strncmp(lines[l], "; ", 2) == 0 &&
                strncmp(lines[l] + 2, ck->doc, strlen(ck->doc)) == 0)
                doc = 1;
        if (!doc)
            fail_msg("%s:%d: the comment above %s.%s should say \"%s\"", path, e->lineno,
                     ck->section, ck->key, ck->doc);
    }
    free(text);

    /* And it loads as it is, without a warning. */
    char *root = tu_tmpdir_new("test_conf");
    char dst[SS_PATH_MAX];
    struct ss_conf c;
    int nwarn = -1;
    text = tu_read(path, NULL);
    assert_int_equal(ss_path(dst, sizeof dst, "%s/site.conf", root), 0);
    tu_write(dst, text);
    free(text);
    if (conf_load(&c, root, &nwarn, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(nwarn, 0);
    remove_root(root);
}

int main(void)
{
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_value_str),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_load_overrides),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_load_unknown_keys),
        cmocka_unit_test(test_set_file),
        cmocka_unit_test(test_set_file_errors),
        cmocka_unit_test(test_set_then_load),
        cmocka_unit_test(test_set_file_refuses_unloadable),
        cmocka_unit_test(test_load_buf),
        cmocka_unit_test(test_example_in_sync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
