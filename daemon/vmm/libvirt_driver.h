/*
 * libvirt_driver.h - a libvirt-managed QEMU domain as a vmm_driver.
 *
 * The same protocol as qmp_driver.h (x-ignore-shared; the device state
 * through a socketpair handed over with getfd), but libvirt owns the
 * domain's QMP socket, so every command goes through libvirt's monitor
 * passthrough (virDomainQemuMonitorCommand, ...WithFiles for getfd) and
 * libvirt sees each STOP and RESUME.  QMP events do not pass through: the
 * end of QEMU's migration stream is polled with query-migrate.
 *
 * Contract: the domain is looked up by name on a connection to @uri (NULL:
 * libvirt's default); its RAM must be in shared memory backends
 * (libvirt_driver_prepare() refuses anything else, naming the XML to
 * add).  Calls are bounded by libvirt's own monitor timeout and ours
 * while the state moves.  quit destroys the domain (libvirt kills QEMU
 * and marks it shut off); free closes the connection only.
 */
#ifndef POSTCOPYD_LIBVIRT_DRIVER_H
#define POSTCOPYD_LIBVIRT_DRIVER_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#include "vmm_driver.h"

/* What a domain's XML needs for postcopyd to move its RAM. */
#define LIBVIRT_SHARED_RAM_XML                                                 \
    "<memoryBacking><source type='memfd'/><access mode='shared'/>"             \
    "</memoryBacking>"

/* A driver for the active domain @name on @uri; @incoming: a destination. */
struct vmm_driver *libvirt_driver_new(const char *uri, const char *name,
                                      bool incoming, GError **err);

/*
 * At attach: as qmp_driver_prepare(), through libvirt; *@pid is QEMU's
 * process (the owner of its vCPU threads).
 */
bool libvirt_driver_prepare(struct vmm_driver *drv, GPtrArray **memdevs,
                            pid_t *pid, GError **err);

/*
 * One QMP command through libvirt: @cmd with @args (NULL: none); *@ret
 * (may be NULL; json_node_unref it) is its "return".
 */
bool libvirt_driver_execute(struct vmm_driver *drv, const char *cmd,
                            JsonObject *args, JsonNode **ret, GError **err);

#endif /* POSTCOPYD_LIBVIRT_DRIVER_H */
