/* guest_thread.c - see guest_thread.h. */
#include "guest_thread.h"

#include <sched.h>

struct start {
    GThreadFunc fn;
    gpointer data;
};

static gpointer trampoline(gpointer opaque)
{
    struct start st = *(struct start *)opaque;
    struct sched_param sp = {.sched_priority = 0};

    g_free(opaque);
    sched_setscheduler(0, SCHED_OTHER, &sp);
    return st.fn(st.data);
}

GThread *guest_thread_new(const char *name, GThreadFunc fn, gpointer data)
{
    struct start *st = g_new(struct start, 1);

    *st = (struct start){.fn = fn, .data = data};
    return g_thread_new(name, trampoline, st);
}
