/*
 * fuzz_rdma_mr.c - libFuzzer target: the RDMA region table a source sends
 * (transport/rdma_mr.h), decoded by the destination before it posts a
 * single READ.
 *
 * The input is the message.  Beyond the sanitizers, the target checks the
 * contract of rdma_mr.h: a refusal is one G_IO_ERROR_INVALID_ARGUMENT
 * line; an accepted table holds distinct regions, each whole pages of a
 * power-of-two size of at least 4096 that do not wrap, and encodes back to
 * the same bytes; rdma_mr_resolve() accepts each region's last page and
 * refuses the page after it.  An accepted table is then checked against
 * a fixed Layout as the destination does (rdma_mr_check_layout()): it is
 * accepted exactly when every entry names a readable region of the Layout
 * with its size and page size, and refused with one INVALID_DATA line.
 */
#include "rdma_mr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gio/gio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_rdma_mr: %s\n", what);
    abort();
}

static void check_entry(const struct rdma_mr_table *t, unsigned i)
{
    const struct rdma_mr_entry *e = &t->e[i];
    uint64_t raddr;
    uint32_t rkey;

    if (e->page_size < 4096 || (e->page_size & (e->page_size - 1)) ||
        !e->length || e->length % e->page_size ||
        e->addr > UINT64_MAX - e->length) {
        fail("accepted an entry rdma_mr_table_add() would refuse");
    }
    if (rdma_mr_table_find(t, e->region) != e) {
        fail("a region listed twice");
    }
    if (!rdma_mr_resolve(t, e->region, e->length - e->page_size, e->page_size,
                         &raddr, &rkey, NULL) ||
        raddr != e->addr + e->length - e->page_size || rkey != e->rkey) {
        fail("the last page of a region does not resolve");
    }
    if (rdma_mr_resolve(t, e->region, e->length, e->page_size, &raddr, &rkey,
                        NULL)) {
        fail("the page after a region resolves");
    }
}

/* The destination's Layout: region 1 is anonymous, 3 is not there. */
static const struct remote_region layout[] = {
    {.index = 0, .size = 1u << 20, .page_size = 4096, .readable = true},
    {.index = 1, .size = 1u << 20, .page_size = 4096, .readable = false},
    {.index = 2, .size = 8u << 20, .page_size = 2u << 20, .readable = true},
};

static bool entry_fits(const struct rdma_mr_entry *e)
{
    for (size_t i = 0; i < G_N_ELEMENTS(layout); i++) {
        if (layout[i].index == e->region) {
            return layout[i].readable && layout[i].size == e->length &&
                   layout[i].page_size == e->page_size;
        }
    }
    return false;
}

static void check_layout(const struct rdma_mr_table *t)
{
    GError *err = NULL;
    bool fits = true;

    for (unsigned i = 0; i < t->n; i++) {
        fits &= entry_fits(&t->e[i]);
    }
    if (rdma_mr_check_layout(t, layout, G_N_ELEMENTS(layout), &err) != fits) {
        fail("rdma_mr_check_layout() disagrees with the layout");
    }
    if (!fits &&
        (!err || err->domain != G_IO_ERROR ||
         err->code != G_IO_ERROR_INVALID_DATA || strchr(err->message, '\n'))) {
        fail("a layout refusal that is not one INVALID_DATA line");
    }
    g_clear_error(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t back[RDMA_MR_MSG_MAX];
    static struct rdma_mr_table t;
    GError *err = NULL;

    if (!rdma_mr_decode(data, size, &t, &err)) {
        if (!err || err->domain != G_IO_ERROR ||
            err->code != G_IO_ERROR_INVALID_ARGUMENT ||
            strchr(err->message, '\n')) {
            fail("a refusal that is not one INVALID_ARGUMENT line");
        }
        g_error_free(err);
        return 0;
    }
    for (unsigned i = 0; i < t.n; i++) {
        check_entry(&t, i);
    }
    check_layout(&t);
    if (rdma_mr_encode(&t, back) != size || memcmp(back, data, size)) {
        fail("an accepted table does not encode back to its bytes");
    }
    return 0;
}
