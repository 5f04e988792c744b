/*
 * domain.h - the libvirt side of `postcopy-migrate migrate --domain`:
 * before the migration, the source domain is checked (running, RAM
 * shared) and the destination domain started from its XML, paused and
 * waiting for its incoming migration; after it, libvirt on both hosts is
 * left knowing where the domain runs, as `virsh migrate --undefinesource
 * --persistent` would leave it (or the destination domain is destroyed
 * if the migration failed: the source runs on).
 *
 * Contract: every failure is a one-line GError naming the domain and the
 * host side; a failed prepare leaves nothing started.
 */
#ifndef POSTCOPY_MIGRATE_DOMAIN_H
#define POSTCOPY_MIGRATE_DOMAIN_H

#include <stdbool.h>
#include <glib.h>

struct domain_migration;

/* @src_uri, @dst_uri: libvirt URIs, NULL for libvirt's default. */
struct domain_migration *domain_prepare(const char *name, const char *src_uri,
                                        const char *dst_uri, GError **err);

/*
 * After the migration: @ok, the destination is defined (if the source
 * was persistent) and the source undefined; else the destination domain
 * is destroyed.  Frees @m.
 */
bool domain_finish(struct domain_migration *m, bool ok, GError **err);

#endif /* POSTCOPY_MIGRATE_DOMAIN_H */
