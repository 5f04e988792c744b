/* service_notify.c - see service_notify.h. */
#include "service_notify.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <glib.h>
#include <systemd/sd-daemon.h>

static void notify(const char *state)
{
    static bool told;
    int r = sd_notify(0, state);

    if (r < 0 && !told) {
        told = true;
        /* One line per event: the first assignment names the notice. */
        g_warning("cannot notify systemd (%.*s): %s", (int)strcspn(state, "\n"),
                  state, g_strerror(-r));
    }
}

void service_notify_ready(const char *status)
{
    g_autofree char *state = g_strdup_printf("READY=1\nSTATUS=%s", status);

    notify(state);
}

static gboolean watchdog_ping(gpointer opaque)
{
    notify("WATCHDOG=1");
    return G_SOURCE_CONTINUE;
}

void service_watchdog_start(void)
{
    uint64_t usec = 0;

    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) {
        return;
    }
    /* Twice per period: a late main loop iteration is not a dead one. */
    g_timeout_add(MAX(usec / 2000, 1), watchdog_ping, NULL);
    g_message("systemd watchdog: pinging every %" G_GUINT64_FORMAT " ms",
              MAX(usec / 2000, 1));
}

void service_notify_stopping(void)
{
    notify("STOPPING=1");
}

int service_activated_socket(const char *path)
{
    static int n = -1;

    if (n < 0) {
        /* Once, and never inside MAX(): the call unsets $LISTEN_FDS. */
        n = sd_listen_fds(1);
        n = MAX(n, 0);
    }
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, path, 0) > 0) {
            return fd;
        }
    }
    return -1;
}
