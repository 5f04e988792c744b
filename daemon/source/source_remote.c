/*
 * source_remote.c - the source's side of a destination that reads this
 * VMM's memory itself (remote_read.h; rdma): connect the READ link the
 * LayoutReply named, offer the file-backed regions, and in precopy
 * declare each round's pages instead of sending them.
 *
 * Contract: a region is offered only if it has an alias mapping of its
 * file (shmem, hugetlbfs); anonymous RAM is the VMM's private memory and
 * keeps the frame path.  A round's ReadRound lists exactly the pages the
 * TCP path would have sent for it (the dirty tracker's view), and the
 * round is over when the destination answers that it read them all, so
 * the write-protect order of precopy.c holds unchanged.  The link lives
 * until the session ends, or until the first reconnect: after a pause
 * every missing page travels in frames.
 */
#include "source.h"

#include <gio/gio.h>
#include <string.h>

#include "daemon.h"
#include "dirty_set.h"
#include "hostport.h"

/* The destination's READ link: its host as dialed, the port it named. */
static char *link_address(const char *peer_uri, uint32_t port, GError **err)
{
    g_autofree char *host = NULL;
    uint16_t p;

    if (!hostport_parse(peer_uri, HOSTPORT_DEFAULT_PORT, 0, &host, &p, err)) {
        return NULL;
    }
    return g_strdup_printf(strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

static bool offer_regions(struct source_session *s, GError **err)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];

        if (r->kind == BACKING_ANON || !r->alias) {
            continue; /* not ours to register: frames */
        }
        if (!remote_offer(s->rlink, r->id, r->alias, r->size, r->page_size,
                          err)) {
            return false;
        }
        s->offered[i] = true;
    }
    return true;
}

static bool send_table(struct source_session *s, GError **err)
{
    Postcopy__Peer__ReadableMemory rm = POSTCOPY__PEER__READABLE_MEMORY__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(GBytes) table = remote_table(s->rlink);
    g_autoptr(PeerMessage) reply = NULL;
    gsize len;

    rm.table.data = (uint8_t *)g_bytes_get_data(table, &len);
    rm.table.len = len;
    rm.no_bulk = !s->m->params.postcopy_bulk;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_READABLE_MEMORY;
    msg.readable_memory = &rm;
    if (!channel_send_msg(s->control, &msg, err)) {
        return false;
    }
    reply = source_expect_msg(
        s->control, POSTCOPY__PEER__PEER_MESSAGE__MSG_READABLE_MEMORY_REPLY,
        err);
    if (!reply) {
        return false;
    }
    if (!reply->readable_memory_reply->ok) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "destination refused the readable memory: %s",
                    reply->readable_memory_reply->error);
        return false;
    }
    return true;
}

bool source_remote_setup(struct source_session *s, uint32_t port, GError **err)
{
    struct daemon *d = s->m->daemon;
    g_autofree char *addr = NULL;
    unsigned n = 0;

    if (!port) {
        return true; /* the destination's transport reads nothing */
    }
    if (!transport_has_remote_read(d->transport)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the destination offers a READ link this transport "
                    "does not have");
        return false;
    }
    addr = link_address(s->m->peer_uri, port, err);
    s->rlink = addr ? remote_connect(d->transport, addr,
                                     d->topts.connect_timeout_ms, err)
                    : NULL;
    if (!s->rlink || !offer_regions(s, err) || !send_table(s, err)) {
        g_prefix_error(err, "READ link: ");
        return false;
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        n += s->offered[i];
    }
    s->reads_on = n > 0;
    g_message("migration %s: READ link to %s up: the destination reads %u "
              "of %zu region(s) itself",
              s->m->id, addr, n, s->regions->n);
    return true;
}

bool source_remote_skips(const struct source_session *s, size_t region)
{
    return s->reads_on && s->offered[region];
}

struct round_set {
    unsigned long *maps[REGION_MAX];
    uint64_t pages, bytes;
};

/* The pages of offered regions this round sends: all, or the pending. */
static void round_set_fill(struct source_session *s, bool all,
                           struct round_set *rs)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];
        size_t longs = BITS_TO_LONGS(region_pages(r));
        uint64_t n = 0;

        rs->maps[i] = g_new0(unsigned long, longs);
        if (!s->offered[i]) {
            continue;
        }
        for (uint64_t p = 0; p < region_pages(r); p++) {
            if (all || bitmap_test_bit(s->pending[i], p)) {
                bitmap_set_bit(rs->maps[i], p);
                n++;
            }
        }
        rs->pages += n;
        rs->bytes += n * r->page_size;
    }
}

static void round_set_free(struct source_session *s, struct round_set *rs)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        g_free(rs->maps[i]);
    }
}

/* Read there: counted as sent, as the frames would have been. */
static void count_read(struct source_session *s, const struct round_set *rs)
{
    const struct page_counters *c = &s->bulk[0].sender.counters;

    atomic_fetch_add(c->pages, rs->pages);
    atomic_fetch_add(&s->m->stats.pages_read, rs->pages);
    atomic_fetch_add(c->bytes, rs->bytes);
    if (c->phase_bytes) {
        atomic_fetch_add(c->phase_bytes, rs->bytes);
    }
}

static bool send_round(struct source_session *s, const struct round_set *rs,
                       bool final, GError **err)
{
    Postcopy__Peer__ReadRound rr = POSTCOPY__PEER__READ_ROUND__INIT;
    Postcopy__Peer__Switchover pages = POSTCOPY__PEER__SWITCHOVER__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    bool sent;

    dirty_set_encode(s->regions, rs->maps, &pages);
    rr.round = s->read_round;
    rr.pages = &pages;
    rr.final = final;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_READ_ROUND;
    msg.read_round = &rr;
    sent = channel_send_msg(s->control, &msg, err);
    dirty_set_clear(&pages);
    return sent;
}

bool source_remote_round(struct source_session *s, bool all, bool final,
                         GError **err)
{
    struct round_set rs = {0};
    g_autoptr(PeerMessage) reply = NULL;
    const Postcopy__Peer__ReadRoundReply *rrr;
    bool ok;

    if (!s->reads_on) {
        return true;
    }
    s->read_round++;
    round_set_fill(s, all, &rs);
    ok = send_round(s, &rs, final, err);
    /* The round ends when every declared page is read there. */
    reply = ok ? source_expect_msg(
                     s->control,
                     POSTCOPY__PEER__PEER_MESSAGE__MSG_READ_ROUND_REPLY, err)
               : NULL;
    rrr = reply ? reply->read_round_reply : NULL;
    if (rrr && (rrr->round != s->read_round || rrr->pages_read != rs.pages)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "destination answered read round %u with %" G_GUINT64_FORMAT
                    " page(s); round %u declared %" G_GUINT64_FORMAT,
                    rrr->round, rrr->pages_read, s->read_round, rs.pages);
        rrr = NULL;
    }
    if (rrr) {
        count_read(s, &rs);
    }
    round_set_free(s, &rs);
    return rrr != NULL;
}

void source_remote_close(struct source_session *s)
{
    s->reads_on = false;
    g_clear_pointer(&s->rlink, remote_link_close);
}
