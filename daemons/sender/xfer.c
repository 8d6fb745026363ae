/*
 * xfer.c - one transfer of a send request to a site's address.
 *
 * SYNOPSIS
 *   xfer_run(x)              carry request x->q to x->address (worker thread)
 *   xfer_file_path(address)  the directory of a file: address
 *
 * DESCRIPTION
 *   The address file:PATH names the other site's despoolr.box/receive/
 *   (local, or on a mounted NFS or CIFS share).  The protocol is the one
 *   of docs/formats.md, "Transfers": with X the request's transfer name,
 *
 *   1. the package file is written as PATH/.tmp/X.pck.part, fsync'ed, and
 *      renamed to PATH/X.pck without replacing anything;
 *   2. the instruction (or a status bundle, X.sts, which has no package
 *      file) is written as PATH/.tmp/X.ins, fsync'ed, renamed to X.ins
 *      without replacing, and the directory fsync'ed.  That rename is the
 *      commit: the despooler acts on X.ins only.
 *
 *   Resume: while the package file is copied, every RESUME_STEP bytes the
 *   part file is fdatasync'ed and its length recorded in the request
 *   (requests/R.srq, rewritten by rename) as the confirmed offset.  The
 *   next attempt -- after a failure, a stop or a kill -- truncates the part
 *   file to what was confirmed (never trusting bytes written after it) and
 *   goes on from there, so a large package interrupted at 90% does not
 *   send the first 90% again.  A part file shorter than the confirmed
 *   offset (the receiver removed it as abandoned after 8 days, ORPHAN_AGE_S in daemons/despool/despool.c) is
 *   continued from its own length: its bytes were written in order by
 *   this request alone, since X is a unique name.
 *
 *   Every step is idempotent against a kill at any point: an X.pck
 *   already renamed in counts as sent; an X.ins that exists is this
 *   request's own earlier commit (the name is unique); a commit repeated
 *   after the despooler took the first is recognised there as a
 *   duplicate delivery and changes nothing.
 *
 * DIAGNOSTICS
 *   Sets x->rc: 0 sent; -ECANCELED when the daemon stops (the offset is
 *   recorded); another -errno with x->err when it failed (the caller
 *   throttles the site).  x->fatal when the request's own files are gone
 *   or unreadable, which no retry mends.  Logs the resume offset.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpsync.h"
#include "fsutil.h"
#include "sender.h"

#define CHUNK        (8 << 20)          /* bytes per copy step (and stop poll) */
#define RESUME_STEP  (32LL << 20)       /* confirmed offset recorded this often */

const char *xfer_file_path(const char *address)
{
    if (strncmp(address, "file:", 5) != 0 || address[5] != '/')
        return NULL;
    return address + 5;
}

/* x->err = the formatted sentence and ": <strerror(-rc)>"; x->rc = rc. */
static void fail(struct xfer *x, int rc, const char *fmt, ...) SS_PRINTF(3, 4);
static void fail(struct xfer *x, int rc, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(x->err, sizeof x->err, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof x->err)
        (void)snprintf(x->err + n, sizeof x->err - (size_t)n, ": %s", strerror(-rc));
    x->rc = rc;
}

/* Write a small file (instruction, status bundle, a small package file)
 * from tosend/src into the hop's .tmp as dst; fsync'ed when durable (a
 * batch makes its files durable together instead). */
static int put_small(struct xfer *x, int rxtmp, const char *src, const char *dst, int durable)
{
    int in = -1, out = -1, rc;
    struct stat sb;

    if ((in = openat(x->tosendfd, src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        rc = -errno;
        /* Gone for good, or a trouble of this server that may pass. */
        if (rc == -ENOENT || rc == -ELOOP)
            x->fatal = 1;
        else
            x->local = 1;
        fail(x, rc, "cannot open %s", src);
        return rc;
    }
    if (fstat(in, &sb) < 0) {
        rc = -errno;
        close(in);
        x->local = 1;
        fail(x, rc, "cannot stat %s", src);
        return rc;
    }
    /* Never write through an existing name: after a link+unlink commit
     * (file systems without RENAME_NOREPLACE) killed half-way, .tmp/dst
     * is the committed file itself, which O_TRUNC would rewrite. */
    if (unlinkat(rxtmp, dst, 0) < 0 && errno != ENOENT) {
        rc = -errno;
        close(in);
        fail(x, rc, "cannot remove .tmp/%s at the site", dst);
        return rc;
    }
    out = openat(rxtmp, dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (out < 0) {
        rc = -errno;
        close(in);
        fail(x, rc, "cannot create .tmp/%s at the site", dst);
        return rc;
    }
    rc = ss_copy_fd(in, out, sb.st_size);
    if (rc == 0 && durable)
        rc = ss_fsync_fd(out);
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        (void)unlinkat(rxtmp, dst, 0);
        fail(x, rc, "cannot write .tmp/%s at the site", dst);
        return rc;
    }
    x->written += sb.st_size;
    return 0;
}

/* Record the confirmed offset; a failure only costs bytes on a resume. */
static void confirm(struct xfer *x)
{
    char f[UNIQ_NAME_MAX + 8];
    int rc = ss_fmt(f, sizeof f, "%s.srq", x->name);

    if (rc == 0)
        rc = srq_store(x->reqfd, x->reqtmpfd, f, &x->q, 1);
    if (rc < 0)
        log_warn("request %s: cannot record offset %lld: %s", x->name,
                 (long long)x->q.offset, strerror(-rc));
}

static int send_package_file(struct xfer *x, int rxfd, int rxtmp)
{
    char src[SS_NAME_MAX + 8], part[SS_NAME_MAX + 16], dst[SS_NAME_MAX + 8];
    int in = -1, out = -1, rc = 0;
    struct stat sb, pb;
    char *buf = NULL;

    (void)snprintf(src, sizeof src, "%s.pck", x->name);
    (void)snprintf(part, sizeof part, "%s.pck.part", x->q.xfer);
    (void)snprintf(dst, sizeof dst, "%s.pck", x->q.xfer);
    if ((in = openat(x->tosendfd, src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 ||
        fstat(in, &sb) < 0) {
        rc = -errno;
        if (rc == -ENOENT || rc == -ELOOP)
            x->fatal = 1;
        else
            x->local = 1;
        fail(x, rc, "cannot open the package file %s", src);
        goto out;
    }
    /* Renamed in by an attempt that was killed before it said so. */
    if (fstatat(rxfd, dst, &pb, AT_SYMLINK_NOFOLLOW) == 0 && pb.st_size == sb.st_size) {
        (void)unlinkat(rxtmp, part, 0);
        goto done;
    }
    out = openat(rxtmp, part, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (out < 0 || fstat(out, &pb) < 0) {
        rc = -errno;
        fail(x, rc, "cannot open .tmp/%s at the site", part);
        goto out;
    }
    int64_t off = x->q.offset < pb.st_size ? x->q.offset : pb.st_size;
    if (off > sb.st_size)
        off = 0;
    if (ftruncate(out, off) < 0) {
        rc = -errno;
        fail(x, rc, "cannot truncate .tmp/%s at the site", part);
        goto out;
    }
    x->resumed_at = off;
    if (off > 0)
        log_info("request %s: resuming the package file at byte %lld of %lld", x->name,
                 (long long)off, (long long)sb.st_size);
    if (!(buf = malloc(CHUNK))) {
        rc = -ENOMEM;
        fail(x, rc, "cannot copy %s", src);
        goto out;
    }
    int64_t since = 0;
    int use_cfr = 1;
    while (off < sb.st_size) {
        if (*x->stop) {
            rc = -ECANCELED;
            break;
        }
        size_t want = sb.st_size - off < CHUNK ? (size_t)(sb.st_size - off) : CHUNK;
        ssize_t n = -1;
        if (use_cfr) {
            /* In the kernel, without a copy through this process; where
             * the two file systems do not allow it, read and write. */
            loff_t io = off, oo = off;
            n = copy_file_range(in, &io, out, &oo, want, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                          errno == EOPNOTSUPP || errno == EBADF)) {
                use_cfr = 0;
                n = -1;
            } else if (n < 0) {
                rc = -errno;
                fail(x, rc, "cannot copy the package file to the site");
                goto out;
            }
        }
        if (n < 0) {
            n = pread(in, buf, want, off);
            if (n < 0) {
                rc = -errno;
                x->local = 1;
                fail(x, rc, "cannot read the package file %s", src);
                goto out;
            }
            for (ssize_t w = 0; w < n;) {
                ssize_t k = pwrite(out, buf + w, (size_t)(n - w), off + w);
                if (k < 0) {
                    rc = -errno;
                    fail(x, rc, "cannot write the package file at the site");
                    goto out;
                }
                w += k;
            }
        }
        if (n == 0) {
            rc = -EIO;
            x->fatal = 1;          /* the file shrank under us */
            fail(x, rc, "the package file %s shrank while it was sent", src);
            goto out;
        }
        /* Start the write-back of what was written now, so that the
         * next confirmation and the final fsync find little left. */
        (void)sync_file_range(out, off, n, SYNC_FILE_RANGE_WRITE);
        off += n;
        since += n;
        x->written += n;
        if (since >= RESUME_STEP && off < sb.st_size) {
            if (fdatasync(out) == 0) {
                x->q.offset = off;
                confirm(x);
            }
            since = 0;
        }
    }
    /* Stopped or done: what was written is confirmed for the next time. */
    if (ss_fsync_fd(out) < 0) {
        rc = rc ? rc : -EIO;
        fail(x, rc, "cannot fsync the package file at the site");
        goto out;
    }
    x->q.offset = off;
    if (rc == -ECANCELED) {
        x->rc = rc;
        confirm(x);
        goto out;
    }
    close(out);
    out = -1;
    rc = ss_rename_noreplace(rxtmp, part, rxfd, dst);
    if (rc == -EEXIST) {
        /* Only this request writes X: it is an earlier attempt's. */
        (void)unlinkat(rxtmp, part, 0);
        rc = 0;
    }
    if (rc < 0) {
        fail(x, rc, "cannot rename the package file in at the site (%s)", dst);
        goto out;
    }
done:
    x->q.pck_done = 1;
    x->q.offset = sb.st_size;
    confirm(x);
    rc = 0;
out:
    free(buf);
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

void xfer_run(struct xfer *x)
{
    const char *path = xfer_file_path(x->address);
    int rxfd = -1, rxtmp = -1, rc;
    char src[SS_NAME_MAX + 8], dst[SS_NAME_MAX + 8];
    const char *sfx = x->q.type == SEND_PACKAGE ? ".ins" : ".sts";

    x->rc = 0;
    x->err[0] = '\0';
    if (*x->stop) {
        x->rc = -ECANCELED;
        return;
    }
    if (!path) {
        x->rc = -EINVAL;
        (void)snprintf(x->err, sizeof x->err, "address '%.200s' is not file:/PATH",
                       x->address);
        return;
    }
    /* The receive directory must exist: it is never created from here (a
     * missing one is a site that is down or a share not mounted). */
    if ((rxfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fail(x, -errno, "cannot open %s", path);
        return;
    }
    if ((rxtmp = openat(rxfd, ".tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fail(x, -errno, "cannot open %s/.tmp", path);
        close(rxfd);
        return;
    }
    if (x->q.type == SEND_PACKAGE && !x->q.pck_done &&
        (rc = send_package_file(x, rxfd, rxtmp)) < 0)
        goto out;
    if (*x->stop) {
        x->rc = -ECANCELED;
        goto out;
    }
    (void)snprintf(src, sizeof src, "%s%s", x->name, sfx);
    (void)snprintf(dst, sizeof dst, "%s%s", x->q.xfer, sfx);
    if (put_small(x, rxtmp, src, dst, 1) < 0)
        goto out;
    rc = ss_rename_noreplace(rxtmp, dst, rxfd, dst);
    if (rc == -EEXIST) {
        /* This request's own earlier commit, not yet taken. */
        (void)unlinkat(rxtmp, dst, 0);
        rc = 0;
    }
    if (rc < 0) {
        (void)unlinkat(rxtmp, dst, 0);
        fail(x, rc, "cannot commit %s at the site", dst);
        goto out;
    }
    /* Committed: a failed directory fsync cannot undo it (the despooler
     * may have it already); it only may not survive the site's crash. */
    if (ss_fsync_fd(rxfd) < 0)
        log_warn("request %s: cannot fsync %s: the commit may not survive a crash there",
                 x->name, path);
out:
    close(rxtmp);
    close(rxfd);
}

/*
 * Small requests to one address, together: every file is written into
 * the hop's .tmp/ without a sync of its own, then one syncfs (or an fsync
 * per file where syncfs cannot be trusted) makes them durable, then the
 * package files are renamed in, the directory fsync'ed, the instructions
 * renamed in (each its commit), and the directory fsync'ed again.  The
 * order of the protocol is kept -- a package file is durable and in place
 * before its instruction appears -- at three syncs for the batch instead
 * of three per request.
 */
void xfer_run_many(struct xfer *xs, size_t n)
{
    const char *path = n ? xfer_file_path(xs[0].address) : NULL;
    int rxfd = -1, rxtmp = -1, rc = 0;
    char src[SS_NAME_MAX + 8], dst[SS_NAME_MAX + 16], fin[SS_NAME_MAX + 8];

    if (n == 1 || !path) {
        for (size_t i = 0; i < n; i++)
            xfer_run(&xs[i]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        xs[i].rc = 0;
        xs[i].err[0] = '\0';
    }
    if (*xs[0].stop) {
        rc = -ECANCELED;
        goto all;
    }
    if ((rxfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (rxtmp = openat(rxfd, ".tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = -errno;
        for (size_t i = 0; i < n; i++)
            fail(&xs[i], rc, "cannot open %s%s", path, rxfd < 0 ? "" : "/.tmp");
        goto out;
    }
    /* 1. Every file into .tmp/, no sync yet.  A stop meanwhile leaves the
     * rest for the next start (cleaned from .tmp/ below). */
    for (size_t i = 0; i < n; i++) {
        struct xfer *x = &xs[i];
        const char *sfx = x->q.type == SEND_PACKAGE ? ".ins" : ".sts";
        if (*x->stop) {
            for (size_t k = i; k < n; k++)
                xs[k].rc = -ECANCELED;
            break;
        }
        if (x->q.type == SEND_PACKAGE && !x->q.pck_done) {
            (void)snprintf(src, sizeof src, "%s.pck", x->name);
            (void)snprintf(dst, sizeof dst, "%s.pck.part", x->q.xfer);
            if (put_small(x, rxtmp, src, dst, 0) < 0)
                continue;
        }
        (void)snprintf(src, sizeof src, "%s%s", x->name, sfx);
        (void)snprintf(dst, sizeof dst, "%s%s", x->q.xfer, sfx);
        (void)put_small(x, rxtmp, src, dst, 0);
    }
    /* 2. Durable together. */
    if ((rc = ss_syncfs(rxtmp)) == -ENOSYS) {
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            const char *sfx = xs[i].q.type == SEND_PACKAGE ? ".ins" : ".sts";
            for (int k = 0; k < 2 && rc == 0; k++) {
                int fd;
                if (xs[i].rc < 0 || (k == 0 && (xs[i].q.type != SEND_PACKAGE ||
                                                 xs[i].q.pck_done)))
                    continue;
                if (k == 0)
                    (void)snprintf(dst, sizeof dst, "%s.pck.part", xs[i].q.xfer);
                else
                    (void)snprintf(dst, sizeof dst, "%s%s", xs[i].q.xfer, sfx);
                if ((fd = openat(rxtmp, dst, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
                    rc = -errno;
                    break;
                }
                rc = ss_fsync_fd(fd);
                close(fd);
            }
        }
    }
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            if (xs[i].rc == 0)
                fail(&xs[i], rc, "cannot make the files durable at the site");
        goto clean;
    }
    /* 3. Package files in place, and durably so, before any instruction. */
    int moved = 0;
    for (size_t i = 0; i < n; i++) {
        struct xfer *x = &xs[i];
        if (x->rc < 0 || x->q.type != SEND_PACKAGE || x->q.pck_done)
            continue;
        (void)snprintf(dst, sizeof dst, "%s.pck.part", x->q.xfer);
        (void)snprintf(fin, sizeof fin, "%s.pck", x->q.xfer);
        rc = ss_rename_noreplace(rxtmp, dst, rxfd, fin);
        if (rc == -EEXIST) {
            (void)unlinkat(rxtmp, dst, 0);
            rc = 0;
        }
        if (rc < 0) {
            fail(x, rc, "cannot rename the package file in at the site (%s)", fin);
            continue;
        }
        x->q.pck_done = 1;
        moved++;
    }
    if (moved && (rc = ss_fsync_fd(rxfd)) < 0) {
        for (size_t i = 0; i < n; i++)
            if (xs[i].rc == 0)
                fail(&xs[i], rc, "cannot fsync %s", path);
        goto clean;
    }
    /* 4. The commits. */
    for (size_t i = 0; i < n; i++) {
        struct xfer *x = &xs[i];
        const char *sfx = x->q.type == SEND_PACKAGE ? ".ins" : ".sts";
        if (x->rc < 0)
            continue;
        (void)snprintf(dst, sizeof dst, "%s%s", x->q.xfer, sfx);
        rc = ss_rename_noreplace(rxtmp, dst, rxfd, dst);
        if (rc == -EEXIST) {
            (void)unlinkat(rxtmp, dst, 0);
            rc = 0;
        }
        if (rc < 0)
            fail(x, rc, "cannot commit %s at the site", dst);
    }
    if (ss_fsync_fd(rxfd) < 0)
        log_warn("cannot fsync %s: %zu commits may not survive a crash there", path, n);
clean:
    /* What failed leaves nothing in .tmp/ (a small file is sent whole
     * again); what was renamed is gone from there already. */
    for (size_t i = 0; i < n; i++) {
        struct xfer *x = &xs[i];
        if (x->rc == 0)
            continue;
        (void)snprintf(dst, sizeof dst, "%s.pck.part", x->q.xfer);
        (void)unlinkat(rxtmp, dst, 0);
        (void)snprintf(dst, sizeof dst, "%s%s", x->q.xfer,
                       x->q.type == SEND_PACKAGE ? ".ins" : ".sts");
        (void)unlinkat(rxtmp, dst, 0);
    }
out:
    if (rxtmp >= 0)
        close(rxtmp);
    if (rxfd >= 0)
        close(rxfd);
    return;
all:
    for (size_t i = 0; i < n; i++)
        xs[i].rc = rc;
}
