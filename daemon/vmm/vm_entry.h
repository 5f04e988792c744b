/*
 * vm_entry.h - one VMM attached to the daemon, as the engine sees it: its
 * attach info (uffd, RAM regions), its driver (pause, resume, quit), and
 * whether a migration holds it.
 *
 * Contract: the daemon's registry (daemon.c) creates and frees entries and
 * guards busy/moved with its lock; a migration that took the VM
 * (daemon_take_vm) owns the rest until it releases it.
 */
#ifndef POSTCOPYD_VM_ENTRY_H
#define POSTCOPYD_VM_ENTRY_H

#include <stdbool.h>

#include "attach.h"
#include "vmm_driver.h"

struct daemon;
struct prealloc;

/* One attached VMM. */
struct vm_entry {
    struct attach_info info;
    int sock; /* the attach socket until the driver owns it, else -1 */
    /* pause/resume/quit; used only by the migration that holds the VM */
    struct vmm_driver *driver;
    bool busy;  /* held by a migration */
    bool moved; /* source: the VM runs on a destination now */
    struct daemon *daemon;
    bool api_done; /* UFFDIO_API already done on info.uffd */
    /* incoming, [daemon] prealloc = on: its RAM being allocated */
    struct prealloc *prealloc;
};

#endif /* POSTCOPYD_VM_ENTRY_H */
