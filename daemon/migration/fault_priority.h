/*
 * fault_priority.h - the fault path's threads at real-time priority, and
 * on the CPUs [peer] fault-cpus names.
 *
 * A vCPU blocked on a missing page waits for three threads: the
 * destination's fault thread and urgent receiver, and the source's request
 * thread.  Under the normal scheduler each of them may wait a time slice
 * behind CPU-bound threads (bulk receivers, other VMs' vCPUs) before it
 * runs; at SCHED_FIFO their wake-ups preempt.  They do a few microseconds
 * of work per page and sleep, except the source's request thread, which
 * polls: a fault_budget keeps it from starving the other tasks of its CPU,
 * which the kernel would otherwise settle with a stall of tens of
 * milliseconds (its share for fair tasks: 50 ms of each second).
 *
 * The downtime's path runs there too, for the few milliseconds it lasts:
 * the source's migration thread from the pause until it has read the
 * destination's answer (waiting for it blocked: its arrival preempts),
 * the destination's from its answer to the source's Barrier (the last
 * message before the pause) until it has answered the Switchover, waiting
 * for it blocked too.
 *
 * Contract: prio 0 leaves the thread alone; a refusal (no CAP_SYS_NICE, an
 * RT-less cgroup) is logged once per process and never fatal: the thread
 * runs at normal priority.
 */
#ifndef POSTCOPYD_FAULT_PRIORITY_H
#define POSTCOPYD_FAULT_PRIORITY_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

/* Put the calling thread at SCHED_FIFO @prio; true if it is there now. */
bool fault_priority_enter(int prio, const char *thread);

/*
 * What the fault path's threads (dst-faults, dst-urgent, src-requests,
 * src-wp) call first: fault_priority_enter(), and the calling thread
 * bound to @cpus ([peer] fault-cpus; NULL: left alone).  On a host where
 * a reply's softirq and the thread it wakes run on different CPUs, each
 * wake-up is an inter-processor interrupt; bound to the CPU that takes
 * the NIC's interrupts they are woken where they run.  A refusal is logged
 * once per process and never fatal.  Returns fault_priority_enter()'s.
 */
bool fault_path_enter(int prio, const cpu_set_t *cpus, const char *thread);

/*
 * Back to normal priority, after a fault_priority_enter() that said true.
 * A thread started meanwhile inherits SCHED_FIFO (glibc applies the
 * creator's policy again, past SCHED_RESET_ON_FORK): one that must not
 * keep it calls this first thing.
 */
void fault_priority_leave(void);

/*
 * A polling thread's budget: after FAULT_BUDGET_RUN_US without sleeping,
 * it runs FAULT_BUDGET_SHARE_US at normal priority, sharing its CPU.
 * Owned by one thread; no locking.
 */
#define FAULT_BUDGET_RUN_US   20000
#define FAULT_BUDGET_SHARE_US 2000

struct fault_budget {
    int prio;     /* 0: the thread is not real-time, nothing to do */
    bool sharing; /* at normal priority until share_end */
    int64_t awake_since;
    int64_t share_end;
};

void fault_budget_init(struct fault_budget *b, int prio);
/* The thread is about to sleep (it found nothing to poll): a new run. */
void fault_budget_sleeping(struct fault_budget *b);
/* Between two pieces of work: share the CPU or take it back when due. */
void fault_budget_check(struct fault_budget *b);

#endif /* POSTCOPYD_FAULT_PRIORITY_H */
