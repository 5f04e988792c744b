/*
 * workload.h - the guest's "vCPUs": threads that dirty guest RAM in a chosen
 * pattern, and the initial contents of RAM.
 *
 * Every write covers one 4 KiB unit (a whole small page, or one 4 KiB piece
 * of a huge page) with a non-zero pattern that differs per unit, per write
 * and per generation, so a page copied half-way never matches its digest.
 * Units are numbered over all regions in order (see guest_ram.h), so the
 * writes spread over the regions in proportion to their sizes.
 * vCPU i owns the units u with u % vcpus == i: two vCPUs never write the
 * same bytes, and what RAM holds at a pause does not depend on timing.
 *
 * Contract: workload_pause() returns only when every started vCPU is parked
 * between two writes, and none writes again until workload_resume().
 * pages_written counts 4 KiB writes, from the starting count given.
 */
#ifndef POSTCOPY_GUEST_WORKLOAD_H
#define POSTCOPY_GUEST_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "guest_ram.h"

#define WORKLOAD_UNIT 4096u

enum workload_kind {
    WORKLOAD_IDLE,   /* no vCPU writes at all */
    WORKLOAD_SEQ,    /* each vCPU walks its units in order, round and round */
    WORKLOAD_RANDOM, /* uniformly random units */
    WORKLOAD_HOTSET, /* random units in the first hotset_percent of RAM */
};

struct workload_params {
    enum workload_kind kind;
    const struct guest_ram *ram; /* outlives the workload */
    unsigned vcpus;
    uint64_t dirty_rate_mib; /* MiB/s over all vCPUs; 0: unthrottled */
    unsigned hotset_percent;
    uint64_t seed;
    uint64_t generation;    /* bumped by every resume */
    uint64_t pages_written; /* starting count (from a device state) */
    unsigned last_writes;   /* per vCPU, written at a pause before parking */
};

struct workload;

bool workload_kind_parse(const char *s, enum workload_kind *kind);
const char *workload_kind_name(enum workload_kind kind);

/*
 * Deterministic initial contents from @seed: about @fill_percent of the
 * pages (by global page number) get a non-zero pattern, the others are
 * left untouched (zero).
 */
void workload_fill(const struct guest_ram *ram, unsigned fill_percent,
                   uint64_t seed);

struct workload *workload_new(const struct workload_params *p);
/*
 * An incoming guest's vCPUs exist before its state arrives, as a VMM's
 * do: workload_prestart() creates the threads, held before their first
 * write; workload_adopt() (held only) takes the migrated seed, generation
 * and count; workload_start() lets them run.  Creating them at the
 * resume instead took 1-1.5 ms here, all of it inside the downtime.
 */
void workload_prestart(struct workload *w);
void workload_adopt(struct workload *w, const struct workload_params *p);
/* Start the vCPU threads, or release held ones (parked at once if a pause
 * is pending). */
void workload_start(struct workload *w);
void workload_pause(struct workload *w);
void workload_resume(struct workload *w);
bool workload_paused(struct workload *w);
uint64_t workload_pages_written(struct workload *w);
uint64_t workload_generation(struct workload *w);

#endif /* POSTCOPY_GUEST_WORKLOAD_H */
