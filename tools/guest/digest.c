/* digest.c - see digest.h. */
#include "digest.h"

#include <string.h>
#include <glib.h>

#include "le.h"

#define LANES    4
#define LANE_MUL 0x9fb21c651e98df25ULL /* odd: multiplying is a bijection */
#define SEED     0x6a09e667f3bcc908ULL

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

/* Bijective in @h for a fixed @w and injective in @w for a fixed @h. */
static inline uint64_t lane_step(uint64_t h, uint64_t w)
{
    return rotl64((h ^ w) * LANE_MUL, 31);
}

uint64_t digest_bytes(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t lane[LANES] = {SEED, SEED + 1, SEED + 2, SEED + 3};
    uint64_t tail = 0;
    uint64_t h;
    size_t i = 0;

    /* Four independent chains keep the multipliers busy. */
    for (; i + LANES * 8 <= len; i += LANES * 8) {
        for (unsigned l = 0; l < LANES; l++) {
            lane[l] = lane_step(lane[l], get_le64(p + i + l * 8));
        }
    }
    for (; i + 8 <= len; i += 8) {
        lane[0] = lane_step(lane[0], get_le64(p + i));
    }
    if (i < len) {
        memcpy(&tail, p + i, len - i);
        lane[1] = lane_step(lane[1], GUINT64_FROM_LE(tail));
    }
    h = lane_step(SEED ^ len, lane[0]);
    for (unsigned l = 1; l < LANES; l++) {
        h = lane_step(h, lane[l]);
    }
    return digest_mix64(h);
}
