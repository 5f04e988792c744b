/*
 * errno_error.h - a failed system call as a GError: "<what>: <strerror>",
 * in G_IO_ERROR with the code that matches the errno.
 *
 * Contract: always returns false, so a caller can `return errno_error(...)`;
 * pass errno in @e before anything else can change it.
 */
#ifndef POSTCOPYD_ERRNO_ERROR_H
#define POSTCOPYD_ERRNO_ERROR_H

#include <stdbool.h>
#include <glib.h>

bool errno_error(GError **err, int e, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

#endif /* POSTCOPYD_ERRNO_ERROR_H */
