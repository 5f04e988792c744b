/*
 * iov.h - stepping through an iovec array as a partial write or read
 * consumes it (sendmsg, process_vm_readv).
 *
 * Contract: the array must hold at least the bytes stepped past; entries
 * are changed in place, so pass a copy the caller may lose.
 */
#ifndef POSTCOPYD_IOV_H
#define POSTCOPYD_IOV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Move the front of *@iov (*@niov entries) past @n bytes. */
static inline void iov_advance(struct iovec **iov, int *niov, size_t n)
{
    while (*niov > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*niov)--;
    }
    if (n) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

#endif /* POSTCOPYD_IOV_H */
