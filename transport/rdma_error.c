/* rdma_error.c - see rdma_error.h. */
#include "rdma_error.h"

#include <gio/gio.h>

struct wc_meaning {
    int code;
    const char *what;
};

/* Indexed by enum ibv_wc_status; a status missing here is FAILED. */
static const struct wc_meaning wc_meanings[] = {
    [IBV_WC_LOC_LEN_ERR] = {G_IO_ERROR_FAILED, "local length error"},
    [IBV_WC_LOC_QP_OP_ERR] = {G_IO_ERROR_FAILED,
                              "local queue pair operation error"},
    [IBV_WC_LOC_PROT_ERR] = {G_IO_ERROR_FAILED,
                             "local protection error (the local buffer is "
                             "not registered)"},
    [IBV_WC_WR_FLUSH_ERR] = {G_IO_ERROR_CONNECTION_CLOSED,
                             "flushed: the queue pair is in the error state"},
    [IBV_WC_BAD_RESP_ERR] = {G_IO_ERROR_INVALID_DATA,
                             "bad response from the peer"},
    [IBV_WC_LOC_ACCESS_ERR] = {G_IO_ERROR_FAILED, "local access error"},
    [IBV_WC_REM_INV_REQ_ERR] = {G_IO_ERROR_INVALID_DATA,
                                "the peer found the request invalid"},
    [IBV_WC_REM_ACCESS_ERR] = {G_IO_ERROR_INVALID_DATA,
                               "the peer refused access (wrong rkey or "
                               "address: did its registration change?)"},
    [IBV_WC_REM_OP_ERR] = {G_IO_ERROR_INVALID_DATA,
                           "the peer could not complete the operation"},
    [IBV_WC_RETRY_EXC_ERR] = {G_IO_ERROR_CONNECTION_CLOSED,
                              "the peer stopped answering (transport "
                              "retries exhausted)"},
    [IBV_WC_RNR_RETRY_EXC_ERR] = {G_IO_ERROR_CONNECTION_CLOSED,
                                  "the peer was not ready (RNR retries "
                                  "exhausted)"},
    [IBV_WC_REM_INV_RD_REQ_ERR] = {G_IO_ERROR_INVALID_DATA,
                                   "the peer refused the READ (too many "
                                   "outstanding)"},
    [IBV_WC_REM_ABORT_ERR] = {G_IO_ERROR_CONNECTION_CLOSED,
                              "the peer aborted the operation"},
    [IBV_WC_FATAL_ERR] = {G_IO_ERROR_CONNECTION_CLOSED, "fatal device error"},
    [IBV_WC_RESP_TIMEOUT_ERR] = {G_IO_ERROR_CONNECTION_CLOSED,
                                 "no response from the peer in time"},
    [IBV_WC_GENERAL_ERR] = {G_IO_ERROR_CONNECTION_CLOSED,
                            "general transport error"},
};

bool rdma_wc_check(enum ibv_wc_status status, uint32_t vendor_err, GError **err)
{
    const struct wc_meaning *m = NULL;

    if (status == IBV_WC_SUCCESS) {
        return true;
    }
    if ((unsigned)status < G_N_ELEMENTS(wc_meanings) &&
        wc_meanings[status].what) {
        m = &wc_meanings[status];
    }
    g_set_error(err, G_IO_ERROR, m ? m->code : G_IO_ERROR_FAILED,
                "RDMA READ: %s (completion status %d, vendor error 0x%x)",
                m ? m->what : "unexpected completion status", status,
                vendor_err);
    return false;
}

static int cm_code(enum rdma_cm_event_type got, const char **what)
{
    switch (got) {
    case RDMA_CM_EVENT_ADDR_ERROR:
        *what = "cannot resolve the address to a local RDMA device";
        return G_IO_ERROR_HOST_UNREACHABLE;
    case RDMA_CM_EVENT_ROUTE_ERROR:
        *what = "no route to the peer";
        return G_IO_ERROR_HOST_UNREACHABLE;
    case RDMA_CM_EVENT_UNREACHABLE:
        *what = "the peer is unreachable";
        return G_IO_ERROR_HOST_UNREACHABLE;
    case RDMA_CM_EVENT_REJECTED:
        *what = "the peer refused the connection (is it listening with "
                "transport = rdma?)";
        return G_IO_ERROR_CONNECTION_REFUSED;
    case RDMA_CM_EVENT_CONNECT_ERROR:
        *what = "connection failed";
        return G_IO_ERROR_CONNECTION_REFUSED;
    case RDMA_CM_EVENT_DISCONNECTED:
        *what = "the peer disconnected";
        return G_IO_ERROR_CONNECTION_CLOSED;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
        *what = "the RDMA device was removed";
        return G_IO_ERROR_CONNECTION_CLOSED;
    case RDMA_CM_EVENT_ADDR_CHANGE:
        *what = "the local address moved to another device";
        return G_IO_ERROR_CONNECTION_CLOSED;
    default:
        *what = "unexpected connection manager event";
        return G_IO_ERROR_FAILED;
    }
}

bool rdma_cm_expect(enum rdma_cm_event_type got, int status,
                    enum rdma_cm_event_type want, GError **err)
{
    const char *what;
    int code;

    if (got == want && status == 0) {
        return true;
    }
    if (got == want) {
        /* The event we waited for, but failed: a refusal of sorts. */
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "RDMA connection: event %d came with status %d", got,
                    status);
        return false;
    }
    code = cm_code(got, &what);
    g_set_error(err, G_IO_ERROR, code,
                "RDMA connection: %s (event %d, status %d, waiting for "
                "event %d)",
                what, got, status, want);
    return false;
}
