/* A one-shot HTTP/1.1 client on the node's loop, for the few requests a node
 * makes itself (a join's GET /status and POST /join, /status of members
 * when it looks for evidence of its own removal): resolve, connect, send one
 * request with "Connection: close", read to the end, parse the status line.
 * Every request has a deadline. With -join-user each request carries HTTP
 * Basic credentials; when the node serves HTTPS it speaks HTTPS (through
 * http_tls_conn: the TLS records pass through here, OpenSSL stays in
 * src/http). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "common/alloc.h"
#include "node/internal.h"

#define RESP_MAX (1u << 20) /* a /status of 32 members is a few KiB */

struct node__httpc {
    node__httpc_cb cb; /* NULL once called or cancelled */
    void *ud;
    unsigned refs;     /* open handles and requests in flight */
    uv_timer_t timer;  /* the deadline */
    uv_getaddrinfo_t gai;
    bool resolving;
    uv_tcp_t tcp;
    bool tcp_open;
    uv_connect_t creq;
    uv_write_t wreq;
    char host[PEER_HOST_MAX + 1];
    char port[8];
    struct sockaddr_storage bind; /* source address, if bind_set */
    bool bind_set;
    char *req;
    size_t req_len;
    char *resp;
    size_t resp_len, resp_cap;
    struct http_tls_conn *tls; /* NULL: plain HTTP */
    struct http_tls_client *n_tls; /* the node's, or NULL: plain HTTP */
    char *cipher;              /* TLS: a received chunk of ciphertext */
    size_t cipher_cap;
};

/* One write of TLS records; frees itself. */
struct tls_write {
    uv_write_t w;
    char *buf;
};

static void unref(struct node__httpc *c)
{
    if (--c->refs > 0)
        return;
    craft_free(c->req);
    craft_free(c->resp);
    craft_free(c->cipher);
    http_tls_conn_free(c->tls);
    craft_free(c);
}

static void on_closed(uv_handle_t *h)
{
    unref(h->data);
}

/* Close everything; the callback has run or will not. */
static void teardown(struct node__httpc *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_closed);
    if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai); /* on_resolved runs either way */
}

static void finish(struct node__httpc *c, int status, const char *body)
{
    node__httpc_cb cb = c->cb;
    c->cb = NULL;
    if (cb != NULL)
        cb(c->ud, status, body);
    teardown(c);
}

static void parse_reply(struct node__httpc *c)
{
    int status = 0;
    if (c->resp == NULL || c->resp_len < 12 ||
        sscanf(c->resp, "HTTP/1.%*d %d", &status) != 1 || status < 100) {
        finish(c, 0, "no valid HTTP reply");
        return;
    }
    char *body = strstr(c->resp, "\r\n\r\n");
    finish(c, status, body ? body + 4 : "");
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct node__httpc *c = h->data;
    if (c->resp_cap - c->resp_len < 4096 && c->resp_cap < RESP_MAX) {
        size_t cap = c->resp_cap ? c->resp_cap * 2 : 8192;
        char *p = craft_realloc(c->resp, cap + 1);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        c->resp = p;
        c->resp_cap = cap;
    }
    *buf = uv_buf_init(c->resp + c->resp_len,
                       (unsigned)(c->resp_cap - c->resp_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct node__httpc *c = s->data;
    if (c->cb == NULL)
        return;
    if (nread > 0) {
        c->resp_len += (size_t)nread;
        c->resp[c->resp_len] = 0;
        if (c->resp_len >= RESP_MAX)
            finish(c, 0, "reply too large");
        return;
    }
    if (nread == UV_EOF)
        parse_reply(c);
    else if (nread < 0)
        finish(c, 0, uv_strerror((int)nread));
}

/* --- HTTPS: ciphertext in from the socket, plaintext into resp --- */

static void on_tls_written(uv_write_t *w, int status)
{
    struct tls_write *tw = (struct tls_write *)w;
    struct node__httpc *c = w->data;
    craft_free(tw->buf);
    craft_free(tw);
    if (status != 0 && status != UV_ECANCELED && c->cb != NULL)
        finish(c, 0, uv_strerror(status));
}

/* Sends whatever TLS records are waiting. */
static int tls_flush(struct node__httpc *c)
{
    size_t len;
    char *buf = http_tls_conn_output(c->tls, &len);
    if (buf == NULL)
        return 0;
    struct tls_write *tw = craft_malloc(sizeof *tw);
    if (tw == NULL) {
        craft_free(buf);
        return UV_ENOMEM;
    }
    tw->buf = buf;
    tw->w.data = c;
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    int rv = uv_write(&tw->w, (uv_stream_t *)&c->tcp, &b, 1, on_tls_written);
    if (rv) {
        craft_free(buf);
        craft_free(tw);
    }
    return rv;
}

/* Feeds in (may be empty) to TLS, appends what it decrypts to resp. */
static void tls_pump(struct node__httpc *c, const char *in, size_t inlen)
{
    int r;
    size_t got;
    do {
        uv_buf_t room;
        on_alloc((uv_handle_t *)&c->tcp, 0, &room);
        if (room.len == 0) {
            finish(c, 0, c->resp_len >= RESP_MAX ? "reply too large" : "out of memory");
            return;
        }
        r = http_tls_conn_pump(c->tls, in, inlen, room.base, room.len, &got);
        in = NULL;
        inlen = 0;
        c->resp_len += got;
        c->resp[c->resp_len] = 0;
        if (r == 0 && got == room.len && c->resp_len >= RESP_MAX) {
            finish(c, 0, "reply too large");
            return;
        }
    } while (r == 0 && got > 0);
    int rv = tls_flush(c);
    if (r < 0)
        finish(c, 0, http_tls_conn_error(c->tls));
    else if (rv)
        finish(c, 0, uv_strerror(rv));
    else if (r == 1)
        parse_reply(c); /* the server closed the session */
}

static void on_tls_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct node__httpc *c = h->data;
    if (c->cipher == NULL) {
        c->cipher = craft_malloc(16384);
        c->cipher_cap = c->cipher ? 16384 : 0;
    }
    *buf = uv_buf_init(c->cipher, (unsigned)c->cipher_cap);
}

static void on_tls_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct node__httpc *c = s->data;
    if (c->cb == NULL)
        return;
    if (nread > 0)
        tls_pump(c, buf->base, (size_t)nread);
    else if (nread == UV_EOF)
        parse_reply(c); /* closed without close_notify: the reply as it came */
    else if (nread < 0)
        finish(c, 0, uv_strerror((int)nread));
}

/* Connected over HTTPS: queue the request, start the handshake. */
static void tls_start(struct node__httpc *c)
{
    int rv = http_tls_conn_new(&c->tls, c->n_tls, c->host);
    if (rv == 0 && http_tls_conn_write(c->tls, c->req, c->req_len) != 0)
        rv = CRAFT_ENOMEM;
    if (rv) {
        finish(c, 0, craft_strerror(rv));
        return;
    }
    rv = uv_read_start((uv_stream_t *)&c->tcp, on_tls_alloc, on_tls_read);
    if (rv) {
        finish(c, 0, uv_strerror(rv));
        return;
    }
    tls_pump(c, NULL, 0);
}

static void on_write(uv_write_t *w, int status)
{
    struct node__httpc *c = w->data;
    if (c->cb == NULL)
        return;
    int rv = status;
    if (rv == 0)
        rv = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rv)
        finish(c, 0, uv_strerror(rv));
}

static void on_connect(uv_connect_t *r, int status)
{
    struct node__httpc *c = r->data;
    if (c->cb == NULL)
        return;
    if (status) {
        finish(c, 0, uv_strerror(status));
        return;
    }
    if (c->n_tls != NULL) {
        tls_start(c);
        return;
    }
    uv_buf_t b = uv_buf_init(c->req, (unsigned)c->req_len);
    c->wreq.data = c;
    int rv = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rv)
        finish(c, 0, uv_strerror(rv));
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    struct node__httpc *c = g->data;
    c->resolving = false;
    if (c->cb == NULL || status != 0) {
        if (c->cb != NULL)
            finish(c, 0, uv_strerror(status));
        uv_freeaddrinfo(ai);
        unref(c);
        return;
    }
    int rv = uv_tcp_init(c->timer.loop, &c->tcp);
    if (rv == 0) {
        c->tcp.data = c;
        c->tcp_open = true;
        c->refs++;
        c->creq.data = c;
        if (c->bind_set)
            rv = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&c->bind, 0);
        if (rv == 0)
            rv = uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connect);
    }
    uv_freeaddrinfo(ai);
    if (rv)
        finish(c, 0, uv_strerror(rv));
    unref(c); /* the resolve's reference */
}

static void on_deadline(uv_timer_t *t)
{
    struct node__httpc *c = t->data;
    finish(c, 0, "timed out");
}

int node__httpc_start(struct node *n, const char *bind_host,
                      const char *addr, const char *method, const char *path,
                      const char *json_body, unsigned timeout_ms,
                      node__httpc_cb cb, void *ud, struct node__httpc **out)
{
    *out = NULL;
    struct node__httpc *c = craft_calloc(1, sizeof *c);
    if (c == NULL)
        return CRAFT_ENOMEM;
    uint16_t port;
    int rv = peer_parse_addr(addr, c->host, sizeof c->host, &port);
    if (rv == 0 && port == 0)
        rv = CRAFT_EINVAL;
    if (rv) {
        craft_free(c);
        return rv;
    }
    if (c->host[0] == 0)
        strcpy(c->host, "127.0.0.1"); /* ":11000" means this host */
    if (bind_host != NULL && bind_host[0] != 0) {
        if (uv_ip4_addr(bind_host, 0, (struct sockaddr_in *)&c->bind) != 0) {
            craft_free(c);
            return CRAFT_EINVAL;
        }
        c->bind_set = true;
    }
    snprintf(c->port, sizeof c->port, "%u", port);
    uv_loop_t *loop = n->loop;
    c->n_tls = n->httpc_tls;
    char auth[768] = "";
    if (n->httpc_auth != NULL)
        snprintf(auth, sizeof auth, "Authorization: %s\r\n", n->httpc_auth);
    size_t blen = json_body ? strlen(json_body) : 0;
    char proof[PEER_JOIN_PROOF_LEN + 1];
    /* A body the node sends is vouched for by the cluster token (members
     * require it of a /join). */
    if (json_body != NULL && n->peers != NULL &&
        peer_join_proof(n->peers, json_body, blen, proof) == 0) {
        size_t used = strlen(auth);
        snprintf(auth + used, sizeof auth - used, "%s: %s\r\n",
                 HTTP_JOIN_PROOF_HEADER, proof);
    }
    size_t cap = strlen(method) + strlen(path) + strlen(c->host) + strlen(auth) + blen + 200;
    c->req = craft_malloc(cap);
    if (c->req == NULL) {
        craft_free(c);
        return CRAFT_ENOMEM;
    }
    if (json_body)
        c->req_len = (size_t)snprintf(
            c->req, cap,
            "%s %s HTTP/1.1\r\nHost: %s:%s\r\n%sContent-Type: application/json"
            "\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
            method, path, c->host, c->port, auth, blen, json_body);
    else
        c->req_len = (size_t)snprintf(c->req, cap,
                                      "%s %s HTTP/1.1\r\nHost: %s:%s\r\n%s"
                                      "Connection: close\r\n\r\n",
                                      method, path, c->host, c->port, auth);
    c->cb = cb;
    c->ud = ud;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->refs = 1; /* the timer */
    uv_timer_start(&c->timer, on_deadline, timeout_ms, 0);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    c->gai.data = c;
    rv = uv_getaddrinfo(loop, &c->gai, on_resolved, c->host, c->port, &hints);
    if (rv) {
        c->cb = NULL;
        teardown(c);
        return rv;
    }
    c->resolving = true;
    c->refs++;
    *out = c;
    return 0;
}

const char *node__bind_host(const struct node *n, char buf[64])
{
    char host[PEER_HOST_MAX + 1];
    uint16_t port;
    if (peer_parse_addr(n->raft_addr, host, sizeof host, &port) != 0 ||
        host[0] == 0 || strlen(host) >= 64 ||
        strspn(host, "0123456789.") != strlen(host))
        return NULL;
    memcpy(buf, host, strlen(host) + 1);
    return buf;
}

void node__httpc_cancel(struct node__httpc *c)
{
    if (c == NULL || c->cb == NULL)
        return;
    c->cb = NULL;
    teardown(c);
}

int node__httpc_setup(struct node *n)
{
    const char *cred = n->o.join_user;
    if (cred != NULL) {
        char b[512];
        if (strchr(cred, ':') == NULL || auth_basic_header(cred, b, sizeof b) != 0) {
            CRAFT_ERROR(&n->log, "-join-user must be user:password (at most 370 bytes)");
            return CRAFT_EINVAL;
        }
        n->httpc_auth = craft_memdup(b, strlen(b) + 1);
        explicit_bzero(b, sizeof b);
        n->o.join_user = NULL; /* the caller's; not kept */
        if (n->httpc_auth == NULL)
            return CRAFT_ENOMEM;
    }
    if (n->o.tls_cert != NULL) {
        const char *ca = n->o.join_ca ? n->o.join_ca : n->o.tls_client_ca;
        int rv = http_tls_client_new(&n->httpc_tls, ca, n->o.tls_cert, n->o.tls_key, &n->log);
        if (rv)
            return rv;
    }
    return 0;
}

void node__httpc_teardown(struct node *n)
{
    if (n->httpc_auth != NULL) {
        explicit_bzero(n->httpc_auth, strlen(n->httpc_auth));
        craft_free(n->httpc_auth);
        n->httpc_auth = NULL;
    }
    http_tls_client_free(n->httpc_tls);
    n->httpc_tls = NULL;
}
