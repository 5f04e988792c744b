/*
 * version.h - the postcopyd release version, reported in the control
 * socket greeting and by --version.
 */
#ifndef POSTCOPYD_VERSION_H
#define POSTCOPYD_VERSION_H

#define POSTCOPYD_VERSION "0.1.0"

#endif /* POSTCOPYD_VERSION_H */
