/*
 * start.S - multiboot (v1) entry of the test guest.
 *
 * The loader (QEMU -kernel) jumps here in 32-bit protected mode, paging off,
 * interrupts off, EAX = multiboot magic, EBX = physical address of the
 * multiboot info.  We only set up a stack and call testvm_main(magic, mbi),
 * which never returns.
 */
#define MB_MAGIC 0x1badb002
/* Bit 0: page-aligned modules (none), bit 1: give us mem_lower/mem_upper. */
#define MB_FLAGS 0x00000003

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text
    .globl _start
_start:
    mov $stack_top, %esp
    push %ebx
    push %eax
    call testvm_main
1:  cli
    hlt
    jmp 1b

    .section .bss
    .align 16
    .skip 16384
stack_top:

    .section .note.GNU-stack, "", @progbits
