/*
 * test_json_depth.c - json_depth_check() against json-glib itself: what
 * it accepts never nests deeper than JSON_DEPTH_MAX once parsed, brackets
 * inside strings and comments do not count, and the \u escapes json-glib
 * would read past a closing quote are refused.
 */
#include <string.h>
#include <gio/gio.h>

#include "json_depth.h"

/* MAX() would walk each child twice: 2^depth calls. */
static unsigned deeper(unsigned deepest, JsonNode *child);

static unsigned node_depth(JsonNode *n)
{
    unsigned deepest = 0;

    if (JSON_NODE_HOLDS_ARRAY(n)) {
        JsonArray *a = json_node_get_array(n);

        for (guint i = 0; i < json_array_get_length(a); i++) {
            deepest = deeper(deepest, json_array_get_element(a, i));
        }
        return deepest + 1;
    }
    if (JSON_NODE_HOLDS_OBJECT(n)) {
        g_autoptr(GList) members =
            json_object_get_values(json_node_get_object(n));

        for (GList *l = members; l; l = l->next) {
            deepest = deeper(deepest, l->data);
        }
        return deepest + 1;
    }
    return 0;
}

static unsigned deeper(unsigned deepest, JsonNode *child)
{
    unsigned d = node_depth(child);

    return d > deepest ? d : deepest;
}

/* @n copies of @s. */
static char *repeat(const char *s, unsigned n)
{
    GString *out = g_string_new(NULL);

    for (unsigned i = 0; i < n; i++) {
        g_string_append(out, s);
    }
    return g_string_free(out, FALSE);
}

static char *nested(unsigned n, const char *inner)
{
    g_autofree char *open = repeat("[", n);
    g_autofree char *close = repeat("]", n);

    return g_strconcat(open, inner, close, NULL);
}

/* @tmpl with every '@' replaced by @with. */
static char *fill(const char *tmpl, const char *with)
{
    g_auto(GStrv) parts = g_strsplit(tmpl, "@", -1);

    return g_strjoinv(with, parts);
}

/* Checked, then parsed: an accepted text is never deeper than the bound. */
static bool check(const char *text, gssize len)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonParser) p = json_parser_new_immutable();
    bool ok = json_depth_check(text, len, &err);

    if (!ok) {
        g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
        g_assert_null(strchr(err->message, '\n'));
        g_test_message("refused: %s", err->message);
        return false;
    }
    if (json_parser_load_from_data(p, text, len, NULL) &&
        json_parser_get_root(p)) {
        g_assert_cmpuint(node_depth(json_parser_get_root(p)), <=,
                         JSON_DEPTH_MAX);
    }
    return true;
}

static void test_bound(void)
{
    g_autofree char *at = nested(JSON_DEPTH_MAX, "1");
    g_autofree char *over = nested(JSON_DEPTH_MAX + 1, "1");
    g_autofree char *deep = repeat("[", 100000);
    g_autofree char *objects = repeat("{\"a\":", JSON_DEPTH_MAX + 1);
    g_autofree char *flat = repeat("[1],", 100000);
    g_autofree char *flat_array = g_strconcat("[", flat, "[]]", NULL);
    g_autoptr(GError) err = NULL;

    g_assert_true(check(at, -1));
    g_assert_false(check(over, -1));
    g_assert_false(check(deep, -1));
    g_assert_false(check(objects, -1));
    g_assert_true(check(flat_array, -1));
    /* Only @len bytes count. */
    g_assert_true(check(over, JSON_DEPTH_MAX));
    g_assert_false(json_depth_check(over, -1, &err));
    g_assert_nonnull(strstr(err->message, "nested deeper than 64"));
}

/* Brackets json-glib reads as part of a string or a comment. */
static void test_not_counted(void)
{
    static const char *const inner[] = {
        "\"@\"",           /* a string */
        "'@'",             /* json-glib's single-quoted string */
        "/ @ / 1",         /* its comment, from '/' to '/' */
        "/* @ */ 1",       /* which makes C comments comments too */
        "\"\\\" @\"",      /* an escaped quote does not end a string */
        "\"\\\\\", \"@\"", /* an escaped backslash does not escape */
        "\"\\ud83d\\ude00 @\"",
        "\"\\u00e9 @\"",
    };
    g_autofree char *brackets = repeat("[{", 1000);

    for (size_t i = 0; i < G_N_ELEMENTS(inner); i++) {
        g_autofree char *text = fill(inner[i], brackets);
        g_autofree char *doc = g_strdup_printf("[%s]", text);

        g_test_message("%.60s", doc);
        g_assert_true(check(doc, -1));
    }
}

/*
 * Escapes after which json-glib reads on past the closing quote: the
 * brackets after them would count for the parser but not for a scanner
 * that ended the string there.
 */
static void test_refused(void)
{
    static const char *const bad[] = {
        "[\"\\u12\", \"@\"]",       "[\"\\u00zz\", \"@\"]",
        "[\"\\ud800\", \"@\"]",     "[\"\\ud800x\", \"@\"]",
        "[\"\\ud800\\n\", \"@\"]",  "[\"\\udc00\\u12\", \"@\"]",
        "[\"\\ud800\\u\"], \"@\"]",
    };
    g_autofree char *deep = repeat("[", 1000);

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *doc = fill(bad[i], deep);

        g_test_message("%.40s", doc);
        g_assert_false(check(doc, -1));
    }
    /* Where json-glib's scanner stops: a NUL inside the length. */
    g_assert_false(check("[1]\0[2]", 7));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/json-depth/bound", test_bound);
    g_test_add_func("/json-depth/not-counted", test_not_counted);
    g_test_add_func("/json-depth/refused", test_refused);
    return g_test_run();
}
