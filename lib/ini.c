/*
 * NAME
 *   ini.c - a small strict INI reader that knows its line numbers.
 *
 * SYNOPSIS
 *   int ini_parse_buf(const char *buf, size_t len, ini_cb cb, void *arg,
 *                     char *err, size_t errlen);
 *   int ini_parse_file(const char *path, ini_cb cb, void *arg,
 *                      char *err, size_t errlen);
 *   int ini_parse_named(const char *buf, size_t len, const char *name,
 *                       ini_cb cb, void *arg, char *err, size_t errlen);
 *   int ini_read_file(const char *path, char **buf, size_t *len,
 *                     char *err, size_t errlen);
 *
 * DESCRIPTION
 *   site.conf and the backup control file are both read with this parser,
 *   and both must tell the operator which line is wrong, so every call of
 *   the callback carries its line number and every error names the line.
 *
 *   A line is, after trimming blanks (space and tab) at both ends:
 *     - empty;
 *     - a comment: its first character is ';' or '#';
 *     - "[name]": a section header (the callback gets key and value NULL);
 *     - "key = value": an entry; blanks around key and value are trimmed,
 *       the value may be empty and is not unquoted, and a ';' or '#' after
 *       the '=' is part of the value (comments only start a line);
 *     - "key": a bare word (a command of the control file), value NULL.
 *   Section names and keys are [A-Za-z0-9_.-]+.  An entry before the first
 *   section header is an error: both users of this parser are sectioned,
 *   and a stray key there is more likely a mistake than a global setting.
 *
 *   Lines end in LF or CRLF.  A line longer than INI_LINE_MAX bytes (not
 *   counting its end), a NUL byte, or a control character other than a
 *   tab is an error: the reader is strict so that a damaged file is
 *   refused, not half understood.
 *
 * DIAGNOSTICS
 *   Nothing is logged.  ini_parse_buf returns 0, -EBADMSG for a malformed
 *   line ("line N: what"), or the callback's non-zero return value; the
 *   callback writes only *what* is wrong into err and the parser puts the
 *   place in front of it, "line N: " here and "PATH:N: " in
 *   ini_parse_file and ini_parse_named.  ini_read_file (and so
 *   ini_parse_file) returns -errno when the file cannot be read and -EFBIG
 *   when it is larger than INI_FILE_MAX, with err "PATH: what".
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ini.h"
#include "util.h"

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static int is_name_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
}

/* Is s[0..n) a non-empty [A-Za-z0-9_.-]+ name? */
static int name_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[i]))
            return 0;
    return 1;
}

/* Writes the place ("line N: " or "PATH:N: ") and then what is wrong. */
static void errorf(char *err, size_t errlen, const char *path, int lineno,
                   const char *fmt, ...) SS_PRINTF(5, 6);

static void errorf(char *err, size_t errlen, const char *path, int lineno,
                   const char *fmt, ...)
{
    va_list ap;
    int n;

    if (err == NULL || errlen == 0)
        return;
    if (path != NULL)
        n = snprintf(err, errlen, "%s:%d: ", path, lineno);
    else
        n = snprintf(err, errlen, "line %d: ", lineno);
    if (n < 0 || (size_t)n >= errlen)
        return;    /* the place alone filled the buffer; it is cut, not lost */
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Shows at most the first 40 bytes of a bad line in an error message. */
#define SHOW_MAX 40

static int parse(const char *buf, size_t len, const char *path, ini_cb cb,
                 void *arg, char *err, size_t errlen)
{
    /* The line is copied so that the callback gets NUL-terminated strings;
     * the size bound is what makes INI_LINE_MAX a hard limit. */
    char line[INI_LINE_MAX + 1];
    char section[INI_LINE_MAX + 1];
    char cberr[SS_ERR_MAX];
    int have_section = 0;
    int lineno = 0;
    size_t pos = 0;

    section[0] = '\0';
    while (pos < len) {
        const char *start = buf + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - start) : len - pos;

        lineno++;
        pos += n + (nl != NULL);
        if (n > 0 && start[n - 1] == '\r')
            n--;                                /* CRLF */
        if (n > INI_LINE_MAX) {
            errorf(err, errlen, path, lineno,
                   "line longer than %d bytes", INI_LINE_MAX);
            return -EBADMSG;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)start[i];
            if (ch == '\0') {
                errorf(err, errlen, path, lineno, "NUL byte in the line");
                return -EBADMSG;
            }
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                errorf(err, errlen, path, lineno,
                       "control character 0x%02x in the line", ch);
                return -EBADMSG;
            }
        }

        /* Trim blanks at both ends. */
        size_t b = 0, e = n;
        while (b < e && is_blank(start[b]))
            b++;
        while (e > b && is_blank(start[e - 1]))
            e--;
        if (b == e || start[b] == ';' || start[b] == '#')
            continue;
        memcpy(line, start + b, e - b);
        line[e - b] = '\0';
        size_t ll = e - b;

        const char *key = NULL, *value = NULL;
        if (line[0] == '[') {
            if (line[ll - 1] != ']') {
                errorf(err, errlen, path, lineno,
                       "section header \"%.*s\" does not end with ']'",
                       SHOW_MAX, line);
                return -EBADMSG;
            }
            if (!name_ok(line + 1, ll - 2)) {
                errorf(err, errlen, path, lineno,
                       "bad section name \"%.*s\" (use letters, digits, '_', '.', '-')",
                       SHOW_MAX, line);
                return -EBADMSG;
            }
            memcpy(section, line + 1, ll - 2);
            section[ll - 2] = '\0';
            have_section = 1;
        } else {
            char *eq = strchr(line, '=');
            size_t kl = eq != NULL ? (size_t)(eq - line) : ll;
            while (kl > 0 && is_blank(line[kl - 1]))
                kl--;
            if (eq != NULL && kl == 0) {
                errorf(err, errlen, path, lineno,
                       "missing key before '=' in \"%.*s\"", SHOW_MAX, line);
                return -EBADMSG;
            }
            if (!name_ok(line, kl)) {
                if (eq != NULL)
                    errorf(err, errlen, path, lineno,
                           "bad key \"%.*s\" (use letters, digits, '_', '.', '-')",
                           (int)(kl < SHOW_MAX ? kl : SHOW_MAX), line);
                else
                    errorf(err, errlen, path, lineno,
                           "expected \"key = value\", \"[section]\" or a single word, "
                           "not \"%.*s\"", SHOW_MAX, line);
                return -EBADMSG;
            }
            if (eq != NULL) {
                char *v = eq + 1;
                while (is_blank(*v))
                    v++;
                value = v;     /* the end was trimmed with the line */
            }
            line[kl] = '\0';
            key = line;
            if (!have_section) {
                errorf(err, errlen, path, lineno,
                       "\"%s\" comes before any [section]", key);
                return -EBADMSG;
            }
        }

        cberr[0] = '\0';
        int r = cb(arg, lineno, section, key, value, cberr, sizeof cberr);
        if (r != 0) {
            errorf(err, errlen, path, lineno, "%s",
                   cberr[0] != '\0' ? cberr : "refused by the reader");
            return r;
        }
    }
    return 0;
}

int ini_parse_buf(const char *buf, size_t len, ini_cb cb, void *arg,
                  char *err, size_t errlen)
{
    return parse(buf, len, NULL, cb, arg, err, errlen);
}

int ini_parse_named(const char *buf, size_t len, const char *name, ini_cb cb,
                    void *arg, char *err, size_t errlen)
{
    return parse(buf, len, name, cb, arg, err, errlen);
}

int ini_read_file(const char *path, char **bufp, size_t *lenp, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd, r;

    /* Symbolic links are followed on purpose: /etc/sitesrv/site.conf is
     * often a link into configuration management. */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        ss_fmt(err, errlen, "%s: %s", path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        ss_fmt(err, errlen, "%s: %s", path, strerror(-r));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        ss_fmt(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_size > INI_FILE_MAX) {
        r = -EFBIG;
        ss_fmt(err, errlen, "%s: larger than %d bytes", path, INI_FILE_MAX);
        goto fail;
    }
    /* Read until end of file rather than trusting st_size: the file may
     * grow while we read it, and then it is still bounded by the max. */
    buf = malloc(INI_FILE_MAX + 1);
    if (buf == NULL) {
        r = -ENOMEM;
        ss_fmt(err, errlen, "%s: %s", path, strerror(ENOMEM));
        goto fail;
    }
    for (;;) {
        ssize_t got = read(fd, buf + len, INI_FILE_MAX + 1 - len);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            ss_fmt(err, errlen, "%s: %s", path, strerror(-r));
            goto fail;
        }
        if (got == 0)
            break;
        len += (size_t)got;
        if (len > INI_FILE_MAX) {
            r = -EFBIG;
            ss_fmt(err, errlen, "%s: larger than %d bytes", path, INI_FILE_MAX);
            goto fail;
        }
    }
    close(fd);
    buf[len] = '\0';
    *bufp = buf;
    *lenp = len;
    return 0;
fail:
    free(buf);
    close(fd);
    return r;
}

int ini_parse_file(const char *path, ini_cb cb, void *arg, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    int r = ini_read_file(path, &buf, &len, err, errlen);

    if (r < 0)
        return r;
    r = parse(buf, len, path, cb, arg, err, errlen);
    free(buf);
    return r;
}
