/*
 * digest.h - the 64-bit page digest postcopy-guest uses to prove that a
 * destination's memory equals the source's at the switchover point.
 *
 * Contract: digest_bytes() is deterministic across processes and hosts
 * (little-endian words), and any change confined to one 8-byte word of the
 * input -- in particular any single-byte change -- always changes the
 * digest: every step is a bijection of the running state.  It is not a
 * cryptographic hash.
 */
#ifndef POSTCOPY_GUEST_DIGEST_H
#define POSTCOPY_GUEST_DIGEST_H

#include <stddef.h>
#include <stdint.h>

uint64_t digest_bytes(const void *buf, size_t len);

/* splitmix64: a bijective 64-bit mixer, also used to derive patterns. */
static inline uint64_t digest_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

#endif /* POSTCOPY_GUEST_DIGEST_H */
