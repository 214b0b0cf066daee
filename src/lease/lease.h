/* The lease clock: when each lease of the state machine runs out, as one
 * node sees it (docs/architecture.md, "Leases").
 *
 * The state machine (src/kv) holds the leases and reads no clock; this
 * module keeps, per lease id, its TTL and a deadline on the caller's
 * monotonic clock. Every node keeps one, fed with the lease commands it
 * applies: a GRANT or a KEEPALIVE (re)starts the lease (deadline = the
 * time it applied + TTL), a REVOKE or an EXPIRE forgets it. Only the
 * leader acts on it: lease_clock_due() names the leases past their
 * deadline, for which it proposes KV_LEASE_EXPIRE, and on every gain of
 * leadership lease_clock_became_leader() gives every lease its full TTL
 * from then (a lease may outlive its TTL across a failover, never expire
 * early).
 *
 * Pure: time is passed in (milliseconds, any monotonic origin), nothing
 * here does I/O, reads a clock or knows of nodes, so the simulator can run
 * one per simulated node. Memory: one allocation per lease plus a hash
 * table and a heap that grow by doubling, all through craft_malloc; freed
 * by lease_clock_free. A struct lease_clock is used by one thread at a
 * time.
 *
 * Cost: start, forget and due are O(log n) per lease; became_leader and
 * clear are O(n). */
#ifndef CRAFT_LEASE_H
#define CRAFT_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lease_clock;

/* A new, empty clock. retry_ms: how long after lease_clock_due() named a
 * lease it names it again if the lease is still there (its EXPIRE was lost
 * or did not commit), >= 1. 0 and *out, or CRAFT_ENOMEM / CRAFT_EINVAL. */
int lease_clock_new(uint64_t retry_ms, struct lease_clock **out);
void lease_clock_free(struct lease_clock *c); /* NULL is fine */

/* Forget every lease (before rebuilding from a new state). */
void lease_clock_clear(struct lease_clock *c);

/* Lease id (>= 1) with TTL ttl_ms (>= 1) starts now: deadline = now +
 * ttl_ms, no longer "proposed". For a GRANT or KEEPALIVE applied now, and
 * for each lease of a state read at start or from a snapshot. An id already
 * known is restarted (its TTL replaced). 0, CRAFT_EINVAL (id or ttl 0), or
 * CRAFT_ENOMEM (the clock is unchanged). */
int lease_clock_start(struct lease_clock *c, uint64_t id, uint64_t ttl_ms,
                      uint64_t now);
/* Lease id is gone (REVOKE or EXPIRE applied); unknown ids are ignored. */
void lease_clock_forget(struct lease_clock *c, uint64_t id);

/* The result of one applied lease command, with the op values of enum
 * kv_lease_op (kv/kv.h: 1 GRANT, 2 REVOKE, 3 EXPIRE, 4 KEEPALIVE): GRANT
 * and a found KEEPALIVE start the lease, REVOKE and EXPIRE forget it, a
 * KEEPALIVE of a lease that was not found (found false) changes nothing.
 * Other ops are ignored. 0 or CRAFT_ENOMEM (as lease_clock_start). */
int lease_clock_on_applied(struct lease_clock *c, uint8_t op, uint64_t id,
                           bool found, uint64_t ttl_ms, uint64_t now);

/* This node became leader now: every lease's deadline = now + its TTL, and
 * none is "proposed" any more. */
void lease_clock_became_leader(struct lease_clock *c, uint64_t now);

/* The leases whose deadline is <= now and that were not named in the last
 * retry_ms, at most cap of them into ids (earliest deadline first);
 * returns how many. Each one named is marked proposed and is named again
 * retry_ms from now if it is still there. Names none while applied (the
 * caller's applied index) is below what lease_clock_proposed() last said. */
size_t lease_clock_due(struct lease_clock *c, uint64_t now, uint64_t applied,
                       uint64_t *ids, size_t cap);

/* The expiries lease_clock_due just named were proposed, the last of them
 * at log index upto (or before: the log's last index will do). Until the
 * caller has applied upto, lease_clock_due names nothing: a retry is for an
 * EXPIRE that was lost or stale, not for one still waiting to apply, and a
 * leader whose applying lags (a replay, a slow state machine) would
 * otherwise propose every due lease again each retry_ms, faster than it
 * applies them, its log growing for good. Taking office again clears it. */
void lease_clock_proposed(struct lease_clock *c, uint64_t upto);

/* ---- the clock and the map (lease_kv.c) ----
 * What a node does with its clock as it applies src/kv's commands; the
 * daemon and the simulator both call these. */
struct kv;
struct kv_result;

/* Forget everything, then start every lease of kv's lease table now with
 * its full TTL (at start, after a snapshot install). kv NULL: an empty
 * table. 0 or CRAFT_ENOMEM. */
int lease_clock_rebuild(struct lease_clock *c, const struct kv *kv,
                        uint64_t now);
/* The result of a command just applied now (kv_last_result; NULL or not a
 * lease command: nothing): a stale EXPIRE changes nothing, the rest as
 * lease_clock_on_applied. 0 or CRAFT_ENOMEM. */
int lease_clock_on_result(struct lease_clock *c, const struct kv_result *res,
                          uint64_t now);
/* The EXPIRE the leader proposes for due lease id into buf (at least
 * KV_LEASE_CMD_MAX bytes): it names the lease's refresh index in kv. Its
 * length, or 0 if kv no longer has the lease. */
size_t lease_expire_cmd(const struct kv *kv, uint64_t id, uint8_t *buf);

/* Milliseconds left before lease id's deadline (0 once it has passed), or
 * -1 when the clock does not know id. */
int64_t lease_clock_remaining(const struct lease_clock *c, uint64_t id,
                              uint64_t now);
/* Leases known. */
size_t lease_clock_count(const struct lease_clock *c);

#endif
