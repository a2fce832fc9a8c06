/*
 * link.c: how a broker's links are made, as the configuration says (issue 13): the tls group
 * (files, verification, ALPN, ciphers, minimum version, key log), the proxy (relay.proxy,
 * broker.proxy) and relay.no_proxy, TCP keepalive and user timeout, and the source address.
 *
 * A proxy URL carries a password: it is never shown as written. Messages about it show the URL
 * with the password replaced by "***" (cfg_proxy_shown()).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/internal.h"

#define TLS_FILE_MAX (16u * 1024u * 1024u) /* a CA bundle, a certificate chain, a key */
#define NO_PROXY_MAX 256u

/* ---- proxy URLs --------------------------------------------------------------------------- */

/* The proxy URL for messages: "http://user:***@host:port" (at most 80 bytes of it, quoted). */
const char *cfg_proxy_shown(char *buf, size_t cap, const char *text)
{
    char tmp[200];
    const char *sep = strstr(text, "://");
    const char *auth = sep ? sep + 3 : text;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;

    for (const char *p = auth; p < auth + alen; p++)
        if (*p == '@')
            at = p; /* the last '@' ends the user information */
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));

        if (colon)
            snprintf(tmp, sizeof(tmp), "%.*s:***%s", (int)(colon - text), text, at);
        else
            snprintf(tmp, sizeof(tmp), "%s", text);
    } else {
        snprintf(tmp, sizeof(tmp), "%s", text);
    }
    return cfg_shown(buf, cap, tmp);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes [s, s+n) into a new string (*out, *outlen). false: a bad escape or a NUL. */
static bool pct_decode(const char *s, size_t n, char **out, size_t *outlen)
{
    char *d = malloc(n + 1);
    size_t o = 0;

    if (!d)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            d[o++] = s[i];
            continue;
        }
        int h = i + 2 < n ? hexval(s[i + 1]) : -1;
        int l = i + 2 < n ? hexval(s[i + 2]) : -1;
        if (h < 0 || l < 0 || (h == 0 && l == 0)) {
            free(d);
            return false;
        }
        d[o++] = (char)(h << 4 | l);
        i += 2;
    }
    d[o] = '\0';
    *out = d;
    *outlen = o;
    return true;
}

/* text as a proxy URL: "http://[user[:password]@]host:port" or "socks5://..." ("socks5h://"
 * too: the proxy always resolves the broker's host name). */
static int parse_proxy_url(struct ld *ld, const config_setting_t *s, const char *text,
                           struct relay_proxy_config *px)
{
    static const struct {
        const char *prefix;
        enum relay_proxy_kind kind;
    } kinds[] = {{"http://", RELAY_PROXY_HTTP},
                 {"socks5://", RELAY_PROXY_SOCKS5},
                 {"socks5h://", RELAY_PROXY_SOCKS5}};
    char b[120];
    const char *p = NULL, *host, *port;
    size_t hlen, plen;
    bool br;

    memset(px, 0, sizeof(*px));
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t n = strlen(kinds[i].prefix);

        if (!strncasecmp(text, kinds[i].prefix, n)) {
            px->kind = kinds[i].kind;
            p = text + n;
            break;
        }
    }
    if (!p)
        return cfg_fail(ld, s,
                        "%sproxy %s: use http://[USER:PASSWORD@]HOST:PORT (HTTP CONNECT) or "
                        "socks5://[USER:PASSWORD@]HOST:PORT%s",
                        ld->kp, cfg_proxy_shown(b, sizeof(b), text),
                        strncasecmp(text, "https://", 8) ? ""
                                                         : " (TLS to the proxy is not supported)");
    size_t alen = strcspn(p, "/?#");
    if (p[alen] && strcmp(p + alen, "/"))
        return cfg_fail(ld, s, "%sproxy %s: a proxy URL has no path", ld->kp,
                        cfg_proxy_shown(b, sizeof(b), text));
    const char *at = NULL;
    for (const char *q = p; q < p + alen; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p), dummy;

        if (!ulen || !pct_decode(p, ulen, &px->username, &dummy))
            return cfg_fail(ld, s,
                            "%sproxy %s: invalid user name (escape special characters "
                            "as %%XX)",
                            ld->kp, cfg_proxy_shown(b, sizeof(b), text));
        if (!pct_decode(colon ? colon + 1 : at, colon ? (size_t)(at - colon - 1) : 0, &px->password,
                        &px->password_len))
            return cfg_fail(ld, s,
                            "%sproxy %s: invalid password (escape special characters as "
                            "%%XX)",
                            ld->kp, cfg_proxy_shown(b, sizeof(b), text));
        if (px->kind == RELAY_PROXY_SOCKS5 &&
            (strlen(px->username) > 255 || px->password_len > 255))
            return cfg_fail(ld, s,
                            "%sproxy %s: SOCKS5 allows at most 255 bytes of user name and "
                            "of password",
                            ld->kp, cfg_proxy_shown(b, sizeof(b), text));
        alen -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (!cfg_split_host_port(p, alen, &host, &hlen, &br, &port, &plen) || !hlen ||
        !cfg_host_ok(host, hlen, br))
        return cfg_fail(ld, s, "%sproxy %s: invalid host", ld->kp,
                        cfg_proxy_shown(b, sizeof(b), text));
    if (!port)
        return cfg_fail(ld, s, "%sproxy %s: the port is required (HOST:PORT)", ld->kp,
                        cfg_proxy_shown(b, sizeof(b), text));
    if (!cfg_port_ok(port, plen, &px->port))
        return cfg_fail(ld, s, "%sproxy %s: invalid port (1..65535)", ld->kp,
                        cfg_proxy_shown(b, sizeof(b), text));
    if (!(px->host = strndup(host, hlen)))
        return cfg_oom(ld);
    return 0;
}

void cfg_proxy_cleanup(struct relay_proxy_config *px)
{
    free(px->host);
    free(px->username);
    if (px->password) {
        explicit_bzero(px->password, px->password_len);
        free(px->password);
    }
    memset(px, 0, sizeof(*px));
}

static int copy_proxy(struct ld *ld, const struct relay_proxy_config *from,
                      struct relay_proxy_config *to)
{
    memset(to, 0, sizeof(*to));
    if (from->kind == RELAY_PROXY_NONE)
        return 0;
    *to = *from;
    to->host = to->username = to->password = NULL;
    if (!(to->host = strdup(from->host)) ||
        (from->username && !(to->username = strdup(from->username))))
        return cfg_oom(ld);
    if (from->password) {
        if (!(to->password = malloc(from->password_len + 1)))
            return cfg_oom(ld);
        memcpy(to->password, from->password, from->password_len + 1);
    }
    return 0;
}

/* ---- relay.no_proxy ----------------------------------------------------------------------- */

/* "a.b.c.d/n" or "v6/n" into an address and a prefix length. */
static bool parse_cidr(const char *e, int *fam, unsigned char addr[16], unsigned *bits)
{
    char buf[64];
    const char *slash = strchr(e, '/');
    size_t n = slash ? (size_t)(slash - e) : strlen(e);
    char *end;

    if (n >= sizeof(buf))
        return false;
    memcpy(buf, e, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1)
        *fam = AF_INET;
    else if (inet_pton(AF_INET6, buf, addr) == 1)
        *fam = AF_INET6;
    else
        return false;
    *bits = *fam == AF_INET ? 32 : 128;
    if (slash) {
        unsigned long v;

        if (!isdigit((unsigned char)slash[1]))
            return false;
        v = strtoul(slash + 1, &end, 10);
        if (*end || v > *bits)
            return false;
        *bits = (unsigned)v;
    }
    return true;
}

/* One relay.no_proxy entry: "*", a host name (it and every name under it; a leading "." or
 * "*." is the same), an IP address or an IP/prefix (literal addresses in URLs only). */
static bool no_proxy_entry_ok(const char *e)
{
    int fam;
    unsigned char a[16];
    unsigned bits;

    if (!strcmp(e, "*"))
        return true;
    if (parse_cidr(e, &fam, a, &bits))
        return true;
    if (!strncmp(e, "*.", 2))
        e += 2;
    else if (e[0] == '.')
        e++;
    return *e && !strchr(e, '/') && cfg_host_ok(e, strlen(e), false);
}

bool cfg_no_proxy_match(char *const *list, size_t n, const char *host)
{
    unsigned char h[16];
    int hfam = inet_pton(AF_INET, host, h) == 1    ? AF_INET
               : inet_pton(AF_INET6, host, h) == 1 ? AF_INET6
                                                   : 0;
    size_t hl = strlen(host);

    for (size_t i = 0; i < n; i++) {
        const char *e = list[i];
        unsigned char a[16];
        unsigned bits;
        int fam;

        if (!strcmp(e, "*"))
            return true;
        if (parse_cidr(e, &fam, a, &bits)) {
            if (fam != hfam)
                continue;
            unsigned full = bits / 8, rest = bits % 8;
            if (memcmp(a, h, full))
                continue;
            if (rest && ((a[full] ^ h[full]) & (0xff << (8 - rest)) & 0xff))
                continue;
            return true;
        }
        if (hfam)
            continue; /* names never match a literal address */
        if (!strncmp(e, "*.", 2))
            e += 2;
        else if (e[0] == '.')
            e++;
        size_t el = strlen(e);
        if (hl == el && !strcasecmp(host, e))
            return true;
        if (hl > el && host[hl - el - 1] == '.' && !strcasecmp(host + hl - el, e))
            return true;
    }
    return false;
}

/* relay.proxy and relay.no_proxy (g: the relay group, or NULL). */
int cfg_parse_relay_proxy(struct ld *ld, const config_setting_t *g)
{
    struct relay_config *cfg = ld->cfg;
    const config_setting_t *s;
    const char *v;
    int rc;

    if (!g)
        return 0;
    if ((rc = cfg_get_str(ld, g, "proxy", &v)) < 0)
        return rc;
    if (v && strcmp(v, "none") &&
        (rc = parse_proxy_url(ld, config_setting_get_member(g, "proxy"), v, &cfg->proxy)) < 0)
        return rc;
    s = config_setting_get_member(g, "no_proxy");
    if (!s)
        return 0;
    unsigned n;
    if ((rc = cfg_str_list(ld, s, &n)) < 0)
        return rc;
    if (n > NO_PROXY_MAX)
        return cfg_fail(ld, s, "relay.no_proxy: at most %u entries", NO_PROXY_MAX);
    cfg->no_proxy = calloc(n ? n : 1, sizeof(*cfg->no_proxy));
    if (!cfg->no_proxy)
        return cfg_oom(ld);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *e = cfg_str_entry(s, i);
        char b[100];

        if ((rc = cfg_str_value(ld, e, "each relay.no_proxy entry", &v)) < 0)
            return rc;
        if (!no_proxy_entry_ok(v))
            return cfg_fail(ld, e,
                            "relay.no_proxy entry %s is not \"*\", a host name, \".domain\", an "
                            "IP address or ADDRESS/PREFIX",
                            cfg_shown(b, sizeof(b), v));
        if ((rc = cfg_dup_str(ld, v, &cfg->no_proxy[i])) < 0)
            return rc;
        cfg->n_no_proxy = i + 1;
    }
    return 0;
}

/* ---- the tls group ------------------------------------------------------------------------ */

/* FNV-1a over the bytes of path (and a separator), into *h. */
static int hash_file(struct ld *ld, const config_setting_t *s, const char *path, uint64_t *h)
{
    uint8_t buf[8192];
    size_t total = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0)
        return cfg_fail(ld, s, "%s%s %s: %s", ld->kp, config_setting_name(s), path,
                        strerror(errno));
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return cfg_fail(ld, s, "%s%s %s: %s", ld->kp, config_setting_name(s), path,
                            strerror(e));
        }
        if (n == 0)
            break;
        total += (size_t)n;
        if (total > TLS_FILE_MAX) {
            close(fd);
            return cfg_fail(ld, s, "%s%s %s: larger than %u bytes", ld->kp, config_setting_name(s),
                            path, TLS_FILE_MAX);
        }
        for (ssize_t i = 0; i < n; i++) {
            *h ^= buf[i];
            *h *= 0x100000001b3ull;
        }
    }
    close(fd);
    *h ^= 0xff;
    *h *= 0x100000001b3ull;
    return 0;
}

static int parse_alpn(struct ld *ld, const config_setting_t *t, struct relay_tls_config *tc)
{
    const config_setting_t *s = config_setting_get_member(t, "alpn");
    char b[100];
    int rc;

    if (!s)
        return 0;
    unsigned n;
    if ((rc = cfg_str_list(ld, s, &n)) < 0)
        return rc;
    if (n == 0)
        return cfg_fail(ld, s, "tls.alpn must not be an empty list");
    if (n > RELAY_ALPN_MAX)
        return cfg_fail(ld, s, "tls.alpn: at most %u protocol names", RELAY_ALPN_MAX);
    tc->alpn = calloc(n, sizeof(*tc->alpn));
    if (!tc->alpn)
        return cfg_oom(ld);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *e = cfg_str_entry(s, i);
        const char *v;

        if ((rc = cfg_str_value(ld, e, "each tls.alpn entry", &v)) < 0)
            return rc;
        /* RFC 7301: 1..255 bytes; printable ASCII keeps the log and --check readable */
        size_t len = strlen(v);
        bool ok = len >= 1 && len <= 255;
        for (size_t k = 0; ok && k < len; k++)
            ok = v[k] > 0x20 && v[k] < 0x7f && v[k] != ',';
        if (!ok)
            return cfg_fail(ld, e,
                            "tls.alpn entry %s must be 1..255 printable ASCII characters "
                            "(no space or comma)",
                            cfg_shown(b, sizeof(b), v));
        if ((rc = cfg_dup_str(ld, v, &tc->alpn[i])) < 0)
            return rc;
        tc->n_alpn = i + 1;
    }
    return 0;
}

/* OpenSSL's cipher-string alphabet; OpenSSL itself checks the names (io/tlsctx.c, at start,
 * --check and reload). */
static int get_cipher_string(struct ld *ld, const config_setting_t *t, const char *key, char **out)
{
    const char *v;
    char b[100];
    int rc = cfg_get_str(ld, t, key, &v);

    if (rc < 0 || !v)
        return rc;
    bool ok = *v != '\0';
    for (const char *c = v; ok && *c; c++)
        ok = isalnum((unsigned char)*c) || strchr(":+-!@=_.,", *c);
    if (!ok)
        return cfg_fail(ld, config_setting_get_member(t, key),
                        "tls.%s %s is not an OpenSSL cipher string (names separated by ':')", key,
                        cfg_shown(b, sizeof(b), v));
    return cfg_dup_str(ld, v, out);
}

static int parse_tls_options(struct ld *ld, const config_setting_t *t, struct relay_tls_config *tc)
{
    static const char *const versions[] = {"1.2", "1.3", NULL};
    const char *v;
    int rc, e;

    if ((rc = parse_alpn(ld, t, tc)) < 0 ||
        (rc = get_cipher_string(ld, t, "ciphers", &tc->ciphers)) < 0 ||
        (rc = get_cipher_string(ld, t, "ciphersuites", &tc->ciphersuites)) < 0 ||
        (rc = cfg_get_enum(ld, t, "min_version", versions, "\"1.2\", \"1.3\"", 0, &e)) < 0)
        return rc;
    tc->min_version = e ? RELAY_TLS_1_3 : RELAY_TLS_1_2;
    if ((rc = cfg_get_str(ld, t, "keylog_file", &v)) < 0 || !v)
        return rc;
    const config_setting_t *s = config_setting_get_member(t, "keylog_file");
    if ((rc = cfg_resolve(ld, s, v, &tc->keylog_file)) < 0)
        return rc;
    /* created when the first handshake writes to it: its folder must exist now */
    char *dir = strdup(tc->keylog_file);
    struct stat st;
    if (!dir)
        return cfg_oom(ld);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    int bad = stat(slash ? dir : ".", &st) < 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
    if (bad) {
        char b[100];
        rc = cfg_fail(ld, s, "tls.keylog_file %s: folder %s: %s", cfg_shown(b, sizeof(b), v),
                      slash ? dir : ".", strerror(bad));
    }
    free(dir);
    return rc;
}

int cfg_parse_tls(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    static const char *const keys[] = {"ca_file",     "cert_file",   "key_file", "verify",
                                       "server_name", "alpn",        "ciphers",  "ciphersuites",
                                       "min_version", "keylog_file", NULL};
    const config_setting_t *t;
    const char *v;
    char bb[100];
    int rc;

    b->tls.verify = true; /* also without a tls group: mqtts:// and wss:// verify by default */
    b->tls.min_version = RELAY_TLS_1_2;
    if ((rc = cfg_get_group(ld, g, "tls", &t)) < 0 || !t)
        return rc;
    b->has_tls = true;
    bool secure = false;
    for (size_t i = 0; i < b->n_urls; i++)
        secure |= b->urls[i].scheme == RELAY_MQTTS || b->urls[i].scheme == RELAY_WSS;
    if (!secure)
        return cfg_fail(ld, t,
                        "a tls group needs an mqtts:// or wss:// URL (no URL of this broker "
                        "uses TLS)");
    ld->kp = "tls.";
    if ((rc = cfg_check_keys(ld, t, keys)) < 0 ||
        (rc = cfg_get_file(ld, t, "ca_file", &b->tls.ca_file)) < 0 ||
        (rc = cfg_get_file(ld, t, "cert_file", &b->tls.cert_file)) < 0 ||
        (rc = cfg_get_file(ld, t, "key_file", &b->tls.key_file)) < 0 ||
        (rc = cfg_get_bool(ld, t, "verify", true, &b->tls.verify)) < 0 ||
        (rc = cfg_get_str(ld, t, "server_name", &v)) < 0)
        return rc;
    if (b->tls.cert_file && !b->tls.key_file)
        return cfg_fail(ld, config_setting_get_member(t, "cert_file"),
                        "tls.cert_file needs tls.key_file");
    if (b->tls.key_file && !b->tls.cert_file)
        return cfg_fail(ld, config_setting_get_member(t, "key_file"),
                        "tls.key_file needs tls.cert_file");
    if (v) {
        if (!cfg_host_ok(v, strlen(v), false))
            return cfg_fail(ld, config_setting_get_member(t, "server_name"),
                            "tls.server_name %s is not a host name", cfg_shown(bb, sizeof(bb), v));
        if ((rc = cfg_dup_str(ld, v, &b->tls.server_name)) < 0)
            return rc;
    }
    if ((rc = parse_tls_options(ld, t, &b->tls)) < 0)
        return rc;
    /* what the files hold now, for a reload to compare */
    if (b->tls.ca_file || b->tls.cert_file) {
        uint64_t h = 0xcbf29ce484222325ull;
        static const char *const fk[] = {"ca_file", "cert_file", "key_file"};
        const char *fp[] = {b->tls.ca_file, b->tls.cert_file, b->tls.key_file};

        for (int i = 0; i < 3; i++)
            if (fp[i] && (rc = hash_file(ld, config_setting_get_member(t, fk[i]), fp[i], &h)) < 0)
                return rc;
        b->tls.files_sum = h ? h : 1;
    }
    ld->kp = "";
    return 0;
}

/* ---- proxy, TCP options, source address of one broker -------------------------------------- */

int cfg_parse_link(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b)
{
    const struct relay_config *cfg = ld->cfg;
    const config_setting_t *s;
    const char *v;
    char bb[100];
    int64_t n;
    int rc;

    /* the proxy: broker.proxy ("none": direct), else relay.proxy */
    if ((rc = cfg_get_str(ld, g, "proxy", &v)) < 0)
        return rc;
    if (v && strcmp(v, "none"))
        rc = parse_proxy_url(ld, config_setting_get_member(g, "proxy"), v, &b->proxy);
    else if (!v)
        rc = copy_proxy(ld, &cfg->proxy, &b->proxy);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < b->n_urls; i++)
        b->urls[i].direct = cfg_no_proxy_match(cfg->no_proxy, cfg->n_no_proxy, b->urls[i].host);

    /* TCP: a peer that stops answering is noticed within about 1.5 x keepalive (README) */
    if ((rc = cfg_get_int(ld, g, "tcp_keepalive", 0, 32767,
                          b->keepalive ? (b->keepalive + 1) / 2 : 30, &n)) < 0)
        return rc;
    b->tcp_keepalive_s = (uint32_t)n;
    if ((rc = cfg_get_int(ld, g, "tcp_user_timeout", 0, INT32_MAX,
                          b->keepalive ? (int64_t)b->keepalive * 750 : 45000, &n)) < 0)
        return rc;
    b->tcp_user_timeout_ms = (uint32_t)n;

    if ((rc = cfg_get_str(ld, g, "bind_address", &v)) < 0 || !v)
        return rc;
    s = config_setting_get_member(g, "bind_address");
    unsigned char a[16];
    if (inet_pton(AF_INET, v, a) != 1 && inet_pton(AF_INET6, v, a) != 1)
        return cfg_fail(ld, s,
                        "bind_address %s must be an IPv4 or IPv6 address of this machine "
                        "(not a name or an interface)",
                        cfg_shown(bb, sizeof(bb), v));
    return cfg_dup_str(ld, v, &b->bind_address);
}
