/*
 * receiver.c - one thread per data channel (urgent, each bulk stream):
 * reads frames, checks each before a byte of guest memory is touched, and
 * hands page data to the installer.
 *
 * Contract: a receiver stops at its channel's first error and reports it
 * once (dest_fail) unless its connection is an old one (epoch) or the
 * session is stopping or paused already.  The urgent receiver runs at the
 * fault path's priority: a vCPU waits for what it reads.
 */
#include "dest_session.h"

#include <gio/gio.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "fault_priority.h"

static bool receive_frame(struct dest_session *s, struct channel *ch,
                          uint8_t *buf, GError **err)
{
    struct frame_hdr h;
    const struct region *r;

    if (!channel_recv_hdr(ch, &h, err)) {
        return false;
    }
    switch (h.type) {
    case FRAME_KEEPALIVE:
        return true;
    case FRAME_SYNC:
        /* All precopy data before it on this channel has been written. */
        g_mutex_lock(&s->m->lock);
        atomic_store(&s->bulk_sync[channel_stream(ch)], h.seq);
        g_cond_broadcast(&s->m->cond);
        g_mutex_unlock(&s->m->lock);
        return true;
    case FRAME_PAGE:
    case FRAME_PAGE_ZERO:
        break;
    default:
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s channel: unexpected %s frame",
                    channel_kind_name(channel_kind(ch)),
                    frame_type_name(h.type));
        return false;
    }
    /* Every check before a byte of guest memory is touched. */
    if (!frame_check_page(&h, s->limits, s->regions->n, err)) {
        return false;
    }
    /* Request ids count up from 0 (fault_thread.c): a reply names one. */
    if ((h.flags & FRAME_F_REPLY) && h.seq >= atomic_load(&s->next_seq)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s channel: a reply to page request %u, which was never "
                    "made",
                    channel_kind_name(channel_kind(ch)), h.seq);
        return false;
    }
    r = &s->regions->regions[h.region];
    if (h.type == FRAME_PAGE_ZERO) {
        atomic_fetch_add(&s->m->stats.zero_pages, h.count);
        return dest_install_zero(s, r, h.offset / r->page_size, h.count,
                                 h.flags & FRAME_F_REPLY);
    }
    if (h.flags & FRAME_F_MORE) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "chunked huge pages are not supported yet");
        return false;
    }
    atomic_fetch_add(&s->m->stats.bytes_sent, h.len);
    atomic_fetch_add(&s->m->stats.pages_sent, h.len / r->page_size);
    return dest_install_payload(s, ch, r, &h, buf, err);
}

/* "bulk channel 0 from 10.0.0.1:4000: ", for a one-line error. */
static const char *channel_label(struct channel *ch)
{
    static __thread char buf[160];

    if (channel_kind(ch) == CHANNEL_BULK) {
        snprintf(buf, sizeof(buf),
                 "bulk channel %u from %s: ", channel_stream(ch),
                 channel_peer(ch));
    } else {
        snprintf(buf, sizeof(buf),
                 "%s channel from %s: ", channel_kind_name(channel_kind(ch)),
                 channel_peer(ch));
    }
    return buf;
}

struct receiver {
    struct dest_session *s;
    struct channel *ch;
    unsigned epoch;
};

static gpointer receive_loop(gpointer opaque)
{
    struct receiver *rc = opaque;
    struct dest_session *s = rc->s;
    g_autofree uint8_t *buf = g_malloc(FRAME_MAX_PAYLOAD);

    if (rc->ch == s->urgent) {
        fault_path_enter(s->m->engine.fault_priority,
                         engine_fault_cpus(&s->m->engine), "dst-urgent");
    }
    while (!atomic_load(&s->stop) && !page_state_all_installed(s->pst)) {
        g_autoptr(GError) err = NULL;

        if (!receive_frame(s, rc->ch, buf, &err)) {
            if (!atomic_load(&s->stop) && !atomic_load(&s->paused) &&
                rc->epoch == atomic_load(&s->epoch) && err) {
                /* Transport errors name the channel already. */
                dest_fail(s, "%s%s",
                          strstr(err->message, " channel ")
                              ? ""
                              : channel_label(rc->ch),
                          err->message);
            }
            break;
        }
    }
    g_free(rc);
    return NULL;
}

static GThread *start_receiver(struct dest_session *s, struct channel *ch,
                               const char *name)
{
    struct receiver *rc = g_new0(struct receiver, 1);

    rc->s = s;
    rc->epoch = atomic_load(&s->epoch);
    rc->ch = ch;
    return g_thread_new(name, receive_loop, rc);
}

void dest_start_receivers(struct dest_session *s)
{
    s->urgent_thread = start_receiver(s, s->urgent, "dst-urgent");
    for (unsigned i = 0; i < s->bulk_streams; i++) {
        s->bulk_thread[i] = start_receiver(s, s->bulk[i], "dst-bulk");
    }
}

void dest_join_receivers(struct dest_session *s)
{
    if (s->urgent_thread) {
        g_thread_join(s->urgent_thread);
        s->urgent_thread = NULL;
    }
    for (unsigned i = 0; i < DEST_MAX_STREAMS; i++) {
        if (s->bulk_thread[i]) {
            g_thread_join(s->bulk_thread[i]);
            s->bulk_thread[i] = NULL;
        }
    }
}
