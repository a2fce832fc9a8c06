/*
 * load.h: the configuration file (libconfig syntax, SPEC.md) into a struct relay_config.
 * conf/ is the only folder that includes <libconfig.h>.
 */
#ifndef RELAY_CONF_LOAD_H
#define RELAY_CONF_LOAD_H

#include <stddef.h>

#include "core/config.h"

/* Loads and validates path. 0 on success (cfg filled; release with relay_config_cleanup()).
 * -EINVAL on an invalid file: err receives one line "FILE:LINE: what is wrong" (no newline);
 * -ENOENT/-EACCES when the file cannot be read (err says so); -ENOMEM. On error cfg is left
 * empty (safe to pass to relay_config_cleanup()). */
int relay_config_load(const char *path, struct relay_config *cfg, char *err, size_t errlen);
void relay_config_cleanup(struct relay_config *cfg);

#endif
