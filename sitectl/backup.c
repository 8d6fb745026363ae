/*
 * NAME
 *   backup.c - sitectl backup now, backup list and restore: asking
 *   sitebkup for a backup, listing the backups of a site, and bringing up
 *   a new site root from one.
 *
 * SYNOPSIS
 *   cmd_backup(), cmd_restore()
 *
 * DESCRIPTION
 *   sitebkup alone runs backups: it holds the control file and may stop
 *   and start daemons, which a short-lived command must not do behind its
 *   back.  So `backup now` only drops a backup request (kind "backupreq",
 *   docs/formats.md "Backup requests and results") into sitebkup.box with
 *   inbox_drop, the same durable hand-off every writer uses; with --wait
 *   it then polls, every 100 ms, for the result sitebkup writes to
 *   sitebkup.box/results/<base>.res (base: the request's name without
 *   ".bkt"), prints it and removes it.  A request made while sitebkup is
 *   stopped waits in the inbox for its next start, so the wait says once
 *   that the daemon is not running and goes on waiting: an administrator
 *   may start it meanwhile.  The wait never hangs on a request that will
 *   have no result: when the request has left the inbox and work/ (it was
 *   quarantined, or removed by hand) and no result appeared within a grace
 *   period, the wait ends in a failure.
 *
 *   `backup list` and `restore` need no daemon: they read the backup
 *   directories through lib/backup (backup_list, backup_restore).  The
 *   backups of a site are in its backup.destination (default
 *   <root>/backup); a destination that does not exist yet holds none.
 *
 *   `restore BACKUP --root DIR` names the NEW root with --root (before
 *   the command or among its options, as everywhere): it needs no
 *   existing site, and it is the one command that does not fall back to
 *   $SITESRV_ROOT or the installed root, so that a forgotten --root never
 *   aims a restore at the site in use (backup_restore would refuse a
 *   non-empty root anyway, but the message would mislead).
 *
 * DIAGNOSTICS
 *   "sitectl: ..." on stderr.  Exit 0 success; 1 failure (no site, a
 *   request that could not be dropped, a backup that failed, a wait that
 *   timed out, a listing that could not be read, a restore refused or
 *   failed: a damaged backup names the file that differs); 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "conf.h"
#include "fsutil.h"
#include "inbox.h"
#include "record.h"
#include "sitectl.h"

#define REQ_SUFFIX   ".bkt"
#define RES_SUFFIX   ".res"
#define RESULTS_DIR  "results"
#define POLL_MS      100
/* A request gone from the inbox and from work/ without a result: the
 * daemon may be between finishing the request and renaming its result
 * in, so the wait allows it this long before it calls the request lost. */
#define LOST_GRACE_MS 10000
#define RES_MAX_SIZE (64 * 1024)

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- backup now ---- */

/* A timeout for messages: "2 s", "1.5 s". */
static void fmt_seconds(int64_t ms, char *buf, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%lld s", (long long)(ms / 1000));
    else
        snprintf(buf, len, "%.1f s", (double)ms / 1000.0);
}

/* Is the request base+".bkt" still in sitebkup.box or its work/? */
static int request_present(const char *box, const char *name)
{
    char p[SS_PATH_MAX];
    struct stat st;
    if (ss_path(p, sizeof p, "%s/%s", box, name) == 0 && lstat(p, &st) == 0)
        return 1;
    if (ss_path(p, sizeof p, "%s/work/%s", box, name) == 0 && lstat(p, &st) == 0)
        return 1;
    return 0;
}

/*
 * Read and print the result resdir/resname, then remove it.  CTL_OK for
 * a backup that succeeded, CTL_FAIL for one that failed or a result that
 * cannot be read (left in place, for the administrator to look at).
 * -ENOENT when there is no result yet.
 */
static int read_result(int resfd, const char *resdir, const char *resname)
{
    char *buf = NULL, err[SS_ERR_MAX] = "";
    size_t len = 0;
    int r = ss_read_file(resfd, resname, RES_MAX_SIZE, &buf, &len);
    if (r == -ENOENT)
        return -ENOENT;
    if (r < 0) {
        ctl_err("cannot read the result %s/%s: %s", resdir, resname, strerror(-r));
        return CTL_FAIL;
    }
    struct rec rec;
    memset(&rec, 0, sizeof rec);
    int rc = CTL_FAIL;
    r = rec_parse(&rec, buf, len, &rec_default_limits, err, sizeof err);
    if (r < 0) {
        ctl_err("the result %s/%s does not parse: %s", resdir, resname,
                err[0] ? err : strerror(-r));
        goto out;
    }
    if (strcmp(rec.kind, "backupres") != 0 || rec.version != 1) {
        ctl_err("the result %s/%s is a %s record of version %d, not backupres 1", resdir,
                resname, rec.kind, rec.version);
        goto out;
    }
    const char *status = rec_need(&rec, "status", err, sizeof err);
    if (!status) {
        ctl_err("the result %s/%s: %s", resdir, resname, err);
        goto out;
    }
    const char *path = rec_get(&rec, "path");
    const char *error = rec_get(&rec, "error");
    if (strcmp(status, "succeeded") == 0) {
        printf("backup %s succeeded\n", path && *path ? path : "(no path given)");
        rc = CTL_OK;
    } else if (strcmp(status, "failed") == 0) {
        ctl_err("backup failed: %s", error && *error ? error : "(no reason given)");
    } else {
        ctl_err("the result %s/%s has an unknown status '%s'", resdir, resname, status);
        goto out;
    }
    /* Read and reported: the result has done its work.  A failure to
     * remove it only leaves a file behind, which is worth a word. */
    if (unlinkat(resfd, resname, 0) < 0 && errno != ENOENT)
        fprintf(stderr, "sitectl: warning: cannot remove the result %s/%s: %s\n", resdir,
                resname, strerror(errno));
out:
    rec_free(&rec);
    free(buf);
    return rc;
}

/* Wait for the result of request name (in box), at most limit_ms (< 0:
 * no limit). */
static int wait_result(const char *root, const char *box, const char *name,
                       int64_t limit_ms)
{
    char base[SS_NAME_MAX + 1], resname[SS_NAME_MAX + 1], resdir[SS_PATH_MAX];
    size_t bl = strlen(name) - strlen(REQ_SUFFIX);
    if (ss_fmt(base, sizeof base, "%.*s", (int)bl, name) < 0 ||
        ss_fmt(resname, sizeof resname, "%s%s", base, RES_SUFFIX) < 0 ||
        ss_path(resdir, sizeof resdir, "%s/%s", box, RESULTS_DIR) < 0) {
        ctl_err("the result path of %s is too long", name);
        return CTL_FAIL;
    }

    int64_t start = ss_mono_ms(), lost_since = -1;
    int told = 0, resfd = -1;
    for (;;) {
        /* results/ is the daemon's to create: until it exists there is
         * no result. */
        if (resfd < 0)
            resfd = open(resdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (resfd < 0 && errno != ENOENT) {
            ctl_err("cannot open %s: %s", resdir, strerror(errno));
            return CTL_FAIL;
        }
        if (resfd >= 0) {
            int r = read_result(resfd, resdir, resname);
            if (r != -ENOENT) {
                close(resfd);
                return r;
            }
        }
        /* No result.  A request that left the inbox without one is not
         * coming back; the daemon writes its result before it lets go of
         * the request, and the grace covers one that does it the other
         * way round. */
        if (request_present(box, name)) {
            lost_since = -1;
        } else if (lost_since < 0) {
            lost_since = ss_mono_ms();
        } else if (ss_mono_ms() - lost_since >= LOST_GRACE_MS) {
            ctl_err("the request %s left %s without a result (quarantined? see %s/corrupt)",
                    name, box, box);
            break;
        }
        if (!told && ctl_daemon_pid(root, "sitebkup") <= 0) {
            fprintf(stderr, "sitectl: sitebkup is not running: the request waits for it\n");
            told = 1;
        }
        if (limit_ms >= 0 && ss_mono_ms() - start >= limit_ms) {
            char secs[32];
            fmt_seconds(limit_ms, secs, sizeof secs);
            ctl_err("no result within %s (the request stays queued)", secs);
            break;
        }
        sleep_ms(POLL_MS);
    }
    if (resfd >= 0)
        close(resfd);
    return CTL_FAIL;
}

static int backup_now(struct ctl *c, int wait, const char *timeout)
{
    int64_t limit_ms = -1;
    if (timeout && (ss_parse_duration_ms(timeout, &limit_ms) < 0 || limit_ms < 0))
        ctl_usage_error(c, "bad --timeout '%s' (seconds, or a duration such as 10m)", timeout);
    if (timeout && !wait)
        ctl_usage_error(c, "--timeout goes with --wait");

    const char *root = ctl_root(c);
    struct ss_conf *cf = calloc(1, sizeof *cf);
    if (!cf) {
        ctl_err("out of memory");
        return CTL_FAIL;
    }
    if (ctl_load_conf(root, cf, NULL, 0) < 0) {
        free(cf);
        return CTL_FAIL;
    }
    char prefix[UNIQ_PREFIX_MAX + 1], now[64];
    uniq_prefix_sanitize(cf->site_code, prefix, sizeof prefix);
    free(cf);

    struct sbuf b;
    ss_sbuf_init(&b);
    int rc = CTL_FAIL;
    if (ss_fmt_time_iso(ss_now_ms(), now, sizeof now) < 0 ||
        rec_begin(&b, "backupreq", 1) < 0 || rec_add(&b, "requested", now) < 0 ||
        rec_add(&b, "by", "sitectl") < 0 || rec_end(&b) < 0 || !b.data) {
        ctl_err("out of memory");
        ss_sbuf_free(&b);
        return CTL_FAIL;
    }

    struct inbox ib;
    char name[SS_NAME_MAX + 1];
    int r = inbox_open(&ib, root, IB_SITEBKUP, prefix, 0);
    if (r < 0) {
        ctl_err("cannot open the inbox %s/inboxes/sitebkup.box: %s", root, strerror(-r));
        goto out;
    }
    r = inbox_drop(&ib, REQ_SUFFIX, b.data, b.len, name, sizeof name);
    char box[SS_PATH_MAX];
    int pr = ss_path(box, sizeof box, "%s/inboxes/sitebkup.box", root);
    inbox_close(&ib);
    if (r < 0) {
        ctl_err("cannot drop a backup request into %s/inboxes/sitebkup.box: %s", root,
                strerror(-r));
        goto out;
    }
    printf("backup requested (%s)\n", name);
    fflush(stdout);
    if (!wait) {
        rc = CTL_OK;
        goto out;
    }
    if (pr < 0) {
        ctl_err("the path of %s/inboxes/sitebkup.box is too long", root);
        goto out;
    }
    rc = wait_result(root, box, name, limit_ms);
out:
    ss_sbuf_free(&b);
    return rc;
}

/* ---- backup list ---- */

static int backup_listing(struct ctl *c, int json)
{
    const char *root = ctl_root(c);
    struct ss_conf *cf = calloc(1, sizeof *cf);
    if (!cf) {
        ctl_err("out of memory");
        return CTL_FAIL;
    }
    if (ctl_load_conf(root, cf, NULL, 0) < 0) {
        free(cf);
        return CTL_FAIL;
    }
    char dest[SS_PATH_MAX];
    (void)ss_strcpy(dest, sizeof dest, cf->backup_destination);
    free(cf);

    struct backup_info *v = NULL;
    size_t n = 0;
    int r = backup_list(dest, &v, &n);
    if (r == -ENOENT) {
        v = NULL;       /* no destination yet: no backups */
        n = 0;
    } else if (r < 0) {
        ctl_err("cannot list the backups in %s: %s", dest, strerror(-r));
        return CTL_FAIL;
    }

    int rc = CTL_OK;
    if (json) {
        struct sbuf b;
        ss_sbuf_init(&b);
        ss_sbuf_adds(&b, "[");
        for (size_t i = 0; i < n; i++) {
            const struct backup_info *bi = &v[i];
            ss_sbuf_adds(&b, i ? ",\n  {\"path\": " : "\n  {\"path\": ");
            ss_sbuf_add_json_str(&b, bi->path);
            ss_sbuf_adds(&b, ", \"time\": ");
            ctl_json_time(&b, bi->time_ms);
            ss_sbuf_adds(&b, ", \"status\": ");
            ss_sbuf_add_json_str(&b, backup_status_name(bi->status));
            ss_sbuf_adds(&b, ", \"name\": ");
            ss_sbuf_add_json_str(&b, bi->name);
            ss_sbuf_adds(&b, ", \"site\": ");
            ctl_json_str_or_null(&b, bi->site);
            ss_sbuf_addf(&b, ", \"files\": %lld, \"bytes\": %lld}", bi->files, bi->bytes);
        }
        rc = ctl_json_array_end(&b, (int)n);
        ss_sbuf_free(&b);
    } else if (n == 0) {
        printf("(no backups in %s)\n", dest);
    } else {
        printf("%-28s %-4s %-24s %-10s %8s %10s\n", "name", "site", "time", "status",
               "files", "size");
        for (size_t i = 0; i < n; i++) {
            const struct backup_info *bi = &v[i];
            char t[64] = "-", size[32];
            if (bi->time_ms > 0)
                (void)ss_fmt_time_iso(bi->time_ms, t, sizeof t);
            ctl_fmt_bytes(bi->bytes, size, sizeof size);
            printf("%-28s %-4s %-24s %-10s %8lld %10s\n", bi->name,
                   bi->site[0] ? bi->site : "-", t, backup_status_name(bi->status),
                   bi->files, size);
        }
        printf("in %s\n", dest);
    }
    free(v);
    return rc;
}

int cmd_backup(struct ctl *c, int argc, char **argv)
{
    const char *sub = NULL, *timeout = NULL;
    int wait = 0, json = 0;
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            if (ctl_common(c, argc, argv, &i))
                continue;
            if (ctl_flag(argv[i], "--wait"))
                wait = 1;
            else if (ctl_flag(argv[i], "--json"))
                json = 1;
            else if (!ctl_opt(c, argc, argv, &i, "--timeout", &timeout))
                ctl_usage_error(c, "unknown option %s", argv[i]);
            continue;
        }
        if (sub)
            ctl_usage_error(c, "unexpected argument %s", argv[i]);
        sub = argv[i];
    }
    if (!sub)
        ctl_usage_error(c, "backup needs now or list");
    if (strcmp(sub, "now") == 0) {
        if (json)
            ctl_usage_error(c, "backup now takes no --json option");
        return backup_now(c, wait, timeout);
    }
    if (strcmp(sub, "list") == 0) {
        if (wait || timeout)
            ctl_usage_error(c, "backup list takes no %s option", wait ? "--wait" : "--timeout");
        return backup_listing(c, json);
    }
    ctl_usage_error(c, "unknown backup subcommand '%s'", sub);
}

/* ---- restore ---- */

/* path made absolute against the working directory, trailing slashes
 * dropped.  0 or -ENAMETOOLONG / -errno of getcwd. */
static int absolute(const char *path, char *out, size_t len)
{
    int r;
    if (path[0] == '/') {
        r = ss_strcpy(out, len, path);
    } else {
        char cwd[SS_PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return -errno;
        r = ss_path(out, len, "%s/%s", cwd, path);
    }
    if (r < 0)
        return r;
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
    return 0;
}

/* What the backup holds, from the listing of its directory (the manifest
 * as lib/backup reads it): 0 with *info, else -ENOENT. */
static int describe(const char *path, struct backup_info *info)
{
    const char *slash = strrchr(path, '/');
    char dir[SS_PATH_MAX];
    if (!slash || ss_fmt(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path),
                         path) < 0)
        return -ENOENT;
    struct backup_info *v = NULL;
    size_t n = 0;
    int r = -ENOENT;
    if (backup_list(dir, &v, &n) < 0)
        return -ENOENT;
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, slash + 1) == 0) {
            *info = v[i];
            r = 0;
            break;
        }
    free(v);
    return r;
}

int cmd_restore(struct ctl *c, int argc, char **argv)
{
    const char *backup = NULL;
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            if (!ctl_common(c, argc, argv, &i))
                ctl_usage_error(c, "unknown option %s", argv[i]);
            continue;
        }
        if (backup)
            ctl_usage_error(c, "unexpected argument %s", argv[i]);
        backup = argv[i];
    }
    if (!backup || !*backup)
        ctl_usage_error(c, "restore needs the backup directory");
    if (!c->root_opt)
        ctl_usage_error(c, "restore needs --root DIR, the root of the new site");

    char path[SS_PATH_MAX];
    int r = absolute(backup, path, sizeof path);
    if (r < 0) {
        ctl_err("cannot make the backup path %s absolute: %s", backup, strerror(-r));
        return CTL_FAIL;
    }
    struct stat st;
    if (stat(path, &st) < 0) {
        ctl_err("%s: %s", path, errno == ENOENT ? "no such backup" : strerror(errno));
        return CTL_FAIL;
    }
    if (!S_ISDIR(st.st_mode)) {
        ctl_err("%s is not a backup directory", path);
        return CTL_FAIL;
    }
    const char *root = ctl_root(c);

    char err[SS_ERR_MAX] = "";
    r = backup_restore(path, root, err, sizeof err);
    if (r < 0) {
        ctl_err("cannot restore %s into %s: %s", path, root, err[0] ? err : strerror(-r));
        return CTL_FAIL;
    }
    struct backup_info info;
    if (describe(path, &info) == 0) {
        char size[32];
        ctl_fmt_bytes(info.bytes, size, sizeof size);
        printf("restored %s into %s: site %s, %lld files, %lld bytes (%s)\n", path, root,
               info.site[0] ? info.site : "?", info.files, info.bytes, size);
    } else {
        printf("restored %s into %s\n", path, root);
    }
    printf("next: sitectl --root %s start\n", root);
    return CTL_OK;
}
