/* dirty_tracker.c - see dirty_tracker.h. */
#include "dirty_tracker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bitmap.h"

#define PM_SOFT_DIRTY   (1ULL << 55)
#define PM_ENTRY_SIZE   sizeof(uint64_t)
#define PM_READ_ENTRIES 512
#define FREEZE_WAIT_US  (5 * G_USEC_PER_SEC)
#define FREEZE_POLL_US  100

/* ---- bitmaps ---- */

static size_t bitmap_longs(uint64_t nbits)
{
    return BITS_TO_LONGS(nbits);
}

static void bitmap_set(unsigned long *map, uint64_t start, uint64_t n)
{
    for (uint64_t i = start; i < start + n; i++) {
        bitmap_set_bit(map, i);
    }
}

/* Set [start, start+n) in @to and clear it in @from. */
static void bitmap_move(unsigned long *to, unsigned long *from, uint64_t start,
                        uint64_t n)
{
    for (uint64_t i = start; i < start + n; i++) {
        unsigned long bit = 1UL << (i % BITS_PER_LONG);

        to[i / BITS_PER_LONG] |= bit;
        from[i / BITS_PER_LONG] &= ~bit;
    }
}

/* First index >= @i whose bit equals @set, or @nbits. */
static uint64_t bitmap_next(const unsigned long *map, uint64_t nbits,
                            uint64_t i, bool set)
{
    while (i < nbits) {
        unsigned long w =
            set ? map[i / BITS_PER_LONG] : ~map[i / BITS_PER_LONG];

        w &= ~0UL << (i % BITS_PER_LONG);
        if (w) {
            return MIN(i / BITS_PER_LONG * BITS_PER_LONG + __builtin_ctzl(w),
                       nbits);
        }
        i = (i / BITS_PER_LONG + 1) * BITS_PER_LONG;
    }
    return nbits;
}

static uint64_t bitmap_weight(const unsigned long *map, uint64_t nbits)
{
    uint64_t n = 0;

    for (size_t i = 0; i < bitmap_longs(nbits); i++) {
        n += __builtin_popcountl(map[i]);
    }
    return n;
}

/* ---- methods, features, the chooser ---- */

static const char *const method_names[] = {
    [DIRTY_AUTO] = "auto",
    [DIRTY_ASYNC_WP] = "async-wp",
    [DIRTY_SYNC_WP] = "sync-wp",
    [DIRTY_SOFT_DIRTY] = "soft-dirty",
};

const char *dirty_method_name(enum dirty_method m)
{
    if ((size_t)m >= G_N_ELEMENTS(method_names)) {
        return "unknown";
    }
    return method_names[m];
}

bool dirty_method_parse(const char *s, enum dirty_method *m)
{
    for (size_t i = 0; i < G_N_ELEMENTS(method_names); i++) {
        if (g_str_equal(s, method_names[i])) {
            *m = i;
            return true;
        }
    }
    return false;
}

uint64_t dirty_tracker_features(enum dirty_method m)
{
    switch (m) {
    case DIRTY_ASYNC_WP:
        return UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
               UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
    case DIRTY_SYNC_WP:
        return UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED |
               UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
    default:
        return 0;
    }
}

static bool probe_pagemap_scan(void)
{
    struct pm_scan_arg arg = {.size = sizeof(arg)};
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    bool ok;

    if (fd < 0) {
        return false;
    }
    /* An empty range: 0 where the ioctl exists, ENOTTY where not. */
    ok = ioctl(fd, PAGEMAP_SCAN, &arg) >= 0;
    close(fd);
    return ok;
}

static bool read_pagemap_entry(int fd, uint64_t addr, uint64_t *entry)
{
    off_t off = addr / (uint64_t)getpagesize() * PM_ENTRY_SIZE;

    return pread(fd, entry, sizeof(*entry), off) == sizeof(*entry);
}

/*
 * Write a page, clear our own soft-dirty bits, write it again: the bit
 * comes back only where the kernel tracks soft-dirty at all.  Clearing
 * the daemon's own bits costs it a few minor faults, nothing else.
 */
static bool probe_soft_dirty(void)
{
    long psz = getpagesize();
    int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    volatile char *p = MAP_FAILED;
    uint64_t entry = 0;
    bool ok = false;

    if (pm < 0 || cr < 0) {
        goto out;
    }
    p = mmap(NULL, psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
             0);
    if (p == MAP_FAILED) {
        goto out;
    }
    p[0] = 1;
    if (write(cr, "4", 1) != 1) {
        goto out;
    }
    p[0] = 2;
    ok =
        read_pagemap_entry(pm, (uintptr_t)p, &entry) && (entry & PM_SOFT_DIRTY);
out:
    if (p != MAP_FAILED) {
        munmap((void *)p, psz);
    }
    if (pm >= 0) {
        close(pm);
    }
    if (cr >= 0) {
        close(cr);
    }
    return ok;
}

void dirty_support_probe(struct dirty_support *s, uint64_t usable_features)
{
    s->uffd_features = usable_features;
    s->pagemap_scan = probe_pagemap_scan();
    s->soft_dirty = probe_soft_dirty();
}

/* Why @m cannot be used, or NULL when it can. */
static const char *method_refusal(const struct dirty_support *s,
                                  enum dirty_method m)
{
    uint64_t f = s->uffd_features;

    switch (m) {
    case DIRTY_ASYNC_WP:
        if (!(f & UFFD_FEATURE_WP_ASYNC)) {
            return "the kernel does not offer UFFD_FEATURE_WP_ASYNC (6.7+)";
        }
        if (!s->pagemap_scan) {
            return "the kernel has no PAGEMAP_SCAN ioctl (6.7+)";
        }
        break;
    case DIRTY_SYNC_WP:
        if (!(f & UFFD_FEATURE_WP_UNPOPULATED)) {
            return "the kernel does not offer UFFD_FEATURE_WP_UNPOPULATED "
                   "(6.4+), without which writes to never-touched anonymous "
                   "pages go unseen";
        }
        break;
    case DIRTY_SOFT_DIRTY:
        if (!s->soft_dirty) {
            return "the kernel does not track soft-dirty bits "
                   "(CONFIG_MEM_SOFT_DIRTY)";
        }
        if (s->hugetlb) {
            return "the kernel does not track soft-dirty on hugetlb "
                   "mappings (clear_refs skips them)";
        }
        return NULL;
    default:
        return "not a tracking method";
    }
    if (s->file_backed && !(f & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
        return "uffd-wp on shmem/hugetlbfs needs "
               "UFFD_FEATURE_WP_HUGETLBFS_SHMEM (5.19+)";
    }
    return NULL;
}

static bool choose_forced(const struct dirty_support *s, enum dirty_method want,
                          enum dirty_method *out, GError **err)
{
    const char *why = method_refusal(s, want);

    if (why) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s dirty tracking unavailable: %s",
                    dirty_method_name(want), why);
        return false;
    }
    *out = want;
    return true;
}

bool dirty_method_choose(const struct dirty_support *s, enum dirty_method want,
                         enum dirty_method *out, char **note, GError **err)
{
    static const enum dirty_method order[] = {DIRTY_ASYNC_WP, DIRTY_SYNC_WP,
                                              DIRTY_SOFT_DIRTY};
    g_autoptr(GString) why = g_string_new(NULL);

    if (note) {
        *note = NULL;
    }
    if (want != DIRTY_AUTO) {
        return choose_forced(s, want, out, err);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(order); i++) {
        const char *r = method_refusal(s, order[i]);

        if (r) {
            g_string_append_printf(why, "%s unavailable: %s; ",
                                   dirty_method_name(order[i]), r);
            continue;
        }
        *out = order[i];
        if (why->len == 0) {
            return true;
        }
        g_string_append_printf(why, "using %s", dirty_method_name(order[i]));
        if (note) {
            *note = g_strdup(why->str);
        } else {
            g_message("dirty tracking: %s", why->str);
        }
        return true;
    }
    g_string_truncate(why, why->len - 2);
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                "no dirty tracking method available: %s", why->str);
    return false;
}

/* ---- setup ---- */

static bool check_uffd(enum dirty_method m, struct uffd *u, GError **err)
{
    uint64_t need = 0;
    const char *name = NULL;

    switch (m) {
    case DIRTY_SOFT_DIRTY:
        /* Without it every write would go unreported: refuse. */
        if (!probe_soft_dirty()) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                        "soft-dirty dirty tracking: this kernel does not "
                        "track soft-dirty bits (built without "
                        "CONFIG_MEM_SOFT_DIRTY: a page written after "
                        "clear_refs \"4\" never shows pagemap bit 55)");
            return false;
        }
        return true;
    case DIRTY_ASYNC_WP:
        need = UFFD_FEATURE_WP_ASYNC;
        name = "WP_ASYNC";
        break;
    case DIRTY_SYNC_WP:
        need = UFFD_FEATURE_WP_UNPOPULATED;
        name = "WP_UNPOPULATED";
        break;
    default:
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "dirty tracker: choose a method before init (got %s)",
                    dirty_method_name(m));
        return false;
    }
    if (!u) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "%s dirty tracking needs a uffd", dirty_method_name(m));
        return false;
    }
    if ((u->features & need) != need) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s dirty tracking: the uffd was not API'd with "
                    "UFFD_FEATURE_%s (ask for dirty_tracker_features())",
                    dirty_method_name(m), name);
        return false;
    }
    return true;
}

static int open_proc(pid_t pid, const char *file, int flags, GError **err)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/%s", (int)pid, file);
    int fd = open(path, flags | O_CLOEXEC);

    if (fd < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "dirty tracker: open %s: %s", path, g_strerror(errno));
    }
    return fd;
}

bool dirty_tracker_init(struct dirty_tracker *dt, pid_t pid, struct uffd *u,
                        enum dirty_method m, GError **err)
{
    int pagemap_fd = -1;
    int clear_refs_fd = -1;

    if (!check_uffd(m, u, err)) {
        return false;
    }
    if (m != DIRTY_SYNC_WP) {
        pagemap_fd = open_proc(pid, "pagemap", O_RDONLY, err);
        if (pagemap_fd < 0) {
            return false;
        }
    }
    if (m == DIRTY_SOFT_DIRTY) {
        clear_refs_fd = open_proc(pid, "clear_refs", O_WRONLY, err);
        if (clear_refs_fd < 0) {
            close(pagemap_fd);
            return false;
        }
    }
    *dt = (struct dirty_tracker){
        .method = m,
        .pid = pid,
        .u = m == DIRTY_SOFT_DIRTY ? NULL : u,
        .pagemap_fd = pagemap_fd,
        .clear_refs_fd = clear_refs_fd,
        .scan_vec_len = PM_SCAN_MAX_VEC_LEN,
        .freeze = true,
    };
    g_mutex_init(&dt->lock);
    return true;
}

static bool is_wp(const struct dirty_tracker *dt)
{
    return dt->method == DIRTY_ASYNC_WP || dt->method == DIRTY_SYNC_WP;
}

void dirty_tracker_destroy(struct dirty_tracker *dt)
{
    for (size_t i = 0; i < dt->nranges; i++) {
        struct dirty_range *r = &dt->ranges[i];

        /* Never leave the VMM with protected pages nobody resolves. */
        if (is_wp(dt)) {
            uffd_writeprotect(dt->u, r->base, r->size, false, 0);
            uffd_unregister(dt->u, r->base, r->size, NULL);
        }
        g_free(r->live);
        g_free(r->collected);
    }
    g_free(dt->ranges);
    if (dt->pagemap_fd >= 0) {
        close(dt->pagemap_fd);
    }
    if (dt->clear_refs_fd >= 0) {
        close(dt->clear_refs_fd);
    }
    g_mutex_clear(&dt->lock);
    *dt = (struct dirty_tracker){.pagemap_fd = -1, .clear_refs_fd = -1};
}

/* ---- soft-dirty: stopping the process around read + clear ---- */

static char task_state(const char *stat_path)
{
    g_autofree char *text = NULL;
    const char *p;

    if (!g_file_get_contents(stat_path, &text, NULL, NULL)) {
        return 'X'; /* the thread is gone */
    }
    p = strrchr(text, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

static bool state_is_stopped(char s)
{
    return s == 'T' || s == 't' || s == 'Z' || s == 'X';
}

static bool all_threads_stopped(pid_t pid)
{
    g_autofree char *dir_path = g_strdup_printf("/proc/%d/task", (int)pid);
    DIR *dir = opendir(dir_path);
    struct dirent *de;
    bool stopped = true;

    if (!dir) {
        return true; /* the process is gone: nothing writes */
    }
    while (stopped && (de = readdir(dir))) {
        g_autofree char *stat = NULL;

        if (de->d_name[0] == '.') {
            continue;
        }
        stat = g_strdup_printf("%s/%s/stat", dir_path, de->d_name);
        stopped = state_is_stopped(task_state(stat));
    }
    closedir(dir);
    return stopped;
}

/*
 * SIGSTOP @pid and wait until no thread runs.  *@stopped says whether we
 * stopped it (a process stopped by someone else is left as it is).
 */
static bool process_freeze(pid_t pid, bool *stopped, GError **err)
{
    g_autofree char *stat = g_strdup_printf("/proc/%d/stat", (int)pid);
    gint64 deadline = g_get_monotonic_time() + FREEZE_WAIT_US;

    *stopped = false;
    if (state_is_stopped(task_state(stat)) && all_threads_stopped(pid)) {
        return true;
    }
    if (kill(pid, SIGSTOP) < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "soft-dirty: SIGSTOP %d: %s", (int)pid, g_strerror(errno));
        return false;
    }
    *stopped = true;
    while (!all_threads_stopped(pid)) {
        if (g_get_monotonic_time() > deadline) {
            kill(pid, SIGCONT);
            *stopped = false;
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                        "soft-dirty: process %d did not stop within %d s",
                        (int)pid, (int)(FREEZE_WAIT_US / G_USEC_PER_SEC));
            return false;
        }
        g_usleep(FREEZE_POLL_US);
    }
    return true;
}

/* Soft-dirty bits of @r's pages into its collected set. */
static bool soft_dirty_read(struct dirty_tracker *dt, struct dirty_range *r,
                            GError **err)
{
    uint64_t psz = getpagesize();
    uint64_t per_page = r->page_size / psz;
    uint64_t total = r->size / psz;
    uint64_t buf[PM_READ_ENTRIES];

    for (uint64_t i = 0; i < total; i += PM_READ_ENTRIES) {
        uint64_t n = MIN(total - i, PM_READ_ENTRIES);
        off_t off = (r->base / psz + i) * PM_ENTRY_SIZE;
        ssize_t got = pread(dt->pagemap_fd, buf, n * PM_ENTRY_SIZE, off);

        if (got != (ssize_t)(n * PM_ENTRY_SIZE)) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                        "soft-dirty: read /proc/%d/pagemap: %s", (int)dt->pid,
                        got < 0 ? g_strerror(errno) : "short read");
            return false;
        }
        for (uint64_t j = 0; j < n; j++) {
            if (buf[j] & PM_SOFT_DIRTY) {
                bitmap_set(r->collected, (i + j) / per_page, 1);
                dt->stats.pages_reported++;
            }
        }
    }
    return true;
}

/*
 * Read the first @nranges ranges, then clear the whole process.  A write
 * between the two would be cleared unseen, hence the freeze.
 */
static bool soft_dirty_collect(struct dirty_tracker *dt, size_t nranges,
                               GError **err)
{
    bool stopped = false;
    bool ok = false;

    if (dt->freeze) {
        if (!process_freeze(dt->pid, &stopped, err)) {
            return false;
        }
        dt->stats.freezes += stopped;
    }
    for (size_t i = 0; i < nranges; i++) {
        if (!soft_dirty_read(dt, &dt->ranges[i], err)) {
            goto out;
        }
    }
    if (pwrite(dt->clear_refs_fd, "4", 1, 0) != 1) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "soft-dirty: write /proc/%d/clear_refs: %s", (int)dt->pid,
                    g_strerror(errno));
        goto out;
    }
    ok = true;
out:
    if (stopped) {
        kill(dt->pid, SIGCONT);
    }
    return ok;
}

/* ---- ranges ---- */

static bool check_range(const struct dirty_tracker *dt, uint64_t base,
                        uint64_t size, uint64_t page_size, GError **err)
{
    uint64_t host = getpagesize();

    if (page_size < host || (page_size & (page_size - 1)) || !size ||
        (base | size) & (page_size - 1) || base + size < base) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "dirty tracker: bad range 0x%" G_GINT64_MODIFIER
                    "x+0x%" G_GINT64_MODIFIER "x page size %" G_GUINT64_FORMAT,
                    base, size, page_size);
        return false;
    }
    if (dt->method == DIRTY_SOFT_DIRTY && page_size != host) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "soft-dirty cannot track hugetlb pages: the kernel's "
                    "clear_refs has no hugetlb walker and pagemap reports "
                    "only the VMA's VM_SOFTDIRTY for them, so writes after "
                    "the first clear are never seen");
        return false;
    }
    for (size_t i = 0; i < dt->nranges; i++) {
        const struct dirty_range *r = &dt->ranges[i];

        if (base < r->base + r->size && r->base < base + size) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS,
                        "dirty tracker: range 0x%" G_GINT64_MODIFIER
                        "x overlaps tracked range %zu",
                        base, i);
            return false;
        }
    }
    return true;
}

static bool wp_arm(struct dirty_tracker *dt, uint64_t base, uint64_t size,
                   GError **err)
{
    uint64_t ioctls = 0;
    int ret;

    if (!uffd_register(dt->u, base, size, UFFDIO_REGISTER_MODE_WP, &ioctls,
                       err)) {
        if (!(dt->u->features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
            g_prefix_error(err, "(shmem/hugetlbfs need "
                                "UFFD_FEATURE_WP_HUGETLBFS_SHMEM) ");
        }
        return false;
    }
    if (!(ioctls & (1ULL << _UFFDIO_WRITEPROTECT))) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "dirty tracker: the kernel offers no UFFDIO_WRITEPROTECT "
                    "on this range");
        goto fail;
    }
    ret = uffd_writeprotect(dt->u, base, size, true, 0);
    if (ret < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "dirty tracker: write-protect range: %s", g_strerror(-ret));
        goto fail;
    }
    return true;
fail:
    uffd_unregister(dt->u, base, size, NULL);
    return false;
}

static struct dirty_range *range_append(struct dirty_tracker *dt, uint64_t base,
                                        uint64_t size, uint64_t page_size)
{
    struct dirty_range *r;
    uint64_t npages = size / page_size;

    dt->ranges = g_renew(struct dirty_range, dt->ranges, dt->nranges + 1);
    r = &dt->ranges[dt->nranges++];
    *r = (struct dirty_range){
        .base = base,
        .size = size,
        .page_size = page_size,
        .npages = npages,
        .live = g_new0(unsigned long, bitmap_longs(npages)),
        .collected = g_new0(unsigned long, bitmap_longs(npages)),
    };
    return r;
}

static void range_drop_last(struct dirty_tracker *dt)
{
    struct dirty_range *r = &dt->ranges[--dt->nranges];

    g_free(r->live);
    g_free(r->collected);
}

bool dirty_tracker_add_range(struct dirty_tracker *dt, uint64_t base,
                             uint64_t size, uint64_t page_size, size_t *index,
                             GError **err)
{
    bool ok = false;

    g_mutex_lock(&dt->lock);
    if (!check_range(dt, base, size, page_size, err)) {
        goto out;
    }
    if (dt->method == DIRTY_SOFT_DIRTY) {
        /* clear_refs clears everything: keep what the others saw. */
        if (!soft_dirty_collect(dt, dt->nranges, err)) {
            goto out;
        }
        range_append(dt, base, size, page_size);
    } else {
        /* Listed first: its WP faults can come as soon as it is armed. */
        range_append(dt, base, size, page_size);
        if (!wp_arm(dt, base, size, err)) {
            range_drop_last(dt);
            goto out;
        }
    }
    if (index) {
        *index = dt->nranges - 1;
    }
    ok = true;
out:
    g_mutex_unlock(&dt->lock);
    return ok;
}

/* ---- collecting ---- */

static void record_regions(struct dirty_tracker *dt, struct dirty_range *r,
                           const struct page_region *vec, long n)
{
    for (long i = 0; i < n; i++) {
        uint64_t s = (vec[i].start - r->base) / r->page_size;
        uint64_t e = (vec[i].end - r->base + r->page_size - 1) / r->page_size;

        e = MIN(e, r->npages);
        if (s >= e) {
            continue;
        }
        bitmap_set(r->collected, s, e - s);
        dt->stats.pages_reported += e - s;
    }
}

/*
 * One PAGEMAP_SCAN loop: report written pages and write-protect them
 * again in the same walk.  Pages whose report a failed call may have
 * dropped are all marked dirty: sending too much is fine, too little not.
 */
static bool async_collect_range(struct dirty_tracker *dt, struct dirty_range *r,
                                GError **err)
{
    struct page_region vec[PM_SCAN_MAX_VEC_LEN];
    uint64_t end = r->base + r->size;
    struct pm_scan_arg arg = {
        .size = sizeof(arg),
        .flags = (dt->final ? 0 : PM_SCAN_WP_MATCHING) | PM_SCAN_CHECK_WPASYNC,
        .start = r->base,
        .end = end,
        .vec = (uintptr_t)vec,
        .vec_len = MIN(MAX(dt->scan_vec_len, 1u), PM_SCAN_MAX_VEC_LEN),
        .category_mask = PAGE_IS_WRITTEN,
        .return_mask = PAGE_IS_WRITTEN,
    };

    while (arg.start < end) {
        long n = ioctl(dt->pagemap_fd, PAGEMAP_SCAN, &arg);
        int e = errno;

        dt->stats.scan_calls++;
        if (n < 0 || arg.walk_end <= arg.start || arg.walk_end > end) {
            uint64_t first = (arg.start - r->base) / r->page_size;

            bitmap_set(r->collected, first, r->npages - first);
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                        "PAGEMAP_SCAN /proc/%d/pagemap: %s", (int)dt->pid,
                        n < 0 ? g_strerror(e) : "walk made no progress");
            return false;
        }
        record_regions(dt, r, vec, n);
        arg.start = arg.walk_end;
    }
    return true;
}

/*
 * Protect each run of live pages, then move it to the collected set.  The
 * lock keeps handle_wp_fault() out, so an unprotected page always has its
 * live bit set and a write can never slip between protect and handout.
 */
static bool sync_collect_range(struct dirty_tracker *dt, struct dirty_range *r,
                               GError **err)
{
    uint64_t s = 0;

    while ((s = bitmap_next(r->live, r->npages, s, true)) < r->npages) {
        uint64_t e = bitmap_next(r->live, r->npages, s, false);
        int ret = uffd_writeprotect(dt->u, r->base + s * r->page_size,
                                    (e - s) * r->page_size, true, 0);

        if (ret < 0) {
            g_set_error(err, G_IO_ERROR, g_io_error_from_errno(-ret),
                        "sync-wp: re-protect: %s", g_strerror(-ret));
            return false;
        }
        bitmap_move(r->collected, r->live, s, e - s);
        dt->stats.pages_reported += e - s;
        s = e;
    }
    return true;
}

static bool collect_one(struct dirty_tracker *dt, size_t i, GError **err)
{
    if (dt->method == DIRTY_ASYNC_WP) {
        return async_collect_range(dt, &dt->ranges[i], err);
    }
    return sync_collect_range(dt, &dt->ranges[i], err);
}

static bool check_index(const struct dirty_tracker *dt, size_t range,
                        GError **err)
{
    if (range == DIRTY_ALL_RANGES || range < dt->nranges) {
        return true;
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "dirty tracker: no range %zu (%zu tracked)", range,
                dt->nranges);
    return false;
}

bool dirty_tracker_collect(struct dirty_tracker *dt, size_t range, GError **err)
{
    bool ok = true;

    if (!check_index(dt, range, err)) {
        return false;
    }
    g_mutex_lock(&dt->lock);
    dt->stats.collects++;
    if (dt->method == DIRTY_SOFT_DIRTY) {
        ok = soft_dirty_collect(dt, dt->nranges, err);
        goto out;
    }
    for (size_t i = 0; i < dt->nranges && ok; i++) {
        if (range == DIRTY_ALL_RANGES || range == i) {
            ok = collect_one(dt, i, err);
        }
    }
out:
    g_mutex_unlock(&dt->lock);
    return ok;
}

bool dirty_tracker_collect_final(struct dirty_tracker *dt, GError **err)
{
    g_mutex_lock(&dt->lock);
    dt->final = true;
    g_mutex_unlock(&dt->lock);
    return dirty_tracker_collect(dt, DIRTY_ALL_RANGES, err);
}

static struct dirty_range *find_range(struct dirty_tracker *dt, uint64_t addr)
{
    for (size_t i = 0; i < dt->nranges; i++) {
        struct dirty_range *r = &dt->ranges[i];

        if (addr >= r->base && addr - r->base < r->size) {
            return r;
        }
    }
    return NULL;
}

int dirty_tracker_handle_wp_fault(struct dirty_tracker *dt,
                                  const struct uffd_msg *msg)
{
    struct dirty_range *r;
    uint64_t page;
    int ret = 0;

    if (dt->method != DIRTY_SYNC_WP || msg->event != UFFD_EVENT_PAGEFAULT ||
        !(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
        return 0;
    }
    g_mutex_lock(&dt->lock);
    r = find_range(dt, msg->arg.pagefault.address);
    if (!r) {
        goto out;
    }
    page = (msg->arg.pagefault.address - r->base) / r->page_size;
    /* Recorded before unprotected: see sync_collect_range(). */
    bitmap_set(r->live, page, 1);
    ret = uffd_writeprotect(dt->u, r->base + page * r->page_size, r->page_size,
                            false, 0);
    dt->stats.wp_faults++;
    if (ret == 0) {
        ret = 1;
    }
out:
    g_mutex_unlock(&dt->lock);
    return ret;
}

/* ---- handing out ---- */

size_t dirty_tracker_bitmap_longs(const struct dirty_tracker *dt, size_t range)
{
    g_assert(range < dt->nranges);
    return bitmap_longs(dt->ranges[range].npages);
}

/* One pass: count, copy or OR into @out, clear. */
static uint64_t hand_out(struct dirty_tracker *dt, size_t range,
                         unsigned long *out, bool merge)
{
    struct dirty_range *r;
    uint64_t n = 0;
    size_t longs;

    g_assert(range < dt->nranges);
    g_mutex_lock(&dt->lock);
    r = &dt->ranges[range];
    longs = bitmap_longs(r->npages);
    for (size_t i = 0; i < longs; i++) {
        unsigned long w = r->collected[i];

        n += __builtin_popcountl(w);
        if (out) {
            out[i] = merge ? out[i] | w : w;
        }
        r->collected[i] = 0;
    }
    g_mutex_unlock(&dt->lock);
    return n;
}

uint64_t dirty_tracker_take(struct dirty_tracker *dt, size_t range,
                            unsigned long *out)
{
    return hand_out(dt, range, out, false);
}

uint64_t dirty_tracker_merge(struct dirty_tracker *dt, size_t range,
                             unsigned long *out)
{
    return hand_out(dt, range, out, true);
}

uint64_t dirty_tracker_count(struct dirty_tracker *dt, size_t range)
{
    uint64_t n;

    g_assert(range < dt->nranges);
    g_mutex_lock(&dt->lock);
    n = bitmap_weight(dt->ranges[range].collected, dt->ranges[range].npages);
    g_mutex_unlock(&dt->lock);
    return n;
}

void dirty_tracker_get_stats(struct dirty_tracker *dt, struct dirty_stats *out)
{
    g_mutex_lock(&dt->lock);
    *out = dt->stats;
    g_mutex_unlock(&dt->lock);
}
