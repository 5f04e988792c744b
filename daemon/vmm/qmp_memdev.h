/*
 * qmp_memdev.h - QEMU's memory backends as query-memdev lists them, and
 * the rule postcopyd needs of them: every one shared, since the daemon
 * moves the RAM through the backend's file and QEMU's own stream
 * (x-ignore-shared) leaves it out.
 */
#ifndef POSTCOPYD_QMP_MEMDEV_H
#define POSTCOPYD_QMP_MEMDEV_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-glib/json-glib.h>

/* One of QEMU's memory backends (query-memdev). */
struct qmp_memdev {
    char *id;
    uint64_t size;
    bool share;
};

void qmp_memdev_free(struct qmp_memdev *m);

/*
 * query-memdev's reply @ret as a GPtrArray of struct qmp_memdev; refuses
 * no backend or one that is not shared, the error ending with @hint (how
 * to make the RAM shared).
 */
GPtrArray *qmp_memdevs_from_reply(JsonNode *ret, const char *hint,
                                  GError **err);

#endif /* POSTCOPYD_QMP_MEMDEV_H */
