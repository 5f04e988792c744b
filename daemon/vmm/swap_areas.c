/* swap_areas.c - see swap_areas.h. */
#include "swap_areas.h"

#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

/*
 * Opened once: the check runs per megabyte sent, and an open() and a
 * close() would triple its syscalls.  A seq_file reads afresh at offset 0.
 */
static int swaps_fd(void)
{
    static gsize fd_once;

    if (g_once_init_enter(&fd_once)) {
        int fd = open("/proc/swaps", O_RDONLY | O_CLOEXEC);

        g_once_init_leave(&fd_once, (gsize)(fd + 2)); /* 0 is "not yet" */
    }
    return (int)fd_once - 2;
}

bool swap_areas_none(void)
{
    char buf[256];
    int fd = swaps_fd();
    ssize_t n;

    if (fd < 0) {
        return false;
    }
    n = pread(fd, buf, sizeof(buf), 0);
    /* The header line alone: "Filename  Type  Size  Used  Priority\n". */
    return n > 0 && (size_t)n < sizeof(buf) && buf[n - 1] == '\n' &&
           memchr(buf, '\n', (size_t)n) == buf + n - 1;
}
