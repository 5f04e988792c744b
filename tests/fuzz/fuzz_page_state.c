/*
 * fuzz_page_state.c - libFuzzer target: the page-state file a restarted
 * daemon reopens (daemon/dest/page_state.h, page_state_resume()): its
 * header (magic, version, sizes, migration id, layout) and one state byte
 * per page, which a dead daemon or anything with access to the state dir
 * may have left in any shape.
 *
 * Input: the whole file, resumed against a fixed layout (migration id
 * "0123...ef", 16 pages of 4 KiB and 2 pages of 2 MiB).
 *
 * Checked besides the sanitizers: a refusal is one GError line; a table
 * that resumes has the layout asked for and a known state for every page,
 * none REQUESTED or WRITING (a resume puts those back; INSTALLING stays
 * held, by contract).
 */
#include "page_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ID "0123456789abcdef0123456789abcdef"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *path;
static struct page_state_layout layout;

static void log_handler(const char *domain, GLogLevelFlags level,
                        const char *message, gpointer data)
{
    if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) {
        fprintf(stderr, "%s: %s\n", domain ? domain : "GLib", message);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    g_autofree char *dir = g_dir_make_tmp("fuzz-pages-XXXXXX", NULL);

    g_log_set_default_handler(log_handler, NULL);
    if (!dir) {
        return 1;
    }
    path = g_build_filename(dir, ID ".pages", NULL);
    g_strlcpy(layout.migration_id, ID, sizeof(layout.migration_id));
    layout.nregions = 2;
    layout.regions[0].npages = 16;
    layout.regions[0].page_size = 4096;
    layout.regions[1].npages = 2;
    layout.regions[1].page_size = 2u << 20;
    return 0;
}

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_page_state: %s\n", why);
    abort();
}

static void check(struct page_state_table *t)
{
    if (page_state_nregions(t) != layout.nregions) {
        fail("resumed with another number of regions");
    }
    for (uint32_t r = 0; r < layout.nregions; r++) {
        uint64_t n = page_state_npages(t, r);

        if (n != layout.regions[r].npages) {
            fail("resumed with another region size");
        }
        for (uint64_t p = 0; p < n; p++) {
            enum page_state s = page_state_get(t, r, p);

            if (s >= PAGE_NSTATES || s == PAGE_REQUESTED || s == PAGE_WRITING) {
                fail("a page in a state a resume must not leave");
            }
            (void)page_state_is_zero(t, r, p);
            (void)page_state_is_wanted(t, r, p);
        }
        if (page_state_next(t, r, 0, PAGE_MASK_ALL) > n) {
            fail("page_state_next past the end");
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) err = NULL;
    struct page_state_reload reload;
    struct page_state_table *t;

    if (!g_file_set_contents(path, (const char *)data, size, NULL)) {
        abort();
    }
    t = page_state_resume(path, &layout, &reload, &err);
    if (t) {
        check(t);
        page_state_close(t);
    } else if (!err || strchr(err->message, '\n')) {
        fail("a refusal without a one-line error");
    }
    unlink(path);
    return 0;
}
