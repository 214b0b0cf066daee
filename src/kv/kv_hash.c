/* The point-lookup index beside the tree: an open-addressing table (linear
 * probing, backward-shift deletion, keyed SipHash-1-3 so that clients cannot
 * pick colliding keys) from a key to where its record lies, as (28 hash
 * bits, leaf id, offset in the leaf) in one u64 (kv_internal.h); and the
 * table of leaf ids. The tree tells it about
 * every record that appears, moves or goes (kv_tree.c). */
#include "kv/kv_internal.h"

#include <endian.h>
#include <string.h>
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

int kv__hash_init(struct kv *kv, uint64_t seed)
{
    seed_hash(kv, seed);
    kv->hs = craft_calloc(KV__HASH_MIN, sizeof *kv->hs);
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
    craft_free(kv->hs);
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

/* Rebuild with cap slots (the slots carry the hash bits needed). */
static int rehash(struct kv *kv, size_t cap)
{
    uint64_t *hs = craft_calloc(cap, sizeof *hs);
    if (hs == NULL)
        return CRAFT_ENOMEM;
    for (size_t i = 0; i < kv->hcap; i++)
        if (kv->hs[i] != 0)
            put_slot(hs, cap - 1, kv->hs[i]);
    craft_free(kv->hs);
    kv->hs = hs;
    kv->hcap = cap;
    return 0;
}

static bool fits(size_t n, size_t cap)
{
    return n <= cap / 4 * 3;
}

int kv__hash_reserve(struct kv *kv, size_t n_more)
{
    size_t cap = kv->hcap;
    while (!fits(kv->count + n_more, cap)) {
        if (cap > SIZE_MAX / 2 / sizeof *kv->hs)
            return CRAFT_ENOMEM;
        cap *= 2;
    }
    if (cap != kv->hcap) {
        int err = rehash(kv, cap);
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

void kv__hash_maybe_shrink(struct kv *kv)
{
    if (kv->hcap > KV__HASH_MIN && kv->count < kv->hcap / 8)
        (void)rehash(kv, kv->hcap / 2); /* failure: stays larger */
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

size_t kv__hash_slot_of(const struct kv *kv, uint64_t h, uint32_t id,
                        uint16_t off)
{
    size_t mask = kv->hcap - 1;
    uint64_t want = kv__hslot(h28(h), id, off);
    for (size_t i = h28(h) & mask;; i = (i + 1) & mask) {
        if (kv->hs[i] == want)
            return i;
        if (kv->hs[i] == 0)
            return SIZE_MAX; /* a bug: every record is in the table */
    }
}

void kv__hash_del_slot(struct kv *kv, size_t i)
{
    size_t mask = kv->hcap - 1;
    for (size_t j = (i + 1) & mask; kv->hs[j] != 0; j = (j + 1) & mask) {
        size_t home = kv__hslot_h(kv->hs[j]) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            kv->hs[i] = kv->hs[j];
            i = j;
        }
    }
    kv->hs[i] = 0;
}

bool kv__hash_find(const struct kv *kv, const void *key, size_t klen,
                   struct kv__leaf **leaf, uint16_t *off)
{
    return kv__hash_find_h(kv, kv__hkey(kv, key, klen), key, klen, leaf, off);
}

bool kv__hash_find_h(const struct kv *kv, uint64_t hfull, const void *key,
                     size_t klen, struct kv__leaf **leaf, uint16_t *off)
{
    uint32_t h = h28(hfull);
    size_t mask = kv->hcap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint64_t s = kv->hs[i];
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
