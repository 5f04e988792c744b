/*
 * uffd_compat.h - userfaultfd and PAGEMAP_SCAN definitions that Debian
 * bookworm's 6.1 uapi headers lack but the kernels we run on have.
 *
 * Every definition sits behind #ifndef so a newer linux-libc-dev wins, and
 * the values are the mainline ones.  Nothing here says the kernel has a
 * feature: probe it (uffd_probe()) before use.
 */
#ifndef POSTCOPYD_UFFD_COMPAT_H
#define POSTCOPYD_UFFD_COMPAT_H

#include <stdint.h>
#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC     0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE 0x05
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON 0x08
#endif

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

/* PAGEMAP_SCAN (linux/fs.h, 6.7+). */
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED  (1 << 0)
#define PAGE_IS_WRITTEN    (1 << 1)
#define PAGE_IS_FILE       (1 << 2)
#define PAGE_IS_PRESENT    (1 << 3)
#define PAGE_IS_SWAPPED    (1 << 4)
#define PAGE_IS_PFNZERO    (1 << 5)
#define PAGE_IS_HUGE       (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
    __u64 start;
    __u64 end;
    __u64 categories;
};

#define PM_SCAN_WP_MATCHING   (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
    __u64 size;
    __u64 flags;
    __u64 start;
    __u64 end;
    __u64 walk_end;
    __u64 vec;
    __u64 vec_len;
    __u64 max_pages;
    __u64 category_inverted;
    __u64 category_mask;
    __u64 category_anyof_mask;
    __u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif /* PAGEMAP_SCAN */

/*
 * PLATFORM.md quirk: a PAGEMAP_SCAN call that fills more than 512 regions
 * can return walk_end short of end although it walked the whole range, and
 * a loop on walk_end then reports the tail twice.  Never ask for more.
 */
#define PM_SCAN_MAX_VEC_LEN 512

#endif /* POSTCOPYD_UFFD_COMPAT_H */
