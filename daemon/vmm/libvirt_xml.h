/*
 * libvirt_xml.h - what postcopyd needs to know of a libvirt domain's XML,
 * and the XML it starts a destination with.
 *
 * Contract: pure functions on the XML text (no libvirt connection), one
 * line errors.  A domain's RAM is shared when its <memoryBacking> says
 * <access mode='shared'/>, or every NUMA cell says memAccess='shared'.
 */
#ifndef POSTCOPYD_LIBVIRT_XML_H
#define POSTCOPYD_LIBVIRT_XML_H

#include <stdbool.h>
#include <glib.h>

/* What a domain's XML needs for postcopyd to move its RAM. */
#define LIBVIRT_SHARED_RAM_XML                                                 \
    "<memoryBacking><source type='memfd'/><access mode='shared'/>"             \
    "</memoryBacking>"

/*
 * The domain's RAM is in shared memory; else false with an error that
 * shows the XML to add (LIBVIRT_SHARED_RAM_XML).
 */
bool libvirt_xml_ram_shared(const char *xml, GError **err);

/*
 * @xml, started as a destination: QEMU waits for its incoming migration
 * (-incoming defer, through libvirt's <qemu:commandline>).  g_free it.
 */
char *libvirt_xml_incoming(const char *xml, GError **err);

#endif /* POSTCOPYD_LIBVIRT_XML_H */
