/* json_depth.c - see json_depth.h. */
#include "json_depth.h"

#include <string.h>
#include <gio/gio.h>

static void refuse(GError **err, const char *why)
{
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s", why);
}

/* The value of four hex digits at @p, or -1. */
static int hex4(const char *p, const char *end)
{
    int v = 0;

    if (end - p < 4) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        int d = g_ascii_xdigit_value(p[i]);

        if (d < 0) {
            return -1;
        }
        v = v << 4 | d;
    }
    return v;
}

/*
 * Past the four hex digits of a \u escape at @p (after the 'u'), and the
 * second \u escape json-glib reads after a surrogate; NULL if they are
 * not there, since json-glib would then swallow whatever follows,
 * closing quote included.
 */
static const char *skip_unicode(const char *p, const char *end)
{
    int v = hex4(p, end);

    if (v < 0) {
        return NULL;
    }
    p += 4;
    if (v < 0xd800 || v > 0xdfff) {
        return p;
    }
    if (end - p < 2 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end) < 0) {
        return NULL;
    }
    return p + 6;
}

/* Past the closing '"' of the string whose body starts at @p; NULL: refuse. */
static const char *skip_dq_string(const char *p, const char *end)
{
    while (p < end && *p != '"') {
        if (*p != '\\') {
            p++;
            continue;
        }
        if (++p == end) {
            break;
        }
        p = *p == 'u' ? skip_unicode(p + 1, end) : p + 1;
        if (!p) {
            return NULL;
        }
    }
    return p < end ? p + 1 : end;
}

/* Past the next @c from @p, or @end: what json-glib skips as one token. */
static const char *skip_to(const char *p, const char *end, char c)
{
    const char *q = memchr(p, c, end - p);

    return q ? q + 1 : end;
}

bool json_depth_check(const char *text, gssize len, GError **err)
{
    const char *end = text + (len < 0 ? strlen(text) : (size_t)len);
    unsigned depth = 0;

    if (memchr(text, '\0', end - text)) {
        refuse(err, "JSON text holds a NUL byte");
        return false;
    }
    for (const char *p = text; p < end;) {
        switch (*p++) {
        case '"':
            p = skip_dq_string(p, end);
            if (!p) {
                refuse(err, "JSON string with a malformed \\u escape");
                return false;
            }
            break;
        case '\'':
            p = skip_to(p, end, '\'');
            break;
        case '/': /* json-glib's comments run from one '/' to the next */
            p = skip_to(p, end, '/');
            break;
        case '[':
        case '{':
            if (++depth > JSON_DEPTH_MAX) {
                g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "JSON nested deeper than %d levels",
                            JSON_DEPTH_MAX);
                return false;
            }
            break;
        case ']':
        case '}':
            /* One too many: the parser stops there anyway. */
            depth -= depth > 0;
            break;
        }
    }
    return true;
}

bool json_load_bounded(JsonParser *parser, const char *text, gssize len,
                       GError **err)
{
    return json_depth_check(text, len, err) &&
           json_parser_load_from_data(parser, text, len, err);
}
