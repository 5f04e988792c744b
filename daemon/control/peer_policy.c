/* peer_policy.c - see peer_policy.h. */
#include "peer_policy.h"

#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "hostport.h"

bool peer_policy_authenticated(const struct postcopyd_config *cfg)
{
    return cfg->psk_file || (cfg->tls && !strcmp(cfg->tls, "x509"));
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

bool peer_policy_loopback_only(const char *listen)
{
    g_autofree char *host = NULL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    bool loopback = true;
    uint16_t port;

    if (!hostport_parse(listen, 0, HOSTPORT_ANY_HOST | HOSTPORT_PORT_ZERO,
                        &host, &port, NULL) ||
        !host) {
        return false; /* unparsable or every local address */
    }
    /* Every address the name stands for must be loopback. */
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) {
        return false;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        loopback = loopback && addr_is_loopback(ai->ai_addr);
    }
    freeaddrinfo(res);
    return loopback;
}

bool peer_policy_insecure(const struct postcopyd_config *cfg)
{
    return !peer_policy_authenticated(cfg) &&
           !peer_policy_loopback_only(cfg->listen);
}

bool peer_policy_check(const struct postcopyd_config *cfg, GError **err)
{
    if (!peer_policy_insecure(cfg) || cfg->insecure) {
        return true;
    }
    g_set_error(err, CONFIG_ERROR, CONFIG_ERROR_INVALID,
                "[peer] listen = %s is a network address and peers would "
                "not be authenticated: set psk-file (or tls = x509), or "
                "insecure = true (--insecure) on a trusted network",
                cfg->listen);
    return false;
}
