/*
 * le.h - little-endian integers in byte buffers (wire and file formats:
 * the frame header, the VM channel, the guest's digests).
 *
 * Contract: any alignment of @p; memcpy keeps the compiler honest about
 * aliasing and compiles to a plain load or store.
 */
#ifndef POSTCOPYD_LE_H
#define POSTCOPYD_LE_H

#include <stdint.h>
#include <string.h>
#include <glib.h>

static inline void put_le16(uint8_t *p, uint16_t v)
{
    v = GUINT16_TO_LE(v);
    memcpy(p, &v, sizeof(v));
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    memcpy(p, &v, sizeof(v));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_LE(v);
    memcpy(p, &v, sizeof(v));
}

static inline uint16_t get_le16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT16_FROM_LE(v);
}

static inline uint32_t get_le32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_LE(v);
}

static inline uint64_t get_le64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_LE(v);
}

#endif /* POSTCOPYD_LE_H */
