/* Log replication: what the leader sends (appends, heartbeats, snapshot
 * chunks) and how it counts acknowledgements toward a commit; what a
 * follower does with them. */
#include <stdlib.h>
#include <string.h>

#include "raft/raft_int.h"

/* ---- leader: sending ---- */

static void send_snap_chunk(struct raft *r, struct raft__progress *pr)
{
    if (pr->snap_index != r->snap.index)
        raft__pr_become_snapshot(pr, r->snap.index); /* a newer one exists */
    uint64_t left = r->snap.size - pr->snap_offset;
    uint32_t len = left < r->cfg.snap_chunk_bytes ? (uint32_t)left
                                                  : r->cfg.snap_chunk_bytes;
    struct raft_msg *m = raft__send(r, RAFT_MSG_SNAP, pr->id);
    m->snap.meta = r->snap;
    m->snap.offset = pr->snap_offset;
    m->snap.len = len;
    m->snap.data = NULL; /* filled by the caller, see raft.h */
    m->snap.last = pr->snap_offset + len == r->snap.size;
    m->ctx = pr->stamp;
    pr->snap_wait = 0;
}

/* Send pr one append (or start a snapshot). Returns false if nothing was
 * sent: paused, or nothing to say. */
static bool send_append(struct raft *r, struct raft__progress *pr)
{
    const struct raft__log *l = &r->log;
    if (raft__pr_paused(r, pr))
        return false;
    if (pr->next <= l->offset) {
        /* What it needs was compacted away. */
        if (r->snap.index == 0)
            return false;
        raft__pr_become_snapshot(pr, r->snap.index);
        send_snap_chunk(r, pr);
        return true;
    }
    uint64_t last = raft__log_last(l);
    size_t n = 0, bytes = 0;
    for (uint64_t i = pr->next; i <= last; i++) {
        size_t len = raft__log_at(l, i)->len;
        if (n > 0 && bytes + len > r->cfg.max_msg_bytes)
            break;
        n++;
        bytes += len;
    }
    if (n == 0 && pr->state == RAFT__REPLICATE &&
        pr->commit_sent >= l->committed && !pr->resync)
        return false;
    pr->resync = false;
    struct raft_msg *m = raft__send(r, RAFT_MSG_APP, pr->id);
    m->index = pr->next - 1;
    m->log_term = raft__log_term(l, m->index);
    m->commit = l->committed;
    m->ctx = pr->stamp;
    m->n_entries = (uint32_t)n;
    if (n > 0) {
        m->entries = raft__arena_alloc(&r->arena, n * sizeof *m->entries);
        memcpy(m->entries, raft__log_at(l, pr->next), n * sizeof *m->entries);
    }
    pr->commit_sent = l->committed;
    if (pr->state == RAFT__REPLICATE) {
        if (n > 0) {
            pr->next += n;
            raft__infl_add(r, pr, pr->next - 1, bytes);
        }
    } else {
        pr->probe_sent = true;
    }
    return true;
}

/* At ready time: give every follower what it is missing, in as few
 * messages as the limits allow (many proposals, one append). */
void raft__send_appends(struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return;
    for (unsigned i = 0; i < r->n_prs; i++) {
        struct raft__progress *pr = &r->prs[i];
        if (pr->id == r->id)
            continue;
        while (send_append(r, pr) && pr->state == RAFT__REPLICATE &&
               pr->next <= raft__log_last(&r->log))
            ;
    }
}

bool raft__appends_pending(const struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return false;
    for (unsigned i = 0; i < r->n_prs; i++) {
        const struct raft__progress *pr = &r->prs[i];
        if (pr->id == r->id || raft__pr_paused(r, pr))
            continue;
        if (pr->state == RAFT__PROBE || pr->next <= raft__log_last(&r->log) ||
            pr->commit_sent < r->log.committed || pr->resync)
            return true;
    }
    return false;
}

void raft__bcast_heartbeat(struct raft *r)
{
    r->round++;
    r->round_ticks[r->round % 64] = r->now;
    r->round_wanted = false;
    for (unsigned i = 0; i < r->n_prs; i++) {
        struct raft__progress *pr = &r->prs[i];
        if (pr->id == r->id)
            continue;
        struct raft_msg *m = raft__send(r, RAFT_MSG_HEARTBEAT, pr->id);
        /* Never tell a follower to commit what it may not have. */
        m->commit = pr->match < r->log.committed ? pr->match
                                                 : r->log.committed;
        m->ctx = r->round;
    }
    raft__reads_on_round(r); /* a one-voter cluster confirms at once */
}

/* A leader that removed itself leaves once the change is committed: it
 * asks the most up-to-date voter to campaign at once, and again at every
 * heartbeat until a higher term deposes it. Stepping down instead could
 * leave the others waiting for an election timeout. */
void raft__hand_over(struct raft *r)
{
    if (r->n_confs > 0 && r->confs[r->n_confs - 1].index > r->log.committed)
        return; /* not committed yet: keep replicating it */
    struct raft__progress *best = NULL;
    for (unsigned i = 0; i < r->n_prs; i++) {
        struct raft__progress *pr = &r->prs[i];
        if (!pr->learner && pr->id != r->id &&
            (best == NULL || pr->match > best->match))
            best = pr;
    }
    if (best == NULL || best->match != raft__log_last(&r->log))
        return;
    raft__send_timeout_now(r, best->id);
}

void raft__tick_snapshots(struct raft *r)
{
    for (unsigned i = 0; i < r->n_prs; i++) {
        struct raft__progress *pr = &r->prs[i];
        if (pr->state != RAFT__SNAPSHOT)
            continue;
        if (++pr->snap_wait >= r->snap_resend_ticks)
            send_snap_chunk(r, pr); /* the chunk or its ack was lost */
    }
}

/* ---- leader: counting ---- */

void raft__commit_to(struct raft *r, uint64_t index)
{
    struct raft__log *l = &r->log;
    if (index <= l->committed)
        return;
    assert(index <= raft__log_last(l));
    uint64_t old = l->committed;
    l->committed = index;
    if (r->role != RAFT_LEADER)
        return;
    for (uint64_t i = old + 1; i <= index; i++) {
        const struct raft_entry *e = raft__log_at(l, i);
        r->uncommitted_bytes -= e->len < r->uncommitted_bytes
                                    ? e->len : r->uncommitted_bytes;
    }
    raft__reads_on_commit(r);
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Commit what a quorum of voters holds, counting replicas only for an
 * entry of the current term (§5.4.2: older entries commit with it). */
bool raft__maybe_commit(struct raft *r)
{
    bool any = false;
    while (r->role == RAFT_LEADER) {
        uint64_t m[RAFT_MAX_MEMBERS];
        unsigned n = 0;
        for (unsigned i = 0; i < r->n_prs; i++) {
            const struct raft__progress *pr = &r->prs[i];
            if (pr->learner)
                continue;
            m[n++] = pr->id == r->id ? r->log.stabled : pr->match;
        }
        if (n == 0)
            return any;
        qsort(m, n, sizeof m[0], cmp_desc);
        uint64_t idx = m[raft__quorum(n) - 1];
        if (idx <= r->log.committed ||
            raft__log_term(&r->log, idx) != r->term)
            return any;
        raft__commit_to(r, idx);
        any = true;
    }
    return any;
}

void raft__handle_append_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft__progress *pr = raft__pr(r, m->from);
    if (pr == NULL || !raft__pr_current(pr, m))
        return;
    pr->recent_active = true;
    if (m->reject) {
        /* Skip back past the whole conflicting term at once. */
        uint64_t probe = m->hint;
        if (m->log_term > 0)
            probe = raft__log_hint(&r->log, m->hint, m->log_term);
        if (raft__pr_maybe_decr(pr, m->index, probe) &&
            pr->state == RAFT__REPLICATE)
            raft__pr_become_probe(pr);
        return;
    }
    bool probe_answered = pr->state == RAFT__PROBE && m->index == pr->match;
    if (!raft__pr_maybe_update(pr, m->index) && !probe_answered)
        return;
    switch (pr->state) {
    case RAFT__PROBE:
        raft__pr_become_replicate(pr);
        break;
    case RAFT__SNAPSHOT:
        if (pr->match >= pr->snap_index)
            raft__pr_become_probe(pr);
        break;
    case RAFT__REPLICATE:
        raft__infl_free_to(r, pr, m->index);
        break;
    }
    raft__maybe_commit(r);
    if (r->role == RAFT_LEADER)
        raft__maybe_timeout_now(r, pr);
}

void raft__handle_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft__progress *pr = raft__pr(r, m->from);
    if (pr == NULL)
        return;
    pr->recent_active = true;
    pr->probe_sent = false;
    if (pr->state == RAFT__REPLICATE && raft__infl_full(r, pr))
        raft__infl_free_first(r, pr);
    /* It lags and nothing new would go out: appends may have been lost
     * (they are only resent after a rejection), so ask with an empty one. */
    if (pr->state == RAFT__REPLICATE && pr->match < raft__log_last(&r->log))
        pr->resync = true;
    if (m->ctx > pr->acked_round && m->ctx <= r->round) {
        pr->acked_round = m->ctx;
        raft__reads_on_round(r);
    }
}

void raft__handle_snap_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft__progress *pr = raft__pr(r, m->from);
    if (pr == NULL || !raft__pr_current(pr, m))
        return;
    pr->recent_active = true;
    if (pr->state != RAFT__SNAPSHOT || m->snap.meta.index != pr->snap_index)
        return;
    if (m->reject) {
        pr->snap_offset = 0; /* it lost track: start over */
    } else {
        if (m->snap.offset > r->snap.size)
            return;
        pr->snap_offset = m->snap.offset;
    }
    pr->snap_wait = 0;
    if (pr->snap_offset < r->snap.size || m->reject)
        send_snap_chunk(r, pr);
}

/* ---- follower ---- */

void raft__handle_append(struct raft *r, const struct raft_msg *m)
{
    struct raft__log *l = &r->log;
    struct raft_msg *resp;
    if (m->index < l->committed) {
        /* All of that is committed here already. */
        resp = raft__send(r, RAFT_MSG_APP_RESP, m->from);
        resp->index = l->committed;
        resp->ctx = m->ctx;
        raft__send_after(r, resp);
        return;
    }
    uint64_t last = raft__log_last(l);
    if (m->index <= last && raft__log_term(l, m->index) == m->log_term) {
        uint64_t c = raft__log_find_conflict(l, m->entries, m->n_entries);
        if (c != 0) {
            /* Never overwrite a committed entry (Log Matching makes this
             * impossible; crash loudly rather than lose data). */
            assert(c > l->committed);
            if (c <= raft__log_last(l))
                raft__log_truncate(r, c);
            const struct raft_entry *from = &m->entries[c - m->index - 1];
            uint64_t n = m->index + m->n_entries - c + 1;
            if (raft__log_append(r, from, (size_t)n) != 0)
                return; /* out of memory: no answer, the leader retries */
        }
        uint64_t last_new = m->index + m->n_entries;
        raft__commit_to(r, m->commit < last_new ? m->commit : last_new);
        resp = raft__send(r, RAFT_MSG_APP_RESP, m->from);
        resp->index = last_new;
        resp->ctx = m->ctx;
        raft__send_after(r, resp); /* acknowledges durable entries */
        return;
    }
    uint64_t hint = raft__log_hint(l, m->index < last ? m->index : last,
                                   m->log_term);
    resp = raft__send(r, RAFT_MSG_APP_RESP, m->from);
    resp->reject = true;
    resp->index = m->index;
    resp->ctx = m->ctx;
    resp->hint = hint;
    resp->log_term = raft__log_term(l, hint);
}

void raft__handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    uint64_t last = raft__log_last(&r->log);
    raft__commit_to(r, m->commit < last ? m->commit : last);
    struct raft_msg *resp = raft__send(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
    resp->ctx = m->ctx;
}

/* An answer to the chunk m: which snapshot, the next offset wanted. */
static struct raft_msg *snap_resp(struct raft *r, const struct raft_msg *m,
                                  uint64_t offset, bool reject)
{
    struct raft_msg *resp = raft__send(r, RAFT_MSG_SNAP_RESP, m->from);
    resp->ctx = m->ctx;
    resp->snap.meta.index = m->snap.meta.index;
    resp->snap.offset = offset;
    resp->reject = reject;
    return resp;
}

void raft__handle_snap(struct raft *r, const struct raft_msg *m)
{
    const struct raft_snap_chunk *c = &m->snap;
    struct raft__log *l = &r->log;
    if (c->meta.index <= l->committed) {
        /* We have all of it already: say how far we are. */
        struct raft_msg *resp = raft__send(r, RAFT_MSG_APP_RESP, m->from);
        resp->index = l->committed;
        resp->ctx = m->ctx;
        raft__send_after(r, resp);
        return;
    }
    if (c->offset == 0 && r->pending_chunk == NULL) {
        r->recv = c->meta; /* (re)start receiving this snapshot */
        r->recv_next = 0;
    }
    if (r->recv.index != c->meta.index || r->recv.term != c->meta.term) {
        snap_resp(r, m, 0, true);
        return;
    }
    if (c->offset != r->recv_next) {
        snap_resp(r, m, r->recv_next, false);
        return;
    }
    if (r->pending_chunk != NULL)
        return; /* one chunk per ready; the leader will resend */
    if (c->offset + c->len > c->meta.size || c->last != (c->offset + c->len ==
                                                          c->meta.size))
        return; /* malformed */
    struct raft_snap_chunk *pc = raft__arena_alloc(&r->arena, sizeof *pc);
    uint8_t *data = raft__arena_alloc(&r->arena, c->len ? c->len : 1);
    if (c->len)
        memcpy(data, c->data, c->len);
    *pc = *c;
    pc->data = data;
    r->pending_chunk = pc;
    r->recv_next += c->len;
    if (!c->last) {
        /* Acknowledges a durable chunk. */
        raft__send_after(r, snap_resp(r, m, r->recv_next, false));
        return;
    }
    /* Complete: the snapshot replaces our log and state machine. */
    r->snap = c->meta;
    raft__log_restore(r, c->meta.index, c->meta.term);
    raft__conf_restore(r);
    r->recv.index = 0;
    r->recv_next = 0;
    struct raft_msg *resp = raft__send(r, RAFT_MSG_APP_RESP, m->from);
    resp->index = c->meta.index;
    resp->ctx = m->ctx;
    raft__send_after(r, resp);
}
