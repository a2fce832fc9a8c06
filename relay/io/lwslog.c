/* lwslog.c: libwebsockets' own log lines, shown in ours ("lws: ..."), and our transport's.
 * lws' lines are rate-limited like the relay's own warnings: a remote peer (an HTTP client
 * sending 60 KB request lines) can make lws say the same thing thousands of times. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/internal.h"

/* ---------------------------------------------------------------------------------------- */
/* lws' own log lines                                                                        */
/* ---------------------------------------------------------------------------------------- */

/* lws errors that a link's close reason already reports (and that would otherwise repeat at
 * every reconnect): shown at debug only. */
static const char *const lws_echoes[] = {
    "SSL error:",          "lws_client_handshake: got bad HTTP",
    "use_PrivateKey_file", "problem ",
    "Private SSL key",     "lws_create_vhost:",
    "Unable to load SSL"};

/* What an HTTP client can make lws say about its request: not our error, a warning. */
static const char *const lws_peer_faults[] = {
    "Ran out of header data space", "More hdr frags than", "header ",  "Duplicated method",
    "Missing URI in HTTP request",  "multiple methods",    "bad role", "fragmented basic auth",
};

/* lws' emit callback has no user pointer. The level filter lives in the mask given to
 * lws_set_log_level() (set from the transport's options), so no file-static is needed here. */
void io_lws_log_emit(int level, const char *line)
{
    enum relay_log_level lv = RELAY_LOG_DEBUG;
    char buf[512];
    size_t n;

    if (level & LLL_ERR)
        lv = RELAY_LOG_ERROR;
    else if (level & LLL_WARN)
        lv = RELAY_LOG_WARN;
    for (n = 0; lv < RELAY_LOG_DEBUG && n < sizeof(lws_echoes) / sizeof(lws_echoes[0]); n++)
        if (!strncmp(line, lws_echoes[n], strlen(lws_echoes[n])))
            lv = RELAY_LOG_DEBUG;
    if (lv == RELAY_LOG_DEBUG && !lwsl_visible(LLL_INFO))
        return; /* LLL_INFO is in the mask only at our debug level */
    /* lws' stderr emitter adds "[2018/11/13 07:41:57:3989] E: "; others may too */
    if (line[0] == '[') {
        const char *e = strchr(line, ']');
        if (e) {
            line = e + 1;
            while (*line == ' ')
                line++;
            if (line[0] && line[1] == ':' && line[2] == ' ')
                line += 3;
        }
    }
    for (n = 0; lv == RELAY_LOG_ERROR && n < sizeof(lws_peer_faults) / sizeof(lws_peer_faults[0]);
         n++)
        if (!strncmp(line, lws_peer_faults[n], strlen(lws_peer_faults[n])))
            lv = RELAY_LOG_WARN;
    snprintf(buf, sizeof(buf), "%s", line);
    n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (n)
        relay_log_raw_limited(relay_now_ms(), lv, "lws", buf);
}

/* ERR and WARN from warn up, everything (NOTICE, INFO: the library is built without DEBUG)
 * at debug; the echoes above are dropped below debug. */
int io_lws_log_mask(enum relay_log_level level)
{
    switch (level) {
    case RELAY_LOG_ERROR:
        return LLL_ERR;
    case RELAY_LOG_WARN:
    case RELAY_LOG_INFO:
        return LLL_ERR | LLL_WARN;
    default:
        return LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO;
    }
}

void io_log(const struct relay_transport *t, enum relay_log_level level, const char *who,
            const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void io_vlog(const struct relay_transport *t, enum relay_log_level level, const char *who,
                    bool limited, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));
static void io_vlog(const struct relay_transport *t, enum relay_log_level level, const char *who,
                    bool limited, const char *fmt, va_list ap)
{
    char msg[512];

    if (level > t->log_level)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (limited)
        relay_log_raw_limited(relay_now_ms(), level, who, msg);
    else
        relay_log_raw(level, who, msg);
}

void io_log(const struct relay_transport *t, enum relay_log_level level, const char *who,
            const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    io_vlog(t, level, who, false, fmt, ap);
    va_end(ap);
}

void io_log_limited(const struct relay_transport *t, enum relay_log_level level, const char *who,
                    const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    io_vlog(t, level, who, true, fmt, ap);
    va_end(ap);
}
