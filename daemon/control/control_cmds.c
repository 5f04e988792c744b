/*
 * control_cmds.c - the control socket's commands: migrate,
 * migrate-incoming, query-migrate, migrate-cancel, migrate-recover,
 * migrate-set-parameters, migrate-start-postcopy, query-vms,
 * query-metrics, attach, expect-vm (qmp_capabilities and query-commands are the
 * protocol's own: control_request.c).
 * Handlers run on the main loop and never block (attach: bounded, see
 * cmd_attach): a migration runs in its own threads.
 */
#include "daemon.h"
#include "dirty_tracker.h"
#include "expect.h"
#include "prealloc.h"

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

/* An optional non-negative integer argument; false (with @err) if bad. */
static bool arg_uint(JsonObject *args, const char *name, uint64_t *out,
                     GError **err)
{
    JsonNode *n = json_object_get_member(args, name);

    if (!n) {
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_INT64 ||
        json_node_get_int(n) < 0) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "'%s' must be a non-negative integer", name);
        return false;
    }
    *out = json_node_get_int(n);
    return true;
}

static bool parse_params(JsonObject *args, struct migration_params *p,
                         GError **err)
{
    const char *mode = arg_string(args, "mode");
    const char *dirty = arg_string(args, "dirty-tracking");
    const char *bulk = arg_string(args, "postcopy-bulk");
    enum dirty_method dm = DIRTY_AUTO;

    migration_params_init(p);
    if (mode && !migration_mode_parse(mode, &p->mode)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "unknown mode '%s' (postcopy, precopy, hybrid)", mode);
        return false;
    }
    if (dirty && strcmp(dirty, "auto") && !dirty_method_parse(dirty, &dm)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "unknown dirty-tracking '%s' (auto, async-wp, sync-wp, "
                    "soft-dirty)",
                    dirty);
        return false;
    }
    p->dirty_method = dm;
    if (bulk && strcmp(bulk, "on") && strcmp(bulk, "off")) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "'postcopy-bulk' is on or off, not '%s'", bulk);
        return false;
    }
    p->postcopy_bulk = !bulk || !strcmp(bulk, "on");
    if (!arg_uint(args, "downtime-limit", &p->downtime_limit_ms, err) ||
        !arg_uint(args, "max-rounds", &p->max_rounds, err) ||
        !arg_uint(args, "max-precopy-time", &p->max_precopy_ms, err) ||
        !arg_uint(args, "streams", &p->streams, err) ||
        !arg_uint(args, "max-bandwidth", &p->max_bandwidth, err)) {
        return false;
    }
    if (p->streams < 1 || p->streams > 8) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "'streams' must be 1 to 8");
        return false;
    }
    if (!p->max_rounds) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "'max-rounds' must be at least 1");
        return false;
    }
    return true;
}

/* {"id", "vm"}: what names @m in later commands. */
static JsonNode *migration_ref_json(struct migration *m)
{
    JsonObject *o = json_object_new();

    json_object_set_string_member(o, "id", m->id);
    json_object_set_string_member(o, "vm", m->vm_name);
    return json_node_init_object(json_node_alloc(), o);
}

static JsonNode *cmd_migrate(void *opaque, JsonObject *args, GError **err)
{
    struct daemon *d = opaque;
    const char *vm_name = arg_string(args, "vm");
    const char *uri = arg_string(args, "uri");
    struct migration_params params;
    struct migration *m;
    struct vm_entry *vm;

    if (!vm_name || !uri) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "migrate needs string arguments 'vm' and 'uri'");
        return NULL;
    }
    if (!parse_params(args, &params, err)) {
        return NULL;
    }
    vm = daemon_take_vm(d, vm_name, false, err);
    if (!vm) {
        return NULL;
    }
    m = migration_new(d, ROLE_SOURCE, vm, &d->engine);
    m->params = params;
    m->mode = params.mode;
    daemon_add_migration(d, m);
    d->roles.source_start(m, uri, NULL);
    return migration_ref_json(m);
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

/*
 * The migration "id" names, else the newest of VM "vm", else the newest
 * of all; with both, the id must be of that VM.
 */
static struct migration *find(struct daemon *d, JsonObject *args, GError **err)
{
    const char *vm_name = arg_string(args, "vm");
    const char *id = arg_string(args, "id");
    struct migration *m = id ? daemon_find_migration_hex(d, id)
                             : daemon_find_migration(d, vm_name);

    if (m && id && vm_name && strcmp(m->vm_name, vm_name)) {
        m = NULL;
    }
    if (!m) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_DEVICE_NOT_ACTIVE,
                    "no migration%s%s%s%s", vm_name ? " of " : "",
                    vm_name ? vm_name : "", id ? " with id " : "",
                    id ? id : "");
    }
    return m;
}

/*
 * Every answer says whether this daemon's peers go unauthenticated
 * (--insecure on a network address), so no operator misses it.  With an
 * "id", one that does not exist is an error, not "none".
 */
static JsonNode *cmd_query_migrate(void *opaque, JsonObject *args, GError **err)
{
    struct daemon *d = opaque;
    struct migration *m = find(d, args, NULL);
    JsonNode *n;

    if (!m && arg_string(args, "id")) {
        find(d, args, err);
        return NULL;
    }
    if (m) {
        n = migration_query(m);
    } else {
        n = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(n, json_object_new());
        json_object_set_string_member(json_node_get_object(n), "status",
                                      "none");
    }
    json_object_set_boolean_member(json_node_get_object(n), "insecure",
                                   d->insecure);
    return n;
}

static JsonNode *cmd_migrate_cancel(void *opaque, JsonObject *args,
                                    GError **err)
{
    struct daemon *d = opaque;
    struct migration *m = find(d, args, err);

    if (!m) {
        return NULL;
    }
    if (m->role != ROLE_SOURCE) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "cancel a migration on its source");
        return NULL;
    }
    return d->roles.source_cancel(m, err) ? migration_ref_json(m) : NULL;
}

static JsonNode *cmd_migrate_recover(void *opaque, JsonObject *args,
                                     GError **err)
{
    struct daemon *d = opaque;
    struct migration *m = find(d, args, err);

    return m && d->roles.source_recover(m, err) ? migration_ref_json(m) : NULL;
}

/* A source migration still in precopy (or setting up), else @err. */
static struct migration *find_precopy(struct daemon *d, JsonObject *args,
                                      const char *what, GError **err)
{
    struct migration *m = find(d, args, err);
    enum migration_status st;

    if (!m) {
        return NULL;
    }
    st = migration_status(m);
    if (m->role != ROLE_SOURCE || (st != MIG_SETUP && st != MIG_ACTIVE)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "%s: the migration of %s is %s at its %s; only a source "
                    "before its switchover takes it",
                    what, m->vm_name, migration_status_name(st),
                    m->role == ROLE_SOURCE ? "source" : "destination");
        return NULL;
    }
    return m;
}

/* {"max-bandwidth", "downtime-limit"} as the engine reads them now. */
static JsonNode *live_json(struct migration *m)
{
    JsonObject *o = json_object_new();

    json_object_set_string_member(o, "id", m->id);
    json_object_set_int_member(o, "max-bandwidth",
                               atomic_load(&m->live.max_bandwidth));
    json_object_set_int_member(o, "downtime-limit",
                               atomic_load(&m->live.downtime_limit_ms));
    json_object_set_boolean_member(o, "postcopy-requested",
                                   atomic_load(&m->live.postcopy_requested));
    return json_node_init_object(json_node_alloc(), o);
}

/*
 * migrate-set-parameters {"vm"|"id", "max-bandwidth"?: bytes/s (0: no
 * cap), "downtime-limit"?: ms}: the running source engine takes them at
 * its next bulk run and round end (live_params.h).  Answers the values
 * now in force.
 */
static JsonNode *cmd_migrate_set_parameters(void *opaque, JsonObject *args,
                                            GError **err)
{
    static const char *const known[] = {"vm", "id", "max-bandwidth",
                                        "downtime-limit", NULL};
    g_autoptr(GList) names = json_object_get_members(args);
    uint64_t bw = UINT64_MAX, dt = UINT64_MAX;
    struct migration *m;

    for (GList *l = names; l; l = l->next) {
        if (!g_strv_contains(known, l->data)) {
            g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                        "migrate-set-parameters: unknown parameter '%s' "
                        "(max-bandwidth, downtime-limit)",
                        (char *)l->data);
            return NULL;
        }
    }
    if (!arg_uint(args, "max-bandwidth", &bw, err) ||
        !arg_uint(args, "downtime-limit", &dt, err)) {
        return NULL;
    }
    m = find_precopy(opaque, args, "migrate-set-parameters", err);
    if (!m) {
        return NULL;
    }
    if (bw != UINT64_MAX) {
        live_params_set_bandwidth(&m->live, bw);
    }
    if (dt != UINT64_MAX) {
        atomic_store(&m->live.downtime_limit_ms, dt);
    }
    g_message("migration %s: parameters now max-bandwidth %" G_GUINT64_FORMAT
              " B/s, downtime-limit %" G_GUINT64_FORMAT " ms",
              m->id, atomic_load(&m->live.max_bandwidth),
              atomic_load(&m->live.downtime_limit_ms));
    return live_json(m);
}

/*
 * migrate-start-postcopy {"vm"|"id"}: precopy ends at the next round
 * boundary and the rest goes in postcopy (a precopy-mode migration
 * switches over as hybrid does).
 */
static JsonNode *cmd_migrate_start_postcopy(void *opaque, JsonObject *args,
                                            GError **err)
{
    struct migration *m =
        find_precopy(opaque, args, "migrate-start-postcopy", err);

    if (!m) {
        return NULL;
    }
    if (m->mode == MODE_POSTCOPY) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "migrate-start-postcopy: the migration of %s is in "
                    "postcopy mode already",
                    m->vm_name);
        return NULL;
    }
    atomic_store(&m->live.postcopy_requested, true);
    g_message("migration %s: postcopy requested", m->id);
    return live_json(m);
}

/* "prealloc": {"done", "total", "finished", "failed", "seconds", "error"} */
static void add_prealloc(JsonBuilder *b, struct prealloc *pa)
{
    struct prealloc_progress p;

    if (!pa) {
        return;
    }
    prealloc_get_progress(pa, &p);
    json_builder_set_member_name(b, "prealloc");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "done");
    json_builder_add_int_value(b, p.done);
    json_builder_set_member_name(b, "total");
    json_builder_add_int_value(b, p.total);
    json_builder_set_member_name(b, "finished");
    json_builder_add_boolean_value(b, p.finished);
    json_builder_set_member_name(b, "failed");
    json_builder_add_boolean_value(b, p.failed);
    json_builder_set_member_name(b, "seconds");
    json_builder_add_double_value(b, p.seconds);
    if (p.failed) {
        json_builder_set_member_name(b, "error");
        json_builder_add_string_value(b, p.error);
    }
    json_builder_end_object(b);
}

/*
 * "migration": {"id", "status"} of the newest migration of @vm, if any.
 * Under d->lock: a migration's vm is its entry while that is listed.
 */
static void add_vm_migration(JsonBuilder *b, struct daemon *d,
                             struct vm_entry *vm)
{
    for (guint i = d->migrations->len; i-- > 0;) {
        struct migration *m = d->migrations->pdata[i];

        if (m->vm != vm) {
            continue;
        }
        json_builder_set_member_name(b, "migration");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "id");
        json_builder_add_string_value(b, m->id);
        json_builder_set_member_name(b, "status");
        json_builder_add_string_value(
            b, migration_status_name(migration_status(m)));
        json_builder_end_object(b);
        return;
    }
}

static void add_vm_json(JsonBuilder *b, struct daemon *d, struct vm_entry *vm)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, vm->info.vm_name);
    json_builder_set_member_name(b, "pid");
    json_builder_add_int_value(b, vm->info.pid);
    json_builder_set_member_name(b, "incoming");
    json_builder_add_boolean_value(b, vm->info.incoming);
    json_builder_set_member_name(b, "role");
    json_builder_add_string_value(b,
                                  vm->info.incoming ? "destination" : "source");
    json_builder_set_member_name(b, "busy");
    json_builder_add_boolean_value(b, vm->busy);
    json_builder_set_member_name(b, "ram");
    json_builder_add_int_value(b, region_table_bytes(&vm->info.regions));
    json_builder_set_member_name(b, "vmm");
    json_builder_add_string_value(b, vm->driver->ops->name);
    if (vm->info.domain[0]) {
        json_builder_set_member_name(b, "domain");
        json_builder_add_string_value(b, vm->info.domain);
    }
    if (vm->info.uffd_origin) {
        json_builder_set_member_name(b, "uffd");
        json_builder_add_string_value(b, vm->info.uffd_origin);
    }
    add_prealloc(b, vm->prealloc);
    add_vm_migration(b, d, vm);
    json_builder_end_object(b);
}

static JsonNode *cmd_query_vms(void *opaque, JsonObject *args, GError **err)
{
    struct daemon *d = opaque;
    g_autoptr(JsonBuilder) b = json_builder_new();

    daemon_reap_vms(d); /* no VMM that exited is listed */
    json_builder_begin_array(b);
    g_mutex_lock(&d->lock);
    for (guint i = 0; i < d->vms->len; i++) {
        add_vm_json(b, d, d->vms->pdata[i]);
    }
    daemon_expected_json(d, b);
    g_mutex_unlock(&d->lock);
    json_builder_end_array(b);
    return json_builder_get_root(b);
}

/* The newest VM of that name and direction, as query-vms shows it. */
static JsonNode *query_vm(struct daemon *d, const char *name, bool incoming)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    bool found = false;

    g_mutex_lock(&d->lock);
    for (guint i = d->vms->len; i-- > 0 && !found;) {
        struct vm_entry *vm = d->vms->pdata[i];

        if (!strcmp(vm->info.vm_name, name) && vm->info.incoming == incoming) {
            add_vm_json(b, d, vm);
            found = true;
        }
    }
    g_mutex_unlock(&d->lock);
    return found ? json_builder_get_root(b) : NULL;
}

static bool arg_bool(JsonObject *args, const char *name)
{
    JsonNode *n = json_object_get_member(args, name);

    return n && JSON_NODE_HOLDS_VALUE(n) &&
           json_node_get_value_type(n) == G_TYPE_BOOLEAN &&
           json_node_get_boolean(n);
}

/*
 * attach {"pid", "qmp", "name", "incoming"?, "uffd": "syscall"|"device"?},
 * or {"domain", "connect"?, ...} for a libvirt domain (then "name"
 * defaults to the domain's): a running QEMU joins.  It runs here, on the
 * main loop, unlike a migration: every step of it is bounded
 * (qemu_attach.h), an attach is an operator's one-off act, and a reply
 * that says whether it worked is what the operator's tools need.
 */
static bool attach_target(JsonObject *args, struct qemu_attach_args *a,
                          GError **err)
{
    uint64_t pid = 0;

    a->domain = arg_string(args, "domain");
    a->connect = arg_string(args, "connect");
    if (a->domain) {
        a->name = a->name ? a->name : a->domain;
        return true;
    }
    if (!arg_uint(args, "pid", &pid, err)) {
        return false;
    }
    if (!pid || pid > INT32_MAX || !a->qmp_path || !a->name) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "attach needs 'pid' (a process id), and strings 'qmp' "
                    "and 'name'; or 'domain' (a libvirt domain)");
        return false;
    }
    a->pid = (pid_t)pid;
    return true;
}

static JsonNode *cmd_attach(void *opaque, JsonObject *args, GError **err)
{
    struct daemon *d = opaque;
    const char *uffd = arg_string(args, "uffd");
    struct qemu_attach_args a = {
        .qmp_path = arg_string(args, "qmp"),
        .name = arg_string(args, "name"),
        .incoming = arg_bool(args, "incoming"),
    };

    if (!attach_target(args, &a, err)) {
        return NULL;
    }
    if (uffd && strcmp(uffd, "syscall") && strcmp(uffd, "device")) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "'uffd' is syscall or device, not '%s'", uffd);
        return NULL;
    }
    a.uffd_via_device = uffd && !strcmp(uffd, "device");
    if (!daemon_attach_qemu(d, &a, NULL, err)) {
        return NULL;
    }
    return query_vm(d, a.name, a.incoming);
}

/*
 * expect-vm {"domain", "connect"?, "name"?}: the libvirt hook says libvirt
 * prepares this incoming domain; it is attached once it runs (expect.h).
 */
static JsonNode *cmd_expect_vm(void *opaque, JsonObject *args, GError **err)
{
    const char *domain = arg_string(args, "domain");
    const char *name = arg_string(args, "name");
    g_autoptr(JsonBuilder) b = json_builder_new();

    if (!domain) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "expect-vm needs 'domain' (a libvirt domain)");
        return NULL;
    }
    if (!daemon_expect_domain(opaque, domain, arg_string(args, "connect"), name,
                              err)) {
        return NULL;
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, name ? name : domain);
    json_builder_set_member_name(b, "domain");
    json_builder_add_string_value(b, domain);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

static JsonNode *cmd_query_metrics(void *opaque, JsonObject *args, GError **err)
{
    return daemon_query_metrics(opaque);
}

const struct control_command daemon_commands[] = {
    {"migrate", cmd_migrate},
    {"migrate-incoming", cmd_migrate_incoming},
    {"query-migrate", cmd_query_migrate},
    {"migrate-cancel", cmd_migrate_cancel},
    {"migrate-recover", cmd_migrate_recover},
    {"migrate-set-parameters", cmd_migrate_set_parameters},
    {"migrate-start-postcopy", cmd_migrate_start_postcopy},
    {"query-vms", cmd_query_vms},
    {"query-metrics", cmd_query_metrics},
    {"attach", cmd_attach},
    {"expect-vm", cmd_expect_vm},
    {NULL, NULL},
};
