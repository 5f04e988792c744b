/*
 * mem_guard.c - a copy that turns the SIGBUS of an unbacked page into
 * -EFAULT: the thread notes the range it copies to and where to jump back
 * to, and the handler jumps there if the fault lies in that range.
 *
 * sigsetjmp(, 0) saves no signal mask (no syscall per copy: the copy of a
 * fault's reply is on the fault path), so the handler runs with SA_NODEFER
 * and leaves SIGBUS unblocked for the next fault it jumps out of.
 */
#include "mem_guard.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <glib.h>

/* This thread's copy in progress: what the handler may jump out of. */
static __thread sigjmp_buf *guard_jump;
static __thread uintptr_t guard_lo, guard_hi;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    uintptr_t addr = (uintptr_t)si->si_addr;
    sigjmp_buf *jump = guard_jump;

    (void)uc;
    if (jump && addr >= guard_lo && addr < guard_hi) {
        guard_jump = NULL;
        siglongjmp(*jump, 1);
    }
    /* Not a guarded copy's: the default action when the access restarts. */
    sigaction(sig, &(struct sigaction){.sa_handler = SIG_DFL}, NULL);
}

static void install_handler(void)
{
    static gsize done;

    if (g_once_init_enter(&done)) {
        struct sigaction sa = {.sa_sigaction = on_sigbus,
                               .sa_flags = SA_SIGINFO | SA_NODEFER};

        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, NULL)) {
            g_error("cannot handle SIGBUS: %s", g_strerror(errno));
        }
        g_once_init_leave(&done, 1);
    }
}

int mem_guard_copy(void *dst, const void *src, size_t len)
{
    sigjmp_buf jump;

    install_handler();
    if (sigsetjmp(jump, 0)) {
        return -EFAULT;
    }
    guard_lo = (uintptr_t)dst;
    guard_hi = (uintptr_t)dst + len;
    /* The handler runs on this thread: order against it, not other CPUs. */
    atomic_signal_fence(memory_order_seq_cst);
    guard_jump = &jump;
    atomic_signal_fence(memory_order_seq_cst);
    if (src) {
        memcpy(dst, src, len);
    } else {
        memset(dst, 0, len);
    }
    atomic_signal_fence(memory_order_seq_cst);
    guard_jump = NULL;
    return 0;
}
