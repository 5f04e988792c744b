/*
 * dirty_tracker.c - set-up, ranges, collect and hand-out of the dirty
 * tracker, dispatching to the method's file (dirty_wp.c, dirty_soft.c).
 * See dirty_tracker.h for the contract.
 */
#include "dirty_tracker_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <gio/gio.h>

static bool check_uffd(enum dirty_method m, struct uffd *u, GError **err)
{
    uint64_t need = 0;
    const char *name = NULL;

    switch (m) {
    case DIRTY_SOFT_DIRTY:
        /* Without it every write would go unreported: refuse. */
        if (!dirty_soft_works()) {
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

        /*
         * Never leave the VMM with protected pages nobody resolves.  The
         * kernel clears every uffd-wp bit of a write-protect range it
         * unregisters, but does not wake a writer waiting in it (sync-wp),
         * hence the wake after it; test_dirty's "destroy" checks both.  An
         * unprotect before the unregister walked the page tables a second
         * time (4 GiB of shmem, all protected: 118-124 ms for both against
         * 59-61 ms for the unregister alone), and the source VM resumed
         * after a failed switchover waits for this.
         */
        if (is_wp(dt)) {
            uffd_unregister(dt->u, r->base, r->size, NULL);
            uffd_wake(dt->u, r->base, r->size);
        }
        g_free(r->live);
        g_free(r->collected);
        g_free(r->absent);
        g_free(r->unprotected);
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
        .absent = dt->watch_absent ? g_new0(unsigned long, bitmap_longs(npages))
                                   : NULL,
    };
    if (dt->protect_later) {
        /* Bits past npages are never read: bitmap_next() stops there. */
        r->unprotected = g_new(unsigned long, bitmap_longs(npages));
        memset(r->unprotected, 0xff,
               bitmap_longs(npages) * sizeof(unsigned long));
    }
    return r;
}

static void range_drop_last(struct dirty_tracker *dt)
{
    struct dirty_range *r = &dt->ranges[--dt->nranges];

    g_free(r->live);
    g_free(r->collected);
    g_free(r->absent);
    g_free(r->unprotected);
}

bool dirty_tracker_final_walks_guest(const struct dirty_tracker *dt)
{
    return dt->method != DIRTY_SYNC_WP;
}

bool dirty_tracker_watch_absent(struct dirty_tracker *dt)
{
    g_assert(dt->nranges == 0);
    dt->watch_absent = dt->method == DIRTY_ASYNC_WP;
    return dt->watch_absent;
}

bool dirty_tracker_protect_later(struct dirty_tracker *dt)
{
    g_assert(dt->nranges == 0);
    dt->protect_later = is_wp(dt);
    return dt->protect_later;
}

/*
 * The ioctl runs without the lock: sync-wp's fault thread takes it for
 * every write fault, and a vCPU must not wait behind protecting 8 MiB.
 * A run's bits are cleared only once its ioctl has returned, so a caller
 * that finds them clear knows its pages are protected; two callers on
 * the same run both protect it, which is harmless.
 */
bool dirty_tracker_protect(struct dirty_tracker *dt, size_t range,
                           uint64_t first, uint64_t n, GError **err)
{
    struct dirty_range *r;
    uint64_t end, s = first, e;
    int ret;

    g_assert(range < dt->nranges);
    if (!dt->protect_later) {
        return true;
    }
    r = &dt->ranges[range];
    end = MIN(first + n, r->npages);
    for (;;) {
        g_mutex_lock(&dt->lock);
        s = bitmap_next(r->unprotected, end, s, true);
        e = bitmap_next(r->unprotected, end, s, false);
        g_mutex_unlock(&dt->lock);
        if (s >= end) {
            return true;
        }
        ret = uffd_writeprotect(dt->u, r->base + s * r->page_size,
                                (e - s) * r->page_size, true, 0);
        if (ret < 0) {
            g_set_error(err, G_IO_ERROR, g_io_error_from_errno(-ret),
                        "dirty tracker: write-protect: %s", g_strerror(-ret));
            return false;
        }
        g_mutex_lock(&dt->lock);
        bitmap_clear(r->unprotected, s, e - s);
        g_mutex_unlock(&dt->lock);
        s = e;
    }
}

const unsigned long *dirty_tracker_absent(const struct dirty_tracker *dt,
                                          size_t range)
{
    return range < dt->nranges ? dt->ranges[range].absent : NULL;
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
        if (!dirty_soft_collect(dt, dt->nranges, err)) {
            goto out;
        }
        range_append(dt, base, size, page_size);
    } else {
        /* Listed first: its WP faults can come as soon as it is armed. */
        range_append(dt, base, size, page_size);
        if (!dirty_wp_arm(dt, base, size, !dt->protect_later, err)) {
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
        ok = dirty_soft_collect(dt, dt->nranges, err);
        goto out;
    }
    for (size_t i = 0; i < dt->nranges && ok; i++) {
        if (range == DIRTY_ALL_RANGES || range == i) {
            ok = dirty_wp_collect(dt, i, err);
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
