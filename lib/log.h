/*
 * log.h - component logs in the CMTrace format (SPEC 7).
 *
 * One file per component under logs/, one record per line:
 *   <![LOG[text]LOG]!><time="HH:MM:SS.mmm+B" date="MM-DD-YYYY"
 *     component="NAME" context="" type="T" thread="N" file="src.c:LINE">
 * B is the time-zone bias in minutes (UTC = local + B), T is 1 info,
 * 2 warning, 3 error; CR and LF in the text are escaped as \r \n, other
 * control characters as \xNN, and the '>' of "]LOG]!>" as \x3e, so one
 * record stays one line and cannot be ended early.  At max_size the file rolls over to <name>.lo_
 * (one generation kept).  Warnings and errors also go to stderr with the
 * syslog priority prefixes <4> and <3> that journald reads.
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

/* The log the log_* macros write to; NULL means stderr only. */
extern struct sslog *sslog_default;

#define log_info(...)  sslog_write(sslog_default, SSLOG_INFO,  __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...)  sslog_write(sslog_default, SSLOG_WARN,  __FILE__, __LINE__, __VA_ARGS__)
#define log_error(...) sslog_write(sslog_default, SSLOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_to(l, t, ...) sslog_write((l), (t), __FILE__, __LINE__, __VA_ARGS__)

#endif
