/*
 * rdma_read.h - the destination's RDMA READs as plain data: requests for
 * runs of pages, cut into work requests, posted within a credit, and
 * counted back in as completions arrive.
 *
 * A request is whole pages of one region (rdma_mr.h resolves it) going
 * into local registered memory (the alias of the page cache).  It is cut
 * into READs of at most max_wr_bytes.  At most @credits READs are out at
 * once: the send queue and completion queue were sized for that (rdma.c),
 * so a post never fails for want of room, and a completion queue can never
 * overflow.  A request is done when its last READ completes; it failed if
 * any of them did (after an error the QP flushes every READ still out, so
 * every request still completes, once).  Completions may come in any
 * order; a work request id is a slot and a generation, so a completion
 * from before rdma_read_queue_reset() is recognised and refused.
 *
 * One thread at a time; no verbs call here (rdma.c posts and polls).
 */
#ifndef POSTCOPYD_RDMA_READ_H
#define POSTCOPYD_RDMA_READ_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "rdma_mr.h"

struct rdma_read_req {
    uint32_t region;
    uint64_t offset; /* in the region, whole pages */
    uint64_t len;
    uint8_t *local; /* where the bytes go: registered with @lkey */
    uint32_t lkey;
    uint64_t cookie; /* the caller's, handed back when done */
};

/* One READ to post: ibv_send_wr with one sge. */
struct rdma_read_wr {
    uint64_t wr_id;
    uint64_t raddr;
    uint32_t rkey;
    uint8_t *local;
    uint32_t lkey;
    uint32_t len;
};

struct rdma_read_done {
    uint64_t cookie;
    bool ok;
};

struct rdma_read_queue;

/* @t must outlive the queue; @credits >= 1, @max_wr_bytes >= 4096. */
struct rdma_read_queue *rdma_read_queue_new(const struct rdma_mr_table *t,
                                            unsigned credits,
                                            uint32_t max_wr_bytes);
void rdma_read_queue_free(struct rdma_read_queue *q);
/* Queue a request; refused (nothing queued) if rdma_mr_resolve() refuses. */
bool rdma_read_queue_add(struct rdma_read_queue *q,
                         const struct rdma_read_req *r, GError **err);
/*
 * The same, ahead of every request not yet begun (a vCPU waits for it):
 * it is the next one posted, whatever the bulk queued before it.
 */
bool rdma_read_queue_add_urgent(struct rdma_read_queue *q,
                                const struct rdma_read_req *r, GError **err);
/* The next READ to post, taking a credit; false: none, or no credit. */
bool rdma_read_queue_next(struct rdma_read_queue *q, struct rdma_read_wr *wr);
/*
 * @wr_id completed (@ok: IBV_WC_SUCCESS); its credit comes back.  True
 * when that finished a request: *@done says which and how.  False with
 * @err for a wr_id that is not out (a protocol bug, or a completion from
 * before a reset); false without @err when the request has READs left.
 */
bool rdma_read_queue_complete(struct rdma_read_queue *q, uint64_t wr_id,
                              bool ok, struct rdma_read_done *done,
                              GError **err);
unsigned rdma_read_queue_outstanding(const struct rdma_read_queue *q);
/* Requests queued or with READs out. */
unsigned rdma_read_queue_pending(const struct rdma_read_queue *q);
/*
 * The link is gone (a QP that will not complete what is out): drop every
 * request, handing each back once through @done (false when none is
 * left), so that the caller asks for those pages again after a reconnect,
 * as for pages REQUESTED over TCP.  Completions of READs out before the
 * reset are refused from then on.
 */
bool rdma_read_queue_reset(struct rdma_read_queue *q,
                           struct rdma_read_done *done);

#endif /* POSTCOPYD_RDMA_READ_H */
