/*
 * setting.c: reading one libconfig setting for the loader (load.c): the one-line messages
 * "FILE:LINE: what is wrong", unknown keys with a "did you mean", typed values checked against
 * their ranges, and the files a setting names (resolved against the configuration's folder).
 * The int functions return 0 or a negative errno, having written the message for -EINVAL.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/internal.h"

/* ---- messages ----------------------------------------------------------------------------- */

/* Quotes s for a one-line message: control bytes, '"' and '\\' escaped, cut after 80 bytes. */
const char *cfg_shown(char *buf, size_t cap, const char *s)
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

unsigned cfg_line_of(const config_setting_t *s)
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
        int n = snprintf(ld->err, ld->errlen, "%s:%u: %s", file_of(ld, s),
                         line ? line : cfg_line_of(s), ld->who);
        if (n >= 0 && (size_t)n < ld->errlen)
            vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    }
    return -EINVAL;
}

int cfg_fail(struct ld *ld, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = failv(ld, s, 0, fmt, ap);
    va_end(ap);
    return rc;
}

int cfg_fail_at(struct ld *ld, unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = failv(ld, NULL, line ? line : 1, fmt, ap);
    va_end(ap);
    return rc;
}

int cfg_oom(struct ld *ld)
{
    if (ld->err && ld->errlen)
        snprintf(ld->err, ld->errlen, "%s: out of memory", ld->path);
    return -ENOMEM;
}

int cfg_dup_str(struct ld *ld, const char *s, char **out)
{
    *out = strdup(s);
    return *out ? 0 : cfg_oom(ld);
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
int cfg_check_keys(struct ld *ld, const config_setting_t *g, const char *const *keys)
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
            return cfg_fail(ld, m, "unknown key \"%s%s\" (did you mean \"%s%s\"?)", ld->kp, name,
                            ld->kp, near);
        return cfg_fail(ld, m, "unknown key \"%s%s\"", ld->kp, name);
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

int cfg_wrong_type(struct ld *ld, const config_setting_t *s, const char *want)
{
    return cfg_fail(ld, s, "%s%s must be %s, not %s", ld->kp, config_setting_name(s), want,
                    type_name(config_setting_type(s)));
}

static bool is_list(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_ARRAY ||
           config_setting_type(s) == CONFIG_TYPE_LIST;
}

/* One string or a list / array of them (url, no_proxy, alpn): *n entries, 1 for a string. */
int cfg_str_list(struct ld *ld, const config_setting_t *s, unsigned *n)
{
    if (config_setting_type(s) != CONFIG_TYPE_STRING && !is_list(s))
        return cfg_wrong_type(ld, s, "a string or a list of strings");
    *n = is_list(s) ? (unsigned)config_setting_length(s) : 1u;
    return 0;
}

const config_setting_t *cfg_str_entry(const config_setting_t *s, unsigned i)
{
    return is_list(s) ? config_setting_get_elem(s, i) : s;
}

/* A string value of s, at most STR_MAX bytes. */
int cfg_str_value(struct ld *ld, const config_setting_t *s, const char *shown_name,
                  const char **out)
{
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        if (shown_name)
            return cfg_fail(ld, s, "%s must be a string, not %s", shown_name,
                            type_name(config_setting_type(s)));
        return cfg_wrong_type(ld, s, "a string");
    }
    const char *v = config_setting_get_string(s);
    if (strlen(v) > STR_MAX)
        return cfg_fail(ld, s, "%s%s is longer than %u bytes", ld->kp,
                        shown_name ? shown_name : config_setting_name(s), STR_MAX);
    *out = v;
    return 0;
}

/* g.key as a string: *out = NULL when absent. */
int cfg_get_str(struct ld *ld, const config_setting_t *g, const char *key, const char **out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    *out = NULL;
    return s ? cfg_str_value(ld, s, NULL, out) : 0;
}

/* g.key as an integer in lo..hi; *out = dflt when absent. */
int cfg_get_int(struct ld *ld, const config_setting_t *g, const char *key, int64_t lo, int64_t hi,
                int64_t dflt, int64_t *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    *out = dflt;
    if (!s)
        return 0;
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
        return cfg_wrong_type(ld, s, "an integer");
    int64_t v = config_setting_get_int64(s);
    if (v < lo || v > hi) {
        if (hi == INT64_MAX)
            return cfg_fail(ld, s, "%s%s = %" PRId64 " is out of range (at least %" PRId64 ")",
                            ld->kp, key, v, lo);
        return cfg_fail(ld, s, "%s%s = %" PRId64 " is out of range (%" PRId64 "..%" PRId64 ")",
                        ld->kp, key, v, lo, hi);
    }
    *out = v;
    return 0;
}

int cfg_get_bool(struct ld *ld, const config_setting_t *g, const char *key, bool dflt, bool *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    *out = dflt;
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return cfg_wrong_type(ld, s, "true or false");
    *out = config_setting_get_bool(s) != 0;
    return 0;
}

/* g.key as a group (NULL when absent). */
int cfg_get_group(struct ld *ld, const config_setting_t *g, const char *key,
                  const config_setting_t **out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    *out = NULL;
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_GROUP)
        return cfg_wrong_type(ld, s, "a group { ... }");
    *out = s;
    return 0;
}

/* One of the words in choices (NULL-terminated): its index, or dflt when absent. */
int cfg_get_enum(struct ld *ld, const config_setting_t *g, const char *key,
                 const char *const *choices, const char *hint, int dflt, int *out)
{
    const char *v;
    int rc = cfg_get_str(ld, g, key, &v);
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
    return cfg_fail(ld, config_setting_get_member(g, key), "%s%s %s is not one of %s", ld->kp, key,
                    cfg_shown(b, sizeof(b), v), hint);
}

/* ---- paths and files ---------------------------------------------------------------------- */

int cfg_resolve(struct ld *ld, const config_setting_t *s, const char *p, char **out)
{
    if (!*p)
        return cfg_fail(ld, s, "%s%s must not be empty", ld->kp, config_setting_name(s));
    if (p[0] == '/')
        return cfg_dup_str(ld, p, out);
    if (asprintf(out, "%s/%s", ld->cfg->dir, p) < 0) {
        *out = NULL;
        return cfg_oom(ld);
    }
    return 0;
}

/* "x" or "x (/abs/x)" for messages about a file. */
static const char *shown_path(char *buf, size_t cap, const char *as_written, const char *resolved)
{
    char b[100];
    cfg_shown(b, sizeof(b), as_written);
    if (strcmp(as_written, resolved) == 0)
        snprintf(buf, cap, "%s", b);
    else
        snprintf(buf, cap, "%s (%s)", b, resolved);
    return buf;
}

/* g.key names a file that must exist and be readable now: its resolved path, or NULL if
 * absent. */
int cfg_get_file(struct ld *ld, const config_setting_t *g, const char *key, char **out)
{
    const char *v;
    int rc = cfg_get_str(ld, g, key, &v);
    *out = NULL;
    if (rc < 0 || !v)
        return rc;
    const config_setting_t *s = config_setting_get_member(g, key);
    if ((rc = cfg_resolve(ld, s, v, out)) < 0)
        return rc;
    char b[PATH_MAX + 120];
    int fd = open(*out, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return cfg_fail(ld, s, "%s%s %s: %s", ld->kp, key, shown_path(b, sizeof(b), v, *out),
                        strerror(errno));
    struct stat st;
    int e = fstat(fd, &st) < 0 ? errno : 0;
    close(fd);
    if (e)
        return cfg_fail(ld, s, "%s%s %s: %s", ld->kp, key, shown_path(b, sizeof(b), v, *out),
                        strerror(e));
    if (!S_ISREG(st.st_mode))
        return cfg_fail(ld, s, "%s%s %s: not a regular file", ld->kp, key,
                        shown_path(b, sizeof(b), v, *out));
    return 0;
}

/* The secret alone; one trailing "\n" or "\r\n" is ignored. The file must not be accessible by
 * group or others. what names the setting in messages ("password_file"). */
int cfg_read_secret_file(struct ld *ld, const config_setting_t *s, const char *v, const char *what,
                         char **out, size_t *out_len)
{
    char *path, pb[PATH_MAX + 120];
    int rc = cfg_resolve(ld, s, v, &path);
    if (rc < 0)
        return rc;
    shown_path(pb, sizeof(pb), v, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    free(path);
    if (fd < 0)
        return cfg_fail(ld, s, "%s%s %s: %s", ld->kp, what, pb, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return cfg_fail(ld, s, "%s%s %s: %s", ld->kp, what, pb, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cfg_fail(ld, s, "%s%s %s: not a regular file", ld->kp, what, pb);
    }
    if (st.st_mode & 077) {
        close(fd);
        return cfg_fail(ld, s,
                        "%s%s %s: permissions %04o, must not be accessible by group or "
                        "others (chmod 600)",
                        ld->kp, what, pb, (unsigned)(st.st_mode & 07777));
    }
    /* Read one byte past the limit (plus a possible "\r\n") to tell "too long" apart. */
    size_t cap = STR_MAX + 3, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return cfg_oom(ld);
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return cfg_fail(ld, s, "%s%s %s: %s", ld->kp, what, pb, strerror(e));
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
        return cfg_fail(ld, s, "%s%s %s: longer than %u bytes", ld->kp, what, pb, STR_MAX);
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

int cfg_read_password_file(struct ld *ld, const config_setting_t *s, const char *v,
                           struct relay_broker_config *b)
{
    return cfg_read_secret_file(ld, s, v, "password_file", &b->password, &b->password_len);
}
