/*
 * pkgreq.c - package requests in inboxes/distmgr.box (see pkgreq.h).
 *
 * SYNOPSIS
 *   pkgid_ok(s)  pkgreq_action_name(a)
 *   pkgreq_format(r, b)  pkgreq_parse(buf, len, r, err, errlen)
 *   pkgreq_drop(root, prefix, action, package)
 *
 * DESCRIPTION
 *   A request names an action and a package and nothing else: the
 *   database holds the package's definition, so a request can neither
 *   contradict it nor be half-applied.  The parser refuses unknown
 *   fields (version 1 has no optional ones), a repeated field, and a
 *   package that is not an ID ("*" only for retry).
 *
 * DIAGNOSTICS
 *   Returns 0 or a negative errno; parse errors are -EBADMSG with a
 *   sentence in err.  pkgreq_drop logs nothing itself (inbox_drop does).
 */
#include <string.h>

#include "inbox.h"
#include "pkgreq.h"
#include "record.h"
#include "util.h"

#define PKGREQ_KIND    "pkgreq"
#define PKGREQ_VERSION 1

static const char *const action_names[] = {
    [PKGREQ_UPDATE] = "update", [PKGREQ_DELETE] = "delete", [PKGREQ_RETRY] = "retry",
};

int pkgid_ok(const char *s)
{
    size_t i;

    if (!s || strlen(s) != 8)
        return 0;
    for (i = 0; i < 3; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    for (; i < 8; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return 1;
}

const char *pkgreq_action_name(enum pkgreq_action a)
{
    return (unsigned)a < SS_ARRAY_LEN(action_names) ? action_names[a] : "unknown";
}

int pkgreq_format(const struct pkgreq *r, struct sbuf *b)
{
    char when[40];
    int rc;

    if ((unsigned)r->action >= SS_ARRAY_LEN(action_names))
        return -EINVAL;
    if (!(pkgid_ok(r->package) || (r->action == PKGREQ_RETRY && strcmp(r->package, "*") == 0)))
        return -EINVAL;
    if ((rc = ss_fmt_time_iso(r->time_ms, when, sizeof when)) < 0)
        return rc;
    if ((rc = rec_begin(b, PKGREQ_KIND, PKGREQ_VERSION)) < 0 ||
        (rc = rec_add(b, "action", action_names[r->action])) < 0 ||
        (rc = rec_add(b, "package", r->package)) < 0 ||
        (rc = rec_add(b, "time", when)) < 0)
        return rc;
    return rec_end(b);
}

int pkgreq_parse(char *buf, size_t len, struct pkgreq *r, char *err, size_t errlen)
{
    static const struct rec_limits lim = { PKGREQ_MAX_SIZE, PKGREQ_MAX_SIZE, 8 };
    static const char *const known[] = { "action", "package", "time" };
    struct rec rec;
    const char *v;
    size_t i, k;
    int rc;

    memset(r, 0, sizeof *r);
    if ((rc = rec_parse(&rec, buf, len, &lim, err, errlen)) < 0)
        return rc;
    rc = -EBADMSG;
    if (strcmp(rec.kind, PKGREQ_KIND) != 0) {
        (void)ss_fmt(err, errlen, "not a package request (kind '%s')", rec.kind);
        goto out;
    }
    if (rec.version != PKGREQ_VERSION) {
        (void)ss_fmt(err, errlen, "package request version %d is not known (this build reads %d)",
                     rec.version, PKGREQ_VERSION);
        goto out;
    }
    for (i = 0; i < rec.nfields; i++) {
        for (k = 0; k < SS_ARRAY_LEN(known); k++)
            if (strcmp(rec.fields[i].name, known[k]) == 0)
                break;
        if (k == SS_ARRAY_LEN(known)) {
            (void)ss_fmt(err, errlen, "unknown field '%s'", rec.fields[i].name);
            goto out;
        }
        if (rec_count(&rec, known[k]) != 1) {
            (void)ss_fmt(err, errlen, "field '%s' given more than once", known[k]);
            goto out;
        }
    }
    if (!(v = rec_need(&rec, "action", err, errlen)))
        goto out;
    for (k = 0; k < SS_ARRAY_LEN(action_names); k++)
        if (strcmp(v, action_names[k]) == 0)
            break;
    if (k == SS_ARRAY_LEN(action_names)) {
        (void)ss_fmt(err, errlen, "unknown action '%s'", v);
        goto out;
    }
    r->action = (enum pkgreq_action)k;
    if (!(v = rec_need(&rec, "package", err, errlen)))
        goto out;
    if (!(pkgid_ok(v) || (r->action == PKGREQ_RETRY && strcmp(v, "*") == 0))) {
        (void)ss_fmt(err, errlen, "package '%s' is not a package ID", v);
        goto out;
    }
    (void)ss_strcpy(r->package, sizeof r->package, v);
    if (!(v = rec_need(&rec, "time", err, errlen)))
        goto out;
    if (ss_parse_time_iso(v, &r->time_ms) < 0) {
        (void)ss_fmt(err, errlen, "time '%s' is not an ISO 8601 UTC time", v);
        goto out;
    }
    rc = 0;
out:
    rec_free(&rec);
    return rc;
}

int pkgreq_drop(const char *root, const char *prefix, enum pkgreq_action a,
                const char *package)
{
    struct pkgreq r = { .action = a, .time_ms = ss_now_ms() };
    struct sbuf b;
    struct inbox ib;
    int rc;

    ss_sbuf_init(&b);
    if (ss_strcpy(r.package, sizeof r.package, package) < 0)
        return -EINVAL;
    if ((rc = pkgreq_format(&r, &b)) < 0)
        goto out;
    if ((rc = inbox_open(&ib, root, IB_DISTMGR, prefix, 0)) < 0)
        goto out;
    rc = inbox_drop(&ib, ".pkg", b.data, b.len, NULL, 0);
    inbox_close(&ib);
out:
    ss_sbuf_free(&b);
    return rc;
}
