/*
 * NAME
 *   log.c - component logs in the CMTrace format, with roll-over.
 *
 * SYNOPSIS
 *   struct sslog *sslog_open(const char *dir, const char *name,
 *                            const char *component, uint64_t max_size);
 *   void sslog_close(struct sslog *l);
 *   int  sslog_reopen(struct sslog *l);
 *   void sslog_set_max_size(struct sslog *l, uint64_t max_size);
 *   void sslog_set_stderr(struct sslog *l, int on);
 *   void sslog_write(struct sslog *l, int type, const char *file, int line,
 *                    const char *fmt, ...);
 *   size_t sslog_format(char *buf, size_t len, const char *text, int64_t ms,
 *                       int bias_min, const char *component, int type,
 *                       long thread, const char *file, int line);
 *   struct sslog *sslog_default;
 *
 * DESCRIPTION
 *   Administrators who know SMS read these logs with CMTrace-style viewers,
 *   so every record is one line of the form of SPEC 7:
 *     <![LOG[text]LOG]!><time="HH:MM:SS.mmm+B" date="MM-DD-YYYY"
 *       component="NAME" context="" type="T" thread="N" file="src.c:LINE">
 *   time and date are local time; B is the bias in minutes, UTC = local + B.
 *
 *   The text is escaped so that a record cannot be split or ended early:
 *   CR and LF become \r and \n, other control characters \xNN, and the
 *   end marker "]LOG]!>" loses its '>' to \x3e.  Backslashes are left as
 *   they are: the escapes are for keeping one record on one line, not for
 *   a round trip, and doubled backslashes would only hinder the reader.
 *
 *   Each record goes out in one write(2) on an O_APPEND descriptor, under
 *   the log's mutex, so records of threads never interleave and a reader
 *   (tail -f) never sees half a line.  The size is tracked in memory (from
 *   fstat at open); when a record would take the file past max_size, the
 *   file is renamed to <name>.lo_, replacing the previous one, and a new
 *   <name>.log is started: one generation is kept, as in SMS.
 *
 *   Warnings and errors are also copied to stderr as "<4>component: text"
 *   and "<3>component: text", the syslog priority prefixes journald reads.
 *   Without a log (sslog_default NULL, or a log that cannot be written)
 *   every record goes to stderr that way, information with "<6>".
 *
 * DIAGNOSTICS
 *   Logging never fails its caller and keeps errno as it was.  Trouble with
 *   the log file itself (cannot open, write or roll over) is reported once
 *   per kind on stderr, and the records go to stderr until sslog_reopen
 *   succeeds.  sslog_reopen returns 0 or -errno.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct sslog *sslog_default;

#define TEXT_MAX   8192                 /* formatted text before escaping */
#define RECORD_MAX (TEXT_MAX * 2 + 512) /* one record, escapes included */

struct sslog {
    pthread_mutex_t mu;
    int       fd;                       /* -1: stderr only */
    int       to_stderr;                /* copy warnings and errors */
    int       file_trouble;             /* already said the file fails */
    uint64_t  max_size;                 /* 0: never roll over */
    uint64_t  size;                     /* of the open file, as we wrote it */
    char      component[64];
    char      path[SS_PATH_MAX];        /* "" when stderr only */
    char      rolled[SS_PATH_MAX];      /* <name>.lo_ */
};

static const char *base_name(const char *file)
{
    const char *s;

    if (file == NULL)
        return "?";
    s = strrchr(file, '/');
    return s != NULL ? s + 1 : file;
}

/* Appends text, escaped, to out[*o..cap) and stops before the first escape
 * unit that does not fit.  Returns 1 when all the text went in. */
static int escape_into(char *out, size_t cap, size_t *o, const char *text)
{
    static const char marker[] = "]LOG]!>";
    size_t i = 0, n = strlen(text);
    size_t start = *o;

    while (i < n) {
        unsigned char ch = (unsigned char)text[i];
        char unit[8];
        size_t ul;

        if (ch == '\n') {
            memcpy(unit, "\\n", ul = 2);
        } else if (ch == '\r') {
            memcpy(unit, "\\r", ul = 2);
        } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            snprintf(unit, sizeof unit, "\\x%02x", ch);
            ul = 4;
        } else if (ch == '>' && i >= 6 && memcmp(text + i - 6, marker, 6) == 0) {
            memcpy(unit, "\\x3e", ul = 4);
        } else {
            unit[0] = (char)ch;
            ul = 1;
        }
        if (*o + ul > cap) {
            /* Cut, but not in the middle of a UTF-8 character: drop the
             * bytes of a character whose rest does not fit. */
            if ((ch & 0xc0) == 0x80) {
                while (*o > start && ((unsigned char)out[*o - 1] & 0xc0) == 0x80)
                    (*o)--;
                if (*o > start && (unsigned char)out[*o - 1] >= 0xc0)
                    (*o)--;
            }
            return 0;
        }
        memcpy(out + *o, unit, ul);
        *o += ul;
        i++;
    }
    return 1;
}

size_t sslog_format(char *buf, size_t len, const char *text, int64_t ms,
                    int bias_min, const char *component, int type,
                    long thread, const char *file, int line)
{
    static const char head[] = "<![LOG[";
    char tail[512];
    struct tm tm;
    int64_t local = ms - (int64_t)bias_min * 60000;
    /* Floor division, so that times before 1970 still format sanely. */
    int64_t secs = local >= 0 ? local / 1000 : -((-local + 999) / 1000);
    int msec = (int)(local - secs * 1000);
    time_t t = (time_t)secs;
    int tl;

    if (len == 0)
        return 0;
    if (gmtime_r(&t, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    tl = snprintf(tail, sizeof tail,
                  "]LOG]!><time=\"%02d:%02d:%02d.%03d%c%03d\" date=\"%02d-%02d-%04d\" "
                  "component=\"%s\" context=\"\" type=\"%d\" thread=\"%ld\" file=\"%s:%d\">\n",
                  tm.tm_hour, tm.tm_min, tm.tm_sec, msec,
                  bias_min < 0 ? '-' : '+', bias_min < 0 ? -bias_min : bias_min,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_year + 1900,
                  component != NULL ? component : "", type, thread,
                  base_name(file), line);
    if (tl < 0 || (size_t)tl >= sizeof tail) {
        /* Only an absurd component name gets here; keep the line whole. */
        tl = (int)sizeof tail - 1;
        tail[tl - 1] = '\n';
    }

    size_t frame = sizeof head - 1 + (size_t)tl;
    size_t o = 0;
    if (len < frame + 1) {
        /* No room for the frame: still a line, even if not a record. */
        size_t n = len - 1;
        if (n > 0) {
            memcpy(buf, head, n < sizeof head - 1 ? n : sizeof head - 1);
            if (n > sizeof head - 1)
                memcpy(buf + sizeof head - 1, tail, n - (sizeof head - 1));
            buf[n - 1] = '\n';
        }
        buf[n] = '\0';
        return n;
    }
    memcpy(buf, head, sizeof head - 1);
    o = sizeof head - 1;
    escape_into(buf, len - 1 - (size_t)tl, &o, text != NULL ? text : "");
    memcpy(buf + o, tail, (size_t)tl);
    o += (size_t)tl;
    buf[o] = '\0';
    return o;
}

static long thread_id(void)
{
    return (long)syscall(SYS_gettid);
}

/* One "<N>component: text" line on stderr, in one write. */
static void to_stderr(int prio, const char *component, const char *text)
{
    char line[RECORD_MAX];
    size_t o;
    int n = snprintf(line, sizeof line, "<%d>%s: ", prio,
                     component != NULL ? component : program_invocation_short_name);

    if (n < 0)
        return;
    o = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 2;
    escape_into(line, sizeof line - 1, &o, text);
    line[o++] = '\n';
    /* Nothing useful can be done when stderr itself fails. */
    ssize_t w SS_UNUSED = write(STDERR_FILENO, line, o);
}

static int prio_of(int type)
{
    return type == SSLOG_ERROR ? 3 : type == SSLOG_WARN ? 4 : 6;
}

/* Opens l->path and learns its size.  Called with the mutex held. */
static int open_file(struct sslog *l)
{
    struct stat st;
    int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    l->fd = fd;
    l->size = (uint64_t)st.st_size;
    l->file_trouble = 0;
    return 0;
}

/* Reports trouble with the file once until it works again. */
static void file_trouble(struct sslog *l, const char *what, int err)
{
    char msg[SS_PATH_MAX + 128];

    if (l->file_trouble)
        return;
    l->file_trouble = 1;
    snprintf(msg, sizeof msg, "cannot %s log %s: %s; logging to stderr",
             what, l->path, strerror(err));
    to_stderr(4, l->component, msg);
}

struct sslog *sslog_open(const char *dir, const char *name,
                         const char *component, uint64_t max_size)
{
    struct sslog *l = calloc(1, sizeof *l);
    int r;

    if (l == NULL) {
        to_stderr(3, component, "cannot allocate a log; logging to stderr");
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    l->fd = -1;
    l->to_stderr = 1;
    l->max_size = max_size;
    snprintf(l->component, sizeof l->component, "%s",
             component != NULL ? component : name != NULL ? name : "sitesrv");
    if (dir == NULL || name == NULL)
        return l;
    if (ss_path(l->path, sizeof l->path, "%s/%s.log", dir, name) < 0 ||
        ss_path(l->rolled, sizeof l->rolled, "%s/%s.lo_", dir, name) < 0) {
        to_stderr(4, l->component, "log path too long; logging to stderr");
        l->path[0] = '\0';
        return l;
    }
    r = open_file(l);
    if (r < 0)
        file_trouble(l, "open", -r);
    return l;
}

void sslog_close(struct sslog *l)
{
    if (l == NULL)
        return;
    if (sslog_default == l)
        sslog_default = NULL;
    if (l->fd >= 0)
        close(l->fd);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

int sslog_reopen(struct sslog *l)
{
    int r = 0;

    if (l == NULL)
        return 0;
    pthread_mutex_lock(&l->mu);
    if (l->path[0] != '\0') {
        if (l->fd >= 0)
            close(l->fd);
        l->fd = -1;
        r = open_file(l);
        if (r < 0)
            file_trouble(l, "reopen", -r);
    }
    pthread_mutex_unlock(&l->mu);
    return r;
}

void sslog_set_max_size(struct sslog *l, uint64_t max_size)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    l->max_size = max_size;
    pthread_mutex_unlock(&l->mu);
}

void sslog_set_stderr(struct sslog *l, int on)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    l->to_stderr = on;
    pthread_mutex_unlock(&l->mu);
}

/* Renames the full log to .lo_ and starts a new one.  Mutex held. */
static void roll_over(struct sslog *l)
{
    /* rename() replaces the previous .lo_: one generation is kept.  If the
     * log was moved away meanwhile (ENOENT) a fresh file is just as good. */
    if (rename(l->path, l->rolled) < 0 && errno != ENOENT) {
        /* Keep writing to the big file rather than lose records. */
        file_trouble(l, "roll over", errno);
        l->size = 0;  /* do not try again for every record */
        return;
    }
    close(l->fd);
    l->fd = -1;
    int r = open_file(l);
    if (r < 0)
        file_trouble(l, "reopen", -r);
}

/* Writes the whole record or reports how it failed. */
static int write_record(int fd, const char *rec, size_t n)
{
    ssize_t w;

    do
        w = write(fd, rec, n);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return -errno;
    /* A short write on a regular file means a full disk; the rest is not
     * written separately, as that could interleave with another writer. */
    return (size_t)w == n ? 0 : -ENOSPC;
}

void sslog_write(struct sslog *l, int type, const char *file, int line,
                 const char *fmt, ...)
{
    char text[TEXT_MAX];
    char rec[RECORD_MAX];
    int saved = errno;
    va_list ap;
    int64_t now;
    struct tm tm;
    time_t t;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);

    if (l == NULL) {
        to_stderr(prio_of(type), NULL, text);
        errno = saved;
        return;
    }

    now = ss_now_ms();
    t = (time_t)(now / 1000);
    long gmtoff = localtime_r(&t, &tm) != NULL ? tm.tm_gmtoff : 0;
    size_t n = sslog_format(rec, sizeof rec, text, now, (int)(-gmtoff / 60),
                            l->component, type, thread_id(), file, line);

    pthread_mutex_lock(&l->mu);
    int written = 0;
    if (l->fd >= 0) {
        if (l->max_size > 0 && l->size > 0 && l->size + n > l->max_size)
            roll_over(l);
        if (l->fd >= 0) {
            int r = write_record(l->fd, rec, n);
            if (r == 0) {
                l->size += n;
                written = 1;
            } else {
                file_trouble(l, "write", -r);
            }
        }
    }
    int copy = !written || (l->to_stderr && type >= SSLOG_WARN);
    pthread_mutex_unlock(&l->mu);

    if (copy)
        to_stderr(prio_of(type), l->component, text);
    errno = saved;
}
