/* drop.c - see drop.h. */
#include "drop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <gio/gio.h>

#include "digest.h"
#include "guest_config.h"
#include "guest_thread.h"

static const char *const mode_names[] = {
    [DROP_DONTNEED] = "dontneed",
    [DROP_REMOVE] = "remove",
    [DROP_UNMAP] = "unmap",
};

bool drop_parse(const char *arg, struct drop_spec *d, GError **err)
{
    g_auto(GStrv) f = g_strsplit(arg, ":", 0);

    memset(d, 0, sizeof(*d));
    if (g_strv_length(f) != 3) {
        return guest_option_error(err, "--drop %s: not MODE:FIRST:COUNT", arg);
    }
    for (int m = DROP_DONTNEED; m <= DROP_UNMAP; m++) {
        if (!strcmp(f[0], mode_names[m])) {
            d->mode = m;
        }
    }
    if (d->mode == DROP_NONE) {
        return guest_option_error(
            err, "--drop: '%s' is not dontneed, remove or unmap", f[0]);
    }
    if (!g_ascii_string_to_unsigned(f[1], 10, 0, G_MAXUINT64, &d->first,
                                    NULL) ||
        !g_ascii_string_to_unsigned(f[2], 10, 1, G_MAXUINT64, &d->count,
                                    NULL)) {
        return guest_option_error(
            err, "--drop %s: FIRST and COUNT are page numbers", arg);
    }
    return true;
}

bool drop_check(const struct drop_spec *d, const struct guest_ram *ram,
                GError **err)
{
    const struct guest_region *r;

    if (d->mode == DROP_NONE) {
        return true;
    }
    if (d->first >= ram->npages || d->count > ram->npages - d->first) {
        return guest_option_error(
            err, "--drop: pages beyond the guest's %" G_GUINT64_FORMAT,
            ram->npages);
    }
    r = guest_ram_page_region(ram, d->first);
    if (d->first + d->count > r->first_page + r->size / r->page_size) {
        return guest_option_error(err,
                                  "--drop: the pages must lie in one region");
    }
    /* Each mode where the kernel makes the pages read zero. */
    if ((d->mode == DROP_REMOVE) != (r->kind != BACKING_ANON)) {
        return guest_option_error(
            err, "--drop: %s is for %s memory", mode_names[d->mode],
            d->mode == DROP_REMOVE ? "shared (shmem, hugetlbfs)" : "anonymous");
    }
    return true;
}

static int drop_range(enum drop_mode mode, void *addr, size_t len)
{
    void *p;

    switch (mode) {
    case DROP_DONTNEED:
        return madvise(addr, len, MADV_DONTNEED) ? -errno : 0;
    case DROP_REMOVE:
        return madvise(addr, len, MADV_REMOVE) ? -errno : 0;
    default:
        if (munmap(addr, len)) {
            return -errno;
        }
        p = mmap(addr, len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        return p == MAP_FAILED ? -errno : 0;
    }
}

bool drop_apply(const struct drop_spec *d, const struct guest_ram *ram,
                uint64_t *expected, GError **err)
{
    const struct guest_region *r;
    g_autofree uint8_t *zero = NULL;
    uint64_t zero_digest, len;
    uint8_t *start;
    int ret;

    if (d->mode == DROP_NONE) {
        return true;
    }
    r = guest_ram_page_region(ram, d->first);
    start = guest_ram_page(ram, d->first, &len);
    /* Half of them arrive first: installed pages are dropped too. */
    for (uint64_t i = 0; i < d->count / 2; i++) {
        (void)*(volatile uint8_t *)guest_ram_page(ram, d->first + i, &len);
    }
    ret = drop_range(d->mode, start, d->count * r->page_size);
    if (ret < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "--drop %s: %s", mode_names[d->mode], g_strerror(-ret));
        return false;
    }
    zero = g_malloc0(r->page_size);
    zero_digest = digest_bytes(zero, r->page_size);
    for (uint64_t p = d->first; expected && p < d->first + d->count; p++) {
        expected[p] = zero_digest;
    }
    printf("postcopy-guest: dropped pages %" G_GUINT64_FORMAT
           "..%" G_GUINT64_FORMAT " (%s), %" G_GUINT64_FORMAT
           " of them read first\n",
           d->first, d->first + d->count - 1, mode_names[d->mode],
           d->count / 2);
    return true;
}

struct drop_waiter {
    const struct drop_spec *d;
    const struct guest_ram *ram;
    sigset_t set;
};

static gpointer drop_waiter_main(gpointer opaque)
{
    struct drop_waiter *w = opaque;
    g_autoptr(GError) err = NULL;
    int sig;

    if (sigwait(&w->set, &sig) == 0 && !drop_apply(w->d, w->ram, NULL, &err)) {
        fprintf(stderr, "postcopy-guest: %s\n", err->message);
    }
    g_free(w);
    return NULL;
}

void drop_on_signal(const struct drop_spec *d, const struct guest_ram *ram)
{
    struct drop_waiter *w = g_new0(struct drop_waiter, 1);

    w->d = d;
    w->ram = ram;
    sigemptyset(&w->set);
    sigaddset(&w->set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &w->set, NULL);
    g_thread_unref(guest_thread_new("drop", drop_waiter_main, w));
}
