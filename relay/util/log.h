/*
 * log.h: one line per event on stderr (SPEC.md, Command line), in one of two formats:
 *
 *   text  "2026-11-24T19:50:01.123Z WARN  bifromq#2: message" (who NULL: "relay")
 *   json  {"ts":"2026-11-24T19:50:01.123Z","level":"WARN","who":"bifromq#2","broker":"bifromq",
 *          "conn":2,"msg":"message",...} (one object per line, see relay_log_field)
 *
 * When stderr is the systemd journal ($JOURNAL_STREAM names stderr's device and inode) each
 * line starts with its syslog priority, "<3>" for ERROR, "<4>" WARN, "<6>" INFO, "<7>" DEBUG:
 * journald strips it and files the line at that priority.
 *
 * The log also keeps the last RELAY_LOG_RING WARN and ERROR lines (the status API shows them).
 *
 * The only clock read below main and io is here: the wall time printed at the head of a line.
 * Nothing decides anything from it.
 */
#ifndef RELAY_UTIL_LOG_H
#define RELAY_UTIL_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum relay_log_level { RELAY_LOG_ERROR = 0, RELAY_LOG_WARN, RELAY_LOG_INFO, RELAY_LOG_DEBUG };
enum relay_log_format { RELAY_LOG_TEXT = 0, RELAY_LOG_JSON };

#define RELAY_LOG_RING 50     /* WARN/ERROR lines kept */
#define RELAY_LOG_RL_SLOTS 32 /* call sites the rate limiter tracks at once */
#define RELAY_LOG_FIELDS 4    /* relay_log_field()s per line */

/* One WARN or ERROR line as it was logged (relay_log_ring()). */
struct relay_log_entry {
    int64_t wall_ms; /* when (ms since the epoch) */
    enum relay_log_level level;
    uint32_t repeated; /* lines like this one (same call site and who) the rate limiter
                          suppressed after it */
    uint64_t key;      /* the rate limiter's key; 0 = a line that is not rate-limited */
    char who[64];
    char msg[400]; /* truncated to fit */
};

struct relay_log {
    enum relay_log_level level;
    enum relay_log_format format;
    bool journal; /* stderr is the journal: priority prefixes */
    /* rate limiting of repeated warnings: a small table of (key, window start, count) */
    struct {
        uint64_t key;
        uint64_t window_start_ms;
        uint32_t count;
    } rl[RELAY_LOG_RL_SLOTS];
    /* the last WARN/ERROR lines: ring[(ring_next - 1) % RELAY_LOG_RING] is the newest */
    struct relay_log_entry ring[RELAY_LOG_RING];
    uint64_t ring_next; /* lines ever kept */
    /* fields for the next line only (relay_log_field) */
    struct {
        const char *key;
        bool is_int;
        int64_t i;
        char s[128];
    } fields[RELAY_LOG_FIELDS];
    unsigned n_fields;
};

/* Text format at level; finds out whether stderr is the journal ($JOURNAL_STREAM). */
void relay_log_init(struct relay_log *lg, enum relay_log_level level);
void relay_log_set_format(struct relay_log *lg, enum relay_log_format format);
bool relay_log_enabled(const struct relay_log *lg, enum relay_log_level level);
void relay_log(struct relay_log *lg, enum relay_log_level level, const char *who, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));
void relay_logv(struct relay_log *lg, enum relay_log_level level, const char *who, const char *fmt,
                va_list ap);
/* Like relay_log, but at most a few lines per 10 s per (who, fmt) pair; the next line after a
 * suppressed burst says how many were suppressed. */
void relay_log_limited(struct relay_log *lg, uint64_t now_ms, enum relay_log_level level,
                       const char *who, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Fields of the next line on lg (whatever becomes of it: written, filtered out or suppressed):
 * in the json format, extra members after "msg"; the text format ignores them. key is a static
 * string (a JSON member name); the value is copied (truncated to 127 bytes). At most
 * RELAY_LOG_FIELDS per line; more are ignored. A who of the form "NAME#N" is split into "broker"
 * and "conn", unless a "route" field names who itself (a route may be called "x#1"). */
void relay_log_field(struct relay_log *lg, const char *key, const char *value);
void relay_log_field_int(struct relay_log *lg, const char *key, int64_t value);

/* The i-th newest kept WARN/ERROR line (0 = the newest), NULL past the oldest. Valid until the
 * next line is logged. */
const struct relay_log_entry *relay_log_ring(const struct relay_log *lg, size_t i);

/* libwebsockets' lines and the transport's own, which have no struct relay_log at hand (lws'
 * emit callback has no user pointer): they go to the log named here, the one log of the
 * process (main.c). Without one they are written as text on stderr. */
void relay_log_set_default(struct relay_log *lg);
/* A line with level text, through the default log (its level filter, format and ring). */
void relay_log_raw(enum relay_log_level level, const char *who, const char *msg);
/* The same, rate-limited like relay_log_limited: lines that differ only in their digits share
 * a budget (a peer can make lws say the same thing thousands of times). */
void relay_log_raw_limited(uint64_t now_ms, enum relay_log_level level, const char *who,
                           const char *msg);

#endif
