/*
 * fault_floor.c - the local half of the floor under a postcopy fault: a
 * raw userfaultfd fault resolved by a handler thread in the same process,
 * with no network and no daemon.
 *
 *   fault_floor [--mode missing|minor] [--pages N] [--seed S]
 *               [--cpus same|split|any]
 *   fault_floor --mode populate [--size BYTES[K|M|G]]
 *
 * missing: N anonymous 4 KiB pages registered MISSING; the handler answers
 *          each fault with UFFDIO_COPY of a 4 KiB buffer (postcopyd's anon
 *          path).
 * minor:   N pages of a memfd, all in the page cache, mapped twice; the
 *          "guest" mapping is registered MINOR; the handler writes the 4 KiB
 *          into the page cache through its own mapping and maps it with
 *          UFFDIO_CONTINUE (postcopyd's shmem path).
 *
 * The main thread touches every page once, in a random order (as
 * postcopy-guest --verify does), and times each touch: fault delivery,
 * handler wake-up, resolve, and the faulting thread's resume.  The handler
 * also times its own part (message read to resolve ioctl returned), which
 * is the window postcopyd's fault-latency histogram covers minus the
 * network.
 *
 * --cpus: where the two threads run.  same (the default): both pinned to
 * the CPU the tool starts on.  That is the floor: a fault then costs no
 * cross-CPU wake-up, and on a VM a wake-up of another vCPU (IPI, often a
 * halted vCPU that the host must reschedule) costs 25-50 us, more than the
 * fault itself and at the mercy of the host's load; left to the scheduler
 * the two threads land on either side at random and the figure swings
 * between ~5 and ~100 us from one run to the next.  split: one thread on
 * each of two CPUs (the price of that wake-up); any: not pinned.
 *
 * populate: the cost of first touch, which every fresh guest page pays
 * before a byte of it arrives: a fresh memfd of --size bytes (default
 * 1 GiB) populated once with MADV_POPULATE_WRITE, timed.  On a VM whose
 * guest-physical memory the host reclaims (free page reporting), this is
 * the host's fault rate, several times slower than memory recently used.
 *
 * Prints one JSON object on stdout:
 *   {"mode", "pages", "cpus", "fault": {stats}, "handler": {stats}}
 * (stats as in floor_stats.h), or for populate
 *   {"populate": {"gibps", "bytes", "seconds"}}.
 * Exit status 0, or 1 with a message.
 */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "floor_stats.h"

#define PAGE 4096u

enum cpus { CPUS_SAME, CPUS_SPLIT, CPUS_ANY };

struct floor {
    bool minor;
    enum cpus cpus;
    int handler_cpu; /* -1: not pinned */
    size_t pages;
    int uffd;
    uint8_t *guest;   /* registered mapping, touched by the main thread */
    uint8_t *backing; /* minor: the handler's mapping of the same memfd */
    uint8_t data[PAGE] __attribute__((aligned(PAGE)));
    uint64_t *handler_ns; /* one per fault, in handling order */
    size_t handled;
    const char *error;
};

static void die(const char *what)
{
    fprintf(stderr, "fault_floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int resolve(struct floor *f, uint64_t addr)
{
    if (f->minor) {
        struct uffdio_continue c = {
            .range = {.start = addr, .len = PAGE},
        };

        memcpy(f->backing + (addr - (uint64_t)(uintptr_t)f->guest), f->data,
               PAGE);
        return ioctl(f->uffd, UFFDIO_CONTINUE, &c);
    }
    struct uffdio_copy c = {
        .dst = addr,
        .src = (uint64_t)(uintptr_t)f->data,
        .len = PAGE,
    };
    return ioctl(f->uffd, UFFDIO_COPY, &c);
}

static void pin_self(int cpu)
{
    if (!floor_pin_self(cpu)) {
        die("pthread_setaffinity_np");
    }
}

/*
 * Pin the calling (faulting) thread and pick the handler's CPU.  The CPU we
 * are on and, for split, the next one we may run on.
 */
static void place_threads(struct floor *f)
{
    cpu_set_t allowed;
    int cpu = sched_getcpu();

    f->handler_cpu = -1;
    if (f->cpus == CPUS_ANY || cpu < 0) {
        return;
    }
    if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0) {
        die("sched_getaffinity");
    }
    f->handler_cpu = cpu;
    if (f->cpus == CPUS_SPLIT) {
        for (int i = 1; i < CPU_SETSIZE; i++) {
            int c = (cpu + i) % CPU_SETSIZE;

            if (CPU_ISSET(c, &allowed)) {
                f->handler_cpu = c;
                break;
            }
        }
        if (f->handler_cpu == cpu) {
            fprintf(stderr, "fault_floor: --cpus split needs two CPUs\n");
            exit(1);
        }
    }
    pin_self(cpu);
}

/*
 * Allocate, touch and free @len bytes of anonymous memory.  UFFDIO_COPY
 * allocates a page per fault (and page tables on the way): on a VM that
 * hands freed guest memory back to the host, a page never touched (or not
 * touched lately) costs a host fault on top, which is not the uffd
 * mechanism's cost.  Freed just now, these pages are what the allocator
 * hands out next, still backed.
 */
static void preheat(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        die("mmap (preheat)");
    }
    /* Best effort: a kernel without MADV_POPULATE_WRITE just skips it. */
    madvise(p, len, MADV_POPULATE_WRITE);
    munmap(p, len);
}

/* Answers exactly one fault per page, then returns. */
static void *handler_main(void *opaque)
{
    struct floor *f = opaque;

    pin_self(f->handler_cpu);
    while (f->handled < f->pages) {
        struct uffd_msg msg;
        struct pollfd pfd = {.fd = f->uffd, .events = POLLIN};
        uint64_t t0;
        ssize_t n;

        /* The daemon's fault thread polls its uffd: so do we. */
        if (poll(&pfd, 1, 10000) <= 0) {
            f->error = "no fault for 10 s (poll)";
            return NULL;
        }
        n = read(f->uffd, &msg, sizeof(msg));
        t0 = floor_now_ns();
        if (n < 0 && errno == EAGAIN) {
            continue;
        }
        if (n != (ssize_t)sizeof(msg) || msg.event != UFFD_EVENT_PAGEFAULT) {
            f->error = "unexpected uffd message";
            return NULL;
        }
        if (resolve(f, msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1)) < 0) {
            f->error =
                f->minor ? "UFFDIO_CONTINUE failed" : "UFFDIO_COPY failed";
            return NULL;
        }
        f->handler_ns[f->handled++] = floor_now_ns() - t0;
    }
    return NULL;
}

static void map_guest(struct floor *f)
{
    size_t len = f->pages * PAGE;

    if (!f->minor) {
        f->guest = mmap(NULL, len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (f->guest == MAP_FAILED) {
            die("mmap");
        }
        return;
    }
    int fd = memfd_create("fault_floor", MFD_CLOEXEC);

    if (fd < 0 || ftruncate(fd, (off_t)len) < 0) {
        die("memfd");
    }
    f->backing = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_POPULATE, fd, 0);
    f->guest = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (f->backing == MAP_FAILED || f->guest == MAP_FAILED) {
        die("mmap memfd");
    }
    /* Every page in the page cache: the guest mapping only lacks PTEs. */
    for (size_t p = 0; p < f->pages; p++) {
        f->backing[p * PAGE] = 1;
    }
    close(fd);
}

static void register_guest(struct floor *f)
{
    struct uffdio_api api = {
        .api = UFFD_API,
        .features = f->minor ? UFFD_FEATURE_MINOR_SHMEM : 0,
    };
    struct uffdio_register reg = {
        .range = {.start = (uint64_t)(uintptr_t)f->guest,
                  .len = f->pages * PAGE},
        .mode = f->minor ? UFFDIO_REGISTER_MODE_MINOR
                         : UFFDIO_REGISTER_MODE_MISSING,
    };

    f->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (f->uffd < 0) {
        die("userfaultfd");
    }
    if (ioctl(f->uffd, UFFDIO_API, &api) < 0) {
        die("UFFDIO_API");
    }
    if (ioctl(f->uffd, UFFDIO_REGISTER, &reg) < 0) {
        die("UFFDIO_REGISTER");
    }
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: fault_floor [--mode missing|minor] [--pages N] "
            "[--seed S] [--cpus same|split|any]\n"
            "       fault_floor --mode populate [--size BYTES[K|M|G]]\n");
    exit(2);
}

static size_t parse_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    switch (*end) {
    case 'G':
    case 'g':
        v <<= 10; /* fall through */
    case 'M':
    case 'm':
        v <<= 10; /* fall through */
    case 'K':
    case 'k':
        v <<= 10;
        end++;
        break;
    }
    if (*end || v == 0) {
        usage();
    }
    return (size_t)v;
}

/*
 * One timed MADV_POPULATE_WRITE over a fresh memfd: shmem page allocation
 * and clearing, and on a VM the host's first-touch faults.  Rounded up to
 * whole pages.
 */
static int populate(size_t size)
{
    size_t len = (size + PAGE - 1) & ~(size_t)(PAGE - 1);
    int fd = memfd_create("fault_floor_populate", MFD_CLOEXEC);
    uint8_t *p;
    uint64_t t0, ns;

    if (fd < 0 || ftruncate(fd, (off_t)len) < 0) {
        die("memfd");
    }
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        die("mmap memfd");
    }
    t0 = floor_now_ns();
    if (madvise(p, len, MADV_POPULATE_WRITE) < 0) {
        die("madvise(MADV_POPULATE_WRITE)");
    }
    ns = floor_now_ns() - t0;
    printf("{\"populate\": {\"gibps\": %.3f, \"bytes\": %zu, "
           "\"seconds\": %.6f}}\n",
           (double)len / (1u << 30) / ((double)ns / 1e9), len,
           (double)ns / 1e9);
    munmap(p, len);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    static struct floor f;
    static const char *const cpus_name[] = {"same", "split", "any"};
    uint64_t seed = 1;
    size_t size = (size_t)1 << 30;
    bool populate_mode = false;
    size_t *order;
    uint64_t *touch_ns;
    pthread_t th;

    f.pages = 25000;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
        }
        if (!strcmp(argv[i], "--mode")) {
            i++;
            populate_mode = !strcmp(argv[i], "populate");
            f.minor = !strcmp(argv[i], "minor");
            if (!populate_mode && !f.minor && strcmp(argv[i], "missing")) {
                usage();
            }
        } else if (!strcmp(argv[i], "--size")) {
            size = parse_size(argv[++i]);
        } else if (!strcmp(argv[i], "--cpus")) {
            i++;
            if (!strcmp(argv[i], "same")) {
                f.cpus = CPUS_SAME;
            } else if (!strcmp(argv[i], "split")) {
                f.cpus = CPUS_SPLIT;
            } else if (!strcmp(argv[i], "any")) {
                f.cpus = CPUS_ANY;
            } else {
                usage();
            }
        } else if (!strcmp(argv[i], "--pages")) {
            f.pages = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--seed")) {
            seed = strtoull(argv[++i], NULL, 10) | 1;
        } else {
            usage();
        }
    }
    if (populate_mode) {
        return populate(size);
    }
    if (f.pages == 0) {
        usage();
    }
    memset(f.data, 0x5a, PAGE);
    order = calloc(f.pages, sizeof(*order));
    touch_ns = calloc(f.pages, sizeof(*touch_ns));
    f.handler_ns = calloc(f.pages, sizeof(*f.handler_ns));
    if (!order || !touch_ns || !f.handler_ns) {
        die("calloc");
    }
    for (size_t i = 0; i < f.pages; i++) {
        order[i] = i;
    }
    for (size_t i = f.pages - 1; i > 0; i--) {
        size_t j = xorshift(&seed) % (i + 1), t = order[i];

        order[i] = order[j];
        order[j] = t;
    }
    place_threads(&f);
    /* Missing: one fresh page per fault, plus page tables. */
    if (!f.minor) {
        preheat(f.pages * PAGE * 2);
    }
    map_guest(&f);
    register_guest(&f);
    if (pthread_create(&th, NULL, handler_main, &f)) {
        die("pthread_create");
    }
    for (size_t i = 0; i < f.pages; i++) {
        volatile uint8_t *p = f.guest + order[i] * PAGE;
        uint64_t t0 = floor_now_ns();
        uint8_t v = *p;

        touch_ns[i] = floor_now_ns() - t0;
        if (v != 0x5a) {
            fprintf(stderr, "fault_floor: page %zu reads %#x, not 0x5a\n",
                    order[i], v);
            return 1;
        }
    }
    pthread_join(th, NULL);
    if (f.error) {
        fprintf(stderr, "fault_floor: %s\n", f.error);
        return 1;
    }
    printf("{\"mode\": \"%s\", \"pages\": %zu, \"cpus\": \"%s\", ",
           f.minor ? "minor" : "missing", f.pages, cpus_name[f.cpus]);
    floor_print_stats(stdout, "fault", touch_ns, f.pages);
    printf(", ");
    floor_print_stats(stdout, "handler", f.handler_ns, f.handled);
    printf("}\n");
    return 0;
}
