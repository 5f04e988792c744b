/* follow.c - see follow.h. */
#include "follow.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <gio/gio.h>

#include "jsonq.h"
#include "migstats.h"
#include "progress.h"
#include "summary.h"

JsonObject *follow_vm_args(const char *vm, const char *id)
{
    JsonObject *args;

    if (!vm && !id) {
        return NULL;
    }
    args = json_object_new();
    if (vm) {
        json_object_set_string_member(args, "vm", vm);
    }
    if (id) {
        json_object_set_string_member(args, "id", id);
    }
    return args;
}

/* Keep stdout clean for --json: progress then goes to a terminal only. */
static FILE *progress_stream(struct cli *cli)
{
    if (!cli->json) {
        return stdout;
    }
    return isatty(STDERR_FILENO) ? stderr : NULL;
}

/*
 * A paused postcopy migration is followed through: say so when it pauses
 * and when it carries on (on stderr: stdout may be --json).
 */
static void note_pause(JsonNode *stats, bool *paused)
{
    bool now = !strcmp(migstats_status(stats), "postcopy-paused");
    const char *why = jsonq_string(stats, "error-desc");

    if (now && !*paused) {
        fprintf(stderr,
                "\n" CLI_PROG ": postcopy paused: %s; the guest runs on the "
                "destination and waits only for missing pages, nothing is "
                "lost; the daemons reconnect by themselves (`recover` retries "
                "at once)\n",
                why && *why ? why : "no reason given");
    } else if (!now && *paused) {
        fprintf(stderr, CLI_PROG ": postcopy resumed\n");
    }
    *paused = now;
}

/* Poll until a final status; the last result, or NULL with @err. */
static JsonNode *poll_until_final(struct cli *cli, struct control_conn *c,
                                  const char *vm, const char *id, GError **err)
{
    g_autoptr(JsonObject) args = follow_vm_args(vm, id);
    struct progress p;
    JsonNode *stats = NULL;

    bool paused = false;

    progress_init(&p, progress_stream(cli));
    for (;;) {
        g_clear_pointer(&stats, json_node_unref);
        stats = control_conn_execute(c, "query-migrate", args, err);
        if (!stats) {
            break;
        }
        note_pause(stats, &paused);
        progress_update(&p, stats);
        if (migstats_is_final(migstats_status(stats))) {
            break;
        }
        g_usleep(FOLLOW_POLL_MS * 1000);
    }
    progress_end(&p);
    return stats;
}

static int outcome(struct cli *cli, JsonNode *stats, bool expect_migration)
{
    const char *status = migstats_status(stats);
    const char *why = jsonq_string(stats, "error-desc");

    if (!strcmp(status, "completed") ||
        (!strcmp(status, "none") && !expect_migration)) {
        return CLI_EXIT_OK;
    }
    if (!strcmp(status, "cancelled")) {
        fprintf(stderr, CLI_PROG ": migration cancelled\n");
    } else if (!strcmp(status, "postcopy-paused")) {
        fprintf(stderr,
                CLI_PROG ": migration paused in postcopy: %s (the guest runs "
                         "on the destination and waits for its missing "
                         "pages; nothing is lost)\n",
                why && *why ? why : "no reason given");
    } else if (!strcmp(status, "none")) {
        fprintf(stderr, CLI_PROG ": migration failed: postcopyd reports no "
                                 "migration\n");
    } else {
        fprintf(stderr, CLI_PROG ": migration failed: %s\n",
                why && *why ? why : "no reason given");
    }
    return CLI_EXIT_FAIL;
}

int follow_migration(struct cli *cli, struct control_conn *c, const char *vm,
                     const char *id, bool expect_migration)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) stats = poll_until_final(cli, c, vm, id, &err);

    if (!stats) {
        return cli_fail(cli, "lost track of the migration", err);
    }
    if (cli->json) {
        cli_print_json(stats);
    } else {
        summary_print(stdout, stats);
    }
    return outcome(cli, stats, expect_migration);
}
