/*
 * test_conn_limit.c - the bound on peer connections in their handshake:
 * per source address, in all, slots given back, sources told apart.
 */
#include <gio/gio.h>

#include "conn_limit.h"

static void test_source(void)
{
    static const char *const cases[][2] = {
        {"10.0.0.2:4000", "10.0.0.2"},
        {"[::1]:4000", "[::1]"},
        {"[fe80::1%eth0]:1", "[fe80::1%eth0]"},
        {"(unknown peer: Bad file descriptor)",
         "(unknown peer: Bad file descriptor)"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *s = conn_limit_source(cases[i][0]);

        g_assert_cmpstr(s, ==, cases[i][1]);
    }
}

static void test_limits(void)
{
    struct conn_limit l;
    g_autoptr(GError) err = NULL;

    conn_limit_init(&l, 2, 3);
    g_assert_true(conn_limit_enter(&l, "a", NULL));
    g_assert_true(conn_limit_enter(&l, "a", NULL));
    g_assert_false(conn_limit_enter(&l, "a", &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES);
    g_assert_cmpstr(err->message, ==,
                    "too many connections from a in their handshake (2)");
    g_clear_error(&err);
    g_assert_true(conn_limit_enter(&l, "b", NULL));
    g_assert_false(conn_limit_enter(&l, "c", &err));
    g_assert_cmpstr(err->message, ==,
                    "too many connections in their handshake (3)");
    g_clear_error(&err);
    /* Slots come back. */
    conn_limit_leave(&l, "a");
    g_assert_true(conn_limit_enter(&l, "c", NULL));
    conn_limit_leave(&l, "b");
    g_assert_true(conn_limit_enter(&l, "a", NULL));
    conn_limit_leave(&l, "a");
    conn_limit_leave(&l, "a");
    conn_limit_leave(&l, "c");
    g_assert_cmpuint(l.total, ==, 0);
    g_assert_cmpuint(g_hash_table_size(l.per_source), ==, 0);
    conn_limit_clear(&l);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/conn-limit/source", test_source);
    g_test_add_func("/conn-limit/limits", test_limits);
    return g_test_run();
}
