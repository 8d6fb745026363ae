/*
 * ini.h - a small strict INI reader with line numbers, shared by site.conf
 * and the backup control file.  (Debian's inih cannot hand the line number
 * to its callback as packaged, and both users must name the line of an
 * error.)
 *
 * Lines: "[section]", "key = value", "key" (a bare word: a command in a
 * control file; value is NULL), blank, or comments starting with ';' or
 * '#'.  Leading and trailing blanks are trimmed; values are not unquoted.
 */
#ifndef SITESRV_INI_H
#define SITESRV_INI_H

#include "common.h"

#define INI_LINE_MAX 4096          /* bytes per line, not counting its end */
#define INI_FILE_MAX (1024 * 1024) /* ini_parse_file refuses larger files */

/* Called for a section header (key NULL, value NULL) and for each entry.
 * Return 0 to go on; non-zero stops the parse and is returned, and the
 * callback should have filled err with only what is wrong: the parser
 * puts the place ("line N: " or "PATH:N: ") in front of it. */
typedef int (*ini_cb)(void *arg, int lineno, const char *section,
                      const char *key, const char *value,
                      char *err, size_t errlen);

/* Parse buf[0..len).  -EBADMSG for a malformed line ("line N: ..."). */
int ini_parse_buf(const char *buf, size_t len, ini_cb cb, void *arg,
                  char *err, size_t errlen);
/* Same, reading the file; err starts with the path ("PATH:N: ..."). */
int ini_parse_file(const char *path, ini_cb cb, void *arg, char *err, size_t errlen);

/* ini_parse_buf with errors placed as "NAME:N: ..." (name NULL: "line N: "),
 * for a buffer read from the file NAME. */
int ini_parse_named(const char *buf, size_t len, const char *name, ini_cb cb,
                    void *arg, char *err, size_t errlen);
/* Read a whole file (symbolic links followed) into a malloc'ed buffer with
 * a NUL after its end; -EFBIG over INI_FILE_MAX, -errno; err "PATH: ...". */
int ini_read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen);

#endif
