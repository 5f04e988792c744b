/* testlib.c - see testlib.h. */
#include "testlib.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"

static long saved_nr_hugepages = -1;

char *testlib_build_path(const char *name)
{
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    g_autofree char *dir = NULL;
    g_autofree char *up = NULL;

    g_assert_nonnull(self);
    /* Tests live in BUILD/tests/{unit,integration}/. */
    dir = g_path_get_dirname(self);
    up = g_build_filename(dir, "..", "..", name, NULL);
    return g_canonicalize_filename(up, NULL);
}

static long read_long(const char *path)
{
    g_autofree char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return -1;
    }
    return strtol(text, NULL, 10);
}

static bool write_long(const char *path, long v)
{
    g_autofree char *text = g_strdup_printf("%ld\n", v);

    return g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_NONE,
                                    0644, NULL);
}

static void restore_hugepages(void)
{
    if (saved_nr_hugepages >= 0) {
        write_long(NR_HUGEPAGES, saved_nr_hugepages);
    }
}

static long meminfo_long(const char *text, const char *key)
{
    const char *p = strstr(text, key);

    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* Free and not promised to a mapping already (HugePages_Rsvd). */
long testlib_hugetlb_unreserved(void)
{
    g_autofree char *text = NULL;
    long free_pages, rsvd;

    if (!g_file_get_contents("/proc/meminfo", &text, NULL, NULL)) {
        return -1;
    }
    free_pages = meminfo_long(text, "HugePages_Free:");
    rsvd = meminfo_long(text, "HugePages_Rsvd:");
    return free_pages < 0 || rsvd < 0 ? -1 : free_pages - rsvd;
}

uint64_t testlib_hugepage_size(void)
{
    g_autofree char *text = NULL;
    const char *p;

    if (!g_file_get_contents("/proc/meminfo", &text, NULL, NULL)) {
        return 0;
    }
    p = strstr(text, "Hugepagesize:");
    return p ? strtoull(p + strlen("Hugepagesize:"), NULL, 10) * 1024 : 0;
}

bool testlib_hugetlb_reserve(unsigned long npages, char **why)
{
    long nr = read_long(NR_HUGEPAGES);
    long have = testlib_hugetlb_unreserved();

    if (nr < 0 || have < 0) {
        *why = g_strdup("no hugetlb support: " NR_HUGEPAGES " unreadable");
        return false;
    }
    if (have >= (long)npages) {
        return true;
    }
    if (saved_nr_hugepages < 0) {
        saved_nr_hugepages = nr;
        atexit(restore_hugepages);
    }
    if (!write_long(NR_HUGEPAGES, nr + (long)npages - have)) {
        *why = g_strdup_printf("cannot write " NR_HUGEPAGES " (not root?)");
        return false;
    }
    have = testlib_hugetlb_unreserved();
    if (have < (long)npages) {
        *why = g_strdup_printf("kernel reserved only %ld of %lu huge pages",
                               have, npages);
        return false;
    }
    return true;
}

void testlib_pagemap(pid_t pid, uintptr_t va, uint64_t n, uint64_t *out)
{
    g_autofree char *path = pid ? g_strdup_printf("/proc/%d/pagemap", (int)pid)
                                : g_strdup("/proc/self/pagemap");
    uint64_t host = getpagesize();
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, out, n * 8, va / host * 8), ==, (ssize_t)(n * 8));
    close(fd);
}
