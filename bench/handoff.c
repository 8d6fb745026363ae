/*
 * NAME
 *   handoff - benchmark one inbox hop against the raw durable-write loop
 *
 * SYNOPSIS
 *   handoff [--dir DIR] [--count N] [--reps R] [--batch K] [--size BYTES]
 *           [--results FILE]
 *
 * DESCRIPTION
 *   Measures how many files per second go through one inbox hop of
 *   lib/inbox.h, with fsync on, and compares it with a baseline measured
 *   in the same run on the same file system:
 *
 *   raw      the plainest durable single-writer loop there is, per file:
 *            open(O_CREAT|O_EXCL) in .tmp/, write, fsync, close, rename
 *            into the directory, fsync the directory.  Writer side only.
 *   single   inbox_drop() of every file, then the reader side: inbox_scan(),
 *            inbox_claim() and inbox_done() of every file.
 *   batched  the same with inbox_drop_many() in batches of K (64), which
 *            fsyncs the directory once per batch.
 *
 *   Both sitesrv modes do strictly more work than raw (they also take the
 *   file out again), in one thread, so a ratio of 1.0 or more means the
 *   library costs nothing over doing it by hand.  The writer phase runs to
 *   the end before the reader phase starts; that keeps one thread and one
 *   core, as the raw loop has, and makes the figure a lower bound for a
 *   reader that works alongside its writers.
 *
 *   Each mode is measured R times (3), the modes interleaved so that noise
 *   on the shared machine falls on all of them alike, and the median is
 *   reported.  Every measurement uses a fresh directory under DIR, which
 *   is removed afterwards.  The payload is SIZE (512) bytes, about one
 *   status message.
 *
 *   SITESRV_UNSAFE_NOFSYNC is removed from the environment at start: a
 *   hand-off benchmark without fsync measures nothing worth knowing.
 *
 * DIAGNOSTICS
 *   Prints a table on stdout and, with --results, appends the same
 *   figures as handoff.KEY=VALUE lines to FILE.  Exits 0 on success, 1 if
 *   a library call fails or the files do not all come out the other side
 *   (a correctness failure, never a timing one), 2 on a usage error.
 *   Never judges timing by its exit code; it prints "goal met" or "goal
 *   NOT met".
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "inbox.h"
#include "util.h"

#define GOAL_RATIO 1.0
#define SCAN_MAX   512
#define MAX_REPS   15

enum mode { M_RAW, M_SINGLE, M_BATCHED, M_COUNT };
static const char *const mode_name[M_COUNT] = { "raw", "single", "batched" };

struct opts {
    char   dir[SS_PATH_MAX];
    size_t count;
    int    reps;
    size_t batch;
    size_t size;
    const char *results;
};

/* One measurement: total seconds, and for the sitesrv modes the writer
 * and reader phases separately. */
struct sample {
    double total;
    double write;
    double read;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A name for the file system magic numbers a benchmark is likely to meet,
 * so that the reader of the table knows whether fsync went to a disk. */
static const char *fs_name(const char *path)
{
    struct statfs sf;

    if (statfs(path, &sf) != 0)
        return "unknown";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53UL:     return "ext2/ext3/ext4";
    case 0x01021994UL: return "tmpfs";
    case 0x58465342UL: return "xfs";
    case 0x9123683EUL: return "btrfs";
    case 0x794C7630UL: return "overlayfs";
    case 0x6969UL:     return "nfs";
    case 0xFF534D42UL: return "cifs";
    case 0x2FC12FC1UL: return "zfs";
    default:           return "other";
    }
}

/* Make DIR/NAME with the inbox layout (.tmp, work, corrupt) and return its
 * path in out. */
static int make_box(const struct opts *o, const char *name, char *out, size_t outlen)
{
    char sub[SS_PATH_MAX];
    static const char *const parts[] = { ".tmp", "work", "corrupt" };
    int rc;

    if ((rc = ss_path(out, outlen, "%s/%s", o->dir, name)) < 0)
        return rc;
    (void)ss_rm_rf(out);     /* a leftover of an interrupted run */
    for (size_t i = 0; i < SS_ARRAY_LEN(parts); i++) {
        if ((rc = ss_path(sub, sizeof(sub), "%s/%s", out, parts[i])) < 0)
            return rc;
        if ((rc = ss_mkdir_p(sub, 0750)) < 0)
            return rc;
    }
    return 0;
}

/* The baseline: the per-file durable write done by hand, writer side only.
 * Names have the length of the library's (prefix, 32 hex digits, suffix)
 * but come from a counter: drawing random bytes is not what is measured. */
static int run_raw(const struct opts *o, const char *box, const char *data,
                   struct sample *s)
{
    char path[SS_PATH_MAX], name[64];
    int dirfd, tmpfd, rc = 0;
    double t0;

    if ((rc = ss_path(path, sizeof(path), "%s/.tmp", box)) < 0)
        return rc;
    dirfd = open(box, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    tmpfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0 || tmpfd < 0) {
        rc = -errno;
        fprintf(stderr, "handoff: open %s: %s\n", box, strerror(errno));
        goto out;
    }
    t0 = now_s();
    for (size_t i = 0; i < o->count; i++) {
        int fd;

        snprintf(name, sizeof(name), "bench-%032zx.svf", i);
        fd = openat(tmpfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640);
        if (fd < 0) {
            rc = -errno;
            fprintf(stderr, "handoff: raw create %s: %s\n", name, strerror(errno));
            goto out;
        }
        if ((rc = ss_write_all(fd, data, o->size)) < 0 || fsync(fd) != 0) {
            rc = rc < 0 ? rc : -errno;
            fprintf(stderr, "handoff: raw write %s: %s\n", name, strerror(-rc));
            close(fd);
            goto out;
        }
        if (close(fd) != 0 || renameat(tmpfd, name, dirfd, name) != 0 ||
            fsync(dirfd) != 0) {
            rc = -errno;
            fprintf(stderr, "handoff: raw hand-over %s: %s\n", name, strerror(errno));
            goto out;
        }
    }
    s->total = s->write = now_s() - t0;
    s->read = 0;
out:
    if (dirfd >= 0)
        close(dirfd);
    if (tmpfd >= 0)
        close(tmpfd);
    return rc;
}

/* Count the regular entries of a directory that do not start with a dot,
 * to check that a hop left nothing behind. */
static long count_files(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    long n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' && de->d_type != DT_DIR)
            n++;
    closedir(d);
    return n;
}

/* The reader side: scan, claim, done until count files went through. */
static int drain(struct inbox *rd, size_t count, struct inbox_entry *ents)
{
    size_t got = 0, n;
    int rc;

    while (got < count) {
        if ((rc = inbox_scan(rd, ents, SCAN_MAX, &n)) < 0) {
            fprintf(stderr, "handoff: inbox_scan: %s\n", strerror(-rc));
            return rc;
        }
        if (n == 0) {
            fprintf(stderr, "handoff: inbox empty after %zu of %zu files\n", got, count);
            return -EIO;
        }
        for (size_t i = 0; i < n; i++) {
            if (ents[i].odd) {
                fprintf(stderr, "handoff: unexpected odd name %s\n", ents[i].name);
                return -EIO;
            }
            if ((rc = inbox_claim(rd, ents[i].name)) < 0) {
                fprintf(stderr, "handoff: inbox_claim %s: %s\n", ents[i].name,
                        strerror(-rc));
                return rc;
            }
            if ((rc = inbox_done(rd, ents[i].name)) < 0) {
                fprintf(stderr, "handoff: inbox_done %s: %s\n", ents[i].name,
                        strerror(-rc));
                return rc;
            }
            got++;
        }
    }
    return 0;
}

/* One sitesrv hop of count files, by inbox_drop() (batch 0) or by
 * inbox_drop_many() in batches. */
static int run_hop(const struct opts *o, const char *box, const char *data,
                   int batched, struct inbox_entry *ents, struct sample *s)
{
    struct inbox wr, rd;
    struct inbox_item items[256];
    char path[SS_PATH_MAX];
    double t0, t1;
    int rc;
    size_t nb = o->batch < SS_ARRAY_LEN(items) ? o->batch : SS_ARRAY_LEN(items);

    for (size_t i = 0; i < nb; i++) {
        items[i].data = data;
        items[i].len = o->size;
    }
    if ((rc = inbox_open_path(&wr, box, IB_STATMSGS, "bench", 0)) < 0) {
        fprintf(stderr, "handoff: inbox_open_path %s (writer): %s\n", box, strerror(-rc));
        return rc;
    }
    if ((rc = inbox_open_path(&rd, box, IB_STATMSGS, "bench", 1)) < 0) {
        fprintf(stderr, "handoff: inbox_open_path %s (reader): %s\n", box, strerror(-rc));
        inbox_close(&wr);
        return rc;
    }
    t0 = now_s();
    for (size_t i = 0; i < o->count && rc == 0;) {
        if (batched) {
            size_t n = o->count - i < nb ? o->count - i : nb, done = 0;

            rc = inbox_drop_many(&wr, ".svf", items, n, &done);
            if (rc == 0 && done != n)
                rc = -EIO;
            i += n;
        } else {
            rc = inbox_drop(&wr, ".svf", data, o->size, NULL, 0);
            i++;
        }
    }
    if (rc < 0) {
        fprintf(stderr, "handoff: %s: %s\n", batched ? "inbox_drop_many" : "inbox_drop",
                strerror(-rc));
        goto out;
    }
    t1 = now_s();
    if ((rc = drain(&rd, o->count, ents)) < 0)
        goto out;
    s->total = now_s() - t0;
    s->write = t1 - t0;
    s->read = s->total - s->write;
    /* Nothing may stay behind: not in the inbox, not in work/. */
    if ((rc = ss_path(path, sizeof(path), "%s/work", box)) < 0)
        goto out;
    if (count_files(box) != 0 || count_files(path) != 0) {
        fprintf(stderr, "handoff: files left behind in %s\n", box);
        rc = -EIO;
    }
out:
    inbox_close(&rd);
    inbox_close(&wr);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: handoff [--dir DIR] [--count N] [--reps R] [--batch K] "
            "[--size BYTES] [--results FILE]\n");
    exit(2);
}

static long long arg_int(const char *s, long long min, long long max)
{
    long long v;

    if (!s || ss_parse_int(s, min, max, &v) < 0)
        usage();
    return v;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    const char *tmp = getenv("TMPDIR");

    memset(o, 0, sizeof(*o));
    o->count = 2000;
    o->reps = 3;
    o->batch = 64;
    o->size = 512;
    if (ss_strcpy(o->dir, sizeof(o->dir), tmp && *tmp ? tmp : "/tmp") < 0)
        usage();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(a, "--dir")) {
            if (!v || ss_strcpy(o->dir, sizeof(o->dir), v) < 0)
                usage();
        } else if (!strcmp(a, "--count")) {
            o->count = (size_t)arg_int(v, 1, 10000000);
        } else if (!strcmp(a, "--reps")) {
            o->reps = (int)arg_int(v, 1, MAX_REPS);
        } else if (!strcmp(a, "--batch")) {
            o->batch = (size_t)arg_int(v, 1, 256);
        } else if (!strcmp(a, "--size")) {
            o->size = (size_t)arg_int(v, 1, 1 << 20);
        } else if (!strcmp(a, "--results")) {
            if (!v)
                usage();
            o->results = v;
        } else {
            usage();
        }
        i++;
    }
}

int main(int argc, char **argv)
{
    struct opts o;
    struct sample s[M_COUNT][MAX_REPS];
    double v[MAX_REPS], tot[M_COUNT], wr[M_COUNT], rdt[M_COUNT], rate[M_COUNT];
    struct inbox_entry *ents;
    char *data;
    char box[SS_PATH_MAX], name[64];
    const char *fs;
    FILE *rf = NULL;
    int rc = 0;

    parse_args(argc, argv, &o);
    if (getenv("SITESRV_UNSAFE_NOFSYNC")) {
        fprintf(stderr, "handoff: ignoring SITESRV_UNSAFE_NOFSYNC: benchmarks fsync\n");
        unsetenv("SITESRV_UNSAFE_NOFSYNC");
    }
    if (ss_mkdir_p(o.dir, 0750) < 0) {
        fprintf(stderr, "handoff: cannot create %s\n", o.dir);
        return 1;
    }
    fs = fs_name(o.dir);
    ents = calloc(SCAN_MAX, sizeof(*ents));
    data = malloc(o.size);
    if (!ents || !data) {
        fprintf(stderr, "handoff: out of memory\n");
        return 1;
    }
    /* Printable text with a final newline, like a status message file. */
    for (size_t i = 0; i < o.size; i++)
        data[i] = (char)('a' + i % 26);
    data[o.size - 1] = '\n';

    for (int r = 0; r < o.reps && rc == 0; r++) {
        for (int m = 0; m < M_COUNT && rc == 0; m++) {
            snprintf(name, sizeof(name), "handoff-%ld-%s-%d", (long)getpid(),
                     mode_name[m], r);
            if ((rc = make_box(&o, name, box, sizeof(box))) < 0) {
                fprintf(stderr, "handoff: cannot make %s/%s: %s\n", o.dir, name,
                        strerror(-rc));
                break;
            }
            if (m == M_RAW)
                rc = run_raw(&o, box, data, &s[m][r]);
            else
                rc = run_hop(&o, box, data, m == M_BATCHED, ents, &s[m][r]);
            (void)ss_rm_rf(box);
        }
    }
    free(ents);
    free(data);
    if (rc < 0)
        return 1;

    for (int m = 0; m < M_COUNT; m++) {
        for (int r = 0; r < o.reps; r++)
            v[r] = s[m][r].total;
        tot[m] = median(v, o.reps);
        for (int r = 0; r < o.reps; r++)
            v[r] = s[m][r].write;
        wr[m] = median(v, o.reps);
        for (int r = 0; r < o.reps; r++)
            v[r] = s[m][r].read;
        rdt[m] = median(v, o.reps);
        rate[m] = tot[m] > 0 ? (double)o.count / tot[m] : 0;
    }

    printf("Hand-off through one inbox (fsync on; %s, %s; %zu files of %zu bytes, "
           "median of %d)\n", o.dir, fs, o.count, o.size, o.reps);
    printf("  %-40s %10s %8s %9s %9s\n", "", "files/s", "vs raw", "write s", "read s");
    printf("  %-40s %10.0f %7.2fx %9.3f %9s\n", "raw open+write+fsync+rename+fsync(dir)",
           rate[M_RAW], 1.0, wr[M_RAW], "-");
    printf("  %-40s %10.0f %7.2fx %9.3f %9.3f\n", "inbox_drop + scan/claim/done",
           rate[M_SINGLE], rate[M_SINGLE] / rate[M_RAW], wr[M_SINGLE], rdt[M_SINGLE]);
    snprintf(name, sizeof(name), "inbox_drop_many(%zu) + scan/claim/done", o.batch);
    printf("  %-40s %10.0f %7.2fx %9.3f %9.3f\n", name,
           rate[M_BATCHED], rate[M_BATCHED] / rate[M_RAW], wr[M_BATCHED], rdt[M_BATCHED]);
    printf("  goal: batched hop >= %.1fx raw: %s\n", GOAL_RATIO,
           rate[M_BATCHED] >= GOAL_RATIO * rate[M_RAW] ? "goal met" : "goal NOT met");

    if (o.results && (rf = fopen(o.results, "a")) == NULL) {
        fprintf(stderr, "handoff: cannot open %s: %s\n", o.results, strerror(errno));
        return 1;
    }
    if (rf) {
        fprintf(rf, "handoff.dir=%s\nhandoff.fs=%s\nhandoff.files=%zu\n"
                "handoff.size=%zu\nhandoff.reps=%d\nhandoff.batch=%zu\n",
                o.dir, fs, o.count, o.size, o.reps, o.batch);
        for (int m = 0; m < M_COUNT; m++) {
            fprintf(rf, "handoff.%s_files_per_s=%.0f\n", mode_name[m], rate[m]);
            fprintf(rf, "handoff.%s_write_s=%.3f\n", mode_name[m], wr[m]);
            if (m != M_RAW) {
                fprintf(rf, "handoff.%s_read_s=%.3f\n", mode_name[m], rdt[m]);
                fprintf(rf, "handoff.%s_ratio=%.2f\n", mode_name[m], rate[m] / rate[M_RAW]);
            }
        }
        fprintf(rf, "handoff.goal_ratio=%.1f\nhandoff.goal_met=%s\n", GOAL_RATIO,
                rate[M_BATCHED] >= GOAL_RATIO * rate[M_RAW] ? "yes" : "no");
        if (fclose(rf) != 0) {
            fprintf(stderr, "handoff: write %s: %s\n", o.results, strerror(errno));
            return 1;
        }
    }
    return 0;
}
