/*
 * NAME
 *   mktree - the deterministic package tree of the distmgr benchmark
 *
 * SYNOPSIS
 *   mktree gen DIR [--seed N] [--scale F]
 *   mktree change DIR --seed N [--scale F] [--no-append]
 *
 * DESCRIPTION
 *   gen writes a new tree at DIR (which must not exist) shaped like a
 *   software package: 100 directories three levels deep (4 top ones, 4
 *   under each, 5 under each of those), two large files of 60 MB at the
 *   top, 300 medium files of 150 to 250 KB and 4000 small files of 1 to 8
 *   KB spread round-robin over the directories, about 200 MB in all.
 *   Counts and sizes are multiplied by F (default 1; the script uses a
 *   smaller F to try itself out quickly).
 *
 *   Everything comes from one pseudo-random generator (splitmix64) seeded
 *   with N, so two runs with the same seed write the same bytes, and the
 *   content does not compress, like the installers and archives that
 *   packages hold.  /dev/urandom per file would cost more and give a
 *   different tree every time.
 *
 *   change rewrites about 1% of the tree, both in files and in bytes, as
 *   an update of a package does: 40 small files and 3 medium ones get new
 *   content and a new size, and one large file grows by 1 MB.  Which
 *   files, and their new content, follow from N, so successive changes
 *   with different seeds touch different files.  --no-append leaves the
 *   large files alone (the change is then 0.4% of the bytes, and a
 *   comparison with rsync is about walking the tree, not about copying
 *   60 MB).  Nothing is fsync'ed:
 *   the caller syncs once before it starts a clock.
 *
 * DIAGNOSTICS
 *   gen prints "files=N dirs=D bytes=B"; change prints one line per kind
 *   of change and "changed_files=N changed_bytes=B".  Exits 0; 1 when a
 *   file cannot be written (named on stderr); 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "fsutil.h"
#include "util.h"

#define LARGE_N       2
#define LARGE_SIZE    (60LL << 20)
#define MEDIUM_N      300
#define MEDIUM_MIN    (150 << 10)
#define MEDIUM_SPAN   (100 << 10)
#define SMALL_N       4000
#define SMALL_MIN     1024
#define SMALL_SPAN    (7 << 10)
#define CH_SMALL      40
#define CH_MEDIUM     3
#define CH_APPEND     (1LL << 20)
#define CHUNK         (1 << 20)

struct shape {
    int large, medium, small;       /* file counts after scaling */
    long long large_size;
};

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void fill(uint64_t *s, unsigned char *buf, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v = splitmix(s);
        memcpy(buf + i, &v, 8);
    }
    if (i < len) {
        uint64_t v = splitmix(s);
        memcpy(buf + i, &v, len - i);
    }
}

/* Directory k of 100, relative to the tree: 0-3 top, 4-19 second level,
 * 20-99 third level. */
static int dir_name(int k, char *out, size_t len)
{
    if (k < 4)
        return ss_path(out, len, "d%d", k);
    if (k < 20)
        return ss_path(out, len, "d%d/s%d", (k - 4) / 4, (k - 4) % 4);
    k -= 20;
    return ss_path(out, len, "d%d/s%d/t%d", k / 20, (k / 5) % 4, k % 5);
}

static int file_name(char kind, int i, char *out, size_t len)
{
    char d[64];
    int rc;

    if (kind == 'L')
        return ss_path(out, len, "large%d.img", i);
    if ((rc = dir_name(kind == 'm' ? (i * 7) % 100 : i % 100, d, sizeof d)) < 0)
        return rc;
    if (kind == 'm')
        return ss_path(out, len, "%s/medium%03d.bin", d, i);
    return ss_path(out, len, "%s/small%04d.dat", d, i);
}

/* Write len pseudo-random bytes from s to dirfd/name, appending or
 * truncating. */
static int write_file(int dirfd, const char *name, long long len, int append, uint64_t *s,
                      unsigned char *buf)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
                                 (append ? O_APPEND : O_TRUNC), 0644);
    if (fd < 0) {
        fprintf(stderr, "mktree: %s: %s\n", name, strerror(errno));
        return -1;
    }
    while (len > 0) {
        size_t n = len > CHUNK ? CHUNK : (size_t)len;
        int rc;
        fill(s, buf, n);
        if ((rc = ss_write_all(fd, buf, n)) < 0) {
            fprintf(stderr, "mktree: writing %s: %s\n", name, strerror(-rc));
            close(fd);
            return -1;
        }
        len -= (long long)n;
    }
    if (close(fd) < 0) {
        fprintf(stderr, "mktree: closing %s: %s\n", name, strerror(errno));
        return -1;
    }
    return 0;
}

static long long small_size(uint64_t *s) { return SMALL_MIN + (long long)(splitmix(s) % SMALL_SPAN); }
static long long medium_size(uint64_t *s) { return MEDIUM_MIN + (long long)(splitmix(s) % MEDIUM_SPAN); }

static int gen(const char *dir, uint64_t seed, const struct shape *sh, unsigned char *buf)
{
    char name[256];
    long long total = 0, files = 0;
    uint64_t s = seed;

    if (mkdir(dir, 0755) < 0) {
        fprintf(stderr, "mktree: mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        fprintf(stderr, "mktree: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (int k = 0; k < 100; k++) {
        if (dir_name(k, name, sizeof name) < 0 || mkdirat(dfd, name, 0755) < 0) {
            fprintf(stderr, "mktree: mkdir %s/%s: %s\n", dir, name, strerror(errno));
            close(dfd);
            return 1;
        }
    }
    for (int i = 0; i < sh->large + sh->medium + sh->small; i++) {
        char kind = i < sh->large ? 'L' : i < sh->large + sh->medium ? 'm' : 's';
        int j = kind == 'L' ? i : kind == 'm' ? i - sh->large : i - sh->large - sh->medium;
        long long len = kind == 'L' ? sh->large_size : kind == 'm' ? medium_size(&s) : small_size(&s);
        if (file_name(kind, j, name, sizeof name) < 0 ||
            write_file(dfd, name, len, 0, &s, buf) < 0) {
            close(dfd);
            return 1;
        }
        total += len;
        files++;
    }
    close(dfd);
    printf("files=%lld dirs=100 bytes=%lld\n", files, total);
    return 0;
}

/* n distinct indexes below range picked by the generator: a partial
 * Fisher-Yates shuffle. */
static int pick(uint64_t *s, int range, int n, int *out)
{
    int *all = malloc((size_t)range * sizeof *all);
    if (!all)
        return -1;
    for (int i = 0; i < range; i++)
        all[i] = i;
    for (int i = 0; i < n && i < range; i++) {
        int j = i + (int)(splitmix(s) % (uint64_t)(range - i));
        int t = all[i];
        all[i] = all[j];
        all[j] = t;
        out[i] = all[i];
    }
    free(all);
    return n < range ? n : range;
}

static int change(const char *dir, uint64_t seed, const struct shape *sh, int append,
                  unsigned char *buf)
{
    /* A different stream from gen's, even for the same seed. */
    uint64_t s = seed ^ 0x5eed0fc4a96e5ULL;
    int idx[CH_SMALL > CH_MEDIUM ? CH_SMALL : CH_MEDIUM];
    char name[256];
    long long bytes = 0, nfiles = 0, b;
    int n;

    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        fprintf(stderr, "mktree: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    n = pick(&s, sh->small, sh->small < 100 ? 1 : CH_SMALL * sh->small / SMALL_N, idx);
    b = 0;
    for (int i = 0; i < n; i++) {
        long long len = small_size(&s);
        if (file_name('s', idx[i], name, sizeof name) < 0 ||
            write_file(dfd, name, len, 0, &s, buf) < 0)
            goto fail;
        b += len;
    }
    printf("rewrote %d small files (%lld KB)\n", n, b >> 10);
    bytes += b;
    nfiles += n;
    n = pick(&s, sh->medium, sh->medium < 100 ? 1 : CH_MEDIUM * sh->medium / MEDIUM_N, idx);
    b = 0;
    for (int i = 0; i < n; i++) {
        long long len = medium_size(&s);
        if (file_name('m', idx[i], name, sizeof name) < 0 ||
            write_file(dfd, name, len, 0, &s, buf) < 0)
            goto fail;
        b += len;
    }
    printf("rewrote %d medium files (%lld KB)\n", n, b >> 10);
    bytes += b;
    nfiles += n;
    if (append && sh->large > 0) {
        long long len = CH_APPEND * sh->large_size / LARGE_SIZE;
        int k = (int)(seed % (uint64_t)sh->large);
        if (file_name('L', k, name, sizeof name) < 0 ||
            write_file(dfd, name, len, 1, &s, buf) < 0)
            goto fail;
        printf("appended %lld KB to %s\n", len >> 10, name);
        bytes += len;
        nfiles++;
    }
    close(dfd);
    printf("changed_files=%lld changed_bytes=%lld\n", nfiles, bytes);
    return 0;
fail:
    close(dfd);
    return 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: mktree gen DIR [--seed N] [--scale F]\n"
                    "       mktree change DIR --seed N [--scale F] [--no-append]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t seed = 1;
    double scale = 1.0;
    int append = 1;
    struct shape sh;
    unsigned char *buf;
    int rc;

    if (argc < 3 || (strcmp(argv[1], "gen") != 0 && strcmp(argv[1], "change") != 0))
        usage();
    for (int i = 3; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], &end, 10);
            if (*end)
                usage();
        } else if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
            scale = strtod(argv[++i], &end);
            if (*end || !(scale > 0 && scale <= 100))
                usage();
        } else if (strcmp(argv[i], "--no-append") == 0) {
            append = 0;
        } else {
            usage();
        }
    }
    /* Scale the counts of the medium and small files and the size of the
     * large ones: the shape stays, the volume follows F. */
    sh.large = LARGE_N;
    sh.large_size = (long long)(LARGE_SIZE * scale);
    sh.medium = (int)(MEDIUM_N * scale + 0.5);
    sh.small = (int)(SMALL_N * scale + 0.5);
    if (sh.medium < 1)
        sh.medium = 1;
    if (sh.small < 1)
        sh.small = 1;
    if (!(buf = malloc(CHUNK))) {
        fprintf(stderr, "mktree: out of memory\n");
        return 1;
    }
    if (strcmp(argv[1], "gen") == 0)
        rc = gen(argv[2], seed, &sh, buf);
    else
        rc = change(argv[2], seed, &sh, append, buf);
    free(buf);
    return rc;
}
