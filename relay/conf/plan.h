/* plan.h: `mqtt-relay -c FILE --check`: the resolved plan on stdout. */
#ifndef RELAY_CONF_PLAN_H
#define RELAY_CONF_PLAN_H

#include <stdio.h>

#include "core/config.h"

/* Prints the resolved plan (--check) to out: brokers, connections and client ids, and for each
 * route the exact subscription and an example mapping. Never prints a password. */
void relay_config_print_plan(const struct relay_config *cfg, FILE *out);
/* Prints "FILE:LINE: warning: ..." lines to out (--check prints them on stderr): a setting a
 * broker's profile says it will refuse, a route from a BifroMQ-profile broker with no spool on
 * its destination. Nothing when all is well. */
void relay_config_print_warnings(const struct relay_config *cfg, FILE *out);

#endif
