/* The watch hub: subscriptions grouped by exact key or prefix in a keyed
 * hash, marked while an entry's keys are reported, called once per entry.
 *
 * Lists are intrusive, circular and doubly linked, so a subscription can
 * leave whatever list it is on (its group's, the marked list, or the list
 * a flush is working through) without knowing which. A flush moves the
 * marked list onto its own stack head and takes one subscription off the
 * front before each call: a callback that unsubscribes anything, itself
 * included, only unlinks a node the flush has not reached or already left. */
#include "watch/watch.h"

#include <string.h>

#include "common/alloc.h"

struct link {
    struct link *prev, *next; /* next NULL: on no list */
};

struct watch_group {
    struct watch_group *hnext; /* hash chain */
    uint64_t hash;
    struct link subs;          /* its subscriptions (by in_group) */
    size_t klen;
    bool prefix;
    uint8_t key[];
};

struct watch_sub {
    struct link in_group; /* first member: the group list's nodes */
    struct link in_mark;  /* on the marked (or flushing) list */
    struct watch_group *group;
    watch_fn fn;
    void *ud;
};

/* A prefix length some prefix group has, and how many groups have it. */
struct plen {
    size_t len;
    size_t groups;
};

struct watch_hub {
    uint64_t k0, k1;              /* hash key */
    struct watch_group **buckets; /* nbuckets (a power of 2) chains */
    size_t nbuckets;
    size_t ngroups;
    size_t nsubs;
    struct plen *plens;           /* distinct prefix lengths, ascending */
    size_t nplens;
    struct link marked;
};

#define MIN_BUCKETS 64

/* ---- lists -------------------------------------------------------------- */

static void list_init(struct link *head) { head->prev = head->next = head; }
static bool list_empty(const struct link *head) { return head->next == head; }

static void list_push(struct link *head, struct link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static void list_unlink(struct link *l)
{
    if (!l->next)
        return;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

/* Move every node of from onto the empty head to. */
static void list_move(struct link *from, struct link *to)
{
    list_init(to);
    if (list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    list_init(from);
}

#define SUB_OF(l, member) \
    ((struct watch_sub *)((char *)(l) - offsetof(struct watch_sub, member)))

/* ---- SipHash-1-3 (clients choose keys: the hash is keyed) --------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                          \
    do {                                                                  \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);         \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                            \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                            \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);         \
    } while (0)

static uint64_t siphash13(uint64_t k0, uint64_t k1, const uint8_t *p, size_t n)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)n << 56;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t m = 0;
        for (int j = 0; j < 8; j++)
            m |= (uint64_t)p[i + j] << (8 * j);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (int j = 0; i + j < n; j++)
        b |= (uint64_t)p[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND; SIPROUND; SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash_of(const struct watch_hub *hub, const void *key,
                        size_t klen, bool prefix)
{
    return siphash13(hub->k0, hub->k1 ^ prefix, key, klen);
}

/* ---- groups ------------------------------------------------------------- */

struct watch_hub *watch_hub_new(uint64_t seed)
{
    struct watch_hub *hub = craft_calloc(1, sizeof *hub);
    if (!hub)
        return NULL;
    hub->buckets = craft_calloc(MIN_BUCKETS, sizeof *hub->buckets);
    if (!hub->buckets) {
        craft_free(hub);
        return NULL;
    }
    hub->nbuckets = MIN_BUCKETS;
    hub->k0 = seed ^ 0x9e3779b97f4a7c15ULL;
    hub->k1 = seed * 0xbf58476d1ce4e5b9ULL + 1;
    list_init(&hub->marked);
    return hub;
}

static struct watch_group *find(const struct watch_hub *hub, uint64_t h,
                                const void *key, size_t klen, bool prefix)
{
    struct watch_group *g = hub->buckets[h & (hub->nbuckets - 1)];
    for (; g; g = g->hnext)
        if (g->hash == h && g->prefix == prefix && g->klen == klen &&
            (klen == 0 || memcmp(g->key, key, klen) == 0))
            return g;
    return NULL;
}

/* Double the table when it is fuller than one group a bucket. A failed
 * allocation keeps the old table: chains just get longer. */
static void maybe_grow(struct watch_hub *hub)
{
    if (hub->ngroups < hub->nbuckets)
        return;
    size_t n = hub->nbuckets * 2;
    struct watch_group **b = craft_calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < hub->nbuckets; i++) {
        struct watch_group *g = hub->buckets[i], *next;
        for (; g; g = next) {
            next = g->hnext;
            g->hnext = b[g->hash & (n - 1)];
            b[g->hash & (n - 1)] = g;
        }
    }
    craft_free(hub->buckets);
    hub->buckets = b;
    hub->nbuckets = n;
}

/* The slot of len in plens, or where it would go. */
static size_t plen_pos(const struct watch_hub *hub, size_t len)
{
    size_t lo = 0, hi = hub->nplens;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (hub->plens[mid].len < len)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int plen_add(struct watch_hub *hub, size_t len)
{
    size_t i = plen_pos(hub, len);
    if (i < hub->nplens && hub->plens[i].len == len) {
        hub->plens[i].groups++;
        return 0;
    }
    struct plen *p = craft_realloc(hub->plens, (hub->nplens + 1) * sizeof *p);
    if (!p)
        return CRAFT_ENOMEM;
    hub->plens = p;
    memmove(&p[i + 1], &p[i], (hub->nplens - i) * sizeof *p);
    p[i] = (struct plen){.len = len, .groups = 1};
    hub->nplens++;
    return 0;
}

static void plen_del(struct watch_hub *hub, size_t len)
{
    size_t i = plen_pos(hub, len);
    if (--hub->plens[i].groups > 0)
        return;
    memmove(&hub->plens[i], &hub->plens[i + 1],
            (hub->nplens - i - 1) * sizeof *hub->plens);
    hub->nplens--;
}

static void group_unhash(struct watch_hub *hub, struct watch_group *g)
{
    struct watch_group **pp = &hub->buckets[g->hash & (hub->nbuckets - 1)];
    while (*pp != g)
        pp = &(*pp)->hnext;
    *pp = g->hnext;
    hub->ngroups--;
    if (g->prefix)
        plen_del(hub, g->klen);
    craft_free(g);
}

static struct watch_group *group_get(struct watch_hub *hub, const void *key,
                                     size_t klen, bool prefix)
{
    uint64_t h = hash_of(hub, key, klen, prefix);
    struct watch_group *g = find(hub, h, key, klen, prefix);
    if (g)
        return g;
    g = craft_malloc(sizeof *g + klen);
    if (!g)
        return NULL;
    if (prefix && plen_add(hub, klen) != 0) {
        craft_free(g);
        return NULL;
    }
    g->hash = h;
    g->klen = klen;
    g->prefix = prefix;
    if (klen)
        memcpy(g->key, key, klen);
    list_init(&g->subs);
    g->hnext = hub->buckets[h & (hub->nbuckets - 1)];
    hub->buckets[h & (hub->nbuckets - 1)] = g;
    hub->ngroups++;
    maybe_grow(hub);
    return g;
}

/* ---- subscriptions ------------------------------------------------------ */

struct watch_sub *watch_hub_subscribe(struct watch_hub *hub, const void *key,
                                      size_t klen, bool prefix, watch_fn fn,
                                      void *ud)
{
    struct watch_sub *s = craft_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    struct watch_group *g = group_get(hub, key, klen, prefix);
    if (!g) {
        craft_free(s);
        return NULL;
    }
    s->group = g;
    s->fn = fn;
    s->ud = ud;
    list_push(&g->subs, &s->in_group);
    hub->nsubs++;
    return s;
}

void watch_hub_unsubscribe(struct watch_hub *hub, struct watch_sub *sub)
{
    if (!sub)
        return;
    list_unlink(&sub->in_mark);
    list_unlink(&sub->in_group);
    if (list_empty(&sub->group->subs))
        group_unhash(hub, sub->group);
    hub->nsubs--;
    craft_free(sub);
}

void watch_hub_free(struct watch_hub *hub)
{
    if (!hub)
        return;
    for (size_t i = 0; i < hub->nbuckets; i++) {
        struct watch_group *g = hub->buckets[i], *next;
        for (; g; g = next) {
            next = g->hnext;
            while (!list_empty(&g->subs)) {
                struct watch_sub *s = SUB_OF(g->subs.next, in_group);
                list_unlink(&s->in_group);
                craft_free(s);
            }
            craft_free(g);
        }
    }
    craft_free(hub->buckets);
    craft_free(hub->plens);
    craft_free(hub);
}

/* ---- notifying ---------------------------------------------------------- */

static void mark_group(struct watch_hub *hub, struct watch_group *g)
{
    for (struct link *l = g->subs.next; l != &g->subs; l = l->next) {
        struct watch_sub *s = SUB_OF(l, in_group);
        if (!s->in_mark.next)
            list_push(&hub->marked, &s->in_mark);
    }
}

void watch_hub_changed(struct watch_hub *hub, const void *key, size_t klen)
{
    struct watch_group *g = find(hub, hash_of(hub, key, klen, false), key,
                                 klen, false);
    if (g)
        mark_group(hub, g);
    for (size_t i = 0; i < hub->nplens && hub->plens[i].len <= klen; i++) {
        size_t n = hub->plens[i].len;
        g = find(hub, hash_of(hub, key, n, true), key, n, true);
        if (g)
            mark_group(hub, g);
    }
}

size_t watch_hub_flush(struct watch_hub *hub, uint64_t index)
{
    struct link work;
    size_t called = 0;
    list_move(&hub->marked, &work);
    while (!list_empty(&work)) {
        struct watch_sub *s = SUB_OF(work.next, in_mark);
        list_unlink(&s->in_mark);
        called++;
        s->fn(s->ud, s, index); /* may free s or any other */
    }
    return called;
}

size_t watch_hub_notify_all(struct watch_hub *hub, uint64_t index)
{
    for (size_t i = 0; i < hub->nbuckets; i++)
        for (struct watch_group *g = hub->buckets[i]; g; g = g->hnext)
            mark_group(hub, g);
    return watch_hub_flush(hub, index);
}

size_t watch_hub_count(const struct watch_hub *hub) { return hub->nsubs; }
size_t watch_hub_groups(const struct watch_hub *hub) { return hub->ngroups; }

void *watch_sub_ud(const struct watch_sub *sub) { return sub->ud; }

const uint8_t *watch_sub_key(const struct watch_sub *sub, size_t *klen,
                             bool *prefix)
{
    *klen = sub->group->klen;
    *prefix = sub->group->prefix;
    return sub->group->key;
}
