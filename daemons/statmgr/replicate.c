/*
 * replicate.c - the Status Manager's replication to the parent site.
 *
 * SYNOPSIS
 *   rep_open(s, root, err, errlen)   outgoing/ and schedule.box; orphans
 *   rep_run(job)                     one run, on the worker thread
 *   rep_close(s)
 *
 * DESCRIPTION
 *   The messages a site sends up are the rows of its statmsg table past a
 *   cursor (the counter row "statrep.seq", the last seq looked at) whose
 *   component is in statmgr.replicate.  Rows that came from child sites
 *   are among them, so status climbs as many levels as there are.  A run
 *   takes them in status bundles (lib/statrep.c) of up to
 *   STATREP_MAX_MSGS messages, at most REP_BUNDLES_PER_RUN bundles, and
 *   for each:
 *
 *   1. builds and signs the bundle (keys/site.key) and writes it durably
 *      as inboxes/statmgr.box/outgoing/<uniq>.sts (inbox_drop: O_EXCL in
 *      .tmp/, fsync, no-replace rename, directory fsync);
 *   2. drops a job (kind "job", status_file = that path, priority high,
 *      to site.parent) into schedule.box; the scheduler links the bundle
 *      into its tosend/ and removes it from outgoing/;
 *   3. only then moves the cursor past the bundle's last row.
 *
 *   A kill between 1 and 2 leaves a bundle no job names: rep_open
 *   removes such orphans at the next start, and since the cursor did not
 *   move, the next run builds them again.  A kill between 2 and 3 sends
 *   the messages twice; the parent records each once (its uid).
 *
 *   Nothing is sent while site.parent is empty or the site table has no
 *   parent row for it (its address is not known yet): the cursor stays,
 *   and the backlog goes once `sitectl site add` records the parent.
 *
 *   A row is turned back into a status message file with sm_format; its
 *   insertion strings and attributes, kept as JSON in the table, are read
 *   back with SQLite's json_each, so that no second JSON reader exists.
 *
 * DIAGNOSTICS
 *   Logs each bundle sent (info), rows that cannot be formatted (warn,
 *   skipped), the missing parent row (info, once per run of the daemon),
 *   and failures (error: the key, the disk, the database); s->rout tells
 *   the loop what happened.  rep_open fails when outgoing/ or
 *   schedule.box cannot be opened.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "fsutil.h"
#include "log.h"
#include "pkgfile.h"
#include "sendreq.h"
#include "sitedb.h"
#include "statmgr.h"
#include "statrep.h"

/* The root-relative path of a bundle in outgoing/. */
static int bundle_relpath(const char *name, char *buf, size_t len)
{
    return ss_path(buf, len, "inboxes/%s/%s", STATREP_OUTGOING, name);
}

/* ------------------------------------------------------------- orphans */

struct names {
    char  (*v)[UNIQ_NAME_MAX];
    size_t n, cap;
};

static int names_add(struct names *ns, const char *name)
{
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 16;
        void *nv = realloc(ns->v, cap * sizeof *ns->v);
        if (nv == NULL)
            return -ENOMEM;
        ns->v = nv;
        ns->cap = cap;
    }
    return ss_strcpy(ns->v[ns->n++], UNIQ_NAME_MAX, name);
}

/* Forget the bundle a job names (mark it as not an orphan). */
static void names_drop(struct names *ns, const char *status_file)
{
    const char *base = strrchr(status_file, '/');
    char want[SS_PATH_MAX];

    base = base ? base + 1 : status_file;
    for (size_t i = 0; i < ns->n; i++)
        if (ns->v[i][0] && strcmp(ns->v[i], base) == 0 &&
            bundle_relpath(ns->v[i], want, sizeof want) == 0 &&
            strcmp(want, status_file) == 0)
            ns->v[i][0] = '\0';
}

/* Every job of the directory dirfd drops the bundle it names from ns.
 * -errno when the directory cannot be listed (then nothing is removed). */
static int jobs_in(int dirfd, struct names *ns)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;

    if (d == NULL) {
        int e = -errno;
        if (fd >= 0)
            close(fd);
        return e;
    }
    while ((de = readdir(d)) != NULL) {
        char *buf = NULL, err[SS_ERR_MAX];
        size_t len = 0;
        struct job j;
        if (!uniq_name_ok(de->d_name, ".job"))
            continue;
        if (ss_read_file(dirfd, de->d_name, SENDREQ_MAX_SIZE, &buf, &len) == 0 &&
            job_parse(buf, len, &j, err, sizeof err) == 0 && j.type == SEND_STATUS)
            names_drop(ns, j.status_file);
        free(buf);
    }
    closedir(d);
    return 0;
}

/* Remove the bundles of outgoing/ that no job in schedule.box or its
 * work/ names.  schedule.box is listed, then work/, then schedule.box
 * again: a job the scheduler claims meanwhile moves from the first to
 * the second, and one it gives back (a failure that may pass) from the
 * second to the third, so it is seen in one of them. */
static void remove_orphans(struct statmgr *s)
{
    struct names ns = { NULL, 0, 0 };
    struct inbox_cursor cur;
    struct inbox_entry ents[64];
    size_t n;
    int r, workfd;

    if (inbox_cursor_open(&s->outgoing, &cur) < 0)
        return;
    while (inbox_cursor_next(&cur, ents, SS_ARRAY_LEN(ents), &n) == 0 && n > 0)
        for (size_t i = 0; i < n; i++)
            if (!ents[i].odd && names_add(&ns, ents[i].name) < 0) {
                inbox_cursor_close(&cur);
                free(ns.v);
                return;
            }
    inbox_cursor_close(&cur);
    if (ns.n == 0)
        return;
    r = jobs_in(s->sched.dirfd, &ns);
    workfd = openat(s->sched.dirfd, "work", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r == 0 && workfd >= 0)
        r = jobs_in(workfd, &ns);
    else if (r == 0 && errno != ENOENT)
        r = -errno;
    if (workfd >= 0)
        close(workfd);
    if (r == 0)
        r = jobs_in(s->sched.dirfd, &ns);
    if (r < 0) {
        log_warn("cannot list the jobs of %s: %s; bundles in %s are kept", s->sched.path,
                 strerror(-r), s->outgoing.path);
        free(ns.v);
        return;
    }
    for (size_t i = 0; i < ns.n; i++) {
        if (!ns.v[i][0])
            continue;
        if (unlinkat(s->outgoing.dirfd, ns.v[i], 0) < 0 && errno != ENOENT)
            log_warn("cannot remove the orphan status bundle %s/%s: %s", s->outgoing.path,
                     ns.v[i], strerror(errno));
        else
            log_info("removed the status bundle %s/%s, which no job names (a stop between "
                     "the bundle and its job); its messages go in a new one", s->outgoing.path,
                     ns.v[i]);
    }
    free(ns.v);
}

int rep_open(struct statmgr *s, const char *root, char *err, size_t errlen)
{
    char path[SS_PATH_MAX], prefix[UNIQ_PREFIX_MAX + 1];
    int r;

    ss_strcpy(s->root, sizeof s->root, root);
    uniq_prefix_sanitize(s->in.site, prefix, sizeof prefix);
    if ((r = statrep_dirs(root)) < 0 ||
        (r = ss_path(path, sizeof path, "%s/inboxes/%s", root, STATREP_OUTGOING)) < 0 ||
        (r = inbox_open_path(&s->outgoing, path, IB_SITEMSGS, prefix, 0)) < 0) {
        ss_fmt(err, errlen, "cannot open inboxes/%s: %s", STATREP_OUTGOING, strerror(-r));
        return r;
    }
    if ((r = inbox_open(&s->sched, root, IB_SCHEDULE, prefix, 0)) < 0) {
        ss_fmt(err, errlen, "cannot open inbox %s: %s", inbox_defs[IB_SCHEDULE].path,
               strerror(-r));
        return r;
    }
    remove_orphans(s);
    return 0;
}

void rep_close(struct statmgr *s)
{
    if (s->outgoing.path[0])
        inbox_close(&s->outgoing);
    if (s->sched.path[0])
        inbox_close(&s->sched);
    EVP_PKEY_free(s->key);
    s->key = NULL;
}

/* ------------------------------------------------------------- queries */

/* One integer of a query with text parameters ?1, ?2 (may be NULL).
 * 1 and *v when there is a row, 0 when none, or -errno. */
static int query_int(sqlite3 *db, const char *sql, const char *p1, long long *v)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = sitedb_prepare(db, sql, &st)) < 0)
        return rc;
    if (p1)
        sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int64(st, 0);
        rc = 1;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        log_error("reading the site database: %s", sqlite3_errmsg(db));
        rc = sitedb_errno(db, rc);
        if (rc == 0)
            rc = -EIO;
    }
    sqlite3_finalize(st);
    return rc;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

/* The insertion strings (a JSON array) or attributes (a JSON object) of
 * a row into m, through json_each.  0 or -errno. */
static int json_into(sqlite3 *db, sqlite3_stmt *each, const char *json, int attrs,
                     struct statmsg *m)
{
    int rc;

    sqlite3_bind_text(each, 1, json, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(each)) == SQLITE_ROW) {
        const char *v = col_text(each, 1);
        if (attrs ? sm_add_attr(m, col_text(each, 0), v) < 0 : sm_add_istr(m, v) < 0)
            break;              /* more than a message holds: the rest is dropped */
    }
    sqlite3_reset(each);
    sqlite3_clear_bindings(each);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = sitedb_errno(db, rc);
        return rc ? rc : -EIO;
    }
    return 0;
}

/* A row of the selection (see one_bundle) back into a message. */
static int row_to_msg(sqlite3 *db, sqlite3_stmt *st, sqlite3_stmt *each, struct statmsg *m)
{
    int rc;

    memset(m, 0, sizeof *m);
    if (sqlite3_column_bytes(st, 1) != (int)sizeof m->uid || !sqlite3_column_blob(st, 1))
        return -EINVAL;
    memcpy(m->uid, sqlite3_column_blob(st, 1), sizeof m->uid);
    m->id = (unsigned)sqlite3_column_int(st, 2);
    m->severity = col_text(st, 3)[0];
    if (sm_type_parse(col_text(st, 4), &m->type) < 0)
        return -EINVAL;
    if (ss_strcpy(m->component, sizeof m->component, col_text(st, 5)) < 0 ||
        ss_strcpy(m->site, sizeof m->site, col_text(st, 6)) < 0 ||
        ss_strcpy(m->machine, sizeof m->machine, col_text(st, 7)) < 0)
        return -EINVAL;
    m->pid = (long)sqlite3_column_int64(st, 8);
    m->tid = (long)sqlite3_column_int64(st, 9);
    m->time_ms = sqlite3_column_int64(st, 10);
    m->oserr = sqlite3_column_int(st, 11);
    if ((rc = json_into(db, each, col_text(st, 12), 0, m)) < 0 ||
        (rc = json_into(db, each, col_text(st, 13), 1, m)) < 0)
        return rc;
    return 0;
}

/* --------------------------------------------------------------- a run */

/* The selection of one bundle: rows past the cursor, up to the highest
 * seq read before (rows are only ever appended, by this thread), whose
 * component is one of the list (checked again in C: a list cannot hold
 * a name with a space, which the SQL test would match loosely). */
#define SELECT_ROWS \
    "SELECT seq, uid, msgid, severity, type, component, site, machine, pid, tid, time_ms," \
    " oserr, istr, attrs FROM statmsg WHERE seq > ?1 AND seq <= ?2" \
    " AND instr(' ' || ?3 || ' ', ' ' || component || ' ') > 0 ORDER BY seq LIMIT ?4"

struct batch {
    struct sbuf        one;         /* one message file (sm_format wants it empty) */
    struct sbuf        text;        /* the message files, one after the other */
    size_t             off[STATREP_MAX_MSGS];
    struct statrep_msg msgs[STATREP_MAX_MSGS];
    size_t             n;
    long long          last;        /* the cursor after this bundle */
};

/* Select and format the messages of one bundle into bt.  0 or -errno. */
static int select_batch(struct statmgr *s, long long cursor, struct batch *bt)
{
    sqlite3_stmt *st = NULL, *each = NULL;
    struct statmsg *m = &s->msg;
    long long top = 0;
    size_t rows = 0;
    int rc;

    bt->n = 0;
    bt->last = cursor;
    ss_sbuf_reset(&bt->text);
    if ((rc = query_int(s->db, "SELECT COALESCE(MAX(seq), 0) FROM statmsg", NULL, &top)) < 0)
        return rc;
    if (top <= cursor)
        return 0;
    if ((rc = sitedb_prepare(s->db, SELECT_ROWS, &st)) < 0 ||
        (rc = sitedb_prepare(s->db, "SELECT key, value FROM json_each(?1)", &each)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, cursor);
    sqlite3_bind_int64(st, 2, top);
    sqlite3_bind_text(st, 3, s->rin.components, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, STATREP_MAX_MSGS);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        long long seq = sqlite3_column_int64(st, 0);
        size_t before = bt->text.len;
        rows++;
        bt->last = seq;
        if (!conf_list_has(s->rin.components, col_text(st, 5)))
            continue;
        if ((rc = row_to_msg(s->db, st, each, m)) < 0 && rc != -EINVAL)
            goto out;
        ss_sbuf_reset(&bt->one);
        if (rc == -EINVAL || sm_format(m, &bt->one) < 0) {
            log_warn("status message seq %lld (ID %u from site %s) cannot be formatted; it "
                     "is not sent to the parent site", seq, m->id, m->site);
            continue;
        }
        if ((rc = ss_sbuf_add(&bt->text, bt->one.data, bt->one.len)) < 0)
            goto out;
        bt->off[bt->n] = before;
        bt->msgs[bt->n].len = bt->one.len;
        bt->n++;
        if (bt->text.len >= STATREP_FILL_SIZE)
            break;
    }
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        rc = 0;
        /* Fewer rows than asked for and not cut short: every row up to
         * top has been looked at. */
        if (rows < STATREP_MAX_MSGS && bt->text.len < STATREP_FILL_SIZE)
            bt->last = top;
    } else {
        log_error("selecting status messages for the parent site: %s", sqlite3_errmsg(s->db));
        rc = sitedb_errno(s->db, rc);
        if (rc == 0)
            rc = -EIO;
    }
    /* The sbuf may have moved while it grew: the pointers come last. */
    for (size_t i = 0; i < bt->n; i++)
        bt->msgs[i].data = bt->text.data + bt->off[i];
out:
    sqlite3_finalize(each);
    sqlite3_finalize(st);
    return rc;
}

static int save_cursor(sqlite3 *db, long long v)
{
    return sitedb_execf(db, "INSERT INTO counter (name, value) VALUES (?1, ?2) "
                        "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                        "si", REP_CURSOR, v);
}

/* Build, write and queue one bundle of bt, then move the cursor.
 * 0 or -errno (logged). */
static int send_batch(struct statmgr *s, struct batch *bt)
{
    struct sbuf b, jb;
    struct job j;
    char err[SS_ERR_MAX], name[UNIQ_NAME_MAX], jname[UNIQ_NAME_MAX];
    int64_t now = ss_now_ms();
    int rc;

    ss_sbuf_init(&b);
    ss_sbuf_init(&jb);
    if ((rc = statrep_build(&b, s->rin.site, now, bt->msgs, bt->n, s->key, err,
                            sizeof err)) < 0) {
        log_error("cannot build a status bundle for the parent site: %s", err);
        goto out;
    }
    /* 1. The bundle, durably. */
    if ((rc = inbox_drop(&s->outgoing, STATREP_SUFFIX, b.data, b.len, name, sizeof name)) < 0) {
        log_error("cannot write a status bundle into %s: %s", s->outgoing.path, strerror(-rc));
        goto out;
    }
    /* 2. The job that sends it. */
    memset(&j, 0, sizeof j);
    j.type = SEND_STATUS;
    ss_strcpy(j.site, sizeof j.site, s->rin.parent);
    j.priority = PRIO_HIGH;
    j.created_ms = now;
    if ((rc = bundle_relpath(name, j.status_file, sizeof j.status_file)) < 0 ||
        (rc = job_format(&j, &jb)) < 0 ||
        (rc = inbox_drop(&s->sched, ".job", jb.data, jb.len, jname, sizeof jname)) < 0) {
        log_error("cannot queue the status bundle %s for site %s: %s", name, s->rin.parent,
                  strerror(-rc));
        /* No job names it: it goes, and the cursor stays. */
        if (unlinkat(s->outgoing.dirfd, name, 0) < 0 && errno != ENOENT)
            log_warn("cannot remove %s/%s: %s; it is removed at the next start",
                     s->outgoing.path, name, strerror(errno));
        goto out;
    }
    /* 3. The cursor.  A failure here sends these messages again later;
     * the parent records them once. */
    if ((rc = save_cursor(s->db, bt->last)) < 0) {
        log_error("cannot move the replication cursor to %lld; the messages of %s will be "
                  "sent again", bt->last, name);
        goto out;
    }
    log_info("status bundle %s: %zu status messages for parent site %s (job %s)", name, bt->n,
             s->rin.parent, jname);
out:
    ss_sbuf_free(&b);
    ss_sbuf_free(&jb);
    return rc;
}

/* The site's key, loaded once. */
static int load_key(struct statmgr *s)
{
    char path[SS_PATH_MAX], err[SS_ERR_MAX];
    int rc;

    if (s->key)
        return 0;
    if ((rc = ss_path(path, sizeof path, "%s/keys/site.key", s->root)) < 0 ||
        (rc = sign_load_private(path, &s->key, err, sizeof err)) < 0) {
        log_error("cannot load this site's signing key: %s; status messages are not sent "
                  "to the parent site", rc == -ENAMETOOLONG ? "path too long" : err);
        return rc;
    }
    return 0;
}

void rep_run(struct pool_job *j)
{
    struct statmgr *s = (struct statmgr *)((char *)j - offsetof(struct statmgr, rjob));
    struct rep_out *o = &s->rout;
    struct batch *bt = NULL;
    long long cursor, one = 0;
    int rc;

    memset(o, 0, sizeof *o);
    if (!s->rin.parent[0] || !s->rin.components[0])
        return;
    rc = query_int(s->db, "SELECT 1 FROM site WHERE code = ?1 AND relation = 'parent'",
                   s->rin.parent, &one);
    if (rc <= 0) {
        o->failed = rc < 0;
        o->no_parent = rc == 0;
        return;
    }
    if (load_key(s) < 0) {
        o->failed = 1;
        return;
    }
    if ((bt = calloc(1, sizeof *bt)) == NULL) {
        o->failed = 1;
        return;
    }
    ss_sbuf_init(&bt->one);
    ss_sbuf_init(&bt->text);
    for (int k = 0; k < REP_BUNDLES_PER_RUN && !atomic_load(&s->stopping); k++) {
        cursor = 0;                 /* no row yet: from the first message */
        if (query_int(s->db, "SELECT value FROM counter WHERE name = ?1", REP_CURSOR,
                      &cursor) < 0 || select_batch(s, cursor, bt) < 0) {
            o->failed = 1;
            break;
        }
        if (bt->n == 0) {
            /* Nothing to send past the cursor: only move it. */
            if (bt->last > cursor && save_cursor(s->db, bt->last) < 0)
                o->failed = 1;
            break;
        }
        if (send_batch(s, bt) < 0) {
            o->failed = 1;
            break;
        }
        o->bundles++;
        o->messages += bt->n;
        if (k == REP_BUNDLES_PER_RUN - 1)
            o->more = 1;
    }
    ss_sbuf_free(&bt->one);
    ss_sbuf_free(&bt->text);
    free(bt);
}
