/* Lingering close, as nginx does it: after h2o refuses a request whose body
 * it will not read (413 body too large, 400 broken framing), it answers and
 * closes the socket. A client that is still sending (it writes the whole
 * body before it reads) then gets a reset: Linux answers data arriving on,
 * or left unread in, a closed socket with RST, and the client's kernel
 * drops the unread 413 with it. So the socket is kept (a dup of its fd taken
 * when the error is set up), and once h2o has written the answer and closed
 * its handle: shutdown(SHUT_WR) sends FIN after the answer, and what the
 * client still sends is read and thrown away until it closes, at most
 * linger_max_bytes or linger_ms. */
#include "http/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/error.h"

void http__linger_arm(struct http_server *s, h2o_req_t *req)
{
    if (s->closing || req->conn == NULL || req->conn->callbacks->get_socket == NULL)
        return;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    int fd = sock ? h2o_socket_get_fd(sock) : -1;
    if (fd < 0)
        return;
    for (struct http__link *l = s->conns.next; l != &s->conns; l = l->next) {
        struct http__conn *c = HTTP__CONTAINER(l, struct http__conn, link);
        uv_os_fd_t cfd;
        if (c->lingering || c->linger_fd >= 0 || uv_is_closing((uv_handle_t *)&c->tcp) ||
            uv_fileno((uv_handle_t *)&c->tcp, &cfd) != 0 || cfd != fd)
            continue;
        c->linger_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (c->linger_fd < 0)
            CRAFT_WARN(s->log, "http: cannot keep a refused connection to drain it: %s",
                       craft_strerror(-errno));
        return;
    }
}

static void linger_closed(uv_handle_t *h)
{
    struct http__conn *c = h->data;
    if (--c->linger_handles > 0)
        return;
    http__conn_free(c);
}

void http__linger_close(struct http__conn *c)
{
    if (!c->lingering || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->linger_handles = 2;
    uv_close((uv_handle_t *)&c->tcp, linger_closed);
    uv_close((uv_handle_t *)&c->linger_timer, linger_closed);
}

static void on_linger_over(uv_timer_t *t)
{
    struct http__conn *c = t->data;
    CRAFT_DEBUG(c->srv->log, "http: a refused client still sends after %u ms (%zu bytes "
                "drained): closing", c->srv->linger_ms, c->drained);
    http__linger_close(c);
}

static void drain_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct http__conn *c = h->data;
    (void)hint;
    *buf = uv_buf_init(c->srv->drain, sizeof c->srv->drain);
}

static void on_drain(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct http__conn *c = st->data;
    (void)buf;
    if (nread < 0) { /* the client closed (or reset): done */
        http__linger_close(c);
        return;
    }
    c->drained += (size_t)nread;
    if (c->drained > c->srv->linger_max_bytes) {
        CRAFT_DEBUG(c->srv->log, "http: a refused client sent %zu bytes more: closing",
                    c->drained);
        http__linger_close(c);
    }
}

bool http__linger_start(struct http__conn *c)
{
    struct http_server *s = c->srv;
    int fd = c->linger_fd;
    c->linger_fd = -1;
    if (s->closing) {
        close(fd);
        return false;
    }
    /* The handle h2o had is closed: its memory takes the kept socket. */
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        c->lingering = true;
        c->linger_handles = 1;
        uv_close((uv_handle_t *)&c->tcp, linger_closed);
        return true;
    }
    (void)shutdown(fd, SHUT_WR); /* FIN after the answer already written */
    c->lingering = true;
    c->drained = 0;
    uv_timer_init(s->loop, &c->linger_timer);
    c->linger_timer.data = c;
    uv_timer_start(&c->linger_timer, on_linger_over, s->linger_ms, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, drain_alloc, on_drain) != 0)
        http__linger_close(c);
    return true;
}
