/*
 * sitectl.h - what the parts of sitectl share: the context of one
 * invocation, option parsing helpers, the daemon table, and the command
 * entry points (one source file per subsystem).
 *
 * Exit codes (SPEC 7): CTL_OK 0, CTL_FAIL 1, CTL_USAGE 2.  Helpers that
 * detect a usage error print it and exit(2) at once: sitectl is a
 * short-lived command, and a usage error must never half-run a command.
 */
#ifndef SITECTL_H
#define SITECTL_H

#include "common.h"
#include "util.h"

enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2 };

/* The installed site root (SPEC 8; tools/install.sh builds it). */
#define CTL_DEFAULT_ROOT "/var/lib/sitesrv"

struct ctl {
    const char *root_opt;            /* --root, wherever it was given */
    char        root[SS_PATH_MAX];   /* resolved by ctl_root() */
    const char *cmd;                 /* the command word, for messages */
};

/* Errors go to stderr as "sitectl: ..." */
void ctl_err(const char *fmt, ...) SS_PRINTF(1, 2);
/* Print "sitectl: MSG" and the command's usage line, exit 2. */
void ctl_usage_error(const struct ctl *c, const char *fmt, ...) SS_PRINTF(2, 3)
    __attribute__((noreturn));

/* Option helpers for a loop over argv[*i]:
 *   ctl_opt(c, argc, argv, &i, "--site", &val)  -> 1 and val set when
 *   argv[i] is "--site VAL" or "--site=VAL" (i advanced past VAL); a
 *   missing VAL is a usage error.
 *   ctl_flag(argv[i], "--json") -> 1 when it is that flag.
 *   ctl_common(c, argc, argv, &i) -> 1 when argv[i] was --root (stored)
 *   or --help (usage printed, exit 0); 0 otherwise.
 * Anything else starting with '-' is for the caller to refuse with
 * ctl_usage_error(). */
int ctl_opt(const struct ctl *c, int argc, char **argv, int *i,
            const char *name, const char **val);
int ctl_flag(const char *arg, const char *name);
int ctl_common(struct ctl *c, int argc, char **argv, int *i);
/* Arguments of a listing that takes only the common options and --json:
 * returns 1 for --json; anything else is a usage error. */
int ctl_listing_args(struct ctl *c, int argc, char **argv);

/* Resolve the site root: --root, $SITESRV_ROOT, CTL_DEFAULT_ROOT; made
 * absolute (daemons are given it and the user reads it back).  Returns
 * c->root. */
const char *ctl_root(struct ctl *c);

/* The library's log lines (a database migrated, a file quarantined...)
 * go to <root>/logs/sitectl.log when that directory is writable, so that
 * they do not clutter the command's output; warnings and errors are also
 * copied to stderr.  Called by ctl_root() and by init once logs/ exists. */
void ctl_open_log(const char *root);

/* Make a directory of a site root unless it exists; a dangling symlink
 * (an installed root's run -> /run/sitesrv after a reboot) is created
 * through.  0 or -errno. */
int ctl_make_dir(const char *path, mode_t mode);

/* The usage line of a command ("init --site CODE ..."), or NULL. */
const char *ctl_cmd_usage(const char *cmd);

/* The daemons a site runs, in start order. */
extern const char *const ctl_daemons[];
extern const size_t ctl_ndaemons;
int ctl_daemon_known(const char *name);
/* Path of a daemon's binary: $SITESRV_LIBEXEC/<name>, else
 * <dir of /proc/self/exe>/../libexec/sitesrv/<name>. */
int ctl_daemon_bin(const char *name, char *buf, size_t len);
int ctl_daemon_installed(const char *name);
/* Pid of the running daemon (its pid lock), 0 if none. */
pid_t ctl_daemon_pid(const char *root, const char *name);

/* Inbox listing, shared by `inbox` and `status`: appends a JSON array to
 * out (json) or prints the table to stdout.  Per inbox: files waiting,
 * age of the oldest, files claimed in work/, files left in .tmp/, files
 * quarantined in corrupt/.  0, or -ENOENT when some inbox (or its work/
 * or .tmp/) could not be read. */
int ctl_inbox_report(const char *root, int json, struct sbuf *out);

struct ss_conf;
/* Load <root>/site.conf into *cf by the rules the daemons use (conf_load).
 * A root is initialised exactly when this succeeds.  On failure it prints
 * "sitectl: ROOT is not a site root: ERR" (site.conf missing) or
 * "sitectl: the configuration of ROOT does not load: ERR" (anything else),
 * ERR being conf_load's sentence (also copied to err unless NULL), and
 * returns conf_load's -errno. */
int ctl_load_conf(const char *root, struct ss_conf *cf, char *err, size_t errlen);

/* Parse a JSON array of strings (messages.c): up to max strings of len
 * bytes each into out[i * len], cut to fit; *count is how many the array
 * held.  Strict: 0 or -EBADMSG. */
int ctl_json_str_array(const char *text, char *out, size_t len, int max, int *count);

/* Commands: argv[0] is the first argument after the command word. */
int cmd_init(struct ctl *c, int argc, char **argv);
int cmd_config(struct ctl *c, int argc, char **argv);
int cmd_inbox(struct ctl *c, int argc, char **argv);
int cmd_start(struct ctl *c, int argc, char **argv);
int cmd_stop(struct ctl *c, int argc, char **argv);
int cmd_status(struct ctl *c, int argc, char **argv);
int cmd_messages(struct ctl *c, int argc, char **argv);
int cmd_client(struct ctl *c, int argc, char **argv);

#endif
