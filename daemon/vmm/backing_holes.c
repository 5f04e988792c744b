/*
 * backing_holes.c - the source's hole finding for backing.h
 * (backing_find_holes()): which pages of a shmem region were never
 * written, so go as PAGE_ZERO and are never read.
 */
#include "backing.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "swap_areas.h"

/*
 * The holes among the pages mincore() found not held (@vec): SEEK_DATA
 * from the start of each stretch of them (a swap entry is data to it)
 * finds the holes before the next page in swap, then again after that
 * page: one call per swapped page (whose read, from swap, costs far more)
 * and one per stretch, bounded by the run, unlike SEEK_HOLE, which walks
 * data to its end.
 */
static uint64_t holes_by_seek(const struct region *r, uint64_t off, uint64_t n,
                              const unsigned char *vec, bool *hole)
{
    uint64_t base = r->offset + off, psz = r->page_size, holes = 0;

    for (uint64_t i = 0; i < n;) {
        uint64_t j, k;
        off_t d;

        if (vec[i] & 1) {
            i++;
            continue;
        }
        for (j = i; j < n && !(vec[j] & 1); j++) {
        }
        d = lseek(r->fd, (off_t)(base + i * psz), SEEK_DATA);
        if (d < 0 && errno != ENXIO) {
            i = j; /* unknown: data, read and sent */
            continue;
        }
        /* Pages [i, k) are holes; page k, if before j, is in swap. */
        k = d < 0 ? j : MIN(j, ((uint64_t)d - base) / psz);

        memset(hole + i, 1, (k - i) * sizeof(*hole));
        holes += k - i;
        i = k + 1;
    }
    return holes;
}

/*
 * Which pages of the run [off, off + n pages) of @r are holes: never
 * written, so zero, and never to be read: reading a shmem hole through the
 * alias would allocate a page in the VMM's memory only to find zeros.
 * mincore() says which pages the page cache holds, in one call whatever
 * the run; a page it does not hold is a hole or in swap.
 *
 * With no swap area listed before the mincore() and none after it, no
 * page was in swap while it ran (one would need a swapon, the page written
 * out and a whole swapoff, which reads every page back in, inside that one
 * call), so a page not held is a hole.  That is the common case on a
 * hypervisor, and it pays: a guest's scattered free pages cost one
 * SEEK_DATA per five pages, about a sixth of the source's CPU in precopy
 * (a syscall costs about 1 us on the bench's machine; see README,
 * Performance).  With swap, holes_by_seek() tells them apart.
 *
 * Returns true if every page is a hole.  Only shmem: hugetlbfs reads as
 * data throughout, anonymous memory has no holes.
 */
bool backing_find_holes(const struct region *r, uint64_t off, uint64_t n,
                        bool *hole)
{
    unsigned char vec[BACKING_HOLES_MAX];
    uint8_t *view = backing_view(r, off);
    uint64_t holes = 0;
    bool unswapped;

    g_assert(n <= BACKING_HOLES_MAX);
    memset(hole, 0, n * sizeof(*hole));
    if (!backing_ops_get(r->kind)->has_holes || !view) {
        return false;
    }
    unswapped = swap_areas_none();
    if (mincore(view, n * r->page_size, vec)) {
        return false;
    }
    if (!unswapped || !swap_areas_none()) {
        return holes_by_seek(r, off, n, vec, hole) == n;
    }
    for (uint64_t i = 0; i < n; i++) {
        hole[i] = !(vec[i] & 1);
        holes += hole[i];
    }
    return holes == n;
}
