/* Forged messages: now and then a running node is handed a message that no
 * real core sent, as an unauthenticated peer (or a corrupted frame that
 * still decodes) could make it. Three kinds, each one the core must refuse
 * (raft_step returns an error, nothing changes):
 *   - a term beyond RAFT_TERM_MAX, in any message that carries a term;
 *   - indexes that wrap or that no log reaches: an append whose entries
 *     wrap around 2^64, commits, matches and snapshot ranges past the bound;
 *   - a leader's message (APP, HEARTBEAT, TIMEOUT_NOW) of the node's own
 *     term from another member than the leader the node knows for it.
 * A forged message the core takes fails the seed ("forgery"); so does a
 * real message it refuses ("message-checks", net.c). The forgeries draw
 * from their own random stream, so a seed's other faults are the same with
 * or without them. */
#include "sim/sim.h"

#include <inttypes.h>

/* A member id other than the node's own and than avoid (RAFT_NONE if the
 * run has no such node). */
static uint64_t other_rid(struct sim *s, const struct sim_node *n,
                          uint64_t avoid)
{
    unsigned k = (unsigned)sim_rng_below(&s->forge_rng, s->p.n_nodes);
    for (unsigned i = 0; i < s->p.n_nodes; i++) {
        const struct sim_node *o = &s->nodes[(k + i) % s->p.n_nodes + 1];
        if (o->rid != RAFT_NONE && o->rid != n->rid && o->rid != avoid)
            return o->rid;
    }
    return RAFT_NONE;
}

static const uint8_t termed[] = {
    RAFT_MSG_APP, RAFT_MSG_APP_RESP, RAFT_MSG_VOTE, RAFT_MSG_VOTE_RESP,
    RAFT_MSG_PRE_VOTE, RAFT_MSG_PRE_VOTE_RESP, RAFT_MSG_HEARTBEAT,
    RAFT_MSG_HEARTBEAT_RESP, RAFT_MSG_SNAP, RAFT_MSG_SNAP_RESP,
    RAFT_MSG_TIMEOUT_NOW,
};

/* Fill *m with a forgery for n; false if none fits (e.g. no other node). */
static bool forge(struct sim *s, struct sim_node *n, struct raft_msg *m,
                  struct raft_entry *e, const char **kind)
{
    struct sim_rng *g = &s->forge_rng;
    struct raft_soft_state ss = raft_soft(n->r);
    uint64_t last = raft_last_index(n->r);
    *m = (struct raft_msg){.to = n->rid, .term = ss.term};
    *e = (struct raft_entry){.term = ss.term, .type = RAFT_ENTRY_NOOP};
    switch (sim_rng_below(g, 3)) {
    case 0:
        *kind = "term > bound";
        m->type = termed[sim_rng_below(g, sizeof termed)];
        m->from = other_rid(s, n, RAFT_NONE);
        m->term = sim_rng_below(g, 2) ? UINT64_MAX - sim_rng_below(g, 3)
                                      : sim_rng_range(g, RAFT_TERM_MAX + 1,
                                                      UINT64_MAX);
        m->index = last;
        m->log_term = raft_term_at(n->r, last);
        return m->from != RAFT_NONE;
    case 1:
        *kind = "index wraps";
        m->from = ss.leader != RAFT_NONE && ss.leader != n->rid
                      ? ss.leader : other_rid(s, n, RAFT_NONE);
        switch (sim_rng_below(g, 4)) {
        case 0: /* entries that "continue" an index near 2^64 */
            m->type = RAFT_MSG_APP;
            m->index = UINT64_MAX - sim_rng_below(g, 2);
            m->log_term = ss.term;
            m->n_entries = 1;
            m->entries = e;
            e->index = m->index + 1; /* wraps */
            break;
        case 1:
            m->type = sim_rng_below(g, 2) ? RAFT_MSG_APP : RAFT_MSG_HEARTBEAT;
            m->index = m->type == RAFT_MSG_APP ? last : 0;
            m->log_term = m->type == RAFT_MSG_APP ? raft_term_at(n->r, last)
                                                  : 0;
            m->commit = sim_rng_range(g, RAFT_INDEX_MAX + 1, UINT64_MAX);
            break;
        case 2:
            m->type = RAFT_MSG_APP_RESP;
            m->index = sim_rng_range(g, RAFT_INDEX_MAX + 1, UINT64_MAX);
            break;
        default:
            m->type = RAFT_MSG_SNAP;
            m->snap.meta.index = last + 1;
            m->snap.meta.term = ss.term;
            m->snap.meta.size = 64;
            m->snap.offset = UINT64_MAX - sim_rng_below(g, 8);
            m->snap.len = 16; /* offset + len wraps */
            break;
        }
        return m->from != RAFT_NONE;
    default:
        *kind = "not the leader";
        if (ss.leader == RAFT_NONE)
            return false; /* nothing to tell a forger from the leader by */
        m->from = other_rid(s, n, ss.leader);
        static const uint8_t types[] = {RAFT_MSG_APP, RAFT_MSG_APP,
                                        RAFT_MSG_HEARTBEAT,
                                        RAFT_MSG_TIMEOUT_NOW};
        m->type = types[sim_rng_below(g, sizeof types)];
        if (m->type == RAFT_MSG_APP) {
            /* An append at the next index, as attack on a follower that
             * keeps it when the real entry of that (index, term) comes. */
            m->index = last;
            m->log_term = raft_term_at(n->r, last);
            m->commit = last + 1;
            m->n_entries = 1;
            m->entries = e;
            e->index = last + 1;
            e->len = 8;
            e->data = (const uint8_t *)"forged!";
        } else {
            m->commit = last;
        }
        return m->from != RAFT_NONE;
    }
}

void sim_forge_step(struct sim *s)
{
    if (s->final_phase || !sim_rng_ppm(&s->forge_rng, s->p.forge_ppm))
        return;
    struct sim_node *n =
        &s->nodes[sim_rng_below(&s->forge_rng, s->p.n_nodes) + 1];
    if (n->state != SIM_UP || n->paused_until || n->r == NULL)
        return;
    struct raft_msg m;
    struct raft_entry e;
    const char *kind;
    if (!forge(s, n, &m, &e, &kind))
        return;
    s->st.forged++;
    s->chk.in_msg = &m;
    int rc = raft_step(n->r, &m);
    sim_ev(s, EV_FORGE, m.type, n->id, sim_slot_of(s, m.from), m.term,
           m.index, m.commit, (uint64_t)(int64_t)rc, kind);
    if (rc == 0)
        sim_fail(s, "forgery", "n%" PRIu64 " takes a forged %s (%s) claiming"
                 " to be from %#" PRIx64 ": term %" PRIu64 " index %" PRIu64
                 " commit %" PRIu64, n->id, raft_msg_type_name(m.type), kind,
                 m.from, m.term, m.index, m.commit);
    sim_node_observe(s, n);
    s->chk.in_msg = NULL;
}
