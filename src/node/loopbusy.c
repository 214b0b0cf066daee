/* How long the loop is busy in each iteration: the time between two of its
 * prepare phases (the moment before it waits for I/O) less the time it
 * spent waiting in between, which libuv counts when the loop is configured
 * with UV_METRICS_IDLE_TIME (uv_metrics_idle_time). What is left is every
 * callback of one iteration: timers, I/O, the pump, closes. While one runs,
 * no request is read, answered or timed out and no heartbeat goes out, so
 * this is what a client's tail latency and a follower's patience see.
 * Costs one uv_hrtime and one uv_metrics_idle_time per iteration; each
 * duration goes to metrics.c, and one over NODE__BUSY_WARN_MS is logged at
 * WARN (rate-limited: a loaded node may do it often). */
#include <inttypes.h>

#include "node/internal.h"
#include "node/metrics.h"

#define NODE__BUSY_WARN_MS 100

uint64_t node__busy_step(struct node__busy *b, uint64_t now_ns, uint64_t idle_ns)
{
    bool first = b->at_ns == 0;
    uint64_t wall = now_ns > b->at_ns ? now_ns - b->at_ns : 0;
    uint64_t idle = idle_ns > b->idle_ns ? idle_ns - b->idle_ns : 0;
    b->at_ns = now_ns;
    b->idle_ns = idle_ns;
    if (first)
        return 0; /* the first prepare only starts the count */
    /* Both clocks are read apart (the idle one inside poll), so a wait can
     * seem a few ns longer than the span around it: never below zero. */
    return wall > idle ? wall - idle : 0;
}

static void on_prepare(uv_prepare_t *p)
{
    struct node *n = p->data;
    uint64_t now = uv_hrtime();
    bool first = n->busy.at_ns == 0;
    uint64_t ns = node__busy_step(&n->busy, now, uv_metrics_idle_time(n->loop));
    if (first)
        return;
    node__metrics_loop_busy(n, ns);
    uint64_t suppressed;
    if (ns >= NODE__BUSY_WARN_MS * 1000000ull &&
        craft_ratelimit_allow(&n->busy_rl, now / 1000000u, &suppressed))
        CRAFT_WARN(&n->log, "the event loop was busy for %" PRIu64 " ms in one iteration "
                   "(nothing else was served meanwhile; %" PRIu64 " similar lines "
                   "suppressed)", ns / 1000000u, suppressed);
}

int node__busy_start(struct node *n)
{
    /* Configuring the loop twice (a second node on it) is harmless. */
    int rv = uv_loop_configure(n->loop, UV_METRICS_IDLE_TIME);
    if (rv != 0) {
        CRAFT_WARN(&n->log, "the event loop cannot count its idle time (%s): its busy "
                   "time per iteration is not measured", uv_strerror(rv));
        return rv;
    }
    craft_ratelimit_init(&n->busy_rl, 10000, 3); /* 3 lines, then 1 per 10 s */
    n->busy = (struct node__busy){0};
    uv_prepare_init(n->loop, &n->busy_meter);
    n->busy_meter.data = n;
    uv_prepare_start(&n->busy_meter, on_prepare);
    uv_unref((uv_handle_t *)&n->busy_meter); /* never keeps the loop alive */
    return 0;
}
