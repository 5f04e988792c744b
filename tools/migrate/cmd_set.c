/*
 * cmd_set.c - `postcopy-migrate set [--vm NAME | --id ID] NAME=VALUE...`:
 * change a running migration's parameters (migrate-set-parameters):
 * max-bandwidth (bytes/s, 0: no cap; K, M, G suffixes in powers of
 * 1024) and downtime-limit (ms).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "follow.h"
#include "jsonq.h"

static const char *const set_names[] = {"max-bandwidth", "downtime-limit",
                                        NULL};

/* "64M" -> 67108864; false on anything else. */
static bool parse_amount(const char *v, bool suffixes, guint64 *out)
{
    char *end = NULL;
    guint64 n;
    int shift = 0;

    if (!g_ascii_isdigit(*v)) {
        return false;
    }
    n = g_ascii_strtoull(v, &end, 10);
    if (suffixes && *end && !end[1]) {
        const char *p = strchr("KMG", g_ascii_toupper(*end));

        shift = p ? 10 * (int)(p - "KMG" + 1) : -1;
        end += p ? 1 : 0;
    }
    if (*end || shift < 0 || n > ((guint64)G_MAXINT64 >> shift)) {
        return false;
    }
    *out = n << shift;
    return true;
}

/* NAME=VALUE into @args; false after reporting bad usage. */
static bool add_setting(const struct cli_command *cmd, JsonObject *args,
                        const char *word)
{
    g_auto(GStrv) kv = g_strsplit(word, "=", 2);
    guint64 n;

    if (!kv[0] || !kv[1] || !g_strv_contains(set_names, kv[0])) {
        cli_usage_error(cmd,
                        "set: '%s' is not NAME=VALUE, NAME one of "
                        "max-bandwidth, downtime-limit",
                        word);
        return false;
    }
    if (!parse_amount(kv[1], !strcmp(kv[0], "max-bandwidth"), &n)) {
        cli_usage_error(cmd, "set: %s: '%s' is not a number%s", kv[0], kv[1],
                        strcmp(kv[0], "max-bandwidth") ? "" : " (K, M, G)");
        return false;
    }
    json_object_set_int_member(args, kv[0], n);
    return true;
}

static int send_set(struct cli *cli, JsonObject *args)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) ret = NULL;
    struct control_conn *c = cli_connect(cli);
    gint64 bw = 0, dt = 0;

    if (!c) {
        return CLI_EXIT_FAIL;
    }
    ret = control_conn_execute(c, "migrate-set-parameters", args, &err);
    control_conn_close(c);
    if (!ret) {
        return cli_fail(cli, "set", err);
    }
    if (cli->json) {
        cli_print_json(ret);
        return CLI_EXIT_OK;
    }
    jsonq_int(ret, "max-bandwidth", &bw);
    jsonq_int(ret, "downtime-limit", &dt);
    printf("migration %s: max-bandwidth %" G_GINT64_FORMAT
           " bytes/s%s, downtime-limit %" G_GINT64_FORMAT " ms\n",
           jsonq_string(ret, "id") ?: "?", bw, bw ? "" : " (no cap)", dt);
    return CLI_EXIT_OK;
}

int cmd_set(struct cli *cli, const struct cli_command *cmd, int argc,
            char **argv)
{
    g_autofree char *vm = NULL;
    g_autofree char *id = NULL;
    const GOptionEntry entries[] = {
        {"vm", 0, 0, G_OPTION_ARG_STRING, &vm, "The VM", "NAME"},
        {"id", 0, 0, G_OPTION_ARG_STRING, &id, "The migration with this id",
         "ID"},
        {NULL},
    };
    g_autoptr(JsonObject) args = NULL;
    g_auto(GStrv) words = NULL;

    if (!cli_parse_rest(cli, cmd, entries, argc, argv, &words)) {
        return CLI_EXIT_USAGE;
    }
    args = follow_vm_args(vm, id);
    if (!args) {
        args = json_object_new();
    }
    for (int i = 0; words[i]; i++) {
        if (!add_setting(cmd, args, words[i])) {
            return CLI_EXIT_USAGE;
        }
    }
    if (json_object_get_size(args) == (guint)(!!vm + !!id)) {
        return cli_usage_error(cmd, "set: nothing to set");
    }
    return send_set(cli, args);
}
