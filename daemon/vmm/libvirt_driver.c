/* libvirt_driver.c - see libvirt_driver.h. */
#include "libvirt_driver.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "qmp.h"
#include "qmp_driver.h"

/* The device state in or out: ~300 KB, but a loaded host is slow. */
#define MIGRATE_TIMEOUT_MS 30000
/* query-migrate while QEMU finishes its side of the stream. */
#define MIGRATE_POLL_US 2000
#define STATE_MAX       (256u << 20)
#define STATE_CHUNK     (64u << 10)
#define MIG_FDNAME      "postcopyd-mig"
#define MIG_URI         "fd:" MIG_FDNAME

#define RAM_HINT "add " LIBVIRT_SHARED_RAM_XML " to the domain XML"

struct libvirt_driver {
    struct vmm_driver base;
    virConnectPtr conn;
    virDomainPtr dom;
    char *name;
    pid_t pid;
    bool incoming;
    /* An outgoing migrate was started and has not ended. */
    bool migrating;
};

static struct libvirt_driver *lv(struct vmm_driver *drv)
{
    return (struct libvirt_driver *)drv;
}

static bool fail(struct libvirt_driver *d, GError **err)
{
    g_prefix_error(err, "libvirt domain %s: ", d->name);
    return false;
}

/* libvirt's last error on this thread, as a one-line GError. */
static void set_virt_error(GError **err, const char *what)
{
    g_autofree char *msg = g_strdup(virGetLastErrorMessage());

    g_strdelimit(msg, "\r\n", ' ');
    g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED, "%s: %s", what, msg);
}

static char *command_text(const char *cmd, JsonObject *args)
{
    g_autoptr(JsonObject) o = json_object_new();
    g_autoptr(JsonNode) n = json_node_new(JSON_NODE_OBJECT);

    json_object_set_string_member(o, "execute", cmd);
    if (args) {
        json_object_set_object_member(o, "arguments", json_object_ref(args));
    }
    json_node_set_object(n, o);
    return json_to_string(n, FALSE);
}

/* QEMU's reply as libvirt passed it on: "return", or "error" with desc. */
static bool parse_reply(const char *cmd, const char *text, JsonNode **ret,
                        GError **err)
{
    g_autoptr(JsonNode) root = json_from_string(text, NULL);
    JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root)
                        ? json_node_get_object(root)
                        : NULL;
    JsonObject *e = qmp_member_object(o, "error");
    JsonNode *r = o ? json_object_get_member(o, "return") : NULL;

    if (e) {
        const char *desc = qmp_member_string(e, "desc");
        g_autofree char *line = qmp_printable(desc ? desc : "no description");

        g_set_error(err, QMP_ERROR, QMP_ERROR_COMMAND, "%s: %s", cmd, line);
        return false;
    }
    if (!r) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "%s: no return in QEMU's reply", cmd);
        return false;
    }
    if (ret) {
        *ret = json_node_copy(r);
    }
    return true;
}

/* One command, with @fd (>= 0) passed along as for getfd. */
static bool execute_fd(struct libvirt_driver *d, const char *cmd,
                       JsonObject *args, int fd, JsonNode **ret, GError **err)
{
    g_autofree char *text = command_text(cmd, args);
    char *reply = NULL;
    int rc;

    if (fd >= 0) {
        rc = virDomainQemuMonitorCommandWithFiles(d->dom, text, 1, &fd, NULL,
                                                  NULL, &reply, 0);
    } else {
        rc = virDomainQemuMonitorCommand(d->dom, text, &reply, 0);
    }
    if (rc < 0) {
        set_virt_error(err, cmd);
        return false;
    }
    rc = parse_reply(cmd, reply, ret, err);
    free(reply);
    return rc;
}

bool libvirt_driver_execute(struct vmm_driver *drv, const char *cmd,
                            JsonObject *args, JsonNode **ret, GError **err)
{
    return execute_fd(lv(drv), cmd, args, -1, ret, err);
}

static bool execute(struct libvirt_driver *d, const char *cmd, JsonObject *args,
                    JsonNode **ret, GError **err)
{
    return execute_fd(d, cmd, args, -1, ret, err);
}

static JsonObject *args_str(const char *key, const char *val)
{
    JsonObject *a = json_object_new();

    json_object_set_string_member(a, key, val);
    return a;
}

/* The member @name of the object @ret (query-status, query-migrate). */
static char *reply_string(struct libvirt_driver *d, const char *cmd,
                          const char *name, GError **err)
{
    g_autoptr(JsonNode) ret = NULL;
    const char *s;

    if (!execute(d, cmd, NULL, &ret, err)) {
        return NULL;
    }
    s = JSON_NODE_HOLDS_OBJECT(ret)
            ? qmp_member_string(json_node_get_object(ret), name)
            : NULL;
    return g_strdup(s ? s : "");
}

static bool cont_and_check(struct libvirt_driver *d, GError **err)
{
    g_autofree char *status = NULL;

    if (!execute(d, "cont", NULL, NULL, err)) {
        return false;
    }
    status = reply_string(d, "query-status", "status", err);
    if (!status) {
        return false;
    }
    if (strcmp(status, "running") != 0) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "the VM is %s after cont, not running", status);
        return false;
    }
    return true;
}

/* x-ignore-shared keeps shared RAM out of QEMU's stream. */
static bool set_capabilities(struct libvirt_driver *d, GError **err)
{
    g_autoptr(JsonObject) args = json_object_new();
    JsonArray *list = json_array_new();
    JsonObject *c = json_object_new();

    json_object_set_string_member(c, "capability", "x-ignore-shared");
    json_object_set_boolean_member(c, "state", TRUE);
    json_array_add_object_element(list, c);
    json_object_set_array_member(args, "capabilities", list);
    return execute(d, "migrate-set-capabilities", args, NULL, err);
}

static bool check_incoming(struct libvirt_driver *d, GError **err)
{
    g_autofree char *status = reply_string(d, "query-status", "status", err);

    if (!status) {
        return false;
    }
    if (strcmp(status, "inmigrate") != 0) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "an incoming domain is %s, not inmigrate: start it "
                    "paused with QEMU's -incoming defer",
                    status);
        return false;
    }
    return true;
}

/* The process that owns @tid (Tgid in /proc/TID/status). */
static pid_t tgid_of(int64_t tid)
{
    g_autofree char *path =
        g_strdup_printf("/proc/%" G_GINT64_FORMAT "/status", tid);
    g_autofree char *text = NULL;
    const char *t;

    if (tid <= 0 || !g_file_get_contents(path, &text, NULL, NULL)) {
        return 0;
    }
    t = strstr(text, "\nTgid:");
    return t ? (pid_t)g_ascii_strtoll(t + 6, NULL, 10) : 0;
}

/*
 * QEMU's pid from its first vCPU thread: through libvirt, like every
 * other question, and right whatever libvirt's run directory is.
 */
static bool find_pid(struct libvirt_driver *d, GError **err)
{
    g_autoptr(JsonNode) ret = NULL;
    JsonArray *a;
    JsonObject *cpu;

    if (!execute(d, "query-cpus-fast", NULL, &ret, err)) {
        return false;
    }
    a = JSON_NODE_HOLDS_ARRAY(ret) ? json_node_get_array(ret) : NULL;
    cpu = a && json_array_get_length(a) ? json_array_get_object_element(a, 0)
                                        : NULL;
    d->pid = cpu ? tgid_of(json_object_get_int_member_with_default(
                       cpu, "thread-id", 0))
                 : 0;
    if (d->pid <= 0) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "no QEMU process found from query-cpus-fast (is it on "
                    "this host?)");
        return false;
    }
    return true;
}

bool libvirt_driver_prepare(struct vmm_driver *drv, GPtrArray **memdevs,
                            pid_t *pid, GError **err)
{
    struct libvirt_driver *d = lv(drv);
    g_autoptr(JsonNode) ret = NULL;
    g_autoptr(GPtrArray) list = NULL;

    if (!execute(d, "query-memdev", NULL, &ret, err)) {
        return fail(d, err);
    }
    list = qmp_memdevs_from_reply(ret, RAM_HINT, err);
    if (!list || (d->incoming && !check_incoming(d, err)) ||
        !set_capabilities(d, err) || !find_pid(d, err)) {
        return fail(d, err);
    }
    *pid = d->pid;
    if (memdevs) {
        *memdevs = g_steal_pointer(&list);
    }
    return true;
}

/* A socketpair whose other end QEMU holds as MIG_FDNAME; returns ours. */
static int hand_fd(struct libvirt_driver *d, GError **err)
{
    g_autoptr(JsonObject) args = args_str("fdname", MIG_FDNAME);
    int sv[2];
    bool ok;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED, "socketpair: %s",
                    g_strerror(errno));
        return -1;
    }
    ok = execute_fd(d, "getfd", args, sv[1], NULL, err);
    close(sv[1]);
    if (!ok) {
        close(sv[0]);
        return -1;
    }
    return sv[0];
}

/*
 * Until query-migrate says the migration ended; libvirt does not pass
 * QMP events on to us.  A destination that failed exits (QEMU 7.2), so
 * libvirt's error then says the domain is gone.
 */
static bool wait_migration(struct libvirt_driver *d, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + MIGRATE_TIMEOUT_MS * 1000ll;

    for (;;) {
        g_autoptr(JsonNode) ret = NULL;
        JsonObject *o;
        const char *status;

        if (!execute(d, "query-migrate", NULL, &ret, err)) {
            return false;
        }
        o = JSON_NODE_HOLDS_OBJECT(ret) ? json_node_get_object(ret) : NULL;
        status = qmp_member_string(o, "status");
        if (status && strcmp(status, "completed") == 0) {
            d->migrating = false;
            return true;
        }
        if (status && (strcmp(status, "failed") == 0 ||
                       strcmp(status, "cancelled") == 0)) {
            const char *desc = qmp_member_string(o, "error-desc");
            g_autofree char *why = qmp_printable(desc ? desc : "no reason");

            d->migrating = false;
            g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED, "migration %s: %s",
                        status, why);
            return false;
        }
        if (g_get_monotonic_time() > deadline) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_TIMEOUT,
                        "the migration did not end in %d ms",
                        MIGRATE_TIMEOUT_MS);
            return false;
        }
        g_usleep(MIGRATE_POLL_US);
    }
}

static bool poll_fd(int fd, short events, int64_t deadline, GError **err)
{
    struct pollfd p = {.fd = fd, .events = events};
    int64_t left = (deadline - g_get_monotonic_time()) / 1000;
    int n;

    do {
        n = left > 0 ? poll(&p, 1, (int)left) : 0;
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_TIMEOUT,
                    "the device state did not move in %d ms",
                    MIGRATE_TIMEOUT_MS);
        return false;
    }
    return true;
}

/* Our end of the stream until QEMU closes its end. */
static GByteArray *read_state(int fd, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + MIGRATE_TIMEOUT_MS * 1000ll;
    g_autoptr(GByteArray) buf = g_byte_array_new();
    g_autofree uint8_t *chunk = g_malloc(STATE_CHUNK);

    for (;;) {
        ssize_t n;

        if (!poll_fd(fd, POLLIN, deadline, err)) {
            return NULL;
        }
        n = recv(fd, chunk, STATE_CHUNK, MSG_DONTWAIT);
        if (n == 0) {
            return g_steal_pointer(&buf);
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                        "reading the device state: %s", g_strerror(errno));
            return NULL;
        }
        if (n > 0) {
            g_byte_array_append(buf, chunk, n);
        }
        if (buf->len > STATE_MAX) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                        "the device state exceeds %u bytes: is some RAM "
                        "not shared?",
                        STATE_MAX);
            return NULL;
        }
    }
}

static bool send_state(int fd, const uint8_t *state, size_t len, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + MIGRATE_TIMEOUT_MS * 1000ll;

    while (len) {
        ssize_t n;

        if (!poll_fd(fd, POLLOUT, deadline, err)) {
            return false;
        }
        n = send(fd, state, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                        "writing the device state: %s", g_strerror(errno));
            return false;
        }
        if (n > 0) {
            state += n;
            len -= n;
        }
    }
    shutdown(fd, SHUT_WR);
    return true;
}

static bool do_pause(struct libvirt_driver *d, uint8_t **state, size_t *len,
                     GError **err)
{
    g_autoptr(JsonObject) args = args_str("uri", MIG_URI);
    g_autoptr(GByteArray) buf = NULL;
    int fd;

    if (!execute(d, "stop", NULL, NULL, err)) {
        return false;
    }
    fd = hand_fd(d, err);
    if (fd < 0) {
        return false;
    }
    if (!execute(d, "migrate", args, NULL, err)) {
        close(fd);
        return false;
    }
    d->migrating = true;
    buf = read_state(fd, err);
    close(fd);
    if (!buf || !wait_migration(d, err)) {
        return false;
    }
    *len = buf->len;
    *state = g_byte_array_free(g_steal_pointer(&buf), FALSE);
    return true;
}

static bool lv_pause(struct vmm_driver *drv, uint8_t **state, size_t *len,
                     GError **err)
{
    struct libvirt_driver *d = lv(drv);

    return do_pause(d, state, len, err) || fail(d, err);
}

static bool load_state(struct libvirt_driver *d, const uint8_t *state,
                       size_t len, GError **err)
{
    g_autoptr(JsonObject) args = args_str("uri", MIG_URI);
    int fd = hand_fd(d, err);
    bool ok;

    if (fd < 0) {
        return false;
    }
    if (!execute(d, "migrate-incoming", args, NULL, err)) {
        close(fd);
        return false;
    }
    d->migrating = true;
    ok = send_state(fd, state, len, err) && wait_migration(d, err);
    close(fd);
    if (!ok) {
        g_prefix_error(err, "loading the device state: ");
    }
    return ok;
}

/* A source whose outgoing migrate may still run: cancel it first. */
static bool stop_outgoing(struct libvirt_driver *d, GError **err)
{
    g_autoptr(GError) ended = NULL;

    if (!d->migrating) {
        return true;
    }
    if (!execute(d, "migrate_cancel", NULL, NULL, err)) {
        return false;
    }
    /* Cancelled is the end we want: only a timeout or libvirt fails. */
    if (!wait_migration(d, &ended) && ended->domain == QMP_ERROR &&
        ended->code != QMP_ERROR_FAILED) {
        g_propagate_error(err, g_steal_pointer(&ended));
        return false;
    }
    d->migrating = false;
    return true;
}

static bool lv_resume(struct vmm_driver *drv, const uint8_t *state, size_t len,
                      GError **err)
{
    struct libvirt_driver *d = lv(drv);
    bool ok = state ? load_state(d, state, len, err) : stop_outgoing(d, err);

    if (!ok || !cont_and_check(d, err)) {
        return fail(d, err);
    }
    return true;
}

/*
 * Through libvirt, not QMP quit: libvirt then knows the domain is shut
 * off rather than finding its QEMU gone.
 */
static bool lv_quit(struct vmm_driver *drv, GError **err)
{
    struct libvirt_driver *d = lv(drv);

    if (virDomainDestroy(d->dom) < 0) {
        set_virt_error(err, "destroy");
        return fail(d, err);
    }
    return true;
}

static bool lv_gone(struct vmm_driver *drv)
{
    struct libvirt_driver *d = lv(drv);

    return d->pid > 0 && qmp_driver_pid_gone(d->pid);
}

static void lv_free(struct vmm_driver *drv)
{
    struct libvirt_driver *d = lv(drv);

    if (d->dom) {
        virDomainFree(d->dom);
    }
    if (d->conn) {
        virConnectClose(d->conn);
    }
    g_free(d->name);
    g_free(d);
}

static const struct vmm_driver_ops libvirt_ops = {
    .name = "QEMU (libvirt)",
    .pause = lv_pause,
    .resume = lv_resume,
    .quit = lv_quit,
    .gone = lv_gone,
    .free = lv_free,
};

/* libvirt prints its errors on stderr by default: a daemon logs ours. */
static void quiet_errors(void *opaque, virErrorPtr e)
{
}

struct vmm_driver *libvirt_driver_new(const char *uri, const char *name,
                                      bool incoming, GError **err)
{
    struct libvirt_driver *d = g_new0(struct libvirt_driver, 1);

    virSetErrorFunc(NULL, quiet_errors);
    d->base.ops = &libvirt_ops;
    d->base.discard_incoming_ram = incoming;
    d->base.quit_when_moved = true;
    d->name = g_strdup(name);
    d->incoming = incoming;
    d->conn = virConnectOpen(uri);
    if (!d->conn) {
        set_virt_error(err, uri ? uri : "libvirt's default URI");
    } else if (!(d->dom = virDomainLookupByName(d->conn, name))) {
        set_virt_error(err, "lookup");
    } else if (virDomainIsActive(d->dom) != 1) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED, "not running");
    } else {
        return &d->base;
    }
    fail(d, err);
    lv_free(&d->base);
    return NULL;
}
