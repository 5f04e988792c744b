/*
 * main.c - postcopy-migrate: drive postcopyd from the command line.
 *
 *   postcopy-migrate [--socket PATH] COMMAND [OPTIONS]
 *
 * Global options come before the command (--socket is also accepted
 * after it); each command parses its own options.
 */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "version.h"

const struct cli_command cli_commands[] = {
    {"attach", cmd_attach,
     "{--pid PID --qmp PATH --name NAME | --domain NAME [--connect URI]} "
     "[--incoming] [--uffd syscall|device]",
     "Hand a running QEMU or libvirt domain (guest RAM in shared memory) "
     "to postcopyd."},
    {"expect", cmd_expect,
     "--domain NAME [--connect URI] [--name NAME] [--json]",
     "Tell postcopyd of an incoming libvirt domain: it attaches it as "
     "soon as libvirt runs it (the libvirt hook does this)."},
    {"migrate", cmd_migrate,
     "{--vm NAME | --domain NAME [--connect URI] [--dest-connect URI] "
     "[--dest-socket PATH]} --to HOST[:PORT] [--mode MODE] [--json] "
     "[--no-wait]",
     "Migrate a VM to the postcopyd at HOST and follow it to the end."},
    {"list", cmd_list, "[--json]",
     "List the VMs attached: name, pid, VMM, role, RAM, migration."},
    {"status", cmd_status, "[--vm NAME | --id ID] [--watch] [--json]",
     "Show the state of the migration; --watch follows it live."},
    {"set", cmd_set,
     "[--vm NAME | --id ID] [max-bandwidth=BYTES/s] [downtime-limit=MS] "
     "[--json]",
     "Change a running migration's bandwidth cap or downtime limit."},
    {"start-postcopy", cmd_simple, "[--vm NAME | --id ID] [--json]",
     "Switch a precopy or hybrid migration to postcopy now."},
    {"metrics", cmd_metrics, "[--json]",
     "Print the daemon's counters (Prometheus text format)."},
    {"cancel", cmd_simple, "[--vm NAME | --id ID] [--json]",
     "Cancel the migration (the source VM keeps running)."},
    {"incoming", cmd_simple, "--vm NAME [--json]",
     "Make this host's postcopyd wait for VM to be migrated in."},
    {"recover", cmd_simple, "[--vm NAME | --id ID] [--json]",
     "Reconnect a paused postcopy migration now (on the source)."},
    {NULL},
};

static void print_top_usage(void)
{
    fprintf(stderr, "usage: " CLI_PROG " [--socket PATH] COMMAND [OPTIONS]\n"
                    "commands:");
    for (const struct cli_command *c = cli_commands; c->name; c++) {
        fprintf(stderr, " %s", c->name);
    }
    fprintf(stderr, " (COMMAND --help for more)\n");
}

static int top_usage_error(const char *what, const char *arg)
{
    fprintf(stderr, CLI_PROG ": %s%s\n", what, arg ? arg : "");
    print_top_usage();
    return CLI_EXIT_USAGE;
}

static char *commands_help(void)
{
    GString *s = g_string_new("Commands:\n");

    for (const struct cli_command *c = cli_commands; c->name; c++) {
        g_string_append_printf(s, "  %-14s %s\n", c->name, c->summary);
    }
    g_string_append(s, "\n" CLI_EXIT_STATUS_HELP);
    return g_string_free(s, FALSE);
}

/* Exits, as --help does: nothing else on that command line matters. */
static gboolean version_cb(const gchar *name, const gchar *value, gpointer data,
                           GError **err)
{
    printf(CLI_PROG " %s\n", POSTCOPYD_VERSION);
    exit(CLI_EXIT_OK);
}

/* Parse the global options; leaves COMMAND [OPTIONS] in @args. */
static bool parse_global(char **socket, GStrv *args, GError **err)
{
    const GOptionEntry entries[] = {
        {"socket", 's', 0, G_OPTION_ARG_FILENAME, socket,
         "Control socket of postcopyd (default " CLI_DEFAULT_SOCKET
         ", or $" CLI_SOCKET_ENV ")",
         "PATH"},
        {"version", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK,
         (gpointer)version_cb, "Print the version and exit", NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("COMMAND [OPTIONS]");
    g_autofree char *help = commands_help();

    g_option_context_set_strict_posix(ctx, TRUE);
    g_option_context_set_summary(ctx, "Drive the postcopyd migration daemon.");
    g_option_context_set_description(ctx, help);
    g_option_context_add_main_entries(ctx, entries, NULL);
    return g_option_context_parse_strv(ctx, args, err);
}

static const struct cli_command *find_command(const char *name)
{
    for (const struct cli_command *c = cli_commands; c->name; c++) {
        if (!strcmp(c->name, name)) {
            return c;
        }
    }
    return NULL;
}

static char *default_socket(void)
{
    const char *env = g_getenv(CLI_SOCKET_ENV);

    return g_strdup(env && *env ? env : CLI_DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
    g_auto(GStrv) args = g_new0(char *, argc + 1);
    g_autoptr(GError) err = NULL;
    g_autofree char *socket = NULL;
    const struct cli_command *cmd;
    struct cli cli = {0};
    int rc;

    /* GLib's --help in the user's locale and charset. */
    setlocale(LC_ALL, "");
    g_set_prgname(CLI_PROG);
    for (int i = 0; i < argc; i++) {
        args[i] = g_strdup(argv[i]);
    }
    if (!parse_global(&socket, &args, &err)) {
        return top_usage_error(err->message, NULL);
    }
    if (!args[0] || !args[1]) {
        return top_usage_error("missing command", NULL);
    }
    cmd = find_command(args[1]);
    if (!cmd) {
        return top_usage_error("unknown command: ", args[1]);
    }
    cli.socket = socket ? g_steal_pointer(&socket) : default_socket();
    rc = cmd->run(&cli, cmd, g_strv_length(args) - 1, args + 1);
    g_free(cli.socket);
    return rc;
}
