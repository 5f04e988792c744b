/* cpu_list.c - see cpu_list.h. */
#include "cpu_list.h"

#include <errno.h>
#include <stdlib.h>
#include <gio/gio.h>

#define NUMBER_EXPECTED "expected a CPU number below " G_STRINGIFY(CPU_SETSIZE)

static bool bad(GError **err, const char *s, const char *why)
{
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "'%s' is not a CPU list (%s; e.g. \"0\", \"2-3\", \"0,4-7\")",
                s, why);
    return false;
}

/* One decimal CPU number at *p, advancing *p past it. */
static bool parse_cpu(const char **p, long *cpu)
{
    char *end;

    if (!g_ascii_isdigit(**p)) {
        return false;
    }
    errno = 0;
    *cpu = strtol(*p, &end, 10);
    *p = end;
    return errno == 0 && *cpu < CPU_SETSIZE;
}

bool cpu_list_parse(const char *s, cpu_set_t *set, GError **err)
{
    const char *p = s;

    CPU_ZERO(set);
    for (;;) {
        long lo, hi;

        if (!parse_cpu(&p, &lo)) {
            return bad(err, s, NUMBER_EXPECTED);
        }
        hi = lo;
        if (*p == '-') {
            p++;
            if (!parse_cpu(&p, &hi)) {
                return bad(err, s, NUMBER_EXPECTED);
            }
            if (hi < lo) {
                return bad(err, s, "a range is LOW-HIGH, LOW <= HIGH");
            }
        }
        for (long c = lo; c <= hi; c++) {
            CPU_SET(c, set);
        }
        if (!*p) {
            return true;
        }
        if (*p++ != ',') {
            return bad(err, s, "CPUs and ranges are separated by commas");
        }
    }
}

char *cpu_list_format(const cpu_set_t *set)
{
    GString *out = g_string_new(NULL);

    for (int c = 0; c < CPU_SETSIZE; c++) {
        int hi = c;

        if (!CPU_ISSET(c, set)) {
            continue;
        }
        while (hi + 1 < CPU_SETSIZE && CPU_ISSET(hi + 1, set)) {
            hi++;
        }
        g_string_append_printf(out, out->len ? ",%d" : "%d", c);
        if (hi > c) {
            g_string_append_printf(out, "-%d", hi);
        }
        c = hi;
    }
    return g_string_free(out, false);
}
