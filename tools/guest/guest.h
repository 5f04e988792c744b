/*
 * guest.h - one postcopy-guest process: its RAM, the uffd it keeps, the
 * attach socket, the workload, and the command loop that serves postcopyd.
 *
 * Contract: guest_serve() answers every Command on the attach socket with a
 * Reply carrying the same id, from one thread; the only other sender is the
 * verify thread (a Reply with id 0 and `verify` set), serialised by
 * send_lock.  It returns the process exit status: 0 after QUIT or when the
 * daemon closes the socket (a line on stdout says which), 1 on a broken
 * frame.  vCPU threads are never joined on exit: one may be blocked on a
 * fault nobody will resolve any more.
 */
#ifndef POSTCOPY_GUEST_GUEST_H
#define POSTCOPY_GUEST_GUEST_H

#include <stdint.h>
#include <glib.h>

#include "guest_config.h"
#include "guest_ram.h"
#include "workload.h"

struct guest {
    struct guest_config cfg;
    struct guest_ram ram;
    int uffd; /* ours, kept open: if the daemon dies, faults stay blocked */
    int sock;
    GMutex send_lock;
    struct workload *wl;      /* NULL on an incoming guest until its RESUME */
    struct workload *held_wl; /* incoming: its vCPUs, held until then */
    uint64_t seed;            /* of the workload: --seed, or the source's */
    GThread *verifier;
    uint64_t *expected; /* digest per global page for the verify thread */
    /* Connect and send the hello (main.c); used again by reattach. */
    bool (*attach)(struct guest *g, GError **err);
};

int guest_serve(struct guest *g);

#endif /* POSTCOPY_GUEST_GUEST_H */
