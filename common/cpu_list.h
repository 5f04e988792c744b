/*
 * cpu_list.h - CPU lists as the kernel writes them ("0", "2-3", "0,4-7",
 * as in /sys/devices/system/cpu/online and Cpus_allowed_list): the one
 * parser for settings that name CPUs.
 *
 * Contract: decimal CPU numbers below CPU_SETSIZE, single or as LOW-HIGH
 * ranges (LOW <= HIGH), separated by commas, no spaces; at least one CPU.
 * Errors are one line in G_IO_ERROR / G_IO_ERROR_INVALID_ARGUMENT naming
 * the input.  cpu_list_format() writes a set back in the same form.
 */
#ifndef POSTCOPYD_CPU_LIST_H
#define POSTCOPYD_CPU_LIST_H

#include <sched.h>
#include <stdbool.h>
#include <glib.h>

bool cpu_list_parse(const char *s, cpu_set_t *set, GError **err);
/* "0-1,4"; "" for an empty set.  g_free() it. */
char *cpu_list_format(const cpu_set_t *set);

#endif /* POSTCOPYD_CPU_LIST_H */
