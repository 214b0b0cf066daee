/* The point-lookup index beside the tree: an open-addressing table (linear
 * probing, backward-shift deletion, keyed SipHash-1-3 so that clients cannot
 * pick colliding keys) from a key to where its record lies, as (28 hash
 * bits, leaf id, offset in the leaf) in one u64 (kv_internal.h); and the
 * table of leaf ids. The tree tells it about
 * every record that appears, moves or goes (kv_tree.c). */
#include "kv/kv_internal.h"

#include <endian.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include "common/alloc.h"

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND()                                                           \
    do {                                                                     \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);            \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                               \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                               \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);            \
    } while (0)

uint64_t kv__siphash(uint64_t k0, uint64_t k1, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k1 ^ 0x7465646279746573ULL;
    size_t whole = len & ~(size_t)7;

    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m; /* one load, not eight (the byte loop stays a loop) */
        memcpy(&m, p + i, 8);
        m = le64toh(m);
        v3 ^= m;
        SIPROUND();
        v0 ^= m;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = whole; i < len; i++)
        last |= (uint64_t)p[i] << (8 * (i - whole));
    v3 ^= last;
    SIPROUND();
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND();
    SIPROUND();
    SIPROUND();
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 0 asks for a random key; a failed getrandom falls back on the clock and
 * an address, which is still unknown to clients. */
static void seed_hash(struct kv *kv, uint64_t seed)
{
    if (seed == 0) {
        uint64_t r[2];
        if (getrandom(r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r) {
            kv->k0 = r[0];
            kv->k1 = r[1];
            return;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
               (uint64_t)(uintptr_t)kv;
    }
    kv->k0 = splitmix64(&seed);
    kv->k1 = splitmix64(&seed);
}

uint64_t kv__hkey(const struct kv *kv, const void *key, size_t klen)
{
    return kv__siphash(kv->k0, kv->k1, key, klen);
}

static uint32_t h28(uint64_t h)
{
    return (uint32_t)(h >> 36);
}

/* A table of cap empty slots. Past KV__HASH_SYNC_MAX slots it is a mapping
 * of its own: calloc took such sizes from memory malloc had to clear first
 * (14 ms for 32 MiB on a loaded map, all at once), while a new mapping is
 * zeros already and its pages arrive as slots are first written. */
static bool mapped(size_t cap)
{
    return cap > KV__HASH_SYNC_MAX;
}

static uint64_t *table_new(size_t cap)
{
    if (!mapped(cap))
        return craft_calloc(cap, sizeof(uint64_t));
    return craft_map(cap * sizeof(uint64_t));
}

static void table_free(uint64_t *hs, size_t cap)
{
    if (!mapped(cap))
        craft_free(hs);
    else
        craft_unmap(hs, cap * sizeof(uint64_t));
}

int kv__hash_init(struct kv *kv, uint64_t seed)
{
    seed_hash(kv, seed);
    kv->hs = table_new(KV__HASH_MIN);
    kv->leaf_ids = craft_malloc(KV__HASH_MIN * sizeof *kv->leaf_ids);
    kv->free_ids = craft_malloc(KV__HASH_MIN * sizeof *kv->free_ids);
    if (!kv->hs || !kv->leaf_ids || !kv->free_ids) {
        kv__hash_free(kv);
        return CRAFT_ENOMEM;
    }
    kv->hcap = KV__HASH_MIN;
    kv->ids_cap = KV__HASH_MIN;
    kv->n_ids = 1; /* id 0 marks an empty slot */
    kv->n_free_ids = 0;
    return 0;
}

void kv__hash_free(struct kv *kv)
{
    table_free(kv->hs, kv->hcap);
    table_free(kv->hs_old, kv->hcap_old);
    kv->hs_old = NULL;
    kv->hcap_old = 0;
    craft_free(kv->leaf_ids);
    craft_free(kv->free_ids);
    kv->hs = NULL;
    kv->leaf_ids = NULL;
    kv->free_ids = NULL;
}

static void put_slot(uint64_t *hs, size_t mask, uint64_t slot)
{
    size_t i = kv__hslot_h(slot) & mask;
    while (hs[i] != 0)
        i = (i + 1) & mask;
    hs[i] = slot;
}

/* Empty slot i of hs, pulling back the slots after it that may live
 * closer to their home (backward-shift deletion: no slot is ever separated
 * from its home by an empty one, so searches stop at the first empty). */
static void del_at(uint64_t *hs, size_t mask, size_t i)
{
    for (size_t j = (i + 1) & mask; hs[j] != 0; j = (j + 1) & mask) {
        size_t home = kv__hslot_h(hs[j]) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            hs[i] = hs[j];
            i = j;
        }
    }
    hs[i] = 0;
}

/* ---- resizing, a step at a time ----
 *
 * Rebuilding a table of millions of slots at once stalls its caller for
 * tens of milliseconds (52 ms at 3 M keys, about 100 ms at 6 M, with every
 * request of the node waiting). Past KV__HASH_SYNC_MAX slots the table is
 * rebuilt instead as Redis rehashes its dicts: the new table takes every
 * new slot, the old one keeps the rest until they are moved, and searches
 * look in both. Moves happen only where no caller holds a slot index (at
 * kv__hash_reserve, the start of a write, and kv__hash_maybe_shrink, its
 * end): KV__HASH_STEP (kv_internal.h) steps for each key a write may add, and
 * KV__HASH_TRIM_STEP at each trim (and KV__HASH_TIDY_STEP at each
 * kv_tidy, the node's tick); a step moves one slot or passes one empty
 * one. Old slots are moved in order from the first, each taken out
 * by backward shift, so [0, hs_next) of the old table is always empty and
 * no slot of it lies behind the cursor from its home (backward shift keeps
 * every slot reachable from its home): a key whose home is behind the
 * cursor is in the new table or nowhere. A table of C slots at 3/4 load
 * takes 7/4 C steps (each slot is passed once, each record moved once);
 * the doubled table is left at 3/8 load and grows again at 3/4, 3/4 C
 * puts later, when at KV__HASH_STEP the old one has been empty since
 * 7/64 C puts; a resize that finds one still there finishes it first. A
 * slot index names the new table's slot i as i and the old table's as
 * hcap + i. */
#define KV__HASH_TRIM_STEP 4096
#define KV__HASH_TIDY_STEP 32768 /* kv_tidy: 0.1-1 ms */
/* The old table's pages behind the cursor go back a MiB at a time: freeing
 * a 64 MiB table at once took 5 ms. */
#define KV__HASH_RELEASE_SLOTS ((1u << 20) / sizeof(uint64_t))

static void migrate(struct kv *kv, size_t budget)
{
    size_t old_mask = kv->hcap_old - 1, mask = kv->hcap - 1;
    while (budget > 0 && kv->hs_next < kv->hcap_old) {
        budget--;
        uint64_t s = kv->hs_old[kv->hs_next];
        if (s == 0) {
            if (++kv->hs_next % KV__HASH_RELEASE_SLOTS == 0 &&
                mapped(kv->hcap_old)) /* a mapping reads zeros again */
                (void)madvise(kv->hs_old + kv->hs_next - KV__HASH_RELEASE_SLOTS,
                              KV__HASH_RELEASE_SLOTS * sizeof(uint64_t),
                              MADV_DONTNEED);
            continue;
        }
        put_slot(kv->hs, mask, s);
        del_at(kv->hs_old, old_mask, kv->hs_next); /* may refill it */
    }
    if (kv->hs_next == kv->hcap_old) {
        table_free(kv->hs_old, kv->hcap_old);
        kv->hs_old = NULL;
        kv->hcap_old = 0;
        kv->hs_next = 0;
    }
}

static void migrate_all(struct kv *kv)
{
    if (kv->hs_old != NULL)
        migrate(kv, SIZE_MAX);
}

/* Make the table cap slots: at once if it is small, else by steps. */
static int resize(struct kv *kv, size_t cap)
{
    migrate_all(kv);
    uint64_t *hs = table_new(cap);
    if (hs == NULL)
        return CRAFT_ENOMEM;
    kv->hs_old = kv->hs;
    kv->hcap_old = kv->hcap;
    kv->hs_next = 0;
    kv->hs = hs;
    kv->hcap = cap;
    kv->hash_resizes++;
    if (kv->hcap_old <= KV__HASH_SYNC_MAX)
        migrate_all(kv);
    return 0;
}

static bool fits(size_t n, size_t cap)
{
    return n <= cap / 4 * 3;
}

int kv__hash_reserve(struct kv *kv, size_t n_more)
{
    if (kv->hs_old != NULL)
        migrate(kv, n_more < SIZE_MAX / KV__HASH_STEP ? n_more * KV__HASH_STEP
                                                       : SIZE_MAX);
    size_t cap = kv->hcap;
    while (!fits(kv->count + n_more, cap)) {
        if (cap > SIZE_MAX / 2 / sizeof *kv->hs)
            return CRAFT_ENOMEM;
        cap *= 2;
    }
    if (cap != kv->hcap) {
        int err = resize(kv, cap);
        if (err)
            return err;
    }
    /* leaf ids: each new leaf takes a free one or the next unused one */
    size_t fresh = n_more > kv->n_free_ids ? n_more - kv->n_free_ids : 0;
    if (fresh > KV__MAX_LEAVES + 1 - kv->n_ids)
        return CRAFT_ENOMEM; /* the map is full */
    if (kv->n_ids + fresh > kv->ids_cap) {
        size_t icap = kv->ids_cap;
        while (kv->n_ids + fresh > icap)
            icap *= 2;
        struct kv__leaf **ids =
            craft_realloc(kv->leaf_ids, icap * sizeof *ids);
        if (ids == NULL)
            return CRAFT_ENOMEM;
        kv->leaf_ids = ids;
        uint32_t *fr = craft_realloc(kv->free_ids, icap * sizeof *fr);
        if (fr == NULL)
            return CRAFT_ENOMEM; /* ids grown is harmless */
        kv->free_ids = fr;
        kv->ids_cap = icap;
    }
    return 0;
}

bool kv_tidy(struct kv *kv)
{
    if (kv->hs_old != NULL)
        migrate(kv, KV__HASH_TIDY_STEP);
    return kv->hs_old != NULL;
}

void kv__hash_maybe_shrink(struct kv *kv)
{
    if (kv->hs_old != NULL) {
        migrate(kv, KV__HASH_TRIM_STEP);
        return;
    }
    if (kv->hcap > KV__HASH_MIN && kv->count < kv->hcap / 8)
        (void)resize(kv, kv->hcap / 2); /* failure: stays larger */
}

uint32_t kv__leaf_id_new(struct kv *kv, struct kv__leaf *l)
{
    uint32_t id = kv->n_free_ids ? kv->free_ids[--kv->n_free_ids]
                                 : (uint32_t)kv->n_ids++;
    kv->leaf_ids[id] = l;
    l->id = id;
    return id;
}

void kv__leaf_id_free(struct kv *kv, uint32_t id)
{
    kv->leaf_ids[id] = NULL;
    kv->free_ids[kv->n_free_ids++] = id;
}

size_t kv__hash_home(const struct kv *kv, uint64_t h)
{
    return h28(h) & (kv->hcap - 1);
}

void kv__hash_add(struct kv *kv, uint64_t h, uint32_t id, uint16_t off)
{
    put_slot(kv->hs, kv->hcap - 1, kv__hslot(h28(h), id, off));
}

/* Where slot `want` is in hs (cap slots), else SIZE_MAX. */
static size_t find_slot(const uint64_t *hs, size_t cap, uint64_t want)
{
    size_t mask = cap - 1;
    for (size_t i = kv__hslot_h(want) & mask;; i = (i + 1) & mask) {
        if (hs[i] == want)
            return i;
        if (hs[i] == 0)
            return SIZE_MAX;
    }
}

/* Whether a key of 28 hash bits h may be in the old table: only if its home
 * there is not behind the cursor (see "resizing", above). Such a key is in
 * the old table if it was there when the resize began, so it is looked
 * for there first. */
static bool maybe_old(const struct kv *kv, uint32_t h)
{
    return kv->hs_old != NULL && (h & (kv->hcap_old - 1)) >= kv->hs_next;
}

size_t kv__hash_slot_of(const struct kv *kv, uint64_t h, uint32_t id,
                        uint16_t off)
{
    uint64_t want = kv__hslot(h28(h), id, off);
    if (__builtin_expect(kv->hs_old == NULL, 1))
        return find_slot(kv->hs, kv->hcap, want); /* SIZE_MAX: a bug */
    if (maybe_old(kv, h28(h))) {
        size_t i = find_slot(kv->hs_old, kv->hcap_old, want);
        if (i != SIZE_MAX)
            return kv->hcap + i;
    }
    return find_slot(kv->hs, kv->hcap, want); /* SIZE_MAX: a bug */
}

void kv__hash_move(struct kv *kv, size_t i, uint32_t id, uint16_t off)
{
    uint64_t *s = i < kv->hcap ? &kv->hs[i] : &kv->hs_old[i - kv->hcap];
    *s = kv__hslot(kv__hslot_h(*s), id, off);
}

void kv__hash_del_slot(struct kv *kv, size_t i)
{
    if (i < kv->hcap)
        del_at(kv->hs, kv->hcap - 1, i);
    else
        del_at(kv->hs_old, kv->hcap_old - 1, i - kv->hcap);
}

bool kv__hash_find(const struct kv *kv, const void *key, size_t klen,
                   struct kv__leaf **leaf, uint16_t *off)
{
    return kv__hash_find_h(kv, kv__hkey(kv, key, klen), key, klen, leaf, off);
}

/* The record of key (its 28 hash bits h) that hs (cap slots) points to. */
static inline __attribute__((always_inline)) bool
find_in(const struct kv *kv, const uint64_t *hs, size_t cap, uint32_t h,
        const void *key, size_t klen, struct kv__leaf **leaf, uint16_t *off)
{
    size_t mask = cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint64_t s = hs[i];
        if (s == 0)
            return false;
        if (kv__hslot_h(s) != h)
            continue;
        struct kv__leaf *l = kv->leaf_ids[kv__hslot_id(s)];
        if (kv__rec_key_is(l, kv__hslot_off(s), key, klen)) {
            *leaf = l;
            *off = kv__hslot_off(s);
            return true;
        }
    }
}

bool kv__hash_find_h(const struct kv *kv, uint64_t hfull, const void *key,
                     size_t klen, struct kv__leaf **leaf, uint16_t *off)
{
    uint32_t h = h28(hfull);
    if (__builtin_expect(kv->hs_old == NULL, 1)) /* no resize under way */
        return find_in(kv, kv->hs, kv->hcap, h, key, klen, leaf, off);
    if (maybe_old(kv, h) &&
        find_in(kv, kv->hs_old, kv->hcap_old, h, key, klen, leaf, off))
        return true;
    return find_in(kv, kv->hs, kv->hcap, h, key, klen, leaf, off);
}
