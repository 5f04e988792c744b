/*
 * backing.h - what differs between guest RAM backings, in one ops table
 * (the selftests' idea): how to allocate it, which uffd registration a
 * destination needs, how a page is installed, whether ZEROPAGE exists.
 *
 * Contract: backing_alloc() creates guest RAM as a VMM would (anonymous
 * private, memfd shmem, memfd hugetlb) and returns its mapping and fd;
 * hugetlb allocation fails with a clear message when no huge pages are
 * reserved.  backing_install() puts one run of pages into the VMM's mapping
 * without ever overwriting a present page.
 */
#ifndef POSTCOPYD_BACKING_H
#define POSTCOPYD_BACKING_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "region.h"
#include "uffd.h"

struct backing_ops {
    enum backing_kind kind;
    const char *name;
    /* UFFDIO_REGISTER_MODE_* a destination registers with. */
    uint64_t dest_register_mode;
    /* UFFD_FEATURE_* the destination needs for this backing. */
    uint64_t dest_features;
    /* Install with UFFDIO_CONTINUE after writing the page cache. */
    bool minor;
    /* UFFDIO_ZEROPAGE is offered (hugetlb has none). */
    bool has_zeropage;
};

const struct backing_ops *backing_ops_get(enum backing_kind kind);

/*
 * Allocate @size bytes of guest RAM.  @page_size 0 picks the default (4 KiB,
 * or 2 MiB for hugetlbfs).  *@fd is -1 for anonymous memory.
 */
bool backing_alloc(enum backing_kind kind, uint64_t size, uint64_t page_size,
                   const char *name, void **addr, int *fd, GError **err);

/*
 * Install @len bytes at VMM address @dst of region @r from @data (the
 * daemon's buffer), or zero pages when @data is NULL.  MINOR backings write
 * the page cache through r->alias and CONTINUE; others COPY / ZEROPAGE.
 * Returns 0 or a negative errno (uffd_* semantics).
 */
int backing_install(struct uffd *u, const struct region *r, uint64_t dst,
                    const void *data, uint64_t len, unsigned flags,
                    uint64_t *done);

/*
 * Drop the contents of file-backed region @r: its page cache, and with it
 * every mapping's PTEs (the VMM's too), so the next access faults.  A
 * no-op for anonymous memory.
 */
bool backing_discard(const struct region *r, GError **err);

/* The huge page size of the system's default hugetlb pool, or 0. */
uint64_t backing_default_hugepage_size(void);

#endif /* POSTCOPYD_BACKING_H */
