/*
 * guest_proc.h - a postcopy-guest process under test: spawn it with a
 * Unix attach socket, accept its hello (uffd + memory fds), drive it
 * through vmm.h, reach its RAM from outside (memory fds, or the pid for
 * anonymous RAM), and reap it.  Failures are test assertions.
 *
 * A guest has one region (spawn_with and friends: ram_region(), ram_read()
 * and the other ram_* helpers assert that) or several (spawn_regions:
 * find them with region_named() and use the region_* helpers).  map_ram,
 * copy_ram and assert_ram_untouched cover every region; copy_ram pairs
 * the regions of two guests by name.
 */
#ifndef POSTCOPYD_GUEST_PROC_H
#define POSTCOPYD_GUEST_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "attach.h"
#include "region.h"
#include "vmm.h"

#define GUEST_RAM      (32ULL << 20)
#define GUEST_RATE     "64" /* MiB/s: leaves the test's CPUs some room */
#define WAIT_MS        20000
#define POLL_STEP_MS   20
#define QUIET_MS       150
#define VERIFY_WAIT_MS 60000

struct guest_proc {
    GPid pid;
    int listen_fd;
    int sock;
    int out_fd; /* the guest's stdout */
    GString *out;
    char *dir;
    char *sock_path;
    struct attach_info info;
    struct vmm vmm;
};

struct backing_case {
    enum backing_kind kind;
    const char *name;
};

int listen_unix(const char *path);
void assert_alive(struct guest_proc *gp);
void accept_guest(struct guest_proc *gp);
void expect_output(struct guest_proc *gp, const char *needle);
void spawn_guest(struct guest_proc *gp, const char *const *args);
int reap_guest(struct guest_proc *gp);
void release_guest(struct guest_proc *gp);
void quit_guest(struct guest_proc *gp);
uint64_t page_size_of(enum backing_kind kind);
uint64_t npages_of(enum backing_kind kind);
bool backing_ready(const struct backing_case *bc, unsigned nguests);
void spawn_with(struct guest_proc *gp, const struct backing_case *bc,
                const char *const *extra);
void spawn_source(struct guest_proc *gp, const struct backing_case *bc);
void spawn_incoming(struct guest_proc *gp, const struct backing_case *bc);
/* spawn_incoming() with more options (NULL-terminated @extra). */
void spawn_incoming_with(struct guest_proc *gp, const struct backing_case *bc,
                         const char *const *extra);
/*
 * A guest with one `--region` per entry of NULL-terminated @regions
 * ("shmem:8M", ...), as a verifying source or an incoming guest, plus
 * @extra (NULL-terminated, may be NULL).
 */
void spawn_regions(struct guest_proc *gp, const char *const *regions,
                   bool incoming, const char *const *extra);
/* Make sure @npages default huge pages are free; false (skipped) if not. */
bool hugetlb_ready(unsigned long npages);
uint64_t query(struct guest_proc *gp, bool *paused);
uint64_t wait_written_above(struct guest_proc *gp, uint64_t above);
void assert_still(struct guest_proc *gp, uint64_t written);
uint8_t *pause_guest(struct guest_proc *gp, size_t *len);
struct region *ram_region(struct guest_proc *gp);
/* The region the guest calls @name ("ram0", ...), or a failed test. */
struct region *region_named(struct guest_proc *gp, const char *name);
void region_read(struct guest_proc *gp, const struct region *r, uint64_t off,
                 void *buf, size_t len);
void region_write(struct guest_proc *gp, const struct region *r, uint64_t off,
                  const void *buf, size_t len);
void region_corrupt_byte(struct guest_proc *gp, const struct region *r,
                         uint64_t off);
void ram_read(struct guest_proc *gp, uint64_t off, void *buf, size_t len);
void ram_write(struct guest_proc *gp, uint64_t off, const void *buf,
               size_t len);
void map_ram(struct guest_proc *gp);
bool all_zero(const uint8_t *p, size_t len);
uint64_t copy_ram(struct guest_proc *src, struct guest_proc *dst);
void corrupt_byte(struct guest_proc *gp, uint64_t off);
void assert_ram_untouched(struct guest_proc *gp);

#endif /* POSTCOPYD_GUEST_PROC_H */
