/*
 * test_libvirt.c - the libvirt pieces that need no QEMU: the domain XML
 * checks and the destination's XML (libvirt_xml.h), and the libvirt QMP
 * channel's domain lookup and one-line errors against libvirt's
 * test:///default driver (which has no QEMU monitor: attach must fail
 * cleanly there).
 */
#include <string.h>
#include <gio/gio.h>
#include <libvirt/libvirt.h>

#include "qmp_driver.h"
#include "libvirt_xml.h"

#define TEST_URI "test:///default"

static char *domain_xml(const char *name, const char *extra)
{
    return g_strdup_printf("<domain type='test'>\n  <name>%s</name>\n"
                           "  <memory unit='MiB'>64</memory>\n%s"
                           "  <os><type>hvm</type></os>\n</domain>\n",
                           name, extra);
}

static void test_ram_shared(void)
{
    static const struct {
        const char *extra;
        bool shared;
    } cases[] = {
        {"", false},
        {"<memoryBacking><source type='memfd'/><access mode='shared'/>"
         "</memoryBacking>",
         true},
        {"<memoryBacking><hugepages/><access mode='shared'/>"
         "</memoryBacking>",
         true},
        {"<memoryBacking><access mode='private'/></memoryBacking>", false},
        /* Only /domain/memoryBacking counts, not a lookalike elsewhere. */
        {"<devices><access mode='shared'/></devices>", false},
        {"<cpu><numa><cell id='0' memory='64' unit='MiB' "
         "memAccess='shared'/></numa></cpu>",
         true},
        {"<cpu><numa><cell id='0' memory='32' unit='MiB' "
         "memAccess='shared'/><cell id='1' memory='32' unit='MiB'/>"
         "</numa></cpu>",
         false},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *xml = domain_xml("d", cases[i].extra);
        g_autoptr(GError) err = NULL;

        g_assert_cmpint(libvirt_xml_ram_shared(xml, &err), ==, cases[i].shared);
        if (cases[i].shared) {
            g_assert_no_error(err);
            continue;
        }
        /* The refusal shows the XML to add, on one line. */
        g_assert_nonnull(strstr(err->message, LIBVIRT_SHARED_RAM_XML));
        g_assert_null(strchr(err->message, '\n'));
    }
}

static void test_ram_shared_bad_xml(void)
{
    g_autoptr(GError) err = NULL;

    g_assert_false(libvirt_xml_ram_shared("<domain><name>", &err));
    g_assert_nonnull(err);
    g_assert_true(g_str_has_prefix(err->message, "the domain XML: "));
}

static bool parses(const char *xml)
{
    static const GMarkupParser none = {0};
    GMarkupParseContext *ctx = g_markup_parse_context_new(&none, 0, NULL, NULL);
    bool ok = g_markup_parse_context_parse(ctx, xml, -1, NULL) &&
              g_markup_parse_context_end_parse(ctx, NULL);

    g_markup_parse_context_free(ctx);
    return ok;
}

static void test_incoming(void)
{
    g_autofree char *xml = domain_xml(
        "d", "<memoryBacking><access mode='shared'/></memoryBacking>");
    g_autofree char *in = libvirt_xml_incoming(xml, NULL);
    g_autofree char *again = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_nonnull(in);
    g_assert_true(parses(in));
    g_assert_nonnull(strstr(in, "<qemu:arg value='-incoming'/>"));
    g_assert_nonnull(strstr(in, "<qemu:arg value='defer'/>"));
    g_assert_true(libvirt_xml_ram_shared(in, NULL));
    /* A domain that declares the qemu namespace already keeps one. */
    again = libvirt_xml_incoming(in, NULL);
    g_assert_true(parses(again));
    g_assert_nonnull(strstr(again, "xmlns:qemu="));
    g_assert_null(libvirt_xml_incoming("<nodomain/>", &err));
    g_assert_nonnull(err);
}

/* test:///default's own XML, through libvirt: its RAM is not shared. */
static void test_default_domain_xml(void)
{
    virConnectPtr c = virConnectOpen(TEST_URI);
    virDomainPtr d = virDomainLookupByName(c, "test");
    char *xml = virDomainGetXMLDesc(d, 0);
    g_autoptr(GError) err = NULL;

    g_assert_nonnull(xml);
    g_assert_false(libvirt_xml_ram_shared(xml, &err));
    g_assert_nonnull(strstr(err->message, "not in shared memory"));
    free(xml);
    virDomainFree(d);
    virConnectClose(c);
}

static void test_driver_lookup(void)
{
    g_autoptr(GError) err = NULL;
    struct qmp_channel *ch;

    ch = qmp_channel_libvirt_new(TEST_URI, "nosuch", &err);
    g_assert_null(ch);
    g_assert_true(g_str_has_prefix(err->message, "libvirt domain nosuch: "));
    g_assert_null(strchr(err->message, '\n'));
    g_clear_error(&err);

    /* The test driver has no QEMU monitor: refused, one line, named. */
    ch = qmp_channel_libvirt_new(TEST_URI, "test", &err);
    g_assert_null(ch);
    g_assert_true(g_str_has_prefix(err->message, "libvirt domain test: "));
    g_assert_nonnull(strstr(err->message, "QEMU monitor events"));
    g_assert_null(strchr(err->message, '\n'));
}

static void test_driver_inactive(void)
{
    virConnectPtr c = virConnectOpen(TEST_URI);
    g_autofree char *xml = domain_xml("off", "");
    virDomainPtr d = virDomainDefineXML(c, xml);
    g_autoptr(GError) err = NULL;

    g_assert_nonnull(d);
    g_assert_null(qmp_channel_libvirt_new(TEST_URI, "off", &err));
    g_assert_cmpstr(err->message, ==, "libvirt domain off: not running");
    virDomainUndefine(d);
    virDomainFree(d);
    virConnectClose(c);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/libvirt/xml/ram-shared", test_ram_shared);
    g_test_add_func("/libvirt/xml/ram-shared-bad-xml", test_ram_shared_bad_xml);
    g_test_add_func("/libvirt/xml/incoming", test_incoming);
    g_test_add_func("/libvirt/xml/default-domain", test_default_domain_xml);
    g_test_add_func("/libvirt/driver/lookup", test_driver_lookup);
    g_test_add_func("/libvirt/driver/inactive", test_driver_inactive);
    return g_test_run();
}
