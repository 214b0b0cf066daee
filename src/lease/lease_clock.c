/* The lease clock (lease.h): per lease its TTL and deadline, found by id in
 * a hash table (open addressing, linear probing, deletion by backward
 * shift) and ordered in a binary min-heap by the time it is next due: its
 * deadline, or, once named by lease_clock_due, the time it is named again. */
#include "lease/lease.h"


#include "common/alloc.h"
#include "common/error.h"
#include "kv/kv.h"

struct lease_ent {
    uint64_t id;
    uint64_t ttl_ms;
    uint64_t deadline; /* when it runs out (caller's ms) */
    uint64_t due_at;   /* heap key: deadline, or the retry once proposed */
    bool proposed;     /* named by lease_clock_due, not restarted since */
    size_t heap_pos;   /* its index in heap */
};

struct lease_clock {
    uint64_t retry_ms;
    uint64_t wait_upto; /* names none until applied reaches it */
    struct lease_ent **slots; /* hash table, n_slots a power of 2 or 0 */
    size_t n_slots;
    struct lease_ent **heap;  /* min-heap by due_at; n entries */
    size_t n, cap_heap;
};

/* ---- the hash table ---- */

static size_t slot_of(const struct lease_clock *c, uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (c->n_slots - 1);
}

/* The slot holding id, or the empty slot where it would go. */
static size_t find_slot(const struct lease_clock *c, uint64_t id)
{
    size_t i = slot_of(c, id);
    while (c->slots[i] != NULL && c->slots[i]->id != id)
        i = (i + 1) & (c->n_slots - 1);
    return i;
}

static struct lease_ent *lookup(const struct lease_clock *c, uint64_t id)
{
    return c->n_slots ? c->slots[find_slot(c, id)] : NULL;
}

/* Room for one more entry with the table at most half full. */
static int table_reserve(struct lease_clock *c)
{
    if ((c->n + 1) * 2 <= c->n_slots)
        return 0;
    size_t cap = c->n_slots ? c->n_slots * 2 : 16;
    struct lease_ent **s = craft_calloc(cap, sizeof *s);
    if (s == NULL)
        return CRAFT_ENOMEM;
    struct lease_ent **old = c->slots;
    size_t n_old = c->n_slots;
    c->slots = s;
    c->n_slots = cap;
    for (size_t i = 0; i < n_old; i++)
        if (old[i] != NULL)
            c->slots[find_slot(c, old[i]->id)] = old[i];
    craft_free(old);
    return 0;
}

/* Empties slot i and moves later entries of its probe run back, so that
 * every entry stays reachable from its home slot without tombstones. */
static void table_remove_at(struct lease_clock *c, size_t i)
{
    size_t mask = c->n_slots - 1;
    c->slots[i] = NULL;
    for (size_t j = (i + 1) & mask; c->slots[j] != NULL; j = (j + 1) & mask) {
        size_t home = slot_of(c, c->slots[j]->id);
        /* j's entry may fill the hole at i unless its home lies
         * cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        c->slots[i] = c->slots[j];
        c->slots[j] = NULL;
        i = j;
    }
}

/* ---- the heap ---- */

static void heap_set(struct lease_clock *c, size_t i, struct lease_ent *e)
{
    c->heap[i] = e;
    e->heap_pos = i;
}

static void heap_up(struct lease_clock *c, size_t i)
{
    struct lease_ent *e = c->heap[i];
    while (i > 0 && c->heap[(i - 1) / 2]->due_at > e->due_at) {
        heap_set(c, i, c->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(c, i, e);
}

static void heap_down(struct lease_clock *c, size_t i)
{
    struct lease_ent *e = c->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = l;
        if (l >= c->n)
            break;
        if (l + 1 < c->n && c->heap[l + 1]->due_at < c->heap[l]->due_at)
            m = l + 1;
        if (c->heap[m]->due_at >= e->due_at)
            break;
        heap_set(c, i, c->heap[m]);
        i = m;
    }
    heap_set(c, i, e);
}

/* e's due_at changed: restore the heap order. */
static void heap_fix(struct lease_clock *c, struct lease_ent *e)
{
    heap_up(c, e->heap_pos);
    heap_down(c, e->heap_pos);
}

static int heap_reserve(struct lease_clock *c)
{
    if (c->n < c->cap_heap)
        return 0;
    size_t cap = c->cap_heap ? c->cap_heap * 2 : 16;
    struct lease_ent **h = craft_realloc(c->heap, cap * sizeof *h);
    if (h == NULL)
        return CRAFT_ENOMEM;
    c->heap = h;
    c->cap_heap = cap;
    return 0;
}

/* ---- the clock ---- */

int lease_clock_new(uint64_t retry_ms, struct lease_clock **out)
{
    *out = NULL;
    if (retry_ms == 0)
        return CRAFT_EINVAL;
    struct lease_clock *c = craft_calloc(1, sizeof *c);
    if (c == NULL)
        return CRAFT_ENOMEM;
    c->retry_ms = retry_ms;
    *out = c;
    return 0;
}

void lease_clock_clear(struct lease_clock *c)
{
    for (size_t i = 0; i < c->n; i++)
        craft_free(c->heap[i]);
    for (size_t i = 0; i < c->n_slots; i++)
        c->slots[i] = NULL;
    c->n = 0;
}

void lease_clock_free(struct lease_clock *c)
{
    if (c == NULL)
        return;
    lease_clock_clear(c);
    craft_free(c->slots);
    craft_free(c->heap);
    craft_free(c);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int lease_clock_start(struct lease_clock *c, uint64_t id, uint64_t ttl_ms,
                      uint64_t now)
{
    if (id == 0 || ttl_ms == 0)
        return CRAFT_EINVAL;
    struct lease_ent *e = lookup(c, id);
    if (e == NULL) {
        /* Everything that can fail first: the clock is unchanged then. */
        int rv = table_reserve(c);
        if (rv == 0)
            rv = heap_reserve(c);
        if (rv)
            return rv;
        e = craft_calloc(1, sizeof *e);
        if (e == NULL)
            return CRAFT_ENOMEM;
        e->id = id;
        c->slots[find_slot(c, id)] = e;
        heap_set(c, c->n++, e);
    }
    e->ttl_ms = ttl_ms;
    e->deadline = add_sat(now, ttl_ms);
    e->due_at = e->deadline;
    e->proposed = false;
    heap_fix(c, e);
    return 0;
}

void lease_clock_forget(struct lease_clock *c, uint64_t id)
{
    if (c->n_slots == 0)
        return;
    size_t s = find_slot(c, id);
    struct lease_ent *e = c->slots[s];
    if (e == NULL)
        return;
    table_remove_at(c, s);
    size_t i = e->heap_pos;
    struct lease_ent *last = c->heap[--c->n];
    if (last != e) {
        heap_set(c, i, last);
        heap_fix(c, last);
    }
    craft_free(e);
}

int lease_clock_on_applied(struct lease_clock *c, uint8_t op, uint64_t id,
                           bool found, uint64_t ttl_ms, uint64_t now)
{
    switch (op) {
    case KV_LEASE_GRANT:
        return lease_clock_start(c, id, ttl_ms, now);
    case KV_LEASE_KEEPALIVE:
        return found ? lease_clock_start(c, id, ttl_ms, now) : 0;
    case KV_LEASE_REVOKE:
    case KV_LEASE_EXPIRE:
        lease_clock_forget(c, id);
        return 0;
    default:
        return 0;
    }
}

void lease_clock_became_leader(struct lease_clock *c, uint64_t now)
{
    for (size_t i = 0; i < c->n; i++) {
        struct lease_ent *e = c->heap[i];
        e->deadline = add_sat(now, e->ttl_ms);
        e->due_at = e->deadline;
        e->proposed = false;
    }
    c->wait_upto = 0; /* what an earlier term proposed is no one's wait */
    /* Every key changed: heapify bottom-up. */
    for (size_t i = c->n / 2; i-- > 0;)
        heap_down(c, i);
}

size_t lease_clock_due(struct lease_clock *c, uint64_t now, uint64_t applied,
                       uint64_t *ids, size_t cap)
{
    size_t got = 0;
    if (applied < c->wait_upto)
        return 0;
    while (got < cap && c->n > 0 && c->heap[0]->due_at <= now) {
        struct lease_ent *e = c->heap[0];
        ids[got++] = e->id;
        e->proposed = true;
        e->due_at = add_sat(now, c->retry_ms);
        heap_down(c, 0);
    }
    return got;
}

void lease_clock_proposed(struct lease_clock *c, uint64_t upto)
{
    c->wait_upto = upto;
}

int64_t lease_clock_remaining(const struct lease_clock *c, uint64_t id,
                              uint64_t now)
{
    const struct lease_ent *e = lookup(c, id);
    if (e == NULL)
        return -1;
    if (e->deadline <= now)
        return 0;
    uint64_t left = e->deadline - now;
    return left > INT64_MAX ? INT64_MAX : (int64_t)left;
}

size_t lease_clock_count(const struct lease_clock *c)
{
    return c->n;
}
