/* Datagrams: a second way for the frames that keep a leader in office.
 * TCP hands nothing to the reader behind a lost segment until that segment
 * is sent again, 200 ms later at the least and then backing off, so under
 * packet loss a heartbeat can be late by more than an election timeout.
 * peer_send_urgent sends such a frame on the connection as ever and also
 * as one UDP datagram, from the UDP socket bound at the listen address to
 * the peer's: each datagram is lost or not on its own, and the first copy
 * to arrive counts (the caller sends only frames that may arrive twice and
 * out of order). A datagram taken is remembered until its TCP copy comes,
 * and that copy is dropped (peer__dgram_twin): each side answers once.
 * Format, and the key each acceptor gives its dialers for them: wire.c.
 *
 * Owns the UDP socket, the datagram counters of the transport, the keys
 * given (on inbound connections) and taken (on outbound ones), and the
 * check of what arrives: a datagram counts only under the key its sender's
 * newest connection to us was given, numbered above the last one taken.
 * Datagrams are off without a listener and with opts.no_datagrams; a peer
 * before datagrams asks for no key and gives none, and so sends and gets
 * none. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/error.h"
#include "transport/internal.h"
#include "transport/tls.h"

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

/* The sender's newest established connection, if we gave it a key. */
static struct peer__in *keyed_conn(const struct peer_transport *t, uint64_t id)
{
    for (struct peer__in *c = t->ins; c != NULL; c = c->next) /* newest first */
        if (c->hello_done && !c->closing && c->from == id)
            return c->dg_mac != NULL ? c : NULL;
    return NULL;
}

/* Keep a datagram taken from c's dialer until its TCP copy comes. The
 * copy is the same bytes: dropping it is the network losing a duplicate,
 * which Raft allows, and it spares both ends a second answer. A slot whose
 * copy never comes (the frame did not fit the connection's queue) is
 * taken over by later datagrams; meanwhile it could drop a later frame
 * only if that frame were the same bytes again, a duplicate as well. */
static void remember(struct peer__in *c, const uint8_t *payload, size_t len)
{
    if (len == 0 || len > PEER__TWIN_MAX)
        return;
    struct peer__twin *w = &c->twins[c->twin_next];
    c->twin_next = (c->twin_next + 1) % PEER__TWINS;
    w->len = (uint8_t)len;
    memcpy(w->bytes, payload, len);
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
    const uint8_t *in = (const uint8_t *)buf->base;
    struct peer__dgram d;
    const uint8_t *payload;
    size_t len;
    if (peer__dgram_parse(in, (size_t)nread, &d, &payload, &len) != 0) {
        rejected(t, "not a craftd datagram");
        return;
    }
    struct peer__in *c = keyed_conn(t, d.sender);
    if (d.target != t->self_id || c == NULL) {
        rejected(t, "not for us, or from a sender we gave no key");
        return;
    }
    if (!peer__dgram_mac_ok(in, (size_t)nread, c->dg_mac)) {
        rejected(t, "bad MAC");
        return;
    }
    if (d.seq <= c->dg_seq) {
        t->st.dgrams_stale++; /* reordered, or sent again by someone */
        return;
    }
    c->dg_seq = d.seq;
    c->dg_taken_at = uv_now(t->loop);
    t->st.dgrams_received++;
    remember(c, payload, len);
    peer__heard_from(t, d.sender);
    t->on_frame(t->ud, d.sender, payload, len);
}

bool peer__dgram_heard(const struct peer_transport *t, uint64_t id,
                       uint64_t since)
{
    const struct peer__in *c = keyed_conn(t, id);
    return c != NULL && c->dg_seq > 0 && c->dg_taken_at >= since;
}

bool peer__dgram_twin(struct peer__in *c, const uint8_t *frame, size_t len)
{
    for (unsigned i = 0; i < PEER__TWINS; i++) {
        struct peer__twin *w = &c->twins[i];
        if (w->len == len && memcmp(w->bytes, frame, len) == 0) {
            w->len = 0;
            c->t->st.frames_twins++;
            return true;
        }
    }
    return false;
}

void peer__dgram_open(struct peer_transport *t, const struct sockaddr *sa)
{
    if (t->no_dgram)
        return;
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

static void on_key_written(uv_write_t *req, int status)
{
    struct peer__in *c = req->data;
    OPENSSL_cleanse(c->kout, sizeof c->kout); /* the key stays in dg_key */
    if (status < 0 && !c->closing)
        peer__in_close(c);
}

int peer__dgram_give_key(struct peer__in *c)
{
    struct peer_transport *t = c->t;
    if (!t->udp_open || !(c->flags & PEER__HELLO_DGRAM))
        return 0;
    if (RAND_bytes(c->dg_key, sizeof c->dg_key) != 1)
        return 0; /* no datagrams from this one: TCP alone, as before */
    c->dg_mac = peer__dgmac_new(c->dg_key);
    if (c->dg_mac == NULL)
        return 0; /* the same */
    peer__dgkey_encode(c->kout, c->dg_key);
    uv_buf_t b = uv_buf_init((char *)c->kout, sizeof c->kout);
    c->kreq.data = c;
    int err = peer__conn_write(c->tls, &c->kreq, (uv_stream_t *)&c->tcp, &b, 1,
                               on_key_written);
    if (err) {
        peer__in_close(c);
        return err;
    }
    c->dg_seq = 0;
    return 0;
}

void peer__dgram_unkey(struct peer__out *p)
{
    peer__dgmac_free(p->dg_mac);
    p->dg_mac = NULL;
}

int peer__dgram_send(struct peer_transport *t, struct peer__out *p,
                     const uint8_t *buf, size_t len)
{
    if (!t->udp_open || p->dg_mac == NULL || p->state != PEER__CONNECTED)
        return CRAFT_ENOTFOUND;
    uint8_t out[PEER__DGRAM_MAX];
    struct peer__dgram d = {.sender = t->self_id, .target = p->id,
                            .seq = p->dg_seq + 1};
    size_t n = peer__dgram_encode(out, &d, buf, len, p->dg_mac);
    if (n == 0)
        return CRAFT_ETOOBIG;
    p->dg_seq++;
    uv_buf_t b = uv_buf_init((char *)out, (unsigned)n);
    int rv = uv_udp_try_send(&t->udp, &b, 1, (const struct sockaddr *)&p->addr);
    if (rv < 0) {
        t->st.dgrams_unsent++;
        return rv;
    }
    t->st.dgrams_sent++;
    return 0;
}
