/*
 * dirty_soft.c - soft-dirty tracking: clear_refs "4" and pagemap bit 55,
 * the process stopped from the read to the clear since a write between
 * them would be cleared unseen.  For kernels with neither uffd-wp method.
 */
#include "dirty_tracker_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <gio/gio.h>

#define FREEZE_WAIT_US (5 * G_USEC_PER_SEC)
#define FREEZE_POLL_US 100

static bool read_pagemap_entry(int fd, uint64_t addr, uint64_t *entry)
{
    off_t off = addr / (uint64_t)getpagesize() * PM_ENTRY_SIZE;

    return pread(fd, entry, sizeof(*entry), off) == sizeof(*entry);
}

/*
 * Write a page, clear our own soft-dirty bits, write it again: the bit
 * comes back only where the kernel tracks soft-dirty at all.  Clearing
 * the daemon's own bits costs it a few minor faults, nothing else.
 */
bool dirty_soft_works(void)
{
    long psz = getpagesize();
    int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    volatile char *p = MAP_FAILED;
    uint64_t entry = 0;
    bool ok = false;

    if (pm < 0 || cr < 0) {
        goto out;
    }
    p = mmap(NULL, psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
             0);
    if (p == MAP_FAILED) {
        goto out;
    }
    p[0] = 1;
    if (write(cr, "4", 1) != 1) {
        goto out;
    }
    p[0] = 2;
    ok =
        read_pagemap_entry(pm, (uintptr_t)p, &entry) && (entry & PM_SOFT_DIRTY);
out:
    if (p != MAP_FAILED) {
        munmap((void *)p, psz);
    }
    if (pm >= 0) {
        close(pm);
    }
    if (cr >= 0) {
        close(cr);
    }
    return ok;
}

static char task_state(const char *stat_path)
{
    g_autofree char *text = NULL;
    const char *p;

    if (!g_file_get_contents(stat_path, &text, NULL, NULL)) {
        return 'X'; /* the thread is gone */
    }
    p = strrchr(text, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

static bool state_is_stopped(char s)
{
    return s == 'T' || s == 't' || s == 'Z' || s == 'X';
}

static bool all_threads_stopped(pid_t pid)
{
    g_autofree char *dir_path = g_strdup_printf("/proc/%d/task", (int)pid);
    DIR *dir = opendir(dir_path);
    struct dirent *de;
    bool stopped = true;

    if (!dir) {
        return true; /* the process is gone: nothing writes */
    }
    while (stopped && (de = readdir(dir))) {
        g_autofree char *stat = NULL;

        if (de->d_name[0] == '.') {
            continue;
        }
        stat = g_strdup_printf("%s/%s/stat", dir_path, de->d_name);
        stopped = state_is_stopped(task_state(stat));
    }
    closedir(dir);
    return stopped;
}

/*
 * SIGSTOP @pid and wait until no thread runs.  *@stopped says whether we
 * stopped it (a process stopped by someone else is left as it is).
 */
static bool process_freeze(pid_t pid, bool *stopped, GError **err)
{
    g_autofree char *stat = g_strdup_printf("/proc/%d/stat", (int)pid);
    gint64 deadline = g_get_monotonic_time() + FREEZE_WAIT_US;

    *stopped = false;
    if (state_is_stopped(task_state(stat)) && all_threads_stopped(pid)) {
        return true;
    }
    if (kill(pid, SIGSTOP) < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "soft-dirty: SIGSTOP %d: %s", (int)pid, g_strerror(errno));
        return false;
    }
    *stopped = true;
    while (!all_threads_stopped(pid)) {
        if (g_get_monotonic_time() > deadline) {
            kill(pid, SIGCONT);
            *stopped = false;
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                        "soft-dirty: process %d did not stop within %d s",
                        (int)pid, (int)(FREEZE_WAIT_US / G_USEC_PER_SEC));
            return false;
        }
        g_usleep(FREEZE_POLL_US);
    }
    return true;
}

/* Soft-dirty bits of @r's pages into its collected set. */
static bool soft_dirty_read(struct dirty_tracker *dt, struct dirty_range *r,
                            GError **err)
{
    uint64_t psz = getpagesize();
    uint64_t per_page = r->page_size / psz;
    uint64_t total = r->size / psz;
    uint64_t buf[PM_READ_ENTRIES];

    for (uint64_t i = 0; i < total; i += PM_READ_ENTRIES) {
        uint64_t n = MIN(total - i, PM_READ_ENTRIES);
        off_t off = (r->base / psz + i) * PM_ENTRY_SIZE;
        ssize_t got = pread(dt->pagemap_fd, buf, n * PM_ENTRY_SIZE, off);

        if (got != (ssize_t)(n * PM_ENTRY_SIZE)) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                        "soft-dirty: read /proc/%d/pagemap: %s", (int)dt->pid,
                        got < 0 ? g_strerror(errno) : "short read");
            return false;
        }
        for (uint64_t j = 0; j < n; j++) {
            if (buf[j] & PM_SOFT_DIRTY) {
                bitmap_set(r->collected, (i + j) / per_page, 1);
                dt->stats.pages_reported++;
            }
        }
    }
    return true;
}

/*
 * Read the first @nranges ranges, then clear the whole process.  A write
 * between the two would be cleared unseen, hence the freeze.
 */
bool dirty_soft_collect(struct dirty_tracker *dt, size_t nranges, GError **err)
{
    bool stopped = false;
    bool ok = false;

    if (dt->freeze) {
        if (!process_freeze(dt->pid, &stopped, err)) {
            return false;
        }
        dt->stats.freezes += stopped;
    }
    for (size_t i = 0; i < nranges; i++) {
        if (!soft_dirty_read(dt, &dt->ranges[i], err)) {
            goto out;
        }
    }
    if (pwrite(dt->clear_refs_fd, "4", 1, 0) != 1) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "soft-dirty: write /proc/%d/clear_refs: %s", (int)dt->pid,
                    g_strerror(errno));
        goto out;
    }
    ok = true;
out:
    if (stopped) {
        kill(dt->pid, SIGCONT);
    }
    return ok;
}
