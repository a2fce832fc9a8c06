/* test_tree.c: the route tree finds exactly the routes mqc_topic_match says match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqttcodec.h"
#include "route/tree.h"

#define NR 400

static int routes[NR]; /* the items: their addresses say which filter matched */
static char filters[NR][64];
static int hits[NR];

static int count_hit(void *item, void *arg)
{
    (void)arg;
    hits[(int *)item - routes]++;
    return 0;
}

static uint32_t rng = 12345;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* levels from a tiny alphabet so that topics and filters meet often */
static const char *const words[] = {"a", "b", "c", "$SYS", "", "dev"};

static void random_filter(char *out, size_t cap)
{
    int levels = 1 + (int)(next() % 4);
    size_t n = 0;

    for (int i = 0; i < levels; i++) {
        uint32_t k = next() % 10;
        const char *w = k < 6 ? words[k] : k < 8 ? "+" : "#";

        if (!strcmp(w, "#") && i != levels - 1)
            w = "+";
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "/" : "", w);
        if (!strcmp(w, "#"))
            break;
    }
}

static void random_topic(char *out, size_t cap)
{
    int levels = 1 + (int)(next() % 5);
    size_t n = 0;

    for (int i = 0; i < levels; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "/" : "", words[next() % 6]);
}

static void tree_equals_matcher(void **st)
{
    struct relay_tree *t = NULL;

    (void)st;
    for (int i = 0; i < NR; i++) {
        do
            random_filter(filters[i], sizeof(filters[i]));
        while (mqc_topic_filter_check((const uint8_t *)filters[i], strlen(filters[i])) != MQC_OK);
        assert_int_equal(relay_tree_add(&t, filters[i], strlen(filters[i]), &routes[i]), 0);
    }
    for (int k = 0; k < 20000; k++) {
        char topic[64];

        random_topic(topic, sizeof(topic));
        if (mqc_topic_name_check((const uint8_t *)topic, strlen(topic)) != MQC_OK)
            continue;
        memset(hits, 0, sizeof(hits));
        assert_int_equal(
            relay_tree_match(t, (const uint8_t *)topic, strlen(topic), count_hit, NULL), 0);
        for (int i = 0; i < NR; i++) {
            int want = mqc_topic_match((const uint8_t *)filters[i], strlen(filters[i]),
                                       (const uint8_t *)topic, strlen(topic));
            if (hits[i] != want)
                fail_msg("topic \"%s\" filter \"%s\": tree %d, matcher %d", topic, filters[i],
                         hits[i], want);
        }
    }
    relay_tree_free(t);
}

static void dollar_and_hash_edges(void **st)
{
    struct relay_tree *t = NULL;
    const char *f[] = {"#", "+/x", "sport/#", "$SYS/#", "a/+/c"};

    (void)st;
    for (int i = 0; i < 5; i++) {
        relay_tree_add(&t, f[i], strlen(f[i]), &routes[i]);
    }
    memset(hits, 0, sizeof(hits));
    relay_tree_match(t, (const uint8_t *)"sport", 5, count_hit, NULL);
    assert_int_equal(hits[0], 1); /* # */
    assert_int_equal(hits[2], 1); /* sport/# matches sport */
    memset(hits, 0, sizeof(hits));
    relay_tree_match(t, (const uint8_t *)"$SYS/x", 6, count_hit, NULL);
    assert_int_equal(hits[0], 0); /* a leading wildcard never matches $ topics */
    assert_int_equal(hits[1], 0);
    assert_int_equal(hits[3], 1);
    relay_tree_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tree_equals_matcher),
        cmocka_unit_test(dollar_and_hash_edges),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
