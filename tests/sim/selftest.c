/* `sim --selftest`: proves the checkers have teeth. Each case feeds one
 * checker a fabricated violation and expects that invariant to fire, after a
 * consistent control input that must not fire. */
#include "sim/sim.h"

#include <string.h>

#include "common/alloc.h"

struct fake_log {
    uint64_t first, last;
    uint64_t terms[16]; /* by index */
};

static uint64_t fake_term(const void *ctx, uint64_t i)
{
    const struct fake_log *f = ctx;
    return i >= f->first && i <= f->last && i < 16 ? f->terms[i] : 0;
}

static void view(struct sim_logview *v, const struct fake_log *f)
{
    v->ctx = f;
    v->term_at = fake_term;
    v->first = f->first;
    v->last = f->last;
}

static struct sim *bare(void)
{
    struct sim *s = craft_calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    sim_trace_init(&s->trace, 64);
    s->out = stdout;
    s->p.n_keys = 3;
    for (unsigned i = 0; i < SIM_MAX_CLIENTS; i++)
        s->clients[i].op = -1;
    return s;
}

static struct raft_entry ent(uint64_t index, uint64_t term, const char *data)
{
    struct raft_entry e = {
        .index = index,
        .term = term,
        .type = RAFT_ENTRY_NORMAL,
        .len = (uint32_t)strlen(data),
        .data = (const uint8_t *)data,
    };
    return e;
}

/* Persist then apply entries on a node, as the cluster would. */
static void commit(struct sim *s, uint64_t node, const struct raft_entry *e,
                   size_t n, uint64_t prev_term)
{
    sim_check_entries(s, node, e, n, prev_term);
    for (size_t i = 0; i < n; i++)
        sim_check_apply(s, node, e[i].index, &e[i]);
}

static void case_election(struct sim *s)
{
    sim_check_leader(s, 1, 5);
    sim_check_leader(s, 1, 5);
    sim_check_leader(s, 2, 6);
    if (s->failed)
        return;
    sim_check_leader(s, 3, 5);
}

/* Two incarnations of one slot are two servers: they may not both lead
 * one term (a wiped node that kept its old id could). */
static void case_election_incarnations(struct sim *s)
{
    sim_check_leader(s, 3 | 1 << 8, 7);
    sim_check_leader(s, 3 | 1 << 8, 7);
    sim_check_leader(s, 3 | 2 << 8, 8);
    if (s->failed)
        return;
    sim_check_leader(s, 3 | 2 << 8, 7);
}

static void case_log_content(struct sim *s)
{
    struct raft_entry a[2] = {ent(1, 1, "x"), ent(2, 2, "y")};
    struct raft_entry b[2] = {ent(1, 1, "x"), ent(2, 2, "y")};
    sim_check_entries(s, 1, a, 2, 0);
    sim_check_entries(s, 2, b, 2, 0);
    if (s->failed)
        return;
    struct raft_entry c = ent(2, 2, "z");
    sim_check_entries(s, 3, &c, 1, 1);
}

static void case_log_prev(struct sim *s)
{
    struct raft_entry a = ent(5, 3, "x");
    sim_check_entries(s, 1, &a, 1, 2);
    sim_check_entries(s, 2, &a, 1, 2);
    if (s->failed)
        return;
    sim_check_entries(s, 3, &a, 1, 3);
}

static void case_log_pair(struct sim *s)
{
    struct fake_log a = {1, 5, {0, 1, 1, 2, 2, 3}};
    struct fake_log b = {1, 4, {0, 1, 1, 2, 2}};
    struct sim_logview va, vb;
    view(&va, &a);
    view(&vb, &b);
    sim_check_pair(s, 1, &va, 2, &vb, 16);
    if (s->failed)
        return;
    b.terms[2] = 2; /* agree at 3 and 4, differ at 2 */
    sim_check_pair(s, 1, &va, 2, &vb, 16);
}

static void case_completeness(struct sim *s)
{
    struct raft_entry e[3] = {ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 2, "c")};
    commit(s, 1, e, 3, 0);
    struct fake_log good = {1, 4, {0, 1, 1, 2, 3}};
    struct fake_log bad = {1, 4, {0, 1, 1, 1, 3}};
    struct sim_logview v;
    view(&v, &good);
    sim_check_leader_complete(s, 2, 3, &v);
    if (s->failed)
        return;
    view(&v, &bad);
    sim_check_leader_complete(s, 3, 4, &v);
}

static void case_completeness_short(struct sim *s)
{
    struct raft_entry e[3] = {ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 2, "c")};
    sim_check_leader(s, 1, 2);
    commit(s, 1, e, 3, 0); /* while term 2 has a leader */
    struct fake_log shortlog = {1, 2, {0, 1, 1}};
    struct sim_logview v;
    view(&v, &shortlog);
    /* Control: a leader of term 2 or 1, elected late by old votes, need
     * not hold entries committed in term 2. */
    sim_check_leader_complete(s, 3, 1, &v);
    if (s->failed) {
        snprintf(s->inv, sizeof(s->inv), "control fired");
        return;
    }
    sim_check_leader_complete(s, 2, 3, &v);
}

static void case_sm_safety(struct sim *s)
{
    struct raft_entry a = ent(1, 1, "a");
    struct raft_entry b = ent(1, 2, "b");
    commit(s, 1, &a, 1, 0);
    sim_check_apply(s, 2, 1, &a);
    if (s->failed)
        return;
    sim_check_entries(s, 3, &b, 1, 0);
    sim_check_apply(s, 3, 1, &b);
}

static void case_apply_order(struct sim *s)
{
    struct raft_entry e[2] = {ent(1, 1, "a"), ent(2, 1, "b")};
    commit(s, 1, e, 2, 0);
    if (s->failed)
        return;
    struct raft_entry f = ent(3, 1, "c");
    sim_check_entries(s, 1, &f, 1, 1);
    sim_check_apply(s, 2, 2, &f); /* n2 expects 2, is handed 3 */
}

static void case_commit(struct sim *s)
{
    uint64_t last = 0;
    sim_check_commit(s, 1, &last, 3);
    sim_check_commit(s, 1, &last, 5);
    if (s->failed)
        return;
    sim_check_commit(s, 1, &last, 4);
}

static void case_vote(struct sim *s)
{
    struct raft_hard_state a = {3, 0, 0}, b = {3, 2, 0}, c = {4, 1, 0};
    struct raft_hard_state d = {4, 3, 0};
    sim_check_hs(s, 1, &a, &b);
    sim_check_hs(s, 1, &b, &c);
    if (s->failed)
        return;
    sim_check_hs(s, 1, &c, &d);
}

static void case_term_back(struct sim *s)
{
    struct raft_hard_state a = {4, 1, 0}, b = {3, 0, 0};
    sim_check_hs(s, 1, &a, &b);
}

static void add_write(struct sim *s, uint64_t index, uint64_t term,
                      const char *cmd)
{
    struct sim_op *op = sim_hist_add(s);
    op->client = 1;
    op->kind = SIM_OP_PUT;
    op->outcome = SIM_OK;
    op->stage = SIM_ST_DONE;
    op->index = index;
    op->term = term;
    op->fp = sim_entry_fp(RAFT_ENTRY_NORMAL, cmd, strlen(cmd));
    strcpy(op->value, "v");
    op->invoke = ++s->clock;
    op->complete = ++s->clock;
}

static void case_durability(struct sim *s)
{
    struct raft_entry e[2] = {ent(1, 1, "a"), ent(2, 2, "b")};
    commit(s, 1, e, 2, 0);
    add_write(s, 1, 1, "a");
    sim_check_durable_writes(s);
    if (s->failed)
        return;
    add_write(s, 2, 1, "x"); /* acknowledged at (2, 1): lost */
    sim_check_durable_writes(s);
}

static void add_op(struct sim *s, int kind, const char *value, bool has,
                   uint64_t t0, uint64_t t1)
{
    struct sim_op *op = sim_hist_add(s);
    op->client = 1;
    op->kind = (uint8_t)kind;
    op->outcome = SIM_OK;
    op->stage = SIM_ST_DONE;
    op->has_value = has;
    strcpy(op->value, value);
    op->invoke = t0;
    op->complete = t1;
}

static void case_linear(struct sim *s)
{
    add_op(s, SIM_OP_PUT, "a", true, 1, 2);
    add_op(s, SIM_OP_GET, "a", true, 3, 4);
    sim_check_linear(s);
    if (s->failed)
        return;
    add_op(s, SIM_OP_GET, "", false, 5, 6); /* stale: the put is lost */
    sim_check_linear(s);
}

/* A leader of voters {1, 2, 3} (itself 1) that hears from 2 every tick
 * keeps a quorum; once 2 falls silent it must step down within two
 * election timeouts. */
static void case_check_quorum(struct sim *s)
{
    struct raft_conf c = {.voters = {1, 2, 3}, .n_voters = 3};
    uint64_t e = SIM_ELECTION_TICKS, t = 0;
    for (; t <= 4 * e && !s->failed; t++) {
        if (t)
            sim_check_heard(s, 1, 2, t);
        sim_check_quorum(s, 1, true, 5, 1, &c, t);
    }
    /* a transfer request may restart its timer: 2E of grace from then */
    sim_check_quorum_reset(s, 1, t);
    for (uint64_t end = t + 2 * e; t < end && !s->failed; t++)
        sim_check_quorum(s, 1, true, 5, 1, &c, t);
    if (s->failed)
        return;
    sim_check_quorum(s, 1, true, 5, 1, &c, t); /* 2 silent for 4E */
}

/* Stepping down clears the monitor; a new term starts with a grace of 2E;
 * a new voter counts as heard when it is added. */
static void case_check_quorum_conf(struct sim *s)
{
    struct raft_conf c = {.voters = {1, 2, 3}, .n_voters = 3};
    uint64_t e = SIM_ELECTION_TICKS;
    sim_check_quorum(s, 1, true, 5, 1, &c, 0);
    sim_check_quorum(s, 1, false, 5, 1, &c, 1);
    for (uint64_t t = 10; t < 10 + 2 * e; t++)
        sim_check_quorum(s, 1, true, 6, 1, &c, t);
    struct raft_conf d = {.voters = {1, 2, 3, 4}, .n_voters = 4};
    for (uint64_t t = 10 + 2 * e; t < 10 + 4 * e && !s->failed; t++) {
        sim_check_heard(s, 1, 2, t);
        sim_check_quorum(s, 1, true, 6, 1, t < 10 + 3 * e ? &c : &d, t);
    }
    if (s->failed)
        return;
    /* 3 and 4 silent, 2 heard: 2 of 4 is no quorum, 2E after the change */
    for (uint64_t t = 10 + 4 * e; t <= 10 + 5 * e && !s->failed; t++) {
        sim_check_heard(s, 1, 2, t);
        sim_check_quorum(s, 1, true, 6, 1, &d, t);
    }
}

static struct raft_soft_state soft(enum raft_role role, uint64_t term)
{
    struct raft_soft_state ss = {.role = role, .term = term};
    return ss;
}

static struct raft_msg msg(uint8_t type, uint64_t term, bool reject)
{
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    m.term = term;
    m.reject = reject;
    return m;
}

/* Terms move on real campaigns and real terms only. */
static void case_pre_vote(struct sim *s)
{
    struct raft_soft_state cand6 = soft(RAFT_CANDIDATE, 6);
    struct raft_soft_state foll6 = soft(RAFT_FOLLOWER, 6);
    struct raft_soft_state foll7 = soft(RAFT_FOLLOWER, 7);
    struct raft_msg grant = msg(RAFT_MSG_PRE_VOTE_RESP, 6, false);
    struct raft_msg app = msg(RAFT_MSG_APP, 6, false);
    struct raft_msg rej = msg(RAFT_MSG_PRE_VOTE_RESP, 6, true);
    struct raft_msg tn = msg(RAFT_MSG_TIMEOUT_NOW, 6, false);
    struct raft_msg pv = msg(RAFT_MSG_PRE_VOTE, 6, false);
    sim_check_term(s, 1, 5, RAFT_PRE_CANDIDATE, &cand6, &grant); /* won */
    sim_check_term(s, 2, 5, RAFT_FOLLOWER, &foll6, &app);
    sim_check_term(s, 3, 5, RAFT_PRE_CANDIDATE, &foll6, &rej);
    struct raft_soft_state cand7 = soft(RAFT_CANDIDATE, 7);
    sim_check_term(s, 4, 5, RAFT_FOLLOWER, &cand7, &tn); /* 6, then runs */
    sim_check_term(s, 5, 6, RAFT_FOLLOWER, &foll7, NULL);
    struct raft_soft_state pre6 = soft(RAFT_PRE_CANDIDATE, 6);
    sim_check_term(s, 6, 6, RAFT_FOLLOWER, &pre6, NULL);
    struct raft_soft_state foll5 = soft(RAFT_FOLLOWER, 5);
    sim_check_term(s, 7, 5, RAFT_FOLLOWER, &foll5, &pv); /* no move */
    if (s->failed)
        return;
    sim_check_term(s, 8, 5, RAFT_FOLLOWER, &foll6, &pv);
}

static void case_pre_candidate(struct sim *s)
{
    struct raft_soft_state pre6 = soft(RAFT_PRE_CANDIDATE, 6);
    struct raft_soft_state cand6 = soft(RAFT_CANDIDATE, 6);
    sim_check_term(s, 1, 5, RAFT_PRE_CANDIDATE, &cand6, NULL);
    sim_check_term(s, 2, 6, RAFT_FOLLOWER, &pre6, NULL);
    if (s->failed)
        return;
    sim_check_term(s, 3, 5, RAFT_FOLLOWER, &pre6, NULL);
}

/* A term nobody campaigned in, passed on by a real-looking message (the
 * leak of a pre-vote's term elsewhere). */
static void case_unreal_term(struct sim *s)
{
    struct raft_soft_state foll3 = soft(RAFT_FOLLOWER, 3);
    struct raft_soft_state cand3 = soft(RAFT_CANDIDATE, 3);
    struct raft_msg hb = msg(RAFT_MSG_HEARTBEAT, 3, false);
    sim_check_term(s, 1, 2, RAFT_FOLLOWER, &cand3, NULL);
    sim_check_term(s, 2, 2, RAFT_FOLLOWER, &foll3, &hb);
    if (s->failed)
        return;
    struct raft_soft_state foll9 = soft(RAFT_FOLLOWER, 9);
    struct raft_msg hb9 = msg(RAFT_MSG_HEARTBEAT, 9, false);
    sim_check_term(s, 3, 3, RAFT_FOLLOWER, &foll9, &hb9);
}

/* A term at the bound, taken from a message claiming it: no election can
 * follow (the forged-heartbeat attack). */
static void case_term_bound(struct sim *s)
{
    struct raft_soft_state cand = soft(RAFT_CANDIDATE, 6);
    sim_check_term(s, 1, 5, RAFT_FOLLOWER, &cand, NULL);
    if (s->failed)
        return;
    struct raft_soft_state top = soft(RAFT_FOLLOWER, UINT64_MAX);
    struct raft_msg hb = msg(RAFT_MSG_HEARTBEAT, UINT64_MAX, false);
    sim_check_term(s, 3, 5, RAFT_FOLLOWER, &top, &hb);
}

static int run_case(FILE *out, const char *name, void (*fn)(struct sim *),
                    const char *expect)
{
    struct sim *s = bare();
    if (!s)
        return 1;
    fn(s);
    bool ok = s->failed && strcmp(s->inv, expect) == 0;
    fprintf(out, "selftest: %-24s %s (%s%s%s)\n", name, ok ? "caught" : "MISSED",
            s->failed ? s->inv : "nothing fired", s->failed ? ": " : "",
            s->failed ? s->why : "");
    sim_destroy(s);
    craft_free(s);
    return ok ? 0 : 1;
}

/* A real run whose final phase keeps every link cut must fail liveness. */
static int case_liveness(FILE *out)
{
    struct sim_opts o;
    memset(&o, 0, sizeof(o));
    o.steps = 200;
    o.sabotage_final = true;
    struct sim *s = craft_calloc(1, sizeof(*s));
    if (!s)
        return 1;
    sim_init(s, 7, &o, out);
    sim_run(s);
    bool ok = s->failed && strcmp(s->inv, "liveness") == 0;
    fprintf(out, "selftest: %-24s %s (%s: %.120s)\n", "liveness",
            ok ? "caught" : "MISSED", s->failed ? s->inv : "nothing fired",
            s->why);
    sim_destroy(s);
    craft_free(s);
    /* Control: the same seed without sabotage passes. */
    o.sabotage_final = false;
    s = craft_calloc(1, sizeof(*s));
    if (!s)
        return 1;
    sim_init(s, 7, &o, out);
    int rc = sim_run(s);
    if (rc)
        sim_report(s, out);
    fprintf(out, "selftest: %-24s %s\n", "liveness control",
            rc ? "FAILED" : "passes");
    sim_destroy(s);
    craft_free(s);
    return ok && !rc ? 0 : 1;
}

int sim_selftest(FILE *out)
{
    int bad = 0;
    bad += run_case(out, "election safety", case_election, "election-safety");
    bad += run_case(out, "election safety (incarnations)",
                    case_election_incarnations, "election-safety");
    bad += run_case(out, "log matching (content)", case_log_content,
                    "log-matching");
    bad += run_case(out, "log matching (prefix)", case_log_prev,
                    "log-matching");
    bad += run_case(out, "log matching (pair)", case_log_pair, "log-matching");
    bad += run_case(out, "leader completeness", case_completeness,
                    "leader-completeness");
    bad += run_case(out, "leader completeness (short)", case_completeness_short,
                    "leader-completeness");
    bad += run_case(out, "state-machine safety", case_sm_safety,
                    "state-machine-safety");
    bad += run_case(out, "apply order", case_apply_order, "apply-order");
    bad += run_case(out, "commit monotonic", case_commit, "commit-monotonic");
    bad += run_case(out, "one vote per term", case_vote, "hard-state");
    bad += run_case(out, "term never decreases", case_term_back, "hard-state");
    bad += run_case(out, "durability", case_durability, "durability");
    bad += run_case(out, "linearizability", case_linear, "linearizability");
    bad += run_case(out, "check-quorum", case_check_quorum, "check-quorum");
    bad += run_case(out, "check-quorum (conf)", case_check_quorum_conf,
                    "check-quorum");
    bad += run_case(out, "pre-vote (term rise)", case_pre_vote, "pre-vote");
    bad += run_case(out, "pre-vote (pre-candidate)", case_pre_candidate,
                    "pre-vote");
    bad += run_case(out, "pre-vote (unreal term)", case_unreal_term,
                    "pre-vote");
    bad += run_case(out, "term bound", case_term_bound, "term-bound");
    bad += case_liveness(out);
    fprintf(out, "selftest: %s\n", bad ? "FAILED" : "all checkers fire");
    return bad;
}
