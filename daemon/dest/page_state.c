/* page_state.c - see page_state.h. */
#include "page_state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gio/gio.h>

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
};

G_STATIC_ASSERT(sizeof(struct file_header) <= DATA_OFFSET);
G_STATIC_ASSERT(PAGE_REQUESTED <= 3); /* priors fit in two bits */

struct ps_region {
    uint8_t *map;
    uint64_t npages;
    uint64_t count[PAGE_NSTATES]; /* updated atomically */
};

struct page_state_table {
    int fd; /* locked file, or -1 for anonymous memory */
    uint8_t *base;
    size_t len;
    uint32_t nregions;
    struct ps_region regions[REGION_MAX];
};

typedef enum page_result (*decide_fn)(uint8_t old, uint8_t *new, unsigned arg);

static const char *const state_names[PAGE_NSTATES] = {
    [PAGE_ABSENT] = "absent",       [PAGE_CURRENT] = "current",
    [PAGE_STALE] = "stale",         [PAGE_REQUESTED] = "requested",
    [PAGE_WRITING] = "writing",     [PAGE_INSTALLING] = "installing",
    [PAGE_INSTALLED] = "installed",
};

static const char *const result_names[] = {
    [PAGE_OK] = "ok",
    [PAGE_DO_INSTALL] = "install",
    [PAGE_DO_REQUEST] = "request",
    [PAGE_WENT_STALE] = "went-stale",
    [PAGE_WAIT] = "wait",
    [PAGE_WAKE] = "wake",
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

static enum page_state base_of(enum page_state from)
{
    return from == PAGE_STALE ? PAGE_STALE : PAGE_ABSENT;
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

static enum page_result decide_fault(uint8_t old, uint8_t *new, unsigned arg)
{
    *new = old;
    switch (st(old)) {
    case PAGE_ABSENT:
    case PAGE_STALE:
        return decide_request(old, new, arg);
    case PAGE_CURRENT:
        *new = make(PAGE_INSTALLING, PAGE_CURRENT, (old & F_ZERO) | F_WANTED);
        return PAGE_DO_INSTALL;
    case PAGE_WRITING:
        /* The writer sees this in finish_write and installs. */
        *new = old | F_WANTED;
        return PAGE_WAIT;
    case PAGE_INSTALLED:
        return PAGE_WAKE;
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
        return PAGE_DROP;
    default:
        return PAGE_OK;
    }
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
    /* Installing a CURRENT copy does not write it: it is still good. */
    if (prior(old) == PAGE_CURRENT) {
        *new = make(PAGE_CURRENT, 0, old & (F_ZERO | F_WANTED));
        return PAGE_OK;
    }
    return settle(old, base_of(prior(old)), new);
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
    return update(t, region, page, decide_fault, 0);
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

enum page_result page_state_begin_install(struct page_state_table *t,
                                          uint32_t region, uint64_t page,
                                          unsigned from)
{
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

void page_state_finish_run(struct page_state_table *t, uint32_t region,
                           const struct page_run *run)
{
    for (uint64_t p = run->first; p < run->first + run->npages; p++) {
        enum page_result res = page_state_finish_install(t, region, p);

        g_assert(res == PAGE_OK);
    }
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
        if (page_state_count(t, r, PAGE_INSTALLED) != t->regions[r].npages) {
            return false;
        }
    }
    return true;
}

/* ---- layout, file and resume ---- */

bool page_state_layout_init(struct page_state_layout *l,
                            const char *migration_id,
                            const struct region_table *regions, GError **err)
{
    memset(l, 0, sizeof(*l));
    if (strlen(migration_id) >= sizeof(l->migration_id)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "migration id '%s' is longer than %d bytes", migration_id,
                    PAGE_STATE_ID_MAX - 1);
        return false;
    }
    strcpy(l->migration_id, migration_id);
    l->nregions = regions->n;
    for (size_t i = 0; i < regions->n; i++) {
        l->regions[i].npages = region_pages(&regions->regions[i]);
        l->regions[i].page_size = regions->regions[i].page_size;
    }
    return true;
}

/* Bytes of page state for @l, or 0 if the layout is unusable. */
static uint64_t layout_bytes(const struct page_state_layout *l, GError **err)
{
    uint64_t total = 0;

    if (l->nregions == 0 || l->nregions > REGION_MAX) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "page state table needs 1 to %d regions, not %" PRIu32,
                    REGION_MAX, l->nregions);
        return 0;
    }
    if (memchr(l->migration_id, 0, sizeof(l->migration_id)) == NULL ||
        l->migration_id[0] == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "page state table needs a migration id");
        return 0;
    }
    for (uint32_t i = 0; i < l->nregions; i++) {
        uint64_t n = l->regions[i].npages, ps = l->regions[i].page_size;

        if (n == 0 || n > (UINT64_C(1) << 40) || ps == 0 || (ps & (ps - 1))) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "region %" PRIu32 ": %" PRIu64 " pages of %" PRIu64
                        " bytes is not a valid layout",
                        i, n, ps);
            return 0;
        }
        total += n;
    }
    return total;
}

static void header_fill(struct file_header *h,
                        const struct page_state_layout *l, uint64_t size)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, FILE_MAGIC, sizeof(h->magic));
    h->version = FILE_VERSION;
    h->nregions = l->nregions;
    h->data_offset = DATA_OFFSET;
    h->file_size = size;
    memcpy(h->migration_id, l->migration_id, sizeof(h->migration_id));
    for (uint32_t i = 0; i < l->nregions; i++) {
        h->regions[i].npages = l->regions[i].npages;
        h->regions[i].page_size = l->regions[i].page_size;
    }
}

static struct page_state_table *table_new(int fd, uint8_t *base, size_t len,
                                          const struct page_state_layout *l)
{
    struct page_state_table *t = g_new0(struct page_state_table, 1);
    uint8_t *map = base + DATA_OFFSET;

    t->fd = fd;
    t->base = base;
    t->len = len;
    t->nregions = l->nregions;
    for (uint32_t i = 0; i < l->nregions; i++) {
        t->regions[i].map = map;
        t->regions[i].npages = l->regions[i].npages;
        map += l->regions[i].npages;
    }
    return t;
}

static void recount(struct page_state_table *t)
{
    for (uint32_t r = 0; r < t->nregions; r++) {
        struct ps_region *pr = &t->regions[r];

        memset(pr->count, 0, sizeof(pr->count));
        for (uint64_t p = 0; p < pr->npages; p++) {
            pr->count[st(pr->map[p])]++;
        }
    }
}

static bool lock_file(int fd, const char *path, GError **err)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        return true;
    }
    if (errno == EWOULDBLOCK) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "page state file %s is in use by another process", path);
        return false;
    }
    g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                "cannot lock page state file %s: %s", path, g_strerror(errno));
    return false;
}

static uint8_t *map_file(int fd, size_t len, const char *path, GError **err)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED, fd, 0);

    if (p == MAP_FAILED) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot map page state %s: %s", path ? path : "(memory)",
                    g_strerror(errno));
        return NULL;
    }
    return p;
}

/*
 * Build the file, header included, under a temporary name and link it into
 * place: a crash half way leaves no file at @path for a later resume to
 * trip over, and link() refuses to replace one that appeared meanwhile.
 */
static int create_file(const char *path, const struct file_header *h,
                       GError **err)
{
    g_autofree char *tmp = g_strdup_printf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (fd < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot create page state file %s: %s", tmp,
                    g_strerror(errno));
        return -1;
    }
    if (!lock_file(fd, tmp, err)) {
        goto fail;
    }
    if (ftruncate(fd, h->file_size) < 0 ||
        pwrite(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h)) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot write page state file %s: %s", tmp,
                    g_strerror(errno));
        goto fail;
    }
    if (link(tmp, path) < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    errno == EEXIST ? "page state file %s already exists: "
                                      "resume it or remove it"
                                    : "cannot create page state file %s: %s",
                    path, g_strerror(errno));
        goto fail;
    }
    unlink(tmp);
    return fd;

fail:
    unlink(tmp);
    close(fd);
    return -1;
}

struct page_state_table *page_state_create(const char *path,
                                           const struct page_state_layout *l,
                                           GError **err)
{
    uint64_t bytes = layout_bytes(l, err);
    struct file_header h;
    struct page_state_table *t;
    uint8_t *base;
    int fd = -1;

    if (bytes == 0) {
        return NULL;
    }
    header_fill(&h, l, DATA_OFFSET + bytes);
    if (path) {
        fd = create_file(path, &h, err);
        if (fd < 0) {
            return NULL;
        }
    }
    base = map_file(fd, h.file_size, path, err);
    if (base == NULL) {
        goto fail;
    }
    if (fd < 0) {
        memcpy(base, &h, sizeof(h));
    }
    t = table_new(fd, base, h.file_size, l);
    recount(t);
    return t;

fail:
    if (fd >= 0) {
        unlink(path);
        close(fd);
    }
    return NULL;
}

static bool header_read(int fd, const char *path, struct file_header *h,
                        uint64_t *st_size, GError **err)
{
    struct stat sb;

    if (fstat(fd, &sb) < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot stat page state file %s: %s", path,
                    g_strerror(errno));
        return false;
    }
    *st_size = sb.st_size;
    if ((uint64_t)sb.st_size < sizeof(*h) ||
        pread(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page state file %s is truncated: %" PRIu64
                    " bytes, shorter than its header",
                    path, *st_size);
        return false;
    }
    return true;
}

/* Is the file sound, whatever migration it belongs to? */
static bool header_check(const struct file_header *h, const char *path,
                         uint64_t st_size, GError **err)
{
    if (memcmp(h->magic, FILE_MAGIC, sizeof(h->magic)) != 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s is not a postcopyd page state file (bad magic)", path);
        return false;
    }
    if (h->version != FILE_VERSION) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page state file %s has format version %" PRIu32
                    ", this postcopyd reads version %u",
                    path, h->version, FILE_VERSION);
        return false;
    }
    if (h->data_offset != DATA_OFFSET ||
        memchr(h->migration_id, 0, sizeof(h->migration_id)) == NULL) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page state file %s has a corrupt header", path);
        return false;
    }
    if (st_size < h->file_size) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page state file %s is truncated: %" PRIu64
                    " bytes of %" PRIu64,
                    path, st_size, h->file_size);
        return false;
    }
    return true;
}

/* Is it the file of this migration, with these regions? */
static bool header_matches(const struct file_header *h, const char *path,
                           const struct page_state_layout *l, uint64_t size,
                           GError **err)
{
    if (strcmp(h->migration_id, l->migration_id) != 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "page state file %s belongs to migration '%s', not '%s'",
                    path, h->migration_id, l->migration_id);
        return false;
    }
    if (h->nregions != l->nregions) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "page state file %s has %" PRIu32
                    " regions, the VM has %" PRIu32,
                    path, h->nregions, l->nregions);
        return false;
    }
    for (uint32_t i = 0; i < l->nregions; i++) {
        if (h->regions[i].npages != l->regions[i].npages ||
            h->regions[i].page_size != l->regions[i].page_size) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "page state file %s: region %" PRIu32 " has %" PRIu64
                        " pages of %" PRIu64 " bytes, the VM's has %" PRIu64
                        " of %" PRIu64,
                        path, i, h->regions[i].npages, h->regions[i].page_size,
                        l->regions[i].npages, l->regions[i].page_size);
            return false;
        }
    }
    if (h->file_size != size) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page state file %s has a corrupt header", path);
        return false;
    }
    return true;
}

/* Could a live table have held @b? */
static bool byte_valid(uint8_t b)
{
    if (st(b) >= PAGE_NSTATES) {
        return false;
    }
    if (!has_prior(st(b)) && prior(b) != 0) {
        return false;
    }
    return st(b) == PAGE_WRITING || !(b & F_REDIRTIED);
}

/* Undo what died with the old daemon; see page_state_resume(). */
static uint8_t recover(uint8_t b, struct page_state_reload *rl)
{
    uint8_t w = wanted(b) ? F_WANTED : 0;

    switch (st(b)) {
    case PAGE_REQUESTED:
        rl->requests_dropped++;
        return make(base_of(prior(b)), 0, w);
    case PAGE_WRITING:
        rl->writes_torn++;
        return make(base_of(prior(b)), 0, w);
    case PAGE_INSTALLING:
        rl->installs_uncertain++;
        return b;
    default:
        return b;
    }
}

/* Check every byte before changing any: a refused file stays as it was. */
static bool check_all(const struct page_state_table *t, const char *path,
                      GError **err)
{
    for (uint32_t r = 0; r < t->nregions; r++) {
        const struct ps_region *pr = &t->regions[r];

        for (uint64_t p = 0; p < pr->npages; p++) {
            if (!byte_valid(pr->map[p])) {
                g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "page state file %s: region %" PRIu32
                            " page %" PRIu64 " has invalid state 0x%02x",
                            path, r, p, pr->map[p]);
                return false;
            }
        }
    }
    return true;
}

static void recover_all(struct page_state_table *t,
                        struct page_state_reload *rl)
{
    for (uint32_t r = 0; r < t->nregions; r++) {
        struct ps_region *pr = &t->regions[r];

        for (uint64_t p = 0; p < pr->npages; p++) {
            pr->map[p] = recover(pr->map[p], rl);
        }
    }
    recount(t);
}

static struct page_state_table *resume_fd(int fd, const char *path,
                                          const struct page_state_layout *l,
                                          struct page_state_reload *rl,
                                          GError **err)
{
    uint64_t size = DATA_OFFSET + layout_bytes(l, err);
    struct page_state_table *t;
    struct file_header h;
    uint64_t st_size;
    uint8_t *base;

    if (size == DATA_OFFSET || !lock_file(fd, path, err) ||
        !header_read(fd, path, &h, &st_size, err) ||
        !header_check(&h, path, st_size, err) ||
        !header_matches(&h, path, l, size, err)) {
        return NULL;
    }
    base = map_file(fd, size, path, err);
    if (base == NULL) {
        return NULL;
    }
    t = table_new(fd, base, size, l);
    if (!check_all(t, path, err)) {
        t->fd = -1; /* the caller closes it */
        page_state_close(t);
        return NULL;
    }
    recover_all(t, rl);
    return t;
}

struct page_state_table *page_state_resume(const char *path,
                                           const struct page_state_layout *l,
                                           struct page_state_reload *reload,
                                           GError **err)
{
    struct page_state_reload rl = {0};
    struct page_state_table *t;
    int fd = open(path, O_RDWR | O_CLOEXEC);

    if (fd < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot open page state file %s to resume: %s", path,
                    g_strerror(errno));
        return NULL;
    }
    t = resume_fd(fd, path, l, &rl, err);
    if (t == NULL) {
        close(fd);
        return NULL;
    }
    if (reload) {
        *reload = rl;
    }
    return t;
}

void page_state_close(struct page_state_table *t)
{
    if (t == NULL) {
        return;
    }
    munmap(t->base, t->len);
    if (t->fd >= 0) {
        close(t->fd);
    }
    g_free(t);
}
