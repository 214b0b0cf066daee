/* Elections: pre-vote and vote campaigns, granting votes, counting them,
 * and leadership transfer. */
#include "raft/raft_int.h"

/* Count the votes of voters; returns 1 won, -1 lost, 0 undecided. */
static int tally(const struct raft *r)
{
    unsigned voters = 0, yes = 0, no = 0;
    for (unsigned i = 0; i < r->n_prs; i++) {
        const struct raft__progress *pr = &r->prs[i];
        if (pr->learner)
            continue;
        voters++;
        yes += pr->vote > 0;
        no += pr->vote < 0;
    }
    unsigned q = raft__quorum(voters);
    if (yes >= q)
        return 1;
    if (no >= q)
        return -1;
    return 0;
}

static void won(struct raft *r, bool pre)
{
    if (pre)
        raft__campaign(r, false, false);
    else
        raft__become_leader(r);
}

int raft__campaign(struct raft *r, bool pre, bool transfer)
{
    if (!raft__promotable(r))
        return CRAFT_EINVAL;
    if (r->term + 1 >= RAFT_TERM_MAX) {
        /* The term space is used up (only a term taken from a message gets
         * here): stay a follower rather than wrap or reach the bound. */
        r->stats.campaigns_refused++;
        return CRAFT_EINVAL;
    }
    if (pre)
        raft__become_pre_candidate(r);
    else
        raft__become_candidate(r);
    /* Our own vote counts at once in a pre-vote; in a real election only
     * once it is durable (raft__self_vote_durable), like anyone's vote:
     * else a crash could let us vote twice in this term. */
    if (pre) {
        struct raft__progress *self = raft__pr(r, r->id);
        if (self != NULL)
            self->vote = 1; /* else we are leaving: only others count */
        if (tally(r) > 0) {
            won(r, pre);
            return 0;
        }
    }
    uint64_t last = raft__log_last(&r->log);
    uint64_t last_term = raft__log_term(&r->log, last);
    for (unsigned i = 0; i < r->n_prs; i++) {
        struct raft__progress *pr = &r->prs[i];
        if (pr->learner || pr->id == r->id)
            continue;
        struct raft_msg *m =
            raft__send(r, pre ? RAFT_MSG_PRE_VOTE : RAFT_MSG_VOTE, pr->id);
        m->term = pre ? r->term + 1 : r->term;
        m->index = last;
        m->log_term = last_term;
        m->transfer = transfer;
        if (!pre)
            raft__send_after(r, m); /* our own vote must be durable */
    }
    return 0;
}

void raft__handle_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PRE_VOTE;
    bool can_vote = r->vote == m->from ||
                    (r->vote == RAFT_NONE && r->lead == RAFT_NONE) ||
                    (pre && m->term > r->term);
    bool grant = can_vote &&
                 raft__log_up_to_date(&r->log, m->index, m->log_term);
    struct raft_msg *resp = raft__send(
        r, pre ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
    if (!grant) {
        resp->reject = true;
        if (!pre && r->role == RAFT_CANDIDATE && m->term == r->term)
            raft__tie_seen(r);
        return;
    }
    /* A granted pre-vote answers in the term it was asked about. */
    resp->term = m->term;
    if (!pre) {
        r->election_elapsed = 0;
        r->vote = m->from;
        raft__send_after(r, resp); /* the vote must be durable first */
    }
}

/* The batch holding our vote for ourselves is durable: count it. */
void raft__self_vote_durable(struct raft *r)
{
    struct raft__progress *self = raft__pr(r, r->id);
    if (self == NULL || self->vote != 0)
        return;
    self->vote = 1;
    int t = tally(r);
    if (t > 0)
        won(r, false);
}

void raft__handle_vote_resp(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PRE_VOTE_RESP;
    if (pre != (r->role == RAFT_PRE_CANDIDATE))
        return; /* an answer to an earlier campaign */
    struct raft__progress *pr = raft__pr(r, m->from);
    if (pr == NULL || pr->learner || pr->vote != 0)
        return;
    pr->vote = m->reject ? -1 : 1;
    int t = tally(r);
    if (t > 0)
        won(r, pre);
    else if (t < 0)
        raft__become_follower(r, r->term, RAFT_NONE);
}

/* Tell target to campaign now, in an election that ignores leases. The
 * message may arrive at any later time (a transport keeps frames queued
 * across a reconnect), so this leader gives up its lease for the rest of
 * its term, even if the transfer is aborted (raft_lease_valid). */
void raft__send_timeout_now(struct raft *r, uint64_t target)
{
    struct raft_msg *m = raft__send(r, RAFT_MSG_TIMEOUT_NOW, target);
    m->commit = r->log.committed; /* it holds all of it */
    r->timeout_now_sent = true;
}

void raft__maybe_timeout_now(struct raft *r, struct raft__progress *pr)
{
    if (r->transferee == pr->id && pr->match == raft__log_last(&r->log))
        raft__send_timeout_now(r, pr->id);
}

int raft__transfer(struct raft *r, uint64_t target)
{
    if (r->role != RAFT_LEADER) {
        if (r->lead == RAFT_NONE)
            return CRAFT_ENOLEADER;
        struct raft_msg *m = raft__send(r, RAFT_MSG_TRANSFER, r->lead);
        m->ctx = target;
        return 0;
    }
    if (target == r->id)
        return 0;
    if (!raft_conf_is_voter(&r->conf, target))
        return CRAFT_EINVAL;
    if (r->transferee == target)
        return 0;
    r->transferee = target;
    /* The transfer has one election timeout to finish. */
    r->election_elapsed = 0;
    raft__maybe_timeout_now(r, raft__pr(r, target));
    return 0;
}

void raft__abort_transfer(struct raft *r)
{
    /* If a TIMEOUT_NOW went out, the lease stays void for this term. */
    r->transferee = RAFT_NONE;
}

int raft_transfer_leader(struct raft *r, uint64_t target)
{
    if (target == RAFT_NONE)
        return CRAFT_EINVAL;
    return raft__transfer(r, target);
}
