/* test_compat.c - tests for daemon/uffd/uffd_compat.h. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <glib.h>

#include "uffd_compat.h"

#define PAGE 4096ul

/* The mainline values (include/uapi/linux/userfaultfd.h, fs.h, 6.8+). */
static void test_uffd_features(void)
{
    g_assert_cmphex(UFFD_FEATURE_WP_UNPOPULATED, ==, 1u << 13);
    g_assert_cmphex(UFFD_FEATURE_POISON, ==, 1u << 14);
    g_assert_cmphex(UFFD_FEATURE_WP_ASYNC, ==, 1u << 15);
    g_assert_cmphex(UFFD_FEATURE_MOVE, ==, 1u << 16);
    g_assert_cmpuint(_UFFDIO_MOVE, ==, 5);
    g_assert_cmpuint(_UFFDIO_POISON, ==, 8);
    g_assert_cmpuint(sizeof(struct uffd_msg), ==, 32);
}

static void test_pagemap_scan_abi(void)
{
    g_assert_cmphex(PAGEMAP_SCAN, ==, _IOWR('f', 16, struct pm_scan_arg));
    /* The ioctl number encodes the size: both must be the kernel's. */
    g_assert_cmphex(PAGEMAP_SCAN, ==, 0xc0606610u);
    g_assert_cmpuint(sizeof(struct pm_scan_arg), ==, 96);
    g_assert_cmpuint(offsetof(struct pm_scan_arg, walk_end), ==, 32);
    g_assert_cmpuint(offsetof(struct pm_scan_arg, return_mask), ==, 88);
    g_assert_cmpuint(sizeof(struct page_region), ==, 24);
    g_assert_cmpuint(offsetof(struct page_region, categories), ==, 16);

    g_assert_cmphex(PAGE_IS_WPALLOWED, ==, 1u << 0);
    g_assert_cmphex(PAGE_IS_WRITTEN, ==, 1u << 1);
    g_assert_cmphex(PAGE_IS_FILE, ==, 1u << 2);
    g_assert_cmphex(PAGE_IS_PRESENT, ==, 1u << 3);
    g_assert_cmphex(PAGE_IS_SWAPPED, ==, 1u << 4);
    g_assert_cmphex(PAGE_IS_PFNZERO, ==, 1u << 5);
    g_assert_cmphex(PAGE_IS_HUGE, ==, 1u << 6);
    g_assert_cmphex(PAGE_IS_SOFT_DIRTY, ==, 1u << 7);
    g_assert_cmphex(PM_SCAN_WP_MATCHING, ==, 1);
    g_assert_cmphex(PM_SCAN_CHECK_WPASYNC, ==, 2);
}

/*
 * The running kernel accepts our PAGEMAP_SCAN and reports exactly the
 * pages we touched as present.
 */
static void test_pagemap_scan_live(void)
{
    struct page_region vec[8];
    struct pm_scan_arg arg;
    uint8_t *p;
    int fd, n;

    p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(p != MAP_FAILED);
    p[0] = 1;
    p[2 * PAGE] = 1;
    fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);

    memset(&arg, 0, sizeof(arg));
    arg.size = sizeof(arg);
    arg.start = (uintptr_t)p;
    arg.end = (uintptr_t)p + 4 * PAGE;
    arg.vec = (uintptr_t)vec;
    arg.vec_len = G_N_ELEMENTS(vec);
    arg.category_mask = PAGE_IS_PRESENT;
    arg.return_mask = PAGE_IS_PRESENT;
    n = ioctl(fd, PAGEMAP_SCAN, &arg);
    if (n < 0 && (errno == EINVAL || errno == ENOTTY)) {
        g_test_skip("kernel lacks PAGEMAP_SCAN");
        goto out;
    }
    g_assert_cmpint(n, ==, 2);
    g_assert_cmphex(vec[0].start, ==, (uintptr_t)p);
    g_assert_cmphex(vec[0].end, ==, (uintptr_t)p + PAGE);
    g_assert_cmphex(vec[0].categories, ==, PAGE_IS_PRESENT);
    g_assert_cmphex(vec[1].start, ==, (uintptr_t)p + 2 * PAGE);
    g_assert_cmphex(vec[1].end, ==, (uintptr_t)p + 3 * PAGE);
    g_assert_cmphex(arg.walk_end, ==, arg.end);
out:
    close(fd);
    munmap(p, 4 * PAGE);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/compat/uffd-features", test_uffd_features);
    g_test_add_func("/compat/pagemap-scan-abi", test_pagemap_scan_abi);
    g_test_add_func("/compat/pagemap-scan-live", test_pagemap_scan_live);
    return g_test_run();
}
