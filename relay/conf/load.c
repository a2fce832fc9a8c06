/*
 * load.c: turns the libconfig file into a plain struct relay_config (SPEC.md, Configuration):
 * relay_config_load() and relay_config_cleanup(), and one parse_* per part of the file (the
 * brokers list is broker.c's).
 *
 * Everything is validated once, while loading: unknown keys, types and ranges as each setting is
 * read (setting.c); names, URLs, collisions across brokers and routes, templates and the static
 * loop check (validate.c). Every error is one line "FILE:LINE: what is wrong", naming the
 * setting's line and the broker or route concerned. Strings are copied out of libconfig before
 * config_destroy(); the result owns all its memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/internal.h"
#include "conf/load.h"
#include "route/template.h"

#define MAX_ROUTES 10000u
#define ID_MAX 64u /* relay.id */

/* ---- relay group -------------------------------------------------------------------------- */

static bool relay_id_ok(const char *id)
{
    return strlen(id) <= ID_MAX && cfg_word_chars(id, "_.-");
}

/* A bearer token (RFC 6750 b64token): 16 to 4096 of A-Z a-z 0-9 - . _ ~ + /, then '='s. */
static bool token_ok(const char *t, size_t n)
{
    size_t i = strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/");

    while (i < n && t[i] == '=')
        i++;
    return i == n && n >= 16 && n <= 4096;
}

/* relay.admin_token or relay.admin_token_file (read like a password_file): POST /-/reload's
 * bearer token. A secret: no message ever quotes it. */
static int parse_admin_token(struct ld *ld, const config_setting_t *g)
{
    struct relay_config *cfg = ld->cfg;
    const config_setting_t *s;
    const char *tok, *file;
    int rc;

    if ((rc = cfg_get_str(ld, g, "admin_token", &tok)) < 0 ||
        (rc = cfg_get_str(ld, g, "admin_token_file", &file)) < 0)
        return rc;
    if (tok && file)
        return cfg_fail(ld, config_setting_get_member(g, "admin_token_file"),
                        "relay.admin_token and relay.admin_token_file are exclusive: give one");
    if (tok) {
        if ((rc = cfg_dup_str(ld, tok, &cfg->admin_token)) < 0)
            return rc;
        cfg->admin_token_len = strlen(tok);
    } else if (file) {
        rc = cfg_read_secret_file(ld, config_setting_get_member(g, "admin_token_file"), file,
                                  "admin_token_file", &cfg->admin_token, &cfg->admin_token_len);
        if (rc < 0)
            return rc;
    } else {
        return 0;
    }
    s = config_setting_get_member(g, tok ? "admin_token" : "admin_token_file");
    if (strlen(cfg->admin_token) != cfg->admin_token_len ||
        !token_ok(cfg->admin_token, cfg->admin_token_len))
        return cfg_fail(ld, s,
                        "relay.%s: the token must be 16 to 4096 characters of A-Z a-z 0-9 - . _ ~ "
                        "+ / (then '=' padding), e.g. from \"openssl rand -hex 32\"",
                        tok ? "admin_token" : "admin_token_file");
    return 0;
}

static int parse_relay(struct ld *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"id",
                                       "log_level",
                                       "metrics",
                                       "drain_timeout",
                                       "max_hops",
                                       "batch_wait_us",
                                       "log_format",
                                       "admin_token",
                                       "admin_token_file",
                                       "proxy",
                                       "no_proxy",
                                       "state_dir",
                                       NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    static const char *const formats[] = {"text", "json", NULL};
    struct relay_config *cfg = ld->cfg;
    const config_setting_t *g;
    const char *v;
    char b[100];
    int64_t n;
    int rc, e;

    if ((rc = cfg_get_group(ld, root, "relay", &g)) < 0)
        return rc;
    cfg->log_level = RELAY_LOG_INFO;
    cfg->drain_timeout_ms = 5000;
    cfg->max_hops = 8;
    cfg->batch_wait_us = RELAY_BATCH_WAIT_US;
    ld->kp = "relay.";
    if (g) {
        if ((rc = cfg_check_keys(ld, g, keys)) < 0 || (rc = cfg_get_str(ld, g, "id", &v)) < 0)
            return rc;
        if (v && !relay_id_ok(v))
            return cfg_fail(ld, config_setting_get_member(g, "id"),
                            "relay.id %s must be 1..64 characters of A-Z a-z 0-9 _ . -",
                            cfg_shown(b, sizeof(b), v));
        if (v && (rc = cfg_dup_str(ld, v, &cfg->id)) < 0)
            return rc;
        if ((rc = cfg_get_enum(ld, g, "log_level", levels, "error, warn, info, debug",
                               RELAY_LOG_INFO, &e)) < 0)
            return rc;
        cfg->log_level = (enum relay_log_level)e;
        if ((rc = cfg_get_enum(ld, g, "log_format", formats, "text, json", RELAY_LOG_TEXT, &e)) < 0)
            return rc;
        cfg->log_format = (enum relay_log_format)e;
        if ((rc = parse_admin_token(ld, g)) < 0)
            return rc;
        if ((rc = cfg_get_str(ld, g, "metrics", &v)) < 0)
            return rc;
        if (v) {
            const config_setting_t *s = config_setting_get_member(g, "metrics");
            const char *host, *port;
            size_t hl, pl;
            bool br;
            if (!cfg_split_host_port(v, strlen(v), &host, &hl, &br, &port, &pl) || !port ||
                !cfg_host_ok(host, hl, br) || !cfg_port_ok(port, pl, &cfg->metrics_port))
                return cfg_fail(ld, s,
                                "relay.metrics %s must be \"HOST:PORT\" (e.g. \"127.0.0.1:9464\", "
                                "\"[::1]:9464\")",
                                cfg_shown(b, sizeof(b), v));
            if (!(cfg->metrics_host = strndup(host, hl)))
                return cfg_oom(ld);
        }
        if ((rc = cfg_get_int(ld, g, "drain_timeout", 0, 600000, 5000, &n)) < 0)
            return rc;
        cfg->drain_timeout_ms = (uint32_t)n;
        if ((rc = cfg_get_int(ld, g, "max_hops", 1, 64, 8, &n)) < 0)
            return rc;
        cfg->max_hops = (uint32_t)n;
        if ((rc = cfg_get_int(ld, g, "batch_wait_us", 0, 5000, RELAY_BATCH_WAIT_US, &n)) < 0)
            return rc;
        cfg->batch_wait_us = (uint32_t)n;
        if ((rc = cfg_parse_relay_proxy(ld, g)) < 0)
            return rc;
    }
    if ((rc = cfg_state_dir(ld, g)) < 0)
        return rc;
    ld->kp = "";
    if (!cfg->id) {
        char host[256];
        if (gethostname(host, sizeof(host)) < 0)
            host[0] = '\0';
        host[sizeof(host) - 1] = '\0';
        if (!relay_id_ok(host))
            return cfg_fail_at(ld, g ? cfg_line_of(g) : 1,
                               "the host name %s is not a valid relay id (1..64 characters of A-Z "
                               "a-z 0-9 _ . -): set relay.id",
                               cfg_shown(b, sizeof(b), host));
        if ((rc = cfg_dup_str(ld, host, &cfg->id)) < 0)
            return rc;
    }
    return 0;
}

/* ---- routes ------------------------------------------------------------------------------- */

static int find_broker(struct ld *ld, const config_setting_t *g, const char *key, size_t *out)
{
    const char *v;
    char bb[100];
    int rc = cfg_get_str(ld, g, key, &v);
    if (rc < 0)
        return rc;
    if (!v)
        return cfg_fail(ld, g, "%s is required", key);
    for (size_t i = 0; i < ld->cfg->n_brokers; i++) {
        if (strcmp(ld->cfg->brokers[i].name, v) == 0) {
            *out = i;
            return 0;
        }
    }
    return cfg_fail(ld, config_setting_get_member(g, key), "unknown broker %s",
                    cfg_shown(bb, sizeof(bb), v));
}

static int parse_filter(struct ld *ld, const config_setting_t *g, struct relay_route_config *r)
{
    const config_setting_t *s = config_setting_get_member(g, "filter");
    const char *v;
    char bb[100];
    int rc = cfg_get_str(ld, g, "filter", &v);
    if (rc < 0)
        return rc;
    if (!v)
        return cfg_fail(ld, g, "filter is required");
    size_t len = strlen(v);
    struct mqc_share sh;
    if (mqc_topic_share_parse((const uint8_t *)v, len, &sh) != MQC_OK ||
        sh.kind != MQC_SHARE_NONE || strncmp(v, "$share/", 7) == 0 ||
        strncmp(v, "$oshare/", 8) == 0) {
        bool ordered = strncmp(v, "$oshare/", 8) == 0;
        return cfg_fail(ld, s,
                        "filter %s is a shared-subscription form: write the plain filter and use "
                        "share = \"GROUP\"%s",
                        cfg_shown(bb, sizeof(bb), v), ordered ? " with ordered = true" : "");
    }
    rc = mqc_topic_filter_check((const uint8_t *)v, len);
    if (rc == MQC_EUTF8)
        return cfg_fail(ld, s, "filter %s is not valid UTF-8", cfg_shown(bb, sizeof(bb), v));
    if (rc != MQC_OK)
        return cfg_fail(ld, s,
                        "invalid filter %s ('+' and '#' must fill a whole level, '#' only as the "
                        "last one)",
                        cfg_shown(bb, sizeof(bb), v));
    return cfg_dup_str(ld, v, &r->filter);
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

    r->line = (int)cfg_line_of(g);
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
    snprintf(ld->who, sizeof(ld->who), "route %s: ", cfg_shown(bb, sizeof(bb), label));

    if ((rc = cfg_check_keys(ld, g, keys)) < 0 || (rc = cfg_get_str(ld, g, "name", &name)) < 0)
        return rc;
    if (name && (!*name || !cfg_printable(name) ||
                 mqc_utf8_check((const uint8_t *)name, strlen(name)) != MQC_OK))
        return cfg_fail(ld, ns, "name must be non-empty UTF-8 text without control characters");
    if ((rc = find_broker(ld, g, "from", &r->from)) < 0 ||
        (rc = find_broker(ld, g, "to", &r->to)) < 0)
        return rc;
    if (r->from == r->to)
        return cfg_fail(ld, ts, "from and to are both \"%s\": a route joins two different brokers",
                        ld->cfg->brokers[r->from].name);
    if (name)
        rc = cfg_dup_str(ld, name, &r->name);
    else if (asprintf(&r->name, "%s->%s#%zu", ld->cfg->brokers[r->from].name,
                      ld->cfg->brokers[r->to].name, idx) < 0) {
        r->name = NULL;
        rc = cfg_oom(ld);
    }
    if (rc < 0 || (rc = parse_filter(ld, g, r)) < 0)
        return rc;

    if ((rc = cfg_get_str(ld, g, "share", &v)) < 0)
        return rc;
    if (v) {
        if (!cfg_word_chars(v, "_-"))
            return cfg_fail(ld, config_setting_get_member(g, "share"),
                            "share %s must be letters, digits, '_' or '-'",
                            cfg_shown(bb, sizeof(bb), v));
        if ((rc = cfg_dup_str(ld, v, &r->share)) < 0)
            return rc;
    }
    if ((rc = cfg_get_bool(ld, g, "ordered", false, &r->ordered)) < 0)
        return rc;
    /* "$share/G/F" goes on the wire as one MQTT string */
    if (r->share && (r->ordered ? 8 : 7) + strlen(r->share) + 1 + strlen(r->filter) > STR_MAX)
        return cfg_fail(ld, config_setting_get_member(g, "share"),
                        "the subscription \"$%sshare/GROUP/FILTER\" is longer than %u bytes",
                        r->ordered ? "o" : "", STR_MAX);
    if (r->ordered && !r->share)
        return cfg_fail(
            ld, config_setting_get_member(g, "ordered"),
            "ordered = true needs share = \"GROUP\" (it selects \"$oshare/GROUP/...\")");
    if ((rc = cfg_get_int(ld, g, "qos", 0, 2, 1, &n)) < 0)
        return rc;
    r->qos = (uint8_t)n;

    if ((rc = cfg_get_str(ld, g, "topic", &v)) < 0)
        return rc;
    if ((rc = cfg_dup_str(ld, v ? v : "${topic}", &r->topic)) < 0)
        return rc;
    rc = relay_tpl_compile(tpl, r->topic, r->filter, terr, sizeof(terr));
    if (rc == -ENOMEM)
        return cfg_oom(ld);
    if (rc < 0)
        return cfg_fail(ld, config_setting_get_member(g, "topic"), "topic %s: %s",
                        cfg_shown(bb, sizeof(bb), r->topic), terr);

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
            return cfg_fail(ld, oq, "out_qos must be \"same\", 0, 1 or 2");
    }
    if ((rc = cfg_get_enum(ld, g, "retain", retain, "\"keep\", \"clear\"", 0, &e)) < 0)
        return rc;
    r->retain = (enum relay_retain_mode)e;
    if ((rc = cfg_get_enum(ld, g, "properties", props, "\"forward\", \"drop\"", 0, &e)) < 0)
        return rc;
    r->properties = (enum relay_props_mode)e;
    return 0;
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
        return cfg_wrong_type(ld, list, "a list ( { ... }, { ... } )");
    unsigned n = (unsigned)config_setting_length(list);
    if (n > MAX_ROUTES)
        return cfg_fail(ld, list, "%u routes, at most %u are allowed", n, MAX_ROUTES);
    if (n == 0)
        return 0;
    cfg->routes = calloc(n, sizeof(*cfg->routes));
    tpl = calloc(n, sizeof(*tpl));
    if (!cfg->routes || !tpl) {
        free(tpl);
        return cfg_oom(ld);
    }
    unsigned done = 0;
    for (; done < n; done++) {
        const config_setting_t *g = config_setting_get_elem(list, done);
        cfg->n_routes = done + 1;
        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            rc = cfg_fail(ld, g, "each route must be a group { ... }");
            break;
        }
        if ((rc = parse_route(ld, g, done, &cfg->routes[done], &tpl[done])) < 0)
            break;
    }
    ld->who[0] = '\0';
    if (rc == 0)
        rc = cfg_check_route_names(ld);
    if (rc == 0)
        rc = cfg_check_loops(ld, tpl);
    for (unsigned i = 0; i < n; i++)
        relay_tpl_cleanup(&tpl[i]);
    free(tpl);
    return rc;
}

/* ---- load / cleanup ----------------------------------------------------------------------- */

static int config_dir(struct ld *ld, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!d)
        return cfg_oom(ld);
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
    rc = cfg_read_text(&ld, fd, &text);
    close(fd);
    if (rc < 0) {
        if (err && errlen && !err[0])
            snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if ((rc = cfg_dup_str(&ld, path, &cfg->path)) < 0 || (rc = config_dir(&ld, path)) < 0) {
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
        if ((rc = cfg_check_keys(&ld, root, top_keys)) == 0 && (rc = parse_relay(&ld, root)) == 0 &&
            (rc = cfg_parse_brokers(&ld, root)) == 0)
            rc = parse_routes(&ld, root);
    }
    config_destroy(&lc);
    free(text);
    if (rc < 0)
        relay_config_cleanup(cfg);
    return rc;
}

void relay_config_cleanup(struct relay_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_brokers; i++)
        cfg_broker_cleanup(&cfg->brokers[i]);
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
    cfg_proxy_cleanup(&cfg->proxy);
    for (size_t i = 0; i < cfg->n_no_proxy; i++)
        free(cfg->no_proxy[i]);
    free(cfg->no_proxy);
    free(cfg->state_dir);
    free(cfg->state_dir_why);
    if (cfg->admin_token)
        memset(cfg->admin_token, 0, cfg->admin_token_len);
    free(cfg->admin_token);
    memset(cfg, 0, sizeof(*cfg));
}
