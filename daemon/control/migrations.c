/*
 * migrations.c - the daemon's registry of migrations (daemon.h): added
 * as they start, found by VM name or by id, and each status change sent
 * to the control socket as a MIGRATION event.
 */
#include "daemon.h"

#include <string.h>

void daemon_add_migration(struct daemon *d, struct migration *m)
{
    g_mutex_lock(&d->lock);
    g_ptr_array_add(d->migrations, m);
    g_mutex_unlock(&d->lock);
}

struct migration *daemon_find_migration(struct daemon *d, const char *name)
{
    struct migration *found = NULL;

    g_mutex_lock(&d->lock);
    for (guint i = d->migrations->len; i-- > 0 && !found;) {
        struct migration *m = d->migrations->pdata[i];

        if (!name || !strcmp(m->vm_name, name)) {
            found = m;
        }
    }
    g_mutex_unlock(&d->lock);
    return found;
}

struct migration *daemon_find_migration_hex(struct daemon *d, const char *id)
{
    struct migration *found = NULL;

    g_mutex_lock(&d->lock);
    for (guint i = d->migrations->len; i-- > 0 && !found;) {
        struct migration *m = d->migrations->pdata[i];

        if (!g_ascii_strcasecmp(m->id, id)) {
            found = m;
        }
    }
    g_mutex_unlock(&d->lock);
    return found;
}

struct migration *daemon_find_migration_id(struct daemon *d,
                                           const uint8_t id[16])
{
    struct migration *found = NULL;

    g_mutex_lock(&d->lock);
    for (guint i = d->migrations->len; i-- > 0 && !found;) {
        struct migration *m = d->migrations->pdata[i];

        if (m->role == ROLE_DESTINATION && !memcmp(m->id_bytes, id, 16)) {
            found = m;
        }
    }
    g_mutex_unlock(&d->lock);
    return found;
}

void daemon_emit_status(struct daemon *d, struct migration *m)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    if (!d->control) {
        return;
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "status");
    json_builder_add_string_value(b,
                                  migration_status_name(migration_status(m)));
    json_builder_set_member_name(b, "vm");
    json_builder_add_string_value(b, m->vm_name);
    json_builder_set_member_name(b, "role");
    json_builder_add_string_value(b, m->role == ROLE_SOURCE ? "source"
                                                            : "destination");
    json_builder_end_object(b);
    control_server_emit_event(d->control, "MIGRATION",
                              json_builder_get_root(b));
}
