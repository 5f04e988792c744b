/* hostport.c - see hostport.h. */
#include "hostport.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <gio/gio.h>

static bool bad(GError **err, const char *s, const char *why)
{
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "invalid address '%s': %s", s, why);
    return false;
}

static bool parse_port(const char *s, const char *p, unsigned flags,
                       uint16_t *port, GError **err)
{
    unsigned long min = flags & HOSTPORT_PORT_ZERO ? 0 : 1;
    char *end;
    unsigned long v;

    if (*p == '\0') {
        return bad(err, s, "no port after ':'");
    }
    errno = 0;
    v = g_ascii_isdigit(*p) ? strtoul(p, &end, 10) : ULONG_MAX;
    if (v == ULONG_MAX || errno || *end || v < min || v > 65535) {
        return bad(err, s,
                   min ? "the port must be a number from 1 to 65535"
                       : "the port must be a number from 0 to 65535");
    }
    *port = v;
    return true;
}

/* Hostname or IPv4 literal: letters, digits, '-', '.', '_'. */
static bool valid_plain_host(const char *h, size_t len)
{
    if (len == 0 || len > 253) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!g_ascii_isalnum(h[i]) && !strchr("-._", h[i])) {
            return false;
        }
    }
    return true;
}

static bool parse_bracketed(const char *s, uint16_t default_port,
                            unsigned flags, char **host, uint16_t *port,
                            GError **err)
{
    const char *close = strchr(s, ']');
    g_autofree char *h = NULL;

    if (!close) {
        return bad(err, s, "missing ']' after the IPv6 address");
    }
    h = g_strndup(s + 1, close - s - 1);
    if (!strchr(h, ':') || !g_hostname_is_ip_address(h)) {
        return bad(err, s, "not an IPv6 address between the brackets");
    }
    if (close[1] == '\0' && default_port) {
        *port = default_port;
    } else if (close[1] != ':') {
        return bad(err, s, "expected ':PORT' after ']'");
    } else if (!parse_port(s, close + 2, flags, port, err)) {
        return false;
    }
    if (host) {
        *host = g_steal_pointer(&h);
    }
    return true;
}

/* "" or "*" before the colon: every address, if the caller allows it. */
static bool any_host(const char *s, size_t hlen, unsigned flags)
{
    return (flags & HOSTPORT_ANY_HOST) &&
           (hlen == 0 || (hlen == 1 && s[0] == '*'));
}

bool hostport_parse(const char *s, uint16_t default_port, unsigned flags,
                    char **host, uint16_t *port, GError **err)
{
    const char *colon;
    size_t hlen;
    bool any;

    if (host) {
        *host = NULL;
    }
    if (s[0] == '[') {
        return parse_bracketed(s, default_port, flags, host, port, err);
    }
    colon = strchr(s, ':');
    if (colon && strchr(colon + 1, ':')) {
        return bad(err, s, "write an IPv6 address in brackets, as [::1]:4444");
    }
    hlen = colon ? (size_t)(colon - s) : strlen(s);
    any = colon && any_host(s, hlen, flags);
    if (!any && !valid_plain_host(s, hlen)) {
        return bad(err, s, "expected HOST:PORT");
    }
    if (!colon && !default_port) {
        return bad(err, s, "missing ':PORT'");
    }
    if (!colon) {
        *port = default_port;
    } else if (!parse_port(s, colon + 1, flags, port, err)) {
        return false;
    }
    if (host && !any) {
        *host = g_strndup(s, hlen);
    }
    return true;
}

char *hostport_format(const char *host, uint16_t port)
{
    if (strchr(host, ':')) {
        return g_strdup_printf("[%s]:%u", host, port);
    }
    return g_strdup_printf("%s:%u", host, port);
}
