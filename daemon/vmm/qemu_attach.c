/* qemu_attach.c - see qemu_attach.h. */
#include "qemu_attach.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <gio/gio.h>

#include "proc_ram.h"
#include "qmp.h"
#include "qmp_channel.h"
#include "qmp_driver.h"
#include "uffd_inject.h"

/*
 * The QMP socket must be the pid's own: the pid is where the uffd goes
 * and the RAM is looked for, the socket is what gets paused and resumed.
 */
static bool check_owner(struct qmp *q, const struct qemu_attach_args *a,
                        GError **err)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(qmp_get_fd(q), SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "%s: SO_PEERCRED: %s", a->qmp_path, g_strerror(errno));
        return false;
    }
    if (cred.pid != a->pid) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "the QMP socket %s belongs to pid %d, not to pid %d",
                    a->qmp_path, (int)cred.pid, (int)a->pid);
        return false;
    }
    return true;
}

/* QEMU's RAM: every memory backend, each found among its mappings. */
static bool find_memdevs(pid_t pid, GPtrArray *memdevs,
                         struct attach_info *info, GError **err)
{
    g_autofree uint64_t *sizes = g_new(uint64_t, memdevs->len);

    for (guint i = 0; i < memdevs->len; i++) {
        sizes[i] = ((const struct qmp_memdev *)memdevs->pdata[i])->size;
    }
    return proc_ram_find(pid, sizes, memdevs->len, &info->regions, err);
}

/* The uffd is created last: nothing is left inside QEMU if a step fails. */
static bool take_uffd(const struct qemu_attach_args *a, pid_t pid,
                      struct attach_info *info, GError **err)
{
    enum uffd_inject_via used;
    int vmm_fd = -1;

    if (a->carry_on) {
        info->uffd_origin = "the migration's own (carried on)";
        return uffd_inject_take_existing(pid, &vmm_fd, &info->uffd, err);
    }
    if (!uffd_inject_create(
            pid, a->uffd_via_device ? UFFD_INJECT_DEVICE : UFFD_INJECT_SYSCALL,
            &vmm_fd, &info->uffd, &used, err)) {
        return false;
    }
    info->uffd_origin = uffd_inject_via_name(used);
    return true;
}

/*
 * QEMU's QMP: its own socket, which must belong to the pid, or a libvirt
 * domain's monitor through libvirt.
 */
static struct qmp_channel *open_channel(const struct qemu_attach_args *a,
                                        GError **err)
{
    struct qmp *q;

    if (a->domain) {
        return qmp_channel_libvirt_new(a->connect, a->domain, err);
    }
    q = qmp_connect(a->qmp_path, QEMU_ATTACH_TIMEOUT_MS, err);
    if (!q || !check_owner(q, a, err)) {
        qmp_free(q);
        g_prefix_error(err, "QEMU pid %d: ", a->pid);
        return NULL;
    }
    return qmp_channel_socket_new(q, a->pid);
}

/* The pid, the RAM, the uffd, in that order (take_uffd() says why). */
static bool find_vm(struct vmm_driver *d, const struct qemu_attach_args *a,
                    struct attach_info *info, GError **err)
{
    g_autoptr(GPtrArray) memdevs = NULL;

    if (!qmp_driver_prepare(d, &memdevs, err)) {
        return false;
    }
    info->pid = qmp_driver_pid(d);
    return find_memdevs(info->pid, memdevs, info, err) &&
           take_uffd(a, info->pid, info, err);
}

bool qemu_attach(const struct qemu_attach_args *a, struct attach_info *info,
                 struct vmm_driver **drv, GError **err)
{
    g_autofree char *label =
        a->domain ? g_strdup_printf("libvirt domain %s", a->domain)
                  : g_strdup_printf("QEMU pid %d", a->pid);
    struct qmp_channel *ch = open_channel(a, err);
    struct vmm_driver *d;

    if (!ch) {
        return false;
    }
    d = qmp_driver_new(ch, a->domain ? 0 : a->pid, a->incoming);
    if (a->carry_on) {
        qmp_driver_carry_on(d);
    }
    g_strlcpy(info->vm_name, a->name, sizeof(info->vm_name));
    info->incoming = a->incoming;
    if (a->domain) {
        g_strlcpy(info->domain, a->domain, sizeof(info->domain));
        g_strlcpy(info->connect, a->connect ? a->connect : "",
                  sizeof(info->connect));
    }
    if (!find_vm(d, a, info, err)) {
        if (a->domain &&
            g_error_matches(*err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED)) {
            g_prefix_error(err, "set seccomp_sandbox = 0 in libvirt's "
                                "qemu.conf: ");
        }
        if (!g_str_has_prefix((*err)->message, label)) {
            g_prefix_error(err, "%s: ", label);
        }
        vmm_driver_free(d);
        attach_info_clear(info);
        attach_info_init(info);
        return false;
    }
    *drv = d;
    return true;
}
