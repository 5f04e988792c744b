/*
 * fuzz_qmp.c - libFuzzer target: what a QEMU (or anything on its QMP
 * socket) sends to postcopyd's QMP client (daemon/vmm/qmp.h).
 *
 * Each input is the whole byte stream from "QEMU": it is written into one
 * end of a socketpair whose write side is then shut, and the client on the
 * other end does what the QEMU driver does with a QMP socket: the
 * handshake (greeting, qmp_capabilities), one command (its reply matched
 * by id, events queued meanwhile), and a wait for a MIGRATION event.
 *
 * Checked besides the sanitizers: every call returns (the stream ends, so
 * nothing may wait for the timeout), a failure is one GError line, an
 * event the client returns is named MIGRATION.
 */
#include "qmp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FUZZ_QMP_TIMEOUT_MS 2000
#define FUZZ_QMP_MAX_INPUT  (128u << 10) /* fits the socket buffer */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(const GError *err)
{
    if (!err || !err->message || strchr(err->message, '\n')) {
        fprintf(stderr, "fuzz_qmp: a failure without a one-line error\n");
        abort();
    }
}

static void drive(struct qmp *q)
{
    g_autoptr(GError) err = NULL;
    JsonNode *ret = NULL;
    struct qmp_event *ev;

    if (qmp_execute(q, "query-status", NULL, &ret, &err)) {
        json_node_unref(ret);
    } else {
        check_error(err);
    }
    g_clear_error(&err);
    ev = qmp_wait_event(q, "MIGRATION", NULL, NULL, 0, &err);
    if (ev) {
        if (strcmp(ev->name, "MIGRATION")) {
            abort();
        }
        qmp_event_free(ev);
    }
    (void)qmp_closed(q);
    (void)qmp_last_event_us(q, "STOP");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) err = NULL;
    struct qmp *q;
    int sv[2];
    size_t off = 0;

    if (size > FUZZ_QMP_MAX_INPUT) {
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        abort();
    }
    while (off < size) {
        ssize_t n = write(sv[1], data + off, size - off);

        if (n <= 0) {
            abort();
        }
        off += n;
    }
    shutdown(sv[1], SHUT_WR);
    q = qmp_new_from_fd(sv[0], FUZZ_QMP_TIMEOUT_MS, &err);
    if (q) {
        drive(q);
        qmp_free(q);
    } else {
        check_error(err); /* sv[0] went with the client */
    }
    close(sv[1]);
    return 0;
}
