/*
 * rdma_error.h - what a work completion status or an unexpected rdma_cm
 * event means for a migration, as a GError like the TCP transport's.
 *
 * The codes follow transport.h so that the engine treats an RDMA failure
 * as it treats the same TCP one: a link that stopped answering, a flushed
 * queue pair, a peer that disconnected or a device that went away is
 * G_IO_ERROR_CONNECTION_CLOSED (TCP link loss: precopy fails, postcopy
 * pauses and recovers); a peer that refused a READ (a wrong rkey or
 * address) is INVALID_DATA, like a bad frame; a peer that refused the
 * connection is CONNECTION_REFUSED, one that cannot be reached
 * HOST_UNREACHABLE; a bug of ours (a bad local buffer) is FAILED.
 *
 * Plain data in, no verbs call: only the enums of the rdma-core headers.
 */
#ifndef POSTCOPYD_RDMA_ERROR_H
#define POSTCOPYD_RDMA_ERROR_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

/* True for IBV_WC_SUCCESS; otherwise false with @err ("RDMA READ: ..."). */
bool rdma_wc_check(enum ibv_wc_status status, uint32_t vendor_err,
                   GError **err);
/*
 * True when @got is the event the caller waits for (@want); otherwise
 * false with @err saying what happened instead (@status: the event's).
 */
bool rdma_cm_expect(enum rdma_cm_event_type got, int status,
                    enum rdma_cm_event_type want, GError **err);

#endif /* POSTCOPYD_RDMA_ERROR_H */
