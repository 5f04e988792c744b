/*
 * test_hostport.c - HOST:PORT parsing and formatting: IPv4, names,
 * bracketed IPv6, default ports, and what is refused.
 */
#include <string.h>
#include <gio/gio.h>

#include "hostport.h"

static void test_hostport(void)
{
    static const struct {
        const char *in;
        uint16_t dflt;
        const char *host; /* NULL: must fail */
        uint16_t port;
        const char *formatted;
    } cases[] = {
        {"0.0.0.0:4444", 0, "0.0.0.0", 4444, "0.0.0.0:4444"},
        {"[::]:4444", 0, "::", 4444, "[::]:4444"},
        {"[fe80::1]", 4444, "fe80::1", 4444, "[fe80::1]:4444"},
        {"dst.example.org", 4444, "dst.example.org", 4444,
         "dst.example.org:4444"},
        {"h:1", 4444, "h", 1, "h:1"},
        {"h:65535", 0, "h", 65535, "h:65535"},
        {"h", 0, NULL, 0, NULL},
        {"h:65536", 0, NULL, 0, NULL},
        {"h:+1", 0, NULL, 0, NULL},
        {":4444", 0, NULL, 0, NULL},
        {"", 4444, NULL, 0, NULL},
        {"a b:1", 0, NULL, 0, NULL},
        {"[::1]x", 4444, NULL, 0, NULL},
        {"[::1:4444", 0, NULL, 0, NULL},
        {"::1", 4444, NULL, 0, NULL},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        g_autofree char *host = NULL;
        g_autofree char *text = NULL;
        uint16_t port = 0;
        bool ok =
            hostport_parse(cases[i].in, cases[i].dflt, 0, &host, &port, &err);

        g_test_message("%s -> %s", cases[i].in, ok ? host : err->message);
        g_assert_cmpint(ok, ==, cases[i].host != NULL);
        if (!ok) {
            g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
            continue;
        }
        g_assert_cmpstr(host, ==, cases[i].host);
        g_assert_cmpint(port, ==, cases[i].port);
        text = hostport_format(host, port);
        g_assert_cmpstr(text, ==, cases[i].formatted);
    }
}

/* What the transports' flags allow (address.h's cases are test_tcp's). */
static void test_flags(void)
{
    const unsigned listen = HOSTPORT_ANY_HOST | HOSTPORT_PORT_ZERO;
    static const char *const any[] = {":4000", "*:4000"};
    g_autoptr(GError) err = NULL;
    char *host = (char *)"unset";
    uint16_t port = 1;

    for (size_t i = 0; i < G_N_ELEMENTS(any); i++) {
        g_assert_false(hostport_parse(any[i], 0, 0, &host, &port, &err));
        g_assert_null(host);
        g_clear_error(&err);
        g_assert_true(hostport_parse(any[i], 0, listen, &host, &port, &err));
        g_assert_no_error(err);
        g_assert_null(host);
        g_assert_cmpint(port, ==, 4000);
    }
    g_assert_false(hostport_parse("h:0", 0, 0, NULL, &port, &err));
    g_assert_nonnull(strstr(err->message, "from 1 to 65535"));
    g_clear_error(&err);
    g_assert_true(hostport_parse("h:0", 0, listen, NULL, &port, &err));
    g_assert_cmpint(port, ==, 0);
    g_assert_true(
        hostport_parse("[fe80::1%eth0]:22", 0, 0, &host, &port, &err));
    g_assert_cmpstr(host, ==, "fe80::1%eth0");
    g_free(host);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/hostport/parse-format", test_hostport);
    g_test_add_func("/hostport/flags", test_flags);
    return g_test_run();
}
