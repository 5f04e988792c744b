/* cli.c - see cli.h. */
#include "cli.h"

#include <stdio.h>

static void print_usage_line(const struct cli_command *cmd)
{
    fprintf(stderr, "usage: " CLI_PROG " [--socket PATH] %s %s\n", cmd->name,
            cmd->usage);
}

int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, CLI_PROG ": %s\n", msg);
    print_usage_line(cmd);
    return CLI_EXIT_USAGE;
}

static GOptionContext *command_context(struct cli *cli, char **socket,
                                       const struct cli_command *cmd,
                                       const GOptionEntry *entries)
{
    const GOptionEntry common[] = {
        {"socket", 's', 0, G_OPTION_ARG_FILENAME, socket,
         "Control socket of postcopyd (default " CLI_DEFAULT_SOCKET
         ", or $" CLI_SOCKET_ENV ")",
         "PATH"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &cli->json,
         "Print the result as JSON", NULL},
        {NULL},
    };
    g_autofree char *param = g_strdup_printf("%s %s", cmd->name, cmd->usage);
    GOptionContext *ctx = g_option_context_new(param);

    g_option_context_set_summary(ctx, cmd->summary);
    g_option_context_set_description(ctx, CLI_EXIT_STATUS_HELP);
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_add_main_entries(ctx, common, NULL);
    return ctx;
}

bool cli_parse(struct cli *cli, const struct cli_command *cmd,
               const GOptionEntry *entries, int argc, char **argv)
{
    return cli_parse_rest(cli, cmd, entries, argc, argv, NULL);
}

bool cli_parse_rest(struct cli *cli, const struct cli_command *cmd,
                    const GOptionEntry *entries, int argc, char **argv,
                    GStrv *rest)
{
    g_autofree char *socket = NULL;
    g_autoptr(GOptionContext) ctx = command_context(cli, &socket, cmd, entries);
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) args = g_new0(char *, argc + 1);

    for (int i = 0; i < argc; i++) {
        args[i] = g_strdup(argv[i]);
    }
    if (!g_option_context_parse_strv(ctx, &args, &err)) {
        cli_usage_error(cmd, "%s: %s", cmd->name, err->message);
        return false;
    }
    if (rest) {
        *rest = g_strdupv(args[0] ? args + 1 : args);
    } else if (args[0] && args[1]) {
        cli_usage_error(cmd, "%s: unexpected argument '%s'", cmd->name,
                        args[1]);
        return false;
    }
    if (socket) {
        g_free(cli->socket);
        cli->socket = g_steal_pointer(&socket);
    }
    return true;
}

int cli_fail(struct cli *cli, const char *what, const GError *err)
{
    if (cli->json) {
        g_autoptr(JsonObject) reply = json_object_new();
        g_autoptr(JsonNode) node = NULL;
        JsonObject *e = json_object_new();

        json_object_set_string_member(e, "class", control_error_class(err));
        json_object_set_string_member(e, "desc", err->message);
        json_object_set_object_member(reply, "error", e);
        node = json_node_init_object(json_node_alloc(), reply);
        cli_print_json(node);
    }
    fprintf(stderr, CLI_PROG ": %s%s%s\n", what ? what : "", what ? ": " : "",
            err->message);
    return CLI_EXIT_FAIL;
}

struct control_conn *cli_connect(struct cli *cli)
{
    g_autoptr(GError) err = NULL;
    struct control_conn *c = control_conn_open(cli->socket, &err);

    if (!c) {
        cli_fail(cli, NULL, err);
    }
    return c;
}

int cli_query_print(struct cli *cli, const struct cli_command *cmd, int argc,
                    char **argv, const char *execute,
                    void (*print)(JsonNode *reply))
{
    const GOptionEntry entries[] = {{NULL}};
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) reply = NULL;
    struct control_conn *c;

    if (!cli_parse(cli, cmd, entries, argc, argv)) {
        return CLI_EXIT_USAGE;
    }
    c = cli_connect(cli);
    if (!c) {
        return CLI_EXIT_FAIL;
    }
    reply = control_conn_execute(c, execute, NULL, &err);
    control_conn_close(c);
    if (!reply) {
        return cli_fail(cli, cmd->name, err);
    }
    if (cli->json) {
        cli_print_json(reply);
    } else {
        print(reply);
    }
    return CLI_EXIT_OK;
}

void cli_print_json(JsonNode *node)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;

    json_generator_set_pretty(gen, TRUE);
    json_generator_set_indent(gen, 2);
    json_generator_set_root(gen, node);
    text = json_generator_to_data(gen, NULL);
    printf("%s\n", text);
    fflush(stdout);
}
