/*
 * cmd_migrate.c - `postcopy-migrate migrate`: ask the source daemon to
 * migrate a VM, then follow the migration to its end.
 *
 * Optional migration parameters are rows of migrate_params[]: --NAME
 * VALUE on the command line becomes "NAME": VALUE in the arguments, and
 * a parameter left out is left to the daemon's default.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "follow.h"
#include "hostport.h"

enum param_type {
    PARAM_CHOICE, /* a string, one of .choices */
    PARAM_INT,    /* a non-negative integer */
};

struct migrate_param {
    const char *name;
    enum param_type type;
    const char *choices;
    const char *help;
    const char *arg;
};

static const struct migrate_param migrate_params[] = {
    {"mode", PARAM_CHOICE, "precopy|hybrid|postcopy",
     "precopy, hybrid or postcopy (default: hybrid)", "MODE"},
    {"downtime-limit", PARAM_INT, NULL,
     "precopy converges when the rest fits in MS (default 300)", "MS"},
    {"max-rounds", PARAM_INT, NULL,
     "switch over after N precopy rounds at most (default 30)", "N"},
    {"max-precopy-time", PARAM_INT, NULL,
     "switch over after MS of precopy at most (default 60000)", "MS"},
    {"postcopy-bulk", PARAM_CHOICE, "on|off",
     "stream pages in postcopy (default on; off: only on request)", "on|off"},
    {"streams", PARAM_INT, NULL,
     "parallel bulk connections, 1 to 8 (default 1)", "N"},
    {"dirty-tracking", PARAM_CHOICE, "auto|async-wp|sync-wp|soft-dirty",
     "how writes are tracked during precopy (default auto)", "METHOD"},
};

struct migrate_opts {
    char *vm;
    char *to;
    gboolean no_wait;
    char *params[G_N_ELEMENTS(migrate_params)];
};

static void migrate_opts_clear(struct migrate_opts *o)
{
    g_free(o->vm);
    g_free(o->to);
    for (size_t i = 0; i < G_N_ELEMENTS(migrate_params); i++) {
        g_free(o->params[i]);
    }
}

static bool parse_opts(struct cli *cli, const struct cli_command *cmd,
                       struct migrate_opts *o, int argc, char **argv)
{
    GOptionEntry e[G_N_ELEMENTS(migrate_params) + 4] = {
        {"vm", 0, 0, G_OPTION_ARG_STRING, &o->vm, "VM to migrate", "NAME"},
        {"to", 0, 0, G_OPTION_ARG_STRING, &o->to,
         "Destination postcopyd (default port 4444)", "HOST[:PORT]"},
        {"no-wait", 0, 0, G_OPTION_ARG_NONE, &o->no_wait,
         "Return once the migration has started", NULL},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(migrate_params); i++) {
        e[i + 3] = (GOptionEntry){
            .long_name = migrate_params[i].name,
            .arg = G_OPTION_ARG_STRING,
            .arg_data = &o->params[i],
            .description = migrate_params[i].help,
            /* A choice shows its words: --help is the list of them. */
            .arg_description = migrate_params[i].choices
                                   ? migrate_params[i].choices
                                   : migrate_params[i].arg,
        };
    }
    return cli_parse(cli, cmd, e, argc, argv);
}

static bool add_param(JsonObject *args, const struct migrate_param *p,
                      const char *v, GError **err)
{
    g_auto(GStrv) words = NULL;
    guint64 n;

    if (p->type == PARAM_INT) {
        if (!g_ascii_string_to_unsigned(v, 10, 0, G_MAXINT64, &n, err)) {
            return false;
        }
        json_object_set_int_member(args, p->name, n);
        return true;
    }
    words = g_strsplit(p->choices, "|", -1);
    if (!g_strv_contains((const char *const *)words, v)) {
        g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "'%s' is not one of %s", v, p->choices);
        return false;
    }
    json_object_set_string_member(args, p->name, v);
    return true;
}

/* The "migrate" arguments, or NULL after reporting bad usage. */
static JsonObject *build_args(const struct cli_command *cmd,
                              struct migrate_opts *o)
{
    g_autoptr(JsonObject) args = json_object_new();
    g_autoptr(GError) err = NULL;
    g_autofree char *host = NULL;
    g_autofree char *uri = NULL;
    uint16_t port;

    if (!o->vm || !o->to) {
        cli_usage_error(cmd, "migrate: --vm and --to are required");
        return NULL;
    }
    if (!hostport_parse(o->to, HOSTPORT_DEFAULT_PORT, &host, &port, &err)) {
        cli_usage_error(cmd, "migrate: --to: %s", err->message);
        return NULL;
    }
    uri = hostport_format(host, port);
    json_object_set_string_member(args, "vm", o->vm);
    json_object_set_string_member(args, "uri", uri);
    for (size_t i = 0; i < G_N_ELEMENTS(migrate_params); i++) {
        if (o->params[i] &&
            !add_param(args, &migrate_params[i], o->params[i], &err)) {
            cli_usage_error(cmd, "migrate: --%s: %s", migrate_params[i].name,
                            err->message);
            return NULL;
        }
    }
    return g_steal_pointer(&args);
}

static int start(struct cli *cli, struct control_conn *c, JsonObject *args,
                 bool no_wait)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) ret = control_conn_execute(c, "migrate", args, &err);

    if (!ret) {
        return cli_fail(cli, "migrate", err);
    }
    if (!no_wait) {
        return follow_migration(
            cli, c, json_object_get_string_member(args, "vm"), true);
    }
    if (cli->json) {
        cli_print_json(ret);
    } else {
        printf("migration of %s to %s started\n",
               json_object_get_string_member(args, "vm"),
               json_object_get_string_member(args, "uri"));
    }
    return CLI_EXIT_OK;
}

int cmd_migrate(struct cli *cli, const struct cli_command *cmd, int argc,
                char **argv)
{
    struct migrate_opts o = {0};
    g_autoptr(JsonObject) args = NULL;
    struct control_conn *c = NULL;
    int rc = CLI_EXIT_USAGE;

    if (!parse_opts(cli, cmd, &o, argc, argv) ||
        !(args = build_args(cmd, &o))) {
        goto out;
    }
    c = cli_connect(cli);
    rc = c ? start(cli, c, args, o.no_wait) : CLI_EXIT_FAIL;
out:
    control_conn_close(c);
    migrate_opts_clear(&o);
    return rc;
}
