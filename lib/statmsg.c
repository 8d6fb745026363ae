/*
 * statmsg.c - status messages: the catalogue, the file form, emitting one.
 *
 * SYNOPSIS
 *   sm_lookup sm_catalog sm_catalog_len     the catalogue of IDs and texts
 *   sm_init sm_add_istr sm_add_attr sm_attr_get
 *                                           build a message
 *   sm_format sm_parse                      the file form (record "statmsg" v1)
 *   sm_render                               catalogue text with %1..%10 filled in
 *   sm_render_text                          the same for any text
 *   sm_type_name sm_type_parse
 *   sm_component_ok sm_machine_ok sm_attr_name_ok
 *                                           field syntax, for checking input
 *   sm_set_identity sm_set_identity2 sm_write sm_emit sm_emit_keyed
 *                                           hand a message to statmgr
 *
 * DESCRIPTION
 *   A status message (SPEC 5) is a small record that daemons and clients
 *   drop into statmgr's inbox.  The file form is a record (record.c) of
 *   kind "statmsg", version 1; docs/formats.md lists its fields and
 *   docs/statmsg.md the catalogue.  sm_parse() is strict: every field is
 *   checked against its syntax, an unknown field or a repeated one refuses
 *   the file, because a reader that guessed would store a wrong message
 *   exactly once and forever.  Text fields must be valid UTF-8: a message
 *   is shown as JSON and stored in SQLite as TEXT, and neither can carry
 *   arbitrary bytes faithfully.
 *
 *   sm_set_identity2() keeps the site root, site code, component and
 *   machine name in one record.  A daemon sets it at start and again on
 *   every SIGHUP while its worker threads may be emitting, so the new
 *   record is built aside and published under a mutex, and sm_init() and
 *   sm_emit() copy it under the same mutex: a reader sees the old record
 *   or the new one, never a half-written mix.
 *
 *   sm_emit() is the one-line way for a daemon to report: it never fails
 *   the caller's work, it logs instead.
 *
 * DIAGNOSTICS
 *   sm_emit() logs a warning when a message cannot be written and returns
 *   the error (-ENOENT when no site root is set).  sm_parse() returns
 *   -EBADMSG (or -EFBIG) with err[] naming the field and the fault.  The
 *   builders return -EINVAL for a bad value, -E2BIG past 10 insertion
 *   strings or 16 attributes, -EEXIST for a repeated attribute name;
 *   sm_format() -EINVAL for a message sm_parse() would refuse.
 *   sm_set_identity2() logs a warning for a value it ignores (an invalid
 *   site code, component or machine name, a root path too long).
 *   Nothing else is logged.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inbox.h"
#include "log.h"
#include "record.h"
#include "statmsg.h"
#include "uniqname.h"

#define SM_KIND     "statmsg"
#define SM_VERSION  1
/* 11 fixed fields, 10 istr, 16 attr: the most a valid file can hold. */
#define SM_MAX_FIELDS (11 + SM_MAX_ISTR + SM_MAX_ATTR)

/* ---- the catalogue ---------------------------------------------------- */

/* Sorted by id (sm_lookup() does a binary search; the unit test checks).
 * Insertion-string conventions follow SMS: for distmgr, %1 the package,
 * %2 the version, %3 the distribution point or site. */
const struct sm_catalog sm_catalog[] = {
    { SM_DIST_BEGIN, 'I', SM_MILESTONE, "distmgr",
      "Distribution Manager is beginning to process package \"%1\" (package ID = %2)." },
    { SM_DIST_OK, 'I', SM_MILESTONE, "distmgr",
      "Distribution Manager successfully processed package \"%1\" (package ID = %2)." },
    { SM_DIST_FAILED, 'E', SM_MILESTONE, "distmgr",
      "Distribution Manager failed to process package \"%1\" (package ID = %2): %3." },
    { SM_DIST_STORED, 'I', SM_MILESTONE, "distmgr",
      "Distribution Manager successfully created or updated the package %1 (source version %2)." },
    { SM_DIST_DP_COPY_FAILED, 'E', SM_MILESTONE, "distmgr",
      "Distribution Manager failed to copy package %1 version %2 to distribution point %3: %4." },
    { SM_DIST_DP_DONE, 'I', SM_MILESTONE, "distmgr",
      "Distribution Manager successfully distributed package \"%1\" version %2 to distribution point \"%3\"." },
    { SM_DIST_TO_SITE, 'I', SM_MILESTONE, "distmgr",
      "Distribution Manager instructed Scheduler and Sender to send package \"%1\" version %2 to child site %3." },
    { SM_DIST_DP_START, 'I', SM_MILESTONE, "distmgr",
      "Distribution Manager is starting to distribute package \"%1\" version %2 to distribution point \"%3\"." },
    { SM_DAEMON_STARTED, 'I', SM_MILESTONE, "any",
      "%1 started (version %2, pid %3)." },
    { SM_DAEMON_STOPPING, 'I', SM_MILESTONE, "any",
      "%1 is stopping: %2." },
    { SM_CORRUPT_FILE, 'W', SM_MILESTONE, "any",
      "The unreadable file \"%1\" in %2 was moved to its corrupt folder as %3: %4." },
    { SM_CONFIG_RELOADED, 'I', SM_DETAIL, "any",
      "%1 reloaded its configuration from %2." },
    { SM_CONFIG_BAD, 'E', SM_MILESTONE, "any",
      "configuration error: %1" },
    { SM_POOL_BACKLOG, 'W', SM_DETAIL, "any",
      "%1 has %2 work items waiting for its %3 workers (worker pool backlog)." },
    { SM_DIST_DP_FAILED_MAX, 'E', SM_MILESTONE, "distmgr",
      "Distribution Manager gave up copying package %1 version %2 to distribution point %3 "
      "after %4 attempts; it will try again when the package is updated or on `sitectl retry now`." },
    { SM_SEND_SENT, 'I', SM_MILESTONE, "sender",
      "Sender sent package %1 version %2 to site %3 (%4 bytes)." },
    { SM_SEND_RETRYING, 'W', SM_DETAIL, "sender",
      "Sender could not send package %1 version %2 to site %3 (attempt %4): %5; it "
      "tries again after %6." },
    { SM_SEND_FAILED, 'E', SM_MILESTONE, "sender",
      "Sender gave up the job %1 for site %2: %3." },
    { SM_SEND_EXPIRED, 'E', SM_MILESTONE, "sender",
      "Sender could not deliver package %1 version %2 to site %3 within the job lifetime "
      "(%4 attempts; last error: %5); the job is removed." },
    { SM_SEND_NO_ROUTE, 'W', SM_DETAIL, "sender",
      "Scheduler has no route to site %1 for the job %2: add the site (sitectl site add) "
      "or its parent; the job waits." },
    { SM_DESPOOL_INSTALLED, 'I', SM_MILESTONE, "despool",
      "Despooler installed package %1 version %2 received from site %3." },
    { SM_DESPOOL_REJECTED, 'E', SM_MILESTONE, "despool",
      "Despooler rejected the file %1 from site %2 and moved it to its corrupt "
      "folder: %3." },
    { SM_DESPOOL_DUPLICATE, 'I', SM_DETAIL, "despool",
      "Despooler received package %1 version %2 from site %3 again, or older than the version "
      "%4 this site has; nothing changed." },
    { SM_DESPOOL_WAITING, 'W', SM_DETAIL, "despool",
      "Despooler is waiting for the package file of instruction %1 (package %2 version %3)." },
    { SM_STAT_FUTURE_HELD, 'W', SM_DETAIL, "statmgr",
      "Status Manager is holding %1 status message(s) dated more than %2 in the future "
      "in futureq; the first becomes due at %3." },
    { SM_STAT_FUTURE_RELEASED, 'I', SM_DETAIL, "statmgr",
      "Status Manager released %1 held status message(s) that are now due." },
    { SM_STAT_INGEST_ERROR, 'E', SM_MILESTONE, "statmgr",
      "Status Manager cannot record status messages in the site database: %1. They stay in "
      "their inboxes, and it retries with a growing delay." },
    { SM_BACKUP_STARTED, 'I', SM_MILESTONE, "sitebkup",
      "Site Backup is starting a backup of site %1 into %2 (%3)." },
    { SM_BACKUP_SUCCEEDED, 'I', SM_MILESTONE, "sitebkup",
      "Site Backup completed the backup %1: %2 files, %3 bytes, in %4." },
    { SM_BACKUP_FAILED, 'E', SM_MILESTONE, "sitebkup",
      "Site Backup failed: %1.  Nothing of this backup was kept." },
    { SM_CLIENT_TEST, 'I', SM_MILESTONE, "sitectl",
      "Client test message: %1" },
};
const size_t sm_catalog_len = SS_ARRAY_LEN(sm_catalog);

const struct sm_catalog *sm_lookup(unsigned id)
{
    size_t lo = 0, hi = sm_catalog_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sm_catalog[mid].id == id)
            return &sm_catalog[mid];
        if (sm_catalog[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *sm_type_name(enum sm_type t)
{
    switch (t) {
    case SM_MILESTONE: return "milestone";
    case SM_DETAIL:    return "detail";
    case SM_AUDIT:     return "audit";
    }
    return "unknown";
}

int sm_type_parse(const char *s, enum sm_type *t)
{
    static const enum sm_type all[] = { SM_MILESTONE, SM_DETAIL, SM_AUDIT };
    for (size_t i = 0; s && i < SS_ARRAY_LEN(all); i++) {
        if (strcmp(s, sm_type_name(all[i])) == 0) {
            *t = all[i];
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- field syntax ----------------------------------------------------- */

int sm_component_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= SM_COMPONENT)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == ' ' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static int attr_name_okn(const char *s, size_t n)
{
    if (n == 0 || n >= SM_ATTR_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int sm_attr_name_ok(const char *s)
{
    return s != NULL && attr_name_okn(s, strlen(s));
}

/* Printable ASCII, 1..63 bytes: what a host name can be, and nothing
 * that could break a log line or a listing. */
int sm_machine_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= SM_MACHINE)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static int severity_ok(char c)
{
    return c == 'I' || c == 'W' || c == 'E';
}

/* A text field of a builder: cut between characters to fit, and any byte
 * that is not valid UTF-8 replaced, so that sm_format() accepts it. */
static void copy_text(char *dst, size_t dstlen, const char *src)
{
    (void)ss_strcpy_utf8(dst, dstlen, src);
    ss_utf8_sanitize(dst);
}

/* ---- identity --------------------------------------------------------- */

/* The whole identity, published at once (see DESCRIPTION).  Built zeroed
 * then filled in, so that two equal identities are equal bytes. */
struct identity {
    char root[SS_PATH_MAX];
    char site[SS_SITE_LEN + 1];
    char component[SM_COMPONENT];
    char machine[SM_MACHINE];
};

/* What sm_init() needs of it: small enough for any thread's stack. */
struct names {
    char site[SS_SITE_LEN + 1];
    char component[SM_COMPONENT];
    char machine[SM_MACHINE];
};

static struct identity ident;
static pthread_mutex_t ident_lock = PTHREAD_MUTEX_INITIALIZER;

/* The short host name, if it is a valid machine field, else "unknown". */
static void host_short(char *buf, size_t len)
{
    ss_host_short(buf, len);
    if (!sm_machine_ok(buf))
        ss_strcpy(buf, len, "unknown");
}

void sm_set_identity2(const char *root, const char *site, const char *component,
                      const char *machine)
{
    /* 4 KiB of path: built on the heap, like the statmsg of sm_emit(),
     * since a reload may run on a small thread stack. */
    struct identity *next = calloc(1, sizeof *next);

    if (next == NULL) {
        log_warn("status messages: out of memory, identity not changed");
        return;
    }
    if (root && ss_strcpy(next->root, sizeof next->root, root) < 0) {
        log_warn("status messages: site root path too long, messages will not be written");
        next->root[0] = '\0';
    }
    if (site && *site) {
        if (ss_site_code_ok(site))
            ss_strcpy(next->site, sizeof next->site, site);
        else
            log_warn("status messages: ignoring invalid site code \"%.8s\"", site);
    }
    if (component) {
        if (sm_component_ok(component))
            ss_strcpy(next->component, sizeof next->component, component);
        else
            log_warn("status messages: ignoring invalid component name \"%.40s\"", component);
    }
    if (machine && *machine && !sm_machine_ok(machine)) {
        log_warn("status messages: invalid machine name \"%.70s\" (%s), using the host name",
                 machine, SM_MACHINE_RULE);
        machine = NULL;
    }
    if (machine && *machine)
        ss_strcpy(next->machine, sizeof next->machine, machine);
    else
        host_short(next->machine, sizeof next->machine);

    pthread_mutex_lock(&ident_lock);
    if (memcmp(&ident, next, sizeof ident) != 0)
        ident = *next;
    pthread_mutex_unlock(&ident_lock);
    free(next);
}

void sm_set_identity(const char *root, const char *site, const char *component)
{
    sm_set_identity2(root, site, component, NULL);
}

/* Copy the names of the identity, and the status message inbox of its
 * root into box when box is not NULL (-ENOENT: no root set). */
static int ident_get(struct names *n, char *box, size_t boxlen)
{
    int rc = 0;

    pthread_mutex_lock(&ident_lock);
    memcpy(n->site, ident.site, sizeof n->site);
    memcpy(n->component, ident.component, sizeof n->component);
    memcpy(n->machine, ident.machine, sizeof n->machine);
    if (box != NULL) {
        if (ident.root[0] == '\0')
            rc = -ENOENT;
        else
            rc = ss_path(box, boxlen, "%s/inboxes/%s", ident.root,
                         inbox_defs[IB_STATMSGS].path);
    }
    pthread_mutex_unlock(&ident_lock);
    return rc;
}

/* ---- building --------------------------------------------------------- */

/* sm_init() with the identity's names already copied into idn. */
static int init_from(struct statmsg *m, unsigned id, const char *component, const char *site,
                     const struct names *idn)
{
    const struct sm_catalog *c = sm_lookup(id);
    int rc;

    memset(m, 0, sizeof *m);
    if (id > 65535)
        return -EINVAL;
    if ((rc = uniq_random(m->uid, sizeof m->uid)) < 0)
        return rc;
    m->id = id;
    m->severity = c ? c->severity : 'I';
    m->type = c ? c->type : SM_MILESTONE;

    /* component: the caller's, else this process's, else the one the
     * catalogue names (unless it is the generic "any"). */
    if (component == NULL || *component == '\0')
        component = idn->component[0] ? idn->component
                  : (c && strcmp(c->component, "any") != 0) ? c->component : "unknown";
    if (!sm_component_ok(component))
        return -EINVAL;
    ss_strcpy(m->component, sizeof m->component, component);

    if (site == NULL)
        site = idn->site;
    if (*site && !ss_site_code_ok(site))
        return -EINVAL;
    ss_strcpy(m->site, sizeof m->site, site);

    if (idn->machine[0])
        ss_strcpy(m->machine, sizeof m->machine, idn->machine);
    else
        host_short(m->machine, sizeof m->machine);
    m->pid = (long)getpid();
    m->tid = (long)gettid();
    m->time_ms = ss_now_ms();
    return 0;
}

int sm_init(struct statmsg *m, unsigned id, const char *component, const char *site)
{
    struct names idn;

    ident_get(&idn, NULL, 0);
    return init_from(m, id, component, site, &idn);
}

int sm_add_istr(struct statmsg *m, const char *s)
{
    if (m->nistr >= SM_MAX_ISTR)
        return -E2BIG;
    copy_text(m->istr[m->nistr++], SM_ISTR_LEN, s);
    return 0;
}

/* Values longer than SM_ATTR_VALUE-1 bytes are cut, like insertion
 * strings: a status message must not fail over a long path. */
int sm_add_attr(struct statmsg *m, const char *name, const char *value)
{
    if (!sm_attr_name_ok(name))
        return -EINVAL;
    if (sm_attr_get(m, name))
        return -EEXIST;
    if (m->nattr >= SM_MAX_ATTR)
        return -E2BIG;
    struct sm_attr *a = &m->attr[m->nattr++];
    ss_strcpy(a->name, sizeof a->name, name);
    copy_text(a->value, sizeof a->value, value);
    return 0;
}

const char *sm_attr_get(const struct statmsg *m, const char *name)
{
    for (int i = 0; i < m->nattr; i++)
        if (strcmp(m->attr[i].name, name) == 0)
            return m->attr[i].value;
    return NULL;
}

/* ---- file form -------------------------------------------------------- */

/* A text field of a message: NUL terminated within its field, valid UTF-8. */
static int text_ok(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    return n < size && ss_utf8_valid(s, n);
}

/* out must be empty (new or ss_sbuf_reset): the record is its content. */
int sm_format(const struct statmsg *m, struct sbuf *out)
{
    char uid[33], when[40], av[SM_ATTR_NAME + 1 + SM_ATTR_VALUE];
    int rc;

    /* Refuse here what sm_parse() would refuse, so that no writer ever
     * produces a file that statmgr has to quarantine. */
    if (m->id > 65535 || !severity_ok(m->severity) ||
        !text_ok(m->component, sizeof m->component) || !sm_component_ok(m->component) ||
        !text_ok(m->site, sizeof m->site) || (m->site[0] && !ss_site_code_ok(m->site)) ||
        !text_ok(m->machine, sizeof m->machine) || !sm_machine_ok(m->machine) ||
        m->pid < 0 || m->tid < 0 || m->nistr < 0 || m->nistr > SM_MAX_ISTR ||
        m->nattr < 0 || m->nattr > SM_MAX_ATTR || strcmp(sm_type_name(m->type), "unknown") == 0)
        return -EINVAL;
    for (int i = 0; i < m->nistr; i++)
        if (!text_ok(m->istr[i], sizeof m->istr[i]))
            return -EINVAL;
    for (int i = 0; i < m->nattr; i++) {
        if (!text_ok(m->attr[i].name, sizeof m->attr[i].name) ||
            !sm_attr_name_ok(m->attr[i].name) ||
            !text_ok(m->attr[i].value, sizeof m->attr[i].value))
            return -EINVAL;
        for (int j = 0; j < i; j++)
            if (strcmp(m->attr[j].name, m->attr[i].name) == 0)
                return -EINVAL;
    }
    /* A time outside the years 0000..9999 has no form the parser takes. */
    int64_t back;
    if (ss_fmt_time_iso(m->time_ms, when, sizeof when) < 0 ||
        ss_parse_time_iso(when, &back) < 0 || back != m->time_ms)
        return -EINVAL;
    ss_hex(m->uid, sizeof m->uid, uid);
    if ((rc = rec_begin(out, SM_KIND, SM_VERSION)) < 0 ||
        (rc = rec_add(out, "uid", uid)) < 0 ||
        (rc = rec_addf(out, "id", "%u", m->id)) < 0 ||
        (rc = rec_addn(out, "severity", &m->severity, 1)) < 0 ||
        (rc = rec_add(out, "type", sm_type_name(m->type))) < 0 ||
        (rc = rec_add(out, "component", m->component)) < 0 ||
        (rc = rec_add(out, "site", m->site)) < 0 ||
        (rc = rec_add(out, "machine", m->machine)) < 0 ||
        (rc = rec_addf(out, "pid", "%ld", m->pid)) < 0 ||
        (rc = rec_addf(out, "tid", "%ld", m->tid)) < 0 ||
        (rc = rec_add(out, "time", when)) < 0 ||
        (rc = rec_addf(out, "oserr", "%d", m->oserr)) < 0)
        return rc;
    for (int i = 0; i < m->nistr; i++)
        if ((rc = rec_add(out, "istr", m->istr[i])) < 0)
            return rc;
    for (int i = 0; i < m->nattr; i++) {
        if ((rc = ss_fmt(av, sizeof av, "%s=%s", m->attr[i].name, m->attr[i].value)) < 0 ||
            (rc = rec_add(out, "attr", av)) < 0)
            return rc;
    }
    return rec_end(out);
}

enum {
    F_UID, F_ID, F_SEVERITY, F_TYPE, F_COMPONENT, F_SITE, F_MACHINE,
    F_PID, F_TID, F_TIME, F_OSERR, F_NFIXED, F_ISTR = F_NFIXED, F_ATTR, F_UNKNOWN
};
static const char *const field_names[] = {
    "uid", "id", "severity", "type", "component", "site", "machine",
    "pid", "tid", "time", "oserr", "istr", "attr",
};

static int field_index(const char *name)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(field_names); i++)
        if (strcmp(name, field_names[i]) == 0)
            return (int)i;
    return F_UNKNOWN;
}

static int badf(char *err, size_t errlen, const char *field, const char *why)
{
    if (err && errlen)
        snprintf(err, errlen, "field %s: %s", field, why);
    return -EBADMSG;
}

int sm_parse(struct statmsg *m, char *buf, size_t len, char *err, size_t errlen)
{
    const struct rec_limits lim = {
        .max_size = SM_FILE_MAX, .max_line = SM_FILE_MAX, .max_fields = SM_MAX_FIELDS,
    };
    struct rec r;
    unsigned seen = 0;
    long long v;
    int rc;

    memset(m, 0, sizeof *m);
    if ((rc = rec_parse(&r, buf, len, &lim, err, errlen)) < 0)
        return rc;
    if (strcmp(r.kind, SM_KIND) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "not a status message (record kind \"%s\")", r.kind);
        rc = -EBADMSG;
        goto out;
    }
    if (r.version != SM_VERSION) {
        if (err && errlen)
            snprintf(err, errlen, "status message version %d is not supported (this reader knows %d)",
                     r.version, SM_VERSION);
        rc = -EBADMSG;
        goto out;
    }

    rc = -EBADMSG;
    for (size_t i = 0; i < r.nfields; i++) {
        const char *name = r.fields[i].name, *val = r.fields[i].value;
        int f = field_index(name);

        if (f == F_UNKNOWN) {
            if (err && errlen)
                snprintf(err, errlen, "unknown field %s", name);
            goto out;
        }
        if (strlen(val) != r.fields[i].vlen) {
            badf(err, errlen, name, "NUL byte in value");
            goto out;
        }
        if (f < F_NFIXED) {
            if (seen & (1u << f)) {
                badf(err, errlen, name, "appears twice");
                goto out;
            }
            seen |= 1u << f;
        }
        switch (f) {
        case F_UID:
            if (r.fields[i].vlen != 2 * sizeof m->uid || ss_unhex(val, m->uid, sizeof m->uid) < 0) {
                badf(err, errlen, name, "not 32 hex digits");
                goto out;
            }
            break;
        case F_ID:
            if (ss_parse_int(val, 0, 65535, &v) < 0) {
                badf(err, errlen, name, "not a message ID in 0..65535");
                goto out;
            }
            m->id = (unsigned)v;
            break;
        case F_SEVERITY:
            if (r.fields[i].vlen != 1 || !severity_ok(val[0])) {
                badf(err, errlen, name, "not I, W or E");
                goto out;
            }
            m->severity = val[0];
            break;
        case F_TYPE:
            if (sm_type_parse(val, &m->type) < 0) {
                badf(err, errlen, name, "not milestone, detail or audit");
                goto out;
            }
            break;
        case F_COMPONENT:
            /* ASCII by its syntax, so also valid UTF-8. */
            if (!sm_component_ok(val)) {
                badf(err, errlen, name, "not " SM_COMPONENT_RULE);
                goto out;
            }
            ss_strcpy(m->component, sizeof m->component, val);
            break;
        case F_SITE:
            if (*val && !ss_site_code_ok(val)) {
                badf(err, errlen, name, "not a site code [A-Z0-9]{3} (or empty)");
                goto out;
            }
            ss_strcpy(m->site, sizeof m->site, val);
            break;
        case F_MACHINE:
            /* Printable ASCII, so also valid UTF-8. */
            if (!sm_machine_ok(val)) {
                badf(err, errlen, name, "not " SM_MACHINE_RULE);
                goto out;
            }
            ss_strcpy(m->machine, sizeof m->machine, val);
            break;
        case F_PID:
        case F_TID:
            if (ss_parse_int(val, 0, LONG_MAX, &v) < 0) {
                badf(err, errlen, name, "not a non-negative integer");
                goto out;
            }
            if (f == F_PID)
                m->pid = (long)v;
            else
                m->tid = (long)v;
            break;
        case F_TIME:
            if (ss_parse_time_iso(val, &m->time_ms) < 0) {
                badf(err, errlen, name, "not an ISO 8601 time");
                goto out;
            }
            break;
        case F_OSERR:
            if (ss_parse_int(val, INT_MIN, INT_MAX, &v) < 0) {
                badf(err, errlen, name, "not an integer");
                goto out;
            }
            m->oserr = (int)v;
            break;
        case F_ISTR:
            if (m->nistr >= SM_MAX_ISTR) {
                badf(err, errlen, name, "more than 10 insertion strings");
                goto out;
            }
            if (r.fields[i].vlen >= SM_ISTR_LEN) {
                badf(err, errlen, name, "longer than 511 bytes");
                goto out;
            }
            if (!ss_utf8_valid(val, r.fields[i].vlen)) {
                if (err && errlen)
                    snprintf(err, errlen, "field istr: insertion string %d is not valid UTF-8",
                             m->nistr + 1);
                goto out;
            }
            memcpy(m->istr[m->nistr++], val, r.fields[i].vlen + 1);
            break;
        case F_ATTR: {
            const char *eq = strchr(val, '=');
            if (m->nattr >= SM_MAX_ATTR) {
                badf(err, errlen, name, "more than 16 attributes");
                goto out;
            }
            if (eq == NULL || !attr_name_okn(val, (size_t)(eq - val))) {
                badf(err, errlen, name, "not <name>=<value> with a name of " SM_ATTR_NAME_RULE);
                goto out;
            }
            if (strlen(eq + 1) >= SM_ATTR_VALUE) {
                badf(err, errlen, name, "value longer than 255 bytes");
                goto out;
            }
            struct sm_attr *a = &m->attr[m->nattr];
            memcpy(a->name, val, (size_t)(eq - val));
            a->name[eq - val] = '\0';
            if (!ss_utf8_valid(eq + 1, strlen(eq + 1))) {
                if (err && errlen)
                    snprintf(err, errlen, "field attr: the value of %s is not valid UTF-8",
                             a->name);
                goto out;
            }
            if (sm_attr_get(m, a->name)) {
                if (err && errlen)
                    snprintf(err, errlen, "field attr: attribute %s appears twice", a->name);
                goto out;
            }
            ss_strcpy(a->value, sizeof a->value, eq + 1);
            m->nattr++;
            break;
        }
        }
    }
    for (int f = 0; f < F_NFIXED; f++) {
        if (!(seen & (1u << f))) {
            if (err && errlen)
                snprintf(err, errlen, "missing field %s", field_names[f]);
            goto out;
        }
    }
    rc = 0;

out:
    rec_free(&r);
    return rc;
}

/* ---- rendering -------------------------------------------------------- */

struct out {
    char  *buf;
    size_t len, pos;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->pos + 1 >= o->len)
        return;
    size_t room = o->len - 1 - o->pos;
    if (n > room)
        n = room;
    memcpy(o->buf + o->pos, s, n);
    o->pos += n;
    o->buf[o->pos] = '\0';
}

/* Substitute m's insertion strings into text.  sm_render() uses it with
 * the catalogue's text; the unit test checks %10 with it, which no
 * catalogue text has. */
void sm_render_text(const char *text, const struct statmsg *m, char *buf, size_t len)
{
    struct out o = { buf, len, 0 };

    if (len == 0)
        return;
    buf[0] = '\0';
    for (const char *p = text; *p; ) {
        const char *pct = strchr(p, '%');
        if (pct == NULL) {
            put(&o, p, strlen(p));
            break;
        }
        put(&o, p, (size_t)(pct - p));
        /* The longest number that names an insertion string: "%10" is
         * the tenth, "%12" is the first followed by a '2'. */
        int n = 0;
        const char *q = pct + 1;
        while (*q >= '0' && *q <= '9' && n * 10 + (*q - '0') <= SM_MAX_ISTR)
            n = n * 10 + (*q++ - '0');
        if (n == 0) {
            /* Not an insertion ("%" alone, or "%0"): keep it as text. */
            put(&o, "%", 1);
            p = pct + 1;
            continue;
        }
        /* A missing insertion string renders as nothing. */
        if (n <= m->nistr)
            put(&o, m->istr[n - 1], strlen(m->istr[n - 1]));
        p = q;
    }
}

void sm_render(const struct statmsg *m, char *buf, size_t len)
{
    const struct sm_catalog *c = sm_lookup(m->id);

    if (len == 0)
        return;
    if (c) {
        sm_render_text(c->text, m, buf, len);
        return;
    }
    /* An ID outside the catalogue (a client's own): say which, and show
     * the insertion strings rather than lose them. */
    struct out o = { buf, len, 0 };
    char head[32];
    buf[0] = '\0';
    snprintf(head, sizeof head, "message ID %u", m->id);
    put(&o, head, strlen(head));
    for (int i = 0; i < m->nistr; i++) {
        put(&o, i ? "; " : ": ", 2);
        put(&o, m->istr[i], strlen(m->istr[i]));
    }
}

/* ---- writing ---------------------------------------------------------- */

int sm_write(const struct statmsg *m, const char *boxdir)
{
    char prefix[UNIQ_PREFIX_MAX + 1];
    struct sbuf b;
    struct inbox ib;
    int rc;

    ss_sbuf_init(&b);
    if ((rc = sm_format(m, &b)) < 0)
        goto out;
    /* The writer's name: its site code, or its machine for a client that
     * does not know its site. */
    uniq_prefix_sanitize(m->site[0] ? m->site : m->machine, prefix, sizeof prefix);
    if ((rc = inbox_open_path(&ib, boxdir, IB_STATMSGS, prefix, 0)) < 0)
        goto out;
    rc = inbox_drop(&ib, ".svf", b.data, b.len, NULL, 0);
    inbox_close(&ib);
out:
    ss_sbuf_free(&b);
    return rc;
}

/*
 * A thread's batch (sm_batch_begin/end): the messages it emits meanwhile
 * are formatted at once and handed over together, with one
 * inbox_drop_many, so that a daemon finishing many small pieces of work
 * pays one sync for their messages instead of one each.
 */
#define SM_BATCH_MAX 64
struct sm_batch {
    int         on;
    size_t      n;
    char        box[SS_PATH_MAX];
    char        prefix[UNIQ_PREFIX_MAX + 1];
    struct sbuf msg[SM_BATCH_MAX];
};
static __thread struct sm_batch *batch;

void sm_batch_begin(void)
{
    if (!batch && !(batch = calloc(1, sizeof *batch)))
        return;                 /* each message is then written alone */
    batch->on = 1;
    batch->n = 0;
}

int sm_batch_end(void)
{
    struct inbox ib;
    struct inbox_item items[SM_BATCH_MAX];
    size_t done = 0;
    int rc = 0;

    if (!batch || !batch->on)
        return 0;
    batch->on = 0;
    if (batch->n == 0)
        goto out;
    for (size_t i = 0; i < batch->n; i++) {
        items[i].data = batch->msg[i].data;
        items[i].len = batch->msg[i].len;
    }
    if ((rc = inbox_open_path(&ib, batch->box, IB_STATMSGS, batch->prefix, 0)) == 0) {
        rc = inbox_drop_many(&ib, ".svf", items, batch->n, &done);
        inbox_close(&ib);
    }
    if (rc < 0)
        log_warn("%zu of %zu status messages not written to %s: %s", batch->n - done,
                 batch->n, batch->box, strerror(-rc));
    for (size_t i = 0; i < batch->n; i++)
        ss_sbuf_free(&batch->msg[i]);
out:
    /* Freed each time: a thread that ends leaves nothing behind. */
    free(batch);
    batch = NULL;
    return rc;
}

/* Into the thread's batch when one is open (written at once when it is
 * full or the message goes to another inbox). */
static int write_or_batch(const struct statmsg *m, const char *box)
{
    char prefix[UNIQ_PREFIX_MAX + 1];
    int rc;

    if (!batch || !batch->on)
        return sm_write(m, box);
    uniq_prefix_sanitize(m->site[0] ? m->site : m->machine, prefix, sizeof prefix);
    if (batch->n > 0 && (batch->n == SM_BATCH_MAX || strcmp(batch->box, box) != 0 ||
                         strcmp(batch->prefix, prefix) != 0)) {
        (void)sm_batch_end();
        sm_batch_begin();
        if (!batch)
            return sm_write(m, box);
    }
    struct sbuf *b = &batch->msg[batch->n];
    ss_sbuf_init(b);
    if ((rc = sm_format(m, b)) < 0) {
        ss_sbuf_free(b);
        return rc;
    }
    if (batch->n == 0) {
        (void)ss_strcpy(batch->box, sizeof batch->box, box);
        (void)ss_strcpy(batch->prefix, sizeof batch->prefix, prefix);
    }
    batch->n++;
    return 0;
}

static int vemit(unsigned id, const void *key, size_t keylen, int oserr,
                 const char *const *attrs, va_list ap)
{
    struct statmsg *m;
    struct names idn;
    char box[SS_PATH_MAX];
    const char *s;
    int rc;

    /* One copy of the identity for the message and its inbox, so that a
     * reload meanwhile cannot send the message of one to the other. */
    if ((rc = ident_get(&idn, box, sizeof box)) == -ENOENT) {
        log_warn("status message %u not written: no site root set (sm_set_identity)", id);
        return -ENOENT;
    }
    if (rc < 0) {
        log_warn("status message %u not written: inbox path too long", id);
        return rc;
    }
    /* A statmsg is about 8 KiB: keep it off small thread stacks. */
    if ((m = malloc(sizeof *m)) == NULL) {
        log_warn("status message %u not written: out of memory", id);
        return -ENOMEM;
    }
    if ((rc = init_from(m, id, NULL, NULL, &idn)) < 0) {
        log_warn("status message %u not written: %s", id, strerror(-rc));
        goto out;
    }
    m->oserr = oserr;
    if (key) {
        /* The uid of a keyed message is a function of its site and key:
         * statmgr records a uid once, so emitting it again after a crash
         * cannot record it twice. */
        struct sbuf kb;
        unsigned char h[32];
        ss_sbuf_init(&kb);
        if (ss_sbuf_addf(&kb, "%s\n%u\n", m->site, id) < 0 || ss_sbuf_add(&kb, key, keylen) < 0 ||
            ss_sha256(kb.data, kb.len, h) < 0) {
            ss_sbuf_free(&kb);
            rc = -ENOMEM;
            log_warn("status message %u not written: out of memory", id);
            goto out;
        }
        ss_sbuf_free(&kb);
        memcpy(m->uid, h, sizeof m->uid);
    }
    for (size_t i = 0; attrs && attrs[i]; i += 2) {
        if (attrs[i + 1] == NULL) {
            log_warn("status message %u: attribute %s has no value", id, attrs[i]);
            break;
        }
        if ((rc = sm_add_attr(m, attrs[i], attrs[i + 1])) < 0)
            log_warn("status message %u: attribute %s dropped: %s", id, attrs[i], strerror(-rc));
    }
    while ((s = va_arg(ap, const char *)) != NULL) {
        if (sm_add_istr(m, s) < 0) {
            log_warn("status message %u: more than %d insertion strings, the rest dropped",
                     id, SM_MAX_ISTR);
            break;
        }
    }

    if ((rc = write_or_batch(m, box)) < 0)
        log_warn("status message %u not written to %s: %s", id, box, strerror(-rc));
out:
    free(m);
    return rc;
}

int sm_emit(unsigned id, int oserr, const char *const *attrs, ...)
{
    va_list ap;
    int rc;

    va_start(ap, attrs);
    rc = vemit(id, NULL, 0, oserr, attrs, ap);
    va_end(ap);
    return rc;
}

int sm_emit_keyed(unsigned id, const char *key, int oserr, const char *const *attrs, ...)
{
    va_list ap;
    int rc;

    va_start(ap, attrs);
    rc = vemit(id, key, strlen(key), oserr, attrs, ap);
    va_end(ap);
    return rc;
}
