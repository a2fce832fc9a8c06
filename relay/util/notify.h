/* notify.h: systemd readiness and watchdog notifications (a no-op without libsystemd). */
#ifndef RELAY_UTIL_NOTIFY_H
#define RELAY_UTIL_NOTIFY_H

#include <stdint.h>

/* sd_notify(state) when built with libsystemd and started by systemd ("READY=1",
 * "STOPPING=1", "RELOADING=1", "WATCHDOG=1", ...); does nothing otherwise. */
void relay_notify(const char *state);
/* The interval at which to send "WATCHDOG=1" (half of WatchdogSec), in ms; 0 = no watchdog. */
uint64_t relay_notify_watchdog_ms(void);

#endif
