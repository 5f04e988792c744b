/*
 * follow.h - following a migration to its end: poll query-migrate every
 * FOLLOW_POLL_MS, draw the progress line, then report the outcome.
 *
 * Contract: returns the exit status: 0 when the migration completed (or,
 * unless @expect_migration, when there is none), 1 with "migration
 * failed: REASON" or "migration cancelled" on stderr otherwise, or when
 * the daemon stops answering.  The final query-migrate result is printed
 * as JSON with cli->json, else as the summary table.  Interrupting the
 * CLI stops the watching only: the migration goes on in the daemon.
 */
#ifndef POSTCOPY_MIGRATE_FOLLOW_H
#define POSTCOPY_MIGRATE_FOLLOW_H

#include <stdbool.h>

#include "cli.h"

#define FOLLOW_POLL_MS 150

/*
 * The migration with id @id, else the newest of VM @vm, else the
 * daemon's newest (both NULL).
 */
int follow_migration(struct cli *cli, struct control_conn *c, const char *vm,
                     const char *id, bool expect_migration);

/* {"vm": @vm, "id": @id} without the NULL ones; NULL when both are. */
JsonObject *follow_vm_args(const char *vm, const char *id);

#endif /* POSTCOPY_MIGRATE_FOLLOW_H */
