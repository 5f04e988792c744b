/*
 * test_page_state.c - tests for daemon/dest/page_state.h: every transition from
 * every state, the held states' priors and hints, threads racing on the
 * same pages, and a table surviving its daemon through the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

#include "page_state.h"
#include "page_state_priv.h" /* the header's layout, to corrupt it */
#include "testlib.h"

#define NTHREADS 8

static void layout_set(struct page_state_layout *l, const char *id,
                       uint32_t nregions, const uint64_t *npages)
{
    memset(l, 0, sizeof(*l));
    g_strlcpy(l->migration_id, id, sizeof(l->migration_id));
    l->nregions = nregions;
    for (uint32_t i = 0; i < nregions; i++) {
        l->regions[i].npages = npages[i];
        l->regions[i].page_size = 4096;
    }
}

static struct page_state_table *table_new(uint32_t nregions,
                                          const uint64_t *npages)
{
    g_autoptr(GError) err = NULL;
    struct page_state_layout l;
    struct page_state_table *t;

    layout_set(&l, "test", nregions, npages);
    t = page_state_create(NULL, &l, &err);
    g_assert_no_error(err);
    g_assert_nonnull(t);
    return t;
}

static struct page_state_table *table_one(uint64_t npages)
{
    return table_new(1, &npages);
}

/* Every counter agrees with a count of the bytes themselves. */
static void assert_counts(const struct page_state_table *t)
{
    for (int s = 0; s < PAGE_NSTATES; s++) {
        uint64_t total = 0;

        for (uint32_t r = 0; r < page_state_nregions(t); r++) {
            uint64_t n = 0;

            for (uint64_t p = 0; p < page_state_npages(t, r); p++) {
                n += page_state_get(t, r, p) == (enum page_state)s;
            }
            g_assert_cmpuint(page_state_count(t, r, s), ==, n);
            total += n;
        }
        g_assert_cmpuint(page_state_total(t, s), ==, total);
    }
}

static void assert_result(enum page_result got, enum page_result want)
{
    g_assert_cmpstr(page_result_name(got), ==, page_result_name(want));
}

static void assert_state(const struct page_state_table *t, uint32_t r,
                         uint64_t p, enum page_state want)
{
    g_assert_cmpstr(page_state_name(page_state_get(t, r, p)), ==,
                    page_state_name(want));
}

/* Drive page @p of region @r, still ABSENT, to @s the way callers would. */
static void drive(struct page_state_table *t, uint32_t r, uint64_t p,
                  enum page_state s)
{
    switch (s) {
    case PAGE_ABSENT:
        break;
    case PAGE_CURRENT:
        assert_result(page_state_set_current(t, r, p, false), PAGE_OK);
        break;
    case PAGE_STALE:
        drive(t, r, p, PAGE_CURRENT);
        assert_result(page_state_mark_stale(t, r, p), PAGE_OK);
        break;
    case PAGE_REQUESTED:
        g_assert_true(page_state_try_request(t, r, p));
        break;
    case PAGE_WRITING:
        assert_result(page_state_begin_write(t, r, p), PAGE_OK);
        break;
    case PAGE_INSTALLING:
        assert_result(page_state_begin_install(t, r, p, PAGE_MASK_ALL),
                      PAGE_OK);
        break;
    case PAGE_INSTALLED:
        drive(t, r, p, PAGE_INSTALLING);
        assert_result(page_state_finish_install(t, r, p), PAGE_OK);
        break;
    case PAGE_REMOVED:
        assert_result(page_state_remove(t, r, p), PAGE_OK);
        break;
    default:
        g_assert_not_reached();
    }
    assert_state(t, r, p, s);
}

static void test_names(void)
{
    g_assert_cmpstr(page_state_name(PAGE_ABSENT), ==, "absent");
    g_assert_cmpstr(page_state_name(PAGE_INSTALLED), ==, "installed");
    g_assert_cmpstr(page_state_name(PAGE_NSTATES), ==, "invalid");
    g_assert_cmpstr(page_result_name(PAGE_DO_INSTALL), ==, "install");
    g_assert_cmpstr(page_result_name(PAGE_ILLEGAL), ==, "illegal");
    g_assert_cmpstr(page_result_name(PAGE_ILLEGAL + 1), ==, "invalid");
}

/* ---- every operation from every state ---- */

enum op {
    OP_TRY_REQUEST,
    OP_FAULT,
    OP_BEGIN_WRITE,
    OP_FINISH_WRITE,
    OP_ABORT_WRITE,
    OP_SET_CURRENT,
    OP_MARK_STALE,
    OP_BEGIN_INSTALL_ANY,
    OP_BEGIN_INSTALL_CURRENT,
    OP_FINISH_INSTALL,
    OP_ABORT_INSTALL,
    OP_REMOVE,
    OP_ZEROED,
    OP_COUNT,
};

static const char *const op_names[OP_COUNT] = {
    "try_request",    "fault",         "begin_write",
    "finish_write",   "abort_write",   "set_current",
    "mark_stale",     "begin_install", "begin_install(current)",
    "finish_install", "abort_install", "remove",
    "zeroed",
};

static enum page_result apply(struct page_state_table *t, enum op op,
                              uint64_t p)
{
    switch (op) {
    case OP_TRY_REQUEST:
        return page_state_try_request(t, 0, p) ? PAGE_DO_REQUEST : PAGE_SKIP;
    case OP_FAULT:
        return page_state_fault(t, 0, p);
    case OP_BEGIN_WRITE:
        return page_state_begin_write(t, 0, p);
    case OP_FINISH_WRITE:
        return page_state_finish_write(t, 0, p, false);
    case OP_ABORT_WRITE:
        return page_state_abort_write(t, 0, p);
    case OP_SET_CURRENT:
        return page_state_set_current(t, 0, p, false);
    case OP_MARK_STALE:
        return page_state_mark_stale(t, 0, p);
    case OP_BEGIN_INSTALL_ANY:
        return page_state_begin_install(t, 0, p, PAGE_MASK_ALL);
    case OP_BEGIN_INSTALL_CURRENT:
        return page_state_begin_install(t, 0, p, PAGE_MASK(PAGE_CURRENT));
    case OP_FINISH_INSTALL:
        return page_state_finish_install(t, 0, p);
    case OP_ABORT_INSTALL:
        return page_state_abort_install(t, 0, p);
    case OP_REMOVE:
        return page_state_remove(t, 0, p);
    case OP_ZEROED:
        return page_state_zeroed(t, 0, p);
    default:
        g_assert_not_reached();
    }
}

struct outcome {
    enum page_result res;
    enum page_state to;
};

#define O(r, s)                                                                \
    {                                                                          \
        PAGE_##r, PAGE_##s                                                     \
    }

/*
 * [op][from]: the result and the state after.  Held states come from
 * ABSENT (drive()), so aborting them goes back to ABSENT.
 */
static const struct outcome transitions[OP_COUNT][PAGE_NSTATES] = {
    [OP_TRY_REQUEST] = {O(DO_REQUEST, REQUESTED), O(SKIP, CURRENT),
                        O(DO_REQUEST, REQUESTED), O(SKIP, REQUESTED),
                        O(SKIP, WRITING), O(SKIP, INSTALLING),
                        O(SKIP, INSTALLED), O(SKIP, REMOVED)},
    [OP_FAULT] = {O(DO_REQUEST, REQUESTED), O(DO_INSTALL, INSTALLING),
                  O(DO_REQUEST, REQUESTED), O(WAIT, REQUESTED),
                  O(WAIT, WRITING), O(WAIT, INSTALLING), O(WAKE, INSTALLED),
                  O(DO_ZERO, REMOVED)},
    [OP_BEGIN_WRITE] = {O(OK, WRITING), O(OK, WRITING), O(OK, WRITING),
                        O(OK, WRITING), O(BUSY, WRITING), O(DROP, INSTALLING),
                        O(DROP, INSTALLED), O(DROP, REMOVED)},
    [OP_FINISH_WRITE] = {O(ILLEGAL, ABSENT), O(ILLEGAL, CURRENT),
                         O(ILLEGAL, STALE), O(ILLEGAL, REQUESTED),
                         O(OK, CURRENT), O(ILLEGAL, INSTALLING),
                         O(ILLEGAL, INSTALLED), O(ILLEGAL, REMOVED)},
    [OP_ABORT_WRITE] = {O(ILLEGAL, ABSENT), O(ILLEGAL, CURRENT),
                        O(ILLEGAL, STALE), O(ILLEGAL, REQUESTED), O(OK, ABSENT),
                        O(ILLEGAL, INSTALLING), O(ILLEGAL, INSTALLED),
                        O(ILLEGAL, REMOVED)},
    [OP_SET_CURRENT] = {O(OK, CURRENT), O(OK, CURRENT), O(OK, CURRENT),
                        O(DO_INSTALL, INSTALLING), O(BUSY, WRITING),
                        O(DROP, INSTALLING), O(DROP, INSTALLED),
                        O(DROP, REMOVED)},
    [OP_MARK_STALE] = {O(OK, ABSENT), O(OK, STALE), O(OK, STALE),
                       O(OK, REQUESTED), O(OK, WRITING), O(ILLEGAL, INSTALLING),
                       O(ILLEGAL, INSTALLED), O(OK, REMOVED)},
    [OP_BEGIN_INSTALL_ANY] = {O(OK, INSTALLING), O(OK, INSTALLING),
                              O(OK, INSTALLING), O(OK, INSTALLING),
                              O(BUSY, WRITING), O(DROP, INSTALLING),
                              O(DROP, INSTALLED), O(DROP, REMOVED)},
    [OP_BEGIN_INSTALL_CURRENT] = {O(SKIP, ABSENT), O(OK, INSTALLING),
                                  O(SKIP, STALE), O(SKIP, REQUESTED),
                                  O(BUSY, WRITING), O(DROP, INSTALLING),
                                  O(DROP, INSTALLED), O(DROP, REMOVED)},
    [OP_FINISH_INSTALL] = {O(ILLEGAL, ABSENT), O(ILLEGAL, CURRENT),
                           O(ILLEGAL, STALE), O(ILLEGAL, REQUESTED),
                           O(ILLEGAL, WRITING), O(OK, INSTALLED),
                           O(ILLEGAL, INSTALLED), O(ILLEGAL, REMOVED)},
    [OP_ABORT_INSTALL] = {O(ILLEGAL, ABSENT), O(ILLEGAL, CURRENT),
                          O(ILLEGAL, STALE), O(ILLEGAL, REQUESTED),
                          O(ILLEGAL, WRITING), O(OK, ABSENT),
                          O(ILLEGAL, INSTALLED), O(ILLEGAL, REMOVED)},
    [OP_REMOVE] = {O(OK, REMOVED), O(OK, REMOVED), O(OK, REMOVED),
                   O(OK, REMOVED), O(BUSY, WRITING), O(BUSY, INSTALLING),
                   O(SKIP, INSTALLED), O(SKIP, REMOVED)},
    [OP_ZEROED] = {O(ILLEGAL, ABSENT), O(ILLEGAL, CURRENT), O(ILLEGAL, STALE),
                   O(ILLEGAL, REQUESTED), O(ILLEGAL, WRITING),
                   O(ILLEGAL, INSTALLING), O(ILLEGAL, INSTALLED),
                   O(OK, INSTALLED)},
};

static void test_transitions(void)
{
    struct page_state_table *t = table_one(OP_COUNT * PAGE_NSTATES);

    for (int op = 0; op < OP_COUNT; op++) {
        for (int s = 0; s < PAGE_NSTATES; s++) {
            uint64_t p = op * PAGE_NSTATES + s;
            const struct outcome *want = &transitions[op][s];
            enum page_result got;

            drive(t, 0, p, s);
            got = apply(t, op, p);
            if (got != want->res || page_state_get(t, 0, p) != want->to) {
                g_error("%s from %s: got %s, now %s; want %s, now %s",
                        op_names[op], page_state_name(s), page_result_name(got),
                        page_state_name(page_state_get(t, 0, p)),
                        page_result_name(want->res), page_state_name(want->to));
            }
        }
    }
    assert_counts(t);
    page_state_close(t);
}

static void test_installed_is_final(void)
{
    struct page_state_table *t = table_one(1);

    drive(t, 0, 0, PAGE_INSTALLED);
    for (int round = 0; round < 3; round++) {
        for (int op = 0; op < OP_COUNT; op++) {
            enum page_result got = apply(t, op, 0);

            g_assert_true(got != PAGE_OK && got != PAGE_DO_INSTALL &&
                          got != PAGE_DO_REQUEST);
            assert_state(t, 0, 0, PAGE_INSTALLED);
        }
    }
    g_assert_true(page_state_all_installed(t));
    page_state_close(t);
}

/*
 * The VMM removes pages while they are held: the holder still owns them
 * (nobody else may take them) and its finish or abort ends them REMOVED,
 * whatever it would have done; a removed page is never handed out again.
 */
static void test_removed_while_held(void)
{
    struct page_state_table *t = table_one(6);
    struct page_run run = {.first = 3, .npages = 3};
    uint64_t pos = 3;

    drive(t, 0, 0, PAGE_WRITING);
    assert_result(page_state_remove(t, 0, 0), PAGE_BUSY);
    assert_result(page_state_mark_stale(t, 0, 0), PAGE_OK);
    assert_result(page_state_finish_write(t, 0, 0, true), PAGE_DROP);
    assert_state(t, 0, 0, PAGE_REMOVED);

    drive(t, 0, 1, PAGE_WRITING);
    assert_result(page_state_remove(t, 0, 1), PAGE_BUSY);
    assert_result(page_state_abort_write(t, 0, 1), PAGE_DROP);
    assert_state(t, 0, 1, PAGE_REMOVED);

    /* A zero CURRENT copy held for a fault: F_ZERO and gone apart. */
    assert_result(page_state_set_current(t, 0, 2, true), PAGE_OK);
    assert_result(page_state_fault(t, 0, 2), PAGE_DO_INSTALL);
    g_assert_false(page_state_is_gone(t, 0, 2));
    assert_result(page_state_remove(t, 0, 2), PAGE_BUSY);
    g_assert_true(page_state_is_gone(t, 0, 2));
    assert_result(page_state_fault(t, 0, 2), PAGE_WAIT);
    assert_result(page_state_abort_install(t, 0, 2), PAGE_DROP);
    assert_state(t, 0, 2, PAGE_REMOVED);
    assert_result(page_state_fault(t, 0, 2), PAGE_DO_ZERO);
    assert_result(page_state_zeroed(t, 0, 2), PAGE_OK);
    assert_state(t, 0, 2, PAGE_INSTALLED);

    /* A run of three, the middle one removed: two installed. */
    g_assert_true(page_state_claim_run(t, 0, &pos, 6, PAGE_MASK_ALL, &run));
    g_assert_cmpuint(run.npages, ==, 3);
    assert_result(page_state_remove(t, 0, 4), PAGE_BUSY);
    g_assert_cmpuint(page_state_finish_run(t, 0, &run), ==, 2);
    assert_state(t, 0, 4, PAGE_REMOVED);
    assert_result(page_state_begin_install(t, 0, 4, PAGE_MASK_ALL), PAGE_DROP);
    g_assert_false(page_state_try_request(t, 0, 4));
    /* Removed pages count as done: nothing is left to migrate. */
    g_assert_true(page_state_all_installed(t));
    g_assert_cmpuint(page_state_next(t, 0, 0, PAGE_MASK_UNINSTALLED), ==, 6);
    assert_counts(t);
    page_state_close(t);
}

/* ---- priors and hints ---- */

static void test_write_for_requested_installs(void)
{
    struct page_state_table *t = table_one(2);

    /* Bulk data for a page a vCPU asked for: install it at once... */
    drive(t, 0, 0, PAGE_REQUESTED);
    g_assert_true(page_state_is_wanted(t, 0, 0));
    assert_result(page_state_begin_write(t, 0, 0), PAGE_OK);
    assert_result(page_state_finish_write(t, 0, 0, false), PAGE_DO_INSTALL);
    assert_state(t, 0, 0, PAGE_INSTALLING);
    assert_result(page_state_finish_install(t, 0, 0), PAGE_OK);
    /* ...and the urgent reply that comes after is dropped. */
    assert_result(page_state_begin_write(t, 0, 0), PAGE_DROP);
    assert_result(page_state_begin_install(t, 0, 0, PAGE_MASK_ALL), PAGE_DROP);
    assert_result(page_state_set_current(t, 0, 0, false), PAGE_DROP);
    assert_state(t, 0, 0, PAGE_INSTALLED);

    /* A zero page for a requested page also installs at once. */
    drive(t, 0, 1, PAGE_REQUESTED);
    assert_result(page_state_set_current(t, 0, 1, true), PAGE_DO_INSTALL);
    g_assert_true(page_state_is_zero(t, 0, 1));
    assert_counts(t);
    page_state_close(t);
}

static void test_fault_during_write(void)
{
    struct page_state_table *t = table_one(2);

    drive(t, 0, 0, PAGE_WRITING);
    g_assert_false(page_state_is_wanted(t, 0, 0));
    assert_result(page_state_fault(t, 0, 0), PAGE_WAIT);
    assert_result(page_state_fault(t, 0, 0), PAGE_WAIT);
    g_assert_true(page_state_is_wanted(t, 0, 0));
    assert_result(page_state_finish_write(t, 0, 0, false), PAGE_DO_INSTALL);
    assert_result(page_state_fault(t, 0, 0), PAGE_WAIT);
    assert_result(page_state_finish_install(t, 0, 0), PAGE_OK);
    assert_result(page_state_fault(t, 0, 0), PAGE_WAKE);

    /* No fault: the data stays CURRENT, and a fault installs it later. */
    drive(t, 0, 1, PAGE_WRITING);
    assert_result(page_state_finish_write(t, 0, 1, false), PAGE_OK);
    assert_result(page_state_fault(t, 0, 1), PAGE_DO_INSTALL);
    assert_counts(t);
    page_state_close(t);
}

static void test_redirtied_while_written(void)
{
    struct page_state_table *t = table_one(3);

    drive(t, 0, 0, PAGE_WRITING);
    assert_result(page_state_mark_stale(t, 0, 0), PAGE_OK);
    assert_state(t, 0, 0, PAGE_WRITING);
    assert_result(page_state_finish_write(t, 0, 0, false), PAGE_WENT_STALE);
    assert_state(t, 0, 0, PAGE_STALE);

    /* Re-dirtied while a vCPU waits: never install the old data. */
    drive(t, 0, 1, PAGE_WRITING);
    assert_result(page_state_fault(t, 0, 1), PAGE_WAIT);
    assert_result(page_state_mark_stale(t, 0, 1), PAGE_OK);
    assert_result(page_state_finish_write(t, 0, 1, false), PAGE_DO_REQUEST);
    assert_state(t, 0, 1, PAGE_REQUESTED);

    /* A fresh write afterwards is current again. */
    assert_result(page_state_begin_write(t, 0, 0), PAGE_OK);
    assert_result(page_state_finish_write(t, 0, 0, false), PAGE_OK);
    assert_state(t, 0, 0, PAGE_CURRENT);
    assert_counts(t);
    page_state_close(t);
}

static void test_abort_write(void)
{
    struct page_state_table *t = table_one(4);

    /* A current copy half overwritten is gone. */
    drive(t, 0, 0, PAGE_CURRENT);
    assert_result(page_state_begin_write(t, 0, 0), PAGE_OK);
    assert_result(page_state_abort_write(t, 0, 0), PAGE_OK);
    assert_state(t, 0, 0, PAGE_ABSENT);

    drive(t, 0, 1, PAGE_STALE);
    assert_result(page_state_begin_write(t, 0, 1), PAGE_OK);
    assert_result(page_state_abort_write(t, 0, 1), PAGE_OK);
    assert_state(t, 0, 1, PAGE_STALE);

    /* Someone waits: ask again rather than strand the vCPU. */
    drive(t, 0, 2, PAGE_REQUESTED);
    assert_result(page_state_begin_write(t, 0, 2), PAGE_OK);
    assert_result(page_state_abort_write(t, 0, 2), PAGE_DO_REQUEST);
    assert_state(t, 0, 2, PAGE_REQUESTED);

    drive(t, 0, 3, PAGE_WRITING);
    assert_result(page_state_fault(t, 0, 3), PAGE_WAIT);
    assert_result(page_state_abort_write(t, 0, 3), PAGE_DO_REQUEST);
    assert_state(t, 0, 3, PAGE_REQUESTED);
    assert_counts(t);
    page_state_close(t);
}

static void test_abort_install(void)
{
    struct page_state_table *t = table_one(4);

    /* Installing a current copy does not write it: it is still current. */
    assert_result(page_state_set_current(t, 0, 0, true), PAGE_OK);
    assert_result(page_state_fault(t, 0, 0), PAGE_DO_INSTALL);
    g_assert_true(page_state_is_zero(t, 0, 0));
    assert_result(page_state_abort_install(t, 0, 0), PAGE_OK);
    assert_state(t, 0, 0, PAGE_CURRENT);
    g_assert_true(page_state_is_zero(t, 0, 0));
    /* The faulting vCPU still waits: the retry must find it. */
    g_assert_true(page_state_is_wanted(t, 0, 0));
    g_assert_cmpuint(page_state_next(t, 0, 0, PAGE_MASK_ALL | PAGE_MASK_WANTED),
                     ==, 0);
    assert_result(page_state_fault(t, 0, 0), PAGE_DO_INSTALL);
    assert_result(page_state_finish_install(t, 0, 0), PAGE_OK);
    g_assert_false(page_state_is_wanted(t, 0, 0));

    /* Data in hand for a request that failed to install: ask again. */
    drive(t, 0, 1, PAGE_REQUESTED);
    assert_result(page_state_begin_install(t, 0, 1, PAGE_MASK_ALL), PAGE_OK);
    assert_result(page_state_abort_install(t, 0, 1), PAGE_DO_REQUEST);
    assert_state(t, 0, 1, PAGE_REQUESTED);

    drive(t, 0, 2, PAGE_STALE);
    assert_result(page_state_begin_install(t, 0, 2, PAGE_MASK_ALL), PAGE_OK);
    assert_result(page_state_abort_install(t, 0, 2), PAGE_OK);
    assert_state(t, 0, 2, PAGE_STALE);
    g_assert_false(page_state_is_wanted(t, 0, 2));
    assert_counts(t);
    page_state_close(t);
}

static void test_zero_hint(void)
{
    struct page_state_table *t = table_one(3);

    assert_result(page_state_set_current(t, 0, 0, true), PAGE_OK);
    g_assert_true(page_state_is_zero(t, 0, 0));
    assert_result(page_state_mark_stale(t, 0, 0), PAGE_OK);
    g_assert_false(page_state_is_zero(t, 0, 0));

    assert_result(page_state_set_current(t, 0, 1, true), PAGE_OK);
    assert_result(page_state_begin_write(t, 0, 1), PAGE_OK);
    g_assert_false(page_state_is_zero(t, 0, 1));
    assert_result(page_state_finish_write(t, 0, 1, false), PAGE_OK);
    g_assert_false(page_state_is_zero(t, 0, 1));

    drive(t, 0, 2, PAGE_WRITING);
    assert_result(page_state_finish_write(t, 0, 2, true), PAGE_OK);
    g_assert_true(page_state_is_zero(t, 0, 2));
    assert_result(page_state_begin_install(t, 0, 2, PAGE_MASK(PAGE_CURRENT)),
                  PAGE_OK);
    g_assert_true(page_state_is_zero(t, 0, 2));
    assert_result(page_state_finish_install(t, 0, 2), PAGE_OK);
    g_assert_false(page_state_is_zero(t, 0, 2));
    page_state_close(t);
}

/* ---- runs, iteration, counters ---- */

static void test_claim_run(void)
{
    struct page_state_table *t = table_one(32);
    struct page_run run;
    uint64_t pos = 0;

    for (uint64_t p = 0; p < 21; p++) {
        drive(t, 0, p, PAGE_CURRENT);
    }
    assert_result(page_state_begin_install(t, 0, 4, PAGE_MASK_ALL), PAGE_OK);
    assert_result(page_state_finish_install(t, 0, 4), PAGE_OK);
    assert_result(page_state_begin_write(t, 0, 10), PAGE_OK);
    for (uint64_t p = 11; p < 16; p++) {
        assert_result(page_state_begin_write(t, 0, p), PAGE_OK);
        assert_result(page_state_abort_write(t, 0, p), PAGE_OK);
    }

    /* CURRENT pages only: 0-3, 5-9, 16-20. */
    g_assert_true(
        page_state_claim_run(t, 0, &pos, 32, PAGE_MASK(PAGE_CURRENT), &run));
    g_assert_cmpuint(run.first, ==, 0);
    g_assert_cmpuint(run.npages, ==, 4);
    g_assert_true(
        page_state_claim_run(t, 0, &pos, 32, PAGE_MASK(PAGE_CURRENT), &run));
    g_assert_cmpuint(run.first, ==, 5);
    g_assert_cmpuint(run.npages, ==, 5);
    page_state_finish_run(t, 0, &run);
    g_assert_true(
        page_state_claim_run(t, 0, &pos, 32, PAGE_MASK(PAGE_CURRENT), &run));
    g_assert_cmpuint(run.first, ==, 16);
    g_assert_cmpuint(run.npages, ==, 5);
    g_assert_false(
        page_state_claim_run(t, 0, &pos, 32, PAGE_MASK(PAGE_CURRENT), &run));
    g_assert_cmpuint(pos, ==, 32);

    /* With the data in hand anything not held goes, up to @end. */
    pos = 0;
    g_assert_true(page_state_claim_run(t, 0, &pos, 30, PAGE_MASK_ALL, &run));
    g_assert_cmpuint(run.first, ==, 11);
    g_assert_cmpuint(run.npages, ==, 5);
    g_assert_true(page_state_claim_run(t, 0, &pos, 30, PAGE_MASK_ALL, &run));
    g_assert_cmpuint(run.first, ==, 21);
    g_assert_cmpuint(run.npages, ==, 9);
    assert_state(t, 0, 30, PAGE_ABSENT);
    g_assert_true(page_state_claim_run(t, 0, &pos, 100, PAGE_MASK_ALL, &run));
    g_assert_cmpuint(run.first, ==, 30);
    g_assert_cmpuint(run.npages, ==, 2);
    g_assert_false(page_state_claim_run(t, 0, &pos, 100, PAGE_MASK_ALL, &run));
    assert_state(t, 0, 10, PAGE_WRITING);
    g_assert_cmpuint(page_state_count(t, 0, PAGE_INSTALLED), ==, 6);
    g_assert_cmpuint(page_state_count(t, 0, PAGE_INSTALLING), ==, 25);
    assert_counts(t);
    page_state_close(t);
}

/*
 * The run form of mark_stale leaves every byte and every counter exactly
 * as page-by-page calls do, from every state, whatever the run's bounds.
 */
static void test_mark_stale_run(void)
{
    const uint64_t npages[] = {5, 7 * PAGE_NSTATES + 3};
    struct page_state_table *a = table_new(2, npages);
    struct page_state_table *b = table_new(2, npages);

    for (uint64_t p = 0; p < npages[1]; p++) {
        drive(a, 1, p, (enum page_state)(p * 5 % PAGE_NSTATES));
        drive(b, 1, p, (enum page_state)(p * 5 % PAGE_NSTATES));
    }
    page_state_mark_stale_run(a, 1, 3, npages[1] - 4);
    page_state_mark_stale_run(a, 1, 0, 0); /* nothing */
    for (uint64_t p = 3; p < npages[1] - 1; p++) {
        page_state_mark_stale(b, 1, p);
    }
    for (uint64_t p = 0; p < npages[1]; p++) {
        assert_state(a, 1, p, page_state_get(b, 1, p));
        g_assert_cmpint(page_state_is_zero(a, 1, p), ==,
                        page_state_is_zero(b, 1, p));
    }
    for (int s = 0; s < PAGE_NSTATES; s++) {
        g_assert_cmpuint(page_state_count(a, 1, s), ==,
                         page_state_count(b, 1, s));
    }
    g_assert_cmpuint(page_state_count(a, 1, PAGE_STALE), >, 0);
    assert_counts(a);
    page_state_close(a);
    page_state_close(b);
}

/*
 * Copies unconfirmed (the last dirty set follows the resume): a fault on
 * a CURRENT page asks for it, and what an abort leaves is STALE, never the
 * copy; the set marks its pages, then the rest is trusted again.  Given
 * up on, every CURRENT copy goes STALE and nothing else moves.
 */
static void test_unconfirmed(void)
{
    struct page_state_table *t = table_one(6);
    struct page_run run;
    uint64_t pos;

    for (uint64_t p = 0; p < 4; p++) {
        drive(t, 0, p, PAGE_CURRENT);
    }
    drive(t, 0, 4, PAGE_INSTALLED);
    g_assert_true(page_state_copies_confirmed(t));
    g_assert_cmpuint(page_state_distrust_copies(t), ==, 0);
    page_state_copies_unconfirmed(t);
    g_assert_false(page_state_copies_confirmed(t));

    assert_result(page_state_fault(t, 0, 0), PAGE_DO_REQUEST);
    assert_state(t, 0, 0, PAGE_REQUESTED);
    assert_result(page_state_begin_install(t, 0, 0, PAGE_MASK(PAGE_REQUESTED)),
                  PAGE_OK);
    assert_result(page_state_abort_install(t, 0, 0), PAGE_DO_REQUEST);
    assert_state(t, 0, 0, PAGE_REQUESTED);
    assert_result(page_state_fault(t, 0, 4), PAGE_WAKE);
    assert_result(page_state_fault(t, 0, 5), PAGE_DO_REQUEST);
    /* No copy is held for installing (a sweep, a READ link's reader)... */
    assert_result(page_state_begin_install(t, 0, 1, PAGE_MASK(PAGE_CURRENT)),
                  PAGE_SKIP);
    pos = 0;
    g_assert_false(
        page_state_claim_run(t, 0, &pos, 6, PAGE_MASK(PAGE_CURRENT), &run));
    /* ...but data in hand installs over one. */
    assert_result(page_state_begin_install(t, 0, 1,
                                           PAGE_MASK(PAGE_CURRENT) |
                                               PAGE_MASK(PAGE_ABSENT)),
                  PAGE_OK);
    assert_result(page_state_abort_install(t, 0, 1), PAGE_OK);
    assert_state(t, 0, 1, PAGE_CURRENT);

    /* The set names page 1; confirmed, page 2's copy installs. */
    page_state_mark_stale_run(t, 0, 1, 1);
    page_state_confirm_copies(t);
    assert_result(page_state_fault(t, 0, 2), PAGE_DO_INSTALL);
    assert_state(t, 0, 1, PAGE_STALE);

    /* Given up on: page 3, the one copy left, goes STALE. */
    page_state_copies_unconfirmed(t);
    g_assert_cmpuint(page_state_distrust_copies(t), ==, 1);
    g_assert_true(page_state_copies_confirmed(t));
    assert_state(t, 0, 3, PAGE_STALE);
    assert_state(t, 0, 2, PAGE_INSTALLING);
    assert_state(t, 0, 4, PAGE_INSTALLED);
    assert_counts(t);
    page_state_close(t);
}

static void test_next(void)
{
    /* 13 pages first: region 1's bytes start unaligned. */
    const uint64_t npages[] = {13, 200};
    struct page_state_table *t = table_new(2, npages);
    unsigned uninstalled = PAGE_MASK_UNINSTALLED;

    for (uint64_t p = 0; p < 200; p++) {
        if (p != 101 && p != 150) {
            drive(t, 1, p, PAGE_INSTALLED);
        }
    }
    drive(t, 1, 150, PAGE_REQUESTED);
    g_assert_cmpuint(page_state_next(t, 1, 0, uninstalled), ==, 101);
    g_assert_cmpuint(page_state_next(t, 1, 101, uninstalled), ==, 101);
    g_assert_cmpuint(page_state_next(t, 1, 102, uninstalled), ==, 150);
    g_assert_cmpuint(page_state_next(t, 1, 151, uninstalled), ==, 200);
    g_assert_cmpuint(page_state_next(t, 1, 0, PAGE_MASK(PAGE_REQUESTED)), ==,
                     150);
    g_assert_cmpuint(page_state_next(t, 1, 0, PAGE_MASK(PAGE_INSTALLED)), ==,
                     0);
    g_assert_cmpuint(page_state_next(t, 1, 0, PAGE_MASK_ALL | PAGE_MASK_WANTED),
                     ==, 150);
    g_assert_cmpuint(page_state_next(t, 1, 500, uninstalled), ==, 200);
    g_assert_cmpuint(page_state_next(t, 0, 0, uninstalled), ==, 0);

    /* Wanted: a fault waiting on a page being written. */
    drive(t, 0, 7, PAGE_WRITING);
    g_assert_cmpuint(
        page_state_next(t, 0, 0, PAGE_MASK(PAGE_WRITING) | PAGE_MASK_WANTED),
        ==, 13);
    page_state_fault(t, 0, 7);
    g_assert_cmpuint(
        page_state_next(t, 0, 0, PAGE_MASK(PAGE_WRITING) | PAGE_MASK_WANTED),
        ==, 7);
    page_state_close(t);
}

static void test_counters_random(void)
{
    const uint64_t npages[] = {257, 64, 1000};
    struct page_state_table *t = table_new(3, npages);
    GRand *rand = g_rand_new_with_seed(42);

    for (int i = 0; i < 200000; i++) {
        uint32_t r = g_rand_int_range(rand, 0, 3);
        uint64_t p = g_rand_int_range(rand, 0, npages[r]);
        enum op op = g_rand_int_range(rand, 0, OP_COUNT);

        /* Keep most pages short of INSTALLED so every state stays busy. */
        if (op == OP_FINISH_INSTALL && g_rand_int_range(rand, 0, 20)) {
            op = OP_ABORT_INSTALL;
        }
        /* Removed pages only leave by a zero install: remove seldom. */
        if ((op == OP_REMOVE || op == OP_ZEROED) &&
            g_rand_int_range(rand, 0, 1000)) {
            op = g_rand_int_range(rand, 0, OP_REMOVE);
        }
        switch (op) {
        case OP_FINISH_WRITE:
            page_state_finish_write(t, r, p, g_rand_boolean(rand));
            break;
        case OP_SET_CURRENT:
            page_state_set_current(t, r, p, g_rand_boolean(rand));
            break;
        default:
            /* apply() works on region 0; call directly for the others. */
            if (r == 0) {
                apply(t, op, p);
            } else if (op == OP_BEGIN_WRITE) {
                page_state_begin_write(t, r, p);
            } else if (op == OP_ABORT_WRITE) {
                page_state_abort_write(t, r, p);
            } else if (op == OP_FAULT) {
                page_state_fault(t, r, p);
            } else if (op == OP_BEGIN_INSTALL_ANY) {
                page_state_begin_install(t, r, p, PAGE_MASK_ALL);
            } else if (op == OP_FINISH_INSTALL) {
                page_state_finish_install(t, r, p);
            } else if (op == OP_ABORT_INSTALL) {
                page_state_abort_install(t, r, p);
            } else if (op == OP_REMOVE) {
                page_state_remove(t, r, p);
            } else if (op == OP_ZEROED) {
                page_state_zeroed(t, r, p);
            } else {
                page_state_mark_stale(t, r, p);
            }
            break;
        }
    }
    assert_counts(t);
    for (int s = 0; s < PAGE_NSTATES; s++) {
        if (page_state_total(t, s) == 0) {
            g_error("no page ended %s", page_state_name(s));
        }
    }
    g_assert_false(page_state_all_installed(t));
    g_rand_free(rand);
    page_state_close(t);
}

static void test_all_installed(void)
{
    const uint64_t npages[] = {3, 2};
    struct page_state_table *t = table_new(2, npages);

    for (uint32_t r = 0; r < 2; r++) {
        for (uint64_t p = 0; p < npages[r]; p++) {
            g_assert_false(page_state_all_installed(t));
            drive(t, r, p, PAGE_INSTALLING);
            g_assert_false(page_state_all_installed(t));
            assert_result(page_state_finish_install(t, r, p), PAGE_OK);
        }
    }
    g_assert_true(page_state_all_installed(t));
    g_assert_cmpuint(page_state_total(t, PAGE_INSTALLED), ==, 5);
    page_state_close(t);
}

/* ---- threads racing ---- */

#define RACE_PAGES 4096

struct race {
    struct page_state_table *t;
    pthread_barrier_t start;
    unsigned winners[RACE_PAGES];
    unsigned installs[RACE_PAGES];
    bool installed_seen[RACE_PAGES];
    unsigned violations;
    unsigned iterations;
};

struct racer {
    struct race *race;
    unsigned id;
};

static void *request_racer(void *opaque)
{
    struct racer *me = opaque;
    struct race *race = me->race;

    pthread_barrier_wait(&race->start);
    for (unsigned i = 0; i < RACE_PAGES; i++) {
        /* Odd threads run backwards: neighbours race from both sides. */
        unsigned p = me->id & 1 ? RACE_PAGES - 1 - i : i;
        bool won = me->id < NTHREADS / 2
                       ? page_state_try_request(race->t, 0, p)
                       : page_state_fault(race->t, 0, p) == PAGE_DO_REQUEST;

        if (won) {
            __atomic_fetch_add(&race->winners[p], 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

static void run_racers(struct race *race, void *(*fn)(void *))
{
    pthread_t th[NTHREADS];
    struct racer racers[NTHREADS];

    pthread_barrier_init(&race->start, NULL, NTHREADS);
    for (unsigned i = 0; i < NTHREADS; i++) {
        racers[i] = (struct racer){.race = race, .id = i};
        g_assert_cmpint(pthread_create(&th[i], NULL, fn, &racers[i]), ==, 0);
    }
    for (unsigned i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&race->start);
}

static void test_race_request(void)
{
    for (int round = 0; round < 20; round++) {
        g_autofree struct race *race = g_new0(struct race, 1);

        race->t = table_one(RACE_PAGES);
        /* A quarter STALE: dedupe must hold for both starting points. */
        for (uint64_t p = 0; p < RACE_PAGES; p += 4) {
            drive(race->t, 0, p, PAGE_STALE);
        }
        run_racers(race, request_racer);
        for (unsigned p = 0; p < RACE_PAGES; p++) {
            g_assert_cmpuint(race->winners[p], ==, 1);
        }
        g_assert_cmpuint(page_state_count(race->t, 0, PAGE_REQUESTED), ==,
                         RACE_PAGES);
        assert_counts(race->t);
        page_state_close(race->t);
    }
}

/* Finish whatever @res left the caller holding, as a real caller would. */
static void settle_held(struct race *race, uint64_t p, enum page_result res,
                        GRand *rand)
{
    if (res != PAGE_DO_INSTALL) {
        return;
    }
    if (g_rand_int_range(rand, 0, 4) == 0) {
        page_state_abort_install(race->t, 0, p);
        return;
    }
    g_assert(page_state_finish_install(race->t, 0, p) == PAGE_OK);
    __atomic_fetch_add(&race->installs[p], 1, __ATOMIC_RELAXED);
    __atomic_store_n(&race->installed_seen[p], true, __ATOMIC_RELEASE);
}

/* A claim granted on a page known to be installed breaks the one rule. */
static void check_claim(struct race *race, bool was_installed,
                        enum page_result res)
{
    if (was_installed &&
        (res == PAGE_OK || res == PAGE_DO_INSTALL || res == PAGE_DO_REQUEST)) {
        __atomic_fetch_add(&race->violations, 1, __ATOMIC_RELAXED);
    }
}

static void hammer_write(struct race *race, uint64_t p, bool was, GRand *rand)
{
    enum page_result res = page_state_begin_write(race->t, 0, p);

    check_claim(race, was, res);
    if (res != PAGE_OK) {
        return;
    }
    if (g_rand_int_range(rand, 0, 8) == 0) {
        res = page_state_abort_write(race->t, 0, p);
    } else {
        res = page_state_finish_write(race->t, 0, p, g_rand_boolean(rand));
    }
    g_assert(res != PAGE_ILLEGAL && res != PAGE_BUSY);
    settle_held(race, p, res, rand);
}

static void hammer_install(struct race *race, uint64_t p, bool was, GRand *rand)
{
    unsigned from =
        g_rand_boolean(rand) ? PAGE_MASK_ALL : PAGE_MASK(PAGE_CURRENT);
    enum page_result res = page_state_begin_install(race->t, 0, p, from);

    check_claim(race, was, res);
    settle_held(race, p, res == PAGE_OK ? PAGE_DO_INSTALL : res, rand);
}

static void hammer_one(struct race *race, uint64_t p, GRand *rand)
{
    bool was = __atomic_load_n(&race->installed_seen[p], __ATOMIC_ACQUIRE);
    enum page_result res;

    switch (g_rand_int_range(rand, 0, 6)) {
    case 0:
        hammer_write(race, p, was, rand);
        break;
    case 1:
        hammer_install(race, p, was, rand);
        break;
    case 2:
        res = page_state_set_current(race->t, 0, p, g_rand_boolean(rand));
        check_claim(race, was, res);
        settle_held(race, p, res, rand);
        break;
    case 3:
        res = page_state_mark_stale(race->t, 0, p);
        if (was && res != PAGE_ILLEGAL) {
            __atomic_fetch_add(&race->violations, 1, __ATOMIC_RELAXED);
        }
        break;
    case 4:
        check_claim(race, was,
                    page_state_try_request(race->t, 0, p) ? PAGE_DO_REQUEST
                                                          : PAGE_SKIP);
        break;
    default:
        res = page_state_fault(race->t, 0, p);
        check_claim(race, was, res);
        settle_held(race, p, res, rand);
        break;
    }
    if (was && page_state_get(race->t, 0, p) != PAGE_INSTALLED) {
        __atomic_fetch_add(&race->violations, 1, __ATOMIC_RELAXED);
    }
}

static void *hammer_racer(void *opaque)
{
    struct racer *me = opaque;
    struct race *race = me->race;
    GRand *rand = g_rand_new_with_seed(1000 + me->id);

    pthread_barrier_wait(&race->start);
    for (unsigned i = 0; i < race->iterations; i++) {
        /* A small hot set so threads collide on the same pages. */
        hammer_one(race, g_rand_int_range(rand, 0, 64), rand);
    }
    g_rand_free(rand);
    return NULL;
}

static void test_race_installed_final(void)
{
    g_autofree struct race *race = g_new0(struct race, 1);

    race->t = table_one(64);
    race->iterations = g_test_slow() ? 2000000 : 200000;
    run_racers(race, hammer_racer);
    g_assert_cmpuint(race->violations, ==, 0);
    for (uint64_t p = 0; p < 64; p++) {
        bool installed = page_state_get(race->t, 0, p) == PAGE_INSTALLED;

        g_assert_cmpuint(race->installs[p], ==, installed ? 1 : 0);
        /* Nobody is left holding a page. */
        g_assert_cmpint(page_state_get(race->t, 0, p), !=, PAGE_WRITING);
        g_assert_cmpint(page_state_get(race->t, 0, p), !=, PAGE_INSTALLING);
    }
    g_assert_cmpuint(page_state_count(race->t, 0, PAGE_INSTALLED), >, 0);
    assert_counts(race->t);
    page_state_close(race->t);
}

struct run_race {
    struct page_state_table *t;
    pthread_barrier_t start;
    unsigned claimed[RACE_PAGES];
};

static void *run_claimer(void *opaque)
{
    struct run_race *rr = opaque;
    struct page_run run;
    uint64_t pos = 0;

    pthread_barrier_wait(&rr->start);
    while (
        page_state_claim_run(rr->t, 0, &pos, RACE_PAGES, PAGE_MASK_ALL, &run)) {
        for (uint64_t p = run.first; p < run.first + run.npages; p++) {
            __atomic_fetch_add(&rr->claimed[p], 1, __ATOMIC_RELAXED);
        }
        page_state_finish_run(rr->t, 0, &run);
    }
    return NULL;
}

static void test_race_claim_run(void)
{
    g_autofree struct run_race *rr = g_new0(struct run_race, 1);
    pthread_t th[NTHREADS];

    rr->t = table_one(RACE_PAGES);
    pthread_barrier_init(&rr->start, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        pthread_create(&th[i], NULL, run_claimer, rr);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&rr->start);
    for (unsigned p = 0; p < RACE_PAGES; p++) {
        g_assert_cmpuint(rr->claimed[p], ==, 1);
    }
    g_assert_true(page_state_all_installed(rr->t));
    assert_counts(rr->t);
    page_state_close(rr->t);
}

/* ---- the file ---- */

struct fixture {
    char *dir;
    char *path;
    struct page_state_layout layout;
};

static const uint64_t file_npages[] = {100, 37};

static void fixture_setup(struct fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    f->dir = g_dir_make_tmp("test_page_state-XXXXXX", &err);
    g_assert_no_error(err);
    f->path = g_build_filename(f->dir, "pages", NULL);
    layout_set(&f->layout, "mig-1", 2, file_npages);
    f->layout.regions[1].page_size = 2 << 20;
}

static void fixture_teardown(struct fixture *f, gconstpointer data)
{
    g_autoptr(GDir) d = g_dir_open(f->dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename(f->dir, name, NULL);

        g_unlink(p);
    }
    g_rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
}

static struct page_state_table *create_ok(struct fixture *f)
{
    g_autoptr(GError) err = NULL;
    struct page_state_table *t = page_state_create(f->path, &f->layout, &err);

    g_assert_no_error(err);
    g_assert_nonnull(t);
    return t;
}

static struct page_state_table *resume_ok(struct fixture *f,
                                          struct page_state_reload *rl)
{
    g_autoptr(GError) err = NULL;
    struct page_state_table *t =
        page_state_resume(f->path, &f->layout, rl, &err);

    g_assert_no_error(err);
    g_assert_nonnull(t);
    return t;
}

static void resume_fails(struct fixture *f, int code, const char *msg)
{
    g_autoptr(GError) err = NULL;
    struct page_state_table *t =
        page_state_resume(f->path, &f->layout, NULL, &err);

    g_assert_null(t);
    g_assert_error(err, G_IO_ERROR, code);
    if (strstr(err->message, msg) == NULL) {
        g_error("'%s' does not say '%s'", err->message, msg);
    }
}

/* Region 0 pages, and what each is left as when the daemon dies. */
enum {
    P_INSTALLED,
    P_CURRENT,
    P_ZERO,
    P_STALE,
    P_REQ_ABSENT,
    P_REQ_STALE,
    P_WRITING_CURRENT,
    P_WRITING_WANTED,
    P_INSTALLING,
    P_ABSENT,
};

static void leave_states(struct page_state_table *t)
{
    drive(t, 0, P_INSTALLED, PAGE_INSTALLED);
    drive(t, 0, P_CURRENT, PAGE_CURRENT);
    assert_result(page_state_set_current(t, 0, P_ZERO, true), PAGE_OK);
    drive(t, 0, P_STALE, PAGE_STALE);
    drive(t, 0, P_REQ_ABSENT, PAGE_REQUESTED);
    drive(t, 0, P_REQ_STALE, PAGE_STALE);
    g_assert_true(page_state_try_request(t, 0, P_REQ_STALE));
    drive(t, 0, P_WRITING_CURRENT, PAGE_CURRENT);
    assert_result(page_state_begin_write(t, 0, P_WRITING_CURRENT), PAGE_OK);
    drive(t, 0, P_WRITING_WANTED, PAGE_WRITING);
    assert_result(page_state_fault(t, 0, P_WRITING_WANTED), PAGE_WAIT);
    drive(t, 0, P_INSTALLING, PAGE_CURRENT);
    assert_result(page_state_fault(t, 0, P_INSTALLING), PAGE_DO_INSTALL);
    for (uint64_t p = 0; p < file_npages[1]; p += 2) {
        drive(t, 1, p, PAGE_INSTALLED);
    }
}

/* A daemon that sets states and dies without closing anything. */
static void crash_child(struct fixture *f)
{
    pid_t pid = fork();
    int status;

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        leave_states(create_ok(f));
        _exit(0);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_file_resume(struct fixture *f, gconstpointer data)
{
    struct page_state_reload rl;
    struct page_state_table *t;

    crash_child(f);
    t = resume_ok(f, &rl);
    g_assert_cmpuint(rl.requests_dropped, ==, 2);
    g_assert_cmpuint(rl.writes_torn, ==, 2);
    g_assert_cmpuint(rl.installs_uncertain, ==, 1);

    assert_state(t, 0, P_INSTALLED, PAGE_INSTALLED);
    assert_state(t, 0, P_CURRENT, PAGE_CURRENT);
    assert_state(t, 0, P_ZERO, PAGE_CURRENT);
    g_assert_true(page_state_is_zero(t, 0, P_ZERO));
    assert_state(t, 0, P_STALE, PAGE_STALE);
    assert_state(t, 0, P_REQ_ABSENT, PAGE_ABSENT);
    assert_state(t, 0, P_REQ_STALE, PAGE_STALE);
    assert_state(t, 0, P_WRITING_CURRENT, PAGE_ABSENT);
    assert_state(t, 0, P_WRITING_WANTED, PAGE_ABSENT);
    assert_state(t, 0, P_INSTALLING, PAGE_INSTALLING);
    for (uint64_t p = 0; p < file_npages[1]; p++) {
        assert_state(t, 1, p, p % 2 ? PAGE_ABSENT : PAGE_INSTALLED);
    }
    assert_counts(t);

    /* The dead requests are wanted: the new daemon asks for them first. */
    g_assert_false(page_state_is_wanted(t, 0, P_STALE));
    g_assert_false(page_state_is_wanted(t, 0, P_WRITING_CURRENT));
    g_assert_cmpuint(page_state_next(t, 0, 0, PAGE_MASK_ALL | PAGE_MASK_WANTED),
                     ==, P_REQ_ABSENT);
    g_assert_cmpuint(page_state_next(t, 0, P_REQ_ABSENT + 1,
                                     PAGE_MASK_ALL | PAGE_MASK_WANTED),
                     ==, P_REQ_STALE);
    g_assert_cmpuint(page_state_next(t, 0, P_REQ_STALE + 1,
                                     PAGE_MASK_ALL | PAGE_MASK_WANTED),
                     ==, P_WRITING_WANTED);
    g_assert_true(page_state_try_request(t, 0, P_REQ_ABSENT));

    /* The caller settles the uncertain install (here: not mapped). */
    g_assert_cmpuint(page_state_next(t, 0, 0, PAGE_MASK(PAGE_INSTALLING)), ==,
                     P_INSTALLING);
    assert_result(page_state_abort_install(t, 0, P_INSTALLING), PAGE_OK);
    assert_state(t, 0, P_INSTALLING, PAGE_CURRENT);

    /* Anonymous staging died with the daemon; zero pages need none. */
    g_assert_cmpuint(page_state_forget_copies(t, 0), ==, 4);
    assert_state(t, 0, P_CURRENT, PAGE_ABSENT);
    assert_state(t, 0, P_STALE, PAGE_ABSENT);
    assert_state(t, 0, P_ZERO, PAGE_CURRENT);
    assert_state(t, 0, P_INSTALLED, PAGE_INSTALLED);
    assert_counts(t);
    page_state_close(t);

    /* A clean close and a second resume change nothing. */
    t = resume_ok(f, &rl);
    g_assert_cmpuint(rl.requests_dropped, ==, 1);
    g_assert_cmpuint(rl.writes_torn + rl.installs_uncertain, ==, 0);
    assert_state(t, 0, P_INSTALLED, PAGE_INSTALLED);
    assert_state(t, 0, P_REQ_ABSENT, PAGE_ABSENT);
    assert_counts(t);
    page_state_close(t);
}

/*
 * A daemon that died with the copies unconfirmed: its successor cannot
 * know the last dirty set, so it trusts none of them; a confirmed table
 * reloads its copies as they are.
 */
static void test_file_unconfirmed(struct fixture *f, gconstpointer data)
{
    struct page_state_reload rl;
    struct page_state_table *t = create_ok(f);

    drive(t, 0, 0, PAGE_CURRENT);
    drive(t, 0, 1, PAGE_CURRENT);
    drive(t, 0, 2, PAGE_INSTALLED);
    drive(t, 0, 4, PAGE_CURRENT);
    page_state_copies_unconfirmed(t);
    page_state_close(t);

    t = resume_ok(f, &rl);
    g_assert_cmpuint(rl.copies_distrusted, ==, 3);
    g_assert_true(page_state_copies_confirmed(t));
    assert_state(t, 0, 0, PAGE_STALE);
    assert_state(t, 0, 1, PAGE_STALE);
    assert_state(t, 0, 2, PAGE_INSTALLED);
    assert_state(t, 0, 4, PAGE_STALE);
    drive(t, 0, 3, PAGE_CURRENT);
    assert_counts(t);
    page_state_close(t);

    t = resume_ok(f, &rl);
    g_assert_cmpuint(rl.copies_distrusted, ==, 0);
    assert_state(t, 0, 3, PAGE_CURRENT);

    /* A copy asked for while unconfirmed never goes back to CURRENT,
     * even once the rest is confirmed. */
    page_state_copies_unconfirmed(t);
    assert_result(page_state_fault(t, 0, 3), PAGE_DO_REQUEST);
    page_state_confirm_copies(t);
    page_state_close(t);
    t = resume_ok(f, &rl);
    g_assert_cmpuint(rl.requests_dropped, ==, 1);
    assert_state(t, 0, 3, PAGE_STALE);
    page_state_close(t);
}

static void test_file_locked(struct fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    struct page_state_table *t = create_ok(f);
    struct page_state_table *t2;
    int fds[2];
    char c;
    pid_t pid;

    resume_fails(f, G_IO_ERROR_BUSY, "in use by another process");
    drive(t, 0, 0, PAGE_INSTALLED);
    page_state_close(t);

    /* A live daemon in another process keeps it too. */
    g_assert_cmpint(pipe(fds), ==, 0);
    pid = fork();
    if (pid == 0) {
        t2 = page_state_resume(f->path, &f->layout, NULL, NULL);
        c = t2 ? 'y' : 'n';
        g_assert_cmpint(write(fds[1], &c, 1), ==, 1);
        pause();
        _exit(0);
    }
    g_assert_cmpint(read(fds[0], &c, 1), ==, 1);
    g_assert_cmpint(c, ==, 'y');
    resume_fails(f, G_IO_ERROR_BUSY, "in use");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fds[0]);
    close(fds[1]);
    t = page_state_resume(f->path, &f->layout, NULL, &err);
    g_assert_no_error(err);
    assert_state(t, 0, 0, PAGE_INSTALLED);
    page_state_close(t);
}

static void test_file_create_exists(struct fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GDir) d = NULL;
    struct page_state_table *t = create_ok(f);
    struct page_state_table *t2;
    int n = 0;

    page_state_close(t);
    t2 = page_state_create(f->path, &f->layout, &err);
    g_assert_null(t2);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS);
    g_assert_nonnull(strstr(err->message, "already exists"));
    /* No temporary file is left behind. */
    d = g_dir_open(f->dir, 0, NULL);
    while (g_dir_read_name(d)) {
        n++;
    }
    g_assert_cmpint(n, ==, 1);
}

static void test_file_missing(struct fixture *f, gconstpointer data)
{
    resume_fails(f, G_IO_ERROR_NOT_FOUND, "to resume");
}

static void test_file_mismatch(struct fixture *f, gconstpointer data)
{
    struct page_state_layout saved = f->layout;

    page_state_close(create_ok(f));
    g_strlcpy(f->layout.migration_id, "mig-2", PAGE_STATE_ID_MAX);
    resume_fails(f, G_IO_ERROR_INVALID_ARGUMENT,
                 "belongs to migration 'mig-1', not 'mig-2'");
    f->layout = saved;
    f->layout.nregions = 1;
    resume_fails(f, G_IO_ERROR_INVALID_ARGUMENT, "has 2 regions, the VM has 1");
    f->layout = saved;
    f->layout.regions[1].npages++;
    resume_fails(f, G_IO_ERROR_INVALID_ARGUMENT,
                 "region 1 has 37 pages of 2097152 bytes, the VM's has 38");
    f->layout = saved;
    f->layout.regions[0].page_size = 2 << 20;
    resume_fails(f, G_IO_ERROR_INVALID_ARGUMENT, "region 0 has 100 pages");
    f->layout = saved;
    page_state_close(resume_ok(f, NULL));
}

static void poke(struct fixture *f, off_t off, const void *buf, size_t len)
{
    int fd = open(f->path, O_WRONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, buf, len, off), ==, (ssize_t)len);
    close(fd);
}

static void restore(struct fixture *f, const char *orig, gsize len)
{
    g_autoptr(GError) err = NULL;

    g_file_set_contents(f->path, orig, len, &err);
    g_assert_no_error(err);
    page_state_close(resume_ok(f, NULL));
}

static void test_file_corrupt(struct fixture *f, gconstpointer data)
{
    g_autofree char *orig = NULL;
    uint32_t version = 99;
    uint8_t bad = 0x0f; /* REMOVED with a prior */
    gsize len;

    page_state_close(create_ok(f));
    g_assert_true(g_file_get_contents(f->path, &orig, &len, NULL));

    /* A state byte no table can hold. */
    poke(f, len - 1, &bad, 1);
    resume_fails(f, G_IO_ERROR_INVALID_DATA,
                 "region 1 page 36 has invalid state 0x0f");
    bad = 0x80 | PAGE_CURRENT; /* re-dirtied, yet not being written */
    poke(f, len - 1, &bad, 1);
    resume_fails(f, G_IO_ERROR_INVALID_DATA, "invalid state 0x81");
    restore(f, orig, len);

    g_assert_cmpint(truncate(f->path, len - 1), ==, 0);
    resume_fails(f, G_IO_ERROR_INVALID_DATA, "is truncated");
    g_assert_cmpint(truncate(f->path, 100), ==, 0);
    resume_fails(f, G_IO_ERROR_INVALID_DATA, "shorter than its header");
    restore(f, orig, len);

    /* A control byte in the id would go into log lines (found by fuzzing). */
    poke(f, offsetof(struct file_header, migration_id) + 1, "\n", 1);
    resume_fails(f, G_IO_ERROR_INVALID_DATA, "has a corrupt header");
    restore(f, orig, len);

    poke(f, 8, &version, sizeof(version));
    resume_fails(f, G_IO_ERROR_INVALID_DATA, "format version 99");
    poke(f, 0, "garbage!", 8);
    resume_fails(f, G_IO_ERROR_INVALID_DATA,
                 "not a postcopyd page state file (bad magic)");
    restore(f, orig, len);
}

static void test_layout(void)
{
    g_autoptr(GError) err = NULL;
    struct page_state_layout l;
    struct region_table rt;
    struct region r = {
        .kind = BACKING_ANON,
        .page_size = 4096,
        .fd = -1,
    };
    struct page_state_table *t;
    const uint64_t npages[] = {1};

    region_table_init(&rt);
    r.base = 0x100000;
    r.size = 16 * 4096;
    g_assert_true(region_table_add(&rt, &r, &err));
    r.base = 0x400000;
    r.size = 3 * 4096;
    g_assert_true(region_table_add(&rt, &r, &err));
    g_assert_true(page_state_layout_init(&l, "vm-7", &rt, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(l.migration_id, ==, "vm-7");
    g_assert_cmpuint(l.nregions, ==, 2);
    g_assert_cmpuint(l.regions[0].npages, ==, 16);
    g_assert_cmpuint(l.regions[1].npages, ==, 3);
    t = page_state_create(NULL, &l, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(page_state_npages(t, 1), ==, 3);
    g_assert_cmpuint(page_state_total(t, PAGE_ABSENT), ==, 19);
    page_state_close(t);

    g_assert_false(page_state_layout_init(
        &l, "0123456789012345678901234567890123456789012345678901234567890123",
        &rt, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);

    layout_set(&l, "x", 0, npages);
    g_assert_null(page_state_create(NULL, &l, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);
    layout_set(&l, "x", 1, npages);
    l.regions[0].page_size = 3000;
    g_assert_null(page_state_create(NULL, &l, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);
    layout_set(&l, "", 1, npages);
    g_assert_null(page_state_create(NULL, &l, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    region_table_clear(&rt);
}

static void add_file_test(const char *path,
                          void (*fn)(struct fixture *, gconstpointer))
{
    g_test_add(path, struct fixture, NULL, fixture_setup, fn, fixture_teardown);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/page-state/names", test_names);
    g_test_add_func("/page-state/transitions", test_transitions);
    g_test_add_func("/page-state/installed-is-final", test_installed_is_final);
    g_test_add_func("/page-state/removed-while-held", test_removed_while_held);
    g_test_add_func("/page-state/write/requested-installs",
                    test_write_for_requested_installs);
    g_test_add_func("/page-state/write/fault-during-write",
                    test_fault_during_write);
    g_test_add_func("/page-state/write/redirtied",
                    test_redirtied_while_written);
    g_test_add_func("/page-state/write/abort", test_abort_write);
    g_test_add_func("/page-state/install/abort", test_abort_install);
    g_test_add_func("/page-state/zero-hint", test_zero_hint);
    g_test_add_func("/page-state/claim-run", test_claim_run);
    g_test_add_func("/page-state/mark-stale-run", test_mark_stale_run);
    g_test_add_func("/page-state/unconfirmed", test_unconfirmed);
    g_test_add_func("/page-state/next", test_next);
    g_test_add_func("/page-state/counters/random", test_counters_random);
    g_test_add_func("/page-state/counters/all-installed", test_all_installed);
    g_test_add_func("/page-state/race/request", test_race_request);
    g_test_add_func("/page-state/race/installed-is-final",
                    test_race_installed_final);
    g_test_add_func("/page-state/race/claim-run", test_race_claim_run);
    add_file_test("/page-state/file/resume", test_file_resume);
    add_file_test("/page-state/file/unconfirmed", test_file_unconfirmed);
    add_file_test("/page-state/file/locked", test_file_locked);
    add_file_test("/page-state/file/create-exists", test_file_create_exists);
    add_file_test("/page-state/file/missing", test_file_missing);
    add_file_test("/page-state/file/mismatch", test_file_mismatch);
    add_file_test("/page-state/file/corrupt", test_file_corrupt);
    g_test_add_func("/page-state/layout", test_layout);
    return g_test_run();
}
