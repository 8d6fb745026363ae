/*
 * test_retry.c - unit tests for lib/retry.c: the backoff schedule, the
 * durable per-target history, prefix selection at '/' boundaries.
 */
#include "testutil.h"

#include <stdio.h>

#include "retry.h"
#include "sitedb.h"
#include "util.h"

#define T0 1700000000000LL      /* an arbitrary "now" */

/* A fresh site database in a temporary directory. */
struct fx {
    struct tu_dir *tmp;
    sqlite3 *db;
};

static const struct retry_policy exact = { 1000, 60000, 5, 0.0 };

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[SS_ERR_MAX];

    assert_non_null(f);
    f->tmp = tu_dir_new("test_retry", "site.db");
    assert_non_null(f->tmp);
    assert_int_equal(sitedb_open(f->tmp->path, 0, &f->db, err, sizeof err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sitedb_close(f->db);
    int r = tu_dir_free(f->tmp);
    free(f);
    return r;
}

/* ---- the schedule ---- */

static void test_delay_table(void **state)
{
    static const struct {
        const char *label;
        int64_t first, max;
        long long attempts;
        double u, jitter;
        int64_t want;
    } cases[] = {
        { "first failure",          1000, 60000, 1, 0.0, 0.0, 1000 },
        { "second doubles",         1000, 60000, 2, 0.0, 0.0, 2000 },
        { "third",                  1000, 60000, 3, 0.9, 0.0, 4000 },
        { "sixth below cap",        1000, 60000, 6, 0.0, 0.0, 32000 },
        { "seventh hits cap",       1000, 60000, 7, 0.0, 0.0, 60000 },
        { "exactly the cap",        1000, 64000, 7, 0.0, 0.0, 64000 },
        { "63 doublings",           1000, 60000, 63, 0.0, 0.0, 60000 },
        { "64 doublings",           1000, 60000, 64, 0.0, 0.0, 60000 },
        { "huge attempts",          1000, 60000, LLONG_MAX, 0.0, 0.0, 60000 },
        { "huge first and cap",     INT64_MAX / 2, INT64_MAX, 3, 0.0, 0.0, INT64_MAX },
        { "attempts 0 as 1",        1000, 60000, 0, 0.0, 0.0, 1000 },
        { "negative attempts",      1000, 60000, -5, 0.0, 0.0, 1000 },
        { "cap below first",        5000, 2000, 1, 0.0, 0.0, 2000 },
        { "jitter at u=0.5 is 0",   1000, 60000, 2, 0.5, 0.5, 2000 },
        { "jitter low end",         1000, 60000, 2, 0.0, 0.5, 1000 },
        { "jitter +10%",            1000, 60000, 1, 0.75, 0.2, 1100 },
        { "jitter -10%",            1000, 60000, 1, 0.25, 0.2, 900 },
        { "jitter clamped to 0.5",  1000, 60000, 1, 0.0, 0.9, 500 },
        { "jitter never above cap", 1000, 60000, 10, 0.99, 0.5, 60000 },
        { "jitter below cap",       1000, 60000, 10, 0.0, 0.5, 30000 },
        { "never below 1 ms",       1, 60000, 1, 0.0, 0.5, 1 },
        { "zero first is 1 ms",     0, 60000, 1, 0.0, 0.0, 1 },
        { "negative jitter as 0",   1000, 60000, 1, 0.0, -0.3, 1000 },
    };

    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        struct retry_policy p = { cases[i].first, cases[i].max, 0, cases[i].jitter };
        int64_t got = retry_delay_ms(&p, cases[i].attempts, cases[i].u);
        if (got != cases[i].want)
            fail_msg("%s: got %lld, want %lld", cases[i].label,
                     (long long)got, (long long)cases[i].want);
    }
}

/* With jitter, every delay stays within +-jitter of the nominal one. */
static void test_delay_jitter_bounds(void **state)
{
    struct retry_policy p = { 1000, 3600000, 0, 0.25 };
    for (int a = 1; a <= 20; a++) {
        int64_t nominal = retry_delay_ms(&(struct retry_policy){ 1000, 3600000, 0, 0 }, a, 0);
        for (int k = 0; k < 100; k++) {
            double u = k / 100.0;
            int64_t d = retry_delay_ms(&p, a, u);
            assert_true(d >= nominal * 3 / 4 - 1);
            assert_true(d <= nominal * 5 / 4 + 1);
            assert_true(d <= p.max_ms);
        }
    }
}

/* ---- the history ---- */

static void test_failure_schedule(void **state)
{
    struct fx *f = *state;
    struct retry_state s, g;

    for (long long a = 1; a <= 4; a++) {
        int64_t now = T0 + a * 100000;
        char msg[64];
        snprintf(msg, sizeof msg, "error %lld", a);
        assert_int_equal(retry_failure(f->db, "dp", "PKG1/2/DP1", msg, &exact, now, &s), 0);
        assert_int_equal(s.state, RETRY_RETRYING);
        assert_int_equal(s.attempts, a);
        assert_int_equal(s.next_ms, now + retry_delay_ms(&exact, a, 0));
        assert_int_equal(s.next_ms, now + (1000LL << (a - 1)));
        assert_string_equal(s.last_error, msg);
        assert_int_equal(s.updated_ms, now);

        assert_int_equal(retry_get(f->db, "dp", "PKG1/2/DP1", &g), 0);
        assert_string_equal(g.scope, "dp");
        assert_string_equal(g.target, "PKG1/2/DP1");
        assert_int_equal(g.state, s.state);
        assert_int_equal(g.attempts, s.attempts);
        assert_int_equal(g.next_ms, s.next_ms);
        assert_string_equal(g.last_error, msg);
        assert_int_equal(g.updated_ms, now);
    }
    /* The fifth failure (max_attempts 5) makes it failed, once. */
    assert_int_equal(retry_failure(f->db, "dp", "PKG1/2/DP1", "last", &exact, T0 + 900000, &s), 1);
    assert_int_equal(s.state, RETRY_FAILED);
    assert_int_equal(s.attempts, 5);
    assert_int_equal(retry_get(f->db, "dp", "PKG1/2/DP1", &g), 0);
    assert_int_equal(g.state, RETRY_FAILED);
    assert_string_equal(g.last_error, "last");
    /* Another failure of a failed target stays failed, not reported again. */
    assert_int_equal(retry_failure(f->db, "dp", "PKG1/2/DP1", "again", &exact, T0 + 990000, NULL), 0);
    assert_int_equal(retry_get(f->db, "dp", "PKG1/2/DP1", &g), 0);
    assert_int_equal(g.state, RETRY_FAILED);
    assert_int_equal(g.attempts, 6);
    /* A failed target is never due. */
    int64_t next;
    assert_int_equal(retry_next_due(f->db, "dp", &next), -ENOENT);
}

static void test_max_attempts(void **state)
{
    static const struct { long long max; int fail_at; } cases[] = {
        { 1, 1 }, { 3, 3 }, { 0, 0 /* never */ },
    };
    struct fx *f = *state;

    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        struct retry_policy p = { 10, 100, cases[i].max, 0 };
        char target[32];
        snprintf(target, sizeof target, "T%zu", i);
        for (int a = 1; a <= 10; a++) {
            int r = retry_failure(f->db, "s", target, "x", &p, T0, NULL);
            assert_int_equal(r, a == cases[i].fail_at ? 1 : 0);
        }
    }
}

static void test_success_removes(void **state)
{
    struct fx *f = *state;
    struct retry_state g;

    assert_int_equal(retry_get(f->db, "dp", "A", &g), -ENOENT);
    assert_int_equal(retry_failure(f->db, "dp", "A", "e", &exact, T0, NULL), 0);
    assert_int_equal(retry_failure(f->db, "send", "A", "e", &exact, T0, NULL), 0);
    assert_int_equal(retry_success(f->db, "dp", "A"), 0);
    assert_int_equal(retry_get(f->db, "dp", "A", &g), -ENOENT);
    /* Scopes are separate. */
    assert_int_equal(retry_get(f->db, "send", "A", &g), 0);
    /* Success of a target without history is fine. */
    assert_int_equal(retry_success(f->db, "dp", "never-failed"), 0);
    /* After success, the next failure starts from attempt 1. */
    assert_int_equal(retry_failure(f->db, "dp", "A", "e", &exact, T0, &g), 0);
    assert_int_equal(g.attempts, 1);
}

static void test_bad_keys(void **state)
{
    struct fx *f = *state;
    char longt[300];

    memset(longt, 'x', sizeof longt - 1);
    longt[sizeof longt - 1] = '\0';
    assert_int_equal(retry_failure(f->db, "", "A", "e", &exact, T0, NULL), -EINVAL);
    assert_int_equal(retry_failure(f->db, "dp", "", "e", &exact, T0, NULL), -EINVAL);
    assert_int_equal(retry_failure(f->db, "dp", longt, "e", &exact, T0, NULL), -ENAMETOOLONG);
}

static void test_long_error_truncated(void **state)
{
    struct fx *f = *state;
    struct retry_state s, g;
    char big[2000];

    memset(big, 'e', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(retry_failure(f->db, "dp", "A", big, &exact, T0, &s), 0);
    assert_int_equal(strlen(s.last_error), sizeof s.last_error - 1);
    assert_int_equal(retry_get(f->db, "dp", "A", &g), 0);
    assert_string_equal(g.last_error, s.last_error);
    /* A NULL error is stored as empty. */
    assert_int_equal(retry_failure(f->db, "dp", "B", NULL, &exact, T0, &s), 0);
    assert_string_equal(s.last_error, "");

    /* Text is cut between UTF-8 characters, never inside one: "é" is two
     * bytes, and an odd number of bytes fits. */
    for (size_t i = 0; i + 2 < sizeof big; i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[sizeof big - 2] = '\0';
    assert_int_equal(retry_failure(f->db, "dp", "C", big, &exact, T0, &s), 0);
    size_t n = strlen(s.last_error);
    assert_true(n >= sizeof s.last_error - 2 && n % 2 == 0);
    assert_true(ss_utf8_valid(s.last_error, n));
    assert_int_equal(retry_get(f->db, "dp", "C", &g), 0);
    assert_string_equal(g.last_error, s.last_error);
}

/* Collects targets from retry_list / retry_due. */
struct collect {
    int n;
    char t[16][320];
    int64_t next[16];
    int stop_after;
};

static int collect_cb(void *arg, const struct retry_state *s)
{
    struct collect *c = arg;
    if (c->n < 16) {
        snprintf(c->t[c->n], sizeof c->t[c->n], "%s:%s", s->scope, s->target);
        c->next[c->n] = s->next_ms;
    }
    c->n++;
    if (c->stop_after && c->n >= c->stop_after)
        return 42;
    return 0;
}

/* Fill: failures at distinct times so that next_ms orders them. */
static void fill(sqlite3 *db)
{
    static const struct { const char *scope, *target; int64_t at; } rows[] = {
        { "dp", "PKG10/2/DP", 5 },
        { "dp", "PKG1/2/DP", 3 },
        { "dp", "PKG1/1/DP", 4 },
        { "dp", "PKG1", 6 },
        { "dp", "PKG1%/1/DP", 1 },
        { "dp", "PKG_/1/DP", 2 },
        { "send", "PKG1/2/CHI", 0 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(rows); i++)
        assert_int_equal(retry_failure(db, rows[i].scope, rows[i].target, "e", &exact,
                                       T0 + rows[i].at * 10, NULL), 0);
}

static void list_check(sqlite3 *db, const char *scope, const char *prefix,
                       const char *const *want, int nwant)
{
    struct collect c = { 0 };
    assert_int_equal(retry_list(db, scope, prefix, collect_cb, &c), 0);
    if (c.n != nwant)
        fail_msg("list %s %s: %d rows, want %d", scope ? scope : "(all)",
                 prefix ? prefix : "(all)", c.n, nwant);
    for (int i = 0; i < nwant; i++)
        assert_string_equal(c.t[i], want[i]);
}

static void test_list(void **state)
{
    struct fx *f = *state;
    static const char *const all_dp[] = {
        "dp:PKG1%/1/DP", "dp:PKG_/1/DP", "dp:PKG1/2/DP", "dp:PKG1/1/DP",
        "dp:PKG10/2/DP", "dp:PKG1",
    };
    static const char *const pkg1[] = { "dp:PKG1/2/DP", "dp:PKG1/1/DP", "dp:PKG1" };
    static const char *const pkg1v2[] = { "dp:PKG1/2/DP" };
    static const char *const pkgpct[] = { "dp:PKG1%/1/DP" };
    static const char *const pkgus[] = { "dp:PKG_/1/DP" };
    static const char *const all[] = {
        "send:PKG1/2/CHI", "dp:PKG1%/1/DP", "dp:PKG_/1/DP", "dp:PKG1/2/DP",
        "dp:PKG1/1/DP", "dp:PKG10/2/DP", "dp:PKG1",
    };
    static const char *const any_pkg1[] = {
        "send:PKG1/2/CHI", "dp:PKG1/2/DP", "dp:PKG1/1/DP", "dp:PKG1",
    };

    fill(f->db);
    list_check(f->db, "dp", NULL, all_dp, 6);
    list_check(f->db, "dp", "", all_dp, 6);
    list_check(f->db, "dp", "PKG1", pkg1, 3);       /* not PKG10, PKG1% */
    list_check(f->db, "dp", "PKG1/", pkg1, 3);      /* trailing '/' ignored */
    list_check(f->db, "dp", "PKG1/2", pkg1v2, 1);
    list_check(f->db, "dp", "PKG1/2/DP", pkg1v2, 1);
    list_check(f->db, "dp", "PKG1/2/D", NULL, 0);   /* not at a boundary */
    list_check(f->db, "dp", "PKG", NULL, 0);
    list_check(f->db, "dp", "PKG1%", pkgpct, 1);    /* no LIKE wildcards */
    list_check(f->db, "dp", "PKG_", pkgus, 1);
    list_check(f->db, "nosuch", NULL, NULL, 0);
    list_check(f->db, NULL, NULL, all, 7);
    list_check(f->db, NULL, "PKG1", any_pkg1, 4);

    /* A non-zero callback return stops the listing and is returned. */
    struct collect c = { .stop_after = 2 };
    assert_int_equal(retry_list(f->db, NULL, NULL, collect_cb, &c), 42);
    assert_int_equal(c.n, 2);
}

static void test_due_and_next_due(void **state)
{
    struct fx *f = *state;
    struct collect c = { 0 };
    int64_t next;

    assert_int_equal(retry_next_due(f->db, "dp", &next), -ENOENT);
    fill(f->db);
    /* Every first failure is due 1000 ms after it happened. */
    assert_int_equal(retry_next_due(f->db, "dp", &next), 0);
    assert_int_equal(next, T0 + 10 + 1000);
    assert_int_equal(retry_next_due(f->db, "send", &next), 0);
    assert_int_equal(next, T0 + 1000);

    assert_int_equal(retry_due(f->db, "dp", T0 + 1009, collect_cb, &c), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(retry_due(f->db, "dp", T0 + 1030, collect_cb, &c), 0);
    assert_int_equal(c.n, 3);      /* at 10, 20, 30: due is inclusive */
    assert_string_equal(c.t[0], "dp:PKG1%/1/DP");
    assert_string_equal(c.t[1], "dp:PKG_/1/DP");
    assert_string_equal(c.t[2], "dp:PKG1/2/DP");
    assert_int_equal(c.next[2], T0 + 1030);

    /* A failed row is not due, whatever the time. */
    struct retry_policy one = { 1000, 60000, 1, 0 };
    assert_int_equal(retry_failure(f->db, "dp", "PKG1%/1/DP", "e", &one, T0, NULL), 1);
    memset(&c, 0, sizeof c);
    assert_int_equal(retry_due(f->db, "dp", INT64_MAX, collect_cb, &c), 0);
    assert_int_equal(c.n, 5);
    assert_int_equal(retry_next_due(f->db, "dp", &next), 0);
    assert_int_equal(next, T0 + 20 + 1000);
}

static void test_now(void **state)
{
    struct fx *f = *state;
    struct retry_policy two = { 1000, 60000, 2, 0 };
    struct retry_state g;
    int n = -1;

    fill(f->db);
    /* Make PKG1/1/DP failed. */
    assert_int_equal(retry_failure(f->db, "dp", "PKG1/1/DP", "e", &two, T0, NULL), 1);
    assert_int_equal(retry_get(f->db, "dp", "PKG1/1/DP", &g), 0);
    assert_int_equal(g.state, RETRY_FAILED);

    assert_int_equal(retry_now(f->db, "dp", "PKG1", T0 + 5, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(retry_get(f->db, "dp", "PKG1/1/DP", &g), 0);
    assert_int_equal(g.state, RETRY_RETRYING);
    assert_int_equal(g.attempts, 0);            /* failed: count restarts */
    assert_int_equal(g.next_ms, T0 + 5);
    assert_int_equal(retry_get(f->db, "dp", "PKG1/2/DP", &g), 0);
    assert_int_equal(g.state, RETRY_RETRYING);
    assert_int_equal(g.attempts, 1);            /* retrying: count kept */
    assert_int_equal(g.next_ms, T0 + 5);
    /* Not under the prefix: untouched. */
    assert_int_equal(retry_get(f->db, "dp", "PKG10/2/DP", &g), 0);
    assert_int_equal(g.next_ms, T0 + 50 + 1000);
    assert_int_equal(retry_get(f->db, "send", "PKG1/2/CHI", &g), 0);
    assert_int_equal(g.next_ms, T0 + 1000);

    /* Now they are due, and the restarted one fails again from 1. */
    struct collect c = { 0 };
    assert_int_equal(retry_due(f->db, "dp", T0 + 5, collect_cb, &c), 0);
    assert_int_equal(c.n, 3);
    assert_int_equal(retry_failure(f->db, "dp", "PKG1/1/DP", "e", &two, T0 + 6, &g), 0);
    assert_int_equal(g.attempts, 1);
    assert_int_equal(g.next_ms, T0 + 6 + 1000);

    assert_int_equal(retry_now(f->db, "nosuch", NULL, T0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(retry_now(f->db, NULL, NULL, T0, &n), 0);
    assert_int_equal(n, 7);
}

static void test_clear(void **state)
{
    struct fx *f = *state;
    struct retry_state g;
    int n = -1;

    fill(f->db);
    assert_int_equal(retry_clear(f->db, "dp", "PKG1", &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(retry_get(f->db, "dp", "PKG1/2/DP", &g), -ENOENT);
    assert_int_equal(retry_get(f->db, "dp", "PKG1", &g), -ENOENT);
    assert_int_equal(retry_get(f->db, "dp", "PKG10/2/DP", &g), 0);
    assert_int_equal(retry_get(f->db, "send", "PKG1/2/CHI", &g), 0);
    assert_int_equal(retry_clear(f->db, "dp", "PKG1", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(retry_clear(f->db, "send", NULL, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(retry_clear(f->db, NULL, NULL, NULL), 0);
    struct collect c = { 0 };
    assert_int_equal(retry_list(f->db, NULL, NULL, collect_cb, &c), 0);
    assert_int_equal(c.n, 0);
}

/* Inside a caller's transaction, retry_failure joins it: a rollback
 * undoes the failure together with the caller's other writes. */
static void test_inside_transaction(void **state)
{
    struct fx *f = *state;
    struct retry_state g;

    assert_int_equal(sitedb_begin(f->db), 0);
    assert_int_equal(retry_failure(f->db, "dp", "A", "e", &exact, T0, NULL), 0);
    assert_int_equal(sqlite3_get_autocommit(f->db), 0);     /* still ours */
    assert_int_equal(sitedb_rollback(f->db), 0);
    assert_int_equal(retry_get(f->db, "dp", "A", &g), -ENOENT);

    assert_int_equal(sitedb_begin(f->db), 0);
    assert_int_equal(retry_failure(f->db, "dp", "A", "e", &exact, T0, NULL), 0);
    assert_int_equal(sitedb_commit(f->db), 0);
    assert_int_equal(retry_get(f->db, "dp", "A", &g), 0);
    /* Outside a transaction it commits by itself. */
    assert_int_equal(retry_failure(f->db, "dp", "A", "e", &exact, T0, NULL), 0);
    assert_int_equal(sqlite3_get_autocommit(f->db), 1);
}

/* A daemon that stops interrupts its connection (sitedb_interrupt): a
 * failure being recorded while another connection holds the write lock
 * gives up with -EINTR, not -EIO, and records nothing. */
static void test_interrupted(void **state)
{
    struct fx *f = *state;
    struct retry_state g;
    sqlite3 *other;
    char err[SS_ERR_MAX];

    assert_int_equal(sitedb_open(f->tmp->path, 0, &other, err, sizeof err), 0);
    assert_int_equal(sitedb_begin(other), 0);
    sitedb_interrupt(f->db);
    assert_int_equal(retry_failure(f->db, "dp", "A", "e", &exact, T0, NULL), -EINTR);
    assert_int_equal(sqlite3_get_autocommit(f->db), 1);
    assert_int_equal(sitedb_rollback(other), 0);
    sitedb_close(other);
    assert_int_equal(retry_get(f->db, "dp", "A", &g), -ENOENT);
}

/* SPEC 4.1: the schedule survives a restart (close and reopen). */
static void test_durable(void **state)
{
    struct fx *f = *state;
    struct retry_policy two = { 1000, 60000, 2, 0 };
    struct retry_state s1, s2, g;
    char err[SS_ERR_MAX];

    assert_int_equal(retry_failure(f->db, "dp", "PKG1/2/DP1", "copy failed: ENOSPC",
                                   &exact, T0, &s1), 0);
    assert_int_equal(retry_failure(f->db, "dp", "PKG1/2/DP2", "x", &two, T0, NULL), 0);
    assert_int_equal(retry_failure(f->db, "dp", "PKG1/2/DP2", "y", &two, T0 + 1, &s2), 1);
    sitedb_close(f->db);
    f->db = NULL;

    assert_int_equal(sitedb_open(f->tmp->path, 0, &f->db, err, sizeof err), 0);
    assert_int_equal(retry_get(f->db, "dp", "PKG1/2/DP1", &g), 0);
    assert_int_equal(g.state, RETRY_RETRYING);
    assert_int_equal(g.attempts, 1);
    assert_int_equal(g.next_ms, s1.next_ms);
    assert_string_equal(g.last_error, "copy failed: ENOSPC");
    assert_int_equal(retry_get(f->db, "dp", "PKG1/2/DP2", &g), 0);
    assert_int_equal(g.state, RETRY_FAILED);
    assert_int_equal(g.attempts, 2);
    assert_string_equal(g.last_error, "y");
    /* The count continues from the stored row, not from zero. */
    assert_int_equal(retry_failure(f->db, "dp", "PKG1/2/DP1", "z", &exact, T0 + 2000, &g), 0);
    assert_int_equal(g.attempts, 2);
    assert_int_equal(g.next_ms, T0 + 2000 + 2000);
}

/* With jitter on, the random source is used and delays stay in bounds. */
static void test_failure_with_jitter(void **state)
{
    struct fx *f = *state;
    struct retry_policy p = { 10000, 600000, 0, 0.5 };
    struct retry_state s;
    int differ = 0;
    int64_t first = -1;

    for (int i = 0; i < 20; i++) {
        char t[16];
        snprintf(t, sizeof t, "T%d", i);
        assert_int_equal(retry_failure(f->db, "dp", t, "e", &p, T0, &s), 0);
        assert_true(s.next_ms >= T0 + 5000);
        assert_true(s.next_ms <= T0 + 15000);
        if (first < 0)
            first = s.next_ms;
        else if (s.next_ms != first)
            differ = 1;
    }
    /* 20 draws of a 10 s window landing on one millisecond: ~1e-76. */
    assert_true(differ);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_table),
        cmocka_unit_test(test_delay_jitter_bounds),
        T(test_failure_schedule),
        T(test_max_attempts),
        T(test_success_removes),
        T(test_bad_keys),
        T(test_long_error_truncated),
        T(test_list),
        T(test_due_and_next_due),
        T(test_now),
        T(test_clear),
        T(test_inside_transaction),
        T(test_interrupted),
        T(test_durable),
        T(test_failure_with_jitter),
    };
    setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
