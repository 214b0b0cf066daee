/* Simulated clients, one operation at a time each, and the history they
 * record for the linearizability check: writes through raft_propose, reads
 * through raft_read_index (served once applied) or the leader's lease. A
 * lease read sent to a paused leader waits there, as a request waits in a
 * frozen process's socket, and is judged when the node wakes. Operations on
 * src/kv's keys (CAS, txn, listing) are built and judged in txn.c. */
#include "sim/sim.h"

#include <inttypes.h>
#include <string.h>

#include "common/alloc.h"

struct sim_op *sim_hist_add(struct sim *s)
{
    struct sim_hist *h = &s->hist;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        struct sim_op *o = craft_realloc(h->ops, cap * sizeof(*o));
        if (!o) {
            sim_fail(s, "sim", "out of memory");
            return NULL;
        }
        h->ops = o;
        h->cap = cap;
    }
    struct sim_op *op = &h->ops[h->n++];
    memset(op, 0, sizeof(*op));
    return op;
}

void sim_hist_free(struct sim_hist *h)
{
    craft_free(h->ops);
    memset(h, 0, sizeof(*h));
}

bool sim_clients_idle(const struct sim *s)
{
    for (unsigned i = 0; i < SIM_MAX_CLIENTS; i++)
        if (s->clients[i].op >= 0)
            return false;
    return true;
}

static void finish(struct sim *s, struct sim_client *c, int outcome)
{
    struct sim_op *op = &s->hist.ops[c->op];
    op->outcome = (uint8_t)outcome;
    op->stage = SIM_ST_DONE;
    op->complete = ++s->clock;
    if (c->cas_reading) {
        c->cas_reading = false;
        c->cas_next = op->kind == SIM_OP_GET && outcome == SIM_OK;
        c->cas_expect = op->mod;
    }
    if (op->kind == SIM_OP_CAS && outcome == SIM_OK)
        s->st.cas_ok++;
    if (op->kind == SIM_OP_CAS && outcome == SIM_FAIL && op->refused)
        s->st.cas_refused++;
    if (sim_op_is_read(op->kind))
        s->st.reads_ok++;
    else if (outcome == SIM_OK)
        s->st.ops_ok++;
    else if (outcome == SIM_FAIL)
        s->st.ops_fail++;
    else
        s->st.ops_unknown++;
    if (c == &s->clients[s->final_client] && outcome == SIM_OK)
        s->final_done = true;
    sim_ev(s, EV_DONE, outcome, op->node, c->id, (uint64_t)c->op + 1,
           op->index, op->term, 0,
           !sim_op_is_read(op->kind) ? op->value
           : op->has_value            ? op->value
                                      : "(absent)");
    c->op = -1;
}

static void drop(struct sim *s, struct sim_client *c)
{
    struct sim_op *op = &s->hist.ops[c->op];
    op->stage = SIM_ST_DROPPED;
    s->st.reads_dropped++;
    c->cas_reading = false;
    sim_ev(s, EV_DONE, SIM_FAIL, op->node, c->id, (uint64_t)c->op + 1,
           op->index, 0, 0, "read dropped");
    c->op = -1;
}

/* The op timed out or its node crashed: a write's outcome is unknown, a read
 * observed nothing. */
static void abandon(struct sim *s, struct sim_client *c)
{
    if (sim_op_is_read(s->hist.ops[c->op].kind))
        drop(s, c);
    else
        finish(s, c, SIM_UNKNOWN);
}

static void read_value(struct sim *s, const struct sim_node *n,
                       struct sim_op *op)
{
    if (op->key >= SIM_TKEY) {
        sim_txn_read(s, n, op);
        return;
    }
    op->has_value = n->kv.present[op->key];
    strcpy(op->value, op->has_value ? n->kv.val[op->key] : "");
}

int64_t sim_client_invoke(struct sim *s, struct sim_client *c, int kind,
                          unsigned key, struct sim_node *n, bool lease)
{
    struct sim_op *op = sim_hist_add(s);
    if (!op)
        return -1;
    int64_t idx = (int64_t)(s->hist.n - 1);
    uint64_t id = (uint64_t)idx + 1;
    op->client = c->id;
    op->key = (uint8_t)key;
    op->kind = (uint8_t)kind;
    op->lease = lease;
    op->invoke = ++s->clock;
    op->node = n->id;
    op->incarnation = n->incarnation;
    op->deadline = s->now + (s->p.op_timeout ? s->p.op_timeout
                                             : sim_rng_range(&s->rng, 2, 4)) *
                                sim_election_steps(s);
    c->op = idx;
    if (!sim_op_is_read(kind))
        snprintf(op->value, sizeof(op->value), "c%" PRIu64 "-%u", c->id,
                 ++c->seq);
    if (kind == SIM_OP_CAS)
        op->expect = c->cas_expect;
    if (kind == SIM_OP_TXN)
        op->expect = n->kv.applied; /* for its compares on indexes */
    sim_ev(s, EV_INVOKE, kind, n->id, c->id, id, key, lease, 0,
           sim_op_is_read(kind) ? "" : op->value);
    if (lease && n->paused_until) {
        /* Its client waits long: the answer is what this is about. */
        op->stage = SIM_ST_LEASE_WAIT;
        op->deadline = s->now + 8 * sim_election_steps(s);
        return idx;
    }
    if (lease) {
        s->st.lease_reads++;
        read_value(s, n, op);
        op->index = n->kv.applied;
        finish(s, c, SIM_OK);
        return idx;
    }
    int rc;
    if (sim_op_is_read(kind)) {
        op->stage = SIM_ST_READ_ASKED;
        rc = raft_read_index(n->r, id);
    } else {
        uint8_t cmd[256];
        size_t len = kind == SIM_OP_CAS || kind == SIM_OP_TXN
                         ? sim_txn_encode(s, op, cmd, sizeof(cmd))
                         : sim_kv_encode(cmd, kind == SIM_OP_PUT ? SIM_CMD_PUT
                                                                 : SIM_CMD_DEL,
                                         key, op->value);
        if (len == 0) {
            sim_fail(s, "sim", "a txn does not fit its buffer");
            return -1;
        }
        op->fp = sim_entry_fp(RAFT_ENTRY_NORMAL, cmd, len);
        op->stage = SIM_ST_PROPOSED;
        rc = raft_propose(n->r, id, cmd, len);
    }
    sim_node_observe(s, n);
    if (rc) {
        sim_ev(s, sim_op_is_read(kind) ? EV_READ : EV_PROP, 0, n->id, 0, id,
               0, 0, (uint64_t)(int64_t)rc, "(at once)");
        if (sim_op_is_read(kind))
            drop(s, c);
        else
            finish(s, c, SIM_FAIL);
    }
    return idx;
}

/* The client whose current op has this id on this node, in this stage. */
static struct sim_client *waiting(struct sim *s, const struct sim_node *n,
                                  uint64_t id, int stage)
{
    if (id == 0 || id > s->hist.n)
        return NULL;
    const struct sim_op *op = &s->hist.ops[id - 1];
    if (op->stage != stage || op->node != n->id ||
        op->incarnation != n->incarnation)
        return NULL;
    for (unsigned i = 0; i < SIM_MAX_CLIENTS; i++)
        if (s->clients[i].op == (int64_t)(id - 1))
            return &s->clients[i];
    return NULL;
}

/* The write's entry was applied somewhere: ok iff the same term is there.
 * A CAS learnt from a snapshot applied, but whether its compare held is not
 * known: unknown. */
static void resolve(struct sim *s, struct sim_client *c)
{
    const struct sim_op *op = &s->hist.ops[c->op];
    const struct sim_applied *ap = sim_applied_at(s, op->index);
    if (ap && ap->term == op->term && op->kind == SIM_OP_CAS)
        finish(s, c, SIM_UNKNOWN);
    else if (ap)
        finish(s, c, ap->term == op->term ? SIM_OK : SIM_FAIL);
}

void sim_client_on_prop(struct sim *s, struct sim_node *n,
                        const struct raft_prop_result *pr)
{
    sim_ev(s, EV_PROP, 0, n->id, 0, pr->id, pr->index, pr->term,
           (uint64_t)(int64_t)pr->err, NULL);
    struct sim_client *c = waiting(s, n, pr->id, SIM_ST_PROPOSED);
    if (!c)
        return;
    struct sim_op *op = &s->hist.ops[c->op];
    if (pr->err) {
        finish(s, c, SIM_FAIL);
        return;
    }
    op->index = pr->index;
    op->term = pr->term;
    op->stage = SIM_ST_APPENDED;
    if (n->kv.applied >= pr->index)
        resolve(s, c);
}

void sim_client_on_read(struct sim *s, struct sim_node *n,
                        const struct raft_read_result *rr)
{
    sim_ev(s, EV_READ, 0, n->id, 0, rr->id, rr->index, 0,
           (uint64_t)(int64_t)rr->err, NULL);
    struct sim_client *c = waiting(s, n, rr->id, SIM_ST_READ_ASKED);
    if (!c)
        return;
    if (rr->err) {
        drop(s, c);
        return;
    }
    struct sim_op *op = &s->hist.ops[c->op];
    op->index = rr->index;
    op->stage = SIM_ST_READ_WAIT;
}

static struct sim_op *op_on(struct sim *s, struct sim_client *c,
                            const struct sim_node *n, int stage)
{
    if (c->op < 0)
        return NULL;
    struct sim_op *op = &s->hist.ops[c->op];
    if (op->node != n->id || op->stage != stage)
        return NULL;
    return op;
}

void sim_client_on_apply(struct sim *s, struct sim_node *n, uint64_t index,
                         uint64_t term)
{
    for (unsigned i = 0; i < SIM_MAX_CLIENTS; i++) {
        struct sim_client *c = &s->clients[i];
        struct sim_op *op = op_on(s, c, n, SIM_ST_APPENDED);
        if (!op || op->index != index)
            continue;
        if (op->term == term)
            sim_txn_result(n, op);
        /* a refused CAS applied, and definitely did not write */
        finish(s, c, op->term == term && !op->refused ? SIM_OK : SIM_FAIL);
    }
}

void sim_client_on_restore(struct sim *s, struct sim_node *n)
{
    for (unsigned i = 0; i < SIM_MAX_CLIENTS; i++) {
        struct sim_client *c = &s->clients[i];
        struct sim_op *op = op_on(s, c, n, SIM_ST_APPENDED);
        if (op && op->index <= n->kv.applied)
            resolve(s, c);
    }
}

void sim_client_serve_reads(struct sim *s, struct sim_node *n)
{
    for (unsigned i = 0; i < SIM_MAX_CLIENTS; i++) {
        struct sim_client *c = &s->clients[i];
        struct sim_op *op = op_on(s, c, n, SIM_ST_READ_WAIT);
        if (op && n->kv.applied >= op->index) {
            read_value(s, n, op);
            finish(s, c, SIM_OK);
        }
    }
}

void sim_client_on_crash(struct sim *s, struct sim_node *n)
{
    for (unsigned i = 0; i < SIM_MAX_CLIENTS; i++) {
        struct sim_client *c = &s->clients[i];
        if (c->op >= 0 && s->hist.ops[c->op].node == n->id)
            abandon(s, c);
    }
}

static struct sim_node *random_up(struct sim *s)
{
    struct sim_node *up[SIM_MAX_NODES];
    unsigned n = 0;
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        if (sim_node_live(&s->nodes[id]))
            up[n++] = &s->nodes[id];
    return n ? up[sim_rng_below(&s->rng, n)] : NULL;
}

/* A lease read is served at once, and only when it is safe: the lease
 * holds at the node's clock as read now (ticks delivered or owed), the
 * leader has committed in its term and applied all it knows is committed.
 * Otherwise the client does not issue it. */
static bool lease_ok(const struct sim_node *l)
{
    uint64_t commit = raft_commit_index(l->r);
    return raft_lease_valid(l->r, sim_node_clock(l)) && !l->busy &&
           l->kv.applied >= commit && raft_term_at(l->r, commit) == l->term;
}

void sim_client_serve_queued(struct sim *s, struct sim_node *n)
{
    for (unsigned i = 0; i < SIM_MAX_CLIENTS && !s->failed; i++) {
        struct sim_client *c = &s->clients[i];
        if (c->op < 0)
            continue;
        struct sim_op *op = &s->hist.ops[c->op];
        if (op->stage != SIM_ST_LEASE_WAIT || op->node != n->id)
            continue;
        if (n->state == SIM_UP && n->role == RAFT_LEADER && lease_ok(n)) {
            s->st.lease_reads++;
            read_value(s, n, op);
            op->index = n->kv.applied;
            finish(s, c, SIM_OK);
        } else {
            drop(s, c); /* craftd would fall back to a read index */
        }
    }
}

/* A node that believes it leads, preferably not the newest leader: after a
 * partition or a pause, a deposed leader may not know it yet (and must not
 * serve). A paused one is asked too: the request waits for it. */
static struct sim_node *any_leader(struct sim *s)
{
    struct sim_node *newest = sim_leader(s), *l[SIM_MAX_NODES];
    unsigned n = 0;
    for (unsigned id = 1; id <= s->p.n_nodes; id++)
        if (s->nodes[id].state == SIM_UP && s->nodes[id].role == RAFT_LEADER &&
            &s->nodes[id] != newest)
            l[n++] = &s->nodes[id];
    return n ? l[sim_rng_below(&s->rng, n)] : newest;
}

static void issue(struct sim *s, struct sim_client *c)
{
    struct sim_node *leader = sim_leader(s);
    struct sim_node *n = leader && sim_rng_below(&s->rng, 10) < 7
                             ? leader
                             : random_up(s);
    if (!n)
        return;
    unsigned key = (unsigned)sim_rng_below(&s->rng, s->p.n_keys);
    unsigned r = (unsigned)sim_rng_below(&s->rng, 100);
    /* While a scenario shuns a cut-off leader, writes and read-index reads
     * go to a newer leader or wait: a client stuck there would miss the
     * moment the scenario is about. */
    bool waits = s->sc.shun && (n != leader || n->id == s->sc.shun);
    if (s->p.txn_pct && sim_rng_below(&s->rng, 100) < s->p.txn_pct) {
        if (!waits && sim_node_live(n))
            sim_txn_issue(s, c, n);
        return;
    }
    if (r < 50) {
        if (!waits)
            sim_client_invoke(s, c, r < 40 ? SIM_OP_PUT : SIM_OP_DELETE, key,
                              n, false);
        return;
    }
    /* Reads: some go to whichever node believes it leads. */
    if (sim_rng_ppm(&s->rng, s->p.stale_ppm)) {
        struct sim_node *a = any_leader(s);
        n = a ? a : n;
        leader = a ? a : leader;
    }
    if (r < 100 - s->p.lease_pct / 2 || !s->p.lease_reads) {
        if (sim_node_live(n) && !(s->sc.shun && (n != sim_leader(s) ||
                                                   n->id == s->sc.shun)))
            sim_client_invoke(s, c, SIM_OP_GET, key, n, false);
    } else if (leader && (leader->paused_until || lease_ok(leader))) {
        sim_client_invoke(s, c, SIM_OP_GET, key, leader, true);
    }
}

void sim_clients_step(struct sim *s)
{
    for (unsigned i = 0; i < SIM_MAX_CLIENTS && !s->failed; i++) {
        struct sim_client *c = &s->clients[i];
        if (c->op >= 0) {
            if (s->now >= s->hist.ops[c->op].deadline)
                abandon(s, c);
            continue;
        }
        if (c->cas_next && !s->final_phase && i != s->final_client) {
            struct sim_node *l = sim_leader(s);
            c->cas_next = false;
            if (l && !(s->sc.shun && l->id == s->sc.shun))
                sim_txn_cas(s, c, l);
        } else if (i == s->final_client) {
            struct sim_node *l = sim_leader(s);
            if (s->final_phase && !s->final_done && l)
                sim_client_invoke(s, c, SIM_OP_PUT, 0, l, false);
        } else if (i < s->p.n_clients && !s->final_phase &&
                   sim_rng_ppm(&s->rng, s->sc.client_ppm ? s->sc.client_ppm
                                                         : s->p.client_ppm)) {
            issue(s, c);
        }
    }
}
