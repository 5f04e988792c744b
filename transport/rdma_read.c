/* rdma_read.c - see rdma_read.h. */
#include "rdma_read.h"

#include <string.h>
#include <gio/gio.h>

struct pending {
    struct rdma_read_req r;
    uint64_t raddr;
    uint32_t rkey;
    uint64_t posted; /* bytes handed out as READs */
    unsigned out;    /* READs out, not completed */
    bool failed;
};

struct slot {
    struct pending *p; /* NULL: free */
    uint32_t gen;
};

struct rdma_read_queue {
    const struct rdma_mr_table *table;
    uint32_t max_wr_bytes;
    unsigned credits;
    unsigned outstanding;
    uint32_t gen;   /* bumped by reset */
    GQueue waiting; /* pending with bytes left to post, oldest first */
    GQueue started; /* fully posted, READs out */
    struct slot *slots;
};

struct rdma_read_queue *rdma_read_queue_new(const struct rdma_mr_table *t,
                                            unsigned credits,
                                            uint32_t max_wr_bytes)
{
    struct rdma_read_queue *q = g_new0(struct rdma_read_queue, 1);

    g_assert(credits >= 1 && max_wr_bytes >= 4096);
    q->table = t;
    q->credits = credits;
    q->max_wr_bytes = max_wr_bytes;
    q->slots = g_new0(struct slot, credits);
    g_queue_init(&q->waiting);
    g_queue_init(&q->started);
    return q;
}

void rdma_read_queue_free(struct rdma_read_queue *q)
{
    if (!q) {
        return;
    }
    g_queue_clear_full(&q->waiting, g_free);
    g_queue_clear_full(&q->started, g_free);
    g_free(q->slots);
    g_free(q);
}

static struct pending *resolve(struct rdma_read_queue *q,
                               const struct rdma_read_req *r, GError **err)
{
    struct pending *p = g_new0(struct pending, 1);

    p->r = *r;
    if (!rdma_mr_resolve(q->table, r->region, r->offset, r->len, &p->raddr,
                         &p->rkey, err)) {
        g_free(p);
        return NULL;
    }
    return p;
}

bool rdma_read_queue_add(struct rdma_read_queue *q,
                         const struct rdma_read_req *r, GError **err)
{
    struct pending *p = resolve(q, r, err);

    if (p) {
        g_queue_push_tail(&q->waiting, p);
    }
    return p != NULL;
}

bool rdma_read_queue_add_urgent(struct rdma_read_queue *q,
                                const struct rdma_read_req *r, GError **err)
{
    struct pending *p = resolve(q, r, err);

    if (p) {
        /* A request cut half way stays where it is: it goes on after. */
        g_queue_push_head(&q->waiting, p);
    }
    return p != NULL;
}

static unsigned free_slot(const struct rdma_read_queue *q)
{
    for (unsigned i = 0; i < q->credits; i++) {
        if (!q->slots[i].p) {
            return i;
        }
    }
    g_assert_not_reached();
}

bool rdma_read_queue_next(struct rdma_read_queue *q, struct rdma_read_wr *wr)
{
    struct pending *p = g_queue_peek_head(&q->waiting);
    unsigned s;

    if (!p || q->outstanding == q->credits) {
        return false;
    }
    s = free_slot(q);
    q->slots[s] = (struct slot){.p = p, .gen = q->gen};
    *wr = (struct rdma_read_wr){
        .wr_id = (uint64_t)q->gen << 32 | s,
        .raddr = p->raddr + p->posted,
        .rkey = p->rkey,
        .local = p->r.local + p->posted,
        .lkey = p->r.lkey,
        .len = MIN(p->r.len - p->posted, q->max_wr_bytes),
    };
    p->posted += wr->len;
    p->out++;
    q->outstanding++;
    if (p->posted == p->r.len) {
        g_queue_push_tail(&q->started, g_queue_pop_head(&q->waiting));
    }
    return true;
}

bool rdma_read_queue_complete(struct rdma_read_queue *q, uint64_t wr_id,
                              bool ok, struct rdma_read_done *done,
                              GError **err)
{
    uint32_t s = (uint32_t)wr_id, gen = wr_id >> 32;
    struct pending *p;

    if (s >= q->credits || !q->slots[s].p || q->slots[s].gen != gen ||
        gen != q->gen) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "RDMA completion for work request 0x%" G_GINT64_MODIFIER
                    "x, which is not out",
                    wr_id);
        return false;
    }
    p = q->slots[s].p;
    q->slots[s].p = NULL;
    q->outstanding--;
    p->out--;
    p->failed |= !ok;
    if (p->out || p->posted < p->r.len) {
        return false;
    }
    *done = (struct rdma_read_done){.cookie = p->r.cookie, .ok = !p->failed};
    g_queue_remove(&q->started, p);
    g_free(p);
    return true;
}

unsigned rdma_read_queue_outstanding(const struct rdma_read_queue *q)
{
    return q->outstanding;
}

unsigned rdma_read_queue_pending(const struct rdma_read_queue *q)
{
    return q->waiting.length + q->started.length;
}

bool rdma_read_queue_reset(struct rdma_read_queue *q,
                           struct rdma_read_done *done)
{
    struct pending *p = g_queue_pop_head(&q->started);

    if (!p) {
        p = g_queue_pop_head(&q->waiting);
    }
    if (!p) {
        return false;
    }
    if (q->outstanding) {
        /* Forget every slot at once: their completions are stale now. */
        memset(q->slots, 0, q->credits * sizeof(*q->slots));
        q->outstanding = 0;
        q->gen++;
    }
    *done = (struct rdma_read_done){.cookie = p->r.cookie, .ok = false};
    g_free(p);
    return true;
}
