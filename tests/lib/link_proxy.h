/*
 * link_proxy.h - a TCP relay between a source and a destination postcopyd
 * on loopback that reads the peer protocol as it passes (frames, control
 * messages) and cuts the link at a chosen message: what a network that
 * fails at the worst moment does.
 *
 * The source migrates to link_proxy.address; every connection it opens is
 * relayed to the destination, frame by frame, on two threads (one per
 * direction).  When the armed rule fires, its message is dropped and
 * every connection open at that moment is shut down at once; the rule is
 * then spent and later connections (a reconnecting source) are relayed
 * untouched.  No TLS: the proxy must read the frames.  A rule cuts with
 * shutdown(), or resets one connection with an RST so that the peer's
 * next send there fails at once (hold_pid: with the destination held
 * stopped across it, so that the order never depends on the host's speed).
 */
#ifndef POSTCOPYD_LINK_PROXY_H
#define POSTCOPYD_LINK_PROXY_H

#include <stdbool.h>
#include <glib.h>

enum link_cut {
    LINK_CUT_NONE,
    /* The Switchover is dropped: the destination never hears of it. */
    LINK_CUT_SWITCHOVER,
    /* The SwitchoverReply is dropped: the VM runs there, unknown here. */
    LINK_CUT_SWITCHOVER_REPLY,
    /*
     * The Switchover reaches the destination, then its connection (the
     * control channel) is reset (RST), the others left alone: the
     * destination resumes the VM and cannot send its answer at all.
     */
    LINK_RESET_AFTER_SWITCHOVER,
    /*
     * The FinalDirty (the last dirty set, sent after the resume) is
     * dropped: the VM runs there on copies it cannot trust.
     */
    LINK_CUT_FINAL_DIRTY,
};

struct link_proxy {
    char *address; /* "127.0.0.1:PORT": give it to the source */
    char *target;  /* the destination's peer address */
    int listen_fd;
    GThread *accept_thread;
    GMutex lock;
    GPtrArray *conns; /* struct relay_conn *, by lock */
    enum link_cut cut;
    bool fired; /* the rule fired: the link was cut */
    bool stopping;
    /*
     * LINK_RESET_AFTER_SWITCHOVER only, set after start (before the
     * migration): the destination
     * daemon, kept stopped (SIGSTOP) from before the Switchover is passed
     * on until its connection is reset, so that it finds the message and
     * the reset together: its answer then fails every time, instead of
     * winning a race with the relay on a slow host.  0: not held.
     */
    GPid hold_pid;
    char *held; /* what the hold saw, by lock (for the test's log), or NULL */
};

/* Listen on loopback and relay to @target; false with @why (g_free it). */
bool link_proxy_start(struct link_proxy *p, const char *target,
                      enum link_cut cut, char **why);
bool link_proxy_fired(struct link_proxy *p);
void link_proxy_stop(struct link_proxy *p);

#endif /* POSTCOPYD_LINK_PROXY_H */
