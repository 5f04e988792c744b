/*
 * test_fault_priority.c - the fault path's real-time priority, read back
 * from the kernel: SCHED_FIFO where allowed, a clean refusal where not (an
 * unprivileged child), and the polling budget's hand-over of the CPU to
 * normal priority and back.  Each case runs in its own thread or process,
 * so the test runner itself never becomes real-time.
 */
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#include <glib.h>

#include "fault_priority.h"

static int policy_of_self(int *prio)
{
    struct sched_param sp;
    int policy;

    g_assert_cmpint(pthread_getschedparam(pthread_self(), &policy, &sp), ==, 0);
    *prio = sp.sched_priority;
    return policy;
}

static bool may_be_realtime(void)
{
    return geteuid() == 0;
}

static gpointer enter_thread(gpointer data)
{
    int prio, want = GPOINTER_TO_INT(data);
    bool ok = fault_priority_enter(want, "test");

    if (want == 0) {
        g_assert_false(ok);
        g_assert_cmpint(policy_of_self(&prio), ==, SCHED_OTHER);
        return NULL;
    }
    if (!ok) {
        /* Refused (no CAP_SYS_NICE here): the thread must be untouched. */
        g_assert_cmpint(policy_of_self(&prio), ==, SCHED_OTHER);
        return GINT_TO_POINTER(1);
    }
    g_assert_cmpint(policy_of_self(&prio), ==, SCHED_FIFO);
    g_assert_cmpint(prio, ==, want);
    /* The downtime's path leaves it again. */
    fault_priority_leave();
    g_assert_cmpint(policy_of_self(&prio), ==, SCHED_OTHER);
    return NULL;
}

static void test_enter(void)
{
    g_assert_null(g_thread_join(g_thread_new("p0", enter_thread, 0)));
    if (g_thread_join(g_thread_new("p3", enter_thread, GINT_TO_POINTER(3)))) {
        g_test_skip("SCHED_FIFO refused in this environment");
    }
}

/*
 * The fault path's threads bound to [peer] fault-cpus, read back from the
 * kernel: exactly that set; with none given, left on every CPU.
 */
static gpointer bind_thread(gpointer data)
{
    const cpu_set_t *want = data;
    cpu_set_t before, now;

    g_assert_cmpint(
        pthread_getaffinity_np(pthread_self(), sizeof(before), &before), ==, 0);
    fault_path_enter(0, want, "test");
    g_assert_cmpint(pthread_getaffinity_np(pthread_self(), sizeof(now), &now),
                    ==, 0);
    g_assert_true(CPU_EQUAL(&now, want ? want : &before));
    return NULL;
}

static void test_bind(void)
{
    cpu_set_t all, one;
    int last = -1;

    g_assert_cmpint(sched_getaffinity(0, sizeof(all), &all), ==, 0);
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &all)) {
            last = c;
        }
    }
    g_assert_cmpint(last, >=, 0);
    CPU_ZERO(&one);
    CPU_SET(last, &one);
    g_thread_join(g_thread_new("bind", bind_thread, &one));
    g_thread_join(g_thread_new("bind-all", bind_thread, &all));
    g_thread_join(g_thread_new("unbound", bind_thread, NULL));
    /* The caller's own CPUs are untouched. */
    g_assert_cmpint(sched_getaffinity(0, sizeof(one), &one), ==, 0);
    g_assert_true(CPU_EQUAL(&one, &all));
}

/*
 * CPUs the thread may not run on (not online, or taken away by a cgroup
 * since the daemon checked at start): refused, logged once, the thread
 * left where it was.
 */
static void test_bind_refused(void)
{
    cpu_set_t all, other, now;
    int absent = -1;

    g_assert_cmpint(sched_getaffinity(0, sizeof(all), &all), ==, 0);
    for (int c = CPU_SETSIZE - 1; c >= 0 && absent < 0; c--) {
        if (!CPU_ISSET(c, &all)) {
            absent = c;
        }
    }
    g_assert_cmpint(absent, >=, 0);
    if (g_test_subprocess()) {
        CPU_ZERO(&other);
        CPU_SET(absent, &other);
        g_test_expect_message(NULL, G_LOG_LEVEL_WARNING,
                              "fault path on any CPU: binding test to CPUs *");
        fault_path_enter(0, &other, "test");
        fault_path_enter(0, &other, "test"); /* no second line */
        g_test_assert_expected_messages();
        g_assert_cmpint(sched_getaffinity(0, sizeof(now), &now), ==, 0);
        g_assert_true(CPU_EQUAL(&now, &all));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
}

/* An unprivileged process asks: refused, logged once, normal priority. */
static void test_refused(void)
{
    struct rlimit none = {0, 0};

    if (!may_be_realtime()) {
        g_test_skip("needs root to drop to an unprivileged user");
        return;
    }
    if (g_test_subprocess()) {
        int prio;

        g_assert_cmpint(setrlimit(RLIMIT_RTPRIO, &none), ==, 0);
        g_assert_cmpint(setgid(65534), ==, 0);
        g_assert_cmpint(setuid(65534), ==, 0);
        g_test_expect_message(NULL, G_LOG_LEVEL_WARNING,
                              "fault path at normal priority: SCHED_FIFO 1 "
                              "for test:*fault-priority = 0*");
        g_assert_false(fault_priority_enter(1, "test"));
        g_assert_false(fault_priority_enter(1, "test")); /* no second line */
        g_test_assert_expected_messages();
        g_assert_cmpint(policy_of_self(&prio), ==, SCHED_OTHER);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
}

/* Spin, as the source's request thread does, for @us. */
static void spin_for(int64_t us)
{
    int64_t end = g_get_monotonic_time() + us;

    while (g_get_monotonic_time() < end) {
    }
}

/*
 * The budget reads the clock itself, and on a loaded machine the thread
 * can lose its CPU for milliseconds between two lines.  So each check is
 * bracketed by [t0, t1] and judged against the moment its policy is due
 * to change, @switch_at: before it the old policy must hold, after it the
 * new one; a check that straddled it may have seen either.
 */
static void check_and_expect(struct fault_budget *b, const int64_t *switch_at,
                             int before, int after)
{
    int64_t t0 = g_get_monotonic_time(), t1, due = *switch_at;
    int prio, policy;

    fault_budget_check(b);
    t1 = g_get_monotonic_time();
    policy = policy_of_self(&prio);
    if (t1 < due) {
        g_assert_cmpint(policy, ==, before);
    } else if (t0 >= due) {
        g_assert_cmpint(policy, ==, after);
    } else {
        g_assert_true(policy == before || policy == after);
    }
}

static gpointer budget_thread(gpointer data)
{
    struct fault_budget b;
    int64_t run_end, share_end;
    int prio;

    (void)data;
    if (!fault_priority_enter(2, "test")) {
        return GINT_TO_POINTER(1);
    }
    fault_budget_init(&b, 2);
    run_end = b.awake_since + FAULT_BUDGET_RUN_US;
    check_and_expect(&b, &run_end, SCHED_FIFO, SCHED_OTHER); /* fresh */
    if (b.sharing) {
        return NULL; /* the machine took the whole run: what follows
                      * assumes it did not */
    }

    /* A sleep starts a new run: no hand-over however long it was. */
    spin_for(FAULT_BUDGET_RUN_US / 2);
    fault_budget_sleeping(&b);
    run_end = b.awake_since + FAULT_BUDGET_RUN_US;
    spin_for(FAULT_BUDGET_RUN_US / 2);
    check_and_expect(&b, &run_end, SCHED_FIFO, SCHED_OTHER);
    if (b.sharing) {
        return NULL; /* late by a whole run: what follows assumes not */
    }

    /* A whole run awake: normal priority for the share... */
    spin_for(FAULT_BUDGET_RUN_US / 2 + 1000);
    fault_budget_check(&b);
    g_assert_cmpint(policy_of_self(&prio), ==, SCHED_OTHER);
    g_assert_true(b.sharing);
    share_end = b.share_end;
    check_and_expect(&b, &share_end, SCHED_OTHER, SCHED_FIFO);

    /* ...then back at its priority, for a new run. */
    spin_for(FAULT_BUDGET_SHARE_US + 200);
    fault_budget_check(&b);
    g_assert_cmpint(policy_of_self(&prio), ==, SCHED_FIFO);
    g_assert_cmpint(prio, ==, 2);
    run_end = b.awake_since + FAULT_BUDGET_RUN_US;
    check_and_expect(&b, &run_end, SCHED_FIFO, SCHED_OTHER);
    return NULL;
}

static void test_budget(void)
{
    if (g_thread_join(g_thread_new("budget", budget_thread, NULL))) {
        g_test_skip("SCHED_FIFO refused in this environment");
    }
}

/* prio 0 (fault-priority = 0): the budget never touches the thread. */
static void test_budget_off(void)
{
    struct fault_budget b;
    int prio;

    fault_budget_init(&b, 0);
    spin_for(FAULT_BUDGET_RUN_US + 1000);
    fault_budget_check(&b);
    g_assert_false(b.sharing);
    g_assert_cmpint(policy_of_self(&prio), ==, SCHED_OTHER);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/fault-priority/enter", test_enter);
    g_test_add_func("/fault-priority/refused", test_refused);
    g_test_add_func("/fault-priority/bind", test_bind);
    g_test_add_func("/fault-priority/bind-refused", test_bind_refused);
    g_test_add_func("/fault-priority/budget", test_budget);
    g_test_add_func("/fault-priority/budget-off", test_budget_off);
    return g_test_run();
}
