/*
 * NAME
 *   readunlink - the raw cost of reading and removing many small files
 *
 * SYNOPSIS
 *   readunlink DIR [THREADS]
 *
 * DESCRIPTION
 *   A baseline for the statmgr ingestion benchmark (bench/run.sh): reads
 *   every regular file of DIR whose name does not start with a dot, whole,
 *   and unlinks it, in directory order, one thread, no fsync.  That is the
 *   file system work a reader of an inbox cannot avoid; what statmgr takes
 *   beyond it goes to parsing, the database and its own bookkeeping.
 *   Subdirectories (.tmp, work, corrupt) are left alone.
 *
 *   With THREADS > 1 the removal is done the way statmgr does it: the
 *   files of each 1000 read are removed by ss_unlink_many() with THREADS
 *   threads, which overlaps the waits of a file system that discards
 *   freed blocks synchronously.  That is the best file work we know of,
 *   and so the fairer ceiling for statmgr.
 *
 * DIAGNOSTICS
 *   Prints "files=N seconds=S files_per_s=R" on stdout.  Exits 0, 1 if a
 *   file cannot be read or removed (named on stderr), 2 on a usage error.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "fsutil.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Read the whole file: the loop is what a parser would need, not one
 * read() that happens to be enough for a small file. */
static int read_whole(int dirfd, const char *name, char *buf, size_t len)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t r;

    if (fd < 0)
        return -errno;
    do {
        r = read(fd, buf, len);
    } while (r > 0 || (r < 0 && errno == EINTR));
    if (r < 0) {
        int e = errno;

        close(fd);
        return -e;
    }
    close(fd);
    return 0;
}

/* Remove the first n names of a chunk, with threads threads. */
static int remove_chunk(int dfd, char (*names)[256], struct ss_unlink_item *items,
                        size_t n, int threads, const char *dir)
{
    for (size_t i = 0; i < n; i++)
        items[i] = (struct ss_unlink_item){ .dirfd = dfd, .name = names[i] };
    if (ss_unlink_many(items, n, threads) == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].err < 0)
            fprintf(stderr, "readunlink: %s/%s: %s\n", dir, names[i], strerror(-items[i].err));
    return -1;
}

int main(int argc, char **argv)
{
    enum { CHUNK = 1000 };
    static char buf[64 * 1024], names[CHUNK][256];
    static struct ss_unlink_item items[CHUNK];
    struct dirent *de;
    DIR *d;
    long n = 0, threads = 1;
    size_t pending = 0;
    double t0, dt;
    int rc;

    if (argc < 2 || argc > 3 || (argc == 3 && ((threads = atol(argv[2])) < 1 || threads > 64))) {
        fprintf(stderr, "usage: readunlink DIR [THREADS]\n");
        return 2;
    }
    t0 = now_s();
    if ((d = opendir(argv[1])) == NULL) {
        fprintf(stderr, "readunlink: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || de->d_type == DT_DIR)
            continue;
        if ((rc = read_whole(dirfd(d), de->d_name, buf, sizeof(buf))) < 0 ||
            (threads == 1 && unlinkat(dirfd(d), de->d_name, 0) != 0 && (rc = -errno) < 0)) {
            fprintf(stderr, "readunlink: %s/%s: %s\n", argv[1], de->d_name,
                    strerror(-rc));
            closedir(d);
            return 1;
        }
        if (threads > 1) {
            snprintf(names[pending++], sizeof names[0], "%s", de->d_name);
            if (pending == CHUNK) {
                if (remove_chunk(dirfd(d), names, items, pending, (int)threads, argv[1]) < 0)
                    return 1;
                pending = 0;
            }
        }
        n++;
    }
    if (pending && remove_chunk(dirfd(d), names, items, pending, (int)threads, argv[1]) < 0)
        return 1;
    closedir(d);
    dt = now_s() - t0;
    printf("files=%ld seconds=%.3f files_per_s=%.0f\n", n, dt, dt > 0 ? n / dt : 0);
    return 0;
}
