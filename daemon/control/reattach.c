/* reattach.c - see reattach.h. */
#include "reattach.h"

#include <gio/gio.h>

#include "daemon.h"
#include "session_file.h"

#define REATTACH_TRIES    10
#define REATTACH_RETRY_US G_USEC_PER_SEC

struct reattach {
    struct daemon *d;
    GArray *sessions; /* struct session_file, libvirt domains only */
};

static void reattach_one(struct daemon *d, const struct session_file *f)
{
    bool incoming = f->role == ROLE_DESTINATION;
    struct qemu_attach_args a = {
        .domain = f->domain,
        .connect = f->connect[0] ? f->connect : NULL,
        .name = f->vm_name,
        .incoming = incoming,
    };

    for (unsigned i = 1; i <= REATTACH_TRIES && !d->stopping; i++) {
        g_autoptr(GError) err = NULL;
        bool already = false;

        if (daemon_attach_qemu(d, &a, &already, &err) && already) {
            return; /* an operator was first */
        }
        if (!err) {
            g_message("vm %s: libvirt domain %s attached again (%s) to carry "
                      "migration %s on",
                      f->vm_name, f->domain,
                      incoming ? "destination" : "source", f->id);
            return;
        }
        if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_EXISTS)) {
            g_warning("vm %s: migration %s: not attached again: %s", f->vm_name,
                      f->id, err->message);
            return;
        }
        if (i == REATTACH_TRIES) {
            g_warning("vm %s: migration %s: libvirt domain %s not attached "
                      "again after %u tries (attach --domain does it): %s",
                      f->vm_name, f->id, f->domain, i, err->message);
            return;
        }
        g_usleep(REATTACH_RETRY_US);
    }
}

static gpointer reattach_thread(gpointer opaque)
{
    struct reattach *r = opaque;

    for (guint i = 0; i < r->sessions->len; i++) {
        reattach_one(r->d, &g_array_index(r->sessions, struct session_file, i));
    }
    g_array_unref(r->sessions);
    g_free(r);
    return NULL;
}

void daemon_reattach_domains(struct daemon *d)
{
    g_autoptr(GArray) all = session_file_list(d->cfg->state_dir);
    struct reattach *r = g_new0(struct reattach, 1);

    r->d = d;
    r->sessions = g_array_new(FALSE, FALSE, sizeof(struct session_file));
    for (guint i = 0; i < all->len; i++) {
        const struct session_file *f =
            &g_array_index(all, struct session_file, i);

        if (f->domain[0]) {
            g_array_append_vals(r->sessions, f, 1);
        }
    }
    if (r->sessions->len == 0) {
        g_array_unref(r->sessions);
        g_free(r);
        return;
    }
    g_thread_unref(g_thread_new("reattach", reattach_thread, r));
}
