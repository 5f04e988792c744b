/*
 * remote_read.h - one-sided reads of the peer's memory, for a transport
 * that has them (rdma: RDMA READ); the engine never learns how.  TCP has
 * none (transport_has_remote_read() false): every page then travels in
 * frames, as always.
 *
 * The link: the destination listens (remote_listen(), a port of its own
 * per migration, told to the source in the LayoutReply) and accepts one
 * link; the source connects it, offers the regions the destination may
 * read (remote_offer(): its alias mapping of shmem / hugetlbfs RAM) and
 * sends remote_table() in a ReadableMemory message.  The destination
 * checks that table against the Layout (remote_take_table()), gives each
 * readable region a local target (its own alias of the page cache), and
 * then queues reads of whole pages, posts them, and polls for their
 * completion, at most remote_read_credits() out at once.
 *
 * Errors follow transport.h: a peer or link that went away is
 * G_IO_ERROR_CONNECTION_CLOSED (the engine treats it as a TCP link
 * loss), a table or completion that makes no sense INVALID_DATA.  After
 * a failed post or poll the link is dead: remote_read_reset() hands every
 * request back, not done, and the link is closed.
 *
 * Threads: one thread at a time uses a link, except remote_read_wake().
 */
#ifndef POSTCOPYD_REMOTE_READ_H
#define POSTCOPYD_REMOTE_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "transport.h"

struct remote_listener;
struct remote_link;

/* A region of the Layout, as the destination checks a table against it. */
struct remote_region {
    uint32_t index;
    uint64_t size;
    uint64_t page_size;
    bool readable; /* file-backed: may be offered; anonymous never */
};

struct remote_done {
    uint64_t cookie; /* the caller's, from remote_read_add() */
    bool ok;
};

bool transport_has_remote_read(const struct transport *t);

/* Destination: listen on @host (NULL: every address), a port picked. */
struct remote_listener *remote_listen(const struct transport *t,
                                      const char *host, GError **err);
uint16_t remote_listener_port(const struct remote_listener *l);
/* Wait up to @timeout_ms (0: for ever) for the source's link. */
struct remote_link *remote_accept(struct remote_listener *l,
                                  unsigned timeout_ms, GError **err);
void remote_listener_close(struct remote_listener *l);

/* Source: connect to the destination's "host:port". */
struct remote_link *remote_connect(const struct transport *t,
                                   const char *address, unsigned timeout_ms,
                                   GError **err);
/* Let the peer read [@addr, @addr + @len), region @region of the Layout. */
bool remote_offer(struct remote_link *l, uint32_t region, void *addr,
                  uint64_t len, uint64_t page_size, GError **err);
/* What remote_offer() registered, for the ReadableMemory message. */
GBytes *remote_table(struct remote_link *l);

/*
 * Destination: decode the source's table and check it against the
 * Layout's @n regions: a region listed must be readable there, with the
 * Layout's size and page size.  Refused: nothing may be read.
 */
bool remote_take_table(struct remote_link *l, const uint8_t *buf, size_t len,
                       const struct remote_region *layout, unsigned n,
                       GError **err);
/* @region is in the table the source sent: its pages may be read. */
bool remote_readable(const struct remote_link *l, uint32_t region);
/* Where @region's pages land here: @len bytes at @local. */
bool remote_target(struct remote_link *l, uint32_t region, void *local,
                   uint64_t len, GError **err);

/*
 * Queue a read of [@offset, @offset + @len) of @region into its target;
 * @urgent ones (a vCPU waits) go ahead of the others.  Refused if the
 * range is not whole pages inside a readable region.
 */
bool remote_read_add(struct remote_link *l, uint32_t region, uint64_t offset,
                     uint64_t len, uint64_t cookie, bool urgent, GError **err);
/* Post what the credits allow. */
bool remote_read_post(struct remote_link *l, GError **err);
/*
 * Finished requests into @done (up to @max), waiting up to @timeout_ms
 * (-1: for ever) when reads are out and none has finished;
 * remote_read_wake() cuts the wait short.  -1 with @err: the link failed.
 */
int remote_read_poll(struct remote_link *l, struct remote_done *done, int max,
                     int timeout_ms, GError **err);
/* From any thread: a remote_read_poll() waiting returns. */
void remote_read_wake(struct remote_link *l);
unsigned remote_read_credits(const struct remote_link *l);
/* Requests queued or out. */
unsigned remote_read_pending(const struct remote_link *l);
/* After a failure: every request back, once each, until false. */
bool remote_read_reset(struct remote_link *l, struct remote_done *done);
void remote_link_close(struct remote_link *l);

#endif /* POSTCOPYD_REMOTE_READ_H */
