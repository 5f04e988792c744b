/*
 * guest_config.h - postcopy-guest's command line.
 *
 * Guest RAM is one or more regions: each `--region KIND:SIZE[:PAGESIZE]`
 * adds one, in order (ram0, ram1, ...); without any, `--backing`, `--size`
 * and `--page-size` describe a single region.
 *
 * Contract: guest_config_parse() either fills @cfg with validated values
 * (sizes parsed, page sizes resolved for each backing, each region's size a
 * multiple of its page size, ranges checked, verify threads defaulted to
 * the vCPU count) or fails with a one-line message naming the option.
 */
#ifndef POSTCOPY_GUEST_CONFIG_H
#define POSTCOPY_GUEST_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "drop.h"
#include "guest_ram.h"
#include "region.h"
#include "workload.h"

struct guest_config {
    struct guest_ram_spec regions[GUEST_REGIONS_MAX];
    unsigned nregions;
    unsigned vcpus;
    enum workload_kind workload;
    uint64_t dirty_rate_mib; /* 0: as fast as possible */
    unsigned hotset_percent;
    unsigned fill_percent;
    uint64_t seed;
    char *attach_path;
    char *name;
    bool incoming;
    bool verify;             /* source: digest every page at the pause */
    unsigned verify_threads; /* destination: threads reading the pages */
    bool verify_overlap;     /* every verify thread reads every page */
    bool verify_write;       /* write and re-check pages after verifying */
    unsigned verify_settle_ms;
    /* After the attach socket closes (daemon restart), seconds to keep
     * trying to attach again before exiting; 0: exit at once. */
    unsigned reattach_s;
    /* At a pause, each vCPU writes this many more pages before parking:
     * the adversarial "write just before the pause" workload. */
    unsigned last_writes;
    /* Refuse every QUERY: a VMM that stopped answering, for tests. */
    bool refuse_query;
    /* Drop part of RAM: incoming, after the resume; source, on SIGUSR1. */
    struct drop_spec drop;
};

bool guest_config_parse(int *argc, char ***argv, struct guest_config *cfg,
                        GError **err);
void guest_config_clear(struct guest_config *cfg);

/* A bad option value as G_OPTION_ERROR_BAD_VALUE; always false. */
bool guest_option_error(GError **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* "512M", "1G", "64K", "4096": binary multiples.  False if malformed. */
bool guest_parse_size(const char *s, uint64_t *out);

#endif /* POSTCOPY_GUEST_CONFIG_H */
