/*
 * control_error.h - the error classes of the control socket protocol.
 *
 * A command handler fails with a GError; the reply carries
 * {"error": {"class": CLASS, "desc": MESSAGE}}.  CONTROL_ERROR codes map
 * one to one to the QMP-style class names below; an error from any other
 * domain is a "GenericError".  The client side maps a class name back to
 * a code, so both ends share this one table.
 */
#ifndef POSTCOPYD_CONTROL_ERROR_H
#define POSTCOPYD_CONTROL_ERROR_H

#include <glib.h>

#define CONTROL_ERROR control_error_quark()

typedef enum {
    CONTROL_ERROR_GENERIC,           /* "GenericError" */
    CONTROL_ERROR_COMMAND_NOT_FOUND, /* "CommandNotFound" */
    CONTROL_ERROR_DEVICE_NOT_FOUND,  /* "DeviceNotFound": no such VM */
    CONTROL_ERROR_DEVICE_NOT_ACTIVE, /* "DeviceNotActive": VM not migrating */
} ControlError;

GQuark control_error_quark(void);

/* The class name to send for @e. */
const char *control_error_class(const GError *e);

/* The code for a received class name; unknown names are GENERIC. */
ControlError control_error_from_class(const char *cls);

#endif /* POSTCOPYD_CONTROL_ERROR_H */
