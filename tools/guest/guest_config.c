/* guest_config.c - see guest_config.h. */
#include "guest_config.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <gio/gio.h>

#include "attach.h"
#include "backing.h"

#define SMALL_PAGE  4096u
#define VCPUS_MAX   256
#define DEFAULT_RAM (256ULL << 20)

/* What GOptionContext fills before validation. */
struct raw_options {
    char *backing;
    char *size;
    char *page_size;
    char *workload;
    char *attach;
    char *name;
    gint vcpus;
    gint hotset_percent;
    gint fill_percent;
    gint64 dirty_rate;
    gint64 seed;
    gboolean incoming;
    gboolean verify;
};

static void raw_options_clear(struct raw_options *o)
{
    g_free(o->backing);
    g_free(o->size);
    g_free(o->page_size);
    g_free(o->workload);
    g_free(o->attach);
    g_free(o->name);
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

static bool fail(GError **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static bool fail(GError **err, const char *fmt, ...)
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
        return fail(err,
                    "%s: %" G_GINT64_FORMAT " is out of range %" G_GINT64_FORMAT
                    "..%" G_GINT64_FORMAT,
                    opt, v, lo, hi);
    }
    return true;
}

static bool resolve_page_size(const struct raw_options *o,
                              struct guest_config *cfg, GError **err)
{
    uint64_t want = 0;

    if (o->page_size && !guest_parse_size(o->page_size, &want)) {
        return fail(err, "--page-size: '%s' is not a size", o->page_size);
    }
    if (cfg->backing != BACKING_HUGETLBFS) {
        if (want && want != SMALL_PAGE) {
            return fail(err,
                        "--page-size: %s memory uses %u-byte pages, not "
                        "%" G_GUINT64_FORMAT,
                        backing_kind_name(cfg->backing), SMALL_PAGE, want);
        }
        cfg->page_size = SMALL_PAGE;
        return true;
    }
    cfg->page_size = want ? want : backing_default_hugepage_size();
    if (!cfg->page_size) {
        return fail(err, "--backing hugetlbfs: the kernel reports no huge "
                         "page size");
    }
    if ((cfg->page_size & (cfg->page_size - 1)) ||
        cfg->page_size < SMALL_PAGE) {
        return fail(err,
                    "--page-size: %" G_GUINT64_FORMAT
                    " is not a power of two of at least %u",
                    cfg->page_size, SMALL_PAGE);
    }
    return true;
}

static bool check_size(const struct raw_options *o, struct guest_config *cfg,
                       GError **err)
{
    cfg->size = DEFAULT_RAM;
    if (o->size && !guest_parse_size(o->size, &cfg->size)) {
        return fail(err,
                    "--size: '%s' is not a size (e.g. 512M, 1G, 64K, bytes)",
                    o->size);
    }
    if (!cfg->size || cfg->size % cfg->page_size) {
        return fail(err,
                    "--size: %" G_GUINT64_FORMAT
                    " is not a non-zero multiple of the page size "
                    "%" G_GUINT64_FORMAT,
                    cfg->size, cfg->page_size);
    }
    return true;
}

static bool check_names(const struct raw_options *o, struct guest_config *cfg,
                        GError **err)
{
    if (o->backing && !backing_kind_parse(o->backing, &cfg->backing)) {
        return fail(err, "--backing: '%s' is not anon, shmem or hugetlbfs",
                    o->backing);
    }
    if (o->workload && !workload_kind_parse(o->workload, &cfg->workload)) {
        return fail(err, "--workload: '%s' is not idle, seq, random or hotset",
                    o->workload);
    }
    if (!o->attach || !*o->attach) {
        return fail(err, "--attach SOCKET_PATH is required");
    }
    if (o->name && strlen(o->name) >= ATTACH_NAME_MAX) {
        return fail(err, "--name: longer than %d bytes", ATTACH_NAME_MAX - 1);
    }
    return true;
}

static bool check_numbers(const struct raw_options *o, GError **err)
{
    return check_range("--vcpus", o->vcpus, 1, VCPUS_MAX, err) &&
           check_range("--hotset-percent", o->hotset_percent, 1, 100, err) &&
           check_range("--fill-percent", o->fill_percent, 0, 100, err) &&
           check_range("--dirty-rate", o->dirty_rate, 0, 1 << 30, err);
}

static bool validate(struct raw_options *o, struct guest_config *cfg,
                     GError **err)
{
    if (!check_names(o, cfg, err) || !check_numbers(o, err) ||
        !resolve_page_size(o, cfg, err) || !check_size(o, cfg, err)) {
        return false;
    }
    cfg->vcpus = o->vcpus;
    cfg->hotset_percent = o->hotset_percent;
    cfg->fill_percent = o->fill_percent;
    cfg->dirty_rate_mib = o->dirty_rate;
    cfg->seed = o->seed;
    cfg->incoming = o->incoming;
    cfg->verify = o->verify;
    cfg->attach_path = g_steal_pointer(&o->attach);
    cfg->name = o->name ? g_steal_pointer(&o->name) : g_strdup("guest");
    return true;
}

bool guest_config_parse(int *argc, char ***argv, struct guest_config *cfg,
                        GError **err)
{
    struct raw_options o = {
        .vcpus = 2, .hotset_percent = 10, .fill_percent = 75, .seed = 1};
    GOptionEntry entries[] = {
        {"backing", 0, 0, G_OPTION_ARG_STRING, &o.backing,
         "Guest RAM: anon, shmem (default) or hugetlbfs", "KIND"},
        {"size", 0, 0, G_OPTION_ARG_STRING, &o.size,
         "Guest RAM size, e.g. 512M, 1G (default 256M)", "SIZE"},
        {"page-size", 0, 0, G_OPTION_ARG_STRING, &o.page_size,
         "Page size (default: 4K, or the default huge page size)", "SIZE"},
        {"vcpus", 0, 0, G_OPTION_ARG_INT, &o.vcpus,
         "vCPU (and verify) threads (default 2)", "N"},
        {"workload", 0, 0, G_OPTION_ARG_STRING, &o.workload,
         "idle, seq, random (default) or hotset", "KIND"},
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
        {"name", 0, 0, G_OPTION_ARG_STRING, &o.name, "VM name (default guest)",
         "NAME"},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx =
        g_option_context_new("- synthetic VM for postcopyd");
    bool ok;

    memset(cfg, 0, sizeof(*cfg));
    cfg->backing = BACKING_SHMEM;
    cfg->workload = WORKLOAD_RANDOM;
    g_option_context_add_main_entries(ctx, entries, NULL);
    ok = g_option_context_parse(ctx, argc, argv, err);
    if (ok && *argc > 1) {
        ok = fail(err, "unexpected argument '%s'", (*argv)[1]);
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
