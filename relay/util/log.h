/*
 * log.h: one line per event on stderr (SPEC.md, Command line):
 * "2026-11-24T19:50:01.123Z WARN  bifromq#2: message". who may be NULL ("relay").
 *
 * The only clock read below main and io is here: the wall time printed at the head of a line.
 * Nothing decides anything from it.
 */
#ifndef RELAY_UTIL_LOG_H
#define RELAY_UTIL_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum relay_log_level { RELAY_LOG_ERROR = 0, RELAY_LOG_WARN, RELAY_LOG_INFO, RELAY_LOG_DEBUG };

struct relay_log {
    enum relay_log_level level;
    /* rate limiting of repeated warnings: a small table of (key, window start, count) */
    struct {
        uint64_t key;
        uint64_t window_start_ms;
        uint32_t count;
    } rl[32];
};

void relay_log_init(struct relay_log *lg, enum relay_log_level level);
bool relay_log_enabled(const struct relay_log *lg, enum relay_log_level level);
void relay_log(struct relay_log *lg, enum relay_log_level level, const char *who, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));
void relay_logv(struct relay_log *lg, enum relay_log_level level, const char *who, const char *fmt,
                va_list ap);
/* Like relay_log, but at most a few lines per 10 s per (who, fmt) pair; the next line after a
 * suppressed burst says how many were suppressed. */
void relay_log_limited(struct relay_log *lg, uint64_t now_ms, enum relay_log_level level,
                       const char *who, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Formats a line with level text (used for libwebsockets' own lines, which have no context). */
void relay_log_raw(enum relay_log_level level, const char *who, const char *msg);

#endif
