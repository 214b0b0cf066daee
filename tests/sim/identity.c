/* Node identity in the simulator: every data directory has an incarnation
 * and the node's Raft id is craft_member_id(name, incarnation), as in
 * craftd. Faults on identity: a disk wiped (the node restarts empty, a new
 * incarnation, a stranger to the cluster) or damaged in a way recovery
 * detects (the node refuses to start until the operator moves the directory
 * aside: then it is a new incarnation too). The daemon's join re-adds a new
 * incarnation: remove the old id, add the new one as a learner, promote it
 * once it has caught up. Also the wipe scenario, aimed at a cluster that
 * would let a wiped voter vote under its old id. */
#include "sim/sim.h"

#include <inttypes.h>
#include <string.h>

#include "common/alloc.h"
#include "common/member_id.h"

/* ---- the id table ---- */

unsigned sim_slot_of(const struct sim *s, uint64_t rid)
{
    if (rid == RAFT_NONE)
        return 0;
    for (unsigned i = s->n_ids; i-- > 0;)
        if (s->ids[i].rid == rid)
            return s->ids[i].slot;
    return 0;
}

struct sim_node *sim_node_by_rid(struct sim *s, uint64_t rid)
{
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        if (rid != RAFT_NONE && s->nodes[id].rid == rid)
            return &s->nodes[id];
    return NULL;
}

uint64_t sim_tag(const struct sim *s, uint64_t rid)
{
    if (rid == RAFT_NONE)
        return 0;
    for (unsigned i = s->n_ids; i-- > 0;)
        if (s->ids[i].rid == rid)
            return s->ids[i].slot | (uint64_t)s->ids[i].gen << 8;
    return 0xff;
}

const char *sim_tag_str(uint64_t tag, char *buf, size_t len)
{
    unsigned slot = (unsigned)(tag & 0xff), gen = (unsigned)(tag >> 8);
    if (slot == 0xff)
        snprintf(buf, len, "n?");
    else if (gen <= 1)
        snprintf(buf, len, "n%u", slot);
    else
        snprintf(buf, len, "n%u.%u", slot, gen);
    return buf;
}

uint64_t sim_rid_of(const struct sim *s, unsigned slot, unsigned gen)
{
    for (unsigned i = 0; i < s->n_ids; i++)
        if (s->ids[i].slot == slot && s->ids[i].gen == gen)
            return s->ids[i].rid;
    return 0;
}

/* A fresh data directory: a random incarnation, hence a new Raft id (one
 * that no other node has; craft_member_id never gives 0). */
static void draw_id(struct sim *s, struct sim_node *n)
{
    char name[8];
    snprintf(name, sizeof(name), "n%u", (unsigned)n->id);
    uint64_t inc = 0, rid = 0;
    for (int tries = 0; tries < 8; tries++) {
        inc = sim_rng_next(&s->rng) | 1;
        rid = craft_member_id(name, inc);
        unsigned owner = sim_slot_of(s, rid);
        if (owner == 0 || owner == n->id)
            break;
    }
    n->inc = inc;
    n->rid = rid;
    if (s->n_ids < SIM_MAX_IDS)
        s->ids[s->n_ids++] = (struct sim_idrec){rid, (uint8_t)n->id,
                                                (uint8_t)n->gen};
    else
        sim_fail(s, "sim", "more than %d Raft ids in one run", SIM_MAX_IDS);
}

void sim_ident_init(struct sim *s)
{
    struct sim_params *p = &s->p;
    if (p->scenario == SIM_SC_NONE) {
        unsigned r = (unsigned)sim_rng_below(&s->rng, 4);
        p->wipe_ppm = !strcmp(p->profile, "calm")       ? 600
                      : !strcmp(p->profile, "moderate") ? 1500
                                                        : 3000;
        if (r == 0)
            p->wipe_ppm = 0; /* a quarter of the seeds keep their disks */
        p->damage_pct = 30;
        p->post_elect_pct = 30;
    } else if (p->scenario == SIM_SC_MEMBERSHIP) {
        p->post_elect_pct = 30;
    }
    for (unsigned id = 1; id <= p->n_nodes; id++) {
        struct sim_node *n = &s->nodes[id];
        n->id = id;
        n->gen = 1;
        draw_id(s, n);
    }
}

/* ---- the fault budget ---- */

bool sim_rid_dead(const struct sim *s, uint64_t rid)
{
    unsigned slot = sim_slot_of(s, rid);
    if (slot == 0)
        return true;
    const struct sim_node *n = &s->nodes[slot];
    return n->rid != rid || n->state == SIM_STOPPED ||
           n->disk_fault != SIM_DISK_OK;
}

static unsigned dead_voters(const struct sim *s, const struct raft_conf *c)
{
    unsigned d = 0;
    for (uint32_t i = 0; i < c->n_voters; i++)
        d += sim_rid_dead(s, c->voters[i]);
    return d;
}

bool sim_ident_busy(const struct sim *s)
{
    for (unsigned id = 1; id <= s->p.n_nodes; id++) {
        const struct sim_node *n = &s->nodes[id];
        if (n->disk_fault != SIM_DISK_OK)
            return true;
        if (n->state == SIM_UP && dead_voters(s, raft_conf(n->r)))
            return true;
    }
    return false;
}

/* Is the packet a PROP carrying a membership change? */
static bool is_conf_prop(const struct sim_packet *pk)
{
    if (pk->type != RAFT_MSG_PROP)
        return false;
    struct raft_msg m;
    if (raft_msg_decode(pk->buf, pk->len, &m))
        return false; /* the delivery reports it */
    bool conf = m.n_entries && m.entries[0].type == RAFT_ENTRY_CONF;
    raft_msg_decoded_free(&m);
    return conf;
}

/* Is a membership change on its way to a leader, in a PROP message? */
static bool conf_prop_in_flight(struct sim *s)
{
    for (size_t i = 0; i < s->net.n; i++)
        if (is_conf_prop(&s->net.heap[i]))
            return true;
    return false;
}

/* A node frozen soon after it forwarded a change may hold it yet (in its
 * core's output), and a frozen leader's inbox may hold a forwarded one: a
 * pause can outlast the window after a forwarded change. */
static bool conf_held_by_paused(struct sim *s)
{
    uint64_t w = SIM_CONF_FWD_WINDOW * sim_election_steps(s);
    for (unsigned id = 1; id <= s->p.n_nodes; id++) {
        const struct sim_node *n = &s->nodes[id];
        if (n->state != SIM_UP || !n->paused_until)
            continue;
        if (n->conf_fwd_step && n->paused_at < n->conf_fwd_step + w)
            return true;
        const struct sim_inbox *q = &s->net.inbox[id];
        for (size_t i = 0; i < q->n; i++)
            if (is_conf_prop(&q->p[i]))
                return true;
    }
    return false;
}

/* A wipe must never cost the cluster its quorum for good: a wiped voter's
 * old id is dead until it is removed. So: a leader that has committed in
 * its term (every future leader's configuration then descends from its
 * committed one), no change pending or on its way (one could remove a
 * voter that the budget counts on), and after the wipe a quorum of its
 * voters still alive or only down for a while. */
static bool budget_allows(struct sim *s, const struct sim_node *n)
{
    struct sim_node *l = sim_leader(s);
    if (!l || s->n_ids >= SIM_MAX_IDS || sim_n_down(s) >= s->p.max_down)
        return false;
    uint64_t commit = raft_commit_index(l->r);
    const struct raft_conf *conf = raft_conf(l->r);
    if (!commit || raft_term_at(l->r, commit) != l->term ||
        !sim_conf_equal(conf, raft_conf_at(l->r, commit)))
        return false;
    if (s->now < s->conf_fwd_step +
                     SIM_CONF_FWD_WINDOW * sim_election_steps(s) ||
        conf_prop_in_flight(s) || conf_held_by_paused(s))
        return false;
    unsigned dead = dead_voters(s, conf) +
                    (raft_conf_is_voter(conf, n->rid) ? 1 : 0);
    return conf->n_voters - dead >= conf->n_voters / 2 + 1;
}

/* ---- wipes, damage, restarts ---- */

/* Lose the last synced entries, so that the log ends before the durable
 * commit index (storage finds such a log on recovery); false if the disk
 * holds no committed entry past its snapshot to lose. */
static bool lose_tail(struct sim *s, struct sim_disk *d)
{
    struct sim_log *l = &d->log;
    uint64_t floor = d->cur.meta.index > l->first - 1 ? d->cur.meta.index
                                                      : l->first - 1;
    if (!l->n || d->hs.commit <= floor || sim_log_last(l) < d->hs.commit)
        return false;
    sim_log_truncate_after(l, sim_rng_range(&s->rng, floor, d->hs.commit - 1));
    return true;
}

bool sim_wipe(struct sim *s, struct sim_node *n, bool damaged,
              uint64_t restart_after)
{
    if (n->state != SIM_UP || n->disk_fault != SIM_DISK_OK ||
        s->retiring[n->id] || s->removed[n->id] || n->stop_at ||
        !budget_allows(s, n))
        return false;
    const struct raft_conf *conf = raft_conf(sim_leader(s)->r);
    n->rejoin = raft_conf_is_voter(conf, n->rid)     ? 2
                : raft_conf_is_learner(conf, n->rid) ? 1
                                                     : 0;
    s->st.wipes++;
    sim_ev(s, EV_IDENT, damaged ? 2 : 1, n->id, 0, n->rejoin, 0, 0, 0, NULL);
    sim_crash_for(s, n, restart_after);
    n->disk_fault = damaged ? SIM_DISK_DAMAGED : SIM_DISK_WIPED;
    n->rejoin_at = 0;
    return true;
}

/* The damaged disk at restart: a log that ends before its durable commit
 * must make the core refuse (raft_new: CRAFT_ECORRUPT); other damage
 * (a zeroed segment) is storage's to detect, modelled as detected. */
static void refuse(struct sim *s, struct sim_node *n)
{
    struct sim_disk *d = &n->disk;
    bool short_log = lose_tail(s, d);
    uint64_t last = d->log.n ? sim_log_last(&d->log) : d->cur.meta.index;
    int rc = CRAFT_ECORRUPT;
    if (short_log) {
        struct raft_entry *ents = craft_calloc(d->log.n + 1, sizeof(*ents));
        if (!ents) {
            sim_fail(s, "sim", "out of memory");
            return;
        }
        for (size_t i = 0; i < d->log.n; i++) {
            const struct sim_ent *e = &d->log.e[i];
            ents[i] = (struct raft_entry){.index = e->index, .term = e->term,
                                          .type = e->type, .len = e->len,
                                          .data = e->data};
        }
        struct raft_persisted p = {.hs = d->hs, .snap = d->cur.meta,
                                   .entries = ents, .n_entries = d->log.n};
        struct raft_config cfg = {.id = n->rid, .seed = 1,
                                  .election_ticks = SIM_ELECTION_TICKS,
                                  .heartbeat_ticks = 1};
        struct raft *r = NULL;
        rc = raft_new(&cfg, &p, &r);
        craft_free(ents);
        if (rc == 0) {
            raft_free(r);
            sim_fail(s, "restart", "n%u raft_new accepts a log that ends at %"
                     PRIu64 ", before its durable commit %" PRIu64
                     " (acknowledged entries are lost)", (unsigned)n->id, last,
                     d->hs.commit);
            return;
        }
    }
    s->st.refusals++;
    uint64_t e = sim_election_steps(s);
    n->disk_fault = SIM_DISK_WIPED; /* the operator's repair, later */
    n->restart_at = s->now + sim_rng_range(&s->rng, 2 * e, 6 * e);
    sim_ev(s, EV_IDENT, short_log ? 3 : 4, n->id, 0, last, d->hs.commit,
           (uint64_t)(int64_t)rc, n->restart_at, NULL);
}

bool sim_ident_restart(struct sim *s, struct sim_node *n)
{
    switch (n->disk_fault) {
    case SIM_DISK_DAMAGED:
        refuse(s, n);
        return true;
    case SIM_DISK_WIPED:
        sim_disk_free(&n->disk);
        memset(&n->disk, 0, sizeof(n->disk));
        n->disk.log.first = 1;
        n->gen++;
        draw_id(s, n);
        n->disk_fault = SIM_DISK_OK;
        /* The join request goes out once the node is up. */
        n->rejoin_at = s->now + sim_rng_range(&s->rng, 1, s->p.spt * 3);
        sim_ev(s, EV_IDENT, 5, n->id, 0, sim_tag(s, n->rid), n->inc, n->rid,
               n->rejoin, NULL);
        return false;
    default:
        return false;
    }
}

/* ---- the daemon's join: re-add a new incarnation ---- */

/* An earlier incarnation of n that conf still holds, or 0. */
static uint64_t old_member(const struct sim *s, const struct sim_node *n,
                           const struct raft_conf *conf)
{
    for (unsigned i = 0; i < s->n_ids; i++) {
        const struct sim_idrec *r = &s->ids[i];
        if (r->slot == n->id && r->rid != n->rid && sim_conf_has(conf, r->rid))
            return r->rid;
    }
    return 0;
}

/* One attempt of the join of n, a later incarnation, at the leader: remove
 * the old id, add the new one as a learner, promote it once it has answered
 * and its match is close to the commit index. The core refuses while another change is
 * pending; the join retries. */
static void rejoin(struct sim *s, struct sim_node *n)
{
    struct sim_node *l = sim_leader(s);
    if (!l)
        return;
    uint64_t e = sim_election_steps(s);
    n->rejoin_at = s->now + sim_rng_range(&s->rng, s->p.spt, e);
    const struct raft_conf *conf = raft_conf(l->r);
    uint64_t old = old_member(s, n, conf);
    if (old) {
        (void)sim_conf_propose(s, l, RAFT_CONF_REMOVE, old);
        return;
    }
    if (!n->rejoin)
        return;
    if (s->retiring[n->id]) {
        n->rejoin = 0; /* the operator removed it meanwhile */
        return;
    }
    if (!sim_conf_has(conf, n->rid)) {
        (void)sim_conf_propose(s, l, RAFT_CONF_ADD_LEARNER, n->rid);
        return;
    }
    if (n->rejoin == 2 && raft_conf_is_learner(conf, n->rid)) {
        if (raft_caught_up(l->r, n->rid, 8))
            (void)sim_conf_propose(s, l, RAFT_CONF_PROMOTE, n->rid);
        else
            n->rejoin_at = s->now + s->p.spt;
        return;
    }
    if (raft_conf_is_voter(conf, n->rid) || n->rejoin == 1) {
        n->rejoin = 0;
        s->st.rejoins++;
        sim_ev(s, EV_IDENT, 6, n->id, 0, sim_tag(s, n->rid), 0, 0, 0, NULL);
    }
}

static struct sim_node *pick_victim(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    if (l && sim_rng_below(&s->rng, 3) == 0)
        return l;
    struct sim_node *up[SIM_MAX_NODES];
    unsigned k = 0;
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        if (s->nodes[id].state == SIM_UP)
            up[k++] = &s->nodes[id];
    return k ? up[sim_rng_below(&s->rng, k)] : NULL;
}

void sim_ident_step(struct sim *s)
{
    for (unsigned id = 1; id <= s->p.n_nodes && !s->failed; id++) {
        struct sim_node *n = &s->nodes[id];
        if (n->state == SIM_UP && n->gen > 1 && s->now >= n->rejoin_at)
            rejoin(s, n);
    }
    if (s->final_phase || s->failed || !sim_rng_ppm(&s->rng, s->p.wipe_ppm))
        return;
    struct sim_node *v = pick_victim(s);
    bool damaged = sim_rng_below(&s->rng, 100) < s->p.damage_pct;
    uint64_t e = sim_election_steps(s);
    if (v)
        (void)sim_wipe(s, v, damaged, sim_rng_range(&s->rng, 1, 3 * e));
}

/* ---- the wipe scenario ---- */

void sim_wipe_params(struct sim *s)
{
    struct sim_params *p = &s->p;
    struct sim_rng *g = &s->rng;
    p->profile = "wipe";
    p->n_founders = p->n_nodes = sim_rng_below(g, 3) ? 3u : 5u;
    p->steps = (unsigned)sim_rng_range(g, 1000, 2000);
    p->n_clients = (unsigned)sim_rng_range(g, 3, SIM_MAX_CLIENTS - 1);
    p->client_ppm = (uint32_t)sim_rng_range(g, 300000, 700000);
    p->drop_ppm = (uint32_t)sim_rng_range(g, 0, 10000);
    p->dup_ppm = (uint32_t)sim_rng_range(g, 0, 10000);
    p->lat_min = 1;
    p->lat_max = (unsigned)sim_rng_range(g, 1, 2 * p->spt);
    p->crash_ppm = 0;
    p->part_ppm = 0;
    p->conf_ppm = 0; /* the joins are the only membership changes */
    p->transfer_ppm = 0;
    p->max_down = p->n_nodes - 1;
    p->wipe_ppm = 0;
    p->damage_pct = 20;
    p->churn_ppm = (uint32_t)sim_rng_range(g, 20000, 100000);
}

/* Over and over: cut off the followers the wiped nodes must not need
 * (commits then live on the leader and the victims only), let commits
 * pile up, wipe the victims (one of 3 nodes, two of 5: the budget allows
 * exactly that), crash the leader and heal. A cluster that lets a wiped
 * voter vote under its old id elects a laggard lacking the commits. */
void sim_wipe_step(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    uint64_t e = sim_election_steps(s);
    unsigned nv = s->p.n_nodes == 3 ? 1 : 2; /* victims */
    switch (s->sc.phase) {
    case 0: {
        if (!l || s->now < s->sc.at || sim_ident_busy(s) ||
            !sim_rng_ppm(&s->rng, s->p.churn_ppm))
            return;
        /* laggards: all followers but nv of them */
        uint64_t cut = 0;
        unsigned k = 0, others[SIM_MAX_NODES];
        for (unsigned id = 1; id <= s->p.n_nodes; id++)
            if (id != l->id)
                others[k++] = id;
        for (unsigned i = 0; i < k - nv; i++) {
            unsigned j = i + (unsigned)sim_rng_below(&s->rng, k - i);
            unsigned t = others[i];
            others[i] = others[j];
            others[j] = t;
            cut |= 1ull << others[i];
        }
        sim_partition_set(s, cut, s->now + 20 * e, "wipe: cut laggards");
        s->sc.leader = l->id;
        s->sc.term = l->term;
        s->sc.at = s->now + sim_rng_range(&s->rng, e, 3 * e);
        s->sc.phase = 1;
        break;
    }
    case 1: {
        if (s->now < s->sc.at)
            return;
        struct sim_node *a = &s->nodes[s->sc.leader];
        bool done = false;
        if (l == a && a->term == s->sc.term) {
            for (unsigned id = 1; id <= s->p.n_nodes && !s->failed; id++) {
                struct sim_node *v = &s->nodes[id];
                if (id == a->id || s->net.blocked[a->id][id])
                    continue;
                bool damaged = sim_rng_below(&s->rng, 100) < s->p.damage_pct;
                done |= sim_wipe(s, v, damaged, sim_rng_range(&s->rng, 1, e));
            }
        }
        if (done && !s->failed && a->state == SIM_UP)
            sim_crash_for(s, a, sim_rng_range(&s->rng, 2 * e, 4 * e));
        sim_partition_set(s, 0, s->now, "wipe: heal");
        s->sc.at = s->now + sim_rng_range(&s->rng, 8 * e, 15 * e);
        s->sc.phase = 2;
        break;
    }
    default:
        if (s->now >= s->sc.at && !sim_ident_busy(s)) {
            s->sc.phase = 0;
            s->sc.at = s->now + sim_rng_range(&s->rng, e, 4 * e);
        }
        break;
    }
}
