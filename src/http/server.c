/* The server's life: h2o configuration, accepting (and refusing, above the
 * limits of guard.c) TCP connections, and the asynchronous close that answers
 * what is pending, shuts every connection and frees it all. */
#include "http/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/error.h"

#define HTTP__DEFAULT_MAX_BODY (1u << 20)
#define HTTP__DEFAULT_MAX_KEY 4096
#define HTTP__DEFAULT_TIMEOUT_MS 10000
#define HTTP__DEFAULT_MAX_CONNS 1024
#define HTTP__CLOSE_GRACE_MS 1000
#define HTTP__DEFAULT_LINGER_MS 5000
#define HTTP__DEFAULT_LINGER_BYTES (64u << 20)
#define HTTP__DEFAULT_MAX_PER_IP 256
#define HTTP__DEFAULT_IDLE_REAP_MS 1000
#define HTTP__LOG_PERIOD_MS 5000 /* outsider-made log lines: 1 per 5 s ... */
#define HTTP__LOG_BURST 5        /* ... after a burst of 5 */

static void maybe_finish(struct http_server *s);

void http__conn_free(struct http__conn *c)
{
    struct http_server *s = c->srv;
    http__guard_closed(c);
    if (c->linger_fd >= 0)
        close(c->linger_fd);
    http__list_unlink(&c->link);
    s->nconns--;
    craft_free(c);
    if (s->closing)
        maybe_finish(s);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct http__conn *c = (struct http__conn *)h;
    http__guard_closed(c); /* its fd may be reused from now on */
    if (c->linger_fd >= 0 && http__linger_start(c))
        return; /* freed once drained */
    http__conn_free(c);
}

/* Above a limit: a best-effort 503 {"error": why}, then close. */
static void refuse(struct http_server *s, struct http__conn *c, const char *why)
{
    uv_buf_t b[2];
    char head[160], body[128];
    int bl = snprintf(body, sizeof body, "{\"error\":\"%s\"}", why);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Connection: close\r\nContent-Length: %d\r\n\r\n", bl);
    b[0] = uv_buf_init(head, (unsigned)n);
    b[1] = uv_buf_init(body, (unsigned)bl);
    (void)uv_try_write((uv_stream_t *)&c->tcp, b, 2); /* nothing to do if it fails */
    s->refused_total++;
    uint64_t dropped;
    if (craft_ratelimit_allow(&s->rl_refuse, uv_now(s->loop), &dropped))
        CRAFT_WARN(s->log, "http: refused a connection (%s): %u open, %" PRIu64 " refused in "
                   "all (%" PRIu64 " similar lines suppressed)", why, s->nconns - 1,
                   s->refused_total, dropped);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_accept(uv_stream_t *listener, int status)
{
    struct http_server *s = HTTP__CONTAINER(listener, struct http_server, listener);
    if (status != 0) {
        CRAFT_WARN(s->log, "http: accept: %s", uv_strerror(status));
        return;
    }
    struct http__conn *c = craft_malloc(sizeof *c);
    if (c == NULL) {
        CRAFT_ERROR(s->log, "http: out of memory accepting a connection");
        return; /* the connection stays in the backlog */
    }
    c->srv = s;
    c->linger_fd = -1;
    c->lingering = false;
    c->linger_handles = 0;
    c->drained = 0;
    c->fd = -1;
    c->ip = NULL;
    http__list_init(&c->idle);
    c->busy = c->reaped = c->pipelined = false;
    uv_tcp_init(s->loop, &c->tcp);
    http__list_push(&s->conns, &c->link);
    s->nconns++;
    int err = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (err != 0) {
        CRAFT_WARN(s->log, "http: accept: %s", uv_strerror(err));
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    const char *why = http__guard_admit(s, c);
    if (why != NULL) {
        refuse(s, c, why);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    h2o_accept(&s->accept_ctx, sock);
}

static void configure_h2o(struct http_server *s, uint32_t timeout_ms)
{
    h2o_config_init(&s->config);
    s->config.server_name = h2o_iovec_init(H2O_STRLIT("craftd"));
    s->config.max_request_entity_size = s->max_body;
    s->config.http1.req_timeout = timeout_ms;
    s->config.handshake_timeout = timeout_ms; /* a TLS client that never finishes it */
    s->config.http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *host =
        h2o_config_register_host(&s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *root = h2o_config_register_path(host, "/", 0);
    struct http__handler *h = (struct http__handler *)h2o_create_handler(root, sizeof *h);
    h->super.on_req = http__on_req;
    h->srv = s;
    http__errfilter_register(s, &host->fallback_path);
    h2o_context_init(&s->ctx, s->loop, &s->config);
    s->accept_ctx =
        (h2o_accept_ctx_t){.ctx = &s->ctx, .hosts = s->config.hosts, .ssl_ctx = s->ssl};
}

int http_server_start(struct http_server **out, const struct http_opts *o)
{
    *out = NULL;
    if (o == NULL || o->loop == NULL || o->handlers == NULL)
        return CRAFT_EINVAL;
    if ((o->tls_cert != NULL) != (o->tls_key != NULL) ||
        (o->tls_client_ca != NULL && o->tls_cert == NULL)) {
        CRAFT_ERROR(o->log, "http: tls: -tls-cert and -tls-key go together, and "
                            "-tls-client-ca needs them");
        return CRAFT_EINVAL;
    }
    SSL_CTX *ssl = NULL;
    if (o->tls_cert != NULL &&
        (ssl = http__tls_ctx(o->tls_cert, o->tls_key, o->tls_client_ca, o->log)) == NULL)
        return CRAFT_EINVAL;
    int port;
    int fd = http__listen_fd(o->listen, o->log, &port);
    if (fd < 0) {
        SSL_CTX_free(ssl);
        return fd;
    }
    struct http_server *s = craft_calloc(1, sizeof *s);
    if (s == NULL) {
        SSL_CTX_free(ssl);
        close(fd);
        return CRAFT_ENOMEM;
    }
    s->ssl = ssl;
    s->auth = o->auth;
    craft_ratelimit_init(&s->rl_auth, HTTP__LOG_PERIOD_MS, HTTP__LOG_BURST);
    s->loop = o->loop;
    s->handlers = *o->handlers;
    s->ud = o->ud;
    s->log = o->log;
    s->port = port;
    s->max_body = o->max_body ? o->max_body : HTTP__DEFAULT_MAX_BODY;
    s->max_key = o->max_key ? o->max_key : HTTP__DEFAULT_MAX_KEY;
    s->max_value = o->max_value ? o->max_value : s->max_body;
    s->max_conns = o->max_conns ? o->max_conns : HTTP__DEFAULT_MAX_CONNS;
    s->linger_ms = o->linger_ms ? o->linger_ms : HTTP__DEFAULT_LINGER_MS;
    s->linger_max_bytes = o->linger_max_bytes ? o->linger_max_bytes : HTTP__DEFAULT_LINGER_BYTES;
    s->max_per_ip = o->max_conns_per_ip ? o->max_conns_per_ip : HTTP__DEFAULT_MAX_PER_IP;
    s->idle_reap_ms = o->idle_reap_ms ? o->idle_reap_ms : HTTP__DEFAULT_IDLE_REAP_MS;
    http__list_init(&s->idle);
    craft_ratelimit_init(&s->rl_refuse, HTTP__LOG_PERIOD_MS, HTTP__LOG_BURST);
    craft_ratelimit_init(&s->rl_bad, HTTP__LOG_PERIOD_MS, HTTP__LOG_BURST);
    craft_ratelimit_init(&s->rl_gone, HTTP__LOG_PERIOD_MS, HTTP__LOG_BURST);
    http__list_init(&s->conns);
    http__list_init(&s->pending);
    http__list_init(&s->events);
    configure_h2o(s, o->req_timeout_ms ? o->req_timeout_ms : HTTP__DEFAULT_TIMEOUT_MS);
    uv_timer_init(s->loop, &s->grace_timer);
    uv_timer_init(s->loop, &s->sweep_timer);
    uv_idle_init(s->loop, &s->final_handle);
    uv_tcp_init(s->loop, &s->listener);
    int err = uv_tcp_open(&s->listener, fd);
    if (err != 0)
        close(fd); /* not adopted by the handle */
    else
        err = uv_listen((uv_stream_t *)&s->listener, 1024, on_accept);
    if (err != 0) {
        CRAFT_ERROR(s->log, "http: listen on %s: %s", o->listen, uv_strerror(err));
        http_server_close(s, NULL, NULL); /* frees s on a later loop turn */
        return err;
    }
    CRAFT_INFO(s->log, "http: listening on %s (port %d)%s%s%s", o->listen, port,
               ssl ? ", HTTPS" : "", o->tls_client_ca ? " with client certificates" : "",
               o->auth ? ", users and roles" : "");
    *out = s;
    return 0;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

/* --- closing --- */

static void shutdown_conns(struct http_server *s, int how)
{
    for (struct http__link *l = s->conns.next; l != &s->conns; l = l->next) {
        struct http__conn *c = HTTP__CONTAINER(l, struct http__conn, link);
        uv_os_fd_t fd;
        if (!uv_is_closing((uv_handle_t *)&c->tcp) && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            shutdown(fd, how);
    }
}

static void on_grace_over(uv_timer_t *t)
{
    struct http_server *s = HTTP__CONTAINER(t, struct http_server, grace_timer);
    CRAFT_WARN(s->log, "http: closing: %u connections still open, resetting them", s->nconns);
    shutdown_conns(s, SHUT_RDWR); /* pending writes fail, h2o closes */
}

static void on_final_closed(uv_handle_t *h)
{
    struct http_server *s = HTTP__CONTAINER(h, struct http_server, final_handle);
    void (*cb)(void *) = s->close_cb;
    void *ud = s->close_ud;
    http__guard_free(s);
    SSL_CTX_free(s->ssl);
    craft_free(s);
    if (cb != NULL)
        cb(ud);
}

/* h2o_context_dispose closes its timers with no callback, in the same loop
 * pass as this one; the server (which holds them) is freed one pass later. */
static void on_grace_closed(uv_handle_t *h)
{
    struct http_server *s = HTTP__CONTAINER(h, struct http_server, grace_timer);
    uv_close((uv_handle_t *)&s->final_handle, on_final_closed);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct http_server *s = HTTP__CONTAINER(h, struct http_server, listener);
    s->listener_closed = true;
    maybe_finish(s);
}

static void maybe_finish(struct http_server *s)
{
    if (!s->listener_closed || s->nconns != 0)
        return;
    s->listener_closed = false; /* finish once */
    h2o_context_dispose(&s->ctx);
    h2o_config_dispose(&s->config);
    uv_close((uv_handle_t *)&s->sweep_timer, NULL); /* freed a pass after grace_timer */
    uv_close((uv_handle_t *)&s->grace_timer, on_grace_closed);
}

void http_server_close(struct http_server *s, void (*cb)(void *), void *ud)
{
    if (s->closing)
        return;
    s->closing = true;
    s->close_cb = cb;
    s->close_ud = ud;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    /* No more keep-alive. (Not h2o_context_request_shutdown: in 2.2 it links
     * an HTTP/2 timer entry that h2o_context_dispose then asserts on.) */
    s->ctx.shutdown_requested = 1;
    http__answer_pending(s);
    http__events_end_all(s);
    for (struct http__link *l = s->conns.next; l != &s->conns; l = l->next)
        http__linger_close(HTTP__CONTAINER(l, struct http__conn, link));
    /* Idle connections see EOF and h2o closes them; ones writing a
     * response finish it first (it is their last: no keep-alive). */
    shutdown_conns(s, SHUT_RD);
    uv_timer_start(&s->grace_timer, on_grace_over, HTTP__CLOSE_GRACE_MS, 0);
}
