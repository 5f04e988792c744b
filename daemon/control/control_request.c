/* control_request.c - see control_request.h. */
#include "control_request.h"

#include <math.h>
#include <string.h>

#include "json_depth.h"

static char *node_to_line(JsonNode *node)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;

    json_generator_set_root(gen, node);
    text = json_generator_to_data(gen, NULL);
    return g_strconcat(text, "\n", NULL);
}

char *control_json_line(JsonObject *obj)
{
    g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), obj);

    return node_to_line(node);
}

JsonObject *control_error_reply(const GError *e)
{
    JsonObject *reply = json_object_new();
    JsonObject *error = json_object_new();

    json_object_set_string_member(error, "class", control_error_class(e));
    json_object_set_string_member(error, "desc", e->message);
    json_object_set_object_member(reply, "error", error);
    return reply;
}

static const struct control_command *
find_command(const struct control_command *table, const char *name)
{
    for (; table->name; table++) {
        if (!strcmp(table->name, name)) {
            return table;
        }
    }
    return NULL;
}

static bool check_members(JsonObject *req, GError **err)
{
    static const char *const allowed[] = {"execute", "arguments", "id", NULL};
    g_autoptr(GList) names = json_object_get_members(req);
    JsonNode *exec = json_object_get_member(req, "execute");
    JsonNode *args = json_object_get_member(req, "arguments");

    for (GList *l = names; l; l = l->next) {
        if (!g_strv_contains(allowed, l->data)) {
            g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                        "unexpected member '%s' in the request",
                        (char *)l->data);
            return false;
        }
    }
    if (!exec) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "the request has no 'execute' member");
        return false;
    }
    if (!JSON_NODE_HOLDS_VALUE(exec) ||
        json_node_get_value_type(exec) != G_TYPE_STRING) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "'execute' must be a string");
        return false;
    }
    if (args && !JSON_NODE_HOLDS_OBJECT(args)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "'arguments' must be an object");
        return false;
    }
    return true;
}

/*
 * QMP's negotiation, for QMP tooling: the greeting offers no
 * capabilities, so enabling any is an error, as QEMU answers it.
 * Negotiating is optional: commands work before it, as they always did.
 */
static JsonNode *qmp_capabilities(const struct control_command *table,
                                  JsonObject *args, GError **err)
{
    JsonNode *enable = json_object_get_member(args, "enable");
    JsonArray *a;

    if (!enable) {
        return NULL;
    }
    if (!JSON_NODE_HOLDS_ARRAY(enable)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "'enable' must be an array of capability names");
        return NULL;
    }
    a = json_node_get_array(enable);
    if (json_array_get_length(a)) {
        JsonNode *first = json_array_get_element(a, 0);
        const char *name =
            JSON_NODE_HOLDS_VALUE(first) &&
                    json_node_get_value_type(first) == G_TYPE_STRING
                ? json_node_get_string(first)
                : "?";

        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "Capability '%s' not available", name);
    }
    return NULL;
}

static const char *const builtin_names[] = {"qmp_capabilities",
                                            "query-commands", NULL};

/* [{"name": N}, ...]: the built-ins and every command of @table. */
static JsonNode *query_commands(const struct control_command *table,
                                JsonObject *args, GError **err)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_array(b);
    for (const char *const *n = builtin_names; *n; n++) {
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, *n);
        json_builder_end_object(b);
    }
    for (; table->name; table++) {
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, table->name);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    return json_builder_get_root(b);
}

/* The protocol's own commands, before any of the table's. */
static JsonNode *run_builtin(const struct control_command *table,
                             const char *name, JsonObject *args, bool *found,
                             GError **err)
{
    *found = true;
    if (!strcmp(name, builtin_names[0])) {
        return qmp_capabilities(table, args, err);
    }
    if (!strcmp(name, builtin_names[1])) {
        return query_commands(table, args, err);
    }
    *found = false;
    return NULL;
}

static JsonNode *run_command(const struct control_command *table, void *opaque,
                             JsonObject *req, GError **err)
{
    const char *name = json_object_get_string_member(req, "execute");
    const struct control_command *cmd = find_command(table, name);
    JsonNode *args = json_object_get_member(req, "arguments");
    g_autoptr(JsonObject) empty = json_object_new();
    JsonObject *a = args ? json_node_get_object(args) : empty;
    GError *local = NULL;
    JsonNode *ret;
    bool builtin;

    ret = run_builtin(table, name, a, &builtin, &local);
    if (!builtin && !cmd) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_COMMAND_NOT_FOUND,
                    "the command '%s' was not found", name);
        return NULL;
    }
    if (!builtin) {
        ret = cmd->fn(opaque, a, &local);
    }
    if (local) {
        g_clear_pointer(&ret, json_node_unref);
        g_propagate_error(err, local);
        return NULL;
    }
    return ret ? ret : json_node_init_object(json_node_alloc(), empty);
}

static bool node_is_utf8(JsonNode *node);

static bool object_is_utf8(JsonObject *o)
{
    g_autoptr(GList) names = json_object_get_members(o);

    for (GList *l = names; l; l = l->next) {
        if (!g_utf8_validate(l->data, -1, NULL) ||
            !node_is_utf8(json_object_get_member(o, l->data))) {
            return false;
        }
    }
    return true;
}

/*
 * json-glib 1.6 writes a double as g_ascii_dtostr() with ".0" added where
 * that has no '.': 2e53 would come back as "2e+53.0", which is not JSON
 * (found by fuzz_control); infinity has no JSON form at all.
 */
static bool double_writes_back(double d)
{
    char buf[G_ASCII_DTOSTR_BUF_SIZE];

    if (!isfinite(d)) {
        return false;
    }
    g_ascii_dtostr(buf, sizeof(buf), d);
    return strchr(buf, '.') || !strpbrk(buf, "eE");
}

/*
 * Every string and member name in @node is valid UTF-8 and every number
 * one json-glib writes back as JSON: what the reply may echo must be
 * valid JSON again.
 */
static bool node_is_utf8(JsonNode *node)
{
    JsonArray *a;

    switch (JSON_NODE_TYPE(node)) {
    case JSON_NODE_OBJECT:
        return object_is_utf8(json_node_get_object(node));
    case JSON_NODE_ARRAY:
        a = json_node_get_array(node);
        for (guint i = 0; i < json_array_get_length(a); i++) {
            if (!node_is_utf8(json_array_get_element(a, i))) {
                return false;
            }
        }
        return true;
    case JSON_NODE_VALUE:
        /* 1e400 parses to infinity; 2e53 is written back wrong. */
        if (json_node_get_value_type(node) == G_TYPE_DOUBLE) {
            return double_writes_back(json_node_get_double(node));
        }
        return json_node_get_value_type(node) != G_TYPE_STRING ||
               g_utf8_validate(json_node_get_string(node), -1, NULL);
    default:
        return true;
    }
}

static JsonNode *parse_request(const char *line, size_t len, GError **err)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) local = NULL;
    JsonNode *root;

    if (memchr(line, '\0', len)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "the request contains a NUL byte");
        return NULL;
    }
    if (!g_utf8_validate(line, len, NULL)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "the request is not valid UTF-8");
        return NULL;
    }
    if (!json_load_bounded(parser, line, len, &local)) {
        /* json-glib quotes the bad token: it may be invalid UTF-8. */
        g_autofree char *why = g_utf8_make_valid(local->message, -1);

        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "the request is not valid JSON: %s", why);
        return NULL;
    }
    root = json_parser_get_root(parser);
    /* A line holding only a comment parses to no root at all. */
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "the request is not a JSON object");
        return NULL;
    }
    /*
     * \ud83d alone is valid JSON that json-glib decodes into bytes that
     * are not UTF-8; such strings would be echoed back in replies.
     */
    if (!node_is_utf8(root)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "the request has a string that is not valid UTF-8 "
                    "(a lone surrogate escape?) or a number out of range");
        return NULL;
    }
    return json_node_ref(root);
}

/* The reply to one request line. */
JsonObject *control_request_handle(const struct control_command *table,
                                   void *opaque, const char *line, size_t len)
{
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(GError) err = NULL;
    JsonObject *req, *reply;
    JsonNode *ret = NULL, *id;

    root = parse_request(line, len, &err);
    if (!root) {
        return control_error_reply(err);
    }
    req = json_node_get_object(root);
    if (check_members(req, &err)) {
        ret = run_command(table, opaque, req, &err);
    }
    if (ret) {
        reply = json_object_new();
        json_object_set_member(reply, "return", ret);
    } else {
        reply = control_error_reply(err);
    }
    id = json_object_get_member(req, "id");
    if (id) {
        json_object_set_member(reply, "id", json_node_copy(id));
    }
    return reply;
}
