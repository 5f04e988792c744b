/*
 * mem_guard.h - writing into the VMM's guest RAM through the daemon's own
 * mapping of its file (the alias) without dying if the VMM shrank the file.
 *
 * A shared mapping's page past its file's end is a SIGBUS on access: a VMM
 * that truncates its RAM file mid-migration (a bug of its own, or a hostile
 * one) would otherwise kill the daemon, and every migration it serves with
 * it.  Copies by the kernel (pwrite, recv into the mapping) fail with
 * EFAULT there instead; copies by this process go through here.
 *
 * Contract: any thread, any number at once.  The first call installs a
 * process-wide SIGBUS handler that takes over only a fault inside the
 * range a thread is copying through here; any other SIGBUS kills the
 * process as before.  Nothing else in the process may handle SIGBUS.
 */
#ifndef POSTCOPYD_MEM_GUARD_H
#define POSTCOPYD_MEM_GUARD_H

#include <stddef.h>

/*
 * @len bytes of @src (NULL: zeroes) to @dst: 0, or -EFAULT if part of
 * @dst is not backed (its file ends before it); then any part of @dst
 * may have been written.
 */
int mem_guard_copy(void *dst, const void *src, size_t len);

#endif /* POSTCOPYD_MEM_GUARD_H */
