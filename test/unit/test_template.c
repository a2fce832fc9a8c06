/*
 * test_template.c: relay_tpl_compile / relay_tpl_expand / relay_tpl_overlaps.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "route/template.h"
#include "mqttcodec.h"

/* ---- compile ------------------------------------------------------------------------------ */

static void test_compile_parts(void **state)
{
    (void)state;
    struct relay_tpl t;
    char err[160];

    assert_int_equal(
        relay_tpl_compile(&t, "site-a/${1}/cmd/${#}", "factory/+/cmd/#", err, sizeof(err)), 0);
    assert_false(t.identity);
    assert_int_equal(t.n_plus, 1);
    assert_int_equal(t.plus_level[0], 1);
    assert_int_equal(t.hash_level, 3);
    assert_int_equal(t.n_parts, 4);
    assert_int_equal(t.parts[0].kind, RELAY_TPL_LIT);
    assert_int_equal(t.parts[0].lit_len, 7);
    assert_memory_equal(t.parts[0].lit, "site-a/", 7);
    assert_int_equal(t.parts[1].kind, RELAY_TPL_LEVEL);
    assert_int_equal(t.parts[1].level, 1);
    assert_int_equal(t.parts[2].kind, RELAY_TPL_LIT);
    assert_int_equal(t.parts[2].lit_len, 4); /* "/cmd": its '/' before ${#} moved to the REST */
    assert_memory_equal(t.parts[2].lit, "/cmd", 4);
    assert_int_equal(t.parts[3].kind, RELAY_TPL_REST);
    assert_true(t.parts[3].drop_slash);
    relay_tpl_cleanup(&t);
    assert_null(t.parts);
    relay_tpl_cleanup(&t);

    assert_int_equal(relay_tpl_compile(&t, "${topic}", "a/#", err, sizeof(err)), 0);
    assert_true(t.identity);
    relay_tpl_cleanup(&t);

    /* '$' without '{' is literal text ("$SYS/...") */
    assert_int_equal(relay_tpl_compile(&t, "$SYS/x$", "a", err, sizeof(err)), 0);
    assert_int_equal(t.n_parts, 1);
    relay_tpl_cleanup(&t);

    /* more than nine '+': ${9} is the ninth */
    assert_int_equal(relay_tpl_compile(&t, "${9}", "+/+/+/+/+/+/+/+/x/+/+", err, sizeof(err)), 0);
    assert_int_equal(t.n_plus, 10);
    assert_int_equal(t.plus_level[8], 9); /* level 8 is "x" */
    relay_tpl_cleanup(&t);

    /* a shared-subscription filter is read as its inner filter */
    assert_int_equal(relay_tpl_compile(&t, "${1}", "$share/g/a/+", err, sizeof(err)), 0);
    assert_int_equal(t.plus_level[0], 1);
    relay_tpl_cleanup(&t);
}

static void test_compile_errors(void **state)
{
    (void)state;
    static const struct {
        const char *tpl, *filter, *err;
    } cases[] = {
        {"", "a", "empty template"},
        {"x/${3}", "factory/+/cmd/#", "template refers to ${3} but the filter has 1 '+'"},
        {"${1}", "a/b", "template refers to ${1} but the filter has 0 '+'"},
        {"x/${#}", "a/+", "${#} but the filter has no '#'"},
        {"x/${#}", "a/#/b", "${#} but the filter has no '#'"},
        {"a/+", "a/+", "template contains a wildcard ('+' or '#')"},
        {"a#", "a/#", "template contains a wildcard ('+' or '#')"},
        {"a/${1}/#", "a/+", "template contains a wildcard ('+' or '#')"},
        {"${foo}", "a", "unknown placeholder ${foo} (use ${topic}, ${1}..${9} or ${#})"},
        {"${0}", "+", "unknown placeholder ${0} (use ${topic}, ${1}..${9} or ${#})"},
        {"${10}", "+", "unknown placeholder ${10} (use ${topic}, ${1}..${9} or ${#})"},
        {"${}", "+", "unknown placeholder ${} (use ${topic}, ${1}..${9} or ${#})"},
        {"${TOPIC}", "+", "unknown placeholder ${TOPIC} (use ${topic}, ${1}..${9} or ${#})"},
        {"a/${topic", "+", "unterminated \"${\" (placeholders are ${topic}, ${1}..${9} and ${#})"},
        {"a\xff", "+", "template is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct relay_tpl t;
        char err[160];
        int rc = relay_tpl_compile(&t, cases[i].tpl, cases[i].filter, err, sizeof(err));
        if (rc != -EINVAL || strcmp(err, cases[i].err) != 0)
            print_error("case %zu: \"%s\" for \"%s\": %d \"%s\"\n", i, cases[i].tpl,
                        cases[i].filter, rc, err);
        assert_int_equal(rc, -EINVAL);
        assert_string_equal(err, cases[i].err);
        assert_null(t.parts);
        relay_tpl_cleanup(&t);
    }
}

/* ---- expand ------------------------------------------------------------------------------- */

static void test_expand_table(void **state)
{
    (void)state;
    static const struct {
        const char *filter, *tpl, *topic, *want; /* want NULL: -EINVAL */
    } cases[] = {
        {"a/+/c", "${topic}", "a/b/c", "a/b/c"},
        {"a/+/c", "up/${topic}", "a/b/c", "up/a/b/c"},
        {"a/#", "${topic}/${topic}", "a/b", "a/b/a/b"},
        {"factory/+/cmd/#", "site-a/${1}/cmd/${#}", "factory/x1/cmd/a/b", "site-a/x1/cmd/a/b"},
        /* '#' matched nothing: the '/' before ${#} goes too */
        {"factory/+/cmd/#", "site-a/${1}/cmd/${#}", "factory/x1/cmd", "site-a/x1/cmd"},
        /* '#' matched one empty level: kept */
        {"factory/+/cmd/#", "site-a/${1}/cmd/${#}", "factory/x1/cmd/", "site-a/x1/cmd/"},
        {"+/+/#", "${2}-${1}/${#}", "a/b/c/d", "b-a/c/d"},
        {"+/+", "${2}/${1}/${2}", "left/right", "right/left/right"},
        {"+/x/+", "${1}${2}", "p/x/q", "pq"},
        /* ${#} in the middle of literal text */
        {"a/#", "pre${#}post", "a/x/y", "prex/ypost"},
        {"a/#", "pre${#}post", "a", "prepost"},
        {"a/#", "x/${#}/y", "a/m", "x/m/y"},
        {"a/#", "x/${#}/y", "a", "x/y"},
        {"#", "up/${#}", "a/b", "up/a/b"},
        {"#", "up/${#}", "$SYS/x", "up/$SYS/x"},
        {"+/a/+/#", "${2}|${1}|${#}", "p/a/q/r/s", "q|p|r/s"},
        {"+/+/+/+/+/+/+/+/x/+/+", "${9}", "1/2/3/4/5/6/7/8/x/9/10", "9"},
        {"a/+", "${1}", "a/\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9"},
        /* an empty level for ${N}: not a usable topic */
        {"a/+/c", "x/${1}", "a//c", NULL},
        {"a/+/c", "${1}", "a//c", NULL},
        {"+", "${1}/x", "", NULL},
        /* an empty result */
        {"a/#", "${#}", "a", NULL},
        {"a/+/c", "${topic}", "", NULL},
        /* a topic that does not have the filter's levels (the caller's bug): refused, safely */
        {"a/+/c/+", "${2}", "a/b", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct relay_tpl t;
        char err[160];
        uint8_t out[256];
        size_t len = 0;
        assert_int_equal(relay_tpl_compile(&t, cases[i].tpl, cases[i].filter, err, sizeof(err)), 0);
        int rc = relay_tpl_expand(&t, (const uint8_t *)cases[i].topic, strlen(cases[i].topic), out,
                                  sizeof(out), &len);
        if (cases[i].want) {
            if (rc != 0 || len != strlen(cases[i].want) || memcmp(out, cases[i].want, len) != 0)
                print_error("case %zu: %s via %s from %s: rc %d \"%.*s\"\n", i, cases[i].topic,
                            cases[i].tpl, cases[i].filter, rc, (int)len, (const char *)out);
            assert_int_equal(rc, 0);
            assert_int_equal(len, strlen(cases[i].want));
            assert_memory_equal(out, cases[i].want, len);
        } else {
            if (rc != -EINVAL)
                print_error("case %zu: %s via %s: rc %d, want -EINVAL\n", i, cases[i].topic,
                            cases[i].tpl, rc);
            assert_int_equal(rc, -EINVAL);
        }
        relay_tpl_cleanup(&t);
    }
}

static void test_expand_nospc(void **state)
{
    (void)state;
    struct relay_tpl t;
    char err[160];
    uint8_t out[32];
    size_t len = 99;
    const char *topic = "factory/x1/cmd/a/b"; /* -> "site-a/x1/cmd/a/b", 17 bytes */
    assert_int_equal(
        relay_tpl_compile(&t, "site-a/${1}/cmd/${#}", "factory/+/cmd/#", err, sizeof(err)), 0);
    memset(out, 0xee, sizeof(out));
    assert_int_equal(relay_tpl_expand(&t, (const uint8_t *)topic, strlen(topic), out, 16, &len),
                     -ENOSPC);
    for (size_t i = 0; i < sizeof(out); i++)
        assert_int_equal(out[i], 0xee); /* nothing written */
    assert_int_equal(len, 99);
    assert_int_equal(relay_tpl_expand(&t, (const uint8_t *)topic, strlen(topic), out, 17, &len), 0);
    assert_int_equal(len, 17);
    assert_int_equal(out[17], 0xee);
    relay_tpl_cleanup(&t);

    /* the identity fast path too */
    assert_int_equal(relay_tpl_compile(&t, "${topic}", "#", err, sizeof(err)), 0);
    assert_int_equal(relay_tpl_expand(&t, (const uint8_t *)"abc", 3, out, 2, &len), -ENOSPC);
    assert_int_equal(relay_tpl_expand(&t, (const uint8_t *)"abc", 3, out, 3, &len), 0);
    assert_int_equal(len, 3);
    relay_tpl_cleanup(&t);
}

static void test_expand_too_long(void **state)
{
    (void)state;
    struct relay_tpl t;
    char err[160];
    size_t n = 40000, len = 0;
    uint8_t *topic = malloc(n + 2), *out = malloc(200000);
    assert_non_null(topic);
    assert_non_null(out);
    topic[0] = 'a';
    topic[1] = '/';
    memset(topic + 2, 'x', n);
    /* 80000 bytes out of a 40002-byte topic: over an MQTT topic's 65535 */
    assert_int_equal(relay_tpl_compile(&t, "${1}${1}", "a/+", err, sizeof(err)), 0);
    assert_int_equal(relay_tpl_expand(&t, topic, n + 2, out, 200000, &len), -EINVAL);
    relay_tpl_cleanup(&t);
    assert_int_equal(relay_tpl_compile(&t, "${1}", "a/+", err, sizeof(err)), 0);
    assert_int_equal(relay_tpl_expand(&t, topic, n + 2, out, 200000, &len), 0);
    assert_int_equal(len, n);
    relay_tpl_cleanup(&t);
    free(topic);
    free(out);
}

/* ---- overlaps ----------------------------------------------------------------------------- */

static void test_overlaps_table(void **state)
{
    (void)state;
    static const struct {
        const char *tpl, *src, *dst;
        bool want;
    } cases[] = {
        {"${topic}", "cmd/#", "#", true},
        {"${topic}", "cmd/#", "cmd/x", true},
        {"${topic}", "cmd/#", "cmd", true},
        {"${topic}", "cmd/#", "out/#", false},
        {"${topic}", "a/+/c", "a/b/d", false},
        {"${topic}", "a/+/c", "a/b/c", true},
        {"${topic}", "+/+", "a/b", true},
        {"${topic}", "+/+", "a", false},
        {"${topic}", "+/+", "a/b/c", false},
        {"in/${#}", "cmd/#", "cmd/#", false},
        {"in/${#}", "cmd/#", "in", true}, /* '#' matched nothing: "in" */
        {"in/${#}", "cmd/#", "+", true},
        {"in/${#}", "cmd/#", "+/+/x", true},
        {"in/${#}/x", "cmd/#", "in/y", true}, /* nothing matched: "in/x"... and more */
        {"site/${1}", "x/+", "site/+", true},
        {"site/${1}", "x/+", "site/a", true},
        {"site/${1}", "x/+", "site/a/b", false},
        {"site/${1}", "x/+", "other/#", false},
        {"site/${1}/t", "x/+", "site/+/u", false},
        {"site/${1}/t", "x/+", "+/+/t", true},
        {"pre${1}", "+", "prefix", true},
        {"pre${1}", "+", "a/b", false},
        {"a/b", "x", "a/b/#", true}, /* "a/b/#" matches "a/b" */
        {"a/b", "x", "a/b/c", false},
        {"a/b", "x", "a", false},
        {"a/b", "x", "a/+", true},
        {"a//b", "x", "a/+/b", true},
        {"${topic}/x", "a/#", "a/x", true},
        {"${topic}/x", "a/b", "a/x", false},
        {"$SYS/x", "a", "#", false}, /* [MQTT-4.7.2-1] */
        {"$SYS/x", "a", "+/x", false},
        {"$SYS/x", "a", "$SYS/#", true},
        {"${1}/x", "a/+", "+/x", true},
        {"up/${topic}", "$share/g/a/#", "up/a/b", true},
        {"up/${topic}", "a/#", "$share/g/up/a", true},
        {"up/${topic}", "a/#", "$share/g/up/b", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct relay_tpl t;
        char err[160];
        assert_int_equal(relay_tpl_compile(&t, cases[i].tpl, cases[i].src, err, sizeof(err)), 0);
        bool got = relay_tpl_overlaps(&t, cases[i].src, cases[i].dst);
        if (got != cases[i].want)
            print_error("case %zu: %s from %s vs %s: %d\n", i, cases[i].tpl, cases[i].src,
                        cases[i].dst, got);
        assert_int_equal(got, cases[i].want);
        relay_tpl_cleanup(&t);
    }
}

/* Soundness against brute force: whenever some topic matching the source filter expands to a
 * topic that matches the destination filter, relay_tpl_overlaps() must say true. */
static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

static void random_filter(uint32_t *s, char *out, size_t cap, bool allow_hash)
{
    static const char *const lv[] = {"a", "b", "+", "$s", ""};
    unsigned n = 1 + rnd(s) % 3;
    out[0] = '\0';
    for (unsigned i = 0; i < n; i++) {
        if (i)
            strncat(out, "/", cap - strlen(out) - 1);
        strncat(out, lv[rnd(s) % 5], cap - strlen(out) - 1);
    }
    if (allow_hash && rnd(s) % 2) {
        if (rnd(s) % 4 == 0)
            snprintf(out, cap, "#");
        else
            strncat(out, "/#", cap - strlen(out) - 1);
    }
}

static void random_topic(uint32_t *s, const char *filter, char *out, size_t cap)
{
    static const char *const lv[] = {"a", "b", "", "$s", "c"};
    size_t o = 0;
    for (const char *f = filter; *f && o + 16 < cap; f++) {
        if ((*f == '+' || *f == '#') && (f == filter || f[-1] == '/')) {
            unsigned n = *f == '#' ? rnd(s) % 3 : 1;
            if (*f == '#' && n == 0 && o > 0)
                o--; /* "a/#" matching "a" */
            for (unsigned i = 0; i < n; i++)
                o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "/" : "", lv[rnd(s) % 5]);
        } else {
            out[o++] = *f;
        }
    }
    out[o] = '\0';
}

static void random_template(uint32_t *s, char *out, size_t cap)
{
    static const char *const pc[] = {"a",    "b",    "/",    "/",  "${topic}",
                                     "${1}", "${2}", "${#}", "$s", "x"};
    unsigned n = 1 + rnd(s) % 4;
    out[0] = '\0';
    for (unsigned i = 0; i < n; i++)
        strncat(out, pc[rnd(s) % 10], cap - strlen(out) - 1);
}

static void test_overlaps_brute_force(void **state)
{
    (void)state;
    uint32_t seed = 1;
    unsigned checked = 0, matched = 0;
    for (int round = 0; round < 20000; round++) {
        char src[64], dst[64], tpl[64], topic[256], err[160];
        uint8_t out[1024];
        size_t len;
        struct relay_tpl t;
        random_filter(&seed, src, sizeof(src), true);
        random_filter(&seed, dst, sizeof(dst), true);
        random_template(&seed, tpl, sizeof(tpl));
        if (mqc_topic_filter_check((const uint8_t *)src, strlen(src)) != MQC_OK ||
            mqc_topic_filter_check((const uint8_t *)dst, strlen(dst)) != MQC_OK)
            continue;
        if (relay_tpl_compile(&t, tpl, src, err, sizeof(err)) != 0)
            continue;
        bool says = relay_tpl_overlaps(&t, src, dst);
        for (int k = 0; k < 30; k++) {
            random_topic(&seed, src, topic, sizeof(topic));
            size_t tl = strlen(topic);
            if (mqc_topic_name_check((const uint8_t *)topic, tl) != MQC_OK ||
                !mqc_topic_match((const uint8_t *)src, strlen(src), (const uint8_t *)topic, tl))
                continue;
            if (relay_tpl_expand(&t, (const uint8_t *)topic, tl, out, sizeof(out), &len) != 0)
                continue;
            checked++;
            if (!mqc_topic_match((const uint8_t *)dst, strlen(dst), out, len))
                continue;
            matched++;
            if (!says)
                print_error("%s from %s: \"%s\" -> \"%.*s\" matches %s, overlaps said false\n", tpl,
                            src, topic, (int)len, (const char *)out, dst);
            assert_true(says);
        }
        relay_tpl_cleanup(&t);
    }
    assert_true(checked > 10000);
    assert_true(matched > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_parts),        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_expand_table),         cmocka_unit_test(test_expand_nospc),
        cmocka_unit_test(test_expand_too_long),      cmocka_unit_test(test_overlaps_table),
        cmocka_unit_test(test_overlaps_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
