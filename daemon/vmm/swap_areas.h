/*
 * swap_areas.h - whether the host has any swap area.  A shmem page that
 * holds data is either in the page cache or in a swap area; with no swap
 * area, a page not in the page cache is a hole, and mincore() alone tells
 * the two apart where SEEK_DATA would cost a syscall per hole.
 *
 * Contract: swap_areas_none() is true only if /proc/swaps listed no area
 * when it was read.  An area being switched off stays listed until every
 * page in it is back in memory, so "none" means no page is in swap.
 * False if an area is listed or the file cannot be read.  Any thread; one
 * pread() per call.
 */
#ifndef POSTCOPYD_SWAP_AREAS_H
#define POSTCOPYD_SWAP_AREAS_H

#include <stdbool.h>

bool swap_areas_none(void);

#endif
