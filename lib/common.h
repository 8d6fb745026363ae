/*
 * common.h - definitions every part of sitesrv shares.
 *
 * Conventions: functions return 0 on success and a negative errno value on
 * failure (libuv style); parsers also fill a caller's error buffer with a
 * sentence naming what was wrong.  Nothing here allocates.
 */
#ifndef SITESRV_COMMON_H
#define SITESRV_COMMON_H

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SS_VERSION      "0.1.0"
#define SS_PATH_MAX     4096
#define SS_NAME_MAX     255
#define SS_SITE_LEN     3           /* site codes are [A-Z0-9]{3} */
#define SS_ERR_MAX      512         /* size of error buffers */

#define SS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define SS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SS_UNUSED       __attribute__((unused))
#define SS_WARN_UNUSED  __attribute__((warn_unused_result))
#else
#define SS_PRINTF(f, a)
#define SS_UNUSED
#define SS_WARN_UNUSED
#endif

#endif
