/*
 * cmd_status.c - `postcopy-migrate status`: the migration's state now,
 * or (--watch) followed live to its end.
 */
#include <stdio.h>

#include "cli.h"
#include "follow.h"
#include "summary.h"

static int show(struct cli *cli, struct control_conn *c, const char *vm,
                const char *id)
{
    g_autoptr(JsonObject) args = follow_vm_args(vm, id);
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) stats =
        control_conn_execute(c, "query-migrate", args, &err);

    if (!stats) {
        return cli_fail(cli, "status", err);
    }
    if (cli->json) {
        cli_print_json(stats);
    } else {
        summary_print(stdout, stats);
    }
    return CLI_EXIT_OK;
}

int cmd_status(struct cli *cli, const struct cli_command *cmd, int argc,
               char **argv)
{
    g_autofree char *vm = NULL;
    g_autofree char *id = NULL;
    gboolean watch = FALSE;
    const GOptionEntry entries[] = {
        {"vm", 0, 0, G_OPTION_ARG_STRING, &vm, "VM to report on", "NAME"},
        {"id", 0, 0, G_OPTION_ARG_STRING, &id,
         "The migration with this id (as migrate --no-wait printed it)", "ID"},
        {"watch", 'w', 0, G_OPTION_ARG_NONE, &watch,
         "Follow the migration until it ends", NULL},
        {NULL},
    };
    struct control_conn *c;
    int rc;

    if (!cli_parse(cli, cmd, entries, argc, argv)) {
        return CLI_EXIT_USAGE;
    }
    c = cli_connect(cli);
    if (!c) {
        return CLI_EXIT_FAIL;
    }
    rc = watch ? follow_migration(cli, c, vm, id, false) : show(cli, c, vm, id);
    control_conn_close(c);
    return rc;
}
