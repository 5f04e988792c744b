/*
 * cmd_attach.c - postcopy-migrate attach: hand a running QEMU to the
 * local postcopyd by its pid and QMP socket, or a libvirt domain by name;
 * postcopy-migrate expect: tell it of an incoming libvirt domain before
 * it runs (the libvirt hook does).
 */
#include <stdio.h>

#include "cli.h"
#include "jsonq.h"

struct attach_opts {
    gint pid;
    char *qmp, *name, *uffd, *domain, *connect;
    gboolean incoming;
};

static void attach_opts_clear(struct attach_opts *o)
{
    g_free(o->qmp);
    g_free(o->name);
    g_free(o->uffd);
    g_free(o->domain);
    g_free(o->connect);
}

static void set_opt_string(JsonObject *o, const char *key, const char *val)
{
    if (val) {
        json_object_set_string_member(o, key, val);
    }
}

static JsonObject *attach_args(const struct attach_opts *o)
{
    JsonObject *args = json_object_new();

    if (o->domain) {
        json_object_set_string_member(args, "domain", o->domain);
        set_opt_string(args, "connect", o->connect);
    } else {
        json_object_set_int_member(args, "pid", o->pid);
        json_object_set_string_member(args, "qmp", o->qmp);
    }
    set_opt_string(args, "name", o->name);
    json_object_set_boolean_member(args, "incoming", o->incoming);
    set_opt_string(args, "uffd", o->uffd);
    return args;
}

static bool attach_opts_valid(const struct attach_opts *o)
{
    if (o->domain) {
        return !o->pid && !o->qmp;
    }
    return o->pid > 0 && o->qmp && o->name && !o->connect;
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

static void print_expected(JsonNode *ret)
{
    printf("expecting libvirt domain %s: attached as soon as it runs\n",
           jsonq_string(ret, "domain") ?: "?");
}

/* Send @execute with @args; print its answer (--json: as it came). */
static int run(struct cli *cli, const char *what, const char *execute,
               JsonObject *args, void (*print)(JsonNode *ret))
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) ret = NULL;
    struct control_conn *c = cli_connect(cli);

    if (!c) {
        return CLI_EXIT_FAIL;
    }
    ret = control_conn_execute(c, execute, args, &err);
    control_conn_close(c);
    if (!ret) {
        return cli_fail(cli, what, err);
    }
    if (cli->json) {
        cli_print_json(ret);
    } else {
        print(ret);
    }
    return CLI_EXIT_OK;
}

int cmd_attach(struct cli *cli, const struct cli_command *cmd, int argc,
               char **argv)
{
    struct attach_opts o = {0};
    const GOptionEntry entries[] = {
        {"pid", 0, 0, G_OPTION_ARG_INT, &o.pid, "The QEMU process", "PID"},
        {"qmp", 0, 0, G_OPTION_ARG_FILENAME, &o.qmp,
         "Its QMP socket (-qmp unix:PATH,server=on,wait=off)", "PATH"},
        {"domain", 0, 0, G_OPTION_ARG_STRING, &o.domain,
         "A running libvirt domain instead of --pid and --qmp", "NAME"},
        {"connect", 0, 0, G_OPTION_ARG_STRING, &o.connect,
         "The domain's libvirt URI (default: libvirt's)", "URI"},
        {"name", 0, 0, G_OPTION_ARG_STRING, &o.name,
         "Name the VM (default: the domain's name)", "NAME"},
        {"incoming", 0, 0, G_OPTION_ARG_NONE, &o.incoming,
         "The destination QEMU (started with -incoming defer)", NULL},
        {"uffd", 0, 0, G_OPTION_ARG_STRING, &o.uffd,
         "How to create its userfaultfd: syscall (default, falls back to "
         "device) or device (/dev/userfaultfd)",
         "syscall|device"},
        {NULL},
    };
    g_autoptr(JsonObject) args = NULL;

    if (!cli_parse(cli, cmd, entries, argc, argv)) {
        attach_opts_clear(&o);
        return CLI_EXIT_USAGE;
    }
    if (!attach_opts_valid(&o)) {
        attach_opts_clear(&o);
        return cli_usage_error(cmd, "attach: --pid, --qmp and --name, or "
                                    "--domain [--connect]");
    }
    args = attach_args(&o);
    attach_opts_clear(&o);
    return run(cli, "attach", "attach", args, print_attached);
}

/*
 * postcopy-migrate expect --domain NAME: what the libvirt hook runs as
 * libvirt prepares an incoming domain; the daemon attaches it once it
 * runs.  Quick: the daemon only takes note.
 */
int cmd_expect(struct cli *cli, const struct cli_command *cmd, int argc,
               char **argv)
{
    struct attach_opts o = {0};
    const GOptionEntry entries[] = {
        {"domain", 0, 0, G_OPTION_ARG_STRING, &o.domain,
         "The incoming libvirt domain", "NAME"},
        {"connect", 0, 0, G_OPTION_ARG_STRING, &o.connect,
         "How the daemon reaches its libvirt (default: libvirt's URI)", "URI"},
        {"name", 0, 0, G_OPTION_ARG_STRING, &o.name,
         "Name the VM (default: the domain's name)", "NAME"},
        {NULL},
    };
    g_autoptr(JsonObject) args = json_object_new();

    if (!cli_parse(cli, cmd, entries, argc, argv)) {
        attach_opts_clear(&o);
        return CLI_EXIT_USAGE;
    }
    if (!o.domain) {
        attach_opts_clear(&o);
        return cli_usage_error(cmd, "expect: --domain is required");
    }
    json_object_set_string_member(args, "domain", o.domain);
    set_opt_string(args, "connect", o.connect);
    set_opt_string(args, "name", o.name);
    attach_opts_clear(&o);
    return run(cli, "expect", "expect-vm", args, print_expected);
}
