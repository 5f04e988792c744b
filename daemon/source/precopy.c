/*
 * precopy.c - the source's precopy rounds: track the VMM's writes, send
 * every page, then what was written since it was sent, until the rest
 * would fit in the downtime limit or a limit on rounds or time is hit.
 *
 * The order that cannot lose a write: every page is write-protected
 * before round 1 reads it, and a collect re-protects the pages it hands
 * out before they are read for sending; a write after the read is caught
 * by the next collect.
 *
 * Round 1 protects each block just before it reads it, not the whole
 * guest at the start: a write to a page the round has not reached yet is
 * in what it reads, so it costs the guest no write-protect fault and the
 * page is not sent again (with a guest writing at random, about half of
 * round 1's writes).  A page the round did not protect (a region read in
 * place by the destination) is protected at the start.
 */
#include "source.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>

#include "backing.h"
#include "daemon.h"
#include "fault_priority.h"
#include "round_predict.h"

/* The next run of set bits at or after *pos; false when none is left. */
static bool next_run(const unsigned long *map, uint64_t nbits, uint64_t *pos,
                     uint64_t *first, uint64_t *n)
{
    uint64_t i = *pos;

    while (i < nbits && !map[i / BITS_PER_LONG] && i % BITS_PER_LONG == 0) {
        i += BITS_PER_LONG;
    }
    while (i < nbits && !bitmap_test_bit(map, i)) {
        i++;
    }
    if (i >= nbits) {
        *pos = nbits;
        return false;
    }
    *first = i;
    while (i < nbits && bitmap_test_bit(map, i)) {
        i++;
    }
    *n = i - *first;
    *pos = i;
    return true;
}

/*
 * sync-wp: a vCPU that writes a protected page waits here.  It is a fault
 * path thread like the destination's (fault_priority.h): at normal
 * priority it waits behind the stripe senders, and a VMM pausing its
 * vCPUs for the switchover waits for the ones blocked here.
 */
static gpointer wp_thread(gpointer opaque)
{
    struct source_session *s = opaque;
    struct uffd_msg msgs[64];

    fault_path_enter(s->m->engine.fault_priority,
                     engine_fault_cpus(&s->m->engine), "src-wp");
    while (!atomic_load(&s->wp_stop)) {
        int n = uffd_poll(&s->u, 100);

        if (n <= 0) {
            continue;
        }
        n = uffd_read_msgs(&s->u, msgs, G_N_ELEMENTS(msgs));
        for (int i = 0; i < n; i++) {
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT &&
                dirty_tracker_handle_wp_fault(&s->dt, &msgs[i]) < 0) {
                g_warning("migration %s: resolving a write-protect fault "
                          "failed",
                          s->m->id);
            }
        }
    }
    return NULL;
}

static bool choose_method(struct source_session *s, enum dirty_method *method,
                          GError **err)
{
    struct vm_entry *vm = s->m->vm;
    struct dirty_support sup = {0};
    g_autofree char *note = NULL;
    uint64_t usable =
        vm->api_done ? vm->info.uffd_features : s->m->daemon->caps.usable;

    dirty_support_probe(&sup, usable);
    for (size_t i = 0; i < s->regions->n; i++) {
        sup.file_backed |= s->regions->regions[i].kind != BACKING_ANON;
        sup.hugetlb |= s->regions->regions[i].kind == BACKING_HUGETLBFS;
    }
    if (!dirty_method_choose(&sup, s->m->params.dirty_method, method, &note,
                             err)) {
        return false;
    }
    if (note) {
        g_message("migration %s: %s", s->m->id, note);
    }
    return true;
}

static bool api_for(struct source_session *s, enum dirty_method method,
                    GError **err)
{
    struct vm_entry *vm = s->m->vm;
    uint64_t need = dirty_tracker_features(method);

    if (!need) {
        return true;
    }
    if (vm->api_done) {
        memset(&s->u, 0, sizeof(s->u));
        s->u.fd = vm->info.uffd;
        s->u.features = vm->info.uffd_features;
        return true; /* dirty_tracker_init checks what it needs */
    }
    if (!uffd_api(vm->info.uffd, need, &s->m->daemon->caps, &s->u, NULL, err)) {
        return false;
    }
    vm->api_done = true;
    vm->info.uffd_features = s->u.features;
    return true;
}

/*
 * The senders note what goes as data from now on; the bitmaps stay until
 * the session ends (a sender may still note pages after tracking stops).
 */
static void watch_drops(struct source_session *s)
{
    ram_drops_init(&s->drops, s->regions);
    for (unsigned i = 0; i < s->nbulk; i++) {
        s->bulk[i].sender.drops = &s->drops;
    }
}

bool precopy_start_tracking(struct source_session *s, GError **err)
{
    enum dirty_method method;

    if (!choose_method(s, &method, err) || !api_for(s, method, err) ||
        !dirty_tracker_init(&s->dt, s->m->vm->info.pid,
                            dirty_tracker_features(method) ? &s->u : NULL,
                            method, err)) {
        return false;
    }
    s->tracking = true;
    s->m->dirty_method_name = dirty_method_name(method);
    dirty_tracker_protect_later(&s->dt);
    if (dirty_tracker_watch_absent(&s->dt)) {
        watch_drops(s);
    } else {
        g_message("migration %s: guest RAM the VMM drops during precopy is "
                  "not seen with %s (async-wp sees it)",
                  s->m->id, s->m->dirty_method_name);
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];

        if (!dirty_tracker_add_range(&s->dt, r->base, r->size, r->page_size,
                                     NULL, err) ||
            (source_remote_skips(s, i) &&
             !dirty_tracker_protect(&s->dt, i, 0, region_pages(r), err))) {
            return false;
        }
        s->pending[i] =
            g_new0(unsigned long, dirty_tracker_bitmap_longs(&s->dt, i));
    }
    if (method == DIRTY_SYNC_WP) {
        s->wp_thread = g_thread_new("src-wp", wp_thread, s);
    }
    g_message("migration %s: tracking writes with %s", s->m->id,
              s->m->dirty_method_name);
    return true;
}

void precopy_stop_tracking(struct source_session *s)
{
    if (!s->tracking) {
        return;
    }
    if (s->wp_thread) {
        atomic_store(&s->wp_stop, true);
        g_thread_join(s->wp_thread);
        s->wp_thread = NULL;
    }
    /* Unprotects everything: a resumed VMM must never block on us. */
    dirty_tracker_destroy(&s->dt);
    s->tracking = false;
}

uint64_t precopy_pending_pages(struct source_session *s)
{
    uint64_t n = 0;

    for (size_t i = 0; i < s->regions->n; i++) {
        size_t longs = BITS_TO_LONGS(region_pages(&s->regions->regions[i]));

        for (size_t j = 0; s->pending[i] && j < longs; j++) {
            n += __builtin_popcountl(s->pending[i][j]);
        }
    }
    return n;
}

static bool still_precopy(struct source_session *s, GError **err)
{
    if (atomic_load(&s->stop) || migration_status(s->m) != MIG_ACTIVE) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                    "migration cancelled");
        return false;
    }
    return true;
}

/* A round's sender waits for the bandwidth cap while this holds. */
static bool pace_go_on(void *opaque)
{
    struct source_session *s = opaque;

    return !atomic_load(&s->stop) && migration_status(s->m) == MIG_ACTIVE;
}

/*
 * Several bulk streams share a round by stripes: run k of PAGE_SENDER_RUN
 * bytes goes to stream k % nbulk, each stream in its own thread, each
 * run read and sent by that thread alone.
 */
struct stripe {
    struct bulk_stream *b;
    bool all; /* every page, else the pending ones */
    uint32_t flags;
    bool precopy; /* stop when the migration leaves precopy */
    GError *err;
};

/*
 * Round 1 write-protects this much of a region at a time, aligned, by
 * whichever stripe reaches it first: one ioctl (and TLB flush) per block
 * instead of one per run, and the pages a block protects ahead of the
 * round are a sliver of the guest.
 */
#define PRECOPY_PROTECT_BLOCK (8u << 20)

static bool protect_ahead(struct source_session *s, size_t i,
                          const struct region *r, uint64_t p, GError **err)
{
    uint64_t block = MAX(1, PRECOPY_PROTECT_BLOCK / r->page_size);

    return dirty_tracker_protect(&s->dt, i, p / block * block, block, err);
}

static bool send_stripe_run(struct stripe *st, size_t i, uint64_t first,
                            uint64_t n, uint64_t *k)
{
    struct source_session *s = st->b->s;
    const struct region *r = &s->regions->regions[i];
    uint64_t step = MAX(1, PAGE_SENDER_RUN / r->page_size);

    for (uint64_t p = first; p < first + n; p += step, (*k)++) {
        if (*k % s->nbulk != st->b->idx) {
            continue;
        }
        if (st->precopy) {
            live_params_pace(&s->m->live,
                             MIN(step, first + n - p) * r->page_size,
                             pace_go_on, s);
        }
        if ((st->precopy && !still_precopy(s, &st->err)) ||
            (st->all && !protect_ahead(s, i, r, p, &st->err)) ||
            !page_sender_queue(&st->b->sender, st->b->ch, r, p,
                               MIN(step, first + n - p), st->flags, 0,
                               &st->err)) {
            return false;
        }
    }
    return true;
}

static bool send_stripe(struct stripe *st)
{
    struct source_session *s = st->b->s;
    uint64_t k = 0;

    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];
        uint64_t pos = 0, first, n;

        if (source_remote_skips(s, i)) {
            continue; /* declared instead: source_remote_round() */
        }
        if (st->all) {
            if (!send_stripe_run(st, i, 0, region_pages(r), &k)) {
                return false;
            }
            continue;
        }
        while (next_run(s->pending[i], region_pages(r), &pos, &first, &n)) {
            if (!send_stripe_run(st, i, first, n, &k)) {
                return false;
            }
        }
    }
    return true;
}

static gpointer stripe_thread(gpointer opaque)
{
    struct stripe *st = opaque;

    /* Scattered pages were queued: they go before the round ends. */
    if (!send_stripe(st)) {
        page_sender_discard(&st->b->sender);
        return NULL;
    }
    page_sender_flush(&st->b->sender, &st->err);
    return NULL;
}

static bool send_striped(struct source_session *s, bool all, uint32_t flags,
                         GError **err)
{
    struct stripe st[SOURCE_MAX_STREAMS] = {0};
    GThread *th[SOURCE_MAX_STREAMS] = {0};
    bool ok = true;

    for (unsigned i = 0; i < s->nbulk; i++) {
        st[i] = (struct stripe){.b = &s->bulk[i],
                                .all = all,
                                .flags = flags,
                                .precopy = !(flags & FRAME_F_FINAL)};
        if (s->nbulk == 1) {
            stripe_thread(&st[i]);
        } else {
            th[i] = g_thread_new("src-stripe", stripe_thread, &st[i]);
        }
    }
    for (unsigned i = 0; i < s->nbulk; i++) {
        if (th[i]) {
            g_thread_join(th[i]);
        }
        if (st[i].err && ok) {
            g_propagate_error(err, st[i].err);
            ok = false;
        } else if (st[i].err) {
            g_error_free(st[i].err);
        }
    }
    return ok;
}

bool precopy_send_pending(struct source_session *s, uint32_t flags,
                          GError **err)
{
    if (!send_striped(s, false, flags, err) ||
        !source_remote_round(s, false, flags & FRAME_F_FINAL, err)) {
        return false;
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        memset(s->pending[i], 0,
               BITS_TO_LONGS(region_pages(&s->regions->regions[i])) *
                   sizeof(unsigned long));
    }
    return true;
}

static bool send_all(struct source_session *s, GError **err)
{
    return send_striped(s, true, 0, err) &&
           source_remote_round(s, true, false, err);
}

/*
 * Collect what was written, into pending (replacing: it was all sent), or
 * merged into it for the final collect, which leaves pages unprotected.
 */
static uint64_t collect(struct source_session *s, bool final, GError **err)
{
    bool remote[REGION_MAX];
    uint64_t n = 0, dropped;

    if (!(final ? dirty_tracker_collect_final(&s->dt, err)
                : dirty_tracker_collect(&s->dt, DIRTY_ALL_RANGES, err))) {
        return UINT64_MAX;
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        n += final ? dirty_tracker_merge(&s->dt, i, s->pending[i])
                   : dirty_tracker_take(&s->dt, i, s->pending[i]);
        remote[i] = source_remote_skips(s, i);
    }
    if (!s->drops.regions) {
        return n;
    }
    dropped = ram_drops_mark(&s->drops, &s->dt, remote, s->pending);
    if (dropped) {
        g_debug("migration %s: %" G_GUINT64_FORMAT
                " page(s) the VMM dropped go again%s",
                s->m->id, dropped, final ? " (final)" : "");
    }
    return n + dropped;
}

bool precopy_final_collect(struct source_session *s, GError **err)
{
    return collect(s, true, err) != UINT64_MAX;
}

static uint64_t pending_bytes(struct source_session *s)
{
    uint64_t bytes = 0;

    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];
        size_t longs = BITS_TO_LONGS(region_pages(r));

        for (size_t j = 0; j < longs; j++) {
            bytes += __builtin_popcountl(s->pending[i][j]) * r->page_size;
        }
    }
    return bytes;
}

static double mib_per_s(uint64_t bytes, uint64_t us)
{
    return us ? (double)bytes / (1 << 20) / (us / 1e6) : 0;
}

/*
 * The shortest interval a round's dirty count is measured over.  The
 * final dirty set builds up from the last collect until the VMM is
 * paused (the Barrier, the pause: tens of ms at least), but a round that
 * re-sent a few pages can end within a millisecond, in which a guest
 * writing at full speed may not touch one new page: that round reported
 * "0 dirtied", an expected downtime of 0 ms, and precopy ended to find
 * megabytes dirty at the switchover.  A shorter round waits out the rest
 * of the window before it collects.
 */
#define PRECOPY_MIN_ROUND_US 50000
#define PRECOPY_WAIT_STEP_US 10000

/* Let the guest run until the round has lasted PRECOPY_MIN_ROUND_US. */
static bool wait_round_window(struct source_session *s, uint64_t t0,
                              GError **err)
{
    uint64_t now;

    while ((now = migration_now_us()) - t0 < PRECOPY_MIN_ROUND_US) {
        if (!still_precopy(s, err)) {
            return false;
        }
        g_usleep(MIN(PRECOPY_WAIT_STEP_US, t0 + PRECOPY_MIN_ROUND_US - now));
    }
    return true;
}

/*
 * Round 1 of the WP methods protects a page as it reads it.  A region the
 * destination reads in place was protected whole at the start: with one,
 * the round is judged as watched throughout, the judgement that keeps
 * precopy going longer (as before round_predict.c).
 */
static bool watched_from_read(const struct source_session *s,
                              const struct round_stats *rs)
{
    return rs->round == 1 && s->dt.protect_later && !s->reads_on;
}

/*
 * Hybrid switches to postcopy as soon as another round would not pay
 * (round_predict.h).  Its downtime does not depend on the dirty set's
 * size (only the set travels), so the downtime limit is not what ends it.
 * Precopy has no such way out: it must converge or hit a limit.
 */
static bool hybrid_not_converging(const struct source_session *s,
                                  const struct round_stats *rs)
{
    return s->m->params.mode == MODE_HYBRID &&
           !round_predict_next_pays(rs->pages, rs->dirty_pages,
                                    watched_from_read(s, rs));
}

bool precopy_rounds(struct source_session *s, GError **err)
{
    struct migration *m = s->m;
    struct migration_stats *st = &m->stats;
    uint64_t start = migration_now_us();
    struct round_stats rs = {.round = 1};
    uint64_t t0 = start, sent0 = atomic_load(&st->bytes_precopy);
    uint64_t pages0 =
        atomic_load(&st->pages_sent) + atomic_load(&st->zero_pages);

    source_senders_set_phase(s, &st->bytes_precopy);
    source_bulk_set_send_buffers(s, SOURCE_PRECOPY_SNDBUF);
    if (!send_all(s, err)) {
        return false;
    }
    for (;;) {
        uint64_t t1, dirty, now, bytes, expected;
        uint64_t limit_us;
        double bw;

        if (!wait_round_window(s, t0, err)) {
            return false;
        }
        t1 = migration_now_us();
        dirty = collect(s, false, err);
        if (dirty == UINT64_MAX) {
            return false;
        }
        now = migration_now_us();
        bytes = atomic_load(&st->bytes_precopy) - sent0;
        rs.pages = atomic_load(&st->pages_sent) + atomic_load(&st->zero_pages) -
                   pages0;
        rs.bytes = bytes;
        rs.dirty_pages = dirty;
        rs.duration_us = now - t0;
        rs.scan_us = now - t1;
        rs.dirty_mbps = mib_per_s(pending_bytes(s), rs.duration_us);
        rs.send_mbps = mib_per_s(bytes, rs.duration_us);
        migration_add_round(m, &rs);
        /* Bandwidth of this round, or of all of precopy if it was tiny. */
        bw = bytes > (1 << 20)
                 ? rs.send_mbps
                 : mib_per_s(atomic_load(&st->bytes_precopy), now - start);
        expected = bw > 0
                       ? (uint64_t)(pending_bytes(s) / (bw * (1 << 20)) * 1e6)
                       : UINT64_MAX;
        atomic_store(&st->expected_downtime_us, expected);
        limit_us = atomic_load(&m->live.downtime_limit_ms) * 1000;
        if (atomic_load(&m->live.postcopy_requested)) {
            g_message("migration %s: precopy ends after round %u: postcopy "
                      "requested; %" G_GUINT64_FORMAT
                      " dirty pages go in postcopy",
                      m->id, rs.round, dirty);
            return true;
        }
        if (hybrid_not_converging(s, &rs)) {
            g_message("migration %s: precopy ends after round %u: it left "
                      "%" G_GUINT64_FORMAT " of the %" G_GUINT64_FORMAT
                      " pages it sent dirty again%s; postcopy fetches them",
                      m->id, rs.round, dirty, rs.pages,
                      watched_from_read(s, &rs)
                          ? " (watched from each read on: counted twice)"
                          : "");
            return true;
        }
        if (expected <= limit_us || rs.round >= m->params.max_rounds ||
            now - start >= m->params.max_precopy_ms * 1000) {
            g_message(
                "migration %s: precopy ends after round %u: %" G_GUINT64_FORMAT
                " dirty pages, expected downtime %.1f ms%s",
                m->id, rs.round, dirty, expected / 1000.0,
                expected <= limit_us ? ""
                                     : " (limit on rounds or time reached)");
            return true;
        }
        if (!still_precopy(s, err)) {
            return false;
        }
        t0 = migration_now_us();
        sent0 = atomic_load(&st->bytes_precopy);
        pages0 = atomic_load(&st->pages_sent) + atomic_load(&st->zero_pages);
        rs = (struct round_stats){.round = rs.round + 1};
        if (!precopy_send_pending(s, 0, err)) {
            return false;
        }
    }
}
