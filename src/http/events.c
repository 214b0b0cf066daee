/* Open-ended streamed replies (http_reply_events): a 200 whose body has no
 * length known in advance (chunked), made of pieces of text the node hands
 * over when it has them, for Server-Sent Events (GET /watch).
 *
 * A piece goes out as it was handed over: one buffer in one h2o_send, one
 * HTTP chunk, never split or merged here (GET /watch makes each piece of
 * whole entries, so the events of an entry share one chunk; a connection
 * can still break inside it: docs/http-api.md, "Watch").
 *
 * One piece is in flight per stream: the next one is asked of the node
 * (src->next) only once h2o has written the previous one and called
 * proceed; when the node has nothing, the stream waits for
 * http_events_wake. So a slow client costs the node one piece, whatever
 * the backlog. Wakes are taken on the next loop turn (a zero timer), so
 * that many in one turn cost one call of next and the node's callbacks
 * never run inside its own calls. A piece that waits for the client longer
 * than stall_ms gets the client cut (as stream.c does). Whatever ends the
 * stream (the node's next says so, http_events_end, the client gone or
 * cut, the server closing) calls src->done exactly once, from the loop.
 * The stream is freed once its timers have closed, after done. */
#include "http/internal.h"

#include <string.h>
#include <sys/socket.h>

#include "common/alloc.h"

static const char EVENTS_TYPE[] = "text/event-stream";

struct http_events {
    h2o_generator_t gen;      /* first: h2o hands it back to proceed/stop */
    h2o_req_t *h2o;           /* NULL once the stream is over */
    struct http_server *srv;
    struct http__link link;   /* in srv->events while h2o != NULL */
    struct http_events_src src;
    void *ud;
    bool ready;               /* h2o wrote the last piece: next may be sent */
    bool ending;              /* end after the piece in flight */
    unsigned stall_ms;
    unsigned open_timers;     /* 2 until both closed */
    uv_timer_t stall;         /* runs while a piece waits for the client */
    uv_timer_t kick;          /* a wake (or end) to act on next loop turn */
};

static void on_timer_closed(uv_handle_t *h)
{
    struct http_events *s = h->data;
    if (--s->open_timers == 0)
        craft_free(s);
}

/* The stream is over: tell the node, then free it (once the timers closed). */
static void finish(struct http_events *s)
{
    s->h2o = NULL;
    http__list_unlink(&s->link);
    uv_timer_stop(&s->stall);
    uv_timer_stop(&s->kick);
    s->src.done(s->ud);
    uv_close((uv_handle_t *)&s->stall, on_timer_closed);
    uv_close((uv_handle_t *)&s->kick, on_timer_closed);
}

static void on_stall(uv_timer_t *t)
{
    struct http_events *s = t->data;
    if (s->h2o == NULL || s->h2o->conn == NULL || s->h2o->conn->callbacks->get_socket == NULL)
        return;
    h2o_socket_t *sock = s->h2o->conn->callbacks->get_socket(s->h2o->conn);
    if (sock == NULL)
        return;
    /* The write in flight fails, h2o closes the connection and calls stop. */
    s->h2o->http1_is_persistent = 0;
    shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
}

/* The previous piece is written: send the next one if there is one. */
static void pump(struct http_events *s)
{
    h2o_req_t *req = s->h2o;
    const char *buf = NULL;
    size_t len = 0;
    int rv = s->ending ? -1 : s->src.next(s->ud, &buf, &len);
    if (rv == 0 || (rv > 0 && len == 0))
        return; /* nothing now: a wake comes when there is */
    s->ready = false;
    if (rv < 0) {
        finish(s);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    uv_timer_start(&s->stall, on_stall, s->stall_ms, 0);
    h2o_iovec_t v = h2o_iovec_init(buf, len);
    h2o_send(req, &v, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    struct http_events *s = (struct http_events *)g;
    uv_timer_stop(&s->stall);
    s->ready = true;
    pump(s);
}

static void on_kick(uv_timer_t *t)
{
    struct http_events *s = t->data;
    if (s->h2o != NULL && s->ready)
        pump(s);
}

/* The request is disposed of before the end: the client went away, was
 * cut, or the server is closing. */
static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    struct http_events *s = (struct http_events *)g;
    if (s->h2o != NULL)
        finish(s);
}

int http_reply_events(struct http_req *req, unsigned stall_ms, const struct http_events_src *src,
                      void *ud, struct http_events **out)
{
    *out = NULL;
    struct http_events *s = craft_malloc(sizeof *s);
    if (s == NULL) {
        http_reply_error(req, 503, "out of memory");
        return CRAFT_ENOMEM;
    }
    struct http_server *srv = req->srv;
    if (srv->closing) {
        craft_free(s);
        http_reply_error(req, 503, "shutting down");
        return CRAFT_ESHUTDOWN;
    }
    h2o_req_t *h = http__claim(req); /* req may be freed from here on */
    if (h == NULL) { /* the reply is discarded: nothing to stream */
        craft_free(s);
        return CRAFT_ENOTFOUND;
    }
    *s = (struct http_events){.gen = {on_proceed, on_stop}, .h2o = h, .srv = srv, .src = *src,
                              .ud = ud, .stall_ms = stall_ms ? stall_ms : 30000,
                              .open_timers = 2};
    uv_timer_init(srv->loop, &s->stall);
    uv_timer_init(srv->loop, &s->kick);
    s->stall.data = s->kick.data = s;
    http__list_push(&srv->events, &s->link);
    h->res.status = 200;
    h->res.reason = http__reason(200);
    h2o_add_header(&h->pool, &h->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, EVENTS_TYPE,
                   sizeof EVENTS_TYPE - 1);
    h2o_add_header(&h->pool, &h->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-cache"));
    /* Tells a proxy such as nginx not to buffer the stream. */
    h2o_add_header_by_str(&h->pool, &h->res.headers, H2O_STRLIT("x-accel-buffering"), 0,
                          "X-Accel-Buffering", H2O_STRLIT("no"));
    h->http1_is_persistent = 0; /* the stream is the connection's last answer */
    h2o_start_response(h, &s->gen);
    http__observe_sent(h, 200); /* the answer starts */
    /* The headers alone at once (a client knows it is subscribed); the body
     * follows from proceed. */
    uv_timer_start(&s->stall, on_stall, s->stall_ms, 0);
    h2o_send(h, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
    *out = s;
    return 0;
}

void http_events_wake(struct http_events *s)
{
    if (s->h2o != NULL && s->ready && !uv_is_active((uv_handle_t *)&s->kick))
        uv_timer_start(&s->kick, on_kick, 0, 0);
}

void http_events_end(struct http_events *s)
{
    if (s->h2o == NULL)
        return;
    s->ending = true;
    http_events_wake(s); /* at once if idle, else after the piece in flight */
}

void http__events_end_all(struct http_server *srv)
{
    for (struct http__link *l = srv->events.next; l != &srv->events; l = l->next)
        http_events_end(HTTP__CONTAINER(l, struct http_events, link));
}
