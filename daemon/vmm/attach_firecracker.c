/*
 * attach_firecracker.c - the attach handshake's second form (attach.h):
 * Firecracker's JSON region table, with the uffd as its only fd.
 */
#include "attach.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "attach_priv.h"
#include "json_depth.h"

static bool json_get_u64(JsonObject *o, guint i, const char *name, uint64_t *v,
                         GError **err)
{
    JsonNode *n = json_object_get_member(o, name);
    gint64 x;

    if (!n) {
        attach_fail(err, "attach: Firecracker region %u: missing \"%s\"", i,
                    name);
        return false;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_INT64) {
        attach_fail(err,
                    "attach: Firecracker region %u: \"%s\" is not an integer",
                    i, name);
        return false;
    }
    x = json_node_get_int(n);
    if (x < 0) {
        attach_fail(
            err,
            "attach: Firecracker region %u: \"%s\" is negative (%" PRId64 ")",
            i, name, (int64_t)x);
        return false;
    }
    *v = x;
    return true;
}

/* Older Firecracker sends page_size_kib instead of page_size. */
static bool fc_page_size(JsonObject *o, guint i, uint64_t *page_size,
                         GError **err)
{
    uint64_t kib;

    if (json_object_has_member(o, "page_size") ||
        !json_object_has_member(o, "page_size_kib")) {
        return json_get_u64(o, i, "page_size", page_size, err);
    }
    if (!json_get_u64(o, i, "page_size_kib", &kib, err)) {
        return false;
    }
    if (kib > UINT64_MAX / 1024) {
        attach_fail(
            err, "attach: Firecracker region %u: page_size_kib too large", i);
        return false;
    }
    *page_size = kib * 1024;
    return true;
}

static bool fc_region(JsonArray *a, guint i, struct region *r, GError **err)
{
    JsonNode *n = json_array_get_element(a, i);
    JsonObject *o;

    if (!JSON_NODE_HOLDS_OBJECT(n)) {
        attach_fail(err, "attach: Firecracker region %u is not an object", i);
        return false;
    }
    o = json_node_get_object(n);
    memset(r, 0, sizeof(*r));
    r->kind = BACKING_ANON;
    r->fd = -1;
    return json_get_u64(o, i, "base_host_virt_addr", &r->base, err) &&
           json_get_u64(o, i, "size", &r->size, err) &&
           json_get_u64(o, i, "offset", &r->offset, err) &&
           fc_page_size(o, i, &r->page_size, err);
}

static bool fc_regions(JsonNode *root, struct region_table *t, GError **err)
{
    JsonArray *a;
    guint n;

    if (!root || !JSON_NODE_HOLDS_ARRAY(root)) {
        attach_fail(err, "attach: Firecracker handshake is not a JSON array");
        return false;
    }
    a = json_node_get_array(root);
    n = json_array_get_length(a);
    if (n == 0 || n > REGION_MAX) {
        attach_fail(err, "attach: Firecracker handshake has %u regions (1..%d)",
                    n, REGION_MAX);
        return false;
    }
    for (guint i = 0; i < n; i++) {
        struct region r;

        if (!fc_region(a, i, &r, err)) {
            return false;
        }
        if (!attach_add_region(t, &r, "attach: Firecracker ", err)) {
            return false;
        }
    }
    return true;
}

static bool fc_not_array(GError **err)
{
    attach_fail(err, "attach: Firecracker handshake is not a JSON array, nor "
                     "{\"vm_name\": STRING, \"regions\": ARRAY}");
    return false;
}

/*
 * Our extension of Firecracker's form, so that it can carry a name:
 * {"vm_name": NAME, "regions": [the array]}.  @name is NULL without one.
 */
static bool fc_unwrap(JsonNode **root, const char **name, GError **err)
{
    static const char *const allowed[] = {"vm_name", "regions", NULL};
    g_autoptr(GList) members = NULL;
    JsonObject *o;
    JsonNode *n;

    *name = NULL;
    if (!*root || !JSON_NODE_HOLDS_OBJECT(*root)) {
        return true;
    }
    o = json_node_get_object(*root);
    members = json_object_get_members(o);
    for (GList *l = members; l; l = l->next) {
        if (!g_strv_contains(allowed, l->data)) {
            return fc_not_array(err);
        }
    }
    n = json_object_get_member(o, "vm_name");
    if (!n || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_STRING) {
        return fc_not_array(err);
    }
    *name = json_node_get_string(n);
    *root = json_object_get_member(o, "regions");
    return attach_name_valid(*name, err);
}

bool attach_parse_firecracker(const char *json, size_t len, const int *fds,
                              size_t nfds, struct attach_info *info,
                              GError **err)
{
    g_autoptr(JsonParser) parser = NULL;
    g_autoptr(GError) jerr = NULL;
    struct attach_info tmp;
    const char *name;
    JsonNode *root;

    if (len > ATTACH_JSON_MAX) {
        attach_fail(err, "attach: Firecracker JSON of %zu bytes exceeds %u",
                    len, ATTACH_JSON_MAX);
        return false;
    }
    if (nfds != 1 || fds[0] < 0) {
        attach_fail(
            err,
            "attach: Firecracker handshake must carry exactly one fd (the "
            "uffd), got %zu",
            nfds);
        return false;
    }
    parser = json_parser_new_immutable();
    if (!json_load_bounded(parser, json, len, &jerr)) {
        attach_fail(err, "attach: malformed Firecracker JSON: %s",
                    jerr->message);
        return false;
    }
    root = json_parser_get_root(parser);
    if (!fc_unwrap(&root, &name, err)) {
        return false;
    }
    attach_info_init(&tmp);
    if (!fc_regions(root, &tmp.regions, err)) {
        return false;
    }
    /* Without one, attach_recv() names it after its pid. */
    g_strlcpy(tmp.vm_name, name ? name : "", sizeof(tmp.vm_name));
    tmp.firecracker = true;
    tmp.uffd_features = ATTACH_UFFD_FEATURES_UNKNOWN;
    tmp.uffd = fds[0];
    *info = tmp;
    return true;
}
