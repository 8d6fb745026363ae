/*
 * NAME
 *   client.c - sitectl client send-status: send a status message as a
 *   client's copy queue does, and never lose it (SPEC 4.2).
 *
 * SYNOPSIS
 *   cmd_client()
 *
 * DESCRIPTION
 *   The message goes into the client access point drop box
 *   CAP/statmsgs.box/ by the drop protocol of lib/inbox: built in .tmp/
 *   under a random name (lib/uniqname: 128 random bits after the machine
 *   name, nothing from the clock), fsync'ed, moved in with a no-replace
 *   rename.  A name collision draws a new name; there is no retry limit
 *   that ends in dropping the message - the defect of the SMS client
 *   this replaces.
 *
 *   When the drop box cannot be reached (a share that is gone, read-only,
 *   stale, full...: CAP itself missing or failing, or CAP/statmsgs.box
 *   there but failing), the message is kept in a local client queue, which
 *   is itself an inbox directory written by the same protocol:
 *   --queue, else $SITESRV_CLIENT_QUEUE, else
 *   $XDG_STATE_HOME/sitesrv/client-queue, else
 *   ~/.local/state/sitesrv/client-queue (0700).  Every call first delivers
 *   what is queued: each file is claimed by a rename into the queue's
 *   work/ (so two clients flushing at once never both take it), checked,
 *   dropped into the box and only then unlinked; on failure it goes back.
 *   A delivery that happens twice after a crash is harmless: statmgr
 *   ingests by the message uid, exactly once.  A queued file that is not
 *   a status message is quarantined in the queue's corrupt/.
 *
 *   A queued file that cannot be read (another user's, mode 0600) is
 *   left in the queue for a later call or for its owner, and this call
 *   skips it from then on: the queue is read in pages by a cursor, which
 *   never returns to the first page, and the names left are remembered,
 *   since a file put back may be listed again by the same cursor.  A
 *   pass over the queue is repeated only while it delivers something
 *   (files queued meanwhile may have been missed by the cursor), so the
 *   flush always ends and the new message is always sent or queued.
 *
 *   A CAP that is reached but is no access point (a directory without
 *   statmsgs.box, such as a mistyped <root>/inboxes, or not a directory)
 *   is said so plainly, since a message queued for it waits until a call
 *   names the right one.  It is queued all the same: the mount point of a
 *   share that did not mount looks exactly like this, and a client's
 *   status must not be lost to an outage.

 *   The options are checked with the rules sm_parse() applies (the
 *   exported sm_*_ok checks): a bad --component, --machine, --attr or
 *   --istr is a usage error that names the rule, before anything is sent.
 *
 * DIAGNOSTICS
 *   "queued locally in PATH (drop box unreachable: reason)" on stderr and
 *   exit 0: the message is safe.  A warning names each queued file that
 *   cannot be read, and how many stay queued.  "CAP is not a client
 *   access point: ..." on stderr when CAP is reached but has no
 *   statmsgs.box (the message is queued).  Exit 1 only if the message
 *   could be neither delivered nor queued; 2 for a usage error.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "inbox.h"
#include "statmsg.h"
#include "uniqname.h"
#include "sitectl.h"

/* A claimed file whose claim is older than this belongs to a client that
 * died while flushing: it goes back to the queue.  rename() sets ctime,
 * so the ctime of a file in work/ is the moment it was claimed. */
#define CLAIM_STALE_S 600

static int queue_dir(const char *opt, char *buf, size_t len)
{
    const char *e;
    if (opt && *opt)
        return ss_strcpy(buf, len, opt);
    if ((e = getenv("SITESRV_CLIENT_QUEUE")) && *e)
        return ss_strcpy(buf, len, e);
    if ((e = getenv("XDG_STATE_HOME")) && *e == '/')
        return ss_path(buf, len, "%s/sitesrv/client-queue", e);
    e = getenv("HOME");
    if (!e || !*e) {
        struct passwd *pw = getpwuid(getuid());
        e = pw ? pw->pw_dir : NULL;
    }
    if (!e || !*e)
        return -ENOENT;
    return ss_path(buf, len, "%s/.local/state/sitesrv/client-queue", e);
}

/* Claims left in work/ by a client that died go back to the queue. */
static void return_stale_claims(struct inbox *q)
{
    int fd = dup(q->workfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (!uniq_name_ok(de->d_name, ".svf") ||
            fstatat(q->workfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode) || now - st.st_ctime < CLAIM_STALE_S)
            continue;
        int r = inbox_return(q, de->d_name);
        if (r < 0 && r != -ENOENT)
            ctl_err("warning: cannot return %s/work/%s to the queue: %s", q->path,
                    de->d_name, strerror(-r));
    }
    closedir(d);
}

/* What became of a queued file; a negative errno is a failure of the box. */
enum delivery {
    DELIVERED,      /* in the box, gone from the queue */
    QUARANTINED,    /* not a status message: in the queue's corrupt/ */
    LEFT,           /* still in the queue (it could not be read) */
};

/* Claims put back into a queue, by name, so that a flush tries each once.
 * Sorted, for bsearch: a queue can hold many files nobody can read. */
struct nameset {
    char  **v;
    size_t  n, cap;
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int nameset_has(const struct nameset *s, const char *name)
{
    return s->n > 0 && bsearch(&name, s->v, s->n, sizeof *s->v, name_cmp) != NULL;
}

static int nameset_add(struct nameset *s, const char *name)
{
    size_t lo = 0, hi = s->n;
    char *copy;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->v[mid], name);
        if (c == 0)
            return 0;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    if (!(copy = strdup(name)))
        return -ENOMEM;
    memmove(s->v + lo + 1, s->v + lo, (s->n - lo) * sizeof *s->v);
    s->v[lo] = copy;
    s->n++;
    return 0;
}

static void nameset_free(struct nameset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* Deliver one claimed file (in work/): an enum delivery, or the negative
 * errno of the drop into the box (the file is back in the queue then). */
static int deliver_claimed(struct inbox *q, struct inbox *cap, const char *name)
{
    char *buf = NULL, err[SS_ERR_MAX] = "";
    size_t len = 0;
    int r = ss_read_file(q->workfd, name, SM_FILE_MAX, &buf, &len);
    if (r == -EFBIG || r == -EINVAL || r == -EISDIR) {
        inbox_quarantine(q, 1, name, r == -EFBIG ? "larger than a status message may be"
                                                  : "not a regular file");
        return QUARANTINED;
    }
    if (r < 0) {
        /* Not the box's fault, and not proof of damage either (another
         * user's file, a read error): it stays queued, for a later call
         * or its owner. */
        ctl_err("warning: cannot read %s/work/%s: %s (left in the queue)", q->path, name,
                strerror(-r));
        int rr = inbox_return(q, name);
        if (rr < 0)
            ctl_err("warning: cannot return %s/work/%s to the queue: %s", q->path,
                    name, strerror(-rr));
        return LEFT;
    }
    /* sm_parse works in place: check a copy, send the original bytes. */
    char *copy = malloc(len + 1);
    struct statmsg *m = malloc(sizeof *m);
    if (!copy || !m) {
        free(copy);
        free(m);
        free(buf);
        inbox_return(q, name);
        return -ENOMEM;
    }
    memcpy(copy, buf, len + 1);
    r = sm_parse(m, copy, len, err, sizeof err);
    free(copy);
    free(m);
    if (r < 0) {
        inbox_quarantine(q, 1, name, err[0] ? err : "not a status message");
        free(buf);
        return QUARANTINED;
    }
    r = inbox_drop(cap, ".svf", buf, len, NULL, 0);
    free(buf);
    if (r < 0) {
        int rr = inbox_return(q, name);
        if (rr < 0)
            ctl_err("warning: cannot return %s/work/%s to the queue: %s", q->path,
                    name, strerror(-rr));
        return r;
    }
    r = inbox_done(q, name);
    if (r < 0 && r != -ENOENT)
        ctl_err("warning: delivered %s but cannot remove it from %s/work: %s "
                "(it may be delivered again, which is harmless)", name, q->path,
                strerror(-r));
    return DELIVERED;
}

/*
 * One pass over the queue with a cursor: each file is tried at most once
 * (names in *left are skipped).  Returns how many were delivered; *stop
 * is set when the flush must end now (the box failed: *box_err; or the
 * queue cannot be listed, or memory ran out).
 */
static size_t flush_pass(struct inbox *q, struct inbox *cap, struct nameset *left,
                         int *box_err, int *stop)
{
    struct inbox_entry ents[64];
    struct inbox_cursor cur;
    size_t delivered = 0;
    int r;

    if ((r = inbox_cursor_open(q, &cur)) < 0) {
        ctl_err("warning: cannot list the local queue %s: %s", q->path, strerror(-r));
        *stop = 1;
        return 0;
    }
    while (!*stop) {
        size_t n = 0;
        if ((r = inbox_cursor_next(&cur, ents, SS_ARRAY_LEN(ents), &n)) < 0) {
            ctl_err("warning: cannot list the local queue %s: %s", q->path, strerror(-r));
            *stop = 1;
        }
        if (n == 0)
            break;
        for (size_t i = 0; i < n && !*stop; i++) {
            const char *name = ents[i].name;
            if (nameset_has(left, name))
                continue;
            if (ents[i].odd) {
                if (inbox_quarantine(q, 0, name, "not a status message file name") == 0)
                    continue;
            } else if ((r = inbox_claim(q, name)) == -ENOENT) {
                continue;                  /* another client is delivering it */
            } else if (r < 0) {
                ctl_err("warning: cannot claim %s/%s: %s", q->path, name, strerror(-r));
            } else if ((r = deliver_claimed(q, cap, name)) < 0) {
                *box_err = r;
                *stop = 1;
                break;
            } else if (r == DELIVERED) {
                delivered++;
                continue;
            } else if (r == QUARANTINED) {
                continue;
            }
            /* Left where it was (unreadable, or it could not be moved):
             * not again in this flush. */
            if (nameset_add(left, name) < 0) {
                ctl_err("warning: out of memory while flushing the local queue %s", q->path);
                *stop = 1;
            }
        }
    }
    inbox_cursor_close(&cur);
    return delivered;
}

/* Deliver what the local queue holds.  Returns how many were delivered;
 * *box_err is set when the box failed (stop: the rest waits). */
static size_t flush_queue(const char *qpath, const char *prefix, struct inbox *cap,
                          int *box_err)
{
    struct stat st;
    if (stat(qpath, &st) < 0 || !S_ISDIR(st.st_mode))
        return 0;                      /* nothing was ever queued */
    struct inbox q;
    int r = inbox_open_path(&q, qpath, IB_CAP, prefix, 1);
    if (r < 0) {
        ctl_err("warning: cannot open the local queue %s: %s", qpath, strerror(-r));
        return 0;
    }
    return_stale_claims(&q);

    struct nameset left = {0};
    size_t sent = 0;
    int stop = 0;
    /* Another pass only after one that delivered something: the cursor
     * may have missed files queued meanwhile, and a pass that delivered
     * nothing shows that nothing more can go now. */
    for (;;) {
        size_t n = flush_pass(&q, cap, &left, box_err, &stop);
        sent += n;
        if (stop || n == 0)
            break;
    }
    if (left.n > 0)
        ctl_err("warning: %zu queued message%s could not be delivered (see above) and "
                "stay%s in %s", left.n, left.n == 1 ? "" : "s", left.n == 1 ? "s" : "", qpath);
    nameset_free(&left);
    inbox_close(&q);
    return sent;
}

/*
 * The drop box could not be opened (err): is that because it cannot be
 * reached - keep the message in the local queue - or because cap, which
 * we reach, is no client access point at all (a mistyped --cap), where a
 * queued message would wait for ever?  Returns 1 for the latter, with the
 * reason in why[].  Reachable and wrong means: cap is there and is not a
 * directory, or cap is a directory without statmsgs.box in it, or with a
 * statmsgs.box that is not a directory.  Anything else is unreachable:
 * cap itself missing or failing (ENOENT, EACCES, ENOTCONN, ESTALE, EIO...),
 * a box that exists but cannot be opened or written (EACCES, EROFS...), a
 * box that is a symbolic link to a target that is not there (a share
 * mounted elsewhere).
 */
static int not_an_access_point(const char *cap, const char *box, int err, char *why,
                               size_t len)
{
    struct stat st;
    if (stat(cap, &st) < 0)
        return 0;
    if (!S_ISDIR(st.st_mode)) {
        (void)ss_fmt(why, len, "not a directory");
        return 1;
    }
    if (err != -ENOENT && err != -ENOTDIR)
        return 0;
    if (lstat(box, &st) < 0) {
        if (errno != ENOENT)
            return 0;
        (void)ss_fmt(why, len, "no statmsgs.box in it");
        return 1;
    }
    if (S_ISLNK(st.st_mode) || S_ISDIR(st.st_mode))
        return 0;                      /* a dangling link, or made meanwhile */
    (void)ss_fmt(why, len, "%s is not a directory", box);
    return 1;
}

int cmd_client(struct ctl *c, int argc, char **argv)
{
    const char *sub = NULL, *cap = NULL, *v, *severity = NULL, *component = "client",
               *machine = NULL, *site = "", *queue = NULL, *type = NULL;
    const char *istr[SM_MAX_ISTR], *attr[SM_MAX_ATTR];
    int nistr = 0, nattr = 0;
    long long id = -1;

    for (int i = 0; i < argc; i++) {
        if (ctl_common(c, argc, argv, &i))
            continue;
        if (ctl_opt(c, argc, argv, &i, "--cap", &cap) ||
            ctl_opt(c, argc, argv, &i, "--component", &component) ||
            ctl_opt(c, argc, argv, &i, "--machine", &machine) ||
            ctl_opt(c, argc, argv, &i, "--site", &site) ||
            ctl_opt(c, argc, argv, &i, "--queue", &queue) ||
            ctl_opt(c, argc, argv, &i, "--type", &type) ||
            ctl_opt(c, argc, argv, &i, "--severity", &severity))
            continue;
        if (ctl_opt(c, argc, argv, &i, "--id", &v)) {
            if (ss_parse_int(v, 0, 65535, &id) < 0)
                ctl_usage_error(c, "bad --id '%s' (0..65535)", v);
        } else if (ctl_opt(c, argc, argv, &i, "--istr", &v)) {
            if (nistr >= SM_MAX_ISTR)
                ctl_usage_error(c, "at most %d --istr", SM_MAX_ISTR);
            if (!ss_utf8_valid(v, strlen(v)))
                ctl_usage_error(c, "bad --istr number %d (not valid UTF-8 text)", nistr + 1);
            istr[nistr++] = v;
        } else if (ctl_opt(c, argc, argv, &i, "--attr", &v)) {
            char an[SM_ATTR_NAME];
            const char *eq = strchr(v, '=');
            if (nattr >= SM_MAX_ATTR)
                ctl_usage_error(c, "at most %d --attr", SM_MAX_ATTR);
            if (!eq)
                ctl_usage_error(c, "bad --attr '%s' (NAME=VALUE)", v);
            if ((size_t)(eq - v) >= sizeof an ||
                ss_fmt(an, sizeof an, "%.*s", (int)(eq - v), v) < 0 || !sm_attr_name_ok(an))
                ctl_usage_error(c, "bad --attr '%s' (NAME=VALUE, the name %s)", v,
                                SM_ATTR_NAME_RULE);
            if (!ss_utf8_valid(eq + 1, strlen(eq + 1)))
                ctl_usage_error(c, "bad --attr %s (the value is not valid UTF-8 text)", an);
            attr[nattr++] = v;
        } else if (argv[i][0] != '-' && !sub) {
            sub = argv[i];
        } else {
            ctl_usage_error(c, "unexpected argument %s", argv[i]);
        }
    }
    if (!sub)
        ctl_usage_error(c, "client needs a subcommand (send-status)");
    if (strcmp(sub, "send-status") != 0)
        ctl_usage_error(c, "unknown client subcommand '%s'", sub);
    if (!cap || !*cap)
        ctl_usage_error(c, "--cap DIR is required");
    if (id < 0)
        ctl_usage_error(c, "--id N is required");
    if (severity && (strlen(severity) != 1 || !strchr("IWE", severity[0])))
        ctl_usage_error(c, "bad --severity '%s' (I, W or E)", severity);
    if (site[0] && !ss_site_code_ok(site))
        ctl_usage_error(c, "bad --site '%s' (three of A-Z 0-9)", site);
    if (!sm_component_ok(component))
        ctl_usage_error(c, "bad --component '%s' (%s)", component, SM_COMPONENT_RULE);
    if (machine && !sm_machine_ok(machine))
        ctl_usage_error(c, "bad --machine '%s' (%s)", machine, SM_MACHINE_RULE);
    enum sm_type ty = SM_MILESTONE;
    if (type && sm_type_parse(type, &ty) < 0)
        ctl_usage_error(c, "bad --type '%s' (milestone, detail or audit)", type);

    /* Build the message, and its file form once: the same bytes go to the
     * box or to the queue. */
    struct statmsg *m = calloc(1, sizeof *m);
    struct sbuf b;
    ss_sbuf_init(&b);
    int rc = CTL_FAIL, r;
    if (!m) {
        ctl_err("out of memory");
        return CTL_FAIL;
    }
    if ((r = sm_init(m, (unsigned)id, component, site)) < 0) {
        ctl_err("cannot create the message: %s", strerror(-r));
        goto out;
    }
    if (machine)
        ss_strcpy(m->machine, sizeof m->machine, machine);     /* checked above */
    if (severity)
        m->severity = severity[0];
    if (type)
        m->type = ty;
    for (int i = 0; i < nistr; i++)
        if ((r = sm_add_istr(m, istr[i])) < 0) {
            ctl_err("cannot add insertion string %d: %s", i + 1, strerror(-r));
            goto out;
        }
    for (int i = 0; i < nattr; i++) {
        char name[SM_ATTR_NAME];
        const char *eq = strchr(attr[i], '=');
        /* The name fits: checked with the options. */
        ss_fmt(name, sizeof name, "%.*s", (int)(eq - attr[i]), attr[i]);
        if ((r = sm_add_attr(m, name, eq + 1)) < 0) {
            ctl_err("cannot add attribute '%s': %s", attr[i], strerror(-r));
            goto out;
        }
    }
    if ((r = sm_format(m, &b)) < 0 || !b.data) {
        ctl_err("cannot format the message: %s", strerror(r < 0 ? -r : ENOMEM));
        goto out;
    }

    char prefix[UNIQ_PREFIX_MAX + 1], box[SS_PATH_MAX], qpath[SS_PATH_MAX], name[UNIQ_NAME_MAX];
    uniq_prefix_sanitize(m->machine, prefix, sizeof prefix);
    if (ss_path(box, sizeof box, "%s/statmsgs.box", cap) < 0) {
        ctl_err("--cap path too long");
        goto out;
    }
    int qr = queue_dir(queue, qpath, sizeof qpath);

    /* The box: first what waits in the queue, then this message. */
    struct inbox ib;
    int box_err = inbox_open_path(&ib, box, IB_CAP, prefix, 0);
    char why[SS_ERR_MAX];
    if (box_err < 0 && not_an_access_point(cap, box, box_err, why, sizeof why))
        ctl_err("%s is not a client access point: %s; keeping the message in the local "
                "queue (check --cap, and that the share is mounted)", cap, why);
    if (box_err == 0) {
        size_t sent = qr == 0 ? flush_queue(qpath, prefix, &ib, &box_err) : 0;
        if (sent)
            printf("delivered %zu queued message%s from %s\n", sent, sent == 1 ? "" : "s",
                   qpath);
        if (box_err == 0) {
            box_err = inbox_drop(&ib, ".svf", b.data, b.len, name, sizeof name);
            if (box_err == 0) {
                printf("delivered status message %u to %s/%s\n", m->id, box, name);
                rc = CTL_OK;
            }
        }
        inbox_close(&ib);
        if (rc == CTL_OK)
            goto out;
    }

    /* Unreachable: keep it locally; the next call delivers it. */
    if (qr < 0) {
        ctl_err("drop box %s unreachable (%s) and no local queue (set --queue or "
                "$SITESRV_CLIENT_QUEUE): message not sent", box, strerror(-box_err));
        goto out;
    }
    char tmp[SS_PATH_MAX];
    struct inbox q;
    if ((r = ss_mkdir_p(qpath, 0700)) < 0 ||
        (r = ss_path(tmp, sizeof tmp, "%s/.tmp", qpath)) < 0 ||
        (r = ss_mkdir_p(tmp, 0700)) < 0 ||
        (r = inbox_open_path(&q, qpath, IB_CAP, prefix, 0)) < 0) {
        ctl_err("drop box %s unreachable (%s), and the local queue %s cannot be "
                "opened (%s): message not sent", box, strerror(-box_err), qpath, strerror(-r));
        goto out;
    }
    r = inbox_drop(&q, ".svf", b.data, b.len, name, sizeof name);
    inbox_close(&q);
    if (r < 0) {
        ctl_err("drop box %s unreachable (%s), and writing to the local queue %s "
                "failed (%s): message not sent", box, strerror(-box_err), qpath, strerror(-r));
        goto out;
    }
    fprintf(stderr, "queued locally in %s/%s (drop box unreachable: %s)\n", qpath, name,
            strerror(-box_err));
    rc = CTL_OK;
out:
    ss_sbuf_free(&b);
    free(m);
    return rc;
}
