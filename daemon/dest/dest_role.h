/*
 * dest_role.h - what the destination role offers the daemon, registered
 * with it at start-up (daemon_roles, daemon.h) so that daemon.c never
 * names a role: a peer connection whose Hello was read, and a session a
 * dead daemon left.
 */
#ifndef POSTCOPYD_DEST_ROLE_H
#define POSTCOPYD_DEST_ROLE_H

#include "peer_msg.h"

struct channel;
struct daemon;
struct session_file;
struct vm_entry;

/* A control channel whose Hello was read (admission.c). */
void dest_accept_control(struct daemon *d, struct channel *ch,
                         PeerMessage *hello);
/* A data channel for an existing destination migration (admission.c). */
void dest_accept_data(struct daemon *d, struct channel *ch, PeerMessage *hello);
/* A VM re-attached whose migration a dead daemon left in postcopy. */
void dest_restore(struct daemon *d, struct vm_entry *vm,
                  const struct session_file *f);

#endif /* POSTCOPYD_DEST_ROLE_H */
