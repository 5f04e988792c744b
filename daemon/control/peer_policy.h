/*
 * peer_policy.h - whether this daemon may listen for peers the way its
 * configuration says: a listener reachable from the network must
 * authenticate its peers (a psk-file, or TLS with X.509 certificates),
 * unless the operator said `insecure = true` (--insecure).
 *
 * Contract:
 *  - A listen address is "loopback only" when its host is an address of
 *    127.0.0.0/8 or ::1, or a name that resolves to nothing else.  A
 *    wildcard host (0.0.0.0, [::], ":PORT") is the network.  A name that
 *    does not resolve counts as the network: refusing is the safe side.
 *  - peer_policy_check() decides at start-up, before anything listens:
 *    false with one line naming what to set when it must refuse.
 *  - It does not log; the daemon logs what it decided.
 */
#ifndef POSTCOPYD_PEER_POLICY_H
#define POSTCOPYD_PEER_POLICY_H

#include <stdbool.h>
#include <glib.h>

struct postcopyd_config;

/* Peers are authenticated: a psk-file, or tls = x509. */
bool peer_policy_authenticated(const struct postcopyd_config *cfg);

/* @listen (HOST:PORT) is reachable from loopback only. */
bool peer_policy_loopback_only(const char *listen);

/*
 * May the daemon start?  true when peers are authenticated, when it
 * listens on loopback only, or when cfg->insecure says so.
 */
bool peer_policy_check(const struct postcopyd_config *cfg, GError **err);

/* True when it runs unauthenticated on the network (--insecure). */
bool peer_policy_insecure(const struct postcopyd_config *cfg);

#endif /* POSTCOPYD_PEER_POLICY_H */
