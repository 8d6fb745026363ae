/*
 * sendreq.c - jobs and send requests (see sendreq.h, docs/formats.md).
 *
 * SYNOPSIS
 *   prio_name(p)  prio_parse(s, &p)
 *   job_format(j, b)  job_parse(buf, len, j, err, errlen)
 *   srq_format(q, b)  srq_parse(buf, len, q, err, errlen)
 *   srq_store(dirfd, tmpfd, name, q, durable)  srq_load(dirfd, name, q, err, errlen)
 *
 * DESCRIPTION
 *   Both kinds are records (record.h): a truncated or altered file fails
 *   its checksum and is refused whole.  The parsers also refuse unknown and
 *   repeated fields, so a file written by a newer release is quarantined
 *   with a clear reason rather than half understood.  A job's paths are
 *   relative to the site root, checked like manifest paths, and must lie
 *   under store/out/ or inboxes/statmgr.box/outgoing/: a job can never
 *   name another file of the site (its key, its database).
 *
 * DIAGNOSTICS
 *   Returns 0 or a negative errno; parse errors are -EBADMSG with a
 *   sentence in err.  Nothing is logged here.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "manifest.h"
#include "pkgreq.h"
#include "record.h"
#include "sendreq.h"
#include "uniqname.h"

static const char *const prio_names[] = {
    [PRIO_HIGH] = "high", [PRIO_MEDIUM] = "medium", [PRIO_LOW] = "low",
};

const char *prio_name(enum send_prio p)
{
    return (unsigned)p < SS_ARRAY_LEN(prio_names) ? prio_names[p] : "unknown";
}

int prio_parse(const char *s, enum send_prio *p)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(prio_names); i++)
        if (strcmp(s, prio_names[i]) == 0) {
            *p = (enum send_prio)i;
            return 0;
        }
    return -EINVAL;
}

/* Known fields, each at most once; the record's kind and version match. */
static int check_fields(const struct rec *r, const char *kind, const char *const *known,
                        size_t nknown, char *err, size_t errlen)
{
    if (strcmp(r->kind, kind) != 0) {
        (void)ss_fmt(err, errlen, "not a %s (kind '%s')", kind, r->kind);
        return -EBADMSG;
    }
    if (r->version != 1) {
        (void)ss_fmt(err, errlen, "%s version %d is not known (this build reads 1)", kind,
                     r->version);
        return -EBADMSG;
    }
    for (size_t i = 0; i < r->nfields; i++) {
        size_t k;
        for (k = 0; k < nknown; k++)
            if (strcmp(r->fields[i].name, known[k]) == 0)
                break;
        if (k == nknown) {
            (void)ss_fmt(err, errlen, "unknown field '%s'", r->fields[i].name);
            return -EBADMSG;
        }
        if (rec_count(r, known[k]) != 1) {
            (void)ss_fmt(err, errlen, "field '%s' given more than once", known[k]);
            return -EBADMSG;
        }
    }
    return 0;
}

static int get_site(const struct rec *r, const char *name, char *out, char *err, size_t errlen)
{
    const char *v = rec_need(r, name, err, errlen);
    if (!v)
        return -EBADMSG;
    if (!ss_site_code_ok(v)) {
        (void)ss_fmt(err, errlen, "%s '%s' is not a site code", name, v);
        return -EBADMSG;
    }
    (void)ss_strcpy(out, SS_SITE_LEN + 1, v);
    return 0;
}

static int get_prio(const struct rec *r, enum send_prio *p, char *err, size_t errlen)
{
    const char *v = rec_need(r, "priority", err, errlen);
    if (!v)
        return -EBADMSG;
    if (prio_parse(v, p) < 0) {
        (void)ss_fmt(err, errlen, "priority '%s' is not high, medium or low", v);
        return -EBADMSG;
    }
    return 0;
}

static int get_time(const struct rec *r, const char *name, int optional, int64_t *ms,
                    char *err, size_t errlen)
{
    const char *v = optional ? rec_get(r, name) : rec_need(r, name, err, errlen);
    *ms = 0;
    if (!v)
        return optional ? 0 : -EBADMSG;
    if (optional && v[0] == '\0')
        return 0;
    if (ss_parse_time_iso(v, ms) < 0) {
        (void)ss_fmt(err, errlen, "%s '%s' is not an ISO 8601 UTC time", name, v);
        return -EBADMSG;
    }
    return 0;
}

/* A root-relative path: the manifest rules (relative, no ., .. or empty
 * component), so it names a file inside the root; and inside the one
 * directory such files are written to (under), so that a job can never
 * have the site's key or database sent. */
static int get_path(const struct rec *r, const char *name, const char *under, char *out,
                    size_t outlen, char *err, size_t errlen)
{
    const char *v = rec_need(r, name, err, errlen);
    if (!v)
        return -EBADMSG;
    if (!mf_path_ok(v) || ss_strcpy(out, outlen, v) < 0) {
        (void)ss_fmt(err, errlen, "%s '%s' is not a safe relative path", name, v);
        return -EBADMSG;
    }
    if (strncmp(v, under, strlen(under)) != 0) {
        (void)ss_fmt(err, errlen, "%s '%s' is not under %s", name, v, under);
        return -EBADMSG;
    }
    return 0;
}

static int get_package(const struct rec *r, char *out, long long *version, char *err,
                       size_t errlen)
{
    const char *v = rec_need(r, "package", err, errlen);
    if (!v)
        return -EBADMSG;
    if (!pkgid_ok(v)) {
        (void)ss_fmt(err, errlen, "package '%s' is not a package ID", v);
        return -EBADMSG;
    }
    (void)ss_strcpy(out, 16, v);
    return rec_get_int(r, "version", 1, INT64_MAX, version, err, errlen) < 0 ? -EBADMSG : 0;
}

int job_format(const struct job *j, struct sbuf *b)
{
    char when[40];
    int rc;

    if ((rc = ss_fmt_time_iso(j->created_ms, when, sizeof when)) < 0)
        return rc;
    if ((rc = rec_begin(b, "job", 1)) < 0 ||
        (rc = rec_add(b, "site", j->site)) < 0 ||
        (rc = rec_add(b, "priority", prio_name(j->priority))) < 0)
        return rc;
    if (j->type == SEND_PACKAGE) {
        if ((rc = rec_add(b, "package", j->package)) < 0 ||
            (rc = rec_addf(b, "version", "%lld", j->version)) < 0 ||
            (rc = rec_add(b, "instruction", j->instruction)) < 0 ||
            (rc = rec_add(b, "package_file", j->package_file)) < 0)
            return rc;
    } else if ((rc = rec_add(b, "status_file", j->status_file)) < 0) {
        return rc;
    }
    if ((rc = rec_add(b, "created", when)) < 0)
        return rc;
    return rec_end(b);
}

int job_parse(char *buf, size_t len, struct job *j, char *err, size_t errlen)
{
    static const struct rec_limits lim = { SENDREQ_MAX_SIZE, SENDREQ_MAX_SIZE, 16 };
    static const char *const known[] = {
        "site", "priority", "package", "version", "instruction", "package_file",
        "status_file", "created",
    };
    struct rec r;
    int rc;

    memset(j, 0, sizeof *j);
    if ((rc = rec_parse(&r, buf, len, &lim, err, errlen)) < 0)
        return rc == -EBADMSG ? rc : -EBADMSG;
    if ((rc = check_fields(&r, "job", known, SS_ARRAY_LEN(known), err, errlen)) < 0 ||
        (rc = get_site(&r, "site", j->site, err, errlen)) < 0 ||
        (rc = get_prio(&r, &j->priority, err, errlen)) < 0 ||
        (rc = get_time(&r, "created", 0, &j->created_ms, err, errlen)) < 0)
        goto out;
    if (rec_get(&r, "status_file")) {
        j->type = SEND_STATUS;
        if (rec_get(&r, "package") || rec_get(&r, "version") || rec_get(&r, "instruction") ||
            rec_get(&r, "package_file")) {
            (void)ss_fmt(err, errlen, "a status job names a package");
            rc = -EBADMSG;
            goto out;
        }
        rc = get_path(&r, "status_file", JOB_STATUS_DIR, j->status_file, sizeof j->status_file,
                      err, errlen);
    } else {
        j->type = SEND_PACKAGE;
        if ((rc = get_package(&r, j->package, &j->version, err, errlen)) < 0 ||
            (rc = get_path(&r, "instruction", JOB_PACKAGE_DIR, j->instruction,
                           sizeof j->instruction, err, errlen)) < 0 ||
            (rc = get_path(&r, "package_file", JOB_PACKAGE_DIR, j->package_file,
                           sizeof j->package_file, err, errlen)) < 0)
            goto out;
    }
out:
    rec_free(&r);
    return rc;
}

int srq_format(const struct sendreq *q, struct sbuf *b)
{
    char when[40], next[40] = "";
    int rc;

    if ((rc = ss_fmt_time_iso(q->created_ms, when, sizeof when)) < 0)
        return rc;
    if (q->next_ms > 0 && (rc = ss_fmt_time_iso(q->next_ms, next, sizeof next)) < 0)
        return rc;
    if ((rc = rec_begin(b, "sendreq", 1)) < 0 ||
        (rc = rec_add(b, "type", q->type == SEND_PACKAGE ? "package" : "status")) < 0 ||
        (rc = rec_add(b, "dest", q->dest)) < 0 ||
        (rc = rec_add(b, "hop", q->hop)) < 0 ||
        (rc = rec_add(b, "priority", prio_name(q->priority))) < 0)
        return rc;
    if (q->type == SEND_PACKAGE &&
        ((rc = rec_add(b, "package", q->package)) < 0 ||
         (rc = rec_addf(b, "version", "%lld", q->version)) < 0))
        return rc;
    if ((rc = rec_add(b, "xfer", q->xfer)) < 0 ||
        (rc = rec_addf(b, "size", "%lld", (long long)q->size)) < 0 ||
        (rc = rec_addf(b, "offset", "%lld", (long long)q->offset)) < 0 ||
        (rc = rec_addf(b, "pck_done", "%d", q->pck_done ? 1 : 0)) < 0 ||
        (rc = rec_addf(b, "attempts", "%lld", q->attempts)) < 0 ||
        (rc = rec_add(b, "next_try", next)) < 0 ||
        (rc = rec_add(b, "last_error", q->last_error)) < 0 ||
        (rc = rec_add(b, "created", when)) < 0)
        return rc;
    return rec_end(b);
}

int srq_parse(char *buf, size_t len, struct sendreq *q, char *err, size_t errlen)
{
    static const struct rec_limits lim = { SENDREQ_MAX_SIZE, SENDREQ_MAX_SIZE, 24 };
    static const char *const known[] = {
        "type", "dest", "hop", "priority", "package", "version", "xfer", "size", "offset",
        "pck_done", "attempts", "next_try", "last_error", "created",
    };
    struct rec r;
    long long v;
    const char *s;
    int rc;

    memset(q, 0, sizeof *q);
    if ((rc = rec_parse(&r, buf, len, &lim, err, errlen)) < 0)
        return rc == -EBADMSG ? rc : -EBADMSG;
    rc = -EBADMSG;
    if (check_fields(&r, "sendreq", known, SS_ARRAY_LEN(known), err, errlen) < 0 ||
        !(s = rec_need(&r, "type", err, errlen)))
        goto out;
    if (strcmp(s, "package") == 0) {
        q->type = SEND_PACKAGE;
        if (get_package(&r, q->package, &q->version, err, errlen) < 0)
            goto out;
    } else if (strcmp(s, "status") == 0) {
        q->type = SEND_STATUS;
        if (rec_get(&r, "package") || rec_get(&r, "version")) {
            (void)ss_fmt(err, errlen, "a status request names a package");
            goto out;
        }
    } else {
        (void)ss_fmt(err, errlen, "type '%s' is not package or status", s);
        goto out;
    }
    if (get_site(&r, "dest", q->dest, err, errlen) < 0 ||
        get_site(&r, "hop", q->hop, err, errlen) < 0 ||
        get_prio(&r, &q->priority, err, errlen) < 0 ||
        !(s = rec_need(&r, "xfer", err, errlen)))
        goto out;
    char probe[SS_NAME_MAX + 8];
    if (ss_fmt(probe, sizeof probe, "%s.ins", s) < 0 || !uniq_name_ok(probe, ".ins") ||
        ss_strcpy(q->xfer, sizeof q->xfer, s) < 0) {
        (void)ss_fmt(err, errlen, "xfer '%s' is not a unique name", s);
        goto out;
    }
    if (rec_get_int(&r, "size", 0, INT64_MAX, &v, err, errlen) < 0)
        goto out;
    q->size = v;
    if (rec_get_int(&r, "offset", 0, INT64_MAX, &v, err, errlen) < 0)
        goto out;
    q->offset = v;
    if (rec_get_int(&r, "pck_done", 0, 1, &v, err, errlen) < 0)
        goto out;
    q->pck_done = (int)v;
    if (rec_get_int(&r, "attempts", 0, INT64_MAX, &q->attempts, err, errlen) < 0 ||
        get_time(&r, "next_try", 1, &q->next_ms, err, errlen) < 0 ||
        get_time(&r, "created", 0, &q->created_ms, err, errlen) < 0 ||
        !(s = rec_need(&r, "last_error", err, errlen)))
        goto out;
    (void)ss_strcpy(q->last_error, sizeof q->last_error, s);
    rc = 0;
out:
    rec_free(&r);
    return rc;
}

int srq_store(int dirfd, int tmpfd, const char *name, const struct sendreq *q, int durable)
{
    struct sbuf b;
    char tmp[SS_NAME_MAX + 8];
    int fd, rc;

    ss_sbuf_init(&b);
    if ((rc = srq_format(q, &b)) < 0)
        goto out;
    if ((rc = ss_fmt(tmp, sizeof tmp, "%s.new", name)) < 0)
        goto out;
    /* The request's name is unique and only the sender writes it, so a
     * leftover .new of a killed rewrite is ours to replace. */
    fd = openat(tmpfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = ss_write_all(fd, b.data, b.len);
    if (rc == 0 && durable)
        rc = ss_fsync_fd(fd);
    close(fd);
    if (rc == 0 && renameat(tmpfd, tmp, dirfd, name) < 0)
        rc = -errno;
    if (rc < 0) {
        (void)unlinkat(tmpfd, tmp, 0);
        goto out;
    }
    if (durable && ss_fsync_fd(dirfd) < 0)
        rc = -EIO;
out:
    ss_sbuf_free(&b);
    return rc;
}

int srq_load(int dirfd, const char *name, struct sendreq *q, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = ss_read_file(dirfd, name, SENDREQ_MAX_SIZE, &buf, &len);

    if (rc < 0) {
        (void)ss_fmt(err, errlen, "cannot read %s: %s", name, strerror(-rc));
        return rc;
    }
    rc = srq_parse(buf, len, q, err, errlen);
    free(buf);
    return rc;
}
