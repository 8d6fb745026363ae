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

#include <sqlite3.h>

#include "common.h"
#include "pkgreq.h"
#include "sendreq.h"
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

/* Print a JSON document built in b to stdout: CTL_OK, or CTL_FAIL with
 * "sitectl: out of memory" when b could not grow (nothing printed). */
int ctl_print_sbuf(const struct sbuf *b);
/* Close a JSON array opened with "[" whose n elements each began with
 * ",\n  " (the first "\n  "), then ctl_print_sbuf() it. */
int ctl_json_array_end(struct sbuf *b, int n);

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

/* ---- the site database, for dp, site, package and retry (sites.c) ---- */

/* An initialised site opened for one command. */
struct ctl_site {
    const char *root;
    char        code[SS_SITE_LEN + 1];     /* site.code */
    char        parent[SS_SITE_LEN + 1];   /* site.parent, "" when none */
    char        dbpath[SS_PATH_MAX];
    sqlite3    *db;   /* NULL when opened for reading and there is no
                       * database, or no package tables, yet: empty lists */
};
#define CTL_SITE_WRITE 0x1    /* read-write (migrated), else SITEDB_RDONLY */

/* Load site.conf (ctl_load_conf) and open the database.  CTL_OK, or
 * CTL_FAIL with the error printed. */
int  ctl_site_open(struct ctl *c, struct ctl_site *s, int flags);
void ctl_site_close(struct ctl_site *s);
/* "sitectl: WHAT: <SQLite's error> (DBPATH)"; rolls back an open
 * transaction; returns CTL_FAIL. */
int  ctl_db_fail(const struct ctl_site *s, const char *what);
/* Drop a package request for distmgr.  CTL_OK, or CTL_FAIL with
 * "sitectl: DONE, but distmgr was not told: ..." printed, DONE saying
 * what the database already holds. */
int  ctl_tell_distmgr(const struct ctl_site *s, enum pkgreq_action a,
                      const char *package, const char *done);

/* Run one SQL statement, binding its parameters ?1, ?2... from the
 * arguments by types: 's' const char * (NULL binds NULL), 'i' int64_t.
 * ctl_sql: *changes (may be NULL) gets sqlite3_changes.  ctl_sql_int:
 * the first column of the first row into *out, -ENOENT when no row.
 * 0 or -EIO (SQLite's error stays on the connection for ctl_db_fail). */
int ctl_sql(sqlite3 *db, int *changes, const char *sql, const char *types, ...);
int ctl_sql_int(sqlite3 *db, long long *out, const char *sql, const char *types, ...);

const char *ctl_col_text(sqlite3_stmt *st, int i);
/* An ISO 8601 UTC time as a JSON string, or null when ms <= 0. */
void ctl_json_time(struct sbuf *b, int64_t ms);
/* s as a JSON string, or null when s is NULL or "". */
void ctl_json_str_or_null(struct sbuf *b, const char *s);

/* One row of a listing: its JSON object appended to b (json), else its
 * table line printed. */
typedef void ctl_row_fn(sqlite3_stmt *st, int json, struct sbuf *b);
/* A listing of the site database (dp, site and package list): opens the
 * site for reading, prints the table header (printf of header and the
 * arguments after it) or starts a JSON array, calls row for every row of
 * sql, and prints the array when every row was read.  A site without a
 * database lists nothing.  CTL_OK, or CTL_FAIL with "sitectl: WHAT: ..."
 * printed (ctl_db_fail). */
int ctl_site_listing(struct ctl *c, int json, const char *sql, const char *what,
                     ctl_row_fn *row, const char *header, ...) SS_PRINTF(6, 7);
/* A DP name: [A-Za-z0-9_.-]{1,32}. */
int  ctl_dp_name_ok(const char *s);
/* Can a DP root be written now: an existing directory we may write and
 * search?  0, or -errno with why[] saying it in words. */
int  ctl_dp_reachable(const char *path, char *why, size_t len);
/* "42s", "17m", "5h", "3d" (rounded down). */
void ctl_fmt_span(int64_t s, char *buf, size_t len);
/* "4.5MB", "812B": a size for people, one decimal past KB. */
void ctl_fmt_bytes(int64_t n, char *buf, size_t len);

/* Retry targets of scope "dp" under prefix (NULL: all) whose DP - the
 * last '/' segment - is dp.  *out is malloc'ed, n entries of
 * CTL_TARGET_LEN bytes; free() it.  0 or -EIO/-ENOMEM. */
#define CTL_TARGET_LEN 256
int ctl_dp_retry_targets(sqlite3 *db, const char *prefix, const char *dp,
                         char (**out)[CTL_TARGET_LEN], int *n);

/* The arguments of dp, site, package and retry: a subcommand word and
 * positional arguments, and the options below.  ctl_args_parse stores
 * every option it knows (a usage error for any other, "--" ends them);
 * ctl_args_only then refuses, as a usage error, an option the
 * subcommand does not take (allowed: a mask of CTL_A_*), and a count of
 * positional arguments (after the subcommand) outside [min, max]. */
enum {
    CTL_A_JSON = 0x01, CTL_A_NAME = 0x02, CTL_A_SOURCE = 0x04, CTL_A_DP = 0x08,
    CTL_A_ADDRESS = 0x10, CTL_A_KEY = 0x20, CTL_A_TIMEOUT = 0x40, CTL_A_PRIORITY = 0x80,
};
struct ctl_args {
    const char  *sub;            /* the subcommand, NULL when none */
    const char  *pos[4];         /* positional arguments after it */
    int          npos;
    unsigned     given;          /* CTL_A_* seen */
    int          json;
    const char  *name, *source, *address, *key, *timeout, *priority;
    const char **dps;            /* every --dp, in order (argc entries) */
    int          ndps;
};
void ctl_args_parse(struct ctl *c, int argc, char **argv, struct ctl_args *a);
void ctl_args_only(struct ctl *c, const struct ctl_args *a, unsigned allowed,
                   int min, int max);
void ctl_args_free(struct ctl_args *a);

/* A subcommand of dp, site, package or retry: the options it takes (a
 * mask of CTL_A_*), how many positional arguments, and what runs it. */
struct ctl_sub {
    const char *name;
    unsigned    allowed;
    int         min, max;
    int       (*run)(struct ctl *c, const struct ctl_args *a);
};
/* Parse argv (ctl_args_parse), find the subcommand in subs, check its
 * arguments (ctl_args_only) and run it.  No subcommand or an unknown one
 * is a usage error ("CMD needs A, B or C", "unknown CMD subcommand 'X'").
 * Returns what the subcommand returns. */
int ctl_subcommand(struct ctl *c, int argc, char **argv, const struct ctl_sub *subs,
                   size_t nsubs);

/* ---- what waits in schedule.box (send.c) ---- */

enum ctl_send_kind {
    CTL_SEND_REQUEST = 0,    /* requests/R.srq: scheduled, q as the sender keeps it */
    CTL_SEND_JOB,            /* R.job in schedule.box or work/: not yet scheduled */
    CTL_SEND_UNREADABLE,     /* either, unreadable: error says why */
};
struct ctl_send_item {
    enum ctl_send_kind kind;
    char    name[SS_NAME_MAX + 1];   /* the file's name */
    char    base[SS_NAME_MAX + 1];   /* R: the name without .srq or .job */
    char    file[SS_PATH_MAX];       /* root-relative path */
    /* A job fills type, dest, hop (= dest: send list routes it),
     * priority, package, version, size (its files now) and created_ms. */
    struct sendreq q;
    char    error[SS_ERR_MAX];
};
/* Every send request (schedule.box/requests/ and its work/) and every job
 * not yet scheduled (schedule.box/ and work/; one whose request exists
 * is left out), unsorted.  *out is malloc'ed; free() it.  A file gone
 * meanwhile is left out; one that does not parse is an item of kind
 * CTL_SEND_UNREADABLE.  0, or -errno with err set when a directory
 * cannot be listed (a missing one holds nothing). */
int ctl_send_scan(const char *root, struct ctl_send_item **out, int *n, char *err,
                  size_t errlen);
/* "queued" (a job), "unreadable", "waiting" (next try after now_ms) or
 * "pending". */
const char *ctl_send_state(const struct ctl_send_item *it, int64_t now_ms);

/* Commands: argv[0] is the first argument after the command word. */
int cmd_init(struct ctl *c, int argc, char **argv);
int cmd_config(struct ctl *c, int argc, char **argv);
int cmd_inbox(struct ctl *c, int argc, char **argv);
int cmd_start(struct ctl *c, int argc, char **argv);
int cmd_stop(struct ctl *c, int argc, char **argv);
int cmd_status(struct ctl *c, int argc, char **argv);
int cmd_messages(struct ctl *c, int argc, char **argv);
int cmd_client(struct ctl *c, int argc, char **argv);
int cmd_dp(struct ctl *c, int argc, char **argv);        /* sites.c */
int cmd_site(struct ctl *c, int argc, char **argv);      /* sites.c */
int cmd_package(struct ctl *c, int argc, char **argv);   /* package.c */
int cmd_retry(struct ctl *c, int argc, char **argv);     /* package.c */
int cmd_send(struct ctl *c, int argc, char **argv);      /* send.c */
int cmd_backup(struct ctl *c, int argc, char **argv);    /* backup.c */
int cmd_restore(struct ctl *c, int argc, char **argv);   /* backup.c */

#endif
