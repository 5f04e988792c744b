/*
 * cli.h - the frame of postcopy-migrate: the command table, option
 * parsing shared by every command, and how results and failures are
 * reported.
 *
 * Contract: exit status 0 on success, 1 on failure (one line on stderr:
 * "postcopy-migrate: REASON"; with --json also {"error": {"class",
 * "desc"}} on stdout), 2 on bad usage (the reason and the command's
 * usage line on stderr).  Adding a command = a function + one row of
 * cli_commands[] (main.c).
 */
#ifndef POSTCOPY_MIGRATE_CLI_H
#define POSTCOPY_MIGRATE_CLI_H

#include <stdbool.h>
#include <json-glib/json-glib.h>

#include "client.h"

#define CLI_PROG           "postcopy-migrate"
#define CLI_DEFAULT_SOCKET "/run/postcopyd/control.sock"
#define CLI_SOCKET_ENV     "POSTCOPYD_SOCKET"
/* migrate --domain reaches the destination host with this (else ssh). */
#define CLI_SSH_ENV "POSTCOPY_MIGRATE_SSH"

#define CLI_EXIT_STATUS_HELP                                                   \
    "Exit status:\n"                                                           \
    "  0  done (migrate: the migration completed)\n"                           \
    "  1  failed: the daemon refused, the migration failed or was cancelled\n" \
    "  2  bad usage\n"

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,
    CLI_EXIT_USAGE = 2,
};

struct cli {
    char *socket; /* --socket, else $POSTCOPYD_SOCKET, else the default */
    gboolean json;
};

struct cli_command {
    const char *name;
    int (*run)(struct cli *cli, const struct cli_command *cmd, int argc,
               char **argv);
    const char *usage; /* the arguments, for the usage line */
    const char *summary;
};

extern const struct cli_command cli_commands[];

int cmd_migrate(struct cli *cli, const struct cli_command *cmd, int argc,
                char **argv);
int cmd_attach(struct cli *cli, const struct cli_command *cmd, int argc,
               char **argv);
int cmd_expect(struct cli *cli, const struct cli_command *cmd, int argc,
               char **argv);
int cmd_list(struct cli *cli, const struct cli_command *cmd, int argc,
             char **argv);
int cmd_metrics(struct cli *cli, const struct cli_command *cmd, int argc,
                char **argv);
int cmd_set(struct cli *cli, const struct cli_command *cmd, int argc,
            char **argv);
int cmd_status(struct cli *cli, const struct cli_command *cmd, int argc,
               char **argv);
/* One request with --vm; see cmd_simple.c's table. */
int cmd_simple(struct cli *cli, const struct cli_command *cmd, int argc,
               char **argv);

/*
 * Parse @cmd's options (@entries, NULL-terminated, plus --socket and
 * --json) from @argv, where argv[0] is the command name.  On bad usage
 * prints it and returns false: exit with CLI_EXIT_USAGE.
 */
bool cli_parse(struct cli *cli, const struct cli_command *cmd,
               const GOptionEntry *entries, int argc, char **argv);

/* The same, leaving the words that are no option in @rest (g_strfreev). */
bool cli_parse_rest(struct cli *cli, const struct cli_command *cmd,
                    const GOptionEntry *entries, int argc, char **argv,
                    GStrv *rest);

/* Print the reason and usage line; returns CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

/* Report @err (prefixed with @what, if any); returns CLI_EXIT_FAIL. */
int cli_fail(struct cli *cli, const char *what, const GError *err);

/* Connect to the daemon, or NULL after cli_fail(). */
struct control_conn *cli_connect(struct cli *cli);

/* Print @node as indented JSON on stdout. */
void cli_print_json(JsonNode *node);

/*
 * A command with no options of its own that shows one query: @execute's
 * reply as JSON with --json, else through @print.  Returns the exit status.
 */
int cli_query_print(struct cli *cli, const struct cli_command *cmd, int argc,
                    char **argv, const char *execute,
                    void (*print)(JsonNode *reply));

#endif /* POSTCOPY_MIGRATE_CLI_H */
