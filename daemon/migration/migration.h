/*
 * migration.h - one migration, either role: its state machine, its
 * statistics, and the threads that run it (daemon/source/, daemon/dest/).
 *
 * Contract:
 *  - Status changes only through migration_set_status(m, old, new), a
 *    compare-and-swap like QEMU's migrate_set_state(); each change is
 *    reported through the status hook (the daemon's MIGRATION event).
 *  - Statistics are plain atomics written by the engine threads and read
 *    by query-migrate at any time: struct migration_stats.
 *  - Never lose the VM: a failure before switchover resumes the source
 *    VMM; a failure after it leaves the destination paused on missing
 *    pages (status failed, nothing discarded) for recovery.
 */
#ifndef POSTCOPYD_MIGRATION_H
#define POSTCOPYD_MIGRATION_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#include "attach.h"
#include "blocktime.h"
#include "live_params.h"
#include "stats_histogram.h"
#include "vmm.h"

enum migration_status {
    MIG_NONE,
    MIG_SETUP,
    MIG_ACTIVE, /* precopy rounds */
    MIG_DEVICE, /* switchover: source paused, device state moving */
    MIG_POSTCOPY_ACTIVE,
    MIG_POSTCOPY_PAUSED,
    MIG_COMPLETED,
    MIG_FAILED,
    MIG_CANCELLING,
    MIG_CANCELLED,
};

enum migration_role { ROLE_SOURCE, ROLE_DESTINATION };

enum migration_mode { MODE_POSTCOPY, MODE_PRECOPY, MODE_HYBRID };

/*
 * Defaults: QEMU's 300 ms downtime limit; precopy gives up after 30 rounds
 * or 60 s (hybrid then switches over and lets postcopy finish, which is
 * why it never loops forever; pure precopy switches over anyway, with a
 * downtime that may exceed the limit, rather than never finishing).
 */
#define MIGRATION_DEFAULT_DOWNTIME_MS    300
#define MIGRATION_DEFAULT_MAX_ROUNDS     30
#define MIGRATION_DEFAULT_MAX_PRECOPY_MS 60000
#define MIGRATION_MAX_ROUNDS_KEPT        64

struct migration_params {
    enum migration_mode mode;
    uint64_t downtime_limit_ms;
    uint64_t max_rounds;
    uint64_t max_precopy_ms;
    int dirty_method;       /* enum dirty_method; DIRTY_AUTO */
    uint64_t streams;       /* parallel bulk connections */
    bool postcopy_bulk;     /* stream in postcopy; off: pages only on request */
    uint64_t max_bandwidth; /* bytes/s on the bulk streams; 0: no cap */
};

/* One precopy round, as the source saw it. */
struct round_stats {
    uint32_t round;
    uint64_t pages;       /* pages sent this round (data + zero) */
    uint64_t bytes;       /* payload bytes sent */
    uint64_t dirty_pages; /* found by the collect that ended it */
    uint64_t duration_us;
    uint64_t scan_us;  /* the collect */
    double dirty_mbps; /* MiB/s written by the guest */
    double send_mbps;  /* MiB/s sent */
};

/*
 * Where the downtime went, in microseconds, each phase in the order it
 * happens.  The source measures its own and learns the destination's from
 * the SwitchoverReply; a destination fills in only its own.
 */
enum downtime_part {
    DT_PAUSE,       /* source: the VMM stops its vCPUs, hands its state */
    DT_COLLECT,     /* source: the last dirty-page scan */
    DT_SEND,        /* source: last pages (precopy), dirty set encoded */
    DT_SWITCHOVER,  /* source: Switchover sent -> reply (the dst's below) */
    DT_DST_BARRIER, /* destination: bulk data sent before it written */
    DT_DST_STALE,   /* destination: re-dirtied pages marked STALE */
    DT_DST_RESUME,  /* destination: the VMM takes the state and runs */
    DT_PARTS
};

/* Written by engine threads, read by query-migrate: atomics only. */
struct migration_stats {
    _Atomic uint64_t downtime_part_us[DT_PARTS];
    _Atomic uint64_t start_us, setup_done_us, pause_us, resume_us, end_us;
    _Atomic uint64_t downtime_us;
    _Atomic uint64_t total_bytes; /* guest RAM */
    _Atomic uint64_t pages_total;
    _Atomic uint64_t pages_sent;     /* data pages, both channels */
    _Atomic uint64_t zero_pages;     /* sent (source) / received (dest) */
    _Atomic uint64_t bytes_sent;     /* payload bytes */
    _Atomic uint64_t pages_received; /* destination: data + zero */
    _Atomic uint64_t pages_installed;
    _Atomic uint64_t pages_dropped; /* arrived for an installed page */
    _Atomic uint64_t postcopy_requests;
    _Atomic uint64_t faults; /* uffd fault messages read */
    _Atomic uint64_t verify_checked, verify_mismatches;
    _Atomic uint64_t bytes_precopy, bytes_downtime, bytes_postcopy;
    _Atomic uint64_t expected_downtime_us;
    _Atomic uint64_t installed_local; /* destination: with no network */
    _Atomic uint64_t stale_pages;     /* hybrid: dirty at switchover */
    /* Hybrid, source: the resume to the FinalDirty sent (its collect),
     * when the last dirty set follows the resume; else 0. */
    _Atomic uint64_t final_dirty_us;
    _Atomic uint64_t pages_prefetched; /* source: streamed after a fault */
    /* Moved by one-sided reads (remote_read.h), not frames: destination,
     * every page READ; source, the pages of its declared precopy rounds. */
    _Atomic uint64_t pages_read;
    _Atomic uint64_t fault_reads; /* destination: faults served by a READ */
    _Atomic bool verify_done;
};

#define MIGRATION_MAX_VCPUS 64

/* The destination's view of its faults, reported in its Complete. */
struct remote_faults {
    bool valid;
    struct stats_histogram hist;
    struct blocktime_thread_stats vcpus[MIGRATION_MAX_VCPUS];
    size_t nvcpus;
    uint64_t faults;
};

struct daemon;
struct vm_entry;

/*
 * The daemon's settings the engine runs a session with, copied in when the
 * session starts (migration_new()): engine code reads these, never the
 * daemon's configuration.
 */
struct engine_params {
    int busy_poll_us;     /* source: spin this long for a request, then sleep */
    int fault_priority;   /* SCHED_FIFO of the fault path; 0: normal */
    bool pin_fault_path;  /* fault_cpus holds [peer] fault-cpus */
    cpu_set_t fault_cpus; /* the fault path's CPUs, if pin_fault_path */
    char *state_dir;      /* session files and page state tables */
};

/* The fault path's CPUs for fault_path_enter(): NULL where any will do. */
static inline const cpu_set_t *engine_fault_cpus(const struct engine_params *e)
{
    return e->pin_fault_path ? &e->fault_cpus : NULL;
}

struct migration {
    char id[40]; /* hex of the 16-byte migration id */
    uint8_t id_bytes[16];
    enum migration_role role;
    enum migration_mode mode;
    struct migration_params params; /* as started; see live below */
    /* The parameters that change while it runs (source role). */
    struct live_params live;
    struct engine_params engine; /* owned copy */
    _Atomic int status;          /* enum migration_status */
    struct daemon *daemon;
    char vm_name[ATTACH_NAME_MAX];
    struct vm_entry *vm; /* the attached VMM, held busy */
    char *peer_uri;
    GMutex lock; /* guards error, and the role's channel hand-off */
    GCond cond;
    char *error;
    struct migration_stats stats;
    struct blocktime *blocktime; /* destination: its own faults */
    struct remote_faults remote; /* source: the destination's, by lock */
    struct round_stats rounds[MIGRATION_MAX_ROUNDS_KEPT]; /* by lock */
    uint32_t nrounds;                                     /* by lock */
    const char *dirty_method_name; /* chosen tracker, for stats */
    void *role_state; /* struct source_session / struct dest_session */
    GThread *thread;
};

const char *migration_status_name(enum migration_status s);
const char *migration_mode_name(enum migration_mode m);
bool migration_mode_parse(const char *s, enum migration_mode *m);
bool migration_status_is_final(enum migration_status s);

/* A new migration of @vm, run with a copy of @ep. */
struct migration *migration_new(struct daemon *d, enum migration_role role,
                                struct vm_entry *vm,
                                const struct engine_params *ep);
void migration_free(struct migration *m);
void migration_set_id(struct migration *m, const uint8_t id[16]);
/*
 * Who hears of every status change (the control socket's MIGRATION
 * events): set once by the daemon at start; NULL: nobody.
 */
typedef void (*migration_status_fn)(struct daemon *d, struct migration *m);
void migration_set_status_hook(migration_status_fn fn);
/* CAS old -> new; calls the status hook; false if status != old. */
bool migration_set_status(struct migration *m, enum migration_status old,
                          enum migration_status new_status);
enum migration_status migration_status(const struct migration *m);
/* Record the first error, log it once, and move to @final_status. */
void migration_fail(struct migration *m, enum migration_status final_status,
                    const char *fmt, ...) G_GNUC_PRINTF(3, 4);
void migration_params_init(struct migration_params *p);
/* Record a finished round (the first MIGRATION_MAX_ROUNDS_KEPT). */
void migration_add_round(struct migration *m, const struct round_stats *r);
/* A paused migration carries on: its old error no longer describes it. */
void migration_clear_error(struct migration *m);
/* The same, silently: a cause found later replaces it (migration_fail). */
void migration_drop_error(struct migration *m);
/* query-migrate's "return" object. */
JsonNode *migration_query(struct migration *m);

uint64_t migration_now_us(void);

#endif /* POSTCOPYD_MIGRATION_H */
