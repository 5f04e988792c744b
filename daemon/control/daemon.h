/*
 * daemon.h - the daemon's shared state: the VMMs attached to it, the
 * migrations it runs, and the sockets it serves (attach, peer, control).
 *
 * Contract: struct daemon is shared by the main loop (control socket), the
 * attach and peer accept threads and the migration threads; everything in
 * it that changes after start-up is guarded by d->lock, held only for
 * lookups and flag flips, never across I/O.  A VMM taken for a migration
 * (daemon_take_vm) belongs to that migration until daemon_release_vm.
 */
#ifndef POSTCOPYD_DAEMON_H
#define POSTCOPYD_DAEMON_H

#include <stdbool.h>
#include <glib.h>

#include "attach.h"
#include "auth.h"
#include "config.h"
#include "conn_limit.h"
#include "control.h"
#include "migration.h"
#include "peercred.h"
#include "qemu_attach.h"
#include "tls.h"
#include "peer_msg.h"
#include "transport.h"
#include "uffd.h"
#include "vm_entry.h"
#include "vmm_driver.h"

struct session_file;

/*
 * What the roles do for the daemon, registered by main.c (daemon/main/)
 * before the listeners start: the daemon routes peer connections, restored
 * sessions and the control commands through these and never names a role,
 * so the roles, which use the daemon's registry, are not used by it in turn
 * (docs/architecture.md, "Include cycles").
 */
struct daemon_roles {
    /* A peer's control channel whose Hello was read (destination). */
    void (*accept_control)(struct daemon *d, struct channel *ch,
                           PeerMessage *hello);
    /* A peer's data channel for an existing destination migration. */
    void (*accept_data)(struct daemon *d, struct channel *ch,
                        PeerMessage *hello);
    /* A re-attached VM's session that a dead daemon left, per role. */
    void (*restore_dest)(struct daemon *d, struct vm_entry *vm,
                         const struct session_file *f);
    void (*restore_source)(struct daemon *d, struct vm_entry *vm,
                           const struct session_file *f);
    /* migrate, migrate-recover, migrate-cancel (source_role.h). */
    bool (*source_start)(struct migration *m, const char *uri, GError **err);
    bool (*source_recover)(struct migration *m, GError **err);
    bool (*source_cancel)(struct migration *m, GError **err);
};

struct daemon {
    struct postcopyd_config *cfg;
    struct daemon_roles roles; /* set before daemon_start_listeners */
    struct uffd_caps caps;
    const struct transport *transport;
    struct transport_options topts;
    struct engine_params engine; /* from cfg (state_dir borrowed) */
    struct control_server *control;
    struct auth_key psk;     /* len 0: no psk-file, peers not authenticated */
    struct tls_context *tls; /* NULL: tls = off */
    bool insecure;           /* network listener, peers not authenticated */
    struct peercred_policy control_policy;
    struct peercred_policy attach_policy;
    struct listener *peer;
    struct conn_limit preauth; /* peer connections not authenticated yet */
    int attach_fd;    /* set before daemon_start_listeners: systemd's */
    bool attach_made; /* we bound the attach socket: ours to remove */
    GMutex lock;
    GPtrArray *vms;        /* struct vm_entry *, guarded by lock */
    unsigned attaching;    /* attach hellos accepted, not through; by lock */
    GCond attach_cond;     /* signalled when one is through */
    GPtrArray *migrations; /* struct migration *, newest last, by lock */
    /* Libvirt domain attaches, one at a time (daemon_attach_qemu). */
    GMutex domain_lock;
    /* struct expected_vm * (expect.h), by lock */
    GPtrArray *expected;
    bool stopping;
};

bool daemon_init(struct daemon *d, struct postcopyd_config *cfg, GError **err);
/* Start the attach and peer accept threads. */
bool daemon_start_listeners(struct daemon *d, GError **err);
void daemon_shutdown(struct daemon *d);

/*
 * Hold the VMM named @name for a migration (destination: @incoming).  A
 * VMM whose attach hello the daemon is still reading (its "ready" comes
 * as it sends it, and a migrate or a source's Hello can follow at once)
 * is waited for, up to ATTACH_SETTLE_MS.
 */
struct vm_entry *daemon_take_vm(struct daemon *d, const char *name,
                                bool incoming, GError **err);
void daemon_release_vm(struct daemon *d, struct vm_entry *vm);
/*
 * Attach a running QEMU by its pid and QMP socket, or a libvirt domain
 * (qemu_attach.h); refused when another VM of that name and direction is
 * attached already.  The same libvirt domain attached already is no
 * error: true, *@already (may be NULL) set.
 */
bool daemon_attach_qemu(struct daemon *d, const struct qemu_attach_args *a,
                        bool *already, GError **err);
/*
 * A source VM whose migration completed (it runs at the destination):
 * out of the registry (query-vms, migrate) and freed, its fds closed;
 * the caller held it and is done with it.
 */
void daemon_forget_vm(struct daemon *d, struct vm_entry *vm);
/* Forget the VMMs that exited (and no migration holds). */
void daemon_reap_vms(struct daemon *d);
/* The registry of migrations (migrations.c). */
void daemon_add_migration(struct daemon *d, struct migration *m);
/* The newest migration, of VM @name if not NULL; NULL if none. */
struct migration *daemon_find_migration(struct daemon *d, const char *name);
/* The migration whose id (hex, as query-migrate shows it) is @id. */
struct migration *daemon_find_migration_hex(struct daemon *d, const char *id);
/* The destination migration with that id, waiting for its channels. */
struct migration *daemon_find_migration_id(struct daemon *d,
                                           const uint8_t id[16]);
/* query-metrics' "return": counters over every migration (metrics.c). */
JsonNode *daemon_query_metrics(struct daemon *d);
/* A MIGRATION event for @m's new status (any thread). */
void daemon_emit_status(struct daemon *d, struct migration *m);

/* The control socket's command table (control_cmds.c). */
extern const struct control_command daemon_commands[];

#endif /* POSTCOPYD_DAEMON_H */
