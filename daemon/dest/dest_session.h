/*
 * dest_session.h - the destination role's session, shared by the files of
 * daemon/dest/ and private to them (the daemon sees dest.h only).
 *
 * Threads of one migration:
 *  - the session thread (session.c): Layout check, uffd set-up, Barrier
 *    and Switchover (switchover.c, resume the VMM), then waits until every
 *    page is installed, pausing and resuming as the link goes, and
 *    watching control;
 *  - the fault thread (fault_thread.c): reads the VMM's uffd, and for each
 *    missing page sends one request on the urgent channel;
 *  - receivers (receiver.c: urgent, each bulk stream): take page frames
 *    and hand their pages to the installer;
 *  - the sweep (installer.c): after the resume, installs every page whose
 *    current copy is already here (once the dirty set that may follow the
 *    resume is marked: page_state_copies_unconfirmed()).
 * The VMM's non-cooperative uffd events (a range removed or unmapped) are
 * read by the fault thread and ordered with installs by uffd_events.c.
 * installer.c is the one place that writes a page's copy or installs it.
 *
 * Contract: the page state table decides who may touch a page; everything
 * else here is set before the threads start, except the channels, which a
 * resumed migration replaces (the fault thread reads `urgent` atomically;
 * old channels are shut down but kept in the graveyard until the session
 * ends, so a stale pointer never dangles).  Postcopy failures pause: the
 * fault thread goes on installing pages that are here, requests for the
 * others wait (REQUESTED) until the source reconnects with a resuming
 * Hello (admission.c), and are then sent again.  That holds from the
 * resume on, even when the Switchover's reply could not be sent.  In
 * postcopy only the session thread reads control (an Error there from
 * the source ends the migration: its VM's memory is gone).
 */
#ifndef POSTCOPYD_DEST_SESSION_H
#define POSTCOPYD_DEST_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "backing.h"
#include "dest_role.h"
#include "frame.h"
#include "migration.h"
#include "page_state.h"
#include "region.h"
#include "peer_msg.h"
#include "remote_read.h"
#include "transport.h"
#include "uffd.h"

#define DEST_MAX_STREAMS 8

/* A fault the reader thread reads (remote_reader.c). */
struct fault_page {
    uint32_t region;
    uint64_t page;
};

struct dest_session {
    struct migration *m;
    struct region_table *regions;
    struct frame_region_limits limits[REGION_MAX];
    struct channel *control, *urgent; /* by m->lock until running */
    struct channel *bulk[DEST_MAX_STREAMS];
    struct uffd u;
    /*
     * uffd_events.c: the fault thread reads the uffd holding it exclusive;
     * other threads fill guest pages holding it shared.
     */
    pthread_rwlock_t events;
    GArray *deferred; /* faults read while draining events (fault thread) */
    struct page_state_table *pst;
    char *pst_path;
    GThread *fault_thread, *urgent_thread, *sweep_thread;
    GThread *bulk_thread[DEST_MAX_STREAMS];
    atomic_bool stop;
    /*
     * Set once the VMM is resumed (just before): from then on, data is
     * installed into the running guest; before, it is only written to the
     * page cache (shmem, hugetlbfs) or the staging area (anon).
     */
    atomic_bool running;
    /*
     * Orders the two ways out of the switchover: dest_fail()'s choice
     * (pause a running VM, or fail one that never ran) against the
     * session thread setting `running` to resume it.  Without it a
     * receiver that saw the source hang up could fail the migration while
     * the session thread went on to resume the VM: a VM running here in a
     * migration marked failed, which no reconnect can carry on.
     */
    GMutex run_lock;
    /*
     * The whole Switchover is read (by run_lock): from here the session
     * thread resumes the VM unless the migration is stopped, so a data
     * channel's failure pauses instead of failing it (the source, which
     * may have hung up on the lost answer, reconnects and learns).
     */
    bool switchover_in_hand;
    /* last FRAME_SYNC seen on each bulk stream, by m->lock */
    atomic_uint bulk_sync[DEST_MAX_STREAMS];
    atomic_uint next_seq;
    atomic_uint outstanding;   /* faults begun in blocktime, not ended */
    atomic_bool rerequest_due; /* resumed: the fault thread asks again */
    /* where each region's pages wait until installed (installer.c) */
    struct copy_area copies[REGION_MAX];
    size_t registered;     /* regions registered with the uffd */
    uint32_t bulk_streams; /* announced in the control Hello */
    uint32_t next_streams; /* ...in a resuming one, by m->lock */
    bool layout_ok;        /* data channels may attach, by m->lock */
    bool layout_refused;   /* the setup failed on a layout mismatch */
    bool cancelled;        /* the source said Cancel */
    bool session_prepared; /* "<id>.dest.tmp" written at a Barrier */
    atomic_bool paused;    /* postcopy, channels lost: waiting for a resume */
    atomic_uint epoch;     /* connection generation: receivers of an older
                            one say nothing when their channel dies */
    GPtrArray *graveyard;  /* channels of earlier connections, by m->lock */
    /* A resuming source's new channels, gathered here by m->lock. */
    struct channel *next_control, *next_urgent;
    struct channel *next_bulk[DEST_MAX_STREAMS];
    /*
     * Reading the source's memory (remote_reader.c), when the transport
     * can: the link, set up before the data channels and closed at the
     * first pause; which regions it reads; and the faults the fault
     * thread hands the reader thread (under read_lock).
     */
    struct remote_listener *read_listener;
    struct remote_link *rlink;
    bool readable[REGION_MAX];
    atomic_bool reads_on; /* the reader thread takes faults */
    bool read_bulk;       /* and READs what is missing (postcopy-bulk) */
    GThread *reader_thread;
    GMutex read_lock;
    GCond read_cond;
    GArray *read_faults; /* struct fault_page */
};

/* session.c */
struct dest_session *dest_session_new(struct migration *m);
gpointer dest_session_thread(gpointer opaque);
/* Until every page is installed, pausing and resuming as the link goes. */
void dest_postcopy(struct dest_session *s);
void dest_stop_threads(struct dest_session *s);
/* A peer failure: fails before the resume, pauses after it. */
void dest_fail(struct dest_session *s, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);
/* The VMM's memory cannot be worked on any more. */
void dest_abort(struct dest_session *s, const char *msg);
void dest_wake(struct dest_session *s);
void dest_shutdown_channels(struct dest_session *s);
bool dest_control_gone(struct dest_session *s);
bool dest_wait_for(struct dest_session *s, bool (*done)(void *), void *arg,
                   const char *what, GError **err);

/* switchover.c */
bool dest_switchover(struct dest_session *s, GError **err);
/* A FinalDirty on control (session thread). */
bool dest_final_dirty(struct dest_session *s, const PeerMessage *msg,
                      GError **err);
bool dest_ram_allocated(struct vm_entry *vm, GError **err);

/* installer.c */
bool dest_installer_open(struct dest_session *s, size_t region, GError **err);
/* After a restart: what the dead daemon's copy areas left. */
void dest_installer_reopen(struct dest_session *s);
void dest_installer_close(struct dest_session *s);
/*
 * Pages [first, first + n) of @r are zero: kept, or installed if running;
 * @reply: a fault's reply.
 */
bool dest_install_zero(struct dest_session *s, const struct region *r,
                       uint64_t first, uint64_t n, bool reply);
/* The payload of page frame @h: received, kept or installed. */
bool dest_install_payload(struct dest_session *s, struct channel *ch,
                          const struct region *r, const struct frame_hdr *h,
                          uint8_t *buf, GError **err);
/* A fault on a page held INSTALLING whose current copy is here. */
bool dest_install_faulted(struct dest_session *s, const struct region *r,
                          uint64_t page);
/* Install the CURRENT pages among [first, first + n), running. */
void dest_install_current(struct dest_session *s, const struct region *r,
                          uint64_t first, uint64_t n);
/* Faults on pages [first, first + n) are over (blocktime). */
void dest_end_faults(struct dest_session *s, const struct region *r,
                     uint64_t first, uint64_t n);
/*
 * Session thread: start the sweep once the VM runs and the copies here
 * are confirmed (the dirty set after the resume is marked); a no-op
 * before that, or once it started.
 */
void dest_start_sweep(struct dest_session *s);

/* fault_thread.c */
gpointer dest_fault_thread(gpointer opaque);
/* Resolve one fault message (also those uffd_events.c deferred). */
void dest_handle_fault(struct dest_session *s, const struct uffd_msg *msg);

/* uffd_events.c */
/* The events the destination asks UFFDIO_API for. */
uint64_t dest_event_features(void);
/* Once s->u is set up: the lock, the deferred faults, the drain hook. */
void dest_events_init(struct dest_session *s);
/* Once every thread of the session is joined. */
void dest_events_destroy(struct dest_session *s);
/* The calling thread is the one that reads the uffd (the fault thread). */
void dest_events_reader(void);
/*
 * Read up to @n messages, handling the events among them before any other
 * thread may fill a page again; returns how many faults are left in @msgs,
 * or a negative errno.
 */
int dest_read_uffd(struct dest_session *s, struct uffd_msg *msgs, int n);
/*
 * Fill pages [first, first + n) of @r, held INSTALLING by the caller, with
 * @fill, skipping pages the VMM removed meanwhile: each run under the
 * event lock, looked at again after an EAGAIN.  0 or a negative errno.
 */
typedef int (*dest_fill_fn)(struct dest_session *s, const struct region *r,
                            uint64_t first, uint64_t n, const void *ctx,
                            uint64_t *done);
int dest_fill(struct dest_session *s, const struct region *r, uint64_t first,
              uint64_t n, dest_fill_fn fill, const void *ctx);
/* An install or fill failed with EAGAIN: let the pending events be read. */
void dest_events_pending(struct dest_session *s);
/*
 * Pages of [first, first + n) of @r that ended REMOVED in a holder's hands:
 * their copy dropped, their waiters woken (they fault again on a zero).
 */
void dest_removed_held(struct dest_session *s, const struct region *r,
                       uint64_t first, uint64_t n);

/* remote_reader.c: reading the source's memory (remote_read.h) */
/* Before the LayoutReply: the READ link's port, 0 if the transport has
 * none. */
bool dest_remote_listen(struct dest_session *s, uint32_t *port, GError **err);
/* After the uffd set-up: accept the link, check and answer its table. */
bool dest_remote_setup(struct dest_session *s, GError **err);
/* Precopy: read a ReadRound's pages, then answer it. */
bool dest_remote_round(struct dest_session *s, const PeerMessage *msg,
                       GError **err);
/* At the resume: the reader thread, if there is a link. */
void dest_remote_start(struct dest_session *s);
/* Fault thread: true if the reader takes this REQUESTED page. */
bool dest_remote_fault(struct dest_session *s, const struct region *r,
                       uint64_t page);
/*
 * A pause: the reader is done for good (the rest moves in frames); the
 * link stays open until dest_remote_stop(), since the fault thread may
 * still be waking it.
 */
void dest_remote_join(struct dest_session *s);
/* The session ends, every other thread joined: close the link. */
void dest_remote_stop(struct dest_session *s);

/* receiver.c */
void dest_start_receivers(struct dest_session *s);
void dest_join_receivers(struct dest_session *s);

#endif /* POSTCOPYD_DEST_SESSION_H */
