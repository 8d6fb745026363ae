/*
 * NAME
 *   messages.c - sitectl messages: read the status messages statmgr
 *   ingested into the site database.
 *
 * SYNOPSIS
 *   cmd_messages()
 *   ctl_json_str_array()
 *
 * DESCRIPTION
 *   A read-only query of table statmsg (sitedb, SITEDB_RDONLY: never a
 *   migration, never a lock that a daemon would wait for), filtered by
 *   message ID, component, severity and time, ordered by message time and
 *   then arrival.  --limit N keeps the N most recent of the selection,
 *   still printed oldest first, which is what an administrator looking at
 *   "what happened lately" wants.  --since takes an ISO 8601 time or a
 *   duration meaning "that long ago" (1h, 30m, 2d).
 *
 *   Each row becomes a struct statmsg again so that the text is rendered
 *   by the catalogue (sm_render), exactly as the component meant it.  The
 *   insertion strings are stored as a JSON array of strings and the
 *   attributes as a JSON object of strings; the small strict parser below
 *   reads them back.  --json writes every string anew through
 *   ss_sbuf_add_json_str, never text from the database as it is, so the
 *   output is valid JSON in valid UTF-8 whatever a row holds (a byte that
 *   is not UTF-8, from a row older than sm_parse's check, is written as
 *   U+FFFD).
 *
 * DIAGNOSTICS
 *   A root whose site.conf is missing or does not load is no site: the
 *   error on stderr (naming the root and conf_load's reason), nothing on
 *   stdout, exit 1.  An initialised site without a database or rows yet
 *   has no messages: an empty list, exit 0.
 *   A database that cannot be read: exit 1 with the reason.  A row whose
 *   istr is not a JSON array of strings, or whose attrs is not a JSON
 *   object of strings, is shown without them and a warning on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "conf.h"
#include "sitedb.h"
#include "statmsg.h"
#include "sitectl.h"

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* Four hex digits of a \uXXXX escape. */
static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int d = ss_hexval((unsigned char)p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 0;
}

/* Append one byte to out[0..len) keeping room for the NUL; bytes past the
 * end are dropped (the string is cut, as sm_add_istr cuts). */
static void put(char *out, size_t len, size_t *n, unsigned char c)
{
    if (*n + 1 < len)
        out[(*n)++] = (char)c;
}

static void put_utf8(char *out, size_t len, size_t *n, unsigned cp)
{
    if (cp < 0x80) {
        put(out, len, n, (unsigned char)cp);
    } else if (cp < 0x800) {
        put(out, len, n, (unsigned char)(0xc0 | cp >> 6));
        put(out, len, n, (unsigned char)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        put(out, len, n, (unsigned char)(0xe0 | cp >> 12));
        put(out, len, n, (unsigned char)(0x80 | (cp >> 6 & 0x3f)));
        put(out, len, n, (unsigned char)(0x80 | (cp & 0x3f)));
    } else {
        put(out, len, n, (unsigned char)(0xf0 | cp >> 18));
        put(out, len, n, (unsigned char)(0x80 | (cp >> 12 & 0x3f)));
        put(out, len, n, (unsigned char)(0x80 | (cp >> 6 & 0x3f)));
        put(out, len, n, (unsigned char)(0x80 | (cp & 0x3f)));
    }
}

/* One JSON string literal at *pp (on its opening quote) into out (cut to
 * len - 1 bytes).  Strict: raw control characters, unknown escapes, lone
 * surrogates and \u0000 (which a C string cannot hold) are refused. */
static int json_str(const char **pp, char *out, size_t len)
{
    const char *p = *pp;
    size_t n = 0;
    if (*p++ != '"')
        return -EBADMSG;
    for (;;) {
        unsigned char c = (unsigned char)*p++;
        if (c == '"')
            break;
        if (c < 0x20)                      /* includes the NUL: unterminated */
            return -EBADMSG;
        if (c != '\\') {
            put(out, len, &n, c);
            continue;
        }
        unsigned cp, lo;
        switch (*p++) {
        case '"':  put(out, len, &n, '"'); break;
        case '\\': put(out, len, &n, '\\'); break;
        case '/':  put(out, len, &n, '/'); break;
        case 'b':  put(out, len, &n, '\b'); break;
        case 'f':  put(out, len, &n, '\f'); break;
        case 'n':  put(out, len, &n, '\n'); break;
        case 'r':  put(out, len, &n, '\r'); break;
        case 't':  put(out, len, &n, '\t'); break;
        case 'u':
            if (hex4(p, &cp) < 0)
                return -EBADMSG;
            p += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return -EBADMSG;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) < 0 ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return -EBADMSG;
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp == 0)
                return -EBADMSG;
            put_utf8(out, len, &n, cp);
            break;
        default:
            return -EBADMSG;
        }
    }
    if (len)
        out[n] = '\0';
    *pp = p;
    return 0;
}

/* A JSON array ('[') or object ('{') at text, alone but for blanks: each
 * member is read by item(&p, arg, index), which must consume it (for an
 * object, "key": value).  *count is how many members there were.
 * Strict: 0 or -EBADMSG. */
static int json_members(const char *text, char open,
                        int (*item)(const char **pp, void *arg, int idx), void *arg,
                        int *count)
{
    const char *p = ws(text);
    char close = open == '[' ? ']' : '}';
    int k = 0;
    if (*p++ != open)
        return -EBADMSG;
    p = ws(p);
    if (*p == close) {
        p++;
    } else {
        for (;;) {
            int r = item(&p, arg, k);
            if (r < 0)
                return r;
            k++;
            p = ws(p);
            if (*p == ',') {
                p = ws(p + 1);
                continue;
            }
            if (*p++ != close)
                return -EBADMSG;
            break;
        }
    }
    if (*ws(p) != '\0')
        return -EBADMSG;
    *count = k;
    return 0;
}

struct str_array {
    char  *out;
    size_t len;
    int    max;
};

/* One string of an array: into out[idx * len], or checked and dropped
 * past max. */
static int array_item(const char **pp, void *arg, int idx)
{
    struct str_array *a = arg;
    char scratch[8];
    return idx < a->max ? json_str(pp, a->out + (size_t)idx * a->len, a->len)
                        : json_str(pp, scratch, sizeof scratch);
}

/* Parse text, a JSON array of strings, into up to max strings of len
 * bytes each (out[i * len]); *count is how many were in the array (those
 * past max are checked and dropped).  0 or -EBADMSG. */
int ctl_json_str_array(const char *text, char *out, size_t len, int max, int *count)
{
    struct str_array a = { out, len, max };
    *count = 0;
    return json_members(text, '[', array_item, &a, count);
}

/* One "name": "value" member of an attrs object into m's next attribute
 * (cut to the fields), or checked and dropped past SM_MAX_ATTR. */
static int attr_item(const char **pp, void *arg, int idx)
{
    struct statmsg *m = arg;
    struct sm_attr scratch, *a = idx < SM_MAX_ATTR ? &m->attr[idx] : &scratch;
    if (json_str(pp, a->name, sizeof a->name) < 0)
        return -EBADMSG;
    *pp = ws(*pp);
    if (*(*pp)++ != ':')
        return -EBADMSG;
    *pp = ws(*pp);
    return json_str(pp, a->value, sizeof a->value);
}

/* Parse text, a JSON object whose values are strings, into m's attributes.
 * 0 or -EBADMSG (then m has none). */
static int json_attr_object(const char *text, struct statmsg *m)
{
    int n = 0;
    int r = json_members(text, '{', attr_item, m, &n);
    m->nattr = r < 0 ? 0 : n > SM_MAX_ATTR ? SM_MAX_ATTR : n;
    return r;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

/* A row of the query back into a struct statmsg. */
static void row_to_msg(sqlite3_stmt *st, struct statmsg *m, long long seq)
{
    memset(m, 0, sizeof *m);
    if (sqlite3_column_bytes(st, 1) == (int)sizeof m->uid && sqlite3_column_blob(st, 1))
        memcpy(m->uid, sqlite3_column_blob(st, 1), sizeof m->uid);
    m->id = (unsigned)sqlite3_column_int(st, 2);
    const char *sev = col_text(st, 3);
    m->severity = sev[0] ? sev[0] : '?';
    if (sqlite3_column_type(st, 4) == SQLITE_INTEGER)
        m->type = (enum sm_type)sqlite3_column_int(st, 4);
    else if (sm_type_parse(col_text(st, 4), &m->type) < 0)
        m->type = SM_MILESTONE;
    snprintf(m->component, sizeof m->component, "%s", col_text(st, 5));
    snprintf(m->site, sizeof m->site, "%s", col_text(st, 6));
    snprintf(m->machine, sizeof m->machine, "%s", col_text(st, 7));
    m->pid = (long)sqlite3_column_int64(st, 8);
    m->tid = (long)sqlite3_column_int64(st, 9);
    m->time_ms = sqlite3_column_int64(st, 10);
    m->oserr = sqlite3_column_int(st, 11);
    int n = 0;
    if (sqlite3_column_type(st, 12) != SQLITE_NULL &&
        ctl_json_str_array(col_text(st, 12), &m->istr[0][0], SM_ISTR_LEN, SM_MAX_ISTR, &n) < 0) {
        ctl_err("warning: message seq %lld: insertion strings are not a JSON array "
                "of strings", seq);
        n = 0;
    }
    m->nistr = n > SM_MAX_ISTR ? SM_MAX_ISTR : n;
    if (sqlite3_column_type(st, 13) != SQLITE_NULL &&
        json_attr_object(col_text(st, 13), m) < 0) {
        ctl_err("warning: message seq %lld: attributes are not a JSON object of strings", seq);
        m->nattr = 0;
    }
}

/* "2026-11-21 23:50:00.123Z" */
static void fmt_time(int64_t ms, char *buf, size_t len)
{
    if (ss_fmt_time_iso(ms, buf, len) < 0) {
        snprintf(buf, len, "%lld", (long long)ms);
        return;
    }
    char *t = strchr(buf, 'T');
    if (t)
        *t = ' ';
}

static void add_json_msg(struct sbuf *b, sqlite3_stmt *st, const struct statmsg *m,
                         long long seq, const char *text)
{
    char uid[33], iso[64], sev[2] = { m->severity, '\0' };
    ss_hex(m->uid, sizeof m->uid, uid);
    ss_sbuf_addf(b, "{\"seq\": %lld, \"uid\": \"%s\", \"id\": %u, \"severity\": ",
                 seq, uid, m->id);
    ss_sbuf_add_json_str(b, sev);
    ss_sbuf_adds(b, ", \"type\": ");
    ss_sbuf_add_json_str(b, sm_type_name(m->type) ? sm_type_name(m->type) : "");
    ss_sbuf_adds(b, ", \"component\": ");
    ss_sbuf_add_json_str(b, m->component);
    ss_sbuf_adds(b, ", \"site\": ");
    ss_sbuf_add_json_str(b, m->site);
    ss_sbuf_adds(b, ", \"machine\": ");
    ss_sbuf_add_json_str(b, m->machine);
    if (ss_fmt_time_iso(m->time_ms, iso, sizeof iso) < 0)
        iso[0] = '\0';
    ss_sbuf_addf(b, ", \"pid\": %ld, \"tid\": %ld, \"time\": \"%s\", \"time_ms\": %lld, "
                 "\"oserr\": %d, \"istr\": [", m->pid, m->tid, iso,
                 (long long)m->time_ms, m->oserr);
    for (int i = 0; i < m->nistr; i++) {
        if (i)
            ss_sbuf_adds(b, ", ");
        ss_sbuf_add_json_str(b, m->istr[i]);
    }
    ss_sbuf_adds(b, "], \"attrs\": {");
    for (int i = 0; i < m->nattr; i++) {
        if (i)
            ss_sbuf_adds(b, ", ");
        ss_sbuf_add_json_str(b, m->attr[i].name);
        ss_sbuf_adds(b, ": ");
        ss_sbuf_add_json_str(b, m->attr[i].value);
    }
    ss_sbuf_adds(b, "}, \"text\": ");
    ss_sbuf_add_json_str(b, text);
    ss_sbuf_adds(b, ", \"received\": ");
    if (sqlite3_column_type(st, 14) != SQLITE_NULL &&
        ss_fmt_time_iso(sqlite3_column_int64(st, 14), iso, sizeof iso) == 0)
        ss_sbuf_add_json_str(b, iso);
    else
        ss_sbuf_adds(b, "null");
    ss_sbuf_adds(b, ", \"via\": ");
    if (sqlite3_column_type(st, 15) != SQLITE_NULL)
        ss_sbuf_add_json_str(b, col_text(st, 15));
    else
        ss_sbuf_adds(b, "null");
    ss_sbuf_adds(b, "}");
}

static int has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        found = 1;
    else if (r != SQLITE_DONE)
        found = -1;
    sqlite3_finalize(st);
    return found;
}

int cmd_messages(struct ctl *c, int argc, char **argv)
{
    const char *v, *component = NULL;
    long long id = -1, limit = -1;
    char severity[2] = "";
    int64_t since = INT64_MIN;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (ctl_common(c, argc, argv, &i))
            continue;
        if (ctl_flag(argv[i], "--json")) {
            json = 1;
        } else if (ctl_opt(c, argc, argv, &i, "--id", &v)) {
            if (ss_parse_int(v, 0, 65535, &id) < 0)
                ctl_usage_error(c, "bad --id '%s' (0..65535)", v);
        } else if (ctl_opt(c, argc, argv, &i, "--component", &component)) {
            ;
        } else if (ctl_opt(c, argc, argv, &i, "--severity", &v)) {
            if (strlen(v) != 1 || !strchr("IWEiwe", v[0]))
                ctl_usage_error(c, "bad --severity '%s' (I, W or E)", v);
            severity[0] = (char)(v[0] & ~0x20);
        } else if (ctl_opt(c, argc, argv, &i, "--since", &v)) {
            int64_t d;
            if (ss_parse_time_iso(v, &since) == 0)
                ;
            else if (ss_parse_duration_ms(v, &d) == 0)
                since = ss_now_ms() - d;
            else
                ctl_usage_error(c, "bad --since '%s' (an ISO 8601 time such as "
                                "2026-11-21T23:00:00Z, or a duration such as 1h)", v);
        } else if (ctl_opt(c, argc, argv, &i, "--limit", &v)) {
            if (ss_parse_int(v, 1, 1000000000, &limit) < 0)
                ctl_usage_error(c, "bad --limit '%s' (a positive number)", v);
        } else {
            ctl_usage_error(c, "unexpected argument %s", argv[i]);
        }
    }
    const char *root = ctl_root(c);

    /* A wrong root must fail, not look like a quiet site: the root is a
     * site exactly when its site.conf loads. */
    struct ss_conf *cf = calloc(1, sizeof *cf);
    if (!cf) {
        ctl_err("out of memory");
        return CTL_FAIL;
    }
    int cr = ctl_load_conf(root, cf, NULL, 0);
    free(cf);
    if (cr < 0)
        return CTL_FAIL;

    char path[SS_PATH_MAX], err[SS_ERR_MAX] = "";
    if (ss_path(path, sizeof path, "%s/db/site.db", root) < 0) {
        ctl_err("site root too long: %s", root);
        return CTL_FAIL;
    }
    sqlite3 *db = NULL;
    int ht = 0;
    if (access(path, F_OK) == 0) {
        int r = sitedb_open_root(root, SITEDB_RDONLY, &db, err, sizeof err);
        if (r < 0) {
            ctl_err("cannot read %s: %s", path, err[0] ? err : strerror(-r));
            return CTL_FAIL;
        }
        ht = has_table(db, "statmsg");
        if (ht < 0) {
            ctl_err("cannot read %s: %s", path, sqlite3_errmsg(db));
            sitedb_close(db);
            return CTL_FAIL;
        }
    }

    struct sbuf b;
    ss_sbuf_init(&b);
    if (json)
        ss_sbuf_adds(&b, "[");
    int rc = CTL_OK, nrows = 0;
    if (db && ht) {
        static const char sql[] =
            "SELECT * FROM ("
            " SELECT seq, uid, msgid, severity, type, component, site, machine, pid, tid,"
            "  time_ms, oserr, istr, attrs, received_ms, via FROM statmsg"
            " WHERE (?1 IS NULL OR msgid = ?1) AND (?2 IS NULL OR component = ?2)"
            "  AND (?3 IS NULL OR severity = ?3) AND (?4 IS NULL OR time_ms >= ?4)"
            " ORDER BY time_ms DESC, seq DESC LIMIT ?5)"
            " ORDER BY time_ms, seq";
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
            ctl_err("cannot query %s: %s", path, sqlite3_errmsg(db));
            rc = CTL_FAIL;
            goto out;
        }
        if (id >= 0)
            sqlite3_bind_int64(st, 1, id);
        if (component)
            sqlite3_bind_text(st, 2, component, -1, SQLITE_STATIC);
        if (severity[0])
            sqlite3_bind_text(st, 3, severity, -1, SQLITE_STATIC);
        if (since != INT64_MIN)
            sqlite3_bind_int64(st, 4, since);
        sqlite3_bind_int64(st, 5, limit);      /* -1: no limit */

        struct statmsg *m = malloc(sizeof *m);
        char text[4096], when[64];
        int r = SQLITE_DONE;
        while (m && (r = sqlite3_step(st)) == SQLITE_ROW) {
            long long seq = sqlite3_column_int64(st, 0);
            row_to_msg(st, m, seq);
            sm_render(m, text, sizeof text);
            if (json) {
                ss_sbuf_adds(&b, nrows ? ",\n  " : "\n  ");
                add_json_msg(&b, st, m, seq, text);
            } else {
                /* One message, one line: the text may hold newlines. */
                for (char *t = text; *t; t++)
                    if ((unsigned char)*t < 0x20)
                        *t = ' ';
                fmt_time(m->time_ms, when, sizeof when);
                printf("%s  %-3s  %-8s  %c %-5u  %s", when, m->site[0] ? m->site : "-",
                       m->component, m->severity, m->id, text);
                if (m->oserr)
                    printf("  [os error %d: %s]", m->oserr, strerror(m->oserr));
                putchar('\n');
            }
            nrows++;
        }
        if (!m) {
            ctl_err("out of memory");
            rc = CTL_FAIL;
        } else if (r != SQLITE_DONE) {
            ctl_err("cannot query %s: %s", path, sqlite3_errmsg(db));
            rc = CTL_FAIL;
        }
        free(m);
        sqlite3_finalize(st);
    }
    if (json && ctl_json_array_end(&b, nrows) != CTL_OK)
        rc = CTL_FAIL;
out:
    ss_sbuf_free(&b);
    if (db)
        sitedb_close(db);
    return rc;
}
