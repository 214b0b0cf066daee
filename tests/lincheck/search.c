/* The linearizability search for one key: Wing & Gong's depth-first search
 * over call/return events with Lowe's memo cache, as Porcupine does it. */
#include <string.h>

#include "common/error.h"
#include "lincheck/lincheck_int.h"

/* A call or return event in the doubly linked list the search consumes. */
struct event {
    struct event *prev, *next;
    struct event *match; /* call: its return event; return: NULL */
    uint32_t id;         /* kop index */
};

/* A linearized call, to undo on backtrack. */
struct frame {
    struct event *call;
    struct lincheck__state state; /* register state before the call */
};

/* The memo cache: (linearized set, state) pairs already explored. An open
 * addressing table of record numbers; each record's bitset lives in one
 * arena. The set's hash is kept incrementally (Zobrist: xor of a random
 * word per op), so a lookup costs O(1) unless hashes collide. */
struct cache {
    uint32_t *slots;     /* record number + 1; 0 = empty */
    size_t mask;         /* slots has mask + 1 entries, a power of two */
    uint64_t *hashes;    /* per record */
    struct lincheck__state *states;
    uint64_t *bits;      /* per record, `words` words */
    size_t len, cap;     /* records */
    size_t words;
    size_t bytes, max_bytes;
    const struct craft_allocator *a;
};

/* A well-mixed 64-bit value for x (splitmix64's finaliser). */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t cache_key(uint64_t set_hash, struct lincheck__state state)
{
    uint64_t s = (uint64_t)(uint32_t)state.val * 0xff51afd7ed558ccdULL;
    return mix64(set_hash ^ s ^ mix64(state.mod));
}

static bool state_eq(struct lincheck__state a, struct lincheck__state b)
{
    return a.val == b.val && a.mod == b.mod;
}

/* Idempotent: a freed cache may be freed again. */
static void cache_free(struct cache *c)
{
    lincheck__free(c->a, c->slots);
    lincheck__free(c->a, c->hashes);
    lincheck__free(c->a, c->states);
    lincheck__free(c->a, c->bits);
    c->slots = NULL;
    c->hashes = NULL;
    c->states = NULL;
    c->bits = NULL;
}

static bool cache_has(const struct cache *c, uint64_t h,
                      struct lincheck__state state,
                      const uint64_t *bits)
{
    for (size_t i = h & c->mask;; i = (i + 1) & c->mask) {
        uint32_t s = c->slots[i];
        if (s == 0)
            return false;
        size_t r = s - 1;
        if (c->hashes[r] == h && state_eq(c->states[r], state) &&
            memcmp(c->bits + r * c->words, bits, c->words * 8) == 0)
            return true;
    }
}

static void cache_place(struct cache *c, size_t r)
{
    size_t i = c->hashes[r] & c->mask;
    while (c->slots[i] != 0)
        i = (i + 1) & c->mask;
    c->slots[i] = (uint32_t)(r + 1);
}

/* Make room for one more record. 0, CRAFT_ENOMEM, or CRAFT_TOOBIG when the
 * memory budget would be exceeded. */
static int cache_reserve(struct cache *c)
{
    if (c->len == c->cap) {
        size_t cap = c->cap * 2;
        size_t grow = (c->cap) * (8 + sizeof(*c->states) + c->words * 8);
        if (cap > UINT32_MAX - 1 || c->bytes + grow > c->max_bytes)
            return CRAFT_ETOOBIG;
        uint64_t *h = lincheck__realloc(c->a, c->hashes, cap * 8);
        if (h == NULL)
            return CRAFT_ENOMEM;
        c->hashes = h;
        struct lincheck__state *s =
            lincheck__realloc(c->a, c->states, cap * sizeof(*s));
        if (s == NULL)
            return CRAFT_ENOMEM;
        c->states = s;
        uint64_t *b = lincheck__realloc(c->a, c->bits, cap * c->words * 8);
        if (b == NULL)
            return CRAFT_ENOMEM;
        c->bits = b;
        c->bytes += grow;
        c->cap = cap;
    }
    if (2 * (c->len + 1) > c->mask + 1) {
        size_t n = (c->mask + 1) * 2;
        size_t grow = (c->mask + 1) * 4;
        if (c->bytes + grow > c->max_bytes)
            return CRAFT_ETOOBIG;
        uint32_t *slots = lincheck__array(c->a, n, sizeof(*slots));
        if (slots == NULL)
            return CRAFT_ENOMEM;
        lincheck__free(c->a, c->slots);
        memset(slots, 0, n * sizeof(*slots));
        c->slots = slots;
        c->mask = n - 1;
        c->bytes += grow;
        for (size_t r = 0; r < c->len; r++)
            cache_place(c, r);
    }
    return 0;
}

static int cache_init(struct cache *c, size_t words, size_t max_bytes,
                      const struct craft_allocator *a)
{
    memset(c, 0, sizeof(*c));
    c->a = a;
    c->words = words;
    c->max_bytes = max_bytes;
    c->cap = 64;
    c->mask = 127;
    c->slots = lincheck__array(a, c->mask + 1, sizeof(*c->slots));
    c->hashes = lincheck__array(a, c->cap, sizeof(*c->hashes));
    c->states = lincheck__array(a, c->cap, sizeof(*c->states));
    c->bits = lincheck__array(a, c->cap * words, 8);
    if (!c->slots || !c->hashes || !c->states || !c->bits) {
        cache_free(c);
        return CRAFT_ENOMEM;
    }
    memset(c->slots, 0, (c->mask + 1) * sizeof(*c->slots));
    c->bytes = (c->mask + 1) * 4 +
               c->cap * (8 + sizeof(*c->states) + words * 8);
    return 0;
}

/* Insert a record known to be absent. 0, CRAFT_ENOMEM or CRAFT_ETOOBIG. */
static int cache_add(struct cache *c, uint64_t h, struct lincheck__state state,
                     const uint64_t *bits)
{
    int err = cache_reserve(c);
    if (err)
        return err;
    size_t r = c->len++;
    c->hashes[r] = h;
    c->states[r] = state;
    memcpy(c->bits + r * c->words, bits, c->words * 8);
    cache_place(c, r);
    return 0;
}

/* The mod_index the register holds is m, or is not known and may be m. An
 * absent key's is 0, and a present key's never is. */
static bool mod_may_be(struct lincheck__state st, uint64_t m)
{
    if (st.mod != LINCHECK__MOD_ANY)
        return st.mod == m;
    return m != 0; /* MOD_ANY only follows a write: the key is present */
}

/* The mod_index a write gives the register. */
static uint64_t written_mod(const struct lincheck__kop *k)
{
    return k->op->has_mod ? k->op->mod : LINCHECK__MOD_ANY;
}

/* The register model: apply kop to state. False if what the op observed
 * (a value, a mod_index, a compare's result) disagrees. An observed
 * mod_index fixes one that was not known. */
static bool model_step(const struct lincheck__kop *k,
                       struct lincheck__state state,
                       struct lincheck__state *next)
{
    const struct lincheck_op *op = k->op;
    switch (k->kind) {
    case LINCHECK_PUT:
        *next = (struct lincheck__state){k->val, written_mod(k)};
        return true;
    case LINCHECK_DELETE:
        *next = (struct lincheck__state){0, 0};
        return true;
    case LINCHECK_CAS:
        if (!mod_may_be(state, op->expect))
            return false;
        *next = (struct lincheck__state){k->val, written_mod(k)};
        return true;
    case LINCHECK__CAS_FAILED:
        if (state.mod == op->expect)
            return false;
        if (op->has_mod && !mod_may_be(state, op->mod))
            return false;
        *next = state;
        if (op->has_mod)
            next->mod = op->mod;
        return true;
    default: /* LINCHECK_GET */
        if (state.val != k->val)
            return false;
        if (op->has_mod && !mod_may_be(state, op->mod))
            return false;
        *next = state;
        if (op->has_mod)
            next->mod = op->mod;
        return true;
    }
}

struct ev_order {
    uint64_t time;
    uint32_t is_return;
    uint32_t id;
};

/* By time; at equal times calls before returns (equal stamps overlap). */
static int ev_cmp(const void *pa, const void *pb)
{
    const struct ev_order *x = pa, *y = pb;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    if (x->is_return != y->is_return)
        return x->is_return < y->is_return ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Build head <-> events in time order into ev[0..2n] (ev[0] is the head). */
static int build_events(const struct lincheck__kop *kops, size_t n,
                        struct event *ev, const struct craft_allocator *a)
{
    struct ev_order *ord = lincheck__array(a, 2 * n, sizeof(*ord));
    if (ord == NULL)
        return CRAFT_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        ord[2 * i] = (struct ev_order){kops[i].invoke, 0, (uint32_t)i};
        ord[2 * i + 1] = (struct ev_order){kops[i].complete, 1, (uint32_t)i};
    }
    qsort(ord, 2 * n, sizeof(*ord), ev_cmp);

    /* call_of[id] / ret_of[id]: where each op's events landed. */
    struct event **call_of = lincheck__array(a, n, sizeof(*call_of));
    if (call_of == NULL) {
        lincheck__free(a, ord);
        return CRAFT_ENOMEM;
    }
    ev[0] = (struct event){NULL, NULL, NULL, 0};
    struct event *prev = &ev[0];
    for (size_t i = 0; i < 2 * n; i++) {
        struct event *e = &ev[i + 1];
        *e = (struct event){prev, NULL, NULL, ord[i].id};
        prev->next = e;
        prev = e;
        if (ord[i].is_return)
            call_of[ord[i].id]->match = e;
        else
            call_of[ord[i].id] = e;
    }
    lincheck__free(a, call_of);
    lincheck__free(a, ord);
    return 0;
}

/* Unlink a call and its return. */
static void lift(struct event *call)
{
    call->prev->next = call->next;
    call->next->prev = call->prev;
    struct event *ret = call->match;
    ret->prev->next = ret->next;
    if (ret->next)
        ret->next->prev = ret->prev;
}

/* Relink what lift() removed (in reverse order). */
static void unlift(struct event *call)
{
    struct event *ret = call->match;
    ret->prev->next = ret;
    if (ret->next)
        ret->next->prev = ret;
    call->prev->next = call;
    call->next->prev = call;
}

/* Working memory of one search. */
struct search {
    const struct lincheck__kop *kops;
    size_t n;
    struct event *ev;    /* 2n + 1, ev[0] the head */
    struct frame *stack; /* n */
    uint64_t *bits;      /* the linearized set */
    uint64_t *zob;       /* per op random word for the set hash */
    struct cache cache;
    const struct craft_allocator *a;
};

static void search_free(struct search *s)
{
    lincheck__free(s->a, s->ev);
    lincheck__free(s->a, s->stack);
    lincheck__free(s->a, s->bits);
    lincheck__free(s->a, s->zob);
    cache_free(&s->cache);
}

static int search_init(struct search *s, const struct lincheck__kop *kops,
                       size_t n, size_t max_cache_bytes,
                       const struct craft_allocator *a)
{
    size_t words = (n + 63) / 64;
    memset(s, 0, sizeof(*s));
    s->kops = kops;
    s->n = n;
    s->a = a;
    s->ev = lincheck__array(a, 2 * n + 1, sizeof(*s->ev));
    s->stack = lincheck__array(a, n, sizeof(*s->stack));
    s->bits = lincheck__array(a, words, 8);
    s->zob = lincheck__array(a, n, 8);
    if (!s->ev || !s->stack || !s->bits || !s->zob ||
        cache_init(&s->cache, words, max_cache_bytes, a) != 0) {
        search_free(s);
        return CRAFT_ENOMEM;
    }
    memset(s->bits, 0, words * 8);
    for (size_t i = 0; i < n; i++)
        s->zob[i] = mix64(i * 0x2545f4914f6cdd1dULL + 1);
    int err = build_events(kops, n, s->ev, a);
    if (err)
        search_free(s);
    return err;
}

/* Remember the linearization on the stack if it is the longest so far. The
 * length only grows, so the copies cost O(n^2) over a search at worst. */
static void note_best(const struct search *s, size_t depth,
                      struct lincheck__state state,
                      struct lincheck__search_out *out)
{
    if (depth <= out->best_len)
        return;
    for (size_t i = 0; i < depth; i++)
        out->best[i] = s->stack[i].call->id;
    out->best_len = depth;
    out->best_state = state;
}

/* The search loop proper. Returns 0 or CRAFT_ENOMEM; verdict in out. */
static int search_run(struct search *s, uint64_t max_steps,
                      struct lincheck__search_out *out)
{
    struct event *head = &s->ev[0];
    struct event *e = head->next;
    struct lincheck__state state = {0, 0};
    uint64_t set_hash = 0;
    size_t depth = 0;
    size_t finite = 0; /* ops with a finite return still to linearize */
    for (size_t i = 0; i < s->n; i++)
        finite += s->kops[i].complete != LINCHECK_INF;

    /* Ops that never returned need not be linearized: once every op with a
     * finite return is, the rest "happen" after the history (or never). */
    while (finite > 0) {
        if (out->steps >= max_steps) {
            out->verdict = LINCHECK_UNKNOWN;
            return 0;
        }
        out->steps++;
        if (e->match == NULL) {
            /* A return whose call is not linearized: undo the last choice. */
            if (depth == 0) {
                out->verdict = LINCHECK_VIOLATION;
                return 0;
            }
            struct frame *f = &s->stack[--depth];
            uint32_t id = f->call->id;
            state = f->state;
            s->bits[id / 64] &= ~(1ULL << (id % 64));
            set_hash ^= s->zob[id];
            finite += s->kops[id].complete != LINCHECK_INF;
            unlift(f->call);
            e = f->call->next;
            continue;
        }
        uint32_t id = e->id;
        struct lincheck__state next;
        if (!model_step(&s->kops[id], state, &next)) {
            e = e->next;
            continue;
        }
        uint64_t nh = set_hash ^ s->zob[id];
        uint64_t ck = cache_key(nh, next);
        s->bits[id / 64] |= 1ULL << (id % 64);
        if (cache_has(&s->cache, ck, next, s->bits)) {
            s->bits[id / 64] &= ~(1ULL << (id % 64));
            e = e->next;
            continue;
        }
        int err = cache_add(&s->cache, ck, next, s->bits);
        if (err == CRAFT_ETOOBIG) {
            out->verdict = LINCHECK_UNKNOWN;
            return 0;
        }
        if (err)
            return err;
        s->stack[depth++] = (struct frame){e, state};
        state = next;
        set_hash = nh;
        finite -= s->kops[id].complete != LINCHECK_INF;
        lift(e);
        note_best(s, depth, state, out);
        e = head->next;
    }
    out->verdict = LINCHECK_OK;
    return 0;
}

int lincheck__search(const struct lincheck__kop *kops, size_t n,
                     uint64_t max_steps, size_t max_cache_bytes,
                     const struct craft_allocator *a,
                     struct lincheck__search_out *out)
{
    memset(out, 0, sizeof(*out));
    out->best = lincheck__array(a, n, sizeof(*out->best));
    if (out->best == NULL)
        return CRAFT_ENOMEM;
    struct search s;
    int err = search_init(&s, kops, n, max_cache_bytes, a);
    if (err == 0) {
        err = search_run(&s, max_steps, out);
        search_free(&s);
    }
    if (err) {
        lincheck__free(a, out->best);
        out->best = NULL;
    }
    return err;
}
