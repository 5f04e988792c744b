/*
 * qmp_driver.h - QEMU as a vmm_driver, over a QMP channel (qmp_channel.h):
 * QEMU's own QMP socket, or libvirt's monitor passthrough for a domain
 * libvirt manages.  The steps are the same either way.
 *
 * postcopyd moves guest RAM itself; QEMU's own migration stream, with
 * x-ignore-shared on both sides, carries only the device state, through a
 * socketpair handed over with getfd.  Contract: the RAM must be in shared
 * memory backends (qmp_driver_prepare() refuses anything else, with the
 * channel's hint); pause stops the vCPUs and returns the device state;
 * resume loads one (or, on a source, just runs again) and leaves QEMU
 * running; quit is the channel's (QMP quit; libvirt's destroy); free
 * closes only the channel.
 */
#ifndef POSTCOPYD_QMP_DRIVER_H
#define POSTCOPYD_QMP_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "qmp_channel.h"
#include "qmp_memdev.h"
#include "vmm_driver.h"

/* @pid exited (a zombie counts as gone).  Never blocks. */
bool qmp_driver_pid_gone(pid_t pid);

/* What the last pause / resume cost, and QEMU's own event times. */
struct qmp_driver_times {
    int64_t pause_us;  /* stop until the device state was all read */
    int64_t resume_us; /* getfd until running (destination), or cont */
    int64_t state_bytes;
    /* QEMU's timestamps (CLOCK_REALTIME us) of its last STOP / RESUME. */
    int64_t stop_event_us;
    int64_t resume_event_us;
};

/*
 * A driver for the QEMU with pid @pid (0: found by qmp_driver_prepare())
 * behind @ch, which it owns; @incoming for a destination (-incoming
 * defer).
 */
struct vmm_driver *qmp_driver_new(struct qmp_channel *ch, pid_t pid,
                                  bool incoming);

/*
 * At attach: check that every memory backend is shared (*@memdevs, a
 * GPtrArray of struct qmp_memdev, lists them), that a destination waits
 * for an incoming migration, set the migration capabilities, and find
 * QEMU's pid if it is not known yet (its first vCPU thread's process).
 */
bool qmp_driver_prepare(struct vmm_driver *drv, GPtrArray **memdevs,
                        GError **err);

/* QEMU's pid: given, or found by qmp_driver_prepare(). */
pid_t qmp_driver_pid(struct vmm_driver *drv);

/*
 * The daemon carries on a migration a dead daemon left in postcopy: the
 * incoming VM may run already (no inmigrate check) and its RAM is the
 * guest's own (never discarded).
 */
void qmp_driver_carry_on(struct vmm_driver *drv);

/* One QMP command of the caller's own, through the driver's channel. */
bool qmp_driver_execute(struct vmm_driver *drv, const char *cmd,
                        JsonObject *args, JsonNode **ret, GError **err);

void qmp_driver_get_times(struct vmm_driver *drv, struct qmp_driver_times *t);

#endif /* POSTCOPYD_QMP_DRIVER_H */
