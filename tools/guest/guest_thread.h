/*
 * guest_thread.h - the guest's threads (vCPUs, verifier, droppers) start at
 * normal priority.
 *
 * The monitor thread runs at SCHED_FIFO (guest.c) and starts most of them;
 * a thread inherits its creator's policy (glibc applies it again even past
 * SCHED_RESET_ON_FORK), and a real-time vCPU writing flat out would hold
 * its CPU.  Contract: guest_thread_new() is g_thread_new() with the new
 * thread at SCHED_OTHER before @fn runs.
 */
#ifndef POSTCOPY_GUEST_THREAD_H
#define POSTCOPY_GUEST_THREAD_H

#include <glib.h>

GThread *guest_thread_new(const char *name, GThreadFunc fn, gpointer data);

#endif /* POSTCOPY_GUEST_THREAD_H */
