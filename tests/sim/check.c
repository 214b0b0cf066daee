/* The invariant checkers. Each takes plain data (entries, terms, a log view,
 * a configuration) rather than a live cluster, so the selftest can feed them
 * fabricated violations; they record the first violation with sim_fail().
 * sim_check_observe and sim_check_delivered feed them from live nodes. */
#include "sim/sim.h"

#include <inttypes.h>
#include <string.h>

#include "common/alloc.h"

/* (index, term) -> what was persisted under it, by the first node seen. */
struct sim_itkey {
    uint64_t index, term;
    uint64_t fp;
    uint64_t prev_term; /* 0: unknown */
    uint64_t node;
};

uint64_t sim_entry_fp(uint8_t type, const void *data, size_t len)
{
    uint64_t h = sim_fnv(SIM_FNV_INIT, &type, 1);
    uint32_t l = (uint32_t)len;
    h = sim_fnv(h, &l, sizeof(l));
    return sim_fnv(h, data, len);
}

void sim_check_free(struct sim_check *c)
{
    craft_free(c->applied);
    craft_free(c->leader_of);
    craft_free(c->it);
    craft_free(c->campaigned);
    memset(c, 0, sizeof(*c));
}

/* Grow a zeroed array of elem-sized items so that index `need` fits. */
static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need < *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n <= need)
        n *= 2;
    void *p = craft_realloc(*arr, n * elem);
    if (!p)
        return CRAFT_ENOMEM;
    memset((char *)p + *cap * elem, 0, (n - *cap) * elem);
    *arr = p;
    *cap = n;
    return 0;
}

void sim_check_leader(struct sim *s, uint64_t node, uint64_t term)
{
    struct sim_check *c = &s->chk;
    if (grow((void **)&c->leader_of, &c->cap_terms, term, sizeof(uint64_t))) {
        sim_fail(s, "sim", "out of memory");
        return;
    }
    if (term > c->max_leader_term)
        c->max_leader_term = term;
    if (c->leader_of[term] == 0) {
        c->leader_of[term] = node;
        c->elections++;
    } else if (c->leader_of[term] != node) {
        char a[16], b[16];
        sim_fail(s, "election-safety", "term %" PRIu64 " has two leaders: %s"
                 " and %s", term, sim_tag_str(c->leader_of[term], a, sizeof(a)),
                 sim_tag_str(node, b, sizeof(b)));
    }
}

static size_t it_slot(const struct sim_check *c, uint64_t index, uint64_t term)
{
    return (size_t)(sim_mix(index, term) & (c->it_cap - 1));
}

static struct sim_itkey *it_find(struct sim_check *c, uint64_t index,
                                 uint64_t term, bool insert)
{
    if (c->it_cap == 0 || (insert && (c->it_n + 1) * 2 > c->it_cap)) {
        size_t ncap = c->it_cap ? c->it_cap * 2 : 1024;
        struct sim_itkey *n = craft_calloc(ncap, sizeof(*n));
        if (!n)
            return NULL;
        for (size_t i = 0; i < c->it_cap; i++) {
            struct sim_itkey *o = &c->it[i];
            if (o->index == 0)
                continue;
            size_t j = (size_t)(sim_mix(o->index, o->term) & (ncap - 1));
            while (n[j].index)
                j = (j + 1) & (ncap - 1);
            n[j] = *o;
        }
        craft_free(c->it);
        c->it = n;
        c->it_cap = ncap;
    }
    size_t j = it_slot(c, index, term);
    while (c->it[j].index) {
        if (c->it[j].index == index && c->it[j].term == term)
            return &c->it[j];
        j = (j + 1) & (c->it_cap - 1);
    }
    if (!insert)
        return NULL;
    c->it_n++;
    c->it[j].index = index;
    c->it[j].term = term;
    return &c->it[j];
}

void sim_check_entries(struct sim *s, uint64_t node,
                       const struct raft_entry *e, size_t n,
                       uint64_t prev_term)
{
    for (size_t i = 0; i < n && !s->failed; i++) {
        uint64_t prev = i ? e[i - 1].term : prev_term;
        if (e[i].index == 0 || e[i].term == 0 ||
            (i && e[i].index != e[i - 1].index + 1) || prev > e[i].term) {
            sim_fail(s, "log-matching", "n%" PRIu64 " persists a malformed run:"
                     " entry %" PRIu64 " term %" PRIu64 " after term %" PRIu64,
                     node, e[i].index, e[i].term, prev);
            return;
        }
        uint64_t fp = sim_entry_fp(e[i].type, e[i].data, e[i].len);
        bool fresh = !it_find(&s->chk, e[i].index, e[i].term, false);
        struct sim_itkey *k = it_find(&s->chk, e[i].index, e[i].term, true);
        if (!k) {
            sim_fail(s, "sim", "out of memory");
            return;
        }
        if (fresh) {
            k->fp = fp;
            k->prev_term = prev;
            k->node = node;
            continue;
        }
        if (k->fp != fp)
            sim_fail(s, "log-matching", "entry %" PRIu64 " term %" PRIu64
                     " persisted by n%" PRIu64 " differs in content from the one"
                     " n%" PRIu64 " persisted", e[i].index, e[i].term, node,
                     k->node);
        else if (prev && k->prev_term && prev != k->prev_term)
            sim_fail(s, "log-matching", "entry %" PRIu64 " term %" PRIu64
                     " follows term %" PRIu64 " on n%" PRIu64 " but term %"
                     PRIu64 " on n%" PRIu64, e[i].index, e[i].term, prev, node,
                     k->prev_term, k->node);
        else if (!k->prev_term)
            k->prev_term = prev;
    }
}

void sim_check_pair(struct sim *s, uint64_t a, const struct sim_logview *va,
                    uint64_t b, const struct sim_logview *vb, unsigned window)
{
    uint64_t hi = va->last < vb->last ? va->last : vb->last;
    uint64_t lo = va->first > vb->first ? va->first : vb->first;
    if (lo == 0)
        lo = 1;
    if (hi < lo)
        return;
    if (hi - lo + 1 > window)
        lo = hi - window + 1;
    uint64_t m = hi + 1;
    for (uint64_t i = hi; i >= lo && m > hi; i--) {
        uint64_t t = va->term_at(va->ctx, i);
        if (t && t == vb->term_at(vb->ctx, i))
            m = i;
        if (i == lo)
            break;
    }
    if (m > hi)
        return;
    for (uint64_t j = lo; j < m; j++) {
        uint64_t ta = va->term_at(va->ctx, j), tb = vb->term_at(vb->ctx, j);
        if (ta && tb && ta != tb) {
            sim_fail(s, "log-matching", "n%" PRIu64 " and n%" PRIu64
                     " agree on entry %" PRIu64 " (term %" PRIu64 ") but differ"
                     " at %" PRIu64 " (terms %" PRIu64 " and %" PRIu64 ")", a, b,
                     m, va->term_at(va->ctx, m), j, ta, tb);
            return;
        }
    }
}

void sim_check_leader_complete(struct sim *s, uint64_t node, uint64_t term,
                               const struct sim_logview *v)
{
    const struct sim_check *c = &s->chk;
    /* seen_term grows with the index (a node applies in order): the
     * entries this leader must hold are a prefix. */
    uint64_t must = c->max_applied;
    while (must > 0 && (!c->applied[must].set ||
                        c->applied[must].seen_term >= term))
        must--;
    if (v->last < must) {
        sim_fail(s, "leader-completeness", "n%" PRIu64 " became leader of term"
                 " %" PRIu64 " with last index %" PRIu64 " but entry %" PRIu64
                 " is committed", node, term, v->last, must);
        return;
    }
    for (uint64_t i = v->first ? v->first : 1; i <= must; i++) {
        const struct sim_applied *ap = &c->applied[i];
        if (!ap->set)
            continue;
        uint64_t t = v->term_at(v->ctx, i);
        if (t != ap->term) {
            sim_fail(s, "leader-completeness", "n%" PRIu64 " became leader"
                     " with term %" PRIu64 " at index %" PRIu64 ", but the"
                     " committed entry there has term %" PRIu64, node, t, i,
                     ap->term);
            return;
        }
    }
}

const struct sim_applied *sim_applied_at(const struct sim *s, uint64_t index)
{
    const struct sim_check *c = &s->chk;
    if (index == 0 || index >= c->cap_applied || !c->applied[index].set)
        return NULL;
    return &c->applied[index];
}

void sim_check_apply(struct sim *s, uint64_t node, uint64_t expect,
                     const struct raft_entry *e)
{
    struct sim_check *c = &s->chk;
    if (e->index != expect) {
        sim_fail(s, "apply-order", "n%" PRIu64 " is handed entry %" PRIu64
                 " to apply, expected %" PRIu64, node, e->index, expect);
        return;
    }
    if (grow((void **)&c->applied, &c->cap_applied, e->index,
             sizeof(*c->applied))) {
        sim_fail(s, "sim", "out of memory");
        return;
    }
    uint64_t fp = sim_entry_fp(e->type, e->data, e->len);
    struct sim_applied *ap = &c->applied[e->index];
    if (ap->set) {
        if (ap->term != e->term || ap->type != e->type || ap->fp != fp)
            sim_fail(s, "state-machine-safety", "n%" PRIu64 " applies entry %"
                     PRIu64 " term %" PRIu64 " type %u, but another node applied"
                     " term %" PRIu64 " type %u (or other bytes) there", node,
                     e->index, e->term, e->type, ap->term, ap->type);
        return;
    }
    struct sim_itkey *k = it_find(c, e->index, e->term, false);
    if (!k || k->fp != fp) {
        sim_fail(s, "state-machine-safety", "n%" PRIu64 " applies entry %"
                 PRIu64 " term %" PRIu64 " that %s", node, e->index, e->term,
                 k ? "differs from what was persisted" : "no node persisted");
        return;
    }
    ap->set = true;
    ap->term = e->term;
    ap->seen_term = c->max_leader_term;
    ap->type = e->type;
    ap->fp = fp;
    if (e->index > c->max_applied)
        c->max_applied = e->index;
}

void sim_check_commit(struct sim *s, uint64_t node, uint64_t *last,
                      uint64_t commit)
{
    if (commit < *last)
        sim_fail(s, "commit-monotonic", "n%" PRIu64 " commit index went back"
                 " from %" PRIu64 " to %" PRIu64, node, *last, commit);
    *last = commit;
}

void sim_check_hs(struct sim *s, uint64_t node,
                  const struct raft_hard_state *prev,
                  const struct raft_hard_state *hs)
{
    if (hs->term < prev->term)
        sim_fail(s, "hard-state", "n%" PRIu64 " term went back from %" PRIu64
                 " to %" PRIu64, node, prev->term, hs->term);
    else if (hs->term == prev->term && prev->vote != RAFT_NONE &&
             hs->vote != prev->vote)
        sim_fail(s, "hard-state", "n%" PRIu64 " voted twice in term %" PRIu64
                 ": n%" PRIu64 " then n%" PRIu64, node, hs->term, prev->vote,
                 hs->vote);
}

void sim_check_durable_writes(struct sim *s)
{
    for (size_t i = 0; i < s->hist.n && !s->failed; i++) {
        const struct sim_op *op = &s->hist.ops[i];
        if (sim_op_is_read(op->kind) || op->outcome != SIM_OK)
            continue;
        const struct sim_applied *ap = sim_applied_at(s, op->index);
        if (!ap || ap->term != op->term || ap->fp != op->fp)
            sim_fail(s, "durability", "acknowledged write op#%zu (client %"
                     PRIu64 " %s) at index %" PRIu64 " term %" PRIu64 " is not"
                     " what was applied there (term %" PRIu64 ")", i + 1,
                     op->client, op->value, op->index, op->term,
                     ap ? ap->term : 0);
    }
}

static uint64_t raft_view_term(const void *ctx, uint64_t index)
{
    return raft_term_at(ctx, index);
}

void sim_logview_of(struct sim_logview *v, const struct raft *r)
{
    v->ctx = r;
    v->term_at = raft_view_term;
    v->first = raft_first_index(r);
    v->last = raft_last_index(r);
}

/* ---- availability: check-quorum ---- */

/* The core (raft.c, tick_leader) checks once per election timeout E of its
 * own ticks whether a quorum of voters (itself included, newcomers counted
 * as heard when added) sent it an APP_RESP, HEARTBEAT_RESP or SNAP_RESP of
 * its term since the previous check, and steps down once R checks in a row
 * (check_quorum_rounds) did not. A check at tick c passed means that
 * quorum was heard at ticks >= c - E; fewer than R checks came after the
 * last that passed: so a leader is never more than (R + 1)E without a
 * quorum heard. Only a transfer request restarts that timer (election.c,
 * raft__transfer), and a check judges the voters of its moment: for
 * (R + 1)E after a transfer request or a change of the voters, the monitor
 * does not judge. */
static struct sim_cq *cq_of(struct sim *s, unsigned slot)
{
    return slot <= SIM_MAX_NODES ? &s->chk.cq[slot] : NULL;
}

static long cq_find(const struct sim_cq *q, uint64_t id)
{
    for (unsigned i = 0; i < q->n; i++)
        if (q->heard[i].id == id)
            return (long)i;
    return -1;
}

static void cq_add(struct sim_cq *q, uint64_t id, uint64_t now)
{
    if (cq_find(q, id) < 0 && q->n < sizeof(q->heard) / sizeof(q->heard[0])) {
        q->heard[q->n].id = id;
        q->heard[q->n].tick = now;
        q->n++;
    }
}

void sim_check_quorum(struct sim *s, unsigned slot, bool leader,
                      uint64_t term, uint64_t self,
                      const struct raft_conf *conf, uint64_t now)
{
    struct sim_cq *q = cq_of(s, slot);
    if (!q)
        return;
    if (!leader) {
        q->term = 0;
        return;
    }
    /* Once per tick is enough: a member added or a voter set changed
     * since is then seen a little late, which only makes the judgement
     * more lenient. */
    if (q->term == term && q->last == now)
        return;
    q->last = now;
    uint64_t fp = 0;
    for (uint32_t i = 0; i < conf->n_voters; i++)
        fp += sim_mix(conf->voters[i], 1); /* independent of the order */
    if (q->term != term) {
        q->term = term;
        q->reset = now;
        q->n = 0;
    } else if (q->voters != fp) {
        q->reset = now;
    }
    q->voters = fp;
    /* Members leave the table with the configuration, and come back
     * fresh (the core counts a newcomer as heard). */
    unsigned k = 0;
    for (unsigned i = 0; i < q->n; i++)
        if (sim_conf_has(conf, q->heard[i].id))
            q->heard[k++] = q->heard[i];
    q->n = k;
    for (uint32_t i = 0; i < conf->n_voters; i++)
        cq_add(q, conf->voters[i], now);
    for (uint32_t i = 0; i < conf->n_learners; i++)
        cq_add(q, conf->learners[i], now);
    uint64_t w = (s->p.check_quorum_rounds + 1ull) * SIM_ELECTION_TICKS;
    if (now < q->reset + w)
        return;
    unsigned heard = 0;
    uint64_t oldest = now;
    for (uint32_t i = 0; i < conf->n_voters; i++) {
        uint64_t v = conf->voters[i];
        long j = cq_find(q, v);
        uint64_t t = v == self ? now : j >= 0 ? q->heard[j].tick : 0;
        if (now - t < w)
            heard++;
        else if (t < oldest)
            oldest = t;
    }
    if (heard < conf->n_voters / 2 + 1)
        sim_fail(s, "check-quorum", "n%u still leads term %" PRIu64 " at its"
                 " tick %" PRIu64 " but heard from only %u of its %u voters in"
                 " the last %" PRIu64 " ticks (%u election timeouts; one it has"
                 " not heard from since tick %" PRIu64 ")", slot, term, now,
                 heard, conf->n_voters, w, s->p.check_quorum_rounds + 1, oldest);
}

void sim_check_heard(struct sim *s, unsigned slot, uint64_t id, uint64_t now)
{
    struct sim_cq *q = cq_of(s, slot);
    long j = q && q->term ? cq_find(q, id) : -1;
    if (j >= 0 && q->heard[j].tick < now)
        q->heard[j].tick = now;
}

void sim_check_quorum_reset(struct sim *s, unsigned slot, uint64_t now)
{
    struct sim_cq *q = cq_of(s, slot);
    if (q && q->term && q->reset < now)
        q->reset = now;
}

/* ---- availability: a pre-vote never moves a term ---- */

static bool pre_vote_term(const struct raft_msg *m)
{
    /* The term a PRE_VOTE asks about, and a granted PRE_VOTE_RESP repeats,
     * is nobody's yet; a rejected PRE_VOTE_RESP carries the responder's. */
    return m->type == RAFT_MSG_PRE_VOTE ||
           (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject);
}

/* The core (step.c) moves its term up only: to the term of a message that
 * carries a real one (anything but a PRE_VOTE or a granted PRE_VOTE_RESP),
 * or by one, becoming a candidate (election.c: a real campaign, after a
 * won pre-vote or on TIMEOUT_NOW). A pre-candidate keeps its term. So:
 *  - over one message, a rise goes to m->term (real kind), or to one more
 *    than before or than m->term as a candidate;
 *  - a pre-candidate's term is the one it had;
 *  - every term a node holds was campaigned in by some candidate (term 1:
 *    the bootstrap's). */
void sim_check_term(struct sim *s, uint64_t node, uint64_t prev_term,
                    enum raft_role prev_role,
                    const struct raft_soft_state *ss,
                    const struct raft_msg *m)
{
    struct sim_check *c = &s->chk;
    uint64_t t = ss->term;
    if (t == prev_term)
        return;
    if (t >= RAFT_TERM_MAX) {
        sim_fail(s, "term-bound", "n%" PRIu64 " is in term %" PRIu64 " (was %"
                 PRIu64 "): at or beyond RAFT_TERM_MAX, no election can follow",
                 node, t, prev_term);
        return;
    }
    if (grow((void **)&c->campaigned, &c->cap_campaigned, t, sizeof(bool))) {
        sim_fail(s, "sim", "out of memory");
        return;
    }
    bool cand = ss->role == RAFT_CANDIDATE;
    if (cand)
        c->campaigned[t] = true;
    if (ss->role == RAFT_PRE_CANDIDATE) {
        sim_fail(s, "pre-vote", "n%" PRIu64 " is a pre-candidate in term %"
                 PRIu64 " but was in term %" PRIu64 " (as %s): a pre-vote"
                 " moved its own term", node, t, prev_term,
                 raft_role_name(prev_role));
        return;
    }
    if (m && t > prev_term) {
        bool real = !pre_vote_term(m);
        bool ok = (real && t == m->term) ||
                  (cand && (t == prev_term + 1 || (real && t == m->term + 1)));
        if (!ok) {
            sim_fail(s, "pre-vote", "n%" PRIu64 "'s term rose from %" PRIu64
                     " to %" PRIu64 " (now %s) on a %s%s of term %" PRIu64,
                     node, prev_term, t, raft_role_name(ss->role),
                     raft_msg_type_name(m->type),
                     m->reject ? " (rejected)" : "", m->term);
            return;
        }
    }
    if (!cand && t > 1 && !c->campaigned[t])
        sim_fail(s, "pre-vote", "n%" PRIu64 " is in term %" PRIu64 " (was %"
                 PRIu64 "), a term no node ever campaigned in", node, t,
                 prev_term);
}

/* ---- feeding the checkers from live nodes ---- */

static void check_caught_up(struct sim *s, struct sim_node *n,
                            const struct raft_soft_state *ss);

void sim_check_observe(struct sim *s, struct sim_node *n,
                       const struct raft_soft_state *ss)
{
    sim_check_term(s, n->id, n->term, n->role, ss, s->chk.in_msg);
    sim_check_quorum(s, (unsigned)n->id, ss->role == RAFT_LEADER, ss->term,
                     n->rid, raft_conf(n->r), raft_now(n->r));
    if (ss->role == RAFT_LEADER)
        check_caught_up(s, n, ss);
}

/* ---- promotions: a member is caught up only once it has answered ---- */

static struct sim_cu *cu_of(struct sim *s, unsigned slot, uint64_t term)
{
    if (slot > SIM_MAX_NODES)
        return NULL;
    struct sim_cu *c = &s->chk.cu[slot];
    if (c->term != term) {
        c->term = term;
        c->n = 0;
    }
    return c;
}

static bool cu_acked(const struct sim_cu *c, uint64_t id)
{
    for (unsigned i = 0; i < c->n; i++)
        if (c->acked[i] == id)
            return true;
    return false;
}

/* raft_caught_up() (what craftd's promotions and the sim's rejoins go by)
 * may say yes for a member only if the leader, in its term, has stepped a
 * successful append response from it: a member that never answered has
 * match 0, which a young log would take for "close". Asked with an
 * unbounded lag, so that only the answer decides. */
static void check_caught_up(struct sim *s, struct sim_node *n,
                            const struct raft_soft_state *ss)
{
    struct sim_cu *c = cu_of(s, (unsigned)n->id, ss->term);
    if (!c)
        return;
    const struct raft_conf *conf = raft_conf(n->r);
    for (uint32_t i = 0; i < conf->n_voters + conf->n_learners; i++) {
        uint64_t id = i < conf->n_voters ? conf->voters[i]
                                         : conf->learners[i - conf->n_voters];
        if (id != n->rid && raft_caught_up(n->r, id, UINT64_MAX / 2) &&
            !cu_acked(c, id))
            sim_fail(s, "caught-up", "n%" PRIu64 ", leader of term %" PRIu64
                     ", calls Raft id %#" PRIx64 " caught up, but it has "
                     "stepped no successful append response from it in that "
                     "term", n->id, ss->term, id);
    }
}

void sim_check_delivered(struct sim *s, struct sim_node *to,
                         const struct raft_msg *m)
{
    struct raft_soft_state ss = raft_soft(to->r);
    if (ss.role != RAFT_LEADER || m->to != to->rid)
        return;
    uint64_t now = raft_now(to->r);
    if (m->type == RAFT_MSG_APP_RESP && !m->reject && m->term == ss.term) {
        struct sim_cu *c = cu_of(s, (unsigned)to->id, ss.term);
        if (c && !cu_acked(c, m->from) &&
            c->n < sizeof(c->acked) / sizeof(c->acked[0]))
            c->acked[c->n++] = m->from;
    }
    switch (m->type) {
    case RAFT_MSG_APP_RESP:
    case RAFT_MSG_HEARTBEAT_RESP:
    case RAFT_MSG_SNAP_RESP:
        if (m->term == ss.term)
            sim_check_heard(s, (unsigned)to->id, m->from, now);
        break;
    case RAFT_MSG_TRANSFER:
        sim_check_quorum_reset(s, (unsigned)to->id, now);
        break;
    default:
        break;
    }
}
