/*
 * cmd_list.c - `postcopy-migrate list`: the VMs attached to the daemon
 * (query-vms), one line each: name, pid, VMM, role, RAM, and the state of
 * its newest migration, or the incoming libvirt domains the daemon
 * expects (the libvirt hook told it); --json prints query-vms' array as
 * it came.
 */
#include <stdio.h>

#include "cli.h"
#include "jsonq.h"

#define LIST_FORMAT "%-20s %8s  %-15s %-12s %10s  %s\n"

/* "16.0 MiB", with a plain space: GLib puts a no-break space there. */
static char *size_text(gint64 bytes)
{
    g_autofree char *s = g_format_size_full(bytes, G_FORMAT_SIZE_IEC_UNITS);
    g_auto(GStrv) parts = g_strsplit(s, "\u00a0", -1);

    return g_strjoinv(" ", parts);
}

static void print_vm(JsonObject *o)
{
    g_autoptr(JsonNode) vm = json_node_init_object(json_node_alloc(), o);
    g_autofree char *pid = NULL, *ram = NULL, *mig = NULL;
    const char *status = jsonq_string(vm, "migration.status");
    gint64 n;

    pid = jsonq_int(vm, "pid", &n) ? g_strdup_printf("%" G_GINT64_FORMAT, n)
                                   : g_strdup("-");
    ram = jsonq_int(vm, "ram", &n) ? size_text(n) : g_strdup("-");
    if (json_object_get_boolean_member_with_default(o, "expected", FALSE)) {
        /* Told by the libvirt hook; attached once libvirt runs it. */
        mig = g_strdup("- (expected: attached once it runs)");
    } else if (status) {
        mig = g_strdup_printf("%s %s", status,
                              jsonq_string(vm, "migration.id") ?: "");
    } else {
        mig = g_strdup("-");
    }
    printf(LIST_FORMAT, jsonq_string(vm, "name") ?: "?", pid,
           jsonq_string(vm, "vmm") ?: "?", jsonq_string(vm, "role") ?: "?", ram,
           mig);
}

static void print_table(JsonNode *vms)
{
    JsonArray *a = JSON_NODE_HOLDS_ARRAY(vms) ? json_node_get_array(vms) : NULL;
    guint n = a ? json_array_get_length(a) : 0;

    if (!n) {
        printf("no VM is attached\n");
        return;
    }
    printf(LIST_FORMAT, "NAME", "PID", "VMM", "ROLE", "RAM", "MIGRATION");
    for (guint i = 0; i < n; i++) {
        JsonNode *e = json_array_get_element(a, i);

        if (JSON_NODE_HOLDS_OBJECT(e)) {
            print_vm(json_node_get_object(e));
        }
    }
}

int cmd_list(struct cli *cli, const struct cli_command *cmd, int argc,
             char **argv)
{
    return cli_query_print(cli, cmd, argc, argv, "query-vms", print_table);
}
