/* The durable state of a simulated node: hard state, the current and the
 * previous snapshot, and the stored log (entries copied in, freed here).
 * sim_log_truncate_after models a disk that lost its last synced writes. */
#include "sim/sim.h"

#include <string.h>

#include "common/alloc.h"

uint64_t sim_log_last(const struct sim_log *l)
{
    return l->first + l->n - 1;
}

const struct sim_ent *sim_log_at(const struct sim_log *l, uint64_t index)
{
    if (l->n == 0 || index < l->first || index > sim_log_last(l))
        return NULL;
    return &l->e[index - l->first];
}

uint64_t sim_log_term(const struct sim_log *l, uint64_t index)
{
    const struct sim_ent *e = sim_log_at(l, index);
    return e ? e->term : 0;
}

static void drop_from(struct sim_log *l, size_t pos)
{
    for (size_t i = pos; i < l->n; i++)
        craft_free(l->e[i].data);
    l->n = pos;
}

static int reserve(struct sim_log *l, size_t n)
{
    if (n <= l->cap)
        return 0;
    size_t cap = l->cap ? l->cap * 2 : 64;
    while (cap < n)
        cap *= 2;
    struct sim_ent *e = craft_realloc(l->e, cap * sizeof(*e));
    if (!e)
        return CRAFT_ENOMEM;
    l->e = e;
    l->cap = cap;
    return 0;
}

int sim_log_append(struct sim_log *l, const struct raft_entry *e, size_t n,
                   uint64_t covered)
{
    size_t skip = 0;
    /* Entries below the log's start can only be ones the snapshot covers. */
    while (skip < n && e[skip].index < l->first) {
        if (e[skip].index > covered)
            return CRAFT_EINVAL;
        skip++;
    }
    if (skip == n)
        return 0;
    uint64_t start = e[skip].index;
    if (start > l->first + l->n)
        return CRAFT_EINVAL; /* a gap */
    for (size_t i = skip + 1; i < n; i++)
        if (e[i].index != e[i - 1].index + 1)
            return CRAFT_EINVAL;
    drop_from(l, (size_t)(start - l->first));
    int err = reserve(l, l->n + (n - skip));
    if (err)
        return err;
    for (size_t i = skip; i < n; i++) {
        struct sim_ent *d = &l->e[l->n];
        d->index = e[i].index;
        d->term = e[i].term;
        d->type = e[i].type;
        d->len = e[i].len;
        d->data = craft_memdup(e[i].data, e[i].len);
        if (!d->data)
            return CRAFT_ENOMEM;
        l->n++;
    }
    return 0;
}

void sim_log_compact(struct sim_log *l, uint64_t keep_from)
{
    if (keep_from <= l->first)
        return;
    size_t k = (size_t)(keep_from - l->first);
    if (k > l->n)
        k = l->n;
    for (size_t i = 0; i < k; i++)
        craft_free(l->e[i].data);
    memmove(l->e, l->e + k, (l->n - k) * sizeof(*l->e));
    l->n -= k;
    l->first += k;
}

void sim_log_truncate_after(struct sim_log *l, uint64_t last)
{
    if (last + 1 < l->first)
        last = l->first - 1;
    if (last < sim_log_last(l))
        drop_from(l, (size_t)(last + 1 - l->first));
}

void sim_log_reset(struct sim_log *l, uint64_t first)
{
    drop_from(l, 0);
    l->first = first;
}

void sim_log_free(struct sim_log *l)
{
    drop_from(l, 0);
    craft_free(l->e);
    l->e = NULL;
    l->cap = 0;
}

void sim_snap_free(struct sim_snap *s)
{
    craft_free(s->data);
    memset(s, 0, sizeof(*s));
}

void sim_disk_free(struct sim_disk *d)
{
    sim_snap_free(&d->cur);
    sim_snap_free(&d->prev);
    sim_log_free(&d->log);
}

const struct sim_snap *sim_disk_find_snap(const struct sim_disk *d,
                                          uint64_t index)
{
    if (index == 0)
        return NULL;
    if (d->cur.meta.index == index)
        return &d->cur;
    if (d->prev.meta.index == index)
        return &d->prev;
    return NULL;
}
