/* Internals of src/kv shared across its files (kv__ prefix); not for other
 * modules. The map is a B+tree ordered byte-wise by key (kv_tree.c):
 *
 * - A leaf is one aligned KV__PAGE-byte page (kv_pages.c), a slotted
 *   page: a header, then an array of slots (record offset, key hint) in
 *   key order growing up, and the records themselves packed at the end
 *   growing down. Leaves are doubly linked in
 *   key order. A record holds its key, value and revisions INLINE:
 *     u8 flags | inline: uvar klen, key | uvar create, uvar mod,
 *     uvar version, [uvar lease] | inline: uvar vlen, value
 *   with flags bit 0 (KV__REC_BLOB) meaning that key and value live out of
 *   line in one struct kv__blob (an 8-byte pointer stands where
 *   "uvar klen, key" would be, and there is no "uvar vlen, value"), which a
 *   record whose key + value exceed KV__INLINE_MAX uses; bit 3
 *   (KV__REC_NO_LEASE) means lease 0, left out. (Leaving out a mod equal to
 *   create or a version 1 as well would save 2-4 bytes a key, but a key's
 *   first rewrite would then grow its record, and rewrites that fit in
 *   place are what keeps updates as cheap as gets.) uvar is LEB128, up to
 *   10 bytes. So a 16-byte key with a 16-byte value costs about 41 bytes
 *   plus a 4-byte slot.
 * - An internal node holds up to KV__FAN children and one separator key
 *   between each two (struct kv__sep): child i holds the keys k with
 *   sep[i-1] <= k < sep[i]. Every leaf is at the same depth.
 * - A leaf without room for a record: at the end of the last leaf (start
 *   of the first) a new leaf takes the record alone; a run of inserts
 *   (seq) splits where it goes on; else records move to a sibling with
 *   room, or two full leaves become three; else halves (kv_tree.c,
 *   leaf_overflow; docs/kv.md "Leaf fill").
 * - Deleting frees an emptied leaf, and merges a leaf left under a quarter
 *   full with its right sibling (same parent) when both fit in 3/4 of one.
 * - Beside the tree, a point index (kv_hash.c) maps each key to its
 *   record's leaf id and offset, so that gets and same-size updates skip
 *   the descent; every record that appears, moves or goes updates it.
 *
 * Changes that may split nodes take their new nodes and separators from a
 * pool filled beforehand (kv__reserve), so a batch or transaction, once
 * checked and reserved for, applies without any allocation that could fail
 * half-way. */
#ifndef CRAFT_KV_INTERNAL_H
#define CRAFT_KV_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/varint.h"
#include "kv/kv.h"

#define KV__PAGE 4096
#define KV__FAN 64
#define KV__MAX_DEPTH 32
/* key + value bytes above which a record keeps them in a blob */
#define KV__INLINE_MAX 1000
#define KV__REC_BLOB 1
#define KV__REC_NO_LEASE 8

#define KV__PFX 16
struct kv__leaf {
    struct kv__leaf *prev, *next; /* neighbours in key order, NULL at ends */
    uint16_t n;                   /* records */
    uint16_t top;                 /* records occupy data[top, KV__LEAF_DATA) */
    uint16_t garbage;             /* dead record bytes inside that range */
    uint16_t cp;                  /* every key here shares its first cp bytes */
    uint32_t id;                  /* its number in kv->leaf_ids */
    uint8_t hbase;                /* the third hint byte's base, see below */
    uint8_t pad2;
    uint16_t seq;                 /* slot after the last insert, 0 = none */
    uint8_t pfx[KV__PFX];         /* the common prefix, if cp <= KV__PFX */
    uint8_t data[];               /* slot[n] at the start (KV__SLOT each) */
};
#define KV__LEAF_DATA (KV__PAGE - (uint16_t)sizeof(struct kv__leaf))

/* A separator key: inline up to KV__SEP_INLINE bytes (most are short: a
 * separator is cut to the shortest prefix that still separates), else an
 * owned pointer to it stored in b. */
#define KV__SEP_INLINE 20
struct kv__sep {
    uint32_t len;
    uint8_t b[KV__SEP_INLINE];
};

static inline const uint8_t *kv__sep_key(const struct kv__sep *s)
{
    if (s->len <= KV__SEP_INLINE)
        return s->b;
    const uint8_t *p;
    __builtin_memcpy(&p, s->b, sizeof p);
    return p;
}

struct kv__inode {
    uint32_t n;                       /* children, >= 1 */
    struct kv__sep sep[KV__FAN - 1];  /* sep[i] separates child i and i+1 */
    void *child[KV__FAN];             /* leaves if height is 1 below */
};

/* Key and value of a big record, one allocation. */
struct kv__blob {
    uint32_t klen, vlen;
    uint8_t data[];
};

/* A decoded record; pointers into the leaf or its blob. */
struct kv__rec {
    const uint8_t *key, *val;
    size_t klen, vlen;
    uint64_t create, mod, version, lease;
    struct kv__blob *blob; /* NULL if inline */
    size_t size;           /* encoded bytes in the leaf */
};

/* A position found by kv__seek: the leaf, the first slot whose key is >=
 * the key sought (pos may be n), whether it is equal, and the way down. */
struct kv__path {
    struct kv__inode *node[KV__MAX_DEPTH];
    uint32_t idx[KV__MAX_DEPTH]; /* child taken in node[d] */
    unsigned depth;              /* internal levels above the leaf */
    struct kv__leaf *leaf;
    uint32_t pos;
    bool found;
};

/* A key attached to a lease: an owned copy, with its kv__hkey. */
struct kv__lkey {
    uint64_t h;
    uint32_t klen;
    uint8_t key[];
};
/* A lease: id, TTL and the hash set of its keys (kv_lease.c). */
struct kv__lease {
    uint64_t id, ttl_ms;
    uint64_t refreshed; /* index of its GRANT or of its last KEEPALIVE */
    struct kv__lkey **slots; /* [cap], NULL = empty; cap a power of two */
    size_t cap, n;
};

/* Results of the last kv_apply*: owned by the map, see kv_last_result. */
struct kv__results {
    struct kv_result pub;
    struct kv_op_result *ops; /* [cap] */
    size_t cap;
    uint8_t *buf; /* copied keys and values of get results */
    size_t blen, bcap;
};

/* A slot of the point index, one u64: the key's hash (28 bits, enough for
 * the home slot of tables up to 2^28 slots, so growing and deleting need no
 * record), the leaf id (24 bits: at most 2^24 - 1 leaves, 64 GiB) and the
 * record's offset in the leaf (12 bits). 0 = empty (no leaf has id 0). */
#define KV__HASH_MIN 16
/* Tables up to KV__HASH_SYNC_MAX slots are rebuilt at once (about 0.2 ms),
 * larger ones KV__HASH_STEP steps per key put (kv_hash.c, "resizing"). */
#define KV__HASH_SYNC_MAX (1u << 14)
#define KV__HASH_STEP 16
#define KV__MAX_LEAVES ((1u << 24) - 1)
static inline uint64_t kv__hslot(uint32_t h28, uint32_t id, uint16_t off)
{
    return (uint64_t)h28 << 36 | (uint64_t)id << 12 | off;
}
static inline uint32_t kv__hslot_h(uint64_t s) { return (uint32_t)(s >> 36); }
static inline uint32_t kv__hslot_id(uint64_t s)
{
    return (uint32_t)(s >> 12) & KV__MAX_LEAVES;
}
static inline uint16_t kv__hslot_off(uint64_t s) { return s & 0xfff; }

/* The leaves' pages (kv_pages.c): chunks of KV__CHUNK_PAGES aligned pages
 * in an array sorted by address, each with a bitmap of its free pages. */
#define KV__CHUNK_PAGES 64
struct kv__chunk {
    uintptr_t base;  /* the first page, aligned */
    void *raw;       /* what craft_malloc gave */
    uint64_t free;   /* bit i: page i is free */
    uint64_t dirty;  /* free pages written since they were last dropped */
};
struct kv__pages {
    struct kv__chunk *chunks; /* [cap], n used, by base */
    size_t n, cap;
    size_t hint;    /* chunks before it are full */
    size_t n_empty; /* chunks with every page free (at most one kept) */
    size_t used;    /* pages handed out */
};

struct kv {
    uint64_t k0, k1;            /* hash key (SipHash-1-3) */
    uint64_t *hs;               /* [hcap], count <= hcap * 3 / 4 */
    size_t hcap;                /* power of two */
    uint64_t *hs_old;           /* [hcap_old]: a resize's slots not moved yet */
    size_t hcap_old;            /* (kv_hash.c); NULL and 0 between resizes */
    size_t hs_next;             /* hs_old[0, hs_next) is empty */
    uint64_t hash_resizes;      /* resizes started, for tests */
    struct kv__leaf **leaf_ids; /* [ids_cap], by leaf id; [0] unused */
    size_t n_ids;               /* ids ever handed out, + 1 */
    size_t ids_cap;
    uint32_t *free_ids;         /* [n_free_ids] ids to hand out again */
    size_t n_free_ids;
    void *root;                 /* a leaf if height is 0 */
    unsigned height;            /* internal levels */
    size_t count;               /* keys */
    uint64_t bytes;             /* sum of klen + vlen */
    uint64_t index;             /* index of the last applied command */
    size_t max_klen;            /* longest key ever stored (separator size) */
    size_t n_leaves;            /* in the tree (not the pool) */
    /* internal nodes in the tree by level above the leaves (1: the
     * leaves' parents); what the reserve's bound counts on (kv__reserve) */
    size_t n_inodes_at[KV__MAX_DEPTH + 1];
    /* the pool (kv__reserve): singly linked via next / child[0] */
    struct kv__leaf *free_leaves;
    size_t n_free_leaves;
    struct kv__inode *free_inodes;
    size_t n_free_inodes;
    uint8_t **free_seps;        /* [n_free_seps] buffers of sep_cap bytes */
    size_t n_free_seps, seps_cap, sep_cap;
    bool split_each;            /* the pool holds a split for every put */
    struct kv__results res;
    struct kv_member *members;  /* [n_members], insertion order */
    size_t n_members;
    size_t members_cap;
    kv_event_fn obs;            /* kv_set_observer, or NULL */
    void *obs_ud;
    struct kv__lease **leases;  /* [n_leases] sorted by id (kv_lease.c) */
    size_t n_leases, leases_cap;
    struct kv__pages pages;     /* the leaves' memory (kv_pages.c) */
};

/* A leaf slot, one u32: the record's offset in its low 12 bits (the data
 * area is under 4 KiB), and above them a 20-bit hint of the key after the
 * leaf's common prefix (cp): its next two bytes, then 4 bits of the third
 * byte b as min(max(b - hbase, 0), 15) (missing bytes as 0), so that a
 * search compares hints, in a few cache lines, before it reads any record.
 * hbase is the leaf's smallest third byte when the hints were last all
 * computed (10 decimal digits fit the 4 bits). The hint is a non-decreasing
 * function of the key, so hints never decrease along the slots. */
#define KV__SLOT 4
#define KV__OFF_MASK 0xfffu
_Static_assert(KV__LEAF_DATA <= KV__OFF_MASK, "a record offset fits 12 bits");

static inline uint32_t kv__slot_word(const struct kv__leaf *l, uint32_t i)
{
    uint32_t s;
    __builtin_memcpy(&s, l->data + KV__SLOT * i, 4);
    return s;
}

static inline uint16_t kv__slot(const struct kv__leaf *l, uint32_t i)
{
    return (uint16_t)(kv__slot_word(l, i) & KV__OFF_MASK);
}

static inline uint32_t kv__hint(const struct kv__leaf *l, uint32_t i)
{
    return kv__slot_word(l, i) >> 12;
}

static inline uint32_t kv__hint_of(const uint8_t *key, size_t klen, size_t cp,
                                   uint8_t hbase)
{
    uint32_t a = cp < klen ? key[cp] : 0, b = cp + 1 < klen ? key[cp + 1] : 0;
    uint32_t c = cp + 2 < klen ? key[cp + 2] : 0;
    c = c < hbase ? 0 : c - hbase > 15 ? 15 : c - hbase;
    return a << 12 | b << 4 | c;
}

/* ---- kv_hash.c ---- */
uint64_t kv__siphash(uint64_t k0, uint64_t k1, const void *buf, size_t len);
uint64_t kv__hkey(const struct kv *kv, const void *key, size_t klen);
int kv__hash_init(struct kv *kv, uint64_t seed);
void kv__hash_free(struct kv *kv);
/* Room for n_more keys and leaves without allocating: 0/CRAFT_ENOMEM. */
int kv__hash_reserve(struct kv *kv, size_t n_more);
void kv__hash_maybe_shrink(struct kv *kv);
uint32_t kv__leaf_id_new(struct kv *kv, struct kv__leaf *l);
void kv__leaf_id_free(struct kv *kv, uint32_t id);
void kv__hash_add(struct kv *kv, uint64_t h, uint32_t id, uint16_t off);
/* The slot pointing at exactly (id, off) for a key of hash h. */
size_t kv__hash_slot_of(const struct kv *kv, uint64_t h, uint32_t id,
                        uint16_t off);
void kv__hash_del_slot(struct kv *kv, size_t i);
/* Point slot i at a new place for the same key. */
void kv__hash_move(struct kv *kv, size_t i, uint32_t id, uint16_t off);
/* The home slot of a key of hash h. */
size_t kv__hash_home(const struct kv *kv, uint64_t h);
bool kv__hash_find(const struct kv *kv, const void *key, size_t klen,
                   struct kv__leaf **leaf, uint16_t *off);
/* The same with the key's kv__hkey already computed. */
bool kv__hash_find_h(const struct kv *kv, uint64_t h, const void *key,
                     size_t klen, struct kv__leaf **leaf, uint16_t *off);

/* ---- kv_tree.c ---- */
void kv__rec_decode(const struct kv__leaf *l, uint32_t i, struct kv__rec *r);
void kv__rec_decode_at(const struct kv__leaf *l, uint16_t off,
                       struct kv__rec *r);
bool kv__rec_key_is(const struct kv__leaf *l, uint16_t off, const void *key,
                    size_t klen);
/* Byte-wise order: negative, 0 or positive as a < b. */
int kv__cmp(const void *a, size_t alen, const void *b, size_t blen);
void kv__seek(const struct kv *kv, const void *key, size_t klen,
              struct kv__path *p);
/* The path to the end of the map (the last leaf, past its last record),
 * as kv__seek gives for a key above every key; true if key is (the map
 * holds no key >= it). Reads no separator: for keys put in order. */
bool kv__seek_end(const struct kv *kv, const void *key, size_t klen,
                  struct kv__path *p);
/* kv__seek in two steps: down to the leaf (fetching its slots into the
 * cache), then the search in it; other work may go between the two. */
void kv__descend(const struct kv *kv, const void *key, size_t klen,
                 struct kv__path *p);
void kv__seek_leaf(struct kv__path *p, const void *key, size_t klen);
/* Part of kv__descend: from node n at level d (0 = the root) down to level
 * stop (kv->height = the leaf), that node fetched into the cache and
 * returned; p->leaf is set once stop is the leaf's level. */
void *kv__descend_part(const struct kv *kv, const void *key, size_t klen,
                       struct kv__path *p, void *n, unsigned d, unsigned stop);
/* A page for a leaf, aligned, or NULL (out of memory); give it back with
 * kv__page_free (NULL: nothing). kv__pages_free frees every chunk, pages
 * still handed out included. */
void *kv__page_alloc(struct kv *kv);
void kv__page_free(struct kv *kv, void *page);
void kv__pages_free(struct kv *kv);
/* Give the kernel back the free pages that hold memory (kv_release_spare). */
void kv__pages_release(struct kv *kv);
/* For a forked snapshot writer only (kv_snapshot_write_child): pages it
 * will not read again leave its memory, so that the parent's later writes
 * to them copy nothing. kv__pages_drop gathers adjacent pages into one
 * madvise; kv__pages_drop_end drops what is gathered. */
struct kv__drop {
    uintptr_t start, end;
};
void kv__pages_drop(struct kv__drop *d, const void *page);
void kv__pages_drop_end(struct kv__drop *d);
/* Drop what the writer never reads: free pages, the pool's leaves and the
 * point index (the map cannot be used for anything but its leaves then). */
void kv__pages_drop_unread(struct kv *kv);
/* Room for n_puts inserts (of keys up to max_klen bytes, rec_bytes the sum
 * of their kv__rec_bound) without allocating: 0 or CRAFT_ENOMEM (the map is
 * unchanged either way). */
int kv__reserve(struct kv *kv, size_t n_puts, size_t max_klen,
                size_t rec_bytes);
/* At most the bytes a record of this key and value takes in a leaf. */
static inline size_t kv__rec_bound(size_t klen, size_t vlen)
{
    return KV__SLOT + 1 + 4 * 10 +
           (klen + vlen > KV__INLINE_MAX ? 8 : 10 + klen + vlen);
}
/* Give the pool back down to what one put needs. */
void kv__trim(struct kv *kv);
/* Insert or replace key with a record built from the arguments, at p (a
 * kv__seek for key, no change since; h its kv__hkey). blob: NULL, or key
 * and value out of
 * line (ownership passes to the map). Never fails once reserved. */
void kv__store(struct kv *kv, struct kv__path *p, uint64_t h,
               const void *key, size_t klen, const void *val, size_t vlen,
               uint64_t create,
               uint64_t mod, uint64_t version, uint64_t lease,
               struct kv__blob *blob);
/* Replace the record at (l, off) (of key, hash h) without moving any
 * other: in place if the new one has its size, else in the leaf's free
 * space: true; false (nothing done) if it does not fit there. */
bool kv__overwrite(struct kv *kv, struct kv__leaf *l, uint16_t off,
                   uint64_t h, const void *key, size_t klen, const void *val,
                   size_t vlen, uint64_t create, uint64_t mod,
                   uint64_t version, uint64_t lease, struct kv__blob *blob);
/* Remove the record at p (found). Never allocates. True if the tree's
 * shape changed (a leaf went or took in its right sibling): p is stale
 * then, seek again. */
bool kv__remove(struct kv *kv, struct kv__path *p);
/* A blob for a key + value too big to inline, or NULL if they fit inline
 * (*err 0) or memory ran out (*err CRAFT_ENOMEM). */
struct kv__blob *kv__blob_for(const void *key, size_t klen, const void *val,
                              size_t vlen, int *err);
bool kv__needs_blob(size_t klen, size_t vlen);
/* How full the leaves are: live record and slot bytes over the leaves'
 * data areas (tests and measurements). */
struct kv__fill {
    size_t leaves;
    uint64_t used, capacity;
};
void kv__tree_fill(const struct kv *kv, struct kv__fill *f);
int kv__tree_init(struct kv *kv);
void kv__tree_free(struct kv *kv);

/* ---- kv_map.c ---- */
/* Put at revision index with the usual create/version rules; blob as for
 * kv__store. *created tells whether the key was new. Reserved: no failure. */
void kv__put_rev(struct kv *kv, const void *key, size_t klen, const void *val,
                 size_t vlen, uint64_t lease, uint64_t index,
                 struct kv__blob *blob, bool *created);
/* Delete every key in [start, end) (end NULL: no end); the count. Each
 * removal is told to the observer (as at revision index). */
uint64_t kv__del_range(struct kv *kv, const struct kv_range *r, uint64_t index);
/* Tell the observer (if any) of the put of key just done at index, or of
 * the delete of key (its record rec, still in the map) about to be done. */
void kv__emit_put(struct kv *kv, uint64_t index, const void *key, size_t klen);
void kv__emit_del(struct kv *kv, uint64_t index, const void *key, size_t klen,
                  uint64_t lease);

/* ---- kv_cmd.c ---- */
/* A uvar length (<= UINT32_MAX) and that many bytes at *pp; advances. */
bool kv__get_bytes(const uint8_t **pp, const uint8_t *end, const uint8_t **s,
                   size_t *len);
/* Check a whole version-1 command; count its operations and SETs. */
int kv__cmd_validate(const uint8_t *data, size_t len, uint32_t *n_ops,
                     size_t *n_sets);
/* An iterator at the first op of a command already validated. */
void kv__cmd_iter_start(struct kv_cmd_iter *it, const uint8_t *data,
                        size_t len, uint32_t n_ops);

void kv__members_free(struct kv *kv);

/* ---- kv_lease.c ---- */
/* Decode a version-3 command: 0 or CRAFT_ECORRUPT. */
int kv__lease_cmd_decode(const uint8_t *data, size_t len, uint8_t *op,
                         uint64_t *id, uint64_t *ttl_ms);
struct kv__lease *kv__lease_find(const struct kv *kv, uint64_t id);
/* Add lease id (0 or CRAFT_ENOMEM, table unchanged). */
int kv__lease_grant(struct kv *kv, uint64_t id, uint64_t ttl_ms,
                    uint64_t refreshed);
/* Remove lease id and its key set (not the keys of the map). */
void kv__lease_drop(struct kv *kv, uint64_t id);
void kv__leases_free(struct kv *kv);
/* A key copy to attach later (NULL: out of memory). */
struct kv__lkey *kv__lkey_new(const struct kv *kv, const void *key,
                              size_t klen);
/* Room in l's set for n_more attaches without allocating: 0/CRAFT_ENOMEM. */
int kv__lease_room(struct kv__lease *l, size_t n_more);
/* Add k (not already in l; room reserved). Never fails. */
void kv__lease_attach(struct kv__lease *l, struct kv__lkey *k);
/* Remove key from lease id's set if there (id 0 or unknown: nothing). */
void kv__lease_detach(struct kv *kv, uint64_t id, const void *key,
                      size_t klen);
/* A key put with lease new_id that had lease old: detach from old, attach
 * *spare (then set NULL) to new_id if it differs and exists. */
void kv__lease_move(struct kv *kv, uint64_t old, uint64_t new_id,
                    const void *key, size_t klen, struct kv__lkey **spare);
/* The keys of l after `after` (NULL: all) in key order: a new array *out
 * (craft_free) of *n pointers into l. 0 or CRAFT_ENOMEM. */
int kv__lease_sorted(const struct kv__lease *l, const void *after, size_t alen,
                     struct kv__lkey ***out, size_t *n);

/* Snapshot format constants, shared by writer and reader. */
#define KV__SNAP_MAGIC "CRAFTKVS"
#define KV__SNAP_VERSION 3
/* magic 8, version 4, flags 4, applied 8, n_members 4, n_keys 8 */
#define KV__SNAP_HDR 36
#define KV__SNAP_TRAILER 4
#define KV__SNAP_REC 40    /* version 2 key record header */
#define KV__SNAP_REC_V1 8

#endif
