/*
 * test_rdma_error.c - what an RDMA failure means for a migration: every
 * work completion status and every rdma_cm event maps to the GError code
 * the TCP transport gives for the same kind of failure (transport.h), so
 * the engine treats a dead queue pair as it treats a dead TCP link.
 * Built only with RDMA (it needs the rdma-core headers, not a device).
 */
#include "rdma_error.h"

#include <string.h>
#include <gio/gio.h>

struct wc_case {
    enum ibv_wc_status status;
    int code;
    const char *text;
};

static const struct wc_case wc_cases[] = {
    /* Link loss: exactly what a TCP link loss gives. */
    {IBV_WC_RETRY_EXC_ERR, G_IO_ERROR_CONNECTION_CLOSED, "stopped answering"},
    {IBV_WC_RNR_RETRY_EXC_ERR, G_IO_ERROR_CONNECTION_CLOSED, "not ready"},
    {IBV_WC_WR_FLUSH_ERR, G_IO_ERROR_CONNECTION_CLOSED, "error state"},
    {IBV_WC_RESP_TIMEOUT_ERR, G_IO_ERROR_CONNECTION_CLOSED, "in time"},
    {IBV_WC_FATAL_ERR, G_IO_ERROR_CONNECTION_CLOSED, "fatal"},
    {IBV_WC_REM_ABORT_ERR, G_IO_ERROR_CONNECTION_CLOSED, "aborted"},
    {IBV_WC_GENERAL_ERR, G_IO_ERROR_CONNECTION_CLOSED, "general"},
    /* The peer refused the READ: like a bad frame. */
    {IBV_WC_REM_ACCESS_ERR, G_IO_ERROR_INVALID_DATA, "wrong rkey"},
    {IBV_WC_REM_INV_REQ_ERR, G_IO_ERROR_INVALID_DATA, "invalid"},
    {IBV_WC_REM_OP_ERR, G_IO_ERROR_INVALID_DATA, "could not complete"},
    {IBV_WC_REM_INV_RD_REQ_ERR, G_IO_ERROR_INVALID_DATA, "outstanding"},
    {IBV_WC_BAD_RESP_ERR, G_IO_ERROR_INVALID_DATA, "bad response"},
    /* Ours. */
    {IBV_WC_LOC_PROT_ERR, G_IO_ERROR_FAILED, "not registered"},
    {IBV_WC_LOC_LEN_ERR, G_IO_ERROR_FAILED, "length"},
    {IBV_WC_LOC_ACCESS_ERR, G_IO_ERROR_FAILED, "local access"},
    {IBV_WC_MW_BIND_ERR, G_IO_ERROR_FAILED, "unexpected completion status"},
    {(enum ibv_wc_status)1000, G_IO_ERROR_FAILED, "status 1000"},
};

static void assert_err(GError *err, int code, const char *text)
{
    g_assert_nonnull(err);
    if (err->domain != G_IO_ERROR || err->code != code ||
        !strstr(err->message, text) || strchr(err->message, '\n')) {
        g_error("got '%s' (code %d), wanted %d with '%s'", err->message,
                err->code, code, text);
    }
}

static void test_wc(void)
{
    GError *err = NULL;

    g_assert_true(rdma_wc_check(IBV_WC_SUCCESS, 0, &err));
    g_assert_no_error(err);
    for (size_t i = 0; i < G_N_ELEMENTS(wc_cases); i++) {
        g_assert_false(rdma_wc_check(wc_cases[i].status, 0x81, &err));
        assert_err(err, wc_cases[i].code, wc_cases[i].text);
        g_assert_nonnull(strstr(err->message, "vendor error 0x81"));
        g_assert_true(g_str_has_prefix(err->message, "RDMA READ: "));
        g_clear_error(&err);
    }
}

/* Every status the header defines says something of its own. */
static void test_wc_every_status(void)
{
    for (int s = IBV_WC_LOC_LEN_ERR; s <= IBV_WC_TM_RNDV_INCOMPLETE; s++) {
        GError *err = NULL;

        g_assert_false(rdma_wc_check(s, 0, &err));
        g_assert_nonnull(err);
        g_assert_nonnull(strstr(err->message, "completion status"));
        g_error_free(err);
    }
}

struct cm_case {
    enum rdma_cm_event_type got;
    int code;
    const char *text;
};

static const struct cm_case cm_cases[] = {
    {RDMA_CM_EVENT_ADDR_ERROR, G_IO_ERROR_HOST_UNREACHABLE, "resolve"},
    {RDMA_CM_EVENT_ROUTE_ERROR, G_IO_ERROR_HOST_UNREACHABLE, "no route"},
    {RDMA_CM_EVENT_UNREACHABLE, G_IO_ERROR_HOST_UNREACHABLE, "unreachable"},
    {RDMA_CM_EVENT_REJECTED, G_IO_ERROR_CONNECTION_REFUSED, "transport = rdma"},
    {RDMA_CM_EVENT_CONNECT_ERROR, G_IO_ERROR_CONNECTION_REFUSED, "failed"},
    {RDMA_CM_EVENT_DISCONNECTED, G_IO_ERROR_CONNECTION_CLOSED, "disconnected"},
    {RDMA_CM_EVENT_DEVICE_REMOVAL, G_IO_ERROR_CONNECTION_CLOSED, "removed"},
    {RDMA_CM_EVENT_ADDR_CHANGE, G_IO_ERROR_CONNECTION_CLOSED, "moved"},
    {RDMA_CM_EVENT_TIMEWAIT_EXIT, G_IO_ERROR_FAILED, "unexpected"},
};

static void test_cm(void)
{
    GError *err = NULL;

    g_assert_true(rdma_cm_expect(RDMA_CM_EVENT_ESTABLISHED, 0,
                                 RDMA_CM_EVENT_ESTABLISHED, &err));
    g_assert_no_error(err);
    for (size_t i = 0; i < G_N_ELEMENTS(cm_cases); i++) {
        g_assert_false(rdma_cm_expect(cm_cases[i].got, -110,
                                      RDMA_CM_EVENT_ESTABLISHED, &err));
        assert_err(err, cm_cases[i].code, cm_cases[i].text);
        g_assert_nonnull(strstr(err->message, "status -110"));
        g_clear_error(&err);
    }
    /* The awaited event, but with a failure status. */
    g_assert_false(rdma_cm_expect(RDMA_CM_EVENT_ADDR_RESOLVED, -19,
                                  RDMA_CM_EVENT_ADDR_RESOLVED, &err));
    assert_err(err, G_IO_ERROR_FAILED, "status -19");
    g_clear_error(&err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/rdma-error/wc", test_wc);
    g_test_add_func("/rdma-error/wc-every-status", test_wc_every_status);
    g_test_add_func("/rdma-error/cm", test_cm);
    return g_test_run();
}
