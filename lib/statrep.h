/*
 * statrep.h - status bundles: the status messages a site replicates to its
 * parent site (SPEC 3 "status messages"; docs/formats.md, "Status
 * bundles").
 *
 * A bundle is a record of kind "statrep" version 1, signed like an
 * instruction (rec_sign / rec_parse_signed in pkgfile.h) by the site that
 * sends it:
 *
 *   sitesrv statrep 1
 *   site=<the sending site's code>
 *   created=<ISO 8601 UTC>
 *   count=<n, 1..STATREP_MAX_MSGS>
 *   msg=<the full text of one status message file, escaped>   (n times)
 *   signature=<128 hex>
 *   end <sha256>
 *
 * Each msg is a complete "statmsg" v1 record (its own checksum included),
 * so every message keeps its uid, site, component and attributes on its
 * way up, and the receiving statmgr checks each one as it checks a file.
 *
 * Files: <site>-<32 hex>.sts, built by statmgr in statmgr.box/outgoing/,
 * sent by the scheduler and sender to the parent's despoolr.box/receive/,
 * verified by the parent's despooler and handed to its statmgr in
 * statmgr.box/sites/.
 */
#ifndef SITESRV_STATREP_H
#define SITESRV_STATREP_H

#include <openssl/evp.h>

#include "common.h"
#include "pkgfile.h"
#include "util.h"

#define STATREP_KIND      "statrep"
#define STATREP_VERSION   1
#define STATREP_SUFFIX    ".sts"
#define STATREP_MAX_MSGS  1000
#define STATREP_MAX_SIZE  (4 * 1024 * 1024)
/* A builder stops adding messages at this size, which leaves room for
 * one more message of SM_FILE_MAX escaped at its worst under the limit. */
#define STATREP_FILL_SIZE (3 * 1024 * 1024)

/* statmgr's staging directory, relative to <root>/inboxes (not an inbox
 * of the table: only statmgr writes it, the scheduler takes from it). */
#define STATREP_OUTGOING  "statmgr.box/outgoing"

/* One message of a bundle: its status message file text. */
struct statrep_msg {
    const char *data;
    size_t      len;
};

struct statrep {
    char      site[SS_SITE_LEN + 1];  /* the sending site */
    int64_t   created_ms;
    size_t    count;
    struct statrep_msg *msgs;         /* count of them, into the parse buffer;
                                       * each NUL terminated there */
    struct rec rec;                   /* the parsed record (statrep_free) */
};

/*
 * Build a signed bundle of msgs[0..n) from site into b (empty on entry).
 * -EINVAL (n of 0 or more than STATREP_MAX_MSGS, a bad site, no key),
 * -EFBIG (larger than STATREP_MAX_SIZE), -ENOMEM, -EIO, with err; b is
 * empty on error.
 */
int statrep_build(struct sbuf *b, const char *site, int64_t created_ms,
                  const struct statrep_msg *msgs, size_t n, EVP_PKEY *key,
                  char *err, size_t errlen);

/*
 * Parse buf[0..len) (modified in place; it must outlive out) as a bundle:
 * record checks and checksum, kind and version, fields (site, created,
 * count equal to the msg fields, 1..STATREP_MAX_MSGS; unknown fields
 * refused), and the signature with key_for(arg, site) (see
 * rec_parse_signed; key_for NULL: the despooler verified it already).
 * The messages themselves are not parsed here: each is checked by
 * sm_parse when it is recorded.  0, or -EBADMSG (malformed), -EPERM
 * (unknown site, bad signature), -ENOMEM with err; out is then empty.
 */
int statrep_parse(char *buf, size_t len, instr_key_fn key_for, void *arg,
                  struct statrep *out, char *err, size_t errlen);
void statrep_free(struct statrep *s);

/* Create <root>/inboxes/statmgr.box/sites and .../outgoing if missing
 * (site roots made before bundles existed).  0 or -errno. */
int statrep_dirs(const char *root);

#endif
