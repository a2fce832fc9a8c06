/*
 * internal.h: what the files of the configuration loader share (load.c: the file into a struct
 * relay_config, one parse_* per part; setting.c: reading one libconfig setting, and the
 * "FILE:LINE: what" messages; validate.c: the checks that are not reading, and the pre-scan of
 * integer literals). Each function returns 0 or a negative errno, having written the message
 * into ld->err for -EINVAL. Nothing outside conf/ includes it.
 */
#ifndef RELAY_CONF_INTERNAL_H
#define RELAY_CONF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libconfig.h>

#include "core/config.h"

#define STR_MAX 65535u /* longest string accepted anywhere (an MQTT string's limit) */

struct relay_tpl;

/* Loader state: where errors go and the context ("broker \"edge\": ") they are reported in. */
struct ld {
    const char *path; /* the file as given */
    char *err;
    size_t errlen;
    struct relay_config *cfg;
    char who[128];  /* message prefix naming the broker or route, "" at top level */
    const char *kp; /* key prefix shown in messages: "", "tls.", "relay.", ... */
};

/* ---- setting.c: messages ---- */
const char *cfg_shown(char *buf, size_t cap, const char *s);
unsigned cfg_line_of(const config_setting_t *s);
int cfg_fail(struct ld *ld, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cfg_fail_at(struct ld *ld, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cfg_oom(struct ld *ld);
int cfg_dup_str(struct ld *ld, const char *s, char **out);

/* ---- setting.c: keys, typed values, files ---- */
int cfg_check_keys(struct ld *ld, const config_setting_t *g, const char *const *keys);
int cfg_wrong_type(struct ld *ld, const config_setting_t *s, const char *want);
int cfg_str_value(struct ld *ld, const config_setting_t *s, const char *shown_name,
                  const char **out);
int cfg_get_str(struct ld *ld, const config_setting_t *g, const char *key, const char **out);
/* A setting that is one string or a list / array of strings: *n entries (1 for a string; the
 * caller checks the count), entry i is cfg_str_entry(s, i) (read it with cfg_str_value). */
int cfg_str_list(struct ld *ld, const config_setting_t *s, unsigned *n);
const config_setting_t *cfg_str_entry(const config_setting_t *s, unsigned i);
int cfg_get_int(struct ld *ld, const config_setting_t *g, const char *key, int64_t lo, int64_t hi,
                int64_t dflt, int64_t *out);
int cfg_get_bool(struct ld *ld, const config_setting_t *g, const char *key, bool dflt, bool *out);
int cfg_get_group(struct ld *ld, const config_setting_t *g, const char *key,
                  const config_setting_t **out);
int cfg_get_enum(struct ld *ld, const config_setting_t *g, const char *key,
                 const char *const *choices, const char *hint, int dflt, int *out);
int cfg_resolve(struct ld *ld, const config_setting_t *s, const char *p, char **out);
int cfg_get_file(struct ld *ld, const config_setting_t *g, const char *key, char **out);
int cfg_read_secret_file(struct ld *ld, const config_setting_t *s, const char *v, const char *what,
                         char **out, size_t *out_len);
int cfg_read_password_file(struct ld *ld, const config_setting_t *s, const char *v,
                           struct relay_broker_config *b);

/* ---- validate.c: small syntax checks (true when valid) ---- */
bool cfg_word_chars(const char *s, const char *extra);
bool cfg_printable(const char *s);
bool cfg_host_ok(const char *h, size_t n, bool bracketed);
bool cfg_port_ok(const char *p, size_t n, uint16_t *port);
bool cfg_split_host_port(const char *s, size_t n, const char **host, size_t *hlen, bool *bracketed,
                         const char **port, size_t *plen);
int cfg_parse_url(struct ld *ld, const config_setting_t *s, const char *text, struct relay_url *u);

/* ---- validate.c: across brokers and routes ---- */
int cfg_check_broker_dups(struct ld *ld, const config_setting_t *g, size_t i);
int cfg_check_client_ids(struct ld *ld, const config_setting_t *list);
int cfg_check_route_names(struct ld *ld);
int cfg_check_loops(struct ld *ld, const struct relay_tpl *tpl);

/* ---- broker.c: the brokers list ---- */
int cfg_parse_brokers(struct ld *ld, const config_setting_t *root);
void cfg_broker_cleanup(struct relay_broker_config *b);

/* ---- link.c: tls group, proxies, TCP options, source address ---- */
int cfg_parse_tls(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b);
int cfg_parse_link(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b);
int cfg_parse_relay_proxy(struct ld *ld, const config_setting_t *relay_group);
void cfg_proxy_cleanup(struct relay_proxy_config *px);
/* The proxy URL for messages, its password replaced by "***", quoted like cfg_shown(). */
const char *cfg_proxy_shown(char *buf, size_t cap, const char *text);
/* host matches one of the relay.no_proxy entries. */
bool cfg_no_proxy_match(char *const *list, size_t n, const char *host);
/* ---- state.c: relay.state_dir and the spools kept in it ---- */
/* relay.state_dir, or the default chain (relay_group may be NULL). */
int cfg_state_dir(struct ld *ld, const config_setting_t *relay_group);
/* A broker's spool mode; *is_group when it is a group { dir; max_size; } to read. */
int cfg_spool_mode(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b,
                   bool *is_group);
/* After the brokers: spool.dir of the spools kept in the state directory. */
int cfg_state_spools(struct ld *ld, const config_setting_t *list);

/* ---- validate.c: the file's text, integer literals pre-scanned ---- */
int cfg_read_text(struct ld *ld, int fd, char **text);

#endif
