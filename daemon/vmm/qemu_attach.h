/*
 * qemu_attach.h - attach an unmodified, running QEMU by its pid: its QMP
 * socket becomes the VMM driver (qmp_driver.h), its guest RAM is found in
 * /proc/PID/maps among its shared mappings (proc_ram.h), and its
 * userfaultfd is created inside it by an injected syscall (uffd_inject.h).
 *
 * Contract: on success @info holds the VM's name, pid, direction, our
 * copy of the uffd (UFFDIO_API not done yet) and the regions with their
 * fds, and *@drv the QEMU driver; QEMU keeps running untouched but for
 * its x-ignore-shared capability and one new fd.  On failure nothing is
 * kept and the error is one line naming the pid (or the domain).  Every step is bounded
 * in time (QEMU_ATTACH_TIMEOUT_MS to connect, the QMP client's and the
 * injection's own timeouts).
 */
#ifndef POSTCOPYD_QEMU_ATTACH_H
#define POSTCOPYD_QEMU_ATTACH_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

#include "attach.h"
#include "vmm_driver.h"

#define QEMU_ATTACH_TIMEOUT_MS 5000

/*
 * Either @pid and @qmp_path (QEMU's own QMP socket), or @domain: a
 * libvirt domain on @connect (NULL: libvirt's default URI), whose pid
 * is found through libvirt (libvirt_driver.h).
 */
struct qemu_attach_args {
    pid_t pid;
    const char *qmp_path;
    const char *domain;
    const char *connect;
    const char *name;
    bool incoming;
    bool uffd_via_device; /* /dev/userfaultfd without trying the syscall */
    /*
     * A restarted daemon carries on a migration of this VM (its session
     * file says so): the VM may already run here, and the uffd is the one
     * left inside QEMU.
     */
    bool carry_on;
};

bool qemu_attach(const struct qemu_attach_args *a, struct attach_info *info,
                 struct vmm_driver **drv, GError **err);

#endif /* POSTCOPYD_QEMU_ATTACH_H */
