/*
 * NAME
 *   conf.c - site.conf: the key table, loading, checking and editing.
 *
 * SYNOPSIS
 *   const struct conf_key conf_keys[];  const size_t conf_nkeys;
 *   const struct conf_key *conf_find(const char *dotted);
 *   void conf_defaults(struct ss_conf *c, const char *root);
 *   int  conf_load(struct ss_conf *c, const char *root, int *nwarn,
 *                  char *err, size_t errlen);
 *   int  conf_load_buf(struct ss_conf *c, const char *root, const char *name,
 *                      const char *buf, size_t len, int *nwarn,
 *                      char *err, size_t errlen);
 *   int  conf_check(const char *dotted, const char *value,
 *                   char *err, size_t errlen);
 *   int  conf_set_file(const char *path, const char *dotted,
 *                      const char *value, char *err, size_t errlen);
 *   int  conf_value_str(const struct ss_conf *c, const struct conf_key *k,
 *                       char *buf, size_t len);
 *   int  conf_list_has(const char *list, const char *word);
 *
 * DESCRIPTION
 *   One table, conf_keys[], names every key with its type, default and
 *   meaning; defaults, loading, checking, formatting and the shipped
 *   example (config/site.conf, kept in step by a unit test) all follow
 *   from it, so a key cannot be documented in one place and forgotten in
 *   another.  The defaults are applied by parsing the table's own text,
 *   so the default written in the example is the default in effect.
 *
 *   conf_load parses into a copy and only replaces the caller's
 *   configuration when the whole file is good: a daemon reloading on
 *   SIGHUP keeps its old configuration when an edit is wrong.  An unknown
 *   key is only a warning (a newer file on an older daemon must not stop
 *   the site), but a key given twice is an error, since silently taking
 *   one of them is how an edit gets lost.
 *
 *   conf_set_file edits the file as text and leaves every other byte as
 *   it was, comments and layout included, then replaces the file
 *   atomically: an operator's notes in site.conf survive `sitectl config
 *   set`.  Before it replaces anything it loads the new text with
 *   conf_load_buf, the very code a daemon runs at start and on SIGHUP, so
 *   an edit that no daemon could load (a retry_max_delay below its
 *   retry_delay, say) is refused while the file is still good.
 *
 * DIAGNOSTICS
 *   conf_load logs "PATH:LINE: unknown key X (ignored)" warnings.  Errors
 *   are sentences in err that name the file and line ("PATH:12: bad
 *   duration "3x" for distmgr.retry_delay (...)"), returned as -EINVAL,
 *   or -errno when the file cannot be read or written; conf_check returns
 *   -ENOENT for an unknown key and -EINVAL for a bad value.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "fsutil.h"
#include "ini.h"
#include "log.h"
#include "util.h"

#define FIELD_SIZE(f) sizeof(((struct ss_conf *)0)->f)
#define KEY(sec, name, type, field, min, max, def, flags, doc) \
    { sec, name, type, offsetof(struct ss_conf, field), FIELD_SIZE(field), \
      min, max, def, doc, flags }

#define SEC  1000LL
/* Retry delays may be short (tests, a lab); below this they would spin. */
#define RETRY_MIN 100LL
#define KIB  1024LL

const struct conf_key conf_keys[] = {
    KEY("site", "code", CONF_SITE, site_code, 0, 0, "", CONF_REQUIRED,
        "this site's code, three characters A-Z 0-9 (sitectl init writes it)"),
    KEY("site", "parent", CONF_SITE, site_parent, 0, 0, "", 0,
        "the parent site's code; empty for a central site"),
    KEY("site", "machine", CONF_STR, site_machine, 0, 0, "", CONF_COMPUTED,
        "this server's name in status messages (default: the short host name)"),

    KEY("distmgr", "retry_delay", CONF_DURATION, distmgr_retry_delay, RETRY_MIN, 0, "30m", 0,
        "first delay before retrying a distribution point"),
    KEY("distmgr", "retry_max_delay", CONF_DURATION, distmgr_retry_max_delay, RETRY_MIN, 0, "4h", 0,
        "cap of the growing delay between retries of a distribution point"),
    KEY("distmgr", "max_retries", CONF_INT, distmgr_max_retries, 1, 1000000, "100", 0,
        "attempts before a distribution point is failed for a package version"),
    KEY("distmgr", "threads", CONF_INT, distmgr_threads, 1, 64, "3", 0,
        "packages processed at once"),

    KEY("sender", "max_sendings", CONF_INT, sender_max_sendings, 1, 256, "5", 0,
        "transfers at once, all sites together"),
    KEY("sender", "max_per_site", CONF_INT, sender_max_per_site, 1, 256, "3", 0,
        "transfers at once to one site"),
    KEY("sender", "retry_delay", CONF_DURATION, sender_retry_delay, RETRY_MIN, 0, "1m", 0,
        "first delay before a site whose transfer failed is tried again"),
    KEY("sender", "retry_max_delay", CONF_DURATION, sender_retry_max_delay, RETRY_MIN, 0, "1h", 0,
        "cap of a site's growing retry delay"),
    KEY("sender", "job_lifetime", CONF_DURATION, sender_job_lifetime, SEC, 0, "7d", 0,
        "a job not delivered by then fails, with a status message"),

    KEY("despool", "threads", CONF_INT, despool_threads, 1, 64, "3", 0,
        "instructions processed at once"),

    KEY("statmgr", "future_skew", CONF_DURATION, statmgr_future_skew, 0, 0, "5m", 0,
        "how far ahead a message may be dated before it waits in futureq/"),
    KEY("statmgr", "rescan", CONF_DURATION, statmgr_rescan, SEC, 0, "30s", 0,
        "periodic rescan of the inboxes (watch events are only hints)"),
    KEY("statmgr", "batch", CONF_INT, statmgr_batch, 1, 100000, "1000", 0,
        "status messages read from each inbox in one pass, one database transaction"),
    KEY("statmgr", "replicate", CONF_LIST, statmgr_replicate, 0, 0, "distmgr despool sender", 0,
        "components whose status messages go up to the parent site, space separated; "
        "empty for none"),

    KEY("backup", "destination", CONF_PATH, backup_destination, 0, 0, "", CONF_COMPUTED,
        "where backups are written, an absolute path (default: <root>/backup)"),
    KEY("backup", "keep", CONF_INT, backup_keep, 1, 1000, "7", 0,
        "backups kept; older ones are removed after a new one succeeds"),
    KEY("backup", "daily_at", CONF_TIME_OF_DAY, backup_daily_at, 0, 0, "", 0,
        "HH:MM local time of the scheduled daily backup; empty for none"),

    KEY("log", "max_size", CONF_SIZE, log_max_size, 4 * KIB, 0, "2MB", 0,
        "size at which <name>.log rolls over to <name>.lo_"),

    KEY("daemon", "stop_timeout", CONF_DURATION, daemon_stop_timeout, SEC, 0, "10s", 0,
        "how long a daemon may take to stop after SIGTERM"),
};
const size_t conf_nkeys = SS_ARRAY_LEN(conf_keys);

#define NKEYS SS_ARRAY_LEN(conf_keys)

/* "section.key" for a key of the table (for messages). */
static void dotted_name(const struct conf_key *k, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%s", k->section, k->key);
}

const struct conf_key *conf_find(const char *dotted)
{
    const char *dot;
    size_t sl;

    if (dotted == NULL || (dot = strchr(dotted, '.')) == NULL)
        return NULL;
    sl = (size_t)(dot - dotted);
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(conf_keys[i].section) == sl &&
            memcmp(conf_keys[i].section, dotted, sl) == 0 &&
            strcmp(conf_keys[i].key, dot + 1) == 0)
            return &conf_keys[i];
    return NULL;
}

static int section_known(const char *section)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(conf_keys[i].section, section) == 0)
            return 1;
    return 0;
}

/* "HH:MM", 00:00 to 23:59, into minutes after midnight. */
static int parse_time_of_day(const char *s, int *out)
{
    if (strlen(s) != 5 || s[2] != ':')
        return -EINVAL;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return -EINVAL;
    int h = (s[0] - '0') * 10 + (s[1] - '0');
    int m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 23 || m > 59)
        return -EINVAL;
    *out = h * 60 + m;
    return 0;
}

/* The computed defaults: the short host name (ss_host_short), and
 * <root>/backup. */
static int compute_destination(struct ss_conf *c)
{
    return ss_path(c->backup_destination, sizeof c->backup_destination,
                   "%s/backup", c->root);
}

/*
 * Parses value for key k into c.  On error, err gets "bad TYPE "VALUE" for
 * KEY (why)" and -EINVAL is returned; c may then be partly written, which
 * is why callers parse into a copy.  An empty value of a computed key sets
 * the computed default (root must be set in c).
 */
static int set_value(struct ss_conf *c, const struct conf_key *k, const char *value,
                     char *err, size_t errlen)
{
    char name[128];
    char *field = (char *)c + k->offset;
    size_t vl = strlen(value);

    dotted_name(k, name, sizeof name);
    for (size_t i = 0; i < vl; i++) {
        unsigned char ch = (unsigned char)value[i];
        if (ch < 0x20 || ch == 0x7f) {
            ss_fmt(err, errlen, "bad value for %s (control character 0x%02x)", name, ch);
            return -EINVAL;
        }
    }
    if (vl > 0 && (value[0] == ' ' || value[0] == '\t' ||
                   value[vl - 1] == ' ' || value[vl - 1] == '\t')) {
        /* site.conf trims blanks, so such a value would not read back. */
        ss_fmt(err, errlen, "bad value \"%s\" for %s (leading or trailing blanks)",
               value, name);
        return -EINVAL;
    }
    if (vl == 0 && (k->flags & CONF_COMPUTED)) {
        if (k->offset == offsetof(struct ss_conf, site_machine)) {
            ss_host_short(c->site_machine, sizeof c->site_machine);
            return 0;
        }
        if (k->offset == offsetof(struct ss_conf, backup_destination)) {
            if (compute_destination(c) < 0) {
                ss_fmt(err, errlen, "site root too long for the default %s", name);
                return -EINVAL;
            }
            return 0;
        }
        ss_fmt(err, errlen, "%s has no computed default", name);
        return -EINVAL;
    }

    switch (k->type) {
    case CONF_STR:
        /* Strings are names (site.machine), so one word: a value copied
         * from a comment such as "<short host name>" is refused. */
        for (size_t i = 0; i < vl; i++)
            if (!isalnum((unsigned char)value[i]) && !strchr("._-", value[i])) {
                ss_fmt(err, errlen, "bad name \"%s\" for %s (letters, digits, '.', '_', '-')",
                       value, name);
                return -EINVAL;
            }
        if (vl >= k->size) {
            ss_fmt(err, errlen, "bad value \"%.40s...\" for %s (longer than %zu bytes)",
                   value, name, k->size - 1);
            return -EINVAL;
        }
        memcpy(field, value, vl + 1);
        return 0;

    case CONF_LIST: {
        /* Names as CONF_STR, any blanks between them; kept with one
         * space, so that the value reads back as it is written. */
        char tmp[1024];
        size_t n = 0;
        for (const char *p = value; *p;) {
            if (*p == ' ' || *p == '\t') {
                p++;
                continue;
            }
            if (n > 0 && n < sizeof tmp)
                tmp[n++] = ' ';
            for (; *p && *p != ' ' && *p != '\t'; p++) {
                if (!isalnum((unsigned char)*p) && !strchr("._-", *p)) {
                    ss_fmt(err, errlen, "bad list \"%s\" for %s (names of letters, digits, "
                           "'.', '_', '-', separated by spaces)", value, name);
                    return -EINVAL;
                }
                if (n < sizeof tmp)
                    tmp[n++] = *p;
            }
        }
        if (n >= k->size) {
            ss_fmt(err, errlen, "bad value \"%.40s...\" for %s (longer than %zu bytes)",
                   value, name, k->size - 1);
            return -EINVAL;
        }
        memcpy(field, tmp, n);
        field[n] = '\0';
        return 0;
    }

    case CONF_PATH:
        if (value[0] != '/') {
            ss_fmt(err, errlen, "bad path \"%s\" for %s (must be absolute)", value, name);
            return -EINVAL;
        }
        if (vl >= k->size) {
            ss_fmt(err, errlen, "bad path for %s (longer than %zu bytes)", name, k->size - 1);
            return -EINVAL;
        }
        memcpy(field, value, vl + 1);
        return 0;

    case CONF_SITE:
        if (vl == 0 && !(k->flags & CONF_REQUIRED)) {
            field[0] = '\0';
            return 0;
        }
        if (!ss_site_code_ok(value)) {
            ss_fmt(err, errlen, "bad site code \"%s\" for %s (three characters A-Z, 0-9)",
                   value, name);
            return -EINVAL;
        }
        memcpy(field, value, SS_SITE_LEN + 1);
        return 0;

    case CONF_DURATION: {
        int64_t ms;
        char lo[32], hi[32];
        if (ss_parse_duration_ms(value, &ms) < 0) {
            ss_fmt(err, errlen, "bad duration \"%s\" for %s "
                   "(a number with ms, s, m, h or d, e.g. 30m)", value, name);
            return -EINVAL;
        }
        if (ms < k->min || (k->max > 0 && ms > k->max)) {
            ss_fmt_duration(k->min, lo, sizeof lo);
            ss_fmt_duration(k->max, hi, sizeof hi);
            if (k->max > 0)
                ss_fmt(err, errlen, "bad duration \"%s\" for %s (from %s to %s)",
                       value, name, lo, hi);
            else
                ss_fmt(err, errlen, "bad duration \"%s\" for %s (at least %s)",
                       value, name, lo);
            return -EINVAL;
        }
        *(int64_t *)(void *)field = ms;
        return 0;
    }

    case CONF_SIZE: {
        uint64_t v;
        char lo[32], hi[32];
        if (ss_parse_size(value, &v) < 0) {
            ss_fmt(err, errlen, "bad size \"%s\" for %s (a number with KB, MB or GB, e.g. 2MB)",
                   value, name);
            return -EINVAL;
        }
        if (v < (uint64_t)k->min || (k->max > 0 && v > (uint64_t)k->max)) {
            ss_fmt_size((uint64_t)k->min, lo, sizeof lo);
            ss_fmt_size((uint64_t)k->max, hi, sizeof hi);
            if (k->max > 0)
                ss_fmt(err, errlen, "bad size \"%s\" for %s (from %s to %s)",
                       value, name, lo, hi);
            else
                ss_fmt(err, errlen, "bad size \"%s\" for %s (at least %s)", value, name, lo);
            return -EINVAL;
        }
        *(uint64_t *)(void *)field = v;
        return 0;
    }

    case CONF_INT: {
        long long v;
        if (ss_parse_int(value, k->min, k->max, &v) < 0) {
            ss_fmt(err, errlen, "bad integer \"%s\" for %s (a whole number from %lld to %lld)",
                   value, name, k->min, k->max);
            return -EINVAL;
        }
        *(long long *)(void *)field = v;
        return 0;
    }

    case CONF_TIME_OF_DAY: {
        int m = -1;
        if (vl > 0 && parse_time_of_day(value, &m) < 0) {
            ss_fmt(err, errlen, "bad time of day \"%s\" for %s (HH:MM from 00:00 to 23:59, "
                   "or empty for none)", value, name);
            return -EINVAL;
        }
        *(int *)(void *)field = m;
        return 0;
    }
    }
    ss_fmt(err, errlen, "%s has an unknown type", name);
    return -EINVAL;
}

void conf_defaults(struct ss_conf *c, const char *root)
{
    char err[SS_ERR_MAX];

    memset(c, 0, sizeof *c);
    /* A root too long to be stored cannot be used either; conf_load
     * refuses it, and here it is only cut. */
    snprintf(c->root, sizeof c->root, "%s", root != NULL ? root : "");
    for (size_t i = 0; i < NKEYS; i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->flags & CONF_REQUIRED)
            continue;               /* stays "" until the file sets it */
        if (set_value(c, k, k->def, err, sizeof err) < 0)
            log_error("conf: bad default in the key table: %s", err);
    }
}

struct load_ctx {
    struct ss_conf *c;
    const char     *path;
    int             lines[NKEYS];   /* where each key was set, 0 not yet */
    int             nwarn;
};

static int load_cb(void *arg, int lineno, const char *section, const char *key,
                   const char *value, char *err, size_t errlen)
{
    struct load_ctx *ctx = arg;
    char dotted[2 * INI_LINE_MAX + 2];
    const struct conf_key *k;

    if (key == NULL) {
        if (!section_known(section)) {
            log_warn("%s:%d: unknown section [%s] (ignored)", ctx->path, lineno, section);
            ctx->nwarn++;
        }
        return 0;
    }
    snprintf(dotted, sizeof dotted, "%s.%s", section, key);
    k = conf_find(dotted);
    if (k == NULL) {
        log_warn("%s:%d: unknown key %s (ignored)", ctx->path, lineno, dotted);
        ctx->nwarn++;
        return 0;
    }
    if (value == NULL) {
        ss_fmt(err, errlen, "%s without a value (write \"%s = VALUE\")", dotted, key);
        return -EINVAL;
    }
    size_t i = (size_t)(k - conf_keys);
    if (ctx->lines[i] != 0) {
        ss_fmt(err, errlen, "%s set twice (first at line %d)", dotted, ctx->lines[i]);
        return -EINVAL;
    }
    ctx->lines[i] = lineno;
    return set_value(ctx->c, k, value, err, errlen);
}

/* A delay that grows up to a cap below its start makes no sense. */
static int check_pair(const struct load_ctx *ctx, const char *first, const char *cap,
                      char *err, size_t errlen)
{
    const struct conf_key *kf = conf_find(first), *kc = conf_find(cap);
    int64_t vf = *(const int64_t *)(const void *)((const char *)ctx->c + kf->offset);
    int64_t vc = *(const int64_t *)(const void *)((const char *)ctx->c + kc->offset);
    char a[32], b[32];

    if (vc >= vf)
        return 0;
    int lf = ctx->lines[kf - conf_keys], lc = ctx->lines[kc - conf_keys];
    ss_fmt_duration(vc, a, sizeof a);
    ss_fmt_duration(vf, b, sizeof b);
    ss_fmt(err, errlen, "%s:%d: %s %s is shorter than %s %s", ctx->path,
           lc > lf ? lc : lf, cap, a, first, b);
    return -EINVAL;
}

int conf_load_buf(struct ss_conf *c, const char *root, const char *name, const char *buf,
                  size_t len, int *nwarn, char *err, size_t errlen)
{
    struct load_ctx ctx;
    struct ss_conf *tmp;
    int r;

    if (nwarn != NULL)
        *nwarn = 0;
    if (name == NULL)
        name = "site.conf";
    if (strlen(root) >= sizeof tmp->root) {
        ss_fmt(err, errlen, "site root too long: %.60s...", root);
        return -ENAMETOOLONG;
    }
    /* struct ss_conf holds two paths: keep it off the stack of threads. */
    tmp = malloc(sizeof *tmp);
    if (tmp == NULL) {
        ss_fmt(err, errlen, "%s: %s", name, strerror(ENOMEM));
        return -ENOMEM;
    }
    conf_defaults(tmp, root);
    memset(&ctx, 0, sizeof ctx);
    ctx.c = tmp;
    ctx.path = name;

    r = ini_parse_named(buf, len, name, load_cb, &ctx, err, errlen);
    if (nwarn != NULL)
        *nwarn = ctx.nwarn;
    if (r == -EBADMSG)
        r = -EINVAL;
    if (r < 0)
        goto out;

    const struct conf_key *kcode = conf_find("site.code");
    if (ctx.lines[kcode - conf_keys] == 0) {
        ss_fmt(err, errlen, "%s: site.code is missing (sitectl init writes it)", name);
        r = -EINVAL;
        goto out;
    }
    /* sitectl init refuses it too: a site cannot report to itself. */
    if (strcmp(tmp->site_parent, tmp->site_code) == 0) {
        const struct conf_key *kp = conf_find("site.parent");
        ss_fmt(err, errlen, "%s:%d: site.parent %s is this site's own code", name,
               ctx.lines[kp - conf_keys], tmp->site_parent);
        r = -EINVAL;
        goto out;
    }
    if ((r = check_pair(&ctx, "distmgr.retry_delay", "distmgr.retry_max_delay", err, errlen)) < 0 ||
        (r = check_pair(&ctx, "sender.retry_delay", "sender.retry_max_delay", err, errlen)) < 0)
        goto out;
    *c = *tmp;
out:
    free(tmp);
    return r;
}

int conf_load(struct ss_conf *c, const char *root, int *nwarn, char *err, size_t errlen)
{
    char path[SS_PATH_MAX], *buf = NULL;
    size_t len = 0;
    int r;

    if (nwarn != NULL)
        *nwarn = 0;
    if (ss_path(path, sizeof path, "%s/site.conf", root) < 0) {
        ss_fmt(err, errlen, "site root too long: %.60s...", root);
        return -ENAMETOOLONG;
    }
    r = ini_read_file(path, &buf, &len, err, errlen);
    if (r == -ENOENT)
        ss_fmt(err, errlen, "%s: no such file (sitectl init writes it)", path);
    if (r < 0)
        return r;
    r = conf_load_buf(c, root, path, buf, len, nwarn, err, errlen);
    free(buf);
    return r;
}

int conf_check(const char *dotted, const char *value, char *err, size_t errlen)
{
    const struct conf_key *k = conf_find(dotted);
    struct ss_conf *tmp;
    int r;

    if (k == NULL) {
        ss_fmt(err, errlen, "unknown key %s", dotted != NULL ? dotted : "(null)");
        return -ENOENT;
    }
    if (value == NULL) {
        ss_fmt(err, errlen, "%s needs a value", dotted);
        return -EINVAL;
    }
    tmp = calloc(1, sizeof *tmp);
    if (tmp == NULL) {
        ss_fmt(err, errlen, "%s", strerror(ENOMEM));
        return -ENOMEM;
    }
    /* A computed default needs a root; any absolute one will do here. */
    snprintf(tmp->root, sizeof tmp->root, "/");
    r = set_value(tmp, k, value, err, errlen);
    free(tmp);
    return r;
}

int conf_value_str(const struct ss_conf *c, const struct conf_key *k, char *buf, size_t len)
{
    const char *field = (const char *)c + k->offset;
    char tmp[64];

    switch (k->type) {
    case CONF_STR:
    case CONF_LIST:
    case CONF_SITE:
    case CONF_PATH:
        return ss_strcpy(buf, len, field);
    case CONF_DURATION:
        ss_fmt_duration(*(const int64_t *)(const void *)field, tmp, sizeof tmp);
        return ss_strcpy(buf, len, tmp);
    case CONF_SIZE:
        ss_fmt_size(*(const uint64_t *)(const void *)field, tmp, sizeof tmp);
        return ss_strcpy(buf, len, tmp);
    case CONF_INT:
        return ss_fmt(buf, len, "%lld", *(const long long *)(const void *)field);
    case CONF_TIME_OF_DAY: {
        int m = *(const int *)(const void *)field;
        if (m < 0)
            return ss_strcpy(buf, len, "");
        return ss_fmt(buf, len, "%02d:%02d", m / 60, m % 60);
    }
    }
    return -EINVAL;
}

/* ---- editing --------------------------------------------------------- */

/* What conf_set_file learns about the file from the parser. */
struct set_ctx {
    const struct conf_key *k;
    int header;       /* line of the last "[section]" of the key, 0 none */
    int key_line;     /* line of the key in that section, 0 none */
};

static int set_cb(void *arg, int lineno, const char *section, const char *key,
                  const char *value, char *err, size_t errlen)
{
    struct set_ctx *ctx = arg;

    if (strcmp(section, ctx->k->section) != 0)
        return 0;
    if (key == NULL) {
        ctx->header = lineno;
        return 0;
    }
    if (strcmp(key, ctx->k->key) != 0)
        return 0;
    if (ctx->key_line != 0) {
        /* Editing one of two would leave the file as ambiguous as it is. */
        ss_fmt(err, errlen, "%s.%s set twice (first at line %d); fix the file by hand",
               ctx->k->section, ctx->k->key, ctx->key_line);
        return -EINVAL;
    }
    ctx->key_line = lineno;
    return 0;
}

/* One line of the file: [off, off+len) without its end, end the bytes of
 * the end ("\n", "\r\n" or "" for a last line without one). */
struct line {
    size_t off, len, endlen;
};

static int split_lines(const char *buf, size_t len, struct line **out, int *nout)
{
    size_t n = 0, pos = 0, cap = 64;
    struct line *v = malloc(cap * sizeof *v);

    if (v == NULL)
        return -ENOMEM;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t l = nl != NULL ? (size_t)(nl - (buf + pos)) : len - pos;
        size_t e = nl != NULL;
        if (l > 0 && buf[pos + l - 1] == '\r' && nl != NULL) {
            l--;
            e++;
        }
        if (n == cap) {
            struct line *nv = realloc(v, 2 * cap * sizeof *v);
            if (nv == NULL) {
                free(v);
                return -ENOMEM;
            }
            v = nv;
            cap *= 2;
        }
        v[n].off = pos;
        v[n].len = l;
        v[n].endlen = e;
        n++;
        pos += l + e;
    }
    *out = v;
    *nout = (int)n;
    return 0;
}

/* Line kinds, for finding where a section's text ends. */
static int first_char(const char *buf, const struct line *ln)
{
    for (size_t i = 0; i < ln->len; i++)
        if (buf[ln->off + i] != ' ' && buf[ln->off + i] != '\t')
            return (unsigned char)buf[ln->off + i];
    return 0;
}

static int is_comment_line(const char *buf, const struct line *ln)
{
    int ch = first_char(buf, ln);
    return ch == ';' || ch == '#';
}

/*
 * Where "key = value" goes in a section whose header is line h (1-based):
 * after its last non-blank line.  Comment lines that lead directly into
 * the next header (no blank line between) describe that next section, and
 * a comment block set apart by a blank line at the end of the file closes
 * the file, so the new key goes before either.  Returns the 1-based line
 * to insert after.
 */
static int insert_after(const char *buf, const struct line *lines, int n, int h)
{
    int next = h + 1;

    while (next <= n && first_char(buf, &lines[next - 1]) != '[')
        next++;
    int q = next - 1;
    if (next <= n) {
        while (q > h && is_comment_line(buf, &lines[q - 1]))
            q--;
    } else {
        while (q > h && first_char(buf, &lines[q - 1]) == 0)
            q--;
        int c = q;
        while (c > h && is_comment_line(buf, &lines[c - 1]))
            c--;
        if (c < q && c > h && first_char(buf, &lines[c - 1]) == 0)
            q = c;
    }
    while (q > h && first_char(buf, &lines[q - 1]) == 0)
        q--;
    return q;
}

/*
 * Would a daemon load the edited text?  It is loaded by conf_load_buf, the
 * code of conf_load itself, so no rule (two keys together, site.code
 * present, every line well formed) can be missed here and met at start.
 * The site root only places a computed default (<root>/backup): the
 * directory of the file stands in for it, any absolute path would do.
 */
static int check_new_text(const char *path, const struct sbuf *text, char *err, size_t errlen)
{
    char root[SS_PATH_MAX], why[SS_ERR_MAX] = "";
    struct ss_conf *c = malloc(sizeof *c);
    const char *slash = strrchr(path, '/');
    int r;

    if (c == NULL) {
        ss_fmt(err, errlen, "%s: %s", path, strerror(ENOMEM));
        return -ENOMEM;
    }
    if (slash == NULL)
        r = ss_strcpy(root, sizeof root, ".");
    else if (slash == path)
        r = ss_strcpy(root, sizeof root, "/");
    else
        r = ss_fmt(root, sizeof root, "%.*s", (int)(slash - path), path);
    if (r == 0)
        r = conf_load_buf(c, root, path, text->data, text->len, NULL, why, sizeof why);
    free(c);
    if (r < 0) {
        ss_fmt(err, errlen, "%s (the change is refused, the file left unchanged)",
               why[0] ? why : strerror(-r));
        return r == -ENAMETOOLONG || r == -ENOMEM ? r : -EINVAL;
    }
    return 0;
}

int conf_set_file(const char *path, const char *dotted, const char *value,
                  char *err, size_t errlen)
{
    struct set_ctx ctx = {0};
    struct line *lines = NULL;
    struct sbuf out;
    struct stat st;
    char *buf = NULL;
    size_t len;
    int n = 0, r;

    if ((r = conf_check(dotted, value, err, errlen)) < 0)
        return r;
    ctx.k = conf_find(dotted);
    if ((r = ini_read_file(path, &buf, &len, err, errlen)) < 0)
        return r;
    if (stat(path, &st) < 0) {
        r = -errno;
        ss_fmt(err, errlen, "%s: %s", path, strerror(-r));
        free(buf);
        return r;
    }
    /* The file must parse, or we could not tell which line is which. */
    r = ini_parse_named(buf, len, path, set_cb, &ctx, err, errlen);
    if (r < 0) {
        free(buf);
        return r == -EBADMSG ? -EINVAL : r;
    }
    if ((r = split_lines(buf, len, &lines, &n)) < 0) {
        ss_fmt(err, errlen, "%s: %s", path, strerror(-r));
        free(buf);
        return r;
    }

    /* New lines end like the file's first line, so a CRLF file stays one. */
    const char *eol = n > 0 && lines[0].endlen == 2 ? "\r\n" : "\n";
    ss_sbuf_init(&out);
    r = 0;
    if (ctx.key_line != 0) {
        /* Keep the line up to the '=' and the blanks after it. */
        const struct line *ln = &lines[ctx.key_line - 1];
        const char *s = buf + ln->off;
        const char *eq = memchr(s, '=', ln->len);
        size_t keep;
        r |= ss_sbuf_add(&out, buf, ln->off);
        if (eq != NULL) {
            keep = (size_t)(eq - s) + 1;
            while (keep < ln->len && (s[keep] == ' ' || s[keep] == '\t'))
                keep++;
            if (value[0] == '\0')
                while (keep > 0 && (s[keep - 1] == ' ' || s[keep - 1] == '\t'))
                    keep--;
            r |= ss_sbuf_add(&out, s, keep);
        } else {
            /* A bare "key" line: give it its value. */
            keep = ln->len;
            while (keep > 0 && (s[keep - 1] == ' ' || s[keep - 1] == '\t'))
                keep--;
            r |= ss_sbuf_add(&out, s, keep);
            r |= ss_sbuf_adds(&out, value[0] != '\0' ? " = " : " =");
        }
        r |= ss_sbuf_adds(&out, value);
        r |= ss_sbuf_add(&out, s + ln->len, len - (ln->off + ln->len));
    } else if (ctx.header != 0) {
        int q = insert_after(buf, lines, n, ctx.header);
        const struct line *ln = &lines[q - 1];
        size_t cut = ln->off + ln->len + ln->endlen;
        r |= ss_sbuf_add(&out, buf, cut);
        if (ln->endlen == 0)
            r |= ss_sbuf_adds(&out, eol);
        r |= ss_sbuf_addf(&out, "%s =%s%s%s", ctx.k->key, value[0] != '\0' ? " " : "",
                          value, eol);
        r |= ss_sbuf_add(&out, buf + cut, len - cut);
    } else {
        r |= ss_sbuf_add(&out, buf, len);
        if (n > 0 && lines[n - 1].endlen == 0)
            r |= ss_sbuf_adds(&out, eol);
        if (n > 0 && first_char(buf, &lines[n - 1]) != 0)
            r |= ss_sbuf_adds(&out, eol);            /* a blank line first */
        r |= ss_sbuf_addf(&out, "[%s]%s%s =%s%s%s", ctx.k->section, eol, ctx.k->key,
                          value[0] != '\0' ? " " : "", value, eol);
    }
    if (r != 0) {
        r = -ENOMEM;
        ss_fmt(err, errlen, "%s: %s", path, strerror(ENOMEM));
    } else if ((r = check_new_text(path, &out, err, errlen)) < 0) {
        ;   /* err says why; the file is untouched */
    } else if ((r = ss_write_file_atomic(path, out.data, out.len, st.st_mode & 07777)) < 0) {
        ss_fmt(err, errlen, "%s: cannot replace: %s", path, strerror(-r));
    }
    ss_sbuf_free(&out);
    free(lines);
    free(buf);
    return r;
}

int conf_list_has(const char *list, const char *word)
{
    size_t wl = strlen(word);

    if (wl == 0)
        return 0;
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        size_t l = strcspn(p, " ");
        if (l == wl && memcmp(p, word, wl) == 0)
            return 1;
        p += l;
    }
    return 0;
}
