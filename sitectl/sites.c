/*
 * NAME
 *   sites.c - sitectl dp and site: the distribution points and the
 *   parent and child sites of a site, and the database helpers that the
 *   package and retry commands share.
 *
 * SYNOPSIS
 *   cmd_dp(), cmd_site()
 *   ctl_site_open(), ctl_site_close(), ctl_db_fail(), ctl_tell_distmgr(),
 *   ctl_sql(), ctl_sql_int(), ctl_col_text(), ctl_json_time(),
 *   ctl_json_str_or_null(), ctl_site_listing(), ctl_dp_name_ok(),
 *   ctl_dp_reachable(), ctl_fmt_span(), ctl_fmt_bytes(), ctl_dp_retry_targets(),
 *   ctl_args_parse(), ctl_args_only(), ctl_args_free(), ctl_subcommand()
 *
 * DESCRIPTION
 *   sitectl writes the dp and site rows itself (design: "who writes
 *   what"), so that the listings are right at once and while distmgr is
 *   stopped, then drops a package request action=retry package="*" into
 *   distmgr.box: a new DP must receive the packages that go to every DP,
 *   and a new child site every package.
 *
 *   dp add accepts a root that cannot be reached now, with a warning, and
 *   never creates it (SPEC 9): shares come and go, and a DP root created
 *   on the local disk where a share should be mounted would fill the
 *   wrong disk silently.  dp remove forgets the DP - its row, its
 *   per-package state, its target rows and its retry history - and leaves
 *   the content already on it where it is: removing files from a share
 *   nobody serves any more is the administrator's call.
 *
 *   site add records a site's address (file:PATH, its despoolr.box/receive
 *   directory) and its Ed25519 public key, which the despooler checks
 *   instructions against.  The key is read as PEM, checked to be Ed25519,
 *   and stored re-encoded, so the database never holds text that only
 *   looked like a key.  The code named by site.parent is the parent; any
 *   other is a child.  Adding a code again updates it.
 *
 *   Listings read the database with SITEDB_RDONLY: never a migration, never
 *   a write lock a daemon would wait for.  A site without a database or
 *   without the package tables yet simply has nothing to list.
 *
 * DIAGNOSTICS
 *   "sitectl: ..." on stderr.  Exit 0 success; 1 failure (a root that is
 *   no site, a database error, a duplicate DP, an unknown DP or site, a
 *   key that is not an Ed25519 public key, a request that could not be
 *   dropped); 2 usage (a bad DP name or site code, an address that is not
 *   file:/absolute/path, a missing argument).  Unreachable DP roots and
 *   site addresses are warnings ("sitectl: warning: ...").
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conf.h"
#include "pkgreq.h"
#include "record.h"
#include "retry.h"
#include "sitedb.h"
#include "sitectl.h"

/* ---- arguments ---- */

void ctl_args_parse(struct ctl *c, int argc, char **argv, struct ctl_args *a)
{
    memset(a, 0, sizeof *a);
    a->dps = calloc((size_t)argc + 1, sizeof *a->dps);
    if (!a->dps) {
        ctl_err("out of memory");
        exit(CTL_FAIL);
    }
    int opts = 1;
    for (int i = 0; i < argc; i++) {
        const char *v;
        if (opts && argv[i][0] == '-' && argv[i][1] != '\0') {
            if (ctl_flag(argv[i], "--")) {
                opts = 0;
            } else if (ctl_common(c, argc, argv, &i)) {
                ;
            } else if (ctl_flag(argv[i], "--json")) {
                a->json = 1;
                a->given |= CTL_A_JSON;
            } else if (ctl_opt(c, argc, argv, &i, "--name", &a->name)) {
                a->given |= CTL_A_NAME;
            } else if (ctl_opt(c, argc, argv, &i, "--source", &a->source)) {
                a->given |= CTL_A_SOURCE;
            } else if (ctl_opt(c, argc, argv, &i, "--dp", &v)) {
                a->dps[a->ndps++] = v;
                a->given |= CTL_A_DP;
            } else if (ctl_opt(c, argc, argv, &i, "--address", &a->address)) {
                a->given |= CTL_A_ADDRESS;
            } else if (ctl_opt(c, argc, argv, &i, "--key", &a->key)) {
                a->given |= CTL_A_KEY;
            } else if (ctl_opt(c, argc, argv, &i, "--timeout", &a->timeout)) {
                a->given |= CTL_A_TIMEOUT;
            } else if (ctl_opt(c, argc, argv, &i, "--priority", &a->priority)) {
                a->given |= CTL_A_PRIORITY;
            } else {
                ctl_usage_error(c, "unknown option %s", argv[i]);
            }
            continue;
        }
        if (!a->sub)
            a->sub = argv[i];
        else if (a->npos < (int)SS_ARRAY_LEN(a->pos))
            a->pos[a->npos++] = argv[i];
        else
            ctl_usage_error(c, "too many arguments (%s)", argv[i]);
    }
}

void ctl_args_only(struct ctl *c, const struct ctl_args *a, unsigned allowed,
                   int min, int max)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        { CTL_A_JSON, "--json" }, { CTL_A_NAME, "--name" }, { CTL_A_SOURCE, "--source" },
        { CTL_A_DP, "--dp" }, { CTL_A_ADDRESS, "--address" }, { CTL_A_KEY, "--key" },
        { CTL_A_TIMEOUT, "--timeout" }, { CTL_A_PRIORITY, "--priority" },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(names); i++)
        if ((a->given & names[i].bit) && !(allowed & names[i].bit))
            ctl_usage_error(c, "%s %s takes no %s option", c->cmd, a->sub, names[i].name);
    if (a->npos < min)
        ctl_usage_error(c, "%s %s needs more arguments", c->cmd, a->sub);
    if (a->npos > max)
        ctl_usage_error(c, "unexpected argument %s", a->pos[max]);
}

void ctl_args_free(struct ctl_args *a)
{
    free(a->dps);
    a->dps = NULL;
}

int ctl_subcommand(struct ctl *c, int argc, char **argv, const struct ctl_sub *subs,
                   size_t nsubs)
{
    struct ctl_args a;
    ctl_args_parse(c, argc, argv, &a);
    if (!a.sub) {
        /* "dp needs add, remove or list", from the table itself so that
         * the message never forgets a subcommand. */
        char list[256] = "";
        size_t used = 0;
        for (size_t k = 0; k < nsubs && used < sizeof list; k++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
                                     k == 0 ? "" : k + 1 < nsubs ? ", " : " or ",
                                     subs[k].name);
        ctl_usage_error(c, "%s needs %s", c->cmd, list);
    }
    for (size_t k = 0; k < nsubs; k++) {
        if (strcmp(a.sub, subs[k].name) == 0) {
            ctl_args_only(c, &a, subs[k].allowed, subs[k].min, subs[k].max);
            int rc = subs[k].run(c, &a);
            ctl_args_free(&a);
            return rc;
        }
    }
    ctl_usage_error(c, "unknown %s subcommand '%s'", c->cmd, a.sub);
}

/* ---- the site and its database ---- */

int ctl_site_open(struct ctl *c, struct ctl_site *s, int flags)
{
    memset(s, 0, sizeof *s);
    s->root = ctl_root(c);

    /* A wrong root must fail, not look like an empty site: a root is a
     * site exactly when its site.conf loads. */
    struct ss_conf *cf = calloc(1, sizeof *cf);
    if (!cf) {
        ctl_err("out of memory");
        return CTL_FAIL;
    }
    int r = ctl_load_conf(s->root, cf, NULL, 0);
    if (r == 0) {
        (void)ss_strcpy(s->code, sizeof s->code, cf->site_code);
        (void)ss_strcpy(s->parent, sizeof s->parent, cf->site_parent);
    }
    free(cf);
    if (r < 0)
        return CTL_FAIL;
    if (ss_path(s->dbpath, sizeof s->dbpath, "%s/db/site.db", s->root) < 0) {
        ctl_err("site root too long: %s", s->root);
        return CTL_FAIL;
    }

    char err[SS_ERR_MAX] = "";
    if (flags & CTL_SITE_WRITE) {
        r = sitedb_open_root(s->root, 0, &s->db, err, sizeof err);
        if (r < 0) {
            ctl_err("cannot open %s: %s", s->dbpath, err[0] ? err : strerror(-r));
            return CTL_FAIL;
        }
        return CTL_OK;
    }
    if (access(s->dbpath, F_OK) < 0)
        return CTL_OK;                  /* nothing recorded yet */
    r = sitedb_open_root(s->root, SITEDB_RDONLY, &s->db, err, sizeof err);
    if (r < 0) {
        ctl_err("cannot read %s: %s", s->dbpath, err[0] ? err : strerror(-r));
        return CTL_FAIL;
    }
    /* A database no daemon of this release has migrated yet has no
     * package tables: nothing to list, and no reason to fail. */
    long long v = 0;
    if (ctl_sql_int(s->db, &v, "PRAGMA user_version", "") < 0) {
        ctl_err("cannot read %s: %s", s->dbpath, sqlite3_errmsg(s->db));
        ctl_site_close(s);
        return CTL_FAIL;
    }
    if (v < 2)
        ctl_site_close(s);
    return CTL_OK;
}

void ctl_site_close(struct ctl_site *s)
{
    if (s->db)
        sitedb_close(s->db);
    s->db = NULL;
}

int ctl_db_fail(const struct ctl_site *s, const char *what)
{
    ctl_err("%s: %s (%s)", what, s->db ? sqlite3_errmsg(s->db) : "no database", s->dbpath);
    if (s->db && !sqlite3_get_autocommit(s->db))
        (void)sitedb_rollback(s->db);
    return CTL_FAIL;
}

int ctl_tell_distmgr(const struct ctl_site *s, enum pkgreq_action a,
                     const char *package, const char *done)
{
    int r = pkgreq_drop(s->root, s->code, a, package);
    if (r == 0)
        return CTL_OK;
    ctl_err("%s, but distmgr was not told: cannot drop a request (%s %s) into "
            "%s/inboxes/distmgr.box: %s", done, pkgreq_action_name(a), package,
            s->root, strerror(-r));
    return CTL_FAIL;
}

static int bind_args(sqlite3_stmt *st, const char *types, va_list ap)
{
    for (int i = 0; types[i]; i++) {
        int rc;
        if (types[i] == 's') {
            const char *v = va_arg(ap, const char *);
            rc = v ? sqlite3_bind_text(st, i + 1, v, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, i + 1);
        } else {
            rc = sqlite3_bind_int64(st, i + 1, (sqlite3_int64)va_arg(ap, int64_t));
        }
        if (rc != SQLITE_OK)
            return -EIO;
    }
    return 0;
}

int ctl_sql(sqlite3 *db, int *changes, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    va_list ap;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    va_start(ap, types);
    int r = bind_args(st, types, ap);
    va_end(ap);
    int rc = SQLITE_DONE;
    if (r == 0) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
        if (rc != SQLITE_DONE)
            r = -EIO;
    }
    if (r == 0 && changes)
        *changes = sqlite3_changes(db);
    /* The error of a failed step stays on the connection after finalize
     * (which returns the same code) for ctl_db_fail to print. */
    sqlite3_finalize(st);
    return r;
}

int ctl_sql_int(sqlite3 *db, long long *out, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    va_list ap;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    va_start(ap, types);
    int r = bind_args(st, types, ap);
    va_end(ap);
    if (r == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            *out = sqlite3_column_int64(st, 0);
        else
            r = rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(st);
    return r;
}

const char *ctl_col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

void ctl_json_time(struct sbuf *b, int64_t ms)
{
    char iso[64];
    if (ms > 0 && ss_fmt_time_iso(ms, iso, sizeof iso) == 0)
        ss_sbuf_add_json_str(b, iso);
    else
        ss_sbuf_adds(b, "null");
}

void ctl_json_str_or_null(struct sbuf *b, const char *s)
{
    if (s && *s)
        ss_sbuf_add_json_str(b, s);
    else
        ss_sbuf_adds(b, "null");
}

int ctl_site_listing(struct ctl *c, int json, const char *sql, const char *what,
                     ctl_row_fn *row, const char *header, ...)
{
    struct ctl_site s;
    if (ctl_site_open(c, &s, 0) != CTL_OK)
        return CTL_FAIL;
    struct sbuf b;
    ss_sbuf_init(&b);
    int rc = CTL_OK, n = 0;
    if (json) {
        ss_sbuf_adds(&b, "[");
    } else {
        va_list ap;
        va_start(ap, header);
        vprintf(header, ap);
        va_end(ap);
    }
    /* No database (or no package tables) yet: an empty list. */
    if (s.db) {
        sqlite3_stmt *st = NULL;
        if (sitedb_prepare(s.db, sql, &st) < 0) {
            rc = ctl_db_fail(&s, what);
            goto out;
        }
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
            if (json)
                ss_sbuf_adds(&b, n ? ",\n  " : "\n  ");
            row(st, json, &b);
            n++;
        }
        if (r != SQLITE_DONE)
            rc = ctl_db_fail(&s, what);
        sqlite3_finalize(st);
    }
    if (json && rc == CTL_OK)
        rc = ctl_json_array_end(&b, n);
out:
    ss_sbuf_free(&b);
    ctl_site_close(&s);
    return rc;
}

int ctl_dp_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    /* "." and ".." are path words, not names. */
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int ctl_dp_reachable(const char *path, char *why, size_t len)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        int e = errno;
        (void)ss_fmt(why, len, "%s", strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode)) {
        (void)ss_fmt(why, len, "not a directory");
        return -ENOTDIR;
    }
    if (access(path, W_OK | X_OK) < 0) {
        int e = errno;
        (void)ss_fmt(why, len, "not writable: %s", strerror(e));
        return -e;
    }
    if (len)
        why[0] = '\0';
    return 0;
}

void ctl_fmt_bytes(int64_t n, char *buf, size_t len)
{
    static const char *const units[] = { "KB", "MB", "GB", "TB" };
    if (n < 1024) {
        snprintf(buf, len, "%dB", n > 0 ? (int)n : 0);
        return;
    }
    double v = (double)n / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < SS_ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, "%.1f%s", v, units[u]);
}

void ctl_fmt_span(int64_t s, char *buf, size_t len)
{
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(buf, len, "%llds", (long long)s);
    else if (s < 120 * 60)
        snprintf(buf, len, "%lldm", (long long)(s / 60));
    else if (s < 48 * 3600)
        snprintf(buf, len, "%lldh", (long long)(s / 3600));
    else
        snprintf(buf, len, "%lldd", (long long)(s / 86400));
}

struct target_acc {
    const char *dp;
    char (*t)[CTL_TARGET_LEN];
    int n, cap;
};

static int target_cb(void *arg, const struct retry_state *s)
{
    struct target_acc *a = arg;
    const char *slash = strrchr(s->target, '/');
    if (!slash || strcmp(slash + 1, a->dp) != 0)
        return 0;
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        void *p = realloc(a->t, (size_t)cap * CTL_TARGET_LEN);
        if (!p)
            return -ENOMEM;
        a->t = p;
        a->cap = cap;
    }
    if (ss_strcpy(a->t[a->n], CTL_TARGET_LEN, s->target) == 0)
        a->n++;
    return 0;
}

int ctl_dp_retry_targets(sqlite3 *db, const char *prefix, const char *dp,
                         char (**out)[CTL_TARGET_LEN], int *n)
{
    struct target_acc a = { .dp = dp };
    int r = retry_list(db, "dp", prefix, target_cb, &a);
    if (r < 0) {
        free(a.t);
        *out = NULL;
        *n = 0;
        return r;
    }
    *out = a.t;
    *n = a.n;
    return 0;
}

/* ---- dp ---- */

/* An absolute path without trailing slashes (the root "/" is refused:
 * no DP takes over a whole file system root). */
static int clean_abs_path(const char *in, char *out, size_t len)
{
    if (in[0] != '/')
        return -EINVAL;
    if (ss_strcpy(out, len, in) < 0)
        return -ENAMETOOLONG;
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
    return strcmp(out, "/") == 0 ? -EINVAL : 0;
}

static int dp_add(struct ctl *c, const char *name, const char *path_in)
{
    if (!ctl_dp_name_ok(name))
        ctl_usage_error(c, "bad DP name '%s' (1 to 32 of A-Z a-z 0-9 _ . -)", name);
    char path[SS_PATH_MAX], why[SS_ERR_MAX];
    int r = clean_abs_path(path_in, path, sizeof path);
    if (r == -ENAMETOOLONG) {
        ctl_err("DP path too long: %s", path_in);
        return CTL_FAIL;
    }
    if (r < 0) {
        ctl_err("the DP path must be an absolute path other than /: %s", path_in);
        return CTL_FAIL;
    }

    struct ctl_site s;
    if (ctl_site_open(c, &s, CTL_SITE_WRITE) != CTL_OK)
        return CTL_FAIL;
    int rc = CTL_FAIL;
    long long x;
    char other[64] = "";
    if (sitedb_begin(s.db) < 0) {
        ctl_db_fail(&s, "cannot begin a transaction");
        goto out;
    }
    if ((r = ctl_sql_int(s.db, &x, "SELECT 1 FROM dp WHERE name = ?1", "s", name)) == 0) {
        ctl_err("there is already a DP named %s", name);
        sitedb_rollback(s.db);
        goto out;
    }
    if (r != -ENOENT) {
        ctl_db_fail(&s, "cannot read the DPs");
        goto out;
    }
    sqlite3_stmt *st = NULL;
    if (sitedb_prepare(s.db, "SELECT name FROM dp WHERE path = ?1", &st) < 0) {
        ctl_db_fail(&s, "cannot read the DPs");
        goto out;
    }
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        (void)ss_strcpy(other, sizeof other, ctl_col_text(st, 0));
    sqlite3_finalize(st);
    if (other[0]) {
        ctl_err("DP %s already has the path %s", other, path);
        sitedb_rollback(s.db);
        goto out;
    }
    if (ctl_sql(s.db, NULL, "INSERT INTO dp (name, path, added_ms) VALUES (?1, ?2, ?3)",
                "ssi", name, path, (int64_t)ss_now_ms()) < 0) {
        ctl_db_fail(&s, "cannot add the DP");
        goto out;
    }
    if (sitedb_commit(s.db) < 0) {
        ctl_db_fail(&s, "cannot commit the new DP");
        goto out;
    }

    /* After the commit, so that the warning is not followed by a refusal. */
    if (ctl_dp_reachable(path, why, sizeof why) < 0)
        ctl_err("warning: DP path %s is not reachable now: %s; distmgr will retry it "
                "(sitectl never creates a DP root)", path, why);
    printf("added DP %s at %s\n", name, path);
    char done[SS_ERR_MAX];
    (void)ss_fmt(done, sizeof done, "DP %s was added", name);
    rc = ctl_tell_distmgr(&s, PKGREQ_RETRY, "*", done);
out:
    ctl_site_close(&s);
    return rc;
}

static int dp_remove(struct ctl *c, const char *name)
{
    if (!ctl_dp_name_ok(name))
        ctl_usage_error(c, "bad DP name '%s' (1 to 32 of A-Z a-z 0-9 _ . -)", name);
    struct ctl_site s;
    if (ctl_site_open(c, &s, CTL_SITE_WRITE) != CTL_OK)
        return CTL_FAIL;
    int rc = CTL_FAIL, nstate = 0, ntarget = 0, nretry = 0, n;
    char path[SS_PATH_MAX] = "";
    char (*targets)[CTL_TARGET_LEN] = NULL;
    int ntargets = 0;
    if (sitedb_begin(s.db) < 0) {
        ctl_db_fail(&s, "cannot begin a transaction");
        goto out;
    }
    sqlite3_stmt *st = NULL;
    if (sitedb_prepare(s.db, "SELECT path FROM dp WHERE name = ?1", &st) < 0) {
        ctl_db_fail(&s, "cannot read the DPs");
        goto out;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found)
        (void)ss_strcpy(path, sizeof path, ctl_col_text(st, 0));
    sqlite3_finalize(st);
    if (!found) {
        ctl_err("there is no DP named %s (sitectl dp list)", name);
        sitedb_rollback(s.db);
        goto out;
    }
    long long installed = 0;
    if (ctl_sql_int(s.db, &installed, "SELECT count(*) FROM dp_state WHERE dp = ?1 AND "
                    "state = 'installed'", "s", name) < 0 ||
        ctl_sql(s.db, &nstate, "DELETE FROM dp_state WHERE dp = ?1", "s", name) < 0 ||
        ctl_sql(s.db, &ntarget, "DELETE FROM package_dp WHERE dp = ?1", "s", name) < 0 ||
        ctl_dp_retry_targets(s.db, NULL, name, &targets, &ntargets) < 0) {
        ctl_db_fail(&s, "cannot remove the DP's state");
        goto out;
    }
    for (int i = 0; i < ntargets; i++) {
        if (retry_clear(s.db, "dp", targets[i], &n) < 0) {
            ctl_db_fail(&s, "cannot clear the DP's retry history");
            goto out;
        }
        nretry += n;
    }
    if (ctl_sql(s.db, NULL, "DELETE FROM dp WHERE name = ?1", "s", name) < 0) {
        ctl_db_fail(&s, "cannot remove the DP");
        goto out;
    }
    if (sitedb_commit(s.db) < 0) {
        ctl_db_fail(&s, "cannot commit the removal");
        goto out;
    }
    printf("removed DP %s (%s): %d package states, %d package targets, %d retry rows "
           "forgotten\n", name, path, nstate, ntarget, nretry);
    /* Say it every time: an administrator may expect the opposite. */
    printf("content already on the DP is left in %s (%lld packages were installed "
           "there); remove it yourself if nobody needs it\n", path, installed);
    rc = CTL_OK;
out:
    free(targets);
    ctl_site_close(&s);
    return rc;
}

static void dp_row(sqlite3_stmt *st, int json, struct sbuf *b)
{
    const char *name = ctl_col_text(st, 0), *path = ctl_col_text(st, 1);
    char why[SS_ERR_MAX];
    int ok = ctl_dp_reachable(path, why, sizeof why) == 0;
    long long inst = sqlite3_column_int64(st, 3);
    if (json) {
        ss_sbuf_adds(b, "{\"name\": ");
        ss_sbuf_add_json_str(b, name);
        ss_sbuf_adds(b, ", \"path\": ");
        ss_sbuf_add_json_str(b, path);
        ss_sbuf_addf(b, ", \"reachable\": %s, \"unreachable_reason\": ",
                     ok ? "true" : "false");
        if (ok)
            ss_sbuf_adds(b, "null");
        else
            ss_sbuf_add_json_str(b, why);
        ss_sbuf_addf(b, ", \"installed\": %lld, \"added\": ", inst);
        ctl_json_time(b, sqlite3_column_int64(st, 2));
        ss_sbuf_adds(b, "}");
    } else {
        printf("%-16s %-9s %9lld  %s%s%s%s\n", name, ok ? "yes" : "no", inst, path,
               ok ? "" : " (", ok ? "" : why, ok ? "" : ")");
    }
}

static int dp_list(struct ctl *c, const struct ctl_args *a)
{
    return ctl_site_listing(c, a->json, "SELECT d.name, d.path, d.added_ms, (SELECT "
                            "count(*) FROM dp_state t WHERE t.dp = d.name AND t.state = "
                            "'installed') FROM dp d ORDER BY d.name", "cannot read the DPs",
                            dp_row, "%-16s %-9s %9s  %s\n", "dp", "reachable", "installed",
                            "path");
}

static int dp_add_cmd(struct ctl *c, const struct ctl_args *a)
{
    return dp_add(c, a->pos[0], a->pos[1]);
}

static int dp_remove_cmd(struct ctl *c, const struct ctl_args *a)
{
    return dp_remove(c, a->pos[0]);
}

int cmd_dp(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_sub subs[] = {
        { "add", 0, 2, 2, dp_add_cmd },
        { "remove", 0, 1, 1, dp_remove_cmd },
        { "list", CTL_A_JSON, 0, 0, dp_list },
    };
    return ctl_subcommand(c, argc, argv, subs, SS_ARRAY_LEN(subs));
}

/* ---- site ---- */

/* SHA-256 of the DER SubjectPublicKeyInfo, lower-case hex (65 bytes). */
static int key_fingerprint(EVP_PKEY *pk, char *out)
{
    unsigned char *der = NULL, h[32];
    int n = i2d_PUBKEY(pk, &der);
    int r = n > 0 && ss_sha256(der, (size_t)n, h) == 0 ? 0 : -EINVAL;
    if (r == 0)
        ss_hex(h, sizeof h, out);
    OPENSSL_free(der);
    return r;
}

/* Read an Ed25519 public key from a PEM file; pem receives it re-encoded
 * (malloc'ed), fp its fingerprint.  CTL_OK or CTL_FAIL (printed). */
static int read_site_key(const char *file, char **pem, char *fp)
{
    *pem = NULL;
    BIO *in = BIO_new_file(file, "r");
    if (!in) {
        int e = errno;
        ctl_err("cannot read the key file %s: %s", file, e ? strerror(e) : "OpenSSL error");
        return CTL_FAIL;
    }
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(in, NULL, NULL, NULL);
    BIO_free(in);
    if (!pk) {
        ctl_err("%s holds no PEM public key (expected the other site's keys/site.pub)", file);
        return CTL_FAIL;
    }
    int rc = CTL_FAIL;
    BIO *mem = NULL;
    if (EVP_PKEY_get_id(pk) != EVP_PKEY_ED25519) {
        ctl_err("the key in %s is not an Ed25519 key (it is %s); sites sign with Ed25519",
                file, OBJ_nid2sn(EVP_PKEY_get_id(pk)) ? OBJ_nid2sn(EVP_PKEY_get_id(pk))
                                                       : "of an unknown type");
        goto out;
    }
    char *data;
    long n;
    if (!(mem = BIO_new(BIO_s_mem())) || PEM_write_bio_PUBKEY(mem, pk) != 1 ||
        (n = BIO_get_mem_data(mem, &data)) <= 0 || key_fingerprint(pk, fp) < 0) {
        ctl_err("cannot encode the key of %s (OpenSSL)", file);
        goto out;
    }
    *pem = strndup(data, (size_t)n);
    if (!*pem) {
        ctl_err("out of memory");
        goto out;
    }
    rc = CTL_OK;
out:
    BIO_free(mem);
    EVP_PKEY_free(pk);
    return rc;
}

/* The fingerprint of a stored PEM key, "" when it does not parse. */
static void pem_fingerprint(const char *pem, char *fp)
{
    fp[0] = '\0';
    BIO *mem = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pk = mem ? PEM_read_bio_PUBKEY(mem, NULL, NULL, NULL) : NULL;
    if (pk && key_fingerprint(pk, fp) < 0)
        fp[0] = '\0';
    EVP_PKEY_free(pk);
    BIO_free(mem);
}

static int site_add(struct ctl *c, const struct ctl_args *a)
{
    const char *code = a->pos[0];
    if (!ss_site_code_ok(code))
        ctl_usage_error(c, "bad site code '%s' (three of A-Z 0-9, e.g. CH1)", code);
    if (!a->address)
        ctl_usage_error(c, "--address file:PATH is required");
    if (!a->key)
        ctl_usage_error(c, "--key PUBFILE is required");
    if (strncmp(a->address, "file:", 5) != 0 || a->address[5] != '/')
        ctl_usage_error(c, "bad address '%s' (file:/absolute/path of the site's "
                        "despoolr.box/receive directory)", a->address);

    struct ctl_site s;
    if (ctl_site_open(c, &s, CTL_SITE_WRITE) != CTL_OK)
        return CTL_FAIL;
    int rc = CTL_FAIL;
    char *pem = NULL, fp[65];
    if (strcmp(code, s.code) == 0) {
        ctl_err("%s is this site's own code", code);
        goto out;
    }
    if (read_site_key(a->key, &pem, fp) != CTL_OK)
        goto out;
    const char *relation = strcmp(code, s.parent) == 0 ? "parent" : "child";
    long long x;
    int r, existed;
    if (sitedb_begin(s.db) < 0) {
        ctl_db_fail(&s, "cannot begin a transaction");
        goto out;
    }
    r = ctl_sql_int(s.db, &x, "SELECT 1 FROM site WHERE code = ?1", "s", code);
    if (r < 0 && r != -ENOENT) {
        ctl_db_fail(&s, "cannot read the sites");
        goto out;
    }
    existed = r == 0;
    if (ctl_sql(s.db, NULL, existed
                ? "UPDATE site SET address = ?2, pubkey = ?3, relation = ?4 WHERE code = ?1"
                : "INSERT INTO site (code, address, pubkey, relation, added_ms) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)",
                existed ? "ssss" : "ssssi", code, a->address, pem, relation,
                (int64_t)ss_now_ms()) < 0) {
        ctl_db_fail(&s, "cannot record the site");
        goto out;
    }
    if (sitedb_commit(s.db) < 0) {
        ctl_db_fail(&s, "cannot commit the site");
        goto out;
    }
    char why[SS_ERR_MAX];
    struct stat st;
    const char *dir = a->address + 5;
    if (stat(dir, &st) < 0)
        (void)ss_fmt(why, sizeof why, "%s", strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        (void)ss_fmt(why, sizeof why, "not a directory");
    else
        why[0] = '\0';
    if (why[0])
        ctl_err("warning: %s is not reachable now: %s; transfers to it are retried", dir, why);
    printf("%s %s site %s: address %s, key sha256:%s\n", existed ? "updated" : "added",
           relation, code, a->address, fp);
    char done[SS_ERR_MAX];
    (void)ss_fmt(done, sizeof done, "site %s was %s", code, existed ? "updated" : "added");
    rc = ctl_tell_distmgr(&s, PKGREQ_RETRY, "*", done);
out:
    free(pem);
    ctl_site_close(&s);
    return rc;
}

static int site_remove(struct ctl *c, const char *code)
{
    if (!ss_site_code_ok(code))
        ctl_usage_error(c, "bad site code '%s' (three of A-Z 0-9)", code);
    struct ctl_site s;
    if (ctl_site_open(c, &s, CTL_SITE_WRITE) != CTL_OK)
        return CTL_FAIL;
    int n = 0, rc = CTL_FAIL;
    if (ctl_sql(s.db, &n, "DELETE FROM site WHERE code = ?1", "s", code) < 0) {
        ctl_db_fail(&s, "cannot remove the site");
    } else if (n == 0) {
        ctl_err("there is no site %s (sitectl site list)", code);
    } else {
        printf("removed site %s; jobs already handed to the sender for it are not "
               "withdrawn\n", code);
        rc = CTL_OK;
    }
    ctl_site_close(&s);
    return rc;
}

static void site_row(sqlite3_stmt *st, int json, struct sbuf *b)
{
    char fp[65];
    pem_fingerprint(ctl_col_text(st, 3), fp);
    if (json) {
        ss_sbuf_adds(b, "{\"code\": ");
        ss_sbuf_add_json_str(b, ctl_col_text(st, 0));
        ss_sbuf_adds(b, ", \"relation\": ");
        ss_sbuf_add_json_str(b, ctl_col_text(st, 1));
        ss_sbuf_adds(b, ", \"address\": ");
        ss_sbuf_add_json_str(b, ctl_col_text(st, 2));
        ss_sbuf_adds(b, ", \"key_sha256\": ");
        ctl_json_str_or_null(b, fp);
        ss_sbuf_adds(b, ", \"added\": ");
        ctl_json_time(b, sqlite3_column_int64(st, 4));
        ss_sbuf_adds(b, "}");
    } else {
        printf("%-4s %-8s %-16.16s  %s\n", ctl_col_text(st, 0), ctl_col_text(st, 1),
               fp[0] ? fp : "(unreadable)", ctl_col_text(st, 2));
    }
}

static int site_list(struct ctl *c, const struct ctl_args *a)
{
    return ctl_site_listing(c, a->json, "SELECT code, relation, address, pubkey, added_ms "
                            "FROM site ORDER BY relation DESC, code", "cannot read the sites",
                            site_row, "%-4s %-8s %-16s  %s\n", "site", "relation",
                            "key sha256", "address");
}

static int site_remove_cmd(struct ctl *c, const struct ctl_args *a)
{
    return site_remove(c, a->pos[0]);
}

int cmd_site(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_sub subs[] = {
        { "add", CTL_A_ADDRESS | CTL_A_KEY, 1, 1, site_add },
        { "remove", 0, 1, 1, site_remove_cmd },
        { "list", CTL_A_JSON, 0, 0, site_list },
    };
    return ctl_subcommand(c, argc, argv, subs, SS_ARRAY_LEN(subs));
}
