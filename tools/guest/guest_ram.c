/* guest_ram.c - see guest_ram.h. */
#include "guest_ram.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backing.h"

static bool alloc_one(struct guest_region *r, const struct guest_ram_spec *s,
                      unsigned index, const char *vm_name, GError **err)
{
    g_autofree char *memfd_name = g_strdup_printf("%s-ram%u", vm_name, index);
    void *addr;

    if (!backing_alloc(s->kind, s->size, s->page_size, memfd_name, &addr,
                       &r->fd, err)) {
        g_prefix_error(err, "ram%u: ", index);
        return false;
    }
    r->kind = s->kind;
    r->base = addr;
    r->size = s->size;
    r->page_size = s->page_size;
    snprintf(r->name, sizeof(r->name), "ram%u", index);
    return true;
}

bool guest_ram_alloc(struct guest_ram *ram, const struct guest_ram_spec *specs,
                     unsigned n, const char *vm_name, GError **err)
{
    g_assert(n >= 1 && n <= GUEST_REGIONS_MAX);
    *ram = (struct guest_ram){0};
    for (unsigned i = 0; i < n; i++) {
        struct guest_region *r = &ram->regions[i];

        if (!alloc_one(r, &specs[i], i, vm_name, err)) {
            guest_ram_release(ram);
            return false;
        }
        r->first_page = ram->npages;
        r->offset = ram->size;
        ram->npages += r->size / r->page_size;
        ram->size += r->size;
        ram->n++;
    }
    return true;
}

void guest_ram_release(struct guest_ram *ram)
{
    for (unsigned i = 0; i < ram->n; i++) {
        struct guest_region *r = &ram->regions[i];

        munmap(r->base, r->size);
        if (r->fd >= 0) {
            close(r->fd);
        }
    }
    *ram = (struct guest_ram){0};
}

/* The last region whose first page (or byte offset) is at or below @x. */
static unsigned find(const struct guest_ram *ram, uint64_t x, bool by_page)
{
    unsigned lo = 0, hi = ram->n;

    while (hi - lo > 1) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct guest_region *r = &ram->regions[mid];

        if ((by_page ? r->first_page : r->offset) <= x) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

const struct guest_region *guest_ram_page_region(const struct guest_ram *ram,
                                                 uint64_t page)
{
    return &ram->regions[find(ram, page, true)];
}

uint8_t *guest_ram_unit(const struct guest_ram *ram, uint64_t unit,
                        uint64_t unit_size)
{
    uint64_t off = unit * unit_size;
    const struct guest_region *r = &ram->regions[find(ram, off, false)];

    return r->base + (off - r->offset);
}
