/* The listening socket and the connections accepted on it: check the
 * handshake, read into one growable buffer per connection, and hand each
 * complete, CRC-checked frame to on_frame in order. */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/error.h"
#include "transport/internal.h"
#include "transport/tls.h"

/* Read at least this much per read call. */
#define READ_CHUNK (64u << 10)
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
    craft_free(c);
    peer__unref(t);
}

void peer__in_close(struct peer__in *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_in_closed);
}

/* A protocol violation: count it, say why, hang up. */
static void reject(struct peer__in *c, int err, const char *what)
{
    struct peer_transport *t = c->t;
    char name[80];
    in_name(c, name, sizeof name);
    t->st.conns_rejected++;
    CRAFT_WARN(t->log, "closing peer connection from %s: %s: %s", name, what,
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

/* Check the handshake once it is all there. Returns the bytes consumed (0:
 * wait for more) or a negative error (c is closed). */
static int read_hello(struct peer__in *c)
{
    struct peer_transport *t = c->t;
    struct peer__hello h;
    unsigned version = 0;
    int err = peer__hello_decode(c->rbuf.data, c->rbuf.len, &h, &version);
    if (err == CRAFT_ETRUNCATED)
        return 0;
    if (err == CRAFT_EVERSION) {
        char what[96];
        snprintf(what, sizeof what, "handshake version %u (this node speaks "
                 "%u: every node must run the same craftd)", version,
                 PEER__VERSION);
        reject(c, err, what);
        return err;
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
    if (t->cluster_id != 0 && h.cluster != 0 && h.cluster != t->cluster_id) {
        refuse_dialer(c, &h, PEER_REFUSED_CLUSTER);
        return CRAFT_EINVAL;
    }
    if (h.target != t->self_id) {
        refuse_dialer(c, &h, PEER_REFUSED_TARGET);
        return CRAFT_EINVAL;
    }
    c->from = h.sender;
    c->hello_done = true;
    char name[80];
    in_name(c, name, sizeof name);
    CRAFT_INFO(t->log, "peer %llu connected from %s",
               (unsigned long long)c->from, name);
    close_older(c);
    return PEER__HELLO_LEN;
}

static void dispatch(struct peer__in *c)
{
    struct peer_transport *t = c->t;
    size_t off = 0;
    if (!c->hello_done) {
        int n = read_hello(c);
        if (n <= 0)
            return;
        off = (size_t)n;
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
        t->st.frames_received++;
        t->st.bytes_received += len;
        t->on_frame(t->ud, c->from, f + PEER__FRAME_HDR, len);
        off += PEER__FRAME_HDR + len;
    }
    if (c->closing)
        return; /* closed from on_frame; the buffer goes at close */
    c->rbuf.len -= off;
    if (c->rbuf.len > 0 && off > 0)
        memmove(c->rbuf.data, c->rbuf.data + off, c->rbuf.len);
    if (c->rbuf.len == 0 && c->rbuf.cap > KEEP_BYTES)
        peer__buf_free(&c->rbuf);
}

/* Room for a read: a chunk, or the rest of a big frame at once. */
static void on_in_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct peer__in *c = h->data;
    size_t want = READ_CHUNK;
    if (c->hello_done && c->rbuf.len >= PEER__FRAME_HDR) {
        size_t n = craft_get32(c->rbuf.data);
        if (n <= c->t->max_frame && PEER__FRAME_HDR + n - c->rbuf.len > want)
            want = PEER__FRAME_HDR + n - c->rbuf.len;
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
            CRAFT_DEBUG(c->t->log, "peer %llu: inbound connection ended: %s",
                        (unsigned long long)c->from,
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

static void on_connection(uv_stream_t *server, int status)
{
    struct peer_transport *t = server->data;
    if (status < 0) {
        CRAFT_WARN(t->log, "peer listener: %s", peer_strerror(status));
        return;
    }
    struct peer__in *c = craft_calloc(1, sizeof *c);
    if (c == NULL) {
        CRAFT_ERROR(t->log, "peer listener: out of memory; refusing");
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
    int err = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (err == 0)
        err = read_start(c);
    if (err) {
        CRAFT_WARN(t->log, "peer listener: accept: %s", peer_strerror(err));
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
}
