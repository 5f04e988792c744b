/*
 * service_notify.h - postcopyd under systemd (Type=notify): READY=1 once
 * every socket listens, so that units ordered after it (libvirt) find
 * them; WATCHDOG=1 from the main loop at half of WatchdogSec, so that a
 * wedged daemon is restarted (a restart carries its migrations on, see
 * README "Failure handling"); STOPPING=1 on the way out.
 *
 * Contract: without $NOTIFY_SOCKET (not started by systemd) every call is
 * a no-op; a failure to notify is logged once and never fatal.
 */
#ifndef POSTCOPYD_SERVICE_NOTIFY_H
#define POSTCOPYD_SERVICE_NOTIFY_H

/* READY=1 with a STATUS= line. */
void service_notify_ready(const char *status);
/* If systemd asked for a watchdog: ping it from the default main context. */
void service_watchdog_start(void);
void service_notify_stopping(void);

#endif /* POSTCOPYD_SERVICE_NOTIFY_H */
