/*
 * page_state.h - the destination's page state table: one byte per page per
 * region, saying where the page's contents are.
 *
 * Contract: every transition is one compare-and-swap on the page's byte, so
 * the fault thread, the installer and the bulk receivers share the table
 * with no lock and no allocation.  A page that reached INSTALLED never
 * leaves it, and no call hands out a claim to write or install it again:
 * data for it is refused with PAGE_DROP.  Whoever writes or installs a page
 * holds it first (WRITING or INSTALLING), so two writers never meet.  A
 * page the VMM removed (REMOVED) is no longer migrated: nothing writes or
 * installs it but the fault thread, which gives it a zero page.  Per
 * region counters make "how many pages are in state S" O(regions).
 *
 * The table lives in a file under the state directory, mapped MAP_SHARED,
 * so that a restarted daemon resumes from it (page_state_resume()); a table
 * without a path lives in anonymous memory and dies with the daemon.
 */
#ifndef POSTCOPYD_PAGE_STATE_H
#define POSTCOPYD_PAGE_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "region.h"

enum page_state {
    PAGE_ABSENT,     /* no copy here */
    PAGE_CURRENT,    /* a current copy is in the page cache or staging */
    PAGE_STALE,      /* an old copy is here; the source re-dirtied the page */
    PAGE_REQUESTED,  /* a request for it is in flight to the source */
    PAGE_WRITING,    /* held by a receiver copying data in */
    PAGE_INSTALLING, /* held by an installer mapping it into the guest */
    PAGE_INSTALLED,  /* mapped in the running guest: final */
    PAGE_REMOVED,    /* the VMM dropped it (madvise, munmap): reads as zero */
    PAGE_NSTATES,
};

/* Sets of states for page_state_next() and page_state_begin_install(). */
#define PAGE_MASK(s)  (1u << (s))
#define PAGE_MASK_ALL ((1u << PAGE_NSTATES) - 1)
/* Pages still to migrate: neither installed nor removed by the VMM. */
#define PAGE_MASK_UNINSTALLED                                                  \
    (PAGE_MASK_ALL & ~(PAGE_MASK(PAGE_INSTALLED) | PAGE_MASK(PAGE_REMOVED)))
/* Of the states asked for, only pages a vCPU may be blocked on. */
#define PAGE_MASK_WANTED (1u << 16)

enum page_result {
    PAGE_OK,         /* done */
    PAGE_DO_INSTALL, /* done; the caller holds it INSTALLING: a vCPU waits */
    PAGE_DO_REQUEST, /* done; now REQUESTED by the caller: send the request */
    PAGE_WENT_STALE, /* finish_write: re-dirtied meanwhile, the page is STALE */
    PAGE_WAIT,       /* fault: someone else is already resolving the page */
    PAGE_WAKE,       /* fault: already INSTALLED, only wake the thread */
    PAGE_DO_ZERO,    /* fault: REMOVED, the fault thread maps a zero page */
    PAGE_BUSY,       /* refused: another thread is writing the page */
    PAGE_DROP,       /* refused: INSTALLED or being installed, drop the data */
    PAGE_SKIP,       /* refused: not in one of the states asked for */
    PAGE_ILLEGAL,    /* refused: no such transition (caller or protocol bug) */
};

/* What the table is laid out for; a resumed file must match it exactly. */
#define PAGE_STATE_ID_MAX 64

struct page_state_layout {
    char migration_id[PAGE_STATE_ID_MAX]; /* NUL-terminated */
    uint32_t nregions;
    struct {
        uint64_t npages;
        uint64_t page_size;
    } regions[REGION_MAX];
};

/* What page_state_resume() had to undo because the old daemon died. */
struct page_state_reload {
    uint64_t requests_dropped;   /* REQUESTED, put back, marked wanted */
    uint64_t writes_torn;        /* WRITING, contents untrusted */
    uint64_t installs_uncertain; /* INSTALLING: see page_state_resume() */
    uint64_t copies_distrusted;  /* CURRENT of an unconfirmed table: STALE */
};

struct page_state_table;

const char *page_state_name(enum page_state s);
const char *page_result_name(enum page_result r);

/* Fill @l from a region table; false if @migration_id is too long. */
bool page_state_layout_init(struct page_state_layout *l,
                            const char *migration_id,
                            const struct region_table *regions, GError **err);

/*
 * A new table, every page ABSENT, in a new file at @path (refused if one
 * exists: resume it or remove it) or in anonymous memory if @path is NULL.
 * The file is locked against a second daemon for the table's lifetime.
 */
struct page_state_table *page_state_create(const char *path,
                                           const struct page_state_layout *l,
                                           GError **err);
/*
 * Reopen the table a dead daemon left at @path; refused unless magic,
 * version, size, migration id and layout all match @l.  Requests died with
 * the daemon: REQUESTED pages go back to ABSENT or STALE with the wanted
 * hint (a vCPU may still wait for them; its fault message was consumed).
 * WRITING pages go back likewise, a torn CURRENT copy becoming ABSENT.
 * INSTALLING pages stay held: only the caller can see whether the mapping
 * happened, and must end each with finish_install or abort_install before
 * touching the page otherwise.  A table left unconfirmed has its CURRENT
 * pages made STALE (page_state_distrust_copies).  Call before any other
 * thread uses it.
 */
struct page_state_table *page_state_resume(const char *path,
                                           const struct page_state_layout *l,
                                           struct page_state_reload *reload,
                                           GError **err);
/* Unmap and unlock; the file stays for a later resume. */
void page_state_close(struct page_state_table *t);

uint32_t page_state_nregions(const struct page_state_table *t);
uint64_t page_state_npages(const struct page_state_table *t, uint32_t region);

enum page_state page_state_get(const struct page_state_table *t,
                               uint32_t region, uint64_t page);
/* The current copy is all zeroes (install with ZEROPAGE, nothing staged). */
bool page_state_is_zero(const struct page_state_table *t, uint32_t region,
                        uint64_t page);
/* A vCPU may be blocked on this page. */
bool page_state_is_wanted(const struct page_state_table *t, uint32_t region,
                          uint64_t page);

/*
 * ABSENT or STALE -> REQUESTED.  True for exactly one of any number of
 * racing callers: the one that must send the request.
 */
bool page_state_try_request(struct page_state_table *t, uint32_t region,
                            uint64_t page);
/*
 * The fault thread's one call for a faulting page: PAGE_DO_REQUEST (now
 * REQUESTED: send it; also a CURRENT page while copies are unconfirmed),
 * PAGE_DO_INSTALL (was CURRENT, now held INSTALLING),
 * PAGE_WAIT (requested, or held by another thread, which will install it:
 * a writer is told through the wanted hint), PAGE_WAKE (INSTALLED) or
 * PAGE_DO_ZERO (REMOVED: map a zero page, then page_state_zeroed()).
 */
enum page_result page_state_fault(struct page_state_table *t, uint32_t region,
                                  uint64_t page);

/*
 * Hold a page to copy received data in: PAGE_OK (now WRITING), PAGE_BUSY
 * (another writer), PAGE_DROP (installed or being installed).
 */
enum page_result page_state_begin_write(struct page_state_table *t,
                                        uint32_t region, uint64_t page);
/*
 * The data is in place: PAGE_OK (CURRENT), PAGE_DO_INSTALL (a vCPU waits;
 * the caller still holds it, now INSTALLING), PAGE_WENT_STALE (the source
 * re-dirtied it meanwhile), PAGE_DO_REQUEST (re-dirtied and a vCPU waits:
 * now REQUESTED, send the request) or PAGE_DROP (the VMM removed it
 * meanwhile: now REMOVED, the copy is worthless).  @zero: all zeroes.
 */
enum page_result page_state_finish_write(struct page_state_table *t,
                                         uint32_t region, uint64_t page,
                                         bool zero);
/*
 * The copy failed half way: back to ABSENT or STALE, PAGE_OK, or, if a
 * vCPU waits, to REQUESTED with PAGE_DO_REQUEST (REMOVED meanwhile: as
 * finish_write).
 */
enum page_result page_state_abort_write(struct page_state_table *t,
                                        uint32_t region, uint64_t page);
/*
 * A current copy is in place without a write (a zero page over a hole):
 * like begin_write + finish_write with nothing in between.
 */
enum page_result page_state_set_current(struct page_state_table *t,
                                        uint32_t region, uint64_t page,
                                        bool zero);
/*
 * The source re-dirtied the page: CURRENT -> STALE, PAGE_OK; a page being
 * written will end STALE.  PAGE_ILLEGAL for an installed or installing
 * page: in postcopy the source must not run.
 */
enum page_result page_state_mark_stale(struct page_state_table *t,
                                       uint32_t region, uint64_t page);
/*
 * The same for pages [first, first + n) of @region: one pass, the state
 * counts adjusted once (the switchover runs it inside the downtime).
 */
void page_state_mark_stale_run(struct page_state_table *t, uint32_t region,
                               uint64_t first, uint64_t n);

/*
 * The dirty set that makes copies here stale may still be on its way
 * (it follows the resume: docs/architecture.md "Phases").  Until
 * page_state_confirm_copies(), a fault on a CURRENT page requests it
 * (PAGE_DO_REQUEST, REQUESTED with STALE to go back to) instead of
 * installing the copy, and begin_install / claim_run from CURRENT alone
 * hold nothing (PAGE_SKIP): no one installs a copy.  Kept in the
 * file: page_state_resume() of an unconfirmed table distrusts its copies.
 */
void page_state_copies_unconfirmed(struct page_state_table *t);
bool page_state_copies_confirmed(const struct page_state_table *t);
/* The dirty set is marked: CURRENT copies are current again. */
void page_state_confirm_copies(struct page_state_table *t);
/*
 * The dirty set will not come (the link failed, the daemon restarted):
 * every CURRENT page becomes STALE and is fetched again, then confirmed.
 * Returns how many pages were CURRENT; 0 on a confirmed table.
 */
uint64_t page_state_distrust_copies(struct page_state_table *t);

/*
 * Hold a page to install it, from one of the states in @from (CURRENT alone
 * to install what is here; more with the data in hand): PAGE_OK (now
 * INSTALLING), PAGE_SKIP, PAGE_BUSY or PAGE_DROP.
 */
enum page_result page_state_begin_install(struct page_state_table *t,
                                          uint32_t region, uint64_t page,
                                          unsigned from);
/*
 * INSTALLING -> INSTALLED, for good: PAGE_OK; or, if the VMM removed the
 * page while it was held, REMOVED: PAGE_DROP (what was installed, if
 * anything, went before the kernel zapped the range: see is_gone).
 */
enum page_result page_state_finish_install(struct page_state_table *t,
                                           uint32_t region, uint64_t page);
/*
 * The install failed: a held CURRENT copy goes back to CURRENT (PAGE_OK),
 * still wanted if a vCPU waited for it; otherwise as abort_write.
 */
enum page_result page_state_abort_install(struct page_state_table *t,
                                          uint32_t region, uint64_t page);

/*
 * The VMM removed the page (UFFD_EVENT_REMOVE / UNMAP): PAGE_OK (it was
 * neither installed nor held: now REMOVED, its copy may go), PAGE_BUSY
 * (held: marked, so that its holder's finish or abort ends it REMOVED;
 * see is_gone) or PAGE_SKIP (INSTALLED or REMOVED: unchanged).
 */
enum page_result page_state_remove(struct page_state_table *t, uint32_t region,
                                   uint64_t page);
/* A held page was removed since it was taken: do not install it. */
bool page_state_is_gone(const struct page_state_table *t, uint32_t region,
                        uint64_t page);
/* REMOVED -> INSTALLED: the fault thread mapped a zero page there. */
enum page_result page_state_zeroed(struct page_state_table *t, uint32_t region,
                                   uint64_t page);

struct page_run {
    uint64_t first;
    uint64_t npages;
};

/*
 * Hold for installing, page by page, the next run of pages in [*pos, end)
 * that begin_install(@from) accepts; pages it refuses are skipped.  The run
 * ends at the first refused page.  Advances *pos past the run; false when
 * nothing in the range was left to hold.
 */
bool page_state_claim_run(struct page_state_table *t, uint32_t region,
                          uint64_t *pos, uint64_t end, unsigned from,
                          struct page_run *run);
/*
 * finish_install every page of a held run; how many ended INSTALLED (the
 * others were removed meanwhile and are REMOVED).
 */
uint64_t page_state_finish_run(struct page_state_table *t, uint32_t region,
                               const struct page_run *run);

/*
 * The first page at or after @from whose state is in @mask (and that is
 * wanted, with PAGE_MASK_WANTED), or page_state_npages() if none.
 * A snapshot: the state may change under the caller.
 */
uint64_t page_state_next(const struct page_state_table *t, uint32_t region,
                         uint64_t from, unsigned mask);

/*
 * After resume, for a region whose copies lived in the dead daemon's
 * memory (anonymous staging): CURRENT and STALE without the zero hint
 * become ABSENT.  Returns how many pages it forgot.
 */
uint64_t page_state_forget_copies(struct page_state_table *t, uint32_t region);

/* Pages in @s, in one region or in all; racing updates may lag briefly. */
uint64_t page_state_count(const struct page_state_table *t, uint32_t region,
                          enum page_state s);
uint64_t page_state_total(const struct page_state_table *t, enum page_state s);
/* Every page is INSTALLED or REMOVED: nothing is left to migrate. */
bool page_state_all_installed(const struct page_state_table *t);

#endif /* POSTCOPYD_PAGE_STATE_H */
