/*
 * vmm.h - the daemon's side of the attach socket after the hello: commands
 * to the VMM (pause, resume, query, quit) and the events it sends back.
 *
 * Contract: each command waits for the Reply with its id, at most
 * reply_timeout_ms; a Reply with ok=false becomes a GError carrying the
 * VMM's message, a Reply with another non-zero id is a protocol error.
 * Events (Replies with id 0) that arrive while a command waits are kept,
 * not lost: the last verify result waits for vmm_wait_verify().  A vmm is
 * used by one thread at a time and borrows the socket (never closes it).
 */
#ifndef POSTCOPYD_VMM_H
#define POSTCOPYD_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define VMM_REPLY_TIMEOUT_MS 60000

struct vmm_verify {
    uint64_t pages_checked;
    uint64_t mismatches;
    uint64_t first_mismatch; /* guest page number; set when mismatches */
    uint64_t elapsed_us;
    uint64_t overwritten; /* written by the guest, then changed under it */
};

struct vmm {
    int sock;
    uint64_t next_id;
    int reply_timeout_ms; /* -1: wait forever */
    bool have_verify;     /* a verify event arrived and was not taken */
    struct vmm_verify verify;
    uint64_t events; /* id-0 Replies received, for diagnostics */
};

void vmm_init(struct vmm *v, int sock);

/* Stop the vCPUs; *@state (g_free it) is the device state. */
bool vmm_pause(struct vmm *v, uint8_t **state, size_t *len, GError **err);
/* Run again; @state (NULL, 0 on a source) is loaded by a destination. */
bool vmm_resume(struct vmm *v, const uint8_t *state, size_t len, GError **err);
bool vmm_query(struct vmm *v, uint64_t *pages_written, bool *paused,
               GError **err);
/* Ask the VMM to exit; true once it acknowledged. */
bool vmm_quit(struct vmm *v, GError **err);

/*
 * Wait up to @timeout_ms (-1: forever) for the destination's verify result
 * (an event sent once it has read back every page after its resume), or
 * take the one that already arrived.
 */
bool vmm_wait_verify(struct vmm *v, int timeout_ms, struct vmm_verify *out,
                     GError **err);

#endif /* POSTCOPYD_VMM_H */
