/* The listening socket and the connections accepted on it: run the
 * handshake (with a cluster token, the challenge-response of wire.c) before
 * anything else is read, then read into one growable buffer per connection
 * and hand each complete, CRC-checked frame to on_frame in order. Enforces
 * the inbound limits: connection counts, deadlines, frame size.
 *
 * The handshake goes through hs_write() and the bytes on_in_read delivers,
 * never through the socket otherwise, so that a stream layer (TLS) can sit
 * under it: it would feed decrypted bytes to on_in_read and take hs_write's
 * bytes to encrypt. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/error.h"
#include "transport/internal.h"
#include "transport/tls.h"

/* Read at least this much per read call. */
#define READ_CHUNK (64u << 10)
/* ... and at most this much more at once for one big frame, so that the
 * buffer grows with the bytes that came, not with the length announced. */
#define READ_MAX (1u << 20)
/* Read buffers bigger than this are freed when emptied, not kept. */
#define KEEP_BYTES (4u << 20)

static void in_name(const struct peer__in *c, char *out, size_t len)
{
    struct sockaddr_storage ss;
    int n = sizeof ss;
    char ip[64] = "?";
    unsigned port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &n) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const void *)&ss;
            uv_ip6_name(a, ip, sizeof ip);
            port = ntohs(a->sin6_port);
        } else {
            const struct sockaddr_in *a = (const void *)&ss;
            uv_ip4_name(a, ip, sizeof ip);
            port = ntohs(a->sin_port);
        }
    }
    snprintf(out, len, "%s:%u", ip, port);
}

static void on_in_closed(uv_handle_t *h)
{
    struct peer__in *c = h->data;
    struct peer_transport *t = c->t;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        t->ins = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    t->st.conns_open--;
    peer__buf_free(&c->rbuf);
    peer__tlsc_free(c->tls);
    OPENSSL_cleanse(c->dg_key, sizeof c->dg_key);
    peer__dgmac_free(c->dg_mac);
    craft_free(c);
    peer__unref(t);
}

void peer__in_close(struct peer__in *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->t->n_live--;
    if (!c->hello_done)
        c->t->n_unauth--;
    uv_close((uv_handle_t *)&c->tcp, on_in_closed);
}

/* One warning an outsider can cause, through the rate limit. */
__attribute__((format(printf, 2, 3))) static void bad_line(
    struct peer_transport *t, const char *fmt, ...)
{
    uint64_t dropped;
    if (!craft_ratelimit_allow(&t->rl_bad, uv_now(t->loop), &dropped))
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (dropped > 0)
        CRAFT_WARN(t->log, "%s (%llu similar lines suppressed)", msg,
                   (unsigned long long)dropped);
    else
        CRAFT_WARN(t->log, "%s", msg);
}

/* A protocol violation: count it, say why (rate-limited), hang up. */
static void reject(struct peer__in *c, int err, const char *what)
{
    struct peer_transport *t = c->t;
    char name[80];
    in_name(c, name, sizeof name);
    t->st.conns_rejected++;
    bad_line(t, "closing peer connection from %s: %s: %s", name, what,
             peer_strerror(err));
    peer__in_close(c);
}

/* Frames from one sender arrive on its newest connection; an older one is
 * a leftover of a connection the sender gave up on (e.g. half-dead after a
 * partition) and is closed. */
static void close_older(struct peer__in *c)
{
    for (struct peer__in *o = c->t->ins; o != NULL; o = o->next)
        if (o != c && o->hello_done && o->from == c->from)
            peer__in_close(o);
}

/* Refuse a dialer for who it is or whom it means to reach: tell it why
 * (best effort: one small write into an empty socket buffer), report it,
 * hang up. Frames it sent after its handshake are dropped unread. */
static void refuse_dialer(struct peer__in *c, const struct peer__hello *h,
                          int reason)
{
    struct peer_transport *t = c->t;
    struct peer__refusal_rec rec = {.reason = (uint16_t)reason,
                                    .id = t->self_id,
                                    .cluster = t->cluster_id,
                                    .tag = t->self_tag};
    uint8_t out[PEER__REFUSAL_LEN];
    peer__refusal_encode(out, &rec);
    uv_buf_t b = uv_buf_init((char *)out, sizeof out);
    (void)peer__conn_try_write(c->tls, (uv_stream_t *)&c->tcp, &b, 1);
    char name[80];
    in_name(c, name, sizeof name);
    t->st.conns_refused++;
    CRAFT_DEBUG(t->log, "refusing peer %016llx from %s (cluster %016llx, "
                "meant for %016llx): reason %d", (unsigned long long)h->sender,
                name, (unsigned long long)h->cluster,
                (unsigned long long)h->target, reason);
    peer__in_close(c);
    if (t->on_refused != NULL) {
        struct peer_refusal r = {
            .inbound = true,
            .reason = reason,
            .peer_id = h->sender,
            .peer_cluster = h->cluster,
            .target = h->target,
            .target_tag = h->target_tag,
            .addr = name,
        };
        t->on_refused(t->ud, &r);
    }
}

static void on_hs_written(uv_write_t *req, int status)
{
    struct peer__in *c = req->data;
    if (status < 0 && !c->closing) {
        CRAFT_DEBUG(c->t->log, "peer handshake write: %s",
                    peer_strerror(status));
        peer__in_close(c);
    }
}

/* Send handshake bytes (c->out, len of them) to the dialer. 0 or an error
 * (c is then closed). One write at most is in flight: the dialer answers
 * only after it has read all of it. */
static int hs_write(struct peer__in *c, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)len);
    c->wreq.data = c;
    int err = peer__conn_write(c->tls, &c->wreq, (uv_stream_t *)&c->tcp, &b, 1,
                               on_hs_written);
    if (err)
        peer__in_close(c);
    return err;
}

/* The dialer is who it says (proved, or no token): check whom it means to
 * reach, then take its frames. 0, or an error (c is closed). */
static int establish(struct peer__in *c, const struct peer__hello *h)
{
    struct peer_transport *t = c->t;
    if (t->cluster_id != 0 && h->cluster != 0 && h->cluster != t->cluster_id) {
        refuse_dialer(c, h, PEER_REFUSED_CLUSTER);
        return CRAFT_EINVAL;
    }
    if (h->target != t->self_id) {
        refuse_dialer(c, h, PEER_REFUSED_TARGET);
        return CRAFT_EINVAL;
    }
    c->from = h->sender;
    c->flags = h->flags;
    c->hello_done = true;
    c->state = PEER__IN_OPEN;
    t->n_unauth--;
    char name[80], who[PEER_NAME_MAX + 1];
    in_name(c, name, sizeof name);
    if (craft_ratelimit_allow(&t->rl_conn, uv_now(t->loop), NULL))
        CRAFT_INFO(t->log, "peer %s connected from %s%s",
                   peer__name(t, c->from, who, sizeof who), name,
                   t->have_key ? " (cluster token proved)" : "");
    close_older(c);
    return peer__dgram_give_key(c);
}

/* The hello is all there (rbuf holds exactly it). Without a token, a v2
 * hello is all it takes; with one, answer a v3 hello with the challenge. */
static int take_hello(struct peer__in *c)
{
    struct peer_transport *t = c->t;
    struct peer__hello h;
    unsigned version = 0;
    int err = peer__hello_decode(c->rbuf.data, c->rbuf.len, &h, &version);
    if (err == CRAFT_ETRUNCATED)
        return 0;
    if (err == CRAFT_EVERSION) {
        char what[120];
        snprintf(what, sizeof what, "handshake version %u (this node speaks "
                 "%u: every node must run the same craftd)", version,
                 t->have_key ? PEER__VERSION_AUTH : PEER__VERSION);
        reject(c, err, what);
        return err;
    }
    if (err == 0 && t->have_key && h.version != PEER__VERSION_AUTH) {
        t->st.conns_auth_failed++;
        reject(c, CRAFT_EINVAL, "handshake without the cluster-token proof "
               "(this node requires the cluster token)");
        return CRAFT_EINVAL;
    }
    if (err == 0 && !t->have_key && h.version == PEER__VERSION_AUTH) {
        t->st.conns_auth_failed++;
        reject(c, CRAFT_EINVAL, "the dialer has a cluster token and this "
               "node has none");
        return CRAFT_EINVAL;
    }
    if (err) {
        reject(c, err, c->rbuf.len >= PEER__HELLO_LEN ? "bad handshake"
                                                       : "bad handshake magic");
        return err;
    }
    /* peer TLS: the certificate must name the claimed sender. */
    if (c->tls != NULL) {
        char addr[80];
        in_name(c, addr, sizeof addr);
        if (!peer__tlsc_binds(c->tls, h.sender, addr)) {
            t->st.conns_rejected++;
            peer__in_close(c);
            return CRAFT_EINVAL;
        }
    }
    if (!t->have_key) {
        c->rbuf.len = 0;
        return establish(c, &h) == 0 ? 1 : CRAFT_EINVAL;
    }
    memcpy(c->hello, c->rbuf.data, PEER__HELLO3_LEN);
    c->rbuf.len = 0;
    uint8_t mac[PEER__MAC_LEN];
    err = peer__nonce(c->nonce_a);
    if (err == 0)
        err = peer__mac(mac, t->key, true, c->hello, c->nonce_a);
    if (err) {
        reject(c, err, "handshake (libcrypto)");
        return err;
    }
    peer__challenge_encode(c->out, c->nonce_a, mac);
    c->state = PEER__IN_PROOF;
    err = hs_write(c, PEER__CHALLENGE_LEN);
    return err ? err : 0;
}

/* The dialer's proof: it holds the token only if its MAC covers our fresh
 * nonce and its hello under the key. */
static int take_proof(struct peer__in *c)
{
    struct peer_transport *t = c->t;
    if (c->rbuf.len < PEER__PROOF_LEN)
        return 0;
    uint8_t mac[PEER__MAC_LEN];
    if (peer__proof_decode(c->rbuf.data, mac) != 0 ||
        !peer__mac_ok(t->key, false, c->hello, c->nonce_a, mac)) {
        t->st.conns_auth_failed++;
        reject(c, CRAFT_EINVAL, "failed cluster-token proof (another token, "
               "or not a craftd peer)");
        return CRAFT_EINVAL;
    }
    c->rbuf.len = 0;
    struct peer__hello h;
    if (peer__hello_decode(c->hello, PEER__HELLO3_LEN, &h, NULL) != 0) {
        reject(c, CRAFT_ECORRUPT, "bad handshake");
        return CRAFT_ECORRUPT;
    }
    return establish(c, &h) == 0 ? 1 : CRAFT_EINVAL;
}

/* Run the handshake on what came. 1: done (frames may follow), 0: wait for
 * more, negative: c is closed. */
static int handshake(struct peer__in *c)
{
    return c->state == PEER__IN_HELLO ? take_hello(c) : take_proof(c);
}

/* How many more handshake bytes to read: never past the current message,
 * so that nothing after it is read before the dialer is proved. */
static size_t hs_need(const struct peer__in *c)
{
    size_t want;
    if (c->state == PEER__IN_PROOF)
        want = PEER__PROOF_LEN;
    else if (c->rbuf.len >= 6 && craft_get16(c->rbuf.data + 4) ==
                                     PEER__VERSION_AUTH)
        want = PEER__HELLO3_LEN;
    else
        want = PEER__HELLO_LEN;
    return want > c->rbuf.len ? want - c->rbuf.len : 1;
}

static void dispatch(struct peer__in *c)
{
    struct peer_transport *t = c->t;
    size_t off = 0;
    if (!c->hello_done) {
        if (handshake(c) <= 0)
            return;
        if (c->rbuf.len == 0)
            return;
    }
    while (!c->closing) {
        const uint8_t *f = c->rbuf.data + off;
        uint32_t len;
        int err = peer__frame_next(f, c->rbuf.len - off, t->max_frame, &len);
        if (err == CRAFT_ETRUNCATED)
            break;
        if (err) {
            reject(c, err, err == CRAFT_ETOOBIG ? "frame length" : "frame CRC");
            return;
        }
        off += PEER__FRAME_HDR + len;
        if (peer__dgram_twin(c, f + PEER__FRAME_HDR, len))
            continue; /* its datagram came first */
        t->st.frames_received++;
        t->st.bytes_received += len;
        peer__heard_from(t, c->from);
        t->on_frame(t->ud, c->from, f + PEER__FRAME_HDR, len);
    }
    if (c->closing)
        return; /* closed from on_frame; the buffer goes at close */
    c->rbuf.len -= off;
    if (c->rbuf.len > 0 && off > 0)
        memmove(c->rbuf.data, c->rbuf.data + off, c->rbuf.len);
    /* The frame deadline runs from the first byte of an unfinished frame. */
    if (c->rbuf.len == 0)
        c->partial = false;
    else if (!c->partial || off > 0) {
        c->partial = true;
        c->partial_since = uv_now(t->loop);
    }
    if (c->rbuf.len == 0 && c->rbuf.cap > KEEP_BYTES)
        peer__buf_free(&c->rbuf);
}

/* The frame deadline of c: the base plus 1 s per MiB announced. */
static uint64_t frame_deadline_ms(const struct peer__in *c)
{
    uint64_t ms = c->t->frame_timeout_ms;
    if (c->rbuf.len >= PEER__FRAME_HDR)
        ms += (uint64_t)craft_get32(c->rbuf.data) * 1000 / (1u << 20);
    return ms;
}

void peer__in_reap(struct peer_transport *t)
{
    uint64_t now = uv_now(t->loop);
    for (struct peer__in *c = t->ins; c != NULL; c = c->next) {
        if (c->closing)
            continue;
        if (!c->hello_done &&
            now - c->accepted_at >= t->handshake_timeout_ms) {
            t->st.conns_timed_out++;
            reject(c, CRAFT_ETIMEOUT, "handshake deadline");
        } else if (c->hello_done && c->partial &&
                   now - c->partial_since >= frame_deadline_ms(c)) {
            t->st.conns_timed_out++;
            reject(c, CRAFT_ETIMEOUT, "frame deadline (a frame began and "
                   "did not arrive whole)");
        }
    }
}

/* Room for a read: a chunk, or the rest of a big frame at once. */
static void on_in_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct peer__in *c = h->data;
    if (!c->hello_done) {
        size_t need = hs_need(c);
        if (peer__buf_reserve(&c->rbuf, need) != 0) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        *buf = uv_buf_init((char *)c->rbuf.data + c->rbuf.len, (unsigned)need);
        return;
    }
    size_t want = READ_CHUNK;
    if (c->rbuf.len >= PEER__FRAME_HDR) {
        size_t n = craft_get32(c->rbuf.data);
        if (n <= c->t->max_frame && PEER__FRAME_HDR + n - c->rbuf.len > want)
            want = PEER__FRAME_HDR + n - c->rbuf.len;
        if (want > READ_MAX)
            want = READ_MAX;
    }
    if (peer__buf_reserve(&c->rbuf, want) != 0) {
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
        return;
    }
    buf->base = (char *)c->rbuf.data + c->rbuf.len;
    buf->len = c->rbuf.cap - c->rbuf.len;
}

static void on_in_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct peer__in *c = s->data;
    if (c->closing)
        return;
    if (nread < 0) {
        if (nread == UV_ENOBUFS)
            reject(c, CRAFT_ENOMEM, "read buffer");
        else {
            char who[PEER_NAME_MAX + 1];
            CRAFT_DEBUG(c->t->log, "peer %s: inbound connection ended: %s",
                        peer__name(c->t, c->from, who, sizeof who),
                        peer_strerror((int)nread));
            peer__in_close(c);
        }
        return;
    }
    c->rbuf.len += (size_t)nread;
    dispatch(c);
}

/* peer TLS: ciphertext comes here and goes through the shim to the two
 * callbacks above. */
static void on_tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct peer__in *c = h->data;
    peer__tlsc_on_alloc(c->tls, buf);
}

static void on_tls_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct peer__in *c = s->data;
    if (!c->closing)
        peer__tlsc_on_read(c->tls, nread, buf, on_in_alloc, on_in_read);
}

static int read_start(struct peer__in *c)
{
    if (c->t->tls == NULL)
        return uv_read_start((uv_stream_t *)&c->tcp, on_in_alloc, on_in_read);
    int err = peer__tlsc_new(&c->tls, c->t, (uv_stream_t *)&c->tcp, true, 0,
                             NULL, NULL);
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&c->tcp, on_tls_alloc,
                            on_tls_read);
    return err;
}

static void refuse(struct peer_transport *t);

static void on_spare_closed(uv_handle_t *h)
{
    struct peer_transport *t = h->data;
    t->spare_busy = false;
    if (t->refuse_pending && t->listening) {
        t->refuse_pending = false;
        refuse(t);
    }
    peer__unref(t);
}

/* No memory for a connection: accept it on the spare handle and hang up,
 * since libuv stops listening until a pending connection is accepted. */
static void refuse(struct peer_transport *t)
{
    if (t->spare_busy) {
        t->refuse_pending = true; /* accepted when the spare is closed */
        return;
    }
    uv_tcp_init(t->loop, &t->spare);
    t->spare.data = t;
    t->spare_busy = true;
    t->refs++;
    uv_accept((uv_stream_t *)&t->listener, (uv_stream_t *)&t->spare);
    uv_close((uv_handle_t *)&t->spare, on_spare_closed);
}

/* A connection in its handshake may be evicted only once it is this old:
 * long enough for an honest dialer's round trip, so that strangers who
 * open connections quickly cannot push out a real peer mid-handshake. */
static uint64_t evict_age_ms(const struct peer_transport *t)
{
    return t->handshake_timeout_ms / 5;
}

/* The oldest connection still in its handshake, if it is old enough to
 * be evicted; else NULL. */
static struct peer__in *evictable_unauth(struct peer_transport *t)
{
    struct peer__in *found = NULL;
    for (struct peer__in *c = t->ins; c != NULL; c = c->next)
        if (!c->closing && !c->hello_done)
            found = c; /* the list is newest first */
    uint64_t now = uv_now(t->loop);
    if (found != NULL && now - found->accepted_at < evict_age_ms(t))
        return NULL;
    return found;
}

/* Make room for one more connection: at a limit, the oldest connection
 * still in its handshake goes if it has had the time for a round trip (a
 * dialer that holds one open without finishing cannot keep real peers out
 * for longer than that; a real peer's handshake takes one round trip, and
 * newer strangers cannot cut it short). False: no connection may go (all
 * authenticated, or those in handshake all too young), so the new one is
 * refused. */
static bool make_room(struct peer_transport *t)
{
    if (t->n_live < t->max_conns && t->n_unauth < t->max_unauth)
        return true;
    struct peer__in *v = evictable_unauth(t);
    if (v == NULL)
        return false;
    t->st.conns_limited++;
    char name[80];
    in_name(v, name, sizeof name);
    bad_line(t, "closing peer connection from %s: too many connections "
             "(%u open, %u in handshake; limits %u and %u): the oldest in "
             "handshake goes", name, t->n_live, t->n_unauth, t->max_conns,
             t->max_unauth);
    peer__in_close(v);
    return true;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct peer_transport *t = server->data;
    if (status < 0) {
        bad_line(t, "peer listener: %s", peer_strerror(status));
        return;
    }
    bool room = make_room(t);
    struct peer__in *c = craft_calloc(1, sizeof *c);
    if (c == NULL) {
        bad_line(t, "peer listener: out of memory; refusing");
        refuse(t);
        return;
    }
    c->t = t;
    uv_tcp_init(t->loop, &c->tcp);
    c->tcp.data = c;
    c->next = t->ins;
    if (t->ins != NULL)
        t->ins->prev = c;
    t->ins = c;
    t->refs++;
    t->st.conns_open++;
    t->n_live++;
    t->n_unauth++;
    c->accepted_at = uv_now(t->loop);
    int err = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (err == 0 && !room) {
        t->st.conns_limited++;
        char name[80];
        in_name(c, name, sizeof name);
        bad_line(t, "refusing peer connection from %s: too many connections "
                 "(%u open, %u in handshake; limits %u and %u), none in "
                 "handshake for %" PRIu64 " ms yet", name, t->n_live - 1,
                 t->n_unauth - 1, t->max_conns, t->max_unauth, evict_age_ms(t));
        peer__in_close(c);
        return;
    }
    if (err == 0)
        err = read_start(c);
    if (err) {
        bad_line(t, "peer listener: accept: %s", peer_strerror(err));
        peer__in_close(c);
        return;
    }
    uv_tcp_keepalive(&c->tcp, 1, 5);
    t->st.conns_accepted++;
}

/* Resolve host (blocking; once, at start) to one address, IPv4 first. */
static int resolve_now(uv_loop_t *loop, const char *host, uint16_t port,
                       struct sockaddr_storage *out)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    uv_getaddrinfo_t req;
    int err = uv_getaddrinfo(loop, &req, NULL, host, ps, &hints);
    if (err)
        return err;
    const struct sockaddr *sa = peer__pick_addr(req.addrinfo, AF_INET);
    if (sa != NULL)
        memcpy(out, sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in));
    uv_freeaddrinfo(req.addrinfo);
    return sa != NULL ? 0 : UV_EAI_NONAME;
}

static uint16_t bound_port(const uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int n = sizeof ss;
    if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &n) != 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
}

int peer__listen(struct peer_transport *t, const char *addr)
{
    char host[PEER_HOST_MAX + 1];
    uint16_t port;
    int err = peer_parse_addr(addr, host, sizeof host, &port);
    if (err)
        return CRAFT_EINVAL;
    struct sockaddr_storage ss;
    err = resolve_now(t->loop, host[0] ? host : "0.0.0.0", port, &ss);
    if (err) {
        CRAFT_ERROR(t->log, "peer listener: cannot resolve %s: %s", addr,
                    peer_strerror(err));
        return CRAFT_EINVAL;
    }
    uv_tcp_init(t->loop, &t->listener);
    t->listener.data = t;
    t->listening = true;
    t->refs++;
    err = uv_tcp_bind(&t->listener, (const struct sockaddr *)&ss, 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&t->listener, 128, on_connection);
    if (err) {
        CRAFT_ERROR(t->log, "peer listener: cannot listen on %s: %s", addr,
                    peer_strerror(err));
        return err;
    }
    t->port = bound_port(&t->listener);
    CRAFT_INFO(t->log, "peer listener on %s (port %u)", addr, t->port);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(t->port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(t->port);
    peer__dgram_open(t, (const struct sockaddr *)&ss);
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    peer__unref(h->data);
}

void peer__listener_close(struct peer_transport *t)
{
    if (!t->listening)
        return;
    t->listening = false;
    uv_close((uv_handle_t *)&t->listener, on_listener_closed);
    peer__dgram_close(t);
}
