/*
 * frame.h - the fixed header in front of everything sent on a peer channel.
 *
 * 32 bytes, little endian (docs/protocol.md has the table):
 *   0 u16 magic "PC"   2 u8 version   3 u8 type   4 u32 flags
 *   8 u32 region      12 u32 len     16 u64 offset
 *  24 u32 count       28 u32 seq
 * followed by exactly `len` payload bytes.  Page data is that payload, raw,
 * so it can be sent from and received into guest memory without a copy.
 *
 * Contract: frame_decode() accepts only headers that frame_validate()
 * accepts, so a decoded header is self-consistent (its type is known, its
 * payload length is within the limit for the type, fields the type does not
 * use are zero).  Whether a page frame fits the migration's region layout is
 * a separate check, frame_check_page(), done before any memory is touched.
 * Every rejection is a G_IO_ERROR_INVALID_DATA with a one-line message.
 */
#ifndef POSTCOPYD_FRAME_H
#define POSTCOPYD_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define FRAME_HDR_LEN 32
#define FRAME_MAGIC   0x4350u /* bytes 'P' 'C' */
#define FRAME_VERSION 1

/*
 * Page payload limit: two 2 MiB huge pages, or 1024 contiguous 4 KiB pages.
 * Bigger pages (1 GiB hugetlbfs) travel as FRAME_PAGE_CHUNK pieces.
 */
#define FRAME_MAX_PAYLOAD (4u << 20)
#define FRAME_PAGE_CHUNK  (2u << 20)
/* Messages carry the device state, which can be far bigger than a page. */
#define FRAME_MAX_MSG (64u << 20)

enum frame_type {
    FRAME_MSG = 1,  /* payload: one packed PeerMessage (proto/peer.proto) */
    FRAME_PAGE = 2, /* payload: page bytes at region/offset */
    FRAME_PAGE_ZERO = 3, /* `count` zero pages at region/offset, no payload */
    FRAME_PAGE_REQ = 4,  /* please send `count` pages at region/offset */
    FRAME_SYNC = 5,      /* barrier: everything before it on this channel */
    FRAME_KEEPALIVE = 6, /* nothing; keeps an idle link's state fresh */
};
#define FRAME_TYPE_MAX FRAME_KEEPALIVE

enum frame_flags {
    /* PAGE/ZERO answering a PAGE_REQ; seq echoes the request's seq. */
    FRAME_F_REPLY = 1u << 0,
    /* Read after the source VMM stopped: this copy can no longer go stale. */
    FRAME_F_FINAL = 1u << 1,
    /* PAGE chunk of a page bigger than FRAME_MAX_PAYLOAD; more follow. */
    FRAME_F_MORE = 1u << 2,
};

/* A header in host byte order; the magic and version are implicit. */
struct frame_hdr {
    uint8_t type;    /* enum frame_type */
    uint32_t flags;  /* enum frame_flags */
    uint32_t region; /* index into the Layout's regions */
    uint32_t len;    /* payload bytes that follow the header */
    uint64_t offset; /* byte offset into the region */
    uint32_t count;  /* ZERO, REQ: pages from offset on */
    uint32_t seq;    /* REQ: request id; REPLY: the id answered; SYNC: number */
};

/* What a receiver knows about one region, for frame_check_page(). */
struct frame_region_limits {
    uint64_t size;      /* bytes */
    uint64_t page_size; /* power of two */
};

const char *frame_type_name(unsigned type);

/* Is @hdr a well-formed header on its own (no layout needed)? */
bool frame_validate(const struct frame_hdr *hdr, GError **err);

/* Write @hdr to the wire format.  Does not validate. */
void frame_encode(const struct frame_hdr *hdr, uint8_t buf[FRAME_HDR_LEN]);

/* Parse and validate a header from the wire. */
bool frame_decode(const uint8_t buf[FRAME_HDR_LEN], struct frame_hdr *hdr,
                  GError **err);

/*
 * For PAGE, PAGE_ZERO and PAGE_REQ frames: does the frame name whole pages
 * inside region hdr->region of the @n regions in @limits?  Pages up to
 * FRAME_MAX_PAYLOAD go whole (one or more per PAGE frame); bigger pages go
 * as FRAME_PAGE_CHUNK-aligned chunks within one page, FRAME_F_MORE on all
 * but the page's last chunk.  Other frame types pass.
 */
bool frame_check_page(const struct frame_hdr *hdr,
                      const struct frame_region_limits *limits, size_t n,
                      GError **err);

#endif /* POSTCOPYD_FRAME_H */
