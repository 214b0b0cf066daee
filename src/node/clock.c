/* The node's Raft clock: ticks counted from the monotonic clock (uv_hrtime),
 * not from timer callbacks. A process that was stopped, starved of CPU or
 * blocked on its loop gets one timer callback however long it was away; it
 * owes the core every tick that elapsed meanwhile. The tick timer delivers
 * them (node__catch_up) and every lease check counts them first
 * (node__ticks_now), because the loop may handle a request before its timer
 * runs again. */
#include <assert.h>

#include "node/internal.h"

void node__clock_init(struct node__clock *c, uint64_t now_ns, unsigned tick_ms,
                      uint64_t max_burst)
{
    assert(tick_ms > 0 && max_burst > 0);
    c->origin_ns = now_ns;
    c->tick_ns = (uint64_t)tick_ms * 1000000u;
    c->max_burst = max_burst;
    c->chores_due = false;
}

uint64_t node__clock_due(const struct node__clock *c, uint64_t now_ns)
{
    return now_ns > c->origin_ns ? (now_ns - c->origin_ns) / c->tick_ns : 0;
}

uint64_t node__clock_catch_up(struct node__clock *c, uint64_t delivered,
                              uint64_t now_ns)
{
    uint64_t due = node__clock_due(c, now_ns);
    if (due <= delivered)
        return 0;
    uint64_t owed = due - delivered;
    if (owed > c->max_burst) {
        /* Past max_burst ticks every timer of the core has expired (no
         * lease, elections and transfers timed out): the rest would change
         * nothing. They are dropped, so due stays delivered + owed. */
        c->origin_ns += (owed - c->max_burst) * c->tick_ns;
        owed = c->max_burst;
    }
    return owed;
}

uint64_t node__clock_until_next(const struct node__clock *c, uint64_t delivered,
                                uint64_t now_ns)
{
    uint64_t next = c->origin_ns + (delivered + 1) * c->tick_ns;
    return next > now_ns ? next - now_ns : 0;
}

/* ---- the node's use of it ---- */

void node__clock_start(struct node *n)
{
    /* Three election timeouts: more than the longest randomized election
     * timeout (under two) and than two rounds of check-quorum (the first
     * may still count what was heard before the stall). */
    uint64_t burst = 3 * (uint64_t)n->o.election_ticks;
    assert(raft_now(n->raft) == 0 && "the clock starts with the core");
    node__clock_init(&n->clock, uv_hrtime(), n->o.tick_ms, burst);
}

uint64_t node__ticks_now(const struct node *n)
{
    uint64_t delivered = raft_now(n->raft);
    uint64_t due = node__clock_due(&n->clock, uv_hrtime());
    return due > delivered ? due : delivered;
}

uint64_t node__catch_up(struct node *n)
{
    uint64_t k = node__clock_catch_up(&n->clock, raft_now(n->raft), uv_hrtime());
    if (k > 0)
        n->clock.chores_due = true;
    if (!node__takes_part(n))
        return k; /* removed: the core's time stands still, it never campaigns */
    if (k > 1)
        craft_log(&n->log, k > n->o.election_ticks / 2 ? CRAFT_LOG_WARN : CRAFT_LOG_DEBUG,
                  "the loop was away for %llu ticks (stopped, starved or blocked): "
                  "catching up", (unsigned long long)k);
    for (uint64_t i = 0; i < k; i++)
        raft_tick(n->raft);
    return k;
}

bool node__take_chores(struct node *n)
{
    bool due = n->clock.chores_due;
    n->clock.chores_due = false;
    return due;
}

uint64_t node__ms_to_next_tick(const struct node *n)
{
    uint64_t ns = node__clock_until_next(&n->clock, raft_now(n->raft), uv_hrtime());
    /* libuv's timers count whole milliseconds of a clock read at the start
     * of the loop's turn: one more makes sure the tick is due when it fires
     * (and one that fires early delivers nothing and is armed again). */
    return (ns + 999999) / 1000000 + 1;
}
