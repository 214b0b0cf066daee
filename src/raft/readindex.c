/* Linearizable reads without log writes (thesis §6.4): the leader records
 * its commit index when a read arrives, proves it is still leader with a
 * heartbeat round a quorum answers, and only then releases the read. Every
 * read waiting when a round is sent rides on that one round. The same
 * rounds give the leader its lease (raft_lease_valid).
 *
 * A follower's request is itself such an answer: it carries the term the
 * follower had when it sent it, after its read began. When the leader and
 * that follower are a quorum (3 voters), any later leader needs the vote
 * of one of them, given after the read began, so every write acknowledged
 * before the read began is in the leader's commit index: the read is
 * released at once, one round trip in all instead of two. */
#include <string.h>

#include "common/alloc.h"
#include "raft/raft_int.h"

void raft__read_result(struct raft *r, uint64_t id, uint64_t index, int err)
{
    if (raft__grow(&r->read_results, &r->cap_read_results,
                   r->n_read_results, sizeof *r->read_results))
        return; /* the caller times the read out */
    struct raft_read_result *res = &r->read_results[r->n_read_results++];
    res->id = id;
    res->index = index;
    res->err = err;
}

static void answer(struct raft *r, const struct raft__read *rd, int err)
{
    if (rd->from == r->id) {
        raft__read_result(r, rd->id, err ? 0 : rd->index, err);
        return;
    }
    struct raft_msg *m = raft__send(r, RAFT_MSG_READ_INDEX_RESP, rd->from);
    m->ctx = rd->id;
    m->index = rd->index;
    m->reject = err != 0;
    m->err = err;
}

static bool committed_in_term(const struct raft *r)
{
    return raft__log_term(&r->log, r->log.committed) == r->term;
}

static bool single_voter(const struct raft *r)
{
    return r->conf.n_voters == 1 && r->conf.voters[0] == r->id;
}

/* The highest round a quorum of voters has answered (we answer our own). */
static uint64_t quorum_round(const struct raft *r)
{
    uint64_t rounds[RAFT_MAX_MEMBERS];
    unsigned n = 0;
    for (unsigned i = 0; i < r->n_prs; i++) {
        const struct raft__progress *pr = &r->prs[i];
        if (pr->learner)
            continue;
        uint64_t a = pr->id == r->id ? r->round : pr->acked_round;
        /* insertion sort, descending: n is small */
        unsigned j = n++;
        while (j > 0 && rounds[j - 1] < a) {
            rounds[j] = rounds[j - 1];
            j--;
        }
        rounds[j] = a;
    }
    return n ? rounds[raft__quorum(n) - 1] : 0;
}

static void want_round(struct raft *r)
{
    r->round_wanted = true;
    if (r->round_confirmed >= r->round)
        raft__bcast_heartbeat(r); /* none in flight: go now */
}

/* Whether the leader and the voter that sent a read request in our term
 * make a quorum by themselves. */
static bool quorum_with(const struct raft *r, uint64_t from, uint64_t term)
{
    if (term != r->term || from == r->id || !raft_conf_is_voter(&r->conf, from))
        return false;
    unsigned have = 1 + raft_conf_is_voter(&r->conf, r->id);
    return have >= raft__quorum(r->conf.n_voters);
}

void raft__read_request(struct raft *r, uint64_t id, uint64_t from, uint64_t term)
{
    struct raft__read rd = {.id = id, .from = from,
                            .index = r->log.committed};
    bool ready = committed_in_term(r);
    if (ready && (single_voter(r) || quorum_with(r, from, term))) {
        answer(r, &rd, 0);
        return;
    }
    if (raft__grow(&r->reads, &r->cap_reads, r->n_reads, sizeof *r->reads)) {
        answer(r, &rd, CRAFT_ENOMEM);
        return;
    }
    rd.round = ready ? r->round + 1 : 0;
    r->reads[r->n_reads++] = rd;
    if (ready)
        want_round(r);
}

/* The leader committed something: reads that waited for its first commit
 * in this term may now take part in a round. */
void raft__reads_on_commit(struct raft *r)
{
    if (!committed_in_term(r))
        return;
    bool any = false;
    for (size_t i = 0; i < r->n_reads; i++) {
        if (r->reads[i].round == 0) {
            r->reads[i].index = r->log.committed;
            r->reads[i].round = r->round + 1;
            any = true;
        }
    }
    if (any)
        want_round(r);
}

/* An answer to a round arrived (or the quorum changed): release what a
 * quorum has now confirmed. */
void raft__reads_on_round(struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return;
    uint64_t q = quorum_round(r);
    if (q <= r->round_confirmed)
        return;
    r->round_confirmed = q;
    if (q >= r->lease_floor && r->round - q < 64)
        r->lease_start = r->round_ticks[q % 64];
    size_t kept = 0;
    bool waiting = false;
    for (size_t i = 0; i < r->n_reads; i++) {
        struct raft__read rd = r->reads[i];
        if (rd.round != 0 && rd.round <= q) {
            answer(r, &rd, 0);
            continue;
        }
        waiting |= rd.round > r->round;
        r->reads[kept++] = rd;
    }
    r->n_reads = kept;
    if (waiting && r->round_confirmed >= r->round)
        raft__bcast_heartbeat(r);
}

void raft__reads_fail(struct raft *r, int err)
{
    size_t n = r->n_reads;
    r->n_reads = 0;
    for (size_t i = 0; i < n; i++)
        answer(r, &r->reads[i], err);
    r->round_wanted = false;
}

void raft__handle_read_index_resp(struct raft *r, const struct raft_msg *m)
{
    int err = 0;
    if (m->reject)
        err = m->err ? m->err : CRAFT_EDROPPED;
    raft__read_result(r, m->ctx, err ? 0 : m->index, err);
}

int raft_read_index(struct raft *r, uint64_t id)
{
    if (r->role == RAFT_LEADER) {
        raft__read_request(r, id, r->id, r->term);
        return 0;
    }
    if (r->lead == RAFT_NONE) {
        raft__read_result(r, id, 0, CRAFT_ENOLEADER);
        return 0;
    }
    struct raft_msg *m = raft__send(r, RAFT_MSG_READ_INDEX, r->lead);
    m->ctx = id;
    m->term = r->term; /* not checked by the step; read by quorum_with */
    return 0;
}

uint64_t raft_now(const struct raft *r)
{
    return r->now;
}

/* The lease, as argued in docs/read-lease.md. A follower that answered
 * the round refuses votes for election_ticks of its own ticks after it
 * heard it; the first of those may come at once, so it keeps its promise
 * for at least election_ticks - 1 of its tick periods after the round was
 * sent. A check at tick now covers real time up to the end of tick now:
 * now + 1 - lease_start of our tick periods after the send. The margin
 * covers clocks running at different rates:
 *     now + 1 - lease_start <= election_ticks - 1 - lease_margin_ticks */
bool raft_lease_valid(const struct raft *r, uint64_t now)
{
    /* A transfer or a hand-over (we removed ourselves), or a TIMEOUT_NOW
     * sent in this term that may still arrive, may start an election that
     * ignores the others' leases: ours is void. */
    if (r->role != RAFT_LEADER || r->transferee != RAFT_NONE || r->leaving ||
        r->timeout_now_sent || !committed_in_term(r))
        return false;
    if (single_voter(r))
        return true;
    if (r->cfg.disable_check_quorum)
        return false; /* followers promise nothing (in_lease) */
    if (r->round_confirmed < r->lease_floor || r->round_confirmed == 0)
        return false;
    if (now < r->now)
        now = r->now; /* a stale clock may shorten the lease, never extend it */
    return now + r->cfg.lease_margin_ticks + 1 <
           r->lease_start + r->cfg.election_ticks;
}

int raft_read_lease(const struct raft *r, uint64_t now, uint64_t *index)
{
    if (!raft_lease_valid(r, now))
        return r->role == RAFT_LEADER ? CRAFT_ETIMEOUT : CRAFT_ENOTLEADER;
    *index = r->log.committed;
    return 0;
}
