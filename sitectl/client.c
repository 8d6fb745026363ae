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
 *   stale, full...), the message is kept in a local client queue, which
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
 * DIAGNOSTICS
 *   "queued locally in PATH (drop box unreachable: reason)" on stderr and
 *   exit 0: the message is safe.  Exit 1 only if the message could be
 *   neither delivered nor queued; 2 for a usage error.
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

/* Deliver one claimed file (in work/).  0 delivered (or quarantined: not
 * the box's fault), or the negative errno of the drop into the box. */
static int deliver_claimed(struct inbox *q, struct inbox *cap, const char *name)
{
    char *buf = NULL, err[SS_ERR_MAX] = "";
    size_t len = 0;
    int r = ss_read_file(q->workfd, name, SM_FILE_MAX, &buf, &len);
    if (r == -EFBIG || r == -EINVAL || r == -EISDIR) {
        inbox_quarantine(q, 1, name, r == -EFBIG ? "larger than a status message may be"
                                                  : "not a regular file");
        return 0;
    }
    if (r < 0) {
        ctl_err("warning: cannot read %s/work/%s: %s", q->path, name, strerror(-r));
        inbox_return(q, name);
        return 0;
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
        return 0;
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
    return 0;
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

    size_t sent = 0;
    struct inbox_entry ents[64];
    for (;;) {
        size_t n = 0, progress = 0;
        if ((r = inbox_scan(&q, ents, SS_ARRAY_LEN(ents), &n)) < 0) {
            ctl_err("warning: cannot list the local queue %s: %s", qpath, strerror(-r));
            break;
        }
        for (size_t i = 0; i < n && !*box_err; i++) {
            if (ents[i].odd) {
                if (inbox_quarantine(&q, 0, ents[i].name, "not a status message file name") == 0)
                    progress++;
                continue;
            }
            r = inbox_claim(&q, ents[i].name);
            if (r == -ENOENT)          /* another client is delivering it */
                continue;
            if (r < 0) {
                ctl_err("warning: cannot claim %s/%s: %s", qpath, ents[i].name, strerror(-r));
                continue;
            }
            r = deliver_claimed(&q, cap, ents[i].name);
            if (r < 0) {
                *box_err = r;
                break;
            }
            progress++;
            sent++;
        }
        /* A full batch may mean more; stop when a pass changed nothing. */
        if (*box_err || n < SS_ARRAY_LEN(ents) || !progress)
            break;
    }
    inbox_close(&q);
    return sent;
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
            istr[nistr++] = v;
        } else if (ctl_opt(c, argc, argv, &i, "--attr", &v)) {
            if (nattr >= SM_MAX_ATTR)
                ctl_usage_error(c, "at most %d --attr", SM_MAX_ATTR);
            if (!strchr(v, '=') || v[0] == '=')
                ctl_usage_error(c, "bad --attr '%s' (NAME=VALUE)", v);
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
    if (!*component || strlen(component) >= SM_COMPONENT)
        ctl_usage_error(c, "bad --component '%s' (1 to %d characters)", component,
                        SM_COMPONENT - 1);
    if (machine && (!*machine || strlen(machine) >= SM_MACHINE))
        ctl_usage_error(c, "bad --machine '%s' (1 to %d characters)", machine, SM_MACHINE - 1);
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
        snprintf(m->machine, sizeof m->machine, "%s", machine);
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
        if ((size_t)(eq - attr[i]) >= sizeof name) {
            ctl_err("attribute name too long in '%s'", attr[i]);
            goto out;
        }
        snprintf(name, sizeof name, "%.*s", (int)(eq - attr[i]), attr[i]);
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
