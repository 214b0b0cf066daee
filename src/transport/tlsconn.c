/* A peer connection seen through the TLS engine: ciphertext read from the
 * libuv stream is fed to the engine, the handshake answered, and the
 * plaintext handed to the connection's own alloc and read callbacks as if
 * libuv had read it; plaintext written is encrypted and its ciphertext
 * written with uv_write (or uv_try_write). Without TLS (shim NULL) the
 * write calls are uv_write and uv_try_write themselves.
 *
 * Ciphertext goes out in write blocks (a uv_write_t and its bytes in one
 * allocation). Each shim keeps one spent block for the next write, so a
 * steady stream of batches allocates nothing. A block refers to its shim
 * while in flight: libuv runs every write callback of a stream before the
 * stream's close callback, and that is where the owner frees the shim. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "transport/internal.h"
#include "transport/tls.h"

#define PLAIN_SUGGEST (64u << 10) /* suggested size when asking for room */
#define KEEP_BLOCK (1u << 20)     /* bigger blocks are freed, not kept */

struct wblock {
    uv_write_t w;
    struct peer__tlsc *owner;
    uv_write_t *outer;  /* the caller's request, or NULL (our own write) */
    uv_write_cb cb;
    size_t cap;
    uint8_t data[];
};

struct peer__tlsc {
    struct peer_transport *t;
    struct peer__tls *eng;
    uv_stream_t *s;
    peer__tls_ready_cb ready;
    void *ud;
    bool reported;          /* ready was called (or the failure handled) */
    bool failed;
    struct wblock *spare;   /* a spent block, kept for the next write */
};

static struct wblock *block_get(struct peer__tlsc *c, size_t need)
{
    struct wblock *b = c->spare;
    if (b != NULL && b->cap >= need) {
        c->spare = NULL;
        return b;
    }
    b = craft_malloc(sizeof *b + need);
    if (b != NULL)
        b->cap = need;
    return b;
}

static void block_put(struct peer__tlsc *c, struct wblock *b)
{
    if (c->spare == NULL && b->cap <= KEEP_BLOCK) {
        c->spare = b;
        return;
    }
    craft_free(b);
}

static void on_block_written(uv_write_t *w, int status)
{
    struct wblock *b = (struct wblock *)w;
    uv_write_t *outer = b->outer;
    uv_write_cb cb = b->cb;
    block_put(b->owner, b);
    if (cb != NULL)
        cb(outer, status);
}

/* Write all the ciphertext the engine holds; cb(outer) when written. */
static int send_pending(struct peer__tlsc *c, uv_write_t *outer,
                        uv_write_cb cb)
{
    size_t n = peer__tls_pending(c->eng);
    if (n == 0 && cb == NULL)
        return 0;
    struct wblock *b = block_get(c, n ? n : 1);
    if (b == NULL)
        return CRAFT_ENOMEM;
    b->owner = c;
    b->outer = outer;
    b->cb = cb;
    size_t got = peer__tls_take(c->eng, b->data, n);
    uv_buf_t buf = uv_buf_init((char *)b->data, (unsigned)got);
    int err = uv_write(&b->w, c->s, &buf, 1, on_block_written);
    if (err)
        block_put(c, b);
    return err;
}

/* One line per failed session, at most a few per period per transport:
 * anybody who can reach the port can cause them. */
static void log_failure(struct peer__tlsc *c, const char *what)
{
    struct peer_transport *t = c->t;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[64] = "?";
    if (uv_tcp_getpeername((uv_tcp_t *)c->s, (struct sockaddr *)&ss,
                           &len) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((const void *)&ss, ip, sizeof ip);
        else
            uv_ip4_name((const void *)&ss, ip, sizeof ip);
    }
    uint64_t dropped = 0;
    if (craft_ratelimit_allow(&t->tls_rl, uv_now(t->loop), &dropped))
        CRAFT_WARN(t->log, "peer TLS with %s failed, closing: %s (%" PRIu64
                   " similar suppressed)", ip, what, dropped);
}

int peer__tlsc_new(struct peer__tlsc **out, struct peer_transport *t,
                   uv_stream_t *s, bool server, uint64_t expect_tag,
                   peer__tls_ready_cb ready, void *ud)
{
    struct peer__tlsc *c = craft_calloc(1, sizeof *c);
    if (c == NULL)
        return CRAFT_ENOMEM;
    int err = peer__tls_new(&c->eng, t->tls, server, t->self_incarnation,
                            expect_tag);
    if (err) {
        craft_free(c);
        return err;
    }
    c->t = t;
    c->s = s;
    c->ready = ready;
    c->ud = ud;
    *out = c;
    if (server)
        return 0;
    (void)peer__tls_handshake(c->eng); /* the ClientHello */
    return send_pending(c, NULL, NULL);
}

void peer__tlsc_free(struct peer__tlsc *c)
{
    if (c == NULL)
        return;
    peer__tls_free(c->eng);
    craft_free(c->spare);
    craft_free(c);
}

/* Every connection reads its ciphertext into the transport's one buffer:
 * libuv calls a stream's read callback right after its alloc callback, and
 * the callback feeds all of it to the engine, so no bytes stay there. A
 * connection waiting in its handshake thus holds no read buffer. */
void peer__tlsc_on_alloc(struct peer__tlsc *c, uv_buf_t *buf)
{
    *buf = uv_buf_init((char *)c->t->tls_in, PEER__TLS_IN);
}

/* The session is over: say so once, as the handshake's result or as a
 * read error. */
static void fail(struct peer__tlsc *c, int err, uv_alloc_cb alloc,
                 uv_read_cb read)
{
    c->failed = true;
    if (!uv_is_closing((uv_handle_t *)c->s))
        (void)send_pending(c, NULL, NULL); /* an alert, best effort */
    if (!c->reported && c->ready != NULL) {
        c->reported = true;
        c->ready(c->ud, err);
        return;
    }
    uv_buf_t b = uv_buf_init(NULL, 0);
    read(c->s, err == CRAFT_ESHUTDOWN ? UV_EOF : UV_ECONNABORTED, &b);
}

void peer__tlsc_on_read(struct peer__tlsc *c, ssize_t nread,
                        const uv_buf_t *buf, uv_alloc_cb alloc,
                        uv_read_cb read)
{
    if (c->failed || nread == 0)
        return;
    if (nread < 0) {
        if (!peer__tls_done(c->eng) && nread == UV_EOF)
            log_failure(c, "the peer hung up during the handshake (does it "
                           "trust our CA, and we its?)");
        if (!c->reported && c->ready != NULL) {
            c->failed = true;
            c->reported = true;
            c->ready(c->ud, (int)nread);
            return;
        }
        read(c->s, nread, buf);
        return;
    }
    if (peer__tls_feed(c->eng, (const uint8_t *)buf->base, (size_t)nread)) {
        fail(c, CRAFT_ENOMEM, alloc, read);
        return;
    }
    if (!peer__tls_done(c->eng)) {
        int err = peer__tls_handshake(c->eng);
        if (err == CRAFT_ECORRUPT) {
            log_failure(c, peer__tls_error(c->eng));
            fail(c, err, alloc, read);
            return;
        }
        if (send_pending(c, NULL, NULL) != 0) {
            fail(c, CRAFT_ENOMEM, alloc, read);
            return;
        }
        if (err)
            return; /* more handshake to come */
        if (!c->reported && c->ready != NULL) {
            c->reported = true;
            c->ready(c->ud, 0);
        }
        if (uv_is_closing((uv_handle_t *)c->s))
            return;
    }
    for (;;) {
        uv_buf_t room;
        alloc((uv_handle_t *)c->s, PLAIN_SUGGEST, &room);
        if (room.base == NULL || room.len == 0) {
            read(c->s, UV_ENOBUFS, &room);
            return;
        }
        size_t n;
        int err = peer__tls_read(c->eng, (uint8_t *)room.base, room.len, &n);
        if (err) {
            if (err == CRAFT_ECORRUPT)
                log_failure(c, peer__tls_error(c->eng));
            c->failed = true;
            read(c->s, err == CRAFT_ESHUTDOWN ? UV_EOF : UV_ECONNABORTED,
                 &room);
            return;
        }
        if (n == 0)
            break;
        read(c->s, (ssize_t)n, &room);
        if (uv_is_closing((uv_handle_t *)c->s))
            return;
    }
    (void)send_pending(c, NULL, NULL); /* e.g. a key update's answer */
}

bool peer__tlsc_binds(struct peer__tlsc *c, uint64_t sender,
                      const char *addr)
{
    if (peer__tls_peer_is(c->eng, sender))
        return true;
    struct peer_transport *t = c->t;
    char name[256];
    peer__tls_peer_name(c->eng, name, sizeof name);
    uint64_t dropped = 0;
    if (craft_ratelimit_allow(&t->tls_rl, uv_now(t->loop), &dropped))
        CRAFT_WARN(t->log, "refusing peer connection from %s: it claims "
                   "Raft id %016" PRIx64 ", which its certificate (%s) does "
                   "not name (%" PRIu64 " similar suppressed)", addr, sender,
                   name, dropped);
    return false;
}

static int encrypt(struct peer__tlsc *c, const uv_buf_t bufs[], unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int err = peer__tls_write(c->eng, (const uint8_t *)bufs[i].base,
                                  bufs[i].len);
        if (err)
            return err == CRAFT_EINVAL ? UV_ENOTCONN : UV_EPROTO;
    }
    return 0;
}

int peer__conn_write(struct peer__tlsc *c, uv_write_t *req, uv_stream_t *s,
                     const uv_buf_t bufs[], unsigned n, uv_write_cb cb)
{
    if (c == NULL)
        return uv_write(req, s, bufs, n, cb);
    int err = encrypt(c, bufs, n);
    if (err)
        return err;
    return send_pending(c, req, cb);
}

int peer__conn_try_write(struct peer__tlsc *c, uv_stream_t *s,
                         const uv_buf_t bufs[], unsigned n)
{
    if (c == NULL)
        return uv_try_write(s, bufs, n);
    size_t plain = 0;
    for (unsigned i = 0; i < n; i++)
        plain += bufs[i].len;
    int err = encrypt(c, bufs, n);
    if (err)
        return err;
    size_t len = peer__tls_pending(c->eng);
    uint8_t *tmp = craft_malloc(len ? len : 1);
    if (tmp == NULL)
        return UV_ENOMEM;
    uv_buf_t b = uv_buf_init((char *)tmp, (unsigned)peer__tls_take(c->eng,
                                                                tmp, len));
    int w = uv_try_write(s, &b, 1);
    craft_free(tmp);
    if (w < 0)
        return w;
    return (size_t)w == b.len ? (int)plain : UV_EAGAIN;
}
