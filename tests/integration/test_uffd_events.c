/*
 * test_uffd_events.c - a destination VMM that drops part of its guest RAM
 * during postcopy (issue 13 item 12), with two real postcopyd daemons on
 * loopback and real postcopy-guest VMs over real userfaultfd.
 *
 * The incoming guest resumes, reads the first half of a range (those
 * pages arrive), then drops the whole range (`--drop`: MADV_DONTNEED on
 * anonymous RAM, MADV_REMOVE on shmem and hugetlbfs, munmap and a fresh
 * mapping in its place), and checks every page: the dropped ones must
 * read zero, all others must hold the source's data.  The destination
 * must neither serve a dropped page stale data nor leave a fault on one
 * unresolved, and the migration must complete.  With no background
 * stream, the other half of the range was never asked for when it was
 * dropped; with it (paced, so that it still runs), drops race with
 * pages in flight.
 *
 * At the source, the guest drops the range (on SIGUSR1) while precopy
 * runs: its digests are taken at the pause, so the destination must match
 * them, zeroes and all, and the migration must complete.  A zapped
 * anonymous page shows as written to the dirty tracker; a punched shmem or
 * hugetlbfs page only as absent from the VMM's page table, which the
 * source checks against what it sent as data (source/ram_drops.h).
 *
 * Each case starts its own daemons and guests.  Assertions are non-fatal.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon_proc.h"
#include "guest_proc.h"
#include "testlib.h"
#include "uffd.h"

#define VM_NAME   "ev"
#define POLL_MS   50
#define START_MS  30000
#define VERIFY_MS 60000 /* a fault nobody resolves shows as a timeout */
/* The background stream paced to ~4 s for 64 MiB: still running at the drop. */
#define BULK_PACE ", \"max-bandwidth\": 16777216"

struct drop_case {
    const char *name;
    const char *backing;
    const char *size;
    uint64_t npages;
    const char *drop; /* --drop */
    bool bulk;        /* the postcopy background stream runs */
    bool at_source;   /* the source drops, in precopy */
};

struct pair {
    struct daemon_proc src, dst;
    struct daemon_guest out, in;
};

static bool can_run(const struct drop_case *c)
{
    g_autoptr(GError) err = NULL;
    int fd = uffd_open(&err);

    if (fd < 0) {
        g_autofree char *why =
            g_strdup_printf("no userfaultfd here: %s", err->message);

        g_test_skip(why);
        return false;
    }
    close(fd);
    /* Two guests of 32 huge pages each. */
    return strcmp(c->backing, "hugetlbfs") || hugetlb_ready(2 * c->npages + 2);
}

static bool pair_up(struct pair *p, const struct drop_case *c)
{
    /* --drop goes to one of them: a NULL before it ends the other's list. */
    const char *const out_args[] = {"--backing", c->backing,
                                    "--size",    c->size,
                                    "--verify",  "--workload",
                                    "random",    "--dirty-rate",
                                    "64",        c->at_source ? "--drop" : NULL,
                                    c->drop,     NULL};
    const char *const in_args[] = {"--backing",
                                   c->backing,
                                   "--size",
                                   c->size,
                                   "--incoming",
                                   "--verify",
                                   c->at_source ? NULL : "--drop",
                                   c->drop,
                                   NULL};
    g_autofree char *why = NULL;

    if (!daemon_proc_start(&p->dst, "dst", &why) ||
        !daemon_proc_start(&p->src, "src", &why) ||
        !daemon_guest_spawn(&p->in, &p->dst, VM_NAME, in_args, &why) ||
        !daemon_guest_spawn(&p->out, &p->src, VM_NAME, out_args, &why)) {
        g_test_fail_printf("set-up: %s", why);
        return false;
    }
    return true;
}

static void pair_down(struct pair *p)
{
    if (g_test_failed()) {
        daemon_proc_dump_log(&p->src, "src", 30);
        daemon_proc_dump_log(&p->dst, "dst", 30);
    }
    daemon_guest_stop(&p->out);
    daemon_guest_stop(&p->in);
    daemon_proc_stop(&p->src);
    daemon_proc_stop(&p->dst);
}

static bool execute_ok(struct daemon_proc *dp, const char *cmd,
                       const char *args)
{
    g_autofree char *why = NULL;
    g_autoptr(JsonObject) r = daemon_proc_execute(dp, cmd, args, &why);

    if (!r || !json_object_has_member(r, "return")) {
        g_test_fail_printf("%s was refused: %s", cmd,
                           why ? why : daemon_proc_error_desc(r));
        return false;
    }
    return true;
}

/*
 * Precopy that has already converged after the drop is as good as
 * postcopy for the drop's sake: a round in which the guest wrote nothing
 * (a stall of the machine running the test) ends it even with
 * downtime-limit 0.
 */
static bool start_postcopy_or_converged(struct pair *p)
{
    g_autofree char *why = NULL;
    g_autoptr(JsonObject) r = daemon_proc_execute(
        &p->src, "migrate-start-postcopy", "{\"vm\": \"" VM_NAME "\"}", &why);
    g_autofree char *st = NULL;

    if (r && json_object_has_member(r, "return")) {
        return true;
    }
    st = daemon_proc_wait_status(&p->src, VM_NAME, "completed|failed", 10000);
    if (g_strcmp0(st, "completed") == 0) {
        g_test_message("precopy converged after the drop, before postcopy");
        return true;
    }
    g_test_fail_printf("migrate-start-postcopy was refused: %s (status %s)",
                       why ? why : daemon_proc_error_desc(r), st);
    return false;
}

/*
 * Postcopy only; or, when the source drops, precopy rounds that do not
 * end by themselves until the drop is done, then postcopy.
 */
static bool migrate(struct pair *p, const struct drop_case *c)
{
    g_autofree char *args = g_strdup_printf(
        "{\"vm\": \"" VM_NAME "\", \"uri\": \"%s\", \"mode\": \"%s\", "
        "\"postcopy-bulk\": \"%s\"%s}",
        p->dst.address, c->at_source ? "precopy" : "postcopy",
        c->bulk ? "on" : "off",
        c->at_source ? ", \"downtime-limit\": 0, \"max-rounds\": 1000000, "
                       "\"max-precopy-time\": 600000"
        : c->bulk    ? BULK_PACE
                     : "");
    g_autofree char *st = NULL;
    g_autofree char *line = NULL;

    if (!execute_ok(&p->src, "migrate", args)) {
        return false;
    }
    if (!c->at_source) {
        return true;
    }
    st = daemon_proc_wait_status(&p->src, VM_NAME, "active|failed", START_MS);
    g_assert_cmpstr(st, ==, "active");
    g_usleep(300 * 1000); /* a round or so before the drop */
    kill(p->out.pid, SIGUSR1);
    line = daemon_guest_wait_line(&p->out, "dropped pages", START_MS);
    if (!line) {
        g_autofree char *how = daemon_guest_describe(&p->out);

        g_test_fail_printf("the source guest did not drop its pages: %s; "
                           "%ld huge pages free and unreserved",
                           how, testlib_hugetlb_unreserved());
        return false;
    }
    g_free(st);
    st = daemon_proc_migrate_field(&p->src, VM_NAME, "status");
    g_assert_cmpstr(st, ==, "active"); /* the drop came during precopy */
    g_usleep(500 * 1000);              /* and rounds after it */
    return start_postcopy_or_converged(p);
}

/* Every page checked, none wrong: dropped ones read zero. */
static void assert_verified(struct pair *p, const struct drop_case *c,
                            uint64_t pages)
{
    struct daemon_guest *dropper = c->at_source ? &p->out : &p->in;
    g_autofree char *dropped =
        daemon_guest_wait_line(dropper, "dropped pages", START_MS);
    g_autofree char *line =
        daemon_guest_wait_line(&p->in, "pages checked", VERIFY_MS);
    guint64 checked = 0, mismatches = 1;

    g_assert_nonnull(dropped);
    g_assert_nonnull(line);
    if (!line) {
        return;
    }
    g_test_message("incoming guest: %s / %s", dropped, line);
    g_assert_cmpint(sscanf(line,
                           "verify: %" G_GUINT64_FORMAT
                           " pages checked, %" G_GUINT64_FORMAT " mismatches",
                           &checked, &mismatches),
                    ==, 2);
    g_assert_cmpuint(checked, ==, pages);
    g_assert_cmpuint(mismatches, ==, 0);
}

static void test_drop(gconstpointer data)
{
    const struct drop_case *c = data;
    struct pair p = {0};
    g_autofree char *st = NULL;
    g_autofree char *dst_st = NULL;

    if (!can_run(c) || !pair_up(&p, c) || !migrate(&p, c)) {
        goto out;
    }
    assert_verified(&p, c, c->npages);
    st = daemon_proc_wait_status(&p.src, VM_NAME, "completed|failed|cancelled",
                                 START_MS);
    g_assert_cmpstr(st, ==, "completed");
    dst_st =
        daemon_proc_wait_status(&p.dst, VM_NAME, "completed|failed", 10000);
    g_assert_cmpstr(dst_st, ==, "completed");
    g_assert_true(daemon_guest_alive(&p.in));
    g_assert_true(daemon_proc_alive(&p.dst));
out:
    pair_down(&p);
}

#define MIB64_4K (64ULL << 20) / 4096
#define MIB64_2M (64ULL << 20) / (2ULL << 20)

static const struct drop_case cases[] = {
    {"anon/dontneed", "anon", "64M", MIB64_4K, "dontneed:1000:2000", false,
     false},
    {"anon/dontneed/bulk", "anon", "64M", MIB64_4K, "dontneed:1000:8000", true,
     false},
    {"anon/unmap", "anon", "64M", MIB64_4K, "unmap:5000:1000", false, false},
    {"shmem/remove", "shmem", "64M", MIB64_4K, "remove:1000:2000", false,
     false},
    {"shmem/remove/bulk", "shmem", "64M", MIB64_4K, "remove:1000:8000", true,
     false},
    {"hugetlbfs/remove", "hugetlbfs", "64M", MIB64_2M, "remove:4:8", false,
     false},
    {"source/anon/dontneed", "anon", "64M", MIB64_4K, "dontneed:1000:2000",
     true, true},
    {"source/shmem/remove", "shmem", "64M", MIB64_4K, "remove:1000:2000", true,
     true},
    {"source/hugetlbfs/remove", "hugetlbfs", "64M", MIB64_2M, "remove:4:8",
     true, true},
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_set_nonfatal_assertions();
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path =
            g_strdup_printf("/uffd-events/drop/%s", cases[i].name);

        g_test_add_data_func(path, &cases[i], test_drop);
    }
    return g_test_run();
}
