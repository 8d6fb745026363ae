/*
 * uniqname.c - collision-safe unique file names (SPEC 4.2, Q301352).
 *
 * SYNOPSIS
 *   uniq_random            bytes from getrandom(2) (OpenSSL if ENOSYS)
 *   uniq_prefix_sanitize   make a site or machine name usable as a prefix
 *   uniq_name              draw  <prefix>-<32 lowercase hex><suffix>
 *   uniq_name_ok           is a name exactly of that form?
 *   uniq_create            create a new file under a fresh name (O_EXCL)
 *   uniq_move              move a file under a fresh name (no-replace)
 *
 * DESCRIPTION
 *   SMS 2.0 clients derived copy-queue names from the clock; clients on
 *   one clock drew the same names, and after a few collisions an item was
 *   dropped.  Here a name carries 128 bits from the kernel's random
 *   source and nothing from the clock or the process ID.  A collision is
 *   still handled as if it could happen: the kernel decides (O_EXCL, or
 *   the no-replace rename of fsutil.c), and on EEXIST we draw again, with
 *   no limit that would end in dropping the item.  A random source that
 *   keeps producing the same bytes would make us loop; we log such
 *   repeats (sparsely) so an operator can see it, but never give up.
 *
 * DIAGNOSTICS
 *   uniq_create and uniq_move log a warning on a collision (the first and
 *   then every power of two).  Functions return 0 or a negative errno:
 *   -EINVAL for a malformed prefix or suffix, -ENOSPC for a buffer too
 *   small, -EIO when no random source works, or the system call's error.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "fsutil.h"
#include "log.h"
#include "uniqname.h"
#include "util.h"

int uniq_random(void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t off = 0;

    while (off < len) {
        ssize_t n = getrandom(p + off, len - off, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ENOSYS)
                goto openssl;
            return -EIO;
        }
        off += (size_t)n;   /* short reads happen for large requests */
    }
    return 0;

openssl:
    /* Kernels before 3.17 lack getrandom; OpenSSL seeds from
     * /dev/urandom there. */
    if (len > (size_t)INT_MAX)
        return -EINVAL;
    return RAND_bytes(p, (int)len) == 1 ? 0 : -EIO;
}

static int prefix_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '_';
}

static int hex_char(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

void uniq_prefix_sanitize(const char *src, char *dst, size_t dstlen)
{
    size_t n = 0;

    if (dstlen == 0)
        return;
    for (; src != NULL && src[n] != '\0' && n < UNIQ_PREFIX_MAX && n + 1 < dstlen; n++)
        dst[n] = prefix_char((unsigned char)src[n]) ? src[n] : '_';
    if (n == 0 && dstlen > 1)
        dst[n++] = 'X';
    dst[n] = '\0';
}

static int prefix_ok(const char *p)
{
    size_t n = 0;

    if (p == NULL)
        return 0;
    for (; p[n] != '\0'; n++)
        if (!prefix_char((unsigned char)p[n]) || n >= UNIQ_PREFIX_MAX)
            return 0;
    return n > 0;
}

/* '.' then [a-z0-9]{1,7} */
static int suffix_ok(const char *s)
{
    size_t n;

    if (s == NULL || s[0] != '.')
        return 0;
    for (n = 1; s[n] != '\0'; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9')) ||
            n >= UNIQ_SUFFIX_MAX)
            return 0;
    return n > 1;
}

int uniq_name(char *buf, size_t len, const char *prefix, const char *suffix)
{
    unsigned char rnd[UNIQ_RAND_BYTES];
    char hex[2 * UNIQ_RAND_BYTES + 1];
    int r;

    if (!prefix_ok(prefix) || !suffix_ok(suffix))
        return -EINVAL;
    r = uniq_random(rnd, sizeof rnd);
    if (r < 0)
        return r;
    ss_hex(rnd, sizeof rnd, hex);
    return ss_fmt(buf, len, "%s-%s%s", prefix, hex, suffix);
}

int uniq_name_ok(const char *name, const char *suffix)
{
    const char *p = name, *dash;

    if (name == NULL)
        return 0;
    dash = strchr(name, '-');
    if (dash == NULL || dash == name || dash - name > UNIQ_PREFIX_MAX)
        return 0;
    for (; p < dash; p++)
        if (!prefix_char((unsigned char)*p))
            return 0;
    p++;
    for (int i = 0; i < 2 * UNIQ_RAND_BYTES; i++, p++)
        if (!hex_char((unsigned char)*p))
            return 0;
    if (suffix != NULL)
        return strcmp(p, suffix) == 0 && suffix_ok(suffix);
    return suffix_ok(p);
}

/* Collisions are so unlikely that every one is worth a line, but a
 * broken random source must not fill the disk with them. */
static void log_collision(const char *what, const char *name, unsigned long count)
{
    if ((count & (count - 1)) == 0)
        log_warn("%s: name %s exists already (collision %lu); drawing a new name",
                 what, name, count);
}

int uniq_create(int dirfd, const char *prefix, const char *suffix,
                char *name, size_t namelen, int *fd)
{
    unsigned long collisions = 0;

    for (;;) {
        int r = uniq_name(name, namelen, prefix, suffix);
        if (r < 0)
            return r;
        int f = openat(dirfd, name,
                       O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (f >= 0) {
            *fd = f;
            return 0;
        }
        if (errno == EEXIST) {
            log_collision("uniq_create", name, ++collisions);
            continue;
        }
        if (errno == EINTR)     /* nothing was created: draw again */
            continue;
        return -errno;
    }
}

int uniq_move(int fromdir, const char *from, int todir,
              const char *prefix, const char *suffix,
              char *name, size_t namelen)
{
    unsigned long collisions = 0;

    for (;;) {
        int r = uniq_name(name, namelen, prefix, suffix);
        if (r < 0)
            return r;
        r = ss_rename_noreplace(fromdir, from, todir, name);
        if (r != -EEXIST)
            return r;
        log_collision("uniq_move", name, ++collisions);
    }
}
