/* mosquitto.h: `mqtt-relay --from-mosquitto FILE` (SPEC.md, Command line). */
#ifndef RELAY_CONF_MOSQUITTO_H
#define RELAY_CONF_MOSQUITTO_H

#include <stdio.h>

/* Reads the Mosquitto 2.0 configuration path (following its include_dir) and prints to out a
 * commented mqtt-relay configuration equivalent to its bridges (SPEC.md, Command line). 0 when
 * printed; otherwise nothing is printed to out, err holds one line ("FILE:LINE: what" for an
 * error in the Mosquitto file) and the result is -EINVAL, -ENOENT/-EACCES (unreadable file),
 * -EIO or -ENOMEM. */
int relay_from_mosquitto(const char *path, FILE *out, FILE *err);

#endif
