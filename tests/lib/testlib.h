/*
 * testlib.h - shared helpers for the test programs: where the build tree's
 * binaries are, huge page reservation that gives the pages back, and a
 * process's page-table entries as /proc/PID/pagemap reports them.
 *
 * Tests are GTest programs run with --tap by tests/run-tests.sh.  A test
 * that needs something the kernel refuses calls g_test_skip() with the
 * reason; it never reports a skipped check as passed.
 */
#ifndef POSTCOPYD_TESTLIB_H
#define POSTCOPYD_TESTLIB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

/* Absolute path of a build-tree artifact such as "postcopy-guest". */
char *testlib_build_path(const char *name);

/*
 * Make sure @npages default-size huge pages are free, raising
 * vm.nr_hugepages if needed; the original value is restored at exit.
 * Returns false with the kernel's refusal in @why (g_free it).
 */
bool testlib_hugetlb_reserve(unsigned long npages, char **why);

/* 2 MiB on x86_64: the default huge page size from /proc/meminfo. */
uint64_t testlib_hugepage_size(void);
/* Free huge pages no mapping has reserved (-1: unknown). */
long testlib_hugetlb_unreserved(void);

/* pagemap bits: the entry is present; it is uffd write-protected. */
#define TESTLIB_PM_PRESENT (1ULL << 63)
#define TESTLIB_PM_UFFD_WP (1ULL << 57)

/*
 * The pagemap entries of process @pid (0: this one) for the @n host pages
 * from virtual address @va, into @out.  Asserts it could read them.
 */
void testlib_pagemap(pid_t pid, uintptr_t va, uint64_t n, uint64_t *out);

#endif /* POSTCOPYD_TESTLIB_H */
