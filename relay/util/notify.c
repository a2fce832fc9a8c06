/*
 * notify.c: readiness, watchdog and stop notifications to systemd (packaging/mqtt-relay.service
 * is Type=notify with WatchdogSec). Through libsystemd when the build found it
 * (RELAY_HAVE_SYSTEMD); without it, or when not started by systemd ($NOTIFY_SOCKET unset), every
 * call does nothing.
 */
#include "util/notify.h"

#ifdef RELAY_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

void relay_notify(const char *state)
{
    (void)sd_notify(0, state); /* best effort: nothing to do if systemd is not listening */
}

uint64_t relay_notify_watchdog_ms(void)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    return usec / 2000u ? usec / 2000u : 1; /* half the timeout, as sd_watchdog_enabled(3) says */
}

#else

void relay_notify(const char *state)
{
    (void)state;
}

uint64_t relay_notify_watchdog_ms(void)
{
    return 0;
}

#endif
