/*
 * log.h - component logs in the CMTrace format (SPEC 7).
 *
 * One file per component under logs/, one record per line:
 *   <![LOG[text]LOG]!><time="HH:MM:SS.mmm+B" date="MM-DD-YYYY"
 *     component="NAME" context="" type="T" thread="N" file="src.c:LINE">
 * B is the time-zone bias in minutes (UTC = local + B), T is 1 info,
 * 2 warning, 3 error; the text is escaped by sslog_escape() (below), so
 * one record stays one line and cannot be ended early.  At max_size the
 * file rolls over to <name>.lo_ (one generation kept).  Warnings and
 * errors also go to stderr with the syslog priority prefixes <4> and <3>
 * that journald reads.
 *
 * Logging is thread safe (one mutex per log) and never fails the caller:
 * a log that cannot be written falls back to stderr.
 */
#ifndef SITESRV_LOG_H
#define SITESRV_LOG_H

#include "common.h"

enum { SSLOG_INFO = 1, SSLOG_WARN = 2, SSLOG_ERROR = 3 };

struct sslog;

/* Open (append) <dir>/<name>.log for component.  dir NULL: stderr only. */
struct sslog *sslog_open(const char *dir, const char *name,
                         const char *component, uint64_t max_size);
void sslog_close(struct sslog *l);     /* also resets sslog_default if it is l */
/* Reopen the file (SIGHUP, or after someone moved it away). */
int  sslog_reopen(struct sslog *l);
void sslog_set_max_size(struct sslog *l, uint64_t max_size);
/* Also copy warnings and errors to stderr (default on). */
void sslog_set_stderr(struct sslog *l, int on);

void sslog_write(struct sslog *l, int type, const char *file, int line,
                 const char *fmt, ...) SS_PRINTF(5, 6);

/* Format one CMTrace record into buf (no I/O; used by sslog_write and the
 * tests).  ms is the UTC time, bias_min the bias.  Returns the length
 * (always a complete line ending in '\n', the text cut if needed). */
size_t sslog_format(char *buf, size_t len, const char *text, int64_t ms,
                    int bias_min, const char *component, int type,
                    long thread, const char *file, int line);

/* For a thread that must not wait for anything (the stop guard of
 * daemon.c, about to _exit): text, already formatted, goes to stderr at
 * once, then into the log file only if no other thread holds the log
 * (trylock); no lock is waited for, no roll-over, no allocation.  l NULL:
 * stderr only. */
void sslog_emergency(struct sslog *l, int type, const char *file, int line,
                     const char *text);

/*
 * Escape text into one line of plain text: the one rule for log records,
 * and for file names and reasons in .reason files and status messages.
 *   - backslash becomes \\, LF \n, CR \r;
 *   - the '>' that would complete "]LOG]!>" becomes \x3e;
 *   - printable ASCII, tab, and well-formed UTF-8 characters other than
 *     C1 controls (U+0080-U+009F) are kept as they are;
 *   - every other byte (control characters, DEL, bytes that are not
 *     well-formed UTF-8) becomes \xHH, lower-case hex.
 * So the result is valid UTF-8 without control characters other than tab,
 * and it can be decoded back to the exact bytes.  At most len-1 bytes and
 * a NUL are written (nothing when len is 0); the text is cut before the
 * first escape or UTF-8 character that does not fit whole.  Returns the
 * length written; *whole (may be NULL) is 1 when all the text went in.
 * A NULL text is "".
 */
size_t sslog_escape(char *out, size_t len, const char *text, int *whole);

/* The log the log_* macros write to; NULL means stderr only. */
extern struct sslog *sslog_default;

#define log_info(...)  sslog_write(sslog_default, SSLOG_INFO,  __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...)  sslog_write(sslog_default, SSLOG_WARN,  __FILE__, __LINE__, __VA_ARGS__)
#define log_error(...) sslog_write(sslog_default, SSLOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_to(l, t, ...) sslog_write((l), (t), __FILE__, __LINE__, __VA_ARGS__)

#endif
