/* Blocking queries (docs/http-api.md, "Blocking queries"; Consul style):
 * GET /key/<k>?index=N and GET /keys?prefix=p&index=N. What they read has
 * changed after N when the key's mod_index is above N, or the watch history
 * holds an event above N for it, or N is below the history's floor (the
 * history cannot tell: assume a change). Then they are answered at once;
 * else they wait on a one-shot subscription of the watch hub until an
 * applied entry above N touches them, or until wait= runs out (the node's
 * per-tick request sweep, requests.c). Either way the answer is read from
 * this node's applied state, as a level=none read: any node serves them.
 * At most -blocking-max wait at once (n->o.blocking_max): past it, 503.
 * A waiting request is a struct node__req like any read: a client that
 * goes away, or the node stopping, ends it the usual way, and
 * node__req_done drops its subscription. */
#include "node/internal.h"
#include "watch/watch.h"

static void on_change(void *ud, struct watch_sub *sub, uint64_t index)
{
    struct node__req *q = ud;
    if (index <= q->block_index)
        return; /* (a call for the state as it was: nothing newer) */
    struct node *n = q->block_node;
    (void)sub; /* q->block_sub: node__block_end drops it (safe in here) */
    node__block_end(n, q);
    node__req_serve(n, q);
}

/* Whether what q reads is known to have changed after index. */
static bool changed_after(struct node *n, const void *key, size_t klen,
                          bool prefix, uint64_t index, uint64_t current)
{
    if (current > index)
        return true;
    uint64_t at;
    int rv = watch_history_changed(node_watch_history(n), index, key, klen,
                                   prefix, &at);
    return rv != 0; /* 1: an event above index; CRAFT_ENOTFOUND: below floor */
}

bool node__block(struct node *n, struct node__req *q, const void *key,
                 size_t klen, bool prefix, const struct http_block *b,
                 uint64_t current)
{
    if (!b->on || b->wait_ms == 0 || node_watch_history(n) == NULL ||
        changed_after(n, key, klen, prefix, b->index, current))
        return false;
    if (n->n_blocked >= n->o.blocking_max) {
        node__req_error(n, q, 503, "too many blocking queries waiting on this "
                        "node (-blocking-max %u)", n->o.blocking_max);
        node__req_done(n, q);
        return true;
    }
    q->block_node = n;
    q->block_index = b->index;
    q->block_sub = node_watch_subscribe(n, key, klen, prefix, on_change, q);
    if (q->block_sub == NULL) {
        node__req_error(n, q, 503, "out of memory");
        node__req_done(n, q);
        return true;
    }
    n->n_blocked++;
    q->deadline = node__now(n) + b->wait_ms;
    return true;
}

void node__block_end(struct node *n, struct node__req *q)
{
    if (q->block_sub == NULL)
        return;
    node_watch_unsubscribe(n, q->block_sub);
    q->block_sub = NULL;
    n->n_blocked--;
}
