/*
 * NAME
 *   send.c - sitectl send list and send now: what the scheduler and the
 *   sender still have to send, per site, with each site's throttle; a
 *   site's throttle made due now (and the sender told, SIGHUP).
 *
 * SYNOPSIS
 *   cmd_send(), ctl_send_scan(), ctl_send_state()
 *
 * DESCRIPTION
 *   The sender keeps its state in files and in one retry row per site, so
 *   sitectl reads those and needs no daemon: every send request
 *   (inboxes/schedule.box/requests/R.srq, rewritten by the sender as the
 *   transfer goes: attempts, next try, last error, confirmed offset) and
 *   every job the scheduler has not yet turned into a request
 *   (schedule.box/R.job, or claimed in schedule.box/work/).  A job and a
 *   request of the same base name R are one send: the request is the
 *   scheduler's record of that job (sendreq.h), so the job is not listed
 *   twice when a kill left both.  The throttle of a whole site is the
 *   retry row of scope "send" whose target is the site code (the hop).
 *
 *   A send request is listed under its hop, the site it is sent to; a job
 *   not yet scheduled is listed under the hop the scheduler will choose
 *   (route_job()): the destination when it is a site of ours, the child
 *   the route table names for a site below it, else the parent.  A file that cannot be read or parsed is listed with its
 *   error (state "unreadable") rather than ending the listing: the sender
 *   quarantines it, and the operator should see it until then.  A file
 *   that disappears between the directory listing and its reading was
 *   taken or finished meanwhile, and is left out.
 *
 *   ctl_send_scan() is shared with package show (package.c), which calls
 *   a child site "sending" while a request or job for the package's
 *   version to that site waits here.
 *
 * DIAGNOSTICS
 *   "sitectl: ..." on stderr.  Exit 0 with the listing (also when empty:
 *   "(nothing to send)", or [] with --json); 1 when the root is no site,
 *   a directory of schedule.box cannot be listed, or the retry table
 *   cannot be read; 2 usage.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "retry.h"
#include "sendreq.h"
#include "sitedb.h"
#include "sitectl.h"

static int has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && strcmp(name + n - k, suffix) == 0;
}

/* The base name R of "R.srq" or "R.job" into out. */
static void base_name(const char *name, char *out, size_t len)
{
    (void)ss_strcpy(out, len, name);
    char *dot = strrchr(out, '.');
    if (dot && dot != out)
        *dot = '\0';
}

/* The bytes a job will send: its files as they are now (0 for one that
 * is missing: the scheduler reports that, not the listing). */
static int64_t job_size(const char *root, const struct job *j)
{
    const char *files[2] = { NULL, NULL };
    int64_t total = 0;
    if (j->type == SEND_PACKAGE) {
        files[0] = j->instruction;
        files[1] = j->package_file;
    } else {
        files[0] = j->status_file;
    }
    for (size_t i = 0; i < SS_ARRAY_LEN(files); i++) {
        char path[SS_PATH_MAX];
        struct stat st;
        if (files[i] && ss_path(path, sizeof path, "%s/%s", root, files[i]) == 0 &&
            stat(path, &st) == 0 && S_ISREG(st.st_mode))
            total += st.st_size;
    }
    return total;
}

/* Append one item to *v (growing it).  NULL when out of memory. */
static struct ctl_send_item *push(struct ctl_send_item **v, int *n, int *cap)
{
    if (*n == *cap) {
        int ncap = *cap ? *cap * 2 : 16;
        struct ctl_send_item *nv = realloc(*v, (size_t)ncap * sizeof *nv);
        if (!nv)
            return NULL;
        *v = nv;
        *cap = ncap;
    }
    struct ctl_send_item *it = &(*v)[(*n)++];
    memset(it, 0, sizeof *it);
    return it;
}

/* Is there already an item of base name R (a request of that job)? */
static int listed(const struct ctl_send_item *v, int n, const char *base)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].base, base) == 0)
            return 1;
    return 0;
}

/* Read every file of one directory of schedule.box (rel: relative to the
 * root) whose name ends in suffix.  A missing directory holds nothing.
 * 0, or -errno (err says which directory) when it cannot be listed. */
static int scan_dir(const char *root, const char *rel, const char *suffix, int jobs,
                    struct ctl_send_item **v, int *n, int *cap, char *err, size_t errlen)
{
    char dir[SS_PATH_MAX];
    if (ss_path(dir, sizeof dir, "%s/%s", root, rel) < 0) {
        (void)ss_fmt(err, errlen, "the path of %s/%s is too long", root, rel);
        return -ENAMETOOLONG;
    }
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        if (e == ENOENT)
            return 0;
        (void)ss_fmt(err, errlen, "cannot list %s: %s", dir, strerror(e));
        return -e;
    }
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (name[0] == '.' || !has_suffix(name, suffix))
            continue;
        char base[SS_NAME_MAX + 1];
        base_name(name, base, sizeof base);
        /* A job moved into work/ while we listed, or already scheduled
         * as a request: one send, listed once. */
        if (listed(*v, *n, base))
            continue;
        struct ctl_send_item it;
        memset(&it, 0, sizeof it);
        (void)ss_strcpy(it.name, sizeof it.name, name);
        (void)ss_strcpy(it.base, sizeof it.base, base);
        if (ss_path(it.file, sizeof it.file, "%s/%s", rel, name) < 0)
            continue;
        int lr;
        if (jobs) {
            char *buf = NULL;
            size_t len = 0;
            struct job j;
            lr = ss_read_file(dirfd(d), name, SENDREQ_MAX_SIZE, &buf, &len);
            if (lr < 0)
                (void)ss_fmt(it.error, sizeof it.error, "cannot read %s: %s", name,
                             strerror(-lr));
            else
                lr = job_parse(buf, len, &j, it.error, sizeof it.error);
            free(buf);
            if (lr == 0) {
                it.kind = CTL_SEND_JOB;
                it.q.type = j.type;
                (void)ss_strcpy(it.q.dest, sizeof it.q.dest, j.site);
                (void)ss_strcpy(it.q.hop, sizeof it.q.hop, j.site);
                it.q.priority = j.priority;
                (void)ss_strcpy(it.q.package, sizeof it.q.package, j.package);
                it.q.version = j.version;
                it.q.size = job_size(root, &j);
                it.q.created_ms = j.created_ms;
            }
        } else {
            lr = srq_load(dirfd(d), name, &it.q, it.error, sizeof it.error);
            if (lr == 0)
                it.kind = CTL_SEND_REQUEST;
        }
        if (lr == -ENOENT)
            continue;                   /* taken or done meanwhile */
        if (lr < 0)
            it.kind = CTL_SEND_UNREADABLE;
        struct ctl_send_item *slot = push(v, n, cap);
        if (!slot) {
            (void)ss_fmt(err, errlen, "out of memory");
            r = -ENOMEM;
            break;
        }
        *slot = it;
    }
    closedir(d);
    return r;
}

int ctl_send_scan(const char *root, struct ctl_send_item **out, int *n, char *err,
                  size_t errlen)
{
    /* Requests first, so that a job already scheduled is recognised. */
    static const struct { const char *rel, *suffix; int jobs; } dirs[] = {
        { "inboxes/schedule.box/requests", ".srq", 0 },
        { "inboxes/schedule.box/requests/work", ".srq", 0 },
        { "inboxes/schedule.box", ".job", 1 },
        { "inboxes/schedule.box/work", ".job", 1 },
    };
    struct ctl_send_item *v = NULL;
    int k = 0, cap = 0, r = 0;
    *out = NULL;
    *n = 0;
    for (size_t i = 0; r == 0 && i < SS_ARRAY_LEN(dirs); i++)
        r = scan_dir(root, dirs[i].rel, dirs[i].suffix, dirs[i].jobs, &v, &k, &cap, err,
                     errlen);
    if (r < 0) {
        free(v);
        return r;
    }
    *out = v;
    *n = k;
    return 0;
}

const char *ctl_send_state(const struct ctl_send_item *it, int64_t now_ms)
{
    switch (it->kind) {
    case CTL_SEND_JOB:
        return "queued";
    case CTL_SEND_UNREADABLE:
        return "unreadable";
    default:
        return it->q.next_ms > now_ms ? "waiting" : "pending";
    }
}

/* ---- send list ---- */
/* The hop of a job not yet scheduled, as the scheduler will choose it:
 * a site of ours (child or parent) directly; a site below a child
 * through that child (the route table, learnt from status bundles);
 * anything else up through the parent.  Without an answer (no database,
 * a database without the route table yet, no parent) the hop stays the
 * destination.  Nothing here is an error: the listing only groups. */
static void route_job(sqlite3 *db, const char *parent, struct sendreq *q)
{
    static const char *const sql[] = {
        "SELECT code FROM site WHERE code = ?1",
        "SELECT via FROM route WHERE site = ?1",
    };
    if (!db)
        return;
    for (size_t i = 0; i < SS_ARRAY_LEN(sql); i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sql[i], -1, &st, NULL) != SQLITE_OK) {
            sqlite3_finalize(st);
            continue;
        }
        sqlite3_bind_text(st, 1, q->dest, -1, SQLITE_STATIC);
        int found = 0;
        if (sqlite3_step(st) == SQLITE_ROW) {
            const char *hop = ctl_col_text(st, 0);
            if (ss_site_code_ok(hop)) {
                (void)ss_strcpy(q->hop, sizeof q->hop, hop);
                found = 1;
            }
        }
        sqlite3_finalize(st);
        if (found)
            return;
    }
    if (parent[0])
        (void)ss_strcpy(q->hop, sizeof q->hop, parent);
}


/* Requests by site (unreadable ones last), then priority, then age. */
static int item_cmp(const void *a, const void *b)
{
    const struct ctl_send_item *x = a, *y = b;
    int bx = x->kind == CTL_SEND_UNREADABLE, by = y->kind == CTL_SEND_UNREADABLE;
    if (bx != by)
        return bx - by;
    int c = strcmp(x->q.hop, y->q.hop);
    if (c)
        return c;
    if (x->q.priority != y->q.priority)
        return (int)x->q.priority - (int)y->q.priority;
    if (x->q.created_ms != y->q.created_ms)
        return x->q.created_ms < y->q.created_ms ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The sites to show a header for: every hop of a readable item and
 * every site with a throttle row, sorted, each once. */
struct sites {
    char (*code)[SS_SITE_LEN + 1];
    int n, cap;
};

static int sites_add(struct sites *s, const char *code)
{
    if (!ss_site_code_ok(code))
        return 0;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->code[i], code) == 0)
            return 0;
    if (s->n == s->cap) {
        int ncap = s->cap ? s->cap * 2 : 8;
        void *p = realloc(s->code, (size_t)ncap * sizeof *s->code);
        if (!p)
            return -ENOMEM;
        s->code = p;
        s->cap = ncap;
    }
    (void)ss_strcpy(s->code[s->n++], SS_SITE_LEN + 1, code);
    return 0;
}

static int throttle_cb(void *arg, const struct retry_state *rs)
{
    return sites_add(arg, rs->target);
}

static int code_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The throttle of one site: 0 with *rs, -ENOENT without a row (or
 * without a database), -EIO. */
static int throttle(sqlite3 *db, const char *code, struct retry_state *rs)
{
    if (!db || !code[0])
        return -ENOENT;
    return retry_get(db, "send", code, rs);
}

static void fmt_next(int64_t next_ms, int64_t now, char *buf, size_t len)
{
    if (next_ms <= 0 || next_ms <= now) {
        snprintf(buf, len, next_ms > 0 ? "due" : "-");
        return;
    }
    char span[24];
    ctl_fmt_span((next_ms - now + 999) / 1000, span, sizeof span);
    snprintf(buf, len, "in %s", span);
}

static void print_header(const char *code, int have, const struct retry_state *rs, int64_t now)
{
    char next[32] = "-";
    if (have == 0 && rs->state == RETRY_RETRYING)
        fmt_next(rs->next_ms, now, next, sizeof next);
    else if (have == 0)
        snprintf(next, sizeof next, "never (failed)");
    printf("site %s: attempts %lld, next retry %s, last error: %s\n", code,
           have == 0 ? rs->attempts : 0LL, next,
           have == 0 && rs->last_error[0] ? rs->last_error : "-");
}

static void print_item(const struct ctl_send_item *it, int64_t now)
{
    if (it->kind == CTL_SEND_UNREADABLE) {
        printf("  %-36s unreadable: %s\n", it->base, it->error);
        return;
    }
    const struct sendreq *q = &it->q;
    char pkg[48] = "-", progress[80] = "-", next[32] = "-", total[32], done[32];
    if (q->type == SEND_PACKAGE)
        snprintf(pkg, sizeof pkg, "%s-%lld", q->package, q->version);
    ctl_fmt_bytes(q->size, total, sizeof total);
    if (it->kind == CTL_SEND_JOB) {
        snprintf(progress, sizeof progress, "0 of %s", total);
    } else if (q->size > 0) {
        ctl_fmt_bytes(q->offset, done, sizeof done);
        snprintf(progress, sizeof progress, "%d%% %s/%s",
                 (int)(q->offset >= q->size ? 100 : q->offset * 100 / q->size), done, total);
    }
    if (it->kind == CTL_SEND_REQUEST)
        fmt_next(q->next_ms, now, next, sizeof next);
    /* A request whose hop is not its destination (routed through another
     * site) says where it is going in the end. */
    char dest[16] = "";
    if (strcmp(q->dest, q->hop) != 0)
        snprintf(dest, sizeof dest, " (for %s)", q->dest);
    printf("  %-36s %-7s %-7s %-16s %-6s %-20s %8lld %-8s %s%s\n", it->base,
           q->type == SEND_PACKAGE ? "package" : "status", ctl_send_state(it, now), pkg,
           prio_name(q->priority), progress, q->attempts, next,
           q->last_error[0] ? q->last_error : "-", dest);
}

static void json_item(struct sbuf *b, sqlite3 *db, const struct ctl_send_item *it,
                      int64_t now)
{
    const struct sendreq *q = &it->q;
    int bad = it->kind == CTL_SEND_UNREADABLE;
    int req = it->kind == CTL_SEND_REQUEST;
    ss_sbuf_adds(b, "{\"site\": ");
    ctl_json_str_or_null(b, bad ? NULL : q->hop);
    ss_sbuf_adds(b, ", \"dest\": ");
    ctl_json_str_or_null(b, bad ? NULL : q->dest);
    ss_sbuf_adds(b, ", \"request\": ");
    ss_sbuf_add_json_str(b, it->base);
    ss_sbuf_adds(b, ", \"file\": ");
    ss_sbuf_add_json_str(b, it->file);
    ss_sbuf_adds(b, ", \"type\": ");
    ctl_json_str_or_null(b, bad ? NULL : q->type == SEND_PACKAGE ? "package" : "status");
    ss_sbuf_adds(b, ", \"package\": ");
    ctl_json_str_or_null(b, !bad && q->type == SEND_PACKAGE ? q->package : NULL);
    if (!bad && q->type == SEND_PACKAGE)
        ss_sbuf_addf(b, ", \"version\": %lld", q->version);
    else
        ss_sbuf_adds(b, ", \"version\": null");
    ss_sbuf_adds(b, ", \"priority\": ");
    ctl_json_str_or_null(b, bad ? NULL : prio_name(q->priority));
    ss_sbuf_adds(b, ", \"state\": ");
    ss_sbuf_add_json_str(b, ctl_send_state(it, now));
    ss_sbuf_addf(b, ", \"attempts\": %lld, \"next_retry\": ", q->attempts);
    ctl_json_time(b, req ? q->next_ms : 0);
    ss_sbuf_adds(b, ", \"last_error\": ");
    ctl_json_str_or_null(b, bad ? it->error : q->last_error);
    ss_sbuf_addf(b, ", \"size\": %lld, \"offset\": %lld, \"pck_done\": %s, \"xfer\": ",
                 (long long)q->size, (long long)q->offset, q->pck_done ? "true" : "false");
    ctl_json_str_or_null(b, req ? q->xfer : NULL);
    ss_sbuf_adds(b, ", \"created\": ");
    ctl_json_time(b, q->created_ms);

    struct retry_state rs;
    int have = bad ? -ENOENT : throttle(db, q->hop, &rs);
    ss_sbuf_addf(b, ", \"site_attempts\": %lld, \"site_next_retry\": ",
                 have == 0 ? rs.attempts : 0LL);
    ctl_json_time(b, have == 0 && rs.state == RETRY_RETRYING ? rs.next_ms : 0);
    ss_sbuf_adds(b, ", \"site_last_error\": ");
    ctl_json_str_or_null(b, have == 0 ? rs.last_error : NULL);
    ss_sbuf_adds(b, "}");
}

static int send_list(struct ctl *c, const struct ctl_args *a)
{
    struct ctl_site s;
    if (ctl_site_open(c, &s, 0) != CTL_OK)
        return CTL_FAIL;
    struct ctl_send_item *v = NULL;
    struct sites sites = { NULL, 0, 0 };
    struct sbuf b;
    ss_sbuf_init(&b);
    int n = 0, rc = CTL_FAIL;
    char err[SS_ERR_MAX] = "";
    int64_t now = ss_now_ms();

    if (ctl_send_scan(s.root, &v, &n, err, sizeof err) < 0) {
        ctl_err("%s", err);
        goto out;
    }
    for (int i = 0; i < n; i++)
        if (v[i].kind == CTL_SEND_JOB)
            route_job(s.db, s.parent, &v[i].q);
    if (n > 1)
        qsort(v, (size_t)n, sizeof *v, item_cmp);

    if (a->json) {
        /* Each throttle is read before the array is printed, so that a
         * database error prints nothing half made. */
        ss_sbuf_adds(&b, "[");
        for (int i = 0; i < n; i++) {
            ss_sbuf_adds(&b, i ? ",\n  " : "\n  ");
            json_item(&b, s.db, &v[i], now);
        }
        rc = ctl_json_array_end(&b, n);
        goto out;
    }

    for (int i = 0; i < n; i++)
        if (v[i].kind != CTL_SEND_UNREADABLE && sites_add(&sites, v[i].q.hop) < 0) {
            ctl_err("out of memory");
            goto out;
        }
    int lr = s.db ? retry_list(s.db, "send", NULL, throttle_cb, &sites) : 0;
    if (lr == -ENOMEM) {
        ctl_err("out of memory");
        goto out;
    }
    if (lr < 0) {
        rc = ctl_db_fail(&s, "cannot read the send retry history");
        goto out;
    }
    if (sites.n > 1)
        qsort(sites.code, (size_t)sites.n, sizeof *sites.code, code_cmp);
    if (n == 0 && sites.n == 0) {
        printf("(nothing to send)\n");
        rc = CTL_OK;
        goto out;
    }
    printf("  %-36s %-7s %-7s %-16s %-6s %-20s %8s %-8s %s\n", "request", "type", "state",
           "package-version", "prio", "progress", "attempts", "next try", "last error");
    for (int k = 0; k < sites.n; k++) {
        struct retry_state rs;
        int have = throttle(s.db, sites.code[k], &rs);
        if (have < 0 && have != -ENOENT) {
            rc = ctl_db_fail(&s, "cannot read the send retry history");
            goto out;
        }
        print_header(sites.code[k], have, &rs, now);
        int shown = 0;
        for (int i = 0; i < n; i++)
            if (v[i].kind != CTL_SEND_UNREADABLE && strcmp(v[i].q.hop, sites.code[k]) == 0) {
                print_item(&v[i], now);
                shown++;
            }
        if (!shown)
            printf("  (nothing waiting)\n");
    }
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (v[i].kind == CTL_SEND_UNREADABLE) {
            if (!bad++)
                printf("unreadable (the sender moves them to corrupt/):\n");
            print_item(&v[i], now);
        }
    rc = CTL_OK;
out:
    free(v);
    free(sites.code);
    ss_sbuf_free(&b);
    ctl_site_close(&s);
    return rc;
}

/* send now [SITE]: the throttle of SITE (every site without one) is due
 * now, and a running sender is told (SIGHUP: it re-reads the throttles
 * and starts what may start).  For an administrator who brought a site
 * back and does not want to wait for its next retry. */
static int send_now(struct ctl *c, const struct ctl_args *a)
{
    const char *site = a->npos > 0 ? a->pos[0] : NULL;
    struct ctl_site s;
    int n = 0, rc = CTL_FAIL;

    if (site && !ss_site_code_ok(site))
        ctl_usage_error(c, "bad site code '%s'", site);
    if (ctl_site_open(c, &s, CTL_SITE_WRITE) != CTL_OK)
        return CTL_FAIL;
    if (retry_now(s.db, "send", site, ss_now_ms(), &n) < 0) {
        ctl_db_fail(&s, "cannot change the send throttles");
        goto out;
    }
    printf("%d site throttle%s made due now\n", n, n == 1 ? "" : "s");
    pid_t pid = ctl_daemon_pid(s.root, "sender");
    if (pid > 0 && kill(pid, SIGHUP) == 0)
        printf("told sender (pid %ld)\n", (long)pid);
    else
        printf("the sender is not running: it starts with them\n");
    rc = CTL_OK;
out:
    ctl_site_close(&s);
    return rc;
}

int cmd_send(struct ctl *c, int argc, char **argv)
{
    static const struct ctl_sub subs[] = {
        { "list", CTL_A_JSON, 0, 0, send_list },
        { "now", 0, 0, 1, send_now },
    };
    return ctl_subcommand(c, argc, argv, subs, SS_ARRAY_LEN(subs));
}
