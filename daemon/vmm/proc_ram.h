/*
 * proc_ram.h - find an unmodified VMM's guest RAM in /proc/PID/maps, by the
 * sizes QEMU's query-memdev reports, and open it through map_files.
 *
 * Contract: guest RAM must be a shared mapping of shmem (memfd, /dev/shm)
 * or hugetlbfs of exactly the expected length; each size must match as
 * many distinct files as it is expected times, or it fails with one line
 * (a private mapping, nothing shared, or an ambiguous match).  A VMM that
 * maps the same file twice (QEMU does not) is refused.  Opening
 * /proc/PID/map_files needs CAP_SYS_ADMIN.  The parser is pure (no /proc).
 */
#ifndef POSTCOPYD_PROC_RAM_H
#define POSTCOPYD_PROC_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "region.h"

#define PROC_MAPS_PATH_MAX 4096

/* One line of /proc/PID/maps. */
struct maps_entry {
    uint64_t start;
    uint64_t end;
    uint64_t offset;
    char perms[5];
    bool shared;  /* 's' in perms */
    bool deleted; /* " (deleted)" was stripped from path */
    unsigned int dev_major;
    unsigned int dev_minor;
    uint64_t inode;
    char path[PROC_MAPS_PATH_MAX]; /* "" for anonymous */
};

/* Parse one maps line (no newline needed); false if it is malformed. */
bool proc_maps_parse_line(const char *line, struct maps_entry *e);

/* A shared mapping of a file: what guest RAM must look like. */
bool proc_maps_is_shared_file(const struct maps_entry *e);

/*
 * For each of @sizes[0..@n), find the VMM's guest RAM mapping, open it
 * O_RDWR and add it to @t.  On failure, @t holds what was added before.
 */
bool proc_ram_find(pid_t pid, const uint64_t *sizes, size_t n,
                   struct region_table *t, GError **err);

#endif /* POSTCOPYD_PROC_RAM_H */
