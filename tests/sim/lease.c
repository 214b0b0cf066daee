/* The lease workload (docs/simulator.md, "Leases"): on a share of the
 * seeds, every node runs craftd's real lease clock (src/lease) on its own
 * drifting, pausable clock, fed by the lease commands it applies to src/kv's
 * real state machine, rebuilt at restart and after a snapshot install, and
 * its leader proposes KV_LEASE_EXPIRE when the clock says so, as
 * src/node/lease.c does (through the same lease_kv.c calls). Lease clients
 * grant leases, put keys under them, keep some alive with keepalives sent
 * to random nodes (which forward them as craftd does), abandon others and
 * revoke some. Checked here:
 *
 * - lease-early: a lease is never expired (a non-stale EXPIRE applied
 *   anywhere) before TTL / r has passed in global time since its last
 *   refresh (the GRANT or KEEPALIVE the EXPIRE names) was sent, r being the
 *   fastest clock's rate (see too_early).
 * - lease-keys: a lease command moves no key but those of the lease an
 *   EXPIRE or REVOKE deletes, all of them (a stale EXPIRE: none).
 * - lease-agree: every node holds the same lease table (ids, TTLs, refresh
 *   indexes, key counts) and the same l/ keys with their leases at each
 *   index a lease entry applied at, and after a snapshot restore.
 * - lease-clock: each node's lease clock knows exactly the leases of its
 *   map, after every lease command and every rebuild.
 * - lease-expire-once: a leader never proposes an EXPIRE of a lease while
 *   an EXPIRE of it that it proposed in this term is still to apply there
 *   (a leader whose applying lags would otherwise fill its log with
 *   retries faster than it applies them: no convergence, ever).
 * - lease-expiry: once the cluster is healed (final phase), a leader with
 *   nothing left to commit holds no lease longer than TTL / r' + a retry +
 *   4 election timeouts after the later of taking office and its last lease
 *   command applied, r' being the slowest clock's rate (check_expiry_late).
 *
 * Entries: SIM_CMD_LEASE, then the step the client sent it at (u64, 0 for
 * an EXPIRE from a lease clock), then a src/kv command: a lease command
 * (version 3) or a one-put txn naming a lease. The send step is what the
 * checks time a refresh by. Random choices come from the workload's own
 * stream, so the other draws of a seed stay what they are without it. */
#include "sim/sim.h"

#include <inttypes.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "kv/kv.h"
#include "lease/lease.h"

#define TICK_MS 60      /* a nominal tick, in the nodes' milliseconds */
#define LKEYS 4         /* l/k0..l/k3 */
#define LCLIENTS_MAX 3
#define EXPIRE_PER_TICK 128 /* as the daemon */
#define ID_BIT (1ull << 62) /* our proposal ids, apart from the clients' */

enum lop_kind { LOP_GRANT = 1, LOP_KEEPALIVE, LOP_REVOKE, LOP_PUT };
enum lmode { LM_KEEP = 0, LM_ABANDON, LM_REVOKE };

/* A lease client's request in flight: answered when its proposing node
 * applies (index, term), as craftd answers from kv_last_result. */
struct lop {
    uint8_t kind;
    bool appended;
    uint64_t id;   /* proposal id */
    uint64_t node; /* slot */
    unsigned incarnation;
    uint64_t index, term, deadline;
};

struct lclient {
    bool busy;
    struct lop op;
    uint64_t lease, ttl_ms; /* lease 0: none */
    uint8_t mode;
    unsigned keeps;   /* keepalives before it abandons or revokes */
    uint64_t next_at; /* step of its next request */
};

struct lref {
    uint64_t index, sent; /* a refresh entry (GRANT, KEEPALIVE) */
};
struct lfp {
    uint64_t index, fp; /* lease state after a lease entry */
};

struct lpend {
    uint64_t lease, term, index; /* an EXPIRE proposed, at that index */
};

struct lnode {
    struct lease_clock *clock;
    uint64_t us, at;     /* its monotonic clock, in us, as of step at */
    uint64_t lease_term; /* as the daemon's n->lease_term */
    uint64_t ticked;     /* raft_now at its last lease tick */
    uint64_t last_apply; /* step it last applied a lease command */
    struct lpend *pend;  /* EXPIREs it proposed, maybe not yet applied */
    size_t n_pend, cap_pend;
};

struct sim_lease {
    struct sim_rng rng;
    unsigned n_clients;
    uint32_t l_min, l_max; /* shortest and longest tick_len of the run */
    uint64_t retry_ms;
    struct lclient c[LCLIENTS_MAX];
    struct lnode node[SIM_MAX_NODES + 1];
    struct lref *ref;
    size_t n_ref, cap_ref;
    struct lfp *fp;
    size_t n_fp, cap_fp;
    uint64_t upto; /* highest lease entry applied anywhere */
    uint64_t seq;
    uint64_t lead_slot, lead_term, lead_since; /* final phase */
    struct {
        uint64_t grants, keepalives, kept, revokes, puts, expire_props;
        uint64_t expired, stale;
    } st;
};

/* ---- time ---- */

/* Node n's monotonic clock in its milliseconds: TICK_MS per tick of its
 * own, so it runs at its clock's rate (tick_len units per tick, 1000 a
 * step), on whether up, down or paused. Advanced at least once a step (the
 * drift scenario changes tick_len as it goes); the rates seen bound the
 * checks. */
static uint64_t node_ms(struct sim *s, const struct sim_node *n)
{
    struct sim_lease *L = s->lease;
    struct lnode *ln = &L->node[n->id];
    uint32_t len = n->tick_len;
    L->l_min = len < L->l_min ? len : L->l_min;
    L->l_max = len > L->l_max ? len : L->l_max;
    ln->us += (s->now - ln->at) * (1000ull * SIM_CLOCK_STEP * TICK_MS / len);
    ln->at = s->now;
    return ln->us / 1000;
}

static uint64_t e_ms(void)
{
    return (uint64_t)SIM_ELECTION_TICKS * TICK_MS;
}

/* Why TTL / r, from the send of the refresh: the leader that proposes the
 * EXPIRE counted the lease from a moment at or after that send (it applied
 * the refresh, rebuilt its clock or took office later still), and its
 * clock must have gained TTL ms by its decision. A clock with ticks of L
 * units gains at most 60000 * d / L + 1 ms (the +1: whole ms read at both
 * ends) in d steps, so the expiry cannot apply before d with 60000 * d / L
 * + 1 >= TTL, L the shortest tick_len of the run (drift up to 3%, 5% in
 * the drift scenario). That is the bound a client can rely on: "TTL from
 * my last acknowledged keepalive's send, less the clocks' rate error". An
 * acknowledgement comes later than the send, and a keepalive sent but not
 * yet applied when the EXPIRE applies was not acknowledged and may come
 * too late (it finds no lease). */
static bool too_early(const struct sim_lease *L, uint64_t d, uint64_t ttl)
{
    return ttl > 1 && 60000 * d < (ttl - 1) * L->l_min;
}

/* Steps by which the leader's clock has surely gained ms: the slowest
 * clock, rounded up, plus a step. */
static uint64_t steps_for(const struct sim_lease *L, uint64_t ms)
{
    return (ms * L->l_max + 59999) / 60000 + 1;
}

/* ---- setup ---- */

void sim_lease_init(struct sim *s)
{
    struct sim_rng g;
    sim_rng_seed(&g, sim_mix(s->seed, 0x1ea5e));
    if (sim_rng_below(&g, 3) != 0 && !s->o.leases)
        return; /* a third of the seeds */
    struct sim_lease *L = craft_calloc(1, sizeof(*L));
    if (!L) {
        sim_fail(s, "sim", "out of memory");
        return;
    }
    s->lease = L;
    L->rng = g;
    L->n_clients = (unsigned)sim_rng_range(&L->rng, 1, LCLIENTS_MAX);
    L->retry_ms = 2 * e_ms();
    L->l_min = UINT32_MAX;
    for (unsigned id = 1; id <= s->p.n_nodes; id++) {
        (void)node_ms(s, &s->nodes[id]);
        if (lease_clock_new(L->retry_ms, &L->node[id].clock)) {
            sim_fail(s, "sim", "out of memory");
            return;
        }
    }
    for (unsigned i = 0; i < L->n_clients; i++)
        L->c[i].next_at = sim_rng_range(&L->rng, 1, 3 * sim_election_steps(s));
}

void sim_lease_free(struct sim *s)
{
    struct sim_lease *L = s->lease;
    if (!L)
        return;
    for (unsigned id = 0; id <= SIM_MAX_NODES; id++) {
        lease_clock_free(L->node[id].clock);
        craft_free(L->node[id].pend);
    }
    craft_free(L->ref);
    craft_free(L->fp);
    craft_free(L);
    s->lease = NULL;
}

void sim_lease_print(const struct sim *s, FILE *f)
{
    const struct sim_lease *L = s->lease;
    if (!L)
        return;
    fprintf(f, "  leases: %u clients, grants %" PRIu64 ", keepalives %" PRIu64
            " (%" PRIu64 " found), revokes %" PRIu64 ", puts %" PRIu64
            ", expiries proposed %" PRIu64 ", applied %" PRIu64 " (%" PRIu64
            " stale)\n", L->n_clients, L->st.grants, L->st.keepalives,
            L->st.kept, L->st.revokes, L->st.puts, L->st.expire_props,
            L->st.expired, L->st.stale);
}

/* ---- the lease state, fingerprinted ---- */

static const char *lkey(unsigned i)
{
    static const char *const k[LKEYS] = {"l/k0", "l/k1", "l/k2", "l/k3"};
    return k[i];
}

static int fp_lease(void *ud, const struct kv_lease *l)
{
    uint8_t b[32];
    craft_put64(b, l->id);
    craft_put64(b + 8, l->ttl_ms);
    craft_put64(b + 16, l->refreshed);
    craft_put64(b + 24, l->n_keys);
    *(uint64_t *)ud = sim_fnv(*(uint64_t *)ud, b, sizeof(b));
    return 0;
}

/* Each l/ key's lease, or ~0 when absent. */
static void key_leases(const struct kv *map, uint64_t out[LKEYS])
{
    for (unsigned i = 0; i < LKEYS; i++) {
        struct kv_meta m;
        out[i] = map && kv_get_meta(map, lkey(i), 4, &m) == 0 ? m.lease
                                                             : UINT64_MAX;
    }
}

static uint64_t state_fp(const struct kv *map)
{
    uint64_t h = SIM_FNV_INIT;
    if (!map)
        return h;
    bool more;
    kv_lease_list(map, 0, SIZE_MAX, fp_lease, &h, &more);
    for (unsigned i = 0; i < LKEYS; i++) {
        struct kv_meta m;
        uint8_t b[32] = {0};
        if (kv_get_meta(map, lkey(i), 4, &m) == 0) {
            craft_put64(b, m.lease + 1);
            craft_put64(b + 8, m.mod_index);
            craft_put64(b + 16, m.version);
            craft_put64(b + 24, m.vlen);
            h = sim_fnv(h, m.val, m.vlen);
        }
        h = sim_fnv(h, b, sizeof(b));
    }
    return h;
}

static bool grow(struct sim *s, void **p, size_t *cap, size_t n, size_t sz)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 64;
    void *q = craft_realloc(*p, c * sz);
    if (!q) {
        sim_fail(s, "sim", "out of memory");
        return false;
    }
    *p = q;
    *cap = c;
    return true;
}

/* The fingerprint recorded at the last lease entry at or below index. */
static const struct lfp *fp_at(const struct sim_lease *L, uint64_t index)
{
    size_t lo = 0, hi = L->n_fp;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (L->fp[mid].index <= index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? &L->fp[lo - 1] : NULL;
}

static uint64_t sent_of(const struct sim_lease *L, uint64_t index)
{
    size_t lo = 0, hi = L->n_ref;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (L->ref[mid].index < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < L->n_ref && L->ref[lo].index == index ? L->ref[lo].sent
                                                      : UINT64_MAX;
}

/* ---- the node's lease clock, as src/node/lease.c drives it ---- */

struct known_ctx {
    const struct lease_clock *clock;
    uint64_t missing; /* a lease of the map the clock does not know */
};

static int known_one(void *ud, const struct kv_lease *l)
{
    struct known_ctx *k = ud;
    if (lease_clock_remaining(k->clock, l->id, 0) < 0) {
        k->missing = l->id;
        return 1;
    }
    return 0;
}

/* lease-clock: the clock knows exactly the leases of the node's map (the
 * daemon's GET /lease relies on it, and a lease the leader's clock does not
 * know never expires). */
static void check_known(struct sim *s, const struct sim_node *n,
                        const char *when)
{
    const struct lease_clock *c = s->lease->node[n->id].clock;
    size_t in_map = n->kv.map ? kv_lease_count(n->kv.map) : 0;
    struct known_ctx k = {c, 0};
    bool more;
    if (n->kv.map)
        kv_lease_list(n->kv.map, 0, SIZE_MAX, known_one, &k, &more);
    if (k.missing || lease_clock_count(c) != in_map)
        sim_fail(s, "lease-clock", "n%" PRIu64 " %s at %" PRIu64 ": its map"
                 " holds %zu leases, its lease clock knows %zu (first lease"
                 " of the map it does not know: %" PRIu64 ", 0: none)",
                 n->id, when, n->kv.applied, in_map, lease_clock_count(c),
                 k.missing);
}

static void clock_failed(struct sim *s, const struct sim_node *n, int rc)
{
    sim_fail(s, "sim", "n%" PRIu64 " lease clock: %s", n->id,
             craft_errname(rc));
}

void sim_lease_rebuild(struct sim *s, struct sim_node *n)
{
    struct sim_lease *L = s->lease;
    if (!L)
        return;
    struct lnode *ln = &L->node[n->id];
    ln->lease_term = 0; /* a new process, or (install) as good as one */
    ln->ticked = 0;
    int rc = lease_clock_rebuild(ln->clock, n->kv.map, node_ms(s, n));
    if (rc)
        clock_failed(s, n, rc);
    check_known(s, n, "rebuilt its lease clock");
    /* The restored state is the one every node had at its index. */
    const struct lfp *f = fp_at(L, n->kv.applied);
    if (f && n->kv.applied <= L->upto && state_fp(n->kv.map) != f->fp)
        sim_fail(s, "lease-agree", "n%" PRIu64 " restored a lease table or"
                 " l/ keys at index %" PRIu64 " unlike the state applied"
                 " there (as of lease entry %" PRIu64 ")", n->id,
                 n->kv.applied, f->index);
}

/* node__leases_leading: a leader that has just taken office gives every
 * lease its full TTL. */
static bool leading(struct sim *s, struct sim_node *n, struct lnode *ln)
{
    struct raft_soft_state ss = raft_soft(n->r);
    if (ss.role != RAFT_LEADER) {
        ln->lease_term = 0;
        return false;
    }
    if (ln->lease_term != ss.term) {
        lease_clock_became_leader(ln->clock, node_ms(s, n));
        ln->lease_term = ss.term;
    }
    return true;
}

static size_t wrap(uint8_t *buf, uint64_t sent, const uint8_t *cmd,
                   size_t len)
{
    buf[0] = SIM_CMD_LEASE;
    craft_put64(buf + 1, sent);
    memcpy(buf + SIM_LEASE_TAG, cmd, len);
    return SIM_LEASE_TAG + len;
}

/* lease-expire-once: drops what has applied or was proposed in another
 * term, then fails if lease is still among the rest. */
static void check_expire_once(struct sim *s, const struct sim_node *n,
                              struct lnode *ln, uint64_t lease)
{
    uint64_t term = raft_soft(n->r).term, applied = raft_applied_index(n->r);
    size_t kept = 0;
    for (size_t i = 0; i < ln->n_pend; i++) {
        struct lpend p = ln->pend[i];
        if (p.term != term || p.index <= applied)
            continue;
        if (p.lease == lease) {
            sim_fail(s, "lease-expire-once", "leader n%" PRIu64 " (term %"
                     PRIu64 ") proposes the EXPIRE of lease %" PRIu64
                     " again with the one at index %" PRIu64 " still to"
                     " apply (applied %" PRIu64 ")", n->id, term, lease,
                     p.index, applied);
            return;
        }
        ln->pend[kept++] = p;
    }
    ln->n_pend = kept;
}

static void note_expire(struct sim *s, const struct sim_node *n,
                        struct lnode *ln, uint64_t lease, uint64_t index)
{
    if (ln->n_pend == ln->cap_pend) {
        size_t cap = ln->cap_pend ? 2 * ln->cap_pend : 16;
        struct lpend *p = craft_realloc(ln->pend, cap * sizeof *p);
        if (p == NULL) {
            sim_fail(s, "sim", "out of memory");
            return;
        }
        ln->pend = p;
        ln->cap_pend = cap;
    }
    ln->pend[ln->n_pend++] = (struct lpend){lease, raft_soft(n->r).term,
                                            index};
}

/* node__leases_tick: the leader proposes an EXPIRE per due lease. */
static void lease_tick(struct sim *s, struct sim_node *n, struct lnode *ln)
{
    uint64_t ids[EXPIRE_PER_TICK];
    size_t got = lease_clock_due(ln->clock, node_ms(s, n),
                                 raft_applied_index(n->r), ids,
                                 EXPIRE_PER_TICK);
    for (size_t i = 0; i < got && !s->failed; i++) {
        uint8_t cmd[KV_LEASE_CMD_MAX], buf[SIM_LEASE_TAG + KV_LEASE_CMD_MAX];
        size_t len = n->kv.map ? lease_expire_cmd(n->kv.map, ids[i], cmd) : 0;
        if (len == 0)
            continue;
        len = wrap(buf, 0, cmd, len);
        check_expire_once(s, n, ln, ids[i]);
        uint64_t last = raft_last_index(n->r);
        int rc = raft_propose(n->r, 0, buf, len);
        if (raft_last_index(n->r) > last)
            note_expire(s, n, ln, ids[i], raft_last_index(n->r));
        s->lease->st.expire_props++;
        sim_ev(s, EV_NOTE, 0, n->id, 0, ids[i], (uint64_t)(int64_t)rc, 0, 0,
               "expire proposed");
        sim_node_observe(s, n);
    }
    if (got > 0)
        lease_clock_proposed(ln->clock, raft_last_index(n->r));
}

/* ---- applying ---- */

static void check_expiry(struct sim *s, const struct sim_node *n,
                         const struct kv_result *r)
{
    struct sim_lease *L = s->lease;
    uint64_t sent = sent_of(L, r->lease_refreshed);
    if (sent == UINT64_MAX) {
        sim_fail(s, "sim", "lease %" PRIu64 " expired at %" PRIu64 " names"
                 " refresh %" PRIu64 ", which no client sent", r->lease_id,
                 r->index, r->lease_refreshed);
        return;
    }
    if (too_early(L, s->now - sent, r->lease_ttl_ms))
        sim_fail(s, "lease-early", "lease %" PRIu64 " (TTL %" PRIu64 " ms,"
                 " %" PRIu64 " steps at the fastest clock) expired at index %"
                 PRIu64 " (first applied by n%" PRIu64 " at step %" PRIu64
                 ") only %" PRIu64 " steps after its refresh %" PRIu64
                 " was sent", r->lease_id, r->lease_ttl_ms,
                 (r->lease_ttl_ms - 1) * L->l_min / 60000, r->index, n->id,
                 s->now, s->now - sent, r->lease_refreshed);
}

static const char *op_name(uint8_t op)
{
    switch (op) {
    case KV_LEASE_GRANT: return "GRANT";
    case KV_LEASE_REVOKE: return "REVOKE";
    case KV_LEASE_EXPIRE: return "EXPIRE";
    default: return "KEEPALIVE";
    }
}

/* A lease command moves no key but those of the lease an EXPIRE or REVOKE
 * deletes: all of them (a stale EXPIRE: none). So a key attached to a
 * lease still alive is never deleted by an expiry. */
static void check_keys(struct sim *s, const struct sim_node *n,
                       const struct kv_result *r, const uint64_t before[LKEYS])
{
    uint64_t after[LKEYS];
    key_leases(n->kv.map, after);
    bool drops = r->lease_op == KV_LEASE_EXPIRE ||
                 r->lease_op == KV_LEASE_REVOKE;
    bool dropped = drops && r->lease_found && !r->lease_stale;
    uint64_t deleted = 0;
    for (unsigned i = 0; i < LKEYS && !s->failed; i++) {
        bool mine = before[i] == r->lease_id;
        deleted += mine;
        uint64_t want = mine && dropped ? UINT64_MAX : before[i];
        if (after[i] != want)
            sim_fail(s, "lease-keys", "n%" PRIu64 " applied the %s of lease %"
                     PRIu64 " at %" PRIu64 "%s: key %s had lease %" PRId64
                     ", now %" PRId64 " (-1: absent)", n->id,
                     op_name(r->lease_op), r->lease_id, r->index,
                     r->lease_stale ? " (stale)" : "", lkey(i),
                     (int64_t)before[i], (int64_t)after[i]);
    }
    if (dropped && r->lease_deleted != deleted)
        sim_fail(s, "lease-keys", "n%" PRIu64 " says the %s of lease %" PRIu64
                 " at %" PRIu64 " deleted %" PRIu64 " keys; it had %" PRIu64,
                 n->id, op_name(r->lease_op), r->lease_id, r->index,
                 r->lease_deleted, deleted);
}

static void first_apply(struct sim *s, const struct sim_node *n,
                        const struct raft_entry *e, const struct kv_result *r,
                        uint64_t sent)
{
    struct sim_lease *L = s->lease;
    L->upto = e->index;
    bool refresh = r && (r->lease_op == KV_LEASE_GRANT ||
                         (r->lease_op == KV_LEASE_KEEPALIVE && r->lease_found));
    if (r && r->lease_op == KV_LEASE_KEEPALIVE && r->lease_found)
        L->st.kept++;
    if (refresh && grow(s, (void **)&L->ref, &L->cap_ref, L->n_ref,
                        sizeof(*L->ref)))
        L->ref[L->n_ref++] = (struct lref){e->index, sent};
    if (r && r->lease_op == KV_LEASE_EXPIRE && r->lease_found) {
        if (r->lease_stale) {
            L->st.stale++;
        } else {
            L->st.expired++;
            check_expiry(s, n, r);
        }
    }
    if (grow(s, (void **)&L->fp, &L->cap_fp, L->n_fp, sizeof(*L->fp)))
        L->fp[L->n_fp++] = (struct lfp){e->index, state_fp(n->kv.map)};
}

int sim_lease_apply(struct sim *s, struct sim_node *n,
                    const struct raft_entry *e)
{
    struct sim_lease *L = s->lease;
    uint64_t before[LKEYS];
    key_leases(n->kv.map, before);
    int err = sim_kv_apply(&n->kv, s->p.n_keys, e->index, e->data, e->len);
    if (err || !L)
        return err;
    const uint8_t *p = e->data;
    uint64_t sent = craft_get64(p + 1);
    const struct kv_result *r = kv_last_result(n->kv.map);
    if (r && r->index != e->index)
        r = NULL;
    if (r && r->lease_op) {
        struct lnode *ln = &L->node[n->id];
        ln->last_apply = s->now;
        err = lease_clock_on_result(ln->clock, r, node_ms(s, n));
        if (err) {
            clock_failed(s, n, err);
            return 0;
        }
        check_keys(s, n, r, before);
        check_known(s, n, "applied a lease command");
    }
    if (e->index > L->upto) {
        first_apply(s, n, e, r, sent);
    } else {
        const struct lfp *f = fp_at(L, e->index);
        if (f && f->index == e->index && state_fp(n->kv.map) != f->fp)
            sim_fail(s, "lease-agree", "n%" PRIu64 " holds another lease"
                     " table or other l/ keys than the first node to apply"
                     " index %" PRIu64 " did", n->id, e->index);
    }
    return 0;
}

/* ---- clients ---- */

static struct sim_node *random_live(struct sim *s)
{
    struct sim_node *up[SIM_MAX_NODES];
    unsigned k = 0;
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        if (sim_node_live(&s->nodes[id]))
            up[k++] = &s->nodes[id];
    return k ? up[sim_rng_below(&s->lease->rng, k)] : NULL;
}

static uint64_t ttl_steps(const struct sim *s, uint64_t ttl_ms)
{
    return ttl_ms * s->p.spt / TICK_MS; /* nominal */
}

static void send(struct sim *s, struct lclient *c, int kind)
{
    struct sim_lease *L = s->lease;
    struct sim_node *n = random_live(s);
    if (!n)
        return;
    uint8_t cmd[96], buf[SIM_LEASE_TAG + 96];
    size_t len = 0;
    if (kind == LOP_GRANT) {
        /* 1.5 to 4 election timeouts: the daemon's least TTL is 1.5 */
        c->ttl_ms = e_ms() * sim_rng_range(&L->rng, 15, 40) / 10;
        len = kv_lease_cmd_encode(KV_LEASE_GRANT, 0, c->ttl_ms, cmd);
        L->st.grants++;
    } else if (kind == LOP_KEEPALIVE) {
        len = kv_lease_cmd_encode(KV_LEASE_KEEPALIVE, c->lease, 0, cmd);
        L->st.keepalives++;
    } else if (kind == LOP_REVOKE) {
        len = kv_lease_cmd_encode(KV_LEASE_REVOKE, c->lease, 0, cmd);
        L->st.revokes++;
    } else {
        /* mostly under the lease; now and then without one, or a delete */
        unsigned r = (unsigned)sim_rng_below(&L->rng, 10);
        char val[16];
        snprintf(val, sizeof(val), "v%" PRIu64, L->seq + 1);
        struct kv_txn_op op = {.type = r ? KV_TOP_PUT : KV_TOP_DEL,
                               .key = (const uint8_t *)lkey(
                                   (unsigned)sim_rng_below(&L->rng, LKEYS)),
                               .klen = 4,
                               .val = (const uint8_t *)val,
                               .vlen = r ? strlen(val) : 0,
                               .lease = r > 1 ? c->lease : 0};
        struct kv_txn t = {NULL, 0, &op, 1, NULL, 0};
        len = kv_txn_size(&t);
        if (len == 0 || len > sizeof(cmd)) {
            sim_fail(s, "sim", "a lease put does not fit its buffer");
            return;
        }
        len = kv_txn_encode(&t, cmd);
        L->st.puts++;
    }
    if (len == 0) {
        sim_fail(s, "sim", "a lease command does not encode");
        return;
    }
    len = wrap(buf, s->now, cmd, len);
    c->op = (struct lop){.kind = (uint8_t)kind, .id = ID_BIT | ++L->seq,
                         .node = n->id, .incarnation = n->incarnation,
                         .deadline = s->now + 3 * sim_election_steps(s)};
    c->busy = true;
    sim_ev(s, EV_NOTE, (unsigned)kind, n->id, 0, c->lease, c->op.id & 0xffff,
           0, 0, kind == LOP_GRANT       ? "lease grant"
                 : kind == LOP_KEEPALIVE ? "lease keepalive"
                 : kind == LOP_REVOKE    ? "lease revoke"
                                         : "lease put");
    int rc = raft_propose(n->r, c->op.id, buf, len);
    sim_node_observe(s, n);
    if (rc)
        c->busy = false; /* refused at once: tried again later */
}

/* The answer, or none: the lease client decides what it knows. */
static void done(struct sim *s, struct lclient *c, const struct kv_result *r)
{
    struct sim_lease *L = s->lease;
    c->busy = false;
    uint64_t ttl = ttl_steps(s, c->ttl_ms);
    if (c->op.kind == LOP_GRANT && r) {
        c->lease = r->lease_id;
        c->mode = (uint8_t)sim_rng_below(&L->rng, 3);
        c->keeps = (unsigned)sim_rng_below(&L->rng, 6);
    } else if (c->op.kind == LOP_KEEPALIVE && r && !r->lease_found) {
        c->lease = 0; /* it ran out */
    } else if (c->op.kind == LOP_REVOKE && r) {
        c->lease = 0;
    }
    /* The next request: with no lease, a grant within a TTL; after a grant
     * or a keepalive, the next 0.4-1.05 TTL later (the late ones race the
     * leader's EXPIRE); after a put or a revoke, soon. */
    uint64_t next;
    if (!c->lease)
        next = sim_rng_range(&L->rng, 1, ttl + 1);
    else if (c->op.kind == LOP_KEEPALIVE || c->op.kind == LOP_GRANT)
        next = ttl * sim_rng_range(&L->rng, 40, 105) / 100;
    else
        next = sim_rng_range(&L->rng, 1, ttl / 4 + 1);
    c->next_at = s->now + next;
}

static void client_step(struct sim *s, struct lclient *c)
{
    struct sim_lease *L = s->lease;
    if (c->busy) {
        if (s->now >= c->op.deadline)
            done(s, c, NULL); /* outcome unknown */
        return;
    }
    if (s->final_phase || s->now < c->next_at)
        return;
    if (!c->lease) {
        send(s, c, LOP_GRANT);
    } else if (sim_rng_below(&L->rng, 3) == 0) {
        send(s, c, LOP_PUT);
    } else if (c->keeps > 0 || c->mode == LM_KEEP) {
        if (c->keeps > 0)
            c->keeps--;
        send(s, c, LOP_KEEPALIVE);
    } else if (c->mode == LM_REVOKE) {
        send(s, c, LOP_REVOKE);
    } else {
        c->lease = 0; /* abandoned: the cluster must expire it */
        c->next_at = s->now + sim_rng_range(&L->rng, 1, 40);
    }
    if (!c->busy && c->next_at <= s->now)
        c->next_at = s->now + 1 + sim_rng_below(&L->rng, 4);
}

void sim_lease_on_prop(struct sim *s, struct sim_node *n,
                       const struct raft_prop_result *pr)
{
    struct sim_lease *L = s->lease;
    if (!L || !(pr->id & ID_BIT))
        return;
    for (unsigned i = 0; i < L->n_clients; i++) {
        struct lclient *c = &L->c[i];
        if (!c->busy || c->op.id != pr->id || c->op.node != n->id ||
            c->op.incarnation != n->incarnation)
            continue;
        if (pr->err) {
            c->busy = false;
            c->next_at = s->now + 1;
        } else {
            c->op.appended = true;
            c->op.index = pr->index;
            c->op.term = pr->term;
        }
    }
}

/* The proposing node reached the op's index: applied there (the answer),
 * or skipped by a snapshot (no answer). */
static void answer(struct sim *s, struct sim_node *n, uint64_t index,
                   uint64_t term, bool applied)
{
    struct sim_lease *L = s->lease;
    for (unsigned i = 0; i < L->n_clients; i++) {
        struct lclient *c = &L->c[i];
        if (!c->busy || !c->op.appended || c->op.node != n->id ||
            c->op.incarnation != n->incarnation || c->op.index > index ||
            (applied && c->op.index != index))
            continue;
        const struct kv_result *r = applied && term == c->op.term && n->kv.map
                                        ? kv_last_result(n->kv.map)
                                        : NULL;
        if (r && r->index != index)
            r = NULL;
        if (applied && term != c->op.term) {
            c->busy = false; /* lost: another entry took the index */
            c->next_at = s->now + 1;
        } else {
            done(s, c, r);
        }
    }
}

void sim_lease_applied(struct sim *s, struct sim_node *n, uint64_t index,
                       uint64_t term)
{
    if (s->lease)
        answer(s, n, index, term, true);
}

void sim_lease_restored(struct sim *s, struct sim_node *n)
{
    if (!s->lease)
        return;
    answer(s, n, n->kv.applied, 0, false);
    sim_lease_rebuild(s, n);
}

/* ---- the final phase: abandoned leases must expire ---- */

static void check_expiry_late(struct sim *s)
{
    struct sim_lease *L = s->lease;
    struct sim_node *l = sim_leader(s);
    if (!l) {
        L->lead_slot = 0;
        return;
    }
    if (l->id != L->lead_slot || l->term != L->lead_term) {
        L->lead_slot = l->id;
        L->lead_term = l->term;
        L->lead_since = s->now;
    }
    if (!l->kv.map || kv_lease_count(l->kv.map) == 0)
        return;
    /* An EXPIRE in its log is Raft's to commit (a slow snapshot to the
     * follower it needs may hold it up): judged only with nothing pending. */
    uint64_t commit = raft_commit_index(l->r);
    if (commit != raft_last_index(l->r) || l->kv.applied != commit)
        return;
    uint64_t base = L->lead_since;
    if (L->node[l->id].last_apply > base)
        base = L->node[l->id].last_apply;
    /* the longest TTL it may hold */
    uint64_t ttl = 4 * e_ms();
    uint64_t bound = steps_for(L, ttl) + steps_for(L, L->retry_ms) +
                     4 * sim_election_steps(s);
    if (s->now - base > bound)
        sim_fail(s, "lease-expiry", "leader n%" PRIu64 " (term %" PRIu64
                 ", since step %" PRIu64 ") still holds %zu leases %" PRIu64
                 " steps after the later of taking office and its last lease"
                 " command (bound %" PRIu64 ")", l->id, l->term,
                 L->lead_since, kv_lease_count(l->kv.map), s->now - base,
                 bound);
}

bool sim_lease_settled(struct sim *s)
{
    const struct sim_lease *L = s->lease;
    if (!L)
        return true;
    for (unsigned i = 0; i < L->n_clients; i++)
        if (L->c[i].busy)
            return false;
    struct sim_node *l = sim_leader(s);
    return l && (!l->kv.map || kv_lease_count(l->kv.map) == 0);
}

void sim_lease_step(struct sim *s)
{
    struct sim_lease *L = s->lease;
    if (!L)
        return;
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        (void)node_ms(s, &s->nodes[id]); /* every clock, every step */
    for (unsigned id = 1; id <= s->p.n_nodes && !s->failed; id++) {
        struct sim_node *n = &s->nodes[id];
        struct lnode *ln = &L->node[id];
        if (!sim_node_live(n) || !leading(s, n, ln))
            continue;
        if (raft_now(n->r) != ln->ticked) { /* once a tick, as on_tick */
            ln->ticked = raft_now(n->r);
            lease_tick(s, n, ln);
        }
    }
    for (unsigned i = 0; i < L->n_clients && !s->failed; i++)
        client_step(s, &L->c[i]);
    if (s->final_phase && !s->failed)
        check_expiry_late(s);
}
