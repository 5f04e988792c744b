/*
 * main.c - postcopyd: load the configuration, probe the kernel, serve the
 * attach, peer and control sockets until SIGTERM / SIGINT (SIGHUP
 * rereads the configuration); log to stderr or, under systemd, the
 * journal.
 */
#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

#include "daemon.h"
#include "dest_role.h"
#include "reattach.h"
#include "service_notify.h"
#include "source_role.h"

/* Read by every thread that logs, changed by a SIGHUP reload. */
static gint log_levels;
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

    if (!(level & g_atomic_int_get(&log_levels) & G_LOG_LEVEL_MASK)) {
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

struct run {
    GMainLoop *loop;
    struct postcopyd_config *cfg;
    int argc;
    char **argv;
};

static gboolean on_sigterm(gpointer opaque)
{
    struct run *r = opaque;

    g_message("stopping: SIGTERM");
    g_main_loop_quit(r->loop);
    return G_SOURCE_CONTINUE;
}

static gboolean on_sigint(gpointer opaque)
{
    struct run *r = opaque;

    g_message("stopping: SIGINT");
    g_main_loop_quit(r->loop);
    return G_SOURCE_CONTINUE;
}

/*
 * SIGHUP reloads the configuration.  Only log-level takes effect at once:
 * sockets, keys and TLS are in use by running migrations, so a change to
 * them is named and left for the next start.  A bad file changes nothing.
 */
static gboolean on_sighup(gpointer opaque)
{
    struct run *r = opaque;
    struct postcopyd_config now = {0};
    g_autoptr(GError) err = NULL;
    g_autofree char *changed = NULL;
    g_autofree char *later = NULL;
    char *level;

    if (!config_load(&now, r->argc, r->argv, &err)) {
        g_warning("SIGHUP: configuration not reloaded, the running one "
                  "stays: %s",
                  err->message);
        return G_SOURCE_CONTINUE;
    }
    changed = config_diff(r->cfg, &now);
    /* log-level applies now; whatever else differs waits for a restart. */
    level = r->cfg->log_level;
    r->cfg->log_level = now.log_level;
    later = config_diff(r->cfg, &now);
    now.log_level = level; /* the old one, freed with @now */
    g_atomic_int_set(&log_levels, config_log_levels(r->cfg));
    g_message("SIGHUP: configuration reloaded%s%s, log-level %s%s%s",
              changed ? "" : ", nothing changed",
              changed && !later ? ", all in effect" : "", r->cfg->log_level,
              later ? "; in effect after a restart: " : "", later ? later : "");
    config_free(&now);
    return G_SOURCE_CONTINUE;
}

/* The control socket systemd passed (postcopyd.socket), or a new one. */
static struct control_server *control_open(const char *path, GError **err)
{
    int fd = service_activated_socket(path);

    if (fd < 0) {
        return control_server_new(path, daemon_commands, &d, err);
    }
    g_message("control socket %s: from systemd", path);
    /* The main loop must never block in accept(). */
    g_unix_set_fd_nonblocking(fd, TRUE, NULL);
    return control_server_new_from_fd(fd, daemon_commands, &d);
}

static bool start(struct postcopyd_config *cfg, GError **err)
{
    if (!daemon_init(&d, cfg, err)) {
        return false;
    }
    d.roles = (struct daemon_roles){
        .accept_control = dest_accept_control,
        .accept_data = dest_accept_data,
        .restore_dest = dest_restore,
        .restore_source = source_restore,
        .source_start = source_start,
        .source_recover = source_recover,
        .source_cancel = source_cancel,
    };
    d.control = control_open(cfg->control_socket, err);
    if (!d.control) {
        return false;
    }
    d.attach_fd = service_activated_socket(cfg->attach_socket);
    if (d.attach_fd >= 0) {
        g_message("attach socket %s: from systemd", cfg->attach_socket);
    }
    control_server_set_policy(d.control, &d.control_policy);
    if (!peercred_socket_apply(cfg->control_socket, &d.control_policy, err) ||
        !daemon_start_listeners(&d, err)) {
        return false;
    }
    daemon_reattach_domains(&d);
    return true;
}

/* Every exit path: the sockets this daemon made go away. */
static void stop(void)
{
    daemon_shutdown(&d);
    g_clear_pointer(&d.control, control_server_free);
}

int main(int argc, char **argv)
{
    struct postcopyd_config cfg = {0};
    struct run r = {.cfg = &cfg, .argc = argc, .argv = argv};
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
    /* Before any socket exists: a signal from now on stops cleanly. */
    r.loop = loop = g_main_loop_new(NULL, FALSE);
    g_unix_signal_add(SIGTERM, on_sigterm, &r);
    g_unix_signal_add(SIGINT, on_sigint, &r);
    g_unix_signal_add(SIGHUP, on_sighup, &r);
    if (!start(&cfg, &err)) {
        /* No thread runs yet: nothing else holds the configuration. */
        stop();
        config_free(&cfg);
        return exit_failure(POSTCOPYD_EXIT_START, err);
    }
    g_message("ready: control socket %s", cfg.control_socket);
    service_watchdog_start();
    service_notify_ready("serving: peers, attach and control sockets");
    g_main_loop_run(loop);
    service_notify_stopping();
    stop();
    /*
     * Migrations still running keep their threads; exiting leaves the
     * VMMs holding their uffds, so faults wait instead of reading stale
     * memory (DESIGN.md, "Attach").
     */
    config_free(&cfg);
    return POSTCOPYD_EXIT_OK;
}
