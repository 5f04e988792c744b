/*
 * page_state_resume.c - reopening the page state table a dead daemon left:
 * the header checked against this migration's layout, every byte checked
 * before any is changed, and the claims that died with the daemon undone
 * (see page_state_resume() in page_state.h).
 */
#include "page_state_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gio/gio.h>

static bool header_read(int fd, const char *path, struct file_header *h,
                        uint64_t *st_size, GError **err)
{
    struct stat sb;

    if (fstat(fd, &sb) < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot stat page state file %s: %s", path,
                    g_strerror(errno));
        return false;
    }
    *st_size = sb.st_size;
    if ((uint64_t)sb.st_size < sizeof(*h) ||
        pread(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page state file %s is truncated: %" PRIu64
                    " bytes, shorter than its header",
                    path, *st_size);
        return false;
    }
    return true;
}

/*
 * A migration id is printable ASCII: it goes into log lines and errors,
 * where a newline from a corrupt file would forge a line.
 */
static bool id_printable(const char *id, size_t max)
{
    for (size_t i = 0; i < max && id[i]; i++) {
        if (!g_ascii_isprint(id[i])) {
            return false;
        }
    }
    return true;
}

/* Is the file sound, whatever migration it belongs to? */
static bool header_check(const struct file_header *h, const char *path,
                         uint64_t st_size, GError **err)
{
    if (memcmp(h->magic, FILE_MAGIC, sizeof(h->magic)) != 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s is not a postcopyd page state file (bad magic)", path);
        return false;
    }
    if (h->version != FILE_VERSION) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page state file %s has format version %" PRIu32
                    ", this postcopyd reads version %u",
                    path, h->version, FILE_VERSION);
        return false;
    }
    if (h->data_offset != DATA_OFFSET ||
        memchr(h->migration_id, 0, sizeof(h->migration_id)) == NULL ||
        !id_printable(h->migration_id, sizeof(h->migration_id))) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page state file %s has a corrupt header", path);
        return false;
    }
    if (st_size < h->file_size) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page state file %s is truncated: %" PRIu64
                    " bytes of %" PRIu64,
                    path, st_size, h->file_size);
        return false;
    }
    return true;
}

/* Is it the file of this migration, with these regions? */
static bool header_matches(const struct file_header *h, const char *path,
                           const struct page_state_layout *l, uint64_t size,
                           GError **err)
{
    if (strcmp(h->migration_id, l->migration_id) != 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "page state file %s belongs to migration '%s', not '%s'",
                    path, h->migration_id, l->migration_id);
        return false;
    }
    if (h->nregions != l->nregions) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "page state file %s has %" PRIu32
                    " regions, the VM has %" PRIu32,
                    path, h->nregions, l->nregions);
        return false;
    }
    for (uint32_t i = 0; i < l->nregions; i++) {
        if (h->regions[i].npages != l->regions[i].npages ||
            h->regions[i].page_size != l->regions[i].page_size) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "page state file %s: region %" PRIu32 " has %" PRIu64
                        " pages of %" PRIu64 " bytes, the VM's has %" PRIu64
                        " of %" PRIu64,
                        path, i, h->regions[i].npages, h->regions[i].page_size,
                        l->regions[i].npages, l->regions[i].page_size);
            return false;
        }
    }
    if (h->file_size != size) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page state file %s has a corrupt header", path);
        return false;
    }
    return true;
}

/* Could a live table have held @b? */
static bool byte_valid(uint8_t b)
{
    if (st(b) >= PAGE_NSTATES) {
        return false;
    }
    if (!has_prior(st(b)) && prior(b) != 0) {
        return false;
    }
    return st(b) == PAGE_WRITING || st(b) == PAGE_INSTALLING ||
           !(b & F_REDIRTIED);
}

/* Undo what died with the old daemon; see page_state_resume(). */
static uint8_t recover(uint8_t b, struct page_state_reload *rl)
{
    uint8_t w = wanted(b) ? F_WANTED : 0;

    switch (st(b)) {
    case PAGE_REQUESTED:
        rl->requests_dropped++;
        return make(base_of(prior(b)), 0, w);
    case PAGE_WRITING:
        rl->writes_torn++;
        /* Removed by the VMM while held: the event was read, it stays so. */
        return gone(b) ? make(PAGE_REMOVED, 0, 0)
                       : make(base_of(prior(b)), 0, w);
    case PAGE_INSTALLING:
        rl->installs_uncertain++;
        return b;
    default:
        return b;
    }
}

/* Check every byte before changing any: a refused file stays as it was. */
static bool check_all(const struct page_state_table *t, const char *path,
                      GError **err)
{
    for (uint32_t r = 0; r < t->nregions; r++) {
        const struct ps_region *pr = &t->regions[r];

        for (uint64_t p = 0; p < pr->npages; p++) {
            if (!byte_valid(pr->map[p])) {
                g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "page state file %s: region %" PRIu32
                            " page %" PRIu64 " has invalid state 0x%02x",
                            path, r, p, pr->map[p]);
                return false;
            }
        }
    }
    return true;
}

static void recover_all(struct page_state_table *t,
                        struct page_state_reload *rl)
{
    for (uint32_t r = 0; r < t->nregions; r++) {
        struct ps_region *pr = &t->regions[r];

        for (uint64_t p = 0; p < pr->npages; p++) {
            pr->map[p] = recover(pr->map[p], rl);
        }
    }
    ps_recount(t);
}

static struct page_state_table *resume_fd(int fd, const char *path,
                                          const struct page_state_layout *l,
                                          struct page_state_reload *rl,
                                          GError **err)
{
    uint64_t size = DATA_OFFSET + ps_layout_bytes(l, err);
    struct page_state_table *t;
    struct file_header h;
    uint64_t st_size;
    uint8_t *base;

    if (size == DATA_OFFSET || !ps_lock_file(fd, path, err) ||
        !header_read(fd, path, &h, &st_size, err) ||
        !header_check(&h, path, st_size, err) ||
        !header_matches(&h, path, l, size, err)) {
        return NULL;
    }
    base = ps_map_file(fd, size, path, err);
    if (base == NULL) {
        return NULL;
    }
    t = ps_table_new(fd, base, size, l);
    if (!check_all(t, path, err)) {
        t->fd = -1; /* the caller closes it */
        page_state_close(t);
        return NULL;
    }
    recover_all(t, rl);
    rl->copies_distrusted = page_state_distrust_copies(t);
    return t;
}

struct page_state_table *page_state_resume(const char *path,
                                           const struct page_state_layout *l,
                                           struct page_state_reload *reload,
                                           GError **err)
{
    struct page_state_reload rl = {0};
    struct page_state_table *t;
    int fd = open(path, O_RDWR | O_CLOEXEC);

    if (fd < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot open page state file %s to resume: %s", path,
                    g_strerror(errno));
        return NULL;
    }
    t = resume_fd(fd, path, l, &rl, err);
    if (t == NULL) {
        close(fd);
        return NULL;
    }
    if (reload) {
        *reload = rl;
    }
    return t;
}
