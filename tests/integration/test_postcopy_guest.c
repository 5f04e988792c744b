/*
 * test_postcopy_guest.c - postcopy by hand across real processes: a source
 * postcopy-guest runs and is paused; an incoming postcopy-guest hands its
 * uffd to this test, which registers the guest's RAM and resolves every
 * fault the guest takes with COPY / ZEROPAGE (anon) or page cache +
 * CONTINUE (shmem, hugetlbfs), reading the source's memory from outside.
 * The guest's own verification proves the contents: a digest per page
 * taken at the pause, compared after touching every page in random order.
 *
 * File backings get half their pages into the page cache before the resume
 * (what precopy does), so those faults are MINOR and are resolved with a
 * bare CONTINUE, no data moved.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <gio/gio.h>

#include "backing.h"
#include "guest_proc.h"
#include "testlib.h"
#include "uffd.h"

struct resolver {
    struct guest_proc *src, *dst;
    struct uffd u;
    atomic_bool stop;
    uint64_t faults, minor, zero, copied;
    uint64_t bad_address;
    int error; /* first negative errno from an install */
};

static void resolve_one(struct resolver *rs, const struct uffd_msg *msg,
                        uint8_t *buf)
{
    struct region *r = ram_region(rs->dst);
    uint64_t ps = r->page_size;
    uint64_t addr = msg->arg.pagefault.address & ~(ps - 1);
    int ret;

    if (!region_contains(r, addr)) {
        rs->bad_address++;
        return;
    }
    rs->faults++;
    if (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) {
        /* The page cache is current: map it, move nothing. */
        rs->minor++;
        ret = uffd_continue(&rs->u, addr, ps, ps, 0, NULL);
    } else {
        ram_read(rs->src, addr - r->base, buf, ps);
        if (all_zero(buf, ps)) {
            rs->zero++;
            ret = backing_install(&rs->u, r, addr, NULL, ps, 0, NULL);
        } else {
            rs->copied++;
            ret = backing_install(&rs->u, r, addr, buf, ps, 0, NULL);
        }
    }
    if (ret < 0 && !rs->error) {
        rs->error = ret;
    }
}

static void *resolver_main(void *opaque)
{
    struct resolver *rs = opaque;
    g_autofree uint8_t *buf = g_malloc(ram_region(rs->dst)->page_size);

    while (!atomic_load(&rs->stop)) {
        struct uffd_msg msgs[32];
        int n;

        if (uffd_poll(&rs->u, 50) <= 0) {
            continue;
        }
        n = uffd_read_msgs(&rs->u, msgs, G_N_ELEMENTS(msgs));
        for (int i = 0; i < n; i++) {
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
                resolve_one(rs, &msgs[i], buf);
            }
        }
    }
    return NULL;
}

static void setup_dst_uffd(struct resolver *rs)
{
    g_autoptr(GError) err = NULL;
    struct region *r = ram_region(rs->dst);
    const struct backing_ops *ops = backing_ops_get(r->kind);
    struct uffd_caps caps;

    g_assert_true(uffd_probe(&caps, &err));
    g_assert_true(uffd_api(rs->dst->info.uffd,
                           ops->dest_features | UFFD_FEATURE_THREAD_ID, &caps,
                           &rs->u, NULL, &err));
    g_assert_no_error(err);
    g_assert_true(uffd_register(&rs->u, r->base, r->size,
                                ops->dest_register_mode, NULL, &err));
    g_assert_no_error(err);
}

/* Precopy's effect on a file backing: every other page already current. */
static uint64_t prefill_page_cache(struct resolver *rs)
{
    struct region *r = ram_region(rs->dst);
    uint64_t ps = r->page_size, filled = 0;

    for (uint64_t off = 0; off < r->size; off += 2 * ps) {
        ram_read(rs->src, off, r->alias + off, ps);
        filled++;
    }
    return filled;
}

static void run_postcopy(const struct backing_case *bc, bool corrupt)
{
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *state = NULL;
    struct guest_proc src, dst;
    struct resolver rs = {.src = &src, .dst = &dst};
    struct vmm_verify v;
    uint64_t prefilled = 0, npages;
    pthread_t th;
    size_t len;

    if (!backing_ready(bc, 2)) {
        return;
    }
    spawn_source(&src, bc);
    spawn_incoming(&dst, bc);
    wait_written_above(&src, 0);
    state = pause_guest(&src, &len);
    map_ram(&src);
    map_ram(&dst);
    npages = ram_region(&dst)->size / ram_region(&dst)->page_size;

    setup_dst_uffd(&rs);
    if (backing_ops_get(bc->kind)->minor) {
        prefilled = prefill_page_cache(&rs);
    }
    if (corrupt) {
        /* A wrong byte in a page the resolver will not touch. */
        g_assert_true(prefilled > 0);
        corrupt_byte(&dst, 2 * ram_region(&dst)->page_size + 100);
    }
    pthread_create(&th, NULL, resolver_main, &rs);
    g_assert_true(vmm_resume(&dst.vmm, state, len, &err));
    g_assert_no_error(err);
    g_assert_true(vmm_wait_verify(&dst.vmm, VERIFY_WAIT_MS, &v, &err));
    g_assert_no_error(err);
    atomic_store(&rs.stop, true);
    pthread_join(th, NULL);

    g_test_message("%s: %" G_GUINT64_FORMAT " faults (%" G_GUINT64_FORMAT
                   " minor, %" G_GUINT64_FORMAT " zero, %" G_GUINT64_FORMAT
                   " copied), %" G_GUINT64_FORMAT " mismatches",
                   bc->name, rs.faults, rs.minor, rs.zero, rs.copied,
                   v.mismatches);
    g_assert_cmpint(rs.error, ==, 0);
    g_assert_cmpuint(rs.bad_address, ==, 0);
    g_assert_cmpuint(v.pages_checked, ==, npages);
    if (corrupt) {
        g_assert_cmpuint(v.mismatches, ==, 1);
        g_assert_cmpuint(v.first_mismatch, ==, 2);
    } else {
        g_assert_cmpuint(v.mismatches, ==, 0);
    }
    /* Every page faulted once: verify touched them all, nothing else did. */
    g_assert_cmpuint(rs.faults, ==, npages);
    g_assert_cmpuint(rs.minor, ==, prefilled);
    if (ram_region(&dst)->page_size == 4096) {
        /* The guest leaves a quarter of its 4 KiB units zero. */
        g_assert_cmpuint(rs.zero, >, 0);
    }
    g_assert_cmpuint(rs.copied, >, 0);
    /* The guest runs on after the migration. */
    wait_written_above(&dst, query(&dst, NULL));
    quit_guest(&dst);
    quit_guest(&src);
}

static void test_postcopy(gconstpointer data)
{
    run_postcopy(data, false);
}

/* The same with one byte wrong: the verification must catch it. */
static void test_postcopy_corrupt(gconstpointer data)
{
    run_postcopy(data, true);
}

static const struct backing_case backings[] = {
    {BACKING_ANON, "anon"},
    {BACKING_SHMEM, "shmem"},
    {BACKING_HUGETLBFS, "hugetlbfs"},
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(backings); i++) {
        g_autofree char *p1 =
            g_strdup_printf("/postcopy-guest/%s", backings[i].name);
        g_autofree char *p2 =
            g_strdup_printf("/postcopy-guest/%s/corrupt", backings[i].name);

        g_test_add_data_func(p1, &backings[i], test_postcopy);
        if (backings[i].kind != BACKING_ANON) {
            g_test_add_data_func(p2, &backings[i], test_postcopy_corrupt);
        }
    }
    return g_test_run();
}
