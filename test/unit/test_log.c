/* test_log.c: util/log.c: the text format as SPEC gives it, the json format (every line one
 * object that parses, with the fields split out), the journal's priority prefixes when stderr is
 * the journal ($JOURNAL_STREAM), rate limiting and what it suppressed, the ring of the last
 * WARN/ERROR lines, and lines from below (libwebsockets') through the default log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mini_json.h"
#include "util/log.h"

/* stderr into a temporary file while a test logs. */
struct cap {
    int saved, fd;
    char path[64];
};

static void cap_start(struct cap *c)
{
    snprintf(c->path, sizeof(c->path), "/tmp/test_log_XXXXXX");
    c->fd = mkstemp(c->path);
    assert_true(c->fd >= 0);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    dup2(c->fd, STDERR_FILENO);
}

static char *cap_stop(struct cap *c)
{
    struct stat st;
    char *text;

    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    assert_int_equal(fstat(c->fd, &st), 0);
    text = calloc(1, (size_t)st.st_size + 1);
    assert_int_equal(pread(c->fd, text, (size_t)st.st_size, 0), st.st_size);
    close(c->fd);
    unlink(c->path);
    return text;
}

/* The lines of text (each ends with '\n'), as an array of strings; *n their number. */
static char **lines(char *text, size_t *n)
{
    char **v = NULL;

    *n = 0;
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');

        assert_non_null(nl); /* every line ends with a newline */
        *nl = '\0';
        v = realloc(v, (*n + 1) * sizeof(*v));
        v[(*n)++] = p;
        p = nl + 1;
    }
    return v;
}

static struct mj *json(const char *line)
{
    char err[128];
    struct mj *v = mj_parse(line, strlen(line), err, sizeof(err));

    if (!v)
        fail_msg("not JSON: %s: %s", err, line);
    assert_int_equal(v->type, MJ_OBJ);
    return v;
}

/* s starts with "2026-11-24T19:50:01.123Z" */
static void is_time(const char *s)
{
    assert_non_null(s);
    assert_true(strlen(s) >= 24);
    for (int i = 0; i < 24; i++) {
        const char *fmt = "dddd-dd-ddTdd:dd:dd.dddZ";

        if (fmt[i] == 'd')
            assert_true(s[i] >= '0' && s[i] <= '9');
        else
            assert_int_equal(s[i], fmt[i]);
    }
}

static void text_format(void **st)
{
    struct relay_log lg;
    struct cap c;
    char *text, **l;
    size_t n;

    (void)st;
    unsetenv("JOURNAL_STREAM");
    relay_log_init(&lg, RELAY_LOG_INFO);
    cap_start(&c);
    relay_log(&lg, RELAY_LOG_WARN, "edge#0", "connection refused, retry in %.1fs", 4.1);
    relay_log(&lg, RELAY_LOG_INFO, NULL, "starting");
    relay_log(&lg, RELAY_LOG_DEBUG, NULL, "not shown");
    relay_log_field(&lg, "route", "x"); /* fields are for json only */
    relay_log(&lg, RELAY_LOG_ERROR, "x", "failed");
    text = cap_stop(&c);
    l = lines(text, &n);
    assert_int_equal(n, 3);
    is_time(l[0]);
    assert_string_equal(l[0] + 24, " WARN  edge#0: connection refused, retry in 4.1s");
    assert_string_equal(l[1] + 24, " INFO  relay: starting");
    assert_string_equal(l[2] + 24, " ERROR x: failed");
    free(l);
    free(text);
}

static void json_format(void **st)
{
    struct relay_log lg;
    struct cap c;
    char *text, **l;
    size_t n;
    struct mj *v;

    (void)st;
    unsetenv("JOURNAL_STREAM");
    relay_log_init(&lg, RELAY_LOG_INFO);
    relay_log_set_format(&lg, RELAY_LOG_JSON);
    cap_start(&c);
    relay_log(&lg, RELAY_LOG_WARN, "edge#3",
              "connection refused (not authorized, code 0x87), retry in 4.1s");
    relay_log(&lg, RELAY_LOG_INFO, NULL, "starting");
    relay_log_field(&lg, "route", "x#1");
    relay_log(&lg, RELAY_LOG_WARN, "x#1", "message on \"a\" dropped (bad_topic)");
    relay_log_field(&lg, "route", "r1");
    relay_log_field(&lg, "reason", "expired");
    relay_log(&lg, RELAY_LOG_WARN, "b#0", "message for route r1 dropped (expired)");
    relay_log(&lg, RELAY_LOG_ERROR, "spool edge", "write failed");
    relay_log(&lg, RELAY_LOG_INFO, "edge#2 probe", "still unreachable");
    relay_log_field_int(&lg, "count", -7);
    relay_log(&lg, RELAY_LOG_DEBUG, NULL, "filtered out: its fields go with it");
    relay_log(&lg, RELAY_LOG_ERROR, "we\"ird#x",
              "line\nbreak \"quoted\" \\ tab\t ctl\x01 bad\xff utf8 \xc3\xa9 <b>");
    relay_log(&lg, RELAY_LOG_WARN, "edge#1", "broker sent DISCONNECT (reason 0x8E: taken over)");
    text = cap_stop(&c);
    l = lines(text, &n);
    assert_int_equal(n, 8);

    v = json(l[0]);
    is_time(mj_str(v, "ts"));
    assert_int_equal(strlen(mj_str(v, "ts")), 24);
    assert_string_equal(mj_str(v, "level"), "WARN");
    assert_string_equal(mj_str(v, "who"), "edge#3");
    assert_string_equal(mj_str(v, "broker"), "edge");
    assert_int_equal(mj_num(v, "conn"), 3);
    assert_string_equal(mj_str(v, "msg"),
                        "connection refused (not authorized, code 0x87), retry in 4.1s");
    assert_int_equal(mj_num(v, "reason_code"), 0x87);
    assert_null(mj_get(v, "route"));
    mj_free(v);

    v = json(l[1]);
    assert_string_equal(mj_str(v, "level"), "INFO");
    assert_string_equal(mj_str(v, "who"), "relay");
    assert_null(mj_get(v, "broker"));
    assert_null(mj_get(v, "reason_code"));
    assert_null(mj_get(v, "count"));
    mj_free(v);

    v = json(l[2]); /* a route named like a connection stays a route */
    assert_string_equal(mj_str(v, "route"), "x#1");
    assert_null(mj_get(v, "broker"));
    assert_null(mj_get(v, "conn"));
    mj_free(v);

    v = json(l[3]); /* a connection's line about a route */
    assert_string_equal(mj_str(v, "broker"), "b");
    assert_int_equal(mj_num(v, "conn"), 0);
    assert_string_equal(mj_str(v, "route"), "r1");
    assert_string_equal(mj_str(v, "reason"), "expired");
    mj_free(v);

    v = json(l[4]);
    assert_string_equal(mj_str(v, "level"), "ERROR");
    assert_string_equal(mj_str(v, "broker"), "edge");
    assert_null(mj_get(v, "conn"));
    mj_free(v);

    v = json(l[5]);
    assert_string_equal(mj_str(v, "broker"), "edge");
    assert_int_equal(mj_num(v, "conn"), 2);
    assert_true(mj_get(v, "probe")->b);
    mj_free(v);

    v = json(l[6]); /* the fields of the filtered line did not carry over */
    assert_null(mj_get(v, "count"));
    assert_string_equal(mj_str(v, "who"), "we\"ird#x");
    assert_null(mj_get(v, "broker"));
    assert_string_equal(mj_str(v, "msg"), "line\nbreak \"quoted\" \\ tab\t ctl\x01 bad\xef\xbf\xbd "
                                          "utf8 \xc3\xa9 <b>");
    mj_free(v);

    v = json(l[7]);
    assert_int_equal(mj_num(v, "reason_code"), 0x8E);
    mj_free(v);
    free(l);
    free(text);
}

static void json_extra_fields(void **st)
{
    struct relay_log lg;
    struct cap c;
    char *text, **l;
    size_t n;
    struct mj *v;

    (void)st;
    unsetenv("JOURNAL_STREAM");
    relay_log_init(&lg, RELAY_LOG_INFO);
    relay_log_set_format(&lg, RELAY_LOG_JSON);
    cap_start(&c);
    relay_log_field(&lg, "peer", "192.0.2.1");
    relay_log_field_int(&lg, "count", -7);
    relay_log(&lg, RELAY_LOG_WARN, "http", "refused");
    relay_log(&lg, RELAY_LOG_WARN, "http", "again");
    text = cap_stop(&c);
    l = lines(text, &n);
    assert_int_equal(n, 2);
    v = json(l[0]);
    assert_string_equal(mj_str(v, "peer"), "192.0.2.1");
    assert_true(mj_num(v, "count") == -7);
    mj_free(v);
    v = json(l[1]);
    assert_null(mj_get(v, "peer"));
    mj_free(v);
    free(l);
    free(text);
}

static void rate_limit_and_ring(void **st)
{
    struct relay_log lg;
    const struct relay_log_entry *e;
    struct cap c;
    char *text, **l;
    size_t n;

    (void)st;
    unsetenv("JOURNAL_STREAM");
    relay_log_init(&lg, RELAY_LOG_INFO);
    cap_start(&c);
    for (int i = 0; i < 10; i++)
        relay_log_limited(&lg, 1000 + (uint64_t)i, RELAY_LOG_WARN, "a#0", "lost %d", i);
    relay_log(&lg, RELAY_LOG_INFO, "a#0", "info lines are not kept");
    relay_log_limited(&lg, 12000, RELAY_LOG_WARN, "a#0", "lost %d", 10);
    text = cap_stop(&c);
    l = lines(text, &n);
    assert_int_equal(n, 5);
    assert_string_equal(l[4] + 24, " WARN  a#0: lost 10 (7 similar lines suppressed)");
    free(l);
    free(text);

    /* the ring: newest first; the line before a suppressed burst says how many followed it */
    e = relay_log_ring(&lg, 0);
    assert_non_null(e);
    assert_string_equal(e->msg, "lost 10");
    assert_string_equal(e->who, "a#0");
    assert_int_equal(e->level, RELAY_LOG_WARN);
    assert_int_equal(e->repeated, 0);
    e = relay_log_ring(&lg, 1);
    assert_string_equal(e->msg, "lost 2");
    assert_int_equal(e->repeated, 7);
    assert_string_equal(relay_log_ring(&lg, 3)->msg, "lost 0");
    assert_null(relay_log_ring(&lg, 4));

    /* 50 kept, the oldest dropped */
    cap_start(&c);
    for (int i = 0; i < 60; i++)
        relay_log(&lg, i % 2 ? RELAY_LOG_ERROR : RELAY_LOG_WARN, "b#1", "n=%d", i);
    free(cap_stop(&c));
    assert_string_equal(relay_log_ring(&lg, 0)->msg, "n=59");
    assert_int_equal(relay_log_ring(&lg, 0)->level, RELAY_LOG_ERROR);
    assert_string_equal(relay_log_ring(&lg, 49)->msg, "n=10");
    assert_null(relay_log_ring(&lg, 50));
}

static void journal_prefixes(void **st)
{
    struct relay_log lg;
    struct stat sb;
    struct cap c;
    char env[64], *text, **l;
    size_t n;

    (void)st;
    cap_start(&c);
    assert_int_equal(fstat(STDERR_FILENO, &sb), 0);
    /* stderr is the journal: its device and inode are in $JOURNAL_STREAM */
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)sb.st_dev,
             (unsigned long long)sb.st_ino);
    setenv("JOURNAL_STREAM", env, 1);
    relay_log_init(&lg, RELAY_LOG_DEBUG);
    relay_log(&lg, RELAY_LOG_ERROR, NULL, "e");
    relay_log(&lg, RELAY_LOG_WARN, NULL, "w");
    relay_log(&lg, RELAY_LOG_INFO, NULL, "i");
    relay_log(&lg, RELAY_LOG_DEBUG, NULL, "d");
    relay_log_set_format(&lg, RELAY_LOG_JSON);
    relay_log(&lg, RELAY_LOG_WARN, NULL, "j");
    /* inherited from a parent whose stderr was the journal, ours is not: no prefixes */
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)sb.st_dev,
             (unsigned long long)sb.st_ino + 1);
    setenv("JOURNAL_STREAM", env, 1);
    relay_log_init(&lg, RELAY_LOG_DEBUG);
    relay_log(&lg, RELAY_LOG_WARN, NULL, "not the journal");
    unsetenv("JOURNAL_STREAM");
    relay_log_init(&lg, RELAY_LOG_DEBUG);
    relay_log(&lg, RELAY_LOG_WARN, NULL, "no journal");
    text = cap_stop(&c);
    l = lines(text, &n);
    assert_int_equal(n, 7);
    assert_memory_equal(l[0], "<3>", 3);
    assert_string_equal(l[0] + 3 + 24, " ERROR relay: e");
    assert_memory_equal(l[1], "<4>", 3);
    assert_memory_equal(l[2], "<6>", 3);
    assert_memory_equal(l[3], "<7>", 3);
    assert_string_equal(l[3] + 3 + 24, " DEBUG relay: d");
    assert_memory_equal(l[4], "<4>{", 4); /* journald strips the prefix: the rest is JSON */
    mj_free(json(l[4] + 3));
    assert_string_equal(l[5] + 24, " WARN  relay: not the journal");
    assert_string_equal(l[6] + 24, " WARN  relay: no journal");
    free(l);
    free(text);
}

static void lines_from_below(void **st)
{
    struct relay_log lg;
    struct cap c;
    char *text, **l, msg[64];
    size_t n;

    (void)st;
    unsetenv("JOURNAL_STREAM");
    cap_start(&c);
    relay_log_set_default(NULL);
    relay_log_raw(RELAY_LOG_WARN, "lws", "before main named a log");
    relay_log_init(&lg, RELAY_LOG_INFO);
    relay_log_set_default(&lg);
    relay_log_raw(RELAY_LOG_DEBUG, "lws", "below the level");
    /* a peer makes lws repeat itself: lines that differ in their digits share a budget */
    for (int i = 0; i < 20; i++) {
        snprintf(msg, sizeof(msg), "accept: errno %d", 20 + i);
        relay_log_raw_limited(5000 + (uint64_t)i, RELAY_LOG_ERROR, "lws", msg);
    }
    relay_log_raw_limited(5100, RELAY_LOG_WARN, "lws", "Ran out of header data space");
    relay_log_set_default(NULL);
    text = cap_stop(&c);
    l = lines(text, &n);
    assert_int_equal(n, 5);
    assert_string_equal(l[0] + 24, " WARN  lws: before main named a log");
    assert_string_equal(l[1] + 24, " ERROR lws: accept: errno 20");
    assert_string_equal(l[3] + 24, " ERROR lws: accept: errno 22");
    assert_string_equal(l[4] + 24, " WARN  lws: Ran out of header data space");
    assert_string_equal(relay_log_ring(&lg, 0)->msg, "Ran out of header data space");
    assert_int_equal(relay_log_ring(&lg, 1)->repeated, 17);
    free(l);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_format),       cmocka_unit_test(json_format),
        cmocka_unit_test(json_extra_fields), cmocka_unit_test(rate_limit_and_ring),
        cmocka_unit_test(journal_prefixes),  cmocka_unit_test(lines_from_below),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
