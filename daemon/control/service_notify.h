/*
 * service_notify.h - postcopyd under systemd (Type=notify): READY=1 once
 * every socket listens, so that units ordered after it (libvirt) find
 * them; WATCHDOG=1 from the main loop at half of WatchdogSec, so that a
 * wedged daemon is restarted (a restart carries its migrations on, see
 * README "Failure handling"); STOPPING=1 on the way out.  Socket
 * activation: the control and attach sockets postcopyd.socket listens on.
 *
 * Contract: without $NOTIFY_SOCKET (not started by systemd) every call is
 * a no-op; a failure to notify is logged once and never fatal.  Without
 * $LISTEN_FDS, service_activated_socket() finds nothing.
 */
#ifndef POSTCOPYD_SERVICE_NOTIFY_H
#define POSTCOPYD_SERVICE_NOTIFY_H

/* READY=1 with a STATUS= line. */
void service_notify_ready(const char *status);
/* If systemd asked for a watchdog: ping it from the default main context. */
void service_watchdog_start(void);
void service_notify_stopping(void);

/*
 * The listening stream socket systemd passed for @path, or -1: make it.
 * The first call takes the passed fds (close-on-exec, $LISTEN_FDS unset);
 * a socket handed over stays systemd's: never unlink its path.
 */
int service_activated_socket(const char *path);

#endif /* POSTCOPYD_SERVICE_NOTIFY_H */
