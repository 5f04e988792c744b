/* errno_error.c - see errno_error.h. */
#include "errno_error.h"

#include <gio/gio.h>

bool errno_error(GError **err, int e, const char *fmt, ...)
{
    g_autofree char *what = NULL;
    va_list ap;

    va_start(ap, fmt);
    what = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e), "%s: %s", what,
                g_strerror(e));
    return false;
}
