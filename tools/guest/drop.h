/*
 * drop.h - an incoming guest that drops part of its RAM during postcopy,
 * as a balloon or a hot-unplug would: `--drop MODE:FIRST:COUNT` (global
 * page numbers, one region).
 *
 *  - dontneed: madvise(MADV_DONTNEED), anonymous RAM: the pages read 0;
 *  - remove:   madvise(MADV_REMOVE), shmem or hugetlbfs: the file's pages
 *              are punched and read 0;
 *  - unmap:    munmap, then a fresh anonymous mapping at the same place
 *              (a hot-unplug and re-plug), anonymous RAM: the pages read 0.
 *
 * Contract: drop_parse() checks the option alone, drop_check() against the
 * guest's RAM.  drop_apply() runs once.  An incoming guest runs it right
 * after the resume and before the verification: it first reads the first
 * half of the range (so those pages are installed, then dropped: both kinds
 * are covered), then drops it, and sets the expected digest of every
 * dropped page to a zero page's.  A source runs it when SIGUSR1 comes
 * (drop_on_signal(), before any other thread starts), while it is migrated:
 * its digests are taken at the pause, so the destination must match.
 */
#ifndef POSTCOPY_GUEST_DROP_H
#define POSTCOPY_GUEST_DROP_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "guest_ram.h"

enum drop_mode { DROP_NONE, DROP_DONTNEED, DROP_REMOVE, DROP_UNMAP };

struct drop_spec {
    enum drop_mode mode;
    uint64_t first; /* global page */
    uint64_t count;
};

bool drop_parse(const char *arg, struct drop_spec *d, GError **err);
bool drop_check(const struct drop_spec *d, const struct guest_ram *ram,
                GError **err);
/* Drop the range; @expected (a digest per global page, or NULL) follows. */
bool drop_apply(const struct drop_spec *d, const struct guest_ram *ram,
                uint64_t *expected, GError **err);
/* A thread that waits for SIGUSR1 and then drops (blocked everywhere). */
void drop_on_signal(const struct drop_spec *d, const struct guest_ram *ram);

#endif /* POSTCOPY_GUEST_DROP_H */
