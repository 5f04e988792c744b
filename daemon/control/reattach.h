/*
 * reattach.h - a restarted daemon attaches again, through libvirt, the
 * libvirt domains whose migrations its predecessor left in postcopy:
 * their session files name the domain and its libvirt connection.  Nobody
 * else would (`postcopy-migrate migrate --domain` attached the
 * destination once, over ssh), and the guest waits on its missing pages
 * meanwhile.
 *
 * Contract: returns at once; the attaches run on a thread of their own
 * (libvirt may be slow, or not up yet: a few tries, a second apart); each
 * outcome is one log line; a domain an operator attached first is left
 * as it is.
 */
#ifndef POSTCOPYD_REATTACH_H
#define POSTCOPYD_REATTACH_H

struct daemon;

void daemon_reattach_domains(struct daemon *d);

#endif /* POSTCOPYD_REATTACH_H */
