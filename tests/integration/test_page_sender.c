/*
 * test_page_sender.c - page_sender_send() over a real TCP channel, from a
 * memfd whose pages are a known mix of data, written zeros and holes:
 * what arrives equals what was there, holes arrive as zeros (in a
 * PAGE_ZERO frame when they are many, folded into the data frame when
 * few), and no hole was read on the way (the memfd allocated no page:
 * reading a shmem hole through the alias would have).  The queue
 * (page_sender_queue) likewise, from the memfd and from anonymous memory:
 * nothing leaves before the flush, then every queued page, once.
 */
#include "page_sender.h"
#include "backing.h"
#include "frame.h"
#include "region.h"
#include "swap_area.h"
#include "transport.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE 4096u
/* Pages of the file before the region: data, never sent. */
#define LEAD   8
#define NPAGES 1536 /* six PAGE_SENDER_RUNs */

enum kind { HOLE, DATA, ZERO }; /* ZERO: written, all zero bytes */

struct fixture {
    int fd;
    uint8_t *alias;
    struct region r;
    enum kind kind[NPAGES];
};

static uint8_t page_byte(uint64_t p)
{
    return (uint8_t)(p * 7 + 1) | 1; /* never 0 */
}

/*
 * A hole at the start and at the end, one longer than a run (one frame per
 * run, still never read), a data segment across run boundaries, then
 * scattered single holes, short hole runs and written zero pages.
 */
static void fixture_kinds(struct fixture *fx)
{
    uint64_t seed = 0x9e3779b97f4a7c15u;

    memset(fx, 0, sizeof(*fx));
    for (uint64_t p = 0; p < NPAGES; p++) {
        if (p < 3 || p >= NPAGES - 5 || (p >= 300 && p < 620)) {
            fx->kind[p] = HOLE;
        } else if (p >= 620 && p < 1000) {
            fx->kind[p] = DATA;
        } else {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            fx->kind[p] = seed % 4 == 0 ? HOLE : seed % 16 == 1 ? ZERO : DATA;
        }
    }
}

static void fixture_open(struct fixture *fx)
{
    fixture_kinds(fx);
    fx->fd = memfd_create("test_page_sender", MFD_CLOEXEC);
    g_assert_cmpint(fx->fd, >=, 0);
    g_assert_cmpint(ftruncate(fx->fd, (LEAD + NPAGES) * PAGE), ==, 0);
}

/* The pages of the memfd; also in a child process (test_swapped). */
static void fixture_write(void *opaque)
{
    struct fixture *fx = opaque;
    uint8_t buf[PAGE];

    memset(buf, 0xee, PAGE);
    for (uint64_t p = 0; p < LEAD; p++) {
        g_assert_cmpint(pwrite(fx->fd, buf, PAGE, p * PAGE), ==, PAGE);
    }
    for (uint64_t p = 0; p < NPAGES; p++) {
        if (fx->kind[p] == HOLE) {
            continue;
        }
        memset(buf, fx->kind[p] == DATA ? page_byte(p) : 0, PAGE);
        g_assert_cmpint(pwrite(fx->fd, buf, PAGE, (LEAD + p) * PAGE), ==, PAGE);
    }
}

static void fixture_map(struct fixture *fx)
{
    fx->alias =
        mmap(NULL, NPAGES * PAGE, PROT_READ, MAP_SHARED, fx->fd, LEAD * PAGE);
    g_assert_true(fx->alias != MAP_FAILED);
    fx->r = (struct region){
        .id = 0,
        .kind = BACKING_SHMEM,
        .base = (uint64_t)(uintptr_t)fx->alias,
        .size = NPAGES * PAGE,
        .offset = LEAD * PAGE,
        .page_size = PAGE,
        .fd = fx->fd,
        .alias = fx->alias,
    };
}

static void fixture_setup(struct fixture *fx)
{
    fixture_open(fx);
    fixture_write(fx);
    fixture_map(fx);
}

/* The same pages in anonymous memory of this process (holes untouched). */
static void fixture_setup_anon(struct fixture *fx)
{
    fixture_kinds(fx);
    fx->fd = -1;
    fx->alias = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(fx->alias != MAP_FAILED);
    for (uint64_t p = 0; p < NPAGES; p++) {
        if (fx->kind[p] != HOLE) {
            memset(fx->alias + p * PAGE, fx->kind[p] == DATA ? page_byte(p) : 0,
                   PAGE);
        }
    }
    fx->r = (struct region){
        .id = 0,
        .kind = BACKING_ANON,
        .base = (uint64_t)(uintptr_t)fx->alias,
        .size = NPAGES * PAGE,
        .page_size = PAGE,
        .fd = -1,
    };
}

static void fixture_teardown(struct fixture *fx)
{
    munmap(fx->alias, NPAGES * PAGE);
    if (fx->fd >= 0) {
        close(fx->fd);
    }
}

/* The allocated bytes of the file, and its pages of data by SEEK_DATA. */
static uint64_t allocated(int fd)
{
    struct stat st;

    g_assert_cmpint(fstat(fd, &st), ==, 0);
    return (uint64_t)st.st_blocks * 512;
}

static uint64_t data_pages(int fd)
{
    uint64_t n = 0;
    off_t pos = 0, d, h;

    while ((d = lseek(fd, pos, SEEK_DATA)) >= 0) {
        h = lseek(fd, d, SEEK_HOLE);
        g_assert_cmpint(h, >, d);
        n += (uint64_t)(h - d) / PAGE;
        pos = h;
    }
    g_assert_cmpint(errno, ==, ENXIO);
    return n;
}

struct sender {
    struct fixture *fx;
    struct channel *ch;
    uint64_t first, n;
    _Atomic uint64_t pages, zero, bytes;
    GError *err;
    bool ok;
};

static gpointer sender_main(gpointer opaque)
{
    struct sender *s = opaque;
    struct page_counters c = {
        .pages = &s->pages, .zero = &s->zero, .bytes = &s->bytes};
    struct page_sender ps;

    page_sender_init(&ps, getpid(), &c);
    /* seq 0: frame_validate() refuses a PAGE_ZERO frame with one. */
    s->ok =
        page_sender_send(&ps, s->ch, &s->fx->r, s->first, s->n, 0, 0, &s->err);
    page_sender_destroy(&ps);
    if (!s->ok) {
        g_printerr("page_sender_send: %s\n", s->err->message);
        channel_shutdown(s->ch); /* fail the receiver rather than hang it */
    }
    return NULL;
}

/* Stretches of non-data pages wider than a data frame may carry, in range. */
#define GAP_MIN   8 /* page_sender.c's ZERO_RUN_MIN */
#define RUN_PAGES (PAGE_SENDER_RUN / PAGE)

static void gap_at(const struct fixture *fx, uint64_t p, uint64_t lo,
                   uint64_t hi, uint64_t *s, uint64_t *e)
{
    for (*s = p; *s > lo && fx->kind[*s - 1] != DATA; (*s)--) {
    }
    for (*e = p; *e < hi && fx->kind[*e] != DATA; (*e)++) {
    }
}

/* Page @p (not data) lies in a stretch of 2 * GAP_MIN: PAGE_ZERO for sure. */
static bool long_gap(const struct fixture *fx, uint64_t p, uint64_t lo,
                     uint64_t hi)
{
    uint64_t s, e;

    gap_at(fx, p, lo, hi, &s, &e);
    return e - s >= 2 * GAP_MIN && p - s >= GAP_MIN / 2 &&
           e - p >= GAP_MIN / 2 &&
           (s - lo) / RUN_PAGES == (e - 1 - lo) / RUN_PAGES; /* one run */
}

static uint64_t long_gaps(const struct fixture *fx, uint64_t lo, uint64_t hi)
{
    uint64_t n = 0;

    for (uint64_t p = lo; p < hi; p++) {
        uint64_t s, e;

        if (fx->kind[p] == DATA || (p > lo && fx->kind[p - 1] != DATA)) {
            continue;
        }
        gap_at(fx, p, lo, hi, &s, &e);
        n += e - s >= GAP_MIN;
    }
    return n;
}

/* A bulk channel pair over loopback TCP. */
static void connect_pair(struct listener **l, struct channel **out,
                         struct channel **in)
{
    const struct transport *tcp = transport_tcp();
    GError *err = NULL;

    *l = transport_listen(tcp, "127.0.0.1:0", NULL, &err);
    g_assert_no_error(err);
    *out = transport_connect(tcp, listener_address(*l), CHANNEL_BULK, 0, NULL,
                             &err);
    g_assert_no_error(err);
    *in = listener_accept(*l, &err);
    g_assert_no_error(err);
    g_assert_true(channel_set_kind(*in, CHANNEL_BULK, 0, &err));
}

/*
 * Frames from @in until @n pages came, into @got: each page @wanted and
 * received once, in ascending order (the order they were given), @how[p]
 * its frame type.
 */
static void receive_pages(struct channel *in, uint64_t n, const bool *wanted,
                          uint8_t *got, uint8_t *how, uint64_t *page_frames,
                          uint64_t *zero_frames)
{
    g_autofree uint8_t *payload = g_malloc(FRAME_MAX_PAYLOAD);
    GError *err = NULL;

    for (uint64_t received = 0, next = 0; received < n;) {
        struct frame_hdr h;
        uint64_t p, k;

        g_assert_true(channel_recv_hdr(in, &h, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(h.region, ==, 0);
        g_assert_cmpuint(h.offset % PAGE, ==, 0);
        p = h.offset / PAGE;
        if (h.type == FRAME_PAGE_ZERO) {
            k = h.count;
            (*zero_frames)++;
        } else {
            g_assert_cmpuint(h.type, ==, FRAME_PAGE);
            g_assert_cmpuint(h.len % PAGE, ==, 0);
            k = h.len / PAGE;
            g_assert_cmpuint(h.len, <=, FRAME_MAX_PAYLOAD);
            g_assert_true(channel_recv_payload(in, payload, h.len, &err));
            g_assert_no_error(err);
            memcpy(got + h.offset, payload, h.len);
            (*page_frames)++;
        }
        g_assert_cmpuint(k, >, 0);
        g_assert_cmpuint(p, >=, next);
        next = p + k;
        g_assert_cmpuint(p + k, <=, NPAGES);
        for (uint64_t i = p; i < p + k; i++) {
            g_assert_true(wanted[i]);
            g_assert_cmpuint(how[i], ==, 0); /* each page exactly once */
            how[i] = h.type;
        }
        received += k;
    }
}

/* Page @p arrived in @got as it is in @fx. */
static void check_page(const struct fixture *fx, const uint8_t *got, uint64_t p)
{
    uint8_t want = fx->kind[p] == DATA ? page_byte(p) : 0;

    for (uint64_t b = 0; b < PAGE; b++) {
        if (got[p * PAGE + b] != want) {
            g_error("page %" G_GUINT64_FORMAT " (%s) byte %" G_GUINT64_FORMAT
                    ": %#x, not %#x",
                    p, fx->kind[p] == HOLE ? "hole" : "data", b,
                    got[p * PAGE + b], want);
        }
    }
}

/* Send pages [first, first+n) and check every one of them on arrival. */
static void check_send(struct fixture *fx, uint64_t first, uint64_t n)
{
    g_autofree uint8_t *got = g_malloc0(NPAGES * PAGE);
    uint8_t how[NPAGES] = {0}; /* 0: not received, else FRAME_PAGE[_ZERO] */
    bool wanted[NPAGES] = {0};
    struct sender s = {.fx = fx, .first = first, .n = n};
    uint64_t before = allocated(fx->fd), before_pages = data_pages(fx->fd);
    uint64_t page_frames = 0, zero_frames = 0;
    struct listener *l;
    struct channel *in;
    GThread *th;

    connect_pair(&l, &s.ch, &in);

    th = g_thread_new("sender", sender_main, &s);
    for (uint64_t p = first; p < first + n; p++) {
        wanted[p] = true;
    }
    receive_pages(in, n, wanted, got, how, &page_frames, &zero_frames);
    g_thread_join(th);
    g_assert_no_error(s.err);
    g_assert_true(s.ok);

    for (uint64_t p = first; p < first + n; p++) {
        check_page(fx, got, p);
        if (fx->kind[p] == DATA) {
            g_assert_cmpuint(how[p], ==, FRAME_PAGE);
        }
        /* A hole in a long stretch of them goes as PAGE_ZERO, unread. */
        if (fx->kind[p] == HOLE && long_gap(fx, p, first, first + n)) {
            g_assert_cmpuint(how[p], ==, FRAME_PAGE_ZERO);
        }
    }
    /* Not a page of the file allocated on the way: no hole was read. */
    g_assert_cmpuint(allocated(fx->fd), ==, before);
    g_assert_cmpuint(data_pages(fx->fd), ==, before_pages);
    g_assert_cmpuint(atomic_load(&s.pages) + atomic_load(&s.zero), ==, n);
    /*
     * Data still goes in few frames: short stretches of holes and zero
     * pages fold in (as zeros, holes unread), so a frame ends only at a
     * stretch of ZERO_RUN_MIN or more, or at a run boundary.
     */
    g_assert_cmpuint(page_frames, <=,
                     long_gaps(fx, first, first + n) +
                         n * PAGE / PAGE_SENDER_RUN + 2);
    g_test_message("%" G_GUINT64_FORMAT " pages: %" G_GUINT64_FORMAT
                   " PAGE frames, %" G_GUINT64_FORMAT " PAGE_ZERO frames",
                   n, page_frames, zero_frames);

    channel_close(s.ch);
    channel_close(in);
    listener_close(l);
}

/*
 * backing_find_holes() run by run: a page is a hole exactly when the
 * fixture left it one, whether it is in memory or not.
 */
static void check_holes(const struct fixture *fx)
{
    for (uint64_t p = 0; p < NPAGES; p += BACKING_HOLES_MAX) {
        uint64_t n = MIN(BACKING_HOLES_MAX, NPAGES - p), holes = 0;
        bool hole[BACKING_HOLES_MAX];
        bool all = backing_find_holes(&fx->r, p * PAGE, n, hole);

        for (uint64_t i = 0; i < n; i++) {
            if (hole[i] != (fx->kind[p + i] == HOLE)) {
                g_error("page %" G_GUINT64_FORMAT " (%s) taken for %s", p + i,
                        fx->kind[p + i] == HOLE ? "a hole" : "data",
                        hole[i] ? "a hole" : "data");
            }
            holes += hole[i];
        }
        g_assert_cmpint(all, ==, holes == n);
    }
}

static void test_whole(void)
{
    struct fixture fx;

    fixture_setup(&fx);
    g_assert_cmpuint(data_pages(fx.fd), <, LEAD + NPAGES);
    check_holes(&fx);
    check_send(&fx, 0, NPAGES);
    fixture_teardown(&fx);
}

/* Pages of the region not in memory, and the data pages among them. */
static void count_out(const struct fixture *fx, uint64_t *out,
                      uint64_t *data_out)
{
    unsigned char vec[NPAGES];

    g_assert_cmpint(mincore(fx->alias, NPAGES * PAGE, vec), ==, 0);
    *out = *data_out = 0;
    for (uint64_t p = 0; p < NPAGES; p++) {
        *out += !(vec[p] & 1);
        *data_out += !(vec[p] & 1) && fx->kind[p] != HOLE;
    }
}

/*
 * Data in swap: mincore() does not hold it, as it does not hold a hole.
 * With a swap area on, every hole must still be told from every page in
 * swap (a page in swap taken for a hole would arrive as zeros), and the
 * pages arrive as they were.  The child that writes them runs in a memory
 * cgroup of 1 MiB, so most go to swap as it writes.
 */
static void test_swapped(void)
{
    g_autofree char *why = NULL;
    uint64_t out, data_out;
    struct swap_area sw;
    struct fixture fx;

    if (!swap_area_on(&sw, 32u << 20, &why)) {
        g_test_skip(why);
        return;
    }
    fixture_open(&fx);
    if (!swap_area_run_small(1u << 20, fixture_write, &fx, &why)) {
        close(fx.fd);
        swap_area_off(&sw);
        g_test_skip(why);
        return;
    }
    fixture_map(&fx);
    count_out(&fx, &out, &data_out);
    g_test_message("%" G_GUINT64_FORMAT " pages not in memory, "
                   "%" G_GUINT64_FORMAT " of them data (in swap)",
                   out, data_out);
    if (data_out < 64) {
        fixture_teardown(&fx);
        swap_area_off(&sw);
        g_test_skip("the kernel kept the pages in memory: nothing in swap");
        return;
    }
    check_holes(&fx);
    check_send(&fx, 0, NPAGES);
    fixture_teardown(&fx);
    swap_area_off(&sw);
}

/* Starting and ending inside holes and inside data. */
static void test_ranges(void)
{
    static const uint64_t ranges[][2] = {
        {1, 2},   {310, 200},  {300, 320}, {620, 380},      {299, 2},
        {619, 2}, {1000, 536}, {5, 1},     {NPAGES - 6, 6},
    };
    struct fixture fx;

    fixture_setup(&fx);
    for (size_t i = 0; i < G_N_ELEMENTS(ranges); i++) {
        check_send(&fx, ranges[i][0], ranges[i][1]);
    }
    fixture_teardown(&fx);
}

/*
 * The queue: runs of 1-5 pages two to nine pages apart, every tenth run
 * 16-40 pages long (sent at once, not queued); the first QUEUE_EARLY runs
 * all short, few enough to stay queued.
 */
#define QUEUE_EARLY 40
#define QUEUE_RUNS  200

struct queuer {
    const struct region *r;
    struct channel *ch;
    uint64_t runs[QUEUE_RUNS][2];
    size_t nruns;
    GMutex lock;
    GCond cond;
    bool queued, go; /* the early runs are queued; the test saw no frame */
    _Atomic uint64_t pages, zero, bytes;
    GError *err;
    bool ok;
};

static void queue_runs(struct queuer *q)
{
    uint64_t p = 3;

    for (q->nruns = 0; q->nruns < QUEUE_RUNS; q->nruns++) {
        bool is_long = q->nruns >= QUEUE_EARLY && q->nruns % 10 == 0;
        uint64_t n = is_long ? 16 + (p * 7) % 25 : 1 + (p * 13) % 5;

        if (p + n > NPAGES) {
            break;
        }
        q->runs[q->nruns][0] = p;
        q->runs[q->nruns][1] = n;
        p += n + 2 + (p * 11) % 8;
    }
    g_assert_cmpuint(q->nruns, >, QUEUE_EARLY + 20);
}

static bool queue_range(struct queuer *q, struct page_sender *ps, size_t from,
                        size_t to)
{
    for (size_t i = from; i < to; i++) {
        if (!page_sender_queue(ps, q->ch, q->r, q->runs[i][0], q->runs[i][1], 0,
                               0, &q->err)) {
            return false;
        }
    }
    return true;
}

static gpointer queuer_main(gpointer opaque)
{
    struct queuer *q = opaque;
    struct page_counters c = {
        .pages = &q->pages, .zero = &q->zero, .bytes = &q->bytes};
    struct page_sender ps;

    page_sender_init(&ps, getpid(), &c);
    q->ok = queue_range(q, &ps, 0, QUEUE_EARLY);
    g_mutex_lock(&q->lock);
    q->queued = true;
    g_cond_signal(&q->cond);
    while (!q->go) {
        g_cond_wait(&q->cond, &q->lock);
    }
    g_mutex_unlock(&q->lock);
    q->ok = q->ok && queue_range(q, &ps, QUEUE_EARLY, q->nruns) &&
            page_sender_flush(&ps, &q->err);
    page_sender_destroy(&ps);
    if (!q->ok) {
        channel_shutdown(q->ch); /* fail the receiver rather than hang it */
    }
    return NULL;
}

static void queuer_wait_queued(struct queuer *q)
{
    g_mutex_lock(&q->lock);
    while (!q->queued) {
        g_cond_wait(&q->cond, &q->lock);
    }
    g_mutex_unlock(&q->lock);
}

static void queuer_go(struct queuer *q)
{
    g_mutex_lock(&q->lock);
    q->go = true;
    g_cond_signal(&q->cond);
    g_mutex_unlock(&q->lock);
}

/* A short run goes as one frame: PAGE_ZERO if no page of it has data. */
static void check_queued_frame(const struct fixture *fx, const uint8_t *how,
                               uint64_t first, uint64_t n)
{
    bool data = false;

    for (uint64_t p = first; p < first + n; p++) {
        data |= fx->kind[p] == DATA;
    }
    for (uint64_t p = first; p < first + n; p++) {
        g_assert_cmpuint(how[p], ==, data ? FRAME_PAGE : FRAME_PAGE_ZERO);
    }
}

static void check_queue(struct fixture *fx)
{
    g_autofree uint8_t *got = g_malloc0(NPAGES * PAGE);
    g_autofree struct queuer *q = g_new0(struct queuer, 1);
    uint8_t how[NPAGES] = {0};
    bool wanted[NPAGES] = {0};
    uint64_t before = fx->fd >= 0 ? allocated(fx->fd) : 0, total = 0;
    uint64_t page_frames = 0, zero_frames = 0;
    struct channel *in, *ready[1];
    struct listener *l;
    GThread *th;

    q->r = &fx->r;
    queue_runs(q);
    for (size_t i = 0; i < q->nruns; i++) {
        for (uint64_t p = q->runs[i][0]; p < q->runs[i][0] + q->runs[i][1];
             p++) {
            wanted[p] = true;
        }
        total += q->runs[i][1];
    }
    connect_pair(&l, &q->ch, &in);
    th = g_thread_new("queuer", queuer_main, q);
    queuer_wait_queued(q);
    /* Queued, not sent: nothing to read within 100 ms. */
    ready[0] = in;
    g_assert_cmpint(channel_wait_any(ready, 1, 100), ==, 1);
    queuer_go(q);
    receive_pages(in, total, wanted, got, how, &page_frames, &zero_frames);
    g_thread_join(th);
    g_assert_no_error(q->err);
    g_assert_true(q->ok);

    for (size_t i = 0; i < q->nruns; i++) {
        for (uint64_t p = q->runs[i][0]; p < q->runs[i][0] + q->runs[i][1];
             p++) {
            check_page(fx, got, p);
        }
        if (q->runs[i][1] * PAGE < PAGE_SENDER_SHORT_RUN) {
            check_queued_frame(fx, how, q->runs[i][0], q->runs[i][1]);
        }
    }
    g_assert_cmpuint(atomic_load(&q->pages) + atomic_load(&q->zero), ==, total);
    /* pread reads a hole as zeroes without allocating it. */
    if (fx->fd >= 0) {
        g_assert_cmpuint(allocated(fx->fd), ==, before);
    }
    g_test_message("%zu runs, %" G_GUINT64_FORMAT " pages: %" G_GUINT64_FORMAT
                   " PAGE frames, %" G_GUINT64_FORMAT " PAGE_ZERO frames",
                   q->nruns, total, page_frames, zero_frames);
    channel_close(q->ch);
    channel_close(in);
    listener_close(l);
}

static void test_queue_shmem(void)
{
    struct fixture fx;

    fixture_setup(&fx);
    check_queue(&fx);
    fixture_teardown(&fx);
}

static void test_queue_anon(void)
{
    struct fixture fx;

    fixture_setup_anon(&fx);
    check_queue(&fx);
    fixture_teardown(&fx);
}

/* Anonymous RAM the VMM unmapped: the flush says it is gone for good. */
static void test_queue_gone(void)
{
    struct page_counters c = {0};
    struct page_sender ps;
    struct fixture fx;
    struct listener *l;
    struct channel *out, *in;
    GError *err = NULL;

    fixture_setup_anon(&fx);
    connect_pair(&l, &out, &in);
    page_sender_init(&ps, getpid(), &c);
    g_assert_true(page_sender_queue(&ps, out, &fx.r, 4, 2, 0, 0, &err));
    g_assert_true(page_sender_queue(&ps, out, &fx.r, 100, 1, 0, 0, &err));
    g_assert_no_error(err);
    g_assert_cmpint(munmap(fx.alias + 100 * PAGE, PAGE), ==, 0);
    g_assert_false(page_sender_flush(&ps, &err));
    g_assert_error(err, PAGE_SENDER_ERROR, PAGE_SENDER_ERROR_GONE);
    g_clear_error(&err);
    /* Nothing is left queued after a failed flush. */
    g_assert_true(page_sender_flush(&ps, NULL));
    /*
     * Nor after a long run failed to go: a reconnect brings a new channel,
     * and nothing may be sent on the old one.
     */
    g_assert_true(page_sender_queue(&ps, out, &fx.r, 4, 2, 0, 0, &err));
    channel_shutdown(out);
    g_assert_false(page_sender_queue(&ps, out, &fx.r, 200, 40, 0, 0, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_true(page_sender_flush(&ps, NULL));
    page_sender_destroy(&ps);
    channel_close(out);
    channel_close(in);
    listener_close(l);
    fixture_teardown(&fx);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/page_sender/holes/whole", test_whole);
    g_test_add_func("/page_sender/holes/ranges", test_ranges);
    g_test_add_func("/page_sender/holes/swapped", test_swapped);
    g_test_add_func("/page_sender/queue/shmem", test_queue_shmem);
    g_test_add_func("/page_sender/queue/anon", test_queue_anon);
    g_test_add_func("/page_sender/queue/gone", test_queue_gone);
    return g_test_run();
}
