/* expect.c - see expect.h. */
#include "expect.h"

#include <string.h>
#include <gio/gio.h>

#include "daemon.h"
#include "qmp.h"

/* libvirt starts a domain in well under a second; no need to hurry. */
#define EXPECT_RETRY_US (200 * 1000)

static void expected_vm_free(struct expected_vm *e)
{
    g_free(e->name);
    g_free(e->domain);
    g_free(e->connect);
    g_free(e);
}

static void forget(struct daemon *d, struct expected_vm *e)
{
    g_mutex_lock(&d->lock);
    g_ptr_array_remove(d->expected, e);
    g_mutex_unlock(&d->lock);
    expected_vm_free(e);
}

/*
 * Only "not running yet" is worth another try: any other refusal (RAM
 * not shared, no such domain, a name taken) would say the same again.
 */
static bool try_attach(struct daemon *d, const struct expected_vm *e,
                       int64_t deadline)
{
    struct qemu_attach_args a = {
        .domain = e->domain,
        .connect = e->connect,
        .name = e->name,
        .incoming = true,
    };

    for (;;) {
        g_autoptr(GError) err = NULL;
        bool already = false;

        if (daemon_attach_qemu(d, &a, &already, &err)) {
            g_message("vm %s: libvirt domain %s %s (it was expected)", e->name,
                      e->domain, already ? "was attached already" : "attached");
            return true;
        }
        if (!g_error_matches(err, QMP_ERROR, QMP_ERROR_NOT_RUNNING) ||
            g_get_monotonic_time() > deadline || d->stopping) {
            g_warning("vm %s: libvirt domain %s was expected but is not "
                      "attached: %s",
                      e->name, e->domain, err->message);
            return false;
        }
        g_usleep(EXPECT_RETRY_US);
    }
}

static gpointer expect_thread(gpointer opaque)
{
    struct expected_vm *e = opaque;
    struct daemon *d = e->daemon;

    try_attach(d, e,
               g_get_monotonic_time() + EXPECT_TIMEOUT_S * G_USEC_PER_SEC);
    forget(d, e);
    return NULL;
}

/* A VM of that name is expected or attached here as a destination. */
static bool known(struct daemon *d, const char *name)
{
    for (guint i = 0; i < d->expected->len; i++) {
        if (!strcmp(((struct expected_vm *)d->expected->pdata[i])->name,
                    name)) {
            return true;
        }
    }
    for (guint i = 0; i < d->vms->len; i++) {
        struct vm_entry *vm = d->vms->pdata[i];

        if (vm->info.incoming && !strcmp(vm->info.vm_name, name)) {
            return true;
        }
    }
    return false;
}

bool daemon_expect_domain(struct daemon *d, const char *domain,
                          const char *connect, const char *name, GError **err)
{
    struct expected_vm *e;
    bool dup;

    name = name ? name : domain;
    if (!attach_name_valid(name, err)) {
        return false;
    }
    daemon_reap_vms(d); /* a dead VM of that name is no VM */
    e = g_new0(struct expected_vm, 1);
    e->daemon = d;
    e->name = g_strdup(name);
    e->domain = g_strdup(domain);
    e->connect = g_strdup(connect);
    e->since_us = g_get_real_time();
    g_mutex_lock(&d->lock);
    dup = known(d, name);
    if (!dup) {
        g_ptr_array_add(d->expected, e);
    }
    g_mutex_unlock(&d->lock);
    if (dup) {
        expected_vm_free(e);
        return true;
    }
    g_message("vm %s: libvirt domain %s expected: attached as soon as it "
              "runs",
              name, domain);
    if (!g_thread_try_new("expect", expect_thread, e, err)) {
        forget(d, e);
        g_prefix_error(err, "no thread to attach it: ");
        return false;
    }
    return true;
}

void daemon_expected_json(struct daemon *d, JsonBuilder *b)
{
    for (guint i = 0; i < d->expected->len; i++) {
        const struct expected_vm *e = d->expected->pdata[i];

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, e->name);
        json_builder_set_member_name(b, "vmm");
        json_builder_add_string_value(b, "QEMU (libvirt)");
        json_builder_set_member_name(b, "domain");
        json_builder_add_string_value(b, e->domain);
        json_builder_set_member_name(b, "role");
        json_builder_add_string_value(b, "destination");
        json_builder_set_member_name(b, "incoming");
        json_builder_add_boolean_value(b, TRUE);
        json_builder_set_member_name(b, "expected");
        json_builder_add_boolean_value(b, TRUE);
        json_builder_set_member_name(b, "since");
        json_builder_add_int_value(b, e->since_us / G_USEC_PER_SEC);
        json_builder_end_object(b);
    }
}
