/*
 * validate.c: the loader's checks that are not reading a setting: the small syntax checks
 * (names, hosts, ports, URLs), the checks across brokers and routes (client ids and spool
 * directories used twice, duplicate names, the static loop check) and the lexical pre-scan of
 * the file's integer literals before libconfig parses it. Errors are reported as load.c's are
 * ("FILE:LINE: what is wrong", through cfg_fail()).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/internal.h"
#include "route/loopguard.h"
#include "route/template.h"

/* ---- small syntax checks ------------------------------------------------------------------ */

bool cfg_word_chars(const char *s, const char *extra)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) || (unsigned char)*s >= 0x80)
            if (!strchr(extra, *s))
                return false;
    return true;
}

bool cfg_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

bool cfg_host_ok(const char *h, size_t n, bool bracketed)
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
bool cfg_port_ok(const char *p, size_t n, uint16_t *port)
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
bool cfg_split_host_port(const char *s, size_t n, const char **host, size_t *hlen, bool *bracketed,
                         const char **port, size_t *plen)
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

/* text as a broker URL into *u: the scheme, the host, the port (the scheme's by default) and,
 * for ws:// and wss:// only, the path ("/mqtt" by default). */
int cfg_parse_url(struct ld *ld, const config_setting_t *s, const char *text, struct relay_url *u)
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
            return cfg_fail(
                ld, s, "URL %s: unknown scheme \"%.*s\" (use mqtt://, mqtts://, ws:// or wss://)",
                cfg_shown(b, sizeof(b), text), (int)(sep - text > 20 ? 20 : sep - text), text);
        return cfg_fail(ld, s, "URL %s: no scheme (use mqtt://, mqtts://, ws:// or wss://)",
                        cfg_shown(b, sizeof(b), text));
    }
    size_t alen = strcspn(p, "/?#");
    const char *rest = p + alen;
    if (memchr(p, '@', alen))
        return cfg_fail(ld, s,
                        "URL %s: credentials in the URL are not supported (use username "
                        "and password)",
                        cfg_shown(b, sizeof(b), text));
    const char *host, *port;
    size_t hlen, plen;
    bool br;
    if (!cfg_split_host_port(p, alen, &host, &hlen, &br, &port, &plen))
        return cfg_fail(ld, s, "URL %s: malformed host", cfg_shown(b, sizeof(b), text));
    if (hlen == 0)
        return cfg_fail(ld, s, "URL %s: no host", cfg_shown(b, sizeof(b), text));
    if (!cfg_host_ok(host, hlen, br))
        return cfg_fail(ld, s, "URL %s: invalid host \"%.*s\"%s", cfg_shown(b, sizeof(b), text),
                        (int)(hlen > 64 ? 64 : hlen), host,
                        !br && memchr(host, ':', hlen) ? " (IPv6 addresses go in [brackets])" : "");
    if (port && !cfg_port_ok(port, plen, &u->port))
        return cfg_fail(ld, s, "URL %s: invalid port \"%.*s\" (1..65535)",
                        cfg_shown(b, sizeof(b), text), (int)(plen > 16 ? 16 : plen), port);
    if (*rest) {
        if (!ws)
            return cfg_fail(ld, s, "URL %s: a path is only allowed for ws:// and wss://",
                            cfg_shown(b, sizeof(b), text));
        if (*rest != '/')
            return cfg_fail(ld, s, "URL %s: the path must start with '/'",
                            cfg_shown(b, sizeof(b), text));
        for (const char *c = rest; *c; c++)
            if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#')
                return cfg_fail(ld, s, "URL %s: invalid character in the path",
                                cfg_shown(b, sizeof(b), text));
    }
    if (!(u->text = strdup(text)) || !(u->host = strndup(host, hlen)) ||
        (ws && !(u->path = strdup(*rest ? rest : "/mqtt"))))
        return cfg_oom(ld);
    return 0;
}

/* ---- across brokers ----------------------------------------------------------------------- */

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
int cfg_check_client_ids(struct ld *ld, const config_setting_t *list)
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
                    return cfg_fail(ld, cs ? cs : g,
                                    "broker \"%s\": client id %s is also used by broker \"%s\" on "
                                    "the same host and port: the broker would disconnect one "
                                    "whenever the other connects",
                                    b->name, cfg_shown(bb, sizeof(bb), y), a->name);
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

/* Broker i (the group g) against the brokers before it: the same name, or the same spool
 * directory (two journals in one directory would corrupt each other). */
int cfg_check_broker_dups(struct ld *ld, const config_setting_t *g, size_t i)
{
    const struct relay_config *cfg = ld->cfg;
    for (size_t j = 0; j < i; j++)
        if (strcmp(cfg->brokers[j].name, cfg->brokers[i].name) == 0)
            return cfg_fail(ld, config_setting_get_member(g, "name"),
                            "duplicate broker name \"%s\" (first at line %d)", cfg->brokers[i].name,
                            cfg->brokers[j].line);
    for (size_t j = 0; j < i && cfg->brokers[i].spool.dir; j++)
        if (cfg->brokers[j].spool.dir &&
            same_path(cfg->brokers[j].spool.dir, cfg->brokers[i].spool.dir))
            return cfg_fail(ld,
                            config_setting_get_member(config_setting_get_member(g, "spool"), "dir"),
                            "broker \"%s\": spool.dir %s is also the spool of broker \"%s\"",
                            cfg->brokers[i].name, cfg->brokers[i].spool.dir, cfg->brokers[j].name);
    return 0;
}

/* ---- across routes ------------------------------------------------------------------------ */

static int cmp_route_names(const void *a, const void *b)
{
    const struct relay_route_config *x = *(const struct relay_route_config *const *)a;
    const struct relay_route_config *y = *(const struct relay_route_config *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x < y ? -1 : x > y);
}

/* Route names are unique, the default names "FROM->TO#i" included. */
int cfg_check_route_names(struct ld *ld)
{
    struct relay_config *cfg = ld->cfg;
    if (cfg->n_routes < 2)
        return 0;
    const struct relay_route_config **v = malloc(cfg->n_routes * sizeof(*v));
    if (!v)
        return cfg_oom(ld);
    for (size_t i = 0; i < cfg->n_routes; i++)
        v[i] = &cfg->routes[i];
    qsort(v, cfg->n_routes, sizeof(*v), cmp_route_names);
    int rc = 0;
    for (size_t i = 1; i < cfg->n_routes && rc == 0; i++) {
        if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
            char bb[100];
            rc = cfg_fail_at(ld, (unsigned)v[i]->line, "duplicate route name %s (first at line %d)",
                             cfg_shown(bb, sizeof(bb), v[i]->name), v[i - 1]->line);
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
int cfg_check_loops(struct ld *ld, const struct relay_tpl *tpl)
{
    const struct relay_config *cfg = ld->cfg;
    struct relay_loop_route *lr = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof(*lr));
    bool *v5 = calloc(cfg->n_brokers ? cfg->n_brokers : 1, sizeof(*v5));
    size_t first = 0, second = 0;
    int found;

    if (!lr || !v5) {
        free(lr);
        free(v5);
        return cfg_oom(ld);
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
        return cfg_oom(ld);
    if (!found)
        return 0;
    const struct relay_route_config *r1 = &cfg->routes[first], *r2 = &cfg->routes[second];
    const struct relay_broker_config *y = &cfg->brokers[r1->to];
    char b1[100], b2[100];
    return cfg_fail_at(
        ld, (unsigned)cfg->routes[first > second ? first : second].line,
        "routes %s and %s loop: what %s publishes to %s (MQTT %s) matches the filter "
        "of %s; MQTT 3.1/3.1.1 cannot carry the loop guard: use version \"5\" or "
        "disjoint topics",
        cfg_shown(b1, sizeof(b1), r1->name), cfg_shown(b2, sizeof(b2), r2->name), b1, y->name,
        version_text(y->version), b2);
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
        return cfg_oom(ld);
#define FAIL_AT(...)                                                                               \
    do {                                                                                           \
        free(o);                                                                                   \
        return cfg_fail_at(ld, line, __VA_ARGS__);                                                 \
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

/* The file open on fd as text for libconfig, its integer literals pre-scanned (prepare_text()).
 * -EFBIG past FILE_MAX, -EINVAL (a literal out of range, @include, a NUL byte), -ENOMEM, or
 * the -errno of a failed fstat() or read(). */
int cfg_read_text(struct ld *ld, int fd, char **text)
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
        return cfg_oom(ld);
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
