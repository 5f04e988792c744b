/*
 * attach.h - the attach handshake: how a VMM hands postcopyd its uffd and
 * guest RAM.  Two forms are accepted on the attach socket:
 *   1. ours: a vm_channel HELLO frame (proto/attach.proto Hello) with the
 *      uffd and memory fds in SCM_RIGHTS;
 *   2. Firecracker's: a JSON array of {base_host_virt_addr, size, offset,
 *      page_size (or page_size_kib)} sent with the uffd as its only fd;
 *      the regions are anonymous and the VMM did UFFDIO_API itself.  Such
 *      a VMM is named "firecracker-PID"; wrapped as {"vm_name": NAME,
 *      "regions": ARRAY} it carries its own name.
 * The form is told apart by the first byte ('[', '{' or whitespace: JSON).
 * A VM name is checked by attach_name_valid().
 *
 * Contract: attach_parse_*() validate everything (version, region count,
 * sizes, page sizes, alignment, overlap, fd indexes, uffd present) before
 * they fill @info, and fail with one clear message otherwise; on failure
 * no fd is kept (the caller still owns and closes @fds).
 */
#ifndef POSTCOPYD_ATTACH_H
#define POSTCOPYD_ATTACH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "region.h"

#define ATTACH_VERSION  1
#define ATTACH_NAME_MAX 64
#define ATTACH_JSON_MAX (64u << 10)

/* uffd_features of a Firecracker attach: the VMM did UFFDIO_API itself. */
#define ATTACH_UFFD_FEATURES_UNKNOWN UINT64_MAX

struct attach_info {
    char vm_name[ATTACH_NAME_MAX];
    pid_t pid;                   /* VMM pid (SO_PEERCRED for Firecracker) */
    bool incoming;               /* destination VMM */
    bool firecracker;            /* came in the JSON form */
    uint64_t uffd_features;      /* enabled by the VMM already; 0 = none */
    int uffd;                    /* owned, -1 when cleared */
    const char *uffd_origin;     /* how we got it: "attach socket", ... */
    struct region_table regions; /* owns the memory fds */
    /*
     * A libvirt domain (qemu_attach.c): its name and connection URI (""
     * for libvirt's default), kept in a session file so that a restarted
     * daemon attaches it through libvirt again.  "" for any other VMM.
     */
    char domain[256];
    char connect[512];
};

void attach_info_init(struct attach_info *info);
void attach_info_clear(struct attach_info *info);

/*
 * 1 to ATTACH_NAME_MAX - 1 bytes of printable UTF-8: a name goes into
 * logs, query-vms and session files, and a newline would forge a line.
 */
bool attach_name_valid(const char *name, GError **err);

/* Ownership of @fds passes to @info on success only. */
bool attach_parse_hello(const uint8_t *body, size_t len, const int *fds,
                        size_t nfds, struct attach_info *info, GError **err);
bool attach_parse_firecracker(const char *json, size_t len, const int *fds,
                              size_t nfds, struct attach_info *info,
                              GError **err);

/*
 * The fds in @info are what its regions say: the uffd is a userfaultfd,
 * each memory fd a tmpfs (shmem, memfd) or hugetlbfs file as its backing
 * says, never a socket, and holds its regions (offset + size within its
 * size).  attach_recv() checks this
 * after parsing; the parsers do not look at the fds.
 */
bool attach_check_fds(const struct attach_info *info, GError **err);

/* Daemon side: receive either form on a connected socket (checked). */
bool attach_recv(int sock, struct attach_info *info, GError **err);

/*
 * VMM side: send our HELLO.  @regions[i].fd is sent for file backings.
 */
bool attach_send_hello(int sock, const char *vm_name, bool incoming, int uffd,
                       uint64_t uffd_features, const struct region *regions,
                       size_t n, GError **err);

#endif /* POSTCOPYD_ATTACH_H */
