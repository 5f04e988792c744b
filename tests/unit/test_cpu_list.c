/*
 * test_cpu_list.c - CPU lists as the kernel writes them: what is parsed
 * into which CPUs, what is refused (one line naming the input), and the
 * set written back in the same form.
 */
#include <string.h>
#include <gio/gio.h>

#include "cpu_list.h"

static void test_parse(void)
{
    static const struct {
        const char *in;
        const char *formatted; /* NULL: must fail */
        int count;
    } cases[] = {
        {"0", "0", 1},         {"1", "1", 1},
        {"0-3", "0-3", 4},     {"3,1,2", "1-3", 3},
        {"0,4-7", "0,4-7", 5}, {"2-2", "2", 1},
        {"0-1,1-2", "0-2", 3}, {"1023", "1023", 1},
        {"", NULL, 0},         {"x", NULL, 0},
        {"-1", NULL, 0},       {"1-0", NULL, 0},
        {"0,", NULL, 0},       {",0", NULL, 0},
        {"0,,1", NULL, 0},     {"0 1", NULL, 0},
        {" 0", NULL, 0},       {"0-", NULL, 0},
        {"+1", NULL, 0},       {"1024", NULL, 0},
        {"0-1024", NULL, 0},   {"99999999999999999999", NULL, 0},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        g_autofree char *back = NULL;
        cpu_set_t set;
        bool ok = cpu_list_parse(cases[i].in, &set, &err);

        g_test_message("'%s': %s", cases[i].in, ok ? "ok" : err->message);
        if (!cases[i].formatted) {
            g_assert_false(ok);
            g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
            g_assert_nonnull(strstr(err->message, cases[i].in));
            g_assert_null(strchr(err->message, '\n'));
            continue;
        }
        g_assert_no_error(err);
        g_assert_true(ok);
        g_assert_cmpint(CPU_COUNT(&set), ==, cases[i].count);
        back = cpu_list_format(&set);
        g_assert_cmpstr(back, ==, cases[i].formatted);
    }
}

static void test_format_empty(void)
{
    g_autofree char *s = NULL;
    cpu_set_t set;

    CPU_ZERO(&set);
    s = cpu_list_format(&set);
    g_assert_cmpstr(s, ==, "");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cpu-list/parse", test_parse);
    g_test_add_func("/cpu-list/format-empty", test_format_empty);
    return g_test_run();
}
