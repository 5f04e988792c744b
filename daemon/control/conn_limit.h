/*
 * conn_limit.h - how many peer connections may wait in their handshake at
 * once, per source address and in all.  Each holds a thread (and its
 * stack) until its peer has authenticated and named its channel, and
 * nothing is known of that peer before: without a bound, plain connects
 * exhaust the daemon's threads.
 *
 * Threads: any; each call takes the limit's own lock briefly.
 */
#ifndef POSTCOPYD_CONN_LIMIT_H
#define POSTCOPYD_CONN_LIMIT_H

#include <stdbool.h>
#include <glib.h>

struct conn_limit {
    GMutex lock;
    GHashTable *per_source; /* source (char *) -> count, by lock */
    unsigned total;         /* by lock */
    unsigned max_per_source;
    unsigned max_total;
};

void conn_limit_init(struct conn_limit *l, unsigned max_per_source,
                     unsigned max_total);
void conn_limit_clear(struct conn_limit *l);

/*
 * Take a slot for @source (conn_limit_source()); false with a one-line
 * G_IO_ERROR_TOO_MANY_OPEN_FILES when its share or the total is taken.
 */
bool conn_limit_enter(struct conn_limit *l, const char *source, GError **err);
/* Give back a slot conn_limit_enter() took for @source. */
void conn_limit_leave(struct conn_limit *l, const char *source);

/* The address of a channel_peer() string: "10.0.0.2", "[::1]". */
char *conn_limit_source(const char *peer);

#endif /* POSTCOPYD_CONN_LIMIT_H */
