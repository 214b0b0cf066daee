/* GET /watch (docs/http-api.md, "Watch"): the node's Server-Sent Events
 * watchers.
 *
 * A watcher is a hub subscription (src/watch: by key or prefix) plus a
 * cursor into the node's watch history, and one HTTP event stream
 * (http_reply_events). The hub only wakes the stream; the stream pulls
 * (next) when the client has taken the previous piece, and the piece is
 * made then from the history by the cursor: whole entries (every event of
 * an index, each with that index as its id), at most about PIECE_MAX bytes.
 * So a watcher holds one piece, never a backlog. A cursor the history has
 * overtaken gets an error event and the stream ends: `event: error`
 * {"error":"history reset","index":N} when a reset did (a snapshot was
 * installed: N is its index, from which a listing goes on), else
 * {"error":"too slow","index":N} (the client read too slowly for the
 * history's bounds; every event up to N was sent). While nothing is sent for -watch-progress
 * ms, `event: progress` {"index":applied} tells the client how far it is up
 * to date (and finds clients that went away: their next write fails).
 *
 * Owns struct node__watchers (n->watchers) and every struct node__watcher. */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "node/internal.h"
#include "watch/watch.h"

#define PIECE_MAX (64u << 10)    /* a piece ends after the entry that passes this */
#define PIECE_KEEP (1u << 20)    /* a buffer grown past this is freed once sent */
#define WATCH_STALL_MS 60000     /* a piece the client does not take: cut */

struct node__watcher {
    struct node *n;
    struct node__watcher *prev, *next; /* in n->watchers->list */
    struct watch_sub *sub;       /* NULL once the node stops */
    struct watch_cursor cur;     /* every event up to cur.index was sent */
    struct http_events *ev;      /* NULL until the stream started */
    struct http_jbuf out;        /* the piece in flight */
    uint64_t last_ms;            /* when the last piece was made */
    bool progress_due;           /* -watch-progress ms without a piece */
    bool end_next;               /* the error was sent: end */
};

struct node__watchers {
    struct node__watcher *list;
    size_t count;
    uv_timer_t progress;         /* while any watcher is open */
};

static bool matches(const struct node__watcher *w, const struct watch_event *e)
{
    size_t klen;
    bool prefix;
    const uint8_t *k = watch_sub_key(w->sub, &klen, &prefix);
    if (prefix)
        return e->klen >= klen && memcmp(e->key, k, klen) == 0;
    return e->klen == klen && memcmp(e->key, k, klen) == 0;
}

static void append_event(struct http_jbuf *j, const struct watch_event *e)
{
    if (e->type == WATCH_DELETE) {
        http_jbuf_sse_delete(j, e->key, e->klen, e->index);
        return;
    }
    struct kv_meta m = {.key = e->key, .klen = e->klen, .val = e->val, .vlen = e->vlen,
                        .create_index = e->create_index, .mod_index = e->mod_index,
                        .version = e->version, .lease = e->lease};
    http_jbuf_sse_put(j, &m);
}

/* Fills w->out with the events after the cursor: 1 when it ends with an
 * error (history reset, or too slow), 0 otherwise. */
static int fill(struct node__watcher *w, const struct watch_history *h)
{
    struct watch_event e;
    for (;;) {
        struct watch_cursor save = w->cur;
        int rv = watch_history_next(h, &w->cur, &e);
        if (rv == 0)
            return 0;
        if (rv < 0) {
            uint64_t floor;
            w->cur = save;
            if (watch_history_reset_past(h, &w->cur, &floor) == 1)
                http_jbuf_sse_error(&w->out, "history reset", floor);
            else
                http_jbuf_sse_error(&w->out, "too slow", w->cur.index);
            return 1;
        }
        /* A piece holds whole entries: past PIECE_MAX, stop at the next. */
        if (w->out.len >= PIECE_MAX && e.index != save.index) {
            w->cur = save;
            return 0;
        }
        if (matches(w, &e))
            append_event(&w->out, &e);
    }
}

static int next_piece(void *ud, const char **buf, size_t *len)
{
    struct node__watcher *w = ud;
    struct node *n = w->n;
    if (w->end_next || w->sub == NULL || n->stopping)
        return -1;
    if (w->out.cap > PIECE_KEEP)
        http_jbuf_free(&w->out);
    w->out.len = 0;
    w->out.failed = false;
    const struct watch_history *h = node_watch_history(n);
    w->end_next = fill(w, h) == 1;
    if (w->out.len == 0 && w->progress_due)
        http_jbuf_sse_progress(&w->out, n->applied);
    if (w->out.failed) {
        CRAFT_WARN(&n->log, "watch: out of memory for a piece: the watcher is closed");
        return -1;
    }
    if (w->out.len == 0)
        return 0;
    w->progress_due = false;
    w->last_ms = node__now(n);
    *buf = w->out.data;
    *len = w->out.len;
    return 1;
}

static void unlink_watcher(struct node *n, struct node__watcher *w)
{
    struct node__watchers *ws = n->watchers;
    if (w->prev)
        w->prev->next = w->next;
    else
        ws->list = w->next;
    if (w->next)
        w->next->prev = w->prev;
    ws->count--;
    if (ws->count == 0)
        uv_timer_stop(&ws->progress);
}

static void stream_done(void *ud)
{
    struct node__watcher *w = ud;
    struct node *n = w->n;
    if (w->sub != NULL)
        node_watch_unsubscribe(n, w->sub);
    unlink_watcher(n, w);
    http_jbuf_free(&w->out);
    craft_free(w);
}

static const struct http_events_src SRC = {.next = next_piece, .done = stream_done};

static void on_change(void *ud, struct watch_sub *sub, uint64_t index)
{
    (void)sub;
    (void)index;
    struct node__watcher *w = ud;
    if (w->ev != NULL)
        http_events_wake(w->ev);
}

static void on_progress(uv_timer_t *t)
{
    struct node *n = t->data;
    struct node__watchers *ws = n->watchers;
    uint64_t now = node__now(n);
    for (struct node__watcher *w = ws->list; w != NULL; w = w->next) {
        if (w->ev == NULL || now - w->last_ms < n->o.watch_progress_ms)
            continue;
        w->progress_due = true;
        http_events_wake(w->ev);
    }
}

static int watchers_get(struct node *n, struct node__watchers **out)
{
    if (n->watchers == NULL) {
        struct node__watchers *ws = craft_calloc(1, sizeof *ws);
        if (ws == NULL)
            return CRAFT_ENOMEM;
        uv_timer_init(n->loop, &ws->progress);
        ws->progress.data = n;
        n->watchers = ws;
    }
    *out = n->watchers;
    return 0;
}

void node__watch(void *ud, struct http_req *req, const struct http_watch_opts *o)
{
    struct node *n = ud;
    if (n->stopping) {
        http_reply_error(req, 503, "shutting down");
        return;
    }
    if (node__refuse_request(n, req))
        return;
    struct node__watchers *ws;
    if (watchers_get(n, &ws) != 0) {
        http_reply_error(req, 503, "out of memory");
        return;
    }
    if (ws->count >= n->o.watch_max) {
        http_reply_error(req, 503, "too many watchers");
        return;
    }
    const struct watch_history *h = node_watch_history(n);
    uint64_t from = o->has_from ? o->from : n->applied;
    struct watch_cursor cur;
    if (watch_history_seek(h, from, &cur) != 0) {
        char body[96];
        int len = snprintf(body, sizeof body, "{\"error\":\"compacted\",\"oldest_index\":%llu}",
                           (unsigned long long)watch_history_floor(h));
        http_reply_set_index(req, n->applied);
        http_reply_json(req, 410, body, (size_t)len);
        return;
    }
    struct node__watcher *w = craft_calloc(1, sizeof *w);
    if (w == NULL) {
        http_reply_error(req, 503, "out of memory");
        return;
    }
    /* The first piece goes at once: the events already due, or a progress
     * event with the applied index, so that the client has the answer's
     * head (and where the node stands) without waiting for a change. */
    *w = (struct node__watcher){.n = n, .cur = cur, .last_ms = node__now(n),
                                .progress_due = true};
    http_jbuf_init(&w->out);
    w->sub = node_watch_subscribe(n, o->key, o->klen, o->prefix, on_change, w);
    if (w->sub == NULL) {
        craft_free(w);
        http_reply_error(req, 503, "out of memory");
        return;
    }
    w->next = ws->list;
    if (ws->list)
        ws->list->prev = w;
    ws->list = w;
    if (ws->count++ == 0) {
        unsigned every = n->o.watch_progress_ms / 4;
        uv_timer_start(&ws->progress, on_progress, every ? every : 1, every ? every : 1);
    }
    http_reply_set_index(req, n->applied);
    if (http_reply_events(req, WATCH_STALL_MS, &SRC, w, &w->ev) != 0) {
        /* answered (503) or discarded; done is never called */
        node_watch_unsubscribe(n, w->sub);
        unlink_watcher(n, w);
        craft_free(w);
    }
}

size_t node__watchers_count(const struct node *n)
{
    return n->watchers ? n->watchers->count : 0;
}

void node__watchers_stop(struct node *n)
{
    struct node__watchers *ws = n->watchers;
    if (ws == NULL)
        return;
    for (struct node__watcher *w = ws->list; w != NULL; w = w->next) {
        node_watch_unsubscribe(n, w->sub);
        w->sub = NULL;
        if (w->ev != NULL)
            http_events_end(w->ev);
    }
}

uv_handle_t *node__watchers_timer(struct node *n)
{
    return n->watchers ? (uv_handle_t *)&n->watchers->progress : NULL;
}

void node__watchers_free(struct node *n)
{
    /* The HTTP server has closed (every stream is done: the list is empty)
     * and so has the timer. */
    craft_free(n->watchers);
    n->watchers = NULL;
}
