/*
 * testvm.c - a freestanding test guest for real QEMU (multiboot v1, 32-bit
 * protected mode, no paging, no interrupts), booted with -kernel.
 *
 * Command line (QEMU -append): share=PERCENT (default 50) mode=rw|idle
 * (default rw).  The share is that percentage of the pages between 2 MiB
 * and 1 MiB below the top of RAM (multiboot mem_upper).  Output on COM1:
 *   testvm: ram M MiB share S% pages P      once, at start
 *   rw:   pass N errors E                   after every pass; pass N first
 *         checks that each page holds what pass N-1 wrote (else an error,
 *         E is cumulative), then writes pass N's value, tagged per page
 *   idle: idle: touched P pages             after writing each page once,
 *         then halts forever
 */
#include <stdint.h>

#define MB_BOOT_MAGIC 0x2badb002
#define MBI_MEM       (1u << 0)
#define MBI_CMDLINE   (1u << 2)

#define COM1     0x3f8
#define LSR_THRE 0x20

#define PAGE_SIZE 4096u
/* Clear of low memory, the image at 1 MiB and the multiboot info after it. */
#define RAM_START 0x200000u
/* SeaBIOS keeps ACPI tables and its relocated code at the top of RAM. */
#define TOP_RESERVE 0x100000u
#define MAX_REPORTS 8

struct mb_info {
    uint32_t flags;
    uint32_t mem_lower; /* KiB below 1 MiB */
    uint32_t mem_upper; /* KiB from 1 MiB to the first hole */
    uint32_t boot_device;
    uint32_t cmdline; /* physical address of a NUL-terminated string */
};

enum mode { MODE_RW, MODE_IDLE };

struct config {
    uint32_t share; /* percent */
    enum mode mode;
};

void testvm_main(uint32_t magic, const struct mb_info *mbi);

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;

    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static void put_char(char c)
{
    while (!(inb(COM1 + 5) & LSR_THRE)) {
    }
    outb(COM1, (uint8_t)c);
}

static void put_str(const char *s)
{
    while (*s) {
        put_char(*s++);
    }
}

static void put_uint(uint32_t v)
{
    char buf[11];
    int i = sizeof(buf);

    buf[--i] = '\0';
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put_str(&buf[i]);
}

static void put_hex(uint32_t v)
{
    int shift;

    put_str("0x");
    for (shift = 28; shift >= 0; shift -= 4) {
        put_char("0123456789abcdef"[(v >> shift) & 0xf]);
    }
}

static __attribute__((noreturn)) void halt_forever(void)
{
    for (;;) {
        __asm__ volatile("cli; hlt");
    }
}

/* @s starts with @prefix: returns what follows it, else NULL. */
static const char *skip_prefix(const char *s, const char *prefix)
{
    while (*prefix) {
        if (*s++ != *prefix++) {
            return 0;
        }
    }
    return s;
}

static uint32_t parse_uint(const char *s)
{
    uint32_t v = 0;

    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (uint32_t)(*s++ - '0');
    }
    return v;
}

/* QEMU passes "KERNEL-PATH ARGS": unknown words (the path) are ignored. */
static void parse_cmdline(const char *s, struct config *cfg)
{
    const char *v;

    while (*s) {
        while (*s == ' ') {
            s++;
        }
        if ((v = skip_prefix(s, "share="))) {
            cfg->share = parse_uint(v);
        } else if ((v = skip_prefix(s, "mode=idle"))) {
            cfg->mode = MODE_IDLE;
        } else if ((v = skip_prefix(s, "mode=rw"))) {
            cfg->mode = MODE_RW;
        }
        while (*s && *s != ' ') {
            s++;
        }
    }
    if (cfg->share > 100) {
        cfg->share = 100;
    }
}

static volatile uint32_t *page_at(uint32_t index)
{
    return (volatile uint32_t *)(RAM_START + index * PAGE_SIZE);
}

/* Second word: a page copied to the wrong place, or a stale pass, shows. */
static uint32_t page_tag(uint32_t pass, uint32_t index)
{
    return pass ^ (index * 0x9e3779b1u);
}

static void report_mismatch(uint32_t pass, uint32_t index, uint32_t w0,
                            uint32_t w1)
{
    put_str("bad page ");
    put_uint(index);
    put_str(" in pass ");
    put_uint(pass);
    put_str(": ");
    put_hex(w0);
    put_char(' ');
    put_hex(w1);
    put_str(" want ");
    put_hex(pass - 1);
    put_char(' ');
    put_hex(page_tag(pass - 1, index));
    put_char('\n');
}

/* One read and one write per page: keeps a pass fast under TCG. */
static uint32_t rw_pass(uint32_t pass, uint32_t pages, uint32_t *reported)
{
    uint32_t i, errors = 0;

    for (i = 0; i < pages; i++) {
        volatile uint32_t *p = page_at(i);

        if (pass) {
            uint32_t w0 = p[0], w1 = p[1];

            if (w0 != pass - 1 || w1 != page_tag(pass - 1, i)) {
                errors++;
                if ((*reported)++ < MAX_REPORTS) {
                    report_mismatch(pass, i, w0, w1);
                }
            }
        }
        p[0] = pass;
        p[1] = page_tag(pass, i);
    }
    return errors;
}

static __attribute__((noreturn)) void run_rw(uint32_t pages)
{
    uint32_t pass, errors = 0, reported = 0;

    for (pass = 0;; pass++) {
        errors += rw_pass(pass, pages, &reported);
        put_str("pass ");
        put_uint(pass);
        put_str(" errors ");
        put_uint(errors);
        put_char('\n');
    }
}

static __attribute__((noreturn)) void run_idle(uint32_t pages)
{
    uint32_t i;

    for (i = 0; i < pages; i++) {
        page_at(i)[0] = 0x1d1e0000u ^ i;
    }
    put_str("idle: touched ");
    put_uint(pages);
    put_str(" pages\n");
    halt_forever();
}

void testvm_main(uint32_t magic, const struct mb_info *mbi)
{
    struct config cfg = {.share = 50, .mode = MODE_RW};
    uint32_t ram_end, usable = 0, pages;

    if (magic != MB_BOOT_MAGIC || !(mbi->flags & MBI_MEM)) {
        put_str("testvm: not booted by a multiboot loader with memory info\n");
        halt_forever();
    }
    if (mbi->flags & MBI_CMDLINE) {
        parse_cmdline((const char *)mbi->cmdline, &cfg);
    }
    /* Without paging only the first 4 GiB are reachable anyway. */
    if (mbi->mem_upper > (0xfff00000u - 0x100000u) / 1024) {
        ram_end = 0xfff00000u;
    } else {
        ram_end = 0x100000u + mbi->mem_upper * 1024;
    }
    if (ram_end > RAM_START + TOP_RESERVE) {
        usable = (ram_end - RAM_START - TOP_RESERVE) / PAGE_SIZE;
    }
    pages = usable * cfg.share / 100; /* usable < 2^20: no overflow */

    /* SeaBIOS's e820 keeps a few KiB at the top out of mem_upper: round. */
    put_str("testvm: ram ");
    put_uint((ram_end + 0x80000) >> 20);
    put_str(" MiB share ");
    put_uint(cfg.share);
    put_str("% pages ");
    put_uint(pages);
    put_str(cfg.mode == MODE_IDLE ? " mode idle\n" : " mode rw\n");
    if (cfg.mode == MODE_IDLE) {
        run_idle(pages);
    }
    run_rw(pages);
}
