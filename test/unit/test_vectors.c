/*
 * Runs every vector of every test/vectors/NAME.hex (format: test/vectors/README.md) three ways, as
 * picohttpparser's test.c does (STYLE.md §7):
 *
 *   whole        the vector at the end of a page, a PROT_NONE page after it;
 *   byte by byte mqc_frame_check on every prefix, each at the end of a page: MQC_AGAIN until
 *                the last byte, then the frame (or the framing error);
 *   split        at every offset: the first part alone (MQC_AGAIN), then both parts joined in
 *                a fresh buffer; and the vector followed by the next packet's bytes in one
 *                buffer (the frame must stop at its own end).
 *
 * Each way ends in mqc_frame_check (max_packet MQC_VECTOR_MAX_PACKET) and, when that frames
 * the packet, mqc_decode with the vector's version; the outcome must equal the vector's
 * `expect` exactly. A packet that decodes is also re-encoded and decoded again.
 */
#define _DEFAULT_SOURCE /* DT_REG */
#include "mqc_testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MQC_VECTOR_DIR
#error "MQC_VECTOR_DIR must name the test/vectors directory"
#endif

/* The relay's default max_packet_size: frames above it are refused when the length is read. */
#define MQC_VECTOR_MAX_PACKET 262144u

struct vector {
    char name[192]; /* "file.hex: name [tag]" */
    uint8_t version;
    int expect;
    uint8_t *bytes;
    size_t len;
};

static struct vector *vecs;
static size_t nvecs, capvecs;

static void die(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: %s\n", file, line, what);
    exit(2);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* Reads one file; any deviation from the format stops the run (exit 2), so a broken vector
 * can never be skipped silently. */
static void load_file(const char *dir, const char *fname)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    FILE *fp = fopen(path, "r");
    if (!fp)
        die(path, 0, "cannot open");
    enum { NAME, VERSION, HEX } st = NAME;
    char line[4096];
    int ln = 0;
    struct vector v;
    char *hex = NULL;
    size_t hexlen = 0;
    while (fgets(line, sizeof line, fp)) {
        ln++;
        char *s = trim(line);
        if (s[0] == '#')
            continue;
        if (st == NAME) {
            if (!*s)
                continue;
            memset(&v, 0, sizeof v);
            snprintf(v.name, sizeof v.name, "%s: %s", fname, s);
            st = VERSION;
        } else if (st == VERSION) {
            unsigned ver;
            if (sscanf(s, "version %u", &ver) != 1 || (ver != 3 && ver != 4 && ver != 5))
                die(path, ln, "expected `version 3|4|5`");
            v.version = (uint8_t)ver;
            st = HEX;
            hexlen = 0;
        } else if (strncmp(s, "expect ", 7) == 0) {
            if (mqt_err_parse(trim(s + 7), &v.expect) != 0)
                die(path, ln, "unknown result after `expect`");
            v.bytes = malloc(hexlen / 2 + 1);
            if (!v.bytes || mqt_hex_parse(hex ? hex : "", v.bytes, hexlen / 2 + 1, &v.len) != 0)
                die(path, ln, "bad hex bytes");
            if (v.len == 0)
                die(path, ln, "vector without bytes");
            for (size_t i = 0; i < nvecs; i++)
                if (strcmp(vecs[i].name, v.name) == 0)
                    die(path, ln, "duplicate vector name");
            if (nvecs == capvecs) {
                capvecs = capvecs ? 2 * capvecs : 256;
                vecs = realloc(vecs, capvecs * sizeof *vecs);
                if (!vecs)
                    abort();
            }
            vecs[nvecs++] = v;
            st = NAME;
        } else {
            if (!*s)
                die(path, ln, "blank line inside a vector");
            size_t n = strlen(s);
            hex = realloc(hex, hexlen + n + 2);
            if (!hex)
                abort();
            memcpy(hex + hexlen, s, n);
            hex[hexlen + n] = ' ';
            hex[hexlen + n + 1] = 0;
            hexlen += n + 1;
        }
    }
    if (st != NAME)
        die(path, ln, "file ends inside a vector");
    free(hex);
    fclose(fp);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_all(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        die(dir, 0, "cannot open the vector directory");
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".hex") == 0 && n < 256)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_names);
    for (size_t i = 0; i < n; i++) {
        load_file(dir, names[i]);
        free(names[i]);
    }
    if (n == 0 || nvecs == 0)
        die(dir, 0, "no vectors found");
}

/* ---- running one vector ---------------------------------------------------------------- */

/* Frames buf[0..len) (which holds exactly the vector) and decodes it: the outcome. */
static int outcome(const struct vector *v, const uint8_t *buf, size_t len, struct mqc_packet *pkt)
{
    struct mqc_frame f;
    int rc = mqc_frame_check(buf, len, MQC_VECTOR_MAX_PACKET, &f);
    if (rc != MQC_OK)
        return rc;
    if (f.total != len)
        fail_msg("%s: the frame is %zu bytes but the vector %zu: one vector, one packet", v->name,
                 f.total, len);
    rc = mqc_decode(buf, len, v->version, pkt);
    if (f.type == MQC_PUBLISH) {
        struct mqc_publish p;
        int rc2 = mqc_decode_publish(buf, len, v->version, &p);
        if (rc2 != rc)
            fail_msg("%s: mqc_decode_publish %s, mqc_decode %s", v->name, mqt_err_name(rc2),
                     mqt_err_name(rc));
        if (rc == MQC_OK) {
            struct mqc_packet q = {.type = MQC_PUBLISH, .u.publish = p};
            assert_packet_eq(pkt, &q, v->version);
        }
    }
    return rc;
}

static void expect_rc(const struct vector *v, const char *how, size_t k, int got, int want)
{
    if (got != want)
        fail_msg("%s (%s, %zu of %zu bytes): got %s, expected %s", v->name, how, k, v->len,
                 mqt_err_name(got) ? mqt_err_name(got) : "?",
                 mqt_err_name(want) ? mqt_err_name(want) : "?");
}

/* A decoded packet encodes again, and the encoding decodes to the same packet and encodes to
 * the same bytes (encoding may use a shorter form than the vector: 5.0 acks, DISCONNECT). */
static void reencode(const struct vector *v, const struct mqc_packet *pkt)
{
    size_t size = 0, w = 0;
    /* a CONNECT carries its own version; every other packet the link's */
    uint8_t version = pkt->type == MQC_CONNECT ? pkt->u.connect.version : v->version;
    assert_err(mqc_size(pkt, version, &size), MQC_OK);
    uint8_t *e = malloc(size), *e2 = malloc(size);
    assert_non_null(e);
    assert_non_null(e2);
    assert_err(mqc_encode(pkt, version, e, size, &w), MQC_OK);
    assert_int_equal(w, size);
    struct mqc_packet back;
    assert_err(mqc_decode(e, size, version, &back), MQC_OK);
    assert_packet_eq(pkt, &back, version);
    assert_err(mqc_encode(&back, version, e2, size, &w), MQC_OK);
    assert_memory_equal(e, e2, size);
    free(e);
    free(e2);
}

static void run_vector(void **state)
{
    const struct vector *v = *state;
    struct mqt_guard g = {0};
    struct mqc_packet pkt;
    struct mqc_frame f;

    /* 1. whole */
    const uint8_t *p = mqt_guard_put(&g, v->bytes, v->len);
    int whole = outcome(v, p, v->len, &pkt);
    expect_rc(v, "whole", v->len, whole, v->expect);
    if (whole == MQC_OK)
        reencode(v, &pkt);

    /* 2. one byte at a time */
    for (size_t k = 0; k < v->len; k++) {
        p = mqt_guard_put(&g, v->bytes, k);
        expect_rc(v, "byte by byte", k, mqc_frame_check(p, k, MQC_VECTOR_MAX_PACKET, &f),
                  MQC_AGAIN);
    }
    p = mqt_guard_put(&g, v->bytes, v->len);
    expect_rc(v, "byte by byte", v->len, outcome(v, p, v->len, &pkt), v->expect);

    /* 3. split at every offset */
    for (size_t k = 1; k < v->len; k++) {
        uint8_t *joined = malloc(v->len);
        assert_non_null(joined);
        p = mqt_guard_put(&g, v->bytes, k);
        expect_rc(v, "split, first part", k, mqc_frame_check(p, k, MQC_VECTOR_MAX_PACKET, &f),
                  MQC_AGAIN);
        memcpy(joined, p, k);
        memcpy(joined + k, v->bytes + k, v->len - k);
        p = mqt_guard_put(&g, joined, v->len);
        expect_rc(v, "split, joined", k, outcome(v, p, v->len, &pkt), v->expect);
        free(joined);
    }
    /* followed by the next packet (a PINGREQ) in the same buffer */
    uint8_t *more = malloc(v->len + 2);
    assert_non_null(more);
    memcpy(more, v->bytes, v->len);
    more[v->len] = 0xC0;
    more[v->len + 1] = 0x00;
    p = mqt_guard_put(&g, more, v->len + 2);
    int rc = mqc_frame_check(p, v->len + 2, MQC_VECTOR_MAX_PACKET, &f);
    if (v->expect == MQC_AGAIN) {
        /* an unfinished frame swallows what follows: nothing to check */
    } else if (rc == MQC_OK) {
        assert_int_equal(f.total, v->len);
        expect_rc(v, "followed by a PINGREQ", v->len, mqc_decode(p, f.total, v->version, &pkt),
                  v->expect);
    } else {
        expect_rc(v, "followed by a PINGREQ", v->len, rc, v->expect);
    }
    free(more);
    mqt_guard_free(&g);
}

/* Every valid vector with each byte replaced by a few values: whatever the decoder accepts, the
 * encoder can write back (decode(encode(p)) == p), and nothing reads outside the packet. */
static void run_mutations(void **state)
{
    const struct vector *v = *state;
    if (v->expect != MQC_OK)
        return;
    struct mqt_guard g = {0};
    uint8_t *m = malloc(v->len);
    assert_non_null(m);
    for (size_t i = 0; i < v->len; i++) {
        const uint8_t b = v->bytes[i];
        const uint8_t vals[] = {0x00,
                                0x01,
                                0x02,
                                0x7F,
                                0x80,
                                0xFF,
                                (uint8_t)(b ^ 0x01),
                                (uint8_t)(b ^ 0x02),
                                (uint8_t)(b ^ 0x80),
                                (uint8_t)(b + 1)};
        for (size_t k = 0; k < sizeof vals; k++) {
            memcpy(m, v->bytes, v->len);
            m[i] = vals[k];
            const uint8_t *p = mqt_guard_put(&g, m, v->len);
            struct mqc_frame f;
            struct mqc_packet pkt;
            if (mqc_frame_check(p, v->len, MQC_VECTOR_MAX_PACKET, &f) != MQC_OK ||
                f.total != v->len)
                continue;
            int rc = mqc_decode(p, v->len, v->version, &pkt);
            if (f.type == MQC_PUBLISH) {
                struct mqc_publish pub;
                assert_err(mqc_decode_publish(p, v->len, v->version, &pub), rc);
            }
            if (rc == MQC_OK)
                reencode(v, &pkt);
            else if (rc > 0 || mqt_err_name(rc) == NULL)
                fail_msg("%s, byte %zu = %02x: mqc_decode returned %d", v->name, i, vals[k], rc);
        }
    }
    free(m);
    mqt_guard_free(&g);
}

static const char *vec_name(const void *c)
{
    return ((const struct vector *)c)->name;
}

int main(void)
{
    load_all(MQC_VECTOR_DIR);
    int failed = mqt_run_table("vectors", vecs, nvecs, sizeof vecs[0], vec_name, run_vector);
    failed +=
        mqt_run_table("vector mutations", vecs, nvecs, sizeof vecs[0], vec_name, run_mutations);
    for (size_t i = 0; i < nvecs; i++)
        free(vecs[i].bytes);
    free(vecs);
    return failed;
}
