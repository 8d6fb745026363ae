/*
 * util.c - small helpers shared by every part of sitesrv.
 *
 * SYNOPSIS
 *   ss_path ss_fmt ss_strcpy            checked formatting (never a cut path)
 *   ss_seterr                           a caller's error sentence (may be cut)
 *   ss_thread_create                    a thread that takes no asynchronous signal
 *   ss_strcpy_utf8                      a copy cut between characters
 *   ss_utf8_seqlen ss_utf8_valid ss_utf8_sanitize
 *                                       UTF-8 checks for untrusted text
 *   ss_host_short                       the short host name
 *   ss_now_ms ss_mono_ms                clocks
 *   ss_parse_duration_ms ss_parse_size ss_parse_int ss_fmt_duration ss_fmt_size
 *   ss_fmt_time_iso ss_parse_time_iso   ISO 8601 UTC times
 *   ss_site_code_ok ss_hex ss_unhex ss_hexval
 *   ss_sbuf_*                           growable string buffer, JSON strings
 *
 * DESCRIPTION
 *   Text that crosses a process boundary (status message fields, names
 *   of files, the database) is checked as UTF-8 with one decoder,
 *   ss_utf8_seqlen(), so that the writer of a status message, its parser
 *   and the JSON writer agree on what valid text is.  The JSON writer
 *   never refuses: it writes U+FFFD for a byte that is not valid UTF-8,
 *   because a listing must stay readable whatever an old row holds.
 *
 * DIAGNOSTICS
 *   Nothing is logged.  Functions return 0 or a negative errno:
 *   -ENAMETOOLONG / -ENOSPC for output that does not fit, -EINVAL or
 *   -ERANGE for text that does not parse, -ENOMEM.
 */
#include <ctype.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static int vfmt(char *buf, size_t len, int err, const char *fmt, va_list ap)
{
    int n = vsnprintf(buf, len, fmt, ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= len)
        return err;
    return 0;
}

int ss_path(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfmt(buf, len, -ENAMETOOLONG, fmt, ap);
    va_end(ap);
    return r;
}

int ss_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfmt(buf, len, -ENOSPC, fmt, ap);
    va_end(ap);
    return r;
}

void ss_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int ss_thread_create(pthread_t *tid, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int r;

    /* A thread inherits its creator's mask: block around the creation,
     * since blocking in the thread itself would leave a window. */
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    r = pthread_create(tid, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -r;
}

int ss_strcpy(char *dst, size_t len, const char *src)
{
    size_t n = strlen(src);
    if (len == 0)
        return -ENOSPC;
    if (n >= len) {
        memcpy(dst, src, len - 1);
        dst[len - 1] = '\0';
        return -ENOSPC;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

int ss_strcpy_utf8(char *dst, size_t len, const char *src)
{
    size_t n = src ? strlen(src) : 0;

    if (len == 0)
        return -ENOSPC;
    if (n < len) {
        memcpy(dst, src ? src : "", n + 1);
        return 0;
    }
    /* src[n] is the first byte left out.  When it continues a sequence,
     * the start of that sequence (at most 3 bytes back in valid text) is
     * left out too; more continuation bytes than that are not UTF-8, and
     * then the cut stays where it was. */
    n = len - 1;
    for (size_t back = 0; back < 4 && back <= n; back++) {
        if (((unsigned char)src[n - back] & 0xc0) != 0x80) {
            n -= back;
            break;
        }
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
    return -ENOSPC;
}

size_t ss_utf8_seqlen(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t need;
    unsigned cp;

    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        need = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        need = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        need = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;           /* continuation byte, C0/C1 overlong lead, F5..FF */
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* Overlong three and four byte forms, surrogates, past U+10FFFF. */
    if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return need;
}

int ss_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n; ) {
        size_t k = ss_utf8_seqlen(s + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

size_t ss_utf8_sanitize(char *s)
{
    size_t n = strlen(s), bad = 0;

    for (size_t i = 0; i < n; ) {
        size_t k = ss_utf8_seqlen(s + i, n - i);
        if (k == 0) {
            s[i] = '?';
            bad++;
            k = 1;
        }
        i += k;
    }
    return bad;
}

void ss_host_short(char *buf, size_t len)
{
    char h[256];

    if (len == 0)
        return;
    if (gethostname(h, sizeof h) < 0)
        h[0] = '\0';
    h[sizeof h - 1] = '\0';
    h[strcspn(h, ".")] = '\0';
    /* A name longer than the field is cut: it is a label for people, not
     * an address. */
    ss_strcpy_utf8(buf, len, h[0] != '\0' ? h : "unknown");
}

int64_t ss_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ss_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ss_parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE || v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

/* A non-negative decimal number followed by a unit from the table. */
struct unit { const char *name; uint64_t mult; };

static int parse_units(const char *s, const struct unit *u, size_t nu,
                       uint64_t deflt, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;

    if (s == NULL || !isdigit((unsigned char)*p))
        return -EINVAL;
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p++ - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    uint64_t mult = deflt;
    if (*p != '\0') {
        size_t i;
        for (i = 0; i < nu; i++)
            if (strcasecmp(p, u[i].name) == 0)
                break;
        if (i == nu)
            return -EINVAL;
        mult = u[i].mult;
    }
    if (mult != 0 && v > UINT64_MAX / mult)
        return -ERANGE;
    *out = v * mult;
    return 0;
}

int ss_parse_duration_ms(const char *s, int64_t *out)
{
    static const struct unit u[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    uint64_t v;
    int r = parse_units(s, u, SS_ARRAY_LEN(u), 1000, &v);
    if (r < 0)
        return r;
    if (v > (uint64_t)INT64_MAX / 4)
        return -ERANGE;
    *out = (int64_t)v;
    return 0;
}

int ss_parse_size(const char *s, uint64_t *out)
{
    static const struct unit u[] = {
        {"b", 1}, {"k", 1024}, {"kb", 1024}, {"kib", 1024},
        {"m", 1024 * 1024}, {"mb", 1024 * 1024}, {"mib", 1024 * 1024},
        {"g", 1024ULL * 1024 * 1024}, {"gb", 1024ULL * 1024 * 1024},
        {"gib", 1024ULL * 1024 * 1024},
    };
    return parse_units(s, u, SS_ARRAY_LEN(u), 1, out);
}

/* v (negative if neg) in the largest unit of u[] (largest first) that
 * divides it exactly, else as it is followed by bare: the form the
 * parsers read back. */
static void fmt_units(uint64_t v, int neg, const struct unit *u, size_t nu, const char *bare,
                      char *buf, size_t len)
{
    const char *sign = neg ? "-" : "";
    for (size_t i = 0; i < nu; i++)
        if (v != 0 && v % u[i].mult == 0) {
            snprintf(buf, len, "%s%llu%s", sign, (unsigned long long)(v / u[i].mult), u[i].name);
            return;
        }
    snprintf(buf, len, "%s%llu%s", sign, (unsigned long long)v, bare);
}

void ss_fmt_duration(int64_t ms, char *buf, size_t len)
{
    static const struct unit u[] = {
        {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000},
    };
    /* The magnitude in unsigned arithmetic: -INT64_MIN does not fit. */
    uint64_t v = ms < 0 ? 0 - (uint64_t)ms : (uint64_t)ms;
    fmt_units(v, ms < 0, u, SS_ARRAY_LEN(u), "ms", buf, len);
}

void ss_fmt_size(uint64_t bytes, char *buf, size_t len)
{
    static const struct unit u[] = {
        {"GB", 1024ULL * 1024 * 1024}, {"MB", 1024 * 1024}, {"KB", 1024},
    };
    fmt_units(bytes, 0, u, SS_ARRAY_LEN(u), "", buf, len);
}

int ss_fmt_time_iso(int64_t ms, char *buf, size_t len)
{
    struct tm tm;
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)t * 1000);

    if (gmtime_r(&t, &tm) == NULL)
        return -EINVAL;
    return ss_fmt(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

/* Exactly n digits at *p, advancing it. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -EINVAL;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int ss_parse_time_iso(const char *s, int64_t *ms)
{
    struct tm tm;
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off = 0;

    memset(&tm, 0, sizeof tm);
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) ||
        *p++ != '-' || digits(&p, 2, &d))
        return -EINVAL;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
            return -EINVAL;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                return -EINVAL;
            if (*p == '.') {
                int n = 0;
                p++;
                while (isdigit((unsigned char)*p)) {
                    if (n < 3)
                        frac = frac * 10 + (*p - '0');
                    n++;
                    p++;
                }
                if (n == 0)
                    return -EINVAL;
                for (; n < 3; n++)
                    frac *= 10;
            }
        }
        if (*p == 'Z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om;
            if (digits(&p, 2, &oh))
                return -EINVAL;
            if (*p == ':')
                p++;
            if (digits(&p, 2, &om) || oh > 23 || om > 59)
                return -EINVAL;
            off = sign * (oh * 60 + om);
        }
    }
    static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    /* A date that does not exist is refused, not rolled into the next
     * month by timegm(); a leap second is not accepted either. */
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 59)
        return -EINVAL;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *ms = ((int64_t)t - (int64_t)off * 60) * 1000 + frac;
    return 0;
}

int ss_site_code_ok(const char *s)
{
    if (s == NULL || strlen(s) != SS_SITE_LEN)
        return 0;
    for (int i = 0; i < SS_SITE_LEN; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

void ss_hex(const void *bytes, size_t len, char *out)
{
    static const char hx[] = "0123456789abcdef";
    const unsigned char *b = bytes;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[2 * len] = '\0';
}

int ss_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ss_unhex(const char *hex, void *bytes, size_t len)
{
    unsigned char *b = bytes;
    for (size_t i = 0; i < len; i++) {
        int hi = ss_hexval((unsigned char)hex[2 * i]);
        int lo = hi < 0 ? -1 : ss_hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    return hex[2 * len] == '\0' ? 0 : -EINVAL;
}

void ss_sbuf_init(struct sbuf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void ss_sbuf_free(struct sbuf *b)
{
    free(b->data);
    ss_sbuf_init(b);
}

void ss_sbuf_reset(struct sbuf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int grow(struct sbuf *b, size_t need)
{
    if (b->len + need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need + 1) {
        if (cap > SIZE_MAX / 2)
            return -ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ss_sbuf_add(struct sbuf *b, const void *p, size_t n)
{
    if (grow(b, n) < 0)
        return -ENOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int ss_sbuf_adds(struct sbuf *b, const char *s)
{
    return ss_sbuf_add(b, s, strlen(s));
}

int ss_sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap)
{
    va_list again;
    char small[256];

    /* Most strings fit the stack buffer: one formatting pass then. */
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0 || (size_t)n < sizeof small) {
        va_end(again);
        return n < 0 ? -EINVAL : ss_sbuf_add(b, small, (size_t)n);
    }
    if (grow(b, (size_t)n) < 0) {
        va_end(again);
        return -ENOMEM;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
    va_end(again);
    b->len += (size_t)n;
    return 0;
}

int ss_sbuf_addf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int r = ss_sbuf_vaddf(b, fmt, ap);
    va_end(ap);
    return r;
}

int ss_sbuf_add_json_str(struct sbuf *b, const char *s)
{
    int r = ss_sbuf_add(b, "\"", 1);
    size_t n = strlen(s);
    for (const unsigned char *p = (const unsigned char *)s; r == 0 && *p; p++) {
        if (*p >= 0x80) {
            size_t k = ss_utf8_seqlen((const char *)p, n - (size_t)(p - (const unsigned char *)s));
            if (k == 0) {
                r = ss_sbuf_add(b, "\\ufffd", 6);
            } else {
                r = ss_sbuf_add(b, p, k);
                p += k - 1;
            }
            continue;
        }
        switch (*p) {
        case '"':  r = ss_sbuf_add(b, "\\\"", 2); break;
        case '\\': r = ss_sbuf_add(b, "\\\\", 2); break;
        case '\n': r = ss_sbuf_add(b, "\\n", 2); break;
        case '\r': r = ss_sbuf_add(b, "\\r", 2); break;
        case '\t': r = ss_sbuf_add(b, "\\t", 2); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                r = ss_sbuf_addf(b, "\\u%04x", *p);
            else
                r = ss_sbuf_add(b, p, 1);
        }
    }
    return r ? r : ss_sbuf_add(b, "\"", 1);
}
