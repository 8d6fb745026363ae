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
    char     site_machine[64];             /* default: hostname */
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
    long long statmgr_batch;               /* messages per transaction */
    /* [backup] */
    char     backup_destination[SS_PATH_MAX];
    long long backup_keep;
    int      backup_daily_at;              /* minutes after midnight, -1 none */
    /* [log] */
    uint64_t log_max_size;                 /* bytes */
    /* [daemon] */
    int64_t  daemon_stop_timeout;          /* SIGTERM to exit, ms */
};

enum conf_type { CONF_STR, CONF_SITE, CONF_DURATION, CONF_SIZE, CONF_INT, CONF_TIME_OF_DAY, CONF_PATH };

struct conf_key {
    const char    *section;
    const char    *key;
    enum conf_type type;
    size_t         offset;     /* into struct ss_conf */
    size_t         size;       /* for strings */
    long long      min, max;   /* for CONF_INT */
    const char    *def;        /* default as written in site.conf; "" none */
    const char    *doc;        /* one line */
};
extern const struct conf_key conf_keys[];
extern const size_t conf_nkeys;

/* The key named "section.key", or NULL. */
const struct conf_key *conf_find(const char *dotted);

/* Every key at its default.  root is the site root. */
void conf_defaults(struct ss_conf *c, const char *root);

/* Defaults, then <root>/site.conf.  Unknown keys are logged as warnings
 * (and counted in *nwarn if not NULL); a bad value or a malformed line is
 * an error "site.conf:LINE: ..." (-EINVAL); the previous *c is then
 * untouched, so a daemon keeps running on its old configuration. */
int conf_load(struct ss_conf *c, const char *root, int *nwarn, char *err, size_t errlen);

/* Check value against the key's type.  -ENOENT unknown key, -EINVAL bad. */
int conf_check(const char *dotted, const char *value, char *err, size_t errlen);

/* Set section.key = value in the file at path, keeping every other line
 * and comment; replaces the key's line in its section, or adds it to the
 * section (created at the end if missing).  Atomic replace of the file. */
int conf_set_file(const char *path, const char *dotted, const char *value,
                  char *err, size_t errlen);

/* The current value of a key as text (for `sitectl config get`/show). */
int conf_value_str(const struct ss_conf *c, const struct conf_key *k, char *buf, size_t len);

#endif
