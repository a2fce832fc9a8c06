/*
 * config.c: turns the libconfig file into a plain struct relay_config (SPEC.md, Configuration).
 *
 * Everything is validated here, once: unknown keys, types, ranges, URLs, paths, broker and
 * route references, templates and the static loop check. Every error is one line
 * "FILE:LINE: what is wrong", naming the setting's line and the broker or route concerned.
 * Strings are copied out of libconfig before config_destroy(); the result owns all its memory.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "conf/load.h"
#include "route/loopguard.h"
#include "route/template.h"

#define STR_MAX 65535u /* longest string accepted anywhere (an MQTT string's limit) */
#define MAX_BROKERS 64u
#define MAX_ROUTES 10000u
#define MAX_URLS 64u
#define ID_MAX 64u     /* relay.id */
#define V31_ID_MAX 23u /* MQTT 3.1: client ids of 1..23 bytes */

/* Loader state: where errors go and the context ("broker \"edge\": ") they are reported in. */
struct ld {
    const char *path; /* the file as given */
    char *err;
    size_t errlen;
    struct relay_config *cfg;
    char who[128];  /* message prefix naming the broker or route, "" at top level */
    const char *kp; /* key prefix shown in messages: "", "tls.", "relay.", ... */
};

/* ---- messages ----------------------------------------------------------------------------- */

/* Quotes s for a one-line message: control bytes, '"' and '\\' escaped, cut after 80 bytes. */
static const char *shown(char *buf, size_t cap, const char *s)
{
    size_t o = 0, n = strlen(s);
    buf[o++] = '"';
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= 80) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static unsigned line_of(const config_setting_t *s)
{
    while (s && config_setting_source_line(s) == 0)
        s = config_setting_parent(s);
    return s ? config_setting_source_line(s) : 1;
}

static const char *file_of(const struct ld *ld, const config_setting_t *s)
{
    const char *f = s ? config_setting_source_file(s) : NULL;
    return f ? f : ld->path;
}

/* Writes "FILE:LINE: <who><message>" and returns -EINVAL. line 0 = take it from s. */
static int failv(struct ld *ld, const config_setting_t *s, unsigned line, const char *fmt,
                 va_list ap)
{
    if (ld->err && ld->errlen) {
        int n = snprintf(ld->err, ld->errlen, "%s:%u: %s", file_of(ld, s), line ? line : line_of(s),
                         ld->who);
        if (n >= 0 && (size_t)n < ld->errlen)
            vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    }
    return -EINVAL;
}

static int fail(struct ld *ld, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct ld *ld, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = failv(ld, s, 0, fmt, ap);
    va_end(ap);
    return rc;
}

static int fail_at(struct ld *ld, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(struct ld *ld, unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = failv(ld, NULL, line ? line : 1, fmt, ap);
    va_end(ap);
    return rc;
}

static int oom(struct ld *ld)
{
    if (ld->err && ld->errlen)
        snprintf(ld->err, ld->errlen, "%s: out of memory", ld->path);
    return -ENOMEM;
}

static int dup_str(struct ld *ld, const char *s, char **out)
{
    *out = strdup(s);
    return *out ? 0 : oom(ld);
}

/* ---- keys and typed values ---------------------------------------------------------------- */

/* Edit distance with transpositions (optimal string alignment), for "did you mean" hints. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), d[40][40];
    if (la >= 40 || lb >= 40)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* Every member of group g must be one of keys (NULL-terminated). */
static int check_keys(struct ld *ld, const config_setting_t *g, const char *const *keys)
{
    for (int i = 0; i < config_setting_length(g); i++) {
        const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(m);
        const char *near = NULL;
        size_t best = 3;
        bool known = false;
        for (const char *const *k = keys; *k; k++) {
            if (strcmp(name, *k) == 0) {
                known = true;
                break;
            }
            size_t d = distance(name, *k);
            if (d < best && (d <= 1 || strlen(*k) >= 5)) {
                best = d;
                near = *k;
            }
        }
        if (known)
            continue;
        if (near)
            return fail(ld, m, "unknown key \"%s%s\" (did you mean \"%s%s\"?)", ld->kp, name,
                        ld->kp, near);
        return fail(ld, m, "unknown key \"%s%s\"", ld->kp, name);
    }
    return 0;
}

static const char *type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "of an unknown type";
    }
}

static int wrong_type(struct ld *ld, const config_setting_t *s, const char *want)
{
    return fail(ld, s, "%s%s must be %s, not %s", ld->kp, config_setting_name(s), want,
                type_name(config_setting_type(s)));
}

/* A string value of s, at most STR_MAX bytes. */
static int str_value(struct ld *ld, const config_setting_t *s, const char *shown_name,
                     const char **out)
{
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        if (shown_name)
            return fail(ld, s, "%s must be a string, not %s", shown_name,
                        type_name(config_setting_type(s)));
        return wrong_type(ld, s, "a string");
    }
    const char *v = config_setting_get_string(s);
    if (strlen(v) > STR_MAX)
        return fail(ld, s, "%s%s is longer than %u bytes", ld->kp,
                    shown_name ? shown_name : config_setting_name(s), STR_MAX);
    *out = v;
    return 0;
}

/* g.key as a string: *out = NULL when absent. */
static int get_str(struct ld *ld, const config_setting_t *g, const char *key, const char **out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    *out = NULL;
    return s ? str_value(ld, s, NULL, out) : 0;
}

/* g.key as an integer in lo..hi; *out = dflt when absent. */
static int get_int(struct ld *ld, const config_setting_t *g, const char *key, int64_t lo,
                   int64_t hi, int64_t dflt, int64_t *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    *out = dflt;
    if (!s)
        return 0;
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
        return wrong_type(ld, s, "an integer");
    int64_t v = config_setting_get_int64(s);
    if (v < lo || v > hi) {
        if (hi == INT64_MAX)
            return fail(ld, s, "%s%s = %" PRId64 " is out of range (at least %" PRId64 ")", ld->kp,
                        key, v, lo);
        return fail(ld, s, "%s%s = %" PRId64 " is out of range (%" PRId64 "..%" PRId64 ")", ld->kp,
                    key, v, lo, hi);
    }
    *out = v;
    return 0;
}

static int get_bool(struct ld *ld, const config_setting_t *g, const char *key, bool dflt, bool *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    *out = dflt;
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return wrong_type(ld, s, "true or false");
    *out = config_setting_get_bool(s) != 0;
    return 0;
}

/* g.key as a group (NULL when absent). */
static int get_group(struct ld *ld, const config_setting_t *g, const char *key,
                     const config_setting_t **out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    *out = NULL;
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_GROUP)
        return wrong_type(ld, s, "a group { ... }");
    *out = s;
    return 0;
}

/* One of the words in choices (NULL-terminated): its index, or dflt when absent. */
static int get_enum(struct ld *ld, const config_setting_t *g, const char *key,
                    const char *const *choices, const char *hint, int dflt, int *out)
{
    const char *v;
    int rc = get_str(ld, g, key, &v);
    *out = dflt;
    if (rc < 0 || !v)
        return rc;
    for (int i = 0; choices[i]; i++) {
        if (strcmp(v, choices[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    char b[100];
    return fail(ld, config_setting_get_member(g, key), "%s%s %s is not one of %s", ld->kp, key,
                shown(b, sizeof(b), v), hint);
}

/* ---- small syntax checks ------------------------------------------------------------------ */

static bool word_chars(const char *s, const char *extra)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) || (unsigned char)*s >= 0x80)
            if (!strchr(extra, *s))
                return false;
    return true;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static bool host_ok(const char *h, size_t n, bool bracketed)
{
    char buf[256];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, h, n);
    buf[n] = '\0';
    if (bracketed) {
        struct in6_addr a;
        return inet_pton(AF_INET6, buf, &a) == 1;
    }
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)buf[i]) && !strchr("-._", buf[i]))
            return false;
    return true;
}

/* Digits only, 1..65535. */
static bool port_ok(const char *p, size_t n, uint16_t *port)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* "host:port" or "[v6]:port": the host (without brackets) and port; false if malformed. */
static bool split_host_port(const char *s, size_t n, const char **host, size_t *hlen,
                            bool *bracketed, const char **port, size_t *plen)
{
    const char *end = s + n, *colon;
    *bracketed = n > 0 && s[0] == '[';
    if (*bracketed) {
        const char *close = memchr(s, ']', n);
        if (!close)
            return false;
        *host = s + 1;
        *hlen = (size_t)(close - s - 1);
        colon = close + 1 < end ? close + 1 : NULL;
        if (colon && *colon != ':')
            return false;
    } else {
        colon = memchr(s, ':', n);
        *host = s;
        *hlen = colon ? (size_t)(colon - s) : n;
    }
    *port = colon ? colon + 1 : NULL;
    *plen = colon ? (size_t)(end - colon - 1) : 0;
    return true;
}

/* ---- URLs --------------------------------------------------------------------------------- */

static const struct {
    const char *prefix;
    enum relay_scheme scheme;
    uint16_t port;
} schemes[] = {
    {"mqtt://", RELAY_MQTT, 1883},
    {"mqtts://", RELAY_MQTTS, 8883},
    {"ws://", RELAY_WS, 80},
    {"wss://", RELAY_WSS, 443},
};

static int parse_url(struct ld *ld, const config_setting_t *s, const char *text,
                     struct relay_url *u)
{
    char b[100];
    const char *p = NULL;
    bool ws = false;
    memset(u, 0, sizeof(*u));
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i].prefix);
        if (strncasecmp(text, schemes[i].prefix, n) == 0) {
            u->scheme = schemes[i].scheme;
            u->port = schemes[i].port;
            ws = u->scheme == RELAY_WS || u->scheme == RELAY_WSS;
            p = text + n;
            break;
        }
    }
    if (!p) {
        const char *sep = strstr(text, "://");
        if (sep)
            return fail(ld, s,
                        "URL %s: unknown scheme \"%.*s\" (use mqtt://, mqtts://, ws:// or wss://)",
                        shown(b, sizeof(b), text), (int)(sep - text > 20 ? 20 : sep - text), text);
        return fail(ld, s, "URL %s: no scheme (use mqtt://, mqtts://, ws:// or wss://)",
                    shown(b, sizeof(b), text));
    }
    size_t alen = strcspn(p, "/?#");
    const char *rest = p + alen;
    if (memchr(p, '@', alen))
        return fail(ld, s,
                    "URL %s: credentials in the URL are not supported (use username "
                    "and password)",
                    shown(b, sizeof(b), text));
    const char *host, *port;
    size_t hlen, plen;
    bool br;
    if (!split_host_port(p, alen, &host, &hlen, &br, &port, &plen))
        return fail(ld, s, "URL %s: malformed host", shown(b, sizeof(b), text));
    if (hlen == 0)
        return fail(ld, s, "URL %s: no host", shown(b, sizeof(b), text));
    if (!host_ok(host, hlen, br))
        return fail(ld, s, "URL %s: invalid host \"%.*s\"%s", shown(b, sizeof(b), text),
                    (int)(hlen > 64 ? 64 : hlen), host,
                    !br && memchr(host, ':', hlen) ? " (IPv6 addresses go in [brackets])" : "");
    if (port && !port_ok(port, plen, &u->port))
        return fail(ld, s, "URL %s: invalid port \"%.*s\" (1..65535)", shown(b, sizeof(b), text),
                    (int)(plen > 16 ? 16 : plen), port);
    if (*rest) {
        if (!ws)
            return fail(ld, s, "URL %s: a path is only allowed for ws:// and wss://",
                        shown(b, sizeof(b), text));
        if (*rest != '/')
            return fail(ld, s, "URL %s: the path must start with '/'", shown(b, sizeof(b), text));
        for (const char *c = rest; *c; c++)
            if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#')
                return fail(ld, s, "URL %s: invalid character in the path",
                            shown(b, sizeof(b), text));
    }
    if (!(u->text = strdup(text)) || !(u->host = strndup(host, hlen)) ||
        (ws && !(u->path = strdup(*rest ? rest : "/mqtt"))))
        return oom(ld);
    return 0;
}

static int parse_urls(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    const config_setting_t *s = config_setting_get_member(g, "url");
    if (!s)
        return fail(ld, g, "url is required");
    int type = config_setting_type(s);
    bool many = type == CONFIG_TYPE_ARRAY || type == CONFIG_TYPE_LIST;
    if (type != CONFIG_TYPE_STRING && !many)
        return wrong_type(ld, s, "a string or a list of strings");
    unsigned n = many ? (unsigned)config_setting_length(s) : 1;
    if (n == 0)
        return fail(ld, s, "url must not be an empty list");
    if (n > MAX_URLS)
        return fail(ld, s, "at most %u URLs per broker", MAX_URLS);
    b->urls = calloc(n, sizeof(*b->urls));
    if (!b->urls)
        return oom(ld);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *e = many ? config_setting_get_elem(s, i) : s;
        const char *text = NULL;
        int rc = str_value(ld, e, "each url", &text);
        if (rc < 0)
            return rc;
        b->n_urls = i + 1;
        if ((rc = parse_url(ld, e, text, &b->urls[i])) < 0)
            return rc;
    }
    return 0;
}

/* ---- paths and files ---------------------------------------------------------------------- */

static int resolve(struct ld *ld, const config_setting_t *s, const char *p, char **out)
{
    if (!*p)
        return fail(ld, s, "%s%s must not be empty", ld->kp, config_setting_name(s));
    if (p[0] == '/')
        return dup_str(ld, p, out);
    if (asprintf(out, "%s/%s", ld->cfg->dir, p) < 0) {
        *out = NULL;
        return oom(ld);
    }
    return 0;
}

/* "x" or "x (/abs/x)" for messages about a file. */
static const char *shown_path(char *buf, size_t cap, const char *as_written, const char *resolved)
{
    char b[100];
    shown(b, sizeof(b), as_written);
    if (strcmp(as_written, resolved) == 0)
        snprintf(buf, cap, "%s", b);
    else
        snprintf(buf, cap, "%s (%s)", b, resolved);
    return buf;
}

/* g.key names a file that must exist and be readable now: its resolved path, or NULL if
 * absent. */
static int get_file(struct ld *ld, const config_setting_t *g, const char *key, char **out)
{
    const char *v;
    int rc = get_str(ld, g, key, &v);
    *out = NULL;
    if (rc < 0 || !v)
        return rc;
    const config_setting_t *s = config_setting_get_member(g, key);
    if ((rc = resolve(ld, s, v, out)) < 0)
        return rc;
    char b[PATH_MAX + 120];
    int fd = open(*out, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return fail(ld, s, "%s%s %s: %s", ld->kp, key, shown_path(b, sizeof(b), v, *out),
                    strerror(errno));
    struct stat st;
    int e = fstat(fd, &st) < 0 ? errno : 0;
    close(fd);
    if (e)
        return fail(ld, s, "%s%s %s: %s", ld->kp, key, shown_path(b, sizeof(b), v, *out),
                    strerror(e));
    if (!S_ISREG(st.st_mode))
        return fail(ld, s, "%s%s %s: not a regular file", ld->kp, key,
                    shown_path(b, sizeof(b), v, *out));
    return 0;
}

/* The password alone; one trailing "\n" or "\r\n" is ignored. The file must not be accessible
 * by group or others. */
static int read_password_file(struct ld *ld, const config_setting_t *s, const char *v,
                              struct relay_broker_config *b)
{
    char *path, pb[PATH_MAX + 120];
    int rc = resolve(ld, s, v, &path);
    if (rc < 0)
        return rc;
    shown_path(pb, sizeof(pb), v, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    free(path);
    if (fd < 0)
        return fail(ld, s, "password_file %s: %s", pb, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail(ld, s, "password_file %s: %s", pb, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(ld, s, "password_file %s: not a regular file", pb);
    }
    if (st.st_mode & 077) {
        close(fd);
        return fail(ld, s,
                    "password_file %s: permissions %04o, must not be accessible by group or "
                    "others (chmod 600)",
                    pb, (unsigned)(st.st_mode & 07777));
    }
    /* Read one byte past the limit (plus a possible "\r\n") to tell "too long" apart. */
    size_t cap = STR_MAX + 3, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return oom(ld);
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return fail(ld, s, "password_file %s: %s", pb, strerror(e));
        }
        if (r == 0 || (n += (size_t)r) == cap)
            break;
    }
    close(fd);
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
    }
    if (n > STR_MAX) {
        free(buf);
        return fail(ld, s, "password_file %s: the password is longer than %u bytes", pb, STR_MAX);
    }
    buf[n] = '\0';
    b->password = buf;
    b->password_len = n;
    return 0;
}

/* ---- relay group -------------------------------------------------------------------------- */

static bool relay_id_ok(const char *id)
{
    return strlen(id) <= ID_MAX && word_chars(id, "_.-");
}

static int parse_relay(struct ld *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"id",       "log_level",     "metrics", "drain_timeout",
                                       "max_hops", "batch_wait_us", NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    struct relay_config *cfg = ld->cfg;
    const config_setting_t *g;
    const char *v;
    char b[100];
    int64_t n;
    int rc, e;

    if ((rc = get_group(ld, root, "relay", &g)) < 0)
        return rc;
    cfg->log_level = RELAY_LOG_INFO;
    cfg->drain_timeout_ms = 5000;
    cfg->max_hops = 8;
    cfg->batch_wait_us = RELAY_BATCH_WAIT_US;
    ld->kp = "relay.";
    if (g) {
        if ((rc = check_keys(ld, g, keys)) < 0 || (rc = get_str(ld, g, "id", &v)) < 0)
            return rc;
        if (v && !relay_id_ok(v))
            return fail(ld, config_setting_get_member(g, "id"),
                        "relay.id %s must be 1..64 characters of A-Z a-z 0-9 _ . -",
                        shown(b, sizeof(b), v));
        if (v && (rc = dup_str(ld, v, &cfg->id)) < 0)
            return rc;
        if ((rc = get_enum(ld, g, "log_level", levels, "error, warn, info, debug", RELAY_LOG_INFO,
                           &e)) < 0)
            return rc;
        cfg->log_level = (enum relay_log_level)e;
        if ((rc = get_str(ld, g, "metrics", &v)) < 0)
            return rc;
        if (v) {
            const config_setting_t *s = config_setting_get_member(g, "metrics");
            const char *host, *port;
            size_t hl, pl;
            bool br;
            if (!split_host_port(v, strlen(v), &host, &hl, &br, &port, &pl) || !port ||
                !host_ok(host, hl, br) || !port_ok(port, pl, &cfg->metrics_port))
                return fail(ld, s,
                            "relay.metrics %s must be \"HOST:PORT\" (e.g. \"127.0.0.1:9464\", "
                            "\"[::1]:9464\")",
                            shown(b, sizeof(b), v));
            if (!(cfg->metrics_host = strndup(host, hl)))
                return oom(ld);
        }
        if ((rc = get_int(ld, g, "drain_timeout", 0, 600000, 5000, &n)) < 0)
            return rc;
        cfg->drain_timeout_ms = (uint32_t)n;
        if ((rc = get_int(ld, g, "max_hops", 1, 64, 8, &n)) < 0)
            return rc;
        cfg->max_hops = (uint32_t)n;
        if ((rc = get_int(ld, g, "batch_wait_us", 0, 5000, RELAY_BATCH_WAIT_US, &n)) < 0)
            return rc;
        cfg->batch_wait_us = (uint32_t)n;
    }
    ld->kp = "";
    if (!cfg->id) {
        char host[256];
        if (gethostname(host, sizeof(host)) < 0)
            host[0] = '\0';
        host[sizeof(host) - 1] = '\0';
        if (!relay_id_ok(host))
            return fail_at(ld, g ? line_of(g) : 1,
                           "the host name %s is not a valid relay id (1..64 characters of A-Z "
                           "a-z 0-9 _ . -): set relay.id",
                           shown(b, sizeof(b), host));
        if ((rc = dup_str(ld, host, &cfg->id)) < 0)
            return rc;
    }
    return 0;
}

/* ---- brokers ------------------------------------------------------------------------------ */

static int parse_tls(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    static const char *const keys[] = {"ca_file", "cert_file",   "key_file",
                                       "verify",  "server_name", NULL};
    const config_setting_t *t;
    const char *v;
    char bb[100];
    int rc;

    b->tls.verify = true; /* also without a tls group: mqtts:// and wss:// verify by default */
    if ((rc = get_group(ld, g, "tls", &t)) < 0 || !t)
        return rc;
    b->has_tls = true;
    bool secure = false;
    for (size_t i = 0; i < b->n_urls; i++)
        secure |= b->urls[i].scheme == RELAY_MQTTS || b->urls[i].scheme == RELAY_WSS;
    if (!secure)
        return fail(ld, t,
                    "a tls group needs an mqtts:// or wss:// URL (no URL of this broker "
                    "uses TLS)");
    ld->kp = "tls.";
    if ((rc = check_keys(ld, t, keys)) < 0 ||
        (rc = get_file(ld, t, "ca_file", &b->tls.ca_file)) < 0 ||
        (rc = get_file(ld, t, "cert_file", &b->tls.cert_file)) < 0 ||
        (rc = get_file(ld, t, "key_file", &b->tls.key_file)) < 0 ||
        (rc = get_bool(ld, t, "verify", true, &b->tls.verify)) < 0 ||
        (rc = get_str(ld, t, "server_name", &v)) < 0)
        return rc;
    if (b->tls.cert_file && !b->tls.key_file)
        return fail(ld, config_setting_get_member(t, "cert_file"),
                    "tls.cert_file needs tls.key_file");
    if (b->tls.key_file && !b->tls.cert_file)
        return fail(ld, config_setting_get_member(t, "key_file"),
                    "tls.key_file needs tls.cert_file");
    if (v) {
        if (!host_ok(v, strlen(v), false))
            return fail(ld, config_setting_get_member(t, "server_name"),
                        "tls.server_name %s is not a host name", shown(bb, sizeof(bb), v));
        if ((rc = dup_str(ld, v, &b->tls.server_name)) < 0)
            return rc;
    }
    ld->kp = "";
    return 0;
}

static int parse_limits(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    static const char *const rate_keys[] = {"bytes", "messages", NULL};
    static const char *const spool_keys[] = {"dir", "max_size", NULL};
    static const char *const reco_keys[] = {"min", "max", NULL};
    const config_setting_t *s;
    const char *v;
    int64_t n;
    int rc;

    if ((rc = get_group(ld, g, "rate_limit", &s)) < 0)
        return rc;
    if (s) {
        ld->kp = "rate_limit.";
        if ((rc = check_keys(ld, s, rate_keys)) < 0 ||
            (rc = get_int(ld, s, "bytes", 0, INT64_MAX, 0, &n)) < 0)
            return rc;
        b->rate_bytes = (uint64_t)n;
        if ((rc = get_int(ld, s, "messages", 0, UINT32_MAX, 0, &n)) < 0)
            return rc;
        b->rate_messages = (uint32_t)n;
    }
    ld->kp = "";
    if ((rc = get_group(ld, g, "spool", &s)) < 0)
        return rc;
    if (s) {
        ld->kp = "spool.";
        if ((rc = check_keys(ld, s, spool_keys)) < 0 || (rc = get_str(ld, s, "dir", &v)) < 0)
            return rc;
        if (!v)
            return fail(ld, s, "spool.dir is required in a spool group");
        /* Only resolved here: the spool module creates it (mode 0700). */
        if ((rc = resolve(ld, config_setting_get_member(s, "dir"), v, &b->spool.dir)) < 0 ||
            (rc = get_int(ld, s, "max_size", 1048576, INT64_MAX, 1073741824, &n)) < 0)
            return rc;
        b->spool.max_size = (uint64_t)n;
    }
    ld->kp = "";
    if ((rc = get_group(ld, g, "reconnect", &s)) < 0)
        return rc;
    b->reconnect_min_ms = 250;
    b->reconnect_max_ms = 30000;
    if (s) {
        ld->kp = "reconnect.";
        if ((rc = check_keys(ld, s, reco_keys)) < 0 ||
            (rc = get_int(ld, s, "min", 10, UINT32_MAX, 250, &n)) < 0)
            return rc;
        b->reconnect_min_ms = (uint32_t)n;
        if ((rc = get_int(ld, s, "max", 10, UINT32_MAX,
                          30000 < b->reconnect_min_ms ? b->reconnect_min_ms : 30000, &n)) < 0)
            return rc;
        if (n < b->reconnect_min_ms)
            return fail(ld, config_setting_get_member(s, "max"),
                        "reconnect.max = %" PRId64 " must be at least reconnect.min (%" PRIu32 ")",
                        n, b->reconnect_min_ms);
        b->reconnect_max_ms = (uint32_t)n;
    }
    ld->kp = "";
    return 0;
}

static int parse_auth(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    const char *user, *pass, *pfile;
    int rc;
    if ((rc = get_str(ld, g, "username", &user)) < 0 ||
        (rc = get_str(ld, g, "password", &pass)) < 0 ||
        (rc = get_str(ld, g, "password_file", &pfile)) < 0)
        return rc;
    if (user) {
        if (mqc_utf8_check((const uint8_t *)user, strlen(user)) != MQC_OK)
            return fail(ld, config_setting_get_member(g, "username"),
                        "username is not valid UTF-8");
        if ((rc = dup_str(ld, user, &b->username)) < 0)
            return rc;
    }
    if (pass && pfile)
        return fail(ld, config_setting_get_member(g, "password_file"),
                    "password and password_file are exclusive: give one");
    if (pass) {
        if ((rc = dup_str(ld, pass, &b->password)) < 0)
            return rc;
        b->password_len = strlen(pass);
    }
    if (pfile &&
        (rc = read_password_file(ld, config_setting_get_member(g, "password_file"), pfile, b)) < 0)
        return rc;
    /* [MQTT-3.1.2-22]: before 5.0, a password is only sent with a user name */
    if (b->password && !b->username && b->version != MQC_V5)
        return fail(ld, config_setting_get_member(g, pfile ? "password_file" : "password"),
                    "%s needs a username with MQTT %s", pfile ? "password_file" : "password",
                    b->version == MQC_V31 ? "3.1" : "3.1.1");
    return 0;
}

static int parse_broker(struct ld *ld, const config_setting_t *g, size_t idx,
                        struct relay_broker_config *b)
{
    /* clang-format off */
    static const char *const keys[] = {
        "name", "url", "version", "client_id", "username", "password", "password_file",
        "keepalive", "clean_start", "session_expiry", "connections", "receive_maximum",
        "max_inflight", "max_packet_size", "rate_limit", "spool", "reconnect", "status_topic",
        "tls", "ack_timeout", NULL};
    /* clang-format on */
    static const char *const versions[] = {"3.1", "3.1.1", "5", NULL};
    static const uint8_t version_of[] = {MQC_V31, MQC_V311, MQC_V5};
    const config_setting_t *ns = config_setting_get_member(g, "name");
    const char *v;
    char bb[100];
    int64_t n;
    int rc, e;

    b->line = (int)line_of(g);
    snprintf(ld->who, sizeof(ld->who), "broker #%zu: ", idx);
    if (ns && config_setting_type(ns) == CONFIG_TYPE_STRING)
        snprintf(ld->who, sizeof(ld->who),
                 "broker %s: ", shown(bb, sizeof(bb), config_setting_get_string(ns)));
    if ((rc = check_keys(ld, g, keys)) < 0 || (rc = get_str(ld, g, "name", &v)) < 0)
        return rc;
    if (!v)
        return fail(ld, g, "name is required");
    if (!word_chars(v, "_-"))
        return fail(ld, ns, "name must be letters, digits, '_' or '-'");
    if ((rc = dup_str(ld, v, &b->name)) < 0 || (rc = parse_urls(ld, g, b)) < 0)
        return rc;
    if ((rc = get_enum(ld, g, "version", versions, "\"3.1\", \"3.1.1\", \"5\"", 2, &e)) < 0)
        return rc;
    b->version = version_of[e];

    if ((rc = get_int(ld, g, "keepalive", 0, 65535, 60, &n)) < 0)
        return rc;
    b->keepalive = (uint16_t)n;
    if ((rc = get_bool(ld, g, "clean_start", false, &b->clean_start)) < 0 ||
        (rc = get_int(ld, g, "session_expiry", 0, UINT32_MAX, 3600, &n)) < 0)
        return rc;
    b->session_expiry = (uint32_t)n;
    /* 200: BifroMQ's limit of members in a shared-subscription group. */
    if ((rc = get_int(ld, g, "connections", 1, 200, 1, &n)) < 0)
        return rc;
    b->connections = (uint32_t)n;
    if ((rc = get_int(ld, g, "receive_maximum", 1, 65535, 64, &n)) < 0)
        return rc;
    b->receive_maximum = (uint16_t)n;
    if ((rc = get_int(ld, g, "max_inflight", 1, 65535, 0, &n)) < 0)
        return rc;
    b->max_inflight = (uint16_t)n;
    if ((rc = get_int(ld, g, "max_packet_size", 128, 268435460, 262144, &n)) < 0)
        return rc;
    b->max_packet_size = (uint32_t)n;
    if ((rc = get_int(ld, g, "ack_timeout", 1000, 600000, 20000, &n)) < 0)
        return rc;
    b->ack_timeout_ms = (uint32_t)n;

    if ((rc = get_str(ld, g, "status_topic", &v)) < 0)
        return rc;
    if (v) {
        if (mqc_topic_name_check((const uint8_t *)v, strlen(v)) != MQC_OK)
            return fail(ld, config_setting_get_member(g, "status_topic"),
                        "status_topic %s is not a valid topic name (no '+' or '#', not empty)",
                        shown(bb, sizeof(bb), v));
        if ((rc = dup_str(ld, v, &b->status_topic)) < 0)
            return rc;
    }
    if ((rc = parse_auth(ld, g, b)) < 0 || (rc = parse_limits(ld, g, b)) < 0 ||
        (rc = parse_tls(ld, g, b)) < 0)
        return rc;

    /* Client id: checked last, once the version and the pool size are known. */
    if ((rc = get_str(ld, g, "client_id", &v)) < 0)
        return rc;
    const config_setting_t *cs = config_setting_get_member(g, "client_id");
    if (v) {
        if (!*v)
            return fail(ld, cs, "client_id must not be empty");
        if (mqc_utf8_check((const uint8_t *)v, strlen(v)) != MQC_OK)
            return fail(ld, cs, "client_id is not valid UTF-8");
        rc = dup_str(ld, v, &b->client_id);
    } else if (asprintf(&b->client_id, "%s-%s", ld->cfg->id, b->name) < 0) {
        b->client_id = NULL;
        rc = oom(ld);
    }
    if (rc < 0)
        return rc;
    char longest[STR_MAX + 16];
    int len = relay_broker_client_id(b, b->connections - 1, longest, sizeof(longest));
    if (len < 0 || (size_t)len > STR_MAX)
        return fail(ld, cs ? cs : g, "client id is longer than %u bytes", STR_MAX);
    if (b->version == MQC_V31 && (size_t)len > V31_ID_MAX)
        return fail(ld, cs ? cs : config_setting_get_member(g, "version"),
                    "client id %s is %d bytes, MQTT 3.1 allows at most %u: set a shorter "
                    "client_id%s",
                    shown(bb, sizeof(bb), longest), len, V31_ID_MAX,
                    b->connections > 1 ? " (\"-<i>\" is appended for each connection)" : "");
    return 0;
}

static bool same_endpoint(const struct relay_broker_config *a, const struct relay_broker_config *b)
{
    for (size_t i = 0; i < a->n_urls; i++)
        for (size_t j = 0; j < b->n_urls; j++)
            if (a->urls[i].port == b->urls[j].port &&
                strcasecmp(a->urls[i].host, b->urls[j].host) == 0)
                return true;
    return false;
}

/* Two entries for the same broker (a shared host:port) must not use the same client id: the
 * broker would disconnect one session whenever the other connects, in a loop (BifroMQ: 0x8E). */
static int check_client_ids(struct ld *ld, const config_setting_t *list)
{
    const struct relay_config *cfg = ld->cfg;
    char x[STR_MAX + 16], y[STR_MAX + 16];
    for (size_t j = 1; j < cfg->n_brokers; j++) {
        const struct relay_broker_config *b = &cfg->brokers[j];
        for (size_t i = 0; i < j; i++) {
            const struct relay_broker_config *a = &cfg->brokers[i];
            if (!same_endpoint(a, b))
                continue;
            for (uint32_t k = 0; k < b->connections; k++) {
                if (relay_broker_client_id(b, k, y, sizeof(y)) < 0)
                    continue;
                for (uint32_t m = 0; m < a->connections; m++) {
                    if (relay_broker_client_id(a, m, x, sizeof(x)) < 0 || strcmp(x, y) != 0)
                        continue;
                    char bb[100];
                    const config_setting_t *g = config_setting_get_elem(list, (unsigned)j);
                    const config_setting_t *cs = config_setting_get_member(g, "client_id");
                    return fail(ld, cs ? cs : g,
                                "broker \"%s\": client id %s is also used by broker \"%s\" on "
                                "the same host and port: the broker would disconnect one "
                                "whenever the other connects",
                                b->name, shown(bb, sizeof(bb), y), a->name);
                }
            }
        }
    }
    return 0;
}

/* Equal after removing "." segments and repeated '/' (".." is left alone: symlinks). */
static bool same_path(const char *a, const char *b)
{
    for (;;) {
        for (;;) {
            if (a[0] == '/' && a[1] == '/')
                a++;
            else if (a[0] == '/' && a[1] == '.' && (a[2] == '/' || a[2] == '\0'))
                a += 2;
            else
                break;
        }
        for (;;) {
            if (b[0] == '/' && b[1] == '/')
                b++;
            else if (b[0] == '/' && b[1] == '.' && (b[2] == '/' || b[2] == '\0'))
                b += 2;
            else
                break;
        }
        if (*a == '/' && a[1] == '\0' && !*b)
            return true; /* a trailing '/' */
        if (*b == '/' && b[1] == '\0' && !*a)
            return true;
        if (*a != *b)
            return false;
        if (!*a)
            return true;
        a++;
        b++;
    }
}

static int parse_brokers(struct ld *ld, const config_setting_t *root)
{
    struct relay_config *cfg = ld->cfg;
    const config_setting_t *list = config_setting_get_member(root, "brokers");
    int rc;

    if (!list)
        return fail_at(ld, 1, "no brokers: add brokers = ( { name = ...; url = ...; } );");
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return wrong_type(ld, list, "a list ( { ... }, { ... } )");
    unsigned n = (unsigned)config_setting_length(list);
    if (n == 0)
        return fail(ld, list, "brokers is empty");
    if (n > MAX_BROKERS)
        return fail(ld, list, "%u brokers, at most %u are allowed", n, MAX_BROKERS);
    cfg->brokers = calloc(n, sizeof(*cfg->brokers));
    if (!cfg->brokers)
        return oom(ld);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, i);
        cfg->n_brokers = i + 1;
        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
            return fail(ld, g, "each broker must be a group { ... }");
        if ((rc = parse_broker(ld, g, i, &cfg->brokers[i])) < 0)
            return rc;
        ld->who[0] = '\0';
        for (unsigned j = 0; j < i; j++)
            if (strcmp(cfg->brokers[j].name, cfg->brokers[i].name) == 0)
                return fail(ld, config_setting_get_member(g, "name"),
                            "duplicate broker name \"%s\" (first at line %d)", cfg->brokers[i].name,
                            cfg->brokers[j].line);
        /* two journals in one directory would corrupt each other */
        for (unsigned j = 0; j < i && cfg->brokers[i].spool.dir; j++)
            if (cfg->brokers[j].spool.dir &&
                same_path(cfg->brokers[j].spool.dir, cfg->brokers[i].spool.dir))
                return fail(ld,
                            config_setting_get_member(config_setting_get_member(g, "spool"), "dir"),
                            "broker \"%s\": spool.dir %s is also the spool of broker \"%s\"",
                            cfg->brokers[i].name, cfg->brokers[i].spool.dir, cfg->brokers[j].name);
    }
    return check_client_ids(ld, list);
}

/* ---- routes ------------------------------------------------------------------------------- */

static int find_broker(struct ld *ld, const config_setting_t *g, const char *key, size_t *out)
{
    const char *v;
    char bb[100];
    int rc = get_str(ld, g, key, &v);
    if (rc < 0)
        return rc;
    if (!v)
        return fail(ld, g, "%s is required", key);
    for (size_t i = 0; i < ld->cfg->n_brokers; i++) {
        if (strcmp(ld->cfg->brokers[i].name, v) == 0) {
            *out = i;
            return 0;
        }
    }
    return fail(ld, config_setting_get_member(g, key), "unknown broker %s",
                shown(bb, sizeof(bb), v));
}

static int parse_filter(struct ld *ld, const config_setting_t *g, struct relay_route_config *r)
{
    const config_setting_t *s = config_setting_get_member(g, "filter");
    const char *v;
    char bb[100];
    int rc = get_str(ld, g, "filter", &v);
    if (rc < 0)
        return rc;
    if (!v)
        return fail(ld, g, "filter is required");
    size_t len = strlen(v);
    struct mqc_share sh;
    if (mqc_topic_share_parse((const uint8_t *)v, len, &sh) != MQC_OK ||
        sh.kind != MQC_SHARE_NONE || strncmp(v, "$share/", 7) == 0 ||
        strncmp(v, "$oshare/", 8) == 0) {
        bool ordered = strncmp(v, "$oshare/", 8) == 0;
        return fail(ld, s,
                    "filter %s is a shared-subscription form: write the plain filter and use "
                    "share = \"GROUP\"%s",
                    shown(bb, sizeof(bb), v), ordered ? " with ordered = true" : "");
    }
    rc = mqc_topic_filter_check((const uint8_t *)v, len);
    if (rc == MQC_EUTF8)
        return fail(ld, s, "filter %s is not valid UTF-8", shown(bb, sizeof(bb), v));
    if (rc != MQC_OK)
        return fail(ld, s,
                    "invalid filter %s ('+' and '#' must fill a whole level, '#' only as the "
                    "last one)",
                    shown(bb, sizeof(bb), v));
    return dup_str(ld, v, &r->filter);
}

static int parse_route(struct ld *ld, const config_setting_t *g, size_t idx,
                       struct relay_route_config *r, struct relay_tpl *tpl)
{
    static const char *const keys[] = {"name",    "from",    "to",         "filter",
                                       "share",   "ordered", "qos",        "topic",
                                       "out_qos", "retain",  "properties", NULL};
    static const char *const retain[] = {"keep", "clear", NULL};
    static const char *const props[] = {"forward", "drop", NULL};
    const char *name, *v;
    char bb[100], terr[160];
    int64_t n;
    int rc, e;

    r->line = (int)line_of(g);
    /* The label for messages: the name if given, else the default name (from the raw from/to),
     * else the position. */
    const config_setting_t *ns = config_setting_get_member(g, "name");
    const config_setting_t *fs = config_setting_get_member(g, "from");
    const config_setting_t *ts = config_setting_get_member(g, "to");
    char label[200];
    if (ns && config_setting_type(ns) == CONFIG_TYPE_STRING)
        snprintf(label, sizeof(label), "%s", config_setting_get_string(ns));
    else if (fs && ts && config_setting_type(fs) == CONFIG_TYPE_STRING &&
             config_setting_type(ts) == CONFIG_TYPE_STRING)
        snprintf(label, sizeof(label), "%.64s->%.64s#%zu", config_setting_get_string(fs),
                 config_setting_get_string(ts), idx);
    else
        snprintf(label, sizeof(label), "#%zu", idx);
    snprintf(ld->who, sizeof(ld->who), "route %s: ", shown(bb, sizeof(bb), label));

    if ((rc = check_keys(ld, g, keys)) < 0 || (rc = get_str(ld, g, "name", &name)) < 0)
        return rc;
    if (name && (!*name || !printable(name) ||
                 mqc_utf8_check((const uint8_t *)name, strlen(name)) != MQC_OK))
        return fail(ld, ns, "name must be non-empty UTF-8 text without control characters");
    if ((rc = find_broker(ld, g, "from", &r->from)) < 0 ||
        (rc = find_broker(ld, g, "to", &r->to)) < 0)
        return rc;
    if (r->from == r->to)
        return fail(ld, ts, "from and to are both \"%s\": a route joins two different brokers",
                    ld->cfg->brokers[r->from].name);
    if (name)
        rc = dup_str(ld, name, &r->name);
    else if (asprintf(&r->name, "%s->%s#%zu", ld->cfg->brokers[r->from].name,
                      ld->cfg->brokers[r->to].name, idx) < 0) {
        r->name = NULL;
        rc = oom(ld);
    }
    if (rc < 0 || (rc = parse_filter(ld, g, r)) < 0)
        return rc;

    if ((rc = get_str(ld, g, "share", &v)) < 0)
        return rc;
    if (v) {
        if (!word_chars(v, "_-"))
            return fail(ld, config_setting_get_member(g, "share"),
                        "share %s must be letters, digits, '_' or '-'", shown(bb, sizeof(bb), v));
        if ((rc = dup_str(ld, v, &r->share)) < 0)
            return rc;
    }
    if ((rc = get_bool(ld, g, "ordered", false, &r->ordered)) < 0)
        return rc;
    /* "$share/G/F" goes on the wire as one MQTT string */
    if (r->share && (r->ordered ? 8 : 7) + strlen(r->share) + 1 + strlen(r->filter) > STR_MAX)
        return fail(ld, config_setting_get_member(g, "share"),
                    "the subscription \"$%sshare/GROUP/FILTER\" is longer than %u bytes",
                    r->ordered ? "o" : "", STR_MAX);
    if (r->ordered && !r->share)
        return fail(ld, config_setting_get_member(g, "ordered"),
                    "ordered = true needs share = \"GROUP\" (it selects \"$oshare/GROUP/...\")");
    if ((rc = get_int(ld, g, "qos", 0, 2, 1, &n)) < 0)
        return rc;
    r->qos = (uint8_t)n;

    if ((rc = get_str(ld, g, "topic", &v)) < 0)
        return rc;
    if ((rc = dup_str(ld, v ? v : "${topic}", &r->topic)) < 0)
        return rc;
    rc = relay_tpl_compile(tpl, r->topic, r->filter, terr, sizeof(terr));
    if (rc == -ENOMEM)
        return oom(ld);
    if (rc < 0)
        return fail(ld, config_setting_get_member(g, "topic"), "topic %s: %s",
                    shown(bb, sizeof(bb), r->topic), terr);

    const config_setting_t *oq = config_setting_get_member(g, "out_qos");
    r->out_qos = -1;
    if (oq) {
        int type = config_setting_type(oq);
        if (type == CONFIG_TYPE_STRING && strcmp(config_setting_get_string(oq), "same") == 0)
            r->out_qos = -1;
        else if ((type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) &&
                 config_setting_get_int64(oq) >= 0 && config_setting_get_int64(oq) <= 2)
            r->out_qos = (int)config_setting_get_int64(oq);
        else
            return fail(ld, oq, "out_qos must be \"same\", 0, 1 or 2");
    }
    if ((rc = get_enum(ld, g, "retain", retain, "\"keep\", \"clear\"", 0, &e)) < 0)
        return rc;
    r->retain = (enum relay_retain_mode)e;
    if ((rc = get_enum(ld, g, "properties", props, "\"forward\", \"drop\"", 0, &e)) < 0)
        return rc;
    r->properties = (enum relay_props_mode)e;
    return 0;
}

static int cmp_route_names(const void *a, const void *b)
{
    const struct relay_route_config *x = *(const struct relay_route_config *const *)a;
    const struct relay_route_config *y = *(const struct relay_route_config *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x < y ? -1 : x > y);
}

static int check_route_names(struct ld *ld)
{
    struct relay_config *cfg = ld->cfg;
    if (cfg->n_routes < 2)
        return 0;
    const struct relay_route_config **v = malloc(cfg->n_routes * sizeof(*v));
    if (!v)
        return oom(ld);
    for (size_t i = 0; i < cfg->n_routes; i++)
        v[i] = &cfg->routes[i];
    qsort(v, cfg->n_routes, sizeof(*v), cmp_route_names);
    int rc = 0;
    for (size_t i = 1; i < cfg->n_routes && rc == 0; i++) {
        if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
            char bb[100];
            rc = fail_at(ld, (unsigned)v[i]->line, "duplicate route name %s (first at line %d)",
                         shown(bb, sizeof(bb), v[i]->name), v[i - 1]->line);
        }
    }
    free(v);
    return rc;
}

static const char *version_text(uint8_t v)
{
    return v == MQC_V31 ? "3.1" : v == MQC_V311 ? "3.1.1" : "5";
}

/* ---- the static loop check (route/loopguard.c) ------------------------------------------- */

/* Two routes in opposite directions over overlapping topics through an MQTT 3.x broker: the
 * relay-path cannot travel there, so nothing would stop a message going round. */
static int check_loops(struct ld *ld, const struct relay_tpl *tpl)
{
    const struct relay_config *cfg = ld->cfg;
    struct relay_loop_route *lr = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof(*lr));
    bool *v5 = calloc(cfg->n_brokers ? cfg->n_brokers : 1, sizeof(*v5));
    size_t first = 0, second = 0;
    int found;

    if (!lr || !v5) {
        free(lr);
        free(v5);
        return oom(ld);
    }
    for (size_t i = 0; i < cfg->n_brokers; i++)
        v5[i] = cfg->brokers[i].version == MQC_V5;
    for (size_t i = 0; i < cfg->n_routes; i++)
        lr[i] = (struct relay_loop_route){cfg->routes[i].from, cfg->routes[i].to,
                                          cfg->routes[i].filter, cfg->routes[i].topic, &tpl[i]};
    found = relay_loop_find(lr, cfg->n_routes, v5, &first, &second);
    free(lr);
    free(v5);
    if (found < 0)
        return oom(ld);
    if (!found)
        return 0;
    const struct relay_route_config *r1 = &cfg->routes[first], *r2 = &cfg->routes[second];
    const struct relay_broker_config *y = &cfg->brokers[r1->to];
    char b1[100], b2[100];
    return fail_at(ld, (unsigned)cfg->routes[first > second ? first : second].line,
                   "routes %s and %s loop: what %s publishes to %s (MQTT %s) matches the filter "
                   "of %s; MQTT 3.1/3.1.1 cannot carry the loop guard: use version \"5\" or "
                   "disjoint topics",
                   shown(b1, sizeof(b1), r1->name), shown(b2, sizeof(b2), r2->name), b1, y->name,
                   version_text(y->version), b2);
}

static int parse_routes(struct ld *ld, const config_setting_t *root)
{
    struct relay_config *cfg = ld->cfg;
    const config_setting_t *list = config_setting_get_member(root, "routes");
    struct relay_tpl *tpl = NULL;
    int rc = 0;

    if (!list)
        return 0;
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return wrong_type(ld, list, "a list ( { ... }, { ... } )");
    unsigned n = (unsigned)config_setting_length(list);
    if (n > MAX_ROUTES)
        return fail(ld, list, "%u routes, at most %u are allowed", n, MAX_ROUTES);
    if (n == 0)
        return 0;
    cfg->routes = calloc(n, sizeof(*cfg->routes));
    tpl = calloc(n, sizeof(*tpl));
    if (!cfg->routes || !tpl) {
        free(tpl);
        return oom(ld);
    }
    unsigned done = 0;
    for (; done < n; done++) {
        const config_setting_t *g = config_setting_get_elem(list, done);
        cfg->n_routes = done + 1;
        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            rc = fail(ld, g, "each route must be a group { ... }");
            break;
        }
        if ((rc = parse_route(ld, g, done, &cfg->routes[done], &tpl[done])) < 0)
            break;
    }
    ld->who[0] = '\0';
    if (rc == 0)
        rc = check_route_names(ld);
    if (rc == 0)
        rc = check_loops(ld, tpl);
    for (unsigned i = 0; i < n; i++)
        relay_tpl_cleanup(&tpl[i]);
    free(tpl);
    return rc;
}

/* ---- integer literals ---------------------------------------------------------------------- */

/* libconfig 1.5 wraps an integer literal that does not fit in 32 bits unless it carries the "L"
 * suffix (4294967295 reads as -1), and saturates 64-bit ones. Numbers are never to be truncated
 * silently, so the text is scanned with libconfig's own lexical rules before it is parsed: an
 * integer outside 32 bits gets an "L" appended (line numbers are unchanged), one outside 64 bits
 * is an error. @include is refused, because an included file would escape this scan. */
#define FILE_MAX (16u << 20)

static bool is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '*';
}

static int prepare_text(struct ld *ld, const char *in, size_t n, char **out)
{
    char *o = malloc(2 * n + 1);
    size_t w = 0;
    unsigned line = 1;
    if (!o)
        return oom(ld);
#define FAIL_AT(...)                                                                               \
    do {                                                                                           \
        free(o);                                                                                   \
        return fail_at(ld, line, __VA_ARGS__);                                                     \
    } while (0)
    for (size_t i = 0; i < n;) {
        char c = in[i];
        if (c == '\0')
            FAIL_AT("the file contains a NUL byte");
        if (c == '\n')
            line++;
        if (c == '#' || (c == '/' && i + 1 < n && in[i + 1] == '/')) {
            while (i < n && in[i] != '\n')
                o[w++] = in[i++];
            continue;
        }
        if (c == '/' && i + 1 < n && in[i + 1] == '*') {
            o[w++] = in[i++];
            o[w++] = in[i++];
            while (i < n && !(in[i] == '*' && i + 1 < n && in[i + 1] == '/')) {
                if (in[i] == '\0')
                    FAIL_AT("the file contains a NUL byte");
                line += in[i] == '\n';
                o[w++] = in[i++];
            }
            continue;
        }
        if (c == '"') {
            o[w++] = in[i++];
            while (i < n && in[i] != '"') {
                if (in[i] == '\0')
                    FAIL_AT("the file contains a NUL byte");
                if (in[i] == '\\' && i + 1 < n && in[i + 1] != '\n')
                    o[w++] = in[i++];
                line += in[i] == '\n';
                o[w++] = in[i++];
            }
            if (i < n)
                o[w++] = in[i++];
            continue;
        }
        if (c == '@')
            FAIL_AT("@include is not supported: keep the configuration in one file");
        if (c == '.' && i + 1 < n && isdigit((unsigned char)in[i + 1])) {
            /* a float such as ".5e3": copied as it is */
            do
                o[w++] = in[i++];
            while (i < n &&
                   (isdigit((unsigned char)in[i]) || strchr(".eE", in[i]) ||
                    ((in[i] == '-' || in[i] == '+') && (in[i - 1] == 'e' || in[i - 1] == 'E'))));
            continue;
        }
        if (isalpha((unsigned char)c) || c == '*') {
            while (i < n && is_name_char(in[i]))
                o[w++] = in[i++];
            continue;
        }
        size_t start = i;
        bool neg = false;
        if ((c == '-' || c == '+') && i + 1 < n && isdigit((unsigned char)in[i + 1])) {
            neg = c == '-';
            i++;
        }
        if (i < n && isdigit((unsigned char)in[i])) {
            bool hex = in[i] == '0' && i + 1 < n && (in[i + 1] == 'x' || in[i + 1] == 'X') &&
                       i + 2 < n && isxdigit((unsigned char)in[i + 2]);
            bool big = false; /* beyond 2^64 */
            uint64_t v = 0;
            if (hex) {
                for (i += 2; i < n && isxdigit((unsigned char)in[i]); i++) {
                    unsigned d = isdigit((unsigned char)in[i])
                                     ? (unsigned)(in[i] - '0')
                                     : (unsigned)(tolower((unsigned char)in[i]) - 'a' + 10);
                    big |= v > (UINT64_MAX >> 4);
                    v = (v << 4) | d;
                }
            } else {
                for (; i < n && isdigit((unsigned char)in[i]); i++) {
                    unsigned d = (unsigned)(in[i] - '0');
                    big |= v > (UINT64_MAX - d) / 10;
                    v = v * 10 + d;
                }
                if (i < n && (in[i] == '.' || in[i] == 'e' || in[i] == 'E')) {
                    /* a float: copied as it is (no setting takes one) */
                    while (i < n && (isdigit((unsigned char)in[i]) || strchr(".eE", in[i]) ||
                                     ((in[i] == '-' || in[i] == '+') &&
                                      (in[i - 1] == 'e' || in[i - 1] == 'E'))))
                        i++;
                    memcpy(o + w, in + start, i - start);
                    w += i - start;
                    continue;
                }
            }
            bool has_l = i < n && in[i] == 'L';
            size_t end = i + (has_l ? 1 + (i + 1 < n && in[i + 1] == 'L') : 0);
            uint64_t lim64 = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
            uint64_t lim32 = neg ? (uint64_t)INT32_MAX + 1 : (uint64_t)INT32_MAX;
            if (big || v > lim64)
                FAIL_AT("integer %.*s is out of range (more than 64 bits)",
                        (int)(end - start > 40 ? 40 : end - start), in + start);
            memcpy(o + w, in + start, end - start);
            w += end - start;
            if (!has_l && v > lim32)
                o[w++] = 'L';
            i = end;
            continue;
        }
        i = start;
        o[w++] = in[i++];
    }
#undef FAIL_AT
    o[w] = '\0';
    *out = o;
    return 0;
}

static int read_text(struct ld *ld, int fd, char **text)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (st.st_size > (off_t)FILE_MAX) {
        if (ld->err && ld->errlen)
            snprintf(ld->err, ld->errlen, "%s: larger than %u MiB", ld->path, FILE_MAX >> 20);
        return -EFBIG;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        return oom(ld);
    for (;;) {
        if (n == cap) { /* grew since fstat */
            free(buf);
            return -EFBIG;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    int rc = prepare_text(ld, buf, n, text);
    free(buf);
    return rc;
}

/* ---- load / cleanup ----------------------------------------------------------------------- */

static int config_dir(struct ld *ld, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!d)
        return oom(ld);
    /* Absolute, so that resolved paths survive a change of working directory. */
    char *abs = realpath(d, NULL);
    if (abs) {
        free(d);
        d = abs;
    }
    ld->cfg->dir = d;
    return 0;
}

int relay_config_load(const char *path, struct relay_config *cfg, char *err, size_t errlen)
{
    static const char *const top_keys[] = {"relay", "brokers", "routes", NULL};
    struct ld ld = {.path = path, .err = err, .errlen = errlen, .cfg = cfg, .kp = ""};
    config_t lc;
    char *text = NULL;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    if (err && errlen)
        err[0] = '\0';

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        if (fd >= 0)
            close(fd);
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, e == EINVAL ? "not a regular file" : strerror(e));
        return -e;
    }
    rc = read_text(&ld, fd, &text);
    close(fd);
    if (rc < 0) {
        if (err && errlen && !err[0])
            snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if ((rc = dup_str(&ld, path, &cfg->path)) < 0 || (rc = config_dir(&ld, path)) < 0) {
        free(text);
        relay_config_cleanup(cfg);
        return rc;
    }

    config_init(&lc);
    if (config_read_string(&lc, text) != CONFIG_TRUE) {
        if (err && errlen)
            snprintf(err, errlen, "%s:%d: %s", path, config_error_line(&lc),
                     config_error_text(&lc));
        rc = -EINVAL;
    } else {
        const config_setting_t *root = config_root_setting(&lc);
        if ((rc = check_keys(&ld, root, top_keys)) == 0 && (rc = parse_relay(&ld, root)) == 0 &&
            (rc = parse_brokers(&ld, root)) == 0)
            rc = parse_routes(&ld, root);
    }
    config_destroy(&lc);
    free(text);
    if (rc < 0)
        relay_config_cleanup(cfg);
    return rc;
}

static void broker_cleanup(struct relay_broker_config *b)
{
    for (size_t i = 0; i < b->n_urls; i++) {
        free(b->urls[i].text);
        free(b->urls[i].host);
        free(b->urls[i].path);
    }
    free(b->urls);
    free(b->name);
    free(b->client_id);
    free(b->username);
    if (b->password) {
        /* explicit_bzero: the compiler may not drop it as a dead store */
        explicit_bzero(b->password, b->password_len);
        free(b->password);
    }
    free(b->spool.dir);
    free(b->status_topic);
    free(b->tls.ca_file);
    free(b->tls.cert_file);
    free(b->tls.key_file);
    free(b->tls.server_name);
}

void relay_config_cleanup(struct relay_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_brokers; i++)
        broker_cleanup(&cfg->brokers[i]);
    free(cfg->brokers);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        struct relay_route_config *r = &cfg->routes[i];
        free(r->name);
        free(r->filter);
        free(r->share);
        free(r->topic);
    }
    free(cfg->routes);
    free(cfg->path);
    free(cfg->dir);
    free(cfg->id);
    free(cfg->metrics_host);
    memset(cfg, 0, sizeof(*cfg));
}
