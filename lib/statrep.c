/*
 * NAME
 *   statrep - status bundles: the signed record that carries a site's
 *   status messages up to its parent site.
 *
 * SYNOPSIS
 *   statrep_build(b, site, created_ms, msgs, n, key, err, errlen)
 *   statrep_parse(buf, len, key_for, arg, &out, err, errlen)
 *   statrep_free(&out)
 *   statrep_dirs(root)
 *
 * DESCRIPTION
 *   A bundle (kind "statrep" v1, docs/formats.md) holds up to
 *   STATREP_MAX_MSGS status message files, each whole as one escaped msg=
 *   field, and is signed by the sending site with the code instructions
 *   use (rec_sign, rec_parse_signed in pkgfile.c), so that a parent
 *   records as coming from a child only what that child's key signed.
 *
 *   Messages travel as their file text rather than as fields of their
 *   own: a message keeps its own checksum and every rule of sm_parse on
 *   the way up, the bundle format never changes when the status message
 *   format does (a newer message version is refused message by message,
 *   not bundle by bundle), and the receiving statmgr records it with the
 *   code it records a file with.
 *
 *   The parse checks the bundle's own fields only; a message that does
 *   not parse is the reader's to skip, so that one bad message never
 *   costs the others.
 *
 *   Thread safe: the state lives in each call.
 *
 * DIAGNOSTICS
 *   Nothing is logged; err holds a sentence.  Returns 0 or a negative
 *   errno: -EBADMSG for a malformed bundle, -EPERM for an unknown site or
 *   a signature that does not verify, -EINVAL for bad arguments to the
 *   builder, -EFBIG for a bundle that would exceed STATREP_MAX_SIZE,
 *   -ENOMEM, -EIO (OpenSSL), and the errno of a failed mkdir.
 */
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "record.h"
#include "statmsg.h"
#include "statrep.h"

static const char *const statrep_fields[] = { "site", "created", "count", "msg", "signature" };

static const struct rec_limits statrep_limits = {
    .max_size = STATREP_MAX_SIZE,
    /* One escaped message file: at worst two bytes per byte. */
    .max_line = 2 * SM_FILE_MAX + 64,
    .max_fields = STATREP_MAX_MSGS + 8,
};

int statrep_build(struct sbuf *b, const char *site, int64_t created_ms,
                  const struct statrep_msg *msgs, size_t n, EVP_PKEY *key,
                  char *err, size_t errlen)
{
    char iso[64];
    int r;

    if (err && errlen)
        err[0] = '\0';
    if (b->len != 0) {
        ss_seterr(err, errlen, "status bundle buffer not empty");
        return -EINVAL;
    }
    if (site == NULL || !ss_site_code_ok(site) || n == 0 || n > STATREP_MAX_MSGS) {
        ss_seterr(err, errlen, "bad status bundle (site %.4s, %zu messages; 1 to %d)",
                  site ? site : "", n, STATREP_MAX_MSGS);
        return -EINVAL;
    }
    if (ss_fmt_time_iso(created_ms, iso, sizeof iso) < 0) {
        ss_seterr(err, errlen, "bad creation time %lld", (long long)created_ms);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (msgs[i].len == 0 || msgs[i].len > SM_FILE_MAX) {
            ss_seterr(err, errlen, "status bundle: message %zu has %zu bytes (1 to %d)", i + 1,
                      msgs[i].len, SM_FILE_MAX);
            return -EINVAL;
        }
    if ((r = rec_begin(b, STATREP_KIND, STATREP_VERSION)) < 0 ||
        (r = rec_add(b, "site", site)) < 0 ||
        (r = rec_add(b, "created", iso)) < 0 ||
        (r = rec_addf(b, "count", "%zu", n)) < 0) {
        ss_seterr(err, errlen, "cannot format the status bundle: %s", strerror(-r));
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        if ((r = rec_addn(b, "msg", msgs[i].data, msgs[i].len)) < 0) {
            ss_seterr(err, errlen, "cannot format the status bundle: %s", strerror(-r));
            goto fail;
        }
    if ((r = rec_sign(b, key, err, errlen)) < 0)
        goto fail;
    if (b->len > STATREP_MAX_SIZE) {
        ss_seterr(err, errlen, "status bundle of %zu messages is %zu bytes, more than %d", n,
                  b->len, STATREP_MAX_SIZE);
        r = -EFBIG;
        goto fail;
    }
    return 0;

fail:
    ss_sbuf_reset(b);
    return r;
}

void statrep_free(struct statrep *s)
{
    free(s->msgs);
    rec_free(&s->rec);
    memset(s, 0, sizeof *s);
}

int statrep_parse(char *buf, size_t len, instr_key_fn key_for, void *arg,
                  struct statrep *out, char *err, size_t errlen)
{
    static const struct signed_spec spec = {
        .kind = STATREP_KIND, .version = STATREP_VERSION, .lim = &statrep_limits,
        .what = "status bundle", .a_what = "a status bundle",
        .fields = statrep_fields, .nfields = SS_ARRAY_LEN(statrep_fields),
    };
    struct rec *r = &out->rec;
    long long count;
    const char *v;
    int rc;

    memset(out, 0, sizeof *out);
    rc = rec_parse_signed(buf, len, &spec, key_for, arg, r, out->site, err, errlen);
    if (rc < 0)
        return rc;
    rc = -EBADMSG;
    if (rec_count(r, "created") != 1 || rec_count(r, "count") != 1) {
        ss_seterr(err, errlen, "status bundle: want one created and one count field");
        goto fail;
    }
    v = rec_get(r, "created");
    if (ss_parse_time_iso(v, &out->created_ms) < 0) {
        ss_seterr(err, errlen, "status bundle: bad creation time \"%.40s\"", v);
        goto fail;
    }
    /* rec_get_int also refuses a \x00 inside the digits. */
    v = rec_get(r, "count");
    if (rec_get_int(r, "count", 1, STATREP_MAX_MSGS, &count, NULL, 0) < 0) {
        ss_seterr(err, errlen, "status bundle: count \"%.40s\" is not 1 to %d messages", v,
                  STATREP_MAX_MSGS);
        goto fail;
    }
    if (rec_count(r, "msg") != (size_t)count) {
        ss_seterr(err, errlen, "status bundle: count=%lld, but it holds %zu messages", count,
                  rec_count(r, "msg"));
        goto fail;
    }
    if ((out->msgs = calloc((size_t)count, sizeof *out->msgs)) == NULL) {
        ss_seterr(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, "msg") == 0) {
            out->msgs[out->count].data = r->fields[i].value;
            out->msgs[out->count].len = r->fields[i].vlen;
            out->count++;
        }
    return 0;

fail:
    statrep_free(out);
    return rc;
}

int statrep_dirs(const char *root)
{
    static const char *const dirs[] = { "statmgr.box/sites", STATREP_OUTGOING };
    char path[SS_PATH_MAX];
    int r;

    for (size_t i = 0; i < SS_ARRAY_LEN(dirs); i++) {
        if ((r = ss_path(path, sizeof path, "%s/inboxes/%s", root, dirs[i])) < 0 ||
            (r = ss_mkdir_p(path, 0750)) < 0)
            return r;
    }
    return 0;
}
