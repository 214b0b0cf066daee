/* Scenario tests of the Raft core's edge cases (src/raft), on the in-process
 * network of tests/unit/raft_net.c: elections, the commit rule, log
 * conflicts, pre-vote and check-quorum, durability of votes and acks, read
 * index and lease, leadership transfer, membership, snapshots, restarts, and
 * raft_step's validation of messages (malformed, absurd values, a second
 * sender for a term's leadership). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/alloc.h"
#include "raft/raft.h"
#include "unit/raft_net.h"

/* ---- helpers ---- */

static struct raft_config base(void)
{
    struct raft_config c = {.election_ticks = 10, .heartbeat_ticks = 1};
    return c;
}

static struct rnet *cluster(size_t n, size_t voters,
                            const struct raft_config *c)
{
    struct raft_config d = base();
    struct rnet *net = rnet_new(n, c ? c : &d);
    rnet_bootstrap(net, voters);
    return net;
}

/* Every test ends here: no message promising durability left early. */
static void finish(struct rnet *net)
{
    assert_int_equal(net->early_votes, 0);
    assert_int_equal(net->early_grants, 0);
    assert_int_equal(net->early_acks, 0);
    rnet_free(net);
}

static uint64_t other(uint64_t id, uint64_t k, uint64_t n)
{
    return (id - 1 + k) % n + 1;
}

typedef bool (*pred_fn)(struct rnet *net, void *arg);

/* Tick every live node and deliver messages one at a time, checking pred
 * after each step; true as soon as it holds. */
static bool run_until(struct rnet *net, unsigned max_ticks, pred_fn pred,
                      void *arg)
{
    for (unsigned t = 0; t <= max_ticks; t++) {
        if (pred(net, arg))
            return true;
        while (rnet_step(net))
            if (pred(net, arg))
                return true;
        for (size_t i = 0; i < net->n; i++)
            if (net->nodes[i].r)
                raft_tick(net->nodes[i].r);
    }
    return false;
}

static bool new_leader_pred(struct rnet *net, void *arg)
{
    uint64_t old = *(uint64_t *)arg;
    uint64_t l = rnet_leader(net);
    return l != RAFT_NONE && l != old;
}

/* Run until a leader other than old exists; stop right when it wins. */
static uint64_t wait_new_leader(struct rnet *net, uint64_t old)
{
    assert_true(run_until(net, 200, new_leader_pred, &old));
    return rnet_leader(net);
}

/* Counts emitted messages matching a filter. */
struct counter {
    uint8_t type;
    uint64_t from, to; /* 0: any */
    int reject;        /* -1: any */
    unsigned n;
};

static bool count_watch(void *arg, const struct raft_msg *m, bool after)
{
    (void)after;
    struct counter *c = arg;
    if (m->type == c->type && (!c->from || m->from == c->from) &&
        (!c->to || m->to == c->to) &&
        (c->reject < 0 || (int)m->reject == c->reject))
        c->n++;
    return true;
}

static void propose_ok(struct rnet *net, uint64_t id, uint64_t req,
                       uint64_t v)
{
    assert_int_equal(rnet_propose(net, id, req, v), 0);
}

static bool sm_has(struct rnet *net, uint64_t id, uint64_t v)
{
    struct rnet_node *nd = rnet_node(net, id);
    for (size_t i = 0; i < nd->n_sm; i++)
        if (nd->sm[i] == v)
            return true;
    return false;
}

/* ---- single node ---- */

static void test_single_node(void **state)
{
    (void)state;
    struct rnet *net = cluster(1, 1, NULL);
    struct raft *r = rnet_raft(net, 1);
    assert_int_equal(raft_commit_index(r), 1);
    assert_false(raft_lease_valid(r, raft_now(r)));
    assert_int_equal(rnet_elect(net, 50), 1);
    assert_int_equal(raft_soft(r).term, 2);
    assert_int_equal(raft_last_index(r), 2); /* conf + no-op */

    propose_ok(net, 1, 100, 42);
    rnet_settle(net);
    const struct raft_prop_result *p = rnet_prop(net, 1, 100);
    assert_non_null(p);
    assert_int_equal(p->err, 0);
    assert_int_equal(p->index, 3);
    assert_int_equal(p->term, 2);
    assert_int_equal(raft_commit_index(r), 3);
    assert_int_equal(rnet_node(net, 1)->n_sm, 1);
    assert_int_equal(rnet_node(net, 1)->sm[0], 42);

    assert_int_equal(raft_read_index(r, 7), 0);
    rnet_settle(net);
    const struct raft_read_result *rr = rnet_read(net, 1, 7);
    assert_non_null(rr);
    assert_int_equal(rr->err, 0);
    assert_true(rr->index >= 3);

    assert_true(raft_lease_valid(r, raft_now(r)));
    uint64_t idx = 0;
    assert_int_equal(raft_read_lease(r, raft_now(r), &idx), 0);
    assert_int_equal(idx, 3);
    finish(net);
}

/* A batch hands out at most max_apply_bytes of committed entries (each
 * costing its length + RAFT_APPLY_ENTRY_COST, one always), the rest in the
 * batches after it, in order; raft_apply_pending says when more is due. */
static void test_apply_bound(void **state)
{
    (void)state;
    struct raft_config c = base();
    c.max_apply_bytes = 3 * (RAFT_APPLY_ENTRY_COST + 10);
    struct rnet *net = cluster(1, 1, &c);
    struct raft *r = rnet_raft(net, 1);
    assert_int_equal(rnet_elect(net, 50), 1);
    rnet_settle(net);
    uint64_t first = raft_applied_index(r) + 1;
    uint8_t data[10] = {0};
    for (uint64_t i = 0; i < 20; i++)
        assert_int_equal(raft_propose(r, 1000 + i, data, sizeof data), 0);
    uint64_t next = first, batches = 0;
    while (raft_has_ready(r)) {
        struct raft_ready rd;
        raft_ready(r, &rd);
        assert_true(rd.n_committed <= 3);
        for (size_t i = 0; i < rd.n_committed; i++)
            assert_int_equal(rd.committed[i].index, next++);
        if (rd.n_committed)
            batches++;
        if (rd.n_committed < 3)
            assert_false(raft_apply_pending(r));
        raft_advance(r, &rd);
    }
    assert_int_equal(next, first + 20);
    assert_int_equal(batches, 7); /* 3+3+3+3+3+3+2 */
    assert_false(raft_apply_pending(r));

    /* A budget given for one batch: that batch alone applies more. */
    first = next;
    for (uint64_t i = 0; i < 10; i++)
        assert_int_equal(raft_propose(r, 3000 + i, data, sizeof data), 0);
    size_t counts[8], nb = 0;
    bool budgeted = false;
    while (raft_has_ready(r)) {
        struct raft_ready rd;
        if (!budgeted && raft_apply_pending(r)) {
            raft_set_apply_budget(r, 5 * (RAFT_APPLY_ENTRY_COST + 10));
            budgeted = true;
        }
        raft_ready(r, &rd);
        for (size_t i = 0; i < rd.n_committed; i++)
            assert_int_equal(rd.committed[i].index, next++);
        if (rd.n_committed) {
            assert_true(nb < 8);
            counts[nb++] = rd.n_committed;
        }
        raft_advance(r, &rd);
    }
    assert_int_equal(next, first + 10);
    assert_int_equal(nb, 3); /* 5 (the budget), then 3 (the bound), 2 */
    assert_int_equal(counts[0], 5);
    assert_int_equal(counts[1], 3);
    assert_int_equal(counts[2], 2);

    /* An entry over the bound alone still goes, alone. */
    uint8_t big[1000] = {0};
    assert_int_equal(raft_propose(r, 2000, big, sizeof big), 0);
    assert_int_equal(raft_propose(r, 2001, data, sizeof data), 0);
    size_t sizes[2], k = 0;
    while (raft_has_ready(r)) {
        struct raft_ready rd;
        raft_ready(r, &rd);
        for (size_t i = 0; i < rd.n_committed; i++) {
            assert_true(k < 2);
            assert_int_equal(rd.n_committed, 1);
            sizes[k++] = rd.committed[i].len;
        }
        raft_advance(r, &rd);
    }
    assert_int_equal(k, 2);
    assert_int_equal(sizes[0], sizeof big);
    assert_int_equal(sizes[1], sizeof data);
    finish(net);
}

/* ---- three nodes: election, replication, forwarding ---- */

/* The election timeout is drawn from [e, e + j): a follower that hears
 * nothing campaigns (turns pre-candidate) after e to e + j - 1 ticks, each
 * of them seen over many seeds; j under 2 or over e is refused. */
static void test_election_jitter(void **state)
{
    (void)state;
    bool seen[16] = {false};
    for (uint64_t seed = 0; seed < 64; seed++) {
        struct raft_config c = base();
        c.election_jitter_ticks = 3;
        c.seed = seed;
        struct rnet *net = cluster(3, 3, &c);
        rnet_crash(net, 2);
        rnet_crash(net, 3);
        for (int round = 0; round < 4; round++) {
            unsigned t = 0, before = net->sent[RAFT_MSG_PRE_VOTE];
            while (net->sent[RAFT_MSG_PRE_VOTE] == before && t < 16) {
                rnet_tick(net, 1);
                t++;
            }
            /* the first wait may count from before the bootstrap's ticks */
            assert_true(round == 0 ? t <= 12 : t >= 10 && t <= 12);
            if (round > 0)
                seen[t] = true;
        }
        rnet_free(net);
    }
    assert_true(seen[10] && seen[11] && seen[12]);
    for (unsigned j = 1; j <= 11; j += 10) {
        struct raft_config c = base();
        c.id = 1;
        c.election_jitter_ticks = j;
        struct raft *r = NULL;
        assert_int_equal(raft_new(&c, NULL, &r), CRAFT_EINVAL);
        assert_null(r);
    }
}

/* The leader gone, its two followers campaign at the same moment: each
 * grants the other's pre-vote, both stand in the next term and refuse each
 * other. The tie is broken within a few ticks (each tries again after 1 to
 * j), not an election timeout later. */
static void test_tie_broken_soon(void **state)
{
    (void)state;
    unsigned total = 0;
    for (uint64_t seed = 0; seed < 16; seed++) {
        struct raft_config c = base();
        c.election_jitter_ticks = 4;
        c.seed = seed;
        struct rnet *net = cluster(3, 3, &c);
        uint64_t l = rnet_elect(net, 100);
        uint64_t term = raft_soft(rnet_raft(net, l)).term;
        rnet_crash(net, l);
        uint64_t a = other(l, 1, 3), b = other(l, 2, 3);
        assert_int_equal(raft_campaign(rnet_raft(net, a)), 0);
        assert_int_equal(raft_campaign(rnet_raft(net, b)), 0);
        rnet_settle(net);
        assert_int_equal(raft_soft(rnet_raft(net, a)).role, RAFT_CANDIDATE);
        assert_int_equal(raft_soft(rnet_raft(net, b)).role, RAFT_CANDIDATE);
        assert_int_equal(raft_soft(rnet_raft(net, a)).term, term + 1);
        unsigned ticks = 0;
        while (rnet_leader(net) == RAFT_NONE && ticks < 40) {
            rnet_tick(net, 1);
            ticks++;
        }
        assert_true(rnet_leader(net) != RAFT_NONE);
        /* nodes here tick in step, so a retry may tie again (1 in 4) */
        assert_true(ticks < 10); /* without the early retry: 10 or more */
        total += ticks;
        assert_int_equal(rnet_count_leaders(net), 1);
        finish(net);
    }
    assert_true(total <= 16 * 4);
}

static void test_three_node_election(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    /* Nobody leads yet: a proposal has nowhere to go. */
    assert_int_equal(rnet_propose(net, 2, 1, 5), 0);
    assert_int_equal(raft_read_index(rnet_raft(net, 3), 2), 0);
    rnet_settle(net);
    const struct raft_prop_result *p = rnet_prop(net, 2, 1);
    assert_non_null(p);
    assert_int_equal(p->err, CRAFT_ENOLEADER);
    const struct raft_read_result *rr = rnet_read(net, 3, 2);
    assert_non_null(rr);
    assert_int_equal(rr->err, CRAFT_ENOLEADER);

    uint64_t l = rnet_elect(net, 100);
    assert_true(net->sent[RAFT_MSG_PRE_VOTE] > 0);
    assert_true(net->sent[RAFT_MSG_VOTE] > 0);
    assert_int_equal(rnet_count_leaders(net), 1);
    uint64_t term = raft_soft(rnet_raft(net, l)).term;
    assert_int_equal(term, 2); /* pre-vote: no wasted term */
    rnet_tick(net, 1);
    for (uint64_t id = 1; id <= 3; id++) {
        struct raft_soft_state s = raft_soft(rnet_raft(net, id));
        assert_int_equal(s.leader, l);
        assert_int_equal(s.term, term);
        assert_int_equal(s.role, id == l ? RAFT_LEADER : RAFT_FOLLOWER);
    }

    for (uint64_t i = 0; i < 10; i++)
        propose_ok(net, l, 10 + i, 1000 + i);
    rnet_settle(net);
    for (uint64_t i = 0; i < 10; i++) {
        p = rnet_prop(net, l, 10 + i);
        assert_non_null(p);
        assert_int_equal(p->err, 0);
        assert_int_equal(p->term, term);
    }
    for (uint64_t id = 1; id <= 3; id++) {
        struct rnet_node *nd = rnet_node(net, id);
        assert_int_equal(nd->n_sm, 10);
        for (uint64_t i = 0; i < 10; i++)
            assert_int_equal(nd->sm[i], 1000 + i);
        assert_int_equal(raft_commit_index(nd->r),
                         raft_last_index(rnet_raft(net, l)));
    }

    /* Forwarded by a follower: (index, term) comes back, and commits. */
    uint64_t f = other(l, 1, 3);
    propose_ok(net, f, 50, 77);
    rnet_settle(net);
    p = rnet_prop(net, f, 50);
    assert_non_null(p);
    assert_int_equal(p->err, 0);
    assert_int_equal(p->term, term);
    assert_int_equal(p->index, raft_last_index(rnet_raft(net, l)));
    assert_int_equal(net->applied_terms[p->index], term);
    for (uint64_t id = 1; id <= 3; id++)
        assert_int_equal(rnet_node(net, id)->sm[10], 77);
    finish(net);
}

/* ---- the commit rule (Figure 8) ---- */

struct f8 {
    uint64_t b, c, k0;
    bool seen;
    uint64_t commit_seen;
};

static bool f8_pred(struct rnet *net, void *arg)
{
    struct f8 *f = arg;
    struct raft *rb = rnet_raft(net, f->b);
    uint64_t match = 0, next = 0;
    if (!f->seen && raft_progress(rb, f->c, &match, &next) &&
        match == f->k0 + 1) {
        f->seen = true;
        f->commit_seen = raft_commit_index(rb);
    }
    return raft_soft(rb).role == RAFT_LEADER &&
           raft_commit_index(rb) >= f->k0 + 3;
}

static void test_commit_only_current_term(void **state)
{
    (void)state;
    struct raft_config c = base();
    c.max_msg_bytes = 8; /* one 8-byte entry per append */
    struct rnet *net = cluster(3, 3, &c);
    uint64_t a = rnet_elect(net, 100);
    struct f8 f = {.b = other(a, 1, 3), .c = other(a, 2, 3)};
    f.k0 = raft_last_index(rnet_raft(net, a));
    uint64_t t_old = raft_soft(rnet_raft(net, a)).term;
    assert_int_equal(raft_commit_index(rnet_raft(net, a)), f.k0);

    /* X1, X2 of term t_old reach B only, and A never hears it. */
    rnet_cut(net, a, f.c);
    rnet_cut_one(net, f.b, a);
    propose_ok(net, a, 1, 11);
    propose_ok(net, a, 2, 12);
    rnet_settle(net);
    assert_int_equal(raft_last_index(rnet_raft(net, f.b)), f.k0 + 2);
    assert_int_equal(raft_last_index(rnet_raft(net, f.c)), f.k0);
    assert_int_equal(raft_commit_index(rnet_raft(net, a)), f.k0);

    /* A dies; B (the only one that can win) leads term > t_old, and
     * replicates X1 to C in an append of its own: B and C now hold X1, a
     * quorum, but X1 is of an older term and must not commit by itself. */
    rnet_crash(net, a);
    rnet_heal(net);
    assert_true(run_until(net, 200, f8_pred, &f));
    assert_true(raft_soft(rnet_raft(net, f.b)).term > t_old);
    assert_true(f.seen);
    assert_int_equal(f.commit_seen, f.k0);
    /* With the no-op of the new term on a quorum, all of it commits. */
    assert_int_equal(raft_commit_index(rnet_raft(net, f.b)), f.k0 + 3);
    assert_int_equal(raft_term_at(rnet_raft(net, f.b), f.k0 + 1), t_old);
    rnet_settle(net);
    assert_true(sm_has(net, f.c, 11) && sm_has(net, f.c, 12));
    finish(net);
}

/* ---- log conflicts ---- */

static void test_log_conflict_fast_backtrack(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t a = rnet_elect(net, 100);
    uint64_t t_old = raft_soft(rnet_raft(net, a)).term;
    uint64_t k0 = raft_last_index(rnet_raft(net, a));

    /* A, cut off, takes 100 proposals nobody else sees. */
    rnet_isolate(net, a);
    for (uint64_t i = 0; i < 100; i++)
        propose_ok(net, a, 1 + i, 5000 + i);
    rnet_settle(net);
    assert_int_equal(raft_last_index(rnet_raft(net, a)), k0 + 100);

    uint64_t l = wait_new_leader(net, a);
    rnet_tick(net, 1);
    assert_true(l != a);
    assert_int_equal(rnet_elect(net, 10), l);
    for (uint64_t i = 0; i < 5; i++)
        propose_ok(net, l, 200 + i, 7000 + i);
    rnet_settle(net);
    uint64_t last = raft_last_index(rnet_raft(net, l));
    assert_int_equal(last, k0 + 6); /* no-op + 5 */

    struct counter apps = {.type = RAFT_MSG_APP, .from = l, .to = a,
                           .reject = -1};
    net->watch = count_watch;
    net->watch_arg = &apps;
    rnet_heal(net);
    propose_ok(net, l, 300, 7777); /* something to append */
    for (int t = 0; t < 30; t++) {
        struct raft *ra = rnet_raft(net, a);
        if (raft_commit_index(ra) == raft_last_index(rnet_raft(net, l)))
            break;
        rnet_tick(net, 1);
    }
    net->watch = NULL;
    struct raft *ra = rnet_raft(net, a);
    assert_int_equal(raft_last_index(ra), last + 1);
    assert_int_equal(raft_commit_index(ra), last + 1);
    assert_int_equal(raft_soft(ra).leader, l);
    /* A hundred divergent entries, yet only a handful of appends. */
    assert_true(apps.n <= 4);
    assert_true(rnet_sm_consistent(net, a, l));
    assert_int_equal(rnet_node(net, a)->n_sm, 6);
    assert_false(sm_has(net, a, 5000));
    /* A's proposals were accepted at (index, t_old) and lost. */
    const struct raft_prop_result *p = rnet_prop(net, a, 1);
    assert_non_null(p);
    assert_int_equal(p->err, 0);
    assert_int_equal(p->term, t_old);
    assert_true(net->applied_terms[p->index] != t_old);
    finish(net);
}

/* ---- pre-vote and check-quorum ---- */

static void test_prevote_rejoin_no_disruption(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    uint64_t term = raft_soft(rnet_raft(net, l)).term;
    uint64_t f = other(l, 1, 3);
    rnet_isolate(net, f);
    rnet_tick(net, 60); /* several election timeouts */
    assert_int_equal(raft_soft(rnet_raft(net, f)).term, term);
    assert_true(net->sent[RAFT_MSG_PRE_VOTE] > 0);
    rnet_heal(net);
    rnet_tick(net, 5);
    assert_int_equal(rnet_leader(net), l);
    for (uint64_t id = 1; id <= 3; id++) {
        struct raft_soft_state s = raft_soft(rnet_raft(net, id));
        assert_int_equal(s.term, term);
        assert_int_equal(s.leader, l);
    }
    finish(net);
}

static void test_check_quorum_steps_down(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    rnet_isolate(net, l);
    unsigned ticks = 0;
    while (raft_soft(rnet_raft(net, l)).role == RAFT_LEADER) {
        assert_true(ticks < 2 * 10);
        rnet_tick(net, 1);
        ticks++;
    }
    assert_int_equal(raft_soft(rnet_raft(net, l)).leader, RAFT_NONE);
    uint64_t l2 = rnet_elect(net, 200);
    assert_true(l2 != l);
    rnet_heal(net);
    rnet_tick(net, 3);
    assert_int_equal(raft_soft(rnet_raft(net, l)).leader, l2);
    assert_int_equal(rnet_count_leaders(net), 1);
    finish(net);
}

/* check_quorum_rounds 2: a leader that hears from nobody (its followers
 * still hear it, so they do not campaign) steps down after more than 2
 * election timeouts and at most 3, not 1 to 2; a round in which it heard a
 * quorum again starts the count over. */
static uint64_t deafen(struct rnet *net, uint64_t l, bool deaf)
{
    for (uint64_t id = 1; id <= 3; id++)
        if (id != l && deaf)
            rnet_cut_one(net, id, l);
    if (!deaf)
        rnet_heal(net);
    return l;
}

static unsigned ticks_to_step_down(struct rnet *net, uint64_t l, unsigned max)
{
    unsigned ticks = 0;
    while (raft_soft(rnet_raft(net, l)).role == RAFT_LEADER && ticks < max) {
        rnet_tick(net, 1);
        ticks++;
    }
    return ticks;
}

static void test_check_quorum_rounds(void **state)
{
    (void)state;
    struct raft_config c = base();
    c.check_quorum_rounds = 2;
    struct rnet *net = cluster(3, 3, &c);
    uint64_t l = rnet_elect(net, 100);
    rnet_tick(net, 3);
    deafen(net, l, true);
    /* Checks every 10 ticks, a round counted from the end of the last:
     * one round deaf ends at 11-20 ticks, two at 21-30. */
    assert_int_equal(ticks_to_step_down(net, l, 20), 20);
    assert_int_equal(raft_soft(rnet_raft(net, l)).role, RAFT_LEADER);
    deafen(net, l, false);
    rnet_tick(net, 2);
    deafen(net, l, true);
    unsigned t = ticks_to_step_down(net, l, 40);
    assert_true(t >= 2 * 10 + 1 && t <= 3 * 10);
    assert_int_equal(raft_soft(rnet_raft(net, l)).role, RAFT_FOLLOWER);
    finish(net);
}

/* ---- durability of votes and acknowledgements ---- */

static void persist_all(struct raft *r)
{
    while (raft_has_ready(r)) {
        struct raft_ready rd;
        raft_ready(r, &rd);
        raft_advance(r, &rd);
    }
}

static size_t count_in(const struct raft_msg *m, size_t n, uint8_t type,
                       bool granted)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (m[i].type == type && (!granted || !m[i].reject))
            k++;
    return k;
}

static void test_vote_durability(void **state)
{
    (void)state;
    uint64_t voters[3] = {1, 2, 3};
    struct raft_config c = base();
    c.id = 1;
    struct raft *r;
    assert_int_equal(raft_new(&c, NULL, &r), 0);
    assert_int_equal(raft_bootstrap(r, voters, 3, NULL), 0);
    persist_all(r);
    /* Past the start-up lease, with no leader heard of. */
    for (int i = 0; i < 10; i++)
        raft_tick(r);
    persist_all(r);

    struct raft_msg v = {.type = RAFT_MSG_VOTE, .from = 2, .to = 1,
                         .term = 5, .index = 3, .log_term = 1};
    assert_int_equal(raft_step(r, &v), 0);
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_true(rd.hs_changed);
    assert_int_equal(rd.hs.term, 5);
    assert_int_equal(rd.hs.vote, 2);
    assert_int_equal(count_in(rd.msgs, rd.n_msgs, RAFT_MSG_VOTE_RESP, false),
                     0);
    assert_int_equal(
        count_in(rd.msgs_after, rd.n_msgs_after, RAFT_MSG_VOTE_RESP, true), 1);
    raft_advance(r, &rd);

    /* An append: its acknowledgement waits for the entries. */
    struct raft_entry e = {.term = 5, .index = 4, .type = RAFT_ENTRY_NOOP};
    struct raft_msg app = {.type = RAFT_MSG_APP, .from = 2, .to = 1,
                           .term = 5, .index = 3, .log_term = 1,
                           .n_entries = 1, .entries = &e};
    assert_int_equal(raft_step(r, &app), 0);
    raft_ready(r, &rd);
    assert_int_equal(rd.n_entries, 1);
    assert_int_equal(count_in(rd.msgs, rd.n_msgs, RAFT_MSG_APP_RESP, true),
                     0);
    assert_int_equal(
        count_in(rd.msgs_after, rd.n_msgs_after, RAFT_MSG_APP_RESP, true), 1);
    raft_advance(r, &rd);
    raft_free(r);

    /* A candidate's own vote requests wait for its vote. */
    struct raft_config c2 = base();
    c2.id = 1;
    c2.disable_pre_vote = true;
    assert_int_equal(raft_new(&c2, NULL, &r), 0);
    assert_int_equal(raft_bootstrap(r, voters, 3, NULL), 0);
    persist_all(r);
    assert_int_equal(raft_campaign(r), 0);
    raft_ready(r, &rd);
    assert_true(rd.hs_changed);
    assert_int_equal(rd.hs.vote, 1);
    assert_int_equal(count_in(rd.msgs, rd.n_msgs, RAFT_MSG_VOTE, false), 0);
    assert_int_equal(
        count_in(rd.msgs_after, rd.n_msgs_after, RAFT_MSG_VOTE, false), 2);
    raft_advance(r, &rd);
    raft_free(r);

    /* Across a whole cluster's life, the harness counts them all. */
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    propose_ok(net, l, 1, 1);
    rnet_settle(net);
    rnet_crash(net, l);
    rnet_elect(net, 200);
    assert_true(net->after_votes > 0);
    assert_true(net->after_grants > 0);
    assert_true(net->after_acks > 0);
    finish(net);
}

/* Heartbeats and their answers leave while a batch's disk write is under
 * way, unless that batch (or anything since) changes the term or vote. */
static void test_heartbeats_during_write(void **state)
{
    (void)state;
    uint64_t voters[3] = {1, 2, 3};
    struct raft_config c = base();
    c.id = 1;
    c.disable_pre_vote = true;
    struct raft *r;
    struct raft_ready rd;
    struct raft_msg hb[4];
    assert_int_equal(raft_new(&c, NULL, &r), 0);
    assert_int_equal(raft_bootstrap(r, voters, 3, NULL), 0);
    persist_all(r);

    /* A candidate's vote on its way to disk: nothing is taken. */
    assert_int_equal(raft_campaign(r), 0);
    raft_ready(r, &rd);
    assert_true(rd.hs_changed);
    assert_int_equal(raft_take_heartbeats(r, hb, 4), 0);
    raft_advance(r, &rd);
    uint64_t term = raft_soft(r).term;
    struct raft_msg grant = {.type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1,
                             .term = term};
    assert_int_equal(raft_step(r, &grant), 0);
    assert_int_equal(raft_soft(r).role, RAFT_LEADER);

    /* The leader's no-op entry is being written: a tick's heartbeats are
     * handed out at once, and only once. */
    raft_ready(r, &rd);
    assert_true(rd.n_entries >= 1);
    assert_int_equal(raft_take_heartbeats(r, hb, 4), 0); /* none made yet */
    raft_tick(r);
    size_t k = raft_take_heartbeats(r, hb, 4);
    assert_int_equal(k, 2);
    for (size_t i = 0; i < k; i++) {
        assert_int_equal(hb[i].type, RAFT_MSG_HEARTBEAT);
        assert_int_equal(hb[i].term, term);
    }
    assert_int_equal(raft_take_heartbeats(r, hb, 4), 0);
    /* cap is honoured; the rest stays for later */
    raft_tick(r);
    assert_int_equal(raft_take_heartbeats(r, hb, 1), 1);
    assert_int_equal(raft_take_heartbeats(r, hb, 4), 1);
    raft_advance(r, &rd);
    /* No batch out: nothing is taken, the batch carries them. */
    raft_tick(r);
    assert_int_equal(raft_take_heartbeats(r, hb, 4), 0);
    raft_ready(r, &rd);
    assert_true(count_in(rd.msgs, rd.n_msgs, RAFT_MSG_HEARTBEAT, false) >= 2);
    raft_advance(r, &rd);

    /* A higher term arrives while a batch is out: heartbeat answers of the
     * new term wait for it to be durable. */
    raft_tick(r);
    raft_ready(r, &rd);
    struct raft_msg app = {.type = RAFT_MSG_HEARTBEAT, .from = 3, .to = 1,
                           .term = term + 1};
    assert_int_equal(raft_step(r, &app), 0);
    assert_int_equal(raft_soft(r).role, RAFT_FOLLOWER);
    assert_int_equal(raft_take_heartbeats(r, hb, 4), 0);
    raft_advance(r, &rd);
    raft_ready(r, &rd);
    assert_int_equal(
        count_in(rd.msgs_after, rd.n_msgs_after, RAFT_MSG_HEARTBEAT_RESP, false), 1);
    raft_advance(r, &rd);
    raft_free(r);
}

/* ---- read index ---- */

static void test_read_index_leader_and_follower(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    uint64_t f = other(l, 1, 3);
    for (uint64_t i = 0; i < 5; i++)
        propose_ok(net, l, i + 1, i);
    rnet_settle(net);
    uint64_t c = raft_commit_index(rnet_raft(net, l));
    assert_int_equal(raft_read_index(rnet_raft(net, l), 100), 0);
    assert_int_equal(raft_read_index(rnet_raft(net, f), 200), 0);
    rnet_settle(net);
    const struct raft_read_result *rr = rnet_read(net, l, 100);
    assert_non_null(rr);
    assert_int_equal(rr->err, 0);
    assert_true(rr->index >= c);
    rr = rnet_read(net, f, 200);
    assert_non_null(rr);
    assert_int_equal(rr->err, 0);
    assert_true(rr->index >= c);
    assert_true(rnet_node(net, f)->applied >= rr->index);
    finish(net);
}

static void test_read_index_batched(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    uint64_t f = other(l, 1, 3);
    unsigned hb = net->sent[RAFT_MSG_HEARTBEAT];
    for (uint64_t i = 0; i < 50; i++)
        assert_int_equal(raft_read_index(rnet_raft(net, l), i + 1), 0);
    for (uint64_t i = 0; i < 30; i++)
        assert_int_equal(raft_read_index(rnet_raft(net, f), 100 + i), 0);
    rnet_settle(net);
    for (uint64_t i = 0; i < 50; i++) {
        const struct raft_read_result *rr = rnet_read(net, l, i + 1);
        assert_non_null(rr);
        assert_int_equal(rr->err, 0);
    }
    for (uint64_t i = 0; i < 30; i++) {
        const struct raft_read_result *rr = rnet_read(net, f, 100 + i);
        assert_non_null(rr);
        assert_int_equal(rr->err, 0);
    }
    /* 80 reads, a couple of heartbeat rounds (2 followers each). */
    assert_true(net->sent[RAFT_MSG_HEARTBEAT] - hb <= 2 * 2);
    finish(net);
}

/* With 3 voters, a follower's request and the leader are a quorum: the
 * read is released without a heartbeat round. With 5 they are not, and a
 * round is still needed. */
static void test_read_index_follower_one_trip(void **state)
{
    (void)state;
    for (size_t n = 3; n <= 5; n += 2) {
        struct rnet *net = cluster(n, n, NULL);
        uint64_t l = rnet_elect(net, 100);
        uint64_t f = other(l, 1, n);
        propose_ok(net, l, 1, 1);
        rnet_settle(net);
        unsigned hb = net->sent[RAFT_MSG_HEARTBEAT];
        uint64_t c = raft_commit_index(rnet_raft(net, l));
        assert_int_equal(raft_read_index(rnet_raft(net, f), 300), 0);
        rnet_settle(net);
        const struct raft_read_result *rr = rnet_read(net, f, 300);
        assert_non_null(rr);
        assert_int_equal(rr->err, 0);
        assert_true(rr->index >= c);
        if (n == 3)
            assert_int_equal(net->sent[RAFT_MSG_HEARTBEAT], hb);
        else
            assert_true(net->sent[RAFT_MSG_HEARTBEAT] > hb);
        finish(net);
    }
}

struct read_watch {
    uint64_t l, req, term, first;
    bool early; /* released before the leader committed in its term */
};

static bool read_done_pred(struct rnet *net, void *arg)
{
    struct read_watch *w = arg;
    struct raft *r = rnet_raft(net, w->l);
    const struct raft_read_result *rr = rnet_read(net, w->l, w->req);
    if (rr == NULL)
        return false;
    if (raft_term_at(r, raft_commit_index(r)) != w->term)
        w->early = true;
    return true;
}

static void test_read_index_new_leader_waits(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t a = rnet_elect(net, 100);
    propose_ok(net, a, 1, 1);
    rnet_settle(net);
    rnet_crash(net, a);
    uint64_t l = wait_new_leader(net, a);
    struct raft *r = rnet_raft(net, l);
    struct read_watch w = {.l = l, .req = 9, .term = raft_soft(r).term};
    /* Just elected: its no-op is not even persisted yet. */
    assert_true(raft_term_at(r, raft_commit_index(r)) != w.term);
    w.first = raft_last_index(r);
    assert_int_equal(raft_term_at(r, w.first), w.term);
    assert_int_equal(raft_read_index(r, 9), 0);
    assert_true(run_until(net, 20, read_done_pred, &w));
    assert_false(w.early);
    const struct raft_read_result *rr = rnet_read(net, l, 9);
    assert_int_equal(rr->err, 0);
    assert_true(rr->index >= w.first);
    finish(net);
}

static void test_read_index_fails_on_step_down(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    rnet_isolate(net, l);
    assert_int_equal(raft_read_index(rnet_raft(net, l), 1), 0);
    rnet_settle(net);
    assert_null(rnet_read(net, l, 1)); /* no quorum: waits */
    rnet_tick(net, 25); /* check-quorum deposes it */
    assert_int_equal(raft_soft(rnet_raft(net, l)).role, RAFT_FOLLOWER);
    const struct raft_read_result *rr = rnet_read(net, l, 1);
    assert_non_null(rr);
    assert_true(rr->err != 0);
    finish(net);
}

/* ---- lease ---- */

static void test_lease(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    rnet_tick(net, 2);
    struct raft *r = rnet_raft(net, l);
    assert_true(raft_lease_valid(r, raft_now(r)));
    uint64_t idx = 0;
    assert_int_equal(raft_read_lease(r, raft_now(r), &idx), 0);
    assert_int_equal(idx, raft_commit_index(r));
    uint64_t f = other(l, 1, 3);
    assert_false(raft_lease_valid(rnet_raft(net, f), raft_now(rnet_raft(net, f))));
    assert_int_equal(raft_read_lease(rnet_raft(net, f), raft_now(rnet_raft(net, f)), &idx),
                     CRAFT_ENOTLEADER);

    /* A transfer suspends the lease: the target may win at once. */
    rnet_cut_one(net, f, l); /* so that the transfer hangs */
    propose_ok(net, l, 1, 1);
    rnet_settle(net);
    assert_int_equal(raft_transfer_leader(r, f), 0);
    assert_false(raft_lease_valid(r, raft_now(r)));
    assert_int_equal(raft_read_lease(r, raft_now(r), &idx), CRAFT_ETIMEOUT);
    rnet_tick(net, 12); /* the transfer times out */
    assert_int_equal(rnet_leader(net), l);
    rnet_heal(net);
    rnet_tick(net, 2);
    assert_true(raft_lease_valid(r, raft_now(r)));

    /* Cut off: the lease lapses within an election timeout. */
    rnet_isolate(net, l);
    for (unsigned t = 0; t < 10; t++)
        rnet_tick(net, 1);
    assert_false(raft_lease_valid(r, raft_now(r)));
    if (raft_soft(r).role == RAFT_LEADER)
        assert_int_equal(raft_read_lease(r, raft_now(r), &idx), CRAFT_ETIMEOUT);
    finish(net);
}

/* Followers refuse votes for election_ticks of their ticks after they
 * heard the leader, and the first of those ticks may come at once: the
 * leader counts election_ticks - 1 from the tick at which it sent the round
 * a quorum answered, less the drift margin (docs/read-lease.md). With 10
 * ticks and the default margin of 1, a lease from a round sent at tick S
 * is valid at S + 7 and void from S + 8. */
static void lease_boundary(const struct raft_config *c, uint64_t last_valid)
{
    struct rnet *net = cluster(3, 3, c);
    uint64_t l = rnet_elect(net, 100);
    rnet_tick(net, 1); /* a round at this tick, answered by both */
    struct raft *r = rnet_raft(net, l);
    uint64_t start = raft_now(r);
    rnet_isolate(net, l); /* no later round is answered */
    assert_true(raft_lease_valid(r, start + last_valid));
    assert_false(raft_lease_valid(r, start + last_valid + 1));
    /* A clock behind the core's counts as the core's. */
    assert_true(raft_lease_valid(r, 0));
    /* The same boundary with the ticks delivered. */
    while (raft_now(r) < start + last_valid) {
        rnet_tick(net, 1);
        assert_true(raft_lease_valid(r, raft_now(r)));
    }
    rnet_tick(net, 1);
    assert_int_equal(raft_soft(r).role, RAFT_LEADER);
    assert_false(raft_lease_valid(r, raft_now(r)));
    uint64_t idx;
    assert_int_equal(raft_read_lease(r, raft_now(r), &idx), CRAFT_ETIMEOUT);
    finish(net);
}

static void test_lease_margin_boundary(void **state)
{
    (void)state;
    lease_boundary(NULL, 7); /* default margin: max(1, 10 / 10) */
    struct raft_config c = base();
    c.lease_margin_ticks = 3;
    lease_boundary(&c, 5);
    c.election_ticks = 20; /* default margin 2 (craftd's timing) */
    c.lease_margin_ticks = 0;
    lease_boundary(&c, 16);
    /* A margin that leaves no lease at all is a mistake. */
    struct raft *r = NULL;
    c = base();
    c.id = 1;
    c.lease_margin_ticks = 9;
    assert_int_equal(raft_new(&c, NULL, &r), CRAFT_EINVAL);
    c.lease_margin_ticks = 8;
    assert_int_equal(raft_new(&c, NULL, &r), 0);
    raft_free(r);
    /* Without check-quorum, followers refuse no votes: no lease. */
    c = base();
    c.disable_check_quorum = true;
    struct rnet *net = cluster(3, 3, &c);
    r = rnet_raft(net, rnet_elect(net, 100));
    rnet_tick(net, 2);
    assert_int_equal(raft_soft(r).role, RAFT_LEADER);
    assert_false(raft_lease_valid(r, raft_now(r)));
    finish(net);
}

/* Holds back every TIMEOUT_NOW, keeping the last one. */
struct held {
    struct raft_msg m;
    unsigned n;
};

static bool hold_timeout_now(void *arg, const struct raft_msg *m, bool after)
{
    (void)after;
    struct held *h = arg;
    if (m->type != RAFT_MSG_TIMEOUT_NOW)
        return true;
    h->m = *m; /* no entries, no snapshot data: a copy is whole */
    h->n++;
    return false;
}

/* A TIMEOUT_NOW, once sent, may arrive at any later time (a transport
 * queues frames across a redial) and start an election that ignores the
 * followers' leases. So a leader that sent one has no lease for the rest
 * of that term, even after the transfer is aborted. */
static void test_lease_void_after_timeout_now(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    rnet_tick(net, 2);
    struct raft *r = rnet_raft(net, l);
    uint64_t term = raft_soft(r).term, t = other(l, 1, 3);
    assert_true(raft_lease_valid(r, raft_now(r)));

    struct held h = {.n = 0};
    net->watch = hold_timeout_now;
    net->watch_arg = &h;
    assert_int_equal(raft_transfer_leader(r, t), 0); /* t is up to date */
    rnet_settle(net);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.m.to, t);
    net->watch = NULL;
    rnet_tick(net, 12); /* the transfer is aborted */
    assert_int_equal(rnet_leader(net), l);
    assert_int_equal(raft_soft(r).term, term);
    propose_ok(net, l, 1, 1); /* accepted again: no transfer under way */
    rnet_tick(net, 3);        /* rounds sent after the abort, answered */
    assert_int_equal(rnet_prop(net, l, 1)->err, 0);
    assert_false(raft_lease_valid(r, raft_now(r)));
    uint64_t idx;
    assert_int_equal(raft_read_lease(r, raft_now(r), &idx), CRAFT_ETIMEOUT);

    /* Why: the TIMEOUT_NOW arrives now, while l is cut off. t wins at
     * once, with the vote of a follower that heard l a tick ago. */
    rnet_isolate(net, l);
    assert_int_equal(raft_step(rnet_raft(net, t), &h.m), 0);
    rnet_settle(net);
    assert_int_equal(raft_soft(rnet_raft(net, t)).role, RAFT_LEADER);
    assert_int_equal(raft_soft(rnet_raft(net, t)).term, term + 1);
    assert_int_equal(raft_soft(r).role, RAFT_LEADER); /* l does not know */
    assert_false(raft_lease_valid(r, raft_now(r)));

    /* The rule lasts one term: t sent no TIMEOUT_NOW in its own. */
    rnet_heal(net);
    rnet_tick(net, 2);
    assert_int_equal(rnet_leader(net), t);
    assert_int_equal(raft_soft(r).role, RAFT_FOLLOWER);
    assert_true(raft_lease_valid(rnet_raft(net, t),
                                 raft_now(rnet_raft(net, t))));
    finish(net);
}

/* ---- leadership transfer ---- */

static void test_transfer_up_to_date(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    uint64_t term = raft_soft(rnet_raft(net, l)).term;
    uint64_t t = other(l, 2, 3);
    assert_int_equal(raft_transfer_leader(rnet_raft(net, l), t), 0);
    rnet_settle(net); /* no tick needed */
    assert_int_equal(rnet_leader(net), t);
    assert_int_equal(raft_soft(rnet_raft(net, t)).term, term + 1);
    assert_int_equal(raft_soft(rnet_raft(net, l)).role, RAFT_FOLLOWER);
    assert_int_equal(raft_soft(rnet_raft(net, l)).leader, t);
    propose_ok(net, l, 1, 99); /* forwarded to the new leader */
    rnet_settle(net);
    assert_int_equal(rnet_prop(net, l, 1)->err, 0);
    assert_true(sm_has(net, t, 99));
    finish(net);
}

static void test_transfer_lagging(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    uint64_t t = other(l, 1, 3);
    struct raft *r = rnet_raft(net, l);
    /* Appends to t are in flight: the leader can't know t has them. */
    for (uint64_t i = 0; i < 5; i++)
        propose_ok(net, l, 1 + i, 10 + i);
    rnet_flush(net, l);
    uint64_t last = raft_last_index(r);
    assert_int_equal(raft_transfer_leader(r, t), 0);
    rnet_flush(net, l);
    assert_int_equal(rnet_leader(net), l); /* not yet */
    assert_false(raft_lease_valid(r, raft_now(r)));
    propose_ok(net, l, 50, 50);
    rnet_flush(net, l);
    const struct raft_prop_result *p = rnet_prop(net, l, 50);
    assert_non_null(p);
    assert_int_equal(p->err, CRAFT_ETRANSFER);
    rnet_settle(net);
    assert_int_equal(rnet_leader(net), t);
    assert_true(raft_last_index(rnet_raft(net, t)) > last);
    assert_true(sm_has(net, t, 14));
    assert_false(sm_has(net, t, 50));

    /* Only to a voter. */
    struct rnet *net2 = cluster(4, 3, NULL);
    uint64_t l2 = rnet_elect(net2, 100);
    assert_int_equal(rnet_conf(net2, l2, 1, RAFT_CONF_ADD_LEARNER, 4), 0);
    rnet_settle(net2);
    assert_int_equal(rnet_prop(net2, l2, 1)->err, 0);
    assert_int_equal(raft_transfer_leader(rnet_raft(net2, l2), 4),
                     CRAFT_EINVAL);
    assert_int_equal(raft_transfer_leader(rnet_raft(net2, l2), 7),
                     CRAFT_EINVAL);
    assert_int_equal(raft_transfer_leader(rnet_raft(net2, l2), RAFT_NONE),
                     CRAFT_EINVAL);
    propose_ok(net2, l2, 2, 2); /* no transfer under way */
    rnet_settle(net2);
    assert_int_equal(rnet_prop(net2, l2, 2)->err, 0);
    finish(net2);
    finish(net);
}

/* A follower that lost appends while the leader then goes idle must still
 * catch up (heartbeats alone must lead to the missing entries). */
static void test_lost_appends_recovered_when_idle(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    uint64_t f = other(l, 1, 3);
    rnet_cut_one(net, l, f);
    for (uint64_t i = 0; i < 3; i++)
        propose_ok(net, l, 1 + i, 10 + i);
    rnet_settle(net); /* committed with the other follower */
    rnet_heal(net);
    rnet_tick(net, 30);
    assert_int_equal(raft_last_index(rnet_raft(net, f)),
                     raft_last_index(rnet_raft(net, l)));
    assert_true(sm_has(net, f, 12));
    finish(net);
}

/* ---- membership ---- */

static void test_membership_learner_promote(void **state)
{
    (void)state;
    struct rnet *net = cluster(4, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    uint64_t b = other(l, 1, 3), c = other(l, 2, 3);
    assert_int_equal(rnet_conf(net, l, 1, RAFT_CONF_ADD_LEARNER, 4), 0);
    rnet_settle(net);
    assert_int_equal(rnet_prop(net, l, 1)->err, 0);
    propose_ok(net, l, 2, 22);
    rnet_settle(net);
    struct raft *r4 = rnet_raft(net, 4);
    assert_true(raft_conf_is_learner(raft_conf(rnet_raft(net, l)), 4));
    assert_true(raft_conf_is_learner(raft_conf(r4), 4));
    assert_true(sm_has(net, 4, 22));
    /* Both name the learner's entry as the one that made the conf. */
    uint64_t ci = raft_conf_index(rnet_raft(net, l));
    assert_int_equal(raft_conf_index(r4), ci);
    assert_true(ci > 0 && ci < raft_last_index(r4));

    /* Not counted toward a commit. */
    rnet_cut(net, l, b);
    rnet_cut(net, l, c);
    uint64_t commit = raft_commit_index(rnet_raft(net, l));
    propose_ok(net, l, 3, 33);
    rnet_settle(net);
    assert_int_equal(raft_last_index(r4), commit + 1);
    assert_int_equal(raft_commit_index(rnet_raft(net, l)), commit);
    rnet_heal(net);
    propose_ok(net, l, 30, 34); /* the lost appends show up with the next */
    rnet_tick(net, 2);
    assert_int_equal(raft_commit_index(rnet_raft(net, l)), commit + 2);

    /* Never asked to vote, never campaigns. */
    struct counter votes = {.type = RAFT_MSG_PRE_VOTE, .to = 4, .reject = -1};
    net->watch = count_watch;
    net->watch_arg = &votes;
    rnet_crash(net, l);
    uint64_t l2 = rnet_elect(net, 200);
    assert_true(l2 != 4);
    assert_true(net->sent[RAFT_MSG_PRE_VOTE] > 0);
    assert_int_equal(votes.n, 0);
    struct counter own = {.type = RAFT_MSG_PRE_VOTE, .from = 4, .reject = -1};
    net->watch_arg = &own;
    uint64_t t4 = raft_soft(r4).term;
    rnet_isolate(net, 4);
    rnet_tick(net, 40);
    assert_int_equal(own.n, 0);
    assert_int_equal(raft_soft(r4).term, t4);
    assert_int_equal(raft_soft(r4).role, RAFT_FOLLOWER);
    net->watch = NULL;
    rnet_heal(net);
    assert_int_equal(rnet_restart(net, l), 0);
    rnet_tick(net, 3);

    /* Promote: now 3 of 4 voters are needed. */
    assert_int_equal(rnet_conf(net, l2, 4, RAFT_CONF_ADD_VOTER, 4), 0);
    rnet_settle(net);
    assert_int_equal(rnet_prop(net, l2, 4)->err, 0);
    assert_true(raft_conf_is_voter(raft_conf(rnet_raft(net, l2)), 4));
    assert_int_equal(raft_conf(rnet_raft(net, l2))->n_voters, 4);
    uint64_t x = other(l2, 1, 3), y = other(l2, 2, 3);
    rnet_cut(net, l2, x);
    rnet_cut(net, l2, y);
    commit = raft_commit_index(rnet_raft(net, l2));
    propose_ok(net, l2, 5, 55);
    rnet_settle(net);
    assert_int_equal(raft_commit_index(rnet_raft(net, l2)), commit);
    rnet_heal(net);
    rnet_cut(net, l2, x); /* l2, y and 4: a quorum of four */
    propose_ok(net, l2, 6, 66);
    rnet_tick(net, 2);
    assert_int_equal(raft_commit_index(rnet_raft(net, l2)), commit + 2);
    finish(net);
}

/* Keeps (and drops) the first successful append response of 4. */
struct keep_ack {
    bool armed, kept;
    struct raft_msg m;
};

static bool keep_ack_of_4(void *arg, const struct raft_msg *m, bool after)
{
    (void)after;
    struct keep_ack *k = arg;
    if (!k->armed || k->kept || m->type != RAFT_MSG_APP_RESP || m->from != 4 || m->reject)
        return true;
    k->m = *m;
    k->kept = true;
    return false;
}

/* A remove and a re-add of the same id in one term: an append response the
 * old member sent (delayed in the network) does not make the new one
 * "answered" nor give it a match: the new member may be another process
 * with an empty log, and caught up it could be promoted at once. */
static void test_stale_ack_after_readd(void **state)
{
    (void)state;
    struct rnet *net = cluster(5, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    struct raft *rl = rnet_raft(net, l);
    uint64_t term = raft_soft(rl).term;
    assert_int_equal(rnet_conf(net, l, 1, RAFT_CONF_ADD_LEARNER, 4), 0);
    rnet_tick(net, 10);
    assert_true(raft_caught_up(rl, 4, 0));
    struct keep_ack k = {.armed = true};
    net->watch = keep_ack_of_4;
    net->watch_arg = &k;
    propose_ok(net, l, 2, 42);
    rnet_tick(net, 3);
    assert_true(k.kept);
    net->watch = NULL;
    assert_true(k.m.index >= 3);
    assert_int_equal(rnet_conf(net, l, 3, RAFT_CONF_REMOVE, 4), 0);
    rnet_tick(net, 5);
    assert_int_equal(rnet_prop(net, l, 3)->err, 0);
    assert_false(raft_conf_is_learner(raft_conf(rl), 4));
    /* back, but nobody answers at its address yet */
    rnet_crash(net, 4);
    assert_int_equal(rnet_conf(net, l, 4, RAFT_CONF_ADD_LEARNER, 4), 0);
    rnet_tick(net, 5);
    assert_int_equal(rnet_prop(net, l, 4)->err, 0);
    assert_true(raft_conf_is_learner(raft_conf(rl), 4));
    assert_int_equal(raft_soft(rl).term, term);
    assert_false(raft_caught_up(rl, 4, UINT64_MAX / 2));
    /* the old member's acknowledgement arrives now */
    assert_int_equal(raft_step(rl, &k.m), 0);
    uint64_t match = 1, next = 0;
    assert_true(raft_progress(rl, 4, &match, &next));
    assert_int_equal(match, 0);
    assert_false(raft_caught_up(rl, 4, UINT64_MAX / 2));
    /* the new member's own answers count */
    assert_int_equal(rnet_restart(net, 4), 0);
    rnet_tick(net, 10);
    assert_true(raft_caught_up(rl, 4, 0));
    finish(net);
}

/* Drops 4's successful append responses; lets its rejections through. */
static bool drop_acks_of_4(void *arg, const struct raft_msg *m, bool after)
{
    (void)arg;
    (void)after;
    return !(m->type == RAFT_MSG_APP_RESP && m->from == 4 && !m->reject);
}

/* A learner is caught up only once the leader has had a successful append
 * response from it. In a young cluster (commit < 64) the rule "match + 64
 * >= commit" alone holds for a learner that never answered (match 0), so
 * a join with a bogus address was promoted at once; two or three of them
 * left the cluster without a quorum. */
static void test_caught_up_needs_an_answer(void **state)
{
    (void)state;
    struct rnet *net = cluster(5, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    struct raft *rl = rnet_raft(net, l);
    rnet_crash(net, 4); /* a bogus address: nobody there */
    assert_int_equal(rnet_conf(net, l, 1, RAFT_CONF_ADD_LEARNER, 4), 0);
    rnet_tick(net, 30);
    assert_int_equal(rnet_prop(net, l, 1)->err, 0);
    assert_true(raft_conf_is_learner(raft_conf(rl), 4));
    uint64_t match = 1, next = 0;
    assert_true(raft_progress(rl, 4, &match, &next));
    assert_int_equal(match, 0);
    assert_true(match + 64 >= raft_commit_index(rl)); /* the old rule */
    assert_false(raft_caught_up(rl, 4, 64));
    assert_false(raft_caught_up(rl, 4, UINT64_MAX / 2));

    /* Heard from, but only refusals: still not caught up. */
    assert_int_equal(rnet_restart(net, 4), 0);
    net->watch = drop_acks_of_4;
    rnet_tick(net, 30);
    assert_false(raft_caught_up(rl, 4, 64));
    /* Its first real acknowledgement makes it so. */
    net->watch = NULL;
    rnet_tick(net, 5);
    assert_true(raft_caught_up(rl, 4, 64));
    assert_true(raft_caught_up(rl, 4, 0));

    /* Far behind: answered, but not within the bound. */
    rnet_cut(net, l, 4);
    for (uint64_t i = 0; i < 10; i++)
        propose_ok(net, l, 10 + i, 100 + i);
    rnet_tick(net, 3);
    assert_false(raft_caught_up(rl, 4, 5));
    assert_true(raft_caught_up(rl, 4, 64));
    rnet_heal(net);
    rnet_tick(net, 5);
    assert_true(raft_caught_up(rl, 4, 0));

    /* Only the leader knows; never itself, never a non-member. */
    uint64_t f = other(l, 1, 3);
    assert_false(raft_caught_up(rnet_raft(net, f), 4, 64));
    assert_false(raft_caught_up(rl, l, 64));
    assert_false(raft_caught_up(rl, 5, 64));

    /* A new leader must hear from it itself. */
    rnet_isolate(net, 4);
    rnet_crash(net, l);
    uint64_t l2 = wait_new_leader(net, l);
    assert_false(raft_caught_up(rnet_raft(net, l2), 4, UINT64_MAX / 2));
    rnet_heal(net);
    rnet_tick(net, 5);
    assert_true(raft_caught_up(rnet_raft(net, l2), 4, 0));
    assert_int_equal(rnet_restart(net, l), 0);
    rnet_tick(net, 3);
    finish(net);
}

static void test_membership_add_voter_and_one_at_a_time(void **state)
{
    (void)state;
    struct rnet *net = cluster(5, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    assert_int_equal(rnet_conf(net, l, 1, RAFT_CONF_ADD_VOTER, 4), 0);
    assert_int_equal(rnet_conf(net, l, 2, RAFT_CONF_ADD_VOTER, 5), 0);
    rnet_settle(net);
    assert_int_equal(rnet_prop(net, l, 1)->err, 0);
    assert_int_equal(rnet_prop(net, l, 2)->err, CRAFT_EBUSY);
    assert_true(raft_conf_is_voter(raft_conf(rnet_raft(net, 4)), 4));
    assert_int_equal(raft_conf(rnet_raft(net, 4))->n_voters, 4);
    /* Changes that make no sense are refused. */
    assert_int_equal(rnet_conf(net, l, 3, RAFT_CONF_ADD_VOTER, 4), 0);
    assert_int_equal(rnet_conf(net, l, 4, RAFT_CONF_REMOVE, 6), 0);
    assert_int_equal(rnet_conf(net, l, 5, 9, 4), CRAFT_EINVAL);
    rnet_settle(net);
    assert_int_equal(rnet_prop(net, l, 3)->err, CRAFT_EEXISTS);
    assert_int_equal(rnet_prop(net, l, 4)->err, CRAFT_ENOTFOUND);
    assert_int_equal(rnet_conf(net, l, 6, RAFT_CONF_ADD_VOTER, 5), 0);
    rnet_settle(net);
    assert_int_equal(rnet_prop(net, l, 6)->err, 0);
    assert_int_equal(raft_conf(rnet_raft(net, l))->n_voters, 5);
    propose_ok(net, l, 7, 77);
    rnet_settle(net);
    for (uint64_t id = 1; id <= 5; id++)
        assert_true(sm_has(net, id, 77));

    /* A new leader may not change membership before its term commits. */
    rnet_crash(net, l);
    uint64_t l2 = wait_new_leader(net, l);
    assert_int_equal(rnet_conf(net, l2, 8, RAFT_CONF_REMOVE, l), 0);
    rnet_flush(net, l2);
    assert_int_equal(rnet_prop(net, l2, 8)->err, CRAFT_EBUSY);
    rnet_settle(net);
    assert_int_equal(rnet_conf(net, l2, 9, RAFT_CONF_REMOVE, l), 0);
    rnet_settle(net);
    assert_int_equal(rnet_prop(net, l2, 9)->err, 0);
    assert_false(raft_conf_is_voter(raft_conf(rnet_raft(net, l2)), l));
    finish(net);
}

static void test_membership_remove(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    uint64_t b = other(l, 1, 3), c = other(l, 2, 3);
    /* Remove a follower: then the two others are the whole quorum. */
    assert_int_equal(rnet_conf(net, l, 1, RAFT_CONF_REMOVE, c), 0);
    rnet_settle(net);
    assert_int_equal(rnet_prop(net, l, 1)->err, 0);
    assert_false(raft_conf_is_voter(raft_conf(rnet_raft(net, l)), c));
    rnet_tick(net, 2);
    assert_false(raft_conf_is_voter(raft_conf(rnet_raft(net, b)), c));
    rnet_crash(net, c);
    propose_ok(net, l, 2, 22);
    rnet_settle(net);
    assert_true(sm_has(net, b, 22));

    /* Remove the leader: it steps down, b carries on alone. */
    assert_int_equal(rnet_conf(net, l, 3, RAFT_CONF_REMOVE, l), 0);
    rnet_settle(net);
    assert_int_equal(rnet_prop(net, l, 3)->err, 0);
    /* It hands over to b within a heartbeat or two. */
    propose_ok(net, l, 5, 55);
    rnet_settle(net);
    assert_true(rnet_prop(net, l, 5)->err != 0);
    for (int t = 0; t < 3 && raft_soft(rnet_raft(net, l)).role == RAFT_LEADER;
         t++)
        rnet_tick(net, 1);
    assert_int_equal(raft_soft(rnet_raft(net, l)).role, RAFT_FOLLOWER);
    assert_int_equal(rnet_leader(net), b);
    uint64_t l2 = rnet_elect(net, 200);
    assert_int_equal(l2, b);
    const struct raft_conf *cf = raft_conf(rnet_raft(net, b));
    assert_int_equal(cf->n_voters, 1);
    assert_int_equal(cf->voters[0], b);
    propose_ok(net, b, 4, 44);
    rnet_settle(net);
    assert_true(sm_has(net, b, 44));
    rnet_tick(net, 30); /* the removed leader does not disrupt */
    assert_int_equal(rnet_leader(net), b);
    finish(net);
}

/* ---- snapshots ---- */

static struct raft_config snap_cfg(void)
{
    struct raft_config c = base();
    c.snapshot_threshold = 5;
    c.snapshot_trailing = 2;
    c.snap_chunk_bytes = 24; /* three values per chunk */
    return c;
}

static void test_snapshot_taken_compacts(void **state)
{
    (void)state;
    struct raft_config c = snap_cfg();
    struct rnet *net = cluster(3, 3, &c);
    uint64_t l = rnet_elect(net, 100);
    for (uint64_t i = 0; i < 10; i++)
        propose_ok(net, l, 1 + i, i);
    rnet_settle(net);
    struct rnet_node *nd = rnet_node(net, l);
    assert_true(nd->want_snapshot);
    assert_int_equal(raft_first_index(nd->r), 1);
    uint64_t applied = raft_applied_index(nd->r);
    assert_int_equal(raft_snapshot_taken(nd->r, applied + 1, 8, NULL),
                     CRAFT_EINVAL);
    assert_int_equal(rnet_snapshot(net, l), 0);
    assert_int_equal(raft_snapshot(nd->r)->index, applied);
    assert_int_equal(raft_snapshot(nd->r)->size, 80);
    assert_int_equal(raft_snapshot(nd->r)->conf.n_voters, 3);
    /* A leader whose followers hold everything keeps nothing behind. */
    assert_int_equal(raft_first_index(nd->r), applied + 1);
    assert_int_equal(raft_snapshot_taken(nd->r, applied - 1, 8, NULL),
                     CRAFT_EINVAL); /* older than the one it has */
    /* A follower keeps its trail: it cannot know what the others hold. */
    uint64_t f = other(l, 1, 3);
    struct rnet_node *fd = rnet_node(net, f);
    uint64_t fa = raft_applied_index(fd->r);
    assert_int_equal(rnet_snapshot(net, f), 0);
    assert_int_equal(raft_first_index(fd->r), fa - 2 + 1);
    propose_ok(net, l, 20, 20);
    rnet_settle(net);
    assert_false(nd->want_snapshot);
    finish(net);
}

/* A leader keeps what its slowest member lacks, within the trail, and
 * all of the trail for a member whose match it does not know yet. */
static void test_snapshot_trail_follows_members(void **state)
{
    (void)state;
    struct raft_config c = snap_cfg();
    c.snapshot_threshold = 0;
    c.snapshot_trailing = 5;
    struct rnet *net = cluster(3, 3, &c);
    uint64_t l = rnet_elect(net, 100);
    uint64_t f = other(l, 1, 3), g = other(l, f, 3);
    for (uint64_t i = 0; i < 4; i++)
        propose_ok(net, l, 1 + i, i);
    rnet_settle(net);
    uint64_t lag = raft_applied_index(rnet_raft(net, g));
    rnet_isolate(net, g);
    for (uint64_t i = 0; i < 3; i++)
        propose_ok(net, l, 10 + i, i);
    rnet_settle(net);
    struct raft *rl = rnet_raft(net, l);
    uint64_t applied = raft_applied_index(rl);
    assert_int_equal(applied, lag + 3);
    assert_int_equal(rnet_snapshot(net, l), 0);
    assert_int_equal(raft_first_index(rl), lag + 1); /* what g lacks */
    /* g further behind than the trail: the trail bounds it. */
    for (uint64_t i = 0; i < 6; i++)
        propose_ok(net, l, 20 + i, i);
    rnet_settle(net);
    applied = raft_applied_index(rl);
    assert_int_equal(rnet_snapshot(net, l), 0);
    assert_int_equal(raft_first_index(rl), applied - 5 + 1);
    rnet_heal(net); /* g catches up by the snapshot */
    propose_ok(net, l, 30, 30);
    rnet_settle(net);
    assert_int_equal(raft_applied_index(rnet_raft(net, g)),
                     raft_applied_index(rl));
    finish(net);
}

/* The window kept behind a snapshot is bounded in bytes as well as in
 * entries. */
static void test_snapshot_trailing_bytes(void **state)
{
    (void)state;
    struct raft_config c = snap_cfg();
    c.snapshot_trailing = 100;
    c.snapshot_trailing_bytes = 20; /* two 8-byte values, not three */
    struct rnet *net = cluster(3, 3, &c);
    uint64_t l = rnet_elect(net, 100);
    for (uint64_t i = 0; i < 10; i++)
        propose_ok(net, l, 1 + i, i);
    rnet_settle(net);
    uint64_t f = other(l, 1, 3); /* a follower: it keeps its trail */
    struct rnet_node *nd = rnet_node(net, f);
    uint64_t applied = raft_applied_index(nd->r);
    assert_int_equal(rnet_snapshot(net, f), 0);
    assert_int_equal(raft_first_index(nd->r), applied - 2 + 1);
    finish(net);
}

struct dropper {
    uint8_t type;
    uint64_t offset;
    unsigned left;
};

static bool drop_watch(void *arg, const struct raft_msg *m, bool after)
{
    (void)after;
    struct dropper *d = arg;
    for (int i = 0; i < 2; i++, d++) {
        if (d->left > 0 && m->type == d->type && m->snap.offset == d->offset) {
            d->left--;
            return false;
        }
    }
    return true;
}

static void snapshot_catch_up(bool lossy)
{
    struct raft_config c = snap_cfg();
    struct rnet *net = cluster(3, 3, &c);
    net->auto_snapshot = true;
    uint64_t l = rnet_elect(net, 100);
    uint64_t f = other(l, 1, 3);
    rnet_isolate(net, f);
    for (uint64_t i = 0; i < 30; i++)
        propose_ok(net, l, 1 + i, 100 + i);
    rnet_settle(net);
    struct raft *rl = rnet_raft(net, l);
    assert_true(raft_first_index(rl) > raft_last_index(rnet_raft(net, f)));
    struct dropper d[2] = {{RAFT_MSG_SNAP, 24, 1}, {RAFT_MSG_SNAP_RESP, 72, 1}};
    if (lossy) {
        net->watch = drop_watch;
        net->watch_arg = d;
    }
    rnet_heal(net);
    propose_ok(net, l, 99, 999);
    for (int t = 0; t < 60; t++) {
        if (raft_last_index(rnet_raft(net, f)) == raft_last_index(rl) &&
            raft_commit_index(rnet_raft(net, f)) == raft_commit_index(rl))
            break;
        rnet_tick(net, 1);
    }
    struct rnet_node *nf = rnet_node(net, f);
    assert_int_equal(raft_last_index(nf->r), raft_last_index(rl));
    assert_true(nf->snap.index > 0);
    assert_true(nf->n_snap_chunks >= 2);
    assert_int_equal(nf->n_sm, 31);
    assert_true(rnet_sm_consistent(net, f, l));
    assert_true(sm_has(net, f, 999));
    if (lossy) {
        assert_int_equal(d[0].left, 0);
        assert_int_equal(d[1].left, 0);
    }
    finish(net);
}

static void test_snapshot_chunks(void **state)
{
    (void)state;
    snapshot_catch_up(false);
}

static void test_snapshot_chunks_lossy(void **state)
{
    (void)state;
    snapshot_catch_up(true);
}

/* ---- restarts ---- */

static void test_restart_keeps_state(void **state)
{
    (void)state;
    struct raft_config c = snap_cfg();
    struct rnet *net = cluster(3, 3, &c);
    uint64_t l = rnet_elect(net, 100);
    for (uint64_t i = 0; i < 8; i++)
        propose_ok(net, l, 1 + i, 300 + i);
    rnet_settle(net);
    uint64_t f = other(l, 1, 3);
    assert_int_equal(rnet_snapshot(net, f), 0);
    struct raft_hard_state hs = raft_hard(rnet_raft(net, f));
    uint64_t last = raft_last_index(rnet_raft(net, f));
    uint64_t snap = raft_snapshot(rnet_raft(net, f))->index;
    rnet_crash(net, f);
    assert_int_equal(rnet_restart(net, f), 0);
    struct raft *rf = rnet_raft(net, f);
    struct raft_hard_state hs2 = raft_hard(rf);
    assert_int_equal(hs2.term, hs.term);
    assert_int_equal(hs2.vote, hs.vote);
    assert_int_equal(raft_last_index(rf), last);
    assert_int_equal(raft_snapshot(rf)->index, snap);
    assert_int_equal(raft_conf(rf)->n_voters, 3);
    assert_int_equal(raft_soft(rf).role, RAFT_FOLLOWER);
    rnet_tick(net, 3);
    assert_int_equal(rnet_node(net, f)->n_sm, 8);
    assert_true(rnet_sm_consistent(net, f, l));

    /* The whole cluster down and up again. */
    uint64_t term = raft_soft(rnet_raft(net, l)).term;
    for (uint64_t id = 1; id <= 3; id++)
        rnet_crash(net, id);
    for (uint64_t id = 1; id <= 3; id++)
        assert_int_equal(rnet_restart(net, id), 0);
    uint64_t l2 = rnet_elect(net, 200);
    assert_true(raft_soft(rnet_raft(net, l2)).term > term);
    propose_ok(net, l2, 50, 50);
    rnet_settle(net);
    for (uint64_t id = 1; id <= 3; id++) {
        assert_int_equal(rnet_node(net, id)->n_sm, 9);
        assert_true(rnet_sm_consistent(net, id, l2));
    }
    finish(net);
}

static void test_restart_corrupt(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    rnet_settle(net);
    uint64_t f = other(l, 1, 3);
    struct rnet_node *nd = rnet_node(net, f);
    rnet_crash(net, f);
    struct raft *r = NULL;
    /* A commit index past the last entry: an acknowledged write is gone. */
    struct raft_persisted p = {.hs = nd->hs, .entries = nd->log,
                               .n_entries = nd->n_log};
    p.hs.commit = nd->log[nd->n_log - 1].index + 1;
    assert_int_equal(raft_new(&nd->cfg, &p, &r), CRAFT_ECORRUPT);
    /* A gap between the snapshot and the log. */
    p.hs = nd->hs;
    p.entries = nd->log + 2;
    p.n_entries = nd->n_log - 2;
    assert_int_equal(raft_new(&nd->cfg, &p, &r), CRAFT_ECORRUPT);
    /* A hole inside the log. */
    struct raft_entry e[3] = {nd->log[0], nd->log[1], nd->log[3]};
    p.entries = e;
    p.n_entries = 3;
    p.hs.commit = 1;
    assert_int_equal(raft_new(&nd->cfg, &p, &r), CRAFT_ECORRUPT);
    /* Terms going backwards. */
    struct raft_entry e2[2] = {nd->log[0], nd->log[1]};
    e2[0].term = 3;
    p.entries = e2;
    p.n_entries = 2;
    assert_int_equal(raft_new(&nd->cfg, &p, &r), CRAFT_ECORRUPT);
    /* A bad config. */
    struct raft_config bad = base();
    assert_int_equal(raft_new(&bad, NULL, &r), CRAFT_EINVAL);
    bad.id = 1;
    bad.heartbeat_ticks = 10;
    assert_int_equal(raft_new(&bad, NULL, &r), CRAFT_EINVAL);
    /* The real thing still restarts. */
    assert_int_equal(rnet_restart(net, f), 0);
    finish(net);
}

/* Frees the core a test left in *state, even if the test failed. */
static int free_core(void **state)
{
    raft_free(*state);
    *state = NULL;
    return 0;
}

static void test_bootstrap_errors(void **state)
{
    struct raft_config c = base();
    c.id = 1;
    struct raft *r;
    assert_int_equal(raft_new(&c, NULL, &r), 0);
    *state = r;
    uint64_t none[2] = {1, RAFT_NONE};
    assert_int_equal(raft_bootstrap(r, none, 0, NULL), CRAFT_EINVAL);
    /* A refused bootstrap leaves the log empty: it can be retried. */
    assert_int_equal(raft_bootstrap(r, none, 2, NULL), CRAFT_EINVAL);
    assert_int_equal(raft_last_index(r), 0);
    uint64_t v[1] = {1};
    assert_int_equal(raft_bootstrap(r, v, 1, NULL), 0);
    assert_int_equal(raft_bootstrap(r, v, 1, NULL), CRAFT_EINVAL);
    persist_all(r);
    assert_int_equal(raft_commit_index(r), 1);
}

/* ---- raft_step validation ---- */

static void test_step_rejects_malformed(void **state)
{
    (void)state;
    uint64_t voters[3] = {1, 2, 3};
    struct raft_config c = base();
    c.id = 1;
    struct raft *r;
    assert_int_equal(raft_new(&c, NULL, &r), 0);
    assert_int_equal(raft_bootstrap(r, voters, 3, NULL), 0);
    persist_all(r);
    uint64_t term = raft_soft(r).term;

    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 1,
                         .term = 7};
    m.type = 0;
    assert_int_equal(raft_step(r, &m), CRAFT_EINVAL);
    m.type = RAFT_MSG__COUNT;
    assert_int_equal(raft_step(r, &m), CRAFT_EINVAL);
    m.type = RAFT_MSG_HEARTBEAT;
    m.to = 2;
    assert_int_equal(raft_step(r, &m), CRAFT_EINVAL);
    m.to = 1;
    m.from = RAFT_NONE;
    assert_int_equal(raft_step(r, &m), CRAFT_EINVAL);
    m.from = 1;
    assert_int_equal(raft_step(r, &m), CRAFT_EINVAL);
    assert_int_equal(raft_soft(r).term, term);

    struct raft_entry e[3] = {{.term = 7, .index = 4},
                              {.term = 7, .index = 6},
                              {.term = 7, .index = 7}};
    struct raft_msg app = {.type = RAFT_MSG_APP, .from = 2, .to = 1,
                           .term = 7, .index = 3, .log_term = 1,
                           .n_entries = 3, .entries = e};
    assert_int_equal(raft_step(r, &app), CRAFT_EINVAL); /* a gap */
    e[1].index = 5;
    e[2].index = 6;
    e[1].term = 8;
    assert_int_equal(raft_step(r, &app), CRAFT_EINVAL); /* term > msg's */
    e[1].term = 6;
    assert_int_equal(raft_step(r, &app), CRAFT_EINVAL); /* terms go back */
    e[1].term = 7;
    e[0].index = 5;
    assert_int_equal(raft_step(r, &app), CRAFT_EINVAL); /* not after index */
    e[0].index = 4;
    assert_int_equal(raft_soft(r).term, term);
    assert_int_equal(raft_last_index(r), 3);
    assert_int_equal(raft_step(r, &app), 0); /* now well-formed */
    assert_int_equal(raft_soft(r).term, 7);
    persist_all(r);
    assert_int_equal(raft_last_index(r), 6);
    raft_free(r);
}

/* ---- messages are checked, not believed (bounds, the term's leader) ---- */

/* A forged term beyond the bound is dropped by every role; one within it
 * but far ahead moves the term by RAFT_TERM_JUMP_MAX only; the cluster
 * elects and commits afterwards as usual. */
static void test_forged_huge_term_dropped(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    uint64_t f = other(l, 1, 3), g = other(l, 2, 3);
    struct raft *rl = rnet_raft(net, l), *rf = rnet_raft(net, f);
    uint64_t term = raft_soft(rl).term;

    uint64_t huge[3] = {UINT64_MAX, UINT64_MAX - 1, RAFT_TERM_MAX + 1};
    for (int i = 0; i < 3; i++) {
        struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = f, .to = l,
                              .term = huge[i]};
        assert_int_equal(raft_step(rl, &hb), CRAFT_EINVAL);
        struct raft_msg resp = {.type = RAFT_MSG_APP_RESP, .from = f, .to = l,
                                .term = huge[i], .reject = true};
        assert_int_equal(raft_step(rl, &resp), CRAFT_EINVAL);
        struct raft_msg vote = {.type = RAFT_MSG_VOTE, .from = g, .to = f,
                                .term = huge[i], .transfer = true,
                                .index = raft_last_index(rf),
                                .log_term = huge[i]};
        assert_int_equal(raft_step(rf, &vote), CRAFT_EINVAL);
    }
    assert_int_equal(raft_stats(rl).absurd, 6);
    assert_int_equal(raft_stats(rf).absurd, 3);
    rnet_settle(net);
    assert_int_equal(raft_soft(rl).term, term);
    assert_int_equal(raft_soft(rl).role, RAFT_LEADER);
    assert_int_equal(raft_hard(rf).term, term);
    assert_int_equal(raft_hard(rf).vote, raft_hard(rl).vote);
    propose_ok(net, l, 1, 11);
    rnet_settle(net);
    for (uint64_t id = 1; id <= 3; id++)
        assert_true(sm_has(net, id, 11));

    /* Within the bound, but further ahead than a node can fall behind in
     * one go: the leader steps down by RAFT_TERM_JUMP_MAX terms, no more. */
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = f, .to = l,
                          .term = RAFT_TERM_MAX - 5};
    assert_int_equal(raft_step(rl, &hb), CRAFT_EINVAL);
    assert_int_equal(raft_stats(rl).jumps_capped, 1);
    assert_int_equal(raft_soft(rl).term, term + RAFT_TERM_JUMP_MAX);
    assert_int_equal(raft_soft(rl).role, RAFT_FOLLOWER);
    assert_int_equal(raft_hard(rl).vote, RAFT_NONE);
    uint64_t l2 = rnet_elect(net, 300);
    uint64_t term2 = raft_soft(rnet_raft(net, l2)).term;
    assert_true(term2 > term + RAFT_TERM_JUMP_MAX);
    assert_true(term2 < term + RAFT_TERM_JUMP_MAX + 10);
    propose_ok(net, l2, 2, 22);
    rnet_settle(net);
    for (uint64_t id = 1; id <= 3; id++) {
        assert_true(sm_has(net, id, 22));
        assert_true(rnet_sm_consistent(net, id, l2));
    }
    finish(net);
}

/* A node never campaigns into the bound, and refuses to start from a term
 * beyond it. */
static void test_term_bound_campaign_refused(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    rnet_settle(net);
    uint64_t f = other(l, 1, 3);
    struct rnet_node *nd = rnet_node(net, f);
    rnet_crash(net, f);
    nd->hs.term = RAFT_TERM_MAX + 1;
    nd->hs.vote = RAFT_NONE;
    assert_int_equal(rnet_restart(net, f), CRAFT_ECORRUPT);
    nd->hs.term = RAFT_TERM_MAX - 1;
    assert_int_equal(rnet_restart(net, f), 0);
    struct raft *rf = rnet_raft(net, f);
    assert_int_equal(raft_campaign(rf), CRAFT_EINVAL);
    assert_int_equal(raft_stats(rf).campaigns_refused, 1);
    /* Nor by its own timeout (the others are cut off: nobody to follow). */
    rnet_isolate(net, f);
    rnet_tick(net, 50);
    assert_int_equal(raft_soft(rf).term, RAFT_TERM_MAX - 1);
    assert_int_equal(raft_soft(rf).role, RAFT_FOLLOWER);
    assert_true(raft_stats(rf).campaigns_refused > 1);
    finish(net);
}

/* Indexes and ranges that wrap or that no log could reach are dropped,
 * even from the leader of the term. */
static void test_forged_indexes_dropped(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    rnet_settle(net);
    uint64_t f = other(l, 1, 3);
    struct raft *rf = rnet_raft(net, f), *rl = rnet_raft(net, l);
    uint64_t term = raft_soft(rf).term, last = raft_last_index(rf);
    uint64_t commit = raft_commit_index(rf);

    /* index + 1 wraps to 0: the entry would "continue" the index. */
    struct raft_entry e = {.term = term, .index = 0};
    struct raft_msg app = {.type = RAFT_MSG_APP, .from = l, .to = f,
                           .term = term, .index = UINT64_MAX,
                           .log_term = term, .n_entries = 1, .entries = &e};
    assert_int_equal(raft_step(rf, &app), CRAFT_EINVAL);
    /* The last entry would land beyond the bound. */
    app.index = RAFT_INDEX_MAX;
    e.index = RAFT_INDEX_MAX + 1;
    assert_int_equal(raft_step(rf, &app), CRAFT_EINVAL);
    /* A commit no log reaches, in an append and in a heartbeat. */
    e.index = last + 1;
    app.index = last;
    app.commit = UINT64_MAX;
    assert_int_equal(raft_step(rf, &app), CRAFT_EINVAL);
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = l, .to = f,
                          .term = term, .commit = RAFT_INDEX_MAX + 1};
    assert_int_equal(raft_step(rf, &hb), CRAFT_EINVAL);
    /* A previous entry newer than the sender's own term. */
    app.commit = 0;
    app.log_term = term + 1;
    assert_int_equal(raft_step(rf, &app), CRAFT_EINVAL);
    /* A snapshot chunk whose offset + length wraps. */
    struct raft_msg snap = {.type = RAFT_MSG_SNAP, .from = l, .to = f,
                            .term = term};
    snap.snap.meta.index = last + 10;
    snap.snap.meta.term = term;
    snap.snap.meta.size = 100;
    snap.snap.offset = UINT64_MAX - 3;
    snap.snap.len = 10;
    assert_int_equal(raft_step(rf, &snap), CRAFT_EINVAL);
    snap.snap.offset = 95;
    assert_int_equal(raft_step(rf, &snap), CRAFT_EINVAL);
    /* Answers to the leader claiming a match no log has. */
    struct raft_msg ar = {.type = RAFT_MSG_APP_RESP, .from = f, .to = l,
                          .term = term, .index = UINT64_MAX};
    assert_int_equal(raft_step(rl, &ar), CRAFT_EINVAL);
    struct raft_msg sr = {.type = RAFT_MSG_SNAP_RESP, .from = f, .to = l,
                          .term = term};
    sr.snap.meta.index = UINT64_MAX;
    assert_int_equal(raft_step(rl, &sr), CRAFT_EINVAL);
    assert_int_equal(raft_stats(rf).absurd, 7);
    assert_int_equal(raft_stats(rl).absurd, 2);
    rnet_settle(net);
    assert_int_equal(raft_last_index(rf), last);
    assert_int_equal(raft_commit_index(rf), commit);
    uint64_t match, next;
    assert_true(raft_progress(rl, f, &match, &next));
    assert_true(match <= raft_last_index(rl));
    /* A well-formed append still goes through. */
    propose_ok(net, l, 1, 33);
    rnet_settle(net);
    assert_true(sm_has(net, f, 33));
    finish(net);
}

/* A follower that knows the leader of its term refuses a leader's message
 * of that term from anyone else: no entry kept, no step down, no timer
 * reset; the real leader's entry at that index is then taken. */
static void test_second_sender_for_term_refused(void **state)
{
    (void)state;
    struct rnet *net = cluster(3, 3, NULL);
    uint64_t l = rnet_elect(net, 100);
    rnet_settle(net);
    uint64_t f = other(l, 1, 3), g = other(l, 2, 3);
    struct raft *rf = rnet_raft(net, f), *rl = rnet_raft(net, l);
    uint64_t term = raft_soft(rf).term, last = raft_last_index(rf);

    /* g claims to lead our term, appending at the next index. */
    struct raft_entry e = {.term = term, .index = last + 1,
                           .type = RAFT_ENTRY_NOOP};
    struct raft_msg app = {.type = RAFT_MSG_APP, .from = g, .to = f,
                           .term = term, .index = last,
                           .log_term = raft_term_at(rf, last),
                           .commit = last + 1, .n_entries = 1, .entries = &e};
    assert_int_equal(raft_step(rf, &app), CRAFT_EINVAL);
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = g, .to = f,
                          .term = term};
    assert_int_equal(raft_step(rf, &hb), CRAFT_EINVAL);
    struct raft_msg tn = {.type = RAFT_MSG_TIMEOUT_NOW, .from = g, .to = f,
                          .term = term};
    assert_int_equal(raft_step(rf, &tn), CRAFT_EINVAL);
    struct raft_msg sn = {.type = RAFT_MSG_SNAP, .from = g, .to = f,
                          .term = term};
    sn.snap.meta.index = last + 5;
    sn.snap.meta.term = term;
    sn.snap.meta.size = 4;
    sn.snap.len = 4;
    sn.snap.last = true;
    sn.snap.data = (const uint8_t *)"snap";
    assert_int_equal(raft_step(rf, &sn), CRAFT_EINVAL);
    /* The leader itself refuses another leader of its term. */
    app.to = l;
    assert_int_equal(raft_step(rl, &app), CRAFT_EINVAL);
    assert_int_equal(raft_stats(rf).not_term_leader, 4);
    assert_int_equal(raft_stats(rl).not_term_leader, 1);
    assert_int_equal(raft_last_index(rf), last);
    assert_int_equal(raft_soft(rf).leader, l);
    assert_int_equal(raft_soft(rf).role, RAFT_FOLLOWER);
    assert_int_equal(raft_soft(rl).role, RAFT_LEADER);
    assert_int_equal(raft_soft(rl).term, term);

    /* The real leader's entry at that index is taken. */
    propose_ok(net, l, 1, 44);
    rnet_settle(net);
    assert_int_equal(raft_term_at(rf, last + 1), term);
    assert_true(sm_has(net, f, 44));
    assert_true(rnet_sm_consistent(net, f, l));

    /* Still refused by a pre-candidate of the same term (it knows who led
     * it), and forged heartbeats do not hold its election timer back: cut
     * off from the leader, f still campaigns. */
    rnet_isolate(net, l);
    rnet_cut(net, f, g);
    app.to = f;
    app.index = raft_last_index(rf);
    app.log_term = raft_term_at(rf, app.index);
    e.index = app.index + 1;
    bool campaigned = false;
    for (unsigned t = 0; t < 40 && !campaigned; t++) {
        hb.term = raft_soft(rf).term;
        int rv = raft_step(rf, &hb);
        if (raft_soft(rf).term == term)
            assert_int_equal(rv, CRAFT_EINVAL);
        raft_tick(rf);
        rnet_settle(net);
        campaigned = raft_soft(rf).role != RAFT_FOLLOWER;
    }
    assert_true(campaigned);
    if (raft_soft(rf).role == RAFT_PRE_CANDIDATE) {
        assert_int_equal(raft_soft(rf).term, term);
        assert_int_equal(raft_step(rf, &app), CRAFT_EINVAL);
        assert_int_equal(raft_soft(rf).role, RAFT_PRE_CANDIDATE);
    }
    assert_true(raft_last_index(rf) < e.index);
    rnet_heal(net);
    uint64_t l2 = rnet_elect(net, 300);
    propose_ok(net, l2, 2, 55);
    rnet_settle(net);
    for (uint64_t id = 1; id <= 3; id++) {
        assert_true(sm_has(net, id, 55));
        assert_true(rnet_sm_consistent(net, id, l2));
    }
    finish(net);
}

/* ---- calls made while a ready batch is out ---- */

static void test_step_while_ready_out(void **state)
{
    (void)state;
    uint64_t voters[3] = {1, 2, 3};
    struct raft_config c = base();
    c.id = 1;
    struct raft *r;
    assert_int_equal(raft_new(&c, NULL, &r), 0);
    assert_int_equal(raft_bootstrap(r, voters, 3, NULL), 0);
    persist_all(r);
    /* Leader 2 of term 2 appends 4..6 (commit 3). */
    struct raft_entry e[3] = {{.term = 2, .index = 4},
                              {.term = 2, .index = 5},
                              {.term = 2, .index = 6}};
    struct raft_msg app = {.type = RAFT_MSG_APP, .from = 2, .to = 1,
                           .term = 2, .index = 3, .log_term = 1,
                           .commit = 3, .n_entries = 3, .entries = e};
    assert_int_equal(raft_step(r, &app), 0);
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_int_equal(rd.n_entries, 3);
    /* Meanwhile leader 3 of term 3 replaces 5.. and commits 5. */
    struct raft_entry e3[2] = {{.term = 3, .index = 5},
                               {.term = 3, .index = 6}};
    struct raft_msg app3 = {.type = RAFT_MSG_APP, .from = 3, .to = 1,
                            .term = 3, .index = 4, .log_term = 2,
                            .commit = 5, .n_entries = 2, .entries = e3};
    assert_int_equal(raft_step(r, &app3), 0);
    assert_false(raft_has_ready(r));
    /* The batch still reads as it was. */
    assert_int_equal(rd.entries[1].term, 2);
    assert_int_equal(rd.entries[2].index, 6);
    raft_advance(r, &rd);
    /* Entries 5 and 6 of term 3 are not durable yet: persisted next, and
     * 5 is not applied before that. */
    raft_ready(r, &rd);
    assert_int_equal(rd.n_entries, 2);
    assert_int_equal(rd.entries[0].index, 5);
    assert_int_equal(rd.entries[0].term, 3);
    for (size_t i = 0; i < rd.n_committed; i++)
        assert_true(rd.committed[i].index <= 4);
    raft_advance(r, &rd);
    raft_ready(r, &rd);
    assert_int_equal(rd.n_committed, 1);
    assert_int_equal(rd.committed[0].index, 5);
    assert_int_equal(rd.committed[0].term, 3);
    raft_advance(r, &rd);
    assert_int_equal(raft_applied_index(r), 5);
    raft_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_node),
        cmocka_unit_test(test_apply_bound),
        cmocka_unit_test(test_election_jitter),
        cmocka_unit_test(test_tie_broken_soon),
        cmocka_unit_test(test_three_node_election),
        cmocka_unit_test(test_commit_only_current_term),
        cmocka_unit_test(test_log_conflict_fast_backtrack),
        cmocka_unit_test(test_prevote_rejoin_no_disruption),
        cmocka_unit_test(test_check_quorum_steps_down),
        cmocka_unit_test(test_check_quorum_rounds),
        cmocka_unit_test(test_vote_durability),
        cmocka_unit_test(test_heartbeats_during_write),
        cmocka_unit_test(test_read_index_leader_and_follower),
        cmocka_unit_test(test_read_index_batched),
        cmocka_unit_test(test_read_index_follower_one_trip),
        cmocka_unit_test(test_read_index_new_leader_waits),
        cmocka_unit_test(test_read_index_fails_on_step_down),
        cmocka_unit_test(test_lease),
        cmocka_unit_test(test_lease_margin_boundary),
        cmocka_unit_test(test_lease_void_after_timeout_now),
        cmocka_unit_test(test_transfer_up_to_date),
        cmocka_unit_test(test_transfer_lagging),
        cmocka_unit_test(test_lost_appends_recovered_when_idle),
        cmocka_unit_test(test_membership_learner_promote),
        cmocka_unit_test(test_caught_up_needs_an_answer),
        cmocka_unit_test(test_stale_ack_after_readd),
        cmocka_unit_test(test_membership_add_voter_and_one_at_a_time),
        cmocka_unit_test(test_membership_remove),
        cmocka_unit_test(test_snapshot_taken_compacts),
        cmocka_unit_test(test_snapshot_trailing_bytes),
        cmocka_unit_test(test_snapshot_trail_follows_members),
        cmocka_unit_test(test_snapshot_chunks),
        cmocka_unit_test(test_snapshot_chunks_lossy),
        cmocka_unit_test(test_restart_keeps_state),
        cmocka_unit_test(test_restart_corrupt),
        cmocka_unit_test_teardown(test_bootstrap_errors, free_core),
        cmocka_unit_test(test_step_rejects_malformed),
        cmocka_unit_test(test_forged_huge_term_dropped),
        cmocka_unit_test(test_term_bound_campaign_refused),
        cmocka_unit_test(test_forged_indexes_dropped),
        cmocka_unit_test(test_second_sender_for_term_refused),
        cmocka_unit_test(test_step_while_ready_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
