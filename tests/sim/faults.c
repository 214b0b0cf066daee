/* Fault injection and cluster operations for one run: crashes and restarts,
 * pauses (a frozen process), partitions and heals, membership changes
 * (removed nodes are stopped for good once their removal commits; some
 * right after an election) and leadership transfers. Nodes are slots;
 * configurations hold Raft ids. */
#include "sim/sim.h"

#include <inttypes.h>
#include <string.h>

#define CONF_ID_BIT (1ull << 63)

/* The running leader of the highest term (a paused one is not asked). */
struct sim_node *sim_leader(struct sim *s)
{
    struct sim_node *best = NULL;
    for (unsigned id = 1; id <= s->p.n_nodes; id++) {
        struct sim_node *n = &s->nodes[id];
        if (sim_node_live(n) && n->role == RAFT_LEADER &&
            (!best || n->term > best->term))
            best = n;
    }
    return best;
}

static struct sim_node *pick_up(struct sim *s, bool prefer_leader)
{
    struct sim_node *l = sim_leader(s);
    if (prefer_leader && l && sim_rng_below(&s->rng, 2))
        return l;
    struct sim_node *up[SIM_MAX_NODES];
    unsigned n = 0;
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        if (sim_node_live(&s->nodes[id]))
            up[n++] = &s->nodes[id];
    return n ? up[sim_rng_below(&s->rng, n)] : NULL;
}

unsigned sim_n_down(const struct sim *s)
{
    unsigned d = 0;
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        d += s->nodes[id].state == SIM_DOWN ||
             (s->nodes[id].state == SIM_UP && s->nodes[id].paused_until);
    return d;
}

/* Freeze a node (often the leader) for a few steps or for many election
 * timeouts: SIGSTOP, a long GC or a VM migration. */
static void pause_one(struct sim *s)
{
    if (sim_n_down(s) >= s->p.max_down)
        return;
    struct sim_node *n = pick_up(s, true);
    if (!n)
        return;
    uint64_t e = sim_election_steps(s);
    uint64_t len = sim_rng_below(&s->rng, 2)
                       ? sim_rng_range(&s->rng, 1, e)
                       : sim_rng_range(&s->rng, e, s->p.pause_max_steps);
    sim_node_pause(s, n, len);
}

void sim_crash_for(struct sim *s, struct sim_node *n, uint64_t restart_after)
{
    sim_node_crash(s, n, false);
    n->restart_at = s->now + restart_after;
}

static void crash_one(struct sim *s)
{
    if (sim_n_down(s) >= s->p.max_down)
        return;
    struct sim_node *n = pick_up(s, true);
    if (!n)
        return;
    sim_crash_for(s, n, sim_rng_range(&s->rng, 1, 4 * sim_election_steps(s)));
}

static void cut(struct sim *s, uint64_t side_a, uint64_t heal_at,
                const char *kind, bool add)
{
    struct sim_net *net = &s->net;
    unsigned nn = s->p.n_nodes;
    for (unsigned i = 1; i <= nn; i++)
        for (unsigned j = 1; j <= nn; j++)
            net->blocked[i][j] =
                (add && net->blocked[i][j]) ||
                ((side_a >> i) & 1) != ((side_a >> j) & 1);
    net->heal_at = add && net->partitioned && net->heal_at > heal_at
                       ? net->heal_at
                       : heal_at;
    net->partitioned = true;
    uint64_t all = ((1ull << nn) - 1) << 1;
    sim_ev(s, EV_PART, 0, 0, 0, side_a, all & ~side_a, net->heal_at, 0, kind);
}

void sim_partition_set(struct sim *s, uint64_t side_a, uint64_t heal_at,
                       const char *kind)
{
    cut(s, side_a, heal_at, kind, false);
}

void sim_partition_add(struct sim *s, uint64_t side_a, uint64_t heal_at,
                       const char *kind)
{
    cut(s, side_a, heal_at, kind, true);
}

static void heal_partition(struct sim *s, const char *why)
{
    memset(s->net.blocked, 0, sizeof(s->net.blocked));
    s->net.partitioned = false;
    sim_ev(s, EV_HEAL, 0, 0, 0, 0, 0, 0, 0, why);
}

static void partition(struct sim *s)
{
    struct sim_net *net = &s->net;
    unsigned nn = s->p.n_nodes;
    uint64_t a = 0; /* bitmask of side A */
    const char *kind;
    bool out = false;
    unsigned k = (unsigned)sim_rng_below(&s->rng, 4);
    struct sim_node *victim = pick_up(s, true);
    uint64_t v = victim ? victim->id : sim_rng_range(&s->rng, 1, nn);
    if (k == 0) {
        kind = "isolate";
        a = 1ull << v;
    } else if (k == 1) {
        kind = "split";
        while (a == 0 || a == (((1ull << nn) - 1) << 1))
            a = (sim_rng_next(&s->rng) & ((1ull << nn) - 1)) << 1;
    } else if (k == 2) {
        out = sim_rng_below(&s->rng, 2);
        kind = out ? "one-way out" : "one-way in";
        a = 1ull << v;
    } else {
        kind = "random links";
    }
    uint64_t all = ((1ull << nn) - 1) << 1;
    for (unsigned i = 1; i <= nn; i++) {
        for (unsigned j = 1; j <= nn; j++) {
            bool ia = (a >> i) & 1, ja = (a >> j) & 1;
            bool b = false;
            if (i == j)
                b = false;
            else if (k <= 1)
                b = ia != ja;
            else if (k == 2)
                b = out ? ia && !ja : ja && !ia;
            else
                b = sim_rng_below(&s->rng, 10) < 3;
            net->blocked[i][j] = b;
        }
    }
    net->partitioned = true;
    net->heal_at = s->now + sim_rng_range(&s->rng, 2 * s->p.spt,
                                          s->p.part_max_steps);
    sim_ev(s, EV_PART, 0, 0, 0, a, all & ~a, net->heal_at, 0, kind);
}

static bool in_list(const uint64_t *l, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (l[i] == id)
            return true;
    return false;
}

bool sim_conf_has(const struct raft_conf *c, uint64_t id)
{
    return in_list(c->voters, c->n_voters, id) ||
           in_list(c->learners, c->n_learners, id);
}

static void conf_change(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    struct sim_node *at = l && sim_rng_below(&s->rng, 10) < 7 ? l
                                                              : pick_up(s, false);
    if (!at)
        return;
    (void)sim_conf_change(s, at, false);
    /* Sometimes a second one at once: the core must refuse it (EBUSY)
     * while the first is uncommitted. */
    if (!s->failed && at->state == SIM_UP && sim_rng_below(&s->rng, 4) == 0)
        (void)sim_conf_change(s, at, false);
}

int sim_conf_change(struct sim *s, struct sim_node *at, bool voters_only)
{
    struct sim_node *l = sim_leader(s);
    const struct raft_conf *conf = raft_conf(l ? l->r : at->r);
    uint64_t cand[SIM_MAX_NODES];
    unsigned nc = 0;
    int op;
    unsigned what = (unsigned)sim_rng_below(&s->rng, 100);
    if (voters_only && what < 30)
        what += 30; /* no new learners */
    /* Never a dead id (an old incarnation, a lost disk) as a voter, and
     * no voter removed while an identity fault is under way: the wipes'
     * fault budget counts on the voters that are there. */
    bool busy = sim_ident_busy(s);
    if (what < 45) {
        op = what < 30 ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_VOTER;
        for (unsigned id = 1; id <= s->p.n_nodes; id++) {
            const struct sim_node *n = &s->nodes[id];
            if (!s->retiring[id] && n->state != SIM_STOPPED &&
                n->disk_fault == SIM_DISK_OK && !sim_conf_has(conf, n->rid))
                cand[nc++] = n->rid;
        }
    } else if (what < 70) {
        op = RAFT_CONF_PROMOTE;
        for (uint32_t i = 0; i < conf->n_learners; i++)
            if (!s->retiring[sim_slot_of(s, conf->learners[i])] &&
                !sim_rid_dead(s, conf->learners[i]))
                cand[nc++] = conf->learners[i];
    } else {
        /* Ids are never reused, so removals are rationed: at least
         * min(3, n_nodes - 1) nodes are never retired. */
        unsigned retired = 0, keep = s->p.n_nodes > 3 ? 3 : s->p.n_nodes - 1;
        for (unsigned id = 1; id <= s->p.n_nodes; id++)
            retired += s->retiring[id];
        if (s->p.n_nodes - retired <= keep)
            return 1;
        op = RAFT_CONF_REMOVE;
        for (uint32_t i = 0; i < conf->n_learners && !voters_only; i++)
            cand[nc++] = conf->learners[i];
        if (conf->n_voters > 1)
            for (uint32_t i = 0; i < conf->n_voters; i++)
                if (!busy || sim_rid_dead(s, conf->voters[i]))
                    cand[nc++] = conf->voters[i];
    }
    if (nc == 0)
        return 1;
    uint64_t target = cand[sim_rng_below(&s->rng, nc)];
    if (sim_slot_of(s, target) == 0) {
        sim_fail(s, "conf", "configuration holds unknown Raft id %#" PRIx64,
                 target);
        return 1;
    }
    return sim_conf_propose(s, at, op, target);
}

int sim_conf_propose(struct sim *s, struct sim_node *at, int op,
                     uint64_t target)
{
    char ctx[24];
    unsigned slot = sim_slot_of(s, target);
    snprintf(ctx, sizeof(ctx), "n%u", slot);
    struct raft_conf_change cc = {
        .op = (uint8_t)op,
        .node = target,
        .ctx_len = (uint32_t)strlen(ctx),
        .ctx = (const uint8_t *)ctx,
    };
    uint64_t id = CONF_ID_BIT | ++s->conf_seq;
    bool forwarded = at->role != RAFT_LEADER;
    int rc = raft_propose_conf(at->r, id, &cc);
    if (rc == 0 && op == RAFT_CONF_REMOVE && slot &&
        s->nodes[slot].rid == target)
        s->retiring[slot] = true;
    if (rc == 0 && forwarded)
        s->conf_fwd_step = at->conf_fwd_step = s->now;
    sim_ev(s, EV_CONF, (unsigned)op, at->id, 0, sim_tag(s, target),
           (uint64_t)(int64_t)rc, id, 0, NULL);
    sim_node_observe(s, at);
    return rc;
}

void sim_conf_applied(struct sim *s, const struct raft_conf_change *cc,
                      uint64_t index)
{
    if (index <= s->conf_applied_max)
        return; /* already seen when another node applied it */
    s->conf_applied_max = index;
    s->st.confs_applied++;
    sim_ev(s, EV_CONF_APPLIED, cc->op, 0, 0, sim_tag(s, cc->node), index, 0, 0,
           NULL);
    /* Only the current incarnation of a node is stopped once removed: an
     * old id's removal is the join of the new one. */
    struct sim_node *n = sim_node_by_rid(s, cc->node);
    if (!n)
        return;
    if (cc->op != RAFT_CONF_REMOVE) {
        /* Re-added (a forwarded proposal that was in flight): keep it. */
        s->removed[n->id] = false;
        return;
    }
    s->retiring[n->id] = true;
    s->removed[n->id] = true;
    if (n->state != SIM_STOPPED && !n->stop_at)
        n->stop_at = s->now + sim_rng_range(&s->rng, 1,
                                            3 * sim_election_steps(s));
}

static void transfer(struct sim *s)
{
    struct sim_node *at = pick_up(s, true);
    if (!at)
        return;
    const struct raft_conf *conf = raft_conf(at->r);
    uint64_t target;
    if (conf->n_voters && sim_rng_below(&s->rng, 10))
        target = conf->voters[sim_rng_below(&s->rng, conf->n_voters)];
    else
        target = s->nodes[sim_rng_range(&s->rng, 1, s->p.n_nodes)].rid;
    if (at->role == RAFT_LEADER) /* its check-quorum timer may restart */
        sim_check_quorum_reset(s, (unsigned)at->id, raft_now(at->r));
    int rc = raft_transfer_leader(at->r, target);
    s->st.transfers++;
    sim_ev(s, EV_TRANSFER, 0, at->id, sim_slot_of(s, target),
           (uint64_t)(int64_t)rc, 0, 0, 0, NULL);
    sim_node_observe(s, at);
}

void sim_heal(struct sim *s)
{
    heal_partition(s, "everything for the final phase");
    s->net.drop_ppm = 0;
    s->net.dup_ppm = 0;
    s->net.hold_timeout_now = false;
    for (unsigned id = 1; id <= s->p.n_nodes && !s->failed; id++)
        if (s->nodes[id].state == SIM_UP && s->nodes[id].paused_until)
            sim_node_wake(s, &s->nodes[id]);
    if (s->net.lat_max > 3)
        s->net.lat_max = 3;
    if (s->net.lat_min > s->net.lat_max)
        s->net.lat_min = s->net.lat_max;
    for (unsigned id = 1; id <= s->p.n_nodes && !s->failed; id++)
        if (s->nodes[id].state == SIM_DOWN)
            sim_node_restart(s, &s->nodes[id]);
}

/* Does any live node's configuration (in force: appended) hold the node
 * in slot id (its current incarnation)? */
static bool in_any_conf(struct sim *s, unsigned id)
{
    for (unsigned i = 1; i <= s->p.n_nodes; i++) {
        const struct sim_node *n = &s->nodes[i];
        if (i == id || n->state != SIM_UP)
            continue;
        if (sim_conf_has(raft_conf(n->r), s->nodes[id].rid))
            return true;
    }
    return false;
}

/* A membership change at a new leader, within a tick of its election (so
 * within a tick of its no-op): the core must refuse it (CRAFT_EBUSY) until
 * the no-op commits, as an earlier leader's change may still be pending. */
static void post_election_change(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    if (!l || l->term <= s->post_elect_term || s->ticks > l->lead_tick + 1)
        return;
    s->post_elect_term = l->term;
    if (sim_rng_below(&s->rng, 100) >= s->p.post_elect_pct)
        return;
    (void)sim_conf_change(s, l, false);
    if (!s->failed && l->state == SIM_UP && sim_rng_below(&s->rng, 4) == 0)
        (void)sim_conf_change(s, l, false);
}

void sim_faults_step(struct sim *s)
{
    for (unsigned id = 1; id <= s->p.n_nodes && !s->failed; id++) {
        struct sim_node *n = &s->nodes[id];
        if (n->stop_at && !s->removed[id])
            n->stop_at = 0;
        if (n->stop_at && s->now >= n->stop_at && in_any_conf(s, id))
            n->stop_at = s->now + sim_election_steps(s); /* re-added since */
        if (n->stop_at && s->now >= n->stop_at && n->state != SIM_STOPPED) {
            if (n->state == SIM_UP)
                sim_node_crash(s, n, true);
            n->state = SIM_STOPPED;
            sim_ev(s, EV_STOP, 0, id, 0, 0, 0, 0, 0, NULL);
        } else if (n->state == SIM_DOWN && s->now >= n->restart_at) {
            sim_node_restart(s, n);
        }
    }
    if (!s->failed)
        sim_ident_step(s); /* joins run in the final phase too */
    if (s->final_phase || s->failed)
        return;
    if (s->net.partitioned && s->now >= s->net.heal_at)
        heal_partition(s, "");
    if (sim_rng_ppm(&s->rng, s->p.crash_ppm))
        crash_one(s);
    if (sim_rng_ppm(&s->rng, s->p.pause_ppm))
        pause_one(s);
    if (!s->net.partitioned && sim_rng_ppm(&s->rng, s->p.part_ppm))
        partition(s);
    if (sim_rng_ppm(&s->rng, s->p.conf_ppm))
        conf_change(s);
    if (s->p.conf_ppm && !s->failed)
        post_election_change(s);
    if (sim_rng_ppm(&s->rng, s->p.transfer_ppm))
        transfer(s);
    if (s->p.scenario && !s->failed)
        sim_scenario_step(s);
}
