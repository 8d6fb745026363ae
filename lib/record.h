/*
 * record.h - the one self-checking text format of sitesrv files: jobs,
 * send requests, instructions, status messages, manifests, package
 * requests (SPEC 7; documented in docs/formats.md).
 *
 *   sitesrv <kind> <version>\n
 *   <name>=<escaped value>\n        (zero or more; a name may repeat)
 *   end <sha256 of every byte before this line, 64 lower-case hex>\n
 *
 * kind is [a-z]{1,15}; version a decimal 1..999; name [A-Za-z0-9_.-]{1,64};
 * a value escapes '\\' as \\, newline as \n, CR as \r, TAB as \t and every
 * other byte below 0x20 or 0x7f as \xHH.  Nothing may follow the end line.
 *
 * The parser works in place on a caller's buffer and never trusts it: it
 * enforces the limits below and the checksum before any field is used, so
 * a truncated, padded or altered file is refused as a whole.
 */
#ifndef SITESRV_RECORD_H
#define SITESRV_RECORD_H

#include "common.h"
#include "util.h"

#define REC_KIND_MAX   15
#define REC_NAME_MAX   64

struct rec_limits {
    size_t max_size;        /* whole file, bytes */
    size_t max_line;        /* one line, bytes, including the newline */
    size_t max_fields;      /* field lines */
};

/* Defaults: 1 MiB, 64 KiB lines, 4096 fields (manifests are the big ones). */
extern const struct rec_limits rec_default_limits;

struct rec_field {
    const char *name;
    const char *value;      /* unescaped, NUL terminated (inside the buffer) */
    size_t      vlen;       /* may contain NUL bytes if \x00 was written */
};

struct rec {
    char              kind[REC_KIND_MAX + 1];
    int               version;
    size_t            nfields;
    struct rec_field *fields;   /* malloc'ed, rec_free() */
};

/* Parse buf[0..len) in place (the buffer is modified and must outlive r).
 * Returns 0, or -EBADMSG with err[] naming the line and the fault, or
 * -EFBIG / -ENOMEM. */
int rec_parse(struct rec *r, char *buf, size_t len,
              const struct rec_limits *lim, char *err, size_t errlen);
void rec_free(struct rec *r);

/* First field named name, or NULL. */
const char *rec_get(const struct rec *r, const char *name);
/* First field, required: NULL and err[] "missing field X" when absent. */
const char *rec_need(const struct rec *r, const char *name, char *err, size_t errlen);
/* The idx-th field named name (0-based), or NULL. */
const char *rec_get_nth(const struct rec *r, const char *name, size_t idx);
size_t rec_count(const struct rec *r, const char *name);
/* Required integer field within [min,max]. */
int rec_get_int(const struct rec *r, const char *name, long long min, long long max,
                long long *out, char *err, size_t errlen);

/* Writer: the caller's sbuf receives the complete record. */
int rec_begin(struct sbuf *b, const char *kind, int version);
int rec_add(struct sbuf *b, const char *name, const char *value);
int rec_addn(struct sbuf *b, const char *name, const void *value, size_t vlen);
int rec_addf(struct sbuf *b, const char *name, const char *fmt, ...) SS_PRINTF(3, 4);
int rec_end(struct sbuf *b);

/* SHA-256 helper shared with other parts (OpenSSL SHA256_Init/Update/Final,
 * not EVP: see record.c).  Thread safe.  out is 32 bytes. */
int ss_sha256(const void *data, size_t len, unsigned char out[32]);

#endif
