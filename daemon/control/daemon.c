/* daemon.c - see daemon.h. */
#include "daemon.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpu_list.h"
#include "peer_accept.h"
#include "prealloc.h"
#include "session_file.h"
#include "peer_policy.h"
#include "unix_listen.h"

#define ATTACH_HELLO_TIMEOUT_S 10
/*
 * Peer connections waiting for their handshake, each on a thread: a
 * migration opens its control, urgent and up to 8 bulk channels at once,
 * so a source host gets room for three; the total bounds the threads.
 */
/* How long a migration waits for its VM, still attaching, to be through. */
#define ATTACH_SETTLE_MS       2000
#define PREAUTH_PER_SOURCE_MAX 32
#define PREAUTH_MAX            128

static bool daemon_tls_init(struct daemon *d, GError **err)
{
    const struct postcopyd_config *cfg = d->cfg;
    struct tls_settings s = {
        .psk = &d->psk,
        .cert_file = cfg->tls_cert_file,
        .key_file = cfg->tls_key_file,
        .ca_file = cfg->tls_ca_file,
        .peer_name = cfg->tls_peer_name,
    };

    if (!tls_mode_parse(cfg->tls, &s.mode, err) ||
        !tls_context_init(&d->tls, &s, err)) {
        g_prefix_error(err, "[peer] ");
        return false;
    }
    return true;
}

/*
 * The fault path's CPUs must be ones this daemon may run on (its cgroup's,
 * systemd's CPUAffinity=): a thread bound elsewhere would be refused at
 * every migration, so say it once, at start.
 */
static bool fault_cpus_init(struct engine_params *e, const char *list,
                            GError **err)
{
    g_autofree char *allowed_list = NULL;
    cpu_set_t allowed;

    if (!cpu_list_parse(list, &e->fault_cpus, err)) {
        return false;
    }
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "reading this daemon's CPUs: %s", g_strerror(errno));
        return false;
    }
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &e->fault_cpus) && !CPU_ISSET(c, &allowed)) {
            allowed_list = cpu_list_format(&allowed);
            g_set_error(
                err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "CPU %d is not one this daemon may run on (it may run on %s)",
                c, allowed_list);
            return false;
        }
    }
    e->pin_fault_path = true;
    return true;
}

bool daemon_init(struct daemon *d, struct postcopyd_config *cfg, GError **err)
{
    memset(d, 0, sizeof(*d));
    d->cfg = cfg;
    d->attach_fd = -1;
    g_mutex_init(&d->lock);
    g_mutex_init(&d->domain_lock);
    d->vms = g_ptr_array_new();
    d->expected = g_ptr_array_new();
    g_cond_init(&d->attach_cond);
    conn_limit_init(&d->preauth, PREAUTH_PER_SOURCE_MAX, PREAUTH_MAX);
    d->migrations = g_ptr_array_new();
    migration_set_status_hook(daemon_emit_status);
    d->transport = transport_by_name(cfg->transport, err);
    if (!d->transport) {
        g_prefix_error(err, "[peer] ");
        return false;
    }
    transport_options_init(&d->topts);
    d->topts.tcp.keepalive_idle_s = cfg->keepalive_s; /* 0: no keepalive */
    d->topts.tcp.user_timeout_ms = cfg->peer_timeout_ms;
    d->engine = (struct engine_params){
        .busy_poll_us = cfg->busy_poll_us,
        .fault_priority = cfg->fault_priority,
        .state_dir = cfg->state_dir,
    };
    if (cfg->fault_cpus && !fault_cpus_init(&d->engine, cfg->fault_cpus, err)) {
        g_prefix_error(err, "[peer] fault-cpus: ");
        return false;
    }
    if (cfg->psk_file && !auth_key_load(&d->psk, cfg->psk_file, err)) {
        return false;
    }
    if (!peer_policy_check(cfg, err)) {
        return false;
    }
    d->insecure = peer_policy_insecure(cfg);
    if (d->insecure) {
        g_warning("INSECURE: listening on %s with no psk-file and no x509 "
                  "TLS (--insecure): any host that reaches it can migrate "
                  "a VM in or out",
                  cfg->listen);
    } else if (!peer_policy_authenticated(cfg)) {
        g_message("no psk-file: peers are not authenticated (loopback "
                  "listener)");
    }
    if (!daemon_tls_init(d, err)) {
        return false;
    }
    d->topts.security.tls = d->tls;
    d->topts.security.psk = &d->psk;
    if (!peercred_policy_init(&d->control_policy, cfg->control_allow_user,
                              cfg->control_allow_group, err)) {
        g_prefix_error(err, "[control] ");
        return false;
    }
    if (!peercred_policy_init(&d->attach_policy, cfg->attach_allow_user,
                              cfg->attach_allow_group, err)) {
        g_prefix_error(err, "[attach] ");
        return false;
    }
    if (g_mkdir_with_parents(cfg->state_dir, 0700)) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot create state dir %s: %s", cfg->state_dir,
                    g_strerror(errno));
        return false;
    }
    session_file_clean_orphans(cfg->state_dir);
    return uffd_probe(&d->caps, err);
}

static void vm_entry_free(struct vm_entry *vm)
{
    prealloc_free(vm->prealloc);
    attach_info_clear(&vm->info);
    vmm_driver_free(vm->driver);
    if (vm->sock >= 0) {
        close(vm->sock);
    }
    g_free(vm);
}

/*
 * Out of the registry, under d->lock: no migration points at it any more
 * (query-vms matches migrations to VMs by pointer; a new entry may get
 * the same address).
 */
static void unlink_vm(struct daemon *d, struct vm_entry *vm)
{
    g_ptr_array_remove(d->vms, vm);
    for (guint i = 0; i < d->migrations->len; i++) {
        struct migration *m = d->migrations->pdata[i];

        if (m->vm == vm) {
            m->vm = NULL;
        }
    }
}

/* A VMM whose attach socket closed is gone: forget it unless held. */
static void reap_dead_vms(struct daemon *d)
{
    for (guint i = 0; i < d->vms->len;) {
        struct vm_entry *vm = d->vms->pdata[i];

        if (!vm->busy && vmm_driver_gone(vm->driver)) {
            g_message("vm %s: %s closed, forgetting it", vm->info.vm_name,
                      vm->driver->ops->name);
            unlink_vm(d, vm);
            vm_entry_free(vm);
            continue;
        }
        i++;
    }
}

void daemon_forget_vm(struct daemon *d, struct vm_entry *vm)
{
    g_mutex_lock(&d->lock);
    unlink_vm(d, vm);
    g_mutex_unlock(&d->lock);
    g_message("vm %s: migrated away, forgetting it (%s)", vm->info.vm_name,
              vm->driver->ops->name);
    vm_entry_free(vm);
}

void daemon_reap_vms(struct daemon *d)
{
    g_mutex_lock(&d->lock);
    reap_dead_vms(d);
    g_mutex_unlock(&d->lock);
}

/*
 * A daemon that died in postcopy left a session file: the VM re-attaching
 * picks its migration up where it stood.
 */
static void restore_sessions(struct daemon *d, struct vm_entry *vm)
{
    struct session_file f;
    enum migration_role roles[] = {ROLE_DESTINATION, ROLE_SOURCE};

    for (size_t i = 0; i < G_N_ELEMENTS(roles); i++) {
        if (!session_file_find(d->cfg->state_dir, vm->info.vm_name, roles[i],
                               &f)) {
            continue;
        }
        g_mutex_lock(&d->lock);
        vm->busy = true;
        g_mutex_unlock(&d->lock);
        if (roles[i] == ROLE_DESTINATION) {
            d->roles.restore_dest(d, vm, &f);
        } else {
            d->roles.restore_source(d, vm, &f);
        }
        return;
    }
}

/*
 * A fresh incoming VM gets its RAM allocated now (prealloc.h says why);
 * not one whose migration a restarted daemon picks up again.
 */
static void start_prealloc(struct daemon *d, struct vm_entry *vm)
{
    struct session_file f;

    if (!vm->info.incoming || strcmp(d->cfg->prealloc, "on") ||
        session_file_find(d->cfg->state_dir, vm->info.vm_name, ROLE_DESTINATION,
                          &f)) {
        return;
    }
    vm->prealloc = prealloc_start(&vm->info.regions, vm->info.vm_name);
}

/*
 * Another live VMM attached under that name, in the same direction: the
 * migration would pick one of them.  Under d->lock.
 */
static struct vm_entry *name_taken(struct daemon *d, const char *name,
                                   bool incoming)
{
    reap_dead_vms(d);
    for (guint i = 0; i < d->vms->len; i++) {
        struct vm_entry *o = d->vms->pdata[i];

        if (!strcmp(o->info.vm_name, name) && o->info.incoming == incoming &&
            !o->moved) {
            return o;
        }
    }
    return NULL;
}

/*
 * False (and @vm freed) if its name is taken; else true, and @vm is in
 * d->vms if @add.  Checked before the prealloc starts, and again as the
 * VM is added, since another VMM may have come in between.
 */
static bool claim_name(struct daemon *d, struct vm_entry *vm, bool add)
{
    struct vm_entry *other;

    g_mutex_lock(&d->lock);
    other = name_taken(d, vm->info.vm_name, vm->info.incoming);
    if (!other && add) {
        g_ptr_array_add(d->vms, vm);
    }
    g_mutex_unlock(&d->lock);
    if (other) {
        g_warning("vm %s: refusing pid %d: pid %d is attached under that "
                  "name",
                  vm->info.vm_name, vm->info.pid, other->info.pid);
        vm_entry_free(vm);
    }
    return !other;
}

/* One attach hello is through (taken or refused). */
static void attach_done(struct daemon *d)
{
    g_mutex_lock(&d->lock);
    d->attaching--;
    g_cond_broadcast(&d->attach_cond);
    g_mutex_unlock(&d->lock);
}

static bool add_vm(struct daemon *d, struct vm_entry *vm);

static gpointer attach_hello_thread(gpointer opaque)
{
    struct vm_entry *vm = opaque;
    struct daemon *d = vm->daemon;
    struct timeval tv = {.tv_sec = ATTACH_HELLO_TIMEOUT_S};
    g_autoptr(GError) err = NULL;

    attach_info_init(&vm->info);
    setsockopt(vm->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (!attach_recv(vm->sock, &vm->info, &err)) {
        g_warning("attach: %s", err->message);
        vm_entry_free(vm);
        attach_done(d);
        return NULL;
    }
    tv.tv_sec = 0; /* from now on the VMM answers at its own pace */
    setsockopt(vm->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    vm->api_done = vm->info.uffd_features != 0;
    vm->driver = vmm_channel_driver_new(vm->sock);
    vm->sock = -1;
    /* A VMM that speaks our channel exits once migrated, as QEMU does;
     * one attached in the Firecracker form is not asked (it cannot be). */
    vm->driver->quit_when_moved = !vm->info.firecracker;
    add_vm(d, vm);
    attach_done(d);
    return NULL;
}

/*
 * An attached VMM joins the daemon: announced, preallocated, restored.
 * False, and @vm freed, when its name is taken.
 */
static bool add_vm(struct daemon *d, struct vm_entry *vm)
{
    if (!claim_name(d, vm, false)) {
        return false;
    }
    g_message("vm %s: attached (%s), pid %d, %zu region(s), "
              "%" G_GUINT64_FORMAT " MiB%s",
              vm->info.vm_name, vm->driver->ops->name, vm->info.pid,
              vm->info.regions.n, region_table_bytes(&vm->info.regions) >> 20,
              vm->info.incoming ? ", incoming" : "");
    start_prealloc(d, vm);
    if (!claim_name(d, vm, true)) {
        return false;
    }
    restore_sessions(d, vm);
    return true;
}

/*
 * A migration a dead daemon left carries on through the same way to QEMU:
 * a libvirt domain's through libvirt (its QMP socket is libvirt's, and
 * only libvirt's destroy leaves it knowing the domain is shut off).
 */
static bool session_matches(const struct session_file *f,
                            const struct qemu_attach_args *a, GError **err)
{
    if (!f->domain[0] || (a->domain && !strcmp(a->domain, f->domain))) {
        return true;
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "VM %s: migration %s is carried on through libvirt: attach "
                "libvirt domain %s (attach --domain), not %s",
                a->name, f->id, f->domain,
                a->domain ? "another domain" : "its QMP socket");
    return false;
}

/* The same libvirt domain, attached in the same direction already. */
static bool domain_attached(struct vm_entry *vm,
                            const struct qemu_attach_args *a)
{
    return vm && a->domain && !strcmp(vm->info.domain, a->domain);
}

static bool attach_qemu(struct daemon *d, const struct qemu_attach_args *a,
                        bool *already, GError **err)
{
    struct qemu_attach_args args = *a;
    struct session_file f;
    struct vm_entry *vm;
    bool taken, same;

    g_mutex_lock(&d->lock);
    vm = name_taken(d, a->name, a->incoming);
    taken = vm != NULL;
    same = domain_attached(vm, a);
    g_mutex_unlock(&d->lock);
    if (same) {
        *already = true;
        return true;
    }
    if (taken) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "a VM named '%s' is already attached%s", a->name,
                    a->incoming ? " (incoming)" : "");
        return false;
    }
    vm = g_new0(struct vm_entry, 1);
    vm->sock = -1;
    vm->daemon = d;
    attach_info_init(&vm->info);
    args.carry_on =
        session_file_find(d->cfg->state_dir, a->name,
                          a->incoming ? ROLE_DESTINATION : ROLE_SOURCE, &f);
    if (args.carry_on && !session_matches(&f, a, err)) {
        vm_entry_free(vm);
        return false;
    }
    if (!qemu_attach(&args, &vm->info, &vm->driver, err)) {
        vm_entry_free(vm);
        return false;
    }
    if (!add_vm(d, vm)) { /* another VMM took the name meanwhile */
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "a VM named '%s' attached meanwhile", a->name);
        return false;
    }
    return true;
}

/*
 * A libvirt domain may be attached by an operator, by the libvirt hook's
 * expectation (expect.c) and by a restarted daemon (reattach.c) at once:
 * one at a time, so that QEMU never gets two userfaultfds, and the later
 * ones find it attached.
 */
bool daemon_attach_qemu(struct daemon *d, const struct qemu_attach_args *a,
                        bool *already, GError **err)
{
    bool dummy = false;
    bool ok;

    already = already ? already : &dummy;
    *already = false;
    if (!a->domain) {
        return attach_qemu(d, a, already, err);
    }
    g_mutex_lock(&d->domain_lock);
    ok = attach_qemu(d, a, already, err);
    g_mutex_unlock(&d->domain_lock);
    return ok;
}

static gpointer attach_thread(gpointer opaque)
{
    struct daemon *d = opaque;

    for (;;) {
        g_autoptr(GError) err = NULL;
        struct vm_entry *vm;
        struct pollfd p = {.fd = d->attach_fd, .events = POLLIN};
        GThread *th;
        int sock;

        if (poll(&p, 1, -1) < 0 && errno != EINTR) {
            break;
        }
        if (d->stopping) {
            break;
        }
        /*
         * Counted before the accept: from the backlog to its hello's end,
         * daemon_take_vm() always sees an attach in flight.
         */
        g_mutex_lock(&d->lock);
        d->attaching++;
        g_mutex_unlock(&d->lock);
        sock = accept4(d->attach_fd, NULL, NULL, SOCK_CLOEXEC);
        if (sock < 0) {
            int e = errno;

            attach_done(d);
            if (e == EINTR || e == ECONNABORTED || e == EAGAIN) {
                continue;
            }
            g_warning("attach socket: accept: %s", g_strerror(e));
            break;
        }
        /* Before reading a byte: the VMM hands us its memory. */
        if (!peercred_allowed(sock, &d->attach_policy, &err)) {
            g_warning("attach socket: %s", err->message);
            close(sock);
            attach_done(d);
            continue;
        }
        /* The VMM channel is blocking; the listener may not be. */
        g_unix_set_fd_nonblocking(sock, FALSE, NULL);
        vm = g_new0(struct vm_entry, 1);
        vm->sock = sock;
        vm->daemon = d;
        /* One thread per hello: a client that says nothing blocks no one. */
        th = g_thread_try_new("attach-hello", attach_hello_thread, vm, &err);
        if (!th) {
            g_warning("attach socket: refused: no thread for its hello: %s",
                      err->message);
            close(sock);
            g_free(vm);
            attach_done(d);
            continue;
        }
        g_thread_unref(th);
    }
    return NULL;
}

static bool start_thread(const char *name, GThreadFunc fn, void *data,
                         GError **err)
{
    GThread *th = g_thread_try_new(name, fn, data, err);

    if (!th) {
        g_prefix_error(err, "cannot start the %s thread: ", name);
        return false;
    }
    g_thread_unref(th);
    return true;
}

bool daemon_start_listeners(struct daemon *d, GError **err)
{
    if (d->attach_fd < 0) {
        d->attach_fd = unix_listen(d->cfg->attach_socket, 0600, NULL, err);
        if (d->attach_fd < 0) {
            return false;
        }
        d->attach_made = true;
    }
    if (!peercred_socket_apply(d->cfg->attach_socket, &d->attach_policy, err)) {
        g_prefix_error(err, "attach socket: ");
        return false;
    }
    d->peer = transport_listen(d->transport, d->cfg->listen, &d->topts, err);
    if (!d->peer) {
        return false;
    }
    g_message("listening for peers on %s (%s), VMMs on %s",
              listener_address(d->peer), transport_name(d->transport),
              d->cfg->attach_socket);
    return start_thread("attach", attach_thread, d, err) &&
           start_thread("peer-accept", peer_accept_thread, d, err);
}

void daemon_shutdown(struct daemon *d)
{
    d->stopping = true;
    /*
     * Only a socket we bound: systemd's (socket activation) serves the
     * next daemon, and a file we never bound is another daemon's.
     */
    if (d->attach_made) {
        shutdown(d->attach_fd, SHUT_RDWR);
        unlink(d->cfg->attach_socket);
    }
}

static struct vm_entry *take_attached(struct daemon *d, const char *name,
                                      bool incoming, GError **err)
{
    struct vm_entry *found = NULL;
    bool busy = false;

    g_mutex_lock(&d->lock);
    reap_dead_vms(d);
    for (guint i = d->vms->len; i-- > 0;) {
        struct vm_entry *vm = d->vms->pdata[i];

        if (strcmp(vm->info.vm_name, name) || vm->info.incoming != incoming ||
            vm->moved) {
            continue;
        }
        if (vm->busy) {
            busy = true;
            continue;
        }
        vm->busy = true;
        found = vm;
        break;
    }
    g_mutex_unlock(&d->lock);
    if (!found) {
        g_set_error(
            err, CONTROL_ERROR,
            busy ? CONTROL_ERROR_GENERIC : CONTROL_ERROR_DEVICE_NOT_FOUND,
            busy ? "VM '%s' is already migrating"
                 : "no %sVM named '%s' is attached to this daemon",
            busy ? name : (incoming ? "incoming " : ""), busy ? "" : name);
    }
    return found;
}

/*
 * An attach hello being read, or a connection not accepted yet: wait a
 * little for it (woken when one is through).  False once none is left
 * or @end has passed.
 */
static bool attach_in_flight(struct daemon *d, gint64 end)
{
    struct pollfd p = {.fd = d->attach_fd, .events = POLLIN};
    gint64 poll_end = g_get_monotonic_time() + 20 * G_TIME_SPAN_MILLISECOND;
    bool pending;

    g_mutex_lock(&d->lock);
    pending = d->attaching > 0 || poll(&p, 1, 0) == 1;
    if (pending) {
        g_cond_wait_until(&d->attach_cond, &d->lock, MIN(end, poll_end));
    }
    g_mutex_unlock(&d->lock);
    return pending && g_get_monotonic_time() < end;
}

struct vm_entry *daemon_take_vm(struct daemon *d, const char *name,
                                bool incoming, GError **err)
{
    gint64 end =
        g_get_monotonic_time() + ATTACH_SETTLE_MS * G_TIME_SPAN_MILLISECOND;
    struct vm_entry *vm;

    while (!(vm = take_attached(d, name, incoming, NULL)) &&
           attach_in_flight(d, end)) {
    }
    return vm ? vm : take_attached(d, name, incoming, err);
}

void daemon_release_vm(struct daemon *d, struct vm_entry *vm)
{
    g_mutex_lock(&d->lock);
    vm->busy = false;
    g_mutex_unlock(&d->lock);
}
