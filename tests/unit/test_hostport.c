/*
 * test_hostport.c - HOST:PORT parsing and formatting: IPv4, names,
 * bracketed IPv6, default ports, and what is refused.
 */
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
            hostport_parse(cases[i].in, cases[i].dflt, &host, &port, &err);

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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/hostport/parse-format", test_hostport);
    return g_test_run();
}
