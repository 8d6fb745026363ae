/*
 * test_bkctl.c - the backup control file parser: good files and what they
 * parse to, refusals with their line and the word they name, limits, the
 * default file and the shipped example config/sitebkup.ctl.
 */
#include "testutil.h"

#include <stdio.h>

#include "bkctl.h"
#include "util.h"

static const struct bkctl_env env = {
    .site = "CEN",
    .root = "/srv/sitesrv/CEN",
    .destination = "/srv/backup",
};

static const char *const op_names[] = {
    [BK_STOP] = "stop", [BK_DESTINATION] = "destination", [BK_DATABASE] = "database",
    [BK_CONFIG] = "config", [BK_KEYS] = "keys", [BK_INBOXES] = "inboxes",
    [BK_STORE] = "store", [BK_START] = "start",
};

/* The parse as text: "N:op args;" for each command, then "> destination". */
static void render(const struct bkctl *c, struct sbuf *b)
{
    ss_sbuf_reset(b);
    ss_sbuf_adds(b, "");
    for (int i = 0; i < c->n; i++) {
        const struct bkctl_cmd *cmd = &c->cmd[i];
        ss_sbuf_addf(b, "%d:%s", cmd->line, op_names[cmd->op]);
        if (cmd->op == BK_STOP || cmd->op == BK_START) {
            unsigned mask = 0;
            for (int k = 0; k < cmd->ndaemons; k++) {
                ss_sbuf_addf(b, " %s", cmd->daemon_order[k]);
                mask |= !strcmp(cmd->daemon_order[k], "distmgr") ? BK_D_DISTMGR
                      : !strcmp(cmd->daemon_order[k], "sender")  ? BK_D_SENDER
                      : !strcmp(cmd->daemon_order[k], "despool") ? BK_D_DESPOOL
                      : !strcmp(cmd->daemon_order[k], "statmgr") ? BK_D_STATMGR : 0x100;
            }
            /* The mask and the names say the same thing. */
            assert_int_equal(mask, cmd->daemons);
        }
        if (cmd->op == BK_DESTINATION)
            ss_sbuf_addf(b, " %s", cmd->path);
        else
            assert_string_equal(cmd->path, "");
        ss_sbuf_adds(b, ";");
    }
    ss_sbuf_addf(b, "> %s", c->destination);
}

static struct bkctl *new_bkctl(void)
{
    struct bkctl *c = malloc(sizeof *c);
    assert_non_null(c);
    return c;
}

/* ---- good files ---------------------------------------------------------- */

static const struct {
    const char *label, *input, *want;
} good[] = {
    {"one task", "[Tasks]\ndatabase\n", "2:database;> /srv/backup"},
    {"all tasks, comments, blanks, CRLF",
     "; head\r\n# also\r\n\r\n  [Tasks]  \r\n\tdatabase \r\nconfig\r\nkeys\r\ninboxes\r\nstore",
     "5:database;6:config;7:keys;8:inboxes;9:store;> /srv/backup"},
    {"stop and start lists in order",
     "[Stop]\nstop sender  distmgr\tstatmgr\nstop despool\n[Tasks]\ndatabase\n"
     "[Start]\nstart despool statmgr distmgr sender\n",
     "2:stop sender distmgr statmgr;3:stop despool;5:database;"
     "7:start despool statmgr distmgr sender;> /srv/backup"},
    {"destination below",
     "[Tasks]\ndestination /srv/backup/weekly\ndatabase\n",
     "2:destination /srv/backup/weekly;3:database;> /srv/backup/weekly"},
    {"destination equal", "[Tasks]\ndestination /srv/backup\nconfig\n",
     "2:destination /srv/backup;3:config;> /srv/backup"},
    {"destination normalised", "[Tasks]\ndestination //srv///backup/a//b/\nkeys\n",
     "2:destination /srv/backup/a/b;3:keys;> /srv/backup/a/b"},
    {"token chain",
     "[Tokens]\nA = %DESTINATION%\nB=%A%/%SITE%\n  C =  %B%/x y  \n[Tasks]\n"
     "destination %C%\ndatabase\n",
     "6:destination /srv/backup/CEN/x y;7:database;> /srv/backup/CEN/x y"},
    {"%% is a literal %",
     "[Tokens]\nP = 100%%\n[Tasks]\ndestination %DESTINATION%/%P%/%%SITE%%\nstore\n",
     "4:destination /srv/backup/100%/%SITE%;5:store;> /srv/backup/100%/%SITE%"},
    {"empty token, value with = ; #",
     "[Tokens]\nE =\nV = a=b ; c # d\n[Tasks]\ndestination %DESTINATION%%E%/x\ninboxes\n",
     "5:destination /srv/backup/x;6:inboxes;> /srv/backup/x"},
    {"tokens in daemon names",
     "[Tokens]\nD = sender\n[Stop]\nstop %D%\n[Tasks]\nconfig\n[Start]\nstart %D%\n",
     "4:stop sender;6:config;8:start sender;> /srv/backup"},
    {"built-ins", "[Tokens]\nX = %ROOT%:%SITE%:%DESTINATION%\n[Tasks]\nkeys\n",
     "4:keys;> /srv/backup"},
    {"a path with '='", "[Tasks]\ndestination /srv/backup/a=b\ndatabase\n",
     "2:destination /srv/backup/a=b;3:database;> /srv/backup/a=b"},
    {"empty sections", "[Tokens]\n[Stop]\n[Tasks]\ndatabase\n[Start]\n",
     "4:database;> /srv/backup"},
    {"daemon in two lines", "[Stop]\nstop sender\nstop sender\n[Tasks]\ndatabase\n",
     "2:stop sender;3:stop sender;5:database;> /srv/backup"},
};

static void test_good(void **state)
{
    struct bkctl *c = new_bkctl();
    struct sbuf b;
    ss_sbuf_init(&b);

    for (size_t i = 0; i < SS_ARRAY_LEN(good); i++) {
        char err[SS_ERR_MAX] = "";
        int r = bkctl_parse(good[i].input, strlen(good[i].input), &env, c, err, sizeof err);
        if (r != 0)
            fail_msg("%s: r=%d err=\"%s\"", good[i].label, r, err);
        render(c, &b);
        if (strcmp(b.data, good[i].want) != 0)
            fail_msg("%s: got \"%s\" want \"%s\"", good[i].label, b.data, good[i].want);
    }
    ss_sbuf_free(&b);
    free(c);
}

static void test_default(void **state)
{
    struct bkctl *c = new_bkctl();
    char err[SS_ERR_MAX] = "";
    struct sbuf b;
    ss_sbuf_init(&b);

    assert_int_equal(bkctl_parse(bkctl_default, strlen(bkctl_default), &env, c, err,
                                 sizeof err), 0);
    render(c, &b);
    /* Every task, and nothing stops a daemon. */
    const char *want[] = {"config;", "keys;", "inboxes;", "database;", "store;"};
    for (size_t i = 0; i < SS_ARRAY_LEN(want); i++)
        if (strstr(b.data, want[i]) == NULL)
            fail_msg("default lacks %s: %s", want[i], b.data);
    assert_null(strstr(b.data, "stop"));
    assert_null(strstr(bkctl_default, "\n[Stop]"));
    assert_string_equal(c->destination, "/srv/backup");
    ss_sbuf_free(&b);
    free(c);
}

/* ---- refusals ---------------------------------------------------------- */

static const struct {
    const char *label, *input;
    size_t len;                 /* 0: strlen(input) */
    int line;                   /* 0: a message without a line */
    const char *word;           /* in the message */
} bad[] = {
    {"unknown section", "[Tasks]\ndatabase\n[Cleanup]\n", 0, 3, "[Cleanup]"},
    {"section case", "[tasks]\ndatabase\n", 0, 1, "[tasks]"},
    {"section with blanks", "[ Tasks ]\ndatabase\n", 0, 1, "[ Tasks ]"},
    {"malformed header", "[Tasks\ndatabase\n", 0, 1, "[Tasks"},
    {"repeated section", "[Tasks]\ndatabase\n[Tasks]\nconfig\n", 0, 3, "repeated"},
    {"out-of-order section", "[Tasks]\ndatabase\n[Stop]\nstop sender\n", 0, 3, "[Stop]"},
    {"tokens after tasks", "[Tasks]\ndatabase\n[Tokens]\n", 0, 3, "[Tokens]"},
    {"unknown command", "[Tasks]\ndatabase\nbackup_all\n", 0, 3, "backup_all"},
    {"command case", "[Tasks]\nDatabase\n", 0, 2, "Database"},
    {"stop in [Tasks]", "[Tasks]\ndatabase\nstop sender\n", 0, 3, "stop"},
    {"start in [Stop]", "[Stop]\nstart sender\n[Tasks]\ndatabase\n", 0, 2, "start"},
    {"task in [Start]", "[Tasks]\ndatabase\n[Start]\nconfig\n", 0, 4, "config"},
    {"task in [Tokens]", "[Tokens]\ndatabase\n", 0, 2, "database"},
    {"command before a section", "database\n[Tasks]\nconfig\n", 0, 1, "database"},
    {"not a token in [Tokens]", "[Tokens]\nhello world\n", 0, 2, "hello"},
    {"token outside [Tokens]", "[Tasks]\nX = 1\ndatabase\n", 0, 2, "'X'"},
    {"token before a section", "X = 1\n[Tasks]\ndatabase\n", 0, 1, "X"},
    {"unset token", "[Tasks]\ndestination %DESTINATION%/%WEEKLY%\ndatabase\n", 0, 2,
     "%WEEKLY%"},
    {"token used above its line", "[Tokens]\nA = %B%\nB = x\n[Tasks]\ndatabase\n", 0, 2,
     "%B%"},
    {"token refers to itself", "[Tokens]\nA = %A%\n[Tasks]\ndatabase\n", 0, 2, "%A%"},
    {"token redefined", "[Tokens]\nA = 1\n\nA = 2\n[Tasks]\ndatabase\n", 0, 4, "A"},
    {"built-in SITE redefined", "[Tokens]\nSITE = X01\n[Tasks]\ndatabase\n", 0, 2, "SITE"},
    {"built-in DESTINATION redefined", "[Tokens]\nDESTINATION = /tmp\n[Tasks]\ndatabase\n",
     0, 2, "DESTINATION"},
    {"lower-case token name", "[Tokens]\nweekly = x\n[Tasks]\ndatabase\n", 0, 2, "weekly"},
    {"token name with a digit first", "[Tokens]\n1A = x\n[Tasks]\ndatabase\n", 0, 2, "1A"},
    {"token name too long",
     "[Tokens]\nA234567890123456789012345678901234 = x\n[Tasks]\ndatabase\n", 0, 2,
     "A234567890123456789012345678901234"},
    {"empty token name", "[Tokens]\n= x\n[Tasks]\ndatabase\n", 0, 2, "''"},
    {"bad name in %...%", "[Tokens]\nA = /srv/backup/%a b%\n[Tasks]\ndatabase\n", 0, 2,
     "%a b%"},
    {"lower-case name in %...%", "[Tasks]\ndestination /srv/backup/%site%\ndatabase\n", 0,
     2, "%site%"},
    {"unterminated %", "[Tasks]\n\ndestination /srv/backup/50%\ndatabase\n", 0, 3,
     "unterminated"},
    {"unterminated % in a token", "[Tokens]\nA = 5%\n[Tasks]\ndatabase\n", 0, 2,
     "unterminated"},
    {"destination relative", "[Tasks]\ndestination backup/x\ndatabase\n", 0, 2, "backup/x"},
    {"destination empty", "[Tokens]\nE =\n[Tasks]\ndestination %E%\ndatabase\n", 0, 4,
     "empty"},
    {"destination without path", "[Tasks]\ndestination\ndatabase\n", 0, 2, "destination"},
    {"destination two paths", "[Tasks]\ndestination /srv/backup/a /srv/backup/b\n", 0, 2,
     "destination"},
    {"destination with ..", "[Tasks]\ndestination /srv/backup/../etc\ndatabase\n", 0, 2,
     "'..'"},
    {"destination with .", "[Tasks]\ndestination /srv/backup/./x\ndatabase\n", 0, 2, "'.'"},
    {"destination outside", "[Tasks]\ndestination /var/tmp\ndatabase\n", 0, 2, "/var/tmp"},
    {"destination above", "[Tasks]\ndestination /srv\ndatabase\n", 0, 2, "/srv"},
    {"destination sibling prefix", "[Tasks]\ndestination /srv/backup2/x\ndatabase\n", 0, 2,
     "/srv/backup2/x"},
    {"destination twice",
     "[Tasks]\ndestination /srv/backup/a\ndestination /srv/backup/b\ndatabase\n", 0, 3,
     "repeated"},
    {"destination after a task", "[Tasks]\ndatabase\ndestination /srv/backup/a\n", 0, 3,
     "destination"},
    {"sitebkup in stop", "[Stop]\nstop sender sitebkup\n[Tasks]\ndatabase\n", 0, 2,
     "sitebkup"},
    {"sitebkup in start", "[Tasks]\ndatabase\n[Start]\nstart sitebkup\n", 0, 4, "sitebkup"},
    {"unknown daemon", "[Stop]\nstop sender schedulr\n[Tasks]\ndatabase\n", 0, 2,
     "schedulr"},
    {"daemon case", "[Stop]\nstop Sender\n[Tasks]\ndatabase\n", 0, 2, "Sender"},
    {"daemon twice", "[Tasks]\ndatabase\n[Start]\nstart sender distmgr sender\n", 0, 4,
     "sender"},
    {"stop without daemon", "[Stop]\nstop\n[Tasks]\ndatabase\n", 0, 2, "stop"},
    {"task twice", "[Tasks]\ndatabase\nconfig\n\ndatabase\n", 0, 5, "database"},
    {"task with an argument", "[Tasks]\ndatabase /tmp/x\n", 0, 2, "/tmp/x"},
    {"trailing comment is an argument", "[Tasks]\nkeys ; the keys\n", 0, 2, "keys"},
    {"no task", "[Stop]\nstop sender\n[Start]\nstart sender\n", 0, 0, "nothing to back up"},
    {"no task, destination only", "[Tasks]\ndestination /srv/backup/a\n", 0, 0,
     "nothing to back up"},
    {"empty file", "", 0, 0, "nothing to back up"},
    {"NUL byte", "[Tasks]\ndatabase\ncon\0fig\n", 25, 3, "NUL"},
    {"control character", "[Tasks]\ndata\033base\n", 0, 2, "0x1b"},
    {"bare CR", "[Tasks]\ndatabase\rconfig\n", 0, 2, "0x0d"},
};

static void test_bad(void **state)
{
    struct bkctl *c = new_bkctl();

    for (size_t i = 0; i < SS_ARRAY_LEN(bad); i++) {
        char err[SS_ERR_MAX] = "", prefix[32];
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].input);
        c->n = 99;
        int r = bkctl_parse(bad[i].input, len, &env, c, err, sizeof err);
        if (r != -EBADMSG)
            fail_msg("%s: r=%d, want -EBADMSG (err \"%s\")", bad[i].label, r, err);
        if (c->n != 0)
            fail_msg("%s: c->n=%d after a refusal", bad[i].label, c->n);
        snprintf(prefix, sizeof prefix, "line %d: ", bad[i].line);
        if (bad[i].line > 0 ? strncmp(err, prefix, strlen(prefix)) != 0
                            : strncmp(err, "line ", 5) == 0)
            fail_msg("%s: err \"%s\", want it to start with \"%s\"", bad[i].label, err,
                     bad[i].line > 0 ? prefix : "(no line)");
        if (strstr(err, bad[i].word) == NULL)
            fail_msg("%s: err \"%s\" does not name \"%s\"", bad[i].label, err, bad[i].word);
    }
    free(c);
}

/* ---- the environment ------------------------------------------------- */

static void test_env(void **state)
{
    static const struct {
        const char *label, *destination, *input, *want_err, *want_dest;
    } cases[] = {
        {"relative backup.destination", "backup", "[Tasks]\ndatabase\n", "not an absolute",
         NULL},
        {"empty backup.destination", "", "[Tasks]\ndatabase\n", "empty", NULL},
        {"no backup.destination", NULL, "[Tasks]\ndatabase\n", "empty", NULL},
        {"backup.destination with ..", "/srv/../backup", "[Tasks]\ndatabase\n", "'..'", NULL},
        {"backup.destination normalised", "/srv//backup/", "[Tasks]\ndatabase\n", NULL,
         "/srv/backup"},
        {"below a normalised backup.destination", "/srv//backup/",
         "[Tasks]\ndestination /srv/backup/x\ndatabase\n", NULL, "/srv/backup/x"},
        {"backup.destination /", "/", "[Tasks]\ndestination /any/where\ndatabase\n", NULL,
         "/any/where"},
    };
    struct bkctl *c = new_bkctl();

    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        struct bkctl_env e = env;
        char err[SS_ERR_MAX] = "";
        e.destination = cases[i].destination;
        int r = bkctl_parse(cases[i].input, strlen(cases[i].input), &e, c, err, sizeof err);
        if (cases[i].want_err != NULL) {
            if (r != -EBADMSG || strstr(err, cases[i].want_err) == NULL)
                fail_msg("%s: r=%d err \"%s\"", cases[i].label, r, err);
        } else {
            if (r != 0)
                fail_msg("%s: r=%d err \"%s\"", cases[i].label, r, err);
            assert_string_equal(c->destination, cases[i].want_dest);
        }
    }

    /* A built-in the caller did not give is unset. */
    struct bkctl_env e = env;
    char err[SS_ERR_MAX] = "";
    const char *in = "[Tokens]\nX = %SITE%\n[Tasks]\ndatabase\n";
    e.site = NULL;
    assert_int_equal(bkctl_parse(in, strlen(in), &e, c, err, sizeof err), -EBADMSG);
    assert_string_equal(err, "line 2: token %SITE% is not set");
    free(c);
}

/* ---- limits ----------------------------------------------------------- */

static void test_limits(void **state)
{
    struct bkctl *c = new_bkctl();
    char err[SS_ERR_MAX];
    struct sbuf b;
    ss_sbuf_init(&b);

    /* A line of exactly BKCTL_LINE_MAX bytes is read; one more is refused. */
    ss_sbuf_adds(&b, "[Tasks]\ndatabase\n;");
    for (int i = 1; i < BKCTL_LINE_MAX; i++)
        ss_sbuf_adds(&b, "x");
    ss_sbuf_adds(&b, "\n");
    assert_int_equal(bkctl_parse(b.data, b.len, &env, c, err, sizeof err), 0);
    ss_sbuf_reset(&b);
    ss_sbuf_adds(&b, "[Tasks]\ndatabase\n;");
    for (int i = 0; i < BKCTL_LINE_MAX; i++)
        ss_sbuf_adds(&b, "x");
    ss_sbuf_adds(&b, "\r\nconfig\n");
    assert_int_equal(bkctl_parse(b.data, b.len, &env, c, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "line 3: longer than"));

    /* BKCTL_MAX_CMDS commands are read; one more is refused on its line. */
    ss_sbuf_reset(&b);
    ss_sbuf_adds(&b, "[Stop]\n");
    for (int i = 0; i < BKCTL_MAX_CMDS - 1; i++)
        ss_sbuf_adds(&b, "stop sender\n");
    ss_sbuf_adds(&b, "[Tasks]\ndatabase\n");
    assert_int_equal(bkctl_parse(b.data, b.len, &env, c, err, sizeof err), 0);
    assert_int_equal(c->n, BKCTL_MAX_CMDS);
    ss_sbuf_adds(&b, "config\n");
    assert_int_equal(bkctl_parse(b.data, b.len, &env, c, err, sizeof err), -EBADMSG);
    char want[64];
    snprintf(want, sizeof want, "line %d: more than %d commands", BKCTL_MAX_CMDS + 3,
             BKCTL_MAX_CMDS);
    assert_string_equal(err, want);

    /* More than BKCTL_MAX_TOKENS tokens. */
    ss_sbuf_reset(&b);
    ss_sbuf_adds(&b, "[Tokens]\n");
    for (int i = 0; i <= BKCTL_MAX_TOKENS; i++)
        ss_sbuf_addf(&b, "T%d = %d\n", i, i);
    ss_sbuf_adds(&b, "[Tasks]\ndatabase\n");
    assert_int_equal(bkctl_parse(b.data, b.len, &env, c, err, sizeof err), -EBADMSG);
    snprintf(want, sizeof want, "line %d: more than %d tokens", BKCTL_MAX_TOKENS + 2,
             BKCTL_MAX_TOKENS);
    assert_string_equal(err, want);

    /* A token doubled until it no longer fits a path. */
    ss_sbuf_reset(&b);
    ss_sbuf_adds(&b, "[Tokens]\nA0 = xxxxxxxxxxxxxxxx\n");
    for (int i = 1; i <= 8; i++)
        ss_sbuf_addf(&b, "A%d = %%A%d%%%%A%d%%\n", i, i - 1, i - 1);
    ss_sbuf_adds(&b, "[Tasks]\ndatabase\n");
    assert_int_equal(bkctl_parse(b.data, b.len, &env, c, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "line 10: the value of A8 is longer"));

    /* A file over BKCTL_MAX_SIZE, however good its lines. */
    ss_sbuf_reset(&b);
    ss_sbuf_adds(&b, "[Tasks]\ndatabase\n");
    while (b.len <= BKCTL_MAX_SIZE)
        ss_sbuf_adds(&b, "; padding padding padding padding padding padding padding\n");
    assert_int_equal(bkctl_parse(b.data, b.len, &env, c, err, sizeof err), -EFBIG);
    assert_int_equal(c->n, 0);

    ss_sbuf_free(&b);
    free(c);
}

/* ---- the shipped example ----------------------------------------------- */

/* config/sitebkup.ctl runs what the default runs; with its "# " example
 * lines uncommented it is still a good file. */
static void test_example(void **state)
{
    const char *src = getenv("SITESRV_SRCDIR");
    char path[SS_PATH_MAX], err[SS_ERR_MAX] = "";
    struct bkctl *c = new_bkctl(), *d = new_bkctl();
    struct sbuf got, want;

    if (src == NULL || *src == '\0')
        src = ".";
    assert_int_equal(ss_path(path, sizeof path, "%s/config/sitebkup.ctl", src), 0);
    char *text = tu_read(path, NULL);
    ss_sbuf_init(&got);
    ss_sbuf_init(&want);

    if (bkctl_parse(text, strlen(text), &env, c, err, sizeof err) != 0)
        fail_msg("%s: %s", path, err);
    assert_int_equal(bkctl_parse(bkctl_default, strlen(bkctl_default), &env, d, err,
                                 sizeof err), 0);
    assert_int_equal(c->n, d->n);
    for (int i = 0; i < c->n; i++)
        assert_int_equal(c->cmd[i].op, d->cmd[i].op);

    /* Uncomment the examples: "# x" becomes "x". */
    ss_sbuf_adds(&got, "");
    int examples = 0;
    for (char *line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
        if (n >= 2 && line[0] == '#' && line[1] == ' ') {
            ss_sbuf_add(&got, line + 2, n - 2);
            examples++;
        } else {
            ss_sbuf_add(&got, line, n);
        }
        line += n;
    }
    assert_true(examples > 0);
    if (bkctl_parse(got.data, got.len, &env, c, err, sizeof err) != 0)
        fail_msg("%s with the examples uncommented: %s", path, err);
    render(c, &want);
    assert_non_null(strstr(want.data, "stop"));
    assert_non_null(strstr(want.data, "start"));
    assert_non_null(strstr(want.data, "destination"));

    ss_sbuf_free(&got);
    ss_sbuf_free(&want);
    free(text);
    free(c);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
