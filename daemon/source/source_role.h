/*
 * source_role.h - what the source role offers the rest of the daemon: the
 * control commands start, recover and cancel a migration; the daemon's
 * start-up hands it a session a dead daemon left (through daemon_roles,
 * daemon.h, so that daemon.c never names a role).
 */
#ifndef POSTCOPYD_SOURCE_ROLE_H
#define POSTCOPYD_SOURCE_ROLE_H

#include <stdbool.h>
#include <glib.h>

struct daemon;
struct migration;
struct session_file;
struct vm_entry;

/* Run the migration in its own thread. */
bool source_start(struct migration *m, const char *uri, GError **err);
/* A paused postcopy migration: reconnect now instead of after backoff. */
bool source_recover(struct migration *m, GError **err);
/* Cancel a source migration before switchover; false once past it. */
bool source_cancel(struct migration *m, GError **err);
/* A VM re-attached whose migration a dead daemon left in postcopy. */
void source_restore(struct daemon *d, struct vm_entry *vm,
                    const struct session_file *f);

#endif /* POSTCOPYD_SOURCE_ROLE_H */
