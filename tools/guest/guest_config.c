/* guest_config.c - see guest_config.h. */
#include "guest_config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gio/gio.h>

#include "attach.h"
#include "backing.h"
#include "verify.h"
#include "version.h"

#define SMALL_PAGE  4096u
#define VCPUS_MAX   256
#define DEFAULT_RAM (256ULL << 20)
/* Settling longer than a minute is a typo, not a test. */
#define SETTLE_MAX_MS 60000
/* --verify-threads not given: as many as vCPUs. */
#define VERIFY_THREADS_UNSET G_MININT

/* What GOptionContext fills before validation. */
struct raw_options {
    char *backing;
    char *size;
    char *page_size;
    char **regions;
    char *workload;
    char *attach;
    char *name;
    char *drop;
    gint vcpus;
    gint verify_threads;
    gint verify_settle_ms;
    gint reattach;
    gint last_writes;
    gint hotset_percent;
    gint fill_percent;
    gint64 dirty_rate;
    gint64 seed;
    gboolean incoming;
    gboolean verify;
    gboolean verify_overlap;
    gboolean verify_write;
    gboolean refuse_query;
};

static void raw_options_clear(struct raw_options *o)
{
    g_free(o->backing);
    g_free(o->size);
    g_free(o->page_size);
    g_strfreev(o->regions);
    g_free(o->workload);
    g_free(o->attach);
    g_free(o->name);
    g_free(o->drop);
}

bool guest_parse_size(const char *s, uint64_t *out)
{
    static const char units[] = "KMGT";
    char *end;
    const char *u;
    uint64_t v;
    unsigned shift = 0;

    if (!s || !g_ascii_isdigit(*s)) {
        return false;
    }
    errno = 0;
    v = g_ascii_strtoull(s, &end, 10);
    if (errno) {
        return false;
    }
    if (*end) {
        u = strchr(units, g_ascii_toupper(*end));
        if (!u) {
            return false;
        }
        shift = 10 * (u - units + 1);
        end++;
        if (!strcmp(end, "iB") || !strcmp(end, "B")) {
            end += strlen(end);
        }
    }
    if (*end || (shift && v > (UINT64_MAX >> shift))) {
        return false;
    }
    *out = v << shift;
    return true;
}

bool guest_option_error(GError **err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(
        err,
        g_error_new_valist(G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, fmt, ap));
    va_end(ap);
    return false;
}

static bool check_range(const char *opt, gint64 v, gint64 lo, gint64 hi,
                        GError **err)
{
    if (v < lo || v > hi) {
        return guest_option_error(err,
                                  "%s: %" G_GINT64_FORMAT
                                  " is out of range %" G_GINT64_FORMAT
                                  "..%" G_GINT64_FORMAT,
                                  opt, v, lo, hi);
    }
    return true;
}

/* @want 0: the backing's default.  @opt names the option in messages. */
static bool resolve_page_size(const char *opt, enum backing_kind kind,
                              uint64_t want, uint64_t *out, GError **err)
{
    if (kind != BACKING_HUGETLBFS) {
        if (want && want != SMALL_PAGE) {
            return guest_option_error(err,
                                      "%s: %s memory uses %u-byte pages, not "
                                      "%" G_GUINT64_FORMAT,
                                      opt, backing_kind_name(kind), SMALL_PAGE,
                                      want);
        }
        *out = SMALL_PAGE;
        return true;
    }
    *out = want ? want : backing_default_hugepage_size();
    if (!*out) {
        return guest_option_error(
            err, "%s: hugetlbfs: the kernel reports no huge page size", opt);
    }
    if ((*out & (*out - 1)) || *out < SMALL_PAGE) {
        return guest_option_error(err,
                                  "%s: page size %" G_GUINT64_FORMAT
                                  " is not a power of two of at least %u",
                                  opt, *out, SMALL_PAGE);
    }
    return true;
}

static bool check_region_size(const char *opt, const struct guest_ram_spec *r,
                              GError **err)
{
    if (!r->size || r->size % r->page_size) {
        return guest_option_error(
            err,
            "%s: %" G_GUINT64_FORMAT
            " is not a non-zero multiple of the page size "
            "%" G_GUINT64_FORMAT,
            opt, r->size, r->page_size);
    }
    return true;
}

/* --backing, --size and --page-size: the one region of a plain guest. */
static bool single_region(const struct raw_options *o, struct guest_config *cfg,
                          GError **err)
{
    struct guest_ram_spec *r = &cfg->regions[0];
    uint64_t want = 0;

    r->kind = BACKING_SHMEM;
    if (o->backing && !backing_kind_parse(o->backing, &r->kind)) {
        return guest_option_error(
            err, "--backing: '%s' is not anon, shmem or hugetlbfs", o->backing);
    }
    if (o->page_size && !guest_parse_size(o->page_size, &want)) {
        return guest_option_error(err, "--page-size: '%s' is not a size",
                                  o->page_size);
    }
    if (!resolve_page_size("--page-size", r->kind, want, &r->page_size, err)) {
        return false;
    }
    r->size = DEFAULT_RAM;
    if (o->size && !guest_parse_size(o->size, &r->size)) {
        return guest_option_error(
            err, "--size: '%s' is not a size (e.g. 512M, 1G, 64K, bytes)",
            o->size);
    }
    cfg->nregions = 1;
    return check_region_size("--size", r, err);
}

/* "KIND:SIZE[:PAGESIZE]" */
static bool parse_region(const char *arg, struct guest_ram_spec *r,
                         GError **err)
{
    g_auto(GStrv) f = g_strsplit(arg, ":", 0);
    g_autofree char *opt = g_strdup_printf("--region %s", arg);
    guint n = g_strv_length(f);
    uint64_t want = 0;

    if (n < 2 || n > 3) {
        return guest_option_error(err, "%s: not KIND:SIZE[:PAGESIZE]", opt);
    }
    if (!backing_kind_parse(f[0], &r->kind)) {
        return guest_option_error(
            err, "%s: '%s' is not anon, shmem or hugetlbfs", opt, f[0]);
    }
    if (!guest_parse_size(f[1], &r->size)) {
        return guest_option_error(err, "%s: '%s' is not a size", opt, f[1]);
    }
    if (n == 3 && !guest_parse_size(f[2], &want)) {
        return guest_option_error(err, "%s: '%s' is not a page size", opt,
                                  f[2]);
    }
    return resolve_page_size(opt, r->kind, want, &r->page_size, err) &&
           check_region_size(opt, r, err);
}

static bool check_regions(const struct raw_options *o, struct guest_config *cfg,
                          GError **err)
{
    guint n = o->regions ? g_strv_length(o->regions) : 0;

    if (!n) {
        return single_region(o, cfg, err);
    }
    if (o->backing || o->size || o->page_size) {
        return guest_option_error(
            err, "--region: cannot be combined with --backing, "
                 "--size or --page-size");
    }
    if (n > GUEST_REGIONS_MAX) {
        return guest_option_error(err, "--region: %u regions, at most %d", n,
                                  GUEST_REGIONS_MAX);
    }
    for (guint i = 0; i < n; i++) {
        if (!parse_region(o->regions[i], &cfg->regions[i], err)) {
            return false;
        }
    }
    cfg->nregions = n;
    return true;
}

static bool check_names(const struct raw_options *o, struct guest_config *cfg,
                        GError **err)
{
    if (o->workload && !workload_kind_parse(o->workload, &cfg->workload)) {
        return guest_option_error(
            err, "--workload: '%s' is not idle, seq, random or hotset",
            o->workload);
    }
    if (!o->attach || !*o->attach) {
        return guest_option_error(err, "--attach SOCKET_PATH is required");
    }
    if (o->name && strlen(o->name) >= ATTACH_NAME_MAX) {
        return guest_option_error(err, "--name: longer than %d bytes",
                                  ATTACH_NAME_MAX - 1);
    }
    return true;
}

static bool check_numbers(const struct raw_options *o, GError **err)
{
    return check_range("--vcpus", o->vcpus, 1, VCPUS_MAX, err) &&
           (o->verify_threads == VERIFY_THREADS_UNSET ||
            check_range("--verify-threads", o->verify_threads, 1, VCPUS_MAX,
                        err)) &&
           check_range("--verify-settle-ms", o->verify_settle_ms, 0,
                       SETTLE_MAX_MS, err) &&
           check_range("--reattach", o->reattach, 0, 3600, err) &&
           check_range("--last-writes", o->last_writes, 0, 1 << 20, err) &&
           check_range("--hotset-percent", o->hotset_percent, 1, 100, err) &&
           check_range("--fill-percent", o->fill_percent, 0, 100, err) &&
           check_range("--dirty-rate", o->dirty_rate, 0, 1 << 30, err);
}

static bool validate(struct raw_options *o, struct guest_config *cfg,
                     GError **err)
{
    if (!check_names(o, cfg, err) || !check_numbers(o, err) ||
        !check_regions(o, cfg, err) ||
        (o->drop && !drop_parse(o->drop, &cfg->drop, err))) {
        return false;
    }
    if (o->drop && o->incoming && !o->verify) {
        return guest_option_error(
            err, "--drop on an --incoming guest needs --verify");
    }
    cfg->vcpus = o->vcpus;
    cfg->verify_threads = o->verify_threads == VERIFY_THREADS_UNSET
                              ? o->vcpus
                              : o->verify_threads;
    cfg->verify_overlap = o->verify_overlap;
    cfg->verify_write = o->verify_write;
    cfg->verify_settle_ms = o->verify_settle_ms;
    cfg->reattach_s = o->reattach;
    cfg->last_writes = o->last_writes;
    cfg->hotset_percent = o->hotset_percent;
    cfg->fill_percent = o->fill_percent;
    cfg->dirty_rate_mib = o->dirty_rate;
    cfg->seed = o->seed;
    cfg->incoming = o->incoming;
    cfg->verify = o->verify;
    cfg->refuse_query = o->refuse_query;
    cfg->attach_path = g_steal_pointer(&o->attach);
    cfg->name = o->name ? g_steal_pointer(&o->name) : g_strdup("guest");
    return true;
}

/* Exits, as --help does: nothing else on that command line matters. */
static gboolean version_cb(const gchar *name, const gchar *value, gpointer data,
                           GError **err)
{
    printf("postcopy-guest %s\n", POSTCOPYD_VERSION);
    exit(0);
}

bool guest_config_parse(int *argc, char ***argv, struct guest_config *cfg,
                        GError **err)
{
    struct raw_options o = {
        .vcpus = 2,
        .verify_threads = VERIFY_THREADS_UNSET,
        .verify_settle_ms = VERIFY_SETTLE_MS,
        .hotset_percent = 10,
        .fill_percent = 75,
        .seed = 1,
    };
    GOptionEntry entries[] = {
        {"backing", 0, 0, G_OPTION_ARG_STRING, &o.backing,
         "Guest RAM: anon, shmem (default) or hugetlbfs",
         "anon|shmem|hugetlbfs"},
        {"size", 0, 0, G_OPTION_ARG_STRING, &o.size,
         "Guest RAM size, e.g. 512M, 1G (default 256M)", "SIZE"},
        {"page-size", 0, 0, G_OPTION_ARG_STRING, &o.page_size,
         "Page size (default: 4K, or the default huge page size)", "SIZE"},
        {"region", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o.regions,
         "One more RAM region (repeatable; replaces --backing/--size), "
         "e.g. shmem:64M, hugetlbfs:16M:2M",
         "KIND:SIZE[:PAGESIZE]"},
        {"vcpus", 0, 0, G_OPTION_ARG_INT, &o.vcpus, "vCPU threads (default 2)",
         "N"},
        {"workload", 0, 0, G_OPTION_ARG_STRING, &o.workload,
         "idle, seq, random (default) or hotset", "idle|seq|random|hotset"},
        {"dirty-rate", 0, 0, G_OPTION_ARG_INT64, &o.dirty_rate,
         "Write rate over all vCPUs; 0 = as fast as possible (default)",
         "MiB/s"},
        {"hotset-percent", 0, 0, G_OPTION_ARG_INT, &o.hotset_percent,
         "hotset: share of RAM written (default 10)", "PCT"},
        {"fill-percent", 0, 0, G_OPTION_ARG_INT, &o.fill_percent,
         "Pages given non-zero data at start (default 75)", "PCT"},
        {"seed", 0, 0, G_OPTION_ARG_INT64, &o.seed,
         "Seed of contents, write pattern and verify order (default 1)", "N"},
        {"attach", 0, 0, G_OPTION_ARG_FILENAME, &o.attach,
         "postcopyd attach socket to connect to (required)", "PATH"},
        {"incoming", 0, 0, G_OPTION_ARG_NONE, &o.incoming,
         "Destination: RAM stays empty until RESUME with device state", NULL},
        {"verify", 0, 0, G_OPTION_ARG_NONE, &o.verify,
         "Digest every page at pause; the destination checks them", NULL},
        {"verify-threads", 0, 0, G_OPTION_ARG_INT, &o.verify_threads,
         "Threads reading pages to verify (default: --vcpus)", "N"},
        {"verify-overlap", 0, 0, G_OPTION_ARG_NONE, &o.verify_overlap,
         "Every verify thread reads every page, with neighbour bursts", NULL},
        {"verify-write", 0, 0, G_OPTION_ARG_NONE, &o.verify_write,
         "After verifying, write the pages and check nothing overwrites them",
         NULL},
        {"verify-settle-ms", 0, 0, G_OPTION_ARG_INT, &o.verify_settle_ms,
         "--verify-write: how long written pages must hold (default 200)",
         "MS"},
        {"name", 0, 0, G_OPTION_ARG_STRING, &o.name, "VM name (default guest)",
         "NAME"},
        {"reattach", 0, 0, G_OPTION_ARG_INT, &o.reattach,
         "If the daemon goes away, try to attach again for this long "
         "(default 0: exit)",
         "SECONDS"},
        {"last-writes", 0, 0, G_OPTION_ARG_INT, &o.last_writes,
         "At a pause each vCPU writes N more pages first (adversarial)", "N"},
        {"refuse-query", 0, 0, G_OPTION_ARG_NONE, &o.refuse_query,
         "Answer every query with a refusal (a VMM that does not answer)",
         NULL},
        {"drop", 0, 0, G_OPTION_ARG_STRING, &o.drop,
         "Drop COUNT pages from global page FIRST (madvise DONTNEED / "
         "REMOVE, or munmap): incoming, right after the resume (they must "
         "read 0); a source, on SIGUSR1",
         "dontneed|remove|unmap:FIRST:COUNT"},
        {"version", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK,
         (gpointer)version_cb, "Print the version and exit", NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx =
        g_option_context_new("- synthetic VM for postcopyd");
    bool ok;

    memset(cfg, 0, sizeof(*cfg));
    cfg->workload = WORKLOAD_RANDOM;
    g_option_context_set_description(
        ctx, "Exit status:\n"
             "  0  quit by the daemon, or its attach socket closed\n"
             "  1  failed (set-up, attach, or the daemon's channel)\n"
             "  2  bad usage\n");
    g_option_context_add_main_entries(ctx, entries, NULL);
    ok = g_option_context_parse(ctx, argc, argv, err);
    if (ok && *argc > 1) {
        ok = guest_option_error(err, "unexpected argument '%s'", (*argv)[1]);
    }
    ok = ok && validate(&o, cfg, err);
    raw_options_clear(&o);
    return ok;
}

void guest_config_clear(struct guest_config *cfg)
{
    g_clear_pointer(&cfg->attach_path, g_free);
    g_clear_pointer(&cfg->name, g_free);
}
