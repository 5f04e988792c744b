/*
 * test_guest.c - postcopy-guest against a minimal "daemon" that resolves no
 * faults: the attach handshake, pause / query / resume through vmm.h, and a
 * migration done by hand (RAM copied through the memory fds, or with
 * process_vm_readv/writev for anonymous RAM) that the destination's verify
 * must accept -- and must reject when one byte was changed.
 *
 * Scenarios × backings, one table each, like the kernel's uffd selftests;
 * hugetlbfs is skipped, with the reason, when no huge pages can be reserved.
 * Then one guest with several regions of different backings (pages are
 * numbered globally, ram0's first), and the verify stress modes: threads
 * reading every page at once, and pages written after the check that
 * must stay written.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gio/gio.h>

#include "attach.h"
#include "testlib.h"
#include "vmm.h"
#include "guest_proc.h"

/*
 * The guest's device-state codec is not in libpostcopy.a (the daemon never
 * looks inside a device state); compile it in to check the blob.
 */
#include "tools/guest/digest.c"
#include "tools/guest/guest_state.c"

static const struct backing_case backings[] = {
    {BACKING_ANON, "anon"},
    {BACKING_SHMEM, "shmem"},
    {BACKING_HUGETLBFS, "hugetlbfs"},
};

/* ---- scenarios ---- */

static void test_attach(gconstpointer data)
{
    const struct backing_case *bc = data;
    struct guest_proc gp;
    struct region *r;

    if (!backing_ready(bc, 1)) {
        return;
    }
    spawn_source(&gp, bc);
    r = ram_region(&gp);
    g_assert_cmpint(gp.info.pid, ==, gp.pid);
    g_assert_false(gp.info.incoming);
    g_assert_cmpint(gp.info.uffd, >=, 0);
    g_assert_cmpuint(gp.info.uffd_features, ==, 0);
    g_assert_cmpint(r->kind, ==, bc->kind);
    g_assert_cmpstr(r->name, ==, "ram0");
    g_assert_cmpuint(r->size, ==, GUEST_RAM);
    g_assert_cmpuint(r->page_size, ==, page_size_of(bc->kind));
    g_assert_true((r->fd >= 0) == (bc->kind != BACKING_ANON));
    quit_guest(&gp);
}

static void assert_blob(const uint8_t *state, size_t len,
                        const struct backing_case *bc, uint64_t written)
{
    g_autoptr(GError) err = NULL;
    struct guest_state s;

    g_assert_true(guest_state_decode(state, len, &s, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(s.nregions, ==, 1);
    g_assert_cmpuint(s.regions[0].size, ==, GUEST_RAM);
    g_assert_cmpuint(s.regions[0].page_size, ==, page_size_of(bc->kind));
    g_assert_cmpuint(s.npages, ==, npages_of(bc->kind));
    g_assert_cmpuint(s.seed, ==, 7);
    g_assert_cmpuint(s.pages_written, ==, written);
    g_assert_nonnull(s.digests);
    guest_state_clear(&s);
}

static void test_pause_query(gconstpointer data)
{
    const struct backing_case *bc = data;
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *state = NULL;
    struct guest_proc gp;
    uint64_t n;
    size_t len;

    if (!backing_ready(bc, 1)) {
        return;
    }
    spawn_source(&gp, bc);
    n = wait_written_above(&gp, 0);
    n = wait_written_above(&gp, n);
    state = pause_guest(&gp, &len);
    n = query(&gp, NULL);
    assert_still(&gp, n);
    assert_blob(state, len, bc, n);
    /* A source whose migration was cancelled runs on. */
    g_assert_true(vmm_resume(&gp.vmm, NULL, 0, &err));
    g_assert_no_error(err);
    wait_written_above(&gp, n);
    quit_guest(&gp);
}

struct migration {
    struct guest_proc src, dst;
    uint8_t *state;
    size_t len;
    uint64_t src_written;
};

/* Let a spawned source run, then pause it: the switchover point. */
static void pause_source(struct migration *m)
{
    wait_written_above(&m->src, 0);
    m->state = pause_guest(&m->src, &m->len);
    m->src_written = query(&m->src, NULL);
}

/* Threads of @pid named "vcpu<N>". */
static unsigned vcpu_threads(GPid pid)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/task", (int)pid);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *tid;
    unsigned n = 0;

    g_assert_nonnull(d);
    while ((tid = g_dir_read_name(d))) {
        g_autofree char *path = g_strdup_printf("%s/%s/comm", dir, tid);
        g_autofree char *comm = NULL;

        if (g_file_get_contents(path, &comm, NULL, NULL) &&
            g_str_has_prefix(comm, "vcpu")) {
            n++;
        }
    }
    return n;
}

/*
 * What the migration does: the source's RAM into the incoming guest, whose
 * vCPUs exist already, as a VMM's do, and have written nothing.
 */
static void copy_to_incoming(struct migration *m)
{
    g_assert_true(m->dst.info.incoming);
    /* A new thread names itself: give the names a moment to show. */
    for (int i = 0; i < 500 && vcpu_threads(m->dst.pid) < 2; i++) {
        g_usleep(10 * 1000);
    }
    g_assert_cmpuint(vcpu_threads(m->dst.pid), ==, 2);
    assert_ram_untouched(&m->dst);
    g_assert_cmpuint(copy_ram(&m->src, &m->dst), >, 0);
}

/* Pause a source and copy its RAM into a fresh incoming guest. */
static void migrate_by_hand(struct migration *m, const struct backing_case *bc)
{
    spawn_source(&m->src, bc);
    pause_source(m);
    spawn_incoming(&m->dst, bc);
    copy_to_incoming(m);
}

static void resume_dst(struct migration *m)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(vmm_resume(&m->dst.vmm, m->state, m->len, &err));
    g_assert_no_error(err);
}

static void wait_verify(struct guest_proc *gp, int timeout_ms,
                        struct vmm_verify *v)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(vmm_wait_verify(&gp->vmm, timeout_ms, v, &err));
    g_assert_no_error(err);
}

static void finish_migration(struct migration *m)
{
    quit_guest(&m->src);
    quit_guest(&m->dst);
    g_free(m->state);
}

/* The destination can be migrated on: its state continues the source's. */
static void assert_second_hop(struct migration *m)
{
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *state = NULL;
    struct guest_state s;
    size_t len;

    state = pause_guest(&m->dst, &len);
    g_assert_true(guest_state_decode(state, len, &s, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(s.seed, ==, 7);
    g_assert_cmpuint(s.generation, ==, 1);
    g_assert_cmpuint(s.pages_written, >, m->src_written);
    g_assert_null(s.digests); /* the destination runs without --verify */
    guest_state_clear(&s);
}

static void test_roundtrip(gconstpointer data)
{
    const struct backing_case *bc = data;
    g_autofree char *line = NULL;
    struct migration m = {0};
    struct vmm_verify v;

    if (!backing_ready(bc, 2)) {
        return;
    }
    migrate_by_hand(&m, bc);
    resume_dst(&m);
    /*
     * The vCPUs start only after the verify result went out, so by the
     * time the counters move the result has arrived in front of a QUERY
     * reply: vmm must have kept it.
     */
    wait_written_above(&m.dst, m.src_written);
    g_assert_true(m.dst.vmm.have_verify);
    wait_verify(&m.dst, 0, &v);
    g_assert_cmpuint(v.mismatches, ==, 0);
    g_assert_cmpuint(v.pages_checked, ==, npages_of(bc->kind));
    line = g_strdup_printf("verify: %" G_GUINT64_FORMAT
                           " pages checked, 0 mismatches",
                           npages_of(bc->kind));
    expect_output(&m.dst, line);
    assert_second_hop(&m);
    finish_migration(&m);
}

static void test_corrupt(gconstpointer data)
{
    const struct backing_case *bc = data;
    uint64_t ps = page_size_of(bc->kind);
    uint64_t page = npages_of(bc->kind) / 3;
    struct migration m = {0};
    struct vmm_verify v;

    if (!backing_ready(bc, 2)) {
        return;
    }
    migrate_by_hand(&m, bc);
    corrupt_byte(&m.dst, page * ps + ps / 2 + 13);
    resume_dst(&m);
    wait_verify(&m.dst, VERIFY_WAIT_MS, &v);
    g_assert_cmpuint(v.pages_checked, ==, npages_of(bc->kind));
    g_assert_cmpuint(v.mismatches, ==, 1);
    g_assert_cmpuint(v.first_mismatch, ==, page);
    expect_output(&m.dst, " pages checked, 1 mismatches");
    finish_migration(&m);
}

static void assert_resume_refused(struct guest_proc *gp, const uint8_t *state,
                                  size_t len, const char *why)
{
    g_autoptr(GError) err = NULL;

    g_assert_false(vmm_resume(&gp->vmm, state, len, &err));
    g_assert_nonnull(err);
    g_test_message("refused as expected: %s", err->message);
    g_assert_nonnull(strstr(err->message, why));
}

/* ---- several regions of different backings in one guest ---- */

struct region_case {
    enum backing_kind kind;
    const char *name; /* backing */
    uint64_t size;    /* 0: two huge pages */
};

static const struct region_case three[] = {
    {BACKING_SHMEM, "shmem", 8ULL << 20},
    {BACKING_ANON, "anon", 4ULL << 20},
    {BACKING_HUGETLBFS, "hugetlbfs", 0},
};

static uint64_t case_size(const struct region_case *rc)
{
    return rc->size ? rc->size : 2 * testlib_hugepage_size();
}

static uint64_t case_pages(const struct region_case *rc)
{
    return case_size(rc) / page_size_of(rc->kind);
}

/* The global page number of page @page of region @i (see guest_ram.h). */
static uint64_t global_page(const struct region_case *rcs, size_t i,
                            uint64_t page)
{
    for (size_t j = 0; j < i; j++) {
        page += case_pages(&rcs[j]);
    }
    return page;
}

/* "--region" values for @n cases; g_strfreev() them. */
static char **region_specs(const struct region_case *rcs, size_t n)
{
    char **specs = g_new0(char *, n + 1);

    for (size_t i = 0; i < n; i++) {
        specs[i] = g_strdup_printf("%s:%" G_GUINT64_FORMAT "K", rcs[i].name,
                                   case_size(&rcs[i]) >> 10);
    }
    return specs;
}

/* Huge pages for @nguests guests of the three regions. */
static bool three_ready(unsigned nguests)
{
    return hugetlb_ready(nguests * case_pages(&three[2]) + 2);
}

static void spawn_three(struct guest_proc *gp, bool incoming,
                        const char *const *extra)
{
    g_auto(GStrv) specs = region_specs(three, G_N_ELEMENTS(three));

    spawn_regions(gp, (const char *const *)specs, incoming, extra);
}

static void test_regions_attach(void)
{
    struct guest_proc gp;

    if (!three_ready(1)) {
        return;
    }
    spawn_three(&gp, false, NULL);
    g_assert_cmpuint(gp.info.regions.n, ==, G_N_ELEMENTS(three));
    for (size_t i = 0; i < G_N_ELEMENTS(three); i++) {
        g_autofree char *name = g_strdup_printf("ram%zu", i);
        g_autofree char *line =
            g_strdup_printf("region %s backing=%s size=%" G_GUINT64_FORMAT,
                            name, three[i].name, case_size(&three[i]));
        struct region *r = region_named(&gp, name);

        g_assert_cmpint(r->kind, ==, three[i].kind);
        g_assert_cmpuint(r->size, ==, case_size(&three[i]));
        g_assert_cmpuint(r->page_size, ==, page_size_of(three[i].kind));
        g_assert_true((r->fd >= 0) == (three[i].kind != BACKING_ANON));
        expect_output(&gp, line);
    }
    quit_guest(&gp);
}

/* Pause a three-region source and copy its RAM into a new incoming one. */
static void migrate_three_by_hand(struct migration *m)
{
    spawn_three(&m->src, false, NULL);
    pause_source(m);
    spawn_three(&m->dst, true, NULL);
    copy_to_incoming(m);
}

static void test_regions_roundtrip(void)
{
    uint64_t npages = global_page(three, G_N_ELEMENTS(three), 0);
    g_autofree char *line = NULL;
    struct migration m = {0};
    struct vmm_verify v;

    if (!three_ready(2)) {
        return;
    }
    migrate_three_by_hand(&m);
    resume_dst(&m);
    wait_verify(&m.dst, VERIFY_WAIT_MS, &v);
    g_assert_cmpuint(v.pages_checked, ==, npages);
    g_assert_cmpuint(v.mismatches, ==, 0);
    g_assert_cmpuint(v.overwritten, ==, 0);
    line = g_strdup_printf("verify: %" G_GUINT64_FORMAT
                           " pages checked, 0 mismatches, 0 overwritten",
                           npages);
    expect_output(&m.dst, line);
    finish_migration(&m);
}

/* A byte wrong in the second region: one mismatch, at its global page. */
static void test_regions_corrupt(void)
{
    uint64_t ps = page_size_of(three[1].kind);
    uint64_t page = case_pages(&three[1]) / 3;
    struct migration m = {0};
    struct vmm_verify v;

    if (!three_ready(2)) {
        return;
    }
    migrate_three_by_hand(&m);
    region_corrupt_byte(&m.dst, region_named(&m.dst, "ram1"),
                        page * ps + ps / 2 + 13);
    resume_dst(&m);
    wait_verify(&m.dst, VERIFY_WAIT_MS, &v);
    g_assert_cmpuint(v.mismatches, ==, 1);
    g_assert_cmpuint(v.first_mismatch, ==, global_page(three, 1, page));
    finish_migration(&m);
}

/* Non-zero 4 KiB units of @r. */
static uint64_t written_units(struct guest_proc *gp, const struct region *r)
{
    g_autofree uint8_t *buf = g_malloc(4096);
    uint64_t n = 0;

    for (uint64_t off = 0; off < r->size; off += 4096) {
        region_read(gp, r, off, buf, 4096);
        n += !all_zero(buf, 4096);
    }
    return n;
}

/* From all-zero RAM, each region gets its share of the random writes. */
static void test_regions_spread(void)
{
    const char *const extra[] = {"--fill-percent", "0", NULL};
    g_autofree uint8_t *state = NULL;
    uint64_t units = 0, touched = 0, n[G_N_ELEMENTS(three)];
    struct guest_proc gp;
    size_t len;

    if (!three_ready(1)) {
        return;
    }
    spawn_three(&gp, false, extra);
    wait_written_above(&gp, 2000);
    state = pause_guest(&gp, &len);
    map_ram(&gp);
    for (size_t i = 0; i < G_N_ELEMENTS(three); i++) {
        g_autofree char *name = g_strdup_printf("ram%zu", i);

        n[i] = written_units(&gp, region_named(&gp, name));
        touched += n[i];
        units += case_size(&three[i]) / 4096;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(three); i++) {
        double share = (double)n[i] / (case_size(&three[i]) / 4096);
        double all = (double)touched / units;

        g_test_message("ram%zu: %" G_GUINT64_FORMAT " units written (%.3f, "
                       "all regions %.3f)",
                       i, n[i], share, all);
        g_assert_cmpfloat(share, >, all / 2);
        g_assert_cmpfloat(share, <, all * 2);
    }
    quit_guest(&gp);
}

/* The blob carries every region's geometry, and a guest checks all of it. */
static void test_regions_wrong_geometry(void)
{
    const char *const src_regions[] = {"shmem:8M", "anon:4M", NULL};
    const char *const fewer[] = {"shmem:8M", NULL};
    const char *const other[] = {"shmem:8M", "anon:8M", NULL};
    g_autofree uint8_t *state = NULL;
    struct guest_proc src, dst;
    size_t len;

    spawn_regions(&src, src_regions, false, NULL);
    state = pause_guest(&src, &len);
    quit_guest(&src);
    spawn_regions(&dst, fewer, true, NULL);
    assert_resume_refused(&dst, state, len,
                          "is for 2 regions, this guest has 1");
    quit_guest(&dst);
    spawn_regions(&dst, other, true, NULL);
    assert_resume_refused(&dst, state, len,
                          "ram1 is 1024 pages of 4096 bytes, this guest has "
                          "2048 pages");
    quit_guest(&dst);
}

/* ---- verification stress: overlapping readers, writes after reading ---- */

/* A shmem migration by hand whose destination verifies with @dst_extra. */
static void migrate_verify_with(struct migration *m,
                                const char *const *dst_extra)
{
    const struct backing_case *bc = &backings[1];

    spawn_source(&m->src, bc);
    pause_source(m);
    spawn_incoming_with(&m->dst, bc, dst_extra);
    copy_to_incoming(m);
}

static void test_verify_overlap(void)
{
    const char *const extra[] = {"--verify-threads", "8", "--verify-overlap",
                                 NULL};
    struct migration m = {0};
    struct vmm_verify v;

    migrate_verify_with(&m, extra);
    resume_dst(&m);
    wait_verify(&m.dst, VERIFY_WAIT_MS, &v);
    g_assert_cmpuint(v.pages_checked, ==, npages_of(BACKING_SHMEM));
    g_assert_cmpuint(v.mismatches, ==, 0);
    expect_output(&m.dst, "on 8 threads (overlapping)");
    finish_migration(&m);
}

/* Eight threads read the bad page (and its neighbours): counted once. */
static void test_verify_overlap_corrupt(void)
{
    const char *const extra[] = {"--verify-threads", "8", "--verify-overlap",
                                 NULL};
    uint64_t page = npages_of(BACKING_SHMEM) / 2 + 1;
    struct migration m = {0};
    struct vmm_verify v;

    migrate_verify_with(&m, extra);
    corrupt_byte(&m.dst, page * 4096 + 77);
    resume_dst(&m);
    wait_verify(&m.dst, VERIFY_WAIT_MS, &v);
    g_assert_cmpuint(v.mismatches, ==, 1);
    g_assert_cmpuint(v.first_mismatch, ==, page);
    g_assert_cmpuint(v.overwritten, ==, 0);
    finish_migration(&m);
}

static void test_verify_write(void)
{
    const char *const extra[] = {"--verify-threads", "4", "--verify-overlap",
                                 "--verify-write", NULL};
    g_autofree char *line = NULL;
    struct migration m = {0};
    struct vmm_verify v;

    migrate_verify_with(&m, extra);
    resume_dst(&m);
    wait_verify(&m.dst, VERIFY_WAIT_MS, &v);
    g_assert_cmpuint(v.mismatches, ==, 0);
    g_assert_cmpuint(v.overwritten, ==, 0);
    line = g_strdup_printf("verify-write: wrote %" G_GUINT64_FORMAT " pages",
                           npages_of(BACKING_SHMEM));
    expect_output(&m.dst, line);
    expect_output(&m.dst, "0 mismatches, 0 overwritten");
    finish_migration(&m);
}

/* A late write into a page the guest wrote is what `overwritten` counts. */
static void test_verify_write_overwritten(void)
{
    const char *const extra[] = {"--verify-write", "--verify-settle-ms", "1500",
                                 NULL};
    struct migration m = {0};
    struct vmm_verify v;

    migrate_verify_with(&m, extra);
    resume_dst(&m);
    expect_output(&m.dst, "verify-write: wrote ");
    corrupt_byte(&m.dst, 5 * 4096 + 300);
    wait_verify(&m.dst, VERIFY_WAIT_MS, &v);
    g_assert_cmpuint(v.mismatches, ==, 0);
    g_assert_cmpuint(v.overwritten, ==, 1);
    expect_output(&m.dst, "0 mismatches, 1 overwritten");
    finish_migration(&m);
}

/* ---- backing-independent checks ---- */

/* The throttle never lets a workload write faster than --dirty-rate. */
static void assert_rate_bound(struct guest_proc *gp, uint64_t mib_per_s)
{
    int64_t t0 = g_get_monotonic_time();
    uint64_t n0 = query(gp, NULL);
    uint64_t n1, limit;
    double secs;

    g_usleep(4 * QUIET_MS * 1000);
    n1 = query(gp, NULL);
    secs = (g_get_monotonic_time() - t0) / 1e6;
    /*
     * A vCPU that fell behind (descheduled) catches up on at most 100 ms
     * of writes; each may run one unit ahead, plus the 1 ms slack.
     */
    limit = mib_per_s * 256 * (secs + 0.1 + 0.002) + 2 * 2;
    g_test_message("%" G_GUINT64_FORMAT
                   " writes in %.3f s (limit %" G_GUINT64_FORMAT ")",
                   n1 - n0, secs, limit);
    g_assert_cmpuint(n1 - n0, <=, limit);
}

static void test_workloads(void)
{
    static const char *const kinds[] = {"idle", "seq", "random", "hotset"};
    const struct backing_case *bc = &backings[1];

    for (size_t i = 0; i < G_N_ELEMENTS(kinds); i++) {
        const char *const extra[] = {"--workload", kinds[i], "--dirty-rate",
                                     GUEST_RATE, NULL};
        struct guest_proc gp;

        spawn_with(&gp, bc, extra);
        if (!strcmp(kinds[i], "idle")) {
            g_usleep(QUIET_MS * 1000);
            g_assert_cmpuint(query(&gp, NULL), ==, 0);
        } else {
            wait_written_above(&gp, 0);
            assert_rate_bound(&gp, g_ascii_strtoull(GUEST_RATE, NULL, 10));
        }
        quit_guest(&gp);
    }
}

static void test_bad_device_state(void)
{
    const struct backing_case *bc = &backings[1];
    const uint8_t junk[100] = {'j', 'u', 'n', 'k'};
    g_autofree uint8_t *state = NULL;
    g_autofree uint8_t *copy = NULL;
    struct guest_proc src, dst;
    size_t len;

    spawn_source(&src, bc);
    state = pause_guest(&src, &len);
    quit_guest(&src);
    spawn_incoming(&dst, bc);
    assert_resume_refused(&dst, junk, sizeof(junk), "bad magic");
    assert_resume_refused(&dst, state, len - 8, "expected");
    copy = g_memdup2(state, len);
    copy[len / 2] ^= 0x40;
    assert_resume_refused(&dst, copy, len, "check word");
    assert_resume_refused(&dst, NULL, 0, "needs the device state");
    /* Still alive and answering. */
    query(&dst, NULL);
    quit_guest(&dst);
}

static void test_wrong_geometry(void)
{
    const struct backing_case *bc = &backings[1];
    const char *const small[] = {"--incoming", "--size", "16M", NULL};
    g_autofree uint8_t *state = NULL;
    struct guest_proc src, dst;
    size_t len;

    spawn_source(&src, bc);
    state = pause_guest(&src, &len);
    quit_guest(&src);
    spawn_guest(&dst, small);
    assert_resume_refused(&dst, state, len, "this guest has 4096 pages");
    quit_guest(&dst);
}

static void test_socket_closed(void)
{
    struct guest_proc gp;
    int status;

    spawn_source(&gp, &backings[0]);
    shutdown(gp.sock, SHUT_RDWR);
    status = reap_guest(&gp);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    expect_output(&gp, "attach socket closed while running");
    release_guest(&gp);
}

static void run_bad_options(const char *const *args, const char *why)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    g_autofree char *out = NULL;
    g_autofree char *errout = NULL;
    int status;

    g_ptr_array_add(argv, testlib_build_path("postcopy-guest"));
    for (; *args; args++) {
        g_ptr_array_add(argv, g_strdup(*args));
    }
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, NULL,
                               G_SPAWN_DEFAULT, NULL, NULL, &out, &errout,
                               &status, &err));
    g_assert_no_error(err);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 2);
    g_assert_nonnull(strstr(errout, why));
    /* One line. */
    g_assert_nonnull(strchr(errout, '\n'));
    g_assert_cmpstr(strchr(errout, '\n') + 1, ==, "");
}

static void test_bad_options(void)
{
    static const struct {
        const char *args[7];
        const char *why;
    } cases[] = {
        {{"--size", "64M", NULL}, "--attach"},
        {{"--attach", "/x", "--size", "12Q", NULL}, "--size"},
        {{"--attach", "/x", "--size", "5000", NULL}, "multiple"},
        {{"--attach", "/x", "--backing", "tmpfs", NULL}, "--backing"},
        {{"--attach", "/x", "--workload", "fast", NULL}, "--workload"},
        {{"--attach", "/x", "--vcpus", "0", NULL}, "--vcpus"},
        {{"--attach", "/x", "--fill-percent", "101", NULL}, "--fill-percent"},
        {{"--attach", "/x", "--page-size", "2M", NULL}, "--page-size"},
        {{"--attach", "/x", "--bogus", NULL}, "bogus"},
        {{"--attach", "/x", "--region", "tmpfs:8M", NULL}, "--region tmpfs:8M"},
        {{"--attach", "/x", "--region", "shmem", NULL}, "KIND:SIZE"},
        {{"--attach", "/x", "--region", "shmem:8M:4K:1", NULL}, "KIND:SIZE"},
        {{"--attach", "/x", "--region", "shmem:5000", NULL}, "multiple"},
        {{"--attach", "/x", "--region", "anon:8M:2M", NULL}, "4096-byte"},
        {{"--attach", "/x", "--region", "shmem:8M", "--size", "8M", NULL},
         "cannot be combined"},
        {{"--attach", "/x", "--verify-threads", "0", NULL}, "--verify-threads"},
        {{"--attach", "/x", "--verify-settle-ms", "-1", NULL},
         "--verify-settle-ms"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        run_bad_options(cases[i].args, cases[i].why);
    }
}

static const struct {
    const char *name;
    GTestDataFunc fn;
} scenarios[] = {
    {"attach", test_attach},
    {"pause-query", test_pause_query},
    {"roundtrip", test_roundtrip},
    {"corrupt", test_corrupt},
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (size_t s = 0; s < G_N_ELEMENTS(scenarios); s++) {
        for (size_t b = 0; b < G_N_ELEMENTS(backings); b++) {
            g_autofree char *path = g_strdup_printf(
                "/guest/%s/%s", backings[b].name, scenarios[s].name);

            g_test_add_data_func(path, &backings[b], scenarios[s].fn);
        }
    }
    g_test_add_func("/guest/workloads", test_workloads);
    g_test_add_func("/guest/bad-device-state", test_bad_device_state);
    g_test_add_func("/guest/wrong-geometry", test_wrong_geometry);
    g_test_add_func("/guest/socket-closed", test_socket_closed);
    g_test_add_func("/guest/bad-options", test_bad_options);
    g_test_add_func("/guest/regions/attach", test_regions_attach);
    g_test_add_func("/guest/regions/roundtrip", test_regions_roundtrip);
    g_test_add_func("/guest/regions/corrupt", test_regions_corrupt);
    g_test_add_func("/guest/regions/spread", test_regions_spread);
    g_test_add_func("/guest/regions/wrong-geometry",
                    test_regions_wrong_geometry);
    g_test_add_func("/guest/verify/overlap", test_verify_overlap);
    g_test_add_func("/guest/verify/overlap-corrupt",
                    test_verify_overlap_corrupt);
    g_test_add_func("/guest/verify/write", test_verify_write);
    g_test_add_func("/guest/verify/write-overwritten",
                    test_verify_write_overwritten);
    return g_test_run();
}
