/* The core's lifecycle (create, restore, bootstrap, free), time (tick), the
 * role transitions, and the observers. */
#include <string.h>

#include "common/alloc.h"
#include "raft/raft_int.h"

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    }
    return "?";
}

static uint64_t next_rand(struct raft *r)
{
    /* xorshift64*: good enough to spread election timeouts. */
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return r->rng * 0x2545F4914F6CDD1DULL;
}

void raft__reset_timeout(struct raft *r)
{
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->randomized_timeout = r->cfg.election_ticks +
                            (unsigned)(next_rand(r) % r->cfg.election_jitter_ticks);
}

/* Another candidate asks for our vote in the term we stand in: a tie, which
 * neither of us wins (each voted for itself) unless the others decide it.
 * Rather than wait out a whole election timeout to try again, we try after
 * 1 to j ticks, drawn afresh: the first of us to do so asks for term + 1
 * and gets the other's vote. Only when that is sooner than the wait we
 * have, and only liveness rests on it: no lease is at stake (neither of
 * us follows anyone), and the retry is a pre-vote, which voters still
 * within a leader's lease refuse. */
void raft__tie_seen(struct raft *r)
{
    unsigned retry = r->election_elapsed + 1 +
                     (unsigned)(next_rand(r) % r->cfg.election_jitter_ticks);
    if (retry < r->randomized_timeout)
        r->randomized_timeout = retry;
}

/* May we campaign? As a voter of the configuration in force, or of the
 * last committed one: a node whose removal is appended but not committed
 * may be the only one holding that entry, and must be able to lead to
 * commit it (it then counts the votes of the new configuration only). */
bool raft__promotable(const struct raft *r)
{
    return raft_conf_is_voter(&r->conf, r->id) ||
           raft_conf_is_voter(raft__conf_at(r, r->log.committed), r->id);
}

static int apply_defaults(struct raft_config *c)
{
    if (c->id == RAFT_NONE)
        return CRAFT_EINVAL;
    if (c->election_ticks == 0)
        c->election_ticks = 10;
    /* Two draws at least, so that two nodes that heard the same last
     * heartbeat do not time out together for ever; at most e, so that the
     * longest timeout stays under two election timeouts. */
    if (c->election_jitter_ticks == 0)
        c->election_jitter_ticks = c->election_ticks;
    if (c->election_jitter_ticks < 2 ||
        c->election_jitter_ticks > c->election_ticks)
        return CRAFT_EINVAL;
    if (c->check_quorum_rounds == 0)
        c->check_quorum_rounds = 1;
    if (c->heartbeat_ticks == 0)
        c->heartbeat_ticks = 1;
    if (c->heartbeat_ticks >= c->election_ticks)
        return CRAFT_EINVAL;
    if (c->lease_margin_ticks == 0)
        c->lease_margin_ticks = c->election_ticks / 10 > 1
                                    ? c->election_ticks / 10 : 1;
    if (c->lease_margin_ticks + 1 >= c->election_ticks)
        return CRAFT_EINVAL; /* no lease would ever hold */
    if (c->max_inflight == 0)
        c->max_inflight = 64;
    if (c->max_inflight_bytes == 0)
        c->max_inflight_bytes = 8u << 20;
    if (c->max_msg_bytes == 0)
        c->max_msg_bytes = 1u << 20;
    if (c->max_uncommitted_bytes == 0)
        c->max_uncommitted_bytes = 64u << 20;
    if (c->snapshot_trailing == 0)
        c->snapshot_trailing = 1024;
    if (c->snapshot_trailing_bytes == 0)
        c->snapshot_trailing_bytes = 4u << 20;
    if (c->snap_chunk_bytes == 0)
        c->snap_chunk_bytes = 256u << 10;
    if (c->max_apply_bytes == 0)
        c->max_apply_bytes = 64u << 10;
    return 0;
}

/* Rebuild the configuration from the snapshot and the membership entries
 * after it, committed or not. */
static int replay_confs(struct raft *r)
{
    r->conf = r->snap.conf;
    if (r->conf.n_voters + r->conf.n_learners > RAFT_MAX_MEMBERS)
        return CRAFT_ECORRUPT;
    const struct raft__log *l = &r->log;
    for (uint64_t i = r->snap.index + 1; i <= raft__log_last(l); i++) {
        const struct raft_entry *e = raft__log_at(l, i);
        if (e->type == RAFT_ENTRY_CONF) {
            int rv = raft__conf_on_append(r, e);
            if (rv)
                return rv;
        }
    }
    raft__prs_sync(r);
    return 0;
}

int raft_new(const struct raft_config *cfg, const struct raft_persisted *p,
             struct raft **out)
{
    struct raft_config c = *cfg;
    int rv = apply_defaults(&c);
    /* No term was ever made durable: whatever entries made it to disk came
     * from a torn first write (a write stores entries before the hard
     * state), and nothing of them was acknowledged. Start empty: a torn
     * bootstrap must not leave a node believing in a partial founding
     * configuration (simulator seed 87525: it led alone). */
    if (p != NULL && p->hs.term == 0 && p->snap.index == 0)
        p = NULL;
    if (rv)
        return rv;
    struct raft *r = craft_calloc(1, sizeof *r);
    if (r == NULL)
        return CRAFT_ENOMEM;
    r->cfg = c;
    r->id = c.id;
    r->rng = (c.seed ^ (c.id * 0x9E3779B97F4A7C15ULL)) | 1;
    r->snap_resend_ticks = c.election_ticks / 2 > 2 ? c.election_ticks / 2 : 2;
    r->stable_cap = UINT64_MAX;
    rv = raft__prs_init(r);
    if (rv == 0)
        rv = raft__log_init(&r->log, p);
    if (rv == 0 && p != NULL &&
        p->hs.term > RAFT_TERM_MAX)
        rv = CRAFT_ECORRUPT; /* no term we would have taken */
    if (rv == 0 && p != NULL) {
        r->term = p->hs.term;
        r->vote = p->hs.vote;
        r->snap = p->snap;
        rv = replay_confs(r);
    }
    if (rv) {
        raft_free(r);
        return rv;
    }
    r->prev_hs.term = r->term;
    r->prev_hs.vote = r->vote;
    r->prev_hs.commit = p ? p->hs.commit : 0;
    r->prev_ss.role = RAFT_FOLLOWER;
    r->prev_ss.term = r->term;
    raft__become_follower(r, r->term, RAFT_NONE);
    *out = r;
    return 0;
}

void raft_free(struct raft *r)
{
    if (r == NULL)
        return;
    r->ready_out = false; /* free entry data now, not into limbo */
    raft__log_free(r);
    raft__prs_free(r);
    for (size_t i = 0; i < r->n_limbo; i++)
        craft_free(r->limbo[i]);
    craft_free(r->limbo);
    craft_free(r->confs);
    craft_free(r->reads);
    craft_free(r->out);
    craft_free(r->out_after);
    craft_free(r->props);
    craft_free(r->read_results);
    raft__arena_free(&r->arena);
    raft__arena_free(&r->ready_arena);
    craft_free(r);
}

int raft_bootstrap(struct raft *r, const uint64_t *voters, size_t n,
                   const struct raft_conf_change *ctxs)
{
    if (raft__log_last(&r->log) != 0 || r->snap.index != 0 || n == 0 ||
        n > RAFT_MAX_MEMBERS)
        return CRAFT_EINVAL;
    for (size_t i = 0; i < n; i++) /* all or nothing */
        for (size_t k = 0; k <= i; k++)
            if (voters[i] == RAFT_NONE || (k < i && voters[k] == voters[i]))
                return CRAFT_EINVAL;
    for (size_t i = 0; i < n; i++) {
        struct raft_conf_change cc = {
            .op = i + 1 < n ? RAFT_CONF_FOUNDER : RAFT_CONF_ADD_VOTER,
            .node = voters[i]};
        if (ctxs != NULL) {
            cc.ctx = ctxs[i].ctx;
            cc.ctx_len = ctxs[i].ctx_len;
        }
        size_t len = raft_conf_change_size(&cc);
        uint8_t *buf = craft_malloc(len);
        if (buf == NULL)
            return CRAFT_ENOMEM;
        raft_conf_change_encode(&cc, buf);
        struct raft_entry e = {.term = 1, .index = i + 1,
                               .type = RAFT_ENTRY_CONF,
                               .len = (uint32_t)len, .data = buf};
        int rv = raft__log_append(r, &e, 1);
        craft_free(buf);
        if (rv)
            return rv;
    }
    if (r->term < 1)
        r->term = 1;
    raft__commit_to(r, n);
    return 0;
}

/* ---- role transitions ---- */

void raft__become_follower(struct raft *r, uint64_t term, uint64_t lead)
{
    bool was_leader = r->role == RAFT_LEADER;
    assert(term >= r->term && term <= RAFT_TERM_MAX);
    if (term != r->term) {
        r->term = term;
        r->vote = RAFT_NONE;
        r->term_lead = RAFT_NONE;
    }
    r->role = RAFT_FOLLOWER;
    r->lead = lead;
    if (lead != RAFT_NONE)
        r->term_lead = lead;
    r->leaving = false;
    raft__reset_timeout(r);
    if (was_leader) {
        raft__reads_fail(r, CRAFT_EDROPPED);
        r->transferee = RAFT_NONE;
        r->uncommitted_bytes = 0;
    }
}

void raft__become_pre_candidate(struct raft *r)
{
    assert(r->role != RAFT_LEADER);
    r->role = RAFT_PRE_CANDIDATE;
    r->lead = RAFT_NONE;
    for (unsigned i = 0; i < r->n_prs; i++)
        r->prs[i].vote = 0;
}

void raft__become_candidate(struct raft *r)
{
    assert(r->role != RAFT_LEADER);
    assert(r->term + 1 < RAFT_TERM_MAX);
    r->term++;
    r->vote = r->id;
    r->term_lead = RAFT_NONE;
    r->role = RAFT_CANDIDATE;
    r->lead = RAFT_NONE;
    raft__reset_timeout(r);
    for (unsigned i = 0; i < r->n_prs; i++)
        r->prs[i].vote = 0;
}

void raft__become_leader(struct raft *r)
{
    assert(r->role == RAFT_CANDIDATE);
    r->role = RAFT_LEADER;
    r->lead = r->id;
    r->term_lead = r->id;
    r->quorum_misses = 0;
    raft__reset_timeout(r);
    uint64_t last = raft__log_last(&r->log);
    for (unsigned i = 0; i < r->n_prs; i++) {
        struct raft__progress *pr = &r->prs[i];
        raft__pr_reset(r, pr, last + 1);
        if (pr->id == r->id) {
            pr->match = r->log.stabled;
            pr->recent_active = true;
            raft__pr_become_replicate(pr);
        }
    }
    r->transferee = RAFT_NONE;
    r->timeout_now_sent = false;
    r->leaving = !raft_conf_is_voter(&r->conf, r->id);
    r->uncommitted_bytes = 0;
    r->round_confirmed = r->round;
    r->round_wanted = false;
    r->lease_floor = r->round + 1;
    /* No membership change until everything already in the log (an
     * earlier leader's change included) is committed, and this term has
     * committed its first entry (the single-server change safety fix). */
    r->pending_conf_index = last + 1;
    raft__append_local(r, RAFT_ENTRY_NOOP, NULL, 0);
}

/* ---- time ---- */

static bool quorum_active(struct raft *r)
{
    unsigned voters = 0, active = 0;
    for (unsigned i = 0; i < r->n_prs; i++) {
        struct raft__progress *pr = &r->prs[i];
        if (pr->learner)
            continue;
        voters++;
        if (pr->id == r->id || pr->recent_active)
            active++;
        pr->recent_active = false;
    }
    return active >= raft__quorum(voters);
}

static void tick_leader(struct raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->cfg.election_ticks) {
        r->election_elapsed = 0;
        if (r->cfg.disable_check_quorum || quorum_active(r)) {
            r->quorum_misses = 0;
        } else if (++r->quorum_misses >= r->cfg.check_quorum_rounds) {
            raft__become_follower(r, r->term, RAFT_NONE);
            return;
        }
        if (r->transferee != RAFT_NONE)
            raft__abort_transfer(r);
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        raft__bcast_heartbeat(r);
        if (r->leaving)
            raft__hand_over(r);
    }
    raft__tick_snapshots(r);
}

void raft_tick(struct raft *r)
{
    r->now++;
    if (r->role == RAFT_LEADER) {
        tick_leader(r);
        return;
    }
    r->election_elapsed++;
    /* Alone, nobody else can lead: no need to wait out a timeout. But a
     * candidate alone only waits for its own vote to be durable: starting
     * over at each tick would never win on a disk slower than a tick. */
    bool alone = r->conf.n_voters == 1 && r->conf.voters[0] == r->id &&
                 r->role != RAFT_CANDIDATE;
    if (raft__promotable(r) &&
        (alone || r->election_elapsed >= r->randomized_timeout)) {
        r->election_elapsed = 0;
        raft__campaign(r, !r->cfg.disable_pre_vote, false);
    }
}

struct raft_stats raft_stats(const struct raft *r)
{
    return r->stats;
}

int raft_campaign(struct raft *r)
{
    if (r->role == RAFT_LEADER)
        return 0;
    return raft__campaign(r, !r->cfg.disable_pre_vote, false);
}

/* A leader's lowest match among the other members, each of which holds
 * every entry up to it for good (an acknowledged entry is durable there;
 * a wiped member comes back as a new incarnation, with match 0): nobody
 * needs an entry at or below it from this leader. index when there are no
 * others; 0 when one's match is not known yet. */
static uint64_t others_hold(const struct raft *r, uint64_t index)
{
    if (r->role != RAFT_LEADER)
        return 0;
    uint64_t low = index;
    for (unsigned i = 0; i < r->n_prs; i++) {
        const struct raft__progress *pr = &r->prs[i];
        if (pr->id == r->id)
            continue;
        uint64_t m = pr->answered ? pr->match : 0;
        if (m < low)
            low = m;
    }
    return low;
}

/* The last index to forget behind a snapshot at index: the window kept
 * after it holds at most snapshot_trailing entries and at most
 * snapshot_trailing_bytes of entry data (large entries would otherwise
 * keep tens of MiB in memory that the snapshot already covers), and on a
 * leader nothing that every other member already holds (a lone node keeps
 * none; a member that lags still finds what it lacks). */
static uint64_t trailing_start(const struct raft *r, uint64_t index)
{
    const struct raft__log *l = &r->log;
    uint64_t trail = r->cfg.snapshot_trailing;
    uint64_t to = index > trail ? index - trail : 0;
    if (to < l->offset)
        to = l->offset;
    size_t bytes = 0;
    for (uint64_t i = index; i > to; i--) {
        bytes += l->ents[i - l->offset - 1].len;
        if (bytes > r->cfg.snapshot_trailing_bytes) {
            to = i;
            break;
        }
    }
    uint64_t held = others_hold(r, index);
    return held > to ? held : to;
}

int raft_snapshot_taken(struct raft *r, uint64_t index, uint64_t size,
                        uint64_t *compact_to)
{
    if (index > r->log.applied || index < r->log.offset || index == 0)
        return CRAFT_EINVAL;
    if (index > r->snap.index) {
        struct raft_snap_meta meta = {.index = index,
                                      .term = raft__log_term(&r->log, index),
                                      .size = size};
        meta.conf = *raft__conf_at(r, index);
        r->snap = meta;
        raft__conf_compact(r, index);
    } else if (index < r->snap.index) {
        return CRAFT_EINVAL;
    }
    uint64_t to = trailing_start(r, index);
    if (to > r->log.stabled)
        to = r->log.stabled;
    raft__log_compact(r, to);
    if (compact_to != NULL)
        *compact_to = r->log.offset;
    return 0;
}

/* ---- observers ---- */

struct raft_soft_state raft_soft(const struct raft *r)
{
    struct raft_soft_state s = {r->role, r->lead, r->term};
    return s;
}

struct raft_hard_state raft_hard(const struct raft *r)
{
    struct raft_hard_state h = {r->term, r->vote, r->log.committed};
    return h;
}

uint64_t raft_id(const struct raft *r)
{
    return r->id;
}

uint64_t raft_last_index(const struct raft *r)
{
    return raft__log_last(&r->log);
}

uint64_t raft_first_index(const struct raft *r)
{
    return r->log.offset + 1;
}

uint64_t raft_commit_index(const struct raft *r)
{
    return r->log.committed;
}

uint64_t raft_applied_index(const struct raft *r)
{
    return r->log.applied;
}

const struct raft_conf *raft_conf(const struct raft *r)
{
    return &r->conf;
}

const struct raft_snap_meta *raft_snapshot(const struct raft *r)
{
    return &r->snap;
}

const struct raft_conf *raft_conf_at(const struct raft *r, uint64_t index)
{
    return raft__conf_at(r, index);
}

uint64_t raft_conf_index(const struct raft *r)
{
    return r->n_confs > 0 ? r->confs[r->n_confs - 1].index : r->snap.index;
}

uint64_t raft_term_at(const struct raft *r, uint64_t index)
{
    return raft__log_term(&r->log, index);
}

bool raft_progress(const struct raft *r, uint64_t node, uint64_t *match,
                   uint64_t *next)
{
    if (r->role != RAFT_LEADER)
        return false;
    for (unsigned i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id == node) {
            *match = node == r->id ? r->log.stabled : r->prs[i].match;
            *next = r->prs[i].next;
            return true;
        }
    }
    return false;
}
