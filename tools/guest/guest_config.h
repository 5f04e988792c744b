/*
 * guest_config.h - postcopy-guest's command line.
 *
 * Contract: guest_config_parse() either fills @cfg with validated values
 * (sizes parsed, page size resolved for the backing, RAM size a multiple of
 * it, ranges checked) or fails with a one-line message naming the option.
 */
#ifndef POSTCOPY_GUEST_CONFIG_H
#define POSTCOPY_GUEST_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "region.h"
#include "workload.h"

struct guest_config {
    enum backing_kind backing;
    uint64_t size;
    uint64_t page_size;
    unsigned vcpus;
    enum workload_kind workload;
    uint64_t dirty_rate_mib; /* 0: as fast as possible */
    unsigned hotset_percent;
    unsigned fill_percent;
    uint64_t seed;
    char *attach_path;
    char *name;
    bool incoming;
    bool verify;
};

bool guest_config_parse(int *argc, char ***argv, struct guest_config *cfg,
                        GError **err);
void guest_config_clear(struct guest_config *cfg);

/* "512M", "1G", "64K", "4096": binary multiples.  False if malformed. */
bool guest_parse_size(const char *s, uint64_t *out);

#endif /* POSTCOPY_GUEST_CONFIG_H */
