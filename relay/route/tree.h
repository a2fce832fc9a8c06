/*
 * tree.h: items (the core's routes) by their topic filters, as a tree of topic levels, so that
 * finding the items a topic matches costs the topic's depth, not the number of filters.
 * Built once per configuration; read-only after.
 */
#ifndef RELAY_ROUTE_TREE_H
#define RELAY_ROUTE_TREE_H

#include <stddef.h>
#include <stdint.h>

struct relay_tree;
typedef int (*relay_tree_fn)(void *item, void *arg);

/* Adds item under filter (a valid filter without "$share/G/"; kept by pointer: it must outlive
 * the tree). *root may be NULL (created). 0 or -ENOMEM. */
int relay_tree_add(struct relay_tree **root, const char *filter, size_t len, void *item);
void relay_tree_free(struct relay_tree *t);
/* Calls fn for each item whose filter matches topic (a leading '+' or '#' not matching a
 * '$' topic), at most once each; stops at and returns fn's first nonzero result. */
int relay_tree_match(const struct relay_tree *t, const uint8_t *topic, size_t len, relay_tree_fn fn,
                     void *arg);

#endif
