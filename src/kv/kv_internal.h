/* Internals of src/kv shared across its files (kv__ prefix); not for other
 * modules. The map is open addressing with linear probing over two parallel
 * arrays (32-bit hash, entry pointer); an entry is ONE allocation holding its
 * key and value, so the per-key overhead is 8 bytes of header plus 12 bytes
 * per table slot. Deletion shifts later entries back (no tombstones). */
#ifndef CRAFT_KV_INTERNAL_H
#define CRAFT_KV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"

/* One key-value pair: key bytes then value bytes in data. */
struct kv__ent {
    uint32_t klen;
    uint32_t vlen;
    uint8_t data[];
};

struct kv {
    uint64_t k0, k1;          /* hash key (SipHash-1-3) */
    uint32_t *hashes;         /* [cap] hash of the entry in the slot */
    struct kv__ent **ents;    /* [cap] NULL = empty slot */
    size_t cap;               /* power of two */
    size_t count;             /* entries; count <= cap * 3 / 4 */
    uint64_t bytes;           /* sum of klen + vlen */
    struct kv_member *members; /* [n_members], insertion order */
    size_t n_members;
    size_t members_cap;
};

#define KV__MIN_CAP 16

static inline const uint8_t *kv__ent_val(const struct kv__ent *e)
{
    return e->data + e->klen;
}

/* SipHash-1-3 of buf under (k0, k1) (kv_hash.c). */
uint64_t kv__siphash(uint64_t k0, uint64_t k1, const void *buf, size_t len);
uint32_t kv__hash(const struct kv *kv, const void *key, size_t klen);

/* A new entry holding key and value, or NULL (out of memory or a length
 * over UINT32_MAX). Freed with craft_free. */
struct kv__ent *kv__ent_new(const void *key, size_t klen, const void *val,
                            size_t vlen);
/* Make room for n entries without any further allocation: 0/CRAFT_ENOMEM. */
int kv__reserve(struct kv *kv, size_t n);
/* Put e (hash h) into the map, replacing and freeing an entry with the same
 * key. The caller has reserved room: this never allocates or fails. */
void kv__insert(struct kv *kv, uint32_t h, struct kv__ent *e);
/* Remove and free the entry for key; 0 or CRAFT_ENOTFOUND. Never shrinks. */
int kv__remove(struct kv *kv, uint32_t h, const void *key, size_t klen);
/* Halve the table while it is mostly empty (a failed shrink is harmless:
 * the table just stays larger). */
void kv__maybe_shrink(struct kv *kv);

void kv__members_free(struct kv *kv);

/* Snapshot format constants, shared by writer and reader. */
#define KV__SNAP_MAGIC "CRAFTKVS"
#define KV__SNAP_VERSION 1
/* magic 8, version 4, flags 4, applied 8, n_members 4, n_keys 8 */
#define KV__SNAP_HDR 36
#define KV__SNAP_TRAILER 4

#endif
