/*
 * NAME
 *   pkgfile - the package file and the signed instruction a site sends a
 *   child site for one package version (SPEC 3, issue 3).
 *
 * SYNOPSIS
 *   pck_write pck_extract pck_extract_fd pck_xopt_free
 *                                          the zstd package file (.pck)
 *   sign_load_private sign_load_public sign_load_public_pem
 *                                          Ed25519 keys from PEM
 *   rec_sign rec_parse_signed              signed records (instructions,
 *                                          status bundles)
 *   instr_build instr_parse                the signed instruction (.ins)
 *
 * DESCRIPTION
 *   The package file is the content of every regular file of a manifest,
 *   in manifest order, concatenated and compressed as one zstd frame (with
 *   zstd's own content checksum).  It holds no names and no sizes: the
 *   instruction carries the manifest, and the unpacker splits the stream
 *   by the manifest's sizes and checks each piece against its SHA-256.
 *   Both directions stream through fixed buffers of zstd's recommended
 *   sizes, so a package of any size costs the same memory (about 1 MiB
 *   with the compressor's window at level 3, and one STORE_SMALL_MAX
 *   buffer for the small objects of the store).
 *
 *   The store keeps an object as a row of store/small.db when it is
 *   smaller than STORE_SMALL_MAX and as a loose file otherwise; the
 *   manifest's sizes say which.  pck_write reads every file through one
 *   store reader: a small object arrives whole in the buffer, a loose one
 *   is read from its file in pieces.
 *
 *   pck_write builds path.tmp (O_EXCL, after removing the leftover of a
 *   crash), hashes the compressed bytes as they are written, fsyncs,
 *   renames over path and fsyncs the directory: path is either the old
 *   file or the complete new one.
 *
 *   pck_extract refuses the file unless its size and SHA-256 are those
 *   the (signed) instruction names: the size before decompressing a
 *   byte, the SHA-256 as the file is read for the decoder (one pass over
 *   a large file rather than two), checked before anything is committed
 *   or 0 returned.  Each file of
 *   the stream is hashed as it is decoded, and one the store lacks is
 *   kept at the same time: a small one in the buffer, put into small.db
 *   (store_put_small) once its hash matched; a large one in a temporary
 *   file in store/.tmp (mode 0640, like the loose objects mf_snapshot
 *   writes), renamed into store/objects/<aa>/<hex> (never replacing) once
 *   its hash matched.  So the store never holds a wrong object.  The
 *   small objects are one small.db transaction, committed (durably) only
 *   when the whole package checked out; on any error it is rolled back,
 *   while loose objects already verified stay (they are correct).  Loose
 *   objects are not fsync'ed one by one: the caller makes the whole store
 *   durable with one syncfs before it records the version, as
 *   mf_snapshot's callers do.  pck_extract_fd takes a descriptor the
 *   caller opened (O_NOFOLLOW, O_NONBLOCK: never a FIFO that blocks) and
 *   may leave the small objects, verified, in memory for the caller
 *   (struct pck_xopt): the Despooler stores those of several packages in
 *   one small.db transaction.  Reading polls stop, so that a stop never
 *   waits for a large file on a slow share.
 *
 *   The instruction is a record (record.h) whose last field is an Ed25519
 *   signature over every byte before the signature line; status bundles
 *   (statrep.c) are signed the same way, by the same two functions
 *   (rec_sign, rec_parse_signed).  Ed25519 signs the message itself, not
 *   a digest, so rec_parse_signed keeps a copy of the signed bytes while
 *   rec_parse works in place on the caller's buffer;
 *   the copy is freed as soon as the signature is checked.  The record's
 *   own checksum is verified first (a damaged file is -EBADMSG), the
 *   signature next (an altered or forged one is -EPERM), and only then
 *   are the fields trusted.
 *
 *   SHA-256 goes through EVP here, unlike ss_sha256 (record.c): a daemon
 *   that loads a key has the provider machinery anyway, and EVP hashes a
 *   stream with one context reused for every file.
 *
 *   Every function is thread safe: the state lives in each call.
 *
 * DIAGNOSTICS
 *   Nothing is logged; the caller logs with the sentence left in err.
 *   Returns 0 or a negative errno: -EBADMSG for a package file or an
 *   instruction that does not match what it should be (size, SHA-256, a
 *   file's hash, a short or long stream, a malformed record or field),
 *   -EPERM for an instruction from an unknown site or whose signature
 *   does not verify, -EINVAL for a key that is not an Ed25519 key or bad
 *   arguments, -EIO for a store object whose size is not the manifest's
 *   or a compressor failure, -ENOMEM, and the errno of a failed system
 *   call (-ENOENT for a missing store object, small or loose, or key
 *   file, -ENOSPC, ...).
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <zstd.h>

#include "fsutil.h"
#include "manifest.h"
#include "pkgfile.h"
#include "pkgreq.h"
#include "record.h"
#include "sendreq.h"
#include "util.h"

#define ED25519_SIG_LEN  64
#define KEY_FILE_MAX     (64 * 1024)
/* "signature=" + 128 hex + "\n" and "end " + 64 hex + "\n". */
#define SIG_FIELD        "signature="
#define SIG_FIELD_LEN    10
#define SIG_LINE_LEN     (SIG_FIELD_LEN + 2 * ED25519_SIG_LEN + 1)
#define END_LINE_LEN     (4 + 64 + 1)

static ssize_t read_some(int fd, void *buf, size_t len)
{
    ssize_t n;

    do
        n = read(fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

/* The directory part of path ("." for a bare name), for its fsync. */
static int dir_of(const char *path, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return ss_strcpy(buf, len, ".");
    if (slash == path)
        return ss_strcpy(buf, len, "/");
    return ss_path(buf, len, "%.*s", (int)(slash - path), path);
}

/* ---- pck_write -------------------------------------------------------- */

struct pckw {
    int           fd;
    ZSTD_CCtx    *cc;
    EVP_MD_CTX   *md;
    struct store_reader *rd;
    void         *small;        /* STORE_SMALL_MAX bytes: a small object whole */
    void         *in, *out;
    size_t        insz, outsz;
    int64_t       written;
};

/* Compress in[0..n) (or finish the frame with ZSTD_e_end), write out
 * every byte the compressor gives back and hash it. */
static int pckw_push(struct pckw *w, const void *data, size_t n, ZSTD_EndDirective mode,
                     const char *path, char *err, size_t errlen)
{
    ZSTD_inBuffer in = { data, n, 0 };
    size_t left;
    int r;

    do {
        ZSTD_outBuffer out = { w->out, w->outsz, 0 };
        left = ZSTD_compressStream2(w->cc, &out, &in, mode);
        if (ZSTD_isError(left)) {
            ss_seterr(err, errlen, "%s: zstd: %s", path, ZSTD_getErrorName(left));
            return -EIO;
        }
        if (out.pos > 0) {
            if ((r = ss_write_all(w->fd, w->out, out.pos)) < 0) {
                ss_seterr(err, errlen, "%s: write: %s", path, strerror(-r));
                return r;
            }
            if (EVP_DigestUpdate(w->md, w->out, out.pos) != 1) {
                ss_seterr(err, errlen, "SHA-256 failed (OpenSSL)");
                return -EIO;
            }
            w->written += (int64_t)out.pos;
        }
        /* e_continue: done when the input is consumed; e_end: when the
         * frame is flushed whole. */
    } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
    return 0;
}

/* How messages name e's store object: its loose file, or its SHA-256
 * in small.db. */
static void object_name(const char *storedir, const struct mf_entry *e, char *buf,
                        size_t len)
{
    char hex[2 * 32 + 1];

    ss_hex(e->sha, 32, hex);
    if (STORE_SMALL(e->size)) {
        if (ss_path(buf, len, "%s in %s/small.db", hex, storedir) == 0)
            return;
    } else if (store_object_path(storedir, e->sha, buf, len) == 0) {
        return;
    }
    ss_strcpy(buf, len, hex);         /* too long to name in full: the hash says it */
}

/* Append the store object of e to the stream: a small one from the
 * buffer store_get filled, a loose one read from its file in pieces. */
static int pckw_file(struct pckw *w, const char *storedir, const struct mf_entry *e,
                     const char *tmp, char *err, size_t errlen)
{
    char obj[SS_PATH_MAX];
    int r, fd = -1;

    if (e->size < 0) {
        ss_seterr(err, errlen, "manifest entry %s has a negative size", e->path);
        return -EINVAL;
    }
    r = store_get(w->rd, e->sha, e->size, w->small, &fd);
    if (r < 0) {
        object_name(storedir, e, obj, sizeof obj);
        /* Objects are never modified, so a size that differs means a
         * damaged store; sending it would only make every child refuse
         * the package. */
        if (r == -EUCLEAN) {
            ss_seterr(err, errlen, "store object %s (of %s) is not %lld bytes as the manifest says",
                   obj, e->path, (long long)e->size);
            return -EIO;
        }
        ss_seterr(err, errlen, "store object %s (of %s): %s", obj, e->path, strerror(-r));
        return r;
    }
    if (fd < 0)
        return pckw_push(w, w->small, (size_t)e->size, ZSTD_e_continue, tmp, err, errlen);

    /* store_get checked the loose object's size; a file that still ends
     * early was truncated under us. */
    for (int64_t left = e->size; left > 0;) {
        size_t want = (uint64_t)left < w->insz ? (size_t)left : w->insz;
        ssize_t n = read_some(fd, w->in, want);
        if (n < 0) {
            r = (int)n;
            object_name(storedir, e, obj, sizeof obj);
            ss_seterr(err, errlen, "%s: read: %s", obj, strerror(-r));
            goto out;
        }
        if (n == 0) {
            object_name(storedir, e, obj, sizeof obj);
            ss_seterr(err, errlen, "store object %s (of %s) ended early", obj, e->path);
            r = -EIO;
            goto out;
        }
        if ((r = pckw_push(w, w->in, (size_t)n, ZSTD_e_continue, tmp, err, errlen)) < 0)
            goto out;
        left -= n;
    }
    r = 0;
out:
    close(fd);
    return r;
}

int pck_write(const char *storedir, const struct manifest *m, const char *path,
              int level, const volatile int *stop, int64_t *size, unsigned char sha[32],
              char *err, size_t errlen)
{
    char tmp[SS_PATH_MAX], dir[SS_PATH_MAX];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    struct pckw w = { .fd = -1 };
    int r;

    if (err && errlen)
        err[0] = '\0';
    if ((r = ss_path(tmp, sizeof tmp, "%s.tmp", path)) < 0 ||
        (r = dir_of(path, dir, sizeof dir)) < 0) {
        ss_seterr(err, errlen, "path too long: %s", path);
        return r;
    }
    /* A leftover from a crash; nobody else writes this name. */
    if (unlink(tmp) < 0 && errno != ENOENT) {
        r = -errno;
        ss_seterr(err, errlen, "cannot remove %s: %s", tmp, strerror(-r));
        return r;
    }
    if ((r = store_reader_open(storedir, &w.rd)) < 0) {
        ss_seterr(err, errlen, "cannot open the store %s: %s", storedir, strerror(-r));
        return r;
    }
    if ((w.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        r = -errno;
        ss_seterr(err, errlen, "%s: %s", tmp, strerror(-r));
        store_reader_close(w.rd);
        return r;
    }

    w.insz = ZSTD_CStreamInSize();
    w.outsz = ZSTD_CStreamOutSize();
    w.in = malloc(w.insz);
    w.out = malloc(w.outsz);
    w.small = malloc(STORE_SMALL_MAX);
    w.cc = ZSTD_createCCtx();
    w.md = EVP_MD_CTX_new();
    if (!w.in || !w.out || !w.small || !w.cc || !w.md) {
        ss_seterr(err, errlen, "out of memory");
        r = -ENOMEM;
        goto fail;
    }
    /* No worker threads: the daemon decides its own parallelism.  The
     * frame checksum lets any zstd tool check a file by itself, and the
     * pledged size puts the content size in the frame header. */
    if (ZSTD_isError(ZSTD_CCtx_setParameter(w.cc, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w.cc, ZSTD_c_checksumFlag, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w.cc, ZSTD_c_nbWorkers, 0)) ||
        ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(w.cc, (unsigned long long)m->bytes))) {
        ss_seterr(err, errlen, "cannot set up the zstd compressor (level %d)", level);
        r = -EINVAL;
        goto fail;
    }
    if (EVP_DigestInit_ex(w.md, EVP_sha256(), NULL) != 1) {
        ss_seterr(err, errlen, "SHA-256 unavailable (OpenSSL)");
        r = -EIO;
        goto fail;
    }

    for (size_t i = 0; i < m->n; i++) {
        if (!S_ISREG(m->e[i].mode))
            continue;
        /* Between files: a daemon that is stopping does not wait for a
         * large package to be compressed to the end. */
        if (stop && *stop) {
            ss_seterr(err, errlen, "stopped");
            r = -EINTR;
            goto fail;
        }
        if ((r = pckw_file(&w, storedir, &m->e[i], tmp, err, errlen)) < 0)
            goto fail;
    }
    if ((r = pckw_push(&w, NULL, 0, ZSTD_e_end, tmp, err, errlen)) < 0)
        goto fail;
    if (EVP_DigestFinal_ex(w.md, digest, &dlen) != 1 || dlen != 32) {
        ss_seterr(err, errlen, "SHA-256 failed (OpenSSL)");
        r = -EIO;
        goto fail;
    }

    if ((r = ss_fsync_fd(w.fd)) < 0) {
        ss_seterr(err, errlen, "%s: fsync: %s", tmp, strerror(-r));
        goto fail;
    }
    /* close() reports a deferred write error on some file systems. */
    r = close(w.fd);
    w.fd = -1;
    if (r < 0) {
        r = -errno;
        ss_seterr(err, errlen, "%s: close: %s", tmp, strerror(-r));
        goto fail;
    }
    if (rename(tmp, path) < 0) {
        r = -errno;
        ss_seterr(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(-r));
        goto fail;
    }
    if ((r = ss_fsync_dir(dir)) < 0) {
        /* The file is complete at path; only its durability is in doubt,
         * which the caller must hear about before it records anything. */
        ss_seterr(err, errlen, "%s: fsync: %s", dir, strerror(-r));
        goto done;
    }
    if (size)
        *size = w.written;
    if (sha)
        memcpy(sha, digest, 32);
    r = 0;
    goto done;

fail:
    if (w.fd >= 0)
        close(w.fd);
    w.fd = -1;
    unlink(tmp);
done:
    store_reader_close(w.rd);
    ZSTD_freeCCtx(w.cc);
    EVP_MD_CTX_free(w.md);
    free(w.small);
    free(w.in);
    free(w.out);
    return r;
}

/* ---- pck_extract ------------------------------------------------------ */

/* The receiving end of the decompressed stream: splits it into the
 * manifest's regular files, in order. */
struct pckx {
    const struct manifest *m;
    const char   *storedir;
    const char   *pckpath;
    struct store_writer *sw;    /* small objects: one small.db transaction */
    size_t        idx;          /* current entry; m->n once every file is done */
    int64_t       left;         /* bytes of it still to come */
    int           fd;           /* its temporary file (a large object), or -1 */
    int           keep;         /* a small object kept in small for small.db */
    unsigned char *small;       /* STORE_SMALL_MAX bytes */
    char          tmp[SS_PATH_MAX];
    EVP_MD_CTX   *md;
    EVP_MD       *sha256;
    struct pck_xopt *defer;     /* small objects kept here, not put into small.db */
};

static void pckx_drop_tmp(struct pckx *x)
{
    if (x->fd >= 0) {
        close(x->fd);
        unlink(x->tmp);
        x->fd = -1;
    }
}

/* Begin entry x->idx (a regular file). */
static int pckx_begin(struct pckx *x, char *err, size_t errlen)
{
    const struct mf_entry *e = &x->m->e[x->idx];
    int r;

    /* mf_from_record refuses negative sizes; a manifest from elsewhere
     * must not make the split (or the small buffer) go wrong either. */
    if (e->size < 0) {
        ss_seterr(err, errlen, "manifest entry %s has a negative size", e->path);
        return -EBADMSG;
    }
    x->left = e->size;
    x->keep = 0;
    if (EVP_DigestInit_ex(x->md, x->sha256, NULL) != 1) {
        ss_seterr(err, errlen, "SHA-256 unavailable (OpenSSL)");
        return -EIO;
    }
    if (STORE_SMALL(e->size)) {
        if (x->defer) {
            x->keep = 1;        /* the caller stores it (INSERT OR IGNORE) */
            return 0;
        }
        /* Kept in the buffer as it is decoded, stored once it checks out
         * (unless small.db has it, or had it earlier in this package). */
        if ((r = store_writer_has(x->sw, e->sha, e->size)) < 0) {
            ss_seterr(err, errlen, "store object of %s: %s", e->path, strerror(-r));
            return r;
        }
        x->keep = r == 0;
        return 0;
    }
    if ((r = store_has(x->storedir, e->sha)) < 0) {
        ss_seterr(err, errlen, "store object of %s: %s", e->path, strerror(-r));
        return r;
    }
    if (r == 1)
        return 0;               /* already there: hash only */
    if ((r = ss_path(x->tmp, sizeof x->tmp, "%s/.tmp/pck.XXXXXX", x->storedir)) < 0) {
        ss_seterr(err, errlen, "store path too long: %s", x->storedir);
        return r;
    }
    /* mkostemp makes the file 0600; loose objects are 0640, like the
     * ones mf_snapshot writes: readable by the site's group, not by
     * everyone. */
    if ((x->fd = mkostemp(x->tmp, O_CLOEXEC)) < 0) {
        r = -errno;
        ss_seterr(err, errlen, "cannot create a file in %s/.tmp: %s", x->storedir, strerror(-r));
        return r;
    }
    if (fchmod(x->fd, 0640) < 0) {
        r = -errno;
        ss_seterr(err, errlen, "%s: fchmod: %s", x->tmp, strerror(-r));
        pckx_drop_tmp(x);
        return r;
    }
    return 0;
}

/* Move the verified temporary file to its object name. */
static int pckx_store(struct pckx *x, const struct mf_entry *e, char *err, size_t errlen)
{
    char obj[SS_PATH_MAX], sub[SS_PATH_MAX];
    int r;

    if ((r = store_object_path(x->storedir, e->sha, obj, sizeof obj)) < 0 ||
        (r = dir_of(obj, sub, sizeof sub)) < 0) {
        ss_seterr(err, errlen, "store path too long for %s", e->path);
        return r;
    }
    r = close(x->fd);
    x->fd = -1;
    if (r < 0) {
        r = -errno;
        ss_seterr(err, errlen, "%s: close: %s", x->tmp, strerror(-r));
        unlink(x->tmp);
        return r;
    }
    r = ss_rename_noreplace(AT_FDCWD, x->tmp, AT_FDCWD, obj);
    if (r == -ENOENT) {
        /* The first object under this prefix. */
        if ((r = ss_mkdir_p(sub, 0755)) == 0)
            r = ss_rename_noreplace(AT_FDCWD, x->tmp, AT_FDCWD, obj);
    }
    if (r == 0)
        return 0;
    /* Not moved: the temporary file is ours to remove. */
    unlink(x->tmp);
    if (r == -EEXIST)
        return 0;               /* stored meanwhile: same name, same content */
    ss_seterr(err, errlen, "cannot store %s as %s: %s", e->path, obj, strerror(-r));
    return r;
}

/* End entry x->idx: check its hash, store it, move to the next regular
 * file (finishing empty ones on the way). */
static int pckx_next(struct pckx *x, char *err, size_t errlen)
{
    int r;

    while (x->idx < x->m->n) {
        const struct mf_entry *e = &x->m->e[x->idx];
        if (!S_ISREG(e->mode)) {
            x->idx++;
            continue;
        }
        if (x->left > 0)
            return 0;           /* waiting for more bytes of e */
        unsigned char got[EVP_MAX_MD_SIZE];
        unsigned int glen = 0;
        if (EVP_DigestFinal_ex(x->md, got, &glen) != 1 || glen != 32) {
            ss_seterr(err, errlen, "SHA-256 failed (OpenSSL)");
            return -EIO;
        }
        if (memcmp(got, e->sha, 32) != 0) {
            pckx_drop_tmp(x);
            x->keep = 0;
            ss_seterr(err, errlen, "package file %s: %s does not match its SHA-256",
                   x->pckpath, e->path);
            return -EBADMSG;
        }
        if (x->fd >= 0 && (r = pckx_store(x, e, err, errlen)) < 0)
            return r;
        if (x->keep && x->defer) {
            struct pck_xopt *o = x->defer;
            struct pck_small *ps = &o->small[o->nsmall];
            size_t off = o->nsmall ? o->small[o->nsmall - 1].off +
                                     (size_t)o->small[o->nsmall - 1].size : 0;
            x->keep = 0;
            /* Room for every small file was made from the manifest. */
            memcpy(ps->sha, e->sha, 32);
            ps->size = e->size;
            ps->off = off;
            if (e->size > 0)
                memcpy(o->data + off, x->small, (size_t)e->size);
            o->nsmall++;
        }
        if (x->keep) {
            x->keep = 0;
            if ((r = store_put_small(x->sw, e->sha, x->small, e->size)) < 0) {
                ss_seterr(err, errlen, "cannot store %s in %s/small.db: %s", e->path,
                       x->storedir, strerror(-r));
                return r;
            }
        }
        /* Find and begin the next file; an empty one ends at once. */
        for (x->idx++; x->idx < x->m->n && !S_ISREG(x->m->e[x->idx].mode); x->idx++)
            ;
        if (x->idx < x->m->n && (r = pckx_begin(x, err, errlen)) < 0)
            return r;
    }
    return 0;
}

/* Take data[0..n) of the decompressed stream. */
static int pckx_feed(struct pckx *x, const unsigned char *data, size_t n,
                     char *err, size_t errlen)
{
    int r;

    while (n > 0) {
        if (x->idx >= x->m->n) {
            ss_seterr(err, errlen, "package file %s holds more data than its manifest lists",
                   x->pckpath);
            return -EBADMSG;
        }
        size_t k = (uint64_t)x->left < n ? (size_t)x->left : n;
        if (EVP_DigestUpdate(x->md, data, k) != 1) {
            ss_seterr(err, errlen, "SHA-256 failed (OpenSSL)");
            return -EIO;
        }
        if (x->fd >= 0 && (r = ss_write_all(x->fd, data, k)) < 0) {
            ss_seterr(err, errlen, "%s: write: %s", x->tmp, strerror(-r));
            return r;
        }
        /* left <= size < STORE_SMALL_MAX while keep is set. */
        if (x->keep)
            memcpy(x->small + (x->m->e[x->idx].size - x->left), data, k);
        x->left -= (int64_t)k;
        data += k;
        n -= k;
        if (x->left == 0 && (r = pckx_next(x, err, errlen)) < 0)
            return r;
    }
    return 0;
}

/* SHA-256 of the whole file from its start. */
void pck_xopt_free(struct pck_xopt *o)
{
    if (!o)
        return;
    free(o->small);
    free(o->data);
    o->small = NULL;
    o->data = NULL;
    o->nsmall = 0;
    o->deferred = 0;
}

int pck_extract(const char *path, int64_t want_size, const unsigned char want_sha[32],
                const struct manifest *m, const char *storedir, const volatile int *stop,
                char *err, size_t errlen)
{
    int fd, r;

    if (err && errlen)
        err[0] = '\0';
    /* Never blocks on a FIFO; a symbolic link is followed here, as it
     * always was for a path (its content is checked all the same). */
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
        r = -errno;
        ss_seterr(err, errlen, "%s: %s", path, strerror(-r));
        return r;
    }
    r = pck_extract_fd(fd, path, want_size, want_sha, m, storedir, stop, NULL, err, errlen);
    close(fd);
    return r;
}

int pck_extract_fd(int fd, const char *path, int64_t want_size, const unsigned char want_sha[32],
                   const struct manifest *m, const char *storedir, const volatile int *stop,
                   struct pck_xopt *o, char *err, size_t errlen)
{
    struct pckx x = { .m = m, .storedir = storedir, .pckpath = path, .fd = -1 };
    EVP_MD_CTX *pmd = NULL;     /* the package file's own SHA-256 */
    ZSTD_DCtx *dc = NULL;
    void *in = NULL, *out = NULL;
    size_t insz = ZSTD_DStreamInSize(), outsz = ZSTD_DStreamOutSize();
    size_t last = 1;            /* the decoder's last answer; 0: frame complete */
    unsigned char got[32];
    struct stat st;
    ssize_t n;
    size_t nsmall = 0, small_bytes = 0;
    int r;

    if (err && errlen)
        err[0] = '\0';
    if (o) {
        pck_xopt_free(o);
        o->loose = 0;
        for (size_t i = 0; i < m->n; i++) {
            if (!S_ISREG(m->e[i].mode) || m->e[i].size < 0)
                continue;
            if (STORE_SMALL(m->e[i].size)) {
                nsmall++;
                small_bytes += (size_t)m->e[i].size;
            } else {
                o->loose++;
            }
        }
        if (o->defer_max > 0 && small_bytes <= o->defer_max) {
            /* One allocation for all, at least one byte (malloc(0)). */
            o->small = calloc(nsmall ? nsmall : 1, sizeof *o->small);
            o->data = malloc(small_bytes ? small_bytes : 1);
            if (!o->small || !o->data) {
                pck_xopt_free(o);
                ss_seterr(err, errlen, "out of memory");
                return -ENOMEM;
            }
            o->deferred = 1;
            x.defer = o;
        }
    }
    if (lseek(fd, 0, SEEK_SET) < 0 && errno != ESPIPE) {
        r = -errno;
        ss_seterr(err, errlen, "%s: lseek: %s", path, strerror(-r));
        if (o)
            pck_xopt_free(o);
        return r;
    }
    in = malloc(insz);
    out = malloc(outsz);
    x.small = malloc(STORE_SMALL_MAX);
    dc = ZSTD_createDCtx();
    x.md = EVP_MD_CTX_new();
    x.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!in || !out || !x.small || !dc || !x.md) {
        ss_seterr(err, errlen, "out of memory");
        r = -ENOMEM;
        goto out;
    }
    if (x.sha256 == NULL) {
        ss_seterr(err, errlen, "SHA-256 unavailable (OpenSSL)");
        r = -EIO;
        goto out;
    }

    /* The size now; the SHA-256 as the file is read for the decoder (one
     * pass over a large file, not two): nothing it yields is kept unless
     * it matches its own SHA-256 in the signed manifest, and the small
     * objects are committed, and the result is 0, only once the whole
     * file matched too.  zstd's decoder is made for untrusted input. */
    if (fstat(fd, &st) < 0) {
        r = -errno;
        ss_seterr(err, errlen, "%s: fstat: %s", path, strerror(-r));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size != want_size) {
        ss_seterr(err, errlen, "package file %s is %lld bytes, the instruction says %lld",
               path, (long long)st.st_size, (long long)want_size);
        r = -EBADMSG;
        goto out;
    }
    if (!(pmd = EVP_MD_CTX_new()) || EVP_DigestInit_ex(pmd, x.sha256, NULL) != 1) {
        ss_seterr(err, errlen, "SHA-256 unavailable (OpenSSL)");
        r = -EIO;
        goto out;
    }
    /* Opened only now, so that a file refused above never waits for
     * small.db; not at all when the caller stores the small objects. */
    if (!x.defer && (r = store_writer_open(storedir, &x.sw)) < 0) {
        ss_seterr(err, errlen, "cannot open the store %s: %s", storedir, strerror(-r));
        goto out;
    }

    /* Position on the first regular file (empty ones end at once). */
    for (x.idx = 0; x.idx < m->n && !S_ISREG(m->e[x.idx].mode); x.idx++)
        ;
    if (x.idx < m->n && ((r = pckx_begin(&x, err, errlen)) < 0 ||
                         (r = pckx_next(&x, err, errlen)) < 0))
        goto out;

    /* zstd's default window limit (2^27) bounds the decoder's memory
     * whatever the frame header asks for. */
    while ((n = read_some(fd, in, insz)) > 0) {
        ZSTD_inBuffer zin = { in, (size_t)n, 0 };
        /* Between reads of the package file: a daemon that is stopping
         * does not wait for a large package to be unpacked to the end. */
        if (stop && *stop) {
            ss_seterr(err, errlen, "package file %s: stopped", path);
            r = -EINTR;
            goto out;
        }
        if (EVP_DigestUpdate(pmd, in, (size_t)n) != 1) {
            ss_seterr(err, errlen, "SHA-256 failed (OpenSSL)");
            r = -EIO;
            goto out;
        }
        while (zin.pos < zin.size) {
            ZSTD_outBuffer zout = { out, outsz, 0 };
            last = ZSTD_decompressStream(dc, &zout, &zin);
            if (ZSTD_isError(last)) {
                ss_seterr(err, errlen, "package file %s: zstd: %s", path,
                       ZSTD_getErrorName(last));
                r = -EBADMSG;
                goto out;
            }
            if ((r = pckx_feed(&x, out, zout.pos, err, errlen)) < 0)
                goto out;
        }
    }
    if (n < 0) {
        r = (int)n;
        ss_seterr(err, errlen, "%s: read: %s", path, strerror(-r));
        goto out;
    }
    /* The input is consumed, but a full output buffer may have left
     * decoded bytes inside the decoder. */
    while (last != 0) {
        ZSTD_inBuffer zin = { in, 0, 0 };
        ZSTD_outBuffer zout = { out, outsz, 0 };
        size_t rc = ZSTD_decompressStream(dc, &zout, &zin);
        if (ZSTD_isError(rc)) {
            ss_seterr(err, errlen, "package file %s: zstd: %s", path, ZSTD_getErrorName(rc));
            r = -EBADMSG;
            goto out;
        }
        if (zout.pos == 0)
            break;
        last = rc;
        if ((r = pckx_feed(&x, out, zout.pos, err, errlen)) < 0)
            goto out;
    }
    if (last != 0) {
        ss_seterr(err, errlen, "package file %s: truncated zstd stream", path);
        r = -EBADMSG;
        goto out;
    }
    unsigned int glen = 0;
    if (EVP_DigestFinal_ex(pmd, got, &glen) != 1 || glen != 32) {
        ss_seterr(err, errlen, "SHA-256 failed (OpenSSL)");
        r = -EIO;
        goto out;
    }
    if (memcmp(got, want_sha, 32) != 0) {
        ss_seterr(err, errlen, "package file %s: SHA-256 mismatch", path);
        r = -EBADMSG;
        goto out;
    }
    if (x.idx < m->n) {
        ss_seterr(err, errlen, "package file %s ends before %s is complete",
               path, m->e[x.idx].path);
        r = -EBADMSG;
        goto out;
    }
    /* The whole package checked out: its small objects become durable
     * together.  On every earlier return they are rolled back below. */
    if (x.sw && (r = store_writer_commit(x.sw)) < 0) {
        ss_seterr(err, errlen, "cannot commit the small objects of %s to %s/small.db: %s",
               path, storedir, strerror(-r));
        goto out;
    }
    r = 0;

out:
    if (x.sw != NULL)
        store_writer_close(x.sw);
    free(x.small);
    pckx_drop_tmp(&x);
    EVP_MD_CTX_free(x.md);
    EVP_MD_CTX_free(pmd);
    EVP_MD_free(x.sha256);
    ZSTD_freeDCtx(dc);
    free(in);
    free(out);
    if (r < 0 && o)
        pck_xopt_free(o);
    return r;
}

/* ---- keys ------------------------------------------------------------- */

/* Never ask a terminal for a passphrase: site keys have none, and a
 * daemon has no one to ask. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

static int check_ed25519(EVP_PKEY *k, const char *what, char *err, size_t errlen)
{
    if (EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
        ss_seterr(err, errlen, "%s: not an Ed25519 key", what);
        return -EINVAL;
    }
    return 0;
}

static int load_pem(const char *pem, size_t len, int priv, const char *what,
                    EVP_PKEY **key, char *err, size_t errlen)
{
    EVP_PKEY *k = NULL;
    BIO *bio;
    int r;

    *key = NULL;
    if (len > KEY_FILE_MAX) {
        ss_seterr(err, errlen, "%s: %zu bytes is too large for a key", what, len);
        return -EINVAL;
    }
    if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
        ss_seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    k = priv ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)
             : PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    /* Leave the thread's OpenSSL error queue as we found it. */
    ERR_clear_error();
    if (k == NULL) {
        ss_seterr(err, errlen, "%s: not a PEM %s key", what, priv ? "private" : "public");
        return -EINVAL;
    }
    if ((r = check_ed25519(k, what, err, errlen)) < 0) {
        EVP_PKEY_free(k);
        return r;
    }
    *key = k;
    return 0;
}

static int load_file(const char *path, int priv, EVP_PKEY **key, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int r;

    *key = NULL;
    if (err && errlen)
        err[0] = '\0';
    if ((r = ss_read_file(AT_FDCWD, path, KEY_FILE_MAX, &buf, &len)) < 0) {
        ss_seterr(err, errlen, "%s: %s", path, strerror(-r));
        return r;
    }
    r = load_pem(buf, len, priv, path, key, err, errlen);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return r;
}

int sign_load_private(const char *path, EVP_PKEY **key, char *err, size_t errlen)
{
    return load_file(path, 1, key, err, errlen);
}

int sign_load_public(const char *path, EVP_PKEY **key, char *err, size_t errlen)
{
    return load_file(path, 0, key, err, errlen);
}

int sign_load_public_pem(const char *pem, size_t len, EVP_PKEY **key, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (pem == NULL) {
        *key = NULL;
        ss_seterr(err, errlen, "no public key");
        return -EINVAL;
    }
    return load_pem(pem, len, 0, "public key", key, err, errlen);
}

/* ---- signed records --------------------------------------------------- */

int rec_sign(struct sbuf *b, EVP_PKEY *key, char *err, size_t errlen)
{
    unsigned char sig[ED25519_SIG_LEN];
    size_t siglen = sizeof sig;
    char hex[2 * ED25519_SIG_LEN + 1];
    EVP_MD_CTX *ctx = NULL;
    int r;

    if (key == NULL) {
        ss_seterr(err, errlen, "no signing key");
        return -EINVAL;
    }
    if ((r = check_ed25519(key, "signing key", err, errlen)) < 0)
        return r;
    /* Ed25519 is one-shot: no digest, the whole text is the message. */
    if ((ctx = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)b->data, b->len) != 1 ||
        siglen != sizeof sig) {
        ERR_clear_error();
        EVP_MD_CTX_free(ctx);
        ss_seterr(err, errlen, "cannot sign the record (OpenSSL)");
        return -EIO;
    }
    EVP_MD_CTX_free(ctx);
    ss_hex(sig, sizeof sig, hex);
    if ((r = rec_add(b, "signature", hex)) < 0 || (r = rec_end(b)) < 0) {
        ss_seterr(err, errlen, "cannot format the signature: %s", strerror(-r));
        return r;
    }
    return 0;
}

/* The single field called name, or NULL with err (missing or repeated). */
static const struct rec_field *one_field(const struct rec *r, const char *what,
                                         const char *name, char *err, size_t errlen)
{
    const struct rec_field *f = NULL;

    for (size_t i = 0; i < r->nfields; i++) {
        if (strcmp(r->fields[i].name, name) != 0)
            continue;
        if (f != NULL) {
            ss_seterr(err, errlen, "%s: field %s repeated", what, name);
            return NULL;
        }
        f = &r->fields[i];
    }
    if (f == NULL)
        ss_seterr(err, errlen, "%s: missing field %s", what, name);
    return f;
}

/* Exactly 2*len lower-case hex digits (one spelling per value). */
static int lower_hex(const struct rec_field *f, unsigned char *out, size_t len)
{
    if (f->vlen != 2 * len)
        return -EINVAL;
    for (size_t i = 0; i < f->vlen; i++) {
        char c = f->value[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -EINVAL;
    }
    return ss_unhex(f->value, out, len);
}

/*
 * Where the signature line starts in a record whose last two lines are
 * "signature=<128 hex>" and the end line, or 0 when it has no such tail.
 * Found on the raw bytes, before rec_parse rewrites them.
 */
static size_t find_signature(const char *buf, size_t len)
{
    if (len < SIG_LINE_LEN + END_LINE_LEN + 1)
        return 0;
    size_t off = len - END_LINE_LEN - SIG_LINE_LEN;
    if (buf[off - 1] != '\n' || memcmp(buf + off, SIG_FIELD, SIG_FIELD_LEN) != 0 ||
        buf[off + SIG_LINE_LEN - 1] != '\n')
        return 0;
    return off;
}

int rec_parse_signed(char *buf, size_t len, const struct signed_spec *sp,
                     instr_key_fn key_for, void *arg, struct rec *r,
                     char site[SS_SITE_LEN + 1], char *err, size_t errlen)
{
    const struct rec_field *f;
    unsigned char sig[ED25519_SIG_LEN];
    char *signed_copy = NULL;
    size_t sigoff;
    EVP_PKEY *key = NULL;
    EVP_MD_CTX *ctx = NULL;
    int rc;

    memset(r, 0, sizeof *r);
    site[0] = '\0';
    if (err && errlen)
        err[0] = '\0';

    /* rec_parse rewrites the buffer in place, and the signature covers
     * the raw bytes: keep them for the verification (not needed when the
     * caller does not verify). */
    sigoff = len <= sp->lim->max_size ? find_signature(buf, len) : 0;
    if (sigoff > 0 && key_for != NULL) {
        if ((signed_copy = malloc(sigoff)) == NULL) {
            ss_seterr(err, errlen, "out of memory");
            return -ENOMEM;
        }
        memcpy(signed_copy, buf, sigoff);
    }

    if ((rc = rec_parse(r, buf, len, sp->lim, err, errlen)) < 0) {
        /* An oversized file is as malformed as any other. */
        if (rc != -ENOMEM)
            rc = -EBADMSG;
        goto fail;
    }
    rc = -EBADMSG;
    if (strcmp(r->kind, sp->kind) != 0) {
        ss_seterr(err, errlen, "not %s (a record of kind %s)", sp->a_what, r->kind);
        goto fail;
    }
    if (r->version > sp->version) {
        ss_seterr(err, errlen, "%s version %d is newer than this sitesrv reads (%d)",
                  sp->what, r->version, sp->version);
        goto fail;
    }
    /* The signature must be the last field, so that it covers every
     * other one: the field's name sits at the start of its line. */
    if (r->nfields == 0 || strcmp(r->fields[r->nfields - 1].name, "signature") != 0 ||
        sigoff == 0 || (size_t)(r->fields[r->nfields - 1].name - buf) != sigoff) {
        ss_seterr(err, errlen, "%s: the signature is not its last field", sp->what);
        goto fail;
    }
    if ((f = one_field(r, sp->what, "signature", err, errlen)) == NULL)
        goto fail;
    if (lower_hex(f, sig, sizeof sig) < 0) {
        ss_seterr(err, errlen, "%s: malformed signature", sp->what);
        goto fail;
    }
    for (size_t i = 0; i < r->nfields; i++) {
        size_t k;
        for (k = 0; k < sp->nfields; k++)
            if (strcmp(r->fields[i].name, sp->fields[k]) == 0)
                break;
        if (k == sp->nfields) {
            ss_seterr(err, errlen, "%s: unknown field %.64s", sp->what, r->fields[i].name);
            goto fail;
        }
    }

    /* The signature, with the key recorded for the site it names. */
    if ((f = one_field(r, sp->what, "site", err, errlen)) == NULL)
        goto fail;
    if (f->vlen != SS_SITE_LEN || !ss_site_code_ok(f->value)) {
        ss_seterr(err, errlen, "%s: bad site code \"%.16s\"", sp->what, f->value);
        goto fail;
    }
    memcpy(site, f->value, SS_SITE_LEN + 1);
    if (key_for == NULL)
        return 0;                   /* the caller checked it before */
    if ((key = key_for(arg, site)) == NULL) {
        ss_seterr(err, errlen, "no key recorded for site %s", site);
        rc = -EPERM;
        goto fail;
    }
    if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
        ss_seterr(err, errlen, "the key recorded for site %s is not an Ed25519 key", site);
        rc = -EPERM;
        goto fail;
    }
    if ((ctx = EVP_MD_CTX_new()) == NULL) {
        ss_seterr(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestVerify(ctx, sig, sizeof sig, (const unsigned char *)signed_copy,
                         sigoff) != 1) {
        ERR_clear_error();
        ss_seterr(err, errlen, "%s from site %s: signature does not verify", sp->what, site);
        rc = -EPERM;
        goto fail;
    }
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    free(signed_copy);
    return 0;

fail:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    free(signed_copy);
    rec_free(r);
    memset(r, 0, sizeof *r);
    return rc;
}

/* ---- instructions ----------------------------------------------------- */

int instr_build(struct sbuf *b, const struct instr *in, const struct manifest *m,
                EVP_PKEY *key, char *err, size_t errlen)
{
    char iso[64];
    size_t namelen = strnlen(in->name, sizeof in->name);
    int r;

    if (err && errlen)
        err[0] = '\0';
    if (b->len != 0) {
        ss_seterr(err, errlen, "instruction buffer not empty");
        return -EINVAL;
    }
    if (!pkgid_ok(in->package) || namelen == 0 || namelen >= sizeof in->name ||
        in->version < 1 || !ss_site_code_ok(in->site) || in->pck_size < 0 ||
        in->priority < PRIO_HIGH || in->priority > PRIO_LOW) {
        ss_seterr(err, errlen, "bad instruction fields (package %.16s, version %lld, site %.4s)",
               in->package, in->version, in->site);
        return -EINVAL;
    }
    if (key == NULL) {
        ss_seterr(err, errlen, "no signing key");
        return -EINVAL;
    }
    if ((r = check_ed25519(key, "signing key", err, errlen)) < 0)
        return r;
    if ((r = ss_fmt_time_iso(in->created_ms, iso, sizeof iso)) < 0) {
        ss_seterr(err, errlen, "bad creation time %lld", (long long)in->created_ms);
        return r;
    }

    char shahex[65];
    ss_hex(in->pck_sha, 32, shahex);
    if ((r = rec_begin(b, INSTR_KIND, INSTR_VERSION)) < 0 ||
        (r = rec_add(b, "package", in->package)) < 0 ||
        (r = rec_add(b, "name", in->name)) < 0 ||
        (r = rec_addf(b, "version", "%lld", in->version)) < 0 ||
        (r = rec_add(b, "site", in->site)) < 0 ||
        (r = rec_add(b, "created", iso)) < 0 ||
        (r = rec_add(b, "priority", prio_name((enum send_prio)in->priority))) < 0 ||
        (r = rec_addf(b, "pck_size", "%lld", (long long)in->pck_size)) < 0 ||
        (r = rec_add(b, "pck_sha256", shahex)) < 0 ||
        (r = rec_addf(b, "files", "%lld", (long long)m->files)) < 0 ||
        (r = rec_addf(b, "bytes", "%lld", (long long)m->bytes)) < 0 ||
        (r = mf_to_record(m, b)) < 0) {
        ss_seterr(err, errlen, "cannot format the instruction: %s", strerror(-r));
        goto fail;
    }

    if ((r = rec_sign(b, key, err, errlen)) < 0)
        goto fail;
    return 0;

fail:
    ss_sbuf_reset(b);
    return r;
}

static int one_int(const struct rec *r, const char *name, long long min, long long *out,
                   char *err, size_t errlen)
{
    if (one_field(r, "instruction", name, err, errlen) == NULL)
        return -EBADMSG;
    return rec_get_int(r, name, min, LLONG_MAX, out, err, errlen);
}

static const char *const instr_fields[] = {
    "package", "name", "version", "site", "created", "priority", "pck_size", "pck_sha256",
    "files", "bytes", "file", "dir", "signature",
};

int instr_parse(char *buf, size_t len, instr_key_fn key_for, void *arg,
                struct instr *out, struct manifest *m, char *err, size_t errlen)
{
    static const struct rec_limits lim = {
        .max_size = INSTR_MAX_SIZE,
        .max_line = 64 * 1024,
        .max_fields = 1 << 20,
    };
    static const struct signed_spec spec = {
        .kind = INSTR_KIND, .version = INSTR_VERSION, .lim = &lim,
        .what = "instruction", .a_what = "an instruction",
        .fields = instr_fields, .nfields = SS_ARRAY_LEN(instr_fields),
    };
    struct instr in;
    struct rec r;
    const struct rec_field *f;
    long long v;
    int rc;

    memset(&in, 0, sizeof in);
    mf_init(m);
    if (key_for == NULL) {
        /* An instruction is always verified: it is what the site trusts. */
        ss_seterr(err, errlen, "no key lookup for the instruction's site");
        return -EINVAL;
    }
    if ((rc = rec_parse_signed(buf, len, &spec, key_for, arg, &r, in.site, err, errlen)) < 0)
        return rc;
    rc = -EBADMSG;

    /* Signed by the site: now the fields, strictly all the same. */
    if ((f = one_field(&r, "instruction", "package", err, errlen)) == NULL)
        goto fail;
    if (f->vlen >= sizeof in.package || !pkgid_ok(f->value)) {
        ss_seterr(err, errlen, "instruction: bad package ID \"%.16s\"", f->value);
        goto fail;
    }
    memcpy(in.package, f->value, f->vlen + 1);
    if ((f = one_field(&r, "instruction", "name", err, errlen)) == NULL)
        goto fail;
    if (f->vlen == 0 || f->vlen >= sizeof in.name || strlen(f->value) != f->vlen) {
        ss_seterr(err, errlen, "instruction: bad package name (empty, too long or holding NUL)");
        goto fail;
    }
    memcpy(in.name, f->value, f->vlen + 1);
    if (one_int(&r, "version", 1, &v, err, errlen) < 0)
        goto fail;
    in.version = v;
    if ((f = one_field(&r, "instruction", "created", err, errlen)) == NULL)
        goto fail;
    if (ss_parse_time_iso(f->value, &in.created_ms) < 0) {
        ss_seterr(err, errlen, "instruction: bad creation time \"%.40s\"", f->value);
        goto fail;
    }
    /* Only an order among waiting work: absent (an older sender) is medium. */
    in.priority = PRIO_MEDIUM;
    if (rec_count(&r, "priority") > 0) {
        enum send_prio pr;
        if ((f = one_field(&r, "instruction", "priority", err, errlen)) == NULL)
            goto fail;
        if (prio_parse(f->value, &pr) < 0) {
            ss_seterr(err, errlen, "instruction: priority \"%.16s\" is not high, medium or low",
                      f->value);
            goto fail;
        }
        in.priority = (int)pr;
    }
    if (one_int(&r, "pck_size", 0, &v, err, errlen) < 0)
        goto fail;
    in.pck_size = v;
    if ((f = one_field(&r, "instruction", "pck_sha256", err, errlen)) == NULL)
        goto fail;
    if (lower_hex(f, in.pck_sha, sizeof in.pck_sha) < 0) {
        ss_seterr(err, errlen, "instruction: pck_sha256 is not 64 lower-case hex digits");
        goto fail;
    }
    long long files, bytes;
    if (one_int(&r, "files", 0, &files, err, errlen) < 0 ||
        one_int(&r, "bytes", 0, &bytes, err, errlen) < 0)
        goto fail;

    if ((rc = mf_from_record(&r, m, err, errlen)) < 0)
        goto fail;
    rc = -EBADMSG;
    if (m->files != files || m->bytes != bytes) {
        ss_seterr(err, errlen, "instruction: files=%lld bytes=%lld, but its manifest lists "
               "%lld files of %lld bytes", files, bytes, (long long)m->files,
               (long long)m->bytes);
        goto fail;
    }
    rec_free(&r);
    *out = in;
    return 0;

fail:
    rec_free(&r);
    mf_free(m);
    return rc;
}
