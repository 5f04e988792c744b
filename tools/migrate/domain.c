/* domain.c - see domain.h. */
#include "domain.h"

#include <stdlib.h>
#include <gio/gio.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "libvirt_xml.h"

struct domain_migration {
    char *name;
    virConnectPtr src, dst;
    virDomainPtr sdom, ddom;
    char *inactive_xml; /* the persistent definition, if any */
    bool persistent;
};

/* libvirt's last error, prefixed with where it happened. */
static bool virt_fail(struct domain_migration *m, const char *what,
                      GError **err)
{
    g_autofree char *msg = g_strdup(virGetLastErrorMessage());

    g_strdelimit(msg, "\r\n", ' ');
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED, "domain %s: %s: %s",
                m->name, what, msg);
    return false;
}

static void domain_migration_free(struct domain_migration *m)
{
    if (m->sdom) {
        virDomainFree(m->sdom);
    }
    if (m->ddom) {
        virDomainFree(m->ddom);
    }
    if (m->src) {
        virConnectClose(m->src);
    }
    if (m->dst) {
        virConnectClose(m->dst);
    }
    g_free(m->inactive_xml);
    g_free(m->name);
    g_free(m);
}

static void quiet_errors(void *opaque, virErrorPtr e)
{
}

/* The source: running, RAM shared; *@xml its live, migratable XML. */
static bool check_source(struct domain_migration *m, const char *uri,
                         char **xml, GError **err)
{
    m->src = virConnectOpen(uri);
    if (!m->src) {
        return virt_fail(m, "source libvirt", err);
    }
    m->sdom = virDomainLookupByName(m->src, m->name);
    if (!m->sdom) {
        return virt_fail(m, "source", err);
    }
    if (virDomainIsActive(m->sdom) != 1) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "domain %s is not running at the source", m->name);
        return false;
    }
    *xml = virDomainGetXMLDesc(m->sdom, VIR_DOMAIN_XML_SECURE |
                                            VIR_DOMAIN_XML_MIGRATABLE);
    if (!*xml) {
        return virt_fail(m, "source XML", err);
    }
    if (!libvirt_xml_ram_shared(*xml, err)) {
        g_prefix_error(err, "domain %s: ", m->name);
        return false;
    }
    m->persistent = virDomainIsPersistent(m->sdom) == 1;
    m->inactive_xml =
        m->persistent
            ? virDomainGetXMLDesc(m->sdom, VIR_DOMAIN_XML_SECURE |
                                               VIR_DOMAIN_XML_INACTIVE)
            : NULL;
    return !m->persistent || m->inactive_xml ||
           virt_fail(m, "source definition", err);
}

/* The same domain at the destination, paused, waiting for its state. */
static bool start_destination(struct domain_migration *m, const char *uri,
                              const char *xml, GError **err)
{
    g_autofree char *incoming = libvirt_xml_incoming(xml, err);

    if (!incoming) {
        return false;
    }
    m->dst = virConnectOpen(uri);
    if (!m->dst) {
        return virt_fail(m, "destination libvirt", err);
    }
    m->ddom = virDomainCreateXML(m->dst, incoming, VIR_DOMAIN_START_PAUSED);
    return m->ddom || virt_fail(m, "starting it at the destination", err);
}

struct domain_migration *domain_prepare(const char *name, const char *src_uri,
                                        const char *dst_uri, GError **err)
{
    struct domain_migration *m = g_new0(struct domain_migration, 1);
    char *xml = NULL;
    bool ok;

    virSetErrorFunc(NULL, quiet_errors);
    m->name = g_strdup(name);
    ok = check_source(m, src_uri, &xml, err) &&
         start_destination(m, dst_uri, xml, err);
    free(xml);
    if (!ok) {
        domain_migration_free(m);
        return NULL;
    }
    return m;
}

/* As virsh migrate --persistent --undefinesource leaves it. */
static bool move_definition(struct domain_migration *m, GError **err)
{
    virDomainPtr d;

    /* The source daemon destroys it too (quit): either may come first. */
    if (virDomainIsActive(m->sdom) == 1 && virDomainDestroy(m->sdom) < 0 &&
        virDomainIsActive(m->sdom) == 1) {
        return virt_fail(m, "stopping the source", err);
    }
    if (!m->persistent) {
        return true;
    }
    d = virDomainDefineXML(m->dst, m->inactive_xml);
    if (!d) {
        return virt_fail(m, "defining it at the destination", err);
    }
    virDomainFree(d);
    return virDomainUndefine(m->sdom) == 0 ||
           virt_fail(m, "undefining the source", err);
}

/*
 * A destination QEMU whose incoming migration failed exits by itself
 * (QEMU 7.2, once armed): nothing is left to destroy.
 */
static bool destination_gone(void)
{
    virErrorPtr e = virGetLastError();

    return e && (e->code == VIR_ERR_NO_DOMAIN ||
                 e->code == VIR_ERR_OPERATION_INVALID);
}

bool domain_finish(struct domain_migration *m, bool ok, GError **err)
{
    bool done;

    if (ok) {
        done = move_definition(m, err);
    } else {
        done = virDomainDestroy(m->ddom) == 0 || destination_gone() ||
               virt_fail(m, "destroying the destination", err);
    }
    domain_migration_free(m);
    return done;
}
