/*
 * retry.c - durable retry history per (scope, target) (SPEC 4.1).
 *
 * SYNOPSIS
 *   retry_delay_ms(policy, attempts, u)
 *   retry_failure(db, scope, target, error, policy, now_ms, &state)
 *   retry_success(db, scope, target)
 *   retry_get(db, scope, target, &state)
 *   retry_list(db, scope, prefix, cb, arg)
 *   retry_due(db, scope, now_ms, cb, arg)
 *   retry_next_due(db, scope, &next_ms)
 *   retry_now(db, scope, prefix, now_ms, &n)
 *   retry_clear(db, scope, prefix, &n)
 *
 * DESCRIPTION
 *   SMS 2.0 retried a whole package at least hourly from a counter that a
 *   restart forgot, and every retry sent everything again.  Here each
 *   target (a package version on one DP, a transfer to one site) has its
 *   own row in the retry table of the site database: state, attempts, the
 *   time of the next attempt and the last error.  Daemons read the
 *   schedule from the rows, so it survives restarts, and operators see
 *   exactly what sitectl shows them.
 *
 *   The delay after n failures is first * 2^(n-1), capped at max, then
 *   spread by +-jitter so that targets that failed together (one dead
 *   network) do not all come back in the same second.  After
 *   max_attempts failures the target is "failed": it is not retried again
 *   until retry_now() (sitectl retry now) or its owner restarts it.
 *
 *   retry_failure() reads and rewrites a row; it does so inside the
 *   caller's transaction when one is open (so that the caller's other
 *   writes commit with it), else inside its own BEGIN IMMEDIATE, so that
 *   two processes recording failures of one target never lose a count.
 *
 *   A prefix selects a target and everything below it at a '/' boundary:
 *   "PKG1" selects "PKG1" and "PKG1/2/DP" but not "PKG10/2/DP".  This is
 *   done with length and substr comparisons rather than LIKE, because
 *   targets may contain '%' and '_'.  Trailing '/' in a prefix are
 *   ignored; an empty or NULL prefix selects everything, and so does a
 *   NULL scope.
 *
 * DIAGNOSTICS
 *   Database errors are logged (log_error, with SQLite's text) and
 *   returned as -EIO; a connection interrupted by sitedb_interrupt (the
 *   daemon is stopping) gives -EINTR instead.  An empty scope or target is -EINVAL; one longer
 *   than struct retry_state can hold is -ENAMETOOLONG.  retry_get returns
 *   -ENOENT for a target without history, retry_next_due when nothing is
 *   retrying.  If the random source fails, the jitter is skipped with a
 *   warning: a retry without jitter is better than no retry.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "retry.h"
#include "sitedb.h"
#include "uniqname.h"
#include "util.h"

#define RETRY_WHERE \
    " WHERE (?1 IS NULL OR scope = ?1)" \
    " AND (?2 IS NULL OR target = ?2 OR substr(target, 1, length(?2) + 1) = ?2 || '/')"

#define RETRY_COLS "scope, target, state, attempts, next_ms, last_error, updated_ms"

int64_t retry_delay_ms(const struct retry_policy *p, long long attempts, double u)
{
    int64_t first = p->first_ms > 0 ? p->first_ms : 1;
    int64_t max = p->max_ms > 0 ? p->max_ms : 1;
    long long shift = attempts > 1 ? attempts - 1 : 0;
    double j = p->jitter, x;
    int64_t d;

    /* first << shift, without ever shifting into the sign bit. */
    if (shift >= 62 || first > (INT64_MAX >> shift))
        d = max;
    else
        d = first << shift;
    if (d > max)
        d = max;

    /* The comparisons are written so that a NaN falls to the safe side. */
    if (!(j > 0))
        j = 0;
    if (j > 0.5)
        j = 0.5;
    if (!(u >= 0))
        u = 0;
    if (u > 1)
        u = 1;
    x = (double)d * (1.0 + j * (2.0 * u - 1.0));
    if (x >= (double)max)
        return max;
    if (x < 1)
        return 1;
    return (int64_t)(x + 0.5);    /* x is in [1, max): no overflow */
}

/* A uniform number in [0,1) from the kernel's random source: the top 53
 * bits of a random 64-bit word, which a double holds exactly. */
static double jitter_u(void)
{
    uint64_t x;
    if (uniq_random(&x, sizeof x) < 0) {
        log_warn("retry: no random source; retrying without jitter");
        return 0.5;
    }
    return (double)(x >> 11) * 0x1.0p-53;
}

static int check_key(const char *scope, const char *target)
{
    if (scope == NULL || target == NULL || scope[0] == '\0' || target[0] == '\0')
        return -EINVAL;
    if (strlen(scope) >= sizeof(((struct retry_state *)0)->scope) ||
        strlen(target) >= sizeof(((struct retry_state *)0)->target))
        return -ENAMETOOLONG;
    return 0;
}

/* A failed step: -EINTR when the daemon interrupted the connection to
 * stop (not an error to log as one), else -EIO. */
static int dberr(sqlite3 *db, const char *what)
{
    int r = sitedb_errno(db, sqlite3_errcode(db));

    if (r == -EINTR) {
        log_info("retry: %s: interrupted", what);
        return r;
    }
    log_error("retry: %s: %s", what, sqlite3_errmsg(db));
    return -EIO;
}

/* Bind ?1 scope and ?2 prefix as RETRY_WHERE expects them. */
static int bind_filter(sqlite3_stmt *st, const char *scope, const char *prefix)
{
    int rc = SQLITE_OK;
    size_t plen = prefix ? strlen(prefix) : 0;

    while (plen > 0 && prefix[plen - 1] == '/')
        plen--;
    if (scope != NULL)
        rc = sqlite3_bind_text(st, 1, scope, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK && plen > 0)
        rc = sqlite3_bind_text(st, 2, prefix, (int)plen, SQLITE_TRANSIENT);
    return rc;
}

static void row_to_state(sqlite3_stmt *st, struct retry_state *s)
{
    const char *state = (const char *)sqlite3_column_text(st, 2);

    /* Cut to fit, between UTF-8 characters: -ENOSPC is not an error here
     * (an overlong error text is shortened on purpose). */
    memset(s, 0, sizeof *s);
    ss_strcpy_utf8(s->scope, sizeof s->scope, (const char *)sqlite3_column_text(st, 0));
    ss_strcpy_utf8(s->target, sizeof s->target, (const char *)sqlite3_column_text(st, 1));
    s->state = (state && strcmp(state, "failed") == 0) ? RETRY_FAILED : RETRY_RETRYING;
    s->attempts = sqlite3_column_int64(st, 3);
    s->next_ms = sqlite3_column_int64(st, 4);
    ss_strcpy_utf8(s->last_error, sizeof s->last_error,
                   (const char *)sqlite3_column_text(st, 5));
    s->updated_ms = sqlite3_column_int64(st, 6);
}

/*
 * The read-modify-write of one failure; the caller holds a transaction.
 * A failure of a target that is already failed counts the attempt and
 * keeps it failed, but does not report the transition again, so that the
 * "failed after N attempts" status message is sent once.
 */
static int record_failure(sqlite3 *db, const char *scope, const char *target,
                          const char *error, const struct retry_policy *p,
                          int64_t now_ms, double u, struct retry_state *out)
{
    sqlite3_stmt *st = NULL;
    long long attempts = 0;
    int was_failed = 0, failed, rc;
    int64_t next;
    char ebuf[sizeof(((struct retry_state *)0)->last_error)];
    struct retry_state cur;

    rc = retry_get(db, scope, target, &cur);
    if (rc == 0) {
        was_failed = cur.state == RETRY_FAILED;
        attempts = cur.attempts;
    } else if (rc != -ENOENT) {
        return rc;
    }

    if (attempts < 0)
        attempts = 0;
    if (attempts < LLONG_MAX)
        attempts++;
    failed = was_failed || (p->max_attempts > 0 && attempts >= p->max_attempts);
    if (failed) {
        next = now_ms;    /* no next attempt; keep the time it failed */
    } else {
        int64_t d = retry_delay_ms(p, attempts, u);
        next = now_ms > INT64_MAX - d ? INT64_MAX : now_ms + d;
    }
    ss_strcpy_utf8(ebuf, sizeof ebuf, error);

    if (sitedb_prepare(db, "INSERT OR REPLACE INTO retry (" RETRY_COLS ")"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", &st) < 0)
        return -EIO;
    sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, target, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, failed ? "failed" : "retrying", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, attempts);
    sqlite3_bind_int64(st, 5, next);
    sqlite3_bind_text(st, 6, ebuf, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, now_ms);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return dberr(db, "writing retry history");

    if (out != NULL) {
        memset(out, 0, sizeof *out);
        ss_strcpy_utf8(out->scope, sizeof out->scope, scope);
        ss_strcpy_utf8(out->target, sizeof out->target, target);
        out->state = failed ? RETRY_FAILED : RETRY_RETRYING;
        out->attempts = attempts;
        out->next_ms = next;
        memcpy(out->last_error, ebuf, sizeof ebuf);
        out->updated_ms = now_ms;
    }
    return failed && !was_failed;
}

int retry_failure(sqlite3 *db, const char *scope, const char *target,
                  const char *error, const struct retry_policy *p,
                  int64_t now_ms, struct retry_state *out)
{
    int r = check_key(scope, target);
    int own;
    double u = 0.5;

    if (r < 0)
        return r;
    /* Draw the random number before taking the write lock. */
    if (p->jitter > 0)
        u = jitter_u();
    /* Join the caller's transaction if there is one: a nested BEGIN would
     * fail, and the caller wants its writes and ours to commit together. */
    own = sqlite3_get_autocommit(db);
    if (own && (r = sitedb_begin(db)) < 0)
        return r;
    r = record_failure(db, scope, target, error, p, now_ms, u, out);
    if (own) {
        int c = r >= 0 ? sitedb_commit(db) : 0;
        if (c < 0)
            r = c;
        if (r < 0)
            sitedb_rollback(db);
    }
    return r;
}

int retry_success(sqlite3 *db, const char *scope, const char *target)
{
    sqlite3_stmt *st;
    int rc, r = check_key(scope, target);

    if (r < 0)
        return r;
    if (sitedb_prepare(db, "DELETE FROM retry WHERE scope = ?1 AND target = ?2", &st) < 0)
        return -EIO;
    sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, target, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : dberr(db, "removing retry history");
}

int retry_get(sqlite3 *db, const char *scope, const char *target, struct retry_state *out)
{
    sqlite3_stmt *st;
    int rc, r = check_key(scope, target);

    if (r < 0)
        return r;
    if (sitedb_prepare(db, "SELECT " RETRY_COLS " FROM retry"
                           " WHERE scope = ?1 AND target = ?2", &st) < 0)
        return -EIO;
    sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, target, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        row_to_state(st, out);
        r = 0;
    } else if (rc == SQLITE_DONE) {
        r = -ENOENT;
    } else {
        r = dberr(db, "reading retry history");
    }
    sqlite3_finalize(st);
    return r;
}

/* Step a prepared SELECT of RETRY_COLS, calling cb per row.  Finalizes st. */
static int run_cb(sqlite3 *db, sqlite3_stmt *st, retry_cb cb, void *arg)
{
    struct retry_state s;
    int rc, r = 0;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        row_to_state(st, &s);
        r = cb(arg, &s);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = dberr(db, "listing retry history");
    sqlite3_finalize(st);
    return r;
}

int retry_list(sqlite3 *db, const char *scope, const char *prefix, retry_cb cb, void *arg)
{
    sqlite3_stmt *st;

    if (sitedb_prepare(db, "SELECT " RETRY_COLS " FROM retry" RETRY_WHERE
                           " ORDER BY next_ms, target, scope", &st) < 0)
        return -EIO;
    if (bind_filter(st, scope, prefix) != SQLITE_OK) {
        sqlite3_finalize(st);
        return dberr(db, "listing retry history");
    }
    return run_cb(db, st, cb, arg);
}

int retry_due(sqlite3 *db, const char *scope, int64_t now_ms, retry_cb cb, void *arg)
{
    sqlite3_stmt *st;

    if (sitedb_prepare(db, "SELECT " RETRY_COLS " FROM retry"
                           " WHERE (?1 IS NULL OR scope = ?1) AND state = 'retrying'"
                           " AND next_ms <= ?2 ORDER BY next_ms, target, scope", &st) < 0)
        return -EIO;
    if (scope != NULL)
        sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    return run_cb(db, st, cb, arg);
}

int retry_next_due(sqlite3 *db, const char *scope, int64_t *next_ms)
{
    sqlite3_stmt *st;
    int rc, r;

    if (sitedb_prepare(db, "SELECT min(next_ms) FROM retry"
                           " WHERE (?1 IS NULL OR scope = ?1) AND state = 'retrying'", &st) < 0)
        return -EIO;
    if (scope != NULL)
        sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        *next_ms = sqlite3_column_int64(st, 0);
        r = 0;
    } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        r = -ENOENT;
    } else {
        r = dberr(db, "reading the next retry");
    }
    sqlite3_finalize(st);
    return r;
}

/* Run an UPDATE or DELETE filtered by RETRY_WHERE; *n = rows changed. */
static int run_filtered(sqlite3 *db, const char *sql, const char *scope,
                        const char *prefix, int64_t now_ms, int *n, const char *what)
{
    sqlite3_stmt *st;
    int rc;

    if (n != NULL)
        *n = 0;
    if (sitedb_prepare(db, sql, &st) < 0)
        return -EIO;
    rc = bind_filter(st, scope, prefix);
    if (rc == SQLITE_OK && sqlite3_bind_parameter_count(st) >= 3)
        rc = sqlite3_bind_int64(st, 3, now_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return dberr(db, what);
    if (n != NULL)
        *n = sqlite3_changes(db);
    return 0;
}

int retry_now(sqlite3 *db, const char *scope, const char *prefix, int64_t now_ms, int *n)
{
    /* One statement, so it is atomic without a transaction of its own. */
    return run_filtered(db, "UPDATE retry SET next_ms = ?3, updated_ms = ?3,"
                            " attempts = CASE WHEN state = 'failed' THEN 0 ELSE attempts END,"
                            " state = 'retrying'" RETRY_WHERE,
                        scope, prefix, now_ms, n, "restarting retries");
}

int retry_clear(sqlite3 *db, const char *scope, const char *prefix, int *n)
{
    return run_filtered(db, "DELETE FROM retry" RETRY_WHERE,
                        scope, prefix, 0, n, "clearing retry history");
}
