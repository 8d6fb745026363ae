/*
 * NAME
 *   package.c - sitectl package and retry: define packages, follow their
 *   distribution to the DPs, and steer the per-DP retries.
 *
 * SYNOPSIS
 *   cmd_package(), cmd_retry()
 *
 * DESCRIPTION
 *   package add writes the package row itself, in one BEGIN IMMEDIATE
 *   transaction that also allocates the ID (counter 'package': site code
 *   and five upper-case hex digits) and records the target DPs, then
 *   drops a request (action=update) for distmgr and prints the ID alone on
 *   stdout, so that a script can capture it even while distmgr is
 *   stopped.  update and delete check the package and drop their request;
 *   delete first marks the package 'deleting' so that every listing says
 *   so at once.  distmgr does the rest: versions, manifests, the store,
 *   the DPs and the child sites (design note, "who writes what").
 *
 *   show and list read what distmgr records: a target DP without a
 *   dp_state row is pending; attempts, next retry and last error come
 *   from the retry row (scope "dp", target "ID/VERSION/DP", VERSION being
 *   the version the DP is being brought to).  A child site is pending,
 *   sending (a send request or job for the package's version waits in
 *   schedule.box), sent (our sender's message 8200 says it delivered the
 *   version) or installed (the child's despooler said so, message 8300,
 *   replicated up to this site's status messages); installed reports the
 *   version the child installed.
 *
 *   wait polls the database every 200 ms until every target DP is
 *   installed at the package's version or failed.  It also looks for
 *   requests about the package still in distmgr.box (or claimed in its
 *   work/): while one is there, distmgr has not yet made the version it
 *   asks for, and DPs installed at the previous version are not done.
 *   Nor are they while the source is being retried (scope "source"); a
 *   source that failed for good ends the wait with exit 1.  On
 *   a terminal it redraws one line per DP; otherwise it prints each change
 *   once, so that a log of it stays short.  It waits for the DPs of this
 *   site only: a child site is done when its own DPs are, which only the
 *   child knows; package show tells what the child reported.
 *
 *   retry now makes the DP retries of a package (or of one DP, or of
 *   everything) due at once, failed ones starting afresh, and puts failed
 *   DPs back to pending; without a DP it does the same for the retry of
 *   the package's source (scope "source", which distmgr keeps for a
 *   source it could not read); retry clear drops the retry history and
 *   leaves the DPs failed "by the administrator" until the next version
 *   or retry now.  Both change the database in one transaction, then
 *   drop a request action=retry so that distmgr looks again.
 *
 * DIAGNOSTICS
 *   "sitectl: ..." on stderr.  Exit 0 success; 1 failure (a root that is
 *   no site, a source that is not an absolute path to a directory, an
 *   unknown package or DP, a database error, a request that could not be
 *   dropped, a wait that ended with a failed DP or its timeout); 2 usage
 *   (a missing --name or --source, a malformed ID, DP name or timeout).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "pkgreq.h"
#include "retry.h"
#include "sitedb.h"
#include "sitectl.h"
#include "statmsg.h"

#define WAIT_POLL_MS 200

struct pkg {
    char      id[16];
    char      name[256];
    char      source[SS_PATH_MAX];
    char      origin[8];
    char      state[16];
    char      last_error[512];
    long long version;
    int       all_dps;
    int64_t   created_ms, updated_ms;
    char      priority[8];
};

struct dpst {
    char      name[64];
    char      path[SS_PATH_MAX];
    char      state[16];         /* dp_state.state, "pending" without a row */
    long long version;           /* installed on the DP, 0 none */
    long long target;            /* the version being brought to it */
    long long attempts;          /* from the retry row, 0 without one */
    int64_t   next_ms;           /* 0 without a retrying row */
    int       retry_failed;      /* the retry row is failed */
    char      last_error[512];
};

static void copy_text(char *dst, size_t len, sqlite3_stmt *st, int i)
{
    /* Cut between UTF-8 characters when a column is longer than the
     * field: -ENOSPC is not an error for a display. */
    (void)ss_strcpy_utf8(dst, len, ctl_col_text(st, i));
}

/* 0, -ENOENT when there is no such package, -EIO. */
static int load_pkg(sqlite3 *db, const char *id, struct pkg *p)
{
    sqlite3_stmt *st = NULL;
    memset(p, 0, sizeof *p);
    if (sqlite3_prepare_v2(db, "SELECT id, name, source, origin, version, all_dps, state, "
                           "last_error, created_ms, updated_ms, priority FROM package WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), r = 0;
    if (rc == SQLITE_ROW) {
        copy_text(p->id, sizeof p->id, st, 0);
        copy_text(p->name, sizeof p->name, st, 1);
        copy_text(p->source, sizeof p->source, st, 2);
        copy_text(p->origin, sizeof p->origin, st, 3);
        p->version = sqlite3_column_int64(st, 4);
        p->all_dps = sqlite3_column_int(st, 5);
        copy_text(p->state, sizeof p->state, st, 6);
        copy_text(p->last_error, sizeof p->last_error, st, 7);
        p->created_ms = sqlite3_column_int64(st, 8);
        p->updated_ms = sqlite3_column_int64(st, 9);
        copy_text(p->priority, sizeof p->priority, st, 10);
    } else {
        r = rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(st);
    return r;
}

/* The DPs of a package: its targets (every DP, or its package_dp rows)
 * and any DP that still has a state row for it (one being emptied).
 * *out is malloc'ed.  0 or -EIO/-ENOMEM. */
static int load_dps(sqlite3 *db, const struct pkg *p, struct dpst **out, int *n)
{
    sqlite3_stmt *st = NULL;
    struct dpst *v = NULL;
    int cap = 0, k = 0, r = 0, rc;
    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(db,
            "SELECT d.name, d.path, s.state, s.version, s.target, s.last_error "
            "FROM dp d LEFT JOIN dp_state s ON s.package = ?1 AND s.dp = d.name "
            "WHERE ?2 OR s.dp IS NOT NULL OR EXISTS (SELECT 1 FROM package_dp t "
            "  WHERE t.package = ?1 AND t.dp = d.name) ORDER BY d.name",
            -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, p->all_dps != 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (k == cap) {
            cap = cap ? cap * 2 : 8;
            struct dpst *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                r = -ENOMEM;
                break;
            }
            v = nv;
        }
        struct dpst *d = &v[k++];
        memset(d, 0, sizeof *d);
        copy_text(d->name, sizeof d->name, st, 0);
        copy_text(d->path, sizeof d->path, st, 1);
        if (sqlite3_column_type(st, 2) == SQLITE_NULL) {
            (void)ss_strcpy(d->state, sizeof d->state, "pending");
            d->target = p->version;
        } else {
            copy_text(d->state, sizeof d->state, st, 2);
            d->version = sqlite3_column_int64(st, 3);
            d->target = sqlite3_column_int64(st, 4);
            if (d->target <= 0)
                d->target = p->version;
            copy_text(d->last_error, sizeof d->last_error, st, 5);
        }
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_finalize(st);

    /* The retry row of (package, version being installed, DP). */
    for (int i = 0; r == 0 && i < k; i++) {
        struct dpst *d = &v[i];
        struct retry_state rs;
        char target[CTL_TARGET_LEN];
        if (d->target <= 0 ||
            ss_fmt(target, sizeof target, "%s/%lld/%s", p->id, d->target, d->name) < 0)
            continue;
        int g = retry_get(db, "dp", target, &rs);
        if (g == -ENOENT)
            continue;
        if (g < 0) {
            r = g;
            break;
        }
        d->attempts = rs.attempts;
        d->retry_failed = rs.state == RETRY_FAILED;
        d->next_ms = rs.state == RETRY_RETRYING ? rs.next_ms : 0;
        if (rs.last_error[0])
            (void)ss_strcpy_utf8(d->last_error, sizeof d->last_error, rs.last_error);
    }
    if (r < 0) {
        free(v);
        return r;
    }
    *out = v;
    *n = k;
    return 0;
}

static int id_arg(struct ctl *c, const char *id)
{
    if (!pkgid_ok(id))
        ctl_usage_error(c, "bad package ID '%s' (a site code and five hex digits, "
                        "e.g. CEN00001)", id);
    return 0;
}

/* Load a package for a command that needs it; prints the error. */
static int need_pkg(struct ctl_site *s, const char *id, struct pkg *p)
{
    int r = s->db ? load_pkg(s->db, id, p) : -ENOENT;
    if (r == -ENOENT) {
        ctl_err("there is no package %s (sitectl package list)", id);
        return CTL_FAIL;
    }
    if (r < 0)
        return ctl_db_fail(s, "cannot read the package");
    return CTL_OK;
}

/* The start of every command about one package: check the ID (a usage
 * error), open the site (flags as ctl_site_open) and load the package.
 * CTL_OK with s open, else CTL_FAIL with the error printed and s closed. */
static int open_pkg(struct ctl *c, const char *id, int flags, struct ctl_site *s,
                    struct pkg *p)
{
    id_arg(c, id);
    if (ctl_site_open(c, s, flags) != CTL_OK)
        return CTL_FAIL;
    if (need_pkg(s, id, p) != CTL_OK) {
        ctl_site_close(s);
        return CTL_FAIL;
    }
    return CTL_OK;
}

/* ---- package add, update, delete ---- */

/* A package name is for people: any text on one line, valid UTF-8. */
static int pkg_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200 || !ss_utf8_valid(s, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int pkg_add(struct ctl *c, const struct ctl_args *a)
{
    if (!a->name)
        ctl_usage_error(c, "--name NAME is required");
    if (!a->source)
        ctl_usage_error(c, "--source DIR is required");
    if (!pkg_name_ok(a->name))
        ctl_usage_error(c, "bad package name (1 to 200 bytes of UTF-8 text on one line)");
    for (int i = 0; i < a->ndps; i++)
        if (!ctl_dp_name_ok(a->dps[i]))
            ctl_usage_error(c, "bad DP name '%s'", a->dps[i]);
    enum send_prio prio = PRIO_MEDIUM;
    if (a->priority && prio_parse(a->priority, &prio) < 0)
        ctl_usage_error(c, "bad --priority '%s' (high, medium or low)", a->priority);

    /* The source: an absolute path (distmgr runs elsewhere, in another
     * directory) naming a directory now.  A share that goes away later
     * is distmgr's to report; one that is wrong now is the caller's. */
    char source[SS_PATH_MAX];
    struct stat st;
    if (a->source[0] != '/') {
        ctl_err("the source must be an absolute path: %s", a->source);
        return CTL_FAIL;
    }
    if (ss_strcpy(source, sizeof source, a->source) < 0) {
        ctl_err("source path too long: %s", a->source);
        return CTL_FAIL;
    }
    size_t sl = strlen(source);
    while (sl > 1 && source[sl - 1] == '/')
        source[--sl] = '\0';
    if (stat(source, &st) < 0) {
        ctl_err("the source %s cannot be read: %s", source, strerror(errno));
        return CTL_FAIL;
    }
    if (!S_ISDIR(st.st_mode)) {
        ctl_err("the source %s is not a directory", source);
        return CTL_FAIL;
    }

    struct ctl_site s;
    if (ctl_site_open(c, &s, CTL_SITE_WRITE) != CTL_OK)
        return CTL_FAIL;
    int rc = CTL_FAIL;
    char id[16];
    long long v, x;
    int64_t now = ss_now_ms();
    if (sitedb_begin(s.db) < 0) {
        ctl_db_fail(&s, "cannot begin a transaction");
        goto out;
    }
    for (int i = 0; i < a->ndps; i++) {
        int r = ctl_sql_int(s.db, &x, "SELECT 1 FROM dp WHERE name = ?1", "s", a->dps[i]);
        if (r == -ENOENT) {
            ctl_err("there is no DP named %s (sitectl dp list)", a->dps[i]);
            sitedb_rollback(s.db);
            goto out;
        }
        if (r < 0) {
            ctl_db_fail(&s, "cannot read the DPs");
            goto out;
        }
    }
    /* The next ID, skipping any already taken (a database restored from
     * an older backup must not hand out an ID twice). */
    if (ctl_sql(s.db, NULL, "INSERT OR IGNORE INTO counter (name, value) VALUES "
                "('package', 0)", "") < 0) {
        ctl_db_fail(&s, "cannot allocate a package ID");
        goto out;
    }
    for (;;) {
        if (ctl_sql(s.db, NULL, "UPDATE counter SET value = value + 1 WHERE name = "
                    "'package'", "") < 0 ||
            ctl_sql_int(s.db, &v, "SELECT value FROM counter WHERE name = 'package'", "") < 0) {
            ctl_db_fail(&s, "cannot allocate a package ID");
            goto out;
        }
        if (v < 1 || v > 0xFFFFF) {
            ctl_err("no package ID left for site %s (counter at %lld)", s.code, v);
            sitedb_rollback(s.db);
            goto out;
        }
        (void)ss_fmt(id, sizeof id, "%s%05llX", s.code, v);
        int r = ctl_sql_int(s.db, &x, "SELECT 1 FROM package WHERE id = ?1", "s", id);
        if (r == -ENOENT)
            break;
        if (r < 0) {
            ctl_db_fail(&s, "cannot allocate a package ID");
            goto out;
        }
    }
    if (ctl_sql(s.db, NULL, "INSERT INTO package (id, name, source, origin, version, all_dps, "
                "state, last_error, created_ms, updated_ms, priority) VALUES (?1, ?2, ?3, ?4, "
                "0, ?5, 'active', '', ?6, ?6, ?7)", "ssssiis", id, a->name, source, s.code,
                (int64_t)(a->ndps == 0), now, prio_name(prio)) < 0) {
        ctl_db_fail(&s, "cannot record the package");
        goto out;
    }
    for (int i = 0; i < a->ndps; i++) {
        if (ctl_sql(s.db, NULL, "INSERT OR IGNORE INTO package_dp (package, dp) VALUES "
                    "(?1, ?2)", "ss", id, a->dps[i]) < 0) {
            ctl_db_fail(&s, "cannot record the package's DPs");
            goto out;
        }
    }
    if (sitedb_commit(s.db) < 0) {
        ctl_db_fail(&s, "cannot commit the package");
        goto out;
    }
    /* The ID alone on stdout, before anything can fail: the package
     * exists now, and a script must learn its ID either way. */
    printf("%s\n", id);
    fflush(stdout);
    char done[SS_ERR_MAX];
    (void)ss_fmt(done, sizeof done, "package %s was added (sitectl package update %s "
                 "asks again)", id, id);
    rc = ctl_tell_distmgr(&s, PKGREQ_UPDATE, id, done);
out:
    ctl_site_close(&s);
    return rc;
}

static int pkg_update(struct ctl *c, const struct ctl_args *a)
{
    const char *id = a->pos[0];
    struct ctl_site s;
    struct pkg p;
    enum send_prio prio = PRIO_MEDIUM;
    if (a->priority && prio_parse(a->priority, &prio) < 0)
        ctl_usage_error(c, "bad --priority '%s' (high, medium or low)", a->priority);
    if (open_pkg(c, id, CTL_SITE_WRITE, &s, &p) != CTL_OK)
        return CTL_FAIL;
    int rc = CTL_FAIL;
    if (strcmp(p.state, "deleting") == 0) {
        ctl_err("package %s is being deleted", id);
        goto out;
    }
    if (strcmp(p.origin, s.code) != 0) {
        ctl_err("package %s comes from site %s: update it there", id, p.origin);
        goto out;
    }
    /* A new priority goes with the next version's jobs and instructions. */
    if (ctl_sql(s.db, NULL, "UPDATE package SET updated_ms = ?2, priority = coalesce(?3, "
                "priority) WHERE id = ?1", "sis", id, (int64_t)ss_now_ms(),
                a->priority ? prio_name(prio) : NULL) < 0) {
        ctl_db_fail(&s, "cannot update the package");
        goto out;
    }
    char done[64];
    (void)ss_fmt(done, sizeof done, "package %s", id);
    rc = ctl_tell_distmgr(&s, PKGREQ_UPDATE, id, done);
    if (rc == CTL_OK)
        printf("asked distmgr for a new version of %s from %s\n", id, p.source);
out:
    ctl_site_close(&s);
    return rc;
}

static int pkg_delete(struct ctl *c, const struct ctl_args *a)
{
    const char *id = a->pos[0];
    struct ctl_site s;
    struct pkg p;
    if (open_pkg(c, id, CTL_SITE_WRITE, &s, &p) != CTL_OK)
        return CTL_FAIL;
    int rc;
    if (ctl_sql(s.db, NULL, "UPDATE package SET state = 'deleting', updated_ms = ?2 "
                "WHERE id = ?1", "si", id, (int64_t)ss_now_ms()) < 0) {
        rc = ctl_db_fail(&s, "cannot mark the package for deletion");
        goto out;
    }
    char done[64];
    (void)ss_fmt(done, sizeof done, "package %s is marked for deletion", id);
    rc = ctl_tell_distmgr(&s, PKGREQ_DELETE, id, done);
    if (rc == CTL_OK)
        printf("%s %s: distmgr removes it from every DP, then from the store\n",
               strcmp(p.state, "deleting") == 0 ? "deleting again" : "deleting", id);
out:
    ctl_site_close(&s);
    return rc;
}

/* ---- package list, show ---- */

static void pkg_row(sqlite3_stmt *st, int json, struct sbuf *b)
{
    long long ver = sqlite3_column_int64(st, 2);
    long long ntargets = sqlite3_column_int64(st, 7);
    long long ninst = sqlite3_column_int64(st, 8);
    if (json) {
        ss_sbuf_adds(b, "{\"id\": ");
        ss_sbuf_add_json_str(b, ctl_col_text(st, 0));
        ss_sbuf_adds(b, ", \"name\": ");
        ss_sbuf_add_json_str(b, ctl_col_text(st, 1));
        ss_sbuf_addf(b, ", \"version\": %lld, \"state\": ", ver);
        ss_sbuf_add_json_str(b, ctl_col_text(st, 3));
        ss_sbuf_adds(b, ", \"origin\": ");
        ss_sbuf_add_json_str(b, ctl_col_text(st, 4));
        ss_sbuf_addf(b, ", \"all_dps\": %s, \"dps_installed\": %lld, "
                     "\"dps_total\": %lld, \"last_error\": ",
                     sqlite3_column_int(st, 6) ? "true" : "false", ninst, ntargets);
        ctl_json_str_or_null(b, ctl_col_text(st, 5));
        ss_sbuf_adds(b, "}");
    } else {
        char dps[48];
        snprintf(dps, sizeof dps, "%lld/%lld", ninst, ntargets);
        printf("%-8s %7lld %-8s %-6s %9s  %s\n", ctl_col_text(st, 0), ver,
               ctl_col_text(st, 3), ctl_col_text(st, 4), dps, ctl_col_text(st, 1));
    }
}

static int pkg_list(struct ctl *c, const struct ctl_args *a)
{
    return ctl_site_listing(c, a->json,
        "SELECT p.id, p.name, p.version, p.state, p.origin, p.last_error, p.all_dps,"
        " (SELECT count(*) FROM dp d WHERE p.all_dps OR EXISTS (SELECT 1 FROM"
        "   package_dp t WHERE t.package = p.id AND t.dp = d.name)),"
        " (SELECT count(*) FROM dp_state s WHERE s.package = p.id AND"
        "   s.state = 'installed' AND s.version = p.version AND p.version > 0)"
        " FROM package p ORDER BY p.id", "cannot read the packages", pkg_row,
        "%-8s %7s %-8s %-6s %9s  %s\n", "id", "version", "state", "origin", "dps", "name");
}

/* What the sender says when it has delivered a package version to a
 * site (attributes PackageID, Version, Site), and what a child's
 * despooler says when it installed one (PackageID, Version). */
#define MSG_SENT      SM_SEND_SENT
#define MSG_INSTALLED SM_DESPOOL_INSTALLED

/* One attribute of a statmsg row (attrs: a JSON object of strings, as
 * statmgr stores it), NULL for a row whose attrs is not JSON: CASE, not
 * AND, because only CASE promises not to evaluate json_extract on it,
 * and one bad row must not fail the whole query. */
#define ATTR(name) "CASE WHEN json_valid(attrs) THEN json_extract(attrs, '$." name "') END"

struct child {
    char      code[SS_SITE_LEN + 1];
    char      state[16];          /* pending, sending, sent, installed */
    long long version;            /* reported installed, else the job's, else 0 */
    char      job[16];            /* site_job.state for the version, "" none */
};

/*
 * The state of one child site for version V of package p (SPEC 9), the
 * first that holds:
 *   installed  the child reported it installed V or later (8300 with
 *              site = the child, replicated up to us by its statmgr);
 *   sent       our sender delivered V to it (8200 from this site);
 *   sending    a send request or a job for V to it waits in schedule.box;
 *   pending    otherwise (distmgr may not have written the job yet).
 * 0 or -EIO.
 */
static int site_state(struct ctl_site *s, const struct pkg *p,
                      const struct ctl_send_item *items, int nitems, struct child *k)
{
    long long v = 0;
    int r;
    if (p->version < 1) {
        (void)ss_strcpy(k->state, sizeof k->state, "pending");
        return 0;
    }
    r = ctl_sql_int(s->db, &v, "SELECT max(CAST(" ATTR("Version") " AS INTEGER)) FROM "
                    "statmsg WHERE msgid = ?1 AND site = ?2 AND " ATTR("PackageID") " = ?3",
                    "iss", (int64_t)MSG_INSTALLED, k->code, p->id);
    if (r < 0 && r != -ENOENT)
        return -EIO;
    if (r == 0 && v >= p->version) {
        (void)ss_strcpy(k->state, sizeof k->state, "installed");
        k->version = v;
        return 0;
    }
    r = ctl_sql_int(s->db, &v, "SELECT count(*) FROM statmsg WHERE msgid = ?1 AND "
                    "site = ?2 AND " ATTR("PackageID") " = ?3 AND CAST(" ATTR("Version")
                    " AS INTEGER) = ?4 AND " ATTR("Site") " = ?5", "issis",
                    (int64_t)MSG_SENT, s->code, p->id, (int64_t)p->version, k->code);
    if (r < 0)
        return -EIO;
    if (v > 0) {
        (void)ss_strcpy(k->state, sizeof k->state, "sent");
        return 0;
    }
    for (int i = 0; i < nitems; i++) {
        const struct sendreq *q = &items[i].q;
        if (items[i].kind != CTL_SEND_UNREADABLE && q->type == SEND_PACKAGE &&
            strcmp(q->dest, k->code) == 0 && strcmp(q->package, p->id) == 0 &&
            q->version == p->version) {
            (void)ss_strcpy(k->state, sizeof k->state, "sending");
            return 0;
        }
    }
    (void)ss_strcpy(k->state, sizeof k->state, "pending");
    return 0;
}

/* The child sites of this site with their state for p's version.  *out
 * is malloc'ed.  0, -EIO or -ENOMEM.  schedule.box that cannot be read
 * is a warning: the sites are then shown without "sending". */
static int load_children(struct ctl_site *s, const struct pkg *p, struct child **out, int *n)
{
    sqlite3_stmt *st = NULL;
    struct child *v = NULL;
    struct ctl_send_item *items = NULL;
    int cap = 0, k = 0, nitems = 0, r = 0, rc;
    char err[SS_ERR_MAX] = "";
    *out = NULL;
    *n = 0;
    if (sitedb_prepare(s->db, "SELECT s.code, j.version, j.state FROM site s LEFT JOIN "
                       "site_job j ON j.package = ?1 AND j.site = s.code AND j.version = ?2 "
                       "WHERE s.relation = 'child' ORDER BY s.code", &st) < 0)
        return -EIO;
    sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, p->version);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (k == cap) {
            cap = cap ? cap * 2 : 8;
            struct child *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                r = -ENOMEM;
                break;
            }
            v = nv;
        }
        struct child *c = &v[k++];
        memset(c, 0, sizeof *c);
        copy_text(c->code, sizeof c->code, st, 0);
        if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
            c->version = sqlite3_column_int64(st, 1);
            copy_text(c->job, sizeof c->job, st, 2);
        }
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_finalize(st);
    if (r == 0 && k > 0 && ctl_send_scan(s->root, &items, &nitems, err, sizeof err) < 0)
        ctl_err("warning: %s; no site is shown as sending", err);
    for (int i = 0; r == 0 && i < k; i++)
        r = site_state(s, p, items, nitems, &v[i]);
    free(items);
    if (r < 0) {
        free(v);
        return r;
    }
    *out = v;
    *n = k;
    return 0;
}

static int pkg_show(struct ctl *c, const struct ctl_args *a)
{
    const char *id = a->pos[0];
    int json = a->json;
    struct ctl_site s;
    struct pkg p;
    if (open_pkg(c, id, 0, &s, &p) != CTL_OK)
        return CTL_FAIL;
    struct dpst *dps = NULL;
    int ndps = 0, nsites = 0;
    struct sbuf b;
    ss_sbuf_init(&b);
    int rc;
    if (load_dps(s.db, &p, &dps, &ndps) < 0) {
        rc = ctl_db_fail(&s, "cannot read the package's DPs");
        goto out;
    }

    if (json) {
        ss_sbuf_adds(&b, "{\"id\": ");
        ss_sbuf_add_json_str(&b, p.id);
        ss_sbuf_adds(&b, ", \"name\": ");
        ss_sbuf_add_json_str(&b, p.name);
        ss_sbuf_adds(&b, ", \"source\": ");
        ss_sbuf_add_json_str(&b, p.source);
        ss_sbuf_adds(&b, ", \"origin\": ");
        ss_sbuf_add_json_str(&b, p.origin);
        ss_sbuf_addf(&b, ", \"version\": %lld, \"priority\": \"%s\", \"state\": ", p.version,
                     p.priority);
        ss_sbuf_add_json_str(&b, p.state);
        ss_sbuf_addf(&b, ", \"all_dps\": %s, \"last_error\": ", p.all_dps ? "true" : "false");
        ctl_json_str_or_null(&b, p.last_error);
        ss_sbuf_adds(&b, ", \"created\": ");
        ctl_json_time(&b, p.created_ms);
        ss_sbuf_adds(&b, ", \"updated\": ");
        ctl_json_time(&b, p.updated_ms);
        ss_sbuf_adds(&b, ",\n \"dps\": [");
        for (int i = 0; i < ndps; i++) {
            const struct dpst *d = &dps[i];
            ss_sbuf_adds(&b, i ? ",\n  {\"name\": " : "\n  {\"name\": ");
            ss_sbuf_add_json_str(&b, d->name);
            ss_sbuf_adds(&b, ", \"path\": ");
            ss_sbuf_add_json_str(&b, d->path);
            ss_sbuf_adds(&b, ", \"state\": ");
            ss_sbuf_add_json_str(&b, d->state);
            ss_sbuf_addf(&b, ", \"version\": %lld, \"target\": %lld, \"attempts\": %lld, "
                         "\"next_retry\": ", d->version, d->target, d->attempts);
            ctl_json_time(&b, d->next_ms);
            ss_sbuf_adds(&b, ", \"last_error\": ");
            ctl_json_str_or_null(&b, d->last_error);
            ss_sbuf_adds(&b, "}");
        }
        ss_sbuf_adds(&b, ndps ? "\n ],\n \"sites\": [" : "],\n \"sites\": [");
    } else {
        printf("package   %s  %s\n", p.id, p.name);
        printf("source    %s\n", p.source);
        printf("origin    %s\n", p.origin);
        printf("priority  %s\n", p.priority);
        printf("version   %lld%s\n", p.version, p.version ? "" : " (none stored yet)");
        printf("state     %s\n", p.state);
        if (p.last_error[0])
            printf("error     %s\n", p.last_error);
        printf("\n%-16s %-10s %7s %6s %8s %-10s  %s\n", "dp", "state", "version", "target",
               "attempts", "next retry", "last error");
        int64_t now = ss_now_ms();
        for (int i = 0; i < ndps; i++) {
            const struct dpst *d = &dps[i];
            char next[32] = "-";
            if (d->next_ms > 0) {
                char span[24];
                ctl_fmt_span((d->next_ms - now + 999) / 1000, span, sizeof span);
                snprintf(next, sizeof next, "in %s", span);
            }
            printf("%-16s %-10s %7lld %6lld %8lld %-10s  %s\n", d->name, d->state, d->version,
                   d->target, d->attempts, next, d->last_error[0] ? d->last_error : "-");
        }
        if (ndps == 0)
            printf("(no DP)\n");
        printf("\n%-4s %-9s %7s  %s\n", "site", "state", "version", "job");
    }

    /* Child sites, each in the state SPEC 9 names (site_state()). */
    struct child *kids = NULL;
    int r = load_children(&s, &p, &kids, &nsites);
    if (r == -ENOMEM) {
        ctl_err("out of memory");
        rc = CTL_FAIL;
        goto out;
    }
    if (r < 0) {
        rc = ctl_db_fail(&s, "cannot read the child sites");
        goto out;
    }
    for (int i = 0; i < nsites; i++) {
        const struct child *k = &kids[i];
        if (json) {
            ss_sbuf_adds(&b, i ? ",\n  {\"code\": " : "\n  {\"code\": ");
            ss_sbuf_add_json_str(&b, k->code);
            ss_sbuf_adds(&b, ", \"state\": ");
            ss_sbuf_add_json_str(&b, k->state);
            ss_sbuf_addf(&b, ", \"version\": %lld, \"job\": ", k->version);
            ctl_json_str_or_null(&b, k->job);
            ss_sbuf_adds(&b, "}");
        } else {
            printf("%-4s %-9s %7lld  %s\n", k->code, k->state, k->version,
                   k->job[0] ? k->job : "-");
        }
    }
    free(kids);
    if (json) {
        ss_sbuf_adds(&b, nsites ? "\n ]}\n" : "]}\n");
        if ((rc = ctl_print_sbuf(&b)) != CTL_OK)
            goto out;
    } else if (nsites == 0) {
        printf("(no child site)\n");
    }
    rc = CTL_OK;
out:
    free(dps);
    ss_sbuf_free(&b);
    ctl_site_close(&s);
    return rc;
}

/* ---- package wait ---- */

/* Requests about package id still in distmgr.box or claimed in its
 * work/: distmgr has not finished with them. */
static int pending_requests(const char *root, const char *id)
{
    static const char *const subs[] = { "", "/work" };
    int n = 0;
    for (size_t k = 0; k < SS_ARRAY_LEN(subs); k++) {
        char dir[SS_PATH_MAX];
        if (ss_path(dir, sizeof dir, "%s/inboxes/distmgr.box%s", root, subs[k]) < 0)
            continue;
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (de->d_name[0] == '.' || l < 5 || strcmp(de->d_name + l - 4, ".pkg") != 0)
                continue;
            int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0)
                continue;                 /* claimed or done meanwhile */
            char buf[PKGREQ_MAX_SIZE + 1], err[SS_ERR_MAX];
            ssize_t got = read(fd, buf, PKGREQ_MAX_SIZE);
            close(fd);
            struct pkgreq rq;
            if (got > 0 && pkgreq_parse(buf, (size_t)got, &rq, err, sizeof err) == 0 &&
                strcmp(rq.package, id) == 0)
                n++;
        }
        closedir(d);
    }
    return n;
}

enum dp_done { DP_NOT_DONE, DP_OK, DP_FAILED };

static enum dp_done dp_done(const struct dpst *d, long long version)
{
    if (strcmp(d->state, "failed") == 0)
        return DP_FAILED;
    if (strcmp(d->state, "installed") == 0 && version >= 1 && d->version == version)
        return DP_OK;
    return DP_NOT_DONE;
}

/* One DP as a line for people; key receives the same without what
 * changes by itself (the countdown), to print only real changes. */
static void dp_line(const struct dpst *d, long long version, int64_t now,
                    char *line, size_t len, char *key, size_t klen)
{
    const char *err = d->last_error[0] ? d->last_error : "-";
    char what[SS_ERR_MAX + 128];
    if (strcmp(d->state, "retrying") == 0) {
        char span[24] = "";
        if (d->next_ms > 0)
            ctl_fmt_span((d->next_ms - now + 999) / 1000, span, sizeof span);
        snprintf(key, klen, "%-12s retrying (attempt %lld): %s", d->name, d->attempts, err);
        snprintf(line, len, "%-12s retrying (attempt %lld%s%s): %s", d->name, d->attempts,
                 span[0] ? ", next in " : "", span, err);
        return;
    }
    if (strcmp(d->state, "installed") == 0) {
        if (version > d->version)
            snprintf(what, sizeof what, "installed v%lld, v%lld to come", d->version, version);
        else
            snprintf(what, sizeof what, "installed v%lld", d->version);
    } else if (strcmp(d->state, "installing") == 0) {
        snprintf(what, sizeof what, "installing v%lld", d->target);
    } else if (strcmp(d->state, "failed") == 0) {
        snprintf(what, sizeof what, "failed after %lld attempts: %s", d->attempts, err);
    } else if (strcmp(d->state, "pending") == 0 && d->target > 0) {
        snprintf(what, sizeof what, "pending (v%lld)", d->target);
    } else {
        snprintf(what, sizeof what, "%s", d->state);
    }
    snprintf(key, klen, "%-12s %s", d->name, what);
    snprintf(line, len, "%-12s %s", d->name, what);
}

struct seen {
    char (*key)[SS_ERR_MAX + 256];
    int n;
};

/* Has this line changed since it was last printed?  Remembers it. */
static int seen_changed(struct seen *sn, const char *name, const char *key)
{
    size_t nl = strlen(name);
    for (int i = 0; i < sn->n; i++) {
        if (strncmp(sn->key[i], name, nl) == 0 && sn->key[i][nl] == ' ') {
            if (strcmp(sn->key[i], key) == 0)
                return 0;
            (void)ss_strcpy_utf8(sn->key[i], sizeof sn->key[i], key);
            return 1;
        }
    }
    void *p = realloc(sn->key, (size_t)(sn->n + 1) * sizeof *sn->key);
    if (!p)
        return 1;
    sn->key = p;
    (void)ss_strcpy_utf8(sn->key[sn->n++], sizeof sn->key[0], key);
    return 1;
}

static int term_cols(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
        return ws.ws_col;
    return 80;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int pkg_wait(struct ctl *c, const struct ctl_args *a)
{
    const char *id = a->pos[0], *timeout = a->timeout;
    id_arg(c, id);
    int64_t limit_ms = -1;
    if (timeout && (ss_parse_duration_ms(timeout, &limit_ms) < 0 || limit_ms < 0))
        ctl_usage_error(c, "bad --timeout '%s' (seconds, or a duration such as 10m)", timeout);

    struct ctl_site s;
    if (ctl_site_open(c, &s, 0) != CTL_OK)
        return CTL_FAIL;
    struct pkg p;
    int rc = s.db ? load_pkg(s.db, id, &p) : -ENOENT;
    if (rc == -ENOENT) {
        /* Deleted before we looked, or never there: an ID of this site
         * at or below the counter was handed out, so it was deleted. */
        long long v = -1;
        unsigned long long n = strtoull(id + SS_SITE_LEN, NULL, 16);
        if (s.db && strncmp(id, s.code, SS_SITE_LEN) == 0 &&
            ctl_sql_int(s.db, &v, "SELECT value FROM counter WHERE name = 'package'", "") == 0 &&
            n <= (unsigned long long)v) {
            printf("%s is deleted\n", id);
            ctl_site_close(&s);
            return CTL_OK;
        }
        ctl_err("there is no package %s (sitectl package list)", id);
        ctl_site_close(&s);
        return CTL_FAIL;
    }
    if (rc < 0) {
        rc = ctl_db_fail(&s, "cannot read the package");
        ctl_site_close(&s);
        return rc;
    }

    int tty = isatty(STDOUT_FILENO), drawn = 0, gone = 0, timed_out = 0, src_failed = 0;
    int64_t start = ss_mono_ms();
    struct seen seen = { NULL, 0 };
    struct dpst *dps = NULL;
    int ndps = 0;
    struct sbuf why;
    ss_sbuf_init(&why);
    char head[SS_ERR_MAX + 128], last_head[SS_ERR_MAX + 128] = "";
    rc = CTL_FAIL;
    for (;;) {
        int64_t now = ss_now_ms();
        int r = load_pkg(s.db, id, &p);
        if (r == -ENOENT) {
            gone = 1;
            break;
        }
        free(dps);
        dps = NULL;
        if (r < 0 || load_dps(s.db, &p, &dps, &ndps) < 0) {
            ctl_db_fail(&s, "cannot read the package");
            goto out;
        }
        int pending = pending_requests(s.root, id), ok = 0, failed = 0, done = 0;
        int deleting = strcmp(p.state, "deleting") == 0;
        for (int i = 0; i < ndps; i++) {
            enum dp_done dd = dp_done(&dps[i], p.version);
            ok += dd == DP_OK;
            failed += dd == DP_FAILED;
        }
        /* distmgr retries a source it could not read under scope
         * "source", target the package ID. */
        struct retry_state src;
        int gs = retry_get(s.db, "source", id, &src);
        if (gs < 0 && gs != -ENOENT) {
            ctl_db_fail(&s, "cannot read the retry history");
            goto out;
        }
        if (deleting) {
            snprintf(head, sizeof head, "%s: being deleted", id);
        } else if (pending) {
            snprintf(head, sizeof head, "%s: waiting for distmgr to take the request",
                     id);
        } else if (gs == 0 && src.state == RETRY_RETRYING) {
            char span[24];
            ctl_fmt_span((src.next_ms - now + 999) / 1000, span, sizeof span);
            snprintf(head, sizeof head, "%s: the source failed (attempt %lld, next in %s): %s",
                     id, src.attempts, span, src.last_error);
        } else if (gs == 0) {
            snprintf(head, sizeof head, "%s: the source failed %lld times: %s", id,
                     src.attempts, src.last_error);
            src_failed = 1;
            done = 1;
        } else if (p.version == 0 && p.last_error[0]) {
            snprintf(head, sizeof head, "%s: no version could be made: %s", id, p.last_error);
            done = 1;
        } else if (p.version == 0) {
            snprintf(head, sizeof head, "%s: waiting for a first version", id);
        } else {
            snprintf(head, sizeof head, "%s v%lld: %d of %d DPs installed%s%s", id,
                     p.version, ok, ndps, p.last_error[0] ? "; last error: " : "",
                     p.last_error);
            done = ok + failed == ndps;
        }

        /* Draw. */
        int cols = tty ? term_cols() : 0;
        if (tty) {
            if (drawn)
                printf("\033[%dA", drawn);
            printf("\r\033[K%.*s\n", cols - 1, head);
            drawn = 1;
        } else if (strcmp(head, last_head) != 0) {
            printf("%s\n", head);
            (void)ss_strcpy(last_head, sizeof last_head, head);
        }
        for (int i = 0; i < ndps; i++) {
            char line[SS_ERR_MAX + 256], key[SS_ERR_MAX + 256];
            dp_line(&dps[i], p.version, now, line, sizeof line, key, sizeof key);
            if (tty) {
                char cut[SS_ERR_MAX + 256];
                size_t w = (size_t)cols - 2;     /* "  " before, the last column free */
                (void)ss_strcpy_utf8(cut, w < sizeof cut ? w : sizeof cut, line);
                printf("\r\033[K  %s\n", cut);
                drawn++;
            } else if (seen_changed(&seen, dps[i].name, key)) {
                printf("  %s\n", line);
            }
        }
        if (tty)
            printf("\033[J");
        fflush(stdout);

        if (done)
            break;
        if (limit_ms >= 0 && ss_mono_ms() - start >= limit_ms) {
            timed_out = 1;
            break;
        }
        sleep_ms(WAIT_POLL_MS);
    }

    if (gone) {
        printf("%s is deleted\n", id);
        rc = CTL_OK;
        goto out;
    }
    /* What is not done, by name. */
    int nbad = 0;
    for (int i = 0; i < ndps; i++) {
        if (dp_done(&dps[i], p.version) == DP_OK)
            continue;
        ss_sbuf_addf(&why, "%s%s (%s%s%s)", nbad ? ", " : "", dps[i].name, dps[i].state,
                     dps[i].last_error[0] ? ": " : "", dps[i].last_error);
        nbad++;
    }
    if (timed_out) {
        char lim[32];
        ss_fmt_duration(limit_ms, lim, sizeof lim);
        ctl_err("timed out after %s waiting for %s: %s%s", lim, id,
                nbad ? "not done on " : "distmgr has not finished with it",
                nbad && why.data ? why.data : "");
    } else if (src_failed) {
        ctl_err("%s: no new version could be made (sitectl retry now %s tries again): %s",
                id, id, p.last_error[0] ? p.last_error : "the source failed");
    } else if (p.version == 0) {
        ctl_err("%s has no version: %s", id, p.last_error);
    } else if (nbad) {
        ctl_err("%s v%lld is not installed on %s", id, p.version, why.data ? why.data : "?");
    } else {
        printf("%s v%lld is installed on %s\n", id, p.version,
               ndps == 1 ? "its DP" : ndps ? "every DP" : "no DP (it targets none)");
        rc = CTL_OK;
    }
out:
    free(dps);
    free(seen.key);
    ss_sbuf_free(&why);
    ctl_site_close(&s);
    return rc;
}

int cmd_package(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_sub subs[] = {
        { "add", CTL_A_NAME | CTL_A_SOURCE | CTL_A_DP | CTL_A_PRIORITY, 0, 0, pkg_add },
        { "update", CTL_A_PRIORITY, 1, 1, pkg_update },
        { "delete", 0, 1, 1, pkg_delete },
        { "list", CTL_A_JSON, 0, 0, pkg_list },
        { "show", CTL_A_JSON, 1, 1, pkg_show },
        { "wait", CTL_A_TIMEOUT, 1, 1, pkg_wait },
    };
    return ctl_subcommand(c, argc, argv, subs, SS_ARRAY_LEN(subs));
}

/* ---- retry ---- */

static int retry_list_cb(void *arg, const struct retry_state *rs)
{
    struct sbuf *b = arg;
    if (b) {
        ss_sbuf_adds(b, b->len > 1 ? ",\n  {\"scope\": " : "\n  {\"scope\": ");
        ss_sbuf_add_json_str(b, rs->scope);
        ss_sbuf_adds(b, ", \"target\": ");
        ss_sbuf_add_json_str(b, rs->target);
        ss_sbuf_addf(b, ", \"state\": \"%s\", \"attempts\": %lld, \"next_retry\": ",
                     rs->state == RETRY_FAILED ? "failed" : "retrying", rs->attempts);
        ctl_json_time(b, rs->state == RETRY_RETRYING ? rs->next_ms : 0);
        ss_sbuf_adds(b, ", \"last_error\": ");
        ctl_json_str_or_null(b, rs->last_error);
        ss_sbuf_adds(b, ", \"updated\": ");
        ctl_json_time(b, rs->updated_ms);
        ss_sbuf_adds(b, "}");
        return 0;
    }
    char next[40] = "-";
    if (rs->state == RETRY_RETRYING) {
        char span[24];
        int64_t left = (rs->next_ms - ss_now_ms() + 999) / 1000;
        ctl_fmt_span(left, span, sizeof span);
        snprintf(next, sizeof next, left > 0 ? "in %s" : "due", span);
    }
    printf("%-6s %-28s %-8s %8lld %-10s  %s\n", rs->scope, rs->target,
           rs->state == RETRY_FAILED ? "failed" : "retrying", rs->attempts, next,
           rs->last_error[0] ? rs->last_error : "-");
    return 0;
}

static int retry_listing(struct ctl *c, const struct ctl_args *a)
{
    int json = a->json;
    struct ctl_site s;
    if (ctl_site_open(c, &s, 0) != CTL_OK)
        return CTL_FAIL;
    struct sbuf b;
    ss_sbuf_init(&b);
    int rc = CTL_OK;
    if (json)
        ss_sbuf_adds(&b, "[");
    else
        printf("%-6s %-28s %-8s %8s %-10s  %s\n", "scope", "target", "state", "attempts",
               "next", "last error");
    if (s.db && retry_list(s.db, NULL, NULL, retry_list_cb, json ? &b : NULL) < 0)
        rc = ctl_db_fail(&s, "cannot read the retry history");
    if (json && rc == CTL_OK)
        rc = ctl_json_array_end(&b, b.len > 1);
    ss_sbuf_free(&b);
    ctl_site_close(&s);
    return rc;
}

/* retry now [ID [DP]] (clear = 0) and retry clear ID [DP] (clear = 1). */
static int retry_change(struct ctl *c, int clear, const char *id, const char *dp)
{
    if (id)
        id_arg(c, id);
    if (dp && !ctl_dp_name_ok(dp))
        ctl_usage_error(c, "bad DP name '%s'", dp);
    struct ctl_site s;
    if (ctl_site_open(c, &s, CTL_SITE_WRITE) != CTL_OK)
        return CTL_FAIL;
    int rc = CTL_FAIL, nretry = 0, nstate = 0, n;
    char (*targets)[CTL_TARGET_LEN] = NULL;
    int ntargets = 0;
    long long x;
    int64_t now = ss_now_ms();
    struct pkg p;
    if (id && need_pkg(&s, id, &p) != CTL_OK)
        goto out;
    if (dp) {
        int r = ctl_sql_int(s.db, &x, "SELECT 1 FROM dp WHERE name = ?1", "s", dp);
        if (r == -ENOENT) {
            ctl_err("there is no DP named %s (sitectl dp list)", dp);
            goto out;
        }
        if (r < 0) {
            ctl_db_fail(&s, "cannot read the DPs");
            goto out;
        }
    }
    if (sitedb_begin(s.db) < 0) {
        ctl_db_fail(&s, "cannot begin a transaction");
        goto out;
    }
    /* With a DP: its retry rows of this package, whatever the version
     * (exact targets "ID/V/DP"); without: every row under the prefix. */
    if (dp) {
        if (ctl_dp_retry_targets(s.db, id, dp, &targets, &ntargets) < 0) {
            ctl_db_fail(&s, "cannot read the retry history");
            goto out;
        }
        for (int i = 0; i < ntargets; i++) {
            int r = clear ? retry_clear(s.db, "dp", targets[i], &n)
                          : retry_now(s.db, "dp", targets[i], now, &n);
            if (r < 0) {
                ctl_db_fail(&s, "cannot change the retry history");
                goto out;
            }
            nretry += n;
        }
    } else {
        /* And the package's source (scope "source", target the ID): an
         * administrator who fixed a share wants it read again too. */
        static const char *const scopes[] = { "dp", "source" };
        for (size_t k = 0; k < SS_ARRAY_LEN(scopes); k++) {
            int r = clear ? retry_clear(s.db, scopes[k], id, &n)
                          : retry_now(s.db, scopes[k], id, now, &n);
            if (r < 0) {
                ctl_db_fail(&s, "cannot change the retry history");
                goto out;
            }
            nretry += n;
        }
    }
    int r = clear
        ? ctl_sql(s.db, &nstate, "UPDATE dp_state SET state = 'failed', last_error = "
                  "'retries cleared by the administrator', updated_ms = ?3 WHERE "
                  "package = ?1 AND (?2 IS NULL OR dp = ?2) AND state IN ('retrying', "
                  "'failed', 'installing')", "ssi", id, dp, now)
        : ctl_sql(s.db, &nstate, "UPDATE dp_state SET state = 'pending', updated_ms = ?3 "
                  "WHERE (?1 IS NULL OR package = ?1) AND (?2 IS NULL OR dp = ?2) AND "
                  "state = 'failed'", "ssi", id, dp, now);
    if (r < 0) {
        ctl_db_fail(&s, "cannot change the DP states");
        goto out;
    }
    if (sitedb_commit(s.db) < 0) {
        ctl_db_fail(&s, "cannot commit");
        goto out;
    }
    char what[128];
    if (dp)
        (void)ss_fmt(what, sizeof what, "package %s on DP %s", id, dp);
    else if (id)
        (void)ss_fmt(what, sizeof what, "package %s", id);
    else
        (void)ss_fmt(what, sizeof what, "every package");
    if (clear)
        printf("%s: %d retry rows cleared, %d DPs left failed until the next version or "
               "sitectl retry now\n", what, nretry, nstate);
    else
        printf("%s: %d retry rows made due now, %d failed DPs set back to pending\n",
               what, nretry, nstate);
    char done[160];
    (void)ss_fmt(done, sizeof done, "the retries of %s were changed", what);
    rc = ctl_tell_distmgr(&s, PKGREQ_RETRY, id ? id : "*", done);
out:
    free(targets);
    ctl_site_close(&s);
    return rc;
}

static int retry_now_cmd(struct ctl *c, const struct ctl_args *a)
{
    return retry_change(c, 0, a->npos > 0 ? a->pos[0] : NULL, a->npos > 1 ? a->pos[1] : NULL);
}

static int retry_clear_cmd(struct ctl *c, const struct ctl_args *a)
{
    return retry_change(c, 1, a->pos[0], a->npos > 1 ? a->pos[1] : NULL);
}

int cmd_retry(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_sub subs[] = {
        { "list", CTL_A_JSON, 0, 0, retry_listing },
        { "now", 0, 0, 2, retry_now_cmd },
        { "clear", 0, 1, 2, retry_clear_cmd },
    };
    return ctl_subcommand(c, argc, argv, subs, SS_ARRAY_LEN(subs));
}
