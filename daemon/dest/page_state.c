/*
 * page_state.c - the page state table's transitions and queries: each
 * transition one compare-and-swap decided by a pure function of the old
 * byte.  See page_state.h for the contract; page_state_file.c and
 * page_state_resume.c hold the file and its reload.
 */
#include "page_state_priv.h"

#include <string.h>

typedef enum page_result (*decide_fn)(uint8_t old, uint8_t *new, unsigned arg);

static const char *const state_names[PAGE_NSTATES] = {
    [PAGE_ABSENT] = "absent",       [PAGE_CURRENT] = "current",
    [PAGE_STALE] = "stale",         [PAGE_REQUESTED] = "requested",
    [PAGE_WRITING] = "writing",     [PAGE_INSTALLING] = "installing",
    [PAGE_INSTALLED] = "installed", [PAGE_REMOVED] = "removed",
};

static const char *const result_names[] = {
    [PAGE_OK] = "ok",
    [PAGE_DO_INSTALL] = "install",
    [PAGE_DO_REQUEST] = "request",
    [PAGE_WENT_STALE] = "went-stale",
    [PAGE_WAIT] = "wait",
    [PAGE_WAKE] = "wake",
    [PAGE_DO_ZERO] = "zero",
    [PAGE_BUSY] = "busy",
    [PAGE_DROP] = "drop",
    [PAGE_SKIP] = "skip",
    [PAGE_ILLEGAL] = "illegal",
};

const char *page_state_name(enum page_state s)
{
    return (unsigned)s < PAGE_NSTATES ? state_names[s] : "invalid";
}

const char *page_result_name(enum page_result r)
{
    return (unsigned)r <= PAGE_ILLEGAL ? result_names[r] : "invalid";
}

static inline struct ps_region *region_at(const struct page_state_table *t,
                                          uint32_t region, uint64_t page)
{
    g_assert(region < t->nregions);
    g_assert(page < t->regions[region].npages);
    return (struct ps_region *)&t->regions[region];
}

static inline uint8_t load(const uint8_t *b)
{
    return __atomic_load_n(b, __ATOMIC_ACQUIRE);
}

static inline void account(struct ps_region *pr, uint8_t old, uint8_t new)
{
    if (st(old) == st(new)) {
        return;
    }
    __atomic_fetch_add(&pr->count[st(new)], 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&pr->count[st(old)], 1, __ATOMIC_RELAXED);
}

/*
 * Apply @decide to the page's byte until the compare-and-swap sticks.  A
 * decision that leaves the byte alone (a refusal) writes nothing.  Acquire
 * and release order the page's contents with its state: data written
 * before finish_write is visible to whoever sees CURRENT.
 */
static inline enum page_result update(struct page_state_table *t,
                                      uint32_t region, uint64_t page,
                                      decide_fn decide, unsigned arg)
{
    struct ps_region *pr = region_at(t, region, page);
    uint8_t *b = &pr->map[page];
    uint8_t old = load(b);
    uint8_t new;

    for (;;) {
        enum page_result res = decide(old, &new, arg);

        if (new == old) {
            return res;
        }
        if (__atomic_compare_exchange_n(b, &old, new, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            account(pr, old, new);
            return res;
        }
    }
}

/*
 * Where a page goes when the data held for it is unusable: back to @base,
 * or straight to REQUESTED when a vCPU waits, so that someone asks again.
 */
static enum page_result settle(uint8_t old, enum page_state base, uint8_t *new)
{
    if (wanted(old)) {
        *new = make(PAGE_REQUESTED, base, 0);
        return PAGE_DO_REQUEST;
    }
    *new = make(base, 0, 0);
    return PAGE_OK;
}

static enum page_result decide_request(uint8_t old, uint8_t *new, unsigned arg)
{
    *new = old;
    if (st(old) != PAGE_ABSENT && st(old) != PAGE_STALE) {
        return PAGE_SKIP;
    }
    *new = make(PAGE_REQUESTED, st(old), 0);
    return PAGE_DO_REQUEST;
}

/* @arg: the copies here are unconfirmed (page_state_copies_unconfirmed). */
static enum page_result decide_fault(uint8_t old, uint8_t *new, unsigned arg)
{
    *new = old;
    switch (st(old)) {
    case PAGE_ABSENT:
    case PAGE_STALE:
        return decide_request(old, new, arg);
    case PAGE_CURRENT:
        if (arg) {
            /* Fetched, not trusted: STALE is what an abort goes back to. */
            *new = make(PAGE_REQUESTED, PAGE_STALE, 0);
            return PAGE_DO_REQUEST;
        }
        *new = make(PAGE_INSTALLING, PAGE_CURRENT, (old & F_ZERO) | F_WANTED);
        return PAGE_DO_INSTALL;
    case PAGE_WRITING:
        /* The writer sees this in finish_write and installs. */
        *new = old | F_WANTED;
        return PAGE_WAIT;
    case PAGE_INSTALLED:
        return PAGE_WAKE;
    case PAGE_REMOVED:
        return PAGE_DO_ZERO;
    default:
        return PAGE_WAIT;
    }
}

static enum page_result refuse_held(uint8_t old)
{
    switch (st(old)) {
    case PAGE_WRITING:
        return PAGE_BUSY;
    case PAGE_INSTALLING:
    case PAGE_INSTALLED:
    case PAGE_REMOVED:
        return PAGE_DROP;
    default:
        return PAGE_OK;
    }
}

/* A held page the VMM removed meanwhile: REMOVED, whatever was held. */
static bool end_gone(uint8_t old, uint8_t *new)
{
    if (!gone(old)) {
        return false;
    }
    *new = make(PAGE_REMOVED, 0, 0);
    return true;
}

static enum page_result decide_begin_write(uint8_t old, uint8_t *new,
                                           unsigned arg)
{
    enum page_result res = refuse_held(old);

    *new = old;
    if (res != PAGE_OK) {
        return res;
    }
    *new = make(PAGE_WRITING, st(old), old & F_WANTED);
    return PAGE_OK;
}

/* A current copy is now in place: install at once if a vCPU waits. */
static enum page_result become_current(uint8_t old, uint8_t *new, bool zero)
{
    uint8_t z = zero ? F_ZERO : 0;

    if (wanted(old)) {
        *new = make(PAGE_INSTALLING, PAGE_CURRENT, z | F_WANTED);
        return PAGE_DO_INSTALL;
    }
    *new = make(PAGE_CURRENT, 0, z);
    return PAGE_OK;
}

static enum page_result decide_finish_write(uint8_t old, uint8_t *new,
                                            unsigned zero)
{
    enum page_result res;

    *new = old;
    if (st(old) != PAGE_WRITING) {
        return PAGE_ILLEGAL;
    }
    if (end_gone(old, new)) {
        return PAGE_DROP;
    }
    if (old & F_REDIRTIED) {
        res = settle(old, PAGE_STALE, new);
        return res == PAGE_OK ? PAGE_WENT_STALE : res;
    }
    return become_current(old, new, zero);
}

static enum page_result decide_abort_write(uint8_t old, uint8_t *new,
                                           unsigned arg)
{
    *new = old;
    if (st(old) != PAGE_WRITING) {
        return PAGE_ILLEGAL;
    }
    if (end_gone(old, new)) {
        return PAGE_DROP;
    }
    /* A CURRENT copy half overwritten is no copy at all. */
    return settle(old, base_of(prior(old)), new);
}

static enum page_result decide_set_current(uint8_t old, uint8_t *new,
                                           unsigned zero)
{
    enum page_result res = refuse_held(old);

    *new = old;
    if (res != PAGE_OK) {
        return res;
    }
    return become_current(old, new, zero);
}

static enum page_result decide_mark_stale(uint8_t old, uint8_t *new,
                                          unsigned arg)
{
    *new = old;
    switch (st(old)) {
    case PAGE_CURRENT:
        *new = make(PAGE_STALE, 0, old & F_WANTED);
        return PAGE_OK;
    case PAGE_WRITING:
        *new = old | F_REDIRTIED;
        return PAGE_OK;
    case PAGE_INSTALLING:
    case PAGE_INSTALLED:
        return PAGE_ILLEGAL;
    default:
        return PAGE_OK;
    }
}

static enum page_result decide_begin_install(uint8_t old, uint8_t *new,
                                             unsigned from)
{
    enum page_result res = refuse_held(old);

    *new = old;
    if (res != PAGE_OK) {
        return res;
    }
    if (!(from & PAGE_MASK(st(old)))) {
        return PAGE_SKIP;
    }
    *new = make(PAGE_INSTALLING, st(old), old & (F_ZERO | F_WANTED));
    return PAGE_OK;
}

static enum page_result decide_finish_install(uint8_t old, uint8_t *new,
                                              unsigned arg)
{
    *new = old;
    if (st(old) != PAGE_INSTALLING) {
        return PAGE_ILLEGAL;
    }
    if (end_gone(old, new)) {
        return PAGE_DROP;
    }
    *new = make(PAGE_INSTALLED, 0, 0);
    return PAGE_OK;
}

static enum page_result decide_abort_install(uint8_t old, uint8_t *new,
                                             unsigned arg)
{
    *new = old;
    if (st(old) != PAGE_INSTALLING) {
        return PAGE_ILLEGAL;
    }
    if (end_gone(old, new)) {
        return PAGE_DROP;
    }
    /* Installing a CURRENT copy does not write it: it is still good. */
    if (prior(old) == PAGE_CURRENT) {
        *new = make(PAGE_CURRENT, 0, old & (F_ZERO | F_WANTED));
        return PAGE_OK;
    }
    return settle(old, base_of(prior(old)), new);
}

static enum page_result decide_remove(uint8_t old, uint8_t *new, unsigned arg)
{
    *new = old;
    switch (st(old)) {
    case PAGE_INSTALLED:
    case PAGE_REMOVED:
        return PAGE_SKIP;
    case PAGE_WRITING:
    case PAGE_INSTALLING:
        *new = old | gone_flag(st(old));
        return PAGE_BUSY;
    default:
        /* A waiting vCPU is woken by the caller and faults on a zero. */
        *new = make(PAGE_REMOVED, 0, 0);
        return PAGE_OK;
    }
}

static enum page_result decide_zeroed(uint8_t old, uint8_t *new, unsigned arg)
{
    *new = old;
    if (st(old) != PAGE_REMOVED) {
        return PAGE_ILLEGAL;
    }
    *new = make(PAGE_INSTALLED, 0, 0);
    return PAGE_OK;
}

static enum page_result decide_forget(uint8_t old, uint8_t *new, unsigned arg)
{
    *new = old;
    if ((st(old) == PAGE_CURRENT && !(old & F_ZERO)) || st(old) == PAGE_STALE) {
        *new = make(PAGE_ABSENT, 0, old & F_WANTED);
    }
    return PAGE_OK;
}

bool page_state_try_request(struct page_state_table *t, uint32_t region,
                            uint64_t page)
{
    return update(t, region, page, decide_request, 0) == PAGE_DO_REQUEST;
}

enum page_result page_state_fault(struct page_state_table *t, uint32_t region,
                                  uint64_t page)
{
    return update(t, region, page, decide_fault,
                  !page_state_copies_confirmed(t));
}

enum page_result page_state_begin_write(struct page_state_table *t,
                                        uint32_t region, uint64_t page)
{
    return update(t, region, page, decide_begin_write, 0);
}

enum page_result page_state_finish_write(struct page_state_table *t,
                                         uint32_t region, uint64_t page,
                                         bool zero)
{
    return update(t, region, page, decide_finish_write, zero);
}

enum page_result page_state_abort_write(struct page_state_table *t,
                                        uint32_t region, uint64_t page)
{
    return update(t, region, page, decide_abort_write, 0);
}

enum page_result page_state_set_current(struct page_state_table *t,
                                        uint32_t region, uint64_t page,
                                        bool zero)
{
    return update(t, region, page, decide_set_current, zero);
}

enum page_result page_state_mark_stale(struct page_state_table *t,
                                       uint32_t region, uint64_t page)
{
    return update(t, region, page, decide_mark_stale, 0);
}

/* mark_stale on one byte: the new byte, the state counts adjusted. */
static uint8_t stale_byte(uint8_t old, int64_t *delta)
{
    uint8_t new;

    decide_mark_stale(old, &new, 0);
    if (st(new) != st(old)) {
        delta[st(new)]++;
        delta[st(old)]--;
    }
    return new;
}

static void stale_one(uint8_t *b, int64_t *delta)
{
    uint8_t old = load(b), new;
    int64_t d[PAGE_NSTATES] = {0};

    do {
        memset(d, 0, sizeof(d));
        new = stale_byte(old, d);
    } while (new != old &&
             !__atomic_compare_exchange_n(b, &old, new, false, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE));
    for (int i = 0; i < PAGE_NSTATES; i++) {
        delta[i] += d[i];
    }
}

/*
 * Eight pages in one compare-and-swap: the dirty set can hold most of a
 * guest, and this runs inside the downtime.  (Byte and word atomics on
 * the same memory are coherent on the machines we run on: x86-64, arm64.)
 */
static void stale_word(uint64_t *w, int64_t *delta)
{
    uint64_t old = __atomic_load_n(w, __ATOMIC_ACQUIRE), new;
    int64_t d[PAGE_NSTATES];

    do {
        memset(d, 0, sizeof(d));
        new = 0;
        for (int k = 0; k < 8; k++) {
            new |= (uint64_t)stale_byte((uint8_t)(old >> (8 * k)), d)
                   << (8 * k);
        }
    } while (new != old &&
             !__atomic_compare_exchange_n(w, &old, new, false, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE));
    for (int i = 0; i < PAGE_NSTATES; i++) {
        delta[i] += d[i];
    }
}

void page_state_mark_stale_run(struct page_state_table *t, uint32_t region,
                               uint64_t first, uint64_t n)
{
    int64_t delta[PAGE_NSTATES] = {0};
    struct ps_region *pr;
    uint64_t p = first, end = first + n;

    if (!n) {
        return;
    }
    pr = region_at(t, region, end - 1);
    for (; p < end && ((uintptr_t)&pr->map[p] % 8); p++) {
        stale_one(&pr->map[p], delta);
    }
    for (; p + 8 <= end; p += 8) {
        stale_word((uint64_t *)(void *)&pr->map[p], delta);
    }
    for (; p < end; p++) {
        stale_one(&pr->map[p], delta);
    }
    for (int i = 0; i < PAGE_NSTATES; i++) {
        if (delta[i]) {
            __atomic_fetch_add(&pr->count[i], (uint64_t)delta[i],
                               __ATOMIC_RELAXED);
        }
    }
}

void page_state_copies_unconfirmed(struct page_state_table *t)
{
    __atomic_or_fetch(hdr_flags(t), HDR_UNCONFIRMED, __ATOMIC_SEQ_CST);
}

bool page_state_copies_confirmed(const struct page_state_table *t)
{
    return !(__atomic_load_n(hdr_flags(t), __ATOMIC_SEQ_CST) & HDR_UNCONFIRMED);
}

void page_state_confirm_copies(struct page_state_table *t)
{
    __atomic_and_fetch(hdr_flags(t), ~HDR_UNCONFIRMED, __ATOMIC_SEQ_CST);
}

uint64_t page_state_distrust_copies(struct page_state_table *t)
{
    uint64_t n = 0;

    if (page_state_copies_confirmed(t)) {
        return 0;
    }
    for (uint32_t r = 0; r < t->nregions; r++) {
        n += __atomic_load_n(&t->regions[r].count[PAGE_CURRENT],
                             __ATOMIC_RELAXED);
        page_state_mark_stale_run(t, r, 0, t->regions[r].npages);
    }
    page_state_confirm_copies(t);
    return n;
}

enum page_result page_state_begin_install(struct page_state_table *t,
                                          uint32_t region, uint64_t page,
                                          unsigned from)
{
    /* Installing the copy alone: not while it may be stale (whoever
     * asks: the sweep is only started once confirmed, but a READ link's
     * reader installs the CURRENT pages around what it read). */
    if (from == PAGE_MASK(PAGE_CURRENT) && !page_state_copies_confirmed(t)) {
        return PAGE_SKIP;
    }
    return update(t, region, page, decide_begin_install, from);
}

enum page_result page_state_finish_install(struct page_state_table *t,
                                           uint32_t region, uint64_t page)
{
    return update(t, region, page, decide_finish_install, 0);
}

enum page_result page_state_abort_install(struct page_state_table *t,
                                          uint32_t region, uint64_t page)
{
    return update(t, region, page, decide_abort_install, 0);
}

enum page_result page_state_remove(struct page_state_table *t, uint32_t region,
                                   uint64_t page)
{
    return update(t, region, page, decide_remove, 0);
}

bool page_state_is_gone(const struct page_state_table *t, uint32_t region,
                        uint64_t page)
{
    return gone(load(&region_at(t, region, page)->map[page]));
}

enum page_result page_state_zeroed(struct page_state_table *t, uint32_t region,
                                   uint64_t page)
{
    return update(t, region, page, decide_zeroed, 0);
}

bool page_state_claim_run(struct page_state_table *t, uint32_t region,
                          uint64_t *pos, uint64_t end, unsigned from,
                          struct page_run *run)
{
    uint64_t p = *pos;

    end = MIN(end, page_state_npages(t, region));
    while (p < end && page_state_begin_install(t, region, p, from) != PAGE_OK) {
        p++;
    }
    if (p >= end) {
        *pos = p;
        return false;
    }
    run->first = p;
    while (++p < end &&
           page_state_begin_install(t, region, p, from) == PAGE_OK) {
    }
    run->npages = p - run->first;
    *pos = p;
    return true;
}

uint64_t page_state_finish_run(struct page_state_table *t, uint32_t region,
                               const struct page_run *run)
{
    uint64_t installed = 0;

    for (uint64_t p = run->first; p < run->first + run->npages; p++) {
        enum page_result res = page_state_finish_install(t, region, p);

        g_assert(res == PAGE_OK || res == PAGE_DROP);
        installed += res == PAGE_OK;
    }
    return installed;
}

uint64_t page_state_forget_copies(struct page_state_table *t, uint32_t region)
{
    uint64_t before, after;

    before = page_state_count(t, region, PAGE_ABSENT);
    for (uint64_t p = 0; p < page_state_npages(t, region); p++) {
        update(t, region, p, decide_forget, 0);
    }
    after = page_state_count(t, region, PAGE_ABSENT);
    return after - before;
}

uint32_t page_state_nregions(const struct page_state_table *t)
{
    return t->nregions;
}

uint64_t page_state_npages(const struct page_state_table *t, uint32_t region)
{
    g_assert(region < t->nregions);
    return t->regions[region].npages;
}

enum page_state page_state_get(const struct page_state_table *t,
                               uint32_t region, uint64_t page)
{
    return st(load(&region_at(t, region, page)->map[page]));
}

bool page_state_is_zero(const struct page_state_table *t, uint32_t region,
                        uint64_t page)
{
    return load(&region_at(t, region, page)->map[page]) & F_ZERO;
}

bool page_state_is_wanted(const struct page_state_table *t, uint32_t region,
                          uint64_t page)
{
    return wanted(load(&region_at(t, region, page)->map[page]));
}

static bool byte_matches(uint8_t b, unsigned mask)
{
    if (!(mask & PAGE_MASK(st(b)))) {
        return false;
    }
    return !(mask & PAGE_MASK_WANTED) || wanted(b);
}

/* Eight INSTALLED bytes at an aligned address, read in one load. */
static bool eight_installed(const uint8_t *b)
{
    if ((uintptr_t)b & 7) {
        return false;
    }
    return __atomic_load_n((const uint64_t *)b, __ATOMIC_RELAXED) ==
           0x0101010101010101ull * PAGE_INSTALLED;
}

uint64_t page_state_next(const struct page_state_table *t, uint32_t region,
                         uint64_t from, unsigned mask)
{
    const struct ps_region *pr;
    bool skip_installed = !(mask & PAGE_MASK(PAGE_INSTALLED));
    uint64_t p;

    g_assert(region < t->nregions);
    pr = &t->regions[region];
    for (p = from; p < pr->npages; p++) {
        while (skip_installed && p + 8 <= pr->npages &&
               eight_installed(&pr->map[p])) {
            p += 8;
        }
        if (p < pr->npages && byte_matches(load(&pr->map[p]), mask)) {
            return p;
        }
    }
    return pr->npages;
}

uint64_t page_state_count(const struct page_state_table *t, uint32_t region,
                          enum page_state s)
{
    g_assert(region < t->nregions && (unsigned)s < PAGE_NSTATES);
    return __atomic_load_n(&t->regions[region].count[s], __ATOMIC_RELAXED);
}

uint64_t page_state_total(const struct page_state_table *t, enum page_state s)
{
    uint64_t n = 0;

    for (uint32_t r = 0; r < t->nregions; r++) {
        n += page_state_count(t, r, s);
    }
    return n;
}

bool page_state_all_installed(const struct page_state_table *t)
{
    for (uint32_t r = 0; r < t->nregions; r++) {
        if (page_state_count(t, r, PAGE_INSTALLED) +
                page_state_count(t, r, PAGE_REMOVED) !=
            t->regions[r].npages) {
            return false;
        }
    }
    return true;
}
