/* Datagrams: a second way for the frames that keep a leader in office.
 * TCP hands nothing to the reader behind a lost segment until that segment
 * is sent again, 200 ms later at the least and then backing off, so under
 * packet loss a heartbeat can be late by more than an election timeout.
 * peer_send_urgent sends such a frame on the connection as ever and also
 * as one UDP datagram, from the UDP socket bound at the listen address to
 * the peer's: each datagram is lost or not on its own, and the first copy
 * to arrive counts (the caller sends only frames that may arrive twice and
 * out of order). Format and checks: wire.c.
 *
 * Owns the UDP socket, the datagram counters of the transport and the
 * per-peer replay state. Datagrams are off without a listener, with
 * opts.no_datagrams, and with peer TLS but no cluster token (nothing to
 * sign them with). To a peer they go only once its own newest connection
 * to us said it takes them (a node before datagrams does not). */
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "transport/internal.h"

static bool same_addr(const struct sockaddr *a, const struct sockaddr_storage *b)
{
    if (a->sa_family != b->ss_family)
        return false;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port &&
               x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}

static void rejected(struct peer_transport *t, const char *why)
{
    t->st.dgrams_rejected++;
    uint64_t dropped;
    if (craft_ratelimit_allow(&t->rl_dgram, uv_now(t->loop), &dropped))
        CRAFT_DEBUG(t->log, "peer datagram dropped: %s (%llu similar lines "
                    "suppressed)", why, (unsigned long long)dropped);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct peer_transport *t = h->data;
    *buf = uv_buf_init((char *)t->dg_in, sizeof t->dg_in);
}

static void on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *from, unsigned flags)
{
    struct peer_transport *t = u->data;
    if (nread <= 0 || from == NULL || t->closing)
        return; /* nothing, or an error the next datagram does not share */
    if ((flags & UV_UDP_PARTIAL) || (size_t)nread > PEER__DGRAM_MAX) {
        rejected(t, "too long");
        return;
    }
    struct peer__dgram d;
    const uint8_t *payload;
    size_t len;
    if (peer__dgram_decode((const uint8_t *)buf->base, (size_t)nread,
                           t->have_key ? t->key : NULL, &d, &payload,
                           &len) != 0) {
        rejected(t, t->have_key ? "bad format or MAC" : "bad format or CRC");
        return;
    }
    struct peer__out *p = peer__find(t, d.sender);
    if (d.target != t->self_id || p == NULL || !p->dgram_ok) {
        rejected(t, "not for us, or from no peer that sends them");
        return;
    }
    /* Without a token, the source address is all there is to go by. */
    if (!t->have_key && (!p->have_addr || !same_addr(from, &p->addr))) {
        rejected(t, "not from the peer's address");
        return;
    }
    if (d.epoch < p->dg_epoch || (d.epoch == p->dg_epoch && d.seq <= p->dg_seq)) {
        t->st.dgrams_stale++; /* reordered, or sent again by someone */
        return;
    }
    p->dg_epoch = d.epoch;
    p->dg_seq = d.seq;
    t->st.dgrams_received++;
    t->on_frame(t->ud, d.sender, payload, len);
}

void peer__dgram_open(struct peer_transport *t, const struct sockaddr *sa)
{
    if (t->no_dgram)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->dg_epoch = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    craft_ratelimit_init(&t->rl_dgram, 5000, 5);
    int err = uv_udp_init(t->loop, &t->udp);
    if (err) {
        CRAFT_WARN(t->log, "peer datagrams off: %s", peer_strerror(err));
        return;
    }
    t->udp.data = t;
    t->refs++;
    t->udp_open = true;
    err = uv_udp_bind(&t->udp, sa, 0);
    if (err == 0)
        err = uv_udp_recv_start(&t->udp, on_alloc, on_recv);
    if (err) {
        CRAFT_WARN(t->log, "peer datagrams off: cannot bind UDP port %u: %s",
                   t->port, peer_strerror(err));
        peer__dgram_close(t);
    }
}

static void on_udp_closed(uv_handle_t *h)
{
    peer__unref(h->data);
}

void peer__dgram_close(struct peer_transport *t)
{
    if (!t->udp_open)
        return;
    t->udp_open = false;
    uv_close((uv_handle_t *)&t->udp, on_udp_closed);
}

void peer__dgram_peer(struct peer_transport *t, uint64_t id, bool takes)
{
    struct peer__out *p = peer__find(t, id);
    if (p == NULL)
        return;
    p->dgram_ok = takes;
    /* A new connection may be a restart, whose clock may have gone back:
     * its epoch starts over. */
    p->dg_epoch = 0;
    p->dg_seq = 0;
}

int peer__dgram_send(struct peer_transport *t, struct peer__out *p,
                     const uint8_t *buf, size_t len)
{
    if (!t->udp_open || !p->dgram_ok || !p->have_addr)
        return CRAFT_ENOTFOUND;
    uint8_t out[PEER__DGRAM_MAX];
    struct peer__dgram d = {.sender = t->self_id, .target = p->id,
                            .epoch = t->dg_epoch, .seq = t->dg_seq + 1};
    size_t n = peer__dgram_encode(out, &d, buf, len,
                                  t->have_key ? t->key : NULL);
    if (n == 0)
        return CRAFT_ETOOBIG;
    t->dg_seq++;
    uv_buf_t b = uv_buf_init((char *)out, (unsigned)n);
    int rv = uv_udp_try_send(&t->udp, &b, 1, (const struct sockaddr *)&p->addr);
    if (rv < 0) {
        t->st.dgrams_unsent++;
        return rv;
    }
    t->st.dgrams_sent++;
    return 0;
}
