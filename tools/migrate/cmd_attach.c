/*
 * cmd_attach.c - postcopy-migrate attach: hand a running QEMU to the
 * local postcopyd by its pid and QMP socket.
 */
#include <stdio.h>

#include "cli.h"

static JsonObject *attach_args(int pid, const char *qmp, const char *name,
                               gboolean incoming, const char *uffd)
{
    JsonObject *args = json_object_new();

    json_object_set_int_member(args, "pid", pid);
    json_object_set_string_member(args, "qmp", qmp);
    json_object_set_string_member(args, "name", name);
    json_object_set_boolean_member(args, "incoming", incoming);
    if (uffd) {
        json_object_set_string_member(args, "uffd", uffd);
    }
    return args;
}

static void print_attached(JsonNode *vm)
{
    JsonObject *o =
        JSON_NODE_HOLDS_OBJECT(vm) ? json_node_get_object(vm) : NULL;

    if (!o) {
        printf("attached\n");
        return;
    }
    printf("attached %s: pid %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
           " MiB of RAM, %s%s, userfaultfd by %s\n",
           json_object_get_string_member_with_default(o, "name", "?"),
           json_object_get_int_member_with_default(o, "pid", 0),
           json_object_get_int_member_with_default(o, "ram", 0) >> 20,
           json_object_get_string_member_with_default(o, "vmm", "?"),
           json_object_get_boolean_member_with_default(o, "incoming", FALSE)
               ? ", incoming"
               : "",
           json_object_get_string_member_with_default(o, "uffd", "?"));
}

int cmd_attach(struct cli *cli, const struct cli_command *cmd, int argc,
               char **argv)
{
    gint pid = 0;
    g_autofree char *qmp = NULL, *name = NULL, *uffd = NULL;
    gboolean incoming = FALSE;
    const GOptionEntry entries[] = {
        {"pid", 0, 0, G_OPTION_ARG_INT, &pid, "The QEMU process", "PID"},
        {"qmp", 0, 0, G_OPTION_ARG_FILENAME, &qmp,
         "Its QMP socket (-qmp unix:PATH,server=on,wait=off)", "PATH"},
        {"name", 0, 0, G_OPTION_ARG_STRING, &name, "Name the VM", "NAME"},
        {"incoming", 0, 0, G_OPTION_ARG_NONE, &incoming,
         "The destination QEMU (started with -incoming defer)", NULL},
        {"uffd", 0, 0, G_OPTION_ARG_STRING, &uffd,
         "How to create its userfaultfd: syscall (default, falls back to "
         "device) or device (/dev/userfaultfd)",
         "syscall|device"},
        {NULL},
    };
    g_autoptr(JsonObject) args = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) ret = NULL;
    struct control_conn *c;

    if (!cli_parse(cli, cmd, entries, argc, argv)) {
        return CLI_EXIT_USAGE;
    }
    if (pid <= 0 || !qmp || !name) {
        return cli_usage_error(cmd, "attach: --pid, --qmp and --name are "
                                    "required");
    }
    c = cli_connect(cli);
    if (!c) {
        return CLI_EXIT_FAIL;
    }
    args = attach_args(pid, qmp, name, incoming, uffd);
    ret = control_conn_execute(c, "attach", args, &err);
    control_conn_close(c);
    if (!ret) {
        return cli_fail(cli, "attach", err);
    }
    if (cli->json) {
        cli_print_json(ret);
    } else {
        print_attached(ret);
    }
    return CLI_EXIT_OK;
}
