/*
 * log.c: one line per event on stderr, as text ("2026-11-24T19:50:01.123Z WARN  who: message")
 * or as one JSON object; the journal's priority prefixes; rate limiting of repeated lines; the
 * ring of the last WARN/ERROR lines.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/json.h"
#include "util/log.h"

static const char *const level_text[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};
static const char *const level_json[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char level_prio[] = {'3', '4', '6', '7'}; /* syslog: err, warning, info, debug */

/* Repeated warnings: at most RL_BURST lines per (who, fmt) in RL_WINDOW_MS. */
#define RL_WINDOW_MS 10000u
#define RL_BURST 3u

/* The log relay_log_raw() writes to (lws' emit callback has no user pointer): the one global of
 * util/, set once by main. */
static struct relay_log *default_log;

/* $JOURNAL_STREAM is "DEVICE:INODE" of the stream systemd connected stdout/stderr to; it is
 * inherited by children, so it only counts when it names our stderr itself. */
static bool stderr_is_journal(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char tail;

    if (!v || sscanf(v, "%llu:%llu%c", &dev, &ino, &tail) != 2)
        return false;
    if (fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void relay_log_init(struct relay_log *lg, enum relay_log_level level)
{
    memset(lg, 0, sizeof(*lg));
    lg->level = level;
    lg->format = RELAY_LOG_TEXT;
    lg->journal = stderr_is_journal();
}

void relay_log_set_format(struct relay_log *lg, enum relay_log_format format)
{
    lg->format = format;
}

void relay_log_set_default(struct relay_log *lg)
{
    default_log = lg;
}

bool relay_log_enabled(const struct relay_log *lg, enum relay_log_level level)
{
    return level <= lg->level;
}

void relay_log_field(struct relay_log *lg, const char *key, const char *value)
{
    if (lg->n_fields >= RELAY_LOG_FIELDS || !key)
        return;
    lg->fields[lg->n_fields].key = key;
    lg->fields[lg->n_fields].is_int = false;
    snprintf(lg->fields[lg->n_fields].s, sizeof(lg->fields[0].s), "%s", value ? value : "");
    lg->n_fields++;
}

void relay_log_field_int(struct relay_log *lg, const char *key, int64_t value)
{
    if (lg->n_fields >= RELAY_LOG_FIELDS || !key)
        return;
    lg->fields[lg->n_fields].key = key;
    lg->fields[lg->n_fields].is_int = true;
    lg->fields[lg->n_fields].i = value;
    lg->n_fields++;
}

const struct relay_log_entry *relay_log_ring(const struct relay_log *lg, size_t i)
{
    if (i >= RELAY_LOG_RING || i >= lg->ring_next)
        return NULL;
    return &lg->ring[(lg->ring_next - 1 - i) % RELAY_LOG_RING];
}

/* ---- the json format ---------------------------------------------------------------------- */

static const char *route_field(const struct relay_log *lg)
{
    for (unsigned i = 0; i < lg->n_fields; i++)
        if (!strcmp(lg->fields[i].key, "route") && !lg->fields[i].is_int)
            return lg->fields[i].s;
    return NULL;
}

/* who "NAME#N" (a broker's connection: NAME of [A-Za-z0-9_-], as broker names are), "NAME#N
 * probe" (its failover probe) or "spool NAME": the broker and connection split out; not when
 * the line said who is a route (a route may be named "x#1"). */
static void json_who(FILE *f, const char *who, bool is_route)
{
    size_t n = strspn(who, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
    const char *p = who + n;
    char *end;
    unsigned long conn;

    if (is_route)
        return;
    if (!strncmp(who, "spool ", 6) && who[6]) {
        fputs(",\"broker\":", f);
        relay_json_cstr(f, who + 6);
        return;
    }
    if (n == 0 || p[0] != '#' || p[1] < '0' || p[1] > '9')
        return;
    conn = strtoul(p + 1, &end, 10);
    if (*end && strcmp(end, " probe"))
        return;
    fputs(",\"broker\":", f);
    relay_json_string(f, who, n);
    fprintf(f, ",\"conn\":%lu", conn);
    if (*end)
        fputs(",\"probe\":true", f);
}

/* An MQTT reason code named in the text as "code 0xHH" or "reason 0xHH" (how the relay's lines
 * write them): its value, or -1. */
static int reason_code(const char *msg)
{
    static const char *const marks[] = {"code 0x", "reason 0x"};

    for (size_t k = 0; k < 2; k++) {
        const char *p = strstr(msg, marks[k]);
        unsigned v;
        int used = 0;

        if (p && sscanf(p + strlen(marks[k]), "%2x%n", &v, &used) == 1 && used == 2)
            return (int)v;
    }
    return -1;
}

static void json_line(FILE *f, const struct relay_log *lg, const char *ts,
                      enum relay_log_level level, const char *who, const char *msg,
                      uint32_t suppressed)
{
    const char *route = route_field(lg);
    int rc = reason_code(msg);

    fprintf(f, "{\"ts\":\"%s\",\"level\":\"%s\",\"who\":", ts, level_json[level]);
    relay_json_cstr(f, who);
    json_who(f, who, route && !strcmp(route, who));
    fputs(",\"msg\":", f);
    relay_json_cstr(f, msg);
    if (rc >= 0)
        fprintf(f, ",\"reason_code\":%d", rc);
    if (suppressed)
        fprintf(f, ",\"suppressed\":%" PRIu32, suppressed);
    for (unsigned i = 0; i < lg->n_fields; i++) {
        fputc(',', f);
        relay_json_cstr(f, lg->fields[i].key);
        fputc(':', f);
        if (lg->fields[i].is_int)
            fprintf(f, "%" PRId64, lg->fields[i].i);
        else
            relay_json_cstr(f, lg->fields[i].s);
    }
    fputs("}\n", f);
}

/* ---- one line out --------------------------------------------------------------------------- */

static void keep(struct relay_log *lg, int64_t wall_ms, enum relay_log_level level, const char *who,
                 const char *msg, uint64_t key)
{
    struct relay_log_entry *e = &lg->ring[lg->ring_next % RELAY_LOG_RING];

    e->wall_ms = wall_ms;
    e->level = level;
    e->repeated = 0;
    e->key = key;
    snprintf(e->who, sizeof(e->who), "%s", who);
    snprintf(e->msg, sizeof(e->msg), "%s", msg);
    lg->ring_next++;
}

/* Writes the whole line with one fputs so lines from the lws bridge never interleave. lg NULL:
 * text, no ring (relay_log_raw before main named a log). */
static void emit(struct relay_log *lg, enum relay_log_level level, const char *who, const char *msg,
                 uint32_t suppressed, uint64_t key)
{
    struct timespec now;
    struct tm tm;
    char ts[RELAY_JSON_TIME_LEN], line[2048], prio[4] = "";
    int64_t wall_ms;

    if ((unsigned)level > RELAY_LOG_DEBUG)
        level = RELAY_LOG_DEBUG;
    if (!who)
        who = "relay";
    clock_gettime(CLOCK_REALTIME, &now);
    wall_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (lg && lg->journal)
        snprintf(prio, sizeof(prio), "<%c>", level_prio[level]);
    if (lg && lg->format == RELAY_LOG_JSON) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        relay_json_time(ts, sizeof(ts), wall_ms);
        if (f) {
            fputs(prio, f);
            json_line(f, lg, ts, level, who, msg, suppressed);
        }
        if (f && fclose(f) == 0)
            fputs(buf, stderr);
        free(buf);
    } else {
        const time_t sec = now.tv_sec;
        char more[48] = "";

        gmtime_r(&sec, &tm);
        if (suppressed)
            snprintf(more, sizeof(more), " (%" PRIu32 " similar lines suppressed)", suppressed);
        snprintf(line, sizeof(line), "%s%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %s%s\n", prio,
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 now.tv_nsec / 1000000L, level_text[level], who, msg, more);
        fputs(line, stderr);
    }
    if (lg && level <= RELAY_LOG_WARN)
        keep(lg, wall_ms, level, who, msg, key);
}

static void done(struct relay_log *lg)
{
    if (lg)
        lg->n_fields = 0;
}

void relay_logv(struct relay_log *lg, enum relay_log_level level, const char *who, const char *fmt,
                va_list ap)
{
    char msg[1600];

    if (relay_log_enabled(lg, level)) {
        vsnprintf(msg, sizeof(msg), fmt, ap);
        emit(lg, level, who, msg, 0, 0);
    }
    done(lg);
}

void relay_log(struct relay_log *lg, enum relay_log_level level, const char *who, const char *fmt,
               ...)
{
    va_list ap;

    va_start(ap, fmt);
    relay_logv(lg, level, who, fmt, ap);
    va_end(ap);
}

/* ---- rate limiting -------------------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const char *s, bool skip_digits)
{
    for (; s && *s; s++)
        if (!skip_digits || *s < '0' || *s > '9')
            h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* FNV-1a over who and the format string's address: the same call site for the same
 * connection shares a budget. */
static uint64_t rl_key(const char *who, const char *fmt)
{
    uint64_t h = fnv(1469598103934665603ull, who ? who : "", false);

    h ^= (uint64_t)(uintptr_t)fmt;
    return h ? h : 1;
}

/* True when a line with key may be written now; *suppressed: how many were held back in the
 * window that just ended. A line held back counts on the newest kept line with its key. */
static bool rl_admit(struct relay_log *lg, uint64_t now_ms, uint64_t key, uint32_t *suppressed)
{
    size_t slot, oldest = 0;

    *suppressed = 0;
    for (slot = 0; slot < RELAY_LOG_RL_SLOTS; slot++) {
        if (lg->rl[slot].key == key)
            break;
        if (lg->rl[slot].window_start_ms < lg->rl[oldest].window_start_ms)
            oldest = slot;
    }
    if (slot == RELAY_LOG_RL_SLOTS) {
        slot = oldest;
        lg->rl[slot].key = key;
        lg->rl[slot].window_start_ms = now_ms;
        lg->rl[slot].count = 0;
    }
    if (now_ms - lg->rl[slot].window_start_ms >= RL_WINDOW_MS) {
        if (lg->rl[slot].count > RL_BURST)
            *suppressed = lg->rl[slot].count - RL_BURST;
        lg->rl[slot].window_start_ms = now_ms;
        lg->rl[slot].count = 0;
    }
    if (++lg->rl[slot].count <= RL_BURST)
        return true;
    for (size_t i = 0; i < RELAY_LOG_RING && i < lg->ring_next; i++) {
        struct relay_log_entry *e = &lg->ring[(lg->ring_next - 1 - i) % RELAY_LOG_RING];

        if (e->key == key) {
            e->repeated++;
            break;
        }
    }
    return false;
}

void relay_log_limited(struct relay_log *lg, uint64_t now_ms, enum relay_log_level level,
                       const char *who, const char *fmt, ...)
{
    uint64_t key = rl_key(who, fmt);
    uint32_t suppressed;
    char msg[1600];
    va_list ap;

    if (relay_log_enabled(lg, level) && rl_admit(lg, now_ms, key, &suppressed)) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        emit(lg, level, who, msg, suppressed, key);
    }
    done(lg);
}

/* ---- lines from below the relay's objects ---------------------------------------------------- */

void relay_log_raw(enum relay_log_level level, const char *who, const char *msg)
{
    struct relay_log *lg = default_log;

    if (!lg || relay_log_enabled(lg, level))
        emit(lg, level, who, msg, 0, 0);
    done(lg);
}

void relay_log_raw_limited(uint64_t now_ms, enum relay_log_level level, const char *who,
                           const char *msg)
{
    struct relay_log *lg = default_log;
    uint64_t key = fnv(fnv(0x52415721ull, who, false), msg, true); /* "RAW!": apart from rl_key */
    uint32_t suppressed = 0;

    key = key ? key : 1;
    if (!lg || (relay_log_enabled(lg, level) && rl_admit(lg, now_ms, key, &suppressed)))
        emit(lg, level, who, msg, suppressed, key);
    done(lg);
}
