/* libvirt_xml.c - see libvirt_xml.h. */
#include "libvirt_xml.h"

#include <string.h>
#include <gio/gio.h>

#define QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"
#define INCOMING_CL                                                            \
    "  <qemu:commandline>\n"                                                   \
    "    <qemu:arg value='-incoming'/>\n"                                      \
    "    <qemu:arg value='defer'/>\n"                                          \
    "  </qemu:commandline>\n"

struct ram_scan {
    GPtrArray *path; /* element names from the root, borrowed */
    bool backing_shared;
    unsigned cells, shared_cells;
};

static const char *attr(const char **names, const char **values,
                        const char *name)
{
    for (size_t i = 0; names[i]; i++) {
        if (strcmp(names[i], name) == 0) {
            return values[i];
        }
    }
    return NULL;
}

/* The element being opened is /domain/A/B... exactly. */
static bool at(struct ram_scan *s, const char *const *want, size_t n)
{
    if (s->path->len != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s->path->pdata[i], want[i]) != 0) {
            return false;
        }
    }
    return true;
}

static void scan_start(GMarkupParseContext *ctx, const char *name,
                       const char **names, const char **values, void *opaque,
                       GError **err)
{
    static const char *const access[] = {"domain", "memoryBacking", "access"};
    static const char *const cell[] = {"domain", "cpu", "numa", "cell"};
    struct ram_scan *s = opaque;
    const char *v;

    g_ptr_array_add(s->path, (void *)name);
    if (at(s, access, G_N_ELEMENTS(access))) {
        v = attr(names, values, "mode");
        s->backing_shared = v && strcmp(v, "shared") == 0;
    } else if (at(s, cell, G_N_ELEMENTS(cell))) {
        v = attr(names, values, "memAccess");
        s->cells++;
        s->shared_cells += v && strcmp(v, "shared") == 0;
    }
}

static void scan_end(GMarkupParseContext *ctx, const char *name, void *opaque,
                     GError **err)
{
    struct ram_scan *s = opaque;

    g_ptr_array_set_size(s->path, s->path->len - 1);
}

bool libvirt_xml_ram_shared(const char *xml, GError **err)
{
    static const GMarkupParser parser = {.start_element = scan_start,
                                         .end_element = scan_end};
    struct ram_scan s = {.path = g_ptr_array_new()};
    GMarkupParseContext *ctx = g_markup_parse_context_new(&parser, 0, &s, NULL);
    bool ok = g_markup_parse_context_parse(ctx, xml, -1, err) &&
              g_markup_parse_context_end_parse(ctx, err);

    g_markup_parse_context_free(ctx);
    g_ptr_array_free(s.path, TRUE);
    if (!ok) {
        g_prefix_error(err, "the domain XML: ");
        return false;
    }
    if (s.backing_shared || (s.cells && s.shared_cells == s.cells)) {
        return true;
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                "the domain's RAM is not in shared memory: add "
                "%s to its XML (virsh edit)",
                LIBVIRT_SHARED_RAM_XML);
    return false;
}

/* Where the root element's start tag ends ('>'), or NULL. */
static const char *root_tag_end(const char *xml)
{
    const char *p = strstr(xml, "<domain");

    return p ? strchr(p, '>') : NULL;
}

char *libvirt_xml_incoming(const char *xml, GError **err)
{
    const char *tag_end = root_tag_end(xml);
    const char *close = g_strrstr(xml, "</domain>");
    g_autoptr(GString) out = NULL;
    bool has_ns;

    if (!tag_end || !close || close < tag_end) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the domain XML has no <domain> element");
        return NULL;
    }
    has_ns = g_strstr_len(xml, tag_end - xml, "xmlns:qemu=") != NULL;
    out = g_string_new_len(xml, tag_end - xml);
    if (!has_ns) {
        g_string_append(out, " xmlns:qemu='" QEMU_NS "'");
    }
    g_string_append_len(out, tag_end, close - tag_end);
    g_string_append(out, INCOMING_CL);
    g_string_append(out, close);
    return g_string_free(g_steal_pointer(&out), FALSE);
}
