/* Per-member replication progress as the leader tracks it: probe /
 * replicate / snapshot, and the window of appends in flight. */
#include <string.h>

#include "common/alloc.h"
#include "raft/raft_int.h"

void raft__pr_reset(struct raft *r, struct raft__progress *pr, uint64_t next)
{
    pr->stamp = ++r->stamps;
    pr->match = 0;
    pr->next = next;
    pr->commit_sent = 0;
    pr->acked_round = 0;
    pr->recent_active = false;
    pr->answered = false;
    pr->vote = 0;
    pr->snap_index = 0;
    pr->snap_offset = 0;
    pr->snap_wait = 0;
    raft__pr_become_probe(pr);
}

static void infl_clear(struct raft__progress *pr)
{
    pr->infl_start = 0;
    pr->infl_count = 0;
    pr->infl_bytes = 0;
}

void raft__pr_become_probe(struct raft__progress *pr)
{
    if (pr->state == RAFT__SNAPSHOT) {
        /* Resume after the snapshot, wherever the follower now is. */
        uint64_t next = pr->snap_index + 1;
        pr->next = pr->match + 1 > next ? pr->match + 1 : next;
    } else {
        pr->next = pr->match + 1 > pr->next ? pr->match + 1 : pr->next;
    }
    pr->state = RAFT__PROBE;
    pr->probe_sent = false;
    pr->snap_index = 0;
    infl_clear(pr);
}

void raft__pr_become_replicate(struct raft__progress *pr)
{
    pr->state = RAFT__REPLICATE;
    pr->probe_sent = false;
    pr->next = pr->match + 1;
    infl_clear(pr);
}

void raft__pr_become_snapshot(struct raft__progress *pr, uint64_t index)
{
    pr->state = RAFT__SNAPSHOT;
    pr->probe_sent = false;
    pr->snap_index = index;
    pr->snap_offset = 0;
    pr->snap_wait = 0;
    infl_clear(pr);
}

/* An acknowledgement that the follower holds up to n (a successful append
 * response; for the leader itself, its own stable log). */
bool raft__pr_maybe_update(struct raft__progress *pr, uint64_t n)
{
    bool updated = false;
    pr->answered = true; /* its log matches ours up to n */
    if (pr->match < n) {
        pr->match = n;
        updated = true;
        pr->probe_sent = false;
    }
    if (pr->next < n + 1)
        pr->next = n + 1;
    return updated;
}

/* A rejection of the append at `rejected`; probe is where the logs may
 * match. Returns false if the rejection is stale (answers an older append). */
bool raft__pr_maybe_decr(struct raft__progress *pr, uint64_t rejected,
                         uint64_t probe)
{
    if (pr->state == RAFT__REPLICATE) {
        if (rejected <= pr->match)
            return false;
    } else if (pr->next - 1 != rejected) {
        return false; /* not the probe we are waiting for */
    }
    uint64_t next = probe + 1 < rejected ? probe + 1 : rejected;
    if (next < pr->match + 1)
        next = pr->match + 1;
    pr->next = next;
    pr->probe_sent = false;
    return true;
}

bool raft__infl_full(const struct raft *r, const struct raft__progress *pr)
{
    return pr->infl_count >= r->cfg.max_inflight ||
           (pr->infl_count > 0 && pr->infl_bytes >= r->cfg.max_inflight_bytes);
}

bool raft__pr_paused(const struct raft *r, const struct raft__progress *pr)
{
    switch (pr->state) {
    case RAFT__PROBE:
        return pr->probe_sent;
    case RAFT__REPLICATE:
        return raft__infl_full(r, pr);
    default:
        return true;
    }
}

void raft__infl_add(struct raft *r, struct raft__progress *pr, uint64_t last,
                    size_t bytes)
{
    assert(!raft__infl_full(r, pr));
    unsigned cap = r->cfg.max_inflight;
    unsigned i = (pr->infl_start + pr->infl_count) % cap;
    pr->infl[i].last = last;
    pr->infl[i].bytes = bytes;
    pr->infl_count++;
    pr->infl_bytes += bytes;
}

/* Everything up to index has been acknowledged. */
void raft__infl_free_to(const struct raft *r, struct raft__progress *pr,
                        uint64_t index)
{
    while (pr->infl_count > 0) {
        struct raft__inflight *f = &pr->infl[pr->infl_start];
        if (f->last > index)
            break;
        pr->infl_bytes -= f->bytes;
        pr->infl_count--;
        pr->infl_start = (pr->infl_start + 1) % r->cfg.max_inflight;
    }
}

/* Make room for one more append when acknowledgements were lost. */
void raft__infl_free_first(const struct raft *r, struct raft__progress *pr)
{
    if (pr->infl_count > 0)
        raft__infl_free_to(r, pr, pr->infl[pr->infl_start].last);
}

struct raft__progress *raft__pr(struct raft *r, uint64_t id)
{
    for (unsigned i = 0; i < r->n_prs; i++)
        if (r->prs[i].id == id)
            return &r->prs[i];
    return NULL;
}

/* Make prs hold exactly the members of r->conf, keeping the progress of
 * those who stay. Never fails: window buffers come from a pool sized for
 * RAFT_MAX_MEMBERS at creation. */
void raft__prs_sync(struct raft *r)
{
    const struct raft_conf *c = &r->conf;
    unsigned n = c->n_voters + c->n_learners;
    assert(n <= RAFT_MAX_MEMBERS);
    struct raft__progress next[RAFT_MAX_MEMBERS];
    bool fresh[RAFT_MAX_MEMBERS] = {false};
    bool kept[RAFT_MAX_MEMBERS] = {false};

    for (unsigned i = 0; i < n; i++) {
        bool learner = i >= c->n_voters;
        uint64_t id = learner ? c->learners[i - c->n_voters] : c->voters[i];
        unsigned j;
        for (j = 0; j < r->n_prs; j++)
            if (r->prs[j].id == id)
                break;
        if (j < r->n_prs) {
            next[i] = r->prs[j];
            kept[j] = true;
        } else {
            memset(&next[i], 0, sizeof next[i]);
            next[i].id = id;
            fresh[i] = true;
        }
        next[i].learner = learner;
    }
    for (unsigned j = 0; j < r->n_prs; j++)
        if (!kept[j])
            r->infl_free[r->n_infl_free++] = r->prs[j].infl;
    memcpy(r->prs, next, n * sizeof next[0]);
    r->n_prs = n;
    for (unsigned i = 0; i < n; i++) {
        if (!fresh[i])
            continue;
        assert(r->n_infl_free > 0);
        r->prs[i].infl = r->infl_free[--r->n_infl_free];
        raft__pr_reset(r, &r->prs[i], raft__log_last(&r->log) + 1);
        /* A newcomer counts as alive for the current check-quorum period,
         * as if it had just answered. */
        r->prs[i].recent_active = true;
    }
}

int raft__prs_init(struct raft *r)
{
    size_t per = r->cfg.max_inflight;
    r->infl_pool = craft_calloc(RAFT_MAX_MEMBERS * per, sizeof *r->infl_pool);
    if (r->infl_pool == NULL)
        return CRAFT_ENOMEM;
    for (unsigned i = 0; i < RAFT_MAX_MEMBERS; i++)
        r->infl_free[i] = r->infl_pool + i * per;
    r->n_infl_free = RAFT_MAX_MEMBERS;
    r->n_prs = 0;
    return 0;
}

void raft__prs_free(struct raft *r)
{
    craft_free(r->infl_pool);
    r->infl_pool = NULL;
    r->n_prs = 0;
}

/* Does m (an answer to an append or a snapshot chunk) answer one sent to
 * pr as it is now? A remove and re-add of the same id in one term makes a
 * new progress; an answer sent to the old one (its match, its "answered")
 * says nothing about the new member. ctx 0: a sender that does not echo
 * the stamp (an older version), taken as before. */
bool raft__pr_current(const struct raft__progress *pr, const struct raft_msg *m)
{
    return m->ctx == 0 || m->ctx == pr->stamp;
}

/* Has the leader heard a successful append response from this member, and
 * is its log within max_lag entries of the commit index? A member that
 * never answered has match 0 (or whatever a young log makes "close"): that
 * says nothing about it, so it is never caught up. */
bool raft_caught_up(const struct raft *r, uint64_t node, uint64_t max_lag)
{
    if (r->role != RAFT_LEADER || node == r->id)
        return false;
    for (unsigned i = 0; i < r->n_prs; i++) {
        const struct raft__progress *pr = &r->prs[i];
        if (pr->id == node)
            return pr->answered && (pr->match >= r->log.committed ||
                                    r->log.committed - pr->match <= max_lag);
    }
    return false;
}
