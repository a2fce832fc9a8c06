/*
 * state.c: relay.state_dir, where automatic spools live, and each broker's spool setting.
 *
 *   spool = "auto"          the default: a spool in <state_dir>/<broker name>, used while the
 *                           broker's round trip makes end-to-end acknowledgement the bound
 *   spool = true            always spooled, in <state_dir>/<broker name>
 *   spool = { dir; ... }    always spooled, in dir (as before)
 *   spool = false           never spooled
 *
 * The state directory: relay.state_dir (relative to the configuration file), else
 * $STATE_DIRECTORY (systemd's StateDirectory=), else /var/lib/mqtt-relay when it can be written
 * (or created), else $XDG_STATE_HOME/mqtt-relay, else ~/.local/state/mqtt-relay. One that
 * cannot be written is kept with the reason: the relay then runs with spool = "auto" off and
 * says so once; spool = true is refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/internal.h"

#define VAR_LIB_DIR "/var/lib/mqtt-relay"

/* Whether path is (or can be made) a directory we can write: it exists as one, writable; or
 * its nearest existing ancestor is a writable directory. false with the reason in why. */
static bool dir_usable(const char *path, char *why, size_t cap)
{
    char *p = strdup(path);
    struct stat st;
    bool exists = true;

    if (!p) {
        snprintf(why, cap, "out of memory");
        return false;
    }
    for (;;) {
        if (stat(p, &st) == 0)
            break;
        if (errno != ENOENT) {
            snprintf(why, cap, "%s: %s", p, strerror(errno));
            free(p);
            return false;
        }
        exists = false;
        char *slash = strrchr(p, '/');
        if (!slash || slash == p) {
            strcpy(p, slash ? "/" : ".");
            continue;
        }
        *slash = '\0';
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, cap, "%s is not a directory", p);
        free(p);
        return false;
    }
    if (access(p, W_OK | X_OK) != 0) {
        snprintf(why, cap, "%s%s is not writable (%s)", exists ? "" : "its parent ", p,
                 strerror(errno));
        free(p);
        return false;
    }
    free(p);
    return true;
}

/* The first entry of a colon-separated list (systemd gives one path per StateDirectory=). */
static char *first_path(const char *list)
{
    const char *c = strchr(list, ':');

    return c ? strndup(list, (size_t)(c - list)) : strdup(list);
}

int cfg_state_dir(struct ld *ld, const config_setting_t *relay_group)
{
    struct relay_config *cfg = ld->cfg;
    const char *v = NULL, *env;
    char why[512];
    int rc;

    if (relay_group && (rc = cfg_get_str(ld, relay_group, "state_dir", &v)) < 0)
        return rc;
    if (v) {
        if (!*v)
            return cfg_fail(ld, config_setting_get_member(relay_group, "state_dir"),
                            "relay.state_dir must not be empty");
        if ((rc = cfg_resolve(ld, config_setting_get_member(relay_group, "state_dir"), v,
                              &cfg->state_dir)) < 0)
            return rc;
        cfg->state_dir_from = "relay.state_dir";
    } else if ((env = getenv("STATE_DIRECTORY")) && env[0] == '/') {
        cfg->state_dir = first_path(env);
        cfg->state_dir_from = "$STATE_DIRECTORY";
    } else if (dir_usable(VAR_LIB_DIR, why, sizeof(why))) {
        cfg->state_dir = strdup(VAR_LIB_DIR);
        cfg->state_dir_from = "default";
    } else if ((env = getenv("XDG_STATE_HOME")) && env[0] == '/') {
        if (asprintf(&cfg->state_dir, "%s/mqtt-relay", env) < 0)
            cfg->state_dir = NULL;
        cfg->state_dir_from = "$XDG_STATE_HOME";
    } else if ((env = getenv("HOME")) && env[0] == '/') {
        if (asprintf(&cfg->state_dir, "%s/.local/state/mqtt-relay", env) < 0)
            cfg->state_dir = NULL;
        cfg->state_dir_from = "$HOME";
    } else {
        cfg->state_dir_from = "none";
        if (!(cfg->state_dir_why = strdup(VAR_LIB_DIR " is not writable and $HOME is not set")))
            return cfg_oom(ld);
        return 0;
    }
    if (!cfg->state_dir)
        return cfg_oom(ld);
    if (!dir_usable(cfg->state_dir, why, sizeof(why)) && !(cfg->state_dir_why = strdup(why)))
        return cfg_oom(ld);
    return 0;
}

/* spool = "auto" | true | false | { dir = ...; max_size = ...; } (the group: parse_limits). */
int cfg_spool_mode(struct ld *ld, const config_setting_t *g, struct relay_broker_config *b,
                   bool *is_group)
{
    const config_setting_t *s = config_setting_get_member(g, "spool");
    const char *v;

    *is_group = false;
    b->spool.mode = RELAY_SPOOL_AUTO;
    b->spool.max_size = RELAY_SPOOL_MAX_SIZE;
    if (!s)
        return 0;
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_GROUP:
        b->spool.mode = RELAY_SPOOL_ALWAYS;
        *is_group = true;
        return 0;
    case CONFIG_TYPE_BOOL:
        b->spool.mode = config_setting_get_bool(s) ? RELAY_SPOOL_ALWAYS : RELAY_SPOOL_OFF;
        return 0;
    case CONFIG_TYPE_STRING:
        v = config_setting_get_string(s);
        if (!strcmp(v, "auto"))
            return 0;
        break;
    default:
        break;
    }
    return cfg_fail(ld, s,
                    "spool must be \"auto\", true, false or a group { dir = \"...\"; max_size = "
                    "...; }");
}

/* After the brokers are read: the spools that live in the state directory. */
int cfg_state_spools(struct ld *ld, const config_setting_t *list)
{
    struct relay_config *cfg = ld->cfg;

    for (size_t i = 0; i < cfg->n_brokers; i++) {
        struct relay_broker_config *b = &cfg->brokers[i];
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);

        if (b->spool.dir || b->spool.mode == RELAY_SPOOL_OFF)
            continue;
        if (b->spool.mode == RELAY_SPOOL_ALWAYS && (cfg->state_dir_why || !cfg->state_dir))
            return cfg_fail(ld, config_setting_get_member(g, "spool"),
                            "broker \"%s\": spool = true keeps the spool in the state directory "
                            "%s, which cannot be used: %s (set relay.state_dir, or spool = { dir "
                            "= \"...\"; })",
                            b->name, cfg->state_dir ? cfg->state_dir : "(none)",
                            cfg->state_dir_why ? cfg->state_dir_why : "none found");
        if (cfg->state_dir_why || !cfg->state_dir)
            continue; /* auto without a state directory: off (the relay says so once) */
        if (asprintf(&b->spool.dir, "%s/%s", cfg->state_dir, b->name) < 0) {
            b->spool.dir = NULL;
            return cfg_oom(ld);
        }
        for (size_t j = 0; j < cfg->n_brokers; j++)
            if (j != i && cfg->brokers[j].spool.dir &&
                !strcmp(cfg->brokers[j].spool.dir, b->spool.dir))
                return cfg_fail(ld, config_setting_get_elem(list, (unsigned)j),
                                "broker \"%s\": spool.dir %s is also where broker \"%s\" keeps "
                                "its spool in the state directory",
                                cfg->brokers[j].name, b->spool.dir, b->name);
    }
    return 0;
}
