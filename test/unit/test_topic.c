/* topic.c: topic names, filters, matching (MQTT 5.0 §4.7, 3.1.1 §4.7) and shared
 * subscriptions (5.0 §4.8.2, BifroMQ's $oshare). */
#include "mqc_testutil.h"

#include <stdlib.h>
#include <string.h>

static int name_check(const char *s)
{
    return mqc_topic_name_check((const uint8_t *)s, strlen(s));
}

static int filter_check(const char *s)
{
    return mqc_topic_filter_check((const uint8_t *)s, strlen(s));
}

/* Every check also runs with the string at the end of a page. */
static int guarded(int (*fn)(const uint8_t *, size_t), const char *s, size_t n)
{
    struct mqt_guard g = {0};
    const uint8_t *p = mqt_guard_put(&g, (const uint8_t *)s, n);
    int rc = fn(p, n);
    mqt_guard_free(&g);
    return rc;
}

struct check_case {
    const char *s;
    size_t len; /* 0: strlen(s) */
    int want;
};

static const struct check_case names[] = {
    {"a", 0, MQC_OK},
    {"sport/tennis/player1", 0, MQC_OK},
    {"/", 0, MQC_OK},
    {"//", 0, MQC_OK},
    {"/finance", 0, MQC_OK},
    {"sport/", 0, MQC_OK},
    {"$SYS/broker/load", 0, MQC_OK},
    {"a b/c d", 0, MQC_OK}, /* spaces are allowed [4.7.3] */
    {"ACCOUNTS/Accounts", 0, MQC_OK},
    {"caf\xC3\xA9/\xE2\x82\xAC/\xF0\x9F\x98\x80", 0, MQC_OK},
    {"long/plain/ascii/name/over/eight/bytes/x", 0, MQC_OK},
    {"", 0, MQC_ETOPIC},  /* [MQTT-4.7.3-1] */
    {"+", 0, MQC_ETOPIC}, /* [MQTT-3.3.2-2] */
    {"#", 0, MQC_ETOPIC},
    {"sport/+/player", 0, MQC_ETOPIC},
    {"sport/#", 0, MQC_ETOPIC},
    {"a+b", 0, MQC_ETOPIC},
    {"abcdefghijklmnop#", 0, MQC_ETOPIC}, /* wildcard after 8-byte blocks */
    {"abcdefgh+", 0, MQC_ETOPIC},
    {"caf\xC3\xA9/+", 0, MQC_ETOPIC}, /* wildcard after a multi-byte char */
    {"caf\xC3\xA9/#", 0, MQC_ETOPIC},
    {"a\0b", 3, MQC_EUTF8}, /* [MQTT-1.5.4-2] */
    {"abcdefgh\0", 9, MQC_EUTF8},
    {"\xC0\xAF", 0, MQC_EUTF8}, /* [MQTT-1.5.4-1] */
    {"abcdefghij\xED\xA0\x80", 0, MQC_EUTF8},
    {"abc\xE2\x82", 0, MQC_EUTF8},
};

static const struct check_case filters[] = {
    {"#", 0, MQC_OK},
    {"+", 0, MQC_OK},
    {"+/+", 0, MQC_OK},
    {"/+", 0, MQC_OK},
    {"+/", 0, MQC_OK},
    {"/", 0, MQC_OK},
    {"sport/tennis/player1/#", 0, MQC_OK},
    {"sport/tennis/#", 0, MQC_OK},
    {"sport/+", 0, MQC_OK},
    {"+/tennis/#", 0, MQC_OK},
    {"sport/+/player1", 0, MQC_OK},
    {"$SYS/#", 0, MQC_OK},
    {"$SYS/monitor/+", 0, MQC_OK},
    {"a//b", 0, MQC_OK},
    {"+/+/+/#", 0, MQC_OK},
    {"caf\xC3\xA9/+/#", 0, MQC_OK},
    {"$share/g/a/b", 0, MQC_OK},
    {"$share/group/#", 0, MQC_OK},
    {"$share/g/+/x/#", 0, MQC_OK},
    {"$oshare/g/a/+", 0, MQC_OK},
    {"$share", 0, MQC_OK}, /* not a shared subscription, an ordinary filter */
    {"$shared/g/x", 0, MQC_OK},
    {"$SHARE/g/x", 0, MQC_OK},
    {"", 0, MQC_EFILTER},                       /* [MQTT-4.7.3-1] */
    {"sport/tennis#", 0, MQC_EFILTER},          /* [MQTT-4.7.1-2] # occupies a whole level */
    {"sport/tennis/#/ranking", 0, MQC_EFILTER}, /* [MQTT-4.7.1-2] # is the last level */
    {"#/", 0, MQC_EFILTER},
    {"##", 0, MQC_EFILTER},
    {"a#", 0, MQC_EFILTER},
    {"sport+", 0, MQC_EFILTER}, /* [MQTT-4.7.1-3] + occupies a whole level */
    {"+sport", 0, MQC_EFILTER},
    {"sport/+tennis", 0, MQC_EFILTER},
    {"sport/ten+nis", 0, MQC_EFILTER},
    {"++", 0, MQC_EFILTER},
    {"+#", 0, MQC_EFILTER},
    {"#+", 0, MQC_EFILTER},
    {"$share/", 0, MQC_EFILTER},     /* [MQTT-4.8.2-1] no ShareName */
    {"$share//a", 0, MQC_EFILTER},   /* [MQTT-4.8.2-1] empty ShareName */
    {"$share/g", 0, MQC_EFILTER},    /* [MQTT-4.8.2-2] no Topic Filter */
    {"$share/g/", 0, MQC_EFILTER},   /* [MQTT-4.8.2-2] empty Topic Filter */
    {"$share/g+/a", 0, MQC_EFILTER}, /* [MQTT-4.8.2-2] ShareName without + */
    {"$share/g#/a", 0, MQC_EFILTER}, /* ... or # */
    {"$share/+/a", 0, MQC_EFILTER},
    {"$share/g/a/#/b", 0, MQC_EFILTER}, /* the inner filter is checked too */
    {"$share/g/a+", 0, MQC_EFILTER},
    {"$oshare/", 0, MQC_EFILTER},
    {"$oshare//a", 0, MQC_EFILTER},
    {"$oshare/g", 0, MQC_EFILTER},
    {"$oshare/g#/a", 0, MQC_EFILTER},
    {"a\0b", 3, MQC_EUTF8},
    {"+/\xED\xBF\xBF", 0, MQC_EUTF8},
    {"\xF4\x90\x80\x80/#", 0, MQC_EUTF8},
};

static void name_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = names[i].len ? names[i].len : strlen(names[i].s);
        int rc = guarded(mqc_topic_name_check, names[i].s, n);
        if (rc != names[i].want)
            fail_msg("topic name #%zu \"%s\": got %s, expected %s", i, names[i].s, mqt_err_name(rc),
                     mqt_err_name(names[i].want));
    }
}

static void filter_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        size_t n = filters[i].len ? filters[i].len : strlen(filters[i].s);
        int rc = guarded(mqc_topic_filter_check, filters[i].s, n);
        if (rc != filters[i].want)
            fail_msg("topic filter #%zu \"%s\": got %s, expected %s", i, filters[i].s,
                     mqt_err_name(rc), mqt_err_name(filters[i].want));
    }
}

/* 1..65535 bytes: the length is a two-byte prefix on the wire. */
static void length_limits(void **state)
{
    (void)state;
    uint8_t *s = malloc(65536);
    assert_non_null(s);
    memset(s, 'a', 65536);
    for (size_t i = 1; i < 65536; i += 2)
        s[i] = '/';
    assert_err(mqc_topic_name_check(s, 65535), MQC_OK);
    assert_err(mqc_topic_name_check(s, 65536), MQC_ETOPIC);
    assert_err(mqc_topic_filter_check(s, 65535), MQC_OK);
    assert_err(mqc_topic_filter_check(s, 65536), MQC_EFILTER);
    s[65534] = '#';
    assert_err(mqc_topic_filter_check(s, 65535), MQC_OK);
    free(s);
}

struct match_case {
    const char *filter;
    const char *topic;
    bool want;
};

/* 5.0 §4.7.1.2, §4.7.1.3, §4.7.2 (3.1.1 the same), plus edge cases. */
static const struct match_case matches[] = {
    /* §4.7.1.2 multi-level wildcard */
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/#", "sport", true}, /* [MQTT-4.7.1-2] # includes the parent level */
    {"sport/#", "sport/", true},
    {"sport/#", "sports", false},
    {"sport/tennis/#", "sport/tennis", true},
    {"sport/tennis/#", "sport", false},
    {"#", "sport", true},
    {"#", "sport/tennis/player1", true},
    {"#", "/", true},
    {"#", "/finance", true},
    /* §4.7.1.3 single-level wildcard */
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player2", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"+", "sport", true},
    {"+/tennis/#", "sport/tennis/player1", true},
    {"+/tennis/#", "sport/tennis", true},
    {"+/tennis/#", "sport/golf", false},
    {"sport/+/player1", "sport/tennis/player1", true},
    {"sport/+/player1", "sport//player1", true},
    {"sport/+/player1", "sport/tennis/player2", false},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"+/+", "a/b/c", false},
    {"+/+/+", "a/b", false},
    {"+/#", "a", true},
    {"a/+/+", "a//", true},
    {"+", "a/", false},
    /* plain levels */
    {"a/b", "a/b", true},
    {"a/b", "a/b/c", false},
    {"a/b/c", "a/b", false},
    {"a/b", "a/bc", false},
    {"a/bc", "a/b", false},
    {"ACCOUNTS", "Accounts", false}, /* case-sensitive, §4.7.3 */
    {"/", "/", true},
    {"//", "/", false},
    {"a/", "a", false},
    {"a", "a/", false},
    {"caf\xC3\xA9/+", "caf\xC3\xA9/x", true},
    /* §4.7.2 [MQTT-4.7.2-1] topics starting with $ */
    {"#", "$SYS/x", false},
    {"#", "$SYS", false},
    {"+/x", "$SYS/x", false},
    {"+/monitor/Clients", "$SYS/monitor/Clients", false},
    {"+", "$SYS", false},
    {"$SYS/#", "$SYS/monitor/Clients", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
    {"$SYS/+/Clients", "$SYS/monitor/Clients", true},
    {"a/#", "a/$SYS", true}, /* $ only matters as the first character of the topic */
    {"+/$x", "a/$x", true},
};

static void match_table(void **state)
{
    (void)state;
    struct mqt_guard gf = {0}, gt = {0};
    for (size_t i = 0; i < sizeof matches / sizeof matches[0]; i++) {
        const char *f = matches[i].filter, *t = matches[i].topic;
        assert_err(filter_check(f), MQC_OK); /* the table itself only holds valid input */
        assert_err(name_check(t), MQC_OK);
        const uint8_t *fp = mqt_guard_put(&gf, (const uint8_t *)f, strlen(f));
        const uint8_t *tp = mqt_guard_put(&gt, (const uint8_t *)t, strlen(t));
        bool got = mqc_topic_match(fp, strlen(f), tp, strlen(t));
        if (got != matches[i].want)
            fail_msg("filter \"%s\" vs topic \"%s\": got %d, expected %d", f, t, got,
                     matches[i].want);
    }
    mqt_guard_free(&gf);
    mqt_guard_free(&gt);
}

/* A filter with no wildcard matches exactly the topic equal to it. */
static void literal_match_is_equality(void **state)
{
    (void)state;
    static const char *ts[] = {"a", "a/b", "a/b/c", "/a", "a/", "/", "ab", "a//b"};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        for (size_t j = 0; j < sizeof ts / sizeof ts[0]; j++) {
            bool got = mqc_topic_match((const uint8_t *)ts[i], strlen(ts[i]),
                                       (const uint8_t *)ts[j], strlen(ts[j]));
            if (got != (i == j))
                fail_msg("\"%s\" vs \"%s\": got %d", ts[i], ts[j], got);
        }
}

struct share_case {
    const char *s;
    int want;
    enum mqc_share_kind kind;
    const char *group;
    const char *filter;
};

static const struct share_case shares[] = {
    {"$share/g/a/b", MQC_OK, MQC_SHARE, "g", "a/b"},
    {"$share/consumer1/sport/tennis/+", MQC_OK, MQC_SHARE, "consumer1", "sport/tennis/+"},
    {"$share/consumer2/sport/tennis/+", MQC_OK, MQC_SHARE, "consumer2", "sport/tennis/+"},
    {"$share/g/#", MQC_OK, MQC_SHARE, "g", "#"},
    {"$share/g//", MQC_OK, MQC_SHARE, "g", "/"},
    {"$share/g/a/#/b", MQC_OK, MQC_SHARE, "g", "a/#/b"}, /* F not validated here */
    {"$oshare/relay/factory/+/cmd/#", MQC_OK, MQC_SHARE_ORDERED, "relay", "factory/+/cmd/#"},
    {"$oshare/g/x", MQC_OK, MQC_SHARE_ORDERED, "g", "x"},
    {"a/b", MQC_OK, MQC_SHARE_NONE, "", "a/b"},
    {"#", MQC_OK, MQC_SHARE_NONE, "", "#"},
    {"$share", MQC_OK, MQC_SHARE_NONE, "", "$share"},
    {"$oshare", MQC_OK, MQC_SHARE_NONE, "", "$oshare"},
    {"$shared/g/x", MQC_OK, MQC_SHARE_NONE, "", "$shared/g/x"},
    {"$SHARE/g/x", MQC_OK, MQC_SHARE_NONE, "", "$SHARE/g/x"},
    {"x$share/g/x", MQC_OK, MQC_SHARE_NONE, "", "x$share/g/x"},
    {"$SYS/#", MQC_OK, MQC_SHARE_NONE, "", "$SYS/#"},
    {"$share/", MQC_EFILTER, 0, NULL, NULL},
    {"$share//a", MQC_EFILTER, 0, NULL, NULL},
    {"$share/g", MQC_EFILTER, 0, NULL, NULL},
    {"$share/g/", MQC_EFILTER, 0, NULL, NULL},
    {"$share/g+/a", MQC_EFILTER, 0, NULL, NULL},
    {"$share/+/a", MQC_EFILTER, 0, NULL, NULL},
    {"$share/#/a", MQC_EFILTER, 0, NULL, NULL},
    {"$share/a#b/c", MQC_EFILTER, 0, NULL, NULL},
    {"$oshare/", MQC_EFILTER, 0, NULL, NULL},
    {"$oshare//x", MQC_EFILTER, 0, NULL, NULL},
    {"$oshare/g", MQC_EFILTER, 0, NULL, NULL},
    {"$oshare/g/", MQC_EFILTER, 0, NULL, NULL},
    {"$oshare/+/x", MQC_EFILTER, 0, NULL, NULL},
};

static void share_table(void **state)
{
    (void)state;
    struct mqt_guard g = {0};
    for (size_t i = 0; i < sizeof shares / sizeof shares[0]; i++) {
        const struct share_case *c = &shares[i];
        size_t n = strlen(c->s);
        const uint8_t *p = mqt_guard_put(&g, (const uint8_t *)c->s, n);
        struct mqc_share sh;
        memset(&sh, 0xA5, sizeof sh);
        int rc = mqc_topic_share_parse(p, n, &sh);
        if (rc != c->want)
            fail_msg("\"%s\": got %s, expected %s", c->s, mqt_err_name(rc), mqt_err_name(c->want));
        if (rc != MQC_OK)
            continue;
        if (sh.kind != c->kind)
            fail_msg("\"%s\": kind %d, expected %d", c->s, sh.kind, c->kind);
        if (sh.group.len != strlen(c->group) ||
            (sh.group.len && memcmp(sh.group.p, c->group, sh.group.len) != 0))
            fail_msg("\"%s\": wrong group", c->s);
        if (sh.filter.len != strlen(c->filter) || memcmp(sh.filter.p, c->filter, sh.filter.len))
            fail_msg("\"%s\": wrong filter", c->s);
        /* borrowed from the input */
        if (sh.filter.p < p || sh.filter.p + sh.filter.len > p + n)
            fail_msg("\"%s\": filter does not point into the input", c->s);
        if (c->kind != MQC_SHARE_NONE && (sh.group.p < p || sh.group.p + sh.group.len > p + n))
            fail_msg("\"%s\": group does not point into the input", c->s);
    }
    mqt_guard_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(name_table),
        cmocka_unit_test(filter_table),
        cmocka_unit_test(length_limits),
        cmocka_unit_test(match_table),
        cmocka_unit_test(literal_match_is_equality),
        cmocka_unit_test(share_table),
    };
    return cmocka_run_group_tests_name("topic [MQTT-4.7]", tests, NULL, NULL);
}
