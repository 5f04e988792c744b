/* jsonq.c - see jsonq.h. */
#include "jsonq.h"

#include <math.h>

JsonNode *jsonq_get(JsonNode *root, const char *path)
{
    g_auto(GStrv) names = g_strsplit(path, ".", -1);
    JsonNode *n = root;

    for (size_t i = 0; n && names[i]; i++) {
        if (!JSON_NODE_HOLDS_OBJECT(n)) {
            return NULL;
        }
        n = json_object_get_member(json_node_get_object(n), names[i]);
    }
    return n;
}

static GType value_type(JsonNode *n)
{
    return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n)
                                         : G_TYPE_INVALID;
}

bool jsonq_double(JsonNode *root, const char *path, double *out)
{
    JsonNode *n = jsonq_get(root, path);

    switch (value_type(n)) {
    case G_TYPE_INT64:
        *out = json_node_get_int(n);
        return true;
    case G_TYPE_DOUBLE:
        *out = json_node_get_double(n);
        return isfinite(*out);
    default:
        return false;
    }
}

bool jsonq_int(JsonNode *root, const char *path, gint64 *out)
{
    double d;

    if (value_type(jsonq_get(root, path)) == G_TYPE_INT64) {
        *out = json_node_get_int(jsonq_get(root, path));
        return true;
    }
    if (!jsonq_double(root, path, &d) || d > 9e18 || d < -9e18) {
        return false;
    }
    *out = (gint64)d;
    return true;
}

const char *jsonq_string(JsonNode *root, const char *path)
{
    JsonNode *n = jsonq_get(root, path);

    return value_type(n) == G_TYPE_STRING ? json_node_get_string(n) : NULL;
}

JsonArray *jsonq_array(JsonNode *root, const char *path)
{
    JsonNode *n = jsonq_get(root, path);

    return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

bool jsonq_bool(JsonNode *root, const char *path)
{
    JsonNode *n = jsonq_get(root, path);

    return value_type(n) == G_TYPE_BOOLEAN && json_node_get_boolean(n);
}
