/*
 * main.c - postcopyd: load the configuration, probe the kernel, serve the
 * attach, peer and control sockets until SIGTERM / SIGINT.
 */
#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

#include "daemon.h"
#include "service_notify.h"

static GLogLevelFlags log_levels;
/* stderr is a journald stream: log records with their priority instead. */
static bool log_to_journal;
/*
 * Migrations may still run when the daemon exits (their VMMs hold the
 * uffds, so nothing is lost); the daemon's state stays reachable until
 * then, not freed under their feet.
 */
static struct daemon d;

static const char *log_level_name(GLogLevelFlags level)
{
    return (level & G_LOG_LEVEL_ERROR)      ? "error"
           : (level & G_LOG_LEVEL_CRITICAL) ? "critical"
           : (level & G_LOG_LEVEL_WARNING)  ? "warning"
           : (level & G_LOG_LEVEL_MESSAGE)  ? "info"
           : (level & G_LOG_LEVEL_INFO)     ? "info"
                                            : "debug";
}

/*
 * Every g_log() call of the daemon ends here (GLib's default handler
 * forwards to the structured writer).  Under systemd, stderr is the
 * journal: records carry their priority, so `journalctl -p warning`
 * finds warnings, and journald adds the timestamp.  Anywhere else, one
 * line per message, "postcopyd: LEVEL: text" (tests read it).
 */
static GLogWriterOutput log_writer(GLogLevelFlags level,
                                   const GLogField *fields, gsize n_fields,
                                   gpointer opaque)
{
    const char *message = NULL;

    if (!(level & log_levels & G_LOG_LEVEL_MASK)) {
        return G_LOG_WRITER_HANDLED;
    }
    if (log_to_journal &&
        g_log_writer_journald(level, fields, n_fields, opaque) ==
            G_LOG_WRITER_HANDLED) {
        return G_LOG_WRITER_HANDLED;
    }
    for (gsize i = 0; i < n_fields && !message; i++) {
        if (!strcmp(fields[i].key, "MESSAGE") && fields[i].length < 0) {
            message = fields[i].value;
        }
    }
    fprintf(stderr, "postcopyd: %s: %s\n", log_level_name(level),
            message ? message : "");
    return G_LOG_WRITER_HANDLED;
}

/* Why the daemon could not start, once, at error priority in a journal. */
static int exit_failure(int status, const GError *err)
{
    const GLogField f[] = {
        {"PRIORITY", "3", -1},
        {"MESSAGE", err->message, -1},
    };

    if (log_to_journal &&
        g_log_writer_journald(G_LOG_LEVEL_CRITICAL, f, G_N_ELEMENTS(f), NULL) ==
            G_LOG_WRITER_HANDLED) {
        return status;
    }
    fprintf(stderr, "postcopyd: %s\n", err->message);
    return status;
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
    log_to_journal = g_log_writer_is_journald(fileno(stderr));
    if (!config_load(&cfg, argc, argv, &err)) {
        return exit_failure(POSTCOPYD_EXIT_USAGE, err);
    }
    log_levels = config_log_levels(&cfg);
    g_log_set_writer_func(log_writer, NULL, NULL);
    if (!daemon_init(&d, &cfg, &err)) {
        return exit_failure(POSTCOPYD_EXIT_START, err);
    }
    d.control =
        control_server_new(cfg.control_socket, daemon_commands, &d, &err);
    if (d.control) {
        control_server_set_policy(d.control, &d.control_policy);
    }
    if (!d.control ||
        !peercred_socket_apply(cfg.control_socket, &d.control_policy, &err) ||
        !daemon_start_listeners(&d, &err)) {
        return exit_failure(POSTCOPYD_EXIT_START, err);
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
