/* mini_json.h: a strict little JSON reader (RFC 8259) for tests that check what the relay
 * writes (the status API, the json log format): the whole text must be one value; no trailing
 * commas, no duplicate member names, no control characters in strings, \u escapes (surrogate
 * pairs included) decoded to UTF-8. Not for production: recursion, a malloc per value. */
#ifndef MINI_JSON_H
#define MINI_JSON_H

#include <stdbool.h>
#include <stddef.h>

enum mj_type { MJ_NULL, MJ_BOOL, MJ_NUM, MJ_STR, MJ_ARR, MJ_OBJ };

struct mj {
    enum mj_type type;
    bool b;
    double num;
    char *str; /* NUL-terminated (may hold NULs: str_len) */
    size_t str_len;
    struct mj **items; /* array elements, or object values */
    char **keys;       /* object member names */
    size_t n;
};

/* The value of text[0..len), or NULL with a message in err (what and where). */
struct mj *mj_parse(const char *text, size_t len, char *err, size_t errlen);
void mj_free(struct mj *v);
/* obj[key] (NULL when obj is not an object or has no such member). */
const struct mj *mj_get(const struct mj *obj, const char *key);
/* A path of member names and array indexes: "brokers.1.conns.0.state" (NULL when absent). */
const struct mj *mj_path(const struct mj *v, const char *path);
/* Shorthands: the string at path (NULL when absent or not a string), the number (-1e300). */
const char *mj_str(const struct mj *v, const char *path);
double mj_num(const struct mj *v, const char *path);

#endif
