/*
 * tcp_floor.c - the network floors under postcopyd's figures: raw TCP over
 * the same link, with no daemon, no framing, no guest memory.
 *
 *   tcp_floor server --listen IP:PORT               (on the source host)
 *   tcp_floor pingpong --connect IP:PORT [--count N] [--warmup N]
 *                      [--cpus same|any]
 *   tcp_floor stream --connect IP:PORT [--streams N] [--seconds S]
 *   tcp_floor loaded --connect IP:PORT [--streams N] [--count N]
 *                    [--cpus same|any]
 *   tcp_floor cold --connect IP:PORT [--streams N] --size BYTES [--age S]
 *
 * The clients run on the destination host, as the daemon that asks for
 * pages does; data flows from the server to them, as pages do.
 *
 * server:   serves every connection on its own thread until killed; prints
 *           "tcp_floor: listening" on stdout once it accepts.
 * pingpong: one connection, TCP_NODELAY; N times a 32-byte request (a page
 *           request's header) answered by 32 + 4096 bytes (a page behind
 *           its header), each round trip timed.  --cpus same (the
 *           default): the client pins itself to the CPU it runs on and has
 *           the server pin the connection's thread there too.  That is the
 *           floor: over a veth (or loopback) the whole round trip, softirqs
 *           included, then runs on one CPU with no cross-CPU wake-up, which
 *           on a VM costs 25-50 us (an IPI to another vCPU, often halted);
 *           unpinned, the two ends land on either side at random and the
 *           median swings between ~8 and ~60 us from run to run.  any: not
 *           pinned.
 * stream:   N connections on which the server writes 1 MiB buffers as fast
 *           as it can; the client reads for S seconds: throughput is what it
 *           read over the time it read.
 * loaded:   pingpong while N streams saturate the link in the same direction
 *           as the replies (the floor under a fault that competes with the
 *           bulk stream).
 * cold:     the floor under moving guest RAM: BYTES of *cold* memory, as a
 *           guest's is (stream's hot buffer sits in the CPU's caches and
 *           its page tables).  The server fills a shmem file of BYTES
 *           (its share of them per stream) and then sends it with
 *           sendfile(): the fewest touches the kernel allows, no user copy,
 *           no mapping.  The client receives into a shmem file allocated
 *           and touched beforehand (as the daemon preallocates guest RAM):
 *           read() into a 1 MiB buffer, pwrite() into the file.
 *           That, not read() straight into a mapping of the file populated
 *           beforehand, is the fastest receiver on our machines (1.6 vs
 *           0.3 GiB/s over a socketpair: a user mapping's first touch of
 *           each 4 KiB page costs an exit to the hypervisor here, the
 *           kernel's direct map does not).  --age S: the filled file sits
 *           S seconds before the first byte is asked for, as guest RAM sits
 *           between the guest writing it and the migration reading it: on
 *           these machines memory written moments before may move faster
 *           than memory left alone for seconds (README, Performance).
 *           Timed from the first byte asked for to the last received;
 *           prints the stream figures plus "age_s" and "sender_cpu_s", the
 *           server threads' CPU time while sending.
 *
 * Each client prints one JSON object on stdout ("rtt" stats as in
 * floor_stats.h; streams: "streams", "bytes", "seconds", "gibps" and
 * "cpu_s", this process's CPU time: the receiving side).  The sending
 * side's CPU time is the server's, read from /proc by the caller.  Exit
 * status 0, or 1 with a message.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h> /* memfd_create */
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "floor_stats.h"

#define REQ_LEN   32
#define RESP_LEN  (32 + 4096)
#define CHUNK     (1u << 20)
#define MAX_STRMS 64

static void die(const char *what)
{
    fprintf(stderr, "tcp_floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');

    if (!colon || (size_t)(colon - s) >= sizeof(host)) {
        fprintf(stderr, "tcp_floor: '%s' is not IP:PORT\n", s);
        exit(2);
    }
    memcpy(host, s, colon - s);
    host[colon - s] = 0;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        fprintf(stderr, "tcp_floor: '%s' is not an IPv4 address\n", host);
        exit(2);
    }
}

static bool read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = read(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static void nodelay(int fd)
{
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Pin the calling thread to @cpu (< 0: leave it). */
static void pin_self(int32_t cpu)
{
    if (!floor_pin_self(cpu)) {
        die("pthread_setaffinity_np");
    }
}

/* ---- server ---- */

/* After the kind: the CPU (int32, host order, -1: any) to answer on. */
static void serve_pingpong(int fd)
{
    static const uint8_t resp[RESP_LEN];
    uint8_t req[REQ_LEN];
    int32_t cpu;

    if (!read_full(fd, &cpu, sizeof(cpu))) {
        return;
    }
    pin_self(cpu);
    nodelay(fd);
    while (read_full(fd, req, sizeof(req)) &&
           write_full(fd, resp, sizeof(resp))) {
    }
}

/* Write until the client goes away. */
static void serve_stream(int fd)
{
    uint8_t *buf = malloc(CHUNK);

    if (!buf) {
        return;
    }
    memset(buf, 0xa5, CHUNK);
    while (send(fd, buf, CHUNK, MSG_NOSIGNAL) > 0) {
    }
    free(buf);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * After the kind: the byte count (uint64, host order).  Fill a shmem file
 * with that many bytes of page-distinct data, say "ready" (one byte), wait
 * for "go" (one byte), sendfile() it all, then send this thread's CPU time
 * spent sending (uint64 ns).
 */
static void serve_cold(int fd)
{
    uint64_t len, cpu0, cpu_ns;
    uint8_t *buf = malloc(CHUNK);
    int mfd = memfd_create("tcp_floor-cold", MFD_CLOEXEC);
    char go;
    off_t off = 0;

    if (!buf || mfd < 0 || !read_full(fd, &len, sizeof(len))) {
        goto out;
    }
    for (uint64_t o = 0; o < len; o += CHUNK) {
        size_t n = len - o < CHUNK ? (size_t)(len - o) : CHUNK;

        for (size_t i = 0; i < n; i += 4096) {
            memset(buf + i, (int)((o + i) / 4096 % 251 + 1), 4096);
        }
        if (pwrite(mfd, buf, n, (off_t)o) != (ssize_t)n) {
            goto out;
        }
    }
    if (!write_full(fd, "r", 1) || !read_full(fd, &go, 1)) {
        goto out;
    }
    cpu0 = thread_cpu_ns();
    while ((uint64_t)off < len) {
        ssize_t n = sendfile(fd, mfd, &off, len - (uint64_t)off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            goto out;
        }
    }
    cpu_ns = thread_cpu_ns() - cpu0;
    write_full(fd, &cpu_ns, sizeof(cpu_ns));
out:
    if (mfd >= 0) {
        close(mfd);
    }
    free(buf);
}

static void *conn_main(void *opaque)
{
    int fd = (int)(intptr_t)opaque;
    char kind;

    if (read_full(fd, &kind, 1)) {
        if (kind == 'P') {
            serve_pingpong(fd);
        } else if (kind == 'S') {
            serve_stream(fd);
        } else if (kind == 'C') {
            serve_cold(fd);
        }
    }
    close(fd);
    return NULL;
}

static _Noreturn void run_server(const char *addr)
{
    struct sockaddr_in sa;
    int one = 1, lfd;

    /* A client that leaves mid-reply ends its connection, not the server. */
    signal(SIGPIPE, SIG_IGN);
    parse_addr(addr, &sa);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        die("socket");
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(lfd, 64) < 0) {
        die("bind/listen");
    }
    printf("tcp_floor: listening on %s\n", addr);
    fflush(stdout);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        pthread_t th;

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            die("accept");
        }
        if (pthread_create(&th, NULL, conn_main, (void *)(intptr_t)fd)) {
            close(fd);
            continue;
        }
        pthread_detach(th);
    }
}

/* ---- clients ---- */

static int connect_kind(const struct sockaddr_in *sa, char kind, int32_t cpu)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        die("socket");
    }
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        die("connect");
    }
    if (kind == 'P') {
        nodelay(fd);
    }
    if (!write_full(fd, &kind, 1) ||
        (kind == 'P' && !write_full(fd, &cpu, sizeof(cpu)))) {
        die("write");
    }
    return fd;
}

/*
 * @count timed round trips after @warmup untimed ones; samples in @ns.
 * @same_cpu: both ends on the CPU we run on now (see the top of the file).
 */
static void pingpong(const struct sockaddr_in *sa, size_t warmup, size_t count,
                     bool same_cpu, uint64_t *ns)
{
    static uint8_t resp[RESP_LEN];
    uint8_t req[REQ_LEN] = {0};
    int32_t cpu = same_cpu ? sched_getcpu() : -1;
    int fd;

    pin_self(cpu);
    fd = connect_kind(sa, 'P', cpu);

    for (size_t i = 0; i < warmup + count; i++) {
        uint64_t t0 = floor_now_ns();

        if (!write_full(fd, req, sizeof(req)) ||
            !read_full(fd, resp, sizeof(resp))) {
            die("ping-pong");
        }
        if (i >= warmup) {
            ns[i - warmup] = floor_now_ns() - t0;
        }
    }
    close(fd);
}

struct stream {
    const struct sockaddr_in *sa;
    uint64_t deadline_ns; /* 0: until stop */
    atomic_bool *stop;
    uint64_t received;
    uint64_t end_ns;
};

static void *stream_main(void *opaque)
{
    struct stream *s = opaque;
    uint8_t *buf = malloc(CHUNK);
    int fd = connect_kind(s->sa, 'S', -1);

    if (!buf) {
        die("malloc");
    }
    while (!atomic_load(s->stop) &&
           (!s->deadline_ns || floor_now_ns() < s->deadline_ns)) {
        ssize_t n = read(fd, buf, CHUNK);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            die("stream read");
        }
        s->received += (uint64_t)n;
    }
    s->end_ns = floor_now_ns();
    close(fd);
    free(buf);
    return NULL;
}

static double cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void start_streams(struct stream *s, pthread_t *th, int n,
                          const struct sockaddr_in *sa, uint64_t deadline,
                          atomic_bool *stop)
{
    for (int i = 0; i < n; i++) {
        s[i] = (struct stream){.sa = sa, .deadline_ns = deadline, .stop = stop};
        if (pthread_create(&th[i], NULL, stream_main, &s[i])) {
            die("pthread_create");
        }
    }
}

/* Prints "streams", "bytes", "seconds", "gibps" (no braces). */
static void join_streams(struct stream *s, pthread_t *th, int n, uint64_t t0)
{
    uint64_t bytes = 0, end = t0;
    double secs;

    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        bytes += s[i].received;
        end = s[i].end_ns > end ? s[i].end_ns : end;
    }
    secs = (double)(end - t0) / 1e9;
    printf("\"streams\": %d, \"bytes\": %llu, \"seconds\": %.3f, "
           "\"gibps\": %.3f",
           n, (unsigned long long)bytes, secs,
           secs > 0 ? (double)bytes / (1u << 30) / secs : 0.0);
}

/*
 * cold: each of @n streams moves its share of @len bytes into its part of
 * one preallocated shmem file.  Prints the stream figures, "sender_cpu_s"
 * and "cpu_s" (the receiving threads' process, while receiving), no braces.
 */
struct cold {
    int fd;
    int dst;      /* the destination file */
    uint64_t off; /* this stream's part of it */
    uint64_t len;
    uint64_t received;
    uint64_t end_ns;
    uint64_t sender_cpu_ns;
};

static void *cold_main(void *opaque)
{
    struct cold *c = opaque;
    uint8_t *buf = malloc(CHUNK);

    if (!buf) {
        die("malloc");
    }
    while (c->received < c->len) {
        uint64_t want = c->len - c->received;
        ssize_t n = read(c->fd, buf, want < CHUNK ? want : CHUNK);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            die("cold read");
        }
        if (pwrite(c->dst, buf, (size_t)n, (off_t)(c->off + c->received)) !=
            n) {
            die("cold: writing the destination file");
        }
        c->received += (uint64_t)n;
    }
    free(buf);
    c->end_ns = floor_now_ns();
    if (!read_full(c->fd, &c->sender_cpu_ns, sizeof(c->sender_cpu_ns))) {
        die("cold: sender's CPU time");
    }
    close(c->fd);
    return NULL;
}

/*
 * Allocate and touch the destination file before the clock starts, as
 * the daemon's prealloc does with guest RAM: fallocate alone leaves the
 * pages untouched, and the first touch of memory the host has not backed
 * yet would be timed (a floor slower than the daemon it is the floor of).
 */
static bool populate(int fd, uint64_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    bool ok;

    if (p == MAP_FAILED) {
        return false;
    }
    ok = madvise(p, len, 23 /* MADV_POPULATE_WRITE */) == 0;
    munmap(p, len);
    return ok;
}

static void cold_floor(const struct sockaddr_in *sa, int n, uint64_t len,
                       double age)
{
    struct cold c[MAX_STRMS];
    pthread_t th[MAX_STRMS];
    uint64_t share = (len / (uint64_t)n + 4095) & ~4095ull, t0, end = 0;
    uint64_t bytes = 0, sender_ns = 0;
    int mfd = memfd_create("tcp_floor-cold-dst", MFD_CLOEXEC);
    double secs, cpu0;
    char ready;

    if (mfd < 0 || ftruncate(mfd, (off_t)len) || !populate(mfd, len)) {
        die("cold: destination file");
    }
    for (int i = 0; i < n; i++) {
        uint64_t off = share * (uint64_t)i;

        c[i] = (struct cold){
            .fd = connect_kind(sa, 'C', -1),
            .dst = mfd,
            .off = off,
            .len = off >= len ? 0 : (len - off < share ? len - off : share),
        };
        if (!write_full(c[i].fd, &c[i].len, sizeof(c[i].len)) ||
            !read_full(c[i].fd, &ready, 1)) {
            die("cold: the server did not fill its file");
        }
    }
    if (age > 0) {
        usleep((useconds_t)(age * 1e6));
    }
    cpu0 = cpu_seconds(); /* the receiving, not the populating */
    t0 = floor_now_ns();
    for (int i = 0; i < n; i++) {
        if (!write_full(c[i].fd, "g", 1) ||
            pthread_create(&th[i], NULL, cold_main, &c[i])) {
            die("cold: start");
        }
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        bytes += c[i].received;
        sender_ns += c[i].sender_cpu_ns;
        end = c[i].end_ns > end ? c[i].end_ns : end;
    }
    secs = (double)(end - t0) / 1e9;
    printf("\"age_s\": %.1f, \"streams\": %d, \"bytes\": %llu, "
           "\"seconds\": %.3f, \"gibps\": %.3f, \"sender_cpu_s\": %.3f, "
           "\"cpu_s\": %.3f",
           age, n, (unsigned long long)bytes, secs,
           secs > 0 ? (double)bytes / (1u << 30) / secs : 0.0,
           (double)sender_ns / 1e9, cpu_seconds() - cpu0);
    close(mfd);
}

static void usage(void)
{
    fprintf(stderr, "usage: tcp_floor server --listen IP:PORT\n"
                    "       tcp_floor pingpong --connect IP:PORT [--count N] "
                    "[--warmup N] [--cpus same|any]\n"
                    "       tcp_floor stream --connect IP:PORT [--streams N] "
                    "[--seconds S]\n"
                    "       tcp_floor loaded --connect IP:PORT [--streams N] "
                    "[--count N] [--cpus same|any]\n"
                    "       tcp_floor cold --connect IP:PORT [--streams N] "
                    "--size BYTES [--age S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *cmd;
    size_t count = 20000, warmup = 1000;
    int nstreams = 1;
    double seconds = 3, age = 0;
    bool same_cpu = true;
    struct sockaddr_in sa;
    struct stream s[MAX_STRMS];
    pthread_t th[MAX_STRMS];
    atomic_bool stop = false;
    uint64_t *ns, t0, size = 0;
    double cpu0;

    if (argc < 2) {
        usage();
    }
    cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
        }
        if (!strcmp(argv[i], "--listen") || !strcmp(argv[i], "--connect")) {
            addr = argv[++i];
        } else if (!strcmp(argv[i], "--count")) {
            count = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--warmup")) {
            warmup = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--streams")) {
            nstreams = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--size")) {
            size = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--age")) {
            age = strtod(argv[++i], NULL);
        } else if (!strcmp(argv[i], "--seconds")) {
            seconds = strtod(argv[++i], NULL);
        } else if (!strcmp(argv[i], "--cpus")) {
            i++;
            same_cpu = !strcmp(argv[i], "same");
            if (!same_cpu && strcmp(argv[i], "any")) {
                usage();
            }
        } else {
            usage();
        }
    }
    if (!addr || count == 0 || nstreams < 1 || nstreams > MAX_STRMS ||
        !(seconds > 0) || !(age >= 0 && age <= 3600)) {
        usage();
    }
    if (!strcmp(cmd, "server")) {
        run_server(addr);
    }
    parse_addr(addr, &sa);
    ns = calloc(count, sizeof(*ns));
    if (!ns) {
        die("calloc");
    }
    cpu0 = cpu_seconds();
    t0 = floor_now_ns();
    if (!strcmp(cmd, "pingpong")) {
        pingpong(&sa, warmup, count, same_cpu, ns);
        printf("{");
        floor_print_stats(stdout, "rtt", ns, count);
        printf("}\n");
    } else if (!strcmp(cmd, "stream")) {
        start_streams(s, th, nstreams, &sa, t0 + (uint64_t)(seconds * 1e9),
                      &stop);
        printf("{");
        join_streams(s, th, nstreams, t0);
        printf(", \"cpu_s\": %.3f}\n", cpu_seconds() - cpu0);
    } else if (!strcmp(cmd, "loaded")) {
        start_streams(s, th, nstreams, &sa, 0, &stop);
        /* Let the streams fill the link before the first timed request. */
        usleep(300000);
        pingpong(&sa, warmup, count, same_cpu, ns);
        atomic_store(&stop, true);
        printf("{");
        floor_print_stats(stdout, "rtt", ns, count);
        printf(", ");
        join_streams(s, th, nstreams, t0);
        printf("}\n");
    } else if (!strcmp(cmd, "cold") && size >= 4096) {
        printf("{");
        cold_floor(&sa, nstreams, size, age);
        printf("}\n");
    } else {
        usage();
    }
    return 0;
}
