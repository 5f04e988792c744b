/* guest.c - see guest.h. */
#include "guest.h"

#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <gio/gio.h>

#include "attach.pb-c.h"
#include "digest.h"
#include "guest_state.h"
#include "guest_thread.h"
#include "verify.h"
#include "vm_channel.h"

typedef Postcopy__Attach__Command Command;
typedef Postcopy__Attach__Reply Reply;

/* Keeps the verify order apart from the fill and write streams. */
#define VERIFY_ORDER_SALT 0x766572696679ULL

static bool fail(GError **err, const char *msg)
{
    g_set_error_literal(err, G_IO_ERROR, G_IO_ERROR_FAILED, msg);
    return false;
}

static bool send_reply(struct guest *g, Reply *r, GError **err)
{
    bool ok;

    g_mutex_lock(&g->send_lock);
    ok = vm_channel_send(g->sock, VM_FRAME_REPLY, &r->base, NULL, 0, err);
    g_mutex_unlock(&g->send_lock);
    return ok;
}

static bool guest_paused(struct guest *g)
{
    return !g->wl || workload_paused(g->wl);
}

static uint64_t guest_pages_written(struct guest *g)
{
    return g->wl ? workload_pages_written(g->wl) : 0;
}

/* The geometry half of a device state: this guest's regions. */
static void ram_geometry(const struct guest_ram *ram, struct guest_state *s)
{
    s->nregions = ram->n;
    for (unsigned i = 0; i < ram->n; i++) {
        s->regions[i].size = ram->regions[i].size;
        s->regions[i].page_size = ram->regions[i].page_size;
    }
    s->npages = ram->npages;
}

static bool cmd_pause(struct guest *g, Reply *r, GError **err)
{
    struct guest_state s = {.seed = g->seed};
    size_t len;

    if (!g->wl) {
        return fail(err, "an incoming guest has no state before its "
                         "resume");
    }
    workload_pause(g->wl);
    ram_geometry(&g->ram, &s);
    s.pages_written = workload_pages_written(g->wl);
    s.generation = workload_generation(g->wl);
    if (g->cfg.verify) {
        s.digests = verify_digest_table(&g->ram, g->cfg.verify_threads);
    }
    r->device_state.data = guest_state_encode(&s, &len);
    r->device_state.len = len;
    guest_state_clear(&s);
    return true;
}

/* The vCPUs start after the check: their writes would fail it. */
static bool resume_incoming(struct guest *g, const ProtobufCBinaryData *blob,
                            GError **err)
{
    struct guest_state s, mine = {0};

    if (!g->cfg.incoming || !g->held_wl) {
        return fail(err, "device state is taken once, by an incoming "
                         "guest");
    }
    if (!guest_state_decode(blob->data, blob->len, &s, err)) {
        return false;
    }
    ram_geometry(&g->ram, &mine);
    if (!guest_state_fits(&s, &mine, err)) {
        guest_state_clear(&s);
        return false;
    }
    workload_adopt(g->held_wl,
                   &(struct workload_params){.seed = s.seed,
                                             .generation = s.generation + 1,
                                             .pages_written = s.pages_written});
    g->wl = g_steal_pointer(&g->held_wl);
    g->seed = s.seed;
    g->expected = g_steal_pointer(&s.digests);
    if (!g->expected) {
        workload_start(g->wl);
    }
    guest_state_clear(&s);
    return true;
}

static bool cmd_resume(struct guest *g, const Command *c, GError **err)
{
    if (c->device_state.len) {
        return resume_incoming(g, &c->device_state, err);
    }
    if (!g->wl) {
        return fail(err, "an incoming guest needs the device state");
    }
    workload_resume(g->wl);
    return true;
}

static bool handle(struct guest *g, const Command *c, Reply *r, GError **err)
{
    switch (c->kind) {
    case POSTCOPY__ATTACH__COMMAND__KIND__PAUSE:
        return cmd_pause(g, r, err);
    case POSTCOPY__ATTACH__COMMAND__KIND__RESUME:
        return cmd_resume(g, c, err);
    case POSTCOPY__ATTACH__COMMAND__KIND__QUERY:
        if (g->cfg.refuse_query) {
            return fail(err, "query refused (--refuse-query)");
        }
        return true;
    case POSTCOPY__ATTACH__COMMAND__KIND__QUIT:
        return true;
    default:
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "unknown command kind %d", c->kind);
        return false;
    }
}

/*
 * What the guest's own reads waited (verify.h), on a line of its own so
 * that the "verify:" line stays as scripts parse it.  The plain figures
 * cover every timed read; the slow_ ones only those that faulted, to set
 * beside the daemon's fault latency.
 */
static void print_latency(const struct verify_result *res)
{
    const struct stats_histogram *all = &res->latency, *slow = &res->slow;
    uint64_t n = stats_histogram_count(all),
             nslow = stats_histogram_count(slow);

    printf("verify-latency: count %" PRIu64 " p50_us %" PRIu64
           " p99_us %" PRIu64 " max_us %" PRIu64 " slow_count %" PRIu64
           " slow_p50_us %" PRIu64 " slow_p99_us %" PRIu64
           " fast_count %" PRIu64 "\n",
           n, stats_histogram_percentile(all, 50),
           stats_histogram_percentile(all, 99), stats_histogram_max(all), nslow,
           stats_histogram_percentile(slow, 50),
           stats_histogram_percentile(slow, 99), n - nslow);
}

static void run_verify(struct guest *g, struct verify_result *res)
{
    const struct verify_params p = {
        .ram = &g->ram,
        .expected = g->expected,
        .nthreads = g->cfg.verify_threads,
        .seed = digest_mix64(g->cfg.seed ^ VERIFY_ORDER_SALT),
        .overlap = g->cfg.verify_overlap,
        .write = g->cfg.verify_write,
        .settle_ms = g->cfg.verify_settle_ms,
    };

    verify_pages(&p, res);
    g_clear_pointer(&g->expected, g_free);
    printf("postcopy-guest: verified by %" PRIu64
           " reads on %u threads%s in %" PRIu64 " ms\n",
           res->reads, p.nthreads, p.overlap ? " (overlapping)" : "",
           res->elapsed_us / 1000);
    printf("verify: %" PRIu64 " pages checked, %" PRIu64 " mismatches, %" PRIu64
           " overwritten\n",
           res->pages_checked, res->mismatches, res->overwritten);
    print_latency(res);
}

static gpointer verifier_main(gpointer opaque)
{
    struct guest *g = opaque;
    Postcopy__Attach__VerifyResult vr = POSTCOPY__ATTACH__VERIFY_RESULT__INIT;
    Reply r = POSTCOPY__ATTACH__REPLY__INIT;
    g_autoptr(GError) err = NULL;
    struct verify_result res;

    if (!drop_apply(&g->cfg.drop, &g->ram, g->expected, &err)) {
        fprintf(stderr, "postcopy-guest: %s\n", err->message);
        g_clear_error(&err);
    }
    run_verify(g, &res);
    vr.pages_checked = res.pages_checked;
    vr.mismatches = res.mismatches;
    vr.first_mismatch = res.first_mismatch;
    vr.elapsed_us = res.elapsed_us;
    vr.overwritten = res.overwritten;
    r.ok = true;
    r.verify = &vr;
    r.pages_written = guest_pages_written(g);
    r.paused = guest_paused(g);
    if (!send_reply(g, &r, &err)) {
        fprintf(stderr, "postcopy-guest: verify result not sent: %s\n",
                err->message);
    }
    workload_start(g->wl);
    return NULL;
}

/* Answer one command; false when the guest should exit. */
static bool serve_command(struct guest *g, const Command *c)
{
    Reply r = POSTCOPY__ATTACH__REPLY__INIT;
    g_autoptr(GError) err = NULL;
    g_autoptr(GError) send_err = NULL;

    r.id = c->id;
    r.ok = handle(g, c, &r, &err);
    if (!r.ok) {
        r.error = err->message;
    }
    r.paused = guest_paused(g);
    r.pages_written = guest_pages_written(g);
    if (!send_reply(g, &r, &send_err)) {
        fprintf(stderr, "postcopy-guest: %s\n", send_err->message);
    }
    g_free(r.device_state.data);
    /* Started after the reply so the daemon sees "resumed" first. */
    if (!g->verifier && g->expected) {
        g->verifier = guest_thread_new("verifier", verifier_main, g);
    }
    return c->kind != POSTCOPY__ATTACH__COMMAND__KIND__QUIT;
}

static bool serve_frame(struct guest *g, const struct vm_frame *f)
{
    Command *c;
    bool more;

    if (f->type != VM_FRAME_COMMAND) {
        fprintf(stderr, "postcopy-guest: ignoring frame of type %d\n", f->type);
        return true;
    }
    c = postcopy__attach__command__unpack(NULL, f->len, f->body);
    if (!c) {
        fprintf(stderr, "postcopy-guest: ignoring a malformed command\n");
        return true;
    }
    more = serve_command(g, c);
    postcopy__attach__command__free_unpacked(c, NULL);
    return more;
}

/*
 * The daemon went away (restarted, say): a real VMM keeps running and
 * keeps its uffd, so faults wait; it attaches again to the new daemon,
 * which picks the migration up.  Try for cfg.reattach_s seconds.
 */
static bool reattach(struct guest *g)
{
    int64_t deadline =
        g_get_monotonic_time() + g->cfg.reattach_s * G_USEC_PER_SEC;

    printf("postcopy-guest: attach socket closed while %s, attaching "
           "again\n",
           guest_paused(g) ? "paused" : "running");
    while (g_get_monotonic_time() < deadline) {
        g_autoptr(GError) err = NULL;

        g_mutex_lock(&g->send_lock);
        close(g->sock);
        g->sock = -1;
        g_mutex_unlock(&g->send_lock);
        if (g->attach(g, &err)) {
            printf("postcopy-guest: attached again\n");
            return true;
        }
        g_usleep(100 * 1000);
    }
    return false;
}

/*
 * The monitor answers ahead of its own vCPUs.  At normal priority a pause
 * waited behind two vCPU threads writing flat out for 1-60 ms on a 2-CPU
 * host (measured: the command read 7-28 ms after it arrived, the vCPUs
 * parked 40-200 us after that) — the VMM's latency, not the migration's,
 * and it swamped the downtime figures.  It sleeps between commands, so
 * FIFO 1 starves nobody; the threads it starts (vCPUs, verifier) run at
 * normal priority (guest_thread.h).  Without the privilege it stays as it
 * was.
 */
static void monitor_priority(void)
{
    struct sched_param sp = {.sched_priority = 1};

    sched_setscheduler(0, SCHED_FIFO, &sp);
}

int guest_serve(struct guest *g)
{
    monitor_priority();
    for (;;) {
        g_autoptr(GError) err = NULL;
        struct vm_frame f;
        bool more;

        if (!vm_channel_recv(g->sock, &f, &err)) {
            if (g_error_matches(err, G_IO_ERROR,
                                G_IO_ERROR_CONNECTION_CLOSED) &&
                g->cfg.reattach_s && reattach(g)) {
                continue;
            }
            if (g_error_matches(err, G_IO_ERROR,
                                G_IO_ERROR_CONNECTION_CLOSED)) {
                printf("postcopy-guest: attach socket closed while %s, "
                       "exiting\n",
                       guest_paused(g) ? "paused" : "running");
                return 0;
            }
            fprintf(stderr, "postcopy-guest: %s\n", err->message);
            return 1;
        }
        more = serve_frame(g, &f);
        vm_frame_clear(&f);
        if (!more) {
            printf("postcopy-guest: quit\n");
            return 0;
        }
    }
}
