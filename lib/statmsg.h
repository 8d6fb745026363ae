/*
 * statmsg.h - status messages (SPEC 5): the record, its file format
 * (record kind "statmsg", version 1; docs/formats.md), the catalogue of
 * IDs and texts, and emitting one into the site's status message inbox.
 *
 * Every message carries a 128-bit random uid drawn when it is created;
 * statmgr keys the database on it, which is what makes ingestion exactly
 * once even when a file is read twice after a crash.
 */
#ifndef SITESRV_STATMSG_H
#define SITESRV_STATMSG_H

#include "common.h"
#include "util.h"

#define SM_MAX_ISTR     10
#define SM_ISTR_LEN     512
#define SM_MAX_ATTR     16
#define SM_ATTR_NAME    32
#define SM_ATTR_VALUE   256
#define SM_COMPONENT    32
#define SM_MACHINE      64
#define SM_FILE_MAX     (64 * 1024)     /* a status message file larger than this is corrupt */

enum sm_type { SM_MILESTONE = 0, SM_DETAIL = 1, SM_AUDIT = 2 };

/* Message IDs.  SMS's where SMS had them; ranges of our own otherwise,
 * one per component (docs/statmsg.md lists them all). */
enum sm_id {
    /* distmgr (SMS) */
    SM_DIST_BEGIN          = 2300,
    SM_DIST_OK             = 2301,
    SM_DIST_FAILED         = 2302,
    SM_DIST_STORED         = 2311,
    SM_DIST_DP_COPY_FAILED = 2328,
    SM_DIST_DP_DONE        = 2330,
    SM_DIST_TO_SITE        = 2339,
    SM_DIST_DP_START       = 2342,
    /* 8000-8099: every component (library and runtime) */
    SM_DAEMON_STARTED      = 8000,
    SM_DAEMON_STOPPING     = 8001,
    SM_CORRUPT_FILE        = 8002,
    SM_CONFIG_RELOADED     = 8003,
    SM_CONFIG_BAD          = 8004,
    SM_POOL_BACKLOG        = 8005,
    /* 8100-8199: distmgr, additions to SMS */
    SM_DIST_DP_FAILED_MAX  = 8100,
    /* 8200-8299: scheduler and sender */
    SM_SEND_SENT           = 8200,
    SM_SEND_RETRYING       = 8201,
    SM_SEND_FAILED         = 8202,
    SM_SEND_EXPIRED        = 8203,
    SM_SEND_NO_ROUTE       = 8204,
    /* 8300-8399: despooler */
    SM_DESPOOL_INSTALLED   = 8300,
    SM_DESPOOL_REJECTED    = 8301,
    SM_DESPOOL_DUPLICATE   = 8302,
    SM_DESPOOL_WAITING     = 8303,
    /* 8400-8499: statmgr */
    SM_STAT_FUTURE_HELD    = 8400,
    SM_STAT_FUTURE_RELEASED = 8401,
    SM_STAT_INGEST_ERROR   = 8402,
    /* 8500-8599: sitebkup */
    SM_BACKUP_STARTED      = 8500,
    SM_BACKUP_SUCCEEDED    = 8501,
    SM_BACKUP_FAILED       = 8502,
    /* 8600-8699: sitectl and clients */
    SM_CLIENT_TEST         = 8600,
};

struct sm_catalog {
    unsigned    id;
    char        severity;     /* 'I' 'W' 'E' */
    enum sm_type type;
    const char *component;    /* the component that emits it */
    const char *text;         /* %1..%10 are insertion strings */
};
/* The catalogue entry for id, or NULL for an ID not in it (clients may
 * send any ID 0..65535). */
const struct sm_catalog *sm_lookup(unsigned id);
/* The whole table, for documentation and tests. */
extern const struct sm_catalog sm_catalog[];
extern const size_t sm_catalog_len;

struct sm_attr {
    char name[SM_ATTR_NAME];
    char value[SM_ATTR_VALUE];
};

struct statmsg {
    unsigned char uid[16];
    unsigned      id;                 /* 0..65535 */
    char          severity;           /* 'I' 'W' 'E' */
    enum sm_type  type;
    char          component[SM_COMPONENT];
    char          site[SS_SITE_LEN + 1];
    char          machine[SM_MACHINE];
    long          pid;
    long          tid;
    int64_t       time_ms;            /* UTC, ms since the epoch */
    int           oserr;
    int           nistr;
    char          istr[SM_MAX_ISTR][SM_ISTR_LEN];
    int           nattr;
    struct sm_attr attr[SM_MAX_ATTR];
};

/* A new message: fresh uid, now, this process and thread, this machine;
 * severity and type from the catalogue (I/milestone if id is not in it).
 * component and site may be NULL (then the sm_set_identity() values). */
int sm_init(struct statmsg *m, unsigned id, const char *component, const char *site);
/* Insertion strings and attribute values are text: one longer than its
 * field is cut between characters, and a byte that is not valid UTF-8
 * becomes '?', because a status message must not fail over a long or odd
 * path.  -E2BIG past 10 insertion strings; sm_add_attr: -EINVAL bad name,
 * -EEXIST repeated name, -E2BIG past 16. */
int sm_add_istr(struct statmsg *m, const char *s);
int sm_add_attr(struct statmsg *m, const char *name, const char *value);
const char *sm_attr_get(const struct statmsg *m, const char *name);

/* The file form (record kind "statmsg" v1).  -EINVAL for a message that
 * sm_parse() would refuse (a field filled in by hand with a bad value,
 * text that is not valid UTF-8): no writer produces a file that statmgr
 * has to quarantine. */
int sm_format(const struct statmsg *m, struct sbuf *out);
/* Parse and validate a file's bytes (modified in place).  -EBADMSG with
 * err[] on anything malformed, including component, machine, insertion
 * strings or attribute values that are not valid UTF-8. */
int sm_parse(struct statmsg *m, char *buf, size_t len, char *err, size_t errlen);

/* The catalogue text with insertion strings substituted. */
void sm_render(const struct statmsg *m, char *buf, size_t len);
/* The same substitution of %1..%10 for any text. */
void sm_render_text(const char *text, const struct statmsg *m, char *buf, size_t len);

/* "milestone" / "detail" / "audit" and back (-EINVAL). */
const char *sm_type_name(enum sm_type t);
int sm_type_parse(const char *s, enum sm_type *t);

/* Identity used by sm_init() and sm_emit(): the site root (for the inbox),
 * site code, component and machine name.  Daemons set it at start and
 * again on every reload (SIGHUP).
 *
 * Thread safety: the identity is one record published under a mutex; the
 * setters build the new record first and swap it in whole, and sm_init()
 * and sm_emit() copy it under the same mutex.  So the setters may be
 * called while other threads emit, and a message never mixes two
 * identities.  A call that changes nothing changes nothing (no write).
 *
 * machine is the name messages carry (site.machine of site.conf); NULL or
 * "" means this machine's short host name (ss_host_short), which is also
 * what sm_set_identity() uses.  An invalid value (see sm_machine_ok) is
 * logged and replaced by the host name; an invalid site code or component
 * is logged and left empty (then sm_init() falls back as it says). */
void sm_set_identity(const char *root, const char *site, const char *component);
void sm_set_identity2(const char *root, const char *site, const char *component,
                      const char *machine);

/* Field syntax, for callers that check input before building a message
 * (sitectl's options): 1 valid, 0 not.  The rules are spelled out in
 * SM_*_RULE for messages. */
int sm_component_ok(const char *s);   /* [A-Za-z0-9_ .-], 1..31 bytes */
int sm_machine_ok(const char *s);     /* printable ASCII, 1..63 bytes */
int sm_attr_name_ok(const char *s);   /* [A-Za-z0-9_.-], 1..31 bytes */
#define SM_COMPONENT_RULE "1 to 31 characters, each a letter, digit, space, '_', '.' or '-'"
#define SM_MACHINE_RULE   "1 to 63 printable ASCII characters"
#define SM_ATTR_NAME_RULE "1 to 31 characters, each a letter, digit, '_', '.' or '-'"

/* Write a message into a status message inbox directory (statmgr.box/
 * statmsgs or a client access point's statmsgs.box) by the drop protocol. */
int sm_write(const struct statmsg *m, const char *boxdir);

/* Build and emit a message into this site's statmgr.box/statmsgs:
 *   sm_emit(SM_DIST_BEGIN, "PackageID", pkg, NULL, "%1", pkg, NULL)
 * is awkward in C, so the form is: attribute pairs in attrs (NULL ended,
 * may be NULL), then insertion strings (NULL ended).  Failures are
 * logged, never fatal: a status message must not stop the work. */
int sm_emit(unsigned id, int oserr, const char *const *attrs, ...);
/* The same for a message that must be recorded at most once however often
 * it is emitted (2339 "sent to child site" after a crash and a redo): its
 * uid is derived from the site, the ID and key instead of drawn. */
int sm_emit_keyed(unsigned id, const char *key, int oserr, const char *const *attrs, ...);

/* Collect the messages this thread emits from sm_batch_begin() until
 * sm_batch_end(), which hands them over together (inbox_drop_many: one
 * sync for all).  Until then they are not in the inbox: end the batch
 * before anything that must follow them.  Per thread; not nested. */
void sm_batch_begin(void);
int  sm_batch_end(void);

#endif
