/* The hash map itself: creation, lookup, insert, delete (backward shift),
 * growth and shrinking, iteration. See kv_internal.h for the layout. */
#include "kv/kv_internal.h"

#include <assert.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/alloc.h"

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

static int alloc_table(size_t cap, uint32_t **hashes, struct kv__ent ***ents)
{
    *hashes = craft_malloc(cap * sizeof **hashes);
    *ents = craft_calloc(cap, sizeof **ents);
    if (*hashes == NULL || *ents == NULL) {
        craft_free(*hashes);
        craft_free(*ents);
        return CRAFT_ENOMEM;
    }
    return 0;
}

struct kv *kv_new(uint64_t hash_seed)
{
    struct kv *kv = craft_calloc(1, sizeof *kv);
    if (kv == NULL)
        return NULL;
    if (alloc_table(KV__MIN_CAP, &kv->hashes, &kv->ents) != 0) {
        craft_free(kv);
        return NULL;
    }
    kv->cap = KV__MIN_CAP;
    seed_hash(kv, hash_seed);
    return kv;
}

void kv_free(struct kv *kv)
{
    if (kv == NULL)
        return;
    for (size_t i = 0; i < kv->cap; i++)
        craft_free(kv->ents[i]);
    craft_free(kv->ents);
    craft_free(kv->hashes);
    kv__members_free(kv);
    craft_free(kv);
}

size_t kv_count(const struct kv *kv)
{
    return kv->count;
}

uint64_t kv_bytes(const struct kv *kv)
{
    return kv->bytes;
}

struct kv__ent *kv__ent_new(const void *key, size_t klen, const void *val,
                            size_t vlen)
{
    if (klen > UINT32_MAX || vlen > UINT32_MAX)
        return NULL;
    struct kv__ent *e = craft_malloc(sizeof *e + klen + vlen);
    if (e == NULL)
        return NULL;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    if (klen)
        memcpy(e->data, key, klen);
    if (vlen)
        memcpy(e->data + klen, val, vlen);
    return e;
}

/* Rebuild the table with new_cap slots (>= the entries it must hold). */
static int resize(struct kv *kv, size_t new_cap)
{
    uint32_t *hashes;
    struct kv__ent **ents;
    int err = alloc_table(new_cap, &hashes, &ents);
    if (err)
        return err;
    size_t mask = new_cap - 1;
    for (size_t i = 0; i < kv->cap; i++) {
        if (kv->ents[i] == NULL)
            continue;
        size_t j = kv->hashes[i] & mask;
        while (ents[j] != NULL)
            j = (j + 1) & mask;
        ents[j] = kv->ents[i];
        hashes[j] = kv->hashes[i];
    }
    craft_free(kv->hashes);
    craft_free(kv->ents);
    kv->hashes = hashes;
    kv->ents = ents;
    kv->cap = new_cap;
    return 0;
}

static bool fits(size_t n, size_t cap)
{
    return n <= cap / 4 * 3;
}

int kv__reserve(struct kv *kv, size_t n)
{
    size_t cap = kv->cap;
    while (!fits(n, cap)) {
        if (cap > SIZE_MAX / 2 / sizeof(struct kv__ent *))
            return CRAFT_ENOMEM;
        cap *= 2;
    }
    return cap == kv->cap ? 0 : resize(kv, cap);
}

void kv__maybe_shrink(struct kv *kv)
{
    if (kv->cap > KV__MIN_CAP && kv->count < kv->cap / 8)
        (void)resize(kv, kv->cap / 2); /* failure: stays larger, still valid */
}

/* The slot holding key, or SIZE_MAX. */
static size_t find(const struct kv *kv, uint32_t h, const void *key,
                   size_t klen)
{
    size_t mask = kv->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const struct kv__ent *e = kv->ents[i];
        if (e == NULL)
            return SIZE_MAX;
        if (kv->hashes[i] == h && e->klen == klen &&
            (klen == 0 || memcmp(e->data, key, klen) == 0))
            return i;
    }
}

void kv__insert(struct kv *kv, uint32_t h, struct kv__ent *e)
{
    size_t mask = kv->cap - 1;
    size_t i = h & mask;
    for (; kv->ents[i] != NULL; i = (i + 1) & mask) {
        struct kv__ent *old = kv->ents[i];
        if (kv->hashes[i] == h && old->klen == e->klen &&
            memcmp(old->data, e->data, e->klen) == 0) {
            kv->bytes -= (uint64_t)old->klen + old->vlen;
            kv->bytes += (uint64_t)e->klen + e->vlen;
            craft_free(old);
            kv->ents[i] = e;
            return;
        }
    }
    assert(fits(kv->count + 1, kv->cap));
    kv->ents[i] = e;
    kv->hashes[i] = h;
    kv->count++;
    kv->bytes += (uint64_t)e->klen + e->vlen;
}

int kv__remove(struct kv *kv, uint32_t h, const void *key, size_t klen)
{
    size_t i = find(kv, h, key, klen);
    if (i == SIZE_MAX)
        return CRAFT_ENOTFOUND;
    struct kv__ent *e = kv->ents[i];
    kv->bytes -= (uint64_t)e->klen + e->vlen;
    kv->count--;
    craft_free(e);
    /* Backward shift: move each later entry of the run into the hole unless
     * its home slot lies cyclically in (hole, its slot]. */
    size_t mask = kv->cap - 1;
    for (size_t j = (i + 1) & mask; kv->ents[j] != NULL; j = (j + 1) & mask) {
        size_t home = kv->hashes[j] & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            kv->ents[i] = kv->ents[j];
            kv->hashes[i] = kv->hashes[j];
            i = j;
        }
    }
    kv->ents[i] = NULL;
    return 0;
}

int kv_get(const struct kv *kv, const void *key, size_t klen,
           const uint8_t **val, size_t *vlen)
{
    size_t i = find(kv, kv__hash(kv, key, klen), key, klen);
    if (i == SIZE_MAX)
        return CRAFT_ENOTFOUND;
    if (val)
        *val = kv__ent_val(kv->ents[i]);
    if (vlen)
        *vlen = kv->ents[i]->vlen;
    return 0;
}

int kv_put(struct kv *kv, const void *key, size_t klen, const void *val,
           size_t vlen)
{
    if (klen > UINT32_MAX || vlen > UINT32_MAX)
        return CRAFT_ETOOBIG;
    uint32_t h = kv__hash(kv, key, klen);
    size_t i = find(kv, h, key, klen);
    if (i != SIZE_MAX && kv->ents[i]->vlen == vlen) {
        if (vlen) /* same size: overwrite in place, nothing to allocate */
            memcpy(kv->ents[i]->data + klen, val, vlen);
        return 0;
    }
    struct kv__ent *e = kv__ent_new(key, klen, val, vlen);
    if (e == NULL)
        return CRAFT_ENOMEM;
    int err = i == SIZE_MAX ? kv__reserve(kv, kv->count + 1) : 0;
    if (err) {
        craft_free(e);
        return err;
    }
    kv__insert(kv, h, e);
    return 0;
}

int kv_del(struct kv *kv, const void *key, size_t klen)
{
    int err = kv__remove(kv, kv__hash(kv, key, klen), key, klen);
    if (err)
        return err;
    kv__maybe_shrink(kv);
    return 0;
}

void kv_iter_init(struct kv_iter *it)
{
    it->pos = 0;
}

bool kv_iter_next(const struct kv *kv, struct kv_iter *it, const uint8_t **key,
                  size_t *klen, const uint8_t **val, size_t *vlen)
{
    while (it->pos < kv->cap) {
        const struct kv__ent *e = kv->ents[it->pos++];
        if (e == NULL)
            continue;
        *key = e->data;
        *klen = e->klen;
        *val = kv__ent_val(e);
        *vlen = e->vlen;
        return true;
    }
    return false;
}

int kv_foreach(const struct kv *kv, kv_visit_fn fn, void *ud)
{
    for (size_t i = 0; i < kv->cap; i++) {
        const struct kv__ent *e = kv->ents[i];
        if (e == NULL)
            continue;
        int rc = fn(ud, e->data, e->klen, kv__ent_val(e), e->vlen);
        if (rc)
            return rc;
    }
    return 0;
}
