/*
 * tcp_socket.h - the sockets of the TCP transport, before any frame: a
 * connected or listening socket with the options transport.h's
 * tcp_options ask for.  tcp.c moves frames on them; the RDMA test
 * double (rdma_double.c) uses them as its stand-in for rdma_cm.
 *
 * Every function returns a descriptor (or true), or -1 (false) with @err
 * one line naming the address and the call that failed.  Sockets come
 * back blocking (connected) or non-blocking (listening), close-on-exec.
 */
#ifndef POSTCOPYD_TCP_SOCKET_H
#define POSTCOPYD_TCP_SOCKET_H

#include <stdbool.h>
#include <glib.h>

#include "transport.h"

/* Options every channel gets, on both sides: nodelay, user timeout,
 * keepalive. */
bool tcp_socket_tune(int fd, const struct transport_options *o, GError **err);
/* Options of a channel kind (urgent: SO_PRIORITY). */
bool tcp_socket_tune_kind(int fd, enum channel_kind kind, GError **err);
/* SO_SNDBUF (SO_SNDBUFFORCE where we may), on a connected socket. */
bool tcp_socket_set_send_buffer(int fd, unsigned bytes, GError **err);
/* Blocking I/O that fails after @ms (SO_RCVTIMEO/SO_SNDTIMEO); 0: never. */
bool tcp_socket_set_timeout(int fd, unsigned ms, GError **err);
/*
 * Connect to "host:port" as a channel of @kind, each address it resolves
 * to in turn, within o->connect_timeout_ms each.
 */
int tcp_socket_connect(const char *address, enum channel_kind kind,
                       const struct transport_options *o, GError **err);
/* Listen on "host:port" (":port": every address); *@bound: the real one. */
int tcp_socket_listen(const char *address, const struct transport_options *o,
                      char **bound, GError **err);

#endif /* POSTCOPYD_TCP_SOCKET_H */
