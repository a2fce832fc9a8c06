/*
 * mosquitto.c: `mqtt-relay --from-mosquitto FILE` (SPEC.md, Command line): reads a Mosquitto 2.0
 * configuration (mosquitto.conf(5)) and prints an mqtt-relay configuration that does what its
 * bridges did.
 *
 * The Mosquitto file is read the way Mosquitto 2.0 reads it (src/conf.c): one option per line, a
 * line whose first character is '#' is a comment, values are separated by spaces, string options
 * take the rest of the line, `include_dir` (main file only) reads the *.conf files of a directory
 * in Mosquitto's order, and a bridge section runs from its `connection` line to the next one or
 * to the end of that file. Topic lines keep Mosquitto's meaning (src/bridge.c): the local topic
 * is LOCAL-PREFIX + PATTERN, the remote one REMOTE-PREFIX + PATTERN, `""` is an empty prefix (or,
 * as the pattern, "the prefix itself").
 *
 * Nothing here talks to the network or to libconfig: the output is text, and `--check` (config.c)
 * is what validates it.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/mosquitto.h"
#include "core/relay.h"
#include "route/template.h"

#define LOCAL_NAME "local"

enum mq_dir { MQ_OUT = 0, MQ_IN, MQ_BOTH };

/* Where something was written: a file name (owned by struct mq's file list) and a line. */
struct mq_at {
    const char *file;
    int line;
};

/* One `topic PATTERN [DIRECTION [QOS [LOCAL-PREFIX [REMOTE-PREFIX]]]]` line. */
struct mq_topic {
    struct mq_at at;
    char *text;    /* the line as written, for the route's comment */
    char *pattern; /* NULL: the pattern was "" (the prefixes are the whole topics) */
    enum mq_dir dir;
    int qos;
    char *lpfx, *rpfx; /* NULL: no prefix */
};

struct mq_addr {
    char *host;
    unsigned port;
};

/* One bridge `connection NAME` section. -1 = not given in the file. */
struct mq_conn {
    struct mq_at at;
    char *name;  /* as written */
    char *bname; /* the broker name in the output */
    struct mq_addr *addrs;
    size_t n_addrs;
    struct mq_at addr_at;
    int version; /* MQC_V31 / MQC_V311 / MQC_V5, 0 = not given (Mosquitto: 3.1.1) */
    char *remote_clientid, *username, *password;
    char *local_clientid, *local_username, *local_password;
    int cleansession, local_cleansession, keepalive, notifications, notif_local_only;
    int insecure, outgoing_retain, try_private;
    char *notification_topic;
    int restart_base, restart_cap; /* seconds; cap 0 = a single value */
    char *cafile, *capath, *certfile, *keyfile, *psk;
    struct mq_topic *topics;
    size_t n_topics;
    long loop_out, loop_in; /* routes that overlap both ways (version raised to 5), or -1 */
    char **notes;           /* one comment each: an option that has no equivalent, and why */
    size_t n_notes;
};

/* A `listener` (or the default listener of `port`), for the local broker's address. */
struct mq_listener {
    struct mq_at at;
    char *host; /* NULL: all interfaces */
    unsigned port;
    bool unix_socket, ws, tls, mount;
};

/* One route of the output. */
struct mq_route {
    size_t conn;
    size_t topic;
    bool out; /* local -> remote */
    char *name, *filter, *tpl;
};

struct mq {
    FILE *err;
    char *dir; /* the main file's directory: relative paths are taken from there */
    char **files;
    size_t n_files;
    struct mq_conn *conns;
    size_t n_conns;
    struct mq_listener *lis;
    size_t n_lis;
    struct mq_listener deflis; /* `port` / `bind_address` */
    bool have_deflis;
    char **ignored; /* broker options (names, each once) */
    size_t n_ignored;
    struct mq_route *routes;
    size_t n_routes;
    char host[256];
};

/* ---- messages and memory ------------------------------------------------------------------- */

static int fail(struct mq *mq, struct mq_at at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct mq *mq, struct mq_at at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (at.line > 0)
        fprintf(mq->err, "%s:%d: ", at.file, at.line);
    else
        fprintf(mq->err, "%s: ", at.file);
    vfprintf(mq->err, fmt, ap);
    fputc('\n', mq->err);
    va_end(ap);
    return -EINVAL;
}

static int oom(struct mq *mq)
{
    fprintf(mq->err, "mqtt-relay: out of memory\n");
    return -ENOMEM;
}

/* Appends one element of size sz to *arr (of *n): a pointer to it (zeroed), or NULL. */
static void *grow(void *arr, size_t *n, size_t sz)
{
    void **a = arr;
    char *p = realloc(*a, (*n + 1) * sz);
    if (!p)
        return NULL;
    *a = p;
    memset(p + *n * sz, 0, sz);
    return p + (*n)++ * sz;
}

static int push_str(struct mq *mq, char ***arr, size_t *n, char *s)
{
    char **slot;
    if (!s)
        return oom(mq);
    slot = grow(arr, n, sizeof(char *));
    if (!slot) {
        free(s);
        return oom(mq);
    }
    *slot = s;
    return 0;
}

static char *fmt_str(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *fmt_str(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* "dir/file.conf:12" for comments: the file's last component keeps them short. */
static const char *where(char *buf, size_t cap, struct mq_at at)
{
    const char *slash = strrchr(at.file, '/');
    snprintf(buf, cap, "%s:%d", slash ? slash + 1 : at.file, at.line);
    return buf;
}

static int note(struct mq *mq, struct mq_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int note(struct mq *mq, struct mq_conn *c, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return push_str(mq, &c->notes, &c->n_notes, s);
}

/* ---- tokens (Mosquitto splits on spaces; tabs are accepted too) ----------------------------- */

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The next space-separated token of *p (NUL-terminated in place), or NULL at the end. */
static char *next_tok(char **p)
{
    char *s = *p, *t;
    while (blank(*s))
        s++;
    if (!*s) {
        *p = s;
        return NULL;
    }
    t = s;
    while (*s && !blank(*s))
        s++;
    if (*s)
        *s++ = '\0';
    *p = s;
    return t;
}

/* The rest of the line without surrounding blanks (Mosquitto's string options), "" if none. */
static char *rest_of(char **p)
{
    char *s = *p, *e;
    while (blank(*s))
        s++;
    e = s + strlen(s);
    while (e > s && blank(e[-1]))
        *--e = '\0';
    *p = e;
    return s;
}

/* ---- option values ------------------------------------------------------------------------ */

static int get_bool(struct mq *mq, struct mq_at at, const char *name, char **p, int *out)
{
    char *v = next_tok(p);
    if (!v)
        return fail(mq, at, "empty %s value", name);
    if (!strcmp(v, "true") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "0"))
        *out = 0;
    else
        return fail(mq, at, "invalid %s value \"%s\" (true or false)", name, v);
    return 0;
}

static int get_uint(struct mq *mq, struct mq_at at, const char *name, const char *v, long max,
                    int *out)
{
    char *end;
    long n;
    if (!v)
        return fail(mq, at, "empty %s value", name);
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 0 || n > max)
        return fail(mq, at, "invalid %s value \"%s\" (0..%ld)", name, v, max);
    *out = (int)n;
    return 0;
}

/* A string option: the rest of the line, once per section (Mosquitto refuses duplicates). */
static int get_string(struct mq *mq, struct mq_at at, const char *name, char **p, char **out)
{
    char *v = rest_of(p);
    if (!*v)
        return fail(mq, at, "empty %s value", name);
    if (*out)
        return fail(mq, at, "duplicate %s value", name);
    if (!(*out = strdup(v)))
        return oom(mq);
    return 0;
}

/* A path option: absolute, or taken relative to the main file's directory. */
static int get_path(struct mq *mq, struct mq_at at, const char *name, char **p, char **out)
{
    char *v = NULL;
    int rc = get_string(mq, at, name, p, &v);
    if (rc < 0)
        return rc;
    if (v[0] == '/') {
        *out = v;
        return 0;
    }
    *out = fmt_str("%s/%s", mq->dir, v);
    free(v);
    return *out ? 0 : oom(mq);
}

/* ---- bridge options ----------------------------------------------------------------------- */

/* clang-format off */
static const char *const bridge_options[] = {
    "address", "addresses", "bridge_attempt_unsubscribe", "bridge_alpn", "bridge_bind_address",
    "bridge_cafile", "bridge_capath", "bridge_certfile", "bridge_identity", "bridge_insecure",
    "bridge_keyfile", "bridge_max_packet_size", "bridge_outgoing_retain",
    "bridge_protocol_version", "bridge_psk", "bridge_require_ocsp", "bridge_tls_version",
    "cleansession", "clientid", "remote_clientid", "idle_timeout", "keepalive_interval",
    "local_cleansession", "local_clientid", "local_password", "local_username", "notifications",
    "notifications_local_only", "notification_topic", "password", "remote_password",
    "restart_timeout", "round_robin", "start_type", "threshold", "topic", "try_private",
    "username", "remote_username", NULL};
/* clang-format on */

static bool is_bridge_option(const char *name)
{
    for (size_t i = 0; bridge_options[i]; i++)
        if (!strcmp(name, bridge_options[i]))
            return true;
    /* newer Mosquitto versions add bridge_* options: still a bridge's, with no equivalent */
    return strncmp(name, "bridge_", 7) == 0;
}

static int parse_addresses(struct mq *mq, struct mq_at at, struct mq_conn *c, char **p)
{
    char *tok;
    if (c->n_addrs)
        return fail(mq, at, "connection \"%s\": address given twice (first at line %d)", c->name,
                    c->addr_at.line);
    c->addr_at = at;
    while ((tok = next_tok(p)) && tok[0] != '#') {
        /* "host[:port]": the port follows the last ':' (an IPv6 address needs its port) */
        char *colon = strrchr(tok, ':');
        unsigned port = 1883;
        if (colon) {
            int n = 0, rc;
            *colon = '\0';
            if ((rc = get_uint(mq, at, "address port", colon + 1, 65535, &n)) < 0)
                return rc;
            if (n == 0)
                return fail(mq, at, "invalid port 0 in address \"%s:0\"", tok);
            port = (unsigned)n;
        }
        size_t hl = strlen(tok);
        if (hl > 2 && tok[0] == '[' && tok[hl - 1] == ']') { /* "[::1]:1883" as in a URL */
            tok[hl - 1] = '\0';
            tok++;
        }
        if (!*tok)
            return fail(mq, at, "address without a host");
        struct mq_addr *a = grow(&c->addrs, &c->n_addrs, sizeof(*a));
        if (!a || !(a->host = strdup(tok)))
            return oom(mq);
        a->port = port;
    }
    if (!c->n_addrs)
        return fail(mq, at, "empty address value");
    return 0;
}

static bool valid_prefix(const char *s)
{
    return mqc_topic_name_check((const uint8_t *)s, strlen(s)) == MQC_OK;
}

/* topic PATTERN [[[out | in | both] QOS] LOCAL-PREFIX REMOTE-PREFIX] (conf.c, bridge.c) */
static int parse_topic(struct mq *mq, struct mq_at at, struct mq_conn *c, const char *line,
                       char **p)
{
    char *pattern = next_tok(p), *tok;
    char *lpfx = NULL, *rpfx = NULL;
    enum mq_dir dir = MQ_OUT;
    int qos = 0;

    if (!pattern)
        return fail(mq, at, "empty topic value");
    if ((tok = next_tok(p))) {
        if (!strcasecmp(tok, "out"))
            dir = MQ_OUT;
        else if (!strcasecmp(tok, "in"))
            dir = MQ_IN;
        else if (!strcasecmp(tok, "both"))
            dir = MQ_BOTH;
        else
            return fail(mq, at, "invalid bridge topic direction \"%s\" (out, in or both)", tok);
        if ((tok = next_tok(p)) && tok[0] != '#') {
            if (strlen(tok) != 1 || tok[0] < '0' || tok[0] > '2')
                return fail(mq, at, "invalid bridge topic QoS \"%s\" (0, 1 or 2)", tok);
            qos = tok[0] - '0';
            if ((tok = next_tok(p)) && tok[0] != '#') {
                if (strcmp(tok, "\"\""))
                    lpfx = tok;
                if ((tok = next_tok(p)) && tok[0] != '#' && strcmp(tok, "\"\""))
                    rpfx = tok;
            }
        }
    }
    bool empty = !strcmp(pattern, "\"\"");
    if (empty && (!lpfx || !rpfx))
        return fail(mq, at,
                    "invalid bridge remapping: a pattern of \"\" needs both a local and a remote "
                    "prefix");
    if (lpfx && !valid_prefix(lpfx))
        return fail(mq, at, "invalid bridge topic local prefix \"%s\"", lpfx);
    if (rpfx && !valid_prefix(rpfx))
        return fail(mq, at, "invalid bridge topic remote prefix \"%s\"", rpfx);
    const char *pf[2] = {lpfx, rpfx};
    for (int i = 0; i < 2; i++) {
        char *full = fmt_str("%s%s", pf[i] ? pf[i] : "", empty ? "" : pattern);
        if (!full)
            return oom(mq);
        bool ok = mqc_topic_filter_check((const uint8_t *)full, strlen(full)) == MQC_OK;
        if (ok && !strncmp(full, "$share/", 7))
            ok = false;
        if (!ok) {
            fail(mq, at, "invalid bridge topic: %s \"%s\" is not a valid topic filter",
                 i ? "remote" : "local", full);
            free(full);
            return -EINVAL;
        }
        free(full);
    }
    struct mq_topic *t = grow(&c->topics, &c->n_topics, sizeof(*t));
    if (!t)
        return oom(mq);
    t->at = at;
    t->dir = dir;
    t->qos = qos;
    if (!(t->text = strdup(line)) || (!empty && !(t->pattern = strdup(pattern))) ||
        (lpfx && !(t->lpfx = strdup(lpfx))) || (rpfx && !(t->rpfx = strdup(rpfx))))
        return oom(mq);
    return 0;
}

static int no_equivalent(struct mq *mq, struct mq_conn *c, struct mq_at at, const char *name,
                         const char *value, const char *why)
{
    char w[300];
    return note(mq, c, "%s%s%s (%s): %s", name, *value ? " " : "", value, where(w, sizeof(w), at),
                why);
}

/* Options carried over into fields of c, or turned into a comment. */
static int bridge_option(struct mq *mq, struct mq_at at, struct mq_conn *c, const char *name,
                         const char *line, char **p)
{
    int v, rc;
    char *s;

    if (!strcmp(name, "address") || !strcmp(name, "addresses"))
        return parse_addresses(mq, at, c, p);
    if (!strcmp(name, "topic"))
        return parse_topic(mq, at, c, line, p);
    if (!strcmp(name, "bridge_protocol_version")) {
        s = rest_of(p);
        if (!strcmp(s, "mqttv31"))
            c->version = MQC_V31;
        else if (!strcmp(s, "mqttv311"))
            c->version = MQC_V311;
        else if (!strcmp(s, "mqttv50"))
            c->version = MQC_V5;
        else
            return fail(mq, at,
                        "invalid bridge_protocol_version value \"%s\" (mqttv31, mqttv311 or "
                        "mqttv50)",
                        s);
        return 0;
    }
    if (!strcmp(name, "remote_clientid") || !strcmp(name, "clientid"))
        return get_string(mq, at, name, p, &c->remote_clientid);
    if (!strcmp(name, "remote_username") || !strcmp(name, "username"))
        return get_string(mq, at, name, p, &c->username);
    if (!strcmp(name, "remote_password") || !strcmp(name, "password"))
        return get_string(mq, at, name, p, &c->password);
    if (!strcmp(name, "local_clientid"))
        return get_string(mq, at, name, p, &c->local_clientid);
    if (!strcmp(name, "local_username"))
        return get_string(mq, at, name, p, &c->local_username);
    if (!strcmp(name, "local_password"))
        return get_string(mq, at, name, p, &c->local_password);
    if (!strcmp(name, "notification_topic"))
        return get_string(mq, at, name, p, &c->notification_topic);
    if (!strcmp(name, "cleansession"))
        return get_bool(mq, at, name, p, &c->cleansession);
    if (!strcmp(name, "local_cleansession"))
        return get_bool(mq, at, name, p, &c->local_cleansession);
    if (!strcmp(name, "notifications"))
        return get_bool(mq, at, name, p, &c->notifications);
    if (!strcmp(name, "notifications_local_only"))
        return get_bool(mq, at, name, p, &c->notif_local_only);
    if (!strcmp(name, "bridge_insecure"))
        return get_bool(mq, at, name, p, &c->insecure);
    if (!strcmp(name, "bridge_outgoing_retain"))
        return get_bool(mq, at, name, p, &c->outgoing_retain);
    if (!strcmp(name, "try_private"))
        return get_bool(mq, at, name, p, &c->try_private);
    if (!strcmp(name, "keepalive_interval")) {
        if ((rc = get_uint(mq, at, name, next_tok(p), 65535, &v)) < 0)
            return rc;
        c->keepalive = v < 5 ? 5 : v; /* Mosquitto's minimum */
        return 0;
    }
    if (!strcmp(name, "restart_timeout")) {
        int cap = 0;
        if ((rc = get_uint(mq, at, name, next_tok(p), INT_MAX / 1000, &v)) < 0)
            return rc;
        if ((s = next_tok(p)) && s[0] != '#') {
            if ((rc = get_uint(mq, at, name, s, INT_MAX / 1000, &cap)) < 0)
                return rc;
            if (cap < v)
                return fail(mq, at, "restart_timeout: the cap %d is lower than the base %d", cap,
                            v);
        }
        c->restart_base = v < 1 ? 1 : v;
        c->restart_cap = cap;
        return 0;
    }
    if (!strcmp(name, "bridge_cafile"))
        return get_path(mq, at, name, p, &c->cafile);
    if (!strcmp(name, "bridge_capath"))
        return get_path(mq, at, name, p, &c->capath);
    if (!strcmp(name, "bridge_certfile"))
        return get_path(mq, at, name, p, &c->certfile);
    if (!strcmp(name, "bridge_keyfile"))
        return get_path(mq, at, name, p, &c->keyfile);

    /* The rest has no field of its own: a comment says what replaces it, if anything. */
    const char *why;
    s = rest_of(p);
    if (!strcmp(name, "bridge_psk")) {
        c->psk = strdup("set");
        if (!c->psk)
            return oom(mq);
        return no_equivalent(mq, c, at, name, "...",
                             "TLS-PSK is not supported: the remote listener must offer a "
                             "certificate (mqtts:// is used)");
    }
    if (!strcmp(name, "bridge_identity"))
        why = "TLS-PSK is not supported";
    else if (!strcmp(name, "start_type"))
        why = !strcmp(s, "automatic")
                  ? "mqtt-relay's behaviour too: it connects at start and always reconnects"
                  : "no equivalent: mqtt-relay connects at start and always reconnects (as "
                    "start_type automatic)";
    else if (!strcmp(name, "idle_timeout") || !strcmp(name, "threshold"))
        why = "no equivalent: only used by start_type lazy; mqtt-relay stays connected";
    else if (!strcmp(name, "round_robin"))
        why = (!strcmp(s, "false") || !strcmp(s, "0"))
                  ? "mqtt-relay's behaviour too: the first url is preferred, probed while on "
                    "a fallback and taken back once it answers"
                  : "no equivalent: mqtt-relay always prefers the first url and returns to it "
                    "once it answers";
    else if (!strcmp(name, "bridge_attempt_unsubscribe"))
        why = "no equivalent: mqtt-relay subscribes to its routes' filters only and sends no "
              "UNSUBSCRIBE for \"out\" topics";
    else if (!strcmp(name, "bridge_max_packet_size"))
        why = "no equivalent: mqtt-relay honours the size the broker announces (MQTT 5) and "
              "drops larger messages, counted as too_large; max_packet_size limits what it "
              "accepts, not what it sends";
    else if (!strcmp(name, "bridge_tls_version"))
        why = "no equivalent: OpenSSL's defaults choose the version (the newest both sides "
              "support)";
    else if (!strcmp(name, "bridge_alpn"))
        why = "no equivalent: mqtt-relay sends no ALPN";
    else if (!strcmp(name, "bridge_require_ocsp"))
        why = "no equivalent: mqtt-relay does not check OCSP";
    else if (!strcmp(name, "bridge_bind_address"))
        why = "no equivalent: the system's routing picks the source address";
    else
        why = "not known to this converter: no equivalent";
    return no_equivalent(mq, c, at, name, s, why);
}

/* ---- broker options ----------------------------------------------------------------------- */

static int ignore_option(struct mq *mq, const char *name)
{
    for (size_t i = 0; i < mq->n_ignored; i++)
        if (!strcmp(mq->ignored[i], name))
            return 0;
    return push_str(mq, &mq->ignored, &mq->n_ignored, strdup(name));
}

/* The few broker options that say where the local broker listens. cur: the listener that
 * options apply to (NULL: the default listener). */
static int listener_option(struct mq *mq, struct mq_at at, const char *name, char **p,
                           struct mq_listener **cur)
{
    char *v;
    int n, rc;
    if (!strcmp(name, "listener")) {
        if ((rc = get_uint(mq, at, name, next_tok(p), 65535, &n)) < 0)
            return rc;
        struct mq_listener *l = grow(&mq->lis, &mq->n_lis, sizeof(*l));
        if (!l)
            return oom(mq);
        l->at = at;
        l->port = (unsigned)n;
        if ((v = next_tok(p)) && v[0] != '#' && !(l->host = strdup(v)))
            return oom(mq);
        l->unix_socket = n == 0;
        *cur = l;
        return 0;
    }
    struct mq_listener *l = *cur ? *cur : &mq->deflis;
    if (!strcmp(name, "port")) {
        if ((rc = get_uint(mq, at, name, next_tok(p), 65535, &n)) < 0)
            return rc;
        mq->deflis.port = (unsigned)n; /* the last one counts (Mosquitto warns) */
        mq->deflis.at = at;
        mq->have_deflis = n > 0;
    } else if (!strcmp(name, "bind_address")) {
        v = rest_of(p);
        free(mq->deflis.host);
        if (!(mq->deflis.host = strdup(v)))
            return oom(mq);
    } else if (!strcmp(name, "protocol")) {
        v = next_tok(p);
        l->ws = v && !strcmp(v, "websockets");
    } else if (!strcmp(name, "certfile") || !strcmp(name, "psk_hint")) {
        l->tls = true;
    } else if (!strcmp(name, "mount_point")) {
        l->mount = true;
    }
    return 0;
}

/* ---- files -------------------------------------------------------------------------------- */

static int read_file(struct mq *mq, const char *path, int level);

/* Mosquitto's include_dir order (scmp_p): case-insensitively, then by case. */
static int cmp_conf_name(const void *x, const void *y)
{
    const char *a = *(const char *const *)x, *b = *(const char *const *)y;
    for (; *a && *b; a++, b++) {
        int d = toupper((unsigned char)*a) - toupper((unsigned char)*b);
        if (d)
            return d;
        if (*a != *b)
            return *a - *b;
    }
    return *a - *b;
}

static int include_dir(struct mq *mq, struct mq_at at, const char *dir)
{
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    int rc = 0;
    char *full = dir[0] == '/' ? strdup(dir) : fmt_str("%s/%s", mq->dir, dir);
    if (!full)
        return oom(mq);
    DIR *d = opendir(full);
    if (!d) {
        rc = fail(mq, at, "include_dir %s: %s", full, strerror(errno));
        free(full);
        return rc;
    }
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len > 5 && !strcmp(de->d_name + len - 5, ".conf") &&
            (rc = push_str(mq, &names, &n, fmt_str("%s/%s", full, de->d_name))) < 0)
            break;
    }
    closedir(d);
    free(full);
    if (rc == 0 && n > 1)
        qsort(names, n, sizeof(*names), cmp_conf_name);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = read_file(mq, names[i], 1);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* One line (without its newline). cur_conn/cur_lis: this file's current bridge and listener. */
static int parse_line(struct mq *mq, struct mq_at at, char *buf, int level, long *cur_conn,
                      struct mq_listener **cur_lis)
{
    char *line = strdup(buf), *p = buf, *name;
    int rc = 0;
    if (!line)
        return oom(mq);
    name = next_tok(&p);
    if (!name || name[0] == '#') /* blank, or an indented comment (Mosquitto would refuse it) */
        goto out;
    if (!strcmp(name, "connection")) {
        char *v = next_tok(&p);
        if (!v) {
            rc = fail(mq, at, "empty connection value");
            goto out;
        }
        for (size_t i = 0; i < mq->n_conns; i++)
            if (!strcmp(mq->conns[i].name, v)) {
                rc = fail(mq, at, "duplicate bridge name \"%s\" (first at %s:%d)", v,
                          mq->conns[i].at.file, mq->conns[i].at.line);
                goto out;
            }
        struct mq_conn *c = grow(&mq->conns, &mq->n_conns, sizeof(*c));
        if (!c || !(c->name = strdup(v))) {
            rc = oom(mq);
            goto out;
        }
        c->at = at;
        c->cleansession = c->local_cleansession = c->keepalive = c->notifications = -1;
        c->notif_local_only = c->insecure = c->outgoing_retain = c->try_private = -1;
        *cur_conn = (long)mq->n_conns - 1;
    } else if (is_bridge_option(name)) {
        if (*cur_conn < 0)
            rc = fail(mq, at, "%s outside a bridge: no connection line before it in this file",
                      name);
        else
            rc = bridge_option(mq, at, &mq->conns[*cur_conn], name, line, &p);
    } else if (!strcmp(name, "include_dir")) {
        if (level == 0) { /* Mosquitto follows include_dir in the main file only */
            char *v = rest_of(&p);
            rc = *v ? include_dir(mq, at, v) : fail(mq, at, "empty include_dir value");
        }
    } else {
        rc = listener_option(mq, at, name, &p, cur_lis);
        if (rc == 0)
            rc = ignore_option(mq, name);
    }
out:
    free(line);
    return rc;
}

static int read_file(struct mq *mq, const char *path, int level)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    long cur_conn = -1;
    struct mq_listener *cur_lis = NULL;
    struct mq_at at = {NULL, 0};
    int rc = push_str(mq, &mq->files, &mq->n_files, strdup(path));
    if (rc < 0)
        return rc;
    at.file = mq->files[mq->n_files - 1];
    FILE *f = fopen(path, "r");
    if (!f) {
        rc = -errno;
        fprintf(mq->err, "%s: %s\n", path, strerror(errno));
        return rc;
    }
    while ((len = getline(&buf, &cap, f)) >= 0) {
        at.line++;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        if (len == 0 || buf[0] == '#')
            continue;
        if ((rc = parse_line(mq, at, buf, level, &cur_conn, &cur_lis)) < 0)
            break;
    }
    if (rc == 0 && ferror(f)) {
        rc = -EIO;
        fprintf(mq->err, "%s: read error\n", path);
    }
    free(buf);
    fclose(f);
    return rc;
}

/* ---- routes ------------------------------------------------------------------------------- */

static bool same_prefix(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* The route's destination topic template: dst + pattern with each '+' level as ${1}..${9} and
 * a trailing '#' as ${#}; "${topic}" when both prefixes are the same (nothing to remap). NULL
 * (with *why set) when a template cannot express it. */
static char *make_template(const struct mq_topic *t, const char *src, const char *dst,
                           const char **why)
{
    if (same_prefix(src, dst))
        return strdup("${topic}");
    const char *pat = t->pattern ? t->pattern : "";
    size_t plen = strlen(pat), dlen = dst ? strlen(dst) : 0, slen = src ? strlen(src) : 0;
    char *out = malloc(dlen + plen * 4 + 8), *o = out;
    unsigned plus = 0;
    if (!out)
        return NULL;
    if (strstr(pat, "${") || (dst && strstr(dst, "${"))) {
        *why = "the topic contains \"${\", which mqtt-relay's topic templates cannot write";
        free(out);
        return NULL;
    }
    memcpy(o, dst ? dst : "", dlen);
    o += dlen;
    for (size_t i = 0; i < plen; i++) {
        /* a wildcard fills a whole level of src + pattern */
        bool start = i == 0 ? (slen == 0 || src[slen - 1] == '/') : pat[i - 1] == '/';
        bool end = i + 1 == plen || pat[i + 1] == '/';
        if (start && end && pat[i] == '+') {
            if (++plus > 9) {
                *why = "the pattern has more than 9 '+' levels (templates have ${1}..${9})";
                free(out);
                return NULL;
            }
            o += sprintf(o, "${%u}", plus);
        } else if (start && end && pat[i] == '#') {
            memcpy(o, "${#}", 4);
            o += 4;
        } else {
            *o++ = pat[i];
        }
    }
    *o = '\0';
    return out;
}

static int add_route(struct mq *mq, size_t ci, size_t ti, bool out)
{
    const struct mq_conn *c = &mq->conns[ci];
    const struct mq_topic *t = &c->topics[ti];
    const char *src = out ? t->lpfx : t->rpfx, *dst = out ? t->rpfx : t->lpfx;
    const char *why = NULL;
    struct mq_route *r = grow(&mq->routes, &mq->n_routes, sizeof(*r));
    if (!r)
        return oom(mq);
    r->conn = ci;
    r->topic = ti;
    r->out = out;
    r->name = fmt_str("%s-%s-%zu", c->bname, out ? "out" : "in", ti + 1);
    r->filter = fmt_str("%s%s", src ? src : "", t->pattern ? t->pattern : "");
    r->tpl = make_template(t, src, dst, &why);
    if (!r->tpl && why)
        return fail(mq, t->at, "cannot convert this topic line: %s", why);
    if (!r->name || !r->filter || !r->tpl)
        return oom(mq);
    char err[200];
    struct relay_tpl tpl;
    int rc = relay_tpl_compile(&tpl, r->tpl, r->filter, err, sizeof(err));
    relay_tpl_cleanup(&tpl);
    if (rc == -EINVAL)
        return fail(mq, t->at, "cannot convert this topic line: template \"%s\": %s", r->tpl, err);
    return rc < 0 ? oom(mq) : 0;
}

/* True when what an out route writes to the remote can match an in route's filter there: the
 * loop guard then needs MQTT 5 on the remote (SPEC "Loop guard"; config.c refuses it on 3.x). */
static int loops(const struct mq *mq, size_t ci, long *a, long *b)
{
    for (size_t i = 0; i < mq->n_routes; i++) {
        const struct mq_route *o = &mq->routes[i];
        if (o->conn != ci || !o->out)
            continue;
        struct relay_tpl tpl;
        if (relay_tpl_compile(&tpl, o->tpl, o->filter, NULL, 0) < 0)
            return -ENOMEM; /* compiled once already: only memory can fail */
        for (size_t k = 0; k < mq->n_routes; k++) {
            const struct mq_route *in = &mq->routes[k];
            if (in->conn == ci && !in->out && relay_tpl_overlaps(&tpl, o->filter, in->filter)) {
                *a = (long)i;
                *b = (long)k;
                relay_tpl_cleanup(&tpl);
                return 1;
            }
        }
        relay_tpl_cleanup(&tpl);
    }
    return 0;
}

/* Broker names: [A-Za-z0-9_-]+, unique, never "local". */
static int name_brokers(struct mq *mq)
{
    for (size_t i = 0; i < mq->n_conns; i++) {
        struct mq_conn *c = &mq->conns[i];
        char *base = strdup(c->name);
        if (!base)
            return oom(mq);
        for (char *s = base; *s; s++)
            if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
                *s = '-';
        for (unsigned k = 1;; k++) {
            char *n = k == 1 ? strdup(base) : fmt_str("%s-%u", base, k);
            bool taken = !n || !strcmp(n, LOCAL_NAME);
            for (size_t j = 0; n && !taken && j < i; j++)
                taken = !strcmp(mq->conns[j].bname, n);
            if (!n) {
                free(base);
                return oom(mq);
            }
            if (!taken) {
                c->bname = n;
                break;
            }
            free(n);
        }
        free(base);
    }
    return 0;
}

/* ---- output ------------------------------------------------------------------------------- */

/* A libconfig string literal. */
static void put_str(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(o, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", o);
        else if (c == '\t')
            fputs("\\t", o);
        else if (c < 0x20 || c == 0x7f)
            fprintf(o, "\\x%02x", c);
        else
            fputc(c, o);
    }
    fputc('"', o);
}

/* "    key = "value";   # comment" */
static void kv_str(FILE *o, const char *ind, const char *key, const char *v, const char *comment)
{
    fprintf(o, "%s%s = ", ind, key);
    put_str(o, v);
    fputc(';', o);
    if (comment && *comment)
        fprintf(o, "  # %s", comment);
    fputc('\n', o);
}

static void kv_raw(FILE *o, const char *ind, const char *key, const char *v, const char *comment)
{
    fprintf(o, "%s%s = %s;", ind, key, v);
    if (comment && *comment)
        fprintf(o, "  # %s", comment);
    fputc('\n', o);
}

/* A comment, wrapped at about 100 columns. */
static void comment(FILE *o, const char *ind, const char *text)
{
    size_t width = 98 - strlen(ind), col = 0;
    const char *s = text;
    fprintf(o, "%s#", ind);
    while (*s) {
        size_t n = strcspn(s, " ");
        if (col > 0 && col + 1 + n > width) {
            fprintf(o, "\n%s# ", ind);
            col = 0;
        } else {
            fputc(' ', o);
            col++;
        }
        fwrite(s, 1, n, o);
        col += n;
        s += n;
        while (*s == ' ')
            s++;
    }
    fputc('\n', o);
}

static const char *version_text(int v)
{
    return v == MQC_V31 ? "3.1" : v == MQC_V5 ? "5" : "3.1.1";
}

static const char *mosquitto_version(int v)
{
    return v == MQC_V31 ? "mqttv31" : v == MQC_V5 ? "mqttv50" : "mqttv311";
}

static bool listener_plain(const struct mq_listener *l)
{
    return !l->unix_socket && !l->ws && !l->tls && !l->mount;
}

/* The listener the relay reaches the local broker on: the first plain MQTT one; else the first
 * that is not a Unix socket; else NULL (Mosquitto's own default: 127.0.0.1:1883). */
static const struct mq_listener *local_listener(const struct mq *mq)
{
    const struct mq_listener *any = NULL;
    for (size_t i = 0; i <= mq->n_lis; i++) {
        const struct mq_listener *l = i < mq->n_lis ? &mq->lis[i] : &mq->deflis;
        if (i == mq->n_lis && !mq->have_deflis)
            break;
        if (listener_plain(l))
            return l;
        if (!any && !l->unix_socket)
            any = l;
    }
    return any;
}

static void put_url(FILE *o, const char *scheme, const char *host, unsigned port)
{
    char *u = strchr(host, ':') ? fmt_str("%s://[%s]:%u", scheme, host, port)
                                : fmt_str("%s://%s:%u", scheme, host, port);
    put_str(o, u ? u : "");
    free(u);
}

static void print_local(const struct mq *mq, FILE *o)
{
    const struct mq_listener *l = local_listener(mq);
    const struct mq_conn *first = NULL, *cred = NULL;
    char w[300];
    const char *host = l && l->host ? l->host : "127.0.0.1";
    if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !*host)
        host = "127.0.0.1";
    const char *scheme = !l      ? "mqtt"
                         : l->ws ? (l->tls ? "wss" : "ws")
                                 : (l->tls ? "mqtts" : "mqtt");

    fprintf(o, "  {\n");
    comment(o, "    ",
            "The Mosquitto broker that held the bridges: mqtt-relay is one more client of it.");
    fprintf(o, "    name = \"" LOCAL_NAME "\";\n    url = ");
    put_url(o, scheme, host, l ? l->port : 1883);
    fputc(';', o);
    if (!l)
        fprintf(o, "  # no listener in the file: Mosquitto's default\n");
    else if (l == &mq->deflis)
        fprintf(o, "  # port %u (%s)\n", l->port, where(w, sizeof(w), l->at));
    else
        fprintf(o, "  # listener %u%s%s (%s)\n", l->port, l->host ? " " : "",
                l->host ? l->host : "", where(w, sizeof(w), l->at));
    if (l && !listener_plain(l))
        comment(o, "    ",
                l->mount ? "This listener has a mount_point: mqtt-relay's topics there are "
                           "prefixed by it, which Mosquitto's bridges were not. Add a plain "
                           "listener on 127.0.0.1 and use it here."
                         : "No plain MQTT listener: this one uses TLS or WebSocket; add "
                           "tls.ca_file if its certificate is not from the system store.");
    kv_str(o, "    ", "version", "5", "Mosquitto 2.0 speaks MQTT 5: the loop guard works here");

    for (size_t i = 0; i < mq->n_conns; i++) {
        if (!first)
            first = &mq->conns[i];
        if (!cred && mq->conns[i].local_username)
            cred = &mq->conns[i];
    }
    if (cred) {
        kv_str(o, "    ", "username", cred->local_username, "local_username");
        if (cred->local_password)
            kv_str(o, "    ", "password", cred->local_password, "local_password");
        for (size_t i = 0; i < mq->n_conns; i++) {
            const struct mq_conn *c = &mq->conns[i];
            if (c != cred && c->local_username &&
                (strcmp(c->local_username, cred->local_username) ||
                 !same_prefix(c->local_password, cred->local_password))) {
                char *t = fmt_str("connection %s had other local credentials "
                                  "(local_username %s): one connection serves every bridge here",
                                  c->name, c->local_username);
                if (t)
                    comment(o, "    ", t);
                free(t);
            }
        }
    }
    int cs = first->local_cleansession >= 0 ? first->local_cleansession
             : first->cleansession >= 0     ? first->cleansession
                                            : 0;
    kv_raw(o, "    ", "clean_start", cs ? "true" : "false",
           first->local_cleansession >= 0 ? "local_cleansession"
                                          : "Mosquitto: local_cleansession defaults to "
                                            "cleansession (false)");
    fprintf(o, "  }");
}

static void print_tls(const struct mq_conn *c, FILE *o)
{
    fprintf(o, "    tls = {\n");
    if (c->cafile)
        kv_str(o, "      ", "ca_file", c->cafile, "bridge_cafile");
    if (c->capath)
        comment(o, "      ",
                c->cafile ? "bridge_capath is not supported (use bridge_cafile): ignored, "
                            "ca_file is used"
                          : "bridge_capath is not supported (use bridge_cafile): without "
                            "ca_file the system's CA store is used; put the certificates of "
                            "that directory into one file and name it in ca_file");
    if (c->certfile && c->keyfile) {
        kv_str(o, "      ", "cert_file", c->certfile, "bridge_certfile");
        kv_str(o, "      ", "key_file", c->keyfile, "bridge_keyfile");
    } else if (c->certfile || c->keyfile) {
        comment(o, "      ",
                c->certfile ? "bridge_certfile without bridge_keyfile: no client certificate"
                            : "bridge_keyfile without bridge_certfile: no client certificate");
    }
    if (c->insecure == 1) {
        kv_raw(o, "      ", "verify", "true", NULL);
        comment(o, "      ",
                "bridge_insecure true made Mosquitto skip the host name check only (the chain "
                "was still verified against the CA). mqtt-relay has no such switch: the check "
                "stays on. If the certificate does not carry the host name of the url, set "
                "server_name to a name it carries; verify = false would also drop the chain "
                "check.");
    } else {
        kv_raw(o, "      ", "verify", "true",
               "Mosquitto verified the chain and the host name as well");
    }
    fprintf(o, "    };\n");
}

static void print_conn(const struct mq *mq, const struct mq_conn *c, FILE *o)
{
    char w[300], *t;
    bool tls = c->cafile || c->capath || c->psk;
    int version = c->version ? c->version : MQC_V311;

    fprintf(o, "  {\n");
    t = fmt_str("bridge \"%s\" (%s)%s", c->name, where(w, sizeof(w), c->at),
                strcmp(c->name, c->bname) ? ", renamed: broker names are letters, digits, '_' "
                                            "and '-', and \"local\" is the local broker"
                                          : "");
    if (t)
        comment(o, "    ", t);
    free(t);
    kv_str(o, "    ", "name", c->bname, NULL);
    fprintf(o, "    url = ");
    if (c->n_addrs > 1)
        fprintf(o, "[");
    for (size_t i = 0; i < c->n_addrs; i++) {
        if (i)
            fprintf(o, ", ");
        put_url(o, tls ? "mqtts" : "mqtt", c->addrs[i].host, c->addrs[i].port);
    }
    fprintf(o, "%s;  # address (%s)%s\n", c->n_addrs > 1 ? "]" : "",
            where(w, sizeof(w), c->addr_at),
            tls ? ": without a port Mosquitto uses 1883, TLS or not" : "");

    if (c->loop_out >= 0) {
        kv_str(o, "    ", "version", "5", NULL);
        t = fmt_str("bridge_protocol_version %s, raised to MQTT 5: routes %s and %s carry "
                    "overlapping topics both ways, and mqtt-relay's loop guard needs MQTT 5 "
                    "there (Mosquitto relied on try_private's bridge flag, which only a "
                    "Mosquitto remote honours). If the remote broker cannot speak MQTT 5, make "
                    "the topics of the two directions disjoint and set version = \"%s\".",
                    mosquitto_version(version), mq->routes[c->loop_out].name,
                    mq->routes[c->loop_in].name, version_text(version));
        if (t)
            comment(o, "    ", t);
        free(t);
        version = MQC_V5;
    } else {
        t = fmt_str("bridge_protocol_version %s%s", mosquitto_version(version),
                    c->version ? "" : " (Mosquitto's default)");
        kv_str(o, "    ", "version", version_text(version), t);
        free(t);
    }

    char *id =
        c->remote_clientid ? strdup(c->remote_clientid) : fmt_str("%s.%s", mq->host, c->name);
    if (id) {
        bool cut = version == MQC_V31 && strlen(id) > 23;
        if (cut)
            id[23] = '\0';
        kv_str(o, "    ", "client_id", id,
               cut ? "cut to the 23 bytes MQTT 3.1 allows"
               : c->remote_clientid
                   ? "remote_clientid"
                   : "Mosquitto's default remote_clientid: <host name>.<connection>");
    }
    if (c->username)
        kv_str(o, "    ", "username", c->username, "remote_username");
    if (c->password && (c->username || version == MQC_V5))
        kv_str(o, "    ", "password", c->password,
               "remote_password, copied as written in the Mosquitto file");
    else if (c->password)
        comment(o, "    ",
                "remote_password without remote_username: not sent (before MQTT 5 a "
                "password goes with a user name only)");
    t = fmt_str("%d", c->keepalive >= 0 ? c->keepalive : 60);
    if (t)
        kv_raw(o, "    ", "keepalive", t,
               c->keepalive >= 0 ? "keepalive_interval"
                                 : "keepalive_interval (Mosquitto's "
                                   "default 60)");
    free(t);
    kv_raw(o, "    ", "clean_start", c->cleansession == 1 ? "true" : "false",
           c->cleansession >= 0 ? "cleansession" : "cleansession (Mosquitto's default false)");
    if (c->restart_base) {
        int cap = c->restart_cap ? c->restart_cap : c->restart_base;
        t = fmt_str("{ min = %d; max = %d; }", c->restart_base * 1000, cap * 1000);
        if (t)
            kv_raw(o, "    ", "reconnect", t,
                   c->restart_cap ? "restart_timeout BASE CAP, in ms"
                                  : "restart_timeout, in ms (a constant delay)");
        free(t);
    } else {
        comment(o, "    ",
                "restart_timeout not given: Mosquitto waited 5 s, backing off to 30 s; "
                "mqtt-relay's default reconnect (0.25 s backing off to 30 s, jittered) is kept");
    }
    if (c->notifications != 0 && c->notif_local_only != 1) {
        char *topic = c->notification_topic ? strdup(c->notification_topic)
                                            : fmt_str("$SYS/broker/connection/%s/state", id);
        if (topic)
            kv_str(o, "    ", "status_topic", topic,
                   c->notification_topic ? "notification_topic" : "notifications (default true)");
        comment(o, "    ",
                "Mosquitto published a retained \"1\" (up) and \"0\" (down, its Will) there "
                "and on the local broker; mqtt-relay publishes a retained \"online\" on "
                "connect and a retained Will \"offline\", on this broker only.");
        free(topic);
    } else if (c->notifications == 0) {
        comment(o, "    ", "notifications false: no status_topic");
    } else {
        comment(o, "    ",
                "notifications_local_only true: Mosquitto published the bridge state on the "
                "local broker only; mqtt-relay has no equivalent (its status_topic is published "
                "on the broker it belongs to), so none is set");
    }
    free(id);
    if (tls)
        print_tls(c, o);
    else if (c->certfile || c->keyfile || c->insecure >= 0)
        comment(o, "    ",
                "bridge_certfile/bridge_keyfile/bridge_insecure without bridge_cafile or "
                "bridge_capath: Mosquitto used no TLS, nor does this");
    if (c->local_clientid) {
        t = fmt_str("local_clientid %s: no equivalent: mqtt-relay is one ordinary client of "
                    "the local broker for every bridge (client id \"<relay.id>-local\")",
                    c->local_clientid);
        if (t)
            comment(o, "    ", t);
        free(t);
    }
    if (c->outgoing_retain == 0)
        comment(o, "    ",
                "bridge_outgoing_retain false: the routes to this broker clear the retain flag "
                "(retain = \"clear\")");
    if (c->outgoing_retain == 1)
        comment(o, "    ",
                "bridge_outgoing_retain true: the default; the routes keep the retain flag");
    if (c->try_private == 1)
        comment(o, "    ",
                version == MQC_V5 ? "try_private true: no bridge flag in MQTT 5; No Local and "
                                    "the relay-path property keep loops out"
                                  : "try_private true: mqtt-relay's behaviour too: it sets the "
                                    "bridge flag and connects again without it if the broker "
                                    "refuses it");
    if (c->try_private == 0)
        comment(o, "    ",
                "try_private false: no switch in mqtt-relay: with MQTT 3.1/3.1.1 it sets the "
                "bridge flag and connects again without it if the broker refuses it");
    for (size_t i = 0; i < c->n_notes; i++)
        comment(o, "    ", c->notes[i]);
    fprintf(o, "  }");
}

static void print_route(const struct mq *mq, const struct mq_route *r, FILE *o)
{
    const struct mq_conn *c = &mq->conns[r->conn];
    const struct mq_topic *t = &c->topics[r->topic];
    char w[300], q[4];
    char *cm = fmt_str("%s: %s (%s)", c->name, t->text, where(w, sizeof(w), t->at));

    fprintf(o, "  {\n");
    if (cm)
        comment(o, "    ", cm);
    free(cm);
    kv_str(o, "    ", "name", r->name, NULL);
    kv_str(o, "    ", "from", r->out ? LOCAL_NAME : c->bname, NULL);
    kv_str(o, "    ", "to", r->out ? c->bname : LOCAL_NAME, NULL);
    kv_str(o, "    ", "filter", r->filter,
           r->out ? "LOCAL-PREFIX + PATTERN, subscribed on the local broker"
                  : "REMOTE-PREFIX + PATTERN, subscribed on the remote broker");
    kv_str(o, "    ", "topic", r->tpl,
           !strcmp(r->tpl, "${topic}") ? "unchanged"
           : r->out                    ? "REMOTE-PREFIX + what the pattern matched"
                                       : "LOCAL-PREFIX + what the pattern matched");
    snprintf(q, sizeof(q), "%d", t->qos);
    kv_raw(o, "    ", "qos", q, "the topic line's QoS, a maximum");
    kv_raw(o, "    ", "out_qos", q, NULL);
    if (r->out && c->outgoing_retain == 0)
        kv_str(o, "    ", "retain", "clear", "bridge_outgoing_retain false");
    fprintf(o, "  }");
}

static void print_all(const struct mq *mq, FILE *o)
{
    char *t;
    bool password = false;
    for (size_t i = 0; i < mq->n_conns; i++)
        password |= mq->conns[i].password || mq->conns[i].local_password;

    fprintf(o, "# mqtt-relay configuration converted by `mqtt-relay --from-mosquitto` (%s)\n",
            RELAY_VERSION_STRING);
    fprintf(o, "# from the Mosquitto configuration %s", mq->files[0]);
    for (size_t i = 1; i < mq->n_files; i++)
        fprintf(o, "%s%s", i == 1 ? "\n# and the files of its include_dir: " : ", ", mq->files[i]);
    fprintf(o, ".\n#\n");
    comment(o, "",
            "The broker that held the bridges is the broker \"local\"; each bridge connection "
            "is a broker of its own; each bridge topic line is a route (two for \"both\"): "
            "\"out\" routes go from local to the remote broker, \"in\" routes come back. "
            "Validate with: mqtt-relay -c FILE --check. Stop Mosquitto's bridges (remove "
            "their sections) before starting mqtt-relay, or messages cross twice.");
    if (mq->n_conns > 1)
        comment(o, "",
                "With several bridges, Mosquitto also passed messages from one remote broker "
                "on to another through the local broker; mqtt-relay does not receive its own "
                "publications back (MQTT 5 No Local), so add a route between two remote "
                "brokers if you relied on that.");
    if (password)
        comment(o, "",
                "This file holds passwords copied as written in the Mosquitto file: keep it "
                "as private as that one (chmod 600), or move each to a password_file.");
    if (mq->n_ignored) {
        size_t len = 0;
        for (size_t i = 0; i < mq->n_ignored; i++)
            len += strlen(mq->ignored[i]) + 2;
        char *list = calloc(1, len + 1);
        if (list) {
            for (size_t i = 0; i < mq->n_ignored; i++) {
                strcat(list, mq->ignored[i]);
                if (i + 1 < mq->n_ignored)
                    strcat(list, ", ");
            }
            t = fmt_str("Broker options, not part of any bridge, were ignored (the first "
                        "listener only gave the local broker's address): %s.",
                        list);
            if (t)
                comment(o, "", t);
            free(t);
        }
        free(list);
    }
    comment(o, "",
            "Relative paths in the Mosquitto file were taken relative to its directory; this "
            "file uses absolute ones.");

    fprintf(o, "\nrelay: {\n");
    t = fmt_str("%.58s-relay", mq->conns[0].bname);
    if (t)
        kv_str(o, "  ", "id", t, "set, so that --check never depends on the host name");
    free(t);
    fprintf(o, "};\n\nbrokers = (\n");
    print_local(mq, o);
    for (size_t i = 0; i < mq->n_conns; i++) {
        fprintf(o, ",\n");
        print_conn(mq, &mq->conns[i], o);
    }
    fprintf(o, "\n);\n\nroutes = (\n");
    for (size_t i = 0; i < mq->n_routes; i++) {
        if (i)
            fprintf(o, ",\n");
        print_route(mq, &mq->routes[i], o);
    }
    fprintf(o, "\n);\n");
}

/* ---- the whole -------------------------------------------------------------------------- */

static void mq_free(struct mq *mq)
{
    for (size_t i = 0; i < mq->n_conns; i++) {
        struct mq_conn *c = &mq->conns[i];
        free(c->name);
        free(c->bname);
        for (size_t k = 0; k < c->n_addrs; k++)
            free(c->addrs[k].host);
        free(c->addrs);
        free(c->remote_clientid);
        free(c->username);
        free(c->password);
        free(c->local_clientid);
        free(c->local_username);
        free(c->local_password);
        free(c->notification_topic);
        free(c->cafile);
        free(c->capath);
        free(c->certfile);
        free(c->keyfile);
        free(c->psk);
        for (size_t k = 0; k < c->n_topics; k++) {
            free(c->topics[k].text);
            free(c->topics[k].pattern);
            free(c->topics[k].lpfx);
            free(c->topics[k].rpfx);
        }
        free(c->topics);
        for (size_t k = 0; k < c->n_notes; k++)
            free(c->notes[k]);
        free(c->notes);
    }
    free(mq->conns);
    for (size_t i = 0; i < mq->n_lis; i++)
        free(mq->lis[i].host);
    free(mq->lis);
    free(mq->deflis.host);
    for (size_t i = 0; i < mq->n_ignored; i++)
        free(mq->ignored[i]);
    free(mq->ignored);
    for (size_t i = 0; i < mq->n_routes; i++) {
        free(mq->routes[i].name);
        free(mq->routes[i].filter);
        free(mq->routes[i].tpl);
    }
    free(mq->routes);
    for (size_t i = 0; i < mq->n_files; i++)
        free(mq->files[i]);
    free(mq->files);
    free(mq->dir);
}

static int check_conns(struct mq *mq)
{
    struct mq_at at = {mq->files[0], 0};
    if (mq->n_conns == 0)
        return fail(mq, at, "no bridge: no \"connection\" line, nothing to convert");
    for (size_t i = 0; i < mq->n_conns; i++) {
        const struct mq_conn *c = &mq->conns[i];
        if (!c->n_addrs)
            return fail(mq, c->at, "connection \"%s\" has no address (Mosquitto refuses it too)",
                        c->name);
        if (!c->n_topics)
            return fail(mq, c->at, "connection \"%s\" has no topic line (Mosquitto refuses it too)",
                        c->name);
    }
    return 0;
}

int relay_from_mosquitto(const char *path, FILE *out, FILE *err)
{
    struct mq mq;
    char *real = NULL, *buf = NULL;
    size_t len = 0;
    int rc;

    memset(&mq, 0, sizeof(mq));
    mq.err = err;
    if (gethostname(mq.host, sizeof(mq.host)) < 0)
        snprintf(mq.host, sizeof(mq.host), "localhost");
    mq.host[sizeof(mq.host) - 1] = '\0';
    real = realpath(path, NULL);
    if (!real) {
        rc = -errno;
        fprintf(err, "%s: %s\n", path, strerror(errno));
        return rc;
    }
    char *slash = strrchr(real, '/');
    mq.dir = slash == real ? strdup("/") : strndup(real, (size_t)(slash - real));
    free(real);
    if (!mq.dir)
        return oom(&mq);

    rc = read_file(&mq, path, 0);
    if (rc == 0)
        rc = check_conns(&mq);
    if (rc == 0)
        rc = name_brokers(&mq);
    for (size_t i = 0; rc == 0 && i < mq.n_conns; i++)
        for (size_t k = 0; rc == 0 && k < mq.conns[i].n_topics; k++) {
            enum mq_dir d = mq.conns[i].topics[k].dir;
            if (d != MQ_IN)
                rc = add_route(&mq, i, k, true);
            if (rc == 0 && d != MQ_OUT)
                rc = add_route(&mq, i, k, false);
        }
    for (size_t i = 0; rc == 0 && i < mq.n_conns; i++) {
        struct mq_conn *c = &mq.conns[i];
        c->loop_out = c->loop_in = -1;
        if (c->version != MQC_V5 && (rc = loops(&mq, i, &c->loop_out, &c->loop_in)) > 0)
            rc = 0;
        else if (rc < 0)
            rc = oom(&mq);
    }
    if (rc == 0) {
        /* built whole first, so that an error leaves nothing half-printed */
        FILE *m = open_memstream(&buf, &len);
        if (!m) {
            rc = oom(&mq);
        } else {
            print_all(&mq, m);
            if (fclose(m) != 0 || !buf)
                rc = oom(&mq);
            else if (fwrite(buf, 1, len, out) != len || fflush(out) != 0)
                rc = -EIO;
        }
        free(buf);
    }
    mq_free(&mq);
    return rc;
}
