/*
 * uffd_events.c - the VMM's non-cooperative uffd events at the
 * destination, and the lock that orders them with every page fill.
 *
 * A VMM may drop guest RAM while postcopy runs: madvise(MADV_DONTNEED or
 * MADV_REMOVE) for a balloon, munmap for a hot-unplug.  Asked for
 * (UFFD_FEATURE_EVENT_REMOVE, EVENT_UNMAP), the kernel queues an event,
 * holds the VMM's call until the event is read, and zaps the range after.
 * Those pages are then no longer migrated: they become REMOVED (page
 * state), data that arrives for them is dropped, their copy is dropped,
 * and a later fault there gets a zero page (fault_thread.c).
 *
 * The hazard: a thread that took a page before the event was read could
 * map the source's data after the zap, where the guest must read zero.
 * While an event is queued unread, every COPY, ZEROPAGE and CONTINUE fails
 * with EAGAIN (the kernel's mmap_changing), so only a fill that runs after
 * the read can land after the zap.  Hence the lock: the fault thread reads
 * the uffd holding it exclusive and marks the removed pages before it lets
 * go; every other thread holds it shared from its last look at a page's
 * state to the end of the fill (dest_fill()), and lets go on EAGAIN so
 * that the reader can read.  The fault thread fills without it (it is the
 * reader) and reads the events itself on EAGAIN, keeping the faults it
 * reads meanwhile for later (s->deferred).
 *
 * Contract: REMAP (mremap of guest RAM) cannot be followed, since the
 * region table is fixed for the migration: it aborts the migration and
 * says so.  FORK is not asked for: a child of the VMM gets its RAM
 * unregistered, as it is at the fork, and the guest is not affected.
 */
#include "dest_session.h"

#include <errno.h>
#include <unistd.h>

#include "backing.h"

#define DRAIN_BATCH 64
/* How long a filling thread lets the reader run after an EAGAIN. */
#define EAGAIN_PAUSE_US 20

static __thread bool events_reader;

uint64_t dest_event_features(void)
{
    return UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
           UFFD_FEATURE_EVENT_REMAP;
}

/* The fill decides itself what an EAGAIN means (dest_fill()). */
static bool eagain_to_caller(void *opaque)
{
    (void)opaque;
    return false;
}

void dest_events_init(struct dest_session *s)
{
    pthread_rwlockattr_t attr;

    /* A reader that waits must not wait behind a stream of fills. */
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->events, &attr);
    pthread_rwlockattr_destroy(&attr);
    s->deferred = g_array_new(FALSE, FALSE, sizeof(struct uffd_msg));
    s->u.drain = eagain_to_caller;
}

void dest_events_destroy(struct dest_session *s)
{
    g_clear_pointer(&s->deferred, g_array_unref);
}

void dest_events_reader(void)
{
    events_reader = true;
}

/* Pages [first, first + n) of @r ended REMOVED: what nobody holds now. */
static void forget_run(struct dest_session *s, const struct region *r,
                       uint64_t first, uint64_t n)
{
    backing_copy_drop(r, &s->copies[r->id], first, n);
}

void dest_removed_held(struct dest_session *s, const struct region *r,
                       uint64_t first, uint64_t n)
{
    for (uint64_t p = first; p < first + n; p++) {
        if (page_state_get(s->pst, r->id, p) == PAGE_REMOVED) {
            forget_run(s, r, p, 1);
        }
    }
    /* A vCPU that waited for them faults again and gets a zero page. */
    uffd_wake(&s->u, r->base + first * r->page_size, n * r->page_size);
    dest_end_faults(s, r, first, n);
}

/* The part of [start, end) in @r, in whole pages: false if none. */
static bool pages_in(const struct region *r, uint64_t start, uint64_t end,
                     uint64_t *first, uint64_t *last)
{
    uint64_t lo = MAX(start, r->base), hi = MIN(end, r->base + r->size);

    if (lo >= hi) {
        return false;
    }
    *first = (lo - r->base) / r->page_size;
    *last = (hi - r->base + r->page_size - 1) / r->page_size;
    return true;
}

/* The VMM dropped [start, end) (@what: "removed", "unmapped"). */
static void remove_range(struct dest_session *s, uint64_t start, uint64_t end,
                         const char *what)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];
        uint64_t first, last, removed = 0, held = 0;

        if (!pages_in(r, start, end, &first, &last)) {
            continue;
        }
        for (uint64_t p = first; p < last; p++) {
            switch (page_state_remove(s->pst, r->id, p)) {
            case PAGE_OK:
                forget_run(s, r, p, 1);
                removed++;
                break;
            case PAGE_BUSY:
                held++;
                break;
            default: /* installed: the kernel decides what the guest sees */
                break;
            }
        }
        uffd_wake(&s->u, r->base + first * r->page_size,
                  (last - first) * r->page_size);
        dest_end_faults(s, r, first, last - first);
        g_debug("migration %s: the VMM %s %" G_GUINT64_FORMAT
                " page(s) of region %u from page %" G_GUINT64_FORMAT
                ": %" G_GUINT64_FORMAT " no longer migrated, %" G_GUINT64_FORMAT
                " held",
                s->m->id, what, last - first, r->id, first, removed, held);
        if (removed || held) {
            dest_wake(s); /* the last pages may be gone: complete */
        }
    }
}

static bool overlaps_ram(struct dest_session *s, uint64_t start, uint64_t len)
{
    uint64_t a, b;

    for (size_t i = 0; i < s->regions->n; i++) {
        if (pages_in(&s->regions->regions[i], start, start + len, &a, &b)) {
            return true;
        }
    }
    return false;
}

static void handle_event(struct dest_session *s, const struct uffd_msg *msg)
{
    switch (msg->event) {
    case UFFD_EVENT_REMOVE:
        remove_range(s, msg->arg.remove.start, msg->arg.remove.end, "removed");
        break;
    case UFFD_EVENT_UNMAP:
        remove_range(s, msg->arg.remove.start, msg->arg.remove.end, "unmapped");
        break;
    case UFFD_EVENT_REMAP:
        if (overlaps_ram(s, msg->arg.remap.from, msg->arg.remap.len)) {
            g_autofree char *why = g_strdup_printf(
                "the VMM moved guest RAM (mremap of 0x%llx+0x%llx to "
                "0x%llx): postcopy cannot follow RAM that moves",
                msg->arg.remap.from, msg->arg.remap.len, msg->arg.remap.to);

            dest_abort(s, why);
        }
        break;
    case UFFD_EVENT_FORK:
        /* Not asked for; a VMM that did its own UFFDIO_API may have. */
        close((int)msg->arg.fork.ufd);
        g_warning("migration %s: the VMM forked; its child's guest RAM is "
                  "not migrated",
                  s->m->id);
        break;
    default:
        g_warning("migration %s: unknown uffd event %u ignored", s->m->id,
                  msg->event);
        break;
    }
}

int dest_read_uffd(struct dest_session *s, struct uffd_msg *msgs, int n)
{
    int got, faults = 0;

    pthread_rwlock_wrlock(&s->events);
    got = uffd_read_msgs(&s->u, msgs, n);
    for (int i = 0; i < got; i++) {
        if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
            msgs[faults++] = msgs[i];
        } else {
            handle_event(s, &msgs[i]);
        }
    }
    pthread_rwlock_unlock(&s->events);
    return got < 0 ? got : faults;
}

void dest_events_pending(struct dest_session *s)
{
    struct uffd_msg msgs[DRAIN_BATCH];
    int n;

    if (!events_reader) {
        g_usleep(EAGAIN_PAUSE_US); /* the fault thread reads them */
        return;
    }
    n = dest_read_uffd(s, msgs, DRAIN_BATCH);
    if (n > 0) {
        g_array_append_vals(s->deferred, msgs, n);
    }
}

int dest_fill(struct dest_session *s, const struct region *r, uint64_t first,
              uint64_t n, dest_fill_fn fill, const void *ctx)
{
    uint64_t p = first, end = first + n;

    while (p < end) {
        uint64_t q, done = 0;
        int ret = 0;

        if (!events_reader) {
            pthread_rwlock_rdlock(&s->events);
        }
        while (p < end && page_state_is_gone(s->pst, r->id, p)) {
            p++;
        }
        for (q = p; q < end && !page_state_is_gone(s->pst, r->id, q); q++) {
        }
        if (p < q) {
            ret = fill(s, r, p, q - p, ctx, &done);
        }
        if (!events_reader) {
            pthread_rwlock_unlock(&s->events);
        }
        if (ret == -EAGAIN && !atomic_load(&s->stop)) {
            p += done / r->page_size;
            dest_events_pending(s);
            continue;
        }
        if (ret < 0) {
            return ret;
        }
        p = q;
    }
    return 0;
}
