/*
 * attach_priv.h - what attach.c, attach_firecracker.c and attach_fds.c
 * share: the attach wording of a bad-input error and of a bad region.
 */
#ifndef POSTCOPYD_ATTACH_PRIV_H
#define POSTCOPYD_ATTACH_PRIV_H

#include <stdbool.h>
#include <glib.h>

#include "region.h"

/* A G_IO_ERROR_INVALID_DATA: what the VMM sent is wrong. */
void attach_fail(GError **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/*
 * region_table_add() with the attach wording: the VMM sent the region, so
 * a bad one is bad input on the socket.
 */
bool attach_add_region(struct region_table *t, const struct region *r,
                       const char *prefix, GError **err);

#endif /* POSTCOPYD_ATTACH_PRIV_H */
