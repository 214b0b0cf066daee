/* Peer TLS, internal to the transport, in two layers:
 *
 *  - the engine (tls.c): one TLS session over memory BIOs, knowing nothing
 *    of sockets. Ciphertext goes in with peer__tls_feed and comes out with
 *    peer__tls_take; plaintext goes in with peer__tls_write and comes out
 *    with peer__tls_read. Plus the SSL_CTX built from the three files of
 *    -peer-tls-cert/-key/-ca, and the checks that bind a certificate to a
 *    node: its names (DNS subject alternative names and the CN) hash to the
 *    node's tag (craft_member_id(name, 0)) or, with the incarnation the
 *    dialer sends inside its ClientHello, to its Raft id.
 *  - the connection shim (tlsconn.c): a libuv stream seen through an
 *    engine. Reads are decrypted before the connection's own alloc and read
 *    callbacks see them; peer__conn_write and peer__conn_try_write stand in
 *    for uv_write and uv_try_write, and are exactly those when the
 *    connection has no TLS (shim NULL).
 *
 * Ownership: a shim belongs to its connection, which frees it in its close
 * callback (every write callback has run by then). An engine belongs to its
 * shim (or to the caller, in tests). The context belongs to the transport.
 * One thread: the loop's. */
#ifndef CRAFT_TRANSPORT_TLS_H
#define CRAFT_TRANSPORT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct peer_transport;

/* ---- the engine (tls.c) ---- */

struct peer__tls_ctx;
struct peer__tls;

/* Load cert (a PEM chain, leaf first), key (PEM) and the CA bundle that
 * peers' certificates must chain to. 0 and *out, or CRAFT_EINVAL with a
 * one-line reason in err (a file missing or unreadable, a key that does not
 * match the certificate, no certificate in the CA file, our own certificate
 * not signed by that CA), or CRAFT_ENOMEM. */
int peer__tls_ctx_new(struct peer__tls_ctx **out, const char *cert,
                      const char *key, const char *ca, char *err,
                      size_t errlen);
void peer__tls_ctx_free(struct peer__tls_ctx *ctx);
/* Our own certificate names the node whose tag is tag. */
bool peer__tls_ctx_has_tag(const struct peer__tls_ctx *ctx, uint64_t tag);

/* A session. server: the acceptor's role. A client sends incarnation in
 * its ClientHello and accepts only a server certificate naming a node
 * whose tag is expect_tag (0: any name). 0, CRAFT_ENOMEM. */
int peer__tls_new(struct peer__tls **out, struct peer__tls_ctx *ctx,
                  bool server, uint64_t incarnation, uint64_t expect_tag);
void peer__tls_free(struct peer__tls *s);

/* Ciphertext read from the socket. 0 or CRAFT_ENOMEM. */
int peer__tls_feed(struct peer__tls *s, const uint8_t *in, size_t len);
/* Drive the handshake with what was fed. 0: done (now or before);
 * CRAFT_ETRUNCATED: it needs more ciphertext (send peer__tls_take's bytes
 * first); CRAFT_ECORRUPT: it failed (peer__tls_error says why; an alert
 * may wait in peer__tls_take). */
int peer__tls_handshake(struct peer__tls *s);
bool peer__tls_done(const struct peer__tls *s);
/* Plaintext, up to cap bytes, into out; *n gets how many (0: none yet).
 * 0, CRAFT_ESHUTDOWN (the peer closed the session), CRAFT_ECORRUPT. */
int peer__tls_read(struct peer__tls *s, uint8_t *out, size_t cap,
                   size_t *n);
/* Encrypt all of in (after the handshake only). 0, CRAFT_EINVAL (the
 * handshake is not done), CRAFT_ECORRUPT. */
int peer__tls_write(struct peer__tls *s, const uint8_t *in, size_t len);
/* Ciphertext waiting to be sent, and taking up to cap bytes of it. */
size_t peer__tls_pending(const struct peer__tls *s);
size_t peer__tls_take(struct peer__tls *s, uint8_t *out, size_t cap);

/* After the handshake: the peer's certificate names a node whose tag is
 * tag; the peer (a client) sent an incarnation and its certificate names a
 * node whose Raft id (craft_member_id(name, incarnation)) is raft_id. */
bool peer__tls_peer_has_tag(const struct peer__tls *s, uint64_t tag);
bool peer__tls_peer_is(const struct peer__tls *s, uint64_t raft_id);
/* The certificate's first name (SAN, else CN), for log lines ("?"). */
void peer__tls_peer_name(const struct peer__tls *s, char *out, size_t len);
/* Why the last call failed, never NULL. */
const char *peer__tls_error(const struct peer__tls *s);

/* ---- a connection through an engine (tlsconn.c) ---- */

struct peer__tlsc;

#define PEER__TLS_IN (64u << 10) /* ciphertext read per read call */

/* Called once, when the handshake is done (status 0, the peer's chain and,
 * for a client, its name checked) or failed (a negative error, already
 * logged, rate-limited). The callee may close the stream. */
typedef void (*peer__tls_ready_cb)(void *ud, int status);

/* A shim for stream s of transport t (t->tls set). A client starts its
 * handshake at once. The caller then reads through peer__tlsc_on_alloc and
 * peer__tlsc_on_read (called from its own libuv callbacks). 0,
 * CRAFT_ENOMEM, or a uv error of the first write. */
int peer__tlsc_new(struct peer__tlsc **out, struct peer_transport *t,
                   uv_stream_t *s, bool server, uint64_t expect_tag,
                   peer__tls_ready_cb ready, void *ud);
void peer__tlsc_free(struct peer__tlsc *c);
/* Room for ciphertext. */
void peer__tlsc_on_alloc(struct peer__tlsc *c, uv_buf_t *buf);
/* Ciphertext arrived (or an error): feed it, answer the handshake, and hand
 * the plaintext to the connection's own alloc and read callbacks as libuv
 * would (a failed session: read gets UV_ECONNABORTED; its end: UV_EOF). */
void peer__tlsc_on_read(struct peer__tlsc *c, ssize_t nread,
                        const uv_buf_t *buf, uv_alloc_cb alloc,
                        uv_read_cb read);
/* The acceptor's binding check, once the hello names the sender: its
 * certificate names the node with Raft id sender (see peer__tls_peer_is).
 * False: logged (rate-limited) with addr, the dialer's address. */
bool peer__tlsc_binds(struct peer__tlsc *c, uint64_t sender,
                      const char *addr);

/* uv_write and uv_try_write on a connection, through its shim c if not
 * NULL: the plaintext in bufs is encrypted, and cb(req, status) runs when
 * its ciphertext is written (req is not handed to libuv; req->data is the
 * caller's). Both return what uv_write / uv_try_write return (try_write:
 * all the plaintext bytes, or an error: it writes all or nothing). */
int peer__conn_write(struct peer__tlsc *c, uv_write_t *req, uv_stream_t *s,
                     const uv_buf_t bufs[], unsigned n, uv_write_cb cb);
int peer__conn_try_write(struct peer__tlsc *c, uv_stream_t *s,
                         const uv_buf_t bufs[], unsigned n);

#endif
