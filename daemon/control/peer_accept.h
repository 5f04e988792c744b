/*
 * peer_accept.h - the daemon's peer listener: every connection gets a
 * thread of its own for its handshake (TLS, authentication, the Hello),
 * if its source and the daemon have room for one more (d->preauth), and
 * is then routed by its Hello to the role (struct daemon_roles).
 *
 * Contract: a handshake has HELLO_TIMEOUT_MS from accept, however its
 * bytes are paced; a connection that fails it is closed with one log
 * line, and the daemon serves on.
 */
#ifndef POSTCOPYD_PEER_ACCEPT_H
#define POSTCOPYD_PEER_ACCEPT_H

#include <glib.h>

/* The accept loop, on a thread of its own; @daemon: struct daemon *. */
gpointer peer_accept_thread(gpointer daemon);

#endif /* POSTCOPYD_PEER_ACCEPT_H */
