/* Streamed replies (http_reply_stream): a body of known length that the
 * node hands over piece by piece as the client takes it, for bodies too
 * large to hold in memory (GET /backup).
 *
 * Flow control is h2o's: the headers go out first; each time the socket has
 * written the previous piece, h2o calls proceed, and only then is the next
 * piece read from the node (src->read) into the stream's one buffer. A slow
 * client therefore costs one buffer, never more. A client that takes
 * nothing for stall_ms while a piece is waiting is cut: its socket is shut
 * down, the pending write fails, and h2o closes the connection. Whatever
 * ends the stream (all bytes sent, the client gone or cut, the server
 * closing, a failed read) calls src->done exactly once, on the loop, never
 * from within http_reply_stream. The stream itself is freed when its stall
 * timer has closed, after done. */
#include "http/internal.h"

#include <string.h>
#include <sys/socket.h>

#include "common/alloc.h"

#define STREAM_BUF (256u << 10)

struct http__stream {
    h2o_generator_t gen;      /* first: h2o hands it back to proceed/stop */
    h2o_req_t *h2o;           /* NULL once the stream is over */
    struct http_stream_src src;
    void *ud;
    uint64_t len, sent;       /* the body's length; bytes handed to h2o */
    unsigned stall_ms;
    uv_timer_t stall;         /* runs while a piece waits for the client */
    char buf[STREAM_BUF];
};

static void on_timer_closed(uv_handle_t *h)
{
    craft_free(HTTP__CONTAINER(h, struct http__stream, stall));
}

/* The stream is over: tell the node, then free it (once the timer closed). */
static void finish(struct http__stream *s, bool ok)
{
    s->h2o = NULL;
    uv_timer_stop(&s->stall);
    s->src.done(s->ud, ok);
    uv_close((uv_handle_t *)&s->stall, on_timer_closed);
}

static void on_stall(uv_timer_t *t)
{
    struct http__stream *s = HTTP__CONTAINER(t, struct http__stream, stall);
    if (s->h2o == NULL || s->h2o->conn == NULL || s->h2o->conn->callbacks->get_socket == NULL)
        return;
    h2o_socket_t *sock = s->h2o->conn->callbacks->get_socket(s->h2o->conn);
    if (sock == NULL)
        return;
    /* The write in flight fails, h2o closes the connection and calls stop. */
    s->h2o->http1_is_persistent = 0;
    shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
}

/* h2o wrote the previous piece (or the headers): send the next one. */
static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    struct http__stream *s = (struct http__stream *)g;
    uint64_t left = s->len - s->sent;
    size_t want = left < sizeof s->buf ? (size_t)left : sizeof s->buf;
    ssize_t got = want ? s->src.read(s->ud, s->buf, want) : 0;
    if (got < 0 || (got == 0 && want > 0)) {
        /* The client gets a short body and a closed connection. */
        req->http1_is_persistent = 0;
        finish(s, false);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    s->sent += (uint64_t)got;
    h2o_iovec_t v = h2o_iovec_init(s->buf, (size_t)got);
    if (s->sent == s->len) {
        finish(s, true);
        h2o_send(req, &v, 1, H2O_SEND_STATE_FINAL);
        return;
    }
    uv_timer_start(&s->stall, on_stall, s->stall_ms, 0);
    h2o_send(req, &v, 1, H2O_SEND_STATE_IN_PROGRESS);
}

/* The request is being disposed of before the end: the client went away,
 * was cut, or the server is closing. */
static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    struct http__stream *s = (struct http__stream *)g;
    if (s->h2o != NULL)
        finish(s, false);
}

int http_reply_stream(struct http_req *req, const char *ctype, uint64_t len, unsigned stall_ms,
                      const struct http_stream_src *src, void *ud)
{
    struct http__stream *s = craft_malloc(sizeof *s);
    if (s == NULL) {
        http_reply_error(req, 503, "out of memory");
        return CRAFT_ENOMEM;
    }
    uv_loop_t *loop = req->srv->loop;
    h2o_req_t *h = http__claim(req); /* req may be freed from here on */
    if (h == NULL) { /* the reply is discarded: nothing to stream */
        craft_free(s);
        return CRAFT_ENOTFOUND;
    }
    *s = (struct http__stream){.gen = {on_proceed, on_stop}, .h2o = h, .src = *src, .ud = ud,
                               .len = len, .stall_ms = stall_ms ? stall_ms : 30000};
    uv_timer_init(loop, &s->stall);
    h->res.status = 200;
    h->res.reason = http__reason(200);
    h->res.content_length = len;
    if (ctype != NULL)
        h2o_add_header(&h->pool, &h->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype,
                       strlen(ctype));
    h2o_start_response(h, &s->gen);
    http__observe_sent(h, 200); /* the answer starts */
    /* The headers alone; the body follows from on_proceed. */
    uv_timer_start(&s->stall, on_stall, s->stall_ms, 0);
    h2o_send(h, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
    return 0;
}
