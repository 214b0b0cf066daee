/* The node's change history and watch hub (src/watch): made at start, fed
 * by the map's observer while entries apply, ended once per entry, reset
 * when a snapshot replaces the map. What watchers and blocking queries
 * use to subscribe and read (internal.h, "watch"). */
#include "node/internal.h"

#include "common/alloc.h"

#define DEFAULT_EVENTS 100000
#define DEFAULT_BYTES (64ull << 20)

/* kv observer: one key changed by the entry being applied. */
static void on_kv_event(void *ud, uint64_t index, const struct kv_event *ev)
{
    struct node *n = ud;
    int rv = watch_feed_kv_event(n->watch_history, n->watch_hub, index, ev);
    if (rv)
        CRAFT_WARN(&n->log, "watch history: event of entry %llu dropped (%s): "
                   "watchers behind it start again",
                   (unsigned long long)index, craft_strerror(rv));
}

int node__watch_init(struct node *n)
{
    uint64_t events = n->o.watch_history_events;
    uint64_t bytes = n->o.watch_history_bytes;
    if (events == 0 && bytes == 0) {
        events = DEFAULT_EVENTS;
        bytes = DEFAULT_BYTES;
    }
    /* Before the first entry applies: the history starts at the applied
     * index of the state restored (the snapshot's; 0 for a new node). */
    n->watch_history = watch_history_new((size_t)events, bytes, n->applied);
    n->watch_hub = watch_hub_new(n->raft_id ^ (uint64_t)uv_hrtime());
    if (!n->watch_history || !n->watch_hub)
        return CRAFT_ENOMEM;
    kv_set_observer(n->kv, on_kv_event, n);
    return 0;
}

void node__watch_kv_replaced(struct node *n)
{
    if (!n->watch_history)
        return; /* at start: node__watch_init follows */
    kv_set_observer(n->kv, on_kv_event, n);
    watch_history_reset(n->watch_history, n->applied);
    watch_hub_notify_all(n->watch_hub, n->applied);
}

void node__watch_applied(struct node *n, uint64_t index)
{
    if (n->watch_hub)
        watch_hub_flush(n->watch_hub, index);
}

void node__watch_free(struct node *n)
{
    watch_hub_free(n->watch_hub);
    watch_history_free(n->watch_history);
    n->watch_hub = NULL;
    n->watch_history = NULL;
}

struct watch_sub *node_watch_subscribe(struct node *n, const void *key,
                                       size_t klen, bool prefix, watch_fn fn,
                                       void *ud)
{
    return watch_hub_subscribe(n->watch_hub, key, klen, prefix, fn, ud);
}

void node_watch_unsubscribe(struct node *n, struct watch_sub *sub)
{
    watch_hub_unsubscribe(n->watch_hub, sub);
}

const struct watch_history *node_watch_history(const struct node *n)
{
    return n->watch_history;
}

size_t node_watch_count(const struct node *n)
{
    return n->watch_hub ? watch_hub_count(n->watch_hub) : 0;
}
