/*
 * proc_ram.c - guest RAM of an unmodified VMM from /proc/PID/maps (contract
 * in proc_ram.h).
 *
 * The maps path is only a hint (memfds, /dev/shm, hugetlbfs mounts are all
 * "/..."); the file system type seen through map_files decides the backing.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>
#include <gio/gio.h>

#include "proc_ram.h"

#define SMALL_PAGE_SIZE 4096u
#define DELETED_SUFFIX  " (deleted)"

bool proc_maps_parse_line(const char *line, struct maps_entry *e)
{
    const char *p;
    size_t len;
    int n = 0;

    memset(e, 0, sizeof(*e));
    if (sscanf(line,
               "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 "%n",
               &e->start, &e->end, e->perms, &e->offset, &e->dev_major,
               &e->dev_minor, &e->inode, &n) != 7 ||
        n == 0) {
        return false;
    }
    if (e->end <= e->start || strlen(e->perms) != 4) {
        return false;
    }
    e->shared = e->perms[3] == 's';
    /* The path is the rest of the line after the padding: it may hold spaces. */
    for (p = line + n; *p == ' ' || *p == '\t'; p++) {
    }
    len = strcspn(p, "\n");
    if (len >= sizeof(e->path)) {
        return false;
    }
    memcpy(e->path, p, len);
    e->path[len] = '\0';
    if (g_str_has_suffix(e->path, DELETED_SUFFIX)) {
        e->deleted = true;
        e->path[len - strlen(DELETED_SUFFIX)] = '\0';
    }
    return true;
}

bool proc_maps_is_shared_file(const struct maps_entry *e)
{
    return e->shared && e->path[0] == '/';
}

static void set_not_shared(uint64_t size, bool private_seen, GError **err)
{
    uint64_t mib = size >> 20;

    g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                "guest RAM of %" PRIu64 " MiB is not in shared memory (%s): "
                "start QEMU with -object memory-backend-memfd,id=ram0,"
                "size=%" PRIu64 "M,share=on -machine memory-backend=ram0",
                mib, private_seen ? "a private mapping" : "no shared mapping",
                mib);
}

/* Shared file mappings of length @size, at most @max of them. */
struct candidates {
    struct maps_entry e[REGION_MAX + 1];
    size_t n;
    bool private_seen;
};

static bool collect(pid_t pid, char **lines, uint64_t size,
                    struct candidates *c, GError **err)
{
    struct maps_entry e;

    c->n = 0;
    c->private_seen = false;
    for (char **l = lines; *l; l++) {
        if (!proc_maps_parse_line(*l, &e) || e.end - e.start != size) {
            continue;
        }
        if (!proc_maps_is_shared_file(&e)) {
            c->private_seen |= !e.shared;
            continue;
        }
        for (size_t i = 0; i < c->n; i++) {
            if (c->e[i].inode == e.inode && c->e[i].dev_major == e.dev_major &&
                c->e[i].dev_minor == e.dev_minor) {
                g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "pid %d maps %s twice (at 0x%" PRIx64
                            " and 0x%" PRIx64 "): not supported",
                            pid, e.path, c->e[i].start, e.start);
                return false;
            }
        }
        if (c->n < G_N_ELEMENTS(c->e)) {
            c->e[c->n++] = e;
        }
    }
    return true;
}

static const char *short_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;

    return g_str_has_prefix(name, "memfd:") ? name + strlen("memfd:") : name;
}

/* Open @e through map_files and fill @r from it. */
static bool open_region(pid_t pid, const struct maps_entry *e, struct region *r,
                        GError **err)
{
    g_autofree char *path = g_strdup_printf(
        "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, pid, e->start, e->end);
    struct statfs sfs;
    int fd = open(path, O_RDWR | O_CLOEXEC);

    if (fd < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "open %s (%s): %s", path, e->path, g_strerror(errno));
        return false;
    }
    memset(r, 0, sizeof(*r));
    if (fstatfs(fd, &sfs) < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "statfs %s: %s", path, g_strerror(errno));
        goto fail;
    }
    if (sfs.f_type == HUGETLBFS_MAGIC) {
        r->kind = BACKING_HUGETLBFS;
        r->page_size = sfs.f_bsize;
    } else if (sfs.f_type == TMPFS_MAGIC) {
        r->kind = BACKING_SHMEM;
        r->page_size = SMALL_PAGE_SIZE;
    } else {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "guest RAM %s of pid %d is neither shmem nor hugetlbfs "
                    "(file system 0x%lx)",
                    e->path, pid, (unsigned long)sfs.f_type);
        goto fail;
    }
    r->base = e->start;
    r->size = e->end - e->start;
    r->offset = e->offset;
    r->fd = fd;
    g_strlcpy(r->name, short_name(e->path), sizeof(r->name));
    return true;
fail:
    close(fd);
    return false;
}

static bool add_size(pid_t pid, char **lines, uint64_t size, size_t want,
                     struct region_table *t, GError **err)
{
    g_autofree struct candidates *c = g_new0(struct candidates, 1);
    struct region r;

    if (!collect(pid, lines, size, c, err)) {
        return false;
    }
    if (c->n < want) {
        set_not_shared(size, c->private_seen, err);
        return false;
    }
    if (c->n > want) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "guest RAM of %" PRIu64 " MiB is ambiguous: pid %d has "
                    "%zu shared file mappings of that size",
                    size >> 20, pid, c->n);
        return false;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (!open_region(pid, &c->e[i], &r, err)) {
            return false;
        }
        if (!region_table_add(t, &r, err)) {
            close(r.fd);
            return false;
        }
    }
    return true;
}

static size_t count_size(const uint64_t *sizes, size_t n, uint64_t size)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        k += sizes[i] == size;
    }
    return k;
}

static bool seen_before(const uint64_t *sizes, size_t i)
{
    for (size_t j = 0; j < i; j++) {
        if (sizes[j] == sizes[i]) {
            return true;
        }
    }
    return false;
}

bool proc_ram_find(pid_t pid, const uint64_t *sizes, size_t n,
                   struct region_table *t, GError **err)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/maps", pid);
    g_autofree char *maps = NULL;
    g_auto(GStrv) lines = NULL;

    if (!g_file_get_contents(path, &maps, NULL, NULL) || !*maps) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "no process %d (VMM exited?)", pid);
        return false;
    }
    lines = g_strsplit(maps, "\n", -1);
    /* Equal sizes (two 1 GiB memdevs) are matched together, by count. */
    for (size_t i = 0; i < n; i++) {
        if (seen_before(sizes, i)) {
            continue;
        }
        if (!add_size(pid, lines, sizes[i], count_size(sizes, n, sizes[i]), t,
                      err)) {
            return false;
        }
    }
    return true;
}
