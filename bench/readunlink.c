/*
 * NAME
 *   readunlink - the raw cost of reading and removing many small files
 *
 * SYNOPSIS
 *   readunlink DIR
 *
 * DESCRIPTION
 *   A baseline for the statmgr ingestion benchmark (bench/run.sh): reads
 *   every regular file of DIR whose name does not start with a dot, whole,
 *   and unlinks it, in directory order, one thread, no fsync.  That is the
 *   file system work a reader of an inbox cannot avoid; what statmgr takes
 *   beyond it goes to parsing, the database and its own bookkeeping.
 *   Subdirectories (.tmp, work, corrupt) are left alone.
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

int main(int argc, char **argv)
{
    static char buf[64 * 1024];
    struct dirent *de;
    DIR *d;
    long n = 0;
    double t0, dt;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: readunlink DIR\n");
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
            (unlinkat(dirfd(d), de->d_name, 0) != 0 && (rc = -errno) < 0)) {
            fprintf(stderr, "readunlink: %s/%s: %s\n", argv[1], de->d_name,
                    strerror(-rc));
            closedir(d);
            return 1;
        }
        n++;
    }
    closedir(d);
    dt = now_s() - t0;
    printf("files=%ld seconds=%.3f files_per_s=%.0f\n", n, dt, dt > 0 ? n / dt : 0);
    return 0;
}
