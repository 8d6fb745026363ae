/*
 * NAME
 *   sendwait - wait, closely, until jobs are sent by one site and
 *   installed by another
 *
 * SYNOPSIS
 *   sendwait --since EPOCH_S --box SCHEDULE_BOX --db DB --want N
 *            [--timeout S] [--interval-ms MS]
 *
 * DESCRIPTION
 *   The sender benchmark (bench/sender.sh) times N jobs from `sitectl
 *   start sender` at the sending site until the receiving site's
 *   despooler has installed them all.  A shell loop that runs sqlite3
 *   and find every 10 ms would take a core's worth of time from the
 *   daemons on a 2-core machine, so this polls, every MS (10) ms, with one
 *   read-only database connection and one prepared statement, and reads
 *   the directories itself.  It records two moments, in seconds since
 *   EPOCH_S (a CLOCK_REALTIME time, the shell's $EPOCHREALTIME taken just
 *   before `sitectl start sender`):
 *
 *   sent       the sending side is done: no job (*.job) is left in
 *              SCHEDULE_BOX or its work/, and no send request (*.srq) in
 *              its requests/.  The jobs are listed before the requests:
 *              the scheduler writes a job's request before it removes the
 *              job, so a job cannot slip between the two listings.
 *   installed  the receiving database DB (the other site's db/site.db)
 *              holds N or more packages at version 1 or more.  With
 *              --want 0 this moment is not waited for (the sender alone,
 *              the despooler stopped): it is printed as "nan".
 *
 *   The database is in WAL mode: the reader never blocks the despooler.
 *
 * DIAGNOSTICS
 *   Prints "sent_s=S installed_s=S polls=P" on stdout once both moments
 *   are seen.  Exits 0 then; 1 when the timeout (default 600 s) passes
 *   first (what it saw last on stderr) or on a database or directory
 *   error; 2 on a usage error.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "common.h"
#include "util.h"

static const char *const QUERY = "SELECT count(*) FROM package WHERE version >= 1";

static double real_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Entries of dir whose name ends in sfx; -1 when it cannot be read. */
static long count_suffix(const char *dir, const char *sfx)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t sl = strlen(sfx);
    long n = 0;

    if (!d)
        return errno == ENOENT ? 0 : -1;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > sl && strcmp(e->d_name + l - sl, sfx) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void usage(void)
{
    fprintf(stderr, "usage: sendwait --since EPOCH_S --box SCHEDULE_BOX --db DB --want N "
            "[--timeout S] [--interval-ms MS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *box = NULL, *dbpath = NULL;
    char work[SS_PATH_MAX], reqs[SS_PATH_MAX];
    double since = 0, sent = -1, installed = -1, deadline;
    long long want = 0, timeout_s = 600, interval_ms = 10, have = 0, polls = 0;
    long jobs = 0, wjobs = 0, srqs = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(a, "--since"))
            since = strtod(v, NULL);
        else if (!strcmp(a, "--box"))
            box = v;
        else if (!strcmp(a, "--db"))
            dbpath = v;
        else if (!strcmp(a, "--want"))
            want = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--timeout"))
            timeout_s = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--interval-ms"))
            interval_ms = strtoll(v, NULL, 10);
        else
            usage();
    }
    if (since <= 0 || !box || !dbpath || want < 0 || timeout_s < 1 || interval_ms < 1)
        usage();
    if (ss_path(work, sizeof work, "%s/work", box) < 0 ||
        ss_path(reqs, sizeof reqs, "%s/requests", box) < 0) {
        fprintf(stderr, "sendwait: %s: path too long\n", box);
        return 2;
    }
    deadline = since + (double)timeout_s;

    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "sendwait: %s: %s\n", dbpath, db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, QUERY, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "sendwait: %s: %s\n", dbpath, sqlite3_errmsg(db));
        goto out;
    }
    for (;;) {
        double t;

        polls++;
        if (sent < 0) {
            /* Jobs first, then requests: see DESCRIPTION. */
            jobs = count_suffix(box, ".job");
            wjobs = count_suffix(work, ".job");
            srqs = count_suffix(reqs, ".srq");
            if (jobs < 0 || wjobs < 0 || srqs < 0) {
                fprintf(stderr, "sendwait: cannot read %s: %s\n", box, strerror(errno));
                goto out;
            }
            if (jobs + wjobs + srqs == 0)
                sent = real_s() - since;
        }
        if (installed < 0 && want > 0) {
            int r = sqlite3_step(st);
            if (r == SQLITE_ROW) {
                have = sqlite3_column_int64(st, 0);
                if (have >= want)
                    installed = real_s() - since;
            } else if (r != SQLITE_BUSY && r != SQLITE_LOCKED) {
                fprintf(stderr, "sendwait: %s: %s\n", dbpath, sqlite3_errmsg(db));
                goto out;
            }
            sqlite3_reset(st);
        }
        if (sent >= 0 && want == 0) {
            printf("sent_s=%.3f installed_s=nan polls=%lld\n", sent, polls);
            rc = 0;
            goto out;
        }
        if (sent >= 0 && installed >= 0) {
            printf("sent_s=%.3f installed_s=%.3f polls=%lld\n", sent, installed, polls);
            rc = 0;
            goto out;
        }
        t = real_s();
        if (t >= deadline) {
            fprintf(stderr, "sendwait: not done after %lld s: %ld jobs, %ld claimed jobs and "
                    "%ld send requests left; %lld of %lld packages installed\n",
                    timeout_s, jobs, wjobs, srqs, have, want);
            goto out;
        }
        struct timespec ts = { 0, (long)interval_ms * 1000 * 1000 };
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec = ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
        }
        nanosleep(&ts, NULL);
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
