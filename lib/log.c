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
 *   void sslog_emergency(struct sslog *l, int type, const char *file,
 *                        int line, const char *text);
 *   size_t sslog_escape(char *out, size_t len, const char *text, int *whole);
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
 *   The text is escaped by sslog_escape() so that a record cannot be
 *   split or ended early: CR and LF become \r and \n, other control
 *   characters and bytes that are not UTF-8 \xNN, and the end marker
 *   "]LOG]!>" loses its '>' to \x3e.  Backslashes are doubled, so that
 *   the escaped text says exactly which bytes were logged; the same
 *   function, with the same rule, escapes file names for inbox.c's
 *   .reason files and status messages.  The calendar fields are computed
 *   by arithmetic rather than gmtime_r, which takes glibc's time-zone
 *   lock: sslog_emergency() must not wait for any lock.
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
 *   sslog_emergency (the stop guard's last word before _exit) writes
 *   stderr, then the file only if no thread holds the log.
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
    int       bias_min;                 /* of the last record; atomic */
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

size_t sslog_escape(char *out, size_t len, const char *text, int *whole)
{
    static const char marker[] = "]LOG]!>";
    static const char hx[] = "0123456789abcdef";
    const unsigned char *t = (const unsigned char *)(text != NULL ? text : "");
    size_t n = strlen((const char *)t), o = 0, i = 0;

    if (whole != NULL)
        *whole = 0;
    if (len == 0)
        return 0;
    while (i < n) {
        unsigned char ch = t[i];
        char unit[4];
        const char *src = unit;
        size_t ul = 2, in = 1;

        if (ch == '\\') {
            unit[0] = unit[1] = '\\';
        } else if (ch == '\n' || ch == '\r') {
            unit[0] = '\\';
            unit[1] = ch == '\n' ? 'n' : 'r';
        } else if (ch == '>' && i >= 6 && memcmp(t + i - 6, marker, 6) == 0) {
            memcpy(unit, "\\x3e", ul = 4);
        } else if ((ch >= 0x20 && ch < 0x7f) || ch == '\t') {
            src = (const char *)t + i;
            ul = 1;
        } else if (ch >= 0x80 && (in = ss_utf8_seqlen((const char *)t + i, n - i)) > 0 &&
                   !(ch == 0xc2 && t[i + 1] < 0xa0)) {
            /* A whole character, never cut; not a C1 control (U+0080 to
             * U+009F, \xc2\x80 to \xc2\x9f), which some terminals obey. */
            src = (const char *)t + i;
            ul = in;
        } else {
            unit[0] = '\\';
            unit[1] = 'x';
            unit[2] = hx[ch >> 4];
            unit[3] = hx[ch & 15];
            ul = 4;
            in = 1;
        }
        if (o + ul > len - 1)
            break;
        memcpy(out + o, src, ul);
        o += ul;
        i += in;
    }
    out[o] = '\0';
    if (whole != NULL)
        *whole = i == n;
    return o;
}

/* The UTC calendar fields of secs, by arithmetic (H. Hinnant's
 * civil_from_days): gmtime_r takes glibc's time-zone lock, which the
 * stop guard's sslog_emergency must not wait for. */
static void utc_fields(int64_t secs, struct tm *tm)
{
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;

    memset(tm, 0, sizeof *tm);
    tm->tm_year = (int)(yoe + era * 400 + (m <= 2) - 1900);
    tm->tm_mon = (int)m - 1;
    tm->tm_mday = (int)d;
    tm->tm_hour = (int)(rem / 3600);
    tm->tm_min = (int)(rem / 60 % 60);
    tm->tm_sec = (int)(rem % 60);
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
    int tl;

    if (len == 0)
        return 0;
    utc_fields(secs, &tm);
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
    /* The text may take what the frame leaves; its NUL is overwritten. */
    o += sslog_escape(buf + o, len - (size_t)tl - o, text, NULL);
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
    o += sslog_escape(line + o, sizeof line - 1 - o, text, NULL);
    line[o++] = '\n';
    /* Nothing useful can be done when stderr itself fails. */
    ssize_t w SS_UNUSED = write(STDERR_FILENO, line, o);
}

/* Minutes to add to local time for UTC at time ms (CMTrace's bias). */
static int local_bias(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    return localtime_r(&t, &tm) != NULL ? (int)(-tm.tm_gmtoff / 60) : 0;
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
    l->bias_min = local_bias(ss_now_ms());
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

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);

    if (l == NULL) {
        to_stderr(prio_of(type), NULL, text);
        errno = saved;
        return;
    }

    now = ss_now_ms();
    int bias = local_bias(now);
    /* Kept for sslog_emergency, which may not call localtime_r. */
    __atomic_store_n(&l->bias_min, bias, __ATOMIC_RELAXED);
    size_t n = sslog_format(rec, sizeof rec, text, now, bias,
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

/*
 * No lock is waited for here: the record is formatted without the
 * time-zone lock (the bias of the last record, utc_fields), stderr is
 * written first, and the file only if no other thread holds the log.
 * A log file system that hangs while no thread is in a log write would
 * still hold this write; the line is on stderr by then.
 */
void sslog_emergency(struct sslog *l, int type, const char *file, int line,
                     const char *text)
{
    char rec[RECORD_MAX];
    int saved = errno;

    to_stderr(prio_of(type), l != NULL ? l->component : NULL, text);
    if (l == NULL)
        goto out;
    int bias = __atomic_load_n(&l->bias_min, __ATOMIC_RELAXED);
    size_t n = sslog_format(rec, sizeof rec, text, ss_now_ms(), bias,
                            l->component, type, thread_id(), file, line);
    if (pthread_mutex_trylock(&l->mu) != 0)
        goto out;           /* a writer holds it, maybe stuck in write(2) */
    if (l->fd >= 0 && write_record(l->fd, rec, n) == 0)
        l->size += n;
    pthread_mutex_unlock(&l->mu);
out:
    errno = saved;
}
