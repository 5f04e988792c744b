/*
 * test_proc_ram.c - the /proc/PID/maps line parser of daemon/vmm/proc_ram.h
 * on literal lines shaped like a QEMU's (no /proc access here).
 */
#include <string.h>
#include <glib.h>

#include "proc_ram.h"

static struct maps_entry parse_ok(const char *line)
{
    struct maps_entry e;

    g_assert_true(proc_maps_parse_line(line, &e));
    return e;
}

static void test_memfd(void)
{
    struct maps_entry e =
        parse_ok("7f3a40000000-7f3a80000000 rw-s 00000000 00:01 2073    "
                 "                   /memfd:memory-backend-memfd (deleted)");

    g_assert_cmphex(e.start, ==, 0x7f3a40000000ull);
    g_assert_cmphex(e.end, ==, 0x7f3a80000000ull);
    g_assert_cmphex(e.offset, ==, 0);
    g_assert_cmpstr(e.perms, ==, "rw-s");
    g_assert_true(e.shared);
    g_assert_true(e.deleted);
    g_assert_cmpuint(e.dev_major, ==, 0);
    g_assert_cmpuint(e.dev_minor, ==, 1);
    g_assert_cmpuint(e.inode, ==, 2073);
    g_assert_cmpstr(e.path, ==, "/memfd:memory-backend-memfd");
    g_assert_true(proc_maps_is_shared_file(&e));
}

static void test_dev_shm(void)
{
    struct maps_entry e = parse_ok("7f0000001000-7f0000101000 rw-s 00200000 "
                                   "00:1a 345 /dev/shm/guest-ram\n");

    g_assert_cmphex(e.offset, ==, 0x200000);
    g_assert_cmpuint(e.dev_minor, ==, 0x1a);
    g_assert_false(e.deleted);
    g_assert_cmpstr(e.path, ==, "/dev/shm/guest-ram");
    g_assert_true(proc_maps_is_shared_file(&e));
}

static void test_hugetlbfs(void)
{
    struct maps_entry e = parse_ok("7f2a00000000-7f2a40000000 rw-s 00000000 "
                                   "00:10 1 /dev/hugepages/qemu_back_mem.ram0 "
                                   "(deleted)");

    g_assert_cmpstr(e.path, ==, "/dev/hugepages/qemu_back_mem.ram0");
    g_assert_true(e.deleted);
    g_assert_true(proc_maps_is_shared_file(&e));
}

static void test_anonymous(void)
{
    struct maps_entry e =
        parse_ok("7f1c00000000-7f1c40000000 rw-p 00000000 00:00 0 ");

    g_assert_false(e.shared);
    g_assert_cmpstr(e.path, ==, "");
    g_assert_false(proc_maps_is_shared_file(&e));

    /* Shared anonymous memory shows as /dev/zero: shared and a path. */
    e = parse_ok("7f1c00000000-7f1c00001000 rw-s 00000000 00:01 7 "
                 "/dev/zero (deleted)");
    g_assert_true(e.shared);
    g_assert_cmpstr(e.path, ==, "/dev/zero");

    e = parse_ok("7ffc12345000-7ffc12366000 rw-p 00000000 00:00 0     "
                 "                     [stack]");
    g_assert_cmpstr(e.path, ==, "[stack]");
    g_assert_false(proc_maps_is_shared_file(&e));
}

static void test_private_file(void)
{
    struct maps_entry e = parse_ok("55d0c8a00000-55d0c8c00000 r-xp 00001000 "
                                   "08:01 1311 /usr/bin/qemu-system-x86_64");

    g_assert_false(e.shared);
    g_assert_cmpstr(e.perms, ==, "r-xp");
    g_assert_cmpuint(e.dev_major, ==, 8);
    g_assert_false(proc_maps_is_shared_file(&e));
}

static void test_spaces_and_deleted(void)
{
    struct maps_entry e = parse_ok("7f0000000000-7f0000100000 rw-s 00000000 "
                                   "00:1a 99 /dev/shm/my guest  ram (deleted)");

    g_assert_cmpstr(e.path, ==, "/dev/shm/my guest  ram");
    g_assert_true(e.deleted);

    /* "(deleted)" inside a name is not the kernel's suffix. */
    e = parse_ok("7f0000000000-7f0000100000 rw-s 00000000 00:1a 99 "
                 "/dev/shm/(deleted) x");
    g_assert_cmpstr(e.path, ==, "/dev/shm/(deleted) x");
    g_assert_false(e.deleted);
}

static void test_malformed(void)
{
    struct maps_entry e;
    g_autofree char *longpath = NULL;
    g_autofree char *line = NULL;

    g_assert_false(proc_maps_parse_line("", &e));
    g_assert_false(proc_maps_parse_line("7f00-7f10 rw-s", &e));
    g_assert_false(
        proc_maps_parse_line("7f10-7f00 rw-s 00000000 00:01 1 /x", &e));
    g_assert_false(proc_maps_parse_line("garbage line here", &e));

    longpath = g_strnfill(PROC_MAPS_PATH_MAX, 'a');
    line = g_strdup_printf("1000-2000 rw-s 0 00:01 1 /%s", longpath);
    g_assert_false(proc_maps_parse_line(line, &e));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/proc_ram/parse/memfd", test_memfd);
    g_test_add_func("/proc_ram/parse/dev-shm", test_dev_shm);
    g_test_add_func("/proc_ram/parse/hugetlbfs", test_hugetlbfs);
    g_test_add_func("/proc_ram/parse/anonymous", test_anonymous);
    g_test_add_func("/proc_ram/parse/private-file", test_private_file);
    g_test_add_func("/proc_ram/parse/spaces-deleted", test_spaces_and_deleted);
    g_test_add_func("/proc_ram/parse/malformed", test_malformed);
    return g_test_run();
}
