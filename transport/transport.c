/*
 * transport.c - the transport-neutral entry points of transport.h:
 * options, listen/connect dispatch and listeners.  Channels are channel.c.
 */
#include "transport_impl.h"

#include <gio/gio.h>

#include "auth.h"
#include "config-host.h"
#include "hostport.h"
#include "tls.h"
#ifdef CONFIG_RDMA
#include "rdma.h"
#endif

void transport_options_init(struct transport_options *opts)
{
    *opts = (struct transport_options){
        .connect_timeout_ms = 10000,
        .tcp =
            {
                .user_timeout_ms = 30000,
                .keepalive_idle_s = 10,
                .keepalive_interval_s = 5,
                .keepalive_count = 3,
                .bulk_buffer_bytes = 0,
            },
    };
}

/* Every transport this build has, by the name config and Hello use. */
static const struct transport *(*const transports[])(void) = {
    transport_tcp,
#ifdef CONFIG_RDMA
    transport_rdma,
    transport_rdma_double, /* NULL unless POSTCOPYD_TEST_DOUBLES=1 */
#endif
};

const struct transport *transport_by_name(const char *name, GError **err)
{
    g_autoptr(GString) known = g_string_new(NULL);

    for (size_t i = 0; i < G_N_ELEMENTS(transports); i++) {
        const struct transport *t = transports[i]();

        if (!t) {
            continue;
        }
        if (g_str_equal(name, t->name)) {
            return t;
        }
        g_string_append_printf(known, "%s%s", i ? ", " : "", t->name);
    }
    if (g_str_equal(name, "rdma-test-double")) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "transport 'rdma-test-double' is a test double of the "
                    "RDMA NIC, for tests only: it needs an RDMA build and "
                    "POSTCOPYD_TEST_DOUBLES=1 in the daemon's environment");
        return NULL;
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                "unknown transport '%s' (this build has: %s)", name,
                known->str);
    return NULL;
}

const char *transport_name(const struct transport *t)
{
    return t->name;
}

bool transport_probe(const struct transport *t, GError **err)
{
    return !t->probe || t->probe(err);
}

static const struct transport_options *
options_or_default(const struct transport_options *opts,
                   struct transport_options *defaults)
{
    if (opts) {
        return opts;
    }
    transport_options_init(defaults);
    return defaults;
}

struct listener *transport_listen(const struct transport *t,
                                  const char *address,
                                  const struct transport_options *opts,
                                  GError **err)
{
    struct transport_options defaults;
    struct listener *l;

    opts = options_or_default(opts, &defaults);
    l = t->listen(address, opts, err);
    if (!l) {
        g_prefix_error(err, "%s listen on %s: ", t->name, address);
        return NULL;
    }
    l->security = opts->security;
    return l;
}

/* TLS then authentication, the client side; consumes @ch on failure. */
static struct channel *secure_client(struct channel *ch, const char *address,
                                     const struct transport_security *sec,
                                     GError **err)
{
    g_autofree char *host = NULL;
    uint16_t port;

    /* The certificate must name the host as it was dialed. */
    hostport_parse(address, HOSTPORT_DEFAULT_PORT, HOSTPORT_ANY_HOST, &host,
                   &port, NULL);
    ch = tls_client(ch, sec->tls, host, err);
    if (!ch) {
        return NULL;
    }
    channel_set_timeout(ch, AUTH_TIMEOUT_MS, NULL);
    if (!auth_client(ch, sec->psk, err)) {
        channel_close(ch);
        return NULL;
    }
    channel_set_timeout(ch, 0, NULL);
    return ch;
}

struct channel *transport_connect(const struct transport *t,
                                  const char *address, enum channel_kind kind,
                                  uint32_t stream,
                                  const struct transport_options *opts,
                                  GError **err)
{
    struct transport_options defaults;
    struct channel *ch;

    if (kind != CHANNEL_CONTROL && kind != CHANNEL_URGENT &&
        kind != CHANNEL_BULK) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "%s connect to %s: invalid channel kind %d", t->name,
                    address, kind);
        return NULL;
    }
    opts = options_or_default(opts, &defaults);
    ch = t->connect(address, kind, stream, opts, err);
    if (!ch) {
        g_prefix_error(err, "%s %s channel connect to %s: ", t->name,
                       channel_kind_name(kind), address);
        return NULL;
    }
    return secure_client(ch, address, &opts->security, err);
}

void listener_init(struct listener *l, const struct listener_ops *ops,
                   const char *address)
{
    l->ops = ops;
    l->address = g_strdup(address);
}

struct channel *listener_accept(struct listener *l, GError **err)
{
    struct channel *ch = l->ops->accept(l, err);

    if (!ch) {
        g_prefix_error(err, "accept on %s: ", l->address);
        return NULL;
    }
    ch->security = l->security;
    return ch;
}

struct channel *listener_handshake(struct channel *ch, int64_t deadline,
                                   GError **err)
{
    struct transport_security sec = ch->security;

    ch = tls_server(ch, sec.tls, err);
    if (!ch) {
        return NULL;
    }
    channel_set_timeout(ch, AUTH_TIMEOUT_MS, NULL);
    channel_set_deadline(ch, deadline);
    if (!auth_server(ch, sec.psk, err)) {
        channel_close(ch);
        return NULL;
    }
    channel_set_timeout(ch, 0, NULL);
    return ch;
}

int listener_fd(const struct listener *l)
{
    return l->ops->fd(l);
}

const char *listener_address(const struct listener *l)
{
    return l->address;
}

void listener_close(struct listener *l)
{
    if (!l) {
        return;
    }
    g_free(l->address);
    l->ops->destroy(l);
}
