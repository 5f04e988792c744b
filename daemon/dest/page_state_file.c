/*
 * page_state_file.c - the page state table's layout and backing file:
 * creating a table (in a file or anonymous memory), mapping, locking,
 * closing.  See page_state.h for the contract, page_state_resume.c for
 * reopening a file a dead daemon left.
 */
#include "page_state_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>
#include <gio/gio.h>

bool page_state_layout_init(struct page_state_layout *l,
                            const char *migration_id,
                            const struct region_table *regions, GError **err)
{
    memset(l, 0, sizeof(*l));
    if (strlen(migration_id) >= sizeof(l->migration_id)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "migration id '%s' is longer than %d bytes", migration_id,
                    PAGE_STATE_ID_MAX - 1);
        return false;
    }
    strcpy(l->migration_id, migration_id);
    l->nregions = regions->n;
    for (size_t i = 0; i < regions->n; i++) {
        l->regions[i].npages = region_pages(&regions->regions[i]);
        l->regions[i].page_size = regions->regions[i].page_size;
    }
    return true;
}

/* Bytes of page state for @l, or 0 if the layout is unusable. */
uint64_t ps_layout_bytes(const struct page_state_layout *l, GError **err)
{
    uint64_t total = 0;

    if (l->nregions == 0 || l->nregions > REGION_MAX) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "page state table needs 1 to %d regions, not %" PRIu32,
                    REGION_MAX, l->nregions);
        return 0;
    }
    if (memchr(l->migration_id, 0, sizeof(l->migration_id)) == NULL ||
        l->migration_id[0] == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "page state table needs a migration id");
        return 0;
    }
    for (uint32_t i = 0; i < l->nregions; i++) {
        uint64_t n = l->regions[i].npages, ps = l->regions[i].page_size;

        if (n == 0 || n > (UINT64_C(1) << 40) || ps == 0 || (ps & (ps - 1))) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "region %" PRIu32 ": %" PRIu64 " pages of %" PRIu64
                        " bytes is not a valid layout",
                        i, n, ps);
            return 0;
        }
        total += n;
    }
    return total;
}

static void header_fill(struct file_header *h,
                        const struct page_state_layout *l, uint64_t size)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, FILE_MAGIC, sizeof(h->magic));
    h->version = FILE_VERSION;
    h->nregions = l->nregions;
    h->data_offset = DATA_OFFSET;
    h->file_size = size;
    memcpy(h->migration_id, l->migration_id, sizeof(h->migration_id));
    for (uint32_t i = 0; i < l->nregions; i++) {
        h->regions[i].npages = l->regions[i].npages;
        h->regions[i].page_size = l->regions[i].page_size;
    }
}

struct page_state_table *ps_table_new(int fd, uint8_t *base, size_t len,
                                      const struct page_state_layout *l)
{
    struct page_state_table *t = g_new0(struct page_state_table, 1);
    uint8_t *map = base + DATA_OFFSET;

    t->fd = fd;
    t->base = base;
    t->len = len;
    t->nregions = l->nregions;
    for (uint32_t i = 0; i < l->nregions; i++) {
        t->regions[i].map = map;
        t->regions[i].npages = l->regions[i].npages;
        map += l->regions[i].npages;
    }
    return t;
}

void ps_recount(struct page_state_table *t)
{
    for (uint32_t r = 0; r < t->nregions; r++) {
        struct ps_region *pr = &t->regions[r];

        memset(pr->count, 0, sizeof(pr->count));
        for (uint64_t p = 0; p < pr->npages; p++) {
            pr->count[st(pr->map[p])]++;
        }
    }
}

bool ps_lock_file(int fd, const char *path, GError **err)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        return true;
    }
    if (errno == EWOULDBLOCK) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "page state file %s is in use by another process", path);
        return false;
    }
    g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                "cannot lock page state file %s: %s", path, g_strerror(errno));
    return false;
}

uint8_t *ps_map_file(int fd, size_t len, const char *path, GError **err)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED, fd, 0);

    if (p == MAP_FAILED) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot map page state %s: %s", path ? path : "(memory)",
                    g_strerror(errno));
        return NULL;
    }
    return p;
}

/*
 * Build the file, header included, under a temporary name and link it into
 * place: a crash half way leaves no file at @path for a later resume to
 * trip over, and link() refuses to replace one that appeared meanwhile.
 */
static int create_file(const char *path, const struct file_header *h,
                       GError **err)
{
    g_autofree char *tmp = g_strdup_printf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (fd < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot create page state file %s: %s", tmp,
                    g_strerror(errno));
        return -1;
    }
    if (!ps_lock_file(fd, tmp, err)) {
        goto fail;
    }
    if (ftruncate(fd, h->file_size) < 0 ||
        pwrite(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h)) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot write page state file %s: %s", tmp,
                    g_strerror(errno));
        goto fail;
    }
    if (link(tmp, path) < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    errno == EEXIST ? "page state file %s already exists: "
                                      "resume it or remove it"
                                    : "cannot create page state file %s: %s",
                    path, g_strerror(errno));
        goto fail;
    }
    unlink(tmp);
    return fd;

fail:
    unlink(tmp);
    close(fd);
    return -1;
}

struct page_state_table *page_state_create(const char *path,
                                           const struct page_state_layout *l,
                                           GError **err)
{
    uint64_t bytes = ps_layout_bytes(l, err);
    struct file_header h;
    struct page_state_table *t;
    uint8_t *base;
    int fd = -1;

    if (bytes == 0) {
        return NULL;
    }
    header_fill(&h, l, DATA_OFFSET + bytes);
    if (path) {
        fd = create_file(path, &h, err);
        if (fd < 0) {
            return NULL;
        }
    }
    base = ps_map_file(fd, h.file_size, path, err);
    if (base == NULL) {
        goto fail;
    }
    if (fd < 0) {
        memcpy(base, &h, sizeof(h));
    }
    t = ps_table_new(fd, base, h.file_size, l);
    ps_recount(t);
    return t;

fail:
    if (fd >= 0) {
        unlink(path);
        close(fd);
    }
    return NULL;
}

void page_state_close(struct page_state_table *t)
{
    if (t == NULL) {
        return;
    }
    munmap(t->base, t->len);
    if (t->fd >= 0) {
        close(t->fd);
    }
    g_free(t);
}
