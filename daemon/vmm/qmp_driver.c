/* qmp_driver.c - see qmp_driver.h. */
#include "qmp_driver.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The device state in or out: ~300 KB, but a loaded host is slow. */
#define MIGRATE_TIMEOUT_MS 30000
/* The device state is a few hundred KB; refuse a stream this big. */
#define STATE_MAX         (256u << 20)
#define STATE_CHUNK       (64u << 10)
#define MIG_FDNAME        "postcopyd-mig"
#define MIG_URI           "fd:" MIG_FDNAME
#define MIG_MAX_BANDWIDTH (1ll << 40)

struct qmp_driver {
    struct vmm_driver base;
    /* qmp_ops, named after the channel (query-vms shows the name). */
    struct vmm_driver_ops ops;
    struct qmp_channel *ch;
    pid_t pid;
    bool incoming;
    bool carry_on; /* qmp_driver_carry_on() */
    /* Destination: migrate-incoming already waits on the other end. */
    int incoming_fd;
    /* An outgoing migrate was started and has not ended. */
    bool migrating;
    struct qmp_driver_times times;
};

static const char *const mig_end[] = {"completed", "failed", "cancelled", NULL};

static struct qmp_driver *qd(struct vmm_driver *drv)
{
    return (struct qmp_driver *)drv;
}

static bool fail(struct qmp_driver *d, GError **err)
{
    g_prefix_error(err, "%s: ", d->ch->label);
    return false;
}

static JsonObject *args_str(const char *key, const char *val)
{
    JsonObject *a = json_object_new();

    json_object_set_string_member(a, key, val);
    return a;
}

/* The run state query-status reports ("running", "paused", ...). */
static char *query_status(struct qmp_driver *d, GError **err)
{
    g_autoptr(JsonNode) ret = NULL;
    const char *status;

    if (!qmp_channel_execute(d->ch, "query-status", NULL, &ret, err)) {
        return NULL;
    }
    status = JSON_NODE_HOLDS_OBJECT(ret)
                 ? qmp_member_string(json_node_get_object(ret), "status")
                 : NULL;
    if (!status) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "query-status: no status in QEMU's reply");
        return NULL;
    }
    return g_strdup(status);
}

static bool cont_and_check(struct qmp_driver *d, GError **err)
{
    g_autofree char *status = NULL;

    if (!qmp_channel_execute(d->ch, "cont", NULL, NULL, err)) {
        return false;
    }
    status = query_status(d, err);
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

/*
 * x-ignore-shared keeps shared RAM out of QEMU's stream (postcopyd moves
 * it); "events" because QEMU 7.2 sends MIGRATION events only with it.
 */
static bool set_capabilities(struct qmp_driver *d, GError **err)
{
    static const char *const caps[] = {"x-ignore-shared", "events"};
    g_autoptr(JsonObject) args = json_object_new();
    JsonArray *list = json_array_new();

    for (size_t i = 0; i < G_N_ELEMENTS(caps); i++) {
        JsonObject *c = json_object_new();

        json_object_set_string_member(c, "capability", caps[i]);
        json_object_set_boolean_member(c, "state", TRUE);
        json_array_add_object_element(list, c);
    }
    json_object_set_array_member(args, "capabilities", list);
    return qmp_channel_execute(d->ch, "migrate-set-capabilities", args, NULL,
                               err);
}

/*
 * QEMU's stream carries only device state and the few small RAM blocks
 * that are not shared (firmware, option ROMs): no reason to throttle it
 * to QEMU's default 128 MiB/s.
 */
static bool set_parameters(struct qmp_driver *d, GError **err)
{
    g_autoptr(JsonObject) args = json_object_new();

    json_object_set_int_member(args, "max-bandwidth", MIG_MAX_BANDWIDTH);
    return qmp_channel_execute(d->ch, "migrate-set-parameters", args, NULL,
                               err);
}

static GPtrArray *query_memdevs(struct qmp_driver *d, GError **err)
{
    g_autoptr(JsonNode) ret = NULL;

    if (!qmp_channel_execute(d->ch, "query-memdev", NULL, &ret, err)) {
        return NULL;
    }
    return qmp_memdevs_from_reply(ret, d->ch->ram_hint, err);
}

/* A destination must still wait for its migration (-incoming defer). */
static bool check_incoming(struct qmp_driver *d, GError **err)
{
    g_autofree char *status = query_status(d, err);

    if (!status) {
        return false;
    }
    if (strcmp(status, "inmigrate") != 0) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "an incoming VM is %s, not inmigrate: start QEMU with "
                    "-incoming defer",
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
 * QEMU's pid, when the channel did not come with it (libvirt), from its
 * first vCPU thread: through QMP like every other question, and right
 * whatever libvirt's run directory is.
 */
static bool find_pid(struct qmp_driver *d, GError **err)
{
    g_autoptr(JsonNode) ret = NULL;
    JsonArray *a;
    JsonObject *cpu;

    if (d->pid > 0) {
        return true;
    }
    if (!qmp_channel_execute(d->ch, "query-cpus-fast", NULL, &ret, err)) {
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

void qmp_driver_carry_on(struct vmm_driver *drv)
{
    qd(drv)->carry_on = true;
    drv->discard_incoming_ram = false;
}

bool qmp_driver_prepare(struct vmm_driver *drv, GPtrArray **memdevs,
                        GError **err)
{
    struct qmp_driver *d = qd(drv);
    g_autoptr(GPtrArray) list = query_memdevs(d, err);

    if (!list || (d->incoming && !d->carry_on && !check_incoming(d, err)) ||
        !set_capabilities(d, err) || !set_parameters(d, err) ||
        !find_pid(d, err)) {
        return fail(d, err);
    }
    if (memdevs) {
        *memdevs = g_steal_pointer(&list);
    }
    return true;
}

/* A socketpair whose other end QEMU holds as MIG_FDNAME; returns ours. */
static int hand_fd(struct qmp_driver *d, GError **err)
{
    g_autoptr(JsonObject) args = args_str("fdname", MIG_FDNAME);
    int sv[2];
    bool ok;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED, "socketpair: %s",
                    g_strerror(errno));
        return -1;
    }
    ok = qmp_channel_execute_fd(d->ch, "getfd", args, sv[1], NULL, err);
    close(sv[1]);
    if (!ok) {
        close(sv[0]);
        return -1;
    }
    return sv[0];
}

/*
 * QEMU's reason for a failed migration, from query-migrate.  A 7.2
 * destination gives none there: it prints it on stderr and exits.
 */
static char *migrate_error(struct qmp_driver *d)
{
    g_autoptr(JsonNode) ret = NULL;
    const char *desc = NULL;

    if (qmp_channel_execute(d->ch, "query-migrate", NULL, &ret, NULL) &&
        JSON_NODE_HOLDS_OBJECT(ret)) {
        desc = qmp_member_string(json_node_get_object(ret), "error-desc");
    }
    return desc ? qmp_printable(desc)
                : g_strdup("QEMU gave no reason on QMP (see its stderr)");
}

/* A MIGRATION event that ended the migration, checked for success. */
static bool migration_result(struct qmp_driver *d, struct qmp_event *ev,
                             GError **err)
{
    const char *status = qmp_member_string(ev->data, "status");
    g_autofree char *why = NULL;

    d->migrating = false;
    if (strcmp(status, "completed") == 0) {
        return true;
    }
    why = migrate_error(d);
    g_strdelimit(why, "\r\n", ' ');
    g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED, "migration %s: %s", status,
                why);
    return false;
}

static bool wait_migration(struct qmp_driver *d, GError **err)
{
    g_autoptr(QmpEvent) ev =
        qmp_channel_wait_event(d->ch, "MIGRATION", qmp_match_status,
                               (void *)mig_end, MIGRATE_TIMEOUT_MS, err);

    return ev && migration_result(d, ev, err);
}

/* Poll @fd for @events and QMP; QMP's input is read meanwhile. */
static bool poll_both(struct qmp_driver *d, int fd, short events,
                      int64_t deadline, GError **err)
{
    struct pollfd p[2] = {
        {.fd = fd, .events = events},
        {.fd = qmp_channel_event_fd(d->ch), .events = POLLIN}};
    int64_t left = (deadline - g_get_monotonic_time()) / 1000;

    if (left <= 0 || poll(p, 2, (int)left) == 0) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_TIMEOUT,
                    "the device state did not move in %d ms",
                    MIGRATE_TIMEOUT_MS);
        return false;
    }
    return !(p[1].revents & (POLLIN | POLLHUP)) || qmp_channel_pump(d->ch, err);
}

/* A migration that ended before the stream did is a failure. */
static bool check_not_ended(struct qmp_driver *d, GError **err)
{
    GError *local = NULL;
    g_autoptr(QmpEvent) ev = qmp_channel_take_event(
        d->ch, "MIGRATION", qmp_match_status,
        (void *)(const char *const[]){"failed", "cancelled", NULL}, &local);

    if (local) {
        g_propagate_error(err, local);
        return false;
    }
    if (!ev) {
        return true;
    }
    return migration_result(d, ev, err);
}

/* Our end of the stream until QEMU closes its end. */
static GByteArray *read_state(struct qmp_driver *d, int fd, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + MIGRATE_TIMEOUT_MS * 1000ll;
    g_autoptr(GByteArray) buf = g_byte_array_new();
    uint8_t chunk[STATE_CHUNK];

    for (;;) {
        ssize_t n;

        if (!poll_both(d, fd, POLLIN, deadline, err) ||
            !check_not_ended(d, err)) {
            return NULL;
        }
        n = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
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

static bool send_state(struct qmp_driver *d, int fd, const uint8_t *state,
                       size_t len, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + MIGRATE_TIMEOUT_MS * 1000ll;

    while (len) {
        ssize_t n;

        if (!poll_both(d, fd, POLLOUT, deadline, err) ||
            !check_not_ended(d, err)) {
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

/*
 * When the vCPUs stopped, on the monotonic clock: QEMU stamps its STOP
 * event with the real-time clock.  0 if it did not stop after @since_real
 * (it was stopped already).
 */
static int64_t stopped_at(struct qmp_driver *d, int64_t since_real)
{
    int64_t stop_real = qmp_channel_last_event_us(d->ch, "STOP");

    if (stop_real < since_real) {
        return 0;
    }
    return g_get_monotonic_time() - (g_get_real_time() - stop_real);
}

/*
 * No `stop` first: QEMU sets its migration up while the guest runs and
 * stops the vCPUs itself when it completes, with nothing but device state
 * (and the small unshared RAM) left to send; the STOP event says when.
 * That takes a QMP round trip and QEMU's migration set-up out of the
 * downtime.  Our dirty tracker still runs until pause returns.
 */
static bool do_pause(struct qmp_driver *d, uint8_t **state, size_t *len,
                     GError **err)
{
    g_autoptr(JsonObject) args = args_str("uri", MIG_URI);
    g_autoptr(GByteArray) buf = NULL;
    int64_t since = g_get_real_time();
    int fd;

    fd = hand_fd(d, err);
    if (fd < 0) {
        return false;
    }
    if (!qmp_channel_execute(d->ch, "migrate", args, NULL, err)) {
        close(fd);
        return false;
    }
    d->migrating = true;
    buf = read_state(d, fd, err);
    close(fd);
    if (!buf || !wait_migration(d, err)) {
        return false;
    }
    d->base.stopped_us = stopped_at(d, since);
    *len = buf->len;
    *state = g_byte_array_free(g_steal_pointer(&buf), FALSE);
    return true;
}

static bool qmp_pause(struct vmm_driver *drv, uint8_t **state, size_t *len,
                      GError **err)
{
    struct qmp_driver *d = qd(drv);
    int64_t t0 = g_get_monotonic_time();

    if (!do_pause(d, state, len, err)) {
        return fail(d, err);
    }
    d->times.pause_us = g_get_monotonic_time() - t0;
    d->times.state_bytes = (int64_t)*len;
    return true;
}

/*
 * migrate-incoming on one end of a socketpair; ours is d->incoming_fd.
 * Then `cont`, which QEMU takes while it waits (inmigrate) as "start the
 * guest once the state is loaded": a QEMU started with -S, as libvirt
 * starts every domain, then needs no `cont` in the downtime either (a
 * libvirt round trip of 10-30 ms here).  A state saying the source was
 * paused still leaves the guest paused.
 */
static bool arm_incoming(struct qmp_driver *d, GError **err)
{
    g_autoptr(JsonObject) args = args_str("uri", MIG_URI);
    int fd;

    if (d->incoming_fd >= 0) {
        return true;
    }
    fd = hand_fd(d, err);
    if (fd < 0) {
        return false;
    }
    if (!qmp_channel_execute(d->ch, "migrate-incoming", args, NULL, err) ||
        !qmp_channel_execute(d->ch, "cont", NULL, NULL, err)) {
        close(fd);
        return false;
    }
    d->incoming_fd = fd;
    return true;
}

/*
 * Before the migration's first page: QEMU then waits for its device state
 * on a socket of ours, and the downtime only writes it.  The price: QEMU
 * 7.2 exits when an incoming migration fails, so if this daemon dies
 * before the switchover the destination QEMU goes with it (the source VM
 * runs on; a new destination QEMU is needed for the next try).
 */
static bool qmp_expect_incoming(struct vmm_driver *drv, GError **err)
{
    struct qmp_driver *d = qd(drv);

    return arm_incoming(d, err) || fail(d, err);
}

/*
 * QEMU 7.2 exits when an incoming migration fails, so its QMP socket
 * closing here means the state did not load (its stderr says why).
 * The source QEMU stopped itself while running (do_pause), so the state
 * says "running" and QEMU starts the guest as soon as it is loaded
 * (arm_incoming): a RESUME event, before the MIGRATION event that says
 * completed, and no `cont` to send.
 */
static bool load_state(struct qmp_driver *d, const uint8_t *state, size_t len,
                       GError **err)
{
    g_autoptr(QmpEvent) resumed = NULL;
    bool ok;

    if (!arm_incoming(d, err)) {
        return false;
    }
    d->migrating = true;
    ok = send_state(d, d->incoming_fd, state, len, err) &&
         wait_migration(d, err);
    close(d->incoming_fd);
    d->incoming_fd = -1;
    if (!ok) {
        g_prefix_error(err, "loading the device state: ");
        return false;
    }
    resumed = qmp_channel_take_event(d->ch, "RESUME", NULL, NULL, NULL);
    return resumed || cont_and_check(d, err);
}

/* A source whose outgoing migrate may still run: cancel it first. */
static bool stop_outgoing(struct qmp_driver *d, GError **err)
{
    g_autoptr(QmpEvent) ev = NULL;

    if (!d->migrating) {
        return true;
    }
    if (!qmp_channel_execute(d->ch, "migrate_cancel", NULL, NULL, err)) {
        return false;
    }
    ev = qmp_channel_wait_event(d->ch, "MIGRATION", qmp_match_status,
                                (void *)mig_end, MIGRATE_TIMEOUT_MS, err);
    d->migrating = false;
    return ev != NULL;
}

/*
 * A source after a completed outgoing migrate is "postmigrate": QEMU 7.2
 * takes cont from there (measured), so both cases end the same way.
 */
static bool qmp_resume(struct vmm_driver *drv, const uint8_t *state, size_t len,
                       GError **err)
{
    struct qmp_driver *d = qd(drv);
    int64_t t0 = g_get_monotonic_time();
    bool ok;

    if (state) {
        ok = load_state(d, state, len, err);
    } else {
        ok = stop_outgoing(d, err) && cont_and_check(d, err);
    }
    if (!ok) {
        return fail(d, err);
    }
    d->times.resume_us = g_get_monotonic_time() - t0;
    return true;
}

static bool qmp_ping(struct vmm_driver *drv, GError **err)
{
    struct qmp_driver *d = qd(drv);
    g_autofree char *status = query_status(d, err);

    return status || fail(d, err);
}

static bool qmp_quit(struct vmm_driver *drv, GError **err)
{
    struct qmp_driver *d = qd(drv);

    return qmp_channel_quit(d->ch, err) || fail(d, err);
}

/* A zombie still answers kill(pid, 0): its state says it is gone. */
bool qmp_driver_pid_gone(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree char *stat = NULL;
    const char *end;

    if (kill(pid, 0) < 0 && errno == ESRCH) {
        return true;
    }
    if (!g_file_get_contents(path, &stat, NULL, NULL)) {
        return false;
    }
    end = strrchr(stat, ')');
    return end && (end[1] == ' ') && (end[2] == 'Z' || end[2] == 'X');
}

static bool qmp_gone(struct vmm_driver *drv)
{
    struct qmp_driver *d = qd(drv);

    return qmp_channel_closed(d->ch) ||
           (d->pid > 0 && qmp_driver_pid_gone(d->pid));
}

static void qmp_driver_free(struct vmm_driver *drv)
{
    if (qd(drv)->incoming_fd >= 0) {
        close(qd(drv)->incoming_fd);
    }
    qmp_channel_free(qd(drv)->ch);
    g_free(drv);
}

static const struct vmm_driver_ops qmp_ops = {
    .pause = qmp_pause,
    .resume = qmp_resume,
    .expect_incoming = qmp_expect_incoming,
    .ping = qmp_ping,
    .quit = qmp_quit,
    .gone = qmp_gone,
    .free = qmp_driver_free,
};

struct vmm_driver *qmp_driver_new(struct qmp_channel *ch, pid_t pid,
                                  bool incoming)
{
    struct qmp_driver *d = g_new0(struct qmp_driver, 1);

    d->ops = qmp_ops;
    d->ops.name = ch->ops->vmm_name;
    d->base.ops = &d->ops;
    d->base.discard_incoming_ram = incoming;
    d->base.quit_when_moved = true;
    d->ch = ch;
    d->pid = pid;
    d->incoming = incoming;
    d->incoming_fd = -1;
    return &d->base;
}

void qmp_driver_get_times(struct vmm_driver *drv, struct qmp_driver_times *t)
{
    struct qmp_driver *d = qd(drv);

    *t = d->times;
    t->stop_event_us = qmp_channel_last_event_us(d->ch, "STOP");
    t->resume_event_us = qmp_channel_last_event_us(d->ch, "RESUME");
}

bool qmp_driver_execute(struct vmm_driver *drv, const char *cmd,
                        JsonObject *args, JsonNode **ret, GError **err)
{
    return qmp_channel_execute(qd(drv)->ch, cmd, args, ret, err);
}

pid_t qmp_driver_pid(struct vmm_driver *drv)
{
    return qd(drv)->pid;
}
