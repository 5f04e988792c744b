/*
 * main.c - postcopy-guest, the synthetic VM: RAM of a chosen backing,
 * vCPU threads dirtying it, and a cooperative attach to postcopyd, which
 * then drives it with pause / resume / query / quit on the attach socket.
 * See guest.h for the command loop and guest_state.h for the device state.
 */
#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <gio/gio.h>

#include "attach.h"
#include "backing.h"
#include "guest.h"
#include "uffd.h"

#define EXIT_USAGE 2

static bool setup_ram(struct guest *g, GError **err)
{
    const struct guest_config *c = &g->cfg;

    if (!guest_ram_alloc(&g->ram, c->regions, c->nregions, c->name, err) ||
        !drop_check(&c->drop, &g->ram, err)) {
        return false;
    }
    /* The daemon does UFFDIO_API and registers; we only create and keep it. */
    g->uffd = uffd_open(err);
    return g->uffd >= 0;
}

static struct workload *new_workload(struct guest *g)
{
    const struct guest_config *c = &g->cfg;
    struct workload_params p = {
        .kind = c->workload,
        .ram = &g->ram,
        .vcpus = c->vcpus,
        .dirty_rate_mib = c->dirty_rate_mib,
        .hotset_percent = c->hotset_percent,
        .seed = c->seed,
        .last_writes = c->last_writes,
    };

    return workload_new(&p);
}

static void start_source(struct guest *g)
{
    g->seed = g->cfg.seed;
    workload_fill(&g->ram, g->cfg.fill_percent, g->cfg.seed);
    g->wl = new_workload(g);
    workload_start(g->wl);
}

/* Its vCPUs wait for the state the RESUME brings (workload.h). */
static void start_incoming(struct guest *g)
{
    g->held_wl = new_workload(g);
    workload_prestart(g->held_wl);
}

static int connect_unix(const char *path, GError **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
                    "attach socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;

        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e),
                    "connecting to %s: %s", path, g_strerror(e));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

static bool attach(struct guest *g, GError **err)
{
    const struct guest_config *c = &g->cfg;
    struct region r[GUEST_REGIONS_MAX] = {0};

    for (unsigned i = 0; i < g->ram.n; i++) {
        const struct guest_region *gr = &g->ram.regions[i];

        r[i].kind = gr->kind;
        r[i].base = (uintptr_t)gr->base;
        r[i].size = gr->size;
        r[i].page_size = gr->page_size;
        r[i].fd = gr->fd;
        g_strlcpy(r[i].name, gr->name, sizeof(r[i].name));
    }
    g->sock = connect_unix(c->attach_path, err);
    return g->sock >= 0 && attach_send_hello(g->sock, c->name, c->incoming,
                                             g->uffd, 0, r, g->ram.n, err);
}

/* One line per region, then the "ready" line tests and scripts wait for. */
static void print_ready(const struct guest *g)
{
    for (unsigned i = 0; i < g->ram.n; i++) {
        const struct guest_region *r = &g->ram.regions[i];

        printf("postcopy-guest: region %s backing=%s size=%" PRIu64
               " page-size=%" PRIu64 " pages=%" PRIu64 " first-page=%" PRIu64
               "\n",
               r->name, backing_kind_name(r->kind), r->size, r->page_size,
               r->size / r->page_size, r->first_page);
    }
    printf("postcopy-guest: ready pid=%d regions=%u size=%" PRIu64
           " pages=%" PRIu64 " incoming=%d\n",
           getpid(), g->ram.n, g->ram.size, g->ram.npages, g->cfg.incoming);
}

/*
 * Lives as long as the process: vCPU and verify threads use it until
 * exit(), and are never joined (see guest.h).
 */
static struct guest g = {.uffd = -1, .sock = -1};

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;

    /* GLib's --help in the user's locale and charset. */
    setlocale(LC_ALL, "");
    /* Tests and scripts wait for our lines: never hold them back. */
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!guest_config_parse(&argc, &argv, &g.cfg, &err)) {
        fprintf(stderr, "postcopy-guest: %s\n", err->message);
        return EXIT_USAGE;
    }
    g_mutex_init(&g.send_lock);
    if (!setup_ram(&g, &err)) {
        goto fail;
    }
    if (!g.cfg.incoming && g.cfg.drop.mode != DROP_NONE) {
        drop_on_signal(&g.cfg.drop, &g.ram); /* before any other thread */
    }
    if (g.cfg.incoming) {
        start_incoming(&g);
    } else {
        start_source(&g);
    }
    g.attach = attach;
    if (!attach(&g, &err)) {
        goto fail;
    }
    print_ready(&g);
    return guest_serve(&g);

fail:
    fprintf(stderr, "postcopy-guest: %s\n", err->message);
    return 1;
}
