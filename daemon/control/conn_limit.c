/* conn_limit.c - see conn_limit.h. */
#include "conn_limit.h"

#include <string.h>
#include <gio/gio.h>

void conn_limit_init(struct conn_limit *l, unsigned max_per_source,
                     unsigned max_total)
{
    g_mutex_init(&l->lock);
    l->per_source =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    l->total = 0;
    l->max_per_source = max_per_source;
    l->max_total = max_total;
}

void conn_limit_clear(struct conn_limit *l)
{
    g_clear_pointer(&l->per_source, g_hash_table_unref);
    g_mutex_clear(&l->lock);
}

bool conn_limit_enter(struct conn_limit *l, const char *source, GError **err)
{
    unsigned n;
    bool room;

    g_mutex_lock(&l->lock);
    n = GPOINTER_TO_UINT(g_hash_table_lookup(l->per_source, source));
    room = l->total < l->max_total && n < l->max_per_source;
    if (room) {
        g_hash_table_replace(l->per_source, g_strdup(source),
                             GUINT_TO_POINTER(n + 1));
        l->total++;
    } else if (l->total >= l->max_total) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES,
                    "too many connections in their handshake (%u)",
                    l->max_total);
    } else {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES,
                    "too many connections from %s in their handshake (%u)",
                    source, l->max_per_source);
    }
    g_mutex_unlock(&l->lock);
    return room;
}

void conn_limit_leave(struct conn_limit *l, const char *source)
{
    unsigned n;

    g_mutex_lock(&l->lock);
    n = GPOINTER_TO_UINT(g_hash_table_lookup(l->per_source, source));
    if (n > 1) {
        g_hash_table_replace(l->per_source, g_strdup(source),
                             GUINT_TO_POINTER(n - 1));
    } else {
        g_hash_table_remove(l->per_source, source);
    }
    if (n > 0 && l->total > 0) {
        l->total--;
    }
    g_mutex_unlock(&l->lock);
    g_warn_if_fail(n > 0);
}

char *conn_limit_source(const char *peer)
{
    const char *colon = strrchr(peer, ':');

    /* Not "HOST:PORT" ("(unknown peer: ...)"): the whole is the key. */
    if (!colon || !colon[1] ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
        return g_strdup(peer);
    }
    return g_strndup(peer, colon - peer);
}
