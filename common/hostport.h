/*
 * hostport.h - "host:port" addresses, the one parser for all of them: the
 * config file and command lines ("0.0.0.0:4444", "dst.example.org:4444",
 * "[::]:4444") and the IP transports' listen and connect addresses
 * (address.h), which also take ":port" / "*:port" and port 0.
 *
 * Contract: an IPv6 literal must be in brackets (a bare "::1:4444" is
 * ambiguous and refused); the host is a hostname, an IPv4 literal or a
 * bracketed IPv6 literal (a scope as in "[fe80::1%eth0]" allowed); the
 * port is decimal 1..65535.  What a caller allows beyond that it says in
 * @flags; when it allows it (@default_port > 0) the port may be left out.
 * Errors are one line in G_IO_ERROR / G_IO_ERROR_INVALID_ARGUMENT naming
 * the input.
 */
#ifndef POSTCOPYD_HOSTPORT_H
#define POSTCOPYD_HOSTPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#define HOSTPORT_DEFAULT_PORT 4444

/* ":PORT" and "*:PORT" name every local address: *@host comes back NULL. */
#define HOSTPORT_ANY_HOST (1u << 0)
/* Port 0 is allowed (listening: the kernel picks one). */
#define HOSTPORT_PORT_ZERO (1u << 1)

/*
 * Split @s into a newly allocated @host (brackets removed) and @port.
 * @default_port: used when @s has no port; 0 means the port is required.
 * @host may be NULL when the caller only validates; else it is set, to
 * NULL on failure.
 */
bool hostport_parse(const char *s, uint16_t default_port, unsigned flags,
                    char **host, uint16_t *port, GError **err);

/* "host:port", bracketing @host if it is an IPv6 literal. */
char *hostport_format(const char *host, uint16_t port);

#endif /* POSTCOPYD_HOSTPORT_H */
