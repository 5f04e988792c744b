/* fault_priority.c - see fault_priority.h. */
#include "fault_priority.h"

#include <pthread.h>
#include <sched.h>

#include <glib.h>

#include "cpu_list.h"

static int set_policy(int policy, int prio)
{
    struct sched_param sp = {.sched_priority = prio};

    return pthread_setschedparam(pthread_self(), policy, &sp);
}

bool fault_priority_enter(int prio, const char *thread)
{
    static gsize warned;
    int e;

    if (prio <= 0) {
        return false;
    }
    e = set_policy(SCHED_FIFO, prio);
    if (e == 0) {
        g_debug("%s: SCHED_FIFO %d", thread, prio);
        return true;
    }
    if (g_once_init_enter(&warned)) {
        g_warning("fault path at normal priority: SCHED_FIFO %d for %s: %s "
                  "(set [peer] fault-priority = 0 to silence this)",
                  prio, thread, g_strerror(e));
        g_once_init_leave(&warned, 1);
    }
    return false;
}

static void bind_cpus(const cpu_set_t *cpus, const char *thread)
{
    static gsize warned;
    g_autofree char *list = NULL;
    cpu_set_t now;
    int e = pthread_setaffinity_np(pthread_self(), sizeof(*cpus), cpus);

    if (e == 0) {
        e = pthread_getaffinity_np(pthread_self(), sizeof(now), &now);
    }
    if (e == 0) {
        list = cpu_list_format(&now);
        g_debug("%s: CPUs %s", thread, list);
        return;
    }
    if (g_once_init_enter(&warned)) {
        list = cpu_list_format(cpus);
        g_warning("fault path on any CPU: binding %s to CPUs %s: %s", thread,
                  list, g_strerror(e));
        g_once_init_leave(&warned, 1);
    }
}

bool fault_path_enter(int prio, const cpu_set_t *cpus, const char *thread)
{
    if (cpus) {
        bind_cpus(cpus, thread);
    }
    return fault_priority_enter(prio, thread);
}

void fault_priority_leave(void)
{
    set_policy(SCHED_OTHER, 0);
}

void fault_budget_init(struct fault_budget *b, int prio)
{
    *b = (struct fault_budget){
        .prio = prio,
        .awake_since = g_get_monotonic_time(),
    };
}

void fault_budget_sleeping(struct fault_budget *b)
{
    b->awake_since = g_get_monotonic_time();
}

void fault_budget_check(struct fault_budget *b)
{
    int64_t now;

    if (b->prio <= 0) {
        return;
    }
    now = g_get_monotonic_time();
    if (b->sharing && now >= b->share_end) {
        /* Fails only if the right was taken away meanwhile: stay fair. */
        if (set_policy(SCHED_FIFO, b->prio) != 0) {
            b->prio = 0;
            return;
        }
        b->sharing = false;
        b->awake_since = now;
    } else if (!b->sharing && now - b->awake_since >= FAULT_BUDGET_RUN_US &&
               set_policy(SCHED_OTHER, 0) == 0) {
        b->sharing = true;
        b->share_end = now + FAULT_BUDGET_SHARE_US;
    }
}
