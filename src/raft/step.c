/* raft_step: check the message's term once for every role, then hand it to
 * the current role's step function, so that everything a role does with a
 * message is in one place. */
#include "raft/raft_int.h"

static bool termless(uint8_t type)
{
    switch (type) {
    case RAFT_MSG_PROP:
    case RAFT_MSG_PROP_RESP:
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP:
    case RAFT_MSG_TRANSFER:
        return true;
    default:
        return false;
    }
}

/* Requests forwarded between nodes carry no term: they are answered by
 * whoever leads when they arrive. */
static void step_termless(struct raft *r, const struct raft_msg *m)
{
    bool leader = r->role == RAFT_LEADER;
    switch (m->type) {
    case RAFT_MSG_PROP:
        raft__handle_prop(r, m);
        break;
    case RAFT_MSG_PROP_RESP:
        raft__handle_prop_resp(r, m);
        break;
    case RAFT_MSG_READ_INDEX:
        if (leader) {
            raft__read_request(r, m->ctx, m->from, m->term);
        } else {
            struct raft_msg *resp = raft__send(r, RAFT_MSG_READ_INDEX_RESP,
                                               m->from);
            resp->ctx = m->ctx;
            resp->reject = true;
            resp->err = CRAFT_ENOTLEADER;
        }
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        raft__handle_read_index_resp(r, m);
        break;
    case RAFT_MSG_TRANSFER:
        if (leader)
            (void)raft__transfer(r, m->ctx);
        break;
    }
}

/* Within the lease: we heard from a leader less than an election timeout
 * ago (or started less than one ago and may have, before a restart). */
static bool in_lease(const struct raft *r)
{
    if (r->cfg.disable_check_quorum)
        return false;
    if (r->now < r->cfg.election_ticks)
        return true;
    return r->lead != RAFT_NONE &&
           r->election_elapsed < r->cfg.election_ticks;
}

/* Entries of an append must continue its index, in our ordering of terms. */
static bool entries_valid(const struct raft_msg *m)
{
    uint64_t term = m->log_term;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->index != m->index + 1 + i || e->term < term || e->term > m->term)
            return false;
        term = e->term;
    }
    return true;
}

/* Every term and index a message carries is within the bounds (raft.h),
 * and so is every range it spans: nothing a real node sends is beyond
 * them, and nothing beyond them may be adopted (a term that cannot grow
 * ends all elections; an index near 2^64 wraps). */
static bool within_bounds(const struct raft_msg *m)
{
    if (m->term > RAFT_TERM_MAX || m->log_term > RAFT_TERM_MAX ||
        m->index > RAFT_INDEX_MAX || m->commit > RAFT_INDEX_MAX ||
        m->hint > RAFT_INDEX_MAX)
        return false;
    switch (m->type) {
    case RAFT_MSG_APP:
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PRE_VOTE:
        /* The sender's previous / last entry is of its term or older. */
        if (m->log_term > m->term)
            return false;
        return m->index + m->n_entries <= RAFT_INDEX_MAX; /* no overflow:
                                            index <= 2^62, n_entries < 2^32 */
    case RAFT_MSG_SNAP: {
        const struct raft_snap_chunk *c = &m->snap;
        return c->meta.index <= RAFT_INDEX_MAX && c->meta.term <= m->term &&
               c->meta.size <= RAFT_INDEX_MAX && c->offset <= c->meta.size &&
               c->len <= c->meta.size - c->offset;
    }
    case RAFT_MSG_SNAP_RESP:
        return m->snap.meta.index <= RAFT_INDEX_MAX &&
               m->snap.offset <= RAFT_INDEX_MAX;
    default:
        return true;
    }
}

static bool from_leader(uint8_t type)
{
    return type == RAFT_MSG_APP || type == RAFT_MSG_HEARTBEAT ||
           type == RAFT_MSG_SNAP || type == RAFT_MSG_TIMEOUT_NOW;
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
    if (m->type == 0 || m->type >= RAFT_MSG__COUNT || m->to != r->id ||
        m->from == RAFT_NONE || m->from == r->id)
        return CRAFT_EINVAL;
    if (!within_bounds(m) || (m->type == RAFT_MSG_APP && !entries_valid(m))) {
        r->stats.absurd++;
        return CRAFT_EINVAL;
    }
    if (termless(m->type)) {
        step_termless(r, m);
        return 0;
    }
    bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE;
    if (m->term > r->term) {
        if (vote_req && !m->transfer && in_lease(r))
            return 0; /* a leader is alive: don't let a stray node disrupt */
        if (m->type == RAFT_MSG_PRE_VOTE ||
            (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject)) {
            /* Pre-votes are about a future term: ours stays. */
        } else if (m->term - r->term > RAFT_TERM_JUMP_MAX) {
            /* Move up by the most one message may, as if that many
             * elections had gone by unseen, and drop the message: a real
             * sender says it again (raft.h, RAFT_TERM_JUMP_MAX). */
            r->stats.jumps_capped++;
            raft__become_follower(r, r->term + RAFT_TERM_JUMP_MAX, RAFT_NONE);
            return CRAFT_EINVAL;
        } else {
            bool lead = m->type == RAFT_MSG_APP ||
                        m->type == RAFT_MSG_HEARTBEAT ||
                        m->type == RAFT_MSG_SNAP;
            raft__become_follower(r, m->term, lead ? m->from : RAFT_NONE);
        }
    } else if (m->term == r->term && from_leader(m->type) &&
               r->term_lead != RAFT_NONE && m->from != r->term_lead) {
        /* At most one node leads a term, and we know which one: this is
         * forged (or a bug elsewhere). No step down, no timer reset. */
        r->stats.not_term_leader++;
        return CRAFT_EINVAL;
    } else if (m->term < r->term) {
        if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT ||
            m->type == RAFT_MSG_SNAP) {
            /* A stale leader: tell it our term so it steps down. */
            raft__send(r, RAFT_MSG_APP_RESP, m->from);
        } else if (m->type == RAFT_MSG_PRE_VOTE) {
            struct raft_msg *resp =
                raft__send(r, RAFT_MSG_PRE_VOTE_RESP, m->from);
            resp->reject = true;
        }
        return 0;
    }
    if (vote_req) {
        raft__handle_vote(r, m);
        return 0;
    }
    switch (r->role) {
    case RAFT_LEADER:
        raft__step_leader(r, m);
        break;
    case RAFT_PRE_CANDIDATE:
    case RAFT_CANDIDATE:
        raft__step_candidate(r, m);
        break;
    case RAFT_FOLLOWER:
        raft__step_follower(r, m);
        break;
    }
    return 0;
}

void raft__step_leader(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APP_RESP:
        raft__handle_append_resp(r, m);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        raft__handle_heartbeat_resp(r, m);
        break;
    case RAFT_MSG_SNAP_RESP:
        raft__handle_snap_resp(r, m);
        break;
    default:
        break; /* votes answered late, our own kind of messages: ignore */
    }
}

void raft__step_candidate(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APP:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAP:
        /* Someone won this term. */
        raft__become_follower(r, m->term, m->from);
        raft__step_follower(r, m);
        break;
    case RAFT_MSG_PRE_VOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        raft__handle_vote_resp(r, m);
        break;
    default:
        break;
    }
}

void raft__step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APP:
        r->election_elapsed = 0;
        r->lead = r->term_lead = m->from;
        raft__handle_append(r, m);
        break;
    case RAFT_MSG_HEARTBEAT:
        r->election_elapsed = 0;
        r->lead = r->term_lead = m->from;
        raft__handle_heartbeat(r, m);
        break;
    case RAFT_MSG_SNAP:
        r->election_elapsed = 0;
        r->lead = r->term_lead = m->from;
        raft__handle_snap(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW: {
        /* Learn the commit first: it may change who votes. */
        uint64_t last = raft__log_last(&r->log);
        raft__commit_to(r, m->commit < last ? m->commit : last);
        if (raft__promotable(r))
            raft__campaign(r, false, true);
        break;
    }
    default:
        break;
    }
}
