/*
 * template.h: destination topic templates ("site-a/${1}/cmd/${#}", SPEC.md) compiled against
 * their route's source filter, expanded without allocation, and the overlap test the static
 * loop check (route/loopguard.c) is built on.
 */
#ifndef RELAY_ROUTE_TEMPLATE_H
#define RELAY_ROUTE_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A compiled template: literal pieces and placeholders. Owned by the caller (init/cleanup). */
enum relay_tpl_kind { RELAY_TPL_LIT = 0, RELAY_TPL_TOPIC, RELAY_TPL_LEVEL, RELAY_TPL_REST };

struct relay_tpl_part {
    enum relay_tpl_kind kind;
    uint8_t level;   /* RELAY_TPL_LEVEL: 1..9 */
    bool drop_slash; /* RELAY_TPL_REST: a literal '/' precedes it and is dropped when the
                        '#' matched nothing (the '/' is then not in the previous literal) */
    const char *lit; /* RELAY_TPL_LIT */
    size_t lit_len;
};

struct relay_tpl {
    struct relay_tpl_part *parts;
    size_t n_parts;
    char *buf;     /* storage for the literals */
    bool identity; /* exactly "${topic}": output == input, a fast path */
    /* the source filter's shape, recorded at compile time */
    uint8_t n_plus;         /* number of '+' levels */
    uint16_t plus_level[9]; /* 0-based level index of the 1st..9th '+' */
    int hash_level;         /* 0-based level index of a trailing '#', -1 if none */
};

/* Compiles template text for a route whose source filter is filter. 0, or -EINVAL with a
 * message in err ("template refers to ${3} but the filter has 1 '+'", "template contains a
 * wildcard", "unknown placeholder ${x}", "${#} but the filter has no '#'"), or -ENOMEM. */
int relay_tpl_compile(struct relay_tpl *t, const char *text, const char *filter, char *err,
                      size_t errlen);
void relay_tpl_cleanup(struct relay_tpl *t);

/* Expands t for topic (a topic name matching the filter t was compiled with) into out.
 * 0 and *len set; -ENOSPC if cap is too small; -EINVAL if the result is not a valid topic name
 * (empty, an empty level substituted for ${N}, over 65535 bytes): the caller drops and counts
 * "bad_topic". Never allocates. */
int relay_tpl_expand(const struct relay_tpl *t, const uint8_t *topic, size_t topic_len,
                     uint8_t *out, size_t cap, size_t *len);

/* True if some topic produced by template t (compiled for source filter src_filter) can match
 * filter dst_filter (conservative: may say true when unsure, never false when they overlap). */
bool relay_tpl_overlaps(const struct relay_tpl *t, const char *src_filter, const char *dst_filter);

#endif
