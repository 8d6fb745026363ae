/*
 * conf.h - site.conf: the key table (every key, its type, default and
 * meaning: SPEC 9 plus our own), typed values with units, loading with
 * clear errors (file and line), and editing for `sitectl config set`.
 *
 * The shipped example config/site.conf lists every key of the table with
 * its default; a unit test keeps the two in step.
 */
#ifndef SITESRV_CONF_H
#define SITESRV_CONF_H

#include "common.h"

struct ss_conf {
    char     root[SS_PATH_MAX];            /* the site root (not a key) */
    /* [site] */
    char     site_code[SS_SITE_LEN + 1];
    char     site_parent[SS_SITE_LEN + 1]; /* "" when none */
    char     site_machine[64];             /* the name status messages carry
                                            * (sm_set_identity2); default:
                                            * the short host name */
    /* [distmgr] */
    int64_t  distmgr_retry_delay;          /* ms */
    int64_t  distmgr_retry_max_delay;
    long long distmgr_max_retries;
    long long distmgr_threads;
    /* [sender] */
    long long sender_max_sendings;
    long long sender_max_per_site;
    int64_t  sender_retry_delay;
    int64_t  sender_retry_max_delay;
    int64_t  sender_job_lifetime;
    /* [despool] */
    long long despool_threads;
    /* [statmgr] */
    int64_t  statmgr_future_skew;
    int64_t  statmgr_rescan;               /* periodic inbox rescan */
    long long statmgr_batch;               /* status message files read from
                                            * each inbox in one pass; a pass
                                            * is one transaction */
    char     statmgr_replicate[256];       /* components whose messages go to
                                            * the parent site, one space
                                            * between names; "" none */
    /* [backup] */
    char     backup_destination[SS_PATH_MAX];
    long long backup_keep;
    int      backup_daily_at;              /* minutes after midnight, -1 none */
    /* [log] */
    uint64_t log_max_size;                 /* bytes */
    /* [daemon] */
    int64_t  daemon_stop_timeout;          /* SIGTERM to exit, ms */
};

/* CONF_STR: a name, [A-Za-z0-9._-]*; CONF_LIST: names like CONF_STR
 * separated by blanks, stored with one space between them; CONF_SITE: a site code or "" when not
 * required; CONF_DURATION: int64_t ms; CONF_SIZE: uint64_t bytes; CONF_INT:
 * long long; CONF_TIME_OF_DAY: int minutes after midnight, -1 for "";
 * CONF_PATH: an absolute path. */
enum conf_type { CONF_STR, CONF_SITE, CONF_DURATION, CONF_SIZE, CONF_INT, CONF_TIME_OF_DAY, CONF_PATH,
                 CONF_LIST };

/* Is word one of the names of a CONF_LIST value (one space between
 * them)?  1 or 0. */
int conf_list_has(const char *list, const char *word);

/* conf_key.flags */
#define CONF_REQUIRED 1   /* no default: conf_load fails when it is missing */
#define CONF_COMPUTED 2   /* def "" (or an empty value) means computed at load */

struct conf_key {
    const char    *section;
    const char    *key;
    enum conf_type type;
    size_t         offset;     /* into struct ss_conf */
    size_t         size;       /* for strings */
    long long      min, max;   /* CONF_INT; also CONF_DURATION (ms) and
                                * CONF_SIZE (bytes) when max > 0 */
    const char    *def;        /* default as written in site.conf; "" none */
    const char    *doc;        /* one line */
    unsigned       flags;      /* CONF_REQUIRED, CONF_COMPUTED */
};
extern const struct conf_key conf_keys[];
extern const size_t conf_nkeys;

/* The key named "section.key", or NULL. */
const struct conf_key *conf_find(const char *dotted);

/* Every key at its default.  root is the site root. */
void conf_defaults(struct ss_conf *c, const char *root);

/* Defaults, then <root>/site.conf.  Unknown keys are logged as warnings
 * (and counted in *nwarn if not NULL); a bad value or a malformed line is
 * an error "site.conf:LINE: ..." (-EINVAL), so is a key given twice, a
 * missing site.code, or a retry_max_delay below its retry_delay; a file
 * that cannot be read is -errno (-ENOENT: "sitectl init writes it").  On
 * any error the previous *c is untouched, so a daemon keeps running on its
 * old configuration. */
int conf_load(struct ss_conf *c, const char *root, int *nwarn, char *err, size_t errlen);

/* conf_load on text already read: buf[0..len) as the content of site.conf,
 * errors and warnings placed as "NAME:LINE: ..." (name NULL: "site.conf").
 * Every rule of conf_load applies, cross-key rules included: conf_load is
 * this function after reading the file. */
int conf_load_buf(struct ss_conf *c, const char *root, const char *name, const char *buf,
                  size_t len, int *nwarn, char *err, size_t errlen);

/* Check value against the key's type.  -ENOENT unknown key, -EINVAL bad. */
int conf_check(const char *dotted, const char *value, char *err, size_t errlen);

/* Set section.key = value in the file at path, keeping every other line
 * and comment; replaces the key's line in its section, or adds it to the
 * section (created at the end if missing).  Atomic replace of the file,
 * keeping its mode.  The value is checked first (conf_check: -ENOENT
 * unknown key, -EINVAL bad value); the file must exist and parse, and a
 * key given twice is refused (-EINVAL) rather than guessed at.  Then the
 * whole new text is loaded by conf_load_buf, and if a daemon could not
 * load it (retry_max_delay below retry_delay, site.code missing, ...) the
 * call fails with -EINVAL, err naming the rule and the line, and the file
 * is left as it was.  Unknown keys of the file are logged as conf_load
 * logs them. */
int conf_set_file(const char *path, const char *dotted, const char *value,
                  char *err, size_t errlen);

/* The current value of a key as text (for `sitectl config get`/show). */
int conf_value_str(const struct ss_conf *c, const struct conf_key *k, char *buf, size_t len);

#endif
