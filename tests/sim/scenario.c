/* Scenario-shaped seeds: parameters and fault patterns aimed at the bugs a
 * uniform random schedule almost never reaches (an old-term entry committed
 * by counting replicas, a lease outliving its leader through a partition, a
 * pause, a slow clock or a late TIMEOUT_NOW, two membership changes in
 * flight). Each scenario only adds faults a correct core must survive; the
 * invariants are the same as for every other seed. The wipe scenario lives
 * with the rest of the identity faults, in identity.c. */
#include "sim/sim.h"

#include <inttypes.h>

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
    p->pause_ppm = 0;
    p->late_ppm = 0;
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
    p->pause_ppm = 0;
    p->late_ppm = 0;
    p->lease_reads = !s->o.no_lease;
    p->churn_ppm = 500000;
    p->stale_ppm = 600000;
}

/* Like the lease scenario: leaseholders are paused instead of cut off. */
static void pause_params(struct sim *s)
{
    lease_params(s);
    s->p.profile = "pause";
    s->p.steps = (unsigned)sim_rng_range(&s->rng, 900, 2000);
    s->p.churn_ppm = 300000;
    s->p.op_timeout = 1; /* writers give up on a frozen leader quickly */
    s->p.pause_max_steps = 6 * sim_election_steps(s);
}

/* The leader's clock runs slow and every other clock fast, 5% each way
 * (a rate ratio of 1.105, inside the 1.125 the margin allows), with ticks
 * of 20 steps so that the difference adds up to steps. */
#define DRIFT_SPT 20
#define DRIFT_SLOW (21 * SIM_CLOCK_STEP)
#define DRIFT_FAST (19 * SIM_CLOCK_STEP)

static void drift_params(struct sim *s)
{
    lease_params(s);
    struct sim_params *p = &s->p;
    p->profile = "drift";
    p->spt = DRIFT_SPT;
    p->steps = (unsigned)sim_rng_range(&s->rng, 2500, 4500);
    /* 20 steps a tick: clients are slower, but busy while it counts. */
    p->client_ppm = (uint32_t)sim_rng_range(&s->rng, 30000, 100000);
    p->lat_max = 1; /* one step: the whole window is the clocks' */
    p->dup_ppm = 0;
    p->heartbeat_ticks = 1;
    p->drift_ppm = 50000;
    p->churn_ppm = 300000;
    p->n_clients = SIM_MAX_CLIENTS - 1;
}

/* Partial cuts, transfers and early elections around a leaseholder. */
static void transfer_params(struct sim *s)
{
    lease_params(s);
    s->p.profile = "transfer";
    s->p.steps = (unsigned)sim_rng_range(&s->rng, 900, 2000);
    s->p.churn_ppm = 300000;
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
    p->pause_ppm = (uint32_t)sim_rng_range(g, 0, 1000);
    p->late_ppm = (uint32_t)sim_rng_range(g, 0, 2000);
    p->conf_ppm = (uint32_t)sim_rng_range(g, 2000, 6000);
    p->burst_ppm = (uint32_t)(1000000 / (e * sim_rng_range(g, 2, 5)));
}

/* Four voters, no random faults: the scenario's own cuts are the point. */
static void early_conf_params(struct sim *s)
{
    struct sim_params *p = &s->p;
    struct sim_rng *g = &s->rng;
    p->profile = "early-conf";
    p->n_founders = p->n_nodes = 4;
    p->steps = (unsigned)sim_rng_range(g, 500, 1000);
    p->drop_ppm = 0;
    p->dup_ppm = 0;
    p->lat_min = 1;
    p->lat_max = (unsigned)sim_rng_range(g, 1, p->spt);
    p->crash_ppm = 0;
    p->part_ppm = 0;
    p->conf_ppm = 0;
    p->transfer_ppm = 0;
    p->pause_ppm = 0;
    p->late_ppm = 0;
    p->max_down = 1;
    p->churn_ppm = 20000;
}

void sim_scenario_params(struct sim *s)
{
    if (s->o.nodes || s->o.steps)
        return; /* the command line asked for a shape */
    unsigned e = SIM_ELECTION_TICKS * s->p.spt;
    unsigned r = (unsigned)sim_rng_below(&s->rng, 100);
    /* 6% of the seeds for each scenario (3% for early-conf), the first
     * of them for each. */
    if (s->o.scenario)
        r = s->o.scenario == SIM_SC_NONE + 1 ? 99 : (s->o.scenario - 2) * 6;
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
        s->p.scenario = SIM_SC_PAUSE;
        pause_params(s);
    } else if (r < 30) {
        s->p.scenario = SIM_SC_DRIFT;
        drift_params(s);
    } else if (r < 36) {
        s->p.scenario = SIM_SC_TRANSFER;
        transfer_params(s);
    } else if (r < 42) {
        s->p.scenario = SIM_SC_WIPE; /* identity.c */
        sim_wipe_params(s);
    } else if (r < 45) {
        s->p.scenario = SIM_SC_EARLY_CONF;
        early_conf_params(s);
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
        if (!l || s->now < s->sc.at ||
            !raft_lease_valid(l->r, sim_node_clock(l)) ||
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
    if (!l || s->net.partitioned ||
        !raft_lease_valid(l->r, sim_node_clock(l)))
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
    uint64_t since = (raft_now(l->r) - l->lead_tick) % SIM_ELECTION_TICKS;
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

/* ---- pause: freeze the leaseholder while clients read from it ---- */

/* The follower's side of a pause: cut the leader off from a minority of
 * followers until their promises have run out, then pause the follower
 * whose answers complete the leader's quorum, for less than an election
 * timeout. It wakes to the leader's rounds and to the ticks it owes. A
 * step later (its answers are in) cut the leader off, and make the others
 * campaign: the woken follower must keep its promise for a full election
 * timeout from when it stepped the leader's last round. That holds only if
 * the owed ticks come first (raft.h); --io-first shows what happens if
 * they do not. */
static void pause_follower_step(struct sim *s, struct sim_node *l)
{
    uint64_t e = sim_election_steps(s);
    unsigned nn = s->p.n_nodes;
    struct sim_node *f = &s->nodes[s->sc.peer];
    switch (s->sc.phase) {
    case 1: {
        uint64_t cut = 0; /* the minority it loses */
        unsigned k = (nn - 1) / 2;
        for (unsigned tries = 0; k && tries < 4 * nn; tries++) {
            unsigned id = (unsigned)sim_rng_range(&s->rng, 1, nn);
            if (id != l->id && !((cut >> id) & 1)) {
                cut |= 1ull << id;
                k--;
            }
        }
        unsigned pick = 0;
        for (unsigned id = 1; id <= nn; id++)
            if (id != l->id && !((cut >> id) & 1))
                pick = id;
        uint64_t all = ((1ull << nn) - 1) << 1;
        sim_partition_set(s, all & ~cut, s->now + 8 * e, "cut some followers");
        for (unsigned i = 1; i <= nn; i++)
            for (unsigned j = 1; j <= nn; j++)
                if (i != l->id && j != l->id)
                    s->net.blocked[i][j] = false; /* only the leader's links */
        s->sc.leader = l->id;
        s->sc.term = l->term;
        s->sc.peer = pick;
        s->sc.deadline = cut; /* who may campaign later */
        s->sc.at = s->now + 2 * e;
        s->sc.phase = 2;
        return;
    }
    case 2:
        if (s->now < s->sc.at)
            return;
        if (!l || l->id != s->sc.leader || !sim_node_live(f)) {
            s->sc.phase = 5;
            return;
        }
        sim_node_pause(s, f, sim_rng_range(&s->rng, e / 2, e - s->p.spt));
        s->sc.phase = 3;
        return;
    case 3:
        if (f->paused_until)
            return;
        s->sc.at = s->now + 1; /* its answers arrive */
        s->sc.phase = 4;
        return;
    case 4:
        if (s->now < s->sc.at)
            return;
        if (s->now == s->sc.at) {
            sim_partition_add(s, 1ull << s->sc.leader,
                              s->now + sim_rng_range(&s->rng, 3 * e, 4 * e),
                              "cut the leader");
            s->sc.shun = s->sc.leader;
        }
        if (!s->net.partitioned || (l && l->term > s->sc.term)) {
            s->sc.phase = 5;
            return;
        }
        /* Early elections among the followers it lost. */
        for (unsigned id = 1; id <= nn; id++) {
            struct sim_node *c = &s->nodes[id];
            if (((s->sc.deadline >> id) & 1) && sim_node_live(c) &&
                (c->role == RAFT_FOLLOWER || c->role == RAFT_PRE_CANDIDATE)) {
                (void)raft_campaign(c->r);
                sim_node_observe(s, c);
                break;
            }
        }
        return;
    default:
        if (!s->net.partitioned) {
            s->sc.shun = 0;
            s->sc.phase = 0;
            s->sc.at = s->now + sim_rng_range(&s->rng, e, 3 * e);
        }
        return;
    }
}

/* A long pause lets the others elect a new leader and write while the
 * clients' lease reads queue up at the frozen one; a short one ends while
 * its lease may still hold by the clock. Followers are paused too, one of
 * them in the choreography above. */
static void pause_step(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    uint64_t e = sim_election_steps(s);
    if (s->sc.phase) {
        pause_follower_step(s, l);
        return;
    }
    if (s->sc.shun && !s->nodes[s->sc.shun].paused_until) {
        s->sc.shun = 0; /* it woke */
        s->sc.client_ppm = 0;
    }
    if (!l || s->now < s->sc.at)
        return;
    if (raft_lease_valid(l->r, sim_node_clock(l)) && !s->net.partitioned &&
        sim_rng_below(&s->rng, 3) == 0 &&
        sim_rng_ppm(&s->rng, s->p.churn_ppm)) {
        s->sc.phase = 1;
        pause_follower_step(s, l);
        return;
    }
    if (raft_lease_valid(l->r, sim_node_clock(l)) &&
        sim_rng_ppm(&s->rng, s->p.churn_ppm)) {
        uint64_t len = sim_rng_below(&s->rng, 4)
                           ? sim_rng_range(&s->rng, 3 * e, s->p.pause_max_steps)
                           : sim_rng_range(&s->rng, 1, e);
        sim_node_pause(s, l, len);
        s->sc.shun = l->id; /* writers stuck there would write nothing */
        s->sc.at = s->now + len + sim_rng_range(&s->rng, e, 3 * e);
        return;
    }
    if (sim_rng_ppm(&s->rng, s->p.churn_ppm / 20)) {
        struct sim_node *f = &s->nodes[sim_rng_range(&s->rng, 1, s->p.n_nodes)];
        if (f != l)
            sim_node_pause(s, f, sim_rng_range(&s->rng, 1, 3 * e));
    }
}

/* ---- drift: a slow leader clock against fast follower clocks ---- */

/* The leader runs slow, everyone else fast. A follower's promise is worth
 * least when the leader's round reaches it just before its own tick, right
 * after the leader's tick that sent it: then stop everything the leader
 * sends after that round, cut it off completely once the answers are in,
 * and keep asking another follower to campaign (raft_campaign), so that a
 * new leader is elected and writes the moment the promises run out.
 * Clients keep reading from the old leader. */
static void drift_step(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        s->nodes[id].tick_len =
            l && id == l->id && s->sc.phase < 2 ? DRIFT_SLOW : DRIFT_FAST;
    if (s->sc.phase >= 2 && s->sc.leader &&
        s->nodes[s->sc.leader].state == SIM_UP)
        s->nodes[s->sc.leader].tick_len = DRIFT_SLOW; /* the cut-off one */
    uint64_t e = sim_election_steps(s);
    switch (s->sc.phase) {
    case 0: {
        if (!l || s->net.partitioned || s->now < s->sc.at ||
            !raft_lease_valid(l->r, sim_node_clock(l)) ||
            l->clk >= SIM_CLOCK_STEP /* it did not tick in this step */)
            return;
        unsigned f = 0;
        for (unsigned id = 1; id <= s->p.n_nodes && !f; id++) {
            const struct sim_node *n = &s->nodes[id];
            if (id != l->id && sim_node_live(n) &&
                n->clk + SIM_CLOCK_STEP >= n->tick_len)
                f = id; /* it ticks in the next step */
        }
        if (!f || !sim_rng_ppm(&s->rng, s->p.churn_ppm))
            return;
        s->sc.leader = l->id;
        s->sc.term = l->term;
        s->sc.at = s->now + 1; /* the round has arrived */
        s->sc.phase = 1;
        return;
    }
    case 1:
    case 2:
        if (s->now < s->sc.at)
            return;
        if (!l || l->id != s->sc.leader || l->term != s->sc.term) {
            s->sc.phase = 0;
            return;
        }
        if (s->sc.phase == 1) {
            /* Nothing it sends from now on arrives; the answers do. */
            uint64_t heal = s->now + sim_rng_range(&s->rng, 3 * e, 5 * e);
            sim_partition_set(s, 0, heal, "drift: leader sends");
            for (unsigned j = 1; j <= s->p.n_nodes; j++)
                s->net.blocked[l->id][j] = j != l->id;
            s->sc.at = s->now + 1;
            s->sc.phase = 2;
            return;
        }
        s->sc.peer = random_other(s, (unsigned)l->id);
        sim_partition_set(s, 1ull << l->id, s->net.heal_at,
                          "drift: isolate leader");
        s->sc.shun = l->id; /* a writer stuck there would miss the window */
        s->sc.client_ppm = 500000;
        s->sc.phase = 3;
        return;
    case 3: {
        struct sim_node *c = &s->nodes[s->sc.peer];
        if (!s->net.partitioned) {
            s->sc.shun = 0;
            s->sc.client_ppm = 0;
            s->sc.phase = 0;
            s->sc.at = s->now + sim_rng_range(&s->rng, e, 3 * e);
            return;
        }
        if (l && l->term > s->sc.term)
            return; /* elected: wait for the heal */
        if (!sim_node_live(c) || c->role == RAFT_CANDIDATE ||
            c->role == RAFT_LEADER)
            return;
        bool first = c->role == RAFT_FOLLOWER;
        int rc = raft_campaign(c->r);
        if (first || rc)
            sim_ev(s, EV_CAMPAIGN, 0, c->id, 0, (uint64_t)(int64_t)rc, 0, 0,
                   0, NULL);
        sim_node_observe(s, c);
        return;
    }
    }
}

/* ---- transfer: transfers and elections around a partial cut ---- */

/* Cut a leaseholder off from some of its followers (it keeps a quorum),
 * then (1) hand leadership to a follower it still reaches, or (2) make
 * followers campaign early; or (3) start a transfer whose TIMEOUT_NOW is
 * held back past the transfer's timeout, and cut the leader off the moment
 * it finally arrives and its target campaigns. */
static void transfer_step(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    uint64_t e = sim_election_steps(s);
    unsigned nn = s->p.n_nodes;
    switch (s->sc.phase) {
    case 0: {
        if (!l || s->net.partitioned || s->now < s->sc.at ||
            !raft_lease_valid(l->r, sim_node_clock(l)) ||
            !sim_rng_ppm(&s->rng, s->p.churn_ppm))
            return;
        const struct raft_conf *conf = raft_conf(l->r);
        if (conf->n_voters < 3 || !raft_conf_is_voter(conf, l->rid))
            return;
        /* tr: the target's Raft id (the core's); t: its slot */
        uint64_t tr = conf->voters[sim_rng_below(&s->rng, conf->n_voters)];
        struct sim_node *tn = sim_node_by_rid(s, tr);
        if (tr == l->rid || !tn || !sim_node_live(tn))
            return;
        unsigned t = (unsigned)tn->id;
        s->sc.leader = l->id;
        s->sc.term = l->term;
        s->sc.peer = t;
        unsigned what = (unsigned)sim_rng_below(&s->rng, 3);
        if (what == 2) {
            s->net.hold_timeout_now = true;
            sim_check_quorum_reset(s, (unsigned)l->id, raft_now(l->r));
            int rc = raft_transfer_leader(l->r, tr);
            s->st.transfers++;
            sim_ev(s, EV_TRANSFER, 0, l->id, t, (uint64_t)(int64_t)rc, 0, 0,
                   0, "TIMEOUT_NOW held back");
            sim_node_observe(s, l);
            s->sc.deadline = s->now + 8 * e;
            s->sc.phase = 1;
            return;
        }
        /* Cut it off from a minority of the others, never from t. */
        uint64_t cut = 1ull << l->id;
        unsigned k = (unsigned)sim_rng_range(&s->rng, 1, (nn - 1) / 2);
        for (unsigned tries = 0; k && tries < 4 * nn; tries++) {
            unsigned id = (unsigned)sim_rng_range(&s->rng, 1, nn);
            if (id != l->id && id != t && !((cut >> id) & 1)) {
                cut |= 1ull << id;
                k--;
            }
        }
        /* side A: l and the followers it still reaches */
        uint64_t all = ((1ull << nn) - 1) << 1;
        sim_partition_set(s, all & ~(cut & ~(1ull << l->id)),
                          s->now + sim_rng_range(&s->rng, 2 * e, 4 * e),
                          "cut leader from some followers");
        for (unsigned i = 1; i <= nn; i++)
            for (unsigned j = 1; j <= nn; j++)
                if (i != l->id && j != l->id)
                    s->net.blocked[i][j] = false; /* only l's links */
        if (what == 0) {
            sim_check_quorum_reset(s, (unsigned)l->id, raft_now(l->r));
            int rc = raft_transfer_leader(l->r, tr);
            s->st.transfers++;
            sim_ev(s, EV_TRANSFER, 0, l->id, t, (uint64_t)(int64_t)rc, 0, 0,
                   0, NULL);
            sim_node_observe(s, l);
            s->sc.phase = 3;
        } else {
            s->sc.phase = 2;
        }
        s->sc.deadline = s->net.heal_at;
        return;
    }
    case 1:
        /* Wait for the late TIMEOUT_NOW to reach its target. */
        /* late_tn holds Raft ids: the old leader's current one */
        if (s->net.late_tn.step == s->now &&
            s->net.late_tn.from == s->nodes[s->sc.leader].rid) {
            struct sim_node *old = &s->nodes[s->sc.leader];
            if (sim_node_live(old) && old->role == RAFT_LEADER &&
                old->term == s->net.late_tn.term) {
                sim_partition_set(s, 1ull << old->id,
                                  s->now + sim_rng_range(&s->rng, 3 * e, 5 * e),
                                  "late TIMEOUT_NOW: cut leader");
                s->sc.shun = old->id;
                s->sc.client_ppm = 500000;
            }
            s->sc.phase = 3;
            s->sc.deadline = s->now + 5 * e;
        } else if (s->now >= s->sc.deadline) {
            s->net.hold_timeout_now = false;
            s->sc.phase = 0;
        }
        return;
    case 2: {
        /* Early elections, anywhere but at the leader. */
        if (s->now >= s->sc.deadline || !s->net.partitioned) {
            s->sc.phase = 0;
            s->sc.at = s->now + sim_rng_range(&s->rng, e, 2 * e);
            return;
        }
        if (!sim_rng_ppm(&s->rng, 1000000 / s->p.spt))
            return;
        struct sim_node *c = &s->nodes[random_other(s, (unsigned)s->sc.leader)];
        if (!sim_node_live(c) || c->role != RAFT_FOLLOWER)
            return;
        int rc = raft_campaign(c->r);
        sim_ev(s, EV_CAMPAIGN, 0, c->id, 0, (uint64_t)(int64_t)rc, 0, 0, 0,
               NULL);
        sim_node_observe(s, c);
        return;
    }
    default:
        if (s->now >= s->sc.deadline || !s->net.partitioned) {
            s->sc.shun = 0;
            s->sc.client_ppm = 0;
            s->sc.phase = 0;
            s->sc.at = s->now + sim_rng_range(&s->rng, e, 2 * e);
        }
        return;
    }
}

/* ---- early-conf: a change before the new leader's no-op commits ----
 *
 * Ongaro's single-server change bug (raft-dev, 2015), with voters
 * {A, B, X, Y}:
 * 1. cut the settled leader A off and have it remove X: C1 = {A, B, Y},
 *    in A's log only;
 * 2. make B campaign; X and Y vote for it (their logs are A's without C1);
 * 3. the step B wins, cut Y off (B's no-op never reaches it) and propose
 *    at B the removal of Y: C2 = {A, B, X}, whose quorum {B, X} is there;
 * 4. once B has committed (or given up), let A back with Y only: A's log
 *    is longer than Y's, so A wins {A, Y}, a quorum of C1, and commits C1
 *    at the index where B committed its no-op;
 * 5. heal.
 * The core must refuse step 3's change until B's no-op commits, which
 * needs Y or A: then either C2 never exists or Y holds B's term and does
 * not vote for A. */
static void early_conf_heal(struct sim *s, const char *why)
{
    sim_partition_set(s, 0, s->now, why);
    s->sc.phase = 5; /* one round a seed: the cluster has lost a voter */
}

static void early_conf_step(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    uint64_t e = sim_election_steps(s);
    uint64_t hold = s->now + 20 * e; /* healed by the scenario */
    if (s->sc.phase && s->sc.phase < 5 && s->now >= s->sc.deadline) {
        early_conf_heal(s, "econf: give up");
        return;
    }
    switch (s->sc.phase) {
    case 0: {
        if (!l || s->net.partitioned || s->now < s->sc.at ||
            raft_conf(l->r)->n_voters != 4 ||
            raft_commit_index(l->r) != raft_last_index(l->r) ||
            !sim_rng_ppm(&s->rng, s->p.churn_ppm))
            return;
        for (unsigned id = 1; id <= s->p.n_nodes; id++) {
            struct sim_node *n = &s->nodes[id];
            if (!sim_node_live(n) ||
                raft_last_index(n->r) != raft_last_index(l->r))
                return; /* everybody settled on the same log */
        }
        unsigned x = random_other(s, (unsigned)l->id), b, y;
        do
            b = random_other(s, (unsigned)l->id);
        while (b == x);
        y = 10 - (unsigned)l->id - x - b; /* ids 1..4 */
        sim_partition_set(s, 1ull << l->id, hold, "econf: cut leader");
        if (sim_conf_propose(s, l, RAFT_CONF_REMOVE, s->nodes[x].rid) != 0) {
            sim_partition_set(s, 0, s->now, "econf: no change");
            s->sc.at = s->now + e;
            return;
        }
        s->sc.leader = l->id;
        s->sc.term = l->term;
        s->sc.peer = b;
        s->sc.aside = y;
        s->sc.deadline = s->now + 6 * e;
        s->sc.phase = 1;
        return;
    }
    case 1: {
        struct sim_node *b = &s->nodes[s->sc.peer];
        if (l && l != b && l->id != s->sc.leader) {
            early_conf_heal(s, "econf: other leader");
            return;
        }
        if (b->role != RAFT_LEADER) {
            if (sim_node_live(b) && (b->role == RAFT_FOLLOWER ||
                                     b->role == RAFT_PRE_CANDIDATE)) {
                (void)raft_campaign(b->r);
                sim_node_observe(s, b);
            }
            return;
        }
        sim_partition_add(s, 1ull << s->sc.aside, hold,
                          "econf: cut new voter");
        (void)sim_conf_propose(s, b, RAFT_CONF_REMOVE,
                               s->nodes[s->sc.aside].rid);
        s->sc.term = b->term;
        s->sc.at = raft_last_index(b->r);
        s->sc.deadline = s->now + 3 * e;
        s->sc.phase = 2;
        return;
    }
    case 2: {
        struct sim_node *b = &s->nodes[s->sc.peer];
        if (raft_commit_index(b->r) < s->sc.at && s->now + e < s->sc.deadline)
            return;
        sim_partition_set(s, 1ull << s->sc.leader | 1ull << s->sc.aside, hold,
                          "econf: A+Y back");
        s->sc.deadline = s->now + 6 * e;
        s->sc.phase = 3;
        return;
    }
    case 3: {
        struct sim_node *a = &s->nodes[s->sc.leader];
        if (a->role != RAFT_LEADER || a->term <= s->sc.term)
            return;
        s->sc.at = s->now + sim_rng_range(&s->rng, e, 3 * e);
        s->sc.phase = 4;
        return;
    }
    case 4:
        if (s->now >= s->sc.at)
            early_conf_heal(s, "econf: heal");
        return;
    default:
        return;
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
    case SIM_SC_PAUSE:
        pause_step(s);
        break;
    case SIM_SC_DRIFT:
        drift_step(s);
        break;
    case SIM_SC_TRANSFER:
        transfer_step(s);
        break;
    case SIM_SC_WIPE:
        sim_wipe_step(s);
        break;
    case SIM_SC_EARLY_CONF:
        early_conf_step(s);
        break;
    }
}
