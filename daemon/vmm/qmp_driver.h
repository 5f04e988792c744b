/*
 * qmp_driver.h - QEMU as a vmm_driver, through its QMP socket.
 *
 * postcopyd moves guest RAM itself; QEMU's own migration stream, with
 * x-ignore-shared on both sides, carries only the device state, through a
 * socketpair handed over with getfd.  Contract: the RAM must be in shared
 * memory backends (qmp_driver_prepare() refuses anything else); pause
 * stops the vCPUs and returns the device state; resume loads one (or, on
 * a source, just runs again) and leaves QEMU running; free closes only
 * the QMP socket.
 */
#ifndef POSTCOPYD_QMP_DRIVER_H
#define POSTCOPYD_QMP_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "qmp.h"
#include "vmm_driver.h"

/* One of QEMU's memory backends (query-memdev). */
struct qmp_memdev {
    char *id;
    uint64_t size;
    bool share;
};

void qmp_memdev_free(struct qmp_memdev *m);

/*
 * query-memdev's reply @ret as a GPtrArray of struct qmp_memdev; refuses
 * no backend or one that is not shared, the error ending with @hint (how
 * to make the RAM shared).
 */
GPtrArray *qmp_memdevs_from_reply(JsonNode *ret, const char *hint,
                                  GError **err);

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
 * A driver for the QEMU with pid @pid (0: unknown) behind @q, which it
 * owns; @incoming for a destination (-incoming defer).
 */
struct vmm_driver *qmp_driver_new(struct qmp *q, pid_t pid, bool incoming);

/*
 * At attach: check that every memory backend is shared (*@memdevs, a
 * GPtrArray of struct qmp_memdev, lists them), that a destination waits
 * for an incoming migration, and set the migration capabilities.
 */
bool qmp_driver_prepare(struct vmm_driver *drv, GPtrArray **memdevs,
                        GError **err);

/*
 * The daemon carries on a migration a dead daemon left in postcopy: the
 * incoming VM may run already (no inmigrate check) and its RAM is the
 * guest's own (never discarded).
 */
void qmp_driver_carry_on(struct vmm_driver *drv);

/* The driver's QMP client, for queries of its own (still the driver's). */
struct qmp *qmp_driver_qmp(struct vmm_driver *drv);

void qmp_driver_get_times(struct vmm_driver *drv, struct qmp_driver_times *t);

#endif /* POSTCOPYD_QMP_DRIVER_H */
