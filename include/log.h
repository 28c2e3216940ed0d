/* log.h -- leveled logging to stderr; syslog priority prefixes under journald. */
#ifndef BF_LOG_H
#define BF_LOG_H

#include "config.h"

/* Decides the output format once: under journald (JOURNAL_STREAM matches
 * stderr) every line starts with "<N>" and carries no timestamp, otherwise
 * lines carry an ISO-8601 timestamp and the level name. */
void bf_log_init(bf_log_level min_level);
void bf_log_set_level(bf_log_level min_level);

#if defined(__GNUC__)
#define BF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BF_PRINTF(a, b)
#endif

void bf_log(bf_log_level level, const char *fmt, ...) BF_PRINTF(2, 3);

#define bf_debug(...)	bf_log(BF_LOG_DEBUG, __VA_ARGS__)
#define bf_info(...)	bf_log(BF_LOG_INFO, __VA_ARGS__)
#define bf_notice(...)	bf_log(BF_LOG_NOTICE, __VA_ARGS__)
#define bf_warning(...) bf_log(BF_LOG_WARNING, __VA_ARGS__)
#define bf_error(...)	bf_log(BF_LOG_ERROR, __VA_ARGS__)

#endif
