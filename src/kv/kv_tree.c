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
    memset(l->pad2, 0, sizeof l->pad2);
}

static void free_seps(struct kv *kv)
{
    for (size_t i = 0; i < kv->n_free_seps; i++)
        craft_free(kv->free_seps[i]);
    kv->n_free_seps = 0;
}

/* How many leaf splits n_puts puts of rec_bytes bytes may cause, at most.
 * Each put splits at most one leaf. Past that: a leaf that was there can
 * split once without growing; a middle split leaves both halves at most
 * HALF_MAX bytes full, so a half splits again only after GROW more bytes
 * came in; an edge split (appending to the last leaf, or prepending to the
 * first) leaves its old leaf full (one more free split) and a new edge leaf
 * of one record, which splits only once it is full again. */
#define ITEM_MAX (REC_MAX + KV__SLOT)
#define HALF_MAX ((KV__LEAF_DATA + ITEM_MAX) / 2 + ITEM_MAX)
#define GROW (KV__LEAF_DATA - HALF_MAX)
static size_t max_splits(const struct kv *kv, size_t n_puts,
                         size_t rec_bytes)
{
    size_t edge = 2 * (1 + rec_bytes / (KV__LEAF_DATA - ITEM_MAX));
    size_t bound = kv->n_leaves + 2 * edge + rec_bytes / GROW + 1;
    return n_puts < bound ? n_puts : bound;
}

/* Internal nodes that splits may need: at each level, a node that was
 * there can split once when a child is added, and any further split of
 * one needs 31 more children (its halves have 32 or 33); + a new root. */
static size_t max_inodes(const struct kv *kv, size_t splits)
{
    if (splits == 0)
        return 0;
    size_t total = 2, s = splits;
    for (unsigned d = 0; d < kv->height + 2; d++) {
        s = (s < kv->n_inodes ? s : kv->n_inodes) + s / (KV__FAN / 2 - 1) + 1;
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
        struct kv__leaf *l = craft_malloc(KV__PAGE);
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

void kv__trim(struct kv *kv)
{
    size_t keep = max_inodes(kv, 1);
    while (kv->n_free_leaves > 1) {
        struct kv__leaf *l = kv->free_leaves;
        kv->free_leaves = l->next;
        kv->n_free_leaves--;
        craft_free(l);
    }
    while (kv->n_free_inodes > keep) {
        struct kv__inode *in = kv->free_inodes;
        kv->free_inodes = in->child[0];
        kv->n_free_inodes--;
        craft_free(in);
    }
    while (kv->n_free_seps > 1)
        craft_free(kv->free_seps[--kv->n_free_seps]);
    kv__hash_maybe_shrink(kv);
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

static struct kv__inode *take_inode(struct kv *kv)
{
    struct kv__inode *in = kv->free_inodes;
    assert(in != NULL);
    kv->free_inodes = in->child[0];
    kv->n_free_inodes--;
    kv->n_inodes++;
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
    kv->root = craft_malloc(KV__PAGE);
    if (kv->root == NULL)
        return CRAFT_ENOMEM;
    leaf_reset(kv->root);
    kv__leaf_id_new(kv, kv->root);
    kv->height = 0;
    kv->n_leaves = 1;
    kv->n_inodes = 0;
    return 0;
}

static void free_node(void *n, unsigned height)
{
    if (height == 0) {
        struct kv__leaf *l = n;
        for (uint32_t i = 0; i < l->n; i++) {
            struct kv__rec r;
            kv__rec_decode(l, i, &r);
            craft_free(r.blob);
        }
        craft_free(l);
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
    while (kv->free_leaves) {
        struct kv__leaf *l = kv->free_leaves;
        kv->free_leaves = l->next;
        craft_free(l);
    }
    while (kv->free_inodes) {
        struct kv__inode *in = kv->free_inodes;
        kv->free_inodes = in->child[0];
        craft_free(in);
    }
    free_seps(kv);
    craft_free(kv->free_seps);
    kv->free_seps = NULL;
    kv->n_free_leaves = kv->n_free_inodes = kv->seps_cap = 0;
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
        n += kv__put_uvar(p + n, klen);
        if (klen)
            memcpy(p + n, key, klen);
        n += klen;
    }
    n += kv__put_uvar(p + n, create);
    n += kv__put_uvar(p + n, mod);
    n += kv__put_uvar(p + n, version);
    if (lease != 0)
        n += kv__put_uvar(p + n, lease);
    if (!blob) {
        n += kv__put_uvar(p + n, vlen);
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
        kv__hslot_move(kv->hs, slots[i], l->id, l->top);
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
    struct kv__inode *right = take_inode(kv);
    memcpy(in->child, ch, h * sizeof ch[0]);
    memcpy(in->sep, sp, (h - 1) * sizeof s);
    in->n = h;
    right->n = KV__FAN + 1 - h;
    memcpy(right->child, &ch[h], right->n * sizeof ch[0]);
    memcpy(right->sep, &sp[h], (right->n - 1) * sizeof s);
    struct kv__sep up = sp[h - 1];
    if (d == 0) {
        assert(kv->height + 1 < KV__MAX_DEPTH);
        struct kv__inode *root = take_inode(kv);
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

struct item {
    const uint8_t *rec;
    size_t size;
};

/* Split p->leaf while putting rec in at p->pos; where rec went. */
static void leaf_split(struct kv *kv, struct kv__path *p, const uint8_t *rec,
                       size_t size, uint32_t *rec_id, uint16_t *rec_off)
{
    uint8_t tmp[KV__PAGE];
    size_t slots[MAX_RECS];
    struct kv__leaf *l = p->leaf, *t = (struct kv__leaf *)tmp;
    memcpy(tmp, l, KV__PAGE);
    find_slots(kv, t, l->id, slots);
    uint32_t n = t->n + 1, pos = p->pos;
    struct item items[MAX_RECS];
    size_t total = 0;
    for (uint32_t i = 0, j = 0; i < n; i++) {
        if (i == pos) {
            items[i] = (struct item){rec, size};
        } else {
            struct kv__rec r;
            kv__rec_decode(t, j, &r);
            items[i] = (struct item){t->data + kv__slot(t, j), r.size};
            j++;
        }
        total += items[i].size + KV__SLOT;
    }
    uint32_t s; /* items kept on the left */
    if (pos == n - 1 && l->next == NULL) {
        s = n - 1; /* appending to the last leaf: keep the left full */
    } else if (pos == 0 && l->prev == NULL) {
        s = 1; /* prepending to the first leaf: keep the right full */
    } else {
        size_t cum = 0;
        for (s = 0; s < n - 1 && cum < total / 2; s++)
            cum += items[s].size + KV__SLOT;
        s = s == 0 ? 1 : s;
    }
    struct kv__leaf *right = take_leaf(kv);
    l->n = 0;
    l->top = KV__LEAF_DATA;
    l->garbage = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct kv__leaf *to = i < s ? l : right;
        leaf_append(to, items[i].rec, items[i].size);
        if (i == pos) {
            *rec_id = to->id;
            *rec_off = to->top;
        } else {
            kv__hslot_move(kv->hs, slots[i - (i > pos)], to->id, to->top);
        }
    }
    rehint(l);
    rehint(right);
    right->prev = l;
    right->next = l->next;
    if (l->next)
        l->next->prev = right;
    l->next = right;
    /* the separator: the shortest prefix of right's first key that is
     * still greater than left's last */
    const uint8_t *k, *lk;
    size_t kl, lkl, cp = 0;
    rec_key(right, 0, &k, &kl);
    rec_key(l, l->n - 1, &lk, &lkl);
    while (cp < lkl && cp < kl && lk[cp] == k[cp])
        cp++;
    assert(cp < kl);
    struct kv__sep sep = take_sep(kv, k, cp + 1);
    if (p->depth == 0) {
        struct kv__inode *root = take_inode(kv);
        root->n = 2;
        root->child[0] = l;
        root->child[1] = right;
        root->sep[0] = sep;
        kv->root = root;
        kv->height = 1;
        return;
    }
    inode_insert(kv, p, p->depth - 1, right, sep);
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
    uint32_t id = l->id;
    uint16_t off;
    if (leaf_free(l) >= size + KV__SLOT) {
        leaf_put(l, p->pos, rec, size);
        off = l->top;
    } else {
        leaf_split(kv, p, rec, size, &id, &off);
    }
    if (old_slot != SIZE_MAX) {
        kv__hslot_move(kv->hs, old_slot, id, off);
    } else {
        kv__hash_add(kv, h, id, off);
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
        kv__hslot_move(kv->hs, hi, l->id, l->top);
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
        kv->n_inodes--;
        inode_remove(kv, p, d - 1);
    }
}

static size_t leaf_used(const struct kv__leaf *l)
{
    return (size_t)(KV__LEAF_DATA - l->top - l->garbage) +
           (size_t)KV__SLOT * l->n;
}

static void collapse_root(struct kv *kv)
{
    while (kv->height > 0 && ((struct kv__inode *)kv->root)->n == 1) {
        struct kv__inode *root = kv->root;
        kv->root = root->child[0];
        kv->height--;
        craft_free(root);
        kv->n_inodes--;
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
    craft_free(r);
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
    craft_free(l);
    kv->n_leaves--;
    p->leaf = NULL;
    inode_remove(kv, p, p->depth - 1);
    collapse_root(kv);
    return true;
}
