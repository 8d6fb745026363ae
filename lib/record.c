/*
 * record.c - the self-checking text format of every sitesrv file.
 *
 * SYNOPSIS
 *   rec_parse rec_free                  read a record from a buffer, in place
 *   rec_get rec_need rec_get_nth rec_count rec_get_int
 *                                       look fields up
 *   rec_begin rec_add rec_addn rec_addf rec_end
 *                                       write a record into a struct sbuf
 *   ss_sha256                           SHA-256 (OpenSSL libcrypto)
 *   rec_default_limits
 *
 * DESCRIPTION
 *   A record is a header line "sitesrv <kind> <version>", field lines
 *   "<name>=<escaped value>" and an end line "end <sha256>" whose checksum
 *   covers every byte before it (docs/formats.md has the grammar).  The
 *   files come from other processes and other machines, so the parser
 *   trusts nothing: it works on a caller's buffer, enforces the caller's
 *   limits while it scans (a line is only ever searched up to max_line
 *   bytes, so a 10 MB line without a newline costs one bounded memchr),
 *   refuses any control byte, and verifies the checksum before a single
 *   value is unescaped or returned.  A file that fails any check is
 *   refused as a whole; nothing is ever half-read.
 *
 *   The parse is two passes over the bytes plus the hash: one structural
 *   pass that splits lines and checks names and bytes, then, once the
 *   checksum matches, one pass that terminates names and unescapes values
 *   in place.  The only allocation is the fields array, grown
 *   geometrically.
 *
 *   The writer appends to a struct sbuf.  rec_begin() requires an empty
 *   (new or ss_sbuf_reset) buffer, because rec_end() hashes the whole
 *   buffer: a record is always the entire content of its sbuf.
 *
 *   ss_sha256() keeps its state on the caller's stack: thread safe.
 *
 * DIAGNOSTICS
 *   Nothing is logged.  rec_parse() returns -EBADMSG with err[] naming
 *   the line and the fault ("line 3: bad escape \q", "checksum mismatch",
 *   "truncated: no end line", "data after end line"), -EFBIG for a file
 *   over max_size, -ENOMEM.  The writer returns -EINVAL for a bad kind,
 *   version or name (or rec_begin on a non-empty buffer), -ENOMEM.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "record.h"

const struct rec_limits rec_default_limits = {
    .max_size = 1024 * 1024,
    .max_line = 64 * 1024,
    .max_fields = 4096,
};

#define REC_MAGIC       "sitesrv "
#define REC_MAGIC_LEN   8
#define REC_END         "end "
#define REC_END_LEN     4
#define REC_HASH_HEX    64
/* "end " + 64 hex + "\n" */
#define REC_ENDLINE_LEN (REC_END_LEN + REC_HASH_HEX + 1)
#define REC_VERSION_MAX 999

/* ---- SHA-256 ---------------------------------------------------------- */

/*
 * The direct SHA-256 functions rather than EVP: every daemon hashes every
 * file it reads, and in OpenSSL 3 the first EVP digest initialises the
 * provider machinery, which keeps about 2 MB resident in each process
 * (measured on a fresh statmgr) and costs a context per call.  The direct
 * functions compute the same digest with the same assembly, from the
 * caller's stack only, so they are thread safe with nothing to set up.
 * OpenSSL 3 marks them deprecated but ships them throughout 3.x.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
int ss_sha256(const void *data, size_t len, unsigned char out[32])
{
    SHA256_CTX c;

    if (SHA256_Init(&c) != 1 || SHA256_Update(&c, data, len) != 1 ||
        SHA256_Final(out, &c) != 1)
        return -EIO;
    return 0;
}
#pragma GCC diagnostic pop

/* ---- character classes ------------------------------------------------ */

static int name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

static int name_ok(const char *s, size_t n)
{
    if (n == 0 || n > REC_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char((unsigned char)s[i]))
            return 0;
    return 1;
}

static int kind_ok(const char *s, size_t n)
{
    if (n == 0 || n > REC_KIND_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'a' || s[i] > 'z')
            return 0;
    return 1;
}

/* Bytes the writer always escapes, so the raw text never holds them. */
static int ctl_byte(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* ---- parser ----------------------------------------------------------- */

static int bad(char *err, size_t errlen, const char *fmt, ...) SS_PRINTF(3, 4);
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EBADMSG;
}

/* Describe a control byte for an error message. */
static const char *ctl_name(unsigned char c, char *buf, size_t len)
{
    if (c == 0)
        return "NUL byte";
    if (c == '\r')
        return "carriage return";
    snprintf(buf, len, "control byte 0x%02x", c);
    return buf;
}

/* The first control byte of p[0..n), or NULL. */
static const char *find_ctl(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        if (ctl_byte(u[i]))
            return p + i;
    return NULL;
}

/* "sitesrv <kind> <version>" without its newline. */
static int parse_header(struct rec *r, const char *p, size_t n)
{
    if (n < REC_MAGIC_LEN || memcmp(p, REC_MAGIC, REC_MAGIC_LEN) != 0)
        return -1;
    const char *k = p + REC_MAGIC_LEN;
    const char *sp = memchr(k, ' ', n - REC_MAGIC_LEN);
    if (sp == NULL || !kind_ok(k, (size_t)(sp - k)))
        return -1;
    const char *v = sp + 1;
    size_t vn = (size_t)(p + n - v);
    /* 1..999, no sign, no leading zero: one spelling per version. */
    if (vn == 0 || vn > 3 || v[0] == '0')
        return -1;
    int ver = 0;
    for (size_t i = 0; i < vn; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        ver = ver * 10 + (v[i] - '0');
    }
    memcpy(r->kind, k, (size_t)(sp - k));
    r->kind[sp - k] = '\0';
    r->version = ver;
    return 0;
}

static int push_field(struct rec *r, size_t *cap, const char *name,
                      const char *value, size_t vlen)
{
    if (r->nfields == *cap) {
        size_t ncap = *cap ? *cap * 2 : 32;
        struct rec_field *f = realloc(r->fields, ncap * sizeof *f);
        if (f == NULL)
            return -ENOMEM;
        r->fields = f;
        *cap = ncap;
    }
    r->fields[r->nfields].name = name;
    r->fields[r->nfields].value = value;
    r->fields[r->nfields].vlen = vlen;
    r->nfields++;
    return 0;
}

/* Unescape v[0..n) in place and NUL-terminate it (over its newline).
 * Returns the new length, or (size_t)-1 with err[] set. */
static size_t unescape(char *v, size_t n, size_t line, char *err, size_t errlen)
{
    char *bs = memchr(v, '\\', n);
    if (bs == NULL) {
        v[n] = '\0';
        return n;
    }
    char *end = v + n;
    char *w = bs;
    const char *s = bs;
    while (s < end) {
        if (*s != '\\') {
            /* Copy the run up to the next backslash in one go. */
            const char *nb = memchr(s, '\\', (size_t)(end - s));
            size_t run = (size_t)((nb ? nb : end) - s);
            memmove(w, s, run);
            w += run;
            s += run;
            continue;
        }
        if (s + 1 >= end) {
            bad(err, errlen, "line %zu: backslash at end of value", line);
            return (size_t)-1;
        }
        switch (s[1]) {
        case '\\': *w++ = '\\'; s += 2; break;
        case 'n':  *w++ = '\n'; s += 2; break;
        case 'r':  *w++ = '\r'; s += 2; break;
        case 't':  *w++ = '\t'; s += 2; break;
        case 'x': {
            int hi = s + 2 < end ? ss_hexval((unsigned char)s[2]) : -1;
            int lo = s + 3 < end ? ss_hexval((unsigned char)s[3]) : -1;
            if (hi < 0 || lo < 0) {
                bad(err, errlen, "line %zu: bad escape \\x (want two hex digits)", line);
                return (size_t)-1;
            }
            *w++ = (char)(hi << 4 | lo);
            s += 4;
            break;
        }
        default: {
            /* The escaped character is printable: control bytes were
             * refused by the structural pass. */
            bad(err, errlen, "line %zu: bad escape \\%c", line, s[1]);
            return (size_t)-1;
        }
        }
    }
    *w = '\0';
    return (size_t)(w - v);
}

int rec_parse(struct rec *r, char *buf, size_t len,
              const struct rec_limits *lim, char *err, size_t errlen)
{
    size_t cap = 0, line = 0;
    const char *p = buf, *end = buf + len;
    const char *endline = NULL;     /* start of the "end " line */
    char tmp[32];
    int rc;

    memset(r, 0, sizeof *r);
    if (err && errlen)
        err[0] = '\0';
    if (lim == NULL)
        lim = &rec_default_limits;
    if (len > lim->max_size) {
        if (err && errlen)
            snprintf(err, errlen, "file is %zu bytes, over the limit of %zu",
                     len, lim->max_size);
        return -EFBIG;
    }

    /* Structural pass: split lines (each searched no further than
     * max_line), refuse control bytes, check the header and every name. */
    while (p < end) {
        size_t rem = (size_t)(end - p);
        size_t win = rem < lim->max_line ? rem : lim->max_line;
        const char *nl = memchr(p, '\n', win);
        line++;
        if (nl == NULL) {
            if (rem >= lim->max_line)
                rc = bad(err, errlen, "line %zu: longer than %zu bytes",
                         line, lim->max_line);
            else
                rc = bad(err, errlen, "truncated: no end line (line %zu has no newline)",
                         line);
            goto fail;
        }
        size_t n = (size_t)(nl - p);
        const char *c = find_ctl(p, n);
        if (c) {
            rc = bad(err, errlen, "line %zu: %s at column %zu", line,
                     ctl_name((unsigned char)*c, tmp, sizeof tmp),
                     (size_t)(c - p) + 1);
            goto fail;
        }
        if (line == 1) {
            if (parse_header(r, p, n) < 0) {
                rc = bad(err, errlen, "line 1: bad header (want \"sitesrv <kind> <version>\")");
                goto fail;
            }
        } else if (n >= REC_END_LEN && memcmp(p, REC_END, REC_END_LEN) == 0) {
            /* Names never hold a space, so this can only be the end line. */
            if (n != REC_ENDLINE_LEN - 1) {
                rc = bad(err, errlen, "line %zu: malformed end line", line);
                goto fail;
            }
            for (size_t i = REC_END_LEN; i < n; i++) {
                if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
                    rc = bad(err, errlen, "line %zu: malformed end line", line);
                    goto fail;
                }
            }
            endline = p;
            p = nl + 1;
            break;
        } else {
            const char *eq = memchr(p, '=', n);
            if (eq == NULL) {
                rc = bad(err, errlen, "line %zu: no '=' in field line", line);
                goto fail;
            }
            if (!name_ok(p, (size_t)(eq - p))) {
                rc = bad(err, errlen, "line %zu: bad field name (want [A-Za-z0-9_.-]{1,%d})",
                         line, REC_NAME_MAX);
                goto fail;
            }
            if (r->nfields >= lim->max_fields) {
                rc = bad(err, errlen, "line %zu: too many fields (limit %zu)",
                         line, lim->max_fields);
                goto fail;
            }
            /* Raw positions for now; names and values are terminated
             * only after the checksum, which covers the raw bytes. */
            if ((rc = push_field(r, &cap, p, eq + 1, (size_t)(nl - eq - 1))) < 0) {
                if (err && errlen)
                    snprintf(err, errlen, "out of memory");
                goto fail;
            }
        }
        p = nl + 1;
    }
    if (line == 0) {
        rc = bad(err, errlen, "truncated: empty file");
        goto fail;
    }
    if (endline == NULL) {
        rc = bad(err, errlen, "truncated: no end line");
        goto fail;
    }
    if (p != end) {
        rc = bad(err, errlen, "data after end line (line %zu)", line);
        goto fail;
    }

    /* The checksum, before any value is touched. */
    unsigned char sum[32], want[32];
    if ((rc = ss_sha256(buf, (size_t)(endline - buf), sum)) < 0) {
        if (err && errlen)
            snprintf(err, errlen, "SHA-256 failed");
        goto fail;
    }
    for (size_t i = 0; i < 32; i++)
        want[i] = (unsigned char)(ss_hexval((unsigned char)endline[REC_END_LEN + 2 * i]) << 4 |
                                  ss_hexval((unsigned char)endline[REC_END_LEN + 2 * i + 1]));
    if (memcmp(sum, want, 32) != 0) {
        rc = bad(err, errlen, "checksum mismatch");
        goto fail;
    }

    /* Second pass: terminate names, unescape values in place. */
    for (size_t i = 0; i < r->nfields; i++) {
        struct rec_field *f = &r->fields[i];
        char *v = (char *)f->value;
        v[-1] = '\0';               /* the '=' */
        size_t vn = unescape(v, f->vlen, i + 2, err, errlen);
        if (vn == (size_t)-1) {
            rc = -EBADMSG;
            goto fail;
        }
        f->vlen = vn;
    }
    return 0;

fail:
    rec_free(r);
    return rc;
}

void rec_free(struct rec *r)
{
    if (r == NULL)
        return;
    free(r->fields);
    r->fields = NULL;
    r->nfields = 0;
}

const char *rec_get(const struct rec *r, const char *name)
{
    return rec_get_nth(r, name, 0);
}

const char *rec_need(const struct rec *r, const char *name, char *err, size_t errlen)
{
    const char *v = rec_get(r, name);
    if (v == NULL && err && errlen)
        snprintf(err, errlen, "missing field %s", name);
    return v;
}

const char *rec_get_nth(const struct rec *r, const char *name, size_t idx)
{
    for (size_t i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, name) == 0 && idx-- == 0)
            return r->fields[i].value;
    return NULL;
}

size_t rec_count(const struct rec *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, name) == 0)
            n++;
    return n;
}

int rec_get_int(const struct rec *r, const char *name, long long min, long long max,
                long long *out, char *err, size_t errlen)
{
    const struct rec_field *f = NULL;

    for (size_t i = 0; i < r->nfields && f == NULL; i++)
        if (strcmp(r->fields[i].name, name) == 0)
            f = &r->fields[i];
    if (f == NULL) {
        if (err && errlen)
            snprintf(err, errlen, "missing field %s", name);
        return -EBADMSG;
    }
    /* A \x00 inside the digits would otherwise end the number early. */
    if (strlen(f->value) != f->vlen || ss_parse_int(f->value, min, max, out) < 0) {
        if (err && errlen)
            snprintf(err, errlen, "field %s: \"%.40s\" is not an integer in [%lld, %lld]",
                     name, f->value, min, max);
        return -EBADMSG;
    }
    return 0;
}

/* ---- writer ----------------------------------------------------------- */

int rec_begin(struct sbuf *b, const char *kind, int version)
{
    /* rec_end() hashes the whole buffer, so the record must start it. */
    if (b->len != 0 || kind == NULL || !kind_ok(kind, strlen(kind)) ||
        version < 1 || version > REC_VERSION_MAX)
        return -EINVAL;
    return ss_sbuf_addf(b, REC_MAGIC "%s %d\n", kind, version);
}

int rec_addn(struct sbuf *b, const char *name, const void *value, size_t vlen)
{
    static const char hx[] = "0123456789abcdef";
    const unsigned char *v = value, *e = v + vlen, *run = v;
    size_t n0 = b->len;
    int rc;

    if (name == NULL || !name_ok(name, strlen(name)) || (value == NULL && vlen))
        return -EINVAL;
    if ((rc = ss_sbuf_adds(b, name)) < 0 || (rc = ss_sbuf_add(b, "=", 1)) < 0)
        goto fail;
    for (; v < e; v++) {
        char esc[4];
        size_t en;
        if (*v == '\\') {
            esc[0] = '\\'; esc[1] = '\\'; en = 2;
        } else if (!ctl_byte(*v)) {
            continue;
        } else if (*v == '\n') {
            esc[0] = '\\'; esc[1] = 'n'; en = 2;
        } else if (*v == '\r') {
            esc[0] = '\\'; esc[1] = 'r'; en = 2;
        } else if (*v == '\t') {
            esc[0] = '\\'; esc[1] = 't'; en = 2;
        } else {
            esc[0] = '\\'; esc[1] = 'x'; esc[2] = hx[*v >> 4]; esc[3] = hx[*v & 15];
            en = 4;
        }
        /* Plain runs go in with one copy each. */
        if ((v > run && (rc = ss_sbuf_add(b, run, (size_t)(v - run))) < 0) ||
            (rc = ss_sbuf_add(b, esc, en)) < 0)
            goto fail;
        run = v + 1;
    }
    if ((v > run && (rc = ss_sbuf_add(b, run, (size_t)(v - run))) < 0) ||
        (rc = ss_sbuf_add(b, "\n", 1)) < 0)
        goto fail;
    return 0;

fail:
    /* Leave no half field behind. */
    b->len = n0;
    if (b->data)
        b->data[n0] = '\0';
    return rc;
}

int rec_add(struct sbuf *b, const char *name, const char *value)
{
    if (value == NULL)
        return -EINVAL;
    return rec_addn(b, name, value, strlen(value));
}

int rec_addf(struct sbuf *b, const char *name, const char *fmt, ...)
{
    struct sbuf v;
    va_list ap;

    ss_sbuf_init(&v);
    va_start(ap, fmt);
    int rc = ss_sbuf_vaddf(&v, fmt, ap);
    va_end(ap);
    if (rc == 0)
        rc = rec_addn(b, name, v.data ? v.data : "", v.len);
    ss_sbuf_free(&v);
    return rc;
}

int rec_end(struct sbuf *b)
{
    unsigned char sum[32];
    char line[REC_ENDLINE_LEN + 1];
    int rc;

    if (b->len < REC_MAGIC_LEN || memcmp(b->data, REC_MAGIC, REC_MAGIC_LEN) != 0)
        return -EINVAL;
    if ((rc = ss_sha256(b->data, b->len, sum)) < 0)
        return rc;
    memcpy(line, REC_END, REC_END_LEN);
    ss_hex(sum, sizeof sum, line + REC_END_LEN);
    line[REC_ENDLINE_LEN - 1] = '\n';
    return ss_sbuf_add(b, line, REC_ENDLINE_LEN);
}
