/*
 * pkgfile.h - what a site sends a child site for one package version
 * (SPEC 3 "package to child sites"; issue 3, read by issue 4's despooler):
 *
 *   the package file (.pck): the content of every regular file of the
 *     manifest, in manifest order, concatenated and compressed as one
 *     zstd stream.  No names or sizes inside: the instruction's manifest
 *     gives them, and every file is checked against its SHA-256 when it
 *     is unpacked.
 *   the instruction (.ins): a record of kind "instruction" version 1 that
 *     names the package, version and origin site, the package file's size
 *     and SHA-256, and the manifest (mf_to_record), signed with the origin
 *     site's Ed25519 key (keys/site.key).
 *
 * Instruction fields, in this order:
 *   package=CEN00001  name=<text>  version=<n>  site=<origin code>
 *   created=<ISO 8601 UTC>  pck_size=<bytes>  pck_sha256=<64 hex>
 *   files=<n>  bytes=<n>   then the manifest's file=/dir= fields
 *   signature=<128 hex>    Ed25519 over every byte of the file before the
 *                          signature line (header line included)
 *   end <sha256>
 */
#ifndef SITESRV_PKGFILE_H
#define SITESRV_PKGFILE_H

#include <openssl/evp.h>
#include "common.h"
#include "manifest.h"
#include "record.h"
#include "util.h"

#define INSTR_KIND     "instruction"
#define INSTR_VERSION  1
#define INSTR_MAX_SIZE (64 * 1024 * 1024)

struct instr {
    char      package[16];
    char      name[256];
    long long version;
    char      site[SS_SITE_LEN + 1];
    int64_t   created_ms;
    int       priority;         /* enum send_prio (sendreq.h): the package's send priority */
    int64_t   pck_size;
    unsigned char pck_sha[32];
};

/*
 * Write the package file of m (objects from storedir through a store
 * reader: small.db rows and loose files) to path: built as
 * path.tmp (O_EXCL), fsync'ed, renamed over path.  *size and sha (may be
 * NULL) receive the file's size and SHA-256.  level: zstd level (3 is a
 * good default).  stop (may be NULL) is polled between files: -EINTR.
 * 0 or -errno with err; nothing left at path.tmp on error.
 */
int pck_write(const char *storedir, const struct manifest *m, const char *path,
              int level, const volatile int *stop, int64_t *size, unsigned char sha[32],
              char *err, size_t errlen);

/*
 * Unpack a package file into the store: check its size and SHA-256
 * against want_size/want_sha first, then decompress as a stream, split by
 * m's sizes, check each file's SHA-256, and store each object the store
 * lacks: a small one (STORE_SMALL) into small.db through a store writer,
 * committed once at the end; a large one as a loose object (store/.tmp,
 * mode 0640, renamed in).  A mismatch anywhere: -EBADMSG with err naming
 * the file; the small objects are rolled back, while loose objects
 * already verified stay (they are correct).
 */
int pck_extract(const char *path, int64_t want_size, const unsigned char want_sha[32],
                const struct manifest *m, const char *storedir, const volatile int *stop,
                char *err, size_t errlen);

/*
 * What pck_extract_fd may do differently, and says back (may be NULL:
 * pck_extract's behaviour).
 *
 * defer_max: when the manifest's small regular files (STORE_SMALL) come
 * to at most this many bytes, they are not put into small.db here but
 * kept, verified, in small[]/data for the caller to store (the
 * Despooler puts those of several packages into one small.db
 * transaction: one commit, one sync, for all).  0: never.  Every small
 * file is kept then, also one the store has (INSERT OR IGNORE makes that
 * harmless), so no small.db connection is needed at all.
 *
 * Out: deferred (1 when they were kept), nsmall entries of small (each
 * object's SHA-256, size and offset of its bytes in data), and loose: the
 * manifest's regular files that are loose objects (stored here or found
 * in the store).  Loose objects are not synced here: a caller that
 * records a manifest naming them makes the store durable first
 * (store_sync); with loose == 0 and the small objects committed, nothing
 * of the package needs it.  pck_xopt_free releases small and data.
 */
struct pck_small {
    unsigned char sha[32];
    int64_t       size;
    size_t        off;
};
struct pck_xopt {
    size_t            defer_max;
    int               deferred;
    struct pck_small *small;
    size_t            nsmall;
    unsigned char    *data;
    size_t            loose;
};
void pck_xopt_free(struct pck_xopt *o);

/*
 * pck_extract on a package file the caller opened (fd, at any offset;
 * read from its start, left open): the caller opens it with O_NOFOLLOW
 * and O_NONBLOCK, so that a symbolic link or a FIFO put in its place
 * never blocks a worker; anything but a regular file of want_size bytes
 * is -EBADMSG.  name is what messages call it.  stop is polled between
 * reads.  o: see struct pck_xopt.
 */
int pck_extract_fd(int fd, const char *name, int64_t want_size, const unsigned char want_sha[32],
                   const struct manifest *m, const char *storedir, const volatile int *stop,
                   struct pck_xopt *o, char *err, size_t errlen);

/* Keys: PEM files as sitectl init writes them.  0 or -errno with err. */
int sign_load_private(const char *path, EVP_PKEY **key, char *err, size_t errlen);
int sign_load_public(const char *path, EVP_PKEY **key, char *err, size_t errlen);
int sign_load_public_pem(const char *pem, size_t len, EVP_PKEY **key, char *err, size_t errlen);

/*
 * Signed records: instructions and status bundles (lib/statrep.h) alike.
 * The last field is signature=<128 lower-case hex>, an Ed25519 signature
 * by the key of the site that the record's one "site" field names, over
 * every byte of the file before the signature line (header included).
 */
typedef EVP_PKEY *(*instr_key_fn)(void *arg, const char *site);

/* Append the signature field and the end line to b, which holds a
 * record's header and fields (rec_begin, rec_add...).  0, or -EINVAL (no
 * key, not Ed25519) / -EIO (OpenSSL) / -ENOMEM with err; b is then left
 * as it was or with a partial tail, for the caller to reset. */
int rec_sign(struct sbuf *b, EVP_PKEY *key, char *err, size_t errlen);

/* What rec_parse_signed checks: the kind and the highest version read,
 * the limits, the field names allowed ("site" and "signature" among
 * them), and the words its sentences use ("status bundle", "a status
 * bundle"). */
struct signed_spec {
    const char *kind;
    int         version;
    const struct rec_limits *lim;
    const char *what, *a_what;
    const char *const *fields;
    size_t      nfields;
};

/*
 * Parse buf (in place) as a signed record of sp: the record's checks and
 * checksum, its kind and version, the signature as its last field, no
 * field outside sp->fields, one valid site code (copied to site), then
 * the signature with key_for(arg, site) (NULL: unknown site, refused; the
 * key is freed here).  key_for NULL skips only the verification, for a
 * reader whose file was verified by the one that handed it over.  On 0,
 * r holds the fields (rec_free); on error r is empty.  -EBADMSG
 * (malformed), -EPERM (unknown site, bad signature), -ENOMEM, with err.
 */
int rec_parse_signed(char *buf, size_t len, const struct signed_spec *sp,
                     instr_key_fn key_for, void *arg, struct rec *r,
                     char site[SS_SITE_LEN + 1], char *err, size_t errlen);

/* Build the signed instruction into b (empty on entry). */
int instr_build(struct sbuf *b, const struct instr *in, const struct manifest *m,
                EVP_PKEY *key, char *err, size_t errlen);

/*
 * Parse and verify an instruction in buf (modified in place): record
 * checks, then the signature with key_for(arg, site) (the public key
 * recorded for the site it names; NULL: unknown site, refused), then the
 * fields and the manifest.  -EBADMSG (malformed), -EPERM (unknown site or
 * bad signature) with err.  The key returned by key_for is freed here.
 */
int instr_parse(char *buf, size_t len, instr_key_fn key_for, void *arg,
                struct instr *out, struct manifest *m, char *err, size_t errlen);

#endif
