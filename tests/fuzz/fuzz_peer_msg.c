/*
 * fuzz_peer_msg.c - libFuzzer target: a FRAME_MSG payload from the peer.
 *
 * The input is the payload of one message frame.  It is unpacked as
 * channel_read_msg() does (postcopy__peer__peer_message__unpack, a message
 * of no known kind refused), then checked the way the daemon consumes each
 * kind, as far as that is a pure public function:
 *   - every kind: peer_message_name(), the strings it may log, and a
 *     pack/unpack round trip (the sending side packs what it built);
 *   - Switchover (and ResumeReply.missing, when the proto has it):
 *     dirty_set_decode() against a fixed region table.  Every run it
 *     reports must lie inside its region, none may come before a refusal,
 *     the count must match, and the accepted dirty set must survive
 *     dirty_set_encode() + dirty_set_decode() as the same set of pages;
 *   - Layout: backing_kind_name() of every region, as the layout check
 *     logs it;
 *   - ReadRound: read_round_decode() with the anonymous regions not
 *     readable: refused with one line and no page set, or every page set
 *     lies in a readable region and their count is the one reported.
 * The Hello check (hello_problem) and the layout comparison
 * (layout_mismatch) are static in daemon/dest/session.c: not reached here.
 */
#include "bitmap.h"
#include "dirty_set.h"
#include "read_plan.h"
#include "region.h"
#include "peer_msg.h"
#include "transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <gio/gio.h>

#define KiB (1024ull)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The destination's VMM: every backing, page sizes from 4 KiB to 4 MiB,
 * the largest a region may have (region.c refuses 1 GiB pages at attach).
 */
static const struct region layout[] = {
    {.kind = BACKING_ANON,
     .base = 0x7f0000000000,
     .size = 1 * MiB,
     .page_size = 4 * KiB,
     .fd = -1,
     .name = "ram-low"},
    {.kind = BACKING_SHMEM,
     .base = 0x7f0040000000,
     .size = 4 * MiB,
     .page_size = 4 * KiB,
     .name = "ram-shmem"},
    {.kind = BACKING_HUGETLBFS,
     .base = 0x7f0080000000,
     .size = 32 * MiB,
     .page_size = 2 * MiB,
     .name = "ram-2m"},
    {.kind = BACKING_HUGETLBFS,
     .base = 0x7f00c0000000,
     .size = 2 * GiB,
     .page_size = 4 * MiB,
     .name = "ram-4m"},
    {.kind = BACKING_ANON,
     .base = 0x7f0200000000,
     .size = 12 * KiB,
     .page_size = 4 * KiB,
     .fd = -1,
     .name = "rom"},
};
#define NREGIONS G_N_ELEMENTS(layout)

static struct region_table table;

/* One bitmap per region, one bit per page. */
struct page_set {
    unsigned long *map[REGION_MAX];
    uint64_t reported; /* pages the runs named, with repeats */
};

static void die(const char *what)
{
    fprintf(stderr, "fuzz_peer_msg: %s\n", what);
    abort();
}

/*
 * A GLib critical (g_return_if_fail) is a programming error: crash, with
 * abort() so that libFuzzer keeps the input (GLib's own fatal path raises
 * SIGTRAP, which it does not catch).  Messages and warnings are dropped.
 */
static void log_handler(const char *domain, GLogLevelFlags level,
                        const char *message, gpointer data)
{
    if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) {
        fprintf(stderr, "%s: %s\n", domain ? domain : "GLib", message);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    g_log_set_default_handler(log_handler, NULL);
    region_table_init(&table);
    for (size_t i = 0; i < NREGIONS; i++) {
        struct region r = layout[i];
        g_autoptr(GError) err = NULL;

        /* The table wants an fd for file backings; it is never used. */
        if (r.kind != BACKING_ANON) {
            r.fd = memfd_create("fuzz_peer_msg", MFD_CLOEXEC);
            if (r.fd < 0) {
                die("memfd_create failed");
            }
        }
        if (!region_table_add(&table, &r, &err)) {
            fprintf(stderr, "fuzz_peer_msg: layout: %s\n", err->message);
            abort();
        }
    }
    return 0;
}

static void check_error(GError *err, const char *who)
{
    if (!err || !g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA) ||
        !err->message[0] || strchr(err->message, '\n')) {
        fprintf(stderr,
                "fuzz_peer_msg: %s failed without one INVALID_DATA "
                "line\n",
                who);
        abort();
    }
    g_error_free(err);
}

static void page_set_init(struct page_set *s)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < table.n; i++) {
        uint64_t n = region_pages(&table.regions[i]);

        s->map[i] =
            g_new0(unsigned long, (n + BITS_PER_LONG - 1) / BITS_PER_LONG);
    }
}

static void page_set_clear(struct page_set *s)
{
    for (size_t i = 0; i < table.n; i++) {
        g_free(s->map[i]);
    }
}

static uint64_t page_set_count(const struct page_set *s)
{
    uint64_t n = 0;

    for (size_t i = 0; i < table.n; i++) {
        uint64_t np = region_pages(&table.regions[i]);

        for (uint64_t p = 0; p < np; p++) {
            n +=
                !!(s->map[i][p / BITS_PER_LONG] & (1UL << (p % BITS_PER_LONG)));
        }
    }
    return n;
}

static bool page_set_equal(const struct page_set *a, const struct page_set *b)
{
    for (size_t i = 0; i < table.n; i++) {
        uint64_t n = region_pages(&table.regions[i]);

        if (memcmp(a->map[i], b->map[i],
                   (n + BITS_PER_LONG - 1) / BITS_PER_LONG *
                       sizeof(unsigned long))) {
            return false;
        }
    }
    return true;
}

/* dirty_run_fn: what the destination would mark stale. */
static void add_run(void *opaque, uint32_t region, uint64_t first,
                    uint64_t npages)
{
    struct page_set *s = opaque;
    uint64_t np;

    if (region >= table.n) {
        die("dirty_set_decode reported a run in a region outside the table");
    }
    np = region_pages(&table.regions[region]);
    if (npages == 0 || first >= np || npages > np - first) {
        fprintf(stderr,
                "fuzz_peer_msg: run region %u first %" G_GUINT64_FORMAT
                " npages %" G_GUINT64_FORMAT " outside %" G_GUINT64_FORMAT
                " pages\n",
                region, first, npages, np);
        abort();
    }
    for (uint64_t p = first; p < first + npages; p++) {
        s->map[region][p / BITS_PER_LONG] |= 1UL << (p % BITS_PER_LONG);
    }
    s->reported += npages;
}

/* The source's side: encode @got, decode it again, expect the same pages. */
static void check_reencode(const struct page_set *got)
{
    Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;
    struct page_set again;
    GError *err = NULL;
    uint64_t pages = 0;
    uint64_t distinct = page_set_count(got);

    dirty_set_encode(&table, got->map, &so);
    if (so.dirty_pages != distinct) {
        die("dirty_set_encode counted a different number of pages");
    }
    page_set_init(&again);
    if (!dirty_set_decode(&so, &table, add_run, &again, &pages, &err)) {
        fprintf(stderr, "fuzz_peer_msg: own encoding refused: %s\n",
                err->message);
        abort();
    }
    if (pages != distinct || !page_set_equal(got, &again)) {
        die("dirty set changed through dirty_set_encode/dirty_set_decode");
    }
    page_set_clear(&again);
    dirty_set_clear(&so);
}

static void check_dirty_set(const Postcopy__Peer__Switchover *so)
{
    struct page_set got;
    GError *err = NULL;
    uint64_t pages = 0;

    page_set_init(&got);
    if (!dirty_set_decode(so, &table, add_run, &got, &pages, &err)) {
        check_error(err, "dirty_set_decode");
        /* dirty_set.h: everything is checked before the first run. */
        if (got.reported) {
            die("dirty_set_decode reported runs, then refused the set");
        }
    } else {
        if (err) {
            die("dirty_set_decode succeeded with an error set");
        }
        if (pages != got.reported || pages != so->dirty_pages) {
            die("dirty_set_decode: page count differs from the runs");
        }
        check_reencode(&got);
    }
    page_set_clear(&got);
}

static void check_read_round(const Postcopy__Peer__ReadRound *rr)
{
    unsigned long *maps[REGION_MAX] = {0};
    bool readable[REGION_MAX] = {false};
    GError *err = NULL;
    uint64_t pages = 0, set = 0;
    bool ok;

    if (!rr->pages) {
        return; /* remote_reader.c refuses it before decoding */
    }
    for (size_t i = 0; i < table.n; i++) {
        readable[i] = table.regions[i].kind != BACKING_ANON;
        maps[i] = calloc(BITS_TO_LONGS(region_pages(&table.regions[i])),
                         sizeof(unsigned long));
    }
    ok = read_round_decode(rr->pages, &table, readable, maps, &pages, &err);
    if (!ok) {
        check_error(err, "read_round_decode");
    }
    for (size_t i = 0; i < table.n; i++) {
        for (uint64_t p = 0; p < region_pages(&table.regions[i]); p++) {
            if (!bitmap_test_bit(maps[i], p)) {
                continue;
            }
            if (!ok || !readable[i]) {
                die("read_round_decode left a page to read it must not");
            }
            set++;
        }
        free(maps[i]);
    }
    if (ok && set > pages) {
        die("read_round_decode: more pages set than it counted");
    }
}

static void touch(const char *s)
{
    /* What the daemon logs must be a C string (protobuf-c's "" default). */
    if (!s || strlen(s) > (64u << 20)) {
        die("string field NULL or unterminated");
    }
}

static void check_kind(const PeerMessage *msg)
{
    switch (msg->msg_case) {
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO:
        touch(msg->hello->vm_name);
        for (size_t i = 0; i < msg->hello->n_capabilities; i++) {
            touch(msg->hello->capabilities[i]);
        }
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY:
        touch(msg->hello_reply->error);
        for (size_t i = 0; i < msg->hello_reply->n_capabilities; i++) {
            touch(msg->hello_reply->capabilities[i]);
        }
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT:
        for (size_t i = 0; i < msg->layout->n_regions; i++) {
            touch(msg->layout->regions[i]->name);
            touch(backing_kind_name(
                (enum backing_kind)msg->layout->regions[i]->backing));
        }
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT_REPLY:
        touch(msg->layout_reply->error);
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER:
        check_dirty_set(msg->switchover);
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER_REPLY:
        touch(msg->switchover_reply->error);
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_ERROR:
        touch(msg->error->message);
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_CANCEL:
        touch(msg->cancel->reason);
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_BARRIER:
        if (msg->barrier->stale) {
            check_dirty_set(msg->barrier->stale);
        }
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_FINAL_DIRTY:
        if (msg->final_dirty->stale) {
            check_dirty_set(msg->final_dirty->stale);
        }
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_BARRIER_REPLY:
        break; /* a number: nothing to check */
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_READ_ROUND:
        check_read_round(msg->read_round);
        break;
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_READABLE_MEMORY_REPLY:
        touch(msg->readable_memory_reply->error);
        break;
#ifdef POSTCOPY__PEER__RESUME_REPLY__INIT
    case POSTCOPY__PEER__PEER_MESSAGE__MSG_RESUME_REPLY:
        touch(msg->resume_reply->error);
        if (msg->resume_reply->missing) {
            check_dirty_set(msg->resume_reply->missing);
        }
        break;
#endif
    default:
        break;
    }
}

/*
 * Drop what protobuf-c kept of fields it does not know, at every level:
 * the daemon never forwards a received message, it packs messages it
 * built, and those have none.  (protobuf-c 1.4 keeps, say, a field
 * numbered 0 that it then refuses to read back.)  The default allocator
 * is malloc().
 */
static void strip_unknown(ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char *base = (char *)m;

    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        free(m->unknown_fields[i].data);
    }
    free(m->unknown_fields);
    m->unknown_fields = NULL;
    m->n_unknown_fields = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];

        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(size_t *)(base + f->quantifier_offset);
            ProtobufCMessage **v = *(ProtobufCMessage ***)(base + f->offset);

            for (size_t j = 0; j < n; j++) {
                strip_unknown(v[j]);
            }
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(uint32_t *)(base + f->quantifier_offset) != f->id) {
            continue;
        }
        if (*(ProtobufCMessage **)(base + f->offset)) {
            strip_unknown(*(ProtobufCMessage **)(base + f->offset));
        }
    }
}

/* pack(unpack(pack(m))) == pack(m): what we send, the peer reads back. */
static void check_round_trip(PeerMessage *msg)
{
    size_t len = postcopy__peer__peer_message__get_packed_size(msg);
    uint8_t *buf = g_malloc(len ? len : 1);
    uint8_t *buf2;
    PeerMessage *again;

    if (postcopy__peer__peer_message__pack(msg, buf) != len) {
        die("pack wrote a different size than get_packed_size");
    }
    again = postcopy__peer__peer_message__unpack(NULL, len, buf);
    if (!again) {
        die("a packed message does not unpack");
    }
    if (again->msg_case != msg->msg_case) {
        die("the message kind changed through pack/unpack");
    }
    if (postcopy__peer__peer_message__get_packed_size(again) != len) {
        die("the packed size changed through pack/unpack");
    }
    buf2 = g_malloc(len ? len : 1);
    postcopy__peer__peer_message__pack(again, buf2);
    if (memcmp(buf, buf2, len)) {
        die("the packed bytes changed through pack/unpack");
    }
    g_free(buf2);
    g_free(buf);
    peer_message_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PeerMessage *msg = postcopy__peer__peer_message__unpack(NULL, size, data);

    if (!msg) {
        return 0;
    }
    /* channel_read_msg() refuses a message of a kind this build lacks. */
    if (msg->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG__NOT_SET) {
        touch(peer_message_name(msg));
        check_kind(msg);
    }
    strip_unknown(&msg->base);
    check_round_trip(msg);
    peer_message_free(msg);
    return 0;
}
