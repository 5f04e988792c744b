/* qmp_memdev.c - see qmp_memdev.h. */
#include "qmp_memdev.h"

#include <string.h>

#include "qmp.h"

void qmp_memdev_free(struct qmp_memdev *m)
{
    if (m) {
        g_free(m->id);
        g_free(m);
    }
}

static struct qmp_memdev *memdev_from(JsonNode *n, GError **err)
{
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
    JsonNode *size = o ? json_object_get_member(o, "size") : NULL;
    JsonNode *share = o ? json_object_get_member(o, "share") : NULL;
    const char *id = qmp_member_string(o, "id");
    struct qmp_memdev *m;

    if (!id || !size || !share || !JSON_NODE_HOLDS_VALUE(size) ||
        json_node_get_value_type(size) != G_TYPE_INT64 ||
        !JSON_NODE_HOLDS_VALUE(share) ||
        json_node_get_value_type(share) != G_TYPE_BOOLEAN) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "query-memdev: a backend without id, size or share");
        return NULL;
    }
    m = g_new0(struct qmp_memdev, 1);
    m->id = g_strdup(id);
    m->size = (uint64_t)json_node_get_int(size);
    m->share = json_node_get_boolean(share);
    return m;
}

/*
 * QEMU 7.2 turns a plain -m into a private backend named "pc.ram", so
 * it is refused here like any backend without share=on.
 */
static bool memdev_usable(const struct qmp_memdev *m, const char *hint,
                          GError **err)
{
    if (m->share) {
        return true;
    }
    g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                "memory backend %s is not shared (%s): %s", m->id,
                strcmp(m->id, "pc.ram") == 0 ? "plain -m" : "share=off", hint);
    return false;
}

GPtrArray *qmp_memdevs_from_reply(JsonNode *ret, const char *hint, GError **err)
{
    g_autoptr(GPtrArray) list =
        g_ptr_array_new_with_free_func((GDestroyNotify)qmp_memdev_free);
    JsonArray *a =
        ret && JSON_NODE_HOLDS_ARRAY(ret) ? json_node_get_array(ret) : NULL;

    if (!a || json_array_get_length(a) == 0) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "QEMU has no memory backend: %s", hint);
        return NULL;
    }
    for (guint i = 0; i < json_array_get_length(a); i++) {
        struct qmp_memdev *m = memdev_from(json_array_get_element(a, i), err);

        if (!m) {
            return NULL;
        }
        g_ptr_array_add(list, m);
        if (!memdev_usable(m, hint, err)) {
            return NULL;
        }
    }
    return g_steal_pointer(&list);
}
