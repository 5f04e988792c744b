/* control_error.c - see control_error.h. */
#include "control_error.h"

#include <string.h>

G_DEFINE_QUARK(postcopyd - control - error - quark, control_error)

static const char *const class_names[] = {
    [CONTROL_ERROR_GENERIC] = "GenericError",
    [CONTROL_ERROR_COMMAND_NOT_FOUND] = "CommandNotFound",
    [CONTROL_ERROR_DEVICE_NOT_FOUND] = "DeviceNotFound",
    [CONTROL_ERROR_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
};

const char *control_error_class(const GError *e)
{
    if (e->domain != CONTROL_ERROR || e->code < 0 ||
        e->code >= (int)G_N_ELEMENTS(class_names)) {
        return class_names[CONTROL_ERROR_GENERIC];
    }
    return class_names[e->code];
}

ControlError control_error_from_class(const char *cls)
{
    for (size_t i = 0; i < G_N_ELEMENTS(class_names); i++) {
        if (cls && strcmp(cls, class_names[i]) == 0) {
            return i;
        }
    }
    return CONTROL_ERROR_GENERIC;
}
