/*
 * NAME
 *   site.c - sitectl init, config and inbox: the site root, its
 *   configuration and its inbox backlog.
 *
 * SYNOPSIS
 *   cmd_init(), cmd_config(), cmd_inbox(), ctl_inbox_report(),
 *   ctl_load_conf(), ctl_make_dir()
 *
 * DESCRIPTION
 *   init builds a fresh site root (SPEC 2): site.conf, keys/ with the
 *   site's Ed25519 signing key pair, the inbox tree from inboxes.def,
 *   db/site.db (migrated by sitedb), logs/, store/, run/, backup/.
 *   site.conf is written last, because its presence is what "initialised"
 *   means: an init that fails half-way never looks complete, and it
 *   removes what it created - and only that - so a failed init leaves
 *   the tree exactly as it found it (apart from inboxes made inside an
 *   inbox directory that already existed, which are harmless and empty).
 *   An installed root (tools/install.sh) is made of symlinks to the FHS
 *   places; a symlink whose target is missing is created through.
 *
 *   config edits site.conf through lib/conf (checked value, atomic
 *   replace keeping comments) and tells every running daemon to reload
 *   with SIGHUP.  inbox reports lib/inbox's backlog of every declared
 *   inbox, and what shows stuck work, which lib/inbox does not count:
 *   files claimed in work/ (a reader that hangs or died) and files left
 *   in .tmp/ (a writer that died mid-drop; recovery removes them once
 *   INBOX_TMP_STALE_S old).  ctl_load_conf is the one test of "is this
 *   an initialised site root" for the commands that need one.
 *
 * DIAGNOSTICS
 *   "sitectl: ..." on stderr; exit 1 for a failure (a root whose site.conf
 *   is missing or does not load, an inbox that cannot be read), 2 for a
 *   usage error (an unknown configuration key is one).
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "conf.h"
#include "fsutil.h"
#include "inbox.h"
#include "record.h"
#include "sitedb.h"
#include "sitectl.h"

/* ---- init: what we created, to undo it on failure ---- */

struct undo {
    struct { char *path; int dir; } e[32];
    int n;
};

static void undo_add(struct undo *u, const char *path, int dir)
{
    if (!u || u->n >= (int)SS_ARRAY_LEN(u->e))
        return;                      /* cannot happen: init makes < 32 */
    u->e[u->n].path = strdup(path);
    u->e[u->n].dir = dir;
    if (u->e[u->n].path)
        u->n++;
}

static void undo_run(struct undo *u, int really)
{
    for (int i = u->n - 1; i >= 0; i--) {
        if (really) {
            int r = u->e[i].dir ? ss_rm_rf(u->e[i].path)
                                : (unlink(u->e[i].path) < 0 && errno != ENOENT ? -errno : 0);
            if (r < 0)
                ctl_err("cannot remove %s: %s", u->e[i].path, strerror(-r));
        }
        free(u->e[i].path);
    }
    u->n = 0;
}

/* An installed root holds symlinks (site.conf -> /etc/sitesrv/site.conf,
 * run -> /run/sitesrv ...).  When such a link dangles, create its target:
 * out receives the path to create (the link target, made absolute), or
 * path itself when it is not a symlink. */
static int creation_path(const char *path, char *out, size_t len)
{
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISLNK(st.st_mode))
        return ss_strcpy(out, len, path);
    char t[SS_PATH_MAX];
    ssize_t n = readlink(path, t, sizeof t - 1);
    if (n < 0)
        return -errno;
    t[n] = '\0';
    if (t[0] == '/')
        return ss_strcpy(out, len, t);
    const char *slash = strrchr(path, '/');
    int dl = slash ? (int)(slash - path) : 1;
    return ss_path(out, len, "%.*s/%s", dl, slash ? path : ".", t);
}

/* Make one directory of the root unless it exists; record it for undo. */
static int make_dir(struct undo *u, const char *path, mode_t mode)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
    if (errno != ENOENT)
        return -errno;
    char mk[SS_PATH_MAX];
    int r = creation_path(path, mk, sizeof mk);
    if (r < 0)
        return r;
    if (mkdir(mk, mode) < 0)
        return -errno;
    undo_add(u, mk, 1);
    if (chmod(mk, mode) < 0)          /* the umask must not loosen keys/ */
        return -errno;
    return 0;
}

int ctl_make_dir(const char *path, mode_t mode)
{
    return make_dir(NULL, path, mode);
}

/* Create the root, remembering the highest directory that did not exist
 * so that a failed init removes all of what it made and nothing else. */
static int make_root(struct undo *u, const char *root)
{
    char top[SS_PATH_MAX], p[SS_PATH_MAX];
    int r = ss_strcpy(p, sizeof p, root);
    if (r < 0)
        return r;
    top[0] = '\0';
    for (;;) {
        struct stat st;
        if (stat(p, &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
            break;
        }
        if (errno != ENOENT)
            return -errno;
        ss_strcpy(top, sizeof top, p);
        char *s = strrchr(p, '/');
        if (!s || s == p)
            break;
        *s = '\0';
    }
    if (!top[0])
        return 0;                     /* the root exists */
    r = ss_mkdir_p(root, 0755);
    if (r < 0)
        return r;
    undo_add(u, top, 1);
    return 0;
}

/* A new file that must not exist yet (O_EXCL): written, flushed, closed. */
static int write_new(struct undo *u, const char *path, const void *data,
                     size_t len, mode_t mode)
{
    char mk[SS_PATH_MAX];
    int r = creation_path(path, mk, sizeof mk);
    if (r < 0)
        return r;
    int fd = open(mk, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    undo_add(u, mk, 0);
    r = fchmod(fd, mode) < 0 ? -errno : 0;
    if (r == 0)
        r = ss_write_all(fd, data, len);
    if (r == 0 && ss_fsync_enabled() && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

/* The site's signing key pair: Ed25519, private key PKCS#8 PEM readable
 * by the owner only, public key SubjectPublicKeyInfo PEM.  fp receives
 * the SHA-256 of the public key's DER, for the administrator to compare
 * with what a parent or child site records. */
static int make_keys(struct undo *u, const char *root, char *fp, size_t fplen,
                     char *err, size_t errlen)
{
    char priv[SS_PATH_MAX], pub[SS_PATH_MAX];
    int r;
    if ((r = ss_path(priv, sizeof priv, "%s/keys/site.key", root)) < 0 ||
        (r = ss_path(pub, sizeof pub, "%s/keys/site.pub", root)) < 0) {
        (void)ss_fmt(err, errlen, "path too long");
        return r;
    }

    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    EVP_PKEY *pk = NULL;
    BIO *bpriv = BIO_new(BIO_s_mem()), *bpub = BIO_new(BIO_s_mem());
    unsigned char *der = NULL;
    r = -EIO;
    if (!pc || !bpriv || !bpub || EVP_PKEY_keygen_init(pc) <= 0 ||
        EVP_PKEY_keygen(pc, &pk) <= 0) {
        (void)ss_fmt(err, errlen, "cannot generate an Ed25519 key (OpenSSL)");
        goto out;
    }
    if (PEM_write_bio_PrivateKey(bpriv, pk, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_PUBKEY(bpub, pk) != 1) {
        (void)ss_fmt(err, errlen, "cannot encode the key pair (OpenSSL)");
        goto out;
    }
    char *data;
    long n = BIO_get_mem_data(bpriv, &data);
    if ((r = write_new(u, priv, data, (size_t)n, 0600)) < 0) {
        (void)ss_fmt(err, errlen, "%s: %s", priv, strerror(-r));
        goto out;
    }
    n = BIO_get_mem_data(bpub, &data);
    if ((r = write_new(u, pub, data, (size_t)n, 0644)) < 0) {
        (void)ss_fmt(err, errlen, "%s: %s", pub, strerror(-r));
        goto out;
    }
    int dl = i2d_PUBKEY(pk, &der);
    unsigned char h[32];
    if (dl > 0 && fplen >= 65 && ss_sha256(der, (size_t)dl, h) == 0)
        ss_hex(h, sizeof h, fp);
    else if (fplen)
        fp[0] = '\0';
    r = 0;
out:
    OPENSSL_free(der);
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(pc);
    BIO_free(bpriv);
    BIO_free(bpub);
    return r;
}

int cmd_init(struct ctl *c, int argc, char **argv)
{
    const char *site = NULL, *parent = NULL;
    for (int i = 0; i < argc; i++) {
        if (ctl_common(c, argc, argv, &i) ||
            ctl_opt(c, argc, argv, &i, "--site", &site) ||
            ctl_opt(c, argc, argv, &i, "--parent", &parent))
            continue;
        ctl_usage_error(c, "unexpected argument %s", argv[i]);
    }
    if (!site)
        ctl_usage_error(c, "--site CODE is required");
    if (!ss_site_code_ok(site))
        ctl_usage_error(c, "bad site code '%s' (three of A-Z 0-9, e.g. CEN)", site);
    if (parent && !*parent)
        parent = NULL;
    if (parent && !ss_site_code_ok(parent))
        ctl_usage_error(c, "bad parent site code '%s' (three of A-Z 0-9)", parent);
    if (parent && strcmp(parent, site) == 0)
        ctl_usage_error(c, "a site cannot be its own parent");

    const char *root = ctl_root(c);
    char conf[SS_PATH_MAX], p[SS_PATH_MAX];
    if (ss_path(conf, sizeof conf, "%s/site.conf", root) < 0) {
        ctl_err("site root too long: %s", root);
        return CTL_FAIL;
    }
    struct stat st;
    if (stat(conf, &st) == 0) {
        ctl_err("%s is already initialised (%s exists)", root, conf);
        return CTL_FAIL;
    }

    struct undo u = { .n = 0 };
    char err[SS_ERR_MAX] = "", fp[65] = "";
    int r = make_root(&u, root);
    if (r < 0) {
        (void)ss_fmt(err, sizeof err, "%s: %s", root, strerror(-r));
        goto fail;
    }

    static const struct { const char *name; mode_t mode; } dirs[] = {
        { "keys", 0700 }, { "inboxes", 0755 }, { "db", 0750 }, { "logs", 0755 },
        { "store", 0755 }, { "run", 0755 }, { "backup", 0750 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(dirs); i++) {
        if ((r = ss_path(p, sizeof p, "%s/%s", root, dirs[i].name)) < 0 ||
            (r = make_dir(&u, p, dirs[i].mode)) < 0) {
            (void)ss_fmt(err, sizeof err, "%s/%s: %s", root, dirs[i].name, strerror(-r));
            goto fail;
        }
    }
    ctl_open_log(root);
    if ((r = inbox_create_tree(root)) < 0) {
        (void)ss_fmt(err, sizeof err, "cannot create the inboxes under %s/inboxes: %s",
                 root, strerror(-r));
        goto fail;
    }

    /* The database: a file we did not find is ours to remove on failure
     * (with its WAL companions); one that was there stays. */
    if (ss_path(p, sizeof p, "%s/db/site.db", root) == 0 && access(p, F_OK) < 0) {
        static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
        for (size_t i = 0; i < SS_ARRAY_LEN(sfx); i++) {
            char q[SS_PATH_MAX];
            if (ss_path(q, sizeof q, "%s%s", p, sfx[i]) == 0)
                undo_add(&u, q, 0);
        }
    }
    sqlite3 *db = NULL;
    char dberr[SS_ERR_MAX] = "";
    if ((r = sitedb_open_root(root, 0, &db, dberr, sizeof dberr)) < 0) {
        (void)ss_fmt(err, sizeof err, "site database: %s", dberr[0] ? dberr : strerror(-r));
        goto fail;
    }
    sitedb_close(db);

    char kerr[SS_ERR_MAX] = "";
    if ((r = make_keys(&u, root, fp, sizeof fp, kerr, sizeof kerr)) < 0) {
        (void)ss_fmt(err, sizeof err, "signing key: %s", kerr);
        goto fail;
    }

    /* site.conf last: it marks the root initialised. */
    struct sbuf b;
    ss_sbuf_init(&b);
    ss_sbuf_addf(&b,
        "# site.conf - configuration of site %s, written by sitectl init.\n"
        "# Every key, with its default and meaning: config/site.conf in the\n"
        "# sources, or /etc/sitesrv/site.conf.example when installed.\n"
        "# Change a key with: sitectl config set SECTION.KEY VALUE\n"
        "\n[site]\ncode = %s\n", site, site);
    if (parent)
        ss_sbuf_addf(&b, "parent = %s\n", parent);
    r = b.data ? write_new(&u, conf, b.data, b.len, 0644) : -ENOMEM;
    ss_sbuf_free(&b);
    if (r < 0) {
        (void)ss_fmt(err, sizeof err, "%s: %s", conf, strerror(-r));
        goto fail;
    }
    /* Read it back the way the daemons will, so that a root sitectl calls
     * initialised is one they can start on. */
    struct ss_conf *cf = calloc(1, sizeof *cf);
    char cerr[SS_ERR_MAX] = "";
    r = cf ? conf_load(cf, root, NULL, cerr, sizeof cerr) : -ENOMEM;
    free(cf);
    if (r < 0) {
        (void)ss_fmt(err, sizeof err, "the new site.conf does not load: %s",
                 cerr[0] ? cerr : strerror(-r));
        goto fail;
    }
    undo_run(&u, 0);

    printf("initialised site %s", site);
    if (parent)
        printf(" (parent %s)", parent);
    printf("\n  root      %s\n  config    %s\n  database  %s/db/site.db\n"
           "  inboxes   %s/inboxes\n  key       %s/keys/site.key (private, 0600)\n"
           "  public    %s/keys/site.pub%s%s\n",
           root, conf, root, root, root, root, fp[0] ? "  sha256:" : "", fp);
    return CTL_OK;

fail:
    ctl_err("init failed: %s", err);
    undo_run(&u, 1);
    return CTL_FAIL;
}

/* ---- config ---- */

/* SIGHUP every running daemon of the site; returns how many were told. */
static int reload_daemons(const char *root)
{
    int n = 0;
    for (size_t i = 0; i < ctl_ndaemons; i++) {
        pid_t pid = ctl_daemon_pid(root, ctl_daemons[i]);
        if (pid <= 0)
            continue;
        if (kill(pid, SIGHUP) < 0) {
            if (errno != ESRCH)
                ctl_err("cannot signal %s (pid %ld): %s", ctl_daemons[i],
                        (long)pid, strerror(errno));
            continue;
        }
        printf("told %s (pid %ld) to reload\n", ctl_daemons[i], (long)pid);
        n++;
    }
    return n;
}

int ctl_load_conf(const char *root, struct ss_conf *cf, char *err, size_t errlen)
{
    char e[SS_ERR_MAX] = "";
    int r = conf_load(cf, root, NULL, e, sizeof e);
    if (r < 0 && !e[0])
        (void)ss_fmt(e, sizeof e, "%s", strerror(-r));
    if (r == -ENOENT)
        ctl_err("%s is not a site root: %s", root, e);   /* e says "sitectl init" */
    else if (r < 0)
        ctl_err("the configuration of %s does not load: %s", root, e);
    if (err && errlen)
        (void)ss_fmt(err, errlen, "%s", r < 0 ? e : "");
    return r;
}

/*
 * conf_set_file checks the value, then loads the whole edited text by the
 * rules of conf_load before it replaces site.conf: what it writes, every
 * daemon can load, and what it refuses leaves the file as it was.
 */
static int config_set(struct ctl *c, const char *key, const char *value)
{
    const char *root = ctl_root(c);
    char err[SS_ERR_MAX] = "";
    int r;
    if (!conf_find(key))
        ctl_usage_error(c, "unknown key '%s' (sitectl config show lists every key)", key);
    char path[SS_PATH_MAX], real[PATH_MAX];
    if (ss_path(path, sizeof path, "%s/site.conf", root) < 0) {
        ctl_err("site root too long: %s", root);
        return CTL_FAIL;
    }
    /* In an installed root site.conf is a symlink into /etc/sitesrv: edit
     * the file it names rather than replacing the link. */
    if (!realpath(path, real)) {
        if (errno == ENOENT)
            ctl_err("%s is not a site root (no site.conf)", root);
        else
            ctl_err("%s: %s", path, strerror(errno));
        return CTL_FAIL;
    }
    if ((r = conf_set_file(real, key, value, err, sizeof err)) < 0) {
        ctl_err("cannot set %s in %s: %s", key, real, err[0] ? err : strerror(-r));
        return CTL_FAIL;
    }
    printf("%s = %s  (in %s)\n", key, value, real);
    if (reload_daemons(root) == 0)
        printf("no daemon is running; the change applies when they start\n");
    return CTL_OK;
}

static int config_show(struct ctl *c, const char *only, int json)
{
    const char *root = ctl_root(c);
    const struct conf_key *k1 = NULL;
    if (only && !(k1 = conf_find(only)))
        ctl_usage_error(c, "unknown key '%s' (sitectl config show lists every key)", only);

    struct ss_conf *cf = calloc(1, sizeof *cf), *df = calloc(1, sizeof *df);
    if (!cf || !df) {
        free(cf);
        free(df);
        ctl_err("out of memory");
        return CTL_FAIL;
    }
    int rc = CTL_FAIL;
    if (ctl_load_conf(root, cf, NULL, 0) < 0)
        goto out;
    conf_defaults(df, root);

    char v[SS_PATH_MAX], d[SS_PATH_MAX], name[128];
    if (k1) {
        if (conf_value_str(cf, k1, v, sizeof v) < 0) {
            ctl_err("cannot show %s", only);
            goto out;
        }
        printf("%s\n", v);
        rc = CTL_OK;
        goto out;
    }
    struct sbuf b;
    ss_sbuf_init(&b);
    ss_sbuf_adds(&b, "{");
    size_t w = 0, vw = 0;
    for (size_t i = 0; i < conf_nkeys; i++) {
        size_t l = strlen(conf_keys[i].section) + 1 + strlen(conf_keys[i].key);
        if (l > w)
            w = l;
        if (conf_value_str(cf, &conf_keys[i], v, sizeof v) == 0 && strlen(v) > vw)
            vw = strlen(v);
    }
    for (size_t i = 0; i < conf_nkeys; i++) {
        const struct conf_key *k = &conf_keys[i];
        snprintf(name, sizeof name, "%s.%s", k->section, k->key);
        if (conf_value_str(cf, k, v, sizeof v) < 0)
            v[0] = '\0';
        if (conf_value_str(df, k, d, sizeof d) < 0)
            d[0] = '\0';
        int isdef = strcmp(v, d) == 0;
        if (json) {
            ss_sbuf_adds(&b, i ? ",\n  " : "\n  ");
            ss_sbuf_add_json_str(&b, name);
            ss_sbuf_adds(&b, ": ");
            ss_sbuf_add_json_str(&b, v);
        } else {
            if (isdef)
                printf("%-*s = %-*s  # default\n", (int)w, name, (int)vw, v);
            else
                printf("%-*s = %s\n", (int)w, name, v);
        }
    }
    if (json) {
        ss_sbuf_adds(&b, "\n}\n");
        if (ctl_print_sbuf(&b) != CTL_OK)
            goto out;
    }
    ss_sbuf_free(&b);
    rc = CTL_OK;
out:
    free(cf);
    free(df);
    return rc;
}

int cmd_config(struct ctl *c, int argc, char **argv)
{
    const char *pos[3];
    int npos = 0, json = 0;
    for (int i = 0; i < argc; i++) {
        if (ctl_common(c, argc, argv, &i))
            continue;
        if (ctl_flag(argv[i], "--json")) {
            json = 1;
            continue;
        }
        /* A value may legitimately start with '-' only after "--". */
        if (argv[i][0] == '-' && !ctl_flag(argv[i], "--"))
            ctl_usage_error(c, "unknown option %s", argv[i]);
        if (ctl_flag(argv[i], "--")) {
            for (i++; i < argc; i++) {
                if (npos >= 3)
                    ctl_usage_error(c, "too many arguments");
                pos[npos++] = argv[i];
            }
            break;
        }
        if (npos >= 3)
            ctl_usage_error(c, "too many arguments");
        pos[npos++] = argv[i];
    }
    if (npos == 0)
        ctl_usage_error(c, "config needs set, get or show");
    if (strcmp(pos[0], "set") == 0) {
        if (npos != 3)
            ctl_usage_error(c, "config set needs SECTION.KEY VALUE");
        return config_set(c, pos[1], pos[2]);
    }
    if (strcmp(pos[0], "get") == 0) {
        if (npos != 2)
            ctl_usage_error(c, "config get needs SECTION.KEY");
        return config_show(c, pos[1], 0);
    }
    if (strcmp(pos[0], "show") == 0) {
        if (npos != 1)
            ctl_usage_error(c, "config show takes no argument");
        return config_show(c, NULL, json);
    }
    ctl_usage_error(c, "unknown config subcommand '%s'", pos[0]);
}

/* ---- inbox ---- */

/*
 * Files directly in dir, the way inbox_backlog counts an inbox: dot
 * entries and directories skipped (a directory costs a stat only when
 * readdir cannot tell).  A missing dir holds nothing: 0.  lib/inbox has no
 * count of work/ and .tmp/, which is what shows stuck work: files claimed
 * by a reader that hangs or died, files of a writer that died mid-drop.
 */
static int count_files(const char *dir, size_t *n)
{
    *n = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.' || de->d_type == DT_DIR)
            continue;
        if (de->d_type == DT_UNKNOWN &&
            (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode)))
            continue;            /* gone meanwhile (claimed, moved in), or a directory */
        (*n)++;
        errno = 0;
    }
    int r = errno ? -errno : 0;
    closedir(d);
    return r;
}

int ctl_inbox_report(const char *root, int json, struct sbuf *out)
{
    int bad = 0;
    if (json)
        ss_sbuf_adds(out, "[");
    else
        printf("%-24s %-9s %7s %8s %7s %5s %8s  %s\n", "inbox", "reader", "files",
               "oldest", "claimed", "tmp", "corrupt", "path");
    for (int i = 0; i < IB_COUNT; i++) {
        const struct inbox_def *d = &inbox_defs[i];
        char path[SS_PATH_MAX], sub[SS_PATH_MAX], what[SS_ERR_MAX] = "";
        size_t files = 0, corrupt = 0, claimed = 0, tmp = 0;
        int64_t oldest = 0;
        int r = ss_path(path, sizeof path, "%s/inboxes/%s", root, d->path);
        if (r == 0)
            r = inbox_backlog(path, &files, &oldest, &corrupt);
        if (r < 0) {
            files = corrupt = 0;
            oldest = 0;
        }
        /* work/ and .tmp/ only in an inbox that could be read: their
         * errors would only repeat its error. */
        if (r == 0 && ((r = ss_path(sub, sizeof sub, "%s/work", path)) < 0 ||
                       (r = count_files(sub, &claimed)) < 0))
            (void)ss_fmt(what, sizeof what, "work/: %s", strerror(-r));
        if (r == 0 && ((r = ss_path(sub, sizeof sub, "%s/.tmp", path)) < 0 ||
                       (r = count_files(sub, &tmp)) < 0))
            (void)ss_fmt(what, sizeof what, ".tmp/: %s", strerror(-r));
        if (r < 0) {
            if (!what[0])
                (void)ss_fmt(what, sizeof what, "%s", strerror(-r));
            bad++;
        }
        if (files == 0 || oldest < 0)
            oldest = 0;
        if (json) {
            ss_sbuf_adds(out, i ? ",\n  {\"inbox\": " : "\n  {\"inbox\": ");
            ss_sbuf_add_json_str(out, d->path);
            ss_sbuf_adds(out, ", \"reader\": ");
            ss_sbuf_add_json_str(out, d->reader);
            ss_sbuf_adds(out, ", \"path\": ");
            ss_sbuf_add_json_str(out, path);
            ss_sbuf_addf(out, ", \"files\": %zu, \"oldest_s\": %lld, \"claimed\": %zu, "
                         "\"tmp\": %zu, \"corrupt\": %zu", files, (long long)oldest,
                         claimed, tmp, corrupt);
            if (r < 0) {
                ss_sbuf_adds(out, ", \"error\": ");
                ss_sbuf_add_json_str(out, what);
            }
            ss_sbuf_adds(out, "}");
        } else if (r < 0) {
            printf("%-24s %-9s %7s %8s %7s %5s %8s  %s (%s)\n", d->path, d->reader, "-",
                   "-", "-", "-", "-", path, what);
        } else {
            char age[32] = "-";
            if (files)
                ctl_fmt_span(oldest, age, sizeof age);
            printf("%-24s %-9s %7zu %8s %7zu %5zu %8zu  %s\n", d->path, d->reader, files,
                   age, claimed, tmp, corrupt, path);
        }
    }
    if (json)
        ss_sbuf_adds(out, "\n]");
    return bad ? -ENOENT : 0;
}

int cmd_inbox(struct ctl *c, int argc, char **argv)
{
    int json = ctl_listing_args(c, argc, argv);
    const char *root = ctl_root(c);
    struct sbuf b;
    ss_sbuf_init(&b);
    int r = ctl_inbox_report(root, json, &b);
    if (json) {
        ss_sbuf_adds(&b, "\n");
        if (ctl_print_sbuf(&b) != CTL_OK)
            return CTL_FAIL;
    }
    ss_sbuf_free(&b);
    if (r < 0) {
        ctl_err("some inboxes of %s cannot be read (is it a site root?)", root);
        return CTL_FAIL;
    }
    return CTL_OK;
}
