/*
 * retry.h - durable retry history (SPEC 4.1).
 *
 * One row per (scope, target) in the site database: state, attempts, the
 * next attempt time, the last error.  The schedule is read from the row,
 * never from a counter in memory, so it survives restarts.  The delay
 * grows from a first delay, doubling, to a cap, with jitter so that many
 * targets that failed together do not retry together; after max_attempts
 * the target is failed until retry_now() or a new version restarts it.
 *
 * scope names the user ("dp", "send", ...); target is a path-like key
 * such as "CEN00001/3/DP1", and the list/now/clear calls take a prefix of
 * it at a '/' boundary ("CEN00001" matches every version and DP).
 */
#ifndef SITESRV_RETRY_H
#define SITESRV_RETRY_H

#include <sqlite3.h>
#include "common.h"

struct retry_policy {
    int64_t first_ms;         /* first delay */
    int64_t max_ms;           /* cap */
    long long max_attempts;   /* failed after this many failures; 0 = never */
    double  jitter;           /* +- fraction of the delay, 0..0.5 */
};

enum retry_stateval { RETRY_RETRYING = 0, RETRY_FAILED = 1 };

struct retry_state {
    char    scope[32];
    char    target[256];
    enum retry_stateval state;
    long long attempts;
    int64_t next_ms;          /* UTC ms; meaningful while retrying */
    char    last_error[512];
    int64_t updated_ms;
};

/* Delay before the next attempt after `attempts` failures (attempts >= 1),
 * u a uniform random number in [0,1) for the jitter.  Pure. */
int64_t retry_delay_ms(const struct retry_policy *p, long long attempts, double u);

/* Record a failure at now: attempts+1, next attempt, last error; state
 * failed once attempts reaches max_attempts.  out may be NULL.  Returns 1
 * if this failure made the target failed, 0 if it will be retried. */
int retry_failure(sqlite3 *db, const char *scope, const char *target,
                  const char *error, const struct retry_policy *p,
                  int64_t now_ms, struct retry_state *out);
/* The target succeeded: its row is removed. */
int retry_success(sqlite3 *db, const char *scope, const char *target);
/* -ENOENT when the target has no history. */
int retry_get(sqlite3 *db, const char *scope, const char *target, struct retry_state *out);

typedef int (*retry_cb)(void *arg, const struct retry_state *s);
/* Every row of scope (NULL: all scopes) under prefix (NULL: all), by next
 * attempt.  A non-zero return from cb stops and is returned. */
int retry_list(sqlite3 *db, const char *scope, const char *prefix, retry_cb cb, void *arg);
/* Rows in state retrying whose next attempt is due at now. */
int retry_due(sqlite3 *db, const char *scope, int64_t now_ms, retry_cb cb, void *arg);
/* Earliest next attempt among retrying rows of scope; -ENOENT if none. */
int retry_next_due(sqlite3 *db, const char *scope, int64_t *next_ms);
/* Make matching rows due now; failed ones go back to retrying with their
 * attempt count reset.  *n counts the rows changed. */
int retry_now(sqlite3 *db, const char *scope, const char *prefix, int64_t now_ms, int *n);
/* Remove matching rows: no more retries (the old "delete the Retry
 * History key").  *n counts them. */
int retry_clear(sqlite3 *db, const char *scope, const char *prefix, int *n);

#endif
