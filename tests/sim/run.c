/* One seed from start to verdict: draw the parameters, boot the cluster, run
 * the main phase (faults on), then the final phase (everything healed, the
 * cluster must converge), then the end-of-run checks. Also the clocks: each
 * node's ticks come at its own rate and phase, and a paused node's clock
 * runs on while its core hears nothing. */
#include "sim/sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "common/alloc.h"

#define TRACE_CAP 4096
#define FINAL_ELECTIONS 50 /* election timeouts the final phase may take */

static unsigned pick(struct sim_rng *g, const unsigned *v, size_t n)
{
    return v[sim_rng_below(g, n)];
}
#define PICK(g, ...)                                                          \
    pick(g, (const unsigned[]){__VA_ARGS__},                                  \
         sizeof((const unsigned[]){__VA_ARGS__}) / sizeof(unsigned))

static void draw_params(struct sim *s)
{
    struct sim_params *p = &s->p;
    struct sim_rng *g = &s->rng;
    p->n_founders = PICK(g, 1, 3, 3, 3, 5, 5, 7);
    unsigned extras = sim_rng_below(g, 10) < 4 ? (unsigned)sim_rng_range(g, 1, 2)
                                               : 0;
    if (p->n_founders == 1)
        extras = (unsigned)sim_rng_range(g, 1, 2);
    p->n_nodes = p->n_founders + extras;
    if (s->o.nodes) {
        p->n_nodes = s->o.nodes;
        p->n_founders = s->o.nodes > 2 ? s->o.nodes - extras : s->o.nodes;
        if (p->n_founders < 1)
            p->n_founders = 1;
    }
    unsigned r = (unsigned)sim_rng_below(g, 100);
    p->steps = r < 60   ? (unsigned)sim_rng_range(g, 300, 800)
               : r < 90 ? (unsigned)sim_rng_range(g, 800, 2000)
                        : (unsigned)sim_rng_range(g, 2000, 4000);
    if (s->o.steps)
        p->steps = s->o.steps;
    p->spt = PICK(g, 1, 2, 2, 3);
    p->n_keys = (unsigned)sim_rng_range(g, 3, SIM_MAX_KEYS);
    p->n_clients = (unsigned)sim_rng_range(g, 2, SIM_MAX_CLIENTS - 1);
    p->heartbeat_ticks = PICK(g, 1, 2);
    p->max_inflight = PICK(g, 1, 2, 8, 64);
    p->max_msg_bytes = PICK(g, 30, 200, 1 << 20);
    p->max_uncommitted = PICK(g, 400, 1 << 20, 1 << 20);
    p->snap_threshold = sim_rng_below(g, 4) ? sim_rng_range(g, 20, 200) : 0;
    p->snap_trailing = PICK(g, 0, 2, 10, 100);
    p->snap_chunk = PICK(g, 16, 50, 200, 65536);
    p->snap_pad = (unsigned)sim_rng_below(g, 300);
    p->persist_delay_max = PICK(g, 0, 1, 2, 4);
    p->snapshot_delay_max = PICK(g, 0, 3, 10);
    p->lease_reads = !s->o.no_lease;
    p->boot_ctx = sim_rng_below(g, 2);
    unsigned prof = (unsigned)sim_rng_below(g, 4);
    unsigned e = SIM_ELECTION_TICKS * p->spt; /* election timeout in steps */
    /* Clock rates differ by a few percent: well inside the bound the lease
     * margin allows (docs/read-lease.md: 12.5% with 10 election ticks). */
    p->drift_ppm = PICK(g, 0, 10000, 20000, 30000);
    p->pause_max_steps = (unsigned)sim_rng_range(g, e, 6 * e);
    p->late_min = 2 * e;
    p->late_max = (unsigned)sim_rng_range(g, 3 * e, 8 * e);
    p->io_first = s->o.io_first;
    if (prof == 0) {
        p->profile = "calm";
        p->lat_min = 1;
        p->lat_max = p->spt;
        p->crash_ppm = 1000;
        p->part_ppm = 0;
        p->max_down = 1;
    } else if (prof < 3) {
        p->profile = "moderate";
        p->drop_ppm = (uint32_t)sim_rng_range(g, 0, 30000);
        p->dup_ppm = (uint32_t)sim_rng_range(g, 0, 20000);
        p->lat_min = 1;
        p->lat_max = (unsigned)sim_rng_range(g, 1, 3 * p->spt);
        p->crash_ppm = 4000;
        p->part_ppm = 3000;
        p->pause_ppm = (uint32_t)sim_rng_range(g, 0, 2000);
        p->late_ppm = (uint32_t)sim_rng_range(g, 0, 3000);
        p->max_down = (p->n_nodes - 1) / 2;
    } else {
        p->profile = "hostile";
        p->drop_ppm = (uint32_t)sim_rng_range(g, 30000, 200000);
        p->dup_ppm = (uint32_t)sim_rng_range(g, 10000, 100000);
        p->lat_min = 1;
        p->lat_max = (unsigned)sim_rng_range(g, 2, 10 * p->spt);
        p->crash_ppm = 12000;
        p->part_ppm = 10000;
        p->pause_ppm = (uint32_t)sim_rng_range(g, 1000, 6000);
        p->late_ppm = (uint32_t)sim_rng_range(g, 1000, 10000);
        p->max_down = sim_rng_below(g, 3) ? (p->n_nodes + 1) / 2 : p->n_nodes;
    }
    if (p->max_down == 0)
        p->max_down = 1;
    p->part_max_steps = (unsigned)sim_rng_range(g, e, 6 * e);
    p->conf_ppm = (uint32_t)sim_rng_range(g, 2000, 10000);
    p->transfer_ppm = (uint32_t)sim_rng_range(g, 500, 4000);
    p->client_ppm = (uint32_t)sim_rng_range(g, 50000, 400000);
    p->stale_ppm = 100000;
    p->lease_pct = 30;
    p->txn_pct = 20;
    /* From the seed, not the stream: the draws above stay what they were
     * for every seed. A small byte bound on the log kept behind a
     * snapshot sends lagging followers snapshots sooner. */
    static const uint64_t trail_bytes[] = {0, 64, 256, 1024};
    p->snap_trailing_bytes = trail_bytes[(s->seed * 0x9E3779B97F4A7C15ull) >> 62];
    /* Likewise the bound on what one batch applies: from one entry a
     * batch (every entry costs RAFT_APPLY_ENTRY_COST) to the default. */
    static const size_t apply_bytes[] = {0, 1, 150, 600};
    p->max_apply_bytes = apply_bytes[(s->seed * 0xD6E8FEB86659FD93ull) >> 62];
    /* And the election timeout's random part: [e, 2e) as etcd, down to
     * two draws (a narrow range fails over sooner, with more ties). */
    static const unsigned jitter[] = {SIM_ELECTION_TICKS, 5, 3, 2};
    p->election_jitter = jitter[(s->seed * 0xA24BAED4963EE407ull) >> 62];
    /* And how many silent election timeouts in a row a leader waits out. */
    p->check_quorum_rounds = 1 + (unsigned)(((s->seed * 0x9FB21C651E98DF25ull) >> 62) % 3);
    sim_scenario_params(s);
}

/* A clock whose ticks are off by up to drift_ppm from spt steps, starting
 * at a random phase. */
static void init_clock(struct sim *s, struct sim_node *n)
{
    int64_t d = s->p.drift_ppm;
    int64_t off = d ? (int64_t)sim_rng_range(&s->rng, 0, (uint64_t)(2 * d)) - d
                    : 0;
    int64_t nominal = (int64_t)s->p.spt * SIM_CLOCK_STEP;
    n->tick_len = (uint32_t)(nominal + nominal * off / 1000000);
    n->clk = sim_rng_below(&s->rng, n->tick_len);
}

static void advance_clock(struct sim_node *n)
{
    n->clk += SIM_CLOCK_STEP;
    while (n->clk >= n->tick_len) {
        n->clk -= n->tick_len;
        n->clock_ticks++;
    }
}

void sim_init(struct sim *s, uint64_t seed, const struct sim_opts *o,
              FILE *out)
{
    memset(s, 0, sizeof(*s));
    s->seed = seed;
    s->o = *o;
    s->out = out;
    sim_rng_seed(&s->rng, seed);
    sim_rng_seed(&s->forge_rng, sim_mix(seed, 0xf0763d));
    draw_params(s);
    /* A quarter of the seeds without forgeries, the rest up to 0.5% a
     * step (a few to a few dozen per seed). */
    s->p.forge_ppm = sim_rng_below(&s->forge_rng, 4)
                         ? (uint32_t)sim_rng_range(&s->forge_rng, 500, 5000)
                         : 0;
    s->net.drop_ppm = s->p.drop_ppm;
    s->net.dup_ppm = s->p.dup_ppm;
    s->net.lat_min = s->p.lat_min;
    s->net.lat_max = s->p.lat_max;
    sim_trace_init(&s->trace, TRACE_CAP);
    for (unsigned i = 0; i < SIM_MAX_CLIENTS; i++) {
        s->clients[i].id = i + 1;
        s->clients[i].op = -1;
    }
    s->final_client = SIM_MAX_CLIENTS - 1;
    sim_ident_init(s);
    sim_watch_init(s);
    if (s->o.verbose)
        sim_print_params(s, out);
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        init_clock(s, &s->nodes[id]);
    sim_lease_init(s);
    for (unsigned id = 1; id <= s->p.n_nodes && !s->failed; id++) {
        s->nodes[id].id = id;
        sim_node_boot(s, &s->nodes[id], id <= s->p.n_founders);
    }
}

void sim_fail(struct sim *s, const char *inv, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = true;
    snprintf(s->inv, sizeof(s->inv), "%s", inv);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
    sim_ev(s, EV_NOTE, 0, 0, 0, 0, 0, 0, 0, "VIOLATION");
}

static void check_pairs(struct sim *s)
{
    struct sim_logview v[SIM_MAX_NODES + 1];
    for (unsigned a = 1; a <= s->p.n_nodes; a++)
        if (s->nodes[a].state == SIM_UP)
            sim_logview_of(&v[a], s->nodes[a].r);
    for (unsigned a = 1; a <= s->p.n_nodes && !s->failed; a++)
        for (unsigned b = a + 1; b <= s->p.n_nodes && !s->failed; b++)
            if (s->nodes[a].state == SIM_UP && s->nodes[b].state == SIM_UP)
                sim_check_pair(s, a, &v[a], b, &v[b], 16);
}

/* Deliver what each clock owes, wake the nodes whose pause is over. */
static void tick_nodes(struct sim *s)
{
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        advance_clock(&s->nodes[id]);
    if (s->now % s->p.spt == 0)
        s->ticks++; /* nominal ticks, for the final phase's limits */
    for (unsigned id = 1; id <= s->p.n_nodes && !s->failed; id++) {
        struct sim_node *n = &s->nodes[id];
        if (n->state != SIM_UP)
            continue;
        if (n->paused_until && s->now >= n->paused_until)
            sim_node_wake(s, n);
        else if (!n->paused_until)
            sim_node_catch_up(s, n);
    }
}

static void step(struct sim *s)
{
    s->now++;
    sim_net_deliver(s);
    tick_nodes(s);
    if (!s->failed)
        sim_clients_step(s);
    if (!s->failed)
        sim_watch_step(s);
    if (!s->failed)
        sim_faults_step(s);
    if (!s->failed)
        sim_forge_step(s);
    for (unsigned id = 1; id <= s->p.n_nodes && !s->failed; id++)
        sim_node_process(s, &s->nodes[id]);
    if (!s->failed)
        sim_lease_step(s);
    if (!s->failed && s->now % s->p.spt == 0)
        check_pairs(s);
}

/* The healed cluster has converged: a leader that is a voter, the final
 * write done, no client op pending, every member up and applied up to the
 * leader's commit index, which is its last index. (Heartbeats keep making
 * small ready batches, so nodes may be mid-write: that is not checked.) */
static bool converged(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    if (!l || !s->final_done || !sim_clients_idle(s) || !sim_lease_settled(s))
        return false;
    const struct raft_conf *conf = raft_conf(l->r);
    if (!raft_conf_is_voter(conf, l->rid))
        return false;
    uint64_t commit = raft_commit_index(l->r);
    if (raft_last_index(l->r) != commit)
        return false;
    for (uint32_t i = 0; i < conf->n_voters + conf->n_learners; i++) {
        uint64_t id = i < conf->n_voters ? conf->voters[i]
                                         : conf->learners[i - conf->n_voters];
        const struct sim_node *n = sim_node_by_rid(s, id); /* NULL: old id */
        if (!n || n->state != SIM_UP || n->kv.applied != commit)
            return false;
    }
    return true;
}

/* A number that changes whenever the cluster makes progress. */
static uint64_t progress(const struct sim *s)
{
    uint64_t h = 0;
    for (unsigned id = 1; id <= s->p.n_nodes; id++) {
        const struct sim_node *n = &s->nodes[id];
        if (n->state == SIM_UP)
            h += n->kv.applied + n->term * 1000003 + n->leader * 7;
    }
    return h;
}

static void liveness_failure(struct sim *s, uint64_t limit)
{
    char buf[sizeof(s->why)];
    size_t o = 0;
    struct sim_node *l = sim_leader(s);
    o += (size_t)snprintf(buf + o, sizeof(buf) - o, "no convergence %" PRIu64
                          " ticks after healing (%u without progress): leader n%"
                          PRIu64 ", final write %s, clients %s;",
                          limit, FINAL_ELECTIONS * SIM_ELECTION_TICKS,
                          l ? l->id : 0, s->final_done ? "done" : "NOT done",
                          sim_clients_idle(s) ? "idle" : "busy");
    for (unsigned id = 1; id <= s->p.n_nodes && o < sizeof(buf); id++) {
        const struct sim_node *n = &s->nodes[id];
        if (n->state != SIM_UP)
            continue;
        o += (size_t)snprintf(buf + o, sizeof(buf) - o,
                              " n%u:%s t%" PRIu64 " c%" PRIu64 " a%" PRIu64
                              " l%" PRIu64 "%s;", id,
                              raft_role_name(n->role), n->term,
                              raft_commit_index(n->r), n->kv.applied,
                              raft_last_index(n->r), n->busy ? " busy" : "");
    }
    sim_fail(s, "liveness", "%s", buf);
}

static void final_phase(struct sim *s)
{
    s->final_phase = true;
    sim_ev(s, EV_FINAL, 0, 0, 0, 0, 0, 0, 0, "heal everything, restart all");
    sim_heal(s);
    if (s->o.sabotage_final) {
        for (unsigned i = 1; i <= s->p.n_nodes; i++)
            for (unsigned j = 1; j <= s->p.n_nodes; j++)
                s->net.blocked[i][j] = i != j;
    }
    /* The cluster must converge within FINAL_ELECTIONS election timeouts
     * of its last progress (slow configurations, e.g. one 30-byte append in
     * flight and no snapshots, legitimately need long to catch up), and
     * within ten times that overall. */
    uint64_t start = s->ticks, last_progress = s->ticks, seen = progress(s);
    uint64_t limit = (uint64_t)FINAL_ELECTIONS * SIM_ELECTION_TICKS;
    bool done = false;
    while (!s->failed && s->ticks - last_progress < limit &&
           s->ticks - start < 10 * limit && !(done = converged(s))) {
        step(s);
        uint64_t p = progress(s);
        if (p != seen) {
            seen = p;
            last_progress = s->ticks;
        }
    }
    s->st.final_ticks = s->ticks - start;
    if (s->failed)
        return;
    if (!done) {
        liveness_failure(s, s->ticks - start);
        return;
    }
    struct sim_node *l = sim_leader(s);
    const struct raft_conf *conf = raft_conf(l->r);
    for (uint32_t i = 0; i < conf->n_voters + conf->n_learners; i++) {
        uint64_t id = i < conf->n_voters ? conf->voters[i]
                                         : conf->learners[i - conf->n_voters];
        const struct sim_node *n = sim_node_by_rid(s, id);
        if (!sim_kv_equal(&n->kv, &l->kv))
            sim_fail(s, "state-machine-safety", "after convergence at index %"
                     PRIu64 " n%" PRIu64 " and leader n%" PRIu64 " hold"
                     " different kv contents", l->kv.applied, n->id, l->id);
    }
    if (!s->failed)
        sim_watch_final(s, l);
    /* Final reads: the converged leader's state, as of now. */
    for (unsigned k = 0; k < s->p.n_keys && !s->failed; k++) {
        struct sim_op *op = sim_hist_add(s);
        if (!op)
            return;
        op->client = s->clients[s->final_client].id;
        op->key = (uint8_t)k;
        op->kind = SIM_OP_GET;
        op->node = l->id;
        op->has_value = l->kv.present[k];
        strcpy(op->value, op->has_value ? l->kv.val[k] : "");
        op->invoke = ++s->clock;
        op->complete = ++s->clock;
        op->outcome = SIM_OK;
        op->stage = SIM_ST_DONE;
        op->index = l->kv.applied;
    }
    /* and of the CAS registers, with their mod_index */
    for (unsigned k = 0; k < SIM_CAS_KEYS && !s->failed; k++) {
        struct sim_op *op = sim_hist_add(s);
        if (!op)
            return;
        op->client = s->clients[s->final_client].id;
        op->key = (uint8_t)(SIM_TKEY + k);
        op->kind = SIM_OP_GET;
        op->node = l->id;
        sim_txn_read(s, l, op);
        op->invoke = ++s->clock;
        op->complete = ++s->clock;
        op->outcome = SIM_OK;
        op->stage = SIM_ST_DONE;
        op->index = l->kv.applied;
    }
    sim_ev(s, EV_FINAL, 0, l->id, 0, l->kv.applied, 0, 0, 0, "converged");
}

int sim_run(struct sim *s)
{
    while (!s->failed && s->now < s->p.steps)
        step(s);
    if (!s->failed)
        final_phase(s);
    if (!s->failed)
        sim_check_durable_writes(s);
    if (!s->failed)
        sim_check_linear(s);
    return s->failed ? -1 : 0;
}

void sim_destroy(struct sim *s)
{
    for (unsigned id = 1; id <= SIM_MAX_NODES; id++)
        sim_node_free(&s->nodes[id]);
    sim_net_free(&s->net);
    sim_hist_free(&s->hist);
    sim_check_free(&s->chk);
    sim_model_free(&s->model);
    sim_lease_free(s);
    sim_watch_free(s);
    sim_trace_free(&s->trace);
    craft_free(s->detail);
    s->detail = NULL;
}

void sim_print_params(const struct sim *s, FILE *f)
{
    const struct sim_params *p = &s->p;
    fprintf(f, "  params: %s, %u nodes (%u founders), %u steps, %u steps/tick,"
            " hb %u, %u keys, %u clients, inflight %u, msg %zu B, uncommitted"
            " %zu B, snapshot every %" PRIu64 " (trail %" PRIu64 " / %" PRIu64 " B, chunk %u B,"
            " pad %u), apply %zu B/batch, election jitter %u, check-quorum rounds %u, drop %.1f%%, dup %.1f%%, latency %u..%u, max down %u,"
            " persist delay <= %u, lease reads %s, clock drift <= %.1f%%,"
            " pauses %.2f%%/step (<= %u steps), late msgs %.2f%% (%u..%u"
            " steps), wipes %u ppm (%u%% damaged), forgeries %.2f%%/step%s\n",
            p->profile, p->n_nodes, p->n_founders, p->steps, p->spt,
            p->heartbeat_ticks, p->n_keys, p->n_clients, p->max_inflight,
            p->max_msg_bytes, p->max_uncommitted, p->snap_threshold,
            p->snap_trailing, p->snap_trailing_bytes, p->snap_chunk, p->snap_pad, p->max_apply_bytes, p->election_jitter, p->check_quorum_rounds, p->drop_ppm / 1e4,
            p->dup_ppm / 1e4, p->lat_min, p->lat_max, p->max_down,
            p->persist_delay_max, p->lease_reads ? "on" : "off",
            p->drift_ppm / 1e4, p->pause_ppm / 1e4, p->pause_max_steps,
            p->late_ppm / 1e4, p->late_min, p->late_max, p->wipe_ppm,
            p->damage_pct, p->forge_ppm / 1e4,
            p->io_first ? ", frames before owed ticks (--io-first)" : "");
    sim_lease_print(s, f);
}

void sim_report(const struct sim *s, FILE *f)
{
    fprintf(f, "sim: seed %" PRIu64 " FAILED at step %" PRIu64 ": invariant"
            " \"%s\": %s\n", s->seed, s->now, s->inv, s->why);
    /* The options that shaped the run, so that the replay is exact. */
    char opts[96] = "";
    size_t o = 0;
    if (s->o.scenario)
        o += (size_t)snprintf(opts + o, sizeof(opts) - o, " --scenario %u",
                              s->o.scenario - 1);
    if (s->o.nodes && o < sizeof(opts))
        o += (size_t)snprintf(opts + o, sizeof(opts) - o, " --nodes %u",
                              s->o.nodes);
    if (s->o.steps && o < sizeof(opts))
        o += (size_t)snprintf(opts + o, sizeof(opts) - o, " --steps %u",
                              s->o.steps);
    if (s->o.no_lease && o < sizeof(opts))
        o += (size_t)snprintf(opts + o, sizeof(opts) - o, " --no-lease");
    if (s->o.io_first && o < sizeof(opts))
        o += (size_t)snprintf(opts + o, sizeof(opts) - o, " --io-first");
    if (s->o.leases && o < sizeof(opts))
        snprintf(opts + o, sizeof(opts) - o, " --leases");
    if (opts[0])
        fprintf(f, "  replay: build/sim --seed %" PRIu64 " --verbose%s\n",
                s->seed, opts);
    else
        fprintf(f, "  replay: make sim SEED=%" PRIu64 "\n", s->seed);
    sim_print_params(s, f);
    if (s->detail)
        fprintf(f, "%s\n", s->detail);
    size_t n = s->o.trace_lines ? s->o.trace_lines : 60;
    fprintf(f, "  last %zu events:\n", n);
    sim_trace_print(s, f, n);
}
