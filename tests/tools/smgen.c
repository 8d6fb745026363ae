/*
 * NAME
 *   smgen - write many valid status message files into an inbox
 *
 * SYNOPSIS
 *   smgen --box DIR --count N [--prefix P] [--component C]
 *         [--istr-prefix S] [--id N] [--batch K] [--nosync]
 *         [--future-ms MS]
 *
 * DESCRIPTION
 *   Builds N status messages, each by sm_init(id, component, "") with one
 *   insertion string "S-<i>" (i = 1..N), formats them with sm_format()
 *   and hands them to the inbox directory DIR through the library's own
 *   drop protocol (inbox_open_path() as a writer with prefix P, then
 *   inbox_drop_many() in batches of K).  So the files are exactly what a
 *   daemon or client would write, and a reader only ever sees complete
 *   ones.  The scenario tests use it to fill statmgr's inboxes quickly;
 *   the benchmarks use it as their load generator, so the command line
 *   above is an interface: keep it.
 *
 *   Defaults: prefix "smgen", component "smgen", istr prefix "smgen",
 *   id 8600 (SM_CLIENT_TEST), batch 256.
 *
 *   --nosync sets SITESRV_UNSAFE_NOFSYNC=1 for this process only, which
 *   makes the library skip fsync: quicker test set-up, never a measure of
 *   the real hand-off.  --future-ms MS dates every message MS
 *   milliseconds ahead of now (statmgr's future queue).
 *
 * DIAGNOSTICS
 *   Prints the number of files written on stdout.  Exit 0 when all N were
 *   written, 1 on a failure (named on stderr, with how many were already
 *   handed over; those are complete and stay), 2 on a usage error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "inbox.h"
#include "statmsg.h"
#include "uniqname.h"
#include "util.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: smgen --box DIR --count N [--prefix P] [--component C]\n"
            "             [--istr-prefix S] [--id N] [--batch K] [--nosync]\n"
            "             [--future-ms MS]\n");
}

/* Parse a decimal option within [min,max], or exit 2 naming the option. */
static long long opt_int(const char *name, const char *val, long long min, long long max)
{
    long long v;

    if (ss_parse_int(val, min, max, &v) != 0) {
        fprintf(stderr, "smgen: --%s: '%s' is not an integer in %lld..%lld\n",
                name, val, min, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "box",         required_argument, NULL, 'b' },
        { "count",       required_argument, NULL, 'n' },
        { "prefix",      required_argument, NULL, 'p' },
        { "component",   required_argument, NULL, 'c' },
        { "istr-prefix", required_argument, NULL, 's' },
        { "id",          required_argument, NULL, 'i' },
        { "batch",       required_argument, NULL, 'k' },
        { "nosync",      no_argument,       NULL, 'S' },
        { "future-ms",   required_argument, NULL, 'f' },
        { "help",        no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *box = NULL, *prefix = "smgen", *component = "smgen";
    const char *istr_prefix = "smgen";
    long long count = -1, id = SM_CLIENT_TEST, batch = 256, future_ms = 0;
    char safe_prefix[UNIQ_PREFIX_MAX + 1];
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b': box = optarg; break;
        case 'n': count = opt_int("count", optarg, 0, 100000000LL); break;
        case 'p': prefix = optarg; break;
        case 'c': component = optarg; break;
        case 's': istr_prefix = optarg; break;
        case 'i': id = opt_int("id", optarg, 0, 65535); break;
        case 'k': batch = opt_int("batch", optarg, 1, 100000); break;
        case 'S': setenv("SITESRV_UNSAFE_NOFSYNC", "1", 1); break;
        case 'f': future_ms = opt_int("future-ms", optarg, -(1LL << 40), 1LL << 40); break;
        case 'h': usage(); return 0;
        default: usage(); return 2;
        }
    }
    if (optind != argc || box == NULL || count < 0) {
        usage();
        return 2;
    }
    if (strlen(component) >= SM_COMPONENT) {
        fprintf(stderr, "smgen: --component: longer than %d characters\n", SM_COMPONENT - 1);
        return 2;
    }

    /* The library expects a prefix already reduced to the characters it
     * writes in names; doing it here keeps odd --prefix values usable. */
    uniq_prefix_sanitize(prefix, safe_prefix, sizeof(safe_prefix));

    struct inbox ib;
    int rc = inbox_open_path(&ib, box, IB_STATMSGS, safe_prefix, 0);
    if (rc < 0) {
        fprintf(stderr, "smgen: cannot open inbox %s: %s\n", box, strerror(-rc));
        printf("0\n");
        return 1;
    }

    /* One batch is formatted into one buffer; the items point into it
     * only after the whole batch is built, because the buffer moves as it
     * grows. */
    struct inbox_item *items = calloc((size_t)batch, sizeof(*items));
    size_t *offs = calloc((size_t)batch, sizeof(*offs));
    struct statmsg *m = malloc(sizeof(*m));
    struct sbuf one, all;
    long long written = 0;
    int status = 0;

    if (items == NULL || offs == NULL || m == NULL) {
        fprintf(stderr, "smgen: out of memory\n");
        inbox_close(&ib);
        return 1;
    }
    ss_sbuf_init(&one);
    ss_sbuf_init(&all);

    while (written < count && status == 0) {
        size_t n = (size_t)((count - written < batch) ? count - written : batch);
        char istr[SM_ISTR_LEN];

        ss_sbuf_reset(&all);
        for (size_t k = 0; k < n; k++) {
            long long i = written + (long long)k + 1;

            rc = sm_init(m, (unsigned)id, component, "");
            if (rc == 0)
                rc = ss_fmt(istr, sizeof(istr), "%s-%lld", istr_prefix, i);
            if (rc == 0)
                rc = sm_add_istr(m, istr);
            if (rc == 0) {
                m->time_ms += future_ms;
                ss_sbuf_reset(&one);
                rc = sm_format(m, &one);
            }
            if (rc == 0) {
                offs[k] = all.len;
                rc = ss_sbuf_add(&all, one.data, one.len);
            }
            if (rc < 0) {
                fprintf(stderr, "smgen: cannot build message %lld: %s\n", i, strerror(-rc));
                status = 1;
                break;
            }
        }
        if (status != 0)
            break;
        for (size_t k = 0; k < n; k++) {
            items[k].data = all.data + offs[k];
            items[k].len = (k + 1 < n ? offs[k + 1] : all.len) - offs[k];
        }
        size_t done = 0;
        rc = inbox_drop_many(&ib, ".svf", items, n, &done);
        written += (long long)done;
        if (rc < 0) {
            fprintf(stderr, "smgen: drop into %s failed after %lld files: %s\n",
                    box, written, strerror(-rc));
            status = 1;
        }
    }

    printf("%lld\n", written);
    ss_sbuf_free(&one);
    ss_sbuf_free(&all);
    free(m);
    free(offs);
    free(items);
    inbox_close(&ib);
    return status;
}
