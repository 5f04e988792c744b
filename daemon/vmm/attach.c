/* attach.c - see attach.h. */
#include "attach.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "attach.pb-c.h"
#include "attach_priv.h"
#include "json_depth.h"
#include "vm_channel.h"

G_STATIC_ASSERT((int)BACKING_ANON == POSTCOPY__ATTACH__BACKING__BACKING_ANON);
G_STATIC_ASSERT((int)BACKING_SHMEM == POSTCOPY__ATTACH__BACKING__BACKING_SHMEM);
G_STATIC_ASSERT((int)BACKING_HUGETLBFS ==
                POSTCOPY__ATTACH__BACKING__BACKING_HUGETLBFS);

void attach_fail(GError **err, const char *fmt, ...)
{
    va_list ap;
    GError *e;

    va_start(ap, fmt);
    e = g_error_new_valist(G_IO_ERROR, G_IO_ERROR_INVALID_DATA, fmt, ap);
    va_end(ap);
    g_propagate_error(err, e);
}

void attach_info_init(struct attach_info *info)
{
    memset(info, 0, sizeof(*info));
    info->uffd = -1;
    region_table_init(&info->regions);
}

void attach_info_clear(struct attach_info *info)
{
    if (info->uffd >= 0) {
        close(info->uffd);
    }
    region_table_clear(&info->regions);
    attach_info_init(info);
}

bool attach_add_region(struct region_table *t, const struct region *r,
                       const char *prefix, GError **err)
{
    GError *e = NULL;

    if (region_table_add(t, r, &e)) {
        return true;
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s%s", prefix,
                e->message);
    g_error_free(e);
    return false;
}

bool attach_name_valid(const char *name, GError **err)
{
    size_t len = strlen(name);

    if (len == 0) {
        attach_fail(err, "attach: the VM name is empty");
        return false;
    }
    if (len >= ATTACH_NAME_MAX) {
        attach_fail(err, "attach: the VM name is %zu bytes long (at most %d)",
                    len, ATTACH_NAME_MAX - 1);
        return false;
    }
    if (!g_utf8_validate(name, len, NULL)) {
        attach_fail(err, "attach: the VM name is not valid UTF-8");
        return false;
    }
    for (const char *p = name; *p; p = g_utf8_next_char(p)) {
        if (!g_unichar_isprint(g_utf8_get_char(p))) {
            /* Not quoted: it could forge a log line. */
            attach_fail(err, "attach: the VM name holds a control character");
            return false;
        }
    }
    return true;
}

/* ---- our hello ---- */

static bool hello_check(const Postcopy__Attach__Hello *h, const int *fds,
                        size_t nfds, GError **err)
{
    if (h->version != ATTACH_VERSION) {
        attach_fail(err, "attach: unsupported version %u (expected %d)",
                    h->version, ATTACH_VERSION);
        return false;
    }
    if (nfds < 1 || fds[0] < 0) {
        attach_fail(err, "attach: hello carries no uffd (fds[0])");
        return false;
    }
    if (h->pid <= 0) {
        attach_fail(err, "attach: hello has invalid pid %d", h->pid);
        return false;
    }
    if (!attach_name_valid(h->vm_name ? h->vm_name : "", err)) {
        return false;
    }
    if (h->n_regions == 0) {
        attach_fail(err, "attach: hello has no regions");
        return false;
    }
    if (h->n_regions > REGION_MAX) {
        attach_fail(err, "attach: hello has %zu regions (limit %d)",
                    h->n_regions, REGION_MAX);
        return false;
    }
    return true;
}

static bool hello_region_fd(const Postcopy__Attach__Region *m, size_t i,
                            const int *fds, size_t nfds, struct region *r,
                            GError **err)
{
    if (r->kind == BACKING_ANON) {
        if (m->fd_index != -1) {
            attach_fail(err,
                        "attach: region %zu: anonymous region has fd_index %d "
                        "(expected -1)",
                        i, m->fd_index);
            return false;
        }
        r->fd = -1;
        return true;
    }
    /* Index 0 is the uffd, never guest RAM. */
    if (m->fd_index < 1 || (size_t)m->fd_index >= nfds) {
        attach_fail(
            err,
            "attach: region %zu: fd_index %d names no memory fd (the hello "
            "carries %zu)",
            i, m->fd_index, nfds - 1);
        return false;
    }
    r->fd = fds[m->fd_index];
    return true;
}

static bool hello_region(const Postcopy__Attach__Region *m, size_t i,
                         const int *fds, size_t nfds, struct region *r,
                         GError **err)
{
    memset(r, 0, sizeof(*r));
    switch (m->backing) {
    case POSTCOPY__ATTACH__BACKING__BACKING_ANON:
    case POSTCOPY__ATTACH__BACKING__BACKING_SHMEM:
    case POSTCOPY__ATTACH__BACKING__BACKING_HUGETLBFS:
        r->kind = (enum backing_kind)m->backing;
        break;
    default:
        attach_fail(err, "attach: region %zu: unknown backing %d", i,
                    (int)m->backing);
        return false;
    }
    r->base = m->host_addr;
    r->size = m->size;
    r->offset = m->offset;
    r->page_size = m->page_size;
    g_strlcpy(r->name, m->name ? m->name : "", sizeof(r->name));
    return hello_region_fd(m, i, fds, nfds, r, err);
}

/*
 * Fill @t with borrowed fds: nothing is dup'd or closed yet, so a failure
 * leaves every fd with the caller.
 */
static bool hello_regions(const Postcopy__Attach__Hello *h, const int *fds,
                          size_t nfds, struct region_table *t, GError **err)
{
    for (size_t i = 0; i < h->n_regions; i++) {
        struct region r;

        if (!hello_region(h->regions[i], i, fds, nfds, &r, err)) {
            return false;
        }
        if (!attach_add_region(t, &r, "attach: ", err)) {
            return false;
        }
    }
    return true;
}

static bool fd_used_before(const int *fds, size_t n, int fd)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i] == fd) {
            return true;
        }
    }
    return false;
}

/*
 * One memfd may back several regions at different offsets; the table
 * closes each region's fd, so every region after the first gets a dup.
 */
static bool own_region_fds(struct region_table *t, GError **err)
{
    int orig[REGION_MAX];
    size_t i;

    for (i = 0; i < t->n; i++) {
        orig[i] = t->regions[i].fd;
    }
    for (i = 0; i < t->n; i++) {
        int fd;

        if (orig[i] < 0 || !fd_used_before(orig, i, orig[i])) {
            continue;
        }
        fd = fcntl(orig[i], F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            int e = errno;

            g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e),
                        "attach: cannot dup memory fd %d: %s", orig[i],
                        g_strerror(e));
            goto undo;
        }
        t->regions[i].fd = fd;
    }
    return true;

undo:
    while (i-- > 0) {
        if (t->regions[i].fd != orig[i]) {
            close(t->regions[i].fd);
            t->regions[i].fd = orig[i];
        }
    }
    return false;
}

static bool table_has_fd(const struct region_table *t, int fd)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->regions[i].fd == fd) {
            return true;
        }
    }
    return false;
}

/* Memory fds that no region names are ours now and of no use. */
static void close_unused_fds(const struct region_table *t, const int *fds,
                             size_t nfds)
{
    for (size_t i = 1; i < nfds; i++) {
        if (fds[i] >= 0 && fds[i] != fds[0] && !table_has_fd(t, fds[i])) {
            close(fds[i]);
        }
    }
}

bool attach_parse_hello(const uint8_t *body, size_t len, const int *fds,
                        size_t nfds, struct attach_info *info, GError **err)
{
    Postcopy__Attach__Hello *h;
    struct attach_info tmp;
    bool ok = false;

    h = postcopy__attach__hello__unpack(NULL, len, body);
    if (!h) {
        attach_fail(err, "attach: malformed hello (%zu bytes)", len);
        return false;
    }
    attach_info_init(&tmp);
    if (!hello_check(h, fds, nfds, err) ||
        !hello_regions(h, fds, nfds, &tmp.regions, err) ||
        !own_region_fds(&tmp.regions, err)) {
        /* The fds are borrowed: forget them without closing. */
        region_table_init(&tmp.regions);
        goto out;
    }
    g_strlcpy(tmp.vm_name, h->vm_name, sizeof(tmp.vm_name));
    tmp.pid = h->pid;
    tmp.incoming = h->incoming;
    tmp.uffd_features = h->uffd_features;
    tmp.uffd = fds[0];
    close_unused_fds(&tmp.regions, fds, nfds);
    *info = tmp;
    ok = true;
out:
    postcopy__attach__hello__free_unpacked(h, NULL);
    return ok;
}

/* ---- the daemon's side of the socket ---- */

static bool peer_pid(int sock, pid_t *pid, GError **err)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        int e = errno;

        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e),
                    "attach: cannot get the peer's pid (SO_PEERCRED): %s",
                    g_strerror(e));
        return false;
    }
    *pid = cred.pid;
    return true;
}

static bool recv_hello(int sock, struct attach_info *info, GError **err)
{
    struct vm_frame f;
    pid_t peer = 0;
    bool ok = false;

    if (!vm_channel_recv(sock, &f, err)) {
        return false;
    }
    if (f.type != VM_FRAME_HELLO) {
        attach_fail(err, "attach: expected a hello frame, got frame type %d",
                    (int)f.type);
        goto out;
    }
    if (!attach_parse_hello(f.body, f.len, f.fds, f.nfds, info, err)) {
        goto out;
    }
    f.nfds = 0; /* @info owns them now */
    ok = true;
    /* A pid from another namespace reads as 0: nothing to compare. */
    if (peer_pid(sock, &peer, NULL) && peer > 0 && peer != info->pid) {
        attach_fail(err, "attach: hello claims pid %d but the peer is pid %d",
                    (int)info->pid, (int)peer);
        ok = false;
    }
    if (ok && !attach_check_fds(info, err)) {
        ok = false;
    }
    if (!ok) {
        attach_info_clear(info);
    }
out:
    vm_frame_clear(&f);
    return ok;
}

/*
 * Whether @s could still grow into a JSON document: an open string or
 * bracket, or nothing but whitespace so far.  Text that is complete but
 * wrong is left to the parser to report.
 */
static bool json_incomplete(const char *s, size_t len)
{
    bool in_string = false, escaped = false, seen = false;
    long depth = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (!g_ascii_isspace(c)) {
            seen = true;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return !seen || in_string || depth > 0;
}

/*
 * Firecracker sends the JSON and the uffd in one sendmsg and then waits
 * with the socket open, so read until the text is complete, not to EOF.
 */
static bool recv_firecracker(int sock, struct attach_info *info, GError **err)
{
    g_autofree char *buf = g_malloc(ATTACH_JSON_MAX);
    struct vm_frame f = {0};
    size_t got = 0;
    bool ok = false;
    pid_t peer;

    while (got < ATTACH_JSON_MAX) {
        ssize_t n = vm_channel_recv_bytes(sock, buf + got,
                                          ATTACH_JSON_MAX - got, &f, err);

        if (n < 0) {
            goto out;
        }
        got += n;
        if (n == 0 || !json_incomplete(buf, got)) {
            break;
        }
    }
    if (got == ATTACH_JSON_MAX && json_incomplete(buf, got)) {
        attach_fail(err, "attach: Firecracker JSON exceeds %u bytes",
                    ATTACH_JSON_MAX);
        goto out;
    }
    if (!peer_pid(sock, &peer, err) ||
        !attach_parse_firecracker(buf, got, f.fds, f.nfds, info, err)) {
        goto out;
    }
    f.nfds = 0; /* @info owns the uffd now */
    info->pid = peer;
    if (!info->vm_name[0]) {
        g_snprintf(info->vm_name, sizeof(info->vm_name), "firecracker-%d",
                   (int)peer);
    }
    ok = attach_check_fds(info, err);
    if (!ok) {
        attach_info_clear(info);
    }
out:
    vm_frame_clear(&f);
    return ok;
}

bool attach_recv(int sock, struct attach_info *info, GError **err)
{
    char c;
    ssize_t n;

    do {
        n = recv(sock, &c, 1, MSG_PEEK);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;

        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e),
                    "attach: receive failed: %s", g_strerror(e));
        return false;
    }
    if (n == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                    "attach: peer closed the attach socket");
        return false;
    }
    if (c == '[' || c == '{' || g_ascii_isspace(c)) {
        return recv_firecracker(sock, info, err);
    }
    return recv_hello(sock, info, err);
}

/* ---- the VMM's side ---- */

/* Index of @fd in @fds, appending it when new; -1 when there is no room. */
static int fd_slot(int *fds, size_t *nfds, int fd)
{
    for (size_t i = 1; i < *nfds; i++) {
        if (fds[i] == fd) {
            return i;
        }
    }
    if (*nfds >= VM_CHANNEL_MAX_FDS) {
        return -1;
    }
    fds[*nfds] = fd;
    return (*nfds)++;
}

bool attach_send_hello(int sock, const char *vm_name, bool incoming, int uffd,
                       uint64_t uffd_features, const struct region *regions,
                       size_t n, GError **err)
{
    Postcopy__Attach__Hello h = POSTCOPY__ATTACH__HELLO__INIT;
    Postcopy__Attach__Region rm[REGION_MAX];
    Postcopy__Attach__Region *rp[REGION_MAX];
    int fds[VM_CHANNEL_MAX_FDS] = {uffd};
    size_t nfds = 1;

    if (n > REGION_MAX) {
        attach_fail(err, "attach: %zu regions exceed the limit of %d", n,
                    REGION_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const struct region *r = &regions[i];

        rm[i] = (Postcopy__Attach__Region)POSTCOPY__ATTACH__REGION__INIT;
        rm[i].host_addr = r->base;
        rm[i].size = r->size;
        rm[i].offset = r->offset;
        rm[i].page_size = r->page_size;
        rm[i].backing = (Postcopy__Attach__Backing)r->kind;
        rm[i].name = (char *)r->name;
        rm[i].fd_index = -1;
        if (r->kind != BACKING_ANON) {
            rm[i].fd_index = fd_slot(fds, &nfds, r->fd);
        }
        if (r->kind != BACKING_ANON && rm[i].fd_index < 0) {
            attach_fail(err, "attach: the regions need more than %d fds",
                        VM_CHANNEL_MAX_FDS);
            return false;
        }
        rp[i] = &rm[i];
    }
    h.version = ATTACH_VERSION;
    h.vm_name = (char *)(vm_name ? vm_name : "");
    h.pid = getpid();
    h.incoming = incoming;
    h.uffd_features = uffd_features;
    h.n_regions = n;
    h.regions = rp;
    return vm_channel_send(sock, VM_FRAME_HELLO, &h.base, fds, nfds, err);
}
