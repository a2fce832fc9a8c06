/* log.c: one line per event on stderr, "2026-11-24T19:50:01.123Z WARN  who: message". */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

static const char *const level_text[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

/* Repeated warnings: at most RL_BURST lines per (who, fmt) in RL_WINDOW_MS. */
#define RL_WINDOW_MS 10000u
#define RL_BURST 3u

void relay_log_init(struct relay_log *lg, enum relay_log_level level)
{
    memset(lg, 0, sizeof(*lg));
    lg->level = level;
}

bool relay_log_enabled(const struct relay_log *lg, enum relay_log_level level)
{
    return level <= lg->level;
}

/* Writes the whole line with one fputs so lines from the lws bridge never interleave. */
static void emit(enum relay_log_level level, const char *who, const char *msg)
{
    struct timespec ts;
    struct tm tm;
    char line[2048];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    if ((unsigned)level > RELAY_LOG_DEBUG)
        level = RELAY_LOG_DEBUG;
    snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %s\n",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000L, level_text[level], who ? who : "relay", msg);
    fputs(line, stderr);
}

void relay_log_raw(enum relay_log_level level, const char *who, const char *msg)
{
    emit(level, who, msg);
}

void relay_logv(struct relay_log *lg, enum relay_log_level level, const char *who, const char *fmt,
                va_list ap)
{
    char msg[1600];

    if (!relay_log_enabled(lg, level))
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    emit(level, who, msg);
}

void relay_log(struct relay_log *lg, enum relay_log_level level, const char *who, const char *fmt,
               ...)
{
    va_list ap;

    va_start(ap, fmt);
    relay_logv(lg, level, who, fmt, ap);
    va_end(ap);
}

/* FNV-1a over who and the format string's address: the same call site for the same
 * connection shares a budget. */
static uint64_t rl_key(const char *who, const char *fmt)
{
    uint64_t h = 1469598103934665603ull;

    for (const char *p = who ? who : ""; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h ^= (uint64_t)(uintptr_t)fmt;
    return h ? h : 1;
}

void relay_log_limited(struct relay_log *lg, uint64_t now_ms, enum relay_log_level level,
                       const char *who, const char *fmt, ...)
{
    uint64_t key = rl_key(who, fmt);
    size_t slot = 0, oldest = 0;
    uint32_t suppressed = 0;
    va_list ap;

    if (!relay_log_enabled(lg, level))
        return;
    for (slot = 0; slot < 32; slot++) {
        if (lg->rl[slot].key == key)
            break;
        if (lg->rl[slot].window_start_ms < lg->rl[oldest].window_start_ms)
            oldest = slot;
    }
    if (slot == 32) {
        slot = oldest;
        lg->rl[slot].key = key;
        lg->rl[slot].window_start_ms = now_ms;
        lg->rl[slot].count = 0;
    }
    if (now_ms - lg->rl[slot].window_start_ms >= RL_WINDOW_MS) {
        if (lg->rl[slot].count > RL_BURST)
            suppressed = lg->rl[slot].count - RL_BURST;
        lg->rl[slot].window_start_ms = now_ms;
        lg->rl[slot].count = 0;
    }
    if (++lg->rl[slot].count > RL_BURST)
        return;

    char msg[1600];
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (suppressed && n >= 0 && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, " (%u similar lines suppressed)", suppressed);
    emit(level, who, msg);
}
