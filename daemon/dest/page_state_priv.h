/*
 * page_state_priv.h - what the page state table's three files share: the
 * encoding of a page's byte, the file format, the table itself, and the
 * file helpers both create and resume use.
 *
 * Contract: private to page_state*.c; everyone else goes through
 * page_state.h.  page_state.c owns the transitions and queries,
 * page_state_file.c the layout, the file and its creation,
 * page_state_resume.c the reload of a table a dead daemon left behind.
 */
#ifndef POSTCOPYD_PAGE_STATE_PRIV_H
#define POSTCOPYD_PAGE_STATE_PRIV_H

#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "page_state.h"

/*
 * A page's byte.  The prior state (what a held or requested page goes back
 * to) rides along so that an abort, or a daemon restart, can undo a claim
 * without anyone remembering it elsewhere.  Held and requested states are
 * the only ones with a prior; REDIRTIED only marks a page being written.
 * INSTALLED is exactly PAGE_INSTALLED with no other bit, which lets
 * page_state_next() skip eight installed pages with one load.
 */
#define ST_BITS     0x07u
#define PRIOR_SHIFT 3
#define PRIOR_BITS  (0x03u << PRIOR_SHIFT)
#define F_ZERO      0x20u /* the current copy is all zeroes */
#define F_WANTED    0x40u /* a vCPU may be blocked on the page */
#define F_REDIRTIED 0x80u /* re-dirtied while being written */
/*
 * The VMM removed a held page (page_state_remove()): the holder ends it
 * REMOVED.  Bits free in the held state: WRITING never carries F_ZERO,
 * INSTALLING never F_REDIRTIED.
 */
#define F_GONE_WRITING    0x20u
#define F_GONE_INSTALLING 0x80u

#define FILE_MAGIC   "PCDPGST1"
#define FILE_VERSION 1u
#define DATA_OFFSET  4096u

/* In host byte order: the file never leaves the host. */
struct file_header {
    char magic[8];
    uint32_t version;
    uint32_t nregions;
    uint64_t data_offset;
    uint64_t file_size;
    char migration_id[PAGE_STATE_ID_MAX];
    struct {
        uint64_t npages;
        uint64_t page_size;
    } regions[REGION_MAX];
    /*
     * HDR_UNCONFIRMED: the VM runs but the dirty set that follows the
     * resume has not been applied, so a CURRENT copy may be stale.  Last
     * in the header: files from before it read 0 there.
     */
    uint32_t flags;
};

#define HDR_UNCONFIRMED 0x1u

G_STATIC_ASSERT(sizeof(struct file_header) <= DATA_OFFSET);
G_STATIC_ASSERT(PAGE_REQUESTED <= 3); /* priors fit in two bits */

struct ps_region {
    uint8_t *map;
    uint64_t npages;
    uint64_t count[PAGE_NSTATES]; /* updated atomically */
};

struct page_state_table {
    int fd;        /* locked file, or -1 for anonymous memory */
    uint8_t *base; /* the header, then the bytes at DATA_OFFSET */
    size_t len;
    uint32_t nregions;
    struct ps_region regions[REGION_MAX];
};

static inline uint32_t *hdr_flags(const struct page_state_table *t)
{
    return &((struct file_header *)(void *)t->base)->flags;
}

static inline enum page_state st(uint8_t b)
{
    return b & ST_BITS;
}

static inline enum page_state prior(uint8_t b)
{
    return (b & PRIOR_BITS) >> PRIOR_SHIFT;
}

static inline uint8_t make(enum page_state s, enum page_state from,
                           uint8_t flags)
{
    return s | from << PRIOR_SHIFT | flags;
}

static inline bool has_prior(enum page_state s)
{
    return s == PAGE_REQUESTED || s == PAGE_WRITING || s == PAGE_INSTALLING;
}

/* A request in flight or given up on means a fault is waiting for it. */
static inline bool wanted(uint8_t b)
{
    return (b & F_WANTED) || st(b) == PAGE_REQUESTED ||
           (has_prior(st(b)) && prior(b) == PAGE_REQUESTED);
}

static inline uint8_t gone_flag(enum page_state s)
{
    return s == PAGE_WRITING      ? F_GONE_WRITING
           : s == PAGE_INSTALLING ? F_GONE_INSTALLING
                                  : 0;
}

static inline bool gone(uint8_t b)
{
    return gone_flag(st(b)) && (b & gone_flag(st(b)));
}

/* Where a page held or requested from @from goes back to. */
static inline enum page_state base_of(enum page_state from)
{
    return from == PAGE_STALE ? PAGE_STALE : PAGE_ABSENT;
}

/* Bytes of page state for @l, or 0 (and @err) if the layout is unusable. */
uint64_t ps_layout_bytes(const struct page_state_layout *l, GError **err);
/* A table over the mapping @base of @len bytes; counters not yet set. */
struct page_state_table *ps_table_new(int fd, uint8_t *base, size_t len,
                                      const struct page_state_layout *l);
/* Recompute every region's per-state counters from the bytes. */
void ps_recount(struct page_state_table *t);
/* Take the lock that keeps a second daemon off the file. */
bool ps_lock_file(int fd, const char *path, GError **err);
/* Map @len bytes of @fd shared, or anonymous memory if @fd < 0. */
uint8_t *ps_map_file(int fd, size_t len, const char *path, GError **err);

#endif
