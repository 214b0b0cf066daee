/* The core's output: the outbox of messages and results that accumulate
 * between batches, the ready batch that hands them out with what to persist
 * and apply, and raft_advance. Everything a batch points at lives in an
 * arena that is recycled when the batch is advanced. */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "raft/raft_int.h"

/* ---- arena ---- */

struct raft__block {
    struct raft__block *next;
    size_t cap;
    size_t used;
    max_align_t data[];
};

void *raft__arena_alloc(struct raft__arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct raft__block *b = a->head;
    if (b == NULL || b->cap - b->used < size) {
        size_t cap = b ? b->cap * 2 : 64 * 1024;
        while (cap < size)
            cap *= 2;
        struct raft__block *nb = craft_malloc(sizeof *nb + cap);
        if (nb == NULL)
            abort(); /* bounded by what one batch carries; see below */
        nb->next = b;
        nb->cap = cap;
        nb->used = 0;
        a->head = nb;
        b = nb;
    }
    void *p = (char *)b->data + b->used;
    b->used += size;
    return p;
}

void raft__arena_reset(struct raft__arena *a)
{
    struct raft__block *b = a->head;
    if (b == NULL)
        return;
    struct raft__block *older = b->next;
    while (older) {
        struct raft__block *next = older->next;
        craft_free(older);
        older = next;
    }
    b->next = NULL;
    b->used = 0;
}

void raft__arena_free(struct raft__arena *a)
{
    raft__arena_reset(a);
    craft_free(a->head);
    a->head = NULL;
}

/* Make room for one more item in a growable array (*arr holds n items of
 * size bytes, *cap allocated). 0, or CRAFT_ENOMEM with the array as it was. */
int raft__grow(void *arr, size_t *cap, size_t n, size_t size)
{
    void **p = arr;
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 16;
    void *q = craft_realloc(*p, c * size);
    if (q == NULL)
        return CRAFT_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* ---- outbox ---- */

static bool is_termless(uint8_t type)
{
    return type == RAFT_MSG_PROP || type == RAFT_MSG_PROP_RESP ||
           type == RAFT_MSG_READ_INDEX || type == RAFT_MSG_READ_INDEX_RESP ||
           type == RAFT_MSG_TRANSFER;
}

/* A new message from us in the outbox, stamped with our term. The pointer
 * is valid until the next raft__send. */
struct raft_msg *raft__send(struct raft *r, uint8_t type, uint64_t to)
{
    if (r->n_out == r->cap_out) {
        size_t cap = r->cap_out ? r->cap_out * 2 : 64;
        struct raft_msg *m = craft_realloc(r->out, cap * sizeof *m);
        uint8_t *after = craft_realloc(r->out_after, cap);
        if (m)
            r->out = m;
        if (after)
            r->out_after = after;
        if (m == NULL || after == NULL)
            abort(); /* a core that cannot talk cannot make progress */
        r->cap_out = cap;
    }
    struct raft_msg *m = &r->out[r->n_out];
    memset(m, 0, sizeof *m);
    m->type = type;
    m->from = r->id;
    m->to = to;
    m->term = is_termless(type) ? 0 : r->term;
    r->out_after[r->n_out] = 0;
    r->n_out++;
    return m;
}

/* m (in the outbox) promises something durable: hold it until persisted. */
void raft__send_after(struct raft *r, struct raft_msg *m)
{
    size_t i = (size_t)(m - r->out);
    assert(i < r->n_out);
    r->out_after[i] = 1;
}

/* Entries from `from` on are gone before they were persisted: an
 * acknowledgement of them still in the outbox would claim what will never
 * be on disk. Drop it (a lost message, as far as the leader knows). */
void raft__drop_acks(struct raft *r, uint64_t from)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n_out; i++) {
        const struct raft_msg *m = &r->out[i];
        if (m->type == RAFT_MSG_APP_RESP && !m->reject && m->index >= from)
            continue;
        r->out[k] = r->out[i];
        r->out_after[k] = r->out_after[i];
        k++;
    }
    r->n_out = k;
}

/* ---- ready ---- */

static bool hs_equal(const struct raft_hard_state *a,
                     const struct raft_hard_state *b)
{
    return a->term == b->term && a->vote == b->vote && a->commit == b->commit;
}

static uint64_t apply_limit(const struct raft *r)
{
    const struct raft__log *l = &r->log;
    return l->committed < l->stabled ? l->committed : l->stabled;
}

bool raft_apply_pending(const struct raft *r)
{
    return apply_limit(r) > r->log.applied;
}

void raft_set_apply_budget(struct raft *r, size_t bytes)
{
    r->apply_budget = bytes;
}

/* The last index one batch hands out to apply: from applied + 1 to at most
 * limit, as many as fit in its budget, and always one. */
static uint64_t apply_batch_end(const struct raft *r, uint64_t limit)
{
    const struct raft__log *l = &r->log;
    size_t budget = r->apply_budget ? r->apply_budget : r->cfg.max_apply_bytes;
    size_t used = 0;
    uint64_t i = l->applied + 1;
    for (; i <= limit; i++) {
        used += raft__log_at(l, i)->len + RAFT_APPLY_ENTRY_COST;
        if (used > budget && i > l->applied + 1)
            break;
    }
    return i - 1;
}

bool raft_has_ready(const struct raft *r)
{
    if (r->ready_out)
        return false;
    struct raft_hard_state hs = raft_hard(r);
    struct raft_soft_state ss = raft_soft(r);
    return r->n_out > 0 || r->n_props > 0 || r->n_read_results > 0 ||
           r->pending_chunk != NULL || !hs_equal(&hs, &r->prev_hs) ||
           ss.role != r->prev_ss.role || ss.leader != r->prev_ss.leader ||
           ss.term != r->prev_ss.term ||
           raft__log_last(&r->log) > r->log.stabled ||
           raft_apply_pending(r) || raft__appends_pending(r);
}

static struct raft_entry *copy_range(struct raft *r, uint64_t lo, uint64_t hi,
                                     size_t *n)
{
    *n = hi >= lo ? (size_t)(hi - lo + 1) : 0;
    if (*n == 0)
        return NULL;
    struct raft_entry *e = raft__arena_alloc(&r->arena, *n * sizeof *e);
    memcpy(e, raft__log_at(&r->log, lo), *n * sizeof *e);
    return e;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    assert(!r->ready_out);
    memset(rd, 0, sizeof *rd);
    raft__send_appends(r);

    struct raft_hard_state hs = raft_hard(r);
    bool vote_changed = hs.term != r->prev_hs.term || hs.vote != r->prev_hs.vote;
    if (!hs_equal(&hs, &r->prev_hs)) {
        rd->hs_changed = true;
        rd->hs = hs;
        r->prev_hs = hs;
    }

    struct raft__log *l = &r->log;
    rd->entries = copy_range(r, l->stabled + 1, raft__log_last(l),
                             &rd->n_entries);
    rd->snap_chunk = r->pending_chunk;
    r->pending_chunk = NULL;
    r->ready_snap_last = rd->snap_chunk != NULL && rd->snap_chunk->last;

    /* Only what is already durable here may be applied; at most
     * max_apply_bytes of it per batch. */
    uint64_t limit = apply_limit(r);
    if (limit > l->applied) {
        uint64_t end = apply_batch_end(r, limit);
        rd->committed = copy_range(r, l->applied + 1, end, &rd->n_committed);
        l->applied = end;
    }
    r->apply_budget = 0;

    /* Split the outbox: a message that depends on this batch's durable
     * state (or on a new term or vote) waits for it. */
    size_t n_after = 0;
    for (size_t i = 0; i < r->n_out; i++)
        if (r->out_after[i] || (vote_changed && !is_termless(r->out[i].type)))
            r->out_after[i] = 1, n_after++;
    size_t n_now = r->n_out - n_after;
    rd->msgs = raft__arena_alloc(&r->arena, (n_now + 1) * sizeof *rd->msgs);
    rd->msgs_after =
        raft__arena_alloc(&r->arena, (n_after + 1) * sizeof *rd->msgs_after);
    for (size_t i = 0; i < r->n_out; i++) {
        if (r->out_after[i])
            rd->msgs_after[rd->n_msgs_after++] = r->out[i];
        else
            rd->msgs[rd->n_msgs++] = r->out[i];
    }
    r->n_out = 0;

    if (r->n_props) {
        rd->props = raft__arena_alloc(&r->arena, r->n_props * sizeof *rd->props);
        memcpy(rd->props, r->props, r->n_props * sizeof *rd->props);
        rd->n_props = r->n_props;
        r->n_props = 0;
    }
    if (r->n_read_results) {
        size_t sz = r->n_read_results * sizeof *rd->reads;
        rd->reads = raft__arena_alloc(&r->arena, sz);
        memcpy(rd->reads, r->read_results, sz);
        rd->n_reads = r->n_read_results;
        r->n_read_results = 0;
    }

    struct raft_soft_state ss = raft_soft(r);
    if (ss.role != r->prev_ss.role || ss.leader != r->prev_ss.leader ||
        ss.term != r->prev_ss.term) {
        rd->soft_changed = true;
        r->prev_ss = ss;
    }
    rd->soft = ss;
    rd->want_snapshot = r->cfg.snapshot_threshold > 0 &&
                        l->applied >= r->snap.index + r->cfg.snapshot_threshold;

    /* The batch now owns the arena; the outbox starts a fresh one. */
    struct raft__arena tmp = r->ready_arena;
    r->ready_arena = r->arena;
    r->arena = tmp;
    r->ready_out = true;
    r->ready_hs = r->prev_hs;
    r->ready_votes = vote_changed;
    r->ready_last = raft__log_last(l);
    r->stable_cap = UINT64_MAX;
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
    (void)rd;
    assert(r->ready_out);
    struct raft__log *l = &r->log;
    uint64_t stable = r->ready_last < r->stable_cap ? r->ready_last
                                                    : r->stable_cap;
    if (stable > l->stabled && stable <= raft__log_last(l))
        l->stabled = stable;
    r->ready_out = false;
    for (size_t i = 0; i < r->n_limbo; i++)
        craft_free(r->limbo[i]);
    r->n_limbo = 0;
    raft__arena_reset(&r->ready_arena);
    if (r->role == RAFT_CANDIDATE && r->ready_hs.term == r->term &&
        r->ready_hs.vote == r->id)
        raft__self_vote_durable(r);
    if (r->role == RAFT_LEADER) {
        struct raft__progress *self = raft__pr(r, r->id);
        if (self != NULL)
            raft__pr_maybe_update(self, l->stabled);
        raft__maybe_commit(r);
    }
}

size_t raft_take_heartbeats(struct raft *r, struct raft_msg *out, size_t cap)
{
    if (!r->ready_out || r->ready_votes)
        return 0;
    struct raft_hard_state hs = raft_hard(r);
    if (hs.term != r->prev_hs.term || hs.vote != r->prev_hs.vote)
        return 0;
    size_t n = 0, k = 0;
    for (size_t i = 0; i < r->n_out; i++) {
        uint8_t t = r->out[i].type;
        bool hb = t == RAFT_MSG_HEARTBEAT || t == RAFT_MSG_HEARTBEAT_RESP;
        if (hb && !r->out_after[i] && n < cap) {
            out[n++] = r->out[i];
            continue;
        }
        r->out[k] = r->out[i];
        r->out_after[k] = r->out_after[i];
        k++;
    }
    r->n_out = k;
    return n;
}
