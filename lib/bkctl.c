/*
 * NAME
 *   bkctl.c - the backup control file: a strict parser and the default file.
 *
 * SYNOPSIS
 *   int bkctl_parse(const char *buf, size_t len, const struct bkctl_env *env,
 *                   struct bkctl *c, char *err, size_t errlen);
 *   extern const char bkctl_default[];
 *
 * DESCRIPTION
 *   sitebkup runs the control file top to bottom: it may stop daemons,
 *   copy the site, and start them again.  A mistake found half-way would
 *   leave a site with stopped daemons and half a backup, so the whole file
 *   is parsed and checked first, and one error refuses all of it (SPEC 6).
 *   The grammar is small and fixed, so this is a parser of its own rather
 *   than lib/ini.c: it knows which command belongs to which section, and
 *   it expands %NAME% tokens with the line of the mistake at hand.
 *
 *   A line, after trimming blanks (space, tab) at both ends, is empty, a
 *   comment (its first character is ';' or '#'), a section header, a
 *   token ("NAME = value", only in [Tokens]), or a command: words
 *   separated by blanks, the first the command's name.  Lines end in LF
 *   or CRLF and hold at most BKCTL_LINE_MAX bytes; a NUL or another
 *   control character than a tab refuses the file.
 *
 *   Sections are [Tokens], [Stop], [Tasks] and [Start], spelled so, each
 *   at most once and in this order.  A token's value is expanded when it
 *   is set: %NAME% is a token set on a line above or a built-in (SITE,
 *   ROOT, DESTINATION), %% a literal %; so a token can never refer to
 *   itself or to one below it, and expansion always ends.  A command's
 *   words are split first and expanded one by one: a token whose value
 *   holds blanks is still one argument (a path with spaces).
 *
 *   The destination is checked lexically: absolute, no "." or ".."
 *   component, equal to or below backup.destination on a component
 *   boundary, after both are normalised (no "//", no trailing '/').
 *   Symbolic links are not followed here; the backup writer creates
 *   what it writes below the destination itself.
 *
 * DIAGNOSTICS
 *   Nothing is logged.  bkctl_parse returns 0; -EBADMSG with err
 *   "line N: what is wrong" naming the offending word (or a sentence
 *   without a line for a file with no task, or a backup.destination that
 *   is not absolute); -EFBIG for a file over BKCTL_MAX_SIZE bytes;
 *   -ENOMEM.  On failure c->n is 0.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bkctl.h"
#include "util.h"

const char bkctl_default[] =
    "; sitebkup.ctl - the backup control file (docs/formats.md, \"Backup\n"
    "; control file\").  This is the default that sitebkup runs when\n"
    "; inboxes/sitebkup.box/sitebkup.ctl does not exist.\n"
    ";\n"
    "; There is no [Stop]: the daemons keep running while the site is\n"
    "; copied.  The database is copied through SQLite's online backup API,\n"
    "; the inboxes as of one moment, and every file is listed with its\n"
    "; SHA-256 in the backup's manifest.  The backup goes to\n"
    "; backup.destination (site.conf) under a temporary name, renamed when\n"
    "; it is complete.\n"
    ";\n"
    "; The order matters while work flows: the inboxes before the database\n"
    "; (a file handed on meanwhile is in both, and its reader takes it once;\n"
    "; in the other order it could be in neither), the store after it (every\n"
    "; object the database names is there).\n"
    "\n"
    "[Tasks]\n"
    "config\n"
    "keys\n"
    "inboxes\n"
    "database\n"
    "store\n";

enum { SEC_NONE = -1, SEC_TOKENS, SEC_STOP, SEC_TASKS, SEC_START, SEC_N };

static const char *const section_names[SEC_N] = {"Tokens", "Stop", "Tasks", "Start"};

/* The commands, the section each belongs in, and whether it is a task
 * (appears at most once, takes no argument). */
static const struct {
    const char   *name;
    enum bkctl_op op;
    int           section;
} commands[] = {
    {"stop", BK_STOP, SEC_STOP},
    {"destination", BK_DESTINATION, SEC_TASKS},
    {"database", BK_DATABASE, SEC_TASKS},
    {"config", BK_CONFIG, SEC_TASKS},
    {"keys", BK_KEYS, SEC_TASKS},
    {"inboxes", BK_INBOXES, SEC_TASKS},
    {"store", BK_STORE, SEC_TASKS},
    {"start", BK_START, SEC_START},
};

/* The daemons stop and start may name, in the order of their BK_D_* bits. */
static const char *const daemon_names[] = {"distmgr", "sender", "despool", "statmgr"};

static const char *const builtin_names[] = {"SITE", "ROOT", "DESTINATION"};

struct token {
    char  name[BKCTL_TOKEN_NAME_MAX + 1];
    char *value;                    /* expanded */
    int   line;
};

struct pstate {
    const struct bkctl_env *env;
    struct bkctl *c;
    struct token *tok;
    int           ntok;
    int           section;
    int           section_line[SEC_N];
    int           op_line[BK_START + 1];   /* first line of each once-only command */
    int           first_task_line;
    char         *err;
    size_t        errlen;
};

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* "line N: ..." into the caller's buffer, and -EBADMSG. */
static int SS_PRINTF(3, 4) fail(struct pstate *ps, int line, const char *fmt, ...)
{
    char msg[SS_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        ss_seterr(ps->err, ps->errlen, "line %d: %s", line, msg);
    else
        ss_seterr(ps->err, ps->errlen, "%s", msg);
    return -EBADMSG;
}

/* [A-Z][A-Z0-9_]{0,31}, of n bytes at s. */
static int token_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > BKCTL_TOKEN_NAME_MAX || !(s[0] >= 'A' && s[0] <= 'Z'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

static int builtin_index(const char *name)
{
    for (size_t i = 0; i < SS_ARRAY_LEN(builtin_names); i++)
        if (strcmp(name, builtin_names[i]) == 0)
            return (int)i;
    return -1;
}

/* The value of a built-in: NULL when the caller did not give it, which
 * makes it as unset as any token never defined. */
static const char *builtin_value(const struct bkctl_env *env, int i)
{
    switch (i) {
    case 0: return env->site;
    case 1: return env->root;
    default: return env->destination;
    }
}

static const struct token *find_token(const struct pstate *ps, const char *name)
{
    for (int i = 0; i < ps->ntok; i++)
        if (strcmp(ps->tok[i].name, name) == 0)
            return &ps->tok[i];
    return NULL;
}

/*
 * Expand %NAME% and %% in the NUL-terminated in, into out[outlen].  what
 * names the thing being expanded for the "too long" message.
 */
static int expand(struct pstate *ps, int line, const char *in, char *out, size_t outlen,
                  const char *what)
{
    size_t o = 0;

    for (const char *p = in; *p != '\0';) {
        const char *val;
        size_t vlen;

        if (*p != '%') {
            val = p;
            vlen = 1;
            p++;
        } else if (p[1] == '%') {
            val = "%";
            vlen = 1;
            p += 2;
        } else {
            const char *end = strchr(p + 1, '%');
            char name[BKCTL_TOKEN_NAME_MAX + 1];
            size_t n;

            if (end == NULL)
                return fail(ps, line, "unterminated %% in '%s'", in);
            n = (size_t)(end - (p + 1));
            if (!token_name_ok(p + 1, n))
                return fail(ps, line, "'%.*s' is not a token name (write %%%% for a literal %%)",
                            (int)(n + 2 > 64 ? 64 : n + 2), p);
            memcpy(name, p + 1, n);
            name[n] = '\0';
            int b = builtin_index(name);
            if (b >= 0) {
                val = builtin_value(ps->env, b);
            } else {
                const struct token *t = find_token(ps, name);
                val = t != NULL ? t->value : NULL;
            }
            if (val == NULL)
                return fail(ps, line, "token %%%s%% is not set", name);
            vlen = strlen(val);
            p = end + 1;
        }
        if (vlen >= outlen - o)
            return fail(ps, line, "%s is longer than %zu bytes once expanded", what, outlen - 1);
        memcpy(out + o, val, vlen);
        o += vlen;
    }
    out[o] = '\0';
    return 0;
}

/*
 * Normalise an absolute path in place: "//" and a trailing '/' go, "/"
 * stays "/".  Returns 0, or -EINVAL with *bad pointing to the "." or ".."
 * component (a static string).
 */
static int normalise(char *path, const char **bad)
{
    char *w = path;
    const char *r = path;

    while (*r != '\0') {
        while (*r == '/')
            r++;
        if (*r == '\0')
            break;
        const char *s = r;
        while (*r != '\0' && *r != '/')
            r++;
        size_t n = (size_t)(r - s);
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) {
            *bad = n == 1 ? "." : "..";
            return -EINVAL;
        }
        *w++ = '/';
        memmove(w, s, n);   /* w never passes s: it only ever shrinks */
        w += n;
    }
    if (w == path)
        *w++ = '/';
    *w = '\0';
    return 0;
}

/* Is p equal to or below base (both normalised)? */
static int path_within(const char *p, const char *base)
{
    size_t n = strlen(base);

    if (strcmp(base, "/") == 0)
        return 1;
    return strncmp(p, base, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

/* ---- lines ----------------------------------------------------------- */

static int section_header(struct pstate *ps, int line, char *s, size_t n)
{
    if (n < 2 || s[n - 1] != ']')
        return fail(ps, line, "malformed section header '%s'", s);
    s[n - 1] = '\0';
    const char *name = s + 1;
    int idx = -1;
    for (int i = 0; i < SEC_N; i++)
        if (strcmp(name, section_names[i]) == 0)
            idx = i;
    if (idx < 0)
        return fail(ps, line, "unknown section '[%s]' (sections are [Tokens], [Stop], "
                    "[Tasks], [Start])", name);
    if (ps->section_line[idx] != 0)
        return fail(ps, line, "section [%s] repeated (first at line %d)", name,
                    ps->section_line[idx]);
    if (idx < ps->section)
        return fail(ps, line, "section [%s] after [%s]: the order is [Tokens], [Stop], "
                    "[Tasks], [Start]", name, section_names[ps->section]);
    ps->section = idx;
    ps->section_line[idx] = line;
    return 0;
}

static int token_line(struct pstate *ps, int line, char *s, char *eq)
{
    char *name = s, *nend = eq, *value = eq + 1, *vend;
    char buf[SS_PATH_MAX];

    while (nend > name && is_blank(nend[-1]))
        nend--;
    *nend = '\0';
    while (is_blank(*value))
        value++;
    vend = value + strlen(value);
    while (vend > value && is_blank(vend[-1]))
        vend--;
    *vend = '\0';

    if (!token_name_ok(name, strlen(name)))
        return fail(ps, line, "bad token name '%s' (names are [A-Z][A-Z0-9_]*, "
                    "at most %d characters)", name, BKCTL_TOKEN_NAME_MAX);
    if (builtin_index(name) >= 0)
        return fail(ps, line, "%s is a built-in token and cannot be set", name);
    const struct token *old = find_token(ps, name);
    if (old != NULL)
        return fail(ps, line, "token %s set twice (first at line %d)", name, old->line);
    if (ps->ntok >= BKCTL_MAX_TOKENS)
        return fail(ps, line, "more than %d tokens", BKCTL_MAX_TOKENS);

    char what[64];
    snprintf(what, sizeof what, "the value of %s", name);
    int r = expand(ps, line, value, buf, sizeof buf, what);
    if (r < 0)
        return r;

    if (ps->tok == NULL) {
        ps->tok = calloc(BKCTL_MAX_TOKENS, sizeof *ps->tok);
        if (ps->tok == NULL)
            return -ENOMEM;
    }
    struct token *t = &ps->tok[ps->ntok];
    t->value = strdup(buf);
    if (t->value == NULL)
        return -ENOMEM;
    memcpy(t->name, name, strlen(name) + 1);
    t->line = line;
    ps->ntok++;
    return 0;
}

static int daemon_list(struct pstate *ps, int line, struct bkctl_cmd *cmd, char **words,
                       int nwords)
{
    char buf[SS_PATH_MAX];

    if (nwords < 2)
        return fail(ps, line, "%s needs at least one daemon (distmgr, sender, despool, "
                    "statmgr)", words[0]);
    for (int i = 1; i < nwords; i++) {
        int r = expand(ps, line, words[i], buf, sizeof buf, "a daemon name");
        if (r < 0)
            return r;
        if (strcmp(buf, "sitebkup") == 0)
            return fail(ps, line, "'%s sitebkup': sitebkup is the daemon running this file",
                        words[0]);
        int d = -1;
        for (size_t k = 0; k < SS_ARRAY_LEN(daemon_names); k++)
            if (strcmp(buf, daemon_names[k]) == 0)
                d = (int)k;
        if (d < 0)
            return fail(ps, line, "unknown daemon '%s' (distmgr, sender, despool, statmgr)",
                        buf);
        if (cmd->daemons & (1u << d))
            return fail(ps, line, "daemon '%s' named twice", buf);
        cmd->daemons |= 1u << d;
        memcpy(cmd->daemon_order[cmd->ndaemons], daemon_names[d], strlen(daemon_names[d]) + 1);
        cmd->ndaemons++;
    }
    return 0;
}

static int destination(struct pstate *ps, int line, struct bkctl_cmd *cmd, char **words,
                       int nwords)
{
    const char *bad = NULL;

    if (nwords != 2)
        return fail(ps, line, "destination takes exactly one path (%d given)", nwords - 1);
    int r = expand(ps, line, words[1], cmd->path, sizeof cmd->path, "the destination");
    if (r < 0)
        return r;
    if (cmd->path[0] == '\0')
        return fail(ps, line, "destination '%s' is empty", words[1]);
    if (cmd->path[0] != '/')
        return fail(ps, line, "destination '%s' is not an absolute path", cmd->path);
    if (normalise(cmd->path, &bad) < 0)
        return fail(ps, line, "destination '%s' has a '%s' component", cmd->path, bad);
    if (!path_within(cmd->path, ps->c->destination))
        return fail(ps, line, "destination '%s' is outside backup.destination '%s'", cmd->path,
                    ps->c->destination);
    return 0;
}

static int command_line(struct pstate *ps, int line, char *s)
{
    char *words[SS_PATH_MAX / 2 + 1];
    int nwords = 0;

    for (char *p = s; *p != '\0';) {
        while (is_blank(*p))
            *p++ = '\0';
        if (*p == '\0')
            break;
        words[nwords++] = p;
        while (*p != '\0' && !is_blank(*p))
            p++;
    }

    int ci = -1;
    for (size_t i = 0; i < SS_ARRAY_LEN(commands); i++)
        if (strcmp(words[0], commands[i].name) == 0)
            ci = (int)i;
    if (ci < 0)
        return fail(ps, line, "unknown command '%s'", words[0]);
    if (commands[ci].section != ps->section) {
        if (ps->section == SEC_NONE)
            return fail(ps, line, "'%s' before any section: it belongs in [%s]", words[0],
                        section_names[commands[ci].section]);
        return fail(ps, line, "'%s' belongs in [%s], not in [%s]", words[0],
                    section_names[commands[ci].section], section_names[ps->section]);
    }

    enum bkctl_op op = commands[ci].op;
    int task = op != BK_STOP && op != BK_START && op != BK_DESTINATION;
    if (op != BK_STOP && op != BK_START && ps->op_line[op] != 0)
        return fail(ps, line, "'%s' repeated (first at line %d)", words[0], ps->op_line[op]);
    if (task && nwords > 1)
        return fail(ps, line, "'%s' takes no argument, found '%s'", words[0], words[1]);
    if (op == BK_DESTINATION && ps->first_task_line != 0)
        return fail(ps, line, "destination must come before the tasks it applies to "
                    "(first task at line %d)", ps->first_task_line);
    if (ps->c->n >= BKCTL_MAX_CMDS)
        return fail(ps, line, "more than %d commands", BKCTL_MAX_CMDS);

    struct bkctl_cmd *cmd = &ps->c->cmd[ps->c->n];
    memset(cmd, 0, sizeof *cmd);
    cmd->op = op;
    cmd->line = line;
    int r = 0;
    if (op == BK_STOP || op == BK_START)
        r = daemon_list(ps, line, cmd, words, nwords);
    else if (op == BK_DESTINATION)
        r = destination(ps, line, cmd, words, nwords);
    if (r < 0)
        return r;

    if (op != BK_STOP && op != BK_START)
        ps->op_line[op] = line;
    if (task && ps->first_task_line == 0)
        ps->first_task_line = line;
    ps->c->n++;
    return 0;
}

/* One line, s[0..n) with its end removed, at most BKCTL_LINE_MAX bytes. */
static int one_line(struct pstate *ps, int line, const char *raw, size_t n)
{
    char s[BKCTL_LINE_MAX + 1];

    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)raw[i];
        if (ch == 0)
            return fail(ps, line, "NUL byte at column %zu", i + 1);
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(ps, line, "control character 0x%02x at column %zu", ch, i + 1);
    }
    while (n > 0 && is_blank(raw[n - 1]))
        n--;
    while (n > 0 && is_blank(raw[0])) {
        raw++;
        n--;
    }
    memcpy(s, raw, n);
    s[n] = '\0';

    if (n == 0 || s[0] == ';' || s[0] == '#')
        return 0;
    if (s[0] == '[')
        return section_header(ps, line, s, n);

    /* A token is one word, then '='.  A command's path may hold a '=', but
     * then a blank comes before it. */
    char *eq = strchr(s, '=');
    int is_token = 0;
    if (eq != NULL) {
        const char *p = eq;
        while (p > s && is_blank(p[-1]))
            p--;
        is_token = memchr(s, ' ', (size_t)(p - s)) == NULL &&
                   memchr(s, '\t', (size_t)(p - s)) == NULL;
    }
    if (ps->section == SEC_TOKENS) {
        if (!is_token) {
            char *w = s;
            while (*w != '\0' && !is_blank(*w))
                w++;
            *w = '\0';
            for (size_t i = 0; i < SS_ARRAY_LEN(commands); i++)
                if (strcmp(s, commands[i].name) == 0)
                    return fail(ps, line, "'%s' belongs in [%s], not in [Tokens]", s,
                                section_names[commands[i].section]);
            return fail(ps, line, "expected NAME = value in [Tokens], found '%s'", s);
        }
        return token_line(ps, line, s, eq);
    }
    if (is_token) {
        *eq = '\0';
        for (char *p = eq; p > s && is_blank(p[-1]); p--)
            p[-1] = '\0';
        return fail(ps, line, "token '%s' set outside [Tokens]", s);
    }
    return command_line(ps, line, s);
}

int bkctl_parse(const char *buf, size_t len, const struct bkctl_env *env, struct bkctl *c,
                char *err, size_t errlen)
{
    struct pstate ps;
    const char *bad = NULL;
    int r = 0, line = 0;

    memset(&ps, 0, sizeof ps);
    ps.env = env;
    ps.c = c;
    ps.section = SEC_NONE;
    ps.err = err;
    ps.errlen = errlen;
    c->n = 0;
    c->destination[0] = '\0';
    if (err != NULL && errlen > 0)
        err[0] = '\0';

    if (len > BKCTL_MAX_SIZE) {
        ss_seterr(err, errlen, "the control file is %zu bytes, more than %d", len,
                  BKCTL_MAX_SIZE);
        return -EFBIG;
    }
    if (env->destination == NULL || env->destination[0] == '\0')
        return fail(&ps, 0, "backup.destination is empty");
    if (env->destination[0] != '/')
        return fail(&ps, 0, "backup.destination '%s' is not an absolute path",
                    env->destination);
    if (ss_strcpy(c->destination, sizeof c->destination, env->destination) < 0)
        return fail(&ps, 0, "backup.destination is too long");
    if (normalise(c->destination, &bad) < 0)
        return fail(&ps, 0, "backup.destination '%s' has a '%s' component", env->destination,
                    bad);

    for (size_t pos = 0; pos < len && r == 0;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - buf) : len;
        size_t n = end - pos;

        line++;
        if (n > 0 && buf[end - 1] == '\r' && nl != NULL)
            n--;
        if (n > BKCTL_LINE_MAX)
            r = fail(&ps, line, "longer than %d bytes", BKCTL_LINE_MAX);
        else
            r = one_line(&ps, line, buf + pos, n);
        pos = end + 1;
    }

    if (r == 0 && ps.first_task_line == 0)
        r = fail(&ps, 0, "nothing to back up: no task (database, config, keys, inboxes, "
                 "store) in [Tasks]");
    if (r == 0) {
        for (int i = 0; i < c->n; i++)
            if (c->cmd[i].op == BK_DESTINATION)
                memcpy(c->destination, c->cmd[i].path, strlen(c->cmd[i].path) + 1);
    }

    for (int i = 0; i < ps.ntok; i++)
        free(ps.tok[i].value);
    free(ps.tok);
    if (r < 0)
        c->n = 0;
    return r;
}
