/*
 * vmm_driver.h - what the migration engine asks of a VMM, whatever VMM it
 * is: stop its vCPUs and hand over its device state, load a device state
 * and run, exit, and whether it is still there.  One driver per attached
 * VMM: the synthetic VM's attach channel (vmm.h) or QEMU's QMP socket
 * (qmp_driver.h).
 *
 * Contract: a driver is used by one thread at a time (the migration that
 * holds the VM, or the daemon's reaper while no migration does); every
 * call returns within the driver's own timeout and fails with a one-line
 * GError naming the VMM; gone() never blocks.  free() closes what the
 * driver owns and leaves the VMM itself running.
 */
#ifndef POSTCOPYD_VMM_DRIVER_H
#define POSTCOPYD_VMM_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

struct vmm_driver;

struct vmm_driver_ops {
    const char *name;
    /* Stop the vCPUs; *@state (g_free it) is the device state. */
    bool (*pause)(struct vmm_driver *drv, uint8_t **state, size_t *len,
                  GError **err);
    /*
     * Run again.  A destination loads @state first; a source resumed
     * after a failed switchover gets NULL, 0.
     */
    bool (*resume)(struct vmm_driver *drv, const uint8_t *state, size_t len,
                   GError **err);
    /*
     * Optional (NULL: nothing to do): a migration into this VMM starts;
     * get ready to take a device state, so that less of it happens in the
     * downtime.
     */
    bool (*expect_incoming)(struct vmm_driver *drv, GError **err);
    /*
     * Optional (NULL: nothing to ask): a no-op the VMM answers, sent just
     * before the downtime so that a VMM slow to answer pays for it there
     * (see vmm_driver_ping()).
     */
    bool (*ping)(struct vmm_driver *drv, GError **err);
    /* Ask the VMM to exit. */
    bool (*quit)(struct vmm_driver *drv, GError **err);
    /* The VMM exited or closed its channel. */
    bool (*gone)(struct vmm_driver *drv);
    void (*free)(struct vmm_driver *drv);
};

struct vmm_driver {
    const struct vmm_driver_ops *ops;
    /*
     * The VMM wrote its incoming RAM itself before the migration (QEMU's
     * machine reset and loaders): the destination discards it, page
     * cache and mappings, before it installs anything.
     */
    bool discard_incoming_ram;
    /*
     * A source VMM exits once the destination owns every page (QEMU,
     * postcopy-guest; not a VMM attached in the Firecracker form).
     */
    bool quit_when_moved;
    /*
     * Set by pause: when the vCPUs actually stopped (g_get_monotonic_time),
     * for a VMM that stops itself partway through pause (QEMU); 0: at the
     * call.
     */
    int64_t stopped_us;
};

static inline bool vmm_driver_pause(struct vmm_driver *drv, uint8_t **state,
                                    size_t *len, GError **err)
{
    return drv->ops->pause(drv, state, len, err);
}

static inline bool vmm_driver_resume(struct vmm_driver *drv,
                                     const uint8_t *state, size_t len,
                                     GError **err)
{
    return drv->ops->resume(drv, state, len, err);
}

static inline bool vmm_driver_expect_incoming(struct vmm_driver *drv,
                                              GError **err)
{
    return !drv->ops->expect_incoming || drv->ops->expect_incoming(drv, err);
}

/*
 * Ask the VMM for a no-op answer just before the downtime (the source
 * before its pause, the destination before it answers the Barrier): the
 * last moment a VMM that does not answer costs nothing, the source's VM
 * still running.  It also wakes the VMM's thread, and the CPU it sleeps
 * on, outside the downtime: on the bench's machine the hypervisor left a
 * CPU idle a while unrun for up to 60 ms when the pause woke the VMM's
 * monitor there (traced: no sample on that CPU meanwhile).  Alternated
 * runs: an idle 4 GiB guest's pause 39-60 -> 0.31-0.36 ms; 1 GiB hybrid
 * at 256 MiB/s, downtime median 2.37 -> 1.12 ms, the destination's
 * resume 0.61 -> 0.21 ms.
 */
static inline bool vmm_driver_ping(struct vmm_driver *drv, GError **err)
{
    return !drv->ops->ping || drv->ops->ping(drv, err);
}

static inline bool vmm_driver_quit(struct vmm_driver *drv, GError **err)
{
    return drv->ops->quit(drv, err);
}

static inline bool vmm_driver_gone(struct vmm_driver *drv)
{
    return drv->ops->gone(drv);
}

static inline void vmm_driver_free(struct vmm_driver *drv)
{
    if (drv) {
        drv->ops->free(drv);
    }
}

/*
 * The synthetic VM's driver (vmm.c): owns @sock, the attach socket, and
 * a pidfd of the process at its other end, by which gone() sees it exit.
 */
struct vmm_driver *vmm_channel_driver_new(int sock);

#endif /* POSTCOPYD_VMM_DRIVER_H */
