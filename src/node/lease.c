/* The node's lease clock (src/lease, docs/architecture.md "Leases"): built
 * from the map's lease table at start and after a snapshot install (every
 * lease then starts with its full TTL), fed with every lease command this
 * node applies (its time of applying: uv_now), and, while this node leads,
 * turned into KV_LEASE_EXPIRE proposals at each tick. Followers keep their
 * clock too (GET /lease/<id> shows its remaining_ms) but never propose. */
#include <stdlib.h>

#include "lease/lease.h"
#include "node/internal.h"

/* Expiries proposed at most per tick; the rest follow at the next ones. */
#define EXPIRE_PER_TICK 128

int node__leases_open(struct node *n)
{
    /* An expiry that did not apply (lost in a leader change, dropped) is
     * proposed again once a request would have timed out. */
    return lease_clock_new(n->o.request_timeout_ms, &n->leases);
}

void node__leases_close(struct node *n)
{
    lease_clock_free(n->leases);
    n->leases = NULL;
}

/* Losing a lease's deadline would let it outlive its TTL for good, and
 * an allocation this small failing leaves little else working: stop as a
 * crash would (a restart rebuilds the clock from the map). */
static void out_of_memory(struct node *n, uint64_t id)
{
    CRAFT_ERROR(&n->log, "out of memory recording lease %llu in the lease "
                "clock; stopping", (unsigned long long)id);
    exit(1);
}

void node__leases_rebuild(struct node *n)
{
    if (n->leases == NULL)
        return;
    /* every lease of the map starts now */
    if (lease_clock_rebuild(n->leases, n->kv, node__now(n)) != 0)
        out_of_memory(n, 0);
}

void node__leases_applied(struct node *n, const struct kv_result *res)
{
    if (lease_clock_on_result(n->leases, res, node__now(n)) != 0)
        out_of_memory(n, res->lease_id);
}

uint64_t node__lease_min_ttl_s(const struct node *n)
{
    uint64_t election_ms = (uint64_t)n->o.election_ticks * n->o.tick_ms;
    return (3 * election_ms + 1999) / 2000; /* ceil(1.5 x ms / 1000) */
}

/* An EXPIRE of lease id, proposed with no request waiting for it (id 0:
 * its outcome is looked up by no one). If it is lost, the clock names the
 * lease again after its retry interval. */
static void propose_expire(struct node *n, uint64_t id)
{
    uint8_t buf[KV_LEASE_CMD_MAX];
    size_t len = lease_expire_cmd(n->kv, id, buf); /* names its refresh */
    if (len == 0)
        return; /* gone already: the clock forgets it when that applies */
    int rv = raft_propose(n->raft, 0, buf, len);
    if (rv)
        CRAFT_WARN(&n->log, "cannot propose the expiry of lease %llu: %s",
                   (unsigned long long)id, craft_strerror(rv));
    else
        CRAFT_DEBUG(&n->log, "lease %llu ran out: expiry proposed",
                    (unsigned long long)id);
}

bool node__leases_leading(struct node *n)
{
    struct raft_soft_state s = raft_soft(n->raft);
    if (s.role != RAFT_LEADER || n->stopping || !node__takes_part(n)) {
        n->lease_term = 0;
        return false;
    }
    if (n->lease_term != s.term) {
        /* Another node may have led meanwhile, and its keepalives were
         * timed by its clock, not ours: every lease gets its full TTL. */
        lease_clock_became_leader(n->leases, node__now(n));
        n->lease_term = s.term;
        if (lease_clock_count(n->leases) > 0)
            CRAFT_INFO(&n->log, "leading in term %llu: %zu leases get their "
                       "full TTL from now", (unsigned long long)s.term,
                       lease_clock_count(n->leases));
    }
    return true;
}

void node__leases_tick(struct node *n)
{
    if (!node__leases_leading(n))
        return;
    uint64_t now = node__now(n);
    uint64_t ids[EXPIRE_PER_TICK];
    size_t got = lease_clock_due(n->leases, now, raft_applied_index(n->raft),
                                 ids, EXPIRE_PER_TICK);
    for (size_t i = 0; i < got; i++)
        propose_expire(n, ids[i]);
    if (got > 0)
        lease_clock_proposed(n->leases, raft_last_index(n->raft));
}
