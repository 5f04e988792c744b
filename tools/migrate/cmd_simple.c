/*
 * cmd_simple.c - the commands that send one request with an optional or
 * required --vm and report its result: cancel, incoming.  A new command
 * of this kind is one row of simple_cmds[] plus its cli_commands[] row.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "follow.h"
#include "jsonq.h"

struct simple_cmd {
    const char *name;
    const char *execute;
    bool vm_required;
    const char *done; /* printed on success, before the VM's name */
};

static const struct simple_cmd simple_cmds[] = {
    {"cancel", "migrate-cancel", false, "cancelling the migration of"},
    {"incoming", "migrate-incoming", true,
     "waiting for the incoming migration of"},
    {"recover", "migrate-recover", false, "reconnecting the migration of"},
    {"start-postcopy", "migrate-start-postcopy", false,
     "postcopy at the next round's end for the migration of"},
};

static const struct simple_cmd *find_simple(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(simple_cmds); i++) {
        if (!strcmp(simple_cmds[i].name, name)) {
            return &simple_cmds[i];
        }
    }
    g_assert_not_reached();
}

static int send_simple(struct cli *cli, const struct simple_cmd *sc,
                       const char *vm, const char *id)
{
    g_autoptr(JsonObject) args = follow_vm_args(vm, id);
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) ret = NULL;
    struct control_conn *c = cli_connect(cli);

    if (!c) {
        return CLI_EXIT_FAIL;
    }
    ret = control_conn_execute(c, sc->execute, args, &err);
    control_conn_close(c);
    if (!ret) {
        return cli_fail(cli, sc->name, err);
    }
    if (cli->json) {
        cli_print_json(ret);
    } else {
        printf("%s %s\n", sc->done,
               vm ? vm : (jsonq_string(ret, "vm") ?: "the VM"));
    }
    return CLI_EXIT_OK;
}

int cmd_simple(struct cli *cli, const struct cli_command *cmd, int argc,
               char **argv)
{
    const struct simple_cmd *sc = find_simple(cmd->name);
    g_autofree char *vm = NULL;
    g_autofree char *id = NULL;
    const GOptionEntry entries[] = {
        {"vm", 0, 0, G_OPTION_ARG_STRING, &vm, "The VM", "NAME"},
        {"id", 0, 0, G_OPTION_ARG_STRING, &id,
         "The migration with this id (as migrate --no-wait printed it)", "ID"},
        {NULL},
    };

    if (!cli_parse(cli, cmd, entries, argc, argv)) {
        return CLI_EXIT_USAGE;
    }
    if (sc->vm_required && !vm) {
        return cli_usage_error(cmd, "%s: --vm is required", cmd->name);
    }
    return send_simple(cli, sc, vm, id);
}
