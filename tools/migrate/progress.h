/*
 * progress.h - the live progress line of a migration:
 *   "postcopy-active  63%  812 MiB/s  faults 1234  ETA 0.4s"
 *
 * Contract: on a terminal one line is rewritten in place (\r, clear to
 * end of line) on every update; elsewhere (logs, pipes) a plain line is
 * printed when the phase changes and at most once a second otherwise.
 * progress_end() finishes the line so that what follows starts clean.
 */
#ifndef POSTCOPY_MIGRATE_PROGRESS_H
#define POSTCOPY_MIGRATE_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>
#include <json-glib/json-glib.h>

#define PROGRESS_PLAIN_INTERVAL_US G_USEC_PER_SEC

struct progress {
    FILE *out; /* NULL: show nothing */
    bool tty;
    bool line_open; /* a rewritable line is on the terminal */
    char *last_status;
    gint64 last_print_us;
};

void progress_init(struct progress *p, FILE *out);
void progress_update(struct progress *p, JsonNode *stats);
void progress_end(struct progress *p);

/* The line for @stats, without newline. */
char *progress_line(JsonNode *stats);

#endif /* POSTCOPY_MIGRATE_PROGRESS_H */
