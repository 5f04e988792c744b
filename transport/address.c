/* address.c - see address.h. */
#include "address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <gio/gio.h>

#include "hostport.h"

bool address_parse(const char *s, char **host, uint16_t *port, GError **err)
{
    return hostport_parse(s, 0, HOSTPORT_ANY_HOST | HOSTPORT_PORT_ZERO, host,
                          port, err);
}

char *address_format(const struct sockaddr *sa, socklen_t len)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        return g_strdup_printf("%s:%u", ip, ntohs(in->sin_port));
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        /* An IPv4 peer on a dual-stack listener: show it as IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], ip, sizeof(ip));
            return g_strdup_printf("%s:%u", ip, ntohs(in6->sin6_port));
        }
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        return g_strdup_printf("[%s]:%u", ip, ntohs(in6->sin6_port));
    }
    return g_strdup_printf("(address family %d)", sa->sa_family);
}
