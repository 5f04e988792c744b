/*
 * test_mem_guard.c - a copy into a shared mapping whose file was shrunk
 * under it fails with -EFAULT and the process goes on; the next copies
 * work (the handler is re-entered, SIGBUS not left blocked), on any
 * thread; a SIGBUS outside a guarded copy still kills.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

#include "mem_guard.h"

#define PAGE  4096
#define PAGES 4

struct shrunk {
    int fd;
    uint8_t *map; /* PAGES pages, the file only the first two */
};

static void shrunk_setup(struct shrunk *s)
{
    s->fd = memfd_create("test_mem_guard", MFD_CLOEXEC);
    g_assert_cmpint(s->fd, >=, 0);
    g_assert_cmpint(ftruncate(s->fd, PAGES * PAGE), ==, 0);
    s->map =
        mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
    g_assert_true(s->map != MAP_FAILED);
    memset(s->map, 0x11, PAGES * PAGE); /* every page mapped first */
    g_assert_cmpint(ftruncate(s->fd, 2 * PAGE), ==, 0);
}

static void shrunk_teardown(struct shrunk *s)
{
    munmap(s->map, PAGES * PAGE);
    close(s->fd);
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != v) {
            return false;
        }
    }
    return true;
}

static void test_copy(void)
{
    struct shrunk s;
    uint8_t src[2 * PAGE];

    shrunk_setup(&s);
    memset(src, 0xA5, sizeof(src));
    /* Backed: written. */
    g_assert_cmpint(mem_guard_copy(s.map, src, PAGE), ==, 0);
    g_assert_true(all_bytes(s.map, PAGE, 0xA5));
    /* Past the end, three times over: each one fails, the process lives. */
    for (int i = 0; i < 3; i++) {
        g_assert_cmpint(mem_guard_copy(s.map + 2 * PAGE, src, PAGE), ==,
                        -EFAULT);
    }
    /* Straddling the end (memcpy's order decides what got written). */
    g_assert_cmpint(mem_guard_copy(s.map + PAGE, src, 2 * PAGE), ==, -EFAULT);
    /* Zeroes the same way. */
    g_assert_cmpint(mem_guard_copy(s.map + 3 * PAGE, NULL, PAGE), ==, -EFAULT);
    g_assert_cmpint(mem_guard_copy(s.map, NULL, PAGE), ==, 0);
    g_assert_true(all_bytes(s.map, PAGE, 0));
    /* And the file grown back: the same pages work again. */
    g_assert_cmpint(ftruncate(s.fd, PAGES * PAGE), ==, 0);
    g_assert_cmpint(mem_guard_copy(s.map + 2 * PAGE, src, 2 * PAGE), ==, 0);
    g_assert_true(all_bytes(s.map + 2 * PAGE, 2 * PAGE, 0xA5));
    shrunk_teardown(&s);
}

static gpointer copy_thread(gpointer opaque)
{
    struct shrunk *s = opaque;
    static const uint8_t src[PAGE];
    int bad = 0;

    for (int i = 0; i < 200; i++) {
        bad += mem_guard_copy(s->map + 3 * PAGE, src, PAGE) == -EFAULT;
        bad += mem_guard_copy(s->map + PAGE, src, PAGE) == 0;
    }
    return GINT_TO_POINTER(bad);
}

/* Threads fault at once: each jumps back into its own copy. */
static void test_threads(void)
{
    struct shrunk s;
    GThread *th[4];

    shrunk_setup(&s);
    for (size_t i = 0; i < G_N_ELEMENTS(th); i++) {
        th[i] = g_thread_new("copy", copy_thread, &s);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(th); i++) {
        g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(th[i])), ==, 400);
    }
    shrunk_teardown(&s);
}

/*
 * The handler takes over only its own copies: a SIGBUS elsewhere (here a
 * plain access to the same unbacked page, after a guarded copy installed
 * the handler) still kills the process.
 */
static void test_unguarded_kills(void)
{
    struct shrunk s;
    uint8_t src[PAGE] = {0};
    int status;
    pid_t pid;

    shrunk_setup(&s);
    g_assert_cmpint(mem_guard_copy(s.map + 2 * PAGE, src, PAGE), ==, -EFAULT);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        /* The parent's handler, inherited: it must let this one through. */
        alarm(10); /* not loop on the fault */
        ((volatile uint8_t *)s.map)[2 * PAGE] = 1;
        _exit(0);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFSIGNALED(status));
    g_assert_cmpint(WTERMSIG(status), ==, SIGBUS);
    shrunk_teardown(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/mem-guard/copy", test_copy);
    g_test_add_func("/mem-guard/threads", test_threads);
    g_test_add_func("/mem-guard/unguarded-kills", test_unguarded_kills);
    return g_test_run();
}
