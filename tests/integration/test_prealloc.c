/*
 * test_prealloc.c - daemon/vmm/prealloc.h against real memfds: the pages are
 * really allocated (the file's blocks), read as zero, anonymous regions
 * are left alone, and a region that cannot be allocated is reported with
 * its name and reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib.h>

#include "prealloc.h"
#include "region.h"

#define PAGE 4096ull

static int make_memfd(uint64_t size, unsigned flags)
{
    int fd = memfd_create("test_prealloc", MFD_CLOEXEC | flags);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    return fd;
}

static void add_region(struct region_table *t, enum backing_kind kind,
                       uint64_t base, uint64_t size, int fd, const char *name)
{
    struct region r = {
        .kind = kind,
        .base = base,
        .size = size,
        .page_size = PAGE,
        .fd = fd,
    };
    g_autoptr(GError) err = NULL;

    g_strlcpy(r.name, name, sizeof(r.name));
    g_assert_true(region_table_add(t, &r, &err));
    g_assert_no_error(err);
}

/* Bytes of @fd's file actually allocated. */
static uint64_t allocated(int fd)
{
    struct stat st;

    g_assert_cmpint(fstat(fd, &st), ==, 0);
    return (uint64_t)st.st_blocks * 512;
}

static void wait_finished(struct prealloc *pa, struct prealloc_progress *p)
{
    for (int i = 0; i < 60 * 100; i++) {
        prealloc_get_progress(pa, p);
        if (p->finished) {
            return;
        }
        g_usleep(10 * 1000);
    }
    g_assert_not_reached();
}

static void test_allocates(void)
{
    const uint64_t size = 48 << 20, anon_size = 16 << 20;
    struct region_table t;
    struct prealloc_progress p;
    struct prealloc *pa;
    uint8_t *map;
    int fd = make_memfd(size, 0);
    int probe = dup(fd);

    region_table_init(&t);
    add_region(&t, BACKING_ANON, 0x10000000, anon_size, -1, "low");
    add_region(&t, BACKING_SHMEM, 0x40000000, size, fd, "ram");
    g_assert_cmpuint(allocated(probe), ==, 0);

    pa = prealloc_start(&t, "vm");
    g_assert_nonnull(pa);
    wait_finished(pa, &p);
    g_assert_false(p.failed);
    g_assert_cmpuint(p.total, ==, size); /* the anonymous region is not */
    g_assert_cmpuint(p.done, ==, size);
    g_assert_cmpuint(allocated(probe), >=, size);

    /* Allocated, and zero: a later page copy finds the page there. */
    map = mmap(NULL, size, PROT_READ, MAP_SHARED, probe, 0);
    g_assert_true(map != MAP_FAILED);
    for (uint64_t off = 0; off < size; off += PAGE) {
        g_assert_cmpuint(map[off] | map[off + PAGE - 1], ==, 0);
    }
    munmap(map, size);
    prealloc_free(pa);
    region_table_clear(&t);
    close(probe);
}

static void test_nothing_to_do(void)
{
    struct region_table t;

    region_table_init(&t);
    add_region(&t, BACKING_ANON, 0x10000000, 1 << 20, -1, "anon");
    g_assert_null(prealloc_start(&t, "vm"));
    prealloc_free(NULL);
    region_table_clear(&t);
}

/* A file the daemon may not write into: reported, with region and cause. */
static void test_failure_reported(void)
{
    const uint64_t size = 8 << 20;
    struct region_table t;
    struct prealloc_progress p;
    struct prealloc *pa;
    int fd = make_memfd(size, MFD_ALLOW_SEALING);

    g_assert_cmpint(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), ==, 0);
    region_table_init(&t);
    add_region(&t, BACKING_SHMEM, 0x40000000, size, fd, "sealed");
    g_test_expect_message(NULL, G_LOG_LEVEL_WARNING,
                          "vm vm: cannot preallocate its RAM: *");
    pa = prealloc_start(&t, "vm");
    g_assert_nonnull(pa);
    wait_finished(pa, &p);
    g_test_assert_expected_messages();
    g_assert_true(p.failed);
    g_assert_cmpuint(p.done, <, p.total);
    g_test_message("error: %s", p.error);
    g_assert_nonnull(strstr(p.error, "region sealed"));
    g_assert_nonnull(strstr(p.error, g_strerror(EPERM)));
    prealloc_free(pa);
    region_table_clear(&t);
}

/* Freed mid-way: the worker stops at its next chunk and is joined. */
static void test_free_while_running(void)
{
    const uint64_t size = 1ull << 30;
    struct region_table t;
    struct prealloc *pa;
    int fd = make_memfd(size, 0);
    int probe = dup(fd);

    region_table_init(&t);
    add_region(&t, BACKING_SHMEM, 0x40000000, size, fd, "big");
    pa = prealloc_start(&t, "vm");
    g_assert_nonnull(pa);
    prealloc_free(pa); /* must return: the test would hang otherwise */
    g_test_message("allocated when stopped: %" G_GUINT64_FORMAT " MiB",
                   allocated(probe) >> 20);
    region_table_clear(&t);
    close(probe);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/prealloc/allocates", test_allocates);
    g_test_add_func("/prealloc/nothing-to-do", test_nothing_to_do);
    g_test_add_func("/prealloc/failure-reported", test_failure_reported);
    g_test_add_func("/prealloc/free-while-running", test_free_while_running);
    return g_test_run();
}
