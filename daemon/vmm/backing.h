/*
 * backing.h - what differs between guest RAM backings, in one ops table
 * (the selftests' idea): how to allocate it, which uffd registration a
 * destination needs, where a page's copy waits until it is installed (the
 * copy area), how a page is installed, how the RAM is discarded, and how
 * the source reads it.  Engine code calls these and never branches on the
 * backing kind.
 *
 * Contract: backing_alloc() creates guest RAM as a VMM would (anonymous
 * private, memfd shmem, memfd hugetlb) and returns its mapping and fd;
 * hugetlb allocation fails with a clear message when no huge pages are
 * reserved.  backing_install() and backing_install_copy() put one run of
 * pages into the VMM's mapping without ever overwriting a present page;
 * the caller guarantees (page state table) that no page of the run is
 * installed, so writing the copy area cannot change what the guest sees.
 */
#ifndef POSTCOPYD_BACKING_H
#define POSTCOPYD_BACKING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "region.h"
#include "uffd.h"

/*
 * Where a destination keeps a page's copy until it is installed: the page
 * cache itself (file-backed), or a staging file of the daemon's
 * (anonymous: a memfd, written and read with pwrite/pread, never mapped),
 * released page by page as pages are installed.
 */
struct copy_area {
    uint8_t *base; /* the daemon's mapping of the page cache (hugetlbfs) */
    int fd;        /* the staging memfd; -1 when there is none */
    bool owned;    /* a staging area: closed by backing_copy_close() */
    /* may hold data: zeroing must clear it, installing must release it */
    atomic_bool used;
};

struct backing_ops {
    enum backing_kind kind;
    const char *name;
    /* UFFDIO_REGISTER_MODE_* a destination registers with. */
    uint64_t dest_register_mode;
    /* UFFD_FEATURE_* the destination needs for this backing. */
    uint64_t dest_features;
    /* Install with UFFDIO_CONTINUE after writing the page cache. */
    bool minor;
    /* UFFDIO_ZEROPAGE is offered (hugetlb has none). */
    bool has_zeropage;
    /*
     * Page data may be received straight into the copy area and installed
     * from it: where the copy area is the page cache mapped in huge pages
     * (installing is a CONTINUE, with no copy).  A shmem page would cost a
     * page-table entry of the daemon's (backing.c: it takes a buffer and
     * pwrite), a staging area would be touched only to be copied out.
     */
    bool receive_in_place;
    /* Source: holes (never written) show as such and are not read. */
    bool has_holes;
    /*
     * Source: the file can be sent with sendfile (shmem can, holes as the
     * zero page and nothing allocated; hugetlbfs has no splice).
     */
    bool sends_file;
    /*
     * Source: read [off, off + len) of @r into @buf through the file
     * (pread), never through a mapping; NULL for anonymous memory, which
     * only the VMM maps (process_vm_readv).
     */
    bool (*read)(const struct region *r, uint64_t off, uint64_t len,
                 uint8_t *buf, GError **err);

    int (*install)(struct uffd *u, const struct region *r, uint64_t dst,
                   const void *data, uint64_t len, unsigned flags,
                   uint64_t *done);
    bool (*copy_open)(const struct region *r, struct copy_area *ca,
                      GError **err);
    void (*copy_reopen)(const struct region *r, struct copy_area *ca);
    /* Write @len bytes of @data (NULL: zeroes) into the copy area. */
    int (*copy_write)(const struct region *r, struct copy_area *ca,
                      uint64_t off, const void *data, uint64_t len);
    void (*copy_release)(const struct region *r, struct copy_area *ca,
                         uint64_t off, uint64_t len);
    int (*install_copy)(struct uffd *u, const struct region *r,
                        const struct copy_area *ca, uint64_t off, uint64_t len,
                        bool zero, uint64_t *done);
    /* Forget the copy of a page the VMM removed (page cache: punch it). */
    void (*copy_drop)(const struct region *r, struct copy_area *ca,
                      uint64_t off, uint64_t len);
    bool (*discard)(const struct region *r, GError **err);
};

const struct backing_ops *backing_ops_get(enum backing_kind kind);

/*
 * Allocate @size bytes of guest RAM.  @page_size 0 picks the default (4 KiB,
 * or 2 MiB for hugetlbfs).  *@fd is -1 for anonymous memory.
 */
bool backing_alloc(enum backing_kind kind, uint64_t size, uint64_t page_size,
                   const char *name, void **addr, int *fd, GError **err);

/*
 * backing_install() flag: a MINOR backing writes the page cache through
 * the daemon's mapping (r->alias) instead of write().  A write() of shmem
 * holds the file's lock for its whole length, and the bulk receiver's
 * 1 MiB writes hold it for hundreds of microseconds; a fault's reply must
 * not wait for that.  Not for bulk data: each page's first touch through
 * the mapping costs a fault of the daemon's.  Like hugetlbfs's writes, a
 * page past the end of a RAM file the VMM shrank during the migration
 * fails the install with -EFAULT (mem_guard.h), not the daemon.
 */
#define BACKING_INSTALL_MAPPED (1u << 16)

/*
 * Install @len bytes at VMM address @dst of region @r from @data (the
 * daemon's buffer), or zero pages when @data is NULL.  MINOR backings write
 * the page cache (write(), or r->alias for hugetlbfs and with
 * BACKING_INSTALL_MAPPED) and CONTINUE; others COPY / ZEROPAGE.  @flags:
 * UFFD_OP_DONTWAKE, BACKING_INSTALL_MAPPED.  Returns 0 or a negative
 * errno (uffd_* semantics).
 */
int backing_install(struct uffd *u, const struct region *r, uint64_t dst,
                    const void *data, uint64_t len, unsigned flags,
                    uint64_t *done);

/* The area holds copies (not: anonymous after a restart). */
static inline bool backing_copy_holds(const struct copy_area *ca)
{
    return ca->base || ca->fd >= 0;
}

/* Open @r's copy area (a destination, before its first page arrives). */
bool backing_copy_open(const struct region *r, struct copy_area *ca,
                       GError **err);
/* After a restart: the page cache survived the old daemon, staging not. */
void backing_copy_reopen(const struct region *r, struct copy_area *ca);
void backing_copy_close(const struct region *r, struct copy_area *ca);
/*
 * Write the copies of pages [first, first + n) from @data (NULL: zeroes).
 * 0 or a negative errno (the page cache could not take them).
 */
int backing_copy_write(const struct region *r, struct copy_area *ca,
                       uint64_t first, uint64_t n, const void *data);
/* Pages [first, first + n) are installed: their copy is no longer needed. */
void backing_copy_release(const struct region *r, struct copy_area *ca,
                          uint64_t first, uint64_t n);
/*
 * Install pages [first, first + n) of @r from their copy in @ca, with no
 * network: CONTINUE over the page cache, or COPY from staging (ZEROPAGE if
 * @zero or the area keeps no copies).  0 or a negative errno; *@done (may
 * be NULL) the bytes installed, as uffd_copy().
 */
int backing_install_copy(struct uffd *u, const struct region *r,
                         const struct copy_area *ca, uint64_t first, uint64_t n,
                         bool zero, uint64_t *done);
/*
 * Pages [first, first + n) were removed by the VMM and are not installed:
 * their copy must never show (the page cache is punched, staging freed).
 */
void backing_copy_drop(const struct region *r, struct copy_area *ca,
                       uint64_t first, uint64_t n);
/*
 * A zero page at VMM address @dst (one page of @r) where none is, never
 * over a present one (EEXIST: woken): what a MISSING fault gets where the
 * migration has nothing to give.  ZEROPAGE, or COPY of zeroes (hugetlb).
 */
int backing_fault_zero(struct uffd *u, const struct region *r, uint64_t dst);
/*
 * The daemon's view of [off, off + len) of @r, NULL if it has none.  For
 * mincore() only: touching guest RAM through a mapping of the daemon's
 * costs a page-table entry per page (see backing.c).
 */
uint8_t *backing_view(const struct region *r, uint64_t off);

/*
 * Source: which pages of [off, off + n pages) of @r are holes (never
 * written, or punched: zero, and not to be read), in @hole[0..n); true if
 * all are.  n <= BACKING_HOLES_MAX.  Only backings with has_holes find
 * any; the others report none.
 */
#define BACKING_HOLES_MAX 256
bool backing_find_holes(const struct region *r, uint64_t off, uint64_t n,
                        bool *hole);

/*
 * Source: read [off, off + len) of file-backed @r into @buf.  False with
 * @err when the backing has no file to read (anonymous) or the read fails.
 */
bool backing_read(const struct region *r, uint64_t off, uint64_t len,
                  uint8_t *buf, GError **err);

/*
 * Drop the contents of file-backed region @r: its page cache, and with it
 * every mapping's PTEs (the VMM's too), so the next access faults.  A
 * no-op for anonymous memory.
 */
bool backing_discard(const struct region *r, GError **err);

/* The huge page size of the system's default hugetlb pool, or 0. */
uint64_t backing_default_hugepage_size(void);

#endif /* POSTCOPYD_BACKING_H */
