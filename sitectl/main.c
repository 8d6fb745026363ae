/*
 * NAME
 *   main.c - sitectl: the one administrator command of a sitesrv site.
 *
 * SYNOPSIS
 *   sitectl [--root DIR] COMMAND [options]
 *   ctl_err(), ctl_usage_error(), ctl_opt(), ctl_flag(), ctl_common(),
 *   ctl_listing_args(), ctl_root(), ctl_cmd_usage(), ctl_print_sbuf(),
 *   ctl_json_array_end()
 *
 * DESCRIPTION
 *   Dispatches the command word to its subsystem (site.c, daemons.c,
 *   messages.c, client.c, sites.c, package.c, send.c, backup.c) and holds
 *   what they share: option parsing and the site root.  The root comes
 *   from --root (before the command or among its options, SPEC 9), else
 *   $SITESRV_ROOT, else the installed root /var/lib/sitesrv (restore
 *   takes only --root: it names the new site).  A usage text may hold
 *   several lines ('\n'), each printed as a usage line of its own.
 *
 * DIAGNOSTICS
 *   Errors on stderr as "sitectl: ...".  Exit 0 success, 1 failure,
 *   2 usage (unknown command or option, missing argument).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sitectl.h"

struct cmd {
    const char *name;
    int (*fn)(struct ctl *c, int argc, char **argv);
    const char *usage;
};

static const struct cmd cmds[] = {
    { "init",     cmd_init,     "init --site CODE [--parent CODE] [--root DIR]" },
    { "start",    cmd_start,    "start [--timeout SECONDS] [DAEMON...]" },
    { "stop",     cmd_stop,     "stop [--timeout SECONDS] [--force] [DAEMON...]" },
    { "status",   cmd_status,   "status [--json]" },
    { "inbox",    cmd_inbox,    "inbox [--json]" },
    { "config",   cmd_config,   "config set SECTION.KEY VALUE | config get SECTION.KEY | config show" },
    { "messages", cmd_messages, "messages [--id N] [--component NAME] [--severity I|W|E] "
                                "[--since TIME] [--limit N] [--json]" },
    { "client",   cmd_client,   "client send-status --cap DIR --id N [--severity I|W|E] "
                                "[--component NAME] [--machine NAME] [--site CODE] "
                                "[--istr TEXT]... [--attr NAME=VALUE]... [--queue DIR]" },
    /* One line per subcommand group: '\n' starts another usage line. */
    { "dp",       cmd_dp,       "dp add NAME PATH | dp remove NAME | dp list [--json]" },
    { "site",     cmd_site,     "site add CODE --address ADDR --key PUBFILE | site remove CODE"
                                " | site list [--json]" },
    { "package",  cmd_package,  "package add --name NAME --source DIR [--dp NAME]... [--priority P]\n"
                                "package update ID [--priority P] | package delete ID\n"
                                "package list [--json] | package show ID [--json]\n"
                                "package wait ID [--timeout SECONDS]" },
    { "retry",    cmd_retry,    "retry list [--json] | retry now [ID [DP]] | retry clear ID [DP]" },
    { "send",     cmd_send,     "send list [--json] | send now [SITE]" },
    { "backup",   cmd_backup,   "backup now [--wait] [--timeout SECONDS] | backup list [--json]" },
    { "restore",  cmd_restore,  "restore BACKUP --root DIR" },
};

static void vctl_err(const char *fmt, va_list ap) SS_PRINTF(1, 0);
static void vctl_err(const char *fmt, va_list ap)
{
    fputs("sitectl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void ctl_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vctl_err(fmt, ap);
    va_end(ap);
}

int ctl_print_sbuf(const struct sbuf *b)
{
    /* An sbuf that failed to grow has no data: printing a part of a JSON
     * document would hand a script something it cannot parse. */
    if (!b->data) {
        ctl_err("out of memory");
        return CTL_FAIL;
    }
    fputs(b->data, stdout);
    return CTL_OK;
}

int ctl_json_array_end(struct sbuf *b, int n)
{
    ss_sbuf_adds(b, n ? "\n]\n" : "]\n");
    return ctl_print_sbuf(b);
}

/* A usage text, one line per '\n'-separated part, each as
 * "<lead>sitectl [--root DIR] PART" (lead: "usage: " on the first line,
 * as many blanks on the others), or "<indent>PART" when bare. */
static void print_usage_lines(FILE *f, const char *u, int bare)
{
    for (int first = 1; *u; first = 0) {
        size_t n = strcspn(u, "\n");
        if (bare)
            fprintf(f, "  %.*s\n", (int)n, u);
        else
            fprintf(f, "%s sitectl [--root DIR] %.*s\n", first ? "usage:" : "      ", (int)n, u);
        u += n;
        if (*u == '\n')
            u++;
    }
}

const char *ctl_cmd_usage(const char *cmd)
{
    for (size_t i = 0; cmd && i < SS_ARRAY_LEN(cmds); i++)
        if (strcmp(cmds[i].name, cmd) == 0)
            return cmds[i].usage;
    return NULL;
}

void ctl_usage_error(const struct ctl *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vctl_err(fmt, ap);
    va_end(ap);
    const char *u = ctl_cmd_usage(c ? c->cmd : NULL);
    if (u)
        print_usage_lines(stderr, u, 0);
    else
        fprintf(stderr, "usage: sitectl [--root DIR] COMMAND [options]  (sitectl --help)\n");
    exit(CTL_USAGE);
}

int ctl_flag(const char *arg, const char *name)
{
    return strcmp(arg, name) == 0;
}

int ctl_opt(const struct ctl *c, int argc, char **argv, int *i,
            const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        ctl_usage_error(c, "option %s needs an argument", name);
    *val = argv[++*i];
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sitectl [--root DIR] COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < SS_ARRAY_LEN(cmds); i++)
        print_usage_lines(f, cmds[i].usage, 1);
    fprintf(f, "\nDAEMON is one of:");
    for (size_t i = 0; i < ctl_ndaemons; i++)
        fprintf(f, " %s", ctl_daemons[i]);
    fprintf(f, " (none named: all).\n"
               "The site root is --root DIR, else $SITESRV_ROOT, else %s.\n"
               "Exit status: 0 success, 1 failure, 2 usage.\n", CTL_DEFAULT_ROOT);
}

int ctl_listing_args(struct ctl *c, int argc, char **argv)
{
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (ctl_common(c, argc, argv, &i))
            continue;
        if (!ctl_flag(argv[i], "--json"))
            ctl_usage_error(c, "unexpected argument %s", argv[i]);
        json = 1;
    }
    return json;
}

int ctl_common(struct ctl *c, int argc, char **argv, int *i)
{
    const char *v;
    if (ctl_opt(c, argc, argv, i, "--root", &v)) {
        if (!*v)
            ctl_usage_error(c, "--root needs a directory");
        c->root_opt = v;
        return 1;
    }
    if (ctl_flag(argv[*i], "--help") || ctl_flag(argv[*i], "-h")) {
        const char *u = ctl_cmd_usage(c->cmd);
        if (u)
            print_usage_lines(stdout, u, 0);
        else
            usage(stdout);
        exit(CTL_OK);
    }
    return 0;
}

void ctl_open_log(const char *root)
{
    char dir[SS_PATH_MAX];
    if (sslog_default || ss_path(dir, sizeof dir, "%s/logs", root) < 0 ||
        access(dir, W_OK) < 0)
        return;
    sslog_default = sslog_open(dir, "sitectl", "sitectl", 2u << 20);
}

const char *ctl_root(struct ctl *c)
{
    const char *r = c->root_opt;
    if (!r || !*r)
        r = getenv("SITESRV_ROOT");
    if (!r || !*r)
        r = CTL_DEFAULT_ROOT;

    /* An absolute root: daemons get it on their command line and the user
     * reads it back in `status`.  realpath() is not used, so that an
     * installed root of symlinks is shown as the administrator knows it. */
    if (r[0] == '/') {
        if (ss_strcpy(c->root, sizeof c->root, r) < 0) {
            ctl_err("site root too long: %s", r);
            exit(CTL_FAIL);
        }
    } else {
        char cwd[SS_PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) ||
            ss_path(c->root, sizeof c->root, "%s/%s", cwd, r) < 0) {
            ctl_err("cannot make the site root %s absolute", r);
            exit(CTL_FAIL);
        }
    }
    /* Trailing slashes only make the paths we print uglier. */
    size_t n = strlen(c->root);
    while (n > 1 && c->root[n - 1] == '/')
        c->root[--n] = '\0';
    ctl_open_log(c->root);
    return c->root;
}

int main(int argc, char **argv)
{
    struct ctl c;
    memset(&c, 0, sizeof c);

    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (ctl_flag(argv[i], "--version")) {
            printf("sitectl (sitesrv) %s\n", SS_VERSION);
            return CTL_OK;
        }
        if (!ctl_common(&c, argc, argv, &i))
            ctl_usage_error(&c, "unknown option %s", argv[i]);
    }
    if (i >= argc)
        ctl_usage_error(&c, "no command given");

    const char *cmd = argv[i];
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CTL_OK;
    }
    for (size_t k = 0; k < SS_ARRAY_LEN(cmds); k++) {
        if (strcmp(cmds[k].name, cmd) == 0) {
            c.cmd = cmds[k].name;
            return cmds[k].fn(&c, argc - i - 1, argv + i + 1);
        }
    }
    ctl_usage_error(&c, "unknown command '%s'", cmd);
}
