/* swap_area.c - see swap_area.h. */
#include "swap_area.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/swap.h>
#include <sys/wait.h>
#include <unistd.h>

#define SWAP_PAGE 4096u

/*
 * The version-1 header mkswap writes: after 1024 bytes of boot block, the
 * version, the last page and no bad pages; the signature ends the first
 * page.  Written here to need no mkswap.
 */
static bool write_swap_file(int fd, uint64_t bytes)
{
    static const uint8_t zeros[SWAP_PAGE];
    uint32_t hdr[3] = {1, (uint32_t)(bytes / SWAP_PAGE - 1), 0};

    for (uint64_t off = 0; off < bytes; off += SWAP_PAGE) {
        if (pwrite(fd, zeros, SWAP_PAGE, (off_t)off) != SWAP_PAGE) {
            return false;
        }
    }
    return pwrite(fd, hdr, sizeof(hdr), 1024) == sizeof(hdr) &&
           pwrite(fd, "SWAPSPACE2", 10, SWAP_PAGE - 10) == 10 && fsync(fd) == 0;
}

static bool try_dir(struct swap_area *s, const char *dir, uint64_t bytes,
                    GString *why)
{
    g_autofree char *path =
        g_strdup_printf("%s/postcopyd-test-swap-%d", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    bool ok;

    if (fd < 0) {
        g_string_append_printf(why, "%s: %s; ", path, g_strerror(errno));
        return false;
    }
    ok = write_swap_file(fd, bytes);
    close(fd);
    if (!ok || swapon(path, 0) != 0) {
        g_string_append_printf(why, "swapon %s: %s; ", path, g_strerror(errno));
        unlink(path);
        return false;
    }
    s->path = g_steal_pointer(&path);
    return true;
}

bool swap_area_on(struct swap_area *s, uint64_t bytes, char **why)
{
    const char *dirs[] = {g_get_tmp_dir(), "/var/tmp"};
    g_autoptr(GString) w = g_string_new(NULL);

    s->path = NULL;
    for (size_t i = 0; i < G_N_ELEMENTS(dirs); i++) {
        if (try_dir(s, dirs[i], bytes, w)) {
            return true;
        }
    }
    *why = g_strdup_printf("no swap area could be switched on: %s", w->str);
    return false;
}

void swap_area_off(struct swap_area *s)
{
    if (!s->path) {
        return;
    }
    if (swapoff(s->path) != 0) {
        g_printerr("swapoff %s: %s\n", s->path, g_strerror(errno));
    }
    unlink(s->path);
    g_clear_pointer(&s->path, g_free);
}

static bool write_file(const char *path, const char *value)
{
    return g_file_set_contents_full(path, value, -1, G_FILE_SET_CONTENTS_NONE,
                                    0644, NULL);
}

/* A new memory cgroup limited to @limit: its directory and its procs file. */
static char *make_cgroup(uint64_t limit, char **procs, GString *why)
{
    static const struct {
        const char *root, *limit_file;
    } kinds[] = {
        {"/sys/fs/cgroup/memory", "memory.limit_in_bytes"}, /* v1 */
        {"/sys/fs/cgroup", "memory.max"},                   /* v2 */
    };
    g_autofree char *value = g_strdup_printf("%" G_GUINT64_FORMAT, limit);

    for (size_t i = 0; i < G_N_ELEMENTS(kinds); i++) {
        g_autofree char *dir = g_strdup_printf("%s/postcopyd-test-%d",
                                               kinds[i].root, (int)getpid());
        g_autofree char *lim = g_build_filename(dir, kinds[i].limit_file, NULL);

        if (g_mkdir(dir, 0755) != 0) {
            g_string_append_printf(why, "%s: %s; ", dir, g_strerror(errno));
            continue;
        }
        if (!write_file(lim, value)) {
            g_string_append_printf(why, "%s: cannot write; ", lim);
            g_rmdir(dir);
            continue;
        }
        *procs = g_build_filename(dir, "cgroup.procs", NULL);
        return g_steal_pointer(&dir);
    }
    return NULL;
}

bool swap_area_run_small(uint64_t limit, void (*fn)(void *), void *arg,
                         char **why)
{
    g_autoptr(GString) w = g_string_new(NULL);
    g_autofree char *procs = NULL;
    g_autofree char *dir = make_cgroup(limit, &procs, w);
    int status = 0;
    pid_t pid;

    if (!dir) {
        *why = g_strdup_printf("no memory cgroup: %s", w->str);
        return false;
    }
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        g_autofree char *self = g_strdup_printf("%d", (int)getpid());

        if (!write_file(procs, self)) {
            _exit(2);
        }
        fn(arg);
        _exit(0);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    if (g_rmdir(dir) != 0) {
        g_printerr("rmdir %s: %s\n", dir, g_strerror(errno));
    }
    return true;
}
