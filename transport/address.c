/* address.c - see address.h. */
#include "address.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <gio/gio.h>

static bool parse_port(const char *s, const char *p, uint16_t *port,
                       GError **err)
{
    char *end;
    unsigned long v;

    if (*p == '\0') {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "invalid address '%s': no port after ':'", s);
        return false;
    }
    errno = 0;
    v = strtoul(p, &end, 10);
    if (!g_ascii_isdigit(*p) || *end != '\0' || errno || v > 65535) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "invalid address '%s': port '%s' is not a number in "
                    "0..65535",
                    s, p);
        return false;
    }
    *port = v;
    return true;
}

/* "[v6]:port": the bracketed part is the host. */
static bool parse_bracketed(const char *s, char **host, uint16_t *port,
                            GError **err)
{
    const char *close = strchr(s, ']');

    if (!close || close == s + 1) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "invalid address '%s': expected [IPv6 address]:port", s);
        return false;
    }
    if (close[1] != ':') {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "invalid address '%s': expected ':port' after ']'", s);
        return false;
    }
    if (!parse_port(s, close + 2, port, err)) {
        return false;
    }
    *host = g_strndup(s + 1, close - s - 1);
    return true;
}

bool address_parse(const char *s, char **host, uint16_t *port, GError **err)
{
    const char *colon;

    *host = NULL;
    if (s[0] == '[') {
        return parse_bracketed(s, host, port, err);
    }
    colon = strrchr(s, ':');
    if (!colon) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "invalid address '%s': expected host:port", s);
        return false;
    }
    if (memchr(s, ':', colon - s)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "invalid address '%s': put an IPv6 address in brackets, "
                    "as in [::1]:4000",
                    s);
        return false;
    }
    if (!parse_port(s, colon + 1, port, err)) {
        return false;
    }
    if (colon > s && !(colon == s + 1 && s[0] == '*')) {
        *host = g_strndup(s, colon - s);
    }
    return true;
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
