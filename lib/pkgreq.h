/*
 * pkgreq.h - package requests, the files in inboxes/distmgr.box (*.pkg):
 * what sitectl (and, from the parent site, the despooler) asks distmgr
 * to do.  A record of kind "pkgreq" version 1 (docs/formats.md):
 *
 *   action=update    make a new source version of package (a new
 *                    package is one with no version yet), then bring
 *                    its DPs and child sites to it
 *   action=delete    remove the package from every DP, then from the
 *                    database and the store
 *   action=retry     look again at the package's DPs (after `sitectl
 *                    retry now`, or a DP added); package "*" means every
 *                    package
 *   package=<ID>     CEN00001, or "*" for retry
 *   time=<ISO 8601>  when it was asked (for the log)
 *
 * The request carries no other data: the package's name, source and
 * targets are in the site database, which sitectl writes first.  A
 * request therefore cannot disagree with the database, and a duplicate
 * request does no harm.
 */
#ifndef SITESRV_PKGREQ_H
#define SITESRV_PKGREQ_H

#include "common.h"
#include "util.h"

enum pkgreq_action { PKGREQ_UPDATE, PKGREQ_DELETE, PKGREQ_RETRY };

struct pkgreq {
    enum pkgreq_action action;
    char    package[16];       /* "CEN00001" or "*" */
    int64_t time_ms;
};

#define PKGREQ_MAX_SIZE 4096

/* Is s a package ID: 3 site-code characters [A-Z0-9] and 5 upper-case
 * hex digits?  1/0. */
int pkgid_ok(const char *s);
const char *pkgreq_action_name(enum pkgreq_action a);
/* Format r into b (empty on entry). */
int pkgreq_format(const struct pkgreq *r, struct sbuf *b);
/* Parse (buf modified in place): -EBADMSG with err for anything wrong. */
int pkgreq_parse(char *buf, size_t len, struct pkgreq *r, char *err, size_t errlen);
/* Drop a request into <root>/inboxes/distmgr.box with the inbox
 * protocol; prefix names the writer (the site code).  0 or -errno. */
int pkgreq_drop(const char *root, const char *prefix, enum pkgreq_action a,
                const char *package);

#endif
