/*
 * guest_ram.h - postcopy-guest's RAM: one or more regions, each its own
 * mapping of its own backing (anonymous, memfd shmem, memfd hugetlb),
 * seen by the workload, the digests and the verification as one sequence.
 *
 * Global page numbering: the pages of ram0 come first, then those of ram1,
 * and so on, in the order the regions were given on the command line (not
 * in address order); each page has its own region's page size.  The digest
 * table of the device state, the initial fill and verify results
 * (first_mismatch) all use this numbering.  4 KiB workload units are
 * numbered the same way over the concatenated bytes, so uniformly random
 * units land in each region in proportion to its size.
 *
 * Contract: guest_ram_alloc() maps every region or none; lookups by global
 * page or unit are O(log nregions) and their index must be in range.
 */
#ifndef POSTCOPY_GUEST_RAM_H
#define POSTCOPY_GUEST_RAM_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "region.h"

/*
 * One fd per file region travels in the hello next to the uffd
 * (VM_CHANNEL_MAX_FDS is 32), so at most 31 regions, whatever their kinds.
 */
#define GUEST_REGIONS_MAX 31

/* What to allocate: the command line's view of one region. */
struct guest_ram_spec {
    enum backing_kind kind;
    uint64_t size;
    uint64_t page_size; /* resolved: 4 KiB or the huge page size */
};

struct guest_region {
    enum backing_kind kind;
    uint8_t *base;
    uint64_t size;
    uint64_t page_size;
    int fd;              /* memfd, -1 for anonymous */
    uint64_t first_page; /* global index of its first page */
    uint64_t offset;     /* bytes of the regions before it */
    char name[REGION_NAME_MAX];
};

struct guest_ram {
    struct guest_region regions[GUEST_REGIONS_MAX];
    unsigned n;
    uint64_t npages; /* over all regions */
    uint64_t size;   /* bytes over all regions */
};

/* Regions are named ram0, ram1, ...; memfds "<vm_name>-ramN". */
bool guest_ram_alloc(struct guest_ram *ram, const struct guest_ram_spec *specs,
                     unsigned n, const char *vm_name, GError **err);
void guest_ram_release(struct guest_ram *ram);

/* The region holding global page @page. */
const struct guest_region *guest_ram_page_region(const struct guest_ram *ram,
                                                 uint64_t page);

/* Address of global page @page; *@len is its size. */
static inline uint8_t *guest_ram_page(const struct guest_ram *ram,
                                      uint64_t page, uint64_t *len)
{
    const struct guest_region *r = guest_ram_page_region(ram, page);

    *len = r->page_size;
    return r->base + (page - r->first_page) * r->page_size;
}

/* Address of the @unit_size-byte unit @unit of the concatenated bytes. */
uint8_t *guest_ram_unit(const struct guest_ram *ram, uint64_t unit,
                        uint64_t unit_size);

#endif /* POSTCOPY_GUEST_RAM_H */
