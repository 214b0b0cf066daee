/* The lease clock fed from src/kv's state machine (lease.h, "the clock and
 * the map"): rebuilt from a map's lease table, fed with the result of each
 * applied command, and the EXPIRE command a due lease calls for. The daemon
 * (src/node/lease.c) and the simulator (tests/sim/lease.c) both drive their
 * clocks through these, so both follow the same rules. Pure: time is passed
 * in. */
#include "lease/lease.h"

#include "kv/kv.h"

struct rebuild_ctx {
    struct lease_clock *c;
    uint64_t now;
};

static int start_one(void *ud, const struct kv_lease *l)
{
    struct rebuild_ctx *x = ud;
    return lease_clock_start(x->c, l->id, l->ttl_ms, x->now);
}

int lease_clock_rebuild(struct lease_clock *c, const struct kv *kv,
                        uint64_t now)
{
    lease_clock_clear(c);
    if (kv == NULL)
        return 0;
    struct rebuild_ctx x = {c, now};
    bool more;
    return kv_lease_list(kv, 0, SIZE_MAX, start_one, &x, &more);
}

int lease_clock_on_result(struct lease_clock *c, const struct kv_result *res,
                          uint64_t now)
{
    if (res == NULL || res->lease_op == 0 || res->lease_stale)
        return 0; /* a stale expiry changed nothing: the lease lives on */
    return lease_clock_on_applied(c, res->lease_op, res->lease_id,
                                  res->lease_found, res->lease_ttl_ms, now);
}

size_t lease_expire_cmd(const struct kv *kv, uint64_t id, uint8_t *buf)
{
    /* It names the refresh the clock counted from, the lease's last one
     * applied here: a keepalive that commits before the expiry applies
     * makes it stale (docs/architecture.md, "Leases"). */
    struct kv_lease l;
    if (kv_lease_get(kv, id, &l) != 0)
        return 0; /* gone already: the clock forgets it when that applies */
    return kv_lease_cmd_encode(KV_LEASE_EXPIRE, id, l.refreshed, buf);
}
