/*
 * uffd_take.c - uffd_inject_take_existing() (uffd_inject.h): a restarted
 * daemon takes back the userfaultfd a migration left inside the VMM.
 */
#include "uffd_inject.h"

#include <stdlib.h>
#include <string.h>
#include <gio/gio.h>

/* The fd numbers of VMM @pid's userfaultfds; -1 with @err if unreadable. */
static int find_uffds(pid_t pid, int *fds, int max, GError **err)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/fd", (int)pid);
    g_autoptr(GDir) d = g_dir_open(dir, 0, err);
    const char *name;
    int n = 0;

    if (!d) {
        return -1;
    }
    while ((name = g_dir_read_name(d))) {
        g_autofree char *link = g_strdup_printf("%s/%s", dir, name);
        g_autofree char *target = g_file_read_link(link, NULL);

        if (target && !strcmp(target, "anon_inode:[userfaultfd]")) {
            if (n < max) {
                fds[n] = atoi(name);
            }
            n++;
        }
    }
    return n;
}

bool uffd_inject_take_existing(pid_t pid, int *vmm_fd, int *our_fd,
                               GError **err)
{
    int fds[2];
    int n = find_uffds(pid, fds, G_N_ELEMENTS(fds), err);

    if (n < 0) {
        return false;
    }
    if (n != 1) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "VMM pid %d holds %d userfaultfds, not the one a "
                    "migration left there",
                    (int)pid, n);
        return false;
    }
    *our_fd = uffd_inject_copy_fd(pid, fds[0], err);
    if (*our_fd < 0) {
        return false;
    }
    *vmm_fd = fds[0];
    return true;
}
