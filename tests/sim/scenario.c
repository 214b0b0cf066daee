/* Scenario-shaped seeds: parameters and fault patterns aimed at the bugs a
 * uniform random schedule almost never reaches (an old-term entry committed
 * by counting replicas, a lease outliving its leader, two membership
 * changes in flight). Each scenario only adds faults a correct core must
 * survive; the invariants are the same as for every other seed. The wipe
 * scenario lives with the rest of the identity faults, in identity.c. */
#include "sim/sim.h"

/* Parameters of the scenarios, overriding what draw_params() drew. */
static void figure8_params(struct sim *s)
{
    struct sim_params *p = &s->p;
    struct sim_rng *g = &s->rng;
    p->profile = "figure8";
    p->n_founders = p->n_nodes = 5;
    p->spt = 1;
    p->steps = (unsigned)sim_rng_range(g, 800, 1600);
    /* One command per append, one append in flight: a new leader sends
     * the old term's entries ahead of its own no-op, one by one. */
    p->max_msg_bytes = 15;
    p->max_inflight = (unsigned)sim_rng_range(g, 1, 2);
    p->max_uncommitted = 1 << 20;
    p->n_clients = (unsigned)sim_rng_range(g, 3, SIM_MAX_CLIENTS - 1);
    p->client_ppm = (uint32_t)sim_rng_range(g, 300000, 700000);
    p->drop_ppm = (uint32_t)sim_rng_range(g, 0, 10000);
    p->dup_ppm = 0;
    p->lat_min = 1;
    p->lat_max = (unsigned)sim_rng_range(g, 1, 3);
    p->crash_ppm = 0;
    p->part_ppm = 0;
    p->conf_ppm = 0;
    p->transfer_ppm = 0;
    p->max_down = 2;
    p->op_timeout = 1; /* clients keep writing to a cut-off leader */
    p->churn_ppm = (uint32_t)sim_rng_range(g, 100000, 400000);
}

static void lease_params(struct sim *s)
{
    struct sim_params *p = &s->p;
    struct sim_rng *g = &s->rng;
    p->profile = "lease";
    p->n_founders = p->n_nodes = sim_rng_below(g, 3) ? 5u : 3u;
    p->steps = (unsigned)sim_rng_range(g, 600, 1500);
    p->spt = 3; /* a round trip is shorter than a tick */
    p->persist_delay_max = 0;
    p->lease_pct = 60;
    p->n_keys = (unsigned)sim_rng_range(g, 1, 2);
    p->n_clients = (unsigned)sim_rng_range(g, 3, SIM_MAX_CLIENTS - 1);
    p->client_ppm = (uint32_t)sim_rng_range(g, 300000, 700000);
    p->drop_ppm = 0;
    p->dup_ppm = (uint32_t)sim_rng_range(g, 0, 10000);
    p->lat_min = 1;
    p->lat_max = p->spt;
    p->crash_ppm = 0;
    p->part_ppm = 0;
    p->conf_ppm = 0;
    p->transfer_ppm = 0; /* a transfer restarts the quorum check */
    p->lease_reads = !s->o.no_lease;
    p->churn_ppm = 500000;
    p->stale_ppm = 600000;
}

static void membership_params(struct sim *s, unsigned e)
{
    struct sim_params *p = &s->p;
    struct sim_rng *g = &s->rng;
    p->profile = "membership";
    p->n_founders = (sim_rng_below(g, 2) ? 3u : 5u);
    p->n_nodes = p->n_founders + (unsigned)sim_rng_range(g, 1, 2);
    p->steps = (unsigned)sim_rng_range(g, 800, 1600);
    p->drop_ppm = (uint32_t)sim_rng_range(g, 0, 10000);
    p->dup_ppm = (uint32_t)sim_rng_range(g, 0, 10000);
    p->lat_min = 1;
    p->lat_max = (unsigned)sim_rng_range(g, 1, 2 * p->spt);
    p->crash_ppm = 1000;
    p->part_ppm = 1000;
    p->max_down = 1;
    p->conf_ppm = (uint32_t)sim_rng_range(g, 2000, 6000);
    p->burst_ppm = (uint32_t)(1000000 / (e * sim_rng_range(g, 2, 5)));
}

void sim_scenario_params(struct sim *s)
{
    if (s->o.nodes || s->o.steps)
        return; /* the command line asked for a shape */
    unsigned e = SIM_ELECTION_TICKS * s->p.spt;
    unsigned r = (unsigned)sim_rng_below(&s->rng, 100);
    if (s->o.scenario)
        r = s->o.scenario == SIM_SC_FIGURE8 + 1      ? 0
            : s->o.scenario == SIM_SC_LEASE + 1      ? 6
            : s->o.scenario == SIM_SC_MEMBERSHIP + 1 ? 12
            : s->o.scenario == SIM_SC_WIPE + 1       ? 18
                                                     : 99;
    if (r < 6) {
        s->p.scenario = SIM_SC_FIGURE8;
        figure8_params(s);
    } else if (r < 12) {
        s->p.scenario = SIM_SC_LEASE;
        lease_params(s);
    } else if (r < 18) {
        s->p.scenario = SIM_SC_MEMBERSHIP;
        membership_params(s, e);
    } else if (r < 24) {
        s->p.scenario = SIM_SC_WIPE; /* identity.c */
        sim_wipe_params(s);
    }
}

/* ---- figure 8 ---- */

static unsigned random_other(struct sim *s, unsigned not)
{
    unsigned id;
    do
        id = (unsigned)sim_rng_range(&s->rng, 1, s->p.n_nodes);
    while (id == not && s->p.n_nodes > 1);
    return id;
}

/* The paper's Figure 8, with random participants and timing, repeated:
 * 1. cut the leader A off with one follower (clients keep writing to A:
 *    its entries reach that follower only);
 * 2. once the others elect X, cut X off alone instead (X's no-op and
 *    writes stay in X's log, in a newer term than A's entries);
 * 3. once a newer leader L exists (often A or its follower, the only ones
 *    the rest may vote for), it sends A's entries one per append, ahead of
 *    its own no-op; at a random moment of that, crash or cut off L and
 *    reconnect X, whose newer last term may win it the next election;
 * 4. heal. A core that commits A's entries by counting replicas (without
 *    an entry of L's term) has them overwritten by X. */
static void figure8_heal(struct sim *s)
{
    sim_partition_set(s, 0, s->now, "f8: heal");
    s->sc.phase = 0;
    s->sc.at = s->now + sim_rng_range(&s->rng, 1, 2 * sim_election_steps(s));
}

static void figure8_step(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    uint64_t e = sim_election_steps(s);
    uint64_t hold = s->now + 20 * e; /* healed by the scenario */
    bool newer = l && l->term > s->sc.term;
    if (s->sc.phase && s->now >= s->sc.deadline) {
        figure8_heal(s);
        return;
    }
    switch (s->sc.phase) {
    case 0:
        if (!l || s->now < s->sc.at || !raft_lease_valid(l->r, raft_now(l->r)) ||
            !sim_rng_ppm(&s->rng, s->p.churn_ppm))
            return;
        sim_partition_set(s, 1ull << l->id |
                                 1ull << random_other(s, (unsigned)l->id),
                          hold, "f8: cut leader+1");
        s->sc.deadline = s->now + 6 * e;
        break;
    case 1:
    case 2:
        if (!newer)
            return;
        if (s->sc.phase == 1) {
            sim_partition_set(s, 1ull << l->id, hold,
                              "f8: cut new leader");
            s->sc.deadline = s->now + 6 * e;
        } else {
            s->sc.at = s->now + sim_rng_range(&s->rng, 0, e);
            s->sc.deadline = s->now + 8 * e;
        }
        break;
    case 3:
        if (!l || s->now < s->sc.at)
            return;
        if (l->term == s->sc.term && sim_rng_below(&s->rng, 3) == 0 &&
            sim_n_down(s) < s->p.max_down) {
            sim_partition_set(s, 0, hold, "f8: crash leader");
            sim_crash_for(s, l, sim_rng_range(&s->rng, 1, 2 * e));
        } else {
            sim_partition_set(s, 1ull << l->id, hold,
                              "f8: cut leader");
        }
        s->sc.deadline = s->now + 4 * e;
        break;
    default:
        if (newer)
            figure8_heal(s);
        return;
    }
    if (l) {
        s->sc.leader = l->id;
        s->sc.term = l->term;
    }
    s->sc.phase++;
}

/* ---- lease: isolate a leader while it holds its lease ---- */

/* Isolate the leaseholder just after it checked its quorum (so that it
 * stays leader for almost two election timeouts), while the clients keep
 * reading from it. */
static void lease_step(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    if (!l || s->net.partitioned || !raft_lease_valid(l->r, raft_now(l->r)))
        return;
    /* A leader that removed itself hands over (TIMEOUT_NOW, whose election
     * ignores leases): cut it off while it still believes it leads. */
    uint64_t e = sim_election_steps(s);
    if (!raft_conf_is_voter(raft_conf(l->r), l->rid)) {
        if (sim_rng_below(&s->rng, 4) == 0)
            sim_partition_set(s, 1ull << l->id,
                              s->now + sim_rng_range(&s->rng, 3 * e, 5 * e),
                              "isolate leaving leader");
        return;
    }
    unsigned retired = 0;
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        retired += s->retiring[id];
    if (s->p.n_nodes - retired > 3 && sim_rng_ppm(&s->rng, s->p.churn_ppm / 50))
        (void)sim_conf_propose(s, l, RAFT_CONF_REMOVE, l->rid);
    uint64_t since = (s->ticks - l->lead_tick) % SIM_ELECTION_TICKS;
    if (since < 1 || since > 2 || !sim_rng_ppm(&s->rng, s->p.churn_ppm))
        return;
    sim_partition_set(s, 1ull << l->id,
                      s->now + sim_rng_range(&s->rng, 3 * e, 5 * e),
                      "isolate leaseholder");
}

/* ---- membership: two changes at once, then a partition in which the
 * configurations before and after both have a quorum (none exists when
 * the core refuses the second change, as single-server changes keep every
 * quorum of the old configuration overlapping every quorum of the new) ---- */

static unsigned count_in(struct sim *s, const struct raft_conf *c,
                         uint64_t mask)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < c->n_voters; i++) {
        const struct sim_node *v = sim_node_by_rid(s, c->voters[i]);
        if (v && ((mask >> v->id) & 1) && v->state == SIM_UP)
            n++;
    }
    return n;
}

static bool quorum_in(struct sim *s, const struct raft_conf *c,
                      uint64_t mask)
{
    return c->n_voters && count_in(s, c, mask) > c->n_voters / 2;
}

static void membership_step(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    if (!l || s->net.partitioned || !sim_rng_ppm(&s->rng, s->p.burst_ppm))
        return;
    struct raft_conf before = *raft_conf(l->r);
    int rc = sim_conf_change(s, l, true);
    if (rc == 0 && !s->failed && l->state == SIM_UP)
        rc = sim_conf_change(s, l, true);
    if (s->failed || l->state != SIM_UP || l->role != RAFT_LEADER)
        return;
    const struct raft_conf *after = raft_conf(l->r);
    uint64_t all = ((1ull << s->p.n_nodes) - 1) << 1;
    uint64_t found[1 << SIM_MAX_NODES];
    unsigned nf = 0;
    for (uint64_t a = 0; a <= all; a += 2) {
        if (!((a >> l->id) & 1))
            continue;
        if (quorum_in(s, after, a) && quorum_in(s, &before, all & ~a))
            found[nf++] = a;
    }
    uint64_t e = sim_election_steps(s);
    uint64_t heal = s->now + sim_rng_range(&s->rng, 3 * e, 6 * e);
    if (nf) {
        sim_partition_set(s, found[sim_rng_below(&s->rng, nf)], heal,
                          "old/new quorums");
    } else if (sim_rng_below(&s->rng, 3) == 0) {
        uint64_t a = 0;
        while (a == 0 || a == all)
            a = sim_rng_next(&s->rng) & all;
        sim_partition_set(s, a, heal, "after conf burst");
    }
}

void sim_scenario_step(struct sim *s)
{
    switch (s->p.scenario) {
    case SIM_SC_FIGURE8:
        figure8_step(s);
        break;
    case SIM_SC_LEASE:
        lease_step(s);
        break;
    case SIM_SC_MEMBERSHIP:
        membership_step(s);
        break;
    case SIM_SC_WIPE:
        sim_wipe_step(s);
        break;
    }
}
