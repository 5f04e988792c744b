/*
 * uffd.h - the userfaultfd layer: open a uffd, probe what the kernel offers,
 * do the API handshake, and the range operations with one error policy.
 *
 * Contract:
 *  - Setup calls (open, probe, api, register) report failure with GError.
 *  - Range operations are on the fault path: no allocation, no GError; they
 *    return 0 or a negative errno.  EAGAIN from a short copy is continued
 *    from where the kernel stopped; EEXIST ("already there") is success for
 *    that page and the page is woken; EAGAIN with no progress (a
 *    non-cooperative event is queued unread) is retried up to
 *    UFFD_EAGAIN_RETRIES times, unless the caller's drain hook says to stop:
 *    then the operation returns -EAGAIN with *done saying how far it got.
 *  - All addresses are in the mm that created the uffd (the VMM's); copy
 *    sources are in the caller's own address space.
 */
#ifndef POSTCOPYD_UFFD_H
#define POSTCOPYD_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "uffd_compat.h"

#define UFFD_EAGAIN_RETRIES 1000

/* Every feature bit this code knows by name, in bit order. */
#define UFFD_KNOWN_FEATURES ((uint64_t)0x1ffff)

struct uffd_caps {
    uint64_t advertised; /* what UFFDIO_API with features=0 reported */
    uint64_t usable;     /* each bit accepted when requested alone */
    uint64_t api_ioctls; /* ioctls reported by the API handshake */
};

/*
 * One uffd in use.  `drain` is called when an operation fails with EAGAIN
 * and no progress (a non-cooperative event, REMOVE or UNMAP, is queued
 * unread): true retries, false returns -EAGAIN to the caller, who must
 * read the events (or let their reader do it) and decide again whether
 * the pages may still be filled: a removed range must not be.
 */
struct uffd {
    int fd;
    uint64_t features; /* features enabled by the API handshake */
    bool (*drain)(void *opaque);
    void *drain_opaque;
};

/* How a failed uffd ioctl should be treated (CRIU's idea: one place). */
enum uffd_errclass {
    UFFD_ERR_RETRY,   /* EAGAIN, EINTR: try again */
    UFFD_ERR_ALREADY, /* EEXIST: the page is present; nothing to do */
    UFFD_ERR_GONE,    /* ESRCH, ENOENT, ENOSPC: the mm or mapping went away */
    UFFD_ERR_FATAL,   /* anything else: a bug or a refused operation */
};

enum uffd_errclass uffd_classify(int err);
const char *uffd_feature_name(uint64_t bit);
/* Names of the UFFDIO_* ioctls in a register reply, written into @buf. */
const char *uffd_ioctls_string(uint64_t ioctls, char *buf, size_t len);

/*
 * Open a new uffd: /dev/userfaultfd + USERFAULTFD_IOC_NEW, falling back to
 * the userfaultfd(2) syscall.  O_CLOEXEC | O_NONBLOCK.  -1 on failure.
 */
int uffd_open(GError **err);

/* Probe the kernel: one fresh uffd per feature bit. */
bool uffd_probe(struct uffd_caps *caps, GError **err);

/*
 * UFFDIO_API on @fd asking for @wanted.  Bits missing from @caps->usable
 * are dropped first and named in @dropped (may be NULL).  On success fills
 * @u (fd, features).  Fails with a clear message if the uffd was already
 * initialised (UFFDIO_API may be done once per uffd).
 */
bool uffd_api(int fd, uint64_t wanted, const struct uffd_caps *caps,
              struct uffd *u, uint64_t *dropped, GError **err);

/*
 * The features an already initialised uffd was given (a restarted daemon
 * cannot ask UFFDIO_API again): read from /proc/self/fdinfo.
 */
bool uffd_read_features(int fd, uint64_t *features, GError **err);

/* Register [start, start+len) with UFFDIO_REGISTER_MODE_* bits. */
bool uffd_register(struct uffd *u, uint64_t start, uint64_t len, uint64_t mode,
                   uint64_t *ioctls, GError **err);
bool uffd_unregister(struct uffd *u, uint64_t start, uint64_t len,
                     GError **err);

/*
 * Range operations; @len and @dst are multiples of @page_size.  *@done (may
 * be NULL) receives the number of bytes newly installed, not counting
 * pages that were already present.  @flags: UFFD_OP_DONTWAKE.
 */
#define UFFD_OP_DONTWAKE (1u << 0)
#define UFFD_OP_WP       (1u << 1) /* install write-protected */

int uffd_copy(struct uffd *u, uint64_t dst, const void *src, uint64_t len,
              uint64_t page_size, unsigned flags, uint64_t *done);
int uffd_zeropage(struct uffd *u, uint64_t dst, uint64_t len,
                  uint64_t page_size, unsigned flags, uint64_t *done);
int uffd_continue(struct uffd *u, uint64_t dst, uint64_t len,
                  uint64_t page_size, unsigned flags, uint64_t *done);
int uffd_wake(struct uffd *u, uint64_t start, uint64_t len);
/* Protect (@protect) or unprotect (and wake, unless DONTWAKE) a range. */
int uffd_writeprotect(struct uffd *u, uint64_t start, uint64_t len,
                      bool protect, unsigned flags);

/*
 * Read up to @n messages without blocking.  Returns the count (0 when none
 * is pending) or a negative errno.
 */
int uffd_read_msgs(struct uffd *u, struct uffd_msg *msgs, int n);

/* Wait until the uffd is readable or @timeout_ms passes (-1: forever). */
int uffd_poll(struct uffd *u, int timeout_ms);

#endif /* POSTCOPYD_UFFD_H */
