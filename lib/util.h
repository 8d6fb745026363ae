/*
 * util.h - small helpers: checked path building, clocks, durations, sizes,
 * ISO 8601 times, site codes, a growable string buffer.
 */
#ifndef SITESRV_UTIL_H
#define SITESRV_UTIL_H

#include <stdarg.h>
#include "common.h"

/* snprintf into buf; -ENAMETOOLONG instead of a silently cut path. */
int ss_path(char *buf, size_t len, const char *fmt, ...) SS_PRINTF(3, 4);
/* Same rule for any formatted string: -ENOSPC when it does not fit. */
int ss_fmt(char *buf, size_t len, const char *fmt, ...) SS_PRINTF(3, 4);
/* Fill a caller's error buffer (err may be NULL, errlen 0): a sentence cut
 * to fit is still worth having, so truncation is no error. */
void ss_seterr(char *err, size_t errlen, const char *fmt, ...) SS_PRINTF(3, 4);
/* strlcpy semantics with an error: -ENOSPC when src does not fit. */
int ss_strcpy(char *dst, size_t len, const char *src);
/* The same for text: when src does not fit it is cut before the UTF-8
 * sequence that would not fit whole, so a valid string stays valid
 * (-ENOSPC then).  src NULL copies "".  len 0 writes nothing, -ENOSPC. */
int ss_strcpy_utf8(char *dst, size_t len, const char *src);

/* Length of the well-formed UTF-8 sequence at s[0..n) (1 to 4), or 0 when
 * it is not one: a stray continuation byte, a cut sequence, an overlong
 * form, a UTF-16 surrogate or a code point above U+10FFFF. */
size_t ss_utf8_seqlen(const char *s, size_t n);
/* Is s[0..n) well-formed UTF-8 from end to end?  1 or 0. */
int ss_utf8_valid(const char *s, size_t n);
/* Replace, in place, every byte of s that is not part of a well-formed
 * UTF-8 sequence by '?' (one byte for one, so the length never grows).
 * Returns how many were replaced. */
size_t ss_utf8_sanitize(char *s);

/* This machine's short host name (up to the first dot), cut to fit len;
 * "unknown" when the system has none.  Used where a server names itself
 * (the default of site.machine, status messages). */
void ss_host_short(char *buf, size_t len);

int64_t ss_now_ms(void);      /* CLOCK_REALTIME, milliseconds since the epoch */
int64_t ss_mono_ms(void);     /* CLOCK_MONOTONIC, milliseconds */

/* "500ms" "30s" "30m" "4h" "7d"; a bare number is seconds.  -EINVAL. */
int ss_parse_duration_ms(const char *s, int64_t *out);
/* "2MB" "512k" "1G" "100" (bytes); K/M/G are powers of 1024.  -EINVAL. */
int ss_parse_size(const char *s, uint64_t *out);
/* Decimal integer within [min,max].  -EINVAL / -ERANGE. */
int ss_parse_int(const char *s, long long min, long long max, long long *out);
/* Format a duration back with the largest exact unit ("90s" -> "90s", 1800000 -> "30m"). */
void ss_fmt_duration(int64_t ms, char *buf, size_t len);
/* Format a size back the same way: 2097152 -> "2MB", 4096 -> "4KB", 1000 -> "1000". */
void ss_fmt_size(uint64_t bytes, char *buf, size_t len);

/* 2026-11-21T23:50:00.123Z (always UTC, always milliseconds). */
int ss_fmt_time_iso(int64_t ms, char *buf, size_t len);
/* Accepts the form above, also without milliseconds, also with a
 * +HH:MM/-HH:MM offset or a bare date (YYYY-MM-DD, midnight UTC). */
int ss_parse_time_iso(const char *s, int64_t *ms);

/* [A-Z0-9]{3} */
int ss_site_code_ok(const char *s);

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void ss_hex(const void *bytes, size_t len, char *out);
/* Value of one hex digit (either case), or -1. */
int ss_hexval(int c);
/* Parse exactly 2*len hex digits.  -EINVAL. */
int ss_unhex(const char *hex, void *bytes, size_t len);

/* A growable buffer; data is always NUL terminated. */
struct sbuf {
    char  *data;
    size_t len;
    size_t cap;
};
void ss_sbuf_init(struct sbuf *b);
void ss_sbuf_free(struct sbuf *b);
void ss_sbuf_reset(struct sbuf *b);
int  ss_sbuf_add(struct sbuf *b, const void *p, size_t n);
int  ss_sbuf_adds(struct sbuf *b, const char *s);
int  ss_sbuf_addf(struct sbuf *b, const char *fmt, ...) SS_PRINTF(2, 3);
int  ss_sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap) SS_PRINTF(2, 0);
/* JSON string literal with quotes and escapes (for --json output).  The
 * output is always valid JSON in valid UTF-8: a byte of s that is not part
 * of a well-formed UTF-8 sequence is written as \ufffd (U+FFFD, the
 * replacement character), one for each such byte, so that a reader sees
 * that something was there without the stream becoming unreadable. */
int  ss_sbuf_add_json_str(struct sbuf *b, const char *s);

/* pthread_create with every asynchronous signal blocked in the new thread
 * (SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT stay open, so that a fault
 * in it is still reported as one): signals stay with the threads that
 * expect them.  The caller's mask is unchanged.  0 or -errno. */
#include <pthread.h>
int ss_thread_create(pthread_t *tid, void *(*fn)(void *), void *arg);

#endif
