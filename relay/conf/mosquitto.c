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
 * Nothing here talks to the network or to libconfig: the output is text, and `--check`
 * (conf/load.c) is what validates it.
 *
 * This file reads the Mosquitto file (tokens, option values, listeners, include_dir) into a
 * struct mq (mosquitto_internal.h) and builds the routes; the options of a bridge section are
 * read in mosquitto_bridge.c, and the output is printed by mosquitto_print.c.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/mosquitto.h"
#include "conf/mosquitto_internal.h"
#include "core/relay.h"
#include "route/template.h"

/* ---- messages and memory ------------------------------------------------------------------- */

int mq_fail(struct mq *mq, struct mq_at at, const char *fmt, ...)
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

int mq_oom(struct mq *mq)
{
    fprintf(mq->err, "mqtt-relay: out of memory\n");
    return -ENOMEM;
}

/* Appends one element of size sz to *arr (of *n): a pointer to it (zeroed), or NULL. */
void *mq_grow(void *arr, size_t *n, size_t sz)
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
        return mq_oom(mq);
    slot = mq_grow(arr, n, sizeof(char *));
    if (!slot) {
        free(s);
        return mq_oom(mq);
    }
    *slot = s;
    return 0;
}

char *mq_fmt_str(const char *fmt, ...)
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
const char *mq_where(char *buf, size_t cap, struct mq_at at)
{
    const char *slash = strrchr(at.file, '/');
    snprintf(buf, cap, "%s:%d", slash ? slash + 1 : at.file, at.line);
    return buf;
}

int mq_note(struct mq *mq, struct mq_conn *c, const char *fmt, ...)
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
char *mq_next_tok(char **p)
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
char *mq_rest_of(char **p)
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

int mq_get_bool(struct mq *mq, struct mq_at at, const char *name, char **p, int *out)
{
    char *v = mq_next_tok(p);
    if (!v)
        return mq_fail(mq, at, "empty %s value", name);
    if (!strcmp(v, "true") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "0"))
        *out = 0;
    else
        return mq_fail(mq, at, "invalid %s value \"%s\" (true or false)", name, v);
    return 0;
}

int mq_get_uint(struct mq *mq, struct mq_at at, const char *name, const char *v, long max, int *out)
{
    char *end;
    long n;
    if (!v)
        return mq_fail(mq, at, "empty %s value", name);
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 0 || n > max)
        return mq_fail(mq, at, "invalid %s value \"%s\" (0..%ld)", name, v, max);
    *out = (int)n;
    return 0;
}

/* A string option: the rest of the line, once per section (Mosquitto refuses duplicates). */
int mq_get_string(struct mq *mq, struct mq_at at, const char *name, char **p, char **out)
{
    char *v = mq_rest_of(p);
    if (!*v)
        return mq_fail(mq, at, "empty %s value", name);
    if (*out)
        return mq_fail(mq, at, "duplicate %s value", name);
    if (!(*out = strdup(v)))
        return mq_oom(mq);
    return 0;
}

/* A path option: absolute, or taken relative to the main file's directory. */
int mq_get_path(struct mq *mq, struct mq_at at, const char *name, char **p, char **out)
{
    char *v = NULL;
    int rc = mq_get_string(mq, at, name, p, &v);
    if (rc < 0)
        return rc;
    if (v[0] == '/') {
        *out = v;
        return 0;
    }
    *out = mq_fmt_str("%s/%s", mq->dir, v);
    free(v);
    return *out ? 0 : mq_oom(mq);
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
        if ((rc = mq_get_uint(mq, at, name, mq_next_tok(p), 65535, &n)) < 0)
            return rc;
        struct mq_listener *l = mq_grow(&mq->lis, &mq->n_lis, sizeof(*l));
        if (!l)
            return mq_oom(mq);
        l->at = at;
        l->port = (unsigned)n;
        if ((v = mq_next_tok(p)) && v[0] != '#' && !(l->host = strdup(v)))
            return mq_oom(mq);
        l->unix_socket = n == 0;
        *cur = l;
        return 0;
    }
    struct mq_listener *l = *cur ? *cur : &mq->deflis;
    if (!strcmp(name, "port")) {
        if ((rc = mq_get_uint(mq, at, name, mq_next_tok(p), 65535, &n)) < 0)
            return rc;
        mq->deflis.port = (unsigned)n; /* the last one counts (Mosquitto warns) */
        mq->deflis.at = at;
        mq->have_deflis = n > 0;
    } else if (!strcmp(name, "bind_address")) {
        v = mq_rest_of(p);
        free(mq->deflis.host);
        if (!(mq->deflis.host = strdup(v)))
            return mq_oom(mq);
    } else if (!strcmp(name, "protocol")) {
        v = mq_next_tok(p);
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
    char *full = dir[0] == '/' ? strdup(dir) : mq_fmt_str("%s/%s", mq->dir, dir);
    if (!full)
        return mq_oom(mq);
    DIR *d = opendir(full);
    if (!d) {
        rc = mq_fail(mq, at, "include_dir %s: %s", full, strerror(errno));
        free(full);
        return rc;
    }
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len > 5 && !strcmp(de->d_name + len - 5, ".conf") &&
            (rc = push_str(mq, &names, &n, mq_fmt_str("%s/%s", full, de->d_name))) < 0)
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
        return mq_oom(mq);
    name = mq_next_tok(&p);
    if (!name || name[0] == '#') /* blank, or an indented comment (Mosquitto would refuse it) */
        goto out;
    if (!strcmp(name, "connection")) {
        char *v = mq_next_tok(&p);
        if (!v) {
            rc = mq_fail(mq, at, "empty connection value");
            goto out;
        }
        for (size_t i = 0; i < mq->n_conns; i++)
            if (!strcmp(mq->conns[i].name, v)) {
                rc = mq_fail(mq, at, "duplicate bridge name \"%s\" (first at %s:%d)", v,
                             mq->conns[i].at.file, mq->conns[i].at.line);
                goto out;
            }
        struct mq_conn *c = mq_grow(&mq->conns, &mq->n_conns, sizeof(*c));
        if (!c || !(c->name = strdup(v))) {
            rc = mq_oom(mq);
            goto out;
        }
        c->at = at;
        c->cleansession = c->local_cleansession = c->keepalive = c->notifications = -1;
        c->notif_local_only = c->insecure = c->outgoing_retain = c->try_private = -1;
        *cur_conn = (long)mq->n_conns - 1;
    } else if (mq_is_bridge_option(name)) {
        if (*cur_conn < 0)
            rc = mq_fail(mq, at, "%s outside a bridge: no connection line before it in this file",
                         name);
        else
            rc = mq_bridge_option(mq, at, &mq->conns[*cur_conn], name, line, &p);
    } else if (!strcmp(name, "include_dir")) {
        if (level == 0) { /* Mosquitto follows include_dir in the main file only */
            char *v = mq_rest_of(&p);
            rc = *v ? include_dir(mq, at, v) : mq_fail(mq, at, "empty include_dir value");
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

bool mq_same_prefix(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* The route's destination topic template: dst + pattern with each '+' level as ${1}..${9} and
 * a trailing '#' as ${#}; "${topic}" when both prefixes are the same (nothing to remap). NULL
 * (with *why set) when a template cannot express it. */
static char *make_template(const struct mq_topic *t, const char *src, const char *dst,
                           const char **why)
{
    if (mq_same_prefix(src, dst))
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
    struct mq_route *r = mq_grow(&mq->routes, &mq->n_routes, sizeof(*r));
    if (!r)
        return mq_oom(mq);
    r->conn = ci;
    r->topic = ti;
    r->out = out;
    r->name = mq_fmt_str("%s-%s-%zu", c->bname, out ? "out" : "in", ti + 1);
    r->filter = mq_fmt_str("%s%s", src ? src : "", t->pattern ? t->pattern : "");
    r->tpl = make_template(t, src, dst, &why);
    if (!r->tpl && why)
        return mq_fail(mq, t->at, "cannot convert this topic line: %s", why);
    if (!r->name || !r->filter || !r->tpl)
        return mq_oom(mq);
    char err[200];
    struct relay_tpl tpl;
    int rc = relay_tpl_compile(&tpl, r->tpl, r->filter, err, sizeof(err));
    relay_tpl_cleanup(&tpl);
    if (rc == -EINVAL)
        return mq_fail(mq, t->at, "cannot convert this topic line: template \"%s\": %s", r->tpl,
                       err);
    return rc < 0 ? mq_oom(mq) : 0;
}

/* True when what an out route writes to the remote can match an in route's filter there: the
 * loop guard then needs MQTT 5 on the remote (SPEC "Loop guard"; conf/validate.c refuses it on
 * 3.x). */
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
            return mq_oom(mq);
        for (char *s = base; *s; s++)
            if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
                *s = '-';
        for (unsigned k = 1;; k++) {
            char *n = k == 1 ? strdup(base) : mq_fmt_str("%s-%u", base, k);
            bool taken = !n || !strcmp(n, LOCAL_NAME);
            for (size_t j = 0; n && !taken && j < i; j++)
                taken = !strcmp(mq->conns[j].bname, n);
            if (!n) {
                free(base);
                return mq_oom(mq);
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
        free(c->alpn);
        free(c->tls_version);
        free(c->bind_address);
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
        return mq_fail(mq, at, "no bridge: no \"connection\" line, nothing to convert");
    for (size_t i = 0; i < mq->n_conns; i++) {
        const struct mq_conn *c = &mq->conns[i];
        if (!c->n_addrs)
            return mq_fail(mq, c->at, "connection \"%s\" has no address (Mosquitto refuses it too)",
                           c->name);
        if (!c->n_topics)
            return mq_fail(mq, c->at,
                           "connection \"%s\" has no topic line (Mosquitto refuses it too)",
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
        return mq_oom(&mq);

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
            rc = mq_oom(&mq);
    }
    if (rc == 0) {
        /* built whole first, so that an error leaves nothing half-printed */
        FILE *m = open_memstream(&buf, &len);
        if (!m) {
            rc = mq_oom(&mq);
        } else {
            mq_print_all(&mq, m);
            if (fclose(m) != 0 || !buf)
                rc = mq_oom(&mq);
            else if (fwrite(buf, 1, len, out) != len || fflush(out) != 0)
                rc = -EIO;
        }
        free(buf);
    }
    mq_free(&mq);
    return rc;
}
