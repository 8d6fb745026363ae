/*
 * NAME
 *   dpwait - wait, closely, until a package version is installed on a DP
 *
 * SYNOPSIS
 *   dpwait DB PKGID DP VERSION [TIMEOUT_S]
 *
 * DESCRIPTION
 *   The distmgr benchmark (bench/distmgr.sh) times a package from
 *   `sitectl package add` or `update` until it is installed.  `sitectl
 *   package wait` polls every 200 ms, which is fine for people but is
 *   most of the figure for a 1% update that takes a few hundred ms.  This
 *   polls the site database DB every 5 ms, through one read-only
 *   connection and one prepared statement (a process per poll would take
 *   a core's worth of time from the daemon on a 2-core machine), until
 *   the package's version is at least VERSION and the DP's dp_state row
 *   says installed at that version or newer.
 *
 *   The database is in WAL mode, so the reader never blocks distmgr's
 *   writes.
 *
 * DIAGNOSTICS
 *   Prints "waited_s=S" on stdout.  Exits 0 once installed; 1 when the
 *   DP goes to retrying or failed for that version (its last error on
 *   stderr), when the timeout (default 600 s) passes, or on a database
 *   error; 2 on a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "common.h"
#include "util.h"

static const char *const QUERY =
    "SELECT p.version, d.state, d.version, d.last_error FROM package p"
    " LEFT JOIN dp_state d ON d.package = p.id AND d.dp = ?2 WHERE p.id = ?1";

int main(int argc, char **argv)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long want, timeout_ms = 600000;
    int64_t t0 = ss_mono_ms();
    int rc = 1;

    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: dpwait DB PKGID DP VERSION [TIMEOUT_S]\n");
        return 2;
    }
    want = strtoll(argv[4], NULL, 10);
    if (argc == 6)
        timeout_ms = strtoll(argv[5], NULL, 10) * 1000;
    if (want < 1 || timeout_ms <= 0) {
        fprintf(stderr, "dpwait: bad version or timeout\n");
        return 2;
    }
    if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "dpwait: %s: %s\n", argv[1], db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, QUERY, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, argv[2], -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, argv[3], -1, SQLITE_STATIC) != SQLITE_OK) {
        fprintf(stderr, "dpwait: %s: %s\n", argv[1], sqlite3_errmsg(db));
        goto out;
    }
    for (;;) {
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            long long pv = sqlite3_column_int64(st, 0);
            const char *state = (const char *)sqlite3_column_text(st, 1);
            long long dv = sqlite3_column_int64(st, 2);
            if (pv >= want && state && strcmp(state, "installed") == 0 && dv >= want) {
                printf("waited_s=%.3f\n", (double)(ss_mono_ms() - t0) / 1000.0);
                rc = 0;
                goto out;
            }
            /* A DP that failed now is retried in minutes: the run is over. */
            if (pv >= want && state &&
                (strcmp(state, "retrying") == 0 || strcmp(state, "failed") == 0)) {
                fprintf(stderr, "dpwait: %s on %s is %s: %s\n", argv[2], argv[3], state,
                        (const char *)sqlite3_column_text(st, 3));
                goto out;
            }
        } else if (r != SQLITE_DONE && r != SQLITE_BUSY) {
            fprintf(stderr, "dpwait: %s: %s\n", argv[1], sqlite3_errmsg(db));
            goto out;
        }
        sqlite3_reset(st);
        if (ss_mono_ms() - t0 >= timeout_ms) {
            fprintf(stderr, "dpwait: %s not installed at version %lld on %s after %lld s\n",
                    argv[2], want, argv[3], timeout_ms / 1000);
            goto out;
        }
        struct timespec ts = { 0, 5 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
