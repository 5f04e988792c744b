/*
 * swap_area.h - real swap for a test: a swap file switched on for the
 * test's length, and a child process run in a memory cgroup small enough
 * that the shmem pages it writes go to swap.
 *
 * Contract: swap_area_on() needs root and a disk filesystem under the
 * temporary directory or /var/tmp; on failure it says why (for
 * g_test_skip) and leaves nothing behind.  swap_area_off() switches the
 * area off (every page in it comes back) and removes the file.  While an
 * area is on, the whole host has swap: other tests running beside this one
 * see it too, as they would on a host with swap.
 */
#ifndef POSTCOPYD_SWAP_AREA_H
#define POSTCOPYD_SWAP_AREA_H

#include <stdbool.h>
#include <stdint.h>

struct swap_area {
    char *path;
};

bool swap_area_on(struct swap_area *s, uint64_t bytes, char **why);
void swap_area_off(struct swap_area *s);

/*
 * Run @fn(@arg) in a child process inside a new memory cgroup (v1 or v2)
 * limited to @limit bytes; wait for it (it must exit 0); remove the
 * cgroup.  False (with @why) if no memory cgroup could be made.
 */
bool swap_area_run_small(uint64_t limit, void (*fn)(void *), void *arg,
                         char **why);

#endif
