/*
 * main.c - postcopyd: load the configuration, probe the kernel, serve the
 * attach, peer and control sockets until SIGTERM / SIGINT.
 */
#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>

#include "daemon.h"
#include "service_notify.h"

static GLogLevelFlags log_levels;
/*
 * Migrations may still run when the daemon exits (their VMMs hold the
 * uffds, so nothing is lost); the daemon's state stays reachable until
 * then, not freed under their feet.
 */
static struct daemon d;

/* One line per message: "postcopyd: LEVEL: text", to stderr (journal). */
static void log_handler(const gchar *domain, GLogLevelFlags level,
                        const gchar *message, gpointer opaque)
{
    const char *name = (level & G_LOG_LEVEL_ERROR)      ? "error"
                       : (level & G_LOG_LEVEL_CRITICAL) ? "critical"
                       : (level & G_LOG_LEVEL_WARNING)  ? "warning"
                       : (level & G_LOG_LEVEL_MESSAGE)  ? "info"
                       : (level & G_LOG_LEVEL_INFO)     ? "info"
                                                        : "debug";

    if (!(level & log_levels & G_LOG_LEVEL_MASK)) {
        return;
    }
    fprintf(stderr, "postcopyd: %s: %s\n", name, message);
}

static gboolean on_signal(gpointer opaque)
{
    g_main_loop_quit(opaque);
    return G_SOURCE_REMOVE;
}

int main(int argc, char **argv)
{
    struct postcopyd_config cfg = {0};
    g_autoptr(GError) err = NULL;
    g_autoptr(GMainLoop) loop = NULL;

    /* GLib's --help and messages in the operator's locale and charset. */
    setlocale(LC_ALL, "");
    /* A dead peer must not kill the daemon: send errors come back. */
    signal(SIGPIPE, SIG_IGN);
    if (!config_load(&cfg, argc, argv, &err)) {
        fprintf(stderr, "postcopyd: %s\n", err->message);
        return POSTCOPYD_EXIT_USAGE;
    }
    log_levels = config_log_levels(&cfg);
    g_log_set_default_handler(log_handler, NULL);
    if (!daemon_init(&d, &cfg, &err)) {
        fprintf(stderr, "postcopyd: %s\n", err->message);
        return POSTCOPYD_EXIT_START;
    }
    d.control =
        control_server_new(cfg.control_socket, daemon_commands, &d, &err);
    if (d.control) {
        control_server_set_policy(d.control, &d.control_policy);
    }
    if (!d.control ||
        !peercred_socket_apply(cfg.control_socket, &d.control_policy, &err) ||
        !daemon_start_listeners(&d, &err)) {
        fprintf(stderr, "postcopyd: %s\n", err->message);
        return POSTCOPYD_EXIT_START;
    }
    g_message("ready: control socket %s", cfg.control_socket);
    loop = g_main_loop_new(NULL, FALSE);
    g_unix_signal_add(SIGTERM, on_signal, loop);
    g_unix_signal_add(SIGINT, on_signal, loop);
    service_watchdog_start();
    service_notify_ready("serving: peers, attach and control sockets");
    g_main_loop_run(loop);
    service_notify_stopping();
    g_message("shutting down");
    daemon_shutdown(&d);
    control_server_free(d.control);
    /*
     * Migrations still running keep their threads; exiting leaves the
     * VMMs holding their uffds, so faults wait instead of reading stale
     * memory (DESIGN.md, "Attach").
     */
    config_free(&cfg);
    return POSTCOPYD_EXIT_OK;
}
