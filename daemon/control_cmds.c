/*
 * control_cmds.c - the control socket's commands: migrate,
 * migrate-incoming, query-migrate, migrate-cancel, query-vms.  Handlers
 * run on the main loop and never block: a migration runs in its threads.
 */
#include "daemon.h"

#include <string.h>

static const char *arg_string(JsonObject *args, const char *name)
{
    JsonNode *n = json_object_get_member(args, name);

    if (!n || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_STRING) {
        return NULL;
    }
    return json_node_get_string(n);
}

static JsonNode *cmd_migrate(void *opaque, JsonObject *args, GError **err)
{
    struct daemon *d = opaque;
    const char *vm_name = arg_string(args, "vm");
    const char *uri = arg_string(args, "uri");
    const char *mode = arg_string(args, "mode");
    enum migration_mode m_mode = MODE_POSTCOPY;
    struct migration *m;
    struct vm_entry *vm;

    if (!vm_name || !uri) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "migrate needs string arguments 'vm' and 'uri'");
        return NULL;
    }
    if (mode && !migration_mode_parse(mode, &m_mode)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "unknown mode '%s' (postcopy, precopy, hybrid)", mode);
        return NULL;
    }
    if (m_mode != MODE_POSTCOPY) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "mode '%s' is not implemented yet; use postcopy", mode);
        return NULL;
    }
    vm = daemon_take_vm(d, vm_name, false, err);
    if (!vm) {
        return NULL;
    }
    m = migration_new(d, ROLE_SOURCE, vm);
    m->mode = m_mode;
    daemon_add_migration(d, m);
    source_start(m, uri, NULL);
    return NULL;
}

static JsonNode *cmd_migrate_incoming(void *opaque, JsonObject *args,
                                      GError **err)
{
    struct daemon *d = opaque;
    const char *vm_name = arg_string(args, "vm");
    struct vm_entry *vm;

    if (!vm_name) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "migrate-incoming needs a string argument 'vm'");
        return NULL;
    }
    /* The VMM attached with --incoming is what makes us accept it. */
    vm = daemon_take_vm(d, vm_name, true, err);
    if (!vm) {
        return NULL;
    }
    daemon_release_vm(d, vm);
    return NULL;
}

static struct migration *find(struct daemon *d, JsonObject *args, GError **err)
{
    const char *vm_name = arg_string(args, "vm");
    struct migration *m = daemon_find_migration(d, vm_name);

    if (!m) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_DEVICE_NOT_ACTIVE,
                    "no migration%s%s", vm_name ? " of " : "",
                    vm_name ? vm_name : "");
    }
    return m;
}

static JsonNode *cmd_query_migrate(void *opaque, JsonObject *args, GError **err)
{
    struct migration *m = find(opaque, args, NULL);
    JsonObject *o;
    JsonNode *n;

    if (m) {
        return migration_query(m);
    }
    o = json_object_new();
    json_object_set_string_member(o, "status", "none");
    n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, o);
    return n;
}

static JsonNode *cmd_migrate_cancel(void *opaque, JsonObject *args,
                                    GError **err)
{
    struct migration *m = find(opaque, args, err);

    if (!m) {
        return NULL;
    }
    if (m->role != ROLE_SOURCE) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "cancel a migration on its source");
        return NULL;
    }
    source_cancel(m, err);
    return NULL;
}

static JsonNode *cmd_query_vms(void *opaque, JsonObject *args, GError **err)
{
    struct daemon *d = opaque;
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_array(b);
    g_mutex_lock(&d->lock);
    for (guint i = 0; i < d->vms->len; i++) {
        struct vm_entry *vm = d->vms->pdata[i];

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, vm->info.vm_name);
        json_builder_set_member_name(b, "pid");
        json_builder_add_int_value(b, vm->info.pid);
        json_builder_set_member_name(b, "incoming");
        json_builder_add_boolean_value(b, vm->info.incoming);
        json_builder_set_member_name(b, "busy");
        json_builder_add_boolean_value(b, vm->busy);
        json_builder_set_member_name(b, "ram");
        json_builder_add_int_value(b, region_table_bytes(&vm->info.regions));
        json_builder_end_object(b);
    }
    g_mutex_unlock(&d->lock);
    json_builder_end_array(b);
    return json_builder_get_root(b);
}

const struct control_command daemon_commands[] = {
    {"migrate", cmd_migrate},
    {"migrate-incoming", cmd_migrate_incoming},
    {"query-migrate", cmd_query_migrate},
    {"migrate-cancel", cmd_migrate_cancel},
    {"query-vms", cmd_query_vms},
    {NULL, NULL},
};
