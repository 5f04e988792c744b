/*
 * round_predict.c - see round_predict.h.
 *
 * The next round sends the @dirty pages; at this round's pace it lasts
 * dirty / sent of this round, and a guest writing at the same rate dirties
 * in it about the same share of what it sends as this round left: the
 * round predicts the next by its own share.  A round that watched each
 * page only from its read on watched, on average, half of the round (the
 * reads go at an even pace), so its dirty set is half what a whole
 * round's watch finds: it counts twice.  Measured (4 GiB guest writing
 * 1 GiB/s at random, README "Performance"): round 1 left 28% dirty, the
 * round 2 allowed by its share alone left 79%, and the migration took
 * 6.2-7.6 s with that round against 5.9-6.4 s without.
 */
#include "round_predict.h"

bool round_predict_next_pays(uint64_t sent, uint64_t dirty,
                             bool watched_from_read)
{
    if (!sent) {
        return true; /* nothing to judge by */
    }
    /* dirty * k <= sent, without the product's overflow */
    return dirty <= sent / (watched_from_read ? 4 : 2);
}
