/*
 * expect.h - incoming libvirt domains the daemon was told about before
 * they run: the libvirt hook (tools/libvirt-hook/postcopyd), as libvirt
 * prepares a domain started to receive a postcopyd migration, sends
 * `expect-vm`; the daemon lists the domain in query-vms ("expected") and
 * attaches it by itself, through libvirt, as soon as libvirt runs it, so
 * that nobody needs to run `attach --incoming` on this host.
 *
 * Contract: daemon_expect_domain() returns at once (the hook must not
 * hold libvirt up); the attach runs on a thread of its own, retried while
 * the domain does not run yet, for EXPECT_TIMEOUT_S at most; every
 * outcome is one log line and the expectation goes.  An operator's
 * attach of the same domain meanwhile is no conflict (daemon_attach_qemu
 * takes one at a time, and the later one finds it attached).
 */
#ifndef POSTCOPYD_EXPECT_H
#define POSTCOPYD_EXPECT_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#define EXPECT_TIMEOUT_S 120

struct daemon;

struct expected_vm {
    struct daemon *daemon;
    char *name; /* the VM's name here: the domain's by default */
    char *domain;
    char *connect;    /* NULL: libvirt's default URI */
    int64_t since_us; /* g_get_real_time() when told */
};

/* @name NULL: the domain's name; @connect NULL: libvirt's default. */
bool daemon_expect_domain(struct daemon *d, const char *domain,
                          const char *connect, const char *name, GError **err);

/* The expected VMs as query-vms lists them (call with d->lock held). */
void daemon_expected_json(struct daemon *d, JsonBuilder *b);

#endif /* POSTCOPYD_EXPECT_H */
