/* guest_proc.c - see guest_proc.h. */
#include "guest_proc.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gio/gio.h>

#include "testlib.h"

/* ---- spawning and reaping ---- */

int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpuint(strlen(path), <, sizeof(sa.sun_path));
    strcpy(sa.sun_path, path);
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(fd, 1), ==, 0);
    return fd;
}

void assert_alive(struct guest_proc *gp)
{
    int status;

    if (waitpid(gp->pid, &status, WNOHANG) == gp->pid) {
        g_error("postcopy-guest exited early (status 0x%x)", status);
    }
}

/* Accept the guest's connection, failing fast if it dies instead. */
void accept_guest(struct guest_proc *gp)
{
    struct pollfd pfd = {.fd = gp->listen_fd, .events = POLLIN};

    for (int waited = 0; poll(&pfd, 1, POLL_STEP_MS) == 0;
         waited += POLL_STEP_MS) {
        assert_alive(gp);
        g_assert_cmpint(waited, <, WAIT_MS);
    }
    gp->sock = accept4(gp->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    g_assert_cmpint(gp->sock, >=, 0);
}

/* Read the guest's stdout until it holds @needle. */
void expect_output(struct guest_proc *gp, const char *needle)
{
    struct pollfd pfd = {.fd = gp->out_fd, .events = POLLIN};
    int64_t deadline = g_get_monotonic_time() + WAIT_MS * 1000LL;

    while (!strstr(gp->out->str, needle)) {
        char buf[512];
        ssize_t n;

        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        if (poll(&pfd, 1, POLL_STEP_MS) <= 0) {
            continue;
        }
        n = read(gp->out_fd, buf, sizeof(buf));
        if (n <= 0) {
            g_error("guest output ended without '%s': %s", needle,
                    gp->out->str);
        }
        g_string_append_len(gp->out, buf, n);
    }
}

void spawn_guest(struct guest_proc *gp, const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;

    memset(gp, 0, sizeof(*gp));
    gp->dir = g_dir_make_tmp("test_guest-XXXXXX", &err);
    g_assert_no_error(err);
    gp->sock_path = g_build_filename(gp->dir, "attach.sock", NULL);
    gp->listen_fd = listen_unix(gp->sock_path);
    gp->out = g_string_new(NULL);
    g_ptr_array_add(argv, testlib_build_path("postcopy-guest"));
    g_ptr_array_add(argv, g_strdup("--attach"));
    g_ptr_array_add(argv, g_strdup(gp->sock_path));
    for (; *args; args++) {
        g_ptr_array_add(argv, g_strdup(*args));
    }
    g_ptr_array_add(argv, NULL);
    g_spawn_async_with_pipes(NULL, (char **)argv->pdata, NULL,
                             G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &gp->pid,
                             NULL, &gp->out_fd, NULL, &err);
    g_assert_no_error(err);
    accept_guest(gp);
    g_assert_true(attach_recv(gp->sock, &gp->info, &err));
    g_assert_no_error(err);
    vmm_init(&gp->vmm, gp->sock);
    expect_output(gp, "postcopy-guest: ready");
}

/* Wait for the guest to exit by itself; SIGKILL it after WAIT_MS. */
int reap_guest(struct guest_proc *gp)
{
    int status = 0;

    for (int waited = 0; waitpid(gp->pid, &status, WNOHANG) == 0;
         waited += POLL_STEP_MS) {
        if (waited >= WAIT_MS) {
            kill(gp->pid, SIGKILL);
            waitpid(gp->pid, &status, 0);
            g_error("postcopy-guest did not exit; killed");
        }
        g_usleep(POLL_STEP_MS * 1000);
    }
    return status;
}

void release_guest(struct guest_proc *gp)
{
    g_test_message("guest %d said: %s", gp->pid, gp->out->str);
    g_spawn_close_pid(gp->pid);
    close(gp->out_fd);
    close(gp->sock);
    close(gp->listen_fd);
    attach_info_clear(&gp->info);
    unlink(gp->sock_path);
    rmdir(gp->dir);
    g_free(gp->sock_path);
    g_free(gp->dir);
    g_string_free(gp->out, TRUE);
}

void quit_guest(struct guest_proc *gp)
{
    g_autoptr(GError) err = NULL;
    int status;

    g_assert_true(vmm_quit(&gp->vmm, &err));
    g_assert_no_error(err);
    status = reap_guest(gp);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    release_guest(gp);
}

/* ---- guest parameters ---- */

uint64_t page_size_of(enum backing_kind kind)
{
    return kind == BACKING_HUGETLBFS ? testlib_hugepage_size() : 4096;
}

uint64_t npages_of(enum backing_kind kind)
{
    return GUEST_RAM / page_size_of(kind);
}

bool hugetlb_ready(unsigned long npages)
{
    g_autofree char *why = NULL;

    if (!testlib_hugetlb_reserve(npages, &why)) {
        g_test_skip(why);
        return false;
    }
    return true;
}

/* Make room for @nguests guests; false (test skipped) if refused. */
bool backing_ready(const struct backing_case *bc, unsigned nguests)
{
    return bc->kind != BACKING_HUGETLBFS ||
           hugetlb_ready(nguests * npages_of(bc->kind) + 2);
}

static const char *const source_args[] = {
    "--workload", "random", "--dirty-rate", GUEST_RATE, "--verify", NULL};
static const char *const incoming_args[] = {
    "--incoming", "--workload", "random", "--dirty-rate", GUEST_RATE, NULL};

/* Append NULL-terminated @args (may be NULL); they are not copied. */
static void add_args(GPtrArray *argv, const char *const *args)
{
    for (; args && *args; args++) {
        g_ptr_array_add(argv, (gpointer)*args);
    }
}

/* Options every test guest gets first: later ones may override them. */
static GPtrArray *common_args(void)
{
    static const char *const common[] = {"--vcpus", "2", "--seed", "7", NULL};
    GPtrArray *args = g_ptr_array_new();

    add_args(args, common);
    return args;
}

static void spawn_args(struct guest_proc *gp, GPtrArray *args)
{
    g_ptr_array_add(args, NULL);
    spawn_guest(gp, (const char *const *)args->pdata);
}

/* argv for a guest of backing @bc; @extra is NULL-terminated. */
void spawn_with(struct guest_proc *gp, const struct backing_case *bc,
                const char *const *extra)
{
    g_autofree char *size = g_strdup_printf("%lluM", GUEST_RAM >> 20);
    g_autoptr(GPtrArray) args = common_args();
    const char *const base[] = {"--backing", bc->name, "--size", size, NULL};

    add_args(args, base);
    add_args(args, extra);
    spawn_args(gp, args);
}

void spawn_source(struct guest_proc *gp, const struct backing_case *bc)
{
    spawn_with(gp, bc, source_args);
}

void spawn_incoming(struct guest_proc *gp, const struct backing_case *bc)
{
    spawn_incoming_with(gp, bc, NULL);
}

void spawn_incoming_with(struct guest_proc *gp, const struct backing_case *bc,
                         const char *const *extra)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();

    add_args(args, incoming_args);
    add_args(args, extra);
    g_ptr_array_add(args, NULL);
    spawn_with(gp, bc, (const char *const *)args->pdata);
}

void spawn_regions(struct guest_proc *gp, const char *const *regions,
                   bool incoming, const char *const *extra)
{
    g_autoptr(GPtrArray) args = common_args();

    for (; *regions; regions++) {
        g_ptr_array_add(args, (gpointer) "--region");
        g_ptr_array_add(args, (gpointer)*regions);
    }
    add_args(args, incoming ? incoming_args : source_args);
    add_args(args, extra);
    spawn_args(gp, args);
}

/* ---- queries ---- */

uint64_t query(struct guest_proc *gp, bool *paused)
{
    g_autoptr(GError) err = NULL;
    uint64_t written = 0;
    bool p;

    g_assert_true(vmm_query(&gp->vmm, &written, &p, &err));
    g_assert_no_error(err);
    if (paused) {
        *paused = p;
    }
    return written;
}

/* Until pages_written passes @above (the workload runs), or fail. */
uint64_t wait_written_above(struct guest_proc *gp, uint64_t above)
{
    for (int waited = 0; waited < WAIT_MS; waited += POLL_STEP_MS) {
        bool paused;
        uint64_t n = query(gp, &paused);

        g_assert_false(paused);
        if (n > above) {
            return n;
        }
        g_usleep(POLL_STEP_MS * 1000);
    }
    g_error("pages_written stuck at %" G_GUINT64_FORMAT, above);
}

void assert_still(struct guest_proc *gp, uint64_t written)
{
    bool paused;

    g_usleep(QUIET_MS * 1000);
    g_assert_cmpuint(query(gp, &paused), ==, written);
    g_assert_true(paused);
}

uint8_t *pause_guest(struct guest_proc *gp, size_t *len)
{
    g_autoptr(GError) err = NULL;
    uint8_t *state = NULL;

    g_assert_true(vmm_pause(&gp->vmm, &state, len, &err));
    g_assert_no_error(err);
    return state;
}

/* ---- guest RAM from outside: memory fds, or the pid for anon ---- */

struct region *ram_region(struct guest_proc *gp)
{
    g_assert_cmpuint(gp->info.regions.n, ==, 1);
    return &gp->info.regions.regions[0];
}

struct region *region_named(struct guest_proc *gp, const char *name)
{
    for (size_t i = 0; i < gp->info.regions.n; i++) {
        if (!strcmp(gp->info.regions.regions[i].name, name)) {
            return &gp->info.regions.regions[i];
        }
    }
    g_error("the guest has no region named %s", name);
}

void region_read(struct guest_proc *gp, const struct region *r, uint64_t off,
                 void *buf, size_t len)
{
    struct iovec local = {.iov_base = buf, .iov_len = len};
    struct iovec remote = {.iov_base = (void *)(uintptr_t)(r->base + off),
                           .iov_len = len};

    if (r->alias) {
        memcpy(buf, r->alias + off, len);
        return;
    }
    g_assert_cmpint(process_vm_readv(gp->info.pid, &local, 1, &remote, 1, 0),
                    ==, len);
}

void region_write(struct guest_proc *gp, const struct region *r, uint64_t off,
                  const void *buf, size_t len)
{
    struct iovec local = {.iov_base = (void *)buf, .iov_len = len};
    struct iovec remote = {.iov_base = (void *)(uintptr_t)(r->base + off),
                           .iov_len = len};

    if (r->alias) {
        memcpy(r->alias + off, buf, len);
        return;
    }
    g_assert_cmpint(process_vm_writev(gp->info.pid, &local, 1, &remote, 1, 0),
                    ==, len);
}

void ram_read(struct guest_proc *gp, uint64_t off, void *buf, size_t len)
{
    region_read(gp, ram_region(gp), off, buf, len);
}

void ram_write(struct guest_proc *gp, uint64_t off, const void *buf, size_t len)
{
    region_write(gp, ram_region(gp), off, buf, len);
}

/* Every region's backing file, mapped here (anonymous ones need none). */
void map_ram(struct guest_proc *gp)
{
    g_autoptr(GError) err = NULL;

    for (size_t i = 0; i < gp->info.regions.n; i++) {
        struct region *r = &gp->info.regions.regions[i];

        if (!r->alias) {
            g_assert_true(region_map_alias(r, &err));
            g_assert_no_error(err);
        }
    }
}

bool all_zero(const uint8_t *p, size_t len)
{
    return p[0] == 0 && !memcmp(p, p + 1, len - 1);
}

static uint64_t copy_region(struct guest_proc *src, const struct region *rs,
                            struct guest_proc *dst, const struct region *rd)
{
    uint64_t ps = rs->page_size;
    g_autofree uint8_t *buf = g_malloc(ps);
    uint64_t copied = 0;

    g_assert_cmpuint(rs->size, ==, rd->size);
    g_assert_cmpuint(ps, ==, rd->page_size);
    for (uint64_t off = 0; off < rs->size; off += ps) {
        region_read(src, rs, off, buf, ps);
        if (all_zero(buf, ps)) {
            continue;
        }
        region_write(dst, rd, off, buf, ps);
        copied++;
    }
    return copied;
}

/* What a migration would do: every non-zero page, zero pages skipped. */
uint64_t copy_ram(struct guest_proc *src, struct guest_proc *dst)
{
    uint64_t copied = 0;

    g_assert_cmpuint(src->info.regions.n, ==, dst->info.regions.n);
    map_ram(src);
    map_ram(dst);
    for (size_t i = 0; i < src->info.regions.n; i++) {
        const struct region *rs = &src->info.regions.regions[i];

        copied += copy_region(src, rs, dst, region_named(dst, rs->name));
    }
    return copied;
}

void region_corrupt_byte(struct guest_proc *gp, const struct region *r,
                         uint64_t off)
{
    uint8_t b;

    region_read(gp, r, off, &b, 1);
    b ^= 0x01;
    region_write(gp, r, off, &b, 1);
}

void corrupt_byte(struct guest_proc *gp, uint64_t off)
{
    region_corrupt_byte(gp, ram_region(gp), off);
}

/* An incoming guest leaves its RAM alone until the resume. */
void assert_ram_untouched(struct guest_proc *gp)
{
    for (size_t i = 0; i < gp->info.regions.n; i++) {
        const struct region *r = &gp->info.regions.regions[i];
        struct stat st;

        if (r->fd < 0) {
            continue; /* anonymous: nothing cheap to look at */
        }
        g_assert_cmpint(fstat(r->fd, &st), ==, 0);
        g_assert_cmpint(st.st_blocks, ==, 0);
    }
}
