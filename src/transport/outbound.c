/* Outgoing peers: one TCP connection per peer that we write frames on, its
 * send queue, and the resolve -> connect -> write -> (fail -> backoff) cycle.
 * With a cluster token, a new connection first sends the v3 hello, checks
 * the acceptor's challenge and answers with its proof (wire.c); frames are
 * held until then. Handshake bytes go out through the same write path as
 * frames (peer__out_flush) and come in through the same read callback, so
 * a stream layer under them sees one byte stream each way.
 *
 * The queue is two byte buffers: pend collects [header][payload] frames as
 * they are sent; when no write is in flight the two are swapped and all of
 * flight goes out in one uv_write (after the handshake on a new
 * connection). Steady state allocates nothing: the buffers are reused. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/crypto.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/error.h"
#include "transport/internal.h"
#include "transport/tls.h"

/* Buffers bigger than this are freed once written, not kept for reuse. */
#define KEEP_BYTES (4u << 20)
/* Drop a connection whose sent data stays unacknowledged this long (a
 * partitioned peer), instead of TCP's default of many minutes. */
#define USER_TIMEOUT_MS 5000

static void out_resolve(struct peer__out *p);
static void on_timer(uv_timer_t *h);

static const char *host_of(const struct peer__out *p)
{
    return p->host[0] ? p->host : "127.0.0.1";
}

static uint64_t next_rand(struct peer__out *p)
{
    uint64_t x = p->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p->rng = x;
    return x;
}

static uint64_t mix64(uint64_t z) /* splitmix64 finaliser */
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void maybe_free(struct peer__out *p)
{
    if (!p->removed || p->refs > 0)
        return;
    struct peer_transport *t = p->t;
    peer__buf_free(&p->pend);
    peer__buf_free(&p->flight);
    OPENSSL_cleanse(p->dg_key, sizeof p->dg_key);
    peer__dgmac_free(p->dg_mac);
    craft_free(p);
    peer__unref(t);
}

/* Frames of the broken write are lost: count them. */
static void drop_flight(struct peer__out *p)
{
    p->st.frames_dropped += p->flight_frames;
    p->st.bytes_dropped += p->flight_payload;
    p->flight.len = 0;
    p->flight_frames = 0;
    p->flight_payload = 0;
}

/* Retry after the current backoff (with jitter in [b/2, b]), then double
 * it up to the cap. backoff_ms == 0 means "retry now". */
static void schedule_retry(struct peer__out *p)
{
    const struct peer_transport *t = p->t;
    uint64_t delay = 0;
    if (p->backoff_ms > 0) {
        uint64_t half = p->backoff_ms / 2;
        delay = half + next_rand(p) % (p->backoff_ms - half + 1);
        p->backoff_ms = p->backoff_ms * 2 > t->backoff_max_ms
                            ? t->backoff_max_ms
                            : p->backoff_ms * 2;
    } else {
        p->backoff_ms = t->backoff_min_ms;
    }
    p->state = PEER__IDLE;
    uv_timer_start(&p->timer, on_timer, delay, 0);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct peer__out *p = h->data;
    p->tcp_open = false;
    peer__tlsc_free(p->tls);
    p->tls = NULL;
    p->refs--;
    if (p->removed) {
        maybe_free(p);
        return;
    }
    schedule_retry(p);
}

/* Tear down the connection (if any) and come back through a retry. */
static void disconnect(struct peer__out *p)
{
    p->st.connected = false;
    peer__dgram_unkey(p); /* the next connection gets a key of its own */
    uv_timer_stop(&p->timer);
    if (!p->tcp_open) {
        schedule_retry(p);
        return;
    }
    p->state = PEER__CLOSING;
    if (!uv_is_closing((uv_handle_t *)&p->tcp))
        uv_close((uv_handle_t *)&p->tcp, on_tcp_closed);
}

/* What logs call p: its name, else its id in hex (a static buffer per
 * call site is not needed: each log line formats it at once). */
#define name_of(p) peer__name((p)->t, (p)->id, (char[PEER_NAME_MAX + 1]){0}, PEER_NAME_MAX + 1)

static void out_fail(struct peer__out *p, int err, const char *what)
{
    const struct peer_transport *t = p->t;
    p->st.last_error = err;
    if (p->state == PEER__CONNECTED && p->refused) {
        /* The caller heard why (on_refused); keep the log quiet. */
        CRAFT_DEBUG(t->log, "peer %s (%s:%u): refused; will retry",
                    name_of(p), host_of(p), p->port);
    } else if (p->state == PEER__CONNECTED && !p->auth_wait &&
               uv_now(t->loop) - p->connected_at >= t->backoff_max_ms) {
        CRAFT_WARN(t->log, "peer %s (%s:%u): %s: %s; reconnecting",
                   name_of(p), host_of(p), p->port, what,
                   peer_strerror(err));
        /* A connection that lived long was healthy: retry at once. */
        p->backoff_ms = 0;
        p->short_lived = 0;
    } else if (p->state == PEER__CONNECTED && p->short_lived++ == 0) {
        /* Died in its handshake or soon after (e.g. the peer refuses our
         * token, or has none): said once, then at debug level. */
        CRAFT_WARN(t->log, "peer %s (%s:%u): %s: %s; reconnecting (repeats "
                   "are logged at debug level)", name_of(p),
                   host_of(p), p->port, what, peer_strerror(err));
    } else if (p->state != PEER__CONNECTED && p->failures++ == 0) {
        CRAFT_INFO(t->log, "peer %s (%s:%u): %s failed: %s; will retry",
                   name_of(p), host_of(p), p->port, what,
                   peer_strerror(err));
    } else {
        CRAFT_DEBUG(t->log, "peer %s (%s:%u): %s failed: %s (%u times)",
                    name_of(p), host_of(p), p->port, what,
                    peer_strerror(err), p->failures);
    }
    disconnect(p);
}

static void on_written(uv_write_t *req, int status)
{
    struct peer__out *p = req->data;
    p->writing = false;
    if (status < 0) {
        drop_flight(p);
        if (p->state == PEER__CONNECTED)
            out_fail(p, status, "write");
        return;
    }
    p->st.frames_sent += p->flight_frames;
    p->st.bytes_sent += p->flight_payload;
    p->flight.len = 0;
    p->flight_frames = 0;
    p->flight_payload = 0;
    if (p->flight.cap > KEEP_BYTES)
        peer__buf_free(&p->flight);
    peer__out_flush(p);
}

void peer__out_flush(struct peer__out *p)
{
    if (p->state != PEER__CONNECTED || p->writing)
        return;
    if (p->auth_wait) { /* only the hello until the challenge is answered */
        if (p->pre_len == 0)
            return;
        uv_buf_t b = uv_buf_init((char *)p->pre, (unsigned)p->pre_len);
        p->wreq.data = p;
        int err = peer__conn_write(p->tls, &p->wreq, (uv_stream_t *)&p->tcp,
                                   &b, 1, on_written);
        if (err) {
            out_fail(p, err, "write");
            return;
        }
        p->pre_len = 0;
        p->writing = true;
        p->st.writes++;
        return;
    }
    if (p->pre_len == 0 && p->pend.len == 0)
        return;
    struct peer__buf empty = p->flight; /* flight is empty: swap */
    p->flight = p->pend;
    p->pend = empty;
    p->flight_frames = p->pend_frames;
    p->flight_payload = p->pend_payload;
    p->pend_frames = 0;
    p->pend_payload = 0;

    uv_buf_t bufs[2];
    unsigned n = 0;
    if (p->pre_len > 0)
        bufs[n++] = uv_buf_init((char *)p->pre, (unsigned)p->pre_len);
    if (p->flight.len > 0)
        bufs[n++] = uv_buf_init((char *)p->flight.data,
                                (unsigned)p->flight.len);
    p->wreq.data = p;
    int err = peer__conn_write(p->tls, &p->wreq, (uv_stream_t *)&p->tcp,
                               bufs, n, on_written);
    if (err) {
        drop_flight(p);
        out_fail(p, err, "write");
        return;
    }
    p->pre_len = 0;
    p->writing = true;
    p->st.writes++;
}

int peer__out_send(struct peer__out *p, const uint8_t *buf, size_t len)
{
    struct peer_transport *t = p->t;
    size_t need = PEER__FRAME_HDR + len;
    int err = 0;
    if (len > t->max_frame)
        err = CRAFT_ETOOBIG;
    else if (p->pend.len + p->flight.len + need > t->max_queue)
        err = -ENOBUFS;
    else
        err = peer__buf_reserve(&p->pend, need);
    if (err) {
        p->st.frames_dropped++;
        p->st.bytes_dropped += len;
        return err;
    }
    uint8_t *dst = p->pend.data + p->pend.len;
    peer__frame_header(dst, buf, (uint32_t)len);
    if (len > 0)
        memcpy(dst + PEER__FRAME_HDR, buf, len);
    p->pend.len += need;
    p->pend_frames++;
    p->pend_payload += len;
    peer__want_flush(t);
    return 0;
}

static void on_sink_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct peer__out *p = h->data;
    if (p->auth_wait) { /* the challenge, and nothing past it */
        size_t need = p->sink_len < PEER__CHALLENGE_LEN
                          ? PEER__CHALLENGE_LEN - p->sink_len : 1;
        *buf = uv_buf_init((char *)p->sink + p->sink_len, (unsigned)need);
        return;
    }
    *buf = uv_buf_init((char *)p->sink + p->sink_len, /* after_handshake
                                                         leaves room */
                       (unsigned)(sizeof p->sink - p->sink_len));
}

/* The peer refused our connection and said why. */
static void got_refusal(struct peer__out *p)
{
    struct peer_transport *t = p->t;
    struct peer__refusal_rec rec;
    if (peer__refusal_decode(p->sink, &rec) != 0)
        return; /* stray bytes: ignored, as ever */
    p->refused = true;
    p->st.refusals++;
    char addr[PEER_HOST_MAX + 8];
    snprintf(addr, sizeof addr, "%s:%u", host_of(p), p->port);
    CRAFT_DEBUG(t->log, "peer %s (%s): refused our connection (reason %u, "
                "it is %016llx of cluster %016llx)", name_of(p),
                addr, rec.reason, (unsigned long long)rec.id,
                (unsigned long long)rec.cluster);
    if (t->on_refused != NULL) {
        struct peer_refusal r = {
            .inbound = false,
            .reason = rec.reason,
            .peer_id = rec.id,
            .peer_cluster = rec.cluster,
            .peer_tag = rec.tag,
            .target = p->id,
            .target_tag = p->tag,
            .addr = addr,
        };
        t->on_refused(t->ud, &r);
    }
}

/* The acceptor's challenge is all there: check that it holds the token,
 * then send our proof and the frames queued. */
static void got_challenge(struct peer__out *p)
{
    const struct peer_transport *t = p->t;
    uint8_t nonce_a[PEER__NONCE_LEN], mac[PEER__MAC_LEN];
    if (peer__challenge_decode(p->sink, nonce_a, mac) != 0) {
        out_fail(p, CRAFT_ECORRUPT, "handshake (not a craftd challenge; "
                 "does the peer run without a cluster token?)");
        return;
    }
    if (!peer__mac_ok(t->key, true, p->hello, nonce_a, mac)) {
        out_fail(p, CRAFT_EINVAL, "cluster-token proof of the peer (another "
                 "token?)");
        return;
    }
    uint8_t mine[PEER__MAC_LEN];
    int err = peer__mac(mine, t->key, false, p->hello, nonce_a);
    if (err) {
        out_fail(p, err, "handshake (libcrypto)");
        return;
    }
    peer__proof_encode(p->proof, mine);
    uv_timer_stop(&p->timer);
    p->auth_wait = false;
    p->sink_len = 0;
    p->pre = p->proof;
    p->pre_len = PEER__PROOF_LEN;
    peer__out_flush(p);
}

/* What an acceptor writes after the handshake, record by record: the key
 * for our datagrams along this connection (datagram.c), or a refusal;
 * anything else is taken 40 bytes at a time and ignored. */
static void after_handshake(struct peer__out *p)
{
    while (p->sink_len >= 4) {
        bool key = craft_get32(p->sink) == PEER__DGKEY_MAGIC;
        size_t need = key ? PEER__DGKEY_LEN : PEER__REFUSAL_LEN;
        if (p->sink_len < need)
            return;
        if (key && p->dg_mac == NULL &&
            peer__dgkey_decode(p->sink, p->dg_key) == 0 &&
            (p->dg_mac = peer__dgmac_new(p->dg_key)) != NULL) {
            p->dg_seq = 0;
        } else if (!key && !p->refused) {
            got_refusal(p); /* (it ignores what is not a refusal) */
        }
        memmove(p->sink, p->sink + need, p->sink_len - need);
        p->sink_len -= need;
    }
}

/* Peers write on our connection only to challenge it (with a token), then
 * to give us a key for datagrams or to refuse it: any read result but data
 * is the connection's end (EOF or an error). */
static void on_sink_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct peer__out *p = s->data;
    if (nread > 0 && p->auth_wait) {
        p->sink_len += (size_t)nread;
        if (p->sink_len >= PEER__CHALLENGE_LEN)
            got_challenge(p);
        return;
    }
    if (nread > 0) {
        p->sink_len += (size_t)nread;
        after_handshake(p);
        return;
    }
    if (nread < 0 && p->state == PEER__CONNECTED)
        out_fail(p, (int)nread, p->refused ? "refused" : "connection");
}

static void set_socket_options(struct peer__out *p)
{
    uv_tcp_nodelay(&p->tcp, 1);
    uv_tcp_keepalive(&p->tcp, 1, 5);
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&p->tcp, &fd) == 0) {
        unsigned ms = USER_TIMEOUT_MS;
        /* Best effort: without it a dead peer is noticed later. */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
        /* A stream of heartbeats is thin (a few segments in flight): a
         * lost one is sent again every RTO (200 ms) instead of after 200,
         * 400, 800 ms..., so that two losses in a row do not outlast an
         * election timeout. Best effort too. */
        int on = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, &on, sizeof on);
    }
}

static void connected(struct peer__out *p);

/* ---- peer TLS: the handshake runs before the connection counts as
 * connected (under the connect deadline); then the sink callbacks get the
 * plaintext and writes go through the shim (tls.h). ---- */
static void on_tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct peer__out *p = h->data;
    peer__tlsc_on_alloc(p->tls, buf);
}

/* A session the peer ended with a TLS alert (it refused our certificate,
 * logged by the shim, rate-limited) is a refusal: reconnects stay quiet. */
static void on_tls_plain_read(uv_stream_t *s, ssize_t nread,
                              const uv_buf_t *buf)
{
    struct peer__out *p = s->data;
    if (nread == UV_ECONNABORTED)
        p->refused = true;
    on_sink_read(s, nread, buf);
}

static void on_tls_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct peer__out *p = s->data;
    if (p->tls != NULL && p->state != PEER__CLOSING)
        peer__tlsc_on_read(p->tls, nread, buf, on_sink_alloc,
                           on_tls_plain_read);
}

static void on_tls_ready(void *ud, int status)
{
    struct peer__out *p = ud;
    if (p->state != PEER__CONNECTING)
        return;
    if (status < 0) {
        out_fail(p, status, "TLS handshake");
        return;
    }
    uv_timer_stop(&p->timer);
    connected(p);
}

static void tls_start(struct peer__out *p)
{
    struct peer_transport *t = p->t;
    int err = peer__tlsc_new(&p->tls, t, (uv_stream_t *)&p->tcp, false,
                             p->tag, on_tls_ready, p);
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&p->tcp, on_tls_alloc,
                            on_tls_read);
    if (err) {
        out_fail(p, err, "TLS start");
        return;
    }
    uv_timer_start(&p->timer, on_timer, t->connect_timeout_ms, 0);
}
/* ---- */

static void on_connected(uv_connect_t *req, int status)
{
    struct peer__out *p = req->data;
    if (p->state != PEER__CONNECTING)
        return; /* cancelled by a close */
    uv_timer_stop(&p->timer);
    if (status < 0) {
        out_fail(p, status, "connect");
        return;
    }
    set_socket_options(p);
    if (p->t->tls != NULL) {
        tls_start(p); /* goes on in on_tls_ready */
        return;
    }
    int err = uv_read_start((uv_stream_t *)&p->tcp, on_sink_alloc,
                            on_sink_read);
    if (err) {
        out_fail(p, err, "read start");
        return;
    }
    connected(p);
}

static void connected(struct peer__out *p)
{
    const struct peer_transport *t = p->t;
    /* After a refusal or a failed handshake, reconnects are not news: the
     * refusal was. */
    craft_log(t->log, p->refused || p->short_lived > 0 ? CRAFT_LOG_DEBUG
                                                       : CRAFT_LOG_INFO,
              "peer %s (%s:%u): connected", name_of(p),
              host_of(p), p->port);
    p->state = PEER__CONNECTED;
    p->st.connected = true;
    p->st.connects++;
    p->connected_at = uv_now(t->loop);
    p->failures = 0;
    p->refused = false;
    p->sink_len = 0;
    peer__dgram_unkey(p);
    struct peer__hello h = {.version = t->have_key ? PEER__VERSION_AUTH
                                                   : PEER__VERSION,
                            .flags = t->udp_open ? PEER__HELLO_DGRAM : 0,
                            .sender = t->self_id, .cluster = t->cluster_id,
                            .target = p->id, .target_tag = p->tag};
    if (t->have_key) {
        int err = peer__nonce(h.nonce);
        if (err) {
            out_fail(p, err, "handshake (random nonce)");
            return;
        }
        /* The acceptor must answer within the handshake deadline. */
        uv_timer_start(&p->timer, on_timer, t->handshake_timeout_ms, 0);
    }
    p->auth_wait = t->have_key;
    p->pre = p->hello;
    p->pre_len = peer__hello_encode(p->hello, &h);
    peer__out_flush(p);
}

static void out_connect(struct peer__out *p, const struct sockaddr *sa)
{
    struct peer_transport *t = p->t;
    int err = uv_tcp_init(t->loop, &p->tcp);
    if (err) {
        out_fail(p, err, "socket");
        return;
    }
    p->tcp.data = p;
    p->tcp_open = true;
    p->refs++;
    p->state = PEER__CONNECTING;
    if (t->have_bind) {
        err = uv_tcp_bind(&p->tcp, (const struct sockaddr *)&t->bind_addr, 0);
        if (err) {
            out_fail(p, err, "bind");
            return;
        }
    }
    p->creq.data = p;
    err = uv_tcp_connect(&p->creq, &p->tcp, sa, on_connected);
    if (err) {
        out_fail(p, err, "connect");
        return;
    }
    uv_timer_start(&p->timer, on_timer, t->connect_timeout_ms, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res)
{
    struct peer__out *p = req->data;
    p->refs--;
    if (p->removed) {
        uv_freeaddrinfo(res);
        maybe_free(p);
        return;
    }
    if (p->redo_resolve) { /* the address changed meanwhile */
        p->redo_resolve = false;
        uv_freeaddrinfo(res);
        out_resolve(p);
        return;
    }
    const struct sockaddr *sa = status < 0 ? NULL : peer__pick_addr(res, AF_INET);
    if (sa == NULL) {
        uv_freeaddrinfo(res);
        out_fail(p, status < 0 ? status : UV_EAI_NONAME, "resolve");
        return;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in));
    uv_freeaddrinfo(res);
    p->addr = ss; /* where datagrams to it go (datagram.c) */
    out_connect(p, (const struct sockaddr *)&ss);
}

static void out_resolve(struct peer__out *p)
{
    struct peer_transport *t = p->t;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (t->have_bind)
        hints.ai_family = t->bind_addr.ss_family;
    char port[8];
    snprintf(port, sizeof port, "%u", p->port);
    p->state = PEER__RESOLVING;
    p->gai.data = p;
    int err = uv_getaddrinfo(t->loop, &p->gai, on_resolved, host_of(p), port,
                             &hints);
    if (err) {
        out_fail(p, err, "resolve");
        return;
    }
    p->refs++;
}

static void on_timer(uv_timer_t *h)
{
    struct peer__out *p = h->data;
    if (p->state == PEER__CONNECTING)
        out_fail(p, UV_ETIMEDOUT, "connect");
    else if (p->state == PEER__CONNECTED && p->auth_wait)
        out_fail(p, UV_ETIMEDOUT, "handshake (no challenge from the peer)");
    else if (p->state == PEER__IDLE)
        out_resolve(p);
}

struct peer__out *peer__out_new(struct peer_transport *t, uint64_t id,
                                uint64_t tag, const char *host, uint16_t port)
{
    struct peer__out *p = craft_calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->t = t;
    p->id = id;
    p->tag = tag;
    snprintf(p->host, sizeof p->host, "%s", host);
    p->port = port;
    p->backoff_ms = t->backoff_min_ms;
    p->rng = mix64(t->seed ^ id) | 1;
    p->st.id = id;
    uv_timer_init(t->loop, &p->timer);
    p->timer.data = p;
    p->refs = 1;
    t->refs++;
    out_resolve(p);
    return p;
}

void peer__out_readdr(struct peer__out *p, const char *host, uint16_t port)
{
    const struct peer_transport *t = p->t;
    CRAFT_INFO(t->log, "peer %s: address %s:%u -> %s:%u",
               name_of(p), host_of(p), p->port,
               host[0] ? host : "127.0.0.1", port);
    snprintf(p->host, sizeof p->host, "%s", host);
    p->port = port;
    p->backoff_ms = 0;
    p->failures = 0;
    p->short_lived = 0;
    switch (p->state) {
    case PEER__IDLE:
        uv_timer_stop(&p->timer);
        out_resolve(p);
        break;
    case PEER__RESOLVING:
        p->redo_resolve = true;
        break;
    case PEER__CONNECTING:
    case PEER__CONNECTED:
        disconnect(p);
        break;
    case PEER__CLOSING:
        break; /* the close callback retries, now at once */
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    struct peer__out *p = h->data;
    p->refs--;
    maybe_free(p);
}

void peer__out_remove(struct peer__out *p)
{
    p->removed = true;
    p->st.connected = false;
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
    if (p->state == PEER__RESOLVING)
        uv_cancel((uv_req_t *)&p->gai); /* on_resolved runs either way */
    if (p->tcp_open && !uv_is_closing((uv_handle_t *)&p->tcp))
        uv_close((uv_handle_t *)&p->tcp, on_tcp_closed);
    p->state = PEER__CLOSING;
}
