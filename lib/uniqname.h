/*
 * uniqname.h - collision-safe unique file names (SPEC 4.2, Q301352).
 *
 * A name is  <prefix>-<32 hex digits><suffix> : 128 bits from the kernel's
 * random source (getrandom), after a prefix naming the writer's site or
 * machine.  Nothing in it comes from the clock or the process ID, so a
 * thousand clients on one frozen clock with the same PIDs still draw
 * different names; and when two draws do meet, O_EXCL or the no-replace
 * rename says EEXIST and a new name is drawn, with no limit that ends in
 * dropping the item.
 */
#ifndef SITESRV_UNIQNAME_H
#define SITESRV_UNIQNAME_H

#include "common.h"

#define UNIQ_RAND_BYTES 16                 /* 128 bits */
#define UNIQ_PREFIX_MAX 32
#define UNIQ_SUFFIX_MAX 8                   /* ".svf", ".job", ... */
/* prefix + '-' + 32 hex + suffix + NUL */
#define UNIQ_NAME_MAX   (UNIQ_PREFIX_MAX + 1 + 2 * UNIQ_RAND_BYTES + UNIQ_SUFFIX_MAX + 1)

/* Fill buf with len random bytes from getrandom(2); OpenSSL RAND_bytes if
 * the kernel call is unavailable.  -EIO if neither works. */
int uniq_random(void *buf, size_t len);

/* Copy src into dst keeping [A-Za-z0-9_], mapping anything else to '_',
 * truncated to UNIQ_PREFIX_MAX; an empty result becomes "X". */
void uniq_prefix_sanitize(const char *src, char *dst, size_t dstlen);

/* Draw a fresh name.  prefix must already be sanitized; suffix starts with
 * '.' and is [a-z0-9]{1,7} after it.  -EINVAL / -ENOSPC. */
int uniq_name(char *buf, size_t len, const char *prefix, const char *suffix);

/* Is name exactly of the form uniq_name() writes, with this suffix (any
 * suffix if NULL)?  Returns 1 or 0.  Readers check every name with it. */
int uniq_name_ok(const char *name, const char *suffix);

/* Create a new file in dirfd with O_CREAT|O_EXCL, mode 0640, drawing names
 * until one is free.  Returns 0 with *fd open for writing and the name in
 * name[]. */
int uniq_create(int dirfd, const char *prefix, const char *suffix,
                char *name, size_t namelen, int *fd);

/* Move fromdir/from into todir under a fresh unique name, with a
 * no-replace rename; on -EEXIST draw again.  The chosen name is returned
 * in name[]. */
int uniq_move(int fromdir, const char *from, int todir,
              const char *prefix, const char *suffix,
              char *name, size_t namelen);

#endif
