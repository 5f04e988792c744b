/*
 * round_predict.h - whether another precopy round would pay, predicted
 * from the round just ended.  Hybrid ends precopy when the next round
 * would leave more than half of what it sends dirty again: the guest then
 * writes about as fast as the link carries, and more rounds only re-send
 * pages it will write again (postcopy fetches them once).
 *
 * Contract: a pure function of the round's figures; no state.
 */
#ifndef POSTCOPYD_ROUND_PREDICT_H
#define POSTCOPYD_ROUND_PREDICT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * A round sent @sent pages and found @dirty of them written since.
 * @watched_from_read: the round watched each page only from the moment it
 * read it (round 1 of the write-protect methods), not throughout.
 */
bool round_predict_next_pays(uint64_t sent, uint64_t dirty,
                             bool watched_from_read);

#endif /* POSTCOPYD_ROUND_PREDICT_H */
