/* The B+tree under the map: records in slotted leaf pages, seek, insert with
 * splits from the reserved pool, removal, and the pool itself. Layout and
 * invariants: kv_internal.h. */
#include "kv/kv_internal.h"

#include <assert.h>
#include <string.h>

#include "common/alloc.h"

#define REC_MAX (1 + 10 + KV__INLINE_MAX + 5 * 10) /* an inline record */
#define MIN_SEP 64
#define COMPACT_MIN (KV__LEAF_DATA / 32) /* garbage worth a compaction */

/* Byte-wise order, eight bytes at a time (keys are short: a call to
 * memcmp would cost more than the comparison). */
static inline int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b,
                          size_t blen)
{
    size_t n = alen < blen ? alen : blen, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            return __builtin_bswap64(x) < __builtin_bswap64(y) ? -1 : 1;
    }
    for (; i < n; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return alen < blen ? -1 : alen > blen;
}

int kv__cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    return key_cmp(a, alen, b, blen);
}

/* A trusted varint (written by this file). */
static inline const uint8_t *uvar(const uint8_t *p, uint64_t *v)
{
    uint64_t x = 0;
    for (int s = 0;; s += 7) {
        uint8_t b = *p++;
        x |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80))
            break;
    }
    *v = x;
    return p;
}

static inline void set_word(struct kv__leaf *l, uint32_t i, uint32_t w)
{
    memcpy(l->data + KV__SLOT * i, &w, 4);
}

static inline void set_hint(struct kv__leaf *l, uint32_t i, uint32_t h)
{
    set_word(l, i, h << 12 | kv__slot(l, i));
}

/* Key of the encoded record at p. */
static inline void buf_key(const uint8_t *p, const uint8_t **key,
                           size_t *klen)
{
    if (*p++ & KV__REC_BLOB) {
        struct kv__blob *b;
        memcpy(&b, p, sizeof b);
        *key = b->data;
        *klen = b->klen;
        return;
    }
    uint64_t n;
    p = uvar(p, &n);
    *key = p;
    *klen = (size_t)n;
}

/* Key of the record at off, the fast path of the searches. */
static inline void rec_key_at(const struct kv__leaf *l, uint16_t off,
                              const uint8_t **key, size_t *klen)
{
    buf_key(l->data + off, key, klen);
}

static inline void rec_key(const struct kv__leaf *l, uint32_t i,
                           const uint8_t **key, size_t *klen)
{
    rec_key_at(l, kv__slot(l, i), key, klen);
}

bool kv__rec_key_is(const struct kv__leaf *l, uint16_t off, const void *key,
                    size_t klen)
{
    const uint8_t *k;
    size_t kl;
    rec_key_at(l, off, &k, &kl);
    return kl == klen && (klen == 0 || memcmp(k, key, klen) == 0);
}

void kv__rec_decode(const struct kv__leaf *l, uint32_t i, struct kv__rec *r)
{
    kv__rec_decode_at(l, kv__slot(l, i), r);
}

void kv__rec_decode_at(const struct kv__leaf *l, uint16_t off,
                       struct kv__rec *r)
{
    const uint8_t *start = l->data + off, *p = start;
    uint64_t n;
    uint8_t flags = *p++;
    r->blob = NULL;
    if (flags & KV__REC_BLOB) {
        memcpy(&r->blob, p, sizeof r->blob);
        p += sizeof r->blob;
        r->key = r->blob->data;
        r->klen = r->blob->klen;
        r->val = r->blob->data + r->blob->klen;
        r->vlen = r->blob->vlen;
    } else {
        p = uvar(p, &n);
        r->key = p;
        r->klen = (size_t)n;
        p += n;
    }
    p = uvar(p, &r->create);
    p = uvar(p, &r->mod);
    p = uvar(p, &r->version);
    r->lease = 0;
    if (!(flags & KV__REC_NO_LEASE))
        p = uvar(p, &r->lease);
    if (!(flags & KV__REC_BLOB)) {
        p = uvar(p, &n);
        r->val = p;
        r->vlen = (size_t)n;
        p += n;
    }
    r->size = (size_t)(p - start);
}

static size_t common_prefix(const uint8_t *a, size_t alen, const uint8_t *b,
                            size_t blen)
{
    size_t n = alen < blen ? alen : blen, i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* First slot whose key is >= key; *found if equal. The leaf's common
 * prefix places key before or after all of it, or else the hints narrow
 * the search to the few records with key's hint. */
static uint32_t lower_bound(const struct kv__leaf *l, const void *key,
                            size_t klen, bool *found)
{
    *found = false;
    if (l->n == 0)
        return 0;
    const uint8_t *k0 = l->pfx; /* a short prefix is in the header */
    size_t k0l;
    if (l->cp > KV__PFX)
        rec_key(l, 0, &k0, &k0l);
    size_t cp = l->cp, m = klen < cp ? klen : cp;
    int c = m ? memcmp(key, k0, m) : 0;
    if (c < 0 || (c == 0 && klen < cp))
        return 0;
    if (c > 0)
        return l->n;
    uint32_t h = kv__hint_of(key, klen, cp, l->hbase);
    uint32_t lo = 0, hi = l->n;
    while (lo < hi) { /* first hint >= h */
        uint32_t mid = (lo + hi) / 2;
        if (kv__hint(l, mid) < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    hi = lo;
    while (hi < l->n && kv__hint(l, hi) == h) /* a few at most, usually */
        hi++;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const uint8_t *k;
        size_t kl;
        rec_key(l, mid, &k, &kl);
        if (key_cmp(k, kl, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < l->n && kv__hint(l, lo) == h) {
        const uint8_t *k;
        size_t kl;
        rec_key(l, lo, &k, &kl);
        *found = kl == klen && (klen == 0 || memcmp(k, key, klen) == 0);
    }
    return lo;
}

static void set_cp(struct kv__leaf *l, const uint8_t *key, size_t cp)
{
    l->cp = (uint16_t)(cp > UINT16_MAX ? UINT16_MAX : cp);
    if (cp <= KV__PFX && cp)
        memcpy(l->pfx, key, cp);
}

/* Recompute the common prefix (of the first and the last key: the keys are
 * in order) and every hint. */
static void rehint(struct kv__leaf *l)
{
    if (l->n == 0) {
        l->cp = 0;
        return;
    }
    const uint8_t *a, *b;
    size_t al, bl;
    rec_key(l, 0, &a, &al);
    rec_key(l, l->n - 1, &b, &bl);
    set_cp(l, a, common_prefix(a, al, b, bl));
    size_t cp = l->cp;
    uint8_t base = UINT8_MAX;
    for (uint32_t i = 0; i < l->n; i++) {
        rec_key(l, i, &a, &al);
        if (cp + 2 < al && a[cp + 2] < base)
            base = a[cp + 2];
    }
    l->hbase = base;
    for (uint32_t i = 0; i < l->n; i++) {
        rec_key(l, i, &a, &al);
        set_hint(l, i, kv__hint_of(a, al, cp, base));
    }
}

/* Child of node for key: the first i with key < sep[i]. */
static uint32_t child_for(const struct kv__inode *node, const void *key,
                          size_t klen)
{
    uint32_t lo = 0, hi = node->n - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (key_cmp(key, klen, kv__sep_key(&node->sep[mid]),
                    node->sep[mid].len) < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Lines of a leaf fetched at once when the descent reaches it: the header
 * and the slots of up to ~110 records, so that their cache misses overlap
 * instead of following one another in the search. */
#define LEAF_PREFETCH 8

/* Every line of an internal node's separators and children that the search
 * may read, asked for at once (the binary search's reads depend on one
 * another; their misses would add up). */
static inline void prefetch_inode(const struct kv__inode *in)
{
    const uint8_t *s = (const uint8_t *)in->sep;
    const uint8_t *se = (const uint8_t *)&in->sep[in->n - 1];
    for (; s < se; s += 64)
        __builtin_prefetch(s);
    const uint8_t *c = (const uint8_t *)in->child;
    const uint8_t *ce = (const uint8_t *)&in->child[in->n];
    for (; c < ce; c += 64)
        __builtin_prefetch(c);
}

void *kv__descend_part(const struct kv *kv, const void *key, size_t klen,
                       struct kv__path *p, void *n, unsigned d, unsigned stop)
{
    p->depth = kv->height;
    for (; d < stop; d++) {
        struct kv__inode *in = n;
        prefetch_inode(in);
        uint32_t i = child_for(in, key, klen);
        p->node[d] = in;
        p->idx[d] = i;
        n = in->child[i];
    }
    if (stop < kv->height) {
        prefetch_inode(n);
        return n;
    }
    p->leaf = n;
    for (int i = 0; i < LEAF_PREFETCH; i++)
        __builtin_prefetch((const uint8_t *)n + 64 * i);
    return n;
}

void kv__descend(const struct kv *kv, const void *key, size_t klen,
                 struct kv__path *p)
{
    kv__descend_part(kv, key, klen, p, kv->root, 0, kv->height);
}

void kv__seek_leaf(struct kv__path *p, const void *key, size_t klen)
{
    p->pos = lower_bound(p->leaf, key, klen, &p->found);
}

bool kv__seek_end(const struct kv *kv, const void *key, size_t klen,
                  struct kv__path *p)
{
    void *n = kv->root;
    p->depth = kv->height;
    for (unsigned d = 0; d < kv->height; d++) {
        struct kv__inode *in = n;
        p->node[d] = in;
        p->idx[d] = in->n - 1;
        n = in->child[in->n - 1];
    }
    struct kv__leaf *l = n;
    p->leaf = l;
    p->pos = l->n;
    p->found = false;
    if (l->n == 0)
        return kv->count == 0; /* an empty last leaf: only of an empty map */
    const uint8_t *last;
    size_t len;
    rec_key(l, l->n - 1, &last, &len);
    return key_cmp(key, klen, last, len) > 0;
}

void kv__seek(const struct kv *kv, const void *key, size_t klen,
              struct kv__path *p)
{
    kv__descend(kv, key, klen, p);
    kv__seek_leaf(p, key, klen);
}

/* ---- the pool -------------------------------------------------------------- */

static void leaf_reset(struct kv__leaf *l)
{
    l->prev = l->next = NULL;
    l->n = 0;
    l->top = KV__LEAF_DATA;
    l->garbage = 0;
    l->cp = 0;
    l->id = 0;
    l->hbase = 0;
    l->pad2 = 0;
    l->seq = 0;
}

static void free_seps(struct kv *kv)
{
    for (size_t i = 0; i < kv->n_free_seps; i++)
        craft_free(kv->free_seps[i]);
    kv->n_free_seps = 0;
}

/* Room an in-order load leaves in each leaf it fills, by moving the
 * leaf's last records into the next one when it splits: a rewrite grows a
 * record by a byte or two (its mod index varint), and a leaf left full
 * splits at the first rewrite that reaches it (a freshly loaded map grew
 * by a quarter under random overwrites). This much takes a byte for each
 * of its records in place, and leaves the garbage of a few rewrites
 * (kv__store's COMPACT_MIN) before the free space runs out, so that the
 * leaf compacts rather than splits. */
#define EDGE_SLACK (KV__LEAF_DATA / 16)

/* How many leaf splits n_puts puts of rec_bytes bytes may cause, at most.
 * Each put splits at most one leaf. Past that: a leaf that was there can
 * split once without growing; a middle split leaves both halves at most
 * HALF_MAX bytes full, so a half splits again only after GROW more bytes
 * came in; an edge split (appending to the last leaf, or prepending to the
 * first) leaves its old leaf nearly full (one more free split) and a new
 * edge leaf of the record and what moved to leave EDGE_SLACK behind (under
 * 2 * EDGE_SLACK: no record bigger than EDGE_SLACK moves), which splits
 * only once it is full again. */
#define ITEM_MAX (REC_MAX + KV__SLOT)
#define HALF_MAX ((KV__LEAF_DATA + ITEM_MAX) / 2 + ITEM_MAX)
#define GROW (KV__LEAF_DATA - HALF_MAX)
static size_t max_splits(const struct kv *kv, size_t n_puts,
                         size_t rec_bytes)
{
    size_t edge = 2 * (1 + rec_bytes / (KV__LEAF_DATA - ITEM_MAX - 2 * EDGE_SLACK));
    size_t bound = kv->n_leaves + 2 * edge + rec_bytes / GROW + 1;
    return n_puts < bound ? n_puts : bound;
}

/* Internal nodes that splits may need: at each level, a node that was
 * there can split once when a child is added (so no more splits than the
 * level has nodes, nor than it is given children), and any further split
 * of one needs 31 more children (its halves have 32 or 33); + a new root.
 * Counting the nodes of each level, not of the whole tree: 1,000 leaf
 * splits above 10^7 keys need about 1,150, not 5,500 (which the reserve
 * took and freed again for every batch). */
static size_t max_inodes(const struct kv *kv, size_t splits)
{
    if (splits == 0)
        return 0;
    size_t total = 2, s = splits;
    for (unsigned lvl = 1; lvl <= kv->height + 2; lvl++) {
        size_t there = lvl <= kv->height ? kv->n_inodes_at[lvl] : 0;
        s = (s < there ? s : there) + s / (KV__FAN / 2 - 1) + 1;
        total += s;
    }
    return total;
}

int kv__reserve(struct kv *kv, size_t n_puts, size_t max_klen,
                size_t rec_bytes)
{
    size_t splits = max_splits(kv, n_puts, rec_bytes);
    size_t need_inodes = max_inodes(kv, splits);
    int err = kv__hash_reserve(kv, n_puts);
    if (err)
        return err;
    /* a split for every put: kv__store may then split rather than compact */
    bool each = splits >= n_puts;
    kv->split_each = false; /* until the pool has all it needs */
    n_puts = splits; /* leaves and separators: one per split */
    while (kv->n_free_leaves < n_puts) {
        struct kv__leaf *l = kv__page_alloc(kv);
        if (l == NULL)
            return CRAFT_ENOMEM;
        l->next = kv->free_leaves;
        kv->free_leaves = l;
        kv->n_free_leaves++;
    }
    while (kv->n_free_inodes < need_inodes) {
        struct kv__inode *in = craft_malloc(sizeof *in);
        if (in == NULL)
            return CRAFT_ENOMEM;
        in->child[0] = kv->free_inodes;
        kv->free_inodes = in;
        kv->n_free_inodes++;
    }
    size_t cap = max_klen > kv->max_klen ? max_klen : kv->max_klen;
    if (cap <= KV__SEP_INLINE) {
        kv->split_each = each;
        return 0; /* separators will all be inline */
    }
    cap = cap < MIN_SEP ? MIN_SEP : cap;
    if (cap > kv->sep_cap) {
        free_seps(kv);
        kv->sep_cap = cap;
    }
    if (n_puts > kv->seps_cap) {
        uint8_t **s = craft_realloc(kv->free_seps, n_puts * sizeof *s);
        if (s == NULL)
            return CRAFT_ENOMEM;
        kv->free_seps = s;
        kv->seps_cap = n_puts;
    }
    while (kv->n_free_seps < n_puts) {
        uint8_t *b = craft_malloc(kv->sep_cap);
        if (b == NULL)
            return CRAFT_ENOMEM;
        kv->free_seps[kv->n_free_seps++] = b;
    }
    kv->split_each = each;
    return 0;
}

/* The pool left after a batch: what its reserve took for the worst case
 * (a split for every put, and every internal node above splitting too) is
 * mostly unused. Freeing it all after each batch and taking it again for
 * the next cost a malloc and a free of a 4 KiB leaf and of several
 * internal nodes per put of a big batch: a third of the time a log replay
 * of batches of 1,000 new keys took (perf). So up to this much stays
 * (about 4 MiB of leaves and 3 MiB of internal nodes) until
 * kv_release_spare. */
#define POOL_KEEP_LEAVES 1024
#define POOL_KEEP_INODES 2048

static void pool_trim(struct kv *kv, size_t leaves, size_t inodes, size_t seps)
{
    while (kv->n_free_leaves > leaves) {
        struct kv__leaf *l = kv->free_leaves;
        kv->free_leaves = l->next;
        kv->n_free_leaves--;
        kv__page_free(kv, l);
    }
    while (kv->n_free_inodes > inodes) {
        struct kv__inode *in = kv->free_inodes;
        kv->free_inodes = in->child[0];
        kv->n_free_inodes--;
        craft_free(in);
    }
    while (kv->n_free_seps > seps)
        craft_free(kv->free_seps[--kv->n_free_seps]);
}

void kv__trim(struct kv *kv)
{
    size_t keep = max_inodes(kv, 1);
    pool_trim(kv, POOL_KEEP_LEAVES, keep > POOL_KEEP_INODES ? keep : POOL_KEEP_INODES,
              POOL_KEEP_LEAVES);
    kv__hash_maybe_shrink(kv);
}

void kv_release_spare(struct kv *kv)
{
    pool_trim(kv, 1, max_inodes(kv, 1), 1);
    kv__pages_release(kv); /* the pages that trim gave back */
}

static struct kv__leaf *take_leaf(struct kv *kv)
{
    struct kv__leaf *l = kv->free_leaves;
    assert(l != NULL);
    kv->free_leaves = l->next;
    kv->n_free_leaves--;
    kv->n_leaves++;
    leaf_reset(l);
    kv__leaf_id_new(kv, l);
    return l;
}

/* A node from the pool for level lvl above the leaves. */
static struct kv__inode *take_inode(struct kv *kv, unsigned lvl)
{
    struct kv__inode *in = kv->free_inodes;
    assert(in != NULL && lvl <= KV__MAX_DEPTH);
    kv->free_inodes = in->child[0];
    kv->n_free_inodes--;
    kv->n_inodes_at[lvl]++;
    in->n = 0;
    return in;
}

static struct kv__sep take_sep(struct kv *kv, const uint8_t *key, size_t len)
{
    struct kv__sep s = {(uint32_t)len, {0}};
    if (len <= KV__SEP_INLINE) {
        if (len)
            memcpy(s.b, key, len);
        return s;
    }
    assert(kv->n_free_seps > 0 && len <= kv->sep_cap);
    uint8_t *p = kv->free_seps[--kv->n_free_seps];
    memcpy(p, key, len);
    memcpy(s.b, &p, sizeof p);
    return s;
}

static void sep_free(struct kv__sep *s)
{
    if (s->len > KV__SEP_INLINE)
        craft_free((void *)kv__sep_key(s));
}

int kv__tree_init(struct kv *kv)
{
    kv->root = kv__page_alloc(kv);
    if (kv->root == NULL) {
        kv__pages_free(kv);
        return CRAFT_ENOMEM;
    }
    leaf_reset(kv->root);
    kv__leaf_id_new(kv, kv->root);
    kv->height = 0;
    kv->n_leaves = 1;
    memset(kv->n_inodes_at, 0, sizeof kv->n_inodes_at);
    return 0;
}

/* Free what n holds below it; its leaves' pages go with their chunks
 * (kv__pages_free). */
static void free_node(void *n, unsigned height)
{
    if (height == 0) {
        struct kv__leaf *l = n;
        for (uint32_t i = 0; i < l->n; i++) {
            struct kv__rec r;
            kv__rec_decode(l, i, &r);
            craft_free(r.blob);
        }
        return;
    }
    struct kv__inode *in = n;
    for (uint32_t i = 0; i < in->n; i++) {
        free_node(in->child[i], height - 1);
        if (i + 1 < in->n)
            sep_free(&in->sep[i]);
    }
    craft_free(in);
}

void kv__tree_free(struct kv *kv)
{
    if (kv->root)
        free_node(kv->root, kv->height);
    kv->root = NULL;
    kv->free_leaves = NULL; /* pages: kv__pages_free below */
    while (kv->free_inodes) {
        struct kv__inode *in = kv->free_inodes;
        kv->free_inodes = in->child[0];
        craft_free(in);
    }
    free_seps(kv);
    craft_free(kv->free_seps);
    kv->free_seps = NULL;
    kv->n_free_leaves = kv->n_free_inodes = kv->seps_cap = 0;
    kv__pages_free(kv);
}

/* ---- records and leaves ------------------------------------------------------ */

bool kv__needs_blob(size_t klen, size_t vlen)
{
    return klen + vlen > KV__INLINE_MAX;
}

struct kv__blob *kv__blob_for(const void *key, size_t klen, const void *val,
                              size_t vlen, int *err)
{
    *err = 0;
    if (!kv__needs_blob(klen, vlen))
        return NULL;
    struct kv__blob *b = craft_malloc(sizeof *b + klen + vlen);
    if (b == NULL) {
        *err = CRAFT_ENOMEM;
        return NULL;
    }
    b->klen = (uint32_t)klen;
    b->vlen = (uint32_t)vlen;
    memcpy(b->data, key, klen);
    if (vlen)
        memcpy(b->data + klen, val, vlen);
    return b;
}

static size_t encode_rec(uint8_t *p, const void *key, size_t klen,
                         const void *val, size_t vlen, uint64_t create,
                         uint64_t mod, uint64_t version, uint64_t lease,
                         struct kv__blob *blob)
{
    size_t n = 0;
    p[n++] = (uint8_t)((blob ? KV__REC_BLOB : 0) |
                       (lease == 0 ? KV__REC_NO_LEASE : 0));
    if (blob) {
        memcpy(p + n, &blob, sizeof blob);
        n += sizeof blob;
    } else {
        n += craft_put_uvar(p + n, klen);
        if (klen)
            memcpy(p + n, key, klen);
        n += klen;
    }
    n += craft_put_uvar(p + n, create);
    n += craft_put_uvar(p + n, mod);
    n += craft_put_uvar(p + n, version);
    if (lease != 0)
        n += craft_put_uvar(p + n, lease);
    if (!blob) {
        n += craft_put_uvar(p + n, vlen);
        if (vlen)
            memcpy(p + n, val, vlen);
        n += vlen;
    }
    return n;
}

static size_t leaf_free(const struct kv__leaf *l)
{
    return (size_t)l->top - (size_t)KV__SLOT * l->n;
}

/* Put a record of size bytes in at slot pos (the room is there), its hint
 * left to the caller. */
static void leaf_put_raw(struct kv__leaf *l, uint32_t pos, const uint8_t *rec,
                         size_t size)
{
    assert(leaf_free(l) >= size + KV__SLOT);
    l->top = (uint16_t)(l->top - size);
    memcpy(l->data + l->top, rec, size);
    memmove(l->data + KV__SLOT * (pos + 1), l->data + KV__SLOT * pos,
            (size_t)KV__SLOT * (l->n - pos));
    set_word(l, pos, l->top); /* hint 0 until set */
    l->n++;
}

/* The same with the hint, or all hints again if the key does not share
 * the leaf's common prefix. */
static void leaf_put(struct kv__leaf *l, uint32_t pos, const uint8_t *rec,
                     size_t size)
{
    leaf_put_raw(l, pos, rec, size);
    const uint8_t *k, *o;
    size_t kl, ol;
    /* the key from rec, not from the copy just written: reading that back
     * would wait for the write's cache miss */
    buf_key(rec, &k, &kl);
    if (l->n == 1) {
        set_cp(l, k, kl);
    } else {
        /* a short prefix is in the header: no other record to read */
        if (l->cp <= KV__PFX) {
            o = l->pfx;
            ol = l->cp;
        } else {
            rec_key(l, pos == 0 ? 1 : 0, &o, &ol);
        }
        if (common_prefix(k, kl, o, ol) < l->cp) {
            rehint(l);
            return;
        }
    }
    set_hint(l, pos, kv__hint_of(k, kl, l->cp, l->hbase));
}

/* Append to a leaf being rebuilt (rehint it after). */
static void leaf_append(struct kv__leaf *l, const uint8_t *rec, size_t size)
{
    leaf_put_raw(l, l->n, rec, size);
}

/* Drop slot pos (the record's bytes become garbage unless at the top). */
static void leaf_drop(struct kv__leaf *l, uint32_t pos, size_t size)
{
    uint16_t off = kv__slot(l, pos);
    if (off == l->top)
        l->top = (uint16_t)(l->top + size);
    else
        l->garbage = (uint16_t)(l->garbage + size);
    memmove(l->data + KV__SLOT * pos, l->data + KV__SLOT * (pos + 1),
            (size_t)KV__SLOT * (l->n - pos - 1));
    l->n--;
}

#define MAX_RECS (KV__LEAF_DATA / (7 + KV__SLOT) + 2) /* records >= 7 bytes */

/* The point-index slots of the records of t (a copy of leaf id), all found
 * before anything moves. */
static void find_slots(const struct kv *kv, const struct kv__leaf *t,
                       uint32_t id, size_t *slots)
{
    /* hash every key and prefetch its home slot first, so that the cache
     * misses of the searches overlap instead of following one another */
    uint64_t hs[MAX_RECS];
    for (uint32_t i = 0; i < t->n; i++) {
        const uint8_t *k;
        size_t kl;
        rec_key(t, i, &k, &kl);
        hs[i] = kv__hkey(kv, k, kl);
        __builtin_prefetch(&kv->hs[kv__hash_home(kv, hs[i])]);
    }
    for (uint32_t i = 0; i < t->n; i++) {
        slots[i] = kv__hash_slot_of(kv, hs[i], id, kv__slot(t, i));
        assert(slots[i] != SIZE_MAX);
    }
}

/* Bytes of live records and their slots. */
static size_t leaf_used(const struct kv__leaf *l)
{
    return (size_t)(KV__LEAF_DATA - l->top - l->garbage) +
           (size_t)KV__SLOT * l->n;
}

static void leaf_clear(struct kv__leaf *l)
{
    l->n = 0;
    l->top = KV__LEAF_DATA;
    l->garbage = 0;
}

/* Append every record of t (a copy of a leaf, whose records' key-table
 * slots are slots[]) to l, moving each slot to the record's new place. */
static void leaf_take_all(struct kv *kv, struct kv__leaf *l,
                          const struct kv__leaf *t, const size_t *slots)
{
    for (uint32_t i = 0; i < t->n; i++) {
        struct kv__rec r;
        kv__rec_decode(t, i, &r);
        leaf_append(l, t->data + kv__slot(t, i), r.size);
        kv__hash_move(kv, slots[i], l->id, l->top);
    }
}

static void leaf_compact(struct kv *kv, struct kv__leaf *l)
{
    uint8_t tmp[KV__PAGE];
    size_t slots[MAX_RECS];
    struct kv__leaf *t = (struct kv__leaf *)tmp;
    memcpy(tmp, l, KV__PAGE);
    find_slots(kv, t, l->id, slots);
    leaf_clear(l);
    leaf_take_all(kv, l, t, slots);
    rehint(l);
}

void kv__tree_fill(const struct kv *kv, struct kv__fill *f)
{
    const void *n = kv->root;
    for (unsigned d = 0; d < kv->height; d++)
        n = ((const struct kv__inode *)n)->child[0];
    *f = (struct kv__fill){0, 0, 0};
    for (const struct kv__leaf *l = n; l; l = l->next) {
        f->leaves++;
        f->used += leaf_used(l);
        f->capacity += KV__LEAF_DATA;
    }
}

/* ---- insertion -------------------------------------------------------------- */

/* Put child c (keys >= s) right after child i of node[d] on path p. */
static void inode_insert(struct kv *kv, struct kv__path *p, unsigned d,
                         void *c, struct kv__sep s)
{
    struct kv__inode *in = p->node[d];
    uint32_t i = p->idx[d];
    if (in->n < KV__FAN) {
        memmove(&in->child[i + 2], &in->child[i + 1],
                (in->n - i - 1) * sizeof in->child[0]);
        memmove(&in->sep[i + 1], &in->sep[i], (in->n - 1 - i) * sizeof s);
        in->child[i + 1] = c;
        in->sep[i] = s;
        in->n++;
        return;
    }
    void *ch[KV__FAN + 1];
    struct kv__sep sp[KV__FAN];
    memcpy(ch, in->child, (i + 1) * sizeof ch[0]);
    ch[i + 1] = c;
    memcpy(&ch[i + 2], &in->child[i + 1], (KV__FAN - i - 1) * sizeof ch[0]);
    memcpy(sp, in->sep, i * sizeof s);
    sp[i] = s;
    memcpy(&sp[i + 1], &in->sep[i], (KV__FAN - 1 - i) * sizeof s);
    uint32_t h = (KV__FAN + 1) / 2; /* children kept on the left */
    struct kv__inode *right = take_inode(kv, kv->height - d);
    memcpy(in->child, ch, h * sizeof ch[0]);
    memcpy(in->sep, sp, (h - 1) * sizeof s);
    in->n = h;
    right->n = KV__FAN + 1 - h;
    memcpy(right->child, &ch[h], right->n * sizeof ch[0]);
    memcpy(right->sep, &sp[h], (right->n - 1) * sizeof s);
    struct kv__sep up = sp[h - 1];
    if (d == 0) {
        assert(kv->height + 1 < KV__MAX_DEPTH);
        struct kv__inode *root = take_inode(kv, kv->height + 1);
        root->n = 2;
        root->child[0] = in;
        root->child[1] = right;
        root->sep[0] = up;
        kv->root = root;
        kv->height++;
        return;
    }
    inode_insert(kv, p, d - 1, right, up);
}

/* ---- overflow: split, redistribute ------------------------------------------ */

/* A full leaf's records with the one that did not fit, in key order, and
 * the index slot of each (SIZE_MAX for the new one, which has none yet). */
struct item {
    const uint8_t *rec;
    size_t size;
    size_t slot;
};
struct items {
    uint32_t n;
    size_t total; /* bytes, slots included */
    struct item it[MAX_RECS];
};

/* The items of l (copied to buf, which they point into), with rec put in
 * at pos if rec is not NULL. */
static void gather(struct kv *kv, const struct kv__leaf *l, uint8_t *buf,
                   uint32_t pos, const uint8_t *rec, size_t size,
                   struct items *o)
{
    size_t slots[MAX_RECS];
    const struct kv__leaf *t = (const struct kv__leaf *)buf;
    memcpy(buf, l, KV__PAGE);
    find_slots(kv, t, l->id, slots);
    o->n = t->n + (rec != NULL);
    o->total = 0;
    for (uint32_t i = 0, j = 0; i < o->n; i++) {
        if (rec != NULL && i == pos) {
            o->it[i] = (struct item){rec, size, SIZE_MAX};
        } else {
            struct kv__rec r;
            kv__rec_decode(t, j, &r);
            o->it[i] = (struct item){t->data + kv__slot(t, j), r.size,
                                     slots[j]};
            j++;
        }
        o->total += o->it[i].size + KV__SLOT;
    }
}

/* Where the new record went. */
struct placed {
    uint32_t id;
    uint16_t off;
};

/* Put item it in leaf to at slot at (with its hint if hint, else the caller
 * rehints), and point its index slot there (or, for the new record, where). */
static void place(struct kv *kv, struct kv__leaf *to, uint32_t at,
                  const struct item *it, bool hint, struct placed *where)
{
    if (hint)
        leaf_put(to, at, it->rec, it->size);
    else
        leaf_put_raw(to, at, it->rec, it->size);
    if (it->slot == SIZE_MAX) {
        where->id = to->id;
        where->off = to->top;
        to->seq = (uint16_t)(at + 1);
    } else {
        kv__hash_move(kv, it->slot, to->id, to->top);
    }
}

/* Append items [from, to) to leaf l, emptied and rehinted here. */
static void fill_leaf(struct kv *kv, struct kv__leaf *l,
                      const struct item *const *it, uint32_t from,
                      uint32_t to, struct placed *where)
{
    leaf_clear(l);
    l->seq = 0;
    for (uint32_t i = from; i < to; i++)
        place(kv, l, l->n, it[i], false, where);
    rehint(l);
}

/* Length of the separator between a side ending with item a and one
 * starting with item b: the shortest prefix of b's key above a's. */
static size_t sep_len(const struct item *a, const struct item *b,
                      const uint8_t **key)
{
    const uint8_t *ak;
    size_t al, bl, cp = 0;
    buf_key(a->rec, &ak, &al);
    buf_key(b->rec, key, &bl);
    while (cp < al && cp < bl && ak[cp] == (*key)[cp])
        cp++;
    assert(cp < bl);
    return cp + 1;
}

/* Whether separator s can become len bytes without allocating: inline, or
 * in its own buffer (which holds at least its length). */
static bool sep_fits(const struct kv__sep *s, size_t len)
{
    return len <= KV__SEP_INLINE || (s->len > KV__SEP_INLINE && len <= s->len);
}

static void sep_set(struct kv__sep *s, const uint8_t *key, size_t len)
{
    assert(sep_fits(s, len));
    if (len <= KV__SEP_INLINE) {
        sep_free(s);
        memcpy(s->b, key, len);
    } else {
        memcpy((uint8_t *)kv__sep_key(s), key, len);
    }
    s->len = (uint32_t)len;
}

/* Link leaf n in right after leaf l. */
static void link_after(struct kv__leaf *l, struct kv__leaf *n)
{
    n->prev = l;
    n->next = l->next;
    if (l->next)
        l->next->prev = n;
    l->next = n;
}

/* Hang leaf right, just made from p->leaf, into the tree after it, with
 * the separator between item a (the last of p->leaf) and b (the first of
 * right). */
static void split_link(struct kv *kv, struct kv__path *p, const struct item *a,
                       const struct item *b, struct kv__leaf *right)
{
    const uint8_t *k;
    size_t len = sep_len(a, b, &k);
    struct kv__sep sep = take_sep(kv, k, len);
    if (p->depth == 0) {
        struct kv__inode *root = take_inode(kv, 1);
        root->n = 2;
        root->child[0] = p->leaf;
        root->child[1] = right;
        root->sep[0] = sep;
        kv->root = root;
        kv->height = 1;
        return;
    }
    inode_insert(kv, p, p->depth - 1, right, sep);
}

/* Split p->leaf (its items in o): the first s items stay, the rest go to a
 * new leaf on its right. */
static void leaf_split(struct kv *kv, struct kv__path *p,
                       const struct items *o, uint32_t s,
                       struct placed *where)
{
    const struct item *it[MAX_RECS];
    for (uint32_t i = 0; i < o->n; i++)
        it[i] = &o->it[i];
    struct kv__leaf *l = p->leaf, *right = take_leaf(kv);
    fill_leaf(kv, l, it, 0, s, where);
    fill_leaf(kv, right, it, s, o->n, where);
    link_after(l, right);
    split_link(kv, p, it[s - 1], it[s], right);
}

#define EDGE_MOVES (EDGE_SLACK / (7 + KV__SLOT) + 2) /* records >= 7 bytes */

/* The split of an append past the last leaf's end (keys written in order,
 * a snapshot read back): a new last leaf holds rec, after the few last
 * records of p->leaf that leave it EDGE_SLACK of room; the others stay
 * where they are (leaf_split would gather them all and find each one's
 * index slot: a hash probe per record, for nothing). */
static void edge_append(struct kv *kv, struct kv__path *p, const uint8_t *rec,
                        size_t size, struct placed *where)
{
    struct kv__leaf *l = p->leaf;
    struct item moved[EDGE_MOVES]; /* l's last records, the last first */
    uint32_t m = 0;
    size_t room = leaf_free(l) + l->garbage;
    while (room < EDGE_SLACK && m + 1 < l->n && m < EDGE_MOVES) {
        uint32_t i = l->n - 1 - m;
        struct kv__rec r;
        const uint8_t *k;
        size_t kl;
        kv__rec_decode(l, i, &r);
        if (r.size + KV__SLOT > EDGE_SLACK)
            break; /* what moves stays under 2 * EDGE_SLACK: max_splits */
        rec_key(l, i, &k, &kl);
        size_t slot = kv__hash_slot_of(kv, kv__hkey(kv, k, kl), l->id,
                                       kv__slot(l, i));
        assert(slot != SIZE_MAX);
        moved[m++] = (struct item){l->data + kv__slot(l, i), r.size, slot};
        room += r.size + KV__SLOT;
    }
    const struct item *it[EDGE_MOVES + 1];
    for (uint32_t j = 0; j < m; j++)
        it[j] = &moved[m - 1 - j];
    struct item add = {rec, size, SIZE_MAX};
    it[m] = &add;
    struct kv__leaf *right = take_leaf(kv);
    fill_leaf(kv, right, it, 0, m + 1, where); /* copies them out of l */
    for (uint32_t j = 0; j < m; j++)
        leaf_drop(l, l->n - 1, moved[j].size);
    struct item last = {l->data + kv__slot(l, l->n - 1), 0, 0};
    struct item first = {right->data + kv__slot(right, 0), 0, 0};
    l->seq = 0;
    link_after(l, right);
    split_link(kv, p, &last, &first, right);
}

/* Where to split o so that both sides hold about half its bytes. */
static uint32_t half_point(const struct items *o)
{
    size_t cum = 0;
    uint32_t s;
    for (s = 0; s < o->n - 1 && cum < o->total / 2; s++)
        cum += o->it[s].size + KV__SLOT;
    return s == 0 ? 1 : s;
}

/* A redistribution must leave both leaves this much room at least (else
 * the next insert would overflow one of them again at once). */
#define RD_ROOM (KV__LEAF_DATA / 16)

/* Move items of p->leaf (o, the new one among them) into its sibling s
 * (right of it if right; sep the separator between the two) so that both
 * end about as full. s keeps its records where they are, p->leaf is
 * rebuilt. False (nothing done) if both would not fit with RD_ROOM to
 * spare, or the new separator would need an allocation. */
static bool redistribute(struct kv *kv, struct kv__path *p,
                         const struct items *o, struct kv__leaf *s,
                         bool right, struct kv__sep *sep,
                         struct placed *where)
{
    size_t su = leaf_used(s);
    if (o->total + su + 2 * RD_ROOM > 2 * (size_t)KV__LEAF_DATA ||
        o->total <= su)
        return false;
    /* m items move, from the end next to s, about half the difference */
    size_t goal = (o->total - su) / 2, mb = 0;
    uint32_t m = 0;
    while (m < o->n - 1) {
        const struct item *e = &o->it[right ? o->n - 1 - m : m];
        if (m > 0 && mb + (e->size + KV__SLOT) / 2 > goal)
            break;
        mb += e->size + KV__SLOT;
        m++;
    }
    if (m == 0 || su + mb > KV__LEAF_DATA - RD_ROOM ||
        o->total - mb > KV__LEAF_DATA - RD_ROOM)
        return false;
    uint32_t first = right ? o->n - m : 0; /* the first moved item */
    const uint8_t *k;
    size_t len = right ? sep_len(&o->it[first - 1], &o->it[first], &k)
                       : sep_len(&o->it[m - 1], &o->it[m], &k);
    if (!sep_fits(sep, len))
        return false;
    if (leaf_free(s) < mb)
        leaf_compact(kv, s);
    s->seq = 0;
    for (uint32_t j = 0; j < m; j++)
        place(kv, s, right ? j : s->n, &o->it[first + j], true, where);
    const struct item *it[MAX_RECS];
    for (uint32_t i = 0; i < o->n; i++)
        it[i] = &o->it[i];
    if (right)
        fill_leaf(kv, p->leaf, it, 0, first, where);
    else
        fill_leaf(kv, p->leaf, it, m, o->n, where);
    sep_set(sep, k, len);
    return true;
}

/* Split p->leaf (o) and its full sibling s (right of it if right; sep the
 * separator between the two) into three leaves about two thirds full: the
 * left of the two keeps the first third, a new leaf takes the second (sep
 * becomes the one before the third, a separator from the pool goes before
 * the second, as in a split). False (nothing done) if a third would exceed
 * HALF_MAX (see max_splits) or sep would need an allocation. */
static bool split3(struct kv *kv, struct kv__path *p, const struct items *o,
                   struct kv__leaf *s, bool right, struct kv__sep *sep,
                   struct placed *where)
{
    uint8_t buf[KV__PAGE];
    struct items so;
    gather(kv, s, buf, 0, NULL, 0, &so);
    const struct items *a = right ? o : &so, *b = right ? &so : o;
    const struct item *it[2 * MAX_RECS];
    uint32_t n = 0;
    for (uint32_t i = 0; i < a->n; i++)
        it[n++] = &a->it[i];
    for (uint32_t i = 0; i < b->n; i++)
        it[n++] = &b->it[i];
    size_t total = a->total + b->total, cum = 0;
    uint32_t cut[2], c = 0;
    for (uint32_t i = 0; i < n && c < 2; i++) {
        cum += it[i]->size + KV__SLOT;
        if (cum >= total * (c + 1) / 3)
            cut[c++] = i + 1;
    }
    if (c < 2 || cut[0] >= cut[1] || cut[1] >= n)
        return false;
    size_t part[3] = {0, 0, 0};
    for (uint32_t i = 0; i < n; i++)
        part[(i >= cut[0]) + (i >= cut[1])] += it[i]->size + KV__SLOT;
    for (int j = 0; j < 3; j++)
        if (part[j] > HALF_MAX)
            return false;
    const uint8_t *k1, *k2;
    size_t len1 = sep_len(it[cut[0] - 1], it[cut[0]], &k1);
    size_t len2 = sep_len(it[cut[1] - 1], it[cut[1]], &k2);
    if (!sep_fits(sep, len2)) /* it becomes the one before rgt */
        return false;
    struct kv__leaf *left = right ? p->leaf : s;
    struct kv__leaf *rgt = right ? s : p->leaf, *mid = take_leaf(kv);
    fill_leaf(kv, left, it, 0, cut[0], where);
    fill_leaf(kv, mid, it, cut[0], cut[1], where);
    fill_leaf(kv, rgt, it, cut[1], n, where);
    link_after(left, mid);
    sep_set(sep, k2, len2);
    if (!right)
        p->idx[p->depth - 1]--; /* the new leaf goes after the left one */
    inode_insert(kv, p, p->depth - 1, mid, take_sep(kv, k1, len1));
    return true;
}

/* The sibling of p->leaf under its parent to share its records with: the
 * one with more room, leaving out the first and the last leaf (what edge
 * splits count on: see max_splits). NULL if none. */
static struct kv__leaf *sibling(const struct kv__path *p, bool *right,
                                struct kv__sep **sep)
{
    if (p->depth == 0)
        return NULL;
    struct kv__inode *par = p->node[p->depth - 1];
    uint32_t i = p->idx[p->depth - 1];
    struct kv__leaf *l = i > 0 ? par->child[i - 1] : NULL;
    struct kv__leaf *r = i + 1 < par->n ? par->child[i + 1] : NULL;
    if (l && l->prev == NULL)
        l = NULL;
    if (r && r->next == NULL)
        r = NULL;
    if (l && r)
        *right = leaf_used(r) < leaf_used(l);
    else if (l || r)
        *right = r != NULL;
    else
        return NULL;
    *sep = &par->sep[*right ? i : i - 1];
    return *right ? r : l;
}

/* Put rec in at p->pos of p->leaf, which has no room for it: where it went.
 * - At the end of the last leaf (keys written in order): a new leaf with
 *   it and the few records that leave the old one EDGE_SLACK free
 *   (edge_append; at the start of the first: a split there, mirrored).
 * - Right after the record inserted last in this leaf (keys written in
 *   order inside the key space, e.g. batches arriving out of order), and
 *   the pool holding a leaf for every put: split there, or a little before
 *   to leave EDGE_SLACK, so that the run goes on into a leaf of its own and
 *   leaves nearly full ones behind.
 * - Else, if a sibling has room: share the records with it (no new leaf);
 *   if it has none: the two become three, two thirds full.
 * - Else (no sibling, or a separator that would need an allocation):
 *   split in halves. */
static void leaf_overflow(struct kv *kv, struct kv__path *p,
                          const uint8_t *rec, size_t size,
                          struct placed *where)
{
    uint8_t buf[KV__PAGE];
    struct items o;
    struct kv__leaf *l = p->leaf;
    uint32_t pos = p->pos;
    if (pos == l->n && l->next == NULL && l->n > 0) {
        edge_append(kv, p, rec, size, where);
        return;
    }
    gather(kv, l, buf, pos, rec, size, &o);
    if (pos == 0 && l->prev == NULL) {
        leaf_split(kv, p, &o, 1, where);
        return;
    }
    if (kv->split_each && pos > 0 && l->seq == pos) {
        uint32_t s = pos == o.n - 1 ? pos : pos + 1;
        size_t kept = 0;
        for (uint32_t i = 0; i < s; i++)
            kept += o.it[i].size + KV__SLOT;
        while (s > 1 && kept > KV__LEAF_DATA - EDGE_SLACK) {
            s--; /* leave it room, as edge_append does */
            kept -= o.it[s].size + KV__SLOT;
        }
        if (kept <= KV__LEAF_DATA) {
            leaf_split(kv, p, &o, s, where);
            return;
        }
    }
    bool right;
    struct kv__sep *sep;
    struct kv__leaf *s = sibling(p, &right, &sep);
    if (s && (redistribute(kv, p, &o, s, right, sep, where) ||
              split3(kv, p, &o, s, right, sep, where)))
        return;
    leaf_split(kv, p, &o, half_point(&o), where);
}

void kv__store(struct kv *kv, struct kv__path *p, uint64_t h,
               const void *key, size_t klen, const void *val, size_t vlen,
               uint64_t create,
               uint64_t mod, uint64_t version, uint64_t lease,
               struct kv__blob *blob)
{
    uint8_t rec[REC_MAX];
    size_t size = encode_rec(rec, key, klen, val, vlen, create, mod, version,
                             lease, blob);
    struct kv__leaf *l = p->leaf;
    size_t old_slot = SIZE_MAX;
    if (p->found) {
        struct kv__rec old;
        kv__rec_decode(l, p->pos, &old);
        kv->bytes -= old.klen + old.vlen;
        craft_free(old.blob);
        if (old.size == size) { /* same size: in place */
            memcpy(l->data + kv__slot(l, p->pos), rec, size);
            kv->bytes += klen + vlen;
            return;
        }
        old_slot = kv__hash_slot_of(kv, h, l->id, kv__slot(l, p->pos));
        assert(old_slot != SIZE_MAX);
        leaf_drop(l, p->pos, old.size);
    } else {
        kv->count++;
        if (klen > kv->max_klen)
            kv->max_klen = klen;
    }
    kv->bytes += klen + vlen;
    /* compacting re-finds every record's index slot: when it would win
     * little room, and the pool has a leaf for every put, split instead
     * (else a full leaf whose records are rewritten one by one would be
     * compacted at each) */
    if (leaf_free(l) < size + KV__SLOT &&
        leaf_free(l) + l->garbage >= size + KV__SLOT &&
        (l->garbage >= COMPACT_MIN || !kv->split_each))
        leaf_compact(kv, l);
    struct placed where = {l->id, 0};
    if (leaf_free(l) >= size + KV__SLOT) {
        leaf_put(l, p->pos, rec, size);
        where.off = l->top;
        l->seq = (uint16_t)(p->pos + 1);
    } else {
        leaf_overflow(kv, p, rec, size, &where);
    }
    if (old_slot != SIZE_MAX) {
        kv__hash_move(kv, old_slot, where.id, where.off);
    } else {
        kv__hash_add(kv, h, where.id, where.off);
    }
}

/* The slot of the record at off (there is one). */
static uint32_t slot_at(const struct kv__leaf *l, uint16_t off)
{
    uint32_t i = 0;
    while (kv__slot(l, i) != off)
        i++;
    return i;
}

bool kv__overwrite(struct kv *kv, struct kv__leaf *l, uint16_t off,
                   uint64_t h, const void *key, size_t klen, const void *val,
                   size_t vlen, uint64_t create, uint64_t mod,
                   uint64_t version, uint64_t lease, struct kv__blob *blob)
{
    uint8_t rec[REC_MAX];
    size_t size = encode_rec(rec, key, klen, val, vlen, create, mod, version,
                             lease, blob);
    struct kv__rec old;
    kv__rec_decode_at(l, off, &old);
    if (old.size == size) {
        memcpy(l->data + off, rec, size);
    } else {
        /* another size (a key's first rewrite stores its revisions): the
         * new record goes to the free space, its slot stays where it is */
        bool at_top = off == l->top;
        if (leaf_free(l) + (at_top ? old.size : 0) < size)
            return false;
        uint32_t i = slot_at(l, off);
        size_t hi = kv__hash_slot_of(kv, h, l->id, off);
        assert(hi != SIZE_MAX);
        if (at_top)
            l->top = (uint16_t)(l->top + old.size);
        else
            l->garbage = (uint16_t)(l->garbage + old.size);
        l->top = (uint16_t)(l->top - size);
        memcpy(l->data + l->top, rec, size);
        set_word(l, i, kv__hint(l, i) << 12 | l->top);
        kv__hash_move(kv, hi, l->id, l->top);
    }
    kv->bytes -= old.klen + old.vlen;
    kv->bytes += klen + vlen;
    craft_free(old.blob);
    return true;
}

/* ---- removal ---------------------------------------------------------------- */

/* Remove child p->idx[d] from node[d]; an emptied node goes too. */
static void inode_remove(struct kv *kv, struct kv__path *p, unsigned d)
{
    struct kv__inode *in = p->node[d];
    uint32_t i = p->idx[d];
    if (in->n > 1) {
        uint32_t si = i > 0 ? i - 1 : 0;
        sep_free(&in->sep[si]);
        memmove(&in->sep[si], &in->sep[si + 1],
                (in->n - 2 - si) * sizeof in->sep[0]);
    }
    memmove(&in->child[i], &in->child[i + 1],
            (in->n - i - 1) * sizeof in->child[0]);
    in->n--;
    if (in->n == 0) {
        assert(d > 0); /* the root keeps the last leaf */
        craft_free(in);
        kv->n_inodes_at[kv->height - d]--;
        inode_remove(kv, p, d - 1);
    }
}

static void collapse_root(struct kv *kv)
{
    while (kv->height > 0 && ((struct kv__inode *)kv->root)->n == 1) {
        struct kv__inode *root = kv->root;
        kv->root = root->child[0];
        kv->n_inodes_at[kv->height]--;
        kv->height--;
        craft_free(root);
    }
}

/* Merge p->leaf's right sibling into it if that leaf is mostly empty and
 * both fit well in one (so that deleting most keys gives memory back):
 * true if it did. Never allocates. */
static bool maybe_merge(struct kv *kv, struct kv__path *p)
{
    struct kv__leaf *l = p->leaf;
    if (p->depth == 0 || leaf_used(l) > KV__LEAF_DATA / 4)
        return false;
    struct kv__inode *par = p->node[p->depth - 1];
    uint32_t i = p->idx[p->depth - 1];
    if (i + 1 >= par->n)
        return false; /* no right sibling under the same parent */
    struct kv__leaf *r = par->child[i + 1];
    assert(r == l->next);
    if (leaf_used(l) + leaf_used(r) > KV__LEAF_DATA / 4 * 3)
        return false;
    uint8_t tl[KV__PAGE], tr[KV__PAGE];
    size_t sl[MAX_RECS], sr[MAX_RECS];
    struct kv__leaf *a = (struct kv__leaf *)tl, *b = (struct kv__leaf *)tr;
    memcpy(tl, l, KV__PAGE);
    memcpy(tr, r, KV__PAGE);
    find_slots(kv, a, l->id, sl);
    find_slots(kv, b, r->id, sr);
    leaf_clear(l);
    leaf_take_all(kv, l, a, sl);
    leaf_take_all(kv, l, b, sr);
    rehint(l);
    l->next = r->next;
    if (r->next)
        r->next->prev = l;
    kv__leaf_id_free(kv, r->id);
    kv__page_free(kv, r);
    kv->n_leaves--;
    p->idx[p->depth - 1] = i + 1;
    inode_remove(kv, p, p->depth - 1); /* r and the separator before it */
    p->idx[p->depth - 1] = i;
    collapse_root(kv);
    return true;
}

bool kv__remove(struct kv *kv, struct kv__path *p)
{
    struct kv__leaf *l = p->leaf;
    struct kv__rec r;
    assert(p->found);
    kv__rec_decode(l, p->pos, &r);
    size_t slot = kv__hash_slot_of(kv, kv__hkey(kv, r.key, r.klen), l->id,
                                   kv__slot(l, p->pos));
    assert(slot != SIZE_MAX);
    kv__hash_del_slot(kv, slot);
    kv->count--;
    kv->bytes -= r.klen + r.vlen;
    craft_free(r.blob);
    leaf_drop(l, p->pos, r.size);
    p->found = false;
    if (l->prev == NULL && l->next == NULL)
        return false; /* the only leaf stays, even empty */
    if (l->n > 0)
        return maybe_merge(kv, p);
    /* an empty leaf leaves the tree */
    if (l->prev)
        l->prev->next = l->next;
    if (l->next)
        l->next->prev = l->prev;
    kv__leaf_id_free(kv, l->id);
    kv__page_free(kv, l);
    kv->n_leaves--;
    p->leaf = NULL;
    inode_remove(kv, p, p->depth - 1);
    collapse_root(kv);
    return true;
}
