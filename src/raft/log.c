/* The core's in-memory log: entries since the last compaction, which of them
 * are durable (stabled), committed and handed out to apply. */
#include <string.h>

#include "common/alloc.h"
#include "raft/raft_int.h"

uint64_t raft__log_term(const struct raft__log *l, uint64_t i)
{
    if (i == l->offset)
        return l->offset_term;
    if (i < l->offset || i > raft__log_last(l))
        return 0;
    return raft__log_at(l, i)->term;
}

/* Is a log ending at (idx, term) at least as up to date as ours? (§5.4.1) */
bool raft__log_up_to_date(const struct raft__log *l, uint64_t idx,
                          uint64_t term)
{
    uint64_t last = raft__log_last(l);
    uint64_t last_term = raft__log_term(l, last);
    return term > last_term || (term == last_term && idx >= last);
}

/* Entry data freed while a ready batch is out may still be referenced by
 * it: park it until raft_advance. */
void raft__free_data(struct raft *r, void *data)
{
    if (data == NULL)
        return;
    if (!r->ready_out) {
        craft_free(data);
        return;
    }
    if (raft__grow(&r->limbo, &r->cap_limbo, r->n_limbo, sizeof *r->limbo))
        return; /* cannot park it: leaking is safe, freeing is not */
    r->limbo[r->n_limbo++] = data;
}

static int copy_entry(struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    dst->data = NULL;
    if (src->len) {
        uint8_t *d = craft_memdup(src->data, src->len);
        if (d == NULL)
            return CRAFT_ENOMEM;
        dst->data = d;
    }
    return 0;
}

int raft__log_init(struct raft__log *l, const struct raft_persisted *p)
{
    memset(l, 0, sizeof *l);
    if (p == NULL)
        return 0;
    const struct raft_entry *e = p->entries;
    size_t n = p->n_entries;
    l->offset = p->snap.index;
    l->offset_term = p->snap.term;
    if (n && e[0].index <= p->snap.index) {
        /* The first stored entry serves as the log's base (its data is not
         * needed: it is covered by the snapshot or was compacted). */
        l->offset = e[0].index;
        l->offset_term = e[0].term;
        e++;
        n--;
    } else if (n && e[0].index != p->snap.index + 1) {
        return CRAFT_ECORRUPT; /* a gap between snapshot and log */
    }
    l->ents = craft_calloc(n ? n : 1, sizeof *l->ents);
    if (l->ents == NULL)
        return CRAFT_ENOMEM;
    l->cap = n ? n : 1;
    uint64_t prev_term = l->offset_term;
    for (size_t i = 0; i < n; i++) {
        if (e[i].index != l->offset + i + 1 || e[i].term < prev_term ||
            e[i].term == 0 || e[i].type > RAFT_ENTRY_CONF)
            return CRAFT_ECORRUPT;
        prev_term = e[i].term;
        int rv = copy_entry(&l->ents[i], &e[i]);
        if (rv)
            return rv;
        l->n = i + 1;
    }
    l->stabled = raft__log_last(l);
    l->committed = p->hs.commit;
    if (l->committed < p->snap.index)
        l->committed = p->snap.index;
    if (l->committed > raft__log_last(l))
        return CRAFT_ECORRUPT; /* an acknowledged entry is missing */
    if (p->snap.index > raft__log_last(l))
        return CRAFT_ECORRUPT;
    l->applied = p->snap.index;
    return 0;
}

void raft__log_free(struct raft *r)
{
    struct raft__log *l = &r->log;
    for (size_t i = 0; i < l->n; i++)
        craft_free((void *)l->ents[i].data);
    craft_free(l->ents);
    memset(l, 0, sizeof *l);
}

static int log_reserve(struct raft__log *l, size_t extra)
{
    if (l->n + extra <= l->cap)
        return 0;
    size_t cap = l->cap ? l->cap : 16;
    while (cap < l->n + extra)
        cap *= 2;
    struct raft_entry *p = craft_realloc(l->ents, cap * sizeof *p);
    if (p == NULL)
        return CRAFT_ENOMEM;
    l->ents = p;
    l->cap = cap;
    return 0;
}

/* Append copies of entries that continue the log exactly. */
int raft__log_append(struct raft *r, const struct raft_entry *e, size_t n)
{
    struct raft__log *l = &r->log;
    int rv = log_reserve(l, n);
    if (rv)
        return rv;
    for (size_t i = 0; i < n; i++) {
        assert(e[i].index == raft__log_last(l) + 1);
        rv = copy_entry(&l->ents[l->n], &e[i]);
        if (rv)
            return rv;
        l->n++;
        if (e[i].type == RAFT_ENTRY_CONF) {
            rv = raft__conf_on_append(r, &l->ents[l->n - 1]);
            if (rv)
                return rv;
        }
    }
    return 0;
}

/* Drop entries from `from` on. Never a committed one. */
void raft__log_truncate(struct raft *r, uint64_t from)
{
    struct raft__log *l = &r->log;
    assert(from > l->committed);
    assert(from > l->offset);
    while (raft__log_last(l) >= from) {
        l->n--;
        raft__free_data(r, (void *)l->ents[l->n].data);
    }
    if (l->stabled >= from)
        l->stabled = from - 1;
    if (r->stable_cap >= from)
        r->stable_cap = from - 1;
    raft__drop_acks(r, from);
    raft__conf_truncate(r, from);
}

/* Forget entries up to and including `to` (covered by a snapshot). */
void raft__log_compact(struct raft *r, uint64_t to)
{
    struct raft__log *l = &r->log;
    if (to <= l->offset)
        return;
    assert(to <= l->applied && to <= l->stabled);
    size_t k = (size_t)(to - l->offset);
    uint64_t term = raft__log_term(l, to);
    for (size_t i = 0; i < k; i++)
        raft__free_data(r, (void *)l->ents[i].data);
    if (l->n > k)
        memmove(l->ents, l->ents + k, (l->n - k) * sizeof *l->ents);
    l->n -= k;
    l->offset = to;
    l->offset_term = term;
}

/* A snapshot ending at (index, term) replaces the log up to index. If the
 * log holds that very entry, what follows it is kept (§7); else all goes. */
void raft__log_restore(struct raft *r, uint64_t index, uint64_t term)
{
    struct raft__log *l = &r->log;
    size_t keep = 0;
    if (index < raft__log_last(l) && index > l->offset &&
        raft__log_term(l, index) == term)
        keep = (size_t)(raft__log_last(l) - index);
    else
        raft__drop_acks(r, index + 1);
    for (size_t i = 0; i < l->n - keep; i++)
        raft__free_data(r, (void *)l->ents[i].data);
    if (keep > 0)
        memmove(l->ents, l->ents + (l->n - keep), keep * sizeof *l->ents);
    l->n = keep;
    l->offset = index;
    l->offset_term = term;
    l->committed = index;
    l->applied = index;
    l->stabled = index;
    r->stable_cap = index;
}

/* The first of e[] whose term differs from ours at its index, or that we do
 * not have; 0 if we hold them all. */
uint64_t raft__log_find_conflict(const struct raft__log *l,
                                 const struct raft_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (e[i].index <= l->offset)
            continue; /* compacted: committed, so it matches */
        if (raft__log_term(l, e[i].index) != e[i].term)
            return e[i].index;
    }
    return 0;
}

/* The largest index <= idx whose term is <= term: where a leader whose log
 * has `term` at `idx` should probe next (fast backtracking). */
uint64_t raft__log_hint(const struct raft__log *l, uint64_t idx,
                        uint64_t term)
{
    if (idx > raft__log_last(l))
        idx = raft__log_last(l);
    while (idx > l->offset && raft__log_term(l, idx) > term)
        idx--;
    return idx;
}
