/*
 * address.h - "host:port" strings for the IP transports (TCP, and RDMA,
 * whose connection manager also addresses peers by IP and port).
 *
 * Accepted forms: "host:port", "1.2.3.4:port", "[v6addr]:port", and for
 * listening ":port" or "*:port" (every local address).  An IPv6 address
 * must be bracketed: "::1:4000" is ambiguous and refused.  Port 0 parses
 * (listen on an ephemeral port); connecting to it is the caller's error.
 * The parsing is hostport_parse()'s (common/hostport.h), with those two
 * allowances.
 */
#ifndef POSTCOPYD_ADDRESS_H
#define POSTCOPYD_ADDRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <glib.h>

/*
 * Split @s into *@host (g_free it; NULL for "any") and *@port.  Errors are
 * G_IO_ERROR_INVALID_ARGUMENT and quote @s.
 */
bool address_parse(const char *s, char **host, uint16_t *port, GError **err);

/* "1.2.3.4:5" or "[::1]:5" for an AF_INET/AF_INET6 address; g_free it. */
char *address_format(const struct sockaddr *sa, socklen_t len);

#endif /* POSTCOPYD_ADDRESS_H */
