/*
 * rdma.h - the RDMA transport (transport_rdma(), by name "rdma") and the
 * READ link it is built for.  Every verbs and rdma_cm call of the project
 * is in rdma.c; the logic around them takes plain data (rdma_mr.h, the
 * region table and its message; rdma_read.h, batching, credits and
 * completion accounting; rdma_error.h, what a failure means).
 *
 * The transport: channels carry frames over a TCP connection, exactly as
 * the tcp transport's (TLS, authentication, Hello, timeouts and all), on a
 * host that has an RDMA device: listen and connect refuse without one,
 * naming why (transport_probe()).
 *
 * The READ link: one reliable-connected queue pair between the two
 * daemons per migration, set up with rdma_cm on a port the destination
 * picks and names in its LayoutReply.  The source registers
 * its alias mapping of each shmem / hugetlbfs region for remote READ
 * (rdma_link_register()) and sends the table; the destination registers
 * its own alias for local write, posts READs from a rdma_read_queue and
 * polls their completions.  A link failure is reported as TCP link loss
 * is (rdma_error.h).  The engine reaches all this through remote_read.h
 * only (rdma_remote.c); docs/rdma.md has the data path.
 *
 * Threads: a link is used by one thread at a time, but for
 * rdma_link_wake().
 */
#ifndef POSTCOPYD_RDMA_H
#define POSTCOPYD_RDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "rdma_read.h"
#include "transport.h"

const struct transport *transport_rdma(void);
/*
 * The same engine path on a test double of the NIC (rdma_double.c), by
 * name "rdma-test-double", only with POSTCOPYD_TEST_DOUBLES=1 in the
 * environment; NULL otherwise.
 */
const struct transport *transport_rdma_double(void);
/* Their one-sided reads (remote_read.h) on a link's ops, in rdma_remote.c. */
extern const struct remote_read_ops rdma_remote_ops;
/* Some RDMA device is present; else why not ("... found no RDMA device"). */
bool rdma_device_probe(GError **err);

/*
 * A link, a listener, a registration: each implementation of the link
 * ops defines its own (the verbs' in rdma.c, the test double's in
 * rdma_double.c); a caller only passes them back to the same ops.
 */
struct rdma_link;
struct rdma_link_listener;
struct rdma_link_mr;

/* READs out at once on a link, unless the device allows fewer. */
#define RDMA_LINK_CREDITS 64
/* Bytes per READ work request: a 2 MiB huge page in one, 4 KiB pages in
 * runs. */
#define RDMA_LINK_MAX_READ (2u << 20)

struct rdma_link_listener *rdma_link_listen(const char *address, GError **err);
/* Wait up to @timeout_ms (0: for ever) for one peer and accept it. */
struct rdma_link *rdma_link_accept(struct rdma_link_listener *ll,
                                   unsigned timeout_ms, GError **err);
/* The bound address, with the real port: "192.0.2.10:40123". */
const char *rdma_link_listener_address(const struct rdma_link_listener *ll);
void rdma_link_listener_close(struct rdma_link_listener *ll);
struct rdma_link *rdma_link_connect(const char *address, unsigned timeout_ms,
                                    GError **err);
void rdma_link_close(struct rdma_link *l);
/* The READs the link allows out at once: the queue's credits. */
unsigned rdma_link_credits(const struct rdma_link *l);

/*
 * Register [@addr, @addr + @len): for the peer's READs (@remote_read, the
 * source's guest RAM, never writable by the NIC), else for local write
 * (where the destination's READs land).  On-demand paging where the device
 * offers it for RC READ, else pinned (every page faulted in and locked:
 * its cost grows with the guest, and is logged).
 */
struct rdma_link_mr *rdma_link_register(struct rdma_link *l, void *addr,
                                        size_t len, bool remote_read,
                                        GError **err);
uint32_t rdma_link_mr_lkey(const struct rdma_link_mr *mr);
uint32_t rdma_link_mr_rkey(const struct rdma_link_mr *mr);
bool rdma_link_mr_odp(const struct rdma_link_mr *mr);
void rdma_link_deregister(struct rdma_link_mr *mr);

/*
 * Post every READ @q has, within its credits, in batches (one doorbell
 * each).  A failure leaves the link unusable: rdma_read_queue_reset().
 */
bool rdma_link_post(struct rdma_link *l, struct rdma_read_queue *q,
                    GError **err);
/*
 * Reap completions, waiting up to @timeout_ms (-1: for ever, 0: not at
 * all) for the first: each finished request goes to @done (up to @max).
 * Returns how many, or -1 with @err: the first failed completion, or the
 * peer gone (rdma_error.h), reported once the requests finished before it
 * are handed back.  After a failure, rdma_read_queue_reset().
 */
int rdma_link_poll(struct rdma_link *l, struct rdma_read_queue *q,
                   struct rdma_read_done *done, int max, int timeout_ms,
                   GError **err);

/* From any thread: a rdma_link_poll() waiting returns (0 if nothing came). */
void rdma_link_wake(struct rdma_link *l);

/*
 * The READ link as rdma_remote.c uses it: the functions above (the verbs,
 * rdma_verbs_link_ops), or the test double's (rdma_double.c), which
 * stands in for the NIC on hosts without one.  A transport names its ops
 * in transport.remote_priv.
 */
struct rdma_link_ops {
    struct rdma_link_listener *(*listen)(const char *address, GError **err);
    struct rdma_link *(*accept)(struct rdma_link_listener *ll,
                                unsigned timeout_ms, GError **err);
    const char *(*listener_address)(const struct rdma_link_listener *ll);
    void (*listener_close)(struct rdma_link_listener *ll);
    struct rdma_link *(*connect)(const char *address, unsigned timeout_ms,
                                 GError **err);
    void (*close)(struct rdma_link *l);
    unsigned (*credits)(const struct rdma_link *l);
    struct rdma_link_mr *(*reg)(struct rdma_link *l, void *addr, size_t len,
                                bool remote_read, GError **err);
    uint32_t (*mr_lkey)(const struct rdma_link_mr *mr);
    uint32_t (*mr_rkey)(const struct rdma_link_mr *mr);
    void (*dereg)(struct rdma_link_mr *mr);
    bool (*post)(struct rdma_link *l, struct rdma_read_queue *q, GError **err);
    int (*poll)(struct rdma_link *l, struct rdma_read_queue *q,
                struct rdma_read_done *done, int max, int timeout_ms,
                GError **err);
    void (*wake)(struct rdma_link *l);
};

extern const struct rdma_link_ops rdma_verbs_link_ops;

#endif /* POSTCOPYD_RDMA_H */
