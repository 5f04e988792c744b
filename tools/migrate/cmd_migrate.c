/*
 * cmd_migrate.c - `postcopy-migrate migrate`: ask the source daemon to
 * migrate a VM, then follow the migration to its end.  With --domain,
 * a libvirt domain: started at the destination and attached on both
 * hosts first (domain.h), libvirt's view settled after.
 *
 * Optional migration parameters are rows of migrate_params[]: --NAME
 * VALUE on the command line becomes "NAME": VALUE in the arguments, and
 * a parameter left out is left to the daemon's default.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "domain.h"
#include "follow.h"
#include "hostport.h"
#include "jsonq.h"

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
    {"max-bandwidth", PARAM_INT, NULL,
     "cap the bulk streams at BYTES per second (default 0: no cap)", "BYTES"},
    {"streams", PARAM_INT, NULL,
     "parallel bulk connections, 1 to 8 (default 1)", "N"},
    {"dirty-tracking", PARAM_CHOICE, "auto|async-wp|sync-wp|soft-dirty",
     "how writes are tracked during precopy (default auto)", "METHOD"},
};

struct migrate_opts {
    char *vm;
    char *to;
    gboolean no_wait;
    /* --domain: a libvirt domain, on --connect, to --dest-connect. */
    char *domain, *connect, *dest_connect, *dest_socket;
    char *dest_host; /* from --to */
    char *params[G_N_ELEMENTS(migrate_params)];
};

static void migrate_opts_clear(struct migrate_opts *o)
{
    g_free(o->vm);
    g_free(o->to);
    g_free(o->domain);
    g_free(o->connect);
    g_free(o->dest_connect);
    g_free(o->dest_socket);
    g_free(o->dest_host);
    for (size_t i = 0; i < G_N_ELEMENTS(migrate_params); i++) {
        g_free(o->params[i]);
    }
}

static bool parse_opts(struct cli *cli, const struct cli_command *cmd,
                       struct migrate_opts *o, int argc, char **argv)
{
    enum { FIXED = 7 };
    GOptionEntry e[G_N_ELEMENTS(migrate_params) + FIXED + 1] = {
        {"vm", 0, 0, G_OPTION_ARG_STRING, &o->vm, "VM to migrate", "NAME"},
        {"to", 0, 0, G_OPTION_ARG_STRING, &o->to,
         "Destination postcopyd (default port 4444)", "HOST[:PORT]"},
        {"no-wait", 0, 0, G_OPTION_ARG_NONE, &o->no_wait,
         "Return once the migration has started", NULL},
        {"domain", 0, 0, G_OPTION_ARG_STRING, &o->domain,
         "A libvirt domain instead of --vm", "NAME"},
        {"connect", 0, 0, G_OPTION_ARG_STRING, &o->connect,
         "The source libvirt (default: libvirt's)", "URI"},
        {"dest-connect", 0, 0, G_OPTION_ARG_STRING, &o->dest_connect,
         "The destination libvirt (default qemu+ssh://HOST/system)", "URI"},
        {"dest-socket", 0, 0, G_OPTION_ARG_FILENAME, &o->dest_socket,
         "The destination postcopyd's control socket (default: attach "
         "there with ssh HOST postcopy-migrate attach)",
         "PATH"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(migrate_params); i++) {
        e[i + FIXED] = (GOptionEntry){
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

    if (!o->vm == !o->domain || !o->to) {
        cli_usage_error(cmd, "migrate: --vm or --domain, and --to, are "
                             "required");
        return NULL;
    }
    if (o->domain && o->no_wait) {
        cli_usage_error(cmd, "migrate: --domain waits for the end (no "
                             "--no-wait)");
        return NULL;
    }
    if (!hostport_parse(o->to, HOSTPORT_DEFAULT_PORT, 0, &host, &port, &err)) {
        cli_usage_error(cmd, "migrate: --to: %s", err->message);
        return NULL;
    }
    uri = hostport_format(host, port);
    json_object_set_string_member(args, "vm", o->vm ? o->vm : o->domain);
    if (o->domain && !o->dest_connect) {
        o->dest_connect = g_strdup_printf("qemu+ssh://%s/system", host);
    }
    o->dest_host = g_strdup(host);
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
    const char *id;

    if (!ret) {
        return cli_fail(cli, "migrate", err);
    }
    /* An older daemon answers {}: follow the VM's newest migration. */
    id = jsonq_string(ret, "id");
    if (!no_wait) {
        return follow_migration(
            cli, c, json_object_get_string_member(args, "vm"), id, true);
    }
    if (cli->json) {
        cli_print_json(ret);
    } else {
        printf("migration %s%sof %s to %s started\n", id ? id : "",
               id ? " " : "", json_object_get_string_member(args, "vm"),
               json_object_get_string_member(args, "uri"));
    }
    return CLI_EXIT_OK;
}

/* A URI the destination daemon can use too: none with a host in it. */
static const char *local_uri(const char *uri)
{
    const char *p = uri ? strstr(uri, "://") : NULL;

    return p && p[3] == '/' ? uri : NULL;
}

/* The daemon behind @c attaches the domain. */
static bool attach_domain(struct control_conn *c, const char *name,
                          const char *uri, bool incoming, GError **err)
{
    g_autoptr(JsonObject) args = json_object_new();
    g_autoptr(JsonNode) ret = NULL;

    json_object_set_string_member(args, "domain", name);
    if (uri) {
        json_object_set_string_member(args, "connect", uri);
    }
    json_object_set_boolean_member(args, "incoming", incoming);
    ret = control_conn_execute(c, "attach", args, err);
    if (!ret) {
        g_prefix_error(
            err, "attach at the %s: ", incoming ? "destination" : "source");
    }
    return ret != NULL;
}

/*
 * The source domain is attached already: a migration that failed left it
 * there, running (the daemon resumed it).
 */
static bool source_attached(struct control_conn *c, const char *name)
{
    g_autoptr(JsonNode) ret = control_conn_execute(c, "query-vms", NULL, NULL);
    JsonArray *a =
        ret && JSON_NODE_HOLDS_ARRAY(ret) ? json_node_get_array(ret) : NULL;

    for (guint i = 0; a && i < json_array_get_length(a); i++) {
        JsonObject *vm = json_array_get_object_element(a, i);
        const char *n =
            json_object_get_string_member_with_default(vm, "name", "");

        if (strcmp(n, name) == 0 &&
            !json_object_get_boolean_member_with_default(vm, "incoming",
                                                         FALSE)) {
            return true;
        }
    }
    return false;
}

/* The last line @text has, for a one-line error. */
static char *last_line(const char *text)
{
    g_autofree char *copy = g_strstrip(g_strdup(text ? text : ""));
    g_auto(GStrv) lines = g_strsplit(copy, "\n", -1);
    guint n = g_strv_length(lines);

    return g_strdup(n ? lines[n - 1] : "no output");
}

/*
 * Without --dest-socket: `ssh HOST postcopy-migrate attach` (the ssh
 * command is $POSTCOPY_MIGRATE_SSH if set), as --dest-connect's default
 * reaches the destination libvirt over ssh too.  One quoted command line:
 * ssh hands it to the remote shell.
 */
static bool attach_dest_ssh(const struct migrate_opts *o, const char *uri,
                            GError **err)
{
    const char *ssh = g_getenv(CLI_SSH_ENV) ? g_getenv(CLI_SSH_ENV) : "ssh";
    g_autofree char *qname = g_shell_quote(o->domain);
    g_autofree char *quri = uri ? g_shell_quote(uri) : NULL;
    g_autofree char *remote =
        g_strdup_printf(CLI_PROG " attach --incoming --domain %s%s%s", qname,
                        quri ? " --connect " : "", quri ? quri : "");
    const char *argv[] = {ssh,    "-o", "BatchMode=yes", o->dest_host, "--",
                          remote, NULL};
    g_autofree char *out = NULL, *errout = NULL, *why = NULL;
    int status;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL,
                      NULL, &out, &errout, &status, err)) {
        return false;
    }
    if (g_spawn_check_wait_status(status, NULL)) {
        return true;
    }
    why = last_line(errout);
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED, "%s %s: %s", ssh,
                o->dest_host, why);
    return false;
}

static bool attach_dest(const struct migrate_opts *o, GError **err)
{
    const char *uri = local_uri(o->dest_connect);
    struct control_conn *dc;
    bool ok;

    if (!o->dest_socket) {
        ok = attach_dest_ssh(o, uri, err);
        if (!ok) {
            g_prefix_error(err, "attach at the destination: ");
        }
        return ok;
    }
    dc = control_conn_open(o->dest_socket, err);
    if (!dc) {
        g_prefix_error(err, "the destination daemon: ");
        return false;
    }
    ok = attach_domain(dc, o->domain, uri, true, err);
    control_conn_close(dc);
    return ok;
}

/*
 * The destination first: a failure then leaves nothing attached at the
 * source, and a destination domain destroyed after a failure is dropped
 * by its daemon when its QEMU exits.
 */
static bool attach_both(struct control_conn *c, const struct migrate_opts *o,
                        GError **err)
{
    return attach_dest(o, err) &&
           (source_attached(c, o->domain) ||
            attach_domain(c, o->domain, o->connect, false, err));
}

/*
 * migrate --domain: the domain checked and started at the destination,
 * both attached, migrated, libvirt's view settled.  A refusal comes
 * before anything starts; after a failure the source runs on.
 */
static int migrate_domain(struct cli *cli, struct control_conn *c,
                          JsonObject *args, const struct migrate_opts *o)
{
    g_autoptr(GError) err = NULL;
    struct domain_migration *m =
        domain_prepare(o->domain, o->connect, o->dest_connect, &err);
    int rc;

    if (!m) {
        return cli_fail(cli, "migrate", err);
    }
    if (!attach_both(c, o, &err)) {
        domain_finish(m, false, NULL);
        return cli_fail(cli, "migrate", err);
    }
    rc = start(cli, c, args, false);
    if (!domain_finish(m, rc == CLI_EXIT_OK, &err)) {
        return cli_fail(cli, "migrate", err);
    }
    if (rc == CLI_EXIT_OK && !cli->json) {
        printf("domain %s runs at the destination; the source no longer "
               "has it\n",
               o->domain);
    }
    return rc;
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
    if (!c) {
        rc = CLI_EXIT_FAIL;
    } else if (o.domain) {
        rc = migrate_domain(cli, c, args, &o);
    } else {
        rc = start(cli, c, args, o.no_wait);
    }
out:
    control_conn_close(c);
    migrate_opts_clear(&o);
    return rc;
}
