#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "mqc_testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const struct {
    int err;
    const char *name;
} err_names[] = {
    {MQC_OK, "MQC_OK"},
    {MQC_AGAIN, "MQC_AGAIN"},
    {MQC_EMALFORMED, "MQC_EMALFORMED"},
    {MQC_EPROTOCOL, "MQC_EPROTOCOL"},
    {MQC_ETOOBIG, "MQC_ETOOBIG"},
    {MQC_ENOSPC, "MQC_ENOSPC"},
    {MQC_EUTF8, "MQC_EUTF8"},
    {MQC_EINVAL, "MQC_EINVAL"},
    {MQC_EVARINT, "MQC_EVARINT"},
    {MQC_EFLAGS, "MQC_EFLAGS"},
    {MQC_EQOS, "MQC_EQOS"},
    {MQC_EPACKETID, "MQC_EPACKETID"},
    {MQC_ETOPIC, "MQC_ETOPIC"},
    {MQC_EFILTER, "MQC_EFILTER"},
    {MQC_EPROPID, "MQC_EPROPID"},
    {MQC_EPROPDUP, "MQC_EPROPDUP"},
    {MQC_EPROPVAL, "MQC_EPROPVAL"},
    {MQC_EREASON, "MQC_EREASON"},
    {MQC_ETRAILING, "MQC_ETRAILING"},
    {MQC_EV5ONLY, "MQC_EV5ONLY"},
    {MQC_EPROTONAME, "MQC_EPROTONAME"},
    {MQC_ETYPE, "MQC_ETYPE"},
    {MQC_EEMPTY, "MQC_EEMPTY"},
    {MQC_EWILL, "MQC_EWILL"},
    {MQC_ESUBOPTS, "MQC_ESUBOPTS"},
};

const char *mqt_err_name(int err)
{
    for (size_t i = 0; i < sizeof err_names / sizeof err_names[0]; i++)
        if (err_names[i].err == err)
            return err_names[i].name;
    return NULL;
}

int mqt_err_parse(const char *name, int *err)
{
    if (strcmp(name, "OK") == 0) {
        *err = MQC_OK;
        return 0;
    }
    for (size_t i = 0; i < sizeof err_names / sizeof err_names[0]; i++)
        if (strcmp(err_names[i].name, name) == 0) {
            *err = err_names[i].err;
            return 0;
        }
    return -1;
}

void mqt_assert_err(int got, int want, const char *expr, const char *file, int line)
{
    if (got == want)
        return;
    const char *g = mqt_err_name(got), *w = mqt_err_name(want);
    print_error("%s returned %s (%d), expected %s (%d)\n", expr, g ? g : "?", got, w ? w : "?",
                want);
    _fail(file, line);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int mqt_hex_parse(const char *hex, uint8_t *out, size_t cap, size_t *n)
{
    size_t k = 0;
    int hi = -1;
    for (const char *s = hex; *s; s++) {
        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
            continue;
        int v = hexval((unsigned char)*s);
        if (v < 0)
            return -1;
        if (hi < 0) {
            hi = v;
            continue;
        }
        if (k >= cap)
            return -1;
        out[k++] = (uint8_t)(hi << 4 | v);
        hi = -1;
    }
    if (hi >= 0)
        return -1;
    *n = k;
    return 0;
}

size_t mqt_hex_at(const char *hex, uint8_t *out, size_t cap, const char *file, int line)
{
    size_t n = 0;
    if (mqt_hex_parse(hex, out, cap, &n) != 0) {
        print_error("bad hex test input (or more than %zu bytes): %s\n", cap, hex);
        _fail(file, line);
    }
    return n;
}

const uint8_t *mqt_guard_put(struct mqt_guard *g, const uint8_t *data, size_t len)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + ps - 1) / ps * ps;
    mqt_guard_free(g);
    g->maplen = body + ps;
    void *m = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        abort();
    }
    g->map = m;
    if (mprotect(g->map + body, ps, PROT_NONE) != 0) {
        perror("mprotect");
        abort();
    }
    uint8_t *p = g->map + body - len;
    if (len)
        memcpy(p, data, len);
    return p;
}

void mqt_guard_free(struct mqt_guard *g)
{
    if (g->map)
        munmap(g->map, g->maplen);
    g->map = NULL;
    g->maplen = 0;
}

struct mqc_bytes mqt_s(const char *s)
{
    struct mqc_bytes b = {(const uint8_t *)s, strlen(s)};
    return b;
}

static void pb_put(struct mqt_props *b, const struct mqc_prop *p)
{
    int rc = mqc_prop_put(p, b->buf, sizeof b->buf, &b->len);
    if (rc != MQC_OK) {
        print_error("mqc_prop_put(id 0x%02x) returned %d\n", p->id, rc);
        fail();
    }
}

void mqt_pb_num(struct mqt_props *b, uint8_t id, uint32_t v)
{
    struct mqc_prop p = {.id = id, .num = v};
    pb_put(b, &p);
}

void mqt_pb_str(struct mqt_props *b, uint8_t id, const char *s)
{
    struct mqc_prop p = {.id = id, .str = mqt_s(s)};
    pb_put(b, &p);
}

void mqt_pb_bin(struct mqt_props *b, uint8_t id, const void *data, size_t n)
{
    struct mqc_prop p = {.id = id, .str = {data, n}};
    pb_put(b, &p);
}

void mqt_pb_pair(struct mqt_props *b, const char *name, const char *value)
{
    struct mqc_prop p = {.id = MQC_PROP_USER, .str = mqt_s(name), .val = mqt_s(value)};
    pb_put(b, &p);
}

struct mqc_props mqt_pb(const struct mqt_props *b)
{
    struct mqc_props p = {b->len ? b->buf : NULL, b->len};
    return p;
}

/* ---- packet comparison ------------------------------------------------------------------ */

struct cmp {
    const char *file;
    int line;
    const char *what; /* packet type name */
};

static void cmp_fail(const struct cmp *c, const char *field, const char *detail)
{
    print_error("%s.%s differs%s%s\n", c->what, field, detail ? ": " : "", detail ? detail : "");
    _fail(c->file, c->line);
}

static void cmp_num(const struct cmp *c, const char *field, unsigned long want, unsigned long got)
{
    if (want != got) {
        char d[96];
        snprintf(d, sizeof d, "expected %lu, got %lu", want, got);
        cmp_fail(c, field, d);
    }
}

static void cmp_mem(const struct cmp *c, const char *field, const uint8_t *wp, size_t wl,
                    const uint8_t *gp, size_t gl)
{
    char d[96];
    if (wl != gl) {
        snprintf(d, sizeof d, "length expected %zu, got %zu", wl, gl);
        cmp_fail(c, field, d);
    }
    if (wl && (wp == NULL || gp == NULL))
        cmp_fail(c, field, "NULL pointer with a non-zero length");
    if (wl && memcmp(wp, gp, wl) != 0)
        cmp_fail(c, field, "content");
}

static void cmp_bytes(const struct cmp *c, const char *field, struct mqc_bytes w,
                      struct mqc_bytes g)
{
    cmp_mem(c, field, w.p, w.len, g.p, g.len);
}

static void cmp_props(const struct cmp *c, const char *field, struct mqc_props w,
                      struct mqc_props g)
{
    cmp_mem(c, field, w.p, w.len, g.p, g.len);
}

/* Entry i of a SUBSCRIBE, from its array (as built) or by walking raw (as decoded). */
static void sub_entries(const struct cmp *c, const struct mqc_subscribe *s, uint8_t version,
                        struct mqc_sub *out, size_t max, size_t *n)
{
    if (s->subs) {
        if (s->count > max)
            cmp_fail(c, "count", "too many entries for the comparison");
        memcpy(out, s->subs, s->count * sizeof *out);
        *n = s->count;
        return;
    }
    size_t off = 0, k = 0;
    int rc;
    while ((rc = mqc_subscribe_next(s, version, &off, &out[k])) == MQC_OK) {
        if (++k >= max)
            cmp_fail(c, "raw", "walk does not end");
    }
    if (rc != MQC_AGAIN)
        cmp_fail(c, "raw", "mqc_subscribe_next failed on a decoded packet");
    *n = k;
}

static void unsub_entries(const struct cmp *c, const struct mqc_unsubscribe *u,
                          struct mqc_bytes *out, size_t max, size_t *n)
{
    if (u->filters) {
        if (u->count > max)
            cmp_fail(c, "count", "too many entries for the comparison");
        memcpy(out, u->filters, u->count * sizeof *out);
        *n = u->count;
        return;
    }
    size_t off = 0, k = 0;
    int rc;
    while ((rc = mqc_unsubscribe_next(u, &off, &out[k])) == MQC_OK) {
        if (++k >= max)
            cmp_fail(c, "raw", "walk does not end");
    }
    if (rc != MQC_AGAIN)
        cmp_fail(c, "raw", "mqc_unsubscribe_next failed on a decoded packet");
    *n = k;
}

#define MAX_ENTRIES 64

void mqt_assert_packet_eq(const struct mqc_packet *want, const struct mqc_packet *got,
                          uint8_t version, const char *file, int line)
{
    struct cmp c = {file, line, mqc_type_name(want->type)};
    cmp_num(&c, "type", want->type, got->type);
    switch (want->type) {
    case MQC_CONNECT: {
        const struct mqc_connect *w = &want->u.connect, *g = &got->u.connect;
        cmp_num(&c, "version", w->version, g->version);
        cmp_num(&c, "bridge", w->bridge, g->bridge);
        cmp_num(&c, "clean_start", w->clean_start, g->clean_start);
        cmp_num(&c, "keepalive", w->keepalive, g->keepalive);
        cmp_props(&c, "props", w->props, g->props);
        cmp_bytes(&c, "client_id", w->client_id, g->client_id);
        cmp_num(&c, "will", w->will, g->will);
        cmp_num(&c, "will_qos", w->will_qos, g->will_qos);
        cmp_num(&c, "will_retain", w->will_retain, g->will_retain);
        cmp_props(&c, "will_props", w->will_props, g->will_props);
        cmp_bytes(&c, "will_topic", w->will_topic, g->will_topic);
        cmp_bytes(&c, "will_payload", w->will_payload, g->will_payload);
        cmp_num(&c, "has_username", w->has_username, g->has_username);
        cmp_bytes(&c, "username", w->username, g->username);
        cmp_num(&c, "has_password", w->has_password, g->has_password);
        cmp_bytes(&c, "password", w->password, g->password);
        break;
    }
    case MQC_CONNACK:
        cmp_num(&c, "session_present", want->u.connack.session_present,
                got->u.connack.session_present);
        cmp_num(&c, "code", want->u.connack.code, got->u.connack.code);
        cmp_props(&c, "props", want->u.connack.props, got->u.connack.props);
        break;
    case MQC_PUBLISH: {
        const struct mqc_publish *w = &want->u.publish, *g = &got->u.publish;
        cmp_num(&c, "qos", w->qos, g->qos);
        cmp_num(&c, "dup", w->dup, g->dup);
        cmp_num(&c, "retain", w->retain, g->retain);
        cmp_bytes(&c, "topic", w->topic, g->topic);
        cmp_num(&c, "packet_id", w->packet_id, g->packet_id);
        cmp_props(&c, "props", w->props, g->props);
        cmp_bytes(&c, "payload", w->payload, g->payload);
        break;
    }
    case MQC_PUBACK:
    case MQC_PUBREC:
    case MQC_PUBREL:
    case MQC_PUBCOMP:
        cmp_num(&c, "packet_id", want->u.ack.packet_id, got->u.ack.packet_id);
        cmp_num(&c, "code", want->u.ack.code, got->u.ack.code);
        cmp_props(&c, "props", want->u.ack.props, got->u.ack.props);
        break;
    case MQC_SUBSCRIBE: {
        const struct mqc_subscribe *w = &want->u.subscribe, *g = &got->u.subscribe;
        struct mqc_sub ws[MAX_ENTRIES], gs[MAX_ENTRIES];
        size_t wn = 0, gn = 0;
        cmp_num(&c, "packet_id", w->packet_id, g->packet_id);
        cmp_props(&c, "props", w->props, g->props);
        cmp_num(&c, "count", w->count, g->count);
        sub_entries(&c, w, version, ws, MAX_ENTRIES, &wn);
        sub_entries(&c, g, version, gs, MAX_ENTRIES, &gn);
        cmp_num(&c, "entries walked", wn, gn);
        cmp_num(&c, "entries walked vs count", g->count, gn);
        for (size_t i = 0; i < wn; i++) {
            cmp_bytes(&c, "subs[i].filter", ws[i].filter, gs[i].filter);
            cmp_num(&c, "subs[i].options", ws[i].options, gs[i].options);
        }
        break;
    }
    case MQC_SUBACK:
    case MQC_UNSUBACK:
        cmp_num(&c, "packet_id", want->u.suback.packet_id, got->u.suback.packet_id);
        cmp_props(&c, "props", want->u.suback.props, got->u.suback.props);
        cmp_bytes(&c, "codes", want->u.suback.codes, got->u.suback.codes);
        break;
    case MQC_UNSUBSCRIBE: {
        const struct mqc_unsubscribe *w = &want->u.unsubscribe, *g = &got->u.unsubscribe;
        struct mqc_bytes wf[MAX_ENTRIES], gf[MAX_ENTRIES];
        size_t wn = 0, gn = 0;
        cmp_num(&c, "packet_id", w->packet_id, g->packet_id);
        cmp_props(&c, "props", w->props, g->props);
        cmp_num(&c, "count", w->count, g->count);
        unsub_entries(&c, w, wf, MAX_ENTRIES, &wn);
        unsub_entries(&c, g, gf, MAX_ENTRIES, &gn);
        cmp_num(&c, "entries walked", wn, gn);
        cmp_num(&c, "entries walked vs count", g->count, gn);
        for (size_t i = 0; i < wn; i++)
            cmp_bytes(&c, "filters[i]", wf[i], gf[i]);
        break;
    }
    case MQC_DISCONNECT:
    case MQC_AUTH:
        cmp_num(&c, "code", want->u.reason.code, got->u.reason.code);
        cmp_props(&c, "props", want->u.reason.props, got->u.reason.props);
        break;
    default: /* PINGREQ, PINGRESP: nothing but the type */
        break;
    }
}

/* ---- table-driven groups ------------------------------------------------------------------ */

int mqt_run_table(const char *group, const void *cases, size_t n, size_t size,
                  const char *(*name)(const void *c), void (*fn)(void **state))
{
    struct CMUnitTest *t = calloc(n ? n : 1, sizeof *t);
    if (!t)
        abort();
    for (size_t i = 0; i < n; i++) {
        const void *c = (const char *)cases + i * size;
        t[i].name = name(c);
        t[i].test_func = fn;
        t[i].initial_state = (void *)(uintptr_t)c;
    }
    int failed = _cmocka_run_group_tests(group, t, n, NULL, NULL);
    free(t);
    return failed;
}
