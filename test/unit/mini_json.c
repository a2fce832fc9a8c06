/* mini_json.c: a strict little JSON reader for tests (see mini_json.h). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mini_json.h"

struct rd {
    const char *p, *end, *start;
    char *err;
    size_t errlen;
    int depth;
};

static struct mj *fail(struct rd *r, const char *what)
{
    if (r->err && !r->err[0])
        snprintf(r->err, r->errlen, "%s at offset %zu", what, (size_t)(r->p - r->start));
    return NULL;
}

static void ws(struct rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static struct mj *value(struct rd *r);

static int hex4(struct rd *r, unsigned *out)
{
    unsigned v = 0;

    if (r->end - r->p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = *r->p++;

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(char *buf, size_t *n, unsigned cp)
{
    if (cp < 0x80) {
        buf[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        buf[(*n)++] = (char)(0xC0 | cp >> 6);
        buf[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        buf[(*n)++] = (char)(0xE0 | cp >> 12);
        buf[(*n)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        buf[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        buf[(*n)++] = (char)(0xF0 | cp >> 18);
        buf[(*n)++] = (char)(0x80 | (cp >> 12 & 0x3F));
        buf[(*n)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        buf[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* A string literal at r->p (the opening quote) into a malloc'ed buffer. */
static char *string(struct rd *r, size_t *len)
{
    const char *q = ++r->p;
    char *buf;
    size_t n = 0;

    while (q < r->end && *q != '"')
        q += *q == '\\' ? 2 : 1;
    if (q >= r->end) {
        fail(r, "unterminated string");
        return NULL;
    }
    buf = malloc((size_t)(q - r->p) * 2 + 1);
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p++;
        unsigned cp, lo;

        if (c < 0x20) {
            free(buf);
            fail(r, "control character in a string");
            return NULL;
        }
        if (c != '\\') {
            buf[n++] = (char)c;
            continue;
        }
        if (r->p >= r->end)
            break;
        switch (*r->p++) {
        case '"':
            buf[n++] = '"';
            break;
        case '\\':
            buf[n++] = '\\';
            break;
        case '/':
            buf[n++] = '/';
            break;
        case 'b':
            buf[n++] = '\b';
            break;
        case 'f':
            buf[n++] = '\f';
            break;
        case 'n':
            buf[n++] = '\n';
            break;
        case 'r':
            buf[n++] = '\r';
            break;
        case 't':
            buf[n++] = '\t';
            break;
        case 'u':
            if (hex4(r, &cp)) {
                free(buf);
                fail(r, "bad \\u escape");
                return NULL;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u') {
                    free(buf);
                    fail(r, "lone high surrogate");
                    return NULL;
                }
                r->p += 2;
                if (hex4(r, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    free(buf);
                    fail(r, "bad low surrogate");
                    return NULL;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(buf);
                fail(r, "lone low surrogate");
                return NULL;
            }
            put_utf8(buf, &n, cp);
            break;
        default:
            free(buf);
            fail(r, "bad escape");
            return NULL;
        }
    }
    r->p++; /* the closing quote */
    buf[n] = '\0';
    *len = n;
    return buf;
}

static struct mj *number(struct rd *r)
{
    const char *s = r->p;
    char tmp[64];
    struct mj *v;

    if (r->p < r->end && *r->p == '-')
        r->p++;
    if (r->p < r->end && *r->p == '0')
        r->p++;
    else if (r->p < r->end && *r->p >= '1' && *r->p <= '9')
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    else
        return fail(r, "bad number");
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return fail(r, "bad fraction");
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return fail(r, "bad exponent");
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if ((size_t)(r->p - s) >= sizeof(tmp))
        return fail(r, "number too long");
    memcpy(tmp, s, (size_t)(r->p - s));
    tmp[r->p - s] = '\0';
    v = calloc(1, sizeof(*v));
    v->type = MJ_NUM;
    v->num = strtod(tmp, NULL);
    return v;
}

/* Appends item (and key, for an object; both taken). -1 on a duplicate name (both freed). */
static int push(struct mj *v, char *key, struct mj *item)
{
    if (v->type == MJ_OBJ) {
        for (size_t i = 0; i < v->n; i++) {
            if (!strcmp(v->keys[i], key)) {
                free(key);
                mj_free(item);
                return -1;
            }
        }
        v->keys = realloc(v->keys, (v->n + 1) * sizeof(*v->keys));
        v->keys[v->n] = key;
    }
    v->items = realloc(v->items, (v->n + 1) * sizeof(*v->items));
    v->items[v->n++] = item;
    return 0;
}

static struct mj *container(struct rd *r, bool obj)
{
    struct mj *v = calloc(1, sizeof(*v));
    char close = obj ? '}' : ']';

    v->type = obj ? MJ_OBJ : MJ_ARR;
    r->p++;
    ws(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return v;
    }
    for (;;) {
        char *k = NULL;
        size_t klen;
        struct mj *item;

        ws(r);
        if (obj) {
            if (r->p >= r->end || *r->p != '"' || !(k = string(r, &klen))) {
                mj_free(v);
                return fail(r, "member name expected");
            }
            ws(r);
            if (r->p >= r->end || *r->p != ':') {
                free(k);
                mj_free(v);
                return fail(r, "':' expected");
            }
            r->p++;
        }
        item = value(r);
        if (!item) {
            free(k);
            mj_free(v);
            return NULL;
        }
        if (push(v, k, item)) {
            mj_free(v);
            return fail(r, "duplicate member name");
        }
        ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == close) {
            r->p++;
            return v;
        }
        mj_free(v);
        return fail(r, obj ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static struct mj *literal(struct rd *r, const char *word, enum mj_type t, bool b)
{
    size_t n = strlen(word);
    struct mj *v;

    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n))
        return fail(r, "unexpected character");
    r->p += n;
    v = calloc(1, sizeof(*v));
    v->type = t;
    v->b = b;
    return v;
}

static struct mj *value(struct rd *r)
{
    struct mj *v;

    ws(r);
    if (r->p >= r->end)
        return fail(r, "value expected");
    if (++r->depth > 64)
        return fail(r, "too deep");
    switch (*r->p) {
    case '{':
        v = container(r, true);
        break;
    case '[':
        v = container(r, false);
        break;
    case '"':
        v = calloc(1, sizeof(*v));
        v->type = MJ_STR;
        if (!(v->str = string(r, &v->str_len))) {
            free(v);
            v = NULL;
        }
        break;
    case 't':
        v = literal(r, "true", MJ_BOOL, true);
        break;
    case 'f':
        v = literal(r, "false", MJ_BOOL, false);
        break;
    case 'n':
        v = literal(r, "null", MJ_NULL, false);
        break;
    default:
        v = number(r);
    }
    r->depth--;
    return v;
}

struct mj *mj_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct rd r = {text, text + len, text, err, errlen, 0};
    struct mj *v;

    if (err && errlen)
        err[0] = '\0';
    v = value(&r);
    if (!v)
        return NULL;
    ws(&r);
    if (r.p != r.end) {
        mj_free(v);
        return fail(&r, "text after the value");
    }
    return v;
}

void mj_free(struct mj *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        mj_free(v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    free(v);
}

const struct mj *mj_get(const struct mj *obj, const char *key)
{
    if (!obj || obj->type != MJ_OBJ)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key))
            return obj->items[i];
    return NULL;
}

const struct mj *mj_path(const struct mj *v, const char *path)
{
    char part[128];

    while (v && *path) {
        size_t n = strcspn(path, ".");

        if (n >= sizeof(part))
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        path += n + (path[n] == '.');
        if (v->type == MJ_ARR) {
            char *end;
            unsigned long i = strtoul(part, &end, 10);

            v = *end || i >= v->n ? NULL : v->items[i];
        } else {
            v = mj_get(v, part);
        }
    }
    return v;
}

const char *mj_str(const struct mj *v, const char *path)
{
    v = mj_path(v, path);
    return v && v->type == MJ_STR ? v->str : NULL;
}

double mj_num(const struct mj *v, const char *path)
{
    v = mj_path(v, path);
    return v && v->type == MJ_NUM ? v->num : -1e300;
}
