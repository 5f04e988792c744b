/*
 * dirty_method.c - the dirty tracking methods: names, the uffd features
 * each needs, what this kernel offers, and the chooser that picks the best
 * one or says why a forced one cannot work.  See dirty_tracker.h.
 */
#include "dirty_tracker_priv.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <gio/gio.h>

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

void dirty_support_probe(struct dirty_support *s, uint64_t usable_features)
{
    s->uffd_features = usable_features;
    s->pagemap_scan = probe_pagemap_scan();
    s->soft_dirty = dirty_soft_works();
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
