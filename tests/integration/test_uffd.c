/*
 * test_uffd.c - the userfaultfd layer against the real kernel: feature
 * probing and its refusals, and the range operations on each backing.
 *
 * Table-driven like the kernel's uffd selftests: every scenario runs for
 * anon, shmem and hugetlbfs and is skipped, with the reason, only where
 * the kernel refuses (no huge pages could be reserved).
 */
#include <errno.h>
#include <gio/gio.h>
#include <linux/capability.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backing.h"
#include "region.h"
#include "testlib.h"
#include "uffd.h"

#define REGION_PAGES 64

struct mem {
    enum backing_kind kind;
    struct region region; /* base = the mapping; alias for file backings */
    struct uffd u;
    uint8_t *expected; /* what every page must hold after the test */
};

static int open_uffd(void)
{
    g_autoptr(GError) err = NULL;
    int fd = uffd_open(&err);

    g_assert_no_error(err);
    return fd;
}

static bool mem_setup(struct mem *m, enum backing_kind kind)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *why = NULL;
    uint64_t ps = kind == BACKING_HUGETLBFS ? testlib_hugepage_size() : 4096;
    struct uffd_caps caps;
    void *addr;
    int fd;

    memset(m, 0, sizeof(*m));
    m->kind = kind;
    if (kind == BACKING_HUGETLBFS &&
        !testlib_hugetlb_reserve(REGION_PAGES, &why)) {
        g_test_skip(why);
        return false;
    }
    g_assert_true(
        backing_alloc(kind, REGION_PAGES * ps, ps, "test", &addr, &fd, &err));
    g_assert_no_error(err);
    m->region = (struct region){
        .kind = kind,
        .base = (uintptr_t)addr,
        .size = REGION_PAGES * ps,
        .page_size = ps,
        .fd = fd,
    };
    g_assert_true(region_map_alias(&m->region, &err));
    g_assert_no_error(err);

    g_assert_true(uffd_probe(&caps, &err));
    g_assert_true(
        uffd_api(open_uffd(),
                 UFFD_FEATURE_THREAD_ID | backing_ops_get(kind)->dest_features,
                 &caps, &m->u, NULL, &err));
    g_assert_no_error(err);
    g_assert_true(uffd_register(&m->u, m->region.base, m->region.size,
                                backing_ops_get(kind)->dest_register_mode, NULL,
                                &err));
    g_assert_no_error(err);

    m->expected = g_malloc(m->region.size);
    for (uint64_t i = 0; i < m->region.size; i += 8) {
        uint64_t v = (i / ps) % 4 == 3 ? 0 : (i * 0x9E3779B97F4A7C15ULL) | 1;

        memcpy(m->expected + i, &v, 8);
    }
    return true;
}

static void mem_teardown(struct mem *m)
{
    close(m->u.fd);
    munmap((void *)(uintptr_t)m->region.base, m->region.size);
    if (m->region.alias) {
        munmap(m->region.alias, m->region.size);
    }
    if (m->region.fd >= 0) {
        close(m->region.fd);
    }
    g_free(m->expected);
}

static bool page_is_zero(const uint8_t *p, uint64_t len)
{
    return p[0] == 0 && !memcmp(p, p + 1, len - 1);
}

/*
 * Install one page from the expected image: zero pages as zero pages.
 * @flags: backing_install()'s.
 */
static int install_flagged(struct mem *m, uint64_t page, unsigned flags)
{
    uint64_t ps = m->region.page_size;
    const uint8_t *src = m->expected + page * ps;

    return backing_install(&m->u, &m->region, m->region.base + page * ps,
                           page_is_zero(src, ps) ? NULL : src, ps, flags, NULL);
}

static int install_expected(struct mem *m, uint64_t page)
{
    return install_flagged(m, page, 0);
}

/* Whether the daemon's own mapping (the alias) has @page in its page table. */
static bool alias_mapped(struct mem *m, uint64_t page)
{
    uint64_t entry;

    testlib_pagemap(0, (uintptr_t)m->region.alias + page * m->region.page_size,
                    1, &entry);
    return entry & TESTLIB_PM_PRESENT;
}

struct toucher {
    struct mem *m;
    uint64_t checksum_mismatches;
    unsigned seed;
};

/* The "guest": touches every page in a random order and checks it. */
static void *toucher_main(void *opaque)
{
    struct toucher *t = opaque;
    struct mem *m = t->m;
    uint64_t ps = m->region.page_size;
    g_autofree uint32_t *order = g_new(uint32_t, REGION_PAGES);
    GRand *rand = g_rand_new_with_seed(t->seed);

    for (uint32_t i = 0; i < REGION_PAGES; i++) {
        order[i] = i;
    }
    for (uint32_t i = REGION_PAGES - 1; i > 0; i--) {
        uint32_t j = g_rand_int_range(rand, 0, i + 1), tmp = order[i];

        order[i] = order[j];
        order[j] = tmp;
    }
    for (uint32_t i = 0; i < REGION_PAGES; i++) {
        const uint8_t *p = (const uint8_t *)(uintptr_t)m->region.base +
                           (uint64_t)order[i] * ps;

        if (memcmp(p, m->expected + (uint64_t)order[i] * ps, ps)) {
            t->checksum_mismatches++;
        }
    }
    g_rand_free(rand);
    return NULL;
}

static void fault_resolve(enum backing_kind kind, unsigned flags)
{
    struct toucher t = {.seed = g_test_rand_int()};
    struct mem m;
    pthread_t th;
    uint64_t faults = 0, minor = 0;

    if (!mem_setup(&m, kind)) {
        return;
    }
    /*
     * File backings: pre-fill the page cache of every other page, as
     * precopy would, so those faults are MINOR and are resolved with
     * CONTINUE over the existing page cache.
     */
    if (backing_ops_get(kind)->minor) {
        for (uint64_t p = 0; p < REGION_PAGES; p += 2) {
            memcpy(m.region.alias + p * m.region.page_size,
                   m.expected + p * m.region.page_size, m.region.page_size);
        }
    }
    t.m = &m;
    pthread_create(&th, NULL, toucher_main, &t);
    while (faults < REGION_PAGES) {
        struct uffd_msg msgs[16];
        int n;

        g_assert_cmpint(uffd_poll(&m.u, 10000), ==, 1);
        n = uffd_read_msgs(&m.u, msgs, G_N_ELEMENTS(msgs));
        g_assert_cmpint(n, >=, 0);
        for (int i = 0; i < n; i++) {
            uint64_t addr = msgs[i].arg.pagefault.address;

            g_assert_cmpint(msgs[i].event, ==, UFFD_EVENT_PAGEFAULT);
            g_assert_true(region_contains(&m.region, addr));
            g_assert_cmpint(msgs[i].arg.pagefault.feat.ptid, !=, 0);
            if (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) {
                minor++;
            }
            g_assert_cmpint(
                install_flagged(&m, region_page_index(&m.region, addr), flags),
                ==, 0);
            faults++;
        }
    }
    pthread_join(th, NULL);
    g_assert_cmpuint(t.checksum_mismatches, ==, 0);
    g_assert_cmpmem((void *)(uintptr_t)m.region.base, m.region.size, m.expected,
                    m.region.size);
    if (backing_ops_get(kind)->minor) {
        g_assert_cmpuint(minor, ==, REGION_PAGES / 2);
    } else {
        g_assert_cmpuint(minor, ==, 0);
    }
    /*
     * shmem writes a fault's page through the daemon's mapping only when
     * asked (a page the test never pre-filled: an odd one), else with
     * write(), which leaves that mapping untouched; hugetlbfs always maps.
     */
    if (kind == BACKING_SHMEM) {
        g_assert_cmpint(alias_mapped(&m, 1), ==,
                        !!(flags & BACKING_INSTALL_MAPPED));
    }
    mem_teardown(&m);
}

static void test_fault_resolve(gconstpointer data)
{
    fault_resolve(GPOINTER_TO_INT(data), 0);
}

/* The same, every page installed as a fault's reply is (installer.c). */
static void test_fault_resolve_mapped(gconstpointer data)
{
    fault_resolve(GPOINTER_TO_INT(data), BACKING_INSTALL_MAPPED);
}

/*
 * A run installed in one call where one page is already present: the
 * present page keeps its contents (never written twice), the rest land,
 * and `done` counts only what was newly installed.
 */
static void test_batch_eexist(gconstpointer data)
{
    enum backing_kind kind = GPOINTER_TO_INT(data);
    struct mem m;
    uint64_t ps, done = 0, run = 8, present = 3;
    g_autofree uint8_t *fresh = NULL;
    int r;

    if (!mem_setup(&m, kind)) {
        return;
    }
    ps = m.region.page_size;
    g_assert_cmpint(install_expected(&m, present), ==, 0);

    fresh = g_malloc(run * ps);
    memset(fresh, 0xA5, run * ps);
    if (backing_ops_get(kind)->minor) {
        /*
         * MINOR backings write the page cache first; the page-state table
         * keeps an installed page out of such a batch.  Here: CONTINUE
         * over a run whose page cache is filled, one page mapped already.
         */
        for (uint64_t p = 0; p < run; p++) {
            if (p != present) {
                memcpy(m.region.alias + p * ps, fresh, ps);
            }
        }
        r = uffd_continue(&m.u, m.region.base, run * ps, ps, 0, &done);
    } else {
        r = uffd_copy(&m.u, m.region.base, fresh, run * ps, ps, 0, &done);
    }
    g_assert_cmpint(r, ==, 0);
    g_assert_cmpuint(done, ==, (run - 1) * ps);
    for (uint64_t p = 0; p < run; p++) {
        const uint8_t *got = (const uint8_t *)(uintptr_t)m.region.base + p * ps;

        g_assert_cmpmem(got, ps, p == present ? m.expected + p * ps : fresh,
                        ps);
    }
    mem_teardown(&m);
}

static void test_zeropage(gconstpointer data)
{
    enum backing_kind kind = GPOINTER_TO_INT(data);
    struct mem m;
    uint64_t ps, done = 0;
    int r;

    if (!mem_setup(&m, kind)) {
        return;
    }
    ps = m.region.page_size;
    r = backing_install(&m.u, &m.region, m.region.base, NULL, 4 * ps, 0, &done);
    g_assert_cmpint(r, ==, 0);
    g_assert_cmpuint(done, ==, 4 * ps);
    g_assert_true(page_is_zero((uint8_t *)(uintptr_t)m.region.base, 4 * ps));
    /* hugetlb offers no ZEROPAGE: the ops table must say so. */
    if (kind == BACKING_HUGETLBFS) {
        g_assert_false(backing_ops_get(kind)->has_zeropage);
        g_assert_cmpint(
            uffd_zeropage(&m.u, m.region.base + 4 * ps, ps, ps, 0, NULL), ==,
            -EINVAL);
    }
    mem_teardown(&m);
}

static void test_out_of_range(gconstpointer data)
{
    enum backing_kind kind = GPOINTER_TO_INT(data);
    struct mem m;
    uint64_t ps;

    if (!mem_setup(&m, kind)) {
        return;
    }
    ps = m.region.page_size;
    g_assert_cmpint(backing_install(&m.u, &m.region,
                                    m.region.base + m.region.size, m.expected,
                                    ps, 0, NULL),
                    ==, -ERANGE);
    g_assert_cmpint(backing_install(&m.u, &m.region,
                                    m.region.base + m.region.size - ps,
                                    m.expected, 2 * ps, 0, NULL),
                    ==, -ERANGE);
    g_assert_cmpint(backing_install(&m.u, &m.region, m.region.base + 8,
                                    m.expected, ps, 0, NULL),
                    ==, -ERANGE);
    mem_teardown(&m);
}

static void test_probe(void)
{
    g_autoptr(GError) err = NULL;
    struct uffd_caps caps;

    g_assert_true(uffd_probe(&caps, &err));
    g_assert_no_error(err);
    /* Every usable feature is advertised; the basics are always there. */
    g_assert_cmphex(caps.usable & ~caps.advertised, ==, 0);
    g_assert_cmphex(caps.usable & UFFD_FEATURE_THREAD_ID, !=, 0);
    g_assert_cmpstr(uffd_feature_name(UFFD_FEATURE_WP_ASYNC), ==, "WP_ASYNC");
    g_assert_cmpstr(uffd_feature_name(UFFD_FEATURE_MOVE), ==, "MOVE");
    g_assert_cmpstr(uffd_feature_name(3), ==, "?");
    if (g_test_verbose()) {
        for (int i = 0; i < 17; i++) {
            g_test_message("%-20s %s", uffd_feature_name(1ULL << i),
                           caps.usable & (1ULL << i) ? "yes" : "no");
        }
    }
}

/* A bit no kernel knows is dropped, named, and the rest still works. */
static void test_api_drops_unknown(void)
{
    g_autoptr(GError) err = NULL;
    struct uffd_caps caps;
    struct uffd u;
    uint64_t dropped = 0, bogus = 1ULL << 62;

    g_assert_true(uffd_probe(&caps, &err));
    g_assert_cmphex(caps.usable & bogus, ==, 0);
    g_assert_true(uffd_api(open_uffd(), bogus | UFFD_FEATURE_THREAD_ID, &caps,
                           &u, &dropped, &err));
    g_assert_no_error(err);
    g_assert_cmphex(dropped, ==, bogus);
    g_assert_cmphex(u.features, ==, UFFD_FEATURE_THREAD_ID);
    close(u.fd);
}

/* Without the probe's filter the kernel refuses the whole handshake. */
static void test_api_unknown_refused(void)
{
    g_autoptr(GError) err = NULL;
    struct uffd u;
    int fd = open_uffd();

    g_assert_false(uffd_api(fd, (1ULL << 62) | UFFD_FEATURE_THREAD_ID, NULL, &u,
                            NULL, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull(strstr(err->message, "UFFDIO_API refused"));
    close(fd);
}

static void test_api_twice(void)
{
    g_autoptr(GError) err = NULL;
    struct uffd u;
    int fd = open_uffd();

    g_assert_true(uffd_api(fd, UFFD_FEATURE_THREAD_ID, NULL, &u, NULL, &err));
    g_assert_false(uffd_api(fd, UFFD_FEATURE_THREAD_ID, NULL, &u, NULL, &err));
    g_assert_nonnull(strstr(err->message, "already initialised"));
    close(fd);
}

/*
 * A feature the kernel advertises but refuses to this caller: EVENT_FORK
 * needs CAP_SYS_PTRACE.  In a child that dropped it, the probe must
 * report it unusable though advertised, and uffd_api must drop it and
 * still succeed with the rest (the documented fallback).
 */
static void test_probe_refused_capability(void)
{
    pid_t pid = fork();
    int status;

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        struct __user_cap_header_struct hdr = {.version =
                                                   _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct cap[2];
        struct uffd_caps caps;
        uint64_t dropped = 0;
        struct uffd u;

        if (syscall(SYS_capget, &hdr, cap)) {
            _exit(10);
        }
        cap[CAP_SYS_PTRACE / 32].effective &= ~(1u << (CAP_SYS_PTRACE % 32));
        if (syscall(SYS_capset, &hdr, cap)) {
            _exit(11);
        }
        if (!uffd_probe(&caps, NULL)) {
            _exit(12);
        }
        if (!(caps.advertised & UFFD_FEATURE_EVENT_FORK)) {
            _exit(13);
        }
        if (caps.usable & UFFD_FEATURE_EVENT_FORK) {
            _exit(14);
        }
        if (!uffd_api(uffd_open(NULL),
                      UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_THREAD_ID, &caps,
                      &u, &dropped, NULL)) {
            _exit(15);
        }
        _exit(dropped == UFFD_FEATURE_EVENT_FORK &&
                      u.features == UFFD_FEATURE_THREAD_ID
                  ? 0
                  : 16);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
}

static void test_classify(void)
{
    g_assert_cmpint(uffd_classify(EAGAIN), ==, UFFD_ERR_RETRY);
    g_assert_cmpint(uffd_classify(EEXIST), ==, UFFD_ERR_ALREADY);
    g_assert_cmpint(uffd_classify(ESRCH), ==, UFFD_ERR_GONE);
    g_assert_cmpint(uffd_classify(EFAULT), ==, UFFD_ERR_FATAL);
}

/*
 * The VMM shrinks its RAM file under a migration: a page past the new end
 * cannot be written through the daemon's mapping (a SIGBUS there would
 * kill the daemon).  The install fails with -EFAULT, the page stays
 * missing; a page before the end still installs.  shmem with the mapped
 * write (a fault's reply), hugetlbfs always (it has no write()).
 */
static void test_shrunk_file(gconstpointer data)
{
    enum backing_kind kind = GPOINTER_TO_INT(data);
    unsigned flags = kind == BACKING_SHMEM ? BACKING_INSTALL_MAPPED : 0;
    uint64_t ps, gone = REGION_PAGES / 2 + 1, entry;
    struct mem m;

    if (!mem_setup(&m, kind)) {
        return;
    }
    ps = m.region.page_size;
    g_assert_cmpint(ftruncate(m.region.fd, REGION_PAGES / 2 * ps), ==, 0);
    g_assert_cmpint(install_flagged(&m, gone, flags), ==, -EFAULT);
    testlib_pagemap(0, m.region.base + gone * ps, 1, &entry);
    g_assert_false(entry & TESTLIB_PM_PRESENT);
    g_assert_cmpint(install_flagged(&m, 1, flags), ==, 0);
    g_assert_cmpmem((const void *)(uintptr_t)(m.region.base + ps), ps,
                    m.expected + ps, ps);
    mem_teardown(&m);
}

static const struct {
    const char *name;
    GTestDataFunc fn;
} scenarios[] = {
    {"fault-resolve", test_fault_resolve},
    {"fault-resolve-mapped", test_fault_resolve_mapped},
    {"batch-eexist", test_batch_eexist},
    {"zeropage", test_zeropage},
    {"out-of-range", test_out_of_range},
};

static const enum backing_kind kinds[] = {BACKING_ANON, BACKING_SHMEM,
                                          BACKING_HUGETLBFS};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/uffd/probe", test_probe);
    g_test_add_func("/uffd/api/drops-unknown", test_api_drops_unknown);
    g_test_add_func("/uffd/api/unknown-refused", test_api_unknown_refused);
    g_test_add_func("/uffd/api/twice", test_api_twice);
    g_test_add_func("/uffd/api/refused-capability",
                    test_probe_refused_capability);
    g_test_add_func("/uffd/classify", test_classify);
    for (size_t s = 0; s < G_N_ELEMENTS(scenarios); s++) {
        for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
            g_autofree char *path = g_strdup_printf(
                "/uffd/%s/%s", scenarios[s].name, backing_kind_name(kinds[k]));

            g_test_add_data_func(path, GINT_TO_POINTER(kinds[k]),
                                 scenarios[s].fn);
        }
    }
    g_test_add_data_func("/uffd/shrunk-file/shmem",
                         GINT_TO_POINTER(BACKING_SHMEM), test_shrunk_file);
    g_test_add_data_func("/uffd/shrunk-file/hugetlbfs",
                         GINT_TO_POINTER(BACKING_HUGETLBFS), test_shrunk_file);
    return g_test_run();
}
