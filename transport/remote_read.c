/*
 * remote_read.c - the transport-neutral entry points of remote_read.h:
 * each goes to the transport's remote_read_ops.
 */
#include "transport_impl.h"

#include <gio/gio.h>

bool transport_has_remote_read(const struct transport *t)
{
    return t->remote != NULL;
}

struct remote_listener *remote_listen(const struct transport *t,
                                      const char *host, GError **err)
{
    if (!t->remote) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "the %s transport cannot read the peer's memory", t->name);
        return NULL;
    }
    return t->remote->listen(t, host, err);
}

uint16_t remote_listener_port(const struct remote_listener *l)
{
    return l->ops->listener_port(l);
}

struct remote_link *remote_accept(struct remote_listener *l,
                                  unsigned timeout_ms, GError **err)
{
    return l->ops->accept(l, timeout_ms, err);
}

void remote_listener_close(struct remote_listener *l)
{
    if (l) {
        l->ops->listener_close(l);
    }
}

struct remote_link *remote_connect(const struct transport *t,
                                   const char *address, unsigned timeout_ms,
                                   GError **err)
{
    if (!t->remote) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "the %s transport cannot read the peer's memory", t->name);
        return NULL;
    }
    return t->remote->connect(t, address, timeout_ms, err);
}

bool remote_offer(struct remote_link *l, uint32_t region, void *addr,
                  uint64_t len, uint64_t page_size, GError **err)
{
    return l->ops->offer(l, region, addr, len, page_size, err);
}

GBytes *remote_table(struct remote_link *l)
{
    return l->ops->table(l);
}

bool remote_take_table(struct remote_link *l, const uint8_t *buf, size_t len,
                       const struct remote_region *layout, unsigned n,
                       GError **err)
{
    return l->ops->take_table(l, buf, len, layout, n, err);
}

bool remote_readable(const struct remote_link *l, uint32_t region)
{
    return l->ops->readable(l, region);
}

bool remote_target(struct remote_link *l, uint32_t region, void *local,
                   uint64_t len, GError **err)
{
    return l->ops->target(l, region, local, len, err);
}

bool remote_read_add(struct remote_link *l, uint32_t region, uint64_t offset,
                     uint64_t len, uint64_t cookie, bool urgent, GError **err)
{
    return l->ops->add(l, region, offset, len, cookie, urgent, err);
}

bool remote_read_post(struct remote_link *l, GError **err)
{
    return l->ops->post(l, err);
}

int remote_read_poll(struct remote_link *l, struct remote_done *done, int max,
                     int timeout_ms, GError **err)
{
    return l->ops->poll(l, done, max, timeout_ms, err);
}

void remote_read_wake(struct remote_link *l)
{
    l->ops->wake(l);
}

unsigned remote_read_credits(const struct remote_link *l)
{
    return l->ops->credits(l);
}

unsigned remote_read_pending(const struct remote_link *l)
{
    return l->ops->pending(l);
}

bool remote_read_reset(struct remote_link *l, struct remote_done *done)
{
    return l->ops->reset(l, done);
}

void remote_link_close(struct remote_link *l)
{
    if (l) {
        l->ops->close(l);
    }
}
